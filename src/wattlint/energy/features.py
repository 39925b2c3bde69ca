"""Hardware-normalized per-op features: the SAME code builds the calibration fit's rows and the prediction rows.

Columns are named and versioned (``FEATURE_SCHEMA_VERSION``); a fitted model's card records the version and the
names it was fitted on, and loading a model fitted on another version is an error, never a silent mismatch.

Normalization is what lets a model fitted on measured GPUs transfer to GPUs known only from their spec sheet:
sizes are expressed relative to the GPU (arithmetic intensity over the ridge point of the compute dtype, ideal
times at peak, waves on the SM count), not in absolute FLOPs alone.
"""

from __future__ import annotations

import math

from ..types import GpuSpec, OpKind, OpRecord, Phase
from . import prior as _prior

# 2: prior_clock_scale, kind_direct_conv (power-limited clocks, depthwise convs); 3: the prior's values changed under
# the same names (A_BUSY 0.54, GeForce roofs, GDDR6X bandwidth, 2026-12-05): models fitted on version 2 are refused
# and must be refitted, so their corrections are not stacked on a prior that moved; 4: GP100 (Tesla P100) streams at
# 0.73 of its spec bandwidth (prior.EFF_MEM_MAX_BY_CHIP, 2026-12-05): its memory-bound ops' prior time and eff moved;
# and CPU specs' depthwise convolutions keep the direct-convolution price (were priced at a 1 MHz "SM clock")
FEATURE_SCHEMA_VERSION = "4"

# op families one-hot encoded (order is part of the schema)
KIND_ONEHOT: tuple[OpKind, ...] = (
    OpKind.MATMUL, OpKind.CONV, OpKind.ATTENTION, OpKind.NORM, OpKind.SOFTMAX, OpKind.EMBEDDING, OpKind.POOL,
    OpKind.ELEMENTWISE, OpKind.REDUCTION, OpKind.LOSS, OpKind.DROPOUT, OpKind.INDEX, OpKind.MEMORY, OpKind.RNN,
    OpKind.OPTIMIZER,
)
DTYPE_CODE = {"fp32": 0.0, "tf32": 1.0, "fp16": 2.0, "bf16": 2.0, "fp8": 3.0}

FEATURE_NAMES: tuple[str, ...] = (
    "log10_flops",
    "log10_bytes",
    "log10_intensity",  # flops / byte
    "log10_intensity_over_ridge",  # intensity / (peak[compute dtype] / bandwidth)
    "log10_ideal_compute_s",  # flops / peak[compute dtype]
    "log10_ideal_memory_s",  # bytes / bandwidth
    "log10_prior_time_s",
    "prior_compute_fraction",  # compute_s / (compute_s + memory_s)
    "prior_eff_c",
    "prior_eff_m",
    "prior_activity",
    "prior_clock_scale",  # sustained / boost clock under the power limit (1: the limit does not bind)
    "direct_conv",  # depthwise / narrow grouped convolution priced as a bandwidth-bound direct kernel
    "log10_waves",
    "wave_efficiency",
    "log10_m",
    "log10_n",
    "log10_k",
    "log10_batch",
    "aligned8",
    "tensor_core",
    "compute_dtype_code",
    "dtype_bytes",
    "phase_forward",
    "phase_backward",
    "phase_optimizer",
    "recompute",
    "log10_sm_count",
    "log10_ridge",
    "tdp_over_idle",
    *(f"kind_{k.value}" for k in KIND_ONEHOT),
)


def _l10(x: float) -> float:
    return math.log10(x) if x > 0 else -12.0


def op_features(rec: OpRecord, gpu: GpuSpec, precision: str) -> list[float]:
    """One feature row (len == len(FEATURE_NAMES)) for ``rec`` on ``gpu`` under ``precision``."""
    p = _prior.op_prior(rec, gpu, precision)
    cdt = p.compute_dtype
    tensor = _prior.uses_tensor_cores(rec, gpu, cdt)
    peak = _prior.peak_flops(gpu, cdt, tensor)
    bw = gpu.memory_bw_gbs * 1e9
    ridge = peak / bw
    nbytes = rec.bytes
    intensity = rec.flops / nbytes if nbytes else (rec.flops if rec.flops else 0.0)
    if rec.kind in _prior.TENSOR_FAMILIES and not _prior.direct_conv(rec):
        b, m, n, k = _prior.gemm_dims(rec)
        _, waves, weff = _prior.compute_efficiency(rec, gpu, cdt, tensor)
        aligned = 1.0 if all(x % 8 == 0 for x in (m, n, k) if x > 1) else 0.0
    else:
        b = m = n = k = 0
        _, waves, weff = _prior.compute_efficiency(rec, gpu, cdt, False)
        aligned = 1.0
    tot = p.compute_s + p.memory_s
    from ..costs import dtype_bytes  # local: costs is pure and light

    row = [
        _l10(rec.flops),
        _l10(nbytes),
        _l10(intensity),
        _l10(intensity / ridge) if intensity else -12.0,
        _l10(rec.flops / peak) if rec.flops else -12.0,
        _l10(nbytes / bw) if nbytes else -12.0,
        _l10(p.time_s),
        p.compute_s / tot if tot else 0.0,
        p.eff_c,
        p.eff_m,
        p.activity,
        p.clock_scale,
        1.0 if p.kernel == "direct_conv" else 0.0,
        _l10(waves),
        weff,
        _l10(m),
        _l10(n),
        _l10(k),
        _l10(b),
        aligned,
        1.0 if tensor else 0.0,
        DTYPE_CODE.get(cdt, 0.0),
        float(dtype_bytes(rec.dtype)),
        1.0 if rec.phase is Phase.FORWARD else 0.0,
        1.0 if rec.phase is Phase.BACKWARD else 0.0,
        1.0 if rec.phase is Phase.OPTIMIZER else 0.0,
        1.0 if rec.recompute else 0.0,
        _l10(gpu.sm_count),
        _l10(ridge),
        gpu.tdp_w / max(gpu.idle_w, 1.0),
    ]
    row.extend(1.0 if rec.kind is k_ else 0.0 for k_ in KIND_ONEHOT)
    return row


def feature_rows(records, gpu: GpuSpec, precision: str) -> list[list[float]]:
    return [op_features(r, gpu, precision) for r in records]
