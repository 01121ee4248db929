"""The one P(fake) path: normalised images in, the probability that each is fake out.

Training metrics, evaluation, prediction, test-time augmentation, export and Grad-CAM all go
through :class:`FakeProbability`, so a new head kind changes one function
(:func:`deepfake_exp.models.heads.fake_probability`) and every consumer follows.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from deepfake_exp.models.heads import fake_probability


class FakeProbability(nn.Module):
    """Backbone + head + the head's probability: ``(B, 3, S, S)`` in, P(fake) ``(B,)`` out.

    Holds the backbone and head, not the LightningModule: tracers walk every attribute, and
    Lightning's ``trainer`` property raises outside a Trainer.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, head_kind: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.head_kind = head_kind

    def forward(self, images: Tensor) -> Tensor:
        return fake_probability(self.head_kind, self.head(self.backbone(images)))

    def logits_model(self) -> nn.Module:
        """The same backbone and head without the probability: what Grad-CAM explains.

        The logits keep their gradient where P(fake) saturates at 0 or 1.
        """
        return nn.Sequential(self.backbone, self.head)


def fake_probability_model(module: Any) -> FakeProbability:
    """The P(fake) model of a trained detector (anything with ``backbone``, ``head`` and
    ``hparams["head"]``); a :class:`FakeProbability` is returned as it is."""
    if isinstance(module, FakeProbability):
        return module
    return FakeProbability(module.backbone, module.head, str(module.hparams["head"]))
