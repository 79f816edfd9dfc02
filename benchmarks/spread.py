"""The spread of `make demo` over seeds: each stage's test accuracy, mean ± std and every seed's figure.

    make demo SEEDS="0 1 2"          # one pipeline per seed into build/demo/runs/seed<N>, then this table
    python -m benchmarks.spread build/demo/runs/seed0 build/demo/runs/seed1 ... [--out build/demo/spread.md]

A single demo is one draw: the same code and seed give other figures on another machine (other float rounding,
amplified by training), and other seeds give other figures on the same one. The README's demo row is this table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
from pathlib import Path

from benchmarks.ablation import mean_std
from benchmarks.report import cpu_model, write_section

STAGES = {"linear": "Linear", "tandem": "Tandem", "feature_selection": "Feature Sel.", "pruning": "Pruned",
          "qat": "Pruned+Quant."}


def table(runs: list[Path]) -> str:
    """One row per stage: overall test accuracy, mean ± std over the runs, and each run's figure."""
    lines = [f"Test accuracy (%) of `make demo`, {len(runs)} seeds ({', '.join(run.name for run in runs)})", "",
             "| model | overall | per seed | test clips |", "|---|---|---|---|"]
    for stage, name in STAGES.items():
        reports = [json.loads((run / stage / "test" / "metrics.json").read_text()) for run in runs
                   if (run / stage / "test" / "metrics.json").is_file()]
        if len(reports) != len(runs):
            continue
        accuracies = [report["accuracy"] for report in reports]
        per_seed = ", ".join(f"{100 * value:.2f}" for value in accuracies)
        lines.append(f"| {name} | {mean_std(accuracies)} | {per_seed} | {reports[0].get('clips')} |")
    return "\n".join(lines)


def results_section(text: str, argv: list[str]) -> str:
    """The spread's section of the results page: the table with the command, date and machine that made it."""
    import torch

    command = shlex.join(["python", "-m", "benchmarks.spread", *argv])
    machine = f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}"
    return "\n".join([
        "## The demo over seeds", "",
        f"Made by `{command}` over the run folders of `make demo SEEDS=\"0 1 2\"` on "
        f"{datetime.date.today().isoformat()} ({machine}). The test split is the built-in `demo` preset's evaluate "
        "split. The same code and seed give other figures on another machine (float rounding, amplified by "
        "training): a difference smaller than this spread is not a finding.", "", text])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="pipeline output folders, one per seed")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (Markdown)")
    parser.add_argument("--results", type=Path, default=None,
                        help="also put the table, with the command, date and machine, into this results page "
                             "(its own section: the rest of the page is kept)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    missing = [str(run) for run in args.runs if not run.is_dir()]
    if missing:
        print(f"benchmarks.spread: run folder(s) not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    text = table(args.runs)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if args.results is not None:
        write_section(args.results, "demo spread", results_section(text, sys.argv[1:] if argv is None else argv))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
