"""Faults and mistakes end in one line, never a traceback, and a write that cannot happen leaves no partial
file: checkpoints, reports and exports on a full disk; bad settings; malformed config files; errors in a
loader worker; files that are not checkpoints."""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asc.files import sha256_file
from tests.helpers import FAST, config, one_error_line, run, tandem_checkpoint

NO_SPACE = OSError(errno.ENOSPC, "No space left on device")


def partials(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.partial-*"))


@pytest.mark.slow
def test_a_full_disk_while_saving_a_checkpoint_keeps_the_last_good_one(mini_root: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    common = [*config("linear"), "--data.root", str(mini_root), "--trainer.default_root_dir", str(out), *FAST]
    run("fit", *common)
    last = out / "checkpoints" / "last.ckpt"
    before = sha256_file(last)

    def half_written(checkpoint: dict, path: str) -> None:  # what a disk filling up mid-write leaves
        Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise NO_SPACE

    monkeypatch.setattr("lightning.fabric.plugins.io.torch_io._atomic_save", half_written)
    line = one_error_line(capsys, "fit", *common, "--trainer.max_epochs=2", "--ckpt_path", str(last))
    assert "cannot write the checkpoint (No space left on device; free some space or write elsewhere)" in line, line
    assert line.startswith(f"asc: error: {out / 'checkpoints'}"), line
    assert sha256_file(last) == before and not partials(out)


def test_a_full_disk_while_writing_a_report_leaves_no_partial_file(mini_root: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    run("fit", *config("linear"), "--data.root", str(mini_root), "--trainer.default_root_dir", str(out), *FAST)

    def full(_descriptor: int) -> None:
        raise NO_SPACE

    monkeypatch.setattr("asc.files.os.fsync", full)
    line = one_error_line(capsys, "test", "--ckpt_path", str(out / "checkpoints" / "last.ckpt"))
    assert f"{out / 'test'}" in line and "No space left on device" in line, line
    assert not partials(out) and not (out / "test" / "metrics.json").exists()


def test_an_export_that_cannot_be_written_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    ckpt = tandem_checkpoint(tmp_path / "tandem.ckpt")
    (tmp_path / "out").mkdir()

    def full(*_args, **_kwargs) -> None:
        (tmp_path / "out").joinpath("stray").write_text("")  # the folder is written into, then the disk is full
        raise NO_SPACE

    monkeypatch.setattr("torch.onnx.export", full)
    line = one_error_line(capsys, "export", "--ckpt_path", str(ckpt), "--out", str(tmp_path / "out" / "model.onnx"))
    assert line.startswith(f"asc: error: {tmp_path / 'out' / 'model.onnx'}: cannot write the ONNX file (No space")
    assert not partials(tmp_path) and not (tmp_path / "out" / "model.onnx").exists()
    # A folder that cannot be written into is refused before any work (as a read-only mount is, root or not).
    monkeypatch.setattr("asc.files.os.access", lambda path, mode: Path(path) != tmp_path / "out")
    line = one_error_line(capsys, "export", "--ckpt_path", str(ckpt), "--out", str(tmp_path / "out" / "model.onnx"))
    assert line == f"asc: error: --out: cannot write into {tmp_path / 'out'} (Permission denied)"


def test_settings_are_checked_before_a_logger_starts(mini_root: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    common = [*config("linear"), "--data.root", str(mini_root), "--trainer.default_root_dir", str(tmp_path / "r")]
    cases = {"--data.eval_batch_size=-1": "data.eval_batch_size: -1 must be at least 1",
             "--data.num_workers=-2": "data.num_workers: -2 must be 0 or more",
             "--data.holdout_fraction=1.5": "data.holdout_fraction: 1.5 is not between 0 and 1"}
    for flag, message in cases.items():
        extra = ["--data.val_split=holdout"] if "holdout" in flag else []
        assert one_error_line(capsys, "fit", *common, flag, *extra) == f"asc: error: {message}"


def test_a_config_file_that_is_not_yaml_is_named_with_its_line(mini_root: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_epochs: [1\n")
    line = one_error_line(capsys, "fit", *config("linear"), "--config", str(bad), "--data.root", str(mini_root))
    assert line.startswith(f"asc: error: {bad}:3: not valid YAML ("), line
    line = one_error_line(capsys, "fit", "--config", str(tmp_path / "none.yaml"), "--data.root", str(mini_root))
    assert line == f"asc: error: --config {tmp_path / 'none.yaml'}: file not found"


@pytest.mark.slow
def test_an_error_in_a_loader_worker_is_the_projects_one_line(mini_root: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    """A clip whose header is fine but whose samples are not: found by a DataLoader worker computing features
    on the fly, whose traceback torch would print as the message."""
    clip = mini_root / "audio" / "airport-lisbon-1000-40000-0-a.wav"
    samples = np.zeros(44_100, dtype=np.float32)
    samples[100] = np.nan
    soundfile.write(clip, samples, 44_100, subtype="FLOAT")
    line = one_error_line(capsys, "fit", *config("linear"), "--data.root", str(mini_root), *FAST,
                          "--trainer.default_root_dir", str(tmp_path / "r"), "--data.cache=false",
                          "--data.num_workers=1", "--data.batch_size=2")  # every clip in the epoch
    assert line == f"asc: error: {clip}: audio contains NaN or inf samples", line


def test_files_that_are_not_checkpoints_get_the_projects_words(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    class Crafted:
        def __reduce__(self):
            return (print, ("\x1b[2J",))

    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    crafted = tmp_path / "crafted\x1b[31m.ckpt"
    crafted.write_bytes(pickle.dumps({"state_dict": Crafted()}))
    line = one_error_line(capsys, "complexity", "--ckpt_path", str(text))
    assert line == (f"asc: error: {text}: not a readable checkpoint (torch.save writes a zip archive; this file of "
                    f"17 bytes starts with b'not ')")
    line = one_error_line(capsys, "complexity", "--ckpt_path", str(crafted))
    assert "refused" in line and "could run code" in line and "weights_only" not in line, line
    assert "\x1b" not in line and "crafted\\x1b[31m.ckpt" in line  # the escape code is shown, not obeyed
