"""Malformed ONNX input never crashes: thousands of mutated / random / structurally broken files through the CLI
entry point in-process (exit 0 or 2, never 3, one line on stderr), plus a handful as real subprocesses."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from wattlint.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _base_model() -> bytes:
    """A small valid graph: Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm, weights as external data."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], vals=[0.0] * 216)
    fc = helper.make_tensor("fc", TensorProto.FLOAT, [10, 8], vals=[0.0] * 80)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="/conv1/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["p"], ["f"], name="/Flatten"),
        helper.make_node("Gemm", ["f", "fc"], ["y"], name="/fc/Gemm", transB=1),
    ]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], [w, fc])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    for t in m.graph.initializer:  # as if saved with external data, then the .data file deleted
        t.ClearField("float_data")
        t.data_location = TensorProto.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "location", "tiny.onnx.data"
    return m.SerializeToString()


BASE = _base_model()


@pytest.fixture(autouse=True)
def _strict(monkeypatch):
    """Surface internal errors as exit 3 instead of the frontend's catch-all 'malformed graph' line."""
    import wattlint.frontends.onnx as fo

    monkeypatch.setattr(fo, "STRICT", True)


def _run(path: Path, *extra: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["analyze", str(path), "--format", "json", "--batch-size", "2", *extra])
    return code, err.getvalue()


def _check(path: Path) -> int:
    code, err = _run(path)
    assert code in (0, 2), f"exit {code}: {err}"
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("wattlint: error:"), err
        assert "Traceback" not in err
    return code


def test_base_model_is_valid(tmp_path):
    p = tmp_path / "tiny.onnx"
    p.write_bytes(BASE)
    assert _check(p) == 0


SETTINGS = settings(max_examples=int(os.environ.get("WATTLINT_FUZZ_EXAMPLES", "1200")), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                    derandomize=True, database=None)


@SETTINGS
@given(data=st.data())
def test_mutated_bytes(tmp_path, data):
    kind = data.draw(st.sampled_from(["truncate", "flip", "insert", "random", "splice"]))
    b = bytearray(BASE)
    if kind == "truncate":
        b = b[: data.draw(st.integers(0, len(b) - 1))]
    elif kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] = data.draw(st.integers(0, 255))
    elif kind == "insert":
        i = data.draw(st.integers(0, len(b)))
        b[i:i] = data.draw(st.binary(min_size=1, max_size=16))
    elif kind == "random":
        b = bytearray(data.draw(st.binary(min_size=0, max_size=512)))
    else:
        i, j = sorted((data.draw(st.integers(0, len(b))), data.draw(st.integers(0, len(b)))))
        b = b[:i] + b[j:]
    p = tmp_path / "m.onnx"
    p.write_bytes(bytes(b))
    _check(p)


OPS = ["Conv", "Relu", "MatMul", "Gemm", "Add", "Mul", "Softmax", "Reshape", "Transpose", "Concat", "Gather",
       "LayerNormalization", "BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool", "LSTM",
       "ReduceMean", "Slice", "Split", "Expand", "Einsum", "Resize", "Attention", "SkipLayerNormalization",
       "FastGelu", "Erf", "Where", "Cast", "If", "Loop", "MyCustomOp", "ConvTranspose", "Pad", "TopK"]
DIM = st.one_of(st.integers(1, 6), st.integers(1, 6), st.integers(-3, 6), st.sampled_from([0, 1 << 20, 1 << 40, 1 << 62]),
                st.sampled_from(["batch", "seq", "n", ""]))


@SETTINGS
@given(data=st.data())
def test_random_graphs(tmp_path, data):
    """Structurally random graphs: random ops and wiring (undefined names, cycles), random dims (negative,
    zero, absurd, symbolic), random attributes, random domains, random external-data locations."""
    names = ["x", "w"]
    nodes = []
    n_nodes = data.draw(st.integers(1, 6))
    for k in range(n_nodes):
        op = data.draw(st.sampled_from(OPS))
        n_in = data.draw(st.integers(0, 3))
        # mostly defined names; sometimes a later one (a cycle) or an undefined one
        pool = st.one_of(st.sampled_from(names), st.sampled_from(names), st.sampled_from(names),
                         st.sampled_from([f"t{j}" for j in range(n_nodes)] + ["nowhere", ""]))
        ins = [data.draw(pool) for _ in range(n_in)]
        attrs = {}
        for a in data.draw(st.lists(st.sampled_from(["axis", "group", "strides", "pads", "kernel_shape",
                                                     "transB", "num_heads", "hidden_size", "perm"]), max_size=3)):
            if a in ("strides", "pads", "kernel_shape", "perm"):
                attrs[a] = data.draw(st.lists(st.integers(-2, 5), min_size=1, max_size=4))
            else:
                attrs[a] = data.draw(st.integers(-2, 5))
        domain = data.draw(st.sampled_from(["", "", "", "com.microsoft", "custom.x"]))
        nodes.append(helper.make_node(op, ins, [f"t{k}"], name=f"/m{k}/{op}", domain=domain, **attrs))
        names.append(f"t{k}")
    xdims = data.draw(st.lists(DIM, min_size=0, max_size=5))
    wdims = data.draw(st.lists(st.one_of(st.integers(-2, 8), st.sampled_from([1 << 41])), max_size=4))
    w = helper.make_tensor("w", TensorProto.FLOAT, [], vals=[0.0])
    w.ClearField("dims")
    w.dims.extend(wdims)
    w.ClearField("float_data")
    if data.draw(st.booleans()):
        w.data_location = TensorProto.EXTERNAL
        e = w.external_data.add()
        e.key, e.value = "location", data.draw(st.sampled_from(["w.data", "../../x", "/etc/passwd", "a/../../b",
                                                                 "sub/w.data", ""]))
    g = helper.make_graph(nodes, "rand", [helper.make_tensor_value_info("x", TensorProto.FLOAT, xdims)],
                          [helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, None)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", data.draw(st.sampled_from([13, 17, 21])))])
    p = tmp_path / "g.onnx"
    p.write_bytes(m.SerializeToString())
    _check(p)


# ---- a handful as real subprocesses ------------------------------------------------------------------------------

def _cases(tmp: Path) -> dict[str, Path]:
    cases = {}

    def put(name, data: bytes):
        p = tmp / name
        p.write_bytes(data)
        cases[name] = p

    put("empty.onnx", b"")
    put("random.onnx", bytes(range(256)) * 3)
    put("truncated.onnx", BASE[: len(BASE) // 2])
    put("text.onnx", b"this is not a model\nbut it is named like one\n")
    cyc = helper.make_graph([helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])],
                            "cyc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                            [helper.make_tensor_value_info("a", TensorProto.FLOAT, None)])
    put("cycle.onnx", helper.make_model(cyc).SerializeToString())
    neg = onnx.load_model_from_string(BASE)
    neg.graph.initializer[0].dims[0] = -8
    put("negative.onnx", neg.SerializeToString())
    big = onnx.load_model_from_string(BASE)
    big.graph.initializer[0].dims[0] = 1 << 45
    put("absurd.onnx", big.SerializeToString())
    ext = onnx.load_model_from_string(BASE)
    ext.graph.initializer[0].external_data[0].value = "../../x"
    put("escape.onnx", ext.SerializeToString())
    return cases


def test_malformed_in_process(tmp_path):
    msgs = {}
    for name, p in _cases(tmp_path).items():
        code, err = _run(p)
        assert code == 2, (name, err)
        assert len(err.strip().splitlines()) == 1, (name, err)
        msgs[name] = err
    assert "empty file" in msgs["empty.onnx"]
    assert "not an ONNX model" in msgs["text.onnx"]
    assert "cycle" in msgs["cycle.onnx"]
    assert "negative" in msgs["negative.onnx"]
    assert "absurd" in msgs["absurd.onnx"]
    assert "outside the model's folder" in msgs["escape.onnx"] and "../../x" in msgs["escape.onnx"]
    huge = tmp_path / "huge.onnx"  # sparse: no disk used
    with open(huge, "wb") as f:
        f.truncate(3 << 30)
    code, err = _run(huge)
    assert code == 2 and "2 GiB" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["empty.onnx", "random.onnx", "truncated.onnx", "text.onnx", "cycle.onnx",
                                  "negative.onnx", "absurd.onnx", "escape.onnx"])
def test_malformed_subprocess(tmp_path, name):
    p = _cases(tmp_path)[name]
    r = subprocess.run([sys.executable, "-m", "wattlint", "analyze", str(p)], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "WATTLINT_DEBUG": ""})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wattlint: error:"), r.stderr
    assert r.stdout == ""


def _rich_model():
    """A small graph touching the main handlers: embedding, LayerNorm, attention pattern, erf-GELU, Conv/pool,
    LSTM, Reshape/Transpose with shape tensors."""
    T = TensorProto
    ints = lambda name, v: helper.make_tensor(name, T.INT64, [len(v)], vals=v)  # noqa: E731
    inits = [helper.make_tensor(n, T.FLOAT, d, vals=[0.0] * int(__import__("math").prod(d))) for n, d in [
        ("emb", [20, 8]), ("g", [8]), ("b", [8]), ("wq", [8, 8]), ("wk", [8, 8]), ("wv", [8, 8]), ("w1", [8, 16]),
        ("cw", [4, 1, 3, 3]), ("W", [1, 16, 8]), ("R", [1, 16, 4])]] + [
        ints("s4", [2, 6, 2, 4]), ints("s3", [2, 6, 8]),
        helper.make_tensor("sq", T.FLOAT, [], vals=[2.0]), helper.make_tensor("one", T.FLOAT, [], vals=[1.0]),
        helper.make_tensor("half", T.FLOAT, [], vals=[0.5]), helper.make_tensor("r2", T.FLOAT, [], vals=[1.41])]
    N = helper.make_node
    nodes = [
        N("Gather", ["emb", "ids"], ["e"], name="/emb/Gather"),
        N("LayerNormalization", ["e", "g", "b"], ["ln"], name="/ln/LayerNormalization", axis=-1),
        N("MatMul", ["ln", "wq"], ["q"], name="/attn/q/MatMul"),
        N("MatMul", ["ln", "wk"], ["k"], name="/attn/k/MatMul"),
        N("MatMul", ["ln", "wv"], ["v"], name="/attn/v/MatMul"),
        N("Reshape", ["q", "s4"], ["q4"], name="/attn/Reshape"),
        N("Transpose", ["q4"], ["qt"], name="/attn/Transpose", perm=[0, 2, 1, 3]),
        N("Reshape", ["k", "s4"], ["k4"], name="/attn/Reshape_1"),
        N("Transpose", ["k4"], ["kt"], name="/attn/Transpose_1", perm=[0, 2, 3, 1]),
        N("Reshape", ["v", "s4"], ["v4"], name="/attn/Reshape_2"),
        N("Transpose", ["v4"], ["vt"], name="/attn/Transpose_2", perm=[0, 2, 1, 3]),
        N("MatMul", ["qt", "kt"], ["sc"], name="/attn/MatMul"),
        N("Div", ["sc", "sq"], ["scd"], name="/attn/Div"),
        N("Softmax", ["scd"], ["p"], name="/attn/Softmax", axis=-1),
        N("MatMul", ["p", "vt"], ["o"], name="/attn/MatMul_1"),
        N("Transpose", ["o"], ["ot"], name="/attn/Transpose_3", perm=[0, 2, 1, 3]),
        N("Reshape", ["ot", "s3"], ["o3"], name="/attn/Reshape_3"),
        N("MatMul", ["o3", "w1"], ["h"], name="/mlp/fc/MatMul"),
        N("Div", ["h", "r2"], ["hd"], name="/mlp/act/Div"),
        N("Erf", ["hd"], ["he"], name="/mlp/act/Erf"),
        N("Add", ["he", "one"], ["ha"], name="/mlp/act/Add"),
        N("Mul", ["h", "ha"], ["hm"], name="/mlp/act/Mul"),
        N("Mul", ["hm", "half"], ["y"], name="/mlp/act/Mul_1"),
        N("Conv", ["img", "cw"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
        N("MaxPool", ["c"], ["mp"], name="/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
        N("LSTM", ["e", "W", "R"], ["ly"], name="/lstm/LSTM", hidden_size=4),
    ]
    g = helper.make_graph(nodes, "rich", [helper.make_tensor_value_info("ids", T.INT64, [2, 6]),
                                          helper.make_tensor_value_info("img", T.FLOAT, [2, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", T.FLOAT, None),
                           helper.make_tensor_value_info("mp", T.FLOAT, None),
                           helper.make_tensor_value_info("ly", T.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


RICH = _rich_model().SerializeToString()


def test_rich_model_is_valid(tmp_path):
    p = tmp_path / "rich.onnx"
    p.write_bytes(RICH)
    assert _check(p) == 0


@settings(max_examples=int(os.environ.get("WATTLINT_FUZZ_EXAMPLES", "1200")) // 2, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], derandomize=True,
          database=None)
@given(data=st.data())
def test_structural_mutations_of_a_real_graph(tmp_path, data):
    """Valid protobuf, wrong content: dims, attributes, wiring and op types changed on a graph that exercises
    the main handlers (attention and GELU patterns, LSTM, conv, pooling, shape tensors)."""
    m = onnx.load_model_from_string(RICH)
    g = m.graph
    for _ in range(data.draw(st.integers(1, 4))):
        what = data.draw(st.sampled_from(["dim", "attr", "input", "op", "drop", "shape"]))
        if what == "dim":
            t = g.initializer[data.draw(st.integers(0, len(g.initializer) - 1))]
            if t.dims:
                t.dims[data.draw(st.integers(0, len(t.dims) - 1))] = data.draw(
                    st.sampled_from([0, 1, 3, 7, -1, 1 << 33]))
        elif what == "attr":
            n = g.node[data.draw(st.integers(0, len(g.node) - 1))]
            for a in n.attribute:
                if a.type == 2:
                    a.i = data.draw(st.integers(-3, 9))
                elif a.type == 7 and a.ints:
                    a.ints[data.draw(st.integers(0, len(a.ints) - 1))] = data.draw(st.integers(-3, 9))
        elif what == "input":
            n = g.node[data.draw(st.integers(0, len(g.node) - 1))]
            if n.input:
                names = [t.name for t in g.initializer] + [o for x in g.node for o in x.output] + ["ids", "img"]
                n.input[data.draw(st.integers(0, len(n.input) - 1))] = data.draw(st.sampled_from(names))
        elif what == "op":
            n = g.node[data.draw(st.integers(0, len(g.node) - 1))]
            n.op_type = data.draw(st.sampled_from(OPS))
        elif what == "drop":
            del g.node[data.draw(st.integers(0, len(g.node) - 1))]
        else:
            which = data.draw(st.sampled_from(["s4", "s3"]))
            t = next(t for t in g.initializer if t.name == which)
            del t.int64_data[:]
            t.int64_data.extend(data.draw(st.lists(st.integers(-2, 12), min_size=1, max_size=5)))
            del t.dims[:]
            t.dims.append(len(t.int64_data))
    p = tmp_path / "mut.onnx"
    p.write_bytes(m.SerializeToString())
    _check(p)
