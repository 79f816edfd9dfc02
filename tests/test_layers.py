"""Config layers (``asc pipeline --layer``) and recipe folders (``recipe.yaml``): what a stage ends up with."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from asc.cli.main import main
from tests.helpers import CONFIGS, changed, printed_config, tiny_configs


@pytest.mark.slow  # runs pipelines
def test_layers_add_to_every_stage_or_to_one(shared_mini_root: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    """``--layer FOLDER``: its base.yaml goes to every stage and its <stage>.yaml to that stage, after the configs."""
    configs, layer, out = tiny_configs(tmp_path / "configs"), tmp_path / "layer", tmp_path / "runs"
    layer.mkdir()
    (layer / "base.yaml").write_text("model:\n  init_args: {freq_mixstyle_p: 0.5}\n")
    (layer / "tandem.yaml").write_text("model:\n  init_args: {roll: 0.1}\n")
    common = ["--configs", str(configs), "--data.root", str(shared_mini_root), "--out", str(out)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["pipeline", *common, "--stages", "linear,tandem", "--layer", str(layer)]) == 0
    saved = {stage: yaml.safe_load((out / stage / "config.yaml").read_text())["model"]["init_args"]
             for stage in ("linear", "tandem")}
    assert saved["linear"]["freq_mixstyle_p"] == saved["tandem"]["freq_mixstyle_p"] == 0.5
    assert (saved["linear"]["roll"], saved["tandem"]["roll"]) == (0.4, 0.1)
    assert saved["tandem"]["width"] == 1  # the stage's own settings stay
    capsys.readouterr()
    assert main(["pipeline", *common, "--layer", str(tmp_path / "nothing")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--layer" in lines[0] and "nothing" in lines[0], lines


#: The distillation layer's teacher per stage: the tandem feature selection starts from, then inherited.
TEACHERS = {"feature_selection": ["init"], "pruning": ["inherit"], "qat": ["inherit"]}
#: With the ensemble layer last: the teacher stage teaches the tandem, and every later stage inherits it.
ENSEMBLE_TEACHERS = {"tandem": ["teacher"], "feature_selection": ["inherit"], "pruning": ["inherit"],
                     "qat": ["inherit"]}


LAYERS = CONFIGS.parent / "layers"


@pytest.mark.parametrize("recipe", ["builtin", "report"])
def test_shipped_layers_parse_with_every_stage(recipe: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Every shipped layer folder combines with both recipes and the stages it names (the keys exist for that
    stage's class): one tree of layers for every scale."""
    from asc.cli.pipeline import stage_configs

    folder = CONFIGS.parent / recipe
    layers = [LAYERS / name for name in ("freq_mixstyle", "device_irs", "distillation")]
    ensemble = [LAYERS / "ensemble"]
    for combination, teachers in ((layers, TEACHERS), (layers + ensemble, ENSEMBLE_TEACHERS)):
        for stage in ("linear", "tandem", "feature_selection", "pruning", "qat"):
            init = printed_config(capsys, stage_configs(folder, stage, combination))["model"]["init_args"]
            assert (init["freq_mixstyle_p"], init["device_ir_p"], init["device_irs"]) == (0.4, 0.4, "impulse_responses")
            assert init["teacher"] == teachers.get(stage)  # the tandem (or the teacher stage) teaches every stage
    # the teacher stage itself: an ensemble of tandems, its own report row, the recipe's schedule
    config = printed_config(capsys, stage_configs(folder, "teacher", layers + ensemble))
    assert config["model"]["class_path"].endswith("EnsembleStage")
    assert config["model"]["init_args"]["report_name"] == "Teacher"
    tandem = printed_config(capsys, stage_configs(folder, "tandem"))
    assert config["model"]["init_args"]["lr"] == tandem["model"]["init_args"]["lr"]
    assert config["trainer"]["max_epochs"] == 2 * tandem["trainer"]["max_epochs"]
    if recipe == "builtin":  # the ablation's `long` row: the built-in tandem three times as long, nothing else
        long = printed_config(capsys, stage_configs(folder, "tandem", layers + [LAYERS / "long_tandem"]))
        assert long["trainer"]["max_epochs"] == 3 * tandem["trainer"]["max_epochs"]
        assert long["model"] == printed_config(capsys, stage_configs(folder, "tandem", layers))["model"]
        # `long_peer_recipe`: the same tandem with the peer's optimiser, schedule and augmentations; nothing else
        recipe = [*layers, LAYERS / "long_tandem", LAYERS / "peer_recipe"]
        peer = printed_config(capsys, stage_configs(folder, "tandem", recipe))
        assert {key.removeprefix("model.init_args.") for key in changed(long, peer)} == {
            "optimizer", "lr", "weight_decay", "schedule.warmup_epochs", "schedule.final_lr", "schedule.shape", "roll",
            "freq_mask", "mixup_alpha", "data.batch_size"}
        # `long_peer_recipe_sgd`: the peer's schedule and augmentations, the built-in tandem's optimiser and batch
        sgd = printed_config(capsys, stage_configs(folder, "tandem", [*recipe, LAYERS / "tandem_optimiser"]))
        assert {key.removeprefix("model.init_args.") for key in changed(long, sgd)} == {
            "schedule.warmup_epochs", "schedule.final_lr", "schedule.shape", "roll", "freq_mask", "mixup_alpha"}
        # `longer_peer_recipe`: twice `long_peer_recipe`'s tandem epochs, nothing else
        longer = printed_config(capsys, stage_configs(folder, "tandem", [*recipe, LAYERS / "longer_tandem"]))
        assert changed(peer, longer) == {"trainer.max_epochs"}
        assert longer["trainer"]["max_epochs"] == 2 * long["trainer"]["max_epochs"]
        # pruning and QAT train with the tandem's augmentations, pruning longer (`long_pruning`)
        for stage, more in (("pruning", ["trainer.max_epochs"]), ("qat", [])):
            before = printed_config(capsys, stage_configs(folder, stage, layers))
            after = printed_config(capsys, stage_configs(folder, stage, [*recipe, LAYERS / "long_pruning"]))
            assert {key.removeprefix("model.init_args.") for key in changed(before, after)} == {
                "roll", "freq_mask", "mixup_alpha", *more}
        assert printed_config(capsys, stage_configs(folder, "feature_selection", recipe)) == printed_config(
            capsys, stage_configs(folder, "feature_selection", layers))
        # with a teacher stage (`ensemble_peer_recipe`), the teacher trains by the tandem's recipe on its own schedule
        teacher = printed_config(capsys, stage_configs(folder, "teacher", [*recipe, *ensemble]))
        plain = printed_config(capsys, stage_configs(folder, "teacher", [*layers, *ensemble]))
        assert {key.removeprefix("model.init_args.") for key in changed(plain, teacher)} == {
            "optimizer", "lr", "weight_decay", "schedule.warmup_epochs", "schedule.final_lr", "schedule.shape", "roll",
            "freq_mask", "mixup_alpha", "data.batch_size"}
        recipe_keys = ("optimizer", "lr", "weight_decay", "schedule", "roll", "freq_mask", "mixup_alpha")
        assert [teacher["model"]["init_args"][key] for key in recipe_keys] == [  # teacher.yaml repeats tandem.yaml's
            peer["model"]["init_args"][key] for key in recipe_keys]
        assert teacher["data"]["batch_size"] == peer["data"]["batch_size"]
        pruning = printed_config(capsys, stage_configs(folder, "pruning", [*recipe, LAYERS / "long_pruning"]))
        built_in = printed_config(capsys, stage_configs(folder, "pruning", layers))
        admm_epochs = built_in["model"]["init_args"]["admm"]["update_epochs"]
        assert pruning["model"]["init_args"]["admm"] == built_in["model"]["init_args"]["admm"]  # the same ADMM phase
        fine_tuning = [config["trainer"]["max_epochs"] - admm_epochs for config in (built_in, pruning)]
        assert fine_tuning == [2, 9]


def test_the_built_in_recipe_holds_only_what_differs_from_the_reports(capsys: pytest.CaptureFixture) -> None:
    """configs/builtin is a layer on configs/report: the stage classes, the augmentations and the architecture come
    from the report's files; the built-in's files change the schedule, batch size and ADMM steps only."""
    from asc.cli.pipeline import read_recipe, stage_configs

    configs, layers, _ = read_recipe(CONFIGS)
    assert configs.resolve() == (CONFIGS.parent / "report").resolve() and layers == [CONFIGS]
    for path in CONFIGS.glob("*.yaml"):
        text = yaml.safe_load(path.read_text()) or {}
        assert "class_path" not in (text.get("model") or {}), path  # the stage is the report's
        assert "callbacks" not in (text.get("trainer") or {}) and "callbacks+" not in (text.get("trainer") or {})
    report = printed_config(capsys, stage_configs(CONFIGS.parent / "report", "tandem"))
    builtin = printed_config(capsys, stage_configs(CONFIGS, "tandem"))
    same = ("class_path",)
    assert {k: builtin["model"][k] for k in same} == {k: report["model"][k] for k in same}
    assert builtin["model"]["init_args"]["width"] == report["model"]["init_args"]["width"] == 8
    assert (builtin["trainer"]["max_epochs"], report["trainer"]["max_epochs"]) == (4, 80)
    assert (builtin["data"]["batch_size"], report["data"]["batch_size"]) == (32, 64)


@pytest.mark.parametrize("stage", ["feature_selection", "pruning"])
@pytest.mark.parametrize("recipe", ["builtin", "report"])
def test_the_shipped_admm_stages_contract_over_their_learning_rates(recipe: str, stage: str,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """The ADMM configs' dual step and period keep the ADMM term convergent from the initial primal learning
    rate down to the annealed one (the built-in's first settings diverged: 1.06 per dual update). Feature
    selection warms its mask up first: converging from the tie of an all-ones mask would keep the lowest bands."""
    from asc.cli.pipeline import stage_configs
    from asc.compress.admm import contraction

    config = printed_config(capsys, stage_configs(CONFIGS.parent / recipe, stage))
    hp = config["model"]["init_args"]
    final = hp["schedule"]["final_lr"]
    assert final is not None, "the ADMM configs anneal the primal learning rate"
    admm = hp["admm"]
    for lr in (admm["primal_lr"], final):
        rate = contraction(lr, admm["rho"], admm["dual_lr"], admm["update_every"], hp["momentum"], hp["weight_decay"])
        assert rate < 1, (recipe, lr, rate)
    assert (admm["warmup_steps"] > 0) == (stage == "feature_selection")


def test_a_qat_config_without_a_learning_rate_fine_tunes_at_the_qat_default(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """QAT's own default (0.001), not the tandem's peak rate, when a config leaves ``model.lr`` out."""
    from asc.cli.pipeline import stage_configs
    from asc.training.qat import QATStage
    from asc.training.tandem import TandemStage

    args = stage_configs(CONFIGS.parent / "report", "qat")
    shipped = Path(args[-1])
    without = tmp_path / "qat.yaml"
    without.write_text("\n".join(line for line in shipped.read_text().splitlines() if "lr: 0.001" not in line))
    config = printed_config(capsys, [*args[:-1], str(without)])
    init = config["model"]["init_args"]
    assert "lr: 0.001" in shipped.read_text() and init["lr"] is None  # base.yaml's parse must not fill in 0.035
    assert QATStage(lr=init["lr"]).hparams.lr == 0.001 and TandemStage(lr=None).hparams.lr == 0.035


def test_the_shipped_plus_recipe_is_the_report_with_the_measured_additions(capsys: pytest.CaptureFixture) -> None:
    """configs/plus builds on configs/report with the four additions the ablation chose and the report's
    protocol (every training location trained on, each stage's last checkpoint handed on); every stage's
    combined config parses."""
    from asc.cli.pipeline import read_recipe, stage_configs

    configs, layers, handover = read_recipe(CONFIGS.parent / "plus")
    assert configs.resolve() == (CONFIGS.parent / "report").resolve() and handover == "last"
    assert [layer.name for layer in layers] == ["freq_mixstyle", "device_irs", "distillation", "peer_recipe"]
    for stage in ("linear", "tandem", "feature_selection", "pruning", "qat"):
        config = printed_config(capsys, stage_configs(CONFIGS.parent / "plus", stage))
        init = config["model"]["init_args"]
        assert config["data"]["val_split"] == "evaluate" and config["data"]["test_split"] == "evaluate"
        batch = 256 if stage == "tandem" else 64  # the peer's recipe trains the tandem; the rest keep the report's
        assert (init["freq_mixstyle_p"], init["device_ir_p"], config["data"]["batch_size"]) == (0.4, 0.4, batch)
        assert init["teacher"] == TEACHERS.get(stage)  # the tandem teaches every compression stage
        assert init["optimizer"] == ("adamw" if stage == "tandem" else "sgd")


@pytest.mark.slow  # runs pipelines
def test_a_recipe_runs_from_one_configs_argument_and_a_flag_overrides_its_handover(
        shared_mini_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tiny_configs(tmp_path / "configs")
    recipe = tmp_path / "recipe"
    layer = tmp_path / "layer"
    layer.mkdir(), recipe.mkdir()
    (layer / "linear.yaml").write_text("model:\n  init_args: {l1: 0.02}\n")
    (recipe / "base.yaml").write_text("model:\n  init_args: {roll: 0.1}\n")
    (recipe / "recipe.yaml").write_text("configs: ../configs\nlayers: [../layer]\nhandover: best\n")
    common = ["--configs", str(recipe), "--data.root", str(shared_mini_root), "--stages", "linear"]
    assert main(["pipeline", *common, "--out", str(tmp_path / "a")]) == 0
    assert "== linear: test (best-epoch=0.ckpt)" in capsys.readouterr().out
    init = yaml.safe_load((tmp_path / "a" / "linear" / "config.yaml").read_text())["model"]["init_args"]
    assert (init["l1"], init["roll"]) == (0.02, 0.1)  # the layer's, then the recipe folder's own
    assert main(["pipeline", *common, "--out", str(tmp_path / "b"), "--handover", "last"]) == 0
    assert "== linear: test (last.ckpt)" in capsys.readouterr().out


@pytest.mark.parametrize(("text", "names"), [
    ("configs: ../configs\nlayer: [x]\n", "'layer'"),
    ("configs: ../configs\nhandover: first\n", "'first'"),
    ("configs: ../configs\nlayers: [../absent]\n", "absent"),
    ("layers: []\n", "configs: FOLDER"),
    ("configs: ../configs\nlayers: ../layer\n", "layers must be a list"),
    ("configs: [unclosed\n", "not valid YAML"),
])
def test_a_bad_recipe_gets_one_line_naming_its_file_and_key(text: str, names: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "recipe.yaml").write_text(text)
    assert main(["pipeline", "--configs", str(recipe), "--data.root", str(tmp_path), "--out", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "recipe.yaml" in lines[0] and names in lines[0], lines
