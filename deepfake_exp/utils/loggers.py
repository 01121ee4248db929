"""The project's Lightning logger: a CSV history that survives ``train resume=<run>``.

The training-curve plot and the report read the run's CSV history
(:attr:`deepfake_exp.runs.RunDir.history_csv`): after a resume it must still hold every epoch.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.utilities import rank_zero_only

from deepfake_exp.utils.io import atomic_write


class _HistoryWriter(ExperimentWriter):
    """Lightning's CSV writer, except that rows logged before a resume are kept.

    Lightning deletes ``metrics.csv`` when its logger starts. Here the old rows are read
    instead, and at the first save those logged before the new first step are written back
    (rows of an epoch that the resume repeats are dropped, so no epoch appears twice; a
    fresh run starting at step 0 keeps nothing, as Lightning does).
    """

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        self._history: list[dict[str, str]] | None = None
        if path.is_file():
            with path.open(newline="") as handle:
                self._history = list(csv.DictReader(handle))

    def save(self) -> None:
        if self._history is not None and self.metrics:
            first_step = min(row["step"] for row in self.metrics)
            kept = [r for r in self._history if float(r.get("step") or "inf") < first_step]
            self.metrics_keys = sorted(set().union(*kept, *self.metrics))
            keys = self.metrics_keys

            def write(tmp: Path) -> None:
                with tmp.open("w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=keys)
                    writer.writeheader()
                    writer.writerows(kept)

            atomic_write(self.metrics_file_path, write)
            self._history = None
        super().save()


class HistoryCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resume (see :class:`_HistoryWriter`)."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and rank_zero_only.rank == 0:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HistoryWriter(log_dir=self.log_dir)
        return super().experiment
