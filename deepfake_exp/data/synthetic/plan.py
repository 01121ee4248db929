"""The video plan: which files a set holds, who is in each, and what ``metadata.json`` says.

Computed without rendering a frame, so split and grouping tests read a set's structure in
milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deepfake_exp.data.splits import SPLITS
from deepfake_exp.data.synthetic.config import SyntheticConfig, rng_stream
from deepfake_exp.data.synthetic.identities import (
    SKIN_TONES,
    Identity,
    draw_identities,
    draw_identity,
)
from deepfake_exp.data.synthetic.scene import draw_motion


@dataclass(frozen=True)
class VideoPlan:
    """One file to write: a REAL video of ``identity`` or a FAKE made from one.

    A two-person video also shows ``companion``; its fake swaps ``companion_source``'s face
    onto the companion too when that is set (``swap_people: all``). A fake names the
    ``method`` it was made with.
    """

    name: str
    identity: int
    video: int
    fake: int | None = None
    source: int | None = None
    companion: int | None = None
    companion_source: int | None = None
    method: str | None = None

    @property
    def original(self) -> str | None:
        return None if self.fake is None else real_name(self.identity, self.video)

    @property
    def people(self) -> list[tuple[int, int | None]]:
        """``(person, face swapped in or None)`` of everyone shown, the target first."""
        people = [(self.identity, self.source)]
        if self.companion is not None:
            people.append((self.companion, self.companion_source))
        return people


def real_name(identity: int, video: int) -> str:
    """File name of a REAL video; its fakes add ``_f<k>`` before the extension."""
    return f"id_{identity:03d}_r{video}.mp4"


def swap_pools(num_identities: int) -> list[list[int]]:
    """Identities whose faces are swapped only into each other's videos: pairs of one skin tone.

    A swap links its target and source, and an identity-disjoint split keeps linked people
    together; drawing sources inside small pools keeps those groups small (two people, three
    at most), so the set splits cleanly at any size. Same-tone pairs (DFDC paired look-alikes)
    keep the colour artefact under ``color_mismatch``'s control. A tone with one identity
    (small sets) pools with the other lone tones, nearest first.
    """
    tones = len(SKIN_TONES)

    def pairs(members: list[int]) -> list[list[int]]:
        chunks = [members[k : k + 2] for k in range(0, len(members), 2)]
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            last = chunks.pop()
            chunks[-1] += last
        return chunks

    pools, lone = [], []
    for tone in range(tones):
        members = list(range(tone, num_identities, tones))
        if len(members) == 1:
            lone += members
        elif members:
            pools += pairs(members)
    if lone:
        lone_pools = pairs(lone)
        if len(lone_pools[-1]) == 1 and pools:
            pools[-1] += lone_pools.pop()
        pools += lone_pools
    return pools


def _pick_other(config: SyntheticConfig, pool: list[int], person: int, *key: int) -> int:
    """Another person of ``person``'s swap pool, drawn by seed from the stream ``key``."""
    others = [i for i in pool if i != person]
    return others[int(rng_stream(config.seed, *key).integers(len(others)))]


def plan_videos(
    config: SyntheticConfig, identities: list[Identity] | None = None
) -> list[VideoPlan]:
    """Every video of the dataset: each REAL video followed by the fakes made from it.

    A fake's source is drawn from its target's ``swap_pools`` pool, which depends on the
    identity index only; ``identities`` is accepted for callers that already hold them.
    """
    del identities
    pool_of = {i: pool for pool in swap_pools(config.num_identities) for i in pool}
    two = config.people_per_video == 2
    plans = []
    for i in range(config.num_identities):
        for v in range(config.videos_per_identity):
            companion = _pick_other(config, pool_of[i], i, 8, i, v) if two else None
            plans.append(VideoPlan(real_name(i, v), i, v, companion=companion))
            for m, method in enumerate(config.generator_methods):
                for f in range(config.fakes_per_real):
                    k = m * config.fakes_per_real + f  # fakes of all methods numbered in turn
                    source = _pick_other(config, pool_of[i], i, 4, i, v, k)
                    companion_source = None
                    if companion is not None and config.swap_people == "all":
                        companion_source = _pick_other(config, pool_of[i], companion, 9, i, v, k)
                    name = f"id_{i:03d}_r{v}_f{k}.mp4"
                    plans.append(
                        VideoPlan(name, i, v, k, source, companion, companion_source, method)
                    )
    return plans


def official_splits(config: SyntheticConfig) -> dict[int, str]:
    """Identity -> the split its swap pool is listed in, as FaceForensics++ lists its pairs.

    Without ``official_split`` every video says ``train`` (DFDC's training parts do). With
    it, pools are shuffled by seed and cut by the ratios, each split with a positive ratio
    getting at least one pool while there are enough; a pool (with its companions and swap
    sources) is in one split, so the lists are identity-disjoint, and every subset of
    methods read from the set has the same lists.
    """
    pools = swap_pools(config.num_identities)
    if config.official_split is None:
        return {i: "train" for pool in pools for i in pool}
    order = rng_stream(config.seed, 10).permutation(len(pools))
    ratios = np.asarray(config.official_split, float) / sum(config.official_split)
    counts = [round(r * len(pools)) for r in ratios]
    counts = [max(c, 1) if r > 0 else 0 for c, r in zip(counts, ratios, strict=True)]
    counts[0] = len(pools) - sum(counts[1:])  # train takes the rest
    if counts[0] < 0 or (ratios[0] > 0 and counts[0] == 0):
        raise ValueError(
            f"official_split {list(config.official_split)}: {len(pools)} swap pools cannot give "
            "every split with a positive ratio a pool; use more identities"
        )
    names = [name for name, n in zip(SPLITS, counts, strict=True) for _ in range(n)]
    return {i: names[rank] for rank, k in enumerate(order) for i in pools[k]}


def metadata_entry(plan: VideoPlan, identities: list[Identity], split: str = "train") -> dict:
    """The video's ``metadata.json`` entry: a fake names its target's ``identity`` and the
    ``source_identity`` swapped in, so a split can keep both people on one side."""
    ident = identities[plan.identity]
    entry = {
        "label": "REAL" if plan.fake is None else "FAKE",
        "original": plan.original,
        "split": split,
        "identity": ident.name,
        "skin_tone": ident.skin_tone,
    }
    if plan.source is not None:
        entry["source_identity"] = identities[plan.source].name
        entry["method"] = plan.method
    if plan.companion is not None:
        entry["companion_identity"] = identities[plan.companion].name
    if plan.companion_source is not None:
        entry["companion_source_identity"] = identities[plan.companion_source].name
    return entry


def dataset_metadata(config: SyntheticConfig) -> dict[str, dict]:
    """``metadata.json``'s content for ``config``, computed without rendering a frame.

    Split and grouping tests read it to check a set's splits in milliseconds.
    """
    identities = draw_identities(config)
    split_of = official_splits(config)
    return {
        p.name: metadata_entry(p, identities, split_of[p.identity])
        for p in plan_videos(config, identities)
    }


def person_boxes(config: SyntheticConfig, name: str) -> np.ndarray:
    """Ground-truth face boxes ``(people, num_frames, 4)`` as ``x1, y1, x2, y2`` in pixels.

    Person 0 is the target (the face a fake swaps), person 1 the companion of a two-person
    video. A box bounds the face oval (forehead to chin, cheek to cheek) of the person's own
    geometry, which a swap keeps; tests and benchmarks use it to check that a detector found
    *the* face rather than background clutter, and which person a track follows.
    """
    plan = next((p for p in plan_videos(config) if p.name == name), None)
    if plan is None:
        raise KeyError(f"no video named {name!r} in this synthetic config")
    boxes = np.zeros((len(plan.people), config.num_frames, 4), np.float32)
    for person, (index, _) in enumerate(plan.people):
        ident = draw_identity(index, config.seed)
        motion = draw_motion(config, plan.identity, plan.video, person)
        a, b = ident.half_width, ident.half_height
        for i in range(config.num_frames):
            x, y, angle, scale = motion.pose(i / config.fps)
            th = math.radians(angle)
            hx = scale * math.hypot(a * math.cos(th), b * math.sin(th))
            hy = scale * math.hypot(a * math.sin(th), b * math.cos(th))
            boxes[person, i] = (x - hx, y - hy, x + hx, y + hy)
    return boxes


def face_boxes(config: SyntheticConfig, name: str) -> np.ndarray:
    """Ground-truth face boxes ``(num_frames, 4)`` of the target (``person_boxes``' person 0)."""
    return person_boxes(config, name)[0]
