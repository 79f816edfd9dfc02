"""Ablation of what goes beyond the report, on the built-in ``hard`` preset (issue 12, README "Ablation").

    python benchmarks/ablation.py --out build/ablation [--root build/hard/data] [--seeds 0 1 2]
        [--variants report,freq_mixstyle,device_irs,distillation,all] [--protocol report|holdout]
        [--table-only] [-- --trainer.max_epochs=... (any argument for every stage)]

Each variant is one ``asc pipeline`` (all five stages, the built-in configs) with its config layers, once per
seed (``--seed_everything``). Per variant it reports the test accuracy of the tandem, the pruned and the
pruned+quantized model, overall and per device group (real a-c, seen simulated s1-s3, unseen s4-s6), as
mean ± std over the seeds, and the tandem's accuracy on its own training split (memorising the training
locations shows as a gap). The dataset is written with ``asc synth --size hard`` when ``--root`` does not
exist yet. Finished pipelines are reused (``--skip-done``), so an interrupted ablation continues where it
stopped; ``--table-only`` runs nothing and tabulates the finished runs (naming the others). Writes
``OUT/ablation-<protocol>.json`` and ``.md``; figures in the README come from this script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIGS = REPOSITORY / "configs" / "builtin"
LAYERS = {
    "report": [],
    "freq_mixstyle": ["freq_mixstyle"],
    "device_irs": ["device_irs"],
    "distillation": ["distillation"],
    "all": ["freq_mixstyle", "device_irs", "distillation"],
}
STAGES = {"tandem": "Tandem", "pruning": "Pruned", "qat": "Pruned+Quant."}
GROUPS = ("real", "seen_simulated", "unseen_simulated")
PROTOCOLS = {"report": ["--handover", "last"], "holdout": ["--handover", "best", "--data.val_split", "holdout"]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in LAYERS]
    if unknown:
        print(f"--variants: unknown {unknown} (expected some of {', '.join(LAYERS)})", file=sys.stderr)
        return 2
    root = args.root or args.out / "data"
    if not args.table_only and not (root / "meta.csv").is_file():
        asc(["synth", str(root), "--size", "hard", "--scale", str(args.scale)])
    results = {}
    for variant in variants:
        for seed in args.seeds:
            run = one_run(variant, seed, root, args, extra)
            if run is not None:
                results.setdefault(variant, []).append(run)
    report = {"protocol": args.protocol, "root": str(root), "seeds": args.seeds, "extra": extra,
              "variants": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"ablation-{args.protocol}.json").write_text(json.dumps(report, indent=1) + "\n")
    text = table(results, args.protocol)
    (args.out / f"ablation-{args.protocol}.md").write_text(text + "\n")
    print(text)
    return 0


def one_run(variant: str, seed: int, root: Path, args: argparse.Namespace, extra: list[str]) -> dict | None:
    """The figures of one variant and seed: run (finished stages reused), or with ``--table-only`` read if done."""
    out = args.out / args.protocol / variant / f"seed{seed}"
    if args.table_only and not finished(out):
        print(f"{out}: not finished, left out of the table", file=sys.stderr)
        return None
    started = time.perf_counter()
    if not args.table_only:
        run_variant(variant, seed, root, out, args.protocol, extra)
    seconds = None if args.table_only else time.perf_counter() - started
    return {**read_run(out, seconds), "seed": seed}


def run_variant(variant: str, seed: int, root: Path, out: Path, protocol: str, extra: list[str]) -> None:
    """One pipeline of ``variant`` for ``seed`` (finished stages reused), then its tandem on its own train split."""
    layers = [arg for layer in LAYERS[variant] for arg in ("--layer", str(CONFIGS / layer))]
    irs = [f"--model.device_irs={root / 'impulse_responses'}"] if "device_irs" in LAYERS[variant] else []
    asc(["pipeline", "--configs", str(CONFIGS), "--data.root", str(root), "--out", str(out), "--skip-done",
         *PROTOCOLS[protocol], *layers, f"--seed_everything={seed}", *irs, *extra])
    if not train_report(out).is_file():  # memorising locations shows as a gap
        asc(["test", "--ckpt_path", str(out / "tandem" / "checkpoints" / "last.ckpt"), "--data.root",
             str(root), "--data.test_split", "train"])


def train_report(out: Path) -> Path:
    """The tandem's report on its own train split (``asc test --data.test_split train`` writes ``test-train``)."""
    return out / "tandem" / "test-train" / "metrics.json"


def finished(out: Path) -> bool:
    """Every stage the table reads was tested, and the tandem on its train split."""
    return all((out / stage / "test" / "metrics.json").is_file() for stage in STAGES) and train_report(out).is_file()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (one pipeline per variant and seed)")
    p.add_argument("--root", type=Path, default=None, help="dataset root (default OUT/data, written if absent)")
    p.add_argument("--scale", type=float, default=1.0, help="asc synth --scale of the hard preset, if written")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", default=",".join(LAYERS), help=f"comma-separated subset of {','.join(LAYERS)}")
    p.add_argument("--protocol", choices=tuple(PROTOCOLS), default="report",
                   help="report: validate on the evaluate split, hand on the last checkpoint; holdout: validate on "
                        "held-out training locations, hand on the best (no choice sees the test split)")
    p.add_argument("--table-only", action="store_true",
                   help="run nothing: tabulate the finished runs of these variants and seeds, name the others")
    return p


def asc(args: list[str]) -> None:
    """One ``asc`` command in its own process (a fresh interpreter per pipeline, as a user runs it)."""
    subprocess.run([sys.executable, "-m", "asc.cli.main", *args], check=True)


def read_run(out: Path, seconds: float | None) -> dict:
    """The test metrics of the stages that matter here, and the tandem's last training accuracy."""
    run: dict = {"seconds": None if seconds is None else round(seconds, 1)}
    for stage in STAGES:
        metrics = json.loads((out / stage / "test" / "metrics.json").read_text())
        run[stage] = {"accuracy": metrics["accuracy"], **{g: metrics["accuracy_per_group"][g] for g in GROUPS},
                      "params": metrics["params"], "macs": metrics["macs"]}
    on_train = json.loads(train_report(out).read_text())
    run["tandem"]["train_accuracy"] = on_train["accuracy"]
    return run


def mean_std(values: list[float]) -> str:
    """``mean ± std`` in percent (sample std; ± 0 for one seed)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.2f} ± {100 * spread:.2f}"


def table(results: dict[str, list[dict]], protocol: str) -> str:
    """One row per variant and stage: accuracy overall and per device group, mean ± std over the seeds."""
    lines = [f"Test accuracy (%), mean ± std over seeds; protocol {protocol}", "",
             "| variant | model | overall | real (a-c) | seen (s1-s3) | unseen (s4-s6) | on its train split |",
             "|---" * 7 + "|"]
    for variant, runs in results.items():
        for stage, name in STAGES.items():
            cells = [mean_std([run[stage][key] for run in runs]) for key in ("accuracy", *GROUPS)]
            trained = mean_std([run[stage]["train_accuracy"] for run in runs]) if stage == "tandem" else ""
            lines.append(f"| {variant} | {name} | " + " | ".join(cells) + f" | {trained} |")
    seeds = "; ".join(f"{variant} {', '.join(str(run['seed']) for run in runs)}" for variant, runs in results.items())
    return "\n".join([*lines, "", f"Seeds: {seeds}"])


if __name__ == "__main__":
    raise SystemExit(main())
