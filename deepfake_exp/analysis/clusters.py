"""HDBSCAN clustering of the reduced embeddings, and the faces that typify each cluster.

HDBSCAN (the York study's choice) needs no cluster count and leaves outliers unassigned
(label ``-1``): on 130k faces nobody knows how many identities, lightings or skin tones there
are, and forcing every face into a cluster would blur exactly the groups the bias table shows.

The ``hdbscan`` package (scikit-learn-contrib, the reference implementation) rather than
``sklearn.cluster.HDBSCAN``, its port: on a 2-D map its Boruvka kd-tree builds the spanning
tree ~19x faster (130k faces: 5.6 s vs 107 s on 2 cores; the same clusters, ARI 0.998
between the two; ``make bench``'s analysis section times it).
"""

from __future__ import annotations

import numpy as np
from hdbscan import HDBSCAN

NOISE = -1


def hdbscan_clusters(
    x: np.ndarray,
    min_cluster_size: int = 15,
    min_samples: int | None = None,
    cluster_selection_epsilon: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster labels (``-1`` = noise) and membership strengths in [0, 1] per row.

    ``min_cluster_size`` is capped at the number of rows, so a tiny debug set still clusters.
    """
    matrix = np.asarray(x, dtype=np.float64)
    if matrix.ndim != 2 or len(matrix) < 2:
        raise ValueError(f"HDBSCAN needs a (samples >= 2, features) array, got {matrix.shape}")
    if min_cluster_size < 2:
        raise ValueError(f"min_cluster_size must be >= 2, got {min_cluster_size}")
    size = min(min_cluster_size, len(matrix))
    model = HDBSCAN(
        min_cluster_size=size,
        min_samples=None if min_samples is None else min(min_samples, len(matrix)),
        cluster_selection_epsilon=cluster_selection_epsilon,
    )
    labels = model.fit_predict(matrix)
    return labels.astype(np.int64), model.probabilities_.astype(np.float32)


def cluster_ids(labels: np.ndarray) -> list[int]:
    """The real clusters (noise excluded), ascending."""
    return [int(c) for c in np.unique(labels) if c != NOISE]


def nearest_to_centre(
    features: np.ndarray, labels: np.ndarray, top_n: int
) -> dict[int, np.ndarray]:
    """Per cluster, the row indices of its ``top_n`` members closest to the cluster's mean.

    Measured in ``features`` (pass the PCA embedding: distances there mean something, in
    t-SNE's plane only neighbourhoods do), nearest first: the cluster's most typical faces.
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    nearest = {}
    for cluster in cluster_ids(labels):
        members = np.flatnonzero(labels == cluster)
        points = features[members]
        distances = np.linalg.norm(points - points.mean(axis=0), axis=1)
        nearest[cluster] = members[np.argsort(distances, kind="stable")[:top_n]]
    return nearest
