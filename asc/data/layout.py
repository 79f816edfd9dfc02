"""The TAU Urban Acoustic Scenes 2022 Mobile development layout: names, orders and file-name parsing.

One place for the facts of the real dataset, so that the index reader, the built-in dataset and the
per-device metrics cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asc.errors import AscError

SCENES: tuple[str, ...] = (
    "airport",
    "bus",
    "metro",
    "metro_station",
    "park",
    "public_square",
    "shopping_mall",
    "street_pedestrian",
    "street_traffic",
    "tram",
)
DEVICES: tuple[str, ...] = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")
#: Device groups of the challenge: real devices, simulated devices seen in training, unseen ones.
DEVICE_GROUPS: dict[str, tuple[str, ...]] = {
    "real": ("a", "b", "c"),
    "seen_simulated": ("s1", "s2", "s3"),
    "unseen_simulated": ("s4", "s5", "s6"),
}
#: Devices that occur only in the evaluate split of the official setup.
UNSEEN_DEVICES: tuple[str, ...] = DEVICE_GROUPS["unseen_simulated"]

META_FILE = "meta.csv"
META_COLUMNS: tuple[str, ...] = ("filename", "scene_label", "identifier", "source_label")
SETUP_DIR = "evaluation_setup"
FOLD_FILES: dict[str, str] = {
    "train": f"{SETUP_DIR}/fold1_train.csv",
    "evaluate": f"{SETUP_DIR}/fold1_evaluate.csv",
    "test": f"{SETUP_DIR}/fold1_test.csv",
}
FOLD_COLUMNS: dict[str, tuple[str, ...]] = {
    "train": ("filename", "scene_label"),
    "evaluate": ("filename", "scene_label"),
    "test": ("filename",),
}
AUDIO_DIR = "audio"
NAME_PATTERN = "<scene>-<city>-<location>-<segment>-<slice>-<device>"
SAMPLE_RATE = 44_100
CLIP_SECONDS = 1.0

#: Sizes of the official development set, for ``asc synth --scale full`` and sanity checks.
OFFICIAL_SIZES: dict[str, int] = {"meta": 230_350, "train": 139_620, "evaluate": 29_680}


@dataclass(frozen=True)
class ClipName:
    """The parts of ``audio/<scene>-<city>-<location>-<segment>-<slice>-<device>.wav``."""

    scene: str
    city: str
    location: str
    segment: str
    slice: str
    device: str

    @property
    def identifier(self) -> str:
        """``<city>-<location>``, the recording location shared by its slices and devices."""
        return f"{self.city}-{self.location}"

    @property
    def filename(self) -> str:
        """The path relative to the dataset root, as listed in the CSV files."""
        parts = (self.scene, self.city, self.location, self.segment, self.slice, self.device)
        return f"{AUDIO_DIR}/{'-'.join(parts)}.wav"


def parse_clip_name(filename: str) -> ClipName:
    """Split a listed file name into its parts; raise AscError for a name not in the real layout."""
    stem = filename.rsplit("/", 1)[-1]
    if not filename.startswith(f"{AUDIO_DIR}/") or not stem.endswith(".wav"):
        raise AscError(f"{filename!r} is not of the form audio/{NAME_PATTERN}.wav")
    parts = stem[: -len(".wav")].split("-")
    if len(parts) != 6:
        raise AscError(f"{filename!r} has {len(parts)} dash-separated parts, expected 6 ({NAME_PATTERN})")
    scene, city, location, segment, slice_, device = parts
    if device not in DEVICES:
        raise AscError(f"{filename!r} has unknown device suffix {device!r} (expected one of {', '.join(DEVICES)})")
    return ClipName(scene, city, location, segment, slice_, device)


def beside_data(path: str | Path, root: str | Path | None) -> Path:
    """A file or folder that comes with the data (device responses): an absolute path as it is, a relative one
    in the data root, so a config names it once for any place the data lie."""
    path = Path(path).expanduser()
    return path if path.is_absolute() or root is None else Path(root) / path
