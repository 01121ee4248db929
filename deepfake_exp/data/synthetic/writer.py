"""Writing a set: videos and ``metadata.json`` renamed into place, ``generator.json`` to
tell whether a folder already holds a config's output.
"""

from __future__ import annotations

import json
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from deepfake_exp.data.synthetic.config import ADDED_FIELDS, GENERATOR_VERSION, SyntheticConfig
from deepfake_exp.data.synthetic.identities import Identity, draw_identities
from deepfake_exp.data.synthetic.plan import VideoPlan, dataset_metadata, plan_videos
from deepfake_exp.data.synthetic.render import render_video
from deepfake_exp.utils.io import atomic_write

GENERATOR_FILE = "generator.json"
METADATA_FILE = "metadata.json"


# Only files named like this generator's output (or its temporary files: atomic_write's
# ``.<name>.<hex>.mp4`` and earlier versions' ``.<stem>.tmp.mp4``) are ever deleted from a root.
_OWN_VIDEO = re.compile(r"^\.?id_\d+_r\d+(_f\d+)?(\.tmp|\.mp4\.[0-9a-f]+)?\.mp4$")


def _write_video(path: Path, frames: list[np.ndarray], config: SyntheticConfig) -> None:
    """Write under a temporary name, then rename: a killed run never leaves a truncated mp4."""

    def write(tmp: Path) -> None:
        fourcc = cv2.VideoWriter_fourcc(*"mp4v")
        size = (config.width, config.height)
        writer = cv2.VideoWriter(str(tmp), fourcc, float(config.fps), size)
        if not writer.isOpened():
            raise RuntimeError(f"cv2.VideoWriter cannot write {tmp} with the mp4v codec")
        try:
            for frame in frames:
                writer.write(frame)
        finally:
            writer.release()

    atomic_write(path, write)


def _write_videos(
    config: SyntheticConfig, plans: list[VideoPlan], identities: list[Identity], root: str
) -> None:
    for plan in plans:
        _write_video(Path(root) / plan.name, render_video(config, plan, identities), config)


def _write_json(path: Path, payload: dict) -> None:
    """Sorted keys and a final newline: the layout sets have always been written in."""
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def config_record(config: SyntheticConfig) -> dict:
    """The config as JSON values, without ``ADDED_FIELDS`` at their earlier value: what a
    set (and the crops made from it) depends on."""
    record = json.loads(json.dumps(asdict(config)))
    return {k: v for k, v in record.items() if k not in ADDED_FIELDS or ADDED_FIELDS[k] != v}


def generator_record(config: SyntheticConfig) -> dict:
    """What ``generator.json`` holds: enough to tell whether a folder matches a config."""
    return {"generator_version": GENERATOR_VERSION, "config": config_record(config)}


def is_current(root: str | Path, config: SyntheticConfig) -> bool:
    """True when ``root`` holds a complete dataset generated from exactly ``config``."""
    root = Path(root)
    meta, record = root / METADATA_FILE, root / GENERATOR_FILE
    if not (meta.is_file() and record.is_file()):
        return False
    try:
        return json.loads(record.read_text()) == generator_record(config)
    except json.JSONDecodeError:
        return False


def generate_dataset(
    root: str | Path, config: SyntheticConfig | None = None, workers: int = 1
) -> Path:
    """Write the dataset under ``root`` and return the path of its ``metadata.json``.

    ``metadata.json`` is deleted first and written last and every file is renamed into place
    only when complete, so an interrupted run is recognisable by the missing metadata.
    Videos of an earlier config that the new plan lacks are deleted (only files named like
    this generator's output are touched).

    Args:
        root: Output folder, created if missing.
        config: Size and difficulty; the default is the ``make train`` set.
        workers: Processes rendering identities in parallel; the output does not depend on it.
    """
    config = config or SyntheticConfig()
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    meta_path = root / METADATA_FILE
    meta_path.unlink(missing_ok=True)
    (root / GENERATOR_FILE).unlink(missing_ok=True)
    identities = draw_identities(config)
    plans = plan_videos(config, identities)
    wanted = {p.name for p in plans}
    for path in root.iterdir():
        if path.is_file() and _OWN_VIDEO.match(path.name) and path.name not in wanted:
            path.unlink()
    # One job per identity: its sprite is rendered once and reused by all of its videos.
    jobs = [[p for p in plans if p.identity == i] for i in range(config.num_identities)]
    if workers > 1:
        # spawn: safe even when the caller has started torch/OpenMP threads (fork is not);
        # one cv2 thread per worker, since the workers already fill the cores.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, context, cv2.setNumThreads, (1,)) as pool:
            n = len(jobs)
            list(pool.map(_write_videos, [config] * n, jobs, [identities] * n, [str(root)] * n))
    else:
        for job in jobs:
            _write_videos(config, job, identities, str(root))
    _write_json(root / GENERATOR_FILE, generator_record(config))
    _write_json(meta_path, dataset_metadata(config))
    return meta_path
