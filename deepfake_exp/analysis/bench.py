"""Moved to deepfake_exp.benchmarks.analysis; this alias is removed at the end of the refactor."""

import sys

from deepfake_exp.benchmarks import analysis as _moved

sys.modules[__name__] = _moved
