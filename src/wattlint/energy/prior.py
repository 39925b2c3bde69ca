"""Physics prior for one op on one GPU: a roofline with size- and wave-dependent efficiency, plus a power model.

No calibration needed; every constant is documented (with its source or reasoning) in docs/ENERGY_MODEL.md.
A calibrated LightGBM model (wattlint.energy.model) only *corrects* this prior (log time ratio, power fraction),
so the prior must be sane on its own.

    compute_s = flops / (peak[compute dtype] x eff_c)
    memory_s  = bytes / (bandwidth x eff_m)
    time_s    = max(compute_s, memory_s) + gap_s          (gap_s: per-kernel launch/tail overhead on the GPU)
    power_w   = idle + (board power - idle) x activity    (activity from achieved compute and bandwidth fractions)

eff_c = EFF_MAX[family] x wave efficiency (best of a few cuBLAS/cuDNN-like tile shapes on the SM count)
        x depth efficiency (small reduction dims k cannot keep tensor cores busy) x alignment penalty.
eff_m = EFF_MEM_MAX x bytes / (bytes + bandwidth x MEM_LATENCY_S)   (small transfers never reach peak bandwidth).

Pure Python, no numpy: it runs per op on the sub-second ONNX path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..types import GpuSpec, OpKind, OpRecord, Phase

# ---- constants (docs/ENERGY_MODEL.md, "Prior constants") ------------------------------------------------------
# Best achievable fraction of the dtype's dense peak for large, well-shaped problems.
EFF_MAX: dict[str, float] = {
    "matmul_tc": 0.78,   # cuBLAS large GEMMs on tensor cores: 70-85 % of dense peak (NVIDIA Hopper/Ampere tuning guides)
    "matmul_simt": 0.88,  # FP32 SGEMM on CUDA cores: ~85-92 % of FP32 peak
    "conv_tc": 0.62,     # cuDNN implicit-GEMM convolutions: ~55-70 % (MLPerf ResNet-50 ~ 55-60 % of peak)
    "conv_simt": 0.70,
    "attention": 0.55,   # FlashAttention-2 forward ~ 50-73 % of peak on A100; backward lower (phase factor below)
    "rnn": 0.35,         # cuDNN LSTM/GRU: sequential time steps, small GEMMs
    "other": 0.35,       # non-GEMM arithmetic on CUDA cores (rarely the bound)
}
ATTENTION_BACKWARD_FACTOR = 0.8  # FA2 backward reaches ~ 80 % of the forward's efficiency
EFF_MEM_MAX = 0.82  # achieved fraction of spec DRAM bandwidth by streaming kernels (STREAM-like: 80-90 %)
MEM_LATENCY_S = 2.0e-6  # bytes = bw x this reach half the achievable bandwidth (ramp-up, tail of small kernels)
GAP_S = 4.0e-6  # per-kernel launch + tail gap on a busy stream (CUDA launch ~ 3-5 us; eager PyTorch)
K_HALF = 48  # GEMM reduction depth at which tensor-core efficiency is halved (pipelining of the K loop)
K_HALF_SIMT = 8
UNALIGNED_PENALTY = 0.6  # tensor-core GEMM dims not multiples of 8 (fp16/bf16) / 4 (tf32): padded or SIMT fallback
# tile shapes (rows x cols of the output) a GEMM library picks from, with their relative per-tile efficiency
TILES: tuple[tuple[int, int, float], ...] = (
    (256, 128, 1.00),
    (128, 128, 0.96),
    (128, 64, 0.88),
    (64, 64, 0.72),
    (32, 32, 0.45),
)
# power model: activity = ACT_FLOOR + ACT_COMPUTE[unit] x compute fraction + ACT_MEMORY x bandwidth fraction
ACT_FLOOR = 0.12
ACT_COMPUTE = {"tensor": 1.05, "simt": 0.85}
ACT_MEMORY = 0.62
ACT_MAX = 1.0

TENSOR_FAMILIES = (OpKind.MATMUL, OpKind.CONV, OpKind.ATTENTION, OpKind.RNN)
COMPUTE_DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8")
_DTYPE_TO_KEY = {
    "float32": "fp32", "float": "fp32", "float64": "fp32", "double": "fp32",
    "float16": "fp16", "half": "fp16", "bfloat16": "bf16",
    "float8_e4m3fn": "fp8", "float8_e5m2": "fp8", "float8_e4m3fnuz": "fp8", "float8_e5m2fnuz": "fp8",
}


@dataclass(frozen=True, slots=True)
class OpPrior:
    """The prior's prediction for one op at the traced micro-batch."""

    time_s: float
    power_w: float
    energy_j: float
    compute_s: float  # flops / (peak x eff_c)
    memory_s: float  # bytes / (bw x eff_m)
    bound: str  # "compute" | "memory" | "overhead"
    compute_dtype: str = "fp32"  # peak key used
    eff_c: float = 0.0
    eff_m: float = 0.0
    activity: float = 0.0


def _dtype_key(dtype: str) -> str:
    name = str(dtype).rsplit(".", 1)[-1].lower()
    return _DTYPE_TO_KEY.get(name, "fp32")


def has_tf32(gpu: GpuSpec) -> bool:
    return bool(gpu.tensor_cores and gpu.peak_tflops.get("tf32"))


def compute_dtype(rec: OpRecord, gpu: GpuSpec, precision: str) -> str:
    """The peak-rate key (fp32|tf32|fp16|bf16|fp8) an op runs at on ``gpu`` under ``precision``.

    * ``default`` = PyTorch's defaults: FP32 matmuls without TF32 (``torch.backends.cuda.matmul.allow_tf32 = False``),
      cuDNN convolutions in TF32 on GPUs that have it (``torch.backends.cudnn.allow_tf32 = True``, Ampere and newer).
    * ``tf32``: FP32 matmuls and convolutions on TF32 tensor cores where the GPU has them.
    * ``fp16`` / ``bf16``: autocast; the record's dtype tells which ops run in half precision.
    * ``fp8``: GEMMs (matmul kind) of half-precision records run at the FP8 peak (Transformer-Engine style);
      attention and convolutions stay in bf16/fp16.
    Non-GEMM ops run on CUDA cores (FP32 peak; they are almost always memory bound).
    """
    key = _dtype_key(rec.dtype)
    if rec.kind not in TENSOR_FAMILIES:
        return "fp32"
    if not gpu.tensor_cores:
        return "fp32" if key in ("fp32", "tf32") else key
    if key == "fp8":
        return "fp8"
    if key in ("fp16", "bf16"):
        if precision == "fp8" and rec.kind is OpKind.MATMUL and gpu.peak_tflops.get("fp8"):
            return "fp8"
        return key
    # float32 records
    if precision == "tf32" or (precision in ("default", "fp16", "bf16", "fp8") and rec.kind is OpKind.CONV):
        return "tf32" if has_tf32(gpu) else "fp32"
    return "fp32"


def uses_tensor_cores(rec: OpRecord, gpu: GpuSpec, cdt: str) -> bool:
    if rec.kind not in TENSOR_FAMILIES or not gpu.tensor_cores:
        return False
    if cdt == "fp32":
        return False
    if cdt in ("fp16", "bf16", "fp8", "tf32") and not gpu.peak_tflops.get(cdt) and not (
            cdt == "bf16" and gpu.peak_tflops.get("fp16")):
        return False
    # depthwise / tiny-channel convolutions and GEMMs with a degenerate dim do not map onto tensor-core tiles
    n = rec.dim("n", 0)
    k = rec.dim("k", 0)
    if rec.kind is OpKind.CONV and (0 < n < 8 or 0 < k < 8):
        return False
    return True


def peak_flops(gpu: GpuSpec, cdt: str, tensor: bool) -> float:
    """Dense FLOP/s for a compute dtype; non-tensor half precision runs at the FP32 rate (conservative)."""
    if not tensor:
        return gpu.peak("fp32")
    return gpu.peak(cdt)


def gemm_dims(rec: OpRecord) -> tuple[int, int, int, int]:
    """(batch, m, n, k) of the op's GEMM view; falls back to a square guess from FLOPs when dims are absent."""
    b, m, n, k = rec.dim("b", 1) or 1, rec.dim("m", 0), rec.dim("n", 0), rec.dim("k", 0)
    if rec.kind is OpKind.ATTENTION:
        bb, h, sq, sk, d = rec.dim("b", 1), rec.dim("h", 1), rec.dim("sq", 0), rec.dim("sk", 0), rec.dim("d", 0)
        if sq and d:
            return max(1, bb * h), sq, d, max(sk, 1)  # flash attention tiles over (b*h) x query blocks
    if m and n and k:
        return b, m, n, k
    # unknown: a square-ish GEMM with the same FLOPs
    side = max(1, int(round((max(rec.flops, 2) / 2) ** (1 / 3))))
    return 1, side, side, side


def wave_efficiency(gpu: GpuSpec, b: int, m: int, n: int) -> tuple[float, float, float]:
    """(efficiency, waves, tile efficiency) of the best tile shape for a b x [m, n] output on the GPU's SMs.

    A tile is one thread block on one SM; ``waves = tiles / SMs``; the last partial wave leaves SMs idle,
    so wave efficiency = waves / ceil(waves) (wave quantization)."""
    sms = max(1, gpu.sm_count)
    best = (0.0, 0.0, 0.0)
    for tm, tn, teff in TILES:
        tiles = b * math.ceil(m / tm) * math.ceil(n / tn)
        waves = tiles / sms
        q = waves / math.ceil(waves) if waves > 0 else 0.0
        # fill of the tile itself (a 256-row tile on a 40-row problem wastes most of it)
        fill = (m / (math.ceil(m / tm) * tm)) * (n / (math.ceil(n / tn) * tn))
        e = teff * q * fill
        if e > best[0]:
            best = (e, waves, teff)
    return best


def compute_efficiency(rec: OpRecord, gpu: GpuSpec, cdt: str, tensor: bool) -> tuple[float, float, float]:
    """(eff_c, waves, wave efficiency) for the op's compute."""
    kind = rec.kind
    if kind in (OpKind.MATMUL, OpKind.CONV, OpKind.ATTENTION, OpKind.RNN):
        b, m, n, k = gemm_dims(rec)
        weff, waves, _ = wave_efficiency(gpu, b, m, n)
        if kind is OpKind.MATMUL:
            base = EFF_MAX["matmul_tc" if tensor else "matmul_simt"]
        elif kind is OpKind.CONV:
            base = EFF_MAX["conv_tc" if tensor else "conv_simt"]
        elif kind is OpKind.ATTENTION:
            base = EFF_MAX["attention"] * (ATTENTION_BACKWARD_FACTOR if rec.phase is Phase.BACKWARD else 1.0)
        else:
            base = EFF_MAX["rnn"]
        kh = K_HALF if tensor else K_HALF_SIMT
        depth = k / (k + kh) if k else 0.5
        align = 1.0
        if tensor:
            mult = 4 if cdt == "tf32" else 8
            if kind is OpKind.MATMUL and any(x % mult for x in (m, n, k) if x > 1):
                align = UNALIGNED_PENALTY
        return max(1e-3, base * weff * depth * align), waves, weff
    # non-GEMM ops: elementwise-style kernels, one thread per element; waves over ~2048 threads/SM x SMs
    elems = max(1, rec.bytes_written // 4 or rec.bytes_read // 4)
    waves = elems / (gpu.sm_count * 2048)
    weff = waves / math.ceil(waves) if waves > 0 else 1.0
    return max(1e-3, EFF_MAX["other"] * max(weff, 0.5)), waves, weff


def memory_efficiency(nbytes: int, gpu: GpuSpec) -> float:
    bw = gpu.memory_bw_gbs * 1e9
    if nbytes <= 0:
        return EFF_MEM_MAX
    return EFF_MEM_MAX * nbytes / (nbytes + bw * MEM_LATENCY_S)


def op_prior(rec: OpRecord, gpu: GpuSpec, precision: str = "default", utilization: float | None = None) -> OpPrior:
    """Time, power and energy of one op (one record, one micro-batch) on ``gpu``.

    ``utilization`` (a what-if override, 0 < u <= 1) replaces the predicted compute efficiency of every op.
    Communication records are not priced here (estimate.py models collectives over the interconnect);
    they get zero GPU time.
    """
    if rec.kind in (OpKind.VIEW, OpKind.COMMUNICATION) or (rec.flops == 0 and rec.bytes == 0):
        return OpPrior(0.0, gpu.idle_w, 0.0, 0.0, 0.0, "overhead", "fp32", 0.0, 0.0, 0.0)
    cdt = compute_dtype(rec, gpu, precision)
    tensor = uses_tensor_cores(rec, gpu, cdt)
    peak = peak_flops(gpu, cdt, tensor)
    bw = gpu.memory_bw_gbs * 1e9
    eff_c, _, _ = compute_efficiency(rec, gpu, cdt, tensor)
    if utilization is not None:
        eff_c = max(1e-3, min(1.0, float(utilization)))
    eff_m = memory_efficiency(rec.bytes, gpu)
    compute_s = rec.flops / (peak * eff_c) if rec.flops else 0.0
    memory_s = rec.bytes / (bw * eff_m) if rec.bytes else 0.0
    busy = max(compute_s, memory_s)
    time_s = busy + GAP_S
    if busy < GAP_S:
        bound = "overhead"
    else:
        bound = "compute" if compute_s >= memory_s else "memory"
    # achieved fractions of the unit's peak over the op's whole time (gap included)
    cfrac = min(1.0, rec.flops / time_s / peak) if rec.flops else 0.0
    mfrac = min(1.0, rec.bytes / time_s / bw) if rec.bytes else 0.0
    activity = min(ACT_MAX, ACT_FLOOR + ACT_COMPUTE["tensor" if tensor else "simt"] * cfrac + ACT_MEMORY * mfrac)
    power_w = gpu.idle_w + (gpu.tdp_w - gpu.idle_w) * activity
    return OpPrior(time_s, power_w, power_w * time_s, compute_s, memory_s, bound, cdt, eff_c, eff_m, activity)


def naive_time_energy(flops: float, gpu: GpuSpec, dtype_key: str = "fp32") -> tuple[float, float]:
    """The naive baseline most calculators use: time = FLOPs / peak, energy = time x TDP."""
    t = flops / gpu.peak(dtype_key)
    return t, t * gpu.tdp_w
