"""Collective and pipeline arithmetic of wattlint.parallel, checked against values computed by hand."""

from __future__ import annotations

import pytest

from wattlint import parallel as P
from wattlint.types import ConfigError

GB = 1e9


def test_ring_all_reduce_by_hand():
    # 8 GPUs, 1 GB, 100 GB/s: each GPU moves 2 x 7/8 x 1 GB = 1.75 GB -> 17.5 ms, + 20 us latency = 17.52 ms
    assert P.ring_all_reduce_s(1 * GB, 8, 100 * GB, 20e-6) == pytest.approx(0.0175 + 20e-6)
    # 2 GPUs: 2 x 1/2 x 1 GB = 1 GB at 100 GB/s = 10 ms
    assert P.ring_all_reduce_s(1 * GB, 2, 100 * GB) == pytest.approx(0.010)
    # one GPU: nothing to reduce
    assert P.ring_all_reduce_s(1 * GB, 1, 100 * GB, 20e-6) == 0.0


def test_all_gather_and_reduce_scatter_by_hand():
    # 4 GPUs gathering a 400 MB tensor at 50 GB/s: 3/4 x 400 MB = 300 MB -> 6 ms, + 10 us
    assert P.all_gather_s(400e6, 4, 50 * GB, 10e-6) == pytest.approx(0.006 + 10e-6)
    assert P.reduce_scatter_s(400e6, 4, 50 * GB, 10e-6) == pytest.approx(0.006 + 10e-6)
    # all-gather + reduce-scatter = the all-reduce's bandwidth term (without the second latency)
    ag_rs = P.all_gather_s(400e6, 4, 50 * GB) + P.reduce_scatter_s(400e6, 4, 50 * GB)
    assert ag_rs == pytest.approx(P.ring_all_reduce_s(400e6, 4, 50 * GB))


def test_all_to_all_by_hand():
    # 8 GPUs, 64 MB send buffer each at 25 GB/s: 7/8 x 64 MB = 56 MB -> 2.24 ms, + 40 us
    assert P.all_to_all_s(64e6, 8, 25 * GB, 40e-6) == pytest.approx(0.00224 + 40e-6)
    assert P.all_to_all_s(64e6, 1, 25 * GB, 40e-6) == 0.0


def test_p2p_by_hand():
    # 16 MiB activation over 25 GB/s: 16,777,216 / 25e9 = 671.1 us, + 5 us
    assert P.p2p_s(16 * 2**20, 25 * GB, 5e-6) == pytest.approx(16 * 2**20 / 25e9 + 5e-6)
    assert P.p2p_s(0, 25 * GB, 5e-6) == 0.0


def test_bubble_by_hand():
    # 4 stages, 8 micro-batches: 3 / 11
    assert P.bubble_fraction(4, 8) == pytest.approx(3 / 11)
    # Llama-2-70B style: 4 stages, 1024 / (64 DP x 1) = 16 micro-batches -> 3 / 19
    assert P.bubble_fraction(4, 16) == pytest.approx(3 / 19)
    assert P.bubble_fraction(1, 8) == 0.0
    # one micro-batch: the pipeline is idle (p-1)/p of the time
    assert P.bubble_fraction(8, 1) == pytest.approx(7 / 8)


def test_layout_by_hand():
    # 2048 GPUs, TP 8 x PP 4 -> DP 64; batch 1024 with micro-batch 1 -> 1024 / 64 = 16 micro-batches
    lay, _ = P.resolve({"gpus": 2048, "tensor_parallel": 8, "pipeline_parallel": 4, "batch_size": 1024,
                        "micro_batch_size": 1})
    assert (lay.dp, lay.grad_accum, lay.micro_batch) == (64, 16, 1)
    # no --micro-batch-size: micro-batch = batch / (dp x grad-accum) = 64 / (4 x 2) = 8
    lay, _ = P.resolve({"gpus": 16, "tensor_parallel": 4, "batch_size": 64, "grad_accum": 2})
    assert (lay.dp, lay.micro_batch, lay.grad_accum) == (4, 8, 2)


@pytest.mark.parametrize("values, flag", [
    ({"gpus": 12, "tensor_parallel": 8}, "--tensor-parallel"),
    ({"gpus": 16, "tensor_parallel": 2, "pipeline_parallel": 3}, "--pipeline-parallel"),
    ({"gpus": 16, "tensor_parallel": 2, "expert_parallel": 3}, "--expert-parallel"),
    ({"gpus": 16, "tensor_parallel": 2, "batch_size": 100, "micro_batch_size": 3}, "--micro-batch-size"),
    ({"gpus": 16, "tensor_parallel": 2, "batch_size": 64, "micro_batch_size": 2, "grad_accum": 3}, "--grad-accum"),
])
def test_bad_layouts_name_the_flag(values, flag):
    with pytest.raises(ConfigError, match=flag):
        P.resolve(values)


def test_activation_factor_by_hand():
    # Korthikanti et al.: (10 + 24/t) / 34 of the unsplit activations without sequence parallel, 1/t with it
    assert P.activation_factor(P.Layout(gpus=8, tp=8)) == pytest.approx((10 + 3) / 34)
    assert P.activation_factor(P.Layout(gpus=8, tp=8, sequence_parallel=True)) == pytest.approx(1 / 8)
    assert P.activation_factor(P.Layout(gpus=8, tp=1)) == 1.0
