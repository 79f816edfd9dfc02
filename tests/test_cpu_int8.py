"""The CPU int8 form (asc.compress.export.cpu_int8): integer kernels in onnxruntime, agreement with the QAT model
through the export gate, refusals, and ``asc export --cpu_out``. Tiny models from test_quantization."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from asc.cli.main import main
from asc.compress import qat as quantization
from asc.compress.checkpoint import network_checkpoint
from asc.compress.export import onnx as onnx_export
from asc.compress.export.cpu_int8 import TILE, export_onnx_cpu
from asc.compress.export.verify import compare
from asc.data.features import FeatureSettings
from asc.errors import AscError
from asc.machine import int8_dot_products
from asc.models import Tandem
from tests.helpers import N_BANDS, N_FRAMES, calibrate, inputs, tandem
from tests.helpers import one_error_line as _error

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # most tests share a QAT-trained model
EXAMPLE = torch.zeros(1, 1, N_BANDS, N_FRAMES)


@pytest.fixture(scope="module")
def qat() -> nn.Module:
    """A calibrated tiny tandem (widths 20, 10, 15, 20, 25: every stage is padded to 8 channels)."""
    return calibrate(tandem()).eval()


def flattened(graph: onnx.GraphProto) -> onnx.GraphProto:
    """``graph`` with the nodes and constants of its subgraphs (the network's tile Loop) in line, in order."""
    nodes, constants = [], list(graph.initializer)
    for node in graph.node:
        nodes.append(node)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                inner = flattened(attribute.g)
                nodes += inner.node
                constants += inner.initializer
    return onnx.helper.make_graph(nodes, graph.name, [], [], constants)


def optimized_graph(path: Path, folder: Path, level: str = "ORT_ENABLE_EXTENDED") -> onnx.GraphProto:
    """The graph onnxruntime runs after its optimizations, subgraphs in line (ORT_ENABLE_EXTENDED: no
    NCHWc-specific nodes; ORT_ENABLE_ALL: the blocked-layout nodes ORT runs on this CPU)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.optimized_model_filepath = str(folder / f"optimized_{level}.onnx")
    options.log_severity_level = 3  # ORT_ENABLE_ALL warns that the saved graph is specific to this CPU
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return flattened(onnx.load(options.optimized_model_filepath).graph)


def test_transition_convs_run_as_qlinearconv_with_uint8_weights(qat: nn.Module, tmp_path: Path) -> None:
    """One integer conv per transition block survives ORT's optimizer, with uint8 weights and zero-point 128:
    int8 weights would take ORT's u8s8 kernels, which saturate on CPUs without VNNI."""
    path = tmp_path / "cpu.onnx"
    export_onnx_cpu(qat, EXAMPLE, path)
    graph = optimized_graph(path, tmp_path)
    integer = [node for node in graph.node if node.op_type == "QLinearConv"]
    transitions = sum(block.transition for block in qat.cnn.modules() if hasattr(block, "transition"))
    assert len(integer) == transitions == 4
    written_graph = flattened(onnx.load(str(path)).graph)
    constants = {init.name: onnx.numpy_helper.to_array(init) for init in written_graph.initializer}
    written = [node for node in written_graph.node if node.op_type == "QLinearConv"]
    assert len(written) == 4
    for node in written:
        weights, zero = constants[node.input[3]], constants[node.input[5]]
        assert weights.dtype == np.uint8 and zero.dtype == np.uint8 and (zero == 128).all()
        assert weights.shape[0] % 8 == 0, "output channels are padded to the NCHWc block"
    assert not any(node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.input[0] in constants
                   for node in graph.node), "weights are stored as codes, not quantized at run time"


def test_cpu_form_passes_the_export_gate_and_keeps_the_interface(qat: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "cpu.onnx"
    export_onnx_cpu(qat, EXAMPLE, path, calibration=inputs(8, 3))
    session = onnx_export.onnx_session(path)
    assert [i.name for i in session.get_inputs()] == [onnx_export.INPUT_NAME]
    assert [o.name for o in session.get_outputs()] == [onnx_export.OUTPUT_NAME]
    x = inputs(256, 9) * 3
    with torch.no_grad():
        reference = qat(x).numpy()
    ours = onnx_export.run_onnx(path, x.numpy())  # batch 256 from a batch-1 example: dynamic batch axis
    agreement = compare(reference, ours, quantized=True)
    assert agreement.correct and agreement.decisive > 200, agreement
    assert agreement.median_difference < 0.02, agreement


def test_the_network_runs_in_tiles_and_every_batch_size_gives_each_clips_own_logits(
        qat: nn.Module, tmp_path: Path) -> None:
    """The batch goes through the network TILE clips at a time (a Loop), and ``run_onnx`` runs it in parts
    on several threads: sizes around and across tile boundaries, with 1-3 threads, give each clip the
    logits it gets alone, and PyTorch's."""
    path = tmp_path / "cpu.onnx"
    export_onnx_cpu(qat, EXAMPLE, path)
    top = onnx.load(str(path)).graph
    loops = [node for node in top.node if node.op_type == "Loop"]
    assert len(loops) == 1 and not any(node.op_type in ("Conv", "QLinearConv") for node in top.node)
    body = flattened(loops[0].attribute[0].g)
    assert sum(node.op_type == "QLinearConv" for node in body.node) == 4
    x = inputs(2 * TILE + 3, 12) * 3
    alone = np.concatenate([onnx_export.run_onnx(path, x[i : i + 1].numpy()) for i in range(len(x))])
    for size in (1, TILE - 1, TILE, TILE + 1, 2 * TILE + 3):
        for threads in (1, 2, 3):  # run_onnx splits the batch in parts of whole tiles, one per thread
            ours = onnx_export.run_onnx(path, x[:size].numpy(), threads=threads)
            np.testing.assert_allclose(ours, alone[:size], atol=1e-5)
    with torch.no_grad():
        assert compare(qat(x).numpy(), alone, quantized=True).median_difference < 0.02


def test_the_frequency_mean_reads_the_blocked_conv_output_without_a_reorder(qat: nn.Module, tmp_path: Path) -> None:
    """The temporal path's mean over frequency is a depthwise conv spanning the bands, which ORT runs on the
    frequency conv's blocked (NCHWc) output directly: no reorder of the full activation for it."""
    path = tmp_path / "cpu.onnx"
    export_onnx_cpu(qat, EXAMPLE, path)
    graph = optimized_graph(path, tmp_path, "ORT_ENABLE_ALL")
    producers = {output: node for node in graph.node for output in node.output}
    kernels = {node.name: next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "kernel_shape")
               for node in graph.node if node.op_type == "Conv"}
    means = [node for node in graph.node if kernels.get(node.name, [0, 0])[0] > 3 and kernels[node.name][1] == 1]
    blocks = sum(hasattr(block, "transition") for block in qat.cnn.modules())
    assert len(means) == blocks == 10
    for node in means:
        source = producers[node.input[0]]
        assert node.domain == source.domain == "com.microsoft.nchwc" and source.op_type == "Conv"


def test_the_ranges_come_from_the_quantizers(tmp_path: Path) -> None:
    """Exported with the CNN's activation ranges 8x too wide (a unit mistake), the form fails the gate."""
    model = calibrate(tandem()).eval()
    x = inputs(128, 4) * 3
    with torch.no_grad():
        reference = model(x).numpy()
    export_onnx_cpu(model, EXAMPLE, tmp_path / "right.onnx")
    assert compare(reference, onnx_export.run_onnx(tmp_path / "right.onnx", x.numpy()), quantized=True).correct
    for name, quantizer in quantization.quantizers(model.cnn):
        if name.endswith("input_quantizer"):
            quantizer.amax = quantizer.amax * 8
    export_onnx_cpu(model, EXAMPLE, tmp_path / "wrong.onnx")
    wrong = compare(reference, onnx_export.run_onnx(tmp_path / "wrong.onnx", x.numpy()), quantized=True)
    assert not wrong.correct, wrong


def test_the_kept_bands_gains_are_in_the_cpu_form(tmp_path: Path) -> None:
    """After feature selection the network scales each kept row by its mask entry (a sign may flip): the CPU
    form multiplies after its Gather, and without that product it would fail the gate."""
    float_model = tandem()
    gains = torch.linspace(-1.5, 2.2, N_BANDS).tolist()
    model = calibrate(Tandem(float_model.linear, float_model.cnn, zero_init=False, n_mels=N_BANDS,
                             bands=range(N_BANDS), gains=gains)).eval()
    export_onnx_cpu(model, EXAMPLE, tmp_path / "gains.onnx")
    nodes = [node.op_type for node in onnx.load(str(tmp_path / "gains.onnx")).graph.node]
    assert nodes[:2] == ["Gather", "Mul"]
    x = inputs(128, 6) * 3
    ours = onnx_export.run_onnx(tmp_path / "gains.onnx", x.numpy())
    with torch.no_grad():
        assert compare(model(x).numpy(), ours, quantized=True).correct
        model.input_bands.gain = None  # the same network reading the rows unscaled
        assert not compare(model(x).numpy(), ours, quantized=True).correct


@pytest.mark.parametrize("part", ["cnn", "linear"])
def test_a_bcresnet_or_linear_model_alone_exports_too(part: str, tmp_path: Path) -> None:
    model = calibrate(getattr(tandem(), part)).eval()
    export_onnx_cpu(model, EXAMPLE, tmp_path / "part.onnx")
    x = inputs(128, 5) * 3
    with torch.no_grad():
        reference = model(x).numpy()
    assert compare(reference, onnx_export.run_onnx(tmp_path / "part.onnx", x.numpy()), quantized=True).correct


def test_float_and_masked_models_and_missing_folders_are_refused(qat: nn.Module, tmp_path: Path) -> None:
    with pytest.raises(AscError, match="not quantized"):
        export_onnx_cpu(tandem(), EXAMPLE, tmp_path / "float.onnx")
    with pytest.raises(AscError, match="missing"):
        export_onnx_cpu(qat, EXAMPLE, tmp_path / "missing" / "cpu.onnx")
    masked = calibrate(tandem()).eval()
    masked.cnn.stages[1][0].resnorm.channel_mask = torch.ones(10, dtype=torch.bool)
    with pytest.raises(AscError, match="pruning masks"):
        export_onnx_cpu(masked, EXAMPLE, tmp_path / "masked.onnx")
    assert not list(tmp_path.glob("*.onnx"))


def save(model: nn.Module, path: Path) -> str:
    """A checkpoint of ``model`` as a stage writes it (QAT ones with their quantizer layout)."""
    checkpoint = network_checkpoint(model, FeatureSettings(n_mels=N_BANDS))
    if quantization.is_quantized(model):
        checkpoint["modelopt_state"] = quantization.modelopt_state(model)
    torch.save(checkpoint, path)
    return str(path)


def test_export_cpu_out(qat: nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = save(qat, tmp_path / "qat.ckpt")
    out, cpu = tmp_path / "model.onnx", tmp_path / "model_cpu.onnx"
    assert main(["export", "--ckpt_path", ckpt, "--out", str(out), "--cpu_out", str(cpu)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("CPU int8 ONNX written")]
    assert len(lines) == 1 and str(cpu.resolve()) in lines[0] and "agree on 100.00 %" in lines[0], lines
    assert cpu.with_suffix(".json").read_text() == out.with_suffix(".json").read_text()  # the front end it needs
    float_ckpt = save(tandem(), tmp_path / "float.ckpt")
    line = _error(capsys, "export", "--ckpt_path", float_ckpt, "--out", str(tmp_path / "f.onnx"), "--cpu_out",
                  str(tmp_path / "f_cpu.onnx"))
    assert "--cpu_out" in line and "float.ckpt is a float checkpoint" in line, line
    assert not (tmp_path / "f.onnx").exists() and not (tmp_path / "f_cpu.onnx").exists()
    line = _error(capsys, "export", "--ckpt_path", ckpt, "--out", str(out), "--cpu_out", str(tmp_path / "no" / "x"))
    assert "--cpu_out: folder" in line and "does not exist" in line, line


def test_run_onnx_splits_only_the_cpu_int8_form_in_parts_of_whole_tiles(qat: nn.Module, tmp_path: Path) -> None:
    """The CPU int8 form's one-thread session takes a batch in up to ``threads`` parts of whole tiles; any other
    file runs whole on onnxruntime's own threads."""
    cpu, qdq = tmp_path / "cpu.onnx", tmp_path / "qdq.onnx"
    export_onnx_cpu(qat, EXAMPLE, cpu)
    onnx_export.export_onnx(qat, EXAMPLE, qdq)
    loaded = onnx_export.loaded_onnx(cpu)
    assert loaded.session.get_session_options().intra_op_num_threads == 1
    assert onnx_export.onnx_session(qdq).get_session_options().intra_op_num_threads == 0  # onnxruntime's default
    assert onnx_export._parts(loaded, 64, 2) == [slice(0, 32), slice(32, 64)]
    assert onnx_export._parts(loaded, 17, 4) == [slice(0, TILE), slice(TILE, 2 * TILE), slice(2 * TILE, 3 * TILE)]
    assert onnx_export._parts(loaded, TILE, 2) == [slice(0, TILE)]
    assert onnx_export._parts(loaded, 64, 1) == [slice(0, 64)]
    assert onnx_export._parts(onnx_export.loaded_onnx(qdq), 64, 2) == [slice(0, 64)]


def written_qlinearconv_weights(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight codes, their zero-points) of every QLinearConv in the written file."""
    graph = flattened(onnx.load(str(path)).graph)
    constants = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "QLinearConv"]
    return [(constants[node.input[3]], constants[node.input[5]]) for node in convs]


@pytest.mark.skipif(not int8_dot_products(), reason="int8 weights run exactly only on a CPU with VNNI")
def test_int8_weights_give_the_uint8_forms_logits_where_the_cpu_has_vnni(qat: nn.Module, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    """The same integer sums with the weights' codes shifted by 128: VNNI's u8s8 dot products are exact."""
    portable, fast = tmp_path / "u8.onnx", tmp_path / "s8.onnx"
    export_onnx_cpu(qat, EXAMPLE, portable)
    export_onnx_cpu(qat, EXAMPLE, fast, weights="int8")
    for (codes, zero), (u8_codes, _) in zip(written_qlinearconv_weights(fast), written_qlinearconv_weights(portable),
                                            strict=True):
        assert codes.dtype == np.int8 and zero.dtype == np.int8 and not zero.any()
        np.testing.assert_array_equal(codes.astype(int) + 128, u8_codes)
    assert onnx.load(str(fast)).metadata_props[0].value == "int8"
    x = inputs(2 * TILE + 3, 4).numpy() * 3
    np.testing.assert_allclose(onnx_export.run_onnx(fast, x), onnx_export.run_onnx(portable, x), atol=1e-5)
    ckpt = save(qat, tmp_path / "qat.ckpt")
    assert main(["export", "--ckpt_path", ckpt, "--out", str(tmp_path / "m.onnx"), "--cpu_out",
                 str(tmp_path / "m_cpu.onnx"), "--cpu_weights", "int8"]) == 0
    assert "agree on 100.00 %" in capsys.readouterr().out


def test_int8_weights_are_refused_on_a_cpu_without_vnni(qat: nn.Module, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    """Without VNNI onnxruntime's u8s8 kernels saturate and answer wrong without an error: asc refuses such a file
    with one line, and refuses to write one it could not check."""
    fast = tmp_path / "s8.onnx"
    export_onnx_cpu(qat, EXAMPLE, fast, weights="int8")
    monkeypatch.setattr("asc.machine.int8_dot_products", lambda: False)
    monkeypatch.setattr(onnx_export, "int8_dot_products", lambda: False)
    with pytest.raises(AscError, match=r"s8\.onnx: its int8 weights .* VNNI .* --cpu_weights uint8$"):
        onnx_export.run_onnx(fast, inputs(2, 1).numpy())
    portable = tmp_path / "u8.onnx"
    export_onnx_cpu(qat, EXAMPLE, portable)
    assert onnx_export.run_onnx(portable, inputs(2, 1).numpy()).shape == (2, 10)  # uint8 weights run anywhere
    ckpt = save(qat, tmp_path / "qat.ckpt")
    line = _error(capsys, "export", "--ckpt_path", ckpt, "--out", str(tmp_path / "m.onnx"), "--cpu_out",
                  str(tmp_path / "m_cpu.onnx"), "--cpu_weights", "int8")
    assert line.startswith("asc: error: --cpu_weights int8: this CPU has no VNNI"), line
    assert line.endswith("or with --cpu_weights uint8"), line
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m_cpu.onnx").exists()
    with pytest.raises(AscError, match="weights: 'int4' is not one of uint8, int8"):
        export_onnx_cpu(qat, EXAMPLE, tmp_path / "x.onnx", weights="int4")


def test_run_onnx_loads_a_file_again_when_it_is_rewritten(qat: nn.Module, tmp_path: Path) -> None:
    """Sessions are kept per file version: a model exported again under the same name gives the new model's
    logits, never the old session's."""
    path, other = tmp_path / "model.onnx", tmp_path / "other.onnx"
    onnx_export.export_onnx(qat, EXAMPLE, path)
    x = inputs(4, 5).numpy()
    first = onnx_export.run_onnx(path, x)
    changed = copy.deepcopy(qat)
    with torch.no_grad():
        for parameter in changed.parameters():
            parameter.add_(0.5)
    onnx_export.export_onnx(changed, EXAMPLE, other)
    expected = onnx_export.run_onnx(other, x)
    other.replace(path)  # a new file under the old name, as an atomic export writes it
    assert not np.allclose(expected, first)
    assert np.array_equal(onnx_export.run_onnx(path, x), expected)
