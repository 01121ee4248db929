"""Embedded synthetic DFDC-style dataset: procedurally drawn faces, real and face-swapped videos.

Why it exists: the pipeline needs data that costs nothing to obtain, is tiny in CI and large in
a benchmark, and still has the structure the studies rely on: identities (for identity-disjoint
splits), fakes made from a named original, face-swap artefacts (another person's inner face
blended in through a blurred, slightly colour-mismatched mask), and a skin-tone range wide
enough to measure detector bias per bucket, as the York study did on DFDC.

Speed comes from rendering each identity once as a shaded RGBA sprite; a frame only warps the
sprite (rotate / scale / translate) and composites it over a cluttered background.

The output is DFDC's layout: ``<root>/*.mp4`` plus ``<root>/metadata.json`` mapping
``name.mp4 -> {label, original, split, identity, skin_tone[, source_identity]}``. Swap sources
are drawn within small same-tone pools (``swap_pools``), so grouping by target *and* source
identity still leaves many small groups and the default sets split identity-disjointly.

One module per job, in the order a set is made: ``config`` (what it is made from, seeded
streams), ``identities`` (palettes and people), ``canvas`` and ``painter`` (the sprite),
``scene`` (room, motion, lighting), ``plan`` (files and metadata), ``swap``, ``render`` (one
video's frames) and ``writer`` (files on disk). This package re-exports their public names.
"""

from deepfake_exp.data.synthetic.config import (
    ADDED_FIELDS,
    GENERATOR_VERSION,
    SWAP_PEOPLE,
    SyntheticConfig,
)
from deepfake_exp.data.synthetic.identities import (
    CX,
    CY,
    EYE_COLORS,
    FACE_HEIGHT,
    HAIR_COLORS,
    NOMINAL_H,
    NOMINAL_W,
    SKIN_TONES,
    Identity,
    draw_identities,
    draw_identity,
    skin_tone_buckets,
)
from deepfake_exp.data.synthetic.painter import SPRITE_PARTS, inner_face_mask, render_identity
from deepfake_exp.data.synthetic.plan import (
    VideoPlan,
    dataset_metadata,
    face_boxes,
    metadata_entry,
    person_boxes,
    plan_videos,
    real_name,
    swap_pools,
)
from deepfake_exp.data.synthetic.render import render_video
from deepfake_exp.data.synthetic.scene import Motion, draw_motion, render_background, target_side
from deepfake_exp.data.synthetic.writer import (
    GENERATOR_FILE,
    METADATA_FILE,
    config_record,
    generate_dataset,
    generator_record,
    is_current,
)

__all__ = [
    "ADDED_FIELDS",
    "CX",
    "CY",
    "EYE_COLORS",
    "FACE_HEIGHT",
    "GENERATOR_FILE",
    "GENERATOR_VERSION",
    "HAIR_COLORS",
    "METADATA_FILE",
    "NOMINAL_H",
    "NOMINAL_W",
    "SKIN_TONES",
    "SPRITE_PARTS",
    "SWAP_PEOPLE",
    "Identity",
    "Motion",
    "SyntheticConfig",
    "VideoPlan",
    "config_record",
    "dataset_metadata",
    "draw_identities",
    "draw_identity",
    "draw_motion",
    "face_boxes",
    "generate_dataset",
    "generator_record",
    "inner_face_mask",
    "is_current",
    "metadata_entry",
    "person_boxes",
    "plan_videos",
    "real_name",
    "render_background",
    "render_identity",
    "render_video",
    "skin_tone_buckets",
    "swap_pools",
    "target_side",
]
