"""Project classes that moved module: stored configs name them by their old path.

Run folders and checkpoints made before a move keep their ``_target_`` strings. They are
read through :func:`upgrade_targets` so an old run still loads, resumes and is reported as
the same run; the old modules themselves are gone (no alias packages to maintain).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: old ``_target_`` -> where the same object lives now (add a line when a class moves)
RENAMED_TARGETS: dict[str, str] = {
    "deepfake_exp.faces.extract.ExtractionConfig": (
        "deepfake_exp.preprocessing.settings.ExtractionConfig"
    ),
    "deepfake_exp.train.HistoryCSVLogger": "deepfake_exp.utils.loggers.HistoryCSVLogger",
}


def current_target(name: Any) -> Any:
    """``name`` as it is spelled today (unchanged when it did not move)."""
    return RENAMED_TARGETS.get(name, name) if isinstance(name, str) else name


def upgrade_targets(node: Any) -> Any:
    """A copy of a plain stored config with every moved ``_target_`` renamed."""
    if isinstance(node, Mapping):
        return {
            key: current_target(value) if key == "_target_" else upgrade_targets(value)
            for key, value in node.items()
        }
    if isinstance(node, list | tuple):
        return type(node)(upgrade_targets(value) for value in node)
    return node
