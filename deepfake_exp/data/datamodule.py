"""Datasets over a preprocessing manifest and the LightningDataModule that serves them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from deepfake_exp.data import shards
from deepfake_exp.data.samplers import PairedBatchSampler
from deepfake_exp.data.transforms import Augmentation, Transform

MANIFEST = "manifest.csv"
VIDEOS = "videos.csv"
FORMATS = ("files", "shards")


class ManifestNotFoundError(FileNotFoundError):
    """The faces folder has no manifest: preprocessing has not run for this dataset."""


def read_manifest(faces_dir: str | Path) -> pd.DataFrame:
    """The manifest of a faces folder, with a clear error naming the command that makes it."""
    path = Path(faces_dir) / MANIFEST
    if not path.is_file():
        raise ManifestNotFoundError(
            f"no {MANIFEST} in {Path(faces_dir).resolve()}: run "
            "`python -m deepfake_exp.preprocess dataset=<name>` first (make train does), or "
            "point data.faces_dir at a preprocessed folder"
        )
    return pd.read_csv(path, dtype={"video_id": str, "group": str, "original": str})


def read_videos(faces_dir: str | Path) -> pd.DataFrame | None:
    """All videos of the dataset (face-less ones too), if preprocessing wrote the list."""
    path = Path(faces_dir) / VIDEOS
    return pd.read_csv(path, dtype={"video_id": str, "group": str}) if path.is_file() else None


def select_sample(frame: pd.DataFrame, train: bool) -> pd.DataFrame:
    """The faces of the training sample (``train``) or of the label-independent eval sample.

    Per-class frame counts balance training only; validation, test and cross-dataset
    evaluation score every video on the same ``num_frames`` frames (``eval_frame``), the
    frames ``predict`` samples too. Manifests made before these columns keep every face.
    """
    column = "train_frame" if train else "eval_frame"
    if column not in frame.columns:
        return frame
    return frame[frame[column].astype(bool)]


def cap_faces_per_video(frame: pd.DataFrame, limit: int | None, seed: int = 0) -> pd.DataFrame:
    """At most ``limit`` faces per video (evenly over its frames), to balance long videos."""
    if not limit:
        return frame
    kept = []
    for _, faces in frame.groupby("video_id", sort=False):
        take = np.unique(np.linspace(0, len(faces) - 1, min(limit, len(faces))).round().astype(int))
        kept.append(faces.iloc[take])
    return pd.concat(kept) if kept else frame


ImageOp = Callable[[np.ndarray], np.ndarray]


class FaceDataset(Dataset):
    """Face crops of one split. Items: ``image``, ``label``, ``index`` (row in ``frame``).

    A crop that cannot be read raises: silently substituting another sample would train on
    wrong labels (DeepfakeBench's habit we avoid).

    Args:
        frame: Manifest rows to serve.
        root: Folder the manifest's ``face_path`` values are relative to.
        transform: Turns the RGB uint8 crop into the model's tensor.
        pre_transform: Optional RGB uint8 -> RGB uint8 step applied right after reading,
            before ``transform`` (robustness perturbations: JPEG, blur, ... on the pixels the
            detector produced, so normalisation and resizing still follow).
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        root: str | Path,
        transform: Transform,
        pre_transform: ImageOp | None = None,
    ) -> None:
        self.frame = frame.reset_index(drop=True)
        self.root = Path(root)
        self.transform = transform
        self.pre_transform = pre_transform
        self.paths = [str(self.root / p) for p in self.frame["face_path"]]
        self.labels = torch.as_tensor(self.frame["label"].to_numpy().copy(), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.frame)

    def load_image(self, index: int) -> np.ndarray:
        image = cv2.imread(self.paths[index], cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read face crop {self.paths[index]}")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return image if self.pre_transform is None else self.pre_transform(image)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.transform(self.load_image(index))
        return {"image": image, "label": self.labels[index], "index": torch.tensor(index)}


class FaceDataModule(pl.LightningDataModule):
    """Train/val/test face datasets from a manifest, transforms from the augmentation option.

    Train serves the faces of each train video's training sample (per-class frame counts);
    val and test serve the label-independent evaluation sample (``select_sample``).

    Args:
        faces_dir: Preprocessing output folder holding ``manifest.csv``.
        augmentation: Builds the train and eval transforms (sized for the model).
        batch_size: Training batch size.
        eval_batch_size: Batch size for val/test/predict (defaults to ``batch_size``).
        num_workers: DataLoader worker processes.
        max_faces_per_video: Cap on faces per video and split (``None``: all).
        pin_memory: Pin host memory (useful on GPU).
        pair_with_original: Train batches hold each fake beside frames of its own original
            (:class:`~deepfake_exp.data.samplers.PairedBatchSampler`), shuffled from the
            run's torch seed.
        format: ``files`` reads the loose crops; ``shards`` streams the WebDataset shards
            of :mod:`deepfake_exp.data.shards` (packed by ``prepare_data`` when missing or
            stale), the same faces in the same splits.
    """

    def __init__(
        self,
        faces_dir: str | Path,
        augmentation: Augmentation,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        max_faces_per_video: int | None = None,
        pin_memory: bool = False,
        pair_with_original: bool = False,
        format: str = "files",
    ) -> None:
        super().__init__()
        if format not in FORMATS:
            raise ValueError(f"data.format must be one of {FORMATS}, got {format!r}")
        if format == "shards" and pair_with_original:
            raise ValueError(
                "data.pair_with_original needs random access to the train faces: "
                "use data.format=files with it"
            )
        self.faces_dir = Path(faces_dir)
        self.augmentation = augmentation
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.max_faces_per_video = max_faces_per_video
        self.pin_memory = pin_memory
        self.pair_with_original = pair_with_original
        self.format = format
        self.datasets: dict[str, FaceDataset | shards.ShardFaceDataset] = {}

    def split_frame(self, split: str) -> pd.DataFrame:
        """Manifest rows of ``split``: its sample (train or eval), capped per video."""
        manifest = read_manifest(self.faces_dir)
        frame = select_sample(manifest[manifest["split"] == split], train=split == "train")
        return cap_faces_per_video(frame, self.max_faces_per_video)

    def prepare_data(self) -> None:
        """``format=shards``: pack the faces once (rank 0) unless up-to-date shards exist."""
        if self.format == "shards" and not shards.is_packed(self.faces_dir, self.manifest_path):
            shards.pack_faces(self.faces_dir, read_manifest(self.faces_dir), self.manifest_path)

    @property
    def manifest_path(self) -> Path:
        return self.faces_dir / MANIFEST

    def dataset(self, split: str) -> FaceDataset | shards.ShardFaceDataset:
        if split not in self.datasets:
            frame = self.split_frame(split)
            if frame.empty:
                raise ValueError(f"split '{split}' of {self.faces_dir} has no faces")
            transform = (
                self.augmentation.train_transform()
                if split == "train"
                else self.augmentation.eval_transform()
            )
            if self.format == "shards":
                self.datasets[split] = self._shard_dataset(split, frame, transform)
            else:
                self.datasets[split] = FaceDataset(frame, self.faces_dir, transform)
        return self.datasets[split]

    def _shard_dataset(
        self, split: str, frame: pd.DataFrame, transform: Transform
    ) -> shards.ShardFaceDataset:
        """The split's sample streamed from the shards (keys: manifest rows)."""
        index = shards.read_index(self.faces_dir, self.manifest_path)
        manifest = read_manifest(self.faces_dir)
        train = split == "train"
        return shards.ShardFaceDataset(
            shards.split_shards(index, split),
            self.faces_dir / shards.SHARDS_DIR,
            frame.assign(row=frame.index),
            manifest.index[manifest["split"] == split],
            transform,
            shuffle=train,
            seed=torch.initial_seed() % 2**32,  # the run's seed (seed_everything)
            equalize=train,
        )

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"]}
        for split in splits.get(stage or "fit", []):
            self.dataset(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        batch_size = self.batch_size if split == "train" else self.eval_batch_size
        streamed = self.format == "shards"  # the shard dataset shuffles itself
        batching: dict[str, Any] = {"batch_size": batch_size, "shuffle": shuffle and not streamed}
        if split == "train":
            wrapped = self.augmentation.wrap_train_dataset(dataset)
            if streamed and wrapped is not dataset:
                raise ValueError(
                    f"augmentation {type(self.augmentation).__name__} needs random access to "
                    "the train faces: use data.format=files with it"
                )
            dataset = wrapped
            if self.pair_with_original:
                batching = {"batch_sampler": self._paired_sampler(dataset)}
        return DataLoader(
            dataset,
            collate_fn=getattr(dataset, "collate_fn", None),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            **batching,
        )

    def _paired_sampler(self, dataset: Dataset) -> PairedBatchSampler:
        if not isinstance(dataset, FaceDataset):
            raise ValueError(
                f"data.pair_with_original needs the manifest's train faces, but augmentation "
                f"{type(self.augmentation).__name__} serves a {type(dataset).__name__}: "
                "turn one of them off"
            )
        seed = torch.initial_seed() % 2**32  # the run's seed (seed_everything)
        return PairedBatchSampler(batch_size=self.batch_size, frame=dataset.frame, seed=seed)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def eval_loader(self, split: str, pre_transform: ImageOp | None = None) -> DataLoader:
        """An unshuffled loader of any split with the deterministic eval transform.

        ``pre_transform`` perturbs each crop before the transform (robustness evaluation).
        """
        dataset = FaceDataset(
            self.split_frame(split),
            self.faces_dir,
            self.augmentation.eval_transform(),
            pre_transform=pre_transform,
        )
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )
