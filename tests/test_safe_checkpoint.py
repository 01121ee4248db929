"""A checkpoint cannot run code: crafted ``_target_``s are refused before anything is built.

Each crafted checkpoint names a callable with a visible effect (``builtins.open`` with mode
``w``, the project's own ``write_json``, the issue's ``builtins.print("PWNED")``); the test
asserts both the error (with the key path) and that the file was never created / nothing was
printed. (This Hydra build blocks ``builtins.exec``/``eval`` itself, not ``open`` or ``print``.)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from deepfake_exp.inference import UnsafeCheckpointError, check_targets, load_detector
from deepfake_exp.inference.safe import safe_instantiate, target_refusal
from deepfake_exp.models.module import DeepfakeDetector
from tests.conftest import CONF_DIR, compose_config

TINY_VIT = [
    "model=vit",
    "model.input_size=32",
    "model.patch_size=16",
    "model.depth=1",
    "model.embed_dim=16",
    "model.mlp_dim=16",
    "model.num_heads=2",
]


@pytest.fixture(scope="module")
def legit(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """A real run config (resolved, as training stores it) and the matching state dict."""
    cfg = compose_config("train", TINY_VIT, tmp_path_factory.mktemp("legit"))
    module = instantiate(cfg.module, backbone=instantiate(cfg.model))
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), module.state_dict()


def write_checkpoint(path: Path, run_config: dict, state_dict: dict) -> Path:
    torch.save({"run_config": run_config, "state_dict": state_dict}, path)
    return path


def set_key(config: dict, dotted: str, value: Any) -> dict:
    config = copy.deepcopy(config)
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return config


def opener(marker: Path) -> dict:
    return {"_target_": "builtins.open", "_args_": [str(marker), "w"]}


def test_legit_checkpoint_loads_and_scores(legit, tmp_path) -> None:
    run_config, state_dict = legit
    ckpt = write_checkpoint(tmp_path / "ok.ckpt", run_config, state_dict)
    module, cfg = load_detector(ckpt)
    assert isinstance(module, DeepfakeDetector) and cfg.model.input_size == 32
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, state_dict[name]), name
    assert module.data_fingerprint is None  # this checkpoint stores none
    augmentation = safe_instantiate(cfg.augmentation)
    assert augmentation.eval_transform() is not None


CRAFTED = {
    # key set in the stored config -> payload builder, key path the error must name
    "top-level model": ("model", opener, "model._target_"),
    "nested in module": ("module.head_hidden", opener, "module.head_hidden._target_"),
    "the issue's print PWNED": (
        "module.head_hidden",
        lambda m: {"_target_": "builtins.print", "_args_": ["PWNED"]},
        "module.head_hidden._target_",
    ),
    "in augmentation": ("augmentation.blend", opener, "augmentation.blend._target_"),
    "in detector": ("detector", opener, "detector._target_"),
    "inside _args_ of an allowed target": (
        "module.head_hidden",
        lambda m: {"_target_": "torch.optim.SGD", "_args_": [opener(m)]},
        "module.head_hidden._args_[0]._target_",
    ),
    "partial of a disallowed target": (
        "augmentation",
        lambda m: {**opener(m), "_partial_": True},
        "augmentation._target_",
    ),
    "a project function that writes files": (
        "model",
        lambda m: {"_target_": "deepfake_exp.utils.io.write_json", "_args_": [str(m), {}]},
        "model._target_",
    ),
    "a library function re-exported by a project module": (
        "model",
        lambda m: {"_target_": "deepfake_exp.models.module.partial", "_args_": [opener(m)]},
        "model._target_",
    ),
    "a target computed by an interpolation": (
        "model",
        lambda m: {"_target_": "${oc.env:CRAFTED_TARGET}", "_args_": [str(m), "w"]},
        "model._target_",
    ),
}


@pytest.mark.parametrize("case", list(CRAFTED), ids=list(CRAFTED))
def test_crafted_checkpoint_is_refused_without_side_effect(
    case: str, legit, tmp_path, monkeypatch, capsys
) -> None:
    key, payload, reported = CRAFTED[case]
    marker = tmp_path / "PWNED"
    monkeypatch.setenv("CRAFTED_TARGET", "builtins.open")
    run_config = set_key(legit[0], key, payload(marker))
    ckpt = write_checkpoint(tmp_path / "crafted.ckpt", run_config, legit[1])
    with pytest.raises(UnsafeCheckpointError) as error:
        load_detector(ckpt)
    assert reported in str(error.value)
    assert "trust_checkpoint=true" in str(error.value)
    assert not marker.exists(), "the crafted target ran"
    assert "PWNED" not in capsys.readouterr().out


@pytest.mark.parametrize("block", ["augmentation", "detector"])
def test_predict_refuses_crafted_blocks_before_building_anything(
    block: str, legit, tmp_path, monkeypatch
) -> None:
    """predict's own instantiation of the stored blocks goes through the allow-list too."""
    import deepfake_exp.inference.predictor as predict

    marker = tmp_path / "PWNED"
    ckpt = write_checkpoint(
        tmp_path / "crafted.ckpt", set_key(legit[0], block, opener(marker)), legit[1]
    )
    built: list[Any] = []
    monkeypatch.setattr(
        "deepfake_exp.inference.safe.instantiate", lambda *a, **k: built.append(a) or None
    )
    with pytest.raises(UnsafeCheckpointError, match=rf"{block}\._target_: 'builtins.open'"):
        predict.Predictor(ckpt)
    assert built == [] and not marker.exists()


def test_trust_checkpoint_is_the_explicit_escape_hatch(legit, tmp_path) -> None:
    """A harmless but unlisted target (a custom callback) loads only when trusted."""
    run_config = set_key(legit[0], "callbacks.custom", {"_target_": "collections.OrderedDict"})
    ckpt = write_checkpoint(tmp_path / "custom.ckpt", run_config, legit[1])
    with pytest.raises(UnsafeCheckpointError, match=r"callbacks\.custom\._target_"):
        load_detector(ckpt)
    module, _ = load_detector(ckpt, trust_checkpoint=True)
    assert isinstance(module, DeepfakeDetector)


def test_hydra_keys_without_a_target_are_refused() -> None:
    with pytest.raises(UnsafeCheckpointError, match=r"module\.x: _args_, _partial_ without"):
        check_targets({"module": {"x": {"_args_": ["a"], "_partial_": True}}})


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("deepfake_exp.models.backbones.TorchvisionBackbone", True),
        ("deepfake_exp.models.schedulers.warmup_cosine", True),
        ("deepfake_exp.preprocessing.settings.ExtractionConfig", True),
        ("deepfake_exp.faces.extract.ExtractionConfig", True),  # old checkpoints' spelling
        ("torchvision.models.resnet18", True),
        ("efficientnet_pytorch.EfficientNet.from_name", True),
        ("torch.optim.lr_scheduler.StepLR", True),
        ("albumentations.HorizontalFlip", True),
        ("pytorch_lightning.callbacks.ModelCheckpoint", True),
        ("deepfake_exp.utils.loggers.HistoryCSVLogger", True),  # the project's own logger
        ("deepfake_exp.train.HistoryCSVLogger", True),  # where old checkpoints name it
        ("deepfake_exp.train.train", False),
        ("deepfake_exp.evaluation.robustness.GaussianBlur", True),  # a run's robustness option
        ("deepfake_exp.models.timm_backbone.TimmBackbone", True),
        ("builtins.exec", False),
        ("pathlib.Path.touch", False),
        ("deepfake_exp.preprocessing.merge.merge_parts", False),  # project function that writes
        ("deepfake_exp.evaluation.robustness.robustness_table", False),  # a function, not a part
        ("deepfake_exp.models.module.DeepfakeDetector.load_from_checkpoint", False),
        ("deepfake_exp.models.backbones.__builtins__", False),
        ("torchvision.models.list_models", False),
        ("efficientnet_pytorch.EfficientNet.from_pretrained", False),  # downloads + unpickles
        ("albumentations.load", False),
        ("pytorch_lightning.seed_everything", False),
        ("os.system", False),
    ],
)
def test_allow_list(name: str, allowed: bool) -> None:
    assert (target_refusal(name) is None) == allowed, target_refusal(name)


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "overrides",
    [
        *([f"experiment={name}"] for name in _options("experiment")),
        *([f"model={name}"] for name in _options("model")),
        *([f"augmentation={name}"] for name in _options("augmentation")),
        *([f"detector={name}"] for name in _options("detector")),
        *([f"scheduler={name}", "optimizer=sgd"] for name in _options("scheduler")),
    ],
    ids=lambda o: ",".join(o),
)
def test_every_shipped_train_config_passes_the_allow_list(overrides, tmp_path) -> None:
    """No checkpoint the project itself writes is refused (run_config is stored resolved)."""
    cfg = compose_config("train", overrides, tmp_path)
    check_targets(OmegaConf.to_container(cfg, resolve=True))
