"""The built-in dataset: synthetic acoustic scenes in exactly the TAU Urban Acoustic Scenes 2022 Mobile layout.

The real development set cannot be downloaded here, so ``asc synth`` writes a stand-in that every other
module reads through the same code path as the real one: ``meta.csv``, ``evaluation_setup/fold1_*.csv``
and ``audio/<scene>-<city>-<location>-<segment>-<slice>-<device>.wav`` (44.1 kHz, mono, 24-bit, 1 s).

The parts, each with its own explanation
    ``planning``  which clips exist and in which split (recording structure, as in the real set);
    ``scenes``    the sound field of a slice (why time-reversed scene pairs);
    ``conditions`` how much locations, devices and other scenes colour it (the ``"hard"`` preset);
    ``devices``   how the real devices hear it and how the simulated ones are made from device a;
    ``writer``    rendering the slices (in worker processes) and writing the WAVs, CSVs and marker file;
    ``seeding``   the per-thing random streams that make the output independent of the work order;
    ``cross``     generator family ``"b"`` (the ``"cross"`` preset): other scene sounds, rooms and devices, so
                  that the augmentation's microphones (always family ``"a"``) share no family with its devices.
"""

from __future__ import annotations

from asc.data.synth.conditions import Conditions
from asc.data.synth.devices import render_recording
from asc.data.synth.planning import (
    CITIES,
    FAMILIES,
    FIRST_LOCATION_ID,
    FIRST_SEGMENT_ID,
    MAX_SLICES,
    PRESETS,
    SPLITS,
    SynthRow,
    SynthSpec,
    plan,
)
from asc.data.synth.scenes import N_SAMPLES, RECIPES, REVERSED_PAIRS
from asc.data.synth.writer import GENERATOR_VERSION, IMPULSE_RESPONSE_DIR, MARKER_FILE, RENDERERS, synthesize

__all__ = [
    "CITIES",
    "Conditions",
    "FAMILIES",
    "FIRST_LOCATION_ID",
    "FIRST_SEGMENT_ID",
    "GENERATOR_VERSION",
    "IMPULSE_RESPONSE_DIR",
    "MARKER_FILE",
    "MAX_SLICES",
    "N_SAMPLES",
    "PRESETS",
    "RECIPES",
    "RENDERERS",
    "REVERSED_PAIRS",
    "SPLITS",
    "SynthRow",
    "SynthSpec",
    "plan",
    "render_recording",
    "synthesize",
]
