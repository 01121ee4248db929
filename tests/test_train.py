"""End to end on generated sets: preprocess -> train -> evaluate -> resume, and what a run records.

The learning check uses an easy synthetic set (uncorrected colour, sharp seam, blurred and
jittering swapped face: ``EASY_SYNTHETIC``) small enough for a CPU, on which a ResNet-18 from
scratch separates held-out identities' videos within a few epochs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import open_dict

from deepfake_exp.data.splits import leaked_groups
from tests.conftest import TINY_DATASET, compose_config
from tests.test_sweeps import TINY_VIT, hparams_of, run_cli, tiny_args, tiny_faces  # noqa: F401

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
EASY_SYNTHETIC = [
    "dataset.name=synthetic_easy",
    "dataset.num_identities=24",  # 6 held-out identities: 12 test videos
    "dataset.videos_per_identity=1",
    "dataset.fakes_per_real=1",
    "dataset.num_frames=4",
    "dataset.color_mismatch=1.0",
    "dataset.mask_blur=1",
    "dataset.face_blur=4",
    "dataset.swap_jitter=3",
    "dataset.jpeg_quality=null",
    "extraction.num_frames=2",
    "extraction.crop_size=64",
    "extraction.num_workers=1",
    "split.ratios=[0.5,0.25,0.25]",
]
LEARN = [
    *EASY_SYNTHETIC,
    "model=resnet18",
    "model.input_size=64",
    "augmentation=none",
    "optimizer.lr=1e-3",
    "trainer.max_epochs=6",
    "data.batch_size=16",
    "data.num_workers=0",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.enable_model_summary=false",
]
CHANCE = 0.5


def train_cfg(root: Path, run: str, overrides: list[str] = (), base: list[str] = FAST_TRAIN):
    cfg = compose_config("train", [*base, *overrides], root)
    with open_dict(cfg):
        cfg.paths.output_dir = str(root / run)
    return cfg


def strict_json(path: Path):
    """JSON as any parser reads it: a NaN/Infinity literal is an error, not a float."""

    def reject(literal: str):
        raise ValueError(f"{path}: non-standard JSON literal {literal}")

    return json.loads(path.read_text(), parse_constant=reject)


@pytest.fixture(scope="module")
def learned_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, dict]:
    """(run dir, best val metric, summary) of a ResNet-18 trained on the easy synthetic set."""
    from deepfake_exp.tasks.preprocess import preprocess
    from deepfake_exp.tasks.train import train

    root = tmp_path_factory.mktemp("easy")
    preprocess(compose_config("preprocess", [*EASY_SYNTHETIC, "progress=false"], root))
    cfg = train_cfg(root, "run_learn", base=LEARN)
    best, summary = train(cfg)
    return Path(cfg.paths.output_dir), best, summary


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


def test_training_learns_the_easy_synthetic_set(learned_run) -> None:
    run_dir, best, summary = learned_run
    test = summary["test"]
    assert test["video"]["n"] == 12 and test["face"]["n"] == 24  # held-out identities only
    # measured 0.89-1.0 (video) over seeds and sizes; chance is 0.5
    assert test["video"]["roc_auc"] >= 0.8, f"test video AUC {test['video']['roc_auc']:.3f}"
    assert test["face"]["roc_auc"] >= 0.75, f"test face AUC {test['face']['roc_auc']:.3f}"
    assert test["video"]["accuracy"] > CHANCE + 0.15
    assert best >= 0.8  # val video AUC of the selected checkpoint
    history = pd.read_csv(run_dir / "csv" / "metrics.csv")
    epoch_loss = history.dropna(subset=["train/loss"]).groupby("epoch")["train/loss"].mean()
    assert len(epoch_loss) == 6 and epoch_loss.iloc[-1] < 0.6 * epoch_loss.iloc[0]


def test_train_then_evaluate_reloads_the_checkpoint(learned_run, tmp_path: Path) -> None:
    from deepfake_exp.tasks.evaluate import evaluate_checkpoint

    run_dir, best, summary = learned_run
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "plots" / "roc_video.png").is_file()
    # the selected checkpoint is the best epoch that validation logged
    history = pd.read_csv(run_dir / "csv" / "metrics.csv")
    logged = history.dropna(subset=["val/video_auc"])
    assert best == pytest.approx(logged["val/video_auc"].max())
    assert summary["best_epoch"] in set(logged.loc[logged["val/video_auc"] == best, "epoch"])
    # evaluate reloads the checkpoint alone, in another folder, and reproduces the numbers
    metrics = strict_json(run_dir / "metrics.json")
    again = evaluate_checkpoint(run_dir / "checkpoints" / "best.ckpt", tmp_path, make_plots=False)
    assert again["test"]["video"]["roc_auc"] == pytest.approx(metrics["test"]["video"]["roc_auc"])
    assert again["thresholds_from_val"] == metrics["thresholds_from_val"]


def test_summary_is_strict_json_and_names_the_data(learned_run) -> None:
    from deepfake_exp.runs import data_fingerprint

    run_dir, best, _ = learned_run
    summary = strict_json(run_dir / "summary.json")
    assert summary["status"] == "ok" and summary["best_val"] == pytest.approx(best)
    faces_dir = Path(summary["data_fingerprint"]["faces_dir"])
    assert faces_dir.name == "synthetic_easy"
    assert summary["data_fingerprint"] == data_fingerprint(faces_dir)  # recomputed from disk
    stored = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert stored["data_fingerprint"] == summary["data_fingerprint"]


def test_a_run_without_a_selected_checkpoint_says_so_in_strict_json(tiny_preprocessed) -> None:
    """No NaN literal: ``null`` plus a status (what ``max_epochs=0`` used to give)."""
    from deepfake_exp.tasks.train import STATUS_NO_CHECKPOINT, train

    root, _ = tiny_preprocessed
    cfg = train_cfg(root, "run_untrained", ["train=false"])
    best, _ = train(cfg)
    summary = strict_json(Path(cfg.paths.output_dir) / "summary.json")
    assert summary["status"] == STATUS_NO_CHECKPOINT
    assert summary["val/video_auc"] is None and summary["best_val"] is None
    assert best != best  # NaN in Python, null on disk


def test_resume_from_last_checkpoint_continues_the_epoch_count(tiny_preprocessed) -> None:
    from deepfake_exp.tasks.train import train

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
    val_epochs = history.dropna(subset=["val/loss"])["epoch"].astype(int).tolist()
    assert val_epochs == [0, 1], "epoch 0's rows kept, epoch 1 trained once by the resume"
    assert after["optimizer_states"][0]["state"], "optimizer state was restored and advanced"


def test_missing_manifest_names_the_preprocess_command(tmp_path: Path) -> None:
    from deepfake_exp.data.datamodule import ManifestNotFoundError
    from deepfake_exp.tasks.train import train

    cfg = train_cfg(tmp_path, "run", ["dataset.name=never_preprocessed"])
    with pytest.raises(ManifestNotFoundError, match="deepfake_exp.preprocess"):
        train(cfg)


def test_out_of_range_values_fail_before_data_or_model_setup(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from deepfake_exp.config import ConfigValueError
    from deepfake_exp.tasks.train import train

    # no manifest either: the value error comes first, before anything looks for data
    cfg = train_cfg(tmp_path, "run", ["dataset.name=never_preprocessed", "trainer.max_epochs=0"])
    with pytest.raises(ConfigValueError, match=r"trainer\.max_epochs=0: must be an integer >= 1"):
        train(cfg)
    run_dir = tmp_path / "cli_run"
    args = [f"paths.root_dir={tmp_path}", "trainer.max_epochs=0", f"hydra.run.dir={run_dir}"]
    assert run_cli(*args) == 1
    assert "trainer.max_epochs=0" in capsys.readouterr().err
    assert not (run_dir / "config.yaml").exists() and not (run_dir / "summary.json").exists()
    assert run_cli(f"paths.root_dir={tmp_path}", "trainer.max_epochs=abc") == 1
    assert "trainer.max_epochs" in capsys.readouterr().err


def test_hparams_are_the_curated_columns_with_the_same_metrics_for_every_run(
    tiny_faces: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    from deepfake_exp.tasks.hparams import (
        HPARAM_GROUPS,
        HPARAM_PARAM_COUNTS,
        HPARAM_VALUES,
        hparam_metric_names,
    )

    runs = {
        "auc": tmp_path / "selects_on_auc",
        "loss": tmp_path / "selects_on_loss",
    }
    assert run_cli(*tiny_args(tiny_faces, "test=true", f"hydra.run.dir={runs['auc']}")) == 0
    args = ["test=true", "optimized_metric=val/loss", "optimized_mode=min", "optimizer.lr=0.002"]
    assert run_cli(*tiny_args(tiny_faces, *args, f"hydra.run.dir={runs['loss']}")) == 0
    seen = {}
    for name, run_dir in runs.items():
        hparams, metric_tags, events = hparams_of(run_dir / "tensorboard")
        assert set(hparams) == {*HPARAM_GROUPS, *HPARAM_VALUES, *HPARAM_PARAM_COUNTS}
        assert not [k for k in hparams if "_target_" in k or "mean" in k or "std" in k]
        assert metric_tags == set(hparam_metric_names())  # whatever the run selected on
        summary = strict_json(run_dir / "summary.json")
        (best,) = events.Scalars("hparams/best_val")
        assert best.value == pytest.approx(summary["best_val"])
        (video_auc,) = events.Scalars("hparams/test_video_roc_auc")
        assert video_auc.value == pytest.approx(summary["test"]["video"]["roc_auc"])
        (val_loss,) = events.Scalars("hparams/val_log_loss")
        assert val_loss.value == pytest.approx(summary["val"]["face"]["log_loss"])
        counts = summary["n_params"]  # the tiny ViT, trained in full: every parameter
        assert 0 < counts["n_params_trainable"] == counts["n_params_total"]
        assert hparams["n_params_trainable"] == counts["n_params_trainable"]
        seen[name] = hparams
    auc, loss = seen["auc"], seen["loss"]
    assert (auc["model"], auc["scheduler"], auc["augmentation"]) == ("vit", "none", "none")
    assert (auc["dataset"], auc["experiment"], auc["optimizer"]) == (
        "image_folder",
        "none",
        "adamw",
    )
    assert auc["optimizer/lr"] == pytest.approx(1e-3) and loss["optimizer/lr"] == pytest.approx(
        2e-3
    )
    assert (auc["selected_on"], loss["selected_on"]) == ("val/video_auc", "val/loss")
    assert auc["model/input_size"] == 32 and auc["data/batch_size"] == 4
    assert auc["module/head_hidden"] == 0 and auc["module/backbone_lr"] == pytest.approx(1e-3)
