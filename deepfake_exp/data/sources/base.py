"""Base class of source adapters."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from deepfake_exp.data.records import MediaRecord


class DatasetRootError(FileNotFoundError):
    """The dataset root is missing; the message names the path and the override that sets it."""


class Source(ABC):
    """A dataset's on-disk layout, read into records.

    Adapters only *read the layout*. Missing files, paths escaping the root and unreadable
    media are judged later by the extraction runner, which records each in ``failures.csv``
    instead of stopping the run.

    Args:
        name: Dataset name; names the preprocessed output folder and appears in logs.
        root: Dataset root directory.
        is_cropped: True when items are already face crops (use ``detector=none``).
    """

    is_cropped: bool = False

    def __init__(self, name: str, root: str | Path) -> None:
        self.name = name
        self.root = Path(root).expanduser().resolve()

    def check_root(self) -> None:
        """Fail early and clearly when the root is missing."""
        if not self.root.is_dir():
            raise DatasetRootError(
                f"dataset '{self.name}': root directory {self.root} does not exist. "
                f"Set it with the override dataset.root=/path/to/{self.name} "
                f"(or put it in conf/local/)."
            )

    def prepare(self) -> None:
        """Hook to create the data before reading it (the synthetic generator uses it)."""
        return None

    @abstractmethod
    def _scan(self) -> list[MediaRecord]:
        """Read the layout under ``self.root`` into records."""

    def records(self) -> list[MediaRecord]:
        """All records of the dataset, sorted by ``video_id`` so runs are reproducible."""
        self.prepare()
        self.check_root()
        records = self._scan()
        return sorted(records, key=lambda r: r.video_id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, root='{self.root}')"
