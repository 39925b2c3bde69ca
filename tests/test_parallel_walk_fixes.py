"""Review walk over Hugging Face configs (2026-12): Switch Transformers' expert-parallel all-to-all, model
parallelism of attention-free stacks (RWKV, Mamba) and MFU of models the 6N convention does not count (Whisper's
long encoder input, ALBERT's layers shared across depth). Expected values by hand in the comments."""

from __future__ import annotations

import json

import pytest

import wattlint
from wattlint import parallel as P
from wattlint.types import Phase

pytest.importorskip("transformers")


def _write(tmp_path, name, cfg):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


# ---- 1. Switch expert capacity: the all-to-all carries the rows the experts compute ------------------------------

SWITCH = dict(model_type="switch_transformers", architectures=["SwitchTransformersForConditionalGeneration"],
              d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2, num_decoder_layers=2, num_experts=8,
              num_sparse_encoder_layers=1, num_sparse_decoder_layers=1, vocab_size=100, is_encoder_decoder=True)


@pytest.mark.parametrize("capacity, cf, per_seq, rows", [
    # capacity 64 does not bind: min(64, ceil(1 x 128 / 8)) = 16 rows per expert and sequence; the all-to-all
    # carries 8 experts x 16 / (128 tokens x top-1) = 1 row per assignment (the old experts x capacity / (seq x k)
    # = 8 x 64 / 128 = 4: 4x the rows the experts compute)
    (64, 1.0, 16, 1.0),
    # capacity factor 0.25: min(64, ceil(0.25 x 128 / 8) = 4) = 4 rows: 8 x 4 / 128 = 0.25 (old: 4)
    (64, 0.25, 4, 0.25),
    # capacity 8 binds: min(8, 16) = 8 rows per expert and sequence: 8 x 8 / 128 = 0.5 per assignment (old: 0.5)
    (8, 1.0, 8, 0.5),
])
def test_switch_all_to_all_carries_the_capped_expert_rows(capacity, cf, per_seq, rows, tmp_path):
    path = _write(tmp_path, "switch", dict(SWITCH, expert_capacity=capacity))
    g = wattlint.analyze(str(path), batch_size=2, seq_len=128, capacity_factor=cf)
    layers = P.moe_layers(g)
    # the frontend's rows: micro-batch 2 x per_seq per expert; the all-to-all carries the same rows:
    # rows per assignment x micro-batch 2 x 128 tokens x top-1 = the summary's rows of the 8 experts
    assert len(layers) == 2 and all(ly["rows_per_expert"] == [2 * per_seq] * 8 for ly in layers)
    for ly in layers:
        r = P.dispatched_rows_per_assignment(ly, cf, 128)
        assert r == pytest.approx(rows) and r * 2 * 128 * 1 == sum(ly["rows_per_expert"])
    # end to end: batch 4 over 2 data-parallel ranks = micro-batch 2 traced; the all-to-all note states the buffer
    # factor only when it is not 1 (before: 'x 4 (the experts' buffers ...)' at capacity 64, factor 1)
    e = wattlint.estimate(str(path), gpu="a100-sxm4-80gb", gpus=2, expert_parallel=2, batch_size=4, seq_len=128,
                          steps=1, lint=False, capacity_factor=cf)
    note = next(a for a in e.assumptions if a.startswith("expert parallel 2: 4 all-to-alls"))
    want = "x top-k x hidden" if rows == 1.0 else f"x top-k x {rows:.3g} (the experts' buffers"
    assert want in note, note


# ---- 2. attention-free stacks: no tensor / pipeline / context parallelism -----------------------------------------

RWKV = dict(model_type="rwkv", architectures=["RwkvForCausalLM"], hidden_size=64, num_hidden_layers=2,
            vocab_size=100, attention_hidden_size=64, intermediate_size=256, context_length=64)
MAMBA = dict(model_type="mamba", architectures=["MambaForCausalLM"], hidden_size=64, state_size=8,
             num_hidden_layers=2, vocab_size=100, expand=2, conv_kernel=4)


@pytest.mark.parametrize("arch, cfg, blocks", [("rwkv", RWKV, "rwkv.blocks (RwkvBlock)"),
                                                ("mamba", MAMBA, "backbone.layers (MambaBlock)")])
@pytest.mark.parametrize("flag", ["--context-parallel", "--tensor-parallel"])
def test_attention_free_stack_refuses_tensor_and_context_parallelism(arch, cfg, blocks, flag, run_cli, tmp_path):
    """RWKV was accepted (context parallel 2 priced as ring attention 'over its 32 queries against all 64 keys',
    the same step time at twice the energy; 'attention heads / 2' under TP), Mamba refused as 'convolutional ... (a
    CNN's stages)' for its 1-D conv. Both: one line saying the blocks hold no attention layers."""
    path = _write(tmp_path, arch, cfg)
    code, _, err = run_cli(str(path), "--steps", "1", "--seq-len", "64", "--batch-size", "4", "--gpus", "2",
                           flag, "2")
    assert code == 2 and err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert f"{flag} 2: the repeated blocks of {blocks} hold no attention layers" in err, err
    assert "CNN" not in err and "convolutional" not in err


@pytest.mark.parametrize("arch, cfg", [("rwkv", RWKV), ("mamba", MAMBA)])
def test_attention_free_stack_pipeline_stages_claim_no_attention(arch, cfg, tmp_path):
    """Pipeline stages split any stack of blocks, so they stay; but RWKV's activation split claimed a '5as^2b/t
    (attention scores stored: no fused attention traced)' term, and Mamba was refused as a CNN. 2 blocks on 2 stages
    of 1, t = 1, no context parallelism: the per-layer Korthikanti ratio (per GPU over one GPU) is sbh(10 + 24) /
    sbh(10 + 24) = 1, stated as 'x 1.000', without an attention-score term on either side."""
    path = _write(tmp_path, arch, cfg)
    e = wattlint.estimate(str(path), gpu="a100-sxm4-80gb", gpus=2, pipeline_parallel=2, batch_size=4, seq_len=64,
                          steps=1, lint=False)
    note = next(a for a in e.assumptions if a.startswith("activations per GPU"))
    assert "the replica's layers x 1.000" in note and "no attention in the blocks: no attention-score term" in note
    assert "5as^2b" not in note and "attention scores stored" not in note, note


# ---- 3. MFU where 6N does not count the model ----------------------------------------------------------------------

WHISPER = dict(model_type="whisper", architectures=["WhisperForConditionalGeneration"], d_model=64,
               encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
               encoder_ffn_dim=256, decoder_ffn_dim=256, vocab_size=100, num_mel_bins=16, max_source_positions=150,
               max_target_positions=64, pad_token_id=1, bos_token_id=2, eos_token_id=2, decoder_start_token_id=3,
               suppress_tokens=[], begin_suppress_tokens=[], is_encoder_decoder=True)
ALBERT = dict(model_type="albert", architectures=["AlbertForMaskedLM"], hidden_size=64, intermediate_size=256,
              num_hidden_layers=4, num_attention_heads=4, vocab_size=100, embedding_size=32)

# Whisper, batch 1: 300 frames -> 150 encoder positions (conv stride 2), 16 decoder tokens counted.
# Linear weights: encoder layer q, k, v, out 4 x 64^2 = 16,384 + fc1, fc2 2 x 64 x 256 = 32,768 -> 49,152, 2
# layers 98,304 over 150 rows; decoder layer self-attention 16,384 + cross q, out 8,192 + fc 32,768 = 57,344 over 16
# rows and cross k, v 8,192 over the encoder's 150 rows; LM head 64 x 100 = 6,400 over 16 rows.
# Weights 98,304 + 2 x 65,536 + 6,400 = 235,776; weights x rows 98,304 x 150 + 2 x 8,192 x 150 + 2 x 57,344 x 16 +
# 6,400 x 16 = 14,745,600 + 2,457,600 + 1,835,008 + 102,400 = 19,140,608; / (235,776 x 16 = 3,772,416) = 5.0738
WHISPER_REUSE = 19_140_608 / 3_772_416
# ALBERT, batch 1, 16 tokens: the shared layer's 4 x 64^2 + 2 x 64 x 256 = 49,152 weights run 4 times; embedding
# mapping 32 x 64 = 2,048, MLM dense 64 x 32 = 2,048, decoder 32 x 100 = 3,200, once. Weights 56,448; weights x
# runs 4 x 49,152 + 7,296 = 203,904: reuse 203,904 / 56,448 = 3.6122. Its Linear FLOPs alone, forward (2) +
# backward (input and weight gradients, 4): 6 x 203,904 = 1,223,424 per token, while 6N + attention of its 82 k
# parameters gave 493,464
ALBERT_REUSE = 203_904 / 56_448
ALBERT_LINEAR_FB = 6 * 203_904


@pytest.mark.parametrize("arch, cfg, opts, reuse, why", [
    ("whisper", WHISPER, dict(inputs=["input_features=float32[1,16,300]"]), WHISPER_REUSE,
     "an encoder over a longer input than the counted sequence"),
    ("albert", ALBERT, {}, ALBERT_REUSE, "one layer's weights shared across depth"),
])
def test_mfu_counts_traced_model_flops_where_6n_does_not_apply(arch, cfg, opts, reuse, why, tmp_path):
    """Whisper's 6N counted the encoder's weights once per decoder token and divided the encoder's attention by the
    decoder tokens (MFU 9.4 % against HFU 21.7 %); ALBERT's N counted its shared layer once (MFU ~1/2.5 of the
    work). For such models the model FLOPs are the traced forward + backward FLOPs without recompute."""
    path = _write(tmp_path, arch, cfg)
    g = wattlint.analyze(str(path), batch_size=1, seq_len=16, **opts)
    basis = P.model_flops_basis(g)
    assert basis["reuse"] == pytest.approx(reuse, rel=1e-9)
    traced = sum(r.flops for r in g.records if r.phase in (Phase.FORWARD, Phase.BACKWARD) and not r.recompute) / 16
    e = wattlint.estimate(str(path), gpu="a100-sxm4-80gb", batch_size=1, seq_len=16, steps=1, lint=False, **opts)
    u = e.utilization
    assert u.model_flops_per_token == pytest.approx(traced, rel=1e-9)
    if arch == "albert":
        assert u.model_flops_per_token >= ALBERT_LINEAR_FB
    assert u.mfu == pytest.approx(u.model_flops_per_token * u.tokens_per_s_per_gpu / (u.peak_tflops * 1e12))
    assert u.mfu <= u.hfu
    assert u.convention.startswith("MFU = the model's traced forward + backward FLOPs") and why in u.convention


def test_mfu_keeps_6n_for_a_decoder_only_stack(gpt_config):
    """The GPT-2-shaped decoder of the parallelism tests: every Linear runs once over the 256 tokens (reuse 1), so
    MFU stays 6N + attention (the llm-foundry benchmark's convention)."""
    g = wattlint.analyze(str(gpt_config), batch_size=1, seq_len=256)
    assert P.model_flops_basis(g)["reuse"] <= 1.0
    e = wattlint.estimate(str(gpt_config), gpu="a100-sxm4-80gb", batch_size=1, seq_len=256, steps=1, lint=False)
    assert e.utilization.convention.startswith("MFU = (6 N + 12 L h s attention)")
