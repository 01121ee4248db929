"""``make gpu-check``: the GPU path measured in one run, written to one folder (issue 17).

Steps, each a table (``<step>.csv``) and a section of ``report.md``; a failing step is
recorded with its error and the others still run (exit status 1 at the end):

1. ``env``: GPU, driver, torch / CUDA / cuDNN versions, free memory, package versions.
2. ``mtcnn``: frames/s on CUDA at 960x540 / 1280x720 / 1920x1080 -- facenet-pytorch
   ``MTCNN().detect`` per frame, facenet batched (like for like), ours batched -- beside
   facenet-pytorch's README figures on a P100 (batched 25.50 / 20.32 / 12.97 fps).
3. ``extraction``: s/video of the benchmark's 1080p clip with ``detector.device=cuda`` vs
   decoding only (decoding stays on CPU): where the bottleneck moves.
4. ``training``: img/s and peak memory per study model and precision (fp32, bf16, fp16).
5. ``smoke``: ``experiment=smoke`` trained on CPU and with ``trainer=gpu`` on the same
   preprocessed faces and seed; test metrics compared within a tolerance; then evaluate and
   ``predict device=cuda`` vs ``device=cpu`` on the GPU run.
6. ``pytest``: ``pytest -m requires_gpu``.

Without a CUDA device it prints one line and exits 0. Run by ``scripts/gpu_check.sh``
(which installs the offline wheel folder first), or directly: ``python scripts/gpu_check.py
[--out DIR] [--steps mtcnn,training]``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the checkout's package, uninstalled, as on an offline node

#: facenet-pytorch README, batched ``MTCNN.detect`` on a P100 (frames/s): the anchor.
P100_FACENET_BATCHED_FPS = {"960x540": 25.50, "1280x720": 20.32, "1920x1080": 12.97}
#: |GPU - CPU| allowed on each test metric of the smoke run: fp32 differs only by kernel
#: order; 16-mixed rounds activations, so it gets a looser bound.
TOLERANCE = {"32-true": 0.01, "16-mixed": 0.05}
SMOKE_METRICS = (
    "test.face.roc_auc",
    "test.video.roc_auc",
    "test.face.log_loss",
    "test.video.accuracy",
)
PACKAGES = (
    "torch", "torchvision", "pytorch-lightning", "lightning", "timm", "facenet-pytorch",
    "hydra-core", "omegaconf", "albumentations", "av", "opencv-python", "opencv-python-headless",
    "scikit-learn", "onnxruntime", "onnxruntime-gpu", "openTSNE", "hdbscan",
)  # fmt: skip

Step = Callable[[Path], pd.DataFrame]


def no_cuda_reason() -> str | None:
    """Why this machine cannot run the check (``None``: it can)."""
    try:
        import torch
    except ImportError as error:
        return f"torch is not importable ({error})"
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    return None


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _driver() -> str:
    try:
        found = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return found.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown (nvidia-smi failed)"


def env_step(out: Path) -> pd.DataFrame:
    """The machine the figures belong to."""
    import torch

    free, total = torch.cuda.mem_get_info()
    rows = {
        "date (UTC)": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "gpu": torch.cuda.get_device_name(0),
        "gpus visible": torch.cuda.device_count(),
        "compute capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
        "driver": _driver(),
        "cuda (torch build)": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "bf16 supported": torch.cuda.is_bf16_supported(),
        "memory free / total (GiB)": f"{free / 2**30:.1f} / {total / 2**30:.1f}",
        "cpu cores": os.cpu_count(),
        "python": platform.python_version(),
        **{f"package {name}": _version(name) for name in PACKAGES},
    }
    return pd.DataFrame({"key": list(rows), "value": [str(v) for v in rows.values()]})


def mtcnn_step(out: Path) -> pd.DataFrame:
    """Frames/s of facenet per frame, facenet batched, ours; the P100 anchor beside."""
    from deepfake_exp.benchmarks.mtcnn import benchmark_mtcnn

    rows = benchmark_mtcnn(
        sizes=list(P100_FACENET_BATCHED_FPS), frames_per_size=16, repeats=3, threads=None,
        device="cuda",
    )  # fmt: skip
    table = pd.DataFrame(rows)
    table["p100_facenet_batched_fps"] = table["frame (WxH)"].map(P100_FACENET_BATCHED_FPS)
    return table


def extraction_step(out: Path) -> pd.DataFrame:
    """s/video of the 4 Mb/s 1080p clip: naive and ours with MTCNN on CUDA, decode-only."""
    from deepfake_exp.benchmarks.extraction import benchmark_extraction

    return pd.DataFrame(
        benchmark_extraction(
            bitrates_mbps=[4.0], repeats=2, naive_repeats=2, copies=2, threads=None,
            device="cuda",
        )
    )  # fmt: skip


def training_step(out: Path) -> pd.DataFrame:
    """img/s and peak memory of the study models at fp32 / bf16-mixed / 16-mixed."""
    from deepfake_exp.benchmarks.training import benchmark_precision

    return pd.DataFrame(
        benchmark_precision(batch_size=32, batch_sizes={"efficientnet_b7": 8}, device="cuda")
    )


def _run(args: Sequence[str], log: Path, timeout: int = 240) -> None:
    """A project command with the checkout on the path; its output kept in ``log``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    with log.open("a") as handle:
        handle.write(f"\n$ {' '.join(args)}\n")
        handle.flush()
        done = subprocess.run(
            [sys.executable, *args], cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
            timeout=timeout, check=False,
        )  # fmt: skip
    if done.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"`{' '.join(args)}` exited {done.returncode}; log tail:\n{tail}")


def flatten(metrics: Mapping, prefix: str = "") -> dict[str, object]:
    """``metrics.json`` as dotted keys: ``{"test": {"face": {"roc_auc": x}}}`` -> ``test.face.roc_auc``."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def compare_metrics(
    reference: Mapping[str, float],
    runs: Mapping[str, Mapping[str, float]],
    tolerance: Mapping[str, float],
    metrics: Sequence[str] = SMOKE_METRICS,
) -> pd.DataFrame:
    """One row per (metric, run): the CPU value, the run's, the difference and whether it is
    within that run's tolerance."""
    rows = []
    for name, values in runs.items():
        for metric in metrics:
            cpu, gpu = float(reference.get(metric, "nan")), float(values.get(metric, "nan"))
            diff = abs(gpu - cpu)
            rows.append(
                {
                    "metric": metric, "run": name, "cpu": cpu, "gpu": gpu, "abs_diff": diff,
                    "tolerance": tolerance[name], "met": "yes" if diff <= tolerance[name] else "NO",
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


#: Smoke runs: the CPU reference first, then the GPU runs compared with it (TOLERANCE keys).
TRAINERS = {
    "cpu": ["trainer=cpu"],
    "32-true": ["trainer=gpu", "trainer.precision=32-true"],
    "16-mixed": ["trainer=gpu", "trainer.precision=16-mixed"],
}


def smoke_step(
    out: Path,
    trainers: Mapping[str, Sequence[str]] = TRAINERS,
    predict_devices: tuple[str, str] = ("cuda", "cpu"),
) -> pd.DataFrame:
    """``experiment=smoke`` on CPU and on the GPU (fp32 and 16-mixed) from the same faces.

    Preprocessing runs once (on CPU), so every run trains on the same crops; predict then
    scores one video with the fp32 GPU run on ``predict_devices[0]`` and ``[1]``.
    """
    from deepfake_exp.runs import RunDir

    root, log = out / "smoke", out / "smoke.log"
    root.mkdir(parents=True, exist_ok=True)
    common = ["experiment=smoke", "seed=0", f"paths.root_dir={root}"]
    _run(["-m", "deepfake_exp.preprocess", *common], log)
    runs = {}
    for name, overrides in trainers.items():
        run_dir = root / "runs" / name
        _run(["-m", "deepfake_exp.train", *common, *overrides, f"hydra.run.dir={run_dir}"], log)
        runs[name] = flatten(RunDir(run_dir).read_metrics())
    gpu_run = root / "runs" / list(trainers)[1]
    _run(
        ["-m", "deepfake_exp.evaluate", f"run_dir={gpu_run}", f"hydra.run.dir={root}/evaluate"], log
    )
    video = next(iter(sorted((root / "data").rglob("*.mp4"))))
    probs: list[float] = []
    for device in predict_devices:
        predicted = root / f"predict_{len(probs)}_{device}"
        _run(
            ["-m", "deepfake_exp.predict", f"run_dir={gpu_run}", f"inputs=['{video}']",
             f"device={device}", f"hydra.run.dir={predicted}"],
            log,
        )  # fmt: skip
        probs.append(float(pd.read_csv(predicted / "predictions.csv")["fake_prob"].iloc[0]))
    reference = runs.pop(next(iter(trainers)))
    table = compare_metrics(reference, runs, {name: TOLERANCE.get(name, 0.01) for name in runs})
    first, second = probs
    predict_diff = abs(first - second)
    predict_row = {
        "metric": "predict fake_prob (one video)",
        "run": f"device={predict_devices[0]} vs {predict_devices[1]}",
        "cpu": second, "gpu": first, "abs_diff": predict_diff, "tolerance": 1e-3,
        "met": "yes" if predict_diff <= 1e-3 else "NO",
    }  # fmt: skip
    return pd.concat([table, pd.DataFrame([predict_row])], ignore_index=True)


def pytest_step(out: Path) -> pd.DataFrame:
    """``pytest -m requires_gpu``: the tests a CPU machine skips."""
    log = out / "pytest.log"
    started = time.perf_counter()
    try:
        _run(
            ["-m", "pytest", "-m", "requires_gpu", "-q", "-p", "no:cacheprovider", "tests"],
            log,
            300,
        )
        status = "passed"
    except RuntimeError:
        status = "FAILED (see pytest.log)"
    summary = re.findall(r"=+ (.* in [\d.]+s.*) =+", log.read_text())
    return pd.DataFrame(
        [{"command": "pytest -m requires_gpu", "status": status,
          "summary": summary[-1] if summary else "", "wall_s": round(time.perf_counter() - started, 1)}]
    )  # fmt: skip


STEPS: dict[str, Step] = {
    "env": env_step,
    "mtcnn": mtcnn_step,
    "extraction": extraction_step,
    "training": training_step,
    "smoke": smoke_step,
    "pytest": pytest_step,
}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def run_steps(steps: Mapping[str, Step], out: Path) -> tuple[str, bool]:
    """Run ``steps`` in order into ``out``; the Markdown report and whether all succeeded."""
    out.mkdir(parents=True, exist_ok=True)
    sections, ok = [f"# GPU check, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n"], True
    for name, step in steps.items():
        started = time.perf_counter()
        print(f"gpu_check: {name} ...", flush=True)
        try:
            table = step(out)
        except Exception:  # one broken step must not hide the others' figures
            ok = False
            error = traceback.format_exc(limit=3)
            (out / f"{name}.error.txt").write_text(error)
            sections.append(f"## {name}: FAILED\n\n```\n{error.strip()}\n```\n")
            continue
        table.to_csv(out / f"{name}.csv", index=False)
        seconds = time.perf_counter() - started
        markdown = table.to_markdown(index=False, floatfmt=".4g")
        sections.append(f"## {name} ({seconds:.0f} s)\n\n{markdown}\n")
        print(sections[-1], flush=True)
    report = "\n".join(sections)
    (out / "report.md").write_text(report)
    return report, ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma list of {list(STEPS)}")
    args = parser.parse_args(argv)
    reason = no_cuda_reason()
    if reason is not None:
        print(f"gpu_check: no CUDA device ({reason}); nothing measured.")
        return 0
    names = [n for n in args.steps.split(",") if n]
    unknown = sorted(set(names) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {list(STEPS)}")
    out = args.out or REPO / "outputs" / "gpu_check" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    started = time.perf_counter()
    _, ok = run_steps({n: STEPS[n] for n in names}, out)
    print(f"gpu_check: {'all steps done' if ok else 'some steps FAILED'} in "
          f"{time.perf_counter() - started:.0f} s; report: {out / 'report.md'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
