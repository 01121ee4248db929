"""Run bookkeeping shared by the entrypoints: what ran, from which code, with which packages."""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deepfake_exp.utils.io import atomic_write, write_json

log = logging.getLogger(__name__)

RUN_INFO = "run_info.json"
CONFIG_FILE = "config.yaml"  # the resolved config; deepfake_exp.runs.RunDir.config_path

TRACKED_PACKAGES = (
    "torch", "torchvision", "pytorch-lightning", "hydra-core", "omegaconf", "facenet-pytorch",
    "efficientnet-pytorch", "albumentations", "scikit-learn", "numpy", "opencv-python-headless",
)  # fmt: skip


def git_state(cwd: str | Path = ".") -> dict[str, str | bool | None]:
    """Commit and dirty flag of the code that ran (``None`` outside a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def read_run_info(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every invocation recorded in ``<run_dir>/run_info.json``, oldest first.

    A file written before invocations were appended (one dict) reads as a list of one.
    """
    path = Path(run_dir) / RUN_INFO
    if not path.is_file():
        return []
    recorded = json.loads(path.read_text())
    return recorded if isinstance(recorded, list) else [recorded]


def save_run_info(run_dir: str | Path, cfg: DictConfig, **extra: Any) -> None:
    """Write ``config.yaml`` (resolved) and append this invocation to ``run_info.json``.

    A resumed run keeps the record of every earlier invocation (``extra``: what this one
    adds, e.g. the checkpoint it resumed from).
    """
    run_dir = Path(run_dir)
    resolved = OmegaConf.to_yaml(cfg, resolve=True)
    atomic_write(run_dir / CONFIG_FILE, lambda p: p.write_text(resolved))
    invocation = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "git": git_state(Path(__file__).parent),
        "python": platform.python_version(),
        "packages": package_versions(),
        **extra,
    }
    write_json(run_dir / RUN_INFO, [*read_run_info(run_dir), invocation])
