"""Face detectors behind one interface: a batch of RGB frames in, boxes per frame out."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class Detection:
    """One face: box ``(x1, y1, x2, y2)`` in full-resolution pixels and detector confidence."""

    box: tuple[float, float, float, float]
    prob: float

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)


def select_faces(detections: list[Detection], keep: str, top_k: int) -> list[Detection]:
    """Keep the ``largest`` face, ``all`` faces, or the ``top_k`` largest faces of a frame."""
    ordered = sorted(detections, key=lambda d: d.area, reverse=True)
    limits = {"largest": 1, "all": len(ordered), "top_k": top_k}
    if keep not in limits:
        raise ValueError(f"keep must be one of {sorted(limits)}, got {keep!r}")
    return ordered[: limits[keep]]


class FaceDetector:
    """Base class; ``detect`` maps a list of RGB uint8 frames to detections per frame."""

    #: True when inputs are already face crops: the whole image is the face.
    passthrough: bool = False

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        raise NotImplementedError


class WholeImageDetector(FaceDetector):
    """``detector=none``: datasets that are already face crops; the whole image is the face."""

    passthrough = True

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        return [
            [Detection(box=(0.0, 0.0, float(f.shape[1]), float(f.shape[0])), prob=1.0)]
            for f in frames
        ]


class MTCNNDetector(FaceDetector):
    """Batched facenet-pytorch MTCNN on downscaled frames, boxes mapped back to full size.

    Frames are shrunk by ``scale`` before detection because MTCNN's cost grows with the pixel
    count while a face that is still >= ``min_face_size`` px after shrinking is found just as
    well; ``scale=None`` derives it from ``min_face_px`` (the smallest full-resolution face
    worth keeping), e.g. 80 px faces with MTCNN's 20 px minimum allow 0.25.

    facenet-pytorch's batch mode needs equal-sized frames, so a batch is split by frame size;
    and its ``MTCNN.detect`` builds ragged numpy arrays that fail on recent numpy when only
    some frames have a face (facenet-pytorch #206, #224), so we call the underlying
    ``detect_face`` and build the per-frame lists ourselves.

    Args:
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        scale: Downscale factor in (0, 1]; ``None`` derives it from ``min_face_px``.
        min_face_px: Smallest face (full-resolution pixels) to keep when deriving ``scale``.
        min_face_size: MTCNN's minimum face size in the (downscaled) detection image.
        thresholds: P-Net/R-Net/O-Net thresholds.
        factor: Image-pyramid scale step.
        min_prob: Drop detections below this confidence.
        keep: ``largest``, ``all`` or ``top_k`` faces per frame.
        top_k: Faces kept when ``keep=top_k``.
        batch_size: Frames per MTCNN call.
    """

    def __init__(
        self,
        device: str = "cpu",
        scale: float | None = None,
        min_face_px: int = 80,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        min_prob: float = 0.9,
        keep: str = "largest",
        top_k: int = 2,
        batch_size: int = 32,
    ) -> None:
        from facenet_pytorch import MTCNN

        if scale is not None and not 0.0 < scale <= 1.0:
            raise ValueError(f"detector.scale must be in (0, 1], got {scale}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(
                f"detector.device={device} but CUDA is not available; use detector.device=cpu"
            )
        select_faces([], keep, top_k)  # validate early
        self.device = torch.device(device)
        self.scale = scale
        self.min_face_px = min_face_px
        self.min_face_size = min_face_size
        self.thresholds = list(thresholds)
        self.factor = factor
        self.min_prob = min_prob
        self.keep = keep
        self.top_k = top_k
        self.batch_size = batch_size
        self._mtcnn = MTCNN(
            min_face_size=min_face_size,
            thresholds=self.thresholds,
            factor=factor,
            device=self.device,
        ).eval()

    def scale_for(self, height: int, width: int) -> float:
        """The downscale factor used for a frame of this size."""
        if self.scale is not None:
            return float(self.scale)
        return float(min(1.0, self.min_face_size / max(self.min_face_px, 1)))

    def _detect_same_size(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        from facenet_pytorch.models.utils.detect_face import detect_face

        height, width = frames[0].shape[:2]
        scale = self.scale_for(height, width)
        if scale < 1.0:
            size = (max(int(round(width * scale)), 1), max(int(round(height * scale)), 1))
            small = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
            sx, sy = width / size[0], height / size[1]
        else:
            small, sx, sy = frames, 1.0, 1.0
        with torch.no_grad():
            batch_boxes, _ = detect_face(
                np.stack(small),
                self.min_face_size,
                self._mtcnn.pnet,
                self._mtcnn.rnet,
                self._mtcnn.onet,
                self.thresholds,
                self.factor,
                self.device,
            )
        results = []
        for boxes in batch_boxes:
            found = [
                Detection(
                    box=(
                        float(np.clip(b[0] * sx, 0, width)),
                        float(np.clip(b[1] * sy, 0, height)),
                        float(np.clip(b[2] * sx, 0, width)),
                        float(np.clip(b[3] * sy, 0, height)),
                    ),
                    prob=float(b[4]),
                )
                for b in np.asarray(boxes).reshape(-1, 5)
                if b[4] >= self.min_prob
            ]
            results.append(select_faces(found, self.keep, self.top_k))
        return results

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """Detections per frame, in input order; frames may differ in size."""
        by_size: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, frame in enumerate(frames):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(
                    f"frames must be RGB uint8 HxWx3, got shape {frame.shape} {frame.dtype}"
                )
            by_size[frame.shape].append(i)
        results: list[list[Detection]] = [[] for _ in frames]
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                for i, found in zip(
                    chunk, self._detect_same_size([frames[j] for j in chunk]), strict=True
                ):
                    results[i] = found
        return results
