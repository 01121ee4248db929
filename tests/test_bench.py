"""Benchmarks: every section resolves and runs at tiny sizes, a typo fails before any work.

Figures are never asserted (they depend on the machine); the tests check that each section
produces its table, that shared fixtures are what they claim, and that configs are composed
by Hydra rather than read from disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf, open_dict
from threadpoolctl import threadpool_limits

from deepfake_exp.benchmarks import SECTIONS
from deepfake_exp.benchmarks.common import compose, face_crops, group_options, write_face_folder
from deepfake_exp.data.datamodule import read_manifest
from deepfake_exp.tasks import bench as bench_task
from tests.conftest import compose_config

#: Each section at a size that runs in seconds on one core.
TINY = {
    "augmentation": {"input_size": 32, "n": 4, "options": ["none", "basic"]},
    "analysis": {
        "reducers": {"tsne": [300], "tsne_sklearn": [300]},
        "dim": 16,
        "min_cluster_size": 10,
        "max_iter": 250,
        "knn_sample": 100,
    },
}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch and OpenMP thread: two spin-wait for each other on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="openmp"):
        yield
    torch.set_num_threads(before)


def bench_config(tmp_path: Path, overrides: list[str]) -> OmegaConf:
    return compose_config("bench", overrides, tmp_path)


def test_every_section_resolves_to_a_run_function() -> None:
    for name in SECTIONS:
        assert callable(bench_task.section(name)), name
    cfg = compose("bench")
    assert set(cfg.sections) <= set(SECTIONS)
    assert all(name in cfg for name in cfg.sections)  # a config block per listed section


def test_a_misspelled_section_fails_before_any_section_runs(tmp_path: Path) -> None:
    cfg = OmegaConf.create(
        {"sections": ["augmentation", "trainig"], "paths": {"output_dir": str(tmp_path)}}
    )
    with pytest.raises(KeyError, match="trainig.*choose from"):
        bench_task.run(cfg)
    assert not list(tmp_path.iterdir())  # augmentation, listed first, did not run
    with pytest.raises(ConfigCompositionException):  # and at compose time (BenchSection enum)
        compose("bench", ["sections=[trainig]"])
    with pytest.raises(KeyError, match="choose from"):
        bench_task.section("mtcnm")


@pytest.mark.parametrize("name", sorted(TINY))
def test_section_runs_at_tiny_size(name: str) -> None:
    table = bench_task.run_section(name, OmegaConf.create(TINY[name]))
    assert isinstance(table, pd.DataFrame) and len(table) > 0
    assert not table.isna().all(axis=None)


def test_mtcnn_section_reports_speed_and_quality_against_both_baselines() -> None:
    table = bench_task.run_section(
        "mtcnn", OmegaConf.create({"sizes": ["480x270"], "frames_per_size": 1, "repeats": 2})
    )
    defaults, like, downscaled, ours = table.to_dict("records")
    assert ours["method"].startswith("ours") and "MTCNN()" in defaults["method"]
    assert (table["frames_per_s"] > 0).all() and (table["found"] == 1.0).all()
    # the like-for-like baseline searches our smallest full-resolution face (60 px at 1/3)
    assert "min_face_size=60" in like["method"] and like["smallest_face_px"] == 60
    assert defaults["smallest_face_px"] == 20 and downscaled["scale"] == ours["scale"] < 1
    assert defaults["x_vs_defaults"] == like["x_like_for_like"] == 1.0
    assert ours["x_vs_defaults"] == pytest.approx(
        ours["x_like_for_like"] * like["x_vs_defaults"], rel=0.02
    )


def test_analysis_section_times_each_reducer_on_the_same_input() -> None:
    table = bench_task.run_section("analysis", OmegaConf.create(TINY["analysis"]))
    assert table["reducer"].tolist() == ["tsne", "tsne_sklearn"]
    assert table["pca_s"].nunique() == 1  # one PCA per size, shared by both reducers
    baseline = table.set_index("reducer").loc["tsne_sklearn"]
    assert baseline["x_faster"] == 1.0
    assert table["knn_preservation"].between(0, 1).all()
    with pytest.raises(KeyError, match="tsne_sklearn"):
        bench_task.run_section("analysis", OmegaConf.create({"reducers": {"tnse": [300]}}))


def test_bench_writes_one_csv_per_section_and_the_markdown(tmp_path: Path) -> None:
    cfg = bench_config(tmp_path, ["sections=[augmentation]"])
    with open_dict(cfg):
        cfg.augmentation = TINY["augmentation"]
    out = bench_task.run(cfg)
    table = pd.read_csv(out / "bench_augmentation.csv")
    assert set(table["augmentation"]) == {"none", "basic"}
    assert "## augmentation" in (out / "bench.md").read_text()


def test_configs_come_from_hydra_composition() -> None:
    assert group_options("augmentation") == sorted(
        p.stem for p in (Path(__file__).parents[1] / "conf" / "augmentation").glob("*.yaml")
    )
    cfg = compose("train", ["model=resnet18", "model.input_size=64"])
    assert cfg.model.arch == "resnet18" and cfg.augmentation.input_size == 64


def test_face_crops_are_seeded_face_images() -> None:
    first, again, other = face_crops(3, 48, seed=1), face_crops(3, 48, seed=1), face_crops(3, 48)
    assert all(c.shape == (48, 48, 3) and c.dtype == np.uint8 for c in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])
    # a face, not noise: the centre (skin) differs from the room at the corners
    centre, corner = first[0][20:28, 20:28].mean(), first[0][:6, :6].mean()
    assert abs(centre - corner) > 10


def test_face_folder_is_made_by_preprocessing(tmp_path: Path) -> None:
    out = write_face_folder(tmp_path / "faces", face_crops(4, 32), labels=[0, 1, 1, 0])
    manifest = read_manifest(out)
    assert len(manifest) == 4 and set(manifest["split"]) == {"train"}
    assert manifest.sort_values("video_id")["label"].tolist() == [0, 1, 1, 0]
    assert all((out / p).is_file() for p in manifest["face_path"])
    assert (out / "videos.csv").is_file()  # merge_parts' outputs, not a hand-written table


@pytest.mark.slow
def test_training_section_runs_at_tiny_size(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DEEPFAKE_EXP_ROOT", str(tmp_path))  # no preprocessed set: generate one
    cfg = {
        "models": ["vit"], "batch_size": 2, "input_size": 32, "steps": 1, "warmup": 1,
        "overhead_model": "vit", "overhead_input_size": 32, "overhead_steps": 1,
        "overhead_warmup": 1, "overhead_rounds": 1, "num_workers": 0, "loader_batches": 2,
        "loader_images": 4, "threads": 1,
    }  # fmt: skip
    table = bench_task.run_section("training", OmegaConf.create(cfg))
    throughput, loader, overhead = table.to_dict("records")
    assert [r["measure"] for r in (throughput, loader, overhead)] == [
        "throughput",
        "dataloader / model train",
        "lightning step overhead",
    ]
    assert "generated" in loader["note"]  # no preprocessed set: made by preprocessing here
    assert throughput["train_img_s"] > 0 and loader["baseline"] == throughput["train_img_s"]
    assert loader["value"] == pytest.approx(loader["ours"] / loader["baseline"])
    assert loader["met"] == ("yes" if loader["value"] >= 2 else "NO")
    plain, lightning = overhead["baseline"], overhead["ours"]
    assert overhead["value"] == pytest.approx(100 * (lightning - plain) / plain)


def test_precision_throughput_compares_each_precision_with_fp32() -> None:
    from deepfake_exp.benchmarks.training import benchmark_precision

    rows = benchmark_precision(
        models=("vit",), precisions=("32-true", "bf16-mixed"), batch_size=2, steps=1,
        warmup=1, input_size=32, device="cpu",
    )  # fmt: skip
    assert [r["precision"] for r in rows] == ["32-true", "bf16-mixed"]
    assert rows[0]["x_vs_fp32"] == 1.0 and rows[1]["train_img_s"] > 0
    assert np.isnan(rows[0]["peak_train_mem_gib"])  # GPU memory only


@pytest.mark.slow
def test_extraction_section_runs_at_tiny_size(tmp_path: Path) -> None:
    cfg = {
        "size": "320x180", "frames_per_video": 6, "num_frames": 2, "bitrates_mbps": [1.0],
        "repeats": 1, "naive_repeats": 1, "copies": 1, "cache_dir": str(tmp_path),
    }  # fmt: skip
    table = bench_task.run_section("extraction", OmegaConf.create(cfg))
    assert {"naive", "ours", "decode-only"} <= set(table["method"])
    assert (table["s_per_video"] > 0).all()


def test_training_section_names_a_faces_dir_without_manifest(tmp_path: Path) -> None:
    from deepfake_exp.benchmarks.training import benchmark_training

    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        benchmark_training(models=(), faces_dir=str(tmp_path))
