"""Public-fit time model: per-op-family efficiency against the GPU's FP32 roofline, learned from public measurements.

The NeuSight lesson (Lee, Phanishayee, Mahajan, ASPLOS'25): do not regress latency; predict how much of the GPU's
roofline a kernel achieves, a bounded quantity that transfers across GPUs. For one op record on one GPU::

    roofline_s = max(flops / peak_fp32, bytes / memory_bandwidth)          (spec-sheet values of the database)
    efficiency = exp(model_family(features))    clipped to (0, 1] (convolutions: (0, 2.25], Winograd)
    time_s     = roofline_s / efficiency + KERNEL_GAP_S                    (4 us launch/tail per kernel)

One LightGBM model per op family (``mm``, ``bmm``, ``conv``, ``elementwise``, ``softmax``, ``layernorm``) fitted on
``ln(efficiency)`` of NeuSight's per-kernel FP32 latencies of five older GPUs (benchmarks/fit_public.py; splits in
benchmarks/public/splits.json). Kernels timed at the host-dispatch floor of NeuSight's loop (tiny kernels all read
~25-90 us, the CPU's time to issue one eager op) carry no GPU information and are left out of the fit; launch-bound
steps are the estimator's business (its launch-gap rule), not a per-kernel efficiency. The features
(:func:`features`) are hardware-normalised (SMs, clock, bandwidth, L2, FP32 peak, waves and tile fill on the SM
count, arithmetic intensity over the ridge point, time at roofline) and are computed from wattlint's own
:class:`~wattlint.types.OpRecord`: the fit builds the same records from the kernels' shapes, so the SAME code serves
fitting and prediction.

Coverage (what the data measured, and nothing else): FP32 GEMMs on CUDA cores (``mm``/``bmm``, and ungrouped
convolutions), and the memory-bound elementwise / softmax / layer-norm kernels in any dtype (their features are
bytes-based). Tensor-core GEMMs and convolutions (tf32/fp16/bf16/fp8), grouped convolutions, attention kernels and
every other kind keep the physics prior (wattlint.energy.prior), which stays the bound and the fallback. So does
any op outside the box of sizes the family was fitted on (card ``domain``, :data:`DOMAIN_FEATURES`): a tree model
holds its edge value flat beyond its data, the prior's physics extrapolates. A GEMM-like record outside the box (a
matmul, or a convolution in its implicit-GEMM view) also carries the model's excess over the prior on the
nearest GEMM inside the box (:func:`edge_gemm`), so its price moves little across the box's edges (a few per cent at most in
review sweeps, beyond the prior's own wave steps): above the box the excess is absolute and fades relative to larger ops, below it a
positive excess shrinks with the roofline time towards the prior's launch-bound price (a record above the box in one size
and below it in another has no stand-in: the prior alone).
Power comes from the prior's power model: each op keeps the prior's dynamic energy (work-proportional, the
energy-roofline view) spread over the public-fit time, on top of idle power, capped at the board power.

Loading never imports torch; lightgbm is imported when a model is first evaluated.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from ..types import GpuSpec, OpKind, OpRecord, Phase, WattlintError
from .predictor import MODELS_DIR, PREDICT_THREADS, Predictor

SCHEMA = "wattlint.public-fit/1"
FEATURE_VERSION = "pf1"
MODEL_DIRNAME = "public-fit"
FAMILIES: tuple[str, ...] = ("mm", "bmm", "conv", "elementwise", "softmax", "layernorm")
LN_EFF_MIN = math.log(1e-4)  # efficiencies are clipped to [1e-4, EFF_MAX[family]] in the fit and in prediction
# Upper bound of the efficiency per family. 1 for kernels doing the FLOPs and bytes the record counts; convolutions
# are counted as direct convolutions, and cuDNN's Winograd F(2x2, 3x3) kernels do 2.25x fewer multiplies for a 3x3
# filter (Lavin & Gray, CVPR 2016): NeuSight's 3x3 conv kernels reach up to 2.25x the direct-conv roofline.
EFF_MAX: dict[str, float] = {"mm": 1.0, "bmm": 1.0, "conv": 2.25, "elementwise": 1.0, "softmax": 1.0,
                             "layernorm": 1.0}
# GPU-side cost of one kernel beyond its roofline work: launch latency + tail between dependent kernels of one
# stream (~2-5 us on Volta..Hopper; the prior's GAP_S uses the same 4 us). The efficiency is fitted on
# (measured - KERNEL_GAP_S) so that time = roofline / efficiency + KERNEL_GAP_S reproduces the measurement.
KERNEL_GAP_S = 4.0e-6
# The size features that bound the model's domain of applicability: per family, the fit stores the range of each over
# its training kernels (card "domain"), and an op outside that box is priced by the prior, whose physics extrapolates
# (a tree model holds its edge value flat: NCF's 1M-row GEMMs are 128x taller than any measured GEMM). GPU-independent
# by construction (sizes, not times), so the box means the same on every GPU. Each family is bounded only in the sizes
# that describe its kernels: a GEMM by its dims (not by a row length, which for a traced addmm is the bias's), an
# elementwise kernel by its element count (not by how its tensor happens to be shaped), a row kernel (softmax, layer
# norm: one block per row) by its element count, row length and row count. A 3x3 convolution's image width (its
# shapes[0][-1]: 5-252 pixels measured) is not bounded, though its model uses it: bounding it switched convolutions at
# 253 pixels to the prior with no GEMM stand-in (jumps of -51 % to +200 % in review), and an implicit GEMM's work is
# set by its dims; beyond 252 pixels the model holds its width effect flat (0.80 -> 0.73 of the roofline in one check).
GEMM_DOMAIN: tuple[str, ...] = ("log10_flops", "log10_bytes", "log10_b", "log10_m", "log10_n", "log10_k")
VECTOR_DOMAIN: tuple[str, ...] = ("log10_flops", "log10_bytes", "log10_elems")
ROW_DOMAIN: tuple[str, ...] = (*VECTOR_DOMAIN, "log10_row", "log10_rows")
DOMAIN_FEATURES: dict[str, tuple[str, ...]] = {"mm": GEMM_DOMAIN, "bmm": GEMM_DOMAIN, "conv": GEMM_DOMAIN,
                                               "elementwise": VECTOR_DOMAIN, "softmax": ROW_DOMAIN,
                                               "layernorm": ROW_DOMAIN}
DOMAIN_TOLERANCE = 1e-9  # float round-off of log10 at the box's edges
THREADS_PER_SM = 2048  # resident threads per SM used to count "waves" of one-thread-per-element kernels
TILES: tuple[tuple[int, int], ...] = ((128, 128), (128, 64), (64, 64), (32, 32))  # SGEMM output tiles counted

FEATURE_NAMES: tuple[str, ...] = (
    # hardware (spec sheet)
    "hw_sm_count", "hw_clock_ghz", "hw_bw_tbs", "hw_l2_mb", "hw_peak_fp32_tflops", "hw_log10_ridge",
    # op vs the GPU's roofline
    "log10_flops", "log10_bytes", "log10_compute_us", "log10_memory_us", "log10_roofline_us",
    "log10_intensity_over_ridge", "log10_bytes_over_l2",
    # GEMM / implicit-GEMM shape on the SM count
    "log10_b", "log10_m", "log10_n", "log10_k",
    *(f"log10_waves_{tm}x{tn}" for tm, tn in TILES), *(f"wave_eff_{tm}x{tn}" for tm, tn in TILES),
    "tile_fill_128x128", "tile_fill_64x64",
    # vector kernels (one thread per element; row kernels for softmax / layer norm)
    "log10_elems", "log10_elem_waves", "flops_per_elem", "read_over_write", "log10_row", "log10_rows",
    "log10_row_waves",
    # data type and phase (constant in NeuSight's FP32 forward kernels: recorded, not learned from)
    "dtype_bytes", "phase_backward",
)


class PublicFitError(WattlintError):
    """The shipped public-fit model folder cannot be used."""


def _l10(x: float) -> float:
    return math.log10(x) if x > 0 else -12.0


def _dtype_bytes(dtype: str) -> int:
    from ..costs import dtype_bytes  # pure module, light

    return dtype_bytes(dtype) if dtype else 4


def roofline_s(rec: OpRecord, gpu: GpuSpec) -> float:
    """max(flops / FP32 peak, bytes / bandwidth) from the spec sheet (no efficiency, no launch gap)."""
    return max(rec.flops / gpu.peak("fp32"), rec.bytes / (gpu.memory_bw_gbs * 1e9))


def _float32(rec: OpRecord) -> bool:
    return str(rec.dtype).rsplit(".", 1)[-1].lower() in ("float32", "float", "")


def _tf32_capable(gpu: GpuSpec) -> bool:
    return bool(gpu.tensor_cores and gpu.peak_tflops.get("tf32"))


def family(rec: OpRecord, gpu: GpuSpec, precision: str) -> str | None:
    """The op family whose model prices ``rec``, or None when the public data does not cover it (prior prices it).

    GEMMs are covered only when they run on CUDA cores in FP32: float32 records under ``fp32``/``default`` matmul
    precision (PyTorch's default has no TF32 matmuls), and convolutions under ``fp32`` or on GPUs without TF32
    (``default`` lets cuDNN use TF32 on Ampere and newer)."""
    if rec.kind in (OpKind.VIEW, OpKind.COMMUNICATION) or (rec.flops == 0 and rec.bytes == 0):
        return None
    k = rec.kind
    if k is OpKind.MATMUL:
        if not _float32(rec) or (precision == "tf32" and _tf32_capable(gpu)):
            return None
        return "bmm" if rec.dim("b", 1) > 1 else "mm"
    if k is OpKind.CONV:
        if not _float32(rec) or rec.dim("b", 1) != 1:  # half precision / grouped (depthwise) convolutions
            return None
        if _tf32_capable(gpu) and precision != "fp32":
            return None
        if _is_same(rec, 3):
            return "conv"  # the only convolutions the public data measured
        # a 1x1 stride-1 convolution IS a GEMM (output pixels x Cout x Cin; cuDNN runs implicit-GEMM sgemm
        # kernels for it): priced by the GEMM model with those dims
        return "mm" if _is_same(rec, 1) else None
    if k in (OpKind.ELEMENTWISE, OpKind.DROPOUT) or (k is OpKind.MEMORY and rec.bytes_read and rec.bytes_written):
        return "elementwise"  # streaming one-thread-per-element kernels (copies are identity elementwise kernels;
        # pure fills, which read nothing, are unlike anything measured and stay on the prior)
    if k is OpKind.SOFTMAX:
        return "softmax"
    if k is OpKind.NORM and _is_layer_norm(rec):
        return "layernorm"
    return None


# norm ops that are not a LayerNorm, though an ``nn.LayerNorm``-typed module may hold one (a fused residual add
# before it, an RMS norm of a class of that name): they stay off the layernorm family
_NOT_LAYER_NORM = ("batch_norm", "group_norm", "instance_norm", "rms_norm", "BatchNormalization",
                   "InstanceNormalization", "GroupNormalization", "RMSNormalization", "SimplifiedLayerNormalization",
                   "SkipLayerNormalization")


def _is_layer_norm(rec: OpRecord) -> bool:
    """A NORM record of a LayerNorm kernel, from either frontend: torch's ``aten.native_layer_norm`` (and its
    backward), ONNX's ``LayerNormalization`` (opset 17: the same kernel, as a GPU runs it), or a norm record of a
    module typed ``LayerNorm`` (a decomposed LayerNorm the ONNX frontend fused, priced on its last node); never a
    batch / group / instance / RMS norm, nor ONNX Runtime's Skip(Simplified)LayerNormalization (an add fused in)."""
    op = rec.op
    if "layer_norm" in op:
        return True
    if any(o in op for o in _NOT_LAYER_NORM):
        return False
    return op.endswith("::LayerNormalization") or rec.module_type == "LayerNorm"


def _operand_layout(rec: OpRecord) -> tuple[int, str, float]:
    """(kernel area, written operand, extra elements read per output element) of a GEMM-like record.

    A convolution's input holds m x k / area elements (k = Cin x kernel area in its implicit-GEMM view), its weight
    k x n, its output m x n (a matmul: area 1, b x m x k, b x k x n, b x m x n). The record writes one of them ('x'
    input gradient, 'w' weight gradient, 'y' forward output: the torch frontend's ``grad`` tag, else the operand the
    bytes written match; a backward matmul of the ONNX frontend writes dA or dB) and reads the other two, plus any
    extra input (a bias, addmm's C, baddbmm's self), counted per output element so that a stand-in keeps it."""
    area = 1
    if rec.kind is OpKind.CONV:
        from .prior import _conv_shapes

        _, w = _conv_shapes(rec)
        area = max(1, math.prod(int(d) for d in w[2:])) if len(w) >= 3 else 1
    b, m, n, k = rec.dim("b", 1) or 1, rec.dim("m", 0), rec.dim("n", 0), rec.dim("k", 0)
    e = _dtype_bytes(rec.dtype)
    sizes = {"x": b * m * k // area, "w": b * k * n, "y": b * m * n}
    tag = rec.dim("grad", 0) if rec.kind is OpKind.CONV else 0
    written = rec.bytes_written // e
    if tag in (1, 2):
        role = "x" if tag == 1 else "w"
    else:
        role = "y" if written == sizes["y"] else {sizes["x"]: "x", sizes["w"]: "w"}.get(written, "y")
    extra = max(0, rec.bytes_read // e - (sum(sizes.values()) - sizes[role]))
    return area, role, extra / max(1, sizes["y"])


def _gemm_sizes(dims: dict[str, int], area: int, role: str, extra: float) -> tuple[int, int]:
    """(elements read, elements written) of the GEMM-like op with ``dims`` and the record's operand layout."""
    b, m, n, k = (dims[d] for d in "bmnk")
    sizes = {"x": b * m * k // area, "w": b * k * n, "y": b * m * n}
    written = sizes[role]
    return sum(sizes.values()) - written + round(extra * sizes["y"]), written


def _resized_extra(shape: Sequence[int], b: int, m: int, n: int) -> tuple[int, ...]:
    """An addmm C / baddbmm self of ``shape`` (broadcast to [b,] m, n) at new sizes: its broadcast (size-1) dims stay
    1, its last dim becomes n, the one before m, the one before that b."""
    new = (b, m, n)[-len(shape):] if shape else ()
    return tuple(1 if int(old) == 1 else int(v) for old, v in zip(shape, new))


def _gemm_like(rec: OpRecord, dims: dict[str, int], layout: tuple[int, str, float]) -> OpRecord:
    """``rec`` with its GEMM dims replaced by ``dims`` (b, m, n, k): FLOPs scaled with b*m*n*k, bytes from the
    record's operand layout (:func:`_operand_layout`), shapes rebuilt for a matmul (a convolution keeps its shapes:
    its kernel area and tensor rank)."""
    b, m, n, k = (dims[d] for d in "bmnk")
    e = _dtype_bytes(rec.dtype)
    old = max(1, (rec.dim("b", 1) or 1) * rec.dim("m", 1) * rec.dim("n", 1) * rec.dim("k", 1))
    read, written = _gemm_sizes(dims, *layout)
    kw: dict[str, Any] = {}
    if rec.kind is OpKind.MATMUL:
        kw["op"] = "aten.bmm.default" if b > 1 else "aten.mm.default"
        operands = ((b, m, k), (b, k, n))
        base = rec.op.split(".")[1] if rec.op.startswith("aten.") else rec.op
        if rec.shapes and len(rec.shapes) == 3 and base in ("addmm", "baddbmm"):
            # torch lists the added C / self first: rebuilt at the new sizes, still first
            kw["shapes"] = (_resized_extra(rec.shapes[0], b, m, n),) + operands
        elif rec.shapes and len(rec.shapes) == 3 and base == "addmv":
            kw["shapes"] = ((m,),) + operands  # self: one value per output row
        elif rec.shapes and len(rec.shapes) == 3:
            # ONNX Gemm (A, B, C): the operands first, C last, as the record had them
            kw["shapes"] = operands + (_resized_extra(rec.shapes[2], b, m, n),)
        else:
            kw["shapes"] = operands
    new = dict(rec.dims)
    new.update(dims)
    return replace(rec, flops=round(rec.flops * (b * m * n * k) / old), bytes_read=read * e, bytes_written=written * e,
                   dims=tuple(sorted(new.items())), **kw)


def edge_gemm(rec: OpRecord, gpu: GpuSpec, model: "PublicFitModel", fam: str) -> OpRecord | None:
    """The GEMM inside the family's training box that stands in for an out-of-box GEMM-like record (a matmul, or a
    convolution in its implicit-GEMM view): b, m, n, k clamped into their ranges; then, while FLOPs or bytes are
    still above (below) the box, every one of m, n, k that can move is scaled by ONE common factor, the one closest
    to 1 that brings them inside (bisection; FLOPs and bytes grow with every dim). A record just past an edge gets
    a stand-in just inside it, and the stand-in moves continuously with the record (no switching between dims).
    None when the family's box has no GEMM ranges, when the record is outside in a size that is not a GEMM dim (a
    convolution's image width), or when no such GEMM exists."""
    box = model.box(fam)
    if rec.kind not in (OpKind.MATMUL, OpKind.CONV) or not all(f"log10_{d}" in box for d in "bmnk"):
        return None
    if not all(rec.dim(d, 0) > 0 for d in "mnk"):
        return None
    others = [name for name in box if name not in GEMM_DOMAIN]
    if others:
        row = features(rec, gpu)
        if any(model.outside(fam, {name: row[FEATURE_NAMES.index(name)] for name in others})):
            return None
    layout = _operand_layout(rec)
    e = _dtype_bytes(rec.dtype)
    flops_per_mac = rec.flops / max(1, (rec.dim("b", 1) or 1) * rec.dim("m") * rec.dim("n") * rec.dim("k"))

    def side(d: dict[str, int]) -> tuple[bool, bool]:
        read, written = _gemm_sizes(d, *layout)
        vals = {"log10_flops": _l10(flops_per_mac * d["b"] * d["m"] * d["n"] * d["k"]),
                "log10_bytes": _l10((read + written) * e), **{f"log10_{x}": _l10(d[x]) for x in "bmnk"}}
        return model.outside(fam, {n: v for n, v in vals.items() if n in box})

    def bounds(d: str) -> tuple[int, int]:
        lo, hi = box[f"log10_{d}"]
        return max(1, math.ceil(10 ** lo - 1e-6)), max(1, math.floor(10 ** hi + 1e-6))

    lim = {d: bounds(d) for d in "bmnk"}
    dims = {d: min(lim[d][1], max(lim[d][0], rec.dim(d, 1) or 1)) for d in "bmnk"}
    for _ in range(4):
        above, below = side(dims)
        if not above and not below:
            return _gemm_like(rec, dims, layout)
        if above and below:
            return None
        base = dict(dims)

        def scaled(f: float, base=base) -> dict[str, int]:
            out = dict(base)
            for d in "mnk":
                lo, hi = lim[d]
                out[d] = min(hi, max(lo, round(base[d] * f)))
            return out

        if above:  # the largest factor in (0, 1) that is not above the box
            ok = lambda f: not side(scaled(f))[0]  # noqa: E731
            good, bad = 0.0, 1.0
        else:  # the smallest factor > 1 that is not below it
            ok = lambda f: not side(scaled(f))[1]  # noqa: E731
            good = max(lim[d][1] / base[d] for d in "mnk") + 1.0
            bad = 1.0
        if not ok(good):
            return None
        for _ in range(60):
            mid = (good + bad) / 2
            good, bad = (mid, bad) if ok(mid) else (good, mid)
        new = scaled(good)
        if new == dims:
            return None
        dims = new
    return None


def _is_same(rec: OpRecord, size: int) -> bool:
    """A 2-D ``size`` x ``size`` convolution with stride 1 and 'same' padding (output pixels = input pixels),
    forward or backward."""
    from .prior import _conv_shapes

    if rec.dim("transposed", 0):  # costs.conv's tag: a transposed convolution is never a 'same' one
        return False
    x, w = _conv_shapes(rec)
    if len(x) != 4 or len(w) != 4 or tuple(w[2:]) != (size, size):
        return False
    # an ordinary convolution's implicit GEMM: n = Cout (the weight's first dim), k = Cin x area (its second dim x
    # area); a transposed one (weight [Cin, Cout, kh, kw]) has the roles swapped and is not what was measured
    if rec.dim("n", 0) != int(w[0]) or rec.dim("k", 0) != int(w[1]) * size * size:
        return False
    return rec.dim("m", 0) == int(x[0]) * int(x[2]) * int(x[3])


def _row_len(rec: OpRecord, elems: int) -> int:
    if rec.shapes and rec.shapes[0]:
        last = int(rec.shapes[0][-1])
        if last > 0:
            return last
    return max(1, elems)


def features(rec: OpRecord, gpu: GpuSpec) -> list[float]:
    """One feature row (len == len(FEATURE_NAMES)) for ``rec`` on ``gpu``."""
    sm = max(1, int(gpu.sm_count))
    peak = gpu.peak("fp32")
    bw = gpu.memory_bw_gbs * 1e9
    ridge = peak / bw
    nbytes = rec.bytes
    compute_s = rec.flops / peak
    memory_s = nbytes / bw
    intensity = rec.flops / nbytes if nbytes else 0.0
    l2 = max(gpu.l2_mb, 0.25) * 1e6
    b, m, n, k = rec.dim("b", 1) or 1, rec.dim("m", 0), rec.dim("n", 0), rec.dim("k", 0)
    gemm = rec.kind in (OpKind.MATMUL, OpKind.CONV) and m > 0 and n > 0
    waves: list[float] = []
    weffs: list[float] = []
    fills: list[float] = []
    for tm, tn in TILES:
        if gemm:
            w = b * math.ceil(m / tm) * math.ceil(n / tn) / sm
            waves.append(_l10(w))
            weffs.append(w / math.ceil(w) if w > 0 else 0.0)
        else:
            waves.append(0.0)
            weffs.append(0.0)
    for tm, tn in ((128, 128), (64, 64)):
        fills.append((m / (math.ceil(m / tm) * tm)) * (n / (math.ceil(n / tn) * tn)) if gemm else 0.0)
    eb = _dtype_bytes(rec.dtype)
    elems = max(1, rec.bytes_written // eb) if rec.bytes_written else max(1, rec.bytes_read // eb)
    row = _row_len(rec, elems)
    rows = max(1, elems // row)
    return [
        float(sm), gpu.boost_mhz / 1000.0, gpu.memory_bw_gbs / 1000.0, float(gpu.l2_mb), peak / 1e12, _l10(ridge),
        _l10(rec.flops), _l10(nbytes), _l10(compute_s * 1e6), _l10(memory_s * 1e6),
        _l10(max(compute_s, memory_s) * 1e6), _l10(intensity / ridge) if intensity else -12.0, _l10(nbytes / l2),
        _l10(b), _l10(m), _l10(n), _l10(k), *waves, *weffs, *fills,
        _l10(elems), _l10(elems / (sm * THREADS_PER_SM)), rec.flops / elems,
        rec.bytes_read / rec.bytes_written if rec.bytes_written else 0.0, _l10(row), _l10(rows), _l10(rows / sm),
        float(eb), 1.0 if rec.phase is Phase.BACKWARD else 0.0,
    ]


# ---- the shipped model ------------------------------------------------------------------------------------------

@dataclass
class PublicFitModel:
    """Card + per-family LightGBM text boosters (loaded lazily)."""

    path: Path
    card: dict[str, Any]
    _boosters: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(self.card.get("families", {}))

    def booster(self, fam: str):
        b = self._boosters.get(fam)
        if b is None:
            try:
                import lightgbm as lgb
            except ImportError:
                raise PublicFitError("lightgbm is not installed: the public-fit model needs it") from None
            f = self.path / self.card["families"][fam]["file"]
            try:
                b = lgb.Booster(model_str=f.read_text())
            except Exception as e:  # noqa: BLE001 - LightGBMError / OSError on a broken file
                raise PublicFitError(f"{f}: cannot read LightGBM text model: {e}") from None
            self._boosters[fam] = b
        return b

    def log_efficiency(self, fam: str, rows: Sequence[Sequence[float]]) -> list[float]:
        if not rows:
            return []
        import numpy as np

        # one thread: a call prices tens to hundreds of distinct ops, where starting and spinning LightGBM's
        # OpenMP threads costs more than the trees (32 % of a ResNet-50 estimate's CPU time on 2 cores; the
        # prediction is the same: benchmarks/results/predict_threads.json)
        pred = self.booster(fam).predict(np.asarray(rows, dtype=float), num_threads=PREDICT_THREADS)
        hi = math.log(EFF_MAX[fam])
        return [min(hi, max(LN_EFF_MIN, float(v))) for v in pred]

    def box(self, fam: str) -> dict[str, list[float]]:
        """The family's training box (card ``domain``): {feature name: [lo, hi]}; empty when the card has none."""
        return (self.card.get("domain") or {}).get(fam) or {}

    def outside(self, fam: str, values: dict[str, float]) -> tuple[bool, bool]:
        """(above, below): whether any of the box's features given in ``values`` lies above the top of its range,
        and whether any lies below the bottom (edges inclusive; features not given are not checked)."""
        above = below = False
        for name, (lo, hi) in self.box(fam).items():
            if name not in values:
                continue
            v = values[name]
            above = above or v > hi + DOMAIN_TOLERANCE
            below = below or v < lo - DOMAIN_TOLERANCE
        return above, below

    def in_domain(self, fam: str, row: Sequence[float]) -> bool:
        """Whether a feature row lies inside the family's training box (card ``domain``; True when the card has
        none: a model fitted before the box was recorded)."""
        above, below = self.outside(fam, {n: row[FEATURE_NAMES.index(n)] for n in self.box(fam)})
        return not above and not below

    def residual_quantiles(self, target: str = "time") -> tuple[float, float]:
        r = self.card["residuals"][target]
        return float(r["p5"]), float(r["p95"])

    def held_out_time_error(self) -> float | None:
        """Model-level held-out time error (fraction) the selection rule compares, or None if not yet measured."""
        v = (self.card.get("held_out") or {}).get("selection_time_mape")
        return float(v) if isinstance(v, (int, float)) else None

    def prior_time_error(self) -> float | None:
        v = (self.card.get("held_out") or {}).get("selection_prior_time_mape")
        return float(v) if isinstance(v, (int, float)) else None


_LOADED: dict[tuple, PublicFitModel] = {}


def load_model(path: str | Path) -> PublicFitModel:
    """Read ``card.json`` and check schema, feature names/version and that every family file exists. A folder is
    loaded once per process (keyed by its card's path, size and mtime): re-estimates on other GPUs share the parsed
    boosters instead of re-reading megabytes of LightGBM text."""
    d = Path(path)
    try:
        st = (d / "card.json").stat()
        key = (str(d.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _LOADED:
        return _LOADED[key]
    model = _read_model(d)
    if key is not None:
        _LOADED[key] = model
    return model


def _read_model(d: Path) -> PublicFitModel:
    try:
        card = json.loads((d / "card.json").read_text())
    except FileNotFoundError:
        raise PublicFitError(f"{d}: no card.json (not a public-fit model folder)") from None
    except (OSError, ValueError, RecursionError) as e:  # not JSON / UTF-8, integers past Python's digit limit
        raise PublicFitError(f"{d / 'card.json'}: unreadable: {e}") from None
    if not isinstance(card, dict) or card.get("schema") != SCHEMA:
        raise PublicFitError(f"{d / 'card.json'}: schema {card.get('schema') if isinstance(card, dict) else None!r},"
                             f" this wattlint reads {SCHEMA!r}")
    feats = card.get("features") or {}
    if feats.get("version") != FEATURE_VERSION or list(feats.get("names") or []) != list(FEATURE_NAMES):
        raise PublicFitError(f"{d}: fitted on feature version {feats.get('version')!r}, this wattlint computes "
                             f"{FEATURE_VERSION!r}; refit with benchmarks/fit_public.py")
    fams = card.get("families")
    if not isinstance(fams, dict) or not fams:
        raise PublicFitError(f"{d}: the card lists no op families")
    from .model import lightgbm_text_problem

    for fam, info in fams.items():
        if fam not in FAMILIES or not isinstance(info, dict) or not (d / str(info.get("file", ""))).is_file():
            raise PublicFitError(f"{d}: family {fam!r} unknown, not a {{file, sha256, ...}} table, or its model file "
                                 f"is missing")
        problem = lightgbm_text_problem(d / str(info["file"]), info.get("sha256"))
        if problem:
            raise PublicFitError(problem)
    dom = card.get("domain", {})
    if not isinstance(dom, dict) or not all(
            fam in FAMILIES and isinstance(box, dict) and all(
                name in FEATURE_NAMES and isinstance(r, list) and len(r) == 2
                and all(isinstance(x, (int, float)) and math.isfinite(x) for x in r) and r[0] <= r[1]
                for name, r in box.items())
            for fam, box in dom.items()):
        raise PublicFitError(f"{d}: card 'domain' must map op families to {{feature name: [lo, hi]}} with lo <= hi")
    return PublicFitModel(d, card)


# ---- predictor --------------------------------------------------------------------------------------------------

class PublicFitPredictor(Predictor):
    """Per-op time from the public-fit efficiency model where it covers the op, the prior elsewhere; power from the
    prior's power model (dynamic energy of the op kept, spread over the public-fit time)."""

    calibration = "public-fit"

    def __init__(self, model: PublicFitModel):
        super().__init__()
        self.model = model
        srcs = model.card.get("data_sources") or []
        names = ", ".join(str(s.get("name")) for s in srcs if isinstance(s, dict) and s.get("name"))
        self.source = (f"public-fit model {model.card.get('version', '')} ({names or 'public measurements'}); "
                       "FP32 CUDA-core GEMMs and memory-bound kernels of the sizes it was fitted on; tensor-core and "
                       "other ops by the prior, and sizes outside that range too (a GEMM with the model's excess on "
                       "the nearest fitted size)").strip()

    def covers(self, rec: OpRecord, gpu: GpuSpec, precision: str) -> bool:
        fam = family(rec, gpu, precision)
        if fam is None or fam not in self.model.card["families"]:
            return False
        return self.model.in_domain(fam, features(rec, gpu)) or edge_gemm(rec, gpu, self.model, fam) is not None

    prices = covers  # what public-fit itself prices (Predictor.prices): the ops it covers

    def predict(self, records, gpu, precision, utilization=None):
        times, powers = Predictor.predict(self, records, gpu, precision, utilization)
        if utilization is not None:  # a what-if utilization override keeps the prior's time
            return times, powers
        groups: dict[str, dict[tuple, list[int]]] = {}
        for i, r in enumerate(records):
            if times[i] <= 0:
                continue
            fam = family(r, gpu, precision)
            if fam is None or fam not in self.model.card["families"]:
                continue
            key = (r.kind, r.phase, r.dtype, r.flops, r.bytes_read, r.bytes_written, r.dims, r.shapes[:1])
            groups.setdefault(fam, {}).setdefault(key, []).append(i)
        span_cap = gpu.tdp_w
        for fam, by_key in groups.items():
            rows = {first: features(records[first], gpu) for first in (v[0] for v in by_key.values())}
            inside = [members[0] for members in by_key.values() if self.model.in_domain(fam, rows[members[0]])]
            # outside the training box the prior prices the op; a GEMM-like record also carries the model's excess
            # over the prior on the nearest in-box GEMM (edge_gemm), so its price does not jump at the edge
            edges = [(members, edge_gemm(records[members[0]], gpu, self.model, fam)) for members in by_key.values()
                     if not self.model.in_domain(fam, rows[members[0]])]
            edges = [(members, c) for members, c in edges if c is not None]
            t_new: dict[int, float] = {}
            le = self.model.log_efficiency(fam, [rows[first] for first in inside])
            for first, lne in zip(inside, le):
                t_new[first] = roofline_s(records[first], gpu) / math.exp(lne) + KERNEL_GAP_S
            if edges:
                cands = [c for _, c in edges]
                le_c = self.model.log_efficiency(fam, [features(c, gpu) for c in cands])
                t_c_prior, _ = Predictor.predict(self, cands, gpu, precision)
                for (members, c), lne, tcp in zip(edges, le_c, t_c_prior):
                    first = members[0]
                    excess = roofline_s(c, gpu) / math.exp(lne) + KERNEL_GAP_S - tcp
                    # below the box a positive excess shrinks with the roofline time (FLOPs when compute bound,
                    # bytes when memory bound: to the prior's launch-bound time at zero size); a negative one, and
                    # any excess above the box, stays absolute (above, it fades relative to the larger op; below,
                    # shrinking it would price a smaller op higher where the prior is flat)
                    roof_r, roof_c = roofline_s(records[first], gpu), roofline_s(c, gpu)
                    if excess > 0 and roof_c > 0:
                        excess *= min(1.0, roof_r / roof_c)
                    # floored at the family's own bound (a Winograd 3x3 convolution beats the direct-conv roofline)
                    t_new[first] = max(times[first] + excess, roof_r / EFF_MAX[fam] + KERNEL_GAP_S)
            for members in by_key.values():
                first = members[0]
                if first not in t_new:
                    continue
                t = t_new[first]
                t_prior, p_prior = times[first], powers[first]
                # the prior's dynamic energy (above idle) of this op, spread over the public-fit time
                p = gpu.idle_w + max(0.0, p_prior - gpu.idle_w) * (t_prior / t if t > 0 else 1.0)
                p = min(span_cap, p)
                for i in members:
                    times[i] = t
                    powers[i] = p
        return times, powers

    def range_factors(self, quantity: str = "energy") -> tuple[float, float]:
        """5-95 % multiplicative band of ``quantity`` (energy | time; GPU-hours follow time) from the card's
        held-out residuals; the prior's band when the card has none."""
        q = "time" if quantity == "time" else "energy"
        try:
            lo, hi = self.model.residual_quantiles(q)
            return math.exp(lo), math.exp(hi)
        except (KeyError, TypeError, ValueError):
            from .predictor import PRIOR_RANGES

            return PRIOR_RANGES[q]


# ---- selection rule -----------------------------------------------------------------------------------------------

def load_public_fit(models_dir: Path | str | None = None) -> PublicFitPredictor | None:
    """The shipped public-fit predictor (``<models_dir>/public-fit/``), or None when absent or unusable.

    Reads only the card (no lightgbm, no torch); a broken folder returns None so estimates fall back to the
    next source instead of failing."""
    d = Path(models_dir) if models_dir is not None else MODELS_DIR
    try:
        return PublicFitPredictor(load_model(d / MODEL_DIRNAME))
    except PublicFitError:
        return None


def public_fit_applies(pf: PublicFitPredictor, gpu: GpuSpec) -> bool:
    """The GPUs the public data can speak for: NVIDIA GPUs with a FP32 peak, memory bandwidth and SM count in the
    database (NeuSight measured NVIDIA GPUs only), and only when the card's model-level held-out time error beats
    the prior's on the same held-out rows (otherwise the public fit would make numbers worse)."""
    if str(gpu.vendor).upper() != "NVIDIA" or not gpu.peak_tflops.get("fp32") or gpu.memory_bw_gbs <= 0 \
            or gpu.sm_count <= 0:
        return False
    err, prior_err = pf.model.held_out_time_error(), pf.model.prior_time_error()
    return err is not None and (prior_err is None or err < prior_err)


def _calibrated_time_error(pred: Predictor) -> float | None:
    card = getattr(getattr(pred, "model", None), "card", None) or {}
    v = ((card.get("cv") or {}).get("leave_shape_out") or {}).get("time_wape")
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def choose_predictor(gpu: GpuSpec, *, measured: Predictor | None = None, public_fit: PublicFitPredictor | None = None,
                     transferred: Predictor | None = None, prior: Predictor | None = None) -> Predictor:
    """The order of preference for one GPU: measured > public-fit > transferred > prior.

    * ``measured`` (this GPU's own calibration) always wins: it was fitted on this GPU.
    * ``public-fit`` is used when :func:`public_fit_applies` (NVIDIA, and its held-out model-level time error is
      below the prior's on the same rows), unless a ``transferred`` calibration reports a lower held-out time
      error (its card's leave-shape-out time WAPE widened by the transfer factor) than the public fit's. The two
      errors are not the same metric: public-fit's is a whole-step MAPE on unseen GPUs, the transferred card's an
      op-level WAPE over held-out shapes of its own GPU, widened by ``TRANSFER_WIDEN`` for the GPU change. No data
      here gives both on the same rows (a transferred calibration needs a user's NVML run), so the rule compares the
      closest figures each card carries; docs/ACCURACY.md states it.
    * ``transferred`` next, then the ``prior`` (a fresh PriorPredictor when not given).
    """
    if measured is not None:
        return measured
    if public_fit is not None and public_fit_applies(public_fit, gpu):
        pf_err = public_fit.model.held_out_time_error()
        tr_err = _calibrated_time_error(transferred) if transferred is not None else None
        if tr_err is not None and pf_err is not None:
            from .predictor import TRANSFER_WIDEN

            if tr_err * TRANSFER_WIDEN < pf_err:
                return transferred  # type: ignore[return-value]
        return public_fit
    if transferred is not None:
        return transferred
    if prior is not None:
        return prior
    from .predictor import PriorPredictor

    return PriorPredictor()
