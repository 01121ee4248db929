"""Schemas derived from the class a config block builds, so its fields are written once.

``extraction:`` builds an ``ExtractionConfig``; writing its fields again as a schema dataclass
made two definitions that drifted. :func:`schema_of` reads the fields (names, annotations,
defaults) from the class itself, adds ``_target_`` and swaps the string choices for their
Enums, so a misspelled value still fails at compose time.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from enum import Enum
from typing import Any

from omegaconf import OmegaConf


def _omegaconf_type(annotation: Any, default: Any) -> Any:
    """``annotation`` when OmegaConf can type a field with it, else ``Any`` (tuples, ...)."""
    probe = dataclasses.make_dataclass("Probe", [("value", annotation, default)])
    try:
        OmegaConf.structured(probe)
    except Exception:  # OmegaConf raises several types for an unsupported annotation
        return Any
    return annotation


def _optional(enum: type[Enum], annotation: Any) -> Any:
    return enum | None if type(None) in typing.get_args(annotation) else enum


def schema_of(
    target: type,
    name: str,
    choices: dict[str, type[Enum]] | None = None,
    exclude: tuple[str, ...] = (),
) -> type:
    """A dataclass schema with ``target``'s constructor arguments and ``_target_`` first.

    Args:
        target: A class whose ``__init__`` arguments are the block's keys (a dataclass or not).
        name: The schema's class name (shown in OmegaConf's errors as ``object_type``).
        choices: Argument name -> Enum of its valid strings.
        exclude: Arguments the task passes itself (``instantiate(cfg.module, backbone=...)``).
    """
    choices = choices or {}
    hints = typing.get_type_hints(target.__init__)
    specs: list[tuple[str, Any, Any]] = [
        ("_target_", str, dataclasses.field(default=f"{target.__module__}.{target.__qualname__}"))
    ]
    for parameter in list(inspect.signature(target).parameters.values()):
        skipped = parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        if skipped or parameter.name in exclude:
            continue
        default = parameter.default
        annotation = hints.get(parameter.name, Any)
        if parameter.name in choices:
            enum = choices[parameter.name]
            annotation = _optional(enum, annotation)
            default = default if default in (None, inspect.Parameter.empty) else enum(default)
        else:
            annotation = _omegaconf_type(annotation, _field_default(default))
        specs.append((parameter.name, annotation, _field_default(default)))
    return dataclasses.make_dataclass(name, specs)


def _field_default(default: Any) -> Any:
    if default is inspect.Parameter.empty:
        return dataclasses.field(default="???")  # OmegaConf's MISSING
    if isinstance(default, list | tuple):  # mutable in a config: a fresh list per instance
        return dataclasses.field(default_factory=lambda: list(default))
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default))
    return dataclasses.field(default=default)
