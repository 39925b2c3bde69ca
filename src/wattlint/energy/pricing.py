"""Price every op of a traced step on one GPU: records as they run under the plan's precision -> (time, power).

* Autocast: a graph traced in fp32 (e.g. an ONNX export) with a half-precision plan runs its GEMM-family ops
  (matmul, conv, attention, rnn) in half precision with half the bytes; everything else stays fp32 (PyTorch
  autocast's fp32 lists keep norms, softmax and losses in fp32).
* Multi-tensor optimizer kernels: optimizer records a frontend split per parameter (for per-layer attribution) run
  as ONE foreach / fused kernel per op on the GPU; they are priced together — one launch, one bandwidth ramp — and
  the group's time is shared back by bytes. Linear in the number of records. A for-loop (single-tensor) optimizer
  (``optimizer_impl`` "for-loop") runs each record as its own kernel: no groups.
* Grouped GEMMs (``torch._grouped_mm``, the MoE experts' kernel) are priced as the kernels PyTorch runs for them
  (:func:`grouped_kernels`): on a GPU and dtype with the fused grouped kernel (prior.GROUPED_MM_FUSED_CHIPS, bf16)
  one batched GEMM whose groups all have the balanced share of the jagged dim (the kernel's tiles cover them so);
  elsewhere PyTorch's fallback loop, one GEMM per group, each priced as the single GEMM it is (with its own launch
  gap); the record keeps the sum of their times and energies. The host launches the op once either way.
* Reuse: a graph variant (a lint rule's re-estimate: a few records replaced, the rest the same objects) priced with
  ``base`` = the priced ops of the graph it came from (same GPU, precision, utilization and energy model) prices only
  the records that are not in ``base`` (and the optimizer groups whose members changed); every other record keeps
  the time and power ``base`` gave it. An op's price depends only on the op (and its group), so the result is the
  one a full re-pricing gives.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter
from typing import Sequence

from .. import costs as _costs
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
        return _predict_kernels(predictor, records, gpu, precision, utilization)
    reps = [None] * len(first)
    for r, j in zip(records, which):
        if reps[j] is None:
            reps[j] = r
    t_u, p_u = _predict_kernels(predictor, reps, gpu, precision, utilization)
    return [t_u[j] for j in which], [p_u[j] for j in which]


# torch._grouped_mm operand ranks (a, b) -> the dim its offsets split ("" = 3-D x 3-D: none, a plain batched GEMM)
_GROUPED_JAGGED = {(2, 3): "m", (3, 2): "n", (2, 2): "k", (3, 3): ""}
_GEMM_DIMS = ("b", "m", "n", "k")


def _grouped_jagged(rec: OpRecord) -> str | None:
    """The jagged dim of a ``torch._grouped_mm`` record (from its operands' ranks), "" for a 3-D x 3-D call, None
    for any other record. FP8 records (tagged ``fp8``) are Transformer Engine's GroupedLinear (wattlint.fp8), not
    this op's kernels: None."""
    if rec.kind is not OpKind.MATMUL or "_grouped_mm" not in rec.op or rec.dim("fp8", 0) or len(rec.shapes) < 2:
        return None
    return _GROUPED_JAGGED.get((len(rec.shapes[0]), len(rec.shapes[1])))


def grouped_operands(rec: OpRecord) -> tuple[str, float, float] | None:
    """(jagged dim, share of the bytes read that are the experts' weights, share of the bytes written that are a
    weight gradient) of a ``torch._grouped_mm`` record with a jagged dim (fp8-tagged ones too: Transformer Engine's
    GroupedLinear has the same operands), None for any other record. From its operands' ranks and its per-group
    dims (b groups, the jagged dim at its balanced share): 2-D [M, K] x 3-D [G, K, N] (forward, input gradient)
    reads the weights G x k x n beside the rows M x k; 2-D [K, M]^T x 2-D [M, N] (weight gradient) writes G x m x n
    of weight gradient and reads only rows; 3-D [G, M, K] x 2-D [K, N] reads the weights G x m x k beside K x N.
    Shares, not bytes: the record's bytes may have been rescaled (tensor parallelism, FP8's 1-byte operands) in
    proportion; the rows (tokens) are everything else, the share that grows with the batch and that expert
    parallelism leaves per GPU."""
    if rec.kind is not OpKind.MATMUL or "_grouped_mm" not in rec.op or len(rec.shapes) < 2:
        return None
    jag = _GROUPED_JAGGED.get((len(rec.shapes[0]), len(rec.shapes[1])))
    if not jag:
        return None
    m, n, k = rec.dim("m", 0), rec.dim("n", 0), rec.dim("k", 0)
    if jag == "m":  # rows m x k per group, weight k x n per group; out m x n (rows)
        w_read, read, w_out = k * n, m * k + k * n, 0.0
    elif jag == "k":  # rows: m x k and k x n per group, out the weight gradient
        w_read, read, w_out = 0.0, m * k + k * n, 1.0
    else:  # "n": weight m x k per group, rows k x n per group; out m x n (rows)
        w_read, read, w_out = m * k, m * k + k * n, 0.0
    return jag, (w_read / read if read > 0 else 0.0), w_out


def grouped_kernels(rec: OpRecord, gpu: GpuSpec) -> tuple[tuple[OpRecord, int], ...] | None:
    """The kernels a ``torch._grouped_mm`` record runs as on ``gpu``, as (record, count) pairs; None when the record
    is priced as it stands (not a grouped GEMM; a 3-D x 3-D call, which is one bmm or one fused kernel at exact dims).

    The jagged dim's total comes from the record's FLOPs (2 x total x the other two dims): parallelism rescales a
    record's FLOPs and dims, never its traced shapes. Where PyTorch has the fused grouped kernel
    (prior.grouped_mm_fused): one batched GEMM of ``b`` groups, each at the balanced share ceil(total / groups) of
    the jagged dim padded to whole 16 bytes, FLOPs of those padded groups (the kernel's tiles cover every group at
    that share; the groups one row short fill the same tiles unless the share is one past a tile edge), bytes as
    recorded. Elsewhere PyTorch's
    fallback loop (costs.grouped_gemm_loop): one plain GEMM per group (``aten.mm``), the jagged dim split evenly."""
    from . import prior

    jag = _grouped_jagged(rec)
    if not jag:
        return None
    g = max(1, rec.dim("b", 1) or 1)
    dims = {"m": rec.dim("m", 0), "n": rec.dim("n", 0), "k": rec.dim("k", 0)}
    other = math.prod(v for d, v in dims.items() if d != jag)
    if other <= 0:
        return None
    total = int(round(rec.flops / (2 * other)))
    if prior.grouped_mm_fused(gpu, rec.dtype):
        # the balanced share, padded to whole 16-byte rows: the kernel computes whole tiles (prior.TILES: multiples
        # of 8 rows and columns, so no tile count changes) over the whole tensors, whose strides _grouped_mm requires
        # to be 16-byte multiples; a group's size is not a stride, so the prior's unaligned-dim penalty (a TMA stride
        # rule) does not apply to it
        align = max(1, 16 // _costs.dtype_bytes(rec.dtype))
        share = math.ceil(math.ceil(total / g) / align) * align
        flops = 2 * g * share * other
        if flops == rec.flops and dims[jag] == share:
            return None
        new = dict(rec.dims)
        new[jag] = share
        return ((dataclasses.replace(rec, flops=flops, dims=tuple(sorted(new.items()))), 1),)
    tags = tuple((k, v) for k, v in rec.dims if k not in _GEMM_DIMS)
    out = []
    for cost, count in _costs.grouped_gemm_loop(jag, g, total, dims["m"], dims["n"], dims["k"], rec.dtype):
        if cost.kind is OpKind.MATMUL:
            gm, gn, gk = (dict(cost.dims)[d] for d in "mnk")
            op, shapes, kdims = "aten.mm.default", ((gm, gk), (gk, gn)), tuple(sorted(cost.dims + tags))
        else:  # the zero fill of a group with an empty reduction
            op, shapes, kdims = "aten.zero_.default", (), ()
        out.append((OpRecord(op=op, kind=cost.kind, module=rec.module, phase=rec.phase, dtype=rec.dtype,
                             shapes=shapes, flops=cost.flops, bytes_read=cost.bytes_read,
                             bytes_written=cost.bytes_written, status=rec.status, module_type=rec.module_type,
                             dims=kdims, recompute=rec.recompute), count))
    return tuple(out)


def _expand(records: Sequence[OpRecord],
            gpu: GpuSpec) -> tuple[list[OpRecord], list[list[tuple[int, int]]]] | None:
    """The kernels every record runs as (:func:`grouped_kernels`; any other record is its own kernel) and, per
    record, its (position in the kernel list, count) pairs; None when every record is its own kernel."""
    flat: list[OpRecord] = []
    spans: list[list[tuple[int, int]]] = []
    expanded = False
    for r in records:
        ks = grouped_kernels(r, gpu)
        if ks is None:
            spans.append([(len(flat), 1)])
            flat.append(r)
        else:
            expanded = True
            spans.append([(len(flat) + j, c) for j, (_, c) in enumerate(ks)])
            flat.extend(k for k, _ in ks)
    return (flat, spans) if expanded else None


def _predict_kernels(predictor, records: Sequence[OpRecord], gpu: GpuSpec, precision: str,
                     utilization: float | None) -> tuple[list[float], list[float]]:
    """:func:`_faster_of_tf32_fp32` on the kernels the records run as (:func:`grouped_kernels`): a grouped GEMM
    gets the sum of its kernels' times and energies (power = energy / time)."""
    kernels = _expand(records, gpu)
    if kernels is None:
        return _faster_of_tf32_fp32(predictor, records, gpu, precision, utilization)
    flat, spans = kernels
    t_k, p_k = _faster_of_tf32_fp32(predictor, flat, gpu, precision, utilization)
    times: list[float] = []
    powers: list[float] = []
    for sp in spans:
        t = sum(c * t_k[j] for j, c in sp)
        e = sum(c * t_k[j] * p_k[j] for j, c in sp)
        times.append(t)
        powers.append(e / t if t > 0 else gpu.idle_w)
    return times, powers


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
    # a grouped GEMM is its kernels' (grouped_kernels): the model's own when it priced every one of them
    first = list(reps.values())
    kernels = _expand([records[i] for i in first], gpu)
    if kernels is None:
        flat, spans = [records[i] for i in first], [[(j, 1)] for j in range(len(first))]
        kernel_t = [times_s[i] for i in first]
    else:
        flat, spans = kernels
        kernel_t = _faster_of_tf32_fp32(predictor, flat, gpu, precision, None)[0]
    # the FP32 CUDA-core kernel's price was the faster one (_faster_of_tf32_fp32): priced once for all such ops
    alt = [j for j, r in enumerate(flat) if precision != "fp32" and tf32_choice(r, gpu, precision)]
    t32 = predictor.predict([flat[j] for j in alt], gpu, "fp32", None)[0] if alt else []
    took_fp32 = {j for j, t in zip(alt, t32) if t == kernel_t[j]}
    own_k = [bool(predictor.prices(r, gpu, "fp32" if j in took_fp32 else precision)) for j, r in enumerate(flat)]
    own = {k: all(own_k[j] for j, _ in sp) for k, sp in zip(reps, spans)}
    return tuple(own[k] for k in keys)


def _group_bytes(records: Sequence[OpRecord], idx: Sequence[int]) -> int:
    """Bytes of one optimizer group (called once per group; tests count the calls)."""
    return sum(records[i].bytes for i in idx)


def grouped_notes(records: Sequence[OpRecord], gpu: GpuSpec) -> tuple[str, ...]:
    """The assumption line of how the records' grouped GEMMs (torch._grouped_mm) were priced (grouped_kernels)."""
    from . import prior

    jagged = [r for r in records if _grouped_jagged(r)]
    if not jagged:
        return ()
    fused = [r for r in jagged if prior.grouped_mm_fused(gpu, r.dtype)]
    out = []
    if fused:
        out.append(f"torch._grouped_mm (MoE experts) in bf16 on {gpu.name}: PyTorch's fused grouped kernel, priced as "
                   "one batched GEMM of the groups at their balanced share of the rows")
    if len(fused) < len(jagged):
        loop = sorted({max(1, r.dim("b", 1) or 1) for r in jagged if not prior.grouped_mm_fused(gpu, r.dtype)})
        counts = " or ".join(f"{g:,}" for g in loop)
        out.append(f"torch._grouped_mm (MoE experts) on {gpu.name}: PyTorch's fallback loop (its fused grouped kernel "
                   f"needs bf16 on compute capability 9.x / 10.x), priced as one GEMM kernel per group ({counts} "
                   f"group{'s' if loop != [1] else ''} per grouped GEMM on this GPU), each with its "
                   "launch gap; the loop's copy of the offsets to the host (a sync) is not priced")
    return tuple(out)


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
    notes += grouped_notes(records, gpu)
    return PricedOps(records=tuple(records), times_s=tuple(times), powers_w=tuple(powers), notes=notes,
                     source=tuple(graph.records), autocast=autocasted,
                     own=own_prices(predictor, records, times, gpu, precision, utilization))
