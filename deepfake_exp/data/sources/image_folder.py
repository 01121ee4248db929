"""Generic image folders: ``<root>/<split>/{real,fake}/…``, ``<root>/{real,fake}/…`` or a CSV.

Also holds the small layout helpers (split names, natural sort, CSV reading) that the other
image-dataset adapters (CS4487, 140k faces) share, so each of those stays a few lines.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from deepfake_exp.data.records import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, MediaRecord, parse_label
from deepfake_exp.data.sources.base import Source

log = logging.getLogger(__name__)

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
MEDIA_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS


def normalise_split(value: str | None) -> str | None:
    """Map a dataset's split spelling (``valid``, ``Test``…) to ``train``/``val``/``test``.

    Empty values mean "no official split" and give ``None`` so the split policy decides.
    """
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip().lower()
    if text not in SPLIT_ALIASES:
        raise ValueError(f"unknown split {value!r}: expected one of {sorted(SPLIT_ALIASES)}")
    return SPLIT_ALIASES[text]


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders ``2.png`` before ``10.png`` (consecutive-run grouping needs it)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_media(folder: Path, extensions: Iterable[str] = MEDIA_EXTENSIONS) -> list[Path]:
    """Media files under ``folder`` (recursively), skipping hidden entries, in natural order."""
    allowed = {e.lower() for e in extensions}
    files = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in allowed
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(files, key=lambda p: natural_key(p.relative_to(folder).as_posix()))


def subfolders(folder: Path) -> list[Path]:
    """Visible subfolders of ``folder`` in natural order."""
    dirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(dirs, key=lambda p: natural_key(p.name))


def relative_id(path: Path, root: Path) -> str:
    """The ``video_id`` of a file: its POSIX path relative to the dataset root."""
    return path.relative_to(root).as_posix()


def read_csv_rows(path: Path, required: Iterable[str]) -> list[dict[str, str]]:
    """Rows of a CSV as dicts; a missing required column fails with the columns it did find."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; found columns {columns}")
        return [
            {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
            for row in reader
        ]


def csv_records(
    source: Source,
    csv_path: Path,
    required: Iterable[str],
    label_of: Callable[[dict[str, str]], int],
    make: Callable[[dict[str, str], int], MediaRecord],
) -> list[MediaRecord]:
    """Records of a label CSV, one per row; a bad row is a problem of ``source``, not a crash.

    A row whose ``label_of`` fails is ``bad_label``, one with an empty path or whose ``make``
    fails (e.g. an unknown split) ``bad_metadata``, and a path listed twice ``duplicate``
    (see ``Source.unique``); the other rows are read. A file with no usable row at all still
    fails, since then the file itself is wrong (e.g. written with the other label convention).
    """
    listed, bad = [], []
    rows = read_csv_rows(csv_path, required)
    for line, row in enumerate(rows, start=2):
        where = f"{csv_path}, line {line}"
        video_id = Path(row["path"]).as_posix() if row.get("path") else f"{csv_path.name}:{line}"
        try:
            if not row.get("path"):
                raise ValueError("empty path")
            reason = "bad_label"
            label = label_of(row)
            reason = "bad_metadata"
            listed.append((make(row, label), where))
        except ValueError as err:
            bad.append((video_id, reason, f"{where}: {err}"))
    if rows and not listed:
        raise ValueError(f"{csv_path}: no usable row; first problem: {bad[0][2]}")
    for video_id, reason, detail in bad:
        source.problem(video_id, csv_path, reason, detail)
    return source.unique(listed)


def scan_split_or_class_folders(
    root: Path, class_label: Callable[[str], int | None]
) -> list[tuple[str | None, Path]]:
    """Find the class folders of a ``<root>/<split>/<class>`` or ``<root>/<class>`` layout.

    Args:
        root: Dataset root.
        class_label: Label of a class folder name, or ``None`` when the name is not a class.

    Returns:
        ``(split, class_folder)`` pairs; ``split`` is ``None`` for the flat layout. Folders
        that are neither a split nor a class are logged and skipped, not silently read.
    """
    children = subfolders(root)
    split_dirs = [d for d in children if d.name.lower() in SPLIT_ALIASES]
    if split_dirs:
        for other in (d for d in children if d not in split_dirs):
            log.warning("%s: skipping %s (not a split folder)", root, other)
        containers = [(normalise_split(d.name), d) for d in split_dirs]
    else:
        containers = [(None, root)]
    found: list[tuple[str | None, Path]] = []
    for split, container in containers:
        for folder in subfolders(container):
            if class_label(folder.name) is None:
                log.warning("%s: skipping %s (not a class folder)", root, folder)
            else:
                found.append((split, folder))
        loose = [
            p for p in container.iterdir() if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS
        ]
        if loose:
            log.warning(
                "%s: skipping %d unlabelled file(s) directly in %s (no class folder)",
                root,
                len(loose),
                container,
            )
    if not found:
        raise FileNotFoundError(
            f"no class folders found under {root}: expected <root>/<split>/<class>/… or "
            f"<root>/<class>/… (split in {sorted(SPLIT_ALIASES)})"
        )
    return found


def folder_label(name: str) -> int | None:
    """Label of a ``real``/``fake`` (or ``0``/``1``, ``original``/``manipulated``) folder."""
    try:
        return parse_label(name)
    except ValueError:
        return None


class ImageFolderSource(Source):
    """Any image (or video) set laid out as class folders or listed in a CSV.

    Without grouping information every file is its own group; give a ``group`` column in the
    CSV to keep related files (frames of one video, one identity) on one side of the split.

    Args:
        name: Dataset name.
        root: Dataset root; folders are read below it and CSV paths are relative to it.
        csv: Optional CSV (absolute or relative to ``root``) with columns
            ``path,label[,group,split]``; when given, folders are not scanned.
    """

    is_cropped = True

    def __init__(self, name: str, root: str | Path, csv: str | Path | None = None) -> None:
        super().__init__(name, root)
        self.csv = None if csv is None else self.root / Path(csv).expanduser()

    def _scan(self) -> list[MediaRecord]:
        return self._scan_csv(self.csv) if self.csv is not None else self._scan_folders()

    def _record(
        self, video_id: str, path: Path, label: int, split: str | None, group: str = ""
    ) -> MediaRecord:
        return MediaRecord(
            video_id=video_id,
            path=str(path),
            label=label,
            group=group or video_id,
            split=split,
            source=self.name,
        )

    def _scan_folders(self) -> list[MediaRecord]:
        records = []
        for split, folder in scan_split_or_class_folders(self.root, folder_label):
            label = parse_label(folder.name)
            for path in list_media(folder):
                records.append(self._record(relative_id(path, self.root), path, label, split))
        return records

    def _scan_csv(self, csv_path: Path) -> list[MediaRecord]:
        if not csv_path.is_file():
            raise FileNotFoundError(
                f"dataset '{self.name}': CSV {csv_path} does not exist (set dataset.csv=…)"
            )

        def make(row: dict[str, str], label: int) -> MediaRecord:
            relative = Path(row["path"])
            split = normalise_split(row.get("split"))
            return self._record(
                relative.as_posix(), self.root / relative, label, split, row.get("group", "")
            )

        return csv_records(
            self, csv_path, ("path", "label"), lambda r: parse_label(r["label"]), make
        )
