"""Dataclass schemas for the keys that are ours, so a typo or a wrong type fails at compose time.

Groups whose options carry a ``_target_`` (model, optimizer, ...) are typed ``Any`` here and
validated by their own constructors; top-level keys and the ``data``/``module``/``extraction``
blocks are typed, so ``seed=abc`` or ``extraction.num_frames=many`` stops before any work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class ExtractionSchema:
    _target_: str = "deepfake_exp.faces.extract.ExtractionConfig"
    num_frames: int = 8
    num_frames_real: int | None = None
    num_frames_fake: int | None = None
    strategy: str = "even"
    every_k: int = 1
    margin: float = 0.5
    crop_size: int = 224
    image_format: str = "jpg"
    jpeg_quality: int = 95
    num_workers: int = 2
    seed: int = 0


@dataclass
class SplitSchema:
    policy: str = "group"
    ratios: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    use_official: bool = True
    seed: int = 0


@dataclass
class DataSchema:
    _target_: str = "deepfake_exp.data.datamodule.FaceDataModule"
    faces_dir: str = MISSING
    batch_size: int = 32
    eval_batch_size: int | None = None
    num_workers: int = 2
    max_faces_per_video: int | None = None
    pin_memory: bool = False


@dataclass
class ModuleSchema:
    _target_: str = "deepfake_exp.models.module.DeepfakeDetector"
    head: str = "softmax"
    head_hidden: int | None = None
    head_dropout: float = 0.0
    label_smoothing: float = 0.0
    freeze: str = "none"
    unfreeze_last: int = 0
    backbone_lr: float | None = None
    video_aggregation: str = "mean"


@dataclass
class ExperimentSchema:
    """Keys shared by preprocess and train, so one ``experiment=`` composes with both."""

    task_name: str = MISSING
    tags: list[str] = field(default_factory=lambda: ["dev"])
    seed: int = 42
    extraction: ExtractionSchema = field(default_factory=ExtractionSchema)
    split: SplitSchema = field(default_factory=SplitSchema)
    data: DataSchema = field(default_factory=DataSchema)
    module: ModuleSchema = field(default_factory=ModuleSchema)
    optimized_metric: str = "val/video_auc"
    optimized_mode: str = "max"
    threshold: str = "f1"
    dataset: Any = MISSING
    detector: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    augmentation: Any = MISSING
    trainer: Any = MISSING
    logger: Any = None
    callbacks: Any = None
    paths: Any = MISSING
    published: Any = None  # a study's reported figures, {metric: value}; read by report


@dataclass
class PreprocessSchema(ExperimentSchema):
    task_name: str = "preprocess"
    out_dir: str = MISSING
    shard: int = 0
    num_shards: int = 1
    merge: bool = True
    retry_failed: bool = False
    progress: bool = True


@dataclass
class TrainSchema(ExperimentSchema):
    task_name: str = "train"
    train: bool = True
    test: bool = True
    ckpt_path: str | None = None


@dataclass
class EvaluateSchema:
    task_name: str = "evaluate"
    run_dir: str | None = None
    ckpt_path: str | None = None
    faces_dir: str | None = None
    threshold: str = "f1"
    video_aggregation: str | None = None
    flip_tta: bool = False
    batch_size: int = 64
    num_workers: int = 2
    plots: bool = True
    paths: Any = MISSING


def register_schemas() -> None:
    """Register schemas under the names the primary configs list first in their defaults."""
    store = ConfigStore.instance()
    store.store(name="preprocess_schema", node=PreprocessSchema)
    store.store(name="train_schema", node=TrainSchema)
    store.store(name="evaluate_schema", node=EvaluateSchema)


register_schemas()
