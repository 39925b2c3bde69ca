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
    assert note.startswith("data loading: each of the 3 epochs waits 32 ms for its first batch (64 samples x "
                           "0.0005 s")


@pytest.mark.parametrize("steps, started", [(196, 1), (197, 2), (980, 5), (1, 1)])
def test_started_epochs_from_steps_and_the_dataset(steps, started):
    """50,000 samples at batch 256 are ceil(50000 / 256) = 196 steps per epoch (last partial batch kept): 196 steps
    start one epoch, 197 two, 980 five (review: the fractional epochs 196 x 256 / 50000 = 1.0035 counted two)."""
    plan = _plan(steps=steps, dataset_size=50_000, epochs=steps * 256 / 50_000, loader_sample_time_s=1e-3)
    assert system.loader_started_epochs(plan) == started
    assert system.loader_wait_h(plan)[0] == pytest.approx(started * 256 * 1e-3 / 3600)


def test_data_parallel_in_one_process_loads_the_whole_batch():
    """nn.DataParallel (uneven_batch) has one DataLoader that builds the whole batch before scattering it: 64
    samples, not the 22 of one replica's share (review)."""
    plan = _plan(epochs=1.0, gpus=3, batch_size=64, uneven_batch=True, loader_sample_time_s=1e-3)
    assert plan.micro_batch_size == 22
    assert system.loader_batch(plan) == 64
    assert system.loader_wait_h(plan)[0] == pytest.approx(64 * 1e-3 / 3600)


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
    # each total is written to 6 significant digits (0.107xxx kWh: half a unit of the last digit is 1.8 J), so the
    # difference of two carries up to 3.6 J of rounding
    assert (t1["gpu_energy_kwh"] - t0["gpu_energy_kwh"]) * 3.6e6 == pytest.approx(20.48 * idle, abs=3.6)
    assert with_loader["plan"]["loader_sample_time_s"] == 0.004
    assert with_loader["per_step"] == base["per_step"]  # a per-epoch cost, not a step cost
    # the model's 5-95 % time band scales the priced steps, not the stated wait (review)
    lo, hi = (t0["time_h_range"][i] / t0["time_h"] for i in (0, 1))
    assert t1["time_h_range"][0] == pytest.approx(t0["time_h"] * lo + 20.48 / 3600, rel=1e-3)
    assert t1["time_h_range"][1] == pytest.approx(t0["time_h"] * hi + 20.48 / 3600, rel=1e-3)


def test_the_text_report_shows_the_wait(run_cli):
    code, out, err = run_cli(*ARGS[:-2], "--epochs", "20", "--loader-sample-time", "0.004")
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if "data-loader wait" in ln)
    assert "20.5 s" in line and "--loader-sample-time; in Time" in line


@pytest.mark.parametrize("bad", ["0", "-1", "2", "nan"])
def test_bad_loader_sample_time_is_an_input_error(run_cli, bad):
    code, out, err = run_cli(*ARGS, "--epochs", "1", "--loader-sample-time", bad)
    assert code == 2 and out == ""
    assert err.strip() == f"wattlint: error: argument --loader-sample-time: {bad!r}: expected seconds in (0, 1]"


def test_goodput_row_counts_the_loader_wait_as_productive_time(run_cli):
    code, out, err = run_cli(*ARGS[:-2], "--epochs", "20", "--loader-sample-time", "0.004", "--goodput", "0.8")
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("Goodput"))
    assert "80% of wall time in productive steps and loader waits" in line
