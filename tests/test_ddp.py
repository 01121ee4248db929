"""Validation metrics under DDP equal the single-process ones.

Lightning's DistributedSampler pads the val set to a multiple of the world size (7 samples on
2 ranks: sample 0 is seen twice); the module gathers predictions from every rank and drops
the duplicates by sample index before computing epoch metrics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from torch.utils.data import DistributedSampler

from tests.conftest import compose_config
from tests.test_sweeps import SPLIT_SIZES, TINY_VIT, tiny_args, tiny_faces  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
VAL_METRICS = ["val/auc", "val/acc", "val/video_auc", "val/video_acc"]
VAL_LOSSES = ["val/log_loss", "val/video_log_loss"]
# lr 0: training leaves the weights as initialised (same seed -> same weights in both runs);
# no dropout, and the ViT has no BatchNorm statistics that a training pass would move
FROZEN = ["optimizer.lr=0", "model.dropout=0", "scheduler=none", "data.eval_batch_size=2"]


def rank_outputs(rank: int, n: int, world: int, batch: int) -> list[dict[str, torch.Tensor]]:
    """What ``validation_step`` collects on ``rank`` when Lightning shards ``n`` samples."""
    indices = list(DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False))
    outputs = []
    for start in range(0, len(indices), batch):
        index = torch.tensor(indices[start : start + batch])
        outputs.append({"index": index, "label": index % 2, "prob": index.float() / 10})
    return outputs


def test_gathered_predictions_drop_the_distributed_sampler_padding(monkeypatch) -> None:
    from deepfake_exp.models.module import DeepfakeDetector

    cfg = compose_config("train", TINY_VIT)
    module = DeepfakeDetector(instantiate(cfg.model))
    n, world = 7, 2
    per_rank = [rank_outputs(rank, n, world, batch=2) for rank in range(world)]
    assert sum(len(o["index"]) for outputs in per_rank for o in outputs) == 8  # padded
    stacked = {
        key: [torch.cat([o[key] for o in outputs]) for outputs in per_rank]
        for key in ("index", "label", "prob")
    }

    def all_gather(local: torch.Tensor) -> torch.Tensor:  # rank 0's view of the collective
        (key,) = [k for k, (mine, _) in stacked.items() if torch.equal(mine, local)]
        return torch.stack(stacked[key])

    monkeypatch.setattr(module, "all_gather", all_gather)
    module.trainer = SimpleNamespace(world_size=world)
    module._outputs["val"] = per_rank[0]
    frame = module.gathered_predictions("val")
    assert frame["index"].tolist() == list(range(n))
    assert frame["label"].tolist() == [i % 2 for i in range(n)]
    assert frame["prob"].tolist() == pytest.approx([i / 10 for i in range(n)])


def val_row(run_dir: Path) -> pd.Series:
    history = pd.read_csv(run_dir / "csv" / "metrics.csv")
    (row,) = [row for _, row in history.iterrows() if pd.notna(row.get("val/auc"))]
    return row


@pytest.mark.slow
def test_ddp_validation_metrics_equal_a_single_process_run(tiny_faces, tmp_path: Path) -> None:  # noqa: F811
    from deepfake_exp.tasks.train import best_score, train

    assert sum(SPLIT_SIZES["val"]) % 2 == 1  # so DDP on 2 ranks pads the val set
    ddp_dir = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "deepfake_exp.train",
        *tiny_args(tiny_faces, *FROZEN),
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "trainer.precision=32-true", "trainer.sync_batchnorm=false",
        f"hydra.run.dir={ddp_dir}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=550)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (ddp_dir / "train_ddp_process_1.log").is_file()  # rank 1 ran, in the same run dir
    (info,) = json.loads((ddp_dir / "run_info.json").read_text())  # one invocation
    assert "train_ddp_process" not in info["command"]  # rank 0 wrote it: the user's command

    single = compose_config("train", [*TINY_VIT, *FROZEN], tiny_faces)
    single.paths.output_dir = str(tmp_path / "single")
    best, summary = train(single)
    # ddp_spawn (DDP inside a sweep) hands back a callback that never saw the score
    untouched = instantiate(single.callbacks.model_checkpoint)
    assert best_score(untouched, summary["best_checkpoint"]) == best

    ddp, one = val_row(ddp_dir), val_row(tmp_path / "single")
    for key in VAL_METRICS:  # rank-based / count-based: a duplicate or a drop changes them
        assert ddp[key] == one[key], key
    for key in VAL_LOSSES:  # means over samples; batches differ, so float rounding may
        assert ddp[key] == pytest.approx(one[key], abs=1e-6), key
