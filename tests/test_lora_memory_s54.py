"""LoRA / frozen-weight memory and trainable counts (fine-tuning walk, F14). A bf16-loaded base with fp32 adapters
under bf16 autocast was charged half-precision casts of the frozen bf16 weights that never exist (an 8B LoRA run
went from 'fits' to WL201 with --precision bf16); its gradients and optimizer state were sized by the model's mean
bytes per parameter instead of the adapters' fp32; under activation checkpointing the frozen casts were charged as
if held across the whole step; and no report said how many parameters train. LoRA is written by hand here (a
frozen nn.Linear + trainable A / B), as peft does it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import wattlint  # noqa: E402
from wattlint.report.json_out import to_dict  # noqa: E402
from wattlint.report.text import render_one  # noqa: E402

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "src/wattlint/schemas/estimate.schema.json").read_text())
D, R = 64, 4  # hidden size, LoRA rank


class LoraLinear(nn.Module):
    def __init__(self, base_dtype):
        super().__init__()
        self.base = nn.Linear(D, D, bias=False).to(base_dtype)
        self.base.weight.requires_grad_(False)
        self.A = nn.Linear(D, R, bias=False)  # the adapters stay fp32 (peft's autocast_adapter_dtype=True)
        self.B = nn.Linear(R, D, bias=False)

    def forward(self, x):
        return self.base(x) + self.B(self.A(x))


class Net(nn.Module):
    def __init__(self, layers, base_dtype=torch.float32):
        super().__init__()
        self.layers = nn.ModuleList(LoraLinear(base_dtype) for _ in range(layers))
        self.head = nn.Linear(D, D, bias=False).to(base_dtype)
        self.head.weight.requires_grad_(False)

    def forward(self, x):
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.head(x)


def _est(model, **kw):
    return wattlint.estimate(model, gpu="a100-sxm4-80gb", steps=1, batch_size=1, inputs=[f"x=float32[8,{D}]"], **kw)


def test_bf16_base_lora_casts_only_the_adapters():
    # 2 layers: trainable = 2 x (A: D*R + B: R*D) = 2 x 512 = 1,024 fp32 parameters; frozen bf16: 2 x D*D + head D*D
    # = 12,288. Under bf16 autocast only fp32 weights are copied: the adapters (autocast caches the casts of weights
    # requiring grad), 2 B each = 2,048 B; the bf16 base / head are read as they are (oracle: CPU autocast's saved
    # weight copies of a peft model on a bf16 base are the adapters' only). Gradients 4 B x 1,024 = 4,096;
    # AdamW state 2 x 4 B x 1,024 = 8,192 (the adapters' fp32, not the model's mean 28,672 / 13,312 = 2.15 B).
    b = to_dict(_est(Net(2, torch.bfloat16), precision="bf16"))["memory"]["breakdown"]
    assert b["weights"] == 2 * 12_288 + 4 * 1_024
    assert (b["weight_casts"], b["gradients"], b["optimizer_state"]) == (2_048, 4_096, 8_192)


def test_bf16_base_lora_gradients_without_autocast():
    # no --precision: the adapters' gradients are fp32, 4 B x 1,024 = 4,096 B (the mean bytes gave 2,205)
    b = to_dict(_est(Net(2, torch.bfloat16)))["memory"]["breakdown"]
    assert (b["weight_casts"], b["gradients"], b["optimizer_state"]) == (0, 4_096, 8_192)


def test_fp32_base_lora_casts_unchanged():
    # fp32 base, 4 layers, no checkpointing: the adapters' casts (4 x 512 = 2,048 params) + the frozen weights backward
    # runs through for the input gradient (layers 1-3 and the head: 4 x D*D = 16,384; layer 0's input needs no
    # gradient): 2 B x 18,432 = 36,864
    b = to_dict(_est(Net(4), precision="bf16"))["memory"]["breakdown"]
    assert b["weight_casts"] == 36_864


def test_checkpointing_holds_the_outside_casts_and_one_block():
    # fp32 base, 4 checkpointed blocks of D*D + 2*D*R = 4,608 parameters, the frozen head (D*D = 4,096) outside them.
    # The adapters' casts stay in autocast's cache through the forward: 2,048 params. A frozen weight's cast lives
    # only in what autograd saves; the checkpointed blocks save none, so at most the head's cast (4,096) + one
    # block's (4,608) are alive at once: 2 B x (2,048 + 4,096 + 4,608) = 21,504 B, where every frozen cast held
    # at once was charged before (36,864 B and more)
    est = _est(Net(4), precision="bf16", activation_checkpointing=True)
    d = to_dict(est)
    assert d["memory"]["breakdown"]["weight_casts"] == 21_504
    assert any("checkpointed blocks save none" in a for a in est.assumptions)


def test_reports_state_the_trainable_count():
    # 2 layers: params 2 x (D*D + 2*D*R) + D*D = 13,312, trainable 1,024: 1,024 / 13,312 = 7.69 %
    est = _est(Net(2))
    d = to_dict(est)
    assert d["model"]["trainable_params"] == 1_024 and d["model"]["params"] == 13_312
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(json.dumps(d)), SCHEMA, cls=jsonschema.Draft202012Validator)
    head = render_one(est, color=False)
    assert "13.3 k parameters (1,024 trainable, 7.69 %)" in head


def test_fully_trainable_header_says_nothing_more():
    model = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Linear(D, D))  # 2 x (D*D + D) = 8,320, all trainable
    est = _est(model)
    assert to_dict(est)["model"]["trainable_params"] == 8_320
    assert "trainable" not in render_one(est, color=False).splitlines()[1]
