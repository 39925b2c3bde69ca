"""FP8 training as NVIDIA Transformer Engine runs it (``--precision fp8``): which GEMMs run in FP8, and the casts.

The frontends trace ``--precision fp8`` as bf16 autocast. FP8 training on Hopper / Ada / Blackwell runs through
Transformer Engine (TE) modules (``te.Linear``, ``te.LayerNormLinear``, ``te.LayerNormMLP`` under ``fp8_autocast``
with delayed scaling): the recipe of Megatron-LM / NeMo, of Hugging Face Accelerate's ``mixed_precision="fp8"`` and of
llm-foundry's ``amp_fp8``. This module rewrites the traced records accordingly; every change is derived from the
records themselves, nothing is fitted:

1. **Which GEMMs run in FP8.** The linear layers (2-D GEMMs with a weight operand: ``mm`` / ``addmm``, ONNX
   ``MatMul`` / ``Gemm`` folded to one GEMM) inside the model's repeated blocks (:func:`wattlint.parallel.find_blocks`),
   forward and both backward GEMMs (data and weight gradient). Those stacks build their transformer layers from TE
   modules; the embedding and the output layer (the LM head) are plain PyTorch modules and stay in bf16 / fp16 (TE's
   FP8 primer: "the first and last layers of the network are usually kept in higher precision"). Batched matmuls
   between activations (eager attention scores), attention kernels and convolutions stay in half precision. A model
   without repeated blocks: every linear layer. The FP8 GEMMs read 1-byte operands (their records' bytes read are
   halved) and write the half-precision output; they are tagged ``('fp8', 1)`` and priced at the FP8 peak
   (:func:`wattlint.energy.prior.compute_dtype`).
2. **The casts.** TE quantizes each FP8 GEMM operand in its own bandwidth-bound kernel before the GEMM
   (``cast_transpose``: one read of the half-precision tensor, the FP8 copy and its transpose written, because
   Hopper's FP8 tensor-core GEMMs take only the TN layout and the weight-gradient GEMM needs the transposed operands).
   Per linear layer and micro-batch: forward, the input (m x k elements: 2 bytes read, 2 written) and the weight
   (k x n: its parameter bytes read, 2 written); backward, the output gradient (m x n: 2 read, 2 written). Under
   activation checkpointing the recomputed forward casts again (the cast records keep the GEMM's ``recompute``).
   Under the default ``pytorch`` stack TE casts the fp32 parameter itself, so autocast's weight cast of that layer
   (a forward fp32 -> half ``_to_copy`` of the weight's size) is dropped and the weight cast reads 4 bytes per element.

Not modelled (stated in the assumption line): the amax reductions and scaling-factor updates (a few small kernels per
layer and step), the FP8 weight copies TE keeps in memory, and FP8 attention (cuDNN's FP8 fused attention).
"""

from __future__ import annotations

import dataclasses
import math

from .types import CostGraph, OpKind, OpRecord, Phase

CAST_OP = "te::cast_transpose"
FLOAT_DTYPES = ("float32", "float16", "bfloat16")


def _numel(shape) -> int:
    return math.prod(int(d) for d in shape) if shape else 0


def _linear_gemm(r: OpRecord) -> bool:
    """A 2-D GEMM of a linear layer (one GEMM, not a batch of them), in half precision."""
    return (r.kind is OpKind.MATMUL and r.dim("b", 1) == 1 and r.dim("m", 0) > 0 and r.dim("k", 0) > 0
            and r.dim("n", 0) > 0 and r.dtype in ("bfloat16", "float16"))


def fp8_modules(graph: CostGraph) -> set[str]:
    """The modules whose forward linear GEMMs run in FP8 (rule 1 of the module doc)."""
    from .parallel import stage_blocks_of

    blocks = stage_blocks_of(graph)
    mods = {r.module for r in graph.records
            if r.phase is Phase.FORWARD and not r.recompute and _linear_gemm(r)}
    if blocks is not None:
        mods = {m for m in mods if blocks.index(m) is not None}
    return mods


def _cast(like: OpRecord, phase: Phase, elems: int, read_bytes: int, what: str) -> OpRecord:
    return OpRecord(op=CAST_OP, kind=OpKind.ELEMENTWISE, module=like.module, phase=phase, dtype=like.dtype,
                    shapes=((elems,),), flops=elems, bytes_read=elems * read_bytes, bytes_written=2 * elems,
                    module_type=like.module_type, dims=(("numel", elems), (what, 1)), recompute=like.recompute)


def _is_weight_cast(r: OpRecord, weight_elems: set[int]) -> bool:
    """Autocast's forward cast of a layer's fp32 weight to half precision."""
    return (r.op.split(".")[1:2] == ["_to_copy"] and r.phase is Phase.FORWARD and r.dtype == "float32"
            and r.flops == 0 and r.bytes_read == 2 * r.bytes_written and len(r.shapes) == 1
            and _numel(r.shapes[0]) in weight_elems)


def apply(graph: CostGraph, plan) -> CostGraph:
    """``graph`` with Transformer Engine's FP8 GEMMs and casts when ``plan.precision`` is fp8; else unchanged."""
    if getattr(plan, "precision", None) != "fp8" or (graph.extra or {}).get("fp8"):
        return graph
    mods = fp8_modules(graph)
    if not mods:
        return graph
    half_params = (graph.extra or {}).get("training_stack") == "megatron"
    param_bytes = 2 if half_params else 4
    weights: dict[str, set[int]] = {}
    for r in graph.records:
        if r.module in mods and r.phase is Phase.FORWARD and _linear_gemm(r):
            weights.setdefault(r.module, set()).add(r.dim("k") * r.dim("n"))
    out: list[OpRecord] = []
    pending_bwd: dict[str, list[OpRecord]] = {}  # module -> forward GEMMs whose output-gradient cast is due
    gemms = casts = dropped = 0
    for r in graph.records:
        if r.module not in mods:
            out.append(r)
            continue
        if not half_params and _is_weight_cast(r, weights.get(r.module, set())):
            dropped += 1
            continue
        if not _linear_gemm(r) or r.phase not in (Phase.FORWARD, Phase.BACKWARD):
            out.append(r)
            continue
        m, k, n = r.dim("m"), r.dim("k"), r.dim("n")
        if r.phase is Phase.FORWARD or r.recompute:  # a recomputed forward (checkpointing) casts again
            out.append(_cast(r, r.phase, m * k, 2, "fp8_input"))
            out.append(_cast(r, r.phase, k * n, param_bytes, "fp8_weight"))
            casts += 2
            if not r.recompute:
                pending_bwd.setdefault(r.module, []).append(r)
        else:
            for fwd in pending_bwd.pop(r.module, []):  # before the module's first backward GEMM
                out.append(_cast(r, r.phase, fwd.dim("m") * fwd.dim("n"), 2, "fp8_grad_output"))
                casts += 1
        out.append(dataclasses.replace(r, bytes_read=r.bytes_read // 2, dims=tuple(sorted(r.dims + (("fp8", 1),)))))
        gemms += 1
    note = (f"precision fp8 (Transformer Engine recipe): {gemms:,} linear-layer GEMMs inside the repeated blocks "
            f"run at the FP8 peak with 1-byte operands; the embedding, the output layer, attention and batched "
            f"matmuls stay in half precision; {casts:,} cast-transpose kernels quantize the inputs, weights and "
            f"output gradients (bandwidth-bound)"
            + (f"; {dropped:,} autocast weight casts replaced by them" if dropped else "")
            + "; amax / scaling-factor updates and FP8 weight copies not counted")
    extra = dict(graph.extra or {})
    extra["fp8"] = {"gemms": gemms, "casts": casts}
    return dataclasses.replace(graph, records=tuple(out), extra=extra,
                               assumptions=tuple(graph.assumptions) + (note,))
