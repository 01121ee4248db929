"""Benchmarks measured side by side in one run: ``make bench`` / ``python -m deepfake_exp.bench``.

Each section is a function returning rows (dicts); targets are printed as measured ratios,
never asserted in tests. Results go to ``<run>/bench_<section>.csv`` and one Markdown table.
"""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from deepfake_exp.utils.io import atomic_write, write_csv

log = logging.getLogger(__name__)

#: section name -> "module:function"; each function takes the section's config as kwargs.
SECTIONS = {
    "extraction": "deepfake_exp.faces.benchmark:benchmark_extraction",
    "mtcnn": "deepfake_exp.faces.benchmark:benchmark_mtcnn",
    "training": "deepfake_exp.models.benchmark:benchmark_training",
    "augmentation": "deepfake_exp.bench_augment:benchmark_augmentations",
    "analysis": "deepfake_exp.analysis.bench:benchmark_analysis",
}


def run_section(name: str, options: dict) -> pd.DataFrame:
    module_name, function_name = SECTIONS[name].split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    start = time.perf_counter()
    rows = function(**options)
    log.info("section %s took %.1f s", name, time.perf_counter() - start)
    return pd.DataFrame(rows)


@hydra.main(version_base="1.3", config_path="../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    out_dir = Path(cfg.paths.output_dir)
    unknown = set(cfg.sections) - set(SECTIONS)
    if unknown:
        raise KeyError(f"unknown bench sections {sorted(unknown)}; choose from {sorted(SECTIONS)}")
    report = []
    for name in cfg.sections:
        options = OmegaConf.to_container(cfg[name], resolve=True) if name in cfg else {}
        table = run_section(name, options)
        write_csv(out_dir / f"bench_{name}.csv", table)
        markdown = table.to_markdown(index=False, floatfmt=".3g")
        print(f"\n## {name}\n\n{markdown}\n", flush=True)
        report.append(f"## {name}\n\n{markdown}\n")
    atomic_write(out_dir / "bench.md", lambda p: p.write_text("\n".join(report)))
    print(f"results: {out_dir.resolve()}")


if __name__ == "__main__":
    main()
