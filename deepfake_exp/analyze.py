"""Cluster analysis of a faces dataset: ``python -m deepfake_exp.analyze [ckpt_path=...]``.

The York study: embed every face (a model from ``conf/model``, or a trained checkpoint's
backbone, whose head then also scores each face), PCA -> t-SNE -> HDBSCAN, then galleries per
cluster and a bias table. Embeddings are cached under the faces dir, so trying other
reduction or clustering settings never runs the model again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import torch
from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf

from deepfake_exp.analysis.embeddings import (
    EmbeddingSet,
    checkpoint_cache_key,
    compute_embeddings,
    load_cached,
    model_cache_key,
)
from deepfake_exp.analysis.pipeline import run_analysis
from deepfake_exp.analysis.reduce import require_umap
from deepfake_exp.data.datamodule import FaceDataset, read_manifest
from deepfake_exp.data.transforms import NoAugmentation
from deepfake_exp.inference import load_detector
from deepfake_exp.models.heads import fake_probability
from deepfake_exp.utils.run import save_run_info

log = logging.getLogger(__name__)

REDUCERS = ("tsne", "umap")


@dataclass
class PCASchema:
    _target_: str = "deepfake_exp.analysis.reduce.pca_reduce"
    _partial_: bool = True
    n_components: int = 50
    seed: int = 0


@dataclass
class TSNESchema:
    _target_: str = "deepfake_exp.analysis.reduce.tsne_reduce"
    _partial_: bool = True
    n_components: int = 2
    perplexity: float = 30.0
    seed: int = 0
    max_iter: int = 1000
    n_jobs: int | None = None


@dataclass
class UMAPSchema:
    _target_: str = "deepfake_exp.analysis.reduce.umap_reduce"
    _partial_: bool = True
    n_components: int = 2
    n_neighbors: int = 15
    min_dist: float = 0.1
    seed: int = 0


@dataclass
class HDBSCANSchema:
    _target_: str = "deepfake_exp.analysis.clusters.hdbscan_clusters"
    _partial_: bool = True
    min_cluster_size: int = 15
    min_samples: int | None = None
    cluster_selection_epsilon: float = 0.0


@dataclass
class GallerySchema:
    top_n: int = 12
    max_clusters: int = 50


@dataclass
class ProjectorSchema:
    max_faces: int = 2000
    thumbnail_size: int = 32


@dataclass
class AnalyzeSchema:
    task_name: str = "analyze"
    faces_dir: str = MISSING
    ckpt_path: str | None = None
    split: str | None = None
    max_faces: int | None = None
    seed: int = 0
    device: str | None = None
    batch_size: int = 64
    num_workers: int = 2
    chunk_size: int = 2048
    cache_dir: str | None = None
    threshold: float = 0.5
    progress: bool = True
    tensorboard: bool = True
    pca: PCASchema = field(default_factory=PCASchema)
    reducer: str = "tsne"
    tsne: TSNESchema = field(default_factory=TSNESchema)
    umap: UMAPSchema = field(default_factory=UMAPSchema)
    hdbscan: HDBSCANSchema = field(default_factory=HDBSCANSchema)
    gallery: GallerySchema = field(default_factory=GallerySchema)
    projector: ProjectorSchema = field(default_factory=ProjectorSchema)
    model: Any = MISSING
    paths: Any = MISSING


ConfigStore.instance().store(name="analyze_schema", node=AnalyzeSchema)


def select_faces(
    manifest: pd.DataFrame, split: str | None, max_faces: int | None, seed: int = 0
) -> pd.DataFrame:
    """The manifest rows to analyse: one split or all, then a seeded sample, in manifest order."""
    frame = manifest
    if split is not None:
        found = sorted(manifest["split"].dropna().unique())
        frame = manifest[manifest["split"] == split]
        if frame.empty:
            raise ValueError(f"split {split!r} has no faces; the manifest has splits {found}")
    if max_faces is not None and len(frame) > max_faces:
        frame = frame.sample(n=max_faces, random_state=seed).sort_index()
    return frame.reset_index(drop=True)


def _device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def embed_faces(cfg: DictConfig, frame: pd.DataFrame, faces_dir: Path) -> EmbeddingSet:
    """Cached embeddings of ``frame``: the checkpoint's backbone + head scores, or ``cfg.model``.

    The model is built only when the cache misses.
    """
    scored = cfg.ckpt_path is not None
    if scored:
        key = checkpoint_cache_key(cfg.ckpt_path)
    else:
        key = model_cache_key(OmegaConf.to_container(cfg.model, resolve=True), cfg.seed)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else faces_dir / "embeddings" / key
    cached = load_cached(cache_dir, frame, key, scored)
    if cached is not None:
        log.info("embeddings read from %s", cached.folder)
        return cached

    device = _device(cfg.device)
    score = None
    if scored:
        module, _ = load_detector(cfg.ckpt_path, map_location=str(device))
        log.info("embedding with the backbone of %s (model=%s ignored)", cfg.ckpt_path, key)
        backbone, head, kind = module.backbone, module.head.eval(), module.hparams.head

        def score(features: torch.Tensor) -> torch.Tensor:
            return fake_probability(kind, head(features))

    else:
        torch.manual_seed(cfg.seed)  # without weights, the embedding is the seeded random init
        backbone = instantiate(cfg.model)
    backbone = backbone.eval().to(device)
    transform = NoAugmentation(backbone.input_size, backbone.mean, backbone.std).eval_transform()
    return compute_embeddings(
        frame,
        FaceDataset(frame, faces_dir, transform),
        backbone.forward_features,
        cache_dir,
        key,
        score=score,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        chunk_size=cfg.chunk_size,
        device=device,
        progress=cfg.progress,
    )


def analyze(cfg: DictConfig) -> dict[str, Any]:
    """Embed, reduce, cluster and report into ``paths.output_dir``; returns the summary."""
    if cfg.reducer not in REDUCERS:
        raise ValueError(f"reducer must be one of {REDUCERS}, got {cfg.reducer!r}")
    if cfg.reducer == "umap":
        require_umap()  # before embedding, which may take hours
    steps = {name: instantiate(cfg[name]) for name in ("pca", cfg.reducer, "hdbscan")}
    out_dir = Path(cfg.paths.output_dir)
    faces_dir = Path(cfg.faces_dir)
    save_run_info(out_dir, cfg)
    frame = select_faces(read_manifest(faces_dir), cfg.split, cfg.max_faces, cfg.seed)
    data = embed_faces(cfg, frame, faces_dir)
    return run_analysis(
        data,
        out_dir,
        faces_dir,
        pca=steps["pca"],
        reducer=steps[cfg.reducer],
        clusterer=steps["hdbscan"],
        reducer_name=cfg.reducer,
        top_n=cfg.gallery.top_n,
        max_galleries=cfg.gallery.max_clusters,
        projector_faces=cfg.projector.max_faces,
        thumbnail_size=cfg.projector.thumbnail_size,
        threshold=cfg.threshold,
        tensorboard=cfg.tensorboard,
        seed=cfg.seed,
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="analyze")
def main(cfg: DictConfig) -> float | None:
    summary = analyze(cfg)
    log.info(
        "%d faces -> %d clusters (%.1f%% noise); report: %s",
        summary["n_faces"],
        summary["n_clusters"],
        100 * summary["noise_share"],
        Path(cfg.paths.output_dir) / "cluster_table.md",
    )
    return summary["group_ari"]


if __name__ == "__main__":
    main()
