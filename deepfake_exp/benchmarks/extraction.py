"""Per-video face-extraction time, side by side: ``python -m deepfake_exp.bench sections=[extraction]``.

The naive way (read every frame, MTCNN on each sampled frame alone at full resolution), our
extraction path (``FaceExtractor``) and only decoding the sampled frames, on DFDC-like 1080p
H.264 clips at three bitrates. Clips are synthetic (:class:`BenchVideo`: one of the embedded
generator's identities moving over one of its rooms), so the true face box of every frame is
known and nothing is downloaded. Methods are timed in turns on the same files and reported as
ratios; the 1-minute load average is reported with them.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from deepfake_exp.benchmarks.common import (
    Box,
    Timing,
    background,
    config_detector,
    default_data_dir,
    face_box,
    face_sprite,
    found_share,
    load_average,
    parse_size,
    paste_face,
    section_frame,
)
from deepfake_exp.benchmarks.mtcnn import facenet_largest, facenet_mtcnn
from deepfake_exp.data import synthetic
from deepfake_exp.data.records import REAL, MediaRecord
from deepfake_exp.data.video import pyav_available, read_video_frames, sample_frame_indices
from deepfake_exp.faces.crop import crop_face
from deepfake_exp.faces.detectors import MTCNNDetector, torch_threads
from deepfake_exp.preprocessing.parts import safe_name
from deepfake_exp.preprocessing.runner import FaceExtractor
from deepfake_exp.preprocessing.settings import ExtractionConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchVideo:
    """A synthetic talking-head clip: one identity moving over one room, face box known."""

    index: int
    width: int = 1920
    height: int = 1080
    num_frames: int = 300
    fps: int = 30
    seed: int = 0

    def track(self) -> np.ndarray:
        """Per frame: face centre x, y and face height in pixels (smooth head motion)."""
        rng = np.random.default_rng([self.seed, 7, self.index])
        t = np.arange(self.num_frames) / self.fps
        base = rng.uniform(170, 260) * self.height / 1080
        phase = rng.uniform(0, 2 * np.pi, 3)
        period = rng.uniform(3.0, 7.0)
        w = 2 * np.pi * t / period
        cx = self.width * (rng.uniform(0.35, 0.65) + 0.06 * np.sin(w + phase[0]))
        cy = self.height * (rng.uniform(0.42, 0.55) + 0.03 * np.sin(1.3 * w + phase[1]))
        size = base * (1.0 + 0.08 * np.sin(0.7 * w + phase[2]))
        return np.stack([cx, cy, size], axis=1)

    def truth(self) -> list[Box]:
        """The face box of every frame."""
        _, sprite_box = face_sprite(self.index % 6, self.seed)
        return [face_box(sprite_box, (cx, cy), size) for cx, cy, size in self.track()]

    def frames(self) -> Iterator[np.ndarray]:
        """RGB frames with mild sensor noise (encoders must spend bits on it, as on camera)."""
        sprite, sprite_box = face_sprite(self.index % 6, self.seed)
        room = background(self.width, self.height, self.index, self.seed)
        rng = np.random.default_rng([self.seed, 8, self.index])
        shape = (self.height, self.width, 3)
        noise = [rng.integers(-5, 6, shape, dtype=np.int16) for _ in range(4)]
        for i, (cx, cy, size) in enumerate(self.track()):
            frame, _ = paste_face(room, sprite, sprite_box, (cx, cy), size)
            yield np.clip(frame + noise[i % 4], 0, 255).astype(np.uint8)

    def name(self, encoding: str) -> str:
        return (
            f"face{self.index}_{self.width}x{self.height}_{self.num_frames}f_{self.fps}fps"
            f"_s{self.seed}_g{synthetic.GENERATOR_VERSION}_{encoding}.mp4"
        )


def _encoding(mbps: float | None, preset: str) -> str:
    return "mp4v" if mbps is None else f"h264-{preset}-{mbps:g}mbps"


def write_videos(
    video: BenchVideo, folder: Path, bitrates_mbps: Sequence[float], preset: str = "veryfast"
) -> dict[float | None, Path]:
    """Encode ``video`` once per bitrate (H.264 via PyAV's libx264), reusing cached files.

    Frames are rendered once and fed to every missing encoding; files are renamed into place
    when complete. Without PyAV, OpenCV's only encoder here is MPEG-4 Part 2 (``mp4v``, no
    bitrate control): one file, keyed ``None``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rates: list[float | None] = list(bitrates_mbps) if pyav_available() else [None]
    paths = {mbps: folder / video.name(_encoding(mbps, preset)) for mbps in rates}
    missing = [mbps for mbps, path in paths.items() if not path.exists()]
    if not missing:
        return paths
    log.info("encoding %s at %s Mb/s (once; cached in %s)", video, missing, folder)
    tmp = {mbps: paths[mbps].with_name(f".{paths[mbps].name}.tmp.mp4") for mbps in missing}
    if missing == [None]:
        size = (video.width, video.height)
        writer = cv2.VideoWriter(str(tmp[None]), cv2.VideoWriter_fourcc(*"mp4v"), video.fps, size)
        for frame in video.frames():
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
    else:
        import av

        containers = {mbps: av.open(str(tmp[mbps]), "w") for mbps in missing}
        streams = {}
        for mbps, container in containers.items():
            stream = container.add_stream("libx264", rate=video.fps)
            stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
            stream.bit_rate = int(mbps * 1e6)
            stream.options = {"preset": preset}
            streams[mbps] = stream
        for frame in video.frames():
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            for mbps, stream in streams.items():
                containers[mbps].mux(stream.encode(picture))
        for mbps, stream in streams.items():
            containers[mbps].mux(stream.encode(None))
            containers[mbps].close()
    for mbps in missing:
        os.replace(tmp[mbps], paths[mbps])
    return paths


def naive_extract(
    path: Path, mtcnn, num_frames: int, margin: float, crop_size: int, out_dir: Path
) -> dict[int, Box | None]:
    """The naive way: ``read()`` every frame, MTCNN alone on each sampled frame at full size.

    Crops are cut and written as ours are, so both pay for the same output.
    """
    capture = cv2.VideoCapture(str(path))
    wanted = set(sample_frame_indices(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), num_frames))
    kept, index = [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index in wanted:
            kept.append((index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
        index += 1
    capture.release()
    found = {}
    for index, frame in kept:
        found[index] = box = facenet_largest(mtcnn, frame)
        if box is not None:
            crop = crop_face(frame, box, margin, crop_size)
            cv2.imwrite(str(out_dir / f"{index:05d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return found


def _found_share(found: dict[int, Box | None], video: BenchVideo, num_frames: int) -> float:
    """Share of the sampled frames where the drawn face was found (a missing frame is a miss)."""
    truth = video.truth()
    indices = sample_frame_indices(video.num_frames, num_frames)
    return found_share([found.get(i) for i in indices], [truth[i] for i in indices])


def _mbps(path: Path, video: BenchVideo) -> float:
    return round(path.stat().st_size * 8 / (video.num_frames / video.fps) / 1e6, 2)


def _records(paths: Sequence[Path], copies: int = 1) -> list[MediaRecord]:
    """Records of ``paths`` (``copies`` times each, under distinct ids: a longer run)."""
    return [
        MediaRecord(f"{p.name}#{k}", str(p), REAL, p.stem) for k in range(copies) for p in paths
    ]


def ours_extract(
    records: Sequence[MediaRecord],
    detector: MTCNNDetector,
    config: ExtractionConfig,
    out_dir: Path,
) -> dict[str, dict[int, Box]]:
    """Our path: ``FaceExtractor`` (sampled decoding ahead in threads, batched detection,
    crops, per-video parts) into a fresh folder; the boxes it kept per video and frame."""
    root = Path(records[0].path).parent
    FaceExtractor(detector, out_dir, config, root).run(records, progress=False)
    found = {}
    for record in records:
        part = out_dir / "parts" / f"{safe_name(record.video_id)}.csv"
        rows = pd.read_csv(part).itertuples() if part.exists() else []
        found[record.video_id] = {int(r.frame): (r.x1, r.y1, r.x2, r.y2) for r in rows}
    return found


def decode_all(records: Sequence[MediaRecord], num_frames: int, workers: int) -> int:
    """Decode-only over many videos with the extractor's number of decoding threads."""
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        decoded = pool.map(lambda r: read_video_frames(r.path, num_frames), records)
        return sum(len(d.frames) for d in decoded)


def benchmark_extraction(
    num_videos: int = 1,
    bitrates_mbps: Sequence[float] = (1.0, 4.0, 12.0),
    num_frames: int = 32,
    frames_per_video: int = 300,
    size: str = "1920x1080",
    fps: int = 30,
    preset: str = "veryfast",
    repeats: int = 2,
    naive_repeats: int = 3,
    copies: int = 2,
    threads: int | None = 1,
    cache_dir: str | None = None,
    seed: int = 0,
    detector: dict | None = None,
    device: str = "cpu",
) -> list[dict]:
    """Per-video extraction time: naive vs ours vs decode-only, in turns on each video.

    Per bitrate, each method runs on the same file in turns (median of its runs, mean over
    clips): **naive** reads every frame with OpenCV ``read()``, keeps the sampled ones and runs
    facenet-pytorch's ``MTCNN().detect`` on each alone at full resolution, then crops; **ours**
    is ``FaceExtractor`` with the configured ``MTCNNDetector`` on that one video;
    **decode-only** obtains the sampled frames the fastest way found (``read_video_frames``:
    PyAV, skipping unneeded non-reference frames), next to OpenCV ``grab``/``retrieve``.
    Two last rows time a longer run over every clip ``copies`` times: ``FaceExtractor``
    (the next videos decode in its threads while one is detected) against decoding the same
    videos in as many threads. Targets: ours >= 5x faster than naive, <= 2x decode-only.

    Args:
        num_videos: Clips per bitrate (distinct identity, room and motion).
        bitrates_mbps: H.264 bitrates (DFDC's 1080p clips are about 4 Mb/s).
        num_frames: Frames sampled per video.
        frames_per_video: Length of each clip (DFDC: 300 frames, 10 s at 30 fps).
        size: ``WIDTHxHEIGHT``.
        fps: Frame rate.
        preset: libx264 preset of the generated clips (only the cache build's speed differs).
        repeats: Runs of ours and decode-only per clip.
        naive_repeats: Runs of the naive way per clip (each costs about a minute; >= 3
            so its median is not one disturbed run).
        copies: Times each clip appears in the longer run.
        threads: torch intra-op threads for every method (``None``: torch's default).
        cache_dir: Where clips are kept between runs (default ``<data_dir>/bench``).
        seed: Fixes the clips.
        detector: Overrides of ``conf/detector/mtcnn.yaml`` for ours.
        device: Where every MTCNN runs (``cuda``: ``make gpu-check``); decoding stays on CPU.
    """
    width, height = parse_size(size)
    folder = Path(cache_dir) if cache_dir else default_data_dir() / "bench"
    videos = [BenchVideo(i, width, height, frames_per_video, fps, seed) for i in range(num_videos)]
    files = {video: write_videos(video, folder, bitrates_mbps, preset) for video in videos}
    ours = config_detector(**{"device": device, **(detector or {})})
    plain = facenet_mtcnn(device)
    config = ExtractionConfig(num_frames=num_frames)
    methods = {
        "naive": lambda p, out: naive_extract(p, plain, num_frames, config.margin, config.crop_size, out),
        "ours": lambda p, out: ours_extract(_records([p]), ours, config, out)[f"{p.name}#0"],
        "decode-only": lambda p, out: read_video_frames(p, num_frames),
        "decode-only (OpenCV grab)": lambda p, out: read_video_frames(p, num_frames, backend="opencv"),
    }  # fmt: skip
    if not pyav_available():
        del methods["decode-only (OpenCV grab)"]  # the same reader then
    rows = []
    with torch_threads(threads), torch.inference_mode(), tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(10**9))

        def fresh() -> Path:
            return Path(tempfile.mkdtemp(dir=tmp, prefix=f"run{next(counter)}_"))

        read_video_frames(files[videos[0]][next(iter(files[videos[0]]))], 1)  # warm-up
        for mbps in files[videos[0]]:
            load = load_average()
            per_clip: dict[str, list[Timing]] = {name: [] for name in methods}
            found: dict[str, list[float]] = {"naive": [], "ours": []}
            for video in videos:
                path = files[video][mbps]
                timing = {name: Timing() for name in methods}
                for run in range(max(repeats, naive_repeats, 1)):
                    for name in methods if run % 2 == 0 else list(methods)[::-1]:
                        if run < (naive_repeats if name == "naive" else repeats):
                            result = timing[name].run(partial(methods[name], path, fresh()))
                            if name in found and run == 0:
                                found[name].append(_found_share(result, video, num_frames))
                for name in methods:
                    per_clip[name].append(timing[name])
            label = "mp4v" if mbps is None else f"{mbps:g}"
            actual = float(np.mean([_mbps(files[v][mbps], v) for v in videos]))
            rows += _extraction_rows(per_clip, found, label, actual, load)
        rows += _pipeline_rows(files, videos, copies, ours, config, num_frames, fresh, rows)
    for row in rows:
        if row["method"].startswith("ours"):
            log.info(
                "extraction %s Mb/s, %s: %.1fx faster than naive (target >= 5), %.2fx decode-only "
                "(target <= 2)", row["mbps"], row["method"], row["x_faster_than_naive"], row["x_decode_only"],
            )  # fmt: skip
    return rows


def _median(timings: Sequence[Timing], attribute: str) -> float:
    """Mean over clips of each clip's median run."""
    return float(np.mean([statistics.median(getattr(t, attribute)) for t in timings]))


def _extraction_rows(
    per_clip: dict[str, list[Timing]],
    found: dict[str, list[float]],
    label: str,
    actual: float,
    load: float,
) -> list[dict]:
    """One row per method for one bitrate; ratios against naive and decode-only."""
    wall = {name: _median(timings, "wall") for name, timings in per_clip.items()}
    cpu = {name: _median(timings, "cpu") for name, timings in per_clip.items()}
    return [
        {
            "mbps": label,
            "actual_mbps": round(actual, 2),
            "method": name,
            "found": round(float(np.mean(found[name])), 3) if name in found else float("nan"),
        }
        | _ratios(wall[name], cpu[name], wall, cpu)
        | {"load_1min": load}
        for name in per_clip
    ]


def _ratios(wall: float, cpu: float, walls: dict[str, float], cpus: dict[str, float]) -> dict:
    """Seconds per video and the target ratios, by wall clock and by CPU time.

    CPU time (this process, all threads) is what a machine busy with other work, or with
    parallel extraction workers, pays; it is also far less noisy than wall time under load.
    """
    return {
        "s_per_video": round(wall, 2),
        "cpu_s_per_video": round(cpu, 2),
        "x_faster_than_naive": round(walls["naive"] / wall, 2),
        "x_faster_than_naive_cpu": round(cpus["naive"] / cpu, 2),
        "x_decode_only": round(wall / walls["decode-only"], 2),
        "x_decode_only_cpu": round(cpu / cpus["decode-only"], 2),
    }


def _pipeline_rows(files, videos, copies, detector, config, num_frames, fresh, rows) -> list[dict]:
    """A longer run over every clip: ``FaceExtractor`` vs decoding in as many threads."""
    paths = [path for video in videos for path in files[video].values()]
    records = _records(paths, copies)
    owner = {f"{p.name}#{k}": v for v in videos for p in files[v].values() for k in range(copies)}
    load = load_average()
    decode, ours = Timing(), Timing()
    decode.run(partial(decode_all, records, num_frames, config.num_workers))
    results = ours.run(partial(ours_extract, records, detector, config, fresh()))
    n = len(records)
    naive_rows = [r for r in rows if r["method"] == "naive"]
    walls = {
        "naive": float(np.mean([r["s_per_video"] for r in naive_rows])),
        "decode-only": decode.wall[0] / n,
    }
    cpus = {
        "naive": float(np.mean([r["cpu_s_per_video"] for r in naive_rows])),
        "decode-only": decode.cpu[0] / n,
    }
    found = np.mean(
        [_found_share(results[r.video_id], owner[r.video_id], num_frames) for r in records]
    )
    common = {"mbps": "all", "actual_mbps": float("nan")}
    return [
        common
        | {
            "method": f"decode-only, {n} videos in {config.num_workers} threads",
            "found": float("nan"),
        }
        | _ratios(walls["decode-only"], cpus["decode-only"], walls, cpus)
        | {"load_1min": load},
        common
        | {
            "method": f"ours, FaceExtractor over the same {n} videos",
            "found": round(float(found), 3),
        }
        | _ratios(ours.wall[0] / n, ours.cpu[0] / n, walls, cpus)
        | {"load_1min": load},
    ]


def run(cfg: DictConfig) -> pd.DataFrame:
    """The ``extraction`` block of ``conf/bench.yaml``: :func:`benchmark_extraction`'s arguments."""
    return section_frame(benchmark_extraction, cfg)
