"""Every ConfigStore schema, so a typo, a wrong type or a misspelled choice fails at compose time.

Groups whose options carry a ``_target_`` (model, optimizer, ...) are typed ``Any`` here and
validated by their own constructors; top-level keys and the ``data``/``module``/``extraction``
blocks are typed, so ``seed=abc`` or ``extraction.num_frames=many`` stops before any work.
String choices are Enums from :mod:`deepfake_exp.config.choices` (``threshold=youdn`` lists
the valid criteria). Ranges (``max_epochs >= 1``, split ratios summing to 1) are checked by
:func:`deepfake_exp.config.validate_config`, which every task calls before its work.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from deepfake_exp.benchmarks import SECTIONS
from deepfake_exp.config.choices import (
    BenchSection,
    DataFormat,
    DetectorKeep,
    ExportFormat,
    FrameStrategy,
    FreezeMode,
    Head,
    OnMismatch,
    Reducer,
    SplitPolicy,
    ThresholdCriterion,
    TSNEAffinity,
    TTAPolicy,
    VideoAggregation,
    VideoBackend,
)
from deepfake_exp.config.derive import schema_of
from deepfake_exp.data.datamodule import FaceDataModule
from deepfake_exp.faces.detectors import MTCNNDetector
from deepfake_exp.models.module import DeepfakeDetector
from deepfake_exp.preprocessing.settings import ExtractionConfig

#: ``ExtractionConfig``'s own fields (one definition), with its string choices as Enums.
ExtractionSchema = schema_of(
    ExtractionConfig,
    "ExtractionSchema",
    {"strategy": FrameStrategy, "on_mismatch": OnMismatch, "video_backend": VideoBackend},
)

#: ``detector: mtcnn``'s keys = ``MTCNNDetector``'s arguments (``conf/detector/mtcnn.yaml``
#: lists it first in its defaults), so ``detector.keep=larges`` fails at compose time.
MTCNNDetectorSchema = schema_of(MTCNNDetector, "MTCNNDetectorSchema", {"keep": DetectorKeep})


@dataclass
class TrainerSchema:
    """The ``pytorch_lightning.Trainer`` arguments our configs set, typed.

    Ranges are checked by ``validate_config``. Any other Trainer argument can still be
    added from the command line with ``+trainer.<arg>=...`` (``limit_train_batches``, ...).
    """

    _target_: str = "pytorch_lightning.Trainer"
    default_root_dir: str | None = None
    max_epochs: int = 10
    min_epochs: int | None = None
    accelerator: str = "auto"
    strategy: Any = "auto"  # a name, or a strategy config with ``_target_``
    devices: Any = "auto"  # int, "auto", "0,1" or [0, 1]
    num_nodes: int = 1
    precision: Any = "32-true"  # "16-mixed", "bf16-mixed", 32, ...
    sync_batchnorm: bool = False
    check_val_every_n_epoch: int | None = 1
    log_every_n_steps: int | None = None
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    deterministic: Any = None  # bool or "warn"
    num_sanity_val_steps: int | None = None
    enable_model_summary: bool | None = None
    fast_dev_run: Any = False  # bool or a number of batches
    overfit_batches: Any = 0.0  # a number of batches (int) or a fraction (float)
    profiler: Any = None  # a name ("simple") or a profiler config with ``_target_``


@dataclass
class SplitSchema:
    policy: SplitPolicy = SplitPolicy("group")
    ratios: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    use_official: bool = True
    seed: int = 0


#: ``data:`` = ``FaceDataModule``'s arguments (the task passes ``augmentation``).
DataSchema = schema_of(
    FaceDataModule, "DataSchema", {"format": DataFormat}, exclude=("augmentation",)
)

#: ``module:`` = ``DeepfakeDetector``'s arguments, its string choices as Enums (the task
#: passes the backbone, optimizer and scheduler it builds from their own groups).
ModuleSchema = schema_of(
    DeepfakeDetector,
    "ModuleSchema",
    {"head": Head, "freeze": FreezeMode, "video_aggregation": VideoAggregation},
    exclude=("backbone", "optimizer", "scheduler"),
)


@dataclass
class ExperimentSchema:
    """Keys shared by preprocess and train, so one ``experiment=`` composes with both."""

    task_name: str = MISSING
    tags: list[str] = field(default_factory=lambda: ["dev"])
    seed: int = 42
    extraction: ExtractionSchema = field(default_factory=ExtractionSchema)  # type: ignore[valid-type]
    split: SplitSchema = field(default_factory=SplitSchema)
    data: DataSchema = field(default_factory=DataSchema)  # type: ignore[valid-type]
    module: ModuleSchema = field(default_factory=ModuleSchema)  # type: ignore[valid-type]
    optimized_metric: str = "val/video_auc"
    optimized_mode: str = "max"
    threshold: ThresholdCriterion = ThresholdCriterion("f1")
    dataset: Any = MISSING
    detector: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    augmentation: Any = MISSING
    trainer: TrainerSchema = field(default_factory=TrainerSchema)
    logger: Any = None
    callbacks: Any = None
    paths: Any = MISSING
    published: Any = None  # a study's reported figures, {metric: value}; read by report
    # faces folders (names under paths.faces_dir, or paths) also tested: metrics.json cross_dataset
    eval_datasets: list[str] = field(default_factory=list)
    robustness: Any = None  # conf/robustness/<option>: {perturbations: {name: _target_ block}}


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
    resume: str | None = None
    force: bool = False


@dataclass
class EvaluateSchema:
    task_name: str = "evaluate"
    run_dir: str | None = None
    ckpt_path: str | None = None
    faces_dir: str | None = None
    threshold: ThresholdCriterion = ThresholdCriterion("f1")
    video_aggregation: VideoAggregation | None = None
    flip_tta: bool = False
    batch_size: int = 64
    num_workers: int = 2
    plots: bool = True
    # Skip the checkpoint's _target_ allow-list (deepfake_exp/inference/safe.py). Off: a
    # downloaded checkpoint must not run code; on only for a file you made yourself.
    trust_checkpoint: bool = False
    robustness: Any = None  # conf/robustness/<option>: {perturbations: {name: _target_ block}}
    paths: Any = MISSING


@dataclass
class PredictSchema:
    """``predict``'s keys (documented in ``conf/predict.yaml``).

    ``trust_checkpoint`` skips the ``_target_`` allow-list the checkpoint's stored config is
    checked against (:mod:`deepfake_exp.inference.safe`). Off by default: a downloaded
    checkpoint must not run code. Turn it on only for a file you made yourself.
    """

    task_name: str = "predict"
    ckpt_path: str | None = None
    run_dir: str | None = None
    inputs: list[str] = field(default_factory=list)
    threshold: float | None = None
    tta: TTAPolicy = TTAPolicy("none")
    num_frames: int | None = None
    batch_size: int = 32
    device: str = "cpu"
    trust_checkpoint: bool = False
    paths: Any = MISSING


@dataclass
class ExportSchema:
    task_name: str = "export"
    ckpt_path: str | None = None
    run_dir: str | None = None
    format: ExportFormat = ExportFormat("onnx")
    opset: int = 17
    out_dir: str | None = None
    check: bool = True
    atol: float = 1e-4
    # Skip the checkpoint's _target_ allow-list (deepfake_exp/inference/safe.py). Off: a
    # downloaded checkpoint must not run code; on only for a file you made yourself.
    trust_checkpoint: bool = False
    paths: Any = MISSING


@dataclass
class ReportSetSchema:
    name: str = "default"
    description: str = ""
    out_dir: str = MISSING
    common: list[str] = field(default_factory=list)
    experiments: dict[str, list[str]] = field(default_factory=dict)
    preprocess: bool = True
    baseline: str | None = "synthetic_cpu"  # every run is compared with this one, paired
    notes: dict[str, str] = field(default_factory=dict)  # experiment -> caveat in its row
    # name -> preprocess overrides, each run once before the experiments (protocol test sets)
    prepare: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class ReportSchema:
    task_name: str = "report"
    report: ReportSetSchema = field(default_factory=ReportSetSchema)
    run_dirs: list[str] = field(default_factory=list)
    retrain: bool = False
    stale: str = "rerun"  # a finished run whose config changed: rerun | keep (listed as stale)
    python: str | None = None
    paths: Any = MISSING


@dataclass
class PCASchema:
    _target_: str = "deepfake_exp.analysis.reduce.pca_reduce"
    _partial_: bool = True
    n_components: int = 50
    seed: int = 0


@dataclass
class TSNESchema:
    _target_: str = "deepfake_exp.analysis.reduce.tsne_reduce"
    _partial_: bool = True
    n_components: int = 2
    perplexity: float = 30.0
    seed: int = 0
    max_iter: int = 750
    n_jobs: int | None = None
    affinity: TSNEAffinity = TSNEAffinity("perplexity")
    k_neighbors: int = 15


@dataclass
class UMAPSchema:
    _target_: str = "deepfake_exp.analysis.reduce.umap_reduce"
    _partial_: bool = True
    n_components: int = 2
    n_neighbors: int = 15
    min_dist: float = 0.1
    seed: int = 0


@dataclass
class HDBSCANSchema:
    _target_: str = "deepfake_exp.analysis.clusters.hdbscan_clusters"
    _partial_: bool = True
    min_cluster_size: int = 15
    min_samples: int | None = None
    cluster_selection_epsilon: float = 0.0


@dataclass
class GallerySchema:
    top_n: int = 12
    max_clusters: int = 50


@dataclass
class ProjectorSchema:
    max_faces: int = 2000
    thumbnail_size: int = 32


@dataclass
class AnalyzeSchema:
    task_name: str = "analyze"
    faces_dir: str = MISSING
    ckpt_path: str | None = None
    split: str | None = None
    max_faces: int | None = None
    seed: int = 0
    device: str | None = None
    batch_size: int = 64
    num_workers: int = 2
    chunk_size: int = 2048
    cache_dir: str | None = None
    threshold: float = 0.5
    progress: bool = True
    tensorboard: bool = True
    pca: PCASchema = field(default_factory=PCASchema)
    reducer: Reducer = Reducer("tsne")
    tsne: TSNESchema = field(default_factory=TSNESchema)
    tsne_uniform: TSNESchema = field(
        default_factory=lambda: TSNESchema(affinity=TSNEAffinity("uniform"))
    )
    umap: UMAPSchema = field(default_factory=UMAPSchema)
    hdbscan: HDBSCANSchema = field(default_factory=HDBSCANSchema)
    gallery: GallerySchema = field(default_factory=GallerySchema)
    projector: ProjectorSchema = field(default_factory=ProjectorSchema)
    model: Any = MISSING
    paths: Any = MISSING


#: ``bench``: the sections to run (each a :data:`deepfake_exp.benchmarks.SECTIONS` name) and
#: one free-form block per section, so a new section needs no schema edit.
BenchSchema = make_dataclass(
    "BenchSchema",
    [
        ("task_name", str, field(default="bench")),
        ("sections", list[BenchSection], field(default_factory=lambda: list(BenchSection))),
        *((name, Any, field(default=None)) for name in SECTIONS),
        ("paths", Any, field(default=MISSING)),
    ],
)


def register_schemas() -> None:
    """Register schemas under the names the primary configs list first in their defaults."""
    store = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        store.store(name=name, node=node)
    for (group, name), node in GROUP_SCHEMAS.items():
        store.store(group=group, name=name, node=node)


SCHEMAS: dict[str, Any] = {
    "preprocess_schema": PreprocessSchema,
    "train_schema": TrainSchema,
    "evaluate_schema": EvaluateSchema,
    "predict_schema": PredictSchema,
    "export_schema": ExportSchema,
    "report_schema": ReportSchema,
    "analyze_schema": AnalyzeSchema,
    "bench_schema": BenchSchema,
}
#: (group, name) -> schema of one option of a ``_target_`` group, named in its YAML's defaults.
GROUP_SCHEMAS: dict[tuple[str, str], Any] = {("detector", "mtcnn_schema"): MTCNNDetectorSchema}
