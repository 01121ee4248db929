"""The extraction runner: records -> sampled frames -> faces -> crops + manifest + failures.

Every video's result (its crops, one small CSV and its ``.meta.json``, or a failure note) is
written atomically under ``parts/`` before the next video starts, so an interrupted run loses
at most the video in flight and a re-run skips what is done. Done means done *with these
settings*: each part carries a stamp of everything its crops depend on (the extraction and
detector settings, the dataset generator's settings, the source file's size and mtime, the
label), and a part whose stamp differs is extracted again, or, with
``extraction.on_mismatch=error``, refused with the differing keys. ``merge`` then assembles
``manifest.csv``, ``videos.csv`` and ``failures.csv`` from the parts, assigning splits, and
``extraction.json`` beside them records the settings the crops were made with: training and
``predict`` read them back with ``read_extraction_settings``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import pandas as pd
from tqdm.auto import tqdm

from deepfake_exp.data.records import LABEL_NAMES, MediaRecord
from deepfake_exp.data.split_report import format_split_report, split_report
from deepfake_exp.data.splits import assign_splits, check_both_classes, leaked_groups
from deepfake_exp.data.video import (
    DecodedFrames,
    MediaReadError,
    read_media,
    sample_frame_indices,
    video_seed,
)
from deepfake_exp.faces.crop import crop_face
from deepfake_exp.faces.detectors import FaceDetector
from deepfake_exp.utils.io import atomic_write, write_csv, write_json

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "video_id", "frame", "face_index", "face_path", "label", "group", "original", "split",
    "source", "x1", "y1", "x2", "y2", "prob", "eval_frame", "train_frame",
]  # fmt: skip
FAILURE_COLUMNS = ["video_id", "path", "label", "reason", "detail"]
# Per-video frame accounting kept in each part (a truncated file decodes fewer than expected).
FRAME_COLUMNS = ["total_frames", "expected_frames", "decoded_frames", "truncated"]
EXTRACTION_FILE = "extraction.json"
SETTINGS_DIR = "settings"  # parts/settings/<sha>.json: every settings set parts were made with
STRATEGIES = ("even", "every_k", "random")
IMAGE_FORMATS = ("jpg", "png")
ON_MISMATCH = ("reextract", "error")
# Keys that change how fast extraction runs, never what it writes: left out of the fingerprint
# so a run resumed with more threads or on a GPU reuses the crops.
EXTRACTION_RUNTIME_KEYS = frozenset({"num_workers", "on_mismatch"})
DETECTOR_RUNTIME_KEYS = frozenset({"device", "batch_size", "pnet_batch", "num_threads"})


class NoUsableVideosError(RuntimeError):
    """Every input failed: the run has nothing to train on."""


class ExtractionMismatchError(RuntimeError):
    """Parts in the output folder were made with other settings or from changed source files."""


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

    Every field except ``num_workers`` and ``on_mismatch`` is part of the cache fingerprint.

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
        """The fields the crops depend on (not ``num_workers``/``on_mismatch``)."""
        return {k: v for k, v in asdict(self).items() if k not in EXTRACTION_RUNTIME_KEYS}

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **overrides: Any) -> ExtractionConfig:
        """The config recorded in ``extraction.json`` (its other keys, e.g. ``detector``, ignored).

        Builds it without ``instantiate``: a stored block names no code to run.
        """
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in settings.items() if k in names}, **overrides})


@dataclass
class ExtractionSummary:
    """What a run did, for the log and ``summary.json``."""

    videos: int = 0
    skipped_done: int = 0
    reextracted: int = 0
    processed: int = 0
    frames: int = 0
    frames_without_face: int = 0
    faces: int = 0
    truncated: int = 0
    failures: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {**self.__dict__, "failures": dict(self.failures)}


def _sha256(data: Any) -> str:
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
    return _sha256(settings)


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
        "videos_fingerprint": _sha256(sorted(fingerprints.items())),
    }
    return write_json(Path(out_dir) / EXTRACTION_FILE, record)


def part_frames(out_dir: str | Path, video_id: str) -> dict[str, Any]:
    """A video's frame accounting from its part, for ``videos.csv`` (``FRAME_COLUMNS``).

    ``expected_frames`` were sampled from the frame count the file declares; fewer
    ``decoded_frames`` mean the file is cut off or broken (``truncated``). All ``None`` for a
    video whose part does not say (failed before decoding, or made by an older version).
    """
    parts_dir = Path(out_dir) / "parts"
    stem = safe_name(video_id)
    for path in (parts_dir / f"{stem}.meta.json", parts_dir / f"{stem}.failed.json"):
        if path.is_file():
            data = json.loads(path.read_text())
            return {key: data.get(key) for key in FRAME_COLUMNS}
    return dict.fromkeys(FRAME_COLUMNS)


def safe_name(video_id: str) -> str:
    """A file-system-safe, collision-free stem for a ``video_id`` (which may contain '/')."""
    digest = hashlib.sha1(video_id.encode()).hexdigest()[:8]
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in video_id)[-80:]
    readable = readable.lstrip(".")  # never a hidden file (temporaries are hidden)
    return f"{readable}-{digest}"


def validate_record(record: MediaRecord, root: Path) -> tuple[str, str] | None:
    """A reason to reject a record before decoding it, or ``None``."""
    path = Path(record.path).resolve()
    if not path.is_relative_to(root):
        return "outside_root", f"{record.path} is outside the dataset root {root}"
    if not path.exists():
        return "missing_file", f"{record.path} does not exist"
    return None


def shard_records(records: Sequence[MediaRecord], shard: int, num_shards: int) -> list[MediaRecord]:
    """Records of shard ``shard`` of ``num_shards`` (stable: by a hash of ``video_id``)."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, {num_shards}), got {shard}")
    return [
        r
        for r in records
        if int(hashlib.sha1(r.video_id.encode()).hexdigest(), 16) % num_shards == shard
    ]


class PartPaths(NamedTuple):
    """A video's files under ``parts/``: faces CSV (the done marker), its meta, a failure."""

    csv: Path
    meta: Path
    failed: Path


class FaceExtractor:
    """Runs extraction for a list of records into ``out_dir``.

    Args:
        detector: A ``FaceDetector`` (MTCNN, or whole-image for pre-cropped datasets).
        out_dir: Output folder: ``faces/``, ``parts/``, then the merged CSVs.
        config: Sampling and cropping settings.
        root: Dataset root; records pointing outside it are rejected (path traversal).
        retry_failed: Re-run videos that failed in an earlier run instead of skipping them.
        detector_config: The detector's config, fingerprinted (default: its class only).
        dataset_settings: Settings of the data the crops depend on (a generator's config).
    """

    def __init__(
        self,
        detector: FaceDetector,
        out_dir: str | Path,
        config: ExtractionConfig,
        root: str | Path,
        retry_failed: bool = False,
        detector_config: Mapping[str, Any] | None = None,
        dataset_settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.detector = detector
        self.out_dir = Path(out_dir)
        self.config = config
        self.root = Path(root).resolve()
        self.retry_failed = retry_failed
        self.parts_dir = self.out_dir / "parts"
        self.faces_dir = self.out_dir / "faces"
        self.settings = extraction_settings(
            config, detector if detector_config is None else detector_config, dataset_settings
        )
        self.settings_sha = settings_fingerprint(self.settings)

    def _part_paths(self, record: MediaRecord) -> PartPaths:
        stem = self.parts_dir / safe_name(record.video_id)
        return PartPaths(
            stem.with_name(f"{stem.name}.csv"),
            stem.with_name(f"{stem.name}.meta.json"),
            stem.with_name(f"{stem.name}.failed.json"),
        )

    def stamp(self, record: MediaRecord) -> dict[str, Any]:
        """What a video's crops depend on: the settings, its source file, its label."""
        return {
            "settings": self.settings_sha,
            "source_file": file_identity(record.path),
            "label": record.label,
        }

    def stored_stamp(self, record: MediaRecord) -> dict[str, Any] | None:
        """The stamp of the part an earlier run left (``None``: no part; ``{}``: unstamped)."""
        paths = self._part_paths(record)
        source = paths.meta if paths.csv.exists() else paths.failed
        if not (paths.csv.exists() or paths.failed.exists()):
            return None
        try:
            return json.loads(source.read_text()).get("stamp") or {}
        except (OSError, ValueError):
            return {}

    def status(self, record: MediaRecord) -> str:
        """``new`` (no part), ``stale`` (other stamp), ``retry`` (failed, retried) or ``done``."""
        stored = self.stored_stamp(record)
        if stored is None:
            return "new"
        if stored != self.stamp(record):
            return "stale"
        if self.retry_failed and not self._part_paths(record).csv.exists():
            return "retry"
        return "done"

    def is_done(self, record: MediaRecord) -> bool:
        return self.status(record) == "done"

    def differences(self, record: MediaRecord) -> list[str]:
        """Why a video's part is stale: ``key: old -> new`` per differing setting, or file/label."""
        stored, current = self.stored_stamp(record) or {}, self.stamp(record)
        found = []
        if stored.get("settings") != current["settings"]:
            path = self.parts_dir / SETTINGS_DIR / f"{stored.get('settings')}.json"
            if stored.get("settings") and path.is_file():
                found += settings_differences(json.loads(path.read_text()), self.settings)
            else:
                found.append("settings: unknown -> current (part made before fingerprints)")
        for key in ("source_file", "label"):
            if stored.get(key) != current[key]:
                found.append(f"{key}: {stored.get(key)!r} -> {current[key]!r}")
        return found

    def _mismatch(self, stale: Sequence[MediaRecord]) -> str:
        """A message naming the differing keys (with how many videos each) and some videos."""
        keys = Counter(
            key.split(":")[0] if key.startswith(("source_file", "label")) else key
            for record in stale
            for key in self.differences(record)
        )
        listed = "; ".join(f"{key} ({n} video{'s' * (n > 1)})" for key, n in keys.most_common())
        examples = ", ".join(r.video_id for r in stale[:3]) + (", ..." if len(stale) > 3 else "")
        return (
            f"{len(stale)} video(s) in {self.out_dir} were extracted with other settings or from "
            f"changed source files ({examples}). Differing: {listed}"
        )

    def _stale(self, records: Sequence[MediaRecord]) -> list[MediaRecord]:
        unique = {r.video_id: r for r in records}.values()
        return [r for r in unique if self.status(r) == "stale"]

    def check_current(self, records: Sequence[MediaRecord]) -> None:
        """Refuse to merge parts made with other settings (e.g. a shard not yet re-run)."""
        stale = self._stale(records)
        if stale:
            raise ExtractionMismatchError(
                f"{self._mismatch(stale)}. Run every shard with the current settings before "
                "merging, so one manifest never mixes crops of two settings"
            )

    def write_record(self, records: Sequence[MediaRecord]) -> Path:
        """``extraction.json`` for the merged ``records`` (call after ``merge_parts``)."""
        self.check_current(records)
        fingerprints = {}
        for record in {r.video_id: r for r in records}.values():
            if self.stored_stamp(record) is not None:
                fingerprints[record.video_id] = _sha256(self.stamp(record))
        return write_extraction_record(self.out_dir, self.settings, fingerprints)

    def _seed(self, record: MediaRecord) -> int:
        return video_seed(self.config.seed, record.video_id)

    def _decode(self, record: MediaRecord) -> DecodedFrames | tuple[str, str]:
        rejected = validate_record(record, self.root)
        if rejected:
            return rejected
        try:
            return read_media(
                record.path,
                self.config.sample_counts(record.label),
                self.config.strategy,
                self.config.every_k,
                self._seed(record),
            )
        except MediaReadError as error:
            return error.reason, error.detail
        except cv2.error as error:
            return "decode_error", str(error).strip()

    def _prefetch(self, records: Sequence[MediaRecord]) -> Iterator[tuple[MediaRecord, object]]:
        """Decode up to ``2 * num_workers`` videos ahead of detection, in threads."""
        workers = max(self.config.num_workers, 1)
        with ThreadPoolExecutor(workers) as pool:
            pending: list[tuple[MediaRecord, Future]] = []
            queue = iter(records)
            for record in queue:
                pending.append((record, pool.submit(self._decode, record)))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                record, future = pending.pop(0)
                next_record = next(queue, None)
                if next_record is not None:
                    pending.append((next_record, pool.submit(self._decode, next_record)))
                yield record, future.result()

    def _meta(self, record: MediaRecord, decoded: DecodedFrames | None = None) -> dict[str, Any]:
        """The stamp and fingerprint of a video's part, and its frame accounting."""
        stamp = self.stamp(record)
        meta: dict[str, Any] = {"stamp": stamp, "fingerprint": _sha256(stamp)}
        if decoded is not None:
            meta.update(
                total_frames=decoded.total_frames,
                expected_frames=decoded.expected_frames,
                decoded_frames=decoded.decoded_frames,
                truncated=decoded.truncated,
            )
        return meta

    def _discard(self, record: MediaRecord) -> None:
        """Remove a video's part and crops before (re-)extracting it: the done marker first."""
        for path in self._part_paths(record):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.faces_dir / safe_name(record.video_id), ignore_errors=True)

    def _record_failure(
        self, record: MediaRecord, reason: str, detail: str, decoded: DecodedFrames | None = None
    ) -> None:
        row = {"video_id": record.video_id, "path": record.path, "label": record.label}
        meta = self._meta(record, decoded)
        write_json(
            self._part_paths(record).failed, {**row, "reason": reason, "detail": detail, **meta}
        )

    def _samples(self, record: MediaRecord, decoded: DecodedFrames) -> tuple[set[int], set[int]]:
        """Frame indices of the video's evaluation sample and of its training sample."""

        def sample(count: int) -> set[int]:
            config = self.config
            return set(
                sample_frame_indices(
                    decoded.total_frames, count, config.strategy, config.every_k, self._seed(record)
                )
            )

        return sample(self.config.num_frames), sample(self.config.frames_for(record.label))

    def _save_faces(self, record: MediaRecord, decoded: DecodedFrames, summary) -> int:
        detections = self.detector.detect(decoded.frames)
        stem = safe_name(record.video_id)
        eval_sample, train_sample = self._samples(record, decoded)
        rows = []
        params = (
            [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality]
            if self.config.image_format == "jpg"
            else []
        )
        for index, frame, found in zip(decoded.indices, decoded.frames, detections, strict=True):
            summary.frames += 1
            summary.frames_without_face += not found
            for face_index, detection in enumerate(found):
                crop = crop_face(frame, detection.box, self.config.margin, self.config.crop_size)
                rel = Path("faces") / stem / f"{index:05d}_{face_index}.{self.config.image_format}"
                ok, encoded = cv2.imencode(
                    f".{self.config.image_format}", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), params
                )
                if not ok:
                    raise RuntimeError(f"could not encode a crop of {record.video_id}")
                atomic_write(self.out_dir / rel, lambda p, data=encoded: p.write_bytes(data))
                x1, y1, x2, y2 = detection.box
                rows.append(
                    {
                        "video_id": record.video_id, "frame": index, "face_index": face_index,
                        "face_path": rel.as_posix(), "label": record.label,
                        "group": record.group, "original": record.original, "source": record.source,
                        "x1": round(x1, 1), "y1": round(y1, 1), "x2": round(x2, 1),
                        "y2": round(y2, 1), "prob": round(detection.prob, 4),
                        "eval_frame": index in eval_sample, "train_frame": index in train_sample,
                    }
                )  # fmt: skip
        if not rows:
            self._record_failure(
                record, "no_face", f"no face in {len(decoded.frames)} sampled frames", decoded
            )
            return 0
        paths = self._part_paths(record)
        write_json(paths.meta, {"video_id": record.video_id, **self._meta(record, decoded)})
        write_csv(paths.csv, pd.DataFrame(rows))  # last: the part counts as done from here
        return len(rows)

    def _handle_stale(self, stale: Sequence[MediaRecord]) -> None:
        """Refuse (``on_mismatch=error``) or re-extract parts made otherwise; say which keys."""
        message = self._mismatch(stale)
        if self.config.on_mismatch == "error":
            raise ExtractionMismatchError(
                f"{message}. Re-extract them with extraction.on_mismatch=reextract, or write to "
                "another folder (out_dir=... / data.faces_dir=...)"
            )
        log.warning("%s: re-extracting them (their old crops are removed)", message)
        # The merged files describe crops about to be replaced: stale until the next merge.
        for name in (EXTRACTION_FILE, "manifest.csv"):
            (self.out_dir / name).unlink(missing_ok=True)

    def run(self, records: Sequence[MediaRecord], progress: bool = True) -> ExtractionSummary:
        """Extract faces of every record not already done; one bad file never stops the run.

        Raises:
            ExtractionMismatchError: with ``on_mismatch=error``, when parts were made with
                other settings or from changed files (before anything is written).
        """
        summary = ExtractionSummary(videos=len(records))
        seen: set[str] = set()
        todo, stale, duplicates = [], [], []
        for record in records:
            if record.video_id in seen:
                duplicates.append(record)
                continue
            seen.add(record.video_id)
            status = self.status(record)
            if status == "done":
                summary.skipped_done += 1
            else:
                todo.append(record)
                if status == "stale":
                    stale.append(record)
        if stale:
            self._handle_stale(stale)
            summary.reextracted = len(stale)
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        settings_file = self.parts_dir / SETTINGS_DIR / f"{self.settings_sha}.json"
        if not settings_file.is_file():
            write_json(settings_file, self.settings)
        for record in duplicates:
            self._record_duplicate(record)
        bar = tqdm(
            total=len(todo), desc="extract", unit="video", disable=not progress, mininterval=1.0
        )
        for record, decoded in self._prefetch(todo):
            self._discard(record)
            if isinstance(decoded, tuple):
                self._record_failure(record, *decoded)
                summary.failures[decoded[0]] += 1
            else:
                if decoded.truncated:
                    summary.truncated += 1
                    log.warning(
                        "%s is truncated: %d of %d sampled frames decoded (it declares %d)",
                        record.video_id, decoded.decoded_frames, decoded.expected_frames,
                        decoded.total_frames,
                    )  # fmt: skip
                found = self._save_faces(record, decoded, summary)
                summary.faces += found
                if not found:
                    summary.failures["no_face"] += 1
            summary.processed += 1
            bar.update(1)
            bar.set_postfix(faces=summary.faces, failed=sum(summary.failures.values()))
        bar.close()
        return summary

    def _record_duplicate(self, record: MediaRecord) -> None:
        dup = self.parts_dir / f"{safe_name(record.video_id)}.duplicate.json"
        row = {"video_id": record.video_id, "path": record.path, "label": record.label}
        detail = f"{record.video_id} is listed more than once; the first entry was used"
        write_json(dup, {**row, "reason": "duplicate", "detail": detail})


def merge_parts(
    out_dir: str | Path,
    records: Sequence[MediaRecord],
    split_policy: str = "group",
    split_ratios: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    use_official_split: bool = True,
    problems: Sequence[dict] | None = None,
    identity_note: str | None = None,
) -> dict[str, int]:
    """Assemble ``manifest.csv``, ``videos.csv``, ``failures.csv`` and ``split_report.json``.

    Splits are assigned over *all* records (failed ones too), so the split of a video does not
    depend on whether its faces were found, and ``videos.csv`` lets evaluation count face-less
    videos at 0.5. A val or test split with one class stops here (``OneClassSplitError``),
    before any file is written, since its AUC and any selection on it would be undefined.

    Args:
        problems: Label-file problems (rows of ``FAILURE_COLUMNS``) added to ``failures.csv``;
            by default those the source found (``records.problems``, see ``SourceRecords``).
        identity_note: What identities mean for this dataset, for ``split_report.json``; by
            default ``records.identity_note``.
    """
    out_dir = Path(out_dir)
    parts_dir = out_dir / "parts"
    problems = list(getattr(records, "problems", []) if problems is None else problems)
    if identity_note is None:
        identity_note = getattr(records, "identity_note", "")
    unique = list({r.video_id: r for r in reversed(records)}.values())[::-1]
    split_of = assign_splits(unique, split_policy, split_ratios, seed, use_official_split)
    leaks = leaked_groups({r.video_id: r.group for r in unique}, split_of)
    if leaks and split_policy == "group":
        raise RuntimeError(f"split leaks groups across splits: {sorted(leaks)[:5]}")
    check_both_classes(unique, split_of, split_ratios)
    frames, failures, videos = [], [], []
    for record in unique:
        stem = safe_name(record.video_id)
        ok, failed = parts_dir / f"{stem}.csv", parts_dir / f"{stem}.failed.json"
        status, num_faces = "pending", 0
        if ok.exists():
            part = pd.read_csv(ok, dtype={"video_id": str, "group": str, "original": str})
            # grouping is the records' (it may change, e.g. identity components); the crops
            # are the part's
            part = part.assign(
                label=record.label, group=record.group, original=record.original,
                source=record.source,
            )  # fmt: skip
            frames.append(part)
            status, num_faces = "ok", len(part)
        elif failed.exists():
            failures.append(json.loads(failed.read_text()))
            status = "failed"
        videos.append(
            {
                "video_id": record.video_id, "label": record.label, "group": record.group,
                "split": split_of[record.video_id], "source": record.source,
                "status": status, "num_faces": num_faces, "path": record.path,
                "identities": ";".join(record.identities),
                **part_frames(out_dir, record.video_id),
            }
        )  # fmt: skip
    failures += [json.loads(p.read_text()) for p in sorted(parts_dir.glob("*.duplicate.json"))]
    failures += problems
    manifest = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=MANIFEST_COLUMNS)
    )
    manifest["split"] = manifest["video_id"].map(split_of)
    manifest = manifest[MANIFEST_COLUMNS].sort_values(["video_id", "frame", "face_index"])
    faces_per_video = {v["video_id"]: v["num_faces"] for v in videos}
    report = split_report(unique, split_of, faces_per_video, identity_note, split_ratios)
    write_csv(out_dir / "manifest.csv", manifest)
    write_csv(out_dir / "videos.csv", pd.DataFrame(videos))
    failures_table = pd.DataFrame(failures, columns=FAILURE_COLUMNS)
    failures_table["label"] = failures_table["label"].astype("Int64")  # 0/1, blank if unknown
    write_csv(out_dir / "failures.csv", failures_table)
    write_json(out_dir / "split_report.json", report)
    log.info("split report (%s):\n%s", out_dir / "split_report.json", format_split_report(report))
    counts = {
        f"{split}_{LABEL_NAMES[label].lower()}_faces": int(n)
        for (split, label), n in manifest.groupby(["split", "label"]).size().items()
    }
    return {
        "faces": len(manifest), "videos_ok": len(frames), "failures": len(failures), **counts,
        "identity_disjoint": report["identity_disjoint"],
    }  # fmt: skip
