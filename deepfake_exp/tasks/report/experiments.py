"""Running a report set's experiments: one ``train`` process per experiment, finished runs
collected instead of retrained, stale runs (config changed since) rerun or flagged.

Each experiment is trained by its own ``python -m deepfake_exp.train`` process into
``<out_dir>/runs/<name>`` (after ``deepfake_exp.preprocess``, which skips work already done),
so one crash or a memory leak cannot take the others down.
"""

from __future__ import annotations

import glob
import logging
import time
from datetime import datetime
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from deepfake_exp.runs import METRICS, RunDir
from deepfake_exp.tasks.config_diff import (
    compose_train_config,
    config_changes,
    default_values,
    flatten,
    resolved,
)
from deepfake_exp.utils.io import write_json
from deepfake_exp.utils.subprocess import log_tail, run_logged

log = logging.getLogger(__name__)

#: What the report records about the process that trained a run (its wall time).
RUN_INFO = "report_run.json"
#: Config keys that say where a run lives or what a study reported, not how it trains.
IGNORED_CONFIG_KEYS = ("paths", "published")


def is_done(run_dir: Path) -> bool:
    """A run is finished once evaluation wrote ``metrics.json`` (train with ``test=true``)."""
    return RunDir(run_dir).is_evaluated()


def train_command(python: str, overrides: list[str], run_dir: Path) -> list[str]:
    """The train process of one experiment, its run directory pinned by Hydra."""
    return [python, "-m", "deepfake_exp.train", *overrides, f"hydra.run.dir={run_dir}"]


def preprocess_command(python: str, overrides: list[str], run_dir: Path) -> list[str]:
    """Preprocessing for one experiment's dataset; a no-op when its faces already exist."""
    return [
        python, "-m", "deepfake_exp.preprocess", *overrides, "progress=false",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip


def _move_aside(run_dir: Path) -> None:
    """Keep an old run under another name rather than deleting it (``retrain=true``)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.old-{stamp}")
    run_dir.rename(target)
    log.info("moved %s aside to %s", run_dir, target)


# ---- stale runs: a finished run made with another config than the experiment's current one


def config_differences(
    saved: DictConfig, fresh: DictConfig, ignore: tuple[str, ...] = IGNORED_CONFIG_KEYS
) -> list[str]:
    """``key: saved -> fresh`` for every setting that differs (``ignore``'d top-level keys aside).

    ``fresh`` is resolved with the saved run's ``paths``, so keys derived from them (run and
    faces folders) compare equal when only the machine or the run directory differ; keys
    added to the project since the run, at their defaults, are no difference.
    """
    paths = saved.get("paths")
    changes = config_changes(
        flatten(OmegaConf.to_container(saved, resolve=True)),
        resolved(fresh, paths),
        skip=lambda key: key.split(".", 1)[0] in ignore,
        defaults=default_values(paths),
    )
    return [f"{key}: {before!r} -> {after!r}" for key, (before, after) in changes.items()]


def stale_reason(run_dir: Path, overrides: list[str]) -> str:
    """Why a finished run no longer matches ``overrides`` composed now ('' when it does)."""
    path = RunDir(run_dir).config_path
    if not path.is_file():
        return f"no {path.name} to compare"
    try:
        fresh = compose_train_config(overrides)
    except (HydraException, OmegaConfBaseException) as error:
        return f"its overrides no longer compose: {error}".splitlines()[0]
    changed = config_differences(OmegaConf.load(path), fresh)
    if not changed:
        return ""
    more = f" (+{len(changed) - 5} more)" if len(changed) > 5 else ""
    return "config differs from the experiment's current one: " + "; ".join(changed[:5]) + more


def run_experiment(
    name: str,
    overrides: list[str],
    runs_dir: Path,
    python: str,
    preprocess: bool = True,
) -> tuple[str, str]:
    """Preprocess (if asked) and train one experiment; returns ``(status, message)``."""
    run_dir = runs_dir / name
    log_path = runs_dir / "logs" / f"{name}.log"
    started = time.perf_counter()
    steps = []
    if preprocess:
        steps.append(
            ("preprocess", preprocess_command(python, overrides, runs_dir / "preprocess" / name))
        )
    steps.append(("train", train_command(python, overrides, run_dir)))
    for step, command in steps:
        log.info("%s: %s", name, step)
        code = run_logged(command, log_path)
        if code != 0:
            message = f"{step} exited with code {code}; log {log_path}:\n{log_tail(log_path)}"
            log.error("%s: %s", name, message)
            return "failed", message
    seconds = time.perf_counter() - started
    write_json(run_dir / RUN_INFO, {"name": name, "seconds": seconds, "overrides": overrides})
    if not is_done(run_dir):
        return "failed", f"training finished without {METRICS} (was test=false?); log {log_path}"
    log.info("%s: done in %.1f min", name, seconds / 60)
    return "ok", ""


class PrepareError(RuntimeError):
    """A dataset of the report set's ``prepare`` list could not be preprocessed."""


def prepare_datasets(report: DictConfig, runs_dir: Path, python: str) -> list[str]:
    """Preprocess each ``prepare`` entry (``name: overrides`` after ``common``) once.

    A no-op for faces that exist already (preprocessing skips done work). A failure stops the
    report (:class:`PrepareError` with the log's tail): rows would evaluate on missing faces.
    Returns the names prepared.
    """
    entries = OmegaConf.select(report, "prepare", default=None) or {}
    for name, overrides in entries.items():
        log_path = runs_dir / "logs" / f"prepare_{name}.log"
        out_dir = runs_dir / "preprocess" / f"prepare_{name}"
        log.info("prepare %s: preprocess", name)
        command = preprocess_command(python, [*report.common, *overrides], out_dir)
        if (code := run_logged(command, log_path)) != 0:
            raise PrepareError(
                f"prepare {name}: preprocess exited with code {code}; log {log_path}:\n"
                f"{log_tail(log_path)}"
            )
    return list(entries)


def run_experiments(
    report: DictConfig,
    runs_dir: Path,
    python: str,
    retrain: bool = False,
    stale: str = "rerun",
) -> dict[str, tuple[Path, str, str]]:
    """Every experiment of the set, trained unless already finished with its current config.

    Before the first experiment that must be trained, the set's ``prepare`` datasets (the
    other faces folders its rows evaluate on, e.g. a held-out method or Celeb-DF) are
    preprocessed (:func:`prepare_datasets`).

    Returns:
        name -> (run dir, status, message); status ``stale`` (``stale="keep"``) marks a
        finished run whose config differs from what the experiment composes to now.
    """
    if stale not in ("rerun", "keep"):
        raise ValueError(f"stale must be 'rerun' or 'keep', got {stale!r}")
    runs: dict[str, tuple[Path, str, str]] = {}
    prepared = not report.preprocess
    for name, overrides in report.experiments.items():
        run_dir = runs_dir / name
        args = [*report.common, *overrides]
        if is_done(run_dir) and not retrain:
            reason = stale_reason(run_dir, args)
            if not reason:
                log.info("%s: finished run found, collecting %s", name, run_dir)
                runs[name] = (run_dir, "ok", "")
                continue
            if stale == "keep":
                log.warning("%s: stale run kept (stale=keep): %s", name, reason)
                runs[name] = (run_dir, "stale", reason)
                continue
            log.warning("%s: retraining, %s", name, reason)
        if not prepared:
            prepare_datasets(report, runs_dir, python)
            prepared = True
        if run_dir.exists():
            _move_aside(run_dir)
        status, message = run_experiment(name, args, runs_dir, python, report.preprocess)
        runs[name] = (run_dir, status, message)
    return runs


def collect_run_dirs(patterns: list[str]) -> dict[str, tuple[Path, str, str]]:
    """Existing run directories (globs expanded), named by their folder (made unique).

    A run launched by Hydra whose ``.hydra/overrides.yaml`` composes to another config now
    (its experiment changed since) gets status ``stale`` and the differing keys.
    """
    runs: dict[str, tuple[Path, str, str]] = {}
    for pattern in patterns:
        matches = sorted(glob.glob(str(Path(pattern).expanduser()))) or [pattern]
        for match in matches:
            path = Path(match)
            if not path.is_dir():
                raise FileNotFoundError(f"run_dirs: {match} is not a directory")
            name = path.name
            if name in runs:
                name = f"{path.parent.name}/{path.name}"
            if name in runs:
                name = f"{name}-{len(runs)}"
            status, message = ("ok", "") if is_done(path) else ("unfinished", f"no {METRICS}")
            if status == "ok" and RunDir(path).overrides_path.is_file():  # launched by Hydra
                message = stale_reason(path, RunDir(path).overrides())
                status = "stale" if message else "ok"
            runs[name] = (path, status, message)
    return runs
