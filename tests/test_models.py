"""Model shapes and counts, ResNorm, and the tandem's zero-init property."""

from __future__ import annotations

import pytest
import torch

from asc.compress.complexity import count_complexity
from asc.errors import AscError
from asc.models import BCResNet, MomentsLinear, ResNorm, Tandem
from asc.models.architecture import build, describe

#: BC-ResNet Mod-8 (width 8, c = 80, stages of 2, 2, 3, 3 blocks) on 256 x 34 and 192 x 34 log-mels.
MOD8_PARAMS = 343_130
MOD8_MACS_256 = 51_389_040
MOD8_MACS_192 = 38_861_360


def test_linear_model_counts_match_the_report() -> None:
    complexity = count_complexity(MomentsLinear(256), 34)
    assert (complexity.params, complexity.macs) == (12_810, 12_810)
    assert MomentsLinear(256)(torch.randn(3, 1, 256, 34)).shape == (3, 10)


def test_bcresnet_mod8_counts() -> None:
    model = BCResNet(n_bands=256, width=8)
    assert model.widths == [160, 80, 120, 160, 200]
    assert count_complexity(model, 34).params == MOD8_PARAMS
    assert count_complexity(model, 34).macs == MOD8_MACS_256
    assert count_complexity(BCResNet(n_bands=192, width=8), 34).macs == MOD8_MACS_192


def test_counting_a_model_leaves_the_random_stream_of_training_alone() -> None:
    """A stage counts its network mid-fit (the ADMM hand-over): the count must not shift later draws."""
    tandem = Tandem(MomentsLinear(64), BCResNet(n_bands=64, width=1), n_mels=256, bands=range(64))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    count_complexity(tandem, 34)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("n_bands", [256, 192, 64])
def test_bcresnet_shapes(n_bands: int) -> None:
    model = BCResNet(n_bands=n_bands, width=1).eval()
    assert model(torch.randn(2, 1, n_bands, 34)).shape == (2, 10)


def test_sub_bands_must_divide_every_stage() -> None:
    with pytest.raises(AscError, match=r"model\.sub_bands: 4 sub-bands do not divide the 50 frequency bins of stage 2"):
        BCResNet(n_bands=200, width=1)


def test_resnorm_normalises_each_frequency_bin() -> None:
    x = torch.randn(2, 3, 5, 7) * 4 + 10
    out = ResNorm(lam=0.0)(x)
    assert torch.allclose(out.mean(dim=(1, 3)), torch.zeros(2, 5), atol=1e-5)
    assert torch.allclose(ResNorm(lam=0.1)(x) - out, 0.1 * x, atol=1e-5)
    assert torch.allclose(out.var(dim=(1, 3), unbiased=False), torch.ones(2, 5), atol=1e-3)


def test_resnorm_fast_form_matches_the_formula_and_the_masked_form_values_and_gradients() -> None:
    """The group-norm form used in training computes the report's formula, forward and backward."""
    x = (torch.randn(3, 4, 8, 6) * 3 + 2).requires_grad_()
    resnorm = ResNorm(lam=0.1)
    mean, var = x.mean(dim=(1, 3), keepdim=True), x.var(dim=(1, 3), keepdim=True, unbiased=False)
    formula = 0.1 * x + (x - mean) / (var + resnorm.eps).sqrt()
    weights = torch.randn_like(x)
    (grad_formula,) = torch.autograd.grad((formula * weights).sum(), x)
    fast = resnorm(x)
    (grad_fast,) = torch.autograd.grad((fast * weights).sum(), x)
    resnorm.channel_mask = torch.ones(4, dtype=torch.bool)
    masked = resnorm(x)
    assert torch.allclose(fast, formula, atol=1e-5) and torch.allclose(masked, formula, atol=1e-5)
    assert torch.allclose(grad_fast, grad_formula, atol=1e-4)


def test_tandem_starts_as_the_linear_model_and_every_layer_learns() -> None:
    torch.manual_seed(0)
    linear = MomentsLinear(64)
    tandem = Tandem(linear, BCResNet(n_bands=64, width=1, dropout=0.0))
    x, y = torch.randn(8, 1, 64, 34), torch.randint(0, 10, (8,))
    tandem.eval()
    assert torch.equal(tandem(x), linear(x))
    tandem.train()
    optimizer = torch.optim.SGD(tandem.parameters(), lr=0.05)
    touched = {name: False for name, p in tandem.cnn.named_parameters()}
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(tandem(x), y).backward()
        for name, parameter in tandem.cnn.named_parameters():
            touched[name] |= bool(parameter.grad is not None and parameter.grad.abs().sum() > 0)
        optimizer.step()
    assert all(touched.values()), [name for name, ok in touched.items() if not ok]


def test_architecture_round_trip() -> None:
    tandem = Tandem(MomentsLinear(64), BCResNet(n_bands=64, widths=[3, 4, 5, 6, 7]))
    rebuilt = build(describe(tandem))
    assert describe(rebuilt) == describe(tandem)
    rebuilt.load_state_dict(tandem.state_dict())
    x = torch.randn(2, 1, 64, 34)
    assert torch.equal(rebuilt.eval()(x), tandem.eval()(x))


def test_the_kept_bands_gains_scale_their_rows_compose_and_survive_the_description() -> None:
    """Feature selection keeps each kept band's mask entry as its gain (report eq. 1: f(w ⊙ X)); a checkpoint
    rebuilds the same network from its description, and a second selection multiplies into the first."""
    gains = torch.linspace(-1.5, 2.2, 32)
    tandem = Tandem(MomentsLinear(32), BCResNet(n_bands=32, width=1), zero_init=False, n_mels=64,
                    bands=range(0, 64, 2), gains=gains.tolist()).eval()
    x = torch.randn(2, 1, 64, 34)
    assert torch.equal(tandem.input_bands(x), x[:, :, 0::2] * gains.view(1, 1, -1, 1))
    assert torch.equal(tandem(x), tandem.classify(x[:, :, 0::2] * gains.view(1, 1, -1, 1)))
    rebuilt = build(describe(tandem))
    assert rebuilt.gains == tandem.gains == gains.tolist()
    rebuilt.load_state_dict(tandem.state_dict())  # the gains are not weights: the description carries them
    assert torch.equal(rebuilt.eval()(x), tandem(x))
    again = tandem.input_bands.compose([1, 3], [2.0, -1.0])
    assert again.bands == [2, 6] and again.gains == pytest.approx([2 * float(gains[1]), -float(gains[3])])
    assert tandem.input_bands.compose([1, 3]).gains == pytest.approx(gains[[1, 3]].tolist())
    with pytest.raises(AscError, match=r"^gains: 3 values, but 32 selected bands"):
        Tandem(MomentsLinear(32), BCResNet(n_bands=32, width=1), n_mels=64, bands=range(0, 64, 2), gains=[1.0] * 3)
    with pytest.raises(AscError, match=r"^gains: 1 values, but 2 selected bands"):
        tandem.input_bands.compose([1, 3], [2.0])
