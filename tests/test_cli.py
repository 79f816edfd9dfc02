"""Command-line round trip on a tiny dataset: fit linear -> fit tandem -> test -> predict -> complexity."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch

from asc import load_model
from asc.cli.main import main
from asc.data.layout import SCENES
from tests.helpers import FAST, config, run, write_tone
from tests.helpers import one_error_line as _error

#: They train networks or run pipelines (seconds each): out of `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture
def runs(mini_root: Path, tmp_path: Path) -> dict[str, Path]:
    """A linear and a tandem stage trained for one epoch through the CLI."""
    linear, tandem = tmp_path / "linear", tmp_path / "tandem"
    run("fit", *config("linear"), "--data.root", str(mini_root), "--trainer.default_root_dir", str(linear), *FAST)
    run("fit", *config("tandem"), "--data.root", str(mini_root), "--trainer.default_root_dir", str(tandem),
        "--model.width=1", f"--model.init_ckpt={linear / 'checkpoints' / 'last.ckpt'}", *FAST)
    return {"root": mini_root, "linear": linear, "tandem": tandem}


def test_fit_test_predict_round_trip(runs: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    tandem, ckpt = runs["tandem"], runs["tandem"] / "checkpoints" / "last.ckpt"
    assert (tandem / "config.yaml").is_file()
    capsys.readouterr()
    # The checkpoint carries its architecture and front end: the stage's config is used, and the linear
    # checkpoint it started from is not read again.
    run("test", *config("tandem"), "--data.root", str(runs["root"]),
        "--trainer.default_root_dir", str(tandem), "--ckpt_path", str(ckpt))
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert last_line == f"test report written to {(tandem / 'test').resolve()}"
    metrics = json.loads((tandem / "test" / "metrics.json").read_text())
    for key in ("accuracy", "log_loss", "accuracy_per_device", "accuracy_per_class", "params", "macs", "bits"):
        assert key in metrics
    assert metrics["bits"] == 32 and metrics["clips"] == 5 and metrics["clips_per_device"]["s4"] == 1
    assert set(metrics["accuracy_per_device"]) == {"a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"}
    with (tandem / "test" / "confusion.csv").open() as handle:
        confusion = [[int(cell) for cell in row[1:]] for row in list(csv.reader(handle))[1:]]
    assert sum(map(sum, confusion)) == 5 and sum(confusion[i][i] for i in range(10)) / 5 == metrics["accuracy"]
    with (tandem / "test" / "per_device.csv").open() as handle:
        header, row = list(csv.reader(handle))
    assert header[0] == "model" and row[-1] == f"{100 * metrics['accuracy']:.2f}"
    assert (tandem / "test" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| Tandem |" in (tandem / "test" / "per_device.md").read_text()

    run("predict", *config("tandem"), "--data.root", str(runs["root"]),
        "--trainer.default_root_dir", str(tandem), "--ckpt_path", str(ckpt))
    with (tandem / "submission.csv").open() as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows[0] == ["filename", "scene_label", *SCENES]
    assert [row[0] for row in rows[1:]] == [
        "airport-prague-1001-40100-0-a.wav", "airport-prague-1001-40100-0-s4.wav", "bus-prague-1011-41100-0-c.wav",
        "park-prague-1021-42100-0-a.wav", "park-prague-1021-42100-0-s5.wav"]
    for row in rows[1:]:
        probabilities = [float(p) for p in row[2:]]
        assert abs(sum(probabilities) - 1) < 1e-4
        assert row[1] == SCENES[probabilities.index(max(probabilities))]

    model = load_model(ckpt)
    assert type(model).__name__ == "Tandem" and not model.training
    capsys.readouterr()
    run("complexity", "--ckpt_path", str(ckpt), "--json")
    counted = json.loads(capsys.readouterr().out)
    assert counted["params"] == metrics["params"] and counted["macs"] == metrics["macs"]


def test_rerun_into_the_same_folder_works(runs: dict[str, Path]) -> None:
    run("fit", *config("linear"), "--data.root", str(runs["root"]), "--trainer.default_root_dir", str(runs["linear"]),
        *FAST)


def test_bad_input_gets_one_line(runs: dict[str, Path], capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    root, linear_ckpt = str(runs["root"]), str(runs["linear"] / "checkpoints" / "last.ckpt")
    tandem_ckpt = str(runs["tandem"] / "checkpoints" / "last.ckpt")
    base = ["fit", *config("tandem"), "--data.root", root, "--trainer.default_root_dir", str(tmp_path / "x"), *FAST]
    assert "config key model.widht" in _error(capsys, *base, "--model.widht=2")
    # A truncated key is a typo too, not a silent abbreviation of trainer.max_epochs.
    assert "unrecognized arguments: --trainer.max_epoch" in _error(capsys, *base, "--trainer.max_epoch=2")
    assert "model.init_ckpt" in _error(capsys, *base, f"--model.init_ckpt={tandem_ckpt}")
    # The bands come from data.features alone; a linear checkpoint of other log-mels is refused by name.
    assert "n_mels 256 vs 64" in _error(capsys, *base, f"--model.init_ckpt={linear_ckpt}", "--data.features.n_mels=64")
    assert "checkpoint not found" in _error(capsys, "complexity", "--ckpt_path", str(tmp_path / "none.ckpt"))
    assert "dataset root not found" in _error(capsys, "cache", str(tmp_path / "nowhere"))
    # Without the warm-up a huge learning rate blows the loss up within a few steps.
    line = _error(capsys, "fit", *config("linear"), "--data.root", root, "--model.schedule.warmup_epochs=0",
                  "--trainer.default_root_dir", str(tmp_path / "nan"), "--model.lr=1e30", *FAST,
                  "--trainer.max_epochs=20")
    assert re.fullmatch(r"asc: error: training loss became (nan|inf) at epoch \d+, step \d+ .*", line), line


def test_checkpoints_and_onnx_files_that_cannot_be_read_get_one_line(runs: dict[str, Path], tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    root = str(runs["root"])
    good = (runs["tandem"] / "checkpoints" / "last.ckpt").read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(good[: len(good) // 3])
    (tmp_path / "text.ckpt").write_text("not a checkpoint\n")
    (tmp_path / "garbage.onnx").write_bytes(b"\x08\x07garbage")
    cases = {
        ("test", "none.ckpt"): "none.ckpt: checkpoint not found",
        ("fit", "none.ckpt"): "none.ckpt: checkpoint not found",
        ("test", "truncated.ckpt"): "truncated.ckpt: not a readable checkpoint",
        ("predict", "text.ckpt"): "text.ckpt: not a readable checkpoint",
        ("test", "garbage.onnx"): "garbage.onnx: not a readable ONNX model",
    }
    for (command, name), message in cases.items():
        line = _error(capsys, command, *config("tandem"), "--data.root", root, "--ckpt_path", str(tmp_path / name),
                      "--trainer.default_root_dir", str(tmp_path / "out"))
        assert message in line, line


@pytest.mark.usefixtures("wandb_offline")
def test_a_resumed_fit_repeats_the_uninterrupted_one(mini_root: Path, tmp_path: Path) -> None:
    """Same seed, same data order and augmentations from the resumed epoch, same weights; and one W&B run."""
    import torch

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    common = [*config("tandem"), "--data.root", str(mini_root), "--model.width=1", "--model.init_ckpt=null",
              "--data.batch_size=2",
              "--data.cache_workers=0", "--data.progress=false", "--trainer.max_epochs=3"]
    run("fit", *common, "--trainer.default_root_dir", str(whole))
    run("fit", *common, "--trainer.default_root_dir", str(parts), "--trainer.max_steps=3")  # stopped after epoch 1
    assert torch.load(parts / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    last = str(parts / "checkpoints" / "last.ckpt")
    run("fit", *common, "--trainer.default_root_dir", str(parts), "--ckpt_path", last)
    ours, theirs = (torch.load(p / "checkpoints" / "last.ckpt", weights_only=True) for p in (parts, whole))
    assert ours["epoch"] == theirs["epoch"] == 2
    assert all(torch.equal(ours["state_dict"][k], theirs["state_dict"][k]) for k in theirs["state_dict"])
    runs = sorted((parts / "wandb").glob("offline-run-*"))
    # offline-run-<date>_<time>-<id>, and "-1" after it when both runs started in the same second
    ids = {run.name.split("-")[3] for run in runs}
    assert len(runs) == 2 and len(ids) == 1, [run.name for run in runs]  # resumed: the same run id


def test_an_output_folder_that_cannot_be_written_gets_one_line(mini_root: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    import os

    (tmp_path / "a_file").write_text("")
    cases = [(tmp_path / "a_file" / "run", "trainer.default_root_dir: cannot create")]
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append((locked / "run", "trainer.default_root_dir: cannot create"))
    for folder, message in cases:
        line = _error(capsys, "fit", *config("linear"), "--data.root", str(mini_root),
                      "--trainer.default_root_dir", str(folder), *FAST)
        assert message in line and str(folder) in line, line


def test_a_fit_prints_one_line_per_epoch(mini_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run("fit", *config("linear"), "--data.root", str(mini_root), "--trainer.default_root_dir", str(tmp_path / "l"),
        *FAST, "--trainer.max_epochs=2")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2, lines
    final = json.loads((tmp_path / "l" / "fit_metrics.json").read_text())  # readable without W&B's reader
    assert final["epoch"] == 2 and "train/loss" in final["metrics"]
    assert lines[1].split("val accuracy ")[1].startswith(f"{100 * final['metrics']['val/accuracy']:.2f} %")
    with (tmp_path / "l" / "history.csv").open() as handle:  # the same figures, per epoch, for asc plot's curves
        history = list(csv.DictReader(handle))
    assert [row["epoch"] for row in history] == ["1", "2"]
    assert float(history[1]["val_accuracy"]) == pytest.approx(final["metrics"]["val/accuracy"])
    assert main(["--version"]) == 0 and capsys.readouterr().out.startswith("asc 0.")
    assert re.fullmatch(r"epoch 1/2: train loss \d+\.\d{4}, val accuracy \d+\.\d\d %, \d+\.\d s", lines[0]), lines
    assert lines[1].startswith("epoch 2/2: ")


@pytest.mark.parametrize("meta", ["none", "unlabelled"])
def test_predict_scores_the_official_evaluation_set(runs: dict[str, Path], tmp_path: Path, meta: str,
                                                    capsys: pytest.CaptureFixture) -> None:
    """A root laid out like the challenge's evaluation set: audio/<n>.wav, fold1_test.csv, no labels."""
    root = tmp_path / "evaluation"
    names = [f"audio/{n}.wav" for n in range(5)]
    for seed, name in enumerate(names):
        write_tone(root / name, seed)
    (root / "evaluation_setup").mkdir()
    (root / "evaluation_setup" / "fold1_test.csv").write_text("filename\n" + "\n".join(names) + "\n")
    if meta == "unlabelled":
        (root / "meta.csv").write_text("filename\n" + "\n".join(names) + "\n")
    ckpt = str(runs["tandem"] / "checkpoints" / "last.ckpt")
    run("predict", "--ckpt_path", ckpt, "--data.root", str(root), "--trainer.default_root_dir", str(tmp_path / "out"))
    with (tmp_path / "out" / "submission.csv").open() as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows[0] == ["filename", "scene_label", *SCENES] and [row[0] for row in rows[1:]] == [
        f"{n}.wav" for n in range(5)]
    assert all(row[1] in SCENES for row in rows[1:])
    capsys.readouterr()
    line = _error(capsys, "test", "--ckpt_path", ckpt, "--data.root", str(root), "--trainer.default_root_dir",
                  str(tmp_path / "out"))
    assert "an evaluation set (fold1_test.csv, no labels)" in line, line


@pytest.mark.usefixtures("wandb_offline")
def test_on_the_fly_features_work_with_loader_workers(mini_root: Path, tmp_path: Path) -> None:
    """--data.cache false with worker processes: each worker starts fresh (no forked W&B service or half-imported
    librosa), with W&B logging offline as in a real run."""
    run("fit", *config("linear"), "--data.root", str(mini_root), "--trainer.default_root_dir", str(tmp_path / "l"),
        *FAST, "--data.cache=false", "--data.num_workers=2", "--trainer.max_epochs=2")
    assert json.loads((tmp_path / "l" / "fit_metrics.json").read_text())["epoch"] == 2


def test_sweep_agents_sharing_a_sweep_get_a_folder_per_trial(monkeypatch: pytest.MonkeyPatch) -> None:
    from asc.cli.lightning_cli import run_folder

    assert run_folder("runs/pruning") == "runs/pruning"
    monkeypatch.setenv("WANDB_SWEEP_ID", "s1")
    monkeypatch.setenv("WANDB_RUN_ID", "r7")
    assert run_folder("runs/pruning") == str(Path("runs/pruning") / "sweep-s1" / "r7")


def test_device_responses_from_a_folder_colour_the_training_clips(mini_root: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    import numpy as np
    import soundfile

    folder = tmp_path / "irs"
    folder.mkdir()
    for n, decay in enumerate((20, 80)):
        response = np.exp(-np.arange(400) / decay) * np.random.default_rng(n).standard_normal(400)
        soundfile.write(folder / f"device{n}.wav", response.astype(np.float32), 44_100)
    common = [*config("linear"), "--data.root", str(mini_root), *FAST]
    run("fit", *common, "--trainer.default_root_dir", str(tmp_path / "l"), f"--model.device_irs={folder}",
        "--model.device_ir_p=1.0")
    assert (tmp_path / "l" / "checkpoints" / "last.ckpt").is_file()
    capsys.readouterr()
    line = _error(capsys, "fit", *common, "--trainer.default_root_dir", str(tmp_path / "m"),
                  f"--model.device_irs={tmp_path / 'none'}", "--model.device_ir_p=0.5")
    assert "model.device_irs: " in line and "folder not found" in line, line
    # A relative folder is one beside the data, in the data root, from any working folder.
    (mini_root / "mics").symlink_to(folder)
    run("fit", *common, "--trainer.default_root_dir", str(tmp_path / "n"), "--model.device_irs=mics",
        "--model.device_ir_p=1.0")
    line = _error(capsys, "fit", *common, "--trainer.default_root_dir", str(tmp_path / "o"),
                  "--model.device_irs=elsewhere", "--model.device_ir_p=0.5")
    assert line == f"asc: error: model.device_irs: elsewhere: folder not found (in the data root {mini_root})"


def test_mixed_precision_trains_and_tests_in_float(runs: dict[str, Path], tmp_path: Path) -> None:
    """``--trainer.precision bf16-mixed`` (the GPU option; CPU autocast here) trains the tandem, and the
    checkpoint is float: ``asc test`` and ``load_model`` use it as any other."""
    out = tmp_path / "bf16"
    run("fit", *config("tandem"), "--data.root", str(runs["root"]), "--trainer.default_root_dir", str(out),
        "--model.width=1", f"--model.init_ckpt={runs['linear'] / 'checkpoints' / 'last.ckpt'}", *FAST,
        "--trainer.precision=bf16-mixed")
    ckpt = out / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)["state_dict"]  # full-precision weights, not bfloat16 ones
    weights = [value for value in saved.values() if value.is_floating_point()]
    assert all(value.dtype == torch.float32 for value in weights)
    assert any(not torch.equal(value, value.bfloat16().float()) for value in weights)
    run("test", "--ckpt_path", str(ckpt), "--data.root", str(runs["root"]), "--trainer.default_root_dir", str(out))
    report = json.loads((out / "test" / "metrics.json").read_text())
    assert report["clips"] == 5 and report["accuracy"] * 5 == pytest.approx(round(report["accuracy"] * 5))


def test_without_a_terminal_long_loops_print_progress_lines(runs: dict[str, Path], capsys: pytest.CaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """In a log (CI, SLURM: no terminal, so no progress bar) training, validation, test and predict print lines
    with counts and the time left (here every update: the default is one line every 30 s)."""
    from asc.training import console

    monkeypatch.setattr(console.ProgressLines, "__init__", lambda self, every=0.0: setattr(self, "every", every)
                        or setattr(self, "progress", None))
    tandem = runs["tandem"] / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    run("test", "--ckpt_path", str(tandem), "--trainer.default_root_dir", str(runs["tandem"]))
    run("predict", "--ckpt_path", str(tandem), "--trainer.default_root_dir", str(runs["tandem"]))
    printed = capsys.readouterr().out
    assert re.search(r"^test: 1/2 batches \(50\.0 %\), [\d.]+ batches/s, \d+ s left$", printed, re.M), printed
    assert re.search(r"^predict: 1/2 batches \(50\.0 %\)", printed, re.M), printed


def test_the_submission_writer_fills_one_table_by_clip_and_keeps_nothing_per_batch(tmp_path: Path) -> None:
    """Batches arrive in any order (several processes, shuffled samplers): each clip's row lands at its index,
    the CSV lists the clips in the split's order, and nothing of the batches stays once the file is written."""
    from types import SimpleNamespace

    from asc.training.submission import SubmissionWriter

    class Split(list):
        filenames = property(lambda self: [clip.filename for clip in self])

    split = Split(SimpleNamespace(filename=f"audio/{i}.wav") for i in range(5))
    trainer = SimpleNamespace(datamodule=SimpleNamespace(datasets={"predict": split}), is_global_zero=True,
                              default_root_dir=str(tmp_path))
    probabilities = torch.softmax(torch.randn(5, len(SCENES)), dim=1)
    writer = SubmissionWriter()
    assert writer.interval.on_batch and not writer.interval.on_epoch
    writer.on_predict_epoch_start(trainer, None)
    for batch, rows in enumerate(([3, 1], [0, 4], [2])):
        index = torch.tensor(rows)
        writer.write_on_batch_end(trainer, None, {"index": index, "probabilities": probabilities[index]}, None, None,
                                  batch, 0)
    writer.on_predict_epoch_end(trainer, None)
    lines = (tmp_path / "submission.csv").read_text().splitlines()
    assert lines[0].split("\t") == ["filename", "scene_label", *SCENES]
    for row, line in enumerate(lines[1:]):
        cells = line.split("\t")
        assert cells[0] == f"{row}.wav" and cells[1] == SCENES[int(probabilities[row].argmax())]
        assert [float(c) for c in cells[2:]] == pytest.approx(probabilities[row].tolist(), abs=1e-6)
    assert len(lines) == 6 and writer._table is None and writer.path == tmp_path / "submission.csv"
