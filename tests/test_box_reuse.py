"""Box reuse: a fake is cropped at its original's boxes, or detected itself with the reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from deepfake_exp.data.records import MediaRecord
from deepfake_exp.faces.detectors import Detection, FaceDetector
from deepfake_exp.preprocessing.boxes import (
    FRAME_COUNT_MISMATCH,
    FRAME_SIZE_MISMATCH,
    ORIGINAL,
    ORIGINAL_FAILED,
    ORIGINAL_MISSING,
    ORIGINAL_NO_FACE,
    OWN,
    BoxPlan,
    boxes_path,
)
from deepfake_exp.preprocessing.merge import merge_parts, read_part
from deepfake_exp.preprocessing.runner import FaceExtractor, shard_records
from deepfake_exp.preprocessing.settings import ExtractionConfig

CONFIG = ExtractionConfig(num_frames=4, crop_size=24, num_workers=1)
FRAMES = 12


class SquareDetector(FaceDetector):
    """The bright square is the face; counts the frames it is asked to look at."""

    def __init__(self) -> None:
        self.frames_seen = 0

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        self.frames_seen += len(frames)
        found = []
        for frame in frames:
            ys, xs = np.nonzero(frame.max(axis=2) > 100)
            if not len(xs):
                found.append([])
                continue
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            found.append([Detection(box=box, prob=0.99)])
        return found


def write_video(
    path: Path, frames: int = FRAMES, size=(96, 64), colour=(255, 255, 255), face=True
) -> Path:
    """A square moving 2 px a frame: the original and its fakes (other colour) share geometry."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    for i in range(frames):
        image = np.zeros((size[1], size[0], 3), np.uint8)
        if face:
            image[16:40, 10 + 2 * i : 34 + 2 * i] = colour
        writer.write(image)
    writer.release()
    return path


def record(root: Path, name: str, label: int, original: str | None = None) -> MediaRecord:
    path = str(root / f"{name}.mp4")
    return MediaRecord(name, path, label, original or name, original, split="train")


@pytest.fixture
def family(tmp_path) -> tuple[Path, list[MediaRecord]]:
    """An original, two fakes of it, and a real video of someone else."""
    root = tmp_path / "data"
    root.mkdir()
    write_video(root / "orig.mp4")
    write_video(root / "fake_a.mp4", colour=(40, 200, 255))
    write_video(root / "fake_b.mp4", colour=(255, 120, 60))
    write_video(root / "other.mp4")
    records = [
        record(root, "orig", 0),
        record(root, "fake_a", 1, "orig"),
        record(root, "fake_b", 1, "orig"),
        record(root, "other", 0),
    ]
    return root, records


def extract(root: Path, out: Path, records, config=CONFIG, detector=None):
    detector = detector or SquareDetector()
    summary = FaceExtractor(detector, out, config, root).run(records, progress=False)
    return detector, summary


def manifest_of(out: Path, records) -> pd.DataFrame:
    merge_parts(out, records, "individual", (0.5, 0.25, 0.25))
    return pd.read_csv(out / "manifest.csv", dtype={"box_fallback": str}).fillna(
        {"box_fallback": ""}
    )


def test_fakes_are_cropped_at_the_originals_boxes_detected_once(family, tmp_path) -> None:
    root, records = family
    out = tmp_path / "faces"
    detector, summary = extract(root, out, records)
    assert detector.frames_seen == 2 * CONFIG.num_frames  # orig and other; no fake detected
    assert summary.boxes_reused == 2 and summary.detected_frames == detector.frames_seen
    manifest = manifest_of(out, records)
    source = manifest.groupby("video_id")["box_source"].unique().map(list).to_dict()
    assert source == {"fake_a": [ORIGINAL], "fake_b": [ORIGINAL], "orig": [OWN], "other": [OWN]}
    assert set(manifest["box_fallback"]) == {""}
    boxes = ["frame", "x1", "y1", "x2", "y2"]
    orig = manifest[manifest.video_id == "orig"][boxes].reset_index(drop=True)
    for fake in ("fake_a", "fake_b"):
        assert manifest[manifest.video_id == fake][boxes].reset_index(drop=True).equals(orig)
    # the fake's crop holds the fake's pixels, not the original's
    first = {
        v: cv2.imread(str(out / p))
        for v, p in manifest.groupby("video_id")["face_path"].first().items()
    }
    assert np.abs(first["fake_a"].astype(int) - first["orig"].astype(int)).mean() > 20
    assert boxes_path(out / "parts", "orig").is_file()
    assert not boxes_path(out / "parts", "other").exists()  # no fakes: nothing to share


def test_reused_boxes_match_independent_detection(family, tmp_path) -> None:
    """On this set the swap keeps the geometry: detecting the fake gives the same boxes."""
    root, records = family
    reused = (
        manifest_of(tmp_path / "reused", records)
        if extract(root, tmp_path / "reused", records)
        else None
    )
    config = ExtractionConfig(**{**CONFIG.__dict__, "reuse_original_boxes": False})
    extract(root, tmp_path / "own", records, config)
    own = manifest_of(tmp_path / "own", records)
    assert set(own["box_source"]) == {OWN}
    columns = ["x1", "y1", "x2", "y2"]
    a = reused[reused.video_id == "fake_a"][columns].to_numpy()
    b = own[own.video_id == "fake_a"][columns].to_numpy()
    assert np.abs(a - b).max() <= 2.0  # codec blur moves an edge by a pixel at most


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("missing", ORIGINAL_MISSING),
        ("unlisted", ORIGINAL_MISSING),
        ("corrupt", ORIGINAL_FAILED),
        ("frames", FRAME_COUNT_MISMATCH),
        ("size", FRAME_SIZE_MISMATCH),
        ("no_face", ORIGINAL_NO_FACE),
    ],
)
def test_fake_falls_back_to_own_detection_with_the_reason(family, tmp_path, change, reason) -> None:
    root, records = family
    if change == "missing":
        (root / "orig.mp4").unlink()
    elif change == "unlisted":
        records = records[1:]
    elif change == "corrupt":
        (root / "orig.mp4").write_bytes(b"not a video" * 100)
    elif change == "frames":
        write_video(root / "fake_a.mp4", frames=FRAMES + 4, colour=(40, 200, 255))
    elif change == "size":
        write_video(root / "fake_a.mp4", size=(128, 64), colour=(40, 200, 255))
    else:
        write_video(root / "orig.mp4", face=False)
    out = tmp_path / "faces"
    _, summary = extract(root, out, records)
    parts = {p.stem.rsplit("-", 1)[0]: read_part(p) for p in (out / "parts").glob("*.csv")}
    fake_a = parts["fake_a"]
    assert set(fake_a["box_source"]) == {OWN} and set(fake_a["box_fallback"]) == {reason}
    assert summary.box_fallbacks[reason] >= 1
    if change in ("frames", "size"):  # only fake_a differs: fake_b still reuses
        assert set(parts["fake_b"]["box_source"]) == {ORIGINAL}


def test_reuse_off_detects_every_fake(family, tmp_path) -> None:
    root, records = family
    config = ExtractionConfig(**{**CONFIG.__dict__, "reuse_original_boxes": False})
    detector, summary = extract(root, tmp_path / "faces", records, config)
    assert detector.frames_seen == 4 * CONFIG.num_frames and summary.boxes_reused == 0
    assert BoxPlan.of(records, enabled=False).originals == {}


def test_resume_reads_the_boxes_file_and_recomputes_it_when_lost(family, tmp_path) -> None:
    root, records = family
    out = tmp_path / "faces"
    extract(root, out, records)
    before = manifest_of(out, records)
    fake_part = next((out / "parts").glob("fake_a-*.csv"))
    fake_part.unlink()  # the fake was in flight when the run stopped
    detector, summary = extract(root, out, records)
    assert detector.frames_seen == 0 and summary.processed == 1 and summary.boxes_reused == 1
    next((out / "parts").glob("fake_b-*.csv")).unlink()
    boxes_path(out / "parts", "orig").unlink()  # e.g. parts made before box reuse
    detector, _ = extract(root, out, records)
    assert detector.frames_seen == CONFIG.num_frames  # the original, once, for its boxes
    assert boxes_path(out / "parts", "orig").is_file()
    pd.testing.assert_frame_equal(manifest_of(out, records), before)


def test_a_changed_original_makes_its_fakes_stale(family, tmp_path) -> None:
    root, records = family
    out = tmp_path / "faces"
    extract(root, out, records)
    stat = (root / "orig.mp4").stat()
    os.utime(root / "orig.mp4", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    extractor = FaceExtractor(SquareDetector(), out, CONFIG, root)
    extractor.plan_boxes(records)
    status = {r.video_id: extractor.status(r) for r in records}
    assert status == {"orig": "stale", "fake_a": "stale", "fake_b": "stale", "other": "done"}
    assert any(d.startswith("boxes_from") for d in extractor.differences(records[1]))


def test_shards_keep_families_together_and_merge_like_one_run(family, tmp_path) -> None:
    root, records = family
    for n in range(2, 6):
        for shard in range(n):
            names = {r.video_id for r in shard_records(records, shard, n)}
            assert {"orig", "fake_a", "fake_b"} <= names or not names & {"orig", "fake_a"}
    single = tmp_path / "single"
    extract(root, single, records)
    sharded = tmp_path / "sharded"
    seen = 0
    for shard in range(3):
        detector, _ = extract(root, sharded, shard_records(records, shard, 3))
        seen += detector.frames_seen
    assert seen == 2 * CONFIG.num_frames  # still one detection per original
    pd.testing.assert_frame_equal(manifest_of(sharded, records), manifest_of(single, records))


def test_parts_made_before_box_reuse_merge_with_defaults(family, tmp_path) -> None:
    root, records = family
    out = tmp_path / "faces"
    extract(root, out, records)
    for part in (out / "parts").glob("*.csv"):
        pd.read_csv(part).drop(columns=["box_source", "box_fallback"]).to_csv(part, index=False)
    manifest = manifest_of(out, records)
    assert set(manifest["box_source"]) == {OWN} and set(manifest["box_fallback"]) == {""}
    assert set(manifest["track_id"]) == {0}


def test_boxes_file_is_plain_json_with_the_originals_stamp(family, tmp_path) -> None:
    root, records = family
    out = tmp_path / "faces"
    extract(root, out, records)
    data = json.loads(boxes_path(out / "parts", "orig").read_text())
    assert data["total_frames"] == FRAMES and data["frame_size"] == [64, 96]
    assert len(data["boxes"]) == CONFIG.num_frames and data["stamp"]["label"] == 0


@pytest.mark.slow
def test_box_reuse_and_projection_sections_on_a_tiny_family(tmp_path) -> None:
    """Correct on tiny sizes (figures come from ``make bench`` on a quiet machine)."""
    from deepfake_exp.benchmarks import SECTIONS
    from deepfake_exp.benchmarks.box_reuse import run, run_projection
    from deepfake_exp.benchmarks.common import compose

    assert {"box_reuse", "projection"} <= set(SECTIONS)
    tiny = [
        "box_reuse.fakes_per_original=2", "box_reuse.num_frames=3",
        "box_reuse.frames_per_video=8", "box_reuse.size=320x240", "box_reuse.fps=8",
        "box_reuse.min_face_px=40", "box_reuse.repeats=1", f"box_reuse.cache_dir={tmp_path}",
    ]  # fmt: skip
    cfg = compose("bench", tiny)
    table = run(cfg.box_reuse).set_index("measure")
    assert table.loc["detected frames per video, reuse", "ratio"] == pytest.approx(1 / 3, abs=1e-3)
    assert table.loc["median IoU reused vs own boxes", "value"] > 0.5
    projection = run_projection(cfg.projection).set_index("measure")
    today, reuse = projection.loc[["CPU-hours, today", "CPU-hours, box reuse"], "value"]
    assert 0 < reuse < today
    assert projection.loc["files, shards", "value"] < projection.loc["files, loose JPEGs", "value"]
    assert (projection.index == "assumption").sum() >= 3


@pytest.mark.parametrize("strategy", ["even", "random"])
def test_per_class_samples_and_random_frames_still_reuse(family, tmp_path, strategy) -> None:
    """The original is detected on its fakes' frames too; its own rows stay its samples."""
    root, records = family
    config = ExtractionConfig(
        num_frames=3, num_frames_real=5, num_frames_fake=2, strategy=strategy, crop_size=24
    )
    _, summary = extract(root, tmp_path / "faces", records, config)
    assert summary.boxes_reused == 2 and not summary.box_fallbacks
    manifest = manifest_of(tmp_path / "faces", records)
    orig = manifest[manifest.video_id == "orig"]
    assert (orig["eval_frame"] | orig["train_frame"]).all()
    assert orig["train_frame"].sum() == 5 and orig["eval_frame"].sum() == 3
    fake = manifest[manifest.video_id == "fake_a"]
    assert fake["eval_frame"].sum() == 3 and fake["train_frame"].sum() == 2
