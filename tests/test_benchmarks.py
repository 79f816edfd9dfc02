"""The benchmarks: the ablation's orchestration (``asc`` stubbed), and ``make bench``'s runner and its parts.

Nothing here asserts a timing: only which rows, ratios and files a run produces, that each row's figure is
made from its own candidate's timings, and that the helpers alternate, take medians and measure the process
they claim to.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from benchmarks import demo_speed, feature_cache, inference, isolated, pruning_search, report, run, scaling, training
from benchmarks.report import Row
from benchmarks.timing import Timing, alternate, round_order


def recorded_timings(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> dict[str, Timing]:
    """The timings ``module``'s rows are made from: what its calls of ``alternate`` return, by candidate."""
    timings: dict[str, Timing] = {}

    def recording(candidates, *args, **kwargs) -> dict[str, Timing]:
        result = alternate(candidates, *args, **kwargs)
        timings.update(result)
        return result

    monkeypatch.setattr(module, "alternate", recording)
    return timings


def load_ablation():
    from benchmarks import ablation

    return ablation


def fake_metrics(folder: Path, accuracy: float, report: str = "test") -> None:
    (folder / report).mkdir(parents=True, exist_ok=True)
    groups = {"real": accuracy + 0.1, "seen_simulated": accuracy, "unseen_simulated": accuracy - 0.1}
    metrics = {"accuracy": accuracy, "accuracy_per_group": groups, "params": 1, "macs": 2}
    (folder / report / "metrics.json").write_text(json.dumps(metrics))


def seed_of(args: list[str]) -> int:
    return int(next(a for a in args if a.startswith("--seed_everything=")).split("=")[1])


def test_ablation_runs_each_variant_with_its_layers_and_reports_mean_and_std(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    ablation, commands = load_ablation(), []

    def asc(args: list[str]) -> None:
        commands.append(args)
        if args[0] == "synth":
            Path(args[1]).mkdir(parents=True)
            (Path(args[1]) / "meta.csv").write_text("")
        elif args[0] == "pipeline":
            out = Path(args[args.index("--out") + 1])
            seed = seed_of(args)
            for stage in ("teacher", "tandem", "pruning", "qat"):
                fake_metrics(out / stage, 0.5 + 0.1 * seed)
                (out / stage / "fit_metrics.json").write_text(json.dumps({"epoch": 4}))
        elif args[0] == "fit":  # the peer (a probe, then its fit)
            run = Path(args[args.index("--trainer.default_root_dir") + 1])
            run.mkdir(parents=True, exist_ok=True)
            epochs = [int(a.split("=")[1]) for a in args if a.startswith("--trainer.max_epochs=")][-1]
            (run / "fit_metrics.json").write_text(json.dumps({"epoch": epochs + seed_of(args)}))
        else:  # asc test --ckpt_path RUN/checkpoints/last.ckpt [--data.test_split train]
            run = Path(args[args.index("--ckpt_path") + 1]).parents[1]
            fake_metrics(run, 1.0 if "--data.test_split" in args else 0.3, "test-train" if "--data.test_split" in
                         args else "test")

    monkeypatch.setattr(ablation, "asc", asc)
    out = tmp_path / "ablation"
    assert ablation.main(["--out", str(out), "--seeds", "0", "1", "--presets", "hard,cross", "--variants",
                          "report,all,ensemble,peer", "--results", str(tmp_path / "results.md"), "--",
                          "--trainer.max_epochs=1"]) == 0
    assert [c[:4] for c in commands if c[0] == "synth"] == [["synth", str(out / p / "data"), "--size", p]
                                                           for p in ("hard", "cross")]
    pipelines = [c for c in commands if c[0] == "pipeline"]
    assert len(pipelines) == 12 and all(c[-1] == "--trainer.max_epochs=1" for c in pipelines)
    assert "--layer" not in pipelines[0] and pipelines[0][-2:] == ["--seed_everything=0", "--trainer.max_epochs=1"]
    layers = [pipelines[4][i + 1] for i, arg in enumerate(pipelines[4]) if arg == "--layer"]
    assert [Path(p).name for p in layers] == ["freq_mixstyle", "device_irs", "distillation", "ensemble"]
    tests = [c for c in commands if c[0] == "test" and "--data.test_split" in c]
    assert len(tests) == 12 and all(c[c.index("--data.test_split") + 1] == "train" for c in tests)
    peers = [c for c in commands if c[0] == "fit"]  # per preset and seed: a one-epoch probe, then the timed fit
    assert len(peers) == 8 and all("--trainer.max_epochs=1" in c for c in peers[::2])
    assert all(any(a.startswith("--trainer.max_epochs=") for a in c) for c in peers[1::2])
    table = capsys.readouterr().out
    assert "| hard | all | Pruned+Quant. | 55.00 ± 7.07 | 65.00 ± 7.07 | 55.00 ± 7.07 | 45.00 ± 7.07 |  " \
           "| 50.00, 60.00 | +0.00, +0.00 | 4 |" in table
    assert "| cross | ensemble | Teacher | 55.00 ± 7.07 |" in table and "| hard | report | Teacher" not in table
    assert "| hard | peer | CP-Mobile | 30.00 ± 0.00 |" in table and "| 100.00 ± 0.00 |" in table
    saved = json.loads((out / "ablation-report.json").read_text())
    assert len(saved["results"]["cross"]["all"]) == 2 and saved["extra"] == ["--trainer.max_epochs=1"]
    page = (tmp_path / "results.md").read_text()
    assert "Made by `python -m benchmarks.ablation --out" in page and "seeds [0, 1]" in page and table.strip() in page
    assert ablation.main(["--out", str(out), "--variants", "nope"]) == 2


def test_a_fixed_epoch_count_trains_the_peer_without_a_probe_and_the_table_lists_its_epochs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    ablation, fits = load_ablation(), []

    def asc(args: list[str]) -> None:
        if args[0] == "synth":
            Path(args[1]).mkdir(parents=True)
            (Path(args[1]) / "meta.csv").write_text("")
        elif args[0] == "fit":
            fits.append(args)
            run = Path(args[args.index("--trainer.default_root_dir") + 1])
            run.mkdir(parents=True, exist_ok=True)
            (run / "fit_metrics.json").write_text(json.dumps({"epoch": 7 + seed_of(args)}))
        else:
            fake_metrics(Path(args[args.index("--ckpt_path") + 1]).parents[1], 0.4)

    monkeypatch.setattr(ablation, "asc", asc)
    assert ablation.main(["--out", str(tmp_path), "--seeds", "0", "1", "--presets", "hard", "--variants",
                          "peer,peer_tandem_network", "--peer-epochs", "7"]) == 0
    assert len(fits) == 4 and all("--trainer.max_epochs=7" in args for args in fits)  # no one-epoch probe
    configs = [[Path(a).parent.name + "/" + Path(a).name for a in args if a.endswith(".yaml")] for args in fits]
    assert configs[0][-1] == "configs/peer.yaml"
    assert configs[2][-2:] == ["configs/peer.yaml", "tandem_network/peer.yaml"]  # the factor's layer on top
    table = capsys.readouterr().out
    assert "| hard | peer | CP-Mobile | 40.00 ± 0.00 |" in table and "| 40.00, 40.00 |  | 7, 8 |" in table
    assert "| hard | peer_tandem_network | Tandem | 40.00 ± 0.00 |" in table
    assert ablation.main(["--out", str(tmp_path), "--variants", "peer", "--peer-epochs", "0"]) == 2
    assert capsys.readouterr().err.strip() == "--peer-epochs: 0 is not a positive number of epochs"
    # a finished run of another count is not reused or tabulated as this one's
    for only in ([], ["--table-only"]):
        assert ablation.main(["--out", str(tmp_path), "--seeds", "0", "--presets", "hard", "--variants", "peer",
                              "--peer-epochs", "63", *only]) == 2
        assert capsys.readouterr().err.strip() == (f"{tmp_path / 'hard' / 'report' / 'peer' / 'seed0'}: this peer "
                                                   "run trained 7 epochs and --peer-epochs asks for 63; give another "
                                                   "--out, or remove the folder to train it again")
    assert len(fits) == 4


def test_every_variants_layers_are_shipped_and_the_long_rows_add_only_what_they_name() -> None:
    ablation = load_ablation()
    assert all((ablation.LAYER_FOLDER / layer).is_dir() for layers in ablation.LAYERS.values() for layer in layers)
    assert all((ablation.LAYER_FOLDER / layer / "peer.yaml").is_file() for layers, _ in ablation.PEERS.values()
               for layer in layers)
    assert ablation.LAYERS["long"] == [*ablation.LAYERS["all"], "long_tandem"]
    assert ablation.LAYERS["ensemble_long"] == [*ablation.LAYERS["ensemble"], "long_tandem"]
    assert ablation.LAYERS["long_peer_recipe"] == [*ablation.LAYERS["long"], "peer_recipe", "long_pruning"]
    assert ablation.LAYERS["ensemble_peer_recipe"] == [*ablation.LAYERS["long_peer_recipe"], "ensemble"]
    assert ablation.LAYERS["long_peer_recipe_sgd"] == [*ablation.LAYERS["long_peer_recipe"], "tandem_optimiser"]
    assert ablation.LAYERS["longer_peer_recipe"] == [*ablation.LAYERS["long_peer_recipe"], "longer_tandem"]
    assert ablation.stages_of(Path(), "ensemble_long")["teacher"] == "Teacher"


def test_the_peers_budget_is_the_median_time_of_the_report_pipelines_seeds(tmp_path: Path) -> None:
    """One report run slowed by other work on the machine does not set the peer's wall-clock budget."""
    ablation = load_ablation()
    assert ablation.peer_budget(tmp_path, "cross", "report") is None  # no finished report run yet
    for seed, seconds in ((0, 1087.4), (1, 580.8), (2, 504.2)):
        run = ablation.run_folder(tmp_path, "cross", "report", "report", seed)
        run.mkdir(parents=True)
        (run / "seconds.json").write_text(json.dumps({"seconds": seconds}))
    assert ablation.peer_budget(tmp_path, "cross", "report") == 580.8
    assert ablation.peer_budget(tmp_path, "hard", "report") is None


def test_ablation_table_only_runs_nothing_and_names_the_unfinished_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    ablation, out = load_ablation(), tmp_path / "ablation"
    monkeypatch.setattr(ablation, "asc", lambda args: pytest.fail(f"ran {args}"))
    for seed, accuracy in ((0, 0.4), (2, 0.6)):
        for stage in ("tandem", "pruning", "qat"):
            fake_metrics(out / "hard" / "report" / "all" / f"seed{seed}" / stage, accuracy)
        fake_metrics(out / "hard" / "report" / "all" / f"seed{seed}" / "tandem", accuracy, report="test-train")
    fake_metrics(out / "hard" / "report" / "all" / "seed1" / "tandem", 0.9)  # interrupted after its tandem
    assert ablation.main(["--out", str(out), "--presets", "hard", "--variants", "all", "--seeds", "0", "1", "2",
                          "--table-only", "--results", str(tmp_path / "results.md")]) == 0
    printed = capsys.readouterr()
    unfinished = out / "hard" / "report" / "all" / "seed1"
    assert printed.err.strip().splitlines() == [f"{unfinished}: not finished, left out of the table"]
    assert "| hard | all | Tandem | 50.00 ± 14.14 |" in printed.out and "Seeds: hard/all 0, 2" in printed.out
    page = (tmp_path / "results.md").read_text()  # the page says that the table holds only the finished runs
    assert "--table-only` tabulates the finished runs" in page and "Seeds: hard/all 0, 2" in page


def test_ablation_puts_both_protocols_side_by_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    """Model selection on held-out locations (best checkpoint) against the last checkpoint: one table, the holdout
    runs named ``<variant>, holdout`` and read from their own folders; an unknown protocol is refused."""
    ablation, out = load_ablation(), tmp_path / "ablation"
    monkeypatch.setattr(ablation, "asc", lambda args: pytest.fail(f"ran {args}"))
    for protocol, accuracy in (("report", 0.4), ("holdout", 0.3)):
        run = out / "cross" / protocol / "all" / "seed0"
        for stage in ("tandem", "pruning", "qat"):
            fake_metrics(run / stage, accuracy)
        fake_metrics(run / "tandem", accuracy, report="test-train")
    assert ablation.main(["--out", str(out), "--presets", "cross", "--variants", "all", "--seeds", "0",
                          "--protocol", "report,holdout", "--table-only"]) == 0
    printed = capsys.readouterr().out
    assert "| cross | all | Tandem | 40.00 ± 0.00 |" in printed and "| cross | all, holdout | Tandem | 30.00 ± 0.00 |" \
        in printed and "protocol report, holdout" in printed
    assert set(json.loads((out / "ablation-report+holdout.json").read_text())["results"]["cross"]) == \
        {"all", "all, holdout"}
    assert ablation.main(["--out", str(out), "--protocol", "report,best"]) == 2


# ---------------------------------------------------------------- make bench (benchmarks/run.py and its parts)


class FakeClock:
    """A clock that each candidate advances by its next scripted duration."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_alternate_rotates_the_order_each_round_and_reports_medians_of_the_timed_rounds() -> None:
    clock, calls = FakeClock(), []
    durations = {"a": iter([100.0, 1.0, 9.0, 3.0]), "b": iter([100.0, 2.0, 2.0, 8.0])}

    def candidate(name: str):
        def work() -> None:
            calls.append(name)
            clock.now += next(durations[name])
        return work

    timings = alternate({"a": candidate("a"), "b": candidate("b")}, repeats=3, warmup=1, clock=clock)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert timings["a"].seconds == (1.0, 9.0, 3.0) and timings["b"].seconds == (2.0, 2.0, 8.0)  # warm-up left out
    assert timings["a"].median == 3.0 and timings["b"].median == 2.0
    assert timings["b"].rate(64) == 32.0 and timings["a"].per_unit_ms(3) == 1000.0
    assert round_order(["x", "y", "z"], 4) == ["y", "z", "x"]
    with pytest.raises(ValueError):
        alternate({}, repeats=1)


def test_ratios_and_both_tables_carry_every_row() -> None:
    rows = report.with_ratios([
        Row("s", "base", 4.0, "clips/s"), Row("s", "fast", 10.0, "clips/s", "base"),
        Row("s", "missing", None, "clips/s", "base", note="not measured: why"), Row("t", "orphan", 1.0, "s", "base"),
    ])
    assert [row.ratio for row in rows] == [None, 2.5, None, None]  # a baseline counts in its own section only
    info = {"cpu": "CPU X", "cores": 2, "load_average_1min": 0.5, "python": "3", "torch": "T", "onnxruntime": "O"}
    text = report.text_table(rows, info, {"quick": True})
    assert "CPU X, 2 cores" in text and "torch T, onnxruntime O" in text and "quick True" in text
    assert all(name in text for name in ("base", "fast", "missing", "orphan")) and "2.5×" in text and "n/a" in text
    assert report.fmt(3391.7) == "3,392" and report.fmt(0.06321) == "0.0632" and report.fmt(None) == "n/a"
    markdown = report.markdown_table(rows, info, {})
    assert markdown.count("\n| ") == 5 and "| s | fast | 10 | clips/s | 2.5× | base |  |" in markdown


def fake_sections(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Every section of the runner replaced by a stub returning its row names; the scaling rows are real."""
    monkeypatch.setattr(scaling, "dataset_roots", lambda out, base, factors, workers: {f: tmp_path for f in factors})
    result = {"cache": {"clips": 10, "seconds": 2.0, "warmup_s": 1.0, "peak_rss_mib": 300.0,
                        "workers_peak_rss_mib": 200.0},
              "train": {"train_clips": 8, "batches": 1, "loader_epoch_s": 0.1, "steps": 1, "step_clips_per_s": 5.0,
                        "epoch_estimate_s": 1.6, "peak_rss_mib": 700.0, "workers_peak_rss_mib": 0.0}}
    monkeypatch.setattr(scaling, "measure", lambda roots, *args: {
        f: {**result, "train_glibc": result["train"]} if f == min(roots) else result for f in roots})
    monkeypatch.setattr(scaling, "index_rows", lambda out: [Row(scaling.MEMORY, "index peak memory per clip", 0.3,
                                                                "KiB/clip")])
    monkeypatch.setattr(run, "cache_of", lambda root, cache_dir: type("Store", (), {"filenames": ["a.wav"]})())
    stubs = {
        feature_cache: ("front_end_rows", feature_cache.SECTION, [feature_cache.LIBROSA, feature_cache.OURS]),
        training: ("training_rows", training.SECTION, [training.STEP, training.LOADER]),
        inference: ("inference_rows", inference.SECTION, [inference.EAGER, inference.ORT_FP32]),
        pruning_search: ("pruning_rows", pruning_search.SECTION, ["threshold search"]),
    }
    names = []
    for module, (function, section, rows) in [*stubs.items(),
                                              (demo_speed, ("batch_rows", demo_speed.SECTION, ["batch 32", "64"])),
                                              (demo_speed, ("resnorm_rows", demo_speed.SECTION, ["fused"]))]:
        made = [Row(section, name, 1.0 + i, "s", rows[0] if i else None) for i, name in enumerate(rows)]
        monkeypatch.setattr(module, function, lambda *args, made=made, **kwargs: made)
        names += rows
    return names


def test_runner_prints_one_table_and_writes_json_and_markdown_with_every_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    names = fake_sections(monkeypatch, tmp_path)
    stub = training.training_rows
    monkeypatch.setattr(training, "training_rows", lambda *args, **kwargs: (time.sleep(0.25), stub())[1])
    out = tmp_path / "bench"
    start = time.perf_counter()
    assert run.main(["--quick", "--out", str(out), "--workers", "1"]) == 0
    elapsed = time.perf_counter() - start
    saved = json.loads((out / "bench.json").read_text())
    assert {"cpu", "cores", "torch", "onnxruntime", "load_average_1min"} <= set(saved["machine"])
    # The whole run's wall clock (to 0.1 s): the sections included, the JSON and Markdown writing not.
    assert saved["settings"]["quick"] is True and 0.2 <= saved["wall_s"] <= elapsed + 0.05
    sections = {row["section"] for row in saved["rows"]}
    assert sections == {"front end", "training", "demo choices", "inference", "pruning", "scaling", "memory"}
    assert all(set(row) == {"section", "name", "value", "unit", "baseline", "ratio", "note"} for row in saved["rows"])
    saved_names = [row["name"] for row in saved["rows"]]
    assert set(names) <= set(saved_names)
    assert {"cache build ×1", "cache build ×2", "training rate ×2", "training peak RSS ×2", scaling.GLIBC_RATE,
            scaling.GLIBC_PEAK} <= set(saved_names)
    by_name = {row["name"]: row for row in saved["rows"]}
    assert by_name["cache build ×2"]["baseline"] == "cache build ×1" and by_name["cache build ×2"]["ratio"] == 1.0
    assert by_name[training.LOADER]["ratio"] == 2.0
    table, markdown = capsys.readouterr().out, (out / "bench.md").read_text()
    assert all(name in table and f"| {name} |" in markdown for name in saved_names)


def test_index_rows_read_the_planned_layout_in_a_process_of_its_own(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The index rows read meta.csv files of the full preset's plan (scaled down here) and report time and peak
    memory per clip, the larger against the smaller."""
    monkeypatch.setattr(scaling, "INDEX_FRACTIONS", (1 / 16, 1 / 4))
    rows = report.with_ratios(scaling.index_rows(tmp_path))
    assert [row.section for row in rows] == [scaling.SCALING, scaling.MEMORY] * 2
    small, large = rows[1], rows[3]
    assert small.unit == large.unit == "KiB/clip" and large.baseline == small.name and large.ratio is not None
    clips = [int(row.name.rsplit("(", 1)[1].split()[0].replace(",", "")) for row in (small, large)]
    assert clips[1] > 2 * clips[0] and 0 < large.value < 0.5  # about 0.3 KiB a clip; 0.8 held as Python records
    assert (tmp_path / "index" / f"full_{1 / 4:g}" / "meta.csv").is_file()


def test_scaling_rows_compare_each_size_with_the_smallest() -> None:
    def result(factor: int) -> dict:
        return {"cache": {"clips": 100 * factor, "seconds": 1.0 * factor, "warmup_s": 3.0, "peak_rss_mib": 400.0,
                          "workers_peak_rss_mib": 300.0},
                "train": {"train_clips": 40 * factor, "batches": factor, "loader_epoch_s": 0.1, "steps": 3,
                          "step_clips_per_s": 50.0, "epoch_estimate_s": 1.3 * factor, "peak_rss_mib": 800.0}}

    first = {**result(1), "train_glibc": {**result(1)["train"], "step_clips_per_s": 25.0, "peak_rss_mib": 600.0}}
    rows = report.with_ratios(scaling.scaling_rows({1: first, 4: result(4)}, workers=2))
    by_name = {row.name: row for row in rows}
    assert by_name[scaling.GLIBC_RATE].baseline == "training rate ×1" and by_name[scaling.GLIBC_RATE].ratio == 0.5
    assert by_name[scaling.GLIBC_PEAK].section == "memory" and by_name[scaling.GLIBC_PEAK].ratio == 0.75
    assert by_name["cache build ×4"].ratio == 4.0 and by_name["cache build rate ×4"].ratio == 1.0
    assert by_name["epoch time (est.) ×4"].ratio == pytest.approx(4.0) and by_name["training rate ×1"].ratio is None
    assert by_name["training peak RSS ×4"].section == "memory" and "300 MiB" in by_name["cache build peak RSS ×1"].note
    assert [row.section for row in rows].index("memory") == 8  # scaling rows first, then memory


def test_the_allocator_comparison_alternates_processes_and_keeps_each_settings_median_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One process slowed by the machine (its rate from a few steps) does not decide the glibc row."""
    calls: list[bool] = []
    glibc_rates, asc_rates = iter([30.0, 5.0, 31.0]), iter([50.0, 52.0])

    def train(task: str, **arguments) -> dict:
        glibc = arguments.pop(isolated.GLIBC_DEFAULT, False)
        calls.append(glibc)
        assert task == "train" and arguments == {"root": "r", "steps": 3}
        rate = next(glibc_rates if glibc else asc_rates)
        return {"step_clips_per_s": rate, "peak_rss_mib": 600.0 if glibc else 800.0}

    monkeypatch.setattr(scaling, "run_isolated", train)
    mine, glibc = scaling.allocator_pair({"step_clips_per_s": 10.0, "peak_rss_mib": 800.0}, root="r", steps=3)
    assert calls == [True, False, True, False, True]  # alternating, after asc's first (measured) run
    assert (mine["step_clips_per_s"], mine["rates"]) == (50.0, [10.0, 50.0, 52.0])
    assert (glibc["step_clips_per_s"], glibc["peak_rss_mib"]) == (30.0, 600.0)


def test_a_dataset_is_reused_only_when_its_marker_matches_the_spec(tmp_path: Path) -> None:
    from asc.data.synth import GENERATOR_VERSION, MARKER_FILE

    spec = scaling.spec_at(scaling.QUICK_BASE, 2)
    assert spec.train_locations == 2 * scaling.QUICK_BASE.train_locations
    marker = {"generator": "asc.data.synth", "version": GENERATOR_VERSION, "seed": 0,
              "spec": spec.changed_fields(), "complete": True}
    (tmp_path / MARKER_FILE).write_text(json.dumps(marker))
    assert scaling.is_written(tmp_path, spec) and not scaling.is_written(tmp_path, scaling.QUICK_BASE)
    (tmp_path / MARKER_FILE).write_text(json.dumps({**marker, "complete": False}))
    assert not scaling.is_written(tmp_path, spec)


def test_an_isolated_measurement_reports_the_peak_memory_of_its_own_process() -> None:
    small, large = isolated.run_isolated("allocate", mib=1), isolated.run_isolated("allocate", mib=96)
    assert large["bytes"] == 96 * 2**20
    assert large["peak_rss_mib"] - small["peak_rss_mib"] > 90  # the parent's own size is not inherited
    assert small["peak_rss_mib"] < 200
    glibc = isolated.run_isolated("allocate", mib=1, **{isolated.GLIBC_DEFAULT: True})  # an option, not an argument
    assert glibc["bytes"] == 2**20
    with pytest.raises(Exception, match="benchmark task allocate failed"):
        isolated.run_isolated("allocate", mib="many")


def test_librosa_reference_computes_what_the_front_end_does_and_rows_compare_them(
        shared_mini_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from asc.data.features import FeatureSettings, LogMel
    from asc.data.index import DatasetIndex

    names = DatasetIndex(shared_mini_root).filenames("train")[:3]
    settings = FeatureSettings()
    ours = feature_cache.ours(shared_mini_root, names, settings)
    theirs = [feature_cache.librosa_logmel(shared_mini_root / name, settings) for name in names]
    assert ours.shape == (3, settings.n_mels, settings.n_frames) and np.allclose(ours, np.stack(theirs), atol=1e-3)
    waves = feature_cache.loaded(shared_mini_root, names, settings)
    assert np.array_equal(waves, np.stack([feature_cache.librosa_wave(shared_mini_root / name, settings)
                                           for name in names]))  # the same clips as librosa.load
    alone = feature_cache.ours_from_waves(waves, LogMel(settings))
    assert np.array_equal(alone, ours)  # the same front end on the same waveforms, without the loading
    assert np.allclose(alone, np.stack([feature_cache.librosa_from_wave(wave, settings) for wave in waves]), atol=1e-3)
    timings = recorded_timings(monkeypatch, feature_cache)
    rows = feature_cache.front_end_rows(shared_mini_root, names, settings, cache=None, repeats=1)
    assert [(row.name, row.baseline) for row in rows] == [
        (feature_cache.LIBROSA, None), (feature_cache.OURS, feature_cache.LIBROSA),
        (feature_cache.LIBROSA_LOADING, None), (feature_cache.LOADING, feature_cache.LIBROSA_LOADING),
        (feature_cache.LIBROSA_FROM_WAVES, None),
        (feature_cache.OURS_FROM_WAVES, feature_cache.LIBROSA_FROM_WAVES)]
    assert all(row.value == timings[row.name].rate(3) and row.unit == "clips/s" for row in rows)  # 3 clips a round


def test_training_rows_run_the_stages_own_training_step_against_the_loader(shared_mini_root: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    timings = recorded_timings(monkeypatch, training)
    with inference.torch_threads(1):
        rows = training.training_rows(shared_mini_root, tmp_path / "cache", width=1, repeats=1)
    assert [(row.name, row.baseline, row.unit) for row in rows] == [
        (training.STEP, None, "batches/s"), (training.LOADER, training.STEP, "batches/s")]
    assert "21,585 params" in rows[0].note and "1 batches per round" in rows[1].note  # 6 clips, batch 64
    assert [row.value for row in rows] == [timings[training.STEP].rate(1), timings[training.LOADER].rate(1)]


def test_demo_choice_rows_compare_batch_sizes_per_clip_and_resnorm_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    timings = recorded_timings(monkeypatch, demo_speed)
    with inference.torch_threads(1):
        rows = demo_speed.batch_rows(width=1, repeats=1, batches=(4, 8)) + demo_speed.resnorm_rows(1, (2, 4, 8, 5))
    assert [(row.name, row.baseline, row.unit) for row in rows] == [
        ("train step, batch 4", "train step, batch 8", "clips/s"), ("train step, batch 8", None, "clips/s"),
        (demo_speed.FUSED, demo_speed.FORMULA, "calls/s"), (demo_speed.FORMULA, None, "calls/s")]
    assert [row.value for row in rows] == [timings[row.name].rate(units) for row, units in zip(rows, (4, 8, 1, 1),
                                                                                                strict=True)]
    assert "2x4x8x5" in rows[2].note


def test_inference_rows_keep_a_variant_that_could_not_be_measured() -> None:
    calls = {inference.EAGER: lambda x: x, inference.ORT_FP32: lambda x: x, inference.ORT_QDQ: lambda x: x}
    rows = inference.timed_rows(calls, {inference.ORT_CPU: "not measured: no module"}, batch=2, calls_per_round=1,
                                repeats=1)
    assert [row.name for row in rows] == [f"{name}, batch 2" for name in
                                          (inference.EAGER, inference.ORT_FP32, inference.ORT_QDQ, inference.ORT_CPU)]
    assert rows[-1].value is None and rows[-1].note == "not measured: no module"
    assert [row.baseline for row in rows] == [None, f"{inference.EAGER}, batch 2", f"{inference.ORT_FP32}, batch 2",
                                              f"{inference.ORT_FP32}, batch 2"]  # int8 against fp32, same runtime


def test_inference_rows_name_their_thread_count_and_compare_int8_with_fp32_at_the_same_count() -> None:
    names = (inference.EAGER, inference.ORT_FP32, inference.ORT_QDQ, inference.ORT_CPU)
    calls = {name: (lambda x: x) for name in names}
    rows = inference.timed_rows(calls, {}, batch=2, calls_per_round=1, repeats=1, threads=2)
    assert [row.name for row in rows] == [f"{name}, batch 2, 2 threads" for name in calls]
    assert [row.baseline for row in rows] == [None, f"{inference.EAGER}, batch 2, 2 threads",
                                              f"{inference.ORT_FP32}, batch 2, 2 threads",
                                              f"{inference.ORT_FP32}, batch 2, 2 threads"]
    assert "the speed of onnxruntime fp32" in rows[3].note
    assert inference.row_name(inference.ORT_CPU, 64, 1) == f"{inference.ORT_CPU}, batch 64, 1 thread"
    spinning = inference.session_options(2).get_session_config_entry("session.intra_op.allow_spinning")
    assert spinning == "0" and inference.session_options(1).intra_op_num_threads == 1


def test_the_node_profile_reads_onnxruntimes_profiler_and_tabulates_it_by_type_and_node(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node(kind, [source], [target], name=name) for kind, source, target, name in
             (("Relu", "logmel", "r", "relu"), ("Neg", "r", "n", "neg"), ("Relu", "n", "logits", "relu2"))]
    logmel = helper.make_tensor_value_info("logmel", TensorProto.FLOAT, ["b", 1, 256, 34])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "tiny", [logmel], [logits])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    profile = inference.node_profile(path, batch=2, threads=1, runs=5)
    assert profile["types"] == {"relu": "Relu", "neg": "Neg", "relu2": "Relu"}
    assert set(profile["nodes"]) == {"relu", "neg", "relu2"} and all(us >= 0 for us in profile["nodes"].values())
    table = inference.profile_table({"a": profile, "b": {"nodes": {"neg": 1.0}, "types": {"neg": "Neg"}}}, top=2)
    assert "| node type | a: us (nodes, share) | b: us (nodes, share) |" in table
    assert "| Relu |" in table and "(2, " in table and "| **all nodes** |" in table
    assert table.count("Slowest nodes") == 2 and "| neg | Neg | 1 | 100.0 % |" in table


def test_the_pruned_benchmark_model_has_the_pruned_size_and_the_search_meets_the_limits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from asc.compress.complexity import count_complexity

    complexity = count_complexity(inference.pruned_tandem(), 34)
    assert 120_000 < complexity.params <= 128_000 and complexity.macs < 30_000_000
    timings = recorded_timings(monkeypatch, pruning_search)
    (row,) = pruning_search.pruning_rows(width=1, repeats=1)
    assert row.unit == "s" and row.value == timings[row.name].median and "-> widths [" in row.note


def test_the_cpu_int8_row_calls_export_onnx_cpu_with_the_qat_model_and_keeps_a_failure_as_its_note(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    calls = []

    def export_onnx_cpu(model, example, path, calibration="unset", weights="unset"):
        calls.append((model, tuple(example.shape), calibration, weights))
        Path(path).write_bytes(b"onnx")

    module = types.ModuleType("asc.compress.export.cpu_int8")
    module.export_onnx_cpu = export_onnx_cpu
    monkeypatch.setitem(sys.modules, "asc.compress.export.cpu_int8", module)
    qmodel = object()
    example = inference.logmels(1)
    assert inference.export_cpu_int8(qmodel, example, tmp_path / "a.onnx") == tmp_path / "a.onnx"
    assert inference.export_cpu_int8(qmodel, example, tmp_path / "b.onnx", weights="int8") == tmp_path / "b.onnx"
    assert calls == [(qmodel, (1, 1, 256, 34), None, "uint8"), (qmodel, (1, 1, 256, 34), None, "int8")]

    def broken(*args, **kwargs):
        raise RuntimeError("no int8 kernel\nmore")

    module.export_onnx_cpu = broken
    assert inference.export_cpu_int8(qmodel, example, tmp_path / "b.onnx") == (
        "export failed: RuntimeError: no int8 kernel")


def test_the_demo_spread_is_each_stages_mean_and_std_over_the_seeds_and_every_seed(tmp_path: Path) -> None:
    from benchmarks import spread

    for seed, accuracy in ((0, 0.5), (1, 0.7)):
        for stage in ("linear", "tandem", "feature_selection", "pruning", "qat"):
            fake_metrics(tmp_path / f"seed{seed}" / stage, accuracy)
    assert spread.main([str(tmp_path / "seed0"), str(tmp_path / "seed1"), "--out", str(tmp_path / "s.md")]) == 0
    text = (tmp_path / "s.md").read_text()
    assert "| Tandem | 60.00 ± 14.14 | 50.00, 70.00 |" in text and "2 seeds (seed0, seed1)" in text
    assert text.count("| Pruned+Quant. |") == 1
    assert spread.main([str(tmp_path / "seed9")]) == 2
    page = tmp_path / "results.md"
    page.write_text("# Results\n\nWritten by hand.\n")
    for _ in range(2):  # a rerun replaces its own section
        assert spread.main([str(tmp_path / "seed0"), str(tmp_path / "seed1"), "--results", str(page)]) == 0
    written = page.read_text()
    assert written.startswith("# Results\n\nWritten by hand.\n") and written.count("## The demo over seeds") == 1
    assert "Made by `python -m benchmarks.spread" in written and "| Tandem | 60.00 ± 14.14 |" in written


def test_a_generated_section_replaces_only_itself_and_keeps_the_rest_of_the_page(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "results.md"
    report.write_section(page, "ablation", "## Ablation\n\nold figures")
    report.write_section(page, "demo spread", "## Demo\n\nspread")
    page.write_text(page.read_text() + "\nA closing line by hand.\n")
    report.write_section(page, "ablation", "## Ablation\n\nnew figures")
    text = page.read_text()
    assert "new figures" in text and "old figures" not in text and "spread" in text
    assert text.index("## Ablation") < text.index("## Demo") < text.index("A closing line by hand.")
    assert text.count("<!-- generated: ablation") == text.count("<!-- end: ablation -->") == 1


def test_the_inference_command_refuses_an_extra_graph_it_cannot_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("no-equals-sign", f"old={tmp_path / 'missing.onnx'}"):
        with pytest.raises(SystemExit) as exit_:
            inference.main(["--rows", "--extra", bad])
        assert exit_.value.code == 2 and f"--extra {bad}: expected NAME=PATH" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        inference.main([])
    assert "nothing to do" in capsys.readouterr().err
