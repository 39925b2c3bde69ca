"""gpt-oss attention (attention sinks): eager under the default stack, said why; fused under megatron, windowed."""
import json

import pytest

pytest.importorskip("transformers")

from wattlint import stack  # noqa: E402
from wattlint.frontends import hf  # noqa: E402
from wattlint.types import OpKind, Phase  # noqa: E402

# a tiny gpt-oss: 8 query heads, 2 key/value heads, head_dim 32; layer 0 slides over 128 tokens, layer 1 is full
TINY = {"model_type": "gpt_oss", "architectures": ["GptOssForCausalLM"], "hidden_size": 256,
        "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
        "head_dim": 32, "num_local_experts": 4, "num_experts_per_tok": 2, "vocab_size": 1000, "sliding_window": 128,
        "layer_types": ["sliding_attention", "full_attention"], "max_position_embeddings": 4096,
        "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                         "truncate": False, "original_max_position_embeddings": 4096}}
B, H, KVH, S, D = 2, 8, 2, 512, 32


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    p = tmp_path_factory.mktemp("gptoss") / "config.json"
    p.write_text(json.dumps(TINY))
    return str(p)


@pytest.fixture(scope="module")
def traced(cfg):
    return hf.analyze_config(cfg, micro_batch=B, seq_len=S, precision="bf16")


def test_default_sdpa_not_applied_is_said(traced):
    line = [a for a in traced.assumptions if a.startswith("attention: eager, not SDPA")]
    assert len(line) == 1
    assert "attention sinks" in line[0] and "--attention sdpa (asked, or the default without --attention) is not applied" in line[0]
    assert traced.extra["sink_attention"] == {"model.layers.0.self_attn": 128, "model.layers.1.self_attn": 0}


def test_explicit_eager_is_not_rewritten(cfg):
    g = hf.analyze_config(cfg, micro_batch=B, seq_len=S, precision="bf16", attention="eager")
    assert not any(a.startswith("attention: eager, not") for a in g.assumptions)
    assert "sink_attention" not in g.extra
    mg, _ = stack.megatron(g, "bf16", "adamw")
    assert not any(r.op.startswith("fused::attention_learnable_sink") for r in mg.records)


def test_megatron_fuses_with_window(traced):
    mg, notes = stack.megatron(traced, "bf16", "adamw")
    fused = {(r.module, r.phase): r for r in mg.records if r.op.startswith("fused::attention_learnable_sink")}
    assert len(fused) == 4  # 2 layers x (forward, backward)
    # by hand: forward FLOPs per pair = 2 b h (d + dv) + 5 b h = 2*16*64 + 80 = 2128;
    # backward per pair = 2 b h (3 d + 2 dv) + 6 b h = 2*16*160 + 96 = 5216
    # window 128 over 512 tokens: 128*129/2 + (512-128)*128 = 8,256 + 49,152 = 57,408 pairs;
    # full causal: 512*513/2 = 131,328 pairs
    assert fused[("model.layers.0.self_attn", Phase.FORWARD)].flops == 57_408 * 2128 == 122_164_224
    assert fused[("model.layers.1.self_attn", Phase.FORWARD)].flops == 131_328 * 2128
    assert fused[("model.layers.0.self_attn", Phase.BACKWARD)].flops == 57_408 * 5216
    assert fused[("model.layers.1.self_attn", Phase.BACKWARD)].flops == 131_328 * 5216
    assert fused[("model.layers.0.self_attn", Phase.FORWARD)].dim("window", 0) == 128
    assert fused[("model.layers.1.self_attn", Phase.FORWARD)].dim("kvh", 0) == KVH
    attn = [r for r in mg.records if r.module.endswith("self_attn")]
    assert not any(r.kind is OpKind.SOFTMAX for r in attn)
    assert not any(r.kind is OpKind.MATMUL and r.dim("b", 1) > 1 for r in attn)
    assert any("attention sinks under megatron" in n for n in notes)
    assert not any(a.startswith("attention: eager, not SDPA") for a in mg.assumptions)


def test_megatron_drops_the_stored_probabilities(traced):
    mg, _ = stack.megatron(traced, "bf16", "adamw")
    # eager keeps per layer the fp32 softmax output over sk + 1 logits (the sink's) and its bf16 cast read by the
    # matmul over V: 4 * 2*8*512*513 + 2 * 2*8*512*512 = 16,809,984 + 8,388,608 = 25,198,592 bytes; the fused
    # kernel keeps an fp32 logsumexp per head and row: 2*8*512*4 = 32,768 bytes
    assert traced.extra["activation_bytes"] - mg.extra["activation_bytes"] == 2 * (25_198_592 - 32_768)
    assert traced.extra["activation_bytes_fp32"] - mg.extra["activation_bytes_fp32"] == 2 * 16_809_984


def test_dense_model_unchanged():
    g = hf.analyze_config("examples/gpt2-small/config.json", micro_batch=1, seq_len=128, precision="bf16")
    assert "sink_attention" not in g.extra
    assert not any(a.startswith("attention: ") and "not applied" in a for a in g.assumptions)
    mg, notes = stack.megatron(g, "bf16", "adamw")
    assert mg.extra["activation_bytes"] == g.extra["activation_bytes"]
    # GPT-2 small's SDPA as traced: 12 causal flash-attention kernels forward, 2 b h pairs (d + dv) + 5 b h pairs
    # with b 1, h 12, pairs 128*129/2 = 8,256, d = dv = 64: 8,256 * (2*12*128 + 60) = 25,857,792 each
    fwd = [r for r in mg.records if r.kind is OpKind.ATTENTION and r.phase is Phase.FORWARD]
    assert len(fwd) == 12 and all(r.flops == 8_256 * (2 * 12 * 128 + 60) for r in fwd)
    assert not any("attention sinks" in n for n in notes)
