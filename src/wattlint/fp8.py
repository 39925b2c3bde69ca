"""FP8 training as NVIDIA Transformer Engine runs it (``--precision fp8``): which GEMMs run in FP8, and the casts.

The frontends trace ``--precision fp8`` as bf16 autocast. FP8 training on Hopper / Ada / Blackwell runs through
Transformer Engine (TE) modules (``te.Linear``, ``te.LayerNormLinear``, ``te.LayerNormMLP``, ``te.GroupedLinear``
under ``fp8_autocast`` with delayed scaling): the recipe of Megatron-LM / NeMo, of Hugging Face Accelerate's
``mixed_precision="fp8"`` and of llm-foundry's ``amp_fp8``. This module rewrites the per-GPU records accordingly
(after sharding, so every size is one GPU's); every change is derived from the records, nothing is fitted:

1. **Which GEMMs run in FP8.** The linear layers (2-D GEMMs with a weight operand: ``mm`` / ``addmm``, ONNX
   ``MatMul`` / ``Gemm`` folded to one GEMM; and the experts' grouped GEMMs, ``torch._grouped_mm``, as
   ``te.GroupedLinear`` runs them) inside the model's repeated blocks (every numbered family of modules with GEMMs:
   an encoder-decoder's two stacks both count; a pipeline stage's own blocks), forward and both backward GEMMs
   (data and weight gradient), whose per-GEMM ``k`` and ``n`` are multiples of 16 (TE's FP8 GEMMs need both:
   Accelerate leaves other linears in bf16, e.g. a mixture-of-experts router of 8 outputs). Those stacks build
   their transformer layers from TE modules; the embedding and the output layer (the LM head) are plain PyTorch
   modules and stay in bf16 / fp16 (Accelerate's wholesale ``nn.Linear`` conversion would also take an LM head whose
   dims are multiples of 16: not modelled). Batched matmuls between activations (eager attention scores), attention
   kernels and convolutions stay in half precision. A model without repeated blocks: every eligible linear. The
   FP8 GEMMs read 1-byte operands (their records' bytes read are halved) and write the half-precision output; they
   are tagged ``('fp8', 1)`` and priced at the FP8 peak (:func:`wattlint.energy.prior.compute_dtype`).
2. **The casts.** TE quantizes each FP8 GEMM operand in its own bandwidth-bound kernel (``cast_transpose``: one
   read of the source tensor, the FP8 copy and its transpose written, because Hopper's FP8 tensor-core GEMMs take
   only the TN layout and the weight-gradient GEMM needs the transposed operands): per layer and micro-batch
   * the input (m x k elements: 2 written, 2 bytes read, or 4 when autocast cast it from fp32 under the default
     ``pytorch`` stack); layers fed the same tensor one after another (q / k / v projections, gate / up of a gated
     MLP: TE's fused ``LayerNormLinear`` / ``LayerNormMLP``) share one input cast;
   * the weight (k x n: its parameter bytes read, 2 written); under ``--training-stack megatron`` once per step,
     not per micro-batch (Megatron passes ``is_first_microbatch``, and TE keeps the FP8 weights of the first
     micro-batch), so its bytes are spread over the step's micro-batches and a recomputed forward reuses them;
   * the output gradient (m x n: 2 read, 2 written), in backward before the layer's first backward GEMM.
   A recomputed forward (activation checkpointing) casts its input again. Under the ``pytorch`` stack TE casts the
   fp32 parameter and the fp32 input itself, so autocast's casts of that layer's weight and input (fp32 -> half
   ``_to_copy`` records of two or more dims in the layer's module, forward or recomputed) are dropped.

Not modelled (stated in the assumption line): the amax reductions and scaling-factor updates (a few small kernels per
layer and step), the FP8 copies TE keeps in memory (weights, saved inputs), and FP8 attention (cuDNN's FP8 fused
attention).
"""

from __future__ import annotations

import dataclasses

from .types import CostGraph, OpKind, OpRecord, Phase

CAST_OP = "te::cast_transpose"
FP8_ALIGN = 16  # TE's FP8 GEMMs need k and n multiples of 16
_HALF = ("bfloat16", "float16")


def _grouped(r: OpRecord) -> bool:
    return "grouped_mm" in r.op


def _linear_gemm(r: OpRecord) -> bool:
    """A GEMM of a linear layer (one 2-D GEMM, or an experts' grouped GEMM) in half precision, FP8-aligned."""
    m, k, n = r.dim("m", 0), r.dim("k", 0), r.dim("n", 0)
    return (r.kind is OpKind.MATMUL and r.dtype in _HALF and m > 0 and k > 0 and n > 0
            and (r.dim("b", 1) == 1 or _grouped(r)) and k % FP8_ALIGN == 0 and n % FP8_ALIGN == 0)


def _in_blocks(records, graph: CostGraph):
    """A predicate: is a module inside the repeated blocks (every numbered family holding GEMMs in two or more
    numbered children, and a pipeline stage's own block list); None when the model has no repeated blocks."""
    from .parallel import block_families, block_prefix

    prefixes = {p for p, idx in block_families(records).items() if len(idx) >= 2}
    stage = ((graph.extra or {}).get("pipeline_stages") or {}).get("prefix")
    if stage:
        prefixes.add(stage)
    if not prefixes:
        return None
    return lambda module: block_prefix(module) in prefixes


def fp8_modules(records, graph: CostGraph) -> set[str]:
    """The modules whose linear GEMMs run in FP8 (rule 1 of the module doc)."""
    mods = {r.module for r in records if r.phase is Phase.FORWARD and not r.recompute and _linear_gemm(r)}
    inside = _in_blocks(records, graph)
    return mods if inside is None else {m for m in mods if inside(m)}


def _cast(like: OpRecord, phase: Phase, elems: int, read_bytes: float, what: str, share: int = 1) -> OpRecord:
    """A cast_transpose record of ``elems`` elements (``share``: micro-batches one cast serves; its bytes spread)."""
    return OpRecord(op=CAST_OP, kind=OpKind.ELEMENTWISE, module=like.module, phase=phase, dtype=like.dtype,
                    shapes=((elems,),), flops=-(-elems // share), bytes_read=int(round(elems * read_bytes / share)),
                    bytes_written=int(round(2 * elems / share)), module_type=like.module_type,
                    dims=(("numel", elems), (what, 1)), recompute=like.recompute)


def _autocast_cast(r: OpRecord) -> bool:
    """Autocast's fp32 -> half cast of a weight or an activation (two or more dims; 1-D biases are left)."""
    from .stack import _is_cast

    return (_is_cast(r) and r.dtype == "float32" and r.bytes_read == 2 * r.bytes_written and len(r.shapes) == 1
            and len(r.shapes[0]) >= 2 and (r.phase is Phase.FORWARD or r.recompute))


def _sizes(r: OpRecord) -> tuple[int, int, int]:
    """(input, weight, output) elements of a forward linear GEMM record (grouped: all its groups)."""
    g = r.dim("b", 1) if _grouped(r) else 1
    m, k, n = r.dim("m"), r.dim("k"), r.dim("n")
    return g * m * k, g * k * n, g * m * n


def apply(graph: CostGraph, plan) -> CostGraph:
    """``graph`` with Transformer Engine's FP8 GEMMs and casts when ``plan.precision`` is fp8; else unchanged."""
    if getattr(plan, "precision", None) != "fp8" or (graph.extra or {}).get("fp8"):
        return graph
    if any(r.op == CAST_OP or r.dim("fp8", 0) for r in graph.records):  # rewritten already (a rule's variant)
        return graph
    from .energy.pricing import autocast_records

    records, autocast = autocast_records(graph, "fp8")  # an fp32 trace: its GEMMs as autocast runs them (pricing's)
    lead = (("fp8 autocast applied to the fp32 graph: matmul/conv/attention in bfloat16, other ops fp32",)
            if autocast else ())
    mods = fp8_modules(records, graph)
    if not mods:
        note = ("precision fp8 (Transformer Engine recipe): no linear layer of this model qualifies (inside the "
                "repeated blocks, k and n multiples of 16); every op is costed in bf16")
        return dataclasses.replace(graph, records=records, extra=dict(graph.extra or {}, fp8={"gemms": 0, "casts": 0}),
                                   assumptions=tuple(graph.assumptions) + lead + (note,))
    megatron = (graph.extra or {}).get("training_stack") == "megatron"
    param_bytes = 2 if megatron else 4
    weight_share = max(1, int(getattr(plan, "grad_accum", 1) or 1)) if megatron else 1
    out: list[OpRecord] = []
    pending_bwd: dict[str, list[OpRecord]] = {}  # module -> forward GEMMs whose output-gradient cast is due
    dropped: dict[str, int] = {}  # module -> elements of autocast casts dropped since its last FP8 GEMM
    group = None  # (parent, m, k, pass) of the last FP8 forward GEMM whose input cast later layers may share
    gemms = casts = drops = 0
    for r in records:
        if r.kind is OpKind.ATTENTION or (r.kind is OpKind.MATMUL and r.module not in mods):
            group = None
        if r.module not in mods:
            out.append(r)
            continue
        if not megatron and _autocast_cast(r):
            dropped[r.module] = dropped.get(r.module, 0) + r.bytes_written // 2
            drops += 1
            continue
        if not _linear_gemm(r) or r.phase not in (Phase.FORWARD, Phase.BACKWARD):
            out.append(r)
            continue
        if r.phase is Phase.FORWARD or r.recompute:  # a recomputed forward (checkpointing) casts again
            x, w, _ = _sizes(r)
            key = (r.module.rsplit(".", 1)[0], r.dim("m"), r.dim("k"), r.recompute)
            fp32_in = dropped.pop(r.module, 0) > w  # autocast cast this layer's input too (not only the weight)
            if key != group:
                out.append(_cast(r, r.phase, x, 4 if fp32_in else 2, "fp8_input"))
                casts += 1
            group = key
            if not (megatron and r.recompute):  # Megatron's recomputed forward reuses the step's FP8 weights
                out.append(_cast(r, r.phase, w, param_bytes, "fp8_weight", weight_share))
                casts += 1
            if not r.recompute:
                pending_bwd.setdefault(r.module, []).append(r)
        else:
            group = None
            for fwd in pending_bwd.pop(r.module, []):  # before the layer's first backward GEMM
                out.append(_cast(r, r.phase, _sizes(fwd)[2], 2, "fp8_grad_output"))
                casts += 1
        out.append(dataclasses.replace(r, bytes_read=r.bytes_read // 2, dims=tuple(sorted(r.dims + (("fp8", 1),)))))
        gemms += 1
    note = (f"precision fp8 (Transformer Engine recipe): {gemms:,} linear-layer GEMMs inside the repeated blocks "
            f"(k and n multiples of 16) run at the FP8 peak with 1-byte operands; the embedding, the output layer, "
            f"attention and batched matmuls stay in half precision; {casts:,} cast-transpose kernels quantize the "
            f"inputs (one per tensor shared by several layers), weights"
            + (f" (once per step: spread over {weight_share} micro-batches)" if weight_share > 1 else "")
            + " and output gradients (bandwidth-bound)"
            + (f"; {drops:,} autocast casts of those layers' weights and inputs replaced by them" if drops else "")
            + "; amax / scaling-factor updates and TE's FP8 copies in memory not counted")
    extra = dict(graph.extra or {})
    extra["fp8"] = {"gemms": gemms, "casts": casts}
    return dataclasses.replace(graph, records=tuple(out), extra=extra,
                               assumptions=tuple(graph.assumptions) + lead + (note,))
