"""Study experiments: each builds a model that trains the way its study says, and trains.

Composition for both entry points is tested for every ``conf/experiment`` file by
``test_configs.py``. Here each study's recipe is checked by what the composed experiment
*does*, not by re-reading its YAML values: the module it builds trains exactly the parameters
the study trained (linear probe, last blocks, everything), at the learning rates it used
relative to each other, with its head (one logit or two, hidden layer), and its schedule
moves the learning rate as the study's did; then each one trains a step on tiny images.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from tests.conftest import CONF_DIR, TINY_DATASET, compose_config

#: Protocol experiments (the data of a protocol, any model; tests/test_protocols.py checks them).
PROTOCOLS = {"ff_c23"} | {
    f"ff_lomo_{m}" for m in ("deepfakes", "face2face", "faceswap", "neuraltextures")
}
#: Experiments that are not a study (pipeline checks, the ``make train`` default, protocols) or
#: whose recipe is checked elsewhere (gend_clip_ln: tests/test_timm.py, on a tiny timm ViT).
NOT_STUDIES = {"smoke", "synthetic_cpu", "gend_clip_ln"} | PROTOCOLS


@dataclass(frozen=True)
class Recipe:
    """What a study trained, in its own words turned into checkable behaviour.

    Attributes:
        trains: ``head`` (only the new last layer: "we optimize with respect to the last
            layer"), ``all`` (full fine-tune / from scratch) or ``last_<n>`` (the backbone's
            last n blocks and the head).
        logits: 2 for a softmax head with cross-entropy, 1 for a sigmoid head with BCE.
        backbone_lr_ratio: Backbone lr / head lr (CS4487: 1e-4 vs 1e-3), ``None``: one lr.
        hidden: Width of the head's hidden layer (Midway: GAP + Dense 1024 + Dense 2).
        schedule: ``constant``, ``halves every 5`` (StepLR 5, 0.5) or ``cosine to 0``.
        optimizer: The torch optimizer class the study used.
    """

    trains: str
    logits: int
    schedule: str
    optimizer: type[torch.optim.Optimizer]
    backbone_lr_ratio: float | None = None
    hidden: int | None = None


EMORY_RESNET = Recipe("head", 2, "constant", torch.optim.Adam)
CITYU = Recipe("all", 2, "halves every 5", torch.optim.Adam, backbone_lr_ratio=0.1)
MIDWAY = Recipe("last_10", 2, "constant", torch.optim.Adam, hidden=1024)
YORK = Recipe("all", 1, "cosine to 0", torch.optim.SGD)

#: experiment -> the recipe its study describes (DESIGN.md section 1, the YAML headers).
STUDIES: dict[str, Recipe] = {
    "emory_resnet101": EMORY_RESNET,
    "emory_resnet50": EMORY_RESNET,
    "emory_vit": Recipe("all", 2, "constant", torch.optim.AdamW),  # from scratch, no warm-up
    "york_efficientnet_b7": YORK,
    "york_efficientnet_b7_softmax": Recipe("all", 2, "cosine to 0", torch.optim.SGD),
    "cityu_resnet18": CITYU,
    "cityu_vgg16": CITYU,
    "cityu_inceptionv3": CITYU,
    "midway_mobilenet": MIDWAY,
    "midway_mobilenet_frozen": Recipe("head", 2, "constant", torch.optim.Adam, hidden=1024),
}

#: The CPU smoke path of every study experiment (documented in each YAML's header): random
#: weights, small images, one training and one validation batch, no test pass.
SMOKE = [
    "dataset=synthetic",
    "model.pretrained=false",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=1",
    "+trainer.limit_val_batches=1",
    "data.batch_size=4",
    "data.num_workers=0",
    "test=false",
]
#: Smallest input each model takes at the smoke size (InceptionV3 needs >= 75 px; the ViT a
#: multiple of its 16 px patch, which 64 is).
SMOKE_INPUT_SIZE = {"cityu_inceptionv3": 96}


def experiments() -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))


def test_every_study_experiment_has_its_recipe_checked() -> None:
    assert set(experiments()) - NOT_STUDIES == set(STUDIES)


def build_module(cfg: DictConfig):
    """The module ``deepfake_exp.train`` builds from ``cfg`` (random weights)."""
    return instantiate(
        cfg.module,
        backbone=instantiate(cfg.model),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler),
    )


def _trainable(module: torch.nn.Module) -> set[int]:
    return {id(p) for p in module.parameters() if p.requires_grad}


def _all(module: torch.nn.Module) -> set[int]:
    return {id(p) for p in module.parameters()}


def lr_per_epoch(optimizer: torch.optim.Optimizer, scheduler, epochs: int) -> list[float]:
    """The head group's lr at the start of each epoch (schedulers step per epoch)."""
    head = next(g for g in optimizer.param_groups if g["name"] == "head")
    lrs = []
    for _ in range(epochs):
        lrs.append(head["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return lrs


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_study_experiment_builds_the_model_its_study_trained(compose_cfg, name: str) -> None:
    recipe = STUDIES[name]
    size = SMOKE_INPUT_SIZE.get(name, 64)
    cfg = compose_cfg(
        "train", [f"experiment={name}", "model.pretrained=false", f"model.input_size={size}"]
    )
    module = build_module(cfg)
    backbone, head = module.backbone, module.head

    # which parameters train
    trainable = _trainable(backbone)
    assert _trainable(head) == _all(head), "the new head always trains"
    if recipe.trains == "head":
        assert not trainable, "a linear probe trains no backbone weight"
    elif recipe.trains == "all":
        assert trainable == _all(backbone)
    else:
        n = int(recipe.trains.removeprefix("last_"))
        blocks = backbone.blocks()
        assert len(blocks) > n
        assert trainable == set().union(*(_all(b) for b in blocks[-n:]))

    # at which learning rates, with which optimizer
    setup = module.configure_optimizers()
    optimizer = setup["optimizer"] if isinstance(setup, dict) else setup
    scheduler = setup["lr_scheduler"]["scheduler"] if isinstance(setup, dict) else None
    assert type(optimizer) is recipe.optimizer
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert set(lrs) == ({"head"} if recipe.trains == "head" else {"backbone", "head"})
    if "backbone" in lrs:
        ratio = recipe.backbone_lr_ratio or 1.0
        assert lrs["backbone"] == pytest.approx(ratio * lrs["head"])

    # how the learning rate moves over the run
    epochs = cfg.trainer.max_epochs
    curve = lr_per_epoch(optimizer, scheduler, epochs + 1)
    if recipe.schedule == "constant":
        assert scheduler is None and len(set(curve)) == 1
    elif recipe.schedule == "halves every 5":
        assert curve[5] == pytest.approx(curve[0] / 2) and curve[4] == curve[0]
        assert curve[10] == pytest.approx(curve[0] / 4)
    else:
        assert all(a > b for a, b in zip(curve[:-1], curve[1:], strict=False))
        assert curve[-1] == pytest.approx(0.0, abs=1e-12), "the cosine ends at 0 with the run"

    # the head: one logit (sigmoid, BCE) or two (softmax, CE), a hidden layer or not
    module.eval()
    with torch.no_grad():
        logits = module(torch.randn(2, 3, size, size))
        probs = module.predict_proba(torch.randn(2, 3, size, size))
    assert logits.shape == (2, recipe.logits)
    assert probs.shape == (2,) and bool(((probs >= 0) & (probs <= 1)).all())
    widths = [m.out_features for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == ([recipe.hidden] if recipe.hidden else []) + [recipe.logits]


def test_report_york_row_builds_b0_whose_batchnorm_adapts_in_a_short_run(compose_cfg) -> None:
    """The CPU report's York row departs from efficientnet-pytorch's TF-style BN momentum
    (PyTorch 0.01) as its note says; the study's experiment itself keeps the library's."""
    import deepfake_exp.report  # noqa: F401  (registers the report schema)

    report = compose_cfg("report", [])
    row = [*report.report.common, *report.report.experiments.york_efficientnet_b0]
    for overrides, momentum in ((row, 0.1), (["experiment=york_efficientnet_b7"], 0.01)):
        cfg = compose_cfg(
            "train",
            [*overrides, "model=efficientnet_b0", "model.pretrained=false", "model.input_size=64"],
        )
        norms = [m for m in instantiate(cfg.model).modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert norms and {round(m.momentum, 6) for m in norms} == {momentum}


def test_studies_sharing_a_faces_dir_share_its_sampling_and_split(compose_cfg) -> None:
    """Preprocessing skips videos already done in a faces dir and fixes the split there, so two
    experiments may only share one if they would write the same faces and splits."""
    settings: dict[str, tuple[str, dict]] = {}
    for name in sorted(STUDIES):
        cfg = compose_cfg("preprocess", [f"experiment={name}"])
        mine = OmegaConf.to_container(cfg, resolve=True)
        key = {k: mine[k] for k in ("extraction", "split")}
        key["detector"] = mine["detector"]["_target_"]
        first, theirs = settings.setdefault(cfg.out_dir, (name, key))
        assert theirs == key, f"{name} and {first} share {cfg.out_dir} with other settings"
    assert len(settings) == 4  # one faces dir per study


class StepProbe(pl.Callback):
    """Records what a smoke run trained (added through the config, as a user would add one):
    its steps, each parameter group's lr, and which parameters one step moved."""

    seen: ClassVar[list[dict]] = []

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.before = {n: p.detach().clone() for n, p in module.named_parameters()}

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        groups = trainer.optimizers[0].param_groups
        moved = {n for n, p in module.named_parameters() if not torch.equal(p, self.before[n])}
        StepProbe.seen.append(
            {
                "global_step": trainer.global_step,
                "lr": {g["name"]: g.get("initial_lr", g["lr"]) for g in groups},
                "moved": moved,
                "trainable": {n for n, p in module.named_parameters() if p.requires_grad},
            }
        )


#: The smoke path minus checkpoint files (a VGG16 or B7 checkpoint with its Adam state weighs
#: over 1 GB), plus the probe.
TEST_ONLY = [
    "callbacks.model_checkpoint=null",
    "+trainer.enable_checkpointing=false",
    f"+callbacks.step_probe._target_={__name__}.StepProbe",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.enable_model_summary=false",
]


def smoke_cfg(root: Path, faces_dir: str, name: str) -> DictConfig:
    size = SMOKE_INPUT_SIZE.get(name, 64)
    overrides = [f"experiment={name}", *SMOKE, f"model.input_size={size}", *TINY_DATASET]
    cfg = compose_config("train", [*overrides, *TEST_ONLY], root)
    with open_dict(cfg):
        cfg.data.faces_dir = faces_dir  # the shared tiny set, whatever the study's folder
        cfg.paths.output_dir = str(root / f"run_{name}")
    return cfg


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny batches run faster on one thread, and far faster on a busy machine, where two
    OpenMP threads spin waiting for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STUDIES))
def test_study_experiment_cpu_smoke_path_trains_one_step(
    tiny_preprocessed, one_thread, name: str
) -> None:
    from deepfake_exp.tasks.train import train

    root, summary = tiny_preprocessed
    cfg = smoke_cfg(root, summary["out_dir"], name)
    StepProbe.seen.clear()
    train(cfg)
    (probe,) = StepProbe.seen
    assert probe["global_step"] == 1
    # the transfer policy survived the Trainer: frozen weights did not move, the head did
    frozen_moved = probe["moved"] - probe["trainable"]
    assert not frozen_moved, f"frozen parameters moved: {sorted(frozen_moved)[:3]}"
    assert any(n.startswith("head.") for n in probe["moved"])
    if STUDIES[name].trains == "head":
        assert not any(n.startswith("backbone.") for n in probe["moved"])
    else:
        assert any(n.startswith("backbone.") for n in probe["moved"])
    assert set(probe["lr"]) == (
        {"head"} if STUDIES[name].trains == "head" else {"backbone", "head"}
    )
