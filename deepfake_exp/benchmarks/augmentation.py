"""Augmentation throughput: samples/s of every ``conf/augmentation`` option on one CPU process.

``make bench`` prints it next to the model's training throughput: a DataLoader with ``w``
workers delivers roughly ``w`` times these figures, which must exceed what the model consumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from deepfake_exp.benchmarks.common import compose, face_crops, group_options, section_frame
from deepfake_exp.data.records import REAL
from deepfake_exp.data.transforms import Augmentation


class InMemoryFaces:
    """The part of ``FaceDataset`` a pair wrapper reads, over images held in memory."""

    def __init__(self, images: Sequence[np.ndarray], labels: Sequence[int]) -> None:
        self.images = list(images)
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.frame = pd.DataFrame({"face_path": [f"{i}.png" for i in range(len(self.images))]})
        self.frame["label"] = self.labels.numpy()

    def __len__(self) -> int:
        return len(self.images)

    def load_image(self, index: int) -> np.ndarray:
        return self.images[index]


def build_augmentation(name: str, input_size: int) -> Augmentation:
    """``augmentation=<name>`` as ``train`` composes it, for the default model at ``input_size``."""
    cfg = compose("train", [f"augmentation={name}", f"model.input_size={input_size}"])
    return instantiate(cfg.augmentation)


def _rate(step: Callable[[int], object], samples_per_step: int, samples: int) -> float:
    """Samples per second of ``step`` over about ``samples`` samples."""
    step(0)  # warm-up: first calls build lookup tables
    count = max(samples // samples_per_step, 1)
    start = time.perf_counter()
    for i in range(count):
        step(i)
    return count * samples_per_step / (time.perf_counter() - start)


def _train_step(
    augmentation: Augmentation, images: list[np.ndarray]
) -> tuple[Callable[[int], object], int]:
    """What a training item costs: the train transform, or the wrapped dataset's item."""
    faces = InMemoryFaces(images, [REAL] * len(images))
    wrapped = augmentation.wrap_train_dataset(faces)
    if wrapped is faces:
        transform = augmentation.train_transform()
        return (lambda i: transform(images[i % len(images)])), 1
    per_item = int(torch.as_tensor(wrapped[0]["label"]).numel())  # pairs count twice
    return (lambda i: wrapped[i % len(wrapped)]), per_item


def benchmark_augmentations(
    input_size: int = 224,
    n: int = 200,
    crop_size: int | None = None,
    options: Sequence[str] | None = None,
) -> list[dict]:
    """Samples/s of each option's train and eval transform, plus the dataset item it serves.

    Measured in this process with one torch thread, as a DataLoader worker runs.

    Args:
        input_size: Model input side.
        n: Samples timed per row.
        crop_size: Side of the face crops fed in (default: ``input_size``, as preprocessing
            writes them for the model).
        options: Augmentation option names (default: every option of the ``augmentation`` group).

    Returns:
        One dict per (option, stage): ``augmentation``, ``stage`` (``train`` / ``eval``),
        ``samples_per_s``, ``ms_per_sample``, ``input_size``, ``crop_size``, ``n``.
        ``train`` includes whatever the option's training dataset adds (for ``sbi``: making
        the pseudo-fake; a pair counts as two samples).
    """
    crop_size = crop_size or input_size
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        return _benchmark(input_size, n, crop_size, options)
    finally:
        torch.set_num_threads(threads)


def _benchmark(
    input_size: int, n: int, crop_size: int, options: Sequence[str] | None
) -> list[dict]:
    names = list(options or group_options("augmentation"))
    images = face_crops(min(n, 32), crop_size)
    rows = []
    for name in names:
        augmentation = build_augmentation(name, input_size)
        evaluate = augmentation.eval_transform()
        rates = {
            "train": _rate(*_train_step(augmentation, images), samples=n),
            "eval": _rate(lambda i, t=evaluate: t(images[i % len(images)]), 1, samples=n),
        }
        for stage, rate in rates.items():
            rows.append(
                {
                    "augmentation": name,
                    "stage": stage,
                    "samples_per_s": rate,
                    "ms_per_sample": 1000.0 / rate,
                    "input_size": input_size,
                    "crop_size": crop_size,
                    "n": n,
                }
            )
    return rows


def run(cfg: DictConfig) -> pd.DataFrame:
    """The ``augmentation`` block of ``conf/bench.yaml``: :func:`benchmark_augmentations`' arguments."""
    return section_frame(benchmark_augmentations, cfg)
