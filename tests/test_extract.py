"""The extraction runner: bad inputs, resume, shards + merge, cache fingerprints, samples, lock."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from deepfake_exp.data.sources.image_folder import ImageFolderSource
from deepfake_exp.data.video import sample_frame_indices
from deepfake_exp.faces.detectors import WholeImageDetector
from deepfake_exp.preprocessing.merge import merge_parts
from deepfake_exp.preprocessing.parts import part_frames
from deepfake_exp.preprocessing.runner import (
    ExtractionMismatchError,
    FaceExtractor,
    NoUsableVideosError,
    shard_records,
)
from deepfake_exp.preprocessing.settings import ExtractionConfig
from tests.test_frames_and_crops import write_counter_video, write_truncated_video

CONFIG = ExtractionConfig(num_frames=2, crop_size=32, num_workers=2)


def write_dataset(root: Path, n_good: int = 12) -> ImageFolderSource:
    """A CSV image/video dataset with good items and every kind of bad one."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    rng = np.random.default_rng(0)
    for i in range(n_good):
        name = f"img_{i:02d}.png"
        cv2.imwrite(str(root / name), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        rows.append((name, i % 2, f"person{i // 2}"))
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("not a video\n" * 50)
    (root / "notes.txt").write_text("hello")
    good_video = write_counter_video(root / "clip.mp4", 12)
    (root / "truncated.mp4").write_bytes(good_video.read_bytes()[:200])
    (root / "zero_frames.mp4").write_bytes(b"\x00" * 4096)
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root.parent / "outside.png").write_bytes((root / "img_00.png").read_bytes())
    rows += [
        ("empty.mp4", 1, "bad1"), ("text.mp4", 1, "bad2"), ("notes.txt", 0, "bad3"),
        ("truncated.mp4", 1, "bad4"), ("zero_frames.mp4", 0, "bad5"), ("corrupt.png", 0, "bad6"),
        ("missing.png", 1, "bad7"), ("../outside.png", 0, "bad8"), ("img_00.png", 0, "person0"),
        ("clip.mp4", 1, "clip"),
    ]  # fmt: skip
    pd.DataFrame(rows, columns=["path", "label", "group"]).to_csv(root / "list.csv", index=False)
    return ImageFolderSource(name="bad", root=root, csv="list.csv")


def run(source, out_dir: Path, records=None, **kwargs) -> FaceExtractor:
    extractor = FaceExtractor(WholeImageDetector(), out_dir, CONFIG, source.root, **kwargs)
    extractor.run(records if records is not None else source.records(), progress=False)
    return extractor


def test_every_bad_input_is_listed_with_its_reason(tmp_path: Path) -> None:
    source = write_dataset(tmp_path / "ds")
    out = tmp_path / "faces"
    run(source, out)
    counts = merge_parts(out, source.records(), "group", (0.6, 0.2, 0.2))
    failures = pd.read_csv(out / "failures.csv").set_index("video_id")
    reasons = failures["reason"].to_dict()
    assert reasons["empty.mp4"] == "empty_file"
    assert reasons["text.mp4"] == "unreadable_video"
    assert reasons["notes.txt"] == "unsupported_type"
    assert reasons["corrupt.png"] == "unreadable_image"
    assert reasons["missing.png"] == "missing_file"
    assert reasons["../outside.png"] == "outside_root"
    assert reasons["zero_frames.mp4"] in {"unreadable_video", "no_frames"}
    assert "truncated.mp4" in reasons
    assert "duplicate" in set(failures["reason"])
    manifest = pd.read_csv(out / "manifest.csv")
    assert set(manifest["video_id"]) == {f"img_{i:02d}.png" for i in range(12)} | {"clip.mp4"}
    assert (manifest.groupby("video_id").size()["clip.mp4"]) == 2  # two sampled frames
    assert counts["videos_ok"] == 13
    videos = pd.read_csv(out / "videos.csv")
    assert (videos.set_index("video_id")["status"]["empty.mp4"]) == "failed"
    crop = cv2.imread(str(out / manifest["face_path"].iloc[0]))
    assert crop.shape == (32, 32, 3)


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path: Path) -> None:
    source = write_dataset(tmp_path / "ds")
    records = source.records()
    full = tmp_path / "full"
    run(source, full)
    merge_parts(full, records)

    partial = tmp_path / "partial"
    extractor = FaceExtractor(WholeImageDetector(), partial, CONFIG, source.root)
    calls = {"n": 0}
    original = extractor._save_faces

    def crash_after_five(record, decoded, summary):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return original(record, decoded, summary)

    extractor._save_faces = crash_after_five
    with pytest.raises(KeyboardInterrupt):
        extractor.run(records, progress=False)
    assert not (partial / "manifest.csv").exists()
    assert not list((partial / "parts").glob(".*"))  # no half-written temp files left
    resumed = FaceExtractor(WholeImageDetector(), partial, CONFIG, source.root)
    summary = resumed.run(records, progress=False)
    assert summary.skipped_done >= 5
    merge_parts(partial, records)
    for name in ("manifest.csv", "failures.csv", "videos.csv"):
        assert (partial / name).read_text() == (full / name).read_text(), name


def test_shards_plus_merge_equal_a_single_run(tmp_path: Path) -> None:
    source = write_dataset(tmp_path / "ds")
    records = source.records()
    single = tmp_path / "single"
    run(source, single)
    merge_parts(single, records)
    sharded = tmp_path / "sharded"
    shards = [shard_records(records, i, 3) for i in range(3)]
    assert sum(len(s) for s in shards) == len(records)
    for shard in shards:
        run(source, sharded, records=shard)
    merge_parts(sharded, records)
    for name in ("manifest.csv", "failures.csv", "videos.csv"):
        assert (sharded / name).read_text() == (single / name).read_text(), name


def test_run_with_only_failures_exits_with_clear_error(compose_cfg, tmp_path: Path) -> None:
    from omegaconf import open_dict

    from deepfake_exp.tasks.preprocess import preprocess

    root = tmp_path / "data" / "image_folder"
    root.mkdir(parents=True)
    (root / "a.png").write_bytes(b"")
    pd.DataFrame({"path": ["a.png", "b.png"], "label": [0, 1]}).to_csv(root / "l.csv", index=False)
    cfg = compose_cfg("preprocess", ["dataset=image_folder", "detector=none", "progress=false"])
    with open_dict(cfg):
        cfg.dataset.csv = "l.csv"
    with pytest.raises(NoUsableVideosError, match="failures.csv"):
        preprocess(cfg)


def test_missing_dataset_root_names_path_and_override(compose_cfg) -> None:
    from deepfake_exp.data.sources.base import DatasetRootError
    from deepfake_exp.tasks.preprocess import preprocess

    cfg = compose_cfg("preprocess", ["dataset=dfdc", "progress=false"])
    with pytest.raises(DatasetRootError) as error:
        preprocess(cfg)
    assert "dataset.root=" in str(error.value) and cfg.dataset.root in str(error.value)


def write_videos(
    root: Path, labels: dict[str, tuple[int, str]], frames: int = 12
) -> ImageFolderSource:
    """Counter videos listed in a CSV with official splits: ``{name: (label, split)}``."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (label, split) in labels.items():
        write_counter_video(root / name, frames)
        rows.append((name, label, name, split))
    frame = pd.DataFrame(rows, columns=["path", "label", "group", "split"])
    frame.to_csv(root / "list.csv", index=False)
    return ImageFolderSource(name="videos", root=root, csv="list.csv")


SPLIT_VIDEOS = {
    f"{split}_{label}_{i}.mp4": (label, split)
    for split, n in (("train", 2), ("val", 1), ("test", 1))
    for label in (0, 1)
    for i in range(n)
}


def extract(source, out_dir: Path, config: ExtractionConfig, **kwargs) -> FaceExtractor:
    extractor = FaceExtractor(WholeImageDetector(), out_dir, config, source.root, **kwargs)
    extractor.summary = extractor.run(source.records(), progress=False)
    return extractor


def test_eval_frames_do_not_depend_on_the_label(tmp_path: Path) -> None:
    """Per-class counts (York: more REAL frames) size the training sample only."""
    from deepfake_exp.data.datamodule import FaceDataModule

    source = write_videos(tmp_path / "ds", SPLIT_VIDEOS)
    config = ExtractionConfig(num_frames=3, num_frames_real=6, num_frames_fake=2, crop_size=16)
    extract(source, tmp_path / "faces", config)
    merge_parts(tmp_path / "faces", source.records())
    data = FaceDataModule(tmp_path / "faces", augmentation=None)
    for split in ("val", "test"):
        frame = data.split_frame(split)
        per_video = frame.groupby("video_id").agg(label=("label", "first"), n=("frame", "size"))
        assert set(per_video["label"]) == {0, 1} and set(per_video["n"]) == {3}, split
        assert set(frame["frame"]) == set(sample_frame_indices(12, 3))
    train = (
        data.split_frame("train")
        .groupby("video_id")
        .agg(label=("label", "first"), n=("frame", "size"))
    )
    assert train.groupby("label")["n"].unique().map(list).to_dict() == {0: [6], 1: [2]}


def test_random_frames_differ_between_videos_and_repeat_per_video(tmp_path: Path) -> None:
    source = write_videos(tmp_path / "ds", {"a.mp4": (0, "train"), "b.mp4": (1, "train")}, 30)
    config = ExtractionConfig(num_frames=4, strategy="random", crop_size=16, seed=3)

    def frames(out: str) -> dict[str, list[int]]:
        extract(source, tmp_path / out, config)
        parts = pd.concat(pd.read_csv(p) for p in sorted((tmp_path / out / "parts").glob("*.csv")))
        return parts.groupby("video_id")["frame"].apply(list).to_dict()

    first = frames("one")
    assert first["a.mp4"] != first["b.mp4"] and len(first["a.mp4"]) == 4
    assert frames("two") == first


def test_changed_crop_size_reextracts_and_extraction_json_says_so(compose_cfg, tmp_path) -> None:
    """A cache reused whatever the settings merged 64 px crops into a '96 px' run."""
    from omegaconf import open_dict

    from deepfake_exp.preprocessing.settings import extraction_drift, read_extraction_settings
    from deepfake_exp.tasks.preprocess import preprocess

    root = tmp_path / "data" / "image_folder"
    root.mkdir(parents=True)
    rows, rng = [], np.random.default_rng(0)
    for i, (split, label) in enumerate(
        [(s, lb) for s in ("train", "val", "test") for lb in (0, 1)]
    ):
        cv2.imwrite(str(root / f"{i}.png"), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        rows.append((f"{i}.png", label, split))
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(root / "l.csv", index=False)

    def run_with(crop_size: int, *extra: str) -> Path:
        overrides = ["dataset=image_folder", "detector=none", "progress=false"]
        cfg = compose_cfg("preprocess", [*overrides, f"extraction.crop_size={crop_size}", *extra])
        with open_dict(cfg):
            cfg.dataset.csv = "l.csv"
        return Path(preprocess(cfg)["out_dir"])

    out = run_with(64)
    assert read_extraction_settings(out)["crop_size"] == 64
    with pytest.raises(ExtractionMismatchError, match=r"crop_size: 64 -> 96 \(6 videos\)"):
        run_with(96, "extraction.on_mismatch=error")
    assert read_extraction_settings(out)["crop_size"] == 64  # refused: nothing touched
    out = run_with(96)
    manifest = pd.read_csv(out / "manifest.csv")
    sizes = {cv2.imread(str(out / p)).shape[:2] for p in manifest["face_path"]}
    assert sizes == {(96, 96)} and len(manifest) == 6
    crops = {p.relative_to(out).as_posix() for p in (out / "faces").rglob("*") if p.is_file()}
    assert crops == set(manifest["face_path"])  # no 64 px crop left behind
    record = json.loads((out / "extraction.json").read_text())
    assert record["settings"]["crop_size"] == 96 and record["videos"] == 6
    assert record["settings"]["detector"]["_target_"].endswith("WholeImageDetector")
    assert read_extraction_settings(out) == record["settings"]
    drift = extraction_drift({"_target_": "x", "crop_size": 64, "margin": 0.5}, out)
    assert drift == ["crop_size: 96 -> 64"]  # a config that no longer describes the crops


def test_regenerated_source_file_is_reextracted(tmp_path: Path) -> None:
    source = write_videos(tmp_path / "ds", SPLIT_VIDEOS)
    out = tmp_path / "faces"
    config = ExtractionConfig(num_frames=2, crop_size=16)
    assert extract(source, out, config).summary.processed == len(SPLIT_VIDEOS)
    assert extract(source, out, config).summary.skipped_done == len(SPLIT_VIDEOS)
    touched = source.root / "val_0_0.mp4"
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(ExtractionMismatchError, match=r"source_file \(1 video\).*") as error:
        extract(source, out, ExtractionConfig(num_frames=2, crop_size=16, on_mismatch="error"))
    assert "val_0_0.mp4" in str(error.value)
    again = extract(source, out, config).summary
    assert (again.processed, again.reextracted) == (1, 1)
    write_counter_video(touched, 20)  # regenerated: other size and mtime
    assert extract(source, out, config).summary.reextracted == 1
    merge_parts(out, source.records())
    assert FaceExtractor(WholeImageDetector(), out, config, source.root).is_done(
        source.records()[0]
    )


def test_label_change_and_unstamped_parts_are_stale(tmp_path: Path) -> None:
    source = write_videos(tmp_path / "ds", {"a.mp4": (0, "train")})
    out = tmp_path / "faces"
    config = ExtractionConfig(num_frames=2, crop_size=16)
    extractor = extract(source, out, config)
    (record,) = source.records()
    relabelled = dataclasses.replace(record, label=1)
    assert extractor.status(record) == "done" and extractor.status(relabelled) == "stale"
    assert extractor.differences(relabelled) == ["label: 0 -> 1"]
    next(out.glob("parts/*.meta.json")).unlink()  # a part of a version without fingerprints
    assert extractor.status(record) == "stale"


def test_merge_refuses_shards_extracted_with_other_settings(tmp_path: Path) -> None:
    source = write_videos(tmp_path / "ds", SPLIT_VIDEOS)
    records, out = source.records(), tmp_path / "faces"
    old, new = ExtractionConfig(num_frames=2, margin=0.2), ExtractionConfig(num_frames=2)
    FaceExtractor(WholeImageDetector(), out, old, source.root).run(records, progress=False)
    current = FaceExtractor(WholeImageDetector(), out, new, source.root)
    current.run(shard_records(records, 0, 2), progress=False)  # shard 1 not re-run yet
    with pytest.raises(ExtractionMismatchError, match=r"margin: 0\.2 -> 0\.5.*every shard"):
        current.check_current(records)
    current.run(shard_records(records, 1, 2), progress=False)
    current.check_current(records)


def test_truncated_video_is_flagged_in_its_part(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    write_truncated_video(root / "cut.mp4", 30)
    write_counter_video(root / "whole.mp4", 30)
    pd.DataFrame({"path": ["cut.mp4", "whole.mp4"], "label": [1, 0]}).to_csv(
        root / "l.csv", index=False
    )
    source = ImageFolderSource(name="cut", root=root, csv="l.csv")
    extractor = extract(source, tmp_path / "faces", ExtractionConfig(num_frames=8, crop_size=16))
    assert extractor.summary.truncated == 1
    cut, whole = (
        part_frames(tmp_path / "faces", "cut.mp4"),
        part_frames(tmp_path / "faces", "whole.mp4"),
    )
    assert cut["truncated"] is True and cut["total_frames"] == 30 and cut["expected_frames"] == 8
    assert 0 < cut["decoded_frames"] < 8
    assert whole == {
        "total_frames": 30,
        "expected_frames": 8,
        "decoded_frames": 8,
        "truncated": False,
    }
    merge_parts(tmp_path / "faces", source.records(), "individual", [1.0, 0.0, 0.0])
    videos = pd.read_csv(tmp_path / "faces" / "videos.csv").set_index("video_id")
    assert videos.loc["cut.mp4", "truncated"] and not videos.loc["whole.mp4", "truncated"]
    assert videos.loc["cut.mp4", "decoded_frames"] == cut["decoded_frames"]


def test_merge_takes_grouping_from_the_records_not_cached_parts(tmp_path: Path) -> None:
    source = write_videos(tmp_path / "ds", SPLIT_VIDEOS)
    records, out = source.records(), tmp_path / "faces"
    FaceExtractor(WholeImageDetector(), out, ExtractionConfig(num_frames=2), source.root).run(
        records, progress=False
    )
    regrouped = [dataclasses.replace(r, group=f"new_{r.group}") for r in records]
    merge_parts(out, regrouped, "group", [1.0, 0.0, 0.0])
    manifest = pd.read_csv(out / "manifest.csv", dtype={"group": str})
    assert manifest["group"].str.startswith("new_").all()


def test_invalid_extraction_settings_fail_before_work() -> None:
    with pytest.raises(ValueError, match="image_format='jpeg': use one of jpg, png"):
        ExtractionConfig(image_format="jpeg")
    with pytest.raises(ValueError, match="on_mismatch='ignore'.*crop_size=0 must be >= 1"):
        ExtractionConfig(on_mismatch="ignore", crop_size=0)
    settings = ExtractionConfig(crop_size=96, num_frames_real=40).settings()
    assert "num_workers" not in settings and "on_mismatch" not in settings
    assert ExtractionConfig.from_settings({**settings, "detector": {}}).crop_size == 96


@pytest.fixture
def sleeping_pid():
    """A live process that is not this one: a lock it holds is not stale."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


def hold_lock(directory: Path, pid: int, name: str = ".lock") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    holder = {"pid": pid, "host": socket.gethostname(), "started": "now", "command": "preprocess"}
    (directory / name).write_text(json.dumps(holder))


def test_preprocessing_refuses_a_folder_held_by_a_live_process(tmp_path, sleeping_pid) -> None:
    from deepfake_exp.preprocessing.lock import preprocessing_lock, shard_lock_name
    from deepfake_exp.utils.lock import LockedError

    out = tmp_path / "faces"
    hold_lock(out, sleeping_pid)
    for shard, num_shards in ((0, 1), (1, 4)):  # the whole folder, and a shard of it
        locked = pytest.raises(LockedError, match=rf"preprocessing folder .* pid {sleeping_pid}")
        with locked, preprocessing_lock(out, shard, num_shards):
            pytest.fail("entered a locked folder")
    (out / ".lock").unlink()
    hold_lock(out, sleeping_pid, shard_lock_name(2, 4))
    # an unsharded run (or a merge) while a shard job runs
    locked = pytest.raises(LockedError, match=rf"shard-2-of-4.* pid {sleeping_pid}")
    with locked, preprocessing_lock(out):
        pytest.fail("entered a folder a shard job is writing")
    with preprocessing_lock(out, 1, 4):  # other shards of the same array run side by side
        assert (out / shard_lock_name(1, 4)).is_file()
    assert not (out / shard_lock_name(1, 4)).exists()


def test_preprocess_takes_the_lock(compose_cfg, sleeping_pid) -> None:
    from deepfake_exp.tasks.preprocess import preprocess
    from deepfake_exp.utils.lock import LockedError

    cfg = compose_cfg("preprocess", ["dataset=image_folder", "detector=none", "progress=false"])
    hold_lock(Path(cfg.out_dir), sleeping_pid)
    with pytest.raises(LockedError, match="preprocessing folder"):
        preprocess(cfg)  # before reading the dataset (its root does not even exist)
