"""The NVML path of the tracker against a fake pynvml: energy counter on several GPUs, counter missing ->
power sampling, read errors mid-run mark windows (or samples) failed but never the run, a stuck counter switches
to sampling, and no device setting is ever changed."""

import sys
import time

import pytest

from _fake_nvml import Clock, base_module

import wattlint
from wattlint.calibrate import meters
from wattlint.tracking import Settings
from wattlint.tracking.record import read_record

SETTINGS = Settings(min_steps=5, min_stable_s=0.1, max_rel_ci=0.5)


def fake_pynvml(clock, powers, *, counter=True, fail=None, names=None):
    """``powers``: W per GPU index. ``fail(fn, index) -> bool``: raise NVMLError for that call now."""
    m = base_module("tracking changed a device setting")
    NVMLError = m.NVMLError
    m.nvmlInit = lambda: None
    m.nvmlDeviceGetCount = lambda: len(powers)
    m.nvmlDeviceGetHandleByIndex = lambda i: ("h", i)
    m.nvmlDeviceGetHandleByUUID = lambda u: ("h", int(u.rsplit("-", 1)[1]))

    def check(fn, h):
        m.calls.append((fn, h[1]))
        if fail is not None and fail(fn, h[1]):
            raise NVMLError(m.NVML_ERROR_GPU_IS_LOST)

    def energy(h):
        check("energy", h)
        if not counter:
            raise NVMLError(m.NVML_ERROR_NOT_SUPPORTED)
        return int(clock() * powers[h[1]] * 1000)  # mJ

    def power(h):
        check("power", h)
        return int(powers[h[1]] * 1000)  # mW
    m.nvmlDeviceGetTotalEnergyConsumption = energy
    m.nvmlDeviceGetPowerUsage = power
    m.nvmlDeviceGetName = lambda h: (names or {}).get(h[1], "NVIDIA H100 80GB HBM3")
    m.nvmlDeviceGetUUID = lambda h: f"GPU-fake-{h[1]}"
    return m


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)


def _run(tmp_path, clock, n=60, dt=0.1, **kw):
    base = dict(device="cuda", out=tmp_path, display="quiet", window_s=1.0, settings=SETTINGS, clock=clock,
                static=False, steps=2 * n, sync=False)
    base.update(kw)
    with wattlint.track(**base) as t:
        for _ in range(n):
            clock.t += dt
            t.step()
    return t, read_record(t.path)


def _run_wall_clock(tmp_path):
    """20 steps of 20 ms on the real clock (the sampling thread needs real time), 0.1-s windows."""
    with wattlint.track(device="cuda", out=tmp_path, display="quiet", window_s=0.1, settings=SETTINGS,
                        static=False, steps=40, sync=False) as t:
        for _ in range(20):
            time.sleep(0.02)
            t.step()
    return read_record(t.path)


def test_counter_on_two_gpus(monkeypatch, tmp_path):
    clock = Clock(1000.0)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(clock, {0: 300.0, 1: 200.0}))
    t, rec = _run(tmp_path, clock)
    h = rec.header
    assert h["device"]["count"] == 2 and h["device"]["gpu_key"] == "h100-sxm5-80gb"
    assert [c["energy_source"] for c in h["channels"]] == ["counter", "counter"]
    for w in rec.windows:  # each window: exact counter deltas, 300 W and 200 W over its duration
        d = w["t1"] - w["t0"]
        assert w["channels"][0]["energy_j"] == pytest.approx(300.0 * d, abs=1e-3)
        assert w["channels"][1]["energy_j"] == pytest.approx(200.0 * d, abs=1e-3)
    a = rec.summary["analysis"]
    assert a["per_step"]["device_power_w"] == pytest.approx(500.0, rel=1e-4)
    assert a["projection"]["device_energy_j"] == pytest.approx(500.0 * 12.0, rel=1e-4)  # 120 steps x 0.1 s


def test_cuda_visible_devices_selects_the_gpus(monkeypatch, tmp_path):
    clock = Clock(1000.0)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(clock, {0: 300.0, 1: 200.0, 2: 100.0}))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    t, rec = _run(tmp_path, clock, n=20)
    assert rec.header["device"]["count"] == 1
    w = rec.windows[0]
    assert w["channels"][0]["energy_j"] == pytest.approx(100.0 * (w["t1"] - w["t0"]), abs=1e-3)


def test_counter_read_errors_mid_run_fail_windows_not_the_run(monkeypatch, tmp_path):
    clock = Clock(1000.0)
    # GPU 1's counter raises between t = 1003.05 and 1004.05 (about one window boundary)
    def fail(fn, i):
        return fn == "energy" and i == 1 and 1003.05 <= clock() <= 1004.05
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(clock, {0: 300.0, 1: 200.0}, fail=fail))
    t, rec = _run(tmp_path, clock)
    assert rec.summary["status"] == "completed" and rec.summary["steps"] == 60
    g1 = [w["channels"][1] for w in rec.windows]
    failed = [c for c in g1 if c["energy_j"] is None]
    # the read at the boundary inside the failure fails that window; the next one has no start reading
    assert len(failed) == 2 and "NVML" in failed[0]["error"] and "previous read failed" in failed[1]["error"]
    assert all(w["channels"][0]["energy_j"] is not None for w in rec.windows)  # GPU 0 unaffected
    ch = rec.summary["analysis"]["channels"][1]
    assert ch["windows_failed"] == 2 and ch["avg_power_w"] == pytest.approx(200.0, rel=1e-4)
    # the failed windows are filled at the stable power: GPU 1 energy still ~ 200 W x 6 s
    assert ch["measured_energy_j"] + ch["filled_energy_j"] == pytest.approx(200.0 * 6.0, rel=1e-3)


def test_counter_missing_falls_back_to_sampling_with_failed_samples(monkeypatch, tmp_path):
    monkeypatch.setattr(meters, "TRACK_SAMPLING_PERIOD_S", 0.005)
    state = {"k": 0}

    def fail(fn, i):  # every 4th power sample of GPU 0 fails
        if fn == "power" and i == 0:
            state["k"] += 1
            return state["k"] % 4 == 0
        return False
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(time.perf_counter, {0: 250.0}, counter=False,
                                                           fail=fail))
    rec = _run_wall_clock(tmp_path)
    assert rec.header["channels"][0]["energy_source"] == "sampling"
    assert any("not supported" in n for n in rec.header["notes"])
    ws = [w["channels"][0] for w in rec.windows]
    assert all(c["source"] == "sampling" for c in ws)
    assert sum(c.get("failed_samples", 0) for c in ws) > 0
    for w in rec.windows:  # constant power: the integral is exact whatever samples failed
        if w["channels"][0]["energy_j"] is not None:
            assert w["channels"][0]["energy_j"] == pytest.approx(250.0 * (w["t1"] - w["t0"]), abs=_rounding(250.0, w))
    assert rec.summary["analysis"]["per_step"]["device_power_w"] == pytest.approx(250.0, rel=1e-6)


def _rounding(power: float, w: dict) -> float:
    """How far the record's energy_j can sit from power x (t1 - t0) read back: the record keeps every float to 7
    significant digits (tracking/record.py), i.e. within 5e-7 of each value relative to it: energy_j by 5e-7 x E, and
    t1 - t0 by 5e-7 x (|t0| + |t1|) (a short window late in the run differs from its rounded bounds by more than
    1e-6 of itself: the test failed about half its runs at rel=1e-6)."""
    e = power * (w["t1"] - w["t0"])
    return 5e-7 * abs(e) + power * 5e-7 * (abs(w["t0"]) + abs(w["t1"])) + 1e-12


def test_stuck_counter_switches_to_sampling(monkeypatch, tmp_path):
    monkeypatch.setattr(meters, "TRACK_SAMPLING_PERIOD_S", 0.005)
    monkeypatch.setattr("wattlint.tracking.devices.COUNTER_STUCK_MIN_S", 0.05)
    mod = fake_pynvml(time.perf_counter, {0: 300.0})
    mod.nvmlDeviceGetTotalEnergyConsumption = lambda h: 123456  # readable, but never moves
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    rec = _run_wall_clock(tmp_path)
    first = rec.windows[0]["channels"][0]
    assert first["energy_j"] is None and "did not move" in first["error"] and "switched to sampling" in first["error"]
    later = [w for w in rec.windows[1:] if w["channels"][0]["energy_j"] is not None]
    assert later and all(w["channels"][0]["source"] == "sampling" for w in later)
    for w in later:
        assert w["channels"][0]["energy_j"] == pytest.approx(300.0 * (w["t1"] - w["t0"]), abs=_rounding(300.0, w))
    assert rec.summary["status"] == "completed"


def test_no_nvml_means_time_only_not_a_failed_run(monkeypatch, tmp_path):
    clock = Clock(1000.0)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    t, rec = _run(tmp_path, clock, n=20)
    assert rec.summary["status"] == "completed" and rec.header["channels"] == []
    assert any("no GPU energy meter" in n and "nvidia-ml-py" in n for n in rec.header["notes"])
    assert rec.summary["analysis"]["projection"]["time_s"] == pytest.approx(4.0)
