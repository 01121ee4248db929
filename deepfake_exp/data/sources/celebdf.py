"""Celeb-DF (v2): ``Celeb-real/``, ``YouTube-real/``, ``Celeb-synthesis/`` and the test list.

``List_of_testing_videos.txt`` holds lines ``<label> <relpath>`` where **1 means REAL and 0
means FAKE** — the opposite of this project's convention. Each line's label is checked against
its folder, so a list rewritten with the other convention fails instead of flipping labels.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from deepfake_exp.data.records import FAKE, REAL, VIDEO_EXTENSIONS, MediaRecord
from deepfake_exp.data.sources.base import Source
from deepfake_exp.data.sources.image_folder import list_media

log = logging.getLogger(__name__)

FOLDER_LABELS = {"Celeb-real": REAL, "YouTube-real": REAL, "Celeb-synthesis": FAKE}
TEST_LIST_LABELS = {"1": REAL, "0": FAKE}
CELEB_NAME = re.compile(r"^(?P<target>id\d+)_(?:(?P<source>id\d+)_)?(?P<index>\d+)$")


def identity(video_id: str) -> tuple[str, str | None]:
    """Group and original of a Celeb-DF video from its name.

    ``Celeb-real/id0_0000`` and ``Celeb-synthesis/id0_id1_0000`` (target id0, face of id1)
    both belong to target identity ``id0``; the fake's original is ``Celeb-real/id0_0000``.
    YouTube-real videos carry no identity, and neither does a name outside the Celeb-DF
    pattern (e.g. a bad test-list entry, which the extraction runner then rejects), so each
    of those is its own group.
    """
    path = Path(video_id)
    folder = path.parent.as_posix()
    match = CELEB_NAME.match(path.stem)
    if folder not in ("Celeb-real", "Celeb-synthesis") or match is None:
        return path.with_suffix("").as_posix(), None
    if folder == "Celeb-synthesis" and match["source"]:
        return match["target"], f"Celeb-real/{match['target']}_{match['index']}{path.suffix}"
    return match["target"], None


def read_test_list(path: Path) -> dict[str, int]:
    """``relpath -> label`` of the official test list (1 = REAL, 0 = FAKE in the file)."""
    entries = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in TEST_LIST_LABELS:
            raise ValueError(
                f"{path}, line {number}: expected '<1|0> <relative path>' (1 = real), got {line!r}"
            )
        entries[Path(parts[1]).as_posix()] = TEST_LIST_LABELS[parts[0]]
    return entries


class CelebDFSource(Source):
    """Reads the three video folders; videos in the official test list get split ``test``.

    The rest get no split, so the split policy divides them into train/val. Groups are the
    target identity (``idN``), so a fake stays with the real videos of the person it was
    made from.

    Args:
        name: Dataset name.
        root: Folder holding ``Celeb-real/``, ``YouTube-real/`` and ``Celeb-synthesis/``.
        test_list: Official test list relative to ``root``; ``null`` to ignore it.
    """

    def __init__(
        self, name: str, root: str | Path, test_list: str | None = "List_of_testing_videos.txt"
    ) -> None:
        super().__init__(name, root)
        self.test_list = None if test_list is None else self.root / test_list

    def _official_test(self) -> dict[str, int]:
        if self.test_list is None:
            return {}
        if not self.test_list.is_file():
            log.warning(
                "%s: no test list at %s; no video gets split=test", self.root, self.test_list
            )
            return {}
        return read_test_list(self.test_list)

    def _scan(self) -> list[MediaRecord]:
        labels: dict[str, int] = {}
        for folder, label in FOLDER_LABELS.items():
            if not (self.root / folder).is_dir():
                log.warning("%s: folder %s is missing", self.root, folder)
                continue
            for path in list_media(self.root / folder, VIDEO_EXTENSIONS):
                labels[path.relative_to(self.root).as_posix()] = label
        test = self._official_test()
        for video_id, listed in test.items():
            expected = FOLDER_LABELS.get(Path(video_id).parts[0])
            if expected is not None and expected != listed:
                raise ValueError(
                    f"{self.test_list}: {video_id} is listed as "
                    f"{'real' if listed == REAL else 'fake'} but its folder says otherwise "
                    "(in this file 1 = real, 0 = fake)"
                )
            labels.setdefault(video_id, listed)
        if not labels:
            raise FileNotFoundError(
                f"dataset '{self.name}': no videos under {self.root}: expected "
                f"{', '.join(FOLDER_LABELS)} folders"
            )
        records = []
        for video_id, label in labels.items():
            group, original = identity(video_id)
            records.append(
                MediaRecord(
                    video_id=video_id,
                    path=str(self.root / video_id),
                    label=label,
                    group=group,
                    original=original,
                    split="test" if video_id in test else None,
                    source=self.name,
                )
            )
        return records
