"""FP8 training as Transformer Engine runs it (wattlint.fp8): which GEMMs run in FP8, the casts, by hand."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from wattlint import fp8
from wattlint.energy import prior
from wattlint.hardware import resolve_gpu
from wattlint.types import CostGraph, ModelInfo, OpKind, OpRecord, Phase, Plan

F, B = Phase.FORWARD, Phase.BACKWARD
MM = OpKind.MATMUL
ROOT = Path(__file__).resolve().parent.parent


def gemm(op, module, phase, m, k, n, dtype="bfloat16", recompute=False):
    """A 2-D GEMM record m x k @ k x n (2-byte operands read, output written)."""
    return OpRecord(op=f"aten.{op}.default", kind=MM, module=module, phase=phase, dtype=dtype,
                    shapes=((m, k), (k, n)), flops=2 * m * k * n, bytes_read=2 * (m * k + k * n),
                    bytes_written=2 * m * n, module_type="Linear",
                    dims=(("b", 1), ("k", k), ("m", m), ("n", n)), recompute=recompute)


# two transformer blocks, each one Linear 32 -> 16 over 64 tokens, and an LM head 32 -> 100 (outside the blocks)
def records(weight_cast=False, recompute=False):
    out = []
    for i in (0, 1):
        if weight_cast:  # autocast's cast of the fp32 weight (32 x 16): 4 bytes read, 2 written per element
            out.append(OpRecord(op="aten._to_copy.default", kind=OpKind.MEMORY, module=f"h.{i}.fc", phase=F,
                                dtype="float32", shapes=((32, 16),), bytes_read=2048, bytes_written=1024))
            out.append(OpRecord(op="aten._to_copy.default", kind=OpKind.MEMORY, module=f"h.{i}.fc", phase=F,
                                dtype="float32", shapes=((16,),), bytes_read=64, bytes_written=32))  # the bias
        out.append(gemm("addmm", f"h.{i}.fc", F, 64, 32, 16))
    out.append(gemm("mm", "lm_head", F, 64, 32, 100))
    out.append(gemm("mm", "lm_head", B, 64, 100, 32))
    for i in (1, 0):
        if recompute:
            out.append(gemm("addmm", f"h.{i}.fc", B, 64, 32, 16, recompute=True))
        out.append(gemm("mm", f"h.{i}.fc", B, 64, 16, 32))  # data gradient
        out.append(gemm("mm", f"h.{i}.fc", B, 32, 64, 16))  # weight gradient
    return tuple(out)


def graph(recs, stack=None):
    return CostGraph(model=ModelInfo(name="t", source="t", format="torch", params=1536, trainable_params=1536,
                                     param_bytes=6144),
                     records=recs, precision="fp8", optimizer="adamw",
                     extra={"training_stack": stack} if stack else {})


def plan(precision="fp8", grad_accum=1):
    return Plan(batch_size=grad_accum, steps=1, precision=precision, optimizer="adamw", pue=1.0,
                carbon_intensity_g_per_kwh=1.0, grad_accum=grad_accum)


def attention(module, phase=F):
    return OpRecord(op="aten._scaled_dot_product_flash_attention.default", kind=OpKind.ATTENTION, module=module,
                    phase=phase, dtype="bfloat16", flops=1, bytes_read=1, bytes_written=1,
                    dims=(("b", 1), ("d", 16), ("h", 2), ("sk", 32), ("sq", 32)))


def casts(g, what=None):
    return [r for r in g.records if r.op == fp8.CAST_OP and (what is None or r.dim(what))]


def test_only_the_blocks_linear_gemms_run_in_fp8():
    g = fp8.apply(graph(records(), "megatron"), plan())
    tagged = [r for r in g.records if r.dim("fp8")]
    # per block: the forward GEMM and both backward GEMMs; the LM head (outside the blocks) stays in bf16
    assert len(tagged) == 6 and {r.module for r in tagged} == {"h.0.fc", "h.1.fc"}
    assert not any(r.dim("fp8") for r in g.records if r.module == "lm_head")
    fwd = next(r for r in tagged if r.phase is F)
    assert fwd.bytes_read == (64 * 32 + 32 * 16)  # 1-byte operands: half of the bf16 record's 2 x (2048 + 512)
    assert fwd.bytes_written == 2 * 64 * 16 and fwd.flops == 2 * 64 * 32 * 16  # output and FLOPs unchanged
    gpu, _ = resolve_gpu("h100")
    assert prior.compute_dtype(fwd, gpu, "fp8") == "fp8"
    head = next(r for r in g.records if r.module == "lm_head" and r.phase is F)
    assert prior.compute_dtype(head, gpu, "fp8") == "bf16"


def test_cast_transpose_bytes_by_hand():
    g = fp8.apply(graph(records(), "megatron"), plan())
    x, w, dy = casts(g, "fp8_input"), casts(g, "fp8_weight"), casts(g, "fp8_grad_output")
    assert len(x) == len(w) == len(dy) == 2
    # input 64 x 32 = 2048 elements: 2 bytes read (bf16), FP8 copy + transpose written (2 x 1 byte)
    assert {(r.bytes_read, r.bytes_written, r.phase) for r in x} == {(4096, 4096, F)}
    # weight 32 x 16 = 512 elements, bf16 parameters (megatron stack): 1024 read, 1024 written
    assert {(r.bytes_read, r.bytes_written) for r in w} == {(1024, 1024)}
    # output gradient 64 x 16 = 1024 elements, cast in backward before the block's first backward GEMM
    assert {(r.bytes_read, r.bytes_written, r.phase) for r in dy} == {(2048, 2048, B)}
    recs = list(g.records)
    for r in dy:
        first_bwd = next(i for i, q in enumerate(recs) if q.module == r.module and q.phase is B and q.kind is MM)
        assert recs.index(r) == first_bwd - 1
    assert g.extra["fp8"] == {"gemms": 6, "casts": 6}
    assert any("Transformer Engine" in a for a in g.assumptions)


def test_pytorch_stack_weight_cast_replaced_by_the_fp8_cast():
    g = fp8.apply(graph(records(weight_cast=True)), plan())
    copies = [r for r in g.records if r.op == "aten._to_copy.default"]
    assert [r.shapes for r in copies] == [((16,),), ((16,),)]  # the weight casts are gone, the bias casts stay
    # TE casts the fp32 parameter itself: 512 elements x 4 bytes read, 2 x 1 byte written
    assert {(r.bytes_read, r.bytes_written) for r in casts(g, "fp8_weight")} == {(2048, 1024)}


def test_recomputed_forward_casts_again_without_a_second_gradient_cast():
    g = fp8.apply(graph(records(recompute=True), "megatron"), plan())
    # forward + recompute inputs, 2 blocks; megatron's recompute reuses the step's FP8 weights
    assert len(casts(g, "fp8_input")) == 4 and len(casts(g, "fp8_weight")) == 2
    assert len(casts(fp8.apply(graph(records(recompute=True)), plan()), "fp8_weight")) == 4  # pytorch: cast again
    assert all(r.recompute for r in casts(g, "fp8_input") if r.phase is B)
    assert len(casts(g, "fp8_grad_output")) == 2
    assert len([r for r in g.records if r.dim("fp8")]) == 8  # + the 2 recomputed forward GEMMs


def test_other_precisions_and_a_second_pass_leave_the_graph_alone():
    g = graph(records(), "megatron")
    assert fp8.apply(g, plan("bf16")) is g
    once = fp8.apply(g, plan())
    assert fp8.apply(once, plan()) is once


def test_fp8_step_faster_than_bf16_on_large_gemms_but_not_twice():
    """Blocks of 16384 x 4096 x 4096 GEMMs on an H100: each FP8 GEMM takes about half its bf16 time (~0.77 ms in
    bf16), and the casts take back part of the saving: per block the input (67.1 M elements x 4 bytes moved) and the
    fp32 weight (16.8 M x (4 + 2)) = 369 MB at ~2.85 TB/s (85 % of 3.35) = ~0.13 ms. Forward: 0.5 + 0.13 / 0.77 =
    ~0.67 of the bf16 time (without the casts it would be 0.5)."""
    import wattlint

    big = []
    for i in range(4):
        big.append(gemm("mm", f"h.{i}.fc", F, 16384, 4096, 4096))
    for i in reversed(range(4)):
        big += [gemm("mm", f"h.{i}.fc", B, 16384, 4096, 4096), gemm("mm", f"h.{i}.fc", B, 4096, 16384, 4096)]
    g = CostGraph(model=ModelInfo(name="t", source="t", format="torch", params=4 * 4096 * 4096,
                                  trainable_params=4 * 4096 * 4096, param_bytes=4 * 4 * 4096 * 4096),
                  records=tuple(big), precision="bf16", optimizer="adamw")
    kw = dict(gpu="h100", batch_size=1, steps=1, lint=False, host_op_time=0.0)
    t8 = wattlint.estimate(g, precision="fp8", **kw).phases["forward"].time_s
    t16 = wattlint.estimate(g, precision="bf16", **kw).phases["forward"].time_s
    assert 0.6 < t8 / t16 < 0.75


def test_onnx_fp8_is_traced_in_bf16_and_the_block_linears_chosen_at_estimate_time():
    """The ONNX GPT-2 example (4 blocks of 4 linear layers, and an LM head): 4 x 4 x 3 GEMMs run in FP8 (forward,
    data and weight gradient); the head's stay in bf16."""
    import wattlint

    path = ROOT / "examples" / "gpt2-tiny.onnx"
    if not path.exists():
        pytest.skip("examples/gpt2-tiny.onnx not built")
    e8 = wattlint.estimate(str(path), precision="fp8", gpu="h100", batch_size=8, steps=1, lint=False)
    assert e8.graph.extra["fp8"]["gemms"] == 4 * 4 * 3
    assert not any(r.dtype.startswith("float8") for r in e8.graph.records)
    assert sum(1 for r in e8.graph.records if r.dim("fp8")) == 48


def test_an_fp32_trace_gets_its_fp8_gemms_too():
    """A graph traced in fp32 (ONNX, or a torch trace without autocast) is autocast by pricing; the rewrite sees
    its GEMMs as pricing will run them, so the blocks' linears still run in FP8."""
    recs = tuple(dataclasses.replace(r, dtype="float32", bytes_read=2 * r.bytes_read,
                                     bytes_written=2 * r.bytes_written) for r in records())
    g = dataclasses.replace(graph(recs), precision="fp32")
    out = fp8.apply(g, plan())
    tagged = [r for r in out.records if r.dim("fp8")]
    assert len(tagged) == 6 and {r.dtype for r in tagged} == {"bfloat16"}
    assert {r.bytes_read for r in tagged if r.phase is F} == {64 * 32 + 32 * 16}  # fp32 -> bf16 -> 1-byte operands
    assert any(a.startswith("fp8 autocast applied to the fp32 graph") for a in out.assumptions)


def test_both_stacks_of_an_encoder_decoder_run_in_fp8():
    recs = []
    for stack in ("encoder.block", "decoder.block"):
        for i in (0, 1):
            recs.append(gemm("mm", f"{stack}.{i}.wi", F, 64, 32, 16))
    recs.append(gemm("mm", "lm_head", F, 64, 32, 128))
    g = fp8.apply(graph(tuple(recs), "megatron"), plan())
    assert {r.module for r in g.records if r.dim("fp8")} == {"encoder.block.0.wi", "encoder.block.1.wi",
                                                              "decoder.block.0.wi", "decoder.block.1.wi"}


def test_layers_fed_one_tensor_share_its_input_cast_and_unaligned_layers_stay_bf16():
    """q / k / v read the same 64 x 32 input: one input cast (TE's fused LayerNormLinear); the output projection
    after the attention kernel casts its own; a router of 8 outputs (not a multiple of 16) stays in bf16."""
    recs = []
    for i in (0, 1):
        a = f"h.{i}.attn"
        recs += [gemm("mm", f"{a}.q", F, 64, 32, 32), gemm("mm", f"{a}.k", F, 64, 32, 16),
                 gemm("mm", f"{a}.v", F, 64, 32, 16), attention(a), gemm("mm", f"{a}.o", F, 64, 32, 32),
                 gemm("mm", f"h.{i}.router", F, 64, 32, 8)]
    g = fp8.apply(graph(tuple(recs), "megatron"), plan())
    inputs = casts(g, "fp8_input")
    assert [(r.module, r.dim("numel")) for r in inputs] == [("h.0.attn.q", 2048), ("h.0.attn.o", 2048),
                                                             ("h.1.attn.q", 2048), ("h.1.attn.o", 2048)]
    assert len(casts(g, "fp8_weight")) == 8  # every FP8 layer's own weight
    assert not any(r.dim("fp8") for r in g.records if r.module.endswith("router"))


def test_megatron_casts_the_weights_once_per_step():
    """Under --training-stack megatron TE keeps the FP8 weights of the first micro-batch (is_first_microbatch):
    with 4 micro-batches per step each micro-batch carries a quarter of the weight casts' bytes."""
    g = fp8.apply(graph(records(), "megatron"), plan(grad_accum=4))
    assert {(r.bytes_read, r.bytes_written) for r in casts(g, "fp8_weight")} == {(1024 // 4, 1024 // 4)}
    assert {(r.bytes_read, r.bytes_written) for r in casts(g, "fp8_input")} == {(4096, 4096)}  # per micro-batch


def test_pytorch_stack_input_cast_from_fp32_reads_4_bytes():
    """Autocast cast the fp32 input (64 x 32) and the weight (32 x 16) before the layer; TE casts both itself."""
    recs = []
    for i in (0, 1):
        m = f"h.{i}.fc"
        recs += [OpRecord(op="aten._to_copy.default", kind=OpKind.MEMORY, module=m, phase=F, dtype="float32",
                          shapes=((64, 32),), bytes_read=8192, bytes_written=4096),
                 OpRecord(op="aten._to_copy.default", kind=OpKind.MEMORY, module=m, phase=F, dtype="float32",
                          shapes=((32, 16),), bytes_read=2048, bytes_written=1024),
                 gemm("addmm", m, F, 64, 32, 16)]
    g = fp8.apply(graph(tuple(recs)), plan())
    assert not any(r.op == "aten._to_copy.default" for r in g.records)
    assert {(r.bytes_read, r.bytes_written) for r in casts(g, "fp8_input")} == {(64 * 32 * 4, 64 * 32 * 2)}
    assert {(r.bytes_read, r.bytes_written) for r in casts(g, "fp8_weight")} == {(32 * 16 * 4, 32 * 16 * 2)}


def test_a_rewritten_graph_without_its_flag_is_not_rewritten_again():
    once = fp8.apply(graph(records(), "megatron"), plan())
    stripped = dataclasses.replace(once, extra={"training_stack": "megatron"})
    assert fp8.apply(stripped, plan()) is stripped


def test_a_model_without_fp8_layers_says_so():
    """A CNN's classifier of 1,000 outputs (not a multiple of 16) and no repeated blocks: nothing runs in FP8."""
    recs = (gemm("addmm", "fc", F, 64, 2048, 1000), gemm("mm", "fc", B, 64, 1000, 2048))
    g = fp8.apply(graph(recs), plan())
    assert g.records == recs and g.extra["fp8"] == {"gemms": 0, "casts": 0}
    assert any("no linear layer of this model qualifies" in a for a in g.assumptions)


def test_compare_costs_a_gpu_without_fp8_in_bf16_as_on_its_own():
    """--compare h100,a100 --precision fp8: the A100 (no FP8 tensor cores) is costed as bf16, with no FP8 rewrite,
    exactly as a bf16 estimate of it alone; the H100 gets the rewrite (the shared price cache keys it apart)."""
    from wattlint.api import estimate_many

    path = ROOT / "examples" / "gpt2-tiny.onnx"
    if not path.exists():
        pytest.skip("examples/gpt2-tiny.onnx not built")
    kw = dict(batch_size=8, steps=10, lint=False)
    h100, a100 = estimate_many(str(path), ["h100", "a100"], precision="fp8", **kw)
    alone = estimate_many(str(path), ["a100"], precision="bf16", **kw)[0]
    assert a100.plan.precision == "bf16" and "fp8" not in (a100.graph.extra or {})
    assert a100.per_step.time_s == alone.per_step.time_s and a100.per_step.gpu_energy_j == alone.per_step.gpu_energy_j
    assert h100.graph.extra["fp8"]["gemms"] == 48


def test_an_fp8_trace_says_it_ran_bf16_autocast_and_the_megatron_stack_drops_that_line(gpt_config):
    """Review: an fp8 plan's trace said 'fp8 autocast emulated ... matmul in bfloat16' (no such autocast) beside
    the Transformer Engine line, and kept it under the megatron stack, which replaces autocast."""
    import wattlint

    kw = dict(gpu="h100", steps=1, batch_size=2, seq_len=256, precision="fp8", lint=False)
    plain = wattlint.estimate(str(gpt_config), **kw).assumptions
    assert not any("fp8 autocast" in a for a in plain)
    (line,) = [a for a in plain if a.startswith("precision: bf16 autocast emulated")]
    assert "an fp8 plan is traced so" in line
    mega = wattlint.estimate(str(gpt_config), training_stack="megatron", **kw).assumptions
    assert not any("autocast emulated" in a for a in mega) and any("Transformer Engine" in a for a in mega)
