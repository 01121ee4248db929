"""MTCNN frames/s, measured side by side: ``python -m deepfake_exp.bench sections=[mtcnn]``.

Frames/s of ``MTCNNDetector`` (batched, downscaled as ``conf/detector/mtcnn.yaml`` says)
against facenet-pytorch's own MTCNN on the same frames, twice: against ``MTCNN()`` per frame
at full resolution (what a user writes; it searches faces down to 20 px) and against
``MTCNN(min_face_size=<our smallest full-resolution face>)`` batched (the same face sizes:
like for like); with detection quality, so that speed is not bought with misses. Methods are
timed in turns on the same frames and reported as ratios, which survive a busy machine better
than absolute times; the 1-minute load average is reported with them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

import cv2
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from deepfake_exp.benchmarks.common import (
    FOUND_IOU,
    Box,
    config_detector,
    face_frames,
    found_share,
    iou,
    load_average,
    parse_size,
    section_frame,
    timed,
)
from deepfake_exp.faces.detectors import MTCNNDetector, torch_threads

log = logging.getLogger(__name__)


def facenet_mtcnn(device: str = "cpu", min_face_size: int = 20):
    """facenet-pytorch's own ``MTCNN`` (its networks, glue and defaults but ``min_face_size``).

    ``MTCNN()`` is what a user writes; ``min_face_size`` = our smallest full-resolution face
    makes it search the same face sizes as our downscaled detector: the like-for-like baseline.
    """
    from facenet_pytorch import MTCNN

    return MTCNN(device=device, min_face_size=min_face_size).eval()


def facenet_largest(mtcnn, frame: np.ndarray) -> Box | None:
    """Largest face from a plain ``MTCNN.detect`` call (``select_largest`` orders it first)."""
    boxes, _ = mtcnn.detect(frame)
    return None if boxes is None else tuple(float(v) for v in boxes[0])


def _largest(boxes: np.ndarray, min_prob: float) -> Box | None:
    """The largest of ``(x1, y1, x2, y2, prob)`` rows at or above ``min_prob``."""
    boxes = boxes[boxes[:, 4] >= min_prob]
    if not len(boxes):
        return None
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return tuple(float(v) for v in boxes[int(np.argmax(areas)), :4])


def plain_boxes(mtcnn, frames: Sequence[np.ndarray]) -> list[Box | None]:
    """The baseline: facenet-pytorch's ``MTCNN.detect`` on one full-resolution frame at a time."""
    return [facenet_largest(mtcnn, frame) for frame in frames]


def facenet_batched_boxes(
    mtcnn, frames: Sequence[np.ndarray], scale: float = 1.0, min_prob: float = 0.9
) -> list[Box | None]:
    """facenet-pytorch's own batched ``detect_face`` (what ``MTCNN.detect`` calls) on
    ``frames`` shrunk by ``scale``, on ``mtcnn``'s networks; largest face >= ``min_prob``.

    At ``scale=1`` with ``min_face_size`` = our smallest full-resolution face it searches the
    same pyramid as our detector (like for like); at our scale with ``min_face_size=20`` it
    separates what downscaling and batching buy from what our rewrite of MTCNN's glue buys.
    """
    from facenet_pytorch.models.utils.detect_face import detect_face

    height, width = frames[0].shape[:2]
    size = (max(round(width * scale), 1), max(round(height * scale), 1))
    if size == (width, height):
        small = np.stack(frames)
    else:
        small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    batch, _ = detect_face(
        small, mtcnn.min_face_size, mtcnn.pnet, mtcnn.rnet, mtcnn.onet,
        mtcnn.thresholds, mtcnn.factor, mtcnn.device,
    )  # fmt: skip
    back = np.array([width / size[0], height / size[1], width / size[0], height / size[1], 1.0])
    return [_largest(np.asarray(b, np.float64).reshape(-1, 5) * back, min_prob) for b in batch]


def smallest_face_px(detector: MTCNNDetector, height: int, width: int) -> int:
    """The smallest full-resolution face ``detector`` searches for at this frame size."""
    return max(round(detector.min_face_size / detector.scale_for(height, width)), 12)


def detector_boxes(detector: MTCNNDetector, frames: Sequence[np.ndarray]) -> list[Box | None]:
    """Our detector: the face it keeps per frame."""
    return [found[0].box if found else None for found in detector.detect(list(frames))]


def _compare(
    methods: dict[str, Callable[[], list[Box | None]]],
    truth: Sequence[Box],
    repeats: int,
    baselines: dict[str, str],
) -> list[dict]:
    """Time ``methods`` in turns (best of ``repeats``, order reversed every other repeat, so
    no method always runs first or after the same neighbour); quality, agreement with the
    first method, and one speed-up column per ``baselines`` entry (column -> method)."""
    for function in methods.values():
        function()  # warm-up: the first call allocates
    times: dict[str, list[float]] = {name: [] for name in methods}
    boxes: dict[str, list[Box | None]] = {}
    for repeat in range(max(repeats, 1)):
        for name in list(methods)[:: 1 if repeat % 2 == 0 else -1]:
            seconds, boxes[name] = timed(methods[name])
            times[name].append(seconds)
    reference = next(iter(methods))
    rows = []
    for name in methods:
        both = [
            iou(a, b)
            for a, b, true in zip(boxes[name], boxes[reference], truth, strict=True)
            if a and b and iou(a, true) >= FOUND_IOU and iou(b, true) >= FOUND_IOU
        ]
        rows.append(
            {
                "method": name,
                "frames_per_s": round(len(truth) / min(times[name]), 2),
                **{
                    column: round(min(times[base]) / min(times[name]), 2)
                    for column, base in baselines.items()
                },
                "found": round(found_share(boxes[name], truth), 3),
                "agree": round(len(both) / len(truth), 3),
                "iou_vs_baseline": round(float(np.mean(both)), 3) if both else float("nan"),
            }
        )
    return rows


def benchmark_mtcnn(
    sizes: Sequence[str] = ("960x540", "1280x720", "1920x1080"),
    frames_per_size: int = 4,
    repeats: int = 3,
    threads: int | None = 1,
    seed: int = 0,
    detector: dict | None = None,
    device: str = "cpu",
) -> list[dict]:
    """MTCNN frames/s per frame size: facenet-pytorch as a user calls it, like for like, ours.

    Four methods run in turns on the same frames, ``repeats`` times each (the fastest run
    counts: the one least disturbed by other processes), all but ours on facenet-pytorch's
    own ``MTCNN`` networks and code:

    - ``MTCNN().detect`` one frame at a time at full resolution: what a user writes
      (searches faces down to 20 px) -- the ``x_vs_defaults`` baseline;
    - ``MTCNN(min_face_size=<our smallest full-resolution face>)`` batched at full
      resolution: the same face sizes as ours, hence the same pyramid -- the
      ``x_like_for_like`` baseline;
    - its ``detect_face`` batched on the frames our detector downscales to;
    - ``MTCNNDetector`` as ``conf/detector/mtcnn.yaml`` builds it.

    Most of ours' speed-up over the defaults comes from searching fewer face sizes; the
    like-for-like ratio is what our batching and glue buy. ``found``: share of frames whose
    (largest) face is the drawn one (IoU >= 0.5); ``agree``: share where the method and the
    defaults both find it; ``iou_vs_baseline``: mean overlap of their boxes there.

    Args:
        sizes: Frame sizes as ``WIDTHxHEIGHT`` (landscape 960x540 is facenet's "540x960").
        frames_per_size: Distinct frames per size (faces of 150-300 px in a 1080p frame).
        repeats: Timed runs per method.
        threads: torch intra-op threads for every method (``None``: torch's default). On a
            shared 2-core machine two OpenMP threads spin-wait for each other while other
            processes hold the cores, making MTCNN several times slower; every method runs
            under the same setting, so the comparison stays fair either way.
        seed: Fixes identities, rooms and face placement.
        detector: Overrides of ``conf/detector/mtcnn.yaml`` for our detector.
        device: Where every method runs (``cuda``: ``make gpu-check``).
    """
    ours = config_detector(**{"device": device, **(detector or {})})
    defaults = facenet_mtcnn(device)
    rows = []
    with torch_threads(threads), torch.inference_mode():
        for size in sizes:
            width, height = parse_size(size)
            frames, truth = zip(*face_frames(width, height, frames_per_size, seed), strict=True)
            scale = ours.scale_for(height, width)
            smallest = smallest_face_px(ours, height, width)
            same_sizes = facenet_mtcnn(device, min_face_size=smallest)
            methods = {
                "facenet MTCNN().detect, per frame, full res": partial(
                    plain_boxes, defaults, frames
                ),
                f"facenet MTCNN(min_face_size={smallest}), batched, full res": partial(
                    facenet_batched_boxes, same_sizes, frames, 1.0, ours.min_prob
                ),
                f"facenet detect_face(min_face_size={defaults.min_face_size}), batched, "
                "downscaled": partial(
                    facenet_batched_boxes, defaults, frames, scale, ours.min_prob
                ),
                "ours: MTCNNDetector": partial(detector_boxes, ours, frames),
            }
            names = list(methods)
            baselines = {"x_vs_defaults": names[0], "x_like_for_like": names[1]}
            load = load_average()
            for row in _compare(methods, truth, repeats, baselines):
                full = "full res" in row["method"]
                rows.append(
                    {
                        "frame (WxH)": size,
                        "frames": len(frames),
                        "scale": 1.0 if full else round(scale, 3),
                        "smallest_face_px": 20 if row["method"] == names[0] else smallest,
                    }
                    | row
                    | {"load_1min": load}
                )
            log.info(
                "mtcnn %s: ours %.2fx facenet defaults, %.2fx like for like (min_face_size=%d)",
                size, rows[-1]["x_vs_defaults"], rows[-1]["x_like_for_like"], smallest,
            )  # fmt: skip
    return rows


def run(cfg: DictConfig) -> pd.DataFrame:
    """The ``mtcnn`` block of ``conf/bench.yaml``: :func:`benchmark_mtcnn`'s arguments."""
    return section_frame(benchmark_mtcnn, cfg)
