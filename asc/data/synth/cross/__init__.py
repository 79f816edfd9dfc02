"""Generator family ``"b"`` of the built-in dataset (the ``"cross"`` preset): other devices, rooms and sounds.

Why a second family
    On ``"hard"`` (family ``"a"``) an addition can score without generalising: the microphones that
    ``asc synth`` writes to ``impulse_responses/`` for the device-response augmentation are drawn by the same
    generator as the preset's own devices (the same family of random responses), so augmenting with them is
    partly a view of the test devices; likewise a method tuned on one family of location colourings and scene
    sounds may only have learned that family. A held-out set made by another generator showed it. Family
    ``"b"`` makes every part that decides a clip from a different family than anything the augmentations draw
    from, at the same sizes and strength of conditions as ``"hard"``, so an addition only scores on ``"cross"``
    when it generalises:

    ``scenes``   the same ten scenes and time-reversed pairs with other sounds (squeals, diesel knock, spoken
                 announcements, thuds, crickets, door chimes) and another construction of spectra;
    ``rooms``    locations differ by reverberation (RT60 per location), absorption and an ambience of babble,
                 intermittent machinery and mains lines, instead of a smooth colouring and shaped noise;
    ``devices``  parametric-equaliser responses with steep resonant band limits, white/pink/brown noise with
                 mains buzz, soft clipping and early echoes, instead of smooth bumps and a compressor.

    The impulse responses written for the augmentation stay family ``"a"`` (``devices.impulse_response``), so
    ``"hard"`` and ``"cross"`` of the same seed have the same augmentation microphones. The recording structure,
    splits, seeding rules and the ``Conditions`` knobs (each meaning the same thing) are shared.
"""

from __future__ import annotations

from asc.data.synth.cross.devices import render_recording
from asc.data.synth.cross.scenes import RECIPES

__all__ = ["RECIPES", "render_recording"]
