"""Meters: NVML against a fake pynvml (counter windows, sampling fallback, error mapping), CPU model labels."""

import sys

import pytest

from _fake_nvml import Clock, base_module

from wattlint.calibrate import meters
from wattlint.calibrate.meters import CpuMeter, MeterError, NvmlMeter


def fake_pynvml(clock, *, power_w=300.0, tick_s=0.05, counter="ok", init_error=None):
    m = base_module("a meter changed a device setting")
    NVMLError = m.NVMLError

    def init():
        if init_error is not None:
            raise NVMLError(init_error)
    m.nvmlInit = init
    m.nvmlDeviceGetHandleByIndex = lambda i: ("h", i)
    m.nvmlDeviceGetHandleByUUID = lambda u: ("h", u)

    def energy(h):
        m.calls.append("energy")
        if counter == "unsupported":
            raise NVMLError(m.NVML_ERROR_NOT_SUPPORTED)
        if counter == "stuck":
            return 123456
        ticks = int(clock() / tick_s)
        return int(ticks * tick_s * power_w * 1000)  # mJ at the last tick
    m.nvmlDeviceGetTotalEnergyConsumption = energy
    m.nvmlDeviceGetPowerUsage = lambda h: int(power_w * 1000)
    m.nvmlDeviceGetTemperature = lambda h, s: 55
    m.nvmlDeviceGetClockInfo = lambda h, c: 1980 if c == 1 else 2619
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    m.nvmlDeviceGetUUID = lambda h: "GPU-1234"
    m.nvmlSystemGetDriverVersion = lambda: "550.54"
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700000
    return m


@pytest.fixture
def clock():
    return Clock()


def _install(monkeypatch, mod):
    monkeypatch.setitem(sys.modules, "pynvml", mod)


def test_counter_window_is_tick_aligned(monkeypatch, clock):
    _install(monkeypatch, fake_pynvml(clock, power_w=300.0))
    m = NvmlMeter()
    m.clock = clock
    assert m.energy_source == "counter"

    def step():  # 1 ms of "work", polling the counter as the CUDA backend does while it waits
        clock.t += 0.001
        m.poll()
    r = m.measure(step, 0.5)
    assert r.source == "counter"
    assert r.window_s >= 0.5
    assert r.avg_power_w == pytest.approx(300.0, rel=0.01)
    prov = m.provenance()
    assert prov["gpu_name"] == "NVIDIA H100 80GB HBM3" and prov["uuid"] == "GPU-1234"
    assert prov["power_limit_w"] == 700.0 and prov["driver_version"] == "550.54"
    st = m.state()
    assert st["temperature_c"] == 55 and st["sm_clock_mhz"] == 1980


def test_unsupported_counter_falls_back_to_sampling(monkeypatch, clock):
    _install(monkeypatch, fake_pynvml(clock, power_w=250.0, counter="unsupported"))
    m = NvmlMeter()
    assert m.energy_source == "sampling" and "not supported" in m.counter_note
    r = m.measure(lambda: None, 0.5)  # real-time sampling thread
    assert r.source == "sampling" and r.samples > 5
    assert r.avg_power_w == pytest.approx(250.0)


def test_stuck_counter_is_detected_by_the_probe(monkeypatch, clock):
    _install(monkeypatch, fake_pynvml(clock, counter="stuck"))
    monkeypatch.setattr(meters.time, "sleep", lambda s: None)
    m = NvmlMeter()
    probe = m.probe_counter(0.01)
    assert probe["counter_moving"] is False and m.energy_source == "sampling"


def test_nvml_errors_become_clear_meter_errors(monkeypatch, clock):
    mod = fake_pynvml(clock, init_error=12)
    _install(monkeypatch, mod)
    with pytest.raises(MeterError, match="NVIDIA driver installed"):
        NvmlMeter()


def test_missing_pynvml_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(MeterError, match="nvidia-ml-py"):
        NvmlMeter()


def test_counter_stuck_while_busy_raises(monkeypatch, clock):
    _install(monkeypatch, fake_pynvml(clock, counter="stuck"))
    m = NvmlMeter()
    m.clock = clock

    def step():
        clock.t += 0.01
    with pytest.raises(MeterError, match="did not change"):
        m.counter_window(step, 0.5)
    # measure() falls back to sampling for the rest of the run and says so
    r = m.measure(step, 0.01)
    assert r.source == "sampling" and m.energy_source == "sampling" and "mid-run" in m.counter_note


def test_cpu_meter_is_labelled_modelled():
    m = CpuMeter(2)
    r = m.measure(lambda: None, 1.0)
    assert r.source == "modelled" and r.avg_power_w == meters.CPU_IDLE_W + 2 * meters.CPU_W_PER_THREAD
    assert "not a measurement" in m.provenance()["power_model"]


def test_import_wattlint_does_not_import_meters_deps():
    import subprocess

    code = ("import sys, wattlint.calibrate.suites, wattlint.calibrate.runner, wattlint.energy.model; "
            "bad = [m for m in ('torch', 'pynvml', 'lightgbm') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
