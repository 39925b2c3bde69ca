"""Review 50 of `analyze`: per-op cost defects found comparing the torch and ONNX paths on small models (expected
values hand-counted in the comments)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import wattlint
from wattlint.frontends.onnx import analyze_onnx
from wattlint.types import Phase


def _export(model, x, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), input_names=["x"], opset_version=17, dynamo=False,
                          do_constant_folding=False, **kw)
    return path


def _recs(g, phase, op=None):
    return [r for r in g.records if r.phase is phase and r.status.value != "ignored" and (op is None or r.op == op)]


class _Sdpa(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(32, 96, bias=False)

    def forward(self, x):
        b, s, _ = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, 4, 8).permute(2, 0, 3, 1, 4)  # b=2, h=4, s=16, d=8
        return F.scaled_dot_product_attention(q, k, v)


# ---- 1. the SDPA export's two sqrt(scale) Muls on q and k are inside the fused attention ----------------------------

def test_onnx_sdpa_scale_muls_fold_into_attention(tmp_path):
    g = analyze_onnx(_export(_Sdpa().eval(), torch.zeros(2, 16, 32), tmp_path / "a.onnx"))
    # the export scales q and k by sqrt(1/sqrt(8)) each (two onnx::Mul of [2,4,16,8] by one value): not priced
    assert not [r for r in g.records if r.op == "onnx::Mul" and r.flops]
    fwd = sum(r.flops for r in _recs(g, Phase.FORWARD) if not r.op.startswith("loss::"))
    # qkv: 2*32 rows*32*96 = 196608; attention: QK^T + PV = 2 * 2*(2*4)*16*16*8 = 65536, scores 5*(2*4)*16*16 =
    # 10240 (scale inside the kernel) -> 196608 + 65536 + 10240 = 272384 (the two Muls were 2 * 2*4*16*8 = 2048 more)
    assert fwd == 272384
    att = [r for r in _recs(g, Phase.FORWARD) if r.kind.value == "attention" and r.flops]
    assert [r.bytes_read for r in att] == [3 * 2 * 4 * 16 * 8 * 4]  # q, k, v fp32 read once: 12288 B


# ---- 2. the ONNX path assumes the loss the torch path assumes for the same model -------------------------------------

class _Seq(nn.Module):  # float x [2, 16, 64] -> [2, 16, 10]: no logits by the torch rule (no integer input)
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x)


def test_onnx_loss_is_the_torch_rule_sum_of_outputs(tmp_path):
    m = _Seq()
    t = wattlint.analyze(m, inputs=["x=float32[2,16,64]"])
    o = analyze_onnx(_export(m, torch.zeros(2, 16, 64), tmp_path / "s.onnx"))
    for g in (t, o):
        assert any(a.startswith("loss: sum of the forward outputs (no classification logits recognised")
                   for a in g.assumptions)
        assert not any("cross-entropy" in a for a in g.assumptions)
    lf = [(r.flops, r.bytes_read, r.bytes_written) for r in _recs(o, Phase.FORWARD) if r.op.startswith("loss::")]
    # sum over [2,16,10] = 320 elements: 320 FLOPs, reads 320*4 = 1280 B, writes one fp32 (4 B)
    assert lf == [(320, 1280, 4)]
    lb = [(r.flops, r.bytes_read, r.bytes_written) for r in _recs(o, Phase.BACKWARD) if r.op.startswith("loss::")]
    assert lb == [(0, 0, 4)]  # ones_like(loss): one fp32 written; sum's backward is an expand (no kernel)
    # the same as torch's records (aten.sum, aten.ones_like)
    tf = [(r.flops, r.bytes_read, r.bytes_written) for r in _recs(t, Phase.FORWARD) if r.op == "aten.sum.default"]
    assert tf == lf


class _Lm(nn.Module):  # ids [2, 8] -> [2, 8, 50] over a 50-row embedding: a token-level cross-entropy (both paths)
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.head = nn.Linear(16, 50)

    def forward(self, ids):
        return self.head(self.emb(ids))


def test_onnx_token_logits_over_embedding_vocab_are_cross_entropy(tmp_path):
    m = _Lm()
    t = wattlint.analyze(m, inputs=["ids=int64[2,8]"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.zeros(2, 8, dtype=torch.long),), str(tmp_path / "lm.onnx"), input_names=["ids"],
                          opset_version=17, dynamo=False)
    o = analyze_onnx(tmp_path / "lm.onnx")
    for g in (t, o):
        assert any(a.startswith("loss: token-level cross-entropy on the 50-way logits over their last dim (labels "
                                "of shape [2, 8], one per token of the integer input ids [2, 8]") for a in g.assumptions)
    # log_softmax over 16 rows x 50 = 800 logits: 5 FLOPs each = 4000; nll_loss: 1 per row = 16
    assert [r.flops for r in _recs(o, Phase.FORWARD) if r.op.startswith("loss::")] == [4000, 16]


def test_onnx_3d_output_not_over_a_vocab_is_summed(tmp_path):
    """ids [2, 8] -> [2, 8, 16] hidden states while the table has 50 rows: no logits (the torch rule)."""
    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 16)

        def forward(self, ids):
            return self.emb(ids) * 2.0

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Enc(), (torch.zeros(2, 8, dtype=torch.long),), str(tmp_path / "e.onnx"),
                          input_names=["ids"], opset_version=17, dynamo=False)
    o = analyze_onnx(tmp_path / "e.onnx")
    t = wattlint.analyze(Enc(), inputs=["ids=int64[2,8]"])
    for g in (t, o):
        assert any(a.startswith("loss: sum of the forward outputs") for a in g.assumptions)
    # sum of 2*8*16 = 256 elements: 256 FLOPs
    assert [r.flops for r in _recs(o, Phase.FORWARD) if r.op.startswith("loss::")] == [256]


# ---- 3. norm bytes: the bias is read (and its gradient written); GroupNorm's statistics are N x G ------------------

def _norm_rec(g, phase, op):
    return [(r.flops, r.bytes_read, r.bytes_written) for r in _recs(g, phase) if r.op == op]


def test_layer_norm_reads_weight_and_bias(tmp_path):
    m = nn.Sequential(nn.LayerNorm(64), nn.Linear(64, 10))
    t = wattlint.analyze(m, inputs=["x=float32[2,16,64]"])
    o = analyze_onnx(_export(m, torch.zeros(2, 16, 64), tmp_path / "ln.onnx"))
    # x [2,16,64] = 2048 elements: 7 FLOPs each = 14336; reads x 8192 B + gamma + beta 2*64*4 = 512 B -> 8704;
    # writes y 8192 B + fp32 mean / rstd over 32 rows 2*32*4 = 256 B -> 8448
    assert _norm_rec(t, Phase.FORWARD, "aten.native_layer_norm.default") == [(14336, 8704, 8448)]
    assert _norm_rec(o, Phase.FORWARD, "onnx::LayerNormalization") == [(14336, 8704, 8448)]
    # backward: 11 * 2048 = 22528; reads dy + x 16384 + gamma 256 + stats 256 = 16896; writes dx 8192 + dgamma +
    # dbeta 512 = 8704
    assert _norm_rec(t, Phase.BACKWARD, "aten.native_layer_norm_backward.default") == [(22528, 16896, 8704)]


def test_layer_norm_without_bias_and_rms_norm_read_and_write_one_parameter():
    from wattlint import costs as C

    # [32, 64] fp32: x 8192 B, weight 256 B, stats 2*32*4 = 256 B
    assert C.norm((32, 64), "float32", "layer", bias=False) == C.Cost(7 * 2048, 8192 + 256, 8192 + 256,
                                                                        C.OpKind.NORM)
    # RMS norm has no bias: backward writes dx + dweight = 8192 + 256
    b = C.norm((32, 64), "float32", "rms", backward=True)
    assert (b.bytes_read, b.bytes_written) == (2 * 8192 + 256 + 256, 8192 + 256)


def test_batch_norm_reads_bias():
    m = nn.Sequential(nn.Conv2d(3, 16, 1, bias=False), nn.BatchNorm2d(16))
    t = wattlint.analyze(m, inputs=["x=float32[4,3,8,8]"])
    # y [4,16,8,8] = 4096 elements, 16 KiB: 7*4096 = 28672 FLOPs; two passes over x 2*16384 + weight + bias
    # 2*16*4 = 128 -> 32896 read; y 16384 + fp32 mean / invstd per channel 2*16*4 = 128 -> 16512 written
    fwd = [x for r in ("aten.native_batch_norm.default", "aten.cudnn_batch_norm.default",
                       "aten._native_batch_norm_legit.default", "aten._native_batch_norm_legit_functional.default")
           for x in _norm_rec(t, Phase.FORWARD, r)]
    assert fwd == [(28672, 32896, 16512)]


def test_group_norm_statistics_are_n_by_groups(tmp_path):
    m = nn.Sequential(nn.Conv2d(4, 8, 1), nn.GroupNorm(2, 8))
    t = wattlint.analyze(m, inputs=["x=float32[2,4,16,16]"])
    o = analyze_onnx(_export(m.eval(), torch.zeros(2, 4, 16, 16), tmp_path / "gn.onnx"))
    # y [2,8,16,16] = 4096 elements, 16384 B: reads x + gamma + beta 2*8*4 = 64 -> 16448; writes y + fp32 mean and
    # rstd, N x G = 2*2 = 4 each: 2*4*4 = 32 -> 16416 (per channel, N x C, would be 128)
    assert _norm_rec(t, Phase.FORWARD, "aten.native_group_norm.default") == [(7 * 4096, 16448, 16416)]
    gn = [(r.flops, r.bytes_read, r.bytes_written) for r in _recs(o, Phase.FORWARD) if r.kind.value == "norm"
          and r.flops]
    assert gn == [(7 * 4096, 16448, 16416)]
    # backward: reads dy + x 32768 + gamma 32 + stats 32 = 32832; writes dx 16384 + dgamma + dbeta 64 = 16448
    assert _norm_rec(t, Phase.BACKWARD, "aten.native_group_norm_backward.default") == [(11 * 4096, 32832, 16448)]


# ---- 5. analyze refuses a batch that does not divide over GPUs x grad-accum, as the estimate does ------------------

@pytest.mark.parametrize("extra, what", [(("--grad-accum", "3"), "1 GPU(s) x grad-accum 3 = 3"),
                                         (("--gpus", "3"), "3 GPU(s) x grad-accum 1 = 3")])
def test_analyze_refuses_batch_not_dividing(run_cli, tmp_path, extra, what):
    p = _export(_Seq(), torch.zeros(8, 16, 64), tmp_path / "s.onnx", dynamic_axes={"x": {0: "b"}})
    # 8 samples over 3 micro-steps: 8 // 3 = 2 each would leave 2 samples untraced
    code, out, err = run_cli("analyze", str(p), "--batch-size", "8", *extra)
    assert code == 2 and out == ""
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and f"--batch-size 8 is not divisible by {what}" in lines[0]
    code, _, _ = run_cli("analyze", str(p), "--batch-size", "9", *extra)  # 9 = 3 x 3 divides
    assert code == 0
