"""Edges of the parallelism model found in review (2026-12): a one-layer transformer under context and tensor
parallelism, one block that is not a stack (ALBERT's shared layer, a 1-layer encoder-decoder, no numbered blocks),
the report's MFU label under the traced-FLOPs convention, a Mamba / attention hybrid (Jamba), and the MoE
all-to-all rows read from the frontend's trace. Expected values are worked by hand in the comments."""

from __future__ import annotations

import json

import pytest

from _parallel_fixtures import GPT
from _parallel_fixtures import est as _est

import wattlint
from wattlint import parallel as P
from wattlint.types import OpKind, Phase

pytest.importorskip("transformers")

# A100 SXM4 80GB inside one node: NVLink 300 GB/s per direction x NCCL bus efficiency 0.80 = 240 GB/s, 20 us a call
NVLINK_BW = 240e9
LATENCY = 20e-6


def _write(tmp_path, name, cfg):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def _matmul_flops(graph, phase):
    return sum(r.flops for r in graph.records if r.phase is phase and r.kind is OpKind.MATMUL)


# ---- 1. context parallelism on a one-layer transformer pays the ring of its one attention layer --------------------

def test_context_parallel_on_a_one_layer_model_pays_the_ring_of_its_layer(tmp_path):
    """The GPT fixture with 1 layer (h 512, 8 heads of 64, seq 256, bf16) on 2 A100s, CP 2, micro-batch 1. Its one
    block was no 'repeated block' (find_blocks needs 2), so the ring was priced over 0 layers: no context-parallel
    time at all."""
    path = _write(tmp_path, "gpt1", dict(GPT, n_layer=1))
    e = _est(path, gpus=2, context_parallel=2, batch_size=1)
    assert e.plan.data_parallel == 1 and e.plan.micro_batch_size == 1 and e.plan.grad_accum == 1
    # keys + values of the layer: 2 x 1 sequence x 8 heads x 256 keys x 64 x 2 B = 524,288 B; this GPU's chunk / 2 =
    # 262,144 B; 1 send forward (262,144 B) and 1 backward (keys, values and their gradients: 524,288 B), one layer
    chunk = 524_288 / 2
    ring = 1 * ((chunk / NVLINK_BW + LATENCY) + (2 * chunk / NVLINK_BW + LATENCY))  # 1.09 + 20 + 2.18 + 20 = 43.28 us
    attn = sum(t for r, t in zip(e.graph.records, e.op_times_s) if r.kind is OpKind.ATTENTION)
    assert attn > 0
    exposed = max(0.1 * ring, ring - attn)  # overlapped with the attention kernels, at least 10 % exposed
    phase = e.phases.get("context_parallel")
    assert phase is not None and phase.time_s == pytest.approx(exposed, rel=1e-9)
    note = next(a for a in e.assumptions if a.startswith("context parallel 2: per layer"))
    assert "0 layers" not in note, note
    assert e.graph.extra["context_parallel"]["attention_layers"] == 1


# ---- 2. tensor parallelism on a one-layer transformer splits its layer ----------------------------------------------

def test_tensor_parallel_on_a_one_layer_model_splits_its_layer(tmp_path):
    """Refused before as having 'no repeated transformer blocks recognised', which it has: one. Megatron splits a
    single layer like any other."""
    path = _write(tmp_path, "gpt1", dict(GPT, n_layer=1))
    one = _est(path, gpus=1, batch_size=1)
    tp = _est(path, gpus=2, tensor_parallel=2, batch_size=1)
    assert tp.plan.micro_batch_size == 1 == one.plan.micro_batch_size
    # every matmul split 2 ways (512, 3 x 512 = 1,536, 2,048 and the 1,000-word LM head are even): half the FLOPs
    for ph in (Phase.FORWARD, Phase.BACKWARD):
        assert _matmul_flops(tp.graph, ph) == pytest.approx(_matmul_flops(one.graph, ph) / 2, rel=1e-6)
    assert {r.dim("h") for r in tp.graph.records if r.kind is OpKind.ATTENTION} == {4}  # 8 heads / 2
    # 2 all-reduces forward + 2 backward of micro-batch x seq x hidden x 2 B = 1 x 256 x 512 x 2 = 262,144 B; ring
    # over 2: 2 x 1/2 x 262,144 / 240e9 + 20 us = 21.09 us each; 4 x 1 layer
    each = 2 * 1 / 2 * 262_144 / NVLINK_BW + LATENCY
    assert tp.phases["tensor_parallel"].time_s == pytest.approx(4 * 1 * each, rel=1e-9)


ALBERT = dict(model_type="albert", architectures=["AlbertForMaskedLM"], hidden_size=64, intermediate_size=256,
              num_hidden_layers=4, num_attention_heads=4, vocab_size=100, embedding_size=32)


def _t5_one_layer():
    from _torch_archs import HF_CONFIGS

    return dict(HF_CONFIGS["t5"], num_layers=1, num_decoder_layers=1)


@pytest.mark.parametrize("arch, expect", [
    # ALBERT's one layer ('albert.encoder.albert_layer_groups.0') runs num_hidden_layers = 4 times: as one block,
    # tensor / context parallelism would price 1 layer of collectives for 4 layers of work
    ("albert", "the one block of albert.encoder.albert_layer_groups runs 4 times per forward (its weights shared "
               "across depth"),
    # T5 with 1 encoder and 1 decoder layer: 'encoder.block.0' and 'decoder.block.0', two stacks of one
    ("t5", "the model has 2 stacks of layers (decoder.block, encoder.block)"),
])
@pytest.mark.parametrize("flag", ["--context-parallel", "--tensor-parallel"])
def test_one_block_that_is_no_stack_of_layers_is_refused_with_its_reason(arch, expect, flag, run_cli, tmp_path):
    """Context parallelism accepted both with a ring of 0 layers; tensor parallelism said 'no repeated transformer
    blocks recognised'. Each is refused in one line saying what the model is."""
    cfg = ALBERT if arch == "albert" else _t5_one_layer()
    path = _write(tmp_path, arch, cfg)
    code, _, err = run_cli(str(path), "--steps", "1", "--seq-len", "64", "--batch-size", "4", "--gpus", "2",
                           flag, "2")
    assert code == 2 and err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert f"{flag} 2: {expect}" in err, err


ONE_ATTENTION = '''
import torch.nn as nn
import torch.nn.functional as F


class OneAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 64)
        self.qkv = nn.Linear(64, 192)
        self.out = nn.Linear(64, 64)
        self.head = nn.Linear(64, 100)

    def forward(self, input_ids):
        x = self.emb(input_ids)
        b, s, _ = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, 4, 16).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, s, 64)
        return self.head(x + self.out(y))


def build():
    return OneAttention()
'''


def test_context_parallel_without_numbered_blocks_is_refused(run_cli, tmp_path):
    """A model whose attention sits in no numbered block: the ring was priced over 0 layers (no cost, silently);
    refused as tensor parallelism is."""
    src = tmp_path / "one_attention.py"
    src.write_text(ONE_ATTENTION)
    code, _, err = run_cli(f"{src}:build", "--input", "input_ids=int64[1,64]", "--seq-len", "64", "--steps", "1",
                           "--gpus", "2", "--context-parallel", "2")
    assert code == 2 and err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert "--context-parallel 2: no repeated transformer blocks recognised" in err, err


# ---- 3. the report's MFU label follows the convention used ----------------------------------------------------------

def test_mfu_label_follows_the_traced_flops_convention(tmp_path):
    """ALBERT's MFU counts its traced model FLOPs (its shared layer runs 4 times; aggregate.utilization), but the
    summary row said 'MFU: 6N + attention FLOPs/token'."""
    from wattlint.report.tables import summary_rows

    e = wattlint.estimate(str(_write(tmp_path, "albert", ALBERT)), gpu="a100-sxm4-80gb", batch_size=1, seq_len=16,
                          steps=1, lint=False)
    assert e.utilization.convention.startswith("MFU = the model's traced forward + backward FLOPs")
    row = dict(summary_rows(e))["Throughput"]
    assert "(MFU: traced model FLOPs/token, " in row and "6N" not in row, row
    dense = _est(_write(tmp_path, "gpt", GPT), batch_size=1)
    assert "(MFU: 6N + attention FLOPs/token, " in dict(summary_rows(dense))["Throughput"]


def test_mfu_label_says_frozen_weights_get_no_weight_gradient(tmp_path):
    """With frozen weights MFU counts 6N - 2N_frozen + attention (aggregate.utilization); the label said 6N."""
    from wattlint.report.tables import summary_rows

    src = tmp_path / "frozen_model.py"
    src.write_text("import transformers\n\n\ndef build():\n    m = transformers.GPT2LMHeadModel(transformers.GPT2Config("
                   "n_embd=64, n_layer=2, n_head=4, vocab_size=1000, n_positions=128, bos_token_id=0, "
                   "eos_token_id=0))\n    for n, p in m.named_parameters():\n"
                   "        if not n.startswith('transformer.h.1.'):\n            p.requires_grad_(False)\n"
                   "    return m\n")
    e = wattlint.estimate(f"{src}:build", gpu="a100", inputs=["input_ids=int64[2,128]"], seq_len=128, steps=1,
                          precision="bf16", lint=False)
    assert "frozen parameters get no weight gradient" in e.utilization.convention
    # layer 0 and the embeddings lie below the only trainable layer: backward never runs through them (review s54)
    assert "(MFU: 6N - 2N_frozen - 2N_forward_only + attention FLOPs/token, " in dict(summary_rows(e))["Throughput"]


# ---- 4. a Mamba / attention hybrid: only its attention layers have attention terms ----------------------------------

# 4 layers, attention in layer 1 only (attn_layer_period 4, offset 1), the others Mamba; MoE in layers 1 and 3
JAMBA = dict(model_type="jamba", architectures=["JambaForCausalLM"], hidden_size=64, intermediate_size=128,
             num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, vocab_size=100,
             attn_layer_period=4, attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1, num_experts=4,
             num_experts_per_tok=2, mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=8,
             use_mamba_kernels=False, max_position_embeddings=256)


def test_hybrid_counts_attention_terms_of_its_attention_layers_only(tmp_path):
    path = _write(tmp_path, "jamba", JAMBA)
    g = wattlint.analyze(str(path), batch_size=1, seq_len=64)
    blocks = P.find_blocks(g)
    assert blocks is not None and blocks.count == 4
    # MFU's attention term (already right, pinned): one layer, 2 x 2 x s x d_model = 4 x 64 x 64 = 16,384 FLOPs per
    # token; the Mamba layers and the MoE routers' softmax add none
    assert P.attention_forward_flops_per_token(g) == 16_384
    assert P.attention_layers(g, blocks) == (1,)
    # context parallelism: the ring runs in the 1 attention layer of the 4 blocks (recorded for the ring's price)
    e = wattlint.estimate(str(path), gpu="a100-sxm4-80gb", gpus=2, context_parallel=2, batch_size=1, seq_len=64,
                          steps=1, lint=False, precision="bf16")
    assert e.graph.extra["context_parallel"]["attention_layers"] == 1
    # ... and the ring is priced over that layer only (energy.system; it was priced over all 4 blocks)
    ring = next(a for a in e.assumptions if a.startswith("context parallel 2: per layer"))
    assert "1 attention layer of 4:" in ring, ring
    # eager attention stores scores in that layer only: a s^2 b = 4 heads x 64^2 x 1 = 16,384 scores, kept as the
    # fp32 softmax output (no attention dropout in Jamba's config: attention_dropout 0): 65,536 B; 4 blocks' worth
    # (and Korthikanti's 5 bytes per score whatever the trace kept) before
    eager = wattlint.analyze(str(path), batch_size=1, seq_len=64, attention="eager")
    assert P.attention_forward_flops_per_token(eager) == 16_384
    scores, what = P.attention_score_bytes(eager)
    assert scores == 65_536 and what.startswith("1 layers (of 4 blocks"), what


@pytest.mark.parametrize("flag", ["--context-parallel", "--tensor-parallel"])
def test_mamba_and_moe_stack_without_attention_refuses_tensor_and_context_parallelism(flag, run_cli, tmp_path):
    """The same hybrid with no attention layer (period 8 > its 4 layers): Mamba layers and MoE layers. The MoE
    routers' softmax counted as attention, so context parallelism was priced as ring attention over 4 layers of a
    model that has none (and tensor parallelism as split attention heads), where the Mamba stack alone is refused."""
    path = _write(tmp_path, "jamba", dict(JAMBA, attn_layer_period=8, attn_layer_offset=5))
    code, _, err = run_cli(str(path), "--steps", "1", "--seq-len", "64", "--batch-size", "2", "--gpus", "2",
                           flag, "2")
    assert code == 2 and err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert f"{flag} 2: the repeated blocks of model.layers" in err and "hold no attention layers" in err, err


# ---- 5. the all-to-all carries the rows the frontend traced ---------------------------------------------------------

MIXTRAL = dict(model_type="mixtral", architectures=["MixtralForCausalLM"], hidden_size=64, intermediate_size=128,
               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, num_local_experts=8,
               num_experts_per_tok=2, vocab_size=100, max_position_embeddings=64)


def test_all_to_all_rows_come_from_the_traced_rows_and_tokens(tmp_path):
    """Capacity factor 1.5, 10 tokens, top-2 of 8 experts: 20 assignments, each expert computes its capacity
    ceil(1.5 x 20 / 8) = ceil(3.75) = 4 rows, 32 in all: 32 / 20 = 1.6 rows per assignment. The all-to-all carried
    the factor 1.5 (re-derived in wattlint.parallel), not the 1.6 rows the experts compute."""
    path = _write(tmp_path, "mixtral", MIXTRAL)
    g = wattlint.analyze(str(path), batch_size=1, seq_len=10, capacity_factor=1.5)
    layers = P.moe_layers(g)
    assert len(layers) == 2
    for ly in layers:
        assert ly["tokens"] == 10 and ly["rows_per_expert"] == [4] * 8
        assert P.dispatched_rows_per_assignment(ly, 1.5, 10) == pytest.approx(1.6, rel=1e-12)
    # batch 2 on 2 data-parallel ranks: micro-batch 1 x 10 tokens; per all-to-all 10 x top-2 x 1.6 x hidden 64 x
    # 2 B = 4,096 B (3,840 at 1.5); over 2 ranks in one node: 1/2 x 4,096 / 240e9 + 20 us; 4 per MoE layer x 2
    e = wattlint.estimate(str(path), gpu="a100-sxm4-80gb", gpus=2, expert_parallel=2, batch_size=2, seq_len=10,
                          precision="bf16", steps=1, lint=False, capacity_factor=1.5)
    assert e.plan.micro_batch_size == 1 and e.plan.grad_accum == 1
    one = 1 / 2 * 4_096 / NVLINK_BW + LATENCY
    assert e.phases["expert_all_to_all"].time_s == pytest.approx(2 * 4 * one, rel=1e-9)
    note = next(a for a in e.assumptions if a.startswith("expert parallel 2: 4 all-to-alls"))
    assert "x top-k x 1.6 (the experts' buffers" in note, note
