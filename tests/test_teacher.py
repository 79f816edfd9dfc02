"""The teacher stage: an ensemble trained before the linear model, whose averaged logits teach the tandem and,
inherited, every compression stage, with its own test report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from asc import load_model
from asc.cli.main import main
from asc.models.ensemble import Ensemble
from tests.helpers import REPO, layered, one_error_line, tiny_configs

pytestmark = pytest.mark.slow  # a pipeline with the teacher stage; the other test reads the same configs


def tiny_ensemble_layer(folder: Path) -> Path:
    """configs/layers/ensemble shrunk to seconds (two width-1 members) and the teacher's schedule (one epoch)."""
    folder.mkdir()
    for path in (REPO / "configs" / "layers" / "ensemble").glob("*.yaml"):
        config = yaml.safe_load(path.read_text())
        if path.stem == "teacher":
            config["trainer"] = {"max_epochs": 1}
            config["model"]["init_args"].update(members=2, width=1)
        (folder / path.name).write_text(yaml.safe_dump(config))
    return folder


def test_the_teacher_stage_teaches_the_tandem_and_every_compression_stage(shared_mini_root: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    configs, layer, out = tiny_configs(tmp_path / "configs"), tiny_ensemble_layer(tmp_path / "ensemble"), tmp_path / "r"
    assert main(["pipeline", "--configs", str(configs), "--layer", str(layer), "--data.root", str(shared_mini_root),
                 "--out", str(out), "--stages", "teacher,linear,tandem,feature_selection"]) == 0
    printed = capsys.readouterr().out
    assert printed.index("== teacher: fit") < printed.index("== linear: fit")
    teacher = out / "teacher" / "checkpoints" / "last.ckpt"
    ensemble = load_model(teacher)
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 2
    x = torch.randn(3, 1, 256, 34)
    expected = torch.stack([member(x) for member in ensemble.members]).mean(dim=0)
    assert torch.allclose(ensemble(x), expected)  # the teacher's logits: the members' mean
    report = json.loads((out / "teacher" / "test" / "metrics.json").read_text())
    assert report["model"] == "Teacher" and report["measured"]["checkpoint"] == str(teacher.resolve())
    assert "| Teacher |" in printed  # its own accuracy is in the summary
    linear = torch.load(out / "linear" / "checkpoints" / "last.ckpt", weights_only=True)
    assert "init_ckpt" not in (linear["hyper_parameters"] or {}) or not linear["hyper_parameters"]["init_ckpt"]
    for stage in ("tandem", "feature_selection"):  # the tandem by name, feature selection by inheritance
        saved = torch.load(out / stage / "checkpoints" / "last.ckpt", weights_only=True)
        assert saved["asc"]["teacher"] == [load_ensemble_description(teacher)], stage
        state = {key.removeprefix("teacher.networks.0."): value for key, value in saved["state_dict"].items()
                 if key.startswith("teacher.networks.0.")}
        assert all(torch.equal(state[key], value) for key, value in ensemble.state_dict().items()), stage


def load_ensemble_description(path: Path) -> dict:
    return torch.load(path, weights_only=True)["asc"]["architecture"]


def test_the_teacher_stage_is_named_only_where_there_is_one(shared_mini_root: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    configs, layer = tiny_configs(tmp_path / "configs"), tiny_ensemble_layer(tmp_path / "ensemble")
    line = one_error_line(capsys, "pipeline", "--configs", str(configs), "--layer", str(layer), "--data.root",
                          str(shared_mini_root), "--out", str(tmp_path / "r"), "--stages", "linear,tandem")
    assert "model.teacher: names the teacher stage, which this run has not got" in line, line
    line = one_error_line(capsys, "fit", *layered(configs, "tandem"), "--data.root", str(shared_mini_root),
                          "--model.teacher=[teacher]", "--model.init_ckpt=null",
                          "--trainer.default_root_dir", str(tmp_path / "t"))
    assert "'teacher' is the teacher stage of asc pipeline; outside the pipeline give that stage's checkpoint" in line
