"""Run bookkeeping shared by the entrypoints: what ran, from which code, with which packages."""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from deepfake_exp.utils.io import atomic_write, write_json

log = logging.getLogger(__name__)

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


def save_run_info(run_dir: str | Path, cfg: DictConfig) -> None:
    """Write ``config.yaml`` (resolved) and ``run_info.json`` so a run can be reproduced."""
    run_dir = Path(run_dir)
    resolved = OmegaConf.to_yaml(cfg, resolve=True)
    atomic_write(run_dir / "config.yaml", lambda p: p.write_text(resolved))
    write_json(
        run_dir / "run_info.json",
        {
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "git": git_state(Path(__file__).parent),
            "python": platform.python_version(),
            "packages": package_versions(),
        },
    )
