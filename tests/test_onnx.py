"""ONNX frontend: hand-computed costs of small graphs, symbolic dims, contrib / recurrent / control-flow ops,
weight-free loading, external data, module names, the sys.modules contract and the analyze CLI on examples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from wattlint.energy import system
from wattlint.frontends.onnx import analyze_onnx, scope_to_module
from wattlint.types import InputError, Phase, TensorSpec

ROOT = Path(__file__).resolve().parents[1]
RESNET = ROOT / "examples" / "resnet50.onnx"
GPT2 = ROOT / "examples" / "gpt2-tiny.onnx"
F = TensorProto.FLOAT


def _save(tmp_path, nodes, inputs, outputs, inits=(), name="m.onnx", opset=17, extra_opsets=(), external=True):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])
    if external:  # weight-free: dims only, data "in" a file that does not exist
        for t in m.graph.initializer:
            if t.data_type == F:
                t.ClearField("float_data")
                t.ClearField("raw_data")
                t.data_location = TensorProto.EXTERNAL
                e = t.external_data.add()
                e.key, e.value = "location", name + ".data"
    p = tmp_path / name
    p.write_bytes(m.SerializeToString())
    return p


def _w(name, dims):
    n = 1
    for d in dims:
        n *= d
    return helper.make_tensor(name, F, dims, vals=[0.0] * n)


def _vi(name, dims, t=F):
    return helper.make_tensor_value_info(name, t, dims)


def _fwd(g, op=None):
    return [r for r in g.records if r.phase is Phase.FORWARD and (op is None or r.op == op)]


def _bwd(g, module=None):
    return [r for r in g.records if r.phase is Phase.BACKWARD and (module is None or r.module == module)]


# ---- module names -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,module", [
    ("/encoder/layer.3/attention/self/query/MatMul", "encoder.layer.3.attention.self.query"),
    ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
    ("/layer.0/layer.0.0/Gemm", "layer.0.0"),
    ("/transformer/h.11/mlp/c_fc/Gemm", "transformer.h.11.mlp.c_fc"),
    ("/Relu", ""),
    ("Conv_0", ""),
    ("", ""),
])
def test_scope_to_module(name, module):
    assert scope_to_module(name) == module


# ---- the examples -----------------------------------------------------------------------------------------------

def test_resnet50_example_hand_computed():
    g = analyze_onnx(RESNET)
    assert g.model.format == "onnx" and g.micro_batch == 32
    assert g.inputs == (TensorSpec("input", "float32", (32, 3, 224, 224)),)
    assert g.outputs == (TensorSpec("logits", "float32", (32, 1000)),)
    assert g.params == 25_530_472  # torchvision ResNet-50 with BatchNorm folded into conv biases
    assert g.unsupported() == {}
    conv1 = [r for r in _fwd(g, "onnx::Conv") if r.module == "conv1"]
    assert len(conv1) == 1
    macs = 32 * 64 * 112 * 112 * 3 * 7 * 7
    assert conv1[0].flops == 2 * macs + 32 * 64 * 112 * 112  # + bias
    # the first layer's input is the image: a weight gradient, no input gradient
    b = [r for r in _bwd(g, "conv1") if r.kind.value == "conv"]
    assert [r.flops for r in b] == [2 * macs]
    # layer1.0.conv2 (3x3, 64->64 at 56x56) gets both gradients
    b = [r for r in _bwd(g, "layer1.0.conv2") if r.kind.value == "conv"]
    assert [r.flops for r in b] == [2 * 32 * 64 * 56 * 56 * 64 * 9] * 2
    fc = [r for r in _fwd(g, "onnx::Gemm")]
    assert fc[0].module == "fc" and fc[0].flops == 2 * 32 * 2048 * 1000 + 32 * 1000
    # ~4.1 GMACs per image
    assert 8.1e9 < g.total("forward").flops / 32 < 8.3e9
    assert g.extra["folded_batchnorm"] is True
    assert any("BatchNorm appears folded" in a for a in g.assumptions)
    assert any(a.startswith("loss: cross-entropy on the 1000-way logits") for a in g.assumptions)
    assert g.extra["activation_bytes"] > 1e9
    types = g.module_types()
    assert types["layer4.2.conv3"] == "Conv" and types["fc"] == "Linear"
    assert "layer1.0.relu_1" not in types  # a module called twice keeps its name


def test_resnet50_batch_rebinding_scales_linearly():
    g32 = analyze_onnx(RESNET)
    g8 = analyze_onnx(RESNET, batch_size=8)
    assert g8.micro_batch == 8
    c32 = [r.flops for r in _fwd(g32, "onnx::Conv")]
    c8 = [r.flops for r in _fwd(g8, "onnx::Conv")]
    assert [c // 4 for c in c32] == c8
    assert g8.total("optimizer") == g32.total("optimizer")


def test_gpt2_example_fused_causal_attention():
    g = analyze_onnx(GPT2)
    assert g.unsupported() == {}
    assert any("4 attention patterns" in a and "4 causal" in a for a in g.assumptions)
    att = [r for r in _fwd(g) if r.kind.value == "attention" and r.flops]
    assert len(att) == 4 and att[0].module == "transformer.h.0.attn"
    b, h, s, d = 8, 4, 256, 64
    pairs = s * (s + 1) // 2
    assert att[0].flops == 2 * b * h * pairs * 2 * d + 5 * b * h * pairs
    assert g.seq_len == 256 and g.micro_batch == 8
    assert g.outputs[0].shape == (8, 256, 8192)


# ---- symbolic dims ---------------------------------------------------------------------------------------------

def _lm(tmp_path):
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["h"], name="/wte/Gather"),
             helper.make_node("MatMul", ["h", "w"], ["y"], name="/head/MatMul")]
    return _save(tmp_path, nodes, [_vi("ids", ["batch", "sequence"], TensorProto.INT64)], [_vi("y", None)],
                 [_w("emb", [100, 16]), _w("w", [16, 100])])


def test_symbolic_dims_unbound_name_the_flag(tmp_path):
    p = _lm(tmp_path)
    with pytest.raises(InputError, match=r"symbolic dim 'batch' of input 'ids' is unbound: pass --batch-size"):
        analyze_onnx(p)
    with pytest.raises(InputError, match=r"'sequence'.*--seq-len"):
        analyze_onnx(p, batch_size=4)
    # a dim neither batch nor sequence (an image's height): the --input form alone (it read 'pass --input N')
    img = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="/r/Relu")], [_vi("x", ["b", 3, "h", "w"])],
                [_vi("y", None)], name="img.onnx")
    with pytest.raises(InputError, match=r"^symbolic dim 'h' of input 'x' is unbound: pass --input x=float32\[\.\.\.\] "
                                         r"with every dim$"):
        analyze_onnx(img, batch_size=4)


def test_symbolic_dims_bound(tmp_path):
    p = _lm(tmp_path)
    g = analyze_onnx(p, batch_size=4, seq_len=32)
    assert g.inputs[0].shape == (4, 32) and g.seq_len == 32 and g.micro_batch == 4
    mm = _fwd(g, "onnx::MatMul")[0]
    assert mm.flops == 2 * 4 * 32 * 16 * 100 and mm.module == "head"
    emb = _fwd(g, "onnx::Gather")[0]
    assert emb.kind.value == "embedding"
    # the embedding table is trainable, its indices are not: embedding backward, no input gradient of ids
    assert any(r.op == "onnx::Gather" and r.kind.value == "embedding" for r in _bwd(g))
    g2 = analyze_onnx(p, inputs={"ids": TensorSpec("ids", "int64", (2, 8))})
    assert g2.inputs[0].shape == (2, 8)
    with pytest.raises(InputError, match="not an input"):
        analyze_onnx(p, inputs={"nope": TensorSpec("nope", "int64", (2, 8))})
    with pytest.raises(InputError, match="rank"):
        analyze_onnx(p, inputs={"ids": TensorSpec("ids", "int64", (2, 8, 1))})


# ---- contrib ops (com.microsoft) ------------------------------------------------------------------------------------

MS = helper.make_opsetid("com.microsoft", 1)


def test_contrib_ops_hand_computed(tmp_path):
    b, s, hid, heads = 2, 16, 64, 4
    d = hid // heads
    n = b * s * hid
    nodes = [
        helper.make_node("Attention", ["x", "qkv_w", "qkv_b"], ["a"], name="/attn/Attention", domain="com.microsoft",
                         num_heads=heads),
        helper.make_node("SkipLayerNormalization", ["a", "x", "g", "beta"], ["ln"], name="/ln/SkipLN",
                         domain="com.microsoft"),
        helper.make_node("FastGelu", ["ln"], ["fg"], name="/act/FastGelu", domain="com.microsoft"),
        helper.make_node("BiasGelu", ["fg", "bias"], ["bg"], name="/act2/BiasGelu", domain="com.microsoft"),
        helper.make_node("MultiHeadAttention", ["bg", "bg", "bg"], ["y"], name="/mha/MHA", domain="com.microsoft",
                         num_heads=heads),
    ]
    p = _save(tmp_path, nodes, [_vi("x", [b, s, hid])], [_vi("y", None)],
              [_w("qkv_w", [hid, 3 * hid]), _w("qkv_b", [3 * hid]), _w("g", [hid]), _w("beta", [hid]),
               _w("bias", [hid])], extra_opsets=[MS])
    g = analyze_onnx(p)
    f = {r.op: r for r in _fwd(g)}
    pairs = s * s
    attn = 2 * b * heads * pairs * (d + d) + 5 * b * heads * pairs
    assert f["com.microsoft::Attention"].flops == 2 * b * s * 3 * hid * hid + b * s * 3 * hid + attn
    assert f["com.microsoft::SkipLayerNormalization"].flops == n + 7 * n
    assert f["com.microsoft::FastGelu"].flops == 10 * n
    assert f["com.microsoft::BiasGelu"].flops == 9 * n
    assert f["com.microsoft::MultiHeadAttention"].flops == attn
    assert g.unsupported() == {}
    # attention backward: 2.5x the GEMM FLOPs + softmax gradient; the projection's weight gradient
    bw = [r for r in _bwd(g) if r.op == "com.microsoft::Attention"]
    assert sum(r.flops for r in bw) == (2 * b * heads * pairs * (3 * d + 2 * d) + 6 * b * heads * pairs
                                       + 2 * b * s * 3 * hid * hid)  # no input gradient: x is the graph input


def test_custom_domain_is_unsupported_not_a_crash(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="/r/Relu"),
             helper.make_node("Frobnicate", ["a"], ["b"], name="/f/Frobnicate", domain="acme.ops"),
             helper.make_node("MatMul", ["x", "w"], ["y"], name="/m/MatMul")]
    p = _save(tmp_path, nodes, [_vi("x", [4, 8])], [_vi("y", None), _vi("b", None)], [_w("w", [8, 8])])
    g = analyze_onnx(p)
    assert g.unsupported() == {"acme.ops::Frobnicate": 1}
    assert _fwd(g, "onnx::MatMul")[0].flops == 2 * 4 * 8 * 8
    assert g.status_counts()["unsupported"] == 1


# ---- recurrent ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("op,gates,cell,cell_bwd,bias_grads", [("LSTM", 4, 22 + 4 * 3, 44, 1),
                                                              ("GRU", 3, 20 + 3 * 3, 40, 2),
                                                              ("RNN", 1, 1 + 4, 8, 2)])
def test_recurrent_hand_computed(tmp_path, op, gates, cell, cell_bwd, bias_grads):
    """An LSTM / GRU / RNN node as the kernels cuDNN launches (costs.rnn_direction; the PyTorch frontend traces the
    same records, tests/test_onnx_vs_torch.py): the input projection over all T x B rows, then per step a GEMM
    h W_hh^T and the cell (LSTM / GRU: one fused kernel, its pointwise work + one add per gate element for the
    input, hidden and both biases; RNN: bias in the GEMMs, an add and tanh (4 FLOPs)); backward per step in
    reverse the cell backward (2 x the pointwise work; RNN: tanh's backward) and dh W_hh accumulated into
    dy_{t-1} (+ B x H adds; the last step a plain mm, GRU always accumulates its direct term), then dW_hh and
    dW_ih over all rows and the bias gradients (LSTM: one reduction; GRU: two; RNN: db_hh and db_ih)."""
    seq, batch, inp, hid = 5, 2, 8, 16
    gh = gates * hid
    nodes = [helper.make_node(op, ["x", "W", "R", "B"], ["y"], name=f"/rnn/{op}", hidden_size=hid)]
    p = _save(tmp_path, nodes, [_vi("x", [seq, batch, inp])], [_vi("y", None)],
              [_w("W", [1, gh, inp]), _w("R", [1, gh, hid]), _w("B", [1, 2 * gh])])
    g = analyze_onnx(p)
    rnn_bias = seq * batch * gh if op == "RNN" else 0  # RNN: b_ih in the projection GEMM, b_hh in each step's
    fwd = 2 * seq * batch * gh * inp + seq * (2 * batch * gh * hid + cell * batch * hid) + 2 * rnn_bias
    recs = _fwd(g, f"onnx::{op}")
    assert sum(r.flops for r in recs) == fwd and {r.module for r in recs} == {"rnn"}
    assert len(recs) == 1 + seq * (3 if op == "RNN" else 2)
    assert recs[0].kind.value == "matmul" and recs[0].dim("m") == seq * batch and recs[0].dim("k") == inp
    accumulating = seq if op == "GRU" else seq - 1
    bwd = (seq * (cell_bwd * batch * hid + 2 * batch * gh * hid) + accumulating * batch * hid
           + 2 * gh * hid * seq * batch + 2 * gh * inp * seq * batch + bias_grads * seq * batch * gh)
    bwd_recs = [x for x in _bwd(g) if x.op == f"onnx::{op}"]
    assert sum(x.flops for x in bwd_recs) == bwd
    # one node = one library call = one host launch per phase (energy.system.Launches), as a cuDNN RNN call
    n = system.Launches()
    for x in g.records:
        if x.op == f"onnx::{op}":
            n.add(x, 1.0)
    assert n.n == 2


def _lstm_graph(tmp_path, x_dims, layout=0, transpose=False, embed=False, name="rnn.onnx"):
    """x -> [Gather(emb, x)] -> [Transpose 1,0,2] -> LSTM(layout) -> y, hidden 16 on 8 features."""
    hid, inp = 16, 8
    nodes, src, inits = [], "x", [_w("W", [1, 4 * hid, inp]), _w("R", [1, 4 * hid, hid])]
    x_type = F
    if embed:
        nodes.append(helper.make_node("Gather", ["E", "x"], ["e"], name="/emb/Gather"))
        inits.append(_w("E", [100, inp]))
        src, x_type = "e", TensorProto.INT64
    if transpose:
        nodes.append(helper.make_node("Transpose", [src], ["t"], name="/Transpose", perm=[1, 0, 2]))
        src = "t"
    nodes.append(helper.make_node("LSTM", [src, "W", "R"], ["y"], name="/rnn/LSTM", hidden_size=hid, layout=layout))
    return _save(tmp_path, nodes, [_vi("x", x_dims, x_type)], [_vi("y", None)], inits, name=name)


def test_sequence_first_rnn_inputs_read_the_batch_from_dim_1(tmp_path):
    """Review: an LSTM exported from a batch_first=False module takes [seq, batch, features] (ONNX layout 0): a
    static [50, 4, 8] input was priced as batch 50, and --batch-size 8 replaced the sequence length."""
    p = _lstm_graph(tmp_path, [50, 4, 8])
    g = analyze_onnx(p)
    assert g.micro_batch == 4 and any("batch read from dim 1 of 'x'" in a for a in g.assumptions)
    g8 = analyze_onnx(p, batch_size=8)
    assert g8.micro_batch == 8 and g8.inputs[0].shape == (50, 8, 8)
    # the LSTM's forward FLOPs follow the batch, the sequence stays 50: x 2
    assert _fwd(g8, "onnx::LSTM")[0].flops == 2 * _fwd(g, "onnx::LSTM")[0].flops
    # through an embedding lookup: int64 ids [seq 50, batch 4] (the sequence from dim 0)
    e = analyze_onnx(_lstm_graph(tmp_path, [50, 4], embed=True, name="emb.onnx"))
    assert e.micro_batch == 4 and e.seq_len == 50


@pytest.mark.parametrize("layout,transpose", [(1, False), (0, True)])
def test_batch_first_rnn_inputs_keep_the_batch_in_dim_0(tmp_path, layout, transpose):
    """layout 1 ([batch, seq, features]), or a Transpose before a layout-0 LSTM (how PyTorch exports batch_first=True
    modules): dim 0 stays the batch."""
    p = _lstm_graph(tmp_path, [4, 50, 8], layout=layout, transpose=transpose)
    g = analyze_onnx(p, batch_size=8)
    assert g.micro_batch == 8 and g.inputs[0].shape == (8, 50, 8)
    assert not any("batch read from dim 1" in a for a in g.assumptions)


# ---- control flow -----------------------------------------------------------------------------------------------

def _body_matmul(inputs, outputs, name="body"):
    return helper.make_graph([helper.make_node("MatMul", ["h", "w"], ["h2"], name="/body/MatMul"),
                              helper.make_node("Identity", ["cond_in"], ["cond_out"])] if "cond_in" in
                             [i.name for i in inputs] else
                             [helper.make_node("MatMul", ["h", "w"], ["h2"], name="/body/MatMul")],
                             name, inputs, outputs)


def test_loop_scan_if_count_their_subgraphs(tmp_path):
    mm = 2 * 2 * 8 * 8
    body = _body_matmul([_vi("i", [], TensorProto.INT64), _vi("cond_in", [], TensorProto.BOOL), _vi("h", [2, 8])],
                        [_vi("cond_out", [], TensorProto.BOOL), _vi("h2", [2, 8])])
    trips = helper.make_tensor("M", TensorProto.INT64, [], vals=[3])
    cond = helper.make_tensor("c", TensorProto.BOOL, [], vals=[True])
    loop = helper.make_node("Loop", ["M", "c", "x"], ["y"], name="/loop/Loop", body=body)
    p = _save(tmp_path, [loop], [_vi("x", [2, 8])], [_vi("y", [2, 8])], [trips, cond, _w("w", [8, 8])],
              name="loop.onnx")
    g = analyze_onnx(p)
    assert sum(r.flops for r in _fwd(g, "onnx::MatMul")) == 3 * mm
    # Scan over the leading axis (4 steps), state h
    sbody = helper.make_graph([helper.make_node("MatMul", ["h", "w"], ["h2"], name="/body/MatMul"),
                               helper.make_node("Identity", ["h2"], ["o"])], "sb",
                              [_vi("h", [2, 8]), _vi("xs", [8])], [_vi("h2", [2, 8]), _vi("o", [2, 8])])
    scan = helper.make_node("Scan", ["h0", "seq"], ["hT", "ys"], name="/scan/Scan", body=sbody, num_scan_inputs=1)
    p = _save(tmp_path, [scan], [_vi("h0", [2, 8]), _vi("seq", [4, 8])], [_vi("hT", None), _vi("ys", None)],
              [_w("w", [8, 8])], name="scan.onnx")
    g = analyze_onnx(p)
    assert sum(r.flops for r in _fwd(g, "onnx::MatMul")) == 4 * mm
    # If: the costlier branch
    then = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["t"], name="/then/MatMul")], "then", [],
                             [_vi("t", [2, 8])])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [], [_vi("e", [2, 8])])
    iff = helper.make_node("If", ["cond"], ["y"], name="/if/If", then_branch=then, else_branch=other)
    p = _save(tmp_path, [iff], [_vi("cond", [], TensorProto.BOOL), _vi("x", [2, 8])], [_vi("y", None)],
              [_w("w", [8, 8])], name="if.onnx")
    g = analyze_onnx(p)
    assert sum(r.flops for r in _fwd(g, "onnx::MatMul")) == mm
    assert any("costlier branch" in a for a in g.assumptions)


# ---- external data -------------------------------------------------------------------------------------------------

def _reshape_model(tmp_path, shape_location):
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], vals=[4, 16])
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"], name="/r/Reshape"),
             helper.make_node("MatMul", ["r", "w"], ["y"], name="/m/MatMul")]
    g = helper.make_graph(nodes, "g", [_vi("x", [8, 8])], [_vi("y", None)], [shape, _w("w", [16, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    raw = m.graph.initializer[0]
    data = onnx.numpy_helper.to_array(raw).tobytes()
    raw.ClearField("int64_data")
    raw.ClearField("raw_data")
    raw.data_location = TensorProto.EXTERNAL
    e = raw.external_data.add()
    e.key, e.value = "location", shape_location
    p = tmp_path / "reshape.onnx"
    p.write_bytes(m.SerializeToString())
    return p, data


def test_shape_values_read_from_external_data_inside_the_folder(tmp_path):
    p, data = _reshape_model(tmp_path, "reshape.onnx.data")
    with pytest.raises(InputError, match=r"shape tensor 'shape'.*reshape.onnx.data.*missing"):
        analyze_onnx(p)
    (tmp_path / "reshape.onnx.data").write_bytes(data)
    g = analyze_onnx(p)
    assert _fwd(g, "onnx::MatMul")[0].flops == 2 * 4 * 16 * 4


def test_external_data_outside_the_folder_is_never_read(tmp_path):
    p, data = _reshape_model(tmp_path, "../outside.data")
    (tmp_path.parent / "outside.data").write_bytes(data)
    with pytest.raises(InputError, match=r"outside the model's folder \('../outside.data'\)"):
        analyze_onnx(p)


# ---- precision, optimizer -------------------------------------------------------------------------------------------

def test_precision_and_optimizer(tmp_path):
    p = _lm(tmp_path)
    g32 = analyze_onnx(p, batch_size=4, seq_len=32)
    g16 = analyze_onnx(p, batch_size=4, seq_len=32, precision="bf16")
    m32, m16 = _fwd(g32, "onnx::MatMul")[0], _fwd(g16, "onnx::MatMul")[0]
    assert m16.dtype == "bfloat16" and m16.flops == m32.flops and m16.bytes * 2 == m32.bytes
    assert g16.precision == "bf16"
    sgd = analyze_onnx(p, batch_size=4, seq_len=32, optimizer="sgd")
    params = 100 * 16 + 16 * 100
    assert sgd.params == params
    assert sgd.total("optimizer").flops == 3 * params  # momentum mul + add + update add
    # AdamW foreach passes, FLOPs per element: mul 1, lerp 2, mul 1, addcmul 2, sqrt 2, div 1, add 1, addcdiv 2
    assert g32.total("optimizer").flops == 12 * params


# ---- import hygiene -------------------------------------------------------------------------------------------

def _modules_after(code: str) -> set[str]:
    r = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(m.split('.')[0] for m in "
                                                    "sys.modules)))"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_onnx_path_never_imports_torch_and_symbolic_only_when_needed(tmp_path):
    mods = _modules_after(f"import wattlint\nwattlint.analyze({str(RESNET)!r})")
    assert not {"torch", "onnxruntime", "sympy", "lightgbm"} & mods
    # contrib ops leave shapes to onnxruntime's symbolic inference: sympy comes in, torch still does not
    nodes = [helper.make_node("FastGelu", ["x"], ["a"], name="/g/FastGelu", domain="com.microsoft"),
             helper.make_node("MatMul", ["a", "w"], ["y"], name="/m/MatMul")]
    p = _save(tmp_path, nodes, [_vi("x", [4, 8])], [_vi("y", None)], [_w("w", [8, 8])], extra_opsets=[MS])
    mods = _modules_after(f"from wattlint.frontends.onnx import analyze_onnx\ng = analyze_onnx({str(p)!r})\n"
                          f"assert g.unsupported() == {{}}, g.unsupported()")
    assert "sympy" in mods and "torch" not in mods


# ---- the CLI ----------------------------------------------------------------------------------------------------

def test_analyze_cli_json_on_onnx(run_cli):
    code, out, err = run_cli("analyze", RESNET, "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["schema"] == "wattlint.analysis/1" and doc["model"]["format"] == "onnx"
    schema = ROOT / "src/wattlint/schemas/analysis.schema.json"
    if schema.exists():
        import jsonschema

        jsonschema.validate(doc, json.loads(schema.read_text()))
    names = {(le["name"], le["phase"]) for le in doc["layers"]}
    assert ("layer4.2.conv3", "backward") in names and ("fc", "forward") in names
    assert doc["ops"]["unsupported"] == {}


def test_cli_unbound_dim_is_one_line_exit_2(run_cli, tmp_path):
    code, out, err = run_cli("analyze", _lm(tmp_path))
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "--batch-size" in err


def test_batch_baked_into_reshapes_scales_and_seq_is_a_clear_error():
    g8 = analyze_onnx(GPT2)
    g4 = analyze_onnx(GPT2, batch_size=4)
    assert g4.micro_batch == 4 and g4.outputs[0].shape == (4, 256, 8192)
    assert g4.total("forward").flops == pytest.approx(g8.total("forward").flops / 2, rel=1e-6)
    assert g4.total("optimizer") == g8.total("optimizer")
    assert any("baked into its shapes" in a for a in g4.assumptions)
    with pytest.raises(InputError, match="sequence length 256 baked"):
        analyze_onnx(GPT2, seq_len=128)


def test_dynamo_namespace_names():
    from wattlint.frontends.onnx import _namespace_module

    ns = (": __main__.Net/layer.0: torch.nn.modules.container.Sequential/layer.0.0: torch.nn.modules.linear.Linear/"
          "linear: aten.linear.default")
    assert _namespace_module(ns) == ("layer.0.0", "Linear")
    assert _namespace_module(": __main__.Net/relu: aten.relu.default") == ("", "Net")


def test_batchnorm_in_graph_is_trained_and_not_folded(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "mean", "var"], ["n"], name="/bn/BN"),
             helper.make_node("Relu", ["n"], ["y"], name="/relu/Relu")]
    p = _save(tmp_path, nodes, [_vi("x", [2, 3, 8, 8])], [_vi("y", None)],
              [_w("w", [4, 3, 3, 3]), _w("s", [4]), _w("b", [4]), _w("mean", [4]), _w("var", [4])])
    g = analyze_onnx(p)
    assert g.extra["folded_batchnorm"] is False
    assert g.params == 4 * 3 * 9 + 4 + 4  # running mean / var are buffers, not parameters
    n = 2 * 4 * 8 * 8
    assert _fwd(g, "onnx::BatchNormalization")[0].flops == 7 * n
    assert sum(r.flops for r in _bwd(g) if r.op == "onnx::BatchNormalization") == 11 * n
    # the conv's input is the graph input: weight gradient only
    assert [r.kind.value for r in _bwd(g, "conv")] == ["conv"]
    assert g.outputs[0].shape == (2, 4, 8, 8)
    # output is 4-D and not over an integer input: as the torch frontend, the loss is the sum of the outputs, stated
    assert any(a.startswith("loss: sum of the forward outputs") for a in g.assumptions)


def _conv_stack(tmp_path, biases, name):
    """Conv -> Relu x len(biases), 4 channels on [2, 4, 8, 8]; each conv's bias initializer named as given."""
    nodes, inits, x = [], [], "x"
    for i, b in enumerate(biases):
        nodes += [helper.make_node("Conv", [x, f"w{i}", b], [f"c{i}"], name=f"/c{i}/Conv", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"/r{i}/Relu")]
        inits += [_w(f"w{i}", [4, 4, 3, 3]), _w(b, [4])]
        x = f"r{i}"
    return _save(tmp_path, nodes, [_vi("x", [2, 4, 8, 8])], [_vi(x, None)], inits, name=name)


def test_biased_convs_of_a_model_without_batchnorm_are_not_read_as_folded(tmp_path):
    """Review: every conv biased + a ReLU read as 'BatchNorm folded' and a training BatchNorm was synthesized after
    each conv of a VGG-style net that has none (activation memory 1.72x, energy 1.43x). torch.onnx keeps a bias
    parameter's name ('features.0.bias'); folding a BatchNorm writes a new constant ('onnx::Conv_498'). Only
    generated biases are read as folded: a UNet's own 1x1 head conv gets no phantom BatchNorm."""
    own = analyze_onnx(_conv_stack(tmp_path, ["f.0.bias", "f.2.bias", "f.4.bias"], "vgg.onnx"))
    assert own.extra["folded_batchnorm"] is False and not _fwd(own, "synth::BatchNormalization")
    mixed = analyze_onnx(_conv_stack(tmp_path, ["onnx::Conv_1", "onnx::Conv_2", "onnx::Conv_3", "head.bias"],
                                     "unet.onnx"))
    assert mixed.extra["folded_batchnorm"] is True
    assert len(_fwd(mixed, "synth::BatchNormalization")) == 3
    assert any("synthesized after 3 folded convolutions" in a for a in mixed.assumptions)


def test_more_contrib_and_quantized_ops(tmp_path):
    b, s, hid, vocab = 2, 8, 16, 50
    ids = _vi("ids", [b, s], TensorProto.INT64)
    nodes = [
        helper.make_node("EmbedLayerNormalization", ["ids", "", "we", "pe", "", "g", "beta"], ["e", "mask_idx"],
                         name="/emb/ELN", domain="com.microsoft"),
        helper.make_node("FusedMatMul", ["h", "wt"], ["f"], name="/fm/FusedMatMul", domain="com.microsoft", transB=1),
        helper.make_node("MatMulNBits", ["f", "packed", "scales"], ["q"], name="/q/MatMulNBits",
                         domain="com.microsoft", K=32, N=24, bits=4, block_size=32),
        helper.make_node("LRN", ["img"], ["l"], name="/lrn/LRN", size=5),
    ]
    packed = helper.make_tensor("packed", TensorProto.UINT8, [24, 1, 16], vals=[0] * 384)
    p = _save(tmp_path, nodes, [ids, _vi("h", [b, s, hid]), _vi("img", [1, 4, 5, 5])],
              [_vi("q", None), _vi("l", None), _vi("e", None)],
              [_w("we", [vocab, hid]), _w("pe", [s, hid]), _w("g", [hid]), _w("beta", [hid]), _w("wt", [32, hid]),
               packed, _w("scales", [24])], extra_opsets=[MS])
    g = analyze_onnx(p)
    f = {r.op: r for r in _fwd(g)}
    n = b * s * hid
    assert f["com.microsoft::EmbedLayerNormalization"].flops == n + 7 * n  # two tables summed + LayerNorm
    assert f["com.microsoft::FusedMatMul"].flops == 2 * b * s * hid * 32  # B [32, hid] transposed
    assert f["com.microsoft::MatMulNBits"].flops == 2 * b * s * 32 * 24
    assert f["onnx::LRN"].flops == 14 * 100
    assert g.unsupported() == {}
    # the 4-bit weights are frozen (not float): only the float initializers are parameters
    assert g.params == vocab * hid + s * hid + 2 * hid + 32 * hid + 24


def test_half_precision_graph_trains_with_fp32_master_weights(tmp_path):
    H = TensorProto.FLOAT16
    w = helper.make_tensor("w", H, [8, 8], vals=[0] * 64)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="/fc/MatMul")]
    p = _save(tmp_path, nodes, [_vi("x", [4, 8], H)], [_vi("y", None, H)], [w], external=False)
    g = analyze_onnx(p)
    assert g.precision == "fp16"
    mm = _fwd(g, "onnx::MatMul")[0]
    assert mm.dtype == "float16" and mm.bytes_read == (32 + 64) * 2
    opt = [r for r in g.records if r.phase is Phase.OPTIMIZER]
    assert opt and all(r.dtype == "float32" for r in opt)
    assert any("fp32 master weights" in a for a in g.assumptions)


def test_symbolic_inference_writes_nothing_and_keeps_partial_results(tmp_path, monkeypatch):
    """onnxruntime's public infer_shapes saves sym_shape_infer_temp.onnx into the cwd when incomplete: never here."""
    b, s, hid, vocab = 2, 8, 16, 50
    nodes = [helper.make_node("EmbedLayerNormalization", ["ids", "", "we", "pe", "", "g", "beta"], ["e", "mi"],
                              name="/emb/ELN", domain="com.microsoft"),
             helper.make_node("FusedMatMul", ["e", "wt"], ["f"], name="/fm/FusedMatMul", domain="com.microsoft",
                              transB=1),
             helper.make_node("Relu", ["f"], ["r"], name="/r/Relu")]
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    p = _save(model_dir, nodes, [_vi("ids", [b, s], TensorProto.INT64)], [_vi("r", None)],
              [_w("we", [vocab, hid]), _w("pe", [s, hid]), _w("g", [hid]), _w("beta", [hid]), _w("wt", [32, hid])],
              extra_opsets=[MS])
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    g = analyze_onnx(p)
    assert list(work.iterdir()) == [] and sorted(x.name for x in model_dir.iterdir()) == ["m.onnx"]
    assert g.unsupported() == {}
    assert _fwd(g, "onnx::Relu")[0].flops == b * s * 32


def test_input_spec_on_a_baked_static_graph(run_cli):
    g = analyze_onnx(GPT2, inputs={"input_ids": TensorSpec("input_ids", "int64", (4, 256))})
    assert g.micro_batch == 4 and any("baked into its shapes" in a for a in g.assumptions)
    code, out, err = run_cli("analyze", GPT2, "--input", "input_ids=int64[8,128]")
    assert code == 2 and "sequence length 256 baked" in err and err.count("\n") == 1


def test_folded_batchnorm_activation_memory_matches_pytorch():
    """An eval-mode export folds BatchNorm, but training saves each BN's input (the conv output) for backward.
    Reference: the bytes PyTorch saves for backward (torch.autograd.graph.saved_tensors_hooks, storages deduplicated)
    in a torchvision-style ResNet-50 at batch 32, fp32: 2.5666 GiB = 2.756e9 B. Without the BN inputs the frontend
    gave 1.33e9 B (about half), which let WL201 say 'fits' where training does not."""
    g = analyze_onnx(RESNET)
    assert g.extra["folded_batchnorm"] is True
    assert g.extra["activation_bytes"] == pytest.approx(2.756e9, rel=0.10)


def test_batch_one_on_a_graph_with_batch_8_baked_in_is_scaled_not_priced_at_8(run_cli):
    """gpt2-tiny.onnx bakes batch 8 into Reshape targets. At --batch-size 2 shape inference rejects the rebound
    graph; at 1 it did not (a [1*256, 768] tensor reshaped to [8, 256, 768] went through), and batch 1 was costed
    like batch 8. Training work is linear in the batch for this model (no batch-dependent kernels): batch 1 must
    be one eighth of batch 8, and say why."""
    import json

    flops = {}
    for b in (1, 8):
        code, out, err = run_cli("analyze", GPT2, "--batch-size", b, "--format", "json")
        assert code == 0, err
        d = json.loads(out)
        flops[b] = d["totals"]["forward"]["flops"]
        if b == 1:
            assert any("batch 8 baked into its shapes" in a for a in d["assumptions"])
    assert flops[1] * 8 == pytest.approx(flops[8], rel=1e-6)


def test_model_options_an_onnx_graph_cannot_apply_are_stated(run_cli):
    """--attention (PyTorch / Hugging Face sources: the ONNX frontend costs attention patterns as found) and
    --capacity-factor (mixture-of-experts only) change nothing for a dense ONNX graph: the report says so instead of
    dropping them silently. The estimate itself is unchanged (same energy with and without them)."""
    import wattlint

    g = wattlint.analyze("examples/gpt2-tiny.onnx", attention="eager", capacity_factor=1.5)
    text = "\n".join(g.assumptions)
    assert "--attention eager: not applied to an ONNX graph" in text
    assert "--capacity-factor 1.5: the model has no mixture-of-experts layer" in text
    plain = "\n".join(wattlint.analyze("examples/gpt2-tiny.onnx").assumptions)
    assert "--attention" not in plain and "--capacity-factor" not in plain
    args = ("examples/gpt2-tiny.onnx", "--gpu", "a100", "--steps", "10", "--format", "json")
    code, out, _ = run_cli(*args)
    code2, out2, _ = run_cli(*args, "--attention", "eager", "--capacity-factor", "1.5")
    assert code == code2 == 0
    a, b = json.loads(out), json.loads(out2)
    assert a["total"]["energy_kwh"] == b["total"]["energy_kwh"]
    assert any("--attention eager: not applied" in s for s in b["assumptions"])


def test_rebound_static_batch_sizes_the_loss_from_the_bound_output(tmp_path):
    """A batch of 4 baked into the export, run at --batch-size 32: the output's stored shape [4, 10] is stale, so the
    loss must be sized from the re-inferred [32, 10]. By hand: the MatMul [B,16] x [16,10] is 2 x B x 16 x 10 FLOPs
    (1,280 at B = 4, 10,240 at B = 32) and every forward record scales by exactly 32 / 4 = 8, the loss included."""
    p = _save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["logits"], name="/head/MatMul")],
              [_vi("x", [4, 16])], [_vi("logits", [4, 10])], [_w("w", [16, 10])])
    g4 = analyze_onnx(p)
    g32 = analyze_onnx(p, batch_size=32)
    assert any("'logits' [32, 10]: 32 rows x 10 classes" in a for a in g32.assumptions)
    assert not any("[4, 10]" in a for a in g32.assumptions)
    assert [r.flops for r in _fwd(g4, "onnx::MatMul")] == [2 * 4 * 16 * 10]
    assert [r.flops for r in _fwd(g32, "onnx::MatMul")] == [2 * 32 * 16 * 10]
    assert g32.total("forward").flops == 8 * g4.total("forward").flops


def test_cross_entropy_loss_memory_by_hand(tmp_path):
    """The assumed cross-entropy over logits [4, 10] (fp32): its log-softmax keeps 4 B per logit for backward
    (40 logits: 160 B of activations beside the MatMul's saved input x, 4 x 16 x 4 = 256 B), and the loss reports the
    logits for wattlint.memory's loss transient (torch: (4 + 8) x 40 = 480 B at the start of backward)."""
    from wattlint import memory
    from wattlint.types import Plan

    p = _save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["logits"], name="/head/MatMul")],
              [_vi("x", [4, 16])], [_vi("logits", [4, 10])], [_w("w", [16, 10])])
    g = analyze_onnx(p)
    assert (g.extra["loss_logits_elems"], g.extra["loss_logits_bytes"]) == (40, 4)
    assert g.extra["activation_bytes"] == 4 * 16 * 4 + 4 * 40
    plan = Plan(batch_size=4, steps=1, precision="fp32", optimizer="adamw", pue=1.0, carbon_intensity_g_per_kwh=400.0)
    assert memory.loss_transient_bytes(g, plan)[0] == 12 * 40


def test_analyze_refuses_a_global_batch_not_divisible_by_the_replicas(run_cli):
    """--batch-size 30 over 4 GPUs: 30 / 4 replicas is no whole micro-batch; the main command refuses it (every
    replica runs the same micro-batch, README) and analyze now does too (it traced 7 and left 2 samples out)."""
    code, out, err = run_cli("analyze", str(RESNET), "--batch-size", "30", "--gpus", "4", "--format", "json")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "not divisible" in err
    code, out, _ = run_cli("analyze", str(RESNET), "--batch-size", "32", "--gpus", "4", "--format", "json")
    assert not any("not divisible" in a for a in json.loads(out)["assumptions"])


def test_mfu_flops_per_token_of_a_baked_batch_graph_do_not_move_with_the_micro_batch(run_cli):
    """gpt2-tiny.onnx bakes batch 8 into its Reshapes: at micro-batch 1 (--gpus 8) the records keep their batch-8
    dims and costs are scaled by 1/8, but the MFU attention term read b = 8 from the dims and divided by 1 x 256
    tokens: 69.7 M FLOPs per token instead of 47.7 M (MFU +46 %). By hand: 6 N = 6 x 7,419,392 = 44,516,352 plus the
    full-square attention 2 x 2 x s x d_model x layers = 4 x 256 x 768 x 4 = 3,145,728 per token, at any micro-batch."""
    import json

    for layout in (("--gpus", 8), ("--gpus", 1), ("--gpus", 1, "--grad-accum", 8)):
        code, out, err = run_cli(GPT2, "--gpu", "h100", *layout, "--batch-size", 8, "--seq-len", 256, "--steps", 10,
                                 "--precision", "bf16", "--format", "json")
        assert code == 0, err
        u = json.loads(out)["utilization"]
        assert u["model_flops_per_token"] == pytest.approx(6 * 7_419_392 + 4 * 256 * 768 * 4, rel=1e-6)


def test_context_parallel_kv_chunk_of_a_baked_batch_graph_follows_the_batch(run_cli):
    """Review: the ring's key/value chunk read b = 8 from the baked-batch dims at every batch: 2.00 MiB at batch 8,
    16 and 32. The keys and values of a micro-batch are proportional to its samples: x2 at batch 16, x4 at 32."""
    import json
    import re

    mib = {}
    for b in (8, 16, 32):
        code, out, err = run_cli(GPT2, "--gpus", 2, "--context-parallel", 2, "--gpu", "h100", "--batch-size", b,
                                 "--seq-len", 256, "--steps", 1, "--format", "json")
        assert code == 0, err
        line = next(a for a in json.loads(out)["assumptions"] if a.startswith("context parallel 2: per layer"))
        mib[b] = float(re.search(r"chunk \(([\d.]+) MiB", line).group(1))
    assert mib[16] == pytest.approx(2 * mib[8]) and mib[32] == pytest.approx(4 * mib[8])


def test_dropout_of_a_train_mode_export_is_priced_and_an_inference_one_is_free(tmp_path):
    """Review: Dropout was a free view everywhere: a train-mode export (torch writes training_mode = true and the
    mask output) cost the same as the eval export. By hand, x [4, 256] fp32 (n = 1,024): forward draws, multiplies
    and scales (3 n FLOPs), reads x (4 n B), writes y and the bool mask (4 n + n B); backward 2 n FLOPs."""
    import numpy as np
    from onnx import numpy_helper

    def graph(training):
        ins = ["x", "ratio"] + (["mode"] if training is not None else [])
        nodes = [helper.make_node("MatMul", ["x0", "w"], ["x"], name="/fc/MatMul"),
                 helper.make_node("Dropout", ins, ["y", "mask"] if training else ["y"], name="/drop/Dropout")]
        inits = [_w("w", [256, 256]), numpy_helper.from_array(np.array(0.1, dtype=np.float32), "ratio")]
        if training is not None:
            inits.append(numpy_helper.from_array(np.array(training), "mode"))
        return _save(tmp_path, nodes, [_vi("x0", [4, 256])], [_vi("y", None)], inits, name=f"d{training}.onnx",
                     external=False)

    on = analyze_onnx(graph(True))
    drop = [r for r in on.records if r.op == "onnx::Dropout"]
    n = 4 * 256
    assert [(r.phase, r.flops) for r in drop] == [(Phase.FORWARD, 3 * n), (Phase.BACKWARD, 2 * n)]
    assert (drop[0].bytes_read, drop[0].bytes_written) == (4 * n, 5 * n)
    for off in (False, None):  # training_mode false, or absent: an identity
        assert not [r for r in analyze_onnx(graph(off)).records if r.op == "onnx::Dropout" and r.flops]


@pytest.mark.parametrize("case", ["tied", "untied", "unread"])
def test_tied_output_layer_is_one_parameter(tmp_path, case):
    """Review: a tied LM head exported with constant folding is a second initializer, the embedding transposed
    (``onnx::MatMul_N`` [d, V] beside ``wte.weight`` [V, d]); it was counted as its own parameter (GPT-2 tiny:
    7.42 M instead of 5.32 M). Where the values can be read, a copy equal to the transposed embedding is one
    parameter (no optimizer step of its own; its dW GEMM still runs); different values are two parameters; without
    the data both are counted and the assumption says by how much a tie would differ."""
    import numpy as np
    from onnx import numpy_helper

    v, d = 12, 4
    emb = np.arange(v * d, dtype=np.float32).reshape(v, d)
    head = emb.T.copy() if case != "untied" else emb.T.copy() + 1
    nodes = [helper.make_node("Gather", ["wte.weight", "ids"], ["h"], name="/wte/Gather"),
             helper.make_node("MatMul", ["h", "onnx::MatMul_9"], ["logits"], name="/lm_head/MatMul")]
    p = _save(tmp_path, nodes, [_vi("ids", [2, 3], TensorProto.INT64)], [_vi("logits", [2, 3, v])],
              [numpy_helper.from_array(emb, "wte.weight"), numpy_helper.from_array(head, "onnx::MatMul_9")],
              external=case == "unread")
    g = analyze_onnx(p)
    tied = case == "tied"
    assert g.params == (1 if tied else 2) * v * d
    steps = {r.shapes[0] for r in g.records if r.phase is Phase.OPTIMIZER}
    assert steps == ({(v, d)} if tied else {(v, d), (d, v)})
    # the head's weight gradient over the 6 rows, either way; oriented as nn.Linear's (an exporter-folded transposed
    # weight, onnx::MatMul_N, is an nn.Linear [V, d] weight): grad_out^T @ h, m = V, n = d
    dw = [r for r in _bwd(g, "lm_head") if r.kind.value == "matmul" and r.dim("m") == v and r.dim("n") == d]
    assert len(dw) == 1 and dw[0].flops == 2 * d * v * 6
    notes = [a for a in g.assumptions if "'onnx::MatMul_9'" in a]
    if case == "unread":
        assert notes == [f"'onnx::MatMul_9' [{d}, {v}] is shaped as the embedding 'wte.weight' [{v}, {d}] transposed "
                         f"(an output layer), its weights not in the file: counted as a parameter of its own "
                         f"(untied); if the model ties them (GPT-2, BERT), it has {v * d} fewer parameters, no "
                         f"optimizer step or state for them"]
    else:
        assert len(notes) == tied


def test_batch_baked_into_reshape_targets_is_rewritten_to_the_batch_asked_for(tmp_path):
    """Review: an export with its batch baked into a Reshape target (`x.view(2, -1)` traced at batch 2) was costed
    at batch 64 as the batch-2 costs x 32: the GEMM priced at 2 rows and its weight read 32 times (2x the energy of
    the same model exported with a dynamic batch). The target's leading element is rewritten to the batch (as a
    dynamic axis gives) and every record equals the dynamic export's; a constant that is not the batch still falls
    back to scaling (checked by the Reshape element counts)."""
    import numpy as np
    from onnx import numpy_helper

    def model(target, name):
        nodes = [helper.make_node("Reshape", ["x", "shape"], ["h"], name="/flat/Reshape"),
                 helper.make_node("MatMul", ["h", "W"], ["y"], name="/fc/MatMul")]
        return _save(tmp_path, nodes, [_vi("x", [2, 4, 8])], [_vi("y", [2, 16])],
                     [_w("W", [32, 16]), numpy_helper.from_array(np.array(target, dtype=np.int64), "shape")],
                     name=name)

    baked = analyze_onnx(model([2, 32], "baked.onnx"), batch_size=64)
    dynamic = analyze_onnx(model([-1, 32], "dyn.onnx"), batch_size=64)
    key = lambda g: [(r.op, r.phase, r.flops, r.bytes_read, r.bytes_written, r.dims) for r in g.records]  # noqa: E731
    assert key(baked) == key(dynamic)
    fc = [r for r in _fwd(baked, "onnx::MatMul")][0]
    assert fc.flops == 2 * 64 * 32 * 16 and fc.dim("m") == 64 and fc.bytes_read == (64 * 32 + 32 * 16) * 4
    assert any("1 shape constant(s) (Reshape / Expand targets) rewritten to batch 64" in a for a in baked.assumptions)


def test_folded_batchnorm_backward_for_every_conv_without_scoped_names(tmp_path):
    """Review: in a graph without scoped node names ('Conv_0', as older exports and onnxsim write them) every conv
    is in module '', and the synthesized BatchNorm backwards were keyed by module: 3 forwards, 1 backward. One per
    folded conv now, each before its conv's backward (gradients reach BatchNorm first)."""
    nodes, inits, x = [], [], "x"
    for i in range(3):
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"onnx::Conv_{i}"], [f"c{i}"], name=f"Conv_{2 * i}",
                                   pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"Relu_{2 * i + 1}")]
        inits += [_w(f"w{i}", [4, 4, 3, 3]), _w(f"onnx::Conv_{i}", [4])]
        x = f"r{i}"
    g = analyze_onnx(_save(tmp_path, nodes, [_vi("x", [2, 4, 8, 8])], [_vi(x, None)], inits, name="flat.onnx"))
    assert len(_fwd(g, "synth::BatchNormalization")) == 3
    bwd = [r.op for r in _bwd(g) if r.op in ("synth::BatchNormalization", "onnx::Conv")]
    assert bwd.count("synth::BatchNormalization") == 3
    # backward runs the last conv first: BatchNorm, then that conv's gradient GEMM(s), for each of the three
    assert bwd[0] == "synth::BatchNormalization" and all(
        bwd[i + 1] == "onnx::Conv" for i, op in enumerate(bwd) if op == "synth::BatchNormalization")


def _loop_model(tmp_path):
    """Loop x 5: h = Relu(h @ W) (W [32, 32] a trained outer initializer, h0 the graph input [4, 32]), then
    y = h @ w2."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond"], ["cond_out"], name="/body/Identity"),
         helper.make_node("MatMul", ["h", "W"], ["m"], name="/body/MatMul"),
         helper.make_node("Relu", ["m"], ["h_out"], name="/body/Relu")],
        "body", [_vi("i", [], TensorProto.INT64), _vi("cond", [], TensorProto.BOOL), _vi("h", [4, 32])],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("h_out", [4, 32])])
    nodes = [helper.make_node("Loop", ["trips", "", "x"], ["hn"], name="/loop/Loop", body=body),
             helper.make_node("MatMul", ["hn", "w2"], ["y"], name="/head/MatMul")]
    return _save(tmp_path, nodes, [_vi("x", [4, 32])], [_vi("y", [4, 10])],
                 [_w("W", [32, 32]), _w("w2", [32, 10]), helper.make_tensor("trips", TensorProto.INT64, [], [5])],
                 name="loop.onnx")


def test_loop_carried_state_gets_its_gradient(tmp_path):
    """Review: a Loop's carried state got a gradient only when the outer input had one, so h = relu(h @ W) with W
    trained priced each iteration's dW GEMM but not its dH GEMM (backward 41 % low). Each of the 5 iterations now
    has both: 2 x (2 x 4 x 32 x 32) FLOPs."""
    g = analyze_onnx(_loop_model(tmp_path))
    body = [r for r in _bwd(g) if r.kind.value == "matmul" and r.op == "onnx::MatMul" and r.flops == 5 * 8192]
    assert len(body) == 2  # dW and dH, each scaled by the trip count
    assert any("its loop-carried state needs a gradient" in a for a in g.assumptions)


def test_if_dry_runs_leave_the_gradient_flow_as_it_was(tmp_path):
    """Review: picking an If's costlier branch by dry runs replaced the analysis's gradient set with a copy, so the
    outputs of the If (and everything after it) lost their gradient, and each dry run's uses were counted as extra
    gradient accumulations. a = x @ w0; If: a @ wbig | relu(a); y = z @ w2: every GEMM gets its gradients, no
    accumulation: backward = loss + dW2 and dZ (2 x 2 x 64 x 64 x 10) + 3 GEMMs of 2 x 64 x 64 x 64."""
    then_g = helper.make_graph([helper.make_node("MatMul", ["a", "wbig"], ["z_t"], name="/then/MatMul")], "then", [],
                               [_vi("z_t", [64, 64])])
    else_g = helper.make_graph([helper.make_node("Relu", ["a"], ["z_e"], name="/else/Relu")], "else", [],
                               [_vi("z_e", [64, 64])])
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["a"], name="/first/MatMul"),
             helper.make_node("If", ["c"], ["z"], name="/branch/If", then_branch=then_g, else_branch=else_g),
             helper.make_node("MatMul", ["z", "w2"], ["y"], name="/head/MatMul")]
    g = analyze_onnx(_save(tmp_path, nodes, [_vi("x", [64, 64]), _vi("c", [], TensorProto.BOOL)],
                           [_vi("y", [64, 10])], [_w("w0", [64, 64]), _w("wbig", [64, 64]), _w("w2", [64, 10])],
                           name="if.onnx"))
    assert not [r for r in g.records if r.op == "autograd::accumulate_grad"]
    gemms = sorted(r.flops for r in _bwd(g) if r.kind.value == "matmul")
    assert gemms == [2 * 64 * 64 * 10] * 2 + [2 * 64 * 64 * 64] * 3


def test_constant_nodes_saved_as_external_data_are_read(tmp_path):
    """Review: a model saved with onnx.save(..., save_as_external_data=True, convert_attribute=True,
    size_threshold=0) keeps its Constant nodes' shape tensors in the data file; they were never read, shape inference
    lost every shape after them and a GPT-2 came out at 38 FLOPs forward, exit 0, its logits taken for a scalar loss.
    Small integer tensors are read from the data file beside the model (as external initializers were), and an
    output whose shape stays unknown is said to be, not taken for a scalar."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    nodes = [helper.make_node("Constant", [], ["shape"], name="/c/Constant",
                              value=numpy_helper.from_array(np.array([4, 4], dtype=np.int64), "v")),
             helper.make_node("Reshape", ["x", "shape"], ["h"], name="/flat/Reshape"),
             helper.make_node("MatMul", ["h", "W"], ["y"], name="/fc/MatMul")]
    w = numpy_helper.from_array(np.zeros((4, 3), dtype=np.float32), "W")
    g = helper.make_graph(nodes, "g", [_vi("x", [2, 8])], [_vi("y", None)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    inline = analyze_onnx(_save(tmp_path, nodes, [_vi("x", [2, 8])], [_vi("y", None)], [_w("W", [4, 3])],
                                name="inline.onnx"))
    onnx.save(m, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.bin", size_threshold=0, convert_attribute=True)
    ext = analyze_onnx(tmp_path / "ext.onnx")
    assert sum(r.flops for r in _fwd(ext)) == sum(r.flops for r in _fwd(inline)) >= 2 * 4 * 4 * 3
    (tmp_path / "ext.bin").unlink()  # the data file gone: the shape cannot be read; said so, never a scalar loss
    with pytest.raises(InputError, match="missing"):
        analyze_onnx(tmp_path / "ext.onnx")


def test_batch_size_sets_the_batch_of_an_input_given_with_input(tmp_path):
    """Review: `--input x=float32[16,64] --batch-size 32` traced an ONNX MLP at 16 while the batch line said 32
    traced (the estimate then scaled 16 -> 32). --batch-size sets the batch dim of --input's shape too, as the
    torch frontend does, stated."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="/fc/MatMul")]
    p = _save(tmp_path, nodes, [_vi("x", ["N", 64])], [_vi("y", ["N", 10])], [_w("W", [64, 10])])
    g = analyze_onnx(p, inputs={"x": TensorSpec("x", "float32", (16, 64))}, batch_size=32)
    assert g.micro_batch == 32 and g.inputs[0].shape == (32, 64)
    assert _fwd(g, "onnx::MatMul")[0].flops == 2 * 32 * 64 * 10
    assert "--input x: batch dim 0 (16) set to the micro-batch 32 (--batch-size)" in g.assumptions


def test_fake_quantized_weights_get_their_gradients_straight_through(tmp_path):
    """Review: in a QAT graph (fp32 weights through QuantizeLinear -> DequantizeLinear into a MatMul) the int8
    output of QuantizeLinear stopped the gradient: the weights were counted and stepped by the optimizer but had no
    gradient GEMM (backward = the loss only). Gradients pass straight through (STE), stated: the weight gradient
    2 x 8 x 16 x 10 FLOPs is priced, with one masked copy of the gradient per QuantizeLinear."""
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    zero = helper.make_tensor("z", TensorProto.INT8, [], [0])
    nodes = [helper.make_node("QuantizeLinear", ["W", "s", "z"], ["wq"], name="/fc/QuantizeLinear"),
             helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"], name="/fc/DequantizeLinear"),
             helper.make_node("MatMul", ["x", "wd"], ["y"], name="/fc/MatMul")]
    g = analyze_onnx(_save(tmp_path, nodes, [_vi("x", [8, 16])], [_vi("y", [8, 10])], [_w("W", [16, 10]), scale, zero]))
    assert g.params == 160
    mm = [r for r in _bwd(g) if r.op == "onnx::MatMul"]
    assert [r.flops for r in mm] == [2 * 8 * 16 * 10]  # dW (x needs no gradient)
    q = [r for r in _bwd(g) if r.op == "onnx::QuantizeLinear"]
    assert len(q) == 1 and q[0].bytes_written == 160 * 4
    assert any("gradients pass straight through" in a for a in g.assumptions)


def test_review_of_the_onnx_changes(tmp_path):
    """Review of this session's ONNX changes: (1) --batch-size rebinds only the --input specs batched like the first
    (a [seq, seq] mask was rebound to the batch: its sequence doubled, silently); (2) a Constant node's external
    tensor outside the model's folder is refused like an initializer's; (3) a folded conv off the loss path (no
    backward group) no longer shifts the BatchNorm backwards of the convs after it; (4) a tie stored in float_data is
    read."""
    import numpy as np
    from onnx import numpy_helper

    # (1)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="/fc/MatMul"),
             helper.make_node("MatMul", ["mask", "h"], ["y"], name="/mix/MatMul")]
    p = _save(tmp_path, nodes, [_vi("x", ["B", "S", 8]), _vi("mask", ["S", "S"])], [_vi("y", None)],
              [_w("W", [8, 8])], name="mask.onnx")
    g = analyze_onnx(p, inputs={"x": TensorSpec("x", "float32", (4, 16, 8)),
                                "mask": TensorSpec("mask", "float32", (16, 16))}, batch_size=32)
    assert dict((t.name, t.shape) for t in g.inputs) == {"x": (32, 16, 8), "mask": (16, 16)}
    assert any(a.startswith("--input mask: kept as given [16, 16]") for a in g.assumptions)
    # (2)
    import onnx

    sub = tmp_path / "m"
    sub.mkdir()
    (tmp_path / "outside.bin").write_bytes(np.array([4, 4], dtype=np.int64).tobytes())
    const = numpy_helper.from_array(np.array([4, 4], dtype=np.int64), "v")
    const.ClearField("raw_data")
    const.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../outside.bin"), ("offset", "0"), ("length", "16")):
        e = const.external_data.add()
        e.key, e.value = k, v
    graph = helper.make_graph([helper.make_node("Constant", [], ["shape"], value=const),
                               helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
                              [_vi("x", [2, 8])], [_vi("y", None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(sub / "t.onnx"))
    with pytest.raises(InputError, match="outside the model's folder"):
        analyze_onnx(sub / "t.onnx")
    # (3) Conv_0 feeds an auxiliary output only (no loss path), Conv_1 -> Relu -> Conv_3 is the loss path (the
    # output named logits: its cross-entropy is the loss, as the torch frontend takes it)
    nodes = [helper.make_node("Conv", ["x", "w0", "onnx::Conv_0"], ["aux"], name="Conv_0", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "w1", "onnx::Conv_1"], ["c1"], name="Conv_1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="Relu_2"),
             helper.make_node("Conv", ["r1", "w3", "onnx::Conv_3"], ["logits"], name="Conv_3", pads=[1, 1, 1, 1])]
    inits = [_w("w0", [64, 4, 3, 3]), _w("onnx::Conv_0", [64]), _w("w1", [8, 4, 3, 3]), _w("onnx::Conv_1", [8]),
             _w("w3", [8, 8, 3, 3]), _w("onnx::Conv_3", [8])]
    g = analyze_onnx(_save(tmp_path, nodes, [_vi("x", [2, 4, 8, 8])], [_vi("logits", None), _vi("aux", None)], inits,
                           name="aux.onnx"))
    bn_bwd = [r for r in _bwd(g) if r.op == "synth::BatchNormalization"]
    assert [r.shapes[0] for r in bn_bwd] == [(128, 8), (128, 8)]  # N*H*W x C of the two 8-channel convs
    # (4)
    v, dd = 12, 4
    emb = np.arange(v * dd, dtype=np.float32).reshape(v, dd)
    nodes = [helper.make_node("Gather", ["wte.weight", "ids"], ["h"], name="/wte/Gather"),
             helper.make_node("MatMul", ["h", "onnx::MatMul_9"], ["logits"], name="/lm_head/MatMul")]
    ties = [helper.make_tensor("wte.weight", TensorProto.FLOAT, [v, dd], emb.reshape(-1).tolist()),
            helper.make_tensor("onnx::MatMul_9", TensorProto.FLOAT, [dd, v], emb.T.reshape(-1).tolist())]
    g = analyze_onnx(_save(tmp_path, nodes, [_vi("ids", [2, 3], TensorProto.INT64)], [_vi("logits", [2, 3, v])],
                           ties, name="tie.onnx", external=False))
    assert g.params == v * dd
