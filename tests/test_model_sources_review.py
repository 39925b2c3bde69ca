"""Odd but legal model sources (a review fuzzed the frontends on 2026-12-06): each is priced right and says what it
assumed, or is refused with one line; expected values by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from wattlint.frontends.onnx import MAX_LOOP_TRIPS


def _vi(name, shape, t=T.FLOAT):
    return h.make_tensor_value_info(name, t, shape)


def _save(graph, path, functions=(), extra_opsets=()):
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17), *extra_opsets], functions=list(functions))
    onnx.save(model, str(path))
    return str(path)


def _loop(path, trips: int) -> str:
    """A Loop whose body is one [8, 64] x [64, 64] MatMul (2 x 8 x 64 x 64 = 65,536 FLOPs per trip)."""
    w = nh.from_array(np.zeros((64, 64), np.float32), "W")
    body = h.make_graph([h.make_node("Identity", ["c"], ["co"]), h.make_node("MatMul", ["s", "W"], ["so"])], "b",
                        [_vi("i", [], T.INT64), _vi("c", [], T.BOOL), _vi("s", [8, 64])],
                        [_vi("co", [], T.BOOL), _vi("so", [8, 64])])
    g = h.make_graph([h.make_node("Loop", ["t", "k", "x"], ["y"], body=body)], "l", [_vi("x", [8, 64])],
                     [_vi("y", [8, 64])],
                     [w, nh.from_array(np.array(True), "k"), nh.from_array(np.array(trips, np.int64), "t")])
    return _save(g, path)


def test_a_loop_is_priced_for_every_trip(run_cli, tmp_path):
    """4,000,000 trips were capped at 2**20 silently (3.8x low): now 4e6 x 65,536 FLOPs of forward MatMul."""
    code, out, err = run_cli("analyze", _loop(tmp_path / "l.onnx", 4_000_000), "--format", "json")
    assert code == 0, err
    fwd = json.loads(out)["totals"]["forward"]["flops"]
    assert 4_000_000 * 65_536 <= fwd < 4_000_000 * 65_536 * 1.001  # the loss on the [8, 64] output adds a little
    code, out, err = run_cli("analyze", _loop(tmp_path / "big.onnx", MAX_LOOP_TRIPS + 1))
    assert code == 2 and "trip count" in err and err.count("\n") == 1
    code, out, err = run_cli("analyze", _loop(tmp_path / "neg.onnx", -3), "--format", "json")
    assert code == 0 and any("trip count -3 < 0, counted as 0" in a for a in json.loads(out)["assumptions"])


def test_half_precision_onnx_weights_hold_the_fp32_master_copy_they_state(run_cli, tmp_path):
    """fp16 weights (5.5 B parameters, external data absent: shapes only): the report states fp32 master weights;
    memory now holds them: 4 B x 5,502,926,848 = 20.5 GiB more, which no longer fits in an H100's 80 GiB."""
    t = T()
    t.name, t.data_type, t.data_location = "W", T.FLOAT16, T.EXTERNAL
    t.dims.extend([65536, 83968])
    for k, v in (("location", "w.bin"), ("offset", "0"), ("length", "1")):
        e = t.external_data.add()
        e.key, e.value = k, v
    g = h.make_graph([h.make_node("MatMul", ["x", "W"], ["y"])], "g", [_vi("x", [8, 65536], T.FLOAT16)],
                     [_vi("y", [8, 83968], T.FLOAT16)], [t])
    code, out, err = run_cli(_save(g, tmp_path / "fp16.onnx"), "--gpu", "h100", "--steps", "10", "--format", "json")
    assert code in (0, 1), err
    mem = json.loads(out)["memory"]
    assert mem["breakdown"]["master_weights"] == 4 * 65536 * 83968
    assert mem["fits"] is False


def test_an_onnx_graph_with_nothing_to_train(run_cli, tmp_path):
    argmax = h.make_graph([h.make_node("ArgMax", ["x"], ["y"], axis=1)], "g", [_vi("x", [8, 64])],
                          [_vi("y", [8, 1], T.INT64)])
    code, out, err = run_cli(_save(argmax, tmp_path / "argmax.onnx"), "--steps", "1")
    assert code == 2 and "no floating-point output to build a loss from" in err and err.count("\n") == 1
    relu = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [_vi("x", [8, 64])], [_vi("y", [8, 64])])
    code, out, err = run_cli(_save(relu, tmp_path / "relu.onnx"), "--steps", "1", "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    assert any(a.startswith("no trainable parameters") for a in d["assumptions"])
    assert "optimizer" not in d["phases"]  # no parameter: no optimizer step priced


def test_model_local_functions_are_priced_as_their_nodes(run_cli, tmp_path):
    """A local function wrapping one MatMul was 'unsupported' at 0 FLOPs: inlined, it is 2 x 8 x 64 x 32."""
    f = h.make_function("local", "MyLin", ["a", "b"], ["c"], [h.make_node("MatMul", ["a", "b"], ["c"])],
                        opset_imports=[h.make_opsetid("", 17)])
    w = nh.from_array(np.zeros((64, 32), np.float32), "W")
    g = h.make_graph([h.make_node("MyLin", ["x", "W"], ["y"], domain="local")], "g", [_vi("x", [8, 64])],
                     [_vi("y", [8, 32])], [w])
    path = _save(g, tmp_path / "local.onnx", functions=[f], extra_opsets=[h.make_opsetid("local", 1)])
    code, out, err = run_cli("analyze", path, "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    assert d["ops"]["unsupported"] == {} and d["ops"]["handled"] == d["ops"]["count"]
    assert 2 * 8 * 64 * 32 <= d["totals"]["forward"]["flops"] < 2 * 8 * 64 * 32 * 1.1  # + the loss on [8, 32]


pytest.importorskip("transformers")


def test_moe_top_k_zero_is_refused(run_cli, tmp_path):
    cfg = {"model_type": "mixtral", "architectures": ["MixtralForCausalLM"], "hidden_size": 64,
           "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "vocab_size": 256, "num_local_experts": 4, "num_experts_per_tok": 0}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    code, out, err = run_cli(str(tmp_path / "c.json"), "--steps", "1")
    assert code == 2 and "num_experts_per_tok = 0" in err and err.count("\n") == 1


def test_sizes_transformers_fills_in_are_stated(run_cli, tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4}))
    code, out, err = run_cli(str(tmp_path / "c.json"), "--steps", "1", "--batch-size", "1", "--seq-len", "8",
                             "--format", "json")
    assert code == 0, err
    notes = [a for a in json.loads(out)["assumptions"] if "defaults used" in a]
    # vocab_size is the only core size left out; n_layer / n_embd / n_head (and their aliases) were given
    assert len(notes) == 1 and "does not give vocab_size:" in notes[0] and "vocab_size 50,257" in notes[0]


def test_a_torch_model_with_nothing_to_train_says_so(run_cli, tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "m.py").write_text(
        "import torch\n\nclass M(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.register_buffer('w', torch.ones(8, 4))\n    def forward(self, x):\n        return x @ self.w\n\n"
        "def build():\n    return M()\n")
    code, out, err = run_cli(f"{tmp_path / 'm.py'}:build", "--input", "x=float32[2,8]", "--steps", "1")
    assert code == 2 and "nothing to train: the loss does not depend on any trainable parameter" in err
    assert err.count("\n") == 1


def test_one_gpu_per_node_gets_one_nic_and_no_nvlink_in_its_notes(run_cli):
    """--gpus-per-node 1 on H100s said 'NVLink ... inside a node' and gave each 1-GPU node 8 x 400 Gbit/s: a DGX
    H100 has one 400 Gbit/s NIC per GPU, so a 1-GPU node has 400 Gbit/s."""
    from pathlib import Path

    onnx_path = Path(__file__).resolve().parents[1] / "examples" / "gpt2-tiny.onnx"
    code, out, err = run_cli(str(onnx_path), "--gpu", "h100", "--gpus", "4", "--gpus-per-node", "1",
                             "--batch-size", "32", "--steps", "10", "--format", "json")
    assert code == 0, err
    notes = json.loads(out)["assumptions"]
    assert any("inter-node bandwidth 400 Gbit/s per node (default: 1 x 400 Gbit/s" in a for a in notes), notes
    comm = [a for a in notes if "ring all-reduce" in a]
    assert comm and "NVLink" not in comm[0] and "one GPU per node: 400 Gbit/s" in comm[0]
    code, out, err = run_cli(str(onnx_path), "--gpu", "h100", "--gpus", "16", "--batch-size", "32", "--steps", "10",
                             "--format", "json")
    assert any("inter-node bandwidth 3200 Gbit/s per node" in a for a in json.loads(out)["assumptions"])


# ---- malformed ONNX graphs (left over from that review; refused with one line since 2026-12-06) -------------------

def _matmul_graph(path, w=None, nodes=None, x_shape=(8, 16), opset=17):
    w = w if w is not None else nh.from_array(np.zeros((16, 32), np.float32), "w")
    nodes = nodes or [h.make_node("MatMul", ["x", "w"], ["y"])]
    g = h.make_graph(nodes, "m", [_vi("x", list(x_shape))], [_vi("y", [8, 32])], [w])
    model = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    onnx.save(model, str(path))
    return str(path)


def _conv_graph(path, op, x_shape, w_shape, group):
    w = nh.from_array(np.zeros(w_shape, np.float32), "w")
    g = h.make_graph([h.make_node(op, ["x", "w"], ["y"], group=group)], "c", [_vi("x", list(x_shape))],
                     [_vi("y", None)], [w])
    return _save(g, path)


def _refused(run_cli, path, *needles):
    code, out, err = run_cli("analyze", path)
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and "Traceback" not in err
    for s in needles:
        assert s in err, err


def test_an_initializer_without_a_data_type_is_refused(run_cli, tmp_path):
    """data_type 0 (UNDEFINED) was read as 'no float initializers' and the MatMul priced without weights."""
    w = nh.from_array(np.zeros((16, 32), np.float32), "w")
    w.data_type = 0
    _refused(run_cli, _matmul_graph(tmp_path / "d.onnx", w=w), "initializer 'w' has no valid data type")


def test_a_tensor_written_by_two_nodes_is_refused(run_cli, tmp_path):
    """Two MatMuls writing 'y' were both priced (2x the work of the graph they claim to be)."""
    two = [h.make_node("MatMul", ["x", "w"], ["y"], name="a"), h.make_node("MatMul", ["x", "w"], ["y"], name="b")]
    _refused(run_cli, _matmul_graph(tmp_path / "t.onnx", nodes=two), "tensor 'y' is written twice",
             "node 'a' and node 'b'")
    over = [h.make_node("MatMul", ["x", "w"], ["w"], name="c")]  # a node overwriting an initializer
    g = h.make_graph(over, "o", [_vi("x", [8, 16])], [_vi("w", [8, 32])],
                     [nh.from_array(np.zeros((16, 32), np.float32), "w")])
    _refused(run_cli, _save(g, tmp_path / "o.onnx"), "tensor 'w' is written twice",
             "a graph input or initializer")


@pytest.mark.parametrize("op, x, w, group, needs", [
    ("Conv", (2, 6, 8, 8), (8, 3, 3, 3), 4, "needs 12"),         # C = W[1] x group = 3 x 4 = 12, not 6
    ("Conv", (2, 6, 8, 8), (6, 2, 3, 3), 4, "needs 8"),          # 2 x 4 = 8 channels, and 6 outputs not / 4
    ("ConvTranspose", (2, 8, 8, 8), (5, 4, 3, 3), 1, "needs 5"),  # ConvTranspose: C = W[0] = 5
])
def test_a_convolution_whose_channels_contradict_its_weight_is_refused(run_cli, tmp_path, op, x, w, group, needs):
    """ONNX shape inference does not check Conv channels against the weight and group: such graphs were priced."""
    _refused(run_cli, _conv_graph(tmp_path / "c.onnx", op, x, w, group), f"({op})", needs)


def test_a_consistent_grouped_convolution_is_still_priced(run_cli, tmp_path):
    """Control for the check above: depthwise (8 channels, group 8, W [8, 1, 3, 3]) and ConvTranspose with
    W [8, 4, 3, 3] (C = W[0] = 8, group 2: 8 outputs) are valid."""
    for op, w, group in (("Conv", (8, 1, 3, 3), 8), ("ConvTranspose", (8, 4, 3, 3), 2)):
        code, out, err = run_cli("analyze", _conv_graph(tmp_path / f"{op}.onnx", op, (2, 8, 8, 8), w, group))
        assert code == 0, err


def test_a_zero_size_input_dim_is_named_as_such(run_cli, tmp_path):
    """dim_value 0 is read as unknown, as exporters use it; the message no longer calls it a symbolic dim."""
    path = _matmul_graph(tmp_path / "z.onnx", x_shape=(0, 16))
    _refused(run_cli, path, "dim 0 (size 0, read as unknown) of input 'x' is unbound", "--batch-size")
    code, out, err = run_cli("analyze", path, "--batch-size", "4", "--format", "json")
    assert code == 0 and "zero-size dim 0 of input 'x' bound to 4" in json.loads(out)["assumptions"]


def test_an_opset_newer_than_the_installed_onnx_is_stated(run_cli, tmp_path):
    newest = onnx.defs.onnx_opset_version()
    code, out, err = run_cli("analyze", _matmul_graph(tmp_path / "n.onnx", opset=newest + 5), "--format", "json")
    assert code == 0, err
    assert any(f"opset {newest + 5}, newer than the installed onnx" in a for a in json.loads(out)["assumptions"])
    code, out, err = run_cli("analyze", _matmul_graph(tmp_path / "k.onnx", opset=newest), "--format", "json")
    assert code == 0 and not any("newer than the installed" in a for a in json.loads(out)["assumptions"])


def test_a_package_file_named_by_path_gets_the_module_form_suggested(run_cli, tmp_path, monkeypatch):
    """relpkg/tiny.py does `from .blocks import make`: loaded as a file it cannot import its sibling; the error now
    names the form that works (relpkg.tiny:build), which is then accepted. (A package name no other test uses: an
    imported 'models' package of another test would shadow it in sys.modules.)"""
    import sys

    pkg = tmp_path / "wl_relpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "blocks.py").write_text("import torch\n\ndef make():\n    return torch.nn.Linear(4, 4)\n")
    (pkg / "tiny.py").write_text("from .blocks import make\n\ndef build():\n    return make()\n")
    monkeypatch.chdir(tmp_path)
    args = ("--gpu", "a100", "--steps", "1", "--input", "x=float32[2,4]")
    code, out, err = run_cli("wl_relpkg/tiny.py:build", *args)
    assert code == 2 and "name it as a module, wl_relpkg.tiny:build, with '.' as the working folder" in err, err
    try:
        code, out, err = run_cli("wl_relpkg.tiny:build", *args)
        assert code == 0, err
    finally:
        for name in [n for n in sys.modules if n == "wl_relpkg" or n.startswith("wl_relpkg.")]:
            del sys.modules[name]


def test_a_file_source_imports_its_project_packages_from_the_current_directory(tmp_path, monkeypatch, run_cli):
    """Review: `wattlint models/tiny_mlp.py:build` in a project whose file does `from models.blocks import ...` failed
    (ModuleNotFoundError: No module named 'models') while `wattlint check` loaded it (it puts the project root on the
    path): the current directory is importable too, after the file's own folder."""
    import shutil

    root = Path(__file__).resolve().parents[1] / "examples" / "project"
    shutil.copytree(root / "models", tmp_path / "models")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("analyze", "models/tiny_mlp.py:build", "--input", "x=float32[512,784]")
    assert code == 0, err
    import sys

    assert str(tmp_path) not in sys.path  # not left behind
