"""Any timm model as a ``Backbone``: ``model=timm model.name=vit_base_patch16_clip_224.openai``.

timm knows, per pretrained tag, the input size and normalisation its weights expect (its
pretrained config, read through ``timm.data.resolve_data_config``); ``TimmBackbone.data_config``
hands them to the model config (``${model_data:mean}``), so a CLIP ViT gets CLIP's statistics
and a timm ResNet ImageNet's without a number in the YAML.

The classifier goes through timm's own API: the model is built with its pretrained head, so the
published file loads strictly, then ``reset_classifier(0)`` removes it; ``model(x)`` is then the
pooled (pre-logits) embedding, which is our ``forward_features`` contract (timm's own
``forward_features`` returns unpooled tokens or maps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
from timm.data import resolve_data_config
from timm.models import group_parameters
from torch import Tensor, nn

from deepfake_exp.models.backbones import Backbone, split_blocks
from deepfake_exp.models.weights import PretrainedWeightsError, hf_hub_error, read_state_dict


def timm_data_config(name: str) -> dict[str, Any]:
    """``input_size`` (square side), ``mean`` and ``std`` of ``name``'s pretrained config.

    Raises:
        ValueError: ``name`` is not a timm model, or its pretrained input is not square.
    """
    if not timm.is_model(name):
        raise ValueError(
            f"unknown timm model {name!r}; list them with timm.list_models('<pattern>', "
            "pretrained=True), e.g. vit_base_patch16_clip_224.openai"
        )
    pretrained = timm.models.get_pretrained_cfg(name)
    data = resolve_data_config(pretrained_cfg=pretrained.to_dict() if pretrained else {})
    _, height, width = data["input_size"]
    if height != width:
        raise ValueError(f"timm model {name!r} expects {height}x{width} inputs; only square sizes")
    return {"input_size": int(height), "mean": tuple(data["mean"]), "std": tuple(data["std"])}


class ParameterBlock(nn.Module):
    """Some parameters of a model seen as one block (a view: not registered in the model)."""

    def __init__(self, params: Sequence[nn.Parameter]) -> None:
        super().__init__()
        self.params = nn.ParameterList(params)


class TimmBackbone(Backbone):
    """A timm model without its classifier; ``forward_features`` is the pooled embedding.

    Blocks ("unfreeze the last N") are timm's own coarse parameter groups (``group_matcher``,
    what its layer-wise LR decay uses): for a ViT the stem (patch embedding, class token,
    position embedding), then one group per transformer block, the final norm with the last.
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        weights_path: str | None = None,
        input_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Build ``name``; ``weights_path`` (a local file) wins over ``pretrained`` (the hub).

        Args:
            name: timm model name with an optional pretrained tag (``arch.tag``).
            pretrained: Load timm's published weights from the Hugging Face hub cache.
            weights_path: A state dict of the full timm model (``.safetensors`` or ``.pth``,
                e.g. the hub's ``model.safetensors``); timm's checkpoint filter converts
                foreign layouts such as OpenAI CLIP's.
            input_size: Square side; None: the pretrained config's. A ViT is resized to it
                (position embeddings resampled, as timm does); a fixed-size model rejects others.
            mean: Normalisation mean; None: the pretrained config's.
            std: Normalisation std; None: the pretrained config's.
            model_kwargs: Extra ``timm.create_model`` arguments (``drop_path_rate``, ``depth``).
        """
        data = timm_data_config(name)
        super().__init__(
            data["input_size"] if input_size is None else input_size,
            data["mean"] if mean is None else mean,
            data["std"] if std is None else std,
        )
        model = _create(name, pretrained, weights_path, dict(model_kwargs or {}))
        model.reset_classifier(0)
        _set_input_size(model, name, self.input_size)
        self.name = name
        self.num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
        self.model = model

    @classmethod
    def data_config(cls, cfg: Mapping[str, Any]) -> dict[str, Any]:
        """The pretrained config's ``input_size``, ``mean`` and ``std`` of ``cfg["name"]``."""
        return timm_data_config(str(cfg["name"]))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.model(x)

    def blocks(self) -> list[nn.Module]:
        """timm's coarse parameter groups, input to output.

        A group that is exactly one module's parameters (a ResNet stage, a ViT block) is that
        module, so hooks on it work (Grad-CAM's target layer); otherwise it is a view.
        """
        if not hasattr(self.model, "group_matcher"):
            return split_blocks(self.model)
        params = dict(self.model.named_parameters())
        owners: dict[frozenset[int], nn.Module] = {}
        for module in self.model.modules():  # outermost first: it keeps the key
            owners.setdefault(frozenset(id(p) for p in module.parameters()), module)
        groups = group_parameters(self.model, self.model.group_matcher(coarse=True))
        blocks = []
        for _, names in sorted(groups.items()):
            group = [params[n] for n in names]
            owner = owners.get(frozenset(id(p) for p in group))
            blocks.append(owner if owner is not None else ParameterBlock(group))
        return blocks


def _create(
    name: str, pretrained: bool, weights_path: str | None, kwargs: dict[str, Any]
) -> nn.Module:
    """``timm.create_model`` with the pretrained head, weights from the hub cache or a file."""
    if weights_path is None and not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    if weights_path is not None:
        # timm's loader takes a state dict as the highest-priority source, then applies the
        # model's checkpoint filter and loads strictly (the head is still the pretrained one).
        state = dict(read_state_dict(weights_path))
        kwargs["pretrained_cfg_overlay"] = {"state_dict": state}
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except (OSError, RuntimeError) as err:
        # OSError: no cached file and no network (huggingface_hub's LocalEntryNotFoundError,
        # OfflineModeIsEnabled, HTTP errors); RuntimeError: keys or shapes do not match.
        if weights_path is not None:
            raise PretrainedWeightsError(
                f"weights from {Path(weights_path)} do not match timm model {name!r}: {err}"
            ) from err
        pretrained_cfg = timm.models.get_pretrained_cfg(name)
        raise hf_hub_error(name, getattr(pretrained_cfg, "hf_hub_id", None), err) from err


def _set_input_size(model: nn.Module, name: str, size: int) -> None:
    """Resize a ViT-like model to ``size``; reject sizes a fixed-size model cannot take."""
    if hasattr(model, "set_input_size"):
        model.set_input_size(img_size=(size, size))
        return
    expected = timm_data_config(name)["input_size"]
    if model.pretrained_cfg.get("fixed_input_size") and size != expected:
        raise ValueError(f"timm model {name!r} only takes {expected} px inputs, got {size}")
