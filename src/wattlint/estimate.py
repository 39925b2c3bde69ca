"""CostGraph + GpuSpec + Plan + energy model -> Estimate (contract ``wattlint.estimate/1``, DESIGN §7).

One optimizer step of the job:

* every GPU runs ``grad_accum`` micro-batches of forward + backward (per-op time and power from the predictor),
  then one optimizer step (over 1/n of the parameters under ZeRO / FSDP sharding);
* data-parallel communication (``gpus > 1``), bandwidth-only ring model with NCCL bus efficiency:
  - none / zero1: gradient all-reduce, each GPU moves 2(n-1)/n x gradient bytes;
  - zero2: reduce-scatter of gradients + all-gather of updated weights: the same 2(n-1)/n volume;
  - zero3 / fsdp: weight all-gather in forward and again in backward (per micro-batch) + gradient
    reduce-scatter: 3(n-1)/n x the bytes;
  inside one node over NVLink (or PCIe without it); across nodes a hierarchical ring whose bottleneck is the
  node's network link (``internode_gbps``), where each node moves 2(N-1)/N x the bytes for N nodes;
  collectives overlap the backward pass (DDP buckets / FSDP prefetch); only the part longer than the overlapped
  compute is exposed, at idle power;
* host CPU + DRAM share: ``HOST_W_PER_GPU`` for every GPU over the wall time;
* facility energy = (GPU + host) x PUE; CO2 = facility kWh x grid intensity; cost = kWh x price + GPU-hours x
  GPU-hour price.
"""

from __future__ import annotations

import dataclasses
import math
import sys as _sys
import types as _types
from collections import defaultdict
from typing import Any, Sequence

from .types import CostGraph, Estimate, Finding, GpuSpec, LayerEstimate, OpKind, OpRecord, Phase, Plan, WattlintError

SCHEMA = "wattlint.estimate/1"
HOST_W_PER_GPU = 80.0  # CPU + DRAM share per GPU of a training server (e.g. DGX A100: 2x 225 W CPUs + ~1 TB DRAM / 8)
NCCL_BUS_EFFICIENCY = 0.80  # achieved / link bandwidth of large NCCL collectives (nccl-tests busbw)
COLLECTIVE_LATENCY_S = 30e-6  # per collective call (ring setup, small-message latency)
BUCKET_BYTES = 25 * 2**20  # DDP default bucket: 25 MiB -> one collective call per bucket
MAX_CALLS = 200  # large models: FSDP units / ZeRO buckets grow with the model (~one per layer), not 25 MiB each
PCIE_GBS = {3: 12.0, 4: 24.0, 5: 48.0, 6: 96.0}  # achievable GB/s per direction, x16 link
MIN_EXPOSED = 0.10  # at least this fraction of communication is never hidden (first/last buckets)
OPT_MAX_LAUNCHES = 16  # launches of a fused/foreach optimizer step (multi-tensor apply over chunks of tensors)
HOST_OP_S = 8e-6  # eager PyTorch CPU cost per launched op (Python + dispatcher + cudaLaunchKernel: ~5-20 us)
COMM_POWER_ACTIVITY = 0.10  # GPU activity while waiting on exposed communication (NCCL kernels spin a few SMs)


# ---- helpers --------------------------------------------------------------------------------------------------

def _half_dtype(precision: str) -> str:
    return "bfloat16" if precision in ("bf16", "fp8") else "float16"


def autocast_records(graph: CostGraph, precision: str) -> tuple[tuple[OpRecord, ...], bool]:
    """Records as they run under ``precision``. A graph traced in fp32 (e.g. an ONNX export) with a half-precision
    plan gets autocast applied here: GEMM-family ops (matmul, conv, attention, rnn) in half precision with half the
    bytes; everything else stays fp32 (PyTorch autocast's fp32 lists keep norms, softmax and losses in fp32)."""
    if precision not in ("fp16", "bf16", "fp8"):
        return graph.records, False
    if graph.precision in ("fp16", "bf16", "fp8"):
        return graph.records, False
    if any(r.dtype in ("float16", "bfloat16") for r in graph.records):
        return graph.records, False
    half = _half_dtype(precision)
    out = []
    for r in graph.records:
        if r.kind in (OpKind.MATMUL, OpKind.CONV, OpKind.ATTENTION, OpKind.RNN) and r.dtype == "float32":
            out.append(dataclasses.replace(r, dtype=half, bytes_read=r.bytes_read // 2,
                                           bytes_written=r.bytes_written // 2))
        else:
            out.append(r)
    return tuple(out), True


def intra_node_gbs(gpu: GpuSpec) -> tuple[float, str]:
    """Per-direction link bandwidth (GB/s) between GPUs of one node, and its name."""
    if gpu.nvlink_gbs:
        return gpu.nvlink_gbs / 2.0, f"NVLink {gpu.nvlink_gbs:g} GB/s bidirectional"
    gen = gpu.pcie_gen or 4
    return PCIE_GBS.get(gen, 24.0), f"PCIe gen{gen} x16"


def _calls(nbytes: float) -> int:
    return max(1, min(MAX_CALLS, math.ceil(nbytes / BUCKET_BYTES)))


def communication(graph: CostGraph, gpu: GpuSpec, plan: Plan, grad_bytes: float, param_bytes: float
                  ) -> dict[str, Any]:
    """Communication volume and time per optimizer step (per GPU), and the model used."""
    n = max(1, plan.gpus)
    if n == 1:
        return {"bytes": 0.0, "time_s": 0.0, "collective": "none (1 GPU)", "calls": 0}
    sharding = (plan.sharding or "none").lower()
    frac = (n - 1) / n
    ga = max(1, plan.grad_accum)
    if sharding in ("zero3", "fsdp"):
        # all-gather weights in forward and backward of every micro-batch + reduce-scatter of the gradients
        volume = 2 * ga * frac * param_bytes + frac * grad_bytes
        collective = "ring all-gather of weights (forward + backward, per micro-batch) + reduce-scatter of gradients"
        calls = 3 * _calls(param_bytes)
    elif sharding == "zero2":
        volume = frac * grad_bytes + frac * param_bytes
        collective = "ring reduce-scatter of gradients + all-gather of updated weights"
        calls = 2 * _calls(grad_bytes)
    else:
        volume = 2 * frac * grad_bytes
        collective = "ring all-reduce of gradients (2(n-1)/n x bytes per GPU)"
        calls = _calls(grad_bytes)
    per_node = max(1, min(plan.gpus_per_node, n))
    nodes = math.ceil(n / per_node)
    intra_bw, intra_name = intra_node_gbs(gpu)
    if nodes <= 1:
        t = volume / (intra_bw * 1e9 * NCCL_BUS_EFFICIENCY)
        link = intra_name
    else:
        # hierarchical: the inter-node stage moves 2(N-1)/N of the bytes per node over the node's network link
        node_frac = (nodes - 1) / nodes
        inter_volume = volume / frac * node_frac  # same algorithm factor with N nodes instead of n GPUs
        inter_bw = plan.internode_gbps / 8.0 * 1e9 * NCCL_BUS_EFFICIENCY
        t_inter = inter_volume / inter_bw
        t_intra = volume / (intra_bw * 1e9 * NCCL_BUS_EFFICIENCY) if per_node > 1 else 0.0
        t = max(t_inter, t_intra)
        link = f"{intra_name} inside a node, {plan.internode_gbps:g} Gbit/s network per node between {nodes} nodes"
    t += calls * COLLECTIVE_LATENCY_S * (math.log2(n) if n > 1 else 0)
    return {"bytes": volume, "time_s": t, "collective": collective, "link": link, "calls": calls}


def predict_records(predictor, records: Sequence[OpRecord], gpu: GpuSpec, precision: str,
                    utilization: float | None) -> tuple[list[float], list[float]]:
    """Per-record (time, power). Optimizer records that a frontend split per parameter (for per-layer attribution)
    but that run as ONE multi-tensor (foreach / fused) kernel per op on the GPU are priced together — one launch,
    one bandwidth ramp — and the group's time is shared back by bytes."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.phase is Phase.OPTIMIZER and r.kind is OpKind.OPTIMIZER:
            groups[r.op].append(i)
    split = {op: idx for op, idx in groups.items() if len(idx) > 1}
    if not split:
        return predictor.predict(records, gpu, precision, utilization)
    grouped = {i for idx in split.values() for i in idx}
    keep = [i for i in range(len(records)) if i not in grouped]
    synth = []
    for op, idx in split.items():
        rs = [records[i] for i in idx]
        numel = sum(r.dim("numel", 0) for r in rs)
        synth.append(dataclasses.replace(rs[0], module="", flops=sum(r.flops for r in rs),
                                         bytes_read=sum(r.bytes_read for r in rs),
                                         bytes_written=sum(r.bytes_written for r in rs),
                                         dims=(("numel", numel),) if numel else rs[0].dims, shapes=()))
    t_all, p_all = predictor.predict([records[i] for i in keep] + synth, gpu, precision, utilization)
    times = [0.0] * len(records)
    powers = [0.0] * len(records)
    for j, i in enumerate(keep):
        times[i], powers[i] = t_all[j], p_all[j]
    for k, (op, idx) in enumerate(split.items()):
        t_g, p_g = t_all[len(keep) + k], p_all[len(keep) + k]
        tot = sum(records[i].bytes for i in idx) or len(idx)
        for i in idx:
            share = (records[i].bytes or 1) / tot if sum(records[i].bytes for i in idx) else 1 / len(idx)
            times[i] = t_g * share
            powers[i] = p_g
    return times, powers


# ---- the estimate ---------------------------------------------------------------------------------------------

def estimate_graph(graph: CostGraph, gpu_spec: GpuSpec, plan: Plan, predictor=None, *, config=None,
                   run_lint: bool = True) -> Estimate:
    """Estimate a plan for a traced graph on one GPU type."""
    from . import memory as _memory
    from .energy.predictor import get_predictor

    if predictor is None:
        predictor = get_predictor(gpu_spec)
    assumptions: list[str] = list(graph.assumptions) + list(plan.assumptions)
    records, autocasted = autocast_records(graph, plan.precision)
    if autocasted:
        assumptions.append(f"{plan.precision} autocast applied to the fp32 graph: matmul/conv/attention in "
                           f"{_half_dtype(plan.precision)}, other ops fp32")
    times, powers = predict_records(predictor, records, gpu_spec, plan.precision, plan.utilization)
    energies = [t * p for t, p in zip(times, powers)]

    n = max(1, plan.gpus)
    ga = max(1, plan.grad_accum)
    sharding = (plan.sharding or "none").lower()
    traced_mb = max(1, int(graph.micro_batch or 1))
    mb_scale = plan.micro_batch_size / traced_mb if plan.micro_batch_size != traced_mb else 1.0
    if mb_scale != 1.0:
        assumptions.append(f"graph traced at micro-batch {traced_mb}; forward/backward time and energy scaled "
                           f"linearly to micro-batch {plan.micro_batch_size}")
    # activation checkpointing the frontend did not trace (e.g. ONNX): the forward runs again in backward
    recompute = bool(plan.activation_checkpointing) and not _memory.checkpointing_traced(graph)
    opt_scale = 1.0 / n if (sharding in ("zero1", "zero2", "zero3", "fsdp") and n > 1) else 1.0

    # per-GPU, per-step multiplier of each record
    def mult(r: OpRecord) -> float:
        if r.phase is Phase.OPTIMIZER:
            return opt_scale
        if r.phase is Phase.COMMUNICATION:
            return 0.0
        return ga * mb_scale

    phase_t: dict[str, float] = defaultdict(float)
    phase_e: dict[str, float] = defaultdict(float)
    layer_t: dict[str, float] = defaultdict(float)
    layer_e: dict[str, float] = defaultdict(float)
    layer_f: dict[str, float] = defaultdict(float)
    layer_type: dict[str, str] = {}
    types = graph.module_types()
    flops_gpu = 0.0
    for r, t, e in zip(records, times, energies):
        k = mult(r)
        if k == 0.0:
            continue
        ph = r.phase.value
        if recompute and r.phase is Phase.FORWARD:
            # the recompute belongs to backward
            phase_t["backward"] += t * k
            phase_e["backward"] += e * k
            layer_t[r.module or "(root)"] += t * k
            layer_e[r.module or "(root)"] += e * k
            layer_f[r.module or "(root)"] += r.flops * k
            flops_gpu += r.flops * k
        phase_t[ph] += t * k
        phase_e[ph] += e * k
        name = r.module or "(root)"
        layer_t[name] += t * k
        layer_e[name] += e * k
        layer_f[name] += r.flops * k
        flops_gpu += r.flops * k
        if name not in layer_type:
            layer_type[name] = types.get(r.module, r.module_type) or r.module_type or ""
    # ---- launch-bound gaps: eager PyTorch issues ops from one CPU thread; when the GPU work of a micro-batch is
    # shorter than the CPU time to launch it, the GPU waits (at idle power) — small models / small batches.
    n_mb_ops = sum(1 for r, t in zip(records, times) if t > 0 and r.phase in (Phase.FORWARD, Phase.BACKWARD))
    # fused / foreach optimizers (PyTorch's CUDA default) launch a few multi-tensor kernels, not one per parameter
    n_opt_ops = min(OPT_MAX_LAUNCHES, sum(1 for r, t in zip(records, times) if t > 0 and r.phase is Phase.OPTIMIZER))
    gpu_mb = (phase_t.get("forward", 0.0) + phase_t.get("backward", 0.0)) / ga
    gap_mb = max(0.0, n_mb_ops * HOST_OP_S - gpu_mb)
    gap_opt = max(0.0, n_opt_ops * HOST_OP_S - phase_t.get("optimizer", 0.0))
    gap_s = gap_mb * ga + gap_opt
    if gap_s > 1e-7:
        phase_t["idle_gaps"] = gap_s
        phase_e["idle_gaps"] = gap_s * gpu_spec.idle_w
        assumptions.append(f"launch-bound: GPU work per micro-batch shorter than launching its {n_mb_ops} ops from "
                           f"eager PyTorch at {HOST_OP_S * 1e6:.0f} us each; the GPU idles in the gaps "
                           f"({gap_s * 1e3:.3g} ms per step at {gpu_spec.idle_w:.0f} W)")
    compute_s = sum(phase_t.values())
    compute_j = sum(phase_e.values())

    # ---- communication
    trainable = graph.trainable_params
    bpp = (graph.model.param_bytes / graph.params) if graph.params else 4.0
    grad_bytes = trainable * bpp  # gradients in the parameter dtype (fp32 under autocast)
    weight_bytes = float(graph.model.param_bytes or graph.params * 4)
    if sharding in ("zero2", "zero3", "fsdp") and plan.precision in ("fp16", "bf16", "fp8") and n > 1:
        # ZeRO / FSDP mixed precision: weights gathered and gradients reduced in 16-bit (fp32 master weights and
        # optimizer state stay sharded locally)
        grad_bytes = trainable * 2.0
        weight_bytes = graph.params * 2.0
        assumptions.append("sharded mixed precision: weights all-gathered and gradients reduce-scattered in 16-bit")
    comm = communication(graph, gpu_spec, plan, grad_bytes, weight_bytes)
    if sharding in ("zero3", "fsdp"):
        overlap_with = phase_t.get("forward", 0.0) + phase_t.get("backward", 0.0)
    else:
        overlap_with = phase_t.get("backward", 0.0) / ga  # DDP overlaps with the last micro-batch's backward
    exposed = max(comm["time_s"] * MIN_EXPOSED, comm["time_s"] - overlap_with) if comm["time_s"] else 0.0
    comm_power = gpu_spec.idle_w + COMM_POWER_ACTIVITY * (gpu_spec.tdp_w - gpu_spec.idle_w)
    comm_j = exposed * comm_power
    if n > 1:
        phase_t["communication"] = exposed
        phase_e["communication"] = comm_j
        assumptions.append(f"data parallel over {n} GPUs ({plan.gpus_per_node} per node), sharding {sharding}: "
                           f"{comm['collective']}; {comm['link']}; NCCL bus efficiency {NCCL_BUS_EFFICIENCY:.0%}; "
                           f"overlapped with the backward pass, exposed part at near-idle power "
                           f"({comm_power:.0f} W)")

    step_s = compute_s + exposed  # wall time of one optimizer step (all GPUs in lock-step)
    gpu_j_one = compute_j + comm_j
    per_step_gpu_j = gpu_j_one * n
    host_w = HOST_W_PER_GPU * n
    per_step_host_j = host_w * step_s
    assumptions.append(f"host CPU + DRAM: {HOST_W_PER_GPU:.0f} W per GPU over the whole run (stated constant)")

    steps = max(0, int(plan.steps))
    total_s = steps * step_s
    gpu_kwh = per_step_gpu_j * steps / 3.6e6
    host_kwh = per_step_host_j * steps / 3.6e6
    energy_kwh = (gpu_kwh + host_kwh) * plan.pue
    lo, hi = predictor.range_factors()
    co2_kg = energy_kwh * plan.carbon_intensity_g_per_kwh / 1000.0
    gpu_hours = total_s / 3600.0 * n
    cost = None
    if plan.price_per_kwh is not None or plan.gpu_hour_price is not None:
        cost = (energy_kwh * (plan.price_per_kwh or 0.0)) + gpu_hours * (plan.gpu_hour_price or 0.0)
    else:
        assumptions.append("no --price or --gpu-hour-price given: cost_usd is null")

    per_step = {
        "flops": float(flops_gpu * n),
        "time_s": step_s,
        "gpu_energy_j": per_step_gpu_j,
        "host_energy_j": per_step_host_j,
        "avg_gpu_power_w": (gpu_j_one / step_s) if step_s > 0 else 0.0,
    }
    total = {
        "time_h": total_s / 3600.0,
        "gpu_hours": gpu_hours,
        "gpu_energy_kwh": gpu_kwh,
        "energy_kwh": energy_kwh,
        "energy_kwh_range": [energy_kwh * lo, energy_kwh * hi],
        "co2_kg": co2_kg,
        "co2_kg_range": [co2_kg * lo, co2_kg * hi],
        "cost_usd": cost,
        "host_energy_kwh": host_kwh,
        "steps": steps,
    }

    # ---- layers: innermost module, summed over phases; share of the per-GPU step energy
    layers = []
    denom = gpu_j_one if gpu_j_one > 0 else 1.0
    for name in layer_e:
        layers.append(LayerEstimate(name=name, type=layer_type.get(name, ""), flops=int(layer_f[name] * n),
                                    time_s=layer_t[name], gpu_energy_j=layer_e[name] * n,
                                    share=layer_e[name] / denom))
    layers.sort(key=lambda le: (-le.gpu_energy_j, le.name))
    phases = {ph: {"time_s": phase_t[ph], "gpu_energy_j": phase_e[ph] * n}
              for ph in ("forward", "backward", "optimizer", "idle_gaps", "communication") if ph in phase_t}

    mem = _memory.peak_memory(graph, gpu_spec, plan)
    assumptions.extend(mem.pop("notes", []))
    assumptions.append(f"energy model: {predictor.calibration} ({predictor.source}); 5-95 % range x{lo:.2f}-x{hi:.2f}")
    if gpu_spec.idle_estimated:
        assumptions.append(f"{gpu_spec.key} idle power {gpu_spec.idle_w:.0f} W is an estimate, not a measurement")
    if getattr(gpu_spec, "unconfirmed", ()):
        assumptions.append(f"{gpu_spec.key}: unconfirmed spec values: {', '.join(gpu_spec.unconfirmed)}")
    unsup = graph.unsupported()
    if unsup:
        assumptions.append("unsupported ops counted at zero cost: " +
                           ", ".join(f"{k} x{v}" for k, v in sorted(unsup.items())))

    findings: list[Finding] = []
    if not mem["fits"]:
        findings.append(Finding(
            code="WL201", severity="error",
            message=(f"peak training memory {mem['peak_bytes_per_gpu'] / 2**30:.1f} GiB per GPU exceeds the "
                     f"{gpu_spec.key}'s {mem['gpu_memory_bytes'] / 2**30:.0f} GiB: lower --batch-size per GPU "
                     f"(--grad-accum or more --gpus), use --activation-checkpointing, --sharding zero3, "
                     f"or a GPU with more memory"),
        ))

    est = Estimate(
        model=graph.model, gpu=gpu_spec, plan=plan, calibration=predictor.calibration,
        calibration_source=predictor.source, per_step=per_step, total=total, memory=mem, layers=tuple(layers),
        phases=phases, findings=tuple(findings), assumptions=tuple(dict.fromkeys(assumptions)), graph=graph,
        op_times_s=tuple(times), op_energy_j=tuple(energies),
    )
    if run_lint:
        est = _attach_lint(est, graph, config)
    return est


def _attach_lint(est: Estimate, graph: CostGraph, config) -> Estimate:
    """Attach findings of the lint engine (wattlint.lint.engine.run_rules) when it exists."""
    try:
        from .lint.engine import run_rules  # type: ignore
    except ImportError:
        return est
    try:
        extra = run_rules(graph, est, config)
    except TypeError:
        extra = run_rules(graph, est)
    seen = {(f.code, f.layer) for f in est.findings}
    merged = list(est.findings) + [f for f in (extra or ()) if (f.code, f.layer) not in seen]
    return dataclasses.replace(est, findings=tuple(merged))


# ---- the public API -------------------------------------------------------------------------------------------

FRONTEND_KEYS = ("inputs", "batch_size", "seq_len", "precision", "optimizer", "gpus", "grad_accum",
                 "activation_checkpointing")
PLAN_KEYS = ("epochs", "steps", "dataset", "tokens", "seq_len", "batch_size", "grad_accum", "precision",
             "optimizer", "gpus", "gpus_per_node", "sharding", "pue", "region", "carbon_intensity", "price",
             "gpu_hour_price", "utilization", "internode_gbps", "activation_checkpointing")
ALIASES = {"price_per_kwh": "price", "carbon_intensity_g_per_kwh": "carbon_intensity"}


def analyze_source(source, **options) -> CostGraph:
    """Trace ``source`` (a spec string / path) with the frontend options among ``options``."""
    from .frontends.source import analyze

    kw = {k: options[k] for k in FRONTEND_KEYS if options.get(k) is not None}
    return analyze(source, **kw)


def make_plan(graph: CostGraph, gpu_spec: GpuSpec, *, strict_precision: bool = True, **options) -> Plan:
    from .plan import build_plan

    opts = {ALIASES.get(k, k): v for k, v in options.items()}
    kw = {k: opts.get(k) for k in PLAN_KEYS}
    extra = {k: v for k, v in opts.items() if k not in PLAN_KEYS and k not in FRONTEND_KEYS and v is not None}
    if "dataset_size" in extra and kw.get("dataset") is None:
        kw["dataset"] = str(int(extra.pop("dataset_size")))
    return build_plan(graph, gpu=gpu_spec, strict_precision=strict_precision, **kw)


def resolve(gpu: str | GpuSpec) -> tuple[GpuSpec, str | None]:
    if isinstance(gpu, GpuSpec):
        return gpu, None
    from .hardware import resolve_gpu

    return resolve_gpu(gpu)


def estimate(source_or_graph, *, gpu: str | GpuSpec = "a100-sxm4-80gb", predictor=None, config=None,
             **plan_options) -> Estimate:
    """Estimate the cost of a training plan: ``wattlint.estimate("model.onnx", gpu="rtx3090", epochs=50)``.

    ``source_or_graph`` is a model source (``.onnx``, ``config.json``, ``pkg.mod:attr``, ``file.py:attr``) or an
    already traced :class:`CostGraph`. Plan options are those of the CLI (``epochs``, ``steps``, ``dataset``,
    ``tokens``, ``seq_len``, ``batch_size``, ``grad_accum``, ``precision``, ``optimizer``, ``gpus``,
    ``gpus_per_node``, ``sharding``, ``pue``, ``region``, ``carbon_intensity``, ``price``, ``gpu_hour_price``,
    ``utilization``, ``internode_gbps``, ``activation_checkpointing``; frontend: ``inputs``)."""
    unknown = set(plan_options) - set(PLAN_KEYS) - set(FRONTEND_KEYS) - set(ALIASES) - {"dataset_size"}
    if unknown:
        raise WattlintError(f"unknown estimate option(s): {', '.join(sorted(unknown))}")
    spec, note = resolve(gpu)
    graph = source_or_graph if isinstance(source_or_graph, CostGraph) else analyze_source(source_or_graph,
                                                                                          **plan_options)
    plan_options = {k: v for k, v in plan_options.items() if k != "inputs"}
    plan = make_plan(graph, spec, **plan_options)
    if note:
        plan = dataclasses.replace(plan, assumptions=(note,) + tuple(a for a in plan.assumptions if a != note))
    return estimate_graph(graph, spec, plan, predictor, config=config)


def estimate_many(graph: CostGraph, gpus: Sequence[str | GpuSpec], **plan_options) -> list[Estimate]:
    """The same traced graph and plan options on several GPUs (``--compare``)."""
    out = []
    for i, g in enumerate(gpus):
        spec, note = resolve(g)
        # the first GPU is the one asked for; the others are candidates: an unsupported precision falls back there
        plan = make_plan(graph, spec, strict_precision=i == 0,
                         **{k: v for k, v in plan_options.items() if k != "inputs"})
        if note:
            plan = dataclasses.replace(plan, assumptions=(note,) + tuple(a for a in plan.assumptions if a != note))
        out.append(estimate_graph(graph, spec, plan))
    return out


# ``wattlint.estimate(...)`` is the public API (a function in wattlint/__init__.py), but importing this submodule
# rebinds the package attribute ``wattlint.estimate`` to the module. Making the module callable keeps
# ``wattlint.estimate("model.onnx", gpu=..., epochs=...)`` working whichever was imported first.
class _CallableModule(_types.ModuleType):
    def __call__(self, *args, **kwargs) -> Estimate:
        return estimate(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
