"""Scoring preprocessed faces: P(fake) per crop, per video, per split of a faces folder."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from deepfake_exp.data.datamodule import (
    FaceDataModule,
    FaceDataset,
    cap_faces_per_video,
    read_manifest,
    read_videos,
    select_sample,
)
from deepfake_exp.evaluation.aggregate import (
    add_missing_videos,
    aggregate_video_scores,
    read_video_list,
)
from deepfake_exp.evaluation.cross_dataset import SEEN_SPLITS, drop_seen
from deepfake_exp.inference.tta import TTAModel

ImageOp = Callable[[np.ndarray], np.ndarray]


def model_device(model: nn.Module) -> torch.device:
    """Where ``model`` runs: its ``device`` attribute, else its first parameter's or buffer's."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def predict_batches(
    model: nn.Module, batches: Iterable[dict[str, Tensor]], desc: str = "predict"
) -> pd.DataFrame:
    """P(fake) per sample as a frame with ``index``, ``label``, ``prob``.

    Args:
        model: Normalised images -> P(fake) ``(B,)`` (a :class:`~deepfake_exp.inference.tta.TTAModel`
            or :func:`~deepfake_exp.inference.proba.fake_probability_model`).
        batches: ``FaceDataset`` batches (``image``, ``label``, ``index``).
        desc: Name of the pass, for logs.
    """
    model.eval()
    device = model_device(model)
    rows: dict[str, list[np.ndarray]] = {"index": [], "label": [], "prob": []}
    for batch in batches:
        prob = model(batch["image"].to(device))
        rows["index"].append(batch["index"].cpu().numpy())
        rows["label"].append(batch["label"].cpu().numpy())
        rows["prob"].append(prob.float().cpu().numpy())
    return pd.DataFrame({k: np.concatenate(v) if v else np.array([]) for k, v in rows.items()})


def predict_faces(
    module: Any,
    faces: pd.DataFrame,
    faces_root: str | Path,
    transform: Callable[[np.ndarray], Tensor],
    tta: str = "none",
    batch_size: int = 64,
    num_workers: int = 2,
    desc: str = "predict",
    pre_transform: ImageOp | None = None,
) -> pd.DataFrame:
    """``faces`` (manifest rows) with a ``prob`` column: P(fake) of each crop.

    ``pre_transform`` changes each crop's pixels before the transform (robustness sweeps).
    """
    faces = faces.reset_index(drop=True).copy()
    dataset = FaceDataset(faces, faces_root, transform, pre_transform=pre_transform)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    scored = predict_batches(TTAModel(module, tta), loader, desc=desc)
    faces["prob"] = scored.sort_values("index")["prob"].to_numpy(dtype=np.float64)
    return faces


def video_predictions(
    faces: pd.DataFrame, aggregation: str, listed: pd.DataFrame | None
) -> pd.DataFrame:
    """Face scores -> one row per video (with its ``group``), plus face-less videos at 0.5.

    ``listed`` holds the videos that are scored (see :func:`listed_videos`): failed inputs
    are not in it, so they never receive the 0.5 of a face-less video.
    """
    carried = ("group", "source", "track_id")  # track_id: what track_max reduces over
    columns = ["video_id", "label", "prob", *(c for c in carried if c in faces)]
    videos = aggregate_video_scores(faces[columns], aggregation)
    return videos if listed is None else add_missing_videos(videos, listed)


def listed_videos(
    faces_dir: str | Path, split: str | None = None
) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """``(scored, failed)`` videos of a faces folder (one split, or all).

    Scored: extracted videos and those without a face (0.5). Failed: missing, corrupt,
    outside-root or unprocessed files, excluded from the metrics and counted by reason.
    """
    scored, failed = read_video_list(faces_dir)
    if split is not None:
        scored = None if scored is None else scored[scored["split"] == split]
        failed = failed[failed["split"] == split] if "split" in failed else failed
    return scored, failed


def split_predictions(
    module: Any, datamodule: FaceDataModule, split: str, aggregation: str, tta: str = "none"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Face, video (face-less videos at 0.5) and failed-video frames of one split."""
    faces = predict_faces(
        module,
        datamodule.split_frame(split),
        datamodule.faces_dir,
        datamodule.augmentation.eval_transform(),
        tta=tta,
        batch_size=datamodule.eval_batch_size,
        num_workers=datamodule.num_workers,
        desc=f"predict {split}",
    )
    listed, failed = listed_videos(datamodule.faces_dir, split)
    return faces, video_predictions(faces, aggregation, listed), failed


def seen_videos(faces_dir: Path, splits: Sequence[str] = SEEN_SPLITS) -> pd.DataFrame:
    """``video_id`` (and ``source``) of the videos a run trained or selected on.

    Read from the training faces folder's video list (every video, extracted or not) or, for
    older folders, its manifest.
    """
    videos = read_videos(faces_dir)
    table = videos if videos is not None else read_manifest(faces_dir)
    columns = [c for c in ("source", "video_id") if c in table]
    return table.loc[table["split"].isin(splits), columns].drop_duplicates()


def external_predictions(
    module: Any,
    faces_dir: Path,
    transform: Callable[[np.ndarray], Tensor],
    aggregation: str,
    tta: str,
    batch_size: int,
    num_workers: int,
    seen: pd.DataFrame | None = None,
    max_faces_per_video: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """Another dataset's videos the run never saw, whatever their split there.

    Returns face and video predictions, the failed inputs, and how many videos were left out
    because the run trained or selected on them (``seen``). Faces per video are capped as in
    training (``max_faces_per_video``).
    """
    # the label-independent eval sample: per-class frame counts balance training only
    manifest = cap_faces_per_video(
        select_sample(read_manifest(faces_dir), train=False), max_faces_per_video
    )
    listed, failed = listed_videos(faces_dir)
    tables = [t for t in (manifest, listed, failed) if t is not None]
    known = pd.concat([t[[c for c in ("source", "video_id") if c in t]] for t in tables])
    excluded = 0
    if seen is not None:
        excluded = known["video_id"].nunique() - drop_seen(known, seen)["video_id"].nunique()
        manifest = drop_seen(manifest, seen)
        listed = None if listed is None else drop_seen(listed, seen)
        failed = drop_seen(failed, seen)
    if manifest.empty:  # nothing unseen with a face: no row
        return manifest, manifest, failed, int(excluded)
    faces = predict_faces(
        module,
        manifest,
        faces_dir,
        transform,
        tta=tta,
        batch_size=batch_size,
        num_workers=num_workers,
        desc=f"predict {faces_dir.name}",
    )
    return faces, video_predictions(faces, aggregation, listed), failed, int(excluded)
