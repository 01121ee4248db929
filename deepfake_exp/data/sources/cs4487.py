"""CityU CS4487 course project: 299×299 face crops in ``real`` / fake class folders.

The Kaggle release names the class folders ``real``, ``fake_deepfake`` and ``fake_face2face``;
the study's text calls the classes ``real``, ``deep_fake`` and ``f2f_fake``. Both spellings
are read, either directly under the root (``<root>/<class>/*.png``) or below split folders
(``<root>/{train,test}/<class>/*.png``). Images lying loose in a split folder carry no label
(the competition's unlabelled test set) and are skipped with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from deepfake_exp.data.records import IMAGE_EXTENSIONS, MediaRecord, parse_label
from deepfake_exp.data.sources.base import Source
from deepfake_exp.data.sources.image_folder import (
    list_media,
    relative_id,
    scan_split_or_class_folders,
)

DEFAULT_CLASSES = {
    "real": "REAL",
    "fake_deepfake": "FAKE",
    "fake_face2face": "FAKE",
    "deep_fake": "FAKE",
    "f2f_fake": "FAKE",
}


def run_groups(paths: list[Path], group_size: int) -> list[int]:
    """Run index of each image: ``number // group_size`` when every name is a number, else
    ``position // group_size`` in natural name order.

    The study found that runs of ``group_size`` consecutive images share an origin. Using the
    file number keeps runs aligned even when a file of the folder is missing.
    """
    stems = [p.stem for p in paths]
    if stems and all(s.isdigit() for s in stems):
        return [int(s) // group_size for s in stems]
    return [i // group_size for i in range(len(paths))]


class CS4487Source(Source):
    """Reads the CS4487 class folders; runs of ``group_size`` images form one group.

    Groups are ``[<split>/]<class>/<run>``, so the group-disjoint split policy keeps frames of
    one origin together (the study's "group selection"); ``individual`` ignores them.

    Args:
        name: Dataset name.
        root: Folder holding the class folders, or ``train``/``test`` folders holding them.
        group_size: Consecutive images that share an origin (5 in the study).
        classes: Class folder name -> label (``REAL``/``FAKE`` or 0/1); other folders are
            skipped with a warning.
    """

    is_cropped = True

    def __init__(
        self,
        name: str,
        root: str | Path,
        group_size: int = 5,
        classes: Mapping[str, str | int] | None = None,
    ) -> None:
        super().__init__(name, root)
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size = group_size
        self.classes = {
            str(k).lower(): parse_label(v) for k, v in (classes or DEFAULT_CLASSES).items()
        }

    def _scan(self) -> list[MediaRecord]:
        records = []
        found = scan_split_or_class_folders(self.root, lambda n: self.classes.get(n.lower()))
        for split, folder in found:
            label = self.classes[folder.name.lower()]
            prefix = folder.relative_to(self.root).as_posix()
            paths = list_media(folder, IMAGE_EXTENSIONS)
            for path, run in zip(paths, run_groups(paths, self.group_size), strict=True):
                records.append(
                    MediaRecord(
                        video_id=relative_id(path, self.root),
                        path=str(path),
                        label=label,
                        group=f"{prefix}/{run}",
                        split=split,
                        source=self.name,
                    )
                )
        return records
