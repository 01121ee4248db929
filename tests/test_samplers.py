"""Pairs in a batch (#16.4): every fake shares its batch with frames of its own original."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from deepfake_exp.data.datamodule import FaceDataModule
from deepfake_exp.data.samplers import PairedBatchSampler, families, family_chunks
from deepfake_exp.data.transforms import Augmentation


def manifest(
    n_originals: int = 6,
    fakes_per_original: int = 3,
    frames: int = 4,
    fake_frames: int = 2,
    orphans: int = 1,
    lonely_reals: int = 1,
) -> pd.DataFrame:
    """A train frame like DFDC's: originals, several fakes each, fakes with a missing original."""
    rows = []

    def add(video: str, label: int, original: str, count: int) -> None:
        rows.extend(
            {"video_id": video, "frame": f, "label": label, "original": original}
            for f in range(count)
        )

    for o in range(n_originals):
        add(f"o{o}", 0, "", frames)
        for k in range(fakes_per_original):
            add(f"o{o}_f{k}", 1, f"o{o}", fake_frames)
    for k in range(orphans):
        add(f"orphan{k}", 1, "gone", fake_frames)
    for k in range(lonely_reals):
        add(f"lonely{k}", 0, "", frames)
    return pd.DataFrame(rows)


def assert_paired(frame: pd.DataFrame, batches: list[list[int]], batch_size: int) -> None:
    """The invariant: a fake whose original has faces in ``frame`` has one in its batch."""
    present = set(frame.loc[frame["label"] == 0, "video_id"])
    for batch in batches:
        assert 0 < len(batch) <= batch_size
        rows = frame.iloc[batch]
        videos = set(rows["video_id"])
        for original in rows.loc[rows["label"] == 1, "original"]:
            assert original not in present or original in videos, (original, batch)


def test_families_group_fakes_with_their_original() -> None:
    frame = manifest(n_originals=2, fakes_per_original=2, orphans=1, lonely_reals=1)
    found = {tuple(sorted(frame.iloc[o + f]["video_id"].unique())) for o, f in families(frame)}
    assert ("o0", "o0_f0", "o0_f1") in found and ("o1", "o1_f0", "o1_f1") in found
    assert ("orphan0",) in found and ("lonely0",) in found
    no_column = families(frame.drop(columns="original"))
    assert all(not (o and f) for o, f in no_column)  # without the column every fake is alone


@pytest.mark.parametrize("batch_size", [4, 8, 16])
def test_every_fake_has_its_original_in_its_batch(batch_size: int) -> None:
    frame = manifest()
    sampler = PairedBatchSampler(batch_size=batch_size, frame=frame, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert_paired(frame, batches, batch_size)
    served = Counter(i for batch in batches for i in batch)
    assert set(served) == set(range(len(frame)))  # every face once at least
    fakes = frame.index[frame["label"] == 1]
    assert all(served[i] == 1 for i in fakes)  # fakes exactly once: the class balance holds


def test_originals_repeat_only_when_a_family_needs_more_chunks_than_it_has_frames() -> None:
    rng = np.random.default_rng(0)
    few_originals = family_chunks(([0], list(range(1, 10))), max_size=3, rng=rng)
    assert all(0 in chunk and len(chunk) <= 3 for chunk in few_originals)
    assert sorted(i for c in few_originals for i in c if i) == list(range(1, 10))
    enough = family_chunks((list(range(6)), list(range(6, 12))), max_size=4, rng=rng)
    served = [i for c in enough for i in c]
    assert sorted(served) == list(range(12)) and all(set(c) & set(range(6)) for c in enough)


def test_batches_are_reproducible_for_a_seed_and_change_per_epoch() -> None:
    frame = manifest()
    a = PairedBatchSampler(batch_size=8, frame=frame, seed=3)
    assert list(a) == list(PairedBatchSampler(batch_size=8, frame=frame, seed=3))
    assert list(a) != list(PairedBatchSampler(batch_size=8, frame=frame, seed=4))
    first = list(a)
    a.sampler.set_epoch(1)  # what Lightning calls each epoch
    assert list(a) != first
    assert_paired(frame, list(a), 8)


def test_ranks_get_equally_many_paired_batches_covering_the_sample() -> None:
    frame = manifest(n_originals=7)
    per_rank = [
        list(
            PairedBatchSampler(
                SimpleNamespace(num_replicas=2, rank=rank, epoch=0),
                batch_size=6,
                frame=frame,
                seed=0,
            )
        )
        for rank in (0, 1)
    ]
    assert len(per_rank[0]) == len(per_rank[1])
    for batches in per_rank:
        assert_paired(frame, batches, 6)
    assert {i for batches in per_rank for b in batches for i in b} == set(range(len(frame)))


def write_faces_dir(root: Path, frame: pd.DataFrame) -> Path:
    """A faces folder (crops + manifest.csv) as preprocessing leaves it, all in train."""
    (root / "faces").mkdir(parents=True)
    paths = []
    for i in range(len(frame)):
        paths.append(f"faces/{i:04d}.png")
        cv2.imwrite(str(root / paths[-1]), np.full((16, 16, 3), i % 255, np.uint8))
    frame.assign(face_path=paths, split="train", group=frame["video_id"]).to_csv(
        root / "manifest.csv", index=False
    )
    return root


def test_datamodule_option_serves_paired_batches(tmp_path: Path) -> None:
    frame = manifest()
    faces_dir = write_faces_dir(tmp_path, frame)
    torch.manual_seed(5)
    datamodule = FaceDataModule(
        faces_dir, Augmentation(16), batch_size=8, num_workers=0, pair_with_original=True
    )
    loader = datamodule.train_dataloader()
    assert isinstance(loader.batch_sampler, PairedBatchSampler)
    batches = [batch["index"].tolist() for batch in loader]
    assert_paired(datamodule.dataset("train").frame, batches, 8)
    plain = FaceDataModule(faces_dir, Augmentation(16), batch_size=8, num_workers=0)
    assert not isinstance(plain.train_dataloader().batch_sampler, PairedBatchSampler)


def test_pairing_refuses_an_augmentation_that_replaces_the_train_faces(tmp_path: Path) -> None:
    class Replacing(Augmentation):
        def wrap_train_dataset(self, dataset):
            return torch.utils.data.TensorDataset(torch.zeros(2))

    faces_dir = write_faces_dir(tmp_path, manifest(n_originals=1))
    datamodule = FaceDataModule(faces_dir, Replacing(16), num_workers=0, pair_with_original=True)
    with pytest.raises(ValueError, match="pair_with_original.*Replacing.*TensorDataset"):
        datamodule.train_dataloader()


def test_lightning_ddp_injection_keeps_families_whole_per_rank() -> None:
    """Lightning's own re-instantiation path under DDP (what ``Trainer`` does per rank)."""
    from lightning_fabric.utilities.data import _replace_dunder_methods
    from pytorch_lightning.utilities.data import _update_dataloader
    from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

    frame = manifest()
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = DataLoader(
            list(range(len(frame))),
            batch_sampler=PairedBatchSampler(batch_size=8, frame=frame, seed=0),
        )
    per_rank = []
    for rank in (0, 1):
        injected = DistributedSampler(loader.dataset, num_replicas=2, rank=rank)
        ranked = _update_dataloader(loader, injected)
        assert ranked.batch_sampler.sampler is injected
        per_rank.append([batch.tolist() for batch in ranked])
        assert_paired(frame, per_rank[-1], 8)
    assert len(per_rank[0]) == len(per_rank[1])
    assert {i for batches in per_rank for b in batches for i in b} == set(range(len(frame)))
