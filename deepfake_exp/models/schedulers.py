"""LR schedules that torch does not ship as one class. Each takes the optimizer first so a
``_partial_: true`` config can be called with it, like torch's own schedulers."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def no_schedule(optimizer: torch.optim.Optimizer) -> None:
    """``scheduler=none``: keep the optimizer's learning rate (no scheduler is attached)."""
    return None


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    warmup_epochs: int = 1,
    max_epochs: int = 10,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warm-up for ``warmup_epochs`` then cosine decay to ``min_lr_ratio`` * lr."""

    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        progress = (epoch - warmup_epochs) / max(max_epochs - warmup_epochs, 1)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return min_lr_ratio + (1.0 - min_lr_ratio) * cosine

    return LambdaLR(optimizer, factor)
