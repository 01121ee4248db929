"""Export a trained detector: ``python -m deepfake_exp.export ckpt_path=... format=onnx``.

The exported graph maps a normalised ``(B, 3, S, S)`` batch to P(fake) ``(B,)``;
``export.json`` beside it records ``S``, the normalisation and the val-chosen video threshold.
The work is in :mod:`deepfake_exp.tasks.export`, the formats in
:mod:`deepfake_exp.inference.export`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from deepfake_exp import config as _config  # noqa: F401  (registers the schemas)
from deepfake_exp.tasks import export as task


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    task.run(cfg)


if __name__ == "__main__":
    main()
