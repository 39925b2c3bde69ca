"""Hugging Face frontend fixes from a review walk over transformers configs: a multiple-choice model's [batch,
choices, seq] input (sequence = last dim, tokens per sample = choices x seq), the notes for Mamba / RWKV's
sequential PyTorch scan and for dense sliding-window masks, the errors for an input of an unknown name and for a
model that needs an input not given, the note for num_key_value_heads taken from num_attention_heads, and the MoE
share printed with its digits."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from _cli_errors import one_error_line  # noqa: E402

import wattlint  # noqa: E402
from wattlint.types import OpKind, Phase  # noqa: E402

BERT_MC = dict(model_type="bert", architectures=["BertForMultipleChoice"], hidden_size=64, num_hidden_layers=2,
               num_attention_heads=4, intermediate_size=128, vocab_size=1000, max_position_embeddings=128)
LLAMA = dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=64, intermediate_size=128,
             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, vocab_size=256)


def _write(tmp_path, cfg, name="config.json"):
    p = tmp_path / name
    p.write_text(json.dumps(cfg))
    return str(p)


def _query_fwd_flops(g):
    """Forward FLOPs of layer 0's query projection (its Linear's matmul)."""
    return sum(r.flops for r in g.records if r.phase is Phase.FORWARD and r.kind is OpKind.MATMUL
               and r.module == "bert.encoder.layer.0.attention.self.query")


# ---- 1. multiple choice: [batch, choices, seq] ------------------------------------------------------------------

def test_multiple_choice_tokens_count_choices_times_seq(run_cli, tmp_path):
    src = _write(tmp_path, BERT_MC)
    code, out, err = run_cli(src, "--gpu", "a100", "--input", "input_ids=int64[2,4,64]", "--batch-size", "2",
                             "--tokens", "1e6", "--format", "json")
    assert code == 0, err
    plan = json.loads(out)["plan"]
    # tokens per sample = 4 choices x 64 tokens = 256; steps = ceil(1,000,000 / (2 x 256)) = ceil(1953.125) = 1,954
    # (the choices dim read as the sequence gave ceil(1e6 / (2 x 4)) = 125,000)
    assert plan["seq_len"] == 256 and plan["steps"] == 1954, plan


def test_multiple_choice_seq_len_rebinds_the_last_dim(tmp_path):
    src = _write(tmp_path, BERT_MC)
    g = wattlint.analyze(src, inputs=["input_ids=int64[2,4,64]"], seq_len=32)
    # --seq-len 32 rebinds the sequence (last dim): [2, 4, 32], not [2, 32, 64] (32 choices of 64 tokens)
    assert [tuple(t.shape) for t in g.inputs] == [(2, 4, 32)]
    assert g.seq_len == 4 * 32
    # the query Linear (64 -> 64, with bias: one addmm) runs on 2 x 4 x 32 = 256 token rows:
    # 2 x 256 x 64 x 64 = 2,097,152 multiply-add FLOPs + 256 x 64 = 16,384 bias adds = 2,113,536
    assert _query_fwd_flops(g) == 2 * 256 * 64 * 64 + 256 * 64


def test_multiple_choice_default_input_has_a_choices_dim(tmp_path):
    src = _write(tmp_path, BERT_MC)
    g = wattlint.analyze(src, batch_size=2, seq_len=16)  # a 2-D input failed: "shape '[-1, 16]' is invalid"
    assert [tuple(t.shape) for t in g.inputs] == [(2, 4, 16)]
    assert any("4 choices per question assumed" in a for a in g.assumptions), g.assumptions
    # 2 x 4 x 16 = 128 token rows through the query Linear (addmm): 2 x 128 x 64 x 64 = 1,048,576 multiply-add
    # FLOPs + 128 x 64 = 8,192 bias adds = 1,056,768
    assert _query_fwd_flops(g) == 2 * 128 * 64 * 64 + 128 * 64
    assert g.seq_len == 4 * 16


# ---- 2. Mamba / RWKV: transformers' sequential PyTorch scan -------------------------------------------------------

@pytest.mark.parametrize("cfg, words", [
    (dict(model_type="mamba", architectures=["MambaForCausalLM"], hidden_size=32, num_hidden_layers=1,
          vocab_size=64, state_size=4, expand=2), "selective scan (Mamba)"),
    (dict(model_type="rwkv", architectures=["RwkvForCausalLM"], hidden_size=32, num_hidden_layers=1,
          vocab_size=64, attention_hidden_size=32, intermediate_size=64, context_length=64), "WKV attention (RWKV)"),
])
def test_sequential_scan_is_stated(tmp_path, cfg, words):
    g = wattlint.analyze(_write(tmp_path, cfg), batch_size=1, seq_len=4)
    line = next((a for a in g.assumptions if a.startswith(words)), None)
    assert line is not None, g.assumptions
    assert "pure-PyTorch sequential path" in line and "much faster than this estimate" in line


def test_no_scan_note_for_a_transformer(tmp_path):
    g = wattlint.analyze(_write(tmp_path, LLAMA), batch_size=1, seq_len=8)
    assert not any("sequential path" in a or "chunked scan" in a for a in g.assumptions)


# ---- 3. sliding-window attention: a dense mask in sdpa ---------------------------------------------------------

def test_sliding_window_note_says_the_mask_is_dense(tmp_path):
    cfg = {**LLAMA, "model_type": "mistral", "architectures": ["MistralForCausalLM"], "sliding_window": 4}
    g = wattlint.analyze(_write(tmp_path, cfg), batch_size=1, seq_len=16)
    att = [r for r in g.records if r.phase is Phase.FORWARD and r.kind is OpKind.ATTENTION]
    # priced as sdpa runs a dense mask: not causal, all 16 x 16 pairs (unchanged)
    assert len(att) == 2 and all(r.dim("causal") == 0 and r.dim("sq") == r.dim("sk") == 16 for r in att)
    note = next(a for a in g.assumptions if a.startswith("attention: scaled_dot_product_attention"))
    assert "2 of the 2 calls take an explicit mask tensor (a sliding-window" in note, note
    assert "all sq x sk query-key pairs" in note, note


def test_causal_llama_attention_note_is_unchanged(tmp_path):
    g = wattlint.analyze(_write(tmp_path, LLAMA), batch_size=1, seq_len=16)
    note = next(a for a in g.assumptions if a.startswith("attention: scaled_dot_product_attention"))
    assert note.endswith("causal masks count the s(s+1)/2 query-key pairs the kernel computes"), note


# ---- 4. errors ---------------------------------------------------------------------------------------------------

def test_unknown_input_name_names_the_models_inputs(run_cli, tmp_path):
    code, out, err = run_cli("analyze", _write(tmp_path, LLAMA), "--input", "x=float32[2,3]")
    assert code == 2
    line = one_error_line(err)
    assert "input 'x': LlamaForCausalLM takes no input of that name" in line and "input_ids" in line, line


def test_vision_language_model_missing_input_is_named(run_cli, tmp_path):
    cfg = {"model_type": "qwen2_vl", "architectures": ["Qwen2VLForConditionalGeneration"],
           "text_config": {"model_type": "qwen2_vl_text", "hidden_size": 64, "intermediate_size": 128,
                           "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
                           "vocab_size": 1000, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}},
           "vision_config": {"depth": 1, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2,
                             "patch_size": 14, "spatial_merge_size": 2, "in_channels": 3, "temporal_patch_size": 2},
           "image_token_id": 997, "video_token_id": 998, "vision_start_token_id": 996}
    code, out, err = run_cli("analyze", _write(tmp_path, cfg), "--seq-len", "16")
    assert code == 2
    line = one_error_line(err)
    assert "image_grid_thw" in line and "--input input_ids=int64[1,16]" in line, line


# ---- 5. num_key_value_heads from num_attention_heads -------------------------------------------------------------

def test_kv_heads_from_attention_heads_is_said_so(tmp_path):
    cfg = {k: v for k, v in LLAMA.items() if k != "num_key_value_heads"}
    g = wattlint.analyze(_write(tmp_path, cfg), batch_size=1, seq_len=8)
    line = next(a for a in g.assumptions if a.startswith("config.json does not give"))
    # LlamaConfig: num_key_value_heads None -> num_attention_heads (4), not a default of its own
    assert line.startswith("config.json does not give num_key_value_heads: LlamaConfig takes num_key_value_heads "
                           "from num_attention_heads (num_key_value_heads 4;"), line
    assert "defaults used" not in line


# ---- 6. the MoE share's digits ----------------------------------------------------------------------------------

def test_moe_share_prints_its_digits(tmp_path):
    cfg = dict(model_type="mixtral", architectures=["MixtralForCausalLM"], num_hidden_layers=1, hidden_size=64,
               intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
               num_local_experts=8, num_experts_per_tok=2)
    g = wattlint.analyze(_write(tmp_path, cfg), batch_size=1, seq_len=1)
    line = next(a for a in g.assumptions if "balanced routing" in a)
    # 1 token x top-2 / 8 experts = 0.25 (was printed "0.2")
    assert "tokens x top-k / experts = 0.25 of the 1 x 2 token slots" in line, line
