"""Fine-tuning findings of review s54 (walk F15). A bf16-held base under fp32 LoRA adapters run without --precision
read MFU 488 % against the fp32 peak and was said to run 'fp32 weights and activations'; a frozen backbone's
parameters were counted 4 FLOPs per token in MFU although backward never runs through them; a config.json with a
bitsandbytes 4-bit quantization_config was costed as a full fp32 fine-tune; the frozen casts counted a checkpointed
block's recompute as backward; a model checkpointing itself got no assumption line. LoRA is written by hand (a frozen
nn.Linear + trainable A / B, as peft builds it: the adapters fp32, x cast to their dtype, the sum cast back)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import wattlint  # noqa: E402
from wattlint.frontends.torch import trace  # noqa: E402
from wattlint.plan import PRECISION_DEFAULT_TEXT  # noqa: E402

V, D, R, S = 1000, 64, 4, 16  # vocabulary, hidden size, LoRA rank, tokens per sample


class LoraLinear(nn.Module):
    def __init__(self, base_dtype=torch.float32):
        super().__init__()
        self.base = nn.Linear(D, D, bias=False).to(base_dtype)
        self.base.weight.requires_grad_(False)
        self.A = nn.Linear(D, R, bias=False)
        self.B = nn.Linear(R, D, bias=False)

    def forward(self, x):
        return self.base(x) + self.B(self.A(x.to(self.A.weight.dtype))).to(x.dtype)


class LoraLM(nn.Module):
    """Frozen embedding -> 2 LoRA layers (frozen base) with ReLU -> frozen LM head."""

    def __init__(self, base_dtype=torch.float32, checkpoint_inside=False):
        super().__init__()
        self.emb = nn.Embedding(V, D).to(base_dtype)
        self.layers = nn.ModuleList(LoraLinear(base_dtype) for _ in range(2))
        self.head = nn.Linear(D, V, bias=False).to(base_dtype)
        for p in (self.emb.weight, self.head.weight):
            p.requires_grad_(False)
        self.checkpoint_inside = checkpoint_inside

    def forward(self, input_ids):
        x = self.emb(input_ids)
        for layer in self.layers:
            if self.checkpoint_inside:  # as model.gradient_checkpointing_enable() makes a transformers model do
                x = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
            x = torch.relu(x)
        return self.head(x)


class Probe(nn.Module):
    """A linear probe: frozen embedding and 2 frozen Linear layers, a trainable head."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.body = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Linear(D, D))
        for p in list(self.emb.parameters()) + list(self.body.parameters()):
            p.requires_grad_(False)
        self.head = nn.Linear(D, V)

    def forward(self, input_ids):
        return self.head(self.body(self.emb(input_ids)))


def _est(model, **kw):
    return wattlint.estimate(model, gpu="a100-sxm4-80gb", steps=1, batch_size=1,
                             inputs=[f"input_ids=int64[1,{S}]"], **kw)


def test_lora_frozen_below_first_adapter_count_forward_only():
    # N = emb 64,000 + 2 x (base 4,096 + A 256 + B 256) + head 64,000 = 137,216; trainable 1,024, frozen 136,192.
    # Backward runs through layers.1.base (its input depends on layer 0's adapters) and the head: 4 FLOPs per token
    # each, 68,096 parameters; not through the embedding or layers.0.base (nothing trainable below): 2 FLOPs each,
    # 64,000 + 4,096 = 68,096. Per token: 6 x 1,024 + 4 x 68,096 + 2 x 68,096 = 6,144 + 272,384 + 136,192 = 414,720
    # (the old 6 N - 2 N_frozen gave 823,296 - 272,384 = 550,912). No attention.
    est = _est(LoraLM(), precision="bf16")
    assert est.graph.extra["frozen_forward_only_params"] == 68_096
    assert est.utilization.model_flops_per_token == pytest.approx(414_720, rel=1e-9)
    assert "68,096 of them whose modules backward never runs" in est.utilization.convention


def test_linear_probe_backbone_counts_forward_only():
    # N = emb 64,000 + 2 x (4,096 + 64) + head 64 x 1,000 + 1,000 = 64,000 + 8,320 + 65,000 = 137,320; the trainable
    # head is 6 x 65,000 = 390,000; the frozen 72,320 get no backward at all (nothing trainable below them): 2 x
    # 72,320 = 144,640. Per token 534,640 (the old 6 N - 2 N_frozen: 823,920 - 144,640 = 679,280).
    est = _est(Probe(), precision="bf16")
    assert est.utilization.model_flops_per_token == pytest.approx(534_640, rel=1e-9)


def test_bf16_base_without_precision_uses_the_peak_its_matmuls_run_at():
    # No --precision: no autocast; the bf16 base and head run their matmuls in bf16, the fp32 adapters in fp32.
    # Traced matmul FLOPs per micro-batch of S tokens (forward + backward, by hand):
    #   bf16: forward 2 bases 2 x 2 S D^2 + head 2 S D V; backward: layers.1.base's input gradient 2 S D^2 and the
    #         head's input gradient 2 S D V (frozen: no weight gradients; layers.0.base none) = 6 S D^2 + 4 S D V
    #   fp32: forward 2 x (A 2 S D R + B 2 S R D) = 8 S D R; backward layers.1: A and B weight + input gradients
    #         4 x 2 S D R; layers.0: B both, A's weight gradient only (its input is the frozen embedding) 3 x 2 S D R
    #         = 22 S D R in all
    bf16 = 6 * S * D * D + 4 * S * D * V  # 4,489,216
    fp32 = 22 * S * D * R  # 90,112
    # A100 SXM dense peaks: bf16 312, fp32 19.5 TFLOP/s; the FLOP-weighted peak F / sum(F_dtype / peak_dtype)
    peak = (bf16 + fp32) / (bf16 / 312e12 + fp32 / 19.5e12)  # ~240.9 TFLOP/s (was 19.5: MFU 16 x too high)
    est = _est(LoraLM(torch.bfloat16))
    util = est.utilization
    assert util.peak_tflops * 1e12 == pytest.approx(peak, rel=1e-9)
    assert 0 < util.mfu <= 1 and 0 < util.hfu <= 1
    note = next(a for a in est.assumptions if a.startswith("MFU "))
    assert "FLOP-weighted" in note and f"{100 * fp32 / (bf16 + fp32):.1f} % fp32 at 19.5" in note
    # the precision lines: neither says fp32 weights and activations for this model
    assert not any("fp32 weights and activations" in a for a in est.assumptions)
    assert PRECISION_DEFAULT_TEXT not in est.assumptions
    line = next(a for a in est.graph.assumptions if a.startswith("precision: PyTorch default"))
    # bf16 held: emb 64,000 + bases 2 x 4,096 + head 64,000 = 136,192 frozen; fp32: 1,024 trainable adapters
    assert "bfloat16 136,192 frozen; float32 1,024 trainable" in line


def test_fp32_model_without_precision_keeps_the_fp32_line_and_peak():
    est = _est(LoraLM())
    assert est.utilization.peak_tflops == pytest.approx(19.5)
    assert PRECISION_DEFAULT_TEXT in est.assumptions


def test_frozen_casts_leave_out_the_recompute():
    # bf16 autocast, fp32 frozen bases under activation checkpointing of layers.0 / layers.1: autocast keeps the cast
    # of a frozen weight only where backward runs through its module: layers.1.base (4,096) and the head (64,000) =
    # 68,096. layers.0.base is rerun by the recompute but backward never needs its input gradient (was 72,192).
    g = trace(LoraLM(), (torch.zeros(1, S, dtype=torch.long),), precision="bf16", activation_checkpointing=True,
              seq_len=S)
    assert any(r.recompute and r.module == "layers.0.base" for r in g.records)
    assert g.extra["frozen_cast_params"] == 68_096


def test_checkpointing_inside_the_model_is_stated():
    g = trace(LoraLM(checkpoint_inside=True), (torch.zeros(1, S, dtype=torch.long),), seq_len=S)
    line = next(a for a in g.assumptions if a.startswith("activation checkpointing found in the model"))
    assert "layers.0, layers.1" in line
    # the rerun forward of both layers (fp32), as far as the last tensor backward saved: the non-reentrant
    # checkpoint stops its recompute once every saved tensor is back (torch's early stop, on by default). Per layer
    # the base's mm (2 S D^2 = 131,072, first in forward order) and A's (2 S D R = 8,192), whose output B saves; not
    # B's mm or the final add, which save nothing: 2 x 139,264 = 278,528 (the ReLUs are outside the layers)
    rerun = sum(r.flops for r in g.records if r.recompute)
    assert rerun == 2 * (2 * S * D * D + 2 * S * D * R)
    assert f"{rerun / 1e9:,.3g} GFLOP per micro-batch" in line
    # without checkpointing inside: no such line
    g2 = trace(LoraLM(), (torch.zeros(1, S, dtype=torch.long),), seq_len=S)
    assert not any(a.startswith("activation checkpointing") for a in g2.assumptions)


TINY_LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
              "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
              "vocab_size": 256, "max_position_embeddings": 128}


@pytest.mark.parametrize("qc, said", [
    ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, "bitsandbytes 4-bit nf4"),
    ({"load_in_8bit": True}, "bitsandbytes 8-bit (LLM.int8())"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128}, "gptq 4-bit"),
    ({"quant_method": "awq", "bits": 4, "version": "gemm"}, "awq 4-bit"),
])
def test_integer_quantized_checkpoint_is_refused(run_cli, tmp_path, qc, said):
    pytest.importorskip("transformers")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({**TINY_LLAMA, "quantization_config": qc}))
    code, out, err = run_cli(str(cfg), "--gpu", "rtx4090", "--steps", "10", "--seq-len", "32")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"quantization_config ({said})" in lines[0]
    assert "remove the quantization_config block" in lines[0] and "LoRA" in lines[0]


def test_fp8_checkpoint_is_costed_with_a_note(run_cli, tmp_path):
    pytest.importorskip("transformers")
    # DeepSeek-V3's published config.json: block-wise FP8 weights
    qc = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]}
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({**TINY_LLAMA, "quantization_config": qc}))
    code, out, err = run_cli(str(cfg), "--gpu", "h100", "--steps", "10", "--seq-len", "32", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert any("quant_method fp8" in a and "--precision fp8" in a for a in doc["assumptions"])
