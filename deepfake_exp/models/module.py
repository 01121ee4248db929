"""The one LightningModule: backbone + head, loss, optimizer/scheduler, epoch-level metrics."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch import Tensor

from deepfake_exp.evaluation.aggregate import add_missing_videos, aggregate_video_scores
from deepfake_exp.evaluation.metrics import binary_metrics, clipped_log_loss
from deepfake_exp.models.backbones import Backbone
from deepfake_exp.models.heads import build_head, fake_probability, head_loss
from deepfake_exp.models.transfer import apply_freeze, param_groups


class UndefinedMetricWarning(UserWarning):
    """A val/test metric is undefined on the split (e.g. ROC-AUC with one class) and not logged."""


class EvalVideos(Protocol):
    """Which video each val/test sample belongs to, given to the module by whoever trains it.

    The module computes video-level metrics from it without knowing where the data lives
    (``tasks.train`` adapts its data module; evaluation-only modules need none).
    """

    def samples(self, stage: str) -> pd.DataFrame | None:
        """Row ``i``: sample ``i`` of ``stage``'s ``video_id`` (and ``track_id`` when the
        manifest has it, for ``track_max``); ``None``: no video metrics."""

    def faceless_videos(self, stage: str) -> pd.DataFrame | None:
        """The split's listed videos without any face (``video_id``, ``label``), to score 0.5."""


class DeepfakeDetector(pl.LightningModule):
    """Backbone + binary head trained with CE (softmax) or BCE (sigmoid).

    Validation and test metrics are computed once per epoch over *all* predictions, gathered
    across processes and de-duplicated by sample index (DDP pads the last batch), at face
    level and at video level (faces aggregated per video, and the split's videos without a
    face at 0.5, as evaluation scores them, so the checkpoint is selected on the numbers it
    is judged by). A metric that is undefined on the split (ROC-AUC with one class) is not
    logged, with a warning: selecting a checkpoint on a stand-in constant would be silent
    nonsense.

    Args:
        backbone: Feature extractor (``conf/model``).
        optimizer: Partial optimizer taking parameter groups (``conf/optimizer``).
        scheduler: Partial LR scheduler taking the optimizer, or ``None``.
        head: ``softmax`` (2 logits) or ``sigmoid`` (1 logit).
        head_hidden: Hidden width of an MLP head (Midway MobileNet study: 1024).
        head_dropout: Dropout before the last layer of the head.
        label_smoothing: Label smoothing of the loss.
        freeze: ``none`` (full fine-tune), ``backbone`` (linear probe) or ``last_n``.
        unfreeze_last: Blocks left trainable with ``freeze=last_n``.
        backbone_lr: Learning rate of the backbone (differential LR); ``None``: the optimizer's.
        video_aggregation: How face scores make a video score (``mean``, ``max``, ``confident``).
        normalize_features: L2-normalise the embedding before the head (GenD).
    """

    def __init__(
        self,
        backbone: Backbone,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        head: str = "softmax",
        head_hidden: int | None = None,
        head_dropout: float = 0.0,
        label_smoothing: float = 0.0,
        freeze: str = "none",
        unfreeze_last: int = 0,
        backbone_lr: float | None = None,
        video_aggregation: str = "mean",
        normalize_features: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "optimizer", "scheduler"])
        self.backbone = backbone
        self.head = build_head(
            head, backbone.num_features, head_hidden, head_dropout, normalize=normalize_features
        )
        apply_freeze(self.backbone, freeze, unfreeze_last)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.run_config: dict | None = None
        # The faces folder's fingerprint (deepfake_exp.runs.data_fingerprint), set by train.
        self.data_fingerprint: dict | None = None
        self._outputs: dict[str, list[dict[str, Tensor]]] = {"val": [], "test": []}
        # Set by the trainer of this module (tasks.train); None: face-level metrics only.
        self.eval_videos: EvalVideos | None = None
        self._warned: set[str] = set()

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.backbone(images))

    def predict_proba(self, images: Tensor) -> Tensor:
        """P(fake) per image."""
        return fake_probability(self.hparams.head, self(images))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self(batch["image"])
        loss = head_loss(self.hparams.head, logits, batch["label"], self.hparams.label_smoothing)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, step "
                f"{self.global_step}: the run diverged (lower optimizer.lr?)"
            )
        # one name per curve: Lightning renames a value logged on_step and on_epoch to
        # train/loss_step + train/loss_epoch, which breaks the train/loss vs val/loss panels
        self.log("train/loss", loss, on_epoch=True, on_step=False, batch_size=len(logits))
        self.log("train/loss_step", loss, on_step=True, prog_bar=True, batch_size=len(logits))
        return loss

    def _eval_step(self, stage: str, batch: dict[str, Tensor]) -> None:
        logits = self(batch["image"])
        loss = head_loss(self.hparams.head, logits, batch["label"])
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(logits))
        self._outputs[stage].append(
            {
                "index": batch["index"].detach(),
                "label": batch["label"].detach(),
                "prob": fake_probability(self.hparams.head, logits).detach().float(),
            }
        )

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def gathered_predictions(self, stage: str) -> pd.DataFrame:
        """This epoch's predictions of ``stage`` from every process, one row per sample."""
        outputs = self._outputs[stage]
        if outputs:
            local = {k: torch.cat([o[k] for o in outputs]) for k in ("index", "label", "prob")}
        else:
            local = {k: torch.empty(0, device=self.device) for k in ("index", "label", "prob")}
        if self.trainer is not None and self.trainer.world_size > 1:
            local = {k: self.all_gather(v).reshape(-1) for k, v in local.items()}
        frame = pd.DataFrame({k: v.cpu().numpy() for k, v in local.items()})
        frame = frame.drop_duplicates("index").sort_values("index").reset_index(drop=True)
        frame["index"] = frame["index"].astype(int)
        frame["label"] = frame["label"].astype(int)
        return frame

    def _epoch_metrics(self, stage: str) -> None:
        frame = self.gathered_predictions(stage)
        self._outputs[stage].clear()
        if frame.empty or self.trainer.sanity_checking:
            return
        logged = self.stage_metrics(stage, frame)
        self.log_dict(logged, prog_bar=stage == "val", rank_zero_only=False, sync_dist=False)

    def stage_metrics(self, stage: str, frame: pd.DataFrame) -> dict[str, float]:
        """Face and video metrics of one epoch's predictions (``index``, ``label``, ``prob``).

        Undefined values (NaN) are left out, with a warning naming the split's class counts.
        """
        face = binary_metrics(frame["label"].to_numpy(), frame["prob"].to_numpy())
        values = {f"{stage}/auc": face["roc_auc"], f"{stage}/acc": face["accuracy"]}
        values[f"{stage}/log_loss"] = clipped_log_loss(frame["label"], frame["prob"])
        counts = {"faces": face}
        samples = self.eval_videos.samples(stage) if self.eval_videos else None
        if samples is not None:
            of_rows = samples.iloc[frame["index"].to_numpy()].reset_index(drop=True)
            frame = pd.concat([frame.reset_index(drop=True), of_rows], axis=1)
            videos = aggregate_video_scores(frame, self.hparams.video_aggregation)
            faceless = self.eval_videos.faceless_videos(stage)
            if faceless is not None and not faceless.empty:
                videos = add_missing_videos(videos, faceless)
            video = binary_metrics(videos["label"].to_numpy(), videos["prob"].to_numpy())
            values[f"{stage}/video_auc"] = video["roc_auc"]
            values[f"{stage}/video_acc"] = video["accuracy"]
            values[f"{stage}/video_log_loss"] = video["log_loss"]
            counts["videos"] = video
        logged = {}
        for key, value in values.items():
            if np.isfinite(value):
                logged[key] = float(value)
            else:
                self._warn_undefined(key, counts["videos" if "/video_" in key else "faces"])
        return logged

    def _warn_undefined(self, key: str, counts: dict) -> None:
        if key in self._warned or getattr(rank_zero_only, "rank", 0) != 0:
            return
        self._warned.add(key)
        present = "fake" if counts["n_fake"] else "real"
        warnings.warn(
            f"{key} is undefined and is not logged: the split holds only {present} samples "
            f"({counts['n_real']} real, {counts['n_fake']} fake), so no checkpoint can be "
            "selected on it. Re-run preprocessing with a split that puts both classes in val "
            "and test, or monitor a defined metric (e.g. val/loss).",
            UndefinedMetricWarning,
            stacklevel=2,
        )

    def on_validation_epoch_end(self) -> None:
        self._epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_metrics("test")

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise RuntimeError("DeepfakeDetector was built without an optimizer (evaluation only)")
        factory = self.optimizer_factory
        base_lr = factory.keywords.get("lr") if isinstance(factory, partial) else None
        if base_lr is None:
            base_lr = 1e-3
        groups = param_groups(self.backbone, self.head, base_lr, self.hparams.backbone_lr)
        optimizer = factory(groups)
        scheduler = self.scheduler_factory(optimizer) if self.scheduler_factory else None
        if scheduler is None:  # no factory, or scheduler=none (no_schedule returns None)
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint["run_config"] = self.run_config
        if self.data_fingerprint is not None:
            checkpoint["data_fingerprint"] = self.data_fingerprint

    def parameter_counts(self) -> dict[str, int]:
        """Trainable and total parameters (after freezing): what a tuning mode changes."""
        params = list(self.parameters())
        return {
            "n_params_trainable": sum(p.numel() for p in params if p.requires_grad),
            "n_params_total": sum(p.numel() for p in params),
        }

    def embed(self, images: Tensor) -> Tensor:
        """Pooled backbone embedding (the features the head sees)."""
        return self.backbone(images)
