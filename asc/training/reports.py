"""Test reports: what a test measured (checkpoint, split, data root, clips, version), metrics.json, the per-device
table of the report's Table 1 and the confusion matrix as PNG and CSV, one folder per split, never over the report
of another measurement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L

from asc.data.layout import DEVICES, SCENES
from asc.errors import AscError
from asc.files import atomic_write, csv_text, sha256_file
from asc.training.console import say
from asc.training.plots import plot_confusion
from asc.version import __version__

#: The split a run's test report is of (the report tests on fold 1's evaluate split); the reports of other
#: splits go to folders of their own (``test-<split>``), so that one never replaces the other.
TEST_SPLIT = "evaluate"


def report_folder(run_dir: str | Path, split: str | None) -> Path:
    """``RUN/test`` for the evaluate split, ``RUN/test-<split>`` for any other."""
    return Path(run_dir) / ("test" if split in (None, TEST_SPLIT) else f"test-{split}")


def measurement(measured_file: str | Path | None, split: str | None, data_root: str | Path | None,
                clips: int | None = None) -> dict[str, Any]:
    """What a test measures: the file (checkpoint or export; path and content hash), the split, the data
    root (absolute), the number of clips and the asc version. A report without it could be of anything."""
    path = Path(measured_file).resolve() if measured_file else None
    return {"checkpoint": str(path) if path else None,
            "checkpoint_sha256": sha256_file(path) if path and path.is_file() else None,
            "split": split,
            "data_root": str(Path(data_root).resolve()) if data_root else None,
            "clips": clips,
            "asc_version": __version__}


def trainer_measurement(trainer: L.Trainer, measured_file: str | Path | None) -> dict[str, Any]:
    """:func:`measurement` of a test the trainer runs, from its data module."""
    data = getattr(trainer, "datamodule", None)
    dataset = getattr(data, "datasets", {}).get("test")
    return measurement(measured_file, getattr(data, "hparams", {}).get("test_split"), getattr(data, "root", None),
                       len(dataset) if dataset is not None else None)


def claim_report_folder(folder: Path, measured: dict[str, Any]) -> None:
    """Refuse, before testing, to replace a report of another checkpoint, split or data set. The same
    checkpoint (by content, wherever it now lies) replaces its report silently; a file refit at the same
    path replaces the report of its earlier content, and says so."""
    path = folder / "metrics.json"
    if not path.is_file():
        return
    try:
        earlier = json.loads(path.read_text()).get("measured")
    except (OSError, ValueError, AttributeError):
        earlier = None
    if not isinstance(earlier, dict):
        say(f"{path}: replacing a report that does not say what it measured")
        return
    same_file = earlier.get("checkpoint_sha256") == measured["checkpoint_sha256"]
    refit = earlier.get("checkpoint") == measured["checkpoint"]
    differs = [key for key in ("split", "data_root") if earlier.get(key) != measured[key]]
    if not same_file and not refit:
        differs.insert(0, "checkpoint")
    if differs:
        before = ", ".join(f"{key} {earlier.get(key)}" for key in differs)
        now = ", ".join(f"{key} {measured[key]}" for key in differs)
        raise AscError(f"{path}: holds the report of another measurement ({before}; this test: {now}); give "
                       f"--trainer.default_root_dir another folder for this report, or remove {folder}")
    if not same_file:
        say(f"{path}: replacing the report of an earlier {Path(measured['checkpoint']).name} "
            f"(sha256 {str(earlier.get('checkpoint_sha256'))[:12]} -> {str(measured['checkpoint_sha256'])[:12]})")


def write_fit_metrics(trainer: L.Trainer) -> Path:
    """``fit_metrics.json`` in the run folder: the last logged value of every metric, the epoch and step.

    W&B's offline files need W&B's binary reader (or ``wandb sync``); this file is plain JSON.
    """
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if value.numel() == 1}
    record = {"epoch": trainer.current_epoch, "global_step": trainer.global_step, "metrics": metrics}
    path = Path(trainer.default_root_dir) / "fit_metrics.json"
    return atomic_write(path, json.dumps(record, indent=2, sort_keys=True))












def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def table_row(summary: dict[str, Any]) -> list[str]:
    """Per-device accuracies then overall, in percent, as the columns of the report's Table 1."""
    return [_percent(summary["accuracy_per_device"][d]) for d in DEVICES] + [_percent(summary["accuracy"])]


def write_report(folder: Path, name: str, summary: dict[str, Any], complexity: dict[str, Any],
                 measured: dict[str, Any] | None = None) -> Path:
    """Write every file of one test report into ``folder`` (each whole or not at all; metrics.json, which
    says what was measured, last) and return the metrics file."""
    metrics = {
        "model": name,
        **{key: value for key, value in summary.items() if key != "confusion"},
        "params": complexity["params"],
        "macs": complexity["macs"],
        "bits": complexity["bits"],
        "complexity": complexity,
        "measured": measured,
    }
    header = ["model", *[d.upper() for d in DEVICES], "Overall"]
    row = [name, *table_row(summary)]
    atomic_write(folder / "per_device.csv", csv_text([header, row]))
    markdown = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        "| " + " | ".join(row) + " |",
        "",
        f"Params {complexity['params']:,}, MMACs {complexity['macs'] / 1e6:.3f}, {complexity['bits']} bit, "
        f"log loss {summary['log_loss']:.3f}" if summary["log_loss"] is not None else "",
    ]
    atomic_write(folder / "per_device.md", "\n".join(markdown) + "\n")
    confusion = [["true \\ predicted", *SCENES],
                 *([scene, *counts] for scene, counts in zip(SCENES, summary["confusion"], strict=True))]
    atomic_write(folder / "confusion.csv", csv_text(confusion))
    title = f"{name}: accuracy {_percent(summary['accuracy'])} %"
    plot_confusion(summary["confusion"], folder / "confusion.png", title=title)
    return atomic_write(folder / "metrics.json", json.dumps(metrics, indent=2))


def log_report_to_wandb(logger: Any, summary: dict[str, Any], folder: Path) -> None:
    """The per-device table and the confusion matrix as W&B objects, when W&B is the logger."""
    from lightning.pytorch.loggers import WandbLogger

    if not isinstance(logger, WandbLogger):
        return
    import wandb

    table = wandb.Table(columns=[*[d.upper() for d in DEVICES], "Overall"], data=[table_row(summary)])
    logger.experiment.log({"test/per_device": table, "test/confusion": wandb.Image(str(folder / "confusion.png"))})
