"""Training-mode BatchNorm on channels-first tensors: the per-channel reduction pass runs one 512-thread block per
channel, so it reaches only C x 512 / (SMs x max resident threads per SM) of the achievable bandwidth
(prior.BN_REDUCE_THREADS). Expected values are derived by hand in the comments from costs.norm's byte counts, the
database's SM counts and bandwidths, and the prior's memory constants (EFF_MEM_MAX, MEM_LATENCY_S)."""

from __future__ import annotations

import pytest

from wattlint import costs
from wattlint.energy import prior
from wattlint.hardware import resolve_gpu
from wattlint.types import OpKind, OpRecord, Phase


def db(key):
    return resolve_gpu(key)[0]


def bn_record(x, backward=False, dtype="float32", op=None, dims=()):
    c = costs.norm(x, dtype, "batch", backward=backward)
    name = op or ("aten.native_batch_norm_backward.default" if backward else "aten.native_batch_norm.default")
    return OpRecord(op=name, kind=c.kind, module="bn", phase=Phase.BACKWARD if backward else Phase.FORWARD,
                    dtype=dtype, flops=c.flops, bytes_read=c.bytes_read, bytes_written=c.bytes_written,
                    dims=tuple(dims), shapes=(tuple(x),))


def test_bn_forward_on_58_channels_is_priced_at_its_channel_blocks():
    # ShuffleNetV2 stage-2 BatchNorm, x = [256, 58, 16, 16] fp32, V100 PCIe (80 SMs, 2048 threads/SM, 900 GB/s HBM2).
    #   elements n = 256 x 58 x 256 = 3,801,088 -> n x 4 B = 15,204,352 B
    #   reads: 2 passes x 15,204,352 + gamma 58 x 4 + beta 58 x 4 = 30,409,168 B; writes y + fp32 mean/rstd:
    #   15,204,352 + 2 x 58 x 4 = 15,204,816 B; total 45,613,984 B
    #   reduction pass: half the reads = 15,204,584 B -> share 15,204,584 / 45,613,984 = 0.3333316
    #   channel blocks: 58 x 512 threads / (80 SMs x 2048) = 0.18125 of the achievable bandwidth
    #   plain eff_m = 0.85 x 45,613,984 / (45,613,984 + 900e9 x 2e-6) = 0.85 x 0.9620365 = 0.8177310
    #   eff_m = 0.8177310 / (0.3333316 / 0.18125 + 0.6666684) = 0.8177310 / 2.5057395 = 0.3263432
    #   memory time = 45,613,984 / (900e9 x 0.3263432) = 155.30 us (before the rule: 61.98 us)
    g = db("v100-pcie-16gb")
    r = bn_record((256, 58, 16, 16))
    assert (r.bytes_read, r.bytes_written) == (30_409_168, 15_204_816)
    assert prior.batchnorm_channels(r) == 58
    share, fill = prior.batchnorm_reduce_fill(r, g)
    assert share == pytest.approx(15_204_584 / 45_613_984, rel=1e-12)
    assert fill == pytest.approx(58 * 512 / (80 * 2048), rel=1e-12) == pytest.approx(0.18125)
    p = prior.op_prior(r, g, "fp32")
    assert p.bound == "memory"
    assert p.eff_m == pytest.approx(0.3263432, rel=1e-6)
    assert p.memory_s == pytest.approx(155.30e-6, rel=1e-4)
    assert p.time_s == pytest.approx(155.30e-6 + prior.GAP_S, rel=1e-4)


def test_bn_backward_reduces_dy_and_x_at_the_channel_fill():
    # Same shape, backward: reads 2 passes x (dy, x) = 4 x 15,204,352 + gamma 232 + fp32 mean/rstd 464 = 60,818,104 B,
    #   writes dx + dgamma/dbeta: 15,204,352 + 464 = 15,204,816 B; total 76,022,920 B
    #   reduction pass (dy and x once) = 60,818,104 / 2 = 30,409,052 B -> share 0.3999985
    #   plain eff_m = 0.85 x 76,022,920 / (76,022,920 + 1,800,000) = 0.85 x 0.9768706 = 0.8303400
    #   eff_m = 0.8303400 / (0.3999985 / 0.18125 + 0.6000015) = 0.8303400 / 2.8068897 = 0.2958221
    #   memory time = 76,022,920 / (900e9 x 0.2958221) = 285.54 us
    g = db("v100-pcie-16gb")
    r = bn_record((256, 58, 16, 16), backward=True)
    assert (r.bytes_read, r.bytes_written) == (60_818_104, 15_204_816)
    p = prior.op_prior(r, g, "fp32")
    assert p.eff_m == pytest.approx(0.2958221, rel=1e-6)
    assert p.memory_s == pytest.approx(285.54e-6, rel=1e-4)


def test_turing_holds_1024_threads_per_sm_so_the_same_channels_fill_more():
    # Quadro RTX 6000 (TU102: 72 SMs, 1024 resident threads per SM, compute capability 7.5):
    #   58 x 512 / (72 x 1024) = 29,696 / 73,728 = 0.4027778
    g = db("quadro-rtx6000-24gb")
    assert prior.chip_group(g) == "TU10x" and prior.max_threads_per_sm(g) == 1024
    _, fill = prior.batchnorm_reduce_fill(bn_record((256, 58, 16, 16)), g)
    assert fill == pytest.approx(29_696 / 73_728, rel=1e-12)
    # GA102 (A40, 84 SMs): 1536 threads per SM -> 58 x 512 / (84 x 1536) = 29,696 / 129,024 = 0.2301587
    a40 = db("a40-48gb")
    assert prior.max_threads_per_sm(a40) == 1536
    assert prior.batchnorm_reduce_fill(bn_record((256, 58, 16, 16)), a40)[1] == pytest.approx(29_696 / 129_024)


def test_wide_or_channels_last_batchnorm_and_other_norms_keep_the_plain_bandwidth():
    g = db("v100-pcie-16gb")
    # 1024 channels: 1024 x 512 / (80 x 2048) = 3.2 >= 1 -> full bandwidth: eff_m = plain memory_efficiency
    wide = bn_record((256, 1024, 4, 4))
    assert prior.batchnorm_reduce_fill(wide, g)[1] == 1.0
    assert prior.op_prior(wide, g, "fp32").eff_m == pytest.approx(prior.memory_efficiency(wide.bytes, g))
    # channels-last input (the torch frontend's ('nhwc', 1) dim): its kernels tile N x H x W over the grid
    cl = bn_record((256, 58, 16, 16), dims=(("nhwc", 1),))
    assert prior.batchnorm_channels(cl) == 0
    assert prior.op_prior(cl, g, "fp32").eff_m == pytest.approx(prior.memory_efficiency(cl.bytes, g))
    # LayerNorm rows stay in registers: one pass, not touched
    ln = costs.norm((8192, 768), "float32", "layer")
    r = OpRecord(op="aten.native_layer_norm.default", kind=OpKind.NORM, module="ln", phase=Phase.FORWARD,
                 dtype="float32", flops=ln.flops, bytes_read=ln.bytes_read, bytes_written=ln.bytes_written,
                 shapes=((8192, 768),))
    assert prior.batchnorm_channels(r) == 0
    assert prior.op_prior(r, g, "fp32").eff_m == pytest.approx(prior.memory_efficiency(r.bytes, g))


def test_onnx_synthesized_batchnorm_uses_its_channel_column():
    # the ONNX frontend synthesizes training BatchNorm after folded convs with shape (N x H x W, C): C = 64 here
    g = db("v100-pcie-16gb")
    r = bn_record((32 * 112 * 112, 64), op="synth::BatchNormalization")
    assert prior.batchnorm_channels(r) == 64
    assert prior.batchnorm_reduce_fill(r, g)[1] == pytest.approx(64 * 512 / (80 * 2048))


def test_torch_frontend_tags_channels_last_batchnorm():
    # a channels-last model's BatchNorm records (forward and backward) carry ('nhwc', 1), so they keep the plain
    # bandwidth; the default NCHW model's do not and get the channel-block fill: 16 channels on a V100:
    # 16 x 512 / (80 x 2048) = 0.05
    torch = pytest.importorskip("torch")
    from tests.conftest import trace_small_convnet

    def build(cl):
        return trace_small_convnet([torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.BatchNorm2d(16)], "fp32", cl)

    g = db("v100-pcie-16gb")
    for cl in (True, False):
        bns = [r for r in build(cl).records if r.kind is OpKind.NORM]
        assert {r.phase for r in bns} == {Phase.FORWARD, Phase.BACKWARD}
        assert {r.dim("nhwc", 0) for r in bns} == {1 if cl else 0}
        assert {prior.batchnorm_reduce_fill(r, g)[1] for r in bns} == ({1.0} if cl else {16 * 512 / (80 * 2048)})
