"""What differs between a run's saved config and the config composed now.

Used twice: the report reuses a finished run only while its experiment composes to the same
config (:mod:`deepfake_exp.tasks.report.experiments`), and ``train resume=<run>`` refuses an
override that would change the run (:mod:`deepfake_exp.tasks.resume`).

A key the saved config lacks because it was added to the project after the run, and that now
holds its default value, is no change: new options default to the old behaviour, so a run made
before them is the same run. Nor is a project class that moved module: a ``_target_`` whose
old and new names import the same object (old names read through
:data:`deepfake_exp.utils.renamed.RENAMED_TARGETS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hydra import compose, initialize
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf, open_dict

from deepfake_exp import config as _config  # noqa: F401  (registers the schemas compose needs)
from deepfake_exp.utils.renamed import current_target

#: ``conf/`` relative to this file, as the entrypoints' ``config_path="../conf"``.
CONFIG_PATH = "../../conf"
ABSENT = "<absent>"
PROJECT = "deepfake_exp."  # only the project's own targets are imported to compare them


def same_target(before: Any, after: Any) -> bool:
    """Whether two ``_target_`` names of the project import the same object."""
    names = (current_target(before), current_target(after))
    if not all(isinstance(n, str) and n.startswith(PROJECT) for n in names):
        return False
    try:
        return get_object(names[0]) is get_object(names[1])
    except Exception:  # noqa: BLE001 - an old name that no longer imports is a change
        return False


def compose_train_config(overrides: list[str]) -> DictConfig:
    """The config ``deepfake_exp.train`` composes from ``overrides`` now (``hydra.*`` aside).

    Inside a Hydra app its initialised config search path is used; elsewhere the package's
    ``conf/`` (:data:`CONFIG_PATH`).
    """
    kept = [o for o in overrides if not o.lstrip("+~").startswith("hydra.")]
    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=kept)
    with initialize(version_base="1.3", config_path=CONFIG_PATH, job_name="config_diff"):
        return compose("train", overrides=kept)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> leaf value; lists and empty dicts are leaves (compared whole)."""
    if not isinstance(node, Mapping) or (not node and prefix):
        return {prefix[:-1]: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}{key}."))
    return flat


def resolved(cfg: DictConfig, paths: Any = None) -> dict[str, Any]:
    """``cfg`` flattened and resolved, with ``paths`` (a saved run's) in place of its own."""
    cfg = cfg.copy()
    if paths is not None:
        with open_dict(cfg):
            cfg.paths = paths
    return flatten(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


def default_values(paths: Any = None) -> dict[str, Any]:
    """The train config's defaults (no override), flattened; ``{}`` if it does not compose."""
    try:
        return resolved(compose_train_config([]), paths)
    except Exception:  # noqa: BLE001 - only a relaxation of the comparison depends on it
        return {}


def config_changes(
    old: dict[str, Any],
    new: dict[str, Any],
    skip: Callable[[str], bool] = lambda key: False,
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, tuple[Any, Any]]:
    """``key: (old, new)`` for every flattened key whose value differs.

    ``skip(key)`` leaves a key out; a key absent from ``old`` whose new value equals its
    value in ``defaults`` (added since, at its default) is no change.
    """
    defaults = defaults or {}
    changes = {}
    for key in sorted(old.keys() | new.keys()):
        if skip(key):
            continue
        before, after = old.get(key, ABSENT), new.get(key, ABSENT)
        if before == ABSENT and key in defaults and defaults[key] == after:
            continue
        if key.endswith("_target_") and before != after and same_target(before, after):
            continue
        if before != after:
            changes[key] = (before, after)
    return changes
