"""Pictures of a run, where a user would rather look than read: the chain of stages (accuracy against parameters
and MACs, with the challenge's limits drawn), accuracy per device, the confusion matrices, and the training
curves. ``asc plot RUN`` draws them from a run folder's reports; the notebook and the test reports use the same
functions.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asc.compress.complexity import MAX_MACS, MAX_PARAMS
from asc.data.layout import DEVICES, SCENES
from asc.files import atomic_path
from asc.training.console import HISTORY_FILE

#: The order in which stages are drawn: the pipeline's, then whatever else has a report.
STAGE_ORDER = ("teacher", "linear", "tandem", "feature_selection", "pruning", "qat", "peer")


@dataclass(frozen=True)
class StageRun:
    """One stage's test report (``RUN/<stage>/test/metrics.json``) and its training history, if any."""

    stage: str
    report: dict[str, Any]
    confusion: list[list[int]]
    history: list[dict[str, float]]

    @property
    def name(self) -> str:
        return self.report.get("model") or self.stage


def load_runs(folder: str | Path) -> list[StageRun]:
    """The stages of a pipeline's output folder (or the one run of a run folder) that have a test report,
    in pipeline order."""
    folder = Path(folder)
    reports = {path.parents[1]: path for path in folder.glob("*/test/metrics.json")}
    if (folder / "test" / "metrics.json").is_file():
        reports[folder] = folder / "test" / "metrics.json"
    order = {stage: position for position, stage in enumerate(STAGE_ORDER)}
    runs = [StageRun(run.name, json.loads(path.read_text()), read_confusion(path.parent / "confusion.csv"),
                     read_history(run / HISTORY_FILE)) for run, path in reports.items()]
    return sorted(runs, key=lambda run: (order.get(run.stage, len(order)), run.stage))


def read_confusion(path: Path) -> list[list[int]]:
    """The counts of a report's ``confusion.csv`` (true scene in rows, as ``write_report`` writes them)."""
    with path.open(newline="") as handle:
        return [[int(cell) for cell in row[1:]] for row in list(csv.reader(handle))[1:]]


def read_history(path: Path) -> list[dict[str, float]]:
    """Per-epoch rows of ``history.csv`` (``EpochLine`` writes it); none when the file is absent."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [{key: float(value) for key, value in row.items() if value not in ("", None)}
                for row in csv.DictReader(handle)]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure: Any, path: Path) -> Path:
    """Write a figure as PNG, whole or not at all, and close it."""
    plt = _pyplot()
    try:
        with atomic_path(path) as partial:
            figure.savefig(partial, dpi=120, format="png", bbox_inches="tight")
    finally:
        plt.close(figure)
    return path


def plot_chain(runs: Sequence[StageRun], path: Path) -> Path:
    """Accuracy against parameters and against MACs, stage by stage, with the DCASE 2022 limits drawn."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, limit, unit in ((axes[0], "params", MAX_PARAMS, "parameters"), (axes[1], "macs", MAX_MACS, "MACs")):
        xs = [run.report[key] for run in runs]
        ys = [100 * run.report["accuracy"] for run in runs]
        ax.plot(xs, ys, color="0.6", zorder=1)
        for index, (run, x, y) in enumerate(zip(runs, xs, ys, strict=True)):
            # stages often coincide (pruning and QAT have one size): numbers alternate sides, names go in the legend
            point = ax.scatter([x], [y], zorder=2, s=40, label=f"{index + 1}. {run.name}: {y:.1f} %")
            ax.annotate(str(index + 1), (x, y), textcoords="offset points", fontsize=9, fontweight="bold",
                        color=point.get_facecolor()[0], xytext=(6, 4) if index % 2 == 0 else (-12, -12))
        ax.axvline(limit, color="tab:red", linestyle="--", linewidth=1)
        ax.text(limit, ax.get_ylim()[0], f" limit {limit:,}", color="tab:red", fontsize=8, va="bottom")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel(f"{unit} (log scale)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    figure.legend(*axes[0].get_legend_handles_labels(), fontsize=8, ncol=len(runs), loc="lower center",
                  bbox_to_anchor=(0.5, -0.1))
    figure.suptitle("The chain of stages: accuracy against complexity (dashed: the DCASE 2022 limits)")
    return save(figure, path)


def plot_per_device(runs: Sequence[StageRun], path: Path) -> Path:
    """Accuracy per device (a, b, c real; s1-s3 seen simulated; s4-s6 unseen), one bar per stage."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / max(len(runs), 1)
    positions = np.arange(len(DEVICES))
    for index, run in enumerate(runs):
        values = [100 * (run.report["accuracy_per_device"].get(device) or 0.0) for device in DEVICES]
        ax.bar(positions + (index - (len(runs) - 1) / 2) * width, values, width, label=run.name)
    ax.set_xticks(positions, [device.upper() for device in DEVICES])
    ax.axvspan(5.5, 8.5, color="0.9", zorder=0)
    ax.text(7, ax.get_ylim()[1], "unseen devices", ha="center", va="top", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlabel("device")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, ncol=min(len(runs), 7), loc="upper center", bbox_to_anchor=(0.5, -0.14))
    ax.grid(axis="y", alpha=0.3)
    return save(figure, path)


def draw_confusion(ax: Any, confusion: Sequence[Sequence[int]], title: str, row_labels: bool = True) -> Any:
    """A row-normalised confusion matrix (true scene in rows) with its counts; returns the image for a colour
    scale. ``row_labels`` False leaves the scene names of the rows to the matrix on the left."""
    counts = np.asarray(confusion, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, f"{int(value)}", ha="center", va="center", fontsize=6,
                color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(SCENES)), SCENES, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(SCENES)), SCENES if row_labels else [], fontsize=7)
    ax.set_xlabel("predicted")
    if row_labels:
        ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return image


def plot_confusion(confusion: Sequence[Sequence[int]], path: Path, title: str) -> Path:
    """One confusion matrix with axis labels and a colour scale, as in the report's Figure 2."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 7))
    image = draw_confusion(ax, confusion, title)
    figure.colorbar(image, ax=ax, label="share of the true scene's clips")
    return save(figure, path)


def plot_confusions(runs: Sequence[StageRun], path: Path) -> Path:
    """The confusion matrix of every stage, side by side, with one colour scale."""
    plt = _pyplot()
    columns = min(len(runs), 3)
    rows = -(-len(runs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 5 * rows), squeeze=False)
    image = None
    for position, (ax, run) in enumerate(zip(axes.flat, runs, strict=False)):
        image = draw_confusion(ax, run.confusion, f"{run.name}: {100 * run.report['accuracy']:.1f} %",
                               row_labels=position % columns == 0)
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    if image is not None:
        figure.colorbar(image, ax=axes, label="share of the true scene's clips", shrink=0.6)
    return save(figure, path)


def plot_curves(runs: Sequence[StageRun], path: Path) -> Path:
    """Training loss and validation accuracy per epoch of every stage with a history."""
    plt = _pyplot()
    figure, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        epochs = [row["epoch"] for row in run.history]
        if "train_loss" in (run.history[0] if run.history else {}):
            loss_ax.plot(epochs, [row.get("train_loss", np.nan) for row in run.history], marker=".", label=run.name)
        if "val_accuracy" in (run.history[0] if run.history else {}):
            accuracy_ax.plot(epochs, [100 * row.get("val_accuracy", np.nan) for row in run.history], marker=".",
                             label=run.name)
    # log scale: an ADMM phase's loss holds its penalty term, hundreds of times a classification loss at first
    loss_ax.set(xlabel="epoch", ylabel="training loss (log scale)", title="training loss", yscale="log")
    accuracy_ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title="validation accuracy")
    for ax in (loss_ax, accuracy_ax):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    return save(figure, path)


PICTURES = {"chain": plot_chain, "per_device": plot_per_device, "confusion": plot_confusions, "curves": plot_curves}


def plot_run(folder: str | Path, out: str | Path, prefix: str = "") -> dict[str, Path]:
    """Every picture of a run folder into ``out`` (``<prefix><name>.png``); stages without a report are left out."""
    runs = load_runs(folder)
    return {name: draw(runs, Path(out) / f"{prefix}{name}.png") for name, draw in PICTURES.items()} if runs else {}
