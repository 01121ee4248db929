"""Evaluate a trained checkpoint: ``python -m deepfake_exp.evaluate run_dir=<train run>``.

The decision threshold is chosen on the validation split and then applied, unchanged, to the
test split and to every cross-dataset set; test predictions never influence any choice. The
same holds for the calibration temperature (fitted on val, reported on test). Every test
metric carries a 95% bootstrap interval resampled over groups (identities). Videos without a
face score 0.5; failed inputs (missing, corrupt, outside-root files) are left out and counted.
Writes ``metrics.json``, per-face and per-video predictions, ``failed_videos.csv``,
``cross_dataset.{csv,md}`` when other datasets are given, and plots (PNG + TensorBoard) into
the evaluation directory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import hydra
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from omegaconf import DictConfig
from sklearn.metrics import roc_auc_score, roc_curve
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from deepfake_exp import config as _config  # noqa: F401  (registers the schemas)
from deepfake_exp.data.datamodule import (
    FaceDataModule,
    FaceDataset,
    cap_faces_per_video,
    read_manifest,
    read_videos,
    select_sample,
)
from deepfake_exp.data.records import LABEL_NAMES
from deepfake_exp.evaluation import plots
from deepfake_exp.evaluation.aggregate import (
    add_missing_videos,
    aggregate_video_scores,
    failure_counts,
    read_video_list,
)
from deepfake_exp.evaluation.bootstrap import CI_METRICS, DEFAULT_LEVEL, bootstrap_metrics
from deepfake_exp.evaluation.calibration import apply_temperature, fit_temperature
from deepfake_exp.evaluation.gradcam import denormalise, explain, overlay
from deepfake_exp.evaluation.metrics import (
    binary_metrics,
    clipped_log_loss,
    expected_calibration_error,
    has_both_classes,
)
from deepfake_exp.evaluation.threshold import select_threshold
from deepfake_exp.inference import (
    load_detector,
    predict_batches,
    resolve_checkpoint,
    safe_instantiate,
)
from deepfake_exp.runs import check_data_fingerprint
from deepfake_exp.utils.io import atomic_write, write_csv, write_json
from deepfake_exp.utils.run import save_run_info

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
SUMMARY_NAMES = {
    "roc_auc": "ROC-AUC",
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "log_loss": "log-loss",
}

# --------------------------------------------------------------------------------------------
# Test-time augmentation
# --------------------------------------------------------------------------------------------

View = Callable[[Tensor, Tensor], Tensor]  # (normalised images, per-channel black) -> images


def identity_view(images: Tensor, black: Tensor) -> Tensor:
    """The image as the eval transform made it."""
    return images


def hflip_view(images: Tensor, black: Tensor) -> Tensor:
    """The horizontal mirror: a face is (nearly) symmetric, its artefacts need not be."""
    return torch.flip(images, dims=[3])


def scale_view(images: Tensor, black: Tensor, scale: float = 1.0, flip: bool = False) -> Tensor:
    """Zoom about the centre by ``scale`` (> 1 in, < 1 out), optionally mirrored.

    Zooming out pads with black pixels, as the York study's ``ShiftScaleRotate`` /
    ``PadIfNeeded`` with ``BORDER_CONSTANT`` did; in normalised space black is
    ``-mean / std``, so the padding is done on ``images - black``, where it is zero.
    """
    if flip:
        images = hflip_view(images, black)
    if scale == 1.0:
        return images
    theta = torch.zeros(len(images), 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    shifted = images - black.view(1, -1, 1, 1)
    zoomed = F.grid_sample(
        shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return zoomed + black.view(1, -1, 1, 1)


# The York study names test-time augmentation as an ingredient but only lists its random train
# pipeline (ShiftScaleRotate with scale_limit=0.2, flips). ``york`` is its deterministic
# counterpart: the face and its mirror, each at scales 0.9 / 1.0 / 1.1 (half the train range
# either way), six views averaged.
TTA_POLICIES: dict[str, tuple[View, ...]] = {
    "none": (identity_view,),
    "flip": (identity_view, hflip_view),
    "york": tuple(
        partial(scale_view, scale=scale, flip=flip)
        for flip in (False, True)
        for scale in (1.0, 0.9, 1.1)
    ),
}


def tta_views(name: str) -> tuple[View, ...]:
    """The views of a TTA policy, with a clear error for an unknown name."""
    if name not in TTA_POLICIES:
        raise ValueError(f"unknown tta {name!r}; choose one of {sorted(TTA_POLICIES)}")
    return TTA_POLICIES[name]


class TTAModel(nn.Module):
    """A detector whose ``predict_proba`` averages P(fake) over the views of a TTA policy.

    It quacks like the detector where inference needs it (``predict_proba``, ``device``,
    ``eval``), so :func:`deepfake_exp.inference.predict_batches` runs it unchanged.

    Args:
        module: The trained detector (``predict_proba`` and a ``backbone`` with ``mean``/``std``).
        tta: Key of :data:`TTA_POLICIES`.
    """

    def __init__(self, module: nn.Module, tta: str = "none") -> None:
        super().__init__()
        self.module = module
        self.tta = tta
        self.views = tta_views(tta)
        device = next(module.parameters()).device
        mean = torch.as_tensor(module.backbone.mean, dtype=torch.float32, device=device)
        std = torch.as_tensor(module.backbone.std, dtype=torch.float32, device=device)
        self.register_buffer("black", -mean / std, persistent=False)

    @property
    def device(self) -> torch.device:
        return self.black.device

    def forward(self, images: Tensor) -> Tensor:
        return self.predict_proba(images)

    def predict_proba(self, images: Tensor) -> Tensor:
        black = self.black.to(images.dtype)
        probs = [self.module.predict_proba(view(images, black)) for view in self.views]
        return torch.stack(probs).mean(dim=0)


# --------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------


def predict_faces(
    module: nn.Module,
    faces: pd.DataFrame,
    faces_root: str | Path,
    transform: Callable[[np.ndarray], Tensor],
    tta: str = "none",
    batch_size: int = 64,
    num_workers: int = 2,
    desc: str = "predict",
) -> pd.DataFrame:
    """``faces`` (manifest rows) with a ``prob`` column: P(fake) of each crop."""
    faces = faces.reset_index(drop=True).copy()
    dataset = FaceDataset(faces, faces_root, transform)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    scored = predict_batches(TTAModel(module, tta), loader, desc=desc)
    faces["prob"] = scored.sort_values("index")["prob"].to_numpy(dtype=np.float64)
    return faces


def video_predictions(
    faces: pd.DataFrame, aggregation: str, listed: pd.DataFrame | None
) -> pd.DataFrame:
    """Face scores -> one row per video (with its ``group``), plus face-less videos at 0.5.

    ``listed`` holds the videos that are scored (see :func:`listed_videos`): failed inputs
    are not in it, so they never receive the 0.5 of a face-less video.
    """
    columns = ["video_id", "label", "prob", *(c for c in ("group", "source") if c in faces)]
    videos = aggregate_video_scores(faces[columns], aggregation)
    return videos if listed is None else add_missing_videos(videos, listed)


def listed_videos(
    faces_dir: str | Path, split: str | None = None
) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """``(scored, failed)`` videos of a faces folder (one split, or all).

    Scored: extracted videos and those without a face (0.5). Failed: missing, corrupt,
    outside-root or unprocessed files, excluded from the metrics and counted by reason.
    """
    scored, failed = read_video_list(faces_dir)
    if split is not None:
        scored = None if scored is None else scored[scored["split"] == split]
        failed = failed[failed["split"] == split] if "split" in failed else failed
    return scored, failed


def split_predictions(
    module: Any, datamodule: FaceDataModule, split: str, aggregation: str, tta: str = "none"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Face, video (face-less videos at 0.5) and failed-video frames of one split."""
    faces = predict_faces(
        module,
        datamodule.split_frame(split),
        datamodule.faces_dir,
        datamodule.augmentation.eval_transform(),
        tta=tta,
        batch_size=datamodule.eval_batch_size,
        num_workers=datamodule.num_workers,
        desc=f"predict {split}",
    )
    listed, failed = listed_videos(datamodule.faces_dir, split)
    return faces, video_predictions(faces, aggregation, listed), failed


# --------------------------------------------------------------------------------------------
# Metrics with bootstrap intervals
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapSettings:
    """How the confidence interval of every test metric is resampled (over groups)."""

    n_resamples: int = 1000
    seed: int = 0
    level: float = DEFAULT_LEVEL

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "level": self.level,
            "unit": "group",
        }


def bootstrap_groups(frame: pd.DataFrame) -> np.ndarray:
    """The resampling unit of each row: its group (identity), else its own video."""
    videos = frame["video_id"].astype(str)
    if "group" not in frame:
        return videos.to_numpy()
    group = frame["group"].astype(object)
    return group.where(group.notna(), videos).astype(str).to_numpy()


def _metrics(
    frame: pd.DataFrame, threshold: float, bootstrap: BootstrapSettings | None = None
) -> dict:
    """``binary_metrics`` of a frame, plus ``<metric>_ci: [low, high]`` when bootstrapped.

    An interval is ``None`` when no resample defines the metric (e.g. one class only).
    """
    labels, probs = frame["label"].to_numpy(), frame["prob"].to_numpy()
    block = binary_metrics(labels, probs, threshold)
    if "num_faces" in frame:
        block["n_no_face"] = int((frame["num_faces"] == 0).sum())
    if bootstrap is None:
        return block
    groups = bootstrap_groups(frame)
    intervals = bootstrap_metrics(
        labels,
        probs,
        groups,
        CI_METRICS,
        bootstrap.n_resamples,
        bootstrap.seed,
        bootstrap.level,
        threshold=threshold,
    )
    for name, interval in intervals.items():
        defined = interval["low"] is not None
        block[f"{name}_ci"] = [interval["low"], interval["high"]] if defined else None
    block["n_groups"] = int(np.unique(groups).size)
    return block


def split_block(
    faces: pd.DataFrame,
    videos: pd.DataFrame,
    failed: pd.DataFrame,
    thresholds: dict[str, float],
    bootstrap: BootstrapSettings | None = None,
) -> dict:
    """One split's ``face`` and ``video`` metrics and its failed inputs (``n_failed``)."""
    return {
        "face": _metrics(faces, thresholds["face"], bootstrap),
        "video": _metrics(videos, thresholds["video"], bootstrap),
        **failure_counts(failed),
    }


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def calibration_block(val: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    """Temperature fitted on ``val`` probabilities, log-loss and ECE on ``test`` before/after."""
    temperature = fit_temperature(val["prob"], val["label"], input_kind="prob")
    after = apply_temperature(test["prob"], temperature)
    return {
        "temperature": temperature,
        "test_log_loss_before": clipped_log_loss(test["label"], test["prob"]),
        "test_log_loss_after": clipped_log_loss(test["label"], after),
        "test_ece_before": expected_calibration_error(test["label"], test["prob"]),
        "test_ece_after": expected_calibration_error(test["label"], after),
    }


def calibration_report(
    val_faces: pd.DataFrame,
    val_videos: pd.DataFrame,
    test_faces: pd.DataFrame,
    test_videos: pd.DataFrame,
) -> dict:
    """Temperature scaling per level, fitted on val, judged on test.

    The top-level keys are the video level (the DFDC score is a video log-loss); ``face``
    holds the same block for face scores. Each level gets its own temperature because
    averaging faces already softens video scores.
    """
    return {
        "level": "video",
        **calibration_block(val_videos, test_videos),
        "face": calibration_block(val_faces, test_faces),
    }


# --------------------------------------------------------------------------------------------
# Cross-dataset evaluation
# --------------------------------------------------------------------------------------------

CROSS_COLUMNS = [
    "dataset", "faces_dir", "splits", "videos", "videos_without_face", "videos_failed",
    "videos_seen_excluded", "faces", "threshold",
    "accuracy", "precision", "recall", "f1", "roc_auc", "roc_auc_ci", "log_loss",
    "face_accuracy", "face_roc_auc", "face_log_loss",
]  # fmt: skip
SEEN_SPLITS = ("train", "val")


def resolve_faces_dir(name_or_path: str | Path, faces_root: str | Path) -> Path:
    """A preprocessed faces folder from a dataset name (under ``faces_root``) or a path."""
    candidates = [Path(name_or_path), Path(faces_root) / str(name_or_path)]
    for candidate in candidates:
        if (candidate / "manifest.csv").is_file():
            return candidate
    tried = ", ".join(str(c.resolve()) for c in candidates)
    raise FileNotFoundError(
        f"eval dataset {name_or_path!r}: no manifest.csv in {tried}; preprocess it first with "
        f"`python -m deepfake_exp.preprocess dataset=<option> dataset.name={Path(name_or_path).name}`"
    )


def cross_dataset_row(
    name: str,
    faces_dir: Path,
    splits: str,
    faces: pd.DataFrame,
    videos: pd.DataFrame,
    thresholds: dict[str, float],
    failed: pd.DataFrame | None = None,
    seen_excluded: int = 0,
    bootstrap: BootstrapSettings | None = None,
) -> dict:
    """One line of the generalization table: video metrics first, a few face metrics after."""
    video = _metrics(videos, thresholds["video"], bootstrap)
    face = _metrics(faces, thresholds["face"])
    return {
        "dataset": name,
        "faces_dir": str(faces_dir.resolve()),
        "splits": splits,
        "videos": video["n"],
        "videos_without_face": int((videos["num_faces"] == 0).sum()),
        "videos_failed": 0 if failed is None else len(failed),
        "videos_seen_excluded": int(seen_excluded),
        "faces": face["n"],
        "threshold": thresholds["video"],
        **{key: video[key] for key in SUMMARY_KEYS},
        "roc_auc_ci": video.get("roc_auc_ci"),
        **{f"face_{key}": face[key] for key in ("accuracy", "roc_auc", "log_loss")},
    }


def _video_keys(frame: pd.DataFrame, by_source: bool) -> pd.Series:
    """``source/video_id`` (or the bare ``video_id``) of each row, to match videos across folders."""
    video_ids = frame["video_id"].astype(str)
    if not by_source:
        return video_ids
    return frame["source"].astype(str) + "\x00" + video_ids


def seen_videos(faces_dir: Path, splits: Sequence[str] = SEEN_SPLITS) -> pd.DataFrame:
    """``video_id`` (and ``source``) of the videos a run trained or selected on.

    Read from the training faces folder's video list (every video, extracted or not) or, for
    older folders, its manifest.
    """
    videos = read_videos(faces_dir)
    table = videos if videos is not None else read_manifest(faces_dir)
    columns = [c for c in ("source", "video_id") if c in table]
    return table.loc[table["split"].isin(splits), columns].drop_duplicates()


def drop_seen(frame: pd.DataFrame, seen: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` whose video is not among ``seen``.

    Two folders may hold crops of the same source videos (York's and Emory's faces of one
    DFDC video): a video is "unseen" by what it is (``source``, ``video_id``), not by the
    folder its faces are in. Without a ``source`` column on either side, ``video_id`` alone
    decides (the cautious choice).
    """
    by_source = "source" in frame and "source" in seen
    return frame[~_video_keys(frame, by_source).isin(set(_video_keys(seen, by_source)))]


def external_predictions(
    module: nn.Module,
    faces_dir: Path,
    transform: Callable[[np.ndarray], Tensor],
    aggregation: str,
    tta: str,
    batch_size: int,
    num_workers: int,
    seen: pd.DataFrame | None = None,
    max_faces_per_video: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """Another dataset's videos the run never saw, whatever their split there.

    Returns face and video predictions, the failed inputs, and how many videos were left out
    because the run trained or selected on them (``seen``). Faces per video are capped as in
    training (``max_faces_per_video``).
    """
    # the label-independent eval sample: per-class frame counts balance training only
    manifest = cap_faces_per_video(
        select_sample(read_manifest(faces_dir), train=False), max_faces_per_video
    )
    listed, failed = listed_videos(faces_dir)
    tables = [t for t in (manifest, listed, failed) if t is not None]
    known = pd.concat([t[[c for c in ("source", "video_id") if c in t]] for t in tables])
    excluded = 0
    if seen is not None:
        excluded = known["video_id"].nunique() - drop_seen(known, seen)["video_id"].nunique()
        manifest = drop_seen(manifest, seen)
        listed = None if listed is None else drop_seen(listed, seen)
        failed = drop_seen(failed, seen)
    if manifest.empty:  # nothing unseen with a face: no row
        return manifest, manifest, failed, int(excluded)
    faces = predict_faces(
        module,
        manifest,
        faces_dir,
        transform,
        tta=tta,
        batch_size=batch_size,
        num_workers=num_workers,
        desc=f"predict {faces_dir.name}",
    )
    return faces, video_predictions(faces, aggregation, listed), failed, int(excluded)


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A GitHub Markdown table (via ``tabulate``) for reports."""
    return frame.to_markdown(index=False, floatfmt=floatfmt)


def write_table(frame: pd.DataFrame, csv_path: Path, title: str, note: str = "") -> Path:
    """The same table as CSV and as Markdown next to it (``.md``)."""
    write_csv(csv_path, frame)
    text = f"# {title}\n\n{note}\n\n{markdown_table(frame)}\n" if note else markdown_table(frame)
    return atomic_write(csv_path.with_suffix(".md"), lambda p: p.write_text(text))


def plot_roc_overlay(curves: dict[str, tuple[Any, Any]], title: str = "ROC curves") -> Figure:
    """One ROC curve per named ``(labels, probs)`` pair on shared axes (runs or datasets)."""
    figure = plots.new_figure(6.0, 5.0)
    axes = figure.add_subplot()
    for name, (labels, probs) in curves.items():
        labels = np.asarray(labels)
        if not has_both_classes(labels):
            axes.plot([], [], ls=":", label=f"{name} (one class only)")
            continue
        fpr, tpr, _ = roc_curve(labels, probs)
        axes.plot(fpr, tpr, lw=2, label=f"{name} (AUC = {roc_auc_score(labels, probs):.3f})")
    axes.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance")
    axes.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="False positive rate (real called fake)",
        ylabel="True positive rate (fake caught)",
        title=title,
    )
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    return figure


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def sample_faces(faces: pd.DataFrame, k: int, seed: int = 0) -> pd.DataFrame:
    """A seeded sample of ``k`` faces, half real and half fake, from as many videos as possible."""
    if k <= 0 or faces.empty:
        return faces.iloc[:0]
    picked = []
    groups = [g for _, g in faces.groupby("label", sort=True)]
    for i, group in enumerate(groups):
        share = k // len(groups) + (1 if i < k % len(groups) else 0)
        shuffled = group.sample(frac=1.0, random_state=seed)
        repeat = shuffled.groupby("video_id", sort=False).cumcount()  # 0: a video's first face
        picked.append(shuffled.iloc[np.argsort(repeat.to_numpy(), kind="stable")[:share]])
    return pd.concat(picked)


def explanation_figure(
    module: nn.Module,
    faces: pd.DataFrame,
    faces_root: str | Path,
    transform: Callable[[np.ndarray], Tensor],
    k: int = 8,
    seed: int = 0,
) -> Figure | None:
    """Grad-CAM (CNN) or attention-rollout (ViT) overlays for a sample of scored faces.

    Each face is shown as the model saw it, next to its heat map of evidence for FAKE, with
    its true label and P(fake). ``None`` when there is nothing to show.
    """
    sample = sample_faces(faces, k, seed)
    if sample.empty:
        return None
    dataset = FaceDataset(sample, faces_root, transform)
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    backbone = module.backbone
    maps, method = explain(module, backbone, images.to(module.device))
    rgb = denormalise(images, backbone.mean, backbone.std)
    shown, captions = [], []
    for image, heat, label, prob in zip(rgb, maps, sample["label"], sample["prob"], strict=True):
        shown += [(image * 255).round().astype(np.uint8), overlay(image, heat)]
        captions += [f"{LABEL_NAMES[int(label)]}  p={prob:.2f}", method]
    what = "evidence for FAKE" if method == "Grad-CAM" else "where the CLS token looks"
    return plots.plot_gallery(shown, captions, ncols=4, title=f"{method}: {what}")


def write_plots(
    out_dir: Path,
    faces: pd.DataFrame,
    videos: pd.DataFrame,
    metrics: dict,
    faces_root: Path,
    history_csv: Path | None,
    writer: SummaryWriter | None,
    step: int = 0,
    extra: dict[str, Figure] | None = None,
) -> list[Path]:
    """ROC, PR, confusion matrix, score histograms, curves, error galleries and ``extra``."""
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
    figures.update(extra or {})
    written = []
    for name, figure in figures.items():
        if writer is not None:
            writer.add_image(f"eval/{name}", plots.figure_to_array(figure), step, dataformats="HWC")
        written.append(plots.save_figure(figure, out_dir / "plots" / f"{name}.png"))
    return written


# --------------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------------


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
    *,
    tta: str | None = None,
    eval_datasets: Sequence[str] = (),
    faces_root: str | Path | None = None,
    calibrate: bool = True,
    gradcam_faces: int = 8,
    bootstrap: BootstrapSettings | None = None,
    trust_checkpoint: bool = False,
) -> dict:
    """Score val and test, choose thresholds on val, report test; returns ``metrics.json``.

    Faces per video are capped as in training (the run's ``data.max_faces_per_video``), so the
    checkpoint is judged on the same faces per video it was selected with. Every test metric
    carries a bootstrap interval over groups (``<metric>_ci``). Failed inputs (missing,
    corrupt, outside-root files) are counted per split (``n_failed``, ``failed_reasons``) and
    left out; only videos without a face are scored 0.5. On the run's own faces folder, the
    checkpoint's data fingerprint must match it (:func:`deepfake_exp.runs.check_data_fingerprint`).

    Args:
        ckpt_path: A checkpoint written by ``deepfake_exp.train``.
        out_dir: Where metrics, predictions and plots go.
        faces_dir: Faces folder to evaluate (default: the one the run trained on).
        threshold: Criterion choosing the threshold on val (``fixed``, ``f1``, ``eer``...).
        video_aggregation: Face -> video reduction (default: the training run's).
        batch_size: Inference batch size.
        num_workers: DataLoader workers.
        flip_tta: Kept for old callers: the same as ``tta="flip"``.
        make_plots: Write PNG figures (and TensorBoard images).
        tensorboard_dir: Where to log scalars and figures (``None``: no TensorBoard).
        tta: Test-time augmentation, a key of :data:`TTA_POLICIES`.
        eval_datasets: Other preprocessed datasets (names under ``faces_root`` or paths);
            each is scored on the videos the run never saw, with the val-chosen thresholds.
        faces_root: Folder of preprocessed datasets (default: the parent of ``faces_dir``).
        calibrate: Fit a temperature on val and report test log-loss/ECE before and after.
        gradcam_faces: Test faces in the Grad-CAM / attention-rollout gallery (0: none).
        bootstrap: Resamples, seed and level of the intervals (default 1000, 0, 0.95).
        trust_checkpoint: Rebuild without the target allow-list (only for one's own files).
    """
    out_dir = Path(out_dir)
    tta = tta or ("flip" if flip_tta else "none")
    tta_views(tta)
    bootstrap = bootstrap or BootstrapSettings()
    module, cfg = load_detector(ckpt_path, trust_checkpoint=trust_checkpoint)
    trained_on = Path(cfg.data.faces_dir)
    faces_dir = Path(faces_dir or trained_on)
    data_check = check_run_data(module, faces_dir, trained_on)
    faces_root = Path(faces_root) if faces_root else faces_dir.parent
    aggregation = video_aggregation or cfg.module.video_aggregation
    datamodule = FaceDataModule(
        faces_dir,
        safe_instantiate(cfg.augmentation, trust=trust_checkpoint, key="augmentation"),
        batch_size=batch_size,
        eval_batch_size=batch_size,
        num_workers=num_workers,
        max_faces_per_video=cfg.data.get("max_faces_per_video"),
    )
    val_faces, val_videos, val_failed = split_predictions(
        module, datamodule, "val", aggregation, tta
    )
    test_faces, test_videos, test_failed = split_predictions(
        module, datamodule, "test", aggregation, tta
    )
    thresholds = {
        "face": select_threshold(val_faces["label"], val_faces["prob"], threshold),
        "video": select_threshold(val_videos["label"], val_videos["prob"], threshold),
    }
    metrics = {
        "checkpoint": str(Path(ckpt_path).resolve()),
        "faces_dir": str(faces_dir.resolve()),
        "data_check": data_check,
        "threshold_criterion": threshold,
        "thresholds_from_val": thresholds,
        "video_aggregation": aggregation,
        "max_faces_per_video": datamodule.max_faces_per_video,
        "tta": tta,
        "bootstrap": bootstrap.as_dict(),
        "val": split_block(val_faces, val_videos, val_failed, thresholds),
        "test": split_block(test_faces, test_videos, test_failed, thresholds, bootstrap),
    }
    if calibrate:
        metrics["calibration"] = calibration_report(val_faces, val_videos, test_faces, test_videos)
        test_videos = test_videos.assign(
            prob_calibrated=apply_temperature(
                test_videos["prob"], metrics["calibration"]["temperature"]
            )
        )
    cross_curves: dict[str, tuple[Any, Any]] = {}
    if eval_datasets:
        metrics["cross_dataset"] = cross_dataset_evaluation(
            module,
            datamodule,
            eval_datasets,
            faces_root,
            thresholds,
            (test_faces, test_videos, test_failed),
            aggregation,
            tta,
            out_dir,
            cross_curves,
            seen=seen_videos(trained_on if (trained_on / "manifest.csv").is_file() else faces_dir),
            bootstrap=bootstrap,
        )
    write_json(out_dir / "metrics.json", metrics)
    write_csv(out_dir / "predictions_test_faces.csv", test_faces)
    write_csv(out_dir / "predictions_test_videos.csv", test_videos)
    write_csv(out_dir / "predictions_val_faces.csv", val_faces)
    write_csv(out_dir / "predictions_val_videos.csv", val_videos)
    write_csv(out_dir / "failed_videos.csv", pd.concat([val_failed, test_failed]))
    writer = SummaryWriter(str(tensorboard_dir)) if tensorboard_dir else None
    if writer is not None:
        _log_scalars(writer, metrics)
    if make_plots:
        extra = _extra_figures(
            module, datamodule, test_faces, test_videos, metrics, cross_curves, gradcam_faces
        )
        history = Path(ckpt_path).resolve().parent.parent / "csv" / "metrics.csv"
        write_plots(
            out_dir,
            test_faces,
            test_videos,
            metrics["test"],
            faces_dir,
            history,
            writer,
            extra=extra,
        )
    if writer is not None:
        writer.close()
    return metrics


def check_run_data(module: Any, faces_dir: Path, trained_on: Path) -> str:
    """Refuse to score the run's own faces folder if it is no longer the data it trained on.

    Another folder (``faces_dir=`` elsewhere, cross-dataset sets) is other data by design and
    is not checked. Returns what was done, for ``metrics.json``.
    """
    if faces_dir.resolve() != trained_on.resolve():
        log.info(
            "evaluating %s, not the run's faces %s: no data fingerprint check",
            faces_dir,
            trained_on,
        )
        return "other_faces_dir"
    stored = getattr(module, "data_fingerprint", None)  # attached by load_detector
    check_data_fingerprint(stored, faces_dir, what="evaluate")  # raises DataMismatchError
    return "no_fingerprint" if stored is None else "match"


def cross_dataset_evaluation(
    module: nn.Module,
    datamodule: FaceDataModule,
    eval_datasets: Sequence[str],
    faces_root: Path,
    thresholds: dict[str, float],
    in_domain: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    aggregation: str,
    tta: str,
    out_dir: Path,
    curves: dict[str, tuple[Any, Any]] | None = None,
    seen: pd.DataFrame | None = None,
    bootstrap: BootstrapSettings | None = None,
) -> list[dict]:
    """The generalization table: in-domain test first, then every other dataset's unseen videos.

    ``seen`` (``source``, ``video_id``) lists the videos the run trained or selected on; they
    are left out of every other dataset, whichever folder their crops are in. Writes
    ``cross_dataset.csv`` / ``.md`` and each dataset's video predictions under
    ``cross_dataset/``; fills ``curves`` (name -> labels, probs) for a ROC overlay.
    """
    own = datamodule.faces_dir.resolve()
    name = f"{own.name} (in-domain test)"
    faces, videos, failed = in_domain
    rows = [cross_dataset_row(name, own, "test", faces, videos, thresholds, failed, 0, bootstrap)]
    curves = {} if curves is None else curves
    curves[name] = (in_domain[1]["label"], in_domain[1]["prob"])
    transform = datamodule.augmentation.eval_transform()
    for entry in eval_datasets:
        faces_dir = resolve_faces_dir(entry, faces_root)
        if faces_dir.resolve() == own:
            log.info("eval dataset %s is the training set: its test split is row 1", entry)
            continue
        faces, videos, failed, excluded = external_predictions(
            module,
            faces_dir,
            transform,
            aggregation,
            tta,
            datamodule.eval_batch_size,
            datamodule.num_workers,
            seen=seen,
            max_faces_per_video=datamodule.max_faces_per_video,
        )
        if faces.empty:
            log.warning(
                "eval dataset %s: no face of a video this run has not seen (%d videos left out "
                "as trained or validated on, %d failed): no row",
                entry, excluded, len(failed),
            )  # fmt: skip
            continue
        label = Path(str(entry)).name
        rows.append(
            cross_dataset_row(
                label, faces_dir, "all", faces, videos, thresholds, failed, excluded, bootstrap
            )
        )
        curves[label] = (videos["label"], videos["prob"])
        write_csv(out_dir / "cross_dataset" / f"{label}_videos.csv", videos)
    table = pd.DataFrame(rows, columns=CROSS_COLUMNS)
    table["roc_auc_ci"] = [_format_interval(ci) for ci in table["roc_auc_ci"]]
    note = (
        "One checkpoint, thresholds chosen on its own validation split and applied unchanged "
        f"(video {thresholds['video']:.3f}, face {thresholds['face']:.3f}). Row 1 is the "
        "training dataset's test split; every other dataset is scored on ALL its faces "
        "(train, val and test splits alike) except those of videos this run trained or "
        "validated on, matched by (source, video_id) whatever the folder "
        "(`videos_seen_excluded`). Metrics are video level unless prefixed `face_`; videos "
        "without a face score 0.5; failed inputs (missing, corrupt) are left out and counted "
        "(`videos_failed`). `roc_auc_ci`: 95% bootstrap interval over groups."
    )
    write_table(table, out_dir / "cross_dataset.csv", "Cross-dataset evaluation", note)
    return rows


def _format_interval(interval: Sequence[float | None] | None, digits: int = 2) -> str:
    """``[0.91, 0.99]``, or an empty string without an interval."""
    if interval is None or not isinstance(interval, list | tuple) or interval[0] is None:
        return ""
    return f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def _extra_figures(
    module: nn.Module,
    datamodule: FaceDataModule,
    test_faces: pd.DataFrame,
    test_videos: pd.DataFrame,
    metrics: dict,
    cross_curves: dict[str, tuple[Any, Any]],
    gradcam_faces: int,
) -> dict[str, Figure]:
    """Reliability diagrams, explanation gallery and cross-dataset ROC, when they apply."""
    figures: dict[str, Figure] = {}
    if "calibration" in metrics:
        temperature = metrics["calibration"]["temperature"]
        figures["reliability_video"] = plots.plot_reliability(
            test_videos["label"], test_videos["prob"], title="Reliability (test videos)"
        )
        figures["reliability_video_calibrated"] = plots.plot_reliability(
            test_videos["label"],
            test_videos["prob_calibrated"],
            title=f"Reliability, T={temperature:.2f}",
        )
    gallery = explanation_figure(
        module,
        test_faces,
        datamodule.faces_dir,
        datamodule.augmentation.eval_transform(),
        k=gradcam_faces,
    )
    if gallery is not None:
        figures["gradcam"] = gallery
    if len(cross_curves) > 1:
        figures["cross_dataset_roc"] = plot_roc_overlay(cross_curves, "ROC per dataset (videos)")
    return figures


def _log_scalars(writer: SummaryWriter, metrics: dict) -> None:
    for level in ("face", "video"):
        for key in SUMMARY_KEYS:
            value = metrics["test"][level][key]
            prefix = "test/" if level == "face" else "test/video_"
            writer.add_scalar(f"{prefix}{key}", value, 0)
    calibration = metrics.get("calibration")
    if calibration:
        for key in ("temperature", "test_log_loss_after", "test_ece_before", "test_ece_after"):
            writer.add_scalar(f"calibration/video_{key}", calibration[key], 0)
    for row in metrics.get("cross_dataset", []):
        for key in ("roc_auc", "accuracy", "log_loss"):
            writer.add_scalar(f"cross_dataset/{row['dataset']}/video_{key}", row[key], 0)


def _with_interval(name: str, block: dict, key: str) -> str:
    """``ROC-AUC 0.954 [0.91, 0.99]`` (without brackets when there is no interval)."""
    interval = _format_interval(block.get(f"{key}_ci"))
    return f"{name} {block[key]:.3f}" + (f" {interval}" if interval else "")


def format_failures(split: dict) -> str:
    """``2 failed (missing_file 1, decode_error 1)`` or an empty string."""
    if not split.get("n_failed"):
        return ""
    reasons = ", ".join(f"{k} {v}" for k, v in split.get("failed_reasons", {}).items())
    return f"{split['n_failed']} failed ({reasons})"


def format_summary(metrics: dict) -> str:
    """The test metrics with their intervals (and the cross-dataset table, if any)."""
    rows = []
    test = metrics["test"]
    for level in ("face", "video"):
        m = test[level]
        values = "  ".join(
            _with_interval(SUMMARY_NAMES[k], m, k) for k in SUMMARY_KEYS if not np.isnan(m[k])
        )
        counts = f"n={m['n']}"
        if "n_groups" in m:
            counts += f" in {m['n_groups']} group" + ("s" if m["n_groups"] != 1 else "")
        if level == "video" and m.get("n_no_face"):
            counts += f", {m['n_no_face']} without a face at 0.5"
        rows.append(f"test {level:5s} ({counts}, threshold={m['threshold']:.3f}): {values}")
    failures = format_failures(test)
    if failures:
        rows.append(f"test videos left out of the metrics: {failures}")
    settings = metrics.get("bootstrap")
    if settings:
        rows.append(
            f"[intervals: {settings['level']:.0%} bootstrap over {settings['unit']}s, "
            f"{settings['n_resamples']} resamples, seed {settings['seed']}; none where a "
            "metric is undefined or there is one group]"
        )
    calibration = metrics.get("calibration")
    if calibration:
        rows.append(
            f"calibration (videos): T={calibration['temperature']:.3f}  log_loss "
            f"{calibration['test_log_loss_before']:.4f} -> {calibration['test_log_loss_after']:.4f}"
            f"  ECE {calibration['test_ece_before']:.4f} -> {calibration['test_ece_after']:.4f}"
        )
    if metrics.get("cross_dataset"):
        table = pd.DataFrame(metrics["cross_dataset"])
        columns = ["dataset", "splits", "videos", *SUMMARY_KEYS]
        if "roc_auc_ci" in table:
            table["roc_auc_ci"] = [_format_interval(ci) for ci in table["roc_auc_ci"]]
            columns.insert(columns.index("roc_auc") + 1, "roc_auc_ci")
        rows.append("cross-dataset (videos):\n" + markdown_table(table[columns]))
    return "\n".join(rows)


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    ckpt = resolve_checkpoint(cfg.ckpt_path, cfg.run_dir)
    out_dir = Path(cfg.paths.output_dir)
    save_run_info(out_dir, cfg)
    # ``tta``, ``eval_datasets``, ``calibrate``, ``gradcam_faces``, ``bootstrap_*`` and
    # ``trust_checkpoint`` are read with defaults so ``+key=value`` works whether or not the
    # schema lists them.
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
        tta=cfg.get("tta"),
        eval_datasets=list(cfg.get("eval_datasets") or []),
        faces_root=cfg.paths.faces_dir,
        calibrate=cfg.get("calibrate", True),
        gradcam_faces=cfg.get("gradcam_faces", 8),
        bootstrap=BootstrapSettings(
            n_resamples=cfg.get("bootstrap_resamples", 1000),
            seed=cfg.get("bootstrap_seed", 0),
            level=cfg.get("bootstrap_level", DEFAULT_LEVEL),
        ),
        trust_checkpoint=cfg.get("trust_checkpoint", False),
    )
    log.info("\n%s\nmetrics: %s", format_summary(metrics), out_dir / "metrics.json")


if __name__ == "__main__":
    main()
