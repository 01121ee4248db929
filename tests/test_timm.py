"""timm backbones, tuning modes and normalised features: the GenD recipe on a tiny ViT.

No test touches the network: the Hugging Face hub cache is a temporary folder and the hub
client is in offline mode (``HF_HUB_OFFLINE``), so a missing file fails as on a machine
without network. Tiny models: ``vit_tiny_patch16_224`` with 2 blocks at 32 px.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
import pytorch_lightning as pl
import timm
import torch
from huggingface_hub import constants as hf_constants
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict
from safetensors.torch import save_file
from timm.data import resolve_data_config
from torch import nn

from deepfake_exp.evaluation.gradcam import explain
from deepfake_exp.models import PretrainedWeightsError, apply_freeze, build_head
from deepfake_exp.models.heads import L2Normalize, head_loss
from deepfake_exp.models.module import DeepfakeDetector
from deepfake_exp.models.timm_backbone import TimmBackbone, timm_data_config
from deepfake_exp.models.weights import hf_hub_repo_cache
from deepfake_exp.utils.data_config import IMAGENET_MEAN, IMAGENET_STD

CONF = Path(__file__).parents[1] / "conf"
TINY = "vit_tiny_patch16_224"
TINY_REPO = "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"  # its default tag's hub repo
TINY_KWARGS = {"depth": 2}
SIZE = 32
CLIP_L14 = "vit_large_patch14_clip_224.openai"  # GenD's backbone
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)


def _tiny(**kwargs) -> TimmBackbone:
    return TimmBackbone(TINY, input_size=SIZE, model_kwargs=TINY_KWARGS, **kwargs)


def _timm_config(**values) -> OmegaConf:
    return OmegaConf.merge(OmegaConf.load(CONF / "model" / "timm.yaml"), values)


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def _trainable(module: nn.Module) -> set[int]:
    return _ids(p for p in module.parameters() if p.requires_grad)


def _count(module: nn.Module, trainable: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


# --- input size, mean and std from timm's pretrained config -------------------------------


@pytest.mark.parametrize(
    ("name", "mean", "std"),
    [
        ("vit_base_patch16_clip_224.openai", CLIP_MEAN, (0.26862954, 0.26130258, 0.27577711)),
        ("resnet50.a1_in1k", IMAGENET_MEAN, IMAGENET_STD),
        (TINY, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ],
)
def test_model_config_reads_input_size_mean_std_from_timm(name: str, mean, std):
    cfg = _timm_config(name=name)
    assert (cfg.input_size, tuple(cfg.mean), tuple(cfg.std)) == (224, mean, std)
    expected = resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(name).to_dict())
    assert tuple(cfg.mean) == tuple(expected["mean"])
    assert timm_data_config(name)["input_size"] == expected["input_size"][-1]


def test_transforms_follow_the_timm_model(compose_cfg):
    name = "vit_base_patch16_clip_224.openai"
    cfg = compose_cfg("train", ["model=timm", f"model.name={name}", "augmentation=none"])
    augmentation = instantiate(cfg.augmentation)
    assert augmentation.mean == CLIP_MEAN and augmentation.input_size == 224
    smaller = compose_cfg("train", ["model=timm", "model.input_size=64"])
    assert instantiate(smaller.augmentation).input_size == 64  # an override still wins


def test_unknown_timm_name_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match="unknown timm model 'vit_tinyy'.*list_models"):
        TimmBackbone("vit_tinyy")
    with pytest.raises(Exception, match="unknown timm model"):
        _ = _timm_config(name="vit_tinyy").mean


# --- the backbone contract ----------------------------------------------------------------


def test_timm_vit_gives_pooled_embeddings_at_the_configured_size():
    torch.manual_seed(0)
    model = _tiny()
    assert (model.input_size, model.mean, model.num_features) == (SIZE, (0.5,) * 3, 192)
    features = model.forward_features(torch.randn(2, 3, SIZE, SIZE))
    assert features.shape == (2, 192) and torch.isfinite(features).all()
    assert model.model.pos_embed.shape == (1, 1 + (SIZE // 16) ** 2, 192)  # resized to 32 px
    assert not any(isinstance(m, nn.Linear) and m.out_features == 1000 for m in model.modules())


def test_timm_blocks_are_its_parameter_groups_and_partition_the_parameters():
    model = _tiny()
    blocks = model.blocks()
    assert len(blocks) == 1 + TINY_KWARGS["depth"]  # stem, then one per transformer block
    listed = [id(p) for block in blocks for p in block.parameters()]
    assert len(listed) == len(set(listed)) == len(list(model.parameters()))
    assert _ids(blocks[0].parameters()) >= {id(model.model.cls_token), id(model.model.pos_embed)}
    assert _ids(blocks[-1].parameters()) >= _ids(model.model.norm.parameters())  # with the last
    assert blocks[1] is model.model.blocks[0]  # a group that is one module is that module
    assert not any(blocks[0] is m for m in model.modules())  # others: views, no new keys
    assert model.state_dict().keys() == _tiny().state_dict().keys()


def test_a_timm_cnn_works_and_keeps_its_own_statistics():
    model = TimmBackbone("resnet18.a1_in1k", input_size=64)
    assert model.mean == IMAGENET_MEAN and model.num_features == 512
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 512)
    assert model.blocks()[-1] is model.model.layer4  # a real module: Grad-CAM's target layer
    detector = DeepfakeDetector(model).eval()
    maps, method = explain(detector, model, torch.randn(2, 3, 64, 64))
    assert method == "Grad-CAM" and maps.shape == (2, 64, 64) and (maps >= 0).all()


# --- tuning modes and their trainable-parameter counts ------------------------------------


def _layer_norm_parameters(depth: int, width: int) -> int:
    """Two LayerNorms per block plus the final one, each a weight and a bias of ``width``."""
    return (2 * depth + 1) * 2 * width


def test_each_tuning_mode_trains_exactly_what_it_says_on_a_timm_vit():
    model = _tiny()
    total = _count(model, trainable=False)

    apply_freeze(model, "none")
    assert _count(model) == total
    apply_freeze(model, "backbone")
    assert _count(model) == 0
    apply_freeze(model, "last_n", unfreeze_last=1)
    last = model.model.blocks[-1]
    assert _count(model) == _count(last, False) + _count(model.model.norm, False)
    apply_freeze(model, "layernorm")
    assert _count(model) == _layer_norm_parameters(TINY_KWARGS["depth"], 192)
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert _trainable(model) == _ids(p for m in norms for p in m.parameters())


def test_layernorm_tuning_of_clip_vit_l14_trains_003_percent_as_gend_reports():
    with torch.device("meta"):  # the architecture only: no 300M-parameter allocation
        model = TimmBackbone(CLIP_L14)
    apply_freeze(model, "layernorm")
    trainable, total = _count(model), _count(model, trainable=False)
    # 24 blocks x 2 LayerNorms, the pre-norm and the final norm, 1024 wide.
    assert trainable == (2 * 24 + 2) * 2 * 1024 == 102_400
    assert 300e6 < total < 310e6 and trainable / total == pytest.approx(0.0003, abs=0.00005)


def test_detector_parameter_counts_follow_the_tuning_mode():
    backbone = _tiny()
    detector = DeepfakeDetector(backbone, freeze="layernorm")
    head = sum(p.numel() for p in detector.head.parameters())
    counts = detector.parameter_counts()
    assert counts["n_params_trainable"] == _layer_norm_parameters(2, 192) + head
    assert counts["n_params_total"] == _count(backbone, False) + head


# --- normalised features ------------------------------------------------------------------


def test_normalised_head_sees_unit_length_embeddings():
    torch.manual_seed(0)
    head = build_head("softmax", 8, normalize=True)
    assert isinstance(head[0], L2Normalize)
    features = torch.randn(4, 8)
    assert torch.allclose(head[0](features).norm(dim=1), torch.ones(4))
    assert torch.allclose(head(features), head(features * 7.5))  # scale no longer matters
    plain = build_head("softmax", 8)
    assert [type(m) for m in plain] == [nn.Dropout, nn.Linear]  # checkpoint layout unchanged


# --- one training step of the GenD recipe on CPU ------------------------------------------


def test_gend_recipe_trains_one_step_moving_only_layernorms_and_head():
    torch.manual_seed(0)
    backbone = _tiny()
    detector = DeepfakeDetector(
        backbone,
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-2),
        freeze="layernorm",
        normalize_features=True,
    )
    assert isinstance(detector.head[0], L2Normalize)
    before = {n: p.detach().clone() for n, p in detector.named_parameters()}
    setup = detector.configure_optimizers()
    optimizer = setup["optimizer"] if isinstance(setup, dict) else setup
    batch = {"image": torch.randn(4, 3, SIZE, SIZE), "label": torch.tensor([0, 1, 0, 1])}
    detector.train()
    head_loss("softmax", detector(batch["image"]), batch["label"]).backward()
    optimizer.step()
    moved = {n for n, p in detector.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(".norm" in n or n.startswith("head.") for n in moved), moved
    assert any(n.startswith("head.") for n in moved)
    assert any("blocks.0.norm1" in n for n in moved)


# --- pretrained weights: Hugging Face hub cache, offline; local files ---------------------


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face hub cache in ``tmp_path``, with the hub client offline."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # huggingface_hub reads both once at import; its functions look them up at call time.
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return cache


def _seed_hub(cache: Path, repo_id: str, state: dict) -> Path:
    """Lay ``state`` out as ``hf_hub_download`` caches a repo's ``model.safetensors``."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    save_file({k: v.contiguous() for k, v in state.items()}, snapshot / "model.safetensors")
    return snapshot / "model.safetensors"


def _published() -> dict:
    """A stand-in for the hub's file: the full tiny timm model (classifier included)."""
    torch.manual_seed(1)
    return timm.create_model(TINY, **TINY_KWARGS).state_dict()


def _assert_loaded(model: TimmBackbone, saved: dict) -> None:
    loaded = model.model.state_dict()
    compared = [k for k in saved if not k.startswith(("head.", "pos_embed"))]
    assert compared and all(torch.equal(loaded[k], saved[k]) for k in compared)


def test_pretrained_reads_the_seeded_hub_cache_offline(hf_cache):
    source = _published()
    _seed_hub(hf_cache, TINY_REPO, source)
    model = _tiny(pretrained=True)
    _assert_loaded(model, source)
    assert model.model.pos_embed.shape[1] == 1 + (SIZE // 16) ** 2  # resampled from 224 px


def test_pretrained_offline_without_cache_names_the_cache_and_the_override(hf_cache):
    with pytest.raises(PretrainedWeightsError) as err:
        _tiny(pretrained=True)
    message = str(err.value)
    assert str(hf_hub_repo_cache(TINY_REPO)) in message and str(hf_cache) in message
    assert "model.weights_path=" in message and "HF_HOME" in message


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_path_loads_a_local_file_and_wins_over_the_hub(hf_cache, tmp_path, suffix):
    source = _published()
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".pth":
        torch.save(source, path)
    else:
        save_file({k: v.contiguous() for k, v in source.items()}, path)
    model = _tiny(pretrained=True, weights_path=str(path))  # empty hub cache: must not be read
    _assert_loaded(model, source)


def test_weights_path_that_does_not_fit_is_named(hf_cache, tmp_path):
    torch.save(timm.create_model(TINY, depth=3).state_dict(), tmp_path / "deeper.pth")
    with pytest.raises(PretrainedWeightsError, match="do not match timm model"):
        _tiny(weights_path=str(tmp_path / "deeper.pth"))
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        _tiny(weights_path=str(tmp_path / "missing.safetensors"))


# --- the experiment, end to end on the tiny synthetic set ---------------------------------

GEND_SMOKE = [
    "experiment=gend_clip_ln",
    "dataset=synthetic",
    f"model.name={TINY}",
    f"+model.model_kwargs.depth={TINY_KWARGS['depth']}",
    "model.pretrained=false",
    f"model.input_size={SIZE}",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=1",
    "+trainer.limit_val_batches=1",
    "data.batch_size=4",
    "data.num_workers=0",
    "test=false",
    "callbacks.model_checkpoint=null",
    "+trainer.enable_checkpointing=false",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.enable_model_summary=false",
    f"+callbacks.step_probe._target_={__name__}.StepProbe",
]


class StepProbe(pl.Callback):
    """Records, for a smoke run, which parameters one step moved and the head it trained."""

    seen: ClassVar[list[dict]] = []

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.before = {n: p.detach().clone() for n, p in module.named_parameters()}

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        moved = {n for n, p in module.named_parameters() if not torch.equal(p, self.before[n])}
        StepProbe.seen.append(
            {
                "global_step": trainer.global_step,
                "moved": moved,
                "normalised": isinstance(module.head[0], L2Normalize),
                "counts": module.parameter_counts(),
            }
        )


def test_gend_experiment_builds_clip_l14_with_the_recipe(compose_cfg):
    cfg = compose_cfg("train", ["experiment=gend_clip_ln"])
    assert cfg.model.name == CLIP_L14 and cfg.model.pretrained is True
    assert tuple(cfg.model.mean) == CLIP_MEAN and cfg.model.input_size == 224
    assert cfg.augmentation.mean == cfg.model.mean
    assert (cfg.module.freeze, cfg.module.normalize_features) == ("layernorm", True)
    assert cfg.data.pair_with_original is True


@pytest.mark.slow
def test_gend_experiment_cpu_smoke_path_trains_one_step(tiny_preprocessed, compose_cfg):
    from deepfake_exp.tasks.train import train

    _, summary = tiny_preprocessed
    cfg = compose_cfg("train", GEND_SMOKE)
    with open_dict(cfg):
        cfg.data.faces_dir = summary["out_dir"]
    StepProbe.seen.clear()
    train(cfg)
    (probe,) = StepProbe.seen
    assert probe["global_step"] == 1 and probe["normalised"]
    assert all(".norm" in n or n.startswith("head.") for n in probe["moved"]), probe["moved"]
    assert any(n.startswith("head.") for n in probe["moved"])
    assert any(n.startswith("backbone.") for n in probe["moved"])
    head = 192 * 2 + 2  # Linear(192, 2) after the L2 normalisation
    assert probe["counts"]["n_params_trainable"] == _layer_norm_parameters(2, 192) + head
