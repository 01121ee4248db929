"""TensorBoard's HParams tab for a training run: the curated columns and the metrics beside them.

The option chosen per config group, the numbers that differ between runs (column -> config
key, default when the config has none), the model's parameter counts, and the same metric
names for every run, whichever metric it selected on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from deepfake_exp.runs import RunDir

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
    "module/normalize_features": ("module.normalize_features", False),
    "selected_on": ("optimized_metric", None),
}
# The model's size: what the tuning modes (full, linear probe, last-N, LayerNorm-only) change.
HPARAM_PARAM_COUNTS = ("n_params_trainable", "n_params_total")
HPARAM_METRIC_KEYS = ("roc_auc", "log_loss", "accuracy")
BEST_VAL_METRIC = "hparams/best_val"


def hparam_metric_names() -> list[str]:
    """``hparams/best_val``, then ``hparams/<split>_[video_]<metric>`` for val and test."""
    names = [BEST_VAL_METRIC]
    for split in ("val", "test"):
        for level in ("", "video_"):
            names += [f"hparams/{split}_{level}{key}" for key in HPARAM_METRIC_KEYS]
    return names


def group_choices(run_dir: str | Path) -> dict[str, str | None]:
    """The option chosen for each config group of :data:`HPARAM_GROUPS` (``None``: none).

    From Hydra when it composed this run, else from the run's ``.hydra/hydra.yaml``; empty
    for a config composed elsewhere (``train(cfg)`` from Python).
    """
    run = RunDir(Path(run_dir).resolve())
    choices = None
    if HydraConfig.initialized() and Path(HydraConfig.get().runtime.output_dir) == run.path:
        choices = HydraConfig.get().runtime.choices
    elif run.hydra_yaml_path.is_file():
        choices = run.choices()
    if choices is None:
        return {}
    return {group: choices.get(group) for group in HPARAM_GROUPS}


def hparams_table(
    cfg: DictConfig, choices: dict[str, str | None], param_counts: dict[str, int] | None = None
) -> dict[str, Any]:
    """The columns of TensorBoard's HParams tab: group options, the numbers runs vary, and
    the parameter counts (``param_counts``: :data:`HPARAM_PARAM_COUNTS` keys)."""
    table: dict[str, Any] = {
        group: "unknown" if group not in choices else str(choices[group] or "none")
        for group in HPARAM_GROUPS
    }
    for column, (key, default) in HPARAM_VALUES.items():
        value = OmegaConf.select(cfg, key, default=None)
        table[column] = default if value is None else value
    if table["module/backbone_lr"] is None:
        table["module/backbone_lr"] = table["optimizer/lr"]
    for key in HPARAM_PARAM_COUNTS:
        if param_counts and key in param_counts:
            table[key] = int(param_counts[key])
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
