"""Attention-mask buffers: a float mask buffer (nanoGPT's registered ``bias`` = tril(ones(T, T)) viewed [1, 1, T,
T], an additive triu(-inf, 1) one) is a module's buffer, not a parameter; boolean / uint8 mask buffers past 2**24
elements or stored as external data are read (not assumed causal); the Trilu fallback (a mask that cannot be
evaluated) reads an additive Trilu with its polarity.

Expected values by hand.

Torch-exported nanoGPT blocks (vocab 64, width 32, 2 heads of 16, batch 2, seq 48): parameters = wte 64 x 32 =
2,048 + qkv 32 x 96 + 96 = 3,168 + proj 32 x 32 + 32 = 1,056 + head 32 x 64 + 64 = 2,112 -> 8,384 (33,536 bytes in
fp32); a 256 x 256 buffer counted as well gave 8,384 + 65,536 = 73,920. Two layers (``_nanogpt(layers=2)``): wte
2,048 + 2 x qkv 3,168 + head 2,112 = 10,496 (no proj), the two 64 x 64 buffers 2 x 4,096 = 8,192 elements. AdamW
as torch's foreach kernels: per element mul 1 + lerp 2 + mul 1 + addcmul 2 + sqrt 2 + div 1 + add 1 + addcdiv 2 =
12 FLOPs -> 12 x 8,384 = 100,608 optimizer FLOPs (12 x 73,920 = 887,040 with the buffer). Attention at batch 2,
seq 48: pairs 48 x 49 / 2 = 1,176 causal: 2 x 2 x 1,176 x (2 x 16 + 2 x 16) + 5 x 2 x 2 x 1,176 = 301,056 + 23,520 =
324,576; 48 x 48 = 2,304 otherwise: 2 x 2 x 2,304 x 64 + 5 x 2 x 2 x 2,304 = 589,824 + 46,080 = 635,904.

Hand-built graphs (q [1, 2, 16, 8], 2 heads of 8, S = 16): forward attention FLOPs = pairs x (2 x 8 + 2 x 8) x 2
heads + 5 x pairs x 2 heads, pairs = 16 x 17 / 2 = 136 causal: 8,704 + 1,360 = 10,064; 16 x 16 = 256 otherwise:
16,384 + 2,560 = 18,944.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from _onnx_export import export_tokens_model, save_model

from wattlint.frontends.onnx import analyze_onnx
from wattlint.frontends.onnx_patterns import find_attention, is_causal
from wattlint.types import Phase

F = TensorProto.FLOAT
BH, HD, S = 2, 8, 16
CAUSAL, FULL = 10_064, 18_944  # hand-built graphs at S = 16 (module docstring)
T_CAUSAL, T_FULL = 324_576, 635_904  # torch-exported blocks at batch 2, seq 48 (module docstring)
PARAMS = 8_384  # the torch-exported block's parameters (module docstring)
BIG = 4097  # 4097 x 4097 = 16,785,409 > 2**24 = 16,777,216 elements: never evaluated whole


def _attention(g):
    return [r.flops for r in g.records if r.phase is Phase.FORWARD and r.kind.value == "attention" and r.flops]


def _optimizer(g):
    return [r for r in g.records if r.phase is Phase.OPTIMIZER]


def _buffer_notes(g):
    return [a for a in g.assumptions if "attention-mask buffer" in a]


def _nanogpt(tmp_path, block, variant, external=False, layers=1):
    """nanoGPT's attention exported by torch.onnx.export (2 heads of 16), its mask a registered buffer (or, as a
    control, a learned parameter) of [1, 1, block, block]: "eq0" nanoGPT's ``masked_fill(bias[:, :, :T, :T] == 0,
    -inf)`` over tril(ones); "add" ``att + bias[:, :, :T, :T]`` with bias = triu(full(-inf), 1); "zeros" / "randn"
    a LEARNED relative position bias (nn.Parameter, zeros or randn x 0.02) added to the scores the same way;
    "bool_allow" a bool tril buffer read by ``masked_fill(bias, -inf)`` (it blocks the lower triangle: not causal),
    "bool_block" by ``masked_fill(~bias, -inf)`` (causal). ``layers`` > 1: that many attention blocks (no proj,
    residual), whose equal buffers the exporter shares through Identity aliases. ``external``: re-saved with
    save_as_external_data=True."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv, self.h = nn.Linear(32, 96), 2
            ones = torch.ones(block, block)
            if variant == "eq0":
                self.register_buffer("bias", torch.tril(ones).view(1, 1, block, block))
            elif variant == "add":
                self.register_buffer("bias", torch.triu(torch.full((block, block), float("-inf")), 1)
                                     .view(1, 1, block, block))
            elif variant in ("zeros", "randn"):
                init = torch.zeros(1, 1, block, block) if variant == "zeros" else \
                    0.02 * torch.randn(1, 1, block, block, generator=torch.Generator().manual_seed(0))
                self.bias = nn.Parameter(init)
            else:
                self.register_buffer("bias", torch.tril(ones).bool().view(1, 1, block, block))

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in self.qkv(x).split(c, dim=2))
            att = (q @ k.transpose(-2, -1)) / math.sqrt(c // self.h)
            m = self.bias[:, :, :t, :t]
            if variant == "eq0":
                att = att.masked_fill(m == 0, float("-inf"))
            elif variant == "bool_allow":
                att = att.masked_fill(m, float("-inf"))
            elif variant == "bool_block":
                att = att.masked_fill(~m, float("-inf"))
            else:
                att = att + m
            return (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, c)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.head = nn.Embedding(64, 32), nn.Linear(32, 64)
            self.h = nn.ModuleList(Attn() for _ in range(layers))
            self.proj = nn.Linear(32, 32) if layers == 1 else None

        def forward(self, idx):
            x = self.wte(idx)
            if self.proj is not None:
                return self.head(self.proj(self.h[0](x)))
            for blk in self.h:
                x = x + blk(x)
            return self.head(x)

    p = tmp_path / f"{variant}_{block}_{external}_{layers}.onnx"
    return export_tokens_model(Model(), p, external)


@pytest.mark.parametrize("variant,external", [("eq0", False), ("add", False), ("eq0", True), ("add", True)])
def test_nanogpt_mask_buffer_is_not_a_parameter(tmp_path, variant, external):
    """The bug: the 256 x 256 float mask buffer was counted as a trainable parameter and charged AdamW state, its
    optimizer passes, gradient memory and all-reduce bytes: 73,920 parameters, 887,040 optimizer FLOPs. Now the
    buffer, used only as the mask of the scores and holding a mask's values, is no parameter: 8,384 parameters,
    100,608 optimizer FLOPs, and one assumption line says so. The attention is priced as before (causal)."""
    g = analyze_onnx(_nanogpt(tmp_path, 256, variant, external), batch_size=2, seq_len=48)
    assert (g.model.params, g.model.param_bytes) == (PARAMS, 4 * PARAMS)
    assert sum(r.flops for r in _optimizer(g)) == 12 * PARAMS == 100_608
    assert not [r for r in _optimizer(g) if (1, 1, 256, 256) in r.shapes]
    assert _buffer_notes(g) == [
        "1 attention-mask buffer (h.0.bias; 65,536 elements) not counted as a parameter: a float initializer used only "
        "to mask the attention scores, with a mask's values (0 / 1, or 0 / a large negative): registered buffers of "
        "the model, no gradient, optimizer state or all-reduce; their storage is not counted in the memory per GPU "
        "either (the PyTorch frontend leaves registered buffers out too)"]
    assert "trainable parameters: all 7 float initializers" in " ".join(g.assumptions)  # 8 with the buffer
    assert _attention(g) == [T_CAUSAL]


def test_shared_mask_buffers_of_two_layers_and_learned_biases(tmp_path):
    """Two layers: the exporter keeps one buffer (h.0.bias) and aliases the other through Identity (h.1.bias): both
    are buffers (10,496 parameters, not 10,496 + 8,192 = 18,688). A LEARNED bias added to the scores the same way
    is a parameter, zero-initialized (a 0 / 1 value set, but no large negative: not an additive mask) or random:
    8,384 + 65,536 = 73,920 parameters, and its attention is not causal."""
    g = analyze_onnx(_nanogpt(tmp_path, 64, "eq0", layers=2), batch_size=2, seq_len=48)
    assert g.model.params == 10_496
    assert len(_buffer_notes(g)) == 1
    assert _buffer_notes(g)[0].startswith("2 attention-mask buffers (h.*.bias x2; 8,192 elements) not counted as "
                                          "parameters: float initializers used only")
    assert _attention(g) == [T_CAUSAL, T_CAUSAL]
    for variant in ("zeros", "randn"):
        g = analyze_onnx(_nanogpt(tmp_path, 256, variant), batch_size=2, seq_len=48)
        assert g.model.params == PARAMS + 256 * 256 == 73_920, variant
        assert sum(r.flops for r in _optimizer(g)) == 12 * 73_920, variant
        assert _buffer_notes(g) == [], variant
        assert _attention(g) == [T_FULL], variant


def _vi(name, dims, t=F):
    return helper.make_tensor_value_info(name, t, dims)


def _const(name, value, dtype=np.int64):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype=dtype), name))


def _model(tmp_path, name, nodes, inits=(), inputs=(), external=False):
    g = helper.make_graph(nodes, "g", [_vi("q", [1, BH, S, HD]), _vi("kt", [1, BH, HD, S]), _vi("v", [1, BH, S, HD]),
                                       *inputs], [_vi("o", None)], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return save_model(m, tmp_path / name, external)


def _bool_buffer_model(tmp_path, buf, style, external, name):
    """Scores MatMul(q, k^T) masked by a bool / uint8 buffer ``bias`` [1, 1, T, T] sliced to [:, :, :16, :16] (a
    uint8 one cast to bool, as ``bias.bool()`` exports): "fill" ``masked_fill(bias, -inf)`` = Where(b, -inf, scores)
    (true blocks), "fill_not" ``masked_fill(~bias, -inf)``, "keep" ``torch.where(bias, scores, -inf)`` (true
    allows) -> Softmax -> MatMul(P, v)."""
    t = buf.shape[-1]
    n = [helper.make_node("MatMul", ["q", "kt"], ["scores"]), _const("st", [0, 0]), _const("en", [S, S]),
         _const("axes", [2, 3]), helper.make_node("Slice", ["bias", "st", "en", "axes"], ["b"]),
         _const("ninf", -np.inf, np.float32)]
    c = "b"
    if buf.dtype == np.uint8:
        n.append(helper.make_node("Cast", ["b"], ["bb"], to=TensorProto.BOOL))
        c = "bb"
    if style == "fill":
        n.append(helper.make_node("Where", [c, "ninf", "scores"], ["masked"]))
    elif style == "fill_not":
        n += [helper.make_node("Not", [c], ["nc"]), helper.make_node("Where", ["nc", "ninf", "scores"], ["masked"])]
    else:
        n.append(helper.make_node("Where", [c, "scores", "ninf"], ["masked"]))
    n += [helper.make_node("Softmax", ["masked"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["o"])]
    return _model(tmp_path, name, n, [numpy_helper.from_array(buf.reshape(1, 1, t, t), "bias")], external=external)


@pytest.mark.parametrize("dtype,t,external", [(np.bool_, BIG, False), (np.bool_, 64, True), (np.bool_, BIG, True),
                                              (np.uint8, 64, False), (np.uint8, BIG, False), (np.uint8, 64, True)])
def test_bool_and_uint8_mask_buffers_are_read(tmp_path, dtype, t, external):
    """The bug: a bool mask buffer past 2**24 elements or stored as external data, and a uint8 one at any size (the
    evaluation never reads uint8), were not read and assumed causal: ``masked_fill(tril)`` (it BLOCKS the lower
    triangle) was priced CAUSAL, while the same bool buffer at T = 64 inline was FULL. Now read (whole up to 2**24
    elements, sampled rows and columns past that, from the data file when external) and decided with their values
    and polarity: masked_fill(tril) FULL, masked_fill(~tril) and where(tril, scores, -inf) CAUSAL; a buffer of ones
    kept by where() allows everything (FULL) and a random one is no lower triangle (FULL)."""
    tril = np.tril(np.ones((t, t), dtype))
    ones = np.ones((t, t), dtype)
    rand = (np.random.default_rng(0).random((t, t)) < 0.5).astype(dtype)
    for buf, style, flops in ((tril, "fill", FULL), (tril, "fill_not", CAUSAL), (tril, "keep", CAUSAL),
                              (ones, "keep", FULL), (rand, "keep", FULL), (rand, "fill", FULL)):
        name = f"{style}_{int(buf is tril) + 2 * int(buf is ones)}.onnx"
        g = analyze_onnx(_bool_buffer_model(tmp_path, buf, style, external, name))
        assert _attention(g) == [flops], (style, name)


def test_torch_exported_bool_buffer_past_2_24_elements(tmp_path):
    """nanoGPT with a bool tril buffer of 4100 x 4100 = 16,810,000 > 2**24 elements: ``masked_fill(bias, -inf)``
    (the lower triangle blocked) was priced causal (T_CAUSAL) without reading the buffer; now T_FULL. The same
    buffer read by ``masked_fill(~bias, -inf)`` stays T_CAUSAL. A bool buffer is no float initializer: never a
    parameter (8,384)."""
    g = analyze_onnx(_nanogpt(tmp_path, 4100, "bool_allow"), batch_size=2, seq_len=48)
    assert _attention(g) == [T_FULL]
    assert g.model.params == PARAMS
    g = analyze_onnx(_nanogpt(tmp_path, 4100, "bool_block"), batch_size=2, seq_len=48)
    assert _attention(g) == [T_CAUSAL]


def _trilu_model(tmp_path, name, upper, k=None):
    """scores + Trilu(neg, k, upper) -> Softmax -> MatMul(P, v), ``neg`` [16, 16] a graph input (an additive fill
    given at run time): the mask cannot be evaluated, the Trilu fallback decides."""
    n = [helper.make_node("MatMul", ["q", "kt"], ["scores"])]
    ins = ["neg"]
    if k is not None:
        n.append(_const("k", k))
        ins.append("k")
    n += [helper.make_node("Trilu", ins, ["tri"], upper=upper), helper.make_node("Add", ["scores", "tri"], ["masked"]),
          helper.make_node("Softmax", ["masked"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["o"])]
    return _model(tmp_path, name, n, inputs=[_vi("neg", [S, S])])


def _fallback(nodes):
    """is_causal of the one attention pattern in ``nodes`` with nothing evaluated (values {}): the ancestry decides."""
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    consumers: dict = {}
    for i, n in enumerate(nodes):
        for x in n.input:
            consumers.setdefault(x, []).append(i)
    (m,) = {id(m): m for m in find_attention(nodes, producer, consumers).values()}.values()
    return is_causal(m.masks, nodes, producer, {}, {}, S, S, m.blocking, None, m.additive)


def _additive_trilu_nodes(upper, k, fill=-np.inf):
    shape = helper.make_tensor("fill", F, [1], [fill])
    return [helper.make_node("MatMul", ["q", "kt"], ["scores"]), _const("shape", [S, S]), _const("k", k),
            helper.make_node("ConstantOfShape", ["shape"], ["neg"], value=shape),
            helper.make_node("Trilu", ["neg", "k"], ["tri"], upper=upper),
            helper.make_node("Add", ["scores", "tri"], ["masked"]),
            helper.make_node("Softmax", ["masked"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["o"])]


def test_trilu_fallback_respects_additive_polarity(tmp_path):
    """The bug: the Trilu fallback (the mask not evaluated) read every lower-triangle Trilu as causal, also one
    ADDED to the scores, whose kept lower triangle holds the fill: tril(-inf) blocks the lower triangle (its upper
    one stays 0: allowed), the opposite of causal. Now, added to the scores, a Trilu is causal when it keeps the
    strict upper triangle (k = 1: triu(-inf, 1)) of a large negative fill (or one not known), never when it keeps
    the lower one. A boolean Trilu (a tril of true read by where(mask, scores, -inf)) is causal as before."""
    # end to end, the fill a run-time input: tril(neg) added -> FULL (was CAUSAL); triu(neg, 1) -> CAUSAL
    assert _attention(analyze_onnx(_trilu_model(tmp_path, "lower.onnx", 0))) == [FULL]
    assert _attention(analyze_onnx(_trilu_model(tmp_path, "lower0.onnx", 0, 0))) == [FULL]
    assert _attention(analyze_onnx(_trilu_model(tmp_path, "upper1.onnx", 1, 1))) == [CAUSAL]
    # the fallback itself, the fill a ConstantOfShape(-inf) / (-1e9) / (0)
    assert _fallback(_additive_trilu_nodes(0, 0)) is None  # tril(-inf): was True
    assert _fallback(_additive_trilu_nodes(0, 0, -1e9)) is None
    assert _fallback(_additive_trilu_nodes(1, 1)) is True  # triu(-inf, 1)
    assert _fallback(_additive_trilu_nodes(1, 1, -1e9)) is True
    assert _fallback(_additive_trilu_nodes(1, 0)) is None  # triu(-inf, 0): the diagonal blocked too
    assert _fallback(_additive_trilu_nodes(1, 1, 0.0)) is None  # a fill of 0 blocks nothing
    boolean = [helper.make_node("MatMul", ["q", "kt"], ["scores"]), _const("shape", [S, S]),
               helper.make_node("ConstantOfShape", ["shape"], ["ones"],
                                value=helper.make_tensor("one", TensorProto.BOOL, [1], [True])),
               helper.make_node("Trilu", ["ones"], ["tri"], upper=0), _const("ninf", -np.inf, np.float32),
               helper.make_node("Where", ["tri", "scores", "ninf"], ["masked"]),
               helper.make_node("Softmax", ["masked"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["o"])]
    assert _fallback(boolean) is True
