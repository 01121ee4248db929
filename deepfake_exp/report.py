"""Run a named set of experiments and tabulate them: ``python -m deepfake_exp.report``.

``report=default`` trains a few small models on the embedded synthetic data (CPU-sized);
``report=full`` lists the study experiments on their real datasets (GPU). Each experiment is
trained by its own ``python -m deepfake_exp.train`` process into ``<out_dir>/runs/<name>``
(after ``deepfake_exp.preprocess``, which skips work already done), so one crash or a memory
leak cannot take the others down. A run directory holding ``metrics.json`` is finished and is
only collected, so re-running the report is cheap; ``retrain=true`` moves old runs aside.
``run_dirs=[...]`` (globs allowed) tabulates existing runs instead.

Writes ``report.csv``, ``report.md`` and ``plots/`` (test AUC per run, ROC overlay); every
number comes from a run's ``metrics.json`` / ``summary.json`` / ``config.yaml``.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from hydra.core.config_store import ConfigStore
from matplotlib.figure import Figure
from omegaconf import MISSING, DictConfig, OmegaConf

from deepfake_exp.evaluate import plot_roc_overlay
from deepfake_exp.evaluation import plots
from deepfake_exp.utils.io import atomic_write, write_csv, write_json
from deepfake_exp.utils.run import save_run_info

log = logging.getLogger(__name__)

DONE_FILE = "metrics.json"
RUN_INFO = "report_run.json"
TEST_KEYS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
COLUMNS = [
    "name", "status", "model", "dataset", "optimizer", "lr", "weight_decay", "scheduler",
    "epochs", "best_epoch", "val_metric", "best_val", "threshold",
    *TEST_KEYS, "face_accuracy", "face_roc_auc", "face_log_loss",
    "train_minutes", "run_dir",
]  # fmt: skip
MARKDOWN_COLUMNS = [
    "name", "status", "model", "optimizer", "lr", "weight_decay", "scheduler", "best_epoch",
    "val_metric", "best_val", *TEST_KEYS, "face_roc_auc", "train_minutes",
]  # fmt: skip
GENERAL_FORMAT = ("lr", "weight_decay")  # 1e-05, not 0.0000
INTEGER_COLUMNS = ("epochs", "best_epoch")


@dataclass
class ReportSetSchema:
    name: str = "default"
    description: str = ""
    out_dir: str = MISSING
    common: list[str] = field(default_factory=list)
    experiments: dict[str, list[str]] = field(default_factory=dict)
    preprocess: bool = True


@dataclass
class ReportSchema:
    task_name: str = "report"
    report: ReportSetSchema = field(default_factory=ReportSetSchema)
    run_dirs: list[str] = field(default_factory=list)
    retrain: bool = False
    python: str | None = None
    paths: Any = MISSING


ConfigStore.instance().store(name="report_schema", node=ReportSchema)


# --------------------------------------------------------------------------------------------
# Running experiments
# --------------------------------------------------------------------------------------------


def is_done(run_dir: Path) -> bool:
    """A run is finished once evaluation wrote ``metrics.json`` (train with ``test=true``)."""
    return (run_dir / DONE_FILE).is_file()


def train_command(python: str, overrides: list[str], run_dir: Path) -> list[str]:
    """The train process of one experiment, its run directory pinned by Hydra."""
    return [python, "-m", "deepfake_exp.train", *overrides, f"hydra.run.dir={run_dir}"]


def preprocess_command(python: str, overrides: list[str], run_dir: Path) -> list[str]:
    """Preprocessing for one experiment's dataset; a no-op when its faces already exist."""
    return [
        python, "-m", "deepfake_exp.preprocess", *overrides, "progress=false",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip


def _run_logged(command: list[str], log_path: Path) -> int:
    """Run ``command`` with its output in ``log_path``; returns the exit code."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as stream:
        stream.write(f"$ {' '.join(command)}\n")
        stream.flush()
        return subprocess.run(
            command, stdout=stream, stderr=subprocess.STDOUT, check=False
        ).returncode


def _tail(path: Path, lines: int = 15) -> str:
    return (
        "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""
    )


def _move_aside(run_dir: Path) -> None:
    """Keep an old run under another name rather than deleting it (``retrain=true``)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.old-{stamp}")
    run_dir.rename(target)
    log.info("moved %s aside to %s", run_dir, target)


def run_experiment(
    name: str,
    overrides: list[str],
    runs_dir: Path,
    python: str,
    preprocess: bool = True,
) -> tuple[str, str]:
    """Preprocess (if asked) and train one experiment; returns ``(status, message)``."""
    run_dir = runs_dir / name
    log_path = runs_dir / "logs" / f"{name}.log"
    started = time.perf_counter()
    steps = []
    if preprocess:
        steps.append(
            ("preprocess", preprocess_command(python, overrides, runs_dir / "preprocess" / name))
        )
    steps.append(("train", train_command(python, overrides, run_dir)))
    for step, command in steps:
        log.info("%s: %s", name, step)
        code = _run_logged(command, log_path)
        if code != 0:
            message = f"{step} exited with code {code}; log {log_path}:\n{_tail(log_path)}"
            log.error("%s: %s", name, message)
            return "failed", message
    seconds = time.perf_counter() - started
    write_json(run_dir / RUN_INFO, {"name": name, "seconds": seconds, "overrides": overrides})
    if not is_done(run_dir):
        return "failed", f"training finished without {DONE_FILE} (was test=false?); log {log_path}"
    log.info("%s: done in %.1f min", name, seconds / 60)
    return "ok", ""


def run_experiments(
    report: DictConfig, runs_dir: Path, python: str, retrain: bool = False
) -> dict[str, tuple[Path, str, str]]:
    """Every experiment of the set, trained unless already finished: name -> (dir, status, msg)."""
    runs: dict[str, tuple[Path, str, str]] = {}
    for name, overrides in report.experiments.items():
        run_dir = runs_dir / name
        if is_done(run_dir) and not retrain:
            log.info("%s: finished run found, collecting %s", name, run_dir)
            runs[name] = (run_dir, "ok", "")
            continue
        if run_dir.exists():
            _move_aside(run_dir)
        args = [*report.common, *overrides]
        status, message = run_experiment(name, args, runs_dir, python, report.preprocess)
        runs[name] = (run_dir, status, message)
    return runs


def collect_run_dirs(patterns: list[str]) -> dict[str, tuple[Path, str, str]]:
    """Existing run directories (globs expanded), named by their folder (made unique)."""
    runs: dict[str, tuple[Path, str, str]] = {}
    for pattern in patterns:
        matches = sorted(glob.glob(str(Path(pattern).expanduser()))) or [pattern]
        for match in matches:
            path = Path(match)
            if not path.is_dir():
                raise FileNotFoundError(f"run_dirs: {match} is not a directory")
            name = path.name
            if name in runs:
                name = f"{path.parent.name}/{path.name}"
            if name in runs:
                name = f"{name}-{len(runs)}"
            status = "ok" if is_done(path) else "unfinished"
            runs[name] = (path, status, "" if status == "ok" else f"no {DONE_FILE}")
    return runs


# --------------------------------------------------------------------------------------------
# Reading runs
# --------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def run_config(run_dir: Path, checkpoint: str | None = None) -> DictConfig:
    """The run's resolved config: ``config.yaml``, else the copy inside its checkpoint."""
    if (run_dir / "config.yaml").is_file():
        return OmegaConf.load(run_dir / "config.yaml")
    if checkpoint and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if "run_config" in state:
            return OmegaConf.create(state["run_config"])
    return OmegaConf.create({})


def _choices(run_dir: Path) -> dict[str, str]:
    """Hydra's group choices (``model: resnet18``) when the run was launched by Hydra."""
    path = run_dir / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return {}
    choices = OmegaConf.load(path).hydra.runtime.get("choices", {})
    return {str(k): str(v) for k, v in choices.items()}


def _option_name(cfg: DictConfig, group: str, choices: dict[str, str], attr: str = "") -> Any:
    """A group's option name: Hydra's choice, else a telling attribute, else the class name."""
    if group in choices and choices[group] != "None":
        return choices[group]
    node = cfg.get(group)
    if not node:
        return None
    if attr and node.get(attr):
        return node.get(attr)
    target = str(node.get("_target_", ""))
    return target.rsplit(".", 1)[-1].lower() or None


def run_row(name: str, run_dir: Path, status: str = "ok", message: str = "") -> dict[str, Any]:
    """One report line, every number read from the run's own files."""
    metrics = _read_json(run_dir / DONE_FILE)
    summary = _read_json(run_dir / "summary.json")
    cfg = run_config(run_dir, metrics.get("checkpoint") or summary.get("best_checkpoint"))
    choices = _choices(run_dir)
    optimizer = cfg.get("optimizer") or {}
    val_metric = cfg.get("optimized_metric")
    test = metrics.get("test", {})
    video, face = test.get("video", {}), test.get("face", {})
    timing = _read_json(run_dir / RUN_INFO)
    if not metrics and summary.get("status") == "failed":  # train recorded why it failed
        status, message = "failed", message or str(summary.get("error", ""))
    elif not metrics and status == "ok":
        status = "unfinished"
    row: dict[str, Any] = {
        "name": name,
        "status": status,
        "model": _option_name(cfg, "model", choices, "arch"),
        "dataset": (cfg.get("dataset") or {}).get("name"),
        "optimizer": _option_name(cfg, "optimizer", choices),
        "lr": optimizer.get("lr"),
        "weight_decay": optimizer.get("weight_decay"),
        "scheduler": _option_name(cfg, "scheduler", choices),
        "epochs": (cfg.get("trainer") or {}).get("max_epochs"),
        "best_epoch": summary.get("best_epoch"),
        "val_metric": val_metric,
        "best_val": summary.get(val_metric) if val_metric else None,
        "threshold": video.get("threshold"),
        **{key: video.get(key) for key in TEST_KEYS},
        "face_accuracy": face.get("accuracy"),
        "face_roc_auc": face.get("roc_auc"),
        "face_log_loss": face.get("log_loss"),
        "train_minutes": timing["seconds"] / 60 if "seconds" in timing else None,
        "run_dir": str(run_dir.resolve()),
    }
    if message:
        row["message"] = message
    return row


def report_table(runs: dict[str, tuple[Path, str, str]]) -> pd.DataFrame:
    """One row per run, in the order given."""
    rows = [run_row(name, *entry) for name, entry in runs.items()]
    columns = COLUMNS + (["message"] if any("message" in r for r in rows) else [])
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------
# Writing the report
# --------------------------------------------------------------------------------------------


def plot_metric_bars(table: pd.DataFrame, title: str = "Test ROC-AUC per run") -> Figure:
    """Video and face test ROC-AUC per run, side by side, with the value on each bar."""
    finished = table[table["status"] == "ok"]
    names = finished["name"].tolist()
    figure = plots.new_figure(max(5.0, 1.2 * len(names) + 2.0), 4.5)
    axes = figure.add_subplot()
    x = np.arange(len(names))
    width = 0.38
    for offset, column, label in (
        (-width / 2, "roc_auc", "video"),
        (width / 2, "face_roc_auc", "face"),
    ):
        values = pd.to_numeric(finished[column], errors="coerce").fillna(0.0).to_numpy()
        bars = axes.bar(x + offset, values, width, label=label)
        axes.bar_label(bars, fmt="%.3f", fontsize=7)
    axes.axhline(0.5, color="grey", ls="--", lw=1, label="chance")
    axes.set_xticks(x, labels=names, rotation=20, ha="right")
    axes.set(ylim=(0, 1.08), ylabel="test ROC-AUC", title=title)
    axes.legend(loc="lower right", fontsize=8)
    return figure


def roc_curves(table: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each finished run's test video predictions (``predictions_test_videos.csv``)."""
    curves = {}
    for name, run_dir, status in table[["name", "run_dir", "status"]].itertuples(index=False):
        path = Path(run_dir) / "predictions_test_videos.csv"
        if status == "ok" and path.is_file():
            videos = pd.read_csv(path)
            curves[name] = (videos["label"].to_numpy(), videos["prob"].to_numpy())
    return curves


def shown_table(table: pd.DataFrame) -> str:
    """The Markdown/console table: 4 decimals, learning rates as ``1e-05``, blanks for gaps."""
    shown = table[[c for c in MARKDOWN_COLUMNS if c in table.columns]].astype(object)
    for column in shown.columns:
        style = "g" if column in GENERAL_FORMAT else ".0f" if column in INTEGER_COLUMNS else ".4f"
        shown[column] = [
            "" if v is None or (isinstance(v, float) and math.isnan(v))
            else f"{v:{style}}" if isinstance(v, float) else str(v)
            for v in shown[column]
        ]  # fmt: skip
    text = ("name", "status", "model", "optimizer", "scheduler", "val_metric")
    align = ["left" if c in text else "right" for c in shown.columns]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=align)


def report_markdown(table: pd.DataFrame, report: DictConfig, elapsed: float | None) -> str:
    """The report page: what was run, the table, the plots, how to read it."""
    lines = [
        f"# Report: {report.name}",
        "",
        report.description.strip() if report.get("description") else "",
        "",
        f"Generated {datetime.now():%Y-%m-%d %H:%M}. Test metrics are video level (faces "
        "averaged per video as each run was trained) at the threshold chosen on that run's "
        "validation split; `face_roc_auc` is face level. `best_val` is the validation metric "
        "the checkpoint was selected on (`val_metric`).",
        "",
        shown_table(table),
        "",
    ]
    if elapsed is not None:
        lines += [f"Wall time of this report: {elapsed / 60:.1f} min.", ""]
    failed = table[table["status"] != "ok"]
    for name, message in zip(
        failed["name"], failed.get("message", [""] * len(failed)), strict=False
    ):
        lines += [f"- **{name}** did not finish: {message}".rstrip(), ""]
    lines += [
        "![test ROC-AUC per run](plots/test_auc.png)",
        "",
        "![ROC curves of the test videos](plots/roc_test_videos.png)",
        "",
        "Per-run details (ROC, confusion matrix, calibration, Grad-CAM, galleries): "
        "`<run_dir>/plots/`; all columns, run directories included: `report.csv`.",
        "",
    ]
    return "\n".join(lines)


def write_report(
    table: pd.DataFrame, out_dir: Path, report: DictConfig, elapsed: float | None = None
) -> list[Path]:
    """``report.csv``, ``report.md`` and the plots."""
    written = [write_csv(out_dir / "report.csv", table)]
    text = report_markdown(table, report, elapsed)
    written.append(atomic_write(out_dir / "report.md", lambda p: p.write_text(text)))
    figures = {"test_auc": plot_metric_bars(table)}
    curves = roc_curves(table)
    if curves:
        figures["roc_test_videos"] = plot_roc_overlay(curves, "ROC of the test videos, per run")
    for name, figure in figures.items():
        written.append(plots.save_figure(figure, out_dir / "plots" / f"{name}.png"))
    return written


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
        runs = run_experiments(cfg.report, out_dir / "runs", python, cfg.retrain)
    if not runs:
        raise ValueError("no run to report")
    table = report_table(runs)
    write_report(table, out_dir, cfg.report, time.perf_counter() - started)
    return table


@hydra.main(version_base="1.3", config_path="../conf", config_name="report")
def main(cfg: DictConfig) -> None:
    save_run_info(cfg.report.out_dir, cfg)
    table = build_report(cfg)
    print(shown_table(table))
    out_dir = Path(cfg.report.out_dir).resolve()
    print(f"\nreport: {out_dir / 'report.md'}  table: {out_dir / 'report.csv'}")
    if not (table["status"] == "ok").any():
        raise RuntimeError(f"no run of the report finished; see {out_dir / 'runs' / 'logs'}")


if __name__ == "__main__":
    main()
