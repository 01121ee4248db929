"""evaluate's robustness sweep (issue 16.1): test faces perturbed, scored with the clean-val
threshold. Severity 0 must be the clean evaluation itself, and a strong blur must cost a
detector that learned the easy synthetic set's sharp seams some AUC.

The fast tests wire a stand-in perturbation through a random-weight checkpoint of the tiny
set; the slow ones train a ResNet-18 that really learned (as ``test_train`` does)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from deepfake_exp.evaluation.robustness import GaussianBlur, Perturbation
from deepfake_exp.evaluation.scores import BootstrapSettings
from tests.conftest import TINY_DATASET, compose_config
from tests.test_train import EASY_SYNTHETIC, LEARN

slow = pytest.mark.slow


class Darken(Perturbation):
    """A stand-in perturbation: every pixel shifted down by a level (0 at severity 0)."""

    def __init__(self) -> None:
        super().__init__(levels=(40, 120))

    def apply(self, image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
        return np.clip(image.astype(np.int16) - level, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def random_ckpt(tiny_preprocessed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the tiny set's config with random weights: no training needed."""
    from deepfake_exp.runs import data_fingerprint

    root = tiny_preprocessed[0]
    cfg = compose_config("train", [*TINY_DATASET, "model=resnet18", "model.input_size=64"], root)
    torch.manual_seed(0)
    module = instantiate(cfg.module, backbone=instantiate(cfg.model))
    ckpt = tmp_path_factory.mktemp("random_run") / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    checkpoint = {
        "run_config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "state_dict": module.state_dict(),
        "data_fingerprint": data_fingerprint(cfg.data.faces_dir),
    }
    torch.save(checkpoint, ckpt)
    return ckpt


def _evaluate(ckpt: Path, out: Path, robustness) -> dict:
    from deepfake_exp.tasks.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(
        ckpt,
        out,
        make_plots=False,
        num_workers=0,
        calibrate=False,
        bootstrap=BootstrapSettings(n_resamples=50),
        robustness=robustness,
    )


def test_sweep_rescores_the_test_faces_under_each_severity(random_ckpt, tmp_path) -> None:
    metrics = _evaluate(random_ckpt, tmp_path, {"perturbations": {"darken": Darken()}})
    table = pd.read_csv(tmp_path / "robustness.csv")
    assert list(table["severity"]) == [0, 1, 2]
    clean = table.iloc[0]
    assert clean["face_auc"] == pytest.approx(metrics["test"]["face"]["roc_auc"], abs=1e-12)
    assert clean["accuracy"] == metrics["test"]["video"]["accuracy"]
    faces = pd.read_csv(tmp_path / "predictions_test_faces.csv")
    assert not np.isclose(table["log_loss"][2], clean["log_loss"]), "the perturbation is applied"
    assert set(metrics["robustness"]) == {"mean_face_auc", "mean_video_auc"}
    assert len(faces) > 0 and (tmp_path / "robustness.png").is_file()


def test_no_perturbations_no_sweep(random_ckpt, tmp_path) -> None:
    metrics = _evaluate(random_ckpt, tmp_path, {"perturbations": {}})
    assert "robustness" not in metrics and not (tmp_path / "robustness.csv").exists()


@pytest.fixture(scope="module")
def learned_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The best checkpoint of a ResNet-18 trained on the easy synthetic set (as test_train)."""
    from deepfake_exp.tasks.preprocess import preprocess
    from deepfake_exp.tasks.train import train

    root = tmp_path_factory.mktemp("robust")
    preprocess(compose_config("preprocess", [*EASY_SYNTHETIC, "progress=false"], root))
    cfg = compose_config("train", [*LEARN, "test=false"], root)
    with open_dict(cfg):
        cfg.paths.output_dir = str(root / "run")
    train(cfg)
    return root / "run" / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def robust_eval(learned_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deepfake_exp.tasks.evaluate import evaluate_checkpoint

    out = tmp_path_factory.mktemp("robust_eval")
    blur = GaussianBlur(sigmas=(1.0, 4.0))
    evaluate_checkpoint(
        learned_ckpt,
        out,
        make_plots=False,
        num_workers=0,
        calibrate=False,
        tensorboard_dir=out / "tensorboard",
        bootstrap=BootstrapSettings(n_resamples=200),
        robustness={"perturbations": {"blur": blur}},
    )
    return out


@slow
def test_severity_zero_is_the_clean_evaluation(robust_eval: Path) -> None:
    metrics = json.loads((robust_eval / "metrics.json").read_text())
    table = pd.read_csv(robust_eval / "robustness.csv")
    assert list(table["severity"]) == [0, 1, 2] and set(table["perturbation"]) == {"blur"}
    clean = table[table["severity"] == 0].iloc[0]
    test = metrics["test"]
    assert clean["face_auc"] == pytest.approx(test["face"]["roc_auc"], abs=1e-12)
    assert clean["video_auc"] == pytest.approx(test["video"]["roc_auc"], abs=1e-12)
    assert clean["log_loss"] == pytest.approx(test["video"]["log_loss"], abs=1e-12)
    assert clean["accuracy"] == test["video"]["accuracy"]  # the clean-val threshold, unchanged
    assert clean["video_auc_lo"] <= clean["video_auc"] <= clean["video_auc_hi"]
    summary = metrics["robustness"]
    assert summary["mean_video_auc"] == pytest.approx(table["video_auc"][1:].mean())
    assert summary["mean_face_auc"] == pytest.approx(table["face_auc"][1:].mean())


@slow
def test_strongest_blur_costs_auc(robust_eval: Path) -> None:
    table = pd.read_csv(robust_eval / "robustness.csv").set_index("severity")
    assert table.loc[0, "face_auc"] >= 0.8, "the detector must have learned something"
    assert table.loc[2, "face_auc"] < table.loc[0, "face_auc"]
    assert np.isfinite(table["log_loss"]).all()


@slow
def test_robustness_plot_in_png_and_tensorboard(robust_eval: Path) -> None:
    assert (robust_eval / "robustness.png").stat().st_size > 0
    events = EventAccumulator(str(robust_eval / "tensorboard"))
    events.Reload()
    assert "eval/robustness" in events.Tags()["images"]
    assert "robustness/mean_video_auc" in events.Tags()["scalars"]


def test_robustness_option_composes_for_evaluate_and_train() -> None:
    from deepfake_exp.evaluation.robustness import build_perturbations

    for name in ("evaluate", "train"):
        assert dict(compose_config(name, []).robustness.perturbations) == {}  # default: none
        built = build_perturbations(
            compose_config(name, ["robustness=standard"]).robustness.perturbations
        )
        assert set(built) == {"jpeg", "blur", "downscale", "noise", "brightness_contrast"}
        assert all(len(p.severities) >= 5 and p.severities[0] == 0 for p in built.values())
