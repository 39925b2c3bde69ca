"""Activation memory of a traced GPT-style transformer and the FSDP gathered units, derived by hand.

Reference: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", section 4.1:
per layer and micro-batch (s tokens, b sequences, hidden h, a heads) in 16-bit activations with dropout,
s*b*h*34 + 5*a*s^2*b bytes = attention 11sbh + 5as^2b (QKV input 2, Q and K 4, V 2, output-projection input 2,
dropout mask 1) + MLP 19sbh (input 2, GELU input 8, second linear's input 8, dropout mask 1) + two LayerNorm inputs
4sbh. With flash attention the 5as^2b term is gone; without dropout the two 1-byte masks are gone: 32 sbh.
With activation checkpointing (full recompute) a layer keeps its input only: 2sbh.
"""

from __future__ import annotations

import json

import pytest

from wattlint import memory
from wattlint.api import trace
from wattlint.hardware import resolve_gpu
from wattlint.types import Plan

S, B, H, A, V = 128, 2, 256, 4, 1024
SBH = S * B * H  # 65,536


def _gpt(tmp_path, layers):
    cfg = dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=H, n_head=A, n_layer=layers,
               n_inner=4 * H, vocab_size=V, n_positions=S, activation_function="gelu", resid_pdrop=0.0,
               embd_pdrop=0.0, attn_pdrop=0.0)
    p = tmp_path / f"gpt_{layers}.json"
    p.write_text(json.dumps(cfg))
    return p


def _trace(tmp_path, layers, **kw):
    opts = {"batch_size": B, "seq_len": S, "precision": "bf16", "attention": "sdpa", **kw}
    return trace(str(_gpt(tmp_path, layers)), opts)


def _plan(**kw):
    base = dict(batch_size=B, steps=1, precision="bf16", optimizer="adamw", pue=1.0,
                carbon_intensity_g_per_kwh=400.0)
    base.update(kw)
    return Plan(**base)


def test_traced_gpt_activations_by_hand(tmp_path):
    """bf16 autocast, flash attention (SDPA), no dropout, 2 layers: every saved tensor counted once."""
    g = _trace(tmp_path, 2)
    ln_stats = 2 * (B * S * 4)  # mean + rstd, fp32, one per token
    lse = A * B * S * 4  # the flash kernel's fp32 log-sum-exp
    philox = 2 * 8 + 8  # its RNG seed/offset (uint64 (2,) and ())
    per_layer = ((4 + 2 + 6 + 2 + 4 + 2 + 8 + 8) * SBH  # ln_1 in (fp32 residual) 4, c_attn in (bf16 cast) 2,
                 # q/k/v (one c_attn output) 6, attention out 2, ln_2 in 4, c_fc in (cast) 2, GELU in 8, c_proj in 8
                 + 2 * ln_stats + lse + philox)
    embed = B * S * 8 + S * 8  # token ids (b, s) and positions (1, s), int64
    head = 4 * SBH + ln_stats + 2 * SBH  # ln_f input (fp32) + the lm_head's input cast to bf16
    loss = 4 * S * B * V + S * B * 8 + 4  # log-softmax output fp32 (4sbV), targets int64, total weight
    assert g.extra["activation_bytes"] == 2 * per_layer + embed + head + loss == 6_183_988
    # the tied lm_head weight (W.t(), a view of a parameter) is not an activation: it was counted before, 4hV bytes
    # = 1 MiB here, and the fp32 inputs of c_attn / c_fc / lm_head were counted at 4 bytes, not as their bf16 casts
    assert g.extra["activation_bytes_fp32"] == (2 * 2 + 1) * 4 * SBH  # the five LayerNorm inputs, fp32
    assert g.extra["block_params"] == 12 * H * H + 13 * H and g.extra["block_count"] == 2


def test_megatron_layer_matches_korthikanti(tmp_path):
    """Per layer (difference of a 3- and a 2-layer trace) under the megatron stack (half-precision residual
    stream): Korthikanti's 34sbh - 2sbh of dropout masks = 32sbh, plus the small fp32 / int terms."""
    g2, g3 = _trace(tmp_path, 2), _trace(tmp_path, 3)
    gpu = resolve_gpu("a100")[0]
    p = _plan(training_stack="megatron")
    a2 = memory.activation_bytes(g2, p)[0]
    a3 = memory.activation_bytes(g3, p)[0]
    small = 2 * (2 * B * S * 4) + A * B * S * 4 + 24  # LayerNorm statistics, log-sum-exp, RNG state: stay as traced
    assert a3 - a2 == 32 * SBH + small
    # the pytorch stack (autocast, fp32 residual stream): the two LayerNorm inputs at 4 bytes: 36sbh
    py = _plan(training_stack="pytorch")
    assert memory.activation_bytes(g3, py)[0] - memory.activation_bytes(g2, py)[0] == 36 * SBH + small
    assert memory.peak_memory(g3, gpu, p)["breakdown"]["activations"] == a3


def test_checkpointed_layer_keeps_its_input_only(tmp_path):
    g2 = _trace(tmp_path, 2, activation_checkpointing=True)
    g3 = _trace(tmp_path, 3, activation_checkpointing=True)
    p = _plan(training_stack="megatron", activation_checkpointing=True)
    assert memory.activation_bytes(g3, p)[0] - memory.activation_bytes(g2, p)[0] == 2 * SBH  # Korthikanti: 2sbh
    py = _plan(training_stack="pytorch", activation_checkpointing=True)
    assert memory.activation_bytes(g3, py)[0] - memory.activation_bytes(g2, py)[0] == 4 * SBH  # fp32 residual


def test_parameter_views_are_not_activations():
    import torch.nn as nn

    from wattlint.frontends.torch import trace as torch_trace

    import torch

    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    g = torch_trace(m, (torch.empty(8, 64),))
    # x (input of the first Linear, 8 x 64 fp32), ReLU's output (also the second Linear's input), the loss's
    # log-softmax output (8 x 64 fp32), the targets (8 int64) and the total weight (fp32 scalar); the second
    # Linear's W.t() (64 x 64 fp32 = 16,384 bytes) is a view of a parameter, not an activation
    assert g.extra["activation_bytes"] == 8 * 64 * 4 * 3 + 8 * 8 + 4


def test_fsdp_gathered_units_by_hand(tmp_path):
    """FULL_SHARD over 8 GPUs, megatron stack: 2 bytes x (params / 8 + 2 blocks + the root unit), no casts."""
    g = _trace(tmp_path, 4)
    block = 12 * H * H + 13 * H  # GPT-2 block: c_attn 3h^2+3h, c_proj h^2+h, c_fc 4h^2+4h, c_proj 4h^2+h, 2 LN 4h
    root = V * H + S * H + 2 * H  # wte (tied with lm_head), wpe, ln_f
    params = 4 * block + root
    assert g.params == params == 3_454_464
    share, _ = memory.gathered_share(g)
    assert share == pytest.approx((2 * block + root) / params)
    gpu = resolve_gpu("a100")[0]
    b = memory.peak_memory(g, gpu, _plan(gpus=8, sharding="fsdp", training_stack="megatron"))["breakdown"]
    assert b["weights"] == int(2 * params / 8 + 2 * (2 * block + root))
    assert b["weight_casts"] == 0  # FSDP mixed precision / megatron: the gathered parameters are bf16 already
    assert b["master_weights"] == int(4 * params / 8)
    assert b["gradients"] == int(4 * params / 8)
    assert b["optimizer_state"] == int(8 * params / 8)
    # pytorch stack (fp32 parameters under autocast): fp32 shards + gathered units, and their bf16 casts
    b = memory.peak_memory(g, gpu, _plan(gpus=8, sharding="fsdp", training_stack="pytorch"))["breakdown"]
    assert b["weights"] == int(4 * params / 8 + 4 * (2 * block + root))
    assert b["weight_casts"] == int(2 * params / 8 + 2 * (2 * block + root))


def test_fsdp_gathered_units_on_a_pipeline_stage_by_hand(tmp_path):
    """PP 2 x FSDP over 4 data-parallel ranks, 8 layers, megatron stack: the last stage holds 4 blocks + the LM
    head's V x h weights (tied embedding copy) and gathers 2 of ITS blocks + that head, not a share of the whole
    model's units scaled by the stage."""
    from wattlint import parallel

    g = _trace(tmp_path, 8)
    block = 12 * H * H + 13 * H
    stage = 4 * block + V * H  # 4 blocks + the LM head (wte tied with lm_head)
    plan = _plan(gpus=8, pipeline_parallel=2, batch_size=4, sharding="fsdp", training_stack="megatron")
    per_gpu = parallel.per_gpu_graph(g, plan)
    assert per_gpu.params == stage
    share, how = memory.gathered_share(per_gpu)
    assert share == pytest.approx((2 * block + V * H) / stage)
    assert "2 of the stage's 4" in how
    b = memory.peak_memory(per_gpu, resolve_gpu("a100")[0], plan)["breakdown"]
    assert b["weights"] == int(2 * stage / 4 + 2 * (2 * block + V * H))  # bf16 shards over 4 + the gathered units


def test_gathered_share_without_block_sizes_falls_back():
    from _estimate_fixtures import mlp_graph

    g = mlp_graph(width=256, layers=4)  # numbered layers in the records, no block sizes from a frontend
    share, how = memory.gathered_share(g)
    assert share == 2 / 4 and "2 of 4" in how  # the running + the prefetched unit of 4 equal blocks


def test_softmax_output_and_its_cast_are_both_kept_under_autocast():
    """Eager attention core without dropout under bf16 autocast: q @ k^T (bf16), softmax in fp32 (autocast's fp32
    list; saves its fp32 output), probs @ v (casts the probabilities to bf16 and saves that cast). CUDA autocast
    keeps both; the megatron stack (bf16 softmax, Megatron's FusedScaleMaskSoftmax) keeps one 2-byte tensor."""
    import torch
    import torch.nn as nn

    from wattlint.frontends.torch import trace as torch_trace

    n, d = 64, 32

    class Core(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(d, d, bias=False)

        def forward(self, x):
            q = self.q(x)  # bf16 (autocast)
            p = torch.softmax(q @ q.transpose(-2, -1), dim=-1)  # n x n, fp32
            return (p @ q).sum()

    # wrapped: tensors saved at the root module itself count as the loss's (kept fp32 in every stack, as
    # wattlint.stack keeps the root module's casts)
    g = torch_trace(nn.Sequential(Core()), (torch.empty(n, d),), precision="bf16")
    e = g.extra
    # x (fp32 input of the projection, charged as its bf16 cast: n*d*2), q (bf16, saved by both matmuls: once,
    # n*d*2), softmax output (fp32, n*n*4), its bf16 cast saved by p @ q (n*n*2)
    assert e["activation_bytes"] == n * d * 2 + n * d * 2 + n * n * 4 + n * n * 2
    assert e["activation_bytes_fp32"] == n * n * 4
    assert e["activation_bytes_cast_dup"] == n * n * 2
    p = _plan(batch_size=1, training_stack="megatron")
    assert memory.activation_bytes(g, p)[0] == n * d * 2 + n * d * 2 + n * n * 2  # one bf16 probability tensor


def test_real_cpu_autocast_run_saves_what_the_hand_count_says():
    """A real (CPU) bf16 autocast forward of a GPT-2 layer, autograd's saved tensors seen by the same pack hook:
    outside the attention core each layer keeps ln_1's fp32 input 4sbh, the bf16 cast of its output (c_attn's
    input) 2sbh, the attention output (c_proj's input) 2sbh, ln_2's input 4sbh, c_fc's input cast 2sbh, GELU's
    input 8sbh and c_proj's input 8sbh = 30sbh, plus the LayerNorm statistics; the tracer's count above (36sbh =
    these 30 + q/k/v 6sbh) relies on exactly this. The old tracer counted the two casts as their fp32 sources."""
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("transformers")
    s, b, h, a, v = 64, 3, 256, 4, 1000  # s*b differs from every weight dimension

    def saved(layers):
        cfg = tf.GPT2Config(n_embd=h, n_head=a, n_layer=layers, n_inner=4 * h, vocab_size=v, n_positions=s,
                            activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        cfg._attn_implementation = "eager"
        m = tf.GPT2LMHeadModel(cfg).train()
        shapes = {tuple(p.shape) for p in m.parameters()} | {tuple(p.shape)[::-1] for p in m.parameters()}
        params = {p.untyped_storage().data_ptr() for p in m.parameters()}
        kept = {}

        def pack(x):
            ptr = x.untyped_storage().data_ptr()
            weight = ptr in params or (x.dtype == torch.bfloat16 and tuple(x.shape) in shapes)  # autocast's casts
            core = x.dim() == 4 or (x.dim() == 3 and x.shape[0] == b * a)  # q, k, v, scores: kernel-specific
            if not weight and not core:
                kept.setdefault(ptr, x.untyped_storage().nbytes())
            return x

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                m(torch.zeros(b, s, dtype=torch.long))
        return sum(kept.values())

    sbh = s * b * h
    assert saved(3) - saved(2) == (4 + 2 + 2 + 4 + 2 + 8 + 8) * sbh + 2 * 2 * (b * s * 4)


def test_loss_transient_by_hand(tmp_path):
    """The cross-entropy's memory at the start of backward, beyond the traced fp32 log-probabilities (4 B per
    logit, already activations). The 2-layer trace has E = s x b x V = 128 x 2 x 1024 = 262,144 bf16 logits (L = 2):
    torch (log_softmax + nll_loss): the logits held by the output L*E + nll_loss's gradient 4E + log_softmax's
    gradient 4E = 10E = 2,621,440 B; fused: logits + their gradient 2LE in place of the 4E log-probs = 0 in bf16."""
    g = _trace(tmp_path, 2)
    e = S * B * V
    assert (g.extra["loss_logits_elems"], g.extra["loss_logits_bytes"]) == (e, 2)
    torch_b, note = memory.loss_transient_bytes(g, _plan())
    assert torch_b == (2 + 4 + 4) * e == 2_621_440 and "pytorch stack's default" in note
    assert memory.loss_transient_bytes(g, _plan(loss_impl="fused"))[0] == (2 * 2 - 4) * e == 0
    assert memory.loss_transient_bytes(g, _plan(training_stack="megatron"))[0] == 0  # megatron: fused by default
    # micro-batch 4 of a trace at 2: twice the logits; tensor parallel 2 (vocabulary-parallel loss): half per rank
    assert memory.loss_transient_bytes(g, _plan(batch_size=2 * B))[0] == 2 * 10 * e
    assert memory.loss_transient_bytes(g, _plan(tensor_parallel=2, gpus=2))[0] == 10 * e // 2
    # context parallel 2 on 2 GPUs at batch 2B: one replica, micro-batch 2B, each rank holding half of every
    # sequence's tokens, so half of the 2 x E logits: E per rank (review: it grew with C, 19.6 GiB at C = 2 for 9.8)
    b, note = memory.loss_transient_bytes(g, _plan(context_parallel=2, gpus=2, batch_size=2 * B))
    assert b == 10 * e and "1/2 of the tokens (context parallel)" in note
    gpu = resolve_gpu("a100")[0]
    bd = memory.peak_memory(g, gpu, _plan())["breakdown"]
    assert bd["loss_transient"] == torch_b
    assert memory.peak_memory(g, gpu, _plan(loss_impl="fused"))["breakdown"]["loss_transient"] == 0


def test_loss_transient_fp32_by_hand(tmp_path):
    """fp32 (no autocast): L = 4, torch keeps 4E + 4E + 4E = 12E more than traced, fused (2 x 4 - 4) E = 4E."""
    g = _trace(tmp_path, 2, precision="fp32")
    e = S * B * V
    assert g.extra["loss_logits_bytes"] == 4
    assert memory.loss_transient_bytes(g, _plan(precision="fp32"))[0] == 12 * e
    assert memory.loss_transient_bytes(g, _plan(precision="fp32", loss_impl="fused"))[0] == 4 * e


def test_checkpointed_trace_records_what_the_blocks_would_save_without_it(tmp_path):
    """Under activation checkpointing the trace also records what the checkpointed blocks' forward would have kept
    (WL107 re-estimates the run without checkpointing from it). The oracle is the same model traced without
    checkpointing: every saved-bytes figure must be equal, at both widths."""
    for precision in ("bf16", "fp32"):
        plain = _trace(tmp_path, 2, precision=precision).extra
        ckpt = _trace(tmp_path, 2, precision=precision, activation_checkpointing=True).extra
        whole = ckpt["activation_without_checkpointing"]
        for key in ("activation_bytes", "activation_bytes_fp32", "activation_bytes_cast_dup"):
            assert whole[key] == plain[key], (precision, key)
        assert ckpt["activation_bytes"] < plain["activation_bytes"] / 2  # what checkpointing keeps is unchanged
    assert "activation_without_checkpointing" not in _trace(tmp_path, 2).extra


EXAMPLES_MODELS = "examples/torch_models.py"


@pytest.mark.parametrize("factory, precision", [
    ("mlp", "bf16"),          # the first Linear keeps its bf16 cast of the block input, not the fp32 input
    ("small_cnn", "fp32"),    # a functional op outside the blocks saves the tensor the next block gets
    ("resnet_small", "fp32"), ("mlp_mixer", "bf16"), ("gru_tagger", "bf16"),
])
def test_the_figure_without_checkpointing_is_the_plain_traces(factory, precision):
    """What the checkpointed trace records for a re-estimate without checkpointing equals what the same model
    traced without it saves (the oracle), whatever the model: the checkpoint's own save of a block's inputs is
    counted only while checkpointing."""
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[1] / EXAMPLES_MODELS) + f":{factory}"
    plain = trace(src, {"precision": precision}).extra
    whole = trace(src, {"precision": precision, "recompute": "full"}).extra["activation_without_checkpointing"]
    for key in ("activation_bytes", "activation_bytes_fp32", "activation_bytes_cast_dup"):
        assert whole[key] == plain[key], key


_OWN_CKPT = '''
import torch, torch.nn as nn, torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

class Block(nn.Module):
    def __init__(self, mode):
        super().__init__()
        self.ln, self.fc1, self.fc2, self.mode = nn.LayerNorm(64), nn.Linear(64, 256), nn.Linear(256, 64), mode
    def inner(self, x):
        return self.fc2(F.gelu(self.fc1(x)))
    def forward(self, x):
        h = self.ln(x)
        if self.mode == "none":
            return x + self.inner(h)
        return x + checkpoint(self.inner, h, use_reentrant=self.mode == "reentrant")

class Net(nn.Module):
    def __init__(self, mode):
        super().__init__()
        self.blocks = nn.ModuleList([Block(mode) for _ in range(2)])
        self.head = nn.Linear(64, 10)
    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x).float().mean()

def none(): return Net("none"), (torch.randn(4, 32, 64),)
def nonreentrant(): return Net("nonreentrant"), (torch.randn(4, 32, 64),)
def reentrant(): return Net("reentrant"), (torch.randn(4, 32, 64),)
'''


def test_no_figure_without_checkpointing_where_the_model_checkpoints_inside_its_blocks(tmp_path, monkeypatch):
    """A model that checkpoints inside its own blocks (transformers' gradient_checkpointing_enable, non-reentrant
    or reentrant) hides from the trace what those parts would save: the checkpointed trace gives no figure without
    checkpointing (WL107 then falls back to the stated upper bound) instead of one that still has the model's own
    checkpointing in it (WL107 told a model that needs 27 GiB that it fits in 24 without checkpointing). Same where
    torch cannot show its saved-tensor hook stack (before 2.8)."""
    import torch

    (tmp_path / "own.py").write_text(_OWN_CKPT)
    src = str(tmp_path / "own.py")
    assert "activation_without_checkpointing" in trace(src + ":none", {"recompute": "full"}).extra
    for mode in ("nonreentrant", "reentrant"):
        assert "activation_without_checkpointing" not in trace(f"{src}:{mode}", {"recompute": "full"}).extra, mode
    monkeypatch.delattr(torch._C._autograd, "_top_saved_tensors_default_hooks")
    g = trace(src + ":none", {"recompute": "full"})
    assert "activation_without_checkpointing" not in g.extra and g.extra["activation_bytes"] > 0
