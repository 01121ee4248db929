"""Extract faces of a dataset: ``python -m deepfake_exp.preprocess dataset=<name> [...]``.

Resumable, shardable (``shard=i num_shards=n``, then one run with ``merge=true``), one bad
file never stops the run. The work is in :mod:`deepfake_exp.tasks.preprocess`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from deepfake_exp.tasks import preprocess as task


@hydra.main(version_base="1.3", config_path="../conf", config_name="preprocess")
def main(cfg: DictConfig) -> None:
    task.run(cfg)


if __name__ == "__main__":
    main()
