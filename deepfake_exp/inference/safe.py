"""Rebuild objects from a checkpoint's stored config without letting the file run code.

A checkpoint carries the run's config, and Hydra's ``instantiate`` calls whatever ``_target_``
names, at any depth (``module.head_hidden: {_target_: builtins.exec, _args_: [...]}``).
``weights_only=True`` guards the pickle, not the config. So before anything is built, every
``_target_`` of a stored config is checked against an allow-list:

* the project's configurable components: classes defined in the modules of
  :data:`PROJECT_CLASS_MODULES`, functions defined in :data:`PROJECT_FUNCTION_MODULES`, and
  the project's own Lightning callbacks / loggers / profilers wherever they are defined (the
  name must resolve to an object *defined* in the project, so ``deepfake_exp.x.os.system``,
  a re-exported import, is refused; so are functions elsewhere, e.g. ``utils.io.write_json``);
* the library constructors the configs use (:data:`LIBRARY_RULES`): torchvision model
  builders, ``efficientnet_pytorch.EfficientNet``, ``timm.create_model``, torch optimizers and
  LR schedulers, albumentations transforms, Lightning's Trainer, callbacks, loggers, profilers.

Names are screened as strings first, so no module outside those packages is even imported.
Interpolations (``${...}``) are refused too: training stores its config resolved, so one in a
checkpoint can only be an attempt to compute a ``_target_`` (``${oc.decode:...}``) or read
the environment. ``_args_`` / ``_partial_`` / ``_recursive_`` / ``_convert_`` on a node without
an allowed ``_target_`` are refused as well.

``trust_checkpoint=true`` (predict, evaluate, export) skips the check for a file one made
oneself; it is off by default.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from deepfake_exp.utils.renamed import current_target

log = logging.getLogger(__name__)

TARGET = "_target_"
HYDRA_KEYS = ("_args_", "_partial_", "_recursive_", "_convert_")

PROJECT_CLASS_MODULES = (
    "deepfake_exp.models.backbones",
    "deepfake_exp.models.vit",
    "deepfake_exp.models.timm_backbone",
    "deepfake_exp.models.module",
    "deepfake_exp.data.transforms",
    "deepfake_exp.data.sbi",
    "deepfake_exp.data.datamodule",
    "deepfake_exp.data.sources",  # and its submodules
    "deepfake_exp.faces.detectors",
    "deepfake_exp.preprocessing.settings",  # ExtractionConfig
    "deepfake_exp.evaluation.robustness",  # perturbations of a run's robustness option
)
PROJECT_FUNCTION_MODULES = ("deepfake_exp.models.schedulers",)
LIGHTNING_BASES = (("callbacks", "Callback"), ("loggers", "Logger"), ("profilers", "Profiler"))

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+")


class UnsafeCheckpointError(ValueError):
    """A stored config names something the allow-list does not cover."""


def _subclass_of(*bases: tuple[str, str]) -> Callable[[Any], bool]:
    """A predicate: ``obj`` is a class deriving from one of ``(module, name)`` bases."""

    def check(obj: Any) -> bool:
        if not inspect.isclass(obj):
            return False
        resolved = [getattr(importlib.import_module(m), n, None) for m, n in bases]
        return any(isinstance(b, type) and issubclass(obj, b) for b in resolved)

    return check


def _torchvision_builder(obj: Any) -> bool:
    import torchvision.models as models

    builders = {models.get_model_builder(name) for name in models.list_models()}
    return inspect.isfunction(obj) and obj in builders


def _efficientnet(obj: Any) -> bool:
    from efficientnet_pytorch import EfficientNet

    if obj is EfficientNet:
        return True
    return inspect.ismethod(obj) and obj.__self__ is EfficientNet and obj.__name__ == "from_name"


def _timm_create_model(obj: Any) -> bool:
    import timm

    return obj is timm.create_model


def _lightning_component(obj: Any) -> bool:
    """A Lightning Trainer, callback, logger or profiler class (``pytorch_lightning`` or
    ``lightning.pytorch``, whichever is installed)."""
    for package in ("pytorch_lightning", "lightning.pytorch"):
        try:
            module = importlib.import_module(package)
        except ImportError:
            continue
        if obj is getattr(module, "Trainer", None):
            return True
        bases = [(f"{package}.{sub}", name) for sub, name in LIGHTNING_BASES]
        if _subclass_of(*bases)(obj):
            return True
    return False


# (package prefix, predicate on the resolved object, what it admits: for messages and docs)
LIBRARY_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("torchvision.models", _torchvision_builder, "torchvision model builders"),
    ("efficientnet_pytorch", _efficientnet, "efficientnet_pytorch.EfficientNet(.from_name)"),
    ("timm", _timm_create_model, "timm.create_model"),
    (
        "torch.optim",
        _subclass_of(
            ("torch.optim", "Optimizer"),
            ("torch.optim.lr_scheduler", "LRScheduler"),
            ("torch.optim.lr_scheduler", "ReduceLROnPlateau"),
        ),
        "torch optimizers and LR schedulers",
    ),
    (
        "albumentations",
        _subclass_of(
            ("albumentations.core.transforms_interface", "BasicTransform"),
            ("albumentations.core.composition", "BaseCompose"),
        ),
        "albumentations transforms",
    ),
    *(
        (package, _lightning_component, "Lightning Trainer and components")
        for package in ("pytorch_lightning", "lightning.pytorch")
    ),
)


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _locate(name: str, package: str) -> Any:
    """The object ``name`` refers to, importing only modules inside ``package``."""
    parts = name.split(".")
    depth = len(package.split("."))
    obj = importlib.import_module(package)
    for i in range(depth, len(parts)):
        try:
            obj = getattr(obj, parts[i])
        except AttributeError:
            obj = importlib.import_module(".".join(parts[: i + 1]))  # a submodule
    return obj


def _defined_in(obj: Any, modules: Sequence[str]) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return any(_under(module, m) for m in modules)


def target_refusal(name: Any) -> str | None:
    """Why ``name`` may not be instantiated from a stored config, or ``None`` if it may."""
    if not isinstance(name, str):
        return f"a _target_ must be a dotted name, not {type(name).__name__}"
    name = current_target(name)  # a class that moved module is judged where it lives now
    if not _NAME.fullmatch(name):
        return "not a plain dotted name (private or dunder parts are refused)"
    project = _under(name, "deepfake_exp")
    rules = [(p, check) for p, check, _ in LIBRARY_RULES if _under(name, p)]
    if not project and not rules:
        return "outside the allow-list"
    try:
        obj = _locate(name, "deepfake_exp" if project else rules[0][0])
    except (ImportError, AttributeError) as error:
        return f"cannot be resolved ({error})"
    if project:
        if inspect.isclass(obj) and _defined_in(obj, PROJECT_CLASS_MODULES):
            return None
        if inspect.isfunction(obj) and _defined_in(obj, PROJECT_FUNCTION_MODULES):
            return None
        if _defined_in(obj, ("deepfake_exp",)) and _lightning_component(obj):
            return None
        return "not one of the project's configurable components"
    if any(check(obj) for _, check in rules):
        return None
    return "not one of the allowed library constructors"


def is_allowed_target(name: Any) -> bool:
    """The default allow-list (see the module docstring)."""
    return target_refusal(name) is None


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """``(key path, node)`` for every node, depth first."""
    yield path, node
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list | tuple):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def _plain(cfg: Any) -> Any:
    """A DictConfig/ListConfig as plain containers *without* resolving interpolations."""
    if isinstance(cfg, DictConfig | ListConfig):
        return OmegaConf.to_container(cfg, resolve=False)
    return cfg


def find_unsafe(
    cfg: Any, allowed: Callable[[Any], bool] | None = None, key: str = ""
) -> list[tuple[str, str]]:
    """``(key path, problem)`` for every refused node of ``cfg``; empty when it is safe."""
    problems = []
    for path, node in _walk(_plain(cfg), key):
        if isinstance(node, str) and "${" in node:
            problems.append((path, f"interpolation {node!r} (stored configs are resolved)"))
        if not isinstance(node, Mapping):
            continue
        for name in node:
            if isinstance(name, str) and "${" in name:
                problems.append((f"{path}.{name}", "interpolation in a key"))
        where = f"{path}.{TARGET}" if path else TARGET
        if TARGET in node:
            target = node[TARGET]
            reason = (
                target_refusal(target)
                if allowed is None
                else (None if allowed(target) else "not allowed")
            )
            if reason:
                problems.append((where, f"{target!r}: {reason}"))
        else:
            extra = [k for k in HYDRA_KEYS if k in node]
            if extra:
                problems.append((path or "<root>", f"{', '.join(extra)} without a _target_"))
    return problems


def check_targets(
    cfg: Any, allowed: Callable[[Any], bool] | None = None, key: str = "", what: str = "config"
) -> None:
    """Raise :class:`UnsafeCheckpointError` naming every refused ``_target_`` of ``cfg``.

    Args:
        cfg: A stored config (dict / DictConfig), checked as stored: nothing is resolved.
        allowed: Predicate on a target name; ``None``: :func:`is_allowed_target` (whose
            reasons are then quoted in the message).
        key: Key path of ``cfg`` inside the stored config, prefixed to the paths reported.
        what: The file or source named in the message.
    """
    problems = find_unsafe(cfg, allowed, key)
    if not problems:
        return
    lines = "\n".join(f"  {path}: {problem}" for path, problem in problems)
    raise UnsafeCheckpointError(
        f"{what} asks to build something outside the allow-list, refused before anything "
        f"was instantiated:\n{lines}\nOnly the project's own components and the library "
        "constructors its configs use can be rebuilt from a checkpoint "
        "(deepfake_exp/inference/safe.py). If you made this file yourself and trust it, "
        "pass trust_checkpoint=true."
    )


def safe_instantiate(
    cfg: Any, *args: Any, trust: bool = False, key: str = "", what: str = "config", **kwargs: Any
) -> Any:
    """``hydra.utils.instantiate(cfg, *args, **kwargs)`` after :func:`check_targets`.

    Only ``cfg`` (the stored part) is checked; ``args``/``kwargs`` are objects the caller made.
    ``trust`` skips the check (``trust_checkpoint=true``).
    """
    if not trust:
        check_targets(cfg, key=key or _full_key(cfg), what=what)
    return instantiate(cfg, *args, **kwargs)


def _full_key(cfg: Any) -> str:
    """A DictConfig child's key path in its parent config (``augmentation``), else ``""``."""
    if isinstance(cfg, DictConfig) and cfg._get_parent() is not None:
        return str(cfg._get_full_key(None))
    return ""
