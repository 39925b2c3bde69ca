"""Hugging Face frontend review (session 49): T5-v1.1's untied output layer (transformers 5 ties it), the MFU
explanation for DeBERTa's disentangled attention (not layers shared across depth), Whisper's length hint naming
max_target_positions, and the assumption line for sliding-window attention. Expected values by hand in the comments."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from _cli_errors import one_error_line  # noqa: E402

import wattlint  # noqa: E402
from wattlint.frontends import hf  # noqa: E402


def _write(tmp_path, cfg, name="config.json"):
    p = tmp_path / name
    p.write_text(json.dumps(cfg))
    return str(p)


# ---- 1. T5-v1.1: "tie_word_embeddings": false is costed untied ---------------------------------------------------

T5 = dict(model_type="t5", architectures=["T5ForConditionalGeneration"], d_model=32, d_ff=64, d_kv=8, num_heads=4,
          num_layers=1, num_decoder_layers=1, vocab_size=100, feed_forward_proj="gated-gelu",
          relative_attention_num_buckets=8, tie_word_embeddings=False)
# by hand (d 32, 4 heads x d_kv 8 = 32, gated FFN 32 -> 2 x 64 -> 32, 8 buckets):
#   shared embedding 100 x 32 = 3,200
#   encoder block: attention q, k, v, o 4 x 32 x 32 = 4,096 + relative bias 8 x 4 = 32 + norm 32; gated FFN
#     wi_0, wi_1 2 x 32 x 64 = 4,096 + wo 64 x 32 = 2,048 + norm 32; final norm 32: 10,368
#   decoder block: self-attention 4,096 + bias 32 + norm 32, cross-attention 4,096 + norm 32, FFN 6,144 + norm 32,
#     final norm 32: 14,496
#   lm_head 100 x 32 = 3,200 (its own table: T5-v1.1 / Flan-T5 checkpoints have one)
T5_TIED = 3_200 + 10_368 + 14_496
T5_UNTIED = T5_TIED + 3_200


def test_t5_v1_1_untied_output_layer_is_costed(tmp_path):
    g = wattlint.analyze(_write(tmp_path, T5), batch_size=1, seq_len=16)
    assert g.params == T5_UNTIED == 31_264  # was 28,064: transformers' T5Config forced tie_word_embeddings = True
    note = next(a for a in g.assumptions if a.startswith("output layer: config.json says"))
    assert '"tie_word_embeddings": false' in note and "T5Config ties it" in note, note
    assert "own 100 x 32 weight: 3,200 parameters added" in note, note


def test_t5_tied_config_stays_tied(tmp_path):
    g = wattlint.analyze(_write(tmp_path, dict(T5, tie_word_embeddings=True)), batch_size=1, seq_len=16)
    assert g.params == T5_TIED == 28_064
    assert not any(a.startswith("output layer:") for a in g.assumptions)


# ---- 2. DeBERTa's disentangled attention is not sharing across depth ----------------------------------------------

DEBERTA = dict(model_type="deberta-v2", architectures=["DebertaV2ForMaskedLM"], hidden_size=32, num_hidden_layers=2,
               num_attention_heads=4, intermediate_size=64, vocab_size=100, max_position_embeddings=64,
               relative_attention=True, position_buckets=16, max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
               norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False)


def test_deberta_mfu_explanation_names_the_rows_not_depth_sharing(tmp_path):
    e = wattlint.estimate(_write(tmp_path, DEBERTA), gpu="a100-sxm4-80gb", batch_size=1, seq_len=16, steps=1,
                          lint=False)
    conv = e.utilization.convention
    assert conv.startswith("MFU = the model's traced forward + backward FLOPs"), conv
    # query_proj runs on the 16 tokens, then on the 2 x position_buckets = 32 relative-position embeddings
    # (share_att_key: the p2c / c2p terms project them with the attention's own query / key weights): 48 rows
    assert "query_proj's weights run 2 times per forward within one pass of its block, on 48 rows (16 + 32) " \
           "per 16 counted tokens" in conv, conv
    assert "shared across depth" not in conv, conv


# ---- 3. Whisper: the length hint names max_target_positions -----------------------------------------------------

WHISPER = dict(model_type="whisper", architectures=["WhisperForConditionalGeneration"], d_model=64,
               encoder_layers=1, decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
               encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=100, num_mel_bins=16, max_source_positions=150,
               max_target_positions=64, pad_token_id=1, bos_token_id=2, eos_token_id=2, decoder_start_token_id=3,
               suppress_tokens=[], begin_suppress_tokens=[], is_encoder_decoder=True)


def test_whisper_seq_len_past_its_positions_names_max_target_positions(run_cli, tmp_path):
    code, out, err = run_cli("analyze", _write(tmp_path, WHISPER), "--input", "input_features=float32[1,16,300]",
                             "--seq-len", "65")
    assert code == 2
    line = one_error_line(err)
    # 65 > the decoder's 64 learned positions (max_target_positions; WhisperConfig has no max_position_embeddings)
    assert "exceeds the 64 learned position embeddings" in line, line
    assert "raise max_target_positions in the config" in line and "max_position_embeddings" not in line, line


# ---- 4. sliding-window attention: the window, its layers and the windowed pair count -----------------------------

MISTRAL = dict(model_type="mistral", architectures=["MistralForCausalLM"], hidden_size=64, intermediate_size=128,
               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, vocab_size=256, sliding_window=4)


@pytest.mark.parametrize("s, w, pairs", [
    (16, 4, 1 + 2 + 3 + 13 * 4),  # 58: positions 0..2 see 1..3 keys, the other 13 see 4
    (4, 4, 1 + 2 + 3 + 4),  # 10 = the causal s(s+1)/2
    (5, 1, 5),  # each query sees only itself
])
def test_windowed_pairs_by_hand(s, w, pairs):
    assert hf.windowed_pairs(s, w) == pairs


def test_mistral_sliding_window_line(tmp_path):
    g = wattlint.analyze(_write(tmp_path, MISTRAL), batch_size=1, seq_len=16)
    note = next(a for a in g.assumptions if a.startswith("sliding-window attention:"))
    assert "sliding_window = 4 tokens (< the traced sequence of 16) applies to all 2 layers" in note, note
    # priced: 16 x 16 = 256 pairs (the dense mask); windowed FlashAttention-2: 1 + 2 + 3 + 13 x 4 = 58 = 22.7 %
    assert "all 16 x 16 = 256 query-key pairs per head" in note and "SDPA" in note, note
    assert "would compute 58 (sum over positions i of min(i + 1, 4)), 22.7% of them" in note, note
    # a window as long as the sequence masks nothing: no line
    g = wattlint.analyze(_write(tmp_path, MISTRAL), batch_size=1, seq_len=4)
    assert not any(a.startswith("sliding-window attention:") for a in g.assumptions)


def test_gemma2_alternate_sliding_layers(tmp_path):
    cfg = dict(MISTRAL, model_type="gemma2", architectures=["Gemma2ForCausalLM"], num_hidden_layers=4, head_dim=16)
    g = wattlint.analyze(_write(tmp_path, cfg), batch_size=1, seq_len=16)
    note = next(a for a in g.assumptions if a.startswith("sliding-window attention:"))
    # Gemma 2's layer_types: sliding on layers 0 and 2, full attention on 1 and 3; eager attention (soft-capping)
    assert "applies to alternate layers (2 of 4: 0, 2; the others attend over the whole sequence)" in note, note
    assert "eager attention" in note and "would compute 58" in note, note


def test_t5_untied_on_every_build_of_one_config(tmp_path):
    """Review s49: the untie was popped on the first build, so a second model built from the same config object came
    out tied (247.6 M then 222.9 M parameters for T5-v1.1-base)."""
    from wattlint.frontends.hf import build_model, load_config

    config = load_config(_write(tmp_path, T5))
    counts = []
    for _ in range(2):
        model = build_model(config)
        counts.append(sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()))
    assert counts == [T5_UNTIED, T5_UNTIED]
