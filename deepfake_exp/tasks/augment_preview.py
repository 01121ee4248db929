"""What a model will be trained on, as a grid of denormalised samples
(``python -m deepfake_exp.augment_preview``).

``augmentation=<name>`` picks the pipeline and ``n`` the number of samples; faces come from a
preprocessed folder's manifest. Samples are shown denormalised, at the model's input size;
``augmentation=sbi`` shows how each pseudo-fake is made (source / mask / result).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from hydra.utils import instantiate
from matplotlib.figure import Figure
from omegaconf import DictConfig

from deepfake_exp.data.datamodule import read_manifest
from deepfake_exp.data.records import LABEL_NAMES, REAL
from deepfake_exp.data.sbi import SBIAugmentation, blend_with
from deepfake_exp.data.transforms import Augmentation
from deepfake_exp.utils.images import denormalise

log = logging.getLogger(__name__)

Panel = tuple[np.ndarray, str]


def pick_rows(
    manifest: pd.DataFrame, n: int, seed: int, split: str | None, real_only: bool
) -> pd.DataFrame:
    """``n`` rows (or all there are) of the wanted split, drawn by ``seed``."""
    rows = manifest if split is None else manifest[manifest["split"] == split]
    if real_only:
        rows = rows[rows["label"] == REAL]
    if rows.empty:
        kind = "REAL faces" if real_only else "faces"
        raise ValueError(f"the manifest has no {kind} in split {split!r} to preview")
    return rows.sample(n=min(n, len(rows)), random_state=seed)


def load_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read face crop {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def augmented_panels(
    augmentation: Augmentation, images: list[np.ndarray], labels: list[int], seed: int
) -> list[Panel]:
    """Each image through the train transform, denormalised for display."""
    transform = augmentation.train_transform()
    transform.reseed(seed)
    return [
        (denormalise(transform(image), augmentation.mean, augmentation.std), LABEL_NAMES[label])
        for image, label in zip(images, labels, strict=True)
    ]


def sbi_panels(augmentation: SBIAugmentation, images: list[np.ndarray], seed: int) -> list[Panel]:
    """Source / mask / result of one self-blend per real face, at the model's input size."""
    size = (augmentation.input_size, augmentation.input_size)
    panels: list[Panel] = []
    for i, image in enumerate(images):
        blended, mask, source = blend_with(
            image, np.random.default_rng([seed, i]), augmentation.blend
        )
        mask_rgb = (np.repeat(mask[..., None], 3, axis=2) * 255.0 + 0.5).astype(np.uint8)
        for panel, title in (
            (source, "source"),
            (mask_rgb, f"mask (peak {mask.max():.2f})"),
            (blended, "result"),
        ):
            panels.append((cv2.resize(panel, size, interpolation=cv2.INTER_AREA), title))
    return panels


def save_grid(panels: list[Panel], columns: int, out: Path, title: str) -> Path:
    """A titled grid of RGB panels as one PNG (matplotlib's OO API: no pyplot, no backend)."""
    columns = max(1, min(columns, len(panels)))
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(2.0 * columns, 2.1 * rows + 0.4))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, label) in zip(axes.flat, panels, strict=False):
        ax.imshow(image)
        ax.set_title(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def preview(cfg: DictConfig) -> Path:
    """Write the preview grid for ``cfg.augmentation``; returns its path."""
    faces_dir = Path(cfg.faces_dir)
    manifest = read_manifest(faces_dir)
    augmentation: Augmentation = instantiate(cfg.augmentation)
    is_sbi = isinstance(augmentation, SBIAugmentation)
    rows = pick_rows(manifest, int(cfg.n), int(cfg.seed), cfg.split, real_only=is_sbi)
    images = [load_rgb(faces_dir / path) for path in rows["face_path"]]
    name = type(augmentation).__name__
    if is_sbi:
        panels = sbi_panels(augmentation, images, int(cfg.seed))
        columns = 3 * max(1, int(cfg.columns) // 2)
    else:
        panels = augmented_panels(augmentation, images, rows["label"].tolist(), int(cfg.seed))
        columns = int(cfg.columns)
    out = save_grid(panels, columns, Path(cfg.out), f"{name}: {len(images)} faces of {faces_dir}")
    log.info("wrote %s", out)
    return out


def run(cfg: DictConfig) -> Path:
    """``python -m deepfake_exp.augment_preview``: the preview grid's path."""
    return preview(cfg)
