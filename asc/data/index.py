"""Read and validate the DCASE 2022 Task 1 development layout (meta.csv and the fold files).

Every check names the file and CSV line, because a researcher pointing the project at a copy of the
230,350-clip set must learn exactly which line is wrong instead of losing clips silently.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class ClipRecord:
    """One clip as the training code sees it: file, label and the device and city it came from."""

    filename: str
    label: int
    device: int
    city: int
    identifier: str


def _read_tsv(path: Path, expected: Sequence[str]) -> list[tuple[int, list[str]]]:
    """Rows of a tab-separated file with an exact header, each with its 1-based line number."""
    if not path.is_file():
        raise AscError(f"{path}: file not found")
    rows = list(csv.reader(_text_lines(path), delimiter="\t"))
    if not rows:
        raise AscError(f"{path}: file is empty (expected header {' '.join(expected)})")
    header = [name.strip() for name in rows[0]]
    if header != list(expected):
        missing = [name for name in expected if name not in header]
        extra = [name for name in header if name not in expected]
        detail = "; ".join(
            part for part in (f"missing {missing}" if missing else "", f"extra {extra}" if extra else "") if part
        ) or "wrong column order"
        raise AscError(f"{path}:1: columns {header}, expected {list(expected)} ({detail})")
    body = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(expected):
            raise AscError(f"{path}:{line_no}: {len(row)} columns, expected {len(expected)} ({' '.join(expected)})")
        body.append((line_no, [cell.strip() for cell in row]))
    return body


def _text_lines(path: Path) -> list[str]:
    """The file's lines as UTF-8 text; a byte-order mark (as spreadsheet programs write) is dropped, and a
    file in another encoding is refused naming the first line that is not UTF-8."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        byte = data[error.start]
        raise AscError(f"{path}:{line}: not UTF-8 text (byte 0x{byte:02x}); save the file as UTF-8") from None
    return text.splitlines(keepends=True)


@dataclass(frozen=True)
class MetaRow:
    filename: str
    scene: str
    identifier: str
    device: str
    line: int


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
        self._fold_lines: dict[str, dict[str, int]] = {}  # line of each clip in each fold file read so far
        if self.labelled:
            self.meta = self._read_meta()
            self._folds: dict[str, list[str]] = {split: self._read_fold(split) for split in FOLD_FILES}
        else:
            self.meta = {}
            self._folds = {"test": self._read_unlabelled_test()}
        self.cities: tuple[str, ...] = tuple(sorted({row.identifier.split("-")[0] for row in self.meta.values()}))

    def _is_evaluation_set(self) -> bool:
        """No train or evaluate fold and no labels in meta.csv (or no meta.csv): the challenge's evaluation set."""
        if any((self.root / FOLD_FILES[split]).exists() for split in ("train", "evaluate")):
            return False
        meta = self.root / META_FILE
        if not meta.is_file():
            return True
        lines = _text_lines(meta)
        return not lines or "scene_label" not in [name.strip() for name in lines[0].rstrip("\r\n").split("\t")]

    def _read_unlabelled_test(self) -> list[str]:
        path = self.root / FOLD_FILES["test"]
        filenames, seen = [], {}
        for line, (filename,) in _read_tsv(path, FOLD_COLUMNS["test"]):
            self._check_listed_once(path, line, filename, seen, "test")
            seen[filename] = line
            filenames.append(filename)
        if not filenames:
            raise AscError(f"{path}: no clips listed")
        return filenames

    def _read_meta(self) -> dict[str, MetaRow]:
        path = self.root / META_FILE
        meta: dict[str, MetaRow] = {}
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
            if filename in meta:
                raise AscError(f"{where}: {filename!r} is listed twice (first on line {meta[filename].line})")
            meta[filename] = MetaRow(filename, scene, identifier, device, line)
        if not meta:
            raise AscError(f"{path}: no clips listed")
        return meta

    def _read_fold(self, split: str) -> list[str]:
        """A fold file's clips, each in meta.csv with the same scene, none listed twice, and none of the evaluate
        fold in the train fold: a duplicate would weigh a clip twice and an overlap would validate on trained
        clips, both silently inflating the scores. (fold1_test.csv repeating fold1_evaluate.csv is the
        official split.)"""
        path = self.root / FOLD_FILES[split]
        lines: dict[str, int] = {}
        absent = []
        for line, cells in _read_tsv(path, FOLD_COLUMNS[split]):
            filename = cells[0]
            self._check_listed_once(path, line, filename, lines, split)
            lines[filename] = line
            row = self.meta.get(filename)
            if row is None:
                absent.append((line, filename))
                continue
            if len(cells) > 1 and cells[1] != row.scene:
                raise AscError(f"{path}:{line}: scene {cells[1]!r} but meta.csv line {row.line} says {row.scene!r}")
        if absent:
            line, filename = absent[0]
            raise AscError(f"{path}:{line}: {len(absent)} file(s) absent from meta.csv, first {filename!r}")
        self._fold_lines[split] = lines
        return list(lines)

    def _check_listed_once(self, path: Path, line: int, filename: str, lines: dict[str, int], split: str) -> None:
        """Refuse a clip listed twice in one fold file, or listed for validation while also trained on."""
        if filename in lines:
            raise AscError(f"{path}:{line}: {filename!r} is listed twice (first on line {lines[filename]})")
        trained = self._fold_lines.get("train", {})
        if split == "evaluate" and filename in trained:
            raise AscError(f"{path}:{line}: {filename!r} is also in {Path(FOLD_FILES['train']).name} line "
                           f"{trained[filename]}: a clip may not be both trained and validated on")

    def filenames(self, split: str) -> list[str]:
        """File names of a fold file, in its order."""
        if split not in FOLD_FILES:
            raise AscError(f"unknown split {split!r} (expected one of {', '.join(FOLD_FILES)})")
        if split not in self._folds:
            raise AscError(f"{self.root}: an evaluation set (fold1_test.csv, no labels) has no {split} split; "
                           f"only asc predict can use it")
        return list(self._folds[split])

    def splits(self) -> list[str]:
        """The fold files this root has: all three for the development set, ``test`` for an evaluation set."""
        return list(self._folds)

    def records(self, split: str) -> list[ClipRecord]:
        """The clips of a split with integer label, device and city."""
        return [self.record(name) for name in self.filenames(split)]

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
