"""``train resume=<run>``: the same run, under its own config, with its history kept.

A run is stopped after its first epoch (a callback crashes it once), then resumed from the
command line the way a user would, with nothing but ``resume=<run>``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from deepfake_exp.utils.lock import exclusive_lock
from tests.test_sweeps import SPLIT_SIZES, run_cli, tiny_args, tiny_faces  # noqa: F401

pytestmark = pytest.mark.slow


class CrashOnce(pl.Callback):
    """Kills training when epoch ``at_epoch`` starts, the first time only (``marker`` file)."""

    def __init__(self, marker: str, at_epoch: int = 1) -> None:
        self.marker, self.at_epoch = Path(marker), at_epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.at_epoch and not self.marker.exists():
            self.marker.touch()
            raise RuntimeError("simulated crash (power cut)")


def read_json(path: Path):
    def reject(literal: str):
        raise ValueError(f"non-standard JSON literal {literal}")

    return json.loads(path.read_text(), parse_constant=reject)


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """The files a refused resume must leave untouched."""
    names = ["config.yaml", "run_info.json", "summary.json", ".hydra/overrides.yaml"]
    return {name: (run_dir / name).read_bytes() for name in names if (run_dir / name).is_file()}


@pytest.fixture(scope="module")
def crashed_run(tiny_faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """A 2-epoch run of non-default settings that crashed when its second epoch started."""
    run_dir = tmp_path_factory.mktemp("resume") / "run"
    marker = run_dir.parent / "crashed"
    args = tiny_args(
        tiny_faces,
        "trainer.max_epochs=2",
        "optimizer.lr=0.002",
        "trainer.log_every_n_steps=1",
        "+callbacks.crash._target_=tests.test_resume.CrashOnce",
        f"+callbacks.crash.marker={marker}",
        f"hydra.run.dir={run_dir}",
    )
    assert run_cli(*args) == 1  # the crash
    assert read_json(run_dir / "summary.json")["status"] == "failed"
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and last["global_step"] == sum(SPLIT_SIZES["train"]) // 4
    return run_dir


@pytest.fixture(scope="module")
def resumed_run(crashed_run: Path) -> Path:
    before = pd.read_csv(crashed_run / "csv" / "metrics.csv")
    assert set(before["epoch"].dropna().astype(int)) == {0}
    assert run_cli(f"resume={crashed_run}") == 0  # nothing but the run folder
    return crashed_run


def test_resume_continues_under_the_runs_own_config(resumed_run: Path) -> None:
    config = OmegaConf.load(resumed_run / "config.yaml")
    # the run's overrides, not the defaults (mobilenet_v2, adamw 1e-3, cosine, basic, 10 epochs)
    assert config.model.input_size == 32 and config.model._target_.endswith("VisionTransformer")
    assert config.optimizer.lr == 0.002 and config.trainer.max_epochs == 2
    assert config.scheduler._target_.endswith("no_schedule")
    assert config.augmentation._target_.endswith("NoAugmentation")
    assert config.paths.output_dir == str(resumed_run)
    assert config.ckpt_path == str(resumed_run / "checkpoints" / "last.ckpt")
    summary = read_json(resumed_run / "summary.json")
    assert summary["status"] == "ok" and summary["epochs_trained"] == 2
    assert summary["run_dir"] == str(resumed_run)
    last = torch.load(resumed_run / "checkpoints" / "last.ckpt", weights_only=True)
    steps_per_epoch = sum(SPLIT_SIZES["train"]) // 4  # data.batch_size=4
    assert last["global_step"] == 2 * steps_per_epoch and last["optimizer_states"][0]["state"]


def test_resume_appends_to_run_info(resumed_run: Path) -> None:
    first, second = read_json(resumed_run / "run_info.json")
    assert "resume=" not in first["command"] and "optimizer.lr=0.002" in first["command"]
    assert f"resume={resumed_run}" in second["command"]
    assert second["resumed_from"] == str(resumed_run / "checkpoints" / "last.ckpt")
    assert second["forced_changes"] == {}
    assert first["started"] <= second["started"]


def test_metrics_csv_keeps_the_rows_before_the_resume(resumed_run: Path) -> None:
    history = pd.read_csv(resumed_run / "csv" / "metrics.csv")
    val_rows = history[history["val/loss"].notna()]
    assert val_rows["epoch"].astype(int).tolist() == [0, 1]  # each epoch once, in order
    steps = history["step"].astype(int)
    assert steps.is_monotonic_increasing
    train_steps = history.loc[history["train/loss_step"].notna(), "step"].astype(int)
    assert train_steps.tolist() == list(range(len(train_steps)))  # no step lost or repeated


def test_a_conflicting_override_is_refused_unless_forced(
    resumed_run: Path, capsys: pytest.CaptureFixture
) -> None:
    before = snapshot(resumed_run)
    assert run_cli(f"resume={resumed_run}", "model.input_size=64", "optimizer=sgd") == 1
    error = capsys.readouterr().err
    assert "model.input_size: 32 -> 64" in error and "optimizer._target_" in error
    assert "force=true" in error
    assert snapshot(resumed_run) == before  # nothing written

    assert run_cli(f"resume={resumed_run}", "trainer.max_epochs=3", "force=true") == 0
    invocations = read_json(resumed_run / "run_info.json")
    assert len(invocations) == 3
    assert invocations[-1]["forced_changes"] == {"trainer.max_epochs": [2, 3]}
    assert OmegaConf.load(resumed_run / "config.yaml").trainer.max_epochs == 3
    assert read_json(resumed_run / "summary.json")["epochs_trained"] == 3
    # the forced value is the run's own now: the next resume composes it without force
    assert "trainer.max_epochs=3" in OmegaConf.load(resumed_run / ".hydra" / "overrides.yaml")
    assert run_cli(f"resume={resumed_run}", "data.num_workers=0") == 0  # how, not what: allowed


def test_a_second_process_on_the_same_run_is_refused(
    resumed_run: Path, capsys: pytest.CaptureFixture
) -> None:
    before = snapshot(resumed_run)
    with exclusive_lock(resumed_run, what="training run"):
        assert run_cli(f"resume={resumed_run}") == 1
    assert "is in use by pid" in capsys.readouterr().err
    assert snapshot(resumed_run) == before


def test_resume_of_a_folder_that_is_no_run_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_cli(f"resume={tmp_path / 'nothing'}") == 1
    assert "is not a training run" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()


def test_csv_history_drops_the_rows_a_resume_repeats(tmp_path: Path) -> None:
    """Unit check of the writer: rows from the resumed step on are the new run's."""
    from deepfake_exp.utils.loggers import HistoryCSVLogger

    log_dir = tmp_path / "csv"
    log_dir.mkdir()
    with (log_dir / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "step", "old/metric"])
        writer.writeheader()
        writer.writerows({"epoch": s // 2, "step": s, "old/metric": s} for s in range(6))
    logger = HistoryCSVLogger(save_dir=str(tmp_path), name="csv", version="")
    logger.log_metrics({"epoch": 2, "new/metric": 0.5}, step=4)
    logger.save()
    table = pd.read_csv(log_dir / "metrics.csv")
    assert table["step"].tolist() == [0, 1, 2, 3, 4]
    assert table["old/metric"].tolist()[:4] == [0, 1, 2, 3] and table["new/metric"].iloc[-1] == 0.5
    fresh = HistoryCSVLogger(save_dir=str(tmp_path), name="csv", version="")
    fresh.log_metrics({"epoch": 0, "new/metric": 1.0}, step=0)  # a new run from step 0
    fresh.save()
    assert pd.read_csv(log_dir / "metrics.csv")["step"].tolist() == [0]


def test_options_added_since_the_run_do_not_block_its_resume(tmp_path: Path) -> None:
    """A run from before an option existed resumes without force=true while the option is at
    its default (new options keep the old behaviour); a moved, aliased _target_ is no change."""
    from deepfake_exp.tasks.config_diff import compose_train_config
    from deepfake_exp.tasks.resume import resume_changes

    cfg = compose_train_config(["model=resnet18"])
    cfg.paths.output_dir = str(tmp_path)
    saved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    del saved.module["normalize_features"]
    saved.logger.csv._target_ = "deepfake_exp.train.HistoryCSVLogger"
    OmegaConf.save(saved, tmp_path / "config.yaml")
    assert resume_changes(cfg, tmp_path) == {}
    cfg.module.normalize_features = True
    assert resume_changes(cfg, tmp_path) == {"module.normalize_features": ("<absent>", True)}
