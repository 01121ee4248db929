"""Split policies: group-disjoint, ratios, official splits kept, determinism."""

from __future__ import annotations

from collections import Counter

import pytest

from deepfake_exp.data.records import MediaRecord
from deepfake_exp.data.splits import assign_splits, group_split, individual_split, leaked_groups


def make_records(groups: int, per_group: int, official: dict[str, str] | None = None):
    official = official or {}
    return [
        MediaRecord(
            video_id=f"g{g:02d}_v{v}", path=f"/x/g{g:02d}_v{v}.mp4", label=v % 2,
            group=f"g{g:02d}", split=official.get(f"g{g:02d}"),
        )
        for g in range(groups)
        for v in range(per_group)
    ]  # fmt: skip


def test_group_split_never_leaks_and_follows_ratios() -> None:
    records = make_records(40, 3)
    split_of = group_split(records, (0.7, 0.15, 0.15), seed=1)
    assert not leaked_groups({r.video_id: r.group for r in records}, split_of)
    counts = Counter(split_of.values())
    assert set(counts) == {"train", "val", "test"}
    assert abs(counts["train"] / len(records) - 0.7) < 0.1
    assert abs(counts["test"] / len(records) - 0.15) < 0.08


def test_group_split_is_deterministic_for_a_seed() -> None:
    records = make_records(20, 2)
    assert group_split(records, seed=3) == group_split(records, seed=3)
    assert group_split(records, seed=3) != group_split(records, seed=4)


@pytest.mark.parametrize("ratios", [(0.7, 0.3, 0.0), (0.8, 0.2, 0.0)])
def test_two_way_ratios(ratios) -> None:
    records = make_records(50, 2)
    counts = Counter(group_split(records, ratios, seed=0).values())
    assert "test" not in counts
    assert abs(counts["val"] / len(records) - ratios[1]) < 0.05


def test_small_sets_still_get_every_split() -> None:
    counts = Counter(group_split(make_records(3, 2), (0.7, 0.15, 0.15)).values())
    assert set(counts) == {"train", "val", "test"}


def test_individual_split_may_straddle_groups() -> None:
    records = make_records(10, 10)
    split_of = individual_split(records, (0.5, 0.25, 0.25), seed=0)
    assert leaked_groups({r.video_id: r.group for r in records}, split_of)
    assert Counter(split_of.values())["train"] == 50


def test_official_split_kept_and_its_groups_not_reused() -> None:
    records = make_records(10, 2, official={"g00": "test", "g01": "test"})
    # a record of an officially-test group that the official list does not name
    records.append(MediaRecord("g00_extra", "/x/e.mp4", 0, "g00"))
    split_of = assign_splits(records, "group", (0.7, 0.15, 0.15), seed=0)
    assert split_of["g00_v0"] == split_of["g00_extra"] == "test"
    assert {split_of[r.video_id] for r in records if r.group not in ("g00", "g01")} <= {
        "train",
        "val",
    }
    assert not leaked_groups({r.video_id: r.group for r in records}, split_of)


def test_bad_policy_and_ratios_fail_clearly() -> None:
    with pytest.raises(ValueError, match="policy"):
        assign_splits(make_records(2, 1), policy="random")
    with pytest.raises(ValueError, match="ratios"):
        group_split(make_records(2, 1), (0, 0, 0))
