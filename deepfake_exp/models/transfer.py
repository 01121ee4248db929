"""Transfer-learning policies: which backbone parameters train, and at which learning rate.

The studies use three: full fine-tuning with a smaller backbone lr (CS4487: backbone 1e-4,
head 1e-3), a linear probe (Emory ResNets: "only the last layer trained"; Midway's all-frozen
MobileNet) and "unfreeze the last N layers" (Midway MobileNet: last 10). Blocks come from
``Backbone.blocks()``, so N counts the same units for every architecture. A fourth is GenD's
(Yermakov et al., WACV 2026): only the LayerNorm affine parameters (0.03% of a CLIP ViT-L/14)
and the head train.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from deepfake_exp.models.backbones import Backbone


def _everything(backbone: Backbone, blocks: list[nn.Module], n: int) -> list[nn.Module]:
    return [backbone]


def _nothing(backbone: Backbone, blocks: list[nn.Module], n: int) -> list[nn.Module]:
    return []


def _last_blocks(backbone: Backbone, blocks: list[nn.Module], n: int) -> list[nn.Module]:
    return blocks[len(blocks) - n :]


def _layer_norms(backbone: Backbone, blocks: list[nn.Module], n: int) -> list[nn.Module]:
    norms = [m for m in backbone.modules() if isinstance(m, nn.LayerNorm) and m.elementwise_affine]
    if not norms:
        raise ValueError(
            f"freeze=layernorm: {type(backbone).__name__} has no LayerNorm with parameters "
            "(a CNN normalises with BatchNorm); use freeze=backbone or last_n"
        )
    return norms


# mode -> the backbone modules left trainable, given (backbone, its blocks, unfreeze_last).
FREEZE_MODES: dict[str, Callable[[Backbone, list[nn.Module], int], list[nn.Module]]] = {
    "none": _everything,  # full fine-tune
    "backbone": _nothing,  # linear probe: only the head trains
    "last_n": _last_blocks,  # freeze all, then unfreeze the last n blocks
    "layernorm": _layer_norms,  # LayerNorm weights and biases only (GenD), plus the head
}


def apply_freeze(backbone: Backbone, mode: str, unfreeze_last: int = 0) -> None:
    """Set ``requires_grad`` on the backbone's parameters for a transfer mode.

    Fully frozen BatchNorm layers are also put (and, through ``Backbone.train``, kept) in
    eval mode, so their running statistics stay those of pre-training.

    Args:
        backbone: The feature extractor; the head is not touched.
        mode: A key of :data:`FREEZE_MODES` (``none``, ``backbone``, ``last_n``, ``layernorm``).
        unfreeze_last: Blocks to leave trainable in ``"last_n"`` mode.

    Raises:
        ValueError: Unknown mode, ``unfreeze_last`` outside ``[0, len(blocks)]``, or
            ``layernorm`` on a backbone without LayerNorm.
    """
    if mode not in FREEZE_MODES:
        raise ValueError(f"unknown freeze mode {mode!r}; choose one of {sorted(FREEZE_MODES)}")
    blocks = backbone.blocks()
    if not 0 <= unfreeze_last <= len(blocks):
        raise ValueError(
            f"unfreeze_last={unfreeze_last} but {type(backbone).__name__} has {len(blocks)} blocks"
        )
    trainable = FREEZE_MODES[mode](backbone, blocks, unfreeze_last)
    backbone.requires_grad_(False)
    for module in trainable:
        module.requires_grad_(True)
    backbone.train(backbone.training)


def param_groups(
    backbone: nn.Module, head: nn.Module, lr: float, backbone_lr: float | None = None
) -> list[dict]:
    """Optimizer parameter groups with differential learning rates, trainable params only.

    Args:
        backbone: Gets ``backbone_lr`` (``lr`` when None).
        head: Gets ``lr``.

    Returns:
        Named groups (``"backbone"``, ``"head"``, as LearningRateMonitor logs them); a group
        with nothing to train is left out, and a parameter shared by both is listed once.
    """
    seen: set[int] = set()
    groups = []
    for name, module, group_lr in (
        ("backbone", backbone, lr if backbone_lr is None else backbone_lr),
        ("head", head, lr),
    ):
        params = []
        for param in module.parameters():
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))
                params.append(param)
        if params:
            groups.append({"name": name, "params": params, "lr": group_lr})
    return groups
