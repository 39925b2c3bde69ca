"""Peak training memory per GPU: weights, gradients, optimizer state (per sharding), activations, workspace.

A static, stated model (docs/ENERGY_MODEL.md, "Memory"):

* weights: the parameters in their storage dtype (``param_bytes``; fp32 master weights under autocast) plus, under
  fp16/bf16 autocast, the cached half-precision copies of the weights (2 bytes per parameter).
* gradients: one per trainable parameter in the parameter dtype (fp32 under autocast).
* optimizer state: ``costs.optimizer_state_elems`` x 4 bytes (Adam/AdamW: exp_avg + exp_avg_sq in fp32).
* sharding over the data-parallel group of ``n`` GPUs (ZeRO stages; FSDP FULL_SHARD = ZeRO-3):
  zero1 shards optimizer state; zero2 + gradients; zero3/fsdp + weights (plus one gathered layer in flight).
* activations: bytes saved for backward at the traced micro-batch (``graph.extra["activation_bytes"]``, from the
  frontend, which already reflects activation checkpointing when it traced with it), scaled linearly to the plan's
  micro-batch. Without that fact: the forward ops' written bytes (an upper bound), stated. Selective recompute
  removes the eager attention scores, 5as^2b per layer (Korthikanti et al. 2022; nothing with fused attention).
  Tensor / pipeline-parallel plans use the per-GPU figure of wattlint.parallel.activation_bytes_per_gpu.
* workspace: CUDA context + cuBLAS/cuDNN workspaces (a fixed ``WORKSPACE_BYTES``) and allocator fragmentation
  (``FRAGMENTATION`` x the dynamic part).
"""

from __future__ import annotations

import math

from . import costs
from .types import CostGraph, GpuSpec, OpKind, Phase, Plan

GIB = 1 << 30
WORKSPACE_BYTES = int(0.75 * GIB)  # CUDA context (~300-500 MiB) + cuBLAS/cuDNN workspaces
FRAGMENTATION = 0.10  # caching-allocator fragmentation on activations and temporaries
CHECKPOINT_FACTOR = 0.25  # activations kept under checkpointing when the frontend did not trace it (sqrt-ish rule)
HALF = ("fp16", "bf16", "fp8")


def gpu_memory_bytes(gpu: GpuSpec) -> int:
    """Marketing 'GB' of GPU memory are GiB in practice (an 80 GB H100 reports 81,559 MiB)."""
    return int(gpu.memory_gb * GIB)


def checkpointing_traced(graph: CostGraph) -> bool:
    """Whether the frontend traced activation checkpointing itself (recompute records, or said so)."""
    if graph.extra and graph.extra.get("activation_checkpointing"):
        return True
    return any(r.recompute for r in graph.records)


def activation_bytes(graph: CostGraph, plan: Plan) -> tuple[int, list[str]]:
    """Activation bytes saved for backward at the plan's micro-batch, and the assumptions made."""
    notes: list[str] = []
    per_gpu = graph.extra.get("activation_bytes_per_gpu") if graph.extra else None
    if per_gpu is not None:  # the per-GPU graph of a tensor / pipeline-parallel plan (wattlint.parallel) says it
        return int(per_gpu), notes
    raw = graph.extra.get("activation_bytes") if graph.extra else None
    traced_ckpt = checkpointing_traced(graph)
    if raw is None:
        raw = sum(r.bytes_written for r in graph.records
                  if r.phase is Phase.FORWARD and r.kind not in (OpKind.VIEW, OpKind.COMMUNICATION))
        notes.append("activation memory approximated by the bytes written in the forward pass (the frontend gave no "
                     "saved-for-backward total): an upper bound")
    act = int(raw)
    if plan.recompute == "selective" and not traced_ckpt:
        from .parallel import attention_score_bytes

        scores, what = attention_score_bytes(graph, half=plan.precision in HALF)
        if scores:
            act = max(0, act - scores)
            notes.append(f"recompute selective: the attention scores are not kept, {scores / 2**20:,.1f} MiB "
                         f"({what}; Korthikanti et al. 2022) less than the traced saved-for-backward bytes")
        else:
            notes.append(f"recompute selective keeps the same activations here ({what}): only time is added")
    traced_mb = max(1, int(graph.micro_batch or 1))
    mb = plan.micro_batch_size
    if mb != traced_mb:
        act = act * mb // traced_mb
    if plan.activation_checkpointing and not traced_ckpt:
        act = int(act * CHECKPOINT_FACTOR)
        notes.append(f"activation checkpointing not traced by the frontend: ~{CHECKPOINT_FACTOR:.0%} of the "
                     f"activations kept (block inputs only), the forward recomputed once in backward")
    return act, notes


def peak_memory(graph: CostGraph, gpu: GpuSpec, plan: Plan) -> dict:
    """The ``memory`` block of an estimate: peak bytes per GPU, the GPU's memory, fits, and a breakdown."""
    n = max(1, plan.data_parallel)  # ZeRO / FSDP shard over the data-parallel group
    params = graph.params
    trainable = graph.trainable_params
    param_bytes = graph.model.param_bytes or params * 4
    bpp = param_bytes / params if params else 4.0  # bytes per parameter as stored
    half = plan.precision in HALF
    weights = float(param_bytes)
    weight_copies = 2.0 * params if half else 0.0  # autocast's cached half-precision weight casts
    grads = trainable * bpp
    opt_name = (plan.optimizer or "adamw").lower()
    opt_state = costs.optimizer_state_elems(opt_name, trainable, momentum=opt_name == "sgd") * 4.0
    sharding = (plan.sharding or "none").lower()
    if sharding in ("zero1", "zero2", "zero3", "fsdp") and n > 1:
        opt_state /= n
        if sharding in ("zero2", "zero3", "fsdp"):
            grads /= n
        if sharding in ("zero3", "fsdp"):
            # sharded weights + the largest gathered unit in flight (approximated by 2 / sqrt(layers) of the model)
            layers = max(1, len({r.module for r in graph.records if r.kind in (OpKind.MATMUL, OpKind.CONV)}))
            in_flight = weights * min(1.0, 2.0 / math.sqrt(layers))
            weights = weights / n + in_flight
            weight_copies = weight_copies / n + (2.0 * params * min(1.0, 2.0 / math.sqrt(layers)) if half else 0.0)
    act, notes = activation_bytes(graph, plan)
    dynamic = act + weight_copies
    frag = FRAGMENTATION * dynamic
    total = weights + weight_copies + grads + opt_state + act + WORKSPACE_BYTES + frag
    cap = gpu_memory_bytes(gpu)
    breakdown = {
        "weights": int(weights),
        "weight_casts": int(weight_copies),
        "gradients": int(grads),
        "optimizer_state": int(opt_state),
        "activations": int(act),
        "workspace": int(WORKSPACE_BYTES + frag),
    }
    return {
        "peak_bytes_per_gpu": int(total),
        "gpu_memory_bytes": cap,
        "fits": bool(total <= cap),
        "breakdown": breakdown,
        "notes": notes,
    }
