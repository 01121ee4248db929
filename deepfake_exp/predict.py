"""Score videos and images: ``python -m deepfake_exp.predict ckpt_path=... inputs=[a.mp4,dir/]``.

Each file goes through the preprocessing its checkpoint was trained with, read from the run
config saved inside the checkpoint: the same frame sampling (``extraction``), face detector
(``detector``), crop margin and size, JPEG round trip of the crop, eval transform
(``augmentation``) and face -> video aggregation (``module.video_aggregation``). A file that
cannot be read, holds no face or is not a media file gets its own status and message; the
others are still scored. Results: a console table, ``predictions.json`` (with per-frame
scores) and ``predictions.csv`` in the run directory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import hydra
import numpy as np
import pandas as pd
import torch
from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

from deepfake_exp.data.records import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from deepfake_exp.data.video import MediaReadError, read_media
from deepfake_exp.evaluate import TTAModel, tta_views
from deepfake_exp.evaluation.aggregate import AGGREGATORS
from deepfake_exp.faces.crop import crop_face
from deepfake_exp.faces.detectors import FaceDetector
from deepfake_exp.faces.extract import ExtractionConfig
from deepfake_exp.inference import load_detector, resolve_checkpoint
from deepfake_exp.utils.io import write_csv, write_json
from deepfake_exp.utils.run import save_run_info

log = logging.getLogger(__name__)

MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
OK, NO_FACE, ERROR = "ok", "no_face", "error"
CSV_COLUMNS = [
    "path", "kind", "status", "fake_prob", "prediction", "threshold", "num_faces",
    "frames_sampled", "frames_with_face", "reason", "message", "frame_scores",
]  # fmt: skip


@dataclass
class PredictSchema:
    task_name: str = "predict"
    ckpt_path: str | None = None
    run_dir: str | None = None
    inputs: list[str] = field(default_factory=list)
    threshold: float | None = None
    tta: str = "none"
    num_frames: int | None = None
    batch_size: int = 32
    device: str = "cpu"
    paths: Any = MISSING


ConfigStore.instance().store(name="predict_schema", node=PredictSchema)


class NothingScoredError(RuntimeError):
    """No input could be scored: every file was unreadable, face-less or unsupported."""


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files to score: files as given, folders replaced by the media files inside (sorted).

    A path that does not exist is kept, so it is reported as missing rather than dropped.
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
            files.extend(found)
        else:
            files.append(path)
    return files


def media_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return "image" if suffix in IMAGE_EXTENSIONS else "other"


def _run_threshold(ckpt_path: Path) -> float | None:
    """The video threshold the training run chose on val, from its ``metrics.json``."""
    metrics = ckpt_path.resolve().parent.parent / "metrics.json"
    if not metrics.is_file():
        return None
    return json.loads(metrics.read_text()).get("thresholds_from_val", {}).get("video")


class Predictor:
    """A checkpoint with the preprocessing it was trained with: files in, scores out.

    Args:
        ckpt_path: Checkpoint written by ``deepfake_exp.train``.
        device: Where the detector model runs (the face detector too, if it has a device).
        tta: Test-time augmentation policy (``none``, ``flip``, ``york``).
        threshold: P(fake) at or above which a file is called FAKE; ``None``: the run's
            val-chosen video threshold if its ``metrics.json`` exists, else 0.5.
        num_frames: Frames sampled per video; ``None``: the run's ``extraction.num_frames``.
        batch_size: Faces per forward pass.
    """

    def __init__(
        self,
        ckpt_path: str | Path,
        device: str = "cpu",
        tta: str = "none",
        threshold: float | None = None,
        num_frames: int | None = None,
        batch_size: int = 32,
    ) -> None:
        tta_views(tta)
        self.ckpt_path = Path(ckpt_path)
        module, cfg = load_detector(self.ckpt_path, map_location=device)
        self.cfg = cfg
        self.model = TTAModel(module.to(device), tta).eval()
        self.tta = tta
        self.transform = instantiate(cfg.augmentation).eval_transform()
        self.extraction: ExtractionConfig = instantiate(cfg.extraction)
        self.num_frames = int(num_frames or self.extraction.num_frames)
        self.detector: FaceDetector = instantiate(self._detector_cfg(cfg.detector, device))
        self.aggregation = cfg.module.video_aggregation
        if self.aggregation not in AGGREGATORS:
            raise ValueError(f"run config names unknown aggregation {self.aggregation!r}")
        from_run = _run_threshold(self.ckpt_path)
        if threshold is not None:
            self.threshold, self.threshold_source = float(threshold), "given"
        elif from_run is not None:
            self.threshold, self.threshold_source = float(from_run), "val (training run)"
        else:
            self.threshold, self.threshold_source = 0.5, "default 0.5"
        self.batch_size = batch_size

    @staticmethod
    def _detector_cfg(detector: DictConfig, device: str) -> DictConfig:
        detector = detector.copy()
        if "device" in detector:
            with open_dict(detector):
                detector.device = device
        return detector

    def _faces(self, frames: list[np.ndarray]) -> list[tuple[int, int, np.ndarray, Any]]:
        """``(frame position, face index, crop, detection)`` for every face kept."""
        found = []
        params = [cv2.IMWRITE_JPEG_QUALITY, self.extraction.jpeg_quality]
        for position, (frame, detections) in enumerate(
            zip(frames, self.detector.detect(frames), strict=True)
        ):
            for face_index, detection in enumerate(detections):
                crop = crop_face(
                    frame, detection.box, self.extraction.margin, self.extraction.crop_size
                )
                if self.extraction.image_format == "jpg":  # training read JPEG crops back
                    ok, encoded = cv2.imencode(
                        ".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), params
                    )
                    if ok:
                        crop = cv2.cvtColor(
                            cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
                        )
                found.append((position, face_index, crop, detection))
        return found

    @torch.no_grad()
    def _score(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        probs = []
        for start in range(0, len(crops), self.batch_size):
            batch = torch.stack([self.transform(c) for c in crops[start : start + self.batch_size]])
            probs.append(self.model.predict_proba(batch.to(self.model.device)).float().cpu())
        return torch.cat(probs).numpy().astype(np.float64)

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
            "num_faces": 0,
            "frames_sampled": 0,
            "frames_with_face": 0,
            "reason": None,
            "message": "",
            "frame_scores": [],
        }
        try:
            decoded = read_media(
                path,
                self.num_frames,
                self.extraction.strategy,
                self.extraction.every_k,
                self.extraction.seed,
            )
        except MediaReadError as error:
            return {**result, "reason": error.reason, "message": error.detail}
        except cv2.error as error:
            return {**result, "reason": "decode_error", "message": str(error).strip()}
        faces = self._faces(decoded.frames)
        result["frames_sampled"] = len(decoded.frames)
        if not faces:
            return {
                **result,
                "status": NO_FACE,
                "reason": "no_face",
                "message": f"no face found in {len(decoded.frames)} sampled frame(s); "
                "evaluation would score such a video 0.5",
            }
        probs = self._score([crop for _, _, crop, _ in faces])
        fake_prob = AGGREGATORS[self.aggregation](probs)
        frame_scores = [
            {
                "frame": int(decoded.indices[position]),
                "face_index": face_index,
                "prob": float(prob),
                "box": [round(float(v), 1) for v in detection.box],
                "detector_prob": round(float(detection.prob), 4),
            }
            for (position, face_index, _, detection), prob in zip(faces, probs, strict=True)
        ]
        return {
            **result,
            "status": OK,
            "fake_prob": float(fake_prob),
            "prediction": "FAKE" if fake_prob >= self.threshold else "REAL",
            "num_faces": len(faces),
            "frames_with_face": len({s["frame"] for s in frame_scores}),
            "message": f"{self.aggregation} of {len(faces)} face score(s)",
            "frame_scores": frame_scores,
        }

    def predict(self, inputs: Iterable[str | Path]) -> list[dict]:
        """Results for every file of ``inputs`` (folders expanded), in order."""
        results = []
        for path in expand_inputs(inputs):
            result = self.predict_file(path)
            outcome = result["fake_prob"] if result["status"] == OK else result["reason"]
            log.info("%s: %s (%s)", path, result["status"], outcome)
            results.append(result)
        return results


def results_frame(results: Sequence[dict]) -> pd.DataFrame:
    """One row per file; per-frame scores condensed to ``frame:prob`` pairs."""
    rows = []
    for result in results:
        condensed = ";".join(f"{s['frame']}:{s['prob']:.4f}" for s in result["frame_scores"])
        rows.append({**result, "frame_scores": condensed})
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def format_table(results: Sequence[dict]) -> str:
    """The console table: one line per file with its status and score."""
    frame = results_frame(results)
    frame["file"] = [Path(p).name for p in frame["path"]]
    columns = ["file", "status", "reason", "fake_prob", "prediction", "num_faces", "frames_sampled"]
    shown = frame[[*columns, "message"]].astype(object)
    return shown.where(shown.notna(), "").to_markdown(index=False)  # blank, not "nan"


def write_predictions(out_dir: str | Path, results: Sequence[dict], meta: dict) -> None:
    """``predictions.json`` (everything, per-frame scores included) and ``predictions.csv``."""
    out_dir = Path(out_dir)
    write_json(out_dir / "predictions.json", {**meta, "files": list(results)})
    write_csv(out_dir / "predictions.csv", results_frame(results))


def run_predictions(cfg: DictConfig, out_dir: str | Path) -> list[dict]:
    """Score ``cfg.inputs`` and write ``predictions.json`` / ``.csv`` into ``out_dir``."""
    if not cfg.inputs:
        raise ValueError("give the files to score: inputs=[video.mp4,image.png,folder/]")
    ckpt = resolve_checkpoint(cfg.ckpt_path, cfg.run_dir)
    predictor = Predictor(ckpt, cfg.device, cfg.tta, cfg.threshold, cfg.num_frames, cfg.batch_size)
    results = predictor.predict(cfg.inputs)
    meta = {
        "checkpoint": str(ckpt.resolve()),
        "threshold": predictor.threshold,
        "threshold_source": predictor.threshold_source,
        "video_aggregation": predictor.aggregation,
        "tta": predictor.tta,
        "num_frames": predictor.num_frames,
        "inputs": OmegaConf.to_container(cfg.inputs),
    }
    write_predictions(out_dir, results, meta)
    return results


def require_scored(results: Sequence[dict], out_dir: str | Path) -> None:
    """Fail (non-zero exit) when not one file could be scored: the run answered nothing."""
    if any(r["status"] == OK for r in results):
        return
    counts = pd.Series([r["status"] for r in results], dtype=object).value_counts().to_dict()
    raise NothingScoredError(
        f"none of {len(results)} file(s) could be scored ({counts}); see "
        f"{Path(out_dir) / 'predictions.csv'}"
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    out_dir = Path(cfg.paths.output_dir)
    save_run_info(out_dir, cfg)
    results = run_predictions(cfg, out_dir)
    print(format_table(results))
    print(f"\npredictions: {out_dir / 'predictions.json'}  {out_dir / 'predictions.csv'}")
    require_scored(results, out_dir)


if __name__ == "__main__":
    main()
