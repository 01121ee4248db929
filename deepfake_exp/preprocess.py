"""Extract faces of a dataset: ``python -m deepfake_exp.preprocess dataset=<name> [...]``.

Resumable (done videos are skipped), shardable (``shard=i num_shards=n``, then one run with
``merge=true``), and one bad file never stops the run: it lands in ``failures.csv``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from deepfake_exp import config as _config  # noqa: F401  (registers the schemas)
from deepfake_exp.data.sources.base import Source
from deepfake_exp.faces.extract import (
    ExtractionSummary,
    FaceExtractor,
    NoUsableVideosError,
    merge_parts,
    shard_records,
)
from deepfake_exp.utils.io import write_json
from deepfake_exp.utils.run import save_run_info

log = logging.getLogger(__name__)


def preprocess(cfg: DictConfig) -> dict:
    """Run extraction (and the merge) for ``cfg.dataset``; returns the summary."""
    source: Source = instantiate(cfg.dataset)
    records = source.records()
    if not records:
        raise NoUsableVideosError(f"dataset '{source.name}' at {source.root} lists no files")
    detector = instantiate(cfg.detector)
    if source.is_cropped and not detector.passthrough:
        log.warning("dataset '%s' holds face crops already; detector=none is faster", source.name)
    out_dir = Path(cfg.out_dir).resolve()
    extractor = FaceExtractor(
        detector, out_dir, instantiate(cfg.extraction), source.root, cfg.retry_failed
    )
    mine = shard_records(records, cfg.shard, cfg.num_shards)
    log.info(
        "%s: %d files (%d in shard %d/%d) -> %s",
        source.name, len(records), len(mine), cfg.shard, cfg.num_shards, out_dir,
    )  # fmt: skip
    summary: ExtractionSummary = extractor.run(mine, progress=cfg.progress)
    result = {"dataset": source.name, "out_dir": str(out_dir), **summary.to_dict()}
    if cfg.merge:
        split = cfg.split
        result["merged"] = merge_parts(
            out_dir, records, split.policy, list(split.ratios), split.seed, split.use_official
        )
        if result["merged"]["videos_ok"] == 0:
            raise NoUsableVideosError(
                f"no usable video in '{source.name}': all {len(records)} failed; "
                f"see {out_dir / 'failures.csv'}"
            )
    write_json(out_dir / f"summary_shard{cfg.shard}.json", result)
    failed = ", ".join(f"{k}={v}" for k, v in summary.failures.items()) or "none"
    log.info(
        "done: %d processed, %d already done, %d frames (%d without a face), %d faces; "
        "failures: %s",
        summary.processed, summary.skipped_done, summary.frames, summary.frames_without_face,
        summary.faces, failed,
    )  # fmt: skip
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="preprocess")
def main(cfg: DictConfig) -> None:
    save_run_info(cfg.paths.output_dir, cfg)
    preprocess(cfg)


if __name__ == "__main__":
    main()
