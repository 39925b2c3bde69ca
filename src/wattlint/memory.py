"""Peak training memory per GPU: weights, gradients, optimizer state (per sharding), activations, workspace.

A static, stated model (docs/ENERGY_MODEL.md, "Memory"):

* weights: the parameters in their storage dtype (``param_bytes``; fp32 master weights under autocast) plus, under
  fp16/bf16 autocast, the cached half-precision copies of the weights (2 bytes per parameter; with frozen
  parameters, of the trainable ones and of the frozen matmul / convolution weights backward runs through, whose casts
  autograd keeps for the input gradient: autocast caches casts of weights that require grad only).
* gradients: one per trainable parameter in the parameter dtype (fp32 under autocast).
* training stack megatron (wattlint.stack): weights in half precision (2 bytes), an fp32 master copy (4 bytes per
  trainable parameter, sharded like the optimizer state), gradients in the fp32 accumulation buffer (4 bytes; 2
  under fp16), no cached weight casts.
* optimizer state: ``costs.optimizer_state_elems`` x 4 bytes (Adam/AdamW: exp_avg + exp_avg_sq in fp32; torch makes
  them zeros_like the parameter: in the parameters' bytes when those are wider, complex64 / float64); the
  optimizer step's temporaries (:func:`optimizer_step_temporaries`: torch's foreach Adam's exp_avg_sq_sqrt over every
  parameter) set the peak instead of backward's activations when they outgrow them.
* a graph stored in half precision (apex O2-style, ``extra["fp32_master_weights"]``): fp32 master copy, no weight
  casts.
* sharding over the ``n`` GPUs holding the same weights, data-parallel x context-parallel (``Plan.shard_group``;
  ZeRO stages; FSDP FULL_SHARD = ZeRO-3; Megatron's distributed optimizer):
  zero1 shards optimizer state; zero2 + gradients; zero3/fsdp + weights, plus the gathered units in flight
  (:func:`gathered_share`: the running + the prefetched transformer block and the root unit, which FULL_SHARD keeps
  gathered through backward; torch.distributed.fsdp ``_post_forward_reshard``).
* expert parallelism (``plan.expert_parallel`` = E > 1, mixture-of-experts): each GPU holds experts / E of every
  MoE layer, so the routed-expert weights, their gradients and optimizer state are divided by E (on top of the
  tensor x pipeline split); the other parameters are not. Under ZeRO / FSDP the expert state is sharded over the
  n / E ranks holding the same experts (wattlint.parallel.expert_split).
* activations: bytes saved for backward at the traced micro-batch (``graph.extra["activation_bytes"]``, from the
  frontend, which already reflects activation checkpointing when it traced with it), scaled linearly to the plan's
  micro-batch (the torch frontend counts each saved storage once, never a parameter or a view of one, and an
  fp32 input of an autocast-lowered matmul as its half-precision cast, once per op reading it, as CUDA autocast
  saves it). Under the megatron
  stack (bf16 parameters) the fp32 tensors autocast keeps inside the model (``activation_bytes_fp32``: residual
  stream / norm inputs, softmax outputs) are half precision, and a cast of a kept fp32 tensor
  (``activation_bytes_cast_dup``) is the same tensor: a GPT layer with flash attention and no dropout then keeps
  32sbh, Korthikanti et al. 2022's 34sbh less the two 1-byte dropout masks (tests/test_memory_activations.py); a
  gated MLP's activation output (``activation_bytes_gated_output``) is not kept by the fused SwiGLU / GeGLU kernel.
  Without that fact: the forward ops' written bytes (an upper bound), stated. Selective recompute
  removes the eager attention scores the trace kept (wattlint.parallel.attention_score_bytes: 5as^2b per layer with
  16-bit scores and attention dropout, Korthikanti et al. 2022; nothing with fused attention).
  Tensor / pipeline / context-parallel plans keep a share of one replica's (:func:`split_activation_bytes`,
  wattlint.parallel.activation_split): the layers' Korthikanti et al. 2022 split applied to the traced layers, the
  loss's log-probabilities split over tp x cp on the last stage.
* loss transient (:func:`loss_transient_bytes`): what the cross-entropy over the logits holds at the start of
  backward beyond the saved tensors, by ``plan.loss_impl`` (torch: (L + 8) bytes per logit of L bytes; fused:
  (2L - 4)); at that moment every activation is still alive.
* workspace: the CUDA context by stack era (:func:`context_bytes`: ``CONTEXT_EAGER_BYTES`` 1.3 GiB before torch 1.13,
  which loaded every CUDA module at start-up, ``CONTEXT_LAZY_BYTES`` 0.6 GiB from 1.13, lazy module loading) and the
  caching allocator's margin (``FRAGMENTATION`` x the dynamic part: reserved over allocated at the peak, which holds
  the cuBLAS / cuDNN workspaces too, as they live in the caching allocator).
* usable capacity (:func:`gpu_memory_bytes`): the nominal GiB less ``DRIVER_RESERVED`` (1.5 %) the driver keeps, less
  1/16 on GDDR data-centre boards with ECC on.
* verdict (:func:`memory_verdict`): the peak P against the usable capacity C with the model's error band
  (``VERDICT_BAND``: measured peaks 0.95-1.15x the prediction over public rows): "fits" when 1.15 P <= C,
  "does_not_fit" when 0.95 P > C, else "tight". ``fits`` (P <= C) is the central verdict the lint rules use.
"""

from __future__ import annotations

from typing import Sequence

from . import costs
from . import parallel as _parallel
from .types import CostGraph, GpuSpec, OpKind, Phase, Plan

GIB = 1 << 30
MIB = 1 << 20
# the CUDA context by stack era (docs/ENERGY_MODEL.md, Memory). Before torch 1.13 every CUDA module of the torch
# binaries loaded at start-up: Hugging Face's model_memory_anatomy guide measures 1,343 MiB on a V100 (CUDA 11.2) after
# one tiny tensor, and pytorch/pytorch#107667 quotes "over 1000 MB before CUDA 11.7". torch 1.13 made lazy loading
# the default (CUDA_MODULE_LOADING=LAZY, pytorch/pytorch PR #86509: 287,047,680 B at start-up, kernels loaded as
# first used); an H100 fill-to-OOM probe implies ~614 MiB with a training step's kernels loaded.
CONTEXT_EAGER_BYTES = int(1.3 * GIB)
CONTEXT_LAZY_BYTES = int(0.6 * GIB)
LAZY_LOADING_FROM = (1, 13)  # torch release that made CUDA lazy module loading the default
# caching-allocator margin on activations, weight casts and temporaries: reserved over allocated at the peak, which
# also holds the cuBLAS / cuDNN workspaces (they are allocated through the caching allocator); pytorch/pytorch#40989
# measures 1.112-1.115
FRAGMENTATION = 0.12
# memory the driver keeps: nvidia-smi -q Total less Reserved is 80,995-81,231 MiB of 81,920 on H100 80GB boards,
# 81,086-81,363 on A100 80GB, 40,340 of 40,960 on A100 40GB, 16,144-16,160 of 16,384 on V100 16GB: all within 1.5 %
DRIVER_RESERVED = 0.015
# the memory model's error band: measured peak / predicted peak over the public rows (benchmarks/memory_check.py,
# docs/ENERGY_MODEL.md "Memory"): a peak within it of the capacity is "tight"
VERDICT_BAND = (0.95, 1.15)
CHECKPOINT_FACTOR = 0.25  # activations kept under checkpointing when the frontend did not trace it (sqrt-ish rule)
HALF = ("fp16", "bf16", "fp8")


# data-centre boards with GDDR memory run with ECC on by default, which keeps 1/16 of it for the check bits: nvidia-smi
# shows 15,360 of a T4's 16,384 MiB, 23,034 of an L4's 24,576 and 23,028 of an A10G's (public nvidia-smi outputs; HBM
# carries its ECC bits beside the data, GeForce and workstation boards ship with ECC off)
GDDR_ECC_USABLE = 15 / 16


def ecc_reserves_memory(gpu: GpuSpec) -> bool:
    """Whether the board's default ECC keeps 1/16 of its memory: GDDR data-centre boards (the PCIe server class)."""
    from .energy.host import platform_class
    from .energy.prior import memory_kind

    return memory_kind(gpu).startswith("gddr") and platform_class(gpu) == "pcie_server"


def gpu_memory_bytes(gpu: GpuSpec) -> int:
    """Memory a training process can allocate on the board: marketing 'GB' are GiB in practice (an 80 GB H100 has
    81,920 MiB), less the ``DRIVER_RESERVED`` 1.5 % the driver keeps (nvidia-smi -q: 80,995-81,231 MiB left of an
    H100's 81,920), less the 1/16 that default ECC keeps on GDDR data-centre boards (:func:`ecc_reserves_memory`)."""
    return int(gpu.memory_gb * GIB * (1.0 - DRIVER_RESERVED) * (GDDR_ECC_USABLE if ecc_reserves_memory(gpu) else 1.0))


def context_bytes(graph: CostGraph | None) -> tuple[int, str]:
    """The CUDA context of the graph's stack (``graph.extra["torch_version"]``, from --torch-version) and its basis:
    ``CONTEXT_EAGER_BYTES`` before torch 1.13 (every CUDA module loaded at start-up), else ``CONTEXT_LAZY_BYTES``
    (lazy module loading, the default from 1.13; also without a version: wattlint's default stack is 2.x)."""
    from . import framework

    v = framework.parse(((graph.extra or {}) if graph is not None else {}).get("torch_version"))
    if v is not None and v < LAZY_LOADING_FROM:
        return CONTEXT_EAGER_BYTES, (f"torch {framework.fmt(v)} loads every CUDA module at start-up (lazy loading is "
                                     f"the default from 1.13): Hugging Face's V100 measurement 1,343 MiB, "
                                     f"pytorch/pytorch#107667 'over 1000 MB before CUDA 11.7'")
    what = f"torch {framework.fmt(v)}" if v is not None else "torch 2.x (no --torch-version)"
    return CONTEXT_LAZY_BYTES, (f"{what} loads CUDA kernels lazily (the default from 1.13, pytorch/pytorch PR #86509: "
                                f"287,047,680 B at start-up + the kernels a step uses; an H100 fill-to-OOM probe "
                                f"implies ~614 MiB)")


def memory_verdict(peak: float, cap: float) -> str:
    """'fits', 'tight' or 'does_not_fit' of a central peak ``peak`` against usable capacity ``cap`` with the memory
    model's error band ``VERDICT_BAND`` (measured peaks 0.95-1.15x the prediction): fits when the band's top fits
    (1.15 x peak <= cap), does_not_fit when even its bottom does not (0.95 x peak > cap), else tight."""
    lo, hi = VERDICT_BAND
    if peak * hi <= cap:
        return "fits"
    if peak * lo > cap:
        return "does_not_fit"
    return "tight"


def peak_band(peak: float) -> tuple[int, int]:
    """The central peak's error band in bytes: ``VERDICT_BAND`` x peak."""
    return int(peak * VERDICT_BAND[0]), int(peak * VERDICT_BAND[1])


def checkpointing_traced(graph: CostGraph) -> bool:
    """Whether the frontend traced activation checkpointing itself (recompute records, or said so)."""
    if graph.extra and graph.extra.get("activation_checkpointing"):
        return True
    return any(r.recompute for r in graph.records)


def activation_bytes(graph: CostGraph, plan: Plan, transient: int = 0,
                     state: Sequence[float] | None = None) -> tuple[int, list[str], bool]:
    """Activation bytes one GPU saves for backward at the plan's micro-batch, the assumptions made, and whether the
    GPU counted runs the loss (so holds its ``transient`` bytes at the start of backward): one whole replica's
    (:func:`replica_activation_bytes`), split as a tensor / pipeline / context-parallel plan keeps them
    (:func:`split_activation_bytes`) when ``graph`` is the per-GPU graph of one (wattlint.parallel). ``state``:
    each pipeline stage's other bytes (weights, gradients, optimizer state), to pick the stage of the highest peak."""
    return stage_activation_bytes(graph, plan, transient, state)[:3]


def stage_activation_bytes(graph: CostGraph, plan: Plan, transient: int = 0,
                           state: Sequence[float] | None = None, step_tmp: Sequence[float] | None = None,
                           casts: Sequence[float] | None = None) -> tuple[int, list[str], bool, int | None]:
    """:func:`activation_bytes`, + the index of the pipeline stage counted (None without pipeline stages)."""
    act, notes = replica_activation_bytes(graph, plan)
    split = graph.extra.get("activation_split") if graph.extra else None
    if split is None:
        return act, notes, True, None
    return _split_activation_bytes(act, graph, plan, split, notes, transient, state, step_tmp, casts)


def replica_activation_bytes(graph: CostGraph, plan: Plan) -> tuple[int, list[str]]:
    """Activation bytes one whole replica of the model saves for backward at the plan's micro-batch (the traced
    saved-for-backward bytes, as the stack, recompute mode and micro-batch change them), and the notes."""
    notes: list[str] = []
    extra = graph.extra or {}
    raw = extra.get("activation_bytes")
    traced_ckpt = checkpointing_traced(graph)
    if raw is None:
        raw = extra.get("replica_forward_bytes")  # a per-GPU graph's whole replica (wattlint.parallel)
        if raw is None:
            raw = sum(r.bytes_written for r in graph.records
                      if r.phase is Phase.FORWARD and r.kind not in (OpKind.VIEW, OpKind.COMMUNICATION))
        notes.append("activation memory approximated by the bytes written in the forward pass (the frontend gave no "
                     "saved-for-backward total): an upper bound")
    act = int(raw)
    if (getattr(plan, "training_stack", "pytorch") == "megatron" and plan.precision in HALF
            and extra.get("activation_bytes_fp32") is not None):
        fp32 = int(extra.get("activation_bytes_fp32") or 0)
        dup = int(extra.get("activation_bytes_cast_dup") or 0)
        if fp32 or dup:
            act = max(0, act - fp32 // 2 - dup)
            same = (f", and their half-precision casts autocast also kept ({dup / 2**20:,.1f} MiB) are the same "
                    f"tensors" if dup else "")
            notes.append(f"training stack megatron: the activations autocast keeps in fp32 inside the model (residual "
                         f"stream / norm inputs, softmax outputs: {fp32 / 2**20:,.1f} MiB traced) are half "
                         f"precision (2 bytes){same}: {(fp32 // 2 + dup) / 2**20:,.1f} MiB less than traced; the "
                         f"loss's fp32 log-softmax stays fp32")
        gated = int(extra.get("activation_bytes_gated_output") or 0)
        if gated and not traced_ckpt:
            act = max(0, act - gated)
            notes.append(f"training stack megatron: the fused SwiGLU / GeGLU kernel keeps its two inputs, not the "
                         f"activation's output the traced gate multiply saved ({gated / 2**20:,.1f} MiB less than "
                         f"traced)")
    if plan.recompute == "selective" and not traced_ckpt:
        from .parallel import attention_score_bytes

        megatron = getattr(plan, "training_stack", "pytorch") == "megatron" and plan.precision in HALF
        kept = extra.get("replica_attention_scores")  # a per-GPU graph's whole replica (wattlint.parallel)
        scores, what = (kept["megatron" if megatron else "pytorch"] if kept
                        else attention_score_bytes(graph, megatron=megatron))
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


def split_activation_bytes(act: int, graph: CostGraph, plan: Plan, split: dict, notes: list[str],
                           transient: int = 0) -> tuple[int, list[str], bool]:
    """One GPU's share of a replica's ``act`` activation bytes under the per-GPU graph's plan
    (wattlint.parallel.activation_split, per recompute mode): the loss's saved fp32 log-probabilities (4 bytes per
    logit, at the plan's micro-batch; x CHECKPOINT_FACTOR where the replica's bytes were scaled by it) split over
    tp x cp on the last stage, the rest as the replica's layers. Under a pipeline the fullest stage without the loss
    and the last (its layers + the loss + the loss's ``transient`` bytes) are compared and the fuller one counted;
    returns (bytes, notes, whether that stage runs the loss)."""
    return _split_activation_bytes(act, graph, plan, split, notes, transient)[:3]


def _split_activation_bytes(act: int, graph: CostGraph, plan: Plan, split: dict, notes: list[str],
                            transient: int = 0, state: Sequence[float] | None = None,
                            step_tmp: Sequence[float] | None = None, casts: Sequence[float] | None = None
                            ) -> tuple[int, list[str], bool, int | None]:
    """:func:`split_activation_bytes`; with ``state`` (each pipeline stage's bytes besides its activations: its own
    weights, gradients and optimizer state), the stage counted is the one of the highest peak, state + activations
    (+ the loss and its transient on the last stage; fragmentation on the activations), and its index is returned
    (review 2026-12: the first stage's activations were added to the last stage's weights). ``step_tmp``, each
    stage's optimizer-step temporaries, stands for its activations where larger (the step runs after backward freed
    them: a stage with more parameters peaks at its step; stop 51 review: the stage was chosen without them).
    ``casts``, each stage's cached weight casts, are freed with the activations (so ``state`` excludes them): a
    stage's peak is state + max(activations + casts (+ loss transient), step temporaries) x (1 + fragmentation),
    as :func:`peak_memory` prices the stage counted (review s52: casts in ``state`` chose a stage 4.5 % below the
    fullest)."""
    from .parallel import recompute_mode

    s = split[recompute_mode(plan.recompute)]
    extra = graph.extra or {}
    traced_mb = max(1, int(graph.micro_batch or 1))
    loss = 4 * int(extra.get("loss_logits_elems") or 0) * plan.micro_batch_size // traced_mb
    if plan.activation_checkpointing and not checkpointing_traced(graph):
        loss = int(loss * CHECKPOINT_FACTOR)  # replica_activation_bytes scaled all of it, the loss's share too
    loss = min(act, loss)
    layers = act - loss
    pp = s["pp"]
    shares = list(s.get("stages") or []) if pp > 1 else []
    if pp == 1 or len(shares) != pp:  # an older per-GPU graph: the first stage and the last
        shares = [s["first"]] + [0.0] * max(0, pp - 2) + [s["last"]] if pp > 1 else [s["last"]]
    own = [layers * a for a in shares]
    own[-1] += loss * s["loss"]
    if state is not None and len(state) == pp:
        tmp = list(step_tmp) if step_tmp is not None and len(step_tmp) == pp else [0.0] * pp
        cst = list(casts) if casts is not None and len(casts) == pp else [0.0] * pp
        dyn = [own[i] + cst[i] + (transient if i == pp - 1 else 0) for i in range(pp)]
        peak = [state[i] + max(dyn[i], tmp[i]) * (1 + FRAGMENTATION) for i in range(pp)]
    else:
        peak = list(own)
        peak[-1] += transient
    k = max(range(pp), key=lambda i: (peak[i], i))  # ties: the last stage (it runs the loss)
    with_loss = k == pp - 1
    total = int(round(own[k]))
    stage = f"stage {k + 1} of {pp}" if 0 < k < pp - 1 else "the first stage"
    base = "its own weights, gradients and optimizer state + " if state is not None else ""
    which = ("" if pp == 1 else
             f"; the last stage ({base}its layers + the loss and its transient) is the fuller" if with_loss else
             f"; {stage} (no loss: {base}its activations) is the fuller")
    loss_txt = (f" + the loss's fp32 log-probabilities {loss / 2**20:,.1f} MiB x {s['loss']:.3f} (split over tensor "
                f"x context-parallel ranks, on the last stage)" if loss else "")
    notes.append(f"activations per GPU: one replica's {act / 2**20:,.1f} MiB saved for backward (traced, micro-batch "
                 f"{plan.micro_batch_size}): {s['how']}{loss_txt}{which} = {total / 2**20:,.1f} MiB")
    return total, notes, with_loss, (k if pp > 1 else None)


def loss_transient_bytes(graph: CostGraph, plan: Plan) -> tuple[int, str | None]:
    """Bytes the cross-entropy over the logits holds at the start of backward beyond the traced saved tensors (the
    activations already count its fp32 log-probabilities, 4 bytes per logit), and the note saying so.

    With E logits of L bytes each (``loss_logits_elems`` / ``loss_logits_bytes`` from the torch frontend, scaled to
    the plan's micro-batch, divided over tensor-parallel ranks: Megatron's vocabulary-parallel loss):

    * ``torch`` (``F.cross_entropy`` = log_softmax + nll_loss, autocast running log_softmax in fp32): while
      LogSoftmaxBackward runs, the logits the model returned (L·E, held by its output), the gradient of the
      log-probabilities (4·E, nll_loss's backward) and the gradient of the fp32 logits (4·E) are alive beside the
      saved log-probabilities: (L + 8)·E more than traced;
    * ``fused`` (one kernel keeping only the logits and writing their gradient in their dtype, e.g. flash-attn's
      CrossEntropyLoss, llm-foundry's default ``fused_crossentropy``; Megatron-LM's vocabulary-parallel loss
      computes its softmax and gradient in place): the logits and their gradient, 2·L·E, in place of the traced
      4·E log-probabilities: (2L − 4)·E (0 in bf16).
    """
    extra = graph.extra or {}
    elems, size = extra.get("loss_logits_elems"), extra.get("loss_logits_bytes")
    if not elems or not size:
        return 0, None
    traced_mb = max(1, int(graph.micro_batch or 1))
    # a context-parallel rank holds its 1/C of each sequence's tokens, so 1/C of their logits
    cp = max(1, int(getattr(plan, "context_parallel", 1) or 1))
    e = float(elems) * plan.micro_batch_size / traced_mb / max(1, plan.tensor_parallel) / cp
    impl = plan.loss_impl or ("fused" if plan.training_stack == "megatron" else "torch")
    why = "--loss-impl" if plan.loss_impl else f"the {plan.training_stack} stack's default; --loss-impl to change"
    tp = f" per tensor-parallel rank (vocabulary split over {plan.tensor_parallel})" if plan.tensor_parallel > 1 else ""
    tp += f" of this GPU's 1/{cp} of the tokens (context parallel)" if cp > 1 else ""
    if impl == "fused":
        b = max(0.0, (2 * size - 4) * e)
        what = (f"loss fused ({why}): the {e:,.0f} logits{tp} ({size} B each) and their gradient in place of fp32 "
                f"log-probabilities, {b / 2**20:,.1f} MiB more than traced")
    else:
        b = (size + 8) * e
        what = (f"loss torch cross-entropy ({why}): at the start of backward the {e:,.0f} logits{tp} ({size} B "
                f"each, held by the model output), the fp32 gradient of the log-probabilities and of the logits are "
                f"alive beside the saved log-probabilities: {b / 2**20:,.1f} MiB transient (a fused or chunked loss "
                f"keeps less: --loss-impl fused)")
    return int(b), what


def gathered_share(graph: CostGraph) -> tuple[float, str]:
    """Share of the model's parameters FSDP FULL_SHARD / ZeRO-3 holds gathered (unsharded) at the peak, and why.

    With the transformer blocks wrapped one FSDP unit each (an auto-wrap policy on the block class: llm-foundry's
    MPT ``fsdp_wrap_fn``, Hugging Face Accelerate's transformer_based_wrap, torchtitan), FSDP holds the unit that
    runs plus the next one it prefetches (``backward_prefetch=BACKWARD_PRE``, the default; ``forward_prefetch`` or
    ``limit_all_gathers=False`` may hold more) and the root unit (embeddings, final norm, output layer), which FULL_SHARD
    does not free after forward (torch.distributed.fsdp ``_post_forward_reshard``: the root's parameters are kept
    for backward). So 2 blocks + the parameters outside the blocks. Without the blocks' sizes (a frontend that did
    not report them): 2 / blocks of the model when the graph has repeated blocks, else the whole model (one unit)."""
    params = float(graph.params or 0)
    extra = graph.extra or {}
    if not params:
        return 0.0, "no parameters"
    full = float(extra.get("parallel_full_params") or params)
    block, count = extra.get("block_params"), extra.get("block_count")
    stages = extra.get("pipeline_stages")
    if block and count and full and stages:
        return _stage_gathered_share(graph, float(block), stages)
    if block and count and full:
        block, count = float(block), int(count)
        root = max(0.0, full - block * count)
        share = min(1.0, (2.0 * block + root) / full)
        return share, (f"2 transformer blocks of {block:,.0f} parameters (the running unit + the prefetched one) "
                       f"+ the root unit's {root:,.0f} (embeddings, final norm, output layer, kept gathered for "
                       f"backward) = {share:.1%} of the model")
    blocks = _parallel.find_blocks(graph)
    if blocks is not None and blocks.count >= 2:
        share = 2.0 / blocks.count
        return share, (f"2 of {blocks.count} repeated blocks (the running unit + the prefetched one; block sizes "
                       f"not reported by the frontend: the model / {blocks.count} each) = {share:.1%} of the model")
    return 1.0, "no repeated blocks found: the whole model is one gathered unit (FSDP without an auto-wrap policy)"


def _stage_gathered_share(graph: CostGraph, block: float, stages: dict) -> tuple[float, str]:
    """:func:`gathered_share` on one pipeline stage's GPU (the graph holds that stage's parameters / tp): the units
    FSDP / ZeRO-3 gathers there are the stage's own, 2 of its blocks (or its one block) + the parameters it holds
    outside its blocks (the LM head on the last stage), as a share of the stage's parameters."""
    tp = max(1, int(((graph.extra or {}).get("parallel_layout") or {}).get("tp", 1)))
    n_blocks = int(stages["blocks"][stages["costed"]])
    held = float(graph.params) * tp  # the stage's parameters before the tensor-parallel split
    root = max(0.0, held - n_blocks * block)
    running = min(2, n_blocks)
    share = min(1.0, (running * block + root) / held) if held else 1.0
    return share, (f"{running} of the stage's {n_blocks} transformer blocks of {block:,.0f} parameters (the running "
                   f"unit + the prefetched one) + the {root:,.0f} parameters it holds outside them (the LM head on "
                   f"the last stage, kept gathered for backward) = {share:.1%} of the stage's parameters")


def _expert_note(graph: CostGraph, split, plan: Plan, sharded: bool) -> str:
    ep = plan.expert_parallel
    if not split.removed:
        return (f"expert parallel {ep}: no routed-expert parameters in the trace (dense model): weights, gradients "
                f"and optimizer state not divided by {ep}")
    full = int((graph.extra or {}).get("parallel_full_params") or graph.params)
    total = _parallel.routed_expert_params(graph)
    text = (f"expert parallel {ep}: each GPU holds 1/{ep} of every MoE layer's experts; routed-expert weights, "
            f"gradients and optimizer state / {ep} (the optimizer step updates only these), the other parameters "
            f"not: {split.expert:,.0f} expert + "
            f"{split.params - split.expert:,.0f} other parameters per GPU (of {full:,}, {total:,} of them "
            f"routed-expert" + (f", after tensor x pipeline parallel {plan.tensor_parallel} x "
                                 f"{plan.pipeline_parallel}" if plan.tensor_parallel * plan.pipeline_parallel > 1
                                 else "") + ")")
    if sharded:
        text += (f"; {plan.sharding} shards the expert part over the {max(1, plan.shard_group // ep)} data-parallel "
                 f"ranks holding the same experts, the rest over all {plan.shard_group}")
    return text


def optimizer_step_temporaries(graph: CostGraph, optimizer: str, trainable: float, elem_bytes: float,
                                megatron: bool) -> float:
    """Bytes of the temporaries torch's foreach optimizer step allocates over all trainable parameters at once
    (``costs.OPTIMIZER_FOREACH_TEMPS`` tensors per parameter element, in the dtype the optimizer steps:
    ``elem_bytes``); none with the fused or single-tensor kernels, nor under the megatron stack (its distributed
    optimizer's fused Adam updates in place)."""
    impl = (graph.extra or {}).get("optimizer_impl", "foreach")
    if megatron or impl != "foreach":
        return 0.0
    return costs.OPTIMIZER_FOREACH_TEMPS.get(optimizer, 0) * trainable * elem_bytes


def workspace_note(dynamic: float, frag: float, context: int = CONTEXT_LAZY_BYTES, basis: str = "") -> str:
    """The assumption line of the CUDA context and the allocator margin the peak adds (breakdown ``workspace``), the
    usable capacity and the verdict's error band: they decide 'fits' and WL201 with the rest, so every report states
    them (review 2026-12: a tiny model's 'Memory per GPU 768 MiB' was the workspace alone, stated nowhere)."""
    lo, hi = VERDICT_BAND
    why = f" ({basis})" if basis else ""
    return (f"memory per GPU includes a CUDA context of {context / MIB:,.0f} MiB{why} + a {FRAGMENTATION:.0%} "
            f"caching-allocator margin on the activations, weight casts and loss transient (reserved over allocated "
            f"at the peak, 1.112-1.115 in pytorch/pytorch#40989; it holds the cuBLAS / cuDNN workspaces: "
            f"{FRAGMENTATION:.0%} of {dynamic / MIB:,.1f} MiB = {frag / MIB:,.1f} MiB): {(context + frag) / MIB:,.1f} "
            f"MiB ('workspace' in the breakdown); usable GPU memory is the nominal less {DRIVER_RESERVED:.1%} the "
            f"driver reserves (nvidia-smi -q); the verdict allows the model's error band, measured peaks "
            f"{lo:.2f}-{hi:.2f}x the prediction over public rows: fits when {hi:.2f}x the peak fits, does not fit "
            f"when {lo:.2f}x it does not, else tight (docs/ENERGY_MODEL.md, Memory)")


DDP_BUCKETS_NOTE = (
    "DDP gradient buckets: torch.nn.parallel.DistributedDataParallel (as torchrun, Lightning's and the HF Trainer's "
    "DDP run it) all-reduces through its own bucket buffers, a second copy of the gradients, unless "
    "gradient_as_bucket_view=True (default False; pytorch/pytorch PR #41954: True lowered a RoBERTa run's peak "
    "8,250 -> 7,183 MB); pass --ddp-bucket-view when DDP is built with gradient_as_bucket_view=True")
DDP_BUCKET_VIEW_NOTE = (
    "DDP gradient buckets: none (--ddp-bucket-view: DistributedDataParallel built with gradient_as_bucket_view=True, "
    "the gradients are the bucket views, no second copy)")


def ddp_bucket_bytes(plan: Plan, grads: float) -> float:
    """Bytes of DistributedDataParallel's all-reduce buckets per GPU: the gradients' size again (its default
    gradient_as_bucket_view=False copies each gradient into a bucket buffer allocated at construction) for a
    pytorch-stack run whose gradients are all-reduced over more than one GPU (the data- x context-parallel group)
    unsharded or under zero1 (PyTorch's ZeroRedundancyOptimizer over DDP, docs/ENERGY_MODEL.md); 0 otherwise: the
    megatron stack's gradients live in its contiguous buffer, ZeRO-2/3 and FSDP reduce-scatter from their own flat
    shards, and expert parallelism (not run by plain DDP: its experts have no data-parallel replica there) is not
    modelled. 0 too under ``plan.ddp_bucket_view`` (--ddp-bucket-view: DDP built with
    gradient_as_bucket_view=True, the gradients are views into the buckets)."""
    if not ddp_replicated(plan) or getattr(plan, "ddp_bucket_view", False):
        return 0.0
    return grads


def ddp_replicated(plan: Plan) -> bool:
    """Whether the run's gradients are all-reduced by DistributedDataParallel (see :func:`ddp_bucket_bytes`)."""
    sharding = (plan.sharding or "none").lower()
    return not (plan.shard_group <= 1 or sharding in ("zero2", "zero3", "fsdp") or plan.expert_parallel > 1
                or getattr(plan, "training_stack", "pytorch") == "megatron")


def _stage_scales(graph: CostGraph) -> list[float] | None:
    """Each pipeline stage's parameters over the costed stage's (wattlint.parallel.stage_params), or None without
    pipeline stages or their parameter counts."""
    info = (graph.extra or {}).get("pipeline_stages") or {}
    held = info.get("params")
    if not held or len(held) != len(info.get("blocks") or ()):
        return None
    costed = int(info.get("costed", len(held) - 1))
    if not held[costed]:
        return None
    return [float(h) / float(held[costed]) for h in held]


def weight_dtype_split(graph: CostGraph) -> tuple[float, float]:
    """(bytes per trainable parameter, frozen parameters held in fp32) from the graph's parameter counts and stored
    bytes. The trainable parameters: 2 bytes when all are 16-bit (``pure_half_params``), else 4 (fp32; the stored
    mean when wider, float64 / complex, or when every parameter trains). The frozen ones' bytes are the rest of the
    stored bytes; with 2- and 4-byte weights, ``(frozen bytes - 2 F) / 2`` of the F frozen parameters are fp32 (a
    bf16-loaded base under fp32 LoRA adapters: none; an fp32 base: all), clamped to [0, F] (1-byte quantized frozen
    weights: none)."""
    params = float(graph.params)
    if params <= 0:
        return 4.0, 0.0
    stored = float(graph.model.param_bytes or params * 4)
    mean = stored / params
    trainable = float(graph.trainable_params)
    frozen = max(0.0, params - trainable)
    if (graph.extra or {}).get("pure_half_params"):
        tbpp = 2.0
    elif frozen <= 0:
        return mean, 0.0
    else:
        tbpp = max(4.0, mean)
    frozen_bytes = max(0.0, stored - trainable * tbpp)
    return tbpp, min(frozen, max(0.0, (frozen_bytes - 2.0 * frozen) / 2.0))


def checkpointed_frozen_casts(graph: CostGraph, frozen_casts: float) -> tuple[float, str | None]:
    """The frozen weights' casts held at once under traced activation checkpointing (``frozen_casts``: parameters
    whose cast backward keeps without checkpointing). A frozen weight's cast is not in autocast's cache (that keeps
    casts of weights requiring grad, the trainable ones, through the forward), only in what autograd saves: inside a
    checkpointed block nothing is saved, the casts are made again one block at a time in backward's recompute. So at
    most the frozen casts outside the blocks (a non-checkpointed LM head keeps its cast for backward) + one block's
    are alive: ``min(frozen_casts, outside) + min(frozen_casts, block)`` parameters, ``extra['block_params']`` the
    largest of the ``block_count`` blocks, outside = all parameters less the blocks' (an upper bound: an embedding
    table outside the blocks is counted as cast too). Unchanged without checkpointing or repeated blocks, and on a
    tensor / pipeline-parallel per-GPU graph."""
    extra = graph.extra or {}
    bp, bc = extra.get("block_params"), extra.get("block_count")
    if (frozen_casts <= 0 or not bp or not bc or int(bc) < 2 or not checkpointing_traced(graph)
            or extra.get("parallel_full_params")):  # a per-GPU graph of a split: blocks counted whole
        return frozen_casts, None
    outside = max(0.0, float(graph.params) - float(bp) * float(bc))
    bound = min(frozen_casts, outside) + min(frozen_casts, float(bp))
    if bound >= frozen_casts:
        return frozen_casts, None
    return bound, (f"frozen weight casts under activation checkpointing: the {int(bc)} checkpointed blocks save "
                   f"none, their casts are made again one block at a time in backward's recompute; at most the "
                   f"casts of the {outside:,.0f} parameters outside the blocks + one block's {float(bp):,.0f} are "
                   f"held at once: {bound:,.0f} of the {frozen_casts:,.0f} frozen parameters cast (2 bytes each)")


def peak_memory(graph: CostGraph, gpu: GpuSpec, plan: Plan) -> dict:
    """The ``memory`` block of an estimate: peak bytes per GPU, the GPU's usable memory, fits (peak <= usable), a
    breakdown and the notes (the three-way verdict: :func:`memory_verdict` of the peak and the usable memory)."""
    n = max(1, plan.shard_group)  # ZeRO / FSDP shard over the data-parallel (x context-parallel) group
    notes: list[str] = []
    split = _parallel.expert_split(graph, plan.expert_parallel)
    params = graph.params
    keep = split.params / params if params and split.removed else 1.0  # expert parallelism: this GPU's experts
    trainable = max(0.0, graph.trainable_params - split.removed)
    param_bytes = graph.model.param_bytes or params * 4
    bpp = param_bytes / params if params else 4.0  # bytes per parameter as stored
    half = plan.precision in HALF
    weights = float(param_bytes) * keep
    # weights stored in half precision, apex O2-style (an fp16 export) or trained so (a model.half() module): no
    # autocast, so no cached weight casts
    pure = graph.extra.get("pure_half_params")  # 'fp16' / 'bf16': the trainable parameters' own dtype
    o2 = bool(graph.extra.get("fp32_master_weights"))
    traced = "bf16" if plan.precision == "fp8" else plan.precision
    no_casts = o2 or bool(pure and (not half or traced == pure))  # autocast's cast of an fp16 weight is the weight
    # gradients, optimizer state and step temporaries are sized by the trainable parameters' own dtype (a bf16 base
    # with fp32 LoRA adapters: 4 bytes, not the model's mean bytes per parameter)
    tbpp, frozen_fp32 = weight_dtype_split(graph)
    weight_copies = 2.0 * params * keep if half and not no_casts else 0.0  # autocast's cached half-precision casts
    frozen_casts = graph.extra.get("frozen_cast_params") if graph.extra else None
    if half and frozen_casts is not None and params and not o2:
        # autocast caches the casts of trainable weights only; a frozen weight's cast stays only where backward
        # needs it for the input gradient (the frontend counted those): a frozen backbone keeps almost none. Only
        # weights held in fp32 are cast: a weight already 16-bit (a bf16-loaded base under LoRA) is read as it is
        full = float(graph.extra.get("parallel_full_params") or params)
        frozen = max(0.0, params - graph.trainable_params)
        share32 = frozen_fp32 / frozen if frozen else 0.0
        own = 0.0 if no_casts else float(graph.trainable_params)
        cast32, ckpt_note = checkpointed_frozen_casts(graph, float(frozen_casts) * params / full * share32)
        weight_copies = 2.0 * min(params, own + cast32) * keep
        frozen_full = frozen * full / params
        notes.append(f"weight casts: autocast caches half-precision casts of trainable weights only; of the "
                     f"{frozen_full:,.0f} frozen parameters, the {float(frozen_casts):,.0f} of matmul / convolution "
                     f"layers backward runs through keep their casts for the input gradient"
                     + (f" where held in fp32: the frozen weights' stored bytes make {frozen_fp32 * full / params:,.0f}"
                        f" of them fp32 ({share32:.0%}, charged in that share), the rest 16-bit, which autocast reads "
                        f"without a copy" if share32 < 1.0 else ""))
        if ckpt_note:
            notes.append(ckpt_note)
    bpp = tbpp
    grads = trainable * bpp
    master = 0.0
    megatron = getattr(plan, "training_stack", "pytorch") == "megatron" and half
    if megatron:  # wattlint.stack: half-precision parameters, an fp32 master copy, no cached casts
        weights = 2.0 * params * keep
        weight_copies = 0.0
        master = 4.0 * trainable
        grads = trainable * (2.0 if plan.precision == "fp16" else 4.0)
        notes.append("training stack megatron: weights 2 bytes per parameter (" + ("fp16" if plan.precision ==
                     "fp16" else "bf16") + "), fp32 master copy 4 bytes per trainable parameter (sharded like the "
                     "optimizer state), gradients " + ("2 bytes (fp16)" if plan.precision == "fp16" else
                     "4 bytes (fp32 accumulation buffer, as Megatron-LM keeps for bf16)") + ", no cached weight casts")
    elif graph.extra.get("fp32_master_weights") and trainable:  # an ONNX graph stored in fp16 / bf16
        master = 4.0 * trainable
        notes.append("half-precision weights in the graph, trained in mixed precision: an fp32 master copy, 4 bytes "
                     "per trainable parameter (sharded like the optimizer state)")
    opt_name = (plan.optimizer or "adamw").lower()
    # torch's optimizers make their state zeros_like(param) (torch/optim/adam.py: exp_avg, exp_avg_sq), in the
    # parameters' dtype: fp32 for fp32 (and autocast) parameters; 2 bytes for a module trained in half precision;
    # as wide as the parameters when they are wider than fp32 (complex64: 8 bytes, the complex Adam step updates
    # view_as_real of the complex state; float64: 8), read as bytes per parameter as stored, as the gradients are.
    # An fp32 master copy (megatron, an fp16-stored ONNX graph) keeps fp32 state.
    state_bytes = 2.0 if pure else 4.0 if master else max(4.0, bpp)
    opt_state = costs.optimizer_state_elems(opt_name, trainable, momentum=opt_name == "sgd") * state_bytes
    sharding = (plan.sharding or "none").lower()
    sharded = sharding in ("zero1", "zero2", "zero3", "fsdp") and n > 1
    if plan.expert_parallel > 1:
        notes.append(_expert_note(graph, split, plan, sharded))
    if sharded:
        share = split.sharded_share(n) if split.removed else 1.0 / n
        opt_state *= share
        master *= share
        if sharding in ("zero2", "zero3", "fsdp"):
            grads *= share
        if sharding in ("zero3", "fsdp"):
            gathered, how = gathered_share(graph)
            weights = weights * share + weights * gathered
            cast_share = weight_copies / (2.0 * params * keep) if params and keep else 0.0  # weights cast
            weight_copies = weight_copies * share + 2.0 * params * keep * gathered * cast_share
            notes.append(f"{sharding}: weights sharded over {n} GPUs, plus the gathered units in flight: {how}")
    buckets = ddp_bucket_bytes(plan, grads)
    if buckets:
        notes.append(DDP_BUCKETS_NOTE)
    elif getattr(plan, "ddp_bucket_view", False) and ddp_replicated(plan):
        notes.append(DDP_BUCKET_VIEW_NOTE)
    opt_tmp = optimizer_step_temporaries(graph, opt_name, trainable, 4.0 if master else bpp, megatron)
    if sharded:
        opt_tmp *= share
    loss_tmp, loss_note = loss_transient_bytes(graph, plan)
    # under a pipeline each stage holds its own weights, gradients and optimizer state beside its own activations:
    # the peak is the highest stage's (the per-GPU graph holds the costed stage's, scaled by the stages' parameters)
    scale = _stage_scales(graph)
    state = weights + master + grads + buckets + opt_state
    act, act_notes, runs_loss, k = stage_activation_bytes(
        graph, plan, loss_tmp, [state * f for f in scale] if scale else None,
        [opt_tmp * f for f in scale] if scale else None, [weight_copies * f for f in scale] if scale else None)
    notes += act_notes
    f = scale[k] if scale and k is not None else 1.0
    if f != 1.0:
        info = (graph.extra or {}).get("pipeline_stages") or {}
        costed = int(info.get("costed", len(scale) - 1))
        weights, weight_copies, master, grads, buckets, opt_state, opt_tmp = (
            x * f for x in (weights, weight_copies, master, grads, buckets, opt_state, opt_tmp))
        held = info["params"]
        notes.append(f"peak memory per stage: stage {k + 1} of {len(scale)} holds {held[k]:,} parameters before the "
                     f"tensor-parallel split against the costed stage {costed + 1}'s {held[costed]:,}: its weights, "
                     f"gradients and optimizer state x {f:.4f} of the costed stage's, with its own activations")
    if not runs_loss:  # a pipeline's first stage, fuller than the last even with the loss: it runs no loss
        loss_tmp, loss_note = 0, None
    if loss_note:
        notes.append(loss_note)
    dynamic = act + weight_copies + loss_tmp
    # the optimizer step runs after backward freed the activations and the cached casts: its temporaries set the
    # peak when they outgrow them (a large model at a small micro-batch)
    step_extra = max(0.0, opt_tmp - dynamic)
    if step_extra:
        notes.append(f"peak at the optimizer step: torch's foreach {opt_name} allocates {opt_tmp / MIB:,.1f} MiB of "
                     f"temporaries over the parameters at once, more than backward's {dynamic / MIB:,.1f} MiB of "
                     f"activations, weight casts and loss transient ({step_extra / MIB:,.1f} MiB more; "
                     f"--optimizer-impl fused allocates none)")
    frag = FRAGMENTATION * (dynamic + step_extra)
    context, basis = context_bytes(graph)
    notes.append(workspace_note(dynamic + step_extra, frag, context, basis))
    if ecc_reserves_memory(gpu):
        notes.append(f"usable GPU memory {gpu.memory_gb * (1 - DRIVER_RESERVED) * GDDR_ECC_USABLE:.2f} GiB of "
                     f"{gpu.memory_gb:g}: ECC, on by default on GDDR data-centre boards, keeps 1/16 (nvidia-smi: T4 "
                     f"15,360 of 16,384 MiB, L4 23,034 of 24,576), after the {DRIVER_RESERVED:.1%} the driver "
                     f"reserves")
    total = (weights + weight_copies + master + grads + buckets + opt_state + act + loss_tmp + step_extra + context
             + frag)
    cap = gpu_memory_bytes(gpu)
    breakdown = {
        "weights": int(weights),
        "weight_casts": int(weight_copies),
        "gradients": int(grads),
        "optimizer_state": int(opt_state),
        "activations": int(act),
        "loss_transient": int(loss_tmp),
        "workspace": int(context + frag),
    }
    if master:
        breakdown["master_weights"] = int(master)
    if buckets:
        breakdown["ddp_buckets"] = int(buckets)
    if step_extra:
        breakdown["optimizer_step_temporaries"] = int(step_extra)
    return {
        "peak_bytes_per_gpu": int(total),
        "gpu_memory_bytes": cap,
        "fits": bool(total <= cap),
        "breakdown": breakdown,
        "notes": notes,
    }
