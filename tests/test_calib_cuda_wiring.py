"""The cuda backend's timing/launch/poll wiring, with torch.cuda mocked and ops on the CPU (no GPU needed).

Real-GPU behaviour is covered by tests/test_calib_gpu.py where a device exists; this catches wiring mistakes
(events, synchronisation, one batch in flight, counter polling while waiting) everywhere."""

import sys
import time

import pytest

torch = pytest.importorskip("torch")

from wattlint.calibrate import backends  # noqa: E402
from wattlint.calibrate.meters import NvmlMeter  # noqa: E402
from wattlint.calibrate.runner import measure_sample  # noqa: E402
from wattlint.calibrate.suites import load_suite  # noqa: E402


class FakeEvent:
    log = []

    def __init__(self, enable_timing=False):
        self.t = None

    def record(self):
        self.t = time.perf_counter()
        FakeEvent.log.append("record")

    def synchronize(self):
        FakeEvent.log.append("sync")

    def query(self):
        FakeEvent.log.append("query")
        return time.perf_counter() - self.t > 0.0005

    def elapsed_time(self, other):
        return (other.t - self.t) * 1000.0


@pytest.fixture
def mocked_cuda(monkeypatch):
    from _fake_cuda import mock_cuda_device

    props = mock_cuda_device(monkeypatch, FakeEvent)
    FakeEvent.log.clear()
    return props


def test_cuda_backend_times_with_events_and_polls_the_counter(mocked_cuda, monkeypatch):
    try:
        from test_calib_meters import fake_pynvml
    except ImportError:  # pragma: no cover - depends on pytest's import mode
        from tests.test_calib_meters import fake_pynvml

    mod = fake_pynvml(time.perf_counter, power_w=400.0, tick_s=0.02)
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    b = backends.CudaBackend()
    assert b.info()["sm_count"] == 132 and b.uuid() == "GPU-1234"
    spec, src = b.spec()
    assert spec.key == "h100-sxm5-80gb" and src == "database"
    m = NvmlMeter(0, b.uuid())
    suite = load_suite(str(__import__("pathlib").Path(__file__).parent / "data" / "calib-tiny.toml"))
    row = measure_sample(suite.samples[0], b, m, {"warmup_s": 0.01, "timing_s": 0.02, "window_s": 0.5}, 100.0)
    assert row["status"] == "ok" and row["time_s"] > 0 and row["power_source"] == "counter"
    assert row["avg_power_w"] == pytest.approx(400.0, rel=0.1)
    assert "query" in FakeEvent.log and "record" in FakeEvent.log  # one batch in flight, counter polled meanwhile
    assert mod.calls.count("energy") >= 4  # probe + window reads
