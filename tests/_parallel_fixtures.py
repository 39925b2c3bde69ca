"""The small GPT-2-shaped decoder the parallelism tests trace (h 512, 8 heads, 4 layers, vocab 1000, seq 256: one
second to trace) and the estimate call they share; the ``gpt_config`` fixture is in conftest.py."""

from __future__ import annotations

import json

import wattlint

GPT = dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=512, n_head=8, n_layer=4, n_positions=256,
           vocab_size=1000)
SEQ = 256


def write_gpt_config(folder) -> object:
    p = folder / "config.json"
    p.write_text(json.dumps(GPT))
    return p


def est(src, **kw):
    """wattlint.estimate on an A100 80GB, bf16, seq 256, 10 steps, no lint, with ``kw`` on top."""
    base = dict(gpu="a100-sxm4-80gb", seq_len=SEQ, precision="bf16", steps=10, lint=False)
    base.update(kw)
    return wattlint.estimate(str(src), **base)


# a tiny DeepSeek-V3: 3 layers, the first dense (first_k_dense_replace 1): 2 MoE layers of 64 experts, top-8, node-limited
# routing to 4 of 8 groups; hidden 256 (tests/test_moe_a2a_wiring_s54.py, tests/test_moe_a2a_edges_s54.py)
DEEPSEEK_V3_TINY = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_size": 256,
                    "intermediate_size": 512, "moe_intermediate_size": 64, "num_hidden_layers": 3,
                    "first_k_dense_replace": 1, "num_attention_heads": 4, "num_key_value_heads": 4,
                    "n_routed_experts": 64, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4,
                    "n_shared_experts": 1, "vocab_size": 1000, "kv_lora_rank": 32, "q_lora_rank": 64,
                    "qk_rope_head_dim": 16, "qk_nope_head_dim": 32, "v_head_dim": 32, "max_position_embeddings": 4096}

# a Llama 4 vision-language model (text: hidden 256, 4 layers, every layer MoE with 8 experts of width 512, top-1;
# vision tower 2 layers of 128 over 112 x 112 images in 14 x 14 patches, pixel shuffle 0.5)
# (tests/test_mfu_fewer_rows.py, tests/test_params_report_s54.py)
LLAMA4_VLM_TINY = {
    "model_type": "llama4", "architectures": ["Llama4ForConditionalGeneration"],
    "text_config": {"model_type": "llama4_text", "hidden_size": 256, "intermediate_size": 512,
                    "intermediate_size_mlp": 1024, "num_hidden_layers": 4, "num_attention_heads": 4,
                    "num_key_value_heads": 2, "head_dim": 64, "num_local_experts": 8, "num_experts_per_tok": 1,
                    "vocab_size": 1000, "max_position_embeddings": 4096, "interleave_moe_layer_step": 1},
    "vision_config": {"model_type": "llama4_vision_model", "hidden_size": 128, "intermediate_size": 512,
                      "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 112, "patch_size": 14,
                      "vision_output_dim": 256, "projector_input_dim": 256, "projector_output_dim": 256,
                      "pixel_shuffle_ratio": 0.5}}
