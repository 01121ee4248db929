"""The run-directory contract: where a run keeps each file, the readers of those files, which
data the run was trained on, and the check that refuses to score a model on data that has
changed since.

:class:`RunDir` is the one place that knows a run folder's layout (``metrics.json``,
``checkpoints/best.ckpt``, the CSV history wherever the CSV logger was configured to write
it, ...); every other module asks it instead of writing those names.

A run stores :func:`data_fingerprint` of its faces folder (in every checkpoint and in
``summary.json``). Re-running preprocessing with another ``split.seed`` or other crops silently
changes what "test" means; :func:`check_data_fingerprint` turns that into a clear error.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from deepfake_exp.data.datamodule import MANIFEST, VIDEOS
from deepfake_exp.preprocessing.settings import read_extraction_record
from deepfake_exp.utils.run import CONFIG_FILE, RUN_INFO

log = logging.getLogger(__name__)

COMPARED_KEYS = ("manifest_sha256", "splits_sha256")

CONFIG = CONFIG_FILE  # the resolved config (utils.run.save_run_info), at the run's root
HYDRA_DIR = ".hydra"
HYDRA_CONFIG = "config.yaml"  # Hydra's unresolved copy, inside HYDRA_DIR
OVERRIDES = "overrides.yaml"  # Hydra's record of the command line, inside HYDRA_DIR
CHECKPOINTS = "checkpoints"
BEST_CKPT = "best.ckpt"
LAST_CKPT = "last.ckpt"
METRICS = "metrics.json"
SUMMARY = "summary.json"
FAILED_VIDEOS = "failed_videos.csv"
HISTORY = "metrics.csv"
# Where the loggers of conf/logger/tensorboard.yaml write when the run's config does not say.
DEFAULT_CSV_LOGGER_DIR = "csv"
DEFAULT_TB_DIR = "tensorboard"


@dataclass(frozen=True)
class RunThreshold:
    """The video threshold a training run chose on val, and how it was chosen."""

    video: float
    tta: str
    criterion: str | None
    source: Path


class RunDir:
    """One run folder (train or evaluate output): its paths and the readers of its files.

    Paths are returned whether or not the file exists yet (writers use them too); readers
    return ``None`` / empty for a file that is absent, so a run that stopped early still
    reads. The layout is the one ``deepfake_exp.train`` writes.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ---- paths --------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        """``config.yaml``: the resolved config the run trained with (resume compares it)."""
        return self.path / CONFIG

    @property
    def hydra_dir(self) -> Path:
        return self.path / HYDRA_DIR

    @property
    def hydra_config_path(self) -> Path:
        """``.hydra/config.yaml``: Hydra's unresolved copy of the composed config."""
        return self.hydra_dir / HYDRA_CONFIG

    @property
    def overrides_path(self) -> Path:
        return self.hydra_dir / OVERRIDES

    @property
    def hydra_yaml_path(self) -> Path:
        return self.hydra_dir / "hydra.yaml"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def best_ckpt(self) -> Path:
        return self.checkpoints_dir / BEST_CKPT

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints_dir / LAST_CKPT

    @property
    def metrics_json(self) -> Path:
        """Written by evaluation; a run holding it is finished (the report's done marker)."""
        return self.path / METRICS

    @property
    def summary_json(self) -> Path:
        return self.path / SUMMARY

    @property
    def run_info_json(self) -> Path:
        return self.path / RUN_INFO

    @property
    def predictions_dir(self) -> Path:
        """Where ``predictions_<split>_<faces|videos>.csv`` are written (the run folder)."""
        return self.path

    def predictions_csv(self, split: str, level: str = "videos") -> Path:
        """``predictions_<split>_<level>.csv`` (``level``: ``faces`` or ``videos``)."""
        return self.predictions_dir / f"predictions_{split}_{level}.csv"

    @property
    def failed_videos_csv(self) -> Path:
        return self.path / FAILED_VIDEOS

    @property
    def history_csv(self) -> Path:
        """The per-epoch CSV the run's CSV logger wrote, wherever its config put it."""
        return self._logger_dir("CSVLogger", DEFAULT_CSV_LOGGER_DIR) / HISTORY

    @property
    def tb_dir(self) -> Path:
        """The TensorBoard event folder of the run's TensorBoard logger."""
        return self._logger_dir("TensorBoardLogger", DEFAULT_TB_DIR)

    def _logger_dir(self, kind: str, default: str) -> Path:
        """``<run>/<name>/<version>`` of the first logger whose ``_target_`` ends in ``kind``.

        A ``save_dir`` inside the run's ``paths.output_dir`` is read relative to this folder,
        so a run folder that was moved still finds its logs.
        """
        config = self.config()
        loggers = OmegaConf.select(config, "logger", default=None) if config else None
        for entry in (loggers or {}).values():
            target = str(entry.get("_target_", "")) if isinstance(entry, DictConfig) else ""
            if target.endswith(kind):
                base = self._relocated(entry.get("save_dir"), config)
                parts = [str(entry.get(k)) for k in ("name", "version") if entry.get(k)]
                return base.joinpath(*parts)
        return self.path / default

    def _relocated(self, save_dir: Any, config: DictConfig) -> Path:
        output_dir = OmegaConf.select(config, "paths.output_dir", default=None)
        if not save_dir or not output_dir:
            return self.path
        try:
            return self.path / Path(str(save_dir)).relative_to(str(output_dir))
        except ValueError:  # a logger writing outside the run folder
            return Path(str(save_dir))

    # ---- readers ------------------------------------------------------------------------

    def config(self) -> DictConfig | None:
        """The resolved ``config.yaml``, else Hydra's ``.hydra/config.yaml``; ``None`` if none."""
        for path in (self.config_path, self.hydra_config_path):
            if path.is_file():
                loaded = OmegaConf.load(path)
                return loaded if isinstance(loaded, DictConfig) else None
        return None

    def overrides(self) -> list[str]:
        """The command-line overrides Hydra saved for this run (empty when none were saved)."""
        if not self.overrides_path.is_file():
            return []
        return [str(o) for o in OmegaConf.load(self.overrides_path)]

    def choices(self) -> dict[str, Any]:
        """Hydra's ``runtime.choices`` (config group -> option) from ``.hydra/hydra.yaml``."""
        if not self.hydra_yaml_path.is_file():
            return {}
        hydra = OmegaConf.load(self.hydra_yaml_path).hydra
        return dict(OmegaConf.to_container(hydra.runtime.get("choices") or {}))

    def read_metrics(self) -> dict[str, Any]:
        """``metrics.json`` (empty dict when the run has not been evaluated)."""
        return _read_json(self.metrics_json)

    def read_summary(self) -> dict[str, Any]:
        """``summary.json`` (empty dict when training has not finished)."""
        return _read_json(self.summary_json)

    def read_history(self) -> pd.DataFrame:
        """The per-epoch CSV history (empty frame when absent)."""
        path = self.history_csv
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    def val_threshold(self) -> RunThreshold | None:
        """The video threshold evaluation chose on val (``None``: not evaluated / none chosen)."""
        metrics = self.read_metrics()
        video = (metrics.get("thresholds_from_val") or {}).get("video")
        if video is None:
            return None
        return RunThreshold(
            float(video),
            metrics.get("tta") or "none",
            metrics.get("threshold_criterion"),
            self.metrics_json,
        )

    def is_evaluated(self) -> bool:
        return self.metrics_json.is_file()


def run_dir_of(ckpt_path: str | Path) -> RunDir:
    """The run folder of a checkpoint written by training (``<run>/checkpoints/<name>.ckpt``)."""
    return RunDir(Path(ckpt_path).resolve().parent.parent)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    loaded = json.loads(path.read_text())
    return loaded if isinstance(loaded, dict) else {}


class DataMismatchError(RuntimeError):
    """The faces folder is not the data the run was trained and selected on."""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _splits_sha256(faces_dir: Path) -> tuple[str, int]:
    """Hash of the sorted ``video_id -> split`` pairs (videos.csv, else the manifest)."""
    table = faces_dir / VIDEOS if (faces_dir / VIDEOS).is_file() else faces_dir / MANIFEST
    frame = pd.read_csv(table, usecols=["video_id", "split"], dtype=str).drop_duplicates()
    pairs = sorted(zip(frame["video_id"], frame["split"].fillna(""), strict=True))
    text = "\n".join(f"{video}\t{split}" for video, split in pairs)
    return hashlib.sha256(text.encode()).hexdigest(), len(pairs)


def data_fingerprint(faces_dir: str | Path) -> dict[str, Any]:
    """What identifies a faces folder's content: manifest bytes, split assignment, crop settings."""
    faces_dir = Path(faces_dir)
    manifest = faces_dir / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {faces_dir.resolve()}: run preprocessing first")
    splits_sha, num_videos = _splits_sha256(faces_dir)
    with manifest.open("rb") as handle:
        num_faces = max(sum(1 for _ in handle) - 1, 0)
    extraction = read_extraction_record(faces_dir)
    return {
        "faces_dir": str(faces_dir.resolve()),
        "manifest_sha256": _sha256_file(manifest),
        "splits_sha256": splits_sha,
        "num_faces": num_faces,
        "num_videos": num_videos,
        # the settings *and* every source file's stamp: regenerated videos change it too
        "extraction": (
            extraction.get("videos_fingerprint") or extraction.get("fingerprint")
            if isinstance(extraction, dict)
            else None
        ),
    }


def check_data_fingerprint(stored: dict | None, faces_dir: str | Path, what: str) -> None:
    """Refuse (``DataMismatchError``) when ``faces_dir`` is not the data of ``stored``.

    ``stored is None`` is a run written before fingerprints existed: warn and go on.
    """
    if stored is None:
        log.warning(
            "%s: the run stores no data fingerprint (written by an older version); "
            "cannot check that %s is the data it was trained on",
            what, faces_dir,
        )  # fmt: skip
        return
    current = data_fingerprint(faces_dir)
    keys = [*COMPARED_KEYS, *(["extraction"] if stored.get("extraction") else [])]
    differing = [k for k in keys if stored.get(k) != current.get(k)]
    if not differing:
        return
    changed = ", ".join(differing)
    raise DataMismatchError(
        f"{what}: {Path(faces_dir).resolve()} is not the data this run was trained on "
        f"(changed: {changed}; trained on {stored.get('num_videos')} videos / "
        f"{stored.get('num_faces')} faces, found {current['num_videos']} / "
        f"{current['num_faces']}). Preprocessing was re-run with other settings (e.g. "
        "split.seed or crops), so its test split may hold videos the model trained on. Fix: "
        "re-run preprocessing with the run's own config (its config.yaml), or retrain on the "
        "current data."
    )
