"""Two processes (Lightning DDP, gloo on the CPU) give what one process gives: every clip counted once on an
odd evaluate split, the feature cache built once, the same pruning structure on every rank, one console line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asc.cli.main import main
from tests.helpers import layered, tandem_checkpoint, tiny_configs

pytestmark = pytest.mark.slow

DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]


def asc(*args: str, cwd: Path) -> str:
    """``python -m asc.cli.main ...`` in a process of its own (Lightning's DDP launcher starts the second
    rank by running the same command line again); stdout and stderr of both ranks."""
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "asc.cli.main", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="the gloo launcher test runs on Linux")
def test_two_processes_fit_and_test_like_one(mini_root: Path, tmp_path: Path) -> None:
    assert len(mini_root.joinpath("evaluation_setup", "fold1_evaluate.csv").read_text().splitlines()) - 1 == 5  # odd
    configs = tiny_configs(tmp_path / "configs")
    start = tandem_checkpoint(tmp_path / "tandem.ckpt")
    pruned = tmp_path / "pruning"
    printed = asc("fit", *layered(configs, "pruning"), "--data.root", str(mini_root), f"--model.init_ckpt={start}",
                  "--model.max_params=18000", "--trainer.default_root_dir", str(pruned), *DDP, cwd=tmp_path)
    assert printed.count("feature cache: computing") == 1  # built by one process, the other waited
    assert printed.count("pruning threshold") == 1 and printed.count("epoch 2/2:") == 1  # rank zero speaks
    assert "than rank 0" not in printed  # every rank computed the same structure and bands
    ckpt = pruned / "checkpoints" / "last.ckpt"

    asc("test", "--ckpt_path", str(ckpt), "--data.root", str(mini_root), "--trainer.default_root_dir",
        str(tmp_path / "two"), *DDP, cwd=tmp_path)
    assert main(["test", "--ckpt_path", str(ckpt), "--data.root", str(mini_root), "--trainer.default_root_dir",
                 str(tmp_path / "one")]) == 0
    two, one = (json.loads((tmp_path / name / "test" / "metrics.json").read_text()) for name in ("two", "one"))
    assert two["clips"] == one["clips"] == 5  # no clip twice (sampler padding), none dropped
    for key in ("accuracy", "log_loss", "accuracy_per_device", "clips_per_device", "params", "macs"):
        assert two[key] == pytest.approx(one[key]), key
    confusion = [(tmp_path / name / "test" / "confusion.csv").read_text() for name in ("two", "one")]
    assert confusion[0] == confusion[1]
