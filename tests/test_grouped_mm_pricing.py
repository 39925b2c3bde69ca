"""The experts' grouped GEMM (torch._grouped_mm) priced as the kernels PyTorch runs for it (energy/pricing.py,
grouped_kernels): the fused grouped kernel for bf16 on compute capability 9.x / 10.x, else the fallback's one GEMM
per group (aten/src/ATen/native/cuda/GroupedBlas.cpp _grouped_mm_cuda; GroupedMMUtils.h _grouped_mm_fallback).

Oracles: each expected price is the predictor's own price (``predictor.predict``, which never sees a grouped record)
of plain GEMM records built here by hand from the per-group shapes, summed over the groups by hand. That is a
different code path from the one under test (pricing's grouped_kernels / grouped_gemm_loop, which derive the groups
from the grouped record)."""

from __future__ import annotations

import pytest

from wattlint import costs as C
from wattlint.energy import public_fit as pf
from wattlint.energy.predictor import PriorPredictor
from wattlint.energy.pricing import grouped_notes, own_prices, predict_records
from wattlint.hardware import resolve_gpu
from wattlint.types import OpKind, OpRecord, Phase

F, B = Phase.FORWARD, Phase.BACKWARD


def _grouped(a, b, groups, dtype, phase=F):
    c = C.grouped_gemm(a, b, groups, dtype)
    return OpRecord(op="aten._grouped_mm.default", kind=c.kind, module="model.layers.0.feed_forward.experts",
                    phase=phase, dtype=dtype, shapes=(tuple(a), tuple(b), (groups,)), flops=c.flops,
                    bytes_read=c.bytes_read, bytes_written=c.bytes_written, dims=c.dims)


def _gemm(b, m, n, k, dtype, phase=F):
    """A plain (b = 1: mm) or batched GEMM record, bytes by hand: A b x m x k and B b x k x n read, C b x m x n
    written."""
    e = 4 if dtype == "float32" else 2
    return OpRecord(op="aten.bmm.default" if b > 1 else "aten.mm.default", kind=OpKind.MATMUL, module="x",
                    phase=phase, dtype=dtype, shapes=((b, m, k), (b, k, n)) if b > 1 else ((m, k), (k, n)),
                    flops=2 * b * m * n * k, bytes_read=(b * m * k + b * k * n) * e, bytes_written=b * m * n * e,
                    dims=(("b", b), ("k", k), ("m", m), ("n", n)))


def _layer(rows, groups, hidden, inter, dtype):
    """One MoE layer's six grouped GEMMs as the tracer records them: gate_up [G, H, 2I] and down [G, I, H] forward;
    per projection the input gradient (2-D x 3-D) and the weight gradient (2-D x 2-D, rows split as the reduction)."""
    return [_grouped((rows, hidden), (groups, hidden, 2 * inter), groups, dtype),
            _grouped((rows, inter), (groups, inter, hidden), groups, dtype),
            _grouped((rows, hidden), (groups, hidden, inter), groups, dtype, B),
            _grouped((inter, rows), (rows, hidden), groups, dtype, B),
            _grouped((rows, 2 * inter), (groups, 2 * inter, hidden), groups, dtype, B),
            _grouped((hidden, rows), (rows, 2 * inter), groups, dtype, B)]


def _gpu(key):
    return resolve_gpu(key)[0]


@pytest.fixture(scope="module")
def public_fit():
    p = pf.load_public_fit()
    assert p is not None
    return p


def test_the_fallback_loop_is_one_gemm_per_group_at_the_balanced_split(public_fit):
    # fp32 on a V100 (compute capability 7.0): PyTorch's fallback, one at::mm_out per expert. 130 rows over 4 experts
    # split 33, 33, 32, 32 (balanced: 130 = 4 x 32 + 2); [130, 256] x [4, 256, 1024] -> per expert m x 1024 x 256
    v100 = _gpu("v100-sxm2-16gb")
    rec = _grouped((130, 256), (4, 256, 1024), 4, "float32")
    t, p = predict_records(public_fit, [rec], v100, "default", None)
    t_k, p_k = public_fit.predict([_gemm(1, 33, 1024, 256, "float32"), _gemm(1, 32, 1024, 256, "float32")],
                                  v100, "default")
    assert t[0] == pytest.approx(2 * t_k[0] + 2 * t_k[1], rel=1e-12)
    # energy kept: power x time = the kernels' energies
    assert t[0] * p[0] == pytest.approx(2 * t_k[0] * p_k[0] + 2 * t_k[1] * p_k[1], rel=1e-12)
    # each kernel carries its own launch gap: 4 of them (public-fit: roofline / efficiency + KERNEL_GAP_S each)
    assert t[0] > 4 * pf.KERNEL_GAP_S
    # public-fit priced all four GEMMs (the mm family covers them): the record is its own
    assert own_prices(public_fit, [rec], t, v100, "default", None) == (True,)


def test_the_weight_gradient_splits_the_reduction_and_an_empty_group_zero_fills():
    # 2-D x 2-D (weight gradient): [512, 6] x [6, 256] over 4 experts -> reductions 2, 2, 1, 1 (6 = 4 x 1 + 2)
    loop = C.grouped_gemm_loop("k", 4, 6, 512, 256, 0, "float32")
    assert [(dict(c.dims)["k"], n) for c, n in loop] == [(2, 2), (1, 2)]
    assert sum(c.flops * n for c, n in loop) == 2 * 512 * 256 * 6
    # 3 rows over 4 experts: one expert has none. Its weight gradient is zeroed (addmm with k = 0: result.zero_(),
    # 512 x 256 fp32 written = 524,288 bytes); an empty forward group launches nothing (its output is empty)
    loop = C.grouped_gemm_loop("k", 4, 3, 512, 256, 0, "float32")
    assert [(c.kind, n) for c, n in loop] == [(OpKind.MATMUL, 3), (OpKind.MEMORY, 1)]
    assert (loop[1][0].bytes_read, loop[1][0].bytes_written) == (0, 512 * 256 * 4)
    assert [n for _, n in C.grouped_gemm_loop("m", 4, 3, 0, 1024, 256, "float32")] == [3]


def test_bf16_on_hopper_is_one_fused_kernel_at_the_padded_share():
    # bf16 on an H100 (compute capability 9.0): the fused CUTLASS grouped kernel, ONE launch. 130 rows over 4
    # experts: share ceil(130 / 4) = 33, padded to whole 16 bytes (8 bf16 elements) = 40 rows per expert, priced as
    # one batched GEMM 4 x 40 x 1024 x 256 (its FLOPs 2 x 4 x 40 x 1024 x 256), bytes as recorded
    h100, prior = _gpu("h100-sxm5-80gb"), PriorPredictor()
    rec = _grouped((130, 256), (4, 256, 1024), 4, "bfloat16")
    t, _ = predict_records(prior, [rec], h100, "bf16", None)
    import dataclasses

    by_hand = dataclasses.replace(rec, flops=2 * 4 * 40 * 1024 * 256,
                                  dims=(("b", 4), ("k", 256), ("m", 40), ("n", 1024)))
    assert t[0] == pytest.approx(prior.predict([by_hand], h100, "bf16")[0][0], rel=1e-12)
    assert any("fused grouped kernel" in n for n in grouped_notes([rec], h100))


@pytest.mark.parametrize("key, dtype, fused", [
    ("h100-sxm5-80gb", "float32", False),   # fp32: the fallback on any GPU
    ("h100-sxm5-80gb", "float16", False),   # fp16 too: the fast path is bf16 only
    ("a100-sxm4-80gb", "bfloat16", False),  # compute capability 8.0
    ("rtx5090-32gb", "bfloat16", False),    # GeForce Blackwell GB202: compute capability 12.0
    ("b200-sxm-180gb", "bfloat16", True),   # data-centre Blackwell GB100: 10.0
    ("gh200-96gb", "bfloat16", True),       # Hopper: 9.0
    ("mi300x-192gb", "bfloat16", False),    # ROCm: priced as the fallback (the CK kernel is a build option)
])
def test_which_gpus_and_dtypes_run_the_fused_kernel(key, dtype, fused):
    gpu, prior = _gpu(key), PriorPredictor()
    prec = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}[dtype]
    rec = _grouped((256, 512), (8, 512, 1024), 8, dtype)
    t = predict_records(prior, [rec], gpu, prec, None)[0][0]
    # 256 rows over 8 experts: 32 each, aligned; fused = the recorded batched GEMM 8 x 32 x 1024 x 512 (one
    # launch), loop = 8 x the mm 32 x 1024 x 512
    batched = prior.predict([_gemm(8, 32, 1024, 512, dtype)], gpu, prec)[0][0]
    loop = 8 * prior.predict([_gemm(1, 32, 1024, 512, dtype)], gpu, prec)[0][0]
    assert t == pytest.approx(batched if fused else loop, rel=1e-12)
    assert batched != pytest.approx(loop, rel=1e-3)  # the two really differ (8 launch gaps against one, at least)


def _per_layer(pred, gpu, prec, dtype, rows, groups=8, hidden=256, inter=512):
    return sum(predict_records(pred, _layer(rows, groups, hidden, inter, dtype), gpu, prec, None)[0])


def test_the_price_grows_with_the_rows_v100_fp32_public_fit(public_fit):
    # the expert shapes of the Llama-4-style test config of tests/test_mfu_fewer_rows.py (hidden 256, expert FFN
    # 512, 8 experts): priced as one batched GEMM each (the bmm model at a few rows per expert), these six GEMMs cost
    # 0.702 ms at 64 rows, 0.701 ms at 192 and 0.675 ms at 512 against 0.725 ms at 256 (measured before the fix)
    v100 = _gpu("v100-sxm2-16gb")
    rows = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096]
    t = [_per_layer(public_fit, v100, "default", "float32", r) for r in rows]
    assert all(b >= a for a, b in zip(t, t[1:])), list(zip(rows, t))


def test_the_price_grows_with_the_rows_h100_bf16_prior():
    h100, prior = _gpu("h100-sxm5-80gb"), PriorPredictor()
    for hidden, inter, groups in ((256, 512, 8), (2048, 1408, 64)):
        rows = list(range(groups, 4097, groups))  # every whole number of rows per expert up to 4096 rows
        t = [_per_layer(prior, h100, "bf16", "bfloat16", r, groups, hidden, inter) for r in rows]
        bad = [(a, b) for a, b, ta, tb in zip(rows, rows[1:], t, t[1:]) if tb < ta]
        assert not bad, (hidden, inter, groups, bad[:5])
