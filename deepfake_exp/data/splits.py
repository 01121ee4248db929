"""Split policies as pure functions: records in, ``video_id -> split`` out.

Group-disjoint by default: every item of a group (an identity, or a fake with its original)
lands in one split, so a test face was never seen in training.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from deepfake_exp.data.records import MediaRecord

SPLITS = ("train", "val", "test")


def _normalise_ratios(ratios: Sequence[float]) -> np.ndarray:
    values = np.asarray(list(ratios) + [0.0] * (3 - len(ratios)), dtype=float)[:3]
    if (values < 0).any() or values.sum() <= 0:
        raise ValueError(f"split ratios must be non-negative and not all zero, got {list(ratios)}")
    return values / values.sum()


def _partition(sizes: list[int], ratios: np.ndarray) -> list[str]:
    """Assign consecutive units (already shuffled) to splits so item counts follow ``ratios``.

    Each split with a positive ratio gets at least one unit when there are enough units.
    """
    total = sum(sizes)
    targets = ratios * total
    assignment, filled, split = [], np.zeros(3), 0
    remaining_units = len(sizes)
    for size in sizes:
        needed_later = sum(1 for s in range(split + 1, 3) if ratios[s] > 0)
        while split < 2 and (
            ratios[split] == 0 or (filled[split] > 0 and filled[split] + size / 2 > targets[split])
        ):
            split += 1
            needed_later = sum(1 for s in range(split + 1, 3) if ratios[s] > 0)
        if split < 2 and remaining_units <= needed_later and filled[split] > 0:
            split += 1
        assignment.append(SPLITS[split])
        filled[split] += size
        remaining_units -= 1
    return assignment


def group_split(
    records: Sequence[MediaRecord], ratios: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, str]:
    """Group-disjoint split: shuffle groups with ``seed``, fill train/val/test by item count."""
    members: dict[str, list[str]] = defaultdict(list)
    for record in records:
        members[record.group].append(record.video_id)
    groups = sorted(members)
    order = np.random.default_rng(seed).permutation(len(groups))
    shuffled = [groups[i] for i in order]
    assignment = _partition([len(members[g]) for g in shuffled], _normalise_ratios(ratios))
    return {vid: split for g, split in zip(shuffled, assignment, strict=True) for vid in members[g]}


def individual_split(
    records: Sequence[MediaRecord], ratios: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, str]:
    """Random per-item split (CS4487's "individual selection"); groups may straddle splits."""
    ids = sorted(r.video_id for r in records)
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    assignment = _partition([1] * len(shuffled), _normalise_ratios(ratios))
    return dict(zip(shuffled, assignment, strict=True))


POLICIES = {"group": group_split, "individual": individual_split}


def assign_splits(
    records: Sequence[MediaRecord],
    policy: str = "group",
    ratios: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    use_official: bool = True,
) -> dict[str, str]:
    """Splits for all records: official ones kept, the rest divided by ``policy``.

    When only a test split is official (Celeb-DF), the others are divided into train/val by
    the train:val part of ``ratios``; groups of an official split are never reused elsewhere.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown split policy {policy!r}; choose one of {sorted(POLICIES)}")
    official = {r.video_id: r.split for r in records if use_official and r.split}
    bad = {s for s in official.values() if s not in SPLITS}
    if bad:
        raise ValueError(f"official splits must be among {SPLITS}, got {sorted(bad)}")
    split_of_group = {r.group: official[r.video_id] for r in records if r.video_id in official}
    inherited = {
        r.video_id: split_of_group[r.group]
        for r in records
        if r.video_id not in official and r.group in split_of_group
    }
    official = {**official, **inherited}
    rest = [r for r in records if r.video_id not in official]
    if not rest:
        return official
    ratios_arr = _normalise_ratios(ratios)
    present = set(official.values())
    if present:
        ratios_arr = np.array(
            [0.0 if s in present else r for s, r in zip(SPLITS, ratios_arr, strict=True)]
        )
        if ratios_arr.sum() == 0:
            ratios_arr = np.array([1.0, 0.0, 0.0])
    return {**official, **POLICIES[policy](rest, ratios_arr, seed)}


def leaked_groups(group_of: dict[str, str], split_of: dict[str, str]) -> set[str]:
    """Groups whose items sit in more than one split (empty for a group-disjoint split)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for video_id, group in group_of.items():
        seen[group].add(split_of[video_id])
    return {g for g, splits in seen.items() if len(splits) > 1}
