"""The built-in dataset: synthetic acoustic scenes in exactly the TAU Urban Acoustic Scenes 2022 Mobile layout.

The real development set cannot be downloaded here, so ``asc synth`` writes a stand-in that every other
module reads through the same code path as the real one: ``meta.csv``, ``evaluation_setup/fold1_*.csv``
and ``audio/<scene>-<city>-<location>-<segment>-<slice>-<device>.wav`` (44.1 kHz, mono, 24-bit, 1 s).

Recording structure, as in the real set
    Every scene has *locations* (identifier ``<city>-<location>``); a location has *segments* (10-s
    recordings) cut into 1-s *slices*. Every segment exists for device ``a``; a few "parallel" segments
    per location also exist for the real devices ``b`` and ``c`` (recorded at the same time: the same
    sound field, their own frequency response and self-noise) and for ``s1``-``s6``, which are simulated
    FROM DEVICE A'S SIGNAL (per-device impulse and frequency response, dynamic range compression, added
    noise). Whole locations belong to one split. In train locations ``s4``-``s6`` clips exist but are in
    no fold (they are the unseen devices); in evaluate locations only the parallel segments are listed,
    on all nine devices, and the remaining device-a segments are in ``meta.csv`` only, which keeps the
    evaluate split balanced over devices. That is why ``meta.csv`` has more rows than train + evaluate,
    exactly as in the real set. The ``"full"`` preset trims a few planned clips to hit the official sizes.

Why time-reversed scene pairs
    The report's linear model sees only global moments over time of each log-mel band (mean, variance,
    skewness, kurtosis, 5th moment), which are invariant to permuting the frames of a band and hence to
    reversing time. Four pairs of scenes share one generator and differ only in that the event layer of
    the second scene is played backwards: an up-sweeping motor whine with a sharp start vs. the reversed
    down-sweep that swells and stops (metro / tram), an engine whose revs rise slowly and drop abruptly
    vs. the reverse (bus / street_traffic), bell chimes with sharp attack and slow decay vs. reversed
    swells (airport / shopping_mall), percussive impacts vs. their reversal (street_pedestrian /
    public_square). Within a pair every per-band moment has the same distribution, so the moments model
    can at best tell the pair; a time-frequency CNN sees the order. The pairs and the two remaining
    scenes (park: high bird-like FM chirps over wind; metro_station: hall noise, ventilation hum and
    warning beeps) differ in spectral envelope, which the moments model does see. With per-location
    level, event rate, pitch and tilt, per-clip event times and levels, clips without events and device
    colouring, the moments model lands around half right and a CNN clearly above it (on the demo preset,
    seed 0: logistic regression on the 5 x 256 moments 51 % on evaluate, a 4-layer CNN on the log-mel 93 %).
    A slice's random draws do not depend on its scene, so one clip identity rendered as both scenes of a
    pair gives the same background with the event layer played forwards and backwards (the tests use this).

Determinism
    Every random draw comes from a numpy generator seeded by ``SeedSequence([seed, sha256(key)])`` for a
    stable key (location, segment, slice or file name), never from Python's ``hash()`` nor from the order
    of work, so a (spec, seed) gives byte-identical files for any number of workers.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from tqdm.auto import tqdm

from asc.data.layout import (
    AUDIO_DIR,
    CLIP_SECONDS,
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
)
from asc.errors import AscError

CITIES: tuple[str, ...] = (
    "barcelona", "helsinki", "lisbon", "london", "lyon", "milan", "paris", "prague", "stockholm", "vienna",
)
#: Written first into a dataset root; lets ``synthesize`` overwrite its own output but nothing else.
MARKER_FILE = ".asc_synth.json"
GENERATOR_VERSION = 1
_GENERATOR = "asc.data.synth"
SPLITS: tuple[str, ...] = ("train", "evaluate")
#: Scene pairs whose event layers are time reversals of each other (same per-band moments over time).
REVERSED_PAIRS: tuple[tuple[str, str], ...] = (
    ("metro", "tram"),
    ("bus", "street_traffic"),
    ("airport", "shopping_mall"),
    ("street_pedestrian", "public_square"),
)
N_SAMPLES = round(SAMPLE_RATE * CLIP_SECONDS)
FIRST_LOCATION_ID = 1000
FIRST_SEGMENT_ID = 40000
MAX_SLICES = 10
_SIMULATED = DEVICE_GROUPS["seen_simulated"] + DEVICE_GROUPS["unseen_simulated"]


# ----------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class SynthSpec:
    """How many clips to plan; the defaults are the ``"demo"`` preset.

    Per scene there are ``train_locations`` + ``evaluate_locations`` locations, each with
    ``segments_per_location`` device-a segments of ``slices_per_segment`` 1-s slices. In a train
    location ``train_parallel`` segments are also on b, c and s1-s6; in an evaluate location
    ``evaluate_parallel`` segments are on all devices (only those are in the evaluate split).
    ``sizes`` = (meta, train, evaluate) clip counts to trim the plan to, or None.
    """

    train_locations: int = 6
    evaluate_locations: int = 3
    segments_per_location: int = 14
    slices_per_segment: int = 2
    train_parallel: int = 1
    evaluate_parallel: int = 1
    sizes: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        counts = dataclasses.astuple(self)[:-1]
        if any(not isinstance(n, int) or n < 1 for n in counts):
            raise AscError(f"synthetic dataset spec needs positive integer counts, got {self}")
        if self.slices_per_segment > MAX_SLICES:
            raise AscError(f"slices_per_segment={self.slices_per_segment}: a segment has at most {MAX_SLICES}")
        if max(self.train_parallel, self.evaluate_parallel) > self.segments_per_location:
            raise AscError(f"parallel segments exceed segments_per_location={self.segments_per_location}")

    @classmethod
    def preset(cls, name: str) -> SynthSpec:
        """``"tiny"`` (tests, 660 clips), ``"demo"`` (3,960 clips) or ``"full"`` (the official sizes)."""
        if name not in PRESETS:
            raise AscError(f"unknown synthetic dataset size {name!r} (expected one of {', '.join(PRESETS)})")
        return PRESETS[name]

    def scaled(self, factor: float) -> SynthSpec:
        """The spec with ``factor`` times the locations per scene and split (at least 1), untrimmed."""
        if not factor > 0:
            raise AscError(f"scale factor must be positive, got {factor}")
        return dataclasses.replace(
            self,
            train_locations=max(1, int(self.train_locations * factor + 0.5)),
            evaluate_locations=max(1, int(self.evaluate_locations * factor + 0.5)),
            sizes=None,
        )


PRESETS: dict[str, SynthSpec] = {
    "tiny": SynthSpec(train_locations=2, evaluate_locations=1, segments_per_location=3, slices_per_segment=2),
    "demo": SynthSpec(),
    # 25 x 41 device-a segments per scene in train (73 % of train, as in the real set), 3 parallel ones per
    # location; 11 evaluate locations with 3 parallel segments: 234,000 planned clips trimmed to the official.
    "full": SynthSpec(
        train_locations=25,
        evaluate_locations=11,
        segments_per_location=41,
        slices_per_segment=10,
        train_parallel=3,
        evaluate_parallel=3,
        sizes=(OFFICIAL_SIZES["meta"], OFFICIAL_SIZES["train"], OFFICIAL_SIZES["evaluate"]),
    ),
}


@dataclass(frozen=True)
class SynthRow:
    """One planned clip and its split: ``"train"``, ``"evaluate"`` or None (listed in meta.csv only)."""

    clip: ClipName
    split: str | None


def _digest_words(key: str) -> list[int]:
    """Four 32-bit words of sha256(key): a hash that is the same in every process and Python version."""
    digest = hashlib.sha256(key.encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def _rng(seed: int, key: str) -> np.random.Generator:
    """The generator of one named thing (location, slice, file) of the dataset of ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([seed, *_digest_words(key)]))


def _check_seed(seed: int) -> None:
    if not isinstance(seed, int) or seed < 0:
        raise AscError(f"seed must be a non-negative integer, got {seed!r}")


def _split_of(location_split: str, device: str, parallel: bool) -> str | None:
    """Fold of a clip: unseen devices never train; evaluate lists only the all-device segments."""
    if location_split == "train":
        return None if device in UNSEEN_DEVICES else "train"
    return "evaluate" if parallel else None


def _scene_rows(spec: SynthSpec, seed: int, scene: str, location_id: int, segment_id: int) -> list[SynthRow]:
    """The rows of one scene, numbering locations and segments from the given ids."""
    rng = _rng(seed, f"plan/{scene}")
    n_locations = spec.train_locations + spec.evaluate_locations
    first_city = int(rng.integers(len(CITIES)))
    evaluate = set(rng.permutation(n_locations)[: spec.evaluate_locations].tolist())
    rows = []
    for k in range(n_locations):
        city = CITIES[(first_city + k) % len(CITIES)]
        location_split = "evaluate" if k in evaluate else "train"
        n_parallel = spec.evaluate_parallel if k in evaluate else spec.train_parallel
        parallel = set(rng.choice(spec.segments_per_location, n_parallel, replace=False).tolist())
        for j in range(spec.segments_per_location):
            devices = DEVICES if j in parallel else DEVICES[:1]
            for slice_ in range(spec.slices_per_segment):
                for device in devices:
                    clip = ClipName(scene, city, str(location_id + k), str(segment_id + j), str(slice_), device)
                    rows.append(SynthRow(clip, _split_of(location_split, device, j in parallel)))
        segment_id += spec.segments_per_location
    return rows


def _trim_split(rows: Sequence[SynthRow], split: str | None, target: int, seed: int) -> set[int]:
    """Indices of rows of ``split`` to drop so that ``target`` remain.

    Whole (segment, device) recordings go first, device a before the others outside evaluate (it is the
    majority there), in an order fixed by a stable hash; a remainder drops the highest slices of one more.
    """
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        if row.split == split:
            c = row.clip
            groups.setdefault(f"{c.identifier}-{c.segment}-{c.device}", []).append(i)
    excess = sum(map(len, groups.values())) - target
    if excess < 0:
        raise AscError(f"synthetic dataset spec plans fewer {split or 'meta-only'} clips than {target}")

    def order(key: str) -> tuple[bool, bytes]:
        prefer = split != "evaluate" and rows[groups[key][0]].clip.device == "a"
        return (not prefer, hashlib.sha256(f"{seed}/trim/{key}".encode()).digest())

    dropped: set[int] = set()
    for key in sorted(groups, key=order):
        if excess <= 0:
            break
        members = sorted(groups[key], key=lambda i: int(rows[i].clip.slice), reverse=True)[:excess]
        dropped.update(members)
        excess -= len(members)
    return dropped


def _trim(rows: list[SynthRow], sizes: tuple[int, int, int], seed: int) -> list[SynthRow]:
    """Drop planned clips until the (meta, train, evaluate) counts are exactly ``sizes``."""
    meta, train, evaluate = sizes
    dropped = _trim_split(rows, "train", train, seed) | _trim_split(rows, "evaluate", evaluate, seed)
    dropped |= _trim_split(rows, None, meta - train - evaluate, seed)
    return [row for i, row in enumerate(rows) if i not in dropped]


def plan(spec: SynthSpec, seed: int = 0) -> list[SynthRow]:
    """Every clip of the dataset with its split, sorted by file name; no audio is made (cheap)."""
    _check_seed(seed)
    rows: list[SynthRow] = []
    n_locations = spec.train_locations + spec.evaluate_locations
    for index, scene in enumerate(SCENES):
        location_id = FIRST_LOCATION_ID + index * n_locations
        segment_id = FIRST_SEGMENT_ID + index * n_locations * spec.segments_per_location
        rows.extend(_scene_rows(spec, seed, scene, location_id, segment_id))
    if spec.sizes is not None:
        rows = _trim(rows, spec.sizes, seed)
    return sorted(rows, key=lambda row: row.clip.filename)


# ------------------------------------------------------------------------------------------ synthesis

_FREQS = np.fft.rfftfreq(N_SAMPLES, 1.0 / SAMPLE_RATE)
_OCTAVES = np.log2(np.maximum(_FREQS, 10.0) / 1000.0)  # octaves relative to 1 kHz


@dataclass(frozen=True)
class _Place:
    """Random parameters of one location, shared by all its segments, slices and devices."""

    level_db: float  # background level in dBFS
    snr_db: float  # events relative to the background
    rate: float  # event-rate multiplier
    pitch: float  # frequency multiplier of tonal events
    tempo: float  # period multiplier of rhythmic events
    tilt_db: float  # spectral tilt of the place in dB per octave


def _place(seed: int, clip: ClipName) -> _Place:
    """The location's parameters, drawn from its identifier alone."""
    rng = _rng(seed, f"location/{clip.identifier}")
    return _Place(
        level_db=float(rng.uniform(-38.0, -26.0)),
        snr_db=float(rng.uniform(-6.0, 4.0)),
        rate=float(rng.uniform(0.5, 1.5)),
        pitch=float(2.0 ** rng.uniform(-0.3, 0.3)),
        tempo=float(rng.uniform(0.8, 1.25)),
        tilt_db=float(rng.uniform(-1.5, 1.5)),
    )


def _db_curve(points: Sequence[tuple[float, float]]) -> np.ndarray:
    """Piecewise-linear dB curve over log frequency, given (Hz, dB) corner points."""
    hz, db = zip(*points, strict=True)
    return np.interp(_OCTAVES, np.log2(np.asarray(hz) / 1000.0), np.asarray(db))


@functools.lru_cache(maxsize=32)
def _gain(points: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Linear magnitude response of a dB curve (cached: each recipe uses a few fixed curves)."""
    return 10.0 ** (_db_curve(points) / 20.0)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-20))


def _shaped_noise(rng: np.random.Generator, gain: np.ndarray) -> np.ndarray:
    """Unit-RMS Gaussian noise with magnitude spectrum ``gain``, drawn directly in the frequency domain."""
    spectrum = (rng.standard_normal(gain.size) + 1j * rng.standard_normal(gain.size)) * gain
    x = np.fft.irfft(spectrum, n=N_SAMPLES)
    return x / _rms(x)


def _modulation(rng: np.random.Generator, cutoff_hz: float, depth: float) -> np.ndarray:
    """Slow positive amplitude modulation (log-normal, time-symmetric in distribution), mean about 1."""
    bins = int(4 * cutoff_hz) + 1  # the Gaussian gain is negligible above; skip drawing those bins
    gain = np.exp(-np.square(_FREQS[:bins] / cutoff_hz))
    spectrum = np.zeros(_FREQS.size, dtype=np.complex128)
    spectrum[:bins] = (rng.standard_normal(bins) + 1j * rng.standard_normal(bins)) * gain
    smooth = np.fft.irfft(spectrum, n=N_SAMPLES)
    smooth /= _rms(smooth)
    envelope = np.exp(depth * smooth)
    return envelope / np.mean(envelope)


def _add(out: np.ndarray, event: np.ndarray, start: int) -> None:
    """Add ``event`` at sample ``start`` (may be negative), cutting what falls outside the clip."""
    lo, hi = max(start, 0), min(start + event.size, out.size)
    if hi > lo:
        out[lo:hi] += event[lo - start : hi - start]


def _harmonics(phase: np.ndarray, amplitudes: Sequence[float]) -> np.ndarray:
    """sum_k a_k sin(k phase) by the Chebyshev recurrence: one sin and one cos however many harmonics."""
    twice_cos = 2.0 * np.cos(phase)
    previous, current = np.zeros_like(phase), np.sin(phase)
    out = amplitudes[0] * current
    for amplitude in amplitudes[1:]:
        previous, current = current, twice_cos * current - previous
        out += amplitude * current
    return out


def _event_gains(rng: np.random.Generator, place: _Place, n: int, offset_db: float = 0.0) -> np.ndarray:
    """Peak amplitudes of ``n`` events around the location's SNR (plus a per-recipe offset), 4 dB spread."""
    return 10.0 ** ((place.snr_db + offset_db + rng.normal(0.0, 4.0, n)) / 20.0)


def _onsets(rng: np.random.Generator, rate: float, longest: float) -> np.ndarray:
    """Poisson event onsets in seconds, in [-longest, 1) so that events may start before the clip."""
    n = rng.poisson(rate * (CLIP_SECONDS + longest))
    return rng.uniform(-longest, CLIP_SECONDS, n)


def _decay_envelope(n: int, attack_s: float, tau_s: float) -> np.ndarray:
    """Sharp linear attack then exponential decay: the time-asymmetric shape of an impact."""
    t = np.arange(n) / SAMPLE_RATE
    return np.minimum(t / attack_s, 1.0) * np.exp(-np.maximum(t - attack_s, 0.0) / tau_s)


def _whine(rng: np.random.Generator, place: _Place) -> tuple[np.ndarray, np.ndarray]:
    """Metro / tram: low rumble, plus motor whines sweeping up an octave with a sharp start and decay."""
    background = _shaped_noise(rng, _gain(((20, 0), (80, 3), (250, -6), (1000, -22), (4000, -38), (16000, -60))))
    background *= _modulation(rng, 3.0, 0.3)
    events = np.zeros(N_SAMPLES)
    onsets = _onsets(rng, 1.8 * place.rate, 0.7)
    for onset, gain in zip(onsets, _event_gains(rng, place, onsets.size), strict=True):
        duration = rng.uniform(0.35, 0.7)
        n = int(duration * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        frequency = 330.0 * place.pitch * 2.0 ** (rng.uniform(-0.2, 0.2) + rng.uniform(0.7, 1.2) * t / duration)
        phase = 2.0 * np.pi * np.cumsum(frequency) / SAMPLE_RATE
        envelope = _decay_envelope(n, 0.01, duration / 3.0)
        _add(events, gain * envelope * _harmonics(phase, (1.0, 0.5, 0.35, 0.2)), int(onset * SAMPLE_RATE))
    return background, events


def _engine(rng: np.random.Generator, place: _Place) -> tuple[np.ndarray, np.ndarray]:
    """Bus / street traffic: broadband traffic noise, plus an engine whose revs rise slowly and drop at once."""
    background = _shaped_noise(rng, _gain(((20, -6), (100, 0), (400, -4), (1500, -12), (5000, -24), (16000, -45))))
    background *= _modulation(rng, 2.0, 0.25)
    t = np.arange(N_SAMPLES) / SAMPLE_RATE
    period = 0.5 * place.tempo * rng.uniform(0.85, 1.15)
    cycle = np.mod(t / period + rng.uniform(), 1.0)
    if rng.uniform() < 0.15:  # idling: steady revs, the same forwards and backwards
        cycle = np.full(N_SAMPLES, 0.5)
    frequency = 60.0 * place.pitch * 2.0 ** (0.9 * cycle)
    phase = 2.0 * np.pi * np.cumsum(frequency) / SAMPLE_RATE + rng.uniform(0, 2 * np.pi)
    gain = _event_gains(rng, place, 1, 5.0)[0]
    events = gain * (0.2 + 0.8 * cycle) * _harmonics(phase, (1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1))
    return background, events


_STRIKE = int(0.02 * SAMPLE_RATE)


def _chime(rng: np.random.Generator, place: _Place) -> tuple[np.ndarray, np.ndarray]:
    """Airport / shopping mall: babble, plus bell chimes with a sharp attack and a long decay."""
    background = _shaped_noise(rng, _gain(((60, -30), (150, -6), (400, 0), (1000, -2), (2500, -12), (6000, -28),
                                           (16000, -50))))
    background *= _modulation(rng, 5.0, 0.35)
    events = np.zeros(N_SAMPLES)
    onsets = _onsets(rng, 1.5 * place.rate, 1.0)
    for onset, gain in zip(onsets, _event_gains(rng, place, onsets.size, 8.0), strict=True):
        tau = rng.uniform(0.2, 0.45)
        n = int(min(5.0 * tau, 1.0) * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        base = 700.0 * place.pitch * 2.0 ** rng.uniform(-0.4, 0.4)
        partials = sum(a * np.sin(2 * np.pi * base * r * t) for r, a in ((1.0, 1.0), (2.76, 0.5), (5.4, 0.25)))
        strike = np.zeros(n)  # the broadband click of the striker, at the sharp end of the ring
        strike[:_STRIKE] = rng.standard_normal(_STRIKE) * np.exp(-np.arange(_STRIKE) / (0.004 * SAMPLE_RATE))
        _add(events, gain * (_decay_envelope(n, 0.003, tau) * partials + strike), int(onset * SAMPLE_RATE))
    return background, events


def _impacts(rng: np.random.Generator, place: _Place) -> tuple[np.ndarray, np.ndarray]:
    """Street pedestrian / public square: street noise, plus a walking rhythm of reverberant impacts."""
    background = _shaped_noise(rng, _gain(((30, -10), (150, -3), (600, 0), (2000, -6), (6000, -18), (16000, -40))))
    background *= _modulation(rng, 2.0, 0.2)
    carrier = _shaped_noise(rng, _gain(((100, -30), (400, -6), (800, 0), (2500, 0), (6000, -15), (16000, -40))))
    envelope = np.zeros(N_SAMPLES)
    if rng.uniform() < 0.9:  # sometimes nobody walks by
        period = 0.45 * place.tempo * rng.uniform(0.85, 1.15)
        onsets = np.arange(rng.uniform(-1.0, -1.0 + period), CLIP_SECONDS, period)
        onsets += rng.normal(0.0, 0.04, onsets.size)
        for onset, gain in zip(onsets, _event_gains(rng, place, onsets.size, 4.0), strict=True):
            _add(envelope, gain * _decay_envelope(int(0.6 * SAMPLE_RATE), 0.002, rng.uniform(0.1, 0.2)),
                 int(onset * SAMPLE_RATE))
    return background, carrier * envelope


def _birds(rng: np.random.Generator, place: _Place) -> tuple[np.ndarray, np.ndarray]:
    """Park: quiet wind and distant traffic, plus high, short FM chirps in both directions."""
    background = _shaped_noise(rng, _gain(((20, 0), (100, -6), (500, -20), (2000, -30), (8000, -45), (16000, -55))))
    background *= _modulation(rng, 1.5, 0.4)
    events = np.zeros(N_SAMPLES)
    onsets = _onsets(rng, 4.0 * place.rate, 0.15)
    for onset, gain in zip(onsets, _event_gains(rng, place, onsets.size), strict=True):
        n = int(rng.uniform(0.04, 0.15) * SAMPLE_RATE)
        sweep = rng.choice((-1.0, 1.0)) * rng.uniform(0.3, 1.0)
        frequency = 3500.0 * place.pitch * 2.0 ** (rng.uniform(-0.5, 0.5) + sweep * np.linspace(0.0, 1.0, n))
        phase = 2.0 * np.pi * np.cumsum(frequency) / SAMPLE_RATE
        _add(events, gain * np.hanning(n) * _harmonics(phase, (1.0, 0.15)), int(onset * SAMPLE_RATE))
    return background, events


def _beeps(rng: np.random.Generator, place: _Place) -> tuple[np.ndarray, np.ndarray]:
    """Metro station: reverberant hall noise with ventilation hum, plus trains of warning beeps."""
    background = _shaped_noise(rng, _gain(((30, -8), (120, 0), (500, -2), (1500, -10), (4000, -22), (16000, -45))))
    t = np.arange(N_SAMPLES) / SAMPLE_RATE
    background += 0.4 * _harmonics(2 * np.pi * 100.0 * t + rng.uniform(0, 2 * np.pi), (1.0, 0.6, 0.4, 0.2))
    events = np.zeros(N_SAMPLES)
    beep = int(0.08 * SAMPLE_RATE)
    ramp = np.minimum(1.0, np.minimum(np.arange(beep), np.arange(beep)[::-1]) / (0.005 * SAMPLE_RATE))
    onsets = _onsets(rng, 0.9 * place.rate, 0.6)
    for onset, gain in zip(onsets, _event_gains(rng, place, onsets.size), strict=True):
        frequency = 2200.0 * place.pitch
        for k in range(int(rng.integers(2, 5))):
            tone = np.sin(2 * np.pi * frequency * np.arange(beep) / SAMPLE_RATE)
            _add(events, gain * ramp * tone, int((onset + 0.16 * k) * SAMPLE_RATE))
    return background, events


_Recipe = Callable[[np.random.Generator, _Place], tuple[np.ndarray, np.ndarray]]
#: Scene -> (generator, play the event layer backwards).
RECIPES: dict[str, tuple[_Recipe, bool]] = {
    "metro": (_whine, False),
    "tram": (_whine, True),
    "bus": (_engine, False),
    "street_traffic": (_engine, True),
    "airport": (_chime, False),
    "shopping_mall": (_chime, True),
    "street_pedestrian": (_impacts, False),
    "public_square": (_impacts, True),
    "park": (_birds, False),
    "metro_station": (_beeps, False),
}


def _scene_signal(seed: int, clip: ClipName) -> tuple[np.ndarray, _Place]:
    """The sound field of one slice (before any microphone), shared by all devices of that slice."""
    place = _place(seed, clip)
    recipe, reverse = RECIPES[clip.scene]
    rng = _rng(seed, f"slice/{clip.identifier}-{clip.segment}-{clip.slice}")  # no scene: see render_recording
    background, events = recipe(rng, place)
    if reverse:
        events = events[::-1]
    return background + events, place


@dataclass(frozen=True)
class _Device:
    """Fixed characteristics of one recording device in a dataset."""

    response: np.ndarray  # complex frequency response (includes the impulse response of simulated devices)
    gain_db: float
    noise_gain: np.ndarray  # self-noise magnitude spectrum, scaled so that unit-variance draws give the noise level
    threshold_db: float  # compressor threshold relative to the clip RMS (simulated devices)
    ratio: float  # compressor ratio; 1 for no compression


@functools.lru_cache(maxsize=64)
def _device(seed: int, name: str) -> _Device:
    """A smooth random frequency response, band limits, and for s1-s6 an impulse response and compressor."""
    rng = _rng(seed, f"device/{name}")
    strength = {"a": 0.3, "b": 1.0, "c": 1.0}.get(name, 1.5)
    db = rng.uniform(-1.5, 1.5) * strength * _OCTAVES
    for _ in range(4):
        centre, width = rng.uniform(-3.0, 3.5), rng.uniform(0.3, 1.0)
        db = db + rng.normal(0.0, 3.0 * strength) * np.exp(-0.5 * np.square((_OCTAVES - centre) / width))
    high_pass = 30.0 if name == "a" else rng.uniform(80.0, 300.0)
    low_pass = 20000.0 if name == "a" else rng.uniform(5000.0, 12000.0)
    ratio_high = np.square(_FREQS / high_pass)
    magnitude = 10.0 ** (db / 20.0) * ratio_high / np.sqrt(1.0 + np.square(ratio_high))
    magnitude /= np.sqrt(1.0 + (_FREQS / low_pass) ** 4)
    response = magnitude.astype(np.complex128)
    simulated = name in _SIMULATED
    if simulated:  # a short room/enclosure impulse response: direct path plus a decaying noise tail
        n = int(0.008 * SAMPLE_RATE)
        impulse = 0.1 * rng.standard_normal(n) * np.exp(-np.arange(n) / (0.0015 * SAMPLE_RATE))
        impulse[0] = 1.0
        response *= np.fft.rfft(impulse, n=N_SAMPLES)
    return _Device(
        response=response,
        gain_db=0.0 if name == "a" else float(rng.uniform(-4.0, 4.0)),
        noise_gain=_noise_gain(float(rng.uniform(-45.0, -30.0) if name != "a" else -60.0), rng.uniform(-3.0, 1.0)),
        threshold_db=float(rng.uniform(-3.0, 6.0)) if simulated else 0.0,
        ratio=float(rng.uniform(2.0, 6.0)) if simulated else 1.0,
    )


def _noise_gain(level_db: float, tilt_db: float) -> np.ndarray:
    """Magnitudes whose complex-Gaussian draws have an expected RMS of ``level_db`` (re 1) and the given slope."""
    gain = 10.0 ** (tilt_db * _OCTAVES / 20.0)
    expected_rms = np.sqrt(2.0 * 2.0 * np.sum(np.square(gain))) / N_SAMPLES  # E|z|^2 = 2 per bin
    return gain * (10.0 ** (level_db / 20.0) / expected_rms)


_HALF_WIDTH = int(0.005 * SAMPLE_RATE)
_WINDOW_LO = np.clip(np.arange(N_SAMPLES) - _HALF_WIDTH, 0, N_SAMPLES)
_WINDOW_HI = np.clip(np.arange(N_SAMPLES) + _HALF_WIDTH + 1, 0, N_SAMPLES)


def _compress(x: np.ndarray, threshold_db: float, ratio: float) -> np.ndarray:
    """Static compressor on a centred 10-ms RMS envelope (symmetric, so reversal pairs stay symmetric)."""
    if ratio <= 1.0:
        return x
    power = np.concatenate(([0.0], np.cumsum(np.square(x))))
    envelope = np.sqrt((power[_WINDOW_HI] - power[_WINDOW_LO]) / (_WINDOW_HI - _WINDOW_LO) + 1e-20)
    threshold = _rms(x) * 10.0 ** (threshold_db / 20.0)
    gain = np.minimum(1.0, (envelope / threshold) ** (1.0 / ratio - 1.0))
    y = x * gain
    return y * (_rms(x) / _rms(y))


def _spectrum_rms(spectrum: np.ndarray) -> float:
    """RMS of ``irfft(spectrum)`` by Parseval, without the inverse transform (nor BLAS, slow when cores are busy)."""
    power = 2.0 * np.sum(np.square(spectrum.view(np.float64))) - abs(spectrum[0]) ** 2 - abs(spectrum[-1]) ** 2
    return float(np.sqrt(max(power, 0.0)) / N_SAMPLES + 1e-20)


def _with_self_noise(spectrum: np.ndarray, device: _Device, rng: np.random.Generator) -> np.ndarray:
    """Add the device's own noise floor (relative to the clip's level, with its own slope) to a spectrum."""
    noise = rng.standard_normal(2 * spectrum.size).view(np.complex128) * device.noise_gain
    return spectrum + noise * _spectrum_rms(spectrum)


def _microphone(spectrum: np.ndarray, device: _Device, rng: np.random.Generator, scale: float) -> np.ndarray:
    """A real device (a, b, c) hearing the sound field: the spectrum of its clip (response, sensitivity, noise)."""
    return _with_self_noise(spectrum * device.response * (scale * 10.0 ** (device.gain_db / 20.0)), device, rng)


def _simulate(a_spectrum: np.ndarray, a_rms: float, device: _Device, rng: np.random.Generator) -> np.ndarray:
    """A simulated device (s1-s6) made from device a's clip: response with impulse response, noise, compression."""
    coloured = _with_self_noise(a_spectrum * device.response, device, rng)
    x = _compress(np.fft.irfft(coloured, n=N_SAMPLES), device.threshold_db, device.ratio)
    return x * (a_rms * 10.0 ** (device.gain_db / 20.0) / _rms(x))


def render_recording(seed: int, clip: ClipName, devices: Sequence[str]) -> dict[str, np.ndarray]:
    """The float64 waveforms of one slice on the given devices.

    a, b and c hear the same sound field (the background at the location's level, events on top);
    s1-s6 are made from a's clip (its spectrum), which is rendered even when a itself is not requested.
    A slice's random draws depend on its location, segment and slice but not on its scene, so the same
    identity rendered as the two scenes of a reversed pair differs only in the direction of the event layer.
    """
    field, place = _scene_signal(seed, clip)
    level_db = place.level_db + _rng(seed, f"segment/{clip.identifier}-{clip.segment}").normal(0.0, 1.5)
    scale = 10.0 ** (level_db / 20.0)
    spectrum = np.fft.rfft(field) * 10.0 ** (place.tilt_db * _OCTAVES / 20.0)

    def rng_of(name: str) -> np.random.Generator:
        return _rng(seed, f"clip/{dataclasses.replace(clip, device=name).filename}")

    a_spectrum = _microphone(spectrum, _device(seed, "a"), rng_of("a"), scale)
    a_rms = _spectrum_rms(a_spectrum)
    out: dict[str, np.ndarray] = {}
    for name in devices:
        if name == "a":
            out[name] = np.fft.irfft(a_spectrum, n=N_SAMPLES)
        elif name in _SIMULATED:
            out[name] = _simulate(a_spectrum, a_rms, _device(seed, name), rng_of(name))
        else:
            out[name] = np.fft.irfft(_microphone(spectrum, _device(seed, name), rng_of(name), scale), n=N_SAMPLES)
    return out


# -------------------------------------------------------------------------------------------- writing

#: One unit of work: (root, seed, a clip name of the slice, the devices of that slice to write).
_Job = tuple[str, int, ClipName, tuple[str, ...]]
_PEAK = 1.0 - 2.0**-23  # largest 24-bit sample


def _jobs(root: Path, seed: int, rows: Sequence[SynthRow]) -> list[_Job]:
    """Group planned clips by slice: the devices of a slice share one sound field and device a's signal."""
    slices: dict[tuple[str, ...], list[str]] = {}
    names: dict[tuple[str, ...], ClipName] = {}
    for row in rows:
        c = row.clip
        key = (c.scene, c.city, c.location, c.segment, c.slice)
        slices.setdefault(key, []).append(c.device)
        names.setdefault(key, c)
    return [(str(root), seed, names[key], tuple(devices)) for key, devices in slices.items()]


def _write_job(job: _Job) -> int:
    """Render one slice and write its WAVs (24-bit PCM); returns the number of files written."""
    root, seed, clip, devices = job
    for name, audio in render_recording(seed, clip, devices).items():
        path = Path(root) / dataclasses.replace(clip, device=name).filename
        soundfile.write(str(path), np.clip(audio, -_PEAK, _PEAK), SAMPLE_RATE, subtype="PCM_24")
    return len(devices)


def _run_jobs(jobs: list[_Job], total: int, workers: int, progress: bool) -> Iterator[int]:
    """Yield per-job file counts, in worker processes when ``workers`` > 1, with an optional progress bar."""
    bar = tqdm(total=total, desc="synthetic dataset", unit="clip", disable=not progress)
    try:
        if workers > 1:
            import multiprocessing

            context = multiprocessing.get_context("spawn" if os.name == "nt" else "fork")
            with context.Pool(workers) as pool:
                for count in pool.imap_unordered(_write_job, jobs, chunksize=8):
                    bar.update(count)
                    yield count
        else:
            for job in jobs:
                count = _write_job(job)
                bar.update(count)
                yield count
    finally:
        bar.close()


def _write_tsv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A tab-separated file with a header, written under a temporary name and renamed into place."""
    text = "".join("\t".join(fields) + "\n" for fields in [columns, *rows])
    partial = path.with_name(f"{path.name}.partial")
    partial.write_text(text, encoding="utf-8", newline="\n")
    os.replace(partial, path)


def _csv_files(root: Path) -> list[Path]:
    return [root / META_FILE, *(root / name for name in FOLD_FILES.values())]


def _prepare_root(root: Path, spec: SynthSpec, seed: int) -> None:
    """Create ``root``, or take over a dataset written by synth; refuse anything else (foreign data)."""
    marker = root / MARKER_FILE
    if root.exists():
        if not root.is_dir():
            raise AscError(f"{root}: exists and is not a directory; refusing to write a dataset there")
        if any(root.iterdir()) and not _is_synth_marker(marker):
            raise AscError(f"{root}: directory is not empty and was not written by asc synth; refusing to overwrite")
    for path in _csv_files(root):  # CSVs first: a dataset without them is visibly incomplete
        path.unlink(missing_ok=True)
    (root / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
    (root / FOLD_FILES["train"]).parent.mkdir(parents=True, exist_ok=True)
    _write_marker(root, spec, seed, complete=False)


def _is_synth_marker(path: Path) -> bool:
    """True when ``path`` is the marker file of a dataset written by this module."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("generator") == _GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def _write_marker(root: Path, spec: SynthSpec, seed: int, *, complete: bool) -> None:
    payload = {"generator": _GENERATOR, "version": GENERATOR_VERSION, "seed": seed,
               "spec": dataclasses.asdict(spec), "complete": complete}
    (root / MARKER_FILE).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


def _remove_stale_audio(root: Path, rows: Sequence[SynthRow]) -> None:
    """Delete WAVs of an earlier synth run into the same root that the new plan does not list."""
    keep = {row.clip.filename.rsplit("/", 1)[-1] for row in rows}
    for path in (root / AUDIO_DIR).glob("*.wav"):
        if path.name not in keep:
            path.unlink()


def _write_csvs(root: Path, rows: Sequence[SynthRow]) -> dict[str, int]:
    """The fold files, then meta.csv; returns the clip counts per file."""
    folds = {split: [r for r in rows if r.split == split] for split in SPLITS}
    _write_tsv(root / FOLD_FILES["train"], FOLD_COLUMNS["train"],
               [(r.clip.filename, r.clip.scene) for r in folds["train"]])
    _write_tsv(root / FOLD_FILES["evaluate"], FOLD_COLUMNS["evaluate"],
               [(r.clip.filename, r.clip.scene) for r in folds["evaluate"]])
    _write_tsv(root / FOLD_FILES["test"], FOLD_COLUMNS["test"], [(r.clip.filename,) for r in folds["evaluate"]])
    _write_tsv(root / META_FILE, META_COLUMNS,
               [(r.clip.filename, r.clip.scene, r.clip.identifier, r.clip.device) for r in rows])
    return {"meta": len(rows), "train": len(folds["train"]), "evaluate": len(folds["evaluate"]),
            "test": len(folds["evaluate"])}


def synthesize(
    root: Path, spec: SynthSpec, *, seed: int = 0, workers: int = 1, progress: bool = True
) -> dict[str, int]:
    """Write the whole dataset under ``root``; returns clip counts {"meta", "train", "evaluate", "test"}.

    ``root`` must be absent, empty or an earlier output of this function (marked by ``.asc_synth.json``).
    Audio is written first and the CSV files last, so an interrupted run leaves no meta.csv behind.
    """
    root = Path(root)
    rows = plan(spec, seed)
    _prepare_root(root, spec, seed)
    _remove_stale_audio(root, rows)
    jobs = _jobs(root, seed, rows)
    written = sum(_run_jobs(jobs, len(rows), max(1, int(workers)), progress))
    if written != len(rows):
        raise AscError(f"{root}: wrote {written} of {len(rows)} planned clips")
    counts = _write_csvs(root, rows)
    _write_marker(root, spec, seed, complete=True)
    return counts
