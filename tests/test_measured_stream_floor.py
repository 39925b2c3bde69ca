"""A measured correction never prices a kernel faster than memory can stream its data (review 2026-12-07: the
shipped H200 model priced GPT-2 1B's GELU layers at 9.4 TB/s on a 4.8 TB/s GPU)."""

import math

import pytest

from wattlint import costs
from wattlint.energy.predictor import CalibratedPredictor, PriorPredictor, get_predictor
from wattlint.hardware import resolve_gpu
from wattlint.types import OpKind, OpRecord, Phase, Status


class _Fast:
    """A fitted model that says every op runs e^-3 = 20x faster than the prior (the correction's clamp)."""

    card = {"data": {"record_kinds": ["elementwise"]}}

    def predict_corrections(self, rows):
        return [-3.0] * len(rows), [0.5] * len(rows)


def _gelu(n: int) -> OpRecord:
    c = costs.elementwise("gelu", [(n,)], (n,), "bfloat16")
    return OpRecord(op="aten.gelu.default", kind=OpKind.ELEMENTWISE, module="mlp.act", phase=Phase.FORWARD,
                    dtype="bfloat16", shapes=((n,),), flops=c.flops, bytes_read=c.bytes_read,
                    bytes_written=c.bytes_written, status=Status.HANDLED)


def test_a_large_elementwise_op_is_not_priced_past_the_memory_bandwidth():
    gpu = resolve_gpu("h200-sxm-141gb")[0]
    big = _gelu(1 << 28)  # 256 M bf16 elements: 512 MiB read + 512 MiB written, far beyond the 50 MB L2
    t, _ = CalibratedPredictor(_Fast(), "h200-sxm-141gb", transferred=False).predict([big], gpu, "bf16")
    floor = 2 * (1 << 28) * 2 / (gpu.memory_bw_gbs * 1e9)  # 1 GiB at 4,800 GB/s = 0.224 ms
    assert big.bytes == 2 * (1 << 28) * 2
    assert t[0] == pytest.approx(floor, rel=1e-9)
    prior_t, _ = PriorPredictor().predict([big], gpu, "bf16")
    assert prior_t[0] * math.exp(-3.0) < floor  # the correction alone would have gone below it


def test_an_op_that_fits_in_l2_keeps_its_correction():
    gpu = resolve_gpu("h200-sxm-141gb")[0]
    small = _gelu(1 << 20)  # 4 MiB in all: may stay in the L2
    t, _ = CalibratedPredictor(_Fast(), "h200-sxm-141gb", transferred=False).predict([small], gpu, "bf16")
    prior_t, _ = PriorPredictor().predict([small], gpu, "bf16")
    assert t[0] == pytest.approx(prior_t[0] * math.exp(-3.0), rel=1e-9)


def test_the_shipped_h200_model_respects_the_floor():
    gpu = resolve_gpu("h200-sxm-141gb")[0]
    pred = get_predictor(gpu)
    if pred.calibration != "measured":
        pytest.skip("no shipped H200 model")
    big = _gelu(1 << 28)
    t, _ = pred.predict([big], gpu, "bf16")
    assert t[0] >= big.bytes / (gpu.memory_bw_gbs * 1e9)


def test_no_floor_without_an_l2_size():
    """A CPU calibration device has no L2 size in its spec: the floor is not applied there (review: it bound every
    op at the single-thread copy rate)."""
    import dataclasses

    gpu = dataclasses.replace(resolve_gpu("h200-sxm-141gb")[0], l2_mb=0.0)
    big = _gelu(1 << 28)
    t, _ = CalibratedPredictor(_Fast(), "h200-sxm-141gb", transferred=False).predict([big], gpu, "bf16")
    prior_t, _ = PriorPredictor().predict([big], gpu, "bf16")
    assert t[0] == pytest.approx(prior_t[0] * math.exp(-3.0), rel=1e-9)
