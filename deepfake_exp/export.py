"""Export a trained detector: ``python -m deepfake_exp.export ckpt_path=... format=onnx``.

The exported graph takes what the eval transform produces, a normalised ``(B, 3, S, S)`` float
batch at the model's input size ``S`` (any batch size), and returns P(fake) per image, shape
``(B,)``. ``export.json`` next to the file records ``S``, the normalisation and the video
threshold chosen on val, so a consumer needs nothing else from this project. The export is
checked against PyTorch on a random batch of another size than the one traced.

ONNX uses the TorchScript-based exporter (``dynamo=False``): it needs only ``onnx`` (and
``onnxruntime`` for the check), where the default dynamo exporter would also need
``onnxscript``. Both it and ``torch.jit`` warn that they are deprecated; they still produce
the formats deployment tools read today, and the warnings are silenced here.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig
from torch import Tensor, nn

from deepfake_exp.inference import load_detector, resolve_checkpoint, run_threshold
from deepfake_exp.models.heads import fake_probability
from deepfake_exp.utils.io import write_json
from deepfake_exp.utils.run import save_run_info

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "p_fake"
TRACE_BATCH = 2  # traced with 2 images, checked with CHECK_BATCH: the batch axis is dynamic
CHECK_BATCH = 3


@dataclass
class ExportSchema:
    task_name: str = "export"
    ckpt_path: str | None = None
    run_dir: str | None = None
    format: str = "onnx"
    opset: int = 17
    out_dir: str | None = None
    check: bool = True
    atol: float = 1e-4
    # Skip the checkpoint's _target_ allow-list (deepfake_exp/inference/safe.py). Off: a
    # downloaded checkpoint must not run code; on only for a file you made yourself.
    trust_checkpoint: bool = False
    paths: Any = MISSING


ConfigStore.instance().store(name="export_schema", node=ExportSchema)


class FakeProbability(nn.Module):
    """Backbone + head + the head's probability: normalised images in, P(fake) ``(B,)`` out.

    Holds the backbone and head, not the LightningModule, because tracing walks every
    attribute and Lightning's ``trainer`` property raises outside a Trainer.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, head_kind: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.head_kind = head_kind

    def forward(self, images: Tensor) -> Tensor:
        return fake_probability(self.head_kind, self.head(self.backbone(images)))


def exportable(module: Any) -> FakeProbability:
    """The detector as a plain eval-mode module that tracers can record.

    efficientnet-pytorch's memory-efficient Swish is a custom autograd function that neither
    exporter can record; ``set_swish(memory_efficient=False)`` swaps in the plain formula.
    """
    model = FakeProbability(module.backbone, module.head, module.hparams.head).eval()
    for child in model.modules():
        if hasattr(child, "set_swish"):
            child.set_swish(memory_efficient=False)
    return model


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the tracer's shape-check and deprecation warnings (see the module doc)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*legacy Torch")
        warnings.filterwarnings("ignore", category=UserWarning, message=r"Constant folding")
        yield


def export_onnx(model: nn.Module, example: Tensor, path: Path, opset: int = 17) -> Path:
    """ONNX with a dynamic batch axis on input and output."""
    with _quiet():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
        )
    return path


def export_torchscript(model: nn.Module, example: Tensor, path: Path, opset: int = 17) -> Path:
    """A traced TorchScript module (``torch.jit.load`` it; no Python model code needed)."""
    with _quiet(), torch.no_grad():
        # The tracer's own check re-traces (slow for EfficientNet); export_checkpoint checks
        # the saved file instead, on a batch size other than the traced one.
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path))
    return path


def onnx_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Run an exported ONNX file with onnxruntime on CPU."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("checking an ONNX export needs `pip install onnxruntime`") from error
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]


def torchscript_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Run an exported TorchScript file."""
    with _quiet():
        loaded = torch.jit.load(str(path), map_location="cpu").eval()

    def run(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded(torch.from_numpy(images)).numpy()

    return run


@dataclass(frozen=True)
class ExportFormat:
    """How one format is written and read back."""

    filename: str
    export: Callable[[nn.Module, Tensor, Path, int], Path]
    runner: Callable[[Path], Callable[[np.ndarray], np.ndarray]]


FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat("model.onnx", export_onnx, onnx_runner),
    "torchscript": ExportFormat("model.ts", export_torchscript, torchscript_runner),
}


def export_format(name: str) -> ExportFormat:
    if name not in FORMATS:
        raise ValueError(f"unknown export format {name!r}; choose one of {sorted(FORMATS)}")
    return FORMATS[name]


def load_exported(path: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """A ``float32 (B, 3, S, S) -> (B,)`` function over an exported file, by its suffix."""
    path = Path(path)
    for fmt in FORMATS.values():
        if path.name.endswith(Path(fmt.filename).suffix):
            return fmt.runner(path)
    raise ValueError(f"{path}: not an exported model (expected one of {sorted(FORMATS)})")


def max_abs_difference(
    model: nn.Module, run: Callable[[np.ndarray], np.ndarray], input_size: int, seed: int = 0
) -> float:
    """Largest |P_exported - P_torch| on a random normalised batch."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(CHECK_BATCH, 3, input_size, input_size, generator=generator)
    with torch.no_grad():
        expected = model(images).numpy()
    got = np.asarray(run(images.numpy()))
    if got.shape != expected.shape:
        raise AssertionError(f"exported output shape {got.shape} != PyTorch's {expected.shape}")
    return float(np.abs(got - expected).max())


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

    Raises:
        AssertionError: ``check`` is on and the export differs from PyTorch by more than
            ``atol`` (the file is kept for inspection).
    """
    spec = export_format(fmt)
    ckpt_path = Path(ckpt_path)
    module, cfg = load_detector(ckpt_path, trust_checkpoint=trust_checkpoint)
    model = exportable(module)
    threshold = run_threshold(ckpt_path)
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


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
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


if __name__ == "__main__":
    main()
