"""WL103 / WL105 / WL106 fire only where the data flow is there: a softmax between a QKᵀ GEMM and an @V GEMM, a mask
applied to a layer's weight, a second factor that reads the first factor's output.

The false positives are real PyTorch traces (torch frontend + the product's estimator) of common architectures that
have no such pattern; the true positives are checked against numbers derived here by hand, with the hand-checkable
``lint.testing.simple_estimate`` (its formulas are in wattlint/lint/testing.py's docstring) as the estimator.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap

import pytest

from wattlint.lint import testing
from test_lint_savings import M, R  # the one configured model and the rule table

from wattlint.lint.engine import run_rules
from wattlint.types import OpKind, OpRecord, Phase



def lint(code, graph, est):
    return run_rules(est, None, M(), rules=[R[code]], reestimator=testing.simple_estimate, gpus=testing.gpus_list)


# ---- the simple estimator by hand (A100 SXM4 80GB of lint.testing.GPUS) -------------------------------------------

BF16, FP32, BW, IDLE, TDP, SMS = 312e12, 19.5e12, 2039e9, 60.0, 400.0, 108


def joules(flops, nbytes, peak, q=1.0):
    """One op: time = max(flops / (peak x 0.7 x q), bytes / (bandwidth x 0.8)) + 4 us, at idle + (TDP - idle) x 0.9
    when compute bound, x 0.6 when memory bound."""
    tc, tm = flops / (peak * 0.7 * q), nbytes / (BW * 0.8)
    return (max(tc, tm) + 4e-6) * (IDLE + (TDP - IDLE) * (0.9 if tc >= tm else 0.6))


def waves(tiles):
    """Wave quantization of 128x128 output tiles on the 108 SMs."""
    return tiles / SMS / math.ceil(tiles / SMS)


OPTIMIZER = joules(15 * 1000, 28 * 1000, FP32)  # AdamW over params=1000: 15 flops, 16 + 12 bytes per parameter


# ---- torch models --------------------------------------------------------------------------------------------------

MODELS = textwrap.dedent('''
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torch.nn.utils.prune as prune


    class Seg(nn.Module):  # per-pixel class probabilities: softmax over dim=1 of [B, 21, H, W]
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 21, 1))

        def forward(self, x):
            return torch.softmax(self.body(x), dim=1)


    class TokenLogProbs(nn.Module):  # per-token log-probabilities (distillation / DPO): [B, S, vocab]
        def __init__(self, d=64, v=1024):
            super().__init__()
            self.emb, self.body, self.head = nn.Embedding(v, d), nn.Linear(d, d), nn.Linear(d, v)

        def forward(self, ids):
            return F.log_softmax(self.head(torch.relu(self.body(self.emb(ids)))), dim=-1)


    class Attn2D(nn.Module):  # single-sequence explicit attention: 2-D scores
        def __init__(self, d=32):
            super().__init__()
            self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, -1)
            return self.o(torch.softmax(q @ k.T / 8.0, -1) @ v)


    class SwiGLU(nn.Module):
        def __init__(self, d=256, f=688):
            super().__init__()
            self.gate, self.up = nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False)
            self.down = nn.Linear(f, d, bias=False)

        def forward(self, x):
            return self.down(F.silu(self.gate(x)) * self.up(x))


    class WhereMasked(nn.Linear):  # a mask applied in the layer's own forward
        def __init__(self):
            super().__init__(512, 512)
            self.register_buffer("mask", torch.rand(512, 512) > 0.9)

        def forward(self, x):
            return F.linear(x, torch.where(self.mask, self.weight, torch.zeros((), device=x.device)), self.bias)


    class TwoInputs(nn.Module):  # two heads on two unrelated inputs: the shapes chain, the data does not
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(1024, 768), nn.Linear(768, 1024)

        def forward(self, x, y):
            return self.a(x), self.b(y)


    def seg():
        return Seg()


    def token_logprobs():
        return TokenLogProbs()


    def attn2d():
        return Attn2D()


    def swiglu():
        return nn.Sequential(SwiGLU(), SwiGLU())


    def pruned_square():  # tokens == out features: the mask is weight- and activation-shaped
        m = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512))
        prune.l1_unstructured(m[0], "weight", amount=0.9)
        return m


    def where_masked():
        return nn.Sequential(WhereMasked(), nn.ReLU(), nn.Linear(512, 10))


    def two_inputs():
        return TwoInputs()


    def low_rank():
        return nn.Sequential(nn.Linear(1024, 768, bias=False), nn.Linear(768, 1024))


    def low_rank_dropout():
        return nn.Sequential(nn.Linear(1024, 768, bias=False), nn.Dropout(0.1), nn.Linear(768, 1024))
''')


@pytest.fixture(scope="module")
def est(tmp_path_factory):
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("walk_models")
    (d / "walk_lint_models.py").write_text(MODELS)
    from wattlint.api import estimate

    def run(attr, inputs, **kw):
        kw.setdefault("precision", "bf16")
        e = estimate(f"{d / 'walk_lint_models.py'}:{attr}", gpu="a100-sxm4-80gb", inputs=inputs, steps=1000, **kw)
        return {f.code: f for f in e.findings}

    return run


# ---- WL103 ---------------------------------------------------------------------------------------------------------

def test_wl103_softmax_over_classes_or_vocabulary_is_not_attention(est):
    # segmentation: softmax(dim=1) over 21 classes of [2, 21, 128, 128] produced by a 1x1 convolution; its last two
    # dims (128 x 128) are pixels, not (queries, keys), and no GEMM reads it
    assert "WL103" not in est("seg", ["x=float32[2,3,128,128]"])
    # per-token log-probs: [2, 128, 1024] from the LM head (a linear, [256 tokens, 1024]), then a sum
    assert "WL103" not in est("token_logprobs", ["ids=int64[2,128]"])


def test_wl103_unbatched_explicit_attention_is_flagged(est):
    # q @ k.T on 2-D [256, 32] q, k: a [256, 256] score matrix, softmax, @ v, all in the Attn2D module (the root)
    f = est("attn2d", ["x=float32[256,32]"], precision="fp32")["WL103"]
    assert f.message.startswith("attention in the root module materializes a 256x256 softmax(QKᵀ)"), f.message


def test_wl103_unbatched_attention_saving_by_hand():
    """s = 4096, d = 64, bf16 GEMMs, fp32 softmax, one module. Fusing keeps every [4096, 4096] tensor on chip."""
    s, d = 4096, 64
    ops = [{"op": "bmm", "m": s, "n": s, "k": d, "module": "attn"},
           {"op": "softmax", "shape": [s, s], "module": "attn"},
           {"op": "bmm", "m": s, "n": d, "k": s, "module": "attn"}]
    graph, e = testing.scenario(ops, params=1000)
    (f,) = lint("WL103", graph, e)
    assert f.message.startswith("attention in 'attn' materializes a 4096x4096 softmax(QKᵀ) score matrix"), f.message

    flops, S, D = 2 * s * s * d, s * s, s * d  # every GEMM: 2·s·s·d; S: a score matrix, D: a [s, d] tensor
    big, thin = waves((s // 128) ** 2), waves(s // 128)  # [s, s] outputs: 1024 tiles; [s, d] / [d, s]: 32
    # (bytes before, bytes after) in bf16 (2 bytes) / fp32 (4 bytes); the score matrix S leaves HBM
    gemms = [
        (2 * (D + D) + 2 * S, 2 * (D + D), big),      # Q·Kᵀ: reads q, k; writes S -> not written
        (2 * (S + D) + 2 * D, 2 * D + 2 * D, thin),   # dQ = dS·K: reads dS (no more), K; writes dQ
        (2 * (S + D) + 2 * D, 2 * D + 2 * D, thin),   # dK = dSᵀ·Q
        (2 * (S + D) + 2 * D, 2 * D + 2 * D, thin),   # P·V: reads P (no more), V; writes O
        (2 * (D + D) + 2 * S, 2 * (D + D), big),      # dP = dO·Vᵀ: writes dP -> not written
        (2 * (D + S) + 2 * D, 2 * D + 2 * D, thin),   # dV = Pᵀ·dO: reads P (no more)
    ]
    softmax = [(5 * S, 4 * S + 4 * S), (4 * S, 2 * 4 * S + 4 * S)]  # fwd: read + write; bwd: read 2, write 1 (fp32)
    before = sum(joules(flops, b, BF16, q) for b, _, q in gemms) + sum(joules(fl, b, FP32) for fl, b in softmax)
    after = sum(joules(flops, a, BF16, q) for _, a, q in gemms) + sum(joules(fl, 0, FP32) for fl, _ in softmax)
    expected = 1 - (after + OPTIMIZER) / (before + OPTIMIZER)
    assert expected == pytest.approx(0.417, abs=0.001)
    assert f.saving_pct / 100 == pytest.approx(expected, abs=0.001)

    # the same shapes as linear -> softmax -> linear (two Linear modules): hidden features, not attention
    ops = [{"op": "linear", "m": s, "n": s, "k": d, "module": "fc1"},
           {"op": "softmax", "shape": [s, s], "module": "act"},
           {"op": "linear", "m": s, "n": d, "k": s, "module": "fc2"}]
    assert lint("WL103", *testing.scenario(ops, params=1000)) == []


# ---- WL105 ---------------------------------------------------------------------------------------------------------

def test_wl105_swiglu_is_not_a_pruning_mask(est):
    # silu(gate(x)) * up(x) on [256 tokens, 688] with hidden 256: the product has the [256, 688] shape of down's
    # weight (and the [k, n] = [256, 688] one of gate/up's), but it is down's input; no weight is masked
    for precision in ("bf16", "fp32"):
        assert "WL105" not in est("swiglu", ["x=float32[256,256]"], precision=precision)
    # prune on a square layer with as many tokens as outputs: the [512, 512] mask product is shaped like the layer's
    # input too, and is told from it by the layer's backward masking the weight's gradient
    f = est("pruned_square", ["x=float32[512,512]"])["WL105"]
    assert f.message.startswith("weight of '0' is multiplied by a pruning mask"), f.message


def test_wl105_torch_where_mask_in_the_layers_forward(est):
    f = est("where_masked", ["x=float32[4096,512]"])["WL105"]
    assert f.message.startswith("weight of '0' is multiplied by a pruning mask"), f.message
    assert f.layer == "0"


def test_wl105_where_mask_saving_by_hand():
    """torch.where(mask, w, 0) on a [1024, 1024] fp32 weight before a bf16 [4096, 1024] x [1024, 1024] linear, and
    the masked weight gradient in backward: the saving is the two where ops' energy."""
    n = 1024 * 1024
    where = OpRecord(op="aten.where.self", kind=OpKind.ELEMENTWISE, module="fc", phase=Phase.FORWARD,
                     dtype="float32", shapes=((1024, 1024), (1024, 1024), ()), flops=n, bytes_read=5 * n,
                     bytes_written=4 * n, module_type="Linear")  # bool mask (1 byte) + fp32 weight read, fp32 written
    graph, e = testing.scenario([{"op": "linear", "m": 4096, "n": 1024, "k": 1024, "module": "fc"}], params=1000)
    fwd, bwd = where, dataclasses.replace(where, phase=Phase.BACKWARD)
    recs = (fwd,) + graph.records[:2] + (bwd,) + graph.records[2:]  # where, linear, dX; masked dW; optimizer
    graph = dataclasses.replace(graph, records=recs)
    e = testing.simple_estimate(graph, testing.GPUS["a100-sxm4-80gb"], e.plan)
    (f,) = lint("WL105", graph, e)
    assert f.message.startswith("weight of 'fc' is multiplied by a pruning mask"), f.message

    gemm = 2 * 4096 * 1024 * 1024
    mk, mn, nk = 4096 * 1024, 4096 * 1024, 1024 * 1024
    linear = (joules(gemm, 2 * (mk + nk) + 2 * mn, BF16, waves(32 * 8))     # forward [4096, 1024] output
              + joules(gemm, 2 * (mn + nk) + 2 * mk, BF16, waves(32 * 8))  # dX [4096, 1024]
              + joules(gemm, 2 * (mn + mk) + 2 * nk, BF16, waves(8 * 8)))  # dW [1024, 1024]
    masks = 2 * joules(n, 9 * n, FP32)
    expected = masks / (masks + linear + OPTIMIZER)
    assert expected == pytest.approx(0.0724, abs=0.0005)
    assert f.saving_pct / 100 == pytest.approx(expected, abs=0.001)


# ---- WL106 ---------------------------------------------------------------------------------------------------------

def test_wl106_unrelated_inputs_are_not_a_factorization(est):
    # a: 1024 -> 768 on x, b: 768 -> 1024 on y (a model input of a's output shape [4096, 768]); b reads y, which
    # takes no gradient (and, under bf16 autocast, is cast from fp32: a's output is bf16 already)
    for precision in ("bf16", "fp32"):
        assert "WL106" not in est("two_inputs", ["x=float32[4096,1024]", "y=float32[4096,768]"],
                                  precision=precision)
    f = est("low_rank", ["x=float32[4096,1024]"])["WL106"]  # the same layers chained in a Sequential
    assert f.message.startswith("'0' -> '1' is a rank 768 factorization of a 1024x1024 layer"), f.message


def test_wl106_dropout_between_the_factors(est):
    # r·(k + n) / (k·n) = 768·2048 / 1024² = 1.50; break-even rank k·n / (k + n) = 1024² / 2048 = 512
    f = est("low_rank_dropout", ["x=float32[4096,1024]"])["WL106"]
    assert f.message.startswith("'0' -> '2' is a rank 768 factorization of a 1024x1024 layer: 1.50x the dense "
                                "FLOPs (break-even rank 512)"), f.message


def test_wl106_factors_in_one_module_by_hand():
    # (x @ A) @ B in one module: the pair's GEMMs are all the step's GEMMs; the dense layer does k·n / (r·(k + n))
    # = 1024² / (768·2048) = 2/3 of their FLOPs, at the same efficiency
    ops = [{"op": "linear", "m": 4096, "n": 768, "k": 1024, "module": "lowrank"},
           {"op": "linear", "m": 4096, "n": 1024, "k": 768, "module": "lowrank"}]
    (f,) = lint("WL106", *testing.scenario(ops, params=1000))
    assert f.message.startswith("'lowrank' is a rank 768 factorization of a 1024x1024 layer: 1.50x the dense FLOPs "
                                "(break-even rank 512)"), f.message
    assert f.saving_pct / 100 == pytest.approx(1 - 2 / 3, abs=0.005)
