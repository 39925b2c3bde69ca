"""Aggregation: priced ops -> layer -> phase -> step -> plan (an :class:`~wattlint.types.Estimate`).

Nothing here models hardware: op times and powers come from the energy model (wattlint.energy.pricing), and
communication, launch gaps, host power and facility energy from wattlint.energy.system. This module only adds up:

* every GPU runs ``grad_accum`` micro-batches of forward + backward (each record x grad_accum x the micro-batch
  scale, when the plan's micro-batch differs from the traced one), then one optimizer step (x 1/n of the parameters
  under ZeRO / FSDP sharding); full recompute the frontend did not trace adds the forward again to backward, and
  selective recompute adds the attention core's forward records (wattlint.parallel.attention_core) to backward;
* the GPUs run in lock-step: step time = compute + launch gaps + exposed communication; GPU energy of the step =
  (compute + gaps at idle power + exposed communication) x GPUs;
* the plan = steps x step; facility energy = (GPU + host) x PUE; CO2 = facility kWh x grid intensity;
  cost = facility kWh x electricity price + GPU-hours x GPU-hour price (null when neither is known).

The 5-95 % ranges multiply the totals by the energy model's range factors (time and GPU-hours by its time factors),
widened where needed to contain the estimate itself (x1).
"""

from __future__ import annotations

import dataclasses
import math
import re

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import memory as _memory
from . import parallel as _parallel
from .energy import system
from .energy.pricing import PricedOps
from .report import units as _u
from .report.units import ms as _ms
from .types import (BATCH_HINT, OpKind, CostGraph, Estimate, GpuSpec, LayerEstimate, MemoryUse, OpRecord, Phase, PhaseCost, Plan,
                    StepCost, TotalCost, Utilization)

ROOT_LAYER = "(root)"
PHASES = ("forward", "backward", "optimizer", "idle_gaps", "communication", "tensor_parallel", "pipeline_p2p",
          "expert_all_to_all", "context_parallel", "pipeline_bubble", "pipeline_imbalance")
MFU_CONVENTION = ("MFU = (6 N + 12 L h s attention) FLOPs per token x tokens/s / (GPUs x dense peak): N all "
                  "parameters (an untied input embedding too, whose lookup does no FLOPs), attention scores over the full s x s square, no recompute (llm-foundry MFU_FORMULA.md, "
                  "PaLM appendix B); HFU = the FLOPs wattlint traced for the step (recompute included; causal attention "
                  "as the s(s+1)/2 pairs the kernel computes, so HFU can sit below MFU) / (step time x GPUs x dense "
                  "peak)")
MFU_CONVENTION_MOE = ("MFU = (6 N_active + 12 L h s attention) FLOPs per token x tokens/s / (GPUs x dense peak): "
                      "N_active = all parameters except the routed experts a token does not use (embeddings, "
                      "attention, norms, router, shared experts and LM head in full, + top-k / experts of each MoE "
                      "layer's routed-expert parameters), attention scores over the full s x s square, no recompute "
                      "(the 6N convention of llm-foundry MFU_FORMULA.md / PaLM appendix B with active parameters); "
                      "HFU = the FLOPs wattlint traced for the step (routed rows, recompute included, causal attention as "
                      "the s(s+1)/2 pairs computed) / (step time x GPUs x dense peak)")

MFU_CONVENTION_TRACED = ("MFU = the model's traced forward + backward FLOPs per counted token (no recompute, no "
                         "optimizer step) x tokens/s / (GPUs x dense peak): the 6 N + 12 L h s attention convention "
                         "(llm-foundry MFU_FORMULA.md, PaLM appendix B) assumes every weight multiplies every "
                         "counted token once, which this model breaks; HFU = the FLOPs wattlint traced for the step "
                         "(recompute included) / (step time x GPUs x dense peak)")


@dataclass(frozen=True)
class EnergyModelInfo:
    """What priced the ops: provenance label, source, and 5-95 % multiplicative range factors."""

    calibration: str
    source: str
    energy_range: tuple[float, float]
    time_range: tuple[float, float]
    searched: str = ""  # the models search path looked through
    coverage: float = 1.0  # share of the step's op time the named model prices (the prior the rest)

    def __post_init__(self):
        # a 5-95 % band always contains the estimate it brackets: a model whose held-out residuals all lie on one side
        # (a run correction fitted on a few runs, a biased card) gives e.g. x1.10-x1.30, which printed a range above
        # the number it belongs to; such a band is widened to reach x1.00
        for name in ("energy_range", "time_range"):
            lo, hi = getattr(self, name)
            object.__setattr__(self, name, (min(float(lo), 1.0), max(float(hi), 1.0)))


@dataclass
class _Sums:
    phase_t: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    phase_e: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    layer_t: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    layer_e: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    layer_f: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    layer_type: dict[str, str] = field(default_factory=dict)
    layer_kind_e: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    # the optimizer step's part of layer_t / layer_e / layer_f (a pipeline stage's layers: _stage_layers)
    layer_opt: dict[str, list[float]] = field(default_factory=dict)
    flops: float = 0.0
    block_fb_t: float = 0.0  # forward + backward time inside the repeated blocks (pipeline bubble)
    block_fb_e: float = 0.0  # ... their energy and FLOPs (the other pipeline stages' own work: _pipeline_mean)
    block_fb_f: float = 0.0
    opt_f: float = 0.0  # FLOPs of the optimizer step
    attn_fb_t: float = 0.0  # forward + backward time of the fused attention kernels (context-parallel overlap)
    micro_ops: int = 0
    opt_ops: int = 0
    own_t: float = 0.0  # op time per step the energy model itself priced (PricedOps.own), recompute included
    ops_t: float = 0.0  # all op time per step, weighted the same way
    core: tuple[int, float, float] | None = None  # selective recompute: (records, FLOPs, time) re-run per step
    # issue-ordered launch streams (energy.system.LaunchStream): one traced micro-batch's forward, recomputed and
    # backward ops; the optimizer step's ops (kernel times x the optimizer multiplier)
    micro_stream: system.LaunchStream | None = None
    opt_stream: system.LaunchStream | None = None
    memo: dict = field(default_factory=dict)  # results derived from these sums alone (shared by the copies)

    def add(self, phase: str, layer: str, t: float, e: float, f: float) -> None:
        self.phase_t[phase] += t
        self.phase_e[phase] += e
        self.layer_t[layer] += t
        self.layer_e[layer] += e
        self.layer_f[layer] += f
        self.flops += f


def multipliers(graph: CostGraph, plan: Plan) -> tuple[float, float]:
    """(forward/backward multiplier, optimizer multiplier) per GPU and step. The optimizer step covers this GPU's
    parameters: 1/n of them under ZeRO / FSDP sharding over n replicas, and under expert parallelism only its
    experts / ep of the routed-expert parameters (wattlint.parallel.expert_split)."""
    traced = max(1, int(graph.micro_batch or 1))
    fb = max(1, plan.grad_accum) * plan.micro_batch_size / traced
    dp = plan.shard_group  # ZeRO / FSDP / distributed optimizer: data-parallel x context-parallel ranks
    sharded = plan.sharding in system.SHARDED and dp > 1
    opt = 1.0 / dp if sharded else 1.0
    if plan.expert_parallel > 1 and graph.params:
        split = _parallel.expert_split(graph, plan.expert_parallel)
        if split.removed:
            opt = split.params / graph.params * (split.sharded_share(dp) if sharded else 1.0)
    return fb, opt


def _sum_ops(graph: CostGraph, priced: PricedOps, plan: Plan) -> _Sums:
    """Phase / layer sums of the priced ops under ``plan``'s multipliers. They depend only on the graph, the priced
    ops and (fb, opt, recompute): computed once per such key and kept on ``priced`` (lint re-estimates that change
    only the GPU's plan reuse them); the caller gets its own copy of the dicts it adds to."""
    fb, opt = multipliers(graph, plan)
    recompute = plan.activation_checkpointing and not _memory.checkpointing_traced(graph)
    selective = plan.recompute == "selective" and not recompute
    blocks = plan.pipeline_parallel > 1
    key = (id(graph), fb, opt, recompute, selective, blocks)
    hit = priced.sums.get(key)
    if hit is None or hit[0] is not graph:
        core = _parallel.attention_core(priced.records) if selective else None
        hit = priced.sums[key] = (graph, _sum_records(graph, priced, fb, opt, recompute, blocks, core))
    s = hit[1]
    return _Sums(phase_t=defaultdict(float, s.phase_t), phase_e=defaultdict(float, s.phase_e), layer_t=s.layer_t,
                 layer_e=s.layer_e, layer_f=s.layer_f, layer_type=s.layer_type, layer_kind_e=s.layer_kind_e,
                 layer_opt=s.layer_opt,
                 flops=s.flops, block_fb_t=s.block_fb_t, block_fb_e=s.block_fb_e, block_fb_f=s.block_fb_f,
                 opt_f=s.opt_f, attn_fb_t=s.attn_fb_t, micro_ops=s.micro_ops, opt_ops=s.opt_ops, memo=s.memo,
                 own_t=s.own_t, ops_t=s.ops_t,
                 core=s.core, micro_stream=s.micro_stream, opt_stream=s.opt_stream)


_PHASE_VALUE = {p: p.value for p in Phase}


def _sum_records(graph: CostGraph, priced: PricedOps, fb: float, opt: float, recompute: bool,
                 pipeline: bool, core: frozenset[int] | None = None) -> _Sums:
    """One pass over the records (each sum accumulates in record order, as _Sums.add would); with a pipeline,
    also the forward + backward time inside the repeated blocks (for the bubble). ``recompute``: every forward
    record runs again in backward (full recompute not traced); ``core``: the indices of the records that run
    again in backward (selective recompute of the attention core)."""
    types = graph.module_types()
    blocks = _parallel.stage_blocks_of(graph) if pipeline else None
    s = _Sums()
    phase_t, phase_e, layer_t, layer_e, layer_f = s.phase_t, s.phase_e, s.layer_t, s.layer_e, s.layer_f
    layer_type, layer_kind_e, layer_opt = s.layer_type, s.layer_kind_e, s.layer_opt
    comm, optim, fwd = Phase.COMMUNICATION, Phase.OPTIMIZER, Phase.FORWARD
    bwd = Phase.BACKWARD.value
    pv = _PHASE_VALUE
    kinds: dict = {}
    flops = block_fb_t = block_fb_e = block_fb_f = opt_f = attn_fb_t = 0.0
    micro_ops, opt_ops = system.Launches(), system.Launches()
    core_n, core_f, core_t = 0, 0.0, 0.0
    own = priced.own
    own_t = ops_t = 0.0
    # launch streams in issue order: forward, then the recomputed forward ops (at the start of backward: an
    # approximation of checkpointing's per-block re-run, same ops, no sync in between), then backward; optimizer
    fwd_k: list[float] = []
    fwd_n: list[int] = []
    re_k: list[float] = []
    re_n: list[int] = []
    bwd_k: list[float] = []
    bwd_n: list[int] = []
    opt_k: list[float] = []
    opt_n: list[int] = []
    for i, (r, t, e) in enumerate(zip(priced.records, priced.times_s, priced.energies_j)):
        ph = r.phase
        if ph is comm:
            continue
        k = opt if ph is optim else fb
        layer = r.module or ROOT_LAYER
        tk, ek, fk = t * k, e * k, r.flops * k
        p = pv[ph]
        phase_t[p] += tk
        phase_e[p] += ek
        layer_t[layer] += tk
        layer_e[layer] += ek
        layer_f[layer] += fk
        flops += fk
        again = ph is fwd and (recompute or (core is not None and i in core))
        if again:  # the recompute belongs to backward (and launches its ops again)
            re_n.append(micro_ops.add(r, t, True))
            re_k.append(t)
            phase_t[bwd] += tk
            phase_e[bwd] += ek
            layer_t[layer] += tk
            layer_e[layer] += ek
            layer_f[layer] += fk
            flops += fk
            if core is not None:
                core_n += 1
                core_f += fk
                core_t += tk
        if blocks is not None and ph is not optim and blocks.index(r.module) is not None:
            block_fb_t += tk * (2 if again else 1)
            block_fb_e += ek * (2 if again else 1)
            block_fb_f += fk * (2 if again else 1)
        if ph is optim:
            opt_f += fk
            lo = layer_opt.get(layer)
            if lo is None:
                lo = layer_opt[layer] = [0.0, 0.0, 0.0]
            lo[0] += tk
            lo[1] += ek
            lo[2] += fk
        runs = tk * (2 if again else 1)
        ops_t += runs
        if own is None or own[i]:
            own_t += runs
        if r.kind is OpKind.ATTENTION and ph is not optim:
            attn_fb_t += tk * (2 if again else 1)
        if layer not in layer_type:
            layer_type[layer] = types.get(r.module) or ""
        kind = r.kind
        kv = kinds.get(kind)
        if kv is None:
            kv = kinds[kind] = kind.value
        layer_kind_e[layer][kv] += ek
        if ph is optim:
            opt_n.append(opt_ops.add(r, t))
            opt_k.append(t * k)
        elif ph is fwd:
            fwd_n.append(micro_ops.add(r, t))
            fwd_k.append(t)
        else:
            bwd_n.append(micro_ops.add(r, t))
            bwd_k.append(t)
    s.flops, s.block_fb_t, s.micro_ops, s.opt_ops = flops, block_fb_t, micro_ops.n, opt_ops.n
    s.block_fb_e, s.block_fb_f, s.opt_f = block_fb_e, block_fb_f, opt_f
    s.attn_fb_t = attn_fb_t
    s.own_t, s.ops_t = own_t, ops_t
    s.micro_stream = system.LaunchStream.of(fwd_k + re_k + bwd_k, fwd_n + re_n + bwd_n)
    s.opt_stream = system.LaunchStream.of(opt_k, opt_n)
    if core is not None:
        s.core = (core_n, core_f, core_t)
    return s


def _system(graph: CostGraph, gpu: GpuSpec, plan: Plan, s: _Sums) -> list[str]:
    """Launch gaps and communication into the phase sums; returns their assumption lines."""
    notes = []
    ga = max(1, plan.grad_accum)
    fwd, bwd = s.phase_t.get("forward", 0.0), s.phase_t.get("backward", 0.0)
    host_op, host_src = system.host_op(plan)
    multi = not graph.single_tensor_optimizer
    fb, _ = multipliers(graph, plan)
    queue = system.LAUNCH_QUEUE
    key = ("launch_gap", fb / ga, ga, host_op, multi, system.HOST_EXPOSED, queue)
    gap = s.memo.get(key)
    if gap is None:
        gap = s.memo[key] = system.launch_gap_s(s.micro_stream, s.opt_stream, fb / ga, ga, host_op, multi,
                                                system.HOST_EXPOSED, queue)
    if gap > 1e-7:
        s.phase_t["idle_gaps"] = gap
        s.phase_e["idle_gaps"] = gap * gpu.idle_w
        n_ops = s.micro_ops * ga + (s.opt_ops if not multi else min(system.OPT_MAX_LAUNCHES, s.opt_ops))
        notes.append(system.launch_gap_note(n_ops, gap, gpu.idle_w, host_op, host_src,
                                            system.HOST_EXPOSED, queue))
    elif plan.host_op_s is None and plan.training_stack == "megatron":
        notes.append(f"host launch time {host_op * 1e6:.3g} us per op ({host_src}): launching is hidden behind the "
                     f"GPU work here, no launch gaps")
    comm = system.data_parallel(graph, gpu, system.data_parallel_plan(plan), fwd, bwd, job=plan)
    if comm is not None:
        s.phase_t["communication"] = comm.exposed_s
        s.phase_e["communication"] = comm.energy_j
        notes.append(comm.note)
    # one micro-batch's launch gaps (without the optimizer step's): the other stages are as launch-bound while the
    # pipeline fills and drains, so the bubble and the stage imbalance count them with the blocks
    gap_mb = 0.0
    if plan.pipeline_parallel > 1 and gap > 1e-7:
        key_mb = ("launch_gap_micro", fb / ga, host_op, system.HOST_EXPOSED, queue)
        gap_mb = s.memo.get(key_mb)
        if gap_mb is None:
            gap_mb = s.memo[key_mb] = system.launch_gap_s(s.micro_stream, system.LaunchStream.of([], []), fb / ga, 1,
                                                          host_op, multi, system.HOST_EXPOSED, queue)
    mp = system.model_parallel(graph, gpu, plan, (fwd + bwd) / ga, s.block_fb_t / ga, s.attn_fb_t / ga,
                               micro_gap_s=gap_mb)
    if mp is not None:
        for phase, t, w in (("tensor_parallel", mp.tp_s, mp.comm_power_w), ("pipeline_p2p", mp.pp_s, mp.comm_power_w),
                            ("expert_all_to_all", mp.ep_s, mp.comm_power_w),
                            ("context_parallel", mp.cp_s, mp.comm_power_w),
                            ("pipeline_bubble", mp.bubble_s, gpu.idle_w)):
            if t > 0:
                s.phase_t[phase] = t
                s.phase_e[phase] = t * w
        notes.extend(mp.notes)
        notes += _pipeline_imbalance(graph, plan, gpu, s, gap_mb * ga)
    return notes


def _pipeline_imbalance(graph: CostGraph, plan: Plan, gpu: GpuSpec, s: _Sums, micro_gaps: float = 0.0) -> list[str]:
    """Uneven pipeline stages whose costed stage is the last (chosen on FLOPs: its blocks + the LM head and loss)
    while a stage of more blocks takes longer, priced: the pipeline runs at the slower stage's pace, so the costed
    GPU waits the difference every step (``pipeline_imbalance``, at idle power) and the bubble is the slower
    stage's. The other stage's time: its blocks at the costed stage's per-block time (forward + backward, with the
    per-layer collectives and launch gaps in proportion to the blocks); the first stage's embedding lookup is not
    priced (as elsewhere)."""
    info = (graph.extra or {}).get("pipeline_stages") or {}
    sizes = [int(x) for x in info.get("blocks") or []]
    pp = plan.pipeline_parallel
    if pp <= 1 or len(sizes) != pp or int(info.get("costed", pp - 1)) != pp - 1:
        return []
    n_c = sizes[-1]
    k = max(range(pp - 1), key=lambda i: sizes[i])
    n_max = sizes[k]
    if n_c <= 0 or n_max <= n_c:
        return []
    pt = s.phase_t
    # per-layer collectives and launch gaps (a launch-bound step: its blocks' ops) taken as the blocks' own
    # (the micro-batches' launch gaps, ``micro_gaps`` per step, as the bubble counts them: not the optimizer step's)
    per_layer = sum(pt.get(p, 0.0) for p in BLOCK_PHASES) + micro_gaps
    costed_t = pt.get("forward", 0.0) + pt.get("backward", 0.0) + per_layer
    other_t = n_max * s.block_fb_t / n_c + per_layer * n_max / n_c
    delta = other_t - costed_t
    if delta <= 1e-9:
        return []
    pt["pipeline_imbalance"] = delta
    s.phase_e["pipeline_imbalance"] = delta * gpu.idle_w
    # the fill and drain run at that pace too: the bubble priced from the costed stage's blocks, x n_max / n_c
    extra = pt.get("pipeline_bubble", 0.0) * (n_max / n_c - 1.0)
    if extra > 0:
        pt["pipeline_bubble"] += extra
        s.phase_e["pipeline_bubble"] = s.phase_e.get("pipeline_bubble", 0.0) + extra * gpu.idle_w
    return [f"pipeline stages: stage {k + 1} of {pp} ({n_max} blocks) takes longer than the costed last stage ("
            f"{n_c} blocks + final norm, LM head and loss, chosen on FLOPs): {other_t * 1e3:.4g} ms against "
            f"{costed_t * 1e3:.4g} ms of forward + backward work (with per-layer collectives and launch gaps) per step; the pipeline runs at the slower stage's "
            f"pace, so the costed GPU waits {_ms(delta)} ms per step at idle power ({gpu.idle_w:.0f} W, "
            f"pipeline_imbalance), and the bubble is that stage's ({n_max} / {n_c} x the costed stage's)"]


BLOCK_PHASES = ("tensor_parallel", "context_parallel", "expert_all_to_all")  # per layer: with a stage's blocks


def _stage_sizes(graph: CostGraph, plan: Plan) -> tuple[dict, list[int], int] | None:
    """(the graph's pipeline_stages info, the blocks of each stage, the costed stage's index), or None without
    pipeline stages matching the plan's degree."""
    info = (graph.extra or {}).get("pipeline_stages") or {}
    sizes = [int(x) for x in info.get("blocks") or []]
    pp = plan.pipeline_parallel
    if pp <= 1 or len(sizes) != pp:
        return None
    return info, sizes, int(info.get("costed", pp - 1))


@dataclass(frozen=True)
class _StageOptimizer:
    """The optimizer step of every pipeline stage against the costed stage's (:func:`_stage_optimizer`)."""

    ratio: float  # the stages' mean optimizer step / the costed stage's
    text: str  # what each stage steps, for the assumption lines


def _post_block_weights(graph: CostGraph, blocks: _parallel.Blocks) -> int:
    """Matmul weights outside the blocks on the per-GPU graph of the last stage (the LM head: vocabulary-parallel,
    n / tp per GPU), counted as :func:`wattlint.parallel._stage_param_share` counts what the last stage holds."""
    post, seen = 0, set()
    for r in graph.records:
        if (r.phase is Phase.FORWARD and r.kind is OpKind.MATMUL and not r.recompute and r.module not in seen
                and blocks.index(r.module) is None and r.dim("n", 0) and r.dim("k", 0)):
            seen.add(r.module)
            post += int(r.dim("n", 0)) * int(r.dim("k", 0))
    return post


def _stage_optimizer(graph: CostGraph, plan: Plan, sizes: list[int], costed: int,
                     memo: dict | None = None) -> _StageOptimizer:
    """Each pipeline stage's optimizer step over its own parameters, at the costed stage's optimizer cost per
    parameter: its blocks (the costed stage's parameters less the LM head it holds, / its blocks), + the parameters
    outside the blocks once (the embeddings on the first stage, the final norm and LM head on the last), + on the last
    stage the copy of a tied input embedding (GPT-2's wte), which Megatron-LM keeps on the first and the last stage
    (their gradients all-reduced, each copy stepped by its stage's optimizer; wattlint.parallel counts the copy in the
    last stage's weights). A tied embedding: the costed last stage's LM head has more weights than twice what the
    model holds outside its blocks besides it (GPT-2: 38,597,376 against 787,968 of position embeddings and final
    norm; an untied head has an input embedding of its size beside it). The optimizer records of the per-GPU graph
    (one multi-tensor kernel per pass over all parameters, or per-parameter records scaled alike) are the costed
    stage's parameters' share of the model's (wattlint.parallel.shard_graph), so the split is by parameter counts.
    Without the per-block parameter count (an ONNX graph), with frozen parameters (which stage's are trained is not
    known), or counts that do not add up: each stage x its blocks / the costed stage's, as the costed stage's
    records were scaled from the model's (its blocks' share of all blocks). Review 2026-12: every stage's step was
    the costed stage's x its blocks / the costed stage's, so the LM head's was charged per block on every stage
    (GPT-2 small at PP 7: 4.4 x the step of PP 1). ``memo``: the sums' memo (one result per graph and layout)."""
    key = ("stage_optimizer", tuple(sizes), costed, plan.expert_parallel, plan.sharding, plan.shard_group)
    if memo is not None and key in memo:
        return memo[key]
    out = _stage_optimizer_of(graph, plan, sizes, costed)
    if memo is not None:
        memo[key] = out
    return out


def _stage_optimizer_of(graph: CostGraph, plan: Plan, sizes: list[int], costed: int) -> _StageOptimizer:
    pp, n_c = len(sizes), sizes[costed]
    blocks_ratio = sum(sizes) / pp / n_c
    extra = graph.extra or {}
    per_block = float(extra.get("block_params") or 0)
    count = int(extra.get("block_count") or 0)
    full = float(extra.get("parallel_full_params") or graph.params or 0)
    tp = max(1, int((extra.get("parallel_layout") or {}).get("tp", 1)))
    L = sum(sizes)
    fallback = _StageOptimizer(blocks_ratio, "its optimizer step x its blocks / the costed stage's ({why})")
    if not per_block or count != L or not full:
        return dataclasses.replace(fallback, text=fallback.text.format(
            why="the parameters per block not known: the costed stage's step is its blocks' share of the model's"))
    if graph.trainable_params < graph.params:
        return dataclasses.replace(fallback, text=fallback.text.format(
            why="some parameters frozen: which stage's are trained is not known"))
    here = float(graph.params)  # the parameters the costed stage's GPU steps: its records' share of the model's
    expert = 0.0  # of which routed experts (expert parallelism: those of its experts / ep that it holds)
    if plan.expert_parallel > 1:
        split = _parallel.expert_split(graph, plan.expert_parallel)
        if split.removed:
            here, expert = float(split.params), float(split.expert)
    # the optimizer multiplier (multipliers()) per parameter: 1 / dp under ZeRO / FSDP, the routed experts' over the
    # dp / ep ranks that hold the same experts
    dp = plan.shard_group
    sharded = plan.sharding in system.SHARDED and dp > 1
    w_other = 1.0 / dp if sharded else 1.0
    w_expert = 1.0 / max(1, dp // max(1, plan.expert_parallel)) if sharded else 1.0
    last = costed == pp - 1
    blocks = _parallel.stage_blocks_of(graph)
    if blocks is None:
        return dataclasses.replace(fallback, text=fallback.text.format(why="no blocks recognised on the stage"))
    head = float(_post_block_weights(graph, blocks)) if last else 0.0
    outside = (full - L * per_block) / tp  # per GPU: embeddings, final norm, LM head (once)
    block = (here - head) / n_c
    if outside < 0 or block <= 0 or here - expert - head < 0:
        return dataclasses.replace(fallback, text=fallback.text.format(
            why="the parameters per block do not add up to the model's"))
    tied = last and head > 0 and outside - head < head / 2
    copy = head if tied else 0.0
    total = L * block + outside + copy
    # stepped parameters, weighted as the optimizer multiplier weighs them: the costed stage's and all stages'
    w_c = (here - expert) * w_other + expert * w_expert
    w_all = (L * ((here - expert - head) / n_c * w_other + expert / n_c * w_expert) + (outside + copy) * w_other)
    ratio = w_all / pp / w_c
    per = " per GPU" if tp > 1 or plan.expert_parallel > 1 else ""
    model = f"the model's {full:,.0f}" + (f" / tp {tp}" if tp > 1 else "")
    what = (f"its optimizer step over its own parameters at the costed stage's optimizer cost per parameter: its "
            f"blocks ({block:,.0f} parameters each{per}), the {outside:,.0f}{per} outside the blocks on the first "
            f"stage (embeddings) and the last (final norm, LM head)")
    if tied:
        what += (f", and the last stage's copy of the tied input embedding ({copy:,.0f}{per}: Megatron-LM keeps the "
                 f"word embeddings on the first and the last stage, all-reduces their gradients and steps both)")
    elif not last:
        what += " (a tied input embedding's copy on the last stage not counted: the last stage is not traced)"
    what += f": {total:,.0f}{per} over the {pp} stages"
    if not expert:
        what += f" ({total / (full / tp):.3f} x {model})"
    elif sharded:
        what += (f" (the routed experts' {expert / n_c:,.0f} per block sharded over the {max(1, dp // plan.expert_parallel)} "
                 f"ranks that hold them, the rest over {dp}, as in the step)")
    what += f", on average {ratio:.3f} x the costed stage's {here:,.0f}"
    return _StageOptimizer(ratio, what)


def _pipeline_mean(graph: CostGraph, plan: Plan, gpu: GpuSpec, s: _Sums) -> tuple[float, str] | None:
    """Under pipeline parallelism, turn the step energy of the costed (bottleneck) stage's GPU, which the phase sums
    hold, into the mean over the stages' GPUs: every stage runs in lock-step with the costed one (same step time)
    but does its own work, its blocks (forward + backward, their per-layer collectives), its optimizer step over its
    own parameters (:func:`_stage_optimizer`) and, on the last stage only, the final norm, LM head and loss, and
    waits at idle power for the rest.

    Stage i's busy work = b + n_i x (one block) + [i last] x head + its optimizer step, with the block's time /
    energy / FLOPs the costed stage's block sums / its n_c blocks, the head the costed stage's non-block work when it
    is the last stage (else its FLOPs in blocks, ``head_blocks``, priced at the block's rate) and b any other
    non-block work of the costed stage (every stage). The per-layer collectives (``BLOCK_PHASES``: per layer of the
    stage, nothing outside the blocks) scale by n_i / n_c. Phase energies become the means (forward / backward pro
    rata, the waiting in ``pipeline_bubble``); phase times stay the costed stage's. The first stage's embedding
    lookup is not priced (as for the step time). Returns (mean FLOPs per GPU and step, the assumption line), or None
    without pipeline stages."""
    stages = _stage_sizes(graph, plan)
    if stages is None:
        return None
    info, sizes, costed = stages
    pp = plan.pipeline_parallel
    n_c = sizes[costed]
    if n_c <= 0:
        return None
    pt, pe = s.phase_t, s.phase_e
    fb_t = pt.get("forward", 0.0) + pt.get("backward", 0.0)
    fb_e = pe.get("forward", 0.0) + pe.get("backward", 0.0)
    fb_f = s.flops - s.opt_f
    blk = (s.block_fb_t / n_c, s.block_fb_e / n_c, s.block_fb_f / n_c)
    rest = (fb_t - s.block_fb_t, fb_e - s.block_fb_e, fb_f - s.block_fb_f)
    if costed == pp - 1:
        head, base = rest, (0.0, 0.0, 0.0)
    else:
        h = float(info.get("head_blocks") or 0.0)
        head, base = tuple(h * x for x in blk), rest
    mean_n = sum(sizes) / pp
    r = mean_n / n_c  # the per-layer collectives
    opt = _stage_optimizer(graph, plan, sizes, costed, s.memo)
    fb_mean = [base[k] + mean_n * blk[k] + head[k] / pp for k in range(3)]
    busy_t_c = fb_t + pt.get("optimizer", 0.0) + sum(pt.get(p, 0.0) for p in BLOCK_PHASES)
    busy_t_mean = (fb_mean[0] + opt.ratio * pt.get("optimizer", 0.0)
                   + r * sum(pt.get(p, 0.0) for p in BLOCK_PHASES))
    # the step's busy horizon is the slowest stage's: the costed stage's + the imbalance it waits for (already
    # priced at idle power in pipeline_imbalance); each stage waits the horizon minus its own busy time
    imb = pt.get("pipeline_imbalance", 0.0)
    wait = max(0.0, busy_t_c + imb - busy_t_mean) - imb
    before = sum(pe.values())
    if fb_e > 0:
        for p in ("forward", "backward"):
            if p in pe:
                pe[p] *= fb_mean[1] / fb_e
    if "optimizer" in pe:
        pe["optimizer"] *= opt.ratio
    for p in BLOCK_PHASES:
        if p in pe:
            pe[p] *= r
    pe["pipeline_bubble"] = max(0.0, pe.get("pipeline_bubble", 0.0) + wait * gpu.idle_w)
    pt.setdefault("pipeline_bubble", 0.0)
    after = sum(pe.values())
    flops = fb_mean[2] + opt.ratio * s.opt_f
    where = ("the costed (last) stage's own" if costed == pp - 1 else
             f"priced at the block rate from its FLOPs ({float(info.get('head_blocks') or 0.0):.2f} blocks' worth)")
    note = (f"pipeline stages' energy: each of the {pp} stages runs its own {'/'.join(map(str, sizes))} blocks (and "
            f"their per-layer collectives), the final norm, LM head and loss on the last stage only ({where}), "
            f"{opt.text}, and waits at idle power ({gpu.idle_w:.0f} W) for the rest of the costed "
            f"stage's step ({_ms((wait + imb))} ms per GPU on average, in pipeline_bubble"
            f"{' and pipeline_imbalance' if imb else ''}); GPU energy per step "
            f"{after / before:.3f} x the costed stage's" if before > 0 else "")
    return flops, note


def _totals(step: StepCost, gpu_j_per_step: float, plan: Plan, model: EnergyModelInfo, gpu: GpuSpec,
            host_w: float) -> tuple[TotalCost, list[str]]:
    notes = []
    steps = max(0, int(plan.steps))
    goodput = plan.goodput
    if not 0 < goodput <= 1:  # validated by options.py: reaching here is a bug, never silently 1.0
        raise RuntimeError(f"plan goodput {goodput!r} outside (0, 1]")
    loader_h, loader_note = system.loader_wait_h(plan)
    if loader_note:
        notes.append(loader_note)
    steps_h = steps * step.time_s / 3600.0
    productive_h = steps_h + loader_h
    time_h = productive_h / goodput
    lost_h = time_h - productive_h
    gpu_hours = time_h * plan.gpus
    idle_h = lost_h + loader_h  # the GPUs wait at idle power while the loader builds each epoch's first batch
    gpu_kwh = gpu_j_per_step * steps / 3.6e6 + idle_h * gpu.idle_w * plan.gpus / 1000.0
    host_kwh = step.host_energy_j * steps / 3.6e6 + idle_h * host_w / 1000.0
    if goodput < 1:
        notes.append(system.goodput_note(goodput, lost_h, gpu.idle_w))
    energy_kwh = system.facility_kwh(gpu_kwh, host_kwh, plan.pue)
    co2 = energy_kwh * plan.carbon_intensity_g_per_kwh / 1000.0
    cost = None
    if plan.price_per_kwh is not None or plan.gpu_hour_price is not None:
        cost = energy_kwh * (plan.price_per_kwh or 0.0) + gpu_hours * (plan.gpu_hour_price or 0.0)
        terms = [f"{_u.figure(energy_kwh)} kWh (facility) x ${plan.price_per_kwh:g}/kWh"] if plan.price_per_kwh else []
        if plan.gpu_hour_price is not None:
            terms.append(f"{_u.figure(gpu_hours)} GPU-h x ${plan.gpu_hour_price:g}/GPU-h")
        total = _u.usd(cost) if abs(cost) >= 0.01 else f"${_u.figure(cost)}"  # a sub-cent sum to its 4 digits
        notes.append(f"cost {total} = " + (" + ".join(terms) or "0 (prices of 0 given)"))
    else:
        notes.append("no --price or --gpu-hour-price given: cost_usd is null")
    bad = [k for k, v in (("time_h", time_h), ("gpu_hours", gpu_hours), ("energy_kwh", energy_kwh),
                          ("cost_usd", cost if cost is not None else 0.0)) if not math.isfinite(v)]
    if bad:  # options are bounded so that totals stay finite: a non-finite one is our bug (exit 3), never a report
        raise RuntimeError(f"non-finite total {', '.join(bad)} (steps {steps}, step {step.time_s!r} s)")
    (elo, ehi), (tlo, thi) = model.energy_range, model.time_range
    # the model's 5-95 % time band covers the priced steps; the loader wait is the user's stated input
    t_lo, t_hi = (steps_h * tlo + loader_h) / goodput, (steps_h * thi + loader_h) / goodput

    def facility_at(e_factor: float, t_factor: float) -> float:
        """The facility kWh at one edge of the band: the GPUs' step energy takes the energy band; what is power x
        time (the host's draw during the steps, and the idle wall time lost to goodput) takes the time band (it
        took the energy band: 2-3 % off at the edges where the host is a third of the energy, review)."""
        lost = (steps_h * t_factor + loader_h) * (1 / goodput - 1)
        idle = lost + loader_h
        return system.facility_kwh(gpu_j_per_step * steps / 3.6e6 * e_factor + idle * gpu.idle_w * plan.gpus / 1000.0,
                                   step.host_energy_j * steps / 3.6e6 * t_factor + idle * host_w / 1000.0, plan.pue)

    e_lo, e_hi = facility_at(elo, tlo), facility_at(ehi, thi)
    cost_range = None
    if cost is not None:  # each price times its own quantity's band
        cost_range = (e_lo * (plan.price_per_kwh or 0.0) + t_lo * plan.gpus * (plan.gpu_hour_price or 0.0),
                      e_hi * (plan.price_per_kwh or 0.0) + t_hi * plan.gpus * (plan.gpu_hour_price or 0.0))
    ci = plan.carbon_intensity_g_per_kwh / 1000.0
    total = TotalCost(steps=steps, time_h=time_h, time_h_range=(t_lo, t_hi), gpu_hours=gpu_hours,
                      gpu_hours_range=(t_lo * plan.gpus, t_hi * plan.gpus), gpu_energy_kwh=gpu_kwh,
                      host_energy_kwh=host_kwh, energy_kwh=energy_kwh, energy_kwh_range=(e_lo, e_hi), co2_kg=co2,
                      co2_kg_range=(e_lo * ci, e_hi * ci), cost_usd=cost, goodput=goodput, loader_wait_h=loader_h,
                      cost_usd_range=cost_range)
    return total, notes


def _layer_type(s: _Sums, name: str) -> str:
    """The module's class (or ONNX scope type) when the frontend knows it; else what its ops are, by energy:
    ``elementwise ops`` for an unnamed GELU decomposition, ``optimizer ops`` for the root of an ONNX graph."""
    if s.layer_type.get(name):
        return s.layer_type[name]
    kinds = s.layer_kind_e.get(name) or {}
    return f"{max(sorted(kinds), key=lambda k: kinds[k])} ops" if kinds else ""


def _layers(s: _Sums, gpus: int, gpu_j_one: float) -> tuple[LayerEstimate, ...]:
    """Innermost modules, summed over phases; share of the per-GPU step energy. Ties sort by name (deterministic)."""
    denom = gpu_j_one if gpu_j_one > 0 else 1.0
    layers = [LayerEstimate(name=name, type=_layer_type(s, name), flops=int(s.layer_f[name] * gpus),
                            time_s=s.layer_t[name], gpu_energy_j=s.layer_e[name] * gpus, share=s.layer_e[name] / denom)
              for name in s.layer_e]
    # ties (identical blocks) sort by name: energies compared at 12 significant digits, so float summation noise
    # cannot reorder equal layers between runs
    layers.sort(key=lambda le: (-float(f"{le.gpu_energy_j:.12g}"), le.name))
    return tuple(layers)


def _layers_once(s: _Sums, gpus: int, gpu_j_one: float) -> tuple[LayerEstimate, ...]:
    """:func:`_layers`, computed once per (sums, GPUs, step energy): re-estimates that reuse the sums reuse it."""
    key = ("layers", gpus, gpu_j_one)
    if key not in s.memo:
        s.memo[key] = _layers(s, gpus, gpu_j_one)
    return s.memo[key]


STAGE_HEAD_ROW = "(last stage: final norm, LM head and loss)"  # not traced when a middle stage is the costed one
COMPUTE_PHASES = ("forward", "backward", "optimizer")  # what the layer rows hold; the other phases are no layer's


def _stage_positions(sizes: list[int], vpp: int = 1) -> list[list[int]]:
    """The block positions (0 .. L-1, in model order) each pipeline stage holds: stage 1 the first n_1, stage 2 the
    next n_2, ...; under the interleaved schedule (``vpp`` = v model chunks per stage, Megatron-LM's virtual
    pipeline), the model cut into p x v chunks, chunk j x p + i on stage i (Megatron-LM's layer offset chunk x L / v
    + stage x L / (p v)): stage i's n_i blocks split into v chunks as evenly as possible (the earlier ones one
    larger when they do not divide), the chunk rounds in model order. 12 blocks, p 2, v 2: stage 1 holds 0-2 and
    6-8, stage 2 3-5 and 9-11."""
    v = vpp if vpp > 1 and sizes and min(sizes) >= vpp else 1
    out: list[list[int]] = [[] for _ in sizes]
    pos = 0
    for j in range(v):
        for i, n in enumerate(sizes):
            size = n // v + (1 if j < n % v else 0)
            out[i].extend(range(pos, pos + size))
            pos += size
    return out


def _stage_layers(graph: CostGraph, plan: Plan, s: _Sums, gpus: int, gpu_j_one: float
                  ) -> tuple[tuple[LayerEstimate, ...], str] | None:
    """Under pipeline parallelism, the layers of every stage, each at the GPUs of its stage (gpus / pp), as
    :func:`_pipeline_mean` prices the stages: the costed stage's traced modules' forward + backward; the other
    stages' blocks as the costed stage's mean block (``prefix.k.suffix``: per suffix, its sum over the costed blocks
    / their number), numbered as the schedule places them (:func:`_stage_positions`; under the interleaved schedule
    the costed stage's traced blocks, a contiguous run, are listed as the blocks its chunks hold); the modules
    outside the blocks on the last stage only when the costed stage is the last, else on every stage, with the last
    stage's final norm, LM head and loss as one row priced at the block rate (``head_blocks``); every stage's
    optimizer step over its own parameters (:func:`_stage_optimizer`) in ``(root)``: the optimizer records are the
    costed stage's parameters' share of the model's, no module's own step. A row's FLOPs and energy are of all the
    GPUs that run it, its time that of one GPU of each stage running it, summed over those stages; share of the
    step's GPU energy (``gpu_j_one`` x ``gpus``). The rows add up to the step's forward, backward and optimizer
    energy; returns (layers, the assumption line saying so), or None without pipeline stages. Review 2026-12: the
    costed stage's layers alone were listed, each x all GPUs, with shares of that stage's energy (the rows added to
    160.6 J of a 153.7 J step, shares 0.878 of a figure printed nowhere); then the interleaved schedule's blocks were
    listed as contiguous stages, and an ONNX graph's per-parameter optimizer records of the other stages' blocks
    (scaled to the costed stage's share) made rows of blocks that were not on the stage."""
    stages = _stage_sizes(graph, plan)
    if stages is None:
        return None
    info, sizes, costed = stages
    pp = plan.pipeline_parallel
    n_c = sizes[costed]
    blocks = _parallel.stage_blocks_of(graph)
    if n_c <= 0 or blocks is None:
        return None
    vpp = max(1, int(plan.virtual_pipeline_stages or 1))
    key = ("stage_layers", gpus, gpu_j_one, vpp, tuple(sorted(s.phase_e.items())))  # the note names the phases
    if key in s.memo:
        return s.memo[key]
    g = gpus / pp  # GPUs per stage
    last = costed == pp - 1
    rows: dict[str, list[float]] = {}  # name -> [time on one GPU, summed over stages; energy; FLOPs (all GPUs)]
    types: dict[str, str] = {}

    def add(name: str, typ: str, t: float, e: float, f: float, on: float, times: int = 1) -> None:
        r = rows.setdefault(name, [0.0, 0.0, 0.0])
        r[0] += t * times
        r[1] += e * on
        r[2] += f * on
        types.setdefault(name, typ)

    # forward + backward of the costed stage's modules (a module's optimizer records out); the blocks it ran
    fb: dict[str, tuple[float, float, float]] = {}
    opt = [0.0, 0.0, 0.0]  # the costed stage's optimizer step, one GPU
    for name in s.layer_e:
        t, e, f = s.layer_t[name], s.layer_e[name], s.layer_f[name]
        o = s.layer_opt.get(name)
        if o is not None:
            for j in range(3):
                opt[j] += o[j]
            if (t, e, f) == tuple(o):  # optimizer records only (summed alike: exactly equal)
                continue
            t, e, f = t - o[0], e - o[1], f - o[2]
        fb[name] = (t, e, f)
    traced = sorted({k for name in fb for k in (blocks.index(name),) if k is not None})
    layout = _stage_positions(sizes, vpp)
    if len(traced) == n_c and len(layout[costed]) == n_c:
        listed = dict(zip(traced, layout[costed]))  # the identity unless interleaved
    else:  # the trace's blocks do not match the stage: the other stages' numbered in order around them
        listed = {k: k for k in traced}
        free = (p for p in range(sum(sizes) + len(traced)) if p not in listed)
        layout = [[next(free) for _ in range(n)] if i != costed else traced for i, n in enumerate(sizes)]
    template: dict[str, list[float]] = {}  # block suffix -> the costed stage's mean block [t, e, f]
    suffix_type: dict[str, str] = {}
    for name, (t, e, f) in fb.items():
        typ = _layer_type(s, name)
        k = blocks.index(name)
        if k is not None:
            tail = name[len(blocks.prefix) + 1:].split(".", 1)
            suffix = "." + tail[1] if len(tail) > 1 else ""
            add(f"{blocks.prefix}.{listed[k]}{suffix}", typ, t, e, f, g)
            m = template.setdefault(suffix, [0.0, 0.0, 0.0])
            m[0] += t / n_c
            m[1] += e / n_c
            m[2] += f / n_c
            suffix_type.setdefault(suffix, typ)
            continue
        # the last stage's own modules; on a middle costed stage, work every stage does
        add(name, typ, t, e, f, g if last else gpus, 1 if last else pp)
    for i, own in enumerate(layout):
        if i != costed:
            for p in own:
                for suffix, (t, e, f) in template.items():
                    add(f"{blocks.prefix}.{p}{suffix}", suffix_type[suffix], t, e, f, g)
    head = float(info.get("head_blocks") or 0.0)
    if not last and head > 0:  # the last stage's final norm, LM head and loss: at the block rate (_pipeline_mean)
        add(STAGE_HEAD_ROW, "(not traced)", head * s.block_fb_t / n_c, head * s.block_fb_e / n_c,
            head * s.block_fb_f / n_c, g)
    stepped = _stage_optimizer(graph, plan, sizes, costed, s.memo)
    k_opt = stepped.ratio * pp  # the stages' optimizer steps, summed, / the costed stage's
    if any(opt):
        if ROOT_LAYER in types and "optimizer" not in types[ROOT_LAYER]:  # the root's own forward / backward too
            types[ROOT_LAYER] += " + optimizer ops"
        add(ROOT_LAYER, "optimizer ops", opt[0] * k_opt, opt[1] * k_opt, opt[2] * k_opt, g)
    step_j = gpu_j_one * gpus
    denom = step_j if step_j > 0 else 1.0
    layers = [LayerEstimate(name=name, type=types[name], flops=int(f), time_s=t, gpu_energy_j=e, share=e / denom)
              for name, (t, e, f) in rows.items()]
    layers.sort(key=lambda le: (-float(f"{le.gpu_energy_j:.12g}"), le.name))
    rows_j = sum(le.gpu_energy_j for le in layers)
    others = [(p, s.phase_e[p] * gpus) for p in PHASES if p not in COMPUTE_PHASES and s.phase_e.get(p, 0.0) > 0]
    def joules(j: float, digits: int = 4, unit=None) -> str:  # step_j's unit for the sums, each phase its own
        scale, label = unit or _u.pick([j], _u.ENERGY_J)
        return f"{_u.figure(j / scale, digits)} {label}"

    step_unit = _u.pick([step_j], _u.ENERGY_J)
    rest = ", ".join(f"{p} {joules(j, 3)}" for p, j in others)
    after = ("the modules after the blocks (final norm, LM head, loss) on the last stage only" if last else
             f"the modules outside the blocks traced on the costed stage on every stage, and the last stage's final "
             f"norm, LM head and loss, not traced, as the row '{STAGE_HEAD_ROW}' priced at the block rate from their "
             f"FLOPs ({head:.2f} blocks' worth)")
    moved = [p for k, p in listed.items() if k != p]
    where = (f"interleaved 1F1B: the model cut into {pp * vpp} chunks dealt to the stages in turn, {vpp} per "
             f"stage; " if vpp > 1 and layout == _stage_positions(sizes, vpp) else "")
    traced_as = (f", its trace's blocks {_span(traced)} (a contiguous run of its size) listed as its own "
                 f"{_span(layout[costed])}" if moved else "")
    note = (f"layers under pipeline parallel {pp}: every stage's modules, each at the {g:,.0f} "
            f"GPU{'' if g == 1 else 's'} of its stage ({gpus:,} GPUs / {pp} stages): {blocks.prefix} blocks "
            + ", ".join(f"{_span(own)} on stage {i + 1}" for i, own in enumerate(layout))
            + f" ({where}stage {costed + 1} traced{traced_as}; the other stages' blocks priced as its mean block), "
            f"{after}; the first stage's embedding lookup is not priced (as in the step); every stage's optimizer "
            f"step, priced as in the step ({stepped.ratio:.3f} x the costed stage's on average: the "
            f"'pipeline stages' energy' line), in {ROOT_LAYER}; a row's FLOPs and energy are those of all the GPUs "
            f"that run it, its time the per-step time on one GPU of each stage that runs it, summed over those "
            f"stages, its share of the step's GPU energy ({joules(step_j, unit=step_unit)}); the rows add up to "
            f"{joules(rows_j, unit=step_unit)} "
            f"(forward, backward and optimizer)"
            + (f", the other {joules(step_j - rows_j, 3, step_unit)} is no layer's ({rest}: the phases table)" if others else ""))
    s.memo[key] = (tuple(layers), note)
    return s.memo[key]


def _span(indices: list[int]) -> str:
    """'0-3' for consecutive block indices, '0-2 and 6-8' for runs (an interleaved stage), '0, 2 and 5'."""
    if not indices:
        return "none"
    runs: list[list[int]] = []
    for k in sorted(indices):
        if runs and k == runs[-1][-1] + 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    parts = [f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def covered(model: EnergyModelInfo, coverage: float) -> EnergyModelInfo:
    """``model`` for a step it prices ``coverage`` of (share of the step's op time, recompute and the step's
    multipliers included; the spec-sheet prior prices the rest): its 5-95 % bands mixed with the prior's in log
    space by that share (a model's band, measured on the ops it prices, says nothing about the ops it leaves to
    the prior)."""
    if coverage >= 1.0:
        return dataclasses.replace(model, coverage=1.0)
    from .energy.predictor import PRIOR_RANGES

    c = max(0.0, coverage)
    if c < 0.005:  # it prices none of this step's ops (a bf16 CNN under public-fit): the prior made every number
        return EnergyModelInfo(calibration="prior", source=f"spec-sheet prior (the {model.calibration} model, "
                               f"{model.source}, prices none of this step's ops)", energy_range=PRIOR_RANGES["energy"],
                               time_range=PRIOR_RANGES["time"], searched=model.searched, coverage=1.0)

    def mix(own: tuple[float, float], prior: tuple[float, float]) -> tuple[float, float]:
        return (math.exp(c * math.log(own[0]) + (1 - c) * math.log(prior[0])),
                math.exp(c * math.log(own[1]) + (1 - c) * math.log(prior[1])))

    return dataclasses.replace(model, coverage=c, energy_range=mix(model.energy_range, PRIOR_RANGES["energy"]),
                               time_range=mix(model.time_range, PRIOR_RANGES["time"]))


# The starts of two assumption lines the reports' Provenance sections restate (report.tables.report_assumptions).
ENERGY_MODEL_NOTE = "energy model: "
UNCONFIRMED_NOTE = ": unconfirmed spec values: "


def _notes(graph: CostGraph, gpu: GpuSpec, model: EnergyModelInfo) -> list[str]:
    lo, hi = model.energy_range
    tlo, thi = model.time_range
    notes = [f"{ENERGY_MODEL_NOTE}{model.calibration} ({model.source}); 5-95 % range energy x{lo:.2f}-x{hi:.2f}, "
             f"time x{tlo:.2f}-x{thi:.2f}"]
    if model.searched:
        notes.append(f"energy models searched in order: {model.searched}")
    if gpu.idle_estimated:
        notes.append(f"{gpu.key} idle power {gpu.idle_w:.0f} W is an estimate, not a measurement")
    if gpu.unconfirmed:
        notes.append(f"{gpu.key}{UNCONFIRMED_NOTE}{', '.join(gpu.unconfirmed)}")
    unsup = graph.unsupported()
    if unsup:
        notes.append("unsupported ops counted at zero cost: " + ", ".join(f"{k} x{v}" for k, v in sorted(unsup.items())))
    return notes


def aggregate(graph: CostGraph, priced: PricedOps, gpu: GpuSpec, plan: Plan, model: EnergyModelInfo) -> Estimate:
    """The estimate of ``plan`` on ``gpu`` from the priced ops of ``graph`` (module doc)."""
    notes: list[str] = list(graph.assumptions) + list(plan.assumptions) + list(priced.notes)
    inputs_note = multimodal_inputs_note(graph)
    if inputs_note:
        notes.insert(len(graph.assumptions), inputs_note)
    traced = max(1, int(graph.micro_batch or 1))
    if plan.micro_batch_size != traced:
        # the frontend's "micro-batch N from the inputs; pass --batch-size" line is what this plan just overrode
        notes = [n for n in notes if not n.endswith(BATCH_HINT)]
        notes.append(scaled_note(traced, plan.micro_batch_size))
    s = _sum_ops(graph, priced, plan)
    if s.core is not None:
        notes.append(_selective_note(s.core))
    model = covered(model, s.own_t / s.ops_t if s.ops_t > 0 and priced.own is not None else 1.0)
    notes += _system(graph, gpu, plan, s)
    n = max(1, plan.gpus)
    step_s = sum(s.phase_t.values())
    layer_j_one = sum(s.phase_e.values())  # one GPU's step before the pipeline stages' mean (the shares' base at PP 1)
    flops_one = s.flops
    stages = _pipeline_mean(graph, plan, gpu, s)
    if stages is not None:
        flops_one, stage_note = stages
        notes.append(stage_note)
    gpu_j_one = sum(s.phase_e.values())
    host_w, host_note = system.host_power_w(gpu, plan)
    notes.append(host_note)
    step = StepCost(flops=float(flops_one * n), time_s=step_s, gpu_energy_j=gpu_j_one * n,
                    host_energy_j=host_w * step_s, avg_gpu_power_w=gpu_j_one / step_s if step_s > 0 else 0.0)
    total, total_notes = _totals(step, gpu_j_one * n, plan, model, gpu, host_w)
    notes += total_notes
    mem = _memory.peak_memory(graph, gpu, plan)
    notes += mem.pop("notes", [])
    notes += _notes(graph, gpu, model)
    phases = {ph: PhaseCost(time_s=s.phase_t[ph], gpu_energy_j=s.phase_e[ph] * n) for ph in PHASES if ph in s.phase_t}
    util, util_note = utilization(graph, gpu, plan, step_s, flops_one)
    if util_note:
        notes.append(util_note)
    staged = _stage_layers(graph, plan, s, n, gpu_j_one) if stages is not None else None
    if staged is not None:
        layers, layer_note = staged
        notes.append(layer_note)
    else:
        layers = _layers_once(s, n, layer_j_one)
    return Estimate(
        model=(graph.extra or {}).get("parallel_full_model") or graph.model, gpu=gpu, plan=plan,
        calibration=model.calibration, calibration_source=model.source, calibration_coverage=model.coverage,
        per_step=step, total=total, memory=MemoryUse(**mem), layers=layers, phases=phases,
        assumptions=tuple(dict.fromkeys(notes)), graph=graph, op_times_s=priced.times_s,
        op_energy_j=priced.energies_j, utilization=util)


def scaled_note(traced: int, micro: int) -> str:
    """The assumption line of a plan whose micro-batch is not the traced one: kernel time and energy are the traced
    ones x micro / traced (launches are per op, not scaled). A kernel's efficiency grows with its size (tile and wave
    fill, weights read once per kernel), so scaling up from a smaller trace leans high and scaling down leans low."""
    lean = "high" if micro > traced else "low"
    return (f"graph traced at micro-batch {traced}, plan micro-batch {micro}: forward/backward kernel time and "
            f"energy scaled linearly (x{micro / traced:.4g}; launches per op, not scaled); kernels run more "
            f"efficiently the larger they are, so this leans {lean}: trace at the plan's batch "
            f"(wattlint.analyze(source, batch_size=...)) to price the kernels at their own shapes")


def _selective_note(core: tuple[int, float, float]) -> str:
    n, f, t = core
    if not n:
        return ("recompute selective: no attention core found in the traced step (no fused attention kernel, no "
                "QK^T -> softmax -> attention-over-V batched matmuls): nothing re-run in backward")
    return (f"recompute selective: {n} attention-core forward ops per micro-batch re-run in backward: "
            f"{f / 1e9:,.2f} GFLOP and "
            f"{t * 1e3:,.3f} ms per GPU and step (in backward time and in HFU, not in MFU)")


def utilization(graph: CostGraph, gpu: GpuSpec, plan: Plan, step_s: float, flops_per_gpu: float
                ) -> tuple[Utilization | None, str | None]:
    """MFU, HFU and tokens/s/GPU of a language-model step (None for other models); step time excludes goodput."""
    from . import parallel as _parallel

    seq = int(plan.seq_len or graph.seq_len or 0)
    if seq <= 0 or step_s <= 0:
        return None, None
    extra = graph.extra or {}
    counts = param_counts(graph)
    n_params, inactive = counts["params"], counts["inactive_experts"]
    convention = MFU_CONVENTION
    if inactive:  # mixture of experts: active parameters per token
        convention = MFU_CONVENTION_MOE
        convention += (f"; here N_active = {n_params - inactive:,.0f} of {n_params:,.0f} parameters "
                       f"({_parallel.routed_expert_params(graph):,} routed-expert)")
        n_params -= inactive
        cf = float(((graph.extra or {}).get("moe") or {}).get("capacity_factor") or 1.0)
        if cf < 1.0:
            # balanced routing at a capacity factor below 1 drops 1 - cf of the routed rows (the trace runs only
            # the kept ones); the convention's 6 N_active still counts every token's experts (review 2026-12-07)
            convention += (f"; capacity factor {cf:g} < 1: up to {1 - cf:.0%} of the routed tokens are dropped, "
                           f"whose expert FLOPs 6 N_active still counts (MFU an upper bound; HFU counts what ran)")
    idle = counts["idle"]
    if idle:  # trainable parameters no gradient reached: a tower the step's inputs do not run
        n_params -= idle
        convention += (f"; here {idle:,.0f} trainable parameters receive no gradient in the traced step (a tower "
                       f"its inputs do not run): N leaves them out (were they run under no_grad, their forward "
                       f"FLOPs are not counted)")
    lookup = float(extra.get("lookup_only_params") or 0)
    if lookup:  # a base model (no head): its embedding tables are only looked up
        n_params = max(0.0, n_params - lookup)
        convention += (f"; here a base model without a head: N leaves out its {lookup:,.0f} embedding-table "
                       f"parameters (looked up, no FLOPs; with no head they feed no matmul)")
    attn = extra.get("attention_flops_per_token")
    if attn is None:
        attn = _parallel.attention_forward_flops_per_token(graph)
    per_token = 6.0 * n_params + 3.0 * float(attn)
    keys = _parallel.local_window_keys(graph)
    if keys:  # Longformer / LED: the attention the model defines is its window, not the s x s square
        convention += (f"; here the sliding-window attention of Longformer / LED's encoder counts the keys its window "
                       f"defines, {keys:,} per query (attention_window + 1, and a column per global token), over the "
                       f"sequence's queries (not the rows padded to a multiple of the window), not the s x s square")
    frozen = _frozen_active_params(graph)
    if frozen > 0:  # frozen weights (LoRA, a frozen backbone) get no weight gradient: 2 FLOPs per token less
        # and those backward never runs through (no backward record: nothing trainable below them, a linear probe's
        # backbone, a LoRA model's embeddings and first projections ahead of its first adapter) no input gradient
        # either: 2 FLOPs per token less again (review s54: a BERT linear probe read MFU 58 % beside HFU 23 %)
        below = min(frozen, float(extra.get("frozen_forward_only_params") or 0))
        per_token -= 2.0 * frozen + 2.0 * below
        if below:
            convention += (f"; {frozen:,.0f} frozen parameters get no weight gradient: 6 N - 2 N_frozen - 2 "
                           f"N_forward_only, where the {below:,.0f} of them whose modules backward never runs "
                           f"(no backward op traced: nothing trainable below them) count 2 FLOPs per token "
                           f"(forward only) and the other {frozen - below:,.0f} count 4 (forward + input gradient)")
        else:
            convention += (f"; {frozen:,.0f} frozen parameters get no weight gradient: 6 N - 2 N_frozen (4 FLOPs "
                           f"per token each: forward + the input gradient backward runs through them)")
    basis = extra.get("model_flops_basis") or _parallel.model_flops_basis(graph)
    if float(basis["reuse"]) > _parallel.WEIGHT_REUSE_LIMIT:
        # 6N + attention undercounts a model whose weights run on more rows than the counted tokens: the traced
        # forward + backward FLOPs (no recompute) are its model FLOPs (PaLM's definition, without the 6N shortcut)
        convention = MFU_CONVENTION_TRACED + "; here " + _reuse_why(basis, per_token, graph)
        per_token = float(basis["flops_per_token"])
    elif 6.0 * float(basis.get("fewer_missed", 0.0)) * _parallel.WEIGHT_REUSE_LIMIT \
            > (_parallel.WEIGHT_REUSE_LIMIT - 1.0) * per_token and float(basis["flops_per_token"]) < per_token:
        # the other side: 6N + attention overcounts a model whose weights run on fewer rows than the counted tokens
        # (a vision tower over its image patches beside a text model over the counted text tokens: 6N charged the
        # tower's weights 6 FLOPs per text token; florence2 / grounding-dino printed MFU 1.5-1.7 x HFU, review s52).
        # Switched to the traced basis only when both hold: (1) cause: the 6 FLOPs per weight and counted-token row
        # that the traced Linear weights outside the routed experts (N_active already counts those) did not
        # multiply are more than 1 - 1 / 1.05 of 6N + attention, i.e. 6N + attention exceeds the same without them
        # by more than the 1.05 the other side tolerates (a classification / LM head over a few tokens is a few %
        # of it: 6N kept); (2) effect: the traced forward + backward FLOPs per token (no recompute) are below
        # 6N + attention, so the switch only lowers MFU towards what ran: without recompute MFU above HFU is
        # impossible (HFU counts every FLOP the step ran, optimizer included). Frozen or idle weights and lookup-
        # only tables (an LSTM classifier's embedding table) move only (2), never (1), so alone they never switch.
        convention = MFU_CONVENTION_TRACED + "; here " + _fewer_rows_why(basis, per_token)
        per_token = float(basis["flops_per_token"])
    dtype, peak, why = _model_peak(graph, gpu, plan)
    tokens_s_gpu = plan.batch_size * seq / step_s / max(1, plan.gpus)
    mfu = per_token * tokens_s_gpu / peak
    hfu = flops_per_gpu / step_s / peak
    util = Utilization(tokens_per_s_per_gpu=tokens_s_gpu, mfu=mfu, hfu=hfu, model_flops_per_token=per_token,
                       peak_tflops=peak / 1e12, convention=convention)
    from .report.units import pct  # the reports' rule: a non-zero share below 0.1 % reads '<0.1 %', never '0.0%'

    note = (f"MFU {pct(mfu)}, HFU {pct(hfu)}, {tokens_s_gpu:,.0f} tokens/s/GPU against the {peak / 1e12:g} TFLOP/s "
            f"dense {dtype} peak of {gpu.key}{why}; {convention}; step time without goodput losses")
    return util, note


def matmul_flops_by_dtype(graph: CostGraph, key=None) -> dict[str, float]:
    """The traced forward + backward matmul / convolution / attention / recurrent FLOPs (no recompute) by the dtype
    they run in: the record's dtype name, or ``key(record)``."""
    out: dict[str, float] = defaultdict(float)
    for r in graph.records:
        if r.phase in (Phase.FORWARD, Phase.BACKWARD) and not r.recompute and r.flops > 0 \
                and r.kind in (OpKind.MATMUL, OpKind.CONV, OpKind.ATTENTION, OpKind.RNN):
            out[key(r) if key else r.dtype] += r.flops
    return dict(out)


def _model_peak(graph: CostGraph, gpu: GpuSpec, plan: Plan) -> tuple[str, float, str]:
    """(dtype label, dense peak FLOP/s, what the note adds) MFU and HFU divide by: the peak of the dtype the
    model's traced matmul FLOPs run in (:func:`wattlint.energy.prior.compute_dtype`, as the step was priced), not
    the plan's precision name: a bf16-held base under fp32 LoRA adapters run without --precision runs its matmuls in
    bf16 and read MFU 488 % against the fp32 peak (review s54). FLOPs in several dtypes: the FLOP-weighted peak
    F / sum(F_dtype / peak_dtype), the rate at which the mix would run at each dtype's peak, so neither MFU (without
    recompute) nor HFU can pass 100 %. An fp8 plan keeps the FP8 peak (its FP8 GEMMs are chosen at estimate time)."""
    planned = {"default": "fp32"}.get(plan.precision, plan.precision)
    if plan.precision == "fp8":
        return planned, gpu.peak(planned), ""
    from .energy.prior import compute_dtype

    mix = matmul_flops_by_dtype(graph, lambda r: compute_dtype(r, gpu, plan.precision))
    total = sum(mix.values())
    if total <= 0 or set(mix) == {planned}:
        return planned, gpu.peak(planned), ""
    said = f"precision {plan.precision}" + (f" ({planned})" if planned != plan.precision else "")
    if len(mix) == 1:
        (key,) = mix
        return key, gpu.peak(key), f" (the dtype its traced matmul FLOPs run in; the plan's {said})"
    peak = total / sum(f / gpu.peak(k) for k, f in mix.items())
    parts = ", ".join(f"{100.0 * f / total:.1f} % {k} at {gpu.peak(k) / 1e12:g}"
                      for k, f in sorted(mix.items(), key=lambda kv: -kv[1]))
    return ("FLOP-weighted", peak, f" (its traced matmul FLOPs: {parts} TFLOP/s, weighted as F / sum(F_dtype / "
            f"peak_dtype); the plan's {said})")


def param_counts(graph: CostGraph) -> dict[str, float]:
    """The whole model's parameter counts the reports state and MFU's N starts from: ``params`` (all of them),
    ``inactive_experts`` (routed-expert parameters a token does not use: per MoE layer its expert parameters x
    (1 - top-k / experts)), ``idle`` (trainable parameters no gradient reached in the traced step: a tower its
    inputs do not run) and ``active`` = params - inactive_experts - idle: the parameters one token runs in the
    traced step, every embedding table included (an untied input embedding too, which model cards such as
    gpt-oss's leave out of their active count)."""
    extra = graph.extra or {}
    full = float(extra.get("parallel_full_params") or graph.params or 0)
    inactive = float(_parallel.inactive_expert_params(graph))
    idle = float(extra.get("idle_params") or 0)
    return {"params": full, "inactive_experts": inactive, "idle": idle,
            "active": max(0.0, full - inactive - idle)}


_TOKEN_DTYPES = ("int64", "int32", "int16", "int8", "uint8")


# integer inputs beside the token ids that are not tokens: masks, positions, segment ids, image grids and sizes
# (Qwen2-VL's image_grid_thw [images, 3], attention_mask [B, S], Mllama's aspect_ratio_ids)
_SIDE_INPUT = re.compile(r"mask|position|token_type|segment|grid|sizes?$|aspect_ratio|spatial_shapes|num_|labels")


def _is_image_input(t) -> bool:
    """An image / video input of a vision-language model: a float tensor named pixel_values* or of 4 dims or more."""
    return not t.dtype.startswith(("int", "uint", "bool")) and (t.name.startswith("pixel_values") or len(t.shape) >= 4)


def _vision_tower(graph: CostGraph) -> tuple[str, str] | None:
    """The outermost module whose class names a vision tower (``Vision`` / ``Visual`` in its type: Llama4VisionModel,
    SiglipVisionModel, CLIPVisionModel, Qwen2VisionTransformerPretrainedModel), as (path, type); None without one."""
    found = [(p, t) for p, t in graph.modules if p and ("Vision" in t or "Visual" in t)]
    outer = [(p, t) for p, t in found if not any(p.startswith(q + ".") for q, _ in found)]
    return outer[0] if outer else None


def _runs(graph: CostGraph, path: str) -> bool:
    return any(r.phase is Phase.FORWARD and (r.module == path or r.module.startswith(path + "."))
               for r in graph.records)


def _shape(t) -> str:
    return f"{t.name} {t.dtype}[{', '.join(str(d) for d in t.shape)}]"


def multimodal_inputs_note(graph: CostGraph) -> str | None:
    """The assumption line saying which inputs a vision-language model was traced with (review s54: a Llama 4 Scout
    report did not say that its default inputs held an image, and was read as text-only): with images, how many per
    sample, whether the vision tower ran, and how many sequence positions its features fill (the forward
    masked_scatter that merges them into the text embeddings, as transformers' LLaVA, Gemma 3 and Llama 4 do); with
    token ids alone, that the model was costed text-only and its vision tower did not run. None for other models,
    and where the frontend's notes already describe the images ('images: ...', Mllama's tiles)."""
    if any(a.startswith("images:") for a in graph.assumptions):
        return None
    tokens = [t for t in graph.inputs if t.dtype in _TOKEN_DTYPES and len(t.shape) >= 2
              and not _SIDE_INPUT.search(t.name)]
    images = [t for t in graph.inputs if _is_image_input(t)]
    tower = _vision_tower(graph)
    if not tokens or (not images and tower is None):
        return None
    mb = max(1, int(graph.micro_batch or 1))
    seq = int(tokens[0].shape[-1])
    if not images:
        if _runs(graph, tower[0]):
            return None
        idle = param_counts(graph)["idle"]
        where = (f": its parameters are among the {idle:,.0f} trainable parameters that get no gradient, left out "
                 f"of the gradients, the optimizer step and MFU's N") if idle else ""
        hint = ("; wattlint traces a Hugging Face vision-language config given no --input with one image per "
                "sample") if graph.model.format == "hf" else ""
        return (f"costed text-only: inputs traced {', '.join(_shape(t) for t in graph.inputs)}, no image, so the "
                f"vision tower ({tower[0]}, {tower[1]}) does not run{where}{hint}")
    what = []
    for t in images:
        if len(t.shape) == 4 and t.shape[0] % mb == 0:
            n = t.shape[0] // mb
            what.append(f"{_shape(t)}: {n} image{'' if n == 1 else 's'} of {t.shape[2]} x {t.shape[3]} per sample")
        elif len(t.shape) == 5 and t.shape[0] % mb == 0:
            n = t.shape[0] // mb
            what.append(f"{_shape(t)}: {n} video{'' if n == 1 else 's'} of {t.shape[1]} frames of {t.shape[3]} x "
                        f"{t.shape[4]} per sample")
        else:
            what.append(_shape(t))
    note = (f"multimodal inputs traced: {', '.join(_shape(t) for t in tokens)} and {'; '.join(what)}")
    if tower is not None and _runs(graph, tower[0]):
        note += (f"; the vision tower ({tower[0]}, {tower[1]}) runs: its parameters are active ones (a gradient, an "
                 f"optimizer update, and its FLOPs in MFU's model FLOPs)")
    merged = 0
    for r in graph.records:  # inputs_embeds.masked_scatter(mask, features): [B, S, H], [B, S, 1], [..., H]
        if r.phase is Phase.FORWARD and r.op.startswith("aten.masked_scatter.") and len(r.shapes) == 3 \
                and len(r.shapes[0]) == 3 and r.shapes[2] and r.shapes[2][-1] == r.shapes[0][-1] \
                and r.shapes[0][-1] > 0:
            merged += math.prod(r.shapes[2]) // r.shapes[0][-1]
    if merged:
        per = merged / mb
        note += (f"; their features fill {per:,.0f} of each sample's {seq:,} sequence positions (image tokens, "
                 f"counted as tokens in tokens/s and MFU)")
        if per > seq:
            note += (f": more than the sequence holds (on real data transformers refuses features that do not match "
                     f"the image tokens of input_ids): pass a --seq-len above {per:,.0f}")
    if graph.model.format == "hf" and merged:
        # a text-only step exists only where the image features are merged into the text embeddings, a path the
        # model skips given no image (LLaVA, Gemma 3, Llama 4, Qwen2-VL); a dual encoder (CLIP, SigLIP) or an
        # image-to-text encoder-decoder needs its pixel_values (review s54: the hint failed for CLIP)
        note += (f"; pass --input {tokens[0].name}={tokens[0].dtype}[{','.join(str(d) for d in tokens[0].shape)}] "
                 f"alone to cost the text-only step")
    return note


def _reuse_why(basis: Mapping[str, Any], six_n: float, graph: CostGraph | None = None) -> str:
    """Why the 6N convention does not count this model (:func:`wattlint.parallel.model_flops_basis`): what was
    measured on the Linear with the most rows, and a cause only where the trace shows it. Layers shared across
    depth (ALBERT) only where :func:`_runs_across_depth` sees its whole block run again between the module's runs
    (review: DeBERTa's query_proj, run a second time over the relative-position embeddings inside the same
    attention, was said to be "one layer's weights shared across depth")."""
    module, rows, calls, tokens = basis["module"], float(basis["rows"]), int(basis["calls"]), int(basis["tokens"])
    per_call, depth = _runs_across_depth(graph, module) if graph is not None and calls > 1 else ([], None)
    if calls > 1 and depth:
        how = (f"{module} runs {calls} times per forward, {rows:,.0f} rows for the {tokens:,} counted tokens of a "
               f"micro-batch: one layer's weights shared across depth, counted once in N")
    elif calls > 1 and depth is False:
        shown = " + ".join(f"{r:,.0f}" for r in per_call[:6]) + (" + ..." if len(per_call) > 6 else "")
        how = (f"{module}'s weights run {calls} times per forward within one pass of its block, on {rows:,.0f} rows "
               f"({shown}) per {tokens:,} counted tokens of a micro-batch: the same weights also multiply rows "
               f"other than the counted tokens (e.g. relative-position embeddings projected by the attention's own "
               f"query / key weights, as DeBERTa's disentangled attention does), counted once in N")
    elif calls > 1:  # no records to tell why
        how = f"{module} runs {calls} times per forward, {rows:,.0f} rows for the {tokens:,} counted tokens"
    else:
        # the trace shows more rows, not why: an encoder's longer input (Whisper's frames) or several rows per
        # counted position (Decision Transformer's return, state and action per timestep)
        how = (f"{module} runs over {rows:,.0f} rows per micro-batch against the {tokens:,} counted tokens: an "
               f"encoder over a longer input than the counted sequence, or several rows per counted position")
    return (f"the traced Linear weights run on {float(basis['reuse']):.2f}x the counted tokens ({how}): 6N + "
            f"attention would count {six_n:,.0f} FLOPs per token, {float(basis['flops_per_token']):,.0f} traced")


def _fewer_rows_why(basis: Mapping[str, Any], six_n: float) -> str:
    """Why the 6N convention overcounts this model (:func:`wattlint.parallel.model_flops_basis`: the 6 FLOPs per
    weight and counted-token row its Linear weights did not multiply are more than 1 - 1 / WEIGHT_REUSE_LIMIT of
    6N + attention): the share of the traced Linear weights that run on fewer rows than the counted
    tokens, their mean rows, and the Linear that misses the most rows (size x (tokens - rows))."""
    tokens, module = int(basis["tokens"]), basis["fewer_module"]
    rows, calls = float(basis["fewer_module_rows"]), int(basis["fewer_module_calls"])
    runs = f" over {calls} runs" if calls > 1 else ""

    def n_rows(n: float) -> str:  # '1 row' (CLIP's visual projection over its pooled row), '49 rows'
        return f"{n:,.0f} row" + ("" if f"{n:,.0f}" == "1" else "s")

    how = (f"{float(basis['fewer_share']):.0%} of the weights run on {n_rows(float(basis['fewer_rows']))} per "
           f"micro-batch on average against the {tokens:,} counted tokens, most missed by {module} ({n_rows(rows)}"
           f"{runs}): weights over fewer rows than the counted tokens, as a vision tower over its image patches "
           f"beside a text model over the counted tokens, which 6N charges once per counted token")
    return (f"the traced Linear weights run on {float(basis['reuse_dense']):.2f}x the counted tokens ({how}; 6N "
            f"charges {6.0 * float(basis['fewer_missed']):,.0f} FLOPs per token for rows they did not multiply): 6N + "
            f"attention would count {six_n:,.0f} FLOPs per token, {float(basis['flops_per_token']):,.0f} traced")


def _runs_across_depth(graph: CostGraph, module: str) -> tuple[list[float], bool | None]:
    """The rows of each forward run of Linear ``module`` (trace order) and whether its weights are shared across
    depth: between each two of its runs, every other Linear of its block (its path up to the numbered layer:
    'albert.encoder.albert_layer_groups.0') runs, i.e. the whole block runs again at the next depth position; a
    block holding no other Linear: every run on the same rows. None when the trace does not have its runs. Linear:
    the types of ``parallel.LINEAR_TYPES`` (GPT-2's Conv1D too), as model_flops_basis measures."""
    from .parallel import block_prefix, is_linear_type

    types = dict(graph.modules)
    scale = float((graph.extra or {}).get("dims_batch_scale", 1.0))
    prefix = block_prefix(module)
    if prefix is not None:
        rest = module[len(prefix) + 1:]
        block = f"{prefix}.{rest.split('.', 1)[0]}."
    else:
        block = module.rsplit(".", 1)[0] + "." if "." in module else ""
    runs: list[float] = []
    between: list[set[str]] = []
    others: set[str] = set()
    for r in graph.records:
        if r.recompute or r.phase is not Phase.FORWARD or r.kind is not OpKind.MATMUL \
                or not is_linear_type(types.get(r.module)) or not r.module.startswith(block):
            continue
        if r.module == module:
            runs.append((r.dim("b", 1) or 1) * r.dim("m", 0) * scale)
            between.append(set())
        else:
            others.add(r.module)
            if between:
                between[-1].add(r.module)
    if len(runs) < 2:
        return runs, None
    if others:
        return runs, all(between[i] >= others for i in range(len(runs) - 1))
    return runs, len(set(runs)) == 1


def _frozen_active_params(graph: CostGraph) -> float:
    """Frozen parameters a token uses (the whole model's): all frozen ones, less the frozen routed experts a token
    does not run (per MoE layer, its frozen expert parameters x (1 - top-k / experts); a layer that did not say how
    many of its experts are frozen is taken as frozen as the model)."""
    from . import parallel as _parallel

    extra = graph.extra or {}
    full = extra.get("parallel_full_model") or graph.model
    total = float(getattr(full, "params", 0) or graph.params or 0)
    train = float(getattr(full, "trainable_params", graph.trainable_params) or 0)
    # trainable parameters no gradient reached are not frozen ones: the step does not run them (utilization)
    frozen = max(0.0, total - train - float(extra.get("idle_params") or 0))
    if frozen <= 0 or total <= 0:
        return 0.0
    for ly in _parallel.moe_layers(graph):
        e, k, n = int(ly.get("experts") or 0), int(ly.get("top_k") or 0), int(ly.get("params") or 0)
        if e > 0 and 0 < k <= e and n:
            t = ly.get("trainable_params")
            frozen_experts = n - int(t) if t is not None else n * frozen / total
            frozen -= frozen_experts * (1.0 - k / e)
    return max(0.0, frozen)


def op_multiplier(graph: CostGraph, plan: Plan, record: OpRecord) -> float:
    """How many times ``record`` runs per GPU and optimizer step under ``plan`` (0 for communication records)."""
    if record.phase is Phase.COMMUNICATION:
        return 0.0
    fb, opt = multipliers(graph, plan)
    return opt if record.phase is Phase.OPTIMIZER else fb
