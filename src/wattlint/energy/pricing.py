"""Price every op of a traced step on one GPU: records as they run under the plan's precision -> (time, power).

* Autocast: a graph traced in fp32 (e.g. an ONNX export) with a half-precision plan runs its GEMM-family ops
  (matmul, conv, attention, rnn) in half precision with half the bytes; everything else stays fp32 (PyTorch
  autocast's fp32 lists keep norms, softmax and losses in fp32).
* Multi-tensor optimizer kernels: optimizer records a frontend split per parameter (for per-layer attribution) run
  as ONE foreach / fused kernel per op on the GPU; they are priced together — one launch, one bandwidth ramp — and
  the group's time is shared back by bytes. Linear in the number of records. A for-loop (single-tensor) optimizer
  (``optimizer_impl`` "for-loop") runs each record as its own kernel: no groups.
* Reuse: a graph variant (a lint rule's re-estimate: a few records replaced, the rest the same objects) priced with
  ``base`` = the priced ops of the graph it came from (same GPU, precision, utilization and energy model) prices only
  the records that are not in ``base`` (and the optimizer groups whose members changed); every other record keeps
  the time and power ``base`` gave it. An op's price depends only on the op (and its group), so the result is the
  one a full re-pricing gives.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter
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
    # what was priced, for reuse by a variant (module doc): the graph's records before autocast and whether
    # autocast was applied
    source: tuple[OpRecord, ...] = field(default=(), repr=False, compare=False)
    autocast: bool = field(default=False, repr=False, compare=False)
    # aggregation sums of these priced ops, keyed by what they depend on (wattlint.aggregate fills it)
    sums: dict = field(default_factory=dict, repr=False, compare=False)
    # per record: whether the predictor's own model priced it (False: the spec-sheet prior's price was kept);
    # None when the predictor is the prior itself or cannot say (every price is its own)
    own: tuple[bool, ...] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def energies_j(self) -> tuple[float, ...]:
        """time x power per record (computed once)."""
        return tuple(t * p for t, p in zip(self.times_s, self.powers_w))

    @cached_property
    def _groups(self) -> dict[str, list[int]]:
        return optimizer_groups(self.records)

    @cached_property
    def _index(self) -> dict[int, int]:
        """id(source record) -> its position (``source`` keeps the records alive, so the ids stay theirs)."""
        return {id(r): i for i, r in enumerate(self.source)}


def half_dtype(precision: str) -> str:
    return "bfloat16" if precision in ("bf16", "fp8") else "float16"


def _autocasts(graph: CostGraph, precision: str) -> bool:
    if precision not in HALF_PRECISIONS or graph.precision in HALF_PRECISIONS:
        return False
    return not any(r.dtype in ("float16", "bfloat16") for r in graph.records)


def _autocast_one(r: OpRecord, half: str) -> OpRecord:
    if r.kind in GEMM_FAMILY and r.dtype == "float32":
        return dataclasses.replace(r, dtype=half, bytes_read=r.bytes_read // 2, bytes_written=r.bytes_written // 2)
    return r


def autocast_records(graph: CostGraph, precision: str) -> tuple[tuple[OpRecord, ...], bool]:
    """Records as they run under ``precision`` and whether autocast was applied here (see the module doc)."""
    if not _autocasts(graph, precision):
        return graph.records, False
    half = half_dtype(precision)
    return tuple(_autocast_one(r, half) for r in graph.records), True


def optimizer_groups(records: Sequence[OpRecord]) -> dict[str, list[int]]:
    """Optimizer records of each op that form one multi-tensor kernel (autocast keeps them: the same groups for a
    graph's records before and after it)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.phase is Phase.OPTIMIZER and r.kind is OpKind.OPTIMIZER:
            groups[r.op].append(i)
    return {op: idx for op, idx in groups.items() if len(idx) > 1}


def _merged(rs: Sequence[OpRecord]) -> OpRecord:
    numel = flops = read = written = 0
    for r in rs:  # one pass (integer sums: the order cannot change them)
        numel += r.dim("numel", 0)
        flops += r.flops
        read += r.bytes_read
        written += r.bytes_written
    return dataclasses.replace(rs[0], module="", flops=flops, bytes_read=read, bytes_written=written,
                               dims=(("numel", numel),) if numel else rs[0].dims, shapes=())


def predict_records(predictor, records: Sequence[OpRecord], gpu: GpuSpec, precision: str,
                    utilization: float | None, *, base: PricedOps | None = None,
                    sources: Sequence[OpRecord] | None = None,
                    groups: dict[str, list[int]] | None = None) -> tuple[list[float], list[float]]:
    """Per-record (time, power), multi-tensor optimizer groups priced as one kernel each (module doc).

    ``base`` (priced on the same GPU, precision, utilization and energy model) and ``sources`` (the records before
    autocast, aligned with ``records``): records found in ``base.source`` keep their price from ``base``.
    ``groups``: :func:`optimizer_groups` of ``records`` when the caller already has them (read only)."""
    split = groups if groups is not None else optimizer_groups(records)
    if not split and base is None:
        return _predict_unique(predictor, records, gpu, precision, utilization)
    n = len(records)
    times = [0.0] * n
    powers = [0.0] * n
    grouped = {i for idx in split.values() for i in idx}
    pos = None
    if base is not None:
        index = base._index
        pos = [index.get(id(r), -1) for r in (sources if sources is not None else records)]
        b_groups = base._groups
        b_grouped = {j for idx in b_groups.values() for j in idx}
        b_t, b_p = base.times_s, base.powers_w
    keep = []
    for i in range(n):
        if i in grouped:
            continue
        j = -1 if pos is None else pos[i]
        if j >= 0 and j not in b_grouped:
            times[i], powers[i] = b_t[j], b_p[j]
        else:
            keep.append(i)
    todo = {}
    for op, idx in split.items():
        if pos is not None and [pos[i] for i in idx] == b_groups.get(op):  # the same members: the same kernel
            for i in idx:
                times[i], powers[i] = b_t[pos[i]], b_p[pos[i]]
        else:
            todo[op] = idx
    synth = [_merged([records[i] for i in idx]) for idx in todo.values()]
    if not keep and not synth:
        return times, powers
    t_all, p_all = _predict_unique(predictor, [records[i] for i in keep] + synth, gpu, precision, utilization)
    for j, i in enumerate(keep):
        times[i], powers[i] = t_all[j], p_all[j]
    for k, idx in enumerate(todo.values()):
        t_g, p_g = t_all[len(keep) + k], p_all[len(keep) + k]
        total = _group_bytes(records, idx)  # once per group: linear, not per member
        for i in idx:
            times[i] = t_g * (records[i].bytes / total if total else 1 / len(idx))
            powers[i] = p_g
    return times, powers


# everything an energy model may read from a record: every field but where the op sits (its module's name and type)
_PRICE_FIELDS = tuple(f.name for f in dataclasses.fields(OpRecord) if f.name not in ("module", "module_type"))
_signature = attrgetter(*_PRICE_FIELDS)


def _predict_unique(predictor, records: Sequence[OpRecord], gpu: GpuSpec, precision: str,
                    utilization: float | None) -> tuple[list[float], list[float]]:
    """``predictor.predict`` on the distinct ops of ``records`` (repeated blocks: one op each), spread back. An
    op's price depends only on the op, so this is what pricing every record gives."""
    first: dict[tuple, int] = {}
    which = [first.setdefault(_signature(r), len(first)) for r in records]
    if len(first) == len(records):
        return _faster_of_tf32_fp32(predictor, records, gpu, precision, utilization)
    reps = [None] * len(first)
    for r, j in zip(records, which):
        if reps[j] is None:
            reps[j] = r
    t_u, p_u = _faster_of_tf32_fp32(predictor, reps, gpu, precision, utilization)
    return [t_u[j] for j in which], [p_u[j] for j in which]


def tf32_choice(rec: OpRecord, gpu: GpuSpec, precision: str) -> bool:
    """A float32 GEMM-family op that ``precision`` lets run on TF32 tensor cores on ``gpu`` (prior.compute_dtype:
    ``tf32``, or a cuDNN convolution under the default / autocast precisions) and that would use them: cuBLAS and
    cuDNN then choose between their TF32 tensor-core and FP32 CUDA-core kernels (allowing TF32 adds kernels, it
    removes none), so the op costs the faster of the two. Ops that run on CUDA cores either way (depthwise, unaligned
    channels) have one price."""
    from .prior import compute_dtype, uses_tensor_cores

    return compute_dtype(rec, gpu, precision) == "tf32" and uses_tensor_cores(rec, gpu, "tf32")


def _faster_of_tf32_fp32(predictor, records: Sequence[OpRecord], gpu: GpuSpec, precision: str,
                         utilization: float | None) -> tuple[list[float], list[float]]:
    """``predictor.predict``, with each :func:`tf32_choice` op priced at the faster of its TF32 price and its price
    under ``fp32`` (TF32 off), with that kernel's power. On GPUs whose TF32 tensor peak is no higher than the FP32
    CUDA-core peak (GA102 / AD102 / GB202 boards) the FP32 kernel (no NCHW -> NHWC transposes) can be the faster one.
    A what-if utilization override keeps the TF32 price."""
    times, powers = predictor.predict(records, gpu, precision, utilization)
    if utilization is not None or precision == "fp32":
        return times, powers
    alt = [i for i, r in enumerate(records) if tf32_choice(r, gpu, precision)]
    if not alt:
        return times, powers
    times, powers = list(times), list(powers)
    t32, p32 = predictor.predict([records[i] for i in alt], gpu, "fp32", None)
    for j, i in enumerate(alt):
        if t32[j] < times[i]:
            times[i], powers[i] = t32[j], p32[j]
    return times, powers


def own_prices(predictor, records: Sequence[OpRecord], times_s: Sequence[float], gpu: GpuSpec, precision: str,
               utilization: float | None) -> tuple[bool, ...] | None:
    """Per record, whether ``predictor``'s own model (public-fit, a calibration) priced it as :func:`price` did,
    rather than the spec-sheet prior it falls back to: a :func:`tf32_choice` op that took its FP32 kernel's price is
    the model's when the model prices it under ``fp32``; under a what-if utilization the model's times are not used
    at all. None for the prior itself, or a predictor that cannot say (``prices``)."""
    if getattr(predictor, "calibration", "prior") == "prior" or not hasattr(predictor, "prices"):
        return None
    if utilization is not None:
        return tuple(False for _ in records)
    keys = [(_signature(r), t) for r, t in zip(records, times_s)]
    reps: dict[tuple, int] = {}
    for i, k in enumerate(keys):
        reps.setdefault(k, i)
    # the FP32 CUDA-core kernel's price was the faster one (_faster_of_tf32_fp32): priced once for all such ops
    alt = [i for i in reps.values() if precision != "fp32" and tf32_choice(records[i], gpu, precision)]
    t32 = predictor.predict([records[i] for i in alt], gpu, "fp32", None)[0] if alt else []
    took_fp32 = {i for i, t in zip(alt, t32) if t == times_s[i]}
    own = {k: bool(predictor.prices(records[i], gpu, "fp32" if i in took_fp32 else precision))
           for k, i in reps.items()}
    return tuple(own[k] for k in keys)


def _group_bytes(records: Sequence[OpRecord], idx: Sequence[int]) -> int:
    """Bytes of one optimizer group (called once per group; tests count the calls)."""
    return sum(records[i].bytes for i in idx)


def roof_notes(gpu: GpuSpec, utilization: float | None) -> tuple[str, ...]:
    """The assumption lines of the prior's GeForce roofs (energy/prior.py; docs/ENERGY_MODEL.md "GeForce roofs")."""
    from . import prior

    out: list[str] = []
    if utilization is None and prior.consumer(gpu):
        r = prior.CONSUMER_GEMM_ROOF
        units = []
        if gpu.tensor_cores:
            units.append(f"{r['tensor']:.2f}x on tensor cores (half-rate FP32-accumulate tensor cores)")
        if prior.dual_fp32(gpu):
            units.append(f"{r['simt']:.2f}x on CUDA cores")
        if units:
            out.append("GeForce board: the prior runs GEMMs / convolutions / attention " + " and ".join(units)
                       + " faster than its data-centre ceilings give (boost above the rated clock; fitted on public "
                       "torch.mm microbenchmarks; ops the public-fit model prices keep its times)")
    kind = prior.memory_kind(gpu)
    if kind in ("gddr6x", "gddr7"):
        out.append(f"{kind.upper()} memory: streaming kernels reach {prior.eff_mem_max(gpu):.2f} of the "
                   f"{gpu.memory_bw_gbs:.0f} GB/s spec bandwidth (public copy benchmarks; GDDR6 {prior.EFF_MEM_MAX['gddr']:.2f})")
    return tuple(out)


def price(graph: CostGraph, gpu: GpuSpec, precision: str, utilization: float | None, predictor,
          base: PricedOps | None = None, groups: dict[str, list[int]] | None = None) -> PricedOps:
    """Every record of ``graph`` priced on ``gpu`` under ``precision`` by ``predictor``; ``base``: the priced ops
    of the graph ``graph`` is a variant of, on the same GPU, precision, utilization and predictor (module doc);
    ``groups``: :func:`optimizer_groups` of ``graph.records``, when the caller prices the graph again and again."""
    if graph.single_tensor_optimizer:
        groups = {}  # single-tensor optimizer: every record is its own kernel (and launch)
    autocasted = _autocasts(graph, precision)
    if base is not None and base.autocast != autocasted:
        base = None  # its records ran in another dtype
    if autocasted:
        half = half_dtype(precision)
        records = tuple(_autocast_one(r, half) for r in graph.records)
    else:
        records = graph.records
    times, powers = predict_records(predictor, records, gpu, precision, utilization, base=base,
                                    sources=graph.records, groups=groups)
    notes: tuple[str, ...] = ()
    if autocasted:
        notes = (f"{precision} autocast applied to the fp32 graph: matmul/conv/attention in {half_dtype(precision)}, "
                 f"other ops fp32",)
    if utilization is None and precision != "fp32" and any(tf32_choice(r, gpu, precision) for r in records):
        notes += ("float32 matmuls / convolutions that may use TF32 are priced at the faster of their TF32 "
                  "tensor-core and FP32 CUDA-core kernels (cuBLAS / cuDNN choose among both)",)
    notes += roof_notes(gpu, utilization)
    return PricedOps(records=tuple(records), times_s=tuple(times), powers_w=tuple(powers), notes=notes,
                     source=tuple(graph.records), autocast=autocasted,
                     own=own_prices(predictor, records, times, gpu, precision, utilization))
