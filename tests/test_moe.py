"""Mixture-of-experts models traced at their routed cost (wattlint.frontends.torch_moe).

Expected values are counted by hand in the comments (parameters, active matmul parameters, rows per expert);
none is computed by wattlint code."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch.nn as nn  # noqa: E402

from wattlint import costs as C  # noqa: E402
from wattlint.frontends import torch as wt  # noqa: E402
from wattlint.frontends.hf import analyze_config  # noqa: E402
from wattlint.types import InputError, OpKind, Phase  # noqa: E402

# the Mixtral-shaped config: 4 layers, hidden 1024, FFN 3584, 16 heads (head dim 64), 4 KV heads,
# 8 experts, top-2, vocab 32000
MIXTRAL_SMALL = dict(model_type="mixtral", architectures=["MixtralForCausalLM"], num_hidden_layers=4,
                     hidden_size=1024, intermediate_size=3584, num_attention_heads=16, num_key_value_heads=4,
                     num_local_experts=8, num_experts_per_tok=2, vocab_size=32000, max_position_embeddings=4096)
SEQ = 1024


def _grouped(g, phase):
    return [r for r in g.records if r.op == "aten._grouped_mm.default" and r.phase is phase]


@pytest.fixture(scope="module")
def mixtral():
    return analyze_config(dict(MIXTRAL_SMALL), seq_len=SEQ, micro_batch=1)


def test_mixtral_fwd_bwd_flops_per_token_match_hand_count(mixtral):
    # Active matmul parameters per token, by hand:
    #   attention per layer: q 1024x1024 + k 1024x256 + v 1024x256 + o 1024x1024          = 2,621,440
    #   router per layer: 1024 x 8                                                         =     8,192
    #   experts per layer: top-2 x (gate + up + down = 3 x 1024 x 3584 = 11,010,048)       = 22,020,096
    #   per layer 24,649,728; 4 layers                                                     = 98,598,912
    #   LM head 1024 x 32000 (the embedding is a gather, no matmul)                        = 32,768,000
    #   active total                                                                       = 131,366,912
    # 3 (fwd + 2x bwd) x 2 FLOPs/MAC x 131,366,912                                         = 788,201,472 / token
    # Causal attention: s(s+1)/2 = 1024*1025/2 = 524,800 query-key pairs per head; forward QK^T + PV
    #   = 2 x 2 x 524,800 x 64 x 16 heads = 2,149,580,800 per layer, x 4 layers = 8,598,323,200 per sequence;
    #   fwd + bwd = 3 x that = 25,794,969,600 per sequence / 1024 tokens                   =  25,190,400 / token
    hand = 788_201_472 + 25_190_400  # = 813,391,872 FLOPs per token
    ph = mixtral.by_phase()
    per_token = (ph[Phase.FORWARD].flops + ph[Phase.BACKWARD].flops) / SEQ
    assert abs(per_token / hand - 1) < 0.03, per_token / hand
    assert not mixtral.unsupported(), mixtral.unsupported()


def test_mixtral_experts_run_at_tokens_x_k_over_experts_rows(mixtral):
    # 1024 tokens x top-2 = 2048 routed rows per layer, 2048 / 8 experts = 256 rows per expert (balanced)
    fwd = _grouped(mixtral, Phase.FORWARD)
    assert len(fwd) == 4 * 2  # gate_up and down projections, 4 layers
    assert all(r.dim("b") == 8 and r.dim("m") == 256 for r in fwd)
    # 2 x 2048 rows x (1024 x 7168 gate_up + 3584 x 1024 down) per layer x 4 layers
    assert sum(r.flops for r in fwd) == 4 * 2 * 2048 * (1024 * 7168 + 3584 * 1024) == 180_388_626_432
    # backward: input gradient + weight gradient of each grouped GEMM, same FLOPs each
    bwd = _grouped(mixtral, Phase.BACKWARD)
    assert len(bwd) == 16 and sum(r.flops for r in bwd) == 2 * 180_388_626_432
    moe = mixtral.extra["moe"]
    assert moe["capacity_factor"] == 1.0 and len(moe["layers"]) == 4
    assert all(ly["rows_per_expert"] == [256] * 8 and ly["top_k"] == 2 for ly in moe["layers"])
    assert any("balanced routing assumed" in a and "256" in a for a in mixtral.assumptions)


def test_mixtral_optimizer_covers_every_expert(mixtral):
    # parameters by hand: embedding 32000 x 1024 = 32,768,000; per layer: attention 2,621,440 + router 8,192
    # + 8 experts x 11,010,048 = 88,080,384 + 2 RMSNorm x 1024 = 90,712,064, x 4 = 362,848,256;
    # final norm 1,024; LM head (not tied) 32,768,000 -> 428,385,280
    params = 428_385_280
    assert mixtral.model.trainable_params == params
    upd = [r for r in mixtral.records if r.phase is Phase.OPTIMIZER and r.op.startswith("aten._foreach_addcdiv_")]
    assert len(upd) == 1 and upd[0].dim("numel") == params  # AdamW's update touches all 8 experts of every layer
    # every expert weight gets its gradient: grouped weight-gradient GEMMs ([K, rows] x [rows, N] -> [8, K, N])
    wgrad = [r for r in _grouped(mixtral, Phase.BACKWARD) if len(r.shapes[1]) == 2]
    assert len(wgrad) == 8 and all(r.dim("b") == 8 for r in wgrad)


TINY = dict(model_type="mixtral", architectures=["MixtralForCausalLM"], num_hidden_layers=1, hidden_size=128,
            intermediate_size=256, num_attention_heads=4, num_key_value_heads=2, num_local_experts=8,
            num_experts_per_tok=2, vocab_size=1000)
# 64 tokens x top-2 = 128 rows, 16 per expert; expert GEMMs 2 x 128 x 3 x 128 x 256 = 25,165,824 FLOPs forward
TINY_EXPERT_FWD = 2 * 128 * 3 * 128 * 256


def _expert_fwd(g):
    return sum(r.flops for r in g.records if r.module.endswith("mlp.experts") and r.kind is OpKind.MATMUL
               and r.phase is Phase.FORWARD)


@pytest.mark.parametrize("impl,cf,rows,flops", [
    ("grouped_mm", 1.0, 16, TINY_EXPERT_FWD),
    ("eager", 1.0, 16, TINY_EXPERT_FWD),
    ("grouped_mm", 1.25, 20, TINY_EXPERT_FWD * 20 // 16),  # capacity ceil(1.25 x 128 / 8) = 20 rows (padding)
    ("eager", 0.5, 8, TINY_EXPERT_FWD // 2),  # capacity 8: tokens over capacity dropped
])
def test_grouped_and_loop_implementations_and_capacity_factor(impl, cf, rows, flops):
    g = analyze_config(dict(TINY, experts_implementation=impl), seq_len=64, micro_batch=1, capacity_factor=cf,
                       precision="bf16")
    assert _expert_fwd(g) == flops
    mms = [r for r in g.records if r.module.endswith("mlp.experts") and r.kind is OpKind.MATMUL
           and r.phase is Phase.FORWARD]
    if impl == "eager":  # one GEMM per expert and projection (gate_up, down)
        assert len(mms) == 16 and all(r.dim("m") == rows for r in mms)
    else:
        assert len(mms) == 2 and all(r.op == "aten._grouped_mm.default" and r.dim("m") == rows for r in mms)
    assert all(r.dtype == "bfloat16" for r in mms)  # expert GEMMs at the autocast dtype
    assert g.extra["moe"]["layers"][0]["rows_per_expert"] == [rows] * 8
    assert not g.unsupported()
    assert not any("nonzero->all elements" in a for a in g.assumptions)  # no data-dependent guess in the routing


def test_capacity_factor_through_source_analyze(tmp_path):
    import wattlint

    p = tmp_path / "config.json"
    p.write_text(json.dumps(TINY))
    g = wattlint.analyze(str(p), batch_size=1, seq_len=64, capacity_factor=1.25)
    assert _expert_fwd(g) == TINY_EXPERT_FWD * 20 // 16
    assert any("capacity factor 1.25" in a for a in g.assumptions)
    # 64 tokens x top-2 / 8 experts = 16 balanced rows; capacity ceil(1.25 x 16) = 20 (the text used to call 20 the
    # balanced share)
    line = next(a for a in g.assumptions if "balanced routing" in a)
    assert "each expert gets tokens x top-k / experts = 16 of the 64 x 2 token slots" in line
    assert "capacity ceil(1.25 x tokens x top-k / experts) = 20 rows (padding)" in line
    from wattlint.types import ConfigError

    for bad in (0, -1, float("nan"), "x"):  # refused with the other option values, as wattlint.estimate refuses them
        with pytest.raises(ConfigError, match="capacity_factor= "):
            wattlint.analyze(str(p), capacity_factor=bad)


# Qwen1.5-MoE-A2.7B and DeepSeek-V2-Lite shapes with 2 layers (benchmarks/moe_trace.py traces the full models)
QWEN_MOE = dict(model_type="qwen2_moe", architectures=["Qwen2MoeForCausalLM"], hidden_size=2048,
                intermediate_size=5632, moe_intermediate_size=1408, shared_expert_intermediate_size=5632,
                num_experts=60, num_experts_per_tok=4, num_hidden_layers=2, num_attention_heads=16,
                num_key_value_heads=16, vocab_size=151936, decoder_sparse_step=1, norm_topk_prob=False)
DSV2_LITE = dict(model_type="deepseek_v2", architectures=["DeepseekV2ForCausalLM"], hidden_size=2048,
                 intermediate_size=10944, moe_intermediate_size=1408, num_hidden_layers=2, num_attention_heads=16,
                 num_key_value_heads=16, n_routed_experts=64, n_shared_experts=2, num_experts_per_tok=6,
                 first_k_dense_replace=1, kv_lora_rank=512, q_lora_rank=None, qk_nope_head_dim=128,
                 qk_rope_head_dim=64, v_head_dim=128, vocab_size=102400, topk_method="greedy", n_group=1,
                 topk_group=1, routed_scaling_factor=1.0)


def test_qwen_moe_shared_plus_routed_experts():
    g = analyze_config(dict(QWEN_MOE), seq_len=256, micro_batch=1)
    # 256 tokens x top-4 = 1024 rows over 60 experts: 1024 = 60 x 17 + 4 -> four experts get 18, 56 get 17
    rows = g.extra["moe"]["layers"][0]["rows_per_expert"]
    assert sorted(rows) == [17] * 56 + [18] * 4
    # routed expert GEMMs per layer: 2 x 1024 rows x 3 x 2048 x 1408; 2 MoE layers
    assert _expert_fwd(g) == 2 * (2 * 1024 * 3 * 2048 * 1408)
    # the shared expert runs on every token: 3 GEMMs of 256 x 2048 x 5632 per layer
    shared = sum(r.flops for r in g.records if ".mlp.shared_expert." in r.module and r.kind is OpKind.MATMUL
                 and r.phase is Phase.FORWARD)
    assert shared == 2 * (2 * 256 * 3 * 2048 * 5632)
    assert not g.unsupported()


def test_deepseek_v2_lite_shared_plus_routed_experts():
    g = analyze_config(dict(DSV2_LITE), seq_len=256, micro_batch=1)
    # layer 0 dense (first_k_dense_replace=1), layer 1 MoE: 256 x top-6 = 1536 rows / 64 experts = 24 each
    (ly,) = g.extra["moe"]["layers"]
    assert ly["module"] == "model.layers.1.mlp.experts" and ly["rows_per_expert"] == [24] * 64
    assert _expert_fwd(g) == 2 * 1536 * 3 * 2048 * 1408
    # 2 shared experts fused in one MLP of width 2 x 1408 on all 256 tokens
    shared = sum(r.flops for r in g.records if ".mlp.shared_experts." in r.module and r.kind is OpKind.MATMUL
                 and r.phase is Phase.FORWARD)
    assert shared == 2 * 256 * 3 * 2048 * 2816
    assert not g.unsupported()


def test_deepseek_v3_sigmoid_group_limited_router():
    # DeepSeek-V3 routing (sigmoid scores + correction bias, 2 groups of 4, top-1 group) on 8 routed experts, top-2,
    # one shared expert of width 32; layer 1 is MoE: 64 tokens x 2 = 128 rows / 8 = 16 per expert
    cfg = dict(model_type="deepseek_v3", architectures=["DeepseekV3ForCausalLM"], hidden_size=64,
               intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=4, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
               first_k_dense_replace=1, kv_lora_rank=16, q_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
               v_head_dim=16, n_group=2, topk_group=1, vocab_size=100)
    g = analyze_config(cfg, seq_len=64, micro_batch=1)
    (ly,) = g.extra["moe"]["layers"]
    assert ly["rows_per_expert"] == [16] * 8 and ly["top_k"] == 2
    assert _expert_fwd(g) == 2 * 128 * 3 * 64 * 32
    assert not g.unsupported()


# Switch Transformers with the NeuSight switchxl4 widths (d_model 1024, d_ff 16384, 4 experts, expert capacity 64)
# and 2 + 2 layers, one sparse in the encoder and one in the decoder
SWITCH = dict(model_type="switch_transformers", architectures=["SwitchTransformersForConditionalGeneration"],
              d_model=1024, d_ff=16384, d_kv=128, num_heads=32, num_layers=2, num_decoder_layers=2,
              num_sparse_encoder_layers=1, num_sparse_decoder_layers=1, num_experts=4, expert_capacity=64,
              vocab_size=32128, dense_act_fn="relu", router_dtype="float32", is_encoder_decoder=True)


@pytest.mark.parametrize("cf,per_seq", [(1.0, 64), (0.25, 32)])
def test_switch_capacity_from_config(cf, per_seq):
    # seq 512 / 4 experts = 128 tokens per expert per sequence (balanced), capped at the config's capacity 64;
    # with capacity factor 0.25: ceil(0.25 x 512 / 4) = 32 < 64. Batch 2 -> rows = 2 x per-sequence rows.
    g = analyze_config(dict(SWITCH), seq_len=512, micro_batch=2, capacity_factor=cf)
    layers = g.extra["moe"]["layers"]
    assert len(layers) == 2 and all(ly["rows_per_expert"] == [2 * per_seq] * 4 for ly in layers)
    assert all(ly["expert_capacity"] == 64 for ly in layers)
    ex = sum(r.flops for r in g.records if ".experts.expert_" in r.module and r.kind is OpKind.MATMUL
             and r.phase is Phase.FORWARD)
    # 2 sparse layers x 4 experts x (wi + wo) x 2 x rows x 1024 x 16384
    assert ex == 2 * 4 * 2 * (2 * (2 * per_seq) * 1024 * 16384)
    if cf == 1.0:
        assert any("expert capacity 64" in a and "min(64, ceil(1 x 512 / 4)) = 64" in a for a in g.assumptions)


def test_grouped_gemm_formula_layouts():
    # forward / input grad: [600 rows, 64] x [6 groups, 64, 32] -> 2 x 600 x 64 x 32, 100 rows per group
    c = C.grouped_gemm((600, 64), (6, 64, 32), 6, "bfloat16")
    assert c.flops == 2 * 600 * 64 * 32 and dict(c.dims) == {"b": 6, "m": 100, "n": 32, "k": 64}
    assert c.bytes_read == (600 * 64 + 6 * 64 * 32) * 2 and c.bytes_written == 600 * 32 * 2
    # weight grad: [64, 600] x [600, 32] -> [6, 64, 32]: the 600-long contraction split in 6
    c = C.grouped_gemm((64, 600), (600, 32), 6, "float32")
    assert c.flops == 2 * 64 * 600 * 32 and dict(c.dims)["k"] == 100 and c.bytes_written == 6 * 64 * 32 * 4
    # 3-D x 3-D: batched
    c = C.grouped_gemm((6, 10, 64), (6, 64, 32), 6, "float32")
    assert c.flops == 2 * 6 * 10 * 64 * 32


# ---- unsupported layouts are errors, never silent undercounts -----------------------------------------------------

class LoopMoE(nn.Module):
    """A hand-written top-2 MoE with a ModuleList of experts and data-dependent routing (not a known layout)."""

    def __init__(self, d=16, e=4):
        super().__init__()
        self.gate = nn.Linear(d, e)
        self.experts = nn.ModuleList([nn.Linear(d, d) for _ in range(e)])

    def forward(self, x):
        w, idx = self.gate(x).softmax(-1).topk(2, dim=-1)
        out = torch.zeros_like(x)
        for i, ex in enumerate(self.experts):
            tok, slot = torch.where(idx == i)
            out.index_add_(0, tok, ex(x[tok]) * w[tok, slot, None])
        return out


class StackedMoE(nn.Module):
    def __init__(self, d=16, e=4):
        super().__init__()
        self.num_experts = e
        self.w = nn.Parameter(torch.empty(e, d, d))

    def forward(self, x):
        return x @ self.w[0]


@pytest.mark.parametrize("cls,why", [(LoopMoE, "4 expert modules in 'experts'"),
                                     (StackedMoE, "3-D parameter 'w'")])
def test_unsupported_moe_layout_is_an_input_error(cls, why):
    with torch.device("meta"):
        m = cls()
    with pytest.raises(InputError, match="unsupported mixture-of-experts layout") as e:
        wt.trace(m, (torch.empty(8, 16),))
    assert cls.__name__ in str(e.value) and why in str(e.value)


def test_unsupported_moe_layout_exits_2(run_cli, tmp_path):
    src = tmp_path / "moe_model.py"
    src.write_text("import torch, torch.nn as nn\n"
                   "class M(nn.Module):\n"
                   "    def __init__(self):\n"
                   "        super().__init__()\n"
                   "        self.experts = nn.ModuleList([nn.Linear(8, 8) for _ in range(4)])\n"
                   "    def forward(self, x):\n"
                   "        return sum(e(x) for e in self.experts)\n"
                   "def build():\n"
                   "    return M(), (torch.empty(2, 8),)\n")
    code, out, err = run_cli("analyze", f"{src}:build")
    assert code == 2, err
    assert err.count("\n") == 1 and "unsupported mixture-of-experts layout" in err and "internal error" not in err


def test_forward_restored_after_trace():
    from wattlint.frontends import hf

    cfg = hf.load_config(dict(TINY))
    model = hf.build_model(cfg)
    experts = model.model.layers[0].mlp.experts
    specs = hf.default_inputs(model, cfg, 1, 32)
    wt.trace(model, (), {k: wt.spec_tensor(s) for k, s in specs.items()}, hf=True)
    assert "forward" not in experts.__dict__  # the class's own forward again
