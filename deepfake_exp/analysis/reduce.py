"""Dimension reduction: PCA first (fast, denoises), then t-SNE (or UMAP) down to 2-D.

The York study's "PCA + t-SNE": t-SNE's cost grows with the input width, so PCA to ~50
dimensions keeps nearly all the variance that matters and makes the slow step cheap. Every
function caps its parameters to what the data allows, so a tiny debug set still runs.
"""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

log = logging.getLogger(__name__)


def _as_matrix(x: np.ndarray, min_rows: int, what: str) -> np.ndarray:
    matrix = np.asarray(x, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"{what} needs a 2-D (samples, features) array, got shape {matrix.shape}")
    if matrix.shape[0] < min_rows:
        raise ValueError(f"{what} needs at least {min_rows} samples, got {matrix.shape[0]}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{what} input holds NaN/inf values (a diverged model?)")
    return matrix


def pca_reduce(x: np.ndarray, n_components: int = 50, seed: int = 0) -> np.ndarray:
    """Project onto the first ``n_components`` principal axes (capped at samples and features)."""
    matrix = _as_matrix(x, 2, "PCA")
    if n_components < 1:
        raise ValueError(f"pca n_components must be >= 1, got {n_components}")
    components = min(n_components, *matrix.shape)
    if components < n_components:
        log.info("PCA: %d components (data is %dx%d)", components, *matrix.shape)
    pca = PCA(n_components=components, random_state=seed)
    return pca.fit_transform(matrix).astype(np.float32)


def capped_perplexity(perplexity: float, n_samples: int) -> float:
    """``perplexity`` capped at ``(n_samples - 1) / 3``.

    t-SNE calibrates each point on its ``3 * perplexity`` nearest neighbours, and scikit-learn
    refuses ``perplexity >= n_samples``; the cap keeps the neighbourhood inside the data.
    """
    if perplexity <= 0:
        raise ValueError(f"perplexity must be > 0, got {perplexity}")
    cap = max(1.0, (n_samples - 1) / 3.0)
    return float(min(perplexity, cap))


def tsne_reduce(
    x: np.ndarray,
    n_components: int = 2,
    perplexity: float = 30.0,
    seed: int = 0,
    max_iter: int = 1000,
    n_jobs: int | None = None,
) -> np.ndarray:
    """scikit-learn Barnes-Hut t-SNE (PCA init, automatic learning rate), seeded."""
    matrix = _as_matrix(x, 4, "t-SNE")
    effective = capped_perplexity(perplexity, len(matrix))
    if effective < perplexity:
        log.info(
            "t-SNE: perplexity %.1f capped to %.1f for %d samples",
            perplexity,
            effective,
            len(matrix),
        )
    tsne = TSNE(
        n_components=n_components,
        perplexity=effective,
        init="pca",
        learning_rate="auto",
        max_iter=max_iter,
        random_state=seed,
        n_jobs=n_jobs,
    )
    return tsne.fit_transform(matrix).astype(np.float32)


def umap_available() -> bool:
    """umap-learn is optional (not a project dependency): look for it without importing it."""
    return importlib.util.find_spec("umap") is not None


def require_umap() -> None:
    """Fail with the fix in the message, before hours of embedding, if umap-learn is missing."""
    if not umap_available():
        raise ModuleNotFoundError(
            "reducer=umap needs umap-learn, which is not installed: `pip install umap-learn` "
            "or use reducer=tsne"
        )


def umap_reduce(
    x: np.ndarray,
    n_components: int = 2,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """UMAP (umap-learn), far faster than scikit-learn's t-SNE beyond ~50k faces."""
    require_umap()
    import umap

    matrix = _as_matrix(x, 4, "UMAP")
    reducer = umap.UMAP(
        n_components=n_components,
        n_neighbors=min(n_neighbors, len(matrix) - 1),
        min_dist=min_dist,
        random_state=seed,
    )
    return np.asarray(reducer.fit_transform(matrix), dtype=np.float32)
