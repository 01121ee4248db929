"""Celeb-DF (v2): ``Celeb-real/``, ``YouTube-real/``, ``Celeb-synthesis/`` and the test list.

``List_of_testing_videos.txt`` holds lines ``<label> <relpath>`` where **1 means REAL and 0
means FAKE** — the opposite of this project's convention. Each line's label is checked against
its folder, so a list rewritten with the other convention fails instead of flipping labels.
A single line that contradicts its folder, a malformed line and a repeated line are
``failures.csv`` rows (``bad_label`` / ``bad_metadata`` / ``duplicate``) instead.

Identities: ``id0_id1_0000`` shows target ``id0`` with the face of ``id1``; records carry both
and groups are the connected components of those identities. Celeb-DF's celebrities are
cross-swapped, so on the real dataset one component holds nearly every video: a component
above ``max_component_share`` keeps target-identity groups (the official protocol), and
``split_report.json`` measures the identities shared across splits.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from deepfake_exp.data.records import FAKE, REAL, VIDEO_EXTENSIONS, MediaRecord
from deepfake_exp.data.sources.base import Source
from deepfake_exp.data.sources.image_folder import list_media
from deepfake_exp.data.splits import group_by_identities

log = logging.getLogger(__name__)

FOLDER_LABELS = {"Celeb-real": REAL, "YouTube-real": REAL, "Celeb-synthesis": FAKE}
TEST_LIST_LABELS = {"1": REAL, "0": FAKE}
CELEB_NAME = re.compile(r"^(?P<target>id\d+)_(?:(?P<source>id\d+)_)?(?P<index>\d+)$")


def identities(video_id: str) -> tuple[str, ...]:
    """People a Celeb-DF video shows: ``(target,)`` for a real one, ``(target, source)`` for a
    synthesis; none for YouTube-real videos and names outside the pattern."""
    path = Path(video_id)
    match = CELEB_NAME.match(path.stem)
    if path.parent.as_posix() not in ("Celeb-real", "Celeb-synthesis") or match is None:
        return ()
    return tuple(i for i in (match["target"], match["source"]) if i)


def identity(video_id: str) -> tuple[str, str | None]:
    """Per-target group and original of a Celeb-DF video from its name.

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


def read_test_list(path: Path) -> tuple[dict[str, tuple[int, int]], list[tuple[int, str, str]]]:
    """The official test list (1 = REAL, 0 = FAKE in the file).

    Returns:
        ``relpath -> (label, line number)`` of the first listing of each video, and the bad
        lines as ``(line number, reason, detail)``: malformed (``bad_metadata``) or repeated
        (``duplicate``).
    """
    entries: dict[str, tuple[int, int]] = {}
    bad = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in TEST_LIST_LABELS:
            detail = (
                f"{path}, line {number}: expected '<1|0> <relative path>' (1 = real), got {line!r}"
            )
            bad.append((number, "bad_metadata", detail))
            continue
        video_id = Path(parts[1]).as_posix()
        if video_id in entries:
            detail = (
                f"{path}, line {number}: {video_id} is listed again (first on line "
                f"{entries[video_id][1]}); the first line was used"
            )
            bad.append((number, "duplicate", detail))
            continue
        entries[video_id] = (TEST_LIST_LABELS[parts[0]], number)
    return entries, bad


class CelebDFSource(Source):
    """Reads the three video folders; videos in the official test list get split ``test``.

    The rest get no split, so the split policy divides them into train/val. Groups are the
    connected components of target and source identities (``id0_id1_0000`` joins ``id0`` and
    ``id1``); a component holding more than ``max_component_share`` of the videos keeps
    target-identity groups (``idN``: a fake stays with the real videos of the person it was
    made from), and the identities it shares across splits are measured, not hidden.

    Args:
        name: Dataset name.
        root: Folder holding ``Celeb-real/``, ``YouTube-real/`` and ``Celeb-synthesis/``.
        test_list: Official test list relative to ``root``; ``null`` to ignore it.
        max_component_share: Largest share of the videos one identity component may hold
            and still be kept whole.
        read_splits: ``[test]`` reads only the official test list (the cross-dataset
            protocol's Celeb-DF set); ``None``: every video.
    """

    identity_note = (
        "identities idN from file names (target and source of each synthesis); groups are their "
        "connected components unless one holds more than max_component_share of the videos "
        "(cross-swapped celebrities): those keep target-identity groups and the shared "
        "identities are counted here; YouTube-real videos carry no identity"
    )

    def __init__(
        self,
        name: str,
        root: str | Path,
        test_list: str | None = "List_of_testing_videos.txt",
        max_component_share: float = 0.5,
        read_splits: Sequence[str] | None = None,
    ) -> None:
        super().__init__(name, root, read_splits)
        self.test_list = None if test_list is None else self.root / test_list
        if not 0.0 < max_component_share <= 1.0:
            raise ValueError(f"max_component_share must be in (0, 1], got {max_component_share}")
        self.max_component_share = max_component_share

    def _official_test(self) -> tuple[dict[str, int], set[str]]:
        """``relpath -> label`` of the usable test-list lines, and the videos whose line
        contradicts their folder (left out); bad lines become problems."""
        if self.test_list is None:
            return {}, set()
        if not self.test_list.is_file():
            log.warning(
                "%s: no test list at %s; no video gets split=test", self.root, self.test_list
            )
            return {}, set()
        entries, bad = read_test_list(self.test_list)
        for number, reason, detail in bad:
            self.problem(f"{self.test_list.name}:{number}", self.test_list, reason, detail)
        folder_label = {v: FOLDER_LABELS.get(Path(v).parts[0]) for v in entries}
        contradicting = {
            video_id: number
            for video_id, (listed, number) in entries.items()
            if folder_label[video_id] not in (None, listed)
        }
        checked = sum(label is not None for label in folder_label.values())
        if contradicting and len(contradicting) == checked:
            raise ValueError(
                f"{self.test_list}: every listed video's label contradicts its folder (e.g. "
                f"{next(iter(contradicting))}): the file must use 1 = real, 0 = fake"
            )
        for video_id, number in contradicting.items():
            listed = "real" if entries[video_id][0] == REAL else "fake"
            detail = (
                f"{self.test_list}, line {number}: {video_id} is listed as {listed} but its "
                "folder says otherwise (in this file 1 = real, 0 = fake); the video is left out"
            )
            self.problem(video_id, self.root / video_id, "bad_label", detail)
        test = {v: label for v, (label, _) in entries.items() if v not in contradicting}
        return test, set(contradicting)

    def _scan(self) -> list[MediaRecord]:
        labels: dict[str, int] = {}
        for folder, label in FOLDER_LABELS.items():
            if not (self.root / folder).is_dir():
                log.warning("%s: folder %s is missing", self.root, folder)
                continue
            for path in list_media(self.root / folder, VIDEO_EXTENSIONS):
                labels[path.relative_to(self.root).as_posix()] = label
        test, contradicting = self._official_test()
        for video_id in contradicting:
            labels.pop(video_id, None)  # its label is in doubt: a bad_label row instead
        for video_id, listed in test.items():
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
                    identities=identities(video_id),
                )
            )
        return group_by_identities(records, self.max_component_share)
