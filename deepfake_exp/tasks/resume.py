"""``train resume=<run>``: continue a stopped run in its own folder, under its own config.

The run's saved overrides (``.hydra/overrides.yaml``) are composed again, an override that
would change the run's ``config.yaml`` is refused unless ``force=true``, and training restarts
from the run's ``last.ckpt``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from deepfake_exp.runs import LAST_CKPT, RunDir
from deepfake_exp.tasks.config_diff import config_changes, default_values, flatten
from deepfake_exp.utils.io import atomic_write

log = logging.getLogger(__name__)

# Keys a resume may change without force=true: how the run is executed, not what it computes.
RESUME_MAY_CHANGE = (
    "resume", "force", "ckpt_path", "test", "paths.", "data.num_workers", "data.pin_memory",
    "data.eval_batch_size", "callbacks.progress_bar.", "trainer.enable_model_summary",
)  # fmt: skip
# Saved overrides a resume does not apply again (this invocation sets its own).
NOT_REPLAYED = ("resume", "force", "ckpt_path")


class ResumeError(ValueError):
    """``resume=<run>`` cannot continue that run as asked (not a run, or a conflicting override)."""


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
    run's folder (and told not to rewrite ``.hydra/``; :func:`save_overrides` does once the
    resume is accepted). Any other command line is returned unchanged. Rewriting an already
    rewritten command line (what DDP ranks > 0 run) changes nothing.
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
    run = RunDir(Path(str(resume[-1])).expanduser().resolve())
    if not run.config_path.is_file():
        raise ResumeError(f"resume={resume[-1]}: {run.path} is not a training run (no config.yaml)")
    flags = [arg for arg in argv[1:] if arg not in overrides]
    merged = merge_overrides(run.overrides(), overrides)
    return [argv[0], *flags, *merged, f"hydra.run.dir='{run.path}'", "hydra.output_subdir=null"]


def _may_change_on_resume(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUME_MAY_CHANGE)


def resume_changes(cfg: DictConfig, run_dir: Path) -> dict[str, tuple[Any, Any]]:
    """``key: (run's value, this invocation's value)`` for every key a resume would change.

    Keys of :data:`RESUME_MAY_CHANGE` are left out; paths under the run's old location count
    as the same (a run folder that was moved); options added since the run, at their defaults,
    are no change (:func:`deepfake_exp.tasks.config_diff.config_changes`).
    """
    saved = OmegaConf.load(RunDir(run_dir).config_path)
    old = flatten(OmegaConf.to_container(saved, resolve=True))
    new = flatten(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    old_dir, new_dir = str(old.get("paths.output_dir", "")), str(new.get("paths.output_dir", ""))
    if old_dir:  # the run's folder was moved: its paths are the same paths
        for key, value in old.items():
            if isinstance(value, str) and value.startswith(old_dir):
                old[key] = new_dir + value[len(old_dir) :]
    return config_changes(
        old, new, skip=_may_change_on_resume, defaults=default_values(saved.get("paths"))
    )


def prepare_resume(cfg: DictConfig) -> dict[str, Any]:
    """Check that ``cfg`` may continue ``cfg.resume`` and point it at the last checkpoint.

    Raises :class:`ResumeError` (nothing written) when the folder is not a training run or
    an override changes the run's config without ``force=true``. Returns what
    ``run_info.json`` records about this resume.
    """
    run = RunDir(Path(cfg.resume).expanduser().resolve())
    if Path(cfg.paths.output_dir).resolve() != run.path:
        raise ResumeError(
            f"resume={cfg.resume}: start it as `python -m deepfake_exp.train resume=<run>` "
            f"(this process writes to {cfg.paths.output_dir})"
        )
    if not run.config_path.is_file():
        raise ResumeError(
            f"resume={cfg.resume}: {run.path} is not a training run folder (no config.yaml)"
        )
    if not run.overrides_path.is_file():
        log.warning("%s has no .hydra/overrides.yaml: composing the defaults again", run.path)
    changes = resume_changes(cfg, run.path)
    if changes and not cfg.force:
        lines = "\n".join(f"  {key}: {old!r} -> {new!r}" for key, old, new in _rows(changes))
        raise ResumeError(
            f"resume={cfg.resume}: this command would change the run's config "
            f"({', '.join(changes)}):\n{lines}\nDrop those overrides to continue the run as it "
            "was configured, or add force=true to continue it with the new values."
        )
    if changes:
        log.warning("resuming %s with changed values (force=true): %s", run.path, changes)
    last = _last_checkpoint(cfg, run)
    if cfg.ckpt_path is None:
        cfg.ckpt_path = str(last) if last.is_file() else None
    if cfg.ckpt_path is None:
        log.warning("%s has no %s yet: training it from the start", run.path, LAST_CKPT)
    return {
        "resumed_from": cfg.ckpt_path,
        "forced_changes": {key: [old, new] for key, old, new in _rows(changes)},
    }


def _rows(changes: dict[str, tuple[Any, Any]]) -> Iterator[tuple[str, Any, Any]]:
    return ((key, old, new) for key, (old, new) in changes.items())


def _last_checkpoint(cfg: DictConfig, run: RunDir) -> Path:
    """``last.ckpt`` where the run's checkpoint callback writes (its ``dirpath`` if set)."""
    dirpath = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath", default=None)
    return Path(dirpath) / LAST_CKPT if dirpath else run.last_ckpt


@rank_zero_only
def save_overrides(run_dir: Path) -> None:
    """Record this invocation's overrides as the run's own, so the next resume composes them."""
    overrides = OmegaConf.to_yaml(OmegaConf.create(list(HydraConfig.get().overrides.task)))
    atomic_write(RunDir(run_dir).overrides_path, lambda p: p.write_text(overrides))
