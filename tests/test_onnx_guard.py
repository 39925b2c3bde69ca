"""Shape inference's memory at a long bound sequence (refused before it runs, not killed by the kernel), and a
causal mask stored as a float buffer too large to evaluate whole (nanoGPT's tril(ones(T, T)) past 2**24 elements).

The in-process tests keep every size small and pin the memory left (``memory_headroom``); the sizes that would
really exhaust memory run only in a child process under an address-space limit (RLIMIT_AS), which refuses them
before any inference runs."""

from __future__ import annotations

import io
import math
import subprocess
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from wattlint.cli import main
from wattlint.frontends import onnx_shapes
from wattlint.frontends.onnx import analyze_onnx
from wattlint.types import InputError, Phase

F, I64 = TensorProto.FLOAT, TensorProto.INT64
CAP = 4_000_000_000  # bytes of address space for the child processes


def _vi(name, dims, t=F):
    return helper.make_tensor_value_info(name, t, dims)


def _const(name, value, dtype=np.int64):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype=dtype), name))


def _save(tmp_path, nodes, inputs, outputs, inits=(), name="m.onnx", opsets=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), *opsets])
    p = tmp_path / name
    onnx.save(m, str(p))
    return p


def _fwd(g, kind=None):
    return [r for r in g.records if r.phase is Phase.FORWARD and (kind is None or r.kind.value == kind)]


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _capped(*argv, timeout=300):
    """The CLI in a child process limited to :data:`CAP` bytes of address space."""
    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))
    return subprocess.run([sys.executable, "-m", "wattlint", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit)


# ---- 1. onnx's data propagation: the position ids Range(0, S) ---------------------------------------------------

D = 8


def _position_ids_model(tmp_path):
    """GPT-2's embeddings as the TorchScript exporter writes them: ids [batch, seq]; positions Range(0,
    Gather(Shape(ids), 1), 1) -> Unsqueeze(0) -> Gather(wpe); + Gather(wte, ids); a MatMul to price.

    onnx's data propagation, counted by hand at sequence length S: Shape writes its 2 dims; Gather reads them,
    makes the scalar index Constant 1 entry and writes 1; Range has no propagator, but once the shape computation
    is folded (Range(0, S, 1) of constants) its output is 1-D of known length S, so Unsqueeze reads S entries (one
    per element: "an array of S unknown values") and copies them to its output: 2S + 4 entries in all."""
    nodes = [helper.make_node("Shape", ["ids"], ["sh"]), _const("one", 1),
             helper.make_node("Gather", ["sh", "one"], ["s"], axis=0), _const("zero", 0), _const("step", 1),
             helper.make_node("Range", ["zero", "s", "step"], ["pos"], name="range"), _const("ax", [0]),
             helper.make_node("Unsqueeze", ["pos", "ax"], ["pos2"], name="unsq"),
             helper.make_node("Gather", ["wpe", "pos2"], ["pe"], name="wpe_gather"),
             helper.make_node("Gather", ["wte", "ids"], ["te"], name="wte_gather"),
             helper.make_node("Add", ["te", "pe"], ["h"]), helper.make_node("MatMul", ["h", "w"], ["y"], name="fc")]
    inits = [numpy_helper.from_array(np.ones((16, D), np.float32), "wte"),
             numpy_helper.from_array(np.ones((4, D), np.float32), "wpe"),
             numpy_helper.from_array(np.ones((D, D), np.float32), "w")]
    return _save(tmp_path, nodes, [_vi("ids", ["batch", "seq"], I64)], [_vi("y", ["batch", "seq", D])], inits)


def _entries(s):
    return 2 * s + 4


def _pin_memory(monkeypatch, room):
    monkeypatch.setattr(onnx_shapes, "memory_headroom", lambda: room)
    monkeypatch.setattr(onnx_shapes, "MIN_REFUSED_BYTES", 0)


def test_refused_one_past_the_memory_left_priced_at_it(tmp_path, monkeypatch):
    """The refusal is decided before shape inference from what data propagation would hold: 2S + 4 entries of
    ~72 bytes, allowed while twice that fits in the memory left. With the memory left pinned to what S = 1000
    needs, S = 1000 is priced (its MatMul: 2 x S x 8 x 8 FLOPs) and S = 1001 refused, naming the size, the count,
    the longest vector and the --seq-len that fits; onnx's inference with data propagation never runs for it."""
    p = _position_ids_model(tmp_path)
    s0 = 1000
    room = _entries(s0) * onnx_shapes.DATA_PROP_ENTRY_BYTES * onnx_shapes.MEMORY_SHARE
    _pin_memory(monkeypatch, room)
    g = analyze_onnx(p, batch_size=1, seq_len=s0)
    assert [r.flops for r in _fwd(g) if r.module == "fc" or r.op == "onnx::MatMul"] == [2 * s0 * D * D]

    import onnx.shape_inference as si

    real, calls = si.infer_shapes, []

    def counted(*a, **k):
        calls.append(k.get("data_prop"))
        return real(*a, **k)
    monkeypatch.setattr(si, "infer_shapes", counted)
    with pytest.raises(InputError) as e:
        analyze_onnx(p, batch_size=1, seq_len=s0 + 1)
    msg = str(e.value)
    assert calls == []  # refused before onnx's inference ran
    assert f"--seq-len {s0 + 1:,} is too large for shape inference" in msg
    assert f"onnx's data propagation would hold {_entries(s0 + 1):,} values at ~72 bytes each" in msg
    assert f"the longest vector, 'pos' of node unsq, has {s0 + 1:,}" in msg
    fit = (s0 + 1) * room // (_entries(s0 + 1) * 72 * 2)
    assert fit == s0 and msg.endswith(f"analyze a --seq-len of about {fit:,} or less")
    code, out, err = _cli("analyze", p, "--batch-size", 1, "--seq-len", s0 + 1)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "too large for shape inference" in err


def test_data_prop_entries_counted_as_onnx_makes_them(tmp_path):
    """The count itself, on the model's own nodes and the 1-D lengths a plain inference of the folded graph gives:
    2S + 4 (see _position_ids_model), the longest vector the S positions, met first at the Unsqueeze."""
    import onnx as _onnx

    from wattlint.frontends.onnx_fold import fold_shape_values

    s = 123_457
    m = _onnx.load(str(_position_ids_model(tmp_path)))
    for d, v in zip(m.graph.input[0].type.tensor_type.shape.dim, (1, s)):
        d.dim_value = v
    inferred = onnx_shapes._infer_plain(m)
    shapes, _ = onnx_shapes._inferred_dims(inferred.graph)
    assert fold_shape_values(inferred.graph, {k: (None, v) for k, v in shapes.items() if None not in v})
    dims, lengths = onnx_shapes._inferred_dims(onnx_shapes._infer_plain(inferred).graph)
    assert lengths["pos"] == s
    entries, longest = onnx_shapes.data_prop_entries(m.graph, lengths, {k: len(v) for k, v in dims.items()}, 17)
    assert (entries, longest) == (2 * s + 4, ("pos", s, "unsq"))


def test_long_sequence_refused_in_one_line_before_memory_runs_out(tmp_path):
    """The bug: at --seq-len 1e8 onnx's data propagation asks for 2e8 entries (~14 GB here, ~60 GB for a GPT-2
    export) and the kernel kills the process before any MemoryError. Under a 4 GB address-space limit the CLI now
    refuses at once, exit 2, one line, with the hand count 2 x 1e8 + 4 (before: "ran out of memory" after onnx had
    filled the limit, or a kill without one)."""
    p = _position_ids_model(tmp_path)
    r = _capped("analyze", p, "--batch-size", 1, "--seq-len", 100_000_000)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and r.stdout == "" and len(lines) == 1, r.stderr[-2000:]
    assert "--seq-len 100,000,000 is too large for shape inference" in lines[0]
    assert f"would hold {_entries(100_000_000):,} values" in lines[0]
    assert "analyze a --seq-len of about" in lines[0]


def test_long_sequence_below_the_limit_is_priced_under_the_same_limit(tmp_path):
    """Under the same 4 GB limit S = 1e6 (2e6 + 4 entries, ~140 MB) is priced: exit 0 and its MatMul's FLOPs."""
    import json

    p = _position_ids_model(tmp_path)
    r = _capped("analyze", p, "--batch-size", 1, "--seq-len", 1_000_000, "--format", "json")
    assert r.returncode == 0, r.stderr[-2000:]
    fwd = json.loads(r.stdout)["totals"]["forward"]["flops"]
    assert fwd >= 2 * 1_000_000 * D * D


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc/self/status")
def test_entry_size_matches_what_onnx_allocates(tmp_path):
    """DATA_PROP_ENTRY_BYTES against the installed onnx: Range(0, N) of constants -> Unsqueeze holds 2N entries;
    the peak RSS (VmHWM: ru_maxrss would start at this process's, kept across exec) of one inference with data
    propagation grows by 2N x ~72 bytes (N = 2e6: ~275 MiB)."""
    n = 2_000_000
    code = f"""
import numpy as np, onnx
from onnx import helper, numpy_helper, shape_inference, TensorProto
def hwm():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
c = lambda name, v: helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(v, np.int64), name))
nodes = [c("s", 0), c("l", {n}), c("d", 1), c("ax", [0]), helper.make_node("Range", ["s", "l", "d"], ["r"]),
         helper.make_node("Unsqueeze", ["r", "ax"], ["u"])]
g = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info("u", TensorProto.INT64, None)])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
shape_inference.infer_shapes(m, data_prop=False)
r0 = hwm()
shape_inference.infer_shapes(m, data_prop=True)
print(hwm() - r0)
"""

    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert r.returncode == 0, r.stderr[-2000:]
    grown = int(r.stdout.strip())
    assert 0.7 < grown / (2 * n * onnx_shapes.DATA_PROP_ENTRY_BYTES) < 1.4, grown


def test_reasonable_long_sequence_priced_as_without_the_check(tmp_path, monkeypatch):
    """At S = 32768 the check refuses nothing and changes nothing: the same records with it as without it, and the
    model it reads is left as it was."""
    p = _position_ids_model(tmp_path)
    with_check = analyze_onnx(p, batch_size=4, seq_len=32768)
    monkeypatch.setattr(onnx_shapes._Shapes, "_check_inference_memory", lambda self: None)
    without = analyze_onnx(p, batch_size=4, seq_len=32768)
    key = [(r.op, r.phase, r.flops, r.bytes_read, r.bytes_written) for r in with_check.records]
    assert key == [(r.op, r.phase, r.flops, r.bytes_read, r.bytes_written) for r in without.records]
    assert with_check.assumptions == without.assumptions


# ---- 2. onnxruntime's symbolic inference: an int64 ConstantOfShape mask -----------------------------------------

def _ort_mask_model(tmp_path):
    """An int64 all-ones mask [batch, seq] (ConstantOfShape(Shape(ids))) beside a contrib op onnx cannot infer
    (com.microsoft FusedMatMul), so onnxruntime's symbolic inference runs: it holds the mask as np.ones(B x S) times
    its fill value, B x S elements at ~16 bytes (rank 2: no op reads it as a list)."""
    nodes = [helper.make_node("Shape", ["ids"], ["sh"]),
             helper.make_node("ConstantOfShape", ["sh"], ["mask"], name="ones_mask",
                              value=numpy_helper.from_array(np.array([1], np.int64))),
             helper.make_node("Cast", ["mask"], ["maskf"], to=F),
             helper.make_node("Gather", ["wte", "ids"], ["te"]), _const("ax", [2]),
             helper.make_node("Unsqueeze", ["maskf", "ax"], ["mask3"]),
             helper.make_node("Mul", ["te", "mask3"], ["h"]),
             helper.make_node("FusedMatMul", ["h", "w"], ["y"], domain="com.microsoft", name="fmm")]
    inits = [numpy_helper.from_array(np.ones((16, D), np.float32), "wte"),
             numpy_helper.from_array(np.ones((D, D), np.float32), "w")]
    return _save(tmp_path, nodes, [_vi("ids", ["batch", "seq"], I64)], [_vi("y", None)], inits,
                 opsets=[helper.make_opsetid("com.microsoft", 1)])


def test_symbolic_inference_refused_past_the_memory_left(tmp_path, monkeypatch):
    p = _ort_mask_model(tmp_path)
    b, s0 = 2, 3000
    room = b * s0 * onnx_shapes.ORT_ELEMENT_BYTES * onnx_shapes.MEMORY_SHARE
    _pin_memory(monkeypatch, room)
    g = analyze_onnx(p, batch_size=b, seq_len=s0)
    assert any("symbolic shape inference (onnxruntime) resolved" in a for a in g.assumptions), g.assumptions
    assert [r.flops for r in _fwd(g) if r.op == "com.microsoft::FusedMatMul"] == [2 * b * s0 * D * D]
    with pytest.raises(InputError, match=rf"--batch-size {b} x --seq-len {s0 + 1:,} is too large for shape "
                                         rf"inference: onnxruntime's symbolic shape inference would hold "
                                         rf"{b * (s0 + 1):,} values at ~16 bytes each .*the longest vector, 'mask' "
                                         rf"of node ones_mask, has {b * (s0 + 1):,}"):
        analyze_onnx(p, batch_size=b, seq_len=s0 + 1)


def test_ort_elements_of_a_vector_count_once_per_reader():
    """A 1-D int64 ConstantOfShape of S elements read by two ops: held once, and once more as a list per reader."""
    nodes = [_const("n", [7]), helper.make_node("ConstantOfShape", ["n"], ["v"], name="cos",
                                                value=numpy_helper.from_array(np.array([0], np.int64))),
             helper.make_node("Cast", ["v"], ["a"], to=F), helper.make_node("Neg", ["v"], ["b"]),
             helper.make_node("ConstantOfShape", ["n"], ["f"])]  # float: not held
    g = helper.make_graph(nodes, "g", [], [_vi("a", None), _vi("b", None, I64), _vi("f", None)])
    types = {"v": ("int64", (7,)), "f": ("float32", (7,))}
    assert onnx_shapes.ort_data_elements(g, types) == (7 * 3, ("v", 7, "cos"))


# ---- 3. a nanoGPT causal mask buffer of more than 2**24 elements --------------------------------------------------

BH, HD = 2, 8  # heads, head dim (batch 1)


def _attn_flops(s, causal):
    pairs = s * (s + 1) // 2 if causal else s * s
    return BH * pairs * (2 * HD + 2 * HD) + 5 * BH * pairs  # QK^T and PV GEMMs + softmax work, per pair


def _buffer_mask_model(tmp_path, t, s, style, fill=None):
    """Scores MatMul(q [1, 2, S, 8], k^T) masked by a float buffer ``bias`` [1, 1, T, T] sliced to [:S, :S] as
    nanoGPT writes it: masked_fill(bias == 0, -inf) ("eq0", causal for tril(ones)) or masked_fill(bias.bool(),
    -inf) ("bool": blocks the lower triangle, not causal), or added to the scores ("add": review, read as causal at T =
    4097 when the 0/1 branch applied in any context; adding 0 or 1 blocks nothing). ``fill``: the buffer (default
    tril(ones))."""
    buf = np.tril(np.ones((t, t), np.float32)) if fill is None else fill
    bias = numpy_helper.from_array(buf.reshape(1, 1, t, t), "bias")
    n = [helper.make_node("MatMul", ["q", "kt"], ["scores"]), _const("st", [0, 0]), _const("en", [s, s]),
         _const("axes", [2, 3]), helper.make_node("Slice", ["bias", "st", "en", "axes"], ["b"]),
         _const("ninf", -np.inf, np.float32)]
    if style == "eq0":
        n += [_const("z", 0.0, np.float32), helper.make_node("Equal", ["b", "z"], ["cond"])]
    elif style == "bool":
        n += [helper.make_node("Cast", ["b"], ["cond"], to=TensorProto.BOOL)]
    if style == "add":  # the 0/1 buffer ADDED to the scores: adding 0 or 1 blocks nothing
        n += [helper.make_node("Add", ["scores", "b"], ["masked"])]
    else:
        n += [helper.make_node("Where", ["cond", "ninf", "scores"], ["masked"])]
    n += [helper.make_node("Softmax", ["masked"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["o"])]
    return _save(tmp_path, n, [_vi("q", [1, BH, s, HD]), _vi("kt", [1, BH, HD, s]), _vi("v", [1, BH, s, HD])],
                 [_vi("o", None)], [bias], name=f"{style}_{t}.onnx")


@pytest.mark.parametrize("t", [64, 4097])
@pytest.mark.parametrize("style,causal", [("eq0", True), ("bool", False), ("add", False)])
def test_float_buffer_mask_past_2_24_elements(tmp_path, t, style, causal):
    """The bug: nanoGPT's mask buffer tril(ones(T, T)).view(1, 1, T, T) with T x T > 2**24 (T = 4097) was read
    as non-causal, twice the attention FLOPs: the mask evaluation reads initializers of at most 2**24 elements, and
    from the ancestry only boolean buffers counted. Now such a buffer of zeros and ones is read at sampled rows and
    columns; T = 64 (evaluated whole) gives the same verdicts. Forward attention FLOPs at S = 16: pairs x (2 x 8 +
    2 x 8) x 2 heads + 5 x pairs x 2 heads, pairs = 16 x 17 / 2 = 136 causal, 256 otherwise."""
    s = 16
    g = analyze_onnx(_buffer_mask_model(tmp_path, t, s, style))
    assert any("1 attention patterns" in a and f"{int(causal)} causal" in a for a in g.assumptions), g.assumptions
    assert [r.flops for r in _fwd(g, "attention") if r.flops] == [_attn_flops(s, causal)]
    assert _attn_flops(s, True) == 136 * 32 * 2 + 5 * 136 * 2


def test_large_float_buffer_of_ones_or_other_values_is_not_causal(tmp_path):
    """Past 2**24 elements too, a buffer that allows everything (ones) is not causal, and one that is not of zeros
    and ones (an additive bias) is not read as a mask at all: not causal either."""
    t, s = 4097, 16
    g = analyze_onnx(_buffer_mask_model(tmp_path, t, s, "eq0", fill=np.ones((t, t), np.float32)))
    assert [r.flops for r in _fwd(g, "attention") if r.flops] == [_attn_flops(s, False)]
    alibi = -np.abs(np.subtract.outer(np.arange(t), np.arange(t))).astype(np.float32)
    g = analyze_onnx(_buffer_mask_model(tmp_path, t, s, "eq0", fill=alibi))
    assert [r.flops for r in _fwd(g, "attention") if r.flops] == [_attn_flops(s, False)]


def _nanogpt(tmp_path, block):
    torch = pytest.importorskip("torch")
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.h = nn.Embedding(64, 32), 2
            self.qkv, self.proj, self.head = nn.Linear(32, 96), nn.Linear(32, 32), nn.Linear(32, 64)
            self.register_buffer("bias", torch.tril(torch.ones(block, block)).view(1, 1, block, block))

        def forward(self, idx):
            x = self.wte(idx)
            b, t, c = x.shape
            q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in self.qkv(x).split(c, dim=2))
            att = (q @ k.transpose(-2, -1)) / math.sqrt(c // self.h)
            att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
            y = (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, c)
            return self.head(self.proj(y))

    p = tmp_path / f"nanogpt_{block}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Block().eval(), (torch.zeros(2, 16, dtype=torch.long),), str(p), input_names=["idx"],
                          output_names=["logits"], dynamic_axes={"idx": {0: "b", 1: "t"}}, opset_version=17,
                          dynamo=False)
    return p


@pytest.mark.parametrize("block", [256, 4100])
def test_torch_exported_nanogpt_with_a_long_block_size_is_causal(tmp_path, block):
    """nanoGPT exported by torch.onnx.export with block_size 4100 (its bias buffer: 4100 x 4100 = 16,810,000 >
    2**24 elements) and 256: causal both. At batch 2, seq 48, 2 heads of 16: 2 x 2 x pairs x (2 x 16 + 2 x 16) +
    5 x 2 x 2 x pairs forward FLOPs, pairs = 48 x 49 / 2 = 1176 (2304 if read non-causal: the bug)."""
    g = analyze_onnx(_nanogpt(tmp_path, block), batch_size=2, seq_len=48)
    pairs = 48 * 49 // 2
    assert any("1 attention patterns" in a and "1 causal" in a for a in g.assumptions), g.assumptions
    assert [r.flops for r in _fwd(g, "attention") if r.flops] == [2 * 2 * pairs * 64 + 5 * 2 * 2 * pairs]


def test_memory_headroom_reads_a_cgroup_v1_memory_limit(monkeypatch):
    """Review: only cgroup v2's memory.max was read, so in a cgroup v1 container with a 4 GiB limit the guard took
    the host's MemAvailable and the OOM kill still came. By hand: limit 4 GiB - usage 1.5 GiB + inactive page cache
    0.5 GiB = 3 GiB, below the host's ~19 GiB available."""
    import io

    import wattlint.frontends.onnx_shapes as S

    gib = 1 << 30
    files = {"/proc/meminfo": "MemTotal: 24000000 kB\nMemAvailable: 20000000 kB\n",
             "/proc/self/cgroup": "5:devices:/\n4:memory:/job7\n1:name=systemd:/\n",
             "/sys/fs/cgroup/memory/job7/memory.limit_in_bytes": f"{4 * gib}\n",
             "/sys/fs/cgroup/memory/job7/memory.usage_in_bytes": f"{3 * gib // 2}\n",
             "/sys/fs/cgroup/memory/job7/memory.stat": f"cache 1\ntotal_inactive_file {gib // 2}\n"}

    def fake_open(path, *a, **k):
        if str(path) not in files:
            raise FileNotFoundError(path)
        return io.StringIO(files[str(path)])

    monkeypatch.setattr(S, "open", fake_open, raising=False)
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda lim: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert S.memory_headroom() == 3 * gib
