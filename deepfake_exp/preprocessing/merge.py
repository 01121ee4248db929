"""Assemble a faces folder's tables from its parts: splits, manifest, video list, failures.

Kept apart from extraction because splits are a property of the dataset, not of one shard's
crops: ``merge`` runs once over all records after every shard is done, and a new split seed
needs no new crops.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from deepfake_exp.data.records import LABEL_NAMES, MediaRecord
from deepfake_exp.data.split_report import format_split_report, split_report
from deepfake_exp.data.splits import assign_splits, check_both_classes, leaked_groups
from deepfake_exp.preprocessing.boxes import OWN
from deepfake_exp.preprocessing.parts import PARTS_DIR, part_frames, part_paths
from deepfake_exp.preprocessing.tracks import track_ids
from deepfake_exp.utils.io import write_csv, write_json

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "video_id", "frame", "face_index", "face_path", "label", "group", "original", "split",
    "source", "x1", "y1", "x2", "y2", "prob", "eval_frame", "train_frame",
    "box_source", "box_fallback", "track_id", "method",
]  # fmt: skip
# Values of the box-reuse columns in parts made before box reuse (their boxes were their own).
PART_DEFAULTS = {"box_source": OWN, "box_fallback": ""}
FAILURE_COLUMNS = ["video_id", "path", "label", "reason", "detail"]


def read_part(path: Path) -> pd.DataFrame:
    """A video's part CSV with the columns of today's parts, and its faces' ``track_id``."""
    dtypes = {"video_id": str, "group": str, "original": str, "box_fallback": str}
    part = pd.read_csv(path, dtype=dtypes)
    for column, value in PART_DEFAULTS.items():
        part[column] = part[column].fillna(value) if column in part else value
    return part.assign(track_id=track_ids(part))


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
    parts_dir = out_dir / PARTS_DIR
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
        paths = part_paths(parts_dir, record.video_id)
        ok, failed = paths.csv, paths.failed
        status, num_faces = "pending", 0
        if ok.exists():
            part = read_part(ok)
            # grouping is the records' (it may change, e.g. identity components); the crops
            # are the part's
            part = part.assign(
                label=record.label, group=record.group, original=record.original,
                source=record.source, method=record.method or "",
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
                "method": record.method or "", "status": status, "num_faces": num_faces,
                "path": record.path, "identities": ";".join(record.identities),
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
