"""Run a named set of experiments and tabulate them: ``python -m deepfake_exp.report``.

``report=default`` trains a few small models on the embedded synthetic data (CPU-sized);
``report=full`` lists the study experiments on their real datasets (GPU). Each experiment is
trained by its own process (:mod:`.experiments`); a run directory holding ``metrics.json`` is
finished and is only collected, so re-running the report is cheap; ``retrain=true`` moves old
runs aside. ``run_dirs=[...]`` (globs allowed) tabulates existing runs instead.

A finished run is reused only while its saved ``config.yaml`` equals what the experiment
composes to now (paths aside): a changed experiment is retrained (``stale=rerun``) or listed
with status ``stale`` and the keys that differ (``stale=keep``).

Each row (:mod:`.rows`) says how it was selected (protocol), what its study published next to
what was measured, its test video ROC-AUC with the 95% bootstrap interval, the mean video AUC
under perturbation (``robust_video_auc``, when evaluated with ``robustness=``), and the paired
comparison with ``report.baseline`` on the same test videos (:mod:`.paired`). Runs evaluated on
other datasets add a cross-dataset table (:mod:`.cross_dataset`).

Writes ``report.csv``, ``report.md``, ``cross_dataset.csv`` (when any) and ``plots/``
(:mod:`.page`); every number comes from the runs' own files.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from deepfake_exp.config import validate_config
from deepfake_exp.tasks.report.experiments import (
    collect_run_dirs,
    compose_train_config,
    config_differences,
    run_experiments,
    stale_reason,
)
from deepfake_exp.tasks.report.page import (
    protocol_table,
    report_markdown,
    shown_table,
    write_report,
)
from deepfake_exp.tasks.report.rows import report_table, run_row
from deepfake_exp.utils.run import save_run_info

__all__ = [
    "build_report",
    "collect_run_dirs",
    "compose_train_config",
    "config_differences",
    "protocol_table",
    "report_markdown",
    "report_table",
    "run",
    "run_experiments",
    "run_row",
    "shown_table",
    "stale_reason",
    "write_report",
]


def build_report(cfg: DictConfig) -> pd.DataFrame:
    """Run (or collect) the runs, then write the report; returns the table."""
    started = time.perf_counter()
    out_dir = Path(cfg.report.out_dir)
    if cfg.run_dirs:
        runs = collect_run_dirs(list(cfg.run_dirs))
    else:
        if not cfg.report.experiments:
            raise ValueError(f"report set {cfg.report.name!r} lists no experiments")
        python = cfg.python or sys.executable
        runs = run_experiments(cfg.report, out_dir / "runs", python, cfg.retrain, cfg.stale)
    if not runs:
        raise ValueError("no run to report")
    notes = OmegaConf.to_container(cfg.report.notes) if cfg.report.get("notes") else {}
    table = report_table(runs, cfg.report.get("baseline"), notes)
    write_report(table, out_dir, cfg.report, time.perf_counter() - started)
    return table


def run(cfg: DictConfig) -> None:
    """``python -m deepfake_exp.report``: build the report and print its tables."""
    cfg = validate_config(cfg)
    save_run_info(cfg.report.out_dir, cfg)
    table = build_report(cfg)
    print(shown_table(table), protocol_table(table), sep="\n\n")
    out_dir = Path(cfg.report.out_dir).resolve()
    print(f"\nreport: {out_dir / 'report.md'}  table: {out_dir / 'report.csv'}")
    if not (table["status"] == "ok").any():
        raise RuntimeError(f"no run of the report finished; see {out_dir / 'runs' / 'logs'}")
