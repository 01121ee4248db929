"""Stage timings of PCA, t-SNE and HDBSCAN on synthetic clustered embeddings (``make bench``).

The York study clustered 130k faces in about 45 minutes; these numbers say what the same
steps cost here and where the time goes, on data shaped like face embeddings: identity
clusters of unequal size (~250 faces each on average, as in the study's 520 clusters) that
*overlap* as real identities do (blurred, profile or look-alike faces sit nearer another
identity). Well-separated blobs would make every clustering look perfect (ARI 1.0 says
nothing); here the share of faces nearer another identity's centre than their own is set
(``overlap``), measured and printed next to the ARI, so the ARI is read against it.

Each reducer (``analysis.reduce.REDUCERS``) runs at its own sizes on the same PCA input:
openTSNE (``tsne``, the default, perplexity 30) and scikit-learn's t-SNE (``tsne_sklearn``,
the baseline) at 10k, openTSNE on a 15-neighbour graph (``tsne_uniform``) at York's 130k.
Larger rows are opt-in, as they do not fit the section's 5 minutes:
``analysis.reducers.tsne=[10000,100000,130000]`` (273 s at 100k, 363 s at 130k on 2 cores),
``analysis.reducers.tsne_uniform=[100000,130000]``,
``analysis.reducers.tsne_sklearn=[10000,100000]`` (827 s at 100k). Beside each time: the
share of input neighbourhoods the map keeps (``knn_preservation``) and the speed-up over
the baseline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from sklearn.metrics import adjusted_rand_score

from deepfake_exp.analysis.clusters import NOISE, hdbscan_clusters
from deepfake_exp.analysis.reduce import get_reducer, knn_preservation, pca_reduce
from deepfake_exp.benchmarks.common import section_frame

#: Issue 16.5: York's 130k embeddings -> 2-D within 3 minutes on 2 cores.
TARGET_N, TARGET_S = 130_000, 180.0
DEFAULT_REDUCERS = {"tsne": (10_000,), "tsne_sklearn": (10_000,), "tsne_uniform": (130_000,)}
#: The openTSNE reducers whose York-scale rows say whether the target was met.
TARGET_REDUCERS = ("tsne", "tsne_uniform")
#: Row columns in table order: what was run, wall times, quality, CPU times, the target.
COLUMNS = (
    "reducer", "n", "dim", "true_clusters", "overlap", "pca_s", "reduce_s", "hdbscan_s",
    "total_s", "x_faster", "knn_preservation", "n_clusters", "noise_share", "ari",
    "pca_cpu_s", "reduce_cpu_s", "hdbscan_cpu_s", "target", "met",
)  # fmt: skip

#: Degrees of freedom of the within-identity spread: most faces sit near their identity's
#: centre, a heavy tail (blur, profile, occlusion) strays towards others.
TAIL_DOF = 3.0


def nearest_centre_error(points: np.ndarray, centres: np.ndarray, labels: np.ndarray) -> float:
    """Share of ``points`` nearer another cluster's centre than their own (the overlap)."""
    wrong = 0
    for start in range(0, len(points), 4096):  # bounded memory at 100k x 400 clusters
        chunk = points[start : start + 4096]
        d2 = (chunk**2).sum(1, keepdims=True) - 2.0 * chunk @ centres.T + (centres**2).sum(1)
        wrong += int((d2.argmin(1) != labels[start : start + 4096]).sum())
    return wrong / max(len(points), 1)


def _centre_scale(
    directions: np.ndarray, noise: np.ndarray, labels: np.ndarray, overlap: float
) -> float:
    """The centre spread at which ``overlap`` of the points sit nearer a foreign centre."""
    low, high = 0.0, 64.0
    for _ in range(40):  # bisection: the error falls as the centres move apart
        mid = (low + high) / 2.0
        error = nearest_centre_error(mid * directions[labels] + noise, mid * directions, labels)
        low, high = (mid, high) if error > overlap else (low, mid)
    return (low + high) / 2.0


def clustered_embeddings(
    n: int,
    dim: int = 256,
    faces_per_cluster: int = 250,
    overlap: float = 0.05,
    latent_dim: int = 16,
    ambient_noise: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """``(n, dim)`` float32 embeddings, their identity ids and the measured overlap.

    Identities are heavy-tailed clusters (multivariate Student t, :data:`TAIL_DOF`) in a
    ``latent_dim`` space whose centres are spread so that ``overlap`` of the faces lie nearer
    another identity's centre; sizes vary (Dirichlet shares). The latent space is rotated into ``dim`` dimensions plus a little
    isotropic noise, as embeddings fill many dimensions but vary along few. Isotropic blobs in
    the full 256 dimensions would either separate perfectly or not at all: distances there
    concentrate, so their overlap cannot be set in between.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    rng = np.random.default_rng(seed)
    latent_dim = min(latent_dim, dim)
    k = max(2, n // faces_per_cluster)
    sizes = rng.multinomial(n - k, rng.dirichlet(np.full(k, 4.0))) + 1  # every identity >= 1
    labels = rng.permutation(np.repeat(np.arange(k), sizes))
    directions = rng.standard_normal((k, latent_dim))
    tail = np.sqrt(rng.chisquare(TAIL_DOF, (n, 1)) / TAIL_DOF)  # multivariate Student t
    noise = rng.standard_normal((n, latent_dim)) / tail
    sample = rng.choice(n, size=min(n, 5000), replace=False)
    scale = _centre_scale(directions, noise[sample], labels[sample], overlap)
    latent = scale * directions[labels] + noise
    measured = nearest_centre_error(latent, scale * directions, labels)
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, latent_dim)))  # orthonormal columns
    x = latent @ rotation.T
    x = x + ambient_noise * rng.standard_normal((n, dim))
    return x.astype(np.float32), labels, measured


def _timed(step: Callable[[], Any]) -> tuple[Any, float, float]:
    """Result, wall seconds and CPU seconds of this process (all threads).

    CPU time says what a stage costs even on a shared machine, where wall time also counts
    the waits for other jobs; wall / CPU shows how much of the machine a stage used.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = step()
    return result, round(time.perf_counter() - wall, 3), round(time.process_time() - cpu, 3)


def benchmark_analysis(
    reducers: Mapping[str, Sequence[int]] | None = None,
    baseline: str = "tsne_sklearn",
    dim: int = 256,
    overlap: float = 0.05,
    pca_components: int = 50,
    perplexity: float = 30.0,
    min_cluster_size: int = 50,
    max_iter: int = 750,
    n_jobs: int | None = None,
    knn_k: int = 10,
    knn_sample: int = 2000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Seconds per stage and the map's and clustering's quality, per reducer and size.

    Args:
        reducers: Reducer name (``analysis.reduce.REDUCERS``) -> sizes it runs at
            (default :data:`DEFAULT_REDUCERS`); a misspelled name fails before any work.
        baseline: The reducer ``x_faster`` compares against, at the sizes both ran.
        knn_k: Neighbours per point of ``knn_preservation``.
        knn_sample: Query points of ``knn_preservation``.

    Returns:
        One dict per (reducer, size): ``reducer, n, dim, true_clusters``, wall seconds
        ``pca_s, reduce_s, hdbscan_s, total_s``, CPU seconds ``pca_cpu_s, reduce_cpu_s,
        hdbscan_cpu_s``, ``knn_preservation`` (share of the PCA input's ``knn_k`` nearest
        neighbours kept in 2-D), ``x_faster`` (baseline's ``reduce_s`` / this one's), and
        ``n_clusters, noise_share, ari`` (adjusted Rand index vs. the identities, noise
        included) next to ``overlap`` (share of faces nearer another identity's centre):
        even a perfect clustering cannot reach ARI 1 at a non-zero overlap. Rows of the
        default reducer at ``TARGET_N`` faces say whether PCA + t-SNE met ``TARGET_S``.
    """
    plan = {name: list(sizes) for name, sizes in (reducers or DEFAULT_REDUCERS).items()}
    functions = {name: get_reducer(name) for name in plan}
    settings = {"perplexity": perplexity, "seed": seed, "max_iter": max_iter, "n_jobs": n_jobs}
    results = []
    for n in sorted({n for sizes in plan.values() for n in sizes}):
        x, truth, measured = clustered_embeddings(n, dim, overlap=overlap, seed=seed)
        reduced, pca_s, pca_cpu = _timed(partial(pca_reduce, x, pca_components, seed))
        common = {
            "n": n, "dim": dim, "true_clusters": int(np.unique(truth).size),
            "overlap": round(measured, 4), "pca_s": pca_s, "pca_cpu_s": pca_cpu,
        }  # fmt: skip
        rows = {
            name: {"reducer": name, **common}
            | _reduce_and_cluster(
                partial(functions[name], **settings),
                reduced,
                truth,
                min_cluster_size,
                knn_k,
                knn_sample,
                seed,
            )  # fmt: skip
            for name, sizes in plan.items()
            if n in sizes
        }
        for row in rows.values():
            base = rows.get(baseline)
            row["total_s"] = round(row["pca_s"] + row["reduce_s"] + row["hdbscan_s"], 3)
            row["x_faster"] = round(base["reduce_s"] / row["reduce_s"], 2) if base else float("nan")
            row |= _target(row)
            results.append({column: row[column] for column in COLUMNS})
    return results


def _reduce_and_cluster(
    reduce: Callable[[np.ndarray], np.ndarray],
    reduced: np.ndarray,
    truth: np.ndarray,
    min_cluster_size: int,
    knn_k: int,
    knn_sample: int,
    seed: int,
) -> dict[str, Any]:
    """One reducer on the PCA output, then HDBSCAN: times and quality of both."""
    points, reduce_s, reduce_cpu = _timed(partial(reduce, reduced))
    (labels, _), hdbscan_s, hdbscan_cpu = _timed(
        partial(hdbscan_clusters, points, min_cluster_size)
    )
    return {
        "reduce_s": reduce_s,
        "hdbscan_s": hdbscan_s,
        "reduce_cpu_s": reduce_cpu,
        "hdbscan_cpu_s": hdbscan_cpu,
        "knn_preservation": round(knn_preservation(reduced, points, knn_k, knn_sample, seed), 3),
        "n_clusters": int(np.unique(labels[labels != NOISE]).size),
        "noise_share": float((labels == NOISE).mean()),
        "ari": float(adjusted_rand_score(truth, labels)),
    }


def _target(row: Mapping[str, Any]) -> dict[str, str]:
    """Issue 16.5's target on the openTSNE rows at York's scale, blank elsewhere."""
    if row["reducer"] not in TARGET_REDUCERS or row["n"] < TARGET_N:
        return {"target": "", "met": ""}
    seconds = row["pca_s"] + row["reduce_s"]
    return {
        "target": f"PCA + t-SNE <= {TARGET_S:g} s",
        "met": "yes" if seconds <= TARGET_S else "NO",
    }


def run(cfg: DictConfig) -> pd.DataFrame:
    """The ``analysis`` block of ``conf/bench.yaml``: :func:`benchmark_analysis`'s arguments."""
    return section_frame(benchmark_analysis, cfg)
