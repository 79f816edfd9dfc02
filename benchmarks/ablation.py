"""Ablation of what goes beyond the report, on the built-in presets ``hard`` and ``cross`` (docs/results.md).

    python -m benchmarks.ablation --out build/ablation [--presets hard,cross] [--seeds 0 1 2 3 4]
        [--variants report,freq_mixstyle,device_irs,distillation,all,ensemble,long,ensemble_long,long_peer_recipe,
                    ensemble_peer_recipe,long_peer_recipe_sgd,longer_peer_recipe,peer,peer_report_features,
                    peer_tandem_optimiser,peer_tandem_network]
        [--protocol report,holdout] [--peer-epochs N] [--table-only] [--results docs/results.md]
        [-- --trainer.max_epochs=... (any argument for every stage)]

Each pipeline variant is one ``asc pipeline`` (every stage of the built-in configs) with its config layers, once
per preset and seed (``--seed_everything``). ``cross`` is written by another generator family than ``hard``
(devices, rooms and scene textures), and the microphone responses the device-response augmentation draws from
come from ``hard``'s family: an addition scores on ``cross`` only when it generalises. ``ensemble`` adds the
teacher stage (an ensemble whose mean logits teach the tandem and every compression stage); ``peer`` trains the
DCASE 2024 baseline network (CP-Mobile, configs/peer.yaml) for the wall-clock time the ``report``
pipeline takes on the same preset (the median over its finished seeds; its epoch time measured by a one-epoch
probe), or for ``--peer-epochs`` epochs, which do not depend on what else the machine runs. The ``peer_*`` rows find
where the gap between the peer and the tandem comes from, one factor each: the peer's recipe with the report's front
end (``peer_report_features``), with the built-in tandem's optimiser (``peer_tandem_optimiser``), or training the
tandem's network instead of CP-Mobile (``peer_tandem_network``); each layer's peer.yaml changes only its factor.
``long`` is ``all`` with three times the built-in tandem's epochs (configs/layers/long_tandem): what the schedule's
length is worth; ``ensemble_long`` the same for ``ensemble`` (a student taught for longer); ``long_peer_recipe``
``long`` with its tandem trained by the peer's recipe (configs/layers/peer_recipe: AdamW at batch 256, a cosine
schedule, the peer's augmentations, which pruning and QAT then train with too) on the report's front end, and pruning
fine-tuned 9 epochs instead of 2 (configs/layers/long_pruning); ``ensemble_peer_recipe`` that with the teacher stage,
trained by the same recipe (configs/layers/peer_recipe/teacher.yaml); ``long_peer_recipe_sgd`` ``long_peer_recipe``
with its tandem trained by the built-in tandem's SGD at batch 32 instead of AdamW at 256, the peer's schedule and
augmentations kept (configs/layers/tandem_optimiser/tandem.yaml); ``longer_peer_recipe`` ``long_peer_recipe`` with its
tandem trained 24 epochs instead of 12 (configs/layers/longer_tandem).

Per preset, variant and model: the test accuracy overall and per device group (real a-c, seen simulated s1-s3,
unseen s4-s6) as mean ± std over the seeds, every seed's figure, the tandem's accuracy on its own training split
(memorising the training locations shows as a gap), the pruned+quantized student minus its tandem per seed, and the
epochs each model trained. ``--protocol report,holdout`` runs each variant under both protocols (model selection:
the last checkpoint after validating on the evaluate split, or the best by validation on held-out training
locations), side by side in one table (a variant under ``holdout`` is named ``<variant>, holdout``). Finished runs
are reused (``--skip-done``), so an interrupted ablation continues where it stopped; ``--table-only`` runs nothing
and tabulates the finished runs (naming the others). Writes ``OUT/ablation-<protocols>.json`` and ``.md``, and with
``--results`` the results page.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from asc.errors import AscError
from benchmarks.report import cpu_model, write_section

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIGS = REPOSITORY / "configs" / "builtin"
LAYER_FOLDER = REPOSITORY / "configs" / "layers"
PEER_CONFIG = REPOSITORY / "configs" / "peer.yaml"
PRESETS = ("hard", "cross")
#: ``long_peer_recipe``'s layers, which the rows after it extend by one.
PEER_RECIPE = ["freq_mixstyle", "device_irs", "distillation", "long_tandem", "peer_recipe", "long_pruning"]
LAYERS = {
    "report": [],
    "freq_mixstyle": ["freq_mixstyle"],
    "device_irs": ["device_irs"],
    "distillation": ["distillation"],
    "all": ["freq_mixstyle", "device_irs", "distillation"],
    "ensemble": ["freq_mixstyle", "device_irs", "distillation", "ensemble"],
    "long": ["freq_mixstyle", "device_irs", "distillation", "long_tandem"],
    "ensemble_long": ["freq_mixstyle", "device_irs", "distillation", "ensemble", "long_tandem"],
    "long_peer_recipe": PEER_RECIPE,
    "ensemble_peer_recipe": [*PEER_RECIPE, "ensemble"],
    "long_peer_recipe_sgd": [*PEER_RECIPE, "tandem_optimiser"],
    "longer_peer_recipe": [*PEER_RECIPE, "longer_tandem"],
}
PEER = "peer"
#: The peer's rows: its recipe (configs/peer.yaml), and one row per factor of the gap between it and the tandem,
#: each the peer with one thing taken from the tandem (a layer's peer.yaml), and the network it trains.
PEERS = {
    PEER: ([], "CP-Mobile"),
    "peer_report_features": (["report_features"], "CP-Mobile"),  # the report's front end: 16 kHz, 34 frames
    "peer_tandem_optimiser": (["tandem_optimiser"], "CP-Mobile"),  # SGD, batch 32: the built-in tandem's
    "peer_tandem_network": (["tandem_network"], "Tandem"),  # the tandem's network, from scratch
}
VARIANTS = (*LAYERS, *PEERS)
#: The stages each pipeline variant reports (the teacher where there is one); a peer reports one.
STAGES = {"teacher": "Teacher", "tandem": "Tandem", "pruning": "Pruned", "qat": "Pruned+Quant."}
GROUPS = ("real", "seen_simulated", "unseen_simulated")
PROTOCOLS = {"report": ["--handover", "last"], "holdout": ["--handover", "best", "--data.val_split", "holdout"]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    variants, presets, protocols = _names(args.variants), _names(args.presets), _names(args.protocol)
    unknown = ([v for v in variants if v not in VARIANTS] + [p for p in presets if p not in PRESETS]
               + [p for p in protocols if p not in PROTOCOLS])
    if args.peer_epochs is not None and args.peer_epochs < 1:
        print(f"--peer-epochs: {args.peer_epochs} is not a positive number of epochs", file=sys.stderr)
        return 2
    if unknown:
        print(f"--variants/--presets/--protocol: unknown {unknown} (expected some of {', '.join(VARIANTS)}; "
              f"{', '.join(PRESETS)}; {', '.join(PROTOCOLS)})", file=sys.stderr)
        return 2
    results: dict[str, dict[str, list[dict]]] = {}
    try:
        for preset in presets:
            root = args.out / preset / "data"
            if not args.table_only and not (root / "meta.csv").is_file():
                asc(["synth", str(root), "--size", preset])
            for protocol in protocols:
                for variant in variants:
                    for seed in args.seeds:
                        run = one_run(preset, variant, seed, root, args, extra, protocol)
                        if run is not None:
                            results.setdefault(preset, {}).setdefault(label(variant, protocol), []).append(run)
    except AscError as error:
        print(error, file=sys.stderr)
        return 2
    report = {"protocols": protocols, "presets": presets, "seeds": args.seeds, "extra": extra, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"ablation-{'+'.join(protocols)}.json").write_text(json.dumps(report, indent=1) + "\n")
    text = table(results, protocols)
    (args.out / f"ablation-{'+'.join(protocols)}.md").write_text(text + "\n")
    if args.results is not None:
        write_section(args.results, "ablation", results_section(text, argv, args.out, presets, args.seeds))
    print(text)
    return 0


def _names(text: str) -> list[str]:
    return [name for name in text.split(",") if name]


#: How a variant run under another protocol than ``report`` is named in the table: ``<variant>, <protocol>``.
PROTOCOL_SEPARATOR = ", "


def label(variant: str, protocol: str) -> str:
    return variant if protocol == "report" else f"{variant}{PROTOCOL_SEPARATOR}{protocol}"


def variant_of(name: str) -> str:
    return name.split(PROTOCOL_SEPARATOR)[0]


def run_folder(out: Path, preset: str, protocol: str, variant: str, seed: int) -> Path:
    return out / preset / protocol / variant / f"seed{seed}"


def one_run(preset: str, variant: str, seed: int, root: Path, args: argparse.Namespace,
            extra: list[str], protocol: str) -> dict | None:
    """The figures of one preset, variant, seed and protocol: run (finished stages reused), or with
    ``--table-only`` read."""
    out = run_folder(args.out, preset, protocol, variant, seed)
    _check_peer_epochs(out, variant, args.peer_epochs)
    if args.table_only and not finished(out, variant):
        print(f"{out}: not finished, left out of the table", file=sys.stderr)
        return None
    started = time.perf_counter()
    if not args.table_only and not finished(out, variant):
        if variant in PEERS:
            budget = None if args.peer_epochs is not None else peer_budget(args.out, preset, protocol)
            run_peer(seed, root, out, protocol, budget, extra, args.peer_epochs, PEERS[variant][0])
        else:
            run_variant(variant, seed, root, out, protocol, extra)
        (out / "seconds.json").write_text(json.dumps({"seconds": round(time.perf_counter() - started, 1)}))
    return {**read_run(out, variant), "seed": seed, "seconds": seconds_of(out)}


def _check_peer_epochs(out: Path, variant: str, epochs: int | None) -> None:
    """A finished peer run is reused only for the epoch count asked: its folder does not name the count, and a run
    of another would enter the table as this one's."""
    trained = epochs_of(out) if variant in PEERS and epochs is not None and finished(out, variant) else None
    if trained is not None and trained != epochs:
        raise AscError(f"{out}: this peer run trained {trained} epochs and --peer-epochs asks for {epochs}; "
                       "give another --out, or remove the folder to train it again")


def run_variant(variant: str, seed: int, root: Path, out: Path, protocol: str, extra: list[str]) -> None:
    """One pipeline of ``variant`` for ``seed`` (finished stages reused), then its tandem on its own train split."""
    layers = [arg for layer in LAYERS[variant] for arg in ("--layer", str(LAYER_FOLDER / layer))]
    asc(["pipeline", "--configs", str(CONFIGS), "--data.root", str(root), "--out", str(out), "--skip-done",
         *PROTOCOLS[protocol], *layers, f"--seed_everything={seed}", *extra])
    if not train_report(out).is_file():  # memorising locations shows as a gap
        asc(["test", "--ckpt_path", str(out / "tandem" / "checkpoints" / "last.ckpt"), "--data.root",
             str(root), "--data.test_split", "train"])


def peer_budget(out: Path, preset: str, protocol: str) -> float | None:
    """The peer's wall-clock budget: the median time of the report pipeline's finished seeds on this preset, so
    that one run slowed by other work on the machine does not set it (None before any has finished)."""
    report = run_folder(out, preset, protocol, "report", 0).parent
    times = [seconds for run in sorted(report.glob("seed*")) if (seconds := seconds_of(run)) is not None]
    return statistics.median(times) if times else None


def run_peer(seed: int, root: Path, out: Path, protocol: str, budget: float | None, extra: list[str],
             count: int | None = None, layers: Sequence[str] = ()) -> None:
    """CP-Mobile with its own recipe (and ``layers``' peer.yaml on top) for ``count`` epochs, or for ``budget``
    seconds (the report pipeline's, :func:`peer_budget`): a one-epoch probe measures its epoch, then the fit runs as
    many epochs as fit the budget. Its schedule spans them either way. A budget depends on what else the machine
    runs at the time; a count does not."""
    from asc.cli.pipeline import layered, stage_configs

    factors = layered([LAYER_FOLDER / layer for layer in layers], PEER)
    common = [*stage_configs(CONFIGS, PEER), "--config", str(PEER_CONFIG), *factors, "--data.root",
              str(root), f"--seed_everything={seed}", *PROTOCOLS[protocol][2:], *extra]
    if count is None and budget is not None:
        probe = out.parent / f"{out.name}-probe"
        started = time.perf_counter()
        asc(["fit", *common, "--trainer.max_epochs=1", "--trainer.default_root_dir", str(probe)])
        count = max(1, round(budget / (time.perf_counter() - started)))
    epochs = []
    if count is not None:
        # its recipe warms up over 2,000 of 81,900 steps (2.4 %); the same share of its epochs here
        epochs = [f"--trainer.max_epochs={count}", f"--model.schedule.warmup_epochs={max(0.5, 0.025 * count):g}"]
    last = out / "checkpoints" / "last.ckpt"
    resume = ["--ckpt_path", str(last)] if last.is_file() else []
    asc(["fit", *common, *epochs, "--trainer.default_root_dir", str(out), *resume])
    asc(["test", "--ckpt_path", str(last), "--data.root", str(root)])


def train_report(out: Path) -> Path:
    """The tandem's report on its own train split (``asc test --data.test_split train`` writes ``test-train``)."""
    return out / "tandem" / "test-train" / "metrics.json"


def stages_of(out: Path, variant: str) -> dict[str, str]:
    """The stages a run reports: a peer's one, or the pipeline's (the teacher where it ran)."""
    if variant in PEERS:
        return {PEER: PEERS[variant][1]}
    return {stage: name for stage, name in STAGES.items() if stage != "teacher" or "ensemble" in LAYERS[variant]}


def report_of(out: Path, stage: str) -> Path:
    return (out if stage == PEER else out / stage) / "test" / "metrics.json"


def finished(out: Path, variant: str) -> bool:
    """Every stage the table reads was tested (and a pipeline's tandem on its train split)."""
    reports = all(report_of(out, stage).is_file() for stage in stages_of(out, variant))
    return reports and (variant in PEERS or train_report(out).is_file())


def seconds_of(out: Path) -> float | None:
    try:
        return json.loads((out / "seconds.json").read_text())["seconds"]
    except (OSError, ValueError, KeyError):
        return None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (OUT/<preset>/data and one run each)")
    p.add_argument("--presets", default=",".join(PRESETS), help=f"comma-separated subset of {','.join(PRESETS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    p.add_argument("--protocol", default="report",
                   help="comma-separated subset of report (validate on the evaluate split, hand on the last "
                        "checkpoint) and holdout (validate on held-out training locations, hand on the best: no "
                        "choice sees the test split)")
    p.add_argument("--peer-epochs", type=int, default=None,
                   help="train the peer this many epochs (default: as many as fit the report pipeline's median "
                        "time on the preset, measured by a one-epoch probe, so it depends on the machine's load); a "
                        "finished peer run of another count in --out is refused, not reused")
    p.add_argument("--table-only", action="store_true",
                   help="run nothing: tabulate the finished runs of these variants and seeds, name the others")
    p.add_argument("--results", type=Path, default=None, help="also write the results page (docs/results.md)")
    return p


def asc(args: list[str]) -> None:
    """One ``asc`` command in its own process (a fresh interpreter per pipeline, as a user runs it)."""
    subprocess.run([sys.executable, "-m", "asc.cli.main", *args], check=True)


def read_run(out: Path, variant: str) -> dict:
    """The test metrics of the stages that matter here, and the tandem's accuracy on its training split."""
    run: dict = {}
    for stage in stages_of(out, variant):
        metrics = json.loads(report_of(out, stage).read_text())
        run[stage] = {"accuracy": metrics["accuracy"], **{g: metrics["accuracy_per_group"][g] for g in GROUPS},
                      "params": metrics["params"], "macs": metrics["macs"], "clips": metrics.get("clips"),
                      "epochs": epochs_of(out if stage == PEER else out / stage)}
    if variant not in PEERS:
        run["tandem"]["train_accuracy"] = json.loads(train_report(out).read_text())["accuracy"]
    return run


def epochs_of(folder: Path) -> int | None:
    """The epochs a stage trained (its fit_metrics.json), None where it has no record."""
    try:
        return json.loads((folder / "fit_metrics.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return None


def mean_std(values: list[float]) -> str:
    """``mean ± std`` in percent (sample std; ± 0 for one seed)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.2f} ± {100 * spread:.2f}"


def table(results: dict[str, dict[str, list[dict]]], protocols: list[str]) -> str:
    """One row per preset, variant (and protocol) and model: accuracy overall and per device group, mean ± std over
    the seeds, every seed's overall figure, the student's distance to its tandem per seed, and the epochs trained
    (one figure where every seed trained as many)."""
    lines = [f"Test accuracy (%), mean ± std over seeds; protocol {', '.join(protocols)}", "",
             "| preset | variant | model | overall | real (a-c) | seen (s1-s3) | unseen (s4-s6) | on its train split "
             "| per seed | vs tandem per seed | epochs |", "|---" * 11 + "|"]
    for preset, variants in results.items():
        for variant, runs in variants.items():
            for stage, name in stages_of(Path(), variant_of(variant)).items():
                lines.append(row(preset, variant, stage, name, runs))
    seeds = "; ".join(f"{preset}/{variant} {', '.join(str(run['seed']) for run in runs)}"
                      for preset, variants in results.items() for variant, runs in variants.items())
    return "\n".join([*lines, "", f"Seeds: {seeds}"])


def row(preset: str, variant: str, stage: str, name: str, runs: list[dict]) -> str:
    cells = [mean_std([run[stage][key] for run in runs]) for key in ("accuracy", *GROUPS)]
    trained = mean_std([run[stage]["train_accuracy"] for run in runs]) if "train_accuracy" in runs[0][stage] else ""
    per_seed = ", ".join(f"{100 * run[stage]['accuracy']:.2f}" for run in runs)
    gap = ", ".join(f"{100 * (run['qat']['accuracy'] - run['tandem']['accuracy']):+.2f}" for run in runs) \
        if stage == "qat" else ""
    counts = [run[stage].get("epochs") for run in runs]
    epochs = "" if None in counts else str(counts[0]) if len(set(counts)) == 1 else ", ".join(map(str, counts))
    return f"| {preset} | {variant} | {name} | " + " | ".join(cells) + f" | {trained} | {per_seed} | {gap} | {epochs} |"


def results_section(text: str, argv: list[str], out: Path, presets: list[str], seeds: list[int]) -> str:
    """The ablation's section of the results page: the table with the command, date, machine and test-split sizes
    that made it."""
    import torch

    command = shlex.join(["python", "-m", "benchmarks.ablation", *argv])
    sizes = ", ".join(f"{preset} {_clips(out / preset / 'data')}" for preset in presets)
    machine = f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}"
    return "\n".join([
        "## The recipe variants on the built-in presets", "",
        f"Made by `{command}` on {datetime.date.today().isoformat()} ({machine}); seeds {seeds}."
        + (" `--table-only` tabulates the finished runs (every seed of each row is listed below it); without it"
           " the command runs the missing ones first." if "--table-only" in argv else ""),
        f"Test split (the evaluate split, locations never trained on): {sizes} clips.", "",
        "`hard` and `cross` come from two generator families (devices, rooms, scene textures); the microphone",
        "responses of the device-response augmentation come from `hard`'s. A difference smaller than the seed",
        "spread is not a finding.", "", text])


def _clips(root: Path) -> str:
    fold = root / "evaluation_setup" / "fold1_evaluate.csv"
    return f"{len(fold.read_text().splitlines()) - 1:,}" if fold.is_file() else "?"


if __name__ == "__main__":
    raise SystemExit(main())
