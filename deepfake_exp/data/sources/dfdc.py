"""DFDC layout: ``<root>/<part>/metadata.json`` mapping ``video.mp4 -> {label, original, split}``."""

from __future__ import annotations

import json
from pathlib import Path

from deepfake_exp.data.records import MediaRecord, parse_label
from deepfake_exp.data.sources.base import Source


class DFDCSource(Source):
    """Reads every ``metadata.json`` under the root (the root itself or ``dfdc_train_part_*``).

    A fake is grouped with its original (or with the ``identity`` key when the metadata has
    one, as the synthetic set does), so splits keep a face on one side only.

    Args:
        name: Dataset name.
        root: Folder holding ``metadata.json`` or the ``dfdc_train_part_*`` folders.
        use_official_split: Keep the metadata's ``split``. DFDC's training parts all say
            ``train``, so by default the split policy decides instead.
    """

    def __init__(self, name: str, root: str | Path, use_official_split: bool = False) -> None:
        super().__init__(name, root)
        self.use_official_split = use_official_split

    def metadata_files(self) -> list[Path]:
        own = self.root / "metadata.json"
        parts = sorted(self.root.glob("*/metadata.json"))
        return ([own] if own.is_file() else []) + parts

    def _scan(self) -> list[MediaRecord]:
        files = self.metadata_files()
        if not files:
            raise FileNotFoundError(
                f"dataset '{self.name}': no metadata.json in {self.root} or its "
                "dfdc_train_part_* folders"
            )
        records = []
        for meta_path in files:
            part = meta_path.parent
            prefix = "" if part == self.root else f"{part.name}/"
            with open(meta_path) as f:
                metadata = json.load(f)
            for file_name, entry in metadata.items():
                video_id = prefix + file_name
                original = entry.get("original")
                original_id = prefix + original if original else None
                group = entry.get("identity") or original_id or video_id
                records.append(
                    MediaRecord(
                        video_id=video_id,
                        path=str(part / file_name),
                        label=parse_label(entry["label"]),
                        group=str(group),
                        original=original_id,
                        split=entry.get("split") if self.use_official_split else None,
                        source=self.name,
                    )
                )
        return records
