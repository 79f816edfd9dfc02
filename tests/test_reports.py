"""Evaluation never scores a network no checkpoint gave, and a report says what it measured: the checkpoint
(path and content), the split, the absolute data root, the clips and the asc version; it never replaces the
report of another checkpoint, split or data set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from asc import __version__
from asc.files import sha256_file
from tests.helpers import FAST, config, make_mini_root, one_error_line, run

pytestmark = pytest.mark.slow  # every test starts from the module's trained stages


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A linear and a tandem stage fit for one epoch, the tandem tested once; the tests copy what they change."""
    folder = tmp_path_factory.mktemp("trained")
    root = make_mini_root(folder / "tau_mini")
    linear, tandem = folder / "linear", folder / "tandem"
    run("fit", *config("linear"), "--data.root", str(root), "--trainer.default_root_dir", str(linear), *FAST)
    run("fit", *config("tandem"), "--data.root", str(root), "--trainer.default_root_dir", str(tandem),
        "--model.width=1", f"--model.init_ckpt={linear / 'checkpoints' / 'last.ckpt'}", *FAST)
    run("test", "--ckpt_path", str(tandem / "checkpoints" / "last.ckpt"))
    return {"root": root, "linear": linear, "tandem": tandem}


def copy_run(trained: dict[str, Path], stage: str, to: Path) -> Path:
    shutil.copytree(trained[stage], to)
    return to


@pytest.mark.parametrize("command", ["test", "validate", "predict"])
def test_evaluation_without_a_checkpoint_stops_and_leaves_the_reports(trained: dict[str, Path], tmp_path: Path,
                                                                      command: str,
                                                                      capsys: pytest.CaptureFixture) -> None:
    folder = copy_run(trained, "tandem", tmp_path / "tandem")
    before = (folder / "test" / "metrics.json").read_bytes()
    line = one_error_line(capsys, command, *config("tandem"), "--data.root", str(trained["root"]),
                          "--trainer.default_root_dir", str(folder))
    assert line.startswith(f"asc: error: --ckpt_path: not set; asc {command} evaluates a trained network"), line
    assert (folder / "test" / "metrics.json").read_bytes() == before
    assert not (folder / "submission.csv").exists()


def test_a_report_says_what_it_measured(trained: dict[str, Path]) -> None:
    ckpt = trained["tandem"] / "checkpoints" / "last.ckpt"
    report = json.loads((trained["tandem"] / "test" / "metrics.json").read_text())
    assert report["measured"] == {"checkpoint": str(ckpt.resolve()), "checkpoint_sha256": sha256_file(ckpt),
                                  "split": "evaluate", "data_root": str(trained["root"].resolve()), "clips": 5,
                                  "asc_version": __version__}
    assert report["clips"] == 5


def test_another_split_gets_its_own_report_folder(trained: dict[str, Path], tmp_path: Path) -> None:
    folder = copy_run(trained, "tandem", tmp_path / "tandem")
    before = (folder / "test" / "metrics.json").read_bytes()
    run("test", "--ckpt_path", str(folder / "checkpoints" / "last.ckpt"), "--data.test_split", "train")
    assert (folder / "test" / "metrics.json").read_bytes() == before
    on_train = json.loads((folder / "test-train" / "metrics.json").read_text())
    assert on_train["measured"]["split"] == "train" and on_train["clips"] == 6


def test_the_report_of_another_checkpoint_is_never_replaced(trained: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    folder = copy_run(trained, "tandem", tmp_path / "tandem")
    before = (folder / "test" / "metrics.json").read_bytes()
    linear = str(trained["linear"] / "checkpoints" / "last.ckpt")
    line = one_error_line(capsys, "test", "--ckpt_path", linear, "--trainer.default_root_dir", str(folder))
    assert f"{folder / 'test' / 'metrics.json'}: holds the report of another measurement (checkpoint " in line, line
    assert "give --trainer.default_root_dir another folder" in line
    assert (folder / "test" / "metrics.json").read_bytes() == before
    # Another data set: refused too, naming the data roots.
    other = make_mini_root(tmp_path / "other_data")
    line = one_error_line(capsys, "test", "--ckpt_path", str(folder / "checkpoints" / "last.ckpt"),
                          "--data.root", str(other))
    assert f"data_root {trained['root'].resolve()}" in line and f"data_root {other.resolve()}" in line, line
    assert (folder / "test" / "metrics.json").read_bytes() == before
    assert not (other / ".asc_cache").exists()  # refused before any feature was computed


def test_a_refit_checkpoint_replaces_its_report_and_says_so(trained: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    folder = copy_run(trained, "tandem", tmp_path / "tandem")
    ckpt = folder / "checkpoints" / "last.ckpt"
    run("test", "--ckpt_path", str(ckpt))  # the same checkpoint, moved: replaced without a word
    assert "replacing" not in capsys.readouterr().out
    before = sha256_file(ckpt)
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["state_dict"]["model.cnn.head.bias"] = checkpoint["state_dict"]["model.cnn.head.bias"] + 1
    torch.save(checkpoint, ckpt)
    run("test", "--ckpt_path", str(ckpt))
    out = capsys.readouterr().out
    assert f"replacing the report of an earlier last.ckpt (sha256 {before[:12]} -> {sha256_file(ckpt)[:12]})" in out
    assert json.loads((folder / "test" / "metrics.json").read_text())["measured"]["checkpoint_sha256"] == \
        sha256_file(ckpt)


def test_data_roots_are_stored_absolute(trained: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    """A checkpoint fit with a relative --data.root tests the same data from any working folder; when that data
    is gone, it stops naming both instead of testing whatever lies at the relative path."""
    here = tmp_path / "here"
    make_mini_root(here / "data")
    monkeypatch.chdir(here)
    run("fit", *config("linear"), "--data.root", "data", "--trainer.default_root_dir", str(tmp_path / "run"), *FAST)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["datamodule_hyper_parameters"]["root"] == str(here / "data")
    elsewhere = tmp_path / "elsewhere"
    make_mini_root(elsewhere / "data")  # another data set at the same relative path
    monkeypatch.chdir(elsewhere)
    run("test", "--ckpt_path", str(ckpt))
    measured = json.loads((tmp_path / "run" / "test" / "metrics.json").read_text())["measured"]
    assert measured["data_root"] == str(here / "data")
    # A stage's config names no data root: the checkpoint's stays the default.
    run("test", *config("linear"), "--ckpt_path", str(ckpt), "--trainer.default_root_dir", str(tmp_path / "run"))
    shutil.rmtree(here / "data")
    line = one_error_line(capsys, "test", "--ckpt_path", str(ckpt))
    assert line == f"asc: error: --ckpt_path {ckpt}: its data root {here / 'data'} is gone; give --data.root DIR"
    run("test", "--ckpt_path", str(ckpt), "--data.root", str(elsewhere / "data"),
        "--trainer.default_root_dir", str(tmp_path / "elsewhere_run"))


def test_the_data_root_may_come_from_the_environment(trained: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("ASC_DATA_ROOT", str(trained["root"]))
    run("fit", *config("linear"), "--trainer.default_root_dir", str(tmp_path / "run"), *FAST)
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["datamodule_hyper_parameters"]["root"] == str(trained["root"].resolve())
    monkeypatch.delenv("ASC_DATA_ROOT")
    line = one_error_line(capsys, "fit", *config("linear"), "--trainer.default_root_dir", str(tmp_path / "r2"))
    assert "data.root: not set" in line and "ASC_DATA_ROOT" in line, line


def test_a_stage_config_with_another_stages_checkpoint_is_one_line(trained: dict[str, Path],
                                                                   capsys: pytest.CaptureFixture,
                                                                   tmp_path: Path) -> None:
    linear = trained["linear"] / "checkpoints" / "last.ckpt"
    line = one_error_line(capsys, "test", *config("tandem"), "--ckpt_path", str(linear), "--data.root",
                          str(trained["root"]), "--trainer.default_root_dir", str(tmp_path / "x"))
    assert "a checkpoint of LinearStage, but the config's model is TandemStage" in line, line
