"""The one table of ``make bench``: rows, their ratios, the machine, and the text / markdown / JSON forms.

Every comparison is a group of rows in one section; a row's ``ratio`` is its value divided by the value
of the row named in ``baseline`` (same section, same unit), measured side by side in the same run. The
ratio is the figure to quote: absolute values move with the machine's load, ratios much less.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from asc.machine import available_cores

COLUMNS = ("section", "measurement", "value", "unit", "ratio", "vs", "note")


@dataclass
class Row:
    """One figure. ``value`` None means not measured (``note`` says why)."""

    section: str
    name: str
    value: float | None
    unit: str
    baseline: str | None = None
    ratio: float | None = None
    note: str = ""


def with_ratios(rows: Sequence[Row]) -> list[Row]:
    """Fill each row's ``ratio`` = value / the value of its ``baseline`` row in the same section."""
    values = {(row.section, row.name): row.value for row in rows}
    for row in rows:
        base = values.get((row.section, row.baseline)) if row.baseline else None
        row.ratio = row.value / base if row.value is not None and base else None
    return list(rows)


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU model, cores, load when measured, library versions."""
    import onnxruntime
    import torch

    return {
        "cpu": cpu_model(),
        "cores": available_cores(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
    }


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (Linux), else whatever ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fmt(value: float | None) -> str:
    """Three significant figures, thousands separated; "n/a" for a missing value."""
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def cells(row: Row) -> list[str]:
    ratio = f"{fmt(row.ratio)}×" if row.ratio is not None else ""
    return [row.section, row.name, fmt(row.value), row.unit, ratio, row.baseline or "", row.note]


def header_lines(info: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    return [
        f"machine: {info['cpu']}, {info['cores']} cores, load average {info['load_average_1min']} at the start"
        f"{_at_end(info)}; "
        f"Python {info['python']}, torch {info['torch']}, onnxruntime {info['onnxruntime']}",
        "settings: " + ", ".join(f"{key} {value}" for key, value in settings.items()),
        "ratio = value / the value of the row named under 'vs' (same section, same run)",
    ]


def _at_end(info: dict[str, Any]) -> str:
    end = info.get("load_average_1min_end")
    return f", {end} at the end" if end is not None else ""


def text_table(rows: Sequence[Row], info: dict[str, Any], settings: dict[str, Any]) -> str:
    """The table for the terminal: aligned columns under the machine and settings lines."""
    body = [list(COLUMNS)] + [cells(row) for row in rows]
    widths = [max(len(line[i]) for line in body) for i in range(len(COLUMNS))]
    right = {2, 4}
    lines = [
        "  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(line))
        for line in body
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(header_lines(info, settings) + [""] + [line.rstrip() for line in lines])


def markdown_table(rows: Sequence[Row], info: dict[str, Any], settings: dict[str, Any]) -> str:
    """The same table in markdown, for docs/benchmarks.md (bench.md)."""
    lines = [f"{line}  " for line in header_lines(info, settings)] + [""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "|".join(["---", "---", "---:", "---", "---:", "---", "---"]) + "|")
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells(row)) + " |")
    return "\n".join(lines) + "\n"


def write(out: Path, rows: Sequence[Row], info: dict[str, Any], settings: dict[str, Any],
          wall_s: float) -> tuple[Path, Path]:
    """``bench.json`` (every row with its ratio fields) and ``bench.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "settings": settings, "wall_s": round(wall_s, 1),
               "rows": [asdict(row) for row in rows]}
    json_path, md_path = out / "bench.json", out / "bench.md"
    json_path.write_text(json.dumps(payload, indent=1) + "\n")
    md_path.write_text(markdown_table(rows, info, settings) + f"\nWhole run: {wall_s:.0f} s.\n")
    return json_path, md_path


def write_section(page: Path, name: str, text: str) -> Path:
    """Put ``text`` into ``page`` as its generated section ``name``, between two HTML comments, keeping the rest.

    Several tools write one results page (the ablation, the demo's spread); each replaces only its own section,
    so that a rerun of one never erases the figures of another. A page without the section gets it at its end.
    """
    begin, end = f"<!-- generated: {name} (do not edit by hand) -->", f"<!-- end: {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    old = page.read_text() if page.is_file() else ""
    if begin in old and end in old.split(begin, 1)[1]:
        before, rest = old.split(begin, 1)
        new = before + block + rest.split(end, 1)[1]
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "") + block + "\n"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(new)
    return page
