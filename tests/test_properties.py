"""Properties of the estimate every user relies on (issue 4, 'What it must show')."""

from __future__ import annotations

import pytest

from wattlint.api import estimate
from _estimate_fixtures import mlp_graph

DS = "100000"  # a plain sample count: no dataset inference needed


@pytest.fixture(scope="module")
def g():
    return mlp_graph()


def E(graph, **kw):
    kw.setdefault("gpu", "a100-sxm4-80gb")
    return estimate(graph, **kw)


def test_energy_and_time_linear_in_epochs(g):
    a = E(g, epochs=2, dataset="64000", batch_size=64)  # 1000 steps per epoch: no rounding
    b = E(g, epochs=6, dataset="64000", batch_size=64)
    assert b.plan.steps == 3 * a.plan.steps
    for k in ("energy_kwh", "gpu_energy_kwh", "time_h", "gpu_hours", "co2_kg"):
        assert getattr(b.total, k) == pytest.approx(3 * getattr(a.total, k), rel=1e-9)


def test_energy_and_time_linear_in_steps(g):
    a = E(g, steps=100)
    b = E(g, steps=700)
    for k in ("energy_kwh", "gpu_energy_kwh", "time_h", "co2_kg"):
        assert getattr(b.total, k) == pytest.approx(7 * getattr(a.total, k), rel=1e-9)
    assert b.per_step == a.per_step


@pytest.mark.parametrize("sharding", ["none", "zero1", "zero3"])
def test_more_gpus_never_less_total_energy_for_same_work(sharding):
    # same global batch and steps: the work is identical; more GPUs only add communication and idle time
    base = None
    for n in (1, 2, 8, 16, 64):
        graph = mlp_graph(batch=max(1, 512 // n))
        e = E(graph, steps=200, batch_size=512, gpus=n, sharding=sharding)
        if base is not None:
            assert e.total.gpu_energy_kwh >= base.total.gpu_energy_kwh * (1 - 1e-9), n
            assert e.total.energy_kwh >= base.total.energy_kwh * (1 - 1e-9), n
        base = e


def test_h100_faster_than_t4(g):
    h = E(g, gpu="h100", steps=100)
    t = E(g, gpu="t4", steps=100)
    assert h.total.time_h < t.total.time_h / 3


@pytest.mark.parametrize("gpu", ["a100", "h100", "rtx3090", "t4", "v100-sxm2-16gb", "l40s"])
def test_half_precision_faster_than_fp32_on_tensor_core_gpus(g, gpu):
    from wattlint.hardware import resolve_gpu, supported_precisions

    f32 = E(g, gpu=gpu, steps=100, precision="fp32")
    # bf16 only where the GPU has it (V100 and T4 do not: asking for it there is an input error)
    halves = [p for p in ("bf16", "fp16") if p in supported_precisions(resolve_gpu(gpu)[0])]
    assert "fp16" in halves
    for prec in halves:
        half = E(g, gpu=gpu, steps=100, precision=prec)
        assert half.total.time_h < f32.total.time_h, prec
        assert half.total.gpu_energy_kwh < f32.total.gpu_energy_kwh, prec


def test_fr_less_co2_than_de_for_same_kwh(g):
    fr = E(g, steps=100, region="FR")
    de = E(g, steps=100, region="DE")
    assert fr.total.energy_kwh == pytest.approx(de.total.energy_kwh)
    assert fr.total.co2_kg < de.total.co2_kg / 3


def test_range_brackets_point_estimate(g):
    e = E(g, steps=100)
    lo, hi = e.total.energy_kwh_range
    assert lo < e.total.energy_kwh < hi


def test_pue_and_host_scope(g):
    e = E(g, steps=100, pue=1.5)
    t = e.total
    assert t.energy_kwh == pytest.approx((t.gpu_energy_kwh + t.host_energy_kwh) * 1.5)
    ps = e.per_step
    assert ps.gpu_energy_j * 100 / 3.6e6 == pytest.approx(t.gpu_energy_kwh)


def test_grad_accum_same_work_more_time_per_step(g):
    a = E(mlp_graph(batch=64), steps=10, batch_size=256, grad_accum=4)
    b = E(mlp_graph(batch=256), steps=10, batch_size=256)
    # same samples per step: similar energy (smaller micro-batches are a bit less efficient, never cheaper)
    assert a.total.gpu_energy_kwh >= b.total.gpu_energy_kwh * 0.999


def test_layers_shares_sum_to_compute_share(g):
    e = E(g, steps=10)
    s = sum(le.share for le in e.layers)
    # the layers hold the compute phases' energy; launch gaps and communication belong to no layer
    compute = sum(e.phases[p].gpu_energy_j for p in ("forward", "backward", "optimizer"))
    assert s == pytest.approx(compute / e.per_step.gpu_energy_j, rel=1e-9)
    assert 0.9 < s <= 1.0 + 1e-9
    assert e.layers[0].gpu_energy_j >= e.layers[-1].gpu_energy_j


ONNX = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples" / "resnet50.onnx"


@pytest.mark.skipif(not ONNX.exists(), reason="examples/resnet50.onnx not built")
def test_onnx_graph_autocast_and_gpu_order():
    from wattlint.api import trace

    graph = trace(str(ONNX), {})
    f32 = E(graph, gpu="a100", steps=100, precision="fp32")
    bf = E(graph, gpu="a100", steps=100, precision="bf16")
    assert bf.total.time_h < f32.total.time_h
    assert any("autocast" in a for a in bf.assumptions)
    assert E(graph, gpu="h100", steps=100).total.time_h < E(graph, gpu="t4", steps=100).total.time_h
