"""Architectures for the oracle-agreement tests: own modules (examples/torch_models.py) and small transformers
configs (realistic widths, few layers: tracing on meta costs the same whatever the width)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))

import torch_models as E  # noqa: E402

HF_CONFIGS = {
    "llama": dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=512, intermediate_size=1376,
                  num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4, vocab_size=1000),
    "mistral": dict(model_type="mistral", architectures=["MistralForCausalLM"], hidden_size=512,
                    intermediate_size=1376, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
                    vocab_size=1000),
    "gpt2": dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=512, n_layer=2, n_head=8,
                 vocab_size=1000, bos_token_id=0, eos_token_id=0),
    "bert": dict(model_type="bert", architectures=["BertForMaskedLM"], hidden_size=512, intermediate_size=2048,
                 num_hidden_layers=2, num_attention_heads=8, vocab_size=1000),
    "t5": dict(model_type="t5", architectures=["T5ForConditionalGeneration"], d_model=512, d_ff=2048, num_layers=2,
               num_heads=8, d_kv=64, vocab_size=1000),
    "vit": dict(model_type="vit", architectures=["ViTForImageClassification"], hidden_size=512,
                intermediate_size=2048, num_hidden_layers=2, num_attention_heads=8, image_size=224, patch_size=16,
                num_labels=1000),
    "convnext": dict(model_type="convnext", architectures=["ConvNextForImageClassification"],
                     hidden_sizes=[96, 192, 384, 768], depths=[1, 1, 1, 1], image_size=224, num_labels=1000),
    "resnet_hf": dict(model_type="resnet", architectures=["ResNetForImageClassification"],
                      hidden_sizes=[64, 128, 256, 512], depths=[1, 1, 1, 1], num_labels=1000),
}
OWN = ["mlp", "resnet_small", "lstm_classifier", "gru_tagger", "mlp_mixer", "tiny_gpt", "unet_tiny"]
ALL = OWN + list(HF_CONFIGS)


def build(name: str):
    """(module on meta, args, kwargs, hf) for an architecture name."""
    from wattlint.frontends import hf
    from wattlint.frontends import torch as wt

    if name in HF_CONFIGS:
        cfg = hf.load_config(dict(HF_CONFIGS[name]))
        model = hf.build_model(cfg)
        specs = hf.default_inputs(model, cfg, 2, 128)
        return model, (), {k: wt.spec_tensor(s) for k, s in specs.items()}, True
    import torch

    with torch.device("meta"):
        model, ex = getattr(E, name)()
    return model, tuple(ex), {}, False
