"""Convolution time rules fitted / checked on the H200 op samples (calibration/runs/h200-sxm-141gb): pointwise NCHW
convolutions without layout transposes, unaligned input channels on CUDA cores, channels-last depthwise on cuDNN.

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


def test_pointwise_nchw_conv_is_a_per_image_gemm_without_transposes():
    # ResNet bottleneck 1x1, 64 -> 256 channels, x = [64, 64, 56, 56], bf16, H200, NCHW.
    #   per image: W[256, 64] x X[64, 3136] -> GEMM b = 64 images, m = 3136 pixels, n = 256, k = 64
    #   256x128 tiles: ceil(3136 / 256) = 13 x 2 = 26 per image x 64 = 1664 tiles / 132 SMs = 12.606 waves
    #     -> 12.606 / 13 = 0.969697; fill 3136 / (13 x 256) = 0.942308 -> 0.913753 (128x128: 0.96 x 0.969697 x 0.98
    #     = 0.912291; 128x64: 0.88 x 48.485 / 49 x 0.98 = 0.853; smaller tiles lower)
    #   eff_c = 0.80 x 0.913753 x 64 / (64 + 48) = 0.417716
    #   flops = 2 x 64 x 3136 x 256 x 64 = 6,576,668,672 -> compute 6,576,668,672 / (989.4e12 x 0.417716) = 15.913 us
    #   bytes = (12,845,056 x + 16,384 w + 51,380,224 y) x 2 B = 128,483,328 B
    #   eff_m = 0.85 x 128,483,328 / (128,483,328 + 4.8e12 x 2e-6) = 0.790902 -> memory 33.844 us: memory-bound
    #   time = 33.844 + 4 us gap = 37.844 us, no transposes (the H200 measured 39.6 us; with the transposes the prior
    #   said 113.5 us, more than moving 3 x 128 MB at the 4.3 TB/s this H200 copies at allows for the measurement)
    g = h200()
    r = conv_rec((64, 64, 56, 56), (256, 64, 1, 1))
    assert prior.pointwise_conv(r)
    eff, _, weff = prior.compute_efficiency(r, g, "bf16", True)
    assert weff == pytest.approx(0.969697 * 0.942308, rel=1e-5)
    assert eff == pytest.approx(0.80 * 0.913753 * 64 / 112, rel=1e-5)
    p = prior.op_prior(r, g, "bf16")
    assert p.layout_s == 0.0 and p.bound == "memory"
    assert p.compute_s == pytest.approx(15.913e-6, rel=1e-3)
    assert p.time_s == pytest.approx(33.844e-6 + prior.GAP_S, rel=1e-4)
    # the weight and input gradients of the same conv (backward records: (grad_output, x, w)) are pointwise too
    bw = costs.conv_backward((64, 64, 56, 56), (256, 64, 1, 1), "bfloat16")
    gi = OpRecord(op="aten.convolution_backward.default", kind=bw[0].kind, module="c", phase=Phase.BACKWARD,
                  dtype="bfloat16", flops=bw[0].flops, bytes_read=bw[0].bytes_read,
                  bytes_written=bw[0].bytes_written, dims=tuple(sorted(bw[0].dims + (("grad", 1),))),
                  shapes=((64, 256, 56, 56), (64, 64, 56, 56), (256, 64, 1, 1)))
    assert prior.pointwise_conv(gi) and prior.op_prior(gi, g, "bf16").layout_s == 0.0


def test_strided_padded_or_grouped_1x1_and_3x3_convs_keep_the_transposes():
    g = h200()
    # stride 2: m = 64 x 28 x 28 != 64 x 56 x 56 pixels of the input (a strided gather, not the stored tensor)
    s2 = conv_rec((64, 256, 56, 56), (512, 256, 1, 1), stride=2)
    # padding 1 on a 1x1 filter grows the output: m = 64 x 58 x 58
    padded = conv_rec((64, 256, 56, 56), (256, 256, 1, 1), padding=1)
    grouped = conv_rec((64, 256, 56, 56), (256, 32, 1, 1), groups=8)
    k3 = conv_rec((64, 64, 56, 56), (64, 64, 3, 3), padding=1)
    for r in (s2, padded, grouped, k3):
        assert not prior.pointwise_conv(r)
        assert prior.op_prior(r, g, "bf16").layout_s > 0
    # channels-last (('nhwc', 1)) pointwise: no transposes either way, and the GEMM is the whole batch's pixels
    # (b = 1, m = 200,704: 1568 tiles of 256x128 = 11.879 waves -> / 12 = 0.989899)
    r = dataclasses.replace(conv_rec((64, 64, 56, 56), (256, 64, 1, 1)),
                            dims=tuple(sorted(conv_rec((64, 64, 56, 56), (256, 64, 1, 1)).dims + (("nhwc", 1),))))
    assert prior.op_prior(r, g, "bf16").layout_s == 0.0
    assert prior.compute_efficiency(r, g, "bf16", True)[2] == pytest.approx(0.989899, rel=1e-5)


def test_unaligned_input_channels_run_on_cuda_cores():
    # ResNet stem: x = [64, 3, 224, 224], w = [64, 3, 7, 7], stride 2, padding 3, bf16 autocast, H200.
    #   3 input channels: not a multiple of 8 -> no tensor cores: FP32 CUDA-core peak 66.9 TFLOP/s
    #   GEMM view m = 64 x 112 x 112 = 802,816, n = 64, k = 147; best tile 128x64: 6272 tiles / 132 = 47.515 waves
    #     -> / 48 = 0.989899 x 0.88 = 0.871111 (256x128 and 128x128 waste half of each tile on n = 64)
    #   eff_c = 0.85 (conv_simt) x 0.41 (UNALIGNED_CONV_SIMT) x 0.871111 x 147 / (147 + 8) = 0.287923
    #   flops = 2 x 802,816 x 64 x 147 = 15,105,785,856 -> 15,105,785,856 / (66.9e12 x 0.287923) = 784.22 us
    #   + 4 us gap = 788.22 us (H200 measured 637 us bf16, 620 us tf32, 742 us fp32; before: 108.8 us on tensor
    #   cores with transposes in bf16)
    g = h200()
    r = conv_rec((64, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3)
    assert r.flops == 15_105_785_856
    assert not prior.channels_aligned(r, "bf16")
    assert not prior.uses_tensor_cores(r, g, "bf16")
    p = prior.op_prior(r, g, "bf16")
    assert p.layout_s == 0.0 and p.bound == "compute"
    assert p.eff_c == pytest.approx(0.85 * 0.41 * 0.871111 * 147 / 155, rel=1e-5)
    assert p.time_s == pytest.approx(784.22e-6 + prior.GAP_S, rel=1e-4)
    # the same factor applies to FP32 (TF32 off) CUDA-core convolutions: the H200 ran them at 14-20 TF/s
    p32 = prior.op_prior(dataclasses.replace(r, dtype="float32", bytes_read=2 * r.bytes_read,
                                             bytes_written=2 * r.bytes_written), g, "fp32")
    assert p32.time_s == pytest.approx(p.time_s, rel=1e-9)


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
