"""Input size and normalisation: asked of the model once, read by the transforms.

The ImageNet statistics live here, the one place in the code (torchvision and
efficientnet-pytorch weights, and the transforms' defaults, use them). A model config does not
repeat them: it writes ``mean: ${model_data:mean}``, and the ``model_data`` resolver asks the
class named by the config's ``_target_`` for its data config (``Backbone.data_config``: ImageNet
for torchvision/EfficientNet, the pretrained config for a timm model). The augmentation configs
read ``${model.mean}``, so the transforms see what the model declared.

This module sits in ``utils`` so the data layer can import the constants; the resolver imports
the model class by name only when a config is resolved.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import Container, DictConfig, ListConfig, OmegaConf

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

RESOLVER = "model_data"
DATA_KEYS = ("input_size", "mean", "std")


def model_data(key: str, *, _parent_: Container) -> Any:
    """``${model_data:<key>}``: ``input_size``, ``mean`` or ``std`` from the model class.

    Args:
        key: One of :data:`DATA_KEYS`.
        _parent_: The model config holding the interpolation (OmegaConf passes it).

    Raises:
        ValueError: ``key`` is not a data key, or the node is not a model config.
    """
    if key not in DATA_KEYS:
        raise ValueError(f"${{{RESOLVER}:{key}}}: the key must be one of {list(DATA_KEYS)}")
    if not isinstance(_parent_, DictConfig) or "_target_" not in _parent_:
        raise ValueError(f"${{{RESOLVER}:{key}}} must be a value of a model config with a _target_")
    module, _, name = str(_parent_._target_).rpartition(".")
    model_class = getattr(importlib.import_module(module), name)
    if not hasattr(model_class, "data_config"):
        raise ValueError(
            f"${{{RESOLVER}:{key}}}: {_parent_._target_} has no data_config (a Backbone has); "
            f"set model.{key} in the model config"
        )
    data = model_class.data_config(_parent_)
    if key not in data:
        raise ValueError(
            f"{model_class.__name__} declares no {key}; set model.{key} in the model config"
        )
    value = data[key]
    return list(value) if isinstance(value, Sequence | ListConfig) else value


def register_resolvers() -> None:
    """Register ``${model_data:...}`` (idempotent: every ``import deepfake_exp`` calls it)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, model_data)


def imagenet_data() -> Mapping[str, tuple[float, float, float]]:
    """The normalisation ImageNet-trained weights expect (torchvision, efficientnet-pytorch)."""
    return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
