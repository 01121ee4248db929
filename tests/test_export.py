"""export: ONNX and TorchScript files give PyTorch's P(fake) on real face crops, any batch size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from deepfake_exp.inference import export
from deepfake_exp.tasks.export import export_checkpoint
from tests.conftest import compose_config
from tests.test_evaluate_extras import shared_run

ATOL = 1e-4


@pytest.fixture(scope="session")
def trained_run(tiny_preprocessed) -> Path:
    """The tiny run shared with the other extras tests (trained once per session)."""
    return shared_run(tiny_preprocessed)


def _face_batch(run_dir: Path, transform, n: int = 5) -> torch.Tensor:
    """Real test-split face crops through the run's eval transform."""
    import cv2

    faces_dir = Path(json.loads((run_dir / "metrics.json").read_text())["faces_dir"])
    manifest = pd.read_csv(faces_dir / "manifest.csv").head(n)
    images = [
        transform(cv2.cvtColor(cv2.imread(str(faces_dir / p)), cv2.COLOR_BGR2RGB))
        for p in manifest["face_path"]
    ]
    return torch.stack(images)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_checkpoint_matches_pytorch(trained_run, tmp_path, fmt: str) -> None:
    from deepfake_exp.inference import load_detector, safe_instantiate

    ckpt = trained_run / "checkpoints" / "best.ckpt"
    info = export_checkpoint(ckpt, tmp_path, fmt)
    path = Path(info["file"])
    assert path.name == {"onnx": "model.onnx", "torchscript": "model.ts"}[fmt] and path.is_file()
    assert info["max_abs_difference"] <= ATOL
    saved = json.loads((tmp_path / "export.json").read_text())
    assert saved["input"]["shape"] == ["batch", 3, 64, 64]
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert saved["video_threshold_from_val"] == metrics["thresholds_from_val"]["video"]
    assert saved["video_threshold_tta"] == metrics["tta"]  # chosen on scores with this TTA

    module, cfg = load_detector(ckpt)
    images = _face_batch(trained_run, safe_instantiate(cfg.augmentation).eval_transform())
    with torch.no_grad():
        expected = module.predict_proba(images).numpy()
    got = export.load_exported(path)(images.numpy())
    assert got.shape == (len(images),)  # a batch size other than the traced one
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


VIT = ["model=vit", "model.input_size=32", "model.patch_size=8", "model.depth=2"]
EFFICIENTNET = ["model=efficientnet_b0", "model.input_size=64", "module.head=sigmoid"]


@pytest.mark.parametrize(
    ("overrides", "fmt"),
    [(VIT, "onnx"), (VIT, "torchscript"), (EFFICIENTNET, "onnx")],
    ids=["vit-onnx", "vit-torchscript", "efficientnet_b0_sigmoid-onnx"],
)
def test_other_architectures_and_heads_export_faithfully(tmp_path, overrides, fmt) -> None:
    cfg = compose_config("train", overrides)
    module = instantiate(cfg.module, backbone=instantiate(cfg.model)).eval()
    model = export.exportable(module)
    size = cfg.model.input_size
    spec = export.export_format(fmt)
    path = spec.export(model, torch.randn(2, 3, size, size), tmp_path / spec.filename, 17)
    difference = export.max_abs_difference(model, export.load_exported(path), size)
    assert difference <= ATOL


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="torchscript"):
        export.export_format("tflite")
