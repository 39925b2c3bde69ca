"""attention="eager": scaled_dot_product_attention recorded as the separate kernels eager PyTorch runs
(Q @ K^T batched GEMM, scale, mask, softmax, dropout, @ V batched GEMM, and their backward), hand-counted."""

from __future__ import annotations

import pytest
import torch.nn as nn
import torch.nn.functional as F

import wattlint
from _torch_archs import HF_CONFIGS
from wattlint.frontends.hf import analyze_config
from wattlint.types import InputError, OpKind, Phase


class Attn(nn.Module):
    def __init__(self, causal: bool = False):
        super().__init__()
        self.causal = causal
        self.qkv = nn.Linear(32, 96, bias=False)

    def forward(self, x):
        b, s, _ = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, 4, 8).permute(2, 0, 3, 1, 4)  # b=2, h=4, s=16, d=8
        return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)


def _sel(g, phase, op):
    return [r for r in g.records if r.phase is phase and r.op == op]


@pytest.mark.parametrize("causal", [False, True])
def test_eager_attention_is_bmm_softmax_bmm_by_hand(causal):
    g = wattlint.analyze(Attn(causal), inputs=["x=float32[2,16,32]"], attention="eager")
    assert not [r for r in g.records if r.kind is OpKind.ATTENTION]
    # b*h = 8 heads of a 16 x 16 score matrix with head dim 8:
    #   Q @ K^T: 2 * 8 * 16 * 16 * 8 = 32768 FLOPs;  P @ V: 2 * 8 * 16 * 8 * 16 = 32768 FLOPs (the causal mask does
    #   not shrink eager GEMMs: the full square is computed, then masked)
    fwd = _sel(g, Phase.FORWARD, "aten.bmm.default")
    assert sorted((r.dim("b"), r.dim("m"), r.dim("n"), r.dim("k"), r.flops) for r in fwd) == [
        (8, 16, 8, 16, 32768), (8, 16, 16, 8, 32768)]
    # softmax over 8 * 16 * 16 = 2048 scores: 5 FLOPs per element forward (docs/COSTS.md), 4 backward
    (sm,) = _sel(g, Phase.FORWARD, "aten._softmax.default")
    assert (sm.flops, sm.bytes_read, sm.bytes_written) == (5 * 2048, 4 * 2048, 4 * 2048)
    (smb,) = _sel(g, Phase.BACKWARD, "aten._softmax_backward_data.default")
    assert smb.flops == 4 * 2048
    # backward: dP = dO @ V^T, dV = P^T @ dO, dQ = dS @ K, dK = dS^T @ Q: four GEMMs of the same 32768 FLOPs
    bwd = _sel(g, Phase.BACKWARD, "aten.bmm.default")
    assert [r.flops for r in bwd] == [32768] * 4
    assert any("attention: eager" in a for a in g.assumptions)
    # the default keeps one fused kernel whose FLOPs are the two GEMMs + the in-kernel softmax (65536 + 5 * 2048)
    if not causal:
        fused = wattlint.analyze(Attn(causal), inputs=["x=float32[2,16,32]"])
        (a,) = [r for r in fused.records if r.phase is Phase.FORWARD and r.kind is OpKind.ATTENTION]
        assert a.flops == 65536 + 5 * 2048 and not _sel(fused, Phase.FORWARD, "aten.bmm.default")


def test_eager_attention_hf_config_uses_the_eager_implementation():
    cfg = dict(HF_CONFIGS["gpt2"])
    g = analyze_config(cfg, micro_batch=1, seq_len=64, precision="fp32", attention="eager")
    assert not [r for r in g.records if r.kind is OpKind.ATTENTION]
    n_layer, heads, d = cfg["n_layer"], cfg["n_head"], cfg["n_embd"] // cfg["n_head"]
    fwd = _sel(g, Phase.FORWARD, "aten.bmm.default")
    # per layer: Q @ K^T and P @ V, each 2 * heads * 64 * 64 * d FLOPs
    assert len(fwd) == 2 * n_layer and all(r.flops == 2 * heads * 64 * 64 * d for r in fwd)
    assert len(_sel(g, Phase.FORWARD, "aten._softmax.default")) == n_layer
    assert any("attn_implementation=eager" in a for a in g.assumptions)
    sdpa = analyze_config(cfg, micro_batch=1, seq_len=64, precision="fp32")
    assert len([r for r in sdpa.records if r.phase is Phase.FORWARD and r.kind is OpKind.ATTENTION]) == n_layer


def test_unknown_attention_is_an_input_error():
    # checked with the other option values before tracing (a ConfigError, as wattlint.estimate raises); the frontend
    # still refuses it when called directly
    from wattlint.types import ConfigError

    with pytest.raises(ConfigError, match="attention= 'flash': expected one of"):
        wattlint.analyze(Attn(), inputs=["x=float32[2,16,32]"], attention="flash")
    from wattlint.frontends.source import analyze as frontend_analyze

    with pytest.raises(InputError, match="unknown attention"):
        frontend_analyze(Attn(), inputs=["x=float32[2,16,32]"], attention="flash")


def test_mfu_keeps_the_attention_term_when_attention_runs_eagerly(tmp_path):
    """Review: under --attention eager (and for models with their own eager attention) MFU's model FLOPs were 6N
    only, against the stated (6N + 12 L h s) convention. By hand for the llama test config (L = 2, heads x head dim
    = 512, s = 128): 6N + 12 x 2 x 512 x 128 per token, under both attention kernels."""
    import json as _json

    import wattlint
    from _torch_archs import HF_CONFIGS

    cfg = tmp_path / "llama.json"
    cfg.write_text(_json.dumps(HF_CONFIGS["llama"]))
    got = {}
    for attention in ("sdpa", "eager"):
        est = wattlint.estimate(str(cfg), gpu="a100", steps=1, seq_len=128, attention=attention)
        got[attention] = est.utilization.model_flops_per_token
        n = est.model.params
    assert got["eager"] == pytest.approx(got["sdpa"]) == pytest.approx(6 * n + 12 * 2 * 512 * 128)
