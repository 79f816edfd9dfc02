"""Recording conditions of the built-in dataset: how much a location and a device colour what a scene sounds like.

Why a ``"hard"`` preset
    In ``tiny``, ``demo`` and ``full`` a scene's own background and events dominate every clip, so the
    scene is easy to hear at a location never heard before: models generalise to new locations almost as
    well as to the training ones, and every method looks good. The real set is not like that: the place
    where a scene was recorded (its room tone, machinery, the microphone's position) varies more than the
    scenes themselves, events are often faint or missing, and other scenes bleed in. A model then learns
    its training locations by heart (near 100 % training accuracy) and does much worse on new locations
    and new devices. ``Conditions`` add exactly that on top of the scene generators, and the ``"hard"``
    preset turns them on (see ``planning.PRESETS``):

    * every location has its own *ambience*, louder than the scene's background: noise with a random
      spectral envelope (a smooth slope with random bumps) and a few stationary hums at random
      frequencies, so the background depends more on the location than on the scene;
    * every location has its own smooth colouring of the whole sound field (the microphone's position,
      the room), a wider spread of level and a wider spread of the pitch of tonal events;
    * scene events are weaker, and absent in a share of the slices;
    * in a share of the slices, events of another scene (the location's *intruder*, fixed per location,
      never the scene's time-reversed partner, so the pairs keep their meaning) are mixed in;
    * the devices other than ``a`` colour the sound more strongly and have more self-noise, so the
      unseen devices s4-s6 cost more.

    The time-reversed scene pairs (see ``scenes``) are kept: the ambience, the colouring and the choice
    of intruder do not depend on the scene, so within a pair the global moments still have the same
    distribution and only the order of events tells the two scenes apart.

Determinism
    Every new draw comes from its own generator (``conditions/location/<identifier>`` and
    ``conditions/slice/<identifier>-<segment>-<slice>``, see ``seeding``), never from a stream the plain
    presets use, and with the default ``Conditions()`` the plain code path runs unchanged: ``tiny``,
    ``demo`` and ``full`` are byte-identical to what they were before this module existed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from asc.data.layout import SAMPLE_RATE, SCENES, ClipName
from asc.data.synth.scenes import (
    _FREQS,
    _OCTAVES,
    N_SAMPLES,
    RECIPES,
    REVERSED_PAIRS,
    _harmonics,
    _modulation,
    _Place,
    _place,
    _scene_signal,
    _shaped_noise,
)
from asc.data.synth.seeding import _rng


@dataclass(frozen=True)
class Conditions:
    """How strongly locations and devices vary; the defaults (nothing added) are the plain presets.

    ``ambience_db``: level of the location's own ambience relative to the scene's background (None: no
    ambience). ``colour_db``: spread (dB) of the location's colouring of the sound field (0: none).
    ``level_spread_db`` / ``pitch_octaves``: extra per-location level (+-dB) and pitch (+-octaves) spread.
    ``event_db``: offset of the scene's own events. ``silent_fraction``: share of slices without them.
    ``intruder_fraction``: share of slices with events of the location's intruding scene, at
    ``intruder_db`` relative to the scene's own events. ``device_colour``: multiplier of the frequency
    response deviations of devices b, c, s1-s6; ``device_noise_db``: offset of their self-noise level.
    """

    ambience_db: float | None = None
    colour_db: float = 0.0
    level_spread_db: float = 0.0
    pitch_octaves: float = 0.0
    event_db: float = 0.0
    silent_fraction: float = 0.0
    intruder_fraction: float = 0.0
    intruder_db: float = 0.0
    device_colour: float = 1.0
    device_noise_db: float = 0.0

    @property
    def plain(self) -> bool:
        """True for the plain presets' conditions: the scene generators' output, untouched."""
        return self == PLAIN


#: The conditions of ``tiny``, ``demo`` and ``full``: nothing added.
PLAIN = Conditions()
_PARTNER = {a: b for pair in REVERSED_PAIRS for a, b in (pair, pair[::-1])}


@dataclass(frozen=True)
class _Location:
    """Random conditions of one location (drawn whatever the settings, so each knob changes only itself)."""

    level_db: float  # in units of level_spread_db
    pitch: float  # in units of pitch_octaves
    colour: np.ndarray  # dB curve with unit spread, scaled by colour_db
    ambience: np.ndarray  # magnitude spectrum of the ambience noise
    hums: tuple[tuple[float, float], ...]  # (frequency in Hz, amplitude relative to the ambience)
    intruder: float  # uniform in [0, 1): which other scene intrudes


def _smooth_curve(rng: np.random.Generator, bumps: int) -> np.ndarray:
    """A random dB curve over log frequency: Gaussian bumps of unit spread, widths 0.4-1.2 octaves."""
    db = np.zeros(_OCTAVES.size)
    for _ in range(bumps):
        centre, width = rng.uniform(-4.0, 3.5), rng.uniform(0.4, 1.2)
        db += rng.normal() * np.exp(-0.5 * np.square((_OCTAVES - centre) / width))
    return db


def _location(seed: int, clip: ClipName) -> _Location:
    """The conditions of the clip's location, drawn from its identifier alone."""
    rng = _rng(seed, f"conditions/location/{clip.identifier}")
    level, pitch = rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0)
    colour = _smooth_curve(rng, 4)
    corner = 2.0 ** rng.uniform(-2.5, 1.0)  # kHz: where the ambience starts to fall
    slope = rng.uniform(-9.0, -3.0)  # dB per octave above the corner
    ambience_db = slope * np.maximum(_OCTAVES - np.log2(corner), 0.0) + 8.0 * _smooth_curve(rng, 5)
    ambience_db -= 12.0 * np.clip(np.log2(40.0 / np.maximum(_FREQS, 1.0)), 0.0, None)  # nothing below 40 Hz
    hums = tuple((float(2.0 ** rng.uniform(np.log2(45.0), np.log2(1500.0))), float(10.0 ** (rng.uniform(-14, -4) / 20)))
                 for _ in range(int(rng.integers(1, 4))))
    return _Location(float(level), float(pitch), colour, 10.0 ** (ambience_db / 20.0), hums, float(rng.uniform()))


def _intruder(scene: str, u: float) -> str:
    """The other scene heard at a location: neither the scene itself nor its time-reversed partner."""
    others = [s for s in SCENES if s not in (scene, _PARTNER.get(scene))]
    return others[int(u * len(others))]


def _ambience(rng: np.random.Generator, location: _Location) -> np.ndarray:
    """The location's ambience for one slice: its noise, slowly modulated, plus its stationary hums."""
    out = _shaped_noise(rng, location.ambience) * _modulation(rng, 1.0, 0.25)
    t = np.arange(N_SAMPLES) / SAMPLE_RATE
    for frequency, amplitude in location.hums:
        phase = 2.0 * np.pi * frequency * t + rng.uniform(0.0, 2.0 * np.pi)
        out += amplitude * np.sqrt(2.0) * _harmonics(phase, (1.0, 0.5, 0.25))
    return out


def scene_field(seed: int, clip: ClipName, conditions: Conditions) -> tuple[np.ndarray, _Place, np.ndarray | None]:
    """The sound field of one slice, its location's parameters and the location's colouring (gain or None).

    With plain conditions this is ``scenes._scene_signal`` unchanged (and no colouring).
    """
    if conditions.plain:
        field, place = _scene_signal(seed, clip)
        return field, place, None
    c = conditions
    location = _location(seed, clip)
    place = _place(seed, clip)
    place = dataclasses.replace(place, level_db=place.level_db + c.level_spread_db * location.level_db,
                                pitch=place.pitch * 2.0 ** (c.pitch_octaves * location.pitch))
    recipe, reverse = RECIPES[clip.scene]
    key = f"{clip.identifier}-{clip.segment}-{clip.slice}"  # no scene: the pairs stay mirror images
    background, events = recipe(_rng(seed, f"slice/{key}"), place)
    rng = _rng(seed, f"conditions/slice/{key}")
    silent, intrudes, ambience_db = rng.uniform() < c.silent_fraction, rng.uniform() < c.intruder_fraction, rng.normal()
    field = background + events[:: -1 if reverse else 1] * (0.0 if silent else 10.0 ** (c.event_db / 20.0))
    if c.ambience_db is not None:
        field += _ambience(rng, location) * 10.0 ** ((c.ambience_db + 2.0 * ambience_db) / 20.0)
    if intrudes:
        other, other_reverse = RECIPES[_intruder(clip.scene, location.intruder)]
        _, intruding = other(_rng(seed, f"conditions/intruder/{key}"), place)
        field += intruding[:: -1 if other_reverse else 1] * 10.0 ** ((c.event_db + c.intruder_db) / 20.0)
    colour = 10.0 ** (c.colour_db * location.colour / 20.0) if c.colour_db else None
    return field, place, colour
