"""End to end on a tiny generated set: preprocess -> train -> evaluate -> resume."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import open_dict

from deepfake_exp.data.splits import leaked_groups
from tests.conftest import TINY_DATASET, compose_config

pytestmark = pytest.mark.slow

FAST_TRAIN = [
    *TINY_DATASET,
    "model.input_size=64",
    "trainer.max_epochs=2",
    "data.batch_size=16",
    "data.num_workers=0",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.enable_model_summary=false",
]


def train_cfg(root: Path, run: str, overrides: list[str] = ()):
    cfg = compose_config("train", [*FAST_TRAIN, *overrides], root)
    with open_dict(cfg):
        cfg.paths.output_dir = str(root / run)
    return cfg


def test_preprocessing_writes_a_consistent_identity_disjoint_manifest(tiny_preprocessed) -> None:
    root, summary = tiny_preprocessed
    faces_dir = Path(summary["out_dir"])
    manifest = pd.read_csv(faces_dir / "manifest.csv")
    videos = pd.read_csv(faces_dir / "videos.csv")
    assert summary["merged"]["videos_ok"] == len(videos[videos["status"] == "ok"]) > 0
    assert set(manifest["split"]) == {"train", "val", "test"}
    split_of = dict(zip(videos["video_id"], videos["split"], strict=True))
    assert not leaked_groups(dict(zip(videos["video_id"], videos["group"], strict=True)), split_of)
    meta = json.loads((root / "data" / "synthetic_tiny" / "metadata.json").read_text())
    for video_id, entry in meta.items():  # a fake sits in the same split as its original
        if entry["original"]:
            assert split_of[video_id] == split_of[entry["original"]]
    sample = manifest.iloc[0]
    import cv2

    assert cv2.imread(str(faces_dir / sample["face_path"])).shape == (64, 64, 3)
    assert (manifest["x2"] > manifest["x1"]).all() and (manifest["prob"] >= 0.9).all()


def test_train_then_evaluate_reloads_the_checkpoint(tiny_preprocessed) -> None:
    from deepfake_exp.evaluate import evaluate_checkpoint
    from deepfake_exp.train import train

    root, _ = tiny_preprocessed
    cfg = train_cfg(root, "run_e2e")
    best, summary = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "plots" / "roc_video.png").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for level in ("face", "video"):
        assert 0.0 <= metrics["test"][level]["roc_auc"] <= 1.0
        assert metrics["test"][level]["n"] > 0
    assert best == pytest.approx(summary["val/video_auc"])
    # evaluate reloads the checkpoint alone and reproduces the numbers
    again = evaluate_checkpoint(
        run_dir / "checkpoints" / "best.ckpt", root / "eval", make_plots=False
    )
    assert again["test"]["video"]["roc_auc"] == pytest.approx(metrics["test"]["video"]["roc_auc"])
    assert again["thresholds_from_val"] == metrics["thresholds_from_val"]


def test_resume_from_last_checkpoint_continues_the_epoch_count(tiny_preprocessed) -> None:
    from deepfake_exp.train import train

    root, _ = tiny_preprocessed
    first = train_cfg(root, "run_resume", ["trainer.max_epochs=1", "test=false"])
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["epoch"] == 0
    resumed = train_cfg(
        root, "run_resume", ["trainer.max_epochs=2", "test=false", f"ckpt_path={last}"]
    )
    _, summary = train(resumed)
    assert summary["epochs_trained"] == 2
    after = torch.load(last, map_location="cpu", weights_only=True)
    assert after["global_step"] == 2 * state["global_step"]
    history = pd.read_csv(Path(first.paths.output_dir) / "csv" / "metrics.csv")
    assert set(history["epoch"].dropna().astype(int)) == {1}, "resumed run trained epoch 1 only"
    assert after["optimizer_states"][0]["state"], "optimizer state was restored and advanced"


def test_missing_manifest_names_the_preprocess_command(tmp_path: Path) -> None:
    from deepfake_exp.data.datamodule import ManifestNotFoundError
    from deepfake_exp.train import train

    cfg = train_cfg(tmp_path, "run", ["dataset.name=never_preprocessed"])
    with pytest.raises(ManifestNotFoundError, match="deepfake_exp.preprocess"):
        train(cfg)
