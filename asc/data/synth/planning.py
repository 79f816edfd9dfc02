"""The plan of the built-in dataset: which clips exist, with which names, in which split (no audio).

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

Why 2,160 evaluate clips in ``"hard"`` and ``"cross"``
    These two presets decide an ablation: one evaluate clip is worth 100 / n points, and a method's gain
    of a point or two is only visible when the split's own sampling noise is well below that. With
    24 new locations per scene, each with one segment on all nine devices (2,160 clips, 0.05 points per
    clip, a binomial standard error of about one point at 50 %), a test split can decide a point; the
    train split keeps the demo's 2,280 clips in 3 locations per scene, so models still memorise them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from asc.data.layout import DEVICES, OFFICIAL_SIZES, SCENES, UNSEEN_DEVICES, ClipName
from asc.data.synth.conditions import PLAIN, Conditions
from asc.data.synth.seeding import _check_seed, _rng
from asc.errors import AscError

CITIES: tuple[str, ...] = (
    "barcelona", "helsinki", "lisbon", "london", "lyon", "milan", "paris", "prague", "stockholm", "vienna",
)
SPLITS: tuple[str, ...] = ("train", "evaluate")
#: Generator families: ``"a"`` (``scenes``, ``conditions``, ``devices``) and ``"b"`` (``cross``, other sounds).
FAMILIES: tuple[str, ...] = ("a", "b")
FIRST_LOCATION_ID = 1000
FIRST_SEGMENT_ID = 40000
MAX_SLICES = 10


@dataclass(frozen=True)
class SynthSpec:
    """How many clips to plan; the defaults are the ``"demo"`` preset.

    Per scene there are ``train_locations`` + ``evaluate_locations`` locations, each with
    ``segments_per_location`` device-a segments of ``slices_per_segment`` 1-s slices. In a train
    location ``train_parallel`` segments are also on b, c and s1-s6; in an evaluate location
    ``evaluate_parallel`` segments are on all devices (only those are in the evaluate split).
    ``sizes`` = (meta, train, evaluate) clip counts to trim the plan to, or None.
    ``evaluate_segments``: device-a segments of an evaluate location, if not ``segments_per_location``.
    ``conditions``: how much locations and devices colour the sound (``conditions.Conditions``).
    ``family``: which generators make the sound: ``"a"`` (scenes, conditions, devices) or ``"b"`` (``cross``:
    other scene textures, room acoustics and device responses; the impulse responses written for the
    augmentation stay family ``"a"``).
    """

    train_locations: int = 6
    evaluate_locations: int = 3
    segments_per_location: int = 14
    slices_per_segment: int = 2
    train_parallel: int = 1
    evaluate_parallel: int = 1
    sizes: tuple[int, int, int] | None = None
    evaluate_segments: int | None = None
    conditions: Conditions = PLAIN
    family: str = "a"

    def __post_init__(self) -> None:
        counts = [getattr(self, name) for name in _COUNTS] + [self.evaluate_segments or 1]
        if any(not isinstance(n, int) or n < 1 for n in counts):
            raise AscError(f"synthetic dataset spec needs positive integer counts, got {self}")
        if self.slices_per_segment > MAX_SLICES:
            raise AscError(f"slices_per_segment={self.slices_per_segment}: a segment has at most {MAX_SLICES}")
        if self.train_parallel > self.segments_per_location or self.evaluate_parallel > self.segments_of("evaluate"):
            raise AscError(f"parallel segments exceed the segments of a location in {self}")
        if self.segments_of("evaluate") > self.segments_per_location:
            raise AscError(f"evaluate_segments={self.evaluate_segments} exceeds segments_per_location")
        if self.family not in FAMILIES:
            raise AscError(f"unknown generator family {self.family!r} (expected one of {', '.join(FAMILIES)})")

    def segments_of(self, location_split: str) -> int:
        """Device-a segments of a location of the given split."""
        if location_split == "evaluate" and self.evaluate_segments is not None:
            return self.evaluate_segments
        return self.segments_per_location

    def changed_fields(self) -> dict:
        """The spec as a dict, leaving out the later fields at their defaults (the marker of the plain presets)."""
        values = dataclasses.asdict(self)
        for name in _LATER_FIELDS:
            if getattr(self, name) == _DEFAULTS[name]:
                del values[name]
        return values

    @classmethod
    def preset(cls, name: str) -> SynthSpec:
        """``"tiny"`` (tests, 660 clips), ``"demo"`` (3,960 clips), ``"hard"`` / ``"cross"`` (4,800 clips: 2,280
        train, 2,160 evaluate; generator family ``"a"`` / ``"b"``) or ``"full"`` (the official sizes)."""
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


_COUNTS = ("train_locations", "evaluate_locations", "segments_per_location", "slices_per_segment", "train_parallel",
           "evaluate_parallel")
_DEFAULTS = {field.name: field.default for field in dataclasses.fields(SynthSpec)}
#: Fields added after the first generator version: left out of the marker file while at their defaults.
_LATER_FIELDS = ("evaluate_segments", "conditions", "family")

_HARD = SynthSpec(
    train_locations=3,
    evaluate_locations=24,
    segments_per_location=56,
    slices_per_segment=1,
    train_parallel=4,
    evaluate_parallel=1,
    evaluate_segments=1,
    conditions=Conditions(
        ambience_db=-6.0,
        colour_db=3.0,
        level_spread_db=4.0,
        pitch_octaves=0.3,
        silent_fraction=0.15,
        intruder_fraction=0.25,
        intruder_db=-6.0,
        device_colour=2.0,
        device_noise_db=10.0,
    ),
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
    # The demo's 2,280 train clips, but in 3 train locations per scene with 76 clips each (56 device-a segments,
    # 4 parallel ones), and 24 new evaluate locations per scene with one all-device segment each (2,160 evaluate
    # clips: enough to decide a point); locations, devices and other scenes colour the sound more than the scene
    # does (see conditions). 4,800 clips.
    "hard": _HARD,
    # The same sizes and strength of conditions, made by the other generator family (see cross): its devices,
    # rooms and scene textures share no family with the impulse responses the augmentation draws from.
    "cross": dataclasses.replace(_HARD, family="b"),
}


@dataclass(frozen=True)
class SynthRow:
    """One planned clip and its split: ``"train"``, ``"evaluate"`` or None (listed in meta.csv only)."""

    clip: ClipName
    split: str | None


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
        n_segments = spec.segments_of(location_split)
        parallel = set(rng.choice(n_segments, n_parallel, replace=False).tolist())
        for j in range(n_segments):
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
