"""Convolution / GEMM time rules fitted or checked on the H200 op samples (calibration/runs/h200-sxm-141gb): unaligned
input channels on CUDA cores, channels-last depthwise on cuDNN, Hopper's unaligned-GEMM penalty.

Expected values are derived by hand in the comments from the database's H200 SXM spec (132 SMs, 1980 MHz boost,
bf16 989.4 / tf32 494.7 / fp32 66.9 TFLOP/s dense, 4800 GB/s) and the prior's constants."""

from __future__ import annotations

import dataclasses

import pytest

from wattlint import costs
from wattlint.energy import prior
from wattlint.hardware import resolve_gpu
from wattlint.types import OpRecord, Phase


def h200():
    return resolve_gpu("h200-sxm-141gb")[0]


def conv_rec(x, w, dtype="bfloat16", phase=Phase.FORWARD, **kw):
    c = costs.conv(x, w, dtype, **kw)
    return OpRecord(op="aten.convolution.default", kind=c.kind, module="c", phase=phase, dtype=dtype, flops=c.flops,
                    bytes_read=c.bytes_read, bytes_written=c.bytes_written, dims=c.dims, shapes=(tuple(x), tuple(w)))


def test_unaligned_input_channels_run_on_cuda_cores():
    # ResNet stem: x = [64, 3, 224, 224], w = [64, 3, 7, 7], stride 2, padding 3, bf16 autocast, H200.
    #   3 input channels: not a multiple of 8 -> no tensor cores: FP32 CUDA-core peak 66.9 TFLOP/s
    #   GEMM view m = 64 x 112 x 112 = 802,816, n = 64, k = 147; best tile 128x64: 6272 tiles / 132 = 47.515 waves
    #     -> / 48 = 0.989899 x 0.88 = 0.871111 (256x128 and 128x128 waste half of each tile on n = 64)
    #   eff_c = 0.85 (conv_simt) x 0.44 (UNALIGNED_CONV_SIMT) x 0.871111 x 147 / (147 + 8) = 0.308990
    #   flops = 2 x 802,816 x 64 x 147 = 15,105,785,856 -> 15,105,785,856 / (66.9e12 x 0.308990) = 730.75 us
    #   + 4 us gap = 734.75 us (H200 measured 637 us bf16, 620 us tf32; before: 108.8 us in bf16 on tensor cores
    #   with layout transposes)
    g = h200()
    r = conv_rec((64, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3)
    assert r.flops == 15_105_785_856
    assert not prior.channels_aligned(r, "bf16") and prior.unaligned_tc_fallback(r, g, "bf16")
    assert not prior.uses_tensor_cores(r, g, "bf16")
    p = prior.op_prior(r, g, "bf16")
    assert p.layout_s == 0.0 and p.bound == "compute"
    assert p.eff_c == pytest.approx(0.85 * 0.44 * 0.871111 * 147 / 155, rel=1e-5)
    assert p.time_s == pytest.approx(730.75e-6 + prior.GAP_S, rel=1e-4)
    # FP32 (TF32 off): on CUDA cores anyway, not re-priced: 0.85 x 0.871111 x 147 / 155 = 0.702250
    #   -> 15,105,785,856 / (66.9e12 x 0.702250) = 321.53 us
    f32 = dataclasses.replace(r, dtype="float32", bytes_read=2 * r.bytes_read, bytes_written=2 * r.bytes_written)
    assert not prior.unaligned_tc_fallback(f32, g, "fp32")
    #   this busy FP32 kernel draws over the 700 W limit (measured idle 124 W), so the power cap slows the clock
    #   (clock_scale, tested by hand in test_prior_power.py); the conv rule itself is the unscaled figure
    p32 = prior.op_prior(f32, g, "fp32")
    assert 0.98 < p32.clock_scale < 1.0
    assert p32.eff_c == pytest.approx(0.702250 * p32.clock_scale, rel=1e-4)
    assert p32.compute_s == pytest.approx(321.53e-6 / p32.clock_scale, rel=1e-4)
    # a GPU without tensor cores (P100) is not re-priced either, fp16 included
    p100 = resolve_gpu("p100-pcie-16gb")[0]
    assert not prior.unaligned_tc_fallback(dataclasses.replace(r, dtype="float16"), p100, "fp16")


def test_aligned_channels_keep_tensor_cores():
    g = h200()
    # 4 channels: aligned for tf32 (4 x 4 B = one 16-byte vector), not for bf16 (8 x 2 B)
    r4 = conv_rec((64, 4, 224, 224), (64, 4, 7, 7), "float32", stride=2, padding=3)
    assert prior.channels_aligned(r4, "tf32") and prior.uses_tensor_cores(r4, g, "tf32")
    assert not prior.channels_aligned(r4, "bf16")
    # 8 channels in bf16: tensor cores, no unaligned factor
    r8 = conv_rec((64, 8, 224, 224), (64, 8, 7, 7), stride=2, padding=3)
    assert prior.channels_aligned(r8, "bf16") and prior.uses_tensor_cores(r8, g, "bf16")
    # grouped convolutions are not re-priced (no sample): 4 channels per group stay on the old path
    grp = conv_rec((64, 128, 56, 56), (128, 4, 3, 3), padding=1, groups=32)
    assert prior.channels_aligned(grp, "bf16")


def test_channels_last_depthwise_runs_cudnn_not_pytorchs_kernels():
    # PyTorch's use_cudnn_depthwise: "always use cudnn_depthwise for channels_last format" (Convolution.cpp), so
    # a ('nhwc', 1) depthwise record is not one of PyTorch's native kernels; it is priced as the cuDNN direct kernel
    # (conv_direct x partial wave), as fp16 NCHW depthwise convs that reach cuDNN are.
    g = h200()
    c = costs.conv((64, 96, 56, 56), (96, 1, 7, 7), "bfloat16", padding=3, groups=96)
    nchw = OpRecord(op="aten.convolution.default", kind=c.kind, module="dw", phase=Phase.FORWARD, dtype="bfloat16",
                    flops=c.flops, bytes_read=c.bytes_read, bytes_written=c.bytes_written, dims=c.dims,
                    shapes=((64, 96, 56, 56), (96, 1, 7, 7)))
    nhwc = dataclasses.replace(nchw, dims=tuple(sorted(nchw.dims + (("nhwc", 1),))))
    assert prior.native_depthwise(nchw) == "generic"
    assert prior.native_depthwise(nhwc) == ""
    # NCHW bf16 (native): 64 x 96 x 3136 = 19,267,584 outputs x (1.4 + 49 / 6.6 = 8.824242 SM clocks)
    #   = 170,021,094 SM clocks / (132 x 1.98e9) = 650.53 us; 19,267,584 / (132 x 2048) = 71.27 waves -> / (71.27 / 72)
    #   = 657.19 us + 4 us gap = 661.19 us (H200 measured 667.2 us bf16, 636.9 us fp32)
    pn = prior.op_prior(nchw, g, "bf16")
    assert pn.time_s == pytest.approx(19_267_584 * (1.4 + 49 / 6.6) / (132 * 1.98e9) / (
        19_267_584 / (132 * 2048) / 72) + prior.GAP_S, rel=1e-6)
    assert pn.time_s == pytest.approx(661.19e-6, rel=1e-4)
    # channels-last: conv_direct 0.50 x FP32 peak x partial wave (the direct path counts 4-byte elements of the
    #   output: 38,535,168 B / 4 = 9,633,792 / (132 x 2048) = 35.636 waves -> / 36 = 0.989899)
    #   -> 1,888,223,232 flops / (66.9e12 x 0.5 x 0.989899) = 57.02 us; not the native rate
    ph = prior.op_prior(nhwc, g, "bf16")
    assert ph.kernel == "direct_conv"
    assert c.flops == 1_888_223_232
    assert ph.compute_s == pytest.approx(1_888_223_232 / (66.9e12 * 0.5 * (9_633_792 / 270_336 / 36)), rel=1e-6)
    assert ph.time_s < pn.time_s / 5


def gemm_rec(m, n, k, dtype="bfloat16"):
    c = costs.gemm(1, m, n, k, dtype)
    return OpRecord(op="aten.mm.default", kind=c.kind, module="fc", phase=Phase.FORWARD, dtype=dtype, flops=c.flops,
                    bytes_read=c.bytes_read, bytes_written=c.bytes_written, dims=c.dims)


def test_hopper_unaligned_gemm_penalty():
    # m = 4097, n = 4095, k = 1023, bf16, H200: 128x128 tiles: ceil(4097 / 128) = 33 x ceil(4095 / 128) = 32 = 1056
    #   tiles / 132 SMs = 8.0 waves (q = 1); fill 4097 / 4224 x 4095 / 4096 = 0.969697 -> 0.96 x 0.969697 = 0.930909
    #   eff = 0.80 x 0.930909 x 1023 / (1023 + 48) x 0.19 (GH100, 16-bit, n and k unaligned) = 0.135157
    #   (the H200 measured 268.8 us forward: 2 x 4097 x 4095 x 1023 / 268.8e-6 = 127.7 TF/s = 0.129 of 989.4)
    g = h200()
    r = gemm_rec(4097, 4095, 1023)
    eff, waves, weff = prior.compute_efficiency(r, g, "bf16", True)
    assert waves == pytest.approx(8.0) and weff == pytest.approx(0.930909, rel=1e-5)
    assert eff == pytest.approx(0.80 * 0.930909 * 1023 / 1071 * 0.19, rel=1e-5)
    # tf32: 0.35 instead of 0.19 (4-byte elements)
    r32 = dataclasses.replace(r, dtype="float32")
    assert prior.compute_efficiency(r32, g, "tf32", True)[0] == pytest.approx(0.80 * 0.930909 * 1023 / 1071 * 0.35,
                                                                              rel=1e-5)
    # only m (the output's rows) unaligned: no penalty on Hopper (tf32 8191 x 3000 x 1000 ran at the aligned rate)
    rm = gemm_rec(8191, 3000, 1000, "float32")
    em, _, wm = prior.compute_efficiency(rm, g, "tf32", True)
    assert em == pytest.approx(0.80 * wm * 1000 / 1048, rel=1e-9)
    # other chips keep the generic 0.6 for any unaligned dim (A100: same GEMM, m only)
    a100 = resolve_gpu("a100-sxm4-80gb")[0]
    ea, _, wa = prior.compute_efficiency(rm, a100, "tf32", True)
    assert ea == pytest.approx(0.80 * wa * 1000 / 1048 * 0.6, rel=1e-9)
