"""Model shapes and counts, ResNorm, the tandem's zero-init property, and the DCASE 2024 baseline (CP-Mobile)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import torchinfo

from asc.compress.complexity import count_complexity
from asc.errors import AscError
from asc.models import BCResNet, CPMobile, MomentsLinear, ResNorm, Tandem
from asc.models.architecture import build, describe
from asc.models.cpmobile import make_divisible

# One torch thread: on a busy 2-core machine the default threads made the training test 11 s instead of 0.2 s.
pytestmark = pytest.mark.usefixtures("one_thread")

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


#: The DCASE 2024 Task 1 baseline (simplified CP-Mobile) at its defaults on a (1, 1, 256, 65) log-mel.
CPMOBILE_PARAMS = 61_148
CPMOBILE_MACS = 29_419_156

#: The challenge baseline's layer table: (module, input shape, output shape, parameters, MACs); a row with a
#: batch norm counts the convolution and the norm together. The MACs are NeSsi's, itself a torchinfo count.
CPMOBILE_TABLE = [
    ("in_c.0", (1, 1, 256, 65), (1, 8, 128, 33), 88, 304_144),
    ("in_c.1", (1, 8, 128, 33), (1, 32, 64, 17), 2_368, 2_506_816),
    *[row for block in ("b1", "b2") for row in [
        (f"stages.s1.{block}.block.0", (1, 32, 64, 17), (1, 64, 64, 17), 2_176, 2_228_352),
        (f"stages.s1.{block}.block.1", (1, 64, 64, 17), (1, 64, 64, 17), 704, 626_816),
        (f"stages.s1.{block}.block.2", (1, 64, 64, 17), (1, 32, 64, 17), 2_112, 2_228_288),
    ]],
    ("stages.s1.b3.block.0", (1, 32, 64, 17), (1, 64, 64, 17), 2_176, 2_228_352),
    ("stages.s1.b3.block.1", (1, 64, 64, 17), (1, 64, 64, 9), 704, 331_904),
    ("stages.s1.b3.block.2", (1, 64, 64, 9), (1, 32, 64, 9), 2_112, 1_179_712),
    ("stages.s2.b4.block.0", (1, 32, 64, 9), (1, 64, 64, 9), 2_176, 1_179_776),
    ("stages.s2.b4.block.1", (1, 64, 64, 9), (1, 64, 32, 9), 704, 166_016),
    ("stages.s2.b4.block.2", (1, 64, 32, 9), (1, 56, 32, 9), 3_696, 1_032_304),
    ("stages.s2.b5.block.0", (1, 56, 32, 9), (1, 120, 32, 9), 6_960, 1_935_600),
    ("stages.s2.b5.block.1", (1, 120, 32, 9), (1, 120, 32, 9), 1_320, 311_280),
    ("stages.s2.b5.block.2", (1, 120, 32, 9), (1, 56, 32, 9), 6_832, 1_935_472),
    ("stages.s3.b6.block.0", (1, 56, 32, 9), (1, 120, 32, 9), 6_960, 1_935_600),
    ("stages.s3.b6.block.1", (1, 120, 32, 9), (1, 120, 32, 9), 1_320, 311_280),
    ("stages.s3.b6.block.2", (1, 120, 32, 9), (1, 104, 32, 9), 12_688, 3_594_448),
    ("feed_forward.0", (1, 104, 32, 9), (1, 10, 32, 9), 1_040, 299_520),
    ("feed_forward.1", (1, 10, 32, 9), (1, 10, 32, 9), 20, 20),
]


def test_cpmobile_table_adds_up_to_the_published_totals() -> None:
    assert sum(row[3] for row in CPMOBILE_TABLE) == CPMOBILE_PARAMS
    assert sum(row[4] for row in CPMOBILE_TABLE) == CPMOBILE_MACS


def test_cpmobile_parameter_count_is_the_baselines() -> None:
    model = CPMobile()
    assert model.channels == [32, 32, 56, 104]
    assert sum(parameter.numel() for parameter in model.parameters()) == CPMOBILE_PARAMS
    assert count_complexity(model, 65).params == CPMOBILE_PARAMS


def test_cpmobile_macs_match_the_baselines_count() -> None:
    """Tolerance 0: NeSsi counts with torchinfo too (``total_mult_adds``), as ``count_complexity`` does, with the
    same rule for batch norms (weight + bias per example, i.e. 2 MACs per channel); ReLU, the residual adds, the
    shortcut's average pooling and the global pooling count no MACs in either."""
    assert abs(count_complexity(CPMobile(), 65).macs - CPMOBILE_MACS) <= 0


def test_cpmobile_layers_have_the_tables_shapes_parameters_and_macs() -> None:
    model = CPMobile().eval()
    modules = dict(model.named_modules())
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def record(name: str):
        def hook(_module: torch.nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
            shapes[name] = (tuple(inputs[0].shape), tuple(output.shape))
        return hook

    hooks = [modules[name].register_forward_hook(record(name)) for name, *_ in CPMOBILE_TABLE]
    with torch.no_grad():
        logits = model(torch.randn(1, 1, 256, 65))
    for hook in hooks:
        hook.remove()
    assert logits.shape == (1, 10)
    summary = torchinfo.summary(model, input_size=(1, 1, 256, 65), verbose=0, mode="eval", depth=10)
    leaf_macs = {id(layer.module): layer.macs for layer in summary.summary_list if not list(layer.module.children())}
    for name, in_shape, out_shape, params, macs in CPMOBILE_TABLE:
        module = modules[name]
        assert shapes[name] == (in_shape, out_shape), name
        assert sum(parameter.numel() for parameter in module.parameters()) == params, name
        assert sum(leaf_macs.get(id(leaf), 0) for leaf in module.modules()) == macs, name


@pytest.mark.parametrize(("n_mels", "frames"), [(256, 34), (128, 65), (128, 34), (64, 7)])
def test_cpmobile_takes_any_frame_count_and_band_count(n_mels: int, frames: int) -> None:
    model = CPMobile(n_mels=n_mels).eval()
    assert (model.n_mels, model.n_bands) == (n_mels, n_mels)
    assert model(torch.randn(2, 1, n_mels, frames)).shape == (2, 10)
    assert count_complexity(model, frames).params == CPMOBILE_PARAMS


def test_cpmobile_scales_in_the_baselines_three_dimensions() -> None:
    assert [make_divisible(v) for v in (32, 57.6, 103.68, 67.2, 117.6, 9, 3)] == [32, 56, 104, 64, 120, 16, 8]
    model = CPMobile(n_classes=7, base_channels=40, channels_multiplier=2.3, expansion_rate=3.0)
    assert model.channels == [40, 40, 96, 208]
    assert model.stages.s1.b1.block[0][0].out_channels == 120  # 40 x 3.0
    assert model.stages.s3.b6.block[0][0].out_channels == 288  # make_divisible(96 x 3.0)
    assert model.in_c[0][0].out_channels == 10
    assert model.eval()(torch.randn(1, 1, 256, 65)).shape == (1, 7)


def test_cpmobile_description_round_trip() -> None:
    assert describe(CPMobile()) == {"type": "cpmobile", "n_mels": 256, "n_classes": 10, "base_channels": 32,
                                    "channels_multiplier": 1.8, "expansion_rate": 2.1}
    model = CPMobile(n_mels=128, n_classes=7, base_channels=24, channels_multiplier=1.5, expansion_rate=3.0)
    x = torch.randn(3, 1, 128, 34)
    model.train()
    model(x)  # move the batch-norm statistics away from their initial values
    description = json.loads(json.dumps(describe(model)))
    rebuilt = build(description)
    assert isinstance(rebuilt, CPMobile) and describe(rebuilt) == describe(model)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.eval()(x), model.eval()(x))


def test_cpmobile_blocks_with_equal_channels_add_their_input_and_every_block_ends_with_relu() -> None:
    """With its projection's batch norm zeroed a block outputs ReLU(shortcut): the input itself (b1, b2, b5),
    the input average-pooled like its strided depthwise convolution (b3), or nothing (b4, b6 change channels)."""
    model = CPMobile().eval()
    inputs = {"b1": (32, 64, 17), "b2": (32, 64, 17), "b3": (32, 64, 17), "b4": (32, 64, 9), "b5": (56, 32, 9),
              "b6": (56, 32, 9)}
    torch.manual_seed(0)
    for stage in model.stages:
        for name, block in stage.named_children():
            x = torch.randn(2, *inputs[name])
            with torch.no_grad():
                before = block(x)
                torch.nn.init.zeros_(block.block[2][1].weight)
                torch.nn.init.zeros_(block.block[2][1].bias)
                out = block(x)
            if name in ("b1", "b2", "b5"):
                expected = F.relu(x)
            elif name == "b3":
                expected = F.relu(F.avg_pool2d(x, 3, stride=(1, 2), padding=1))
            else:
                expected = torch.zeros_like(out)
            assert not torch.equal(before, expected), name  # the block's own path contributes before zeroing
            assert out.shape == before.shape and torch.equal(out, expected), name
