"""Sweeps on a tiny face set: grid multirun + summary table, Optuna (failed trials, resume),
launchers, debug options and what TensorBoard gets to compare runs.

The Hydra CLI runs in this process (``run_cli``) where it can: a new interpreter costs more
than a tiny training run. Launchers that exist to start processes (joblib, submitit) do.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.types import RunMode
from omegaconf import OmegaConf

from deepfake_exp.sweeps import (
    STATUS_FAILED,
    STATUS_OK,
    collect_sweep,
    format_sweep,
    record_failure,
    sqlite_path,
    sweep_objective,
)
from tests.conftest import CONF_DIR, compose_config

METRIC = "val/video_auc"
TINY_VIT = [
    "dataset=image_folder",
    "model=vit",
    "model.input_size=32",
    "model.patch_size=8",
    "model.embed_dim=32",
    "model.mlp_dim=32",
    "model.num_heads=2",
    "model.depth=1",
    "augmentation=none",
    "scheduler=none",
    "trainer.max_epochs=1",
    "data.batch_size=4",
    "data.eval_batch_size=2",
    "data.num_workers=0",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.enable_model_summary=false",
    "test=false",
]
DIVERGES = "optimizer.lr=1e6"  # AdamW's first step throws the weights to ~1e6: NaN loss at step 1
SPLIT_SIZES = {"train": (8, 8), "val": (4, 3), "test": (3, 3)}  # (real, fake); odd val for DDP


def make_tiny_faces(root: Path) -> Path:
    """28 random 32-px "faces" in ``<root>/data/image_folder/<split>/<label>``, preprocessed.

    Fakes carry a bright square, so a model can learn something in one epoch.
    """
    from deepfake_exp.tasks.preprocess import preprocess

    rng = np.random.default_rng(0)
    for split, counts in SPLIT_SIZES.items():
        for label, count in zip(("real", "fake"), counts, strict=True):
            folder = root / "data" / "image_folder" / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = rng.integers(0, 200, (32, 32, 3), dtype=np.uint8)
                if label == "fake":
                    image[8:24, 8:24] = 255
                cv2.imwrite(str(folder / f"{i}.png"), image)
    cfg = compose_config(
        "preprocess",
        ["dataset=image_folder", "detector=none", "extraction.crop_size=32", "progress=false"],
        root,
    )
    preprocess(cfg)
    return root


@pytest.fixture(scope="session")
def tiny_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root (``paths.root_dir``) of a preprocessed tiny image-folder set."""
    return make_tiny_faces(tmp_path_factory.mktemp("tiny_faces"))


def tiny_args(root: Path, *extra: str) -> list[str]:
    return [f"paths.root_dir={root}", *TINY_VIT, *extra]


def run_cli(*args: str) -> int:
    """``python -m deepfake_exp.train <args>`` in this process; returns the exit code.

    Hydra's logging setup is left out (it would replace pytest's handlers).
    """
    from deepfake_exp.train import main  # the entrypoint itself

    argv = sys.argv
    sys.argv = [
        "deepfake_exp.train",
        f"--config-path={CONF_DIR}",  # imported, main would look for a `conf` package
        *args,
        "hydra/job_logging=none",
        "hydra/hydra_logging=none",
    ]
    try:
        main()
    except SystemExit as exit_:  # Hydra exits 1 on an error it has reported
        return int(exit_.code or 0)
    finally:
        sys.argv = argv
    return 0


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


# ---- the sweep table -----------------------------------------------------------------------


def fake_job(sweep: Path, num: int, overrides: list[str], summary: dict | None) -> Path:
    run_dir = sweep / str(num)
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), run_dir / ".hydra" / "overrides.yaml")
    OmegaConf.save(
        OmegaConf.create({"hydra": {"job": {"num": num}}}), run_dir / ".hydra/hydra.yaml"
    )
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def test_collect_sweep_lists_every_job_with_what_it_varied(tmp_path: Path) -> None:
    shared = "model=resnet18"
    fake_job(tmp_path, 10, [shared, "optimizer.lr=0.1"], None)  # killed: no summary.json
    fake_job(
        tmp_path,
        2,
        [shared, "optimizer.lr=0.01"],
        {"status": "failed", "error": "boom", METRIC: None},
    )
    fake_job(
        tmp_path,
        1,
        [shared, "optimizer.lr=0.001"],
        {"status": "ok", METRIC: 0.8, "test": {"video": {"roc_auc": 0.75}}},
    )
    (tmp_path / ".submitit" / "123").mkdir(parents=True)  # not a job
    frame = collect_sweep(tmp_path, METRIC)
    assert frame["job"].tolist() == [1, 2, 10]
    assert frame["overrides"].tolist() == [
        "optimizer.lr=0.001",
        "optimizer.lr=0.01",
        "optimizer.lr=0.1",
    ]
    assert frame["optimizer.lr"].tolist() == ["0.001", "0.01", "0.1"]
    assert frame["status"].tolist() == [STATUS_OK, STATUS_FAILED, STATUS_FAILED]
    assert frame.loc[0, METRIC] == 0.8 and frame.loc[0, "test_video_auc"] == 0.75
    assert frame.loc[1, "error"] == "boom" and "summary.json" in frame.loc[2, "error"]
    text = format_sweep(frame, METRIC, "max")
    assert "best: job 1" in text and "failed: job 10" in text


def test_failed_runs_become_failed_trials_not_nan() -> None:
    assert sweep_objective(float("nan")) is None  # NaN crashes hydra-optuna-sweeper (#2237)
    assert sweep_objective(None) is None
    assert sweep_objective(0.25) == 0.25


def test_record_failure_writes_a_failed_summary(tmp_path: Path) -> None:
    record_failure(tmp_path, METRIC, FloatingPointError("loss is nan"))
    summary = read_json(tmp_path / "summary.json")
    assert summary["status"] == STATUS_FAILED and summary[METRIC] is None
    assert summary["error"] == "FloatingPointError: loss is nan"


# ---- configs -------------------------------------------------------------------------------


def compose_with_hydra(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        return compose("train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize(
    "option", sorted(p.stem for p in Path(CONF_DIR, "hparams_search").glob("*.yaml"))
)
def test_optuna_searches_compose(option: str) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = compose_with_hydra([f"hparams_search={option}", "paths.root_dir=/data/x"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.mode == RunMode.MULTIRUN
    assert sweeper.direction == "maximize" and sweeper.n_jobs == 1
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.sampler.seed is not None and sweeper.max_failure_rate == 1.0
    assert {"optimizer.lr", "optimizer.weight_decay", "scheduler"} <= set(sweeper.params)
    storage = sqlite_path(sweeper.storage)
    assert storage == Path("/data/x/outputs/optuna", sweeper.study_name, "optuna.db")
    assert Path(cfg.hydra.sweep.dir).parent == storage.parent  # one folder per study
    minimise = compose_with_hydra(
        [f"hparams_search={option}", "optimized_metric=val/log_loss", "optimized_mode=min"]
    )
    assert minimise.hydra.sweeper.direction == "minimize"


def test_slurm_launcher_config_composes_and_builds() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra.utils import instantiate

    overrides = [
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=4",
        "hydra.launcher.tasks_per_node=4",
        "hydra.launcher.timeout_min=600",
        "hydra.launcher.array_parallelism=2",
    ]
    cfg = compose_with_hydra(overrides)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 4, 600)
    assert launcher.array_parallelism == 2 and launcher.cpus_per_task and launcher.mem_gb
    built = instantiate(launcher)  # the plugin accepts every key (nothing is submitted)
    assert built.params["partition"] == "gpu" and built.params["tasks_per_node"] == 4


@pytest.mark.parametrize(
    ("option", "key", "value"),
    [
        ("fast_dev_run", "fast_dev_run", True),
        ("overfit", "overfit_batches", 2),
        ("profiler", "profiler", None),
    ],
)
def test_debug_options_compose(option: str, key: str, value: object) -> None:
    cfg = compose_with_hydra([f"debug={option}"])
    assert key in cfg.trainer and (value is None or cfg.trainer[key] == value)
    assert "debug" in cfg.tags and "/debug/" in cfg.hydra.run.dir


def test_debug_options_run(tiny_faces: Path, tmp_path: Path) -> None:
    from deepfake_exp.tasks.train import train

    def run(option: str, *extra: str) -> tuple[Path, dict]:
        cfg = compose_config("train", [*TINY_VIT, f"debug={option}", *extra], tiny_faces)
        cfg.paths.output_dir = str(tmp_path / option)
        return Path(cfg.paths.output_dir), train(cfg)[1]

    _, summary = run("fast_dev_run")
    assert summary["best_checkpoint"] == ""  # Lightning's fast_dev_run: no checkpointing
    run_dir, _ = run("profiler")
    assert "run_training_epoch" in (run_dir / "fit-profile.txt").read_text()
    run_dir, _ = run("overfit", "trainer.max_epochs=5", "optimizer.lr=3e-3")
    loss = pd.read_csv(run_dir / "csv" / "metrics.csv")["train/loss"].dropna()
    assert len(loss) == 5 and loss.iloc[-1] < 0.25 * loss.iloc[0]  # memorises its 2 batches


# ---- a grid sweep --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid_sweep(tiny_faces: Path) -> Path:
    """``-m optimizer.lr=1e-3,1e6 scheduler=none,cosine``: 4 jobs, the two at lr=1e6 diverge."""
    assert (
        run_cli("-m", *tiny_args(tiny_faces, "optimizer.lr=1e-3,1e6", "scheduler=none,cosine")) == 0
    )
    (sweep,) = {
        p.parent for p in (tiny_faces / "outputs" / "multirun").glob("*/*/sweep_summary.csv")
    }
    return sweep


def test_grid_sweep_jobs_get_their_own_run_dirs(grid_sweep: Path, tiny_faces: Path) -> None:
    relative = grid_sweep.relative_to(tiny_faces / "outputs" / "multirun")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}", relative.as_posix())
    for job in range(4):
        run_dir = grid_sweep / str(job)
        assert (run_dir / ".hydra" / "overrides.yaml").is_file()
        assert (run_dir / "config.yaml").is_file() and (run_dir / "summary.json").is_file()


def test_grid_sweep_summary_marks_diverged_jobs_failed(grid_sweep: Path) -> None:
    table = pd.read_csv(grid_sweep / "sweep_summary.csv")
    assert table["job"].tolist() == [0, 1, 2, 3]
    assert sorted(zip(table["optimizer.lr"], table["scheduler"], strict=True)) == [
        (0.001, "cosine"), (0.001, "none"), (1e6, "cosine"), (1e6, "none"),
    ]  # fmt: skip
    for _, row in table.iterrows():
        summary = read_json(Path(row["run_dir"]) / "summary.json")
        assert row["status"] == summary["status"]
        if row["optimizer.lr"] == 0.001:
            assert row["status"] == STATUS_OK and row[METRIC] == pytest.approx(summary[METRIC])
        else:
            assert row["status"] == STATUS_FAILED and math.isnan(row[METRIC])
            assert "diverged" in row["error"] and "FloatingPointError" in summary["error"]


def hparams_of(tensorboard_dir: Path) -> tuple[dict, dict, object]:
    """(hyper-parameters, metric tags, accumulator) from a run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(tensorboard_dir), size_guidance={"scalars": 0})
    events.Reload()
    content = events.PluginTagToContent("hparams")
    parse = plugin_data_pb2.HParamsPluginData.FromString
    start = parse(content["_hparams_/session_start_info"]).session_start_info
    experiment = parse(content["_hparams_/experiment"]).experiment
    values = {
        key: value.number_value if value.HasField("number_value") else value.string_value
        for key, value in start.hparams.items()
    }
    return values, {info.name.tag for info in experiment.metric_infos}, events


def test_grid_sweep_runs_are_comparable_in_tensorboard(grid_sweep: Path) -> None:
    table = pd.read_csv(grid_sweep / "sweep_summary.csv")
    finished = table[table["status"] == STATUS_OK]
    assert len(finished) == 2
    schedulers = set()
    for _, row in finished.iterrows():
        hparams, metric_tags, events = hparams_of(Path(row["run_dir"]) / "tensorboard")
        assert hparams["optimizer/lr"] == pytest.approx(1e-3) and hparams["seed"] == 42
        schedulers.add(hparams["scheduler"])  # the group's chosen option
        assert "hparams/best_val" in metric_tags and hparams["selected_on"] == METRIC
        (logged,) = events.Scalars("hparams/best_val")
        assert logged.value == pytest.approx(row[METRIC])
        scalars = set(events.Tags()["scalars"])
        assert {"train/loss", "val/loss", "val/auc", "val/video_auc"} <= scalars
        assert not {"train/loss_epoch", "val/auc_epoch"} & scalars
    assert len(schedulers) == 2  # each run carries its own hyper-parameters


@pytest.mark.slow
def test_test_metrics_reach_tensorboard_next_to_the_hparams(
    tiny_faces: Path, tmp_path: Path
) -> None:
    from deepfake_exp.tasks.train import train

    cfg = compose_config("train", [*TINY_VIT, "test=true"], tiny_faces)
    cfg.paths.output_dir = str(tmp_path / "run")
    _, summary = train(cfg)
    _, metric_tags, events = hparams_of(tmp_path / "run" / "tensorboard")
    assert {"hparams/test_video_roc_auc", "hparams/test_log_loss"} <= metric_tags
    (logged,) = events.Scalars("hparams/test_video_roc_auc")
    assert logged.value == pytest.approx(summary["test"]["video"]["roc_auc"])
    assert {"test/log_loss", "test/video_roc_auc"} <= set(events.Tags()["scalars"])


def test_a_single_diverged_run_fails_loudly_with_a_failed_summary(
    tiny_faces: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "single"
    assert run_cli(*tiny_args(tiny_faces, DIVERGES, f"hydra.run.dir={run_dir}")) == 1
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == STATUS_FAILED and "diverged" in summary["error"]


# ---- Optuna --------------------------------------------------------------------------------


def optuna_study(root: Path, name: str):
    import optuna

    storage = f"sqlite:///{root}/outputs/optuna/{name}/optuna.db"
    return optuna.load_study(study_name=name, storage=storage)


OPTUNA_ARGS = [
    "hparams_search=vit_optuna",
    "hydra.sweeper.study_name=search",
    "hydra.sweeper.sampler.n_startup_trials=2",
    "optimizer.lr=choice(1e-3,1e6)",  # replaces the configured lr range: some trials diverge
]


@pytest.fixture(scope="module")
def optuna_search(tiny_faces: Path) -> tuple[list, Path]:
    """A first 3-trial vit_optuna search: (its trials, its sweep dir)."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    assert run_cli(*tiny_args(tiny_faces, *OPTUNA_ARGS, "hydra.sweeper.n_trials=3")) == 0
    (sweep,) = (tiny_faces / "outputs" / "optuna" / "search").glob("*/sweep_summary.csv")
    return optuna_study(tiny_faces, "search").trials, sweep.parent


def test_optuna_marks_a_diverged_trial_failed_and_goes_on(optuna_search) -> None:
    from optuna.trial import TrialState

    trials, sweep_dir = optuna_search
    lrs = [t.params["optimizer.lr"] for t in trials]
    assert set(lrs) == {1e-3, 1e6}, f"sampler seed drew {lrs}: pick a seed drawing both"
    table = pd.read_csv(sweep_dir / "sweep_summary.csv")
    assert len(table) == len(trials) == 3
    for trial, (_, row) in zip(trials, table.iterrows(), strict=True):
        assert float(row["optimizer.lr"]) == trial.params["optimizer.lr"]  # job i = trial i
        if trial.params["optimizer.lr"] == 1e6:
            assert trial.state == TrialState.FAIL and trial.value is None
            assert row["status"] == STATUS_FAILED and "diverged" in row["error"]
        else:
            assert trial.state == TrialState.COMPLETE and row["status"] == STATUS_OK
            assert trial.value == pytest.approx(row[METRIC])
    assert (sweep_dir / "optimization_results.yaml").is_file()  # the sweep finished


def test_optuna_study_resumes_from_its_sqlite_storage(optuna_search, tiny_faces: Path) -> None:
    first, first_sweep = optuna_search
    # n_trials counts this invocation: 2 more, not "up to 2"; a new seed avoids replaying
    # the random start-up points of the first invocation
    args = tiny_args(tiny_faces, *OPTUNA_ARGS, "hydra.sweeper.n_trials=2")
    assert run_cli(*args, "hydra.sweeper.sampler.seed=99") == 0
    trials = optuna_study(tiny_faces, "search").trials
    assert len(first) == 3 and len(trials) == 5
    assert [(t.params, t.state) for t in trials[:3]] == [(t.params, t.state) for t in first]
    sweeps = sorted(first_sweep.parent.glob("*/sweep_summary.csv"))
    assert [len(pd.read_csv(s)) for s in sweeps] == [3, 2]  # one sweep dir per invocation


# ---- launchers -----------------------------------------------------------------------------


def event_file_pids(run_dir: Path) -> set[int]:
    """PIDs of the processes that wrote a run's TensorBoard events (they are in the names)."""
    return {int(p.name.split(".")[-2]) for p in (run_dir / "tensorboard").glob("events.out.*")}


def check_parallel_sweep(root: Path, launcher: str) -> list[Path]:
    sweep_dir = root / "outputs" / launcher
    args = tiny_args(root, f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep_dir}")
    extra = (
        ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=10"]
    )
    assert run_cli("-m", *args, *extra, "optimizer.lr=1e-3,2e-3") == 0
    table = pd.read_csv(sweep_dir / "sweep_summary.csv")
    assert table["status"].tolist() == [STATUS_OK, STATUS_OK]
    run_dirs = [Path(p) for p in table["run_dir"]]
    pids = [event_file_pids(run_dir) for run_dir in run_dirs]
    assert all(len(p) == 1 for p in pids) and pids[0] != pids[1]  # two worker processes ...
    assert os.getpid() not in pids[0] | pids[1]  # ... neither of them this one
    return run_dirs


@pytest.mark.slow
def test_joblib_launcher_runs_two_jobs_in_parallel_processes(tiny_faces: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    check_parallel_sweep(tiny_faces, "joblib")


@pytest.mark.slow
def test_submitit_local_launcher_runs_two_jobs(tiny_faces: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    run_dirs = check_parallel_sweep(tiny_faces, "submitit_local")
    logs = list((tiny_faces / "outputs" / "submitit_local" / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2  # submitit's own job folders
    assert all(read_json(d / "summary.json")["status"] == STATUS_OK for d in run_dirs)
