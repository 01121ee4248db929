"""Moved to deepfake_exp.preprocessing.runner; this alias is removed at the end of the refactor.

``merge_parts`` and the manifest columns moved to ``deepfake_exp.preprocessing.merge``; they
are set on the alias so ``from deepfake_exp.faces.extract import merge_parts`` keeps working.
"""

import sys

from deepfake_exp.preprocessing import merge as _merge
from deepfake_exp.preprocessing import runner as _moved

for _name in ("merge_parts", "MANIFEST_COLUMNS", "FAILURE_COLUMNS"):
    setattr(_moved, _name, getattr(_merge, _name))
sys.modules[__name__] = _moved
