"""The embedded synthetic set as a source: DFDC's layout, generated on first use."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from deepfake_exp.data.records import FAKE, MediaRecord
from deepfake_exp.data.sources.dfdc import DFDCSource
from deepfake_exp.data.synthetic import SyntheticConfig, config_record, generate_dataset, is_current

_DEFAULT = SyntheticConfig()


class SyntheticSource(DFDCSource):
    """Reads the synthetic set like DFDC, generating it first when it is missing or stale.

    The generator parameters are flat keyword arguments so a Hydra YAML sets each one; their
    meaning and defaults are those of ``SyntheticConfig``. ``<root>/generator.json`` records
    the config a folder was made with: a different request (or an interrupted run, which
    leaves no ``metadata.json``) regenerates the set in place. Records carry the target and
    source identity of each video and are grouped by their connected components (the
    generator's swap pools), so neither person of a swap is seen in another split.

    Args:
        name: Dataset name.
        root: Folder to generate into and read from.
        generator_methods: Manipulation methods the set is made with (``SyntheticConfig``).
        methods: Methods whose fakes are read (every REAL video always is), as
            FaceForensics++'s ``methods`` picks its manipulation folders; ``None``: all of
            ``generator_methods``. Choosing a subset never regenerates the set.
        workers: Processes used to generate (0 = one per CPU, at most 4); the output is the
            same for any value.
        use_official_split: Keep the metadata's ``split`` (``train``, or the lists drawn by
            ``official_split``), or let the split policy decide (default).
        read_splits: Read only the videos of these official splits (see ``DFDCSource``).
        Other arguments: see ``SyntheticConfig``.
    """

    identity_note = (
        "identities are the generator's people; groups are connected components of target and "
        "source identities (swap pools), so splits are identity-disjoint"
    )

    def __init__(
        self,
        name: str,
        root: str | Path,
        num_identities: int = _DEFAULT.num_identities,
        videos_per_identity: int = _DEFAULT.videos_per_identity,
        fakes_per_real: int = _DEFAULT.fakes_per_real,
        num_frames: int = _DEFAULT.num_frames,
        width: int = _DEFAULT.width,
        height: int = _DEFAULT.height,
        fps: int = _DEFAULT.fps,
        seed: int = _DEFAULT.seed,
        mask_blur: float = _DEFAULT.mask_blur,
        color_mismatch: float = _DEFAULT.color_mismatch,
        blend_ratio: float = _DEFAULT.blend_ratio,
        jpeg_quality: int | None = _DEFAULT.jpeg_quality,
        face_blur: float = _DEFAULT.face_blur,
        swap_jitter: float = _DEFAULT.swap_jitter,
        people_per_video: int = _DEFAULT.people_per_video,
        swap_people: str = _DEFAULT.swap_people,
        generator_methods: Sequence[str] = _DEFAULT.generator_methods,
        official_split: Sequence[float] | None = _DEFAULT.official_split,
        methods: Sequence[str] | None = None,
        workers: int = 0,
        use_official_split: bool = False,
        read_splits: Sequence[str] | None = None,
    ) -> None:
        super().__init__(name, root, use_official_split, read_splits)
        self.config = SyntheticConfig(
            num_identities=num_identities,
            videos_per_identity=videos_per_identity,
            fakes_per_real=fakes_per_real,
            num_frames=num_frames,
            width=width,
            height=height,
            fps=fps,
            seed=seed,
            mask_blur=mask_blur,
            color_mismatch=color_mismatch,
            blend_ratio=blend_ratio,
            jpeg_quality=jpeg_quality,
            face_blur=face_blur,
            swap_jitter=swap_jitter,
            people_per_video=people_per_video,
            swap_people=swap_people,
            generator_methods=tuple(generator_methods),
            official_split=None if official_split is None else tuple(official_split),
        )
        self.methods = list(self.config.generator_methods if methods is None else methods)
        unknown = sorted(set(self.methods) - set(self.config.generator_methods))
        if unknown or not self.methods:
            raise ValueError(
                f"dataset '{name}': methods {self.methods} must be a non-empty subset of "
                f"generator_methods {list(self.config.generator_methods)} (the methods the "
                f"set is made with); not generated: {unknown}"
            )
        if workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = one per CPU, at most 4), got {workers}")
        self.workers = workers or min(4, os.cpu_count() or 1)

    def is_current(self) -> bool:
        """True when the root already holds a complete set made from this config."""
        return is_current(self.root, self.config)

    def prepare(self) -> None:
        """Generate the set unless the root already holds exactly this config's output."""
        if not self.is_current():
            generate_dataset(self.root, self.config, workers=self.workers)

    def settings(self) -> dict:
        """The generator's config: crops of a set made otherwise are redone."""
        return {"generator": config_record(self.config)}

    def _scan(self) -> list[MediaRecord]:
        records = [self._with_method(r) for r in super()._scan()]
        return [r for r in records if r.label != FAKE or r.method in self.methods]

    def _with_method(self, record: MediaRecord) -> MediaRecord:
        """Sets stored before methods existed name none: their fakes are all ``blend``."""
        if record.label == FAKE and record.method is None:
            return replace(record, method=self.config.generator_methods[0])
        return record
