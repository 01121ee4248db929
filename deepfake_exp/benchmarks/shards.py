"""Sharded vs loose faces: loader img/s, files and bytes (``python -m deepfake_exp.bench sections=[shards]``).

Both loaders are ``FaceDataModule.train_dataloader()`` over the same generated faces folder,
with the same augmentation, batch size and workers; only ``data.format`` differs. Timed in
turns (loose, shards, loose, ...) so a load change on the machine hits both; the best turn
counts. The files and bytes rows are what the DFDC projection (``projection`` section)
scales: the measured per-face overhead of a shard against the crop's own bytes.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from deepfake_exp.benchmarks.augmentation import build_augmentation
from deepfake_exp.benchmarks.common import face_crops, section_frame, write_face_folder
from deepfake_exp.data.datamodule import FaceDataModule, read_manifest
from deepfake_exp.data.shards import pack_faces

#: Shards should not be slower to read than loose files (the point is fewer files, not speed).
MIN_RATIO = 0.9


def epoch_images_per_second(datamodule: FaceDataModule, epochs: int) -> float:
    """Images/s over ``epochs`` passes of the train loader, its very first batch excluded
    (worker start-up, paid once with persistent workers)."""
    loader = datamodule.train_dataloader()
    images, start = 0, None
    for _ in range(epochs):
        for batch in loader:
            if start is None:
                start = time.perf_counter()
                continue
            images += len(batch["label"])
    return images / (time.perf_counter() - (start or time.perf_counter()))


def _files_and_bytes(faces_dir: Path) -> tuple[int, int, int, int]:
    """(loose crop files, their bytes, shard-folder files, their bytes)."""
    manifest = read_manifest(faces_dir)
    crops = [faces_dir / p for p in manifest["face_path"]]
    shard_files = [p for p in (faces_dir / "shards").rglob("*") if p.is_file()]
    return (
        len(crops),
        sum(p.stat().st_size for p in crops),
        len(shard_files),
        sum(p.stat().st_size for p in shard_files),
    )


def _row(measure: str, ours: float, baseline: float, **fields: object) -> dict:
    ratio = ours / baseline if baseline else float("nan")
    return {
        "measure": measure,
        "ours": ours,
        "baseline": baseline,
        "ratio": ratio,
        "target": fields.pop("target", ""),
        "met": fields.pop("met", ""),
        "note": fields.pop("note", ""),
        "load_1min": round(os.getloadavg()[0], 1),
    }


def benchmark_shards(
    num_faces: int = 2000,
    crop_size: int = 224,
    input_size: int = 224,
    augmentation: str = "basic",
    batch_size: int = 32,
    num_workers: int = 2,
    epochs: int = 2,
    repeats: int = 2,
    max_count: int = 250,
) -> list[dict]:
    """Pack ``num_faces`` generated crops, then time both train loaders in turns.

    Args:
        num_faces: Generated face crops (all in split ``train``).
        crop_size: Side of the crops, as preprocessing writes them.
        input_size: Model input side the augmentation resizes to.
        augmentation: ``conf/augmentation`` option of both loaders.
        batch_size: Train batch size of both loaders.
        num_workers: DataLoader workers of both loaders.
        epochs: Passes per timed turn.
        repeats: Turns per format (the best counts).
        max_count: Faces per shard (enough shards that every worker streams several).

    Returns:
        Rows ``measure, ours (shards), baseline (loose), ratio, target, met, note``.
    """
    with tempfile.TemporaryDirectory(prefix="bench_shards_") as tmp:
        faces_dir = write_face_folder(Path(tmp) / "faces", face_crops(num_faces, crop_size))
        manifest = read_manifest(faces_dir)
        start = time.perf_counter()
        pack_faces(faces_dir, manifest, faces_dir / "manifest.csv", max_count=max_count)
        pack_s = time.perf_counter() - start
        rates: dict[str, list[float]] = {"files": [], "shards": []}
        for _ in range(repeats):
            for fmt in rates:
                datamodule = FaceDataModule(
                    faces_dir,
                    build_augmentation(augmentation, input_size),
                    batch_size=batch_size,
                    num_workers=num_workers,
                    format=fmt,
                )
                rates[fmt].append(epoch_images_per_second(datamodule, epochs))
        loose_files, loose_bytes, shard_files, shard_bytes = _files_and_bytes(faces_dir)
    shards_rate, loose_rate = max(rates["shards"]), max(rates["files"])
    setup = f"{num_faces} faces {crop_size} px -> {input_size} px, {augmentation}, "
    setup += f"{num_workers} workers, batch {batch_size}"
    return [
        _row("loader img/s", shards_rate, loose_rate, target=f">= {MIN_RATIO:g} (x)",
             met="yes" if shards_rate >= MIN_RATIO * loose_rate else "NO", note=setup),
        _row("files written", shard_files, loose_files,
             note=f"{max_count} faces per shard + index.json; loose: one file per crop"),
        _row("bytes written", shard_bytes, loose_bytes,
             note=f"+{(shard_bytes - loose_bytes) / num_faces:.0f} B per face (tar headers + "
             "manifest row); projection.sample_overhead_bytes"),
        _row("pack s", pack_s, float("nan"), note=f"{num_faces / pack_s:.0f} faces/s, one process"),
    ]  # fmt: skip


def run(cfg: DictConfig) -> pd.DataFrame:
    """The ``shards`` block of ``conf/bench.yaml``: :func:`benchmark_shards`' arguments."""
    return section_frame(benchmark_shards, cfg)
