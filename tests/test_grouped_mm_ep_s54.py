"""MoE grouped GEMMs (torch._grouped_mm) under expert parallelism, and the lint rules' batch scaling of them.

1. parallel.expert_parallel_graph (inside per_gpu_graph): with --expert-parallel E each GPU runs experts / E groups,
   each with E x the rows (balanced routing: it receives every rank's tokens for its experts), FLOPs per GPU
   unchanged, the experts' weight bytes / E. Oracle: the predictor's own price of a plain ``aten.mm.default``
   record built here by hand at the per-GPU group's shape (the predictor never sees a grouped record), times the
   per-GPU group count, as tests/test_grouped_mm_pricing.py does.
2. lint.rules.hardware.scale_batch: a grouped record's batch is its jagged dim, never its groups. Oracle: the
   model traced at the larger (smaller) batch.
"""

from __future__ import annotations

import json

import pytest

from wattlint import costs as C
from wattlint import parallel as P
from wattlint.energy import public_fit as pf
from wattlint.energy.pricing import grouped_notes, predict_records
from wattlint.hardware import resolve_gpu
from wattlint.types import CostGraph, ModelInfo, OpKind, OpRecord, Phase

F, B = Phase.FORWARD, Phase.BACKWARD
MOD = "model.layers.0.mlp.experts"


def _grouped(a, b, groups, dtype, phase=F):
    c = C.grouped_gemm(a, b, groups, dtype)
    return OpRecord(op="aten._grouped_mm.default", kind=c.kind, module=MOD, phase=phase, dtype=dtype,
                    shapes=(tuple(a), tuple(b), (groups,)), flops=c.flops, bytes_read=c.bytes_read,
                    bytes_written=c.bytes_written, dims=c.dims)


def _mm(m, n, k, dtype="bfloat16"):
    """A plain mm record, bytes by hand (A m x k, B k x n read, C m x n written; 4-byte fp32, else 2-byte elements)."""
    e = 4 if dtype == "float32" else 2
    return OpRecord(op="aten.mm.default", kind=OpKind.MATMUL, module="x", phase=F, dtype=dtype,
                    shapes=((m, k), (k, n)), flops=2 * m * n * k, bytes_read=(m * k + k * n) * e,
                    bytes_written=m * n * e, dims=(("b", 1), ("k", k), ("m", m), ("n", n)))


def _graph(records, experts=8):
    return CostGraph(model=ModelInfo(name="t", source="t", format="torch", params=1000, param_bytes=4000,
                                   trainable_params=1000),
                     records=tuple(records), micro_batch=1, precision="bf16",
                     extra={"moe": {"layers": [{"module": MOD, "experts": experts, "top_k": 2,
                                                "implementation": "grouped"}]}})


@pytest.fixture(scope="module")
def public_fit():
    p = pf.load_public_fit()
    assert p is not None
    return p


def test_expert_parallel_runs_experts_over_ep_groups_of_ep_times_the_rows(public_fit):
    # one layer, 8 experts, 1,024 routed rows, hidden 256, expert width 512 (gate_up 1,024 wide), bf16.
    # EP 4: each GPU holds 8 / 4 = 2 experts and receives all 4 ranks' rows for them: 1,024 rows in all on the GPU
    # (4 ranks x 1,024 x 2/8), 512 per expert (traced: 128 per expert over 8)
    fwd = _grouped((1024, 256), (8, 256, 1024), 8, "bfloat16")            # x @ W_gate_up: rows jagged (m)
    wgrad = _grouped((1024, 1024), (1024, 512), 8, "bfloat16", B)        # dY^T-like 2-D x 2-D: reduction jagged (k)
    g = P.expert_parallel_graph(_graph([fwd, wgrad]), 4)
    f2, w2 = g.records
    assert dict(f2.dims) == {"b": 2, "m": 512, "n": 1024, "k": 256}
    assert f2.flops == fwd.flops == 2 * 1024 * 1024 * 256                   # FLOPs per GPU unchanged
    # bytes by hand: the rows 1,024 x 256 read as traced, the weights of 2 experts (not 8): 2 x 256 x 1,024
    assert f2.bytes_read == (1024 * 256 + 2 * 256 * 1024) * 2
    assert f2.bytes_written == 1024 * 1024 * 2
    # weight gradient: 2 groups of the reduction 1,024 / 2 = 512; reads the rows as traced, writes 2 of 8 gradients
    assert dict(w2.dims) == {"b": 2, "m": 1024, "n": 512, "k": 512}
    assert w2.bytes_read == (1024 * 1024 + 1024 * 512) * 2
    assert w2.bytes_written == 2 * 1024 * 512 * 2
    assert any("expert parallel 4" in a and "2 of 8 groups" in a for a in g.assumptions)
    # priced on an A100 (no fused grouped kernel: PyTorch's loop, one mm per group): 2 x one 512 x 1,024 x 256 mm
    a100 = resolve_gpu("a100")[0]
    t, _ = predict_records(public_fit, [f2], a100, "bf16", None)
    t_mm, _ = public_fit.predict([_mm(512, 1024, 256)], a100, "bf16")
    assert t[0] == pytest.approx(2 * t_mm[0], rel=1e-12)
    t_before, _ = predict_records(public_fit, [fwd], a100, "bf16", None)
    assert t[0] < t_before[0]  # 8 launches of 128-row GEMMs cost more than 2 of 512 rows
    # the note counts the GPU's groups
    note = " ".join(grouped_notes(g.records, a100))
    assert "(2 groups per grouped GEMM on this GPU)" in note


def test_expert_parallel_applies_once_and_leaves_groups_it_does_not_divide():
    fwd = _grouped((1024, 256), (8, 256, 1024), 8, "bfloat16")
    g = P.expert_parallel_graph(_graph([fwd]), 2)
    assert P.expert_parallel_graph(g, 2) is g  # a lint variant of the per-GPU graph is not split again
    assert P.expert_parallel_graph(_graph([fwd]), 1).records == (fwd,)
    # 6 groups (an odd grouping) over EP 4: left as traced, and said
    odd = _grouped((1200, 256), (6, 256, 1024), 6, "bfloat16")
    g6 = P.expert_parallel_graph(_graph([odd], experts=6), 4)
    assert g6.records == (odd,)
    assert any("left as traced" in a and "6 groups" in a for a in g6.assumptions)


MIXTRAL = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 256,
           "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "num_local_experts": 8, "num_experts_per_tok": 2, "vocab_size": 1000, "max_position_embeddings": 4096}
QWEN3_MOE = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 256,
             "intermediate_size": 512, "moe_intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "num_experts": 16,
             "num_experts_per_tok": 4, "decoder_sparse_step": 1, "mlp_only_layers": [], "vocab_size": 1000,
             "max_position_embeddings": 4096}


def _config(tmp_path_factory, cfg, name):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp(name) / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def test_mixtral_step_under_expert_parallel_8_runs_one_expert_per_gpu(tmp_path_factory, public_fit):
    import wattlint

    path = _config(tmp_path_factory, MIXTRAL, "mixtral")
    graph = wattlint.analyze(path, seq_len=512, batch_size=8)
    plan = dict(gpu="a100", gpus=8, precision="bf16", steps=10, lint=False, seq_len=512, batch_size=64,
                micro_batch_size=8)
    e1 = wattlint.estimate(graph, expert_parallel=1, **plan)
    e8 = wattlint.estimate(graph, expert_parallel=8, **plan)
    assert e8.per_step.time_s != e1.per_step.time_s
    # 8 launches of 1,024-row GEMMs per grouped GEMM -> 1 of 8,192 rows: cheaper on an A100 (fallback loop)
    assert e8.per_step.time_s < e1.per_step.time_s
    assert any("(1 group per grouped GEMM on this GPU)" in a for a in e8.assumptions)
    assert any("(8 groups per grouped GEMM on this GPU)" in a for a in e1.assumptions)
    # the per-GPU graph's gate_up forward: 8,192 rows (8 x 512 tokens x top-2) on its one expert, as one mm
    from wattlint.api import make_plan

    spec = resolve_gpu("a100")[0]
    p8 = make_plan(graph, spec, {"expert_parallel": 8, **{k: v for k, v in plan.items() if k not in ("gpu", "lint")}})
    per_gpu = P.per_gpu_graph(graph, p8)
    gu = next(r for r in per_gpu.records if "_grouped_mm" in r.op and r.phase is F)
    assert dict(gu.dims) == {"b": 1, "m": 8192, "n": 1024, "k": 256}
    t, _ = predict_records(public_fit, [gu], spec, "bf16", None)
    t_mm, _ = public_fit.predict([_mm(8192, 1024, 256, gu.dtype)], spec, "bf16")
    assert t[0] == pytest.approx(t_mm[0], rel=1e-12)


@pytest.mark.parametrize("gpu", ["a100", "h100"])
def test_scale_batch_of_grouped_gemms_prices_as_the_trace_at_that_batch(tmp_path_factory, public_fit, gpu):
    import wattlint
    from wattlint.energy import pricing
    from wattlint.lint.rules.hardware import batch_dims, scale_batch

    path = _config(tmp_path_factory, QWEN3_MOE, "qwen3moe")
    g2 = wattlint.analyze(path, seq_len=256, batch_size=2)
    g4 = wattlint.analyze(path, seq_len=256, batch_size=4)
    spec = resolve_gpu(gpu)[0]

    def grouped(g):
        pr = pricing.price(g, spec, "bf16", None, public_fit)
        return sum(t for r, t in zip(pr.records, pr.times_s) if "_grouped_mm" in r.op)

    # the batch lives in the jagged dim: rows (m) of 2-D x 3-D, the reduction (k) of the 2-D x 2-D weight gradient
    keys = {(len(r.shapes[0]), len(r.shapes[1])): k for r, k in zip(g2.records, batch_dims(g2))
            if "_grouped_mm" in r.op}
    assert keys == {(2, 3): "m", (2, 2): "k"}
    up, down = grouped(scale_batch(g2, 2)), grouped(scale_batch(g4, 0.5))
    assert up == pytest.approx(grouped(g4), rel=0.01)
    assert down == pytest.approx(grouped(g2), rel=0.01)
    # and the groups (16 experts) are not multiplied: the scaled records hold the traced records' b
    s = [r for r in scale_batch(g2, 2).records if "_grouped_mm" in r.op]
    t4 = [r for r in g4.records if "_grouped_mm" in r.op]
    assert [dict(r.dims) for r in s] == [dict(r.dims) for r in t4]
    assert [r.bytes_read for r in s] == pytest.approx([r.bytes_read for r in t4], rel=1e-9)
    assert [r.bytes_written for r in s] == pytest.approx([r.bytes_written for r in t4], rel=1e-9)
