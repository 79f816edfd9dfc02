"""``asc sweep``: run a W&B sweep config offline with W&B's own search engine (the ``sweeps`` package).

``wandb sweep``/``wandb agent`` need a W&B server; this runs the same sweep file on one machine:
the engine proposes values (bayes, random or grid), each run is an ``asc fit`` with ``--key=value``
overrides exactly as a W&B agent would pass them, and the metric is read from the finished run.
The file is checked first, so a mistake in it is one line naming the file and the key, before any trial.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from asc.errors import AscError
from asc.files import atomic_write, ensure_folder


def base_arguments(config: dict[str, Any], path: Path) -> list[str]:
    """The sweep's ``command`` without the program, the subcommand and W&B's ``${...}`` macros; its config
    files are found from any working directory (see ``find_config``)."""
    command = config["command"]
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
    from asc.cli.lightning_cli import fit_and_score

    sweeps = _engine()

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
    config = read_sweep(args.config)
    metric = config["metric"]["name"]
    base = base_arguments(config, args.config)
    ensure_folder(args.out, "cannot create the sweep's folder")  # before the first trial, not after the last
    runs: list[Any] = []  # sweeps.SweepRun
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
    written = atomic_write(args.out / "sweep_results.json", json.dumps(results, indent=2) + "\n",
                           "cannot write the sweep results")
    print(f"best: {results[0]}" if results else "no runs")
    print(f"sweep results written to {written.resolve()}")
    return 0


def read_sweep(path: Path) -> dict[str, Any]:
    """The sweep file, checked for what this command and ``wandb agent`` rely on: each problem is one line
    naming the file and the key, before any trial (W&B's engine would stop with a traceback)."""
    if not path.is_file():
        raise AscError(f"{path}: sweep config not found")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise AscError(f"{path}: cannot read the sweep config ({error})") from None
    except yaml.YAMLError as error:
        raise AscError(f"{path}: not valid YAML ({_yaml_problem(error)})") from None
    if not isinstance(config, dict):
        found = "an empty file" if config is None else f"a {type(config).__name__}"
        raise AscError(f"{path}: not a W&B sweep config (expected a mapping of method, metric, parameters and "
                       f"command, found {found})")
    for problem in (_metric_problem(config), _parameters_problem(config), _command_problem(config)):
        if problem:
            raise AscError(f"{path}: {problem}")
    _check_schema(config, path)
    return config


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's message (several lines with a caret) as ``line N: problem``."""
    mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
    if mark is not None and problem:
        return f"line {mark.line + 1}: {problem}"
    return " ".join(str(error).split())


def _metric_problem(config: dict[str, Any]) -> str | None:
    """``metric.name`` is what each trial's score is read as; W&B's schema would not say which key is wrong."""
    metric = config.get("metric")
    if not isinstance(metric, dict) or "name" not in metric:
        return "metric.name: not set (the logged metric the search optimizes, e.g. val/selection)"
    if not isinstance(metric["name"], str) or not metric["name"]:
        return f"metric.name: expected a metric's name, found {metric['name']!r}"
    return None


def _parameters_problem(config: dict[str, Any]) -> str | None:
    """``parameters`` maps config keys to search specs; W&B's schema check itself crashes on other shapes."""
    parameters = config.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        found = "nothing" if parameters is None else repr(parameters)
        return f"parameters: expected a mapping of config keys to what to search (values, or min and max), " \
               f"found {found}"
    for key, spec in parameters.items():
        if not isinstance(spec, dict):
            return f"parameters.{key}: expected a mapping (values: [...], value: x, or min and max), found {spec!r}"
    return None


def _command_problem(config: dict[str, Any]) -> str | None:
    """The trial's command line: this command reads its configs, ``wandb agent`` runs it with ``${args}``."""
    command = config.get("command")
    if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
        return "command: expected a list of strings: [asc, fit, --config, FILE, ..., ${args}]"
    if "fit" not in command or not {"${args}", "${args_no_equals}"} & set(command):  # the forms jsonargparse reads
        return "command: must run 'asc fit ... ${args}' (W&B's agent puts the trial's --key=value in ${args})"
    return None


def _check_schema(config: dict[str, Any], path: Path) -> None:
    """The rest as ``wandb sweep`` checks it (method, goal, distributions), with W&B's own schema."""
    try:
        violations = _engine().schema_violations_from_proposed_config(config)
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        violations = [str(error)]
    if violations:
        raise AscError(f"{path}: not a valid W&B sweep config ({'; '.join(' '.join(v.split()) for v in violations)})")


def _engine() -> Any:
    """W&B's search engine (the ``sweeps`` package), imported without the pydantic-v2 warning it triggers:
    a user would see three lines of noise above every result or error line."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sweeps
    return sweeps


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
