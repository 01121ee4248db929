"""Square face crops with a relative margin, clamped to the frame."""

from __future__ import annotations

import cv2
import numpy as np


def square_box_with_margin(
    box: tuple[float, float, float, float], margin: float, frame_width: int, frame_height: int
) -> tuple[int, int, int, int]:
    """Square box around ``box`` grown by ``margin`` (0.5 adds half the face size), in-frame.

    The square is centred on the detection and sized ``max(w, h) * (1 + margin)``; when it
    crosses a frame border it is shifted back inside (and shrunk only if the frame itself is
    smaller), so crops keep the face centred as far as the frame allows and never pad with
    invented pixels.
    """
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1.0 + margin)
    side = min(side, frame_width, frame_height)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    left = min(max(cx - side / 2.0, 0.0), frame_width - side)
    top = min(max(cy - side / 2.0, 0.0), frame_height - side)
    size = max(int(round(side)), 1)
    left_i, top_i = int(round(left)), int(round(top))
    left_i = min(left_i, frame_width - size)
    top_i = min(top_i, frame_height - size)
    return left_i, top_i, left_i + size, top_i + size


def crop_face(
    frame: np.ndarray, box: tuple[float, float, float, float], margin: float, size: int
) -> np.ndarray:
    """Cut the square margin crop of ``box`` out of an RGB frame and resize it to ``size``."""
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = square_box_with_margin(box, margin, width, height)
    crop = frame[y1:y2, x1:x2]
    interpolation = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)
