"""The export task: a checkpoint's P(fake) model as ONNX or TorchScript, checked, with its
``export.json`` (input size, normalisation, the video threshold chosen on val), so a consumer
needs nothing else from this project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from deepfake_exp.config import validate_config
from deepfake_exp.inference.checkpoint import load_detector, resolve_checkpoint
from deepfake_exp.inference.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    TRACE_BATCH,
    export_format,
    exportable,
    max_abs_difference,
)
from deepfake_exp.runs import run_dir_of
from deepfake_exp.utils.io import write_json
from deepfake_exp.utils.run import save_run_info


def export_checkpoint(
    ckpt_path: str | Path,
    out_dir: str | Path,
    fmt: str = "onnx",
    opset: int = 17,
    check: bool = True,
    atol: float = 1e-4,
    trust_checkpoint: bool = False,
) -> dict:
    """Write ``model.onnx`` or ``model.ts`` plus ``export.json``; returns that metadata.

    The graph is checked against PyTorch on a random batch of another size than the traced
    one (the batch axis is dynamic).

    Raises:
        AssertionError: ``check`` is on and the export differs from PyTorch by more than
            ``atol`` (the file is kept for inspection).
    """
    spec = export_format(fmt)
    ckpt_path = Path(ckpt_path)
    module, cfg = load_detector(ckpt_path, trust_checkpoint=trust_checkpoint)
    model = exportable(module)
    threshold = run_dir_of(ckpt_path).val_threshold()
    size = int(module.backbone.input_size)
    example = torch.randn(TRACE_BATCH, 3, size, size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = spec.export(model, example, out_dir / spec.filename, opset)
    info: dict[str, Any] = {
        "format": fmt,
        "file": str(path.resolve()),
        "checkpoint": str(ckpt_path.resolve()),
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", 3, size, size],
            "dtype": "float32",
            "layout": "RGB, (pixel / 255 - mean) / std",
            "mean": list(module.backbone.mean),
            "std": list(module.backbone.std),
        },
        "output": {"name": OUTPUT_NAME, "shape": ["batch"], "meaning": "P(fake)"},
        "video_aggregation": cfg.module.video_aggregation,
        "video_threshold_from_val": threshold.video if threshold else None,
        "video_threshold_tta": threshold.tta if threshold else None,
        "opset": opset if fmt == "onnx" else None,
        "torch": torch.__version__,
    }
    if check:
        difference = max_abs_difference(model, spec.runner(path), size)
        info["max_abs_difference"] = difference
        if not difference <= atol:
            write_json(out_dir / "export.json", info)
            raise AssertionError(
                f"{path.name} differs from PyTorch by {difference:.3g} > atol={atol}"
            )
    write_json(out_dir / "export.json", info)
    return info


def run(cfg: DictConfig) -> dict:
    """Export the run's (or given) checkpoint; prints where and how faithfully."""
    validate_config(cfg)  # ranges checked, choices as plain strings
    ckpt = resolve_checkpoint(cfg.ckpt_path, cfg.run_dir)
    out_dir = Path(cfg.out_dir or cfg.paths.output_dir)
    save_run_info(cfg.paths.output_dir, cfg)
    info = export_checkpoint(
        ckpt, out_dir, cfg.format, cfg.opset, cfg.check, cfg.atol, cfg.trust_checkpoint
    )
    checked = (
        f", max |difference| vs PyTorch = {info['max_abs_difference']:.2e}"
        if "max_abs_difference" in info
        else ""
    )
    print(f"{info['format']}: {info['file']}{checked}")
    print(f"input {info['input']['shape']} normalised with mean/std in export.json; output P(fake)")
    return info
