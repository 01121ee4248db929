"""Evaluate a trained checkpoint: ``python -m deepfake_exp.evaluate run_dir=<train run>``.

The decision threshold is chosen on the validation split and then applied, unchanged, to the
test split; test predictions never influence any choice. Writes ``metrics.json``, per-face
and per-video predictions, and plots (PNG + TensorBoard) into the evaluation directory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import hydra
import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from deepfake_exp import config as _config  # noqa: F401  (registers the schemas)
from deepfake_exp.data.datamodule import FaceDataModule, read_videos
from deepfake_exp.evaluation import plots
from deepfake_exp.evaluation.aggregate import add_missing_videos, aggregate_video_scores
from deepfake_exp.evaluation.metrics import binary_metrics
from deepfake_exp.evaluation.threshold import select_threshold
from deepfake_exp.inference import load_detector, predict_batches, resolve_checkpoint
from deepfake_exp.utils.io import write_csv, write_json
from deepfake_exp.utils.run import save_run_info

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")


def split_predictions(
    module: Any, datamodule: FaceDataModule, split: str, aggregation: str, flip_tta: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Face-level and video-level predictions of one split (face-less videos at 0.5)."""
    loader = datamodule.eval_loader(split)
    faces = loader.dataset.frame.copy()
    scored = predict_batches(module, loader, flip_tta=flip_tta, desc=f"predict {split}")
    faces["prob"] = scored.sort_values("index")["prob"].to_numpy()
    videos = aggregate_video_scores(faces[["video_id", "label", "prob"]], aggregation)
    listed = read_videos(datamodule.faces_dir)
    if listed is not None:
        videos = add_missing_videos(videos, listed[listed["split"] == split])
    return faces, videos


def _metrics(frame: pd.DataFrame, threshold: float) -> dict:
    return binary_metrics(frame["label"].to_numpy(), frame["prob"].to_numpy(), threshold)


def write_plots(
    out_dir: Path,
    faces: pd.DataFrame,
    videos: pd.DataFrame,
    metrics: dict,
    faces_root: Path,
    history_csv: Path | None,
    writer: SummaryWriter | None,
    step: int = 0,
) -> list[Path]:
    """ROC, PR, confusion matrix, score histograms, curves and error galleries (PNG + TB)."""
    figures = {
        "roc_face": plots.plot_roc(faces["label"], faces["prob"], "ROC (faces)"),
        "roc_video": plots.plot_roc(videos["label"], videos["prob"], "ROC (videos)"),
        "pr_video": plots.plot_pr(videos["label"], videos["prob"], "Precision-recall (videos)"),
        "confusion_video": plots.plot_confusion_matrix(metrics["video"]["confusion_matrix"]),
        "scores_video": plots.plot_score_histogram(
            videos["label"], videos["prob"], metrics["video"]["threshold"]
        ),
    }
    if history_csv is not None and history_csv.is_file():
        history = pd.read_csv(history_csv)
        if "epoch" in history:
            history = history.groupby("epoch").mean(numeric_only=True).reset_index()
            figures["training_curves"] = plots.plot_training_curves(history)
    false_pos, false_neg = plots.most_confident_errors(faces, metrics["face"]["threshold"], k=16)
    for name, errors in (("false_positives", false_pos), ("false_negatives", false_neg)):
        if len(errors):
            images = [
                cv2.cvtColor(cv2.imread(str(faces_root / p)), cv2.COLOR_BGR2RGB)
                for p in errors["face_path"]
            ]
            captions = [
                f"{v[-18:]}\np={p:.2f}"
                for v, p in zip(errors["video_id"], errors["prob"], strict=True)
            ]
            figures[f"gallery_{name}"] = plots.plot_gallery(
                images, captions, title=name.replace("_", " ")
            )
    written = []
    for name, figure in figures.items():
        if writer is not None:
            writer.add_image(f"eval/{name}", plots.figure_to_array(figure), step, dataformats="HWC")
        written.append(plots.save_figure(figure, out_dir / "plots" / f"{name}.png"))
    return written


def evaluate_checkpoint(
    ckpt_path: str | Path,
    out_dir: str | Path,
    faces_dir: str | Path | None = None,
    threshold: str = "f1",
    video_aggregation: str | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
    flip_tta: bool = False,
    make_plots: bool = True,
    tensorboard_dir: str | Path | None = None,
) -> dict:
    """Score val and test, choose thresholds on val, report test; returns ``metrics.json``."""
    out_dir = Path(out_dir)
    module, cfg = load_detector(ckpt_path)
    faces_dir = Path(faces_dir or cfg.data.faces_dir)
    aggregation = video_aggregation or cfg.module.video_aggregation
    datamodule = FaceDataModule(
        faces_dir,
        instantiate(cfg.augmentation),
        batch_size=batch_size,
        eval_batch_size=batch_size,
        num_workers=num_workers,
    )
    val_faces, val_videos = split_predictions(module, datamodule, "val", aggregation, flip_tta)
    test_faces, test_videos = split_predictions(module, datamodule, "test", aggregation, flip_tta)
    thresholds = {
        "face": select_threshold(val_faces["label"], val_faces["prob"], threshold),
        "video": select_threshold(val_videos["label"], val_videos["prob"], threshold),
    }
    metrics = {
        "checkpoint": str(Path(ckpt_path).resolve()),
        "faces_dir": str(faces_dir.resolve()),
        "threshold_criterion": threshold,
        "thresholds_from_val": thresholds,
        "video_aggregation": aggregation,
        "flip_tta": flip_tta,
        "val": {
            "face": _metrics(val_faces, thresholds["face"]),
            "video": _metrics(val_videos, thresholds["video"]),
        },
        "test": {
            "face": _metrics(test_faces, thresholds["face"]),
            "video": _metrics(test_videos, thresholds["video"]),
        },
    }
    write_json(out_dir / "metrics.json", metrics)
    write_csv(out_dir / "predictions_test_faces.csv", test_faces)
    write_csv(out_dir / "predictions_test_videos.csv", test_videos)
    write_csv(out_dir / "predictions_val_videos.csv", val_videos)
    writer = SummaryWriter(str(tensorboard_dir)) if tensorboard_dir else None
    if writer is not None:
        for level in ("face", "video"):
            for key in SUMMARY_KEYS:
                value = metrics["test"][level][key]
                prefix = "test/" if level == "face" else "test/video_"
                writer.add_scalar(f"{prefix}{key}", value, 0)
    if make_plots:
        history = Path(ckpt_path).resolve().parent.parent / "csv" / "metrics.csv"
        write_plots(out_dir, test_faces, test_videos, metrics["test"], faces_dir, history, writer)
    if writer is not None:
        writer.close()
    return metrics


def format_summary(metrics: dict) -> str:
    """A two-line table of the test metrics for the console."""
    rows = []
    for level in ("face", "video"):
        m = metrics["test"][level]
        values = "  ".join(f"{k}={m[k]:.4f}" for k in SUMMARY_KEYS if not np.isnan(m[k]))
        rows.append(f"test {level:5s} (n={m['n']}, threshold={m['threshold']:.3f}): {values}")
    return "\n".join(rows)


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    ckpt = resolve_checkpoint(cfg.ckpt_path, cfg.run_dir)
    out_dir = Path(cfg.paths.output_dir)
    save_run_info(out_dir, cfg)
    metrics = evaluate_checkpoint(
        ckpt,
        out_dir,
        faces_dir=cfg.faces_dir,
        threshold=cfg.threshold,
        video_aggregation=cfg.video_aggregation,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        flip_tta=cfg.flip_tta,
        make_plots=cfg.plots,
        tensorboard_dir=out_dir / "tensorboard",
    )
    log.info("\n%s\nmetrics: %s", format_summary(metrics), out_dir / "metrics.json")


if __name__ == "__main__":
    main()
