"""Pretrained weights: from the torch hub or Hugging Face hub cache, or from a local file.

Both libraries we use publish ImageNet weights as a URL: torchvision through its ``weights=``
enums (``get_model_weights(arch).DEFAULT.url``, what ``enum.get_state_dict`` fetches) and
efficientnet-pytorch through its ``url_map`` (what ``EfficientNet.from_pretrained`` fetches with
``torch.utils.model_zoo.load_url``). Both end in ``torch.hub.load_state_dict_from_url``, which
reads ``<torch.hub.get_dir()>/checkpoints/<url basename>`` when present and downloads it
otherwise. We call that function ourselves so every file is read the same safe way
(``weights_only=True``, on the CPU) and loaded strictly, and so a machine without network
gets one clear error saying where to put the file instead of a bare ``URLError``.

timm publishes its weights on the Hugging Face hub; timm's own loader reads them from the hub
cache (``HF_HUB_CACHE``, by default ``$HF_HOME/hub``) because it also converts foreign
checkpoints (OpenAI CLIP, ...) with a per-model filter. Its failures get the same kind of
message: :func:`hf_hub_error` names the cache folder and ``model.weights_path=``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision.models as tvm
from efficientnet_pytorch.utils import url_map as efficientnet_url_map
from torch import Tensor, nn

StateDict = dict[str, Tensor]
KeyRemap = Callable[[StateDict], StateDict]


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights could not be fetched, read or matched to the model."""


def hub_checkpoint_path(url: str) -> Path:
    """Where ``torch.hub`` caches (and looks for) the file behind ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def torchvision_weights_url(arch: str) -> str:
    """URL of torchvision's default ImageNet weights for ``arch`` (its ``weights=`` enum)."""
    return tvm.get_model_weights(arch).DEFAULT.url


def efficientnet_weights_url(arch: str) -> str | None:
    """URL efficientnet-pytorch's ``from_pretrained`` downloads for ``arch`` (None: unpublished)."""
    return efficientnet_url_map.get(arch)


def download_state_dict(url: str, check_hash: bool = False) -> StateDict:
    """Read the hub-cached file for ``url``, downloading it first if it is missing.

    Raises:
        PretrainedWeightsError: The download failed (no network, HTTP error, bad hash): the
            message names the file to place in the cache and the ``weights_path`` override.
            Or the cached file is unreadable: the message says to delete it.
    """
    cached = hub_checkpoint_path(url)
    try:
        state = torch.hub.load_state_dict_from_url(
            url, progress=False, check_hash=check_hash, map_location="cpu", weights_only=True
        )
    # Downloads fail with OSError (URLError, timeouts) or RuntimeError (hash); torch.load on a
    # bad file (an HTML error page saved as .pth) with almost any exception type.
    except Exception as err:
        if cached.exists():
            raise PretrainedWeightsError(
                f"could not read the cached weights {cached} ({err!r}); delete the file to "
                "download it again, or pass model.weights_path=/path/to/state_dict.pth"
            ) from err
        raise PretrainedWeightsError(
            f"could not get pretrained weights from {url} ({err}). Without network, either "
            f"copy that file to {cached} (the torch hub cache, torch.hub.get_dir()/checkpoints; "
            "TORCH_HOME moves it) or pass a local state dict with "
            "model.weights_path=/path/to/state_dict.pth"
        ) from err
    return _checked(state, cached)


def read_state_dict(path: str | Path) -> StateDict:
    """Load a state dict saved with ``torch.save`` or as ``.safetensors`` (tensors, on the CPU)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PretrainedWeightsError(f"model.weights_path={path} does not exist or is not a file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # timm's dependency; hub files use it

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load on arbitrary bytes can raise almost any type
        raise PretrainedWeightsError(f"could not read weights file {path}: {err!r}") from err
    return _checked(state, path)


def _checked(state: object, path: Path) -> StateDict:
    """``state`` itself (keeping the ``_metadata`` load_state_dict reads) if it is a state dict."""
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise PretrainedWeightsError(
            f"{path} is not a state dict (a mapping of parameter names to tensors)"
        )
    return state  # type: ignore[return-value]


def load_pretrained(
    model: nn.Module,
    *,
    url: str | None,
    weights_path: str | Path | None = None,
    remap: KeyRemap | None = None,
    check_hash: bool = False,
) -> None:
    """Strictly load ImageNet weights into the library model, before its classifier is removed.

    Args:
        model: The library's full classifier (torchvision model or ``EfficientNet``).
        url: Where the library publishes the weights (read from the hub cache if present);
            None when there are none, so only ``weights_path`` can load.
        weights_path: A local state dict to use instead of ``url`` (works offline).
        remap: Renames legacy keys of the published file (torchvision's DenseNet).
        check_hash: Verify the sha256 prefix in the file name when downloading.

    Raises:
        PretrainedWeightsError: The weights could not be fetched or do not fit the model.
    """
    if weights_path is not None:
        source, state = str(weights_path), read_state_dict(weights_path)
    elif url is None:
        raise PretrainedWeightsError(
            f"no published weights for {type(model).__name__}; "
            "pass model.weights_path=/path/to/state_dict.pth or set model.pretrained=false"
        )
    else:
        source, state = url, download_state_dict(url, check_hash=check_hash)
    if remap is not None:
        state = remap(state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise PretrainedWeightsError(
            f"weights from {source} do not match {type(model).__name__}: {err}"
        ) from err


def hf_hub_repo_cache(repo_id: str) -> Path:
    """The Hugging Face hub cache folder of ``repo_id`` (where ``hf_hub_download`` looks)."""
    from huggingface_hub import constants  # read now: HF_HUB_CACHE may be patched or moved

    return Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"


def hf_hub_error(model_name: str, repo_id: str | None, err: Exception) -> PretrainedWeightsError:
    """The offline-friendly error for a timm model whose hub weights could not be loaded."""
    if repo_id is None:
        where = "timm publishes no Hugging Face hub weights for it"
    else:
        where = (
            f"without network, put the hub files of {repo_id} in {hf_hub_repo_cache(repo_id)} "
            "(the Hugging Face hub cache: `hf download "
            f"{repo_id}` on a machine with network, then copy $HF_HOME/hub; HF_HOME or "
            "HF_HUB_CACHE move it)"
        )
    return PretrainedWeightsError(
        f"could not load pretrained weights of timm model {model_name!r} ({err!r}); {where}, "
        "or pass a local state dict with model.weights_path=/path/to/weights.safetensors|.pth"
    )


_DENSENET_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def densenet_remap(state: StateDict) -> StateDict:
    """Rename ``denselayerN.norm.1.weight`` to ``denselayerN.norm1.weight``.

    torchvision's published DenseNet files predate the ban on dots in module names; its own
    builder renames them the same way. Already-renamed keys pass through unchanged.
    """
    renamed = OrderedDict((_DENSENET_LEGACY_KEY.sub(r"\1\2", k), v) for k, v in state.items())
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:
        renamed._metadata = metadata  # type: ignore[attr-defined]
    return renamed
