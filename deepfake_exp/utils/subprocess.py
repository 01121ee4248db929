"""Child processes whose output goes to a log file: one crash or memory leak stays in its own
process, and the log says why it failed."""

from __future__ import annotations

import subprocess
from pathlib import Path


def run_logged(command: list[str], log_path: str | Path) -> int:
    """Run ``command`` with stdout and stderr appended to ``log_path``; returns the exit code."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as stream:
        stream.write(f"$ {' '.join(command)}\n")
        stream.flush()
        return subprocess.run(
            command, stdout=stream, stderr=subprocess.STDOUT, check=False
        ).returncode


def log_tail(path: str | Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log ('' when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
