"""Findings of a hand-checked walk of the parallel surface (2026-12-07): the out-of-memory finding's advice under
pipeline parallelism, the link of a tensor x context-parallel group that straddles nodes, the overlap FSDP's note
states."""

from __future__ import annotations

from _parallel_fixtures import est

from wattlint.lint.rules.hardware import _memory_remedies
from wattlint.types import Plan


def _plan(**kw) -> Plan:
    base = dict(batch_size=64, steps=10, pue=1.2, carbon_intensity_g_per_kwh=400.0, gpus=64, tensor_parallel=4,
                pipeline_parallel=4, precision="bf16", sharding="none")
    base.update(kw)
    return Plan(**base)


def test_the_memory_advice_under_pipeline_parallelism_is_a_setting_the_estimate_takes():
    """Review: WL201 advised '--sharding zero3 over the 4 data-parallel GPUs' for a TP 4 x PP 4 plan, which the
    estimate refuses (DeepSpeed's pipeline engine takes ZeRO 0 / 1 only); FSDP is taken with a pipeline."""
    with_pp = _memory_remedies(_plan())
    assert "--sharding fsdp over the 4 data-parallel GPUs" in with_pp and not any("zero3" in r for r in with_pp)
    assert "--sharding zero3 over the 16 data-parallel GPUs" in _memory_remedies(_plan(pipeline_parallel=1))


def _ring_link(gpt_config, gpus):
    e = est(gpt_config, gpus=gpus, tensor_parallel=2, context_parallel=3, batch_size=gpus // 6 * 2,
            micro_batch_size=1, seq_len=252)
    (line,) = [a for a in e.assumptions if a.startswith("context parallel 3: per layer")]
    return line


def test_a_tensor_x_context_group_that_straddles_two_nodes_runs_over_the_network(gpt_config):
    """Review: 12 GPUs on nodes of 8, tp 2 x cp 3: the group of ranks 6-11 spans both nodes (6-7 and 8-11), yet the
    ring was priced over NVLink (the check was tp x cp <= GPUs per node). 6 GPUs: one node, NVLink."""
    assert " over NVLink " in _ring_link(gpt_config, 6)
    assert " over network " in _ring_link(gpt_config, 12)


def test_fsdp_communication_is_said_overlapped_with_forward_and_backward(gpt_config):
    """The FSDP / ZeRO-3 collectives are overlapped with forward + backward (the next unit's weights prefetched, as
    energy.system prices them); the note said 'the backward pass'."""
    e = est(gpt_config, gpus=2, batch_size=4, sharding="fsdp")
    (line,) = [a for a in e.assumptions if a.startswith("data parallel over 2 GPUs (2 per node)")]
    assert "overlapped with the forward and backward passes" in line, line
    e = est(gpt_config, gpus=2, batch_size=4)
    (line,) = [a for a in e.assumptions if a.startswith("data parallel over 2 GPUs (2 per node)")]
    assert "overlapped with the backward pass" in line, line


def test_the_expert_parallel_refusal_shows_the_context_parallel_degree(tmp_path):
    """Review: '--expert-parallel 8 does not divide the data-parallel degree 4 (= --gpus 8 / (tp 1 x pp 1))', an
    equation that reads 8 / 1 = 4: the context-parallel degree 2 divides it too (8 / (1 x 2 x 1) = 4)."""
    import pytest

    transformers = pytest.importorskip("transformers")
    from wattlint.types import ConfigError

    cfg = transformers.MixtralConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=4, num_local_experts=8, num_experts_per_tok=2,
                                     vocab_size=100, max_position_embeddings=256)
    cfg.architectures = ["MixtralForCausalLM"]
    cfg.save_pretrained(tmp_path)
    with pytest.raises(ConfigError) as e:
        est(tmp_path / "config.json", gpus=8, context_parallel=2, expert_parallel=8, batch_size=16, seq_len=64)
    assert "does not divide the data-parallel degree 4 (= --gpus 8 / (tp 1 x cp 2 x pp 1))" in str(e.value)
