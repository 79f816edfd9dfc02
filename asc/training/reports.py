"""Test reports: metrics.json, the per-device table (report's Table 1), the confusion matrix (PNG + CSV)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from asc.data.layout import DEVICES, SCENES


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def table_row(summary: dict[str, Any]) -> list[str]:
    """Per-device accuracies then overall, in percent, as the columns of the report's Table 1."""
    return [_percent(summary["accuracy_per_device"][d]) for d in DEVICES] + [_percent(summary["accuracy"])]


def write_report(folder: Path, name: str, summary: dict[str, Any], complexity: dict[str, Any]) -> Path:
    """Write every file of one test report into ``folder`` and return the metrics file."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {
        "model": name,
        **{key: value for key, value in summary.items() if key != "confusion"},
        "params": complexity["params"],
        "macs": complexity["macs"],
        "bits": complexity["bits"],
        "complexity": complexity,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    header = ["model", *[d.upper() for d in DEVICES], "Overall"]
    row = [name, *table_row(summary)]
    with (folder / "per_device.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([header, row])
    markdown = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        "| " + " | ".join(row) + " |",
        "",
        f"Params {complexity['params']:,}, MMACs {complexity['macs'] / 1e6:.3f}, {complexity['bits']} bit, "
        f"log loss {summary['log_loss']:.3f}" if summary["log_loss"] is not None else "",
    ]
    (folder / "per_device.md").write_text("\n".join(markdown) + "\n")
    with (folder / "confusion.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *SCENES])
        writer.writerows([scene, *counts] for scene, counts in zip(SCENES, summary["confusion"], strict=True))
    title = f"{name}: accuracy {_percent(summary['accuracy'])} %"
    plot_confusion(summary["confusion"], folder / "confusion.png", title=title)
    return folder / "metrics.json"


def plot_confusion(confusion: list[list[int]], path: Path, title: str) -> None:
    """Row-normalised confusion matrix with counts, as in the report's Figure 2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(confusion, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure, axes = plt.subplots(figsize=(8, 7))
    axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(counts):
        axes.text(j, i, f"{int(value)}", ha="center", va="center", fontsize=7,
                  color="white" if rates[i, j] > 0.5 else "black")
    axes.set_xticks(range(len(SCENES)), SCENES, rotation=45, ha="right")
    axes.set_yticks(range(len(SCENES)), SCENES)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
