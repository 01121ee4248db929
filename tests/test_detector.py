"""MTCNNDetector: boxes land where the faces were drawn, batches of any mix, clear errors.

Faces are the synthetic generator's identities pasted at known places into its rooms, so
boxes are checked against the true face; one test also pins our rewritten MTCNN glue to
facenet-pytorch's ``detect_face``, and one that PyAV and OpenCV decode the same frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deepfake_exp.benchmarks.common import background, face_sprite, iou, paste_face
from deepfake_exp.data.video import pyav_available, read_video_frames
from deepfake_exp.faces.detectors import MTCNNDetector


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Two OpenMP threads on a busy 2-core machine spin-wait for each other: 5-10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def scene(width: int, height: int, faces: list[tuple[int, float, float, float]], room: int = 0):
    """An RGB frame with ``(identity, centre_x, centre_y, face_px)`` faces and their boxes."""
    frame = np.array(background(width, height, room, 0))
    boxes = []
    for identity, cx, cy, size in faces:
        sprite, sprite_box = face_sprite(identity, 0, 1)
        frame, box = paste_face(frame, sprite, sprite_box, (cx, cy), size)
        boxes.append(box)
    return frame, boxes


def best_iou(found, box) -> float:
    return max((iou(d.box, box) for d in found), default=0.0)


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_box_maps_back_from_the_downscaled_frame(scale: float) -> None:
    frame, (truth,) = scene(1280, 720, [(1, 900.0, 300.0, 200.0)])
    # min_face_size=40 (a 40 px face at scale 1, 160 px at 0.25) keeps the full-size run cheap.
    (found,) = MTCNNDetector(scale=scale, min_face_size=40).detect([frame])
    assert len(found) == 1
    assert iou(found[0].box, truth) > 0.5, (found[0].box, truth)
    assert found[0].prob >= 0.9


def test_batch_mixing_frames_with_and_without_faces() -> None:
    from facenet_pytorch import MTCNN

    face, (truth,) = scene(640, 360, [(0, 320.0, 180.0, 150.0)])
    empty = np.full_like(face, 128)
    frames = [face, empty, face, empty]
    # facenet-pytorch's own batch call builds one ragged array of per-frame results: with
    # numpy >= 1.24 it raises as soon as some frames have a face and some do not (#206/#224).
    with pytest.raises(ValueError, match="inhomogeneous"):
        MTCNN()(frames)
    found = MTCNNDetector(scale=0.5).detect(frames)
    assert [len(f) for f in found] == [1, 0, 1, 0]
    assert iou(found[0][0].box, truth) > 0.5 and found[0][0].box == found[2][0].box


def test_mixed_frame_sizes_come_back_in_input_order() -> None:
    layouts = [  # portrait and landscape, two resolutions, interleaved
        (360, 640, (0, 180.0, 250.0, 150.0)),
        (640, 360, (1, 450.0, 170.0, 140.0)),
        (540, 960, (2, 300.0, 500.0, 220.0)),
        (960, 540, (3, 700.0, 260.0, 200.0)),
        (360, 640, (4, 200.0, 420.0, 160.0)),
    ]
    frames, truths = [], []
    for i, (width, height, face) in enumerate(layouts):
        frame, (box,) = scene(width, height, [face], room=i)
        frames.append(frame)
        truths.append(box)
    found = MTCNNDetector(min_face_px=80, batch_size=2).detect(frames)
    assert len(found) == len(frames)
    for faces, truth in zip(found, truths, strict=True):
        assert len(faces) == 1 and iou(faces[0].box, truth) > 0.5, (faces, truth)


def test_keep_all_and_top_k_on_a_frame_with_two_faces() -> None:
    frame, (big, small) = scene(1280, 720, [(0, 400.0, 330.0, 240.0), (3, 950.0, 380.0, 150.0)])
    everything = MTCNNDetector(scale=0.5, keep="all").detect([frame])[0]
    assert len(everything) == 2
    assert best_iou(everything, big) > 0.5 and best_iou(everything, small) > 0.5
    assert everything[0].area > everything[1].area  # largest first
    (top,) = MTCNNDetector(scale=0.5, keep="top_k", top_k=1).detect([frame])[0]
    assert iou(top.box, big) > 0.5
    (largest,) = MTCNNDetector(scale=0.5, keep="largest").detect([frame])[0]
    assert largest == top


def test_scale_none_derives_twenty_over_min_face_px() -> None:
    detector = MTCNNDetector(scale=None, min_face_px=80)
    assert detector.scale_for(1080, 1920) == pytest.approx(20 / 80)
    assert MTCNNDetector(scale=None, min_face_px=60).scale_for(1080, 1920) == pytest.approx(1 / 3)
    assert MTCNNDetector(scale=None, min_face_px=10).scale_for(1080, 1920) == 1.0  # never upscale
    assert MTCNNDetector(scale=0.5, min_face_px=80).scale_for(1080, 1920) == 0.5
    seen = []
    detector._mtcnn = lambda images: seen.append(images.shape) or [np.zeros((0, 5))] * len(images)
    detector.detect([np.zeros((1080, 1920, 3), np.uint8)] * 2)
    assert seen == [(2, 270, 480, 3)]  # MTCNN really ran on the 1/4-size frames


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((64, 64), np.uint8),  # grayscale
        np.zeros((64, 64, 3), np.float32),  # not uint8
        np.zeros((64, 64, 4), np.uint8),  # RGBA
    ],
    ids=["grayscale", "float32", "rgba"],
)
def test_bad_frames_raise_a_clear_value_error(frame: np.ndarray) -> None:
    good = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="RGB uint8 HxWx3"):
        MTCNNDetector().detect([good, frame])


def test_invalid_settings_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="scale"):
        MTCNNDetector(scale=1.5)
    with pytest.raises(ValueError, match="keep"):
        MTCNNDetector(keep="biggest")
    with pytest.raises(ValueError, match="min_face_size"):
        MTCNNDetector(min_face_size=8)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_device_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="CUDA is not available.*detector.device=cpu"):
        MTCNNDetector(device="cuda")


def test_small_frames_and_empty_batches() -> None:
    detector = MTCNNDetector(scale=1.0)
    assert detector.detect([]) == []
    assert detector.detect([np.zeros((10, 12, 3), np.uint8)]) == [[]]  # below one P-Net window


def test_matches_facenet_detect_face_on_the_same_frames() -> None:
    """Our rewrite of MTCNN's glue (OpenCV pyramid, roi_align crops) keeps its results."""
    from facenet_pytorch.models.utils.detect_face import detect_face

    frames = [scene(480, 270, [(i, 160.0 + 60 * i, 140.0, 90.0 + 10 * i)], i)[0] for i in range(3)]
    detector = MTCNNDetector(scale=1.0, keep="all", min_prob=0.95)
    ours = detector.detect(frames)
    with torch.no_grad():
        reference, _ = detect_face(
            np.stack(frames), detector.min_face_size, detector.pnet, detector.rnet,
            detector.onet, detector.thresholds, detector.factor, detector.device,
        )  # fmt: skip
    for found, boxes in zip(ours, reference, strict=True):
        confident = [b for b in np.asarray(boxes).reshape(-1, 5) if b[4] >= 0.95]
        assert len(found) == len(confident) >= 1
        for box in confident:
            assert best_iou(found, box[:4]) > 0.8


@pytest.mark.skipif(not pyav_available(), reason="PyAV (pip install av) is not installed")
@pytest.mark.parametrize("rotation", [0, 90])
def test_pyav_and_opencv_decoders_return_the_same_frames(tmp_path: Path, rotation: int) -> None:
    """H.264 with B-frames: skipping non-reference frames never changes a sampled frame."""
    import av

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        rng = np.random.default_rng(0)
        for i in range(40):
            image = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
            image[: 8 + i, :20] = 255  # a growing marker: frames differ, orientation shows
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    for strategy in ("even", "random"):
        fast = read_video_frames(path, 7, strategy, seed=3, backend="pyav")
        slow = read_video_frames(path, 7, strategy, seed=3, backend="opencv")
        assert fast.indices == slow.indices and fast.total_frames == slow.total_frames == 40
        for a, b in zip(fast.frames, slow.frames, strict=True):
            assert a.shape == b.shape and np.array_equal(a, b)
    with pytest.raises(ValueError, match="backend"):
        read_video_frames(path, 2, backend="ffmpeg")


@pytest.mark.requires_gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_detector_runs_on_cuda() -> None:
    frame, (truth,) = scene(1280, 720, [(2, 500.0, 350.0, 220.0)])
    on_gpu = MTCNNDetector(device="cuda", scale=0.5).detect([frame, frame])
    on_cpu = MTCNNDetector(device="cpu", scale=0.5).detect([frame])
    assert all(len(f) == 1 and iou(f[0].box, truth) > 0.5 for f in on_gpu)
    assert iou(on_gpu[0][0].box, on_cpu[0][0].box) > 0.9
