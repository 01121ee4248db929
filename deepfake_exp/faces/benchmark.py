"""Moved to deepfake_exp.benchmarks.extraction; this alias is removed at the end of the refactor."""

import sys

from deepfake_exp.benchmarks import extraction as _moved

sys.modules[__name__] = _moved
