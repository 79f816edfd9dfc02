"""A CPU int8 deployment form of a QAT model: ONNX that onnxruntime runs with integer kernels.

The TensorRT Q/DQ export (:func:`asc.compress.onnx_export.export_onnx`) is slower than float in
onnxruntime on a CPU: ORT runs its Q/DQ pairs as quantize-dequantize passes around float kernels. This
module writes the QAT model's arithmetic node by node instead, from its weights and its quantizers'
ranges (``amax``), so nothing is calibrated and every quantizer rounds and clamps as in PyTorch:

* a transition block's 1x1 conv (about 70 % of the multiply-adds) is one ``QLinearConv``: batch norm
  folds into its per-channel weight scales and int32 bias, its uint8 output with zero-point 0 is the
  ReLU, a ``Clip`` at 127 is the int8 bound, and the result is the frequency conv's quantized input.
  Run as a float conv instead, the whole network was about 10 % slower;
* the other convs run as float convs on the dequantized int8 codes (the same products and sums as
  QAT's fake quantization): ORT's ``ConvInteger`` loops over depthwise groups one by one and was 2-5x
  slower than its float depthwise conv (reorders included), a depthwise ``QLinearConv`` would round its
  output to 8 bits where QAT keeps float, and for the one-channel 5x5 input conv integers needed three
  more passes over the largest activation (dequantize, shift, ReLU) than the fused float conv;
* what QAT computes in float stays float: ResNorm, SubSpectralNorm, the residual sums, SiLU, pooling,
  and the moments of the linear branch. ORT has no integer kernels for them, runs every node as one pass
  over its tensor, and this element-wise work is most of the CPU time of this network (the per-node
  profile is in docs/benchmarks.md, "Inference"), so it is written in the forms ORT runs fastest: channel
  sums as matrix products (:func:`_resnorm`), the frequency mean as a depthwise conv on the conv output
  that ORT already holds in its blocked layout (:func:`_frequency_mean`), broadcasts over long contiguous
  rows, ReLU after max-pooling, no shape arithmetic at run time;
* the network runs in a ``Loop`` over tiles of :data:`TILE` clips (:func:`_tiled`), so that a large
  batch streams through the cache tile by tile instead of node by node;
* channel counts are padded with zero channels to multiples of :data:`LANES`, so ORT's blocked
  (NCHWc) float convolutions take the pruned widths (67, 93, 109: 2-4x faster); padded channels stay 0
  because every block input is a ReLU output (see :func:`_block`);
* the head's 1x1 conv runs after the global average (they commute) as a float Gemm on the quantized,
  dequantized activations; so does the linear classifier (10 x 5F weights).

Activation codes are uint8 with zero-point 128, the int8 symmetric grid. The transition convs' weights are
uint8 with zero-point 128 as well by default: on x86 CPUs without VNNI (AVX2) ORT's u8s8 kernels saturate
int16 pair sums, and int8 weights gave results off by up to 172 steps; u8u8 is exact on every CPU.
``weights="int8"`` writes them as int8 (zero-point 0), which ORT runs with VNNI's u8s8 dot products: exact
there and 2-15 % less time per clip (``make bench``, docs/benchmarks.md); the file records its weight type
(:data:`WEIGHTS_KEY`) and :func:`~asc.compress.export.onnx.run_onnx` refuses it on a CPU without VNNI.

Measured and left out (onnxruntime 1.32, one thread, ``make bench``'s pruned tandem): ``ReduceSumSquare``
for the sums of squares (5 % slower at batch 64), a ``Sum`` broadcasting the temporal path instead of
``Expand`` (9 % slower), the sub-band batch norm folded into the frequency conv through a gathered copy
with halo rows (the ``Gather`` cost more than the batch norm it saved), channels last around the first
transition conv (no gain), padding to 4 channels (no gain), ``BatchNormalization`` or blocked
``QuantizeLinear`` with run-time per-band scales for ResNorm (slower kernels), ResNorm as ``LayerNormalization``
on a transposed ``(B, F, C, T)`` view (the whole network 1.5x slower at batch 1, 1.7x at 64; its statistics alone
from the same node, the rest as here: 1.07x and 1.4x slower).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from asc.compress.export.onnx import CPU_INT8_GRAPH, INPUT_NAME, ONNX_OPSET, OUTPUT_NAME, WEIGHTS_KEY
from asc.compress.export.onnx_graph import TILE, Graph, tiled_loop
from asc.compress.qat import check_calibrated
from asc.errors import AscError
from asc.files import atomic_write

#: Zero-point that puts int8 symmetric codes on uint8 (activations and weights).
ZERO = 128
#: Channel counts are padded to multiples of this: ORT's blocked (NCHWc) convolutions need a multiple of 4
#: (measured on AVX-512); 8 is the AVX2 block, and 4 measured no faster here.
LANES = 8
#: The transition convs' weight types: uint8 (exact on every CPU, the default) or int8 (exact with VNNI, faster).
WEIGHT_TYPES = ("uint8", "int8")


def _lanes(channels: int) -> int:
    return -(-channels // LANES) * LANES


def _pad(array: np.ndarray, size: int, axis: int = 0, value: float = 0.0) -> np.ndarray:
    """``array`` extended along ``axis`` to ``size`` with ``value`` (weights and scales of padded channels)."""
    widths = [(0, 0)] * array.ndim
    widths[axis] = (0, size - array.shape[axis])
    return np.pad(array, widths, constant_values=value)


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().double().numpy()


def _input_scale(layer: nn.Module) -> float:
    """The step of a layer's int8 input quantizer (symmetric: amax / 127)."""
    return float(layer.input_quantizer.amax) / 127


def _weight_codes(layer: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """The layer's int8 weight codes (as modelopt rounds and clamps them) and per-output-channel steps."""
    step = _array(layer.weight_quantizer.amax).reshape(-1) / 127
    weight = _array(layer.weight)
    codes = np.clip(np.round(weight / step.reshape(-1, *[1] * (weight.ndim - 1))), -128, 127)
    return codes, step


def _batch_norm(bn: nn.Module | None, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode batch norm as ``scale * x + shift`` per channel (identity for None)."""
    if bn is None:
        return np.ones(channels), np.zeros(channels)
    scale = 1 / np.sqrt(_array(bn.running_var) + bn.eps)
    if bn.affine:
        scale = scale * _array(bn.weight)
    shift = -_array(bn.running_mean) * scale + (_array(bn.bias) if bn.affine else 0)
    return scale, shift


def _quantize(g: Graph, x: str, layer: nn.Module) -> str:
    """``layer``'s input quantizer: uint8 codes with zero-point 128 (int8 symmetric, also its clamp)."""
    return g.op("QuantizeLinear", x, g.const(_input_scale(layer)), g.const(ZERO, np.uint8))


def _conv_attributes(conv: nn.Conv2d, groups: int) -> dict:
    return {"kernel_shape": list(conv.kernel_size), "strides": list(conv.stride), "pads": list(conv.padding) * 2,
            "dilations": list(conv.dilation), "group": groups}


def _folded(conv: nn.Conv2d, bn: nn.Module | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weight codes, per-channel steps with batch norm folded in (exact: a per-channel factor), shift."""
    codes, step = _weight_codes(conv)
    scale, shift = _batch_norm(bn, conv.out_channels)
    if conv.bias is not None:
        shift = shift + _array(conv.bias) * scale
    return codes, step * scale, shift


def _conv_float(g: Graph, xq: str, conv: nn.Conv2d, bn: nn.Module | None = None, input_zero: int = ZERO,
                padded_input: bool = True) -> str:
    """``bn(conv(x))`` as a float conv on the dequantized codes, channels padded to :data:`LANES`.

    ``padded_input=False`` for the input conv, whose input is the one-channel log-mel.
    """
    codes, step, shift = _folded(conv, bn)
    out, depthwise = _lanes(conv.out_channels), conv.groups > 1
    weight = _pad(codes * step.reshape(-1, 1, 1, 1), out)
    if padded_input and not depthwise:
        weight = _pad(weight, _lanes(conv.in_channels), axis=1)
    x = g.op("DequantizeLinear", xq, g.const(_input_scale(conv)), g.const(input_zero, np.uint8))
    groups = out if depthwise else 1
    return g.op("Conv", x, g.const(weight), g.const(_pad(shift, out)), **_conv_attributes(conv, groups))


def _conv_requantized(g: Graph, xq: str, conv: nn.Conv2d, bn: nn.Module, consumer: nn.Module, weights: str) -> str:
    """``consumer``'s quantized input ``Q(relu(bn(conv(x))))`` as one QLinearConv, exact to QAT's rounding.

    The uint8 output with zero-point 0 saturates negatives (the ReLU); the Clip is the int8 bound. ``weights``:
    the weight codes' type (:data:`WEIGHT_TYPES`).
    """
    codes, step, shift = _folded(conv, bn)
    out = _lanes(conv.out_channels)
    x_scale = _input_scale(conv)
    codes = _pad(_pad(codes, out), _lanes(conv.in_channels), axis=1)
    bias = _pad(np.round(shift / (x_scale * step)), out)
    if np.abs(bias).max() >= 2**31:
        raise AscError(f"a {conv.in_channels}->{conv.out_channels} channel conv has a batch-norm scale near 0: "
                       "its shift does not fit the int32 bias of QLinearConv")
    zero = g.const(0, np.uint8)
    offset, dtype = (0, np.int8) if weights == "int8" else (ZERO, np.uint8)  # the weights' zero-point
    result = g.op("QLinearConv", xq, g.const(x_scale), g.const(ZERO, np.uint8), g.const(codes + offset, dtype),
                  g.const(_pad(step, out, value=1.0)), g.const(np.full(out, offset), dtype),
                  g.const(_input_scale(consumer)), zero, g.const(bias, np.int32), **_conv_attributes(conv, 1))
    return g.op("Clip", result, zero, g.const(127, np.uint8))


def _resnorm(g: Graph, x: str, norm: nn.Module, channels: int, freq: int, frames: int) -> str:
    """ResNorm ``lam*x + (x - mean) / std`` over channels and time, as ``x * a - b`` per (clip, band).

    The sums over channels of ``x`` and ``x²`` are matrix products with a row of ones on the
    ``(B, C, F*T)`` view (MLAS's GEMM: 5x faster than ORT's ``ReduceMean`` over that axis at batch 1,
    equal at 64; ``ReduceSumSquare`` instead of ``Mul`` + product was 5 % slower at 64); one more product
    sums over time and divides by the real channel count (padded channels are 0). ``a`` and ``b`` are
    expanded over time by a product with a row of ones, so the final multiply-add broadcasts over long
    rows (a ``(B, 1, F, 1)`` broadcast runs 2x slower). The variance is ``E[x²] - E[x]²`` (clamped at 0):
    block inputs are ReLU outputs of moderate size. Against PyTorch only the summation order differs.
    """
    if norm.channel_mask is not None:
        raise AscError("the model still holds pruning masks: export the physically pruned checkpoint")
    padded = _lanes(channels)
    flat = g.op("Reshape", x, g.shape(0, padded, freq * frames))
    total = g.op("MatMul", g.const(np.ones((1, padded))), flat)
    squares = g.op("MatMul", g.const(np.ones((1, padded))), g.op("Mul", flat, flat))
    sums = g.op("Reshape", g.op("Concat", total, squares, axis=1), g.shape(0, 2, freq, frames))
    sums = g.op("MatMul", sums, g.const(np.full((frames, 1), 1 / (channels * frames))))
    mean, square = g.op("Split", sums, axis=1, outputs=2)
    variance = g.op("Max", g.op("Sub", square, g.op("Mul", mean, mean)), g.const(0.0))
    inverse = g.op("Pow", g.op("Add", variance, g.const(norm.eps)), g.const(-0.5))
    both = g.op("Concat", g.op("Add", inverse, g.const(norm.lam)), g.op("Mul", mean, inverse), axis=1)
    both = g.op("Reshape", g.op("MatMul", both, g.const(np.ones((1, frames)))), g.shape(0, 2, freq * frames))
    a, b = g.op("Split", both, axis=1, outputs=2)
    return g.op("Reshape", g.op("Sub", g.op("Mul", flat, a), b), g.shape(0, padded, freq, frames))


def _resnorm_two_pass(g: Graph, x: str, norm: nn.Module) -> str:
    """ResNorm as PyTorch computes it, for the network's one-channel input, whose statistics are over time
    alone (the fast innermost-axis reduction): raw log-mels have a large mean (about -5) and near-constant
    bands, where ``E[x²] - E[x]²`` would cancel to noise."""
    centred = g.op("Sub", x, g.op("ReduceMean", x, axes=[3]))
    variance = g.op("ReduceMean", g.op("Mul", centred, centred), axes=[3])
    inverse = g.op("Pow", g.op("Add", variance, g.const(norm.eps)), g.const(-0.5))
    return g.op("Add", g.op("Mul", x, g.const(norm.lam)), g.op("Mul", centred, inverse))


def _block(g: Graph, h: str, block: nn.Module, freq: int, frames: int, relu: bool, weights: str) -> str:
    """One BC-ResNet block; ``relu=False`` leaves the final ReLU to after the max-pooling that follows.

    Padded channels stay 0: their weights, batch norms and shifts are 0, and ResNorm maps a zero input
    channel to ``-mean/std`` of the block input, which is <= 0 as the input is a ReLU output, so the
    block's ReLU (before or after max-pooling) zeroes it again.
    """
    channels = block.freq_dw.out_channels
    in_channels = block.pointwise_in.in_channels if block.transition else channels
    y = _resnorm(g, h, block.resnorm, in_channels, freq, frames)
    if block.transition:
        codes = _conv_requantized(g, _quantize(g, y, block.pointwise_in), block.pointwise_in, block.bn_in,
                                  block.freq_dw, weights)
        aux = _conv_float(g, codes, block.freq_dw, input_zero=0)
    else:
        aux = _conv_float(g, _quantize(g, y, block.freq_dw), block.freq_dw)
    temporal = _frequency_mean(g, aux, block.ssn, channels, freq)
    aux = _subspectral(g, aux, block.ssn, channels, freq, frames)
    temporal = _conv_float(g, _quantize(g, temporal, block.time_dw), block.time_dw, block.bn_time)
    temporal = g.op("Mul", temporal, g.op("Sigmoid", temporal))
    temporal = _conv_float(g, _quantize(g, temporal, block.pointwise), block.pointwise)
    temporal = g.op("Expand", temporal, g.shape(1, 1, freq, 1))  # Sum broadcasting it is slower
    out = g.op("Sum", aux, temporal, *([] if block.transition else [y]))
    return g.op("Relu", out) if relu else out


def _frequency_mean(g: Graph, u: str, ssn: nn.Module, channels: int, freq: int) -> str:
    """The mean over frequency of ``SubSpectralNorm(u)``, ``(B, C, 1, T)``, as a depthwise conv on ``u``.

    The frequency conv's output ``u`` is in ORT's blocked (NCHWc) layout when this conv reads it, so the
    mean costs one read of ``u`` and no reorder; a ``ReduceMean`` over frequency of the batch-normed
    tensor (inner axis of 4-17 frames) was 3-10x slower. Exact in real arithmetic: the sub-band batch
    norm is ``scale * u + shift`` per (channel, sub-band), so its mean over frequency is a weighted sum
    of ``u`` (weights ``scale / F``) plus the mean shift.
    """
    bands = ssn.sub_bands
    scale, shift = _batch_norm(ssn.bn, channels * bands)
    padded = _lanes(channels)
    scale, shift = (_pad(values, padded * bands).reshape(padded, bands) for values in (scale, shift))
    weight = np.repeat(scale, freq // bands, axis=1) / freq
    return g.op("Conv", u, g.const(weight.reshape(padded, 1, freq, 1)), g.const(shift.mean(axis=1)),
                kernel_shape=[freq, 1], group=padded)


def _subspectral(g: Graph, x: str, ssn: nn.Module, channels: int, freq: int, frames: int) -> str:
    """SubSpectralNorm: batch norm on a view with (channel, sub-band) rows; padded rows map to 0."""
    bands, bn = ssn.sub_bands, ssn.bn
    rows = _lanes(channels) * bands
    parameters = [_pad(_array(bn.weight), rows), _pad(_array(bn.bias), rows), _pad(_array(bn.running_mean), rows),
                  _pad(_array(bn.running_var), rows, value=1.0)]
    view = g.op("Reshape", x, g.shape(0, rows, freq // bands, frames))
    out = g.op("BatchNormalization", view, *[g.const(p) for p in parameters], epsilon=bn.eps)
    return g.op("Reshape", out, g.shape(0, _lanes(channels), freq, frames))


def _bcresnet(g: Graph, x: str, cnn: nn.Module, frames: int, weights: str) -> str:
    """BC-ResNet from ``(B, 1, n_bands, T)`` log-mels to logits."""
    from asc.models.bcresnet import stage_frequencies

    y = _resnorm_two_pass(g, x, cnn.input_norm)
    h = g.op("Relu", _conv_float(g, _quantize(g, y, cnn.input_conv), cnn.input_conv, cnn.input_bn, padded_input=False))
    frames = (frames - 1) // 2 + 1  # the input conv: kernel 5, stride 2, padding 2
    for stage, freq in zip(cnn.stages, stage_frequencies(cnn.n_bands), strict=True):
        layers = list(stage)
        for index, layer in enumerate(layers):
            if isinstance(layer, nn.MaxPool2d):  # ReLU commutes with it: applied on the 4x smaller output
                h = g.op("Relu", g.op("MaxPool", h, kernel_shape=[2, 2], strides=[2, 2]))
                frames //= 2
            else:
                pooled = index + 1 < len(layers) and isinstance(layers[index + 1], nn.MaxPool2d)
                h = _block(g, h, layer, freq, frames, relu=not pooled, weights=weights)
    head = cnn.head
    pooled = g.op("ReduceMean", g.op("DequantizeLinear", _quantize(g, h, head), g.const(_input_scale(head)),
                                     g.const(ZERO, np.uint8)), axes=[2, 3], keepdims=0)
    return _gemm(g, pooled, head, _lanes(head.in_channels))


def _gemm(g: Graph, x: str, layer: nn.Module, inputs: int) -> str:
    """A float Gemm with the layer's dequantized weights (the head's 1x1 conv or a linear layer)."""
    codes, step = _weight_codes(layer)
    weight = _pad(codes.reshape(len(step), -1) * step[:, None], inputs, axis=1)
    return g.op("Gemm", x, g.const(weight), g.const(_array(layer.bias)), transB=1)


def _moments_linear(g: Graph, x: str, linear: nn.Module) -> str:
    """The linear model: moments over time (float), moment batch norm, quantized input, float Gemm."""
    from asc.models.moments import MOMENT_NAMES

    if len(MOMENT_NAMES) != 5:
        raise AscError(f"the CPU int8 export knows 5 moments, the model uses {len(MOMENT_NAMES)}")
    rows = g.op("Squeeze", x, g.shape(1))
    mean = g.op("ReduceMean", rows, axes=[2])
    centred = g.op("Sub", rows, mean)
    variance = g.op("ReduceMean", g.op("Mul", centred, centred), axes=[2])
    inverse = g.op("Pow", g.op("Add", variance, g.const(1e-6)), g.const(-0.5))  # features.moments' eps
    standard = g.op("Mul", centred, inverse)
    square = g.op("Mul", standard, standard)
    fourth = g.op("Mul", square, square)
    higher = [g.op("ReduceMean", g.op("Mul", square, standard), axes=[2]), g.op("ReduceMean", fourth, axes=[2]),
              g.op("ReduceMean", g.op("Mul", fourth, standard), axes=[2])]
    features = g.op("Squeeze", g.op("Concat", mean, variance, *higher, axis=1), g.shape(2))
    scale, shift = _batch_norm(linear.moment_norm, linear.n_features)
    features = g.op("Add", g.op("Mul", features, g.const(scale)), g.const(shift))
    classifier = linear.classifier
    features = g.op("DequantizeLinear", _quantize(g, features, classifier), g.const(_input_scale(classifier)),
                    g.const(ZERO, np.uint8))
    return _gemm(g, features, classifier, linear.n_features)


def _select_bands(g: Graph, x: str, model: nn.Module) -> str:
    """A tandem's kept bands (a Gather on the input) times their feature-selection gains, in float."""
    from asc.models import Tandem

    if isinstance(model, Tandem):
        if model.input_bands.index is not None:
            x = g.op("Gather", x, g.const(model.input_bands.index.cpu().numpy(), np.int64), axis=2)
        if model.input_bands.gain is not None:
            x = g.op("Mul", x, g.const(model.input_bands.gain.cpu().numpy()))
    return x


def _network(g: Graph, x: str, model: nn.Module, frames: int, weights: str) -> str:
    """The logits of a tandem (on its selected bands), a BC-ResNet or a linear model."""
    from asc.models import BCResNet, MomentsLinear, Tandem

    if isinstance(model, Tandem):
        return g.op("Add", _moments_linear(g, x, model.linear), _bcresnet(g, x, model.cnn, frames, weights))
    if isinstance(model, BCResNet):
        return _bcresnet(g, x, model, frames, weights)
    if isinstance(model, MomentsLinear):
        return _moments_linear(g, x, model)
    raise AscError(f"the CPU int8 export knows tandem, bcresnet and linear models, not {type(model).__name__}")


def _tiled(g: Graph, x: str, model: nn.Module, frames: int, classes: int, weights: str) -> str:
    """The network over the batch in tiles of :data:`TILE` clips (see :func:`tiled_loop` for why)."""
    return tiled_loop(g, x, lambda body, tile: _network(body, tile, model, frames, weights), TILE, classes)


def export_onnx_cpu(
    model: nn.Module, example: torch.Tensor, path: Path, calibration: torch.Tensor | None = None,
    weights: str = "uint8",
) -> None:
    """Write the CPU int8 form of the QAT ``model`` as ONNX (opset 17, dynamic batch) to ``path``.

    Input, output and batch axis are those of :func:`~asc.compress.onnx_export.export_onnx`;
    ``example`` fixes the log-mel size ``(1, 1, n_mels, frames)``. ``calibration`` is accepted for a
    uniform interface and not used: every scale comes from the QAT quantizers' ranges, and what QAT
    computes in float stays float, so there is nothing left to calibrate. ``weights``: the transition convs'
    weight type, one of :data:`WEIGHT_TYPES` (int8 runs exactly only with VNNI; see the module's notes).
    """
    import onnx
    from onnx import TensorProto, helper

    del calibration
    if weights not in WEIGHT_TYPES:
        raise AscError(f"weights: {weights!r} is not one of {', '.join(WEIGHT_TYPES)}")
    path = Path(path)
    if not path.parent.is_dir():
        raise AscError(f"{path}: folder {path.parent} does not exist")
    check_calibrated(model)
    _check_every_layer_quantized(model)
    _, _, n_mels, frames = example.shape
    g = Graph()
    logits = _tiled(g, _select_bands(g, INPUT_NAME, model), model, frames, _classes(model), weights)
    g.nodes.append(helper.make_node("Identity", [logits], [OUTPUT_NAME], name=OUTPUT_NAME))
    graph = helper.make_graph(
        g.nodes, CPU_INT8_GRAPH,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 1, n_mels, frames])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", _classes(model)])], g.constants,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="asc")
    helper.set_model_props(proto, {WEIGHTS_KEY: weights})
    onnx.checker.check_model(proto)
    atomic_write(path, proto.SerializeToString(), "cannot write the ONNX file")


def _classes(model: nn.Module) -> int:
    last = model.linear.classifier if hasattr(model, "linear") else getattr(model, "classifier", None)
    return last.out_features if last is not None else model.head.out_channels


def _check_every_layer_quantized(model: nn.Module) -> None:
    """The integer form needs input and weight ranges on every conv and linear layer."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            quantizers = [getattr(module, kind, None) for kind in ("input_quantizer", "weight_quantizer")]
            if not all(q is not None and q.is_enabled and q.amax is not None for q in quantizers):
                raise AscError(f"layer {name} has no enabled input and weight quantizers: "
                               "the CPU int8 export needs a fully quantized (QAT) model")
