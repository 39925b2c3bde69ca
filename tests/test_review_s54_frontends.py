"""Review s54 of the frontend commits (adaef15, f805f9f, 12f6f63): attention sinks in a bidirectional encoder, HF
state outputs kept out of the loss, the eager-attention line only for models with attention, the text-only hint
only where a text-only step exists."""
import json

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402
import transformers  # noqa: E402

from wattlint import aggregate, stack  # noqa: E402
from wattlint.frontends import hf  # noqa: E402
from wattlint.types import InputError, Phase, TensorSpec  # noqa: E402

# OpenAI's privacy filter, tiny: a bidirectional encoder with attention sinks, 8 query heads over 2 key / value heads
# of 32, every layer a sliding window of config.sliding_window = 64 on either side
OPF = {"model_type": "openai_privacy_filter", "architectures": ["OpenAIPrivacyFilterForTokenClassification"],
       "num_labels": 5, "pad_token_id": 0, "num_hidden_layers": 2, "num_local_experts": 4, "num_experts_per_tok": 2, "vocab_size": 1000,
       "hidden_size": 256, "intermediate_size": 256, "head_dim": 32, "num_attention_heads": 8,
       "num_key_value_heads": 2, "sliding_window": 64, "max_position_embeddings": 4096,
       "rope_parameters": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                           "truncate": False, "original_max_position_embeddings": 4096, "rope_theta": 150000.0}}
B, S = 2, 512

LLAVA = {"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"], "image_token_index": 999,
         "vision_config": {"model_type": "clip_vision_model", "hidden_size": 64, "intermediate_size": 128,
                           "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 56, "patch_size": 14},
         "text_config": {"model_type": "llama", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000,
                         "max_position_embeddings": 2048}}
CLIP = {"model_type": "clip", "architectures": ["CLIPModel"], "projection_dim": 32,
        "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                        "vocab_size": 1000, "max_position_embeddings": 77},
        "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                          "num_attention_heads": 2, "image_size": 32, "patch_size": 8}}


def _cfg(tmp_path_factory, name, cfg):
    p = tmp_path_factory.mktemp(name) / "config.json"
    p.write_text(json.dumps(cfg))
    return str(p)


@pytest.fixture(scope="module")
def opf(tmp_path_factory):
    return hf.analyze_config(_cfg(tmp_path_factory, "opf", OPF), micro_batch=B, seq_len=S, precision="bf16")


@pytest.fixture(scope="module")
def llava_path(tmp_path_factory):
    return _cfg(tmp_path_factory, "llava", LLAVA)


@pytest.fixture(scope="module")
def llava(llava_path):
    return hf.analyze_config(llava_path, micro_batch=1, seq_len=64)


# ---- (1) attention sinks in a bidirectional encoder -----------------------------------------------------------

def test_window_pairs_by_hand_and_by_the_models_mask():
    # by hand, 512 tokens, |q - k| <= 64: rows i < 64 see i keys before, the others 64; the same after, mirrored:
    # sum_{i<512} min(i, 64) = 64 * 63 / 2 + (512 - 64) * 64 = 2,016 + 28,672 = 30,688 on each side, + 512 self
    assert stack.windowed_pairs(512, 65, causal=False) == 512 + 2 * 30_688 == 61_888
    # the mask transformers builds for the privacy filter (create_bidirectional_sliding_window_mask's overlay)
    from transformers.masking_utils import sliding_window_bidirectional_overlay

    inner = sliding_window_bidirectional_overlay(64)
    q, k = torch.arange(512)[:, None], torch.arange(512)[None, :]
    assert int(inner(0, 0, q, k).sum()) == 61_888
    # a window wider than the sequence: every pair
    assert stack.windowed_pairs(10, 65, causal=False) == 100
    # causal unchanged: 65 * 66 / 2 + (512 - 65) * 65 = 2,145 + 29,055
    assert stack.windowed_pairs(512, 65) == 31_200


def test_bidirectional_sink_attention_is_priced_both_ways(opf):
    assert opf.extra["sink_attention"] == {"model.layers.0.self_attn": 65, "model.layers.1.self_attn": 65}
    mg, notes = stack.megatron(opf, "bf16", "adamw")
    fused = {(r.module, r.phase): r for r in mg.records if r.op.startswith("fused::attention_learnable_sink")}
    assert len(fused) == 4
    # per pair (tests/test_gpt_oss_attention.py): forward 2 b h (d + dv) + 5 b h = 2*16*64 + 80 = 2,128, backward
    # 2 b h (3 d + 2 dv) + 6 b h = 2*16*160 + 96 = 5,216; over the 61,888 pairs of the bidirectional window (was
    # priced over 31,200 causal ones)
    for layer in (0, 1):
        f, b = fused[(f"model.layers.{layer}.self_attn", Phase.FORWARD)], \
            fused[(f"model.layers.{layer}.self_attn", Phase.BACKWARD)]
        assert f.flops == 61_888 * 2_128 and b.flops == 61_888 * 5_216
        assert f.dim("causal", 1) == 0 and f.dim("window", 0) == 65
    note = next(n for n in notes if n.startswith("attention sinks under megatron"))
    assert "bidirectional" in note and "|q - k| <= 64" in note and "61,888" in note
    assert ", causal," not in note


def test_eager_note_is_worded_per_model(opf):
    line = next(a for a in opf.assumptions if a.startswith("attention: eager, not SDPA"))
    assert "cookbook" not in line and "gpt-oss" not in line
    # not told whether --attention was given: an explicit --attention sdpa is not called the default
    assert "(the default)" not in line and "--attention sdpa" in line


def test_gpt_oss_note_keeps_its_cookbook(tmp_path):
    cfg = {"model_type": "gpt_oss", "architectures": ["GptOssForCausalLM"], "vocab_size": 1000, "hidden_size": 64,
           "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 16, "num_local_experts": 4, "num_experts_per_tok": 2, "layer_types": ["full_attention"]}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    g = hf.analyze_config(str(p), micro_batch=1, seq_len=32)
    line = next(a for a in g.assumptions if a.startswith("attention: eager, not SDPA"))
    assert "OpenAI's gpt-oss cookbook" in line
    assert "sink_attention_bidirectional" not in g.extra
    mg, notes = stack.megatron(g, "bf16", "adamw")
    assert all(r.dim("causal", 0) == 1 for r in mg.records if r.op.startswith("fused::attention_learnable_sink"))


# ---- (3) the eager-attention line only for models with attention -----------------------------------------------

@pytest.mark.parametrize("cfg", [
    {"model_type": "resnet", "architectures": ["ResNetForImageClassification"], "embedding_size": 16,
     "hidden_sizes": [16, 32], "depths": [1, 1], "layer_type": "basic", "num_labels": 10},
    {"model_type": "mamba", "architectures": ["MambaForCausalLM"], "hidden_size": 64, "state_size": 8,
     "num_hidden_layers": 2, "vocab_size": 1000},
])
def test_no_attention_no_attention_line(tmp_path, cfg):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    g = hf.analyze_config(str(p), micro_batch=2, seq_len=16)
    assert not any(a.startswith("attention:") for a in g.assumptions), g.assumptions


# ---- (2) Hugging Face state outputs are not training heads ----------------------------------------------------

def _real_llava_idle() -> int:
    """Parameters PyTorch leaves without a gradient after a real CPU forward + backward of LLaVA's training loss."""
    cfg = transformers.AutoConfig.for_model(**LLAVA)
    torch.manual_seed(0)
    model = transformers.LlavaForConditionalGeneration(cfg).train()
    ids = torch.randint(0, 998, (1, 64))
    ids[0, 1:17] = 999  # (56 / 14)^2 = 16 image tokens
    out = model(input_ids=ids, pixel_values=torch.randn(1, 3, 56, 56), labels=ids)
    out.loss.backward()
    return sum(p.numel() for p in model.parameters() if p.requires_grad and p.grad is None)


def test_llava_idle_parameters_match_real_backward(llava):
    real = _real_llava_idle()
    # by hand, the vision tower's last CLIP layer and its post-layernorm (vision_feature_layer=-2 leaves them
    # unused): q / k / v / out 4 x (64 x 64 + 64) = 16,640, fc1 64 x 128 + 128 = 8,320, fc2 128 x 64 + 64 = 8,256,
    # two layer norms 2 x 128 = 256, post_layernorm 128: 33,600
    assert real == 33_600
    assert aggregate.param_counts(llava)["idle"] == real
    loss = next(a for a in llava.assumptions if a.startswith("loss:"))
    assert "plus the sum of" not in loss


# ---- (4) the text-only hint only where a text-only step exists -------------------------------------------------

def test_text_only_hint_where_the_step_exists(llava, llava_path):
    note = aggregate.multimodal_inputs_note(llava)
    assert "pass --input input_ids=int64[1,64] alone to cost the text-only step" in note
    # the hinted step traces
    hf.analyze_config(llava_path, inputs={"input_ids": TensorSpec("input_ids", "int64", (1, 64))})


def test_no_text_only_hint_for_a_dual_encoder(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(CLIP))
    g = hf.analyze_config(str(p), micro_batch=1)
    note = aggregate.multimodal_inputs_note(g)
    assert note.startswith("multimodal inputs traced") and "text-only" not in note
    # what the old hint said to do fails: CLIP needs its pixel_values
    with pytest.raises(InputError, match="pixel_values"):
        hf.analyze_config(str(p), inputs={"input_ids": TensorSpec("input_ids", "int64", (1, 77))})


def test_integer_side_inputs_are_not_tokens(llava_path):
    g = hf.analyze_config(llava_path, inputs={
        "attention_mask": TensorSpec("attention_mask", "int64", (1, 64)),
        "input_ids": TensorSpec("input_ids", "int64", (1, 64)),
        "pixel_values": TensorSpec("pixel_values", "float32", (1, 3, 56, 56))})
    note = aggregate.multimodal_inputs_note(g)
    assert note.startswith("multimodal inputs traced: input_ids int64[1, 64] and pixel_values"), note
    assert "attention_mask" not in note
    assert "pass --input input_ids=int64[1,64] alone" in note
