"""Split policies: group-disjoint, stratified, ratios, official splits, identity components,
one-class errors and the split report."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest

from deepfake_exp.data.records import FAKE, REAL, MediaRecord
from deepfake_exp.data.split_report import format_split_report, split_report
from deepfake_exp.data.splits import (
    RATIO_TOLERANCE,
    SPLITS,
    OneClassSplitError,
    achieved_ratios,
    assign_splits,
    check_both_classes,
    connected_groups,
    group_by_identities,
    group_split,
    individual_split,
    leaked_groups,
)


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


# --- stratification ------------------------------------------------------------------------


def one_class_groups(sizes_and_labels: list[tuple[int, int]]) -> list[MediaRecord]:
    """Groups of ``(size, label)``: every item of a group has its label (CS4487's runs)."""
    return [
        MediaRecord(f"g{g:02d}_{i}", f"/x/g{g:02d}_{i}.png", label, f"g{g:02d}")
        for g, (size, label) in enumerate(sizes_and_labels)
        for i in range(size)
    ]


@pytest.mark.parametrize("seed", range(6))
def test_one_class_groups_give_val_and_test_both_classes(seed) -> None:
    # CS4487-style: 8 groups, each of one class; the unstratified split left val FAKE-only
    # and test REAL-only.
    records = one_class_groups([(5, REAL), (5, FAKE)] * 4)
    split_of = group_split(records, (0.7, 0.15, 0.15), seed=seed)
    assert not leaked_groups({r.video_id: r.group for r in records}, split_of)
    for split in SPLITS:
        assert {r.label for r in records if split_of[r.video_id] == split} == {REAL, FAKE}, split
    check_both_classes(records, split_of)  # does not raise


def test_sizes_1_1_10_give_the_large_group_to_train() -> None:
    records = one_class_groups([(1, REAL), (1, FAKE)]) + [
        MediaRecord(f"big_{i}", f"/x/big_{i}.png", i % 2, "big") for i in range(10)
    ]
    for seed in range(4):
        split_of = group_split(records, (0.7, 0.15, 0.15), seed=seed)
        assert Counter(split_of.values()) == {"train": 10, "val": 1, "test": 1}, seed
        assert {split_of[f"big_{i}"] for i in range(10)} == {"train"}


def test_stratified_split_balances_the_fake_share_and_follows_ratios() -> None:
    rng = np.random.default_rng(0)
    records = []
    for g in range(120):  # unequal groups, each with its own fake share (DFDC-like)
        size, fakes = int(rng.integers(1, 9)), rng.random()
        records += [
            MediaRecord(f"g{g}_{i}", f"/x/g{g}_{i}.mp4", int(rng.random() < fakes), f"g{g}")
            for i in range(size)
        ]
    overall = np.mean([r.label for r in records])
    for seed in range(3):
        split_of = group_split(records, (0.7, 0.15, 0.15), seed=seed)
        shares = achieved_ratios(split_of)
        for split, ratio in zip(SPLITS, (0.7, 0.15, 0.15), strict=True):
            assert abs(shares[split] - ratio) <= RATIO_TOLERANCE, (seed, shares)
            labels = [r.label for r in records if split_of[r.video_id] == split]
            assert abs(np.mean(labels) - overall) < 0.05, (seed, split, np.mean(labels), overall)


def test_sizes_off_the_ratios_are_logged_with_the_achieved_ratios(caplog) -> None:
    records = one_class_groups([(1, REAL), (1, FAKE), (10, REAL)])
    with caplog.at_level(logging.WARNING, logger="deepfake_exp.data.splits"):
        group_split(records, (0.7, 0.15, 0.15), seed=0)
    assert "differ from the ratios" in caplog.text
    assert "'train': 0.8333" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deepfake_exp.data.splits"):
        group_split(make_records(40, 3), (0.7, 0.15, 0.15), seed=1)
    assert "differ from the ratios" not in caplog.text


def test_one_class_split_error_names_split_counts_and_fix() -> None:
    records = one_class_groups([(4, REAL), (4, FAKE), (3, REAL), (2, REAL), (2, FAKE)])
    split_of = {r.video_id: "train" for r in records}
    split_of.update({f"g02_{i}": "val" for i in range(3)})
    split_of.update({f"g03_{i}": "test" for i in range(2)} | {f"g04_{i}": "test" for i in range(2)})
    with pytest.raises(OneClassSplitError) as info:
        check_both_classes(records, split_of, (0.7, 0.15, 0.15))
    message = str(info.value)
    assert "split 'val' has 3 REAL and 0 FAKE videos" in message
    assert "split.ratios (now [0.7, 0.15, 0.15])" in message and "split.seed" in message
    assert isinstance(info.value, ValueError)


def test_merge_parts_refuses_a_one_class_val_split_before_writing(tmp_path) -> None:
    from deepfake_exp.preprocessing.merge import merge_parts

    records = make_records(2, 2, official={"g00": "train"}) + [
        MediaRecord("v_real", "/x/v.mp4", REAL, "gv", split="val"),
        MediaRecord("t_real", "/x/t1.mp4", REAL, "gt", split="test"),
        MediaRecord("t_fake", "/x/t2.mp4", FAKE, "gt", split="test"),
    ]
    with pytest.raises(OneClassSplitError, match="split 'val' has 1 REAL and 0 FAKE"):
        merge_parts(tmp_path, records, use_official_split=True)
    assert not (tmp_path / "manifest.csv").exists()


# --- identity components -------------------------------------------------------------------


def test_connected_groups_join_linked_ids_and_keep_names_short() -> None:
    groups = connected_groups(["a", "b", "c", "d"], [("a", "b"), ("c", "a")])
    assert groups == {"a": "a_b_c", "b": "a_b_c", "c": "a_b_c", "d": "d"}
    chain = [f"p{i}" for i in range(10)]
    big = connected_groups(chain, list(zip(chain, chain[1:], strict=False)))
    assert set(big.values()) == {"p0_and_9_more"}


def swap(video_id: str, label: int, group: str, *identities: str) -> MediaRecord:
    return MediaRecord(video_id, f"/x/{video_id}.mp4", label, group, identities=identities)


def test_group_by_identities_joins_target_and_source() -> None:
    records = [
        swap("a_real", REAL, "a", "a"),
        swap("b_real", REAL, "b", "b"),
        swap("a_with_b", FAKE, "a", "a", "b"),
        swap("c_real", REAL, "c", "c"),
        swap("youtube", REAL, "youtube"),  # no identity: keeps its group
    ]
    groups = {r.video_id: r.group for r in group_by_identities(records)}
    assert groups == {
        "a_real": "a_b", "b_real": "a_b", "a_with_b": "a_b", "c_real": "c", "youtube": "youtube",
    }  # fmt: skip
    # A component above max_share keeps the adapter's groups (and its leak is measured).
    kept = {r.video_id: r.group for r in group_by_identities(records, max_share=0.5)}
    assert kept == {r.video_id: r.group for r in records}


# --- split report --------------------------------------------------------------------------


def test_split_report_counts_and_measures_shared_identities() -> None:
    records = [
        swap("a_real", REAL, "a", "a"),
        swap("b_real", REAL, "b", "b"),
        swap("b_with_a", FAKE, "b", "b", "a"),  # test fake showing train's person a
        swap("c_real", REAL, "c", "c"),
        swap("c_with_d", FAKE, "c", "c", "d"),
    ]
    split_of = {"a_real": "train", "b_real": "test", "b_with_a": "test"}
    split_of |= {"c_real": "val", "c_with_d": "val"}
    faces = {"a_real": 4, "b_real": 3, "b_with_a": 2, "c_real": 1}
    report = split_report(records, split_of, faces, note="people", ratios=(0.6, 0.2, 0.2))
    assert report["identity_disjoint"] is False
    test = report["splits"]["test"]
    assert test == {
        "videos": 2, "real_videos": 1, "fake_videos": 1, "faces": 5, "real_faces": 3,
        "fake_faces": 2, "groups": 1, "identities": 2, "shared_identities_with_train": 1,
        "shared_videos_with_train": 1,
    }  # fmt: skip
    assert report["splits"]["val"]["shared_identities_with_train"] == 0
    assert report["splits"]["train"]["shared_identities_with_train"] is None
    assert report["achieved_ratios"] == {"train": 0.2, "val": 0.4, "test": 0.4}
    table = format_split_report(report)
    assert table.splitlines()[0].split()[:2] == ["split", "videos"]
    assert "identity-disjoint: no (people)" in table

    regrouped = group_by_identities(records)
    split_of = {r.video_id: ("train" if r.group == "a_b" else "test") for r in regrouped}
    assert split_report(regrouped, split_of)["identity_disjoint"] is True
    # Without named identities nothing can be claimed.
    anonymous = [MediaRecord(r.video_id, r.path, r.label, r.group) for r in records]
    assert split_report(anonymous, split_of)["identity_disjoint"] is False
