"""The extraction runner: bad inputs land in failures.csv, resume, shards + merge, atomicity."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from deepfake_exp.data.sources.image_folder import ImageFolderSource
from deepfake_exp.faces.detectors import WholeImageDetector
from deepfake_exp.faces.extract import (
    ExtractionConfig,
    FaceExtractor,
    NoUsableVideosError,
    merge_parts,
    shard_records,
)
from tests.test_frames_and_crops import write_counter_video

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

    from deepfake_exp.preprocess import preprocess

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
    from deepfake_exp.preprocess import preprocess

    cfg = compose_cfg("preprocess", ["dataset=dfdc", "progress=false"])
    with pytest.raises(DatasetRootError) as error:
        preprocess(cfg)
    assert "dataset.root=" in str(error.value) and cfg.dataset.root in str(error.value)
