"""Int8 quantization (modelopt): quantizer placement, calibration, QAT, checkpoint round trip, Q/DQ ONNX."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from asc.compress import qat
from asc.compress.export import onnx as onnx_export
from asc.errors import AscError
from asc.models import MomentsLinear
from tests.helpers import MAX_LOGIT_DIFF, MEAN_LOGIT_DIFF, MIN_AGREEMENT, N_BANDS, N_FRAMES, calibrate, inputs, tandem

pytestmark = pytest.mark.usefixtures("one_thread")


def test_quantizers_on_every_conv_and_linear_and_not_on_batchnorm_or_pooling() -> None:
    model = tandem()
    assert not qat.is_quantized(model)
    running_mean = model.cnn.input_bn.running_mean.clone()
    model.train()
    assert calibrate(model) is model
    assert model.training, "quantize restores the train/eval mode"
    assert torch.equal(model.cnn.input_bn.running_mean, running_mean), "calibration must not update BN statistics"
    assert qat.is_quantized(model)
    names = {name for name, _ in qat.quantizers(model)}
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(layers) == 1 + 1 + 10 * 3 + 4 + 1  # classifier, input conv, 3 per block, 4 transitions, head
    assert names == {f"{name}.{kind}_quantizer" for name, _ in layers for kind in ("weight", "input")}
    for _, layer in layers:
        out = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
        assert layer.weight_quantizer.num_bits == 8 and not layer.weight_quantizer.unsigned
        assert layer.weight_quantizer.amax.shape[0] == out and layer.weight_quantizer.amax.numel() == out  # per channel
        assert layer.input_quantizer.amax.numel() == 1  # per tensor
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.MaxPool2d):
            assert not any(q.is_enabled for q in m.children() if hasattr(q, "is_enabled")), name
    qat.check_calibrated(model)


def observed_ranges(model: nn.Module) -> dict[str, torch.Tensor]:
    """What the quantizers of a float ``model`` see while ``calibrate`` feeds it (inputs(64, 1), 16 at a time):
    the largest |input| of each conv and linear layer, and the largest |weight| of each output channel."""
    seen: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            largest = args[0].detach().abs().max()
            seen[name] = torch.maximum(seen.get(name, largest), largest)
        return hook

    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    handles = [m.register_forward_pre_hook(record(f"{name}.input_quantizer")) for name, m in layers]
    x = inputs(64, 1)
    with torch.no_grad():
        for i in range(0, len(x), 16):
            model(x[i:i + 16])
    for handle in handles:
        handle.remove()
    seen.update({f"{name}.weight_quantizer": m.weight.detach().abs().flatten(1).amax(dim=1) for name, m in layers})
    return seen


@pytest.mark.parametrize("method", ["max", "percentile"])
def test_calibration_ranges_are_the_observed_maxima_or_clip_activations_below_them(method: str) -> None:
    float_model = tandem()
    seen = observed_ranges(float_model)
    model = calibrate(tandem(), method)
    qat.check_calibrated(model)
    ranges = {name: q.amax.flatten() for name, q in qat.quantizers(model)}
    assert ranges.keys() == seen.keys()
    for name, amax in ranges.items():
        if name.endswith("weight_quantizer") or method == "max":  # weights always take their per-channel max
            assert torch.equal(amax, seen[name].flatten()), name
        else:
            assert 0 < amax.item() <= seen[name].item(), name
    clipped = [name for name, amax in ranges.items() if not torch.equal(amax, seen[name].flatten())]
    assert bool(clipped) == (method == "percentile"), "percentile changes activation ranges only"
    # Fake int8 stays near the float network: measured max |logit difference| 0.09 (max) and 0.37
    # (percentile), mean 0.02, classes agreeing on 95 % and 99 % of these random clips.
    x = inputs(256, 9)
    with torch.no_grad():
        quantized, reference = model(x), float_model(x)
    assert (quantized - reference).abs().mean() < 0.05
    assert (quantized.argmax(1) == reference.argmax(1)).float().mean() >= 0.9


def test_entropy_calibration_runs_on_the_linear_model() -> None:
    """Entropy's search is slow (seconds per quantizer), so it is checked on the one-layer model."""
    model = MomentsLinear(N_BANDS).eval()
    calibrate(model, "entropy")
    qat.check_calibrated(model)
    assert len(qat.quantizers(model)) == 2


def test_unknown_method_and_uncalibrated_quantizers_are_refused() -> None:
    with pytest.raises(AscError, match=r"model\.calibration: 'mse' is not one of max, percentile, entropy"):
        calibrate(tandem(), "mse")
    with pytest.raises(AscError, match="not quantized"):
        qat.check_calibrated(tandem())
    model = calibrate(tandem())
    model.cnn.head.input_quantizer.amax = torch.tensor(math.nan)
    with pytest.raises(AscError, match=r"cnn\.head\.input_quantizer"):
        qat.check_calibrated(model)


def test_qat_steps_change_weights_and_keep_outputs_finite() -> None:
    model = calibrate(tandem()).train()
    amax = model.cnn.head.input_quantizer.amax.clone()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    labels = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(0))
    for step in range(3):
        loss = nn.functional.cross_entropy(model(inputs(16, 10 + step)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    assert "cnn.input_conv.weight" in changed and "linear.classifier.weight" in changed
    assert torch.equal(model.cnn.head.input_quantizer.amax, amax), "ranges are frozen at calibration"
    with torch.no_grad():
        assert torch.isfinite(model.eval()(inputs(8, 3))).all()


def test_checkpoint_round_trip_reproduces_outputs_exactly(tmp_path: Path) -> None:
    model = calibrate(tandem()).eval()
    path = tmp_path / "qat.ckpt"
    torch.save({"state_dict": model.state_dict(), "modelopt_state": qat.modelopt_state(model)}, path)
    checkpoint = torch.load(path, weights_only=True)
    restored = tandem(seed=1)  # other weights: everything must come from the checkpoint
    assert qat.restore(restored, checkpoint["modelopt_state"]) is restored
    restored.load_state_dict(checkpoint["state_dict"])
    qat.check_calibrated(restored)
    x = inputs(32, 4)
    with torch.no_grad():
        assert torch.equal(model(x), restored.eval()(x))


def test_quantized_onnx_holds_symmetric_int8_qdq_and_matches_pytorch(tmp_path: Path) -> None:
    model = calibrate(tandem()).eval()
    path = tmp_path / "model.onnx"
    onnx_export.export_onnx(model, torch.zeros(1, 1, N_BANDS, N_FRAMES), path)
    summary = onnx_export.onnx_qdq_summary(path)
    active = qat.quantizers(model)
    weights = sum(name.endswith("weight_quantizer") for name, _ in active)
    assert summary == {"quantize_linear": len(active), "dequantize_linear": len(active), "zero_points_int8_zero": True,
                       "per_channel": weights, "per_tensor": len(active) - weights}
    x = inputs(256, 5) * 2
    ours = onnx_export.run_onnx(path, x.numpy())  # batch 256 from a batch-1 export: dynamic batch axis
    with torch.no_grad():
        reference = model(x).numpy()
    difference = np.abs(ours - reference)
    assert difference.max() < MAX_LOGIT_DIFF and difference.mean() < MEAN_LOGIT_DIFF, (difference.max(),
                                                                                        difference.mean())
    assert (ours.argmax(1) == reference.argmax(1)).mean() >= MIN_AGREEMENT


def test_float_onnx_has_no_qdq_and_run_onnx_checks_the_shape(tmp_path: Path) -> None:
    model = tandem()
    path = tmp_path / "float.onnx"
    onnx_export.export_onnx(model.train(), torch.zeros(2, 1, N_BANDS, N_FRAMES), path)
    assert model.training, "export restores the train/eval mode"
    summary = onnx_export.onnx_qdq_summary(path)
    assert summary["quantize_linear"] == summary["dequantize_linear"] == summary["per_channel"] == 0
    x = inputs(8, 6)
    with torch.no_grad():
        np.testing.assert_allclose(onnx_export.run_onnx(path, x.numpy()), model.eval()(x).numpy(), atol=1e-4)
    wrong = r"float\.onnx: input of shape \(8, 1, 32, 34\) does not fit the model's input \(batch, 1, 64, 34\)"
    with pytest.raises(AscError, match=wrong):
        onnx_export.run_onnx(path, x[:, :, :32].numpy())
    with pytest.raises(AscError, match=r"\(8, 64, 34\)"):
        onnx_export.run_onnx(path, x[:, 0].numpy())
    with pytest.raises(AscError, match="missing"):
        onnx_export.export_onnx(model, x[:1], tmp_path / "missing" / "model.onnx")


def test_export_gate_ignores_near_ties_and_catches_a_wrong_scale(tmp_path: Path) -> None:
    """The gate counts a changed class only where PyTorch's top-2 margin exceeds the logit tolerance, so a
    correct export passes every time; a single corrupted quantization scale fails it."""
    import onnx
    from onnx import numpy_helper

    from asc.compress.export.verify import compare

    model = calibrate(tandem()).eval()
    path = tmp_path / "model.onnx"
    onnx_export.export_onnx(model, torch.zeros(1, 1, N_BANDS, N_FRAMES), path)
    x = inputs(256, 9) * 3
    with torch.no_grad():
        reference = model(x).numpy()
    good = compare(reference, onnx_export.run_onnx(path, x.numpy()), quantized=True)
    # The gate judged classes on nearly every clip (254 of these 256), not on a vacuous few, and none changed.
    assert good.correct and good.disagree == 0 and good.decisive >= 0.9 * good.clips, good

    # A near-tie flipped by rounding does not fail a correct export.
    tie = reference.copy()
    tie[0, :2] = [5.0, 5.0 + 1e-3]
    flipped = tie.copy()
    flipped[0, :2] = [5.0 + 1e-3, 5.0]
    assert compare(tie, flipped, quantized=True).correct

    graph = onnx.load(str(path))
    scales = {node.input[1] for node in graph.graph.node if node.op_type == "DequantizeLinear"}
    constants = [node for node in graph.graph.node if node.op_type == "Constant" and node.output[0] in scales]
    tensor = next(c.attribute[0].t for c in constants if numpy_helper.to_array(c.attribute[0].t).size == 1)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 16, tensor.name))  # one activation scale
    onnx.save(graph, str(tmp_path / "broken.onnx"))
    broken = compare(reference, onnx_export.run_onnx(tmp_path / "broken.onnx", x.numpy()), quantized=True)
    assert not broken.correct, broken
