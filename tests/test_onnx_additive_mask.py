"""Causal masks stored as buffers the mask evaluation does not read: an ADDITIVE float buffer (0 kept, -inf /
-1e9 / finfo.min above the diagonal, added to the scores) of more than 2**24 elements, and mask buffers stored as
EXTERNAL data beside the .onnx (``onnx.save_model(..., save_as_external_data=True)``), at any size; a missing or
short data file is one error line (exit 2), not a silent non-causal price.

Expected values by hand. Hand-built graphs (q [1, 2, 16, 8], 2 heads of 8, S = 16): forward attention FLOPs =
pairs x (2 x 8 + 2 x 8) x 2 heads (QK^T and PV) + 5 x pairs x 2 heads (softmax work), with pairs = 16 x 17 / 2 =
136 causal: 136 x 32 x 2 + 5 x 136 x 2 = 8,704 + 1,360 = 10,064; pairs = 16 x 16 = 256 otherwise: 256 x 32 x 2 +
5 x 256 x 2 = 16,384 + 2,560 = 18,944. Torch-exported nanoGPT blocks (batch 2, seq 48, 2 heads of 16): pairs =
48 x 49 / 2 = 1,176 causal: 2 x 2 x 1,176 x (2 x 16 + 2 x 16) + 5 x 2 x 2 x 1,176 = 301,056 + 23,520 = 324,576;
48 x 48 = 2,304 otherwise: 2 x 2 x 2,304 x 64 + 5 x 2 x 2 x 2,304 = 589,824 + 46,080 = 635,904.
"""

from __future__ import annotations

import io
import math
from contextlib import redirect_stderr, redirect_stdout

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from wattlint.cli import main
from _onnx_export import export_tokens_model, save_model

from wattlint.frontends.onnx import analyze_onnx
from wattlint.types import Phase

F = TensorProto.FLOAT
BH, HD, S = 2, 8, 16
CAUSAL, FULL = 10_064, 18_944  # forward attention FLOPs at S = 16 (module docstring)
T_CAUSAL, T_FULL = 324_576, 635_904  # the torch-exported blocks at batch 2, seq 48 (module docstring)
BIG = 4097  # 4097 x 4097 = 16,785,409 > 2**24 = 16,777,216 elements: never evaluated whole


def _vi(name, dims, t=F):
    return helper.make_tensor_value_info(name, t, dims)


def _const(name, value, dtype=np.int64):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype=dtype), name))


def _buffer_model(tmp_path, buf, style, external, name):
    """Scores MatMul(q, k^T) masked by a float buffer ``bias`` [1, 1, T, T] sliced to [:, :, :16, :16]: added to
    the scores (``style`` "add": nanoGPT-style ``att + mask[:, :, :T, :T]``) or as nanoGPT's
    ``masked_fill(bias == 0, -inf)`` ("eq0") -> Softmax -> MatMul(P, v). ``external``: the buffer saved as external
    data ``<name>.data`` beside the model."""
    t = buf.shape[-1]
    n = [helper.make_node("MatMul", ["q", "kt"], ["scores"]), _const("st", [0, 0]), _const("en", [S, S]),
         _const("axes", [2, 3]), helper.make_node("Slice", ["bias", "st", "en", "axes"], ["b"])]
    if style == "add":
        n.append(helper.make_node("Add", ["scores", "b"], ["masked"]))
    else:
        n += [_const("z", 0.0, np.float32), _const("ninf", -np.inf, np.float32),
              helper.make_node("Equal", ["b", "z"], ["cond"]),
              helper.make_node("Where", ["cond", "ninf", "scores"], ["masked"])]
    n += [helper.make_node("Softmax", ["masked"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["o"])]
    g = helper.make_graph(n, "g", [_vi("q", [1, BH, S, HD]), _vi("kt", [1, BH, HD, S]), _vi("v", [1, BH, S, HD])],
                          [_vi("o", None)], [numpy_helper.from_array(buf.reshape(1, 1, t, t), "bias")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return save_model(m, tmp_path / name, external)


def _attention(g):
    return [r.flops for r in g.records if r.phase is Phase.FORWARD and r.kind.value == "attention" and r.flops]


def _causal_note(g):
    return [a.rsplit("; ", 1)[-1] for a in g.assumptions if "attention patterns" in a]


def _additive(t, kind):
    """A [T, T] additive mask: 0 where a score is kept, a large negative where it is blocked."""
    rows, cols = np.arange(t)[:, None], np.arange(t)[None, :]
    upper = cols > rows
    if kind in ("-inf", "-1e9", "finfo.min"):  # triu(fill, 1): the upper triangle blocked, causal
        fill = {"-inf": -np.inf, "-1e9": -1e9, "finfo.min": np.finfo(np.float32).min}[kind]
        return np.where(upper, fill, 0).astype(np.float32)
    if kind == "tril(-inf, -1)":  # the strict lower triangle blocked: the opposite of causal
        return np.where(cols < rows, -np.inf, 0).astype(np.float32)
    if kind == "padding":  # columns 10.. blocked in every row (a padded batch row): not causal
        return np.broadcast_to(np.where(cols >= 10, -np.inf, 0), (t, t)).astype(np.float32)
    if kind == "random":  # random 0 / -inf
        return np.where(np.random.default_rng(0).random((t, t)) < 0.5, -np.inf, 0).astype(np.float32)
    assert kind == "tril(ones)"  # a 0/1 buffer ADDED: blocks nothing (review of the last session)
    return np.tril(np.ones((t, t), np.float32))


@pytest.mark.parametrize("t,external", [(BIG, False), (64, True), (BIG, True)])
def test_additive_mask_buffer_is_read_past_2_24_elements_and_from_external_data(tmp_path, t, external):
    """The bugs: an additive causal buffer (triu(-inf / -1e9 / finfo.min, 1), added to the scores) of 4097 x
    4097 > 2**24 elements was priced non-causal (the evaluation reads at most 2**24 elements, and the ancestry read
    a float buffer only through a boolean op), and so was one of any size stored as external data (the evaluation
    and the sampled read skip external tensors): FULL instead of CAUSAL. Now such a buffer reached from the scores'
    Add through views is read (at sampled rows and columns past 2**24 elements, memory-mapped from the data file
    when external). Buffers that are not a lower triangle of kept scores stay non-causal: the lower triangle
    blocked, padding columns, random 0 / -inf, and a 0/1 buffer added (it blocks nothing)."""
    for kind, flops in (("-inf", CAUSAL), ("-1e9", CAUSAL), ("finfo.min", CAUSAL), ("tril(-inf, -1)", FULL),
                        ("padding", FULL), ("random", FULL), ("tril(ones)", FULL)):
        name = f"add_{kind.replace(' ', '').replace(',', '_')}.onnx"
        g = analyze_onnx(_buffer_model(tmp_path, _additive(t, kind), "add", external, name))
        assert _attention(g) == [flops], kind
        assert _causal_note(g) == [f"{int(flops == CAUSAL)} causal (from the mask)"], kind


@pytest.mark.parametrize("t", [64, BIG])
def test_nanogpt_buffer_stored_as_external_data(tmp_path, t):
    """nanoGPT's tril(ones(T, T)) read by masked_fill(bias == 0, -inf), saved with save_as_external_data=True: was
    priced non-causal (FULL) at any T; now read from the data file beside the model: CAUSAL. A buffer of ones (it
    allows everything) stays non-causal."""
    for buf, flops in ((np.tril(np.ones((t, t), np.float32)), CAUSAL), (np.ones((t, t), np.float32), FULL)):
        g = analyze_onnx(_buffer_model(tmp_path, buf, "eq0", True, f"eq0_{flops}.onnx"))
        assert _attention(g) == [flops]


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("style", ["add", "eq0"])
def test_missing_or_short_mask_data_file_is_said_and_priced_as_not_causal(tmp_path, style):
    """The mask buffer's data file missing (a model copied without its weights) or cut short: the attention was
    priced non-causal without a word; the analysis still runs (weights are not needed to analyze a model), and an
    assumption line names the buffer, the file and what it costs (all pairs)."""
    buf = _additive(64, "-inf") if style == "add" else np.tril(np.ones((64, 64), np.float32))
    p = _buffer_model(tmp_path, buf, style, True, "m.onnx")
    data = tmp_path / "m.onnx.data"
    full = data.read_bytes()
    assert len(full) == 64 * 64 * 4  # the buffer only: 16,384 bytes
    data.write_bytes(full[:1000])
    code, out, err = _cli("analyze", p, "--format", "json")
    assert code == 0, (code, err)
    notes = [a for a in json.loads(out)["assumptions"] if "attention mask buffer 'bias'" in a]
    assert len(notes) == 1 and "'m.onnx.data'" in notes[0] and "too short" in notes[0], notes
    assert "16,384 bytes" in notes[0] and "the file has 1,000" in notes[0] and "all query / key pairs" in notes[0]
    data.unlink()
    code, out, err = _cli("analyze", p, "--format", "json")
    assert code == 0, (code, err)
    notes = [a for a in json.loads(out)["assumptions"] if "attention mask buffer 'bias'" in a]
    assert len(notes) == 1 and "is missing" in notes[0] and str(data) in notes[0], notes


def _nanogpt(tmp_path, block, variant, external):
    """nanoGPT's attention exported by torch.onnx.export (2 heads of 16), its mask a registered buffer of block x
    block: "add" ``att + mask[:, :, :T, :T]`` with mask = triu(full(-inf), 1), "random" the same with random 0 /
    -inf, "eq0" nanoGPT's own ``masked_fill(bias[:, :, :T, :T] == 0, -inf)`` over tril(ones); ``external``: the
    exported model re-saved with save_as_external_data=True."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.h = nn.Embedding(64, 32), 2
            self.qkv, self.proj, self.head = nn.Linear(32, 96), nn.Linear(32, 32), nn.Linear(32, 64)
            if variant == "eq0":
                m = torch.tril(torch.ones(block, block))
            elif variant == "add":
                m = torch.triu(torch.full((block, block), float("-inf")), 1)
            else:
                g = torch.Generator().manual_seed(0)
                m = torch.where(torch.rand(block, block, generator=g) < 0.5, float("-inf"), 0.0)
            self.register_buffer("bias", m.view(1, 1, block, block))

        def forward(self, idx):
            x = self.wte(idx)
            b, t, c = x.shape
            q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in self.qkv(x).split(c, dim=2))
            att = (q @ k.transpose(-2, -1)) / math.sqrt(c // self.h)
            if variant == "eq0":
                att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
            else:
                att = att + self.bias[:, :, :t, :t]
            y = (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, c)
            return self.head(self.proj(y))

    p = tmp_path / f"{variant}_{block}_{external}.onnx"
    return export_tokens_model(Block(), p, external)


@pytest.mark.parametrize("variant,block,external", [("add", 4100, False), ("add", 256, True), ("eq0", 4100, True)])
def test_torch_exported_nanogpt_additive_and_external_masks(tmp_path, variant, block, external):
    """Torch-exported nanoGPT blocks (block 4100: a 16,810,000-element buffer, past 2**24): the additive
    triu(-inf, 1) buffer inline past 2**24 elements, and the additive / masked_fill buffers saved as external data,
    were priced non-causal (T_FULL); now T_CAUSAL. The same export with a random 0 / -inf buffer stays T_FULL."""
    g = analyze_onnx(_nanogpt(tmp_path, block, variant, external), batch_size=2, seq_len=48)
    assert _causal_note(g) == ["1 causal (from the mask)"], g.assumptions
    assert _attention(g) == [T_CAUSAL]
    g = analyze_onnx(_nanogpt(tmp_path, block, "random", external), batch_size=2, seq_len=48)
    assert _attention(g) == [T_FULL]
