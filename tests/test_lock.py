"""One writer per folder: a live holder blocks, a dead one is taken over, the lock is released."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from deepfake_exp.utils.lock import LOCK_NAME, LockedError, exclusive_lock


def test_lock_is_held_then_released(tmp_path):
    with exclusive_lock(tmp_path, what="training run") as path:
        holder = json.loads(path.read_text())
        assert holder["host"] == socket.gethostname()
        busy = pytest.raises(LockedError, match="training run folder .* in use by pid")
        with busy, exclusive_lock(tmp_path, what="training run"):
            pass
    assert not (tmp_path / LOCK_NAME).exists()
    with exclusive_lock(tmp_path):  # free again
        pass


def test_live_holder_in_another_process_blocks(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        holder = {"pid": sleeper.pid, "host": socket.gethostname(), "started": "t", "command": "x"}
        (tmp_path / LOCK_NAME).write_text(json.dumps(holder))
        busy = pytest.raises(LockedError, match=f"pid {sleeper.pid}.*delete")
        with busy, exclusive_lock(tmp_path, what="preprocessing"):
            pass
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = {"pid": dead.pid, "host": socket.gethostname(), "started": "t", "command": "x"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(holder))
    with exclusive_lock(tmp_path) as path:
        assert json.loads(path.read_text())["pid"] != dead.pid


def test_lock_on_another_host_is_never_taken_over(tmp_path):
    holder = {"pid": 1, "host": "some-other-node", "started": "t", "command": "x"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(holder))
    with pytest.raises(LockedError, match="some-other-node"), exclusive_lock(tmp_path):
        pass
