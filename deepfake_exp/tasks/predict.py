"""The predict task: score ``cfg.inputs`` with a run's checkpoint and its preprocessing.

Every input gets a row: ``ok``; ``no_face`` (scored 0.5, as evaluation scores a face-less
video); ``no_media`` (a folder without a video or image); ``error`` (unreadable, missing or
unsupported, with its reason). Results: a console table, ``predictions.json`` (with
per-frame scores) and ``predictions.csv`` in the output directory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from deepfake_exp.config import validate_config
from deepfake_exp.inference.checkpoint import resolve_checkpoint
from deepfake_exp.inference.predictor import OK, Predictor
from deepfake_exp.utils.io import write_csv, write_json
from deepfake_exp.utils.run import save_run_info

CSV_COLUMNS = [
    "path", "kind", "status", "fake_prob", "prediction", "threshold", "threshold_source",
    "num_faces", "frames_sampled", "frames_expected", "truncated", "frames_with_face",
    "reason", "message", "frame_scores",
]  # fmt: skip


class NothingScoredError(RuntimeError):
    """No input could be scored: every file was unreadable, face-less or unsupported."""


def results_frame(results: Sequence[dict]) -> pd.DataFrame:
    """One row per input; per-frame scores condensed to ``frame:prob`` pairs."""
    rows = []
    for result in results:
        condensed = ";".join(f"{s['frame']}:{s['prob']:.4f}" for s in result["frame_scores"])
        rows.append({**result, "frame_scores": condensed})
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def display_paths(paths: Sequence[str | Path]) -> list[str]:
    """Paths relative to the inputs' common folder: ``a/000.png`` and ``b/000.png`` stay apart."""
    if not paths:
        return []
    absolute = [os.path.abspath(p) for p in paths]
    root = os.path.commonpath([os.path.dirname(p) for p in absolute])
    return [os.path.relpath(p, root) for p in absolute]


def format_table(results: Sequence[dict]) -> str:
    """The console table: one line per input with its status and score."""
    frame = results_frame(results)
    frame.insert(0, "file", display_paths(frame["path"].tolist()))
    columns = ["file", "status", "reason", "fake_prob", "prediction", "num_faces", "frames_sampled"]
    shown = frame[[*columns, "message"]].astype(object)
    return shown.where(shown.notna(), "").to_markdown(index=False)  # blank, not "nan"


def write_predictions(out_dir: str | Path, results: Sequence[dict], meta: dict) -> None:
    """``predictions.json`` (everything, per-frame scores included) and ``predictions.csv``."""
    out_dir = Path(out_dir)
    write_json(out_dir / "predictions.json", {**meta, "files": list(results)})
    write_csv(out_dir / "predictions.csv", results_frame(results))


def run_predictions(cfg: DictConfig, out_dir: str | Path) -> list[dict]:
    """Score ``cfg.inputs`` and write ``predictions.json`` / ``.csv`` into ``out_dir``."""
    if not cfg.inputs:
        raise ValueError("give the files to score: inputs=[video.mp4,image.png,folder/]")
    ckpt = resolve_checkpoint(cfg.ckpt_path, cfg.run_dir)
    predictor = Predictor(
        ckpt,
        cfg.device,
        cfg.tta,
        cfg.threshold,
        cfg.num_frames,
        cfg.batch_size,
        trust_checkpoint=cfg.get("trust_checkpoint", False),
    )
    results = predictor.predict(cfg.inputs)
    meta = {
        "checkpoint": str(ckpt.resolve()),
        "threshold": predictor.threshold,
        "threshold_source": predictor.threshold_source,
        "video_aggregation": predictor.aggregation,
        "tta": predictor.tta,
        "num_frames": predictor.num_frames,
        "crop_settings_source": predictor.crop_settings_source,
        "inputs": OmegaConf.to_container(cfg.inputs),
    }
    write_predictions(out_dir, results, meta)
    return results


def require_scored(results: Sequence[dict], out_dir: str | Path) -> None:
    """Fail (non-zero exit) when not one file could be scored: the run answered nothing."""
    if any(r["status"] == OK for r in results):
        return
    counts = pd.Series([r["status"] for r in results], dtype=object).value_counts().to_dict()
    raise NothingScoredError(
        f"none of {len(results)} input(s) could be scored ({counts}); see "
        f"{Path(out_dir) / 'predictions.csv'}"
    )


def run(cfg: DictConfig) -> list[dict]:
    """Score the inputs, print the table, write the files; fail if nothing could be scored."""
    validate_config(cfg)  # ranges checked, choices as plain strings
    out_dir = Path(cfg.paths.output_dir)
    save_run_info(out_dir, cfg)
    results = run_predictions(cfg, out_dir)
    print(format_table(results))
    print(f"\npredictions: {out_dir / 'predictions.json'}  {out_dir / 'predictions.csv'}")
    require_scored(results, out_dir)
    return results
