"""Review 50 of the parallel layouts: pipeline sends inside a node, sequence parallel's divisibility, peak memory per
pipeline stage, the bubble's launch gaps, and three note wordings. Expected values by hand in each docstring."""

from __future__ import annotations

import json

import pytest

from _parallel_fixtures import est
from wattlint import parallel as P
from wattlint.types import ConfigError


def test_stage_boundaries_in_a_node_follow_the_megatron_rank_order():
    """16 GPUs, pp 4, nodes of 8, ranks tp-cp-ep-dp-pp (stages outermost): stage i holds ranks 4i..4i+3, so stages
    0 and 1 share node 0 (ranks 0-7), 2 and 3 node 1 (8-15); boundary 1 -> 2 (rank 4 -> 8) and the wrap 3 -> 0 cross
    nodes. 12 GPUs on nodes of 8 with pp 4: stage 2 (ranks 6-8) straddles nodes: rank 3 -> 6 stays, 5 -> 8 leaves."""
    assert P.pipeline_boundaries_in_node(16, 4, 8) == (True, False, True, False)
    assert P.pipeline_boundaries_in_node(12, 4, 8) == (True, False, False, False)
    assert P.pipeline_boundaries_in_node(8, 4, 8) == (True, True, True, True)


def test_sends_between_stages_of_one_node_go_over_nvlink(gpt_config):
    """tp 2 x pp 4 x dp 2 on 16 A100s, 4 blocks (one per stage), micro-batch 1 x 256 tokens x h 512 x 2 B = 262,144 B,
    / tp 2 = 131,072 B per send. Nodes of 8: boundaries 1-2 and 3-4 in a node (NVLink 300 GB/s x 0.8 = 240e9 B/s +
    20 us), 2-3 over the network; nodes of 4: every boundary over the network (per GPU 4 x 200 Gbit/s / 8 / 4 GPUs x
    0.8 = 20e9 B/s, as 8 x 200 / 8 / 8 x 0.8 on nodes of 8, + 40 us). The bubble crosses each boundary once with 2
    sends, so the two differ by 2 boundaries x 2 sends x (net - nvlink); the per-micro-batch sends are the slowest
    boundary's in both (the network's)."""
    kw = dict(gpus=16, tensor_parallel=2, pipeline_parallel=4, batch_size=16, micro_batch_size=1, host_op_time=0.0)
    eight = est(gpt_config, **kw)
    four = est(gpt_config, gpus_per_node=4, **kw)
    net, nv = 131_072 / 20e9 + 40e-6, 131_072 / 240e9 + 20e-6
    assert eight.phases["pipeline_p2p"].time_s == pytest.approx(8 * 2 * net, rel=1e-9)
    assert four.phases["pipeline_p2p"].time_s == pytest.approx(8 * 2 * net, rel=1e-9)
    diff = four.phases["pipeline_bubble"].time_s - eight.phases["pipeline_bubble"].time_s
    assert diff == pytest.approx(2 * 2 * (net - nv), rel=1e-6)
    assert any("the step runs at the pace of the slowest boundary" in a for a in eight.assumptions)


def test_sequence_parallel_needs_the_sequence_to_divide_over_tp(gpt_config, run_cli):
    """Megatron-LM splits each sequence over the tp ranks under sequence parallelism: 255 % 2 = 1 is refused (exit 2,
    one line), 256 % 2 = 0 is not."""
    with pytest.raises(ConfigError, match="sequence length 255 does not divide over the 2 tensor-parallel ranks"):
        est(gpt_config, gpus=2, tensor_parallel=2, sequence_parallel=True, batch_size=2, seq_len=255)
    code, _, err = run_cli(gpt_config, "--gpus", 2, "--tensor-parallel", 2, "--sequence-parallel", "--batch-size", 2,
                           "--seq-len", 255, "--steps", 1)
    assert code == 2 and "sequence length 255" in err
    est(gpt_config, gpus=2, tensor_parallel=2, sequence_parallel=True, batch_size=2)


def test_peak_memory_counts_the_fuller_stage_with_its_own_weights(gpt_config):
    """4 blocks on 2 stages, 4 micro-batches of 1: the first stage keeps 2 micro-batches of its 2 layers and holds its
    2 blocks (12 h^2 + 13 h = 3,152,384 each at h 512) + the token and position embeddings 1000 x 512 + 256 x 512 =
    6,947,840 parameters; the last stage would hold 2 blocks + the 1000 x 512 LM head = 6,816,768. fp32 weights (4 B)
    of the first stage: 27,791,360 B."""
    e = est(gpt_config, gpus=2, pipeline_parallel=2, batch_size=4, micro_batch_size=1)
    assert any("the first stage (no loss" in a and "is the fuller" in a for a in e.assumptions)
    assert e.memory.breakdown["weights"] == pytest.approx(4 * 6_947_840, abs=8)
    assert e.memory.breakdown["gradients"] == pytest.approx(4 * 6_947_840, abs=8)


def test_bubble_counts_the_other_stages_launch_gaps(gpt_config):
    """2 equal stages, micro-batch 1: bubble = 1 x (the other stage's blocks + its launch gaps, taken as the costed
    stage's per block: 2 blocks of 2, so all of one micro-batch's gaps) + one boundary's 2 sends. One micro-batch's
    gaps by hand: the step's idle gaps at 16 micro-batches less those at 8 (the optimizer step's gap cancels), / 8."""
    a = est(gpt_config, gpus=2, pipeline_parallel=2, batch_size=8, micro_batch_size=1)
    b = est(gpt_config, gpus=2, pipeline_parallel=2, batch_size=16, micro_batch_size=1)
    gap = (b.phases["idle_gaps"].time_s - a.phases["idle_gaps"].time_s) / 8
    assert gap > 0
    blocks = P.stage_blocks_of(a.graph)
    block_fb = sum(t for r, t in zip(a.graph.records, a.op_times_s)
                   if r.phase.value in ("forward", "backward") and blocks.index(r.module) is not None)
    hop = a.phases["pipeline_p2p"].time_s / 8
    assert a.phases["pipeline_bubble"].time_s == pytest.approx(block_fb + gap + hop, rel=1e-6)


def test_fullest_stage_named_for_uneven_stages_of_one_micro_batch(gpt_config):
    """4 blocks on 3 stages (1/2/1), 1 micro-batch: every stage keeps 1 micro-batch, so the middle stage's 2 layers
    are the fullest without the loss, not 'the first stage'."""
    e = est(gpt_config, gpus=3, pipeline_parallel=3, batch_size=1, micro_batch_size=1)
    assert any("stage 2 of 3 the fullest, 2 layers' worth" in a for a in e.assumptions)


def test_moe_wording_one_expert_and_no_expert_rank_in_the_node(tmp_path, run_cli):
    """A 1-expert MoE under --expert-parallel 2 is refused without 'use a divisor of 1'; with one GPU per node and
    ep 4 no other expert rank is in the node: no 'NVLink ... to the 0 expert ranks'."""
    cfg = dict(architectures=["MixtralForCausalLM"], model_type="mixtral", hidden_size=256, intermediate_size=512,
               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, num_local_experts=1,
               num_experts_per_tok=1, vocab_size=1000, max_position_embeddings=256)
    one = tmp_path / "one.json"
    one.write_text(json.dumps(cfg))
    code, _, err = run_cli(one, "--gpus", 2, "--expert-parallel", 2, "--batch-size", 2, "--seq-len", 128, "--steps", 1)
    assert code == 2 and "single expert" in err and "divisor of 1" not in err
    four = tmp_path / "four.json"
    four.write_text(json.dumps(dict(cfg, num_local_experts=4)))
    code, out, _ = run_cli(four, "--gpus", 4, "--gpus-per-node", 1, "--expert-parallel", 4, "--batch-size", 4,
                           "--seq-len", 128, "--steps", 1)
    assert code == 0 and "none in this GPU's node" in out and "the 0 expert ranks" not in out
