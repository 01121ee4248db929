"""Dimension reduction: PCA first (fast, denoises), then t-SNE (or UMAP) down to 2-D.

The York study's "PCA + t-SNE": t-SNE's cost grows with the input width, so PCA to ~50
dimensions keeps nearly all the variance that matters and makes the slow step cheap. Every
function caps its parameters to what the data allows, so a tiny debug set still runs.

Reducers by name (:data:`REDUCERS`, ``reducer=`` in ``conf/analyze.yaml``): ``tsne`` is
openTSNE, whose FFT-interpolated gradient grows linearly with the number of faces (York's
130k in minutes; scikit-learn's Barnes-Hut took 827 s at 100k on 2 cores),
``tsne_uniform`` the same on a 15-neighbour graph (the fast setting at York's scale),
``tsne_sklearn`` is scikit-learn's, ``umap`` needs umap-learn. :func:`knn_preservation` says
how much of the input's neighbourhoods a map keeps, so a faster reducer is not a worse one.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from functools import partial

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

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


#: Early-exaggeration iterations of both t-SNEs (scikit-learn counts them in ``max_iter``).
EXAGGERATION_ITER = 250


def _tsne_input(x: np.ndarray, perplexity: float) -> tuple[np.ndarray, float]:
    """The checked matrix and the perplexity capped for its size (logged when capped)."""
    matrix = _as_matrix(x, 4, "t-SNE")
    effective = capped_perplexity(perplexity, len(matrix))
    if effective < perplexity:
        log.info(
            "t-SNE: perplexity %.1f capped to %.1f for %d samples",
            perplexity,
            effective,
            len(matrix),
        )
    return matrix, effective


#: Faces from which openTSNE interpolates the repulsive forces on an FFT grid (Barnes-Hut
#: below). The grid's cost per iteration grows with the map's width, not with the faces: on
#: 2 cores ~0.16 s once a map is 160 units wide, at 10k or at 130k faces alike. Measured at
#: 10k (250 + 750 iterations): Barnes-Hut 50 s, FFT 90 s, kNN preservation 0.259 vs 0.257.
#: Barnes-Hut's n log n cost meets the grid's near 50k; openTSNE's own switch is at 10k.
FFT_FROM = 50_000

#: ``affinity=`` of :func:`tsne_reduce`: perplexity-calibrated Gaussians on ``3 * perplexity``
#: neighbours (classic t-SNE), or equal weights on ``k_neighbors`` neighbours (the kNN graph
#: of UMAP; Böhm, Berens & Kobak, JMLR 2022: nearly the same maps, 6x fewer neighbours).
AFFINITIES = ("perplexity", "uniform")


def tsne_reduce(
    x: np.ndarray,
    n_components: int = 2,
    perplexity: float = 30.0,
    seed: int = 0,
    max_iter: int = 750,
    n_jobs: int | None = None,
    affinity: str = "perplexity",
    k_neighbors: int = 15,
) -> np.ndarray:
    """openTSNE t-SNE (PCA init, automatic learning rate), seeded: the default reducer.

    From :data:`FFT_FROM` faces on, the repulsive forces of a 2-D map are interpolated on a
    grid by FFT, whose cost does not grow with the faces; below (and beyond 2 components,
    which FFT does not support) Barnes-Hut is faster. ``max_iter`` counts the
    early-exaggeration phase, as scikit-learn's does, so both reducers take the same settings
    (750 = openTSNE's own 250 + 500). ``affinity="uniform"`` (:data:`AFFINITIES`) is the fast
    setting for York-scale sets: ``k_neighbors`` instead of ``3 * perplexity`` neighbours make
    a 6x smaller graph to search for and to pull along each iteration (``make bench``, 130k
    faces on 2 cores: 157 s vs 363 s, kNN preservation 0.150 vs 0.179).
    """
    from openTSNE import TSNE as OpenTSNE
    from openTSNE import affinity as affinities

    if affinity not in AFFINITIES:
        raise ValueError(f"unknown t-SNE affinity {affinity!r}; choose from {list(AFFINITIES)}")
    matrix, effective = _tsne_input(x, perplexity)
    jobs = 1 if n_jobs is None else n_jobs
    exaggeration_iter = min(EXAGGERATION_ITER, max_iter // 4)
    large_2d = n_components <= 2 and len(matrix) >= FFT_FROM
    tsne = OpenTSNE(
        n_components=n_components,
        perplexity=effective,
        initialization="pca",
        learning_rate="auto",
        early_exaggeration_iter=exaggeration_iter,
        n_iter=max(max_iter - exaggeration_iter, 1),
        negative_gradient_method="fft" if large_2d else "bh",
        n_jobs=jobs,
        random_state=seed,
    )
    uniform = None
    if affinity == "uniform":
        uniform = affinities.Uniform(
            matrix, k_neighbors=min(k_neighbors, len(matrix) - 1), n_jobs=jobs, random_state=seed
        )
    return np.asarray(tsne.fit(matrix, affinities=uniform), dtype=np.float32)


def sklearn_tsne_reduce(
    x: np.ndarray,
    n_components: int = 2,
    perplexity: float = 30.0,
    seed: int = 0,
    max_iter: int = 1000,
    n_jobs: int | None = None,
) -> np.ndarray:
    """scikit-learn Barnes-Hut t-SNE (PCA init, automatic learning rate), seeded."""
    matrix, effective = _tsne_input(x, perplexity)
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


#: ``reducer=`` name -> function (each takes ``x`` plus its config node's keys).
REDUCERS: dict[str, Callable[..., np.ndarray]] = {
    "tsne": tsne_reduce,
    "tsne_uniform": partial(tsne_reduce, affinity="uniform"),
    "tsne_sklearn": sklearn_tsne_reduce,
    "umap": umap_reduce,
}


def get_reducer(name: str) -> Callable[..., np.ndarray]:
    """The reducer called ``name``; a typo fails with the valid names."""
    if name not in REDUCERS:
        raise KeyError(f"unknown reducer {name!r}; choose from {sorted(REDUCERS)}")
    return REDUCERS[name]


#: Reducers whose package is optional, and the check that says how to install it.
_REQUIREMENTS: dict[str, Callable[[], None]] = {"umap": require_umap}


def require_reducer(name: str) -> None:
    """Fail before any embedding when ``name`` is unknown or its optional package is missing."""
    get_reducer(name)
    _REQUIREMENTS.get(name, lambda: None)()


def knn_preservation(
    high: np.ndarray, low: np.ndarray, k: int = 10, sample: int = 2000, seed: int = 0
) -> float:
    """Mean share of each point's ``k`` nearest neighbours in ``high`` kept in ``low``.

    1.0: every neighbourhood survives the map; ``k / n``: a random map. Computed for a seeded
    sample of query points against all points, so it stays cheap at 100k+ where
    trustworthiness (all pairwise ranks) does not fit in memory.
    """
    high, low = np.asarray(high, np.float32), np.asarray(low, np.float32)
    if len(high) != len(low):
        raise ValueError(f"{len(high)} input points but {len(low)} mapped points")
    k = min(k, len(high) - 1)
    queries = np.random.default_rng(seed).permutation(len(high))[: min(sample, len(high))]

    def neighbours(points: np.ndarray) -> np.ndarray:
        index = NearestNeighbors(n_neighbors=k + 1).fit(points)
        found = index.kneighbors(points[queries], return_distance=False)
        return np.array([row[row != q][:k] for row, q in zip(found, queries, strict=True)])

    kept = [
        np.intersect1d(a, b).size for a, b in zip(neighbours(high), neighbours(low), strict=True)
    ]
    return float(np.mean(kept) / k)
