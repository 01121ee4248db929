"""Model zoo: backbones (torchvision, EfficientNet, our ViT; timm in ``models.timm_backbone``),
heads and transfer policies.

``TimmBackbone`` is not imported here: timm is a second large import, paid only by configs
that name it (``model=timm``).
"""

from deepfake_exp.models.backbones import Backbone, EfficientNetBackbone, TorchvisionBackbone
from deepfake_exp.models.heads import HEADS, L2Normalize, build_head, fake_probability, head_loss
from deepfake_exp.models.transfer import FREEZE_MODES, apply_freeze, param_groups
from deepfake_exp.models.vit import VisionTransformer
from deepfake_exp.models.weights import PretrainedWeightsError, load_pretrained

__all__ = [
    "FREEZE_MODES",
    "HEADS",
    "Backbone",
    "EfficientNetBackbone",
    "L2Normalize",
    "PretrainedWeightsError",
    "TorchvisionBackbone",
    "VisionTransformer",
    "apply_freeze",
    "build_head",
    "fake_probability",
    "head_loss",
    "load_pretrained",
    "param_groups",
]
