"""--loader-sample-time: each epoch's first micro-batch is built by one DataLoader worker before the GPU has work
(energy.system.loader_wait_h). Expected values by hand."""

from __future__ import annotations

import json

import pytest

from wattlint.energy import system
from wattlint.types import Plan

ARGS = ("examples/resnet50.onnx", "--gpu", "a100", "--dataset", "50000", "--batch-size", "256", "--format", "json")


def _plan(**kw) -> Plan:
    return Plan(**{"batch_size": 256, "steps": 196, "pue": 1.0, "carbon_intensity_g_per_kwh": 0.0, **kw})


def test_wait_per_epoch_by_hand():
    # 2.5 epochs start 3 epochs; micro-batch 256 / (2 GPUs x 2 accumulation) = 64 samples x 0.5 ms = 32 ms each
    h, note = system.loader_wait_h(_plan(epochs=2.5, gpus=2, grad_accum=2, loader_sample_time_s=5e-4))
    assert h == pytest.approx(3 * 64 * 5e-4 / 3600)
    assert note.startswith("data loading: each of the 3 epochs waits 32 ms for its first micro-batch (64 samples x "
                           "0.0005 s")


def test_not_modelled_is_stated_and_costs_nothing():
    h, note = system.loader_wait_h(_plan(epochs=1.0))
    assert h == 0.0 and note.startswith("data loading not modelled")
    h, note = system.loader_wait_h(_plan(loader_sample_time_s=1e-3))  # steps only: no epochs to start
    assert h == 0.0 and "not applied (the plan has no epochs" in note


def test_the_wait_is_wall_time_at_idle_power(run_cli):
    """20 epochs x 256 samples x 4 ms = 20.48 s more wall time, with the A100's idle power on the GPU."""
    code, out, err = run_cli(*ARGS, "--epochs", "20")
    assert code == 0, err
    base = json.loads(out)
    code, out, err = run_cli(*ARGS, "--epochs", "20", "--loader-sample-time", "0.004")
    assert code == 0, err
    with_loader = json.loads(out)
    t0, t1 = base["total"], with_loader["total"]
    assert t1["loader_wait_h"] == pytest.approx(20.48 / 3600, rel=1e-4)
    assert (t1["time_h"] - t0["time_h"]) * 3600 == pytest.approx(20.48, rel=1e-3)  # totals are rounded
    idle = with_loader["hardware"]["idle_w"]
    assert (t1["gpu_energy_kwh"] - t0["gpu_energy_kwh"]) * 3.6e6 == pytest.approx(20.48 * idle, rel=1e-3)
    assert with_loader["plan"]["loader_sample_time_s"] == 0.004
    assert with_loader["per_step"] == base["per_step"]  # a per-epoch cost, not a step cost


@pytest.mark.parametrize("bad", ["0", "-1", "2", "nan"])
def test_bad_loader_sample_time_is_an_input_error(run_cli, bad):
    code, out, err = run_cli(*ARGS, "--epochs", "1", "--loader-sample-time", bad)
    assert code == 2 and out == ""
    assert err.strip() == f"wattlint [estimate]: argument --loader-sample-time: {bad!r}: expected seconds in (0, 1]"
