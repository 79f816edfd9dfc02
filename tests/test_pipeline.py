"""The whole chain through ``asc pipeline`` on a tiny dataset, and an offline ``asc sweep``."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from asc import checkpoint_bands, checkpoint_features, load_model
from asc.cli.main import main
from asc.compress.checkpoint import ASC_KEY
from asc.compress.complexity import count_complexity
from asc.data.features import FeatureSettings
from asc.files import sha256_file
from asc.models import BCResNet, MomentsLinear, Tandem
from tests.helpers import CONFIGS, layered, tandem_checkpoint, tiny_configs

#: They train networks or run pipelines (seconds each): out of `make test-fast`.
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Pipeline:
    root: Path
    configs: Path
    out: Path
    printed: str


@pytest.fixture(scope="module")
def pipeline(shared_mini_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """Every stage fit and tested once through ``asc pipeline``; the tests below only read its output."""
    folder = tmp_path_factory.mktemp("pipeline")
    configs, out = tiny_configs(folder / "configs"), folder / "runs"
    with contextlib.redirect_stdout(io.StringIO()) as printed, warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        run = ["pipeline", "--configs", str(configs), "--data.root", str(shared_mini_root), "--out", str(out)]
        assert main(run) == 0
    assert not [w for w in warned if "args parameter" in str(w.message)]  # one command line runs every stage
    return Pipeline(shared_mini_root, configs, out, printed.getvalue())


def test_pipeline_compresses_to_the_limits(pipeline: Pipeline, capsys: pytest.CaptureFixture) -> None:
    mini_root, out, printed = pipeline.root, pipeline.out, pipeline.printed
    assert "| Pruned |" in printed and "| Feature Sel. |" in printed and "| Linear |" in printed

    for stage in ("feature_selection", "pruning"):  # the ADMM stages train at their primal learning rate
        hp = torch.load(out / stage / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
        assert hp["lr"] == hp["admm"]["primal_lr"] == 0.005, (stage, hp["lr"])
    selection = json.loads((out / "feature_selection" / "test" / "compression.json").read_text())[-1]
    assert len(selection["bands"]) == 32 and selection["after"]["macs"] < selection["before"]["macs"]
    pruned_ckpt = out / "pruning" / "checkpoints" / "last.ckpt"
    bands = checkpoint_bands(pruned_ckpt)
    assert bands == selection["bands"]
    model = load_model(pruned_ckpt)  # no config: the checkpoint carries the pruned architecture
    counted = count_complexity(model, 34)
    assert counted.params <= 8_000 and counted.macs <= 1_000_000
    assert counted.params >= 0.99 * 8_000  # the parameter budget binds and is used
    metrics = json.loads((out / "pruning" / "test" / "metrics.json").read_text())
    assert (metrics["params"], metrics["macs"]) == (counted.params, counted.macs)
    assert model(torch.randn(2, 1, 256, 34)).shape == (2, 10)  # the full log-mel: it selects its bands itself

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
    assert main(["test", *layered(pipeline.configs, "qat"), "--data.root", str(mini_root),
                 "--trainer.default_root_dir", str(out / "onnx"), "--ckpt_path", str(onnx)]) == 0
    from_onnx = json.loads((out / "onnx" / "test" / "metrics.json").read_text())
    assert from_onnx["accuracy"] == quantized["accuracy"] and from_onnx["bits"] == 8


STAGES = ("linear", "tandem", "feature_selection", "pruning", "qat")
#: What a test report must reproduce exactly from a moved checkpoint.
REPORTED = ("accuracy", "log_loss", "accuracy_per_device", "clips", "params", "macs", "bits")


def test_finished_checkpoints_work_anywhere(pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    """Each stage's checkpoint alone, moved elsewhere, with the earlier stages' folders gone and another working
    directory: test, predict, export, complexity and load_model all work, with the same figures as before."""
    moved = tmp_path / "elsewhere" / "runs"
    shutil.copytree(pipeline.out, moved)
    hidden = pipeline.out.with_name("hidden")
    pipeline.out.rename(hidden)  # every path stored in a checkpoint (init_ckpt, dirpath) now leads nowhere
    monkeypatch.chdir(tmp_path)
    try:
        for stage in STAGES:
            ckpt = moved / stage / "checkpoints" / "last.ckpt"
            before = json.loads((moved / stage / "test" / "metrics.json").read_text())
            (moved / stage / "test" / "metrics.json").unlink()
            assert main(["test", "--ckpt_path", str(ckpt), "--data.root", str(pipeline.root)]) == 0
            after = json.loads((moved / stage / "test" / "metrics.json").read_text())  # the checkpoint's run folder
            assert {k: after[k] for k in REPORTED} == {k: before[k] for k in REPORTED}, stage
            assert main(["predict", "--ckpt_path", str(ckpt), "--data.root", str(pipeline.root)]) == 0
            assert len((moved / stage / "submission.csv").read_text().splitlines()) == 1 + 5
            capsys.readouterr()
            assert main(["complexity", "--ckpt_path", str(ckpt), "--json"]) == 0
            counted = json.loads(capsys.readouterr().out)
            assert (counted["params"], counted["macs"], counted["bits"]) == (before["params"], before["macs"],
                                                                             before["bits"])
            onnx = moved / stage / "model.onnx"
            assert main(["export", "--ckpt_path", str(ckpt), "--out", str(onnx)]) == 0
            assert "agree on 100.00 %" in capsys.readouterr().out
            assert load_model(ckpt)(torch.randn(3, 1, 256, 34)).shape == (3, 10)
    finally:
        hidden.rename(pipeline.out)


def test_exported_onnx_takes_the_full_log_mel(pipeline: Pipeline, tmp_path: Path) -> None:
    """The band-selected network exports with the front end's 256 bands as input; onnxruntime and
    ``asc.load_model`` agree on full log-mels of the dataset."""
    from asc.compress.export.onnx import run_onnx
    from asc.data.datamodule import DCASEDataModule

    ckpt = pipeline.out / "feature_selection" / "checkpoints" / "last.ckpt"
    assert len(checkpoint_bands(ckpt)) == 32
    assert main(["export", "--ckpt_path", str(ckpt), "--out", str(tmp_path / "fs.onnx")]) == 0
    data = DCASEDataModule(str(pipeline.root), batch_size=8, progress=False, cache_workers=0)
    data.prepare_data()
    data.setup("test")
    x = next(iter(data.test_dataloader()))["x"]
    assert x.shape[1:] == (1, 256, 34)
    with torch.no_grad():
        reference = load_model(ckpt)(x).numpy()
    ours = run_onnx(tmp_path / "fs.onnx", x.numpy())
    assert abs(ours - reference).max() < 1e-4 and (ours.argmax(1) == reference.argmax(1)).all()


def test_a_checkpoint_refuses_data_of_other_front_end_settings(pipeline: Pipeline,
                                                               capsys: pytest.CaptureFixture) -> None:
    ckpt = pipeline.out / "tandem" / "checkpoints" / "last.ckpt"
    assert main(["test", "--ckpt_path", str(ckpt), "--data.root", str(pipeline.root), "--data.features.hop_ms=20",
                 "--trainer.default_root_dir", str(pipeline.out.parent / "other")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(ckpt) in lines[0] and "hop_ms 30.0 vs 20.0" in lines[0], lines


def test_complexity_follows_the_front_end(shared_mini_root: Path, tmp_path: Path) -> None:
    """With a 20 ms hop (51 frames) feature selection and pruning count, and prune for, the real input shape:
    the counted MACs are torchinfo's on (1, 1, 256, 51) and the pruned model meets the limits on it."""
    import torchinfo

    configs, features = tiny_configs(tmp_path / "configs"), FeatureSettings(hop_ms=20)
    assert features.n_frames == 51
    common = ["--data.root", str(shared_mini_root), "--data.features.hop_ms=20"]
    start = tandem_checkpoint(tmp_path / "tandem.ckpt", features)
    selected, pruned = tmp_path / "feature_selection", tmp_path / "pruning"
    assert main(["fit", *layered(configs, "feature_selection"), *common, "--trainer.default_root_dir", str(selected),
                 f"--model.init_ckpt={start}"]) == 0
    max_macs = 300_000  # binds on 51 frames; on 34 frames the selected network would already be below it
    assert main(["fit", *layered(configs, "pruning"), *common, "--trainer.default_root_dir", str(pruned),
                 f"--model.init_ckpt={selected / 'checkpoints' / 'last.ckpt'}", "--model.max_params=100000",
                 f"--model.max_macs={max_macs}"]) == 0
    assert main(["test", *layered(configs, "pruning"), *common, "--trainer.default_root_dir", str(pruned),
                 "--ckpt_path", str(pruned / "checkpoints" / "last.ckpt")]) == 0
    history = json.loads((pruned / "test" / "compression.json").read_text())  # feature selection, then pruning
    metrics = json.loads((pruned / "test" / "metrics.json").read_text())
    for folder, record in zip((selected, pruned), history, strict=True):
        truth = torchinfo.summary(load_model(folder / "checkpoints" / "last.ckpt"), input_size=(1, 1, 256, 51),
                                  verbose=0, mode="eval")
        assert (record["after"]["macs"], record["after"]["params"]) == (truth.total_mult_adds, truth.total_params)
    assert (metrics["macs"], metrics["params"]) == (truth.total_mult_adds, truth.total_params)
    assert truth.total_mult_adds <= max_macs < history[1]["before"]["macs"]
    assert checkpoint_features(pruned / "checkpoints" / "last.ckpt").n_frames == 51


def test_arguments_are_checked_before_training(shared_mini_root: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    """keep_bands that SubSpectralNorm cannot split, or a stage without the callback it needs, stop in one line
    before any training (seconds, not the hours of the ADMM epochs on the real set)."""
    configs = tiny_configs(tmp_path / "configs")
    start = tandem_checkpoint(tmp_path / "tandem.ckpt")
    common = ["--data.root", str(shared_mini_root), f"--model.init_ckpt={start}"]
    began = time.monotonic()
    assert main(["fit", *layered(configs, "feature_selection"), *common, "--model.keep_bands=100",
                 "--trainer.default_root_dir", str(tmp_path / "fs")]) == 2
    assert time.monotonic() - began < 10
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "model.keep_bands: 100 bands cannot be kept" in lines[0], lines
    assert not (tmp_path / "fs" / "checkpoints").exists()
    # No config names a callback of the stages (the shipped ones included): each stage adds its own, the ADMM
    # phases (the mask applied, the bands dropped) and the int8 quantizers. No config can forget them.
    for stage, done in (("feature_selection", lambda saved: saved["asc"]["compressed"]),
                        ("qat", lambda saved: saved["asc"]["bits"] == 8 and "modelopt_state" in saved)):
        files = layered(configs, stage)[1::2]
        assert not any("callbacks" in str((yaml.safe_load(Path(f).read_text()) or {}).get("trainer")) for f in files
                       if not f.endswith("base.yaml"))
        assert main(["fit", *layered(configs, stage), *common, "--trainer.default_root_dir", str(tmp_path / stage),
                     "--trainer.max_epochs=2" if stage == "feature_selection" else "--trainer.max_epochs=1"]) == 0
        assert done(torch.load(tmp_path / stage / "checkpoints" / "last.ckpt", weights_only=True)), stage


def test_skip_done_resumes_an_interrupted_stage(shared_mini_root: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    configs, out = tiny_configs(tmp_path / "configs"), tmp_path / "runs"
    common = ["--data.root", str(shared_mini_root), "--trainer.max_epochs=2"]
    # A fit stopped after its first epoch (one step here) leaves last.ckpt behind, as a killed run does.
    assert main(["fit", *layered(configs, "linear"), *common, "--trainer.default_root_dir", str(out / "linear"),
                 "--trainer.max_steps=1"]) == 0
    capsys.readouterr()
    assert main(["pipeline", "--configs", str(configs), "--out", str(out), "--stages", "linear", "--skip-done",
                 *common]) == 0
    assert f"== linear: fit (resuming from {out / 'linear' / 'checkpoints' / 'last.ckpt'})" in capsys.readouterr().out
    finished = torch.load(out / "linear" / "checkpoints" / "last.ckpt", weights_only=True)
    assert (finished["epoch"], finished["global_step"]) == (1, 2)  # the first epoch was not trained again
    assert (out / "linear" / "test" / "metrics.json").is_file()


def test_pruning_refuses_a_checkpoint_that_is_not_a_tandem(mini_root: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    configs = tiny_configs(tmp_path / "configs")
    linear = tmp_path / "linear"
    assert main(["fit", *layered(configs, "linear"), "--data.root", str(mini_root),
                 "--trainer.default_root_dir", str(linear)]) == 0
    capsys.readouterr()
    assert main(["fit", *layered(configs, "pruning"), "--data.root", str(mini_root),
                 "--trainer.default_root_dir", str(tmp_path / "p"),
                 f"--model.init_ckpt={linear / 'checkpoints' / 'last.ckpt'}"]) == 2
    assert "holds a linear model; PruningStage compresses a tandem checkpoint" in capsys.readouterr().err


def test_an_interrupted_pruning_run_resumes_with_its_structure(mini_root: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    """``asc fit --ckpt_path`` on a checkpoint saved during the ADMM epochs keeps its structure, Z and U."""
    configs = tiny_configs(tmp_path / "configs")
    tandem = tandem_checkpoint(tmp_path / "tandem.ckpt")
    config = yaml.safe_load((configs / "base.yaml").read_text())
    callbacks = yaml.safe_load((CONFIGS.parent / "report" / "base.yaml").read_text())["trainer"]["callbacks"]
    latest = next(c for c in callbacks if c["init_args"].get("save_last"))
    latest["init_args"]["save_top_k"] = -1  # keep epoch=0.ckpt, saved mid-ADMM
    config["trainer"]["callbacks"] = callbacks
    (configs / "base.yaml").write_text(yaml.safe_dump(config))
    common = [*layered(configs, "pruning"), "--data.root", str(mini_root), f"--model.init_ckpt={tandem}",
              "--model.max_params=18000"]  # 256 bands: the linear part alone has 12,810
    first = tmp_path / "first"
    assert main(["fit", *common, "--trainer.default_root_dir", str(first)]) == 0
    assert "pruning threshold" in capsys.readouterr().out
    interrupted = torch.load(first / "checkpoints" / "epoch=0.ckpt", weights_only=True)
    assert not interrupted[ASC_KEY]["compressed"] and "duals" in interrupted["callbacks"]["Masking"]
    (tmp_path / "tandem.ckpt").unlink()  # a resumed run needs its own checkpoint only

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
    first = sweep["command"].index("--config")
    sweep["command"] = [*sweep["command"][:first], *layered(configs, "linear"), "${args}"]
    sweep["parameters"] = {"model.lr": {"values": [0.01, 0.02]}, "model.l1": {"values": [0.001]}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    assert main(["sweep", str(tmp_path / "sweep.yaml"), "--count", "2", "--out", str(linear), "--",
                 "--data.root", str(mini_root)]) == 0
    results = json.loads((linear / "sweep_results.json").read_text())
    assert len(results) == 2 and results[0]["val/selection"] >= results[1]["val/selection"]  # best first
    for result in results:  # the score of each trial is the metric model selection uses, as its run logged it
        logged = json.loads((linear / result["run"] / "fit_metrics.json").read_text())["metrics"]
        assert result["val/selection"] == pytest.approx(logged["val/selection"])
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
    from asc.compress.export.tensorrt import build_engine
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
    from asc.compress.export.onnx import export_onnx

    model = Tandem(MomentsLinear(64), BCResNet(n_bands=64, width=1), zero_init=False).eval()
    export_onnx(model, torch.zeros(1, 1, 64, 34), tmp_path / "model.onnx")
    build_engine(tmp_path / "model.onnx", tmp_path / "model.plan", 64, 34)
    assert (tmp_path / "model.plan").stat().st_size > 0


def test_sweep_runs_from_anywhere_and_its_search_is_seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    """The sweep file's configs are found from another working directory; --seed fixes the proposals."""
    import asc.cli.lightning_cli as lightning_cli

    repository = tmp_path / "repo"
    (repository / "sweeps").mkdir(parents=True)
    shutil.copytree(CONFIGS.parent, repository / "configs")
    sweep = yaml.safe_load((Path(__file__).parents[1] / "sweeps" / "pruning.yaml").read_text())
    sweep["method"] = "random"
    (repository / "sweeps" / "pruning.yaml").write_text(yaml.safe_dump(sweep))
    calls: list[list[str]] = []

    def fit_and_score(args: list[str], metric: str) -> float:
        calls.append(args)
        return 0.5

    monkeypatch.setattr(lightning_cli, "fit_and_score", fit_and_score)
    monkeypatch.chdir(tmp_path)
    proposals = []
    for attempt in range(3):
        seed = "7" if attempt < 2 else "8"
        calls.clear()
        assert main(["sweep", "repo/sweeps/pruning.yaml", "--count", "2", "--seed", seed, "--out", f"s{attempt}",
                     "--", "--data.root", "data"]) == 0
        configs = [args[args.index("--config") + 1] for args in calls]
        assert configs == [str(repository / "configs" / "report" / "base.yaml")] * 2
        proposals.append([[a for a in args if a.startswith("--model.")] for args in calls])
    assert proposals[0] == proposals[1] != proposals[2]
    assert "asc sweep FILE --out DIR" in _help(capsys, "sweep") and "--" in _help(capsys, "sweep")
    assert "goes to every stage" in _help(capsys, "pipeline")


def _help(capsys: pytest.CaptureFixture, command: str) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


def test_the_best_checkpoint_by_validation_is_handed_on(shared_mini_root: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """--handover best: each stage passes on (and is tested with) its best checkpoint by val/selection; an ADMM
    stage's best is never from its update epochs, when the constraint is not applied yet."""
    configs, out = tiny_configs(tmp_path / "configs"), tmp_path / "runs"
    assert main(["pipeline", "--configs", str(configs), "--data.root", str(shared_mini_root), "--out", str(out),
                 "--stages", "linear,tandem,feature_selection", "--handover", "best"]) == 0
    printed = capsys.readouterr().out
    assert "== linear: test (best-epoch=0.ckpt)" in printed
    assert "== feature_selection: test (best-epoch=1.ckpt)" in printed
    selection = torch.load(out / "feature_selection" / "checkpoints" / "best-epoch=1.ckpt", weights_only=True)
    assert selection["asc"]["compressed"] and len(selection["asc"]["architecture"]["bands"]) == 32
    tandem = torch.load(out / "tandem" / "checkpoints" / "last.ckpt", weights_only=True)
    assert tandem["hyper_parameters"]["init_ckpt"] == str(out / "linear" / "checkpoints" / "best-epoch=0.ckpt")


def test_skip_done_reuses_only_stages_made_from_the_same_start_and_config(pipeline: Pipeline, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    """A stage refit with other settings: the stages built on the old one are refit, not mixed into the summary
    (feature selection keeping other bands, pruning still on the old ones)."""
    out, configs = tmp_path / "runs", tmp_path / "configs"
    shutil.copytree(pipeline.out, out)
    shutil.copytree(pipeline.configs, configs)
    common = ["pipeline", "--configs", str(configs), "--data.root", str(pipeline.root), "--out", str(out),
              "--skip-done"]
    tandem = sha256_file(out / "tandem" / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    assert main(common) == 0
    printed = capsys.readouterr().out
    assert all(f"== {stage}: done (made from the same start and config, and tested)" in printed
               for stage in ("linear", "tandem", "feature_selection", "pruning", "qat")), printed
    assert ": fit" not in printed and sha256_file(out / "tandem" / "checkpoints" / "last.ckpt") == tandem

    stage = yaml.safe_load((configs / "feature_selection.yaml").read_text())
    stage["model"]["init_args"]["keep_bands"] = 64
    (configs / "feature_selection.yaml").write_text(yaml.safe_dump(stage))
    assert main(common) == 0
    printed = capsys.readouterr().out
    assert "== tandem: done" in printed
    assert "== feature_selection: fit (refit: its config changed since it was fit (model.init_args.keep_bands); " \
           "removed the earlier checkpoints, fit_metrics.json, test)" in printed, printed
    selection = out / "feature_selection" / "checkpoints" / "last.ckpt"
    assert f"== pruning: fit (refit: its start {selection} changed since it was fit;" in printed, printed
    assert f"== qat: fit (refit: its start {out / 'pruning' / 'checkpoints' / 'last.ckpt'} changed" in printed
    assert len(checkpoint_bands(out / "pruning" / "checkpoints" / "last.ckpt")) == 64
    pruned = torch.load(out / "pruning" / "checkpoints" / "last.ckpt", weights_only=True)[ASC_KEY]
    assert pruned["start"]["sha256"] == sha256_file(selection)


def test_the_summary_shows_the_test_split_of_the_handed_over_checkpoints(pipeline: Pipeline, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "runs"
    shutil.copytree(pipeline.out, out)
    expected = json.loads((out / "tandem" / "test" / "metrics.json").read_text())["accuracy"]
    tandem = out / "tandem" / "checkpoints" / "last.ckpt"
    assert main(["test", "--ckpt_path", str(tandem), "--data.test_split", "train"]) == 0
    capsys.readouterr()
    assert main(["pipeline", "--configs", str(pipeline.configs), "--data.root", str(pipeline.root), "--out",
                 str(out), "--skip-done", "--stages", "linear,tandem"]) == 0
    summary = (out / "summary.md").read_text()
    tandem_row = next(line for line in summary.splitlines() if line.startswith("| Tandem | ") and "%" not in line)
    assert tandem_row.split(" | ")[-1] == f"{100 * expected:.2f} |"  # Table 1's Overall: the evaluate split
    assert "5 clips of the evaluate split" in summary and "Missing" not in summary

    from asc.cli.pipeline import StageResult, write_summary

    text = write_summary(out, ["linear", "tandem"], {"tandem": StageResult(tandem, None)})
    assert "- linear: no test report of its checkpoint on the test split" in text
    assert f"- tandem: no test report of {tandem} on the test split" in text
