"""The ablation benchmark's orchestration (which commands, which layers, which figures), with ``asc`` stubbed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "ablation.py"


def load_ablation():
    spec = importlib.util.spec_from_file_location("ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_metrics(folder: Path, accuracy: float) -> None:
    (folder / "test").mkdir(parents=True, exist_ok=True)
    groups = {"real": accuracy + 0.1, "seen_simulated": accuracy, "unseen_simulated": accuracy - 0.1}
    metrics = {"accuracy": accuracy, "accuracy_per_group": groups, "params": 1, "macs": 2}
    (folder / "test" / "metrics.json").write_text(json.dumps(metrics))


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
            seed = int(next(a for a in args if a.startswith("--seed_everything=")).split("=")[1])
            for stage in ("tandem", "pruning", "qat"):
                fake_metrics(out / stage, 0.5 + 0.1 * seed)
        else:
            fake_metrics(Path(args[args.index("--trainer.default_root_dir") + 1]), 1.0)

    monkeypatch.setattr(ablation, "asc", asc)
    out = tmp_path / "ablation"
    assert ablation.main(["--out", str(out), "--seeds", "0", "1", "--variants", "report,all", "--",
                          "--trainer.max_epochs=1"]) == 0
    assert commands[0][:4] == ["synth", str(out / "data"), "--size", "hard"]
    pipelines = [c for c in commands if c[0] == "pipeline"]
    assert len(pipelines) == 4 and all(c[-1] == "--trainer.max_epochs=1" for c in pipelines)
    assert "--layer" not in pipelines[0] and pipelines[0][-2:] == ["--seed_everything=0", "--trainer.max_epochs=1"]
    layers = [pipelines[2][i + 1] for i, arg in enumerate(pipelines[2]) if arg == "--layer"]
    assert [Path(p).name for p in layers] == ["freq_mixstyle", "device_irs", "distillation"]
    assert f"--model.device_irs={out / 'data' / 'impulse_responses'}" in pipelines[2]
    tests = [c for c in commands if c[0] == "test"]
    assert len(tests) == 4 and all(c[c.index("--data.test_split") + 1] == "train" for c in tests)
    table = capsys.readouterr().out
    assert "| all | Pruned+Quant. | 55.00 ± 7.07 | 65.00 ± 7.07 | 55.00 ± 7.07 | 45.00 ± 7.07 |  |" in table
    assert "| report | Tandem | 55.00 ± 7.07 |" in table and "| 100.00 ± 0.00 |" in table
    saved = json.loads((out / "ablation-report.json").read_text())
    assert len(saved["variants"]["all"]) == 2 and saved["extra"] == ["--trainer.max_epochs=1"]
    assert ablation.main(["--out", str(out), "--variants", "nope"]) == 2
