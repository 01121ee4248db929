"""Benchmarks measured side by side in one run: ``make bench`` / ``python -m deepfake_exp.bench``.

Each section (``deepfake_exp.benchmarks.SECTIONS``) returns a table; targets are printed as
measured ratios, never asserted in tests. Results go to ``<run>/bench_<section>.csv`` and one
Markdown table, ``<run>/bench.md``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from deepfake_exp import config as _config  # noqa: F401  (registers the schemas)
from deepfake_exp.tasks import bench as task


@hydra.main(version_base="1.3", config_path="../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    task.run(cfg)


if __name__ == "__main__":
    main()
