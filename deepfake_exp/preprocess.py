"""Extract faces of a dataset: ``python -m deepfake_exp.preprocess dataset=<name> [...]``.

Resumable (done videos are skipped), shardable (``shard=i num_shards=n``, then one run with
``merge=true``), and one bad file never stops the run: it lands in ``failures.csv``. Parts made
with other settings, or from source files changed since, are extracted again
(``extraction.on_mismatch``); ``extraction.json`` records what the crops were made with. One
process at a time writes a faces folder (or one per shard): a second one fails with
``LockedError`` naming the holder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from deepfake_exp.config import validate_config  # (importing registers the schemas)
from deepfake_exp.data.records import MediaRecord
from deepfake_exp.data.sources.base import Source
from deepfake_exp.faces.extract import (
    ExtractionSummary,
    FaceExtractor,
    NoUsableVideosError,
    merge_parts,
    shard_records,
)
from deepfake_exp.utils.io import write_json
from deepfake_exp.utils.lock import LOCK_NAME, exclusive_lock
from deepfake_exp.utils.run import save_run_info

log = logging.getLogger(__name__)

WHAT = "preprocessing"


def shard_lock_name(shard: int, num_shards: int) -> str:
    """Lock file of one shard job: shards of an array job run side by side."""
    return f"{LOCK_NAME}-shard-{shard}-of-{num_shards}"


@contextmanager
def preprocessing_lock(out_dir: Path, shard: int = 0, num_shards: int = 1) -> Iterator[None]:
    """Hold a faces folder for one preprocessing process, or one shard of it for a shard job.

    An unsharded run (and every merge) holds ``<out_dir>/.lock`` and first checks that no shard
    job holds its own lock; a shard job checks that no unsharded run holds the folder, then
    holds only its shard's lock. Raises ``LockedError`` naming the live holder.
    """
    if num_shards == 1:
        with exclusive_lock(out_dir, what=WHAT):
            for held in sorted(out_dir.glob(f"{LOCK_NAME}-shard-*")):
                with exclusive_lock(out_dir, what=f"{WHAT} ({held.name})", name=held.name):
                    pass
            yield
        return
    with exclusive_lock(out_dir, what=WHAT):
        pass
    name = shard_lock_name(shard, num_shards)
    with exclusive_lock(out_dir, what=f"{WHAT} (shard {shard} of {num_shards})", name=name):
        yield


def dataset_settings(source: Source) -> dict:
    """What the crops depend on in the data itself beyond its files: a generator's config."""
    config = getattr(source, "config", None)
    return {"generator": asdict(config)} if is_dataclass(config) else {}


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
    validate_config(cfg)  # ranges and choices fail here, not after hours of extraction
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


@hydra.main(version_base="1.3", config_path="../conf", config_name="preprocess")
def main(cfg: DictConfig) -> None:
    save_run_info(cfg.paths.output_dir, cfg)
    preprocess(cfg)


if __name__ == "__main__":
    main()
