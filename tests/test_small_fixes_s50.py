"""Session 50 small fixes, each with hand-computed expectations:

1. ONNX: a tensor whose second consumer feeds only a Shape node gets no gradient accumulation (a shape-only read
   carries no gradient), as on the PyTorch path.
2. Reports: ``--group-by depth`` rows say how many modules they merge (``(N modules)``), not ``(xN)`` (which means
   N repeats of one block elsewhere); ``wattlint analyze``'s text title states the total layer count.
3. ``--training-stack megatron``: the fused LayerNorm is priced with a bias only when the traced norm had one.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from wattlint.frontends.onnx import analyze_onnx
from wattlint.stack import megatron
from wattlint.types import CostGraph, ModelInfo, OpKind, OpRecord, Phase

F = TensorProto.FLOAT
RNG = np.random.default_rng(0)


# ---- 1. ONNX: shape-only uses carry no gradient ----------------------------------------------------------------

def _attention_with_shape_read(tmp_path, shape_read: bool):
    """x [2, 16, 64] -> k = Reshape(x @ wk) [2, 16, 4, 16], read by Transpose -> MatMul(q, k^T) (the attention) and,
    with ``shape_read``, by a second Transpose whose output feeds only Shape (its dim 3 scales the scores: the
    exporter's ``/ sqrt(k.size(-1))`` on a dynamic graph). Without it the scale is a constant."""
    def init(name, shape):
        return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name)

    def ints(name, v):
        return numpy_helper.from_array(np.array(v, np.int64), name)

    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q0"]), helper.make_node("Reshape", ["q0", "s4"], ["q1"]),
             helper.make_node("Transpose", ["q1"], ["q"], perm=[0, 2, 1, 3]),
             helper.make_node("MatMul", ["x", "wk"], ["k0"]), helper.make_node("Reshape", ["k0", "s4"], ["k1"]),
             helper.make_node("Transpose", ["k1"], ["kT"], perm=[0, 2, 3, 1]),
             helper.make_node("MatMul", ["x", "wv"], ["v0"]), helper.make_node("Reshape", ["v0", "s4"], ["v1"]),
             helper.make_node("Transpose", ["v1"], ["v"], perm=[0, 2, 1, 3]),
             helper.make_node("MatMul", ["q", "kT"], ["sc"])]
    if shape_read:
        nodes += [helper.make_node("Transpose", ["k1"], ["kh"], perm=[0, 2, 1, 3]),
                  helper.make_node("Shape", ["kh"], ["ks"]), helper.make_node("Gather", ["ks", "i3"], ["d"], axis=0),
                  helper.make_node("Cast", ["d"], ["df"], to=F), helper.make_node("Sqrt", ["df"], ["sd"])]
    nodes += [helper.make_node("Div", ["sc", "sd" if shape_read else "four"], ["sc2"]),
              helper.make_node("Softmax", ["sc2"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["o"]),
              helper.make_node("Transpose", ["o"], ["o1"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["o1", "s3"], ["y"])]
    inits = [init("wq", (64, 64)), init("wk", (64, 64)), init("wv", (64, 64)), ints("s4", [2, 16, 4, 16]),
             ints("s3", [2, 16, 64]), ints("i3", 3), numpy_helper.from_array(np.array(4.0, np.float32), "four")]
    g = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info("x", F, [2, 16, 64])],
                          [helper.make_tensor_value_info("y", F, [2, 16, 64])], inits)
    p = tmp_path / f"attn_{int(shape_read)}.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    return p


def test_shape_only_use_adds_no_gradient_accumulation(tmp_path):
    with_shape = analyze_onnx(_attention_with_shape_read(tmp_path, True))
    plain = analyze_onnx(_attention_with_shape_read(tmp_path, False))
    acc = [r for r in with_shape.records if r.op == "autograd::accumulate_grad"]
    # k1 [2, 16, 4, 16] has one gradient-carrying consumer (the Transpose into the attention MatMul); the other
    # Transpose feeds only Shape. Before the fix it counted as a second use: one add of 2*16*4*16 = 2,048 FLOPs.
    assert acc == []
    bwd = lambda g: sum(r.flops for r in g.records if r.phase is Phase.BACKWARD)  # noqa: E731
    assert bwd(with_shape) == bwd(plain)  # the shape read changes no backward work


def test_a_real_second_use_still_accumulates(tmp_path):
    """Control: k1 read by a second data consumer (an Add into the output) does need the accumulate."""
    p = _attention_with_shape_read(tmp_path, False)
    m = onnx.load(str(p))
    g = m.graph
    y = next(n for n in g.node if n.output[0] == "y")
    y.output[0] = "y0"
    g.node.extend([helper.make_node("Reshape", ["k1", "s3"], ["k3"]), helper.make_node("Add", ["y0", "k3"], ["y"])])
    onnx.save(m, str(p))
    acc = [(r.shapes, r.flops) for r in analyze_onnx(p).records if r.op == "autograd::accumulate_grad"]
    assert acc == [(((2, 16, 4, 16),), 2 * 16 * 4 * 16)]  # one add over k1's 2,048 elements


# ---- 2. reports: depth rows count modules; analyze's title states the total ------------------------------------

def test_depth_rows_say_modules_not_repeats():
    from _estimate_fixtures import mlp_graph
    from wattlint.api import estimate_many
    from wattlint.report import html, markdown, text

    # the MLP has 4 x (layers.i.fc Linear + layers.i.act ReLU) = 8 modules; at depth 1 they are one row "layers"
    ests = estimate_many(mlp_graph(), ["a100"], steps=1)
    t = text.render(ests, group_by="depth", depth=1)
    md = markdown.render(ests, group_by="depth", depth=1)
    h = html.render(ests, group_by="depth", depth=1)
    assert "layers (8 modules)" in t and "`layers (8 modules)`" in md and "<code>layers (8 modules)</code>" in h
    assert not any("(x8)" in r for r in (t, md, h))
    # block grouping keeps (xN): layers.*.fc is 4 repeats of one block's Linear
    assert "layers.*.fc (x4)" in text.render(ests, group_by="block")


def test_analyze_title_states_the_total():
    from _estimate_fixtures import mlp_graph
    from wattlint.report.analysis import render_text

    # modules with records: layers.0-3.fc and layers.0-3.act = 8 (4 + 4); the estimate report's wording
    # "Top N ... (of M)"
    out = render_text(mlp_graph(), top=3)
    assert "Top 3 layers by FLOPs (of 8)" in out


# ---- 3. megatron's fused LayerNorm: a bias only where the traced norm had one ----------------------------------

def _ln_graph(bias: bool):
    """nn.LayerNorm(8, bias=...) over x (2, 4, 8) as the torch frontend records it under bf16 autocast: the fp32
    native_layer_norm (x, weight (8,)[, bias (8,)]) and its backward (only 4 operands recorded: dy, x, mean, rstd)."""
    x, st = (2, 4, 8), (2, 4, 1)
    def rec(op, phase, shapes, flops, read, written):  # noqa: E306
        return OpRecord(op=f"aten.{op}.default", kind=OpKind.NORM, module="ln", phase=phase, dtype="float32",
                        shapes=shapes, flops=flops, bytes_read=read, bytes_written=written, module_type="LayerNorm")
    fwd = rec("native_layer_norm", Phase.FORWARD, (x, (8,), (8,)) if bias else (x, (8,)), 448,
              320 if bias else 288, 320)
    bwd = rec("native_layer_norm_backward", Phase.BACKWARD, (x, x, st, st), 704, 336, 160 if bias else 144)
    return CostGraph(model=ModelInfo(name="t", source="t", format="torch", params=16, trainable_params=16,
                                     param_bytes=64), records=(fwd, bwd), precision="bf16", optimizer="adamw")


def test_fused_layernorm_bias_follows_the_trace():
    # x: n = 2*4*8 = 64 elements of 2 bytes (bf16) = 128 bytes; weight / bias 8 x 2 = 16 bytes each;
    # statistics: 8 rows x (mean + rstd) x 4 bytes (fp32) = 64 bytes
    for bias, fwd_read, bwd_written in ((True, 128 + 16 + 16, 128 + 16 + 16), (False, 128 + 16, 128 + 16)):
        g, _ = megatron(_ln_graph(bias), "bf16", "adamw")
        fwd, = [r for r in g.records if r.op == "fused::layer_norm"]
        bwd, = [r for r in g.records if r.op == "fused::layer_norm_backward"]
        # forward reads x, the weight (+ the bias); writes y (128) + the statistics (64)
        assert (fwd.bytes_read, fwd.bytes_written) == (fwd_read, 128 + 64), bias
        # backward reads dy and x (2 x 128), the weight (16) and the statistics (64); writes dx (128), dweight
        # (16) (+ dbias (16)): the weight / bias known from the forward, as the backward op records neither
        assert (bwd.bytes_read, bwd.bytes_written) == (2 * 128 + 16 + 64, bwd_written), bias
