"""What a split really holds: counts per split and what val and test share with train.

Preprocessing writes the report as ``split_report.json`` next to ``manifest.csv`` and logs
``format_split_report``'s table, so "identity-disjoint" is a measured fact of a faces folder,
not a claim: a face-swap shows two people (target and source), and a test video whose
target *or* source appears in train counts as shared.

A record's identities are the people its dataset names (``MediaRecord.identities``); a record
that names none stands for one identity of its own, its group. ``identity_disjoint`` is true
only when some records name identities and no identity is in two splits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from deepfake_exp.data.records import FAKE, REAL, MediaRecord
from deepfake_exp.data.splits import SPLITS, achieved_ratios, leaked_groups


def record_identities(record: MediaRecord) -> tuple[str, ...]:
    """The people a record shows: its named identities, else its group as a stand-in."""
    return record.identities or (f"group:{record.group}",)


def split_report(
    records: Sequence[MediaRecord],
    split_of: Mapping[str, str],
    faces_per_video: Mapping[str, int] | None = None,
    note: str = "",
    ratios: Sequence[float] | None = None,
) -> dict:
    """Per split: videos, faces, REAL/FAKE counts of both, groups, identities, and what it
    shares with train (identities, and videos whose target or source is in train).

    Args:
        records: Every record that got a split (face-less ones too).
        split_of: ``video_id -> split``.
        faces_per_video: Faces in the manifest per ``video_id`` (missing: 0).
        note: What identities mean for this dataset and where disjointness cannot hold.
        ratios: The requested split ratios, reported beside the achieved ones.
    """
    faces_per_video = faces_per_video or {}
    by_split: dict[str, list[MediaRecord]] = defaultdict(list)
    for record in records:
        by_split[split_of[record.video_id]].append(record)
    people = {
        split: {i for r in members for i in record_identities(r)}
        for split, members in by_split.items()
    }
    train = people.get("train", set())
    splits = {}
    for split in SPLITS:
        members = by_split.get(split, [])
        faces = {
            label: sum(faces_per_video.get(r.video_id, 0) for r in members if r.label == label)
            for label in (REAL, FAKE)
        }
        shared = None if split == "train" else people.get(split, set()) & train
        splits[split] = {
            "videos": len(members),
            "real_videos": sum(r.label == REAL for r in members),
            "fake_videos": sum(r.label == FAKE for r in members),
            "faces": faces[REAL] + faces[FAKE],
            "real_faces": faces[REAL],
            "fake_faces": faces[FAKE],
            "groups": len({r.group for r in members}),
            "identities": len(people.get(split, set())),
            "shared_identities_with_train": None if shared is None else len(shared),
            "shared_videos_with_train": None
            if shared is None
            else sum(bool(set(record_identities(r)) & train) for r in members),
        }
    named = sum(bool(r.identities) for r in records)
    present = [s for s in SPLITS if people.get(s)]
    disjoint = all(
        not (people[a] & people[b]) for i, a in enumerate(present) for b in present[i + 1 :]
    )
    return {
        "identity_disjoint": bool(named) and disjoint,
        "records_naming_identities": named,
        "leaked_groups": len(leaked_groups({r.video_id: r.group for r in records}, split_of)),
        "ratios": None if ratios is None else [float(r) for r in ratios],
        "achieved_ratios": achieved_ratios(dict(split_of)),
        "note": note,
        "splits": splits,
    }


def format_split_report(report: Mapping) -> str:
    """A short table of the report for the log: one line per split, then the verdict."""
    header = f"{'split':<6} {'videos':>7} {'REAL/FAKE':>11} {'faces':>7} {'REAL/FAKE':>13} "
    header += f"{'groups':>6} {'ids':>5} {'shared ids':>10} {'shared videos':>13}"
    lines = [header]
    for split, row in report["splits"].items():
        shared_ids, shared_videos = (
            "-" if row[key] is None else row[key]
            for key in ("shared_identities_with_train", "shared_videos_with_train")
        )
        lines.append(
            f"{split:<6} {row['videos']:>7} {row['real_videos']:>5}/{row['fake_videos']:<5} "
            f"{row['faces']:>7} {row['real_faces']:>6}/{row['fake_faces']:<6} "
            f"{row['groups']:>6} {row['identities']:>5} {shared_ids:>10} {shared_videos:>13}"
        )
    verdict = "yes" if report["identity_disjoint"] else "no"
    lines.append(
        f"identity-disjoint: {verdict}" + (f" ({report['note']})" if report["note"] else "")
    )
    return "\n".join(lines)
