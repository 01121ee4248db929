"""Look at what a model will be trained on: ``python -m deepfake_exp.augment_preview``.

``augmentation=<name>`` picks the pipeline and ``n`` the number of samples; faces come from a
preprocessed folder's manifest. Samples are shown denormalised, at the model's input size;
``augmentation=sbi`` shows how each pseudo-fake is made (source / mask / result). The work is
in :mod:`deepfake_exp.tasks.augment_preview`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from deepfake_exp.tasks import augment_preview as task


@hydra.main(version_base="1.3", config_path="../conf", config_name="augment_preview")
def main(cfg: DictConfig) -> None:
    task.run(cfg)


if __name__ == "__main__":
    main()
