"""The face swap: another person's inner face pasted into a target's sprite, frame by frame.

A *method* names how the face is pasted, as FaceForensics++ names its manipulations: each
leaves one kind of trace (``METHODS``), so training on some and testing on another
(leave-one-method-out) measures generalization to an unseen artefact on CPU. ``blend`` is
the config's own mix of every trace, at the strengths the config sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np

from deepfake_exp.data.synthetic.canvas import interleave, over, planar
from deepfake_exp.data.synthetic.config import SyntheticConfig, rng_stream
from deepfake_exp.data.synthetic.identities import CX, CY, Identity
from deepfake_exp.data.synthetic.painter import inner_face_mask, render_parts


@dataclass(frozen=True)
class SwapStyle:
    """How a face is pasted; the fields mean what ``SyntheticConfig``'s of the same name do."""

    mask_blur: float
    color_mismatch: float
    blend_ratio: float
    face_blur: float
    swap_jitter: float
    mask_shape: str = "ellipse"

    @classmethod
    def of(cls, config: SyntheticConfig) -> SwapStyle:
        """The config's own style (method ``blend``)."""
        return cls(
            config.mask_blur,
            config.color_mismatch,
            config.blend_ratio,
            config.face_blur,
            config.swap_jitter,
        )


def _one_trace(**trace: float | str) -> Callable[[SyntheticConfig], SwapStyle]:
    """A method leaving only ``trace``: colour matched, sharp source face, unless it says."""
    clean = {"color_mismatch": 0.0, "face_blur": 0.0}
    return lambda config: replace(SwapStyle.of(config), **{**clean, **trace})


# name -> style of a config. Blend ratio and jitter are the config's throughout.
METHODS: dict[str, Callable[[SyntheticConfig], SwapStyle]] = {
    "blend": SwapStyle.of,  # the config's mix: soft oval seam, partial colour, soft face
    "hard_paste": _one_trace(mask_blur=0.0),  # a sharp oval seam only
    "colour_shift": _one_trace(mask_blur=8.0, color_mismatch=1.0),  # the source's own colour
    "soft_face": _one_trace(mask_blur=8.0, face_blur=2.0),  # a low-resolution synthesised face
    "box_mask": _one_trace(mask_blur=0.5, mask_shape="box"),  # straight seams across the cheeks
}


def swap_style(config: SyntheticConfig, method: str) -> SwapStyle:
    """The style of ``method`` under ``config``."""
    if method not in METHODS:
        raise ValueError(f"unknown synthetic method {method!r}: use one of {sorted(METHODS)}")
    return METHODS[method](config)


class FaceSwap:
    """Pastes a source's inner face into the target's sprite frame by frame, as swap tools do.

    The source face is scaled onto the target's face geometry (landmark alignment), blurred
    (synthesis resolution), colour-corrected towards the target's skin only partly
    (``color_mismatch``), jittered per frame and blended through the target's blurred
    inner-face mask; the target's hair, beard and glasses stay in front (occlusion-aware).
    ``style`` (default: the config's own, method ``blend``) sets each of those.
    """

    def __init__(
        self,
        config: SyntheticConfig,
        target: Identity,
        source: Identity,
        key: tuple[int, ...],
        style: SwapStyle | None = None,
    ) -> None:
        style = style or SwapStyle.of(config)
        k = config.sprite_scale
        self.rng = rng_stream(config.seed, 5, *key)
        parts = render_parts(target, k)
        self.back, self.face = parts["back"], parts["face"]
        self.front = over(parts["beard"], parts["front"], parts["glasses"])
        source_face = interleave(render_parts(source, k)["face"])
        if style.face_blur > 0:
            source_face = cv2.GaussianBlur(source_face, (0, 0), style.face_blur * k)
        self.source = source_face
        sx, sy = target.half_width / source.half_width, target.half_height / source.half_height
        cx, cy = (CX + 0.5) * k - 0.5, (CY + 0.5) * k - 0.5
        mask = inner_face_mask(target, k, style.mask_blur, style.mask_shape)
        # Only the mask's bounding box changes from frame to frame.
        x, y, w, h = cv2.boundingRect((mask > 1e-3).astype(np.uint8))
        self.box = (slice(y, y + h), slice(x, x + w))
        self.size = (w, h)
        self.align = np.array([[sx, 0.0, cx - sx * cx - x], [0.0, sy, cy - sy * cy - y]])
        self.mask = mask[self.box] * style.blend_ratio
        self.unswapped = over(self.back, self.face, self.front)
        self.jitter = style.swap_jitter * k
        correction = (np.asarray(target.skin) / np.asarray(source.skin)) ** (
            1.0 - style.color_mismatch
        )
        tint = 1.0 + 0.2 * style.color_mismatch * self.rng.uniform(-1.0, 1.0, 3)
        self.gain = planar(correction * tint)

    def next_sprite(self) -> np.ndarray:
        """Planar premultiplied sprite of the next frame."""
        m = self.align.copy()
        if self.jitter > 0:
            m[:, 2] += self.rng.normal(0.0, self.jitter, 2)
        src = np.stack(cv2.split(cv2.warpAffine(self.source, m, self.size, flags=cv2.INTER_LINEAR)))
        straight = np.clip(src[:3] / np.maximum(src[3], 1e-3) * self.gain, 0.0, 1.0)
        ys, xs = self.box
        face = self.face[:, ys, xs].copy()
        face[:3] += (straight * face[3] - face[:3]) * (self.mask * src[3])
        sprite = self.unswapped.copy()
        sprite[:, ys, xs] = over(self.back[:, ys, xs], face, self.front[:, ys, xs])
        return sprite
