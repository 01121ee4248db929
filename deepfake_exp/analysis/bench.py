"""Stage timings of PCA, t-SNE and HDBSCAN on synthetic clustered embeddings (``make bench``).

The York study clustered 130k faces in about 45 minutes; these numbers say what the same
steps cost here and where the time goes, on data shaped like face embeddings (Gaussian
clusters in a few hundred dimensions, ~250 faces per identity as in the study's 520 clusters).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from deepfake_exp.analysis.clusters import NOISE, hdbscan_clusters
from deepfake_exp.analysis.reduce import pca_reduce, tsne_reduce


def clustered_embeddings(
    n: int, dim: int = 256, faces_per_cluster: int = 250, spread: float = 4.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(n, dim)`` float32 blobs and their cluster ids; ``spread`` is the within-cluster std.

    Centres are drawn in a box of +/-10 per dimension, so clusters overlap in any single
    dimension but separate in the full space, as identities do in face embeddings.
    """
    centres = max(2, n // faces_per_cluster)
    x, y = make_blobs(
        n_samples=n,
        n_features=dim,
        centers=centres,
        cluster_std=spread,
        center_box=(-10.0, 10.0),
        random_state=seed,
    )
    return x.astype(np.float32), y


def _timed(step: Callable[[], Any]) -> tuple[Any, float, float]:
    """Result, wall seconds and CPU seconds of this process (all threads).

    CPU time says what a stage costs even on a shared machine, where wall time also counts
    the waits for other jobs; wall / CPU shows how much of the machine a stage used.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = step()
    return result, round(time.perf_counter() - wall, 3), round(time.process_time() - cpu, 3)


def benchmark_analysis(
    sizes: Sequence[int] = (10_000, 100_000),
    dim: int = 256,
    pca_components: int = 50,
    perplexity: float = 30.0,
    min_cluster_size: int = 50,
    max_iter: int = 1000,
    n_jobs: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Seconds per stage and the clustering's agreement with the true clusters, per size.

    Returns:
        One dict per size: ``n, dim, true_clusters``, wall seconds ``pca_s, tsne_s,
        hdbscan_s, total_s``, CPU seconds ``pca_cpu_s, tsne_cpu_s, hdbscan_cpu_s``, and
        ``n_clusters, noise_share, ari`` (adjusted Rand index vs. the blobs, noise included).
    """
    results = []
    for n in sizes:
        x, truth = clustered_embeddings(n, dim, seed=seed)
        reduced, pca_s, pca_cpu = _timed(lambda x=x: pca_reduce(x, pca_components, seed))
        points, tsne_s, tsne_cpu = _timed(
            lambda reduced=reduced: tsne_reduce(
                reduced, perplexity=perplexity, seed=seed, max_iter=max_iter, n_jobs=n_jobs
            )
        )
        (labels, _), hdbscan_s, hdbscan_cpu = _timed(
            lambda points=points: hdbscan_clusters(points, min_cluster_size)
        )
        results.append(
            {
                "n": n,
                "dim": dim,
                "true_clusters": int(np.unique(truth).size),
                "pca_s": pca_s,
                "tsne_s": tsne_s,
                "hdbscan_s": hdbscan_s,
                "total_s": round(pca_s + tsne_s + hdbscan_s, 3),
                "pca_cpu_s": pca_cpu,
                "tsne_cpu_s": tsne_cpu,
                "hdbscan_cpu_s": hdbscan_cpu,
                "n_clusters": int(np.unique(labels[labels != NOISE]).size),
                "noise_share": float((labels == NOISE).mean()),
                "ari": float(adjusted_rand_score(truth, labels)),
            }
        )
    return results
