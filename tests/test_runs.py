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
