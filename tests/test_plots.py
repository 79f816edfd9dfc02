"""``asc plot``: the pictures of a run folder, from its test reports and training histories."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asc.training.console import append_history
from asc.training.metrics import summarize
from asc.training.plots import load_runs
from asc.training.reports import write_report
from tests.helpers import one_error_line, run

PNG = b"\x89PNG\r\n\x1a\n"


def fake_pipeline(out: Path) -> None:
    """Test reports of three stages (written as asc test writes them) and the history of one of them."""
    for stage, name, params, hits in (("pruning", "Pruned", 127_000, 3), ("linear", "Linear", 12_810, 1),
                                      ("tandem", "Tandem", 355_940, 4)):
        confusion = torch.zeros(9, 10, 10, dtype=torch.long)
        confusion[0] = torch.eye(10, dtype=torch.long) * hits + 1
        summary = summarize(confusion, torch.ones(9, dtype=torch.float64))
        write_report(out / stage / "test", name, summary, {"params": params, "macs": 10 * params, "bits": 32})
    for epoch, loss in ((1, 2.0), (2, 1.5), (1, 1.9)):  # the last: the same folder fit again from scratch
        append_history(out / "tandem" / "history.csv", {"epoch": epoch, "train_loss": loss, "val_accuracy": 0.3})


def test_asc_plot_draws_the_chain_devices_confusions_and_curves(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "runs"
    fake_pipeline(out)
    runs = load_runs(out)
    assert [r.stage for r in runs] == ["linear", "tandem", "pruning"]  # pipeline order, not the folders'
    assert [row["epoch"] for row in runs[1].history] == [1.0]  # the earlier fit's epochs were replaced
    assert runs[2].confusion[0][0] == 4 and sum(map(sum, runs[2].confusion)) == 10 * 4 + 90
    run("plot", str(out), "--out", str(tmp_path / "pictures"), "--prefix", "demo_")
    printed = capsys.readouterr().out.splitlines()
    names = ("chain", "per_device", "confusion", "curves")
    assert [line.split(":")[0] for line in printed] == list(names)
    for name in names:
        assert (tmp_path / "pictures" / f"demo_{name}.png").read_bytes()[:8] == PNG
    run("plot", str(out / "tandem"))  # one stage's run folder; pictures beside it by default
    assert (out / "tandem" / "plots" / "chain.png").read_bytes()[:8] == PNG


def test_asc_plot_without_reports_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    line = one_error_line(capsys, "plot", str(tmp_path))
    assert line.startswith(f"asc: error: {tmp_path}: no test report in it")
    missing = tmp_path / "none"
    assert one_error_line(capsys, "plot", str(missing)) == f"asc: error: {missing}: run folder not found"
