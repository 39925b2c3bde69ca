"""ONNX vs PyTorch parity (the torch-module vs ONNX-export walk): the same model priced the same from either
frontend.

1. a tanh-approximate GELU decomposed by the exporter (``F.gelu(approximate="tanh")``: 9 Mul / Add / Tanh nodes)
   is one GELU kernel, priced as torch prices ``aten.gelu(approximate="tanh")`` (and opset-20
   ``Gelu(approximate="tanh")`` likewise), and so is the dynamo exporter's decomposition (sqrt(2/pi) computed in
   the graph); one written in Python (HF ``gelu_new``: a Pow, sqrt(2/pi) folded; ``gelu_fast``: factored) stays op
   by op, as eager PyTorch runs it;
2. an ONNX ``LayerNormalization`` is priced by the public-fit layernorm model, as torch's native_layer_norm is; RMS /
   group / batch / instance norms stay off that family;
3. the cross-entropy under autocast runs in fp32 on the ONNX path too (log_softmax / NLL bytes at 4 B per logit);
4. the weight gradient of an ``nn.Linear`` weight (read transposed) is oriented as torch's (m = out, n = in);
5. a layout-only Transpose / Reshape of a fused attention's output is the O the attention saved, not a new tensor;
6. ``--precision fp16`` on an fp16 export prints no autocast note;
7. a k-way gradient fan-out is k - 1 add kernels.

Graphs are hand-built with onnx.helper; expected values by hand (in each test).
"""

from __future__ import annotations

import io
import math
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from wattlint.frontends.onnx import analyze_onnx
from wattlint.types import OpKind, OpRecord, Phase

F = TensorProto.FLOAT
RNG = np.random.default_rng(0)
C1 = math.sqrt(2 / math.pi)  # 0.7978845608
C3 = 0.044715


def _init(name, shape, dtype=np.float32):
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(dtype), name)


def _const(name, value, dtype=np.float32):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype=dtype)))


def _save(tmp_path, nodes, inputs, outputs, inits, name="m", opset=17):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    p = tmp_path / f"{name}.onnx"
    onnx.save(m, str(p))
    return p


def _costly(g, phase, kind=None):
    return [r for r in g.records if r.phase is phase and (r.flops or r.bytes) and (kind is None or r.kind is kind)]


# ---- 1. tanh-approximate GELU ----------------------------------------------------------------------------------

def _torch_form(c1=C1, c3=C3, dtype=np.float32):
    """As torch.onnx (TorchScript, opset 17) writes F.gelu(h, approximate="tanh")."""
    return [helper.make_node("Mul", ["h", "h"], ["m1"]), helper.make_node("Mul", ["h", "m1"], ["m2"]),
            _const("c3", c3, dtype), helper.make_node("Mul", ["c3", "m2"], ["m3"]),
            helper.make_node("Add", ["h", "m3"], ["a1"]), _const("c1", c1, dtype),
            helper.make_node("Mul", ["c1", "a1"], ["m4"]), helper.make_node("Tanh", ["m4"], ["t"]),
            _const("one", 1.0, dtype), helper.make_node("Add", ["one", "t"], ["a2"]),
            helper.make_node("Mul", ["h", "a2"], ["m5"]), _const("half", 0.5, dtype),
            helper.make_node("Mul", ["half", "m5"], ["g"])]


def _dynamo_form(cube="pow"):
    """As the dynamo exporter (onnxscript torchlib, opset < 20) writes F.gelu(h, approximate="tanh") unfolded:
    x^3 a Pow (or Muls), sqrt(2/pi) computed in the graph as Sqrt(CastLike(Div(2, pi), x))."""
    x3 = ([_const("three", 3.0), helper.make_node("Pow", ["h", "three"], ["m2"])] if cube == "pow" else
          [helper.make_node("Mul", ["h", "h"], ["m1"]), helper.make_node("Mul", ["m1", "h"], ["m2"])])
    return [*x3, _const("c3", C3), helper.make_node("Mul", ["c3", "m2"], ["m3"]),
            helper.make_node("Add", ["h", "m3"], ["a1"]), _const("two", 2.0), _const("pi", math.pi),
            helper.make_node("Div", ["two", "pi"], ["tp"]), helper.make_node("CastLike", ["tp", "h"], ["tpc"]),
            helper.make_node("Sqrt", ["tpc"], ["c1"]), helper.make_node("Mul", ["c1", "a1"], ["m4"]),
            helper.make_node("Tanh", ["m4"], ["t"]), _const("one", 1.0), helper.make_node("Add", ["t", "one"], ["a2"]),
            helper.make_node("Mul", ["h", "a2"], ["m5"]), _const("half", 0.5), helper.make_node("Mul", ["half", "m5"], ["g"])]


def _hf_form():
    """HF gelu_new: 0.5 * x * (1.0 + tanh(sqrt(2 / pi) * (x + 0.044715 * pow(x, 3.0))))."""
    return [_const("three", 3.0), helper.make_node("Pow", ["h", "three"], ["p"]), _const("c3", C3),
            helper.make_node("Mul", ["c3", "p"], ["m3"]), helper.make_node("Add", ["h", "m3"], ["a1"]),
            _const("c1", C1), helper.make_node("Mul", ["c1", "a1"], ["m4"]), helper.make_node("Tanh", ["m4"], ["t"]),
            _const("half", 0.5), helper.make_node("Mul", ["half", "h"], ["hh"]), _const("one", 1.0),
            helper.make_node("Add", ["one", "t"], ["a2"]), helper.make_node("Mul", ["hh", "a2"], ["g"])]


def _factored_form():
    """HF gelu_fast (FastGELUActivation), the constants as initializers: c1 * x * (1 + c3 * x * x); the outer
    product ordered (x * (t + 1)) * 0.5."""
    return [helper.make_node("Mul", ["h", "h"], ["xx"]), helper.make_node("Mul", ["xx", "k3"], ["m3"]),
            helper.make_node("Add", ["k1", "m3"], ["a1"]), helper.make_node("Mul", ["h", "kc"], ["cx"]),
            helper.make_node("Mul", ["cx", "a1"], ["m4"]), helper.make_node("Tanh", ["m4"], ["t"]),
            helper.make_node("Add", ["t", "k1"], ["a2"]), helper.make_node("Mul", ["h", "a2"], ["m5"]),
            helper.make_node("Mul", ["m5", "kh"], ["g"])]


_FACTORED_INITS = [numpy_helper.from_array(np.array(v, np.float32), n)
                   for n, v in (("k3", C3), ("k1", 1.0), ("kc", C1), ("kh", 0.5))]


def _gelu_model(tmp_path, act_nodes, name, extra_inits=(), opset=17, also_out=None, dtype=np.float32):
    """x [2, 4, 16] -> MatMul(W1 [16, 32]) -> h [2, 4, 32] -> GELU -> g -> MatMul(W2 [32, 10]) -> logits."""
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="/fc/MatMul"), *act_nodes,
             helper.make_node("MatMul", ["g", "w2"], ["logits"], name="/out/MatMul")]
    outs = [helper.make_tensor_value_info("logits", et, [2, 4, 10])]
    if also_out:
        outs.append(helper.make_tensor_value_info(also_out, et, [2, 4, 32]))
    return _save(tmp_path, nodes, [helper.make_tensor_value_info("x", et, [2, 4, 16])], outs,
                 [_init("w1", (16, 32), dtype), _init("w2", (32, 10), dtype), *extra_inits], name, opset)


N = 2 * 4 * 32  # elements of h


def _check_fused_gelu(g):
    # by hand: one forward kernel of 10 FLOPs per element (costs' gelu_tanh, as torch's aten.gelu(approximate=
    # "tanh")), reading h and writing g (256 x 4 B each); one backward kernel of 2 x 8 FLOPs per element (torch's
    # gelu_backward) reading dy and h, writing dh; nothing else elementwise, no gradient fan-out add into h
    fe = _costly(g, Phase.FORWARD, OpKind.ELEMENTWISE)
    be = _costly(g, Phase.BACKWARD, OpKind.ELEMENTWISE)
    assert [(r.flops, r.bytes_read, r.bytes_written, r.shapes) for r in fe] == [(10 * N, 4 * N, 4 * N, ((2, 4, 32),))]
    assert [(r.flops, r.bytes_read, r.bytes_written) for r in be] == [(16 * N, 8 * N, 4 * N)]
    assert not [r for r in g.records if r.op == "autograd::accumulate_grad"]
    assert any(a.startswith("1 tanh-GELU decompositions") for a in g.assumptions)


@pytest.mark.parametrize("form", ["torch", "bf16_constants", "dynamo_pow", "dynamo_muls"])
def test_tanh_gelu_decomposition_is_one_gelu_kernel(tmp_path, form):
    if form == "torch":
        p = _gelu_model(tmp_path, _torch_form(), form)
    elif form.startswith("dynamo"):  # sqrt(2/pi) computed in the graph: the dynamo exporter's F.gelu
        p = _gelu_model(tmp_path, _dynamo_form(form[7:]), form)
    else:  # the constants as a bf16 export rounds them (8 bits of mantissa): 0.0446777..., 0.796875
        p = _gelu_model(tmp_path, _torch_form(0.796875, 0.044677734375), form)
    g = analyze_onnx(p)
    _check_fused_gelu(g)
    # the same as opset 20's Gelu(approximate="tanh") node (records and activations)
    q = _gelu_model(tmp_path, [helper.make_node("Gelu", ["h"], ["g"], approximate="tanh")], "native", opset=20)
    gq = analyze_onnx(q)
    key = lambda gr: sorted((r.phase.value, r.kind.value, r.flops, r.bytes_read, r.bytes_written)  # noqa: E731
                            for r in gr.records if r.flops or r.bytes)
    assert key(g) == key(gq)
    assert g.extra["activation_bytes"] == gq.extra["activation_bytes"]


def test_bf16_export_tanh_gelu_is_one_gelu_kernel(tmp_path):
    """A bf16 export's constants are TensorProto.BFLOAT16 (read as ml_dtypes.bfloat16): before, none read as a
    constant and the 9 nodes were 9 kernels. By hand: one forward kernel of 10 FLOPs per element reading h and
    writing g (256 x 2 B each), as opset 20's Gelu(approximate="tanh") on the same bf16 graph."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf = ml_dtypes.bfloat16
    p = _gelu_model(tmp_path, _torch_form(dtype=bf), "bf16", dtype=bf)
    assert {n.attribute[0].t.data_type for n in onnx.load(str(p)).graph.node if n.op_type == "Constant"} == {
        TensorProto.BFLOAT16}
    g = analyze_onnx(p)
    fe = _costly(g, Phase.FORWARD, OpKind.ELEMENTWISE)
    assert [(r.flops, r.bytes_read, r.bytes_written) for r in fe] == [(10 * N, 2 * N, 2 * N)]
    assert any(a.startswith("1 tanh-GELU decompositions") for a in g.assumptions)
    q = _gelu_model(tmp_path, [helper.make_node("Gelu", ["h"], ["g"], approximate="tanh")], "bf16_native",
                    opset=20, dtype=bf)
    key = lambda gr: sorted((r.phase.value, r.kind.value, r.flops, r.bytes_read, r.bytes_written)  # noqa: E731
                            for r in gr.records if r.flops or r.bytes)
    assert key(g) == key(analyze_onnx(q))


@pytest.mark.parametrize("form", ["hf", "factored"])
def test_python_tanh_gelu_stays_op_by_op(tmp_path, form):
    """HF gelu_new / nanoGPT's NewGELU (x^3 a torch.pow, sqrt(2/pi) folded by Python's math.sqrt) and HF gelu_fast
    (factored: x * 0.7978845608 * (1 + 0.044715 * x * x)): eager PyTorch runs their ~8 ops as ~8 kernels and the
    PyTorch path prices them so (HF GPT-2 in benchmarks/onnx_accuracy.py); matched (the same value) but not fused,
    noted. By hand: gelu_new 2 Add, 4 Mul, Pow, Tanh; gelu_fast 2 Add, 6 Mul, Tanh (as torch's trace of it)."""
    if form == "hf":
        g = analyze_onnx(_gelu_model(tmp_path, _hf_form(), form))
        want = ["onnx::Add"] * 2 + ["onnx::Mul"] * 4 + ["onnx::Pow", "onnx::Tanh"]
    else:
        g = analyze_onnx(_gelu_model(tmp_path, _factored_form(), form, _FACTORED_INITS))
        want = ["onnx::Add"] * 2 + ["onnx::Mul"] * 6 + ["onnx::Tanh"]
    ops = sorted(r.op for r in _costly(g, Phase.FORWARD, OpKind.ELEMENTWISE))
    assert ops == want
    assert any(a.startswith("1 tanh-GELUs written in Python") for a in g.assumptions)
    assert not any("tanh-GELU decompositions" in a for a in g.assumptions)


@pytest.mark.parametrize("e", [float("nan"), float("inf")])
def test_pow_with_non_finite_exponent_estimates(tmp_path, e):
    """Tanh(Pow(h, nan)): the tanh-GELU search read the exponent as an integer (ValueError / OverflowError, exit 3
    "internal error"); now no match, and the estimate runs (rc 0), the Pow and the Tanh kernels of their own."""
    from wattlint.cli import main

    p = _gelu_model(tmp_path, [_const("e", e), helper.make_node("Pow", ["h", "e"], ["p"]),
                               helper.make_node("Tanh", ["p"], ["g"])], "nanpow")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["estimate", str(p), "--steps", "1"])
    assert rc == 0, err.getvalue()
    ops = sorted(r.op for r in _costly(analyze_onnx(p), Phase.FORWARD, OpKind.ELEMENTWISE))
    assert ops == ["onnx::Pow", "onnx::Tanh"]


@pytest.mark.parametrize("bad", ["constant", "shared"])
def test_near_tanh_gelu_is_not_fused(tmp_path, bad):
    """Matched exactly: another cubic coefficient (0.05) is not GELU; a partial product read elsewhere too (a graph
    output) is materialized: neither is fused, the Tanh stays a kernel of its own."""
    if bad == "constant":
        p = _gelu_model(tmp_path, _torch_form(C1, 0.05), bad)
    else:
        p = _gelu_model(tmp_path, _torch_form(), bad, also_out="a1")
    g = analyze_onnx(p)
    assert [r.op for r in _costly(g, Phase.FORWARD) if r.op == "onnx::Tanh"] == ["onnx::Tanh"]
    assert not any("tanh-GELU" in a for a in g.assumptions)


def test_opset20_gelu_reads_its_approximate_attribute(tmp_path):
    # by hand: Gelu (erf) 8 FLOPs per element, Gelu(approximate="tanh") 10, as torch's gelu / gelu_tanh; backward
    # 2 x 8 either way (torch's gelu_backward)
    for approx, per in (("none", 8), ("tanh", 10)):
        p = _gelu_model(tmp_path, [helper.make_node("Gelu", ["h"], ["g"], approximate=approx)], approx, opset=20)
        g = analyze_onnx(p)
        assert [r.flops for r in _costly(g, Phase.FORWARD, OpKind.ELEMENTWISE)] == [per * N]
        assert [r.flops for r in _costly(g, Phase.BACKWARD, OpKind.ELEMENTWISE)] == [16 * N]


def test_tanh_gelu_matches_torch(tmp_path):
    """The walk's reproducer: Linear(768, 3072) -> gelu(tanh) -> Linear(3072, 10) at [8, 256, 768] was 2105 us from
    torch and 3276 us from its ONNX export (9 kernels + fan-out adds); the GELU kernels are now the same records."""
    torch = pytest.importorskip("torch")
    import warnings

    import wattlint

    class G(torch.nn.Module):
        def __init__(s):
            super().__init__()
            s.fc, s.out = torch.nn.Linear(64, 256), torch.nn.Linear(256, 10)

        def forward(s, x):
            return s.out(torch.nn.functional.gelu(s.fc(x), approximate="tanh")).mean(1)

    m, x = G(), torch.zeros(4, 32, 64)
    p = tmp_path / "g.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), str(p), input_names=["x"], output_names=["logits"], opset_version=17,
                          dynamo=False, training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    et = wattlint.estimate(m, inputs={"x": x}, gpu="a100-sxm4-80gb", steps=1, lint=False)
    eo = wattlint.estimate(str(p), gpu="a100-sxm4-80gb", steps=1, lint=False)

    def gelu(e):
        return sorted((r.phase.value, r.flops, r.bytes_read, r.bytes_written, round(t, 12))
                      for r, t in zip(e.graph.records, e.op_times_s)
                      if r.kind is OpKind.ELEMENTWISE and r.flops and r.bytes_read == r.bytes_written * (
                          2 if r.phase is Phase.BACKWARD else 1) and r.bytes_written == 4 * 4 * 32 * 256)

    assert len(gelu(et)) == 2 and gelu(et) == gelu(eo)
    assert et.graph.extra["activation_bytes"] == pytest.approx(eo.graph.extra["activation_bytes"], rel=1e-3)


# ---- 2. LayerNorm family ----------------------------------------------------------------------------------------

def _rec(op, mtype, kind=OpKind.NORM):
    x = (64, 768)
    return OpRecord(op=op, kind=kind, module="n", phase=Phase.FORWARD, dtype="float32", shapes=(x,),
                    flops=7 * 64 * 768, bytes_read=4 * 64 * 768, bytes_written=4 * 64 * 768, module_type=mtype)


def test_layer_norm_family_from_either_frontend():
    from wattlint.energy.public_fit import family
    from wattlint.hardware import load_gpus

    gpu = load_gpus()["a100-sxm4-80gb"]
    # torch's native_layer_norm (as before), ONNX LayerNormalization (the record the walk saw on the prior), a
    # decomposed LayerNorm the ONNX frontend fused (priced on its last node, an Add, in a LayerNorm module), the
    # LayerNormalization of a module of another type (F.layer_norm in a block)
    for op, mt in (("aten.native_layer_norm.default", "LayerNorm"),
                   ("aten.native_layer_norm_backward.default", "LayerNorm"),
                   ("onnx::LayerNormalization", "LayerNorm"), ("onnx::Add", "LayerNorm"),
                   ("onnx::LayerNormalization", "Block")):
        assert family(_rec(op, mt), gpu, "fp32") == "layernorm", (op, mt)
    # the other norms do not move: RMS (torch's fused one, ONNX's, one in a class named LayerNorm), group, batch,
    # instance, ONNX Runtime's SkipLayerNormalization (a residual add fused in), a norm-free LayerNorm-module record
    for op, mt, kind in (("aten._fused_rms_norm.default", "RMSNorm", OpKind.NORM),
                         ("aten._fused_rms_norm.default", "LayerNorm", OpKind.NORM),
                         ("onnx::RMSNormalization", "RMSNorm", OpKind.NORM),
                         ("com.microsoft::SimplifiedLayerNormalization", "RMSNorm", OpKind.NORM),
                         ("com.microsoft::SkipLayerNormalization", "LayerNorm", OpKind.NORM),
                         ("aten.native_group_norm.default", "GroupNorm", OpKind.NORM),
                         ("onnx::InstanceNormalization", "InstanceNormalization", OpKind.NORM),
                         ("onnx::Add", "GroupNorm", OpKind.NORM),
                         ("aten.native_batch_norm.default", "BatchNorm2d", OpKind.NORM),
                         ("aten.native_batch_norm.default", "InstanceNorm1d", OpKind.NORM),
                         ("onnx::BatchNormalization", "BatchNorm", OpKind.NORM),
                         ("aten.pow.Tensor_Scalar", "LlamaRMSNorm", OpKind.ELEMENTWISE)):
        assert family(_rec(op, mt, kind), gpu, "fp32") != "layernorm", (op, mt)


def test_onnx_layernorm_priced_as_torch(tmp_path):
    """The walk's reproducer: nn.LayerNorm(768) at [8, 256, 768]: torch 39.8 / 56.0 us (public fit), ONNX 13.6 / 17.3
    us (the prior). The same records now get the same times."""
    torch = pytest.importorskip("torch")
    import warnings

    import wattlint

    class L(torch.nn.Module):
        def __init__(s):
            super().__init__()
            s.ln, s.out = torch.nn.LayerNorm(768), torch.nn.Linear(768, 10)

        def forward(s, x):
            return s.out(s.ln(x)).mean(1)

    m, x = L(), torch.zeros(8, 256, 768)  # large enough to be past the launch floor
    p = tmp_path / "l.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), str(p), input_names=["x"], output_names=["logits"], opset_version=17,
                          dynamo=False, training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    times = []
    for e in (wattlint.estimate(m, inputs={"x": x}, gpu="a100-sxm4-80gb", steps=1, lint=False),
              wattlint.estimate(str(p), gpu="a100-sxm4-80gb", steps=1, lint=False)):
        times.append([(r.phase.value, r.flops, r.bytes, round(t, 12)) for r, t in zip(e.graph.records, e.op_times_s)
                      if r.kind is OpKind.NORM])
    assert len(times[0]) == 2 and times[0] == times[1]


# ---- 3. the loss under autocast ---------------------------------------------------------------------------------

def test_loss_under_autocast_runs_in_fp32(tmp_path):
    # x [8, 16] @ W [16, 32] -> logits [8, 32], --precision bf16: the bf16 logits cast to fp32, then log_softmax /
    # nll_loss and their backward in fp32, as torch's autocast runs F.cross_entropy. By hand (costs.softmax over
    # 8 x 32 = 256 logits): log_softmax reads and writes 256 x 4 B = 1024 B each; its backward reads y and dy
    # (2048 B) and writes 1024 B; nll_loss_backward writes the dense 1024 B gradient. Before: bf16, half of each.
    nodes = [helper.make_node("MatMul", ["x", "w"], ["logits"], name="/fc/MatMul")]
    p = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", F, [8, 16])],
              [helper.make_tensor_value_info("logits", F, [8, 32])], [_init("w", (16, 32))], "loss")
    g = analyze_onnx(p, precision="bf16")
    recs = {r.op: r for r in g.records if r.op.startswith("loss::")}
    assert {op: r.dtype for op, r in recs.items()} == dict.fromkeys(
        ("loss::log_softmax", "loss::nll_loss", "loss::nll_loss_backward", "loss::log_softmax_backward"), "float32")
    assert (recs["loss::log_softmax"].bytes_read, recs["loss::log_softmax"].bytes_written) == (1024, 1024)
    assert (recs["loss::log_softmax_backward"].bytes_read, recs["loss::log_softmax_backward"].bytes_written) == \
        (2048, 1024)
    assert recs["loss::nll_loss_backward"].bytes_written == 1024
    # the logits themselves are bf16 (2 B each, as torch's logits.element_size() under autocast)
    assert g.extra["loss_logits_bytes"] == 2
    assert [r.bytes_read for r in g.records if r.op == "autocast::_to_copy" and r.shapes == ((8, 32),)] == [512]


# ---- 4. weight-gradient GEMM orientation ----------------------------------------------------------------------

def _dw(g):
    return [dict(r.dims) for r in g.records if r.phase is Phase.BACKWARD and r.kind is OpKind.MATMUL]


def test_linear_weight_gradient_oriented_as_torch(tmp_path):
    # h [2, 4, 16] (a graph input: no input gradient) @ W^T, W [32, 16] as nn.Linear stores it: torch computes dW =
    # grad_out^T @ h, an [32, 8] x [8, 16] GEMM: m = 32 (out), n = 16 (in), k = 8 rows; 2 x 32 x 16 x 8 FLOPs
    nodes = [helper.make_node("Transpose", ["fc.weight"], ["wt"], perm=[1, 0], name="/fc/Transpose"),
             helper.make_node("MatMul", ["h", "wt"], ["logits"], name="/fc/MatMul")]
    ins = [helper.make_tensor_value_info("h", F, [2, 4, 16])]
    outs = [helper.make_tensor_value_info("logits", F, [2, 4, 32])]
    g = analyze_onnx(_save(tmp_path, nodes, ins, outs, [_init("fc.weight", (32, 16))], "lin"))
    assert _dw(g) == [{"b": 1, "m": 32, "n": 16, "k": 8}]
    assert [r.flops for r in g.records if r.phase is Phase.BACKWARD and r.kind is OpKind.MATMUL] == [2 * 32 * 16 * 8]
    # an exporter-folded transposed weight (onnx::MatMul_N [16, 32]) is the same nn.Linear weight
    nodes = [helper.make_node("MatMul", ["h", "onnx::MatMul_7"], ["logits"], name="/fc/MatMul")]
    g = analyze_onnx(_save(tmp_path, nodes, ins, outs, [_init("onnx::MatMul_7", (16, 32))], "folded"))
    assert _dw(g) == [{"b": 1, "m": 32, "n": 16, "k": 8}]
    # HF Conv1D (x @ W, W [in, out] read as it is): torch's addmm backward is x^T @ grad_out: m = 16, n = 32
    nodes = [helper.make_node("MatMul", ["h", "c_fc.weight"], ["logits"], name="/c_fc/MatMul")]
    g = analyze_onnx(_save(tmp_path, nodes, ins, outs, [_init("c_fc.weight", (16, 32))], "conv1d"))
    assert _dw(g) == [{"b": 1, "m": 16, "n": 32, "k": 8}]


def test_gemm_weight_gradient_oriented_as_torch(tmp_path):
    # Gemm(x [8, 16], W [10, 16], transB=1) is nn.Linear on a 2-D input: dW = grad_out^T @ x, m = 10, n = 16, k = 8;
    # with transB=0 (W [16, 10]) x^T @ grad_out: m = 16, n = 10
    for tb, shape, want in ((1, (10, 16), {"b": 1, "m": 10, "n": 16, "k": 8}),
                            (0, (16, 10), {"b": 1, "m": 16, "n": 10, "k": 8})):
        nodes = [helper.make_node("Gemm", ["x", "w"], ["logits"], transB=tb, name="/fc/Gemm")]
        p = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", F, [8, 16])],
                  [helper.make_tensor_value_info("logits", F, [8, 10])], [_init("w", shape)], f"gemm{tb}")
        assert _dw(analyze_onnx(p)) == [want]


# ---- 5. fused attention output saved once ---------------------------------------------------------------------

def _attention_graph(tmp_path, name, copy_out=False):
    """x [2, 8, 8] (B, S, hidden) -> q, k, v = x @ Wq / Wk / Wv -> [2, 2, 8, 4] (2 heads of 4) -> softmax(q k^T) v ->
    O [2, 2, 8, 4] -> Transpose(0, 2, 1, 3) -> Reshape [2, 8, 8] -> @ Wo -> logits [2, 8, 8]."""
    nodes = [helper.make_node("Constant", [], ["s4"], value=numpy_helper.from_array(np.array([2, 8, 2, 4], np.int64))),
             helper.make_node("Constant", [], ["s3"], value=numpy_helper.from_array(np.array([2, 8, 8], np.int64)))]
    for t in "qkv":
        nodes += [helper.make_node("MatMul", ["x", f"w{t}"], [f"{t}f"], name=f"/attn/{t}/MatMul"),
                  helper.make_node("Reshape", [f"{t}f", "s4"], [f"{t}r"]),
                  helper.make_node("Transpose", [f"{t}r"], [t], perm=[0, 2, 3, 1] if t == "k" else [0, 2, 1, 3])]
    nodes += [helper.make_node("MatMul", ["q", "k"], ["s"], name="/attn/MatMul"),
              helper.make_node("Softmax", ["s"], ["p"], axis=-1, name="/attn/Softmax"),
              helper.make_node("MatMul", ["p", "v"], ["o"], name="/attn/MatMul_1")]
    src = "o"
    if copy_out:  # a real op on O first (O * 2): its output is a tensor of its own
        nodes += [helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.array(2.0, np.float32))),
                  helper.make_node("Mul", ["o", "two"], ["o2"])]
        src = "o2"
    nodes += [helper.make_node("Transpose", [src], ["ot"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["ot", "s3"], ["r"]),
              helper.make_node("MatMul", ["r", "wo"], ["logits"], name="/o_proj/MatMul")]
    return _save(tmp_path, nodes, [helper.make_tensor_value_info("x", F, [2, 8, 8])],
                 [helper.make_tensor_value_info("logits", F, [2, 8, 8])],
                 [_init(f"w{t}", (8, 8)) for t in "qkvo"], name)


def test_fused_attention_output_view_saved_once(tmp_path):
    g = analyze_onnx(_attention_graph(tmp_path, "attn"))
    assert any("1 attention patterns" in a for a in g.assumptions)
    # by hand (fp32): x saved once for the three projections' weight gradients (2 x 8 x 8 x 4 B = 512); the fused
    # attention's q, k, v, O (4 x 2 x 2 x 8 x 4 elements x 4 B = 2048) and its fp32 logsumexp (2 x 2 x 8 x 4 B =
    # 128); o_proj's input is O transposed and reshaped: the same storage (torch's fused attention writes O as
    # [B, S, H, D]), not another 512 B; the loss's fp32 log-probabilities 2 x 8 x 8 x 4 B = 512
    assert g.extra["activation_bytes"] == 512 + 2048 + 128 + 512
    # control: o_proj reading O * 2 (a new tensor) saves it (+ 512 B); the Mul by a constant saves nothing
    gc = analyze_onnx(_attention_graph(tmp_path, "copy", copy_out=True))
    assert gc.extra["activation_bytes"] == 512 + 2048 + 128 + 512 + 512


# ---- 6. the autocast note --------------------------------------------------------------------------------------

def test_fp16_on_fp16_export_has_no_autocast_note(tmp_path):
    for dt, np_dt, name in ((TensorProto.FLOAT16, np.float16, "half"), (F, np.float32, "full")):
        nodes = [helper.make_node("MatMul", ["x", "fc.weight"], ["logits"], name="/fc/MatMul")]
        p = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", dt, [4, 16])],
                  [helper.make_tensor_value_info("logits", dt, [4, 8])], [_init("fc.weight", (16, 8), np_dt)], name)
        g = analyze_onnx(p, precision="fp16")
        autocast = [a for a in g.assumptions if "CUDA autocast emulated" in a]
        o2 = [a for a in g.assumptions if "apex O2-style" in a]
        # an fp16 export runs as exported (apex O2): no autocast casts, so no autocast note; an fp32 one: autocast
        assert (len(autocast), len(o2)) == ((0, 1) if name == "half" else (1, 0))


# ---- 7. gradient fan-out ---------------------------------------------------------------------------------------

def test_three_way_fan_out_is_two_add_kernels(tmp_path):
    # h = x @ W [2, 4, 16] read by three Muls (each needing its gradient): autograd accumulates dh with 2 adds of
    # 128 elements (128 FLOPs, 2 x 512 B read, 512 B written each), two kernels, not one priced twice
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="/fc/MatMul"),
             helper.make_node("Mul", ["h", "h"], ["a"]), helper.make_node("Mul", ["a", "h"], ["logits"])]
    p = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", F, [2, 4, 8])],
              [helper.make_tensor_value_info("logits", F, [2, 4, 16])], [_init("w", (8, 16))], "fan")
    acc = [(r.flops, r.bytes_read, r.bytes_written) for r in analyze_onnx(p).records
           if r.op == "autograd::accumulate_grad"]
    assert acc == [(128, 1024, 512)] * 2
