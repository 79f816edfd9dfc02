"""Read and validate the DCASE 2022 Task 1 development layout (meta.csv and the fold files).

Every check names the file and CSV line, because a researcher pointing the project at a copy of the
230,350-clip set must learn exactly which line is wrong instead of losing clips silently.

The index is held in columns (:class:`MetaTable`): one file name per clip and small integer arrays for its
scene, device, location and line, and each fold as positions into them. Every process that evaluates or
predicts reads the whole meta.csv, so its size matters at the real scale: per-clip Python records were about
0.8 KiB a clip (180 MiB for 230,350 clips), the columns are a fifth of that; the files are read line by line,
never held whole.
"""

from __future__ import annotations

import array
import contextlib
import csv
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asc.data.layout import (
    DEVICES,
    FOLD_COLUMNS,
    FOLD_FILES,
    META_COLUMNS,
    META_FILE,
    SCENES,
    parse_clip_name,
)
from asc.errors import AscError

VAL_SPLITS = ("evaluate", "holdout")


@dataclass(frozen=True, slots=True)
class ClipRecord:
    """One clip as the training code sees it: file, label and the device and city it came from."""

    filename: str
    label: int
    device: int
    city: int
    identifier: str


def _read_tsv(path: Path, expected: Sequence[str]) -> Iterator[tuple[int, list[str]]]:
    """Rows of a tab-separated file with an exact header, each with its 1-based line number, read as they come."""
    if not path.is_file():
        raise AscError(f"{path}: file not found")
    with contextlib.closing(_text_lines(path)) as lines:
        rows = csv.reader(lines, delimiter="\t")
        first = next(rows, None)
        if first is None:
            raise AscError(f"{path}: file is empty (expected header {' '.join(expected)})")
        header = [name.strip() for name in first]
        if header != list(expected):
            missing = [name for name in expected if name not in header]
            extra = [name for name in header if name not in expected]
            detail = "; ".join(
                part for part in (f"missing {missing}" if missing else "", f"extra {extra}" if extra else "") if part
            ) or "wrong column order"
            raise AscError(f"{path}:1: columns {header}, expected {list(expected)} ({detail})")
        for line_no, row in enumerate(rows, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(expected):
                raise AscError(f"{path}:{line_no}: {len(row)} columns, expected {len(expected)} ({' '.join(expected)})")
            yield line_no, [cell.strip() for cell in row]


def _text_lines(path: Path) -> Iterator[str]:
    """The file's lines as UTF-8 text, one at a time; a byte-order mark (as spreadsheet programs write) is
    dropped, and a file in another encoding is refused naming the first line that is not UTF-8."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise AscError(f"{path}:{number}: not UTF-8 text (byte 0x{raw[error.start]:02x}); "
                               "save the file as UTF-8") from None
            yield from text.splitlines(keepends=True)  # a lone carriage return ends a line too


@dataclass(frozen=True)
class MetaRow:
    filename: str
    scene: str
    identifier: str
    device: str
    line: int


class MetaTable(Mapping[str, MetaRow]):
    """meta.csv in columns, in file order: ``names[i]`` has scene ``SCENES[scene[i]]``, device
    ``DEVICES[device[i]]``, location ``identifiers[location[i]]`` and line ``line[i]``. As a mapping it
    gives each file name's :class:`MetaRow`."""

    def __init__(self, names: list[str], position: dict[str, int], scene: np.ndarray, device: np.ndarray,
                 location: np.ndarray, identifiers: list[str], line: np.ndarray) -> None:
        self.names, self.position, self.identifiers = names, position, identifiers  # position: name -> row
        self.scene, self.device, self.location, self.line = scene, device, location, line

    @classmethod
    def empty(cls) -> MetaTable:
        """The table of an evaluation set, which has no labelled meta.csv."""
        no_rows = np.zeros(0, np.int32)
        return cls([], {}, no_rows, no_rows, no_rows, [], no_rows)

    def __getitem__(self, filename: str) -> MetaRow:
        row = self.position[filename]
        return MetaRow(filename, SCENES[self.scene[row]], self.identifiers[self.location[row]],
                       DEVICES[self.device[row]], int(self.line[row]))

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)


def _integers(values: array.array, dtype: type) -> np.ndarray:
    return np.frombuffer(values, dtype=np.int32).astype(dtype)


class DatasetIndex:
    """meta.csv plus the fold-1 setup of one dataset root, validated once.

    ``records(split)`` returns the clips of ``train``, ``evaluate`` or ``test`` with label, device
    and city indices, so metrics can be computed per device and per city.

    A root laid out like the challenge's *evaluation* set (``audio/`` and ``fold1_test.csv``, no train or
    evaluate fold, and a ``meta.csv`` without labels or none at all) is read too: its clips, named
    like ``audio/0.wav``, carry no scene, device or city (-1), and only ``test`` (``asc predict``) exists.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise AscError(f"{self.root}: dataset root not found (expected meta.csv, evaluation_setup/, audio/)")
        self.labelled = not self._is_evaluation_set()
        self._train_lines: np.ndarray | None = None  # line of each meta.csv clip in the train fold (0: not in it)
        if self.labelled:
            self.meta = self._read_meta()
            self._folds: dict[str, np.ndarray | list[str]] = {split: self._read_fold(split) for split in FOLD_FILES}
        else:
            self.meta = MetaTable.empty()
            self._folds = {"test": self._read_unlabelled_test()}
        self.cities: tuple[str, ...] = tuple(sorted({location.split("-")[0] for location in self.meta.identifiers}))

    def _is_evaluation_set(self) -> bool:
        """No train or evaluate fold and no labels in meta.csv (or no meta.csv): the challenge's evaluation set."""
        if any((self.root / FOLD_FILES[split]).exists() for split in ("train", "evaluate")):
            return False
        meta = self.root / META_FILE
        if not meta.is_file():
            return True
        with contextlib.closing(_text_lines(meta)) as lines:
            first = next(lines, "")
        return "scene_label" not in [name.strip() for name in first.rstrip("\r\n").split("\t")]

    def _read_unlabelled_test(self) -> list[str]:
        path = self.root / FOLD_FILES["test"]
        filenames, seen = [], {}
        for line, (filename,) in _read_tsv(path, FOLD_COLUMNS["test"]):
            if filename in seen:
                raise AscError(f"{path}:{line}: {filename!r} is listed twice (first on line {seen[filename]})")
            seen[filename] = line
            filenames.append(filename)
        if not filenames:
            raise AscError(f"{path}: no clips listed")
        return filenames

    def _read_meta(self) -> MetaTable:
        path = self.root / META_FILE
        names: list[str] = []
        position: dict[str, int] = {}
        scenes, devices, locations, lines = (array.array("i") for _ in range(4))
        identifiers: dict[str, int] = {}
        for line, (filename, scene, identifier, device) in _read_tsv(path, META_COLUMNS):
            where = f"{path}:{line}"
            if scene not in SCENES:
                raise AscError(f"{where}: unknown scene label {scene!r} (expected one of {', '.join(SCENES)})")
            if device not in DEVICES:
                raise AscError(f"{where}: unknown device {device!r} (expected one of {', '.join(DEVICES)})")
            try:
                clip = parse_clip_name(filename)
            except AscError as error:
                raise AscError(f"{where}: {error}") from None
            if (clip.scene, clip.identifier, clip.device) != (scene, identifier, device):
                raise AscError(
                    f"{where}: columns ({scene}, {identifier}, {device}) disagree with the file name {filename!r}"
                )
            if filename in position:
                raise AscError(f"{where}: {filename!r} is listed twice (first on line {lines[position[filename]]})")
            position[filename] = len(names)
            names.append(filename)
            scenes.append(SCENES.index(scene))
            devices.append(DEVICES.index(device))
            locations.append(identifiers.setdefault(identifier, len(identifiers)))
            lines.append(line)
        if not names:
            raise AscError(f"{path}: no clips listed")
        return MetaTable(names, position, _integers(scenes, np.int8), _integers(devices, np.int8),
                         _integers(locations, np.int32), list(identifiers), _integers(lines, np.int32))

    def _read_fold(self, split: str) -> np.ndarray:
        """A fold file's clips (their positions in meta.csv), each in meta.csv with the same scene, none listed
        twice, and none of the evaluate fold in the train fold: a duplicate would weigh a clip twice and an
        overlap would validate on trained clips, both silently inflating the scores. (fold1_test.csv repeating
        fold1_evaluate.csv is the official split.)"""
        path, meta = self.root / FOLD_FILES[split], self.meta
        listed = np.zeros(len(meta), np.int32)  # the line each clip of meta.csv is listed on here (0: not yet)
        absent: dict[str, int] = {}
        positions = array.array("i")
        for line, cells in _read_tsv(path, FOLD_COLUMNS[split]):
            filename = cells[0]
            row = meta.position.get(filename)
            first = absent.get(filename) if row is None else int(listed[row]) or None
            if first is not None:
                raise AscError(f"{path}:{line}: {filename!r} is listed twice (first on line {first})")
            if row is None:
                absent[filename] = line
                continue
            self._check_not_trained(path, line, filename, row, split)
            listed[row] = line
            scene = SCENES[meta.scene[row]]
            if len(cells) > 1 and cells[1] != scene:
                raise AscError(f"{path}:{line}: scene {cells[1]!r} but meta.csv line {meta.line[row]} says {scene!r}")
            positions.append(row)
        if absent:
            filename, line = next(iter(absent.items()))
            raise AscError(f"{path}:{line}: {len(absent)} file(s) absent from meta.csv, first {filename!r}")
        if split == "train":
            self._train_lines = listed
        return _integers(positions, np.int32)

    def _check_not_trained(self, path: Path, line: int, filename: str, row: int, split: str) -> None:
        """Refuse a clip listed for validation while also trained on."""
        trained = self._train_lines
        if split == "evaluate" and trained is not None and trained[row]:
            raise AscError(f"{path}:{line}: {filename!r} is also in {Path(FOLD_FILES['train']).name} line "
                           f"{trained[row]}: a clip may not be both trained and validated on")

    def filenames(self, split: str) -> list[str]:
        """File names of a fold file, in its order."""
        if split not in FOLD_FILES:
            raise AscError(f"unknown split {split!r} (expected one of {', '.join(FOLD_FILES)})")
        if split not in self._folds:
            raise AscError(f"{self.root}: an evaluation set (fold1_test.csv, no labels) has no {split} split; "
                           f"only asc predict can use it")
        fold = self._folds[split]
        if isinstance(fold, list):
            return list(fold)
        names = self.meta.names
        return [names[row] for row in fold.tolist()]

    def splits(self) -> list[str]:
        """The fold files this root has: all three for the development set, ``test`` for an evaluation set."""
        return list(self._folds)

    def records(self, split: str) -> list[ClipRecord]:
        """The clips of a split with integer label, device and city."""
        names = self.filenames(split)
        if not self.labelled:
            return [ClipRecord(filename=name, label=-1, device=-1, city=-1, identifier="") for name in names]
        meta, rows = self.meta, self._folds[split]
        city_of = np.array([self.cities.index(location.split("-")[0]) for location in meta.identifiers], np.int32)
        locations = meta.location[rows]
        columns = zip(names, meta.scene[rows].tolist(), meta.device[rows].tolist(), city_of[locations].tolist(),
                      locations.tolist(), strict=True)
        return [ClipRecord(name, label, device, city, meta.identifiers[location])
                for name, label, device, city, location in columns]

    def record(self, filename: str) -> ClipRecord:
        if not self.labelled:
            return ClipRecord(filename=filename, label=-1, device=-1, city=-1, identifier="")
        row = self.meta[filename]
        return ClipRecord(
            filename=filename,
            label=SCENES.index(row.scene),
            device=DEVICES.index(row.device),
            city=self.cities.index(row.identifier.split("-")[0]),
            identifier=row.identifier,
        )

    def check_audio_exists(self, filenames: Iterable[str]) -> None:
        """Fail before any work if a listed WAV is missing, naming the count, the first one and its meta line."""
        missing = [name for name in filenames if not (self.root / name).is_file()]
        if missing:
            first = missing[0]
            where = f"{META_FILE} line {self.meta[first].line}" if first in self.meta else FOLD_FILES["test"]
            raise AscError(
                f"{self.root / first}: listed in {where} but missing"
                + (f" ({len(missing)} listed WAVs missing in all)" if len(missing) > 1 else "")
            )


def split_holdout(
    records: Sequence[ClipRecord], fraction: float, seed: int = 0
) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """Hold out whole recording locations of each scene, so that no location leaks into validation.

    Returns ``(train, validation)``. Each scene keeps at least one location in training.
    """
    if not 0.0 < fraction < 1.0:
        raise AscError(f"data.holdout_fraction: {fraction} is not between 0 and 1")
    by_scene: dict[int, set[str]] = {}
    for record in records:
        by_scene.setdefault(record.label, set()).add(record.identifier)
    rng = random.Random(seed)
    held: set[str] = set()
    for label in sorted(by_scene):
        locations = sorted(by_scene[label])
        count = min(len(locations) - 1, max(1, round(fraction * len(locations))))
        held.update(rng.sample(locations, count))
    train = [r for r in records if r.identifier not in held]
    validation = [r for r in records if r.identifier in held]
    return train, validation
