"""Selective / full activation recompute, expert parallelism in the memory split, and MFU of mixture-of-experts
models (issue 16). Every expected value is computed by hand in the comments (Korthikanti et al. 2022 for the
activation shares of a split, applied to a one-GPU estimate of the same micro-batch: the replica's traced bytes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _parallel_fixtures import GPT, SEQ
from _parallel_fixtures import est as _est

import wattlint
from wattlint import parallel as P
from wattlint.types import ConfigError, OpKind, Phase

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]





def _tp4(src, **kw):
    return _est(src, gpus=4, tensor_parallel=4, batch_size=1, **kw)


# ---- 1. selective recompute --------------------------------------------------------------------------------------

# the loss's saved fp32 log-probabilities of one sequence: 4 B x 256 tokens x 1000 vocabulary
LOSS = 4 * 256 * 1000


def _replica(src, **kw):
    """One GPU's traced activations of the same micro-batch (1 sequence): the replica a split divides."""
    return _est(src, gpus=1, batch_size=1, **kw).memory.breakdown["activations"]


def test_selective_recompute_memory_by_hand(gpt_config):
    # Korthikanti et al. 2022 per layer, s = 256, b = 1, h = 512, a = 8: sbh = 131,072; 5as^2b = 2,621,440.
    # One GPU keeps 34 sbh (+ 5as^2b with eager attention); t = 4 keeps sbh(10 + 24/4) = 16 sbh (+ 5as^2b/4).
    # A split keeps that share of the replica's traced layers and 1/4 of its loss log-probabilities (vocab-parallel).
    sbh, scores = 256 * 512, 5 * 8 * 256 * 256
    eager_ratio = (16 * sbh + scores / 4) / (34 * sbh + scores)
    assert eager_ratio == pytest.approx(7 / 18)
    one = _replica(gpt_config, attention="eager")
    eager = _tp4(gpt_config, attention="eager")
    assert eager.memory.breakdown["activations"] == pytest.approx((one - LOSS) * 7 / 18 + LOSS / 4, abs=1)
    # selective: the replica drops the scores its trace kept and the split has no score term. GPT-2 under bf16
    # autocast keeps, per score, the fp32 softmax output (4 B) and dropout's bf16 output (2 B) with its bool mask
    # (1 B); the bf16 cast between them is read by dropout only, which keeps no input: 7 B, not Korthikanti's 5
    # (16-bit softmax): 4 layers x 7 x 8 heads x 256^2
    one_sel = _replica(gpt_config, attention="eager", recompute="selective")
    assert one - one_sel == 4 * 7 * 8 * 256 * 256
    eager_sel = _tp4(gpt_config, attention="eager", recompute="selective")
    assert eager_sel.memory.breakdown["activations"] == pytest.approx((one_sel - LOSS) * 16 / 34 + LOSS / 4, abs=1)
    # fused (SDPA) attention stores no scores: selective recompute changes nothing in memory
    fused_one = _replica(gpt_config)
    fused = _tp4(gpt_config)
    fused_sel = _tp4(gpt_config, recompute="selective")
    assert fused.memory.breakdown["activations"] == fused_sel.memory.breakdown["activations"]
    assert fused.memory.breakdown["activations"] == pytest.approx((fused_one - LOSS) * 16 / 34 + LOSS / 4, abs=1)
    assert any("recompute selective keeps the same activations here (fused attention" in a
               for a in fused_sel.assumptions)
    # with sequence parallelism every layer activation is split: sbh(34/t) / 34 sbh = 1/4, and so is the loss
    sp = _tp4(gpt_config, attention="eager", recompute="selective", sequence_parallel=True)
    assert sp.memory.breakdown["activations"] == pytest.approx(one_sel / 4, abs=1)


def test_selective_recompute_reruns_the_attention_core_in_backward(gpt_config):
    plain = _tp4(gpt_config)
    sel = _tp4(gpt_config, recompute="selective")
    assert sel.plan.recompute == "selective" and not sel.plan.activation_checkpointing
    # the re-run: one fused attention forward per layer on 8 / 4 = 2 heads, causal: s(s+1)/2 = 256 x 257 / 2 =
    # 32,896 query-key pairs per head; QK^T + PV = 2 FLOPs x 2 heads x 32,896 x (64 + 64) = 16,842,752, plus the
    # softmax/scale 5 FLOPs per score (wattlint's SDPA count) 5 x 2 x 32,896 = 328,960 -> 17,171,712 per layer;
    # 4 layers = 68,686,848 per GPU, x 4 GPUs = 274,747,392 more FLOPs per step
    per_gpu = 4 * (2 * 2 * 32_896 * 128 + 5 * 2 * 32_896)
    assert per_gpu == 68_686_848
    assert sel.per_step.flops - plain.per_step.flops == 4 * per_gpu
    # the backward phase grows by exactly the attention forward records' time (1 micro-batch per step)
    attn_fwd_t = sum(t for r, t in zip(sel.graph.records, sel.op_times_s)
                     if r.kind is OpKind.ATTENTION and r.phase is Phase.FORWARD)
    assert sel.phases["backward"].time_s == pytest.approx(plain.phases["backward"].time_s + attn_fwd_t, rel=1e-9)
    assert sel.phases["forward"].time_s == pytest.approx(plain.phases["forward"].time_s, rel=1e-12)
    # MFU counts model FLOPs only (unchanged per token); HFU counts the recompute
    assert sel.utilization.model_flops_per_token == plain.utilization.model_flops_per_token
    assert sel.utilization.mfu == pytest.approx(plain.utilization.mfu * plain.per_step.time_s / sel.per_step.time_s)
    assert sel.utilization.hfu == pytest.approx(sel.per_step.flops / 4 / sel.per_step.time_s / 312e12, rel=1e-9)


def test_eager_attention_core_is_qk_softmax_dropout_pv(gpt_config):
    sel = _tp4(gpt_config, attention="eager", recompute="selective")
    core = P.attention_core(sel.graph.records)
    layer0 = [sel.graph.records[i] for i in sorted(core) if sel.graph.records[i].module == "transformer.h.0.attn"]
    ops = [r.op for r in layer0 if r.kind is not OpKind.VIEW]
    # QK^T, scale, causal mask, softmax, (cast), dropout, attention over V; not the QKV / output projections
    assert ops[0] == ops[-1] == "aten.bmm.default"
    assert {"aten._softmax.default", "aten.native_dropout.default"} <= set(ops)
    assert not any(r.module.endswith(("c_attn", "c_proj")) for r in (sel.graph.records[i] for i in core))
    # the two batched matmuls on 2 heads per GPU, b = 1: QK^T 2 x 2 x 256 x 256 x 64 = 16,777,216 FLOPs, and
    # the same for attention over V
    mm = [r.flops for r in layer0 if r.kind is OpKind.MATMUL]
    assert mm == [2 * 2 * 256 * 256 * 64] * 2 == [16_777_216] * 2
    plain = _tp4(gpt_config, attention="eager")
    assert sel.per_step.flops - plain.per_step.flops == 4 * sum(sel.graph.records[i].flops for i in core)


def test_selective_on_data_parallel_eager_drops_the_traced_scores(gpt_config):
    # no tensor / pipeline parallelism: traced saved-for-backward bytes minus the scores the trace kept, 7 B per
    # score under bf16 autocast (fp32 softmax output 4, dropout's bf16 output 2 and mask 1; see above):
    # 4 layers x 7 x 8 heads x 256^2 x b 2 = 29,360,128 bytes (Korthikanti's 5 B per score was subtracted before)
    plain = _est(gpt_config, batch_size=2, attention="eager")
    sel = _est(gpt_config, batch_size=2, attention="eager", recompute="selective")
    drop = plain.memory.breakdown["activations"] - sel.memory.breakdown["activations"]
    assert drop == 4 * 7 * 8 * 256 * 256 * 2 == 29_360_128
    fused = _est(gpt_config, batch_size=2)
    fused_sel = _est(gpt_config, batch_size=2, recompute="selective")
    assert fused.memory.breakdown["activations"] == fused_sel.memory.breakdown["activations"]
    assert any("recompute selective keeps the same activations here (fused attention" in a
               for a in fused_sel.assumptions)


def test_recompute_full_is_activation_checkpointing(gpt_config):
    a = _tp4(gpt_config, recompute="full")
    b = _tp4(gpt_config, activation_checkpointing=True)
    assert a.plan.activation_checkpointing and b.plan.recompute == "full"
    # full recompute keeps each layer's input, 2sbh, whole on every TP rank (no sequence parallelism): the replica's
    # checkpointed layers as traced, + 1/4 of its loss log-probabilities (vocabulary-parallel)
    one = _replica(gpt_config, activation_checkpointing=True)
    assert a.memory.breakdown["activations"] == b.memory.breakdown["activations"]
    assert a.memory.breakdown["activations"] == pytest.approx(one - LOSS + LOSS / 4, abs=1)
    assert a.per_step.time_s == b.per_step.time_s and a.per_step.flops == b.per_step.flops
    assert any(r.recompute for r in a.graph.records)  # traced by the frontend (checkpointed blocks)


def test_recompute_cli_config_and_errors(gpt_config, run_cli, tmp_path, monkeypatch):
    args = [gpt_config, "--seq-len", str(SEQ), "--steps", "1", "--precision", "bf16", "--format", "json"]
    code, out, err = run_cli(*args, "--recompute", "selective")
    assert code == 0, err
    plan = json.loads(out)["plan"]
    assert (plan["recompute"], plan["activation_checkpointing"]) == ("selective", False)
    code, out, err = run_cli(*args, "--activation-checkpointing")
    assert code == 0 and json.loads(out)["plan"]["recompute"] == "full"
    # a bad value and a conflict: exit 2, one line
    for extra, needle in ((["--recompute", "some"], "--recompute"),
                          (["--recompute", "selective", "--activation-checkpointing"], "conflicts with --recompute")):
        code, out, err = run_cli(*args, *extra)
        assert code == 2 and needle in err and err.strip().count("\n") == 0 and "Traceback" not in err, err
    # [tool.wattlint]: the same key, validated; the command line's choice replaces the config's
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\nrecompute = "selective"\n')
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(*args)
    assert code == 0 and json.loads(out)["plan"]["recompute"] == "selective"
    code, out, err = run_cli(*args, "--activation-checkpointing")
    assert code == 0 and json.loads(out)["plan"]["recompute"] == "full", err
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\nrecompute = "partial"\n')
    code, out, err = run_cli(*args)
    assert code == 2 and "recompute" in err and err.strip().count("\n") == 0
    with pytest.raises(wattlint.types.ConfigError, match="conflicts"):
        _est(gpt_config, recompute="full", activation_checkpointing=False)


# ---- 2. expert parallelism in the memory split; 3. MFU of MoE models -----------------------------------------------

# the Mixtral-shaped config of tests/test_moe.py: 4 layers, hidden 1024, FFN 3584, 16 heads (head dim 64), 4 KV heads,
# 8 experts, top-2, vocab 32000. Parameters by hand (tests/test_moe.py):
#   embedding 32000 x 1024                                                   =  32,768,000
#   per layer: attention q 1024x1024 + k 1024x256 + v 1024x256 + o 1024x1024 =   2,621,440
#              router 1024 x 8                                               =       8,192
#              routed experts 8 x (gate + up + down = 3 x 1024 x 3584)       =  88,080,384
#              2 RMSNorm x 1024                                              =       2,048
#   4 layers x 90,712,064                                                    = 362,848,256
#   final norm 1,024 + LM head 1024 x 32000 (not tied) 32,768,000
#   total                                                                    = 428,385,280
#   routed-expert parameters 4 x 88,080,384                                  = 352,321,536
#   everything else 428,385,280 - 352,321,536                                =  76,063,744
MIXTRAL_SMALL = dict(model_type="mixtral", architectures=["MixtralForCausalLM"], num_hidden_layers=4,
                     hidden_size=1024, intermediate_size=3584, num_attention_heads=16, num_key_value_heads=4,
                     num_local_experts=8, num_experts_per_tok=2, vocab_size=32000, max_position_embeddings=4096)
TOTAL, EXPERTS, OTHER = 428_385_280, 352_321_536, 76_063_744
assert 32_768_000 + 4 * (2_621_440 + 8_192 + 8 * 3 * 1024 * 3584 + 2_048) + 1_024 + 32_768_000 == TOTAL
assert 4 * 8 * 3 * 1024 * 3584 == EXPERTS and TOTAL - EXPERTS == OTHER


@pytest.fixture(scope="module")
def mixtral_config(tmp_path_factory):
    p = tmp_path_factory.mktemp("moe") / "config.json"
    p.write_text(json.dumps(MIXTRAL_SMALL))
    return p


def _moe(src, **kw):
    base = dict(gpu="a100-sxm4-80gb", batch_size=8, seq_len=256, precision="bf16", steps=1, lint=False, gpus=8)
    base.update(kw)
    return wattlint.estimate(str(src), **base)


def test_expert_parallel_divides_only_expert_state(mixtral_config):
    plain = _moe(mixtral_config)
    assert plain.graph.extra["moe"]["layers"][0]["params"] == 88_080_384  # 8 x 3 x 1024 x 3584
    ep2 = _moe(mixtral_config, expert_parallel=2)
    # per GPU: 76,063,744 other + 352,321,536 / 2 = 176,160,768 expert = 252,224,512 parameters
    per_gpu = OTHER + EXPERTS // 2
    assert per_gpu == 252_224_512
    bd, bd0 = ep2.memory.breakdown, plain.memory.breakdown
    # fp32 weights 4 B, fp32 grads 4 B, AdamW 2 x fp32 = 8 B, bf16 weight casts 2 B per parameter
    assert (bd0["weights"], bd0["gradients"], bd0["optimizer_state"], bd0["weight_casts"]) == \
        (4 * TOTAL, 4 * TOTAL, 8 * TOTAL, 2 * TOTAL)
    assert (bd["weights"], bd["gradients"], bd["optimizer_state"], bd["weight_casts"]) == \
        (4 * per_gpu, 4 * per_gpu, 8 * per_gpu, 2 * per_gpu)
    assert any(a.startswith("expert parallel 2: each GPU holds 1/2 of every MoE layer's experts") and
               "176,160,768 expert + 76,063,744 other" in a for a in ep2.assumptions)
    # the optimizer step updates this GPU's parameters only: 252,224,512 / 428,385,280 of the time
    assert ep2.phases["optimizer"].time_s == pytest.approx(plain.phases["optimizer"].time_s * per_gpu / TOTAL,
                                                           rel=1e-9)


def test_expert_parallel_on_the_last_pipeline_stage_divides_only_its_blocks_experts(mixtral_config):
    """PP 4 x EP 2 on 8 GPUs (dp 2): the costed (last) stage holds block 3 and the LM head (the stage split counts
    the matmul weights after the blocks; the final norm's 1,024 are left out, as its line states): 90,712,064 +
    32,768,000 = 123,480,064 parameters, of which its MoE layer's experts are 88,080,384; / EP 2 -> 44,040,192
    expert + 35,399,680 other = 79,439,872 per GPU. Applying the whole model's expert fraction (352,321,536 /
    428,385,280) to the stage counted its LM head as partly experts: 101.6 M of it 'expert', 50.8 M removed."""
    e = _moe(mixtral_config, pipeline_parallel=4, expert_parallel=2, micro_batch_size=1)
    stage = 90_712_064 + 32_768_000
    assert stage == 123_480_064 and any(f"= {stage:,} parameters / tp 1" in a for a in e.assumptions)
    per_gpu = stage - 88_080_384 // 2
    assert per_gpu == 79_439_872
    assert e.memory.breakdown["weights"] == 4 * per_gpu
    assert any("44,040,192 expert + 35,399,680 other parameters per GPU" in a for a in e.assumptions)


def test_expert_parallel_on_top_of_tensor_parallel_and_zero(mixtral_config):
    # TP 2 x EP 2 on 8 GPUs (dp 4): 428,385,280 / 2 = 214,192,640 per GPU after TP, of which the routed experts'
    # 352,321,536 / 2 = 176,160,768; / EP 2 -> 88,080,384 expert + 38,031,872 other = 126,112,256
    tp = _moe(mixtral_config, tensor_parallel=2, expert_parallel=2)
    per_gpu = (OTHER // 2) + EXPERTS // 4
    assert per_gpu == 126_112_256
    assert tp.memory.breakdown["weights"] == 4 * per_gpu
    # ZeRO-1 over dp 8 with EP 2: other optimizer state over all 8 ranks, expert state over the 8 / 2 = 4 ranks
    # holding the same experts: (76,063,744 / 8 + 176,160,768 / 4) x 8 B = (9,507,968 + 44,040,192) x 8
    # = 428,385,280 bytes: the same as without expert parallelism (TOTAL / 8 x 8 B), as it must be
    z = _moe(mixtral_config, expert_parallel=2, sharding="zero1")
    assert z.memory.breakdown["optimizer_state"] == pytest.approx((OTHER / 8 + EXPERTS / 2 / 4) * 8, abs=8)
    assert z.memory.breakdown["optimizer_state"] == pytest.approx(TOTAL, abs=8)
    assert z.memory.breakdown["weights"] == 4 * (OTHER + EXPERTS // 2)  # zero1 does not shard weights
    # a dense model: nothing to spread, refused (exit 2 through the CLI) rather than costed with contradicting notes
    with pytest.raises(ConfigError, match="no mixture-of-experts layer"):
        _est(_dense_config(mixtral_config), gpus=8, expert_parallel=2, batch_size=8)


def _dense_config(moe_path):
    p = moe_path.parent / "dense.json"
    p.write_text(json.dumps(GPT))
    return p


def test_moe_mfu_counts_active_parameters(mixtral_config):
    e = _moe(mixtral_config, expert_parallel=2)
    u = e.utilization
    # active parameters: everything but the routed experts (76,063,744) + top-2 / 8 experts of them
    # (352,321,536 x 2 / 8 = 88,080,384) = 164,144,128
    active = OTHER + EXPERTS * 2 // 8
    assert active == 164_144_128
    # + attention, full s x s square: 3 x 2 x 2 x s x d_model per layer per token = 3 x 4 x 256 x 1024 x 4 layers
    per_token = 6 * active + 3 * 4 * 256 * 1024 * 4
    assert per_token == 997_447_680
    assert u.model_flops_per_token == pytest.approx(per_token, rel=1e-12)
    assert u.mfu == pytest.approx(per_token * u.tokens_per_s_per_gpu / 312e12, rel=1e-9)
    assert "N_active" in u.convention and "164,144,128 of 428,385,280" in u.convention
    from wattlint.report.tables import summary_rows

    assert "(MFU: 6N_active + attention FLOPs/token" in dict(summary_rows(e))["Throughput"]
    # dense models keep 6 N: the GPT-2-shaped model's convention has no active-parameter clause
    dense = _est(_dense_config(mixtral_config), gpus=8, tensor_parallel=2, batch_size=8)
    assert "N_active" not in dense.utilization.convention
    assert "(MFU: 6N + attention FLOPs/token" in dict(summary_rows(dense))["Throughput"]
    n = dense.graph.extra["parallel_full_params"]
    assert dense.utilization.model_flops_per_token == pytest.approx(6 * n + 3 * 4 * (4 * 256 * 512), rel=1e-9)


def test_parallel_degrees_must_split_whole_heads_and_experts(mixtral_config, tmp_path):
    """Megatron-LM gives each tensor-parallel rank whole heads, and each expert-parallel rank whole experts; key /
    value groups are split whole or, when there are fewer groups than ranks, replicated (tp a multiple of them).
    MIXTRAL_SMALL (16 heads, 4 KV groups, 8 experts): TP 4 and EP 8 run, TP 8 runs with each KV group on 2 ranks,
    TP 32 (16 heads / 32) and EP 16 (8 experts / 16) are refused. A Llama-style config with 24 heads and 6 KV groups
    (intermediate size 1,152, a multiple of 3 and 12, which Megatron-LM needs too):
    TP 3 and TP 12 run; TP 4 (6 groups / 4) and TP 8 (neither a divisor nor a multiple of 6) are refused. The counts
    come from the config: transformers repeats the KV heads before the attention kernel."""
    assert _moe(mixtral_config, tensor_parallel=4).per_step.time_s > 0
    assert _moe(mixtral_config, tensor_parallel=8).per_step.time_s > 0
    assert _moe(mixtral_config, gpus=8, expert_parallel=8).per_step.time_s > 0
    with pytest.raises(ConfigError, match=r"--expert-parallel 16 does not divide the 8 experts of "):
        _moe(mixtral_config, gpus=16, batch_size=16, expert_parallel=16)
    with pytest.raises(ConfigError, match=r"--tensor-parallel 32 does not divide the model's 16 attention heads"):
        _moe(mixtral_config, gpus=32, batch_size=32, tensor_parallel=32)
    p = tmp_path / "config.json"
    p.write_text(json.dumps(dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=384,
                                 intermediate_size=1152, num_hidden_layers=2, num_attention_heads=24,
                                 num_key_value_heads=6, vocab_size=1000, max_position_embeddings=512)))

    def llama(tp):
        return wattlint.estimate(str(p), gpu="a100-sxm4-80gb", gpus=tp, tensor_parallel=tp, batch_size=tp, seq_len=64,
                                 precision="bf16", steps=1, lint=False, gpus_per_node=tp)  # one node of tp GPUs

    assert llama(3).per_step.time_s > 0 and llama(12).per_step.time_s > 0
    for tp in (4, 8):
        with pytest.raises(ConfigError, match=rf"--tensor-parallel {tp} does not divide the model's 6 key/value heads"):
            llama(tp)


def test_untraced_full_recompute_keeps_a_share_of_the_layers_under_tensor_parallelism(tmp_path):
    """An ONNX graph cannot trace checkpointing: the replica keeps CHECKPOINT_FACTOR (0.25) of its traced bytes,
    the loss's log-probabilities included. The split subtracted the whole loss from the scaled total: the layers
    came out at 0 and sequence parallelism changed nothing."""
    from wattlint.memory import CHECKPOINT_FACTOR

    onnx = str(ROOT / "examples" / "gpt2-tiny.onnx")
    kw = dict(gpu="a100-sxm4-80gb", batch_size=8, seq_len=256, precision="bf16", steps=1, lint=False)
    single = wattlint.estimate(onnx, recompute="full", **kw)
    one = single.memory.breakdown["activations"]
    tp = wattlint.estimate(onnx, gpus=2, tensor_parallel=2, recompute="full", **kw).memory.breakdown["activations"]
    sp = wattlint.estimate(onnx, gpus=2, tensor_parallel=2, sequence_parallel=True, recompute="full",
                           **kw).memory.breakdown["activations"]
    # the loss: 4 B per logit (8 x 256 positions x the vocabulary, as the frontend read the graph), x 0.25 as the
    # replica was scaled; full recompute keeps each layer's input whole on both TP ranks (share 1) and halves it with
    # sequence parallelism (2sbh / 2)
    assert single.graph.extra["loss_logits_elems"] % (8 * 256) == 0
    loss = 4 * single.graph.extra["loss_logits_elems"] * CHECKPOINT_FACTOR
    layers = one - loss
    assert layers > 0.5 * one
    assert tp == pytest.approx(layers + loss / 2, abs=2)
    assert sp == pytest.approx(layers / 2 + loss / 2, abs=2)


def test_a_fuller_first_pipeline_stage_holds_no_loss_transient(gpt_config):
    """4 blocks on 2 stages, 4 micro-batches: the first stage keeps 2 micro-batches of its 2 layers (4 layers'
    worth), the last 1 micro-batch of 2 layers + the loss; when the first is the fuller, the peak has no loss
    transient (the first stage runs no loss); it held the last stage's."""
    e = _est(gpt_config, gpus=2, pipeline_parallel=2, batch_size=4, micro_batch_size=1)
    bd = e.memory.breakdown
    assert any("the first stage (no loss" in a and "is the fuller" in a for a in e.assumptions), e.assumptions
    assert bd["loss_transient"] == 0
