"""Moved to deepfake_exp.benchmarks.augmentation; removed at the end of the refactor."""

from deepfake_exp.benchmarks.augmentation import (  # noqa: F401
    InMemoryFaces,
    benchmark_augmentations,
    build_augmentation,
)
from deepfake_exp.benchmarks.common import face_crops as face_like_images  # noqa: F401
