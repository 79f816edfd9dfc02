"""Command-line round trip on a tiny dataset: fit linear -> fit tandem -> test -> predict -> complexity."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from asc import load_model
from asc.cli.main import main
from asc.data.layout import SCENES

CONFIGS = Path(__file__).parents[1] / "configs" / "builtin"


def config(stage: str) -> list[str]:
    """A stage's layered config: the shared base, then the stage's own file."""
    return ["--config", str(CONFIGS / "base.yaml"), "--config", str(CONFIGS / f"{stage}.yaml")]
FAST = ["--trainer.max_epochs=1", "--data.batch_size=4", "--data.cache_workers=0", "--data.progress=false",
        "--trainer.log_every_n_steps=1"]


def run(*args: str) -> None:
    assert main(list(args)) == 0


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
    for name in ("per_device.csv", "per_device.md", "confusion.png", "confusion.csv"):
        assert (tandem / "test" / name).stat().st_size > 0

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


def _error(capsys: pytest.CaptureFixture, *args: str) -> str:
    assert main(list(args)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


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
    # Without the warmup callbacks a huge learning rate blows the loss up within a few steps.
    stage = yaml.safe_load((CONFIGS / "linear.yaml").read_text())
    del stage["trainer"]["callbacks+"]
    (tmp_path / "explode.yaml").write_text(yaml.safe_dump(stage))
    line = _error(capsys, "fit", "--config", str(CONFIGS / "base.yaml"), "--config", str(tmp_path / "explode.yaml"),
                  "--data.root", root,
                  "--trainer.default_root_dir", str(tmp_path / "nan"), "--model.lr=1e30", *FAST,
                  "--trainer.max_epochs=20")
    assert re.fullmatch(r"asc: error: training loss became (nan|inf) at epoch \d+, step \d+ .*", line), line
