"""What crops depend on, and how a faces folder records it: settings, stamps, fingerprints.

``ExtractionConfig`` is the ``extraction`` block of the config. ``extraction.json`` beside a
manifest records the settings the crops were made with (training and ``predict`` read them
back with ``read_extraction_settings``); every part under ``parts/`` carries a stamp over
them so a resumed run can tell done work made otherwise from done work it may skip.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from deepfake_exp.faces.detectors import FaceDetector
from deepfake_exp.utils.io import write_json

EXTRACTION_FILE = "extraction.json"
SETTINGS_DIR = "settings"  # parts/settings/<sha>.json: every settings set parts were made with
STRATEGIES = ("even", "every_k", "random")
IMAGE_FORMATS = ("jpg", "png")
ON_MISMATCH = ("reextract", "error")
# Keys left out of the settings fingerprint. num_workers and on_mismatch change how fast or
# how carefully extraction runs, never what it writes, so a run resumed with more threads
# reuses the crops. reuse_original_boxes changes only the crops of fakes whose original is
# listed, so it is stamped on those videos' parts instead (a folder without originals, or a
# run that flips it, re-extracts only the fakes it concerns).
EXTRACTION_RUNTIME_KEYS = frozenset({"num_workers", "on_mismatch", "reuse_original_boxes"})
DETECTOR_RUNTIME_KEYS = frozenset({"device", "batch_size", "pnet_batch", "num_threads"})


@dataclass
class ExtractionConfig:
    """How frames are sampled and faces cropped (the ``extraction`` block of the config).

    Frame samples. Every video gets the *evaluation sample*: ``num_frames`` frames chosen by
    ``strategy`` whatever its label, so val/test scores (and ``predict``'s, which samples the
    same way) never depend on the ground truth. ``num_frames_real``/``num_frames_fake``
    (York: 40 per REAL, 8 per FAKE video) balance the classes of *training* only: they size a
    video's *training sample*. Splits are assigned after extraction (at merge, and a new split
    seed must not need new crops), so each video is extracted with the union of both samples
    and every manifest row says whether it is an ``eval_frame`` and/or a ``train_frame``; the
    datamodule trains on the ``train_frame`` faces of train videos and validates and tests on
    ``eval_frame`` faces only. Without per-class counts both samples are the same frames; with
    them, val/test videos of the larger class decode a few frames nobody uses.
    ``strategy=random`` draws each video's frames with ``video_seed(seed, video_id)``.

    Every field except ``num_workers``, ``on_mismatch`` and ``reuse_original_boxes`` (stamped
    per video, see ``EXTRACTION_RUNTIME_KEYS``) is part of the cache fingerprint.

    Args:
        num_frames: Evaluation sample: frames per video (``every_k``: at most this many,
            0 = all).
        num_frames_real: Training sample of a REAL video (``None``: ``num_frames``).
        num_frames_fake: Training sample of a FAKE video (``None``: ``num_frames``).
        strategy: ``even`` (linspace over the whole video), ``every_k`` or ``random``.
        every_k: Step of ``every_k``.
        margin: Square crop side = max(w, h) * (1 + margin).
        crop_size: Side of the saved crops in pixels.
        image_format: ``jpg`` or ``png``; one spelling each, since ``predict`` redoes the
            JPEG round trip only for ``jpg``.
        jpeg_quality: JPEG quality (1-100).
        num_workers: Decoding threads running ahead of detection.
        seed: Seed of ``random`` sampling, hashed with each ``video_id``.
        on_mismatch: What to do with parts made with other settings or from a changed source
            file: ``reextract`` them (their old crops are removed first) or ``error``: refuse,
            naming the differing keys.
        reuse_original_boxes: Crop a fake at its original's boxes (detected once on the
            original) where the record names an original that is listed too, with the same
            frame count and size and a face; otherwise, and when off, the fake is detected
            itself. Manifest columns ``box_source`` and ``box_fallback`` say which, and why.
    """

    num_frames: int = 8
    num_frames_real: int | None = None
    num_frames_fake: int | None = None
    strategy: str = "even"
    every_k: int = 1
    margin: float = 0.5
    crop_size: int = 224
    image_format: str = "jpg"
    jpeg_quality: int = 95
    num_workers: int = 2
    seed: int = 0
    on_mismatch: str = "reextract"
    reuse_original_boxes: bool = True

    def __post_init__(self) -> None:
        problems = [
            f"{name}={value!r}: use one of {', '.join(choices)}"
            for name, value, choices in (
                ("strategy", self.strategy, STRATEGIES),
                ("image_format", self.image_format, IMAGE_FORMATS),
                ("on_mismatch", self.on_mismatch, ON_MISMATCH),
            )
            if value not in choices
        ]
        ranges = (
            ("num_frames", self.num_frames, 0 if self.strategy == "every_k" else 1, None),
            ("num_frames_real", self.num_frames_real, 1, None),
            ("num_frames_fake", self.num_frames_fake, 1, None),
            ("every_k", self.every_k, 1, None),
            ("margin", self.margin, 0, None),
            ("crop_size", self.crop_size, 1, None),
            ("jpeg_quality", self.jpeg_quality, 1, 100),
            ("num_workers", self.num_workers, 0, None),
        )
        for name, value, low, high in ranges:
            if value is not None and not (low <= value and (high is None or value <= high)):
                bound = f">= {low}" + (f" and <= {high}" if high is not None else "")
                problems.append(f"{name}={value!r} must be {bound}")
        if problems:
            raise ValueError("invalid extraction settings: " + "; ".join(problems))

    def frames_for(self, label: int) -> int:
        """Training sample of a video of ``label`` (York: 40 per REAL, 8 per FAKE video)."""
        per_class = {0: self.num_frames_real, 1: self.num_frames_fake}[label]
        return per_class if per_class else self.num_frames

    def sample_counts(self, label: int) -> list[int]:
        """Frame counts a video of ``label`` is extracted with: its eval and training samples."""
        return sorted({self.num_frames, self.frames_for(label)})

    def settings(self) -> dict[str, Any]:
        """The fields every crop depends on (not ``EXTRACTION_RUNTIME_KEYS``)."""
        return {k: v for k, v in asdict(self).items() if k not in EXTRACTION_RUNTIME_KEYS}

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **overrides: Any) -> ExtractionConfig:
        """The config recorded in ``extraction.json`` (its other keys, e.g. ``detector``, ignored).

        Builds it without ``instantiate``: a stored block names no code to run.
        """
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in settings.items() if k in names}, **overrides})


def digest(data: Any) -> str:
    """SHA-256 of ``data``'s canonical JSON (keys sorted): equal data, equal digest."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _plain(data: Any) -> Any:
    """``data`` as JSON gives it back (tuples become lists), so stored and fresh values compare."""
    return json.loads(json.dumps(data, default=str))


def detector_settings(detector: FaceDetector | Mapping[str, Any]) -> dict[str, Any]:
    """What a detector's output depends on: its config without runtime keys, or its class."""
    if isinstance(detector, Mapping):
        return {k: v for k, v in detector.items() if k not in DETECTOR_RUNTIME_KEYS}
    kind = type(detector)
    return {"_target_": f"{kind.__module__}.{kind.__qualname__}"}


def extraction_settings(
    config: ExtractionConfig,
    detector: FaceDetector | Mapping[str, Any],
    dataset: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the crops depend on but the source files: what ``extraction.json`` records.

    Args:
        config: Sampling and cropping settings (top-level keys: ``crop_size``, ``margin``...).
        detector: The detector's config (``cfg.detector``), or the detector itself.
        dataset: Settings of the data itself, e.g. ``{"generator": ...}`` for synthetic sets.
    """
    return _plain(
        {**config.settings(), "detector": detector_settings(detector), "dataset": dataset or {}}
    )


def settings_fingerprint(settings: Mapping[str, Any]) -> str:
    """SHA-256 of the settings' canonical JSON."""
    return digest(settings)


def file_identity(path: str | Path) -> dict[str, int] | None:
    """Size and mtime of a source file (``None``: unreadable): a regenerated file changes them."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def settings_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` for every dotted key (``detector.min_prob``) whose value differs."""
    before, after = _flatten(old), _flatten(new)
    unset = "<unset>"
    return [
        f"{key}: {before.get(key, unset)!r} -> {after.get(key, unset)!r}"
        for key in sorted(before.keys() | after.keys())
        if before.get(key, unset) != after.get(key, unset)
    ]


def read_extraction_record(faces_dir: str | Path) -> dict[str, Any] | None:
    """``<faces_dir>/extraction.json`` (``None`` when the folder predates fingerprints)."""
    path = Path(faces_dir) / EXTRACTION_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): re-run preprocessing") from error


def read_extraction_settings(faces_dir: str | Path) -> dict[str, Any] | None:
    """The settings a faces folder's crops were made with, or ``None`` if it does not say.

    Training and ``predict`` take crop size, margin, format and frame sampling from here
    (``ExtractionConfig.from_settings``), not from a config that may have changed since
    preprocessing; ``detector`` and ``dataset`` hold the other inputs of the crops.
    """
    record = read_extraction_record(faces_dir)
    return None if record is None else record["settings"]


def extraction_drift(extraction: Mapping[str, Any], faces_dir: str | Path) -> list[str]:
    """How a config's ``extraction`` block differs from what ``faces_dir``'s crops were made with.

    ``key: made-with -> config`` per differing key (empty when they agree or the folder does
    not say): for a run to warn that its config no longer describes the data it trains on.
    """
    stored = read_extraction_settings(faces_dir)
    if stored is None:
        return []
    names = {f.name for f in fields(ExtractionConfig)} - EXTRACTION_RUNTIME_KEYS
    config = _plain({k: v for k, v in extraction.items() if k in names})
    return settings_differences({k: stored.get(k) for k in config}, config)


def write_extraction_record(
    out_dir: str | Path, settings: Mapping[str, Any], fingerprints: Mapping[str, str]
) -> Path:
    """Write ``extraction.json``: the settings, their fingerprint and one over every video's part.

    Args:
        out_dir: The faces folder (beside ``manifest.csv``).
        settings: ``extraction_settings(...)`` of the run.
        fingerprints: ``video_id`` -> its part's fingerprint (settings + source file + label).
    """
    record = {
        "fingerprint": settings_fingerprint(settings),
        "settings": dict(settings),
        "videos": len(fingerprints),
        "videos_fingerprint": digest(sorted(fingerprints.items())),
    }
    return write_json(Path(out_dir) / EXTRACTION_FILE, record)
