"""The extraction runner: records -> sampled frames -> faces -> crops, one part per video.

Every video's result (its crops, one small CSV and its ``.meta.json``, or a failure note) is
written atomically under ``parts/`` before the next video starts, so an interrupted run loses
at most the video in flight and a re-run skips what is done. Done means done *with these
settings*: each part carries a stamp of everything its crops depend on (the extraction and
detector settings, the dataset generator's settings, the source file's size and mtime, the
label), and a part whose stamp differs is extracted again, or, with
``extraction.on_mismatch=error``, refused with the differing keys. ``merge.merge_parts`` then
assembles the manifest from the parts; ``extraction.json`` (``settings``) records what the
crops were made with.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import pandas as pd
from tqdm.auto import tqdm

from deepfake_exp.data.records import MediaRecord
from deepfake_exp.data.video import (
    DecodedFrames,
    MediaReadError,
    read_media,
    sample_frame_indices,
    video_seed,
)
from deepfake_exp.faces.crop import crop_face
from deepfake_exp.faces.detectors import Detection, FaceDetector
from deepfake_exp.preprocessing.boxes import (
    ORIGINAL,
    OWN,
    BoxPlan,
    OriginalBoxes,
    boxes_path,
    read_boxes,
    shard_key,
    write_boxes,
)
from deepfake_exp.preprocessing.parts import (
    PARTS_DIR,
    PartPaths,
    part_paths,
    safe_name,
)
from deepfake_exp.preprocessing.settings import (
    EXTRACTION_FILE,
    SETTINGS_DIR,
    ExtractionConfig,
    digest,
    extraction_settings,
    file_identity,
    settings_differences,
    settings_fingerprint,
    write_extraction_record,
)
from deepfake_exp.utils.io import atomic_write, write_csv, write_json

log = logging.getLogger(__name__)


class NoUsableVideosError(RuntimeError):
    """Every input failed: the run has nothing to train on."""


class ExtractionMismatchError(RuntimeError):
    """Parts in the output folder were made with other settings or from changed source files."""


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
    detected_frames: int = 0  # frames run through the detector (originals' too, for reuse)
    boxes_reused: int = 0  # fakes cropped at their original's boxes
    box_fallbacks: Counter = field(default_factory=Counter)  # reason -> fakes detected instead

    def to_dict(self) -> dict:
        return {
            **self.__dict__,
            "failures": dict(self.failures),
            "box_fallbacks": dict(self.box_fallbacks),
        }


def validate_record(record: MediaRecord, root: Path) -> tuple[str, str] | None:
    """A reason to reject a record before decoding it, or ``None``."""
    path = Path(record.path).resolve()
    if not path.is_relative_to(root):
        return "outside_root", f"{record.path} is outside the dataset root {root}"
    if not path.exists():
        return "missing_file", f"{record.path} does not exist"
    return None


def shard_records(records: Sequence[MediaRecord], shard: int, num_shards: int) -> list[MediaRecord]:
    """Records of shard ``shard`` of ``num_shards``: stable, by a hash of ``shard_key``.

    Originals and their fakes hash alike and land in one shard, which detects the original
    once for all of them (box reuse); a record without an original hashes its ``video_id``.
    """
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, {num_shards}), got {shard}")
    by_id = {r.video_id: r for r in records}

    def bucket(record: MediaRecord) -> int:
        key = shard_key(record, by_id)
        return int(hashlib.sha1(key.encode()).hexdigest(), 16) % num_shards

    return [r for r in records if bucket(r) == shard]


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
        self.parts_dir = self.out_dir / PARTS_DIR
        self.faces_dir = self.out_dir / "faces"
        self.settings = extraction_settings(
            config, detector if detector_config is None else detector_config, dataset_settings
        )
        self.settings_sha = settings_fingerprint(self.settings)
        self.plan = BoxPlan()
        self._boxes: dict[str, OriginalBoxes] = {}

    def plan_boxes(self, records: Sequence[MediaRecord]) -> BoxPlan:
        """Decide which fakes take their original's boxes (``run`` and merge checks call it).

        Part stamps depend on it, so every caller passes the records of the same family:
        ``shard_records`` keeps a shard's originals with their fakes.
        """
        self.plan = BoxPlan.of(records, self.config.reuse_original_boxes)
        return self.plan

    def _part_paths(self, record: MediaRecord) -> PartPaths:
        return part_paths(self.parts_dir, record.video_id)

    def stamp(self, record: MediaRecord) -> dict[str, Any]:
        """What a video's crops depend on: the settings, its source file, its label.

        A fake cropped at its original's boxes also depends on the original's file.
        """
        stamp: dict[str, Any] = {
            "settings": self.settings_sha,
            "source_file": file_identity(record.path),
            "label": record.label,
        }
        original = self.plan.originals.get(record.video_id)
        if original is not None:
            stamp["boxes_from"] = {
                "video_id": original.video_id,
                "source_file": file_identity(original.path),
            }
        return stamp

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
        for key in ("source_file", "label", "boxes_from"):
            if stored.get(key) != current.get(key):
                found.append(f"{key}: {stored.get(key)!r} -> {current.get(key)!r}")
        return found

    def _mismatch(self, stale: Sequence[MediaRecord]) -> str:
        """A message naming the differing keys (with how many videos each) and some videos."""
        keys = Counter(
            key.split(":")[0] if key.startswith(("source_file", "label", "boxes_from")) else key
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
        self.plan_boxes(records)
        stale = self._stale(records)
        if stale:
            raise ExtractionMismatchError(
                f"{self._mismatch(stale)}. Run every shard with the current settings before "
                "merging, so one manifest never mixes crops of two settings"
            )

    def write_record(self, records: Sequence[MediaRecord]) -> Path:
        """``extraction.json`` for the merged ``records`` (call after ``merge_parts``)."""
        self.check_current(records)  # (plans the boxes of ``records``)
        fingerprints = {}
        for record in {r.video_id: r for r in records}.values():
            if self.stored_stamp(record) is not None:
                fingerprints[record.video_id] = digest(self.stamp(record))
        return write_extraction_record(self.out_dir, self.settings, fingerprints)

    def _seed(self, record: MediaRecord) -> int:
        """A fake taking its original's boxes samples the original's frames (``random``)."""
        original = self.plan.originals.get(record.video_id, record)
        return video_seed(self.config.seed, original.video_id)

    def _counts(self, record: MediaRecord) -> list[int]:
        """Sample sizes to decode: an original with fakes also covers the fakes' samples."""
        counts = set(self.config.sample_counts(record.label))
        if record.video_id in self.plan.with_fakes:
            counts |= set(self.config.sample_counts(1))
        return sorted(counts)

    def _decode(self, record: MediaRecord) -> DecodedFrames | tuple[str, str]:
        rejected = validate_record(record, self.root)
        if rejected:
            return rejected
        try:
            return read_media(
                record.path,
                self._counts(record),
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
        meta: dict[str, Any] = {"stamp": stamp, "fingerprint": digest(stamp)}
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
        if record.video_id in self.plan.with_fakes:
            boxes_path(self.parts_dir, record.video_id).unlink(missing_ok=True)
            self._boxes.pop(record.video_id, None)

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

    def _detect(self, record: MediaRecord, decoded: DecodedFrames, summary) -> list:
        """Run the detector; an original with fakes keeps its boxes for them (atomically)."""
        detections = self.detector.detect(decoded.frames)
        summary.detected_frames += len(decoded.frames)
        if record.video_id in self.plan.with_fakes:
            boxes = OriginalBoxes.detected(record.video_id, self.stamp(record), decoded, detections)
            self._keep_boxes(boxes)
        return detections

    def _keep_boxes(self, boxes: OriginalBoxes) -> None:
        write_boxes(self.parts_dir, boxes)
        self._boxes[boxes.video_id] = boxes

    def _original_boxes(self, original: MediaRecord, summary) -> OriginalBoxes:
        """The original's boxes: from memory, its boxes file, or detected now (then kept)."""
        stamp = self.stamp(original)
        cached = self._boxes.get(original.video_id)
        if cached is not None and cached.stamp == stamp:
            return cached
        stored = read_boxes(self.parts_dir, original.video_id, stamp)
        if stored is not None:
            self._boxes[original.video_id] = stored
            return stored
        decoded = self._decode(original)  # its part was made before boxes were kept
        if isinstance(decoded, tuple):
            boxes = OriginalBoxes.failed(original.video_id, stamp, decoded[0])
            self._keep_boxes(boxes)
            return boxes
        self._detect(original, decoded, summary)
        return self._boxes[original.video_id]

    def _detections(
        self, record: MediaRecord, decoded: DecodedFrames, summary
    ) -> tuple[list[list[Detection]], str, str]:
        """Faces per decoded frame, ``box_source`` and ``box_fallback`` (see ``boxes``)."""
        original = self.plan.originals.get(record.video_id)
        reason = self.plan.unlisted.get(record.video_id, "")
        if original is not None:
            boxes = self._original_boxes(original, summary)
            reason = boxes.refusal(decoded)
            if not reason:
                summary.boxes_reused += 1
                return boxes.at(decoded.indices), ORIGINAL, ""
        if reason:
            summary.box_fallbacks[reason] += 1
        return self._detect(record, decoded, summary), OWN, reason

    def _save_faces(self, record: MediaRecord, decoded: DecodedFrames, summary) -> int:
        detections, box_source, box_fallback = self._detections(record, decoded, summary)
        stem = safe_name(record.video_id)
        eval_sample, train_sample = self._samples(record, decoded)
        rows = []
        params = (
            [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality]
            if self.config.image_format == "jpg"
            else []
        )
        for index, frame, found in zip(decoded.indices, decoded.frames, detections, strict=True):
            if index not in eval_sample and index not in train_sample:
                continue  # decoded for the boxes of this original's fakes only
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
                        "box_source": box_source, "box_fallback": box_fallback,
                    }
                )  # fmt: skip
        if not rows:
            frames = len(eval_sample | train_sample)
            self._record_failure(record, "no_face", f"no face in {frames} sampled frames", decoded)
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
        self.plan_boxes(records)
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
        for record, decoded in self._prefetch(self._originals_first(todo)):
            self._discard(record)
            if isinstance(decoded, tuple):
                if record.video_id in self.plan.with_fakes:
                    self._keep_boxes(
                        OriginalBoxes.failed(record.video_id, self.stamp(record), decoded[0])
                    )
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

    def _originals_first(self, todo: Sequence[MediaRecord]) -> list[MediaRecord]:
        """``todo`` with each fake after its original, so the original is detected once."""
        first_seen: dict[str, int] = {}
        for position, record in enumerate(todo):
            first_seen.setdefault(self._family(record), position)
        taking = self.plan.originals
        return sorted(todo, key=lambda r: (first_seen[self._family(r)], r.video_id in taking))

    def _family(self, record: MediaRecord) -> str:
        original = self.plan.originals.get(record.video_id)
        return original.video_id if original is not None else record.video_id

    def _record_duplicate(self, record: MediaRecord) -> None:
        dup = self.parts_dir / f"{safe_name(record.video_id)}.duplicate.json"
        row = {"video_id": record.video_id, "path": record.path, "label": record.label}
        detail = f"{record.video_id} is listed more than once; the first entry was used"
        write_json(dup, {**row, "reason": "duplicate", "detail": detail})
