"""Gaps of the Hugging Face config frontend found by a sweep over transformers' model types: Longformer failed on
transformers' bare ``assert attn_probs.size(3) == 2 * window_overlap + 1`` (its encoder reads whether any token is
global from the mask's values, which meta tensors do not have); Mllama / Granite-Docling / HunYuan-VL failed with no
hint naming the input to pass (or the null config size); X-CLIP's video-text model got 4-D pixel_values and its
vision model failed at a batch that is not a whole number of videos."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from wattlint.frontends import hf  # noqa: E402
from wattlint.types import InputError, Phase  # noqa: E402

H, HEADS, WINDOW = 64, 4, 64


def _longformer(arch: str | None = None) -> dict:
    cfg = {"model_type": "longformer", "hidden_size": H, "intermediate_size": 2 * H, "num_attention_heads": HEADS,
           "num_hidden_layers": 2, "attention_window": [WINDOW, WINDOW], "vocab_size": 1000,
           "max_position_embeddings": 514}
    if arch:
        cfg["architectures"] = [arch]
    return cfg


def _fwd_flops(graph, module: str) -> int:
    return sum(r.flops for r in graph.select(phase=Phase.FORWARD) if r.module == module)


def _own_count(cfg: dict) -> int:
    """transformers' own parameter count of the model the config names (the oracle)."""
    import torch

    data = dict(cfg)
    config = transformers.AutoConfig.for_model(data.pop("model_type"), **data)
    cls = getattr(transformers, (cfg.get("architectures") or ["LongformerModel"])[0])
    with torch.device("meta"):
        model = cls(config)
    return sum(p.numel() for p in model.parameters())


def test_longformer_traces_its_sliding_window_over_the_padded_sequence():
    cfg = _longformer()
    g = hf.analyze_config(cfg, seq_len=100)
    # by hand: 100 tokens pad to the next multiple of the 64-token window, 128; the query projection of layer 0
    # runs 128 tokens x 64 x 64 with a bias: 2 x 128 x 64 x 64 + 128 x 64 = 1,056,768 forward FLOPs (100 tokens
    # unpadded would be 825,600)
    assert _fwd_flops(g, "encoder.layer.0.attention.self.query") == 2 * 128 * H * H + 128 * H == 1_056_768
    assert g.model.params == _own_count(cfg)
    notes = " ".join(g.assumptions)
    assert "the 100 tokens run as 128 (28 padding tokens" in notes
    assert "global attention: none" in notes
    # no global-attention projection ran (its encoder gives no token global attention without a mask)
    assert _fwd_flops(g, "encoder.layer.0.attention.self.key_global") == 0


def test_longformer_classifier_costs_one_global_token_per_sequence():
    cfg = _longformer("LongformerForSequenceClassification")
    g = hf.analyze_config(cfg, seq_len=128, micro_batch=2)
    pre = "longformer.encoder.layer.0.attention.self."
    # by hand: the global key projection runs over every token (2 sequences x 128: 2 x 256 x 64 x 64 + 256 x 64
    # bias = 2,113,536), the global query projection over the one global (CLS) token of each sequence
    # (2 x 2 x 64 x 64 + 2 x 64 = 16,512)
    assert _fwd_flops(g, pre + "key_global") == 2 * 256 * H * H + 256 * H == 2_113_536
    assert _fwd_flops(g, pre + "query_global") == 2 * 2 * H * H + 2 * H == 16_512
    assert g.model.params == _own_count(cfg)
    assert "one global token per sequence costed" in " ".join(g.assumptions)


def test_longformer_question_answering_names_what_can_be_costed():
    with pytest.raises(InputError, match="question's tokens.*LongformerForMaskedLM"):
        hf.analyze_config(_longformer("LongformerForQuestionAnswering"), seq_len=128)


def _tiny(model_type: str, **sub) -> dict:
    cfg = transformers.AutoConfig.for_model(model_type).to_dict()
    for name, sizes in sub.items():
        cfg[name].update(sizes)
    return cfg


# Mllama (stop 53: refused, naming aspect_ratio_ids) is costed from its config since stop 54: the default inputs,
# the hint for a partial set and the text-only step are tested in tests/test_hf_hints_s54.py


def test_granite_docling_names_the_pixel_attention_mask():
    cfg = _tiny("granite_docling", text_config={"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128,
                                                "num_attention_heads": 4, "num_key_value_heads": 4,
                                                "vocab_size": 1000, "pad_token_id": 0},
                vision_config={"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64,
                               "num_attention_heads": 2, "image_size": 64, "patch_size": 16,
                               "out_hidden_size": 64})
    with pytest.raises(InputError) as e:
        hf.analyze_config(cfg, seq_len=32)
    assert "needs pixel_attention_mask, not given" in str(e.value)


def test_hunyuan_vl_names_the_null_size_and_the_pixel_layout():
    cfg = _tiny("hunyuan_vl", text_config={"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128,
                                           "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 1000},
                vision_config={"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64,
                               "num_attention_heads": 2, "num_key_value_heads": 2, "out_hidden_size": 64,
                               "text_hidden_size": 64})
    # transformers' own default leaves text_config.head_dim null: its attention computes None ** -0.5
    with pytest.raises(InputError, match=r"leaves text_config\.head_dim null: set it \(transformers .* cannot "
                                         r"build this hunyuan_vl config"):
        hf.analyze_config(cfg, seq_len=32)
    cfg["text_config"]["head_dim"] = 16
    # its vision tower reads flattened patches (num_patches, C x P x P), not the default [B, C, H, W] image
    with pytest.raises(InputError, match=r"default pixel_values=float32\[1,3,\d+,\d+\] is not the layout "
                                         r"HunYuanVLModel's code reads: `num_patches, _ = pixel_values.shape`.*"
                                         r"image_grid_thw"):
        hf.analyze_config(cfg, seq_len=32)


def _xclip(vision: bool) -> dict:
    cfg = _tiny("xclip", text_config={"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64,
                                      "num_attention_heads": 2, "vocab_size": 1000},
                vision_config={"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64,
                               "num_attention_heads": 2, "image_size": 32, "patch_size": 16,
                               "mit_hidden_size": 32, "mit_intermediate_size": 64, "mit_num_hidden_layers": 1,
                               "mit_num_attention_heads": 2})
    cfg["projection_dim"] = 32
    cfg["prompt_layers"] = 1
    if vision:
        cfg = dict(cfg["vision_config"], model_type="xclip_vision_model")
    return cfg


def test_xclip_video_text_model_gets_videos_of_num_frames():
    g = hf.analyze_config(_xclip(vision=False), seq_len=16)
    # X-CLIP's default vision_config.num_frames is 8: pixel_values [batch 1, 8 frames, 3, 32, 32]
    assert {i.name: tuple(i.shape) for i in g.inputs}["pixel_values"] == (1, 8, 3, 32, 32)


def test_xclip_vision_model_batch_is_whole_videos():
    cfg = _xclip(vision=True)
    with pytest.raises(InputError, match=r"micro-batch of 4 is not a whole number of videos.*--batch-size 8"):
        hf.analyze_config(cfg, micro_batch=4)
    g = hf.analyze_config(cfg)  # default: one video of 8 frames, not a batch of 1 (failed: "shape '[0, 8, 32]'")
    assert g.micro_batch == 8
    assert "one video of num_frames = 8" in " ".join(g.assumptions)


def test_led_question_answering_is_costed_without_global_attention():
    """LED's heads never set global attention themselves (only Longformer's QA / multiple-choice / classification
    heads do, from the data or the CLS token): LEDForQuestionAnswering is costed with none (review s53: it was
    refused with Longformer's reason and sent to LongformerForMaskedLM, which an LED config cannot build). By hand:
    the encoder's layer-0 query projection runs 1000 tokens padded to 1024 (window 64): 2 x 1024 x 128 x 128 +
    1024 x 128 bias = 33,685,504 forward FLOPs."""
    cfg = {"model_type": "led", "architectures": ["LEDForQuestionAnswering"], "d_model": 128, "encoder_layers": 2,
           "decoder_layers": 2, "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 256,
           "decoder_ffn_dim": 256, "attention_window": 64, "vocab_size": 1000, "max_encoder_position_embeddings": 1024,
           "max_decoder_position_embeddings": 1024}
    g = hf.analyze_config(cfg, seq_len=1000)
    assert _fwd_flops(g, "led.encoder.layers.0.self_attn.longformer_self_attn.query") == 33_685_504
    notes = " ".join(g.assumptions)
    assert "global attention: none (LEDForQuestionAnswering" in notes
    assert "the 1,000 tokens run as 1,024 (24 padding tokens in the encoder" in notes
    assert "costs the same step" not in notes  # the heads and the decoder run on the unpadded length
