"""The dataset index on a hand-written fixture in the real layout, and every bad input it must name."""

from __future__ import annotations

from pathlib import Path

import pytest

from asc.data.index import DatasetIndex, split_holdout
from asc.data.layout import DEVICES, SCENES, parse_clip_name
from asc.errors import AscError


def test_reads_the_real_layout(mini_root: Path) -> None:
    index = DatasetIndex(mini_root)
    assert len(index.meta) == 12
    assert index.cities == ("lisbon", "prague")
    train = index.records("train")
    assert [r.filename for r in train][:2] == [
        "audio/airport-lisbon-1000-40000-0-a.wav",
        "audio/airport-lisbon-1000-40000-0-b.wav",
    ]
    first = train[0]
    assert (first.label, first.device, first.city, first.identifier) == (0, 0, 0, "lisbon-1000")
    evaluate = index.records("evaluate")
    assert {DEVICES[r.device] for r in evaluate} == {"a", "c", "s4", "s5"}
    assert {SCENES[r.label] for r in evaluate} == {"airport", "bus", "park"}
    assert [r.filename for r in index.records("test")] == [r.filename for r in evaluate]
    # s6 of a training location is in meta.csv only, as in the real set.
    listed = {r.filename for split in ("train", "evaluate") for r in index.records(split)}
    assert "audio/park-lisbon-1020-42000-0-s6.wav" not in listed


def test_clip_name_parts() -> None:
    clip = parse_clip_name("audio/street_traffic-london-271-8243-9-s3.wav")
    assert (clip.scene, clip.identifier, clip.segment, clip.slice, clip.device) == (
        "street_traffic", "london-271", "8243", "9", "s3")
    assert clip.filename == "audio/street_traffic-london-271-8243-9-s3.wav"


def test_holdout_keeps_locations_apart(mini_root: Path) -> None:
    index = DatasetIndex(mini_root)
    records = index.records("train") + index.records("evaluate")
    train, validation = split_holdout(records, 0.5, seed=1)
    assert validation and train
    assert not {r.identifier for r in train} & {r.identifier for r in validation}
    assert len(train) + len(validation) == len(records)
    # Each scene has two locations here: one is held out, one stays for training.
    assert {SCENES[r.label] for r in train} == {SCENES[r.label] for r in validation} == {"airport", "bus", "park"}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _append(path: Path, line: str) -> None:
    with path.open("a") as handle:
        handle.write(line + "\n")


TRAIN, EVALUATE, TEST = (f"evaluation_setup/fold1_{name}.csv" for name in ("train", "evaluate", "test"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: (r / "meta.csv").unlink(), r"meta\.csv: file not found"),
        (lambda r: (r / "evaluation_setup/fold1_evaluate.csv").unlink(), r"fold1_evaluate\.csv: file not found"),
        (lambda r: _edit(r / "meta.csv", "\tsource_label", ""), r"meta\.csv:1: .*missing \['source_label'\]"),
        (lambda r: _edit(r / "meta.csv", "source_label", "source_label\tcity"), r"meta\.csv:1: .*extra \['city'\]"),
        (lambda r: _edit(r / "meta.csv", "b.wav\tairport", "b.wav\tbeach"),
         r"meta\.csv:3: unknown scene label 'beach'"),
        (lambda r: _edit(r / "meta.csv", "0-b.wav\tairport\tlisbon-1000\tb", "0-x.wav\tairport\tlisbon-1000\tb"),
         r"meta\.csv:3: .*unknown device suffix 'x'"),
        (lambda r: _edit(r / "meta.csv", "\tlisbon-1010\ta\n", "\tlisbon-1010\n"),
         r"meta\.csv:7: 3 columns, expected 4"),
        (lambda r: _edit(r / "evaluation_setup/fold1_train.csv", "1010-41000-0-a", "1010-41000-7-a"),
         r"fold1_train\.csv:5: 1 file\(s\) absent from meta\.csv, first 'audio/bus-lisbon-1010-41000-7-a\.wav'"),
        (lambda r: _edit(r / "evaluation_setup/fold1_train.csv", "0-a.wav\tbus", "0-a.wav\ttram"),
         r"fold1_train\.csv:5: scene 'tram' but meta\.csv line 7 says 'bus'"),
        (lambda r: _append(r / "meta.csv", "audio/airport-lisbon-1000-40000-0-b.wav\tairport\tlisbon-1000\tb"),
         r"meta\.csv:14: 'audio/airport-lisbon-1000-40000-0-b\.wav' is listed twice \(first on line 3\)$"),
        (lambda r: _append(r / TRAIN, "audio/bus-lisbon-1010-41000-0-a.wav\tbus"),
         r"fold1_train\.csv:8: 'audio/bus-lisbon-1010-41000-0-a\.wav' is listed twice \(first on line 5\)$"),
        (lambda r: _append(r / EVALUATE, "audio/park-prague-1021-42100-0-a.wav\tpark"),
         r"fold1_evaluate\.csv:7: 'audio/park-prague-1021-42100-0-a\.wav' is listed twice \(first on line 5\)$"),
        (lambda r: _append(r / TEST, "audio/airport-prague-1001-40100-0-a.wav"),
         r"fold1_test\.csv:7: 'audio/airport-prague-1001-40100-0-a\.wav' is listed twice \(first on line 2\)$"),
        (lambda r: _append(r / EVALUATE, "audio/bus-lisbon-1010-41000-1-a.wav\tbus"),
         r"fold1_evaluate\.csv:7: 'audio/bus-lisbon-1010-41000-1-a\.wav' is also in fold1_train\.csv line 6: "
         r"a clip may not be both trained and validated on$"),
    ],
)
def test_bad_layout_is_named(mini_root: Path, change, message: str) -> None:
    change(mini_root)
    with pytest.raises(AscError, match=message):
        DatasetIndex(mini_root)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(AscError, match=r"nowhere: dataset root not found"):
        DatasetIndex(tmp_path / "nowhere")


def test_missing_wav_names_file_and_meta_line(mini_root: Path) -> None:
    (mini_root / "audio/bus-lisbon-1010-41000-1-a.wav").unlink()
    index = DatasetIndex(mini_root)
    with pytest.raises(AscError, match=r"bus-lisbon-1010-41000-1-a\.wav: listed in meta\.csv line 8 but missing"):
        index.check_audio_exists(index.filenames("train"))


def test_a_byte_order_mark_is_accepted(mini_root: Path) -> None:
    """Spreadsheet programs write UTF-8 with a byte-order mark; the header still reads as filename."""
    for name in ("meta.csv", "evaluation_setup/fold1_train.csv"):
        path = mini_root / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    index = DatasetIndex(mini_root)
    assert len(index.records("train")) == 6


def test_a_file_that_is_not_utf8_is_named_with_its_line(mini_root: Path) -> None:
    path = mini_root / "meta.csv"
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"airport", b"a\xefroport")  # Latin-1 "ï"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(AscError, match=r"meta\.csv:4: not UTF-8 text \(byte 0xef\)"):
        DatasetIndex(mini_root)


def test_a_test_fold_repeating_the_evaluate_fold_is_the_official_split(mini_root: Path) -> None:
    """fold1_test.csv lists the evaluate clips again (as the official split does); only train/evaluate overlap."""
    index = DatasetIndex(mini_root)
    assert index.filenames("test") == index.filenames("evaluate")
    assert not set(index.filenames("train")) & set(index.filenames("evaluate"))


def test_an_evaluation_set_listing_a_clip_twice_is_named(tmp_path: Path) -> None:
    root = tmp_path / "eval"
    (root / "evaluation_setup").mkdir(parents=True)
    (root / TEST).write_text("filename\naudio/0.wav\naudio/1.wav\naudio/0.wav\n")
    with pytest.raises(AscError, match=r"fold1_test\.csv:4: 'audio/0\.wav' is listed twice \(first on line 2\)$"):
        DatasetIndex(root)
