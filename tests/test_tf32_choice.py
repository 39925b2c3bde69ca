"""Allowing TF32 adds kernels to cuBLAS / cuDNN's choice, it removes none: a float32 matmul or convolution that may
use TF32 costs the faster of its TF32 tensor-core and FP32 CUDA-core prices (wattlint.energy.pricing).

Found by benchmarks/invariants.py: --precision tf32 was predicted slower than --precision fp32 on the boards whose
TF32 tensor peak is no higher than their FP32 CUDA-core peak (RTX 3090: 35.6 and 35.6 TFLOP/s; ResNet-50 batch 64
on an RTX 3090 0.199 s at tf32 vs 0.152 s at fp32, on an A10 0.250 s vs 0.211 s), because the TF32 path paid the
NCHW -> NHWC transposes and the prior's rate while the FP32 path was priced by the public-fit model."""

from __future__ import annotations

from wattlint import costs
from wattlint.energy.pricing import price, tf32_choice
from wattlint.hardware import resolve_gpu
from wattlint.types import CostGraph, ModelInfo, OpRecord, Phase


class ByPrecision:
    """Every op with work takes ``prices[precision]`` = (seconds, watts); records the precisions it was asked."""

    calibration = "prior"
    source = "stub"

    def __init__(self, prices):
        self.prices = prices
        self.asked = []

    def predict(self, records, gpu, precision, utilization=None):
        self.asked.append((precision, len(records)))
        t, p = self.prices[precision]
        return [t] * len(records), [p] * len(records)


def _gemm(dtype="float32"):
    c = costs.gemm(1, 4096, 4096, 4096, dtype)
    return OpRecord(op="aten.mm.default", kind=c.kind, module="fc", phase=Phase.FORWARD, dtype=dtype, flops=c.flops,
                    bytes_read=c.bytes_read, bytes_written=c.bytes_written, dims=c.dims)


def _graph(*recs):
    return CostGraph(model=ModelInfo(source="stub", format="torch", params=1, param_bytes=4), records=tuple(recs),
                     micro_batch=1, precision="fp32")


RTX3090 = resolve_gpu("rtx3090-24gb")[0]


def test_tf32_op_takes_the_fp32_kernel_when_that_is_faster():
    # TF32 priced 2.0 ms at 300 W, FP32 1.5 ms at 250 W: the FP32 kernel wins -> 1.5 ms, 250 W (energy 0.375 J,
    # not 0.6 J)
    g = _graph(_gemm())
    pred = ByPrecision({"tf32": (2.0e-3, 300.0), "fp32": (1.5e-3, 250.0)})
    p = price(g, RTX3090, "tf32", None, pred)
    assert p.times_s == (1.5e-3,) and p.powers_w == (250.0,)
    assert p.energies_j[0] == 1.5e-3 * 250.0
    assert pred.asked == [("tf32", 1), ("fp32", 1)]
    assert any("faster of their TF32" in n for n in p.notes)


def test_tf32_op_keeps_the_tf32_kernel_when_that_is_faster():
    # TF32 1.0 ms at 300 W, FP32 3.0 ms at 250 W: TF32 stays
    pred = ByPrecision({"tf32": (1.0e-3, 300.0), "fp32": (3.0e-3, 250.0)})
    p = price(_graph(_gemm()), RTX3090, "tf32", None, pred)
    assert p.times_s == (1.0e-3,) and p.powers_w == (300.0,)


def test_no_alternative_where_tf32_does_not_apply():
    pred = ByPrecision({"fp32": (1.0e-3, 200.0), "default": (1.0e-3, 200.0), "bf16": (1.0e-3, 200.0),
                        "tf32": (1.0e-3, 200.0)})
    # fp32: TF32 off, one price; default: PyTorch matmuls without TF32; a bf16 GEMM runs on bf16 tensor cores
    for prec, rec in (("fp32", _gemm()), ("default", _gemm()), ("bf16", _gemm("bfloat16"))):
        pred.asked.clear()
        p = price(_graph(rec), RTX3090, prec, None, pred)
        assert pred.asked == [(prec, 1)], prec
        assert not any("faster of their TF32" in n for n in p.notes)
    # a what-if utilization override keeps the TF32 price
    pred.asked.clear()
    price(_graph(_gemm()), RTX3090, "tf32", 0.5, pred)
    assert pred.asked == [("tf32", 1)]
    # a GPU without TF32 (V100: no tf32 peak): nothing to choose
    assert not tf32_choice(_gemm(), resolve_gpu("v100-sxm2-32gb")[0], "tf32")
    assert tf32_choice(_gemm(), RTX3090, "tf32")


def test_tf32_never_slower_than_fp32_on_geforce_ampere_with_the_shipped_models():
    # the invariant itself on the shipped energy model of the RTX 3090 (public-fit for FP32 GEMMs, the prior for TF32)
    from wattlint.energy.predictor import get_predictor

    g = _graph(_gemm())
    model = get_predictor(RTX3090)
    t_tf32 = sum(price(g, RTX3090, "tf32", None, model).times_s)
    t_fp32 = sum(price(g, RTX3090, "fp32", None, model).times_s)
    assert t_tf32 <= t_fp32
