"""The SLURM path on a real cluster: submitit job arrays for preprocessing shards and sweeps.

Needs a running cluster (``sudo bash scripts/slurm_localhost.sh`` starts a one-node one on
this machine) and runs only when asked for: ``pytest -m slurm`` (``make test-slurm``); the
default suite skips these at once. Jobs are submitted with the shipped
``hydra/launcher=slurm`` and only the resource options a CPU-only node needs
(:data:`LOCAL_RESOURCES`), so what passes here is the config a real cluster gets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import TINY_DATASET
from tests.test_sweeps import METRIC, TINY_VIT, make_tiny_faces

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# A 2-CPU node without GPUs: one CPU and 1 GB per array task, no GPU request.
LOCAL_RESOURCES = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=null",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=20",
    "hydra.launcher.array_parallelism=4",
]
JOB_TIMEOUT_S = 1200  # one submitting process: it waits for its whole array
USABLE_STATES = {"idle", "mix", "alloc", "comp"}
SELECTED = re.compile(r"(?<!not )\bslurm\b")  # -m slurm, -m "slurm and ...", not -m "not slurm"


def cluster_problem() -> str | None:
    """Why no SLURM job can run here, or ``None`` when a node takes jobs."""
    if shutil.which("sinfo") is None:
        return "no SLURM client (sinfo); start one with: sudo bash scripts/slurm_localhost.sh"
    try:
        answer = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=15
        )
    except subprocess.TimeoutExpired:
        return "sinfo does not answer: slurmctld is not running"
    if answer.returncode != 0:
        return f"sinfo failed: {answer.stderr.strip()}"
    states = {s.rstrip("*~#") for s in answer.stdout.split()}
    if not states & USABLE_STATES:
        return f"no SLURM node takes jobs (states: {sorted(states) or 'none'})"
    return None


@pytest.fixture(autouse=True)
def _slurm_requested(request: pytest.FixtureRequest) -> None:
    if not SELECTED.search(request.config.option.markexpr or ""):
        pytest.skip("SLURM tests run with -m slurm (make test-slurm)")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    problem = cluster_problem()
    if problem:
        pytest.skip(problem)


def run_entrypoint(name: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", f"deepfake_exp.{name}", *args],
        capture_output=True, text=True, timeout=JOB_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def submitted_array(sweep_dir: Path, jobs: int) -> None:
    """The jobs went through sbatch as one array: submitit's script and one log per task."""
    scripts = list((sweep_dir / ".submitit").rglob("*_submission.sh"))
    assert scripts, f"nothing was submitted under {sweep_dir}"
    assert any(f"#SBATCH --array=0-{jobs - 1}" in s.read_text() for s in scripts)
    assert len(list((sweep_dir / ".submitit").rglob("*_log.out"))) >= jobs


def test_preprocess_shard_array_equals_a_single_run(tmp_path: Path) -> None:
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    data = single / "data"
    common = [*TINY_DATASET, "progress=false", f"paths.data_dir={data}"]
    run_entrypoint("preprocess", *common, f"paths.root_dir={single}")
    sweep = sharded / "sweep"
    shards = [f"paths.root_dir={sharded}", f"paths.faces_dir={sharded}/faces", "num_shards=4"]
    run_entrypoint(
        "preprocess", "-m", *LOCAL_RESOURCES, *common, *shards,
        "shard=range(0,4)", "merge=false", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    submitted_array(sweep, jobs=4)
    out = sharded / "faces" / "synthetic_tiny"
    assert not (out / "manifest.csv").exists()  # the array only extracted
    run_entrypoint("preprocess", *common, *shards, "merge=true")
    reference = data / "faces" / "synthetic_tiny"
    for name in ("manifest.csv", "videos.csv", "failures.csv"):
        assert (out / name).read_text() == (reference / name).read_text(), name
    assert len(pd.read_csv(out / "manifest.csv")) > 0


def test_training_sweep_array_writes_the_sweep_summary(tmp_path: Path) -> None:
    root = make_tiny_faces(tmp_path / "faces")
    sweep = tmp_path / "sweep"
    run_entrypoint(
        "train", "-m", *LOCAL_RESOURCES, f"paths.root_dir={root}", *TINY_VIT,
        "optimizer.lr=1e-3,3e-3", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    submitted_array(sweep, jobs=2)
    table = pd.read_csv(sweep / "sweep_summary.csv")
    assert table["job"].tolist() == [0, 1]
    assert sorted(table["optimizer.lr"]) == [0.001, 0.003]
    assert (table["status"] == "ok").all(), table.to_dict("records")
    assert table[METRIC].between(0, 1).all()
