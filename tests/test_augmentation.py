"""Augmentation options: output contract, seeding, eval determinism, SBI blends and pairs."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from deepfake_exp.benchmarks.common import face_crops as face_like_images
from deepfake_exp.data.datamodule import FaceDataset, ManifestNotFoundError
from deepfake_exp.data.sbi import (
    BLEND_RATIOS,
    BlendParams,
    SBIAugmentation,
    SelfBlendedDataset,
    self_blend,
)
from deepfake_exp.data.transforms import AlbumentationsTransform, Augmentation, DFDCAugmentation
from deepfake_exp.utils.data_config import IMAGENET_MEAN, IMAGENET_STD
from tests.conftest import CONF_DIR, compose_config

OPTIONS = ["none", "basic", "dfdc", "sbi"]
SIZE = 64
MEAN, STD = list(IMAGENET_MEAN), list(IMAGENET_STD)
DETERMINISTIC_OPS = (A.Resize, A.LongestMaxSize, A.PadIfNeeded, A.Normalize)


def build(name: str, size: int = SIZE, **overrides: object) -> Augmentation:
    """An option from its YAML, with the model's size and normalisation filled in."""
    node = OmegaConf.load(Path(CONF_DIR) / "augmentation" / f"{name}.yaml")
    cfg = OmegaConf.create({"model": {"input_size": size, "mean": MEAN, "std": STD}})
    cfg.augmentation = OmegaConf.merge(node, overrides)
    return instantiate(cfg.augmentation)


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    return face_like_images(4, 96, seed=1)


def normalised_bounds() -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    return (0 - mean) / std - 1e-4, (1 - mean) / std + 1e-4


@pytest.mark.parametrize("name", OPTIONS)
@pytest.mark.parametrize("shape", [(96, 96), (90, 50), (40, 48)])
def test_pipelines_map_crops_to_normalised_tensors(name: str, shape: tuple[int, int]) -> None:
    augmentation = build(name)
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    low, high = normalised_bounds()
    for transform in (augmentation.train_transform(), augmentation.eval_transform()):
        for _ in range(3):
            out = transform(image)
            assert out.shape == (3, SIZE, SIZE) and out.dtype == torch.float32
            assert out.is_contiguous()
            assert torch.isfinite(out).all()
            assert (out >= low).all() and (out <= high).all()


def test_options_build_the_right_pipeline() -> None:
    built = {name: build(name) for name in OPTIONS}
    assert [type(a).__name__ for a in built.values()] == [
        "NoAugmentation",
        "BasicAugmentation",
        "DFDCAugmentation",
        "SBIAugmentation",
    ]
    assert not built["none"].train_ops()
    dfdc_ops = [type(t) for t in built["dfdc"].train_transform().pipeline]
    for expected in (A.ImageCompression, A.GaussNoise, A.OneOf, A.PadIfNeeded, A.ToGray, A.Affine):
        assert expected in dfdc_ops


def test_options_accept_command_line_overrides(tmp_path: Path) -> None:
    cfg = compose_config(
        "train",
        [
            "augmentation=dfdc",
            "model.input_size=64",
            "augmentation.gauss_noise_p=0.2",
            "augmentation.quality_range=[70,90]",
        ],
        tmp_path,
    )
    dfdc = instantiate(cfg.augmentation)
    assert dfdc.gauss_noise_p == 0.2 and dfdc.quality_range == (70, 90)
    assert dfdc.input_size == 64
    compression = dfdc.train_transform().pipeline.transforms[0]
    assert compression.quality_range == (70, 90)

    cfg = compose_config(
        "train",
        ["augmentation=sbi", "augmentation.blend.mask_blur=[0.01,0.02]", "extraction.margin=0.3"],
        tmp_path,
    )
    sbi = instantiate(cfg.augmentation)
    assert sbi.blend.mask_blur == (0.01, 0.02)
    assert sbi.blend.margin == 0.3  # follows the preprocessing crop margin


def test_invalid_ranges_fail_clearly() -> None:
    with pytest.raises(ValueError, match="quality_range"):
        DFDCAugmentation(SIZE, quality_range=(90, 60))
    with pytest.raises(ValueError, match="frequency_ops"):
        BlendParams(frequency_ops=("pixelate",))
    with pytest.raises(ValueError, match="blend_ratios"):
        BlendParams(blend_ratios=(0.5, 1.5))


@pytest.mark.parametrize("name", ["basic", "dfdc", "sbi"])
def test_seeded_train_transform_is_reproducible(name: str, faces: list[np.ndarray]) -> None:
    def run(seed: int) -> list[torch.Tensor]:
        transform = build(name, seed=seed).train_transform()
        return [transform(image) for image in faces * 3]

    first, again, other = run(7), run(7), run(8)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_unseeded_train_transform_follows_torch_seed(faces: list[np.ndarray]) -> None:
    """Without a fixed seed, ``seed_everything`` (torch's seed) makes a run reproducible."""

    def run(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        transform = build("dfdc").train_transform()
        return [transform(image) for image in faces * 3]

    first, again, other = run(0), run(0), run(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_seeded_ops_draw_independently() -> None:
    """albumentations 2.0.8's Compose(seed=s) makes same-probability ops fire together."""
    transform = AlbumentationsTransform([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)], seed=0)
    image = np.arange(16, dtype=np.uint8).reshape(4, 4, 1).repeat(3, axis=2)
    outcomes = set()
    for _ in range(64):
        out = transform(image).numpy().transpose(1, 2, 0)
        outcomes.add((np.array_equal(out, image[:, ::-1]), np.array_equal(out, image[::-1])))
    assert {(True, False), (False, True)} <= outcomes


class _SameImage(Dataset):
    def __init__(self, transform: AlbumentationsTransform, image: np.ndarray) -> None:
        self.transform, self.image = transform, image

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.image)


def test_loader_workers_draw_different_augmentations(faces: list[np.ndarray]) -> None:
    """Forked workers inherit one generator state; each must be reseeded (per epoch too)."""
    dataset = _SameImage(build("dfdc").train_transform(), faces[0])

    def epoch(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return next(iter(DataLoader(dataset, batch_size=8, num_workers=2)))

    torch.manual_seed(0)
    loader = DataLoader(dataset, batch_size=1, num_workers=2)
    first = [batch[0] for batch in loader]  # items 0, 2, ... from worker 0; 1, 3, ... worker 1
    assert not torch.equal(first[0], first[1])
    assert torch.equal(epoch(1), epoch(1))  # reproducible under a fixed torch seed


@pytest.mark.parametrize("name", OPTIONS)
def test_eval_transform_is_deterministic(name: str, faces: list[np.ndarray]) -> None:
    augmentation = build(name)
    transform = augmentation.eval_transform()
    assert all(isinstance(op, DETERMINISTIC_OPS) for op in transform.pipeline)
    fresh = build(name).eval_transform()
    for image in faces:
        assert torch.equal(transform(image), transform(image))
        assert torch.equal(transform(image), fresh(image))


def plain_resize_normalise(image: np.ndarray, size: int) -> torch.Tensor:
    interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    resized = cv2.resize(image, (size, size), interpolation=interpolation).astype(np.float32)
    out = (resized / 255.0 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return torch.from_numpy(out.transpose(2, 0, 1))


@pytest.mark.parametrize("name", ["none", "basic", "sbi"])
def test_eval_transform_is_plain_resize_and_normalise(name: str, faces: list[np.ndarray]) -> None:
    transform = build(name).eval_transform()
    for image in (faces[0], cv2.resize(faces[1], (40, 40))):
        expected = plain_resize_normalise(image, SIZE)
        assert torch.allclose(transform(image), expected, atol=1e-5)


def test_dfdc_eval_is_isotropic_resize_and_constant_pad() -> None:
    image = np.full((100, 50, 3), 200, np.uint8)  # tall crop: width becomes 32, padded to 64
    out = build("dfdc").eval_transform()(image)
    zero = (-torch.tensor(MEAN) / torch.tensor(STD))[:, None, None]
    value = ((200 / 255 - torch.tensor(MEAN)) / torch.tensor(STD))[:, None, None]
    assert torch.allclose(out[:, :, :15], zero.expand(3, SIZE, 15), atol=1e-5)
    assert torch.allclose(out[:, :, 49:], zero.expand(3, SIZE, 15), atol=1e-5)
    assert torch.allclose(out[:, :, 17:47], value.expand(3, SIZE, 30), atol=1e-5)


# --------------------------------------------------------------------------------------------
# Self-blended images
# --------------------------------------------------------------------------------------------


def test_self_blend_changes_only_the_masked_face(faces: list[np.ndarray]) -> None:
    for seed, image in enumerate(faces * 4):
        blended, mask, source = self_blend(image, np.random.default_rng(seed))
        assert blended.shape == image.shape == source.shape and blended.dtype == np.uint8
        assert mask.shape == image.shape[:2] and mask.dtype == np.float32
        assert mask.min() >= 0.0 and mask.max() <= 1.0
        assert np.isclose(mask.max(), BLEND_RATIOS, atol=1e-6).any()
        outside = mask == 0
        assert outside.any() and (mask > 0).any()
        assert np.array_equal(blended[outside], image[outside])
        inner = mask > 0.5 * mask.max()
        assert np.abs(blended[inner].astype(int) - image[inner]).mean() > 0.5
        corners = outside[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert corners.all()  # the blend stays on the face at the crop centre


def test_self_blend_is_a_function_of_the_generator(faces: list[np.ndarray]) -> None:
    image = faces[0]
    a = self_blend(image, np.random.default_rng(3))
    b = self_blend(image, np.random.default_rng(3))
    c = self_blend(image, np.random.default_rng(4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a.blended, c.blended)


def test_self_blend_with_landmarks_uses_their_hull(faces: list[np.ndarray]) -> None:
    landmarks = np.array([[20, 20], [40, 20], [40, 40], [20, 40]], np.float32)
    _, mask, _ = self_blend(
        faces[0], np.random.default_rng(0), landmarks=landmarks, mask_blur=(0.01, 0.01)
    )
    ys, xs = np.nonzero(mask)
    assert xs.min() > 5 and xs.max() < 55 and ys.min() > 5 and ys.max() < 55


def write_faces(root: Path, images: list[np.ndarray], labels: list[int]) -> pd.DataFrame:
    """PNG crops + a manifest-like frame, as preprocessing leaves them."""
    (root / "faces").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = f"faces/{i:04d}.png"
        cv2.imwrite(str(root / path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        rows.append({"video_id": f"v{i}", "frame": 0, "face_index": 0, "face_path": path})
        rows[-1].update({"label": label, "group": str(i), "original": "", "split": "train"})
        rows[-1].update({"source": "test", "x1": 0, "y1": 0, "x2": 1, "y2": 1, "prob": 1.0})
    return pd.DataFrame(rows)


@pytest.fixture
def face_dataset(tmp_path: Path) -> FaceDataset:
    images = face_like_images(6, 80, seed=2)
    frame = write_faces(tmp_path, images, [0, 1, 0, 0, 1, 0])
    return FaceDataset(frame, tmp_path, build("sbi").train_transform())


def test_sbi_dataset_yields_real_pseudo_fake_pairs(face_dataset: FaceDataset) -> None:
    sbi = build("sbi", seed=5, compression_p=0.0).wrap_train_dataset(face_dataset)
    assert isinstance(sbi, SelfBlendedDataset)
    assert len(sbi) == 4 and (sbi.frame["label"] == 0).all()
    for i in range(len(sbi)):
        item = sbi[i]
        real_index = int(sbi.real_indices[i])
        assert item["image"].shape == (2, 3, SIZE, SIZE)
        assert item["label"].tolist() == [0, 1]
        assert item["index"].tolist() == [real_index, real_index]
        assert face_dataset.labels[real_index] == 0
        real, fake = item["image"]
        assert not torch.equal(real, fake)
        # Same random ops on both: the background corners (never blended) are identical.
        assert torch.equal(real[:, :6, :6], fake[:, :6, :6])
        assert torch.equal(real[:, -6:, -6:], fake[:, -6:, -6:])


def test_sbi_collate_alternates_real_and_fake(face_dataset: FaceDataset) -> None:
    sbi = build("sbi", seed=0).wrap_train_dataset(face_dataset)
    loader = DataLoader(sbi, batch_size=3, shuffle=True, collate_fn=sbi.collate_fn)
    batches = list(loader)
    assert [len(b["label"]) for b in batches] == [6, 2]
    for batch in batches:
        assert batch["image"].shape == (len(batch["label"]), 3, SIZE, SIZE)
        assert batch["label"].tolist() == [0, 1] * (len(batch["label"]) // 2)
        assert torch.equal(batch["index"][0::2], batch["index"][1::2])
    seen = torch.cat([b["index"][0::2] for b in batches]).sort().values.tolist()
    assert seen == sbi.real_indices.tolist()


def test_sbi_dataset_is_deterministic_given_seeds(face_dataset: FaceDataset) -> None:
    def items(seed: int, torch_seed: int, resample: bool = True) -> list[torch.Tensor]:
        sbi = build("sbi", seed=seed, resample=resample).wrap_train_dataset(face_dataset)
        torch.manual_seed(torch_seed)
        return [sbi[i]["image"] for i in range(len(sbi))]

    def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    assert same(items(1, 0), items(1, 0))
    assert not same(items(1, 0), items(2, 0))
    assert not same(items(1, 0), items(1, 1))  # resampled each epoch from torch's RNG
    assert same(items(1, 0, resample=False), items(1, 1, resample=False))


def test_sbi_needs_real_faces(tmp_path: Path) -> None:
    frame = write_faces(tmp_path, face_like_images(2, 48), [1, 1])
    dataset = FaceDataset(frame, tmp_path, build("sbi").train_transform())
    with pytest.raises(ValueError, match="REAL"):
        SBIAugmentation(SIZE).wrap_train_dataset(dataset)


def test_other_options_keep_the_dataset(face_dataset: FaceDataset) -> None:
    for name in ("none", "basic", "dfdc"):
        assert build(name).wrap_train_dataset(face_dataset) is face_dataset


# --------------------------------------------------------------------------------------------
# Preview and benchmark
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dfdc", "sbi"])
def test_preview_writes_a_grid(tmp_path: Path, name: str) -> None:
    from deepfake_exp.tasks.augment_preview import preview

    cfg = compose_config("augment_preview", [f"augmentation={name}", "n=4"], tmp_path)
    write_faces(Path(cfg.faces_dir), face_like_images(6, 72), [0, 1, 0, 1, 0, 0]).to_csv(
        Path(cfg.faces_dir) / "manifest.csv", index=False
    )
    out = preview(cfg)
    image = cv2.imread(str(out))
    assert out == Path(cfg.out) and image is not None
    assert image.shape[0] > 100 and image.shape[1] > 200


def test_preview_without_manifest_says_how_to_make_one(tmp_path: Path) -> None:
    from deepfake_exp.tasks.augment_preview import preview

    cfg = compose_config("augment_preview", [], tmp_path)
    with pytest.raises(ManifestNotFoundError, match="preprocess"):
        preview(cfg)


# --------------------------------------------------------------------------------------------
# The learning check: SBI on real faces only must make a detector of (unseen) real fakes.
# --------------------------------------------------------------------------------------------


def synthetic_faces(
    root: Path, num_identities: int, frames: int, crop: int, fakes_from: int
) -> pd.DataFrame:
    """Crops of the synthetic generator's videos, written as preprocessing writes them.

    Faces are cut at the generator's ground-truth boxes with preprocessing's own
    ``crop_face`` (margin 0.5): the crops MTCNN extraction yields, without the detector's
    cost. Only identities ``>= fakes_from`` get their FAKE videos rendered.
    """
    from deepfake_exp.data.synthetic import (
        SyntheticConfig,
        draw_identities,
        face_boxes,
        plan_videos,
        render_video,
    )
    from deepfake_exp.faces.crop import crop_face

    config = SyntheticConfig(
        num_identities=num_identities,
        videos_per_identity=1,
        num_frames=frames,
        width=160,
        height=128,
        seed=1,
    )
    identities = draw_identities(config)
    images, labels, rows = [], [], []
    for plan in plan_videos(config, identities):
        if plan.fake is not None and plan.identity < fakes_from:
            continue
        boxes = face_boxes(config, plan.name)
        for frame, box in zip(render_video(config, plan, identities), boxes, strict=True):
            images.append(crop_face(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), tuple(box), 0.5, crop))
            labels.append(int(plan.fake is not None))
            rows.append({"video": plan.name, "identity": plan.identity})
    return pd.concat([write_faces(root, images, labels), pd.DataFrame(rows)], axis=1)


def tiny_cnn(width: int = 16) -> torch.nn.Module:
    def block(c_in: int, c_out: int) -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Conv2d(c_in, c_out, 3, padding=1),
            torch.nn.BatchNorm2d(c_out),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        )

    return torch.nn.Sequential(
        block(3, width),
        block(width, 2 * width),
        block(2 * width, 4 * width),
        block(4 * width, 4 * width),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * width, 2),
    )


@pytest.fixture
def one_thread():
    """A 64-px CNN gains nothing from intra-op threads; on a busy machine they only spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_sbi_on_real_faces_alone_detects_unseen_fakes(tmp_path: Path, record_property) -> None:
    """A tiny CNN trained ~100 steps on real faces + their SBI pseudo-fakes, nothing else,
    separates held-out identities' real and face-swapped crops. Weights are averaged (EMA):
    the last raw weights of so short a run swing by +-0.1 AUC from one epoch to the next."""
    from sklearn.metrics import roc_auc_score
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    train_ids, test_ids = 64, 16
    frame = synthetic_faces(tmp_path, train_ids + test_ids, frames=3, crop=96, fakes_from=train_ids)
    train = frame[(frame["identity"] < train_ids) & (frame["label"] == 0)]
    test = frame[frame["identity"] >= train_ids]
    augmentation = build("sbi", seed=0)
    pairs = augmentation.wrap_train_dataset(
        FaceDataset(train, tmp_path, augmentation.train_transform())
    )
    torch.manual_seed(0)
    loader = DataLoader(pairs, batch_size=16, shuffle=True, collate_fn=pairs.collate_fn)
    model = tiny_cnn()
    average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.95), use_buffers=True)
    epochs = 8
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, 2e-3, total_steps=epochs * len(loader)
    )
    for _ in range(epochs):
        model.train()
        for batch in loader:
            assert batch["label"].tolist() == [0, 1] * (len(batch["label"]) // 2)
            loss = torch.nn.functional.cross_entropy(model(batch["image"]), batch["label"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            average.update_parameters(model)
    evaluation = FaceDataset(test, tmp_path, augmentation.eval_transform())
    images = torch.stack([evaluation[i]["image"] for i in range(len(evaluation))])
    average.eval()
    with torch.no_grad():
        scores = average(images).softmax(1)[:, 1].numpy()
    auc = roc_auc_score(evaluation.labels.numpy(), scores)
    record_property("sbi_fake_auc", auc)
    print(f"\nSBI on real faces only -> held-out real vs fake face AUC: {auc:.3f}")
    assert (evaluation.labels == 1).sum() == (evaluation.labels == 0).sum() > 0
    assert auc > 0.6
