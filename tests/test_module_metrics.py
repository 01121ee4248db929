"""Epoch metrics of the LightningModule: what checkpoint selection sees.

A one-class split must not yield a stand-in 0.5 ROC-AUC, and the video metrics must count the
split's face-less videos at 0.5 exactly as evaluation does (failed inputs left out).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from deepfake_exp.evaluation.aggregate import aggregate_video_scores
from deepfake_exp.evaluation.metrics import binary_metrics
from deepfake_exp.models.module import UndefinedMetricWarning
from tests.conftest import compose_config
from tests.test_sweeps import TINY_VIT


@pytest.fixture(scope="module")
def detector():
    from deepfake_exp.models.module import DeepfakeDetector

    return DeepfakeDetector(instantiate(compose_config("train", TINY_VIT).model))


def _attach(module, datamodule=None) -> None:
    """The module as ``tasks.train`` wires it: video ids through the datamodule adapter."""
    from deepfake_exp.tasks.train import DataModuleVideos

    module.trainer = SimpleNamespace(sanity_checking=False, world_size=1)
    module.eval_videos = DataModuleVideos(datamodule) if datamodule is not None else None
    module._warned.clear()


def _predictions(labels: list[int], probs: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"index": range(len(labels)), "label": labels, "prob": probs})


def test_one_class_val_auc_is_left_out_with_a_warning_not_logged_as_half(detector) -> None:
    _attach(detector)
    frame = _predictions([1, 1, 1, 1], [0.2, 0.9, 0.6, 0.7])
    with pytest.warns(UndefinedMetricWarning, match=r"val/auc is undefined.*0 real, 4 fake"):
        logged = detector.stage_metrics("val", frame)
    assert "val/auc" not in logged
    assert logged["val/acc"] == pytest.approx(0.75)  # defined metrics still logged
    assert all(np.isfinite(v) for v in logged.values())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not every epoch
        detector.stage_metrics("val", frame)


def test_epoch_end_logs_no_undefined_metric(detector, monkeypatch) -> None:
    _attach(detector)
    calls: list[dict] = []
    monkeypatch.setattr(detector, "log_dict", lambda values, **_: calls.append(values))
    detector._outputs["test"] = [
        {
            "index": torch.arange(3),
            "label": torch.zeros(3, dtype=torch.long),
            "prob": torch.tensor([0.1, 0.4, 0.7]),
        }
    ]
    with pytest.warns(UndefinedMetricWarning, match="test/auc is undefined"):
        detector.on_test_epoch_end()
    (logged,) = calls
    assert set(logged) == {"test/acc", "test/log_loss"}


def _faces_folder(root: Path) -> tuple[Path, pd.DataFrame]:
    """A video list with two extracted val videos, one face-less, one missing, one train."""
    videos = pd.DataFrame(
        {
            "video_id": ["a", "b", "c", "d", "e"],
            "label": [0, 1, 1, 0, 1],
            "group": ["g1", "g2", "g3", "g4", "g5"],
            "split": ["val", "val", "val", "val", "train"],
            "source": "synthetic",
            "status": ["ok", "ok", "failed", "failed", "ok"],
            "num_faces": [2, 2, 0, 0, 1],
        }
    )
    videos.to_csv(root / "videos.csv", index=False)
    failures = pd.DataFrame(
        {
            "video_id": ["c", "d"],
            "path": ["c.mp4", "d.mp4"],
            "label": [1, 0],
            "reason": ["no_face", "missing_file"],
            "detail": ["", ""],
        }
    )
    failures.to_csv(root / "failures.csv", index=False)
    faces = pd.DataFrame({"video_id": ["a", "a", "b", "b"], "label": [0, 0, 1, 1]})
    return root, faces


def test_val_video_metrics_count_faceless_videos_at_half_and_leave_failed_out(
    detector, tmp_path
) -> None:
    faces_dir, faces = _faces_folder(tmp_path)
    datamodule = SimpleNamespace(
        faces_dir=faces_dir, datasets={"val": SimpleNamespace(frame=faces)}
    )
    _attach(detector, datamodule)
    frame = _predictions([0, 0, 1, 1], [0.5, 0.7, 0.8, 0.6])
    logged = detector.stage_metrics("val", frame)
    # what evaluation scores: a, b by their faces, c (no face) at 0.5; d (missing) left out
    expected = binary_metrics([0, 1, 1], [0.6, 0.7, 0.5])
    assert logged["val/video_log_loss"] == pytest.approx(expected["log_loss"])
    assert logged["val/video_acc"] == pytest.approx(expected["accuracy"])
    assert logged["val/video_auc"] == pytest.approx(expected["roc_auc"]) == 0.5  # 1.0 without c
    without_c = aggregate_video_scores(frame.assign(video_id=["a", "a", "b", "b"]))
    assert logged["val/video_log_loss"] != pytest.approx(
        binary_metrics(without_c["label"], without_c["prob"])["log_loss"]
    )


def test_only_videos_absent_from_the_dataset_are_added(detector, tmp_path) -> None:
    """A partial epoch (limit_val_batches) must not turn unpredicted faces into 0.5 scores."""
    faces_dir, faces = _faces_folder(tmp_path)
    datamodule = SimpleNamespace(
        faces_dir=faces_dir, datasets={"val": SimpleNamespace(frame=faces)}
    )
    _attach(detector, datamodule)
    partial = _predictions([0, 0], [0.1, 0.3])  # only video a's faces were predicted
    with pytest.warns(UndefinedMetricWarning, match="val/auc"):  # faces: one class here
        logged = detector.stage_metrics("val", partial)
    expected = binary_metrics([0, 1], [0.2, 0.5])  # a and c; b is not invented
    assert logged["val/video_log_loss"] == pytest.approx(expected["log_loss"])


def test_data_fingerprint_is_saved_in_the_checkpoint(detector) -> None:
    checkpoint: dict = {}
    detector.data_fingerprint = None
    detector.on_save_checkpoint(checkpoint)
    assert "data_fingerprint" not in checkpoint
    detector.data_fingerprint = {"manifest_sha256": "abc", "splits_sha256": "def"}
    detector.on_save_checkpoint(checkpoint)
    assert checkpoint["data_fingerprint"] == {"manifest_sha256": "abc", "splits_sha256": "def"}
    detector.data_fingerprint = None


def test_parameter_counts_follow_the_freeze_mode() -> None:
    from deepfake_exp.models.module import DeepfakeDetector

    backbone = instantiate(compose_config("train", TINY_VIT).model)
    full = DeepfakeDetector(backbone).parameter_counts()
    probe = DeepfakeDetector(
        instantiate(compose_config("train", TINY_VIT).model), freeze="backbone"
    )
    counts = probe.parameter_counts()
    head = sum(p.numel() for p in probe.head.parameters())
    assert full["n_params_trainable"] == full["n_params_total"] == counts["n_params_total"]
    assert counts["n_params_trainable"] == head < counts["n_params_total"]


def test_models_import_nothing_from_data() -> None:
    """models/ is below data/ in the layers: module.py must not reach into the datamodule."""
    import ast

    import deepfake_exp.models.module as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    assert not [name for name in imported if name.startswith("deepfake_exp.data")]
    assert "datamodule" not in Path(module.__file__).read_text()


def test_samples_carry_track_ids_when_the_manifest_has_them(tmp_path) -> None:
    """aggregation=track_max needs each face's track; older manifests have none."""
    from deepfake_exp.tasks.train import DataModuleVideos

    faces_dir, faces = _faces_folder(tmp_path)
    tracked = faces.assign(track_id=[0, 1, 0, 0])
    datamodule = SimpleNamespace(
        faces_dir=faces_dir, datasets={"val": SimpleNamespace(frame=tracked)}
    )
    samples = DataModuleVideos(datamodule).samples("val")
    assert samples.columns.tolist() == ["video_id", "track_id"]
    assert samples["track_id"].tolist() == [0, 1, 0, 0]
    untracked = DataModuleVideos(SimpleNamespace(datasets={"val": SimpleNamespace(frame=faces)}))
    assert untracked.samples("val").columns.tolist() == ["video_id"]
    assert untracked.samples("test") is None and untracked.faceless_videos("val") is None


def test_track_max_video_metrics_see_the_tracks(tmp_path) -> None:
    """aggregation=track_max: a video is as fake as its most suspicious person (per-track mean)."""
    from deepfake_exp.models.module import DeepfakeDetector
    from deepfake_exp.tasks.train import DataModuleVideos

    backbone = instantiate(compose_config("train", TINY_VIT).model)
    module = DeepfakeDetector(backbone, video_aggregation="track_max")
    faces = pd.DataFrame(
        {"video_id": ["r", "r", "f", "f", "f", "f"], "track_id": [0, 0, 0, 0, 1, 1]}
    )
    module.trainer = SimpleNamespace(sanity_checking=False, world_size=1)
    datasets = {"val": SimpleNamespace(frame=faces)}
    module.eval_videos = DataModuleVideos(SimpleNamespace(datasets=datasets))
    # the fake video: person 0 looks real (0.1), the swapped person 1 fake (0.9): mean 0.5
    frame = _predictions([0, 0, 1, 1, 1, 1], [0.4, 0.4, 0.1, 0.1, 0.9, 0.9])
    logged = module.stage_metrics("val", frame)
    expected = binary_metrics([0, 1], [0.4, 0.9])  # track max; the mean would score f 0.5
    assert logged["val/video_log_loss"] == pytest.approx(expected["log_loss"])
    untracked = frame.copy()
    module.eval_videos = DataModuleVideos(
        SimpleNamespace(datasets={"val": SimpleNamespace(frame=faces.drop(columns="track_id"))})
    )
    mean = binary_metrics([0, 1], [0.4, 0.5])
    assert module.stage_metrics("val", untracked)["val/video_log_loss"] == pytest.approx(
        mean["log_loss"]
    )
