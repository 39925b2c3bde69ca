"""Parameter counts in the reports (review s54). A mixture-of-experts model's header printed its total parameters
only (N_active appeared only inside the MFU convention line); a vision-language model's report did not say which
inputs it was traced with, so a Llama 4 Scout estimate whose default inputs held one image per sample (its vision
tower run, N_active 18.04 B) was read as text-only (17.17 B); a model traced text-only did not say so. The active
count includes every embedding table: gpt-oss's card (3.61 B active for gpt-oss-20b) leaves its untied input
embedding out, so the header says what it counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _parallel_fixtures import LLAMA4_VLM_TINY

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "src/wattlint/schemas/estimate.schema.json").read_text())


def _own_count(cfg: dict, arch: str, *children: str) -> int:
    """transformers' own parameter count (the oracle) of the model, or of the named submodules ('model.vision_tower')."""
    import torch

    data = dict(cfg)
    config = transformers.AutoConfig.for_model(data.pop("model_type"), **data)
    with torch.device("meta"):
        model = getattr(transformers, arch)(config)
    if not children:
        return sum(p.numel() for p in model.parameters())
    return sum(p.numel() for c in children for p in model.get_submodule(c).parameters())


def _run(run_cli, tmp_path, cfg: dict, *args: str) -> tuple[str, dict]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    code, text, err = run_cli(str(path), "--gpu", "h100", "--steps", "10", *args)
    assert code == 0, err
    code, out, err = run_cli(str(path), "--gpu", "h100", "--steps", "10", *args, "--format", "json")
    assert code == 0, err
    return text, json.loads(out)


MIXTRAL = {"model_type": "mixtral", "architectures": ["MixtralForCausalLM"], "vocab_size": 1000, "hidden_size": 64,
           "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "num_local_experts": 4, "num_experts_per_tok": 2, "tie_word_embeddings": False}


def test_moe_header_and_json_state_the_active_parameters(run_cli, tmp_path):
    import jsonschema

    text, doc = _run(run_cli, tmp_path, MIXTRAL, "--seq-len", "32")
    # by hand: embedding 1000 x 64 = 64,000, LM head 64,000, final norm 64; per layer q 64 x 64 = 4,096, k and v
    # 64 x (2 kv heads x 16) = 2,048 each, o 4,096 (12,288), router 64 x 4 = 256, two norms 128, experts
    # 4 x (64 x 128 x 2 + 128 x 64) = 98,304: 110,976; total 128,064 + 2 x 110,976 = 350,016
    assert doc["model"]["params"] == 350_016 == _own_count(MIXTRAL, "MixtralForCausalLM")
    # active = total - (E - k) / E x routed-expert parameters = 350,016 - (4 - 2) / 4 x 2 x 98,304 = 251,712
    assert doc["model"]["active_params"] == 251_712
    assert "350 k parameters (252 k active per token, embedding tables included) ·" in text.splitlines()[1]
    assert doc["model"]["inputs"] == [{"name": "input_ids", "dtype": "int64", "shape": [1, 32]}]
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    # the same count as MFU's N_active
    assert "here N_active = 251,712 of 350,016 parameters" in doc["utilization"]["convention"]
    # a text-only language model gets no inputs note
    assert not any(a.startswith(("multimodal inputs traced", "costed text-only")) for a in doc["assumptions"])


GPT_OSS = {"model_type": "gpt_oss", "architectures": ["GptOssForCausalLM"], "vocab_size": 1000, "hidden_size": 64,
           "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 16, "num_local_experts": 4, "num_experts_per_tok": 2, "tie_word_embeddings": False,
           "layer_types": ["full_attention", "full_attention"]}


def test_gpt_oss_active_count_includes_its_untied_input_embedding(run_cli, tmp_path):
    text, doc = _run(run_cli, tmp_path, GPT_OSS, "--seq-len", "32")
    # by hand: embedding 64,000, LM head 64,000, final norm 64; per layer attention (biases) q 4,160, k 2,080,
    # v 2,080, o 4,160, sinks 4 (12,484), norms 128, router 64 x 4 + 4 = 260, experts gate_up 4 x 64 x 128 + 4 x 128
    # = 33,280 and down 4 x 64 x 64 + 4 x 64 = 16,640 (49,920): 62,792; total 128,064 + 2 x 62,792 = 253,648
    assert doc["model"]["params"] == 253_648 == _own_count(GPT_OSS, "GptOssForCausalLM")
    # active 253,648 - 2 / 4 x 2 x 49,920 = 203,728, the 64,000-parameter input embedding included (the card's
    # convention would say 139,728): the header says so
    assert doc["model"]["active_params"] == 203_728
    assert "254 k parameters (204 k active per token, embedding tables included)" in text.splitlines()[1]


# a Llama 4 vision-language model (text: hidden 256, 4 layers, every layer MoE with 8 experts of width 512, top-1;
# vision tower 2 layers of 128 over 112 x 112 images in 14 x 14 patches, pixel shuffle 0.5)
L4MM = LLAMA4_VLM_TINY
# by hand: each layer's routed experts gate_up 8 x 256 x (2 x 512) + down 8 x 512 x 256 = 3,145,728; a token uses
# 1 of 8: 4 x 3,145,728 x 7 / 8 = 11,010,048 inactive
L4_INACTIVE = 11_010_048


def test_llama4_default_inputs_say_the_image_they_trace(run_cli, tmp_path):
    text, doc = _run(run_cli, tmp_path, L4MM, "--seq-len", "128")
    total = _own_count(L4MM, "Llama4ForConditionalGeneration")
    assert doc["model"]["params"] == total
    # the vision tower ran: every parameter but the inactive experts is active
    assert doc["model"]["active_params"] == total - L4_INACTIVE
    assert [i["name"] for i in doc["model"]["inputs"]] == ["input_ids", "pixel_values"]
    note = next(a for a in doc["assumptions"] if a.startswith("multimodal inputs traced"))
    assert "input_ids int64[1, 128] and pixel_values float32[1, 3, 112, 112]: 1 image of 112 x 112 per sample" in note
    assert "the vision tower (vision_model, Llama4VisionModel) runs" in note
    # by hand: (112 / 14)^2 = 64 patches, pixel shuffle 0.5 keeps 64 x 0.5^2 = 16 image tokens
    assert "fill 16 of each sample's 128 sequence positions" in note
    assert "pass --input input_ids=int64[1,128] alone to cost the text-only step" in note
    assert "multimodal inputs traced" in text


def test_llama4_text_only_says_so_and_leaves_the_tower_out(run_cli, tmp_path):
    text, doc = _run(run_cli, tmp_path, L4MM, "--input", "input_ids=int64[1,128]")
    total = _own_count(L4MM, "Llama4ForConditionalGeneration")
    tower = _own_count(L4MM, "Llama4ForConditionalGeneration", "vision_model", "multi_modal_projector")
    assert doc["model"]["active_params"] == total - L4_INACTIVE - tower
    note = next(a for a in doc["assumptions"] if a.startswith("costed text-only"))
    assert "the vision tower (vision_model, Llama4VisionModel) does not run" in note
    assert f"among the {tower:,} trainable parameters that get no gradient" in note
    assert not any(a.startswith("multimodal inputs traced") for a in doc["assumptions"])


def _gemma3() -> dict:
    cfg = transformers.AutoConfig.for_model("gemma3").to_dict()
    cfg["text_config"].update({"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128,
                               "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                               "vocab_size": 1000, "layer_types": ["full_attention"]})
    # Gemma 3's own geometry: 896 / 14 = 64 patches per side, pooled 4 x 4 to 16 x 16 = 256 image tokens
    cfg["vision_config"].update({"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64,
                                 "num_attention_heads": 2, "image_size": 896, "patch_size": 14})
    cfg["architectures"] = ["Gemma3ForConditionalGeneration"]
    return cfg


def test_gemma3_text_only_header_counts_the_tower_that_does_not_run(run_cli, tmp_path):
    cfg = _gemma3()
    text, doc = _run(run_cli, tmp_path, cfg, "--input", "input_ids=int64[1,300]")
    tower = _own_count(cfg, "Gemma3ForConditionalGeneration", "model.vision_tower", "model.multi_modal_projector")
    assert tower == 169_120
    assert doc["model"]["active_params"] == doc["model"]["params"] - tower
    assert "(169 k get no gradient in the traced step)" in text.splitlines()[1]
    note = next(a for a in doc["assumptions"] if a.startswith("costed text-only"))
    assert "the vision tower (model.vision_tower, SiglipVisionModel) does not run" in note


def test_gemma3_image_tokens_beyond_the_sequence_are_flagged(run_cli, tmp_path):
    _, doc = _run(run_cli, tmp_path, _gemma3(), "--seq-len", "32")
    note = next(a for a in doc["assumptions"] if a.startswith("multimodal inputs traced"))
    # 256 image tokens (mm_tokens_per_image) in a 32-token sequence
    assert "fill 256 of each sample's 32 sequence positions" in note
    assert "pass a --seq-len above 256" in note
