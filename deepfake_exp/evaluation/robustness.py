"""Robustness curves: test faces perturbed at growing severities, scored with the clean threshold.

Detectors are deployed on re-compressed, resized, blurred and noisy video; papers report AUC
under JPEG, blur, resizing, noise and brightness/contrast changes. Each perturbation is a class
(a ``_target_`` in ``conf/robustness/*.yaml``) holding one parameter per severity
(``levels``); ``perturbation(image, severity)`` maps an RGB uint8 crop to an RGB uint8 crop,
and severity 0 returns the input itself, so the first point of every curve *is* the clean
evaluation. Random perturbations (noise) draw from a generator seeded by the seed, the severity
and the image's bytes: the same crop gets the same noise whatever the loader order or worker.

:func:`robustness_table` scores the test faces once per (perturbation, severity) through a
callback the evaluate task gives (``score_faces(pre_transform) -> P(fake) per face``), so
this module never touches models. The decision threshold stays the clean-val one.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import cv2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from deepfake_exp.evaluation.aggregate import aggregate_video_scores
from deepfake_exp.evaluation.bootstrap import DEFAULT_LEVEL, bootstrap_ci, resampling_groups
from deepfake_exp.evaluation.metrics import binary_metrics
from deepfake_exp.evaluation.plots import new_figure
from deepfake_exp.utils.images import as_saved

ImageOp = Callable[[np.ndarray], np.ndarray]

TABLE_COLUMNS = [
    "perturbation",
    "severity",
    "face_auc",
    "face_auc_lo",
    "face_auc_hi",
    "video_auc",
    "video_auc_lo",
    "video_auc_hi",
    "log_loss",
    "accuracy",
]


# --------------------------------------------------------------------------------------------
# Perturbations
# --------------------------------------------------------------------------------------------


class Perturbation(ABC):
    """One kind of degradation with one parameter per severity (``levels[s - 1]``).

    Args:
        levels: Parameter of severities ``1..len(levels)``, mildest first.
        seed: Seed of the random ones (noise); the others ignore it.
    """

    def __init__(self, levels: Sequence[Any], seed: int = 0) -> None:
        if len(levels) < 1:
            raise ValueError(f"{type(self).__name__} needs at least one severity level")
        self.levels = tuple(levels)
        self.seed = int(seed)

    @property
    def severities(self) -> list[int]:
        """Severities this perturbation defines: ``0`` (identity) up to ``len(levels)``."""
        return list(range(len(self.levels) + 1))

    def __call__(self, image: np.ndarray, severity: int) -> np.ndarray:
        """``image`` (H x W x 3 RGB uint8) degraded at ``severity``; 0 returns it unchanged."""
        if severity not in self.severities:
            raise ValueError(
                f"{type(self).__name__} has severities {self.severities}, got {severity}"
            )
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 uint8 image, got {image.dtype} {image.shape}")
        if severity == 0:
            return image
        return self.apply(image, self.levels[severity - 1], self._rng(image, severity))

    def at(self, severity: int) -> ImageOp:
        """``image -> image`` at one severity: a ``FaceDataset`` ``pre_transform`` (picklable)."""
        if severity not in self.severities:
            raise ValueError(
                f"{type(self).__name__} has severities {self.severities}, got {severity}"
            )
        return partial(self, severity=severity)

    def _rng(self, image: np.ndarray, severity: int) -> np.random.Generator:
        digest = zlib.crc32(np.ascontiguousarray(image).data)
        return np.random.default_rng([self.seed, severity, digest])

    @abstractmethod
    def apply(self, image: np.ndarray, level: Any, rng: np.random.Generator) -> np.ndarray:
        """The degraded image for one parameter value (``rng`` for random perturbations)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(levels={list(self.levels)})"


class JpegCompression(Perturbation):
    """Re-encoding as JPEG at ``quality`` (levels: qualities, 100 best): the compression of
    re-uploaded video, which wipes the high-frequency blending traces detectors learn."""

    def __init__(self, qualities: Sequence[int] = (90, 70, 50, 30, 10), seed: int = 0) -> None:
        if not all(1 <= q <= 100 for q in qualities):
            raise ValueError(f"JPEG qualities must be in [1, 100], got {list(qualities)}")
        super().__init__(qualities, seed)

    def apply(self, image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
        return as_saved(image, "jpg", jpeg_quality=int(level))  # the one JPEG round trip


class GaussianBlur(Perturbation):
    """Gaussian blur of standard deviation ``sigma`` pixels (levels: sigmas)."""

    def __init__(self, sigmas: Sequence[float] = (0.5, 1.0, 2.0, 3.0, 4.0), seed: int = 0) -> None:
        if not all(s > 0 for s in sigmas):
            raise ValueError(f"blur sigmas must be > 0, got {list(sigmas)}")
        super().__init__(sigmas, seed)

    def apply(self, image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        return cv2.GaussianBlur(image, (0, 0), sigmaX=float(level), borderType=cv2.BORDER_REFLECT)


class Downscale(Perturbation):
    """Downscale by ``factor`` then upscale back (levels: factors < 1): low-resolution video,
    the size the crop comes back to so the model input is unchanged."""

    def __init__(
        self, factors: Sequence[float] = (0.75, 0.5, 0.35, 0.25, 0.125), seed: int = 0
    ) -> None:
        if not all(0 < f < 1 for f in factors):
            raise ValueError(f"downscale factors must be in (0, 1), got {list(factors)}")
        super().__init__(factors, seed)

    def apply(self, image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        height, width = image.shape[:2]
        small = (max(1, round(width * level)), max(1, round(height * level)))
        reduced = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
        return cv2.resize(reduced, (width, height), interpolation=cv2.INTER_LINEAR)


class GaussianNoise(Perturbation):
    """Additive Gaussian noise of standard deviation ``std`` grey levels (levels: stds)."""

    def __init__(self, stds: Sequence[float] = (4.0, 8.0, 16.0, 24.0, 32.0), seed: int = 0) -> None:
        if not all(s > 0 for s in stds):
            raise ValueError(f"noise stds must be > 0, got {list(stds)}")
        super().__init__(stds, seed)

    def apply(self, image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        noisy = image.astype(np.float32) + rng.normal(0.0, float(level), image.shape)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


class BrightnessContrast(Perturbation):
    """Contrast scaled around mid-grey, then brightness shifted: ``(x - 128) * c + 128 + b``.

    Args:
        contrasts: Contrast factor per severity (1 keeps it).
        brightness: Grey-level shift per severity, as many as ``contrasts``.
    """

    def __init__(
        self,
        contrasts: Sequence[float] = (0.9, 0.75, 0.6, 0.45, 0.3),
        brightness: Sequence[float] = (10.0, 20.0, 30.0, 45.0, 60.0),
        seed: int = 0,
    ) -> None:
        if len(contrasts) != len(brightness):
            raise ValueError(
                f"{len(contrasts)} contrasts but {len(brightness)} brightness shifts: "
                "one of each per severity"
            )
        if not all(c > 0 for c in contrasts):
            raise ValueError(f"contrast factors must be > 0, got {list(contrasts)}")
        super().__init__(list(zip(contrasts, brightness, strict=True)), seed)

    def apply(
        self, image: np.ndarray, level: tuple[float, float], rng: np.random.Generator
    ) -> np.ndarray:
        contrast, shift = level
        out = (image.astype(np.float32) - 128.0) * float(contrast) + 128.0 + float(shift)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def build_perturbations(config: Mapping[str, Any] | None) -> dict[str, Perturbation]:
    """Name -> perturbation from the ``robustness.perturbations`` mapping of ``_target_`` s.

    Already-built perturbations pass through, so tests can hand objects directly.
    """
    from hydra.utils import instantiate

    built: dict[str, Perturbation] = {}
    for name, entry in (config or {}).items():
        perturbation = entry if isinstance(entry, Perturbation) else instantiate(entry)
        if not isinstance(perturbation, Perturbation):
            raise TypeError(f"robustness perturbation {name!r} built a {type(perturbation)}")
        built[str(name)] = perturbation
    return built


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def _thresholds(threshold: float | Mapping[str, float]) -> tuple[float, float]:
    if isinstance(threshold, Mapping):
        return float(threshold["face"]), float(threshold["video"])
    return float(threshold), float(threshold)


def _auc_with_ci(
    frame: pd.DataFrame, n_resamples: int, seed: int, level: float
) -> tuple[float, float, float]:
    """ROC-AUC of ``frame`` (``label``, ``prob``) with its group bootstrap interval (NaN: none)."""
    ci = bootstrap_ci(
        "roc_auc",
        frame["label"].to_numpy(),
        frame["prob"].to_numpy(),
        resampling_groups(frame),
        n_resamples,
        seed,
        level,
    )
    return tuple(np.nan if ci[key] is None else ci[key] for key in ("estimate", "low", "high"))


def _row(
    faces: pd.DataFrame,
    probs: np.ndarray,
    to_videos: Callable[[pd.DataFrame], pd.DataFrame],
    thresholds: tuple[float, float],
    bootstrap: tuple[int, int, float],
) -> dict[str, float]:
    scored = faces.assign(prob=np.asarray(probs, dtype=np.float64))
    videos = to_videos(scored)
    face_auc = _auc_with_ci(scored, *bootstrap)
    video_auc = _auc_with_ci(videos, *bootstrap)
    video = binary_metrics(videos["label"], videos["prob"], thresholds[1])
    return {
        "face_auc": face_auc[0],
        "face_auc_lo": face_auc[1],
        "face_auc_hi": face_auc[2],
        "video_auc": video_auc[0],
        "video_auc_lo": video_auc[1],
        "video_auc_hi": video_auc[2],
        "log_loss": float(video["log_loss"]),
        "accuracy": float(video["accuracy"]),
    }


def robustness_table(
    score_faces: Callable[[ImageOp | None], np.ndarray],
    faces: pd.DataFrame,
    perturbations: Mapping[str, Perturbation],
    threshold: float | Mapping[str, float],
    to_videos: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> pd.DataFrame:
    """AUC (face and video, with group bootstrap CIs), log-loss and accuracy per severity.

    Args:
        score_faces: ``pre_transform -> P(fake)`` of every row of ``faces``, in order; called
            with ``None`` once for the clean faces (every perturbation's severity 0) and with
            ``perturbation.at(s)`` for each other severity.
        faces: The test faces (``video_id``, ``label``; ``group`` makes the bootstrap resample
            identities).
        perturbations: Name -> perturbation (:func:`build_perturbations`).
        threshold: The clean-val threshold, one value or ``{"face": .., "video": ..}``;
            ``accuracy`` uses the video one.
        to_videos: Face rows with ``prob`` -> one row per video (``video_id``, ``label``,
            ``prob``); default: the mean of each video's faces. The evaluate task passes its
            own reduction (aggregation, face-less videos) so severity 0 is its clean evaluation.
        n_resamples: Bootstrap resamples per interval.
        seed: Bootstrap seed (the same for every row: intervals differ only by the scores).
        level: Coverage of the intervals.

    Returns:
        One row per (perturbation, severity) with :data:`TABLE_COLUMNS`; ``log_loss`` and
        ``accuracy`` are video-level, the unit DFDC scored. Undefined AUCs (one class) are NaN.
    """
    to_videos = to_videos or aggregate_video_scores
    thresholds = _thresholds(threshold)
    bootstrap = (n_resamples, seed, level)

    def row(name: str, severity: int, probs: np.ndarray) -> dict[str, Any]:
        if len(probs) != len(faces):
            raise ValueError(f"score_faces returned {len(probs)} scores for {len(faces)} faces")
        values = _row(faces, probs, to_videos, thresholds, bootstrap)
        return {"perturbation": name, "severity": severity, **values}

    rows = []
    clean: dict[str, Any] | None = None
    for name, perturbation in perturbations.items():
        for severity in perturbation.severities:
            if severity == 0:
                clean = clean or row(name, 0, score_faces(None))
                rows.append({**clean, "perturbation": name})
            else:
                rows.append(row(name, severity, score_faces(perturbation.at(severity))))
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def robustness_summary(table: pd.DataFrame) -> dict[str, float | None]:
    """Mean face and video AUC over the perturbed rows (severity > 0): ``metrics.json``'s
    ``robustness`` block and the report's ``robust_video_auc``."""
    perturbed = table[table["severity"] > 0]

    def mean(column: str) -> float | None:
        values = perturbed[column].dropna()
        return float(values.mean()) if len(values) else None

    return {"mean_face_auc": mean("face_auc"), "mean_video_auc": mean("video_auc")}


def plot_robustness(table: pd.DataFrame, title: str = "Robustness") -> Figure:
    """Face and video AUC vs severity, one line (with its CI band) per perturbation."""
    figure = new_figure(10.0, 4.2)
    axes = figure.subplots(1, 2, sharey=True)
    for ax, unit in zip(axes, ("face", "video"), strict=True):
        for name, rows in table.groupby("perturbation", sort=False):
            rows = rows.sort_values("severity")
            (line,) = ax.plot(rows["severity"], rows[f"{unit}_auc"], marker="o", label=name)
            ax.fill_between(
                rows["severity"],
                rows[f"{unit}_auc_lo"].astype(float),
                rows[f"{unit}_auc_hi"].astype(float),
                color=line.get_color(),
                alpha=0.15,
                linewidth=0,
            )
        ax.set_xlabel("severity (0 = clean)")
        ax.set_title(f"{unit} ROC-AUC")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ROC-AUC")
    axes[1].legend(loc="lower left", fontsize="small")
    figure.suptitle(title)
    return figure
