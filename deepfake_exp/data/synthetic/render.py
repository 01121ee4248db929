"""One video's frames: its scene, with each person's sprite fixed or swapped frame by frame."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepfake_exp.data.synthetic.canvas import interleave, over
from deepfake_exp.data.synthetic.config import SyntheticConfig
from deepfake_exp.data.synthetic.identities import Identity
from deepfake_exp.data.synthetic.painter import render_parts
from deepfake_exp.data.synthetic.plan import VideoPlan
from deepfake_exp.data.synthetic.scene import Scene
from deepfake_exp.data.synthetic.swap import FaceSwap, swap_style


def render_video(
    config: SyntheticConfig, plan: VideoPlan, identities: list[Identity]
) -> list[np.ndarray]:
    """BGR frames of one video. A fake replays its original's scene, motion, lighting and noise,
    so the two differ only where the face was swapped."""
    scene = Scene(config, plan.identity, plan.video)
    streams = [
        _sprite_stream(config, plan, identities, person, shown, swapped_in)
        for person, (shown, swapped_in) in enumerate(plan.people)
    ]
    return [
        scene.frame([next_sprite() for next_sprite in streams], i) for i in range(config.num_frames)
    ]


def _sprite_stream(
    config: SyntheticConfig,
    plan: VideoPlan,
    identities: list[Identity],
    person: int,
    shown: int,
    swapped_in: int | None,
) -> Callable[[], np.ndarray]:
    """Interleaved sprite of one person for each next frame: fixed, or swapped frame by frame."""
    ident = identities[shown]
    if swapped_in is None:
        sprite = interleave(over(*render_parts(ident, config.sprite_scale).values()))
        return lambda: sprite
    key = (plan.identity, plan.video, plan.fake or 0) + ((person,) if person else ())
    style = swap_style(config, plan.method or "blend")
    swap = FaceSwap(config, ident, identities[swapped_in], key, style)
    return lambda: interleave(swap.next_sprite())
