"""Scenarios for rule cases and tests: small CostGraphs built from declarative op specs, and a deliberately simple,
hand-checkable estimator (``simple_estimate``) used as the re-estimator in rule tests.

The simple estimator is NOT the product's energy model (that is wattlint.estimate); it exists so rule tests have
numbers a person can check with a calculator:

    time  = max(flops / (peak[dtype] x 0.7 x q x a), bytes / (bandwidth x 0.8)) + 4 us     per op
            q = waves / ceil(waves) (wave quantization of 128x128 tiles on the SMs), a = 0.5 for GEMM dims that are
            not multiples of 8 (fp16/bf16) or 4 (tf32) on tensor cores, else 1
    power = idle + (TDP - idle) x (0.9 if compute bound else 0.6)
    step  = sum over ops x grad_accum x micro-batch scale, x gpus for energy; optimizer ops once; with pipeline
            stages p (the ops are one stage's work) + the 1F1B fill and drain (p - 1) / v x one micro-batch of the
            ops at idle power (v: interleaved chunks per stage)
    total energy (kWh) = steps x step energy x PUE / 3.6e6; CO2 = kWh x intensity; cost = kWh x price;
    memory = 16 bytes / parameter (fp32 weights, grads, Adam) + forward bytes written (x 0.25 when checkpointing)
             + 0.75 GiB; fits when <= memory_gb GiB.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Any, Mapping, Sequence

from ..types import (CostGraph, Estimate, GpuSpec, LayerEstimate, MemoryUse, ModelInfo, OpKind, OpRecord, Phase,
                     PhaseCost, Plan, StepCost, Status, TotalCost)

GIB = 1 << 30
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float8_e4m3fn": 1, "int64": 8}
_KEY = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "float8_e4m3fn": "fp8"}


def _gpu(key, name, tflops, mem, bw, sms, tdp, idle, tc=True) -> GpuSpec:
    return GpuSpec(key=key, name=name, vendor="NVIDIA", arch="test", peak_tflops=tflops, memory_gb=mem,
                   memory_bw_gbs=bw, sm_count=sms, boost_mhz=1400, tdp_w=tdp, idle_w=idle, tensor_cores=tc)


#: A small fixed GPU table for tests (datasheet dense figures).
GPUS: dict[str, GpuSpec] = {
    "a100-sxm4-80gb": _gpu("a100-sxm4-80gb", "A100 SXM4 80GB",
                           {"fp32": 19.5, "tf32": 156, "fp16": 312, "bf16": 312, "int8": 624}, 80, 2039, 108, 400, 60),
    "h100-sxm5-80gb": _gpu("h100-sxm5-80gb", "H100 SXM5 80GB",
                           {"fp32": 67, "tf32": 495, "fp16": 990, "bf16": 990, "fp8": 1979}, 80, 3350, 132, 700, 80),
    "l4": _gpu("l4", "L4", {"fp32": 30.3, "tf32": 60, "fp16": 121, "bf16": 121, "fp8": 242}, 24, 300, 58, 72, 16),
    "v100-sxm2-32gb": _gpu("v100-sxm2-32gb", "V100 SXM2 32GB", {"fp32": 15.7, "fp16": 125}, 32, 900, 80, 300, 40),
    "gtx1080ti": _gpu("gtx1080ti", "GTX 1080 Ti", {"fp32": 11.3}, 11, 484, 28, 250, 15, tc=False),
}


def nbytes(shape: Sequence[int], dtype: str) -> int:
    return math.prod(shape) * _BYTES.get(dtype, 4)


def _rec(op, kind, module, phase, dtype, shapes=(), flops=0, br=0, bw=0, module_type="", dims=(), **kw) -> OpRecord:
    return OpRecord(op=op, kind=OpKind(kind), module=module, phase=Phase(phase), dtype=dtype,
                    shapes=tuple(tuple(s) for s in shapes), flops=int(flops), bytes_read=int(br),
                    bytes_written=int(bw), module_type=module_type, dims=tuple(sorted(dims)), **kw)


def gemm_records(m: int, n: int, k: int, *, b: int = 1, module: str = "fc", dtype: str = "bfloat16",
                 kind: str = "matmul", module_type: str = "Linear", backward: bool = True,
                 op: str = "aten.mm.default") -> list[OpRecord]:
    """Forward GEMM [b, m, k] x [k, n] and, with ``backward``, its input-grad and weight-grad GEMMs."""
    e = _BYTES.get(dtype, 4)
    out = [_rec(op, kind, module, "forward", dtype, [(b, m, k) if b > 1 else (m, k), (k, n)], 2 * b * m * n * k,
                e * b * (m * k + k * n), e * b * m * n, module_type, (("b", b), ("m", m), ("n", n), ("k", k)))]
    if backward:
        out.append(_rec(op, kind, module, "backward", dtype, [(m, n), (n, k)], 2 * b * m * n * k,
                        e * b * (m * n + n * k), e * b * m * k, module_type, (("b", b), ("m", m), ("n", k), ("k", n))))
        out.append(_rec(op, kind, module, "backward", dtype, [(n, m), (m, k)], 2 * b * m * n * k,
                        e * b * (m * n + m * k), e * b * n * k, module_type, (("b", b), ("m", n), ("n", k), ("k", m))))
    return out


def build_records(ops: Sequence[Mapping[str, Any]]) -> list[OpRecord]:
    """Records from declarative specs (see the rules' cases):

    - ``{"op": "linear", "m", "n", "k", "module", "dtype", "backward"}`` (also ``"conv"``, ``"bmm"`` with ``"b"``)
    - ``{"op": "softmax", "shape", "module", "dtype"}`` forward + backward softmax
    - ``{"op": "elementwise", "name", "shape", "module", "dtype", "count"}`` (memory-bound; forward + backward)
    - ``{"op": "mask", "shape", "module"}`` a weight * mask multiply (torch.nn.utils.prune) in forward
    - ``{"op": "attention", "b", "h", "s", "d", "module"}`` one fused SDPA op (forward + backward)
    - ``{"op": "unsupported", "name", "count"}``; ``{"op": "optimizer", "params"}`` (AdamW, fp32)
    - ``{"op": "recompute", "of": <spec>}``: the spec's forward records again, in backward, marked recompute
    """
    out: list[OpRecord] = []
    for spec in ops:
        s = dict(spec)
        kind = s.pop("op")
        dtype = s.get("dtype", "bfloat16")
        module = s.get("module", kind)
        if kind in ("linear", "conv", "bmm"):
            out += gemm_records(s["m"], s["n"], s["k"], b=s.get("b", 1), module=module, dtype=dtype,
                                kind="conv" if kind == "conv" else "matmul",
                                module_type={"linear": "Linear", "conv": "Conv2d", "bmm": s.get("module_type",
                                                                                                "Attention")}[kind],
                                backward=s.get("backward", True),
                                op={"linear": "aten.mm.default", "conv": "aten.convolution.default",
                                    "bmm": "aten.bmm.default"}[kind])
        elif kind == "softmax":
            shape = tuple(s["shape"])
            n = math.prod(shape)
            sd = s.get("dtype", "float32")
            out.append(_rec("aten._softmax.default", "softmax", module, "forward", sd, [shape], 5 * n,
                            nbytes(shape, sd), nbytes(shape, sd), s.get("module_type", "Attention")))
            out.append(_rec("aten._softmax_backward_data.default", "softmax", module, "backward", sd, [shape, shape],
                            4 * n, 2 * nbytes(shape, sd), nbytes(shape, sd), s.get("module_type", "Attention")))
        elif kind == "elementwise":
            shape = tuple(s["shape"])
            n = math.prod(shape)
            for _ in range(s.get("count", 1)):
                out.append(_rec(f"aten.{s.get('name', 'gelu')}.default", "elementwise", module, "forward", dtype,
                                [shape], 8 * n, nbytes(shape, dtype), nbytes(shape, dtype),
                                s.get("module_type", "GELU")))
                out.append(_rec(f"aten.{s.get('name', 'gelu')}_backward.default", "elementwise", module,
                                "backward", dtype, [shape, shape], 16 * n, 2 * nbytes(shape, dtype),
                                nbytes(shape, dtype), s.get("module_type", "GELU")))
        elif kind == "mask":
            shape = tuple(s["shape"])
            out.append(_rec("aten.mul.Tensor", "elementwise", module, "forward", "float32", [shape, shape],
                            math.prod(shape), 2 * nbytes(shape, "float32"), nbytes(shape, "float32"),
                            s.get("module_type", "Linear")))
        elif kind == "attention":
            b, h, sq, d = s["b"], s["h"], s["s"], s["d"]
            f = 4 * b * h * sq * sq * d
            io = nbytes((b, h, sq, d), dtype)
            dims = (("b", b), ("h", h), ("sq", sq), ("sk", sq), ("d", d))
            out.append(_rec("aten._scaled_dot_product_flash_attention.default", "attention", module, "forward",
                            dtype, [(b, h, sq, d)] * 3, f, 3 * io, io, "Attention", dims))
            out.append(_rec("aten._scaled_dot_product_flash_attention_backward.default", "attention", module,
                            "backward", dtype, [(b, h, sq, d)] * 4, int(2.5 * f), 4 * io, 3 * io, "Attention", dims))
        elif kind == "unsupported":
            for _ in range(s.get("count", 1)):
                out.append(_rec(s.get("name", "aten.foo.default"), "other", module, "forward", "float32",
                                status=Status.UNSUPPORTED))
        elif kind == "optimizer":
            p = s["params"]
            out.append(_rec("aten._fused_adamw_.default", "optimizer", "", "optimizer", "float32", [(p,)],
                            15 * p, 16 * p, 12 * p))
        elif kind == "recompute":
            for r in build_records([s["of"]]):
                if r.phase is Phase.FORWARD:
                    out.append(dataclasses.replace(r, phase=Phase.BACKWARD, recompute=True))
        else:
            raise ValueError(f"unknown op spec {kind!r}")
    return out


# ---- the simple estimator --------------------------------------------------------------------------------------

def _cdt(rec: OpRecord, gpu: GpuSpec, precision: str) -> str:
    key = _KEY.get(rec.dtype, "fp32")
    if rec.kind not in (OpKind.MATMUL, OpKind.CONV, OpKind.ATTENTION) or not gpu.tensor_cores:
        return "fp32"
    if key == "fp32" and precision == "tf32" and gpu.peak_tflops.get("tf32"):
        return "tf32"
    return key


def op_time_power(rec: OpRecord, gpu: GpuSpec, precision: str) -> tuple[float, float]:
    if rec.status is not Status.HANDLED or (rec.flops == 0 and rec.bytes == 0):
        return 0.0, 0.0
    cdt = _cdt(rec, gpu, precision)
    eff = 0.7
    if rec.kind in (OpKind.MATMUL, OpKind.CONV) and rec.dim("m") and rec.dim("n"):
        tiles = math.ceil(rec.dim("m") / 128) * math.ceil(rec.dim("n") / 128) * max(1, rec.dim("b", 1))
        waves = tiles / gpu.sm_count
        eff *= waves / math.ceil(waves)
        mult = {"fp16": 8, "bf16": 8, "tf32": 4, "fp8": 16}.get(cdt)
        if mult and (rec.dim("n") % mult or rec.dim("k") % mult):
            eff *= 0.5
    tc = rec.flops / (gpu.peak(cdt) * eff)
    tm = rec.bytes / (gpu.memory_bw_gbs * 1e9 * 0.8)
    t = max(tc, tm) + 4e-6
    p = gpu.idle_w + (gpu.tdp_w - gpu.idle_w) * (0.9 if tc >= tm else 0.6)
    return t, p


def simple_estimate(graph: CostGraph, gpu: GpuSpec, plan: Plan) -> Estimate:
    times, energies = [], []
    for r in graph.records:
        t, p = op_time_power(r, gpu, plan.precision)
        times.append(t)
        energies.append(t * p)
    mb_scale = plan.micro_batch_size / max(1, graph.micro_batch)
    ga = max(1, plan.grad_accum)
    n = max(1, plan.gpus)
    step_t = step_e = 0.0
    layer_e: dict[str, float] = defaultdict(float)
    layer_t: dict[str, float] = defaultdict(float)
    layer_f: dict[str, int] = defaultdict(int)
    for r, t, e in zip(graph.records, times, energies):
        m = 1.0 if r.phase is Phase.OPTIMIZER else ga * mb_scale
        step_t += t * m
        step_e += e * m
        layer_e[r.module] += e * m
        layer_t[r.module] += t * m
        layer_f[r.module] += int(r.flops * m)
    phases = {}
    if plan.pipeline_parallel > 1:  # the ops are one stage's work; 1F1B fill and drain at idle power
        micro_t = sum(t for r, t in zip(graph.records, times) if r.phase is not Phase.OPTIMIZER) * mb_scale
        bubble = (plan.pipeline_parallel - 1) * micro_t / max(1, plan.virtual_pipeline_stages)
        phases["pipeline_bubble"] = PhaseCost(bubble, bubble * gpu.idle_w)
        step_t += bubble
        step_e += bubble * gpu.idle_w
    if plan.host_op_s is not None:  # launch gaps only when the scenario states a host op time (hand-checkable)
        from ..energy import system

        n_micro, n_opt = system.Launches(), system.Launches()
        micro_k, micro_n, opt_k, opt_n = [], [], [], []
        for r, t in zip(graph.records, times):
            if r.phase is Phase.OPTIMIZER:
                opt_k.append(t)
                opt_n.append(n_opt.add(r, t))
            else:
                micro_k.append(t)
                micro_n.append(n_micro.add(r, t))
        gap = system.launch_gap_s(system.LaunchStream.of(micro_k, micro_n), system.LaunchStream.of(opt_k, opt_n),
                                  mb_scale, ga, plan.host_op_s, not graph.single_tensor_optimizer)
        if gap > 0:
            phases["idle_gaps"] = PhaseCost(gap, gap * gpu.idle_w)
            step_t += gap
            step_e += gap * gpu.idle_w
    gpu_j = step_e * n
    kwh = plan.steps * gpu_j * plan.pue / 3.6e6
    time_h = plan.steps * step_t / 3600
    co2 = kwh * plan.carbon_intensity_g_per_kwh / 1000
    total = TotalCost(steps=plan.steps, time_h=time_h, time_h_range=(time_h * 0.8, time_h * 1.25),
                      gpu_hours=time_h * n, gpu_hours_range=(time_h * n * 0.8, time_h * n * 1.25),
                      gpu_energy_kwh=plan.steps * gpu_j / 3.6e6, host_energy_kwh=0.0, energy_kwh=kwh,
                      energy_kwh_range=(kwh * 0.8, kwh * 1.25), co2_kg=co2, co2_kg_range=(co2 * 0.8, co2 * 1.25),
                      cost_usd=kwh * (plan.price_per_kwh if plan.price_per_kwh is not None else 0.15))
    act = sum(r.bytes_written for r in graph.records if r.phase is Phase.FORWARD) * mb_scale
    if plan.activation_checkpointing:
        act *= 0.25
    peak = 16 * graph.params + act + 0.75 * GIB
    cap = gpu.memory_gb * GIB
    layers = tuple(LayerEstimate(name, graph.module_types().get(name, ""), layer_f[name], layer_t[name],
                                 layer_e[name], layer_e[name] / step_e if step_e else 0.0) for name in layer_e)
    step = StepCost(flops=sum(layer_f.values()) * n, time_s=step_t, gpu_energy_j=gpu_j, host_energy_j=0.0,
                    avg_gpu_power_w=step_e / step_t if step_t else 0.0)
    return Estimate(model=graph.model, gpu=gpu, plan=plan, calibration="prior", calibration_source="test prior",
                    per_step=step, total=total,
                    memory=MemoryUse(peak_bytes_per_gpu=int(peak), gpu_memory_bytes=int(cap), fits=peak <= cap),
                    layers=layers, graph=graph, op_times_s=tuple(times), op_energy_j=tuple(energies),
                    phases=phases)


def scenario(ops: Sequence[Mapping[str, Any]] = (), *, gpu: str = "a100-sxm4-80gb", params: int = 10_000_000,
             micro_batch: int = 8, precision: str = "bf16", graph_precision: str | None = None,
             steps: int = 100_000, batch_size: int | None = None, gpus: int = 1, grad_accum: int = 1,
             activation_checkpointing: bool = False, pue: float = 1.0, carbon: float = 400.0,
             price: float = 0.15, calibration: str = "prior", memory: Mapping[str, Any] | None = None,
             total: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None,
             host_op_s: float | None = None, pipeline_parallel: int = 1, virtual_pipeline_stages: int = 1,
             estimator=None) -> tuple[CostGraph, Estimate]:
    """A (graph, estimate) pair for rule cases: ops per :func:`build_records`, estimated by ``estimator(graph, gpu,
    plan)`` (default :func:`simple_estimate`; pass ``wattlint.api.price`` for the real one); ``memory`` / ``total``
    override parts of the estimate; ``calibration`` its calibration status."""
    records = build_records(ops)
    if not any(r.phase is Phase.OPTIMIZER for r in records):
        records += build_records([{"op": "optimizer", "params": params}])
    graph = CostGraph(model=ModelInfo(source="test", format="torch", params=params, param_bytes=4 * params),
                      records=tuple(records), micro_batch=micro_batch,
                      precision=graph_precision or ("fp32" if precision in ("default", "fp32", "tf32") else precision),
                      extra=dict(extra or {}))
    plan = Plan(batch_size=batch_size or micro_batch * gpus * grad_accum, steps=steps, precision=precision,
                gpus=gpus, gpus_per_node=min(gpus, 8), grad_accum=grad_accum, pue=pue,
                carbon_intensity_g_per_kwh=carbon, price_per_kwh=price,
                activation_checkpointing=activation_checkpointing, host_op_s=host_op_s,
                pipeline_parallel=pipeline_parallel, virtual_pipeline_stages=virtual_pipeline_stages)
    est = (estimator or simple_estimate)(graph, GPUS[gpu], plan)
    return graph, override(est, calibration=calibration, memory=memory, total=total)


def override(est: Estimate, *, calibration: str | None = None, memory: Mapping[str, Any] | None = None,
             total: Mapping[str, Any] | None = None) -> Estimate:
    """``est`` with some fields of its memory / total parts replaced (rule cases pin a total or a memory fit)."""
    changes: dict[str, Any] = {}
    if calibration is not None:
        changes["calibration"] = calibration
    if memory:
        changes["memory"] = dataclasses.replace(est.memory, **memory)
    if total:
        t = dict(total)
        if "energy_kwh" in t and "energy_kwh_range" not in t:
            t["energy_kwh_range"] = (t["energy_kwh"] * 0.8, t["energy_kwh"] * 1.25)
        changes["total"] = dataclasses.replace(est.total, **t)
    return dataclasses.replace(est, **changes) if changes else est


def gpus_list() -> list[GpuSpec]:
    return list(GPUS.values())
