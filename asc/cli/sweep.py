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
    """The sweep's ``command`` without the program, the subcommand and W&B's ``${...}`` macros; its config
    files are found from any working directory (see ``find_config``)."""
    command = [str(part) for part in config.get("command", [])]
    if "fit" not in command:
        raise AscError(f"{path}: 'command' must run 'asc fit ... ${{args}}'")
    arguments = [part for part in command[command.index("fit") + 1:] if not part.startswith("${")]
    return [find_config(part, path) if previous == "--config" else part
            for previous, part in zip(["", *arguments[:-1]], arguments, strict=True)]


def find_config(name: str, sweep_file: Path) -> str:
    """A config path of a sweep's command as given when it exists from here, else relative to the sweep
    file's folder or one of its parents (``sweeps/x.yaml`` names ``configs/...`` from the repository root)."""
    if Path(name).is_absolute() or Path(name).is_file():
        return name
    for folder in sweep_file.resolve().parents:
        if (folder / name).is_file():
            return str(folder / name)
    raise AscError(f"{sweep_file}: config {name} of its command not found (from here or from the sweep file's folder)")


def sweep(argv: Sequence[str]) -> int:
    """Run ``--count`` trials of a sweep file and print them best first."""
    import sweeps
    from asc.cli.lightning_cli import fit_and_score

    parser = argparse.ArgumentParser(
        prog="asc sweep", description=sweep.__doc__,
        usage="asc sweep FILE --out DIR [--count N] [--seed S] -- [asc fit arguments for every run]",
        epilog="Everything after -- goes to every trial's asc fit, e.g. "
               "asc sweep sweeps/pruning.yaml --count 8 --out runs/sweep -- --data.root DIR --model.init_ckpt CKPT")
    parser.add_argument("config", type=Path, help="W&B sweep config (yaml)")
    parser.add_argument("--count", type=int, default=4, help="number of runs")
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs (run-0, run-1, ...)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the search: the same seed proposes the same runs")
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
        _seed_search(args.seed, number)
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


def _seed_search(seed: int, number: int) -> None:
    """W&B's search engine draws from Python's and numpy's global generators (a trial's fit reseeds them)."""
    import random

    import numpy as np

    from asc.data.datamodule import derived_seed

    state = derived_seed(seed, number)
    random.seed(state)
    np.random.seed(state % 2**32)


def _plain(value: Any) -> Any:
    """numpy scalars from the search engine as plain Python numbers (for the CLI and JSON)."""
    return value.item() if hasattr(value, "item") else value
