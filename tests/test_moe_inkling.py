"""Inkling's shared experts (InklingSharedExperts: [n_shared, ...] stacked weights run on every token) are traced as
written beside its routed experts, not refused as an unsupported MoE layout (the class-name rule '*Experts' caught
them). Expected values counted by hand in the comments."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from wattlint.frontends.hf import analyze_config  # noqa: E402
from wattlint.types import Phase  # noqa: E402

# tiny inkling_text: hidden 64, 2 layers (both MoE: mlp_layer_types 'sparse'), 4 routed experts top-2 of width 32,
# 2 shared experts of width 32
SIZES = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             head_dim=16, swa_num_attention_heads=4, swa_num_key_value_heads=2, swa_head_dim=16,
             intermediate_size=128, moe_intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2,
             n_shared_experts=2, max_position_embeddings=512, sliding_window_size=64, rel_extent=64)
SEQ = 128


@pytest.fixture(scope="module")
def graph():
    if "inkling_text" not in transformers.models.auto.configuration_auto.CONFIG_MAPPING_NAMES:
        pytest.skip("this transformers has no inkling_text")
    cfg = transformers.AutoConfig.for_model("inkling_text", **SIZES).to_dict()
    cfg["architectures"] = ["InklingForCausalLM"]
    return analyze_config(cfg, seq_len=SEQ, micro_batch=1)


def _gemm_flops(g, leaf, phase):
    return sum(r.flops for r in g.records
               if r.phase is phase and r.kind.value == "matmul" and r.module.split(".")[-1] == leaf)


def test_shared_experts_run_on_every_token(graph):
    # per layer, forward: gate, up and down bmm over the 2 shared experts, each on all 128 tokens:
    #   3 x 2 x (2 experts x 128 tokens x 64 x 32) = 3 x 1,048,576 = 3,145,728; 2 layers -> 6,291,456
    assert _gemm_flops(graph, "shared_experts", Phase.FORWARD) == 6_291_456


def test_routed_experts_keep_their_routed_cost(graph):
    # per layer, forward: 128 tokens x top-2 = 256 rows: gate_up 2 x 256 x 64 x 64 = 2,097,152 + down
    # 2 x 256 x 32 x 64 = 1,048,576 -> 3,145,728; 2 layers -> 6,291,456 (all 4 experts on every token: 4 x that / 2)
    assert _gemm_flops(graph, "experts", Phase.FORWARD) == 6_291_456
    assert [ly["experts"] for ly in graph.extra["moe"]["layers"]] == [4, 4]
