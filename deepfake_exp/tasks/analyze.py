"""Cluster analysis of a faces dataset (``python -m deepfake_exp.analyze``), the York study:
embed every face (a model from ``conf/model``, or a trained checkpoint's backbone, whose head
then also scores each face), PCA -> 2-D map (``reducer=``, a name of
:data:`deepfake_exp.analysis.reduce.REDUCERS`) -> HDBSCAN, then galleries per cluster and a
bias table. Embeddings are cached under the faces dir, so trying other reduction or
clustering settings never runs the model again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from deepfake_exp.analysis.embeddings import (
    EmbeddingSet,
    checkpoint_cache_key,
    compute_embeddings,
    load_cached,
    model_cache_key,
)
from deepfake_exp.analysis.pipeline import run_analysis
from deepfake_exp.analysis.reduce import get_reducer, require_reducer
from deepfake_exp.config import validate_config
from deepfake_exp.data.datamodule import FaceDataset, read_manifest
from deepfake_exp.data.transforms import NoAugmentation
from deepfake_exp.inference import load_detector
from deepfake_exp.models.heads import fake_probability
from deepfake_exp.utils.run import save_run_info

log = logging.getLogger(__name__)


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


def reduction_steps(cfg: DictConfig) -> dict[str, Any]:
    """PCA, the 2-D reducer named by ``cfg.reducer`` and the clusterer, built from their nodes.

    An unknown reducer, or one whose optional package is missing, fails here, before any
    embedding (which may take hours). The reducer's node (``cfg.<reducer>``) holds its
    settings; a reducer without a node runs on its defaults.
    """
    name = str(cfg.reducer)
    require_reducer(name)
    node = cfg.get(name)
    return {
        "pca": instantiate(cfg.pca),
        "reducer": instantiate(node) if node else get_reducer(name),
        "clusterer": instantiate(cfg.hdbscan),
    }


def analyze(cfg: DictConfig) -> dict[str, Any]:
    """Embed, reduce, cluster and report into ``paths.output_dir``; returns the summary."""
    cfg = validate_config(cfg)
    steps = reduction_steps(cfg)
    out_dir = Path(cfg.paths.output_dir)
    faces_dir = Path(cfg.faces_dir)
    save_run_info(out_dir, cfg)
    frame = select_faces(read_manifest(faces_dir), cfg.split, cfg.max_faces, cfg.seed)
    data = embed_faces(cfg, frame, faces_dir)
    return run_analysis(
        data,
        out_dir,
        faces_dir,
        **steps,
        reducer_name=str(cfg.reducer),
        top_n=cfg.gallery.top_n,
        max_galleries=cfg.gallery.max_clusters,
        projector_faces=cfg.projector.max_faces,
        thumbnail_size=cfg.projector.thumbnail_size,
        threshold=cfg.threshold,
        tensorboard=cfg.tensorboard,
        seed=cfg.seed,
    )


def run(cfg: DictConfig) -> float | None:
    """``python -m deepfake_exp.analyze``: returns the clusters' group ARI (for sweepers)."""
    summary = analyze(cfg)
    log.info(
        "%d faces -> %d clusters (%.1f%% noise); report: %s",
        summary["n_faces"],
        summary["n_clusters"],
        100 * summary["noise_share"],
        Path(cfg.paths.output_dir) / "cluster_table.md",
    )
    return summary["group_ari"]
