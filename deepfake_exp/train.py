"""Train a detector: ``python -m deepfake_exp.train [experiment=<name>] [key=value ...]``.

Selects the checkpoint on validation, then (unless ``test=false``) evaluates it: threshold
from val, metrics on test. Returns the optimized validation metric so a Hydra sweeper can use
it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from deepfake_exp import config as _config  # noqa: F401  (registers the schemas)
from deepfake_exp.evaluate import evaluate_checkpoint, format_summary
from deepfake_exp.sweeps import STATUS_OK, in_sweep, record_failure, sweep_objective
from deepfake_exp.utils.io import write_json
from deepfake_exp.utils.run import save_run_info

log = logging.getLogger(__name__)


def instantiate_dict(node: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a dict-of-configs group (callbacks, loggers)."""
    if not node:
        return []
    return [instantiate(entry) for entry in node.values() if entry and "_target_" in entry]


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The hyper-parameters worth comparing across runs, flattened for TensorBoard's HParams."""
    keep = ("model", "optimizer", "scheduler", "augmentation", "module", "data", "dataset")
    container = OmegaConf.to_container(cfg, resolve=True)
    flat: dict[str, Any] = {"seed": cfg.seed}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}/{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = value if isinstance(value, int | float | str | bool) else str(value)

    for key in keep:
        walk(key, container.get(key))
    return flat


def train(cfg: DictConfig) -> tuple[float, dict]:
    """Fit, select on val, evaluate on test; returns (best val metric, summary)."""
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)
    augmentation = instantiate(cfg.augmentation)
    datamodule = instantiate(cfg.data, augmentation=augmentation)
    module = instantiate(
        cfg.module,
        backbone=instantiate(cfg.model),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler),
    )
    module.run_config = OmegaConf.to_container(cfg, resolve=True)
    loggers = instantiate_dict(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=instantiate_dict(cfg.get("callbacks")), logger=loggers or False
    )
    summary: dict[str, Any] = {"status": STATUS_OK, "run_dir": str(run_dir.resolve())}
    if cfg.train:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint else ""
    best = best_score(checkpoint, best_path)
    summary.update(
        {
            cfg.optimized_metric: best,
            "best_checkpoint": best_path,
            "best_epoch": _epoch_of(best_path),
            "epochs_trained": trainer.current_epoch,
        }
    )
    if cfg.test and best_path and trainer.is_global_zero:
        metrics = evaluate_checkpoint(
            best_path,
            run_dir,
            threshold=cfg.threshold,
            batch_size=cfg.data.eval_batch_size or cfg.data.batch_size,
            num_workers=cfg.data.num_workers,
            tensorboard_dir=run_dir / "tensorboard",
        )
        summary["test"] = metrics["test"]
        log.info("\n%s", format_summary(metrics))
    _log_hparams(loggers, cfg, summary)
    if trainer.is_global_zero:
        write_json(run_dir / "summary.json", summary)
    return best, summary


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
def _log_hparams(loggers: list, cfg: DictConfig, summary: dict) -> None:
    """HParams tab: this run's hyper-parameters next to its final metrics."""
    metrics = {f"hparams/{cfg.optimized_metric}": summary[cfg.optimized_metric]}
    for level, prefix in (("face", "hparams/test_"), ("video", "hparams/test_video_")):
        for key in ("roc_auc", "accuracy", "log_loss"):
            value = summary.get("test", {}).get(level, {}).get(key)
            if value is not None:
                metrics[f"{prefix}{key}"] = value
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(flat_hparams(cfg), metrics)
            logger.finalize("success")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train; in a sweep a failed run is recorded and reported as a failed trial (``None``)."""
    run_dir = Path(cfg.paths.output_dir)
    rank_zero_only(save_run_info)(run_dir, cfg)  # DDP ranks > 0 rerun main with extra args
    try:
        best, summary = train(cfg)
    except Exception as error:  # recorded, then re-raised unless a sweep must go on
        rank_zero_only(record_failure)(run_dir, cfg.optimized_metric, error)  # same on every rank
        if not in_sweep():
            raise
        log.exception("run failed; the sweep goes on (%s has status 'failed')", run_dir)
        return None
    if math.isnan(best):
        log.warning("no checkpoint was selected (no validation metric logged)")
    video_auc = summary.get("test", {}).get("video", {}).get("roc_auc")
    print(f"\nbest {cfg.optimized_metric} = {best:.4f} (epoch {summary['best_epoch']})")
    if video_auc is not None:
        print(f"test video ROC-AUC = {video_auc:.4f} (held-out identities)")
    print(f"run directory: {run_dir.resolve()}")
    print(f"TensorBoard:   tensorboard --logdir {run_dir.resolve()}   (or: make tensorboard)")
    return sweep_objective(best)


if __name__ == "__main__":
    main()
