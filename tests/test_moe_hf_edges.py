"""Edges of the Hugging Face / MoE frontends.

1. A hand-written MoE whose experts are 3-D stacked parameters under neutral names (no ``num_experts`` attribute, no
   class named *Experts, no ModuleList) is refused as an unsupported MoE layout (wattlint.frontends.torch_moe.
   _stacked_experts). Before, it traced as written: on meta tensors its per-expert ``torch.where(idx == e)`` answers
   "every element", so each of the 4 experts ran on all 32 tokens (128 rows, where top-1 routing gives 32: experts
   times too many). Models with stacked 3-D parameters that are no experts (per-head weights, weight norm, a soft
   mixture that runs every expert on every token) are not refused.
2. Llama4ForConditionalGeneration (vision tower + Llama 4 text model) builds, and its text model's MoE blocks are
   traced at the routed cost.
3. Grounding DINO reads at most the config's ``max_text_len`` text tokens: a longer --seq-len was a raw "tracing the
   model failed: RuntimeError: Attempting to broadcast ..."; now one InputError line, and the default sequence length
   is max_text_len.

Expected values are counted by hand in the comments."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

import torch.nn as nn  # noqa: E402

from wattlint.frontends import torch as wt  # noqa: E402
from wattlint.frontends.torch_moe import MoeRouting  # noqa: E402
from wattlint.types import InputError, OpKind, Phase  # noqa: E402

H, FF, E, T = 16, 32, 4, 32  # model width, expert FFN width, experts, tokens of the example input


def _fwd_matmul_flops(g):
    return sum(r.flops for r in g.records if r.kind is OpKind.MATMUL and r.phase is Phase.FORWARD)


# ---- 1. expert-stacked 3-D weights under neutral names -------------------------------------------------------------

class StackedMoE(nn.Module):
    """top-1 MoE: a router Linear(H, E) named ``score`` and the experts' weights stacked in ``w_in`` [E, H, I] and
    ``w_out`` [E, I, H]; per-expert ``torch.where`` dispatch."""

    def __init__(self):
        super().__init__()
        self.score = nn.Linear(H, E, bias=False)
        self.w_in, self.w_out = nn.Parameter(torch.empty(E, H, FF)), nn.Parameter(torch.empty(E, FF, H))

    def forward(self, x):
        w, idx = self.score(x).softmax(-1).topk(1, dim=-1)
        out = torch.zeros_like(x)
        for e in range(E):
            tok, slot = torch.where(idx == e)
            out.index_add_(0, tok, torch.relu(x[tok] @ self.w_in[e]) @ self.w_out[e] * w[tok, slot, None])
        return out


class Bank(nn.Module):
    """the stacked expert weights alone in a module of a neutral class name; the router is its parent's"""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Parameter(torch.empty(E, H, FF)), nn.Parameter(torch.empty(E, FF, H))


class RouterOutsideMoE(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(H, E)
        self.bank = Bank()

    def forward(self, x):
        idx = self.proj(x).argmax(-1)
        out = torch.zeros_like(x)
        for e in range(E):
            tok = torch.where(idx == e)[0]
            out.index_add_(0, tok, torch.relu(x[tok] @ self.bank.a[e]) @ self.bank.b[e])
        return out


class Net(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.inp, self.block, self.head = nn.Linear(H, H), block, nn.Linear(H, 10)

    def forward(self, x):
        return self.head(self.block(self.inp(x)))


@pytest.mark.parametrize("make,where,why", [
    (StackedMoE, "StackedMoE at 'block'",
     "expert weights stacked in 3-D parameters 'w_in' [4, 16, 32], 'w_out' [4, 32, 16] beside the router 'score' "
     "(Linear 16 -> 4, one output per expert)"),
    (RouterOutsideMoE, "Bank at 'block.bank'",
     "expert weights stacked in 3-D parameters 'a' [4, 16, 32], 'b' [4, 32, 16] beside the router 'proj' "
     "(Linear 16 -> 4, one output per expert)"),
])
def test_stacked_expert_weights_under_neutral_names_are_refused(make, where, why):
    with torch.device("meta"):
        model = Net(make())
    with pytest.raises(InputError, match="unsupported mixture-of-experts layout") as e:
        wt.trace(model, (torch.empty(T, H),))
    msg = str(e.value)
    assert where in msg and why in msg and "\n" not in msg
    assert all("forward" not in m.__dict__ for m in model.modules())  # refused before anything was swapped


def test_stacked_moe_exits_2_naming_the_parameter(run_cli, tmp_path):
    src = tmp_path / "stacked_moe.py"
    src.write_text("import torch, torch.nn as nn\n"
                   "class MoE(nn.Module):\n"
                   "    def __init__(self, d=8, f=16, e=4):\n"
                   "        super().__init__()\n"
                   "        self.logits = nn.Linear(d, e)\n"
                   "        self.up = nn.Parameter(torch.empty(e, d, f))\n"
                   "        self.down = nn.Parameter(torch.empty(e, f, d))\n"
                   "    def forward(self, x):\n"
                   "        w, idx = self.logits(x).softmax(-1).topk(2, dim=-1)\n"
                   "        out = torch.zeros_like(x)\n"
                   "        for i in range(self.up.shape[0]):\n"
                   "            tok, slot = torch.where(idx == i)\n"
                   "            y = torch.relu(x[tok] @ self.up[i]) @ self.down[i]\n"
                   "            out.index_add_(0, tok, y * w[tok, slot, None])\n"
                   "        return out\n"
                   "def build():\n"
                   "    return MoE(), (torch.empty(16, 8),)\n")
    code, out, err = run_cli("analyze", f"{src}:build")
    assert code == 2, (code, out, err)
    assert err.count("\n") == 1 and "internal error" not in err
    assert "MoE at '<root>' (expert weights stacked in 3-D parameters 'up' [4, 8, 16], 'down' [4, 16, 8]" in err


class PerHead(nn.Module):
    """XLNet-style per-head projections stacked [H, heads, head_dim] beside a feed-forward whose Linear has H outputs
    (as many as the stacked weights' leading dim): no per-token selection, no experts."""

    def __init__(self):
        super().__init__()
        self.q, self.k = nn.Parameter(torch.empty(H, 4, 4)), nn.Parameter(torch.empty(H, 4, 4))
        self.out = nn.Linear(H, H)

    def forward(self, x):
        q, k = torch.einsum("th,hnd->tnd", x, self.q), torch.einsum("th,hnd->tnd", x, self.k)
        att = torch.einsum("snd,tnd->nst", q, k).softmax(-1)
        return self.out(torch.einsum("nst,tnd->snd", att, k).reshape(x.shape[0], H))


class SoftStacked(nn.Module):
    """a soft mixture over stacked weights: a Linear(H, E) and [E, H, I] / [E, I, H] weights, every expert on every
    token weighted by the softmax (a meta trace costs it right)."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Linear(H, E, bias=False)
        self.w_in, self.w_out = nn.Parameter(torch.empty(E, H, FF)), nn.Parameter(torch.empty(E, FF, H))

    def forward(self, x):
        g = self.mix(x).softmax(-1)  # [T, E]
        y = torch.einsum("eti,eih->eth", torch.relu(torch.einsum("th,ehi->eti", x, self.w_in)), self.w_out)
        return (g.t()[:, :, None] * y).sum(0)


class LayerScaled(nn.Module):
    """two layer scales [H, 1, 1] (SwiftFormer's, over [channels, height, width] maps: 3-D with one leading dim) beside
    a Linear with H outputs and an argmax in the forward: a scale per channel is no matrix per expert."""

    def __init__(self):
        super().__init__()
        self.scale_1, self.scale_2 = nn.Parameter(torch.empty(H, 1, 1)), nn.Parameter(torch.empty(H, 1, 1))
        self.fc = nn.Linear(H, H)

    def forward(self, x):
        y = self.fc((x.t()[:, :, None] * self.scale_1)[:, :, 0].t())
        return (y.t()[:, :, None] * self.scale_2)[:, :, 0].t() + y.argmax(-1, keepdim=True).to(y.dtype)


# forward matmul FLOPs by hand, T = 32 tokens (2 per multiply-add, + 1 per output of a Linear's bias):
#   PerHead: q, k: 2 x 32 x 16 x 16 MACs = 16,384; scores: 4 heads x 32 x 32 x 4 = 16,384; att @ k: 16,384;
#            out 32 x 16 x 16 = 8,192 -> 57,344 MACs = 114,688 FLOPs + 32 x 16 bias outputs = 115,200
#   SoftStacked: mix 32 x 16 x 4 = 2,048; up 4 x 32 x 16 x 32 = 65,536; down 65,536 -> 133,120 MACs = 266,240
#   LayerScaled: fc 32 x 16 x 16 = 8,192 MACs = 16,384 FLOPs + 512 bias outputs = 16,896 (the scales: no matmul)
@pytest.mark.parametrize("make,flops", [(PerHead, 115_200), (SoftStacked, 266_240), (LayerScaled, 16_896)])
def test_stacked_weights_that_are_no_routed_experts_are_traced(make, flops):
    with torch.device("meta"):
        model = make()
    g = wt.trace(model, (torch.empty(T, H),))
    assert _fwd_matmul_flops(g) == flops
    assert "moe" not in g.extra


# transformers models whose modules hold >= 2 3-D parameters of one leading dim that are no experts (found by
# building every transformers model type on meta: per-head / per-block weights, weight norm); small configs
SMALL = {
    "xlnet": dict(model_type="xlnet", d_model=64, n_layer=1, n_head=4, d_inner=128, vocab_size=1000,
                  architectures=["XLNetLMHeadModel"]),
    "recurrent_gemma": dict(model_type="recurrent_gemma", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, lru_width=64, vocab_size=1000, block_types=["recurrent", "attention"],
                            architectures=["RecurrentGemmaForCausalLM"]),
    "encodec": dict(model_type="encodec", num_filters=8, hidden_size=16, codebook_size=64, upsampling_ratios=[2, 2],
                    architectures=["EncodecModel"]),
}


@pytest.mark.parametrize("name", list(SMALL))
def test_transformers_stacked_weights_are_not_experts(name):
    pytest.importorskip("transformers")
    from wattlint.frontends import hf

    model = hf.build_model(hf.load_config(dict(SMALL[name])))
    stacked = [m for m in model.modules()
               if sum(1 for p in m.parameters(recurse=False) if p.dim() == 3) >= 2]
    assert stacked  # the near miss is there
    routing = MoeRouting(model).install()
    assert routing.layers == []
    routing.restore()


# ---- 2. Llama 4 with its vision tower ------------------------------------------------------------------------------

# the tiny Llama 4 text model of tests/test_moe_llama4.py (hidden 256, expert FFN 512, 2 layers, every layer MoE with
# 4 routed experts, top-1, a shared expert) under a small vision tower (hidden 128, 112 x 112 images of 14 x 14
# patches: 64 patches; pixel shuffle 0.5: its intermediate 512 = 128 / 0.5^2, projector 256 -> 256)
L4_VL = dict(
    model_type="llama4", architectures=["Llama4ForConditionalGeneration"],
    text_config=dict(model_type="llama4_text", hidden_size=256, intermediate_size=512, intermediate_size_mlp=512,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                     num_local_experts=4, num_experts_per_tok=1, vocab_size=1000, max_position_embeddings=512,
                     interleave_moe_layer_step=1),
    vision_config=dict(model_type="llama4_vision_model", hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                       num_attention_heads=4, image_size=112, patch_size=14, vision_output_dim=256,
                       projector_input_dim=256, projector_output_dim=256, pixel_shuffle_ratio=0.5))


def test_llama4_with_vision_tower_routes_its_experts():
    pytest.importorskip("transformers")
    from wattlint.frontends.hf import analyze_config

    seq = 128
    g = analyze_config(dict(L4_VL), seq_len=seq, micro_batch=1)
    layers = g.extra["moe"]["layers"]
    assert [ly["module"] for ly in layers] == [f"language_model.model.layers.{i}.feed_forward.experts"
                                               for i in range(2)]
    # balanced top-1 routing of the 128 text tokens over 4 experts: 32 rows each
    assert all(ly["rows_per_expert"] == [32] * 4 and ly["top_k"] == 1 for ly in layers)
    # the routed experts' forward GEMM FLOPs per layer, by hand: 128 rows x (gate_up 256 x 1024 + down 512 x 256)
    # x 2 = 128 x 393,216 x 2 = 100,663,296 (all 4 experts on every token, as transformers' block runs them, would
    # be 4 x that)
    for i in range(2):
        mod = f"language_model.model.layers.{i}.feed_forward.experts"
        got = sum(r.flops for r in g.records if r.module == mod and r.kind is OpKind.MATMUL
                  and r.phase is Phase.FORWARD)
        assert got == 100_663_296
    # the vision tower ran beside the text model (pixel_values added to the default inputs)
    assert any(r.module.startswith("vision_model.") for r in g.records)


# ---- 3. Grounding DINO's max_text_len ------------------------------------------------------------------------------

# a small Grounding DINO: max_text_len 64 under a BERT text encoder of 512 positions
GDINO = {"model_type": "grounding-dino", "architectures": ["GroundingDinoForObjectDetection"], "d_model": 64,
         "encoder_layers": 1, "decoder_layers": 2, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128,
         "encoder_attention_heads": 4, "decoder_attention_heads": 4, "num_queries": 20, "max_text_len": 64,
         "num_feature_levels": 2,
         "backbone_config": {"model_type": "swin", "embed_dim": 32, "depths": [1, 1], "num_heads": [2, 4],
                             "image_size": 64, "out_indices": [1, 2], "window_size": 4},
         "text_config": {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                         "intermediate_size": 128, "vocab_size": 1000, "max_position_embeddings": 512}}


@pytest.fixture
def gdino(tmp_path):
    pytest.importorskip("transformers")
    p = tmp_path / "config.json"
    p.write_text(json.dumps(GDINO))
    return p


def test_grounding_dino_seq_len_past_max_text_len_is_an_input_error(run_cli, gdino):
    # 65 > max_text_len 64 (and under the text encoder's 512 positions, so the position check does not catch it)
    code, out, err = run_cli(gdino, "--gpu", "a100", "--steps", 10, "--seq-len", 65)
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and "tracing the model failed" not in err
    assert "--seq-len 65 exceeds the config's max_text_len 64" in err and "--seq-len 64 or less" in err


def test_grounding_dino_default_seq_len_is_max_text_len(run_cli, gdino):
    code, out, err = run_cli(gdino, "--gpu", "a100", "--steps", 10, "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    # wattlint's default 512 (= the BERT's 512 positions) capped at max_text_len 64
    assert d["plan"]["seq_len"] == 64
    assert any(a.startswith("sequence length: 64 text tokens (default: the config's max_text_len")
               for a in d["assumptions"])
