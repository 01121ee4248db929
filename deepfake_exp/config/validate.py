"""Value checks the schemas' types cannot express, and the plain-string copy tasks work on.

Types and string choices fail at compose time (:mod:`deepfake_exp.config.schemas`); ranges
(``trainer.max_epochs >= 1``, split ratios summing to 1, one name per image format) are
checked here by :func:`validate_config`, which every task calls before its work.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, StringNode, flag_override
from omegaconf.nodes import EnumNode


def plain(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` with every Enum choice as its plain string (interpolations kept).

    Composed configs hold :mod:`~deepfake_exp.config.choices` members; they equal their
    strings, but a pickled member names its Enum class, which a ``weights_only`` checkpoint
    load refuses.
    """
    copy = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False, enum_to_str=True))
    OmegaConf.set_struct(copy, bool(OmegaConf.is_struct(cfg)))
    return copy


def strip_choices(cfg: DictConfig | ListConfig) -> None:
    """Turn ``cfg``'s Enum-typed values into plain string nodes, in place.

    Done once the config has composed (the typo check is over), so the module hparams, the
    checkpoint's ``run_config`` and anything else built from ``cfg`` hold plain strings,
    whether or not the caller keeps :func:`validate_config`'s return value. Lists typed by an
    Enum (bench ``sections``) keep their members: OmegaConf checks list elements against the
    element type, and those lists never reach a checkpoint.
    """
    keys = list(cfg.keys()) if isinstance(cfg, DictConfig) else range(len(cfg))
    for key in keys:
        node = cfg._get_node(key)
        if isinstance(node, EnumNode) and isinstance(cfg, DictConfig):
            value = node._value()
            with flag_override(cfg, "readonly", False):
                cfg[key] = StringNode(value.value if isinstance(value, Enum) else value)
        elif isinstance(node, DictConfig | ListConfig):
            strip_choices(node)


class ConfigValueError(ValueError):
    """Config values out of range; the message names every offending key."""


IMAGE_FORMATS = ("jpg", "png")
IMAGE_FORMAT_ALIASES = {"jpeg": "jpg", "jpe": "jpg", "jfif": "jpg"}
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")
PRECISIONS = (
    "transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true",
    "bf16-mixed", "32-true", "64-true", "64", "32", "16", "bf16",
)  # fmt: skip
RATIO_TOLERANCE = 1e-6


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _int_at_least(low: int, optional: bool = False) -> tuple[Callable[[Any], bool], str]:
    ok = lambda v: (optional and v is None) or (_is_int(v) and v >= low)  # noqa: E731
    return ok, f"an integer >= {low}" + (" or null" if optional else "")


def _number_in(
    low: float, high: float = math.inf, high_open: bool = False, optional: bool = False
) -> tuple[Callable[[Any], bool], str]:
    def ok(value: Any) -> bool:
        if value is None:
            return optional
        upper = value < high if high_open else value <= high
        return _is_number(value) and value >= low and upper

    bracket = ")" if high_open else "]"
    return ok, f"a number in [{low}, {high}{bracket}" + (" or null" if optional else "")


def _devices_ok(value: Any) -> bool:
    if value == "auto" or value == -1:
        return True
    if _is_int(value):
        return value >= 1
    if isinstance(value, str):  # "2", "0,1", "-1"
        parts = [p.strip() for p in value.split(",") if p.strip()]
        return bool(parts) and all(p.lstrip("-").isdigit() for p in parts)
    if OmegaConf.is_list(value) or isinstance(value, list):
        return len(value) > 0 and all(_is_int(v) and v >= 0 for v in value)
    return False


def _overfit_ok(value: Any) -> bool:
    return (_is_int(value) and value >= 0) or (isinstance(value, float) and 0.0 <= value <= 1.0)


# key -> (check, what a valid value is); keys absent from a config (evaluate has no
# trainer) are skipped
VALUE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: _is_int(v) and 0 <= v < 2**32, "an integer in [0, 2**32 - 1]"),
    "trainer.max_epochs": _int_at_least(1),
    "trainer.min_epochs": _int_at_least(0, optional=True),
    "trainer.num_nodes": _int_at_least(1),
    "trainer.check_val_every_n_epoch": _int_at_least(1, optional=True),
    "trainer.log_every_n_steps": _int_at_least(1, optional=True),
    "trainer.accumulate_grad_batches": _int_at_least(1),
    "trainer.num_sanity_val_steps": _int_at_least(-1, optional=True),
    "trainer.gradient_clip_val": _number_in(0.0, optional=True),
    "trainer.accelerator": (lambda v: v in ACCELERATORS, f"one of {', '.join(ACCELERATORS)}"),
    "trainer.devices": (_devices_ok, 'an integer >= 1, -1, "auto", "0,1" or a list of ids'),
    "trainer.precision": (lambda v: str(v) in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
    "trainer.overfit_batches": (_overfit_ok, "a batch count >= 0 or a fraction in [0, 1]"),
    "trainer.fast_dev_run": (
        lambda v: isinstance(v, bool) or (_is_int(v) and v >= 0),
        "true/false or a batch count >= 0",
    ),
    "data.batch_size": _int_at_least(1),
    "data.eval_batch_size": _int_at_least(1, optional=True),
    "data.num_workers": _int_at_least(0),
    "data.max_faces_per_video": _int_at_least(1, optional=True),
    "module.head_hidden": _int_at_least(1, optional=True),
    "module.head_dropout": _number_in(0.0, 1.0, high_open=True),
    "module.label_smoothing": _number_in(0.0, 1.0, high_open=True),
    "module.unfreeze_last": _int_at_least(0),
    "module.backbone_lr": _number_in(0.0, optional=True),
    "optimizer.lr": _number_in(0.0),
    "model.input_size": _int_at_least(1),
}


def _select(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)


def _ratio_problems(ratios: Any) -> Iterator[str]:
    values = list(ratios)
    if len(values) != 3 or not all(_is_number(r) for r in values):
        yield f"split.ratios={values}: must be 3 numbers (train, val, test)"
    elif any(r < 0 for r in values):
        yield f"split.ratios={values}: must not be negative"
    elif abs(sum(values) - 1.0) > RATIO_TOLERANCE:
        yield f"split.ratios={values}: must sum to 1 (they sum to {sum(values):.6g})"


def _image_format_problems(image_format: str) -> Iterator[str]:
    if image_format in IMAGE_FORMATS:
        return
    lowered = image_format.lower().lstrip(".")
    canonical = IMAGE_FORMAT_ALIASES.get(lowered, lowered)
    hint = f" (write {canonical!r}: one name per format)" if canonical in IMAGE_FORMATS else ""
    choices = ", ".join(IMAGE_FORMATS)
    yield f"extraction.image_format={image_format!r}: must be one of {choices}{hint}"


def config_problems(cfg: DictConfig) -> list[str]:
    """Every value of ``cfg`` that is out of range, as ``key=value: what is expected`` lines."""
    problems = []
    missing = object()
    for key, (ok, expected) in VALUE_RULES.items():
        value = OmegaConf.select(cfg, key, default=missing, throw_on_resolution_failure=False)
        if value is not missing and not ok(value):
            problems.append(f"{key}={value!r}: must be {expected}")
    min_epochs, max_epochs = _select(cfg, "trainer.min_epochs"), _select(cfg, "trainer.max_epochs")
    if _is_int(min_epochs) and _is_int(max_epochs) and 1 <= max_epochs < min_epochs:
        problems.append(f"trainer.min_epochs={min_epochs}: must be <= trainer.max_epochs")
    ratios = _select(cfg, "split.ratios")
    if OmegaConf.is_list(ratios):
        problems.extend(_ratio_problems(ratios))
    image_format = _select(cfg, "extraction.image_format")
    if isinstance(image_format, str):
        problems.extend(_image_format_problems(image_format))
    return problems


def validate_config(cfg: DictConfig) -> DictConfig:
    """Check value ranges of a composed config before any work starts (types: the schemas).

    Raises :class:`ConfigValueError` listing every offending key. Returns ``cfg`` itself, its
    choices turned into plain strings (:func:`strip_choices`), so nothing stored holds an Enum.
    """
    problems = config_problems(cfg)
    if problems:
        raise ConfigValueError(
            "invalid configuration (nothing was run):\n  "
            + "\n  ".join(problems)
            + "\nFix the values on the command line or in the config files."
        )
    strip_choices(cfg)
    return cfg
