"""Writers of tiny datasets in each real dataset's exact on-disk layout, for tests.

Each writer builds the layout under a given root with a handful of small but valid media
files (PNG/JPG images, ``mp4v`` videos) and returns the root, so adapter tests read the
same folder names, file names and index files as the real downloads.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

FF_PAIRS = {"train": [("000", "001")], "val": [("002", "003")], "test": [("004", "005")]}


def write_image(path: Path, value: int = 0, size: tuple[int, int] = (12, 12)) -> Path:
    """A small solid-colour image; the extension picks the codec."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((size[1], size[0], 3), value % 256, dtype=np.uint8)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")
    return path


_VIDEO_CACHE: dict[tuple[int, int, int], bytes] = {}


def write_video(path: Path, num_frames: int = 5, size: tuple[int, int] = (64, 48)) -> Path:
    """A tiny valid ``mp4v`` video; encoded once per shape and copied, to keep tests fast."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = (num_frames, *size)
    if key not in _VIDEO_CACHE:
        tmp = path.with_name(f".tmp_{path.stem}.mp4")
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 5, size)
        if not writer.isOpened():
            raise OSError(f"could not open a video writer for {tmp}")
        for i in range(num_frames):
            writer.write(np.full((size[1], size[0], 3), 40 * i % 256, dtype=np.uint8))
        writer.release()
        _VIDEO_CACHE[key] = tmp.read_bytes()
        tmp.unlink()
    path.write_bytes(_VIDEO_CACHE[key])
    return path


def write_dfdc(root: Path, parts: Mapping[str, Mapping[str, dict]]) -> Path:
    """``<root>/<part>/metadata.json`` plus each listed video unless its entry says ``missing``."""
    for part, metadata in parts.items():
        folder = root / part
        folder.mkdir(parents=True, exist_ok=True)
        clean = {}
        for name, entry in metadata.items():
            if not entry.get("missing"):
                write_video(folder / name)
            clean[name] = {k: v for k, v in entry.items() if k != "missing"}
        (folder / "metadata.json").write_text(json.dumps(clean))
    return root


def write_faceforensics(
    root: Path,
    pairs: Mapping[str, Sequence[tuple[str, str]]] = FF_PAIRS,
    methods: Iterable[str] = ("Deepfakes", "Face2Face"),
    compression: str = "c23",
    split_dir: str | None = "splits",
    unlisted: Iterable[str] = (),
) -> Path:
    """FF++: both originals of every pair, fakes ``a_b`` and ``b_a`` per method, split files.

    ``unlisted`` originals are written but appear in no split file; ``split_dir=None`` writes
    no split files.
    """
    videos = root / "original_sequences" / "youtube" / compression / "videos"
    for a, b in (p for split_pairs in pairs.values() for p in split_pairs):
        for target, source in ((a, b), (b, a)):
            write_video(videos / f"{target}.mp4")
            for method in methods:
                fakes = root / "manipulated_sequences" / method / compression / "videos"
                write_video(fakes / f"{target}_{source}.mp4")
    for video in unlisted:
        write_video(videos / f"{video}.mp4")
    if split_dir is not None:
        (root / split_dir).mkdir(parents=True, exist_ok=True)
        for split, split_pairs in pairs.items():
            data = [list(p) for p in split_pairs]
            (root / split_dir / f"{split}.json").write_text(json.dumps(data))
    return root


def write_celebdf(
    root: Path,
    videos: Iterable[str],
    test_list: Iterable[tuple[int, str]] = (),
) -> Path:
    """Celeb-DF v2: each relative video path written, and ``List_of_testing_videos.txt``.

    ``test_list`` holds ``(label, relpath)`` in the file's own convention (1 = real).
    """
    for relative in videos:
        write_video(root / relative)
    lines = [f"{label} {relative}" for label, relative in test_list]
    if lines:
        (root / "List_of_testing_videos.txt").write_text("\n".join(lines) + "\n")
    return root


def write_image_tree(root: Path, files: Iterable[str]) -> Path:
    """Images at each relative path (``train/real/a.png``…), distinct pixel values."""
    for i, relative in enumerate(files):
        write_image(root / relative, value=10 * i)
    return root


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    """A CSV with ``header``; an empty header name gives pandas' unnamed index column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_cs4487(
    root: Path,
    per_class: Mapping[str, int],
    split: str | None = "train",
    names: str = "{i}.png",
    unlabelled: int = 0,
) -> Path:
    """CS4487: ``<root>/[<split>/]<class>/<name>`` with ``per_class[class]`` images each.

    ``unlabelled`` images lie loose in the split folder, like the competition's test set.
    """
    base = root / split if split else root
    files = [f"{cls}/{names.format(i=i)}" for cls, count in per_class.items() for i in range(count)]
    write_image_tree(base, files)
    write_image_tree(base, [f"unlabelled_{i}.png" for i in range(unlabelled)])
    return root


def write_faces140k(
    root: Path,
    per_split: Mapping[str, Mapping[str, int]],
    with_csv: bool = True,
    csv_only: Iterable[tuple[str, str, str]] = (),
) -> Path:
    """140k faces: ``real_vs_fake/real-vs-fake/<split>/<real|fake>/*.jpg`` and ``<split>.csv``.

    The CSVs follow the Kaggle files: unnamed index, original_path, id, label (1 = real),
    label_str, path (relative to the image folder). ``csv_only`` rows ``(split, class, id)``
    are listed in a CSV without a file on disk.
    """
    images = root / "real_vs_fake" / "real-vs-fake"
    rows: dict[str, list] = {split: [] for split in per_split}
    for split, counts in per_split.items():
        for cls, count in counts.items():
            for i in range(count):
                image_id = f"{cls[0].upper()}{i:05d}.jpg"
                write_image(images / split / cls / image_id, value=7 * i)
                rows[split].append((cls, image_id))
    for split, cls, image_id in csv_only:
        rows[split].append((cls, image_id))
    if with_csv:
        header = ["", "original_path", "id", "label", "label_str", "path"]
        for split, items in rows.items():
            write_csv(
                root / f"{split}.csv",
                header,
                [
                    (
                        n,
                        f"/kaggle/input/{cls}/{image_id}",
                        image_id,
                        int(cls == "real"),
                        cls,
                        f"{split}/{cls}/{image_id}",
                    )
                    for n, (cls, image_id) in enumerate(items)
                ],
            )
    return root
