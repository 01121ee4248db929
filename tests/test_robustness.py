"""Robustness perturbations, the table over them and the FaceDataset hook they use."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from deepfake_exp.data.datamodule import FaceDataset


def write_crops(root: Path, images: list[np.ndarray]) -> pd.DataFrame:
    """PNG crops + the manifest columns FaceDataset reads."""
    (root / "faces").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, image in enumerate(images):
        path = f"faces/{i:03d}.png"
        cv2.imwrite(str(root / path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        rows.append({"face_path": path, "label": i % 2, "video_id": f"v{i}"})
    return pd.DataFrame(rows)


def test_face_dataset_pre_transform_runs_on_rgb_uint8_before_transform(tmp_path: Path) -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = 200  # red in RGB: a BGR mix-up would show up as blue
    frame = write_crops(tmp_path, [image])
    seen: list[np.ndarray] = []

    def pre(x: np.ndarray) -> np.ndarray:
        seen.append(x.copy())
        return 255 - x

    dataset = FaceDataset(frame, tmp_path, lambda x: x.astype(np.float32), pre_transform=pre)
    out = dataset[0]["image"]
    assert seen[0].dtype == np.uint8 and seen[0][0, 0].tolist() == [200, 0, 0]
    assert out[0, 0].tolist() == [55.0, 255.0, 255.0]
    plain = FaceDataset(frame, tmp_path, lambda x: x)
    assert np.array_equal(plain[0]["image"], image)
