"""GPU paths a CPU machine cannot reach: MTCNN on CUDA, a mixed-precision training step,
``predict device=cuda``. Skipped without CUDA; ``make gpu-check`` runs them
(``pytest -m requires_gpu``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from deepfake_exp.benchmarks.common import config_detector, face_frames, iou
from deepfake_exp.benchmarks.training import build_detector, make_batches, plain_train_step_times

pytestmark = [
    pytest.mark.requires_gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
CUDA = torch.device("cuda")


def test_mtcnn_detector_on_cuda_finds_the_faces_the_cpu_finds() -> None:
    frames, truth = zip(*face_frames(1280, 720, 6, seed=3), strict=True)
    on_gpu = config_detector(device="cuda").detect(list(frames))
    on_cpu = config_detector(device="cpu").detect(list(frames))
    for gpu, cpu, true in zip(on_gpu, on_cpu, truth, strict=True):
        assert gpu and iou(gpu[0].box, true) >= 0.5
        assert iou(gpu[0].box, cpu[0].box) > 0.9


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_step_trains(precision: str) -> None:
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    module = build_detector("mobilenet_v2", 64)
    before = [p.detach().clone() for p in module.parameters()]
    times = plain_train_step_times(
        module, make_batches(3, 4, 64), CUDA, warmup=1, precision=precision
    )
    assert len(times) == 2 and all(t > 0 for t in times)
    after = list(module.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a.cpu(), b.cpu()) for a, b in zip(after, before, strict=True))


def test_lightning_fits_with_amp_on_the_gpu(tmp_path: Path) -> None:
    module = build_detector("mobilenet_v2", 64)
    trainer = pl.Trainer(
        accelerator="gpu", devices=1, precision="16-mixed", max_steps=2, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, default_root_dir=str(tmp_path),
    )  # fmt: skip
    loader = DataLoader(make_batches(2, 4, 64), batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_predict_on_cuda_scores_as_on_cpu(tiny_preprocessed, tmp_path: Path) -> None:
    import deepfake_exp.tasks.predict as predict
    from tests.test_evaluate_extras import shared_run
    from tests.test_predict import predict_cfg

    run_dir = shared_run(tiny_preprocessed)
    videos = sorted(Path(tiny_preprocessed[0]).rglob("*.mp4"))[:2]
    scores = {}
    for device in ("cuda", "cpu"):
        cfg = predict_cfg(tmp_path / device, run_dir, videos, f"device={device}")
        results = predict.run_predictions(cfg, tmp_path / device / "out")
        assert all(r["status"] == "ok" for r in results)
        scores[device] = [r["fake_prob"] for r in results]
    assert scores["cuda"] == pytest.approx(scores["cpu"], abs=1e-3)
