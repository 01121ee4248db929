"""Tracks: faces linked across sampled frames, and the track_max video aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepfake_exp.evaluation.aggregate import AGGREGATORS, aggregate_video_scores
from deepfake_exp.evaluation.metrics import binary_metrics
from deepfake_exp.preprocessing.tracks import box_iou, centre_distance, link_tracks, track_ids

LEFT, RIGHT = (10.0, 10.0, 50.0, 50.0), (200.0, 12.0, 240.0, 52.0)


def shifted(box, dx):
    return (box[0] + dx, box[1], box[2] + dx, box[3])


def test_iou_and_centre_distance() -> None:
    assert box_iou(LEFT, LEFT) == 1.0 and box_iou(LEFT, RIGHT) == 0.0
    assert box_iou(LEFT, shifted(LEFT, 20)) == pytest.approx(20 * 40 / (2 * 1600 - 800))
    assert centre_distance(LEFT, shifted(LEFT, 40)) == pytest.approx(1.0)


def test_two_people_keep_their_tracks_whatever_the_detection_order() -> None:
    frames = [[LEFT, RIGHT], [shifted(RIGHT, 5), shifted(LEFT, 5)], [shifted(LEFT, 30)]]
    assert link_tracks(frames) == [[0, 1], [1, 0], [0]]


def test_a_fast_move_without_overlap_links_by_centre_distance() -> None:
    """Sparse frames: 35 px between samples leaves IoU ~0.07 but the centres are near."""
    assert link_tracks([[LEFT], [shifted(LEFT, 35)]]) == [[0], [0]]
    assert link_tracks([[LEFT], [shifted(LEFT, 120)]]) == [[0], [1]]  # too far: someone else


def test_two_faces_of_one_frame_never_share_a_track() -> None:
    ids = link_tracks([[LEFT], [LEFT, shifted(LEFT, 10)]])
    assert ids[1][0] != ids[1][1] and sorted(ids[1]) == [0, 1]


def test_track_ids_of_manifest_rows_follow_frame_order() -> None:
    rows = pd.DataFrame(
        {
            "frame": [8, 0, 0, 8],
            "face_index": [1, 0, 1, 0],
            "x1": [RIGHT[0], LEFT[0], RIGHT[0], LEFT[0]],
            "y1": [RIGHT[1], LEFT[1], RIGHT[1], LEFT[1]],
            "x2": [RIGHT[2], LEFT[2], RIGHT[2], LEFT[2]],
            "y2": [RIGHT[3], LEFT[3], RIGHT[3], LEFT[3]],
        }
    )
    assert track_ids(rows).tolist() == [1, 0, 1, 0]
    assert track_ids(rows.iloc[:0]).empty


def faces(probs, tracks=None, video="v", label=1) -> pd.DataFrame:
    frame = pd.DataFrame({"video_id": video, "label": label, "prob": probs})
    return frame if tracks is None else frame.assign(track_id=tracks)


def test_track_max_takes_the_most_fake_persons_mean() -> None:
    assert "track_max" in AGGREGATORS
    probs, tracks = [0.1, 0.9, 0.2, 0.7], [0, 1, 0, 1]
    videos = aggregate_video_scores(faces(probs, tracks), "track_max")
    assert videos["prob"].item() == pytest.approx(0.8)
    assert aggregate_video_scores(faces(probs, tracks), "mean")["prob"].item() == 0.475


def test_track_max_without_tracks_is_the_mean() -> None:
    videos = aggregate_video_scores(faces([0.2, 0.6]), "track_max")
    assert videos["prob"].item() == pytest.approx(0.4)
    assert AGGREGATORS["track_max"](np.array([0.2, 0.6])) == pytest.approx(0.4)


def test_track_max_beats_largest_face_mean_on_oracle_like_scores_of_one_of_two_swapped() -> None:
    """Why tracks matter, on scores of a good face scorer (simulated, not a trained model).

    Each video shows two people; a fake swaps one, the smaller in half of them. Each person
    gets a level (an unswapped face looks 0.1-0.5 fake, a swapped one 0.45-0.9) and each face
    noise around it. ``keep=largest`` + mean sees only the larger person and misses the fakes
    whose swapped person is the smaller; ``keep=all`` + mean dilutes the swapped person with
    the untouched one; ``track_max`` judges a video by its most fake person.
    """
    rng = np.random.default_rng(0)
    rows = []
    for video in range(80):
        label = video % 2
        swapped_is_larger = video % 4 < 2
        for person, larger in ((0, True), (1, False)):
            swapped = label == 1 and larger == swapped_is_larger
            level = rng.uniform(0.45, 0.9) if swapped else rng.uniform(0.1, 0.5)
            for prob in np.clip(level + rng.normal(0, 0.1, 8), 0, 1):
                rows.append((f"v{video}", label, prob, person, larger))
    table = pd.DataFrame(rows, columns=["video_id", "label", "prob", "track_id", "larger"])

    def auc(frame: pd.DataFrame, method: str) -> float:
        videos = aggregate_video_scores(frame.drop(columns="larger"), method)
        return binary_metrics(videos["label"].to_numpy(), videos["prob"].to_numpy())["roc_auc"]

    largest_mean = auc(table[table["larger"]], "mean")
    all_mean = auc(table, "mean")
    track_max = auc(table, "track_max")
    assert track_max > all_mean > largest_mean
    assert track_max - largest_mean > 0.15, (track_max, all_mean, largest_mean)


@pytest.mark.slow
def test_track_max_beats_largest_mean_with_oracle_face_scores_on_two_person_videos(
    tmp_path,
) -> None:
    """Extraction keeps both people and tracks them; ``track_max`` then finds the swap.

    What it proves and what not: detection (MTCNN), box reuse, tracks and aggregation are
    real; the face *scores* are an oracle (a face scores high when its crop differs from
    its original's crop at the same box, i.e. it was swapped), not a trained model. With
    ``keep=largest`` a fake whose smaller person was swapped shows only the untouched face,
    so no scorer can catch it; with ``keep=all`` + ``track_max`` the swapped track decides.
    """
    import cv2

    from deepfake_exp.data.sources.synthetic import SyntheticSource
    from deepfake_exp.faces.detectors import MTCNNDetector
    from deepfake_exp.preprocessing.merge import merge_parts
    from deepfake_exp.preprocessing.runner import FaceExtractor
    from deepfake_exp.preprocessing.settings import ExtractionConfig

    source = SyntheticSource(
        "two", tmp_path / "data", num_identities=6, videos_per_identity=2, num_frames=8,
        people_per_video=2, swap_people="one", workers=1,
    )  # fmt: skip
    source.prepare()
    records = source.records()
    rng = np.random.default_rng(0)

    def oracle_scores(keep: str) -> pd.DataFrame:
        out = tmp_path / keep
        detector = MTCNNDetector(keep=keep, min_face_px=40, num_threads=1)
        config = ExtractionConfig(num_frames=4, crop_size=64, num_workers=1)
        FaceExtractor(detector, out, config, source.root).run(records, progress=False)
        merge_parts(out, records, "individual", (0.6, 0.2, 0.2))
        faces = pd.read_csv(out / "manifest.csv", dtype={"original": str})
        paths = faces.set_index(["video_id", "frame", "face_index"])["face_path"]

        def swapped(row) -> bool:
            if row.label == 0:
                return False
            pair = paths[(row.original, row.frame, row.face_index)]
            a, b = (cv2.imread(str(out / p)).astype(int) for p in (row.face_path, pair))
            return np.abs(a - b).mean() > 1.0

        level = np.array([0.75 if swapped(r) else 0.25 for r in faces.itertuples()])
        return faces.assign(prob=np.clip(level + rng.normal(0, 0.1, len(faces)), 0, 1))

    def video_auc(faces: pd.DataFrame, method: str) -> float:
        videos = aggregate_video_scores(faces[["video_id", "label", "prob", "track_id"]], method)
        return binary_metrics(videos["label"].to_numpy(), videos["prob"].to_numpy())["roc_auc"]

    every = oracle_scores("all")
    assert (every.groupby("video_id")["track_id"].nunique() == 2).mean() > 0.9  # both people
    assert set(every.loc[every.label == 1, "box_source"]) == {"original"}
    largest_mean = video_auc(oracle_scores("largest"), "mean")
    track_max = video_auc(every, "track_max")
    assert track_max >= video_auc(every, "mean")
    assert track_max - largest_mean > 0.1, (track_max, largest_mean)
