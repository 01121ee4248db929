"""Study experiments: each one holds the numbers its study reports, and its CPU smoke path trains.

Composition for both entry points is tested for every ``conf/experiment`` file by
``test_configs.py``; here each study's key hyper-parameters are checked against the study text
(DESIGN.md §1), and each experiment runs one training step on random weights and tiny images.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from tests.conftest import CONF_DIR, TINY_DATASET, compose_config

#: Experiments that are not a study (pipeline checks and the ``make train`` default).
NOT_STUDIES = {"smoke", "synthetic_cpu"}

EMORY_RESNET = {
    "dataset.name": "dfdc",
    "extraction.strategy": "random",  # one random frame per video
    "extraction.num_frames": 1,
    "split.policy": "group",
    "model.pretrained": True,
    "model.input_size": 224,
    "module.head": "softmax",
    "module.freeze": "backbone",  # only the last layer trained
    "optimizer._target_": "torch.optim.Adam",
    "optimizer.lr": 1e-3,
}
CITYU = {
    "dataset.name": "cs4487",
    "detector._target_": "deepfake_exp.faces.detectors.WholeImageDetector",
    "split.policy": "individual",  # the study's best: random selection, 8:2
    "split.ratios": [0.8, 0.1, 0.1],
    "model.pretrained": True,
    "module.head": "softmax",
    "module.freeze": "none",
    "module.backbone_lr": 1e-4,
    "optimizer._target_": "torch.optim.Adam",
    "optimizer.lr": 1e-3,
    "scheduler._target_": "torch.optim.lr_scheduler.StepLR",
    "scheduler.step_size": 5,
    "scheduler.gamma": 0.5,
    "trainer.max_epochs": 20,
    "data.batch_size": 64,
    "augmentation.hflip_p": 0.5,
    "augmentation.rotation": 10.0,
    "optimized_metric": "val/acc",
}
MIDWAY = {
    "dataset.name": "faces140k",
    "split.use_official": True,
    "model.arch": "mobilenet_v2",
    "model.pretrained": True,
    "model.input_size": 224,
    "module.head": "softmax",
    "module.head_hidden": 1024,
    "optimizer._target_": "torch.optim.Adam",
    "optimizer.lr": 1e-5,
    "data.batch_size": 64,
    "trainer.max_epochs": 5,
    "optimized_metric": "val/loss",  # best val loss kept
    "optimized_mode": "min",
}
YORK = {
    "dataset.name": "dfdc",
    "model.arch": "efficientnet-b7",
    "model.pretrained": True,
    "model.input_size": 240,
    "extraction.num_frames_fake": 8,
    "extraction.num_frames_real": 40,
    "extraction.crop_size": 240,
    "augmentation._target_": "deepfake_exp.data.transforms.DFDCAugmentation",
    "optimized_metric": "val/video_log_loss",
    "optimized_mode": "min",
}

#: experiment -> {dotted key: the value its study reports}.
STUDIES: dict[str, dict[str, Any]] = {
    "emory_resnet101": {**EMORY_RESNET, "model.arch": "resnet101"},
    "emory_resnet50": {**EMORY_RESNET, "model.arch": "resnet50"},
    "emory_vit": {
        "dataset.name": "dfdc",
        "extraction.strategy": "random",
        "extraction.num_frames": 1,
        "model._target_": "deepfake_exp.models.vit.VisionTransformer",
        "model.pretrained": False,  # from scratch
        "model.input_size": 224,
        "model.patch_size": 16,
        "model.embed_dim": 256,
        "model.mlp_dim": 512,
        "model.num_heads": 8,
        "model.dropout": 0.2,
        "module.freeze": "none",
        "optimizer._target_": "torch.optim.AdamW",
        "optimizer.lr": 3e-5,
        "scheduler._target_": "deepfake_exp.models.schedulers.no_schedule",  # no warm-up
    },
    "york_efficientnet_b7": {**YORK, "module.head": "sigmoid"},
    "york_efficientnet_b7_softmax": {**YORK, "module.head": "softmax"},
    "cityu_resnet18": {**CITYU, "model.arch": "resnet18", "model.input_size": 224},
    "cityu_vgg16": {**CITYU, "model.arch": "vgg16", "model.input_size": 224},
    "cityu_inceptionv3": {**CITYU, "model.arch": "inception_v3", "model.input_size": 299},
    "midway_mobilenet": {**MIDWAY, "module.freeze": "last_n", "module.unfreeze_last": 10},
    "midway_mobilenet_frozen": {**MIDWAY, "module.freeze": "backbone"},
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


def plain(value: Any) -> Any:
    """A selected config value as plain Python (lists compare as lists)."""
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def test_every_study_experiment_has_its_numbers_checked() -> None:
    assert set(experiments()) - NOT_STUDIES == set(STUDIES)


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_study_experiment_holds_the_study_numbers(compose_cfg, name: str) -> None:
    cfg = compose_cfg("train", [f"experiment={name}"])
    found = {key: plain(OmegaConf.select(cfg, key)) for key in STUDIES[name]}
    assert found == STUDIES[name]


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
    """Records what a smoke run trained (added through the config, as a user would add one)."""

    seen: ClassVar[list[dict]] = []

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        groups = trainer.optimizers[0].param_groups
        StepProbe.seen.append(
            {
                "global_step": trainer.global_step,
                "lr": {g["name"]: g.get("initial_lr", g["lr"]) for g in groups},
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
    from deepfake_exp.train import train

    root, summary = tiny_preprocessed
    cfg = smoke_cfg(root, summary["out_dir"], name)
    StepProbe.seen.clear()
    train(cfg)
    (probe,) = StepProbe.seen
    assert probe["global_step"] == 1
    # the transfer policy reached the optimizer: a frozen backbone has no parameter group,
    # CS4487's backbone trains at its own lr
    expected = {"head": cfg.optimizer.lr}
    if cfg.module.freeze != "backbone":
        expected["backbone"] = cfg.module.backbone_lr or cfg.optimizer.lr
    assert probe["lr"] == pytest.approx(expected)


def test_training_benchmark_reports_each_measure_against_its_baseline(tmp_path: Path) -> None:
    import math

    from deepfake_exp.models.benchmark import benchmark_training, write_face_jpegs

    faces = write_face_jpegs(tmp_path / "faces", count=4, size=32)
    rows = benchmark_training(
        models=("vit",), batch_size=2, input_size=32, steps=1, warmup=1,
        overhead_model="vit", overhead_input_size=32, overhead_steps=1, overhead_warmup=1,
        overhead_rounds=1, faces_dir=str(faces), num_workers=0, loader_batches=2, threads=1,
    )  # fmt: skip
    throughput, loader, overhead = rows
    assert [r["measure"] for r in rows] == [
        "throughput",
        "dataloader / model train",
        "lightning step overhead",
    ]
    assert all(r["model"] == "vit" and r["input_size"] == 32 for r in rows)
    assert throughput["train_img_s"] > 0 and throughput["infer_img_s"] > 0
    assert loader["baseline"] == throughput["train_img_s"]
    assert loader["value"] == pytest.approx(loader["ours"] / loader["baseline"])
    assert loader["met"] == ("yes" if loader["value"] >= 2 else "NO")
    plain, lightning = overhead["baseline"], overhead["ours"]
    assert plain > 0 and lightning > 0
    assert overhead["value"] == pytest.approx(100 * (lightning - plain) / plain)
    assert all(math.isfinite(r["load_1min"]) for r in rows)


def test_training_benchmark_names_a_faces_dir_without_manifest(tmp_path: Path) -> None:
    from deepfake_exp.models.benchmark import benchmark_training

    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        benchmark_training(models=(), faces_dir=str(tmp_path))
