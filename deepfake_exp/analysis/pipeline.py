"""The York study's analysis over cached embeddings: PCA -> 2-D map -> HDBSCAN -> reports.

Takes embeddings already computed (:mod:`deepfake_exp.analysis.embeddings`) and the three
steps as callables (Hydra partials), so the same function serves the entrypoint, tests and
notebooks. Each step's output is saved before the next runs (``pca.npy``, ``<reducer>.npy``,
``clusters.csv``); then the bias table (CSV, Markdown, PNG), the maps, one gallery per cluster
and TensorBoard (images + the embedding projector with face thumbnails).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from PIL import Image
from sklearn.metrics import adjusted_rand_score
from torch.utils.tensorboard import SummaryWriter

from deepfake_exp.analysis import figures
from deepfake_exp.analysis.bias import bias_markdown, cluster_table
from deepfake_exp.analysis.clusters import NOISE, cluster_ids, nearest_to_centre
from deepfake_exp.analysis.embeddings import EmbeddingSet
from deepfake_exp.evaluation.metrics import binary_metrics
from deepfake_exp.evaluation.plots import save_figure
from deepfake_exp.utils.io import atomic_write, write_csv, write_json

log = logging.getLogger(__name__)

Reduce = Callable[[np.ndarray], np.ndarray]
Cluster = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class _Stages:
    """Wall time per named stage, for the summary and the benchmark."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, step: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = step()
        self.seconds[name] = round(time.perf_counter() - start, 3)
        log.info("%s: %.2f s", name, self.seconds[name])
        return result


def _save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda p: np.save(p, array))


def sample_rows(n: int, limit: int, seed: int = 0) -> np.ndarray:
    """Up to ``limit`` row indices, a seeded random sample in ascending order."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def warn_if_degenerate(vectors: np.ndarray, tolerance: float = 1e-6) -> bool:
    """Warn when all faces embed to nearly the same vector; returns whether they do.

    A randomly initialised MobileNetV2 or EfficientNet in eval mode shrinks every input to
    ~1e-10: the maps would then show numerical noise, not faces.
    """
    spread = float(np.asarray(vectors, dtype=np.float64).std(axis=0).max())
    if spread < tolerance:
        log.warning(
            "embeddings are nearly constant (largest per-dimension std %.2g): the model has no "
            "trained weights? give ckpt_path=..., model.pretrained=true or model.weights_path",
            spread,
        )
    return spread < tolerance


def overall_scores(index: pd.DataFrame, threshold: float) -> dict[str, float]:
    """All faces' accuracy / ROC-AUC / log-loss, the baseline each cluster is read against."""
    metrics = binary_metrics(index["label"].to_numpy(), index["prob"].to_numpy(), threshold)
    return {k: metrics[k] for k in ("accuracy", "roc_auc", "log_loss")}


def group_agreement(index: pd.DataFrame, clusters: np.ndarray) -> float | None:
    """Adjusted Rand index between clusters and the manifest's identity groups, if known.

    On the synthetic set ``group`` is the identity, so this says how far clusters follow
    faces rather than lighting or artefacts.
    """
    if "group" not in index or index["group"].isna().all():
        return None
    return float(adjusted_rand_score(index["group"].astype(str), clusters))


def write_projector(
    writer: SummaryWriter,
    data: EmbeddingSet,
    clusters: np.ndarray,
    faces_root: Path,
    max_faces: int,
    thumbnail_size: int,
    seed: int,
) -> int:
    """TensorBoard's embedding projector over a capped sample, each point shown as its face."""
    rows = sample_rows(len(data.index), max_faces, seed)
    index = data.index.iloc[rows]
    thumbs = np.stack(figures.read_faces(faces_root, index["face_path"].tolist(), thumbnail_size))
    header = ["label", "cluster", "video_id", *(c for c in ("split", "prob") if c in index)]
    metadata = [
        [figures.CLASS_NAMES[int(row.label)], str(cluster), str(row.video_id)]
        + [str(getattr(row, c)) for c in header[3:]]
        for row, cluster in zip(index.itertuples(index=False), clusters[rows], strict=True)
    ]
    writer.add_embedding(
        torch.from_numpy(data.vectors[rows]),
        metadata=metadata,
        metadata_header=header,
        label_img=torch.from_numpy(thumbs).permute(0, 3, 1, 2).float() / 255.0,
        tag="faces",
        global_step=0,
    )
    return len(rows)


def _save(out_dir: Path, name: str, figure: Figure, writer: SummaryWriter | None) -> Path:
    """Write the PNG; TensorBoard gets that file's pixels, so each figure is rendered once."""
    path = save_figure(figure, out_dir / f"{name}.png")
    if writer is not None:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        writer.add_image(f"analysis/{name}", pixels, 0, dataformats="HWC")
    return path


def write_galleries(
    out_dir: Path,
    data: EmbeddingSet,
    features: np.ndarray,
    clusters: np.ndarray,
    table: pd.DataFrame,
    faces_root: Path,
    top_n: int,
    max_galleries: int,
    writer: SummaryWriter | None,
) -> int:
    """One gallery per cluster, in table order (worst-served first), of its typical faces."""
    nearest = nearest_to_centre(features, clusters, top_n)
    written = 0
    for row in table.itertuples(index=False):
        if row.cluster == NOISE or written >= max_galleries:
            continue
        members = data.index.iloc[nearest[row.cluster]]
        title = f"cluster {row.cluster}: n={row.size}, fake {row.fake_share:.0%}"
        if hasattr(row, "accuracy"):
            title += f", acc {row.accuracy:.2f}, log-loss {row.log_loss:.3f}"
        faces = figures.read_faces(faces_root, members["face_path"].tolist())
        figure = figures.cluster_gallery(faces, members, title)
        _save(out_dir, f"galleries/cluster_{row.cluster:04d}", figure, writer)
        written += 1
    return written


def run_analysis(
    data: EmbeddingSet,
    out_dir: str | Path,
    faces_root: str | Path,
    pca: Reduce,
    reducer: Reduce,
    clusterer: Cluster,
    reducer_name: str = "tsne",
    top_n: int = 12,
    max_galleries: int = 50,
    projector_faces: int = 2000,
    thumbnail_size: int = 32,
    threshold: float = 0.5,
    tensorboard: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Reduce, cluster and report; returns the summary also written to ``summary.json``.

    Args:
        data: Embeddings and their manifest rows (``prob`` present when scored).
        out_dir: Run directory receiving every output.
        faces_root: Folder the ``face_path`` column is relative to (the faces dir).
        pca: Embeddings -> PCA features (also the space cluster centres are measured in).
        reducer: PCA features -> 2-D points (t-SNE or UMAP).
        clusterer: 2-D points -> (cluster labels with -1 noise, membership strength).
        reducer_name: Names the saved map (``tsne.npy``).
        top_n: Faces per cluster gallery.
        max_galleries: Galleries drawn at most (worst-served clusters first).
        projector_faces: Faces in TensorBoard's projector (a seeded sample beyond it).
        thumbnail_size: Side of the projector's face thumbnails.
        threshold: P(fake) at or above which a face is called fake.
        tensorboard: Also log to ``<out_dir>/tensorboard``.
        seed: Seed of the projector sample.
    """
    out_dir, faces_root = Path(out_dir), Path(faces_root)
    warn_if_degenerate(data.vectors)
    stages = _Stages()
    features = stages.run("pca", lambda: pca(data.vectors))
    _save_npy(out_dir / "pca.npy", features)
    points = stages.run(reducer_name, lambda: reducer(features))
    _save_npy(out_dir / f"{reducer_name}.npy", points)
    clusters, strength = stages.run("hdbscan", lambda: clusterer(points))
    assigned = data.index.copy()
    assigned["x"], assigned["y"] = points[:, 0], points[:, 1]
    assigned["cluster"], assigned["membership"] = clusters, strength
    write_csv(out_dir / "clusters.csv", assigned)

    probs = data.probs
    table = cluster_table(clusters, data.index["label"], probs, threshold)
    overall = overall_scores(data.index, threshold) if probs is not None else None
    write_csv(out_dir / "cluster_table.csv", table)
    atomic_write(
        out_dir / "cluster_table.md", lambda p: p.write_text(bias_markdown(table, overall))
    )

    writer = SummaryWriter(str(out_dir / "tensorboard")) if tensorboard else None
    try:
        maps = {
            "map_label": figures.plot_label_map(points, data.index["label"].to_numpy()),
            "map_cluster": figures.plot_cluster_map(points, clusters),
            "cluster_table": figures.plot_bias_chart(table),
        }
        if probs is not None:
            maps["map_prob"] = figures.plot_value_map(points, probs)
        for name, figure in maps.items():
            _save(out_dir, name, figure, writer)
        galleries = stages.run(
            "galleries",
            lambda: write_galleries(
                out_dir, data, features, clusters, table, faces_root, top_n, max_galleries, writer
            ),
        )
        projected = 0
        if writer is not None:
            projected = write_projector(
                writer, data, clusters, faces_root, projector_faces, thumbnail_size, seed
            )
            writer.add_scalar("analysis/n_clusters", len(cluster_ids(clusters)), 0)
            writer.add_scalar("analysis/noise_share", float((clusters == NOISE).mean()), 0)
    finally:
        if writer is not None:
            writer.close()

    summary = {
        "n_faces": len(data.index),
        "embedding_dim": int(data.vectors.shape[1]),
        "pca_dim": int(features.shape[1]),
        "reducer": reducer_name,
        "n_clusters": len(cluster_ids(clusters)),
        "noise_share": float((clusters == NOISE).mean()),
        "group_ari": group_agreement(data.index, clusters),
        "overall": overall,
        "galleries": galleries,
        "projector_faces": projected,
        "embeddings": str(data.folder),
        "embedded_now": data.computed,
        "seconds": stages.seconds,
    }
    write_json(out_dir / "summary.json", summary)
    return summary
