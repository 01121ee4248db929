"""Train a detector: fit, select the checkpoint on val, then (unless ``test=false``) evaluate it
(threshold from val, metrics on test) and write ``summary.json``.

:func:`run` is ``python -m deepfake_exp.train``; it returns the optimized validation metric so
a Hydra sweeper can use it (``None`` for a failed trial inside a sweep). ``resume=<run>`` is
handled by :mod:`deepfake_exp.tasks.resume`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from deepfake_exp.config import validate_config
from deepfake_exp.evaluation.aggregate import read_video_list
from deepfake_exp.evaluation.tables import format_summary
from deepfake_exp.inference import stored_data_fingerprint
from deepfake_exp.runs import RunDir, check_data_fingerprint, data_fingerprint
from deepfake_exp.sweeps import STATUS_OK, in_sweep, record_failure, sweep_objective
from deepfake_exp.tasks.evaluate import evaluate_checkpoint
from deepfake_exp.tasks.hparams import group_choices, hparam_metrics, hparams_table
from deepfake_exp.tasks.resume import prepare_resume, save_overrides
from deepfake_exp.utils.io import write_json
from deepfake_exp.utils.lock import exclusive_lock
from deepfake_exp.utils.run import save_run_info

log = logging.getLogger(__name__)

STATUS_NO_CHECKPOINT = "no_checkpoint"  # trained, but no checkpoint was selected on val
# What video metrics need of each val/test sample (track_id: manifests with tracks, track_max).
SAMPLE_COLUMNS = ("video_id", "track_id")


def instantiate_dict(node: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a dict-of-configs group (callbacks, loggers)."""
    if not node:
        return []
    return [instantiate(entry) for entry in node.values() if entry and "_target_" in entry]


class DataModuleVideos:
    """The module's :class:`~deepfake_exp.models.module.EvalVideos`, read from the datamodule.

    Video (and track) ids per sample come from the split's dataset (built by the datamodule's
    ``setup``);
    the face-less videos from the faces folder's video list, failed inputs excluded, and only
    those with no face in the split's dataset at all, so a partial epoch
    (``limit_val_batches``) never turns unpredicted faces into 0.5 scores.
    """

    def __init__(self, datamodule: Any) -> None:
        self.datamodule = datamodule
        self._faceless: dict[str, pd.DataFrame | None] = {}

    def samples(self, stage: str) -> pd.DataFrame | None:
        dataset = getattr(self.datamodule, "datasets", {}).get(stage)
        if dataset is None:
            return None
        columns = [c for c in SAMPLE_COLUMNS if c in dataset.frame]
        return dataset.frame[columns].reset_index(drop=True)

    def faceless_videos(self, stage: str) -> pd.DataFrame | None:
        if stage not in self._faceless:
            self._faceless[stage] = self._read_faceless(stage)
        return self._faceless[stage]

    def _read_faceless(self, stage: str) -> pd.DataFrame | None:
        faces_dir = getattr(self.datamodule, "faces_dir", None)
        samples = self.samples(stage)
        if faces_dir is None or samples is None:
            return None
        scored, _ = read_video_list(Path(faces_dir))
        if scored is None or "split" not in scored:
            return None
        listed = scored[scored["split"] == stage]
        return listed[~listed["video_id"].isin(set(samples["video_id"]))]


def train(cfg: DictConfig) -> tuple[float, dict]:
    """Fit, select on val, evaluate on test; returns (best val metric, summary)."""
    cfg = validate_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    run = RunDir(cfg.paths.output_dir)
    fingerprint = _data_fingerprint(cfg.data.faces_dir)
    if cfg.ckpt_path:
        check_data_fingerprint(
            stored_data_fingerprint(cfg.ckpt_path),
            cfg.data.faces_dir,
            f"resume from {cfg.ckpt_path}",
        )
    augmentation = instantiate(cfg.augmentation)
    datamodule = instantiate(cfg.data, augmentation=augmentation)
    module = instantiate(
        cfg.module,
        backbone=instantiate(cfg.model),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler),
    )
    module.run_config = OmegaConf.to_container(cfg, resolve=True)
    module.data_fingerprint = fingerprint
    module.eval_videos = DataModuleVideos(datamodule)
    param_counts = module.parameter_counts()
    log.info(
        "parameters: %s trainable of %s (module.freeze=%s)",
        f"{param_counts['n_params_trainable']:,}",
        f"{param_counts['n_params_total']:,}",
        cfg.module.get("freeze"),
    )
    loggers = instantiate_dict(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=instantiate_dict(cfg.get("callbacks")), logger=loggers or False
    )
    choices = group_choices(run.path)
    summary: dict[str, Any] = {"status": STATUS_OK, "run_dir": str(run.path.resolve())}
    if cfg.train:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint else ""
    best = best_score(checkpoint, best_path)
    if not math.isfinite(best):
        summary["status"] = STATUS_NO_CHECKPOINT
    summary.update(
        {
            cfg.optimized_metric: best if math.isfinite(best) else None,
            "best_val": best if math.isfinite(best) else None,
            "optimized_metric": cfg.optimized_metric,
            "best_checkpoint": best_path,
            "best_epoch": _epoch_of(best_path),
            "epochs_trained": trainer.current_epoch,
            "choices": choices,
            "data_fingerprint": fingerprint,
            "n_params": param_counts,
        }
    )
    if cfg.test and best_path and trainer.is_global_zero:
        metrics = evaluate_checkpoint(
            best_path,
            run.path,
            threshold=cfg.threshold,
            batch_size=cfg.data.eval_batch_size or cfg.data.batch_size,
            num_workers=cfg.data.num_workers,
            tensorboard_dir=run.tb_dir,
            eval_datasets=list(cfg.get("eval_datasets") or ()),
            robustness=cfg.get("robustness"),
        )
        summary["val"], summary["test"] = metrics["val"], metrics["test"]
        log.info("\n%s", format_summary(metrics))
    _log_hparams(loggers, hparams_table(cfg, choices, param_counts), hparam_metrics(summary))
    if trainer.is_global_zero:
        write_json(run.summary_json, summary)
    return best, summary


def _data_fingerprint(faces_dir: str | Path) -> dict[str, Any]:
    try:
        return data_fingerprint(faces_dir)
    except FileNotFoundError:  # no manifest: the datamodule's error names the command to run
        from deepfake_exp.data.datamodule import read_manifest

        read_manifest(faces_dir)
        raise


def best_score(checkpoint: ModelCheckpoint | None, best_path: str) -> float:
    """The best monitored value (NaN if none), from the callback or else from its checkpoint.

    With ``strategy=ddp_spawn`` (DDP inside a sweep) training runs in child processes that
    send back the best path but not the score.
    """
    score = checkpoint.best_model_score if checkpoint else None
    if score is None and checkpoint and best_path:
        import torch

        state = torch.load(best_path, map_location="cpu", weights_only=True)["callbacks"]
        score = state.get(checkpoint.state_key, {}).get("best_model_score")
    return float(score) if score is not None else float("nan")


def _epoch_of(checkpoint_path: str) -> int | None:
    """The epoch a checkpoint was saved at (read from the file, not its name)."""
    if not checkpoint_path:
        return None
    import torch

    return int(torch.load(checkpoint_path, map_location="cpu", weights_only=True)["epoch"])


@rank_zero_only
def _log_hparams(loggers: list, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
    """HParams tab: this run's curated hyper-parameters next to its final metrics."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hparams, metrics)
            logger.finalize("success")


@contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """One process writes a run folder (DDP ranks > 0 are part of the holder's run)."""
    lock = exclusive_lock(run_dir, what="training run") if rank_zero_only.rank == 0 else None
    with lock or nullcontext():
        yield


def run(cfg: DictConfig) -> float | None:
    """Train; in a sweep a failed run is recorded and reported as a failed trial (``None``)."""
    cfg = validate_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    resumed = prepare_resume(cfg) if cfg.resume else {}
    with _run_lock(run_dir):
        rank_zero_only(save_run_info)(run_dir, cfg, **resumed)  # DDP ranks > 0 rerun main
        if cfg.resume:
            save_overrides(run_dir)
        try:
            best, summary = train(cfg)
        except Exception as error:  # recorded, then re-raised unless a sweep must go on
            rank_zero_only(record_failure)(run_dir, cfg.optimized_metric, error)  # every rank
            if not in_sweep():
                raise
            log.exception("run failed; the sweep goes on (%s has status 'failed')", run_dir)
            return None
    if not math.isfinite(best):
        log.warning("no checkpoint was selected (no validation metric logged)")
    _print_outcome(cfg, best, summary, run_dir.resolve())
    return sweep_objective(best)


def _print_outcome(cfg: DictConfig, best: float, summary: dict[str, Any], run_dir: Path) -> None:
    video = (summary.get("test") or {}).get("video", {})
    print(f"\nbest {cfg.optimized_metric} = {best:.4f} (epoch {summary['best_epoch']})")
    if video.get("roc_auc") is not None:
        low, high = video.get("roc_auc_ci") or (None, None)
        interval = f" [95% CI {low:.3f}, {high:.3f}]" if low is not None else " (no CI)"
        print(
            f"test video ROC-AUC = {video['roc_auc']:.4f}{interval} on {video.get('n')} videos "
            "(held-out identities; split report: split_report.json in the faces folder)"
        )
    print(f"run directory: {run_dir}")
    print(f"TensorBoard:   tensorboard --logdir {run_dir}   (or: make tensorboard)")
    print(f"resume:        python -m deepfake_exp.train resume={run_dir}")
