"""Sharded faces (#15.3): the same samples as the loose files, reproducible, loud on damage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from deepfake_exp.data import shards
from deepfake_exp.data.datamodule import FaceDataModule, read_manifest
from deepfake_exp.data.transforms import Augmentation

SPLITS = {"train": 6, "val": 3, "test": 3}  # videos per split


def make_faces_dir(root: Path, faces_per_video: int = 4) -> Path:
    """JPEG crops + a manifest with splits, samples (train/eval frames) and originals."""
    rng = np.random.default_rng(0)
    (root / "faces").mkdir(parents=True)
    rows = []
    for split, videos in SPLITS.items():
        for v in range(videos):
            video, label = f"{split}_{v}", v % 2
            for f in range(faces_per_video):
                path = f"faces/{video}_{f}.jpg"
                image = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
                cv2.imwrite(str(root / path), image)
                rows.append(
                    {
                        "video_id": video,
                        "frame": f,
                        "face_path": path,
                        "label": label,
                        "group": f"g{v // 2}",
                        "original": f"{split}_{v - 1}" if label else "",
                        "split": split,
                        "train_frame": f != 3,  # the training sample drops a frame
                        "eval_frame": f != 0,
                    }
                )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


@pytest.fixture
def faces_dir(tmp_path: Path) -> Path:
    root = make_faces_dir(tmp_path / "faces_set")
    shards.pack_faces(root, read_manifest(root), root / "manifest.csv", max_count=5)
    return root


def datamodule(faces_dir: Path, fmt: str, **kwargs) -> FaceDataModule:
    return FaceDataModule(faces_dir, Augmentation(16), num_workers=0, format=fmt, **kwargs)


def items(dataset) -> dict[int, tuple[int, torch.Tensor]]:
    """index -> (label, image) of one pass, whether map-style or streamed."""
    stream = (
        dataset
        if isinstance(dataset, shards.ShardFaceDataset)
        else map(dataset.__getitem__, range(len(dataset)))
    )
    out = {}
    for item in stream:
        index = int(item["index"])
        assert index not in out, f"index {index} served twice"
        out[index] = (int(item["label"]), item["image"])
    return out


def test_pack_keeps_the_crops_bytes_and_manifest_rows(faces_dir: Path) -> None:
    index = json.loads((faces_dir / "shards" / "index.json").read_text())
    manifest = read_manifest(faces_dir)
    assert set(index["splits"]) == set(SPLITS)
    counts = {s: sum(x["stop"] - x["start"] for x in v) for s, v in index["splits"].items()}
    assert counts == manifest["split"].value_counts().to_dict()
    names = [x["name"] for v in index["splits"].values() for x in v]
    assert index["files"] == len(names) + 1 == len(list((faces_dir / "shards").rglob("*.*")))
    assert index["bytes"] == sum((faces_dir / "shards" / n).stat().st_size for n in names)
    info = shards.split_shards(index, "val")[0]
    for sample in shards.read_shard(faces_dir / "shards" / info.name, info):
        row = manifest.loc[int(sample["__key__"])]
        assert sample["jpg"] == (faces_dir / row["face_path"]).read_bytes()
        record = json.loads(sample["json"])
        assert record["video_id"] == row["video_id"] and record["label"] == row["label"]
    assert not list(faces_dir.glob("shards.*"))  # no staging folder left
    first = (faces_dir / "shards" / names[0]).read_bytes()
    shards.pack_faces(faces_dir, manifest, faces_dir / "manifest.csv", max_count=5)
    assert (faces_dir / "shards" / names[0]).read_bytes() == first  # repacking is reproducible


@pytest.mark.parametrize("cap", [None, 2])
def test_shards_serve_the_loose_files_samples_labels_and_splits(faces_dir: Path, cap) -> None:
    loose = datamodule(faces_dir, "files", max_faces_per_video=cap)
    sharded = datamodule(faces_dir, "shards", max_faces_per_video=cap)
    for split in SPLITS:
        a, b = loose.dataset(split), sharded.dataset(split)
        pd.testing.assert_frame_equal(a.frame, b.frame.drop(columns="row"))
        served_a, served_b = items(a), items(b)
        assert len(b) == len(served_b) == len(served_a) == len(a.frame)
        for index, (label, image) in served_a.items():
            assert served_b[index][0] == label
            assert torch.equal(served_b[index][1], image), (split, index)


def test_shuffle_is_reproducible_for_a_seed_and_changes_per_epoch(faces_dir: Path) -> None:
    def train_set(seed: int) -> shards.ShardFaceDataset:
        torch.manual_seed(seed)
        return datamodule(faces_dir, "shards").dataset("train")

    def order(dataset) -> list[int]:
        return [int(item["index"]) for item in dataset]

    first = train_set(1)
    epoch0, epoch1 = order(first), order(first)
    assert epoch0 == order(train_set(1))
    assert epoch0 != order(train_set(2)) and epoch0 != epoch1
    assert sorted(epoch0) == sorted(epoch1) == list(range(len(first.frame)))
    first.set_epoch(0)
    assert order(first) == epoch0


def test_workers_share_out_the_shards(faces_dir: Path) -> None:
    dataset = datamodule(faces_dir, "shards").dataset("val")
    loader = DataLoader(dataset, batch_size=4, num_workers=2)
    served = torch.cat([batch["index"] for batch in loader]).tolist()
    assert sorted(served) == list(range(len(dataset.frame)))


def test_ranks_split_shards_and_serve_equally_many_faces(faces_dir, monkeypatch) -> None:
    served: dict[str, list[list[int]]] = {"val": [], "train": []}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        module = datamodule(faces_dir, "shards")
        for split in served:
            dataset = module.dataset(split)
            indices = [int(item["index"]) for item in dataset]
            assert len(indices) == len(dataset)
            served[split].append(indices)
    val = served["val"]  # each rank its own shards, the smaller padded with its own repeats
    total = len(module.dataset("val").frame)
    assert len(val[0]) == len(val[1]) > total / 2 and not set(val[0]) & set(val[1])
    assert set(val[0]) | set(val[1]) == set(range(total))
    train = served["train"]
    assert len(train[0]) == len(train[1]) == len(module.dataset("train").frame) // 2


def test_truncated_shard_is_reported_with_its_name(faces_dir: Path) -> None:
    dataset = datamodule(faces_dir, "shards").dataset("test")
    victim = faces_dir / "shards" / dataset.shards[1].name
    victim.write_bytes(victim.read_bytes()[:700])
    with pytest.raises(shards.ShardError, match=f"{victim.name}.*truncated"):
        list(dataset)
    loader = DataLoader(dataset, batch_size=2, num_workers=1)  # a worker raises, no hang
    with pytest.raises(shards.ShardError, match=victim.name):
        list(loader)


def test_corrupt_shard_is_reported_with_its_name(faces_dir: Path) -> None:
    dataset = datamodule(faces_dir, "shards").dataset("train")
    victim = faces_dir / "shards" / dataset.shards[0].name
    data = bytearray(victim.read_bytes())
    data[0:512] = np.random.default_rng(0).integers(0, 255, 512, dtype=np.uint8).tobytes()
    victim.write_bytes(bytes(data))  # same size: only the tar structure says it is damaged
    with pytest.raises(shards.ShardError, match=victim.name):
        list(dataset)


def test_stale_or_missing_shards_are_packed_by_prepare_data(tmp_path: Path) -> None:
    root = make_faces_dir(tmp_path / "set")
    module = datamodule(root, "shards")
    with pytest.raises(shards.ShardError, match="no shards/index.json"):
        module.dataset("train")
    module.prepare_data()
    before = len(module.dataset("val"))
    manifest = read_manifest(root)
    manifest[manifest["split"] != "val"].to_csv(root / "manifest.csv", index=False)
    with pytest.raises(shards.ShardError, match="another manifest"):
        datamodule(root, "shards").dataset("test")
    module = datamodule(root, "shards")
    module.prepare_data()
    assert "val" not in json.loads((root / "shards" / "index.json").read_text())["splits"]
    assert before > 0 and len(module.dataset("test")) > 0


def test_shard_train_loader_batches_and_refuses_random_access_options(faces_dir) -> None:
    batches = list(datamodule(faces_dir, "shards", batch_size=4).train_dataloader())
    assert sum(len(b["label"]) for b in batches) == 18 and batches[0]["image"].shape[1:] == (
        3,
        16,
        16,
    )
    with pytest.raises(ValueError, match="pair_with_original.*format=files"):
        datamodule(faces_dir, "shards", pair_with_original=True)
    with pytest.raises(ValueError, match="data.format"):
        datamodule(faces_dir, "tar")


def test_bench_section_reports_rates_files_and_bytes() -> None:
    from deepfake_exp.benchmarks import SECTIONS
    from deepfake_exp.benchmarks.shards import benchmark_shards

    assert SECTIONS["shards"] == "deepfake_exp.benchmarks.shards:run"
    rows = {r["measure"]: r for r in benchmark_shards(
        num_faces=24, crop_size=32, input_size=32, batch_size=8, num_workers=0, epochs=1, repeats=1,
        max_count=8,
    )}  # fmt: skip
    assert rows["loader img/s"]["ours"] > 0 and rows["loader img/s"]["baseline"] > 0
    assert rows["files written"]["ours"] == 3 + 1 and rows["files written"]["baseline"] == 24
    assert rows["bytes written"]["ours"] > rows["bytes written"]["baseline"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("option", ["data.format=shards", "data.pair_with_original=true"])
def test_training_runs_end_to_end_on_shards_and_paired_batches(
    tiny_preprocessed, tmp_path: Path, option: str
) -> None:
    from deepfake_exp.tasks.train import train
    from tests.test_train import train_cfg

    root = tmp_path / "copy"  # packing adds shards/: keep the shared session set as it is
    shutil.copytree(tiny_preprocessed[0], root)
    run = option.split("=")[0].replace(".", "_")
    cfg = train_cfg(root, run, [option, "trainer.max_epochs=1", "test=false"])
    train(cfg)
    summary = json.loads((Path(cfg.paths.output_dir) / "summary.json").read_text())
    assert summary["val/video_auc"] is not None
    if option.startswith("data.format"):
        assert (Path(cfg.data.faces_dir) / "shards" / "index.json").is_file()
