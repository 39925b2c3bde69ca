"""What WL103 and WL105 take for attention and for pruning.

WL103: the attention softmax normalises the key axis, the one P·V sums over. A softmax over the query axis (dim -2
of Q·Kᵀ scores, then P @ V) was flagged as attention because only the shapes were compared; scores laid out
[.., s_k, s_q] (K·Qᵀ, softmax over dim -2, Pᵀ @ V) with s_q != s_k were missed.

WL105: a mask multiplied into a weight in the layer's own forward was flagged as unstructured pruning whatever it
was: an activation of the weight's shape feeding the right operand of ``adj @ h``, or one concatenated with another
tensor before the GEMM. (MADE's degree masks cannot be told from pruning masks by shapes: still reported.)
"""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from wattlint.lint import testing
from wattlint.lint.engine import run_rules
from wattlint.lint.registry import all_rules
from wattlint.types import OpKind, OpRecord, Phase

R = all_rules()


class M:
    name = "m"
    budget: dict = {}
    regression_threshold = None
    select = ignore = ()


def lint(code, graph, est):
    return run_rules(est, None, M(), rules=[R[code]], reestimator=testing.simple_estimate, gpus=testing.gpus_list)


# ---- WL103: synthetic records carrying the softmax's axis -------------------------------------------------------

def attention(qk, shape, pv, *, axis=None, transpose=False):
    """QK GEMM (b, m, n, k), softmax over ``shape`` (its forward record carrying ``axis`` when given, optionally
    followed by a transpose of the scores), P·V GEMM (b, m, n, k); all in module 'attn'."""
    ops = [dict(op="bmm", module="attn", **dict(zip("bmnk", qk))), {"op": "softmax", "shape": shape, "module": "attn"},
           dict(op="bmm", module="attn", **dict(zip("bmnk", pv)))]
    graph, est = testing.scenario(ops, params=1000)
    recs = list(graph.records)
    j = next(i for i, r in enumerate(recs) if r.kind is OpKind.SOFTMAX and r.phase is Phase.FORWARD)
    if axis is not None:
        recs[j] = dataclasses.replace(recs[j], dims=(("axis", axis),))
    if transpose:
        recs.insert(j + 1, OpRecord(op="aten.transpose.int", kind=OpKind.VIEW, module="attn", phase=Phase.FORWARD,
                                    dtype="", shapes=(tuple(shape),)))
    graph = dataclasses.replace(graph, records=tuple(recs))
    return graph, testing.simple_estimate(graph, testing.GPUS["a100-sxm4-80gb"], est.plan)


QK, SCORES, PV = (96, 1024, 1024, 64), [8, 12, 1024, 1024], (96, 1024, 64, 1024)


def test_wl103_softmax_over_the_query_axis_is_not_attention():
    # softmax(q @ kᵀ, dim=-2) @ v: each key's column is normalised, P @ V still sums over keys
    assert lint("WL103", *attention(QK, SCORES, PV, axis=2)) == []
    # the key axis (dim -1), given as 3 or -1: attention
    for axis in (3, -1, None):
        (f,) = lint("WL103", *attention(QK, SCORES, PV, axis=axis))
        assert "materializes a 1024x1024 softmax(QKᵀ)" in f.message, f.message


def test_wl103_keys_first_scores_read_transposed():
    # k @ qᵀ: [8, 12, s_k = 1024, s_q = 256] scores, softmax over the keys (dim -2), then pᵀ @ v (m = s_q, k = s_k)
    qk, shape, pv = (96, 1024, 256, 64), [8, 12, 1024, 256], (96, 256, 64, 1024)
    for axis in (2, None):
        (f,) = lint("WL103", *attention(qk, shape, pv, axis=axis))
        assert "materializes a 256x1024 softmax(QKᵀ)" in f.message, f.message
    assert lint("WL103", *attention(qk, shape, pv, axis=3)) == []  # over the queries
    # square scores: the transpose between the softmax and P·V says which axis P·V sums over
    (f,) = lint("WL103", *attention(QK, SCORES, PV, axis=2, transpose=True))
    assert "materializes a 1024x1024" in f.message
    assert lint("WL103", *attention(QK, SCORES, PV, axis=3, transpose=True)) == []


# ---- real torch traces -----------------------------------------------------------------------------------------

MODELS = textwrap.dedent('''
    import torch
    import torch.nn as nn
    import torch.nn.functional as F


    class Attn(nn.Module):
        def __init__(self, d=256, h=4, layout="qk"):
            super().__init__()
            self.h, self.layout = h, layout
            self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)

        def forward(self, x):
            b, s, d = x.shape
            q, k, v = [t.view(b, s, self.h, d // self.h).transpose(1, 2) for t in self.qkv(x).chunk(3, -1)]
            if self.layout == "qk":  # standard
                a = (q @ k.transpose(-2, -1) / 8).softmax(-1) @ v
            elif self.layout == "kq":  # scores [.., s_k, s_q], softmax over the keys, read transposed
                a = (k @ q.transpose(-2, -1) / 8).softmax(-2).transpose(-2, -1) @ v
            else:  # softmax over the queries
                a = (q @ k.transpose(-2, -1) / 8).softmax(-2) @ v
            return self.o(a.transpose(1, 2).reshape(b, s, d))


    def attn_qk():
        return Attn()


    def attn_kq():
        return Attn(layout="kq")


    def attn_query_axis():
        return Attn(layout="query")


    class MaskedLinear(nn.Linear):  # a linear layer whose forward multiplies a mask into its weight
        def __init__(self, n_in, n_out, mask):
            super().__init__(n_in, n_out)
            self.register_buffer("mask", mask.float())

        def forward(self, x):
            return F.linear(x, self.weight * self.mask, self.bias)


    def _pruned(*widths):  # masked layers pruning a plain MLP: random masks keeping 20 % of each weight
        g = torch.Generator().manual_seed(0)
        layers = []
        for a, b in zip(widths, widths[1:]):
            layers += [MaskedLinear(a, b, torch.rand(b, a, generator=g) > 0.8), nn.ReLU()]
        return nn.Sequential(*layers[:-1])

    def pruned_mlp():
        return _pruned(784, 300, 100, 10)

    def pruned_ffn():
        return _pruned(256, 1024, 256)

    def pruned_autoencoder():
        return _pruned(784, 128, 32, 128, 784)

    def pruned_same_width():
        return _pruned(512, 512, 512)


    class GraphConv(nn.Module):  # dense-adjacency graph convolution, SiLU on the node features before aggregation
        def __init__(self, n=2048, f=64):
            super().__init__()
            self.w = nn.Parameter(torch.randn(f, f) * 0.02)
            self.register_buffer("adj", torch.rand(n, n) / n)

        def forward(self, x):
            h = x @ self.w
            return self.adj @ (h * torch.sigmoid(h))  # h * sigmoid(h): [2048, 64], the shape adj @ h reads


    def graph_conv():
        return nn.Sequential(GraphConv(), nn.ReLU(), nn.Linear(64, 10))


    class GatedFuse(nn.Module):  # gated half concatenated with the other half, then projected
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(512, 1024) * 0.02)

        def forward(self, x):  # x [1024, 1024]: a * sigmoid(b) is [1024, 512], the [k, n] shape of w
            a, b = x.chunk(2, -1)
            return F.linear(torch.cat([a * torch.sigmoid(b), b], -1), self.w)


    def gated_fuse():
        return GatedFuse()
''')


@pytest.fixture(scope="module")
def est(tmp_path_factory):
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("scope_models")
    (d / "scope_models.py").write_text(MODELS)
    from wattlint.api import estimate

    def run(attr, inputs, **kw):
        kw.setdefault("precision", "bf16")
        return estimate(f"{d / 'scope_models.py'}:{attr}", gpu="a100-sxm4-80gb", inputs=inputs, steps=1000, **kw)

    return run


def codes(e):
    return {f.code: f for f in e.findings}


SEQ = ["x=float32[16,512,256]"]


def test_wl103_real_traces_by_layout(est):
    assert "512x512" in codes(est("attn_qk", SEQ))["WL103"].message
    assert "512x512" in codes(est("attn_kq", SEQ))["WL103"].message
    e = est("attn_query_axis", SEQ)
    softmax = next(r for r in e.graph.records if r.kind is OpKind.SOFTMAX and r.phase is Phase.FORWARD)
    assert ("axis", 2) in softmax.dims  # the torch frontend records the normalised axis (non-negative)
    assert "WL103" not in codes(e)


@pytest.mark.parametrize("attr, x, layers", [
    ("pruned_mlp", "x=float32[256,784]", "'0', '2', '4'"),  # 784 -> 300 -> 100 -> 10
    ("pruned_ffn", "x=float32[128,256]", "'0', '2'"),  # 256 -> 1024 -> 256 (128 tokens: not [256, 1024])
    ("pruned_autoencoder", "x=float32[256,784]", "'0', '2', '4' ..."),  # 784 -> 128 -> 32 -> 128 -> 784 (3 named)
    ("pruned_same_width", "x=float32[256,512]", "'0', '2'"),  # 512 -> 512 -> 512
])
def test_wl105_masks_in_the_layers_forward_are_pruning_whatever_the_widths(est, attr, x, layers):
    """Review: a rule that took a stack of masked layers whose output width is a multiple of its input width for
    MADE's degree masks silenced pruned FFNs, autoencoders and same-width MLPs. Widths cannot tell them apart."""
    f = codes(est(attr, [x]))["WL105"]
    assert f.message.startswith(f"weight of {layers} is multiplied by a pruning mask"), f.message


def test_wl105_activation_of_the_weights_shape_is_not_a_mask(est):
    # SiLU written as h * sigmoid(h) on the [2048, 64] right operand of adj @ h: an activation a GEMM computed
    assert "WL105" not in codes(est("graph_conv", ["x=float32[2048,64]"]))
    # a [1024, 512] gated half, concatenated to [1024, 1024] before a 1024 -> 512 projection (weight [512, 1024],
    # multiplied as [1024, 512])
    assert "WL105" not in codes(est("gated_fuse", ["x=float32[1024,1024]"]))
