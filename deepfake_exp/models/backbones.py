"""Backbones: a library classifier with its ImageNet head removed, seen as a feature extractor.

Every backbone maps normalised images ``(B, 3, H, W)`` to a pooled embedding
``(B, num_features)`` through one method, ``forward_features``, used alike by training (the
head is built separately on ``num_features``), Grad-CAM and the cluster analysis. It also
carries the input size and normalisation it expects, and says what they are by default
(``data_config``), so a model config writes ``mean: ${model_data:mean}`` instead of the
numbers and the transforms read ``${model.mean}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torchvision.models as tvm
from efficientnet_pytorch import EfficientNet
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from deepfake_exp.models.weights import (
    densenet_remap,
    efficientnet_weights_url,
    load_pretrained,
    torchvision_weights_url,
)
from deepfake_exp.utils.data_config import IMAGENET_MEAN, IMAGENET_STD, imagenet_data

IMAGENET_CLASSES = 1000

# Containers whose children are the blocks (exact types: torchvision's Conv2dNormActivation
# and DenseNet's _Transition subclass nn.Sequential but are one block each).
_CONTAINERS = (nn.Sequential, nn.ModuleList)


def _triple(values: Sequence[float], name: str) -> tuple[float, float, float]:
    """Normalisation stats as a plain tuple (YAML gives a ListConfig)."""
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise ValueError(f"{name} needs one value per RGB channel, got {values}")
    return values  # type: ignore[return-value]


def split_blocks(module: nn.Module) -> list[nn.Module]:
    """The ordered layers of ``module`` that hold parameters, with plain containers opened.

    A ResNet gives ``conv1, bn1, layer1[0], ..., layer4[-1]``; a MobileNet its stem, each
    inverted residual and its last conv; an EfficientNet its stem, each MBConv block and its
    head conv. Every parameter belongs to exactly one block, so "unfreeze the last N blocks"
    is well defined for any architecture without a per-model list.
    """
    blocks: list[nn.Module] = []
    for child in module.children():
        if type(child) in _CONTAINERS:
            blocks.extend(split_blocks(child))
        elif any(True for _ in child.parameters()):
            blocks.append(child)
    return blocks


def strip_classifier(model: nn.Module) -> int:
    """Replace the library's ImageNet classifier (its last ``nn.Linear``) by ``nn.Identity``.

    The one place heads are removed, for every library model: torchvision's ``fc`` (ResNet,
    Inception), ``classifier[-1]`` (VGG, MobileNet) or ``classifier`` (DenseNet), and
    efficientnet-pytorch's ``_fc``. Dropout and hidden layers before it stay in the backbone,
    as the library trained them.

    Returns:
        The classifier's input width: the backbone's ``num_features``.
    """
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1][1].out_features != IMAGENET_CLASSES:
        raise ValueError(f"{type(model).__name__} has no final {IMAGENET_CLASSES}-way nn.Linear")
    name, linear = linears[-1]
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name), attr, nn.Identity())
    return linear.in_features


class Backbone(nn.Module):
    """Feature extractor: images ``(B, 3, H, W)`` normalised -> pooled embedding ``(B, F)``.

    Attributes:
        num_features: Width ``F`` of the embedding; the head is built on it.
        input_size: Square side the model expects (the transforms resize to it).
        mean: Per-channel normalisation mean the weights were trained with.
        std: Per-channel normalisation std.
    """

    num_features: int

    def __init__(
        self,
        input_size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.mean = _triple(mean, "mean")
        self.std = _triple(std, "std")

    @classmethod
    def data_config(cls, cfg: Mapping[str, Any]) -> dict[str, Any]:
        """Default ``input_size`` / ``mean`` / ``std`` for a model config (``${model_data:…}``).

        The library backbones' weights were trained on ImageNet, so the base answer is its
        statistics; the input size is the model config's own (it differs per model).
        """
        return dict(imagenet_data())

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled embedding ``(B, num_features)``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)

    def blocks(self) -> list[nn.Module]:
        """Ordered top-level blocks, input to output; used by "unfreeze the last N"."""
        return split_blocks(self)

    def train(self, mode: bool = True) -> Backbone:
        """Switch mode, keeping fully frozen BatchNorm layers in eval mode.

        A frozen layer should compute what it computed in pre-training; BatchNorm in train
        mode would still normalise with batch statistics and drift its running averages.
        Overriding ``train`` keeps that true across Lightning's per-epoch ``model.train()``.
        """
        super().train(mode)
        if mode:
            for module in self.modules():
                params = list(module.parameters(recurse=False))
                if (
                    isinstance(module, _BatchNorm)
                    and params
                    and not any(p.requires_grad for p in params)
                ):
                    module.eval()
        return self


class _LibraryBackbone(Backbone):
    """A library classifier (``self.model``) used up to, not including, its ImageNet head."""

    def __init__(
        self,
        model: nn.Module,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__(input_size, mean, std)
        self.num_features = strip_classifier(model)
        self.model = model

    def forward_features(self, x: Tensor) -> Tensor:
        return self.model(x)

    def blocks(self) -> list[nn.Module]:
        return split_blocks(self.model)


# Constructor arguments torchvision's own builder sets when it loads ImageNet weights,
# keyed by model family (the builder's module): (from scratch, with ImageNet weights).
_FAMILY_KWARGS: dict[str, tuple[dict, dict]] = {
    "inception": (
        {"aux_logits": False, "init_weights": True},
        {"aux_logits": True, "transform_input": True, "init_weights": False},
    ),
}
_FAMILY_REMAP = {"densenet": densenet_remap}


def _torchvision_family(arch: str) -> str:
    return tvm.get_model_builder(arch).__module__.rpartition(".")[2]


class TorchvisionBackbone(_LibraryBackbone):
    """Any torchvision classification model (resnet18/50/101, vgg16, inception_v3, ...).

    InceptionV3: its auxiliary classifier is needed to load the ImageNet file (which holds
    its weights) and then dropped, so training sees plain logits and aux logits are ignored.
    With weights it also gets ``transform_input=True``, as torchvision sets: the weights
    expect inputs in [-1, 1] and the model converts ImageNet-normalised ones itself.
    """

    def __init__(
        self,
        arch: str,
        pretrained: bool = False,
        weights_path: str | None = None,
        input_size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        """Build ``arch``; ``weights_path`` (a local state dict) wins over ``pretrained``."""
        known = tvm.list_models(module=tvm)
        if arch not in known:
            raise ValueError(f"unknown torchvision arch {arch!r}; classification models: {known}")
        family = _torchvision_family(arch)
        load = pretrained or weights_path is not None
        scratch_kwargs, imagenet_kwargs = _FAMILY_KWARGS.get(family, ({}, {}))
        model = tvm.get_model(arch, weights=None, **(imagenet_kwargs if load else scratch_kwargs))
        if load:
            load_pretrained(
                model,
                url=torchvision_weights_url(arch),
                weights_path=weights_path,
                remap=_FAMILY_REMAP.get(family),
                check_hash=True,
            )
        if getattr(model, "AuxLogits", None) is not None:
            model.AuxLogits = None
            model.aux_logits = False
        super().__init__(model, input_size, mean, std)
        self.arch = arch


class EfficientNetBackbone(_LibraryBackbone):
    """efficientnet-pytorch's EfficientNet-B0..B7 (the York study used B7).

    The model is built for ``input_size`` (its "same" padding is computed for that size), so
    set it to the resolution the transforms produce (native: B0 224 ... B7 600).
    """

    def __init__(
        self,
        arch: str,
        pretrained: bool = False,
        weights_path: str | None = None,
        input_size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        batch_norm_momentum: float | None = None,
    ) -> None:
        """Build ``arch``; ``weights_path`` (a local state dict) wins over ``pretrained``.

        ``batch_norm_momentum`` is the library's TF-style value (default 0.99, i.e. PyTorch's
        0.01): from random weights a few hundred CPU steps leave the running statistics near
        their initial values and eval-mode outputs near-constant; 0.9 (PyTorch's 0.1) suits
        such short runs.
        """
        extra = {} if batch_norm_momentum is None else {"batch_norm_momentum": batch_norm_momentum}
        model = EfficientNet.from_name(arch, image_size=int(input_size), **extra)
        if pretrained or weights_path is not None:
            load_pretrained(model, url=efficientnet_weights_url(arch), weights_path=weights_path)
        super().__init__(model, input_size, mean, std)
        self.arch = arch
