"""Shared fixtures: a hand-written dataset in the real DCASE layout, and quiet offline settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch  # noqa: F401  (see below)
import pytest
import torch

from tests.helpers import make_mini_root

# Lightning gives its logger a console handler on sys.stderr at its first import. Imported here, under
# pytest's session-wide capture, the handler never holds a test's capsys stream, which is closed after
# that test and would turn every later Lightning message into a "--- Logging error ---" traceback.

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


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


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy machine OpenMP's spinning threads
    make each forward up to 20x slower; the previous setting is restored for the other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
