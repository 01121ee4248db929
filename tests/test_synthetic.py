"""The embedded synthetic DFDC-style generator: determinism, layout, swaps, detectability."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, fields, replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf

from deepfake_exp.data import synthetic
from deepfake_exp.data.records import FAKE, REAL
from deepfake_exp.data.sources.dfdc import DFDCSource
from deepfake_exp.data.sources.synthetic import SyntheticSource
from deepfake_exp.data.split_report import format_split_report, split_report
from deepfake_exp.data.splits import assign_splits, check_both_classes
from deepfake_exp.data.synthetic import (
    SyntheticConfig,
    dataset_metadata,
    draw_identity,
    face_boxes,
    generate_dataset,
    render_identity,
    skin_tone_buckets,
)
from tests.conftest import CONF_DIR, compose_config

# Two identities per skin-tone bucket, one real and one fake video each.
SMALL = SyntheticConfig(num_identities=12, videos_per_identity=1, fakes_per_real=1, num_frames=8)
TINY = SyntheticConfig(num_identities=3, videos_per_identity=1, fakes_per_real=1, num_frames=4)


def read_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video, BGR as cv2 decodes it."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    ok, frame = capture.read()
    while ok:
        frames.append(frame)
        ok, frame = capture.read()
    capture.release()
    return frames


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synthetic_small")
    meta_path = generate_dataset(root, SMALL)
    return root, json.loads(meta_path.read_text())


def test_config_rejects_bad_values() -> None:
    for bad in ({"num_frames": 0}, {"width": 321}, {"color_mismatch": 1.5}, {"jpeg_quality": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SyntheticConfig(**bad)
    with pytest.raises(ValueError, match="num_identities"):
        SyntheticConfig(num_identities=1, fakes_per_real=1)


def test_skin_tones_cover_the_range_round_robin() -> None:
    buckets = skin_tone_buckets()
    assert len(buckets) == 6
    identities = [draw_identity(i, seed=0) for i in range(len(buckets))]
    assert [ident.skin_tone for ident in identities] == buckets
    luma = [np.dot(ident.skin, (0.299, 0.587, 0.114)) for ident in identities]
    assert all(a > b for a, b in zip(luma, luma[1:], strict=False)), luma
    assert luma[0] > 0.75 and luma[-1] < 0.3


def test_identity_sprite_layers() -> None:
    ident = draw_identity(0, seed=0)
    full = render_identity(ident)
    assert full.shape == (320, 256, 4) and full.dtype == np.float32
    assert full.min() >= 0.0 and full.max() <= 1.0
    y, x = int(synthetic.CY), int(synthetic.CX)
    assert full[y, x, 3] == pytest.approx(1.0)  # opaque face centre
    assert full[0, 0, 3] == 0.0  # transparent corner
    face = render_identity(ident, part="face")
    assert face[y, x, 3] == pytest.approx(1.0) and face[-1, x, 3] == 0.0  # no neck in it
    with pytest.raises(ValueError, match="sprite part"):
        render_identity(ident, part="hat")


def test_generation_is_deterministic(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", TINY)
    b = generate_dataset(tmp_path / "b", TINY, workers=2)  # parallel output is the same too
    c = generate_dataset(tmp_path / "c", replace(TINY, seed=1))
    assert a.read_bytes() == b.read_bytes()
    for name in json.loads(a.read_text()):
        first_a = read_frames(a.parent / name)[0]
        assert np.array_equal(first_a, read_frames(b.parent / name)[0]), name
        assert not np.array_equal(first_a, read_frames(c.parent / name)[0]), name


def test_metadata_matches_files(small_set: tuple[Path, dict]) -> None:
    root, metadata = small_set
    assert len(metadata) == 24
    assert {p.name for p in root.glob("*.mp4")} == set(metadata)  # no stray or temp files
    for name, entry in metadata.items():
        frames = read_frames(root / name)
        assert len(frames) == SMALL.num_frames, name
        assert all(f.shape == (SMALL.height, SMALL.width, 3) for f in frames), name
        assert entry["skin_tone"] in skin_tone_buckets() and entry["split"] == "train"
        if entry["label"] == "REAL":
            assert entry["original"] is None and "source_identity" not in entry
            continue
        assert entry["label"] == "FAKE"
        original = metadata[entry["original"]]
        assert original["label"] == "REAL" and (root / entry["original"]).is_file()
        assert entry["identity"] == original["identity"]
        assert entry["source_identity"] != entry["identity"]
    assert Counter(e["skin_tone"] for e in metadata.values()) == dict.fromkeys(
        skin_tone_buckets(), 4
    )


def test_source_groups_by_both_identities_of_a_swap(small_set: tuple[Path, dict]) -> None:
    root, metadata = small_set
    source = SyntheticSource("synthetic", root, **_source_kwargs(SMALL))
    assert source.is_current()
    records = source.records()
    assert len(records) == len(metadata)
    assert Counter(r.label for r in records) == {REAL: 12, FAKE: 12}
    by_id = {r.video_id: r for r in records}
    for record in records:
        entry = metadata[record.video_id]
        assert record.identities[0] == entry["identity"]
        assert record.source == "synthetic" and record.split is None
        assert entry["identity"] in record.group  # "id_000_id_006": both people of a pool
        if record.label == FAKE:
            assert record.identities == (entry["identity"], entry["source_identity"])
            assert by_id[record.original].group == record.group
            source_real = next(r for r in records if r.identities == (entry["source_identity"],))
            assert source_real.group == record.group  # the swapped-in person is grouped too
    assert len({r.group for r in records}) == SMALL.num_identities // 2  # same-tone pairs


def test_swap_sources_come_from_small_same_tone_pools() -> None:
    for n in (2, 3, 7, 12, 40, 48, 49):
        pools = synthetic.swap_pools(n)
        assert sorted(i for pool in pools for i in pool) == list(range(n)), n
        assert all(2 <= len(pool) <= 3 for pool in pools), (n, pools)
    metadata = dataset_metadata(SyntheticConfig())
    pool_of = {f"id_{i:03d}": set(pool) for pool in synthetic.swap_pools(48) for i in pool}
    tone = {e["identity"]: e["skin_tone"] for e in metadata.values()}
    for entry in metadata.values():
        if entry["label"] == "FAKE":
            source = int(entry["source_identity"][3:])
            assert (
                source in pool_of[entry["identity"]]
                and entry["source_identity"] != entry["identity"]
            )
            assert tone[entry["source_identity"]] == tone[entry["identity"]]


def _default_set_overrides(which: str) -> list[str]:
    """Overrides of the `make train` set or of the report set (its `common` list)."""
    if which == "make_train":
        return ["experiment=synthetic_cpu"]
    report = OmegaConf.load(Path(CONF_DIR) / "report" / "default.yaml")
    return list(OmegaConf.to_container(report, resolve=False)["common"])


@pytest.mark.parametrize("which", ["make_train", "report"])
def test_default_sets_split_identity_disjoint(which: str, tmp_path: Path) -> None:
    """The default sets' splits share no person, target or source, between train, val and
    test; checked on the generator's metadata, without rendering a video."""
    cfg = compose_config("preprocess", _default_set_overrides(which), tmp_path)
    config = SyntheticConfig(**{f.name: cfg.dataset[f.name] for f in fields(SyntheticConfig)})
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "metadata.json").write_text(json.dumps(dataset_metadata(config)))
    records = DFDCSource(cfg.dataset.name, tmp_path / "meta").records()
    split = cfg.split
    split_of = assign_splits(records, split.policy, split.ratios, split.seed, split.use_official)
    check_both_classes(records, split_of)
    report = split_report(records, split_of, ratios=split.ratios)
    print(f"\n{which}: {config.num_identities} identities\n{format_split_report(report)}")
    assert report["identity_disjoint"] is True
    for name in ("val", "test"):
        row = report["splits"][name]
        assert row["shared_identities_with_train"] == row["shared_videos_with_train"] == 0
        assert row["real_videos"] and row["fake_videos"]
    people = {
        s: {i for r in records if split_of[r.video_id] == s for i in r.identities}
        for s in ("train", "val", "test")
    }
    assert not people["train"] & people["val"] and not people["train"] & people["test"]
    assert not people["val"] & people["test"]
    assert sum(map(len, people.values())) == config.num_identities


def _source_kwargs(config: SyntheticConfig) -> dict:
    return {**asdict(config), "workers": 1}


def test_source_regenerates_only_when_needed(tmp_path: Path) -> None:
    root = tmp_path / "set"
    source = SyntheticSource("synthetic", root, **_source_kwargs(TINY))
    source.prepare()
    meta = root / "metadata.json"
    stored = json.loads((root / "generator.json").read_text())
    assert stored["config"]["num_frames"] == TINY.num_frames
    stamp = meta.stat().st_mtime_ns
    source.prepare()
    assert meta.stat().st_mtime_ns == stamp  # same config: nothing rewritten

    smaller = replace(TINY, num_identities=2, num_frames=3)
    records = SyntheticSource("synthetic", root, **_source_kwargs(smaller)).records()
    assert len(records) == 4
    assert {p.name for p in root.glob("*.mp4")} == {Path(r.path).name for r in records}
    assert len(read_frames(Path(records[0].path))) == 3


def test_interrupted_run_is_detected_and_redone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "set"
    generate_dataset(root, TINY)
    calls = []
    real_render = synthetic.writer.render_video

    def failing_render(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return real_render(*args, **kwargs)

    monkeypatch.setattr(synthetic.writer, "render_video", failing_render)
    changed = replace(TINY, seed=5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_dataset(root, changed)
    assert not (root / "metadata.json").exists()
    assert not list(root.glob(".*"))  # no temporary file left
    source = SyntheticSource("synthetic", root, **_source_kwargs(changed))
    assert not source.is_current()
    monkeypatch.undo()
    assert len(source.records()) == 6 and source.is_current()


def test_fakes_differ_from_originals_only_in_the_face(small_set: tuple[Path, dict]) -> None:
    root, metadata = small_set
    inside, outside, colour_shift = [], [], []
    for name, entry in metadata.items():
        if entry["label"] != "FAKE":
            continue
        fake = read_frames(root / name)[0].astype(np.float32)
        real = read_frames(root / entry["original"])[0].astype(np.float32)
        x1, y1, x2, y2 = face_boxes(SMALL, name)[0]
        box = np.zeros(fake.shape[:2], bool)
        box[int(y1) : int(y2), int(x1) : int(x2)] = True
        w, h = x2 - x1, y2 - y1
        near = np.zeros_like(box)
        near[
            max(int(y1 - h / 2), 0) : int(y2 + h / 2), max(int(x1 - w / 2), 0) : int(x2 + w / 2)
        ] = True
        diff = np.abs(fake - real).mean(axis=2)
        inside.append(diff[box].mean())
        outside.append(diff[~near].mean())
        colour_shift.append(np.abs(fake[box].mean(axis=0) - real[box].mean(axis=0)).max())
    print(
        f"\nfake vs original, mean |diff| in face {np.mean(inside):.1f}, "
        f"away from it {np.mean(outside):.2f}, face colour shift {np.mean(colour_shift):.1f}"
    )
    assert min(inside) > 3.0, inside  # every fake really changed the face
    assert np.mean(outside) < 0.5 and max(outside) < 3.0, outside  # ... and little else
    assert max(colour_shift) < 40.0, colour_shift  # colour-corrected, not pasted raw


def test_mtcnn_finds_the_face_in_every_skin_tone(small_set: tuple[Path, dict]) -> None:
    """facenet-pytorch MTCNN at its default thresholds finds *the* face (its box centre lies in
    the ground-truth face box) in >= 95% of sampled frames, and >= 90% per skin-tone bucket."""
    facenet = pytest.importorskip("facenet_pytorch")
    detector = facenet.MTCNN(device="cpu", keep_all=False)
    root, metadata = small_set
    found, total = Counter(), Counter()
    indices = np.linspace(0, SMALL.num_frames - 1, 4).round().astype(int)
    for name, entry in sorted(metadata.items()):
        frames = read_frames(root / name)
        batch = [cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB) for i in indices]
        boxes, _ = detector.detect(batch)
        truth = face_boxes(SMALL, name)
        for i, frame_boxes in zip(indices, boxes, strict=True):
            total[entry["skin_tone"]] += 1
            if frame_boxes is None:
                continue
            x1, y1, x2, y2 = frame_boxes[0]
            tx1, ty1, tx2, ty2 = truth[i]
            if tx1 <= (x1 + x2) / 2 <= tx2 and ty1 <= (y1 + y2) / 2 <= ty2:
                found[entry["skin_tone"]] += 1
    rates = {bucket: found[bucket] / total[bucket] for bucket in skin_tone_buckets()}
    overall = sum(found.values()) / sum(total.values())
    report = ", ".join(f"{b} {r:.2f}" for b, r in rates.items()) + f"; overall {overall:.3f}"
    print(f"\nMTCNN detection rate per skin tone: {report}")
    assert overall >= 0.95, report
    assert min(rates.values()) >= 0.90, report


def test_face_boxes_rejects_unknown_video() -> None:
    with pytest.raises(KeyError, match="no video named"):
        face_boxes(TINY, "nope.mp4")


# Pinned output of the generator (rendered frames before mp4 encoding, metadata and the
# generator.json record): a refactor must not change a stored set. A deliberate change of the
# output bumps GENERATOR_VERSION and these values; so may a cv2 upgrade (its warps, JPEG).
# (The metadata of fakes gained `method`; the frames are those of the pre-package generator.)
GOLDEN = {
    "default": (
        SyntheticConfig(
            num_identities=3, videos_per_identity=1, fakes_per_real=1, num_frames=3, width=96,
            height=64,
        ),
        "df449d10b626b1c7f55457350f9a8dc671e23db7151e95f292e7f1ef088ca5cd",
    ),
    "options": (
        SyntheticConfig(
            num_identities=7, videos_per_identity=1, fakes_per_real=2, num_frames=2, width=128,
            height=96, seed=3, jpeg_quality=None, mask_blur=0.0, face_blur=0.0, swap_jitter=0.0,
            blend_ratio=0.7, color_mismatch=1.0,
        ),
        "d7ea35a304113b8de8ce892c6f97ae89f8c5c35f07d4d242b03b057ca81c8bed",
    ),
    "two_people": (
        SyntheticConfig(
            num_identities=4, videos_per_identity=1, fakes_per_real=1, num_frames=3, width=96,
            height=64, people_per_video=2, swap_people="all",
        ),
        "e68bac512ad4f5aa72f36676006397509e2aad04690f313097ca3a10331451c0",
    ),
    "methods": (
        SyntheticConfig(
            num_identities=3, videos_per_identity=1, fakes_per_real=1, num_frames=3, width=96,
            height=64, generator_methods=("hard_paste", "colour_shift", "soft_face", "box_mask", "blend"),
        ),
        "8983e4c9b9c0a0e8812c4a65c6237126a2df1330fff51b7ac90839efc45ed42a",
    ),
}  # fmt: skip


def output_digest(config: SyntheticConfig) -> str:
    """SHA-256 of every rendered frame and the metadata of ``config``'s set."""
    digest = hashlib.sha256()
    identities = synthetic.draw_identities(config)
    for plan in synthetic.plan_videos(config, identities):
        digest.update(plan.name.encode())
        for frame in synthetic.render_video(config, plan, identities):
            digest.update(frame.tobytes())
    digest.update(json.dumps(dataset_metadata(config), sort_keys=True).encode())
    return digest.hexdigest()


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_output_is_pinned(case: str) -> None:
    config, expected = GOLDEN[case]
    assert output_digest(config) == expected


def test_generator_record_is_pinned() -> None:
    """Sets stored by earlier versions stay current: the record of a default config is the same."""
    record = synthetic.generator_record(GOLDEN["default"][0])
    text = json.dumps(record, sort_keys=True)
    digest = "de2b7b23d7a500c980adf7d074dec4bc9710300aa0ab3a479e9365cbdeb73cc0"
    assert hashlib.sha256(text.encode()).hexdigest() == digest, text


TWO = replace(TINY, num_identities=4, videos_per_identity=2, people_per_video=2)


def test_two_person_plans_name_both_people_and_keep_groups() -> None:
    for swap_people in ("one", "all"):
        config = replace(TWO, swap_people=swap_people)
        metadata = dataset_metadata(config)
        pool_of = {f"id_{i:03d}": pool for pool in synthetic.swap_pools(4) for i in pool}
        for entry in metadata.values():
            companion = entry["companion_identity"]
            assert companion != entry["identity"]
            assert int(companion[3:]) in pool_of[entry["identity"]]  # groups stay the pools
            swapped = "companion_source_identity" in entry
            assert swapped == (entry["label"] == "FAKE" and swap_people == "all")
    with pytest.raises(ValueError, match="people_per_video"):
        SyntheticConfig(people_per_video=3)
    with pytest.raises(ValueError, match="swap_people"):
        SyntheticConfig(swap_people="some")


def test_two_person_source_records_both_and_splits_identity_disjoint(tmp_path: Path) -> None:
    config = replace(TWO, num_identities=12, videos_per_identity=1)
    (tmp_path / "metadata.json").write_text(json.dumps(dataset_metadata(config)))
    records = DFDCSource("synthetic", tmp_path).records()
    assert all(len(r.identities) >= 2 for r in records)  # target and companion at least
    split_of = assign_splits(records, "group", [0.5, 0.25, 0.25], 0, False)
    assert split_report(records, split_of)["identity_disjoint"] is True


def _box_mean_diff(diff: np.ndarray, box: np.ndarray) -> float:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return float(diff[max(y1, 0) : y2, max(x1, 0) : x2].mean())


@pytest.mark.parametrize("swap_people", ["one", "all"])
def test_two_person_fake_swaps_only_the_chosen_faces(swap_people: str) -> None:
    """Both faces are where ``person_boxes`` says (they differ from the room behind them), and
    a fake differs from its original inside the swapped faces only."""
    config = replace(TWO, swap_people=swap_people, num_frames=2)
    identities = synthetic.draw_identities(config)
    plans = {p.name: p for p in synthetic.plan_videos(config, identities)}
    sides = set()
    for name, plan in plans.items():
        if plan.fake is None:
            continue
        fake = synthetic.render_video(config, plan, identities)[0].astype(np.float32)
        real = synthetic.render_video(config, plans[plan.original], identities)[0]
        room = synthetic.render_background(config, plan.identity, plan.video)[..., ::-1] * 255
        boxes = synthetic.person_boxes(config, name)[:, 0]
        assert boxes.shape == (2, 4)
        assert np.array_equal(boxes[0], synthetic.face_boxes(config, name)[0])
        diff = np.abs(fake - real).mean(axis=2)
        on_face = [_box_mean_diff(diff, box) for box in boxes]
        assert on_face[0] > 3.0, on_face  # the target's face is swapped
        if swap_people == "one":
            assert on_face[1] < 0.5, on_face  # the companion's is untouched
        else:
            assert on_face[1] > 3.0, on_face
        shown = np.abs(real.astype(np.float32) - room).mean(axis=2)
        assert min(_box_mean_diff(shown, box) for box in boxes) > 10.0  # a face in each box
        sides.add(boxes[0, 0] < boxes[1, 0])
        left, right = sorted(boxes, key=lambda b: b[0])
        assert left[2] < right[0]  # side by side, not overlapping
    assert sides == {True, False}  # the target stands left in some videos, right in others


def test_two_person_target_is_the_smaller_face_about_half_the_time() -> None:
    """So ``keep: largest`` misses the swapped face in many fakes, as on DFDC."""
    config = SyntheticConfig(people_per_video=2)
    smaller = [
        synthetic.draw_motion(config, i, v, 0).scale < synthetic.draw_motion(config, i, v, 1).scale
        for i in range(config.num_identities)
        for v in range(config.videos_per_identity)
    ]
    assert 0.3 < np.mean(smaller) < 0.7, np.mean(smaller)


ALL_METHODS = ("blend", "hard_paste", "colour_shift", "soft_face", "box_mask")


def test_method_names_are_the_styles_the_swap_code_knows() -> None:
    from deepfake_exp.data.synthetic.config import METHOD_NAMES
    from deepfake_exp.data.synthetic.swap import METHODS

    assert METHOD_NAMES == tuple(METHODS) == ALL_METHODS


def test_methods_are_validated_and_numbered_in_turn() -> None:
    for bad in ((), ("blend", "blend"), ("poisson",)):
        with pytest.raises(ValueError, match="generator_methods"):
            SyntheticConfig(generator_methods=bad)
    config = replace(TINY, fakes_per_real=2, generator_methods=("hard_paste", "soft_face"))
    metadata = dataset_metadata(config)
    fakes = {n: e["method"] for n, e in metadata.items() if e["label"] == "FAKE"}
    assert fakes["id_000_r0_f0.mp4"] == fakes["id_000_r0_f1.mp4"] == "hard_paste"
    assert fakes["id_000_r0_f2.mp4"] == fakes["id_000_r0_f3.mp4"] == "soft_face"
    assert len(fakes) == config.num_identities * 4
    assert all("method" not in e for e in metadata.values() if e["label"] == "REAL")


def _sharpness(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var())


def test_each_method_leaves_its_own_trace() -> None:
    """Every method changes the face; colour_shift changes its colour most, soft_face leaves
    it blurrier than the original, and no two methods make the same video."""
    config = replace(TINY, num_identities=6, num_frames=1, generator_methods=ALL_METHODS)
    identities = synthetic.draw_identities(config)
    plans = synthetic.plan_videos(config, identities)
    colour, sharp, faces, fakes_of = {}, {}, {}, {}
    for plan in plans:
        x1, y1, x2, y2 = face_boxes(config, plan.name)[0].astype(int)
        frame = synthetic.render_video(config, plan, identities)[0][y1:y2, x1:x2]
        faces[plan.name] = frame
        if plan.fake is None:
            continue
        real = faces[plan.original]
        diff = np.abs(frame.astype(np.float32) - real)
        assert diff.mean() > 1.0, plan
        mean_shift = np.abs(frame.reshape(-1, 3).mean(0) - real.reshape(-1, 3).mean(0)).max()
        colour.setdefault(plan.method, []).append(mean_shift)
        sharp.setdefault(plan.method, []).append(_sharpness(frame) / _sharpness(real))
        siblings = fakes_of.setdefault(plan.original, [])
        assert not any(np.array_equal(frame, sibling) for sibling in siblings)
        siblings.append(frame)
    mean = {m: float(np.mean(v)) for m, v in colour.items()}
    print(f"\nmean colour shift {mean}")
    assert mean["colour_shift"] > 2 * max(mean[m] for m in ("hard_paste", "soft_face")), mean
    blur = {m: float(np.mean(v)) for m, v in sharp.items()}
    print(f"sharpness vs original {blur}")
    assert blur["soft_face"] < 0.7 and blur["soft_face"] < min(blur["hard_paste"], 0.95), blur


def test_source_reads_the_chosen_methods_without_regenerating(tmp_path: Path) -> None:
    config = replace(TINY, generator_methods=("hard_paste", "box_mask"))
    kwargs = _source_kwargs(config)
    everything = SyntheticSource("synthetic", tmp_path, **kwargs).records()
    assert Counter(r.method for r in everything) == {None: 3, "hard_paste": 3, "box_mask": 3}
    stamp = (tmp_path / "metadata.json").stat().st_mtime_ns
    chosen = SyntheticSource("synthetic", tmp_path, **kwargs, methods=["box_mask"])
    assert chosen.is_current()
    records = chosen.records()
    assert (tmp_path / "metadata.json").stat().st_mtime_ns == stamp
    assert Counter((r.label, r.method) for r in records) == {(REAL, None): 3, (FAKE, "box_mask"): 3}
    assert chosen.settings() == SyntheticSource("s", tmp_path, **kwargs).settings()
    with pytest.raises(ValueError, match="not generated: \\['blend'\\]"):
        SyntheticSource("synthetic", tmp_path, **kwargs, methods=["blend"])


def test_sets_stored_before_methods_read_as_blend(tmp_path: Path) -> None:
    """Old sets are still current (their generator.json is unchanged) and their fakes, whose
    metadata names no method, are the config's one method."""
    generate_dataset(tmp_path, TINY)
    meta = tmp_path / "metadata.json"
    entries = json.loads(meta.read_text())
    meta.write_text(
        json.dumps({n: {k: v for k, v in e.items() if k != "method"} for n, e in entries.items()})
    )
    source = SyntheticSource("synthetic", tmp_path, **_source_kwargs(TINY))
    assert source.is_current()
    assert {r.method for r in source.records() if r.label == FAKE} == {"blend"}


def test_official_split_lists_whole_pools_the_same_for_every_method_subset(tmp_path: Path) -> None:
    """As FF++'s pair lists: every person in one split, and reading another subset of the
    methods (a held-out-method test set) keeps every list."""
    config = replace(
        TINY, num_identities=24, people_per_video=2, official_split=(0.6, 0.2, 0.2),
        generator_methods=("hard_paste", "box_mask"),
    )  # fmt: skip
    metadata = dataset_metadata(config)
    people = {}
    for entry in metadata.values():
        for key in ("identity", "source_identity", "companion_identity"):
            if key in entry:
                people.setdefault(entry[key], set()).add(entry["split"])
    assert all(len(splits) == 1 for splits in people.values()), people
    assert Counter(e["split"] for e in metadata.values()) == {"train": 48, "val": 12, "test": 12}
    assert dataset_metadata(replace(config, official_split=None)) == {
        n: {**e, "split": "train"} for n, e in metadata.items()
    }
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    generate = {**_source_kwargs(config), "use_official_split": True}
    source = SyntheticSource("synthetic", tmp_path, **generate)
    source.prepare = lambda: None  # metadata only: no video needed to read the lists
    test = SyntheticSource(
        "synthetic", tmp_path, **generate, methods=["box_mask"], read_splits=["test"]
    )
    test.prepare = lambda: None
    split_of = {r.video_id: r.split for r in source.records()}
    held_out = test.records()
    assert {r.split for r in held_out} == {"test"} and {r.method for r in held_out} == {
        None,
        "box_mask",
    }
    assert all(split_of[r.video_id] == "test" for r in held_out)
    assert len(held_out) == sum(s == "test" for s in split_of.values()) * 2 // 3
    with pytest.raises(ValueError, match="swap pools cannot give"):
        dataset_metadata(replace(TINY, num_identities=4, official_split=(0.6, 0.2, 0.2)))
    with pytest.raises(ValueError, match="official_split"):
        SyntheticConfig(official_split=(0.5, 0.5))


def test_crops_of_sets_made_before_the_new_options_stay_current(tmp_path: Path) -> None:
    """The extraction fingerprint of a config that sets none of the new options names only the
    earlier fields, so its stored crops are not redone; setting one changes it."""
    from deepfake_exp.tasks.preprocess import dataset_settings

    earlier = {
        "num_identities", "videos_per_identity", "fakes_per_real", "num_frames", "width",
        "height", "fps", "seed", "mask_blur", "color_mismatch", "blend_ratio", "jpeg_quality",
        "face_blur", "swap_jitter",
    }  # fmt: skip
    source = SyntheticSource("synthetic", tmp_path, **_source_kwargs(TINY))
    assert set(dataset_settings(source)["generator"]) == earlier
    two = SyntheticSource(
        "synthetic", tmp_path, **_source_kwargs(replace(TINY, people_per_video=2))
    )
    assert dataset_settings(two)["generator"]["people_per_video"] == 2
