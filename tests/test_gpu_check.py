"""``make gpu-check`` / ``make gpu-wheels`` on a CPU machine: what can be checked without a GPU.

Without CUDA the check prints one line and exits 0; its report assembly, metric comparison
and the wheel recipe (with a stand-in pip: no network) are tested here, and the smoke
commands run end to end on CPU in the slow test.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPTS / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = load_gpu_check()


def test_shell_script_without_cuda_says_so_in_one_line_and_exits_0(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    env |= {"GPU_VENV": str(tmp_path / "venv"), "GPU_WHEELS": str(tmp_path / "wheels")}
    done = subprocess.run(
        ["bash", str(SCRIPTS / "gpu_check.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]
    assert not (tmp_path / "venv").exists()  # nothing installed, nothing measured


def test_python_check_without_cuda_exits_0(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setattr(gpu_check, "no_cuda_reason", lambda: "no GPU in this test")
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 0
    assert (
        capsys.readouterr().out.strip()
        == "gpu_check: no CUDA device (no GPU in this test); nothing measured."
    )
    assert not (tmp_path / "out").exists()


def test_a_misspelled_step_fails_before_any_step(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(gpu_check, "no_cuda_reason", lambda: None)
    with pytest.raises(SystemExit):
        gpu_check.main(["--steps", "env,mtcnm", "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())


def test_report_keeps_going_past_a_failed_step(tmp_path: Path) -> None:
    def broken(out: Path) -> pd.DataFrame:
        raise RuntimeError("CUDA out of memory")

    steps = {"first": lambda out: pd.DataFrame({"fps": [12.5]}), "broken": broken}
    steps["last"] = lambda out: pd.DataFrame({"img_s": [900.0]})
    report, ok = gpu_check.run_steps(steps, tmp_path)
    assert not ok
    assert (tmp_path / "report.md").read_text() == report
    assert "## first" in report and "## broken: FAILED" in report and "## last" in report
    assert "CUDA out of memory" in (tmp_path / "broken.error.txt").read_text()
    assert pd.read_csv(tmp_path / "last.csv")["img_s"].tolist() == [900.0]


def test_smoke_metrics_are_compared_within_each_runs_tolerance() -> None:
    cpu = gpu_check.flatten({"test": {"face": {"roc_auc": 0.90}, "video": {"roc_auc": 0.95}}})
    assert cpu == {"test.face.roc_auc": 0.90, "test.video.roc_auc": 0.95}
    runs = {
        "32-true": {"test.face.roc_auc": 0.905, "test.video.roc_auc": 0.95},
        "16-mixed": {"test.face.roc_auc": 0.97, "test.video.roc_auc": 0.93},
    }
    table = gpu_check.compare_metrics(
        cpu, runs, gpu_check.TOLERANCE, ("test.face.roc_auc", "test.video.roc_auc")
    )
    met = dict(zip(zip(table["run"], table["metric"], strict=True), table["met"], strict=True))
    assert met[("32-true", "test.face.roc_auc")] == "yes"
    assert met[("16-mixed", "test.face.roc_auc")] == "NO"  # 0.07 > 0.05
    assert met[("16-mixed", "test.video.roc_auc")] == "yes"


FAKE_PIP = """
import sys
from pathlib import Path
args = sys.argv[1:]
Path(sys.argv[0]).with_name("calls.txt").open("a").write(" ".join(args) + "\\n")
flag = "--dest" if args[0] == "download" else "--wheel-dir"
dest = Path(args[args.index(flag) + 1])
for spec in (a for a in args if "==" in a):
    name, version = spec.split("==")
    (dest / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"0" * 1024)
"""


def test_wheel_recipe_pins_the_tested_versions_for_the_nodes_python(tmp_path: Path) -> None:
    fake = tmp_path / "pip.py"
    fake.write_text(FAKE_PIP)
    env = {**os.environ, "PIP": f"{sys.executable} {fake}", "PY_VERSION": "3.12"}
    done = subprocess.run(
        ["bash", str(SCRIPTS / "gpu_wheels.sh"), str(tmp_path / "wheels")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    download, *builds = (tmp_path / "calls.txt").read_text().splitlines()
    assert "--python-version 3.12" in download and "--only-binary=:all:" in download
    assert "--no-deps" in download and "hydra-core==1.3.8" in download
    names = {arg.split("==")[0] for arg in download.split() if "==" in arg}
    assert not names & {"torch", "torchvision", "pytorch-lightning", "scikit-learn", "timm"}
    assert any("antlr4-python3-runtime==4.9.3" in b for b in builds)  # sdist only: built here
    assert "MiB in" in done.stdout and "limit 60 MiB" in done.stdout


@pytest.mark.slow
@pytest.mark.e2e
def test_smoke_commands_run_end_to_end_on_cpu(tmp_path: Path) -> None:
    trainers = {"cpu": ["trainer=cpu"], "32-true": ["trainer=cpu"]}  # the GPU run's stand-in
    table = gpu_check.smoke_step(tmp_path, trainers, predict_devices=("cpu", "cpu"))
    assert set(table["met"]) == {"yes"}  # same seed, same faces, same device: equal
    assert table["abs_diff"].max() < 1e-6
    assert (tmp_path / "smoke" / "evaluate" / "metrics.json").is_file()
