"""One report row per run, every number read from the run's own files (through
:class:`~deepfake_exp.runs.RunDir`): settings, test metrics with the 95% CI, how the run was
selected (protocol), the study's published figures next to the measured ones, the mean AUC
under perturbation (robustness), and whether its data changed since.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from deepfake_exp.data.datamodule import MANIFEST
from deepfake_exp.runs import DataMismatchError, RunDir, check_data_fingerprint
from deepfake_exp.tasks.report.experiments import RUN_INFO
from deepfake_exp.tasks.report.paired import add_paired_columns

TEST_KEYS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
PROTOCOL_COLUMNS = (
    "selected_on", "threshold_on", "temperature_on", "aggregation", "faces_per_video",
    "identity_disjoint",
)  # fmt: skip
COLUMNS = [
    "name", "status", "model", "dataset", "optimizer", "lr", "weight_decay", "scheduler",
    "epochs", "best_epoch", "val_metric", "best_val", "threshold",
    *TEST_KEYS, "roc_auc_low", "roc_auc_high", "n_test_videos",
    "face_accuracy", "face_roc_auc", "face_log_loss", "robust_video_auc", *PROTOCOL_COLUMNS,
    "published", "train_minutes", "note", "run_dir",
]  # fmt: skip
SPLIT_REPORT = "split_report.json"


def run_config(run_dir: Path, checkpoint: str | None = None) -> DictConfig:
    """The run's resolved config: ``config.yaml``, else the copy inside its checkpoint."""
    if RunDir(run_dir).config_path.is_file():
        return OmegaConf.load(RunDir(run_dir).config_path)
    if checkpoint and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if "run_config" in state:
            return OmegaConf.create(state["run_config"])
    return OmegaConf.create({})


def _choices(run_dir: Path) -> dict[str, str]:
    """Hydra's group choices (``model: resnet18``) when the run was launched by Hydra."""
    return {str(k): str(v) for k, v in RunDir(run_dir).choices().items()}


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
    path = Path(faces_dir) / SPLIT_REPORT if faces_dir else None
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
    if not stored or not faces_dir or not (Path(faces_dir) / MANIFEST).is_file():
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
    run = RunDir(run_dir)
    metrics, summary = run.read_metrics(), run.read_summary()
    cfg = run_config(run_dir, metrics.get("checkpoint") or summary.get("best_checkpoint"))
    choices = _choices(run_dir)
    optimizer = cfg.get("optimizer") or {}
    val_metric = cfg.get("optimized_metric")
    test = metrics.get("test", {})
    video, face = test.get("video", {}), test.get("face", {})
    videos = _read_csv(run.predictions_csv("test"))
    interval = video.get("roc_auc_ci") or [None, None]
    timing = _read_json(run.path / RUN_INFO)
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
        "robust_video_auc": (metrics.get("robustness") or {}).get("mean_video_auc"),
        **protocol(cfg, metrics, videos),
        "published": published_vs_measured(cfg.get("published"), metrics),
        "train_minutes": timing["seconds"] / 60 if "seconds" in timing else None,
        "note": note,
        "run_dir": str(run_dir.resolve()),
    }
    if message:
        row["message"] = message
    return row


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


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
