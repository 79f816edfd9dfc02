"""Family ``"b"`` location acoustics: rooms that reverberate, absorb and hum, instead of ``conditions``' colouring.

Why another mechanism
    ``conditions`` makes a location differ by a smooth random colouring of the sound field and an ambience of
    shaped noise with stationary hums at random frequencies. A model (or an augmentation) that copes with that
    family of differences may still be lost in another one, so family ``"b"`` makes locations differ by how a
    place shapes sound physically:

    * every location is a room (or a street canyon) with its own impulse response: the direct sound, a few early
      reflections (a comb-filter colouring that depends on where the microphone stood) and an exponentially
      decaying noise tail with a reverberation time RT60 of 0.15-0.9 s, shorter above 1.5 kHz, and a
      direct-to-reverberant ratio of its own (``_reverb``);
    * absorption: a low and a high shelf and a few narrow room modes below 300 Hz, of spread
      ``Conditions.colour_db`` (not smooth bumps);
    * an ambience of other kinds (``Conditions.ambience_db``): the babble of a few talkers (noise with a vocal
      spectrum, amplitude-modulated at syllabic rates), machinery that runs for part of some slices (a low
      harmonic series and a bearing whine) and lines of the mains' even harmonics (100, 200, ... Hz), mixed in
      per-location proportions.

    The other conditions mean what they mean in ``conditions``: silent slices, the location's intruding scene
    (never the time-reversed partner), weaker events, a wider spread of level and pitch (``scenes._site``).

Reverberation and the time-reversed pairs
    The scene's event layer is reverberated in the room and only then played backwards for the second scene of
    a pair, so the two scenes of a pair still differ in the direction of one layer and in nothing else: their
    per-band moments over time keep the same distribution (the reversed scene hears its room backwards, a
    swell before each event, which a time-frequency model may use and the moments cannot).

Determinism
    Room draws come from ``cross/room/<identifier>``, per-slice draws from ``cross/conditions/slice/<key>``
    (``seeding``): none depend on the scene, on the order of work, or on family ``"a"``'s streams.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from asc.data.layout import SAMPLE_RATE, ClipName
from asc.data.synth.conditions import Conditions, _intruder
from asc.data.synth.cross.scenes import _T, RECIPES, _high_pass, _resonance, _resonances, _Site, _site, _spectrum
from asc.data.synth.scenes import _FREQS, N_SAMPLES, _harmonics, _modulation, _rms, _shaped_noise
from asc.data.synth.seeding import _rng

#: A delay of N - 1 samples on the clip's bins: conj(X) times this is the spectrum of x played backwards.
_REVERSAL = np.exp(-2j * np.pi * np.arange(_FREQS.size) * (N_SAMPLES - 1) / N_SAMPLES)
_HUM_LINES = np.arange(1, 11)  # multiples of 100 Hz (the mains' even harmonics)


@dataclass(frozen=True)
class _Room:
    """Acoustics of one location, shared by its segments, slices and devices (drawn whatever the settings)."""

    reverb: np.ndarray  # complex response of the room's impulse response over the clip's bins
    colour: np.ndarray  # dB curve of unit spread: shelves and room modes, scaled by colour_db
    babble: np.ndarray  # magnitude spectrum of the talkers' voices
    talkers: int
    machine_hz: float  # fundamental of the location's machinery
    machine_share: float  # share of slices in which it runs
    hum: np.ndarray  # amplitudes of the lines at 100, 200, ... Hz
    mix: np.ndarray  # weights of babble, machinery and hum in the ambience
    intruder: float  # uniform in [0, 1): which other scene intrudes


def _reverb(rng: np.random.Generator) -> np.ndarray:
    """The room's impulse response as a spectrum: direct sound, early reflections and a two-band decaying tail."""
    rt_low = 2.0 ** rng.uniform(np.log2(0.15), np.log2(0.9))
    rt_high = rt_low * rng.uniform(0.35, 0.75)
    crossover = 1.0 / np.sqrt(1.0 + (_FREQS / 1500.0) ** 4)
    tail = (_shaped_noise(rng, crossover) * np.exp(-6.91 * _T / rt_low)
            + _shaped_noise(rng, crossover * np.square(_FREQS / 1500.0)) * np.exp(-6.91 * _T / rt_high))
    tail *= np.clip((_T - rng.uniform(0.004, 0.02)) / 0.003, 0.0, 1.0)  # the tail starts after a pre-delay
    tail *= 10.0 ** (-rng.uniform(3.0, 15.0) / 20.0) / np.sqrt(np.sum(np.square(tail)))  # direct-to-reverberant
    tail[0] += 1.0
    for _ in range(int(rng.integers(3, 7))):
        tail[int(rng.uniform(0.0015, 0.025) * SAMPLE_RATE)] += rng.choice((-1.0, 1.0)) * rng.uniform(0.2, 0.7)
    return np.fft.rfft(tail)


def _absorption(rng: np.random.Generator) -> np.ndarray:
    """A dB curve of unit spread: low and high shelves (logistic in log frequency) and narrow room modes."""
    octaves = np.log2(np.maximum(_FREQS, 10.0))
    db = rng.normal() / (1.0 + 2.0 ** (4.0 * (octaves - np.log2(rng.uniform(100.0, 400.0)))))
    db += rng.normal() / (1.0 + 2.0 ** (-4.0 * (octaves - np.log2(rng.uniform(2000.0, 6000.0)))))
    for _ in range(int(rng.integers(2, 5))):
        db += 1.5 * rng.normal() * _resonance(_FREQS, rng.uniform(40.0, 300.0), 8.0)
    return db


@functools.lru_cache(maxsize=64)
def _room(seed: int, identifier: str) -> _Room:
    """The acoustics of a location, drawn from its identifier alone."""
    rng = _rng(seed, f"cross/room/{identifier}")
    reverb, colour = _reverb(rng), _absorption(rng)
    vowels = ((rng.uniform(400.0, 700.0), 3.0, 1.0), (rng.uniform(1100.0, 1900.0), 4.0, 0.6))
    babble = _resonances(_FREQS, -9.0, vowels) * _high_pass(150.0)
    hum = rng.exponential(1.0, _HUM_LINES.size) * (rng.uniform(size=_HUM_LINES.size) < 0.35)
    return _Room(reverb=reverb, colour=colour, babble=babble, talkers=int(rng.integers(2, 7)),
                 machine_hz=float(rng.uniform(22.0, 65.0)), machine_share=float(rng.uniform(0.3, 0.9)),
                 hum=hum, mix=rng.dirichlet((1.0, 1.0, 0.6)), intruder=float(rng.uniform()))


def _running(rng: np.random.Generator, share: float) -> np.ndarray:
    """0/1 gate of the machinery in one slice (20-ms ramps): on from a random time, for a random while, or off."""
    start, length, runs = rng.uniform(-1.0, 1.0), rng.uniform(0.3, 2.0), rng.uniform() < share
    if not runs:
        return np.zeros(N_SAMPLES)
    return np.clip((_T - start) / 0.02, 0.0, 1.0) * np.clip((start + length - _T) / 0.02, 0.0, 1.0)


def _ambience(rng: np.random.Generator, room: _Room) -> np.ndarray:
    """The location's ambience for one slice: babble, machinery when it runs, mains lines; about unit RMS."""
    talk = np.mean([_modulation(rng, 4.0, 1.0) for _ in range(room.talkers)], axis=0)
    babble = _shaped_noise(rng, room.babble) * talk
    phase = 2.0 * np.pi * room.machine_hz * _T + rng.uniform(0.0, 2.0 * np.pi)
    rotation = _harmonics(phase, tuple(1.0 / k for k in range(1, 9)))
    machine = (rotation / _rms(rotation) + 0.3 * _shaped_noise(rng, _spectrum(-20.0, ((3000.0, 6.0, 1.0),), 1000.0)))
    machine *= _running(rng, room.machine_share)
    offsets, on = rng.uniform(0.0, 1.0, _HUM_LINES.size), room.hum > 0
    lines = 100.0 * _HUM_LINES[on, None] * _T[None, :] + offsets[on, None]
    hum = room.hum[on] @ np.sin(2.0 * np.pi * lines)
    hum /= _rms(hum) if on.any() else 1.0
    return room.mix[0] * babble + room.mix[1] * machine + room.mix[2] * hum


def _backwards(spectrum: np.ndarray) -> np.ndarray:
    """The spectrum of the clip played backwards: x[N-1-n] has spectrum conj(X) delayed by N-1 samples."""
    return np.conj(spectrum) * _REVERSAL


def _oriented(spectrum: np.ndarray, reverse: bool) -> np.ndarray:
    """The layer's spectrum played forwards or backwards."""
    return _backwards(spectrum) if reverse else spectrum


def room_field(seed: int, clip: ClipName, conditions: Conditions) -> tuple[np.ndarray, _Site]:
    """The spectrum of one slice's sound field in its room (before any microphone) and the location's parameters.

    The background and the ambience are reverberated as they are; each event layer is reverberated and then
    played in its scene's direction (see the module docstring), circularly over the clip.
    """
    c = conditions
    site, room = _site(seed, clip, c), _room(seed, clip.identifier)
    key = f"{clip.identifier}-{clip.segment}-{clip.slice}"  # no scene: the pairs stay mirror images
    recipe, reverse = RECIPES[clip.scene]
    background, events = recipe(_rng(seed, f"cross/slice/{key}"), site)
    rng = _rng(seed, f"cross/conditions/slice/{key}")
    silent, intrudes, ambience_db = rng.uniform() < c.silent_fraction, rng.uniform() < c.intruder_fraction, rng.normal()
    if c.ambience_db is not None:
        background = background + _ambience(rng, room) * 10.0 ** ((c.ambience_db + 2.0 * ambience_db) / 20.0)
    spectrum = np.fft.rfft(background) * room.reverb
    if not silent:
        spectrum += _oriented(np.fft.rfft(events) * room.reverb, reverse) * 10.0 ** (c.event_db / 20.0)
    if intrudes:
        other, other_reverse = RECIPES[_intruder(clip.scene, room.intruder)]
        _, intruding = other(_rng(seed, f"cross/intruder/{key}"), site)
        spectrum += _oriented(np.fft.rfft(intruding) * room.reverb, other_reverse) * 10.0 ** (
            (c.event_db + c.intruder_db) / 20.0)
    if c.colour_db:
        spectrum *= 10.0 ** (c.colour_db * room.colour / 20.0)
    return spectrum, site
