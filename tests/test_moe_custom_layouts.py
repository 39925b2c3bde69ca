"""Hand-written mixture-of-experts modules (plain torch: a router + a ModuleList/ModuleDict of identical FFNs whose
names do not say "expert") are refused as an unsupported MoE layout, and ordinary models with a ModuleList of
identical layers are not (wattlint.frontends.torch_moe._holds_experts).

Before, these traced without an error or an MoE assumption line, at a multiple of the routed expert cost: on meta
tensors ``torch.where(idx == i)`` answers "every element", so each of the 8 experts ran on all 32 tokens x top-2 = 64
slots (512 rows instead of the 64 routed ones: 8 = experts times too many); a boolean-mask dispatch
``x[(idx == i).any(-1)]`` ran each expert on all 32 tokens (256 rows: experts / top-k = 4 times too many).
Expected values below are counted by hand."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.nn as nn  # noqa: E402

from wattlint.frontends import torch as wt  # noqa: E402
from wattlint.frontends.torch_moe import MoeRouting  # noqa: E402
from wattlint.types import InputError, OpKind, Phase  # noqa: E402

D, H, E, TOKENS = 16, 32, 8, 32  # model width, FFN width, experts, tokens of the example input


class FFN(nn.Module):
    def __init__(self, d=D, h=H):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, h), nn.Linear(h, d)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class HandMoE(nn.Module):
    """top-k MoE: a router Linear(D, E) named ``router`` and E FFNs in a ModuleList (or ModuleDict) named
    ``experts``; per-expert ``torch.where`` dispatch (the pattern of most hand-written MoE code)."""

    def __init__(self, router="gate", experts="ffns", k=2, as_dict=False, router_module=None):
        super().__init__()
        self.k, self._router, self._experts = k, router, experts
        setattr(self, router, router_module if router_module is not None else nn.Linear(D, E, bias=False))
        ffns = [FFN() for _ in range(E)]
        setattr(self, experts, nn.ModuleDict({f"e{i}": f for i, f in enumerate(ffns)}) if as_dict else
                nn.ModuleList(ffns))

    def logits(self, x):
        r = getattr(self, self._router)
        return x @ r if isinstance(r, torch.Tensor) else r(x)

    def forward(self, x):
        w, idx = self.logits(x).softmax(-1).topk(self.k, dim=-1)
        ex = getattr(self, self._experts)
        out = torch.zeros_like(x)
        for i, f in enumerate(ex.values() if isinstance(ex, nn.ModuleDict) else ex):
            tok, slot = torch.where(idx == i)
            out.index_add_(0, tok, f(x[tok]) * w[tok, slot, None])
        return out


class ParamRouterMoE(HandMoE):
    """the router a raw nn.Parameter [D, E] named ``w_gate`` (Shazeer et al.'s noisy top-k gating code)"""

    def __init__(self):
        super().__init__(router="unused_gate", experts="mlps")
        del self.unused_gate
        self._router = "w_gate"
        self.w_gate = nn.Parameter(torch.zeros(D, E))


class Net(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.inp, self.block, self.head = nn.Linear(D, D), block, nn.Linear(D, 10)

    def forward(self, x):
        return self.head(self.block(self.inp(x)))


# (block, module's class in the message, where the experts are, where the router is), 8 experts each
HAND_MOES = {
    "gate+ffns": (lambda: HandMoE("gate", "ffns"), "HandMoE", "'ffns'", "router 'gate' (Linear 16 -> 8"),
    "router+mlps": (lambda: HandMoE("router", "mlps"), "HandMoE", "'mlps'", "router 'router' (Linear 16 -> 8"),
    "gating+fc_list": (lambda: HandMoE("gating", "fc_list"), "HandMoE", "'fc_list'",
                       "router 'gating' (Linear 16 -> 8"),
    "w_gate+ffns": (lambda: HandMoE("w_gate", "ffns"), "HandMoE", "'ffns'", "router 'w_gate' (Linear 16 -> 8"),
    "switch top-1": (lambda: HandMoE("switch", "ffns", k=1), "HandMoE", "'ffns'", "router 'switch' (Linear 16 -> 8"),
    "ModuleDict": (lambda: HandMoE("gate", "blocks", as_dict=True), "HandMoE", "'blocks'",
                   "router 'gate' (Linear 16 -> 8"),
    # the router an MLP: its last Linear has one output per expert
    "MLP router": (lambda: HandMoE("routing", "ffns", router_module=nn.Sequential(
        nn.Linear(D, 64), nn.Tanh(), nn.Linear(64, E))), "HandMoE", "'ffns'", "router 'routing.2' (Linear 64 -> 8"),
    "parameter router": (ParamRouterMoE, "ParamRouterMoE", "'mlps'", "router parameter 'w_gate' [16, 8]"),
}


@pytest.mark.parametrize("variant", list(HAND_MOES))
def test_hand_written_moe_is_an_unsupported_layout(variant):
    make, cls, where, router = HAND_MOES[variant]
    with torch.device("meta"):
        model = Net(make())
    with pytest.raises(InputError, match="unsupported mixture-of-experts layout") as e:
        wt.trace(model, (torch.empty(TOKENS, D),))
    msg = str(e.value)
    assert f"{cls} at 'block'" in msg  # which module
    assert f"8 identical FFN modules in {where} beside the {router}" in msg  # why it looks like experts
    assert "transformers' fused experts" in msg and "Switch" in msg  # what is supported
    assert "\n" not in msg
    assert "forward" not in model.block.__dict__  # refused before anything was swapped


def test_hand_written_moe_exits_2(run_cli, tmp_path):
    src = tmp_path / "hand_moe.py"
    src.write_text("import torch, torch.nn as nn\n"
                   "class MoE(nn.Module):\n"
                   "    def __init__(self, d=8, e=4):\n"
                   "        super().__init__()\n"
                   "        self.router = nn.Linear(d, e)\n"
                   "        self.mlps = nn.ModuleList([nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(),\n"
                   "                                                 nn.Linear(4 * d, d)) for _ in range(e)])\n"
                   "    def forward(self, x):\n"
                   "        w, idx = self.router(x).softmax(-1).topk(1, dim=-1)\n"
                   "        out = torch.zeros_like(x)\n"
                   "        for i, m in enumerate(self.mlps):\n"
                   "            tok = torch.where(idx[:, 0] == i)[0]\n"
                   "            out.index_add_(0, tok, m(x[tok]) * w[tok])\n"
                   "        return out\n"
                   "def build():\n"
                   "    return MoE(), (torch.empty(16, 8),)\n")
    code, out, err = run_cli("analyze", f"{src}:build")
    assert code == 2, (code, out, err)
    assert err.count("\n") == 1 and "internal error" not in err
    assert "MoE at '<root>' (4 identical Sequential modules in 'mlps' beside the router 'router'" in err


# ---- ordinary models with a ModuleList of identical modules are not experts ----------------------------------------

class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.ffn = nn.Linear(D, D), FFN()

    def forward(self, x):
        return x + self.ffn(x + self.attn(x))


class LayerMix(nn.Module):
    """N identical layers and a layer-weighting head with one output per layer (ELMo-style scalar mix); the head's
    name ``aggregate`` holds "gate" as a substring only, and ``weights`` says nothing."""

    def __init__(self, n=4, head="aggregate"):
        super().__init__()
        self.layers = nn.ModuleList([Layer() for _ in range(n)])
        self._head = head
        setattr(self, head, nn.Linear(D, n))
        self.out = nn.Linear(D, 10)

    def forward(self, x):
        hs = []
        for layer in self.layers:
            x = layer(x)
            hs.append(x)
        w = getattr(self, self._head)(x).softmax(-1)  # [T, n]
        return self.out((torch.stack(hs, -1) * w[:, None, :]).sum(-1))


class GatedLayers(nn.Module):
    """N identical layers and a GLU-style output gate named ``gate`` (Linear D -> D: not one output per layer)."""

    def __init__(self, n=4):
        super().__init__()
        self.layers = nn.ModuleList([Layer() for _ in range(n)])
        self.gate, self.out = nn.Linear(D, D), nn.Linear(D, 10)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.out(x * torch.sigmoid(self.gate(x)))


class MultiTask(nn.Module):
    """a shared trunk and a ModuleList of 3 identical per-task heads; a task classifier with one output per task,
    not named as a router; every head runs on every sample (dense by design)."""

    def __init__(self, tasks=3):
        super().__init__()
        self.trunk = FFN()
        self.heads = nn.ModuleList([nn.Linear(D, 5) for _ in range(tasks)])
        self.task_classifier = nn.Linear(D, tasks)

    def forward(self, x):
        h = self.trunk(x)
        return torch.cat([hd(h) for hd in self.heads] + [self.task_classifier(h)], -1)


def _fwd_matmul_flops(g):
    return sum(r.flops for r in g.records if r.kind is OpKind.MATMUL and r.phase is Phase.FORWARD)


# forward matmul FLOPs by hand, 32 tokens: 32 x (2 x MACs + bias adds) per token (an addmm adds its bias: one FLOP
# per output), over every Linear run once per token:
#   Layer: attn 16x16 + fc1 16x32 + fc2 32x16 = 1280 MACs, 16 + 32 + 16 = 64 bias outputs
#   LayerMix: 4 layers + head 16x4 + out 16x10 -> 5120 + 64 + 160 = 5344 MACs, 256 + 4 + 10 = 270 bias outputs
#   GatedLayers: 4 layers + gate 16x16 + out 16x10 -> 5120 + 256 + 160 = 5536 MACs, 256 + 16 + 10 = 282
#   MultiTask: trunk 16x32 + 32x16 + 3 heads 16x5 + classifier 16x3 -> 1024 + 240 + 48 = 1312 MACs, 48 + 15 + 3 = 66
@pytest.mark.parametrize("make,macs,biases", [
    (lambda: LayerMix(head="aggregate"), 5344, 270),
    (lambda: LayerMix(head="weights"), 5344, 270),
    (GatedLayers, 5536, 282),
    (MultiTask, 1312, 66),
])
def test_identical_layers_without_a_router_are_not_experts(make, macs, biases):
    with torch.device("meta"):
        model = make()
    g = wt.trace(model, (torch.empty(TOKENS, D),))
    assert _fwd_matmul_flops(g) == TOKENS * (2 * macs + biases)
    assert "moe" not in g.extra


ALBERT = dict(model_type="albert", architectures=["AlbertForMaskedLM"], embedding_size=128, hidden_size=256,
              intermediate_size=1024, num_attention_heads=4, num_hidden_layers=4, num_hidden_groups=4,
              vocab_size=1000)


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama", "t5", "albert"])
def test_transformers_dense_models_are_not_experts(name):
    pytest.importorskip("transformers")
    from _torch_archs import HF_CONFIGS

    from wattlint.frontends import hf

    model = hf.build_model(hf.load_config(dict(ALBERT if name == "albert" else HF_CONFIGS[name])))
    if name == "albert":
        # ALBERT with 4 hidden groups: a ModuleList of 4 identical AlbertLayerGroups; give it a Linear with one output
        # per group as well (as a layer-weighting head would): no router name, so no experts
        enc = model.albert.encoder
        assert len(enc.albert_layer_groups) == 4
        enc.layer_weights = nn.Linear(256, 4, device="meta")
    routing = MoeRouting(model).install()
    assert routing.layers == []
    routing.restore()


# ---- review 2026-12-07: gated and soft mixtures weigh every branch on every token: no experts to refuse --------------

class SoftMix(nn.Module):
    """Four identical FFN branches and a router-named ``gating`` Linear with one output per branch, softmax-weighted:
    every branch runs on every token (a dense mixture, no per-token selection)."""

    def __init__(self, n=4):
        super().__init__()
        self.branches = nn.ModuleList([FFN() for _ in range(n)])
        self.gating = nn.Linear(D, n)

    def forward(self, x):
        w = self.gating(x).softmax(-1)
        return sum(w[:, i:i + 1] * b(x) for i, b in enumerate(self.branches))


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(D, 4), nn.Linear(4, D)  # reduction 4: 16 -> 4, as many as the blocks below

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x))))


class SEStage(nn.Module):
    """Four identical blocks, then a squeeze-excitation module named ``gate`` whose bottleneck Linear has 4 outputs."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([FFN() for _ in range(4)])
        self.gate = SqueezeExcite()

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.gate(x)


class LayerGates(nn.Module):
    """Four identical layers each scaled by a row of a ``gates`` [4, D] parameter."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([FFN() for _ in range(4)])
        self.gates = nn.Parameter(torch.zeros(4, D))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = x + torch.tanh(self.gates[i]) * layer(x)
        return x


# by hand, 32 tokens: an FFN is 16x32 + 32x16 = 1024 MACs and 48 bias outputs per token
#   SoftMix: 4 FFNs + gating 16x4 -> 4096 + 64 = 4160 MACs, 192 + 4 = 196 bias outputs
#   SEStage: 4 FFNs + fc1 16x4 + fc2 4x16 -> 4096 + 64 + 64 = 4224 MACs, 192 + 4 + 16 = 212
#   LayerGates: 4 FFNs -> 4096 MACs, 192
@pytest.mark.parametrize("make,macs,biases", [(SoftMix, 4160, 196), (SEStage, 4224, 212), (LayerGates, 4096, 192)])
def test_gated_and_soft_mixtures_are_traced_dense_not_refused(make, macs, biases):
    with torch.device("meta"):
        model = make()
    g = wt.trace(model, (torch.empty(TOKENS, D),))
    assert _fwd_matmul_flops(g) == TOKENS * (2 * macs + biases)
    assert "moe" not in g.extra
