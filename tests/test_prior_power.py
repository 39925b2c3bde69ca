"""Power side of the prior fixed from the H200 SXM op samples (docs/ENERGY_MODEL.md, "Power"): the measured in-job
idle power, tensor-core math power (TENSOR_MATH_POWER) and the SM fill of reduction kernels. Expected values are
worked out by hand in the comments."""

import pytest

from wattlint import costs
from wattlint.energy import prior
from wattlint.hardware import resolve_gpu
from wattlint.types import OpKind, OpRecord, Phase


def db(key):
    return resolve_gpu(key)[0]


def rec(kind, flops, read, written, dtype="float32", dims=(), op="aten.mm.default"):
    return OpRecord(op=op, kind=kind, module="m", phase=Phase.FORWARD, dtype=dtype, flops=flops, bytes_read=read,
                    bytes_written=written, dims=dims)


def test_h200_idle_is_the_measured_value():
    # NVML energy counter on the lent H200 SXM, CUDA context open: 124.06 W (validation campaign), 124.24 / 123.38 W
    # (the two op calibration runs) -> 124 W, a measurement (idle_estimated false), with its source line.
    g = db("h200-sxm-141gb")
    assert g.idle_w == 124 and g.idle_estimated is False
    assert g.sources["idle_w"].startswith("measured")
    # The H100 SXM (same GH100 chip, 700 W, 132 SMs at 1.98 GHz, idle estimate 100 W) still sets the generation's
    # W per SM-GHz: (700 - 100) / (132 x 1.98) = 2.2957 > (700 - 124) / (132 x 1.98) = 2.2039, so the H200's
    # reference core power stays 2.2957 x 132 x 1.98 = 600 W.
    assert prior.core_power_ref(g) == pytest.approx(600.0, rel=1e-6)


def test_tensor_core_gemm_on_h200_hits_the_700w_limit_and_lowers_its_clock():
    # bf16 GEMM 8192^3 on H200 SXM (989.4 TFLOP/s, 132 SMs): 256x128 tiles -> 32 x 64 = 2048 tiles / 132 SMs =
    # 15.515 waves (fill 15.515 / 16 = 0.96970); eff = 0.80 x 0.96970 x 8192 / (8192 + 48) = 0.77124 = u.
    # busy = 2 x 8192^3 / (989.4e12 x 0.77124) = 1.4409 ms; DRAM 3.9 pJ x 8 x 402,653,184 B / 1.4409 ms = 8.719 W.
    # g = 0.96970 x 0.54 + 0.46 x 1.5 x 0.77124 = 0.52364 + 0.53216 = 1.05579; g_ref = 0.54 + 0.46 x 0.8 = 0.908;
    # P_core = 600 x 1.05579 / 0.908 = 697.66 W; 124 + 8.72 + 697.66 = 830 W > 700 W:
    # s = ((700 - 124 - 8.719) / 697.66)^(1/3) = 0.81312^(1/3) = 0.93336; the busy power then sits at the limit.
    g = db("h200-sxm-141gb")
    r = rec(OpKind.MATMUL, *_gemm_cost(8192, 8192, 8192), dtype="bfloat16",
            dims=(("b", 1), ("k", 8192), ("m", 8192), ("n", 8192)))
    p = prior.op_prior(r, g, "bf16")
    assert p.clock_scale == pytest.approx(0.93336, rel=1e-4)
    busy = p.time_s - prior.GAP_S
    assert busy == pytest.approx(1.4409e-3 / 0.93336, rel=1e-3)
    p_busy = (p.energy_j - g.idle_w * prior.GAP_S) / busy
    assert p_busy == pytest.approx(124 + 8.719 * 0.93336 + 567.281, rel=1e-3)  # = 699.4 W
    # without the tensor-core weight (1.0) the same GEMM would ask for 600 x (0.52364 + 0.46 x 0.77124) / 0.908 =
    # 580.4 W + 132.7 = 713.2 W: barely over the limit (s = 0.992), where the measured H200 clocks drop to 0.73-0.89
    # of boost on GEMMs this size (calibration/runs/h200-sxm-141gb)
    g_unit = 0.96970 * 0.54 + 0.46 * 0.77124
    assert prior.core_activity(0.77124, 0.96970, tensor=False) == pytest.approx(g_unit / 0.908, rel=1e-4)
    assert prior.core_activity(0.77124, 0.96970, tensor=True) == pytest.approx(1.05579 / 0.908, rel=1e-4)


def _gemm_cost(m, n, k):
    c = costs.gemm(1, m, n, k, "bfloat16")
    return c.flops, c.bytes_read, c.bytes_written


def test_cuda_core_math_keeps_unit_weight():
    # FP32 SGEMM 8192^3 (default precision: no TF32) on the H200's CUDA cores: w = 1. Same 15.515 waves (fill
    # 0.96970); u = eff = 0.88 x 0.96970 x 8192 / (8192 + 8) = 0.85250; busy = 2 x 8192^3 / (66.9e12 x 0.8525) =
    # 19.279 ms; DRAM 3.9 pJ x 8 x 805,306,368 B / 19.279 ms = 1.303 W; g = 0.52364 + 0.46 x 0.85250 = 0.91579 ->
    # P_core = 600 x 0.91579 / 0.908 = 605.15 W; 124 + 1.30 + 605.15 = 730 W > 700 W:
    # s = ((700 - 124 - 1.303) / 605.15)^(1/3) = 0.94967^(1/3) = 0.98294 (the H200 samples of big SGEMMs: 1935-1980
    # MHz at 680-720 W). With the tensor-core weight it would be g = 0.52364 + 0.46 x 1.5 x 0.8525 = 1.1119, s = 0.92.
    g = db("h200-sxm-141gb")
    c = costs.gemm(1, 8192, 8192, 8192, "float32")
    r = rec(OpKind.MATMUL, c.flops, c.bytes_read, c.bytes_written, dims=c.dims)
    p = prior.op_prior(r, g, "default")
    assert p.compute_dtype == "fp32" and not prior.uses_tensor_cores(r, g, "fp32")
    assert p.clock_scale == pytest.approx(0.98294, rel=1e-4)
    assert p.activity == pytest.approx(0.91579 / 0.908 * 0.98294 ** 3, rel=1e-3)


def test_reduction_fills_the_sms_from_its_input():
    # torch.sum(x, dim=1), x = fp32 [8192, 4096] on H200: reads 134,217,728 B, writes 32,768 B (8192 sums).
    # One thread per OUTPUT element would be 8192 / (132 x 2048) = 0.0303 waves (3 % of the SMs busy, 204 W
    # predicted vs 569 W measured); PyTorch's reduce kernels spread the input over the SMs: 33,554,432 inputs /
    # 270,336 threads = 124.12 waves -> fill 124.12 / 125 = 0.99297.
    # busy = bytes / (4.8e12 x eff_m), eff_m = 0.85 x B / (B + 4.8e12 x 2e-6) with B = 134,250,496: 0.85 x 0.93326
    # = 0.79327 -> 35.257 us; u = 33,554,432 FLOPs / 35.257 us / 66.9e12 = 0.014226;
    # g = 0.99297 x 0.54 + 0.46 x 0.014226 = 0.54275 -> activity 0.54275 / 0.908 = 0.59774.
    g = db("h200-sxm-141gb")
    r = rec(OpKind.REDUCTION, 8192 * 4096, 8192 * 4096 * 4, 8192 * 4, op="aten.sum.dim_IntList")
    p = prior.op_prior(r, g, "default")
    assert p.time_s - prior.GAP_S == pytest.approx(35.257e-6, rel=1e-3)
    assert p.activity == pytest.approx(0.59774, rel=1e-3)
    # P = 124 + DRAM 3.9 pJ x 8 x 134,250,496 B / 35.257 us (118.8 W) + 600 x 0.59774 (358.6 W) = 601.4 W busy
    p_busy = (p.energy_j - g.idle_w * prior.GAP_S) / (p.time_s - prior.GAP_S)
    assert p_busy == pytest.approx(124 + 3.9e-12 * 8 * 134_250_496 / 35.257e-6 + 600 * 0.59774, rel=2e-3)
    # an elementwise op keeps one thread per output element: 65,536 outputs = 0.2424 waves -> fill 0.2424
    e = rec(OpKind.ELEMENTWISE, 65536, 2 * 65536 * 4, 65536 * 4, op="aten.add.Tensor")
    pe = prior.op_prior(e, g, "default")
    busy = pe.time_s - prior.GAP_S
    u = 65536 / busy / g.peak("fp32")
    assert pe.activity == pytest.approx((65536 / 270336 * 0.54 + 0.46 * u) / 0.908, rel=1e-3)
