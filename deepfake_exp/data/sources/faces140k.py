"""140k Real and Fake Faces (Kaggle, xhlulu): FFHQ reals and StyleGAN fakes, 256×256 crops.

Layout: ``<root>/real_vs_fake/real-vs-fake/{train,valid,test}/{real,fake}/*.jpg`` plus the
official split CSVs ``<root>/{train,valid,test}.csv`` with columns
``<index>,original_path,id,label,label_str,path`` (``path`` relative to the image folder).

The CSVs' numeric ``label`` is 1 for REAL and 0 for FAKE — the opposite of this project's
convention — so the label is read from ``label_str`` (``real``/``fake``) and, only when that
column is absent, from ``label`` inverted.
"""

from __future__ import annotations

import logging
from pathlib import Path

from deepfake_exp.data.records import FAKE, IMAGE_EXTENSIONS, REAL, MediaRecord, parse_label
from deepfake_exp.data.sources.base import Source
from deepfake_exp.data.sources.image_folder import (
    csv_records,
    folder_label,
    list_media,
    normalise_split,
    relative_id,
    subfolders,
)

log = logging.getLogger(__name__)

OFFICIAL_SPLITS = ("train", "valid", "test")
CSV_LABEL_IS_REAL = {"1": REAL, "0": FAKE}


def csv_label(row: dict[str, str]) -> int:
    """Label of a CSV row: ``label_str`` when present, else the numeric ``label`` (1 = real).

    When both are present they must agree, which catches a CSV rewritten with the other
    numeric convention.
    """
    numeric = row.get("label", "")
    if numeric and numeric not in CSV_LABEL_IS_REAL:
        raise ValueError(f"label must be 1 (real) or 0 (fake) in this dataset, got {numeric!r}")
    if not row.get("label_str"):
        if not numeric:
            raise ValueError("row has neither label_str nor label")
        return CSV_LABEL_IS_REAL[numeric]
    label = parse_label(row["label_str"])
    if numeric and CSV_LABEL_IS_REAL[numeric] != label:
        raise ValueError(
            f"label={numeric} contradicts label_str={row['label_str']!r} "
            "(this dataset's numeric label is 1 = real, 0 = fake)"
        )
    return label


class Faces140kSource(Source):
    """Reads the official CSVs when present (one per split), else the split folders.

    Each image is its own group: the dataset carries no identity information (FFHQ reals are
    distinct people; fakes are generated).

    Args:
        name: Dataset name.
        root: Folder holding ``real_vs_fake/`` and the CSVs.
        image_dir: Folder (relative to ``root``) holding ``train/valid/test``; CSV paths are
            relative to it. Use ``.`` when the split folders sit directly under ``root``.
        use_csv: Read ``<root>/<split>.csv`` where it exists; folders fill in the others.
    """

    is_cropped = True

    def __init__(
        self,
        name: str,
        root: str | Path,
        image_dir: str = "real_vs_fake/real-vs-fake",
        use_csv: bool = True,
    ) -> None:
        super().__init__(name, root)
        self.image_dir = self.root / image_dir
        self.use_csv = use_csv

    def _scan(self) -> list[MediaRecord]:
        records = []
        for official in OFFICIAL_SPLITS:
            csv_path = self.root / f"{official}.csv"
            folder = self.image_dir / official
            if self.use_csv and csv_path.is_file():
                records += self._scan_csv(csv_path, normalise_split(official))
            elif folder.is_dir():
                records += self._scan_folder(folder, normalise_split(official))
        if not records:
            raise FileNotFoundError(
                f"dataset '{self.name}': no images found: expected {self.image_dir}/"
                f"{{train,valid,test}}/{{real,fake}}/ (set dataset.image_dir=…) or "
                f"{self.root}/{{train,valid,test}}.csv"
            )
        return records

    def _record(self, video_id: str, path: Path, label: int, split: str | None) -> MediaRecord:
        return MediaRecord(
            video_id=video_id,
            path=str(path),
            label=label,
            group=video_id,
            split=split,
            source=self.name,
        )

    def _scan_folder(self, folder: Path, split: str | None) -> list[MediaRecord]:
        records = []
        for class_dir in subfolders(folder):
            label = folder_label(class_dir.name)
            if label is None:
                log.warning("%s: skipping %s (not a real/fake folder)", self.root, class_dir)
                continue
            for path in list_media(class_dir, IMAGE_EXTENSIONS):
                records.append(self._record(relative_id(path, self.image_dir), path, label, split))
        return records

    def _scan_csv(self, csv_path: Path, split: str | None) -> list[MediaRecord]:
        def make(row: dict[str, str], label: int) -> MediaRecord:
            relative = Path(row["path"])
            return self._record(relative.as_posix(), self.image_dir / relative, label, split)

        return csv_records(self, csv_path, ("path",), csv_label, make)
