"""ONNX vs PyTorch parity (review s48): the same model as an ONNX graph and as a torch module.

* under --precision bf16 the ONNX path emulates CUDA autocast as the torch frontend does: the same cast kernels
  (fp32 inputs of GEMMs cast to bf16, each weight once, its gradient cast back; half inputs of fp32-list ops such
  as LayerNorm and the loss cast to fp32; each activation cast mirrored in backward), LayerNorm in fp32;
* a BatchNorm folded into a conv (eval-mode export) has no conv bias-gradient reduction on top of the synthesized
  BatchNorm backward (beta's gradient);
* a graph with no Dropout node says so (an eval-mode export drops it);
* MatMul + bias Add is one GEMM record (one kernel: torch's addmm), the add's FLOPs in it;
* a tied LM head's weight gradient is added into the embedding's (one add over the [V, d] gradient);
* a one-element weight / bias (a [1] classifier bias) is a parameter; a one-element scalar constant is not.

Graphs are hand-built with onnx.helper; expected values by hand (in each test).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from wattlint.frontends.onnx import analyze_onnx
from wattlint.types import OpKind, Phase, Status

F = TensorProto.FLOAT
RNG = np.random.default_rng(0)


def _init(name, shape):
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name)


def _save(tmp_path, nodes, inputs, outputs, inits, name="m"):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    p = tmp_path / f"{name}.onnx"
    onnx.save(m, str(p))
    return p


def _mlp(tmp_path):
    """x [2, 4, 16] -> Linear(16, 32) -> LayerNorm(32) -> Linear(32, 10) -> logits [2, 4, 10] (MatMul + bias Add)."""
    nodes = [helper.make_node("MatMul", ["x", "l1.weight"], ["h"], name="/l1/MatMul"),
             helper.make_node("Add", ["h", "l1.bias"], ["h1"], name="/l1/Add"),
             helper.make_node("LayerNormalization", ["h1", "ln.weight", "ln.bias"], ["n"], axis=-1,
                              name="/ln/LayerNormalization"),
             helper.make_node("MatMul", ["n", "l2.weight"], ["o"], name="/l2/MatMul"),
             helper.make_node("Add", ["o", "l2.bias"], ["logits"], name="/l2/Add")]
    inits = [_init("l1.weight", (16, 32)), _init("l1.bias", (32,)), _init("ln.weight", (32,)),
             _init("ln.bias", (32,)), _init("l2.weight", (32, 10)), _init("l2.bias", (10,))]
    return _save(tmp_path, nodes, [helper.make_tensor_value_info("x", F, [2, 4, 16])],
                 [helper.make_tensor_value_info("logits", F, [2, 4, 10])], inits, "mlp")


def _casts(g, *, loss=True):
    """(phase, bytes read, bytes written) of the autocast cast records; ``loss=False``: without the loss's (module
    ''), which differ by the loss each frontend assumes (cross-entropy here, a sum of the outputs for torch)."""
    return sorted((r.phase.value, r.bytes_read, r.bytes_written) for r in g.records
                  if r.status is Status.HANDLED and "_to_copy" in r.op and (loss or r.module))


# ---- 1. autocast casts ------------------------------------------------------------------------------------------

def test_bf16_autocast_casts_by_hand(tmp_path):
    g = analyze_onnx(_mlp(tmp_path), precision="bf16")
    # forward: x (128 elems) fp32->bf16; l1.weight (512), l1.bias (32); LayerNorm input (256) bf16->fp32; its fp32
    # output (256) -> bf16 for the second GEMM; l2.weight (320), l2.bias (10); the logits (80) bf16->fp32 (loss)
    fwd = [(128, 4, 2), (512, 4, 2), (32, 4, 2), (256, 2, 4), (256, 4, 2), (320, 4, 2), (10, 4, 2), (80, 2, 4)]
    # backward: weight gradients cast back (512, 320); the second GEMM's input cast's gradient (256, bf16->fp32);
    # none for the LayerNorm input's cast (its backward writes the gradient in bf16, as torch's does), none for x
    # (no gradient) nor the biases (their gradients are sums written in fp32)
    bwd = [(512, 2, 4), (320, 2, 4), (256, 2, 4)]
    want = sorted([("forward", n * a, n * b) for n, a, b in fwd] + [("backward", n * a, n * b) for n, a, b in bwd])
    assert _casts(g) == want
    ln = [r for r in g.records if r.op == "onnx::LayerNormalization"]
    assert ln and all(r.dtype == "float32" for r in ln)
    mm = [r for r in g.records if r.op == "onnx::MatMul" and r.phase is Phase.FORWARD]
    assert mm and all(r.dtype == "bfloat16" for r in mm)
    assert any("autocast" in a for a in g.assumptions)


def test_bf16_casts_match_torch_frontend(tmp_path):
    torch = pytest.importorskip("torch")
    from wattlint.frontends.torch import trace

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.ln, self.l2 = torch.nn.Linear(16, 32), torch.nn.LayerNorm(32), torch.nn.Linear(32, 10)

        def forward(self, x):
            return self.l2(self.ln(self.l1(x)))

    t = trace(M(), (torch.randn(2, 4, 16),), precision="bf16")
    o = analyze_onnx(_mlp(tmp_path), precision="bf16")
    assert _casts(o, loss=False) == _casts(t, loss=False)
    assert len(_casts(o, loss=False)) == 10


def test_fp32_has_no_autocast_casts(tmp_path):
    assert _casts(analyze_onnx(_mlp(tmp_path))) == []


# ---- 4. bias add fused into the GEMM ------------------------------------------------------------------------------

def test_bias_add_is_no_kernel_of_its_own(tmp_path):
    g = analyze_onnx(_mlp(tmp_path))
    fwd = [r for r in g.records if r.phase is Phase.FORWARD]
    assert not [r for r in fwd if r.op == "onnx::Add" and r.status is Status.HANDLED]
    mm = [r for r in fwd if r.op == "onnx::MatMul"]
    # [8, 16] @ [16, 32] + bias: 2 x 8 x 32 x 16 + 8 x 32; [8, 32] @ [32, 10] + bias: 2 x 8 x 10 x 32 + 80
    assert [r.flops for r in mm] == [2 * 8 * 32 * 16 + 256, 2 * 8 * 10 * 32 + 80]
    # the bias gradients (sums over the rows) stay
    red = [r for r in g.records if r.phase is Phase.BACKWARD and r.op == "onnx::Add" and r.kind is OpKind.REDUCTION]
    assert len(red) == 2


# ---- 2. folded BatchNorm: no conv bias gradient -------------------------------------------------------------------

def test_folded_batchnorm_conv_has_no_bias_gradient(tmp_path):
    nodes, inits, x = [], [], "x"
    for i, (cin, cout) in enumerate(((3, 8), (8, 8), (8, 16))):
        w, b = f"onnx::Conv_{10 + 2 * i}", f"onnx::Conv_{11 + 2 * i}"  # exporter-made (folded) constants
        inits += [_init(w, (cout, cin, 3, 3)), _init(b, (cout,))]
        nodes += [helper.make_node("Conv", [x, w, b], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x = f"r{i}"
    nodes += [helper.make_node("GlobalAveragePool", [x], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
              helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], transB=1)]
    inits += [_init("fc.weight", (10, 16)), _init("fc.bias", (10,))]
    p = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", F, [2, 3, 8, 8])],
              [helper.make_tensor_value_info("logits", F, [2, 10])], inits, "cnn")
    g = analyze_onnx(p)
    assert g.extra["synthesized_batchnorm"] == 3
    bwd = [r for r in g.records if r.phase is Phase.BACKWARD]
    assert len([r for r in bwd if r.op == "synth::BatchNormalization"]) == 3
    assert not [r for r in bwd if r.op == "onnx::Conv" and r.kind is OpKind.REDUCTION]
    assert len([r for r in bwd if r.op == "onnx::Conv" and r.kind is OpKind.CONV]) == 5  # 3 dW + 2 dX


# ---- 3. no Dropout node --------------------------------------------------------------------------------------------

def test_graph_without_dropout_says_so(tmp_path):
    g = analyze_onnx(_mlp(tmp_path))
    notes = [a for a in g.assumptions if "Dropout" in a]
    assert len(notes) == 1 and "eval-mode export" in notes[0] and "TrainingMode.TRAINING" in notes[0]


def test_graph_with_dropout_has_no_such_note(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Dropout", ["h"], ["logits"])]
    p = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", F, [4, 8])],
              [helper.make_tensor_value_info("logits", F, [4, 10])], [_init("w", (8, 10))], "drop")
    assert not [a for a in analyze_onnx(p).assumptions if "no Dropout node" in a]


# ---- 5. tied LM head: gradient accumulation -------------------------------------------------------------------------

def test_tied_head_gradient_is_added_into_the_embedding(tmp_path):
    emb = RNG.standard_normal((50, 16)).astype(np.float32)
    inits = [numpy_helper.from_array(emb, "wte.weight"),
             numpy_helper.from_array(np.ascontiguousarray(emb.T), "onnx::MatMul_99")]
    nodes = [helper.make_node("Gather", ["wte.weight", "ids"], ["h"]),
             helper.make_node("MatMul", ["h", "onnx::MatMul_99"], ["logits"])]
    p = _save(tmp_path, nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 8])],
              [helper.make_tensor_value_info("logits", F, [2, 8, 50])], inits, "tied")
    g = analyze_onnx(p)
    assert g.model.params == 50 * 16  # one parameter
    acc = [r for r in g.records if r.op == "autograd::accumulate_grad"]
    assert [(r.shapes, r.flops) for r in acc] == [(((50, 16),), 800)]


# ---- 6. one-element parameters -------------------------------------------------------------------------------------

def test_one_element_bias_is_a_parameter(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "cls.weight"], ["h"]),
             helper.make_node("Add", ["h", "cls.bias"], ["y"]),
             helper.make_node("Mul", ["y", "scale"], ["logits"])]
    inits = [_init("cls.weight", (8, 1)), _init("cls.bias", (1,)),
             numpy_helper.from_array(np.array([0.5], np.float32), "scale")]
    p = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", F, [4, 8])],
              [helper.make_tensor_value_info("logits", F, [4, 1])], inits, "one")
    g = analyze_onnx(p)
    assert g.model.params == 9  # 8 weights + the [1] bias; the [1] scale constant is no parameter
