"""Split policies as pure functions: records in, ``video_id -> split`` out.

Group-disjoint by default: every item of a group (an identity, or a fake with its original)
lands in one split, so a test face was never seen in training. Groups are the connected
components of the identities a dataset names (a swap's target *and* source), see
``group_by_identities``.

Stratified: groups are placed so that each split holds about its ratio of the REAL items and
of the FAKE items, and val and test hold both classes whenever the groups allow it. Split
sizes within ``RATIO_TOLERANCE`` of the ratios are the goal; a split that misses it (too few
or too large groups) is logged with the achieved ratios, and a val or test split left with one
class is an error (``check_both_classes``): its ROC-AUC would be undefined.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from deepfake_exp.data.records import FAKE, LABEL_NAMES, REAL, MediaRecord

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
RATIO_TOLERANCE = 0.05  # largest |achieved share - ratio| of a split before a warning
_NAMED_MEMBERS = 4  # a component with more members is named by its first one and a count


class OneClassSplitError(ValueError):
    """A val or test split holds one class only: its ROC-AUC, and selection on it, is undefined."""


def connected_groups(ids: Iterable[str], links: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Union-find: ``id -> group name`` where linked ids share a group.

    A group is named by its sorted members joined with ``_`` (``000_001``), or, beyond four
    members, by the first one and a count (``id0_and_58_more``), so names stay readable.
    """
    parent = {i: i for i in ids}

    def find(i: str) -> str:
        parent.setdefault(i, i)
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in links:
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    members: dict[str, list[str]] = {}
    for i in list(parent):
        members.setdefault(find(i), []).append(i)
    names = {}
    for group in members.values():
        ordered = sorted(group)
        name = (
            "_".join(ordered)
            if len(ordered) <= _NAMED_MEMBERS
            else f"{ordered[0]}_and_{len(ordered) - 1}_more"
        )
        names.update(dict.fromkeys(group, name))
    return names


def group_by_identities(
    records: Sequence[MediaRecord], max_share: float = 1.0
) -> list[MediaRecord]:
    """Records regrouped by the connected components of the identities they show.

    A face swap links its target and source identity, so every video showing either person
    shares one group and a test face was seen neither as a target nor as a swapped-in face in
    training. Records without identities keep their group. A component holding more than
    ``max_share`` of all records is too large to keep whole (Celeb-DF's celebrities are all
    cross-swapped): its records keep the group the adapter gave them, and
    ``split_report.json`` measures the identities that then straddle splits.
    """
    named = [r for r in records if r.identities]
    if not named:
        return list(records)
    links = [(r.identities[0], other) for r in named for other in r.identities[1:]]
    component = connected_groups((i for r in named for i in r.identities), links)
    size = Counter(component[r.identities[0]] for r in named)
    people = Counter(component.values())
    limit = max_share * len(records)
    too_large = {g for g, n in size.items() if n > limit and people[g] > 1}
    if too_large:
        log.warning(
            "%d identity component(s) hold more than %.0f%% of the records (largest: %d of %d); "
            "they keep their per-target groups and identities may be shared across splits "
            "(see split_report.json)",
            len(too_large), 100 * max_share, max(size[g] for g in too_large), len(records),
        )  # fmt: skip
    return [
        replace(r, group=component[r.identities[0]])
        if r.identities and component[r.identities[0]] not in too_large
        else r
        for r in records
    ]


def _normalise_ratios(ratios: Sequence[float]) -> np.ndarray:
    values = np.asarray(list(ratios) + [0.0] * (3 - len(ratios)), dtype=float)[:3]
    if (values < 0).any() or values.sum() <= 0:
        raise ValueError(f"split ratios must be non-negative and not all zero, got {list(ratios)}")
    return values / values.sum()


def _partition(counts: Sequence[tuple[int, int]], ratios: np.ndarray) -> list[str]:
    """Split of each unit (its ``(REAL, FAKE)`` item counts; units already shuffled).

    1. Seeds: each split with a positive ratio, smallest split first, takes the smallest unit
       left; then each class a split still lacks takes the smallest unit of that class that
       is at most twice the split's target size. So val and test get both classes whenever
       the units allow it, and a large unit never lands in a small split just to fill it.
    2. The other units, largest first, each go to the split where it most reduces the squared
       shortfall against the per-class targets (each class weighted by its total, so the
       REAL/FAKE share is balanced, not only the size).
    """
    counts_arr = np.asarray(counts, dtype=float).reshape(-1, 2)
    sizes = counts_arr.sum(1)
    totals = counts_arr.sum(0)
    targets = ratios[:, None] * totals[None, :]
    weights = np.divide(1.0, totals**2, out=np.zeros(2), where=totals > 0)
    filled = np.zeros((3, 2))
    assignment = [-1] * len(counts_arr)

    def place(unit: int, split: int) -> None:
        assignment[unit] = split
        filled[split] += counts_arr[unit]

    free = [int(i) for i in np.argsort(sizes, kind="stable")]  # ascending, ties as shuffled
    seeded = [int(s) for s in np.argsort(ratios, kind="stable") if ratios[s] > 0]
    if len(free) >= len(seeded):
        for split in seeded:
            place(free.pop(0), split)
        for split in seeded:
            cap = max(2.0 * ratios[split] * sizes.sum(), 1.0)
            for cls in (REAL, FAKE):
                if totals[cls] and not filled[split, cls]:
                    unit = next((u for u in free if counts_arr[u, cls] and sizes[u] <= cap), None)
                    if unit is not None:
                        free.remove(unit)
                        place(unit, split)
    positive = [s for s in range(3) if ratios[s] > 0]
    for unit in sorted(free, key=lambda u: -sizes[u]):
        grow = counts_arr[unit]
        cost = [
            float((weights * grow * (2 * (filled[s] - targets[s]) + grow)).sum()) for s in positive
        ]
        place(unit, positive[int(np.argmin(cost))])
    return [SPLITS[s] for s in assignment]


def achieved_ratios(split_of: dict[str, str]) -> dict[str, float]:
    """Share of the items in each split (``train``/``val``/``test``), rounded to 4 places."""
    counts = Counter(split_of.values())
    total = max(sum(counts.values()), 1)
    return {s: round(counts[s] / total, 4) for s in SPLITS}


def _divide(
    members: dict[str, list[MediaRecord]], ratios: Sequence[float], seed: int, what: str
) -> dict[str, str]:
    """Shuffle the units with ``seed``, partition them, warn when sizes miss the ratios."""
    ratios_arr = _normalise_ratios(ratios)
    keys = sorted(members)
    shuffled = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    counts = [
        (sum(r.label == REAL for r in members[k]), sum(r.label == FAKE for r in members[k]))
        for k in shuffled
    ]
    assignment = _partition(counts, ratios_arr)
    split_of = {
        r.video_id: split for k, split in zip(shuffled, assignment, strict=True) for r in members[k]
    }
    achieved = achieved_ratios(split_of)
    wanted = dict(zip(SPLITS, ratios_arr.round(4).tolist(), strict=True))
    if max(abs(achieved[s] - wanted[s]) for s in SPLITS) > RATIO_TOLERANCE:
        log.warning(
            "split sizes %s differ from the ratios %s by more than %.2f: %d %s are too few or "
            "too unequal to divide more evenly",
            achieved, wanted, RATIO_TOLERANCE, len(keys), what,
        )  # fmt: skip
    return split_of


def group_split(
    records: Sequence[MediaRecord], ratios: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, str]:
    """Group-disjoint, label-stratified split: whole groups, shuffled with ``seed``."""
    members: dict[str, list[MediaRecord]] = defaultdict(list)
    for record in records:
        members[record.group].append(record)
    return _divide(members, ratios, seed, "groups")


def individual_split(
    records: Sequence[MediaRecord], ratios: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, str]:
    """Random label-stratified per-item split (CS4487's "individual selection"); groups may
    straddle splits."""
    return _divide({r.video_id: [r] for r in records}, ratios, seed, "items")


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


def check_both_classes(
    records: Sequence[MediaRecord],
    split_of: dict[str, str],
    ratios: Sequence[float] | None = None,
    splits: Sequence[str] = ("val", "test"),
) -> None:
    """Fail when a val or test split holds videos of one class only.

    Its ROC-AUC is undefined, so checkpoint selection on val (or the test score) would mean
    nothing; better to stop at preprocessing than to log a constant.

    Raises:
        OneClassSplitError: Names the split, its counts and what to change.
    """
    for split in splits:
        counts = Counter(r.label for r in records if split_of.get(r.video_id) == split)
        if not counts or len(counts) == 2:
            continue
        missing = LABEL_NAMES[FAKE if REAL in counts else REAL]
        share = f" (now {list(ratios)})" if ratios is not None else ""
        raise OneClassSplitError(
            f"split '{split}' has {counts[REAL]} REAL and {counts[FAKE]} FAKE videos: with one "
            f"class its ROC-AUC is undefined. Give '{split}' a larger share with "
            f"split.ratios{share}, try another split.seed, or add {missing} videos in more "
            "groups; with official splits (split.use_official=true) check the dataset's own "
            f"{split} list."
        )


def leaked_groups(group_of: dict[str, str], split_of: dict[str, str]) -> set[str]:
    """Groups whose items sit in more than one split (empty for a group-disjoint split)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for video_id, group in group_of.items():
        seen[group].add(split_of[video_id])
    return {g for g, splits in seen.items() if len(splits) > 1}
