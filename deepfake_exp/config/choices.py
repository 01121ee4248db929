"""Every string choice of the configs as a ``StrEnum`` built from its owner's registry.

A schema field typed with one of these fails at compose time, before any data is read, with
``Invalid value 'youdn', expected one of [fixed, f1, eer, youden]``. Each Enum is made from the
table the code dispatches on (``HEADS``, ``AGGREGATORS``, ...), so a new registry entry is a
valid value without touching this file. Member names equal their values (today's strings),
so configs and overrides are unchanged, a member compares and hashes equal to its string and
``str()`` gives the string; :func:`deepfake_exp.config.plain` turns them back into plain
strings before anything is stored.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from enum import Enum, StrEnum

# name -> (module, registry attribute, values used until the owner publishes the registry)
REGISTRIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "Head": ("deepfake_exp.models.heads", "HEADS", ()),
    "FreezeMode": ("deepfake_exp.models.transfer", "FREEZE_MODES", ()),
    "VideoAggregation": ("deepfake_exp.evaluation.aggregate", "AGGREGATORS", ()),
    "ThresholdCriterion": ("deepfake_exp.evaluation.threshold", "THRESHOLD_CRITERIA", ()),
    "SplitPolicy": ("deepfake_exp.data.splits", "POLICIES", ()),
    "TTAPolicy": ("deepfake_exp.inference.tta", "TTA_POLICIES", ()),
    "ExportFormat": ("deepfake_exp.inference.export", "FORMATS", ()),
    "BenchSection": ("deepfake_exp.benchmarks", "SECTIONS", ()),
    "FrameStrategy": ("deepfake_exp.preprocessing.settings", "STRATEGIES", ()),
    "OnMismatch": ("deepfake_exp.preprocessing.settings", "ON_MISMATCH", ()),
    "VideoBackend": ("deepfake_exp.data.video", "BACKENDS", ("auto", "pyav", "opencv")),
    "DetectorKeep": ("deepfake_exp.faces.detectors", "KEEP_MODES", ()),
    "Reducer": ("deepfake_exp.analysis.reduce", "REDUCERS", ()),
    "TSNEAffinity": ("deepfake_exp.analysis.reduce", "AFFINITIES", ()),
    "DataFormat": ("deepfake_exp.data.datamodule", "FORMATS", ("files",)),
}


def choice_enum(name: str, values: Iterable[str]) -> type[StrEnum]:
    """A ``StrEnum`` whose members are ``values`` (a registry's keys), named by their value."""
    return StrEnum(name, {value: value for value in values}, module=__name__, qualname=name)


def registry_values(module: str, attribute: str, fallback: tuple[str, ...]) -> list[str]:
    """The option names of a registry (a dict's keys or a tuple), in the registry's order.

    ``fallback`` covers a registry its owner has not published yet; an empty fallback means
    the registry must exist.
    """
    try:
        registry = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        if not fallback:
            raise
        return list(fallback)
    return [str(name) for name in registry]


def _build() -> dict[str, type[StrEnum]]:
    return {
        name: choice_enum(name, registry_values(*source)) for name, source in REGISTRIES.items()
    }


_ENUMS = _build()
Head = _ENUMS["Head"]
FreezeMode = _ENUMS["FreezeMode"]
VideoAggregation = _ENUMS["VideoAggregation"]
ThresholdCriterion = _ENUMS["ThresholdCriterion"]
SplitPolicy = _ENUMS["SplitPolicy"]
TTAPolicy = _ENUMS["TTAPolicy"]
ExportFormat = _ENUMS["ExportFormat"]
BenchSection = _ENUMS["BenchSection"]
FrameStrategy = _ENUMS["FrameStrategy"]
OnMismatch = _ENUMS["OnMismatch"]
VideoBackend = _ENUMS["VideoBackend"]
DetectorKeep = _ENUMS["DetectorKeep"]
Reducer = _ENUMS["Reducer"]
TSNEAffinity = _ENUMS["TSNEAffinity"]
DataFormat = _ENUMS["DataFormat"]


def values_of(enum: type[Enum]) -> list[str]:
    """The valid spellings of a choice, for messages and tests."""
    return [member.value for member in enum]
