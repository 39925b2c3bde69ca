"""Price every op of a traced step on one GPU: records as they run under the plan's precision -> (time, power).

* Autocast: a graph traced in fp32 (e.g. an ONNX export) with a half-precision plan runs its GEMM-family ops
  (matmul, conv, attention, rnn) in half precision with half the bytes; everything else stays fp32 (PyTorch
  autocast's fp32 lists keep norms, softmax and losses in fp32).
* Multi-tensor optimizer kernels: optimizer records a frontend split per parameter (for per-layer attribution) run
  as ONE foreach / fused kernel per op on the GPU; they are priced together — one launch, one bandwidth ramp — and
  the group's time is shared back by bytes. Linear in the number of records.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

from ..types import CostGraph, GpuSpec, OpKind, OpRecord, Phase

GEMM_FAMILY = (OpKind.MATMUL, OpKind.CONV, OpKind.ATTENTION, OpKind.RNN)
HALF_PRECISIONS = ("fp16", "bf16", "fp8")


@dataclass(frozen=True)
class PricedOps:
    """Per-record time (s) and power (W) for one micro-batch (optimizer records: one step), as priced."""

    records: tuple[OpRecord, ...]
    times_s: tuple[float, ...]
    powers_w: tuple[float, ...]
    notes: tuple[str, ...] = ()

    @property
    def energies_j(self) -> tuple[float, ...]:
        return tuple(t * p for t, p in zip(self.times_s, self.powers_w))


def half_dtype(precision: str) -> str:
    return "bfloat16" if precision in ("bf16", "fp8") else "float16"


def autocast_records(graph: CostGraph, precision: str) -> tuple[tuple[OpRecord, ...], bool]:
    """Records as they run under ``precision`` and whether autocast was applied here (see the module doc)."""
    if precision not in HALF_PRECISIONS or graph.precision in HALF_PRECISIONS:
        return graph.records, False
    if any(r.dtype in ("float16", "bfloat16") for r in graph.records):
        return graph.records, False
    half = half_dtype(precision)
    out = [dataclasses.replace(r, dtype=half, bytes_read=r.bytes_read // 2, bytes_written=r.bytes_written // 2)
           if r.kind in GEMM_FAMILY and r.dtype == "float32" else r for r in graph.records]
    return tuple(out), True


def _optimizer_groups(records: Sequence[OpRecord]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.phase is Phase.OPTIMIZER and r.kind is OpKind.OPTIMIZER:
            groups[r.op].append(i)
    return {op: idx for op, idx in groups.items() if len(idx) > 1}


def _merged(rs: Sequence[OpRecord]) -> OpRecord:
    numel = sum(r.dim("numel", 0) for r in rs)
    return dataclasses.replace(rs[0], module="", flops=sum(r.flops for r in rs),
                               bytes_read=sum(r.bytes_read for r in rs),
                               bytes_written=sum(r.bytes_written for r in rs),
                               dims=(("numel", numel),) if numel else rs[0].dims, shapes=())


def predict_records(predictor, records: Sequence[OpRecord], gpu: GpuSpec, precision: str,
                    utilization: float | None) -> tuple[list[float], list[float]]:
    """Per-record (time, power), multi-tensor optimizer groups priced as one kernel each (module doc)."""
    split = _optimizer_groups(records)
    if not split:
        return predictor.predict(records, gpu, precision, utilization)
    grouped = {i for idx in split.values() for i in idx}
    keep = [i for i in range(len(records)) if i not in grouped]
    synth = [_merged([records[i] for i in idx]) for idx in split.values()]
    t_all, p_all = predictor.predict([records[i] for i in keep] + synth, gpu, precision, utilization)
    times = [0.0] * len(records)
    powers = [0.0] * len(records)
    for j, i in enumerate(keep):
        times[i], powers[i] = t_all[j], p_all[j]
    for k, idx in enumerate(split.values()):
        t_g, p_g = t_all[len(keep) + k], p_all[len(keep) + k]
        total = sum(records[i].bytes for i in idx)  # once per group: linear, not per member
        for i in idx:
            times[i] = t_g * (records[i].bytes / total if total else 1 / len(idx))
            powers[i] = p_g
    return times, powers


def price(graph: CostGraph, gpu: GpuSpec, precision: str, utilization: float | None, predictor) -> PricedOps:
    """Every record of ``graph`` priced on ``gpu`` under ``precision`` by ``predictor``."""
    records, autocasted = autocast_records(graph, precision)
    times, powers = predict_records(predictor, records, gpu, precision, utilization)
    notes = ()
    if autocasted:
        notes = (f"{precision} autocast applied to the fp32 graph: matmul/conv/attention in {half_dtype(precision)}, "
                 f"other ops fp32",)
    return PricedOps(records=tuple(records), times_s=tuple(times), powers_w=tuple(powers), notes=notes)
