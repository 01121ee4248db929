"""report: a table whose numbers are the runs' own; finished runs are collected, not retrained."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf, open_dict

import deepfake_exp.tasks.report as report
from tests.conftest import CONF_DIR, compose_config
from tests.test_evaluate_extras import FAST_TRAIN, shared_run, train_run

SECOND_RUN = ("optimizer=adam", "optimizer.lr=3e-4")


@pytest.fixture(scope="session")
def trained_run(tiny_preprocessed) -> Path:
    """The tiny run shared with the other extras tests (trained once per session)."""
    return shared_run(tiny_preprocessed)


@pytest.fixture(scope="session")
def two_runs(trained_run, tiny_preprocessed) -> list[Path]:
    """Two finished tiny runs that differ in optimizer settings."""
    root, _ = tiny_preprocessed
    second = train_run(root, "extras_run_b", SECOND_RUN)
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
    with open_dict(
        cfg.report
    ):  # the overrides the runs were trained with: their configs are current
        cfg.report.common = FAST_TRAIN
        cfg.report.experiments = {"a": [], "b": list(SECOND_RUN)}
        cfg.report.prepare = {"other": ["dataset.name=other"]}  # nothing to train: not run
    _link_runs(Path(cfg.report.out_dir) / "runs", dict(zip("ab", two_runs, strict=True)))

    def no_training(*args, **kwargs):
        raise AssertionError(f"a finished run was retrained: {args}")

    monkeypatch.setattr(subprocess, "run", no_training)
    table = report.build_report(cfg)
    assert table["name"].tolist() == ["a", "b"] and (table["status"] == "ok").all()
    metrics = json.loads((two_runs[1] / "metrics.json").read_text())
    assert table.loc[1, "roc_auc"] == pytest.approx(metrics["test"]["video"]["roc_auc"])


@pytest.mark.slow
def test_unfinished_experiments_are_trained_in_their_own_run_dir(
    two_runs, tmp_path, monkeypatch
) -> None:
    cfg = report_cfg(tmp_path)
    with open_dict(cfg.report):
        cfg.report.common = FAST_TRAIN
        cfg.report.experiments = {
            "done": [],  # what two_runs[0] was trained with: collected
            "new": ["model=resnet18"],
            "broken": ["optimizer.lr=-1"],
        }
        cfg.report.prepare = {"held_out": ["dataset.name=held_out"]}
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

    monkeypatch.setattr(subprocess, "run", fake_run)
    table = report.build_report(cfg).set_index("name")
    modules = [c[2] for c in commands]
    assert modules == [
        "deepfake_exp.preprocess",  # prepare: held_out, once, before the first training
        "deepfake_exp.preprocess",
        "deepfake_exp.train",
        "deepfake_exp.preprocess",
    ]
    assert commands[0][3:-2] == [*FAST_TRAIN, "dataset.name=held_out"]
    assert commands[0][-1] == f"hydra.run.dir={runs_dir / 'preprocess' / 'prepare_held_out'}"
    train = commands[2]
    assert train[3:-1] == [*FAST_TRAIN, "model=resnet18"]
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


#: Experiments no report set trains: CPU checks, and a GPU recipe checked in tests/test_timm.py.
NOT_IN_A_REPORT = {"smoke", "synthetic_cpu", "gend_clip_ln"}


def _listed_experiments(report_set: Path) -> set[str]:
    """The ``experiment=<name>`` options a report set's rows (and common) use."""
    node = OmegaConf.to_container(OmegaConf.load(report_set), resolve=False)
    rows = [
        *(node.get("common") or []),
        *[o for ov in (node.get("experiments") or {}).values() for o in ov],
    ]
    return {str(o).split("=", 1)[1] for o in rows if str(o).startswith("experiment=")}


def test_full_report_lists_every_study_experiment(tmp_path) -> None:
    """The studies are in report=full; the protocol experiments (cross-manipulation,
    cross-dataset) in their own sets; every experiment is trained by some set."""
    cfg = compose_config("report", ["report=full"], tmp_path)
    experiments = {p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml")}
    protocol_sets = set((Path(CONF_DIR) / "report").glob("*.yaml")) - {
        Path(CONF_DIR) / "report" / f"{name}.yaml" for name in ("full", "default")
    }
    protocols = set().union(*map(_listed_experiments, protocol_sets))
    studies = experiments - NOT_IN_A_REPORT - protocols
    listed = {
        o.split("=", 1)[1]
        for ov in cfg.report.experiments.values()
        for o in ov
        if o.startswith("experiment=")
    }
    assert listed == studies
    assert experiments - NOT_IN_A_REPORT <= listed | protocols
    for overrides in cfg.report.experiments.values():
        train_cfg = compose_config("train", [*cfg.report.common, *overrides], tmp_path)
        assert train_cfg.trainer.accelerator == "gpu"


# ------------------------------------------------------------------ rows from run files alone


def fake_run(
    run_dir: Path,
    probs: list[float],
    video_ids: list[str] | None = None,
    *,
    lr: float = 1e-3,
    aggregation: str = "mean",
    published: dict | None = None,
    faces_dir: Path | None = None,
) -> Path:
    """A finished run's files as train + evaluate write them (no training: the table only reads)."""
    run_dir.mkdir(parents=True)
    ids = video_ids or [f"v{i}" for i in range(len(probs))]
    labels = [i % 2 for i in range(len(probs))]
    videos = pd.DataFrame(
        {
            "video_id": ids,
            "label": labels,
            "prob": probs,
            "group": [f"g{i // 2}" for i in range(len(ids))],
        }
    ).assign(num_faces=8)
    videos.to_csv(run_dir / "predictions_test_videos.csv", index=False)
    video = {"accuracy": 0.8125, "roc_auc": 0.8, "roc_auc_ci": [0.7, 0.95], "log_loss": 0.5}
    metrics = {
        "faces_dir": str(faces_dir or run_dir / "no_faces_here"),
        "threshold_criterion": "f1",
        "thresholds_from_val": {"face": 0.5, "video": 0.5},
        "video_aggregation": aggregation,
        "calibration": {"temperature": 1.3},
        "val": {"video": {"accuracy": 0.9}},
        "test": {"video": video, "face": {"roc_auc": 0.7}},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "summary.json").write_text(json.dumps({"best_epoch": 2, "val/video_auc": 0.9}))
    config = {
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": lr, "weight_decay": 1e-5},
        "optimized_metric": "val/video_auc",
        "optimized_mode": "max",
        "module": {"video_aggregation": aggregation},
        "published": published,
    }
    OmegaConf.save(OmegaConf.create(config), run_dir / "config.yaml")
    return run_dir


def split_report(folder: Path, shared_test_ids: int) -> Path:
    folder.mkdir(parents=True)
    blocks = {
        split: {"videos": 10, "shared_identities_with_train": shared, "shared_videos_with_train": 0}
        for split, shared in (("val", 0), ("test", shared_test_ids))
    }
    (folder / "split_report.json").write_text(json.dumps({"splits": blocks}))
    return folder


LABELS = [i % 2 for i in range(12)]
BASE = [0.2, 0.9, 0.4, 0.3, 0.1, 0.7, 0.5, 0.45, 0.3, 0.8, 0.35, 0.25]
OTHER = [0.1, 0.95, 0.2, 0.8, 0.15, 0.9, 0.3, 0.7, 0.2, 0.85, 0.4, 0.35]


def test_rows_carry_paired_delong_comparison_protocol_and_published(tmp_path) -> None:
    from deepfake_exp.evaluation.bootstrap import delong_test

    clean, leaky = split_report(tmp_path / "clean", 0), split_report(tmp_path / "leaky", 2)
    runs = {
        "base": fake_run(tmp_path / "base", BASE, faces_dir=clean, lr=1e-5),
        "better": fake_run(
            tmp_path / "better",
            OTHER,
            faces_dir=clean,
            published={"test_accuracy": 0.76, "val_accuracy": None},
        ),  # fmt: skip
        "elsewhere": fake_run(
            tmp_path / "elsewhere", OTHER, [f"w{i}" for i in range(12)], faces_dir=leaky
        ),
        "no_report": fake_run(tmp_path / "no_report", BASE),
    }
    table = report.report_table(
        {name: (path, "ok", "") for name, path in runs.items()},
        baseline="base",
        notes={"elsewhere": "trained on another split"},
    ).set_index("name")

    expected = delong_test(LABELS, OTHER, BASE)
    assert 0.0 < expected["p_value"] < 1.0 and expected["diff"] > 0
    assert table.loc["better", "delta_auc_vs_base"] == pytest.approx(expected["diff"])
    assert table.loc["better", "p_value"] == pytest.approx(expected["p_value"])
    low, high = table.loc["better", ["delta_auc_vs_base_low", "delta_auc_vs_base_high"]]
    assert low <= expected["diff"] <= high
    assert table.loc["better", "paired"] == "paired on 12 videos"
    assert table.loc["base", "paired"] == "baseline"
    assert table.loc["elsewhere", "paired"] == "not paired (different test sets)"
    assert pd.isna(table.loc["elsewhere", "delta_auc_vs_base"])
    assert pd.isna(table.loc["elsewhere", "p_value"])

    assert table.loc["base", "identity_disjoint"] == "yes"
    assert table.loc["elsewhere", "identity_disjoint"] == "no (test: 2 ids shared with train)"
    assert table.loc["no_report", "identity_disjoint"] == "unknown"
    assert table.loc["base", "selected_on"] == "val/video_auc (max)"
    assert table.loc["base", "threshold_on"] == "f1 on val"
    assert table.loc["base", "temperature_on"] == "val"
    assert table.loc["base", "faces_per_video"] == "8"
    assert table.loc["better", "published"] == "test_accuracy: 0.76 / 0.812"
    assert table.loc["base", "published"] == ""
    assert (table.loc["base", "roc_auc_low"], table.loc["base", "roc_auc_high"]) == (0.7, 0.95)
    assert table.loc["elsewhere", "note"] == "trained on another split"

    text = report.shown_table(table.reset_index())
    base_line, better_line = text.split("\n")[2:4]
    assert "| 1.0e-05 |" in base_line and "| 1.0e-03 |" in better_line
    assert "0.0000 " not in base_line
    assert "0.800 [0.700, 0.950]" in text and "delta_auc_vs_base" in text
    assert f"{expected['diff']:+.3f}" in text
    protocol = report.protocol_table(table.reset_index())
    assert "identity-disjoint: no (test: 2 ids shared with train)" in protocol
    assert "trained on another split" in protocol


def test_report_text_describes_the_runs_actual_aggregation(tmp_path) -> None:
    runs = {"m": (fake_run(tmp_path / "m", BASE, aggregation="max"), "ok", "")}
    page = report.report_markdown(
        report.report_table(runs), OmegaConf.create({"name": "t"}), elapsed=None
    )
    assert "highest score" in page and "averaged" not in page
    runs["a"] = (fake_run(tmp_path / "a", BASE, aggregation="mean"), "ok", "")
    page = report.report_markdown(
        report.report_table(runs), OmegaConf.create({"name": "t"}), elapsed=None
    )
    assert "max: reduced to their highest score" in page and "mean: averaged" in page


# ------------------------------------------------------------------ stale runs


def finished_run_of(run_dir: Path, overrides: list[str]) -> Path:
    """A finished run whose config.yaml is what ``overrides`` compose to (as train saves it)."""
    cfg = report.compose_train_config(overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    fake_run(run_dir, BASE)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return run_dir


def test_a_run_whose_experiment_changed_is_rerun_or_listed_stale(tmp_path, monkeypatch) -> None:
    cfg = report_cfg(tmp_path)
    with open_dict(cfg):
        cfg.report.common = ["model=resnet18"]
        cfg.report.experiments = {"same": ["optimizer.lr=1e-3"], "changed": ["optimizer.lr=3e-4"]}
        cfg.report.preprocess = False
    runs_dir = Path(cfg.report.out_dir) / "runs"
    finished_run_of(runs_dir / "same", ["model=resnet18", "optimizer.lr=1e-3"])
    finished_run_of(runs_dir / "changed", ["model=resnet18", "optimizer.lr=1e-3"])  # then edited
    trained: list[list[str]] = []

    def fake_train(command, **kwargs):
        trained.append(command)
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(subprocess, "run", fake_train)
    runs = report.run_experiments(cfg.report, runs_dir, "python", stale="keep")
    assert not trained
    assert runs["same"][1] == "ok"
    status, message = runs["changed"][1:]
    assert status == "stale" and "optimizer.lr: 0.001 -> 0.0003" in message
    assert "paths" not in message  # where a run lives is not a difference

    runs = report.run_experiments(cfg.report, runs_dir, "python", stale="rerun")
    assert [c[-1] for c in trained] == [f"hydra.run.dir={runs_dir / 'changed'}"]
    assert runs["same"][1] == "ok" and runs["changed"][1] == "failed"
    assert list(runs_dir.glob("changed.old-*")), "the stale run is kept aside, not deleted"


def test_an_option_added_since_the_run_at_its_default_is_not_a_change(tmp_path) -> None:
    """New options default to the old behaviour: a run made before them is the same run."""
    run_dir = finished_run_of(tmp_path / "old", ["model=resnet18"])
    saved = OmegaConf.load(run_dir / "config.yaml")
    with open_dict(saved):
        del saved.module["normalize_features"]  # as a run written before the option existed
        del saved.data["pair_with_original"]
        saved.logger.csv._target_ = "deepfake_exp.train.HistoryCSVLogger"  # moved since, aliased
    OmegaConf.save(saved, run_dir / "config.yaml")
    assert report.stale_reason(run_dir, ["model=resnet18"]) == ""
    saved.logger.csv._target_ = "deepfake_exp.gone.HistoryCSVLogger"  # no longer imports
    OmegaConf.save(saved, run_dir / "config.yaml")
    assert "logger.csv._target_" in report.stale_reason(run_dir, ["model=resnet18"])
    saved.logger.csv._target_ = "deepfake_exp.utils.loggers.HistoryCSVLogger"
    OmegaConf.save(saved, run_dir / "config.yaml")
    reason = report.stale_reason(run_dir, ["model=resnet18", "module.normalize_features=true"])
    assert "module.normalize_features: '<absent>' -> True" in reason


@pytest.mark.parametrize("name", ["default", "full"])
def test_report_set_baseline_and_notes_name_its_experiments(tmp_path, name: str) -> None:
    """A misspelt baseline would leave every row unpaired, a misspelt note would be lost."""
    cfg = compose_config("report", [f"report={name}"], tmp_path)
    assert cfg.report.baseline in cfg.report.experiments
    assert set(cfg.report.notes) <= set(cfg.report.experiments)


@pytest.mark.slow
def test_a_run_whose_data_was_resplit_is_not_reported_as_ok(trained_run, tmp_path) -> None:
    copy = tmp_path / "resplit_run"
    shutil.copytree(trained_run, copy)
    summary = json.loads((copy / "summary.json").read_text())
    summary["data_fingerprint"]["splits_sha256"] = "another split.seed"
    (copy / "summary.json").write_text(json.dumps(summary))
    table = report.build_report(report_cfg(tmp_path, [f"run_dirs=[{trained_run},{copy}]"]))
    status = dict(zip(table["name"], table["status"], strict=True))
    assert status == {trained_run.name: "ok", "resplit_run": "data_changed"}


# ------------------------------------------------------------------ robustness, cross-dataset


def _add_to_metrics(run_dir: Path, **blocks) -> None:
    path = run_dir / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **blocks}))


def test_robust_video_auc_column_is_the_runs_mean_under_perturbation(tmp_path) -> None:
    robust, clean = fake_run(tmp_path / "robust", BASE), fake_run(tmp_path / "clean", BASE)
    _add_to_metrics(robust, robustness={"mean_face_auc": 0.61, "mean_video_auc": 0.66})
    table = report.report_table({"robust": (robust, "ok", ""), "clean": (clean, "ok", "")})
    assert table.set_index("name")["robust_video_auc"].to_dict() == pytest.approx(
        {"robust": 0.66, "clean": float("nan")}, nan_ok=True
    )
    shown = report.shown_table(table)
    assert re.search(r"\|\s*robust_video_auc\s*\|", shown) and "0.6600" in shown
    alone = report.report_table({"clean": (clean, "ok", "")})
    assert "robust_video_auc" not in report.shown_table(alone)  # blank column: not shown


def test_cross_dataset_rows_show_frame_and_video_auc_with_intervals(tmp_path) -> None:
    from deepfake_exp.tasks.report.cross_dataset import cross_dataset_table

    run_dir = fake_run(tmp_path / "ff", BASE)
    rows = [
        {"dataset": "ff_test", "splits": "test", "videos": 12, "roc_auc": 0.9,
         "roc_auc_ci": [0.8, 0.97], "face_roc_auc": 0.85, "face_roc_auc_ci": [0.75, 0.93],
         "accuracy": 0.8, "log_loss": 0.4},
        {"dataset": "celebdf", "splits": "all", "videos": 30, "roc_auc": 0.7,
         "roc_auc_ci": [0.55, 0.82], "face_roc_auc": 0.66, "accuracy": 0.6, "log_loss": 0.7},
    ]  # fmt: skip
    _add_to_metrics(run_dir, cross_dataset=rows)
    runs = {"ff": (run_dir, "ok", ""), "other": (fake_run(tmp_path / "other", BASE), "ok", "")}
    table = report.report_table(runs)
    cross = cross_dataset_table(table)
    assert cross["dataset"].tolist() == ["ff_test", "celebdf"] and set(cross["name"]) == {"ff"}
    assert cross.loc[0, ["video_auc_low", "face_auc_high"]].tolist() == [0.8, 0.93]
    assert pd.isna(cross.loc[1, "face_auc_low"])  # no face interval stored: blank
    page = report.report_markdown(table, OmegaConf.create({"name": "t"}), None, cross)
    assert "0.900 [0.800, 0.970]" in page and "0.850 [0.750, 0.930]" in page
    assert re.search(
        r"\|\s*celebdf\s*\|\s*all\s*\|\s*30\s*\|\s*0.700 \[0.550, 0.820\]\s*\|\s*0.660\s*\|", page
    )
    written = report.write_report(table, tmp_path / "out", OmegaConf.create({"name": "t"}))
    assert tmp_path / "out" / "cross_dataset.csv" in written
    assert "Cross-dataset" not in report.report_markdown(
        report.report_table({"other": runs["other"]}), OmegaConf.create({"name": "t"}), None
    )


def test_a_failed_prepare_stops_the_report_with_its_log(tmp_path, monkeypatch) -> None:
    from deepfake_exp.tasks.report.experiments import PrepareError

    cfg = report_cfg(tmp_path)
    with open_dict(cfg.report):
        cfg.report.experiments = {"new": []}
        cfg.report.prepare = {"celebdf": ["dataset=celebdf"]}
    trained: list[list[str]] = []

    def failing_preprocess(command, stdout, **kwargs):
        stdout.write("no such dataset folder\n")
        trained.append(command)
        return subprocess.CompletedProcess(command, 2)

    monkeypatch.setattr(subprocess, "run", failing_preprocess)
    runs_dir = Path(cfg.report.out_dir) / "runs"
    with pytest.raises(PrepareError, match=r"prepare celebdf: .*code 2(.|\n)*no such dataset"):
        report.run_experiments(cfg.report, runs_dir, "python")
    assert len(trained) == 1  # nothing trained after the failed prepare
