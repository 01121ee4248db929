"""Video-level scores from face-level scores.

DFDC and the York study score *videos*: each video's face probabilities are reduced to one
number. The reductions live in :data:`AGGREGATORS` so a new one is one function and one entry,
and the name in a config is the name in the registry. Each is called with a video's face
probabilities and keyword options (the ``confident`` knobs, ``tracks``: the faces' track ids
or ``None``), and ignores those it does not use (``**_``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

FACE_COLUMNS = ("video_id", "label", "prob")
VIDEO_COLUMNS = ["video_id", "label", "prob", "num_faces"]
# Per-video columns carried from faces / the video list when present (bootstrap groups).
CARRIED_COLUMNS = ("group", "source")
NO_FACE = "no_face"

Aggregator = Callable[..., float]


def mean_score(probs: np.ndarray, **_: float) -> float:
    """Plain average: every face counts the same."""
    return float(np.mean(probs))


def max_score(probs: np.ndarray, **_: float) -> float:
    """Most suspicious face: one manipulated face makes the video fake."""
    return float(np.max(probs))


def confident_score(
    probs: np.ndarray,
    confident_threshold: float = 0.8,
    confident_share: float = 0.4,
    real_share: float = 0.9,
    **_: object,
) -> float:
    """Average only the confident faces when enough of them agree, else all faces.

    After the DFDC winner's "confident strategy": fakes are often manipulated in only part of
    the frames, so if at least ``confident_share`` of the faces score above
    ``confident_threshold`` the video is judged by those faces alone; otherwise, if at least
    ``real_share`` of the faces score below ``1 - confident_threshold`` it is judged by those;
    otherwise by the mean. The winner's extra "more than 11 faces" rule is dropped because our
    sampling often keeps fewer faces per video.
    """
    fake_mask = probs > confident_threshold
    if fake_mask.any() and fake_mask.mean() >= confident_share:
        return float(probs[fake_mask].mean())
    real_mask = probs < 1.0 - confident_threshold
    if real_mask.any() and real_mask.mean() >= real_share:
        return float(probs[real_mask].mean())
    return float(probs.mean())


def track_max_score(probs: np.ndarray, tracks: np.ndarray | None = None, **_: float) -> float:
    """Most fake person: the mean of each track's faces, then the highest track.

    A fake may swap one of two people; the mean over all faces halves its signal and
    ``keep=largest`` may keep only the untouched person. Faces without a track (``track_id``
    -1) count as one track; without tracks at all (an older manifest) this is the mean.
    """
    if tracks is None:
        return mean_score(probs)
    per_track = pd.Series(probs).groupby(np.asarray(tracks)).mean()
    return float(per_track.max())


AGGREGATORS: dict[str, Aggregator] = {
    "mean": mean_score,
    "max": max_score,
    "confident": confident_score,
    "track_max": track_max_score,
}
TRACK_COLUMN = "track_id"  # optional face column: which person (see preprocessing.tracks)


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...] | list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; it has {list(frame.columns)}")


def _check_one_label_per_video(frame: pd.DataFrame, what: str) -> None:
    labels_per_video = frame.groupby("video_id", sort=False)["label"].nunique()
    mixed = labels_per_video[labels_per_video > 1].index.tolist()
    if mixed:
        raise ValueError(f"{what}: videos with conflicting labels: {mixed[:5]}")


def aggregate_video_scores(
    frame: pd.DataFrame,
    method: str = "mean",
    confident_threshold: float = 0.8,
    confident_share: float = 0.4,
    real_share: float = 0.9,
) -> pd.DataFrame:
    """Reduce one row per face to one row per video (``video_id, label, prob, num_faces``).

    Args:
        frame: Face-level predictions with columns ``video_id``, ``label``, ``prob`` (and
            ``track_id``, which ``track_max`` reads; without it, it is the mean).
        method: Key of :data:`AGGREGATORS` (``mean``, ``max``, ``confident``, ``track_max``).
        confident_threshold: Probability above which a face counts as confidently fake (and
            below ``1 - confident_threshold`` as confidently real); ``confident`` only.
        confident_share: Share of confidently fake faces that decides a video; ``confident``
            only.
        real_share: Share of confidently real faces that decides a video; ``confident`` only.

    Returns:
        One row per video, sorted by ``video_id``; ``group`` and ``source`` are carried when
        ``frame`` has them (each video's first value).
    """
    if method not in AGGREGATORS:
        raise ValueError(f"unknown aggregation {method!r}; choose one of {sorted(AGGREGATORS)}")
    if not 0.5 <= confident_threshold < 1.0:
        raise ValueError(f"confident_threshold must be in [0.5, 1), got {confident_threshold}")
    for name, share in (("confident_share", confident_share), ("real_share", real_share)):
        if not 0.0 < share <= 1.0:
            raise ValueError(f"{name} must be in (0, 1], got {share}")
    _require_columns(frame, FACE_COLUMNS, "face predictions")
    if frame["prob"].isna().any():
        raise ValueError(f"{int(frame['prob'].isna().sum())} face predictions have a NaN prob")
    if not frame["label"].isin((0, 1)).all():
        raise ValueError("face labels must be 0 (real) or 1 (fake)")
    _check_one_label_per_video(frame, "face predictions")

    reduce = AGGREGATORS[method]
    options = {
        "confident_threshold": confident_threshold,
        "confident_share": confident_share,
        "real_share": real_share,
    }
    grouped = frame.groupby("video_id", sort=True)
    tracked = TRACK_COLUMN in frame.columns

    def score(faces: pd.DataFrame) -> float:
        tracks = faces[TRACK_COLUMN].to_numpy() if tracked else None
        return reduce(faces["prob"].to_numpy(dtype=np.float64), tracks=tracks, **options)

    labels = grouped["label"].first()
    videos = pd.DataFrame(
        {
            "label": labels.astype(np.int64),
            "prob": pd.Series([score(faces) for _, faces in grouped], labels.index, float),
            "num_faces": grouped.size().astype(np.int64),
        }
    )
    carried = [c for c in CARRIED_COLUMNS if c in frame.columns]
    for column in carried:
        videos[column] = grouped[column].first()
    videos["prob"] = videos["prob"].astype(np.float64)
    return videos.reset_index()[[*VIDEO_COLUMNS, *carried]]


def add_missing_videos(
    videos: pd.DataFrame, all_videos: pd.DataFrame, no_face_score: float = 0.5
) -> pd.DataFrame:
    """Append videos in which no face was found, scored ``no_face_score`` with ``num_faces=0``.

    Dropping them would flatter the detector: DFDC scored every video, and a video the face
    detector missed still costs log-loss. ``0.5`` is the "don't know" answer that bounds it.

    Args:
        videos: Output of :func:`aggregate_video_scores`.
        all_videos: Every video of the split, columns ``video_id`` and ``label``.
        no_face_score: Probability of FAKE given to a video without faces.

    Returns:
        ``videos`` plus one row per missing video, sorted by ``video_id``. ``group`` and
        ``source`` of ``all_videos`` are kept (filled in for every row) when it has them.
    """
    if not 0.0 <= no_face_score <= 1.0:
        raise ValueError(f"no_face_score must be a probability, got {no_face_score}")
    _require_columns(videos, VIDEO_COLUMNS, "video scores")
    _require_columns(all_videos, ("video_id", "label"), "video list")
    carried = [c for c in CARRIED_COLUMNS if c in all_videos.columns]
    catalogue = all_videos[["video_id", "label", *carried]].drop_duplicates("video_id")
    _check_one_label_per_video(all_videos[["video_id", "label"]].drop_duplicates(), "video list")

    known = videos[["video_id", "label"]].merge(
        catalogue, on="video_id", how="inner", suffixes=("", "_listed")
    )
    disagree = known.loc[known["label"] != known["label_listed"], "video_id"].tolist()
    if disagree:
        raise ValueError(f"video scores and video list disagree on the label of {disagree[:5]}")

    missing = catalogue[~catalogue["video_id"].isin(videos["video_id"])]
    filler = pd.DataFrame(
        {
            "video_id": missing["video_id"].to_numpy(),
            "label": missing["label"].to_numpy(dtype=np.int64),
            "prob": np.full(len(missing), float(no_face_score)),
            "num_faces": np.zeros(len(missing), dtype=np.int64),
        }
    )
    parts = [part for part in (videos[VIDEO_COLUMNS], filler) if not part.empty]
    combined = pd.concat(parts, ignore_index=True) if parts else filler
    combined = combined.astype({"label": np.int64, "prob": np.float64, "num_faces": np.int64})
    for column in carried:  # the list's value, else (videos it lacks) the faces' value
        listed = combined["video_id"].map(catalogue.set_index("video_id")[column])
        if column in videos.columns:
            listed = listed.fillna(combined["video_id"].map(videos.set_index("video_id")[column]))
        combined[column] = listed
    return combined.sort_values("video_id", kind="stable").reset_index(drop=True)


def classify_videos(
    videos: pd.DataFrame, failures: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a video list (``videos.csv``) into the videos that are scored and those that failed.

    A video in which no face was found is a legitimate input the detector answers "don't
    know" for (0.5, see :func:`add_missing_videos`). A missing, corrupt, unreadable or
    outside-root file, or one never processed (``pending``), is not: scoring it 0.5 would
    count a broken input as a prediction. Those are left out of the metrics and counted with
    their reason instead.

    Args:
        videos: Columns ``video_id``, ``label`` and ``status`` (``ok`` / ``failed`` /
            ``pending``); a list without ``status`` (older preprocessing) is all scored.
        failures: ``failures.csv`` (``video_id``, ``reason``) giving each failed video's reason.

    Returns:
        ``(scored, failed)``: the rows of ``videos`` that are scored (status ``ok``, or failed
        with reason ``no_face``), and the others with a ``reason`` column.
    """
    if "status" not in videos.columns:
        return videos, videos.iloc[:0].assign(reason=pd.Series(dtype=str))
    reasons: dict[str, str] = {}
    if failures is not None and not failures.empty:
        first = failures[failures["reason"] != "duplicate"].drop_duplicates("video_id")
        reasons = dict(zip(first["video_id"].astype(str), first["reason"].astype(str), strict=True))
    status = videos["status"].astype(str)
    reason = videos["video_id"].map(reasons).fillna("unknown")
    reason = reason.where(status == "failed", status)  # ok -> "ok", pending -> "pending"
    scored = (status == "ok") | (reason == NO_FACE)
    return videos[scored], videos[~scored].assign(reason=reason[~scored])


def failure_counts(failed: pd.DataFrame) -> dict[str, object]:
    """``n_failed`` and ``failed_reasons`` (reason -> videos) for ``metrics.json``."""
    counts = failed["reason"].value_counts().sort_index() if len(failed) else pd.Series(dtype=int)
    return {
        "n_failed": int(len(failed)),
        "failed_reasons": {str(k): int(v) for k, v in counts.items()},
    }


def read_video_list(faces_dir: str | Path) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """:func:`classify_videos` of a faces folder's ``videos.csv`` and ``failures.csv``.

    ``(None, empty)`` when preprocessing wrote no video list (then only videos with faces
    are known).
    """
    faces_dir = Path(faces_dir)
    path = faces_dir / "videos.csv"
    if not path.is_file():
        return None, pd.DataFrame(columns=["video_id", "label", "reason"])
    dtypes = {"video_id": str, "group": str, "source": str}
    videos = pd.read_csv(path, dtype=dtypes)
    failures_path = faces_dir / "failures.csv"
    failures = pd.read_csv(failures_path, dtype=dtypes) if failures_path.is_file() else None
    return classify_videos(videos, failures)
