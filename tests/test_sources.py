"""Source adapters read each real dataset's exact layout (written in tiny form by fixtures)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from deepfake_exp.data.records import FAKE, REAL, MediaRecord
from deepfake_exp.data.sources.base import DatasetRootError, Source
from deepfake_exp.data.sources.celebdf import CelebDFSource
from deepfake_exp.data.sources.cs4487 import CS4487Source
from deepfake_exp.data.sources.dfdc import DFDCSource
from deepfake_exp.data.sources.faceforensics import FaceForensicsSource
from deepfake_exp.data.sources.faces140k import Faces140kSource
from deepfake_exp.data.sources.image_folder import ImageFolderSource
from deepfake_exp.data.split_report import split_report
from deepfake_exp.data.splits import assign_splits
from tests.fixtures_layouts import (
    FF_PAIRS,
    write_celebdf,
    write_cs4487,
    write_csv,
    write_dfdc,
    write_faceforensics,
    write_faces140k,
    write_image_tree,
    write_video,
)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "dataset"
OUR_DATASETS = ("dfdc", "faceforensics", "celebdf", "image_folder", "cs4487", "faces140k")


def by_id(records: list[MediaRecord]) -> dict[str, MediaRecord]:
    return {r.video_id: r for r in records}


def assert_well_formed(records: list[MediaRecord], root: Path, name: str) -> None:
    """Invariants of every adapter: unique ids, absolute paths under the root, own name."""
    assert len({r.video_id for r in records}) == len(records)
    for r in records:
        path = Path(r.path)
        assert path.is_absolute(), r.path
        assert path.is_relative_to(root.resolve()), r.path
        assert ".." not in path.parts, r.path
        assert r.label in (REAL, FAKE)
        assert r.group
        assert r.source == name


# --- DFDC ----------------------------------------------------------------------------------


def dfdc_parts() -> dict[str, dict[str, dict]]:
    return {
        "dfdc_train_part_0": {
            "aaa.mp4": {"label": "REAL", "original": None, "split": "train"},
            "bbb.mp4": {"label": "FAKE", "original": "aaa.mp4", "split": "train"},
        },
        "dfdc_train_part_1": {
            "aaa.mp4": {"label": "REAL", "original": None, "split": "train"},
            "ccc.mp4": {"label": "FAKE", "original": "aaa.mp4", "split": "train"},
            "ddd.mp4": {"label": "FAKE", "original": "aaa.mp4", "split": "train", "missing": True},
        },
    }


@pytest.mark.parametrize("official", [False, True])
def test_dfdc_reads_every_part_and_groups_fakes_with_their_original(tmp_path, official):
    root = write_dfdc(tmp_path / "dfdc", dfdc_parts())
    records = by_id(DFDCSource("dfdc", root, use_official_split=official).records())

    assert sorted(records) == [
        "dfdc_train_part_0/aaa.mp4",
        "dfdc_train_part_0/bbb.mp4",
        "dfdc_train_part_1/aaa.mp4",
        "dfdc_train_part_1/ccc.mp4",
        "dfdc_train_part_1/ddd.mp4",  # listed but missing: still a record
    ]
    assert_well_formed(list(records.values()), root, "dfdc")
    for part in ("dfdc_train_part_0", "dfdc_train_part_1"):
        fakes = [r for vid, r in records.items() if vid.startswith(part) and r.label == FAKE]
        assert fakes and all(r.original == f"{part}/aaa.mp4" for r in fakes)
        assert {r.group for r in fakes} == {records[f"{part}/aaa.mp4"].group}
    assert records["dfdc_train_part_0/aaa.mp4"].group != records["dfdc_train_part_1/aaa.mp4"].group
    assert {r.split for r in records.values()} == ({"train"} if official else {None})
    assert {r.identities for r in records.values()} == {()}  # DFDC names no people


BROKEN_PARTS = {
    "part_ok": '{"aaa.mp4": {"label": "REAL"}, "bbb.mp4": {"label": "FAKE", "original": "aaa.mp4"}}',
    "part_bad_json": '{"ccc.mp4": {"label": "REAL"},',
    "part_bad_label": '{"ddd.mp4": {"label": "MAYBE"}, "eee.mp4": {"label": "REAL"}}',
    # a repeated key that would flip REAL to FAKE, and two spellings of one path
    "part_dupes": '{"fff.mp4": {"label": "REAL"}, "fff.mp4": {"label": "FAKE"}, '
    '"./ggg.mp4": {"label": "REAL"}, "ggg.mp4": {"label": "REAL"}, "hhh.mp4": {"label": "REAL"}}',
}


def write_broken_dfdc(root: Path) -> Path:
    for part, text in BROKEN_PARTS.items():
        for name in ("aaa", "bbb", "ccc", "ddd", "eee", "fff", "ggg", "hhh"):
            if f'"{name}.mp4"' in text or f'"./{name}.mp4"' in text:
                write_video(root / part / f"{name}.mp4")
        (root / part / "metadata.json").write_text(text)
    return root


def test_dfdc_metadata_problems_become_rows_and_the_rest_is_read(tmp_path):
    root = write_broken_dfdc(tmp_path / "dfdc")
    source = DFDCSource("dfdc", root)
    records = source.records()
    assert sorted(r.video_id for r in records) == [
        "part_bad_label/eee.mp4", "part_dupes/ggg.mp4", "part_dupes/hhh.mp4",
        "part_ok/aaa.mp4", "part_ok/bbb.mp4",
    ]  # fmt: skip
    assert records.problems == source.problems
    assert sorted((p["video_id"], p["reason"]) for p in source.problems) == [
        ("part_bad_json/metadata.json", "bad_metadata"),
        ("part_bad_label/ddd.mp4", "bad_label"),
        ("part_dupes/fff.mp4", "duplicate"),
        ("part_dupes/fff.mp4", "duplicate"),
        ("part_dupes/ggg.mp4", "duplicate"),
    ]
    rows = {(p["video_id"], p["reason"]): p for p in source.problems}
    bad_json = rows[("part_bad_json/metadata.json", "bad_metadata")]
    assert "part_bad_json/metadata.json" in bad_json["detail"] and "JSON" in bad_json["detail"]
    bad_label = rows[("part_bad_label/ddd.mp4", "bad_label")]["detail"]
    assert "part_bad_label/metadata.json" in bad_label and "'ddd.mp4'" in bad_label
    assert "MAYBE" in bad_label
    flipped = [p for p in source.problems if p["video_id"] == "part_dupes/fff.mp4"]
    assert {p["label"] for p in flipped} == {REAL, FAKE}  # conflicting: both rows, none used
    assert all("disagree" in p["detail"] for p in flipped)
    spelled = rows[("part_dupes/ggg.mp4", "duplicate")]["detail"]
    assert "'./ggg.mp4'" in spelled and "'ggg.mp4'" in spelled and "first was used" in spelled


def test_dfdc_problems_land_in_failures_csv(tmp_path):
    from deepfake_exp.preprocessing.merge import FAILURE_COLUMNS, merge_parts

    root = write_broken_dfdc(tmp_path / "dfdc")
    records = DFDCSource("dfdc", root).records()
    out = tmp_path / "faces"
    merge_parts(out, records, split_ratios=(1.0, 0.0, 0.0))
    failures = pd.read_csv(out / "failures.csv")
    assert list(failures.columns) == FAILURE_COLUMNS
    assert Counter(failures["reason"]) == {"bad_metadata": 1, "bad_label": 1, "duplicate": 3}
    videos = pd.read_csv(out / "videos.csv")
    assert len(videos) == len(records) == 5


def test_dfdc_with_no_usable_metadata_fails_naming_the_file(tmp_path):
    (tmp_path / "dfdc" / "p").mkdir(parents=True)
    (tmp_path / "dfdc" / "p" / "metadata.json").write_text("not json")
    with pytest.raises(ValueError, match=r"no usable entry.*p/metadata\.json"):
        DFDCSource("dfdc", tmp_path / "dfdc").records()


# --- FaceForensics++ -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ff_root(tmp_path_factory) -> Path:
    root = write_faceforensics(tmp_path_factory.mktemp("ff") / "ff", unlisted=("006",))
    write_faceforensics(root, {"x": [("100", "101")]}, compression="c40", split_dir=None)
    return root


def test_faceforensics_groups_pairs_and_keeps_their_official_split(ff_root):
    methods = ["Deepfakes", "Face2Face"]
    records = FaceForensicsSource("ff", ff_root, methods=methods).records()
    assert_well_formed(records, ff_root, "ff")
    ids = by_id(records)

    n_pairs = sum(len(p) for p in FF_PAIRS.values())
    assert Counter(r.label for r in records) == {REAL: 2 * n_pairs + 1, FAKE: 2 * n_pairs * 2}
    assert not any("100" in vid for vid in ids), "c40 videos leaked into a c23 read"
    groups = set()
    for split, pairs in FF_PAIRS.items():
        for a, b in pairs:
            members = [f"original/{a}.mp4", f"original/{b}.mp4"] + [
                f"{m}/{t}_{s}.mp4" for m in methods for t, s in ((a, b), (b, a))
            ]
            assert {ids[v].group for v in members} == {f"{min(a, b)}_{max(a, b)}"}
            assert {ids[v].split for v in members} == {split}
            groups.add(ids[members[0]].group)
            for m in methods:
                fake = ids[f"{m}/{a}_{b}.mp4"]
                assert fake.original == f"original/{a}.mp4" and fake.original in ids
                assert fake.method == m  # the folder names the manipulation
    assert len(groups) == n_pairs
    assert (ids["original/006.mp4"].group, ids["original/006.mp4"].split) == ("006", None)
    assert ids["Deepfakes/000_001.mp4"].identities == ("000", "001")
    assert ids["original/001.mp4"].identities == ("001",)
    assert {r.method for r in records if r.label == REAL} == {None}


@pytest.mark.parametrize("split_dir", ["splits", "."])
def test_faceforensics_finds_split_files_in_splits_or_root(tmp_path, split_dir):
    root = write_faceforensics(tmp_path / "ff", methods=["Deepfakes"], split_dir=split_dir)
    records = FaceForensicsSource("ff", root, methods=["Deepfakes"]).records()
    expected = {v: s for s, pairs in FF_PAIRS.items() for pair in pairs for v in pair}
    for r in records:
        assert r.split == expected[Path(r.path).stem.split("_")[0]]


def test_faceforensics_without_split_files_still_groups_by_pair(tmp_path):
    root = write_faceforensics(tmp_path / "ff", methods=["FaceSwap"], split_dir=None)
    records = FaceForensicsSource("ff", root, methods=["FaceSwap"]).records()
    assert {r.split for r in records} == {None}
    assert Counter(r.group for r in records) == {"000_001": 4, "002_003": 4, "004_005": 4}


@pytest.mark.parametrize(
    "content",
    ['[["000", "001"]', '{"000": "001"}', '[["000"]]', "[[0, 1]]", '[["000", "001", "002"]]'],
)
def test_faceforensics_malformed_split_file_fails_clearly(tmp_path, content):
    root = write_faceforensics(tmp_path / "ff", methods=[])
    (root / "splits" / "val.json").write_text(content)
    with pytest.raises(ValueError, match=r"val\.json.*pairs"):
        FaceForensicsSource("ff", root, methods=[]).records()


def test_faceforensics_video_in_two_splits_fails(tmp_path):
    root = write_faceforensics(tmp_path / "ff", methods=[])
    (root / "splits" / "test.json").write_text(json.dumps([["000", "004"]]))
    with pytest.raises(ValueError, match="000 is listed in both train and test"):
        FaceForensicsSource("ff", root, methods=[]).records()


def test_faceforensics_missing_method_or_bad_compression_fails(ff_root):
    with pytest.raises(FileNotFoundError, match="NeuralTextures"):
        FaceForensicsSource("ff", ff_root, methods=["NeuralTextures"]).records()
    with pytest.raises(ValueError, match="compression"):
        FaceForensicsSource("ff", ff_root, compression="c99")


# --- Celeb-DF ------------------------------------------------------------------------------

CELEB_VIDEOS = [
    "Celeb-real/id0_0000.mp4",
    "Celeb-real/id0_0001.mp4",
    "Celeb-real/id1_0000.mp4",
    "Celeb-synthesis/id0_id1_0000.mp4",
    "Celeb-synthesis/id0_id1_0001.mp4",
    "Celeb-synthesis/id1_id0_0000.mp4",
    "YouTube-real/00000.mp4",
    "YouTube-real/00001.mp4",
]
CELEB_TEST = [
    (1, "Celeb-real/id1_0000.mp4"),
    (0, "Celeb-synthesis/id1_id0_0000.mp4"),
    (1, "YouTube-real/00001.mp4"),
    (0, "Celeb-synthesis/id2_id0_0000.mp4"),  # listed, not on disk
]


@pytest.mark.parametrize("share", [1.0, 0.5])
def test_celebdf_labels_groups_and_official_test_list(tmp_path, share):
    root = write_celebdf(tmp_path / "celebdf", CELEB_VIDEOS, CELEB_TEST)
    records = CelebDFSource("celebdf", root, max_component_share=share).records()
    assert_well_formed(records, root, "celebdf")
    ids = by_id(records)

    assert len(records) == len(CELEB_VIDEOS) + 1
    for vid, r in ids.items():
        assert r.label == (FAKE if vid.startswith("Celeb-synthesis") else REAL), vid
    # The file's "1" means real: the listed Celeb-real and YouTube videos must stay REAL.
    listed = {vid: label for label, vid in CELEB_TEST}
    assert {vid: int(ids[vid].label == REAL) for vid in listed} == listed
    assert {vid for vid, r in ids.items() if r.split == "test"} == set(listed)
    assert {r.split for vid, r in ids.items() if vid not in listed} == {None}
    assert not records.problems

    assert ids["Celeb-synthesis/id0_id1_0001.mp4"].identities == ("id0", "id1")
    assert ids["Celeb-real/id0_0000.mp4"].identities == ("id0",)
    assert ids["YouTube-real/00000.mp4"].identities == ()
    assert ids["Celeb-synthesis/id0_id1_0001.mp4"].group == ids["Celeb-real/id0_0000.mp4"].group
    assert ids["Celeb-synthesis/id0_id1_0001.mp4"].original == "Celeb-real/id0_0001.mp4"
    assert ids["Celeb-synthesis/id1_id0_0000.mp4"].group == ids["Celeb-real/id1_0000.mp4"].group
    if share == 1.0:
        # id0 and id1 swap faces (and id2 takes id0's): one person in any of them joins them
        celeb = {r.group for vid, r in ids.items() if vid.startswith("Celeb-")}
        assert celeb == {"id0_id1_id2"}
    else:
        # that component holds 7 of 9 videos, too large to keep whole: per-target groups
        assert ids["Celeb-synthesis/id2_id0_0000.mp4"].group == "id2"
        assert ids["Celeb-real/id0_0000.mp4"].group != ids["Celeb-real/id1_0000.mp4"].group
    assert ids["YouTube-real/00000.mp4"].group != ids["YouTube-real/00001.mp4"].group
    assert ids["Celeb-real/id0_0000.mp4"].original is None


# Swaps inside pairs of celebrities (id0<->id1, id2<->id3): small components, kept whole.
CELEB_PAIRED = [f"Celeb-real/{i}_0000.mp4" for i in ("id0", "id1", "id2", "id3", "id4")] + [
    "Celeb-synthesis/id0_id1_0000.mp4",
    "Celeb-synthesis/id1_id0_0000.mp4",
    "Celeb-synthesis/id2_id3_0000.mp4",
    "YouTube-real/00000.mp4",
]


def test_celebdf_small_components_join_target_and_source(tmp_path):
    root = write_celebdf(tmp_path / "celebdf", CELEB_PAIRED)
    records = CelebDFSource("celebdf", root, test_list=None).records()
    groups = {r.video_id: r.group for r in records}
    assert groups["Celeb-real/id0_0000.mp4"] == groups["Celeb-real/id1_0000.mp4"] == "id0_id1"
    assert groups["Celeb-synthesis/id2_id3_0000.mp4"] == groups["Celeb-real/id3_0000.mp4"]
    assert groups["Celeb-real/id3_0000.mp4"] == "id2_id3"
    assert groups["Celeb-real/id4_0000.mp4"] == "id4"
    split_of = assign_splits(records, "group", (0.5, 0.25, 0.25), seed=0)
    report = split_report(records, split_of)
    assert report["identity_disjoint"] is True


def test_celebdf_cross_swaps_keep_the_protocol_and_measure_the_leak(tmp_path):
    root = write_celebdf(tmp_path / "celebdf", CELEB_VIDEOS, CELEB_TEST)
    records = CelebDFSource("celebdf", root).records()
    split_of = assign_splits(records, "group", (0.7, 0.15, 0.15), seed=0)
    # The official test list is kept: id1's videos are listed, id0's are not.
    assert split_of["Celeb-synthesis/id1_id0_0000.mp4"] == "test"
    assert split_of["Celeb-real/id0_0000.mp4"] != "test"
    report = split_report(records, split_of)
    assert report["identity_disjoint"] is False
    assert report["splits"]["test"]["shared_identities_with_train"] >= 1  # id0 is in both


def test_celebdf_test_list_with_flipped_convention_fails(tmp_path):
    root = write_celebdf(tmp_path / "celebdf", CELEB_VIDEOS, [(0, "Celeb-real/id1_0000.mp4")])
    with pytest.raises(ValueError, match="1 = real"):
        CelebDFSource("celebdf", root).records()


def test_celebdf_bad_test_list_lines_become_rows(tmp_path):
    root = write_celebdf(tmp_path / "celebdf", CELEB_VIDEOS[:3])
    (root / "List_of_testing_videos.txt").write_text(
        "1 Celeb-real/id0_0000.mp4\nREAL x.mp4\n1 ./Celeb-real/id0_0000.mp4\n"
        "0 Celeb-real/id1_0000.mp4\n"  # contradicts its folder: left out
    )
    source = CelebDFSource("celebdf", root)
    records = by_id(source.records())
    assert sorted(records) == ["Celeb-real/id0_0000.mp4", "Celeb-real/id0_0001.mp4"]
    assert records["Celeb-real/id0_0000.mp4"].split == "test"
    rows = {p["reason"]: p for p in source.problems}
    assert sorted(rows) == ["bad_label", "bad_metadata", "duplicate"]
    assert "List_of_testing_videos.txt, line 2" in rows["bad_metadata"]["detail"]
    assert "line 3" in rows["duplicate"]["detail"] and "line 1" in rows["duplicate"]["detail"]
    assert rows["bad_label"]["video_id"] == "Celeb-real/id1_0000.mp4"
    assert "1 = real" in rows["bad_label"]["detail"]


# --- Image folders -------------------------------------------------------------------------


def test_image_folder_split_layout_maps_split_names(tmp_path):
    files = ["train/real/a.png", "train/fake/b.png", "valid/REAL/c.jpg", "test/fake/d/e.png"]
    root = write_image_tree(tmp_path / "img", files + ["train/notes/x.png"])
    records = ImageFolderSource("img", root).records()
    assert_well_formed(records, root, "img")
    got = {r.video_id: (r.label, r.split, r.group) for r in records}
    assert got == {
        "train/real/a.png": (REAL, "train", "train/real/a.png"),
        "train/fake/b.png": (FAKE, "train", "train/fake/b.png"),
        "valid/REAL/c.jpg": (REAL, "val", "valid/REAL/c.jpg"),
        "test/fake/d/e.png": (FAKE, "test", "test/fake/d/e.png"),
    }


def test_image_folder_flat_layout_has_no_split(tmp_path):
    root = write_image_tree(tmp_path / "img", ["real/a.png", "fake/b.png", "fake/c.png"])
    records = ImageFolderSource("img", root).records()
    assert Counter(r.label for r in records) == {REAL: 1, FAKE: 2}
    assert {r.split for r in records} == {None}


def test_image_folder_csv_keeps_groups_missing_files_and_bad_paths(tmp_path):
    root = write_image_tree(tmp_path / "img", ["x/a.png", "x/b.png"])
    rows = [
        ("x/a.png", "real", "person1", "train"),
        ("x/b.png", "1", "person1", "valid"),
        ("x/missing.png", "FAKE", "", ""),
        ("../../etc/passwd", "0", "", "test"),
    ]
    write_csv(root / "list.csv", ["path", "label", "group", "split"], rows)
    records = by_id(ImageFolderSource("img", root, csv="list.csv").records())
    got = {vid: (r.label, r.group, r.split) for vid, r in records.items()}
    assert got == {
        "x/a.png": (REAL, "person1", "train"),
        "x/b.png": (FAKE, "person1", "val"),
        "x/missing.png": (FAKE, "x/missing.png", None),
        "../../etc/passwd": (REAL, "../../etc/passwd", "test"),
    }
    assert records["x/missing.png"].path == str(root.resolve() / "x/missing.png")
    assert records["../../etc/passwd"].path == str(root.resolve() / "../../etc/passwd")


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        (["file", "label"], ["a.png", "real"], r"missing column.*'path'"),
        (["path", "label"], ["a.png", "maybe"], "line 2.*unknown label"),
        (["path", "label", "split"], ["a.png", "real", "holdout"], "line 2.*unknown split"),
    ],
)
def test_image_folder_bad_csv_fails_clearly(tmp_path, header, row, message):
    write_csv(tmp_path / "img" / "list.csv", header, [row])
    with pytest.raises(ValueError, match=message):
        ImageFolderSource("img", tmp_path / "img", csv="list.csv").records()


def test_image_folder_csv_bad_rows_become_rows_and_the_rest_is_read(tmp_path):
    root = write_image_tree(tmp_path / "img", ["a.png", "b.png", "c.png", "d.png"])
    rows = [
        ("a.png", "real", "train"),
        ("b.png", "maybe", "train"),
        ("c.png", "fake", "holdout"),
        ("./a.png", "real", "train"),  # the same file again, same label
        ("d.png", "real", ""),
        ("d.png", "fake", ""),  # the same file with another label
        ("", "real", ""),
    ]
    write_csv(root / "list.csv", ["path", "label", "split"], rows)
    source = ImageFolderSource("img", root, csv="list.csv")
    assert [r.video_id for r in source.records()] == ["a.png"]
    got = sorted((p["video_id"], p["reason"]) for p in source.problems)
    assert got == [
        ("a.png", "duplicate"), ("b.png", "bad_label"), ("c.png", "bad_metadata"),
        ("d.png", "duplicate"), ("d.png", "duplicate"), ("list.csv:8", "bad_metadata"),
    ]  # fmt: skip
    details = {p["video_id"]: p["detail"] for p in source.problems}
    assert "list.csv, line 3" in details["b.png"] and "unknown label" in details["b.png"]
    assert "list.csv, line 4" in details["c.png"] and "unknown split" in details["c.png"]
    assert "empty path" in details["list.csv:8"]


def test_image_folder_without_class_folders_fails(tmp_path):
    write_image_tree(tmp_path / "img", ["train/cats/a.png"])
    with pytest.raises(FileNotFoundError, match="no class folders"):
        ImageFolderSource("img", tmp_path / "img").records()


# --- CS4487 --------------------------------------------------------------------------------


def test_cs4487_runs_of_five_share_a_group(tmp_path):
    kaggle = {"real": 12, "fake_deepfake": 12, "fake_face2face": 7}
    root = write_cs4487(tmp_path / "cs", kaggle, split="train", unlabelled=2)
    write_cs4487(root, {"real": 3, "deep_fake": 3, "f2f_fake": 3}, split="test", unlabelled=4)
    (root / "train" / "fake_deepfake" / "3.png").unlink()  # a gap must not shift later runs
    records = CS4487Source("cs4487", root).records()
    assert_well_formed(records, root, "cs4487")

    assert len(records) == sum(kaggle.values()) - 1 + 9  # loose unlabelled files are skipped
    for r in records:
        assert r.label == (REAL if "/real/" in r.video_id else FAKE)
        assert r.split == r.video_id.split("/")[0]
    members = defaultdict(list)
    for r in records:
        members[r.group].append(int(Path(r.path).stem))
    for group, numbers in members.items():
        assert {n // 5 for n in numbers} == {int(group.rsplit("/", 1)[1])}, group
    sizes = {g: len(m) for g, m in members.items() if g.startswith("train/fake_deepfake/")}
    assert sizes == {
        "train/fake_deepfake/0": 4,
        "train/fake_deepfake/1": 5,
        "train/fake_deepfake/2": 2,
    }
    assert "test/real/0" in members and "train/real/0" in members  # splits never share groups


def test_cs4487_flat_layout_groups_by_natural_position(tmp_path):
    root = write_cs4487(
        tmp_path / "cs", {"real": 12, "deep_fake": 4}, split=None, names="im{i}.jpg"
    )
    records = CS4487Source("cs4487", root, group_size=5).records()
    assert {r.split for r in records} == {None}
    # Natural order (im2 before im10) makes position and number agree here.
    assert {r.video_id: r.group for r in records} == {
        f"{cls}/im{i}.jpg": f"{cls}/{i // 5}"
        for cls, n in (("real", 12), ("deep_fake", 4))
        for i in range(n)
    }
    with pytest.raises(ValueError, match="group_size"):
        CS4487Source("cs4487", root, group_size=0)


# --- 140k Real and Fake Faces --------------------------------------------------------------

FACES_COUNTS = {
    "train": {"real": 3, "fake": 2},
    "valid": {"real": 1, "fake": 2},
    "test": {"real": 2, "fake": 1},
}


@pytest.mark.parametrize("with_csv", [True, False])
def test_faces140k_official_split_and_labels(tmp_path, with_csv):
    extra = [("test", "fake", "F99999.jpg")] if with_csv else []
    root = write_faces140k(tmp_path / "f140", FACES_COUNTS, with_csv=with_csv, csv_only=extra)
    records = Faces140kSource("faces140k", root).records()
    assert_well_formed(records, root, "faces140k")
    ids = by_id(records)

    got = Counter((r.split, r.label) for r in records)
    expected = Counter()
    for split, counts in FACES_COUNTS.items():
        name = "val" if split == "valid" else split
        expected.update({(name, REAL): counts["real"], (name, FAKE): counts["fake"]})
    expected.update({("test", FAKE): len(extra)})
    assert got == expected
    for vid, r in ids.items():  # the CSVs say label=1 for real: it must come out REAL
        assert r.label == (REAL if "/real/" in vid else FAKE)
        assert r.group == vid
        assert r.path == str(root.resolve() / "real_vs_fake" / "real-vs-fake" / vid)
    if with_csv:
        assert "test/fake/F99999.jpg" in ids


def test_faces140k_contradictory_or_numeric_only_labels(tmp_path):
    root = tmp_path / "f140"
    header = ["", "id", "label", "label_str", "path"]
    write_csv(root / "train.csv", header, [(0, "a.jpg", 0, "real", "train/real/a.jpg")])
    with pytest.raises(ValueError, match="train.csv, line 2.*1 = real"):
        Faces140kSource("faces140k", root).records()
    write_csv(root / "train.csv", ["id", "label", "path"], [("a.jpg", 1, "train/real/a.jpg")])
    assert [r.label for r in Faces140kSource("faces140k", root).records()] == [REAL]
    # One contradicting row among good ones is a bad_label row; the others are read.
    rows = [
        (0, "a.jpg", 0, "real", "train/real/a.jpg"),
        (1, "b.jpg", 0, "fake", "train/fake/b.jpg"),
    ]
    write_csv(root / "train.csv", header, rows)
    source = Faces140kSource("faces140k", root)
    assert [r.video_id for r in source.records()] == ["train/fake/b.jpg"]
    assert [(p["video_id"], p["reason"]) for p in source.problems] == [
        ("train/real/a.jpg", "bad_label")
    ]
    assert "train.csv, line 2" in source.problems[0]["detail"]


# --- configs and missing roots -------------------------------------------------------------

FIXTURES = {
    "dfdc": lambda root: write_dfdc(root, dfdc_parts()),
    "faceforensics": lambda root: write_faceforensics(
        root, methods=["Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"]
    ),
    "celebdf": lambda root: write_celebdf(root, CELEB_VIDEOS, CELEB_TEST),
    "image_folder": lambda root: write_image_tree(root, ["train/real/a.png", "test/fake/b.png"]),
    "cs4487": lambda root: write_cs4487(root, {"real": 2, "fake_face2face": 2}),
    "faces140k": lambda root: write_faces140k(root, FACES_COUNTS),
}
CROPPED = {"image_folder", "cs4487", "faces140k"}


def load_dataset_config(name: str, data_dir: Path):
    cfg = OmegaConf.create(
        {"paths": {"data_dir": str(data_dir)}, "dataset": OmegaConf.load(CONF_DIR / f"{name}.yaml")}
    )
    return cfg.dataset


@pytest.mark.parametrize("name", OUR_DATASETS)
def test_dataset_config_instantiates_and_reads_its_default_root(tmp_path, name):
    text = (CONF_DIR / f"{name}.yaml").read_text()
    assert "${paths.data_dir}/" in text
    source = instantiate(load_dataset_config(name, tmp_path))
    assert isinstance(source, Source)
    assert (source.name, source.root) == (name, (tmp_path / name).resolve())
    assert source.is_cropped == (name in CROPPED)
    assert ("detector=none" in text) == source.is_cropped

    FIXTURES[name](tmp_path / name)
    records = source.records()
    assert records
    assert_well_formed(records, tmp_path / name, name)


@pytest.mark.parametrize("name", OUR_DATASETS)
def test_missing_root_names_path_and_override(tmp_path, name):
    source = instantiate(load_dataset_config(name, tmp_path / "nowhere"))
    with pytest.raises(DatasetRootError) as info:
        source.records()
    message = str(info.value)
    assert str((tmp_path / "nowhere" / name).resolve()) in message
    assert "dataset.root=" in message


# --- read_splits: test-only sets for cross-dataset and held-out-method protocols ------------


def test_read_splits_keeps_only_the_official_test_videos(ff_root, tmp_path):
    methods = ["Deepfakes", "Face2Face"]
    everything = FaceForensicsSource("ff", ff_root, methods=methods).records()
    test = FaceForensicsSource("ff", ff_root, methods=["Face2Face"], read_splits=["test"])
    records = test.records()
    expected = {
        r.video_id for r in everything if r.split == "test" and r.method in (None, "Face2Face")
    }
    assert {r.video_id for r in records} == expected and {r.split for r in records} == {"test"}
    assert {r.label for r in records} == {REAL, FAKE}

    root = write_celebdf(tmp_path / "celebdf", CELEB_VIDEOS, CELEB_TEST)
    celeb = CelebDFSource("celebdf", root, read_splits=["test"]).records()
    listed = {v for _, v in CELEB_TEST}
    assert celeb and {r.video_id for r in celeb} <= listed and {r.split for r in celeb} == {"test"}


def test_read_splits_fails_clearly(tmp_path, ff_root):
    with pytest.raises(ValueError, match="read_splits must name some of"):
        FaceForensicsSource("ff", ff_root, read_splits=["tset"])
    with pytest.raises(ValueError, match="use_official_split=true"):
        DFDCSource("dfdc", tmp_path, read_splits=["test"])
    root = write_dfdc(tmp_path / "dfdc", dfdc_parts())
    with pytest.raises(ValueError, match=r"no video is in the official split\(s\) \['test'\]"):
        DFDCSource("dfdc", root, use_official_split=True, read_splits=["test"]).records()
