"""Face detectors behind one interface: a batch of RGB frames in, boxes per frame out."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` torch intra-op threads, restored afterwards (``None``: unchanged)."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if count:
            torch.set_num_threads(before)


#: ``detector.keep``: ``all`` keeps every person (each gets a ``track_id`` at merge).
KEEP_MODES = ("largest", "all", "top_k")


def select_faces(detections: list[Detection], keep: str, top_k: int) -> list[Detection]:
    """Keep the ``largest`` face, ``all`` faces, or the ``top_k`` largest faces of a frame."""
    if keep not in KEEP_MODES:
        raise ValueError(f"keep must be one of {sorted(KEEP_MODES)}, got {keep!r}")
    ordered = sorted(detections, key=lambda d: d.area, reverse=True)
    limits = {"largest": 1, "all": len(ordered), "top_k": top_k}
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


#: Candidate boxes per R-Net/O-Net forward pass.
_REFINE_CHUNK = 64


def _normalise(images: torch.Tensor) -> torch.Tensor:
    """MTCNN's input scaling of 0..255 pixels to about [-1, 1]."""
    return (images - 127.5) * 0.0078125


def pyramid_scales(height: int, width: int, min_face_size: int, factor: float) -> list[float]:
    """MTCNN's image-pyramid scales: the first maps ``min_face_size`` to P-Net's 12 px window."""
    scale = 12.0 / min_face_size
    side = min(height, width) * scale
    scales = []
    while side >= 12:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


class MTCNNDetector(FaceDetector):
    """Batched facenet-pytorch MTCNN on downscaled frames, boxes mapped back to full size.

    Frames are shrunk by ``scale`` before detection because MTCNN's cost grows with the pixel
    count while a face that is still >= ``min_face_size`` px after shrinking is found just as
    well; ``scale=None`` derives it from ``min_face_px`` (the smallest full-resolution face
    worth keeping), e.g. 80 px faces with MTCNN's 20 px minimum allow 0.25.

    The three networks and their weights are facenet-pytorch's, and each stage keeps its
    thresholds, box regression and non-maximum suppression, but the glue around them is
    rewritten for CPU speed (about 2x facenet-pytorch's ``detect_face`` on the same frames):
    the pyramid is built with OpenCV on uint8 images, bilinear from level to level as the
    original MTCNN does (not ``interpolate(mode="area")`` from the full frame on float
    tensors); P-Net runs channels-last on a few frames at a time and R-Net/O-Net on chunks of
    candidates (one huge batch falls out of the caches and runs slower); and their inputs are
    cut with one ``roi_align`` per frame instead of one resize call per candidate box. Boxes
    match facenet-pytorch's to within resampling differences (tested).

    Frames of different sizes are grouped by size. Detections are built per frame here, never
    as one ragged numpy array, which is what breaks facenet-pytorch's own batch mode on recent
    numpy when only some frames have a face (facenet-pytorch #206, #224).

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
        batch_size: Frames per detection call (bounds memory; stages 2-3 run on all of them).
        pnet_batch: Frames per P-Net forward pass.
        num_threads: torch intra-op threads while detecting (``None``: leave torch's
            setting). 1 suits a 2-core machine whose other core decodes the next video: two
            OpenMP threads spin-wait for each other whenever anything else holds a core.
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
        pnet_batch: int = 4,
        num_threads: int | None = None,
    ) -> None:
        from facenet_pytorch import MTCNN

        if scale is not None and not 0.0 < scale <= 1.0:
            raise ValueError(f"detector.scale must be in (0, 1], got {scale}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(
                f"detector.device={device} but CUDA is not available; use detector.device=cpu"
            )
        if min_face_size < 12:
            raise ValueError(
                f"detector.min_face_size must be >= 12 (P-Net's window), got {min_face_size}"
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
        self.batch_size = max(int(batch_size), 1)
        self.pnet_batch = max(int(pnet_batch), 1)
        self.num_threads = num_threads
        mtcnn = MTCNN(
            min_face_size=min_face_size,
            thresholds=self.thresholds,
            factor=factor,
            device=self.device,
        ).eval()
        self.pnet = mtcnn.pnet.to(memory_format=torch.channels_last)
        self.rnet = mtcnn.rnet.to(memory_format=torch.channels_last)
        self.onet = mtcnn.onet.to(memory_format=torch.channels_last)

    def scale_for(self, height: int, width: int) -> float:
        """The downscale factor used for a frame of this size."""
        if self.scale is not None:
            return float(self.scale)
        return float(min(1.0, self.min_face_size / max(self.min_face_px, 1)))

    def _to_tensor(self, images: np.ndarray) -> torch.Tensor:
        """uint8 NHWC numpy -> float NCHW (channels-last memory) on the device."""
        return torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float()

    def _proposals(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: P-Net over the pyramid; square candidate boxes and their frame indices."""
        from facenet_pytorch.models.utils.detect_face import generateBoundingBox, rerec
        from torchvision.ops import batched_nms

        height, width = images.shape[1:3]
        boxes, frame_of = [torch.empty((0, 9))], [torch.empty((0,), dtype=torch.int64)]
        level = images
        for scale in pyramid_scales(height, width, self.min_face_size, self.factor):
            size = (int(width * scale + 1), int(height * scale + 1))
            # Bilinear from the previous level, as the original MTCNN resamples: each step
            # shrinks by ``factor`` only, so nothing aliases, and it is ~8x cheaper than area.
            level = np.stack([cv2.resize(im, size, interpolation=cv2.INTER_LINEAR) for im in level])
            for start in range(0, len(level), self.pnet_batch):
                reg, probs = self.pnet(
                    _normalise(self._to_tensor(level[start : start + self.pnet_batch]))
                )
                found, index = generateBoundingBox(reg, probs[:, 1], scale, self.thresholds[0])
                pick = batched_nms(found[:, :4], found[:, 4], index, 0.5)
                boxes.append(found[pick].cpu())
                frame_of.append(index[pick].cpu() + start)
        boxes, frame_of = torch.cat(boxes).to(self.device), torch.cat(frame_of).to(self.device)
        pick = batched_nms(boxes[:, :4], boxes[:, 4], frame_of, 0.7)
        boxes, frame_of = boxes[pick], frame_of[pick]
        side_w, side_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        boxes = torch.stack(
            [
                boxes[:, 0] + boxes[:, 5] * side_w,
                boxes[:, 1] + boxes[:, 6] * side_h,
                boxes[:, 2] + boxes[:, 7] * side_w,
                boxes[:, 3] + boxes[:, 8] * side_h,
                boxes[:, 4],
            ],
            dim=1,
        )
        return rerec(boxes), frame_of

    def _crops(
        self, images: np.ndarray, boxes: torch.Tensor, frame_of: torch.Tensor, size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Network inputs for ``boxes`` clamped to the frame (as facenet-pytorch's ``pad``).

        Returns the normalised ``size x size`` crops and a mask of the boxes that still have
        an area after clamping (the others are dropped, as facenet-pytorch skips them).
        """
        from torchvision.ops import roi_align

        height, width = images.shape[1:3]
        corners = boxes[:, :4].trunc()
        x1 = corners[:, 0].clamp(min=1) - 1
        y1 = corners[:, 1].clamp(min=1) - 1
        x2 = corners[:, 2].clamp(max=width)
        y2 = corners[:, 3].clamp(max=height)
        valid = (x2 > x1) & (y2 > y1)
        rois = torch.stack([x1, y1, x2, y2], dim=1)[valid].to(self.device)
        owners = frame_of[valid]
        crops = torch.empty((len(rois), 3, size, size), device=self.device)
        for frame in owners.unique().tolist():
            rows = (owners == frame).nonzero().flatten()
            image = self._to_tensor(images[frame : frame + 1])
            # aligned=True samples the pixel rectangle [x1, x2) x [y1, y2) exactly: an area
            # resize of the crop, as facenet-pytorch's interpolate(mode="area") does.
            crops[rows] = roi_align(image, [rois[rows]], size, 1.0, -1, aligned=True)
        return _normalise(crops).contiguous(memory_format=torch.channels_last), valid

    def _refine(
        self,
        images: np.ndarray,
        boxes: torch.Tensor,
        frame_of: torch.Tensor,
        stage: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2 (R-Net, 24 px) or 3 (O-Net, 48 px): rescore, regress and suppress."""
        from facenet_pytorch.models.utils.detect_face import batched_nms_numpy, bbreg, rerec
        from torchvision.ops import batched_nms

        crops, valid = self._crops(images, boxes, frame_of, 24 if stage == 2 else 48)
        boxes, frame_of = boxes[valid], frame_of[valid]
        if len(crops) == 0:
            return boxes, frame_of
        net = self.rnet if stage == 2 else self.onet
        # Chunks that fit the caches run ~2x faster than one batch of hundreds of crops.
        outputs = [net(crops[i : i + _REFINE_CHUNK]) for i in range(0, len(crops), _REFINE_CHUNK)]
        columns = [torch.cat(parts) for parts in zip(*outputs, strict=True)]
        reg, probs = columns[0], columns[-1]  # R-Net: (reg, prob); O-Net: (reg, landmarks, prob)
        score = probs[:, 1]
        passed = score > self.thresholds[stage - 1]
        boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
        frame_of, reg = frame_of[passed], reg[passed]
        if stage == 2:
            pick = batched_nms(boxes[:, :4], boxes[:, 4], frame_of, 0.7)
            return rerec(bbreg(boxes[pick], reg[pick])), frame_of[pick]
        boxes = bbreg(boxes, reg)
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], frame_of, 0.7, "Min")
        return boxes[pick], frame_of[pick]

    def _mtcnn(self, images: np.ndarray) -> list[np.ndarray]:
        """Boxes ``(k, 5)`` (x1, y1, x2, y2, prob) per frame of an equal-size uint8 batch."""
        with torch.inference_mode():
            boxes, frame_of = self._proposals(images)
            for stage in (2, 3):
                if len(boxes) == 0:
                    break
                boxes, frame_of = self._refine(images, boxes, frame_of, stage)
        boxes, frame_of = boxes.cpu().numpy(), frame_of.cpu().numpy()
        return [boxes[frame_of == i] for i in range(len(images))]

    def _detect_same_size(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        height, width = frames[0].shape[:2]
        scale = self.scale_for(height, width)
        if scale < 1.0:
            size = (max(int(round(width * scale)), 1), max(int(round(height * scale)), 1))
            small = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
            sx, sy = width / size[0], height / size[1]
        else:
            small, sx, sy = frames, 1.0, 1.0
        results = []
        for boxes in self._mtcnn(np.stack(small)):
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
                for b in boxes
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
        with torch_threads(self.num_threads):
            for indices in by_size.values():
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start : start + self.batch_size]
                    found = self._detect_same_size([frames[j] for j in chunk])
                    for i, faces in zip(chunk, found, strict=True):
                        results[i] = faces
        return results
