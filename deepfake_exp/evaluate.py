"""Evaluate a trained checkpoint: ``python -m deepfake_exp.evaluate run_dir=<train run>``.

Thresholds (and the calibration temperature) are chosen on val and applied unchanged to test,
cross-dataset sets and robustness perturbations; every test metric carries a bootstrap
interval over groups. The work is in :mod:`deepfake_exp.tasks.evaluate`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from deepfake_exp import config as _config  # noqa: F401  (registers the schemas)
from deepfake_exp.tasks import evaluate as task


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    task.run(cfg)


if __name__ == "__main__":
    main()
