"""Review s54's sweep of vision-language configs through the Hugging Face frontend: Mllama (Llama 3.2 Vision) was
refused for want of aspect_ratio_ids, one missing input at a time, though its images' layout is known from the
config (now built: one image per sample in max_num_tiles tiles); HunYuan-VL without an mrope_section failed on
text-only input with "object of type 'NoneType' has no len()", a message that read as a missing input; Gemma 3's
transformers-default config (224 / 16 = 14 patches per side pooled to 16 per side) failed "stride should not be
zero"."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from wattlint.frontends import hf  # noqa: E402
from wattlint.frontends.inputs import parse_input_specs  # noqa: E402
from wattlint.types import InputError, Phase  # noqa: E402


def _tiny(model_type: str, **sub) -> dict:
    cfg = transformers.AutoConfig.for_model(model_type).to_dict()
    for name, sizes in sub.items():
        cfg[name].update(sizes)
    return cfg


def _fwd_flops(graph, module: str) -> int:
    return sum(r.flops for r in graph.select(phase=Phase.FORWARD) if r.module == module)


def _own_count(cfg: dict, arch: str) -> int:
    """transformers' own parameter count of the model (the oracle)."""
    import torch

    data = dict(cfg)
    config = transformers.AutoConfig.for_model(data.pop("model_type"), **data)
    with torch.device("meta"):
        model = getattr(transformers, arch)(config)
    return sum(p.numel() for p in model.parameters())


def _mllama() -> dict:
    cfg = _tiny("mllama", text_config={"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
                                       "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000,
                                       "pad_token_id": 0, "cross_attention_layers": [1]},
                vision_config={"num_hidden_layers": 1, "num_global_layers": 1, "hidden_size": 32,
                               "intermediate_size": 64, "attention_heads": 2, "image_size": 56, "patch_size": 14,
                               "intermediate_layers_indices": [0], "vision_output_dim": 64})
    cfg["architectures"] = ["MllamaForConditionalGeneration"]
    return cfg


PATCH = "model.vision_model.patch_embedding"
CROSS_K = "model.language_model.layers.1.cross_attn.k_proj"
# by hand, one 56 x 56 image in the default max_num_tiles = 4 tiles of (56 / 14)^2 = 16 patches each:
# the patch embedding (Conv2d 3 -> 32, 14 x 14, no bias) runs 2 x 4 tiles x 16 patches x 32 x (3 x 14 x 14) FLOPs
PATCH_FLOPS = 2 * 4 * 16 * 32 * 3 * 14 * 14  # 2,408,448
# the cross-attention key projection (64 -> 2 kv heads x 16 = 32, no bias) runs over the vision tower's 4 tiles x
# (16 patches + 1 class token) = 68 image tokens, per sample
CROSS_K_FLOPS = 2 * 68 * 64 * 32  # 278,528


def test_mllama_is_costed_with_its_tiled_image_by_default():
    cfg = _mllama()
    g = hf.analyze_config(cfg, seq_len=32, micro_batch=2)
    assert _fwd_flops(g, PATCH) == 2 * PATCH_FLOPS == 4_816_896
    assert _fwd_flops(g, CROSS_K) == 2 * CROSS_K_FLOPS == 557_056
    assert g.model.params == _own_count(cfg, "MllamaForConditionalGeneration")
    shapes = {s.name: s.shape for s in g.inputs}
    assert shapes["pixel_values"] == (2, 1, 4, 3, 56, 56)
    assert shapes["cross_attention_mask"] == (2, 32, 1, 4)
    notes = " ".join(g.assumptions)
    assert "one image per sample in max_num_tiles = 4 tiles of 56 x 56" in notes
    assert "kept as given" not in notes  # no input read as another sequence when --seq-len rebinds them


def test_mllama_text_only_input_skips_its_vision_tower_and_cross_attention():
    g = hf.analyze_config(_mllama(), inputs=parse_input_specs(["input_ids=int64[2,32]"]))
    assert _fwd_flops(g, PATCH) == 0 and _fwd_flops(g, CROSS_K) == 0


def test_mllama_given_pixel_values_alone_names_every_image_input_with_its_shape():
    with pytest.raises(InputError) as e:
        hf.analyze_config(_mllama(), inputs=parse_input_specs(["input_ids=int64[2,32]",
                                                                "pixel_values=float32[2,1,4,3,56,56]"]))
    flags = ["pixel_values=float32[2,1,4,3,56,56]", "aspect_ratio_ids=int64[2]", "aspect_ratio_mask=float32[2,1,4]",
             "cross_attention_mask=float32[2,32,1,4]"]
    for flag in flags:
        assert f"--input {flag}" in str(e.value)
    # the inputs the line names cost the same step as the defaults, also rebound to another --seq-len
    g = hf.analyze_config(_mllama(), inputs=parse_input_specs(["input_ids=int64[2,32]", *flags]))
    assert _fwd_flops(g, CROSS_K) == 2 * CROSS_K_FLOPS
    g64 = hf.analyze_config(_mllama(), inputs=parse_input_specs(["input_ids=int64[2,32]", *flags]), seq_len=64)
    assert g64.total().flops == hf.analyze_config(_mllama(), seq_len=64, micro_batch=2).total().flops


def _hunyuan_vl() -> dict:
    cfg = _tiny("hunyuan_vl", text_config={"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128,
                                           "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 1000,
                                           "head_dim": 16},
                vision_config={"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64,
                               "num_attention_heads": 2, "num_key_value_heads": 2, "out_hidden_size": 64,
                               "text_hidden_size": 64})
    cfg["architectures"] = ["HunYuanVLForConditionalGeneration"]
    return cfg


def test_hunyuan_vl_without_mrope_section_says_the_config_lacks_it():
    text = parse_input_specs(["input_ids=int64[1,32]"])
    # transformers' default text config has no mrope_section; its rotary embedding reads len(mrope_section)
    with pytest.raises(InputError, match=r"^the config's text_config\.rope_parameters has no mrope_section: .*"
                                         r"text-only input included.*summing to head_dim / 2 = 8") as e:
        hf.analyze_config(_hunyuan_vl(), inputs=text)
    assert "not given" not in str(e.value)


def test_hunyuan_vl_with_its_checkpoints_xdrope_section_costs_the_text_only_step():
    cfg = _hunyuan_vl()
    # a flat config, as tencent/HunyuanOCR ships it: the text sizes at the top, rope_scaling.xdrope_section
    text = cfg.pop("text_config")
    text.pop("rope_parameters", None)
    flat = {**cfg, **{k: v for k, v in text.items() if k not in ("model_type", "architectures")},
            "rope_scaling": {"type": "xdrope", "xdrope_section": [2, 2, 2, 2], "alpha": 1000.0, "factor": 1.0},
            "rope_theta": 10000.0}
    g = hf.analyze_config(flat, inputs=parse_input_specs(["input_ids=int64[1,32]"]))
    # by hand: the query projection (64 -> 4 heads x 16, no bias) over 32 tokens: 2 x 32 x 64 x 64
    assert _fwd_flops(g, "model.language_model.layers.0.self_attn.q_proj") == 2 * 32 * 64 * 64 == 262_144


def test_gemma3_pooling_fewer_patches_than_image_tokens_names_the_sizes():
    cfg = _tiny("gemma3", text_config={"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128,
                                       "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                                       "vocab_size": 1000, "layer_types": ["full_attention"]},
                vision_config={"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64,
                               "num_attention_heads": 2})
    cfg["architectures"] = ["Gemma3ForConditionalGeneration"]
    # transformers' defaults: SigLIP's 224 / 16 = 14 patches per side, pooled to sqrt(256) = 16 tokens per side
    with pytest.raises(InputError, match=r"14 patches per side.*mm_tokens_per_image = 256.*16 .*per side"):
        hf.analyze_config(cfg, seq_len=32)
    # Gemma 3's own geometry: 896 / 14 = 64 patches per side, pooled 4 x 4 to 16 x 16 = 256 image tokens
    cfg["vision_config"].update(image_size=896, patch_size=14)
    g = hf.analyze_config(cfg, seq_len=32)
    assert g.model.params == _own_count(cfg, "Gemma3ForConditionalGeneration")
