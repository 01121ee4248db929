"""predict: the crops preprocessing made and the scores evaluation gave, for the same videos.

The shared tiny run (1 epoch) scores every face alike, so comparing its scores would pass
whatever predict cropped. ``sensitive_run`` keeps that run's config (data, extraction,
augmentation, aggregation) with a small random-weight ViT whose scores spread over
[0, 0.5]; evaluation writes its ``metrics.json`` and predictions, and predict must reproduce
them from the raw videos.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

import deepfake_exp.inference.crop_settings as crop_settings
import deepfake_exp.inference.predictor as predictor_module
import deepfake_exp.predict as entrypoint
import deepfake_exp.tasks.predict as predict
from deepfake_exp.runs import DataMismatchError
from tests.conftest import compose_config
from tests.test_evaluate_extras import shared_run

slow = pytest.mark.slow
SCORE_ATOL = 1e-5  # float32, other batch compositions

TINY_VIT = {
    "_target_": "deepfake_exp.models.vit.VisionTransformer",
    "pretrained": False,
    "weights_path": None,
    "input_size": 64,
    "patch_size": 16,
    "embed_dim": 32,
    "mlp_dim": 32,
    "num_heads": 2,
    "depth": 1,
    "dropout": 0.0,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
}


@pytest.fixture(scope="session")
def trained_run(tiny_preprocessed) -> Path:
    """The tiny run shared with the other extras tests (trained once per session)."""
    return shared_run(tiny_preprocessed)


def faces_dir_of(run_dir: Path) -> Path:
    return Path(json.loads((run_dir / "metrics.json").read_text())["faces_dir"])


def load_checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)


def save_run(run_dir: Path, checkpoint: dict, metrics_from: Path | None = None) -> Path:
    """A run directory holding ``checkpoint`` (and a copy of another run's metrics.json)."""
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, run_dir / "checkpoints" / "best.ckpt")
    if metrics_from is not None:
        shutil.copy(metrics_from / "metrics.json", run_dir / "metrics.json")
    return run_dir / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def sensitive_run(trained_run, tmp_path_factory) -> Path:
    """The tiny run's config and data with a random-weight ViT, evaluated into its folder."""
    from deepfake_exp.tasks.evaluate import evaluate_checkpoint

    stored = load_checkpoint(trained_run)
    run_config = {**stored["run_config"], "model": TINY_VIT}
    cfg = OmegaConf.create(run_config)
    torch.manual_seed(0)
    module = instantiate(cfg.module, backbone=instantiate(cfg.model))
    state = module.state_dict()
    state["head.1.weight"] = state["head.1.weight"] * 10  # spread P(fake) over [0, 0.5]
    run_dir = tmp_path_factory.mktemp("sensitive_run")
    checkpoint = {
        "run_config": run_config,
        "state_dict": state,
        "data_fingerprint": stored.get("data_fingerprint"),
    }
    ckpt = save_run(run_dir, checkpoint)
    evaluate_checkpoint(ckpt, run_dir, make_plots=False, calibrate=False, num_workers=0)
    return run_dir


def edited_run(run_dir: Path, dst: Path, edit: Callable[[dict], None]) -> Path:
    """A copy of ``run_dir``'s checkpoint (and metrics.json) with ``edit`` applied."""
    checkpoint = load_checkpoint(run_dir)
    edit(checkpoint)
    return save_run(dst, checkpoint, metrics_from=run_dir)


def scored_test_videos(run_dir: Path) -> pd.DataFrame:
    """Test videos with faces, cropped at their own boxes.

    A fake cropped at its original's boxes (manifest ``box_source == "original"``) is left
    out: predict scores a file on its own, with no original to take boxes from.
    """
    faces_dir = faces_dir_of(run_dir)
    videos = pd.read_csv(faces_dir / "videos.csv")
    manifest = pd.read_csv(faces_dir / "manifest.csv")
    if "box_source" in manifest:
        borrowed = set(manifest.loc[manifest["box_source"] == "original", "video_id"])
        videos = videos[~videos["video_id"].isin(borrowed)]
    return videos[(videos["split"] == "test") & (videos["num_faces"] > 0)]


def manifest_crop(faces_dir: Path, face_path: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(faces_dir / face_path)), cv2.COLOR_BGR2RGB)


def assert_crops_match_preprocessing(predictor, run_dir: Path, video) -> None:
    """Same faces (frame, face index) and the same pixels as the crops on disk."""
    faces_dir = faces_dir_of(run_dir)
    manifest = pd.read_csv(faces_dir / "manifest.csv")
    rows = manifest[manifest["video_id"] == video.video_id]
    if "eval_frame" in rows:  # the sample val/test are scored on
        rows = rows[rows["eval_frame"].astype(bool)]
    expected = {(int(r.frame), int(r.face_index)): r.face_path for r in rows.itertuples()}
    found = predictor.faces(video.path)
    got = {
        (int(found.decoded.indices[pos]), face): crop
        for pos, face, crop in zip(found.positions, found.face_indices, found.crops, strict=True)
    }
    assert sorted(got) == sorted(expected), video.video_id
    for key, crop in got.items():
        reference = manifest_crop(faces_dir, expected[key])
        assert crop.shape == reference.shape
        assert np.array_equal(crop, reference), f"{video.video_id} {key}: crop differs"


@slow
def test_predict_reproduces_preprocessing_crops_and_evaluation_scores(sensitive_run) -> None:
    eval_faces = pd.read_csv(sensitive_run / "predictions_test_faces.csv")
    eval_videos = pd.read_csv(sensitive_run / "predictions_test_videos.csv").set_index("video_id")
    assert eval_faces["prob"].max() - eval_faces["prob"].min() > 0.05, "scores must tell apart"
    metrics = json.loads((sensitive_run / "metrics.json").read_text())
    predictor = predictor_module.Predictor(sensitive_run / "checkpoints" / "best.ckpt")
    assert predictor.crop_settings_source.endswith("extraction.json")
    assert predictor.threshold == metrics["thresholds_from_val"]["video"]
    assert predictor.threshold_source == "val, tta=none (training run)"

    videos = scored_test_videos(sensitive_run)
    assert len(videos) >= 2
    for video in videos.itertuples():
        assert_crops_match_preprocessing(predictor, sensitive_run, video)
        result = predictor.predict_file(video.path)
        assert result["status"] == "ok"
        faces = eval_faces[eval_faces["video_id"] == video.video_id]
        by_face = {(int(r.frame), int(r.face_index)): r.prob for r in faces.itertuples()}
        scores = {(s["frame"], s["face_index"]): s["prob"] for s in result["frame_scores"]}
        assert sorted(scores) == sorted(by_face)
        for key, prob in scores.items():
            assert prob == pytest.approx(by_face[key], abs=SCORE_ATOL), (video.video_id, key)
        video_prob = eval_videos.loc[video.video_id, "prob"]
        assert result["fake_prob"] == pytest.approx(video_prob, abs=SCORE_ATOL)
        assert result["prediction"] == ("FAKE" if video_prob >= predictor.threshold else "REAL")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A face video; its first frame as ``a/000.png`` and ``b/000.png``; bad and empty inputs."""
    from deepfake_exp.data.synthetic import SyntheticConfig, generate_dataset

    root = tmp_path_factory.mktemp("media")
    config = SyntheticConfig(
        num_identities=1, videos_per_identity=1, fakes_per_real=0, num_frames=6
    )
    generate_dataset(root / "synthetic", config, workers=1)
    video = sorted((root / "synthetic").glob("*.mp4"))[0]
    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    capture.release()
    assert ok, "the generated video must decode"
    for name in ("a", "b"):
        (root / name).mkdir()
        cv2.imwrite(str(root / name / "000.png"), frame)
    (root / "a" / "notes.txt").write_text("not media: a folder expands to media files only")
    (root / "empty").mkdir()
    (root / "empty" / "readme.txt").write_text("no media in here")
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    blank = root / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 127, np.uint8))
    unsupported = root / "table.csv"
    unsupported.write_text("a,b\n1,2\n")
    return {
        "video": video,
        "a": root / "a",
        "b": root / "b",
        "empty": root / "empty",
        "corrupt": corrupt,
        "blank": blank,
        "unsupported": unsupported,
        "missing": root / "missing.mp4",
    }


def predict_cfg(tmp_path: Path, run_dir: Path, inputs: list[Path], *overrides: str):
    cfg = compose_config("predict", [f"run_dir={run_dir}", *overrides], tmp_path)
    with open_dict(cfg):
        cfg.inputs = [str(p) for p in inputs]
    return cfg


@slow
def test_every_input_gets_a_row_and_face_less_files_score_one_half(
    sensitive_run, media, tmp_path
) -> None:
    names = ["video", "a", "b", "empty", "corrupt", "blank", "unsupported", "missing"]
    out = tmp_path / "out"
    results = predict.run_predictions(
        predict_cfg(tmp_path, sensitive_run, [media[n] for n in names]), out
    )
    predict.require_scored(results, out)  # at least one scored: no error
    statuses = [(Path(r["path"]).name, r["status"], r["reason"]) for r in results]
    assert statuses == [
        (media["video"].name, "ok", None),
        ("000.png", "ok", None),  # a/: its image, not notes.txt
        ("000.png", "ok", None),  # b/
        ("empty", "no_media", "no_media"),
        ("corrupt.mp4", "error", "unreadable_video"),
        ("blank.png", "no_face", "no_face"),
        ("table.csv", "error", "unsupported_type"),
        ("missing.mp4", "error", "missing_file"),
    ]
    blank = results[5]
    assert blank["fake_prob"] == 0.5  # as evaluation scores a face-less video
    assert blank["prediction"] == ("FAKE" if blank["threshold"] <= 0.5 else "REAL")
    video = results[0]
    assert video["frames_sampled"] == 3  # the run's extraction.num_frames (TINY_DATASET)
    assert video["num_faces"] == len(video["frame_scores"]) >= 1
    frame_probs = [s["prob"] for s in video["frame_scores"]]
    assert video["fake_prob"] == pytest.approx(np.mean(frame_probs))  # the run aggregates by mean

    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == len(names)
    assert table["status"].tolist() == [r["status"] for r in results]
    assert set(table["threshold_source"]) == {"val, tta=none (training run)"}
    saved = json.loads((out / "predictions.json").read_text())
    assert [f["status"] for f in saved["files"]] == table["status"].tolist()
    printed = predict.format_table(results)
    for shown in ("a/000.png", "b/000.png", "empty", "synthetic/" + media["video"].name):
        assert f"| {shown} " in printed, shown


@slow
def test_tta_threshold_is_chosen_on_val_with_the_same_tta(sensitive_run, tmp_path) -> None:
    from deepfake_exp.tasks.evaluate import evaluate_checkpoint

    ckpt = sensitive_run / "checkpoints" / "best.ckpt"
    predictor = predictor_module.Predictor(ckpt, tta="flip")
    reference = evaluate_checkpoint(
        ckpt, tmp_path / "eval", make_plots=False, calibrate=False, num_workers=0, tta="flip"
    )
    no_tta = json.loads((sensitive_run / "metrics.json").read_text())["thresholds_from_val"]
    assert reference["thresholds_from_val"]["video"] != no_tta["video"]  # the test can fail
    assert predictor.threshold == pytest.approx(reference["thresholds_from_val"]["video"])
    assert predictor.threshold_source == "val, tta=flip (chosen now on the run's val split)"


@slow
def test_tta_threshold_refuses_a_faces_folder_that_changed(sensitive_run, tmp_path) -> None:
    """Choosing it reads the run's manifest: that must still be the data the run trained on."""

    def other_data(checkpoint: dict) -> None:
        stored = checkpoint.get("data_fingerprint") or {}
        checkpoint["data_fingerprint"] = {**stored, "manifest_sha256": "0" * 64}

    ckpt = edited_run(sensitive_run, tmp_path / "run", other_data)
    with pytest.raises(DataMismatchError, match="manifest_sha256"):
        predictor_module.Predictor(ckpt, tta="flip")
    assert predictor_module.Predictor(ckpt).threshold_source.startswith(
        "val, tta=none"
    )  # no manifest read


@slow
def test_without_the_faces_folder_predict_uses_the_checkpoint_settings(
    sensitive_run, tmp_path
) -> None:
    """A checkpoint used elsewhere: crops from its own config (``jpeg`` is JPEG too), and the
    TTA threshold falls back to the run's no-TTA one, saying so."""

    def elsewhere(checkpoint: dict) -> None:
        config = checkpoint["run_config"]
        config["data"]["faces_dir"] = str(tmp_path / "not_here")
        config["extraction"]["image_format"] = "jpeg"

    ckpt = edited_run(sensitive_run, tmp_path / "run", elsewhere)
    predictor = predictor_module.Predictor(ckpt, tta="flip")
    assert predictor.crop_settings_source.startswith("checkpoint run config (no extraction.json")
    assert predictor.extraction.image_format == "jpg"
    assert_crops_match_preprocessing(
        predictor, sensitive_run, next(scored_test_videos(sensitive_run).itertuples())
    )
    no_tta = json.loads((sensitive_run / "metrics.json").read_text())["thresholds_from_val"]
    assert predictor.threshold == no_tta["video"]
    assert predictor.threshold_source == "val, tta=none (not this tta=flip)"


@slow
def test_a_re_extracted_faces_folder_is_not_read_for_crop_settings(sensitive_run, tmp_path) -> None:
    def re_extracted(checkpoint: dict) -> None:
        stored = checkpoint.get("data_fingerprint") or {}
        checkpoint["data_fingerprint"] = {**stored, "extraction": "f" * 64}

    predictor = predictor_module.Predictor(
        edited_run(sensitive_run, tmp_path / "run", re_extracted)
    )
    assert predictor.crop_settings_source == (
        "checkpoint run config (faces folder re-extracted since training)"
    )


@slow
def test_predict_exits_non_zero_when_nothing_could_be_scored(
    sensitive_run, media, tmp_path
) -> None:
    out = tmp_path / "out"
    results = predict.run_predictions(
        predict_cfg(tmp_path, sensitive_run, [media["corrupt"], media["blank"]]), out
    )
    with pytest.raises(predict.NothingScoredError, match="none of 2"):
        predict.require_scored(results, out)
    assert pd.read_csv(out / "predictions.csv")["status"].tolist() == ["error", "no_face"]

    # The entrypoint body raises too (Hydra turns that into a non-zero exit status), after
    # printing the table and writing the files.
    cfg = predict_cfg(tmp_path, sensitive_run, [media["corrupt"]])
    with pytest.raises(predict.NothingScoredError):
        entrypoint.main.__wrapped__(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "predictions.json").read_text())
    assert [f["reason"] for f in saved["files"]] == ["unreadable_video"]


def test_display_paths_are_relative_to_the_common_folder(tmp_path) -> None:
    paths = [tmp_path / "x" / "a" / "000.png", tmp_path / "x" / "b" / "000.png"]
    assert predict.display_paths(paths) == ["a/000.png", "b/000.png"]
    assert predict.display_paths([tmp_path / "one.mp4"]) == ["one.mp4"]


def test_both_jpeg_spellings_redo_the_jpeg_round_trip() -> None:
    assert (
        crop_settings.is_jpeg("jpg")
        and crop_settings.is_jpeg("jpeg")
        and crop_settings.is_jpeg("JPEG")
    )
    assert not crop_settings.is_jpeg("png")


def test_a_folder_without_media_is_kept_as_an_input(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.png").write_bytes(b"")
    assert predictor_module.expand_inputs([tmp_path / "empty", tmp_path / "full"]) == [
        tmp_path / "empty",
        tmp_path / "full" / "x.png",
    ]


@pytest.mark.parametrize("image_format", ["jpg", "png"])
def test_as_saved_is_what_reading_the_crop_file_gives(tmp_path, image_format) -> None:
    from deepfake_exp.utils.images import as_saved

    crop = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    path = tmp_path / f"crop.{image_format}"
    params = [cv2.IMWRITE_JPEG_QUALITY, 80] if image_format == "jpg" else []
    cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), params)
    from_file = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(as_saved(crop, image_format, 80), from_file)
    assert np.array_equal(from_file, crop) == (image_format == "png")  # JPEG is lossy
