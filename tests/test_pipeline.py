"""The whole chain through ``asc pipeline`` on a tiny dataset, and an offline ``asc sweep``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from asc import checkpoint_bands, load_model
from asc.cli.main import main
from asc.compress.complexity import count_complexity
from asc.models import BCResNet, MomentsLinear, Tandem
from asc.models.architecture import describe
from asc.training.checkpoints import ASC_KEY

CONFIGS = Path(__file__).parents[1] / "configs" / "builtin"


def tiny_configs(folder: Path) -> Path:
    """The built-in configs shrunk to seconds: width-1 BC-ResNet, 1 + 1 ADMM epochs, small limits."""
    folder.mkdir()
    for stage in ("linear", "tandem", "feature_selection", "pruning", "qat"):
        config = yaml.safe_load((CONFIGS / f"{stage}.yaml").read_text())
        config["trainer"]["max_epochs"] = 2 if stage in ("feature_selection", "pruning", "qat") else 1
        config["trainer"]["log_every_n_steps"] = 1
        for callback in config["trainer"]["callbacks"]:
            if callback["class_path"].endswith("ADMMPhases"):
                callback["init_args"]["update_epochs"] = 1
            if callback["class_path"].endswith("Annealing"):
                callback["init_args"]["end_epoch"] = 2
        init = config["model"]["init_args"]
        if stage == "tandem":
            init["width"] = 1
        if stage == "feature_selection":
            init.update(keep_bands=32, update_every=1)
        if stage == "pruning":
            init.update(max_params=8_000, max_macs=1_000_000, update_every=1)  # the tandem has 10,385
        if stage == "qat":
            init.update(calibration_batches=1)
        config["data"].update(batch_size=4, cache_workers=0, progress=False)
        (folder / f"{stage}.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_pipeline_compresses_to_the_limits(mini_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    configs, out = tiny_configs(tmp_path / "configs"), tmp_path / "runs"
    assert main(["pipeline", "--configs", str(configs), "--data.root", str(mini_root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| Pruned |" in printed and "| Feature Sel. |" in printed and "| Linear |" in printed

    selection = json.loads((out / "feature_selection" / "test" / "compression.json").read_text())[-1]
    assert len(selection["bands"]) == 32 and selection["after"]["macs"] < selection["before"]["macs"]
    pruned_ckpt = out / "pruning" / "checkpoints" / "last.ckpt"
    bands = checkpoint_bands(pruned_ckpt)
    assert bands == selection["bands"]
    model = load_model(pruned_ckpt)  # no config: the checkpoint carries the pruned architecture
    counted = count_complexity(model, len(bands), 34)
    assert counted.params <= 8_000 and counted.macs <= 1_000_000
    assert counted.params >= 0.99 * 8_000  # the parameter budget binds and is used
    metrics = json.loads((out / "pruning" / "test" / "metrics.json").read_text())
    assert (metrics["params"], metrics["macs"]) == (counted.params, counted.macs)
    assert model(torch.randn(2, 1, len(bands), 34)).shape == (2, 10)

    # Stage 5: int8 QAT; the report counts the float architecture and says 8 bits.
    quantized = json.loads((out / "qat" / "test" / "metrics.json").read_text())
    assert quantized["bits"] == 8 and (quantized["params"], quantized["macs"]) == (counted.params, counted.macs)
    qat_ckpt = out / "qat" / "checkpoints" / "last.ckpt"
    assert main(["complexity", "--ckpt_path", str(qat_ckpt), "--json"]) == 0
    reported = json.loads(capsys.readouterr().out)  # counted on the float twin: torchinfo sees no MACs in quantizers
    assert (reported["bits"], reported["params"], reported["macs"]) == (8, counted.params, counted.macs)

    # Export to ONNX with Q/DQ, check in onnxruntime, and evaluate the file with the same report.
    onnx = out / "model.onnx"
    assert main(["export", "--ckpt_path", str(qat_ckpt), "--out", str(onnx), "--data.root", str(mini_root)]) == 0
    printed = capsys.readouterr().out
    assert "'zero_points_int8_zero': True" in printed and "agree on 100.00 %" in printed
    sidecar = json.loads(onnx.with_suffix(".json").read_text())
    assert sidecar["bands"] == bands and sidecar["front_end"]["n_mels"] == 256
    assert main(["test", "--config", str(tmp_path / "configs" / "qat.yaml"), "--data.root", str(mini_root),
                 "--trainer.default_root_dir", str(out / "onnx"), "--ckpt_path", str(onnx)]) == 0
    from_onnx = json.loads((out / "onnx" / "test" / "metrics.json").read_text())
    assert from_onnx["accuracy"] == quantized["accuracy"] and from_onnx["bits"] == 8


def test_pruning_refuses_a_checkpoint_that_is_not_a_tandem(mini_root: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    configs = tiny_configs(tmp_path / "configs")
    linear = tmp_path / "linear"
    assert main(["fit", "--config", str(configs / "linear.yaml"), "--data.root", str(mini_root),
                 "--trainer.default_root_dir", str(linear)]) == 0
    capsys.readouterr()
    assert main(["fit", "--config", str(configs / "pruning.yaml"), "--data.root", str(mini_root),
                 "--trainer.default_root_dir", str(tmp_path / "p"),
                 f"--model.init_ckpt={linear / 'checkpoints' / 'last.ckpt'}"]) == 2
    assert "holds a linear model; PruningStage compresses a tandem checkpoint" in capsys.readouterr().err


def test_an_interrupted_pruning_run_resumes_with_its_structure(mini_root: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    """``asc fit --ckpt_path`` on a checkpoint saved during the ADMM epochs keeps its structure, Z and U."""
    configs = tiny_configs(tmp_path / "configs")
    tandem = tmp_path / "tandem.ckpt"
    torch.manual_seed(0)
    model = Tandem(MomentsLinear(n_bands=256), BCResNet(n_bands=256, width=1), zero_init=False)
    torch.save({ASC_KEY: {"architecture": describe(model), "bands": None},
                "state_dict": {f"model.{key}": value for key, value in model.state_dict().items()}}, tandem)
    config = yaml.safe_load((configs / "pruning.yaml").read_text())
    config["trainer"]["callbacks"][-1]["init_args"]["save_top_k"] = -1  # keep epoch=0.ckpt, saved mid-ADMM
    (configs / "pruning.yaml").write_text(yaml.safe_dump(config))
    common = ["--config", str(configs / "pruning.yaml"), "--data.root", str(mini_root), f"--model.init_ckpt={tandem}",
              "--model.max_params=18000"]  # 256 bands: the linear part alone has 12,810
    first = tmp_path / "first"
    assert main(["fit", *common, "--trainer.default_root_dir", str(first)]) == 0
    assert "pruning threshold" in capsys.readouterr().out
    interrupted = torch.load(first / "checkpoints" / "epoch=0.ckpt", weights_only=True)
    assert not interrupted[ASC_KEY]["compressed"] and "duals" in interrupted[ASC_KEY]["admm"]

    resumed = tmp_path / "resumed"
    assert main(["fit", *common, "--trainer.default_root_dir", str(resumed),
                 "--ckpt_path", str(first / "checkpoints" / "epoch=0.ckpt")]) == 0
    assert "pruning threshold" not in capsys.readouterr().out  # no new search on the moved weights
    widths = [load_model(run / "checkpoints" / "last.ckpt").cnn.widths for run in (first, resumed)]
    assert widths[0] == widths[1]


def test_offline_sweep_searches_both_learning_rates(mini_root: Path, tmp_path: Path) -> None:
    configs = tiny_configs(tmp_path / "configs")
    linear = tmp_path / "linear"
    sweep = yaml.safe_load((Path(__file__).parents[1] / "sweeps" / "feature_selection.yaml").read_text())
    sweep["method"] = "grid"  # deterministic proposals; the real files use bayes
    sweep["command"][3] = str(configs / "linear.yaml")
    sweep["parameters"] = {"model.lr": {"values": [0.01, 0.02]}, "model.l1": {"values": [0.001]}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    assert main(["sweep", str(tmp_path / "sweep.yaml"), "--count", "2", "--out", str(linear), "--",
                 "--data.root", str(mini_root)]) == 0
    results = json.loads((linear / "sweep_results.json").read_text())
    assert len(results) == 2 and all(0 <= r["val/accuracy"] <= 1 for r in results)
    assert {r["model.lr"] for r in results} == {0.01, 0.02}


def test_notebook_reads_the_reports(tmp_path: Path) -> None:
    """notebooks/confusion_matrices.ipynb runs top to bottom on test reports in the project's format."""
    import nbformat
    from nbclient import NotebookClient

    from asc.training.metrics import summarize
    from asc.training.reports import write_report

    confusion = torch.zeros(9, 10, 10, dtype=torch.long)
    confusion[0] = torch.eye(10, dtype=torch.long) * 3 + 1
    summary = summarize(confusion, torch.ones(9, dtype=torch.float64))
    for stage, name in (("linear", "Linear"), ("pruning", "Pruned")):
        write_report(tmp_path / stage / "test", name, summary, {"params": 1, "macs": 1, "bits": 32})
    notebook = nbformat.read(Path(__file__).parents[1] / "notebooks" / "confusion_matrices.ipynb", as_version=4)
    import os

    os.environ["ASC_RUNS"] = str(tmp_path)
    try:
        NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    finally:
        del os.environ["ASC_RUNS"]
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "2 test report(s)" in outputs and "Pruned" in outputs and "2 confusion matrices" in outputs


def test_tensorrt_engine_needs_tensorrt_and_a_gpu(tmp_path: Path) -> None:
    """Without TensorRT (CPU machines: it is not on PyPI) ``--engine`` ends in one line naming what is missing."""
    from asc.cli.export import build_engine
    from asc.errors import AscError

    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(AscError, match=r"--engine: TensorRT is not installed .*the ONNX file was written"):
            build_engine(tmp_path / "model.onnx", tmp_path / "model.plan", 192, 34)
        return
    if not torch.cuda.is_available():
        with pytest.raises(AscError, match=r"--engine: TensorRT needs a CUDA GPU"):
            build_engine(tmp_path / "model.onnx", tmp_path / "model.plan", 192, 34)
        return
    from asc.compress.quantization import export_onnx
    from asc.models import BCResNet, MomentsLinear, Tandem

    model = Tandem(MomentsLinear(64), BCResNet(n_bands=64, width=1), zero_init=False).eval()
    export_onnx(model, torch.zeros(1, 1, 64, 34), tmp_path / "model.onnx")
    build_engine(tmp_path / "model.onnx", tmp_path / "model.plan", 64, 34)
    assert (tmp_path / "model.plan").stat().st_size > 0
