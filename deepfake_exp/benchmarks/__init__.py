"""Benchmarks, measured side by side: ``make bench`` / ``python -m deepfake_exp.bench``.

Adding a section: a module here with ``run(cfg: DictConfig) -> pd.DataFrame`` (``cfg`` is the
section's block of ``conf/bench.yaml``), one line in :data:`SECTIONS` and one block in
``conf/bench.yaml``. This file imports nothing heavy, so the config layer can read the names.
"""

#: section name -> "module:function"; the function takes the section's config block.
SECTIONS = {
    "extraction": "deepfake_exp.benchmarks.extraction:run",
    "mtcnn": "deepfake_exp.benchmarks.mtcnn:run",
    "training": "deepfake_exp.benchmarks.training:run",
    "augmentation": "deepfake_exp.benchmarks.augmentation:run",
    "analysis": "deepfake_exp.benchmarks.analysis:run",
    "box_reuse": "deepfake_exp.benchmarks.box_reuse:run",
    "projection": "deepfake_exp.benchmarks.box_reuse:run_projection",
    "shards": "deepfake_exp.benchmarks.shards:run",
}
