"""Atomic writes: strict JSON (no NaN literal), modes that follow the umask, nothing half-written."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepfake_exp.utils.io import atomic_write, write_csv, write_json


def strict_loads(text: str):
    """``json.loads`` that rejects NaN/Infinity literals (which Python's parser accepts)."""

    def reject(literal: str):
        raise ValueError(f"non-standard JSON literal {literal}")

    return json.loads(text, parse_constant=reject)


def test_write_json_turns_nan_and_inf_into_null_recursively(tmp_path: Path) -> None:
    data = {
        "auc": float("nan"),
        "nested": {"loss": float("inf"), "values": [1.0, float("-inf"), np.float32("nan")]},
        "numpy": {"f": np.float64(0.25), "i": np.int64(3), "b": np.bool_(True)},
        "array": np.array([0.5, np.nan]),
        np.int64(7): "numpy key",
        "tuple": (np.float32(0.5), None),
        "path": tmp_path,
    }
    path = write_json(tmp_path / "out.json", data)
    loaded = strict_loads(path.read_text())
    assert loaded["auc"] is None
    assert loaded["nested"] == {"loss": None, "values": [1.0, None, None]}
    assert loaded["numpy"] == {"f": 0.25, "i": 3, "b": True}
    assert loaded["array"] == [0.5, None]
    assert loaded["7"] == "numpy key"
    assert loaded["tuple"] == [0.5, None]
    assert loaded["path"] == str(tmp_path)


def test_write_json_keeps_finite_values_exactly(tmp_path: Path) -> None:
    data = {"x": 0.1 + 0.2, "big": 1e300, "tiny": -5e-324, "n": 10**20}
    assert strict_loads(write_json(tmp_path / "v.json", data).read_text()) == data


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    before = os.umask(umask)
    try:
        written = [
            write_json(tmp_path / "a.json", {"a": 1}),
            write_csv(tmp_path / "b.csv", pd.DataFrame({"a": [1]})),
            atomic_write(tmp_path / "c.bin", lambda p: p.write_bytes(b"x")),
            atomic_write(tmp_path / "d.txt", lambda p: p.write_text("d")),
        ]
    finally:
        os.umask(before)
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path.name


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = write_json(tmp_path / "keep.json", {"version": 1})

    def crash(path: Path) -> None:
        path.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, crash)
    assert strict_loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]
