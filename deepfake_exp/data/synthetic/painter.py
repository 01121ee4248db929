"""The sprite painter: a shaded face, hair, neck and shoulders of one identity.

Each identity is painted once as planar premultiplied layers (``SPRITE_PARTS``, back to
front); frames only warp the result, and a swap replaces the ``face`` layer.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from deepfake_exp.data.synthetic.canvas import Canvas, Layers, Pen, lambert, over, planar
from deepfake_exp.data.synthetic.identities import (
    CX,
    CY,
    EYE_COLORS,
    HAIR_COLORS,
    NOMINAL_H,
    Identity,
)


def _face_oval(c: Canvas, ident: Identity) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face mask and its normalised coordinates; the jaw narrows the lower half."""
    a, b = ident.half_width, ident.half_height
    v = (c.yy - CY) / b
    u = (c.xx - CX) / (a * (1.0 - ident.jaw * 0.35 * np.clip(v, 0.0, 1.0) ** 2))
    mask = c.step((1.0 - np.sqrt(u * u + v * v)) * min(a, b) * 0.9, soft=1.2)
    return mask, u, v


def _hair_rgb(c: Canvas, ident: Identity) -> np.ndarray:
    if ident.hair_style == "curly":
        texture = np.tanh(1.5 * c.noise(11, 1.6, 1.6))
    else:
        texture = 0.8 * c.noise(12, 0.7, 5.0) + 0.4 * c.noise(13, 3.0, 3.0)
    shade = 0.55 + 0.5 * lambert((c.xx - CX) / 75.0, (c.yy - CY + 30.0) / 95.0, ident.light)
    return (
        planar(HAIR_COLORS[ident.hair_color]) * (np.clip(0.85 + 0.22 * texture, 0.45, 1.4) * shade)
        + 0.02
    )


def _paint_back(c: Canvas, layers: Layers, ident: Identity, hair: np.ndarray) -> None:
    """Everything behind the face: back hair, ears, neck (with the jaw's shadow), shoulders
    fading out towards the sprite's bottom edge."""
    a, b = ident.half_width, ident.half_height
    if ident.hair_style == "long":
        top = c.ellipse(CX, CY - 0.15 * b, a * 1.22, b * 1.05)
        body = c.ellipse(CX, CY + 0.9 * b, a * 1.25, b * 1.3) * c.step(c.yy - CY + 0.1 * b)
        layers.paint(np.maximum(top, body), hair)
    elif ident.hair_style == "curly":
        layers.paint(c.ellipse(CX, CY - 0.3 * b, a * 1.45, b * 1.05, soft=2.5), hair)
    elif ident.hair_style == "bun":
        layers.paint(c.ellipse(CX, CY - 1.12 * b, a * 0.45, b * 0.3, soft=1.5), hair)
    skin = planar(ident.skin)
    fade = np.clip((NOMINAL_H - 2.0 - c.yy) / 40.0, 0.0, 1.0)
    dx = (c.xx - CX) / (0.5 * a)
    neck = c.step((1.0 - np.abs(dx)) * 0.5 * a) * c.step(c.yy - (CY + 0.4 * b))
    neck *= c.step(CY + 1.5 * b - c.yy)
    shade = 0.55 + 0.35 * np.sqrt(np.clip(1.0 - dx * dx, 0.0, 1.0))
    shade *= 1.0 - 0.5 * np.exp(-(((c.yy - (CY + 1.0 * b)) / (0.14 * b)) ** 2))
    layers.paint(neck * fade, skin * shade)
    shoulders = c.ellipse(CX, CY + 1.45 * b + 0.85 * a, 2.05 * a, 1.1 * a)
    neckline = c.ellipse(CX, CY + 1.38 * b, 0.55 * a, 0.22 * b, soft=1.5)
    cloth_shade = 0.72 + 0.04 * c.noise(21, 2.0, 2.0) + 0.2 * (1.0 - np.abs(c.xx - CX) / 128.0)
    layers.paint(shoulders * (1.0 - neckline) * fade, planar(ident.clothes_color) * cloth_shade)
    for side in (-1.0, 1.0):
        ex, ey = CX + side * a * 0.97, ident.eye_y + 0.1 * b
        inner = c.ellipse(ex + side * 0.02 * a, ey, 0.08 * a, 0.15 * b, soft=2.0)
        layers.paint(c.ellipse(ex, ey, 0.17 * a, 0.25 * b), skin * (0.72 - 0.22 * inner))


def _face_rgb(
    c: Canvas, ident: Identity, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Skin colour with 3-D shading (ellipsoid light, sockets, nose, cheeks, lips, chin),
    specular sheen and texture; returns (rgb, shade) so features can follow the light."""
    a, b = ident.half_width, ident.half_height
    ey, ny, my, nw = ident.eye_y, ident.nose_y, ident.mouth_y, ident.nose_width
    shade = 0.42 + 0.64 * lambert(u, v * 0.9, ident.light)
    sheen = 0.06 * c.blob(CX, CY - 0.5 * b, 0.35 * a, 0.14 * b)
    for side in (-1.0, 1.0):
        ex = CX + side * ident.eye_spacing * a
        shade *= 1.0 - 0.22 * c.blob(ex, ey + 0.01 * b, 0.27 * a, 0.13 * b)
        shade *= 1.0 + 0.07 * c.blob(ex, ey - 0.24 * b, 0.25 * a, 0.05 * b)
        shade *= 1.0 + 0.06 * c.blob(CX + side * 0.46 * a, CY + 0.16 * b, 0.18 * a, 0.13 * b)
        shade *= 1.0 - 0.2 * c.blob(CX + side * 0.13 * a * nw, CY + 0.14 * b, 0.045 * a, 0.15 * b)
        shade *= 1.0 - 0.12 * c.blob(CX + side * 0.3 * a, my - 0.1 * b, 0.05 * a, 0.12 * b)
        sheen += 0.05 * c.blob(CX + side * 0.42 * a, CY + 0.08 * b, 0.12 * a, 0.06 * b)
    shade *= 1.0 + 0.12 * c.blob(CX, CY + 0.08 * b, 0.045 * a, 0.2 * b)
    shade *= 1.0 + 0.12 * c.blob(CX, ny - 0.03 * b, 0.07 * a * nw, 0.045 * b)
    shade *= 1.0 - 0.3 * c.blob(CX, ny + 0.07 * b, 0.14 * a * nw, 0.03 * b)
    shade *= 1.0 - 0.2 * c.blob(CX, my + 0.13 * b, 0.15 * a, 0.035 * b)
    shade *= 1.0 + 0.07 * c.blob(CX, CY + 0.84 * b, 0.16 * a, 0.06 * b)
    sheen += 0.07 * c.blob(CX, CY + 0.12 * b, 0.035 * a, 0.16 * b)
    sheen += 0.06 * c.blob(CX, ny - 0.04 * b, 0.05 * a, 0.03 * b)
    shade *= 1.0 + 0.012 * c.noise(31, 0.6, 0.6) + 0.025 * c.noise(32, 7.0, 7.0)
    # Light scattered under the skin reddens the shadows a little.
    rgb = planar(ident.skin) * shade * (1.0 - planar((0.0, 0.07, 0.12)) * (1.0 - shade))
    blush = 0.04 * sum(c.blob(CX + s * 0.45 * a, CY + 0.2 * b, 12.0, 9.0) for s in (-1.0, 1.0))
    return rgb + blush * planar((0.6, -0.2, -0.2)) + 0.9 * sheen, shade


def _paint_nose_and_mouth(c: Canvas, layers: Layers, ident: Identity, shade: np.ndarray) -> None:
    a, b = ident.half_width, ident.half_height
    skin = planar(ident.skin)
    ny, my, nw = ident.nose_y, ident.mouth_y, ident.nose_width
    for side in (-1.0, 1.0):
        nostril = c.ellipse(
            CX + side * 0.085 * a * nw, ny + 0.03 * b, 0.05 * a * nw, 0.022 * b, soft=1.5
        )
        layers.paint(nostril * 0.9, skin * 0.25)

    def alae(mask: np.ndarray, pen: Pen) -> None:
        for side, (start, end) in ((-1.0, (80, 250)), (1.0, (-70, 100))):
            centre = pen.pt(CX + side * 0.14 * a * nw, ny)
            axes = pen.size(0.06 * a * nw, 0.05 * b)
            cv2.ellipse(mask, centre, axes, 0, start, end, 255, pen.th(1.2), cv2.LINE_AA, pen.shift)

    layers.paint(c.draw(alae, blur=0.6) * 0.55, skin * 0.4)

    lip = skin * planar((0.80, 0.55, 0.56)) + planar((0.12, 0.02, 0.04))
    mw, lf = ident.mouth_width * a, ident.lip_fullness
    bow = [
        (-1.0, 0.0),
        (-0.45, 0.075),
        (-0.18, 0.095),
        (0.0, 0.07),
        (0.18, 0.095),
        (0.45, 0.075),
        (1.0, 0.0),
    ]

    def upper(mask: np.ndarray, pen: Pen) -> None:
        pts = np.array([pen.pt(CX + x * mw, my - y * b * lf) for x, y in bow], np.int32)
        cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA, pen.shift)

    layers.paint(c.draw(upper, blur=0.5), lip * 0.75 * shade)
    lower = c.ellipse(CX, my, 0.88 * mw, 0.1 * b * lf) * c.step(c.yy - my)
    gloss = 0.2 * c.blob(CX, my + 0.045 * b * lf, 0.3 * mw, 0.02 * b)
    layers.paint(lower, lip * (shade + gloss))

    def line(mask: np.ndarray, pen: Pen) -> None:
        ts = np.linspace(-1.0, 1.0, 15)
        pts = np.array(
            [pen.pt(CX + t * mw, my + 0.012 * b - 0.022 * b * t * t) for t in ts], np.int32
        )
        cv2.polylines(mask, [pts], False, 255, pen.th(1.6), cv2.LINE_AA, pen.shift)

    layers.paint(c.draw(line, blur=0.4), lip * 0.3)


def _paint_eyes(c: Canvas, layers: Layers, ident: Identity, shade: np.ndarray) -> None:
    """Sclera, iris, pupil, catch-light, lids, lashes and crease: what makes a face a face."""
    a, b = ident.half_width, ident.half_height
    ey, ew, eh = ident.eye_y, ident.eye_width * a, ident.eye_height * b
    for side in (-1.0, 1.0):
        ex = CX + side * ident.eye_spacing * a
        sclera = c.ellipse(ex, ey, ew, np.where(c.yy < ey, eh * 1.15, eh * 0.8))
        corner = np.clip(np.abs(c.xx - ex) / ew, 0.0, 1.0) ** 2
        lid_shadow = np.clip((ey - c.yy) / (1.2 * eh), 0.0, 1.0)
        eye_shade = (0.8 + 0.16 * shade) * (1.0 - 0.25 * corner) * (1.0 - 0.3 * lid_shadow)
        layers.paint(sclera, planar((0.94, 0.91, 0.88)) * eye_shade)
        ix, r = ex + ident.gaze * ew, eh * 1.1
        rr = np.sqrt((c.xx - ix) ** 2 + (c.yy - ey) ** 2) / r
        # A dark limbal ring and a large pupil keep the eye readable on any iris colour.
        limbus = (0.3 + 0.9 * np.sqrt(np.clip(1.0 - rr, 0.0, 1.0))) * (1.0 - 0.3 * lid_shadow)
        layers.paint(c.ellipse(ix, ey, r, r) * sclera, planar(EYE_COLORS[ident.eye_color]) * limbus)
        layers.paint(c.ellipse(ix, ey, 0.48 * r, 0.48 * r) * sclera, (0.02, 0.02, 0.02))
        glint = c.blob(ix - 0.35 * r, ey - 0.35 * r, 0.12 * r + 0.3, 0.12 * r + 0.3)
        layers.paint(np.clip(1.3 * glint, 0.0, 1.0) * sclera, (0.97, 0.97, 0.97))

        def lids(mask: np.ndarray, pen: Pen, ex: float = ex, side: float = side) -> None:
            axes = pen.size(ew * 1.02, eh * 1.18)
            cv2.ellipse(
                mask, pen.pt(ex, ey), axes, 0, 180, 360, 255, pen.th(2.4), cv2.LINE_AA, pen.shift
            )
            for t in np.linspace(0.15, 0.95, 6) if side > 0 else np.linspace(0.05, 0.85, 6):
                ang = math.pi * (1.0 + t)
                x0, y0 = ex + ew * math.cos(ang), ey + eh * 1.18 * math.sin(ang)
                tip = pen.pt(x0 + 2.6 * (0.6 * math.cos(ang) + 0.35 * side), y0 - 2.6)
                cv2.line(mask, pen.pt(x0, y0), tip, 255, pen.th(0.9), cv2.LINE_AA, pen.shift)

        layers.paint(c.draw(lids, blur=0.35), (0.06, 0.045, 0.04))

        def creases(mask: np.ndarray, pen: Pen, ex: float = ex) -> None:
            upper, lower = pen.size(ew * 1.1, eh * 2.1), pen.size(ew * 0.98, eh * 0.85)
            cv2.ellipse(
                mask,
                pen.pt(ex, ey + 0.2 * eh),
                upper,
                0,
                195,
                345,
                255,
                pen.th(1.0),
                cv2.LINE_AA,
                pen.shift,
            )
            cv2.ellipse(
                mask, pen.pt(ex, ey), lower, 0, 15, 165, 255, pen.th(1.0), cv2.LINE_AA, pen.shift
            )

        layers.paint(c.draw(creases, blur=0.7) * 0.55, planar(ident.skin) * 0.5 * shade)


def _paint_brows(c: Canvas, layers: Layers, ident: Identity) -> None:
    a, b = ident.half_width, ident.half_height
    brow = np.minimum(planar(HAIR_COLORS[ident.hair_color]) * 0.7, planar(ident.skin) * 0.35) + 0.01
    brow = brow * np.clip(0.85 + 0.15 * c.noise(41, 0.5, 0.5), 0.5, 1.2)
    ts = np.linspace(0.0, 1.0, 12)
    by = ident.eye_y - 0.22 * b
    for side in (-1.0, 1.0):
        inner = CX + side * 0.12 * a
        outer = CX + side * (ident.eye_spacing + ident.eye_width + 0.1) * a
        xs = inner + (outer - inner) * ts
        ys = by - 6.0 * ident.brow_arch * b * ts * (1.0 - ts) + 0.03 * b * ts

        def stroke(mask: np.ndarray, pen: Pen, xs: np.ndarray = xs, ys: np.ndarray = ys) -> None:
            pts = np.array([pen.pt(x, y) for x, y in zip(xs, ys, strict=True)], np.int32)
            cv2.polylines(
                mask, [pts[:9]], False, 255, pen.th(ident.brow_thickness), cv2.LINE_AA, pen.shift
            )
            cv2.polylines(
                mask,
                [pts[6:]],
                False,
                255,
                pen.th(0.6 * ident.brow_thickness),
                cv2.LINE_AA,
                pen.shift,
            )

        layers.paint(c.draw(stroke, blur=0.6) * 0.92, brow)


def _paint_beard(
    c: Canvas, layers: Layers, ident: Identity, face: np.ndarray, hair: np.ndarray
) -> None:
    a, b = ident.half_width, ident.half_height
    mw, my = ident.mouth_width * a, ident.mouth_y
    region = face * c.step(c.yy - (CY + 0.32 * b - 0.14 * b * ((c.xx - CX) / a) ** 2), soft=3.0)
    region = np.maximum(region, c.ellipse(CX, my - 0.12 * b, mw * 1.05, 0.05 * b, soft=2.0))
    region *= 1.0 - c.ellipse(CX, my + 0.01 * b, mw * 0.95, 0.1 * b * ident.lip_fullness, soft=1.5)
    density = np.clip(0.85 + 0.15 * c.noise(51, 0.8, 0.8), 0.0, 1.0)
    layers.paint(region * density * 0.92, hair * 0.9)


def _paint_front_hair(
    c: Canvas, layers: Layers, ident: Identity, face: np.ndarray, hair: np.ndarray
) -> None:
    if ident.hair_style == "bald":
        return
    a, b = ident.half_width, ident.half_height
    cap = c.ellipse(CX, CY - 0.18 * b, a * 1.1, b * 1.0, soft=1.5) * c.step(
        CY - 0.05 * b - c.yy, soft=3.0
    )
    hairline = CY - ident.hairline * b + 0.3 * b * ((c.xx - CX) / a) ** 2
    layers.paint(cap * (1.0 - face * c.step(c.yy - hairline, soft=2.5)), hair)


def _paint_glasses(c: Canvas, layers: Layers, ident: Identity) -> None:
    a, b = ident.half_width, ident.half_height
    ey = ident.eye_y + 0.01 * b
    rx, ry = ident.eye_width * a * 1.55, ident.eye_height * b * 2.5
    left, right = (CX + side * ident.eye_spacing * a for side in (-1.0, 1.0))

    def frame(mask: np.ndarray, pen: Pen) -> None:
        def line(x0: float, y0: float, x1: float, y1: float) -> None:
            cv2.line(mask, pen.pt(x0, y0), pen.pt(x1, y1), 255, pen.th(1.2), cv2.LINE_AA, pen.shift)

        for ex in (left, right):
            if ident.glasses_round:
                cv2.ellipse(
                    mask,
                    pen.pt(ex, ey),
                    pen.size(rx, ry),
                    0,
                    0,
                    360,
                    255,
                    pen.th(1.4),
                    cv2.LINE_AA,
                    pen.shift,
                )
            else:
                corners = pen.pt(ex - rx, ey - 0.85 * ry), pen.pt(ex + rx, ey + 0.85 * ry)
                cv2.rectangle(mask, *corners, 255, pen.th(1.4), cv2.LINE_AA, pen.shift)
        line(left + rx, ey - 0.3 * ry, right - rx, ey - 0.3 * ry)
        line(left - rx, ey - 0.2 * ry, CX - 0.98 * a, ey)
        line(right + rx, ey - 0.2 * ry, CX + 0.98 * a, ey)

    lenses = c.ellipse(left, ey, rx, ry) + c.ellipse(right, ey, rx, ry)
    glare = np.clip(2.0 * np.sin(0.25 * (c.xx + c.yy)) - 1.4, 0.0, 1.0)
    layers.paint(lenses * (0.06 + 0.12 * glare), (0.95, 0.97, 1.0))
    layers.paint(c.draw(frame, blur=0.3), ident.glasses_color)


SPRITE_PARTS = ("back", "face", "beard", "front", "glasses")


# Small: one job needs its target and a few sources; at 1080p a sprite set is ~60 MB.
@lru_cache(maxsize=8)
def render_parts(ident: Identity, k: int) -> dict[str, np.ndarray]:
    """Planar premultiplied layers of an identity, back to front; a swap replaces ``face``."""
    c = Canvas(k, ident.texture_seed)
    parts = {name: Layers(c.shape) for name in SPRITE_PARTS}
    hair = _hair_rgb(c, ident)
    _paint_back(c, parts["back"], ident, hair)
    face, u, v = _face_oval(c, ident)
    face_rgb, shade = _face_rgb(c, ident, u, v)
    parts["face"].paint(face, face_rgb)
    _paint_eyes(c, parts["face"], ident, shade)
    _paint_brows(c, parts["face"], ident)
    _paint_nose_and_mouth(c, parts["face"], ident, shade)
    if ident.beard:
        _paint_beard(c, parts["beard"], ident, face, hair)
    _paint_front_hair(c, parts["front"], ident, face, hair)
    if ident.glasses:
        _paint_glasses(c, parts["glasses"], ident)
    planes = {name: layer.planes() for name, layer in parts.items()}
    for array in planes.values():
        array.setflags(write=False)
    return planes


def render_identity(ident: Identity, scale: int = 1, part: str = "full") -> np.ndarray:
    """Render a shaded sprite of ``ident``; frames only warp it, so this runs once per identity.

    Args:
        ident: The person to draw.
        scale: Sprite pixels per nominal unit (the sprite is ``320*scale x 256*scale``).
        part: ``full`` or one layer: ``back`` (hair behind the head, ears, neck, shoulders),
            ``face`` (skin, eyes, brows, nose, mouth: what a swap replaces), ``beard``,
            ``front`` (hair over the forehead) or ``glasses``.

    Returns:
        ``(H, W, 4)`` float32 RGBA in [0, 1] with straight (not premultiplied) alpha.
    """
    if part != "full" and part not in SPRITE_PARTS:
        raise ValueError(f"unknown sprite part {part!r}: use full or one of {SPRITE_PARTS}")
    parts = render_parts(ident, scale)
    planes = over(*parts.values()) if part == "full" else parts[part]
    alpha = planes[3]
    rgb = np.clip(planes[:3] / np.maximum(alpha, 1e-6), 0.0, 1.0)
    return np.ascontiguousarray(np.concatenate([rgb, alpha[None]]).transpose(1, 2, 0))


MASK_SHAPES = ("ellipse", "box")


def inner_face_mask(ident: Identity, scale: int, blur: float, shape: str = "ellipse") -> np.ndarray:
    """The region a face swap replaces (brows to chin, cheek to cheek) with a blurred edge.

    Args:
        ident: The target, whose face geometry the mask follows.
        scale: Sprite pixels per nominal unit.
        blur: Edge sigma in nominal sprite pixels.
        shape: ``ellipse`` (an oval inside the face, as landmark-hull swaps blend) or
            ``box`` (a brow-to-chin rectangle: straight seams across the cheeks, as a
            box-aligned paste leaves), both clipped to the face oval.
    """
    if shape not in MASK_SHAPES:
        raise ValueError(f"unknown mask shape {shape!r}: use one of {MASK_SHAPES}")
    c = Canvas(scale, ident.texture_seed)
    a, b = ident.half_width, ident.half_height
    face, _, _ = _face_oval(c, ident)
    if shape == "ellipse":
        region = c.ellipse(CX, CY + 0.1 * b, 0.74 * a, 0.72 * b)
    else:
        top, bottom = ident.eye_y - 0.3 * b, ident.mouth_y + 0.25 * b
        region = c.step(0.66 * a - np.abs(c.xx - CX)) * c.step(c.yy - top) * c.step(bottom - c.yy)
    mask = region * face
    return cv2.GaussianBlur(mask, (0, 0), blur * scale) if blur > 0 else mask
