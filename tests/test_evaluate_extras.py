"""Evaluation extras: val-only choices, calibration, cross-dataset rows, TTA, Grad-CAM.

``trained_run`` (one tiny mobilenet_v2 run, 1 epoch at 64 px) is shared with the predict,
export and report tests through ``shared_run``; ``train_run`` memoises runs, so the whole
session trains it once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict
from torch import nn

from deepfake_exp.evaluation.calibration import fit_temperature
from deepfake_exp.evaluation.metrics import binary_metrics, clipped_log_loss
from tests.conftest import TINY_DATASET, compose_config

FAST_TRAIN = [
    *TINY_DATASET,
    "model.input_size=64",
    "trainer.max_epochs=1",
    "data.batch_size=16",
    "data.num_workers=0",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.enable_model_summary=false",
]
_RUNS: dict[str, Path] = {}


def train_run(root: Path, name: str, overrides: tuple[str, ...] = ()) -> Path:
    """Train (once per session) a tiny run into ``root/name`` as the train entrypoint would."""
    if name not in _RUNS:
        from deepfake_exp.tasks.train import train
        from deepfake_exp.utils.run import save_run_info

        cfg = compose_config("train", [*FAST_TRAIN, *overrides], root)
        with open_dict(cfg):
            cfg.paths.output_dir = str(root / name)
        save_run_info(cfg.paths.output_dir, cfg)
        train(cfg)
        _RUNS[name] = root / name
    return _RUNS[name]


def shared_run(tiny_preprocessed: tuple[Path, dict]) -> Path:
    """The tiny run every extras test module uses (trained on first request)."""
    return train_run(tiny_preprocessed[0], "extras_run_a")


@pytest.fixture(scope="session")
def trained_run(tiny_preprocessed) -> Path:
    """A finished tiny run directory (checkpoint, metrics.json, plots, TensorBoard)."""
    return shared_run(tiny_preprocessed)


def _faces_dir(run_dir: Path) -> Path:
    return Path(json.loads((run_dir / "metrics.json").read_text())["faces_dir"])


# ------------------------------------------------------------------------ val-only choices


@pytest.mark.slow
def test_threshold_and_temperature_come_from_val_only(trained_run, tmp_path, monkeypatch) -> None:
    import deepfake_exp.tasks.evaluate as evaluate

    seen: list[tuple[np.ndarray, np.ndarray]] = []
    real_select = evaluate.select_threshold

    def spy(y_true, y_prob, criterion="f1"):
        seen.append((np.asarray(y_true), np.asarray(y_prob, dtype=np.float64)))
        return real_select(y_true, y_prob, criterion)

    monkeypatch.setattr(evaluate, "select_threshold", spy)
    out = tmp_path / "eval"
    metrics = evaluate.evaluate_checkpoint(
        trained_run / "checkpoints" / "best.ckpt", out, make_plots=False, num_workers=0
    )
    val_faces = pd.read_csv(out / "predictions_val_faces.csv")
    val_videos = pd.read_csv(out / "predictions_val_videos.csv")
    test_videos = pd.read_csv(out / "predictions_test_videos.csv")
    assert len(seen) == 2, "one threshold per level, nothing else"
    for (labels, probs), val in zip(seen, (val_faces, val_videos), strict=True):
        np.testing.assert_array_equal(labels, val["label"].to_numpy())
        np.testing.assert_allclose(probs, val["prob"].to_numpy(), rtol=0, atol=1e-12)
    assert set(test_videos["video_id"]).isdisjoint(val_videos["video_id"])
    chosen = metrics["thresholds_from_val"]
    assert metrics["test"]["video"]["threshold"] == chosen["video"]
    assert metrics["test"]["face"]["threshold"] == chosen["face"]
    expected = binary_metrics(test_videos["label"], test_videos["prob"], chosen["video"])
    assert metrics["test"]["video"]["accuracy"] == pytest.approx(expected["accuracy"])

    calibration = metrics["calibration"]
    assert calibration["temperature"] > 0 and calibration["face"]["temperature"] > 0
    assert calibration["temperature"] == pytest.approx(
        fit_temperature(val_videos["prob"], val_videos["label"], input_kind="prob")
    )
    assert calibration["test_log_loss_before"] == pytest.approx(
        metrics["test"]["video"]["log_loss"]
    )
    assert calibration["test_log_loss_after"] == pytest.approx(
        clipped_log_loss(test_videos["label"], test_videos["prob_calibrated"])
    )
    for key in ("test_ece_before", "test_ece_after"):
        assert 0.0 <= calibration[key] <= 1.0


@pytest.mark.slow
def test_training_run_has_calibration_plots_and_gradcam_in_png_and_tensorboard(
    trained_run,
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["calibration"]["temperature"] > 0
    for name in ("gradcam", "reliability_video", "reliability_video_calibrated"):
        image = cv2.imread(str(trained_run / "plots" / f"{name}.png"))
        assert image is not None and image.shape[0] > 100, name
    events = EventAccumulator(str(trained_run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert {"eval/gradcam", "eval/reliability_video"} <= set(events.Tags()["images"])


# ------------------------------------------------------------------------ cross-dataset


def _copy_faces(
    source: Path, target: Path, transform=None, keep=None, dataset: str | None = None
) -> Path:
    """Another folder made from existing crops (optionally mirrored / a subset).

    ``dataset`` renames the videos' ``source``: the copy then stands for another dataset's
    videos; without it, the copy holds faces of the *same* source videos.
    """
    manifest = pd.read_csv(source / "manifest.csv", dtype={"video_id": str, "group": str})
    videos = pd.read_csv(source / "videos.csv", dtype={"video_id": str, "group": str})
    if keep is not None:
        manifest = manifest[manifest["video_id"].isin(keep)]
        videos = videos[videos["video_id"].isin(keep)]
    if dataset is not None:
        manifest["source"] = videos["source"] = dataset
    for rel in manifest["face_path"]:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        if transform is None:
            shutil.copy(source / rel, target / rel)
        else:
            cv2.imwrite(str(target / rel), transform(cv2.imread(str(source / rel))))
    manifest.to_csv(target / "manifest.csv", index=False)
    videos.to_csv(target / "videos.csv", index=False)
    return target


@pytest.mark.slow
def test_cross_dataset_rows_use_all_faces_and_the_val_threshold(trained_run, tmp_path) -> None:
    from deepfake_exp.tasks.evaluate import evaluate_checkpoint

    own = _faces_dir(trained_run)
    faces_root = tmp_path / "faces"
    flip = lambda image: image[:, ::-1]  # noqa: E731
    _copy_faces(own, faces_root / "mirrored", transform=flip, dataset="other_dataset")
    all_videos = pd.read_csv(own / "videos.csv")
    keep = all_videos.loc[all_videos["status"] == "ok", "video_id"].tolist()[:5]
    subset = _copy_faces(own, tmp_path / "elsewhere" / "subset", keep=keep, dataset="elsewhere")
    manifest = pd.read_csv(subset / "manifest.csv")  # one listed video loses its faces
    manifest[manifest["video_id"] != keep[0]].to_csv(subset / "manifest.csv", index=False)

    out = tmp_path / "eval"
    metrics = evaluate_checkpoint(
        trained_run / "checkpoints" / "best.ckpt",
        out,
        make_plots=True,
        num_workers=0,
        eval_datasets=["mirrored", str(subset)],
        faces_root=faces_root,
        calibrate=False,
        gradcam_faces=0,
    )
    rows = metrics["cross_dataset"]
    table = pd.read_csv(out / "cross_dataset.csv")
    assert table["dataset"].tolist() == [r["dataset"] for r in rows]
    assert len(rows) == 3 and rows[0]["splits"] == "test" and rows[0]["dataset"].endswith("test)")
    assert rows[0]["roc_auc"] == pytest.approx(metrics["test"]["video"]["roc_auc"], nan_ok=True)
    mirrored, sub = rows[1], rows[2]
    assert mirrored["splits"] == sub["splits"] == "all"
    assert mirrored["videos"] == len(all_videos)  # every split, not only test
    assert mirrored["faces"] == len(pd.read_csv(own / "manifest.csv"))
    assert sub["videos"] == 5 and sub["videos_without_face"] == 1
    for row in (mirrored, sub):
        assert row["threshold"] == metrics["thresholds_from_val"]["video"]
        videos = pd.read_csv(out / "cross_dataset" / f"{row['dataset']}_videos.csv")
        expected = binary_metrics(videos["label"], videos["prob"], row["threshold"])
        for key in ("accuracy", "precision", "recall", "f1", "log_loss"):
            assert row[key] == pytest.approx(expected[key])
    sub_videos = pd.read_csv(out / "cross_dataset" / "subset_videos.csv")
    assert sub_videos.set_index("video_id").loc[keep[0], "prob"] == 0.5
    assert "ALL its faces" in (out / "cross_dataset.md").read_text()
    assert (out / "plots" / "cross_dataset_roc.png").is_file()
    for key in ("roc_auc", "face_roc_auc"):  # frame and video AUC, each with its interval
        assert all(f"{key}_ci" in row for row in rows)
        low, high = mirrored[f"{key}_ci"]  # every split: enough groups to resample
        assert low <= mirrored[key] <= high
    assert table.loc[1, "face_roc_auc_ci"].startswith("[")


@pytest.mark.slow
def test_cross_dataset_leaves_out_videos_the_run_saw_whatever_the_folder(
    trained_run, tmp_path
) -> None:
    """Two faces folders of the same source videos (York's and Emory's crops of one DFDC)."""
    from deepfake_exp.tasks.evaluate import evaluate_checkpoint

    own = _faces_dir(trained_run)
    faces_root = tmp_path / "faces"
    _copy_faces(own, faces_root / "same_videos", transform=lambda image: image[:, ::-1])
    listed = pd.read_csv(own / "videos.csv", dtype={"video_id": str})
    metrics = evaluate_checkpoint(
        trained_run / "checkpoints" / "best.ckpt",
        tmp_path / "eval",
        make_plots=False,
        num_workers=0,
        eval_datasets=["same_videos"],
        faces_root=faces_root,
        calibrate=False,
        gradcam_faces=0,
    )
    row = metrics["cross_dataset"][1]
    seen = listed["split"].isin(["train", "val"])
    assert row["videos_seen_excluded"] == int(seen.sum()) > 0
    scored = pd.read_csv(tmp_path / "eval" / "cross_dataset" / "same_videos_videos.csv")
    assert set(scored["video_id"].astype(str)) == set(listed.loc[~seen, "video_id"])
    assert row["videos"] == int((~seen).sum())


# ------------------------------------------------------------------------ honest numbers


def _crafted_checkpoint(run_dir: Path, target: Path, edit) -> Path:
    """A copy of the run's best checkpoint with ``edit(checkpoint)`` applied."""
    checkpoint = torch.load(
        run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True
    )
    edit(checkpoint)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, target)
    return target


@pytest.mark.slow
def test_every_test_metric_has_a_group_bootstrap_interval(trained_run, tmp_path) -> None:
    from deepfake_exp.evaluation.bootstrap import bootstrap_ci
    from deepfake_exp.evaluation.scores import BootstrapSettings
    from deepfake_exp.evaluation.tables import format_summary
    from deepfake_exp.tasks.evaluate import evaluate_checkpoint

    # the training run's own evaluation: settings recorded, intervals for every metric
    recorded = json.loads((trained_run / "metrics.json").read_text())
    assert recorded["bootstrap"] == {
        "n_resamples": 1000, "seed": 0, "level": 0.95, "unit": "group",
    }  # fmt: skip
    names = ("roc_auc", "accuracy", "log_loss", "average_precision", "f1", "eer")
    assert all(f"{name}_ci" in recorded["test"]["video"] for name in names)

    # each video its own identity, so the tiny test split has several groups to resample
    own = _faces_dir(trained_run)
    copy = _copy_faces(own, tmp_path / "faces" / "one_identity_per_video")
    for table in ("manifest.csv", "videos.csv"):
        frame = pd.read_csv(copy / table, dtype={"video_id": str})
        frame.assign(group="id_" + frame["video_id"]).to_csv(copy / table, index=False)
    out = tmp_path / "eval"
    metrics = evaluate_checkpoint(
        trained_run / "checkpoints" / "best.ckpt",
        out,
        faces_dir=copy,
        make_plots=False,
        num_workers=0,
        calibrate=False,
        bootstrap=BootstrapSettings(n_resamples=300, seed=7),
    )
    assert metrics["bootstrap"]["n_resamples"] == 300 and metrics["bootstrap"]["seed"] == 7
    videos = pd.read_csv(out / "predictions_test_videos.csv", dtype={"group": str})
    faces = pd.read_csv(out / "predictions_test_faces.csv", dtype={"group": str})
    assert {"video_id", "label", "prob", "group"} <= set(videos.columns)
    assert (videos["group"] == "id_" + videos["video_id"].astype(str)).all()
    assert faces["group"].nunique() < len(faces)  # faces of one identity resample together
    for level, frame in (("video", videos), ("face", faces)):
        block = metrics["test"][level]
        assert block["n_groups"] == frame["group"].nunique() > 1
        for name in names:
            expected = bootstrap_ci(
                name,
                frame["label"],
                frame["prob"],
                frame["group"],
                n_resamples=300,
                seed=7,
                threshold=block["threshold"],
            )
            if expected["low"] is None:
                assert block[f"{name}_ci"] is None
            else:
                assert block[f"{name}_ci"] == pytest.approx([expected["low"], expected["high"]])
    video = metrics["test"]["video"]
    summary = format_summary(metrics)
    if video["roc_auc_ci"] is not None:
        low, high = video["roc_auc_ci"]
        assert f"ROC-AUC {video['roc_auc']:.3f} [{low:.2f}, {high:.2f}]" in summary
    assert f"in {video['n_groups']} groups" in summary


@pytest.mark.slow
def test_failed_inputs_are_counted_and_left_out_only_faceless_videos_score_half(
    trained_run, tmp_path
) -> None:
    from deepfake_exp.evaluation.tables import format_summary
    from deepfake_exp.tasks.evaluate import evaluate_checkpoint

    own = _faces_dir(trained_run)
    copy = _copy_faces(own, tmp_path / "faces" / "with_failures")
    videos = pd.read_csv(copy / "videos.csv", dtype={"video_id": str, "group": str})
    ghosts = pd.DataFrame(
        {
            "video_id": ["ghost_noface", "ghost_missing", "ghost_outside"],
            "label": [1, 0, 1],
            "group": ["ghost_1", "ghost_2", "ghost_3"],
            "split": "test",
            "source": videos["source"].iloc[0],
            "status": "failed",
            "num_faces": 0,
            "path": ["a.mp4", "b.mp4", "../c.mp4"],
        }
    )
    pd.concat([videos, ghosts]).to_csv(copy / "videos.csv", index=False)
    failures = ghosts[["video_id", "path", "label"]].assign(
        reason=["no_face", "missing_file", "outside_root"], detail=""
    )
    failures.to_csv(copy / "failures.csv", index=False)

    base = json.loads((trained_run / "metrics.json").read_text())["test"]
    out = tmp_path / "eval"
    metrics = evaluate_checkpoint(
        trained_run / "checkpoints" / "best.ckpt",
        out,
        faces_dir=copy,
        make_plots=False,
        num_workers=0,
        calibrate=False,
    )
    test = metrics["test"]
    assert test["video"]["n"] == base["video"]["n"] + 1  # only the face-less one is scored
    assert test["video"]["n_no_face"] == base["video"].get("n_no_face", 0) + 1
    assert test["n_failed"] == base.get("n_failed", 0) + 2
    assert test["failed_reasons"] == {"missing_file": 1, "outside_root": 1}
    scored = pd.read_csv(out / "predictions_test_videos.csv").set_index("video_id")
    assert scored.loc["ghost_noface", "prob"] == 0.5
    assert "ghost_missing" not in scored.index and "ghost_outside" not in scored.index
    failed = pd.read_csv(out / "failed_videos.csv")
    assert set(failed["video_id"]) >= {"ghost_missing", "ghost_outside"}
    assert "2 failed (missing_file 1, outside_root 1)" in format_summary(metrics)
    assert metrics["data_check"] == "other_faces_dir"


@pytest.mark.slow
def test_evaluation_caps_faces_per_video_like_training_and_checks_the_data(
    trained_run, tmp_path
) -> None:
    from deepfake_exp.runs import DataMismatchError, data_fingerprint
    from deepfake_exp.tasks.evaluate import evaluate_checkpoint

    own = _faces_dir(trained_run)
    fingerprint = data_fingerprint(own)

    def capped(checkpoint: dict) -> None:
        checkpoint["run_config"]["data"]["max_faces_per_video"] = 1
        checkpoint["data_fingerprint"] = fingerprint

    ckpt = _crafted_checkpoint(trained_run, tmp_path / "capped.ckpt", capped)
    metrics = evaluate_checkpoint(
        ckpt, tmp_path / "eval", make_plots=False, num_workers=0, calibrate=False
    )
    manifest = pd.read_csv(own / "manifest.csv", dtype={"video_id": str})
    test_videos_with_faces = manifest.loc[manifest["split"] == "test", "video_id"].nunique()
    assert (manifest.groupby("video_id").size() > 1).any()  # the cap has something to cut
    assert metrics["max_faces_per_video"] == 1
    assert metrics["test"]["face"]["n"] == test_videos_with_faces
    assert metrics["data_check"] == "match"

    def resplit(checkpoint: dict) -> None:  # as if preprocessing ran again with another seed
        checkpoint["data_fingerprint"] = {**fingerprint, "splits_sha256": "0" * 64}

    stale = _crafted_checkpoint(trained_run, tmp_path / "stale.ckpt", resplit)
    with pytest.raises(DataMismatchError, match="splits_sha256"):
        evaluate_checkpoint(stale, tmp_path / "refused", make_plots=False, num_workers=0)
    assert not (tmp_path / "refused" / "metrics.json").exists()


def test_unknown_eval_dataset_names_the_preprocess_command(tmp_path) -> None:
    from deepfake_exp.evaluation.cross_dataset import resolve_faces_dir

    with pytest.raises(FileNotFoundError, match="deepfake_exp.preprocess"):
        resolve_faces_dir("never_preprocessed", tmp_path)


# ------------------------------------------------------------------------ TTA


class _Pixels(nn.Module):
    """A backbone that passes the flattened image on, with the normalisation TTA pads with."""

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)


class _LinearDetector(nn.Module):
    """P(fake) = sigmoid(<w, image>) with random w: sensitive to every pixel, not mirror-symmetric."""

    def __init__(self, size: int = 32) -> None:
        super().__init__()
        self.backbone = _Pixels()
        self.head = nn.Linear(3 * size * size, 1, bias=False)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            self.head.weight.copy_(torch.randn(1, 3 * size * size, generator=generator) / size)
        self.hparams = {"head": "sigmoid"}

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.backbone(images))[:, 0])


@pytest.fixture
def small_detector() -> _LinearDetector:
    return _LinearDetector()


def test_flip_tta_changes_nothing_for_a_mirror_symmetric_input(small_detector) -> None:
    from deepfake_exp.inference.tta import TTAModel

    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    symmetric = (images + images.flip(3)) / 2
    with torch.no_grad():
        plain = TTAModel(small_detector, "none")(symmetric)
        flipped = TTAModel(small_detector, "flip")(symmetric)
        asymmetric_plain = TTAModel(small_detector, "none")(images)
        asymmetric_flip = TTAModel(small_detector, "flip")(images)
    torch.testing.assert_close(flipped, plain, rtol=0, atol=1e-6)
    assert not torch.allclose(asymmetric_flip, asymmetric_plain, atol=1e-4)


def test_york_tta_averages_six_views_and_pads_with_black(small_detector) -> None:
    from deepfake_exp.inference.tta import TTAModel, scale_view

    calls = []
    small_detector.backbone.register_forward_pre_hook(lambda _, args: calls.append(args[0]))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        probs = TTAModel(small_detector, "york")(images)
        assert probs.shape == (2,) and ((probs >= 0) & (probs <= 1)).all()
        assert len(calls) == 6
        assert torch.equal(calls[0], images) and torch.equal(calls[3], images.flip(3))
        views = list(calls)
        expected = torch.stack([small_detector.predict_proba(view) for view in views]).mean(0)
    torch.testing.assert_close(probs, expected)

    mean = torch.tensor(small_detector.backbone.mean).view(1, 3, 1, 1)
    std = torch.tensor(small_detector.backbone.std).view(1, 3, 1, 1)
    black = (-mean / std).view(3)
    zoomed_out = scale_view(images, black, scale=0.9)
    torch.testing.assert_close(
        zoomed_out[:, :, 0, 0] * std.view(1, 3) + mean.view(1, 3),
        torch.zeros(2, 3),
        rtol=0,
        atol=1e-5,
    )
    assert not torch.allclose(scale_view(images, black, scale=1.1), images)


def test_unknown_tta_is_rejected(small_detector) -> None:
    from deepfake_exp.inference.tta import TTAModel

    with pytest.raises(ValueError, match="york"):
        TTAModel(small_detector, "rotate")


@pytest.mark.slow
def test_evaluate_with_york_tta_runs_and_records_it(trained_run, tmp_path) -> None:
    from deepfake_exp.tasks.evaluate import evaluate_checkpoint

    plain = json.loads((trained_run / "metrics.json").read_text())
    metrics = evaluate_checkpoint(
        trained_run / "checkpoints" / "best.ckpt",
        tmp_path,
        make_plots=False,
        num_workers=0,
        tta="york",
    )
    assert metrics["tta"] == "york" and plain["tta"] == "none"
    assert metrics["test"]["video"]["n"] == plain["test"]["video"]["n"]
    assert 0.0 <= metrics["test"]["video"]["log_loss"] < 35.0


# ------------------------------------------------------------------------ Grad-CAM / rollout


class _SpotDetector(nn.Module):
    """Fake evidence = mean brightness of channel 0 after a conv: CAM must find the bright spot."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.head = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 1, 1] = 1.0  # channel 0 copies the red channel
            self.conv.weight[1:, 1] = 0.1
            self.head.weight.zero_()
            self.head.weight[1, 0] = 1.0  # fake logit = pooled channel 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_gradcam_peaks_where_the_fake_evidence_is() -> None:
    from deepfake_exp.evaluation.gradcam import gradcam_maps

    model = _SpotDetector()
    images = torch.zeros(2, 3, 32, 32)
    images[0, 0, 2:10, 2:10] = 1.0  # top-left spot
    images[1, 0, 20:28, 22:30] = 1.0  # bottom-right spot
    maps = gradcam_maps(model, images, model.conv)
    assert maps.shape == (2, 32, 32) and maps.min() >= 0.0 and maps.max() <= 1.0
    assert maps[0, 2:10, 2:10].mean() > 0.8 > maps[0, 16:, 16:].mean()
    assert maps[1, 20:28, 22:30].mean() > 0.8 > maps[1, :16, :16].mean()


def test_vit_gets_attention_rollout_and_cnn_gets_gradcam_on_the_last_conv_block() -> None:
    from deepfake_exp.evaluation.gradcam import explain, last_conv_block

    torch.manual_seed(0)  # random weights: an unlucky draw gives an all-zero Grad-CAM map
    for overrides, method in (
        (["model=vit", "model.input_size=32", "model.patch_size=8", "model.depth=2"], "rollout"),
        (["model=resnet18", "model.input_size=64"], "Grad-CAM"),
    ):
        cfg = compose_config("train", overrides)
        module = instantiate(cfg.module, backbone=instantiate(cfg.model)).eval()
        size = cfg.model.input_size
        maps, name = explain(module, module.backbone, torch.randn(2, 3, size, size))
        assert method in name and maps.shape == (2, size, size)
        assert np.isfinite(maps).all() and maps.max() == pytest.approx(1.0, abs=1e-5)
        if method == "Grad-CAM":
            assert last_conv_block(module.backbone.blocks()) is module.backbone.model.layer4[-1]


def test_cross_dataset_scores_only_the_label_independent_eval_sample(tmp_path, monkeypatch):
    """Per-class training frames (York: 40 per REAL) must not enter another set's scores."""
    import deepfake_exp.inference.scoring as scoring

    faces = tmp_path / "other"
    faces.mkdir()
    pd.DataFrame(
        {
            "video_id": ["a", "a", "b", "b"],
            "face_path": ["f/a0.png", "f/a1.png", "f/b0.png", "f/b1.png"],
            "label": [0, 0, 1, 1],
            "split": ["test"] * 4,
            "eval_frame": [True, False, True, True],
            "train_frame": [True, True, False, True],
        }
    ).to_csv(faces / "manifest.csv", index=False)
    scored = {}

    def fake_predict(module, manifest, *args, **kwargs):
        scored["faces"] = manifest["face_path"].tolist()
        return manifest.assign(prob=0.5)

    monkeypatch.setattr(scoring, "predict_faces", fake_predict)
    scoring.external_predictions(None, faces, None, "mean", "none", 4, 0)
    assert scored["faces"] == ["f/a0.png", "f/b0.png", "f/b1.png"]


def test_video_predictions_carry_tracks_to_track_max() -> None:
    """Two tracks in one video: track_max takes the worse track's mean, not the faces' mean."""
    from deepfake_exp.inference.scoring import video_predictions

    faces = pd.DataFrame(
        {
            "video_id": ["v"] * 4,
            "label": [1] * 4,
            "prob": [0.9, 0.7, 0.1, 0.1],
            "track_id": [0, 0, 1, 1],
        }
    )
    videos = video_predictions(faces, "track_max", None)
    assert videos["prob"].tolist() == pytest.approx([0.8])
    assert video_predictions(faces, "mean", None)["prob"].tolist() == pytest.approx([0.45])
