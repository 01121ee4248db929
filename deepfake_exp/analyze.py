"""Cluster analysis of a faces dataset: ``python -m deepfake_exp.analyze [ckpt_path=...]``.

The York study: embed every face (a model or a trained checkpoint's backbone), PCA -> 2-D map
(``reducer=tsne|tsne_sklearn|umap``) -> HDBSCAN, galleries per cluster and a bias table.
Returns the clusters' group ARI. The work is in :mod:`deepfake_exp.tasks.analyze`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from deepfake_exp.tasks import analyze as task


@hydra.main(version_base="1.3", config_path="../conf", config_name="analyze")
def main(cfg: DictConfig) -> float | None:
    return task.run(cfg)


if __name__ == "__main__":
    main()
