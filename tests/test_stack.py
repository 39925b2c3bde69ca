"""--training-stack megatron (wattlint.stack): the traced step rewritten as Megatron/DeepSpeed-style bf16 training
runs it. Record-level rules on a hand-built graph (expected bytes computed by hand), memory, plan refusal, the
option through the CLI / API / JSON, and an end-to-end Llama-shaped decoder."""

from __future__ import annotations

import json

import pytest

import wattlint
from wattlint import memory
from wattlint.hardware import resolve_gpu
from wattlint.stack import megatron
from wattlint.types import ConfigError, CostGraph, ModelInfo, OpKind, OpRecord, Phase, Plan

F, B, OPT = Phase.FORWARD, Phase.BACKWARD, Phase.OPTIMIZER
E, N, M = OpKind.ELEMENTWISE, OpKind.NORM, OpKind.MEMORY


def rec(op, kind, module, phase, dtype, shapes, flops, read, written, mtype=""):
    return OpRecord(op=f"aten.{op}.default", kind=kind, module=module, phase=phase, dtype=dtype, shapes=shapes,
                    flops=flops, bytes_read=read, bytes_written=written, module_type=mtype)


# a block of hidden 8 over 2 tokens (x: (1, 2, 8), 16 elements) with an RMSNorm as HF writes it, a gated MLP of
# width 16 (32 elements), a residual add and a root-level loss cast; 100 trainable parameters, AdamW
NORM = "blk.norm"
RMS = "LlamaRMSNorm"
X, W, H = (1, 2, 8), (8,), (1, 2, 16)
RECORDS = (
    rec("_to_copy", M, NORM, F, "bfloat16", (X,), 0, 32, 64, RMS),          # HF's .to(float32): a cast
    rec("pow", E, NORM, F, "float32", (X,), 32, 64, 64, RMS),
    rec("mean", OpKind.REDUCTION, NORM, F, "float32", (X,), 16, 64, 8, RMS),
    rec("rsqrt", E, NORM, F, "float32", ((1, 2, 1),), 4, 8, 8, RMS),
    rec("mul", E, NORM, F, "float32", (X, (1, 2, 1)), 16, 72, 64, RMS),
    rec("mul", E, NORM, F, "float32", (W, X), 16, 96, 64, RMS),
    rec("_to_copy", M, "blk.mlp.up", F, "float32", ((8, 16),), 0, 512, 256, "Linear"),  # autocast weight cast
    rec("mm", OpKind.MATMUL, "blk.mlp.gate", F, "bfloat16", ((2, 8), (8, 16)), 512, 288, 64, "Linear"),
    rec("silu", E, "blk.mlp.act", F, "bfloat16", (H,), 160, 64, 64, "SiLU"),
    rec("mm", OpKind.MATMUL, "blk.mlp.up", F, "bfloat16", ((2, 8), (8, 16)), 512, 288, 64, "Linear"),
    rec("mul", E, "blk.mlp", F, "bfloat16", (H, H), 32, 128, 64, "LlamaMLP"),
    rec("add", E, "blk", F, "float32", (X, X), 16, 128, 64, "Block"),     # residual add, fp32 under autocast
    rec("_to_copy", M, "", F, "bfloat16", ((2, 16),), 0, 64, 128, "Model"),  # the loss's fp32 logits: kept
    rec("mul", E, "blk.mlp", B, "bfloat16", (H, H), 32, 128, 64, "LlamaMLP"),
    rec("mul", E, "blk.mlp", B, "bfloat16", (H, H), 32, 128, 64, "LlamaMLP"),
    rec("mm", OpKind.MATMUL, "blk.mlp.up", B, "bfloat16", ((16, 2), (2, 8)), 512, 96, 256, "Linear"),
    rec("silu_backward", E, "blk.mlp.act", B, "bfloat16", (H, H), 320, 128, 64, "SiLU"),
    rec("mul", E, NORM, B, "float32", (X, W), 16, 96, 64, RMS),
    rec("sum", OpKind.REDUCTION, NORM, B, "float32", (X,), 16, 64, 8, RMS),
    rec("add", E, NORM, B, "float32", (X, X), 16, 128, 64, RMS),
    rec("_foreach_mul_", OpKind.OPTIMIZER, "", OPT, "float32", (), 100, 400, 400, "Model"),
    rec("_foreach_addcdiv_", OpKind.OPTIMIZER, "", OPT, "float32", (), 200, 1200, 400, "Model"),
)


def graph(records=RECORDS, precision="bf16"):
    return CostGraph(model=ModelInfo(name="t", source="t", format="torch", params=100, trainable_params=100, param_bytes=400),
                     records=tuple(records), precision=precision, optimizer="adamw")


def by_op(g, op, phase=None):
    return [r for r in g.records if r.op == op and (phase is None or r.phase is phase)]


def test_casts_inside_the_model_dropped_root_cast_kept():
    g, notes = megatron(graph(), "bf16", "adamw")
    casts = [r for r in g.records if r.op == "aten._to_copy.default"]
    assert [r.module for r in casts] == [""]  # only the loss's logits cast is left
    assert "2 autocast cast kernels dropped" in notes[0]
    assert g.extra["training_stack"] == "megatron" and g.precision == "bf16"


def test_norm_run_is_one_fused_kernel_hand_computed():
    g, _ = megatron(graph(), "bf16", "adamw")
    fwd, = by_op(g, "fused::rms_norm")
    # x (1, 2, 8): n = 16 elements of 2 bytes, weight 8 x 2 bytes; statistics: 2 rows x 2 x 4 bytes (fp32)
    assert (fwd.bytes_read, fwd.bytes_written) == (16 * 2 + 8 * 2, 16 * 2 + 2 * 2 * 4)
    assert fwd.flops == 32 + 16 + 4 + 16 + 16  # the merged records' FLOPs
    assert fwd.kind is OpKind.NORM and fwd.dtype == "bfloat16"
    bwd, = by_op(g, "fused::rms_norm_backward")
    # reads dy and x (2 x 16 x 2), the weight (8 x 2) and the statistics (2 x 2 x 4); writes dx and dweight
    assert (bwd.bytes_read, bwd.bytes_written) == (2 * 16 * 2 + 8 * 2 + 2 * 2 * 4, 16 * 2 + 8 * 2)  # RMS: no bias gradient
    assert bwd.flops == 16 + 16 + 16
    assert not [r for r in g.records if r.module == NORM and not r.op.startswith("fused::")]
    assert "2 norm kernels" in megatron(graph(), "bf16", "adamw")[1][0]


def test_gated_activation_fused_forward_and_backward():
    g, notes = megatron(graph(), "bf16", "adamw")
    fwd, = by_op(g, "fused::gated_silu")
    n = 1 * 2 * 16
    assert (fwd.bytes_read, fwd.bytes_written, fwd.flops) == (2 * n * 2, n * 2, 160 + 32)
    bwd, = by_op(g, "fused::gated_silu_backward")
    assert (bwd.bytes_read, bwd.bytes_written, bwd.flops) == (3 * n * 2, 2 * n * 2, 320 + 32 + 32)
    assert not [r for r in g.records if r.module == "blk.mlp"]  # the gate muls are inside the fused kernels
    assert "2 gated activations" in notes[0]


def test_recomputed_forward_fused_as_forward():
    """Under full recompute the forward re-run inside backward (recompute=True records) is fused like the forward:
    a forward norm kernel and a forward gated activation, not their backward costs."""
    import dataclasses

    fwd = [r for r in RECORDS if r.phase is F and r.module != ""]
    again = [dataclasses.replace(r, phase=B, recompute=True) for r in fwd]
    g, _ = megatron(graph(again), "bf16", "adamw")
    norm, = by_op(g, "fused::rms_norm")
    assert norm.recompute and norm.phase is B
    assert (norm.bytes_read, norm.bytes_written) == (16 * 2 + 8 * 2, 16 * 2 + 2 * 2 * 4)
    gate, = by_op(g, "fused::gated_silu")
    assert (gate.bytes_read, gate.bytes_written) == (2 * 32 * 2, 32 * 2)


def test_no_gate_no_fusion():
    """A plain activation (GPT-2's GELU MLP: no element-wise gate in the parent module) is left as one kernel."""
    records = [rec("gelu", E, "blk.mlp.act", F, "bfloat16", (H,), 160, 64, 64, "GELU"),
               rec("mm", OpKind.MATMUL, "blk.mlp.down", F, "bfloat16", ((2, 16), (16, 8)), 512, 320, 32, "Linear"),
               rec("add", E, "blk", F, "bfloat16", (X, X), 16, 64, 32, "Block")]
    g, _ = megatron(graph(records), "bf16", "adamw")
    assert [r.op for r in g.records] == [r.op for r in records]


ATT = "blk.attn"
S = (1, 2, 4, 4)  # batch 1, 2 heads, 4 x 4 scores: 32 elements


def test_eager_attention_scale_mask_softmax_fused():
    """Megatron's FusedScaleMaskSoftmax: scale and mask records feeding the softmax join its kernel; backward, the
    softmax gradient and the scale's gradient are one kernel. Bytes by hand: n = 32 elements x 2 bytes."""
    records = [rec("bmm", OpKind.MATMUL, ATT, F, "bfloat16", ((2, 4, 8), (2, 8, 4)), 512, 128, 64, "Attn"),
               rec("mul", E, ATT, F, "bfloat16", (S,), 32, 64, 64, "Attn"),
               rec("add", E, ATT, F, "bfloat16", (S, (1, 1, 4, 4)), 32, 96, 128, "Attn"),
               rec("_softmax", OpKind.SOFTMAX, ATT, F, "float32", (S,), 160, 128, 128, "Attn"),
               rec("native_dropout", OpKind.DROPOUT, ATT, F, "bfloat16", (S,), 96, 64, 96, "Attn"),
               rec("_softmax_backward_data", OpKind.SOFTMAX, ATT, B, "float32", (S, S), 128, 256, 128, "Attn"),
               rec("mul", E, ATT, B, "bfloat16", (S,), 32, 64, 64, "Attn"),
               rec("bmm", OpKind.MATMUL, ATT, B, "bfloat16", ((2, 8, 4), (2, 4, 4)), 512, 128, 64, "Attn")]
    g, notes = megatron(graph(records), "bf16", "adamw")
    assert [r.op for r in g.records] == ["aten.bmm.default", "fused::scale_mask_softmax", "aten.native_dropout.default",
                                         "fused::scale_mask_softmax_backward", "aten.bmm.default"]
    fwd, bwd = g.records[1], g.records[3]
    assert (fwd.bytes_read, fwd.bytes_written, fwd.flops) == (32 * 2, 32 * 2, 32 + 32 + 160)
    assert (bwd.bytes_read, bwd.bytes_written, bwd.flops) == (2 * 32 * 2, 32 * 2, 128 + 32)
    assert "2 scale-mask-softmax calls" in notes[0]


def test_dropout_then_residual_add_fused():
    """Megatron's fused bias-dropout-add: reads x and the residual (2 x 16 x 2 bytes), writes the sum (16 x 2)
    and the 1-byte mask (16); a dropout not followed by a residual add is left alone."""
    records = [rec("native_dropout", OpKind.DROPOUT, "blk.attn.drop", F, "bfloat16", (X,), 48, 32, 48, "Dropout"),
               rec("add", E, "blk", F, "bfloat16", (X, X), 16, 64, 32, "Block"),
               rec("native_dropout", OpKind.DROPOUT, "blk.attn.drop2", F, "bfloat16", (X,), 48, 32, 48, "Dropout"),
               rec("mul", E, "blk", F, "bfloat16", (X, X), 16, 64, 32, "Block")]
    g, notes = megatron(graph(records), "bf16", "adamw")
    assert [r.op for r in g.records] == ["fused::dropout_add", "aten.native_dropout.default", "aten.mul.default"]
    assert (g.records[0].bytes_read, g.records[0].bytes_written, g.records[0].flops) == (2 * 16 * 2, 16 * 2 + 16,
                                                                                          48 + 16)
    assert "1 dropout + residual adds" in notes[0]


def test_fp32_elementwise_in_half_precision():
    g, _ = megatron(graph(), "bf16", "adamw")
    add, = [r for r in g.records if r.module == "blk" and r.phase is F]
    assert (add.dtype, add.bytes_read, add.bytes_written) == ("bfloat16", 128 // 2, 64 // 2)


def test_fused_optimizer_over_fp32_master_and_param_copy():
    g, _ = megatron(graph(), "bf16", "adamw")
    opt = [r for r in g.records if r.phase is OPT]
    assert [r.op for r in opt] == ["fused::multi_tensor_adamw", "fused::master_to_model_params"]
    step, copy = opt
    # AdamW on 100 fp32 master weights: reads param, grad, exp_avg, exp_avg_sq (4 x 4 bytes), writes param and
    # both moments (3 x 4 bytes); 15 FLOPs per element (costs.OPTIMIZER_FLOPS)
    assert (step.bytes_read, step.bytes_written, step.flops) == (100 * 16, 100 * 12, 100 * 15)
    assert (copy.bytes_read, copy.bytes_written) == (100 * 4, 100 * 2)


def test_idempotent_and_fp16():
    g, _ = megatron(graph(), "bf16", "adamw")
    again, notes = megatron(g, "bf16", "adamw")
    assert again is g and notes == []
    h, notes = megatron(graph(), "fp16", "adamw")
    assert {r.dtype for r in h.records if r.op.startswith("fused::") and r.phase is not OPT} == {"float16"}
    assert "fp16 module parameters" in notes[0]


def test_fp32_traced_matmuls_typed_half():
    """A graph traced without autocast: its fp32 matmuls are typed half (as pricing's autocast would) so that the
    rewrite does not leave them at fp32 next to half-precision element-wise work."""
    mm = rec("mm", OpKind.MATMUL, "blk.mlp.gate", F, "float32", ((2, 8), (8, 16)), 512, 576, 128, "Linear")
    g, _ = megatron(graph([mm], precision="fp32"), "bf16", "adamw")
    assert (g.records[0].dtype, g.records[0].bytes_read, g.records[0].bytes_written) == ("bfloat16", 288, 64)


# ---- memory ------------------------------------------------------------------------------------------------------

def _plan(**kw):
    base = dict(batch_size=8, steps=1, precision="bf16", optimizer="adamw", pue=1.0, carbon_intensity_g_per_kwh=1.0,
                training_stack="megatron")
    base.update(kw)
    return Plan(**base)


def test_memory_bf16_weights_fp32_master_hand_computed():
    from _estimate_fixtures import mlp_graph

    g = mlp_graph(width=512, layers=2, activation_bytes=1000)
    gpu, _ = resolve_gpu("a100")
    p = g.params
    b = memory.peak_memory(g, gpu, _plan())["breakdown"]
    assert (b["weights"], b["master_weights"], b["gradients"], b["optimizer_state"], b["weight_casts"]) == \
        (2 * p, 4 * p, 4 * p, 8 * p, 0)  # 18 bytes per parameter, as autocast's 4 + 2 + 4 + 8
    z1 = memory.peak_memory(g, gpu, _plan(gpus=4, sharding="zero1"))["breakdown"]
    assert (z1["master_weights"], z1["optimizer_state"], z1["gradients"]) == (p, 2 * p, 4 * p)  # master / 4
    f16 = memory.peak_memory(g, gpu, _plan(precision="fp16"))["breakdown"]
    assert f16["gradients"] == 2 * p
    assert "master_weights" not in memory.peak_memory(g, gpu, _plan(training_stack="pytorch"))["breakdown"]


# ---- plan, CLI, API, end to end ----------------------------------------------------------------------------------

LLAMA = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=256, intermediate_size=688,
             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=1000,
             max_position_embeddings=256, rms_norm_eps=1e-5, hidden_act="silu")


@pytest.fixture(scope="module")
def llama_config(tmp_path_factory):
    p = tmp_path_factory.mktemp("llama") / "config.json"
    p.write_text(json.dumps(LLAMA))
    return p


def test_megatron_needs_half_precision(llama_config):
    with pytest.raises(ConfigError, match="--training-stack megatron needs --precision bf16, fp16 or fp8"):
        wattlint.estimate(str(llama_config), gpu="a100", seq_len=128, precision="fp32", steps=1, lint=False,
                          training_stack="megatron")


def test_cli_bad_stack_and_fp32_exit_2(run_cli, llama_config):
    code, _, err = run_cli(llama_config, "--seq-len", "128", "--steps", "1", "--training-stack", "deepspeed")
    assert code == 2 and "--training-stack" in err and "Traceback" not in err
    code, _, err = run_cli(llama_config, "--seq-len", "128", "--steps", "1", "--training-stack", "megatron")
    assert code == 2 and err.count("\n") == 1 and "needs --precision" in err


def test_end_to_end_faster_and_stated(run_cli, llama_config):
    base = dict(gpu="a100-sxm4-80gb", seq_len=128, precision="bf16", steps=1, lint=False, batch_size=4)
    py = wattlint.estimate(str(llama_config), **base)
    mg = wattlint.estimate(str(llama_config), training_stack="megatron", **base)
    mm = lambda e: sum(r.flops for r in e.graph.records if r.kind is OpKind.MATMUL)  # noqa: E731
    assert mm(py) == mm(mg)  # the matmuls are the same work
    assert mg.phases["forward"].time_s < py.phases["forward"].time_s
    assert mg.phases["backward"].time_s < py.phases["backward"].time_s
    assert any("training stack megatron" in a for a in mg.plan.assumptions)
    code, out, err = run_cli(llama_config, "--seq-len", "128", "--steps", "1", "--precision", "bf16",
                             "--batch-size", "4", "--training-stack", "megatron", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    import jsonschema
    from importlib import resources

    schema = json.loads(resources.files("wattlint.schemas").joinpath("estimate.schema.json").read_text())
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    assert data["plan"]["training_stack"] == "megatron"
    assert "master_weights" in data["memory"]["breakdown"]
    assert any("training stack megatron" in a for a in data["assumptions"])


def test_parallel_plan_applies_the_stack_before_the_split(llama_config):
    base = dict(gpu="a100-sxm4-80gb", seq_len=128, precision="bf16", steps=1, lint=False, batch_size=8, gpus=4,
                tensor_parallel=2, pipeline_parallel=2, micro_batch_size=1)
    mg = wattlint.estimate(str(llama_config), training_stack="megatron", **base)
    assert mg.graph.extra["training_stack"] == "megatron" and mg.graph.extra["parallel_layout"]["tp"] == 2
    assert any(r.op == "fused::rms_norm" for r in mg.graph.records)
