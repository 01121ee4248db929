"""Reproducibility: same seed -> same run on CPU; every run records what it ran and from where."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import compose_config
from tests.test_sweeps import TINY_VIT, run_cli, tiny_args, tiny_faces  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
# random augmentation, a loader worker, two epochs: every source of randomness is in play
RANDOM_RUN = [
    "augmentation=basic",
    "data.num_workers=1",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "trainer.deterministic=true",
]


@pytest.fixture
def restore_determinism():
    """``trainer.deterministic`` flips a process-wide torch switch; put it back afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def run_twice_and_once_more(root: Path, out: Path) -> list[tuple[pd.DataFrame, dict]]:
    from deepfake_exp.tasks.train import train

    runs = []
    for name, seed in (("a", 42), ("b", 42), ("other_seed", 7)):
        cfg = compose_config("train", [*TINY_VIT, *RANDOM_RUN, f"seed={seed}"], root)
        cfg.paths.output_dir = str(out / name)
        _, summary = train(cfg)
        history = pd.read_csv(out / name / "csv" / "metrics.csv")
        state = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=True)
        runs.append((history, state["state_dict"]))
    return runs


def test_same_seed_gives_identical_runs_on_cpu(
    tiny_faces: Path,  # noqa: F811
    tmp_path: Path,
    restore_determinism: None,
) -> None:
    (history_a, weights_a), (history_b, weights_b), (history_c, _) = run_twice_and_once_more(
        tiny_faces, tmp_path
    )
    assert torch.are_deterministic_algorithms_enabled()  # trainer.deterministic took effect
    assert history_a["train/loss_step"].notna().sum() == 8  # 2 epochs x 4 steps compared
    pd.testing.assert_frame_equal(history_a, history_b, check_exact=True)
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    losses = ["train/loss_step", "val/loss"]
    assert not history_a[losses].equals(history_c[losses])  # the seed does matter


@pytest.mark.parametrize("model", ["vit", "resnet18", "mobilenet_v2", "efficientnet_b0"])
def test_deterministic_algorithms_run_our_models_on_cpu(model: str, restore_determinism) -> None:
    size = 64 if model.startswith("efficientnet") else 32  # its "same" padding wants >= 64
    overrides = [f"model={model}", f"model.input_size={size}"]
    if model == "vit":
        overrides += ["model.depth=1", "model.patch_size=8"]
    cfg = compose_config("train", overrides)
    torch.use_deterministic_algorithms(True)  # what trainer.deterministic=true switches on

    def gradients() -> list[torch.Tensor]:
        torch.manual_seed(0)
        backbone = instantiate(cfg.model).train()
        images = torch.randn(2, 3, size, size)
        backbone(images).square().mean().backward()  # raises for a nondeterministic op
        return [p.grad.clone() for p in backbone.parameters() if p.grad is not None]

    first, second = gradients(), gradients()
    assert first and all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def test_every_run_records_config_code_version_packages_and_command(
    tiny_faces: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    args = tiny_args(tiny_faces, "seed=7", "optimizer.lr=0.002", f"hydra.run.dir={run_dir}")
    assert run_cli(*args) == 0
    config = OmegaConf.load(run_dir / "config.yaml")
    assert config.seed == 7 and config.optimizer.lr == 0.002
    assert config.paths.output_dir == str(run_dir)  # resolved, not ${hydra:...}
    assert "${" not in (run_dir / "config.yaml").read_text()
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()
    (info,) = json.loads((run_dir / "run_info.json").read_text())  # one invocation so far
    assert "seed=7" in info["command"] and "optimizer.lr=0.002" in info["command"]
    assert info["git"]["commit"] == git("rev-parse", "HEAD")
    if info["git"]["commit"] is not None:  # a checkout: uncommitted changes are flagged
        assert isinstance(info["git"]["dirty"], bool)
    assert info["python"] == platform.python_version()
    for name in ("torch", "pytorch-lightning", "hydra-core"):
        assert info["packages"][name] == metadata.version(name)
