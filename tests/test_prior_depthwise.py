"""Depthwise convolutions in the physics prior: which kernel PyTorch runs, and what it costs (issue 14).

Expected values are derived by hand in the comments from DW_NATIVE_MACS_PER_SM_CLK (a published measurement, see
prior.py) and the database's SM counts and boost clocks."""

from __future__ import annotations

import pytest

from wattlint import costs
from wattlint.energy import prior
from wattlint.hardware import resolve_gpu
from wattlint.types import OpRecord, Phase


def db(key):
    return resolve_gpu(key)[0]


def dw_records(x, w, dtype="float32", **conv_kw):
    """Forward, input-grad and weight-grad records of a depthwise conv, shaped as the torch frontend records them
    (forward: (x, w); backward: (grad_output, x, w) with a ('grad', 1 | 2) dim)."""
    groups = x[1]
    fwd = costs.conv(x, w, dtype, groups=groups, **conv_kw)
    out = (x[0], w[0], *costs.conv_out_spatial(x[2:], w[2:], *(
        [conv_kw.get(k, 1 if k != "padding" else 0)] * (len(x) - 2) for k in ("stride", "padding", "dilation"))))
    f = OpRecord(op="aten.convolution.default", kind=fwd.kind, module="dw", phase=Phase.FORWARD, dtype=dtype,
                 flops=fwd.flops, bytes_read=fwd.bytes_read, bytes_written=fwd.bytes_written, dims=fwd.dims,
                 shapes=(tuple(x), tuple(w)))
    bw = costs.conv_backward(x, w, dtype, groups=groups, **conv_kw)
    recs = [f]
    for c, tag in zip(bw, (1, 2)):
        recs.append(OpRecord(op="aten.convolution_backward.default", kind=c.kind, module="dw", phase=Phase.BACKWARD,
                             dtype=dtype, flops=c.flops, bytes_read=c.bytes_read, bytes_written=c.bytes_written,
                             dims=tuple(sorted(c.dims + (("grad", tag),))), shapes=(out, tuple(x), tuple(w))))
    return recs


def test_long_1d_depthwise_forward_runs_at_the_native_kernel_rate():
    # QuartzNet-like separable conv: x = [48, 512, 840], w = [512, 1, 75], 'same' padding 37, fp32, A100 SXM4 80GB
    # (108 SMs, 1410 MHz boost, FP32 19.5 TFLOP/s).
    #   MACs = 48 x 512 x 840 x 75 = 1,548,288,000 over 48 x 512 x 840 = 20,643,840 outputs
    #   native forward: 1.4 SM clocks per output + 75 taps / 6.6 MACs per SM clock = 12.763636 SM clocks per output
    #   -> 20,643,840 x 12.763636 = 263,490,467 SM clocks / (108 SMs x 1.41e9) = 1.730303 ms
    #   waves: 20,643,840 output threads / (108 x 2048) = 93.33 -> 93.33 / 94 = 0.992908
    #   time = 1.730303 / 0.992908 = 1.742662 ms (+ 4 us gap); memory: 165 MB at ~1.7 TB/s = 0.1 ms, not the bound
    g = db("a100-sxm4-80gb")
    f, gi, gw = dw_records((48, 512, 840), (512, 1, 75), padding=37)
    assert f.flops == 2 * 1_548_288_000
    assert prior.native_depthwise(f) == "generic"
    p = prior.op_prior(f, g, "tf32")
    assert p.kernel == "direct_conv" and p.bound == "compute" and p.clock_scale == 1.0
    assert not prior.uses_tensor_cores(f, g, p.compute_dtype)
    waves = 48 * 512 * 840 / (108 * 2048)
    assert p.time_s - prior.GAP_S == pytest.approx(
        20_643_840 * (1.4 + 75 / 6.6) / (108 * 1.41e9) / (waves / 94), rel=1e-6)
    assert p.time_s - prior.GAP_S == pytest.approx(1.742662e-3, rel=1e-4)


def test_long_1d_depthwise_backward_kernels():
    # same conv, backward: 2.6 MACs per SM clock for each gradient kernel -> 2.6 x 108 x 1.41e9 = 3.95928e11 MAC/s
    #   input grad: one thread per input element, 93.33 waves (0.992908) -> 1,548,288,000 / 3.95928e11 / 0.992908
    #     = 3.93848 ms
    #   weight grad: 512 x 75 = 38,400 blocks of min(32 x 48, 256) = 256 threads, 8 per SM -> 38,400 / 864 = 44.44
    #     waves -> 44.44 / 45 = 0.987654 -> 1,548,288,000 / 3.95928e11 / 0.987654 = 3.95943 ms
    g = db("a100-sxm4-80gb")
    _, gi, gw = dw_records((48, 512, 840), (512, 1, 75), padding=37)
    assert prior.native_depthwise(gi) == prior.native_depthwise(gw) == "generic"
    ti = prior.op_prior(gi, g, "tf32").time_s - prior.GAP_S
    tw = prior.op_prior(gw, g, "tf32").time_s - prior.GAP_S
    assert ti == pytest.approx(3.93848e-3, rel=1e-4)
    assert tw == pytest.approx(3.95943e-3, rel=1e-4)


def test_native_rate_reproduces_the_published_rwkv_measurement():
    # BlinkDL/RWKV-CUDA (PyTorch issue #75747): F.conv1d(groups=C) on x = [32, 768, 1535] (left-padded by T-1),
    # w = [768, 1, 768] -> 768 outputs, fp32, RTX 3090: forward 14 ms, backward (input + weight grad) 65 ms.
    # The rates are geometric means over this and a GTX 1070 mobile, so the 3090 alone is reproduced within ~25 %:
    #   forward: 32 x 768 x 768 = 18,874,368 outputs x (1.4 + 768 / 6.6 = 117.763636 SM clocks) = 2.222714e9 SM
    #   clocks / (82 x 1.695e9) = 15.9919 ms; 18,874,368 / (82 x 2048) = 112.39 waves -> / (112.39 / 113) = 16.0787 ms
    #   (+15 %; the 1.4-clock per-output cost adds 1.2 %)
    #   backward: 2 x 14.496e9 / (2.6 x 82 x 1.695e9) = 80.2 ms (+23 %)
    g = db("rtx3090-24gb")
    f, gi, gw = dw_records((32, 768, 1535), (768, 1, 768))
    tf = prior.op_prior(f, g, "default").time_s
    tb = prior.op_prior(gi, g, "default").time_s + prior.op_prior(gw, g, "default").time_s
    assert tf == pytest.approx(14e-3, rel=0.15)
    assert tb == pytest.approx(65e-3, rel=0.25)
    assert tf - prior.GAP_S == pytest.approx(16.0787e-3, rel=1e-4)


def test_which_depthwise_kernel_pytorch_runs():
    # fp16, >= 32 channels, 1-D stride 1 -> cuDNN (Convolution.cpp use_cudnn_depthwise, cuDNN >= 8.2): not native
    f16, gi16, gw16 = dw_records((8, 256, 400), (256, 1, 33), "float16", padding=16)
    assert {prior.native_depthwise(r) for r in (f16, gi16, gw16)} == {""}
    # the same conv in bf16 or fp32 (tf32 does not apply to depthwise) runs PyTorch's generic kernels
    assert prior.native_depthwise(dw_records((8, 256, 400), (256, 1, 33), "bfloat16", padding=16)[0]) == "generic"
    assert prior.native_depthwise(dw_records((8, 256, 400), (256, 1, 33), padding=16)[0]) == "generic"
    # fp16 but strided 1-D, or fewer than 32 channels -> PyTorch's kernels
    assert prior.native_depthwise(dw_records((8, 256, 400), (256, 1, 33), "float16", padding=16, stride=2)[0]) \
        == "generic"
    assert prior.native_depthwise(dw_records((8, 16, 400), (16, 1, 33), "float16", padding=16)[0]) == "generic"
    # fp32 3x3 2-D: unrolled forward / input-grad kernels (templated), the weight gradient is the generic kernel
    f3, gi3, gw3 = dw_records((32, 256, 56, 56), (256, 1, 3, 3), padding=1)
    assert [prior.native_depthwise(r) for r in (f3, gi3, gw3)] == ["templated", "templated", "generic"]
    # fp16 3x3 2-D (stride 1 and 2) -> cuDNN
    assert prior.native_depthwise(dw_records((32, 256, 56, 56), (256, 1, 3, 3), "float16", padding=1)[2]) == ""
    assert prior.native_depthwise(dw_records((32, 256, 56, 56), (256, 1, 3, 3), "float16", padding=1,
                                             stride=2)[0]) == ""
    # a grouped conv with 4 input channels per group is not depthwise (cuDNN grouped kernels)
    c = costs.conv((8, 256, 28, 28), (256, 4, 3, 3), "float32", padding=1, groups=64)
    r = OpRecord(op="aten.convolution.default", kind=c.kind, module="g", phase=Phase.FORWARD, dtype="float32",
                 flops=c.flops, bytes_read=c.bytes_read, bytes_written=c.bytes_written, dims=c.dims,
                 shapes=((8, 256, 28, 28), (256, 4, 3, 3)))
    assert prior.native_depthwise(r) == ""


def test_3x3_depthwise_weight_gradient_is_issue_bound():
    # x = [32, 256, 56, 56], w = [256, 1, 3, 3], fp32 on an A100 SXM4 80GB. Weight gradient (generic kernel):
    #   MACs = 32 x 256 x 3136 x 9 = 231,211,008; 256 x 9 = 2,304 blocks of 256 threads, 8 per SM -> 2,304 / 864 =
    #   2.667 waves -> 2.667 / 3 = 0.888889; time = 231,211,008 / (2.6 x 108 x 1.41e9) / 0.888889 = 0.65698 ms
    #   (bytes: (grad_out + x) x 4 = 205.5 MB -> ~0.12 ms at ~1.7 TB/s: compute-bound)
    g = db("a100-sxm4-80gb")
    f, gi, gw = dw_records((32, 256, 56, 56), (256, 1, 3, 3), padding=1)
    p = prior.op_prior(gw, g, "default")
    assert p.bound == "compute"
    assert p.time_s - prior.GAP_S == pytest.approx(0.65698e-3, rel=1e-4)
    # the unrolled (templated) forward is issue-bound too (H200 op samples: 3x3 on 32 channels at 3.6 MACs per SM
    # clock, 8x slower than the bandwidth bound): 32 x 256 x 3136 = 25,690,112 outputs x (1.4 + 9 / 6.6 = 2.763636
    # SM clocks) = 70,998,128 SM clocks / (108 x 1.41e9) = 0.466234 ms; 25,690,112 / (108 x 2048) = 116.148 waves ->
    # / (116.148 / 117) = 0.469654 ms (bytes: 2 x 102.8 MB -> ~0.12 ms at ~1.7 TB/s)
    pf = prior.op_prior(f, g, "default")
    assert pf.bound == "compute" and pf.kernel == "direct_conv"
    assert pf.time_s - prior.GAP_S == pytest.approx(0.469654e-3, rel=1e-4)
    # the unrolled input-gradient kernel is not re-priced (no H200 sample isolates it): a bandwidth-bound direct kernel
    assert prior.op_prior(gi, g, "default").bound == "memory"


# ---- split-K: weight-gradient GEMMs whose output cannot fill the SMs ------------------------------------------------

def test_weight_gradient_gemm_uses_split_k():
    # NCF-like weight gradient: [256 x 1,048,576] @ [1,048,576 x 256], fp16, V100 SXM2 (80 SMs, 125 TFLOP/s).
    # Even the smallest tile cannot fill the SMs: 32x32 tiles -> 8 x 8 = 64 tiles = 0.8 waves on 80 SMs, so without
    # split-K the best is 0.8 x 0.45 = 0.36 (eff ~0.8 x 0.36 = 0.29): split-K is considered.
    # Split-K (k // 256 = 4096 slices allowed, at most 32): 128x128 tiles x s = 20 slices = 80 blocks = one full
    # wave -> 0.96 x 1.0; each slice 1,048,576 / 20 = 52,428.8 deep -> depth 52,428.8 / (52,428.8 + 48).
    # (256x128 would need s = 40 > 32; 128x64 x 10 = 80 -> 0.88.) eff = 0.80 x 0.96 x 0.999085 = 0.767297
    g = db("v100-sxm2-16gb")
    c = costs.gemm(1, 256, 256, 1_048_576, "float16")
    r = OpRecord(op="aten.mm.default", kind=c.kind, module="fc", phase=Phase.BACKWARD, dtype="float16",
                 flops=c.flops, bytes_read=c.bytes_read, bytes_written=c.bytes_written, dims=c.dims)
    eff, waves, weff = prior.compute_efficiency(r, g, "fp16", True)
    assert waves == pytest.approx(1.0) and weff == pytest.approx(0.96)
    assert eff == pytest.approx(0.80 * 0.96 * 52_428.8 / (52_428.8 + 48), rel=1e-9)
    # a GEMM whose tiles fill the SMs is not split: 8192^3 keeps 0.80 x wave x 8192 / (8192 + 48)
    big = costs.gemm(1, 8192, 8192, 8192, "float16")
    rb = OpRecord(op="aten.mm.default", kind=big.kind, module="fc", phase=Phase.FORWARD, dtype="float16",
                  flops=big.flops, bytes_read=big.bytes_read, bytes_written=big.bytes_written, dims=big.dims)
    eb, wb, qb = prior.compute_efficiency(rb, g, "fp16", True)
    assert wb > 1 and eb == pytest.approx(0.80 * prior.wave_efficiency(g, 1, 8192, 8192)[0] * 8192 / 8240, rel=1e-9)
    # nor one whose output fills the SMs with 32x32 tiles, even at under one wave of 128x128 tiles: m = 256,
    # n = 4096 on an A100 (108 SMs): 8 x 128 = 1,024 tiles of 32x32 -> the tile model, no split (a smaller GEMM must
    # not beat a larger one per FLOP: tests/test_properties.py)
    a100 = db("a100-sxm4-80gb")
    mid = costs.gemm(1, 256, 4096, 4096, "float32")
    rm = OpRecord(op="aten.mm.default", kind=mid.kind, module="fc", phase=Phase.FORWARD, dtype="float32",
                  flops=mid.flops, bytes_read=mid.bytes_read, bytes_written=mid.bytes_written, dims=mid.dims)
    em, wm, _ = prior.compute_efficiency(rm, a100, "fp32", False)
    assert wm == prior.wave_efficiency(a100, 1, 256, 4096)[1]
    assert em == pytest.approx(0.88 * prior.wave_efficiency(a100, 1, 256, 4096)[0] * 4096 / 4104, rel=1e-9)


# ---- NCHW layout transposes around tensor-core convolutions --------------------------------------------------------

def test_nchw_tensor_core_conv_pays_layout_transposes():
    # 3x3 conv 256 -> 256 at 14x14, batch 256, bf16, A100 SXM4 80GB (2039 GB/s), NCHW (no ('nhwc', 1) dim):
    #   bytes = (x 12,845,056 + w 589,824 + y 12,845,056) elements x 2 B = 52,559,872 B
    #   transposes move every operand byte once more in and out: 2 x 52,559,872 = 105,119,744 B
    #   eff_m = 0.85 x 52,559,872 / (52,559,872 + 2039e9 x 2e-6) = 0.85 x 52,559,872 / 56,637,872 = 0.788804
    #   layout_s = 105,119,744 / (2039e9 x 0.788804) = 65.357 us, + 2 transpose gaps of 4 us
    import dataclasses

    g = db("a100-sxm4-80gb")
    c = costs.conv((256, 256, 14, 14), (256, 256, 3, 3), "bfloat16", padding=1)
    r = OpRecord(op="aten.convolution.default", kind=c.kind, module="c", phase=Phase.FORWARD, dtype="bfloat16",
                 flops=c.flops, bytes_read=c.bytes_read, bytes_written=c.bytes_written, dims=c.dims)
    assert r.bytes == 52_559_872
    nchw = prior.op_prior(r, g, "bf16")
    nhwc = prior.op_prior(dataclasses.replace(r, dims=tuple(sorted(r.dims + (("nhwc", 1),)))), g, "bf16")
    assert nchw.layout_s == pytest.approx(65.357e-6, rel=1e-4)
    assert nchw.time_s - nhwc.time_s == pytest.approx(nchw.layout_s + 2 * prior.GAP_S, rel=1e-9)
    assert nchw.energy_j > nhwc.energy_j
    # FP32 on CUDA cores (cuDNN's NCHW SIMT kernels) and depthwise direct kernels: no transposes
    f32 = OpRecord(op="aten.convolution.default", kind=c.kind, module="c", phase=Phase.FORWARD, dtype="float32",
                   flops=c.flops, bytes_read=2 * c.bytes_read, bytes_written=2 * c.bytes_written, dims=c.dims)
    assert prior.op_prior(f32, g, "fp32").layout_s == 0.0
    assert prior.op_prior(f32, g, "tf32").layout_s > 0.0
    f, gi, gw = dw_records((48, 512, 840), (512, 1, 75), "float16", padding=37)
    assert prior.op_prior(f, g, "fp16").layout_s == 0.0


def test_torch_frontend_tags_channels_last_convolutions():
    # a channels-last model (PyTorch then runs cuDNN channels-last: input OR weight channels-last) is tagged
    # ('nhwc', 1) on every convolution record, 1x1 filters included (strides (C, 1, C, C) vs contiguous (C, 1, 1, 1));
    # the default NCHW model is not, and pays the layout transposes under a tensor-core precision
    torch = pytest.importorskip("torch")
    from tests.conftest import trace_small_convnet

    def build(cl):
        return trace_small_convnet([torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 1)], "bf16", cl)

    g = db("a100-sxm4-80gb")
    for cl in (True, False):
        convs = [r for r in build(cl).records if r.kind.value == "conv"]
        assert len(convs) == 5  # 2 forward, input grad of the second, weight grads of both
        assert {r.dim("nhwc", 0) for r in convs} == {1 if cl else 0}
        assert all((prior.op_prior(r, g, "bf16").layout_s > 0) != cl for r in convs)


def test_untagged_backward_records_price_like_tagged_ones():
    # the ONNX frontend's synthesized backward: op 'onnx::Conv', shapes (x, w), no ('grad', n) dim; the weight
    # gradient is the record that writes the weight's bytes (256 x 9 x 4 B = 9,216 B), the input gradient writes x
    import dataclasses

    g = db("a100-sxm4-80gb")
    f, gi, gw = dw_records((32, 256, 56, 56), (256, 1, 3, 3), padding=1)
    assert gw.bytes_written == 256 * 9 * 4
    for tagged in (gi, gw):
        onnx = dataclasses.replace(tagged, op="onnx::Conv", shapes=(f.shapes[0], f.shapes[1]),
                                   dims=tuple(d for d in tagged.dims if d[0] != "grad"))
        assert prior.native_depthwise(onnx) == prior.native_depthwise(tagged)
        assert prior.op_prior(onnx, g, "default").time_s == pytest.approx(prior.op_prior(tagged, g, "default").time_s,
                                                                          rel=1e-12)
