"""Every option of every config group composes and its ``_target_`` instantiates.

A new YAML is tested by this file without new test code (timm's "loop over every model").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from deepfake_exp.config import ConfigValueError, validate_config
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
    validate_config(cfg)
    with open_dict(cfg):  # build on CPU whatever the option says: the config must still compose
        cfg.trainer.accelerator = "cpu"
        cfg.trainer.devices = 1
        cfg.trainer.precision = "32-true"
        cfg.trainer.sync_batchnorm = False
        cfg.trainer.strategy = "auto"
    assert isinstance(instantiate(cfg.trainer), pl.Trainer)


def test_trainer_schema_fields_are_lightning_arguments() -> None:
    """A misspelt schema field would pass composition and fail inside Lightning."""
    import dataclasses
    import inspect

    import pytorch_lightning as pl

    from deepfake_exp.config import TrainerSchema

    accepted = set(inspect.signature(pl.Trainer.__init__).parameters)
    fields = {f.name for f in dataclasses.fields(TrainerSchema)} - {"_target_"}
    assert fields and not fields - accepted, fields - accepted


def test_any_lightning_argument_can_still_be_added(compose_cfg) -> None:
    cfg = compose_cfg("train", ["+trainer.limit_train_batches=1", "+trainer.max_time=null"])
    assert cfg.trainer.limit_train_batches == 1 and "max_time" in cfg.trainer


@pytest.mark.parametrize("group", ["logger", "callbacks"])
def test_dict_groups_instantiate(compose_cfg, group: str) -> None:
    from deepfake_exp.tasks.train import instantiate_dict

    for option in options(group):
        cfg = compose_cfg("train", [f"{group}={option}"])
        built = instantiate_dict(cfg[group])
        assert built and all(obj is not None for obj in built)


@pytest.mark.parametrize("option", options("experiment"))
def test_experiments_compose_for_both_entrypoints(compose_cfg, option: str) -> None:
    train_cfg = compose_cfg("train", [f"experiment={option}"])
    preprocess_cfg = compose_cfg("preprocess", [f"experiment={option}"])
    validate_config(train_cfg)  # in range as shipped
    validate_config(preprocess_cfg)
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


@pytest.mark.parametrize(
    "option", [*(f"debug={o}" for o in options("debug")), "trainer=gpu", "trainer=ddp"]
)
def test_shipped_options_are_in_range(compose_cfg, option: str) -> None:
    assert validate_config(compose_cfg("train", [option])) is not None


@pytest.mark.parametrize("value", ["abc", "1.5", "true"])
def test_non_integer_max_epochs_fails_at_compose_naming_the_key(compose_cfg, value) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_cfg("train", [f"trainer.max_epochs={value}"])
    assert "trainer.max_epochs" in str(error.value)
    assert "max_epochs" in str(error.value.__cause__)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["trainer.max_epochs=0"], r"trainer\.max_epochs=0: must be an integer >= 1"),
        (["trainer.max_epochs=-1"], r"trainer\.max_epochs=-1"),
        (["trainer.min_epochs=5", "trainer.max_epochs=2"], r"trainer\.min_epochs=5: must be <="),
        (["trainer.accumulate_grad_batches=0"], r"trainer\.accumulate_grad_batches=0"),
        (["trainer.precision=17"], r"trainer\.precision=17: must be one of"),
        (["trainer.accelerator=gpus"], r"trainer\.accelerator='gpus'"),
        (["trainer.devices=0"], r"trainer\.devices=0"),
        (["trainer.overfit_batches=1.5"], r"trainer\.overfit_batches=1\.5"),
        (["split.ratios=[0.9,0.9,0.9]"], r"must sum to 1 \(they sum to 2\.7\)"),
        (["split.ratios=[0.7,0.3]"], r"must be 3 numbers"),
        (["split.ratios=[1.2,-0.1,-0.1]"], r"must not be negative"),
        (["extraction.image_format=jpeg"], r"image_format='jpeg'.*write 'jpg'"),
        (["extraction.image_format=PNG"], r"image_format='PNG'.*write 'png'"),
        (["extraction.image_format=gif"], r"image_format='gif': must be one of jpg, png$"),
        (["data.batch_size=0"], r"data\.batch_size=0"),
        (["module.head_dropout=1.0"], r"module\.head_dropout=1\.0"),
        (["optimizer.lr=-0.1"], r"optimizer\.lr=-0\.1"),
        (["seed=-1"], r"seed=-1"),
    ],
)
def test_out_of_range_values_are_named(compose_cfg, overrides: list[str], expected: str) -> None:
    cfg = compose_cfg("train", overrides)
    with pytest.raises(ConfigValueError, match=re.compile(expected, re.MULTILINE)):
        validate_config(cfg)


def test_every_problem_is_listed_at_once_and_near_misses_pass(compose_cfg) -> None:
    bad = compose_cfg("preprocess", ["split.ratios=[0.5,0.5,0.5]", "extraction.image_format=jpeg"])
    with pytest.raises(ConfigValueError) as error:
        validate_config(bad)
    assert "split.ratios" in str(error.value) and "image_format" in str(error.value)
    within = compose_cfg("train", ["split.ratios=[0.7,0.15,0.1500000001]", "trainer.max_epochs=1"])
    checked = validate_config(within)  # the 1e-6 tolerance; max_epochs=1 is fine
    assert OmegaConf.to_container(checked) == OmegaConf.to_container(within, enum_to_str=True)


def test_no_absolute_paths_in_conf() -> None:
    for path in Path(CONF_DIR).rglob("*.yaml"):
        for line in path.read_text().splitlines():
            value = line.split("#")[0].split(":", 1)[-1].strip()
            assert not value.startswith("/"), f"{path}: absolute path in {line!r}"


def test_preprocess_refuses_bad_values_before_reading_the_dataset(compose_cfg, tmp_path) -> None:
    from deepfake_exp.tasks.preprocess import preprocess

    cfg = compose_cfg(
        "preprocess",
        [
            "split.ratios=[0.5,0.5,0.5]",
            f"out_dir={tmp_path / 'faces'}",
            "dataset.root=/nonexistent",
        ],
    )  # (a misspelled choice fails even earlier, at compose time: tests/test_choices.py)
    with pytest.raises(ConfigValueError, match=r"split\.ratios"):
        preprocess(cfg)
    assert not (tmp_path / "faces").exists()  # nothing was started
