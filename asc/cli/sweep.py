"""``asc sweep``: run a W&B sweep config offline with W&B's own search engine (the ``sweeps`` package).

``wandb sweep``/``wandb agent`` need a W&B server; this runs the same sweep file on one machine:
the engine proposes values (bayes, random or grid), each run is an ``asc fit`` with ``--key=value``
overrides exactly as a W&B agent would pass them, and the metric is read from the finished run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from asc.errors import AscError


def base_arguments(config: dict[str, Any], path: Path) -> list[str]:
    """The sweep's ``command`` without the program, the subcommand and W&B's ``${...}`` macros."""
    command = [str(part) for part in config.get("command", [])]
    if "fit" not in command:
        raise AscError(f"{path}: 'command' must run 'asc fit ... ${{args}}'")
    return [part for part in command[command.index("fit") + 1:] if not part.startswith("${")]


def sweep(argv: Sequence[str]) -> int:
    """Run ``--count`` trials of a sweep file and print them best first."""
    import sweeps
    from asc.cli.lightning_cli import fit_and_score

    parser = argparse.ArgumentParser(prog="asc sweep", description=sweep.__doc__)
    parser.add_argument("config", type=Path, help="W&B sweep config (yaml)")
    parser.add_argument("--count", type=int, default=4, help="number of runs")
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs (run-0, run-1, ...)")
    args, extra = parser.parse_known_args(argv)
    extra = [part for part in extra if part != "--"]
    if not args.config.is_file():
        raise AscError(f"{args.config}: sweep config not found")
    config = yaml.safe_load(args.config.read_text())
    for key in ("method", "metric", "parameters"):
        if key not in config:
            raise AscError(f"{args.config}: missing key {key!r}")
    metric = config["metric"]["name"]
    base = base_arguments(config, args.config)
    runs: list[sweeps.SweepRun] = []
    for number in range(args.count):
        proposal = sweeps.next_run(config, runs, validate=True)
        if proposal is None:  # a grid is exhausted
            break
        values = {key: _plain(item["value"]) for key, item in proposal.config.items()}
        overrides = [f"--{key}={value}" for key, value in values.items()]
        folder = args.out / f"run-{number}"
        score = fit_and_score(["fit", *base, *extra, *overrides, "--trainer.default_root_dir", str(folder)], metric)
        print(f"sweep run {number}: {values} -> {metric} = {score:.4f}", flush=True)
        runs.append(sweeps.SweepRun(name=f"run-{number}", config=proposal.config, state=sweeps.RunState.finished,
                                    summaryMetrics={metric: score}, sampledHistory=[{metric: score}]))
    goal = config["metric"].get("goal", "maximize")
    ranked = sorted(runs, key=lambda run: run.summary_metrics[metric], reverse=goal == "maximize")
    results = [{"run": run.name, **{k: _plain(v["value"]) for k, v in run.config.items()},
                metric: run.summary_metrics[metric]} for run in ranked]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep_results.json").write_text(json.dumps(results, indent=2))
    print(f"best: {results[0]}" if results else "no runs")
    print(f"sweep results written to {(args.out / 'sweep_results.json').resolve()}")
    return 0


def _plain(value: Any) -> Any:
    """numpy scalars from the search engine as plain Python numbers (for the CLI and JSON)."""
    return value.item() if hasattr(value, "item") else value
