"""Shared fixtures: Hydra composition on tiny settings and one tiny preprocessed synthetic set."""

from __future__ import annotations

import os

# Before torch loads: idle OpenMP threads sleep instead of spinning, which keeps a shared or
# busy CI machine from burning 5-10x the CPU on every op.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# No test may reach a model hub: timm/huggingface read only the (test-seeded) cache.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

import deepfake_exp.config  # noqa: F401  (registers schemas)

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

torch.set_num_threads(min(2, os.cpu_count() or 1))


def compose_config(
    config_name: str, overrides: list[str] | None = None, tmp_path: Path | None = None
) -> DictConfig:
    """Compose a primary config like the entrypoint would, with paths redirected to tmp."""
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        cfg = compose(config_name, overrides=overrides or [], return_hydra_config=False)
    if tmp_path is not None:
        with open_dict(cfg):
            cfg.paths.root_dir = str(tmp_path)
            cfg.paths.data_dir = str(tmp_path / "data")
            cfg.paths.faces_dir = str(tmp_path / "data" / "faces")
            cfg.paths.log_dir = str(tmp_path / "outputs")
            cfg.paths.output_dir = str(tmp_path / "run")
    return cfg


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    def _compose(config_name: str = "train", overrides: list[str] | None = None) -> DictConfig:
        return compose_config(config_name, overrides, tmp_path)

    return _compose


TINY_DATASET = [
    "dataset.name=synthetic_tiny",
    "dataset.num_identities=12",
    "dataset.videos_per_identity=1",
    "dataset.fakes_per_real=1",
    "dataset.num_frames=8",
    "extraction.num_frames=3",
    "extraction.crop_size=64",
    "extraction.num_workers=1",
    "split.ratios=[0.5,0.25,0.25]",
]


@pytest.fixture(scope="session")
def tiny_preprocessed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Generate + preprocess a tiny synthetic set once per session: (root, summary)."""
    from deepfake_exp.tasks.preprocess import preprocess

    root = tmp_path_factory.mktemp("tiny")
    cfg = compose_config("preprocess", [*TINY_DATASET, "progress=false"], root)
    summary = preprocess(cfg)
    return root, summary
