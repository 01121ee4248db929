"""Run a named set of experiments and tabulate them: ``python -m deepfake_exp.report``.

``report=default`` trains a few small models on the embedded synthetic data (CPU-sized);
``report=full`` lists the study experiments on their real datasets (GPU). Each experiment is
trained by its own ``python -m deepfake_exp.train`` process into ``<out_dir>/runs/<name>``
(after ``deepfake_exp.preprocess``, which skips work already done), so one crash or a memory
leak cannot take the others down. A run directory holding ``metrics.json`` is finished and is
only collected, so re-running the report is cheap; ``retrain=true`` moves old runs aside.
``run_dirs=[...]`` (globs allowed) tabulates existing runs instead.

A finished run is reused only while its saved ``config.yaml`` equals what the experiment
composes to now (paths aside): a changed experiment is retrained (``stale=rerun``) or listed
with status ``stale`` and the keys that differ (``stale=keep``).

Each row says how it was selected (protocol: the split that chose checkpoint, threshold and
temperature, the face -> video aggregation, faces per test video, identity-disjointness from
``split_report.json``), what its study published next to what was measured, its test video
ROC-AUC with the 95% bootstrap interval, and the paired comparison with ``report.baseline``
on the same test videos (DeLong's test of the AUC difference).

Writes ``report.csv``, ``report.md`` and ``plots/`` (test AUC per run, ROC overlay); every
number comes from a run's ``metrics.json`` / ``summary.json`` / ``config.yaml`` /
``predictions_test_videos.csv``.
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
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from matplotlib.figure import Figure
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from deepfake_exp import config as _config  # noqa: F401  (registers the train schema)
from deepfake_exp.evaluate import plot_roc_overlay
from deepfake_exp.evaluation import plots
from deepfake_exp.evaluation.bootstrap import delong_test, paired_bootstrap_diff
from deepfake_exp.runs import DataMismatchError, check_data_fingerprint
from deepfake_exp.utils.io import atomic_write, write_csv, write_json
from deepfake_exp.utils.run import save_run_info

log = logging.getLogger(__name__)

DONE_FILE = "metrics.json"
RUN_INFO = "report_run.json"
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
TEST_KEYS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
PROTOCOL_COLUMNS = (
    "selected_on", "threshold_on", "temperature_on", "aggregation", "faces_per_video",
    "identity_disjoint",
)  # fmt: skip
COLUMNS = [
    "name", "status", "model", "dataset", "optimizer", "lr", "weight_decay", "scheduler",
    "epochs", "best_epoch", "val_metric", "best_val", "threshold",
    *TEST_KEYS, "roc_auc_low", "roc_auc_high", "n_test_videos",
    "face_accuracy", "face_roc_auc", "face_log_loss", *PROTOCOL_COLUMNS, "published",
    "train_minutes", "note", "run_dir",
]  # fmt: skip
MARKDOWN_COLUMNS = [
    "name", "status", "model", "optimizer", "lr", "weight_decay", "scheduler", "best_epoch",
    "val_metric", "best_val", "accuracy", "precision", "recall", "f1", "roc_auc [95% CI]",
    "log_loss", "n_test_videos", "face_roc_auc", "train_minutes",
]  # fmt: skip
PROTOCOL_MARKDOWN = ["name", "protocol", "published / measured", "note"]
SCIENTIFIC_COLUMNS = ("lr", "weight_decay")  # 1.0e-05, not 0.0000
INTEGER_COLUMNS = ("epochs", "best_epoch", "n_test_videos")
TEXT_COLUMNS = (
    "name", "status", "model", "optimizer", "scheduler", "val_metric", "roc_auc [95% CI]",
    "paired", "protocol", "published / measured", "note",
)  # fmt: skip
#: Config keys that say where a run lives or what a study reported, not how it trains.
IGNORED_CONFIG_KEYS = ("paths", "published")
#: Words for each face -> video aggregation in the report's text.
AGGREGATION_WORDS = {
    "mean": "averaged",
    "max": "reduced to their highest score",
    "confident": "averaged over the confident faces when enough agree (else all)",
}


@dataclass
class ReportSetSchema:
    name: str = "default"
    description: str = ""
    out_dir: str = MISSING
    common: list[str] = field(default_factory=list)
    experiments: dict[str, list[str]] = field(default_factory=dict)
    preprocess: bool = True
    baseline: str | None = "synthetic_cpu"  # every run is compared with this one, paired
    notes: dict[str, str] = field(default_factory=dict)  # experiment -> caveat in its row


@dataclass
class ReportSchema:
    task_name: str = "report"
    report: ReportSetSchema = field(default_factory=ReportSetSchema)
    run_dirs: list[str] = field(default_factory=list)
    retrain: bool = False
    stale: str = "rerun"  # a finished run whose config changed: rerun | keep (listed as stale)
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


# --------------------------------------------------------------------------------------------
# Stale runs: a finished run made with another config than the experiment's current one
# --------------------------------------------------------------------------------------------


def compose_train_config(overrides: list[str]) -> DictConfig:
    """The config ``deepfake_exp.train`` composes from ``overrides`` now (``hydra.*`` aside).

    Inside a Hydra app (``report``'s own ``main``) its initialised config search path is used;
    elsewhere ``conf/`` of this checkout.
    """
    kept = [o for o in overrides if not o.lstrip("+~").startswith("hydra.")]
    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=kept)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("train", overrides=kept)


def _flatten_dict(node: dict, prefix: str) -> dict[str, Any]:
    """Dotted key -> leaf value; lists and empty dicts are leaves (compared whole)."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten_dict(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(
    saved: DictConfig, fresh: DictConfig, ignore: tuple[str, ...] = IGNORED_CONFIG_KEYS
) -> list[str]:
    """``key: saved -> fresh`` for every setting that differs (``ignore``'d top-level keys aside).

    ``fresh`` is resolved with the saved run's ``paths``, so keys derived from them (run and
    faces folders) compare equal when only the machine or the run directory differ.
    """
    fresh = fresh.copy()
    with open_dict(fresh):
        if "paths" in saved:
            fresh.paths = saved.paths
    old = _flatten_dict(OmegaConf.to_container(saved, resolve=True), "")
    new = _flatten_dict(OmegaConf.to_container(fresh, resolve=True), "")
    absent = "<absent>"
    changed = []
    for key in sorted(old.keys() | new.keys()):
        if key.split(".", 1)[0] in ignore:
            continue
        before, after = old.get(key, absent), new.get(key, absent)
        if before != after:
            changed.append(f"{key}: {before!r} -> {after!r}")
    return changed


def stale_reason(run_dir: Path, overrides: list[str]) -> str:
    """Why a finished run no longer matches ``overrides`` composed now ('' when it does)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return f"no {path.name} to compare"
    try:
        fresh = compose_train_config(overrides)
    except (HydraException, OmegaConfBaseException) as error:
        return f"its overrides no longer compose: {error}".splitlines()[0]
    changed = config_differences(OmegaConf.load(path), fresh)
    if not changed:
        return ""
    more = f" (+{len(changed) - 5} more)" if len(changed) > 5 else ""
    return "config differs from the experiment's current one: " + "; ".join(changed[:5]) + more


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
    report: DictConfig,
    runs_dir: Path,
    python: str,
    retrain: bool = False,
    stale: str = "rerun",
) -> dict[str, tuple[Path, str, str]]:
    """Every experiment of the set, trained unless already finished with its current config.

    Returns:
        name -> (run dir, status, message); status ``stale`` (``stale="keep"``) marks a
        finished run whose config differs from what the experiment composes to now.
    """
    if stale not in ("rerun", "keep"):
        raise ValueError(f"stale must be 'rerun' or 'keep', got {stale!r}")
    runs: dict[str, tuple[Path, str, str]] = {}
    for name, overrides in report.experiments.items():
        run_dir = runs_dir / name
        args = [*report.common, *overrides]
        if is_done(run_dir) and not retrain:
            reason = stale_reason(run_dir, args)
            if not reason:
                log.info("%s: finished run found, collecting %s", name, run_dir)
                runs[name] = (run_dir, "ok", "")
                continue
            if stale == "keep":
                log.warning("%s: stale run kept (stale=keep): %s", name, reason)
                runs[name] = (run_dir, "stale", reason)
                continue
            log.warning("%s: retraining, %s", name, reason)
        if run_dir.exists():
            _move_aside(run_dir)
        status, message = run_experiment(name, args, runs_dir, python, report.preprocess)
        runs[name] = (run_dir, status, message)
    return runs


def collect_run_dirs(patterns: list[str]) -> dict[str, tuple[Path, str, str]]:
    """Existing run directories (globs expanded), named by their folder (made unique).

    A run launched by Hydra whose ``.hydra/overrides.yaml`` composes to another config now
    (its experiment changed since) gets status ``stale`` and the differing keys.
    """
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
            status, message = ("ok", "") if is_done(path) else ("unfinished", f"no {DONE_FILE}")
            overrides = path / ".hydra" / "overrides.yaml"
            if status == "ok" and overrides.is_file():  # launched by Hydra: recompose it now
                message = stale_reason(path, list(OmegaConf.load(overrides)))
                status = "stale" if message else "ok"
            runs[name] = (path, status, message)
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


def _read_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


def identity_disjoint(faces_dir: str | Path | None) -> str:
    """``yes`` / ``no (...)`` from the faces folder's ``split_report.json``, else ``unknown``.

    Disjoint means no identity (target or swap source) and no video of val or test is in
    train: every split entry carrying ``shared_identities_with_train`` /
    ``shared_videos_with_train`` must hold zero (or an empty list).
    """
    path = Path(faces_dir) / "split_report.json" if faces_dir else None
    if path is None or not path.is_file():
        return "unknown"
    report = json.loads(path.read_text())
    if isinstance(report, dict) and isinstance(report.get("identity_disjoint"), bool):
        return "yes" if report["identity_disjoint"] else "no"
    splits = report.get("splits", report) if isinstance(report, dict) else report
    entries = (
        [(str(k), v) for k, v in splits.items()]
        if isinstance(splits, dict)
        else [(str(e.get("split", i)), e) for i, e in enumerate(splits)]
    )
    shared, measured = [], False
    for split, entry in entries:
        if not isinstance(entry, dict):
            continue
        for key, what in (("shared_identities_with_train", "ids"), ("shared_videos_with_train", "videos")):  # fmt: skip
            if key in entry:
                measured = True
                value = entry[key]
                count = len(value) if isinstance(value, list | tuple) else int(value or 0)
                if count:
                    shared.append(f"{split}: {count} {what}")
    if not measured:
        return "unknown"
    return "yes" if not shared else f"no ({', '.join(shared)} shared with train)"


def _faces_per_video(videos: pd.DataFrame | None) -> str:
    """Faces scored per test video (``6-8`` when they differ; face-less videos aside)."""
    if videos is None or "num_faces" not in videos:
        return "unknown"
    counts = videos.loc[videos["num_faces"] > 0, "num_faces"]
    if counts.empty:
        return "0"
    low, high = int(counts.min()), int(counts.max())
    return str(low) if low == high else f"{low}-{high}"


def protocol(cfg: DictConfig, metrics: dict, videos: pd.DataFrame | None) -> dict[str, str]:
    """How a run was selected and scored: :data:`PROTOCOL_COLUMNS`, read from its own files."""
    val_metric = cfg.get("optimized_metric")
    criterion = metrics.get("threshold_criterion")
    faces_dir = metrics.get("faces_dir") or (cfg.get("data") or {}).get("faces_dir")
    return {
        "selected_on": f"{val_metric} ({cfg.get('optimized_mode', 'max')})" if val_metric else "",
        "threshold_on": f"{criterion} on val" if "thresholds_from_val" in metrics else "",
        "temperature_on": "val" if metrics.get("calibration") else "none",
        "aggregation": metrics.get("video_aggregation")
        or (cfg.get("module") or {}).get("video_aggregation", ""),
        "faces_per_video": _faces_per_video(videos),
        "identity_disjoint": identity_disjoint(faces_dir) if metrics else "unknown",
    }


def published_vs_measured(published: Any, metrics: dict) -> str:
    """``metric: published / measured`` for each figure a study reported.

    Keys are ``<split>_<metric>`` (``test_accuracy``, ``val_accuracy``, ``test_log_loss``...),
    measured at video level on that split; ``null`` values (not reported) are skipped.
    """
    if not published:
        return ""
    parts = []
    for key, value in published.items():
        if value is None:
            continue
        split, _, metric = str(key).partition("_")
        measured = ((metrics.get(split) or {}).get("video") or {}).get(metric)
        shown = "-" if measured is None else f"{measured:.3f}"
        parts.append(f"{key}: {value:g} / {shown}")
    return "; ".join(parts)


def data_changed_reason(cfg: DictConfig, summary: dict) -> str:
    """Why the run's faces folder is no longer the data it was scored on ('' if it still is).

    A run whose test split was rewritten since (another ``split.seed``, other crops) must not
    enter a table next to runs on the current split.
    """
    stored = summary.get("data_fingerprint")
    faces_dir = (cfg.get("data") or {}).get("faces_dir")
    if not stored or not faces_dir or not (Path(faces_dir) / "manifest.csv").is_file():
        return ""
    try:
        check_data_fingerprint(stored, faces_dir, what="report")
    except DataMismatchError as error:
        return str(error)
    return ""


def run_row(
    name: str, run_dir: Path, status: str = "ok", message: str = "", note: str = ""
) -> dict[str, Any]:
    """One report line, every number read from the run's own files."""
    metrics = _read_json(run_dir / DONE_FILE)
    summary = _read_json(run_dir / "summary.json")
    cfg = run_config(run_dir, metrics.get("checkpoint") or summary.get("best_checkpoint"))
    choices = _choices(run_dir)
    optimizer = cfg.get("optimizer") or {}
    val_metric = cfg.get("optimized_metric")
    test = metrics.get("test", {})
    video, face = test.get("video", {}), test.get("face", {})
    videos = _read_csv(run_dir / "predictions_test_videos.csv")
    interval = video.get("roc_auc_ci") or [None, None]
    timing = _read_json(run_dir / RUN_INFO)
    if not metrics and summary.get("status") == "failed":  # train recorded why it failed
        status, message = "failed", message or str(summary.get("error", ""))
    elif not metrics and status == "ok":
        status = "unfinished"
    elif status == "ok" and (changed := data_changed_reason(cfg, summary)):
        status, message = "data_changed", changed
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
        "roc_auc_low": interval[0],
        "roc_auc_high": interval[1],
        "n_test_videos": None if videos is None else len(videos),
        "face_accuracy": face.get("accuracy"),
        "face_roc_auc": face.get("roc_auc"),
        "face_log_loss": face.get("log_loss"),
        **protocol(cfg, metrics, videos),
        "published": published_vs_measured(cfg.get("published"), metrics),
        "train_minutes": timing["seconds"] / 60 if "seconds" in timing else None,
        "note": note,
        "run_dir": str(run_dir.resolve()),
    }
    if message:
        row["message"] = message
    return row


# --------------------------------------------------------------------------------------------
# Paired comparison with the baseline run
# --------------------------------------------------------------------------------------------


def paired_comparison(
    run_dir: Path, baseline_dir: Path, n_resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Test video ROC-AUC of a run minus the baseline's, on the same videos.

    Returns ``delta_auc`` and DeLong's two-sided ``p_value``
    (:func:`~deepfake_exp.evaluation.bootstrap.delong_test`), the paired group-bootstrap
    interval of the difference (``delta_auc_low/high``: identities resampled together, which
    DeLong's independence assumption ignores) and ``paired`` (how many videos were paired,
    or why they were not: the runs must have scored the same video ids with the same labels).
    """
    mine = _read_csv(run_dir / "predictions_test_videos.csv")
    theirs = _read_csv(baseline_dir / "predictions_test_videos.csv")
    if mine is None or theirs is None:
        return {"paired": "not paired (no predictions_test_videos.csv)"}
    mine, theirs = mine.set_index("video_id"), theirs.set_index("video_id")
    if set(mine.index) != set(theirs.index):
        return {"paired": "not paired (different test sets)"}
    theirs = theirs.loc[mine.index]
    if not (mine["label"].to_numpy() == theirs["label"].to_numpy()).all():
        return {"paired": "not paired (labels differ)"}
    labels = mine["label"].to_numpy()
    if len(np.unique(labels)) < 2:
        return {"paired": "not paired (one class in test)"}
    test = delong_test(labels, mine["prob"].to_numpy(), theirs["prob"].to_numpy())
    groups = None
    if "group" in mine:  # a video without a group (face-less, listed only) is its own group
        group = mine["group"].astype(object)
        groups = group.where(group.notna(), mine.index.to_series()).astype(str).to_numpy()
    diff = paired_bootstrap_diff(
        "roc_auc", labels, mine["prob"], theirs["prob"], groups, n_resamples, seed
    )
    return {
        "delta_auc": test["diff"],
        "delta_auc_low": diff["low"],
        "delta_auc_high": diff["high"],
        "p_value": test["p_value"],
        "paired": f"paired on {len(labels)} videos",
    }


def add_paired_columns(table: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """``delta_auc_vs_<baseline>``, its interval, ``p_value`` and ``paired`` per row."""
    if not baseline:
        return table
    column = f"delta_auc_vs_{baseline}"
    table = table.copy()
    table[[column, f"{column}_low", f"{column}_high", "p_value"]] = np.nan
    table["paired"] = ""
    done = (table["status"] == "ok") & (table["name"] == baseline)
    if not done.any():
        table["paired"] = f"no finished baseline run {baseline!r}"
        return table
    baseline_dir = Path(table.loc[done, "run_dir"].iloc[0])
    for index, row in table.iterrows():
        if row["name"] == baseline:
            table.loc[index, "paired"] = "baseline"
        elif row["status"] != "ok":
            table.loc[index, "paired"] = f"not paired ({row['status']})"
        else:
            result = paired_comparison(Path(row["run_dir"]), baseline_dir)
            table.loc[index, "paired"] = result["paired"]
            for key, target in (
                ("delta_auc", column),
                ("delta_auc_low", f"{column}_low"),
                ("delta_auc_high", f"{column}_high"),
                ("p_value", "p_value"),
            ):
                if result.get(key) is not None:
                    table.loc[index, target] = result[key]
    return table


def report_table(
    runs: dict[str, tuple[Path, str, str]],
    baseline: str | None = None,
    notes: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per run, in the order given, compared with ``baseline`` where paired."""
    notes = notes or {}
    rows = [run_row(name, *entry, note=notes.get(name, "")) for name, entry in runs.items()]
    columns = COLUMNS + (["message"] if any("message" in r for r in rows) else [])
    return add_paired_columns(pd.DataFrame(rows, columns=columns), baseline)


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


def _number(value: Any, style: str) -> str:
    """``value`` in ``style`` (a format spec, or ``sci``: ``3.0e-04``, ``0`` for zero)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    if style == "sci":
        return "0" if value == 0 else f"{value:.1e}"
    return f"{value:{style}}"


def _auc_with_ci(row: pd.Series) -> str:
    auc = _number(row.get("roc_auc"), ".3f")
    low, high = row.get("roc_auc_low"), row.get("roc_auc_high")
    if auc and _number(low, ".3f") and _number(high, ".3f"):
        return f"{auc} [{low:.3f}, {high:.3f}]"
    return auc


def _delta_columns(table: pd.DataFrame) -> list[str]:
    """``delta_auc_vs_<baseline>`` (not its interval bounds)."""
    return [
        c
        for c in table.columns
        if c.startswith("delta_auc_vs_") and not c.endswith(("_low", "_high"))
    ]


def _markdown(shown: pd.DataFrame) -> str:
    align = ["left" if c in TEXT_COLUMNS else "right" for c in shown.columns]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=align)


def shown_table(table: pd.DataFrame) -> str:
    """The results table: 4 decimals, learning rates as ``1.0e-05``, AUC with its 95% CI,
    the paired difference with the baseline and its p-value, blanks for gaps."""
    table = table.assign(**{"roc_auc [95% CI]": table.apply(_auc_with_ci, axis=1)})
    deltas = _delta_columns(table)
    columns = [c for c in MARKDOWN_COLUMNS if c in table.columns]
    if deltas:
        at = columns.index("log_loss") + 1 if "log_loss" in columns else len(columns)
        columns[at:at] = [*deltas, "p_value"]
    shown = table[columns].astype(object)
    for column in shown.columns:
        style = (
            "sci" if column in SCIENTIFIC_COLUMNS
            else ".0f" if column in INTEGER_COLUMNS
            else "+.3f" if column in deltas
            else ".3g" if column == "p_value"
            else ".4f"
        )  # fmt: skip
        shown[column] = [_number(v, style) for v in shown[column]]
    return _markdown(shown)


def protocol_text(row: pd.Series) -> str:
    """One row's protocol in words (which split chose what, how faces become a video score)."""
    if not row.get("selected_on"):
        return ""
    return (
        f"checkpoint: {row['selected_on']}; threshold: {row['threshold_on']}; "
        f"temperature: {row['temperature_on']}; video = {row['aggregation']} of "
        f"{row['faces_per_video']} faces; identity-disjoint: {row['identity_disjoint']}"
    )


def protocol_table(table: pd.DataFrame) -> str:
    """Per row: protocol, the study's published figures next to the measured ones, notes."""
    shown = pd.DataFrame(
        {
            "name": table["name"],
            "protocol": table.apply(protocol_text, axis=1),
            "published / measured": table["published"].fillna(""),
            "note": table["note"].fillna(""),
        }
    )
    if "paired" in table:
        shown.insert(2, "paired", table["paired"].fillna(""))
    return _markdown(shown.astype(str))


def aggregation_words(table: pd.DataFrame) -> str:
    """How faces became video scores, in the words of the runs' actual aggregation."""
    used = sorted({str(a) for a in table.get("aggregation", pd.Series(dtype=str)).dropna() if a})
    if len(used) == 1:
        return f"faces {AGGREGATION_WORDS.get(used[0], f'combined by {used[0]}')} per video"
    if not used:
        return "faces combined per video as each run was trained"
    parts = ", ".join(f"{a}: {AGGREGATION_WORDS.get(a, a)}" for a in used)
    return f"faces combined per video as each run was trained ({parts})"


def report_markdown(table: pd.DataFrame, report: DictConfig, elapsed: float | None) -> str:
    """The report page: what was run, the tables, the plots, how to read them."""
    baseline = report.get("baseline")
    paired = (
        f" `delta_auc_vs_{baseline}`: this run's test video ROC-AUC minus {baseline}'s on the "
        "same test videos, `p_value`: DeLong's two-sided test of that difference (runs on "
        "other test videos are not paired)."
        if baseline
        else ""
    )
    lines = [
        f"# Report: {report.name}",
        "",
        report.description.strip() if report.get("description") else "",
        "",
        f"Generated {datetime.now():%Y-%m-%d %H:%M}. Test metrics are video level "
        f"({aggregation_words(table)}) at the threshold chosen on that run's validation "
        "split; `roc_auc [95% CI]`: bootstrap interval resampled over identities; "
        "`face_roc_auc` is face level. `best_val` is the validation metric the checkpoint was "
        f"selected on (`val_metric`).{paired}",
        "",
        shown_table(table),
        "",
        "Protocol (what chose the checkpoint, threshold and temperature; how a video is "
        "scored; whether test identities are unseen in train, from `split_report.json`) and "
        "the figures each study published next to ours (`published / measured`, video level "
        "on the named split):",
        "",
        protocol_table(table),
        "",
    ]
    minutes = pd.to_numeric(table["train_minutes"], errors="coerce").dropna()
    if elapsed is not None:
        trained = f"; the runs took {minutes.sum():.1f} min in all" if len(minutes) else ""
        lines += [f"Wall time of this report: {elapsed / 60:.1f} min{trained}.", ""]
    failed = table[~table["status"].isin(["ok"])]
    for name, status, message in zip(
        failed["name"],
        failed["status"],
        failed.get("message", pd.Series([""] * len(failed))).fillna(""),
        strict=False,
    ):
        verb = "is stale" if status == "stale" else "did not finish"
        lines += [f"- **{name}** {verb}: {message}".rstrip(), ""]
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
        runs = run_experiments(cfg.report, out_dir / "runs", python, cfg.retrain, cfg.stale)
    if not runs:
        raise ValueError("no run to report")
    notes = OmegaConf.to_container(cfg.report.notes) if cfg.report.get("notes") else {}
    table = report_table(runs, cfg.report.get("baseline"), notes)
    write_report(table, out_dir, cfg.report, time.perf_counter() - started)
    return table


@hydra.main(version_base="1.3", config_path="../conf", config_name="report")
def main(cfg: DictConfig) -> None:
    save_run_info(cfg.report.out_dir, cfg)
    table = build_report(cfg)
    print(shown_table(table), protocol_table(table), sep="\n\n")
    out_dir = Path(cfg.report.out_dir).resolve()
    print(f"\nreport: {out_dir / 'report.md'}  table: {out_dir / 'report.csv'}")
    if not (table["status"] == "ok").any():
        raise RuntimeError(f"no run of the report finished; see {out_dir / 'runs' / 'logs'}")


if __name__ == "__main__":
    main()
