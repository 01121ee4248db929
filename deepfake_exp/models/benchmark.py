"""Moved to deepfake_exp.benchmarks.training; this alias is removed at the end of the refactor."""

import sys

from deepfake_exp.benchmarks import training as _moved

sys.modules[__name__] = _moved
