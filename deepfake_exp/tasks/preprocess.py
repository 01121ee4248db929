"""Extract the faces of a dataset (``python -m deepfake_exp.preprocess``): one locked process
per faces folder (or per shard), the extraction runner, then the merge into the manifest.

Resumable (done videos are skipped), shardable (``shard=i num_shards=n``, then one run with
``merge=true``), and one bad file never stops the run: it lands in ``failures.csv``. Parts made
with other settings, or from source files changed since, are extracted again
(``extraction.on_mismatch``); ``extraction.json`` records what the crops were made with. One
process at a time writes a faces folder (or one per shard): a second one fails with
``LockedError`` naming the holder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from deepfake_exp.config import validate_config  # (importing registers the schemas)
from deepfake_exp.data.records import MediaRecord
from deepfake_exp.data.sources.base import Source
from deepfake_exp.preprocessing.lock import preprocessing_lock
from deepfake_exp.preprocessing.merge import merge_parts
from deepfake_exp.preprocessing.runner import (
    ExtractionSummary,
    FaceExtractor,
    NoUsableVideosError,
    shard_records,
)
from deepfake_exp.utils.io import write_json
from deepfake_exp.utils.run import save_run_info

log = logging.getLogger(__name__)


def dataset_settings(source: Source) -> dict:
    """What the crops depend on in the data itself beyond its files: a generator's config."""
    return source.settings()


def _merge(
    cfg: DictConfig, source: Source, extractor: FaceExtractor, records: list[MediaRecord]
) -> dict:
    """``merge_parts`` over all records, then ``extraction.json`` (parts must all be current)."""
    extractor.check_current(records)
    split = cfg.split
    merged = merge_parts(
        extractor.out_dir, records, split.policy, list(split.ratios), split.seed, split.use_official
    )
    if merged["videos_ok"] == 0:
        raise NoUsableVideosError(
            f"no usable video in '{source.name}': all {len(records)} failed; "
            f"see {extractor.out_dir / 'failures.csv'}"
        )
    extractor.write_record(records)
    return merged


def _extract(cfg: DictConfig, source: Source, out_dir: Path) -> tuple:
    records = source.records()
    if not records:
        raise NoUsableVideosError(f"dataset '{source.name}' at {source.root} lists no files")
    detector = instantiate(cfg.detector)
    if source.is_cropped and not detector.passthrough:
        log.warning("dataset '%s' holds face crops already; detector=none is faster", source.name)
    extractor = FaceExtractor(
        detector,
        out_dir,
        instantiate(cfg.extraction),
        source.root,
        cfg.retry_failed,
        detector_config=OmegaConf.to_container(cfg.detector, resolve=True),
        dataset_settings=dataset_settings(source),
    )
    mine = shard_records(records, cfg.shard, cfg.num_shards)
    log.info(
        "%s: %d files (%d in shard %d/%d) -> %s",
        source.name, len(records), len(mine), cfg.shard, cfg.num_shards, out_dir,
    )  # fmt: skip
    summary: ExtractionSummary = extractor.run(mine, progress=cfg.progress)
    return records, extractor, summary


def preprocess(cfg: DictConfig) -> dict:
    """Run extraction (and the merge) for ``cfg.dataset``; returns the summary."""
    cfg = validate_config(cfg)  # ranges and choices fail here, not after hours of extraction
    source: Source = instantiate(cfg.dataset)
    out_dir = Path(cfg.out_dir).resolve()
    if cfg.num_shards == 1:
        with preprocessing_lock(out_dir):
            records, extractor, summary = _extract(cfg, source, out_dir)
            merged = _merge(cfg, source, extractor, records) if cfg.merge else None
    else:
        with preprocessing_lock(out_dir, cfg.shard, cfg.num_shards):
            records, extractor, summary = _extract(cfg, source, out_dir)
        if cfg.merge:  # the whole folder: refused while another shard job still runs
            with preprocessing_lock(out_dir):
                merged = _merge(cfg, source, extractor, records)
        else:
            merged = None
    result = {"dataset": source.name, "out_dir": str(out_dir), **summary.to_dict()}
    if merged is not None:
        result["merged"] = merged
    write_json(out_dir / f"summary_shard{cfg.shard}.json", result)
    failed = ", ".join(f"{k}={v}" for k, v in summary.failures.items()) or "none"
    log.info(
        "done: %d processed (%d re-extracted), %d already done, %d frames (%d without a face), "
        "%d faces, %d truncated video(s); failures: %s",
        summary.processed, summary.reextracted, summary.skipped_done, summary.frames,
        summary.frames_without_face, summary.faces, summary.truncated, failed,
    )  # fmt: skip
    return result


def run(cfg: DictConfig) -> None:
    """``python -m deepfake_exp.preprocess``: record the invocation, then :func:`preprocess`."""
    save_run_info(cfg.paths.output_dir, cfg)
    preprocess(cfg)
