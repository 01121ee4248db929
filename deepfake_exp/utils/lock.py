"""One writer per folder: a lock file naming its holder, so two runs never write one directory.

The lock is a file created with ``O_EXCL`` (atomic on local and NFS v3+ file systems) holding
the holder's pid, host and start time. A lock left by a process that died on this host is
taken over with a warning; a lock held elsewhere (or by a live process) is an error that says
who holds it and how to clear it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class LockedError(RuntimeError):
    """Another live process holds the folder's lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _try_create(path: Path, holder: dict) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump(holder, handle)
    return True


@contextmanager
def exclusive_lock(
    directory: str | Path, what: str = "run", name: str = LOCK_NAME
) -> Iterator[Path]:
    """Hold ``<directory>/<name>`` for the duration of the block; raise ``LockedError`` if taken."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    if not _try_create(path, holder):
        other = _read_holder(path)
        pid, host = other.get("pid"), other.get("host")
        stale = host == holder["host"] and isinstance(pid, int) and not _pid_alive(pid)
        if not stale:
            raise LockedError(
                f"{what} folder {directory.resolve()} is in use by pid {pid} on host {host} "
                f"since {other.get('started')} ({other.get('command', '?')}). Wait for it to "
                f"finish, or, if that process is gone, delete {path.resolve()}"
            )
        log.warning("taking over a stale lock of dead pid %s in %s", pid, directory)
        path.unlink(missing_ok=True)
        if not _try_create(path, holder):
            raise LockedError(f"{what} folder {directory.resolve()} was locked by another process")
    try:
        yield path
    finally:
        if _read_holder(path).get("pid") == holder["pid"]:
            path.unlink(missing_ok=True)
