"""Base class of source adapters."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path

from deepfake_exp.data.records import LABEL_NAMES, MediaRecord
from deepfake_exp.data.splits import SPLITS

PROBLEM_FIELDS = ("video_id", "path", "label", "reason", "detail")  # failures.csv's columns


class DatasetRootError(FileNotFoundError):
    """The dataset root is missing; the message names the path and the override that sets it."""


class SourceRecords(list):
    """A source's records plus the ``problems`` met reading its label files and its
    ``identity_note``.

    ``merge_parts`` adds the problems to ``failures.csv``, so a bad entry is a row there
    instead of a crash (or a silent overwrite), and puts the note in ``split_report.json``.
    """

    def __init__(
        self, records: Iterable[MediaRecord], problems: Iterable[dict] = (), identity_note: str = ""
    ) -> None:
        super().__init__(records)
        self.problems = list(problems)
        self.identity_note = identity_note


class Source(ABC):
    """A dataset's on-disk layout, read into records.

    Adapters only *read the layout*. Missing files, paths escaping the root and unreadable
    media are judged later by the extraction runner, which records each in ``failures.csv``
    instead of stopping the run. A bad entry of a label file (invalid JSON, an unknown label,
    a video listed twice) is kept in ``problems`` (rows with ``PROBLEM_FIELDS``, reasons
    ``bad_metadata`` / ``bad_label`` / ``duplicate``) and the rest is read.

    Args:
        name: Dataset name; names the preprocessed output folder and appears in logs.
        root: Dataset root directory.
        read_splits: Read only the videos of these official splits (e.g. ``[test]``: Celeb-DF's
            test list, FF++'s test pairs, for a cross-dataset or held-out-method test set);
            ``None`` reads all. Sources with official splits take it as an argument.
        is_cropped: True when items are already face crops (use ``detector=none``).
    """

    is_cropped: bool = False
    # What identities mean here and where disjointness cannot hold (split_report.json's note).
    identity_note: str = "the dataset names no identities: each group stands for one"

    def __init__(
        self, name: str, root: str | Path, read_splits: Sequence[str] | None = None
    ) -> None:
        self.name = name
        self.root = Path(root).expanduser().resolve()
        self.problems: list[dict] = []
        self.read_splits = None if read_splits is None else tuple(read_splits)
        unknown = set(self.read_splits or ()) - set(SPLITS)
        if unknown or self.read_splits == ():
            raise ValueError(
                f"dataset '{name}': read_splits must name some of {list(SPLITS)}, "
                f"got {read_splits!r}"
            )

    def problem(
        self, video_id: str, path: str | Path, reason: str, detail: str, label: int | None = None
    ) -> None:
        """Note a bad label-file entry; it becomes a ``failures.csv`` row."""
        row = (video_id, str(path), label, reason, detail)
        self.problems.append(dict(zip(PROBLEM_FIELDS, row, strict=True)))

    def unique(self, listed: Iterable[tuple[MediaRecord, str]]) -> list[MediaRecord]:
        """One record per ``video_id``; ``listed`` pairs each record with where it was listed.

        A repeat with the same label and original is a ``duplicate`` problem and the first
        entry is used; repeats that disagree are all ``duplicate`` problems and the video is
        left out, since which label is right cannot be known.
        """
        by_id: dict[str, list[tuple[MediaRecord, str]]] = {}
        for record, where in listed:
            by_id.setdefault(record.video_id, []).append((record, where))
        kept = []
        for video_id, items in by_id.items():
            if len(items) == 1:
                kept.append(items[0][0])
                continue
            places = "; ".join(f"{w or r.path} ({LABEL_NAMES[r.label]})" for r, w in items)
            conflict = len({(r.label, r.original) for r, _ in items}) > 1
            outcome = "they disagree, so none was used" if conflict else "the first was used"
            detail = f"{video_id} is listed {len(items)} times: {places}; {outcome}"
            if not conflict:
                kept.append(items[0][0])
            for record, _ in items if conflict else items[1:]:
                self.problem(video_id, record.path, "duplicate", detail, record.label)
        return kept

    def check_root(self) -> None:
        """Fail early and clearly when the root is missing."""
        if not self.root.is_dir():
            raise DatasetRootError(
                f"dataset '{self.name}': root directory {self.root} does not exist. "
                f"Set it with the override dataset.root=/path/to/{self.name} "
                f"(or put it in conf/local/)."
            )

    def settings(self) -> dict:
        """What the media depend on beyond their files (a generator's config), for the
        extraction fingerprint: crops made under other settings are redone."""
        return {}

    def prepare(self) -> None:
        """Hook to create the data before reading it (the synthetic generator uses it)."""
        return None

    @abstractmethod
    def _scan(self) -> list[MediaRecord]:
        """Read the layout under ``self.root`` into records."""

    def records(self) -> SourceRecords:
        """All records of the dataset, sorted by ``video_id`` so runs are reproducible.

        ``problems`` (also on the returned list) is refilled on every call.
        """
        self.problems = []
        self.prepare()
        self.check_root()
        records = self.unique((r, "") for r in self._scan())
        if self.read_splits is not None:
            records = [r for r in records if r.split in self.read_splits]
            if not records:
                raise ValueError(
                    f"dataset '{self.name}': no video is in the official split(s) "
                    f"{list(self.read_splits)} (read_splits); are the official splits read?"
                )
        ordered = sorted(records, key=lambda r: r.video_id)
        return SourceRecords(ordered, self.problems, self.identity_note)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, root='{self.root}')"
