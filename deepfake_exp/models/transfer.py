"""Transfer-learning policies: which backbone parameters train, and at which learning rate.

The studies use three: full fine-tuning with a smaller backbone lr (CS4487: backbone 1e-4,
head 1e-3), a linear probe (Emory ResNets: "only the last layer trained"; Midway's all-frozen
MobileNet) and "unfreeze the last N layers" (Midway MobileNet: last 10). Blocks come from
``Backbone.blocks()``, so N counts the same units for every architecture.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from deepfake_exp.models.backbones import Backbone

# mode -> number of trailing blocks left trainable, given (number of blocks, unfreeze_last).
FREEZE_MODES: dict[str, Callable[[int, int], int]] = {
    "none": lambda total, _: total,  # full fine-tune
    "backbone": lambda total, _: 0,  # linear probe: only the head trains
    "last_n": lambda total, n: n,  # freeze all, then unfreeze the last n blocks
}


def apply_freeze(backbone: Backbone, mode: str, unfreeze_last: int = 0) -> None:
    """Set ``requires_grad`` on the backbone's parameters for a transfer mode.

    Fully frozen BatchNorm layers are also put (and, through ``Backbone.train``, kept) in
    eval mode, so their running statistics stay those of pre-training.

    Args:
        backbone: The feature extractor; the head is not touched.
        mode: ``"none"``, ``"backbone"`` or ``"last_n"``.
        unfreeze_last: Blocks to leave trainable in ``"last_n"`` mode.

    Raises:
        ValueError: Unknown mode, or ``unfreeze_last`` outside ``[0, len(blocks)]``.
    """
    if mode not in FREEZE_MODES:
        raise ValueError(f"unknown freeze mode {mode!r}; choose one of {sorted(FREEZE_MODES)}")
    blocks = backbone.blocks()
    if not 0 <= unfreeze_last <= len(blocks):
        raise ValueError(
            f"unfreeze_last={unfreeze_last} but {type(backbone).__name__} has {len(blocks)} blocks"
        )
    keep = FREEZE_MODES[mode](len(blocks), unfreeze_last)
    backbone.requires_grad_(mode == "none")
    for block in blocks[len(blocks) - keep :]:
        block.requires_grad_(True)
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
