"""Split into deepfake_exp.benchmarks.{common,mtcnn,extraction}; removed at the end of the refactor."""

from deepfake_exp.benchmarks.common import (  # noqa: F401
    FOUND_IOU,
    background,
    config_detector,
    face_box,
    face_frames,
    face_sprite,
    iou,
    paste_face,
)
from deepfake_exp.benchmarks.extraction import (  # noqa: F401
    BenchVideo,
    benchmark_extraction,
    write_videos,
)
from deepfake_exp.benchmarks.mtcnn import benchmark_mtcnn, facenet_mtcnn  # noqa: F401
