"""predict: videos and images scored with the training preprocessing; bad files reported."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from omegaconf import open_dict

import deepfake_exp.predict as predict
from tests.conftest import compose_config
from tests.test_evaluate_extras import shared_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def trained_run(tiny_preprocessed) -> Path:
    """The tiny run shared with the other extras tests (trained once per session)."""
    return shared_run(tiny_preprocessed)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A generated face video, a frame of it as PNG (in a folder), a corrupt mp4, a blank image."""
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
    folder = root / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "frame.png"), frame)
    (folder / "notes.txt").write_text("not media: a folder expands to media files only")
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    blank = root / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 127, np.uint8))
    unsupported = root / "table.csv"
    unsupported.write_text("a,b\n1,2\n")
    return {
        "video": video,
        "folder": folder,
        "corrupt": corrupt,
        "blank": blank,
        "unsupported": unsupported,
    }


def predict_cfg(tmp_path: Path, run_dir: Path, inputs: list[Path]):
    cfg = compose_config("predict", [f"run_dir={run_dir}"], tmp_path)
    with open_dict(cfg):
        cfg.inputs = [str(p) for p in inputs]
    return cfg


def test_predict_scores_video_and_image_and_reports_bad_files(trained_run, media, tmp_path) -> None:
    inputs = [
        media["video"],
        media["folder"],
        media["corrupt"],
        media["blank"],
        media["unsupported"],
    ]
    out = tmp_path / "out"
    results = predict.run_predictions(predict_cfg(tmp_path, trained_run, inputs), out)
    predict.require_scored(results, out)  # at least one scored: no error

    by_name = {Path(r["path"]).name: r for r in results}
    names = [media["video"].name, "frame.png", "corrupt.mp4", "blank.png", "table.csv"]
    assert list(by_name) == names  # input order; the folder gave its image, not notes.txt
    statuses = {name: r["status"] for name, r in by_name.items()}
    assert statuses == {
        media["video"].name: "ok",
        "frame.png": "ok",
        "corrupt.mp4": "error",
        "blank.png": "no_face",
        "table.csv": "error",
    }
    assert by_name["corrupt.mp4"]["reason"] == "unreadable_video"
    assert by_name["table.csv"]["reason"] == "unsupported_type"
    assert "no face" in by_name["blank.png"]["message"]

    video = by_name[media["video"].name]
    run_cfg = json.loads((trained_run / "metrics.json").read_text())
    assert video["frames_sampled"] == 3  # the run's extraction.num_frames (TINY_DATASET)
    assert video["num_faces"] == len(video["frame_scores"]) >= 1
    frame_probs = [s["prob"] for s in video["frame_scores"]]
    assert video["fake_prob"] == pytest.approx(np.mean(frame_probs))  # the run aggregates by mean
    assert video["threshold"] == run_cfg["thresholds_from_val"]["video"]
    assert video["prediction"] == ("FAKE" if video["fake_prob"] >= video["threshold"] else "REAL")
    image = by_name["frame.png"]
    assert image["num_faces"] == 1 and 0.0 <= image["fake_prob"] <= 1.0

    saved = json.loads((out / "predictions.json").read_text())
    assert [f["status"] for f in saved["files"]] == [r["status"] for r in results]
    assert saved["threshold_source"] == "val (training run)"
    table = pd.read_csv(out / "predictions.csv")
    assert table["status"].tolist() == [r["status"] for r in results]
    assert table.loc[0, "frame_scores"].count(":") == video["num_faces"]
    assert "no_face" in predict.format_table(results)


def test_predict_uses_the_training_crop_pipeline(trained_run, media, tmp_path) -> None:
    """A face the detector finds in a frame scores what the same crop scores in evaluation."""
    import torch

    predictor = predict.Predictor(trained_run / "checkpoints" / "best.ckpt")
    frame = cv2.cvtColor(cv2.imread(str(media["folder"] / "frame.png")), cv2.COLOR_BGR2RGB)
    faces = predictor._faces([frame])
    assert len(faces) == 1
    _, _, crop, _ = faces[0]
    assert crop.shape == (64, 64, 3)  # the run's extraction.crop_size
    with torch.no_grad():
        direct = predictor.model.module.predict_proba(predictor.transform(crop)[None]).item()
    result = predictor.predict_file(media["folder"] / "frame.png")
    assert result["fake_prob"] == pytest.approx(direct, abs=1e-6)


def test_predict_exits_non_zero_when_nothing_could_be_scored(trained_run, media, tmp_path) -> None:
    out = tmp_path / "out"
    results = predict.run_predictions(
        predict_cfg(tmp_path, trained_run, [media["corrupt"], media["blank"]]), out
    )
    with pytest.raises(predict.NothingScoredError, match="none of 2"):
        predict.require_scored(results, out)
    assert pd.read_csv(out / "predictions.csv")["status"].tolist() == ["error", "no_face"]

    # The entrypoint body raises too (Hydra turns that into a non-zero exit status), after
    # printing the table and writing the files.
    cfg = predict_cfg(tmp_path, trained_run, [media["corrupt"]])
    with pytest.raises(predict.NothingScoredError):
        predict.main.__wrapped__(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "predictions.json").read_text())
    assert [f["reason"] for f in saved["files"]] == ["unreadable_video"]
