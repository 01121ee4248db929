"""Generalization protocols as report sets (#16.2): FF++ leave-one-method-out and cross-dataset,
and their synthetic stand-ins, which run end to end on CPU here.

The FF++ sets are checked on what they read from an FF++-shaped folder (a row never trains on
the method it is scored on, and is scored on test pairs only); the synthetic ones run through
``report`` at a tiny size and their cross-dataset tables are checked row by row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

import deepfake_exp.tasks.report as report
from deepfake_exp.data.records import FAKE, REAL
from tests.conftest import compose_config
from tests.fixtures_layouts import write_celebdf, write_faceforensics

FF_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
SYNTHETIC_METHODS = ("hard_paste", "colour_shift", "soft_face", "box_mask")
FF_PAIRS = {
    "train": [("000", "001"), ("006", "007")],
    "val": [("002", "003")],
    "test": [("004", "005"), ("008", "009")],
}


def report_set(name: str, tmp_path: Path):
    return compose_config("report", [f"report={name}"], tmp_path).report


def composed(report_cfg, overrides: list[str], tmp_path: Path, task: str = "train"):
    """What a row (or a prepared set) composes to, as the report's processes compose it."""
    return compose_config(task, [*report_cfg.common, *overrides], tmp_path)


def faces_name(cfg) -> str:
    return Path(cfg.data.faces_dir).name


def held_out_rows(report_cfg, tmp_path: Path, methods: tuple[str, ...]) -> dict[str, tuple]:
    """Held-out method -> (row config, its held-out test set's preprocess config)."""
    prepared = {
        name: composed(report_cfg, list(overrides), tmp_path, "preprocess")
        for name, overrides in report_cfg.prepare.items()
    }
    by_faces = {faces_name(cfg): cfg for cfg in prepared.values()}
    rows = {}
    for overrides in report_cfg.experiments.values():
        row = composed(report_cfg, list(overrides), tmp_path)
        (held_out,) = set(methods) - set(row.dataset.methods)
        (test_set,) = row.eval_datasets
        rows[held_out] = (row, by_faces[test_set])
    return rows


@pytest.mark.parametrize(
    ("name", "methods"),
    [("ff_cross_manipulation", FF_METHODS), ("synthetic_cross_manipulation", SYNTHETIC_METHODS)],
)
def test_cross_manipulation_sets_hold_out_each_method_once(tmp_path, name, methods) -> None:
    """Four rows, each trained on the three other methods and scored on the held-out one's
    official test split, prepared once with the row's own extraction and split settings."""
    report_cfg = report_set(name, tmp_path)
    rows = held_out_rows(report_cfg, tmp_path, methods)
    assert sorted(rows) == sorted(methods) and report_cfg.baseline is None
    faces_dirs = set()
    for held_out, (row, test_set) in rows.items():
        assert sorted(row.dataset.methods) == sorted(set(methods) - {held_out})
        assert list(test_set.dataset.methods) == [held_out]
        assert list(test_set.dataset.read_splits) == ["test"] and row.dataset.read_splits is None
        assert row.split.use_official and test_set.split.use_official
        assert test_set.dataset.name == row.dataset.name  # one source: seen videos match
        for key in ("extraction", "split"):
            assert test_set[key] == row[key], key
        faces_dirs |= {row.data.faces_dir, test_set.data.faces_dir}
    assert len(faces_dirs) == 2 * len(methods)  # no row shares another's faces


def _records(cfg, root: Path, **overrides):
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    return instantiate({**dataset, "root": str(root), **overrides}).records()


def test_ff_lomo_never_trains_on_the_method_it_is_scored_on(tmp_path) -> None:
    """On an FF++-shaped folder: the row reads no held-out fake; its test set holds the
    held-out method's test pairs and the test originals only, none of which it trains on."""
    root = write_faceforensics(tmp_path / "ff", FF_PAIRS, methods=FF_METHODS)
    rows = held_out_rows(report_set("ff_cross_manipulation", tmp_path), tmp_path, FF_METHODS)
    for held_out, (row, test_set) in rows.items():
        train = _records(row, root)
        assert held_out not in {r.method for r in train}
        assert {r.method for r in train if r.label == FAKE} == set(FF_METHODS) - {held_out}
        held = _records(test_set, root)
        assert {r.split for r in held} == {"test"}
        assert {(r.label, r.method) for r in held} == {(REAL, None), (FAKE, held_out)}
        split_of = {r.video_id: r.split for r in train}
        assert all(split_of.get(r.video_id, "test") == "test" for r in held)
        test_people = {i for r in held for i in r.identities}
        assert not test_people & {i for r in train if r.split != "test" for i in r.identities}


def test_cross_dataset_set_trains_on_ff_and_scores_celebdf_test_list_and_dfdc(tmp_path) -> None:
    report_cfg = report_set("cross_dataset", tmp_path)
    ((name, overrides),) = report_cfg.experiments.items()
    row = composed(report_cfg, list(overrides), tmp_path)
    assert row.dataset.compression == "c23" and sorted(row.dataset.methods) == sorted(FF_METHODS)
    assert row.split.use_official and report_cfg.baseline is None
    prepared = {
        faces_name(cfg): cfg
        for cfg in (
            composed(report_cfg, list(o), tmp_path, "preprocess")
            for o in report_cfg.prepare.values()
        )
    }
    assert sorted(row.eval_datasets) == sorted(prepared)
    celebdf = next(cfg for cfg in prepared.values() if "celebdf" in cfg.dataset._target_)
    dfdc = next(cfg for cfg in prepared.values() if "dfdc" in cfg.dataset._target_)
    assert list(celebdf.dataset.read_splits) == ["test"] and dfdc.dataset.read_splits is None
    videos = ["Celeb-real/id0_0000.mp4", "Celeb-synthesis/id0_id1_0000.mp4", "YouTube-real/0.mp4"]
    root = write_celebdf(tmp_path / "celebdf", videos, [(1, videos[2]), (0, videos[1])])
    records = _records(celebdf, root)
    assert {r.video_id for r in records} == {videos[1], videos[2]}  # the official test list


# --- synthetic stand-ins, end to end -------------------------------------------------------

#: Shrinks a synthetic protocol set to seconds per step: 12 identities in 6 swap pools
#: (one pool each in val and test), small frames, one epoch.
TINY = [
    "dataset.num_identities=12",
    "dataset.videos_per_identity=1",
    "dataset.num_frames=4",
    "dataset.workers=1",
    "extraction.num_frames=2",
    "extraction.crop_size=48",
    "extraction.num_workers=1",
    "model.input_size=32",
    "trainer.max_epochs=1",
    "data.batch_size=16",
]


def run_tiny(name: str, tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The report set at the tiny size: its table and its cross-dataset table."""
    cfg = compose_config("report", [f"report={name}"], tmp_path)
    with open_dict(cfg):
        cfg.report.out_dir = str(tmp_path / "report")
        cfg.report.common = [*cfg.report.common, *TINY, f"paths.root_dir={tmp_path}"]
    table = report.build_report(cfg)
    cross = pd.read_csv(Path(cfg.report.out_dir) / "cross_dataset.csv")
    shown = ["name", "dataset", "videos", "video_auc", "video_auc_low", "video_auc_high"]
    shown += ["face_auc", "face_auc_low", "face_auc_high"]
    print(f"\n{name} (tiny):\n{cross[shown].to_string(index=False)}")
    return table, cross


@pytest.mark.slow
@pytest.mark.e2e
def test_synthetic_cross_manipulation_runs_end_to_end(tmp_path) -> None:
    table, cross = run_tiny("synthetic_cross_manipulation", tmp_path)
    assert (table["status"] == "ok").all() and len(table) == len(SYNTHETIC_METHODS)
    for method in SYNTHETIC_METHODS:
        rows = cross[cross["name"] == f"held_out_{method}"]
        in_domain, held_out = rows.iloc[0], rows.iloc[1]
        assert held_out["dataset"] == f"synthetic_methods_test_{method}", rows
        # one test pool: two people, one real and one held-out fake each
        assert held_out["videos"] == 4 and held_out["videos_seen_excluded"] == 0
        assert in_domain["videos"] == 2 + 2 * 3  # the same reals, three methods' fakes
        for key in ("video_auc", "face_auc"):
            assert 0.0 <= held_out[key] <= 1.0, (method, key)


@pytest.mark.slow
@pytest.mark.e2e
def test_synthetic_cross_dataset_runs_end_to_end(tmp_path) -> None:
    table, cross = run_tiny("synthetic_cross_dataset", tmp_path)
    assert table["status"].tolist() == ["ok"]
    assert cross["dataset"].tolist()[1:] == ["synthetic_celebdf_test", "synthetic_dfdc"]
    celebdf, dfdc = cross.iloc[1], cross.iloc[2]
    assert celebdf["videos"] == 4  # its official test list: one pool
    assert dfdc["videos"] == 24  # every video of the other set: none of it was seen
    for key in ("video_auc", "face_auc"):
        assert cross[key].between(0.0, 1.0).all(), key
    # an interval needs several groups: the 12 people of synthetic_dfdc (one test pool has one)
    assert dfdc["video_auc_low"] <= dfdc["video_auc"] <= dfdc["video_auc_high"]
    assert dfdc["face_auc_low"] <= dfdc["face_auc"] <= dfdc["face_auc_high"]


def test_manifest_names_each_fakes_method(tmp_path) -> None:
    """Per-method scores need each face's method: the manifest and videos.csv carry it."""
    from deepfake_exp.tasks.preprocess import preprocess

    overrides = [
        "dataset.name=synthetic_methods_tiny", "dataset.num_identities=6",
        "dataset.videos_per_identity=1", "dataset.num_frames=2", "dataset.workers=1",
        "dataset.generator_methods=[hard_paste,box_mask]", "extraction.num_frames=1",
        "extraction.crop_size=32", "extraction.num_workers=1", "split.ratios=[0.34,0.33,0.33]",
        "progress=false",
    ]  # fmt: skip
    cfg = compose_config("preprocess", overrides, tmp_path)
    preprocess(cfg)
    faces_dir = Path(cfg.data.faces_dir)
    videos = pd.read_csv(faces_dir / "videos.csv", keep_default_na=False)
    manifest = pd.read_csv(faces_dir / "manifest.csv", keep_default_na=False)
    for table in (videos, manifest):
        fakes = table[table["label"] == FAKE]
        assert set(fakes["method"]) == {"hard_paste", "box_mask"}
        assert set(table.loc[table["label"] == REAL, "method"]) == {""}
    assert (videos.groupby("method").size() == 6).all()
