"""The bench task: run the sections ``conf/bench.yaml`` lists, one CSV each plus ``bench.md``.

Section names are checked against :data:`~deepfake_exp.benchmarks.SECTIONS` before any
section runs, so a typo fails at once instead of after the earlier sections' minutes.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from deepfake_exp.benchmarks import SECTIONS
from deepfake_exp.utils.io import atomic_write, write_csv

log = logging.getLogger(__name__)

Section = Callable[[DictConfig], pd.DataFrame]


def check_sections(names: Sequence[str]) -> None:
    """Fail with the valid names when ``names`` holds one that is not in ``SECTIONS``."""
    unknown = set(names) - set(SECTIONS)
    if unknown:
        raise KeyError(f"unknown bench sections {sorted(unknown)}; choose from {sorted(SECTIONS)}")


def section(name: str) -> Section:
    """The ``run`` function of section ``name``."""
    check_sections([name])
    module_name, function_name = SECTIONS[name].split(":")
    return getattr(importlib.import_module(module_name), function_name)


def run_section(name: str, cfg: DictConfig | None) -> pd.DataFrame:
    """One section over its config block (``None``: its defaults), timed in the log."""
    start = time.perf_counter()
    table = section(name)(cfg)
    log.info("section %s took %.1f s", name, time.perf_counter() - start)
    return table


def run(cfg: DictConfig) -> Path:
    """Every section of ``cfg.sections``: printed, ``bench_<name>.csv`` and ``bench.md``."""
    out_dir = Path(cfg.paths.output_dir)
    check_sections(cfg.sections)
    report = []
    for name in cfg.sections:
        table = run_section(name, cfg.get(name))
        write_csv(out_dir / f"bench_{name}.csv", table)
        markdown = table.to_markdown(index=False, floatfmt=".3g")
        print(f"\n## {name}\n\n{markdown}\n", flush=True)
        report.append(f"## {name}\n\n{markdown}\n")
    atomic_write(out_dir / "bench.md", lambda p: p.write_text("\n".join(report)))
    print(f"results: {out_dir.resolve()}")
    return out_dir
