"""The ADMM stages as Python objects: built without the CLI, and resumed mid-way from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asc.models import BCResNet, MomentsLinear, Tandem
from asc.models.architecture import describe
from asc.training import admm_stages
from asc.training.admm_stages import FeatureSelectionStage, PruningStage
from asc.training.checkpoints import ASC_KEY


def _tandem_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    tandem = Tandem(MomentsLinear(n_bands=32), BCResNet(n_bands=32, width=1), zero_init=False)
    state = {f"model.{key}": value for key, value in tandem.state_dict().items()}
    torch.save({ASC_KEY: {"architecture": describe(tandem), "bands": None}, "state_dict": state}, path)
    return path


def test_a_stage_built_in_python_has_every_hyperparameter(tmp_path: Path) -> None:
    stage = PruningStage(init_ckpt=str(_tandem_checkpoint(tmp_path / "tandem.ckpt")), max_params=8_000)
    hp = stage.hparams
    assert (hp.max_params, hp.primal_lr, hp.rho, hp.n_frames, hp.lr) == (8_000, 0.001, 1.0, 34, 0.001)


def test_pruning_resumes_admm_with_its_structure_and_duals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tandem = str(_tandem_checkpoint(tmp_path / "tandem.ckpt"))
    stage = PruningStage(init_ckpt=tandem, max_params=8_000, max_macs=1_000_000, dual_lr=0.5)
    stage.start_admm()
    with torch.no_grad():  # training moves the weights away from Z, so the duals grow
        for weight in stage.admm.weights:
            weight.add_(0.1)
    stage.admm_update()
    checkpoint = {"state_dict": stage.state_dict()}
    stage.on_save_checkpoint(checkpoint)

    def no_search(*args: object, **kwargs: object) -> None:
        raise AssertionError("a resumed run must keep the structure it was interrupted with")

    monkeypatch.setattr(admm_stages, "search_threshold", no_search)
    resumed = PruningStage(init_ckpt=tandem, max_params=8_000, max_macs=1_000_000, dual_lr=0.5)
    resumed.load_state_dict(checkpoint["state_dict"])
    resumed.on_load_checkpoint(checkpoint)
    resumed.start_admm()
    assert [m.tolist() for m in resumed.structure] == [m.tolist() for m in stage.structure]
    for name in ("auxiliaries", "duals"):
        saved, restored = getattr(stage.admm, name), getattr(resumed.admm, name)
        assert any(t.abs().sum() > 0 for t in restored)
        assert all(torch.equal(a, b) for a, b in zip(saved, restored, strict=True))


def test_feature_selection_resumes_without_its_init_checkpoint(tmp_path: Path) -> None:
    stage = FeatureSelectionStage(init_ckpt=str(_tandem_checkpoint(tmp_path / "tandem.ckpt")), keep_bands=16)
    stage.start_admm()
    with torch.no_grad():
        stage.band_mask.weight.mul_(torch.linspace(0.5, 1.5, 32))
    stage.admm_update()
    checkpoint = {"state_dict": stage.state_dict()}
    stage.on_save_checkpoint(checkpoint)

    resumed = FeatureSelectionStage(keep_bands=16)  # the checkpoint alone: architecture, mask, Z and U
    resumed.on_load_checkpoint(checkpoint)
    resumed.load_state_dict(checkpoint["state_dict"])
    resumed.start_admm()
    assert torch.equal(resumed.band_mask.weight, stage.band_mask.weight)
    assert torch.equal(resumed.admm.duals[0], stage.admm.duals[0]) and resumed.admm.duals[0].abs().sum() > 0
