"""ONNX frontend review: causal masks at any length and from dynamo-style exports, which inputs --batch-size
resizes, external data next to a symlinked model (Hugging Face hub cache) and in Constant nodes, value_info of
custom ops, control flow (constant trip counts and conditions, nested Ifs) and malformed nodes. Expected values are
hand counts."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from wattlint.frontends.onnx import analyze_onnx
from wattlint.types import InputError, Phase

F, I64, B_ = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _vi(name, dims, t=F):
    return helper.make_tensor_value_info(name, t, dims)


def _const(name, value, dtype=np.int64):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype=dtype), name))


def _w(name, dims):
    return numpy_helper.from_array(np.zeros(dims, dtype=np.float32), name)


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _save(tmp_path, model, name="m.onnx"):
    p = tmp_path / name
    onnx.save(model, str(p))
    return p


def _fwd(g, kind=None):
    return [r for r in g.records if r.phase is Phase.FORWARD and (kind is None or r.kind.value == kind)]


def _bwd(g, kind=None):
    return [r for r in g.records if r.phase is Phase.BACKWARD and (kind is None or r.kind.value == kind)]


# ---- causal masks -------------------------------------------------------------------------------------------------

H, D = 4, 16  # heads, head dim; model width 64


def _attention_model(tmp_path, style: str):
    """One attention layer over ids [batch, seq] (q, k, v [B, 4, S, 16]) whose scores get a causal mask built at run
    time from the sequence length, as exporters write it:

    * ``torchscript``: Range(S) -> Unsqueeze -> LessOrEqual -> Expand(target from Where(Equal(.., -1), ..)) ->
      Where(mask, 0, -inf) (TorchScript's SDPA mask; the Where-computed Expand target is what onnx inference cannot
      follow, so the frontend folds the mask's integer ancestors to Constants);
    * ``dynamo``: the same causal part And-ed with the padding of an ``attention_mask`` input gathered by GatherND,
      the fill values scalar initializers (torch.onnx's dynamo exporter);
    * ``float_padding``: the TorchScript causal part And-ed with padding from a float ``attention_mask`` input."""
    d_model = H * D
    nodes = [helper.make_node("Gather", ["E", "ids"], ["h"])]
    for x in "qkv":
        perm = [0, 2, 3, 1] if x == "k" else [0, 2, 1, 3]
        nodes += [helper.make_node("MatMul", ["h", f"W{x}"], [f"{x}0"]),
                  helper.make_node("Reshape", [f"{x}0", "heads"], [f"{x}1"]),
                  helper.make_node("Transpose", [f"{x}1"], [x], perm=perm)]
    nodes += [_const("heads", [0, 0, H, D]), _const("one", 1), _const("zero", 0), _const("ax0", [0]),
              _const("ax1", [1]), _const("minus1", -1), _const("ones2", [1, 1]),
              helper.make_node("Shape", ["ids"], ["sh"]),
              helper.make_node("Gather", ["sh", "one"], ["n"]),
              helper.make_node("Range", ["zero", "n", "one"], ["r"]),
              helper.make_node("Unsqueeze", ["r", "ax1"], ["rows"]),
              helper.make_node("Unsqueeze", ["r", "ax0"], ["cols"]),
              helper.make_node("LessOrEqual", ["cols", "rows"], ["tril"]),  # [S, S]: key <= query
              helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
              helper.make_node("Concat", ["n1", "n1"], ["t0"], axis=0),
              helper.make_node("Equal", ["t0", "minus1"], ["is_neg"]),
              helper.make_node("Where", ["is_neg", "ones2", "t0"], ["t1"]),
              helper.make_node("Expand", ["tril", "t1"], ["causal"])]
    inputs = [_vi("ids", ["batch", "seq"], I64)]
    inits = [_w("E", [50, d_model]), *(_w(f"W{x}", [d_model, d_model]) for x in "qkv")]
    if style in ("torchscript", "float_padding"):
        nodes += [_const("fill0", 0.0, np.float32), _const("fill_inf", -np.inf, np.float32)]
    if style == "torchscript":
        nodes.append(helper.make_node("Where", ["causal", "fill0", "fill_inf"], ["bias"]))
    elif style == "float_padding":  # padding from a float input, which the mask cannot be evaluated without
        inputs.append(_vi("attention_mask", ["batch", "seq"]))
        nodes += [_const("ax12", [1, 2]), helper.make_node("Unsqueeze", ["attention_mask", "ax12"], ["am4"]),
                  helper.make_node("Cast", ["am4"], ["pad"], to=B_),
                  helper.make_node("And", ["causal", "pad"], ["both"]),  # [B, 1, S, S]
                  helper.make_node("Where", ["both", "fill0", "fill_inf"], ["bias"])]
    else:
        inputs.append(_vi("attention_mask", ["batch", "seq"], I64))
        inits += [numpy_helper.from_array(np.array(0.0, np.float32), "val_97"),
                  numpy_helper.from_array(np.array(-np.inf, np.float32), "val_98")]
        nodes += [helper.make_node("Cast", ["attention_mask"], ["am"], to=B_),
                  helper.make_node("Gather", ["sh", "zero"], ["nb"]),
                  helper.make_node("Range", ["zero", "nb", "one"], ["rb"]),
                  _const("b_shape", [-1, 1, 1, 1]), _const("s_shape", [1, 1, 1, -1]), _const("last", [-1]),
                  helper.make_node("Reshape", ["rb", "b_shape"], ["rb4"]),
                  helper.make_node("Reshape", ["r", "s_shape"], ["rs4"]),
                  helper.make_node("Unsqueeze", ["nb", "ax0"], ["nb1"]),
                  _const("ones_mid", [1, 1]),
                  helper.make_node("Concat", ["nb1", "ones_mid", "n1"], ["e0"], axis=0),
                  helper.make_node("Max", ["e0", "ax1"], ["e1"]),  # no data propagation through Max
                  helper.make_node("Expand", ["rb4", "e1"], ["bi"]),
                  helper.make_node("Expand", ["rs4", "e1"], ["si"]),
                  helper.make_node("Unsqueeze", ["bi", "last"], ["bi1"]),
                  helper.make_node("Unsqueeze", ["si", "last"], ["si1"]),
                  helper.make_node("Concat", ["bi1", "si1"], ["idx"], axis=-1),  # [B, 1, 1, S, 2]
                  helper.make_node("GatherND", ["am", "idx"], ["pad"]),  # [B, 1, 1, S]
                  helper.make_node("And", ["causal", "pad"], ["both"]),  # [B, 1, S, S]
                  helper.make_node("Where", ["both", "val_97", "val_98"], ["bias"])]
    nodes += [helper.make_node("MatMul", ["q", "k"], ["scores"]),
              helper.make_node("Add", ["scores", "bias"], ["masked"]),
              helper.make_node("Softmax", ["masked"], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", "v"], ["y"])]
    return _save(tmp_path, _model(nodes, inputs, [_vi("y", None)], inits), f"{style}.onnx")


def _attention_flops(g):
    (rec,) = [r for r in _fwd(g, "attention") if r.flops]
    return rec.flops


@pytest.mark.parametrize("seq", [64, 4100])
def test_torchscript_causal_mask_is_causal_at_any_length(tmp_path, seq):
    """Review: the mask was evaluated whole up to 2**24 elements; above --seq-len 4096 it was not, and the ancestry
    check found no Range (folded to Constants): the attention came out non-causal (2x its FLOPs). Forward of the
    fused attention by hand: B x heads x S(S+1)/2 pairs x (4 x 16 + 5) FLOPs."""
    g = analyze_onnx(_attention_model(tmp_path, "torchscript"), batch_size=2, seq_len=seq)
    assert any("1 attention patterns" in a and "1 causal" in a for a in g.assumptions)
    assert _attention_flops(g) == 2 * H * (seq * (seq + 1) // 2) * (4 * D + 5)


def test_causal_mask_at_a_long_sequence_is_never_built_whole(tmp_path):
    """Review: the mask's S x S broadcast was built before its size was checked (9.9 GB at --seq-len 100000, killed
    at 1e8). At S = 12000 the whole boolean mask alone would be 144 MB; no array near that size is made now."""
    import tracemalloc

    p = _attention_model(tmp_path, "torchscript")
    tracemalloc.start()
    try:
        g = analyze_onnx(p, batch_size=1, seq_len=12000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 48 * 2**20, f"{peak / 2**20:.0f} MiB"
    assert _attention_flops(g) == 1 * H * (12000 * 12001 // 2) * (4 * D + 5)


def test_dynamo_style_causal_mask_is_causal(tmp_path):
    """Review: a dynamo export's mask (causal part And-ed with the GatherND-gathered padding, fill values in scalar
    initializers) was read as non-causal at any length: its Range chain is folded to Constants before attention is
    found, and evaluating it stopped at GatherND and at the float initializers. The folded causal part is checked
    (reached through the Where whose fills are read from the initializers, and the And). B=8, S=64, 4 heads of 16:
    32 x 2080 pairs x 69 = 4,592,640 FLOPs (non-causal: 32 x 4096 x 69 = 9,043,968)."""
    p = _attention_model(tmp_path, "dynamo")
    g = analyze_onnx(p, batch_size=8, seq_len=64)
    assert any("1 attention patterns" in a and "1 causal" in a for a in g.assumptions)
    assert _attention_flops(g) == 4_592_640
    g = analyze_onnx(p, batch_size=8, seq_len=5000)  # past the whole-mask limit too: 8 x 5000 x 5000 > 2**24
    assert _attention_flops(g) == 32 * (5000 * 5001 // 2) * 69


def test_causal_part_of_a_mask_that_cannot_be_evaluated_whole(tmp_path):
    """A mask And-ed with padding from a float input (not evaluated: no stand-in value for it) whose causal part
    was folded to Constants (no Range left for the ancestry check) was read as non-causal: the folded causal part
    is itself checked. 2 x 4 heads x 2080 pairs x 69 FLOPs."""
    g = analyze_onnx(_attention_model(tmp_path, "float_padding"), batch_size=2, seq_len=64)
    assert any("1 attention patterns" in a and "1 causal" in a for a in g.assumptions)
    assert _attention_flops(g) == 2 * H * 2080 * (4 * D + 5)


# ---- --batch-size and static inputs ----------------------------------------------------------------------------

def test_batch_size_resizes_only_the_inputs_batched_like_the_first(tmp_path):
    """Review: --batch-size 32 rebound the leading dim of every static input: a fixed [16, 16] mask beside
    ids [batch, 16] became [32, 16] (its MatMul priced at 32 rows, or shape inference failed and the fallback asked
    for the --batch-size it had). By hand: mask [16, 16] @ e [32, 16, 32] = 2 x 32 x 16 x 16 x 32 = 524,288 FLOPs,
    then [32, 16, 32] @ [32, 100] = 3,276,800."""
    nodes = [helper.make_node("Gather", ["E", "ids"], ["e"]), helper.make_node("MatMul", ["mask", "e"], ["a"]),
             helper.make_node("MatMul", ["a", "W2"], ["y"])]
    p = _save(tmp_path, _model(nodes, [_vi("ids", ["batch", 16], I64), _vi("mask", [16, 16])],
                               [_vi("y", ["batch", 16, 100])], [_w("E", [100, 32]), _w("W2", [32, 100])]))
    g = analyze_onnx(p, batch_size=32)
    assert dict((t.name, t.shape) for t in g.inputs) == {"ids": (32, 16), "mask": (16, 16)}
    assert [r.flops for r in _fwd(g, "matmul")] == [524_288, 3_276_800]
    assert "input 'mask': dim 0 (16) kept, not a batch: the first input's batch dim is 'batch'" in g.assumptions
    # a static batch shared by the inputs is still resized: x [8, 16] and labels-like y [8, 16] both to 32
    nodes = [helper.make_node("Add", ["x", "y"], ["s"]), helper.make_node("MatMul", ["s", "W"], ["o"])]
    p = _save(tmp_path, _model(nodes, [_vi("x", [8, 16]), _vi("y", [8, 16])], [_vi("o", [8, 10])], [_w("W", [16, 10])]),
              "static.onnx")
    g = analyze_onnx(p, batch_size=32)
    assert [t.shape for t in g.inputs] == [(32, 16), (32, 16)]
    assert [r.flops for r in _fwd(g, "matmul")] == [2 * 32 * 16 * 10]


def test_baked_batch_fallback_binds_the_symbolic_inputs(tmp_path):
    """Review: when a static batch baked into the graph is analyzed at that batch and scaled, the analysis ran with
    no --batch-size, so a symbolic batch of another input was unbound ("pass --batch-size N", which was given).
    x [8, 16] -> Reshape [128] (the batch baked in) -> Reshape [-1, 16] + y [batch, 16] -> @ W [16, 10]: analyzed at
    batch 8, scaled to 32: 2 x 32 x 16 x 10 FLOPs."""
    nodes = [_const("flat", [128]), _const("rows", [-1, 16]),
             helper.make_node("Reshape", ["x", "flat"], ["h"]), helper.make_node("Reshape", ["h", "rows"], ["h2"]),
             helper.make_node("Add", ["h2", "y"], ["a"]), helper.make_node("MatMul", ["a", "W"], ["o"])]
    p = _save(tmp_path, _model(nodes, [_vi("x", [8, 16]), _vi("y", ["batch", 16])], [_vi("o", None)],
                               [_w("W", [16, 10])]))
    g = analyze_onnx(p, batch_size=32)
    assert g.micro_batch == 32
    assert [r.flops for r in _fwd(g, "matmul")] == [2 * 32 * 16 * 10]
    assert any("baked into its shapes" in a for a in g.assumptions)


# ---- external data ---------------------------------------------------------------------------------------------

def _external(t, location, offset=0):
    data = numpy_helper.to_array(t).tobytes()
    t.ClearField("raw_data")
    for f in ("float_data", "int64_data"):
        t.ClearField(f)
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(len(data)))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return data


def test_hub_cache_symlinks_read_the_data_beside_the_link(tmp_path):
    """Review: in a Hugging Face hub cache (snapshots/<rev>/model.onnx and model.onnx_data are links into blobs/)
    the external data was searched beside the link's target (blobs/, where no model.onnx_data is): the Reshape
    target stored there was "missing" (exit 2) and a tied LM head was counted twice. Now read beside the path as
    given: tie read (12 x 4 = 48 parameters), Reshape [8, 8] -> [4, 16] -> @ W [16, 4]: 2 x 4 x 16 x 4 FLOPs. A
    data file in a linked folder that resolves outside the model's folder is still refused."""
    import os

    v, dd = 12, 4
    emb = np.arange(v * dd, dtype=np.float32).reshape(v, dd)
    inits = [numpy_helper.from_array(emb, "wte.weight"), numpy_helper.from_array(emb.T.copy(), "onnx::MatMul_9"),
             numpy_helper.from_array(np.array([4, 16], np.int64), "shape"), _w("W", [16, 4])]
    nodes = [helper.make_node("Gather", ["wte.weight", "ids"], ["h"]),
             helper.make_node("MatMul", ["h", "onnx::MatMul_9"], ["logits"]),
             helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("MatMul", ["r", "W"], ["y"])]
    m = _model(nodes, [_vi("ids", [2, 3], I64), _vi("x", [8, 8])], [_vi("logits", [2, 3, v]), _vi("y", [4, 4])],
               inits)
    blob = b""
    for t in list(m.graph.initializer)[:3]:
        blob += _external(t, "model.onnx_data", offset=len(blob))
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "aaaa").write_bytes(m.SerializeToString())
    (tmp_path / "blobs" / "bbbb").write_bytes(blob)
    snap = tmp_path / "snapshots" / "rev1"
    snap.mkdir(parents=True)
    os.symlink("../../blobs/aaaa", snap / "model.onnx")
    os.symlink("../../blobs/bbbb", snap / "model.onnx_data")
    g = analyze_onnx(snap / "model.onnx")
    assert [r.flops for r in _fwd(g, "matmul") if r.shapes[0] == (4, 16)] == [2 * 4 * 16 * 4]
    assert g.params == v * dd + 16 * 4
    # the data file's folder is a link out of the model's folder: refused, as "../" is
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "model.onnx_data").write_bytes(blob)
    other = tmp_path / "other"
    other.mkdir()
    os.symlink("../elsewhere", other / "sub")
    for t in list(m.graph.initializer)[:3]:
        next(e for e in t.external_data if e.key == "location").value = "sub/model.onnx_data"
    (other / "model.onnx").write_bytes(m.SerializeToString())
    with pytest.raises(InputError, match=r"outside the model's folder \('sub/model.onnx_data'\)"):
        analyze_onnx(other / "model.onnx")
    # review: the data FILE itself a link out of the model's folder (to any file on the machine, read as weights and
    # shape values) is refused too; only a link resolving where the model's own link does (blobs/) is followed
    leak = tmp_path / "leak"
    leak.mkdir()
    for t in list(m.graph.initializer)[:3]:
        next(e for e in t.external_data if e.key == "location").value = "model.onnx_data"
    (leak / "model.onnx").write_bytes(m.SerializeToString())
    os.symlink(tmp_path / "elsewhere" / "model.onnx_data", leak / "model.onnx_data")
    with pytest.raises(InputError, match=r"outside the model's folder \('model.onnx_data'\)"):
        analyze_onnx(leak / "model.onnx")
    # a model linked from another folder, its data beside the file it points to (review: refused as missing)
    linked = tmp_path / "linked"
    linked.mkdir()
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "model.onnx").write_bytes(m.SerializeToString())
    (tmp_path / "real" / "model.onnx_data").write_bytes(blob)
    os.symlink(tmp_path / "real" / "model.onnx", linked / "model.onnx")
    g = analyze_onnx(linked / "model.onnx")
    assert [r.flops for r in _fwd(g, "matmul") if r.shapes[0] == (4, 16)] == [2 * 4 * 16 * 4]


def test_constant_nodes_external_data_never_read_from_the_current_directory(tmp_path, monkeypatch):
    """Review: onnxruntime's symbolic inference was handed the Constant nodes whose tensors are external data
    (onnx.save(..., convert_attribute=True)) and read them relative to the current directory: with the data file
    missing beside the model but present in the working directory, the result depended on the cwd (exit 0, its
    shapes from a file outside the model's folder). The data is missing: exit 2 from any directory."""
    nodes = [_const("shape", [4, 4]), helper.make_node("Reshape", ["x", "shape"], ["h"]),
             helper.make_node("MatMul", ["h", "W"], ["y"])]
    model_dir, work = tmp_path / "model", tmp_path / "work"
    model_dir.mkdir()
    work.mkdir()
    onnx.save(_model(nodes, [_vi("x", [2, 8])], [_vi("y", None)], [_w("W", [4, 3])]), str(model_dir / "m.onnx"),
              save_as_external_data=True, all_tensors_to_one_file=True, location="m.bin", size_threshold=0,
              convert_attribute=True)
    (model_dir / "m.bin").rename(work / "m.bin")
    for cwd in (work, tmp_path):
        monkeypatch.chdir(cwd)
        with pytest.raises(InputError, match=r"shape tensor 'shape' .*'m.bin', which is missing"):
            analyze_onnx(model_dir / "m.onnx")


# ---- declared shapes -------------------------------------------------------------------------------------------

def test_value_info_of_a_custom_op_output_is_kept_when_no_dim_was_rebound(tmp_path):
    """Review: value_info was dropped unconditionally, so the output shape an exporter recorded for a custom op (all
    there is of it) was lost and the classifier Gemm after it went uncosted. Kept when no dim was rebound: the Gemm
    [4, 32] x [32, 10] = 2 x 4 x 32 x 10 = 2,560 FLOPs forward."""
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["a"]), helper.make_node("MyOp", ["a"], ["b"], domain="custom.ai"),
             helper.make_node("Gemm", ["b", "W2"], ["y"])]
    m = _model(nodes, [_vi("x", [4, 32])], [_vi("y", [4, 10])], [_w("W1", [32, 32]), _w("W2", [32, 10])])
    m.graph.value_info.append(_vi("b", [4, 32]))
    g = analyze_onnx(_save(tmp_path, m))
    assert [r.flops for r in _fwd(g) if r.op == "onnx::Gemm"] == [2 * 4 * 32 * 32, 2_560]


def test_output_declared_with_a_zero_size_dim_takes_the_bound_size(tmp_path):
    """Review: an input and output declared [0, 32] (0: unknown): the input was bound to --batch-size 4 but the
    output kept its 0, so the loss was sized over 0 rows. x [4, 32] @ W [32, 32]: the output [4, 32], a cross-entropy
    over 4 rows."""
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["y"])]
    g = analyze_onnx(_save(tmp_path, _model(nodes, [_vi("x", [0, 32])], [_vi("y", [0, 32])], [_w("W1", [32, 32])])),
                     batch_size=4)
    assert g.outputs[0].shape == (4, 32)
    assert any(a.startswith("loss: cross-entropy on the 32-way logits (labels of shape [4]") and "output 'y' [4, 32]: 4 rows" in a
               for a in g.assumptions)
    assert [r.flops for r in _fwd(g) if r.op == "onnx::Gemm"] == [2 * 4 * 32 * 32]


# ---- control flow ----------------------------------------------------------------------------------------------

K = 32
MM = 2 * 4 * K * K  # one [4, 32] @ [32, 32] MatMul


def _loop(trips_node, name="loop"):
    """Loop x trips: h = Relu(h @ W), h0 = x [4, 32]."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond"], ["cond_out"]), helper.make_node("MatMul", ["h", "W"], ["m"]),
         helper.make_node("Relu", ["m"], ["h_out"])],
        "body", [_vi("i", [], I64), _vi("cond", [], B_), _vi("h", [4, K])],
        [_vi("cond_out", [], B_), _vi("h_out", [4, K])])
    return [trips_node, helper.make_node("Loop", [trips_node.output[0], "", "x"], [name], body=body)]


def _matmul_flops(g):
    return sum(r.flops for r in _fwd(g) if r.op == "onnx::MatMul")


@pytest.mark.parametrize("trips", [
    helper.make_node("Constant", [], ["trips"], value_int=5),
    helper.make_node("Constant", [], ["trips"], value_ints=[5]),
    _const("trips", 5)])
def test_loop_trip_count_from_any_constant(tmp_path, trips):
    """Review: a trip count in a Constant's value_int / value_ints was "unknown, counted once": 5 trips of the
    body's MatMul are 5 x 2 x 4 x 32 x 32 FLOPs."""
    g = analyze_onnx(_save(tmp_path, _model(_loop(trips, "y"), [_vi("x", [4, K])], [_vi("y", [4, K])],
                                            [_w("W", [K, K])])))
    assert _matmul_flops(g) == 5 * MM
    assert not any("trip count unknown" in a for a in g.assumptions)


def test_loop_trip_count_from_a_constant_inside_an_if_branch(tmp_path):
    """Review: only the top-level graph's Constants were read, so a Loop in an If branch with its trip count
    beside it was counted once. The then branch (5 trips) is the costlier: 5 x 2 x 4 x 32 x 32 FLOPs."""
    then = helper.make_graph(_loop(_const("trips", 5), "t"), "then", [], [_vi("t", [4, K])])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [], [_vi("e", [4, K])])
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    g = analyze_onnx(_save(tmp_path, _model(nodes, [_vi("x", [4, K]), _vi("c", [], B_)], [_vi("y", [4, K])],
                                            [_w("W", [K, K])])))
    assert _matmul_flops(g) == 5 * MM
    assert not any("trip count unknown" in a for a in g.assumptions)


def _branch(count, name):
    nodes, cur = [], "x"
    for i in range(count):
        nodes.append(helper.make_node("MatMul", [cur, "Wb"], [f"{name}{i}"]))
        cur = f"{name}{i}"
    nodes.append(helper.make_node("Identity", [cur], [name + "_out"]))
    return helper.make_graph(nodes, name, [], [_vi(name + "_out", [4, K])])


@pytest.mark.parametrize("cond,taken", [(False, 1), (True, 3)])
def test_if_with_a_constant_condition_prices_the_branch_taken(tmp_path, cond, taken):
    """Review: an If whose condition is a constant was priced on its costlier branch. then: 3 MatMuls, else: 1;
    the condition False takes the else branch: 1 x 2 x 4 x 32 x 32 FLOPs (3 x when True)."""
    nodes = [_const("c", cond, np.bool_),
             helper.make_node("If", ["c"], ["z"], then_branch=_branch(3, "t"), else_branch=_branch(1, "e")),
             helper.make_node("Gemm", ["z", "Wout"], ["y"])]
    g = analyze_onnx(_save(tmp_path, _model(nodes, [_vi("x", [4, K])], [_vi("y", [4, 10])],
                                            [_w("Wb", [K, K]), _w("Wout", [K, 10])])))
    assert _matmul_flops(g) == taken * MM
    assert any(f"the condition is the constant {cond}" in a for a in g.assumptions)


def test_nested_ifs_walk_each_branch_once(tmp_path, monkeypatch):
    """Review: each If probed both branches with a full walk and then walked the chosen one again, so an If chain
    12 deep (only the then branch nests) made 3^12 walks (29 s at depth 16 for 33 nodes). Each branch is walked
    once now: 2 per If and the graph itself. The leaf MatMul: 2 x 4 x 32 x 32 FLOPs."""
    from wattlint.frontends import onnx as frontend

    def level(depth, tag):
        if depth == 0:
            return helper.make_graph([helper.make_node("MatMul", ["x", "W"], [f"o{tag}"])], f"leaf{tag}", [],
                                     [_vi(f"o{tag}", [4, K])])
        other = helper.make_graph([helper.make_node("Identity", ["x"], [f"o{tag}e"])], f"e{tag}", [],
                                  [_vi(f"o{tag}e", [4, K])])
        return helper.make_graph([helper.make_node("If", ["c"], [f"o{tag}"], then_branch=level(depth - 1, tag + "t"),
                                                   else_branch=other)], f"g{tag}", [], [_vi(f"o{tag}", [4, K])])

    depth = 12
    top = level(depth, "r")
    p = _save(tmp_path, _model(list(top.node), [_vi("x", [4, K]), _vi("c", [], B_)], [_vi("or", [4, K])],
                               [_w("W", [K, K])]))
    walks = []
    walk = frontend._Analysis._walk
    monkeypatch.setattr(frontend._Analysis, "_walk", lambda self, g, **kw: (walks.append(g.name), walk(self, g, **kw)))
    g = analyze_onnx(p)
    assert len(walks) == 2 * depth + 1
    assert _matmul_flops(g) == MM


# ---- malformed nodes -------------------------------------------------------------------------------------------

def _conv_model(x_dims, w_dims, **attrs):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="/c/Conv", **attrs)]
    return _model(nodes, [_vi("x", x_dims)], [_vi("y", None)], [_w("w", w_dims)])


@pytest.mark.parametrize("model,node,says", [
    (_conv_model([2, 3, 4, 4], [8, 3, 7, 7]), "/c/Conv", "output size -2 along spatial dim 0"),
    (_conv_model([2, 3, 8, 8], [8, 3, 3, 3], strides=[0, 0]), "/c/Conv", "strides [0, 0]"),
    (_model([helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[3, 3], strides=[0, 0])],
            [_vi("x", [2, 3, 8, 8])], [_vi("y", None)]), "pool", "strides [0, 0]"),
    (_model([helper.make_node("Loop", ["", "", "x"], ["y"], name="lp")], [_vi("x", [2, K])], [_vi("y", [2, K])]),
     "lp", "has no body"),
    (_model([helper.make_node("If", ["c"], ["y"], name="iff", then_branch=_branch(1, "t"))],
            [_vi("x", [4, K]), _vi("c", [], B_)], [_vi("y", [4, K])], [_w("Wb", [K, K])]), "iff", "no else_branch"),
])
def test_malformed_nodes_are_one_line_exit_2(tmp_path, run_cli, model, node, says):
    """Review: these were priced with exit 0: a conv whose kernel is larger than its input (a negative output size,
    squared into positive FLOPs), stride 0 (the conv / pool left unsupported), a Loop without a body and an If
    without an else branch (counted as nothing). The user's input: one line naming the node, exit 2."""
    code, out, err = run_cli("analyze", _save(tmp_path, model))
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1
    assert f"node {node!r}" in err and says in err


def test_conv_with_an_empty_output_after_inference_is_malformed(tmp_path, run_cli):
    """Review: a conv whose inferred output is 0 x 0 (a 3 x 3 kernel with stride 2 over a 1 x 1 input: (1 - 3) // 2
    + 1 = 0) was priced at 0 FLOPs, exit 0."""
    code, out, err = run_cli("analyze", _save(tmp_path, _conv_model([8, 32, 1, 1], [64, 32, 3, 3], strides=[2, 2])))
    assert code == 2 and "node '/c/Conv'" in err and "output spatial size [0, 0]" in err


def test_stale_value_info_of_standard_ops_is_dropped_when_only_symbolic_dims_are_bound(tmp_path):
    """Review: a static [8, 16] MLP shape-inferred, then its input and output made 'batch' (as onnx.tools'
    update_model_dims does, value_info untouched): kept value_info priced everything after the first MatMul at batch
    8. At --batch-size 32: MatMuls 2 x 32 x 16 x 32 and 2 x 32 x 32 x 8."""
    from onnx import shape_inference
    from onnx.tools import update_model_dims

    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["y"])]
    m = shape_inference.infer_shapes(_model(nodes, [_vi("x", [8, 16])], [_vi("y", [8, 8])],
                                            [_w("W1", [16, 32]), _w("W2", [32, 8])]))
    m = update_model_dims.update_inputs_outputs_dims(m, {"x": ["batch", 16]}, {"y": ["batch", 8]})
    p = tmp_path / "stale.onnx"
    onnx.save(m, p)
    g = analyze_onnx(p, batch_size=32)
    assert sorted(r.flops for r in _fwd(g, "matmul")) == [2 * 32 * 32 * 8, 2 * 32 * 16 * 32]


def test_a_static_input_beside_a_symbolic_batch_is_rebound_unless_it_is_sequence_sized(tmp_path):
    """Review: ids [batch, 16] with a static token_type_ids [8, 16] (a baked batch) was kept at 8 and the export
    then failed (exit 2); a static [16, 16] mask (sequence-sized) stays kept."""
    nodes = [helper.make_node("Gather", ["E", "ids"], ["e"]), helper.make_node("Gather", ["E2", "tt"], ["t"]),
             helper.make_node("Add", ["e", "t"], ["s"]), helper.make_node("MatMul", ["s", "W"], ["y"])]
    m = _model(nodes, [_vi("ids", ["batch", 16], I64), _vi("tt", [8, 16], I64)], [_vi("y", None)],
               [_w("E", [100, 32]), _w("E2", [2, 32]), _w("W", [32, 100])])
    p = tmp_path / "partial.onnx"
    onnx.save(m, p)
    g = analyze_onnx(p, batch_size=32)
    assert dict((t.name, t.shape) for t in g.inputs) == {"ids": (32, 16), "tt": (32, 16)}
    assert [r.flops for r in _fwd(g, "matmul")] == [2 * 32 * 16 * 32 * 100]


def test_a_static_weight_input_beside_a_symbolic_batch_is_kept(tmp_path):
    """Review: x [batch, 16] with a weight passed as an input W2 [48, 48] (not shaped like x): W2 was resized to the
    batch, inference failed and every op was scaled by 4/48. W2 @ W3 is 2 x 48 x 48 x 8 FLOPs whatever the batch."""
    nodes = [helper.make_node("MatMul", ["W2", "W3"], ["P"]), helper.make_node("MatMul", ["x", "W1"], ["h"]),
             helper.make_node("MatMul", ["h", "P"], ["y"])]
    m = _model(nodes, [_vi("x", ["batch", 16]), _vi("W2", [48, 48])], [_vi("y", None)],
               [_w("W1", [16, 48]), _w("W3", [48, 8])])
    p = tmp_path / "w.onnx"
    onnx.save(m, p)
    g = analyze_onnx(p, batch_size=4)
    assert dict((t.name, t.shape) for t in g.inputs) == {"x": (4, 16), "W2": (48, 48)}
    assert sorted(r.flops for r in _fwd(g, "matmul")) == sorted([2 * 48 * 48 * 8, 2 * 4 * 16 * 48, 2 * 4 * 48 * 8])


def test_the_exporters_shapes_are_kept_when_nothing_is_bound(tmp_path):
    """Review: a static model whose Reshape target is computed (Shape -> Mul -> Reshape) carries the exporter's
    shape for it; dropping that annotation left the Relu after it uncosted. Relu over [16, 8]: 128 FLOPs."""
    from onnx import shape_inference

    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Mul", ["s", "two"], ["t"]),
             helper.make_node("Div", ["t", "four"], ["u"]), helper.make_node("Reshape", ["x", "u"], ["r"]),
             helper.make_node("Relu", ["r"], ["a"]), helper.make_node("MatMul", ["a", "W"], ["y"])]
    inits = [numpy_helper.from_array(np.array([2, 1], np.int64), "two"),
             numpy_helper.from_array(np.array([1, 4], np.int64), "four"), _w("W", [8, 4])]
    m = _model(nodes, [_vi("x", [8, 16])], [_vi("y", [16, 4])], inits)
    m.graph.value_info.append(_vi("r", [16, 8]))
    m = shape_inference.infer_shapes(m)
    p = tmp_path / "vi.onnx"
    onnx.save(m, p)
    g = analyze_onnx(p)
    assert [r.flops for r in _fwd(g) if r.op.endswith("Relu")] == [16 * 8]


def test_assumed_cross_entropy_runs_the_kernels_torch_runs(tmp_path):
    """The assumed loss is PyTorch's F.cross_entropy as the torch frontend prices it (tests/test_torch_review_s49.py,
    the same hand figures for 128 rows x 1000 classes fp32 = 512,000 B of logits): log_softmax reads and writes them,
    nll_loss reads one fp32 log-prob and one int64 label per row and writes 4 B; backward, nll_loss_backward writes
    the dense 512,000 B gradient, log_softmax's backward reads y and dy (1,024,000 B) and writes 512,000 B. It was
    one fused kernel each way (3 of these 6 logit-sized passes), so ONNX and torch disagreed on a small LM's bytes."""
    nodes = [helper.make_node("Gemm", ["x", "W"], ["y"])]
    g = analyze_onnx(_save(tmp_path, _model(nodes, [_vi("x", [128, 16])], [_vi("y", [128, 1000])],
                                            [_w("W", [16, 1000])])))
    loss = [(r.phase, r.op, r.flops, r.bytes_read, r.bytes_written) for r in g.records if r.op.startswith("loss::")]
    assert loss == [
        (Phase.FORWARD, "loss::log_softmax", 5 * 128_000, 512_000, 512_000),
        (Phase.FORWARD, "loss::nll_loss", 128, 128 * 4 + 128 * 8, 4),
        (Phase.BACKWARD, "loss::nll_loss_backward", 128, 128 * 8 + 4, 512_000),
        (Phase.BACKWARD, "loss::log_softmax_backward", 4 * 128_000, 1_024_000, 512_000)]
