"""Export formats of the P(fake) model: ONNX and TorchScript writers, and runners to read them.

The exported graph takes what the eval transform produces, a normalised ``(B, 3, S, S)`` float
batch at the model's input size ``S`` (any batch size), and returns P(fake) per image, shape
``(B,)``: :class:`deepfake_exp.inference.proba.FakeProbability`, traced.

ONNX uses the TorchScript-based exporter (``dynamo=False``): it needs only ``onnx`` (and
``onnxruntime`` for the check), where the default dynamo exporter would also need
``onnxscript``. Both it and ``torch.jit`` warn that they are deprecated; they still produce
the formats deployment tools read today, and the warnings are silenced here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from deepfake_exp.inference.proba import FakeProbability, fake_probability_model

INPUT_NAME = "image"
OUTPUT_NAME = "p_fake"
TRACE_BATCH = 2  # traced with 2 images, checked with CHECK_BATCH: the batch axis is dynamic
CHECK_BATCH = 3


def exportable(module: Any) -> FakeProbability:
    """The detector's P(fake) model in eval mode, as tracers can record it.

    efficientnet-pytorch's memory-efficient Swish is a custom autograd function that neither
    exporter can record; ``set_swish(memory_efficient=False)`` swaps in the plain formula.
    """
    model = fake_probability_model(module).eval()
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
        # The tracer's own check re-traces (slow for EfficientNet); the export task checks
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
    """The writer and runner of a format, with a clear error for an unknown name."""
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
