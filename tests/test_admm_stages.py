"""The ADMM stages as Python objects: built without the CLI, and resumed mid-way from a checkpoint."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from asc.compress.admm import ADMM
from asc.compress.checkpoint import network_checkpoint
from asc.data.features import FeatureSettings
from asc.errors import AscError
from asc.models import BCResNet, MomentsLinear, Tandem
from asc.training import admm as admm_stage
from asc.training import pruning as pruning_stage
from asc.training.admm import ADMMSettings, Masking, report_convergence
from asc.training.feature_selection import FeatureSelectionStage
from asc.training.pruning import PruningStage

FEATURES = FeatureSettings(n_mels=64)


def _tandem_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    tandem = Tandem(MomentsLinear(n_bands=64), BCResNet(n_bands=64, width=1), zero_init=False)
    torch.save(network_checkpoint(tandem, FEATURES), path)
    return path


def _saved(stage: admm_stage.ADMMStage, phases: Masking) -> dict:
    """What Lightning writes: the module's state, its contract, and the callback's state (Z, U, structure)."""
    checkpoint = {"state_dict": stage.state_dict(), "callbacks": {phases.state_key: phases.state_dict()}}
    stage.on_save_checkpoint(checkpoint)
    return checkpoint


def _restored(stage: admm_stage.ADMMStage, checkpoint: dict) -> Masking:
    """What Lightning does on ``fit --ckpt_path``: the network from the checkpoint, then the callback's state."""
    stage.on_load_checkpoint(checkpoint)
    stage.load_state_dict(checkpoint["state_dict"])
    phases = Masking()
    phases.load_state_dict(checkpoint["callbacks"][phases.state_key])
    phases.start(stage)
    return phases


def test_a_stage_built_in_python_has_every_hyperparameter(tmp_path: Path) -> None:
    stage = PruningStage(init_ckpt=str(_tandem_checkpoint(tmp_path / "tandem.ckpt")), max_params=8_000)
    hp = stage.hparams
    assert (hp.max_params, hp.admm["primal_lr"], hp.admm["rho"], stage.features.n_frames, hp.lr) == \
        (8_000, 0.001, 1.0, 34, 0.001)
    given = PruningStage(max_macs=9_000_000, admm=ADMMSettings(primal_lr=0.004, dual_lr=0.2), features=FEATURES)
    assert (given.hparams.max_macs, given.hparams.lr, given.hparams.admm["dual_lr"], given.settings.dual_lr,
            given.features.n_mels) == (9_000_000, 0.004, 0.2, 0.2, 64)  # what was passed, not the defaults
    assert [type(callback).__name__ for callback in stage.configure_callbacks()] == ["Masking"]  # its own phases


def test_pruning_resumes_admm_with_its_structure_and_duals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tandem = str(_tandem_checkpoint(tmp_path / "tandem.ckpt"))
    stage = PruningStage(max_params=8_000, max_macs=1_000_000, admm=ADMMSettings(dual_lr=0.5), features=FEATURES)
    stage.start_from(tandem)
    phases = Masking()
    phases.start(stage)
    with torch.no_grad():  # training moves the weights away from Z, so the duals grow
        for weight in phases.admm.weights:
            weight.add_(0.1)
    phases.admm.update()
    checkpoint = _saved(stage, phases)

    def no_search(*args: object, **kwargs: object) -> None:
        raise AssertionError("a resumed run must keep the structure it was interrupted with")

    monkeypatch.setattr(pruning_stage, "search_threshold", no_search)
    # The checkpoint alone: its init checkpoint is not read again.
    resumed = PruningStage(max_params=8_000, max_macs=1_000_000, admm=ADMMSettings(dual_lr=0.5), features=FEATURES)
    again = _restored(resumed, checkpoint)
    assert again.constraint_state["structure"] == phases.constraint_state["structure"]
    for name in ("auxiliaries", "duals"):
        saved, restored = getattr(phases.admm, name), getattr(again.admm, name)
        assert all(torch.equal(a, b) for a, b in zip(saved, restored, strict=True))
    # one dual step from zero: U = η_dual (W − Z) with the stage's own dual step, 0.5 (not the default)
    duals = [0.5 * (w.detach() - z) for w, z in zip(phases.admm.weights, phases.admm.auxiliaries, strict=True)]
    assert all(torch.allclose(u, expected) for u, expected in zip(again.admm.duals, duals, strict=True))
    assert any(u.abs().sum() > 0 for u in again.admm.duals)
    assert resumed.admm is again.admm  # the stage's penalty uses the callback's state
    assert again.admm.residuals == phases.admm.residuals and len(phases.admm.residuals) == 2  # start, 1 update


def test_feature_selection_resumes_without_its_init_checkpoint(tmp_path: Path) -> None:
    stage = FeatureSelectionStage(keep_bands=32, features=FEATURES)
    stage.start_from(str(_tandem_checkpoint(tmp_path / "tandem.ckpt")))
    phases = Masking()
    phases.start(stage)
    with torch.no_grad():
        stage.band_mask.weight.mul_(torch.linspace(0.5, 1.5, 64))
    phases.admm.update()
    checkpoint = _saved(stage, phases)

    resumed = FeatureSelectionStage(keep_bands=32, features=FEATURES)  # the checkpoint alone: architecture, mask, Z, U
    again = _restored(resumed, checkpoint)
    assert torch.equal(resumed.band_mask.weight, stage.band_mask.weight)
    assert torch.equal(again.admm.duals[0], phases.admm.duals[0])
    expected = stage.settings.dual_lr * (phases.admm.weights[0].detach() - phases.admm.auxiliaries[0])
    assert torch.allclose(again.admm.duals[0], expected) and expected.abs().sum() > 0


def test_the_constraint_is_applied_with_the_saved_structure(tmp_path: Path) -> None:
    """The fine-tuning phase removes exactly the channels of the structure the ADMM epochs projected onto."""
    stage = PruningStage(max_params=8_000, max_macs=1_000_000, features=FEATURES)
    stage.start_from(str(_tandem_checkpoint(tmp_path / "tandem.ckpt")))
    phases = Masking()
    phases.start(stage)
    widths = [sum(mask) for mask in phases.constraint_state["structure"]]
    phases.finish(stage)
    assert stage.compressed and stage.admm is None and stage.network.cnn.widths == widths
    assert stage.complexity().params <= 8_000 and stage.history[-1]["widths"] == widths


def test_the_update_epochs_say_how_close_they_came_and_warn_when_not_closer(capsys: pytest.CaptureFixture) -> None:
    """A run whose ADMM term diverges (the built-in pruning's first settings) applies the constraint anyway; the
    user learns that the weights did not approach it, and which keys explain why."""
    keep = torch.tensor([1.0, 0.0])
    admm = ADMM([nn.Parameter(torch.tensor([1.0, -0.5]))], lambda tensors: [t * keep for t in tensors])
    settings = ADMMSettings(primal_lr=0.005, rho=1.0, dual_lr=1.0, update_every=4)
    hp = SimpleNamespace(momentum=0.9, weight_decay=1e-3)
    admm.residuals.append(0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report_convergence(admm, settings, hp)  # closer: one line, no warning
    assert capsys.readouterr().out == "ADMM: primal residual ||W - Z|| 0.5 -> 0.2 after 1 dual updates\n"
    admm.residuals.append(0.7)
    with pytest.warns(UserWarning, match=r"0\.5 -> 0\.7.*model\.admm\.update_every=4 the ADMM term alone diverges "
                                         r"\(factor 1\.06\d per dual update\): raise model\.admm\.update_every"):
        report_convergence(admm, settings, hp)
    with pytest.warns(UserWarning, match=r"contracts \(factor 0\.57\d per dual update\)"):
        report_convergence(admm, ADMMSettings(primal_lr=0.005, dual_lr=0.3, update_every=16), hp)


def _trainer(step: int, batches: int = 10) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, num_training_batches=batches, accumulate_grad_batches=1)


def test_warm_up_steps_rank_the_bands_before_the_first_projection(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """At step 0 every band's mask is one: Π(W) would be a tie that keeps the lowest bands. With warm-up steps
    Z is formed from the mask training left, so the bands it pulled down are the ones ADMM drives to zero."""
    stage = FeatureSelectionStage(keep_bands=32, admm=ADMMSettings(warmup_steps=3, update_epochs=1), features=FEATURES)
    stage.start_from(str(_tandem_checkpoint(tmp_path / "tandem.ckpt")))
    phases = Masking()
    phases.on_train_start(_trainer(0), stage)
    assert phases.admm is None and stage.penalty() == 0.0  # warm-up: the task loss alone
    with torch.no_grad():  # what three steps of training left: the upper bands pulled up
        stage.band_mask.weight.add_(torch.linspace(-0.01, 0.01, 64))
    phases.on_train_batch_start(_trainer(2), stage, None, 2)
    assert phases.admm is None
    phases.on_train_batch_start(_trainer(3), stage, None, 3)
    kept = torch.nonzero(phases.admm.auxiliaries[0]).flatten().tolist()
    assert kept == list(range(32, 64)) and stage.admm is phases.admm
    phases.on_train_batch_start(_trainer(4), stage, None, 4)  # formed once
    assert phases.admm.residuals == [pytest.approx(phases.admm.distance())] and len(phases.admm.residuals) == 1
    capsys.readouterr()
    mask = stage.band_mask.weight.detach()[32:].tolist()
    phases.finish(stage)
    assert stage.network.bands == list(range(32, 64))
    assert stage.network.gains == mask, "the kept bands keep their mask entries as gains"
    assert "  their mask ended between 1.000 and 1.010; it stays as each band's gain" in capsys.readouterr().out

    untrained = FeatureSelectionStage(keep_bands=32, admm=ADMMSettings(update_epochs=1), features=FEATURES)
    untrained.start_from(str(tmp_path / "tandem.ckpt"))
    without = Masking()  # no warm-up: the tie at step 0 keeps the lowest bands
    without.on_train_start(_trainer(0), untrained)
    assert torch.nonzero(without.admm.auxiliaries[0]).flatten().tolist() == list(range(32))


def test_warm_up_longer_than_the_update_epochs_is_refused_before_training() -> None:
    stage = FeatureSelectionStage(keep_bands=32, admm=ADMMSettings(warmup_steps=20, update_epochs=2), features=FEATURES)
    with pytest.raises(AscError, match=r"^model\.admm\.warmup_steps: 20 leaves no ADMM step in the 20 steps"):
        Masking().on_train_start(_trainer(0), stage)
    with pytest.raises(AscError, match=r"^model\.admm\.warmup_steps: -1 must not be negative"):
        FeatureSelectionStage(admm=ADMMSettings(warmup_steps=-1), features=FEATURES)
