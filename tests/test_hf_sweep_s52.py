"""Review s52's sweep of transformers model types through the HF-config frontend: a base model's MFU counted its
embedding tables as 6 N though, with no head, they are only looked up (GPT-2 base: MFU 49 % beside HFU 33 %);
a detection encoder-decoder (D-FINE) was handed decoder_input_ids and the error blamed the user; an image-first
model with a language model (BLIP-2) got no input_ids; sub-model configs AutoModel does not map (Aimv2TextConfig)
were refused with transformers' message; a mixture-of-experts config with a null top-k failed inside the trace."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from wattlint.frontends import hf  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GPT2 = ROOT / "examples" / "gpt2-small" / "config.json"


def _mfu_flops(run_cli, path):
    code, out, err = run_cli(str(path), "--gpu", "a100", "--steps", "10", "--seq-len", "1024", "--format", "json")
    assert code == 0, err
    return json.loads(out)["utilization"]["model_flops_per_token"]


def test_a_base_models_mfu_leaves_out_its_embedding_tables(run_cli, tmp_path):
    cfg = json.loads(GPT2.read_text())
    cfg.pop("architectures")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    # by hand, GPT-2 small: 124,439,808 parameters; wte 50,257 x 768 = 38,597,376 and wpe 1,024 x 768 = 786,432
    # are only looked up; attention 12 L h s = 12 x 12 x 768 x 1,024 = 113,246,208 FLOPs per token
    attn = 12 * 12 * 768 * 1024
    assert _mfu_flops(run_cli, tmp_path / "config.json") == pytest.approx(
        6 * (124_439_808 - 38_597_376 - 786_432) + attn, rel=1e-5)
    # the same base model named by `architectures` (as encoder checkpoints ship it): the same count (review s52)
    cfg["architectures"] = ["GPT2Model"]
    (tmp_path / "named.json").write_text(json.dumps(cfg))
    (tmp_path / "named").mkdir()
    (tmp_path / "named.json").rename(tmp_path / "named" / "config.json")
    assert _mfu_flops(run_cli, tmp_path / "named" / "config.json") == pytest.approx(
        6 * (124_439_808 - 38_597_376 - 786_432) + attn, rel=1e-5)
    # with its LM head (tied to wte, which then feeds a matmul) the convention counts every parameter
    assert _mfu_flops(run_cli, GPT2) == pytest.approx(6 * 124_439_808 + attn, rel=1e-5)


def test_lookup_tables_are_trained_tables_no_other_module_holds():
    # review s52: a table tied to a projection (FSMT's output_projection) runs a matmul; a table of a tower the
    # step never ran (Mllama's vision tile embedding, text-only) is an idle parameter, not also a lookup
    import torch.nn as nn

    from wattlint.frontends.torch import _embedding_lookup_params

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(100, 8)       # 800, trained, lookup only
            self.tied = nn.Embedding(50, 8)       # 400, tied to proj below
            self.proj = nn.Linear(8, 50, bias=False)
            self.proj.weight = self.tied.weight
            self.idle = nn.Embedding(30, 8)       # 240, no gradient reached it

    m = M()
    reached = {id(m.tok.weight), id(m.tied.weight)}
    assert _embedding_lookup_params(m, reached) == 800


class _Forward:
    def __init__(self, main, params):
        self.main_input_name = main
        exec(f"def forward(self, {', '.join(params)}): pass", {}, ns := {})
        self.forward = ns["forward"].__get__(self)


def test_detection_encoder_decoder_gets_no_decoder_input_ids():
    model = _Forward("pixel_values", ["pixel_values", "pixel_mask", "labels"])  # DFineModel's kind of forward
    config = SimpleNamespace(is_encoder_decoder=True, image_size=640, num_channels=3)
    specs = hf.default_inputs(model, config, 2, 128)
    assert list(specs) == ["pixel_values"] and specs["pixel_values"].shape == (2, 3, 640, 640)
    t5 = _Forward("input_ids", ["input_ids", "attention_mask", "decoder_input_ids"])
    assert list(hf.default_inputs(t5, SimpleNamespace(is_encoder_decoder=True), 2, 128)) == \
        ["input_ids", "decoder_input_ids"]


def test_an_image_first_model_with_a_language_model_gets_text_too():
    model = _Forward("pixel_values", ["pixel_values", "input_ids", "attention_mask"])  # Blip2Model's kind
    config = SimpleNamespace(vision_config=SimpleNamespace(image_size=224), text_config=SimpleNamespace(),
                             image_size=224)
    specs = hf.default_inputs(model, config, 2, 64)
    assert specs["input_ids"].shape == (2, 64) and specs["pixel_values"].shape == (2, 3, 224, 224)


def test_a_sub_model_config_builds_the_class_named_after_it():
    cfg_cls = getattr(transformers, "Aimv2TextConfig", None)
    if cfg_cls is None:
        pytest.skip("this transformers has no Aimv2TextConfig")
    assert hf._auto_model_class(cfg_cls(), transformers) is transformers.Aimv2TextModel
    assert hf._auto_model_class(transformers.GPT2Config(), transformers) is transformers.AutoModel


def test_a_null_top_k_is_named(run_cli, tmp_path):
    cfg = transformers.CONFIG_MAPPING["deepseek_v2"](num_hidden_layers=2, num_experts_per_tok=None)
    assert cfg.n_routed_experts and cfg.num_experts_per_tok is None
    cfg.to_json_file(tmp_path / "config.json")
    code, out, err = run_cli(str(tmp_path / "config.json"), "--gpu", "a100", "--steps", "10")
    assert code == 2 and "num_experts_per_tok is null" in err and len(err.strip().splitlines()) == 1, err


def test_a_video_model_gets_frames():
    # review s52 (sweep e-z): VideoMAE / TimeSformer / ViViT take pixel_values [B, T, C, H, W]; VideoMAE's default
    # num_frames is 16 at 224 x 224 x 3
    model = _Forward("pixel_values", ["pixel_values", "bool_masked_pos"])
    config = SimpleNamespace(model_type="videomae", num_frames=16, image_size=224, num_channels=3)
    assert hf.default_inputs(model, config, 2, 128)["pixel_values"].shape == (2, 16, 3, 224, 224)
    # X-CLIP's vision tower has num_frames 8 but takes [B x T, C, H, W] (review s52): 4-D as before
    xclip = SimpleNamespace(model_type="xclip_vision_model", num_frames=8, image_size=224, num_channels=3)
    assert hf.default_inputs(model, xclip, 2, 128)["pixel_values"].shape == (2, 3, 224, 224)


def test_batchnorm_at_one_sample_names_the_fix(run_cli, tmp_path):
    # GroupViT at the default micro-batch 1: torch's "Expected more than 1 value per channel when training"
    (tmp_path / "m.py").write_text(
        "import torch\nimport torch.nn as nn\n\n\ndef build():\n"
        "    return nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8)), (torch.zeros(1, 8),)\n")
    code, out, err = run_cli(str(tmp_path / "m.py") + ":build", "--gpu", "a100", "--steps", "10")
    assert code == 2 and "--batch-size 2" in err and len(err.strip().splitlines()) == 1, err
