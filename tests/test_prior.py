"""Physics prior and feature rows: sanity on hand-computed cases (no calibration, no torch)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from wattlint import costs
from wattlint.energy import features, prior
from wattlint.types import GpuSpec, OpKind, OpRecord, Phase


def gpu(key="h100-sxm5-80gb", **kw):
    base = dict(key=key, name="H100 SXM5", vendor="NVIDIA", arch="Hopper (GH100)",
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
    # fp8: only the linear-layer GEMMs wattlint.fp8 tags run at the FP8 peak; the rest stays in bf16
    assert prior.compute_dtype(half, g, "fp8") == "bf16"
    tagged = dataclasses.replace(half, dims=tuple(sorted(half.dims + (("fp8", 1),))))
    assert prior.compute_dtype(tagged, g, "fp8") == "fp8"
    assert prior.compute_dtype(tagged, g, "bf16") == "bf16"
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


# ---- issue 13: one test per defect, expectations derived by hand in the comments ------------------------------------

def db(key):
    from wattlint.hardware import resolve_gpu

    return resolve_gpu(key)[0]


def test_depthwise_conv_is_a_memory_bound_kernel_not_a_gemm():
    # depthwise 3x3 conv, x = [32, 256, 56, 56] fp32 on an A100 SXM4 80GB (2039 GB/s HBM2e):
    #   bytes = (x + w + out) x 4 = (25,690,112 + 2,304 + 25,690,112) x 4 = 205,530,112 B
    #   eff_m = 0.85 x B / (B + 2039e9 x 2e-6) = 0.85 x 205.53 / 209.61 = 0.83346
    #   memory_s = B / (2039e9 x 0.83346) = 120.94 us; compute (2 x 32 x 256 x 3136 x 9 = 462 MFLOP on CUDA cores at
    #   0.5 x 19.5 TFLOP/s) = 47 us < memory_s -> time = 120.94 us + 4 us gap.
    # The old prior priced it as a GEMM with n = 1 output channel per group (tile fill 1/32): ~8x slower.
    g = db("a100-sxm4-80gb")
    c = costs.conv((32, 256, 56, 56), (256, 1, 3, 3), "float32", padding=1, groups=256)
    r = rec_from(c, op="aten.convolution.default")
    assert r.bytes == 205_530_112
    p = prior.op_prior(r, g, "default")
    assert p.kernel == "direct_conv" and p.bound == "memory"
    assert p.time_s == pytest.approx(120.94e-6 + prior.GAP_S, rel=2e-3)
    assert not prior.uses_tensor_cores(r, g, p.compute_dtype)


def test_depthwise_conv_on_a_cpu_keeps_the_direct_convolution_price():
    # PyTorch's CUDA depthwise kernels are priced per SM clock; a CPU spec (vendor "cpu", no clock: the calibration
    # backend's measured spec) runs other kernels and must keep the direct-convolution price, not 1 MHz "SMs"
    # (that put the CPU-method run's 7x7 depthwise samples 560-3,950x too slow). Depthwise 7x7, x = [16, 64, 32, 32]
    # fp32 on a CPU with 0.0828 TFLOP/s and 25.76 GB/s, one "SM":
    #   FLOPs = 2 x 16 x 64 x 32 x 32 x 49 = 102,760,448; outputs 1,048,576 = 512 full waves of 2048 (wave
    #   efficiency 1) x EFF_MAX['conv_direct'] 0.5 -> eff 0.5
    #   compute = 102,760,448 / (0.0828e12 x 0.5) = 2482.14 us; memory (8,401,152 B at ~0.755 x 25.76 GB/s) 431.8 us
    #   power: 10 W idle + ~0.2 W DRAM + 12 W x 0.848 core activity = 20.4 W < 22 W, no throttling
    #   time = 2482.14 + 4 us gap
    cpu = gpu("cpu-test", name="CPU", vendor="cpu", arch="x86_64", peak_tflops={"fp32": 0.0828}, memory_gb=25,
              memory_bw_gbs=25.76, sm_count=1, boost_mhz=0.0, tdp_w=22, idle_w=10)
    c = costs.conv((16, 64, 32, 32), (64, 1, 7, 7), "float32", padding=3, groups=64)
    r = dataclasses.replace(rec_from(c, op="aten.convolution.default"), shapes=((16, 64, 32, 32), (64, 1, 7, 7)))
    assert r.flops == 102_760_448 and r.bytes == 8_401_152
    assert prior.native_depthwise(r) == "generic"  # a 7x7 filter: PyTorch's looped kernel on a CUDA GPU
    p = prior.op_prior(r, cpu, "fp32")
    assert p.kernel == "direct_conv" and p.bound == "compute" and p.clock_scale == 1.0
    assert p.time_s == pytest.approx(2482.14e-6 + 4e-6, rel=1e-5)
    # the same record on a GPU with a clock keeps the per-SM-clock native-kernel price (not the direct one)
    h100 = db("h100-sxm5-80gb")
    assert prior.op_prior(r, h100, "fp32").eff_c != pytest.approx(0.5, rel=1e-3)


def test_large_convolution_reaches_two_thirds_of_tensor_peak():
    # 3x3 conv 256 -> 256 channels at 14x14, batch 256, bf16, A100 SXM4: implicit GEMM m = 256 x 196 = 50,176,
    # n = 256, k = 2,304. Best tile 256x128: ceil(50176/256) x 2 = 392 tiles on 108 SMs = 3.63 waves -> 3.63/4 =
    # 0.907, full tile fill; depth 2304 / (2304 + 48) = 0.9796; eff = 0.80 x 0.907 x 0.9796 = 0.711 >= 0.66.
    # Power at boost: idle 60 + DRAM 6.15 W (3.9 pJ x 8 x 52,559,872 B / 266.8 us) + core 340 W x g / g_ref with
    # g = fill 0.9075 x 0.54 + 0.46 x 1.5 (tensor-core math) x 0.711 = 0.98064, g_ref = 0.54 + 0.46 x 0.8 = 0.908:
    # 367.2 W -> 433.4 W > 400 W: the clock drops to s = ((400 - 60 - 6.15) / 367.2)^(1/3) = 0.9688, and the
    # achieved fraction of peak is 0.711 x 0.9688 = 0.689 (0.68 with the 4 us gap) >= 0.66.
    # Channels-last input (the ('nhwc', 1) dim): no layout transposes (tests/test_prior_depthwise.py prices them).
    import dataclasses

    g = db("a100-sxm4-80gb")
    c = costs.conv((256, 256, 14, 14), (256, 256, 3, 3), "bfloat16", padding=1)
    r = rec_from(c, "bfloat16", op="aten.convolution.default")
    r = dataclasses.replace(r, dims=tuple(sorted(r.dims + (("nhwc", 1),))))
    p = prior.op_prior(r, g, "bf16")
    assert p.clock_scale == pytest.approx(((400 - 60 - 6.147) / (340 * 0.98064 / 0.908)) ** (1 / 3), rel=1e-3)
    assert p.eff_c == pytest.approx(0.80 * (392 / 108 / 4) * 2304 / 2352 * 0.9688, rel=1e-3)
    assert p.layout_s == 0.0
    achieved = r.flops / p.time_s / g.peak("bf16")
    assert 0.66 <= achieved <= 0.80


def test_tf32_and_default_differ_on_geforce_ampere():
    # RTX 3090 (GA102): TF32 tensor peak = FP32 CUDA-core peak = 35.6 TFLOP/s, but FP32 SGEMM on GA10x reaches only
    # 0.70 of what single-issue SMs reach (half the FP32 lanes are shared with INT32): ceiling 0.88 x 0.70 = 0.616
    # vs 0.80 on tensor cores. Same tiles; depth k/(k+8) on CUDA cores vs k/(k+48) on tensor cores (k = 4096):
    # time(default) / time(tf32) = (0.80 x 4096/4144) / (0.616 x 4096/4104) = 0.7907 / 0.6148 = 1.286 at full clock.
    # The 3090 is its own power reference ((350 - 88 idle) W / (82 SMs x 1.695 GHz) = 1.885 W per SM-GHz, above
    # the GA10x workstation reference 1.539: 262 W of core power at boost for a CUDA-core-equivalent GEMM), but TF32
    # tensor-core math weighs TENSOR_MATH_POWER = 1.5: g = fill 0.9606 x 0.54 + 0.46 x 1.5 x u 0.7292 = 1.02187
    # over g_ref 0.908 -> 294.9 W > 350 - 88 - 2.3 (GDDR6X) = 259.7 W, s = (259.7 / 294.9)^(1/3) = 0.9585, while
    # the SIMT GEMM stays at full clock: ratio 1.286 x 0.9585 = 1.233. A GeForce board then runs tensor-core GEMMs
    # 1.32x and CUDA-core GEMMs 1.14x faster than that (CONSUMER_GEMM_ROOF): 1.233 x 1.32 / 1.14 = 1.427.
    g = db("rtx3090-24gb")
    r = rec_from(costs.gemm(1, 4096, 4096, 4096, "float32"))
    d, t = prior.op_prior(r, g, "default"), prior.op_prior(r, g, "tf32")
    assert d.compute_dtype == "fp32" and t.compute_dtype == "tf32"
    assert (d.time_s - prior.GAP_S) / (t.time_s - prior.GAP_S) == pytest.approx(
        (0.80 * 4096 / 4144) / (0.88 * 0.70 * 4096 / 4104) * t.clock_scale / d.clock_scale * 1.32 / 1.14, rel=1e-3)
    assert d.clock_scale == 1.0 and t.clock_scale == pytest.approx(0.9585, abs=1e-3)
    assert d.time_s > 1.4 * t.time_s


def test_power_capped_gemm_on_a_150w_a10_throttles():
    # A10: 72 SMs at 1695 MHz, 150 W, in-job idle 0.25 x 150 = 37.5 -> 38 W (GDDR rule). The GA10x generation's
    # data-centre/workstation reference is the board with the most W per SM-GHz above idle: the A40 ((300 - 75) W /
    # (84 SMs x 1.74 GHz) = 1.5394; the RTX A6000 has (300 - 75) / (84 x 1.8) = 1.488), so a dense GEMM at boost would
    # need P_core_ref = 1.5394 x 72 x 1.695 = 187.87 W of core power on top of idle. The GEMM (eff 0.780, 28.44 waves
    # on 72 SMs: fill 0.9808) has g = 0.9808 x 0.54 + 0.46 x 1.5 (tensor-core math) x 0.780 = 1.0678 over g_ref
    # 0.908: P_core = 187.87 x 1.1760 = 220.9 W, 261 W > 150 W. The clock settles where P_core x s^3 = 150 - 38 - P_mem
    # (2.14 W of GDDR6): s = (109.86 / 220.9)^(1/3) = 0.792.
    g = db("a10-24gb")
    assert g.idle_w == 38
    assert prior.core_power_ref(g) == pytest.approx(225 / (84 * 1.74) * 72 * 1.695, rel=1e-3)
    r = rec_from(costs.gemm(1, 8192, 8192, 8192, "bfloat16"), "bfloat16")
    p = prior.op_prior(r, g, "bf16")
    assert p.clock_scale == pytest.approx((109.857 / (187.869 * 1.06783 / 0.908)) ** (1 / 3), rel=1e-3)
    assert 0.77 < p.clock_scale < 0.80
    unthrottled = prior.compute_efficiency(r, g, "bf16", True)[0]
    assert p.compute_s == pytest.approx(r.flops / (g.peak("bf16") * unthrottled) / p.clock_scale, rel=1e-9)
    assert p.power_w == pytest.approx(g.tdp_w, rel=0.01)  # the cap binds (gap at idle aside)
    assert r.flops / p.time_s < 0.7 * g.peak("bf16")  # a 150 W A10 does not sustain its 125 TFLOP/s peak
    # the same GEMM on the 300 W A40 (same chip, twice the limit for 84 SMs at 1.74 GHz) throttles far less:
    # P_core = 1.5394 x 84 x 1.74 = 225.0 W x (0.9752 x 0.54 + 0.46 x 1.5 x 0.7757) / 0.908 = 263.1 W, room
    # 300 - 75 - 2.55 = 222.45 W: s = (222.45 / 263.1)^(1/3) = 0.9456
    assert prior.op_prior(r, db("a40-48gb"), "bf16").clock_scale == pytest.approx(0.9456, abs=1e-3)


def test_busy_gpu_average_power_is_near_the_limit():
    # A BERT-like step on a V100 PCIe (250 W, idle 35 W): GEMMs run at the power limit (the V100 SXM2 sets the GV100
    # reference: (300 - 45) / (80 x 1.53) W per SM-GHz -> 230 W of core power at the PCIe card's 1.38 GHz, > 215 W
    # of room: the cap binds), streaming kernels draw idle + DRAM (bytes/s x 8 x 3.9 pJ ~ 24 W) + core
    # 230 x (A_BUSY + (1 - A_BUSY) u) / (A_BUSY + (1 - A_BUSY) 0.8) W (~0.84 x 250 W with A_BUSY = 0.6).
    # Time-weighted over 70 % GEMM / 30 % streaming time the step averages above 0.85 x 250 W; the old linear
    # activity model put it at 0.83 (GEMMs at 220 W, streaming at 178 W: no op ever reached the limit).
    g = db("v100-pcie-16gb")
    gemm = rec_from(costs.gemm(1, 4096, 3072, 768, "float32"))
    ew = rec_from(costs.elementwise("gelu", [(32, 384, 3072)], (32, 384, 3072), "float32"), op="aten.gelu.default")
    pg, pe = prior.op_prior(gemm, g, "fp32"), prior.op_prior(ew, g, "fp32")
    assert pg.power_w == pytest.approx(g.tdp_w, rel=0.03)
    busy = pe.time_s - prior.GAP_S
    mem_w = 3.9e-12 * 8 * ew.bytes / busy  # ~23.8 W: 0.85 x 900 GB/s less the ramp of a 300 MB kernel
    u = ew.flops / busy / 14e12  # GELU's arithmetic: ~0.1 of the FP32 peak
    a = prior.A_BUSY
    waves = 32 * 384 * 3072 / (80 * 2048)  # one thread per element, 2048 per SM: 230.4 waves -> 230.4/231 busy
    core_w = (255 / (80 * 1.53)) * 80 * 1.38 * (waves / 231 * a + (1 - a) * u) / (a + (1 - a) * 0.8)
    assert pe.power_w == pytest.approx(((35 + mem_w + core_w) * busy + 35 * prior.GAP_S) / pe.time_s, rel=1e-3)
    n_g = max(1, round(0.7 / pg.time_s))
    n_e = max(1, round(0.3 / pe.time_s))
    avg = (n_g * pg.energy_j + n_e * pe.energy_j) / (n_g * pg.time_s + n_e * pe.time_s)
    assert 0.85 * g.tdp_w < avg <= g.tdp_w


def test_memory_type_chip_group_and_reference_boards():
    assert prior.memory_kind(db("a100-sxm4-80gb")) == "hbm"
    # the database's memory_type where the chip code cannot tell it (GA102 carries GDDR6X on the RTX 3090, GDDR6 on
    # the A10 / A40 / RTX A6000)
    assert prior.memory_kind(db("rtx3090-24gb")) == "gddr6x"
    assert prior.memory_kind(db("a10-24gb")) == prior.memory_kind(db("rtx-a6000-48gb")) == "gddr6"
    assert prior.memory_kind(db("tesla-p40-24gb")) == "gddr5"
    # B200 / GB200 / B100 carry HBM3e (arch string 'Blackwell (GB100, 2 dies)'), Gaudi 3 HBM2e; RTX 5090 GDDR7
    for key in ("b200-sxm-180gb", "gb200-186gb", "b100-sxm-192gb", "gaudi3-128gb"):
        assert prior.memory_kind(db(key)) == "hbm", key
    assert prior.memory_kind(db("rtx5090-32gb")) == "gddr7"
    assert prior.chip_group(db("b200-sxm-180gb")) == "GB100" and not prior.dual_fp32(db("b200-sxm-180gb"))
    assert prior.chip_group(db("a10-24gb")) == prior.chip_group(db("a40-48gb")) == "GA10x"
    assert prior.chip_group(db("a100-pcie-40gb")) == "GA100"
    assert prior.dual_fp32(db("rtx4090-24gb")) and not prior.dual_fp32(db("a100-sxm4-80gb"))
    # GeForce boards never set a generation's reference (their opportunistic boost runs above the rated clock)
    assert prior.consumer(db("rtx3080-10gb")) and not prior.consumer(db("rtx-a6000-48gb"))


def test_optimizer_foreach_vs_fused_passes_and_bytes():
    torch = pytest.importorskip("torch")
    from wattlint.frontends.torch import trace

    # AdamW, fp32: torch's _multi_tensor_adamw (the CUDA default) = mul_, lerp_, mul_, addcmul_, sqrt, div_, add_,
    # addcdiv_ = 8 kernels reading 1+2+1+3+1+1+1+3 = 13 and writing 8 tensors: 21 x 4 = 84 B per parameter;
    # fused=True (_fused_adamw_) = one kernel reading param, grad, exp_avg, exp_avg_sq and writing 3: 28 B.
    def step(impl):
        m = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 256))
        g = trace(m, (torch.randn(8, 256),), optimizer="adamw", optimizer_impl=impl)
        return g, [r for r in g.records if r.phase is Phase.OPTIMIZER], sum(p.numel() for p in m.parameters())

    g_f, opt_f, n = step("foreach")
    g_u, opt_u, _ = step("fused")
    assert len(opt_f) == 8 and sum(r.bytes for r in opt_f) == 84 * n
    assert len(opt_u) == 1 and sum(r.bytes for r in opt_u) == 28 * n
    assert g_f.extra["optimizer_impl"] == "foreach" and g_u.extra["optimizer_impl"] == "fused"
    # priced as bandwidth-bound streaming on an H100 at the 7B scale (6.74e9 params): 84/28 = 3x the time
    big = 6_738_415_616
    h = db("h100-sxm5-80gb")
    t_f = sum(prior.op_prior(OpRecord(op="f", kind=OpKind.OPTIMIZER, module="", phase=Phase.OPTIMIZER,
                                      dtype="float32", flops=0, bytes_read=r * big * 4, bytes_written=w * big * 4), h
                             ).time_s for _, r, w in costs.OPTIMIZER_FOREACH_PASSES["adamw"])
    t_u = prior.op_prior(OpRecord(op="u", kind=OpKind.OPTIMIZER, module="", phase=Phase.OPTIMIZER, dtype="float32",
                                  flops=0, bytes_read=16 * big, bytes_written=12 * big), h).time_s
    assert t_f / t_u == pytest.approx(3.0, rel=0.01)
    assert t_u == pytest.approx(28 * big / (3350e9 * 0.85), rel=0.01)  # ~66 ms per step on one H100


def test_adadelta_and_the_for_loop_optimizer():
    torch = pytest.importorskip("torch")
    from wattlint.frontends.torch import trace
    from wattlint.types import InputError

    # Adadelta (torch _multi_tensor_adadelta), fp32: mul_, addcmul_, add, sqrt_, add, sqrt_, div_, mul_, mul_,
    # addcmul_, add_ = 11 kernels reading 1+3+1+1+1+1+2+2+1+3+2 = 18 and writing 11 tensors: 29 x 4 = 116 B per
    # parameter. for-loop (foreach=False, PyTorch 1.x's default): the same 11 ops once per parameter tensor.
    def step(impl):
        m = torch.nn.Sequential(torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        g = trace(m, (torch.randn(8, 256),), optimizer="adadelta", optimizer_impl=impl)
        return g, [r for r in g.records if r.phase is Phase.OPTIMIZER]

    n = 256 * 128 + 128 + 128 * 10 + 10  # 34,186 parameters in 4 tensors
    g_f, opt_f = step("foreach")
    g_l, opt_l = step("for-loop")
    assert len(opt_f) == 11 and sum(r.bytes for r in opt_f) == 116 * n
    assert len(opt_l) == 11 * 4 and sum(r.bytes for r in opt_l) == 116 * n
    assert g_l.extra["optimizer_impl"] == "for-loop"
    assert any("foreach=False" in a and "4 tensors" in a for a in g_l.assumptions)
    # the ONNX frontend's synthesized passes move the same bytes
    assert sum(c.bytes_read + c.bytes_written for c in costs.optimizer_foreach("adadelta", n)) == 116 * n
    assert costs.optimizer_state_elems("adadelta", n) == 2 * n  # square_avg, acc_delta
    with pytest.raises(InputError, match="no fused Adadelta"):
        step("fused")


def test_host_power_by_platform_class():
    from wattlint.energy import host

    h100, a100p, r3090 = db("h100-sxm5-80gb"), db("a100-pcie-80gb"), db("rtx3090-24gb")
    assert host.platform_class(h100) == "sxm_node"
    assert host.platform_class(a100p) == "pcie_server"
    assert host.platform_class(r3090) == "desktop"
    assert host.platform_class(db("l4-24gb")) == "pcie_server"
    # SXM: 0.41 x 700 = 287 W + PSU loss (1/0.94 - 1) x (700 + 287) = 63.0 W -> 350 W per GPU (Latif et al.: an
    # 8 x H100 node peaks at 8.4 kW with 5.6 kW of GPUs: 2.8 kW / 8 = 350 W)
    w, text = host.host_power_w_per_gpu(h100, 8)
    assert w == pytest.approx(350.0, abs=0.5) and "Latif" in text
    # PCIe server, 8 x 300 W cards: 450 / 8 = 56.25 W + (1/0.94 - 1) x (300 + 56.25) = 22.74 W -> 79.0 W
    assert host.host_power_w_per_gpu(a100p, 8)[0] == pytest.approx(79.0, abs=0.1)
    # the same server with 2 cards: 225 + 0.0638 x 525 = 258.5 W per GPU
    assert host.host_power_w_per_gpu(a100p, 2)[0] == pytest.approx(258.5, abs=0.2)
    # desktop, one 350 W card: 120 + (1/0.90 - 1) x (350 + 120) = 172.2 W
    assert host.host_power_w_per_gpu(r3090, 1)[0] == pytest.approx(172.2, abs=0.1)
    with pytest.raises(ValueError):
        host.host_power_w_per_gpu(h100, 8, platform="laptop")


def test_onnx_folded_batchnorm_gets_training_batchnorm_synthesized():
    pytest.importorskip("onnx")
    from wattlint.frontends.onnx import analyze_onnx
    from tests.conftest import EXAMPLES

    g = analyze_onnx(EXAMPLES / "resnet50.onnx")  # eval-mode export: every BatchNorm folded into its conv
    assert g.extra["folded_batchnorm"]
    fwd = [r for r in g.records if r.phase is Phase.FORWARD]
    bwd = [r for r in g.records if r.phase is Phase.BACKWARD]
    bn_f = [i for i, r in enumerate(fwd) if r.op == "synth::BatchNormalization"]
    bn_b = [i for i, r in enumerate(bwd) if r.op == "synth::BatchNormalization"]
    assert len(bn_f) == len(bn_b) == 53  # one per convolution of ResNet-50
    # right after its conv, same module; the stem: conv1 output [32, 64, 112, 112] = 25,690,112 elements:
    # forward reads x twice (statistics, normalize) + gamma and beta: 2 x 25,690,112 x 4 + 2 x 64 x 4 = 205,521,408 B,
    # writes y + fp32 mean/rstd: 102,760,448 + 512 = 102,760,960 B
    first = fwd[bn_f[0]]
    assert fwd[bn_f[0] - 1].op == "onnx::Conv" and fwd[bn_f[0] - 1].module == first.module == "conv1"
    assert (first.bytes_read, first.bytes_written) == (205_521_408, 102_760_960)
    # backward: BatchNorm's gradient comes before its conv's
    last = bwd[bn_b[-1]]
    assert last.module == "conv1" and bwd[bn_b[-1] + 1].op == "onnx::Conv"
    assert any("synthesized after 53 folded convolutions" in a for a in g.assumptions)


def test_wl203_never_recommends_a_slower_gpu_and_explains_its_saving():
    pytest.importorskip("onnx")
    import wattlint
    from tests.conftest import EXAMPLES

    # ResNet-50 mixed precision on an RTX 3090: public benchmarks put the 150 W A10 ~30 % slower (Lambda: 638 vs
    # 905 images/s); the prior now agrees (A10: 600 GB/s and power-capped tensor cores), so WL203 must not offer it.
    kw = dict(epochs=1, precision="fp16", batch_size=256)
    src = str(EXAMPLES / "resnet50.onnx")
    e3090 = wattlint.estimate(src, gpu="rtx3090", **kw)
    ea10 = wattlint.estimate(src, gpu="a10-24gb", **kw)
    assert ea10.total.time_h > 1.15 * e3090.total.time_h
    wl = [f for f in e3090.findings if f.code == "WL203"]
    assert not any("a10-24gb" in f.message for f in wl)
    for f in wl:  # whatever it offers is no slower and says why it saves: time ratio x average power
        assert "average GPU power" in f.message and " x the time" in f.message
        ratio = float(f.message.split(" over ")[1].split(" x the time")[0])
        assert ratio <= 1.0


def test_wl203_compares_energies_and_times_in_one_unit():
    # the tiny example MLP on an A100 at micro-batch 512, 20 epochs (examples/project): WL203 offers a smaller GPU whose energy is a few hundred J
    # and the A100's ~0.2 Wh; "328 J instead of 0.206 Wh" hides a 2.3x ratio, so both sides share one unit
    pytest.importorskip("torch")
    import re
    import wattlint

    import torch.nn as nn

    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                        nn.Linear(256, 10))
    est = wattlint.estimate(mlp, gpu="a100-sxm4-80gb", inputs=["x=float32[512,784]"], batch_size=512, epochs=20,
                            dataset_size=60_000)
    wl = [f for f in est.findings if f.code == "WL203"]
    assert wl
    for f in wl:
        m = re.search(r"trains it with [\d.,]+ (\S+) instead of [\d.,]+ (\S+) on .*, in [\d.,]+ (\S+) instead of "
                      r"[\d.,]+ (\S+?)[:,]", f.message)
        assert m, f.message
        assert m.group(1) == m.group(2) and m.group(3) == m.group(4), f.message
        # the offer leaves an SXM node (A100 SXM4: NVLink baseboard) for a PCIe server. Since 2026-12-07 the saving
        # is the literal --gpu switch (the candidate on its own platform); this machine's host power per hour gives
        # the separate same-host figure
        assert "(its platform class pcie_server, not sxm_node)" in f.message, f.message
        key = re.search(r"\((\S+), \d+ W\) trains it", f.message).group(1)
        other = wattlint.estimate(mlp, gpu=key, inputs=["x=float32[512,784]"], batch_size=512, epochs=20,
                                  dataset_size=60_000, lint=False)
        t0, t1 = est.total, other.total
        assert f.saving_kwh == pytest.approx(t0.energy_kwh - t1.energy_kwh, rel=0.02)  # findings keep 2 digits
        # the same-host figure beside it: the candidate's GPU energy with this machine's host power per hour, x PUE
        pue = t0.energy_kwh / (t0.gpu_energy_kwh + t0.host_energy_kwh)
        same_host = (t1.gpu_energy_kwh + t0.host_energy_kwh / t0.time_h * t1.time_h) * pue
        shown = re.search(r"in this machine \(host and PUE as planned\) the L20 48GB would take ([\d.]+) Wh", f.message)
        assert shown and float(shown.group(1)) == pytest.approx(same_host * 1000, rel=0.01), (same_host, f.message)


def test_geforce_gemm_roof_speeds_the_gemm_not_its_power():
    # An 8192^3 fp16 GEMM on the RTX 3090 against the same board not sold as GeForce (name changed only): the power
    # model, the clock scale and the efficiency are the same, the compute time is 1.32x shorter (CONSUMER_GEMM_ROOF
    # "tensor"); the board draws its limit in both (the power limit binds: s < 1).
    import dataclasses

    g = db("rtx3090-24gb")
    pro = dataclasses.replace(g, name="RTX 3090 as a workstation board")
    assert prior.consumer(g) and not prior.consumer(pro)
    r = rec_from(costs.gemm(1, 8192, 8192, 8192, "float16"), dtype="float16")
    a, b = prior.op_prior(r, g, "fp16"), prior.op_prior(r, pro, "fp16")
    assert a.clock_scale == b.clock_scale < 1.0
    assert (b.time_s - prior.GAP_S) / (a.time_s - prior.GAP_S) == pytest.approx(1.32, rel=1e-6)
    assert a.eff_c == pytest.approx(1.32 * b.eff_c, rel=1e-6)
    assert a.power_w == pytest.approx(g.tdp_w, rel=0.01) and b.power_w == pytest.approx(g.tdp_w, rel=0.01)
    # unthrottled (a 448^3 fp16 GEMM: s = 1, compute-bound, below the limit on both): the same dynamic core energy
    # in 1.32x less time -> core power x 1.32 (DRAM power also x 1.32: the same bytes), so busy power - idle is
    # 1.32x the workstation board's (~216 W -> ~164 W above the 88 W idle)
    small = rec_from(costs.gemm(1, 448, 448, 448, "float16"), dtype="float16")
    a, b = prior.op_prior(small, g, "fp16"), prior.op_prior(small, pro, "fp16")
    assert a.clock_scale == b.clock_scale == 1.0 and a.bound == b.bound == "compute"
    busy_a, busy_b = a.time_s - prior.GAP_S, b.time_s - prior.GAP_S
    assert busy_b / busy_a == pytest.approx(1.32, rel=1e-6)
    pa = (a.energy_j - g.idle_w * prior.GAP_S) / busy_a - g.idle_w
    pb = (b.energy_j - g.idle_w * prior.GAP_S) / busy_b - g.idle_w
    assert pa == pytest.approx(1.32 * pb, rel=1e-6) and pa + g.idle_w < g.tdp_w
    # Turing / Maxwell GeForce boards: no CUDA-core roof (fitted on dual-FP32 chips only)
    assert prior.consumer_gemm_roof(db("rtx2080ti-11gb"), False) == prior.consumer_gemm_roof(db("gtx750ti-2gb"), False) == 1.0
    assert prior.consumer_gemm_roof(db("rtx2080ti-11gb"), True) == 1.32
    # CUDA-core GEMMs get the "simt" roof: FP32 without TF32
    r32 = rec_from(costs.gemm(1, 8192, 8192, 8192, "float32"))
    a, b = prior.op_prior(r32, g, "fp32"), prior.op_prior(r32, pro, "fp32")
    assert (b.time_s - prior.GAP_S) / (a.time_s - prior.GAP_S) == pytest.approx(1.14, rel=1e-6)
    # elementwise kernels are not GEMMs: no roof
    e = rec_from(costs.elementwise("relu", [(64, 1024, 1024)], (64, 1024, 1024), "float32"),
                 op="aten.relu.default")
    assert e.kind is OpKind.ELEMENTWISE
    assert prior.op_prior(e, g).time_s == prior.op_prior(e, pro).time_s


def test_gddr6x_streaming_bandwidth():
    # relu over 64 Mi fp32 elements (256 MiB read + 256 MiB written) on an RTX 3090 (GDDR6X, 936 GB/s): the
    # achievable fraction is 0.87 (GDDR6X copy measurements) x n / (n + 936e9 x 2e-6) with n = 536,870,912 bytes
    # = 0.86697; time = n / (936e9 x 0.86697) + 4 us = 661.58 us + 4 us. On the A10 (GDDR6, 600 GB/s): 0.76 x
    # n / (n + 1.2e6) = 0.75830, n / (600e9 x 0.75830) = 1180.0 us + 4 us.
    e = rec_from(costs.elementwise("relu", [(64, 1024, 1024)], (64, 1024, 1024), "float32"),
                 op="aten.relu.default")
    assert e.kind is OpKind.ELEMENTWISE
    assert e.bytes == 536_870_912
    p = prior.op_prior(e, db("rtx3090-24gb"))
    assert p.bound == "memory" and p.eff_m == pytest.approx(0.86697, rel=1e-4)
    assert p.time_s == pytest.approx(661.58e-6 + 4e-6, rel=1e-4)
    q = prior.op_prior(e, db("a10-24gb"))
    assert q.eff_m == pytest.approx(0.75830, rel=1e-4)
    assert q.time_s == pytest.approx(1180.0e-6 + 4e-6, rel=1e-4)


def test_pascal_hbm2_streams_below_the_other_hbm_parts():
    # The same 512 MiB relu on a P100 (GP100, HBM2, 732 GB/s): NeuSight's P100 elementwise kernels >= 200 MB stream
    # at 510-535 GB/s (0.73 of spec), so eff = 0.73 x n / (n + 732e9 x 2e-6) = 0.73 x 536870912 / 538334912
    # = 0.728015 and time = n / (732e9 x 0.728015) + 4 us = 1007.44 + 4 us. A V100 (HBM2, 900 GB/s) keeps the HBM
    # value: 0.85 x n / (n + 1.8e6) = 0.847160, n / (900e9 x 0.847160) = 704.14 + 4 us.
    e = rec_from(costs.elementwise("relu", [(64, 1024, 1024)], (64, 1024, 1024), "float32"),
                 op="aten.relu.default")
    p = prior.op_prior(e, db("p100-pcie-16gb"))
    assert prior.chip_group(db("p100-pcie-16gb")) == "GP100" and prior.memory_kind(db("p100-pcie-16gb")) == "hbm"
    assert p.eff_m == pytest.approx(0.728015, rel=1e-5)
    assert p.time_s == pytest.approx(1007.44e-6 + 4e-6, rel=1e-5)
    q = prior.op_prior(e, db("v100-pcie-16gb"))
    assert q.eff_m == pytest.approx(0.847160, rel=1e-5)
    assert q.time_s == pytest.approx(704.14e-6 + 4e-6, rel=1e-5)


def test_geforce_roof_assumption_lines():
    from wattlint.energy.pricing import roof_notes

    n = roof_notes(db("rtx3090-24gb"), None)
    assert len(n) == 2 and "1.32x on tensor cores" in n[0] and "1.14x on CUDA cores" in n[0]
    # a GeForce board without tensor cores and dual-FP32 SMs (Maxwell GTX 750 Ti): no roof at all, no line;
    # Turing (RTX 2080 Ti): tensor cores only
    assert roof_notes(db("gtx750ti-2gb"), None) == ()
    t = roof_notes(db("rtx2080ti-11gb"), None)
    assert len(t) == 1 and "tensor cores" in t[0] and "CUDA cores" not in t[0]
    assert n[1].startswith("GDDR6X memory") and "0.87 of the 936 GB/s" in n[1]
    # a what-if utilization replaces the efficiencies (and the roof): only the memory line stays
    assert roof_notes(db("rtx3090-24gb"), 0.5) == (n[1],)
    assert roof_notes(db("rtx5090-32gb"), None)[1].startswith("GDDR7 memory")
    assert roof_notes(db("a100-sxm4-80gb"), None) == roof_notes(db("rtx-a6000-48gb"), None) == ()
