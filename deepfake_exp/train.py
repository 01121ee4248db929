"""Train a detector: ``python -m deepfake_exp.train [experiment=<name>] [key=value ...]``.

Selects the checkpoint on validation, then (unless ``test=false``) evaluates it: threshold
from val, metrics on test. Returns the optimized validation metric so a Hydra sweeper can use
it. ``resume=<run dir>`` continues a stopped run in its own folder under its own config
(see :mod:`deepfake_exp.tasks.resume`). The work is in :mod:`deepfake_exp.tasks.train`.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from deepfake_exp.tasks import train as task
from deepfake_exp.tasks.resume import ResumeError, resume_argv


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def _main(cfg: DictConfig) -> float | None:
    return task.run(cfg)


def main() -> float | None:
    """``python -m deepfake_exp.train``: a ``resume=<run>`` command line becomes the run's own."""
    argv = sys.argv
    try:
        sys.argv = resume_argv(argv)
    except ResumeError as error:  # before Hydra: report it the way Hydra reports errors
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(1)
    try:
        return _main()
    finally:
        sys.argv = argv


if __name__ == "__main__":
    main()
