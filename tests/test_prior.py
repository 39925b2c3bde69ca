"""Physics prior and feature rows: sanity on hand-computed cases (no calibration, no torch)."""

from __future__ import annotations

import math

import pytest

from wattlint import costs
from wattlint.energy import features, prior
from wattlint.types import GpuSpec, OpKind, OpRecord, Phase


def gpu(key="h100-sxm5-80gb", **kw):
    base = dict(key=key, name="H100 SXM5", vendor="NVIDIA", arch="Hopper",
                peak_tflops={"fp32": 66.9, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4, "fp8": 1978.9},
                memory_gb=80, memory_bw_gbs=3350, sm_count=132, boost_mhz=1980, tdp_w=700, idle_w=80)
    base.update(kw)
    return GpuSpec(**base)


def T4():
    return gpu("t4", name="T4", arch="Turing", peak_tflops={"fp32": 8.1, "fp16": 65, "int8": 130}, memory_gb=16,
               memory_bw_gbs=320, sm_count=40, boost_mhz=1590, tdp_w=70, idle_w=10)


def rec_from(cost, dtype="float32", phase=Phase.FORWARD, op="aten.mm.default"):
    return OpRecord(op=op, kind=cost.kind, module="fc", phase=phase, dtype=dtype, flops=cost.flops,
                    bytes_read=cost.bytes_read, bytes_written=cost.bytes_written, dims=cost.dims)


def test_big_gemm_is_compute_bound_near_expected_efficiency():
    g = gpu()
    r = rec_from(costs.gemm(1, 8192, 8192, 8192, "bfloat16"), "bfloat16")
    p = prior.op_prior(r, g, "bf16")
    assert p.bound == "compute"
    assert p.compute_dtype == "bf16"
    achieved = r.flops / p.time_s / g.peak("bf16")
    assert 0.6 < achieved < 0.85
    assert 0.9 * g.tdp_w < p.power_w <= g.tdp_w
    assert p.energy_j == pytest.approx(p.power_w * p.time_s)


def test_elementwise_is_memory_bound_with_lower_power():
    g = gpu()
    c = costs.elementwise("relu", [(64, 1024, 1024)], (64, 1024, 1024), "float32")
    r = rec_from(c, op="aten.relu.default")
    p = prior.op_prior(r, g, "default")
    assert p.bound == "memory"
    bw = r.bytes / p.time_s / (g.memory_bw_gbs * 1e9)
    assert 0.7 < bw < 0.85
    assert g.idle_w < p.power_w < 0.85 * g.tdp_w


def test_tiny_op_is_overhead_bound():
    r = rec_from(costs.elementwise("add", [(10,), (10,)], (10,), "float32"), op="aten.add.Tensor")
    p = prior.op_prior(r, gpu(), "default")
    assert p.bound == "overhead"
    assert prior.GAP_S < p.time_s < 10e-6  # launch gap + DRAM latency of a tiny kernel


def test_precision_semantics():
    g = gpu()
    mm = rec_from(costs.gemm(1, 4096, 4096, 4096, "float32"))
    conv = rec_from(costs.conv((64, 64, 56, 56), (64, 64, 3, 3), "float32", padding=1), op="aten.convolution.default")
    assert prior.compute_dtype(mm, g, "default") == "fp32"  # matmuls: no TF32 by default
    assert prior.compute_dtype(conv, g, "default") == "tf32"  # cuDNN convs: TF32 by default on Ampere+
    assert prior.compute_dtype(mm, g, "tf32") == "tf32"
    assert prior.compute_dtype(mm, g, "fp32") == "fp32"
    assert prior.compute_dtype(conv, g, "fp32") == "fp32"
    half = rec_from(costs.gemm(1, 4096, 4096, 4096, "bfloat16"), "bfloat16")
    assert prior.compute_dtype(half, g, "fp8") == "fp8"
    assert prior.compute_dtype(half, g, "bf16") == "bf16"
    # no TF32 on Turing: default convs stay FP32
    assert prior.compute_dtype(conv, T4(), "default") == "fp32"


def test_bf16_faster_than_fp32_and_h100_faster_than_t4():
    g = gpu()
    f32 = rec_from(costs.gemm(1, 4096, 4096, 4096, "float32"))
    b16 = rec_from(costs.gemm(1, 4096, 4096, 4096, "bfloat16"), "bfloat16")
    assert prior.op_prior(b16, g, "bf16").time_s < prior.op_prior(f32, g, "fp32").time_s / 5
    assert prior.op_prior(f32, g, "fp32").time_s < prior.op_prior(f32, T4(), "fp32").time_s


def test_wave_quantization_penalizes_one_tile_over_a_wave():
    g = gpu()
    # 132 SMs: 132 tiles of 256x128 fill one wave; 133 need a second, mostly idle wave
    full = prior.wave_efficiency(g, 1, 256 * 132, 128)
    over = prior.wave_efficiency(g, 1, 256 * 133, 128)
    assert full[0] > over[0]


def test_efficiency_rises_with_size():
    g = gpu()
    small = rec_from(costs.gemm(1, 256, 256, 256, "bfloat16"), "bfloat16")
    big = rec_from(costs.gemm(1, 8192, 8192, 8192, "bfloat16"), "bfloat16")
    ps, pb = prior.op_prior(small, g, "bf16"), prior.op_prior(big, g, "bf16")
    assert small.flops / ps.time_s < big.flops / pb.time_s


def test_utilization_override():
    g = gpu()
    r = rec_from(costs.gemm(1, 8192, 8192, 8192, "bfloat16"), "bfloat16")
    p = prior.op_prior(r, g, "bf16", utilization=0.4)
    assert r.flops / (p.time_s - prior.GAP_S) == pytest.approx(0.4 * g.peak("bf16"), rel=1e-6)


def test_features_row_shape_and_finite():
    g = gpu()
    recs = [
        rec_from(costs.gemm(1, 512, 768, 3072, "bfloat16"), "bfloat16"),
        rec_from(costs.elementwise("gelu", [(8, 512, 3072)], (8, 512, 3072), "float32")),
        rec_from(costs.attention(8, 12, 512, 512, 64, 64, "bfloat16"), "bfloat16", phase=Phase.BACKWARD),
        OpRecord(op="aten.view.default", kind=OpKind.VIEW, module="", phase=Phase.FORWARD, dtype="float32"),
    ]
    for r in recs:
        row = features.op_features(r, g, "bf16")
        assert len(row) == len(features.FEATURE_NAMES)
        assert all(math.isfinite(x) for x in row)
    assert len(set(features.FEATURE_NAMES)) == len(features.FEATURE_NAMES)
    assert features.FEATURE_SCHEMA_VERSION
