"""The run-directory contract: which data a run was trained on, and the check that refuses
to score a model on data that has changed since.

A run stores :func:`data_fingerprint` of its faces folder (in every checkpoint and in
``summary.json``). Re-running preprocessing with another ``split.seed`` or other crops silently
changes what "test" means; :func:`check_data_fingerprint` turns that into a clear error.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from deepfake_exp.data.datamodule import MANIFEST, VIDEOS
from deepfake_exp.faces.extract import read_extraction_record

log = logging.getLogger(__name__)

COMPARED_KEYS = ("manifest_sha256", "splits_sha256")


class DataMismatchError(RuntimeError):
    """The faces folder is not the data the run was trained and selected on."""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _splits_sha256(faces_dir: Path) -> tuple[str, int]:
    """Hash of the sorted ``video_id -> split`` pairs (videos.csv, else the manifest)."""
    table = faces_dir / VIDEOS if (faces_dir / VIDEOS).is_file() else faces_dir / MANIFEST
    frame = pd.read_csv(table, usecols=["video_id", "split"], dtype=str).drop_duplicates()
    pairs = sorted(zip(frame["video_id"], frame["split"].fillna(""), strict=True))
    text = "\n".join(f"{video}\t{split}" for video, split in pairs)
    return hashlib.sha256(text.encode()).hexdigest(), len(pairs)


def data_fingerprint(faces_dir: str | Path) -> dict[str, Any]:
    """What identifies a faces folder's content: manifest bytes, split assignment, crop settings."""
    faces_dir = Path(faces_dir)
    manifest = faces_dir / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {faces_dir.resolve()}: run preprocessing first")
    splits_sha, num_videos = _splits_sha256(faces_dir)
    with manifest.open("rb") as handle:
        num_faces = max(sum(1 for _ in handle) - 1, 0)
    extraction = read_extraction_record(faces_dir)
    return {
        "faces_dir": str(faces_dir.resolve()),
        "manifest_sha256": _sha256_file(manifest),
        "splits_sha256": splits_sha,
        "num_faces": num_faces,
        "num_videos": num_videos,
        # the settings *and* every source file's stamp: regenerated videos change it too
        "extraction": (
            extraction.get("videos_fingerprint") or extraction.get("fingerprint")
            if isinstance(extraction, dict)
            else None
        ),
    }


def check_data_fingerprint(stored: dict | None, faces_dir: str | Path, what: str) -> None:
    """Refuse (``DataMismatchError``) when ``faces_dir`` is not the data of ``stored``.

    ``stored is None`` is a run written before fingerprints existed: warn and go on.
    """
    if stored is None:
        log.warning(
            "%s: the run stores no data fingerprint (written by an older version); "
            "cannot check that %s is the data it was trained on",
            what, faces_dir,
        )  # fmt: skip
        return
    current = data_fingerprint(faces_dir)
    keys = [*COMPARED_KEYS, *(["extraction"] if stored.get("extraction") else [])]
    differing = [k for k in keys if stored.get(k) != current.get(k)]
    if not differing:
        return
    changed = ", ".join(differing)
    raise DataMismatchError(
        f"{what}: {Path(faces_dir).resolve()} is not the data this run was trained on "
        f"(changed: {changed}; trained on {stored.get('num_videos')} videos / "
        f"{stored.get('num_faces')} faces, found {current['num_videos']} / "
        f"{current['num_faces']}). Preprocessing was re-run with other settings (e.g. "
        "split.seed or crops), so its test split may hold videos the model trained on. Fix: "
        "re-run preprocessing with the run's own config (its config.yaml), or retrain on the "
        "current data."
    )
