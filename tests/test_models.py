"""Model zoo: every model config builds and trains, freezing, param groups, heads, weights.

Every ``conf/model/*.yaml`` runs forward + backward on a batch of 2 at its own input size,
except models above 299 px (EfficientNet-B3..B7) or 40M parameters (VGG16, ResNet101), which
run at 128 px to keep the suite fast on 2 CPU cores. No test touches the network: the torch hub cache is a
temporary folder and ``urlopen`` is replaced by one that fails like a machine offline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision.models as tvm
from efficientnet_pytorch import EfficientNet
from efficientnet_pytorch.utils import efficientnet_params
from efficientnet_pytorch.utils import url_map as efficientnet_url_map
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from deepfake_exp.evaluation.rollout import attention_rollout
from deepfake_exp.models import (
    Backbone,
    EfficientNetBackbone,
    PretrainedWeightsError,
    TorchvisionBackbone,
    VisionTransformer,
    apply_freeze,
    build_head,
    fake_probability,
    head_loss,
    param_groups,
)
from deepfake_exp.models.backbones import strip_classifier
from deepfake_exp.models.weights import densenet_remap
from deepfake_exp.utils.data_config import IMAGENET_MEAN, IMAGENET_STD

TARGET_TORCHVISION = "deepfake_exp.models.backbones.TorchvisionBackbone"
MODEL_CONFIGS = sorted((Path(__file__).parents[1] / "conf" / "model").glob("*.yaml"))
MAX_TEST_SIZE = 299  # larger models (in pixels or parameters) are tested at SMALL_SIZE
MAX_TEST_PARAMS = 40_000_000
SMALL_SIZE = 128


def _config(name: str):
    return OmegaConf.load(Path(__file__).parents[1] / "conf" / "model" / f"{name}.yaml")


def _tiny_vit(**kwargs) -> VisionTransformer:
    args = dict(input_size=32, patch_size=8, embed_dim=32, mlp_dim=64, num_heads=4, depth=3)
    return VisionTransformer(**{**args, **kwargs})


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def _trainable(module: nn.Module) -> set[int]:
    return _ids(p for p in module.parameters() if p.requires_grad)


# --- every model config -------------------------------------------------------------------


def test_model_configs_cover_the_zoo():
    names = {path.stem for path in MODEL_CONFIGS}
    expected = {"vit", "resnet18", "resnet50", "resnet101", "vgg16", "inception_v3"}
    expected |= {"mobilenet_v2", "mobilenet_v3_large", "densenet121"}
    expected |= {f"efficientnet_b{i}" for i in range(8)}
    assert expected <= names


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.stem)
def test_model_config_instantiates_and_trains(path: Path):
    cfg = OmegaConf.load(path)
    assert cfg.pretrained is False and cfg.weights_path is None  # offline default
    if cfg._target_.endswith("TimmBackbone"):
        cfg.input_size = SMALL_SIZE  # a timm ViT is built for its size (CLIP ViT-B/16: 224)
    torch.manual_seed(0)
    model = instantiate(cfg)
    assert isinstance(model, Backbone)
    assert model.input_size == cfg.input_size
    assert model.mean == tuple(cfg.mean) and model.std == tuple(cfg.std)
    num_params = sum(p.numel() for p in model.parameters())
    small = model.input_size <= MAX_TEST_SIZE and num_params <= MAX_TEST_PARAMS
    size = model.input_size if small else SMALL_SIZE
    model.train()
    features = model.forward_features(torch.randn(2, 3, size, size))
    assert features.shape == (2, model.num_features)
    assert torch.isfinite(features).all()
    features.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters()), "a parameter gets no gradient"
    # Blocks partition the parameters, so "unfreeze the last N blocks" is well defined.
    block_params = [id(p) for block in model.blocks() for p in block.parameters()]
    assert len(block_params) == len(set(block_params)) == len(list(model.parameters()))


@pytest.mark.parametrize("variant", range(8))
def test_efficientnet_configs_use_native_resolution(variant: int):
    cfg = _config(f"efficientnet_b{variant}")
    assert cfg.arch == f"efficientnet-b{variant}"
    assert cfg.input_size == efficientnet_params(cfg.arch)[2]


def test_vit_config_matches_the_emory_study():
    model = instantiate(_config("vit"))
    assert (model.input_size, model.patch_size, model.num_features) == (224, 16, 256)
    assert model.embedding.pos_embedding.shape == (1, 1 + 14 * 14, 256)
    assert len(model.layers) == 6
    block = model.layers[0]
    assert block.attn.num_heads == 8 and block.mlp[0].out_features == 512


# --- backbones ----------------------------------------------------------------------------


def test_torchvision_backbone_removes_only_the_imagenet_classifier():
    vgg = TorchvisionBackbone("vgg16")
    assert vgg.num_features == 4096  # hidden FC layers stay, the 1000-way layer goes
    assert not any(isinstance(m, nn.Linear) and m.out_features == 1000 for m in vgg.modules())
    resnet = TorchvisionBackbone("resnet18")
    assert isinstance(resnet.model.fc, nn.Identity) and resnet.num_features == 512


def test_unknown_arch_and_missing_classifier_are_rejected():
    with pytest.raises(ValueError, match="unknown torchvision arch 'resnet17'"):
        TorchvisionBackbone("resnet17")
    with pytest.raises(ValueError, match="no final 1000-way"):
        strip_classifier(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(8, 10)))


def test_inception_from_scratch_has_no_aux_branch():
    model = TorchvisionBackbone("inception_v3", input_size=299)
    assert model.model.AuxLogits is None and not model.model.aux_logits
    assert not model.model.transform_input  # only ImageNet weights expect [-1, 1] inputs


# --- ViT ----------------------------------------------------------------------------------


def test_vit_rejects_sizes_that_do_not_tile_into_patches():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        VisionTransformer(input_size=100, patch_size=16)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        VisionTransformer(embed_dim=100, num_heads=8)
    with pytest.raises(ValueError, match="not a multiple of patch_size=8"):
        _tiny_vit()(torch.randn(1, 3, 36, 36))


def test_vit_runs_at_another_resolution_by_resizing_position_embeddings():
    model = _tiny_vit().eval()
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, 32)
    pos = model.embedding.position_embedding(4, 4)  # the trained grid: unchanged
    assert pos is model.embedding.pos_embedding
    assert model.embedding.position_embedding(6, 6).shape == (1, 1 + 36, 32)


def test_vit_attention_maps_and_rollout():
    model = _tiny_vit().eval()
    with pytest.raises(RuntimeError, match="store_attention"):
        model.attention_maps()
    model.store_attention = True
    model(torch.randn(2, 3, 32, 32))
    maps = model.attention_maps()
    assert len(maps) == 3 and all(m.shape == (2, 4, 17, 17) for m in maps)
    assert torch.allclose(maps[0].sum(-1), torch.ones(2, 4, 17), atol=1e-5)
    rollout = attention_rollout(maps)
    assert rollout.shape == (2, 4, 4) and (rollout >= 0).all()
    # Uniform attention everywhere spreads the CLS token evenly over the patches.
    uniform = [torch.full((1, 2, 17, 17), 1 / 17) for _ in range(3)]
    flat = attention_rollout(uniform)
    assert torch.allclose(flat, flat.mean().expand_as(flat))
    model.store_attention = False
    model(torch.randn(1, 3, 32, 32))
    assert all(block.attention is None for block in model.layers)


# --- freezing and parameter groups --------------------------------------------------------

FREEZE_MODELS = {
    "resnet18": lambda: TorchvisionBackbone("resnet18"),
    "efficientnet_b0": lambda: EfficientNetBackbone("efficientnet-b0"),
    "vit": _tiny_vit,
}


@pytest.mark.parametrize("name", FREEZE_MODELS)
def test_freeze_modes_leave_exactly_the_intended_parameters_trainable(name: str):
    model = FREEZE_MODELS[name]()
    everything = _ids(model.parameters())
    blocks = model.blocks()

    apply_freeze(model, "backbone")
    assert _trainable(model) == set()

    apply_freeze(model, "last_n", unfreeze_last=3)
    assert _trainable(model) == _ids(p for block in blocks[-3:] for p in block.parameters())
    assert _trainable(model) < everything

    apply_freeze(model, "none")
    assert _trainable(model) == everything

    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    if norms:  # GenD's LayerNorm-only tuning
        apply_freeze(model, "layernorm")
        assert _trainable(model) == _ids(p for m in norms for p in m.parameters())
    else:
        with pytest.raises(ValueError, match="has no LayerNorm with parameters"):
            apply_freeze(model, "layernorm")


def test_library_model_configs_take_imagenet_statistics_from_the_one_constant():
    for name in ("resnet18", "efficientnet_b0", "inception_v3"):
        cfg = _config(name)
        assert tuple(cfg.mean) == IMAGENET_MEAN and tuple(cfg.std) == IMAGENET_STD
        assert OmegaConf.to_container(cfg)["mean"] == "${model_data:mean}"  # not a copy
    overridden = OmegaConf.merge(_config("resnet18"), {"mean": [0.5, 0.5, 0.5]})
    assert instantiate(overridden).mean == (0.5, 0.5, 0.5)  # model.mean=... still wins


def test_model_data_resolver_names_bad_uses():
    bad_key = OmegaConf.create({"_target_": TARGET_TORCHVISION, "x": "${model_data:colour}"})
    with pytest.raises(Exception, match="must be one of"):
        _ = bad_key.x
    no_target = OmegaConf.create({"mean": "${model_data:mean}"})
    with pytest.raises(Exception, match="model config with a _target_"):
        _ = no_target.mean
    no_size = OmegaConf.create({"_target_": TARGET_TORCHVISION, "s": "${model_data:input_size}"})
    with pytest.raises(Exception, match="declares no input_size"):
        _ = no_size.s
    not_a_model = OmegaConf.create({"_target_": "torch.nn.Linear", "mean": "${model_data:mean}"})
    with pytest.raises(Exception, match="torch.nn.Linear has no data_config"):
        _ = not_a_model.mean


def test_frozen_batchnorm_stays_in_eval_mode_and_keeps_its_statistics():
    model = TorchvisionBackbone("resnet18")
    apply_freeze(model, "last_n", unfreeze_last=2)  # layer4[0], layer4[1]
    model.train()  # what Lightning calls each epoch
    frozen_bn, live_bn = model.model.bn1, model.model.layer4[1].bn2
    assert not frozen_bn.training and live_bn.training
    before = frozen_bn.running_mean.clone(), live_bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(frozen_bn.running_mean, before[0])
    assert not torch.equal(live_bn.running_mean, before[1])
    apply_freeze(model, "none")
    assert frozen_bn.training


def test_apply_freeze_rejects_bad_arguments():
    model = _tiny_vit()
    with pytest.raises(ValueError, match="unknown freeze mode 'partial'"):
        apply_freeze(model, "partial")
    with pytest.raises(ValueError, match="unfreeze_last=6 but VisionTransformer has 5 blocks"):
        apply_freeze(model, "last_n", unfreeze_last=6)


def test_param_groups_carry_the_lrs_and_cover_trainable_params_once():
    backbone = _tiny_vit()
    head = build_head("softmax", backbone.num_features, hidden=16)
    apply_freeze(backbone, "last_n", unfreeze_last=2)
    groups = param_groups(backbone, head, lr=1e-3, backbone_lr=1e-4)
    assert [(g["name"], g["lr"]) for g in groups] == [("backbone", 1e-4), ("head", 1e-3)]
    listed = [id(p) for g in groups for p in g["params"]]
    assert len(listed) == len(set(listed))
    assert set(listed) == _trainable(backbone) | _trainable(head)
    optimizer = torch.optim.Adam(groups)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-4, 1e-3]

    apply_freeze(backbone, "backbone")
    same = param_groups(backbone, head, lr=3e-5, backbone_lr=None)
    assert [(g["name"], g["lr"]) for g in same] == [("head", 3e-5)]


def test_param_groups_list_a_shared_parameter_once():
    shared = nn.Linear(4, 4)
    groups = param_groups(nn.Sequential(shared), nn.Sequential(shared, nn.Linear(4, 1)), 1e-3)
    listed = [id(p) for g in groups for p in g["params"]]
    assert len(listed) == len(set(listed)) == 4


# --- heads --------------------------------------------------------------------------------


@pytest.mark.parametrize("hidden", [None, 1024])
@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_head_probabilities_and_one_step_lowers_the_loss(kind: str, hidden: int | None):
    torch.manual_seed(0)
    features, target = torch.randn(16, 32), torch.randint(0, 2, (16,))
    head = build_head(kind, 32, hidden=hidden, dropout=0.0)
    logits = head(features)
    assert logits.shape == (16, 2 if kind == "softmax" else 1)
    prob = fake_probability(kind, logits)
    assert prob.shape == (16,) and ((prob >= 0) & (prob <= 1)).all()
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1)
    loss = head_loss(kind, logits, target, label_smoothing=0.1)
    loss.backward()
    optimizer.step()
    assert head_loss(kind, head(features), target, label_smoothing=0.1) < loss


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_sigmoid_and_softmax_heads_agree_on_equivalent_logits(smoothing: float):
    """A fake logit z is the two-class logits (0, z): same P(fake), same smoothed loss."""
    z, target = torch.randn(8, 1), torch.randint(0, 2, (8,))
    pair = torch.cat([torch.zeros_like(z), z], dim=1)
    assert torch.allclose(fake_probability("sigmoid", z), fake_probability("softmax", pair))
    assert torch.allclose(
        head_loss("sigmoid", z, target, smoothing), head_loss("softmax", pair, target, smoothing)
    )


def test_heads_reject_unknown_kinds_and_wrong_shapes():
    with pytest.raises(ValueError, match="unknown head kind 'tanh'"):
        build_head("tanh", 8)
    with pytest.raises(ValueError, match=r"expects logits of shape \(B, 1\)"):
        fake_probability("sigmoid", torch.zeros(4, 2))
    with pytest.raises(ValueError, match="label_smoothing"):
        head_loss("softmax", torch.zeros(4, 2), torch.zeros(4), label_smoothing=1.0)


# --- pretrained weights -------------------------------------------------------------------


@dataclass
class OfflineHub:
    checkpoints: Path  # the temporary torch hub cache's checkpoints folder
    attempts: list[str] = field(default_factory=list)  # URLs a download was tried for

    def seed(self, url: str, state: dict) -> None:
        """Save ``state`` where torch.hub caches ``url``: under the URL's file name."""
        torch.save(state, self.checkpoints / url.rsplit("/", 1)[1])


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> OfflineHub:
    """An empty torch hub cache in ``tmp_path``, and a network that is down."""
    hub = OfflineHub(tmp_path / "hub" / "checkpoints")
    hub.checkpoints.mkdir(parents=True)

    def no_network(request, *args, **kwargs):
        hub.attempts.append(request.full_url)
        raise URLError("network disabled in tests")

    # torch.hub.set_dir has no undo; patching its private value lets monkeypatch restore it.
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    return hub


def _assert_loaded(model: nn.Module, saved: dict, skip: tuple[str, ...] = ()) -> None:
    loaded = model.state_dict()
    compared = [k for k in saved if not k.startswith(skip)]
    assert compared and all(torch.equal(loaded[k], saved[k]) for k in compared)


def test_torchvision_pretrained_reads_the_hub_cache(offline_hub):
    source = tvm.resnet18().state_dict()
    offline_hub.seed(tvm.get_model_weights("resnet18").DEFAULT.url, source)
    model = instantiate(_config("resnet18"), pretrained=True)
    _assert_loaded(model.model, source, skip=("fc.",))
    assert offline_hub.attempts == []


def test_torchvision_pretrained_offline_names_the_cache_file_and_override(offline_hub):
    expected = offline_hub.checkpoints / "resnet18-f37072fd.pth"
    assert tvm.ResNet18_Weights.DEFAULT.url.endswith(expected.name)
    with pytest.raises(PretrainedWeightsError) as err:
        TorchvisionBackbone("resnet18", pretrained=True)
    assert str(expected) in str(err.value) and "model.weights_path=" in str(err.value)
    assert offline_hub.attempts == [tvm.ResNet18_Weights.DEFAULT.url]
    assert not expected.exists()


def test_corrupt_cached_file_is_named_for_deletion(offline_hub):
    url = tvm.get_model_weights("resnet18").DEFAULT.url
    cached = offline_hub.checkpoints / url.rsplit("/", 1)[1]
    cached.write_bytes(b"truncated download")
    with pytest.raises(PretrainedWeightsError, match="delete the file") as err:
        TorchvisionBackbone("resnet18", pretrained=True)
    assert str(cached) in str(err.value) and offline_hub.attempts == []


def test_weights_path_loads_a_local_file_and_wins_over_the_hub(offline_hub, tmp_path):
    source = tvm.resnet18().state_dict()
    torch.save(source, tmp_path / "resnet18.pth")
    path = str(tmp_path / "resnet18.pth")
    model = TorchvisionBackbone("resnet18", pretrained=True, weights_path=path)
    _assert_loaded(model.model, source, skip=("fc.",))
    assert offline_hub.attempts == []


def test_weights_path_errors_are_clear(offline_hub, tmp_path):
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        TorchvisionBackbone("resnet18", weights_path=str(tmp_path / "missing.pth"))
    torch.save(tvm.resnet34().state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(PretrainedWeightsError, match="do not match ResNet"):
        TorchvisionBackbone("resnet18", weights_path=str(tmp_path / "resnet34.pth"))
    (tmp_path / "page.pth").write_text("<html>403 Forbidden</html>")
    with pytest.raises(PretrainedWeightsError, match="could not read weights file"):
        TorchvisionBackbone("resnet18", weights_path=str(tmp_path / "page.pth"))
    torch.save({"epoch": 3}, tmp_path / "not_weights.pth")
    with pytest.raises(PretrainedWeightsError, match="not a state dict"):
        TorchvisionBackbone("resnet18", weights_path=str(tmp_path / "not_weights.pth"))


def test_densenet_legacy_key_names_are_renamed(offline_hub, tmp_path):
    source = tvm.densenet121().state_dict()
    # torchvision's published file predates num_batches_tracked and uses "norm.1" names.
    legacy = {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
        for k, v in source.items()
        if not k.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert densenet_remap(source).keys() == source.keys()  # current names pass through
    torch.save(legacy, tmp_path / "densenet121-a639ec97.pth")
    model = TorchvisionBackbone(
        "densenet121", weights_path=str(tmp_path / "densenet121-a639ec97.pth")
    )
    tensors = {k: v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    _assert_loaded(model.model, tensors, skip=("classifier.",))


def test_inception_pretrained_loads_aux_weights_then_drops_them(offline_hub):
    source = tvm.inception_v3(aux_logits=True, init_weights=False).state_dict()
    offline_hub.seed(tvm.Inception_V3_Weights.DEFAULT.url, source)
    model = instantiate(_config("inception_v3"), pretrained=True)
    _assert_loaded(model.model, source, skip=("fc.", "AuxLogits."))
    assert model.model.transform_input and model.model.AuxLogits is None
    model.train()
    assert model(torch.randn(2, 3, 96, 96)).shape == (2, 2048)


def test_efficientnet_pretrained_reads_the_cache_file_the_library_uses(offline_hub):
    source = EfficientNet.from_name("efficientnet-b0").state_dict()  # random "ImageNet" weights
    offline_hub.seed(efficientnet_url_map["efficientnet-b0"], source)
    model = instantiate(_config("efficientnet_b0"), pretrained=True)
    _assert_loaded(model.model, source, skip=("_fc.",))
    reference = EfficientNet.from_pretrained("efficientnet-b0")  # the library's own loader
    _assert_loaded(reference, source)
    assert offline_hub.attempts == []


def test_efficientnet_offline_and_local_file(offline_hub, tmp_path):
    with pytest.raises(PretrainedWeightsError) as err:
        EfficientNetBackbone("efficientnet-b0", pretrained=True)
    assert str(offline_hub.checkpoints / "efficientnet-b0-355c32eb.pth") in str(err.value)
    assert "model.weights_path=" in str(err.value) and len(offline_hub.attempts) == 1
    source = EfficientNet.from_name("efficientnet-b0").state_dict()
    torch.save(source, tmp_path / "b0.pth")
    model = EfficientNetBackbone("efficientnet-b0", weights_path=str(tmp_path / "b0.pth"))
    _assert_loaded(model.model, source, skip=("_fc.",))


def test_vit_has_no_published_weights_but_loads_its_own_state_dict(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="no published weights"):
        _tiny_vit(pretrained=True)
    source = _tiny_vit()
    torch.save(source.state_dict(), tmp_path / "vit.pth")
    loaded = _tiny_vit(weights_path=str(tmp_path / "vit.pth"))
    _assert_loaded(loaded, source.state_dict())
