"""Classification heads on a backbone embedding: two-logit softmax or one-logit sigmoid.

The York study compares both on EfficientNet-B7. A head kind fixes three things that must
agree — the number of logits, the loss and how logits become P(fake) — so they live together
in one ``HEADS`` entry rather than in ``if kind == ...`` branches across the code.

A head can first L2-normalise the embedding (GenD, WACV 2026: features on the unit
hypersphere generalise better across datasets). Without the option the layer layout, and so
every checkpoint key, is what it always was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _softmax_loss(logits: Tensor, target: Tensor, label_smoothing: float) -> Tensor:
    return F.cross_entropy(logits, target.long(), label_smoothing=label_smoothing)


def _sigmoid_loss(logits: Tensor, target: Tensor, label_smoothing: float) -> Tensor:
    # y(1 - eps) + eps/2: the two-class case of cross-entropy's label smoothing.
    soft = target.float() * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return F.binary_cross_entropy_with_logits(logits.squeeze(-1), soft)


def _softmax_probability(logits: Tensor) -> Tensor:
    return torch.softmax(logits, dim=-1)[:, 1]


def _sigmoid_probability(logits: Tensor) -> Tensor:
    return torch.sigmoid(logits.squeeze(-1))


@dataclass(frozen=True)
class HeadKind:
    """What a head kind means: its logit count, loss and P(fake)."""

    num_logits: int
    loss: Callable[[Tensor, Tensor, float], Tensor]
    probability: Callable[[Tensor], Tensor]


HEADS: dict[str, HeadKind] = {
    "softmax": HeadKind(2, _softmax_loss, _softmax_probability),  # logits (real, fake), CE
    "sigmoid": HeadKind(1, _sigmoid_loss, _sigmoid_probability),  # one fake logit, BCE
}


def _kind(kind: str, logits: Tensor | None = None) -> HeadKind:
    """Look up ``kind`` and check the logits have its shape ``(B, num_logits)``."""
    if kind not in HEADS:
        raise ValueError(f"unknown head kind {kind!r}; choose one of {sorted(HEADS)}")
    spec = HEADS[kind]
    if logits is not None and (logits.ndim != 2 or logits.shape[1] != spec.num_logits):
        raise ValueError(
            f"{kind} head expects logits of shape (B, {spec.num_logits}), got {tuple(logits.shape)}"
        )
    return spec


class L2Normalize(nn.Module):
    """Scale each embedding ``(B, F)`` to unit Euclidean length."""

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, p=2.0, dim=-1)


def build_head(
    kind: str,
    in_features: int,
    hidden: int | None = None,
    dropout: float = 0.0,
    normalize: bool = False,
) -> nn.Module:
    """The head on ``in_features`` embeddings.

    Args:
        kind: ``"softmax"`` (2 logits) or ``"sigmoid"`` (1 logit).
        in_features: The backbone's ``num_features``.
        hidden: Width of one hidden layer, ``Linear -> ReLU -> Dropout -> Linear``; 1024 is the
            Midway MobileNet study's "GAP + Dense 1024 + Dense 2". None: ``Dropout -> Linear``.
        dropout: Dropout rate before the last linear layer.
        normalize: L2-normalise the embedding first (``module.normalize_features``): an
            ``L2Normalize`` layer in front of the others.
    """
    out = _kind(kind).num_logits
    if hidden is None:
        layers = [nn.Dropout(dropout), nn.Linear(in_features, out)]
    else:
        layers = [
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, out),
        ]
    return nn.Sequential(*([L2Normalize()] if normalize else []), *layers)


def head_loss(kind: str, logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean loss: cross-entropy for softmax, BCE-with-logits for sigmoid.

    Args:
        target: ``(B,)`` labels, 0 real / 1 fake.
        label_smoothing: Moves targets towards 0.5 by this fraction for both kinds.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    return _kind(kind, logits).loss(logits, target, label_smoothing)


def fake_probability(kind: str, logits: Tensor) -> Tensor:
    """``(B,)`` probability that each image is fake, in [0, 1]."""
    return _kind(kind, logits).probability(logits)
