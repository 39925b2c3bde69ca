"""Communication of expert-parallel plans (review of parallel plans against hand counts): the MoE all-to-all of a
tensor-parallel rank carries its 1/tp of the tokens and, when the expert group spans nodes, only the share bound
for other nodes crosses the network; the data-parallel gradient reduction leaves out the experts other ranks hold
and reduces the held ones over the ranks holding the same experts. Every expected value is computed by hand."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

import wattlint  # noqa: E402

# 2 layers, hidden 256, 4 heads of 64, 2 key/value heads, 8 experts of SwiGLU 256 -> 512, top-2, vocabulary 1000
MIXTRAL = dict(model_type="mixtral", architectures=["MixtralForCausalLM"], hidden_size=256, intermediate_size=512,
               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, num_local_experts=8,
               num_experts_per_tok=2, vocab_size=1000, max_position_embeddings=64)


@pytest.fixture
def moe(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(MIXTRAL))
    # 16 A100s (8 per node, 400 Gbit/s per node), TP 2 with sequence parallelism, EP 8 over the dp = 8 replicas;
    # batch 8 = micro-batch 1 x 8 replicas, 64 tokens
    return wattlint.estimate(str(p), gpu="a100-sxm4-80gb", gpus=16, gpus_per_node=8, tensor_parallel=2,
                             sequence_parallel=True, expert_parallel=8, batch_size=8, seq_len=64,
                             internode_gbps=400.0, precision="bf16", steps=1, lint=False)


def test_moe_all_to_all_of_a_tensor_parallel_rank_spanning_nodes(moe):
    # each TP rank routes 64 / 2 = 32 tokens x top-2 x 256 x 2 B = 32,768 B; its 8 expert ranks sit 2 apart, 4 in its
    # node: 3/8 of the buffer over NVLink (600 GB/s bidirectional -> 300 x 0.8 = 240 GB/s), 4/8 over the network
    # (400 Gbit/s / 8 GPUs x 0.8 = 5 GB/s per GPU), + 40 us per call across nodes
    a2a = 32 * 2 * 256 * 2
    one = max(a2a * 3 / 8 / 240e9, a2a * 4 / 8 / 5e9) + 40e-6
    # 4 all-to-alls per MoE layer (dispatch, combine; forward and backward), 2 layers, 1 micro-batch
    assert moe.phases["expert_all_to_all"].time_s == pytest.approx(2 * 4 * one, rel=1e-9)
    line = next(a for a in moe.assumptions if a.startswith("expert parallel 8: 4 all-to-alls"))
    assert "tokens / tp 2 x top-k x hidden" in line and "to the 3 expert ranks in the node" in line, line


def test_data_parallel_gradients_of_an_expert_parallel_plan(moe):
    # per GPU under TP 2 (every parameter split over the 2 TP ranks): routed experts 2 layers x 8 experts x
    # 3 x 256 x 512 = 6,291,456 / 2 = 3,145,728, of which this GPU holds its 1/8: 393,216; the others: embeddings and
    # LM head 2 x 1000 x 256, per layer q, o 256 x 256, k, v 256 x 128, router 256 x 8, 2 norms of 256, and the final
    # norm: 512,000 + 2 x 199,168 + 256 = 910,592 / 2 = 455,296
    line = next(a for a in moe.assumptions if a.startswith("data parallel over 8 GPUs"))
    assert ("expert parallel 8: this GPU's 393,216 routed-expert parameters over the 1 ranks holding the same "
            "experts, its 455,296 others over all 8") in line, line
    # the 8 data-parallel replicas, 4 per node: the others' fp32 gradients (autocast) all-reduced over 8 ranks on 2
    # nodes, the node's 400 Gbit/s shared by its 2 data-parallel rings (200 Gbit/s each): 2 x 7/8 x 4 x 455,296 B
    # at 25 GB/s x 0.8 (slower than NVLink's 240 GB/s), + 1 call x 30 us x log2(8); the held experts have no one
    # to reduce with (8 / 8 = 1 rank)
    t = 2 * 7 / 8 * 4 * 455_296 / (200 / 8 * 1e9 * 0.8) + 30e-6 * 3
    exposed = max(0.1 * t, t - moe.phases["backward"].time_s)  # overlapped with the one micro-batch's backward
    assert moe.phases["communication"].time_s == pytest.approx(exposed, rel=1e-6)


def test_expert_gradient_rings_share_the_network_of_their_data_parallel_ring(tmp_path):
    """32 A100s (8 per node, 400 Gbit/s per node), no tensor parallelism, EP 2 over dp 32: each GPU holds half the
    experts of each layer, whose gradients are reduced over the 16 ranks holding the same half (4 per node); the
    node's 2 expert rings run at once, 200 Gbit/s each."""
    p = tmp_path / "config.json"
    p.write_text(json.dumps(MIXTRAL))
    e = wattlint.estimate(str(p), gpu="a100-sxm4-80gb", gpus=32, gpus_per_node=8, expert_parallel=2, batch_size=32,
                          seq_len=64, internode_gbps=400.0, precision="bf16", steps=1, lint=False)
    # experts: 2 layers x 8 x 3 x 256 x 512 / 2 = 3,145,728 fp32 gradients; all-reduce over 16 ranks on 4 nodes:
    # 2 x 15/16 x 12,582,912 B at 200 Gbit/s x 0.8 = 20 GB/s (NVLink's 240 GB/s is faster); 1 call x 30 us x log2(16)
    experts = 2 * 15 / 16 * 4 * 3_145_728 / 20e9 + 30e-6 * 4
    # the others, 910,592 fp32 gradients (see above, no TP split), over all 32 ranks at 400 Gbit/s x 0.8 = 40 GB/s
    others = 2 * 31 / 32 * 4 * 910_592 / 40e9 + 30e-6 * 5
    t = experts + others
    exposed = max(0.1 * t, t - e.phases["backward"].time_s)
    assert e.phases["communication"].time_s == pytest.approx(exposed, rel=1e-6)


def test_expert_rings_beyond_the_ranks_of_a_node_share_it_among_those_ranks(tmp_path):
    """32 A100s (8 per node, 400 Gbit/s), EP 16 over dp 32: each expert group is 2 ranks on 2 nodes, so a node's 8
    GPUs sit in 8 expert rings, 50 Gbit/s each (it gave each 400 / 16 = 25)."""
    cfg = {**MIXTRAL, "num_local_experts": 16}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    e = wattlint.estimate(str(p), gpu="a100-sxm4-80gb", gpus=32, gpus_per_node=8, expert_parallel=16, batch_size=32,
                          seq_len=64, internode_gbps=400.0, precision="bf16", steps=1, lint=False)
    # held experts: 2 layers x 16 x 3 x 256 x 512 / 16 = 786,432 fp32 gradients, all-reduced over 2 ranks on 2 nodes:
    # 2 x 1/2 x 3,145,728 B at 50 Gbit/s x 0.8 = 5 GB/s; 1 call x 30 us x log2(2)
    experts = 2 * 1 / 2 * 4 * 786_432 / 5e9 + 30e-6
    # the others, 910,592 + 2 layers x 256 x 8 more router weights = 914,688, over all 32 ranks at 40 GB/s
    others = 2 * 31 / 32 * 4 * 914_688 / 40e9 + 30e-6 * 5
    t = experts + others
    exposed = max(0.1 * t, t - e.phases["backward"].time_s)
    assert e.phases["communication"].time_s == pytest.approx(exposed, rel=1e-6)


@pytest.mark.parametrize("extra, per_layer, rows", [
    (dict(recompute="full"), 6, 1.0),   # the recomputed forward dispatches and combines again
    (dict(capacity_factor=2.0), 4, 2.0),  # the experts' buffers hold 2x the assignments: so does each all-to-all
    (dict(capacity_factor=0.5), 4, 0.5),  # tokens over capacity are dropped, never sent
])
def test_moe_all_to_all_follows_recompute_and_the_expert_buffers(tmp_path, extra, per_layer, rows):
    """The all-to-all was 4 per MoE layer of tokens x top-k whatever the plan: full recompute repeats the forward's
    2 (as it repeats the tensor-parallel collectives), and an expert receives exactly its capacity-sized buffer (the
    expert compute already followed the capacity factor, the all-to-all did not). Same plan and hand count as the
    test above, scaled."""
    p = tmp_path / "config.json"
    p.write_text(json.dumps(MIXTRAL))
    est = wattlint.estimate(str(p), gpu="a100-sxm4-80gb", gpus=16, gpus_per_node=8, tensor_parallel=2,
                            sequence_parallel=True, expert_parallel=8, batch_size=8, seq_len=64, internode_gbps=400.0,
                            precision="bf16", steps=1, lint=False, **extra)
    a2a = 32 * 2 * 256 * 2 * rows
    one = max(a2a * 3 / 8 / 240e9, a2a * 4 / 8 / 5e9) + 40e-6
    assert est.phases["expert_all_to_all"].time_s == pytest.approx(2 * per_layer * one, rel=1e-9)
    assert any(a.startswith(f"expert parallel 8: {per_layer} all-to-alls") for a in est.assumptions)
