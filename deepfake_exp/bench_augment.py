"""Moved to deepfake_exp.benchmarks.augmentation; this alias is removed at the end of the refactor."""

import sys

from deepfake_exp.benchmarks import augmentation as _moved

sys.modules[__name__] = _moved
