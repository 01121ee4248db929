"""DFDC layout: ``<root>/<part>/metadata.json`` mapping ``video.mp4 -> {label, original, split}``.

Every problem of a metadata file is a ``failures.csv`` row, not a crash: a file that is not
valid JSON (``bad_metadata``; the other parts are still read), an entry with an unknown label
(``bad_label``), and a video listed twice, by a repeated key or by two spellings of one path
(``./bbb.mp4`` and ``bbb.mp4``) (``duplicate``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from deepfake_exp.data.records import FAKE, MediaRecord, parse_label
from deepfake_exp.data.sources.base import Source
from deepfake_exp.data.splits import group_by_identities

# Entry keys naming the people a video shows, target first (the synthetic set writes them;
# DFDC's own metadata has none): the swap's source, a second person and the face swapped onto it.
IDENTITY_KEYS = ("identity", "source_identity", "companion_identity", "companion_source_identity")


class _Object(dict):
    """A JSON object that remembers every ``(key, value)`` pair, repeated keys included."""

    pairs: list[tuple[str, object]]


def _object(pairs: list[tuple[str, object]]) -> _Object:
    obj = _Object()
    for key, value in pairs:
        obj.setdefault(key, value)
    obj.pairs = pairs
    return obj


def normalise_name(name: str) -> str:
    """One spelling per path: ``./a.mp4`` and ``a.mp4`` (and ``a//b``) are the same file."""
    return PurePosixPath(name).as_posix()


class DFDCSource(Source):
    """Reads every ``metadata.json`` under the root (the root itself or ``dfdc_train_part_*``).

    A fake is grouped with its original, so splits keep a face on one side only. Where the
    metadata names people (``identity`` and, for a swap, ``source_identity``, plus a
    two-person video's ``companion_identity``, as the synthetic set does), records carry them
    and groups are the connected components of those identities, which makes the split
    identity-disjoint for the swapped-in face and the second person as well.

    Args:
        name: Dataset name.
        root: Folder holding ``metadata.json`` or the ``dfdc_train_part_*`` folders.
        use_official_split: Keep the metadata's ``split``. DFDC's training parts all say
            ``train``, so by default the split policy decides instead.
        read_splits: Read only the videos whose metadata ``split`` is one of these (needs
            ``use_official_split``); ``None``: all.
    """

    identity_note = (
        "DFDC names no identities: a fake is grouped with its original, but one actor appears "
        "in several originals, so identity-disjointness cannot be checked (identities here are "
        "the groups)"
    )

    def __init__(
        self,
        name: str,
        root: str | Path,
        use_official_split: bool = False,
        read_splits: Sequence[str] | None = None,
    ) -> None:
        super().__init__(name, root, read_splits)
        if read_splits is not None and not use_official_split:
            raise ValueError(
                f"dataset '{name}': read_splits selects by the metadata's split, which is read "
                "only with use_official_split=true"
            )
        self.use_official_split = use_official_split

    def metadata_files(self) -> list[Path]:
        own = self.root / "metadata.json"
        parts = sorted(self.root.glob("*/metadata.json"))
        return ([own] if own.is_file() else []) + parts

    def _read_metadata(self, meta_path: Path) -> list[tuple[str, object]] | None:
        """Entries of one file in file order (repeats included), or ``None`` if unreadable."""
        rel = meta_path.relative_to(self.root).as_posix()
        try:
            metadata = json.loads(meta_path.read_text(), object_pairs_hook=_object)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            detail = f"{meta_path}: not valid JSON ({err}); none of its videos is read"
            self.problem(rel, meta_path, "bad_metadata", detail)
            return None
        if not isinstance(metadata, _Object):
            detail = (
                f"{meta_path}: expected an object of video -> entry, got {type(metadata).__name__}"
            )
            self.problem(rel, meta_path, "bad_metadata", detail)
            return None
        return metadata.pairs

    def _scan(self) -> list[MediaRecord]:
        files = self.metadata_files()
        if not files:
            raise FileNotFoundError(
                f"dataset '{self.name}': no metadata.json in {self.root} or its "
                "dfdc_train_part_* folders"
            )
        listed = []
        for meta_path in files:
            part = meta_path.parent
            prefix = "" if part == self.root else f"{part.name}/"
            for number, (file_name, entry) in enumerate(self._read_metadata(meta_path) or []):
                name = normalise_name(file_name)
                where = (
                    f"{meta_path.relative_to(self.root).as_posix()} entry {number} {file_name!r}"
                )
                record = self._record(prefix + name, part / name, entry, prefix, where)
                if record is not None:
                    listed.append((record, where))
        records = self.unique(listed)
        if not records and self.problems:
            raise ValueError(
                f"dataset '{self.name}': no usable entry in {len(files)} metadata file(s); "
                f"first problem: {self.problems[0]['detail']}"
            )
        return group_by_identities(records)

    def _record(
        self, video_id: str, path: Path, entry: object, prefix: str, where: str
    ) -> MediaRecord | None:
        """The record of one entry, or ``None`` after noting why it cannot be one."""
        if not isinstance(entry, dict):
            detail = f"{where}: expected an object with a label, got {entry!r}"
            self.problem(video_id, path, "bad_metadata", detail)
            return None
        try:
            label = parse_label(entry["label"])
        except (KeyError, TypeError, ValueError) as err:
            reason = err if not isinstance(err, KeyError) else "no 'label'"
            self.problem(video_id, path, "bad_label", f"{where}: {reason}")
            return None
        original = entry.get("original")
        original_id = prefix + normalise_name(original) if original else None
        named = (str(entry[key]) for key in IDENTITY_KEYS if entry.get(key))
        identities = tuple(dict.fromkeys(named))  # a person shown twice is named once
        return MediaRecord(
            video_id=video_id,
            path=str(path),
            label=label,
            group=str(entry.get("identity") or original_id or video_id),
            original=original_id,
            split=entry.get("split") if self.use_official_split else None,
            source=self.name,
            identities=identities,
            method=entry.get("method") if label == FAKE else None,
        )
