"""Model zoo: backbones (torchvision, EfficientNet, our ViT), heads and transfer policies."""

from deepfake_exp.models.backbones import Backbone, EfficientNetBackbone, TorchvisionBackbone
from deepfake_exp.models.heads import HEADS, build_head, fake_probability, head_loss
from deepfake_exp.models.transfer import FREEZE_MODES, apply_freeze, param_groups
from deepfake_exp.models.vit import VisionTransformer, attention_rollout
from deepfake_exp.models.weights import PretrainedWeightsError, load_pretrained

__all__ = [
    "FREEZE_MODES",
    "HEADS",
    "Backbone",
    "EfficientNetBackbone",
    "PretrainedWeightsError",
    "TorchvisionBackbone",
    "VisionTransformer",
    "apply_freeze",
    "attention_rollout",
    "build_head",
    "fake_probability",
    "head_loss",
    "load_pretrained",
    "param_groups",
]
