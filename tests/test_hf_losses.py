"""What Hugging Face models run beyond their configs: the loss a head trains with (every ``*_logits`` output gets
its cross-entropy: BERT pre-training's masked-LM and next-sentence heads, a question-answering head's start and end
positions, not the 'sum of the forward outputs' with a gradient of ones; a CTC head says it is priced as a
cross-entropy), and an explicit attention mask as one mask for all heads."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

import wattlint  # noqa: E402
from wattlint.types import Phase  # noqa: E402

BERT = dict(model_type="bert", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            vocab_size=1000, max_position_embeddings=64)


def _graph(tmp_path, arch, **cfg):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({**BERT, **cfg, "architectures": [arch]}))
    return wattlint.analyze(str(p), batch_size=2, seq_len=32)


def _log_softmaxes(graph):
    return [r for r in graph.records if r.phase is Phase.FORWARD and r.op == "aten._log_softmax.default"]


def test_question_answering_has_a_cross_entropy_over_positions_per_head(tmp_path):
    g = _graph(tmp_path, "BertForQuestionAnswering")
    note = next(a for a in g.assumptions if a.startswith("loss:"))
    # start and end logits are [batch 2, seq 32]: a 32-way cross-entropy over positions, one label per sequence
    assert note.startswith("loss: the sum of a cross-entropy on each of start_logits (32-way, labels of shape [2]), "
                           "end_logits (32-way, labels of shape [2])"), note
    ls = _log_softmaxes(g)
    assert len(ls) == 2 and all(r.bytes_written == 2 * 32 * 4 for r in ls)  # 2 x 32 fp32 log-probabilities each


def test_bert_pretraining_prices_the_masked_lm_cross_entropy_over_the_vocabulary(tmp_path):
    g = _graph(tmp_path, "BertForPreTraining")
    note = next(a for a in g.assumptions if a.startswith("loss:"))
    assert "prediction_logits (1000-way, labels of shape [2, 32])" in note, note
    assert "seq_relationship_logits (2-way, labels of shape [2])" in note, note
    # the larger head's logits are the loss's memory: 2 x 32 positions x 1000 words
    assert g.extra["loss_logits_elems"] == 2 * 32 * 1000
    sizes = sorted(r.bytes_written for r in _log_softmaxes(g))
    assert sizes == [2 * 2 * 4, 2 * 32 * 1000 * 4]


def test_a_ctc_head_says_it_is_priced_as_a_cross_entropy(tmp_path):
    cfg = dict(model_type="wav2vec2", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=128, vocab_size=32, conv_dim=[32, 32], conv_kernel=[10, 3], conv_stride=[5, 2],
               num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, architectures=["Wav2Vec2ForCTC"])
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    g = wattlint.analyze(str(p), inputs=["input_values=float32[2,16000]"])
    note = next(a for a in g.assumptions if a.startswith("loss:"))
    assert "32-way logits" in note and "Wav2Vec2ForCTC trains with CTC: priced as this cross-entropy" in note, note


def test_an_explicit_attention_mask_is_one_mask_for_all_heads(tmp_path):
    """HF Mistral with a sliding window passes SDPA an explicit [batch, 1, s, s] mask: CUDA casts it to the autocast
    dtype and broadcasts it over the heads (a stride-0 view). The trace cast it after broadcasting: a copy per head
    (Mistral-7B at 4,096 tokens: 67 GiB more activations, 'does not fit' where it fits)."""
    cfg = dict(model_type="mistral", architectures=["MistralForCausalLM"], hidden_size=512, intermediate_size=1024,
               num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2, vocab_size=1000,
               max_position_embeddings=4096, sliding_window=256)
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    g = wattlint.analyze(str(p), batch_size=2, seq_len=1024, precision="bf16")
    att = next(r for r in g.records if r.phase is Phase.FORWARD and "efficient_attention" in r.op)
    # query and the key / value broadcast to the 8 heads (no flash kernel with a mask): 3 x 2 x 8 x 1024 x 64 x 2 B;
    # the mask once: 2 x 1 x 1024 x 1024 x 2 B (bf16)
    assert att.bytes_read == 3 * 2 * 8 * 1024 * 64 * 2 + 2 * 1024 * 1024 * 2
    cfg["sliding_window"] = None  # causal only: no explicit mask (the flash kernel)
    q = tmp_path / "nosw"
    q.mkdir()
    (q / "config.json").write_text(json.dumps(cfg))
    g2 = wattlint.analyze(str(q / "config.json"), batch_size=2, seq_len=1024, precision="bf16")
    more = g.extra["activation_bytes"] - g2.extra["activation_bytes"]
    mask = 2 * 1024 * 1024 * 2  # one bf16 mask per layer's attention; a copy per head would be 8 x that
    assert 0 < more < 2 * 2 * mask, more


def _frozen_and_full(tmp_path, model: str, config: str, frozen_if: str, seq: int):
    """Estimates of ``transformers.<model>(<config>)`` with the parameters whose name satisfies ``frozen_if`` frozen,
    and of the same model all trainable: (frozen, full)."""
    src = tmp_path / "frozen_model.py"
    src.write_text(f"import transformers\n\n\ndef build(freeze=True):\n    m = transformers.{model}({config})\n"
                   f"    for n, p in m.named_parameters():\n        if freeze and {frozen_if}:\n"
                   f"            p.requires_grad_(False)\n    return m\n\n\ndef full():\n    return build(False)\n")
    kw = dict(gpu="a100", inputs=[f"input_ids=int64[2,{seq}]"], seq_len=seq, steps=10, precision="bf16", lint=False)
    return wattlint.estimate(f"{src}:build", **kw), wattlint.estimate(f"{src}:full", **kw)


def test_mfu_of_a_model_with_frozen_weights_counts_no_weight_gradient_for_them(tmp_path):
    """6 N counts a weight gradient (2 FLOPs per parameter and token) that frozen weights (LoRA, a frozen backbone)
    never get: MFU read 61 % for a LoRA Llama-2-7B whose useful work is ~4 N per token."""
    frozen, full = _frozen_and_full(
        tmp_path, "GPT2LMHeadModel", "transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=1000, "
        "n_positions=128, bos_token_id=0, eos_token_id=0)", "not n.startswith('transformer.h.1.')", 128)
    # GPT-2, h 64: a block 12 h^2 + 13 h = 49,984 (only block 1 trains); token embedding 1000 x 64 (tied head),
    # positions 128 x 64, the other block, final norm 2 x 64: 64,000 + 8,192 + 49,984 + 128 = 122,304 frozen
    assert frozen.graph.params - frozen.graph.trainable_params == 122_304
    drop = full.utilization.model_flops_per_token - frozen.utilization.model_flops_per_token
    # and those backward never runs through (stop 54, 7d23960): below block 1, the position table 8,192 and block 0's
    # 49,984 = 58,176 get no input gradient either (the token table is tied to the head, which backward reaches)
    assert drop == 2 * 122_304 + 2 * 58_176
    assert "122,304 frozen parameters get no weight gradient" in frozen.utilization.convention
    # weight casts (bf16, 2 B): autocast caches the trainable block 1's (49,984); of the frozen weights only the tied
    # LM head (1000 x 64 = 64,000), whose input gradient feeds block 1, keeps its cast; block 0 runs no backward
    assert frozen.memory.breakdown["weight_casts"] == 2 * (49_984 + 64_000)
    assert full.memory.breakdown["weight_casts"] == 2 * 172_288


def test_a_router_is_not_a_classification_head(tmp_path):
    """A one-layer mixture of experts with output_router_logits returns its router's logits under the name
    'router_logits': they feed the load-balancing loss, not a cross-entropy over 8 'classes'."""
    cfg = dict(model_type="mixtral", architectures=["MixtralForCausalLM"], hidden_size=64, intermediate_size=128,
               num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, num_local_experts=8,
               num_experts_per_tok=2, vocab_size=1000, max_position_embeddings=64, output_router_logits=True)
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    g = wattlint.analyze(str(p), batch_size=2, seq_len=32)
    note = next(a for a in g.assumptions if a.startswith("loss:"))
    assert note.startswith("loss: cross-entropy on the 1000-way logits") and "router" not in note, note


def test_mfu_of_a_mixture_of_experts_with_frozen_experts(tmp_path):
    """Frozen routed experts: a token runs top-k / E of them, so only those frozen parameters lose their weight
    gradient in the MFU count (the frozen share of all parameters applied to N_active gave 293,152 here)."""
    frozen, full = _frozen_and_full(
        tmp_path, "MixtralForCausalLM", "transformers.MixtralConfig(hidden_size=64, intermediate_size=128, "
        "num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, num_local_experts=8, "
        "num_experts_per_tok=2, vocab_size=1000, max_position_embeddings=64)", "'.experts.' in n", 64)
    # 1 layer of 8 SwiGLU experts 64 -> 128: 8 x 3 x 64 x 128 = 196,608 routed parameters, all frozen; a token runs
    # 2 of the 8: 49,152 frozen parameters per token, 2 FLOPs each less
    assert frozen.graph.params - frozen.graph.trainable_params == 196_608
    drop = full.utilization.model_flops_per_token - frozen.utilization.model_flops_per_token
    assert drop == pytest.approx(2 * 196_608 * 2 / 8)


def test_encoder_and_decoder_router_logits_are_not_heads():
    import torch

    from wattlint.frontends.torch import _logit_outputs

    out = {"logits": torch.zeros(2, 8, 100), "encoder_router_logits": torch.zeros(2, 8, 4),
           "decoder_router_logits": torch.zeros(2, 8, 4), "start_logits": torch.zeros(2, 8)}
    assert [n for n, _ in _logit_outputs(out, True)] == ["logits", "start_logits"]
