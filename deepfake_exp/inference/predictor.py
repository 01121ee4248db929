"""A checkpoint with the preprocessing it was trained with: media files in, P(fake) out.

Each file goes through the same frame sampling, face detector, crop margin and size and crop
file encoding (the JPEG round trip, :func:`deepfake_exp.utils.images.as_saved`) as the run's
faces, read from its faces folder's ``extraction.json`` (what the crops were really made with)
or, where that folder is absent or was re-extracted since, from the checkpoint's run config;
then the eval transform and the face -> video aggregation of the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from deepfake_exp import runs
from deepfake_exp.data.datamodule import MANIFEST, FaceDataModule
from deepfake_exp.data.records import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from deepfake_exp.data.video import DecodedFrames, MediaReadError, read_media, video_seed
from deepfake_exp.evaluation.aggregate import AGGREGATORS
from deepfake_exp.evaluation.threshold import select_threshold
from deepfake_exp.faces.crop import crop_face
from deepfake_exp.faces.detectors import Detection, FaceDetector
from deepfake_exp.inference.checkpoint import load_detector
from deepfake_exp.inference.crop_settings import crop_settings
from deepfake_exp.inference.safe import safe_instantiate
from deepfake_exp.inference.scoring import split_predictions
from deepfake_exp.inference.tta import TTAModel, tta_views
from deepfake_exp.utils.images import as_saved

log = logging.getLogger(__name__)

MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
OK, NO_FACE, NO_MEDIA, ERROR = "ok", "no_face", "no_media", "error"
NO_FACE_PROB = 0.5  # what evaluation scores a video without a face


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files to score: files as given, folders replaced by the media files inside (sorted).

    A path that does not exist is kept, so it is reported as missing rather than dropped; a
    folder without media is kept too (it gets a ``no_media`` row).
    """
    files: list[Path] = []
    for entry in inputs:
        path = Path(entry).expanduser()
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS
            )
            if not found:
                log.warning("%s holds no video or image file", path)
            files.extend(found or [path])
        else:
            files.append(path)
    return files


def media_kind(path: Path) -> str:
    """``folder``, ``video``, ``image`` or ``other``, for the result row."""
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return "image" if suffix in IMAGE_EXTENSIONS else "other"


@dataclass(frozen=True)
class Threshold:
    """The decision threshold and where it came from (``source``, for every output row)."""

    value: float
    source: str


def _val_threshold_with_tta(
    module: Any, cfg: DictConfig, augmentation: Any, tta: str, criterion: str, batch_size: int
) -> float | None:
    """The video threshold chosen on the run's val split scored with ``tta``.

    ``None`` when the run's faces folder is not here. Reading its manifest, the folder must
    still be the data the run was trained on (``check_data_fingerprint`` refuses otherwise).
    """
    faces_dir = OmegaConf.select(cfg, "data.faces_dir")
    if not faces_dir or not (Path(faces_dir) / MANIFEST).is_file():
        return None
    what = f"predict (val threshold with tta={tta})"
    runs.check_data_fingerprint(getattr(module, "data_fingerprint", None), faces_dir, what)
    datamodule = FaceDataModule(
        faces_dir,
        augmentation,
        batch_size=batch_size,
        num_workers=0,
        max_faces_per_video=OmegaConf.select(cfg, "data.max_faces_per_video"),
    )
    _, videos, *_ = split_predictions(module, datamodule, "val", cfg.module.video_aggregation, tta)
    return float(select_threshold(videos["label"], videos["prob"], criterion))


@dataclass
class FileFaces:
    """The sampled frames of one file and the faces found in them, cropped as in training."""

    decoded: DecodedFrames
    positions: list[int]  # index into decoded.frames of each face
    face_indices: list[int]
    crops: list[np.ndarray]
    detections: list[Detection]


class Predictor:
    """A checkpoint with the preprocessing it was trained with: files in, scores out.

    Args:
        ckpt_path: Checkpoint written by ``deepfake_exp.train``.
        device: Where the detector model runs (the face detector too, if it has a device).
        tta: Test-time augmentation policy (``none``, ``flip``, ``york``).
        threshold: P(fake) at or above which a file is called FAKE; ``None``: the run's
            val-chosen video threshold (see :meth:`_threshold`), else 0.5.
        num_frames: Frames sampled per video; ``None``: the run's ``extraction.num_frames``
            (the sample val and test videos were scored on).
        batch_size: Faces per forward pass.
        trust_checkpoint: Skip the ``_target_`` allow-list (only for one's own files).
    """

    def __init__(
        self,
        ckpt_path: str | Path,
        device: str = "cpu",
        tta: str = "none",
        threshold: float | None = None,
        num_frames: int | None = None,
        batch_size: int = 32,
        trust_checkpoint: bool = False,
    ) -> None:
        tta_views(tta)  # an unknown policy fails before the checkpoint is read
        self.ckpt_path = Path(ckpt_path)
        self.tta = tta
        module, cfg = load_detector(self.ckpt_path, device, trust_checkpoint)
        self.cfg = cfg
        self.module = module.to(device)
        self.model = TTAModel(self.module, tta).eval()
        self.batch_size = batch_size
        augmentation = safe_instantiate(
            cfg.augmentation, trust=trust_checkpoint, key="augmentation"
        )
        self.transform = augmentation.eval_transform()
        crops = crop_settings(cfg, module.data_fingerprint)
        self.extraction, self.crop_settings_source = crops.extraction, crops.source
        self.num_frames = int(num_frames or self.extraction.num_frames)
        detector = OmegaConf.create(dict(crops.detector))
        same_kind = detector.get("_target_") == cfg.detector.get("_target_")
        if "device" in detector or (same_kind and "device" in cfg.detector):
            detector.device = device  # a runtime key: extraction.json leaves it out
        self.detector: FaceDetector = safe_instantiate(
            detector, trust=trust_checkpoint, key="detector", what=crops.source
        )
        self.aggregation = cfg.module.video_aggregation
        if self.aggregation not in AGGREGATORS:
            raise ValueError(f"run config names unknown aggregation {self.aggregation!r}")
        chosen = self._threshold(threshold, augmentation)
        self.threshold, self.threshold_source = chosen.value, chosen.source

    def _threshold(self, given: float | None, augmentation: Any) -> Threshold:
        """``given``; else the run's val threshold if chosen with this TTA; else one chosen now
        on the run's val split with this TTA; else the run's, flagged as from another TTA."""
        if given is not None:
            return Threshold(float(given), "given")
        run = runs.run_dir_of(self.ckpt_path).val_threshold()
        if run is None:
            return Threshold(0.5, "default 0.5 (the run has no val threshold)")
        if run.tta == self.tta:
            return Threshold(run.video, f"val, tta={run.tta} (training run)")
        criterion = run.criterion or self.cfg.get("threshold", "f1")
        value = _val_threshold_with_tta(
            self.module, self.cfg, augmentation, self.tta, criterion, self.batch_size
        )
        if value is not None:
            return Threshold(value, f"val, tta={self.tta} (chosen now on the run's val split)")
        log.warning(
            "tta=%s but the run's val threshold was chosen with tta=%s and its faces folder "
            "is not here to choose another: the threshold does not match the scores' TTA",
            self.tta,
            run.tta,
        )
        return Threshold(run.video, f"val, tta={run.tta} (not this tta={self.tta})")

    def _decode(self, path: Path) -> DecodedFrames:
        seed = self.extraction.seed
        if self.extraction.strategy == "random":  # as preprocessing: hashed with the file's id
            seed = video_seed(seed, path.stem)
        return read_media(
            path, self.num_frames, self.extraction.strategy, self.extraction.every_k, seed
        )

    def _crop(self, frame: np.ndarray, detection: Detection) -> np.ndarray:
        """The crop as training read it: cut, resized, and through its file's encoding."""
        extraction = self.extraction
        crop = crop_face(frame, detection.box, extraction.margin, extraction.crop_size)
        return as_saved(crop, extraction.image_format, extraction.jpeg_quality)

    def faces(self, path: str | Path) -> FileFaces:
        """Decode ``path`` and crop every face kept, as preprocessing does.

        Raises:
            MediaReadError: the file is missing, unreadable or not a video or image.
        """
        decoded = self._decode(Path(path))
        found = FileFaces(decoded, [], [], [], [])
        for position, (frame, detections) in enumerate(
            zip(decoded.frames, self.detector.detect(decoded.frames), strict=True)
        ):
            for face_index, detection in enumerate(detections):
                found.positions.append(position)
                found.face_indices.append(face_index)
                found.crops.append(self._crop(frame, detection))
                found.detections.append(detection)
        return found

    @torch.no_grad()
    def _score(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        probs = []
        for start in range(0, len(crops), self.batch_size):
            batch = torch.stack([self.transform(c) for c in crops[start : start + self.batch_size]])
            probs.append(self.model(batch.to(self.model.device)).float().cpu())
        return torch.cat(probs).numpy().astype(np.float64)

    def _called(self, fake_prob: float) -> str:
        return "FAKE" if fake_prob >= self.threshold else "REAL"

    def predict_file(self, path: str | Path) -> dict:
        """One file's result: status, P(fake), faces found and per-frame scores."""
        path = Path(path)
        result: dict[str, Any] = {
            "path": str(path),
            "kind": media_kind(path),
            "status": ERROR,
            "fake_prob": None,
            "prediction": None,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "num_faces": 0,
            "frames_sampled": 0,
            "frames_expected": 0,
            "truncated": False,
            "frames_with_face": 0,
            "reason": None,
            "message": "",
            "frame_scores": [],
        }
        if path.is_dir():
            message = f"{path} holds no video or image file ({', '.join(sorted(MEDIA_EXTENSIONS))})"
            return {**result, "status": NO_MEDIA, "reason": "no_media", "message": message}
        try:
            found = self.faces(path)
        except MediaReadError as error:
            return {**result, "reason": error.reason, "message": error.detail}
        except cv2.error as error:
            return {**result, "reason": "decode_error", "message": str(error).strip()}
        decoded = found.decoded
        result["frames_sampled"] = len(decoded.frames)
        result["frames_expected"] = getattr(decoded, "expected_frames", None) or len(decoded.frames)
        result["truncated"] = bool(getattr(decoded, "truncated", False))
        if not found.crops:
            return {
                **result,
                "status": NO_FACE,
                "fake_prob": NO_FACE_PROB,
                "prediction": self._called(NO_FACE_PROB),
                "reason": "no_face",
                "message": f"no face found in {len(decoded.frames)} sampled frame(s): scored "
                f"{NO_FACE_PROB}, as evaluation scores such a video",
            }
        probs = self._score(found.crops)
        fake_prob = float(AGGREGATORS[self.aggregation](probs))
        frame_scores = [
            {
                "frame": int(decoded.indices[position]),
                "face_index": face_index,
                "prob": float(prob),
                "box": [round(float(v), 1) for v in detection.box],
                "detector_prob": round(float(detection.prob), 4),
            }
            for position, face_index, detection, prob in zip(
                found.positions, found.face_indices, found.detections, probs, strict=True
            )
        ]
        return {
            **result,
            "status": OK,
            "fake_prob": fake_prob,
            "prediction": self._called(fake_prob),
            "num_faces": len(found.crops),
            "frames_with_face": len({s["frame"] for s in frame_scores}),
            "message": f"{self.aggregation} of {len(found.crops)} face score(s)",
            "frame_scores": frame_scores,
        }

    def predict(self, inputs: Iterable[str | Path]) -> list[dict]:
        """Results for every input (folders expanded; one row each, whatever happened)."""
        results = []
        for path in expand_inputs(inputs):
            result = self.predict_file(path)
            outcome = result["fake_prob"] if result["status"] == OK else result["reason"]
            log.info("%s: %s (%s)", path, result["status"], outcome)
            results.append(result)
        return results
