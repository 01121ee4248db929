"""Which crop settings a checkpoint's faces were made with, read back for inference.

``extraction.json`` in the run's faces folder records what the crops really were made with;
the run config inside the checkpoint is the fallback where that folder is absent or was
re-extracted since training.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deepfake_exp import runs
from deepfake_exp.data.datamodule import MANIFEST
from deepfake_exp.preprocessing.settings import ExtractionConfig, read_extraction_record
from deepfake_exp.utils.images import JPEG_FORMATS

log = logging.getLogger(__name__)


def is_jpeg(image_format: str) -> bool:
    """``jpg`` and ``jpeg`` (any case) are one format: crops were saved as JPEG."""
    return str(image_format).lower() in JPEG_FORMATS


@dataclass(frozen=True)
class CropSettings:
    """How the run's crops were made, and where that was read from."""

    extraction: ExtractionConfig
    detector: Mapping[str, Any]
    source: str


def _extraction_config(settings: Mapping[str, Any]) -> ExtractionConfig:
    """``ExtractionConfig`` from stored settings, built without ``instantiate``.

    ``image_format`` is canonicalised first (``jpeg`` -> ``jpg``): older configs accepted both.
    """
    settings = {k: v for k, v in settings.items() if k != "_target_"}
    if is_jpeg(settings.get("image_format", "jpg")):
        settings["image_format"] = "jpg"
    return ExtractionConfig.from_settings(settings)


def crop_settings(cfg: DictConfig, data_fingerprint: Mapping[str, Any] | None) -> CropSettings:
    """The run's crop settings: its faces folder's ``extraction.json``, else the checkpoint's.

    ``extraction.json`` records what the crops really were made with; the run config may have
    drifted from it. It is used unless the folder was re-extracted since training (its
    fingerprint differs from the one the checkpoint stores), or is absent (a checkpoint used
    on another machine): then the checkpoint's own ``extraction``/``detector`` blocks.
    """
    faces_dir = OmegaConf.select(cfg, "data.faces_dir")
    record = read_extraction_record(faces_dir) if faces_dir else None
    trained = (data_fingerprint or {}).get("extraction")
    current = (
        runs.data_fingerprint(faces_dir)["extraction"]
        if record is not None and trained and (Path(faces_dir) / MANIFEST).is_file()
        else None
    )
    if current is not None and current != trained:
        log.warning(
            "%s was re-extracted after this run trained (extraction fingerprint %s, trained on "
            "%s): using the crop settings stored in the checkpoint",
            faces_dir,
            current,
            trained,
        )
        record = None
        why = "checkpoint run config (faces folder re-extracted since training)"
    else:
        why = "checkpoint run config (no extraction.json in the run's faces folder)"
    if record is not None:
        settings = record["settings"]
        source = str(Path(faces_dir) / "extraction.json")
        return CropSettings(_extraction_config(settings), dict(settings["detector"]), source)
    extraction = OmegaConf.to_container(cfg.extraction, resolve=True)
    detector = OmegaConf.to_container(cfg.detector, resolve=True)
    return CropSettings(_extraction_config(extraction), detector, why)
