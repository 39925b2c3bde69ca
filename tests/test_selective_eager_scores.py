"""Selective recompute with eager attention drops the attention scores the trace kept, not Korthikanti's 5as^2b
(review 2026-12-07): a dropout-free Llama keeps 2 bytes per score under the megatron stack (its half-precision
softmax output), 6 under PyTorch autocast (fp32 softmax output + its bf16 cast); 5 bytes per score were subtracted
from the whole replica, which zeroed a megatron plan's activations (0.0 MiB, so a plan 'fit' that did not) and left
the PyTorch stack's eager plan 63 % above its sdpa twin."""

import json

import pytest

import wattlint
from wattlint import parallel as P

LLAMA = dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=64, intermediate_size=128,
             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=100,
             max_position_embeddings=256, attention_dropout=0.0)
B, S, HEADS, LAYERS = 2, 64, 4, 2
SCORES = B * HEADS * S * S * LAYERS  # 65,536 attention scores per micro-batch


@pytest.fixture
def llama(tmp_path):
    p = tmp_path / "llama" / "config.json"
    p.parent.mkdir()
    p.write_text(json.dumps(LLAMA))
    return str(p)


def test_score_bytes_are_what_the_trace_keeps(llama):
    g = wattlint.analyze(llama, batch_size=B, seq_len=S, attention="eager", precision="bf16")
    # autocast: softmax in fp32 (4 bytes) and its bf16 cast read by the matmul over V (2 bytes); no dropout
    assert P.attention_score_bytes(g)[0] == 6 * SCORES
    # megatron: one half-precision softmax output (2 bytes), no cast
    assert P.attention_score_bytes(g, megatron=True)[0] == 2 * SCORES
    # fp32: the softmax output only
    g32 = wattlint.analyze(llama, batch_size=B, seq_len=S, attention="eager", precision="fp32")
    assert P.attention_score_bytes(g32)[0] == 4 * SCORES


def _activations(llama, attention, recompute, **kw):
    e = wattlint.estimate(llama, gpu="h100", batch_size=B, seq_len=S, steps=1, precision="bf16", lint=False,
                          attention=attention, recompute=recompute, **kw)
    return e.memory.breakdown["activations"]


@pytest.mark.parametrize("stack", [{}, {"training_stack": "megatron"}])
def test_selective_eager_keeps_what_selective_sdpa_keeps(llama, stack):
    """Selective recompute re-runs the attention core, so eager and fused attention keep the same activations
    (the eager core's other saved inputs aside: within 5 %); before, megatron eager came out 0 bytes."""
    eager = _activations(llama, "eager", "selective", **stack)
    sdpa = _activations(llama, "sdpa", "selective", **stack)
    assert eager > 0 and abs(eager / sdpa - 1) < 0.05, (eager, sdpa)
    # and selective keeps less than no recompute by exactly the traced scores (megatron: 2 bytes per score)
    none = _activations(llama, "eager", "none", **stack)
    per_score = 2 if stack else 6
    assert none - eager == pytest.approx(per_score * SCORES, rel=1e-6), (none, eager)


def test_megatron_fused_swiglu_keeps_its_inputs_not_the_silu_output(llama):
    """Megatron's fused SwiGLU saves its two inputs (gate and up projections) and the down projection its product;
    PyTorch's SiLU output, which the traced gate multiply saved, is not kept: b x s x ffn x 2 B per layer less
    (Korthikanti-style count of a SwiGLU layer: 6 sbf of MLP activations, not 8; review 2026-12-07)."""
    import dataclasses

    from wattlint.memory import replica_activation_bytes

    e = wattlint.estimate(llama, gpu="h100", batch_size=B, seq_len=S, steps=1, precision="bf16", lint=False,
                          training_stack="megatron")
    per_layer = B * S * LLAMA["intermediate_size"] * 2
    assert e.graph.extra["activation_bytes_gated_output"] == LAYERS * per_layer == 65_536
    without = dataclasses.replace(e.graph, extra={**e.graph.extra, "activation_bytes_gated_output": 0})
    assert (replica_activation_bytes(without, e.plan)[0] - replica_activation_bytes(e.graph, e.plan)[0]
            == LAYERS * per_layer)
    assert e.memory.breakdown["activations"] == replica_activation_bytes(e.graph, e.plan)[0]
    assert any("fused SwiGLU / GeGLU kernel keeps its two inputs" in a for a in e.assumptions)


def test_t5_casts_after_its_dropout(tmp_path):
    """T5's eager attention: softmax (fp32 under autocast) -> dropout -> cast to bf16 -> matmul over V. PyTorch
    keeps the fp32 softmax output (4 B), dropout's fp32 mask (1 B; its fp32 output is read only by the cast) and
    the bf16 cast (2 B): 7 B per score; megatron keeps a half softmax output (2), the mask (1) and dropout's half
    output, which V reads there (2): Korthikanti's 5 (review 2026-12-07: the megatron count dropped the dropout
    output, 3 B). 6 attention cores (encoder self, decoder self, cross) x 2 x 4 heads x 32 x 32 scores."""
    cfg = tmp_path / "t5" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps(dict(model_type="t5", architectures=["T5ForConditionalGeneration"], d_model=64,
                                   d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
                                   vocab_size=100, dropout_rate=0.1, decoder_start_token_id=0)))
    g = wattlint.analyze(str(cfg), batch_size=2, seq_len=32, attention="eager", precision="bf16")
    scores = 6 * 2 * 4 * 32 * 32
    assert P.attention_score_bytes(g)[0] == 7 * scores
    got, what = P.attention_score_bytes(g, megatron=True)
    assert got == 5 * scores and "6 attention cores" in what, what
