"""The evaluate task: score val and test, choose thresholds on val, report test.

The decision threshold is chosen on the validation split and then applied, unchanged, to the
test split, to every cross-dataset set and to every robustness perturbation; test
predictions never influence any choice. The same holds for the calibration temperature
(fitted on val, reported on test). Every test metric carries a 95% bootstrap interval
resampled over groups (identities). Videos without a face score 0.5; failed inputs (missing,
corrupt, outside-root files) are left out and counted. Writes ``metrics.json``, per-face and
per-video predictions, ``failed_videos.csv``, ``cross_dataset.{csv,md}`` when other datasets
are given, ``robustness.{csv,png}`` with a perturbation sweep, and plots (PNG + TensorBoard).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from deepfake_exp.config import validate_config
from deepfake_exp.data.datamodule import MANIFEST, FaceDataModule
from deepfake_exp.evaluation import plots
from deepfake_exp.evaluation.bootstrap import DEFAULT_LEVEL
from deepfake_exp.evaluation.calibration import apply_temperature
from deepfake_exp.evaluation.cross_dataset import (
    cross_dataset_row,
    resolve_faces_dir,
    write_cross_dataset_table,
)
from deepfake_exp.evaluation.figures import write_plots
from deepfake_exp.evaluation.robustness import (
    build_perturbations,
    plot_robustness,
    robustness_summary,
    robustness_table,
)
from deepfake_exp.evaluation.scores import BootstrapSettings, calibration_report, split_block
from deepfake_exp.evaluation.tables import SUMMARY_KEYS, format_summary
from deepfake_exp.evaluation.threshold import select_threshold
from deepfake_exp.inference.checkpoint import load_detector, resolve_checkpoint
from deepfake_exp.inference.explain import explanation_figure
from deepfake_exp.inference.safe import safe_instantiate
from deepfake_exp.inference.scoring import (
    external_predictions,
    listed_videos,
    predict_faces,
    seen_videos,
    split_predictions,
    video_predictions,
)
from deepfake_exp.inference.tta import tta_views
from deepfake_exp.runs import RunDir, check_data_fingerprint, run_dir_of
from deepfake_exp.utils.io import write_csv, write_json
from deepfake_exp.utils.run import save_run_info

log = logging.getLogger(__name__)

Scored = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]  # faces, videos, failed


def evaluate_checkpoint(
    ckpt_path: str | Path,
    out_dir: str | Path,
    faces_dir: str | Path | None = None,
    threshold: str = "f1",
    video_aggregation: str | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
    make_plots: bool = True,
    tensorboard_dir: str | Path | None = None,
    *,
    tta: str = "none",
    eval_datasets: Sequence[str] = (),
    faces_root: str | Path | None = None,
    calibrate: bool = True,
    gradcam_faces: int = 8,
    bootstrap: BootstrapSettings | None = None,
    robustness: Mapping[str, Any] | None = None,
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
        make_plots: Write PNG figures (and TensorBoard images).
        tensorboard_dir: Where to log scalars and figures (``None``: no TensorBoard).
        tta: Test-time augmentation, a key of :data:`~deepfake_exp.inference.tta.TTA_POLICIES`.
        eval_datasets: Other preprocessed datasets (names under ``faces_root`` or paths);
            each is scored on the videos the run never saw, with the val-chosen thresholds.
        faces_root: Folder of preprocessed datasets (default: the parent of ``faces_dir``).
        calibrate: Fit a temperature on val and report test log-loss/ECE before and after.
        gradcam_faces: Test faces in the Grad-CAM / attention-rollout gallery (0: none).
        bootstrap: Resamples, seed and level of the intervals (default 1000, 0, 0.95).
        robustness: The ``robustness`` option (``perturbations``: name -> ``_target_`` or
            built perturbation); none or empty: no sweep.
        trust_checkpoint: Rebuild without the target allow-list (only for one's own files).
    """
    out_dir = Path(out_dir)
    tta_views(tta)
    bootstrap = bootstrap or BootstrapSettings()
    perturbations = build_perturbations((robustness or {}).get("perturbations"))
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
    val = split_predictions(module, datamodule, "val", aggregation, tta)
    test = split_predictions(module, datamodule, "test", aggregation, tta)
    (val_faces, val_videos, val_failed), (test_faces, test_videos, test_failed) = val, test
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
            seen=seen_videos(trained_on if (trained_on / MANIFEST).is_file() else faces_dir),
            bootstrap=bootstrap,
        )
    writer = SummaryWriter(str(tensorboard_dir)) if tensorboard_dir else None
    if perturbations:
        table = robustness_evaluation(
            module, datamodule, test_faces, perturbations, thresholds, aggregation, tta, bootstrap
        )
        metrics["robustness"] = write_robustness(table, out_dir, writer)
    run = RunDir(out_dir)
    write_json(run.metrics_json, metrics)
    write_csv(run.predictions_csv("test", "faces"), test_faces)
    write_csv(run.predictions_csv("test", "videos"), test_videos)
    write_csv(run.predictions_csv("val", "faces"), val_faces)
    write_csv(run.predictions_csv("val", "videos"), val_videos)
    write_csv(run.failed_videos_csv, pd.concat([val_failed, test_failed]))
    if writer is not None:
        log_scalars(writer, metrics)
    if make_plots:
        extra = extra_figures(
            module, datamodule, test_faces, test_videos, metrics, cross_curves, gradcam_faces
        )
        history = run_dir_of(ckpt_path).history_csv
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


def robustness_evaluation(
    module: Any,
    datamodule: FaceDataModule,
    test_faces: pd.DataFrame,
    perturbations: Mapping[str, Any],
    thresholds: dict[str, float],
    aggregation: str,
    tta: str,
    bootstrap: BootstrapSettings,
) -> pd.DataFrame:
    """The test faces rescored under every perturbation and severity, clean-val thresholds.

    Severity 0 reuses the clean test scores and the same face -> video reduction (face-less
    videos at 0.5), so its row *is* the clean evaluation.
    """
    transform = datamodule.augmentation.eval_transform()
    listed, _ = listed_videos(datamodule.faces_dir, "test")

    def score_faces(pre_transform: Any) -> Any:
        if pre_transform is None:
            return test_faces["prob"].to_numpy()
        scored = predict_faces(
            module,
            test_faces.drop(columns="prob"),
            datamodule.faces_dir,
            transform,
            tta=tta,
            batch_size=datamodule.eval_batch_size,
            num_workers=datamodule.num_workers,
            desc="predict test (perturbed)",
            pre_transform=pre_transform,
        )
        return scored["prob"].to_numpy()

    return robustness_table(
        score_faces,
        test_faces.drop(columns="prob"),
        perturbations,
        thresholds,
        to_videos=lambda faces: video_predictions(faces, aggregation, listed),
        n_resamples=bootstrap.n_resamples,
        seed=bootstrap.seed,
        level=bootstrap.level,
    )


def write_robustness(table: pd.DataFrame, out_dir: Path, writer: SummaryWriter | None) -> dict:
    """``robustness.csv``, ``robustness.png`` (and its TensorBoard image); returns the
    ``metrics.json`` block (mean face / video AUC under perturbation)."""
    write_csv(out_dir / "robustness.csv", table)
    figure = plot_robustness(table)
    if writer is not None:
        writer.add_image("eval/robustness", plots.figure_to_array(figure), 0, dataformats="HWC")
    plots.save_figure(figure, out_dir / "robustness.png")
    return robustness_summary(table)


def cross_dataset_evaluation(
    module: Any,
    datamodule: FaceDataModule,
    eval_datasets: Sequence[str],
    faces_root: Path,
    thresholds: dict[str, float],
    in_domain: Scored,
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
    curves[name] = (videos["label"], videos["prob"])
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
    write_cross_dataset_table(rows, thresholds, out_dir / "cross_dataset.csv")
    return rows


def extra_figures(
    module: Any,
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
        figures["cross_dataset_roc"] = plots.plot_roc_overlay(
            cross_curves, "ROC per dataset (videos)"
        )
    return figures


def log_scalars(writer: SummaryWriter, metrics: dict) -> None:
    """Test metrics, calibration, cross-dataset and robustness summaries as TensorBoard scalars."""
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
    for key, value in (metrics.get("robustness") or {}).items():
        if value is not None:
            writer.add_scalar(f"robustness/{key}", value, 0)


def run(cfg: DictConfig) -> dict:
    """Evaluate ``cfg.ckpt_path`` (or the run's best checkpoint); returns ``metrics.json``.

    ``tta``, ``eval_datasets``, ``calibrate``, ``gradcam_faces``, ``bootstrap_*`` and
    ``robustness`` are read with defaults so ``+key=value`` works whether or not the schema
    lists them; ``flip_tta=true`` is the old spelling of ``tta=flip``.
    """
    validate_config(cfg)  # ranges checked, choices as plain strings
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
        make_plots=cfg.plots,
        tensorboard_dir=out_dir / "tensorboard",
        tta=cfg.get("tta") or ("flip" if cfg.get("flip_tta") else "none"),
        eval_datasets=list(cfg.get("eval_datasets") or []),
        faces_root=cfg.paths.faces_dir,
        calibrate=cfg.get("calibrate", True),
        gradcam_faces=cfg.get("gradcam_faces", 8),
        bootstrap=BootstrapSettings(
            n_resamples=cfg.get("bootstrap_resamples", 1000),
            seed=cfg.get("bootstrap_seed", 0),
            level=cfg.get("bootstrap_level", DEFAULT_LEVEL),
        ),
        robustness=cfg.get("robustness"),
        trust_checkpoint=cfg.get("trust_checkpoint", False),
    )
    log.info("\n%s\nmetrics: %s", format_summary(metrics), RunDir(out_dir).metrics_json)
    return metrics
