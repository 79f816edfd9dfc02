"""Family ``"b"`` scene textures: the same ten scenes and time-reversed pairs as ``synth.scenes``, other sounds.

Why other sounds
    A model that learned family ``"a"``'s motor whines, harmonic engine revs, bell chimes, clicks, FM chirps and
    beeps has learned those sounds, not the scenes. Family ``"b"`` keeps what makes each scene that scene (where
    its energy lies, what kind of events happen, how fast) and draws every sound from another family:

    * metro / tram: wheel-rail roar with rail-joint clatter, and brake squeals: narrow inharmonic tones that
      glide down while they swell and stop abruptly (the tram hears them reversed: sharp start, fade, glide up);
    * bus / street_traffic: tyre noise, and a diesel engine heard as trains of knock pulses whose rate and
      loudness build slowly and drop at once at each gear change (reversed: jump up, slow fall);
    * airport / shopping_mall: air handling and luggage wheels, and public-address announcements: phrases of
      speech-like syllables (a glottal pulse train through formant resonances) with sharp onsets, decays and
      a falling pitch (declination) (reversed: swelling syllables, rising pitch);
    * street_pedestrian / public_square: street noise, and footsteps heard as low damped thuds followed by a
      scuff (reversed: the scuff swells into a thud that stops at once);
    * park: wind and leaf rustle (sparse crackle), and crickets: chirps of a few short tonal pulses;
    * metro_station: hall noise with an escalator's periodic rumble and a motor resonance, and two-tone door
      chimes (a falling major third).

    Spectra are built differently too: a power-law floor plus second-order resonances (``_spectrum``) instead of
    ``scenes``' piecewise-linear dB corners. Within a pair the generator, every random draw and hence every
    per-band moment over time has the same distribution; only the direction of the event layer differs.

Determinism
    The draws come from ``cross/...`` streams of ``seeding``, never from a stream family ``"a"`` uses, and like
    family ``"a"`` a slice's draws depend on its location, segment and slice but not on its scene.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from asc.data.layout import CLIP_SECONDS, SAMPLE_RATE, ClipName
from asc.data.synth.conditions import Conditions
from asc.data.synth.scenes import _FREQS, N_SAMPLES, _add, _harmonics, _modulation, _onsets, _rms, _shaped_noise
from asc.data.synth.seeding import _rng

_T = np.arange(N_SAMPLES) / SAMPLE_RATE


@dataclass(frozen=True)
class _Site:
    """Random parameters of one location's scene, shared by all its segments, slices and devices."""

    level_db: float  # background level in dBFS (before the room)
    snr_db: float  # events relative to the background
    rate: float  # event-rate multiplier
    pitch: float  # frequency multiplier of tonal and resonant events
    tempo: float  # period multiplier of rhythmic events


def _site(seed: int, clip: ClipName, conditions: Conditions) -> _Site:
    """The location's scene parameters, with the conditions' extra level and pitch spread (drawn whatever they are)."""
    rng = _rng(seed, f"cross/site/{clip.identifier}")
    level, pitch, spread_level, spread_pitch = rng.uniform(-1.0, 1.0, 4)
    return _Site(
        level_db=float(-40.0 + 6.0 * level + conditions.level_spread_db * spread_level),
        snr_db=float(rng.uniform(-8.0, 4.0)),
        rate=float(2.0 ** rng.uniform(-0.8, 0.8)),
        pitch=float(2.0 ** (0.25 * pitch + conditions.pitch_octaves * spread_pitch)),
        tempo=float(2.0 ** rng.uniform(-0.35, 0.35)),
    )


def _resonance(frequencies: np.ndarray, centre: float, q: float) -> np.ndarray:
    """Magnitude of a second-order resonance: 1 at ``centre``, bandwidth ``centre / q``."""
    f = np.maximum(frequencies, 1.0)
    return 1.0 / np.sqrt(1.0 + np.square(q * (f / centre - centre / f)))


def _resonances(
    frequencies: np.ndarray, slope_db: float, peaks: Sequence[tuple[float, float, float]], floor: float = 1.0
) -> np.ndarray:
    """A power-law floor (``slope_db`` per octave, ``floor`` at 1 kHz) plus second-order resonances (centre Hz, Q,
    height)."""
    magnitude = floor * (np.maximum(frequencies, 1.0) / 1000.0) ** (slope_db / (20.0 * np.log10(2.0)))
    for centre, q, height in peaks:
        magnitude = magnitude + height * _resonance(frequencies, centre, q)
    return magnitude


def _high_pass(floor_hz: float) -> np.ndarray:
    """Second-order high-pass magnitude over the clip's bins: nothing below ``floor_hz``."""
    ratio = np.square(np.maximum(_FREQS, 1e-3) / floor_hz)
    return ratio / (1.0 + ratio)


@functools.lru_cache(maxsize=64)
def _spectrum(slope_db: float, peaks: tuple[tuple[float, float, float], ...], floor_hz: float = 30.0) -> np.ndarray:
    """Magnitude spectrum of a texture over the clip's bins (cached: the recipes use fixed ones): ``_resonances``
    with nothing below ``floor_hz``."""
    return _resonances(_FREQS, slope_db, peaks) * _high_pass(floor_hz)


def _levels(rng: np.random.Generator, site: _Site, n: int, offset_db: float = 0.0) -> np.ndarray:
    """Amplitudes of ``n`` events around the location's SNR (plus a per-recipe offset), Laplace-spread."""
    return 10.0 ** ((site.snr_db + offset_db + rng.laplace(0.0, 3.0, n)) / 20.0)


def _at(seconds: float) -> int:
    """Sample index of a time in seconds."""
    return int(seconds * SAMPLE_RATE)


def _joints(rng: np.random.Generator, site: _Site) -> np.ndarray:
    """Level of wheel-rail roar: a bump at each rail joint, two bogies apart, at the location's speed."""
    envelope = np.ones(N_SAMPLES)
    period = 0.75 * site.tempo * rng.uniform(0.85, 1.15)
    bump = 1.2 * np.exp(-np.arange(_at(0.15)) / (0.03 * SAMPLE_RATE))
    for joint in np.arange(rng.uniform(-period, 0.0), CLIP_SECONDS, period):
        for delay in (0.0, 0.11 * site.tempo):
            _add(envelope, bump, _at(joint + delay))
    return envelope / np.mean(envelope)


def _squeal(rng: np.random.Generator, site: _Site) -> tuple[np.ndarray, np.ndarray]:
    """Metro / tram: wheel-rail roar with joint clatter, plus brake squeals that glide down, swell and stop."""
    background = _shaped_noise(rng, _spectrum(-9.0, ((70.0, 1.2, 2.0), (650.0, 2.5, 1.5), (1700.0, 4.0, 0.6))))
    background *= _joints(rng, site)
    events = np.zeros(N_SAMPLES)
    onsets = _onsets(rng, 1.0 * site.rate, 0.9)
    for onset, gain in zip(onsets, _levels(rng, site, onsets.size, 3.0), strict=True):
        n = _at(rng.uniform(0.3, 0.9))
        u = np.arange(n) / n
        vibrato = 1.0 + 0.012 * np.sin(2.0 * np.pi * rng.uniform(5.0, 9.0) * _T[:n])
        frequency = 1900.0 * site.pitch * 2.0 ** (rng.uniform(-0.4, 0.4) - rng.uniform(0.25, 0.6) * u) * vibrato
        phase = 2.0 * np.pi * np.cumsum(frequency) / SAMPLE_RATE
        envelope = u**1.5 * np.minimum(1.0, (n - np.arange(n)) / (0.008 * SAMPLE_RATE))  # swell, abrupt stop
        _add(events, gain * envelope * (np.sin(phase) + 0.35 * np.sin(2.31 * phase)), _at(onset))
    return background, events


def _knock(rng: np.random.Generator, site: _Site) -> tuple[np.ndarray, np.ndarray]:
    """Bus / street traffic: tyre noise, plus diesel knock pulses whose rate and level build slowly, drop at once."""
    background = _shaped_noise(rng, _spectrum(-5.0, ((110.0, 1.0, 1.0), (900.0, 1.2, 1.8), (2600.0, 2.0, 0.5))))
    background *= _modulation(rng, 1.0, 0.2)
    cycle = np.mod(_T / (0.8 * site.tempo * rng.uniform(0.85, 1.15)) + rng.uniform(), 1.0)
    if rng.uniform() < 0.15:  # idling: steady, the same forwards and backwards
        cycle = np.full(N_SAMPLES, 0.5)
    firing = np.cumsum(rng.uniform(40.0, 50.0) * (1.0 + cycle)) / SAMPLE_RATE + rng.uniform()
    pulses = np.flatnonzero(np.diff(np.floor(firing))) + 1
    train = np.zeros(N_SAMPLES)
    train[pulses] = (0.05 + 0.95 * cycle[pulses]) * np.exp(0.25 * rng.standard_normal(pulses.size))
    m = _at(0.025)
    knock = np.exp(-_T[:m] / rng.uniform(0.002, 0.004)) * np.sin(2.0 * np.pi * 450.0 * site.pitch * _T[:m])
    knock += 0.7 * rng.standard_normal(m) * np.exp(-_T[:m] / 0.0015)  # the clatter: a broadband click
    events = np.fft.irfft(np.fft.rfft(train) * np.fft.rfft(knock, n=N_SAMPLES), n=N_SAMPLES)
    return background, events * (_levels(rng, site, 1, 5.0)[0] / _rms(events))


def _syllable(rng: np.random.Generator, f0: float, n: int) -> np.ndarray:
    """One voiced syllable of ``n`` samples: a glottal pulse train at ``f0`` through three formant resonances."""
    firing = np.cumsum(np.full(n, f0 * 2.0 ** (0.03 * rng.standard_normal()))) / SAMPLE_RATE
    buzz = np.zeros(n)
    buzz[np.flatnonzero(np.diff(np.floor(firing))) + 1] = 1.0
    formants = ((rng.uniform(300.0, 800.0), 5.0, 1.0), (rng.uniform(900.0, 2300.0), 12.0, 0.6),
                (rng.uniform(2400.0, 3100.0), 20.0, 0.3))
    frequencies = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    below = np.square(frequencies / (0.8 * f0))  # no energy below the voice's pitch (nor at 0 Hz)
    gain = _resonances(frequencies, -12.0, formants, floor=0.02) * below / (1.0 + below)
    voiced = np.fft.irfft(np.fft.rfft(buzz) * gain, n=n)
    return voiced / _rms(voiced)


def _announce(rng: np.random.Generator, site: _Site) -> tuple[np.ndarray, np.ndarray]:
    """Airport / shopping mall: air handling and luggage wheels, plus announcements: phrases of sharp syllables
    whose pitch and loudness fall from the first syllable to the last (declination)."""
    background = _shaped_noise(rng, _spectrum(-6.0, ((180.0, 2.0, 1.5), (3200.0, 1.0, 0.7))))
    background *= _modulation(rng, 1.0, 0.2)
    events = np.zeros(N_SAMPLES)
    onsets = _onsets(rng, 1.3 * site.rate, 1.2)
    for onset, gain in zip(onsets, _levels(rng, site, onsets.size, 14.0), strict=True):
        syllables, spacing = int(rng.integers(3, 7)), rng.uniform(0.18, 0.28) * site.tempo
        f0 = 170.0 * site.pitch * 2.0 ** rng.uniform(-0.4, 0.4)
        for k in range(syllables):
            n = _at(spacing * rng.uniform(0.6, 0.8))
            decay = np.exp(-_T[:n] / (n / SAMPLE_RATE / 3.0)) * np.minimum(1.0, _T[:n] / 0.005)
            voiced = _syllable(rng, f0 * 2.0 ** (-0.35 * k / syllables), n)
            _add(events, gain * 10.0 ** (-0.6 * k / syllables) * decay * voiced, _at(onset + k * spacing))
    return background, events


def _thuds(rng: np.random.Generator, site: _Site) -> tuple[np.ndarray, np.ndarray]:
    """Street pedestrian / public square: street noise, plus footsteps: a low damped thud, then a scuff."""
    background = _shaped_noise(rng, _spectrum(-3.5, ((300.0, 0.8, 0.8), (1300.0, 0.9, 0.9), (5000.0, 1.5, 0.3))))
    background *= _modulation(rng, 1.5, 0.25)
    scuff = _shaped_noise(rng, _spectrum(-6.0, ((2200.0, 1.2, 3.0),), floor_hz=600.0))
    thuds, scuffs = np.zeros(N_SAMPLES), np.zeros(N_SAMPLES)
    m = _at(0.35)
    walkers = int(rng.integers(1, 3)) if rng.uniform() < 0.9 else 0  # sometimes nobody walks by
    for _ in range(walkers):
        period = 0.52 * site.tempo * rng.uniform(0.85, 1.15)
        onsets = np.arange(rng.uniform(-1.0, -1.0 + period), CLIP_SECONDS, period)
        onsets += rng.normal(0.0, 0.03, onsets.size)
        for onset, gain in zip(onsets, _levels(rng, site, onsets.size, 8.0), strict=True):
            thud = np.exp(-_T[:m] / rng.uniform(0.02, 0.05)) * np.sin(2.0 * np.pi * 100.0 * site.pitch * _T[:m])
            _add(thuds, gain * np.minimum(1.0, _T[:m] / 0.001) * thud, _at(onset))
            delay = _at(rng.uniform(0.01, 0.03))
            _add(scuffs, 0.5 * gain * np.exp(-_T[: m - delay] / rng.uniform(0.04, 0.09)), _at(onset) + delay)
    return background, thuds + scuff * scuffs


def _crickets(rng: np.random.Generator, site: _Site) -> tuple[np.ndarray, np.ndarray]:
    """Park: wind and leaf rustle (sparse crackle in gusts), plus crickets: chirps of a few short tonal pulses."""
    crackle, count = np.zeros(N_SAMPLES), int(rng.uniform(2000.0, 6000.0))
    np.add.at(crackle, rng.integers(0, N_SAMPLES, count), rng.uniform(-1.0, 1.0, count))
    rustle = np.fft.irfft(np.fft.rfft(crackle) * _spectrum(-2.0, ((4500.0, 1.0, 2.0),), floor_hz=1500.0), n=N_SAMPLES)
    rustle *= _modulation(rng, 0.8, 0.5) / _rms(rustle)
    background = _shaped_noise(rng, _spectrum(-10.0, ())) + rng.uniform(0.3, 1.0) * rustle
    events = np.zeros(N_SAMPLES)
    carrier = 4600.0 * site.pitch
    onsets = _onsets(rng, 2.5 * site.rate, 0.2)
    for onset, gain in zip(onsets, _levels(rng, site, onsets.size, 4.0), strict=True):
        m, gap = _at(rng.uniform(0.012, 0.018)), rng.uniform(0.03, 0.04)
        pulse = np.hanning(m) * np.sin(2.0 * np.pi * carrier * 2.0 ** (0.03 * rng.standard_normal()) * _T[:m])
        for k in range(int(rng.integers(3, 6))):
            _add(events, gain * pulse, _at(onset + k * gap))
    return background, events


def _door_chimes(rng: np.random.Generator, site: _Site) -> tuple[np.ndarray, np.ndarray]:
    """Metro station: hall noise with an escalator's periodic rumble, plus two-tone door chimes (a falling third)."""
    background = _shaped_noise(rng, _spectrum(-5.0, ((90.0, 4.0, 2.0), (420.0, 1.0, 1.0), (2000.0, 1.5, 0.4))))
    background *= 1.0 + 0.3 * np.cos(2.0 * np.pi * _T / (0.5 * site.tempo) + rng.uniform(0.0, 2.0 * np.pi))
    events = np.zeros(N_SAMPLES)
    m = _at(0.6)
    envelope = np.minimum(1.0, _T[:m] / 0.015) * np.exp(-_T[:m] / 0.25)
    onsets = _onsets(rng, 0.9 * site.rate, 1.0)
    for onset, gain in zip(onsets, _levels(rng, site, onsets.size, 6.0), strict=True):
        high = 740.0 * site.pitch * 2.0 ** rng.uniform(-0.2, 0.2)
        for k, frequency in enumerate((high, high * 2.0 ** (-4.0 / 12.0))):
            tone = _harmonics(2.0 * np.pi * frequency * _T[:m], (1.0, 0.0, 0.3))
            _add(events, gain * envelope * tone, _at(onset + 0.35 * k))
    return background, events


_Recipe = Callable[[np.random.Generator, _Site], tuple[np.ndarray, np.ndarray]]
#: Scene -> (family-"b" generator, play the event layer backwards): the pairs of ``scenes.REVERSED_PAIRS``.
RECIPES: dict[str, tuple[_Recipe, bool]] = {
    "metro": (_squeal, False),
    "tram": (_squeal, True),
    "bus": (_knock, False),
    "street_traffic": (_knock, True),
    "airport": (_announce, False),
    "shopping_mall": (_announce, True),
    "street_pedestrian": (_thuds, False),
    "public_square": (_thuds, True),
    "park": (_crickets, False),
    "metro_station": (_door_chimes, False),
}
