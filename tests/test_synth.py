"""The built-in dataset (asc.data.synth): the real layout, audio format, split rules, determinism and scene design."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile

from asc.data import synth
from asc.data.layout import (
    DEVICE_GROUPS,
    DEVICES,
    FOLD_COLUMNS,
    FOLD_FILES,
    META_COLUMNS,
    META_FILE,
    OFFICIAL_SIZES,
    SAMPLE_RATE,
    SCENES,
    UNSEEN_DEVICES,
    ClipName,
    parse_clip_name,
)
from asc.data.synth import SynthSpec, plan, synthesize
from asc.data.synth.conditions import scene_field
from asc.errors import AscError

# Most tests write a dataset or read the clips of one the module writes (the plans alone are quick).
pytestmark = pytest.mark.slow

#: 180 clips: one train and one evaluate location per scene, one all-device segment each.
SMALL = SynthSpec(train_locations=1, evaluate_locations=1, segments_per_location=1, slices_per_segment=1)


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a tab-separated file, split by hand so that the separator itself is checked."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    files = (path for path in root.rglob("*") if path.is_file())
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("synth") / "tiny"
    return root, synthesize(root, SynthSpec.preset("tiny"), seed=0, workers=1, progress=False)


@pytest.fixture(scope="module")
def meta(tiny: tuple[Path, dict[str, int]]) -> list[list[str]]:
    return read_tsv(tiny[0] / META_FILE)[1]


def fold_names(root: Path, split: str) -> list[str]:
    return [row[0] for row in read_tsv(root / FOLD_FILES[split])[1]]


def test_headers_and_counts(tiny: tuple[Path, dict[str, int]]) -> None:
    root, counts = tiny
    header, rows = read_tsv(root / META_FILE)
    assert header == list(META_COLUMNS) and all(len(row) == len(META_COLUMNS) for row in rows)
    sizes = {"meta": len(rows)}
    for split, name in FOLD_FILES.items():
        header, fold = read_tsv(root / name)
        assert header == list(FOLD_COLUMNS[split])
        assert all(len(row) == len(FOLD_COLUMNS[split]) for row in fold)
        sizes[split] = len(fold)
    assert sizes == counts == {"meta": 660, "train": 320, "evaluate": 180, "test": 180}
    assert [row[0] for row in rows] == [row.clip.filename for row in plan(SynthSpec.preset("tiny"), seed=0)]


def test_every_listed_file_is_one_second_of_24_bit_mono(tiny: tuple[Path, dict[str, int]], meta) -> None:
    root = tiny[0]
    for filename, *_ in meta:
        info = soundfile.info(str(root / filename))
        assert (info.samplerate, info.channels, info.frames, info.subtype, info.format) == (
            SAMPLE_RATE, 1, SAMPLE_RATE, "PCM_24", "WAV"), filename
    assert sorted(p.name for p in (root / "audio").iterdir()) == sorted(row[0].split("/")[1] for row in meta)


def test_names_agree_with_columns(tiny: tuple[Path, dict[str, int]], meta) -> None:
    scene_of = {}
    for filename, scene, identifier, device in meta:
        clip = parse_clip_name(filename)
        assert filename.startswith("audio/")
        assert (clip.scene, clip.identifier, clip.device) == (scene, identifier, device)
        assert clip.city in synth.CITIES and clip.location.isdigit() and clip.segment.isdigit()
        assert 0 <= int(clip.slice) <= 9
        scene_of[filename] = scene
    for split in ("train", "evaluate"):
        for filename, scene in read_tsv(tiny[0] / FOLD_FILES[split])[1]:
            assert scene_of[filename] == scene


def test_split_rules_of_the_real_set(tiny: tuple[Path, dict[str, int]], meta) -> None:
    root = tiny[0]
    train, evaluate = fold_names(root, "train"), fold_names(root, "evaluate")
    assert fold_names(root, "test") == evaluate
    train_devices = Counter(parse_clip_name(name).device for name in train)
    evaluate_devices = Counter(parse_clip_name(name).device for name in evaluate)
    assert not set(UNSEEN_DEVICES) & set(train_devices)
    assert set(evaluate_devices) == set(DEVICES) and set(train_devices) == set(DEVICES) - set(UNSEEN_DEVICES)
    assert {row[3] for row in meta} == set(DEVICES)
    for names in (train, evaluate, [row[0] for row in meta]):
        assert {parse_clip_name(name).scene for name in names} == set(SCENES)
    locations = {split: {parse_clip_name(n).identifier for n in names} for split, names in
                 (("train", train), ("evaluate", evaluate))}
    assert not locations["train"] & locations["evaluate"]
    assert len(meta) > len(train) + len(evaluate)  # s4-s6 of train locations: in meta.csv, in no fold


def test_same_seed_same_bytes_for_any_worker_count_and_own_output_is_overwritten(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    synthesize(first, SMALL, seed=3, workers=1, progress=False)
    synthesize(second, SMALL, seed=3, workers=2, progress=False)
    same = digests(first)
    assert same == digests(second) and len(same) == 180 + 12 + 4 + 1  # WAVs, impulse responses, CSVs, marker
    synthesize(first, SMALL, seed=4, workers=1, progress=False)  # overwriting its own output is allowed
    other = digests(first)
    assert other["meta.csv"] != same["meta.csv"]
    wavs = {name: digest for name, digest in other.items() if name.startswith("audio/")}
    assert len(wavs) == 180 and not set(wavs.values()) & set(same.values())  # and no stale file is left


def test_refuses_foreign_data(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(AscError, match=str(foreign)):
        synthesize(foreign, SMALL, progress=False)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    with pytest.raises(AscError, match="not a directory"):
        synthesize(foreign / "notes.txt", SMALL, progress=False)


def test_full_plan_has_the_official_sizes() -> None:
    rows = plan(SynthSpec.preset("full"))
    splits = Counter(row.split for row in rows)
    assert {"meta": len(rows), "train": splits["train"], "evaluate": splits["evaluate"]} == OFFICIAL_SIZES
    assert len({row.clip.filename for row in rows}) == len(rows)
    train_devices = Counter(row.clip.device for row in rows if row.split == "train")
    assert 0.70 < train_devices["a"] / splits["train"] < 0.76  # 73 % in the real set
    assert not set(UNSEEN_DEVICES) & set(train_devices)
    by_split = {s: {row.clip.identifier for row in rows if row.split == s} for s in ("train", "evaluate")}
    assert not by_split["train"] & by_split["evaluate"]


def test_demo_is_proportioned_like_the_real_set() -> None:
    rows = plan(SynthSpec.preset("demo"))
    splits = Counter(row.split for row in rows)
    assert 3000 <= len(rows) <= 5000
    assert 0.5 < splits["train"] / len(rows) < 0.65 and 0.1 < splits["evaluate"] / len(rows) < 0.16
    train_devices = Counter(row.clip.device for row in rows if row.split == "train")
    assert 0.65 < train_devices["a"] / splits["train"] < 0.8
    others = [train_devices[d] for d in ("b", "c", "s1", "s2", "s3")]
    assert max(others) == min(others)


def test_spec_presets_scaling_and_errors() -> None:
    full = SynthSpec.preset("full")
    small = full.scaled(0.01)
    assert (small.train_locations, small.evaluate_locations, small.sizes) == (1, 1, None)
    assert full.scaled(2.0).train_locations == 2 * full.train_locations
    with pytest.raises(AscError, match="huge"):
        SynthSpec.preset("huge")
    with pytest.raises(AscError):
        dataclasses.replace(SMALL, train_parallel=2)
    with pytest.raises(AscError):
        plan(SMALL, seed=-1)


def fluctuation_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Correlation of two clips' log-mel fluctuations (each band minus its mean over time).

    Unlike the raw waveform correlation it is insensitive to the device's colouring (band limits, EQ), so it
    measures whether two clips carry the same events at the same times.
    """
    fx, fy = (s - s.mean(axis=1, keepdims=True) for s in (logmel(x), logmel(y)))
    return float(np.corrcoef(fx.ravel(), fy.ravel())[0, 1])


def test_simulated_devices_are_made_from_device_a(tiny: tuple[Path, dict[str, int]], meta) -> None:
    root = tiny[0]
    clips = [parse_clip_name(row[0]) for row in meta]
    a_clips = {(c.identifier, c.segment, c.slice): c for c in clips if c.device == "a"}
    simulated = [c for c in clips if c.device.startswith("s")][::7]
    assert {c.device for c in simulated} == set(DEVICE_GROUPS["seen_simulated"] + UNSEEN_DEVICES)
    for clip in simulated:
        same = a_clips[(clip.identifier, clip.segment, clip.slice)]
        other = next(a for key, a in a_clips.items() if key[0] == clip.identifier and a != same)
        audio, a_same, a_other = (soundfile.read(str(root / c.filename))[0] for c in (clip, same, other))
        r_same, r_other = fluctuation_correlation(audio, a_same), fluctuation_correlation(audio, a_other)
        assert r_same > 0.8 and r_other < 0.5, (clip.filename, r_same, r_other)
        assert np.corrcoef(audio, a_same)[0, 1] > np.corrcoef(audio, a_other)[0, 1] + 0.1  # the waveform too


# ------------------------------------------------------------------- scene design: time-reversed pairs

MEL = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=2048, n_mels=64, fmax=8000).astype(np.float32)
WINDOW = np.hanning(2048).astype(np.float32)


def logmel(x: np.ndarray) -> np.ndarray:
    """64-band log-mel, 46-ms Hann window, 20-ms hop: bands x frames."""
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float32), 2048)[::882] * WINDOW
    return np.log(MEL @ np.square(np.abs(np.fft.rfft(frames, axis=1))).T.astype(np.float32) + 1e-10)


def band_moments(s: np.ndarray) -> np.ndarray:
    """Mean, variance, skewness and kurtosis over time of each band: blind to the order of frames."""
    centred = s - s.mean(axis=1, keepdims=True)
    variance = np.mean(centred**2, axis=1)
    z = centred / np.sqrt(variance)[:, None]
    return np.concatenate([s.mean(axis=1), variance, np.mean(z**3, axis=1), np.mean(z**4, axis=1)])


def onset_skewness(s: np.ndarray) -> float:
    """Skewness of frame-to-frame changes of the total log energy: > 0 for sharp onsets and slow decays."""
    change = np.diff(np.log(np.exp(s).sum(axis=0)))
    return float(np.mean(change**3) / np.mean(change**2) ** 1.5)


def frequency_drift(s: np.ndarray) -> float:
    """Correlation of the temporal change with minus the spectral slope: > 0 when spectral peaks move upwards."""
    change = np.diff(s, axis=1)[1:-1]
    slope = (s[2:, :-1] + s[2:, 1:] - s[:-2, :-1] - s[:-2, 1:]) / 2
    return float(-np.mean(change * slope) / np.sqrt(np.mean(change**2) * np.mean(slope**2)))


#: How each pair's forward scene is built: up-sweeping whines, and sharp-onset events (see the module docstring).
TEMPORAL_STATISTIC: dict[str, Callable[[np.ndarray], float]] = {
    "metro": frequency_drift,
    "bus": lambda s: -onset_skewness(s),  # revs rise slowly and drop at once
    "airport": onset_skewness,
    "street_pedestrian": onset_skewness,
}


@pytest.fixture(scope="module")
def matched_logmels() -> dict[str, list[np.ndarray]]:
    """Device-a log-mels of 24 slices per scene, the same 24 slice identities (so the same random draws) for all.

    A slice's random streams depend on its location, segment and slice but not on its scene, so the partner of
    a scene in a reversed pair renders exactly the same background with the event layer played backwards.
    """
    names = [("lisbon", str(1000 + i), str(40000 + i), str(i % 10)) for i in range(24)]
    return {scene: [logmel(synth.render_recording(0, ClipName(scene, *n, "a"), ["a"])["a"]) for n in names]
            for scene in SCENES}


def assert_same_moments_other_order(logmels: dict[str, list[np.ndarray]], forward: str, backward: str,
                                     statistic: Callable[[np.ndarray], float]) -> None:
    """The pair's band moments are as close as noise allows (much closer than any other scene's), while the
    temporal ``statistic`` of the matched clips is positive forwards and negative backwards."""
    moments = {scene: np.array([band_moments(s) for s in clips]) for scene, clips in logmels.items()}
    pooled = np.concatenate(list(moments.values()))
    centroid = {scene: ((m - pooled.mean(0)) / pooled.std(0)).mean(0) for scene, m in moments.items()}
    within = np.linalg.norm(centroid[forward] - centroid[backward])
    between = min(np.linalg.norm(centroid[forward] - centroid[c]) for c in SCENES if c not in (forward, backward))
    assert within < 0.4 * between, (within, between)

    ahead = np.array([statistic(s) for s in logmels[forward]])
    behind = np.array([statistic(s) for s in logmels[backward]])
    difference = ahead - behind
    t = difference.mean() / (difference.std() / np.sqrt(difference.size))
    assert ahead.mean() > 0 > behind.mean() and t > 3.0, (ahead.mean(), behind.mean(), t)


@pytest.mark.parametrize(("forward", "backward"), synth.REVERSED_PAIRS)
def test_reversed_pairs_share_band_moments_but_not_temporal_order(
    matched_logmels: dict[str, list[np.ndarray]], forward: str, backward: str
) -> None:
    assert_same_moments_other_order(matched_logmels, forward, backward, TEMPORAL_STATISTIC[forward])


# ------------------------------------------------------------------- the hard preset (asc.data.synth.conditions)

HARD = SynthSpec.preset("hard")
#: The hard preset scaled down to 200 clips: per scene 1 train location (3 segments, 1 on all devices) and 1 evaluate.
HARD_SMALL = dataclasses.replace(HARD, train_locations=1, evaluate_locations=1, segments_per_location=3,
                                 train_parallel=1)


@pytest.mark.parametrize("preset", ["hard", "cross"])
def test_hard_and_cross_plans_have_the_demo_train_size_in_fewer_locations_and_2160_evaluate_clips(preset: str) -> None:
    """The demo's 2,280 train clips in 3 locations per scene; 2,160 evaluate clips (0.05 points each) from 24 new
    locations per scene, one all-device segment each: a test split that can decide a point."""
    spec = SynthSpec.preset(preset)
    assert (spec.family, spec.conditions) == ({"hard": "a", "cross": "b"}[preset], HARD.conditions)
    assert dataclasses.replace(spec, family="a") == HARD  # the same sizes and conditions, another generator
    rows, demo = plan(spec), Counter(row.split for row in plan(SynthSpec.preset("demo")))
    splits = Counter(row.split for row in rows)
    assert (len(rows), splits["train"]) == (4800, demo["train"])
    assert (splits["train"], splits["evaluate"]) == (2280, 2160)
    assert len({row.clip.filename for row in rows}) == len(rows)
    locations = {s: Counter(r.clip.identifier for r in rows if r.split == s) for s in synth.SPLITS}
    assert not set(locations["train"]) & set(locations["evaluate"])
    assert set(locations["train"].values()) == {76} and set(locations["evaluate"].values()) == {9}
    for split, per_scene in (("train", 3), ("evaluate", 24)):
        scenes = Counter(identifier_scene[1] for identifier_scene in
                         {(r.clip.identifier, r.clip.scene) for r in rows if r.split == split})
        assert set(scenes) == set(SCENES) and set(scenes.values()) == {per_scene}
    devices = {s: Counter(r.clip.device for r in rows if r.split == s) for s in synth.SPLITS}
    assert dict(devices["evaluate"]) == dict.fromkeys(DEVICES, 240)
    assert not set(UNSEEN_DEVICES) & set(devices["train"]) and devices["train"]["a"] == 10 * 3 * 56
    scaled = spec.scaled(1 / 3)
    assert (scaled.train_locations, scaled.evaluate_locations, scaled.conditions) == (1, 8, HARD.conditions)
    assert scaled.family == spec.family
    with pytest.raises(AscError):
        dataclasses.replace(spec, evaluate_segments=57)
    with pytest.raises(AscError, match="family"):
        dataclasses.replace(spec, family="c")


def test_hard_dataset_layout_and_same_bytes_for_any_worker_count(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    counts = synthesize(first, HARD_SMALL, seed=5, workers=1, progress=False)
    synthesize(second, HARD_SMALL, seed=5, workers=2, progress=False)
    assert counts == {"meta": 200, "train": 80, "evaluate": 90, "test": 90}
    assert digests(first) == digests(second)
    train, evaluate = fold_names(first, "train"), fold_names(first, "evaluate")
    assert {parse_clip_name(n).device for n in evaluate} == set(DEVICES)
    assert {parse_clip_name(n).device for n in train} == set(DEVICES) - set(UNSEEN_DEVICES)
    assert not {parse_clip_name(n).identifier for n in train} & {parse_clip_name(n).identifier for n in evaluate}
    marker = json.loads((first / synth.MARKER_FILE).read_text(encoding="utf-8"))
    assert marker["spec"]["conditions"] == dataclasses.asdict(HARD.conditions)
    assert "family" not in marker["spec"]  # family "a", the default: the marker as before family "b" existed


def test_plain_presets_are_unchanged(tiny: tuple[Path, dict[str, int]]) -> None:
    """The fields added for the hard preset leave the plain presets' marker file and random draws as they were."""
    spec = json.loads((tiny[0] / synth.MARKER_FILE).read_text(encoding="utf-8"))["spec"]
    assert list(spec) == ["train_locations", "evaluate_locations", "segments_per_location", "slices_per_segment",
                          "train_parallel", "evaluate_parallel", "sizes"]
    out = synth.render_recording(0, ClipName("tram", "lisbon", "1000", "40000", "3", "a"), DEVICES)
    rms_and_sample = {name: (np.sqrt(np.mean(x**2)), x[1000]) for name, x in out.items()}
    expected = {"a": (0.0268358322570892, 0.0367304847177858), "b": (0.0058093163866213, 0.0071843675131346),
                "c": (0.0192790489820581, 0.0193533894023773), "s1": (0.0369289468233751, 0.0201826173468788),
                "s4": (0.0211221581299424, 0.0327922460599002), "s6": (0.0326388233867676, 0.0051724863672824)}
    for name, values in expected.items():
        np.testing.assert_allclose(rms_and_sample[name], values, rtol=1e-9)


def location_to_scene_ratio(conditions: synth.Conditions, n_locations: int = 6,
                            render: Callable[..., dict[str, np.ndarray]] = synth.render_recording) -> float:
    """Mean log-mel distance between locations of one scene over that between scenes at one location.

    Every scene is rendered at the same location identities (the same per-location draws), device a.
    """
    spectra = np.array([[logmel(render(0, ClipName(scene, "lisbon", str(1000 + k), str(40000 + k), "0", "a"), ["a"],
                                       conditions)["a"]).mean(axis=1)
                         for k in range(n_locations)] for scene in SCENES])
    n = len(SCENES)
    across_scenes = [np.linalg.norm(spectra[i, k] - spectra[j, k]) for k in range(n_locations)
                     for i in range(n) for j in range(i)]
    across_locations = [np.linalg.norm(spectra[i, k] - spectra[i, m]) for i in range(n)
                        for k in range(n_locations) for m in range(k)]
    return float(np.mean(across_locations) / np.mean(across_scenes))


def test_hard_locations_differ_more_than_scenes() -> None:
    plain, hard = location_to_scene_ratio(synth.Conditions()), location_to_scene_ratio(HARD.conditions)
    assert plain < 0.8 and hard > 1.0 and hard > 1.5 * plain, (plain, hard)


@pytest.mark.parametrize(("forward", "backward"), synth.REVERSED_PAIRS)
def test_hard_conditions_keep_the_reversed_pairs(forward: str, backward: str) -> None:
    """Ambience, colouring and intruding scene do not depend on the scene within a pair: only the events reverse."""
    reversed_events = 0
    for k in range(6):
        ids = ("lisbon", str(1000 + k), str(40000 + k), str(k), "a")
        (one, place, colour), (two, place_two, colour_two) = (
            scene_field(0, ClipName(scene, *ids), HARD.conditions) for scene in (forward, backward))
        difference = one - two
        np.testing.assert_allclose(difference[::-1], -difference, atol=1e-9)
        assert place == place_two and np.array_equal(colour, colour_two)
        reversed_events += np.abs(difference).max() > 1e-3
    assert reversed_events >= 3


def test_synth_writes_impulse_responses_of_other_microphones(tiny: tuple[Path, dict[str, int]]) -> None:
    """``impulse_responses/`` holds 12 responses (the built-in MicIRP) of microphones that recorded no clip;
    through the mel filterbank they colour the bands by several dB, each differently."""
    import soundfile

    from asc.data.features import FeatureSettings
    from asc.training.augmentations import load_impulse_responses, mel_log_gains

    folder = tiny[0] / synth.IMPULSE_RESPONSE_DIR
    names, responses = load_impulse_responses(folder, 44_100)
    assert names == [f"mic{k:02d}.wav" for k in range(1, 13)]
    assert soundfile.info(str(folder / names[0])).subtype == "PCM_24"
    assert all(r.shape == (2048,) and np.isclose(np.abs(r).max(), 1.0, atol=1e-6) for r in responses)
    assert not {name.removesuffix(".wav") for name in names} & set(DEVICES)
    gains = mel_log_gains(responses, FeatureSettings()).numpy()  # (12, 256) in nat
    inner = gains[:, 20:200]  # inside every microphone's pass band
    shape = inner - inner.mean(axis=1, keepdims=True)
    assert 0.3 < np.median(np.abs(shape)) < 3.0  # colouring of a few dB (1 nat = 4.3 dB in power)
    assert np.abs(shape[0] - shape[1]).max() > 0.5


# ------------------------------------------------------------------- the cross preset (asc.data.synth.cross)

CROSS = SynthSpec.preset("cross")
#: The cross preset scaled down like HARD_SMALL (200 clips).
CROSS_SMALL = dataclasses.replace(HARD_SMALL, family="b")


def read_impulse_responses(root: Path) -> dict[str, np.ndarray]:
    """The written impulse responses by microphone name."""
    return {path.stem: soundfile.read(str(path))[0] for path in sorted((root / synth.IMPULSE_RESPONSE_DIR).iterdir())}


def test_cross_dataset_layout_and_same_bytes_for_any_worker_count(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    counts = synthesize(first, CROSS_SMALL, seed=5, workers=1, progress=False)
    synthesize(second, CROSS_SMALL, seed=5, workers=2, progress=False)
    assert counts == {"meta": 200, "train": 80, "evaluate": 90, "test": 90}
    same = digests(first)
    assert same == digests(second) and len(same) == 200 + 12 + 4 + 1
    train, evaluate = fold_names(first, "train"), fold_names(first, "evaluate")
    assert {parse_clip_name(n).device for n in evaluate} == set(DEVICES)
    assert {parse_clip_name(n).device for n in train} == set(DEVICES) - set(UNSEEN_DEVICES)
    assert not {parse_clip_name(n).identifier for n in train} & {parse_clip_name(n).identifier for n in evaluate}
    marker = json.loads((first / synth.MARKER_FILE).read_text(encoding="utf-8"))
    assert marker["spec"]["family"] == "b" and marker["spec"]["conditions"] == dataclasses.asdict(HARD.conditions)
    hard = tmp_path / "hard"  # the same plan and seed from family "a": the same names, other sounds
    synthesize(hard, HARD_SMALL, seed=5, workers=2, progress=False)
    family_a = digests(hard)
    assert read_tsv(hard / META_FILE) == read_tsv(first / META_FILE)
    wavs = [name for name in same if name.startswith("audio/")]
    assert len(wavs) == 200 and not any(same[name] == family_a[name] for name in wavs)
    irs = [name for name in same if name.startswith(synth.IMPULSE_RESPONSE_DIR)]
    assert len(irs) == 12 and all(same[name] == family_a[name] for name in irs)  # see the next test


def test_cross_augmentation_microphones_are_family_a_and_its_devices_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The impulse responses written for the augmentation are family "a"'s microphones (exactly
    ``devices.impulse_response``), while family "b" renders every device, room and scene without any of family
    "a"'s device, condition or scene generators (each replaced by a tripwire, and ``devices._device``'s cache
    records no call)."""
    from asc.data.synth import conditions, cross, devices, scenes

    root = tmp_path / "cross"
    synthesize(root, dataclasses.replace(CROSS_SMALL, train_locations=1, evaluate_locations=1), seed=7, progress=False)
    written = read_impulse_responses(root)
    assert list(written) == list(devices.IMPULSE_RESPONSE_DEVICES)
    for name, response in written.items():
        np.testing.assert_allclose(response, devices.impulse_response(7, name, CROSS.conditions), atol=2e-7)

    def tripwire(*args: object, **kwargs: object) -> None:
        raise AssertionError("family b used a family-a generator")

    family_a_device = devices._device
    family_a_device.cache_clear()
    cross.devices._mic.cache_clear()  # family b's own caches too, or devices drawn while writing would be reused
    cross.rooms._room.cache_clear()
    for module, name in ((devices, "_device"), (devices, "_enclosure"), (devices, "impulse_response"),
                         (devices, "render_recording"), (conditions, "scene_field"), (conditions, "_location"),
                         (conditions, "_ambience"), (conditions, "_smooth_curve"), (scenes, "_place"),
                         (scenes, "_scene_signal")):
        monkeypatch.setattr(module, name, tripwire)
    for scene in SCENES:
        monkeypatch.setitem(scenes.RECIPES, scene, (tripwire, False))
    for k, scene in enumerate(SCENES):  # intruders included: their scene is drawn from the family-b recipes
        out = cross.render_recording(8, ClipName(scene, "paris", str(1000 + k), str(40000 + k), "0", "a"), DEVICES,
                                     dataclasses.replace(CROSS.conditions, intruder_fraction=1.0))
        assert set(out) == set(DEVICES) and all(np.isfinite(x).all() and x.std() > 0 for x in out.values())
    info = family_a_device.cache_info()
    assert info.hits + info.misses == 0


@pytest.fixture(scope="module")
def cross_logmels() -> dict[str, list[np.ndarray]]:
    """Device-a log-mels of 36 matched slice identities per scene, family "b" under the cross preset's conditions.

    36 rather than 24: the knock pulses of bus / street_traffic make a clip's band moments noisier than family "a"'s."""
    from asc.data.synth import cross

    names = [("lisbon", str(1000 + i), str(40000 + i), str(i % 10)) for i in range(36)]
    return {scene: [logmel(cross.render_recording(0, ClipName(scene, *n, "a"), ["a"], CROSS.conditions)["a"])
                    for n in names] for scene in SCENES}


#: How family "b" builds each pair's forward scene (see ``cross.scenes``): squeals glide down; knock builds slowly
#: and drops at once; syllables and footsteps start sharply and decay.
CROSS_TEMPORAL_STATISTIC: dict[str, Callable[[np.ndarray], float]] = {
    "metro": lambda s: -frequency_drift(s),
    "bus": lambda s: -onset_skewness(s),
    "airport": onset_skewness,
    "street_pedestrian": onset_skewness,
}


@pytest.mark.parametrize(("forward", "backward"), synth.REVERSED_PAIRS)
def test_cross_reversed_pairs_share_band_moments_but_not_temporal_order(
    cross_logmels: dict[str, list[np.ndarray]], forward: str, backward: str
) -> None:
    assert_same_moments_other_order(cross_logmels, forward, backward, CROSS_TEMPORAL_STATISTIC[forward])


@pytest.mark.parametrize(("forward", "backward"), synth.REVERSED_PAIRS)
def test_cross_rooms_keep_the_reversed_pairs(forward: str, backward: str) -> None:
    """Room, ambience, colouring and intruder do not depend on the scene within a pair: the sound fields differ by
    one reverberated event layer played forwards and backwards."""
    from asc.data.synth.cross.rooms import room_field

    reversed_events = 0
    for k in range(6):
        ids = ("lisbon", str(1000 + k), str(40000 + k), str(k), "a")
        (one, site), (two, site_two) = (room_field(0, ClipName(scene, *ids), CROSS.conditions)
                                        for scene in (forward, backward))
        difference = np.fft.irfft(one - two, n=synth.N_SAMPLES)
        np.testing.assert_allclose(difference[::-1], -difference, atol=1e-9)
        assert site == site_two
        reversed_events += np.abs(difference).max() > 1e-3
    assert reversed_events >= 3


def test_cross_locations_differ_more_than_scenes() -> None:
    from asc.data.synth import cross

    plain, hard = (location_to_scene_ratio(conditions, render=cross.render_recording)
                   for conditions in (synth.Conditions(), CROSS.conditions))
    assert hard > 1.0 and hard > 1.25 * plain, (plain, hard)
