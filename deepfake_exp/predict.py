"""Score videos and images: ``python -m deepfake_exp.predict ckpt_path=... inputs=[a.mp4,dir/]``.

Each file goes through the preprocessing its checkpoint was trained with (frame sampling,
face detector, crop and its JPEG round trip), the eval transform and the run's face -> video
aggregation; the threshold is the run's val-chosen one (with TTA: one chosen on val with the
same TTA, or flagged). Results: a console table, ``predictions.json`` and ``predictions.csv``.
The work is in :mod:`deepfake_exp.tasks.predict` and :mod:`deepfake_exp.inference.predictor`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from deepfake_exp import config as _config  # noqa: F401  (registers the schemas)
from deepfake_exp.tasks import predict as task


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    task.run(cfg)


if __name__ == "__main__":
    main()
