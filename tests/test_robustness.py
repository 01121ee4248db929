"""Robustness perturbations, the table over them and the FaceDataset hook they use."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from sklearn.metrics import roc_auc_score

from deepfake_exp.data.datamodule import FaceDataset
from deepfake_exp.evaluation.robustness import (
    TABLE_COLUMNS,
    BrightnessContrast,
    Downscale,
    GaussianBlur,
    GaussianNoise,
    JpegCompression,
    Perturbation,
    build_perturbations,
    plot_robustness,
    robustness_summary,
    robustness_table,
)
from tests.conftest import CONF_DIR


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


# --------------------------------------------------------------------------------------------
# Perturbations
# --------------------------------------------------------------------------------------------

STANDARD = Path(CONF_DIR) / "robustness" / "standard.yaml"


def textured_face(seed: int, size: int = 48) -> np.ndarray:
    """A smooth face-like blob with fine texture: every perturbation visibly changes it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    blob = 120 + 80 * np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (size**2 / 8))
    texture = rng.integers(-30, 30, (size, size, 3))
    return np.clip(blob[..., None] + texture, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def standard() -> dict[str, Perturbation]:
    return build_perturbations(OmegaConf.load(STANDARD).perturbations)


def test_standard_config_builds_every_perturbation_kind(standard) -> None:
    kinds = {type(p) for p in standard.values()}
    assert kinds == {JpegCompression, GaussianBlur, Downscale, GaussianNoise, BrightnessContrast}
    assert all(p.severities[0] == 0 and len(p.severities) >= 5 for p in standard.values())
    assert build_perturbations(OmegaConf.load(STANDARD.with_name("none.yaml")).perturbations) == {}


def test_severity_zero_is_the_input_and_distortion_grows(standard) -> None:
    image = textured_face(0)
    for name, perturbation in standard.items():
        assert perturbation(image, 0) is image, name
        distances = []
        for severity in perturbation.severities[1:]:
            out = perturbation(image, severity)
            assert out.dtype == np.uint8 and out.shape == image.shape, name
            distances.append(np.abs(out.astype(int) - image).mean())
        assert distances[0] > 0, name
        assert distances == sorted(distances) and distances[-1] > distances[0], name


def test_perturbations_are_deterministic_for_a_seed() -> None:
    image = textured_face(1)
    noise = GaussianNoise(seed=3)
    assert np.array_equal(noise(image, 2), GaussianNoise(seed=3)(image, 2))
    assert not np.array_equal(noise(image, 2), GaussianNoise(seed=4)(image, 2))
    # the same crop gets the same noise whatever came before it (loader order, workers)
    noise(textured_face(2), 2)
    assert np.array_equal(noise(image, 2), GaussianNoise(seed=3)(image, 2))
    jpeg = JpegCompression()
    assert np.array_equal(jpeg(image, 4), jpeg(image.copy(), 4))


def test_at_is_a_picklable_pre_transform_and_bad_input_fails() -> None:
    blur = GaussianBlur(sigmas=[1.0, 2.0, 3.0, 4.0])
    image = textured_face(3)
    pre = pickle.loads(pickle.dumps(blur.at(4)))
    assert np.array_equal(pre(image), blur(image, 4))
    with pytest.raises(ValueError, match="severities"):
        blur(image, 5)
    with pytest.raises(ValueError, match="uint8"):
        blur(image.astype(np.float32), 1)
    with pytest.raises(ValueError, match="one of each"):
        BrightnessContrast(contrasts=[0.5, 0.4], brightness=[10])
    with pytest.raises(ValueError, match="qualities"):
        JpegCompression(qualities=[0, 50])


# --------------------------------------------------------------------------------------------
# Table and plot
# --------------------------------------------------------------------------------------------


def toy_test_set(n_videos: int = 16, faces_per_video: int = 3) -> tuple[pd.DataFrame, list]:
    """Faces whose 'fakeness' is fine texture: a sharpness detector separates them, blur not."""
    rows, images = [], []
    for v in range(n_videos):
        label = v % 2
        for f in range(faces_per_video):
            image = textured_face(100 * v + f)
            if not label:
                image = cv2.GaussianBlur(image, (0, 0), 1.2)
            images.append(image)
            rows.append({"video_id": f"v{v:02d}", "label": label, "group": f"g{v // 2}"})
    return pd.DataFrame(rows), images


def sharpness_scorer(images: list[np.ndarray], calls: list) -> callable:
    """A 'detector': P(fake) from the Laplacian energy of the (perturbed) crop."""

    def score(pre) -> np.ndarray:
        calls.append(pre)
        crops = [pre(x) if pre is not None else x for x in images]
        energy = np.array([cv2.Laplacian(x.astype(np.float32), cv2.CV_32F).var() for x in crops])
        return 1.0 / (1.0 + np.exp(-(np.log(energy) - 6.0)))

    return score


def test_robustness_table_columns_clean_row_and_direction() -> None:
    faces, images = toy_test_set()
    calls: list = []
    perturbations = {
        "blur": GaussianBlur(sigmas=[0.5, 1.0, 2.0, 4.0]),
        "jpeg": JpegCompression(qualities=[90, 50, 20, 5]),
    }
    table = robustness_table(
        sharpness_scorer(images, calls), faces, perturbations, 0.5, n_resamples=200
    )
    assert list(table.columns) == TABLE_COLUMNS
    assert len(table) == 10 and calls.count(None) == 1  # clean faces scored once
    clean_probs = sharpness_scorer(images, [])(None)
    clean = table[table["severity"] == 0]
    assert (clean["face_auc"] == roc_auc_score(faces["label"], clean_probs)).all()
    assert (clean.drop(columns="perturbation").nunique() <= 1).all()
    blur = table[table["perturbation"] == "blur"].set_index("severity")
    assert blur.loc[4, "face_auc"] < blur.loc[0, "face_auc"]
    assert blur.loc[4, "video_auc"] < blur.loc[0, "video_auc"]
    defined = table.dropna(subset=["face_auc_lo"])
    assert (defined["face_auc_lo"] <= defined["face_auc"] + 1e-12).all()
    assert (defined["face_auc"] <= defined["face_auc_hi"] + 1e-12).all()
    assert table["accuracy"].between(0, 1).all() and (table["log_loss"] > 0).all()
    summary = robustness_summary(table)
    assert summary["mean_face_auc"] == pytest.approx(
        table.loc[table.severity > 0, "face_auc"].mean()
    )


def test_robustness_table_uses_the_given_video_reduction_and_checks_lengths() -> None:
    faces, images = toy_test_set(n_videos=8)
    score = sharpness_scorer(images, [])
    seen: list[int] = []

    def to_videos(frame: pd.DataFrame) -> pd.DataFrame:
        seen.append(len(frame))
        return frame.groupby("video_id", as_index=False).agg(
            label=("label", "first"), prob=("prob", "max")
        )

    blur = {"blur": GaussianBlur(sigmas=[1, 2, 3, 4])}
    robustness_table(score, faces, blur, {"face": 0.5, "video": 0.4}, to_videos, n_resamples=50)
    assert seen == [len(faces)] * 5
    with pytest.raises(ValueError, match="scores for"):
        robustness_table(lambda pre: np.zeros(3), faces, blur, 0.5, n_resamples=10)


def test_plot_robustness_draws_a_line_per_perturbation() -> None:
    faces, images = toy_test_set(n_videos=8)
    perturbations = {"blur": GaussianBlur(sigmas=[1, 2, 3, 4]), "noise": GaussianNoise()}
    table = robustness_table(
        sharpness_scorer(images, []), faces, perturbations, 0.5, n_resamples=50
    )
    figure = plot_robustness(table)
    face_axes, video_axes = figure.axes
    assert len(face_axes.lines) == 2 and len(video_axes.lines) == 2
    assert face_axes.lines[1].get_xdata().tolist() == [0, 1, 2, 3, 4, 5]
