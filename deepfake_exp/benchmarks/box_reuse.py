"""Box reuse on a DFDC-like mix, and what extracting DFDC costs (sections ``box_reuse``, ``projection``).

``box_reuse``: one original and ``fakes_per_original`` fakes of it (1080p; a fake is its
original with another identity's inner face blended in through an elliptical mask inside the
original's face box, frame by frame: a swap replaces the face, not the head around it). Today's path detects every video; box reuse detects the original
only. Reported: detected frames per video, s/video (wall and CPU) of both, the decode-only
time of the same sampled frames (target: reuse <= 1.25x decode-only), and the median IoU of
the reused boxes with the boxes detected on each fake itself (target >= 0.9).

``projection``: those per-video figures scaled to DFDC (119,154 videos, ~19,154 originals),
files and bytes written as loose JPEGs vs shards, and wall time on ``N`` nodes of ``K`` cores;
every assumption is a row of its own beside the figures.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from deepfake_exp.benchmarks.common import (
    config_detector,
    face_sprite,
    iou,
    paste_face,
    section_frame,
)
from deepfake_exp.benchmarks.extraction import BenchVideo
from deepfake_exp.data.records import FAKE, REAL, MediaRecord
from deepfake_exp.data.video import read_video_frames
from deepfake_exp.preprocessing.merge import read_part
from deepfake_exp.preprocessing.parts import PARTS_DIR, part_paths
from deepfake_exp.preprocessing.runner import FaceExtractor
from deepfake_exp.preprocessing.settings import ExtractionConfig

DFDC_VIDEOS = 119_154
DFDC_ORIGINALS = 19_154
FAMILY_VERSION = 2  # bump when the fakes are drawn otherwise, so cached clips are redrawn


def write_family(
    folder: Path, fakes: int, width: int, height: int, num_frames: int, fps: int, seed: int = 0
) -> list[Path]:
    """The original clip and ``fakes`` swapped copies (cached by their parameters)."""
    video = BenchVideo(0, width, height, num_frames, fps, seed)
    stem = f"{Path(video.name('mp4v')).stem}_family{FAMILY_VERSION}"
    paths = [folder / f"{stem}_original.mp4"] + [
        folder / f"{stem}_fake{k}.mp4" for k in range(1, fakes + 1)
    ]
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    tmp = [p.with_name(f".{p.name}.tmp.mp4") for p in paths]
    writers = [
        cv2.VideoWriter(str(t), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height)) for t in tmp
    ]
    swaps = [face_sprite((video.index + k) % 6, seed) for k in range(1, fakes + 1)]
    frames = zip(video.frames(), video.track(), video.truth(), strict=True)
    for frame, (cx, cy, size), truth in frames:
        writers[0].write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        mask = inner_face_mask(frame.shape[:2], truth)
        for writer, (sprite, box) in zip(writers[1:], swaps, strict=True):
            other, _ = paste_face(frame, sprite, box, (cx, cy), size)
            swapped = (frame * (1.0 - mask) + other * mask + 0.5).astype(np.uint8)
            writer.write(cv2.cvtColor(swapped, cv2.COLOR_RGB2BGR))
    for writer, t, p in zip(writers, tmp, paths, strict=True):
        writer.release()
        t.replace(p)
    return paths


def inner_face_mask(shape: tuple[int, int], box: Sequence[float]) -> np.ndarray:
    """A soft ellipse over the inner 80% of a face box, ``(H, W, 1)`` floats in [0, 1]."""
    x1, y1, x2, y2 = box
    mask = np.zeros(shape, np.float32)
    centre = (int(round((x1 + x2) / 2)), int(round((y1 + y2) / 2)))
    axes = (max(int(0.4 * (x2 - x1)), 1), max(int(0.4 * (y2 - y1)), 1))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
    blur = 2 * max(int(0.05 * (y2 - y1)), 1) + 1
    return cv2.GaussianBlur(mask, (blur, blur), 0)[..., None]


def family_records(paths: Sequence[Path]) -> list[MediaRecord]:
    """The original (REAL) and its fakes, each naming it as ``original``."""
    original = paths[0].stem
    return [MediaRecord(original, str(paths[0]), REAL, original)] + [
        MediaRecord(p.stem, str(p), FAKE, original, original) for p in paths[1:]
    ]


def timed(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and CPU seconds (this process, all threads) of ``work()``, and its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _boxes(out_dir: Path, video_id: str) -> dict[int, tuple[float, ...]]:
    path = part_paths(out_dir / PARTS_DIR, video_id).csv
    if not path.exists():
        return {}
    part = read_part(path)
    first = part.sort_values("face_index").drop_duplicates("frame")
    return {int(r.frame): (r.x1, r.y1, r.x2, r.y2) for r in first.itertuples()}


@lru_cache(maxsize=4)
def measure_box_reuse(
    fakes_per_original: int = 5,
    num_frames: int = 32,
    frames_per_video: int = 300,
    size: str = "1920x1080",
    fps: int = 30,
    threads: int = 1,
    repeats: int = 1,
    cache_dir: str | None = None,
    min_face_px: int = 80,
) -> dict[str, Any]:
    """Per-video figures of today's path, box reuse and decode-only on one family.

    Cached per arguments: ``projection`` reuses what ``box_reuse`` measured in this process.
    """
    width, height = (int(v) for v in size.split("x"))
    folder = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "bench_box_reuse"
    paths = write_family(folder, fakes_per_original, width, height, frames_per_video, fps)
    records = family_records(paths)
    detector = config_detector(num_threads=threads, min_face_px=min_face_px)
    config = ExtractionConfig(num_frames=num_frames, num_workers=1)
    root = paths[0].parent
    n = len(records)
    runs: dict[str, list[tuple[float, float]]] = {"today": [], "reuse": [], "decode": []}
    summaries, outs = {}, {}
    detector.detect(read_video_frames(paths[0], 1).frames)  # warm-up: not in the first timing
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(repeats):
            order = (("today", False), ("reuse", True))
            for name, reuse in order if repeat % 2 == 0 else order[::-1]:
                out = Path(scratch) / f"{name}{repeat}"
                extractor = FaceExtractor(
                    detector,
                    out,
                    ExtractionConfig(**{**config.__dict__, "reuse_original_boxes": reuse}),
                    root,
                )
                wall, cpu, summaries[name] = timed(
                    lambda e=extractor: e.run(records, progress=False)
                )
                runs[name].append((wall, cpu))
                outs[name] = out
            wall, cpu, _ = timed(lambda: [read_video_frames(r.path, num_frames) for r in records])
            runs["decode"].append((wall, cpu))
        ious = [
            iou(reused, own[index])
            for record in records[1:]
            for index, reused in _boxes(outs["reuse"], record.video_id).items()
            if index in (own := _boxes(outs["today"], record.video_id))
        ]
        jpegs = [p.stat().st_size for p in (outs["reuse"] / "faces").rglob("*.jpg")]
    figures = {"videos": n, "fakes": n - 1, "num_frames": num_frames, "size": size}
    for name, timings in runs.items():
        figures[f"{name}_s"] = statistics.median(w for w, _ in timings) / n
        figures[f"{name}_cpu_s"] = statistics.median(c for _, c in timings) / n
    for name in ("today", "reuse"):
        figures[f"{name}_detected_per_video"] = summaries[name].detected_frames / n
    figures["reused_fakes"] = summaries["reuse"].boxes_reused
    figures["median_iou"] = float(np.median(ious)) if ious else float("nan")
    figures["mean_jpeg_bytes"] = float(np.mean(jpegs)) if jpegs else float("nan")
    figures["faces_per_video"] = len(jpegs) / n
    return figures


def _row(
    measure: str,
    value: float,
    baseline: float | None = None,
    target: str = "",
    met=None,
    note: str = "",
) -> dict:
    ratio = value / baseline if baseline else float("nan")
    return {
        "measure": measure, "value": round(value, 4), "baseline": baseline, "ratio": round(ratio, 3),
        "target": target, "met": met, "note": note,
    }  # fmt: skip


def benchmark_box_reuse(**options: Any) -> list[dict]:
    """Rows of :func:`measure_box_reuse` against today's path and decode-only."""
    f = measure_box_reuse(**options)
    reuse_ratio = f["reuse_s"] / f["decode_s"]
    return [
        _row("detected frames per video, reuse", f["reuse_detected_per_video"], f["today_detected_per_video"],
             note="baseline: today's path (every video detected)"),
        _row("s/video, reuse", f["reuse_s"], f["today_s"], note="baseline: today's path"),
        _row("cpu s/video, reuse", f["reuse_cpu_s"], f["today_cpu_s"], note="baseline: today's path"),
        _row("s/video, reuse vs decode-only", f["reuse_s"], f["decode_s"], "<= 1.25", reuse_ratio <= 1.25,
             note="baseline: decoding the same sampled frames only"),
        _row("s/video, today vs decode-only", f["today_s"], f["decode_s"]),
        _row("median IoU reused vs own boxes", f["median_iou"], None, ">= 0.9", f["median_iou"] >= 0.9,
             note=f"{f['fakes']} fakes x {f['num_frames']} frames; {f['reused_fakes']} fakes reused"),
    ]  # fmt: skip


def project(
    figures: dict[str, Any],
    videos: int = DFDC_VIDEOS,
    originals: int = DFDC_ORIGINALS,
    num_frames: int = 32,
    nodes: Sequence[int] = (1, 10, 50),
    cores_per_node: int = 32,
    shard_bytes: float = 256e6,
    shard_overhead_bytes: float = 1e4,
    sample_overhead_bytes: float = 1024.0,
) -> list[dict]:
    """DFDC-scale CPU-hours, files, bytes and wall time derived from the per-video figures.

    Today every video costs ``today_cpu_s``. With reuse an original costs the same (it is
    detected) and a fake costs what remains of the mix's reuse CPU time once its original
    is paid: ``(mix_reuse - today) / fakes`` per fake, with ``mix_reuse = videos x
    reuse_cpu_s``, and never less than decoding it. Measured figures are per ``figures['num_frames']`` frames and scaled
    linearly to ``num_frames``.
    """
    fakes = videos - originals
    scale = num_frames / figures["num_frames"]
    today_video = figures["today_cpu_s"] * scale
    fake_reused = (
        max(
            (figures["reuse_cpu_s"] * figures["videos"] - figures["today_cpu_s"])
            / figures["fakes"],
            figures["decode_cpu_s"],  # a fake costs at least its decoding (guards timing noise)
        )
        * scale
    )
    today_h = videos * today_video / 3600
    reuse_h = (originals * today_video + fakes * fake_reused) / 3600
    faces = videos * num_frames * figures["faces_per_video"] / figures["num_frames"]
    crop_bytes = faces * figures["mean_jpeg_bytes"]
    part_files = 2 * videos + originals  # a CSV and a meta per video, a boxes file per original
    shards = math.ceil(crop_bytes / shard_bytes) if crop_bytes else 0
    shard_total = crop_bytes + faces * sample_overhead_bytes + shards * shard_overhead_bytes
    rows = [
        _row("CPU-hours, today", today_h, note=f"{videos} videos x {today_video:.2f} cpu s"),
        _row("CPU-hours, box reuse", reuse_h, today_h,
             note=f"{originals} originals x {today_video:.2f} + {fakes} fakes x {fake_reused:.2f} cpu s"),
        _row("files, loose JPEGs", faces + part_files, note=f"{faces:.0f} crops + {part_files} part files"),
        _row("bytes, loose JPEGs", crop_bytes, note=f"mean JPEG {figures['mean_jpeg_bytes']:.0f} B (measured)"),
        _row("files, shards", shards + part_files, faces + part_files, note=f"{shard_bytes / 1e6:.0f} MB shards"),
        _row("bytes, shards", shard_total, crop_bytes,
             note=f"+{sample_overhead_bytes:.0f} B/sample, +{shard_overhead_bytes:.0f} B/shard"),
    ]  # fmt: skip
    for n in nodes:
        cores = n * cores_per_node
        rows += [
            _row(f"wall hours, today, {n} nodes x {cores_per_node} cores", today_h / cores),
            _row(f"wall hours, box reuse, {n} nodes x {cores_per_node} cores", reuse_h / cores, today_h / cores),
        ]  # fmt: skip
    assumptions = [
        f"DFDC: {videos} videos, {originals} originals, {fakes} fakes, {num_frames} frames each",
        "CPU time scales linearly with sampled frames; one extraction process per core, "
        "one shard per process, no I/O or scheduling stalls (perfect scaling)",
        f"per-video figures measured on a {figures['fakes']:.0f}:1 synthetic {figures['size']} mix "
        "(benchmark section box_reuse), so real DFDC clips (10 s, 1080p) cost about the same",
        "fakes with a listed original all take its boxes (DFDC lists originals for every fake)",
    ]
    return rows + [_row("assumption", float("nan"), note=text) for text in assumptions]


def run(cfg: DictConfig) -> pd.DataFrame:
    """The ``box_reuse`` block of ``conf/bench.yaml``: :func:`measure_box_reuse`'s arguments."""
    return section_frame(benchmark_box_reuse, cfg)


def run_projection(cfg: DictConfig) -> pd.DataFrame:
    """The ``projection`` block: ``measure`` (``box_reuse``'s arguments) and ``project``'s."""
    options = OmegaConf.to_container(cfg, resolve=True) if cfg is not None else {}
    measure = options.pop("measure", None) or {}
    return pd.DataFrame(project(measure_box_reuse(**measure), **options))
