"""FaceForensics++: YouTube originals and their manipulations at one compression level.

Layout: ``original_sequences/youtube/<c>/videos/NNN.mp4`` and
``manipulated_sequences/<Method>/<c>/videos/NNN_MMM.mp4`` (target NNN, face or expression
from source MMM). The official split files ``train.json``/``val.json``/``test.json`` each list
pairs ``[["NNN", "MMM"], …]``; both originals of a pair and both of its fakes share its split.

Grouping: every fake links its two originals, and so does every official pair; a group is a
connected component of those links (union-find), named by its sorted ids joined with ``_``.
In FF++ the pairs form a perfect matching, so each group is exactly one official pair
(``NNN_MMM`` with NNN < MMM). The union rather than a plain sorted pair keeps groups
disjoint even for a custom manipulation set where one video takes part in several pairs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

from deepfake_exp.data.records import FAKE, REAL, VIDEO_EXTENSIONS, MediaRecord
from deepfake_exp.data.sources.base import Source
from deepfake_exp.data.sources.image_folder import list_media
from deepfake_exp.data.splits import connected_groups

log = logging.getLogger(__name__)

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
COMPRESSIONS = ("raw", "c23", "c40")
SPLIT_FILES = {"train": "train.json", "val": "val.json", "test": "test.json"}
FAKE_NAME = re.compile(r"^(?P<target>\d+)_(?P<source>\d+)$")


def read_split_pairs(path: Path) -> list[tuple[str, str]]:
    """Pairs of one official split file, validated so a broken file fails with its name."""
    expected = 'expected a JSON list of ["NNN", "MMM"] pairs of video ids'
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); {expected}") from err
    if not isinstance(data, list):
        raise ValueError(f"{path}: {expected}, got {type(data).__name__}")
    pairs = []
    for index, pair in enumerate(data):
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(v, str) and v.isdigit() for v in pair)
        ):
            raise ValueError(f"{path}: entry {index} is {pair!r}; {expected}")
        pairs.append((pair[0], pair[1]))
    return pairs


def official_splits(split_dir: Path) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """``video id -> split`` and all pairs from the official split files found in ``split_dir``.

    Raises:
        ValueError: A file is malformed or a video is listed in two splits.
    """
    split_of: dict[str, str] = {}
    all_pairs = []
    for split, file_name in SPLIT_FILES.items():
        path = split_dir / file_name
        if not path.is_file():
            continue
        pairs = read_split_pairs(path)
        all_pairs += pairs
        for video in (v for pair in pairs for v in pair):
            if split_of.setdefault(video, split) != split:
                raise ValueError(
                    f"{split_dir}: video {video} is listed in both {split_of[video]} and {split}"
                )
    return split_of, all_pairs


class FaceForensicsSource(Source):
    """Reads the originals and the chosen methods at one compression level.

    Args:
        name: Dataset name.
        root: FF++ root holding ``original_sequences/`` and ``manipulated_sequences/``.
        methods: Manipulation folders to read (each must exist at ``compression``).
        compression: ``raw``, ``c23`` or ``c40``.
        split_dir: Folder of ``train/val/test.json`` (relative to ``root`` or absolute);
            ``None`` looks in ``root/splits`` then ``root``. Without the files every split is
            ``None`` and the split policy decides.
        read_splits: Read only the videos of these official splits (``[test]``: the test
            pairs, for a held-out-method test set); ``None``: all.
    """

    identity_note = (
        "each YouTube original is one identity; a fake shows its target and source, and groups "
        "are connected components of both (the official pairs)"
    )

    def __init__(
        self,
        name: str,
        root: str | Path,
        methods: Sequence[str] = METHODS[:4],
        compression: str = "c23",
        split_dir: str | Path | None = None,
        read_splits: Sequence[str] | None = None,
    ) -> None:
        super().__init__(name, root, read_splits)
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        self.methods = list(methods)
        self.compression = compression
        self.split_dir = None if split_dir is None else self.root / Path(split_dir).expanduser()

    def find_split_dir(self) -> Path | None:
        """The folder holding the official split files, if any."""
        candidates = [self.split_dir] if self.split_dir else [self.root / "splits", self.root]
        for folder in candidates:
            if any((folder / f).is_file() for f in SPLIT_FILES.values()):
                return folder
        if self.split_dir is not None:
            raise FileNotFoundError(
                f"dataset '{self.name}': split_dir {self.split_dir} holds none of "
                f"{list(SPLIT_FILES.values())}"
            )
        return None

    def _videos(self, folder: Path, what: str) -> list[Path]:
        if not folder.is_dir():
            raise FileNotFoundError(
                f"dataset '{self.name}': {what} folder {folder} does not exist "
                f"(dataset.compression={self.compression}, dataset.methods={self.methods})"
            )
        return list_media(folder, VIDEO_EXTENSIONS)

    def _scan(self) -> list[MediaRecord]:
        originals = self._videos(
            self.root / "original_sequences" / "youtube" / self.compression / "videos", "originals"
        )
        items = [(f"original/{p.name}", p, REAL, p.stem, p.stem, None) for p in originals]
        links = []
        for method in self.methods:
            folder = self.root / "manipulated_sequences" / method / self.compression / "videos"
            for path in self._videos(folder, f"method {method!r}"):
                match = FAKE_NAME.match(path.stem)
                if match is None:
                    raise ValueError(
                        f"{path}: a manipulated video must be named <target>_<source>"
                        f"{path.suffix} (e.g. 000_003{path.suffix})"
                    )
                target, source = match["target"], match["source"]
                links.append((target, source))
                items.append((f"{method}/{path.name}", path, FAKE, target, source, method))
        split_dir = self.find_split_dir()
        split_of, pairs = official_splits(split_dir) if split_dir else ({}, [])
        groups = connected_groups((i[3] for i in items), links + pairs)
        records = []
        for video_id, path, label, target, source, method in items:
            records.append(
                MediaRecord(
                    video_id=video_id,
                    path=str(path),
                    label=label,
                    group=groups[target],
                    original=f"original/{target}{path.suffix}" if label == FAKE else None,
                    split=self._split(split_of, target, source, path),
                    source=self.name,
                    identities=(target,) if label == REAL else (target, source),
                    method=method,
                )
            )
        if split_dir and (unlisted := sum(r.split is None for r in records)):
            log.warning("%s: %d video(s) are in no official split file", split_dir, unlisted)
        return records

    @staticmethod
    def _split(split_of: dict[str, str], target: str, source: str, path: Path) -> str | None:
        splits = {split_of[v] for v in (target, source) if v in split_of}
        if len(splits) > 1:
            raise ValueError(
                f"{path}: its target {target} and source {source} are in different official "
                f"splits {sorted(splits)}"
            )
        return splits.pop() if splits else None
