"""The config layer: schemas (:mod:`.schemas`), typed choices (:mod:`.choices`), value checks.

Importing this package registers every schema in Hydra's ConfigStore, so ``from deepfake_exp
import config`` before composing is enough. Layer rule: config reads the registries of the
packages below the tasks, never a task or an entrypoint.
"""

from deepfake_exp.config import choices
from deepfake_exp.config.schemas import (
    SCHEMAS,
    AnalyzeSchema,
    BenchSchema,
    DataSchema,
    EvaluateSchema,
    ExperimentSchema,
    ExportSchema,
    ExtractionSchema,
    ModuleSchema,
    PredictSchema,
    PreprocessSchema,
    ReportSchema,
    ReportSetSchema,
    SplitSchema,
    TrainerSchema,
    TrainSchema,
    register_schemas,
)
from deepfake_exp.config.validate import (
    ACCELERATORS,
    IMAGE_FORMAT_ALIASES,
    IMAGE_FORMATS,
    PRECISIONS,
    VALUE_RULES,
    ConfigValueError,
    config_problems,
    plain,
    strip_choices,
    validate_config,
)

__all__ = [
    "ACCELERATORS",
    "IMAGE_FORMATS",
    "IMAGE_FORMAT_ALIASES",
    "PRECISIONS",
    "SCHEMAS",
    "VALUE_RULES",
    "AnalyzeSchema",
    "BenchSchema",
    "ConfigValueError",
    "DataSchema",
    "EvaluateSchema",
    "ExperimentSchema",
    "ExportSchema",
    "ExtractionSchema",
    "ModuleSchema",
    "PredictSchema",
    "PreprocessSchema",
    "ReportSchema",
    "ReportSetSchema",
    "SplitSchema",
    "TrainSchema",
    "TrainerSchema",
    "choices",
    "config_problems",
    "plain",
    "register_schemas",
    "strip_choices",
    "validate_config",
]

register_schemas()
