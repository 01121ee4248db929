"""A run knows its data: the fingerprint changes with the split or the manifest, and the check
refuses a faces folder that is not the one the run was trained on."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from deepfake_exp.runs import DataMismatchError, check_data_fingerprint, data_fingerprint


def _faces_dir(path, splits):
    path.mkdir(parents=True, exist_ok=True)
    videos = pd.DataFrame({"video_id": ["a", "b", "c"], "split": splits, "label": [0, 1, 0]})
    manifest = videos.assign(face_path=["faces/a.jpg", "faces/b.jpg", "faces/c.jpg"])
    videos.to_csv(path / "videos.csv", index=False)
    manifest.to_csv(path / "manifest.csv", index=False)
    return path


def test_same_data_passes_and_counts_are_recorded(tmp_path):
    faces = _faces_dir(tmp_path / "f", ["train", "val", "test"])
    stored = data_fingerprint(faces)
    assert stored["num_videos"] == 3 and stored["num_faces"] == 3
    check_data_fingerprint(stored, faces, what="evaluate")


def test_resplit_is_refused_with_the_changed_key_and_a_fix(tmp_path):
    faces = _faces_dir(tmp_path / "f", ["train", "val", "test"])
    stored = data_fingerprint(faces)
    _faces_dir(tmp_path / "f", ["test", "val", "train"])  # another split.seed
    with pytest.raises(DataMismatchError, match=r"splits_sha256.*re-run preprocessing"):
        check_data_fingerprint(stored, faces, what="evaluate")


def test_split_fingerprint_ignores_row_order(tmp_path):
    faces = _faces_dir(tmp_path / "f", ["train", "val", "test"])
    before = data_fingerprint(faces)["splits_sha256"]
    videos = pd.read_csv(faces / "videos.csv").iloc[::-1]
    videos.to_csv(faces / "videos.csv", index=False)
    assert data_fingerprint(faces)["splits_sha256"] == before


def test_old_run_without_fingerprint_warns(tmp_path, caplog):
    faces = _faces_dir(tmp_path / "f", ["train", "val", "test"])
    with caplog.at_level(logging.WARNING):
        check_data_fingerprint(None, faces, what="predict")
    assert "no data fingerprint" in caplog.text


# ---- RunDir: the one definition of a run folder's layout ------------------------------------


def _write_config(run, logger):
    from omegaconf import OmegaConf

    run.mkdir(parents=True, exist_ok=True)
    config = {"paths": {"output_dir": "/old/place/run"}, "logger": logger}
    OmegaConf.save(OmegaConf.create(config), run / "config.yaml")


def test_run_dir_paths_follow_the_training_layout(tmp_path):
    from deepfake_exp.runs import RunDir, run_dir_of

    run = RunDir(tmp_path / "run")
    assert run.best_ckpt == tmp_path / "run" / "checkpoints" / "best.ckpt"
    assert run.last_ckpt.name == "last.ckpt" and run.metrics_json.name == "metrics.json"
    assert run.summary_json.name == "summary.json"
    assert run.hydra_config_path == tmp_path / "run" / ".hydra" / "config.yaml"
    assert run.predictions_csv("test", "faces").name == "predictions_test_faces.csv"
    assert run_dir_of(run.best_ckpt).path == run.path.resolve()
    # no config: Lightning loggers as conf/logger/tensorboard.yaml names them
    assert run.history_csv == run.path / "csv" / "metrics.csv"
    assert run.tb_dir == run.path / "tensorboard"


def test_history_csv_follows_the_csv_logger_config_of_a_moved_run(tmp_path):
    from deepfake_exp.runs import RunDir

    logger = {
        "tb": {"_target_": "pytorch_lightning.loggers.TensorBoardLogger",
               "save_dir": "/old/place/run", "name": "tb_logs", "version": ""},
        "history": {"_target_": "deepfake_exp.utils.loggers.HistoryCSVLogger",
                    "save_dir": "/old/place/run/logs", "name": "curves", "version": "v0"},
    }  # fmt: skip
    _write_config(tmp_path / "run", logger)
    run = RunDir(tmp_path / "run")
    assert run.history_csv == tmp_path / "run" / "logs" / "curves" / "v0" / "metrics.csv"
    assert run.tb_dir == tmp_path / "run" / "tb_logs"
    (run.history_csv.parent).mkdir(parents=True)
    run.history_csv.write_text("epoch,val/loss\n0,0.5\n")
    assert run.read_history()["val/loss"].tolist() == [0.5]


def test_readers_of_an_unfinished_run_are_empty_and_of_a_finished_one_hold_the_values(tmp_path):
    import json

    from deepfake_exp.runs import RunDir

    run = RunDir(tmp_path / "run")
    assert run.read_metrics() == {} and run.read_summary() == {} and run.config() is None
    assert run.val_threshold() is None and run.overrides() == [] and not run.is_evaluated()
    run.path.mkdir()
    metrics = {"thresholds_from_val": {"video": 0.4}, "tta": "flip", "threshold_criterion": "f1"}
    run.metrics_json.write_text(json.dumps(metrics))
    run.summary_json.write_text(json.dumps({"status": "ok"}))
    threshold = run.val_threshold()
    assert (threshold.video, threshold.tta, threshold.criterion) == (0.4, "flip", "f1")
    assert run.read_summary()["status"] == "ok" and run.is_evaluated()
