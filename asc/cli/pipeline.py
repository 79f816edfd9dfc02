"""``asc pipeline``: every stage of the report in order, each one fit and tested, and one summary.

(teacher ->) linear -> tandem -> feature_selection -> pruning (-> qat): the optional stages run when a configs
folder or a layer holds their config. The teacher stage is not in the chain of ``model.init_ckpt``: stages
whose ``model.teacher`` names ``teacher`` learn from its handed-over checkpoint instead. A configs folder
holds ``base.yaml`` (what every stage shares) and one ``<stage>.yaml`` per stage (what differs); each
stage starts from the previous stage's last checkpoint (``model.init_ckpt``) and is tested on its own
checkpoint. The summary holds the report's Table 1 (per device) and Table 2 (params, MMACs, bits,
accuracy, log loss) rows for the run. A recipe folder (``recipe.yaml``, e.g. configs/builtin, configs/plus) builds on
another recipe with layers and a hand-over, so that one ``--configs`` argument runs it.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asc.cli.lightning_cli import STOP_KEYS, resolved_config, run
from asc.compress.checkpoint import ASC_KEY, read_checkpoint
from asc.data.layout import DEVICES
from asc.errors import AscError
from asc.files import atomic_write, sha256_file
from asc.training.distillation import TEACHER_STAGE
from asc.training.reports import TEST_SPLIT, report_folder

STAGES = ("teacher", "linear", "tandem", "feature_selection", "pruning", "qat")
#: Stages that run only when a configs folder or a layer holds their config.
OPTIONAL = ("teacher", "qat")
BASE = "base.yaml"
RECIPE = "recipe.yaml"
HANDOVERS = ("last", "best")


def pipeline(argv: Sequence[str]) -> int:
    """Fit and test the stages in order under one output folder, then print the summary tables."""
    parser = argparse.ArgumentParser(
        prog="asc pipeline", description=pipeline.__doc__,
        epilog="Any other argument (--key=value) goes to every stage's asc fit and asc test, e.g. "
               "--trainer.max_epochs=2 or --data.num_workers=4.")
    parser.add_argument("--configs", type=Path, default=Path("configs/builtin"),
                        help="a recipe (configs/builtin, configs/report, configs/plus): base.yaml + one <stage>.yaml "
                             "per stage, or a folder whose recipe.yaml names the recipe it builds on and its layers")
    parser.add_argument("--data.root", dest="root", required=True, help="dataset root")
    parser.add_argument("--out", type=Path, required=True, help="output folder: one subfolder per stage")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--handover", choices=HANDOVERS, default=None,
                        help="checkpoint each stage passes on and is tested with: the last (the report's protocol; "
                             "the default unless a recipe says otherwise) or the best by validation (with "
                             "--data.val_split holdout: no choice sees the test split)")
    parser.add_argument("--layer", type=Path, action="append", default=[], metavar="FOLDER",
                        help="a folder of extra config layers (repeatable, e.g. configs/layers/freq_mixstyle): "
                             "its base.yaml goes to every stage and its <stage>.yaml to that stage, after the configs")
    parser.add_argument("--skip-done", action="store_true",
                        help="reuse a stage whose checkpoint was made from the same start and config and is tested; "
                             "resume an interrupted one from its last.ckpt; refit it (and so every later stage) "
                             "when its start or config changed")
    args, extra = parser.parse_known_args(argv)
    args.configs, recipe_layers, recipe_handover = read_recipe(args.configs)
    args.layer = [*recipe_layers, *args.layer]
    args.handover = args.handover or recipe_handover or "last"
    stages = [s for s in args.stages.split(",") if s]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise AscError(f"--stages: unknown stage(s) {unknown} (expected {', '.join(STAGES)})")
    if not (args.configs / BASE).is_file():
        raise AscError(f"{args.configs / BASE}: the configs' shared layer not found")
    for layer in args.layer:
        if not layer.is_dir() or not holds_configs(layer):
            raise AscError(f"--layer {layer}: not a folder holding base.yaml or <stage>.yaml files")
    stages = [s for s in stages if _has_config([args.configs, *args.layer], s)]
    chain = [s for s in stages if s != "teacher"]
    earlier = _earlier_checkpoint(args.out, chain[0]) if chain else None
    previous = handed_over(earlier, args.handover) if earlier is not None else None
    teacher = _earlier_teacher(args.out, args.handover) if "teacher" not in stages else None
    results: dict[str, StageResult] = {}
    for stage in stages:
        folder = args.out / stage
        common = [*layered([args.configs, *args.layer], stage), "--data.root", args.root,
                  "--trainer.default_root_dir", str(folder), *extra]
        start = previous if stage != "teacher" else None
        fit = ["fit", *common, *([f"--model.init_ckpt={start}"] if start is not None else [])]
        config = resolved_config(fit)
        flag = teacher_flag(config, teacher)
        if flag:
            fit, common = [*fit, flag], [*common, flag]
            config = resolved_config(fit)
        results[stage] = run_stage(stage, folder, fit, common, config, start, args)
        if stage == "teacher":
            teacher = results[stage].handed
        else:
            previous = results[stage].handed
    print(write_summary(args.out, stages, results))
    return 0


def teacher_flag(config: dict[str, Any], teacher: Path | None) -> str | None:
    """For a stage whose ``model.teacher`` names ``teacher``: the flag that names the teacher stage's
    handed-over checkpoint instead (on the fit's and the test's command line alike); else None."""
    sources = ((config.get("model") or {}).get("init_args") or {}).get("teacher") or []
    if TEACHER_STAGE not in sources:
        return None
    if teacher is None:
        raise AscError("model.teacher: names the teacher stage, which this run has not got (add the layer that "
                       "holds teacher.yaml, e.g. --layer configs/layers/ensemble)")
    return f"--model.teacher=[{','.join(str(teacher) if s == TEACHER_STAGE else s for s in sources)}]"


@dataclass(frozen=True)
class StageResult:
    """A stage's handed-over checkpoint and the test report of it (None when there is none)."""

    handed: Path
    report: Path | None


def run_stage(stage: str, folder: Path, fit: list[str], common: list[str], config: dict[str, Any],
              start: Path | None, args: argparse.Namespace) -> StageResult:
    """Reuse, resume or (re)fit one stage, then test its handed-over checkpoint unless that report exists."""
    last = folder / "checkpoints" / "last.ckpt"
    split = (config.get("data") or {}).get("test_split") or TEST_SPLIT
    state, reason = stage_state(last, config, start, args.handover, split) if args.skip_done else ("fit", "")
    if state == "done":
        print(f"== {stage}: done ({reason})", flush=True)
        handed = handed_over(last, args.handover)
        return StageResult(handed, tested_report(folder, handed, split))
    if state == "resume":
        cleared = clear_stage(folder, checkpoints=False)  # reports of the fit that now goes on
        print(f"== {stage}: fit (resuming from {last}{'; ' + cleared if cleared else ''})", flush=True)
        run([*fit, "--ckpt_path", str(last)])
    else:
        notes = [f"refit: {reason}" if reason else "", clear_stage(folder)]
        print(f"== {stage}: fit" + (f" ({'; '.join(note for note in notes if note)})" if any(notes) else ""),
              flush=True)
        run(fit)
    handed = handed_over(last, args.handover)
    print(f"== {stage}: test ({handed.name})", flush=True)
    report = run(["test", *common, "--ckpt_path", str(handed)]).model.report_dir
    return StageResult(handed, report / "metrics.json")


def stage_state(last: Path, config: dict[str, Any], start: Path | None, handover: str,
                split: str) -> tuple[str, str]:
    """``done`` (made from this start and config, and its handed-over checkpoint tested), ``resume`` (the same
    run, interrupted or stopped early) or ``fit`` (new, or made from another start or config: refit), with why."""
    if not last.is_file():
        return "fit", ""
    saved = read_checkpoint(last)[ASC_KEY]
    start_sha = sha256_file(start) if start is not None else None
    if (saved.get("start") or {}).get("sha256") != start_sha:
        what = f"its start {start} changed since it was fit" if start else "it was fit from another start"
        return "fit", what
    if saved.get("config") is None:
        return "fit", "its checkpoint does not record its config (written by an older asc)"
    changed = differing_keys(saved["config"], config)
    if [key for key in changed if key not in STOP_KEYS]:
        return "fit", f"its config changed since it was fit ({', '.join(changed[:4])})"
    handed = handed_over(last, handover) if not changed else None
    if handed is not None and tested_report(last.parents[1], handed, split) is not None:
        return "done", "made from the same start and config, and tested"
    return "resume", ""


def differing_keys(before: Any, after: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested configs."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(set(before) | set(after))
        return [key for name in keys
                for key in differing_keys(before.get(name), after.get(name), f"{prefix}{name}.")]
    return [] if before == after else [prefix.rstrip(".")]


def clear_stage(folder: Path, checkpoints: bool = True) -> str:
    """Remove what an earlier fit of this stage left (checkpoints and metrics unless ``checkpoints`` is False,
    test reports), so that the folder holds one fit; returns what was removed, for the console."""
    fitted = [folder / "checkpoints", folder / "fit_metrics.json"] if checkpoints else []
    candidates = [*fitted, *folder.glob("test"), *folder.glob("test-*")]
    removed = [path for path in candidates if path.exists()]
    for path in removed:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return f"removed the earlier {', '.join(path.name for path in removed)}" if removed else ""


def tested_report(folder: Path, checkpoint: Path, split: str) -> Path | None:
    """The stage's report of ``split`` when it measured exactly ``checkpoint`` (its content), else None."""
    path = report_folder(folder, split) / "metrics.json"
    try:
        measured = json.loads(path.read_text()).get("measured") or {}
    except (OSError, ValueError, AttributeError):
        return None
    return path if checkpoint.is_file() and measured.get("checkpoint_sha256") == sha256_file(checkpoint) else None


def read_recipe(folder: Path) -> tuple[Path, list[Path], str | None]:
    """The configs folder, layers and hand-over a recipe folder names (paths relative to it; the folder named by
    ``configs`` may be a recipe itself; the recipe's own base.yaml and <stage>.yaml come last), so that a recipe
    holds only what it adds; any other folder is itself."""
    path = folder / RECIPE
    if not path.is_file():
        return folder, [], None
    spec = _recipe_spec(path)
    layers = [folder / str(layer) for layer in spec.get("layers") or []]
    missing = [str(layer) for layer in layers if not layer.is_dir()]
    if missing:
        raise AscError(f"{path}: layer folder(s) {missing} not found")
    if not (folder / spec["configs"]).is_dir():
        raise AscError(f"{path}: configs folder {spec['configs']} not found")
    configs, inner, handover = read_recipe(folder / spec["configs"])
    own = [folder] if holds_configs(folder) else []
    return configs, [*inner, *layers, *own], spec.get("handover") or handover


def _recipe_spec(path: Path) -> dict[str, Any]:
    """A recipe.yaml, checked: ``configs: FOLDER`` and optionally ``layers: [FOLDER, ...]`` and ``handover``."""
    import yaml

    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise AscError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("configs"), str):
        raise AscError(f"{path}: expected a mapping with 'configs: FOLDER' (and optionally layers, handover)")
    unknown = sorted(set(spec) - {"configs", "layers", "handover"})
    if unknown:
        raise AscError(f"{path}: unknown key(s) {unknown} (expected configs, layers, handover)")
    if spec.get("handover") not in (None, *HANDOVERS):
        raise AscError(f"{path}: handover {spec['handover']!r} is not one of {', '.join(HANDOVERS)}")
    if not isinstance(spec.get("layers") or [], list):
        raise AscError(f"{path}: layers must be a list of folders")
    return spec


def stage_configs(recipe: Path, stage: str, extra_layers: Sequence[Path] = ()) -> list[str]:
    """``--config`` arguments of one stage of a recipe or configs folder (and more layers): what ``asc fit`` takes."""
    configs, layers, _handover = read_recipe(recipe)
    return layered([configs, *layers, *extra_layers], stage)


def holds_configs(folder: Path) -> bool:
    """Whether ``folder`` holds a base.yaml or a <stage>.yaml, i.e. is a layer at all."""
    return any((folder / f"{name}.yaml").is_file() for name in ("base", *STAGES))


def layered(folders: Sequence[Path], stage: str) -> list[str]:
    """``--config`` for each folder's base.yaml and <stage>.yaml that exist, in order: later layers win."""
    files = [folder / name for folder in folders for name in (BASE, f"{stage}.yaml")]
    return [arg for path in files if path.is_file() for arg in ("--config", str(path))]


def handed_over(last: Path, handover: str) -> Path:
    """``last.ckpt``, or the best checkpoint by ``val/selection`` that ModelCheckpoint kept beside it."""
    if handover == "last":
        return last
    import torch

    states = torch.load(last, map_location="cpu", weights_only=True).get("callbacks", {})
    best = [state.get("best_model_path") for key, state in states.items()
            if key.startswith("ModelCheckpoint") and "val/selection" in key]
    if not best or not best[0]:
        raise AscError(f"{last}: no best checkpoint recorded (--handover best needs ModelCheckpoint(monitor=...))")
    path = last.parent / Path(best[0]).name  # the run folder may have moved since
    if not path.is_file():
        raise AscError(f"{path}: the best checkpoint recorded in {last} is missing")
    return path


def _earlier_checkpoint(out: Path, first: str) -> Path | None:
    """A run of a subset (``--stages pruning,qat``) starts from the stage before it in ``out``, if it is there."""
    chain = [stage for stage in STAGES if stage != "teacher"]
    position = chain.index(first)
    ckpt = out / chain[position - 1] / "checkpoints" / "last.ckpt" if position else None
    return ckpt if ckpt is not None and ckpt.is_file() else None


def _earlier_teacher(out: Path, handover: str) -> Path | None:
    """A run without the teacher stage learns from the one an earlier run left in ``out``, if any."""
    last = out / "teacher" / "checkpoints" / "last.ckpt"
    return handed_over(last, handover) if last.is_file() else None


def _has_config(folders: Sequence[Path], stage: str) -> bool:
    """Whether a stage runs: its config is in the configs folder; an optional stage runs when one of the
    folders names its stage class (``model.class_path``), not for a layer that only tunes its schedule."""
    import yaml

    if stage not in OPTIONAL:
        if not (folders[0] / f"{stage}.yaml").is_file():
            raise AscError(f"{folders[0] / (stage + '.yaml')}: config of stage {stage!r} not found")
        return True
    for folder in folders:
        path = folder / f"{stage}.yaml"
        if path.is_file() and ((yaml.safe_load(path.read_text()) or {}).get("model") or {}).get("class_path"):
            return True
    return False


def write_summary(out: Path, stages: Sequence[str], results: dict[str, StageResult]) -> str:
    """Table 1 and Table 2 of the report for this run, as Markdown, written to ``out/summary.md``: only the
    test reports of the checkpoints the stages handed over, and a line for each stage without one."""
    rows, missing = [], []
    for stage in stages:
        result = results.get(stage)
        if result is None or result.report is None:
            handed = result.handed if result else "its checkpoint"
            missing.append(f"- {stage}: no test report of {handed} on the test split")
            continue
        rows.append(json.loads(result.report.read_text()))
    percent = lambda value: "" if value is None else f"{100 * value:.2f}"  # noqa: E731
    table1 = ["| | " + " | ".join(d.upper() for d in DEVICES) + " | Overall |",
              "|---" * (len(DEVICES) + 2) + "|"]
    table1 += [f"| {m['model']} | " + " | ".join(percent(m["accuracy_per_device"][d]) for d in DEVICES)
               + f" | {percent(m['accuracy'])} |" for m in rows]
    table2 = ["| | Params | MMACs | Bits | Acc (%) | LogLoss |", "|---|---|---|---|---|---|"]
    table2 += [f"| {m['model']} | {m['params']:,} | {m['macs'] / 1e6:.3f} | {m['bits']} | {percent(m['accuracy'])} "
               f"| {m['log_loss']:.3f} |" for m in rows]
    measured = rows[0].get("measured") or {} if rows else {}
    where = f" ({measured.get('clips')} clips of the {measured.get('split')} split of {measured.get('data_root')})"
    text = "\n".join([f"Top-1 accuracy (%) per device on the test split{where if rows else ''}", "", *table1, "",
                      "Complexity and accuracy", "", *table2, "", *(["Missing:", *missing, ""] if missing else [])])
    atomic_write(out / "summary.md", text)
    return text + f"\nsummary written to {(out / 'summary.md').resolve()}"
