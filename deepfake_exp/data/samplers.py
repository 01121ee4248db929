"""Train batches that hold each fake beside frames of its own original (issue 16.4).

A fake differs from its original only inside the swapped face; seen in the same batch, the
pair leaves the network nothing to learn but the manipulation (identity, pose, lighting and
background cancel), the pairing GenD found important. :class:`PairedBatchSampler` groups the
training sample into *families* (an original video and the fakes made from it, through the
manifest's ``original`` column) and packs each family, cut into chunks that each hold at
least one original frame, whole into a batch.

The class balance is the training sample's (per-class frame counts chosen at preprocessing):
every face is served once per epoch; only when a family has fewer original frames than it
needs chunks is an original frame served again. Fakes whose original is not in the sample
(and originals without fakes) are packed alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from torch.utils.data import BatchSampler

Family = tuple[list[int], list[int]]  # (original faces, fake faces), positions in the frame


def families(frame: pd.DataFrame) -> list[Family]:
    """Faces (positions in ``frame``) grouped by original video: ``(originals, fakes)``.

    ``frame`` holds ``video_id``, ``label`` and ``original`` (a fake's original ``video_id``;
    empty for real videos). A fake whose original has no face here forms a family without
    originals; so does a manifest without the ``original`` column (every fake alone).
    """
    video = frame["video_id"].astype(str).to_numpy()
    fake = frame["label"].to_numpy() == 1
    original = (
        frame["original"].fillna("").astype(str).to_numpy()
        if "original" in frame
        else np.full(len(frame), "")
    )
    key = np.where(fake & (original != ""), original, video)
    key = np.where(fake & (original == ""), "\0" + video, key)  # orphan fakes: own family
    grouped: dict[str, Family] = {}
    for position, (k, is_fake) in enumerate(zip(key, fake, strict=True)):
        grouped.setdefault(k, ([], []))[1 if is_fake else 0].append(position)
    return list(grouped.values())


def _deal(originals: list[int], fakes: list[int], count: int) -> list[list[int]]:
    """``count`` chunks, originals and fakes dealt round-robin; originals cycle if too few."""
    if len(originals) < count:
        originals = [originals[i % len(originals)] for i in range(count)]
    chunks: list[list[int]] = [[] for _ in range(count)]
    for part in (originals, fakes):
        for i, face in enumerate(part):
            chunks[i % count].append(face)
    return chunks


def family_chunks(family: Family, max_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Cut a family into chunks of at most ``max_size`` faces, each with an original frame.

    As few chunks as fit; when there are fewer original faces than chunks, original faces
    are served again (one per chunk). A family without originals or fakes is cut plainly.
    """
    originals, fakes = ([int(i) for i in rng.permutation(part)] for part in family)
    if not originals or not fakes:
        faces = originals or fakes
        return [faces[i : i + max_size] for i in range(0, len(faces), max_size)]
    count = math.ceil((len(originals) + len(fakes)) / max_size)
    chunks = _deal(originals, fakes, count)
    while max(map(len, chunks)) > max_size:  # round-robin remainders overflow: one more chunk
        count += 1
        chunks = _deal(originals, fakes, count)
    return chunks


def pack(chunks: list[list[int]], batch_size: int) -> list[list[int]]:
    """Chunks, in order, into batches of at most ``batch_size`` faces; a chunk never splits."""
    batches: list[list[int]] = []
    current: list[int] = []
    for chunk in chunks:
        if current and len(current) + len(chunk) > batch_size:
            batches.append(current)
            current = []
        current = current + chunk
    if current:
        batches.append(current)
    return batches


class _Epoch:
    """Holds the epoch Lightning sets (``set_epoch``) when no distributed sampler is injected."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class PairedBatchSampler(BatchSampler):
    """Batches of whole family chunks: every fake has frames of its original in its batch.

    Args:
        sampler: Where the epoch (``epoch``, set by Lightning's ``set_epoch``) and, under DDP,
            ``num_replicas`` and ``rank`` come from: Lightning injects its
            ``DistributedSampler`` here; its index order is not used, because whole families
            must stay on one rank. ``None``: one process.
        batch_size: Most faces per batch.
        drop_last: Accepted for Lightning's re-instantiation; batches are never dropped.
        frame: The training faces (``video_id``, ``label``, ``original``), in dataset order.
        seed: Shuffling seed; the same seed and epoch give the same batches.
        chunk_size: Most faces of one family per chunk (default ``batch_size // 4``, at
            least 2): small chunks mix several families per batch and waste little space.
    """

    def __init__(
        self,
        sampler: Any = None,
        batch_size: int = 32,
        drop_last: bool = False,
        *,
        frame: pd.DataFrame,
        seed: int = 0,
        chunk_size: int | None = None,
    ) -> None:
        if batch_size < 2:
            raise ValueError(f"pairing needs batch_size >= 2, got {batch_size}")
        self.sampler = _Epoch() if sampler is None else sampler
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.frame = frame
        self.seed = seed
        self.chunk_size = min(batch_size, chunk_size or max(2, batch_size // 4))
        self.families = families(frame)

    def _batches(self) -> list[list[int]]:
        """This rank's batches of this epoch (ranks get equally many; short ones repeat)."""
        epoch = int(getattr(self.sampler, "epoch", 0))
        rng = np.random.default_rng([self.seed, epoch])
        chunks = [
            c for family in self.families for c in family_chunks(family, self.chunk_size, rng)
        ]
        batches = pack([chunks[i] for i in rng.permutation(len(chunks))], self.batch_size)
        world = int(getattr(self.sampler, "num_replicas", 1))
        rank = int(getattr(self.sampler, "rank", 0))
        per_rank = math.ceil(len(batches) / world)
        padded = (batches * math.ceil(per_rank * world / max(1, len(batches))))[: per_rank * world]
        return padded[rank::world]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()

    def __len__(self) -> int:
        return len(self._batches())
