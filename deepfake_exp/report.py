"""Run a named set of experiments and tabulate them: ``python -m deepfake_exp.report``.

``report=<set>`` trains each experiment of ``conf/report/<set>.yaml`` in its own process (or
collects it when finished); ``run_dirs=[...]`` tabulates existing runs instead. Writes
``report.csv``, ``report.md`` and ``plots/``. The work is in :mod:`deepfake_exp.tasks.report`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from deepfake_exp.tasks import report as task


@hydra.main(version_base="1.3", config_path="../conf", config_name="report")
def main(cfg: DictConfig) -> None:
    task.run(cfg)


if __name__ == "__main__":
    main()
