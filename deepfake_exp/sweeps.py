"""Sweeps: one table per sweep, failed trials as results, Optuna storage that survives restarts.

A grid (``-m model=resnet18,vgg16 optimizer.lr=1e-4,1e-3``) or an Optuna search runs many
training jobs; each writes ``summary.json`` in its own run directory. :class:`SweepSummary`
(a Hydra callback, registered in ``conf/hydra/default.yaml``) collects them into
``<sweep dir>/sweep_summary.csv`` when the sweep ends.

A diverged or crashed job is an outcome of a search, not a reason to stop it: ``train.main``
records it (``summary.json`` with ``status: failed``) and, inside a sweep, returns ``None``
(:func:`sweep_objective`). hydra-optuna-sweeper 1.2/1.3 then tells Optuna the trial FAILED and
goes on (with ``max_failure_rate: 1.0``, as in ``conf/hparams_search``). Returning NaN instead
crashes that sweeper (hydra#2237: ``study.tell`` rejects NaN, and the fallback ``tell(FAIL)``
is given the NaN again); raising stops the grid sweeper before its summary.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from deepfake_exp.runs import HYDRA_DIR, OVERRIDES, SUMMARY, RunDir
from deepfake_exp.utils.io import write_csv, write_json

log = logging.getLogger(__name__)

SWEEP_SUMMARY_FILE = "sweep_summary.csv"
STATUS_OK = "ok"
STATUS_FAILED = "failed"


def in_sweep() -> bool:
    """Whether this process runs one job of a Hydra sweep (``-m`` or ``hydra.mode=MULTIRUN``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_objective(value: float | None) -> float | None:
    """The value a job hands its sweeper: ``None`` (a failed trial) for a missing or NaN metric.

    Optuna's sweeper turns ``None`` into a FAILED trial and continues; NaN would crash it.
    """
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def record_failure(run_dir: str | Path, metric: str, error: BaseException) -> dict[str, Any]:
    """Write ``summary.json`` of a run that raised, so the sweep table shows why it failed."""
    summary = {
        "status": STATUS_FAILED,
        "run_dir": str(Path(run_dir).resolve()),
        metric: None,
        "error": f"{type(error).__name__}: {error}",
    }
    write_json(RunDir(run_dir).summary_json, summary)
    return summary


def job_dirs(sweep_dir: str | Path) -> list[Path]:
    """Run directories of a sweep: folders holding ``.hydra/overrides.yaml``.

    Hydra writes that file when a job starts, so jobs killed before writing ``summary.json``
    (out of memory, SLURM time limit) are listed too.
    """
    found = Path(sweep_dir).rglob(OVERRIDES)
    return sorted({p.parent.parent for p in found if p.parent.name == HYDRA_DIR})


def _job_number(run_dir: Path) -> int | None:
    hydra_file = RunDir(run_dir).hydra_yaml_path
    if not hydra_file.is_file():
        return None
    num = OmegaConf.load(hydra_file).hydra.job.get("num")
    return int(num) if isinstance(num, int) else None


def job_row(run_dir: Path, metric: str) -> dict[str, Any]:
    """One line of the sweep table: the job's overrides, what it scored, whether it finished."""
    run = RunDir(run_dir)
    overrides = run.overrides()
    summary = run.read_summary() if run.summary_json.is_file() else None
    if summary is None:
        summary = {"status": STATUS_FAILED, "error": f"no {SUMMARY}: killed or still running"}
    video_auc = summary.get("test", {}).get("video", {}).get("roc_auc")
    return {
        "job": _job_number(run_dir),
        "overrides": overrides,
        metric: summary.get(metric),
        "test_video_auc": video_auc,
        "status": summary.get("status", STATUS_OK),
        "error": summary.get("error"),
        "run_dir": str(run_dir.resolve()),
    }


def swept_overrides(jobs: Sequence[Sequence[str]]) -> list[list[str]]:
    """Each job's overrides minus those every job shares: what the sweep varied.

    A single job keeps all of its overrides.
    """
    if len(jobs) < 2:
        return [list(job) for job in jobs]
    shared = set(jobs[0]).intersection(*map(set, jobs[1:]))
    return [[o for o in job if o not in shared] for job in jobs]


def collect_sweep(sweep_dir: str | Path, metric: str) -> pd.DataFrame:
    """The sweep table, one row per job in job order.

    Columns: ``job``, ``overrides`` (what the sweep varied, space-separated), one column per
    swept key (for pivots), ``metric``, ``test_video_auc``, ``status`` (ok/failed), ``error``,
    ``run_dir``.
    """
    rows = sorted(
        (job_row(run_dir, metric) for run_dir in job_dirs(sweep_dir)),
        key=lambda row: (row["job"] is None, row["job"] or 0),
    )
    swept = swept_overrides([row["overrides"] for row in rows])
    keys = list(dict.fromkeys(o.split("=", 1)[0] for job in swept for o in job if "=" in o))
    for row, job in zip(rows, swept, strict=True):
        row["overrides"] = " ".join(job)
        values = dict(o.split("=", 1) for o in job if "=" in o)
        row.update({key: values.get(key) for key in keys})
    columns = ["job", "overrides", *keys, metric, "test_video_auc", "status", "error", "run_dir"]
    return pd.DataFrame(rows, columns=columns)


def format_sweep(frame: pd.DataFrame, metric: str, mode: str) -> str:
    """The table for the console, with the best finished job named underneath."""
    shown = frame[["job", "overrides", metric, "test_video_auc", "status"]]
    lines = [shown.to_string(index=False)]
    finished = frame[(frame["status"] == STATUS_OK) & frame[metric].notna()]
    if not finished.empty:
        scores = finished[metric].astype(float)
        best = finished.loc[scores.idxmax() if mode == "max" else scores.idxmin()]
        lines.append(f"best: job {best['job']} {metric}={best[metric]:.4f}  {best['overrides']}")
        lines.append(f"      {best['run_dir']}")
    for _, row in frame[frame["status"] != STATUS_OK].iterrows():
        lines.append(f"failed: job {row['job']}: {row['error']}")
    return "\n".join(lines)


class SweepSummary(Callback):
    """Hydra callback: ``<sweep dir>/sweep_summary.csv`` when a multirun ends.

    Args:
        filename: Name of the table in the sweep directory.
        tasks: Entry points whose jobs write ``summary.json`` (others are skipped).
    """

    def __init__(
        self, filename: str = SWEEP_SUMMARY_FILE, tasks: Sequence[str] = ("train",)
    ) -> None:
        self.filename = filename
        self.tasks = tuple(tasks)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("task_name") not in self.tasks:
            return
        metric = config.get("optimized_metric", "val/video_auc")
        sweep_dir = Path(config.hydra.sweep.dir)
        frame = collect_sweep(sweep_dir, metric)
        path = write_csv(sweep_dir / self.filename, frame)
        n_ok = int((frame["status"] == STATUS_OK).sum())
        text = format_sweep(frame, metric, config.get("optimized_mode", "max"))
        print(f"\nsweep summary ({n_ok}/{len(frame)} jobs ok): {path}\n{text}")
        if n_ok < len(frame):
            log.warning("%d of %d jobs failed (see %s)", len(frame) - n_ok, len(frame), path)


def sqlite_path(storage: str | None) -> Path | None:
    """The database file of an ``sqlite:///...`` storage URL (``None`` for other storages)."""
    if not storage or not str(storage).startswith("sqlite:"):
        return None
    from sqlalchemy.engine.url import make_url

    database = make_url(str(storage)).database
    return Path(database) if database and database != ":memory:" else None


class OptunaStorageDir(Callback):
    """Hydra callback: create the folder of an SQLite Optuna storage before the study opens.

    The sweeper opens the storage before any job has created a directory, and SQLite does not
    create missing folders ("unable to open database file").
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        path = sqlite_path(config.hydra.sweeper.get("storage"))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            log.info("Optuna storage: %s", path.resolve())
