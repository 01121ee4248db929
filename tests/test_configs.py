"""Every option of every config group composes and its ``_target_`` instantiates.

A new YAML is tested by this file without new test code (timm's "loop over every model").
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate

from tests.conftest import CONF_DIR

SMALL = {"model.input_size=64"}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize("option", options("model"))
def test_model_options_compose_and_resolve(compose_cfg, option: str) -> None:
    """Composition and target lookup; building + forward/backward is in test_models.py."""
    from hydra.utils import get_class

    cfg = compose_cfg("train", [f"model={option}"])
    assert issubclass(get_class(cfg.model._target_), torch.nn.Module)
    augmentation = instantiate(cfg.augmentation)  # transforms follow the model's size/stats
    assert augmentation.input_size == cfg.model.input_size
    assert augmentation.mean == tuple(cfg.model.mean)


@pytest.mark.parametrize("option", options("dataset"))
def test_dataset_options_instantiate(compose_cfg, option: str) -> None:
    cfg = compose_cfg("preprocess", [f"dataset={option}"])
    source = instantiate(cfg.dataset)
    assert source.name == cfg.dataset.name
    assert str(source.root).startswith(cfg.paths.data_dir)


@pytest.mark.parametrize("option", options("detector"))
def test_detector_options_detect(compose_cfg, option: str) -> None:
    import numpy as np

    detector = instantiate(compose_cfg("preprocess", [f"detector={option}"]).detector)
    frames = [np.zeros((96, 128, 3), np.uint8), np.zeros((128, 96, 3), np.uint8)]
    found = detector.detect(frames)
    assert len(found) == 2


@pytest.mark.parametrize("option", options("optimizer"))
def test_optimizer_options(compose_cfg, option: str) -> None:
    cfg = compose_cfg("train", [f"optimizer={option}"])
    params = [torch.nn.Parameter(torch.zeros(3))]
    optimizer = instantiate(cfg.optimizer)(params)
    assert optimizer.param_groups[0]["lr"] == cfg.optimizer.lr


@pytest.mark.parametrize("option", options("scheduler"))
def test_scheduler_options(compose_cfg, option: str) -> None:
    cfg = compose_cfg("train", [f"scheduler={option}"])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    scheduler = instantiate(cfg.scheduler)(optimizer)
    if scheduler is not None:
        optimizer.step()
        scheduler.step()
        assert optimizer.param_groups[0]["lr"] <= 0.1 + 1e-12


@pytest.mark.parametrize("option", options("augmentation"))
def test_augmentation_options(compose_cfg, option: str) -> None:
    import numpy as np

    cfg = compose_cfg("train", [f"augmentation={option}", *SMALL])
    augmentation = instantiate(cfg.augmentation)
    image = np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    for transform in (augmentation.train_transform(), augmentation.eval_transform()):
        out = transform(image)
        assert out.shape == (3, 64, 64) and out.dtype == torch.float32


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_options(compose_cfg, option: str) -> None:
    import pytorch_lightning as pl
    from omegaconf import open_dict

    cfg = compose_cfg("train", [f"trainer={option}"])
    with open_dict(cfg):  # build on CPU whatever the option says: the config must still compose
        cfg.trainer.accelerator = "cpu"
        cfg.trainer.devices = 1
        cfg.trainer.precision = "32-true"
        cfg.trainer.pop("sync_batchnorm", None)
        cfg.trainer.pop("strategy", None)
    assert isinstance(instantiate(cfg.trainer), pl.Trainer)


@pytest.mark.parametrize("group", ["logger", "callbacks"])
def test_dict_groups_instantiate(compose_cfg, group: str) -> None:
    from deepfake_exp.train import instantiate_dict

    for option in options(group):
        cfg = compose_cfg("train", [f"{group}={option}"])
        built = instantiate_dict(cfg[group])
        assert built and all(obj is not None for obj in built)


@pytest.mark.parametrize("option", options("experiment"))
def test_experiments_compose_for_both_entrypoints(compose_cfg, option: str) -> None:
    train_cfg = compose_cfg("train", [f"experiment={option}"])
    preprocess_cfg = compose_cfg("preprocess", [f"experiment={option}"])
    assert train_cfg.dataset.name == preprocess_cfg.dataset.name
    assert train_cfg.data.faces_dir == preprocess_cfg.out_dir


def test_primary_configs_compose(compose_cfg) -> None:
    for name in ("train", "evaluate", "preprocess"):
        assert compose_cfg(name) is not None


def test_unknown_option_lists_available(compose_cfg) -> None:
    with pytest.raises(MissingConfigException) as error:
        compose_cfg("train", ["model=resnet9"])
    assert "resnet18" in str(error.value) and "Available options" in str(error.value)


def test_misspelled_key_fails(compose_cfg) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_cfg("train", ["trainer.max_epoch=3"])
    assert "max_epoch" in str(error.value)


def test_wrongly_typed_value_fails_at_compose(compose_cfg) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_cfg("train", ["seed=abc"])
    assert "seed" in str(error.value)
    with pytest.raises(ConfigCompositionException):
        compose_cfg("preprocess", ["extraction.num_frames=many"])


def test_no_absolute_paths_in_conf() -> None:
    for path in Path(CONF_DIR).rglob("*.yaml"):
        for line in path.read_text().splitlines():
            value = line.split("#")[0].split(":", 1)[-1].strip()
            assert not value.startswith("/"), f"{path}: absolute path in {line!r}"
