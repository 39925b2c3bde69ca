"""Peak training memory: hand-computed breakdowns, sharding, checkpointing, fits."""

from __future__ import annotations

import pytest

from wattlint import memory
from wattlint.hardware import resolve_gpu
from wattlint.types import Plan
from _estimate_fixtures import mlp_graph

GIB = 2**30


def plan(**kw):
    base = dict(batch_size=64, steps=1, precision="fp32", optimizer="adamw", pue=1.0, carbon_intensity_g_per_kwh=400.0)
    base.update(kw)
    return Plan(**base)


def test_breakdown_adamw_fp32_hand_computed():
    g = mlp_graph(batch=64, width=1024, layers=2, activation_bytes=10_000_000)
    gpu, _ = resolve_gpu("a100")
    m = memory.peak_memory(g, gpu, plan())
    p = g.params
    b = m["breakdown"]
    assert b["weights"] == 4 * p
    assert b["gradients"] == 4 * p
    assert b["optimizer_state"] == 8 * p  # exp_avg + exp_avg_sq in fp32
    assert b["activations"] == 10_000_000
    assert b["weight_casts"] == 0
    # no --torch-version: lazy CUDA module loading, context 0.6 GiB = 0.6 x 1,073,741,824 = 644,245,094.4 -> 644,245,094;
    # allocator margin 12 % of the 10,000,000 B of activations = 1,200,000 B
    assert b["workspace"] == 644_245_094 + 1_200_000
    assert m["peak_bytes_per_gpu"] == pytest.approx(sum(b.values()), abs=4)
    # usable: 80 GiB = 85,899,345,920 B less 1.5 % driver-reserved: x 0.985 = 84,610,855,731.2 -> 84,610,855,731
    assert m["gpu_memory_bytes"] == 84_610_855_731
    assert m["fits"] is True


def test_activations_scale_with_micro_batch():
    g = mlp_graph(batch=32, activation_bytes=1_000_000)
    gpu, _ = resolve_gpu("a100")
    m = memory.peak_memory(g, gpu, plan(batch_size=128))
    assert m["breakdown"]["activations"] == 4_000_000


def test_sgd_has_no_state_and_bf16_adds_weight_casts():
    g = mlp_graph(width=512, layers=2)
    gpu, _ = resolve_gpu("a100")
    sgd = memory.peak_memory(g, gpu, plan(optimizer="sgd"))["breakdown"]
    assert sgd["optimizer_state"] == 4 * g.params  # SGD with momentum (PyTorch's usual recipe): one buffer
    bf = memory.peak_memory(g, gpu, plan(precision="bf16"))["breakdown"]
    assert bf["weight_casts"] == 2 * g.params


def test_sharding_stages_reduce_memory_monotonically():
    g = mlp_graph(width=4096, layers=8)
    gpu, _ = resolve_gpu("h100")
    peaks = [memory.peak_memory(g, gpu, plan(gpus=64, sharding=s))["peak_bytes_per_gpu"]
             for s in ("none", "zero1", "zero2", "zero3")]
    assert peaks == sorted(peaks, reverse=True) and len(set(peaks)) == 4
    z3 = memory.peak_memory(g, gpu, plan(gpus=64, sharding="fsdp"))["peak_bytes_per_gpu"]
    assert z3 == peaks[3]
    z1 = memory.peak_memory(g, gpu, plan(gpus=64, sharding="zero1"))["breakdown"]
    assert z1["optimizer_state"] == pytest.approx(8 * g.params / 64, abs=1)


def test_does_not_fit():
    g = mlp_graph(activation_bytes=20 * GIB)
    gpu, _ = resolve_gpu("t4")
    m = memory.peak_memory(g, gpu, plan())
    assert m["fits"] is False and m["peak_bytes_per_gpu"] > m["gpu_memory_bytes"]


def test_fallback_activation_estimate_is_stated():
    g = mlp_graph()
    g2 = type(g)(**{**g.__dict__, "extra": {}})
    gpu, _ = resolve_gpu("a100")
    m = memory.peak_memory(g2, gpu, plan())
    assert m["breakdown"]["activations"] > 0
    assert any("upper bound" in n for n in m["notes"])


def test_untraced_checkpointing_trades_memory_for_time():
    from wattlint.api import estimate

    g = mlp_graph(activation_bytes=8 * GIB)
    a = estimate(g, gpu="a100", steps=10)
    b = estimate(g, gpu="a100", steps=10, activation_checkpointing=True)
    assert b.memory.breakdown["activations"] == int(8 * GIB * memory.CHECKPOINT_FACTOR)
    assert b.memory.peak_bytes_per_gpu < a.memory.peak_bytes_per_gpu
    fwd = a.phases['forward'].time_s
    assert b.phases['backward'].time_s == pytest.approx(a.phases['backward'].time_s + fwd)
    assert any("checkpointing" in x for x in b.assumptions)
