"""Training benchmarks, measured side by side: ``python -m deepfake_exp.bench sections=[training]``.

Three figures (DESIGN.md §5), each against its baseline in the same run:

* **Model throughput**: images/s of a median training step (forward, loss, backward,
  optimizer step) and of inference, per backbone at the input size of its ``conf/model`` YAML,
  with the ``DeepfakeDetector`` head and the default optimizer (``conf/optimizer/adamw.yaml``).
* **Lightning step overhead**: the same ``DeepfakeDetector`` trained by a Lightning ``Trainer``
  and by a plain PyTorch loop, on the same batches held in memory, at the same precision, with
  Lightning's progress bar, logger, checkpointing and summary off. Warm-up steps are excluded,
  the two run in turns and their median step times are compared. The Lightning side runs our
  real ``training_step`` (its ``self.log`` calls and divergence check), so the figure is what
  our training path costs over a bare loop. Target: at most 5 %.
* **Dataloader vs model**: images/s the real ``FaceDataModule`` train loader delivers (JPEG
  decoding + augmentation in ``num_workers`` processes) against the model's training images/s
  at the same input size. Target: at least 2x, so the model never waits for data. It reads a
  preprocessed faces folder when there is one (``${paths.faces_dir}/synthetic`` by default),
  else JPEG crops written to a temporary folder.

``benchmark_precision`` (``make gpu-check``) times the training step per model at Lightning's
``32-true`` / ``bf16-mixed`` / ``16-mixed`` precisions, with peak GPU memory.

On a CUDA machine the same code runs on the GPU. Absolute figures depend on the machine and
its load, so the 1-minute load average is reported next to them; the ratios are the result.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from deepfake_exp.benchmarks.common import compose, face_crops, section_frame, write_face_folder
from deepfake_exp.data.datamodule import MANIFEST, FaceDataModule
from deepfake_exp.faces.detectors import torch_threads
from deepfake_exp.models.heads import head_loss
from deepfake_exp.models.module import DeepfakeDetector

log = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]

#: DESIGN.md §5 targets.
MAX_OVERHEAD_PCT = 5.0
MIN_LOADER_RATIO = 2.0


# --------------------------------------------------------------------------------------------
# Configs, models, batches
# --------------------------------------------------------------------------------------------


def train_config(name: str, input_size: int | None = None, *overrides: str) -> DictConfig:
    """``train`` composed with ``model=<name>``, random weights (no download), optionally
    resized, and ``overrides`` (``augmentation=...``)."""
    resize = [] if input_size is None else [f"model.input_size={int(input_size)}"]
    return compose("train", [f"model={name}", "model.pretrained=false", *resize, *overrides])


def build_detector(name: str, input_size: int | None = None) -> DeepfakeDetector:
    """The training module as ``train.yaml`` builds it: ``model=<name>``, softmax head, AdamW."""
    cfg = train_config(name, input_size, "optimizer=adamw")
    return DeepfakeDetector(
        backbone=instantiate(cfg.model), optimizer=instantiate(cfg.optimizer), scheduler=None
    )


def make_batches(count: int, batch_size: int, input_size: int, seed: int = 0) -> list[Batch]:
    """Random normalised images and labels, held in host memory (the same for every method)."""
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.randn(batch_size, 3, input_size, input_size, generator=generator),
            "label": torch.randint(0, 2, (batch_size,), generator=generator),
        }
        for _ in range(count)
    ]


# --------------------------------------------------------------------------------------------
# Timed loops
# --------------------------------------------------------------------------------------------


class StepClock:
    """Timestamps at step boundaries; step durations are their differences.

    Each stamp waits for queued GPU work first, so a duration is the step's whole cost. On a
    GPU that also keeps the CPU from queueing the next step early, which exposes any per-step
    CPU overhead in full: the comparison errs against Lightning, not for it.
    """

    def __init__(self, device: torch.device, warmup: int) -> None:
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.warmup = warmup
        self.stamps: list[float] = []

    def stamp(self, step: int) -> None:
        """Mark the start of ``step`` (or the end of the last one); warm-up steps are skipped."""
        if step >= self.warmup:
            self.sync()
            self.stamps.append(time.perf_counter())

    def durations(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]


def _check_batches(batches: Sequence[Batch], warmup: int) -> None:
    if len(batches) <= warmup:
        raise ValueError(f"need more than warmup={warmup} batches, got {len(batches)}")


#: Lightning ``trainer.precision`` names -> autocast dtype (``None``: fp32, no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {
    "32-true": None,
    "bf16-mixed": torch.bfloat16,
    "16-mixed": torch.float16,
}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """What Lightning's mixed-precision plugin wraps each forward pass in."""
    if precision not in PRECISIONS:
        raise KeyError(f"unknown precision {precision!r}; choose from {sorted(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def plain_train_step_times(
    module: DeepfakeDetector,
    batches: Sequence[Batch],
    device: torch.device,
    warmup: int,
    precision: str = "32-true",
) -> list[float]:
    """Seconds of each step of a bare PyTorch training loop over ``batches``, after ``warmup``.

    The step is the training math of ``DeepfakeDetector.training_step`` (forward, head loss)
    plus what Lightning's automatic optimisation does around it (zero_grad, backward, step),
    at Lightning's ``precision`` (``16-mixed`` scales the loss, as its plugin does).
    """
    _check_batches(batches, warmup)
    clock = StepClock(device, warmup)
    module.to(device).train()
    optimizer = module.configure_optimizers()
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    for step, batch in enumerate(batches):
        clock.stamp(step)
        images, labels = batch["image"].to(device), batch["label"].to(device)
        with autocast(device, precision):
            loss = head_loss(module.hparams.head, module(images), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    clock.stamp(len(batches))
    return clock.durations()


def inference_step_times(
    module: DeepfakeDetector,
    batches: Sequence[Batch],
    device: torch.device,
    warmup: int,
    precision: str = "32-true",
) -> list[float]:
    """Seconds of each eval-mode forward pass over ``batches``, after ``warmup``."""
    _check_batches(batches, warmup)
    clock = StepClock(device, warmup)
    module.to(device).eval()
    with torch.inference_mode(), autocast(device, precision):
        for step, batch in enumerate(batches):
            clock.stamp(step)
            module(batch["image"].to(device))
        clock.stamp(len(batches))
    module.train()
    return clock.durations()


class LightningStepClock(pl.Callback):
    """Stamps each training batch's start and the last one's end, as the plain loop does, so
    a step's duration holds everything Lightning does between two batches."""

    def __init__(self, clock: StepClock, last: int) -> None:
        self.clock, self.last = clock, last

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.clock.stamp(batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx == self.last:
            self.clock.stamp(batch_idx + 1)


def lightning_train_step_times(
    module: DeepfakeDetector,
    batches: Sequence[Batch],
    device: torch.device,
    warmup: int,
    root_dir: str | Path,
) -> list[float]:
    """Seconds of each step of ``Trainer.fit`` over ``batches``, after ``warmup``."""
    _check_batches(batches, warmup)
    clock = StepClock(device, warmup)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision="32-true",
        max_epochs=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
        callbacks=[LightningStepClock(clock, len(batches) - 1)],
        default_root_dir=str(root_dir),
    )
    loader = DataLoader(list(batches), batch_size=None, shuffle=False, num_workers=0)
    with warnings.catch_warnings():  # "no workers" and "few batches" advice, not problems
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=loader)
    return clock.durations()


def lightning_overhead(
    name: str,
    input_size: int | None,
    batch_size: int,
    steps: int,
    warmup: int,
    rounds: int,
    device: torch.device,
) -> dict[str, float]:
    """Median seconds per step of the plain loop and of Lightning, measured in turns.

    Medians over every timed step of every round: a burst of load from another process
    lengthens a few steps, not the median.
    """
    module = build_detector(name, input_size)
    batches = make_batches(warmup + steps, batch_size, module.backbone.input_size, seed=1)
    with tempfile.TemporaryDirectory(prefix="bench_lightning_") as root:
        methods = {
            "plain": partial(plain_train_step_times, module, batches, device, warmup),
            "lightning": partial(lightning_train_step_times, module, batches, device, warmup, root),
        }
        seconds: dict[str, list[float]] = {key: [] for key in methods}
        for round_ in range(rounds):  # alternate which goes first, so drift hits both alike
            for key in list(methods)[:: 1 if round_ % 2 == 0 else -1]:
                seconds[key] += methods[key]()
    return {
        "input_size": module.backbone.input_size,
        **{key: statistics.median(values) for key, values in seconds.items()},
    }


# --------------------------------------------------------------------------------------------
# Data loading
# --------------------------------------------------------------------------------------------


def default_faces_dir() -> Path:
    """``${paths.faces_dir}/synthetic``: where ``make train`` preprocesses the synthetic set."""
    return Path(compose("train").paths.faces_dir) / "synthetic"


def write_face_jpegs(out_dir: Path, count: int, size: int, seed: int = 0) -> Path:
    """``count`` synthetic ``size`` px face crops, through preprocessing, all in split train."""
    return write_face_folder(out_dir, face_crops(count, size, seed))


def loader_images_per_second(
    faces_dir: Path,
    model: str,
    input_size: int | None,
    augmentation: str,
    batch_size: int,
    num_workers: int,
    batches: int,
) -> float:
    """Images/s from the train loader of ``FaceDataModule``, its first batch excluded.

    The first batch pays for starting the workers, once per run with persistent workers.
    The loader is re-iterated (a new epoch) when the train split holds fewer images.
    """
    cfg = train_config(model, input_size, f"augmentation={augmentation}")
    datamodule = FaceDataModule(
        faces_dir, instantiate(cfg.augmentation), batch_size=batch_size, num_workers=num_workers
    )
    loader = datamodule.train_dataloader()
    images, start, seen = 0, 0.0, 0
    while seen <= batches:
        for batch in loader:
            if seen == 0:
                start = time.perf_counter()
            else:
                images += len(batch["label"])
            seen += 1
            if seen > batches:
                break
    return images / (time.perf_counter() - start)


# --------------------------------------------------------------------------------------------
# The section
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """No "GPU available: ..." banner for each of the many short fits."""
    logger = logging.getLogger("pytorch_lightning")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def loader_source(faces_dir: str | None, tmp: Path, count: int) -> tuple[Path, str]:
    """The faces folder the loader reads, and how to name it in the table."""
    source = Path(faces_dir) if faces_dir else default_faces_dir()
    if (source / MANIFEST).is_file():
        return source, str(source)
    if faces_dir:
        raise FileNotFoundError(f"no {MANIFEST} in {source}: preprocess it first")
    crop_size = int(compose("train").extraction.crop_size)
    return write_face_jpegs(tmp, count, crop_size), f"{count} generated {crop_size} px JPEGs"


#: Columns of every row, in table order; ``ours``/``baseline``/``value`` are explained by
#: ``note`` and ``target`` (units differ between measures).
COLUMNS = (
    "measure", "model", "input_size", "device", "train_img_s", "infer_img_s", "ours",
    "baseline", "value", "target", "met", "note", "load_1min",
)  # fmt: skip
TEXT_COLUMNS = {"measure", "model", "device", "target", "met", "note"}


def row(**fields: Any) -> dict[str, Any]:
    """A table row with every column (blank where it does not apply) and the current load."""
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown benchmark columns {sorted(unknown)}")
    if isinstance(fields.get("met"), bool):
        fields["met"] = "yes" if fields["met"] else "NO"
    fields.setdefault("load_1min", round(os.getloadavg()[0], 1))
    return {c: fields.get(c, "" if c in TEXT_COLUMNS else float("nan")) for c in COLUMNS}


def benchmark_training(
    models: Sequence[str] = ("mobilenet_v2", "resnet18", "efficientnet_b0", "vit"),
    batch_size: int = 16,
    input_size: int | None = None,
    steps: int = 5,
    warmup: int = 1,
    overhead_model: str = "mobilenet_v2",
    overhead_input_size: int | None = 112,
    overhead_steps: int = 6,
    overhead_warmup: int = 2,
    overhead_rounds: int = 5,
    faces_dir: str | None = None,
    augmentation: str = "basic",
    num_workers: int = 2,
    loader_batches: int = 8,
    loader_images: int = 160,
    threads: int | None = None,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Model throughput, Lightning step overhead and dataloader/model ratio, as table rows.

    Args:
        models: ``conf/model`` options to measure, each at its configured input size.
        batch_size: Images per step everywhere.
        input_size: Input size of every model (None: each model's configured size).
        steps: Timed steps (train and inference) per model, after ``warmup`` untimed ones.
        overhead_model: Model of the Lightning comparison; a fast step (small model, the
            ``synthetic_cpu`` experiment's 112 px) is where a fixed per-step cost shows most.
        overhead_input_size: Its input size (None: the model's own).
        overhead_steps: Timed steps per measurement, after ``overhead_warmup`` untimed ones.
        overhead_rounds: Plain/Lightning measurements in turns; medians are compared.
        faces_dir: Preprocessed faces folder for the loader; None: ``${paths.faces_dir}/
            synthetic`` if preprocessed, else generated JPEG crops in a temporary folder.
        augmentation: ``conf/augmentation`` option of the train loader (``train.yaml``'s).
        num_workers: DataLoader worker processes (``train.yaml``'s ``data.num_workers``).
        loader_batches: Timed loader batches, after the first.
        loader_images: Number of generated crops when no faces folder is found.
        threads: torch intra-op threads (None: torch's default, one per core).
        device: ``cuda`` or ``cpu``; None: the GPU when there is one.

    Returns:
        One ``throughput`` row per model, one ``dataloader / model train`` row per model and
        one ``lightning step overhead`` row; ``met`` says whether a target holds.
    """
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    throughput: list[dict[str, Any]] = []
    loading: list[dict[str, Any]] = []
    with (
        torch_threads(threads),
        quiet_lightning(),
        tempfile.TemporaryDirectory(prefix="bench_faces_") as tmp,
    ):
        setup = f"batch {batch_size}, {torch.get_num_threads()} threads, fp32"
        faces, faces_name = loader_source(faces_dir, Path(tmp), loader_images)
        for name in models:
            module = build_detector(name, input_size)
            size = module.backbone.input_size
            batches = make_batches(warmup + steps, batch_size, size)
            train_s = statistics.median(plain_train_step_times(module, batches, target, warmup))
            infer_s = statistics.median(inference_step_times(module, batches, target, warmup))
            train_img_s, infer_img_s = batch_size / train_s, batch_size / infer_s
            del module, batches
            common = {"model": name, "input_size": size, "device": str(target)}
            throughput.append(
                row(measure="throughput", **common, train_img_s=train_img_s,
                    infer_img_s=infer_img_s, note=f"{setup}, AdamW step")
            )  # fmt: skip
            loader_img_s = loader_images_per_second(
                faces,
                name,
                input_size,
                augmentation,
                batch_size,
                num_workers,
                loader_batches,
            )
            ratio = loader_img_s / train_img_s
            loading.append(
                row(measure="dataloader / model train", **common, ours=loader_img_s,
                    baseline=train_img_s, value=ratio, target=f">= {MIN_LOADER_RATIO:g} (x)",
                    met=ratio >= MIN_LOADER_RATIO,
                    note=f"img/s: train loader ({num_workers} workers, {augmentation} "
                    f"augmentation, {faces_name}) / model training")
            )  # fmt: skip
            log.info("%s: train %.1f img/s, loader %.1f img/s", name, train_img_s, loader_img_s)
        measured = lightning_overhead(
            overhead_model, overhead_input_size, batch_size, overhead_steps, overhead_warmup,
            overhead_rounds, target,
        )  # fmt: skip
    overhead = 100.0 * (measured["lightning"] - measured["plain"]) / measured["plain"]
    overhead_row = row(
        measure="lightning step overhead",
        model=overhead_model,
        input_size=measured["input_size"],
        device=str(target),
        ours=measured["lightning"],
        baseline=measured["plain"],
        value=overhead,
        target=f"<= {MAX_OVERHEAD_PCT:g} (%)",
        met=overhead <= MAX_OVERHEAD_PCT,
        note=f"median s/step: Trainer.fit / plain loop, {overhead_rounds} runs each in turns; "
        f"{setup}; same batches in memory; no logger, progress bar, checkpoints",
    )
    return throughput + loading + [overhead_row]


def run(cfg: DictConfig) -> pd.DataFrame:
    """The ``training`` block of ``conf/bench.yaml``: :func:`benchmark_training`'s arguments."""
    return section_frame(benchmark_training, cfg)


def peak_memory_gib(device: torch.device) -> float:
    """Peak GPU memory allocated since the last reset (NaN on CPU)."""
    if device.type != "cuda":
        return float("nan")
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def benchmark_precision(
    models: Sequence[str] = ("efficientnet_b0", "resnet50", "vit", "efficientnet_b7"),
    precisions: Sequence[str] = ("32-true", "bf16-mixed", "16-mixed"),
    batch_size: int = 32,
    batch_sizes: dict[str, int] | None = None,
    steps: int = 10,
    warmup: int = 3,
    input_size: int | None = None,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Training and inference images/s per model and precision, with peak GPU memory.

    Each model runs at its configured (study) input size; the same batches serve every
    precision, and ``x_vs_fp32`` is the training speed-up over ``32-true``.

    Args:
        models: ``conf/model`` options.
        precisions: Lightning ``trainer.precision`` values (:data:`PRECISIONS`).
        batch_size: Images per step.
        batch_sizes: Per-model batch size overrides (efficientnet_b7 at 600 px needs fewer).
        steps: Timed steps, after ``warmup`` untimed ones.
        input_size: Input size of every model (None: each model's configured size).
        device: ``cuda`` or ``cpu``; None: the GPU when there is one.
    """
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows = []
    for name in models:
        size = (batch_sizes or {}).get(name, batch_size)
        base = None
        for precision in precisions:
            module = build_detector(name, input_size)
            batches = make_batches(warmup + steps, size, module.backbone.input_size)
            if target.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(target)
            train_s = statistics.median(
                plain_train_step_times(module, batches, target, warmup, precision)
            )
            memory = peak_memory_gib(target)
            infer_s = statistics.median(
                inference_step_times(module, batches, target, warmup, precision)
            )
            base = train_s if precision == "32-true" else base
            rows.append(
                {
                    "model": name, "input_size": module.backbone.input_size,
                    "precision": precision, "batch_size": size, "device": str(target),
                    "train_img_s": round(size / train_s, 1),
                    "infer_img_s": round(size / infer_s, 1),
                    "x_vs_fp32": round(base / train_s, 2) if base else float("nan"),
                    "peak_train_mem_gib": memory,
                }
            )  # fmt: skip
            log.info("%s %s: %.1f img/s training", name, precision, size / train_s)
            del module, batches
    return rows
