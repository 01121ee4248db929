"""The extraction runner: records -> sampled frames -> faces -> crops + manifest + failures.

Every video's result (its crops and one small CSV, or a failure note) is written atomically
under ``parts/`` before the next video starts, so an interrupted run loses at most the video
in flight and a re-run skips what is done. ``merge`` then assembles ``manifest.csv``,
``videos.csv`` and ``failures.csv`` from the parts, assigning splits.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import pandas as pd
from tqdm.auto import tqdm

from deepfake_exp.data.records import LABEL_NAMES, MediaRecord
from deepfake_exp.data.split_report import format_split_report, split_report
from deepfake_exp.data.splits import assign_splits, check_both_classes, leaked_groups
from deepfake_exp.data.video import DecodedFrames, MediaReadError, read_media
from deepfake_exp.faces.crop import crop_face
from deepfake_exp.faces.detectors import FaceDetector
from deepfake_exp.utils.io import atomic_write, write_csv, write_json

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "video_id", "frame", "face_index", "face_path", "label", "group", "original", "split",
    "source", "x1", "y1", "x2", "y2", "prob",
]  # fmt: skip
FAILURE_COLUMNS = ["video_id", "path", "label", "reason", "detail"]


class NoUsableVideosError(RuntimeError):
    """Every input failed: the run has nothing to train on."""


@dataclass
class ExtractionConfig:
    """How frames are sampled and faces cropped (the ``preprocess`` block of the config)."""

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

    def frames_for(self, label: int) -> int:
        """Per-class frame counts balance classes (York: 40 per REAL, 8 per FAKE video)."""
        per_class = {0: self.num_frames_real, 1: self.num_frames_fake}[label]
        return per_class if per_class else self.num_frames


@dataclass
class ExtractionSummary:
    """What a run did, for the log and ``summary.json``."""

    videos: int = 0
    skipped_done: int = 0
    processed: int = 0
    frames: int = 0
    frames_without_face: int = 0
    faces: int = 0
    failures: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {**self.__dict__, "failures": dict(self.failures)}


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


class FaceExtractor:
    """Runs extraction for a list of records into ``out_dir``.

    Args:
        detector: A ``FaceDetector`` (MTCNN, or whole-image for pre-cropped datasets).
        out_dir: Output folder: ``faces/``, ``parts/``, then the merged CSVs.
        config: Sampling and cropping settings.
        root: Dataset root; records pointing outside it are rejected (path traversal).
        retry_failed: Re-run videos that failed in an earlier run instead of skipping them.
    """

    def __init__(
        self,
        detector: FaceDetector,
        out_dir: str | Path,
        config: ExtractionConfig,
        root: str | Path,
        retry_failed: bool = False,
    ) -> None:
        self.detector = detector
        self.out_dir = Path(out_dir)
        self.config = config
        self.root = Path(root).resolve()
        self.retry_failed = retry_failed
        self.parts_dir = self.out_dir / "parts"
        self.faces_dir = self.out_dir / "faces"

    def _part_paths(self, record: MediaRecord) -> tuple[Path, Path]:
        stem = safe_name(record.video_id)
        return self.parts_dir / f"{stem}.csv", self.parts_dir / f"{stem}.failed.json"

    def is_done(self, record: MediaRecord) -> bool:
        ok, failed = self._part_paths(record)
        return ok.exists() or (failed.exists() and not self.retry_failed)

    def _decode(self, record: MediaRecord) -> DecodedFrames | tuple[str, str]:
        rejected = validate_record(record, self.root)
        if rejected:
            return rejected
        try:
            return read_media(
                record.path,
                self.config.frames_for(record.label),
                self.config.strategy,
                self.config.every_k,
                self.config.seed,
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

    def _record_failure(self, record: MediaRecord, reason: str, detail: str) -> None:
        _, failed = self._part_paths(record)
        row = {"video_id": record.video_id, "path": record.path, "label": record.label}
        write_json(failed, {**row, "reason": reason, "detail": detail})

    def _save_faces(self, record: MediaRecord, decoded: DecodedFrames, summary) -> int:
        detections = self.detector.detect(decoded.frames)
        stem = safe_name(record.video_id)
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
                    }
                )  # fmt: skip
        if not rows:
            self._record_failure(
                record, "no_face", f"no face in {len(decoded.frames)} sampled frames"
            )
            return 0
        part, failed = self._part_paths(record)
        failed.unlink(missing_ok=True)
        write_csv(part, pd.DataFrame(rows))
        return len(rows)

    def run(self, records: Sequence[MediaRecord], progress: bool = True) -> ExtractionSummary:
        """Extract faces of every record not already done; one bad file never stops the run."""
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        summary = ExtractionSummary(videos=len(records))
        seen: set[str] = set()
        todo = []
        for record in records:
            if record.video_id in seen:
                self._record_duplicate(record)
                continue
            seen.add(record.video_id)
            if self.is_done(record):
                summary.skipped_done += 1
            else:
                todo.append(record)
        bar = tqdm(
            total=len(todo), desc="extract", unit="video", disable=not progress, mininterval=1.0
        )
        for record, decoded in self._prefetch(todo):
            if isinstance(decoded, tuple):
                self._record_failure(record, *decoded)
                summary.failures[decoded[0]] += 1
            else:
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
    write_csv(out_dir / "failures.csv", pd.DataFrame(failures, columns=FAILURE_COLUMNS))
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
