"""Atomic file writes: a crash never leaves a half-written file under the final name.

Files get the mode any other file gets here (``0o666`` less the umask), so a group-shared
folder stays readable; JSON is strict (no ``NaN`` literal any parser could reject).
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd


def _create_temporary(path: Path) -> Path:
    """A new empty file next to ``path``, created with ``0o666`` so the kernel applies the umask.

    ``tempfile.mkstemp`` creates 0600 files whatever the umask; ``os.replace`` keeps that mode.
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{path.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` then move the result onto ``path`` in one ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf as ``None`` and numpy/torch scalars and arrays as plain Python.

    Recursive over dicts, lists and tuples; anything else JSON cannot hold is left for
    ``json.dumps(default=str)``.
    """
    if isinstance(value, dict):
        return {_json_key(key): json_safe(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(inner) for inner in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy / torch scalar or array
        return json_safe(value.tolist())
    return value


def _json_key(key: Any) -> Any:
    return key if isinstance(key, str | int | float | bool) or key is None else str(key)


def dumps_json(data: Any) -> str:
    """Pretty, strict JSON text: NaN/inf become ``null`` (see :func:`json_safe`)."""
    return json.dumps(json_safe(data), indent=2, default=str, allow_nan=False)


def write_json(path: str | Path, data: Any) -> Path:
    """Atomically write pretty, strict JSON: a NaN or infinite value is written as ``null``."""
    text = dumps_json(data)
    return atomic_write(path, lambda p: p.write_text(text))


def write_csv(path: str | Path, frame: pd.DataFrame) -> Path:
    """Atomically write a CSV without the index."""
    return atomic_write(path, lambda p: frame.to_csv(p, index=False))
