"""Shared fixtures: a hand-written dataset in the real DCASE layout, and quiet offline settings."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import lightning.pytorch  # noqa: F401  (see below)
import numpy as np
import pytest
import soundfile

# Lightning gives its logger a console handler on sys.stderr at its first import. Imported here, under
# pytest's session-wide capture, the handler never holds a test's capsys stream, which is closed after
# that test and would turn every later Lightning message into a "--- Logging error ---" traceback.

FIXTURE = Path(__file__).parent / "fixtures" / "tau_mini"
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


def write_tone(path: Path, seed: int, *, rate: int = 44_100, seconds: float = 1.0, channels: int = 1) -> None:
    """A 24-bit WAV with a seed-dependent tone plus noise (what the hand-written fixture's files hold)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(rate * seconds)) / rate
    signal = 0.3 * np.sin(2 * np.pi * (200 + 150 * seed) * t) + 0.05 * rng.standard_normal(t.size)
    data = np.repeat(signal[:, None], channels, axis=1) if channels > 1 else signal
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, data.astype(np.float32), rate, subtype="PCM_24")


def make_mini_root(root: Path) -> Path:
    """A copy of tests/fixtures/tau_mini (hand-written CSVs) at ``root`` with its WAVs written."""
    shutil.copytree(FIXTURE, root)
    names = [line.split("\t")[0] for line in (root / "meta.csv").read_text().splitlines()[1:]]
    for seed, name in enumerate(names):
        write_tone(root / name, seed)
    return root


@pytest.fixture
def mini_root(tmp_path: Path) -> Path:
    """A copy of tests/fixtures/tau_mini (hand-written CSVs) with its WAVs written, ready to modify."""
    return make_mini_root(tmp_path / "tau_mini")


@pytest.fixture(scope="module")
def shared_mini_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same dataset, shared by the tests of one module that only read it."""
    return make_mini_root(tmp_path_factory.mktemp("data") / "tau_mini")


@pytest.fixture
def wandb_offline(monkeypatch: pytest.MonkeyPatch):
    """W&B logging offline, as in a user's run without an API key. W&B keeps the settings of its first use
    (the other tests: disabled) for the whole process, so they are reset before and after."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    wandb.teardown()
    yield
    monkeypatch.setenv("WANDB_MODE", "disabled")
    wandb.teardown()
