"""report: a table whose numbers are the runs' own; finished runs are collected, not retrained."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf, open_dict

import deepfake_exp.report as report
from tests.conftest import CONF_DIR, compose_config
from tests.test_evaluate_extras import shared_run, train_run


@pytest.fixture(scope="session")
def trained_run(tiny_preprocessed) -> Path:
    """The tiny run shared with the other extras tests (trained once per session)."""
    return shared_run(tiny_preprocessed)


@pytest.fixture(scope="session")
def two_runs(trained_run, tiny_preprocessed) -> list[Path]:
    """Two finished tiny runs that differ in optimizer settings."""
    root, _ = tiny_preprocessed
    second = train_run(root, "extras_run_b", ("optimizer=adam", "optimizer.lr=3e-4"))
    return [trained_run, second]


def report_cfg(tmp_path: Path, overrides: list[str] = ()):
    cfg = compose_config("report", list(overrides), tmp_path)
    with open_dict(cfg):
        cfg.report.out_dir = str(tmp_path / "report")
    return cfg


@pytest.mark.slow
def test_report_table_numbers_are_the_runs_own(two_runs, tmp_path) -> None:
    cfg = report_cfg(tmp_path, [f"run_dirs=[{two_runs[0]},{two_runs[1]}]"])
    table = report.build_report(cfg)
    assert table["name"].tolist() == [p.name for p in two_runs]
    for row, run_dir in zip(table.itertuples(index=False), two_runs, strict=True):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
        video, face = metrics["test"]["video"], metrics["test"]["face"]
        for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"):
            assert getattr(row, key) == pytest.approx(video[key], nan_ok=True), key
        assert row.face_roc_auc == pytest.approx(face["roc_auc"], nan_ok=True)
        assert row.best_epoch == summary["best_epoch"]
        assert row.best_val == pytest.approx(summary["val/video_auc"])
        assert row.status == "ok" and row.model == "mobilenet_v2" and row.epochs == 1
    assert table["optimizer"].tolist() == ["adamw", "adam"]
    assert table["lr"].tolist() == [1e-3, 3e-4]

    out = Path(cfg.report.out_dir)
    saved = pd.read_csv(out / "report.csv")
    pd.testing.assert_series_equal(saved["roc_auc"], table["roc_auc"].astype(float))
    text = (out / "report.md").read_text()
    assert all(p.name in text for p in two_runs) and "plots/test_auc.png" in text
    assert (out / "plots" / "test_auc.png").is_file()
    assert (out / "plots" / "roc_test_videos.png").is_file()


def _link_runs(runs_dir: Path, runs: dict[str, Path]) -> None:
    runs_dir.mkdir(parents=True)
    for name, run_dir in runs.items():
        (runs_dir / name).symlink_to(run_dir, target_is_directory=True)


@pytest.mark.slow
def test_rerunning_the_report_collects_finished_runs_without_training(
    two_runs, tmp_path, monkeypatch
) -> None:
    cfg = report_cfg(tmp_path)
    with open_dict(cfg):
        cfg.report.experiments = {"a": ["optimizer.lr=1e-3"], "b": ["optimizer.lr=3e-4"]}
    _link_runs(Path(cfg.report.out_dir) / "runs", dict(zip("ab", two_runs, strict=True)))

    def no_training(*args, **kwargs):
        raise AssertionError(f"a finished run was retrained: {args}")

    monkeypatch.setattr(report.subprocess, "run", no_training)
    table = report.build_report(cfg)
    assert table["name"].tolist() == ["a", "b"] and (table["status"] == "ok").all()
    metrics = json.loads((two_runs[1] / "metrics.json").read_text())
    assert table.loc[1, "roc_auc"] == pytest.approx(metrics["test"]["video"]["roc_auc"])


@pytest.mark.slow
def test_unfinished_experiments_are_trained_in_their_own_run_dir(
    two_runs, tmp_path, monkeypatch
) -> None:
    cfg = report_cfg(tmp_path)
    with open_dict(cfg):
        cfg.report.common = ["dataset.name=tiny"]
        cfg.report.experiments = {
            "done": ["optimizer.lr=1e-3"],
            "new": ["model=resnet18"],
            "broken": ["optimizer.lr=-1"],
        }
    runs_dir = Path(cfg.report.out_dir) / "runs"
    _link_runs(runs_dir, {"done": two_runs[0]})
    commands: list[list[str]] = []

    def fake_run(command, **kwargs):
        """Record the command; 'train' the new run by copying a finished run's results."""
        commands.append(command)
        run_dir = Path(command[-1].split("=", 1)[1])
        if "optimizer.lr=-1" in command:
            return subprocess.CompletedProcess(command, 1)
        if command[2] == "deepfake_exp.train":
            run_dir.mkdir(parents=True, exist_ok=True)
            for name in ("metrics.json", "summary.json", "config.yaml"):
                shutil.copy(two_runs[1] / name, run_dir / name)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(report.subprocess, "run", fake_run)
    table = report.build_report(cfg).set_index("name")
    modules = [c[2] for c in commands]
    assert modules == ["deepfake_exp.preprocess", "deepfake_exp.train", "deepfake_exp.preprocess"]
    train = commands[1]
    assert train[3:5] == ["dataset.name=tiny", "model=resnet18"]
    assert train[-1] == f"hydra.run.dir={runs_dir / 'new'}"
    assert table.loc["done", "status"] == table.loc["new", "status"] == "ok"
    assert table.loc["broken", "status"] == "failed"
    assert "preprocess exited with code 1" in table.loc["broken", "message"]
    assert (Path(cfg.report.out_dir) / "report.md").read_text().count("did not finish") == 1
    assert table.loc["new", "train_minutes"] >= 0.0


PREPROCESSING_KEYS = ("dataset", "detector", "extraction", "split")


def test_default_report_runs_share_one_preprocessed_set_on_cpu(tmp_path) -> None:
    """Experiments of one report reuse one faces folder, so they must agree on how it is made."""
    cfg = compose_config("report", [], tmp_path)
    assert len(cfg.report.experiments) >= 2
    made = set()
    for name, overrides in cfg.report.experiments.items():
        args = [*cfg.report.common, *overrides]
        train_cfg = compose_config("train", args, tmp_path)
        preprocess_cfg = compose_config("preprocess", args, tmp_path)
        assert train_cfg.data.faces_dir == preprocess_cfg.out_dir, name
        assert train_cfg.trainer.accelerator == "cpu" and not train_cfg.model.pretrained, name
        recipe = {
            k: OmegaConf.to_container(preprocess_cfg[k], resolve=True) for k in PREPROCESSING_KEYS
        }
        made.add(json.dumps([recipe, preprocess_cfg.out_dir], sort_keys=True))
    assert len(made) == 1, "the runs would read one faces folder made in different ways"


def test_full_report_lists_every_study_experiment(tmp_path) -> None:
    cfg = compose_config("report", ["report=full"], tmp_path)
    studies = {p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml")}
    studies -= {"smoke", "synthetic_cpu"}
    listed = {
        o.split("=", 1)[1]
        for ov in cfg.report.experiments.values()
        for o in ov
        if o.startswith("experiment=")
    }
    assert listed == studies
    for overrides in cfg.report.experiments.values():
        train_cfg = compose_config("train", [*cfg.report.common, *overrides], tmp_path)
        assert train_cfg.trainer.accelerator == "gpu"
