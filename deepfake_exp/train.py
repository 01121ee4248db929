"""Train a detector: ``python -m deepfake_exp.train [experiment=<name>] [key=value ...]``.

Selects the checkpoint on validation, then (unless ``test=false``) evaluates it: threshold
from val, metrics on test. Returns the optimized validation metric so a Hydra sweeper can use
it.

``python -m deepfake_exp.train resume=<run dir>`` continues a stopped run in its own folder,
under its own config: the run's saved overrides (``<run>/.hydra/overrides.yaml``) are composed
again, an override that would change the run's ``config.yaml`` is refused unless
``force=true``, training restarts from ``<run>/checkpoints/last.ckpt``, and ``run_info.json``
and ``csv/metrics.csv`` keep what the earlier invocations recorded.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.utilities import rank_zero_only

from deepfake_exp.config import validate_config
from deepfake_exp.evaluate import evaluate_checkpoint, format_summary
from deepfake_exp.inference import stored_data_fingerprint
from deepfake_exp.runs import check_data_fingerprint, data_fingerprint
from deepfake_exp.sweeps import STATUS_OK, in_sweep, record_failure, sweep_objective
from deepfake_exp.utils.io import atomic_write, write_json
from deepfake_exp.utils.lock import exclusive_lock
from deepfake_exp.utils.run import save_run_info

log = logging.getLogger(__name__)

STATUS_NO_CHECKPOINT = "no_checkpoint"  # trained, but no checkpoint was selected on val
LAST_CHECKPOINT = "last.ckpt"
# Keys a resume may change without force=true: how the run is executed, not what it computes.
RESUME_MAY_CHANGE = (
    "resume", "force", "ckpt_path", "test", "paths.", "data.num_workers", "data.pin_memory",
    "data.eval_batch_size", "callbacks.progress_bar.", "trainer.enable_model_summary",
)  # fmt: skip
# Saved overrides a resume does not apply again (this invocation sets its own).
NOT_REPLAYED = ("resume", "force", "ckpt_path")
# TensorBoard HParams: the option chosen per config group, the numbers that differ between
# runs (column -> config key, default when the config has none), and the same metric names
# for every run, whichever metric it selected on.
HPARAM_GROUPS = ("model", "optimizer", "scheduler", "augmentation", "dataset", "experiment")
HPARAM_VALUES: dict[str, tuple[str, Any]] = {
    "seed": ("seed", None),
    "optimizer/lr": ("optimizer.lr", None),
    "optimizer/weight_decay": ("optimizer.weight_decay", 0.0),
    "data/batch_size": ("data.batch_size", None),
    "trainer/max_epochs": ("trainer.max_epochs", None),
    "model/input_size": ("model.input_size", None),
    "model/pretrained": ("model.pretrained", False),
    "module/head": ("module.head", None),
    "module/head_hidden": ("module.head_hidden", 0),  # 0: no hidden layer
    "module/freeze": ("module.freeze", None),
    "module/unfreeze_last": ("module.unfreeze_last", 0),
    "module/backbone_lr": ("module.backbone_lr", None),  # None: the optimizer's lr
    "selected_on": ("optimized_metric", None),
}
HPARAM_METRIC_KEYS = ("roc_auc", "log_loss", "accuracy")
BEST_VAL_METRIC = "hparams/best_val"


def hparam_metric_names() -> list[str]:
    """``hparams/best_val``, then ``hparams/<split>_[video_]<metric>`` for val and test."""
    names = [BEST_VAL_METRIC]
    for split in ("val", "test"):
        for level in ("", "video_"):
            names += [f"hparams/{split}_{level}{key}" for key in HPARAM_METRIC_KEYS]
    return names


class ResumeError(ValueError):
    """``resume=<run>`` cannot continue that run as asked (not a run, or a conflicting override)."""


class _HistoryWriter(ExperimentWriter):
    """Lightning's CSV writer, except that rows logged before a resume are kept.

    Lightning deletes ``metrics.csv`` when its logger starts. Here the old rows are read
    instead, and at the first save those logged before the new first step are written back
    (rows of an epoch that the resume repeats are dropped, so no epoch appears twice; a
    fresh run starting at step 0 keeps nothing, as Lightning does).
    """

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        self._history: list[dict[str, str]] | None = None
        if path.is_file():
            with path.open(newline="") as handle:
                self._history = list(csv.DictReader(handle))

    def save(self) -> None:
        if self._history is not None and self.metrics:
            first_step = min(row["step"] for row in self.metrics)
            kept = [r for r in self._history if float(r.get("step") or "inf") < first_step]
            self.metrics_keys = sorted(set().union(*kept, *self.metrics))
            keys = self.metrics_keys

            def write(tmp: Path) -> None:
                with tmp.open("w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=keys)
                    writer.writeheader()
                    writer.writerows(kept)

            atomic_write(self.metrics_file_path, write)
            self._history = None
        super().save()


class HistoryCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resume (see :class:`_HistoryWriter`).

    The training-curve plot and the report read ``<run>/csv/metrics.csv``: after a resume it
    still holds every epoch.
    """

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and rank_zero_only.rank == 0:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HistoryWriter(log_dir=self.log_dir)
        return super().experiment


def instantiate_dict(node: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a dict-of-configs group (callbacks, loggers)."""
    if not node:
        return []
    return [instantiate(entry) for entry in node.values() if entry and "_target_" in entry]


def group_choices(run_dir: str | Path) -> dict[str, str | None]:
    """The option chosen for each config group of :data:`HPARAM_GROUPS` (``None``: none).

    From Hydra when it composed this run, else from the run's ``.hydra/hydra.yaml``; empty
    for a config composed elsewhere (``train(cfg)`` from Python).
    """
    run_dir = Path(run_dir).resolve()
    choices = None
    if HydraConfig.initialized() and Path(HydraConfig.get().runtime.output_dir) == run_dir:
        choices = HydraConfig.get().runtime.choices
    elif (run_dir / ".hydra" / "hydra.yaml").is_file():
        choices = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.runtime.choices
    if choices is None:
        return {}
    return {group: choices.get(group) for group in HPARAM_GROUPS}


def hparams_table(cfg: DictConfig, choices: dict[str, str | None]) -> dict[str, Any]:
    """The columns of TensorBoard's HParams tab: group options and the numbers runs vary."""
    table: dict[str, Any] = {
        group: "unknown" if group not in choices else str(choices[group] or "none")
        for group in HPARAM_GROUPS
    }
    for column, (key, default) in HPARAM_VALUES.items():
        value = OmegaConf.select(cfg, key, default=None)
        table[column] = default if value is None else value
    if table["module/backbone_lr"] is None:
        table["module/backbone_lr"] = table["optimizer/lr"]
    return table


def hparam_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """:func:`hparam_metric_names` with this run's values (NaN where it has none)."""
    metrics = {BEST_VAL_METRIC: summary.get("best_val")}
    for split in ("val", "test"):
        for level, prefix in (("face", ""), ("video", "video_")):
            block = (summary.get(split) or {}).get(level) or {}
            for key in HPARAM_METRIC_KEYS:
                metrics[f"hparams/{split}_{prefix}{key}"] = block.get(key)
    return {k: float("nan") if v is None else float(v) for k, v in metrics.items()}


def train(cfg: DictConfig) -> tuple[float, dict]:
    """Fit, select on val, evaluate on test; returns (best val metric, summary)."""
    validate_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)
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
    loggers = instantiate_dict(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=instantiate_dict(cfg.get("callbacks")), logger=loggers or False
    )
    choices = group_choices(run_dir)
    summary: dict[str, Any] = {"status": STATUS_OK, "run_dir": str(run_dir.resolve())}
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
        summary["val"], summary["test"] = metrics["val"], metrics["test"]
        log.info("\n%s", format_summary(metrics))
    _log_hparams(loggers, hparams_table(cfg, choices), hparam_metrics(summary))
    if trainer.is_global_zero:
        write_json(run_dir / "summary.json", summary)
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


# ---- resume ---------------------------------------------------------------------------------


def _override_key(override: Any) -> tuple[str, str | None]:
    return override.key_or_group, override.package


def merge_overrides(saved: list[str], current: list[str]) -> list[str]:
    """The run's saved overrides, less those this command line sets again, then this one's."""
    parser = OverridesParser.create()
    given = {_override_key(o) for o in parser.parse_overrides(current)}
    kept = [
        text
        for text, override in zip(saved, parser.parse_overrides(saved), strict=True)
        if _override_key(override) not in given and override.key_or_group not in NOT_REPLAYED
    ]
    return [*kept, *current]


def resume_argv(argv: list[str]) -> list[str]:
    """``train resume=<run> [key=value ...]`` rewritten as the run's own command line.

    The run's saved overrides come first, then this command's, with Hydra pointed at the
    run's folder (and told not to rewrite ``.hydra/``; :func:`_main` does once the resume is
    accepted). Any other command line is returned unchanged. Rewriting an already rewritten
    command line (what DDP ranks > 0 run) changes nothing.
    """
    from hydra._internal.utils import get_args_parser

    if not any(arg.lstrip("+~").startswith("resume=") for arg in argv[1:]):
        return argv
    args = get_args_parser().parse_args(argv[1:])
    overrides = list(args.overrides)
    parsed = OverridesParser.create().parse_overrides(overrides)
    resume = [o.value() for o in parsed if o.key_or_group == "resume"]
    if not resume or resume[-1] is None:
        return argv
    if args.multirun:
        raise ResumeError("resume=<run> continues one run: it cannot be combined with -m")
    run_dir = Path(str(resume[-1])).expanduser().resolve()
    if not (run_dir / "config.yaml").is_file():
        raise ResumeError(f"resume={resume[-1]}: {run_dir} is not a training run (no config.yaml)")
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    saved = [str(o) for o in OmegaConf.load(saved_file)] if saved_file.is_file() else []
    flags = [arg for arg in argv[1:] if arg not in overrides]
    merged = merge_overrides(saved, overrides)
    return [argv[0], *flags, *merged, f"hydra.run.dir='{run_dir}'", "hydra.output_subdir=null"]


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: node}


def _may_change_on_resume(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUME_MAY_CHANGE)


def resume_changes(cfg: DictConfig, run_dir: Path) -> dict[str, tuple[Any, Any]]:
    """``key: (run's value, this invocation's value)`` for every key a resume would change.

    Keys of :data:`RESUME_MAY_CHANGE` are left out; paths under the run's old location count
    as the same (a run folder that was moved).
    """
    saved = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=True)
    old, new = _flatten(saved), _flatten(OmegaConf.to_container(cfg, resolve=True))
    old_dir, new_dir = str(old.get("paths.output_dir", "")), str(new.get("paths.output_dir", ""))
    absent = "<absent>"
    changes = {}
    for key in sorted(old.keys() | new.keys()):
        if _may_change_on_resume(key):
            continue
        before, after = old.get(key, absent), new.get(key, absent)
        if isinstance(before, str) and old_dir and before.startswith(old_dir):
            before = new_dir + before[len(old_dir) :]
        if before != after:
            changes[key] = (before, after)
    return changes


def prepare_resume(cfg: DictConfig) -> dict[str, Any]:
    """Check that ``cfg`` may continue ``cfg.resume`` and point it at the last checkpoint.

    Raises :class:`ResumeError` (nothing written) when the folder is not a training run or
    an override changes the run's config without ``force=true``. Returns what
    ``run_info.json`` records about this resume.
    """
    run_dir = Path(cfg.resume).expanduser().resolve()
    if Path(cfg.paths.output_dir).resolve() != run_dir:
        raise ResumeError(
            f"resume={cfg.resume}: start it as `python -m deepfake_exp.train resume=<run>` "
            f"(this process writes to {cfg.paths.output_dir})"
        )
    if not (run_dir / "config.yaml").is_file():
        raise ResumeError(
            f"resume={cfg.resume}: {run_dir} is not a training run folder (no config.yaml)"
        )
    if not (run_dir / ".hydra" / "overrides.yaml").is_file():
        log.warning("%s has no .hydra/overrides.yaml: composing the defaults again", run_dir)
    changes = resume_changes(cfg, run_dir)
    if changes and not cfg.force:
        lines = "\n".join(f"  {key}: {old!r} -> {new!r}" for key, old, new in _rows(changes))
        raise ResumeError(
            f"resume={cfg.resume}: this command would change the run's config "
            f"({', '.join(changes)}):\n{lines}\nDrop those overrides to continue the run as it "
            "was configured, or add force=true to continue it with the new values."
        )
    if changes:
        log.warning("resuming %s with changed values (force=true): %s", run_dir, changes)
    last = _last_checkpoint(cfg, run_dir)
    if cfg.ckpt_path is None:
        cfg.ckpt_path = str(last) if last.is_file() else None
    if cfg.ckpt_path is None:
        log.warning("%s has no %s yet: training it from the start", run_dir, LAST_CHECKPOINT)
    return {
        "resumed_from": cfg.ckpt_path,
        "forced_changes": {key: [old, new] for key, old, new in _rows(changes)},
    }


def _rows(changes: dict[str, tuple[Any, Any]]) -> Iterator[tuple[str, Any, Any]]:
    return ((key, old, new) for key, (old, new) in changes.items())


def _last_checkpoint(cfg: DictConfig, run_dir: Path) -> Path:
    dirpath = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath", default=None)
    return Path(dirpath or run_dir / "checkpoints") / LAST_CHECKPOINT


@rank_zero_only
def _save_overrides(run_dir: Path) -> None:
    """Record this invocation's overrides as the run's own, so the next resume composes them."""
    overrides = OmegaConf.to_yaml(OmegaConf.create(list(HydraConfig.get().overrides.task)))
    atomic_write(run_dir / ".hydra" / "overrides.yaml", lambda p: p.write_text(overrides))


@contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """One process writes a run folder (DDP ranks > 0 are part of the holder's run)."""
    lock = exclusive_lock(run_dir, what="training run") if rank_zero_only.rank == 0 else None
    with lock or nullcontext():
        yield


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def _main(cfg: DictConfig) -> float | None:
    """Train; in a sweep a failed run is recorded and reported as a failed trial (``None``)."""
    run_dir = Path(cfg.paths.output_dir)
    validate_config(cfg)
    resumed = prepare_resume(cfg) if cfg.resume else {}
    with _run_lock(run_dir):
        rank_zero_only(save_run_info)(run_dir, cfg, **resumed)  # DDP ranks > 0 rerun main
        if cfg.resume:
            _save_overrides(run_dir)
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
    video = (summary.get("test") or {}).get("video", {})
    print(f"\nbest {cfg.optimized_metric} = {best:.4f} (epoch {summary['best_epoch']})")
    if video.get("roc_auc") is not None:
        low, high = video.get("roc_auc_ci") or (None, None)
        interval = f" [95% CI {low:.3f}, {high:.3f}]" if low is not None else " (no CI)"
        print(
            f"test video ROC-AUC = {video['roc_auc']:.4f}{interval} on {video.get('n')} videos "
            "(held-out identities; split report: split_report.json in the faces folder)"
        )
    print(f"run directory: {run_dir.resolve()}")
    print(f"TensorBoard:   tensorboard --logdir {run_dir.resolve()}   (or: make tensorboard)")
    print(f"resume:        python -m deepfake_exp.train resume={run_dir.resolve()}")
    return sweep_objective(best)


def main() -> float | None:
    """``python -m deepfake_exp.train``: a ``resume=<run>`` command line becomes the run's own.

    See :func:`resume_argv`; everything else is Hydra's usual command line.
    """
    argv = sys.argv
    try:
        sys.argv = resume_argv(argv)
    except ResumeError as error:  # before Hydra: report it the way Hydra reports errors
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(1)
    try:
        return _main()
    finally:
        sys.argv = argv


if __name__ == "__main__":
    main()
