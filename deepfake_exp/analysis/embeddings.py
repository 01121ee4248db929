"""Face embeddings from any model, batched and cached on disk in resumable chunks.

Embedding 130k faces with EfficientNet-B7 takes hours: an interrupted run must go on where it
stopped, and a second analysis (another perplexity, other HDBSCAN sizes) must not run the model
at all. Rows are embedded in fixed chunks, each saved atomically (``chunk_00000.npy``); once
all exist they are joined into ``embeddings.npy`` + ``index.csv`` (row ``i`` of one is row ``i``
of the other) and the chunks are removed.

Layout: ``<cache_dir>/<selection>/`` where ``cache_dir`` names the model (see
:func:`model_cache_key`, :func:`checkpoint_cache_key`) and ``<selection>`` the exact list of
faces, so another split or ``max_faces`` gets its own folder instead of overwriting this one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from deepfake_exp.utils.io import atomic_write, write_csv, write_json

log = logging.getLogger(__name__)

EMBEDDINGS = "embeddings.npy"
INDEX = "index.csv"
META = "meta.json"
PROB = "prob"
INDEX_COLUMNS = ("face_path", "video_id", "label", "group", "split")
INDEX_DTYPES = {"face_path": str, "video_id": str, "group": str, "split": str}

Embed = Callable[[Tensor], Tensor]


class EmbeddingCacheError(RuntimeError):
    """A cache folder holds embeddings of other inputs than the ones asked for."""


@dataclass(frozen=True)
class EmbeddingSet:
    """Embeddings with the manifest rows they belong to.

    Attributes:
        vectors: ``(N, F)`` float32 embeddings.
        index: ``N`` rows: face_path, video_id, label, group, split (+ ``prob`` when scored).
        folder: Cache folder they were read from or written to.
        computed: Rows the model embedded in this call (0: everything came from the cache).
    """

    vectors: np.ndarray
    index: pd.DataFrame
    folder: Path
    computed: int = 0

    @property
    def probs(self) -> np.ndarray | None:
        """P(fake) per row from the checkpoint's head, if the embeddings were scored."""
        return self.index[PROB].to_numpy(dtype=np.float64) if PROB in self.index else None


def _short_hash(text: str | bytes, length: int = 10) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:length]


def model_cache_key(model_cfg: Mapping[str, Any], seed: int) -> str:
    """``<arch>-<input>px-<hash>`` for a model built from its config (no checkpoint).

    The hash covers the whole resolved model config and the seed: without pretrained weights
    the weights are the seeded random initialisation, so the seed changes the embeddings.
    """
    cfg = dict(model_cfg)
    name = str(cfg.get("arch") or str(cfg.get("_target_", "model")).rsplit(".", 1)[-1])
    payload = json.dumps({"model": cfg, "seed": seed}, sort_keys=True, default=str)
    size = cfg.get("input_size")
    return "-".join([name, *([f"{size}px"] if size else []), _short_hash(payload, 8)])


def checkpoint_cache_key(ckpt_path: str | Path) -> str:
    """``ckpt-<hash>`` of the checkpoint file's bytes: retraining into the same path is seen."""
    digest = hashlib.sha256()
    with open(ckpt_path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return f"ckpt-{digest.hexdigest()[:12]}"


def selection_key(frame: pd.DataFrame) -> str:
    """``<n>faces-<hash of the face paths in order>``: names the cache of exactly these rows."""
    return f"{len(frame)}faces-{_short_hash(chr(10).join(frame['face_path'].astype(str)))}"


def index_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The manifest columns the analysis keeps per embedding row (missing ones left out)."""
    columns = [c for c in INDEX_COLUMNS if c in frame.columns]
    if "face_path" not in columns or "label" not in columns:
        raise ValueError(f"frame needs face_path and label columns, it has {list(frame.columns)}")
    return frame[columns].reset_index(drop=True)


def _expected_meta(frame: pd.DataFrame, model_key: str, scored: bool) -> dict[str, Any]:
    return {"model": model_key, "faces": selection_key(frame), "n": len(frame), "scored": scored}


def _read_meta(folder: Path) -> dict[str, Any] | None:
    path = folder / META
    return json.loads(path.read_text()) if path.is_file() else None


def _check_meta(found: dict[str, Any], expected: dict[str, Any], folder: Path) -> None:
    differ = {k: (found.get(k), v) for k, v in expected.items() if found.get(k) != v}
    if differ:
        raise EmbeddingCacheError(
            f"{folder} holds embeddings of other inputs ({differ} as (cached, asked)): delete it "
            "or set another cache_dir"
        )


def load_cached(
    cache_dir: str | Path, frame: pd.DataFrame, model_key: str, scored: bool = False
) -> EmbeddingSet | None:
    """The finished embeddings of ``frame`` by ``model_key``, or ``None`` if not cached yet."""
    folder = Path(cache_dir) / selection_key(frame)
    meta = _read_meta(folder)
    if meta is None or not (folder / EMBEDDINGS).is_file() or not (folder / INDEX).is_file():
        return None
    _check_meta(meta, _expected_meta(frame, model_key, scored), folder)
    vectors = np.load(folder / EMBEDDINGS)
    index = pd.read_csv(folder / INDEX, dtype=INDEX_DTYPES, keep_default_na=False)
    if len(index) != len(vectors) or len(index) != len(frame):
        raise EmbeddingCacheError(
            f"{folder}: {len(vectors)} embeddings, {len(index)} index rows, {len(frame)} faces "
            "asked: the cache is damaged, delete it"
        )
    return EmbeddingSet(vectors, index, folder, computed=0)


def _chunk_path(folder: Path, chunk: int) -> Path:
    return folder / f"chunk_{chunk:05d}.npy"


def _scores_path(folder: Path, chunk: int) -> Path:
    return folder / f"scores_{chunk:05d}.npy"


def _save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda p: np.save(p, array))


def _chunk_done(folder: Path, chunk: int, rows: int, scored: bool) -> bool:
    """A chunk counts once its embedding file exists with the right rows (written last)."""
    path = _chunk_path(folder, chunk)
    if not path.is_file() or np.load(path, mmap_mode="r").shape[0] != rows:
        return False
    return not scored or _scores_path(folder, chunk).is_file()


def _start_folder(folder: Path, expected: dict[str, Any], chunk_size: int) -> int:
    """Create or reopen a partial cache; returns the chunk size its existing chunks use."""
    meta = _read_meta(folder)
    if meta is not None:
        _check_meta(meta, expected, folder)
        if meta["chunk_size"] != chunk_size:
            log.info("resuming %s with its chunk size %d", folder, meta["chunk_size"])
        return int(meta["chunk_size"])
    write_json(folder / META, {**expected, "chunk_size": chunk_size})
    return chunk_size


def _run_chunks(
    dataset: Dataset,
    bounds: list[tuple[int, int]],
    todo: list[int],
    embed: Embed,
    score: Embed | None,
    folder: Path,
    batch_size: int,
    num_workers: int,
    device: str | torch.device,
    progress: bool,
) -> int:
    """Embed the chunks ``todo`` in one DataLoader pass, saving each as soon as it is full."""
    batches = [
        list(range(begin, min(begin + batch_size, bounds[c][1])))
        for c in todo
        for begin in range(bounds[c][0], bounds[c][1], batch_size)
    ]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers)
    pending = iter(todo)
    chunk = next(pending)
    vectors: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    filled = done = 0
    with torch.inference_mode():
        for batch in tqdm(loader, desc="embed", disable=not progress, leave=False):
            features = embed(batch["image"].to(device)).flatten(1)
            vectors.append(features.float().cpu().numpy())
            if score is not None:
                scores.append(score(features).float().reshape(-1).cpu().numpy())
            filled += len(features)
            if filled == bounds[chunk][1] - bounds[chunk][0]:
                if score is not None:
                    _save_npy(_scores_path(folder, chunk), np.concatenate(scores))
                _save_npy(_chunk_path(folder, chunk), np.concatenate(vectors))
                done += filled
                vectors, scores, filled = [], [], 0
                chunk = next(pending, -1)
    return done


def compute_embeddings(
    frame: pd.DataFrame,
    dataset: Dataset,
    embed: Embed,
    cache_dir: str | Path,
    model_key: str,
    score: Embed | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    chunk_size: int = 2048,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> EmbeddingSet:
    """Embeddings of every row of ``frame`` (``dataset[i]["image"]`` is row ``i``), cached.

    Args:
        frame: Manifest rows, in the order of ``dataset``.
        dataset: Items with an ``image`` tensor, already transformed for the model.
        embed: Images ``(B, 3, H, W)`` -> embeddings ``(B, F)`` (e.g. a backbone).
        cache_dir: Folder for this model; the rows get a sub-folder named after them.
        model_key: Identifies the model (stored and checked, so caches are never mixed).
        score: Embeddings -> P(fake) ``(B,)`` (a checkpoint's head), stored as ``prob``.
        batch_size: Faces per forward pass.
        num_workers: DataLoader workers decoding crops.
        chunk_size: Rows per resumable chunk (a resumed run keeps the first run's size).
        device: Where images are sent before ``embed``.
        progress: Show a progress bar.
    """
    if len(dataset) != len(frame):
        raise ValueError(f"dataset has {len(dataset)} items but frame {len(frame)} rows")
    if len(frame) == 0:
        raise ValueError("no faces to embed (empty selection: check split / max_faces)")
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1, got {batch_size}, {chunk_size}")
    scored = score is not None
    cached = load_cached(cache_dir, frame, model_key, scored)
    if cached is not None:
        log.info("embeddings of %d faces read from %s", len(frame), cached.folder)
        return cached
    folder = Path(cache_dir) / selection_key(frame)
    chunk_size = _start_folder(folder, _expected_meta(frame, model_key, scored), chunk_size)
    bounds = [(b, min(b + chunk_size, len(frame))) for b in range(0, len(frame), chunk_size)]
    todo = [c for c, (b, e) in enumerate(bounds) if not _chunk_done(folder, c, e - b, scored)]
    log.info("embedding %d of %d chunks into %s", len(todo), len(bounds), folder)
    computed = 0
    if todo:
        computed = _run_chunks(
            dataset, bounds, todo, embed, score, folder, batch_size, num_workers, device, progress
        )
    vectors = np.concatenate([np.load(_chunk_path(folder, c)) for c in range(len(bounds))])
    index = index_frame(frame)
    if scored:
        index[PROB] = np.concatenate([np.load(_scores_path(folder, c)) for c in range(len(bounds))])
    write_csv(folder / INDEX, index)
    _save_npy(folder / EMBEDDINGS, vectors)
    for chunk in range(len(bounds)):
        _chunk_path(folder, chunk).unlink()
        _scores_path(folder, chunk).unlink(missing_ok=True)
    return EmbeddingSet(vectors, index, folder, computed=computed)
