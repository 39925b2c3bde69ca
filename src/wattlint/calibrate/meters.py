"""Energy meters: NVML (energy counter, power-sampling fallback), CPU (modelled power), fake (deterministic).

A meter measures the *average board power* while a step function keeps the device busy with one op, over a
window; the runner multiplies it by the op's separately timed duration (CUDA events) to get energy per call.
Meters only read; none changes clocks, power limits, persistence, MIG or any other device setting.

Counter meters align the window to counter ticks (NVML's total-energy counter updates every ~20-100 ms): the
window starts when the counter first changes and ends when it changes again after ``window_s`` (>= 0.5 s), with
the device busy the whole time, so the quantisation of the counter does not bias short windows.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..types import WattlintError

MIN_COUNTER_WINDOW_S = 0.5
TICK_TIMEOUT_S = 1.0  # no counter change for this long while busy -> the counter is not moving
SAMPLING_PERIOD_S = 0.01


class MeterError(WattlintError):
    """The meter cannot measure (no NVML, no permission, unsupported query, counter stuck)."""


@dataclass(frozen=True)
class PowerReading:
    avg_power_w: float
    window_s: float
    energy_j: float  # over the window
    source: str  # counter | sampling | modelled | fake-counter
    samples: int = 0


class Meter:
    """Interface. ``measure(step, window_s)`` calls ``step()`` repeatedly (each call enqueues a few ms of work)."""

    name = "meter"
    energy_source = "none"

    def idle_power(self, seconds: float) -> PowerReading:  # pragma: no cover - interface
        raise NotImplementedError

    def measure(self, step: Callable[[], None], window_s: float) -> PowerReading:  # pragma: no cover
        raise NotImplementedError

    def state(self) -> dict[str, float]:
        return {}

    def provenance(self) -> dict[str, Any]:
        return {"name": self.name, "energy_source": self.energy_source}

    def close(self) -> None:
        pass


class CounterMeter(Meter):
    """Shared window logic for meters with a monotonically increasing energy counter (joules)."""

    clock: Callable[[], float] = staticmethod(time.perf_counter)

    def read_energy_j(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    _watch: list | None = None

    def poll(self) -> None:
        """Called by a backend while it waits on the device: notices a counter tick as soon as it happens, so
        the window's start/end times are not late by a whole op."""
        w = self._watch
        if w is not None and w[1] is None:
            e = self.read_energy_j()
            if e != w[0]:
                w[1] = (e, self.clock())

    def _wait_tick(self, step: Callable[[], None] | None, last: float, timeout: float) -> tuple[float, float]:
        start = self.clock()
        self._watch = [last, None]
        try:
            while True:
                if step is not None:
                    step()
                else:
                    time.sleep(0.002)
                self.poll()
                if self._watch[1] is not None:
                    return self._watch[1]
                if self.clock() - start > timeout:
                    raise MeterError("energy counter did not change for "
                                     f"{timeout:.1f} s while measuring (counter stuck or not supported)")
        finally:
            self._watch = None

    def counter_window(self, step: Callable[[], None] | None, window_s: float) -> PowerReading:
        window_s = max(window_s, MIN_COUNTER_WINDOW_S)
        e_last = self.read_energy_j()
        e0, t0 = self._wait_tick(step, e_last, TICK_TIMEOUT_S)
        while self.clock() - t0 < window_s:
            if step is not None:
                step()
            else:
                time.sleep(0.005)
        e_last = self.read_energy_j()
        e1, t1 = self._wait_tick(step, e_last, TICK_TIMEOUT_S)
        dt = t1 - t0
        energy = e1 - e0
        return PowerReading(energy / dt if dt > 0 else 0.0, dt, energy, self.energy_source)


# ---- NVML ------------------------------------------------------------------------------------------------------

def _import_pynvml():
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        raise MeterError("the nvml meter needs nvidia-ml-py ('pip install nvidia-ml-py'), which provides pynvml") \
            from None
    return pynvml


_NVML_HINTS = {
    "NVML_ERROR_LIBRARY_NOT_FOUND": "libnvidia-ml.so not found: is the NVIDIA driver installed?",
    "NVML_ERROR_DRIVER_NOT_LOADED": "the NVIDIA driver is not loaded",
    "NVML_ERROR_NO_PERMISSION": "no permission to query the GPU through NVML",
    "NVML_ERROR_NOT_SUPPORTED": "not supported on this GPU/driver",
    "NVML_ERROR_GPU_IS_LOST": "the GPU fell off the bus",
    "NVML_ERROR_INVALID_ARGUMENT": "invalid device index/UUID",
    "NVML_ERROR_NOT_FOUND": "device not found",
}


def nvml_error(pynvml, err: Exception, what: str) -> MeterError:
    """Map a pynvml.NVMLError to a MeterError with a clear message."""
    code = getattr(err, "value", None)
    name = ""
    for attr in dir(pynvml):
        if attr.startswith("NVML_ERROR_") and getattr(pynvml, attr) == code:
            name = attr
            break
    hint = _NVML_HINTS.get(name, "")
    return MeterError(f"NVML {what} failed: {err}{' (' + hint + ')' if hint else ''}")


class NvmlMeter(CounterMeter):
    """Board power of one NVIDIA GPU via NVML. Energy from ``nvmlDeviceGetTotalEnergyConsumption`` (mJ) over
    tick-aligned windows; where the counter is unsupported or does not move, the average of
    ``nvmlDeviceGetPowerUsage`` sampled every 10 ms by a thread (``source = sampling``)."""

    name = "nvml"

    def __init__(self, index: int = 0, uuid: str | None = None, *, force_sampling: bool = False):
        self.pynvml = pynvml = _import_pynvml()
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            raise nvml_error(pynvml, e, "init") from None
        self.handle = None
        if uuid:
            for key in (uuid, uuid.encode()):  # str or bytes, across nvidia-ml-py versions
                try:
                    self.handle = pynvml.nvmlDeviceGetHandleByUUID(key)
                    break
                except Exception:  # NVMLError, or the other type
                    self.handle = None
        if self.handle is None:
            self.handle = self._call("nvmlDeviceGetHandleByIndex", index)
            if uuid:  # never another GPU's power (CUDA_VISIBLE_DEVICES / MIG renumber devices; NVML index 0 is not
                # the process's GPU 0): the handle must be the GPU asked for
                got = self._opt("nvmlDeviceGetUUID", self.handle)
                got = got.decode() if isinstance(got, bytes) else got
                if not (isinstance(got, str) and got.lower().startswith(uuid.lower())):
                    raise MeterError(f"NVML finds no GPU of UUID {uuid}, and NVML device {index} is "
                                     f"{got or 'of unknown UUID'}: its power is never measured in place of the GPU "
                                     "asked for (check CUDA_VISIBLE_DEVICES; a MIG instance has no power reading)")
        self.counter_supported = not force_sampling
        if self.counter_supported:
            try:
                pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            except pynvml.NVMLError:
                self.counter_supported = False
        self.counter_note = "" if self.counter_supported else "total-energy counter not supported: power sampling"
        self.temps: list[float] = []

    @property
    def energy_source(self) -> str:  # type: ignore[override]
        return "counter" if self.counter_supported else "sampling"

    def _call(self, fn: str, *args):
        try:
            return getattr(self.pynvml, fn)(*args)
        except self.pynvml.NVMLError as e:
            raise nvml_error(self.pynvml, e, fn) from None

    def _opt(self, fn: str, *args, default=None):
        try:
            return getattr(self.pynvml, fn)(*args)
        except Exception:
            return default

    def read_energy_j(self) -> float:
        return self._call("nvmlDeviceGetTotalEnergyConsumption", self.handle) / 1000.0

    def power_w(self) -> float:
        return self._call("nvmlDeviceGetPowerUsage", self.handle) / 1000.0

    def _sampled(self, step: Callable[[], None] | None, window_s: float) -> PowerReading:
        vals: list[float] = []
        stop = threading.Event()
        errors: list[Exception] = []

        def sampler():
            while not stop.is_set():
                try:
                    vals.append(self.power_w())
                except Exception as e:  # pragma: no cover - device dependent
                    errors.append(e)
                    return
                stop.wait(SAMPLING_PERIOD_S)

        th = threading.Thread(target=sampler, daemon=True)
        t0 = self.clock()
        th.start()
        while self.clock() - t0 < window_s:
            if step is not None:
                step()
            else:
                time.sleep(0.005)
        stop.set()
        th.join()
        dt = self.clock() - t0
        if errors:
            raise errors[0]
        if not vals:
            raise MeterError("power sampling returned no samples")
        p = sum(vals) / len(vals)
        return PowerReading(p, dt, p * dt, "sampling", len(vals))

    def probe_counter(self, seconds: float = 1.0) -> dict[str, Any]:
        """Is the counter readable and moving? Switches to sampling when it is not (said in the provenance)."""
        out: dict[str, Any] = {"counter_supported": self.counter_supported}
        if not self.counter_supported:
            return out
        e0 = self.read_energy_j()
        t0 = time.perf_counter()
        e1 = e0
        waited = 0.0
        while waited < 2.0 * seconds:  # idle counters may update slowly: wait up to 2x for a change
            time.sleep(seconds / 10)
            waited = time.perf_counter() - t0
            e1 = self.read_energy_j()
            if e1 != e0 and waited >= seconds:
                break
        out.update({"counter_delta_j": e1 - e0, "probe_s": round(waited, 3), "power_w": self.power_w()})
        if e1 == e0:
            self.counter_supported = False
            self.counter_note = "total-energy counter did not move in a 1 s probe: power sampling"
        out["counter_moving"] = self.counter_supported
        return out

    def idle_power(self, seconds: float) -> PowerReading:
        if self.counter_supported:
            try:
                return self.counter_window(None, seconds)
            except MeterError:
                self.counter_supported = False
                self.counter_note = "total-energy counter stuck during idle measurement: power sampling"
        return self._sampled(None, seconds)

    def measure(self, step: Callable[[], None], window_s: float) -> PowerReading:
        if self.counter_supported:
            try:
                return self.counter_window(step, window_s)
            except MeterError as e:  # the counter stopped moving mid-run: sample power from now on, say so
                self.counter_supported = False
                self.counter_note = f"switched to power sampling mid-run: {e}"
        return self._sampled(step, max(window_s, MIN_COUNTER_WINDOW_S))

    def state(self) -> dict[str, float]:
        p = self.pynvml
        s = {
            "temperature_c": self._opt("nvmlDeviceGetTemperature", self.handle, p.NVML_TEMPERATURE_GPU),
            "sm_clock_mhz": self._opt("nvmlDeviceGetClockInfo", self.handle, p.NVML_CLOCK_SM),
            "mem_clock_mhz": self._opt("nvmlDeviceGetClockInfo", self.handle, p.NVML_CLOCK_MEM),
            "power_w": (self._opt("nvmlDeviceGetPowerUsage", self.handle) or 0) / 1000.0,
        }
        return {k: float(v) for k, v in s.items() if v is not None}

    def provenance(self) -> dict[str, Any]:
        p = self.pynvml
        h = self.handle

        def dec(v):
            return v.decode() if isinstance(v, bytes) else v

        cc = self._opt("nvmlDeviceGetCudaComputeCapability", h)
        mem = self._opt("nvmlDeviceGetMemoryInfo", h)
        out = {
            "name": "nvml",
            "energy_source": self.energy_source,
            "counter_note": self.counter_note,
            "gpu_name": dec(self._opt("nvmlDeviceGetName", h)),
            "uuid": dec(self._opt("nvmlDeviceGetUUID", h)),
            "serial": None,  # never recorded
            "driver_version": dec(self._opt("nvmlSystemGetDriverVersion")),
            "cuda_driver_version": self._opt("nvmlSystemGetCudaDriverVersion"),
            "nvml_version": dec(self._opt("nvmlSystemGetNVMLVersion")),
            "compute_capability": list(cc) if cc else None,
            "memory_total_bytes": getattr(mem, "total", None),
            "power_limit_w": (self._opt("nvmlDeviceGetEnforcedPowerLimit", h) or 0) / 1000.0 or None,
            "power_limit_default_w": (self._opt("nvmlDeviceGetPowerManagementDefaultLimit", h) or 0) / 1000.0
            or None,
            "max_sm_clock_mhz": self._opt("nvmlDeviceGetMaxClockInfo", h, p.NVML_CLOCK_SM),
            "max_mem_clock_mhz": self._opt("nvmlDeviceGetMaxClockInfo", h, p.NVML_CLOCK_MEM),
            "app_sm_clock_mhz": self._opt("nvmlDeviceGetApplicationsClock", h, p.NVML_CLOCK_SM),
            "persistence_mode": self._opt("nvmlDeviceGetPersistenceMode", h),
            "pcie_gen": self._opt("nvmlDeviceGetCurrPcieLinkGeneration", h),
            "mig_mode": self._opt("nvmlDeviceGetMigMode", h),
        }
        return out

    def close(self) -> None:
        try:
            self.pynvml.nvmlShutdown()
        except Exception:  # pragma: no cover
            pass


# ---- passive reading for tracked training runs (wattlint.track, wattlint.tracking) -----------------------------------------------

def nvml_device_count() -> int:
    """Number of GPUs NVML sees (MeterError when NVML cannot start)."""
    pynvml = _import_pynvml()
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise nvml_error(pynvml, e, "init") from None
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except pynvml.NVMLError as e:
        raise nvml_error(pynvml, e, "nvmlDeviceGetCount") from None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # pragma: no cover
            pass


TRACK_SAMPLING_PERIOD_S = 0.1  # power sampling of a tracked run (no energy counter): 10 Hz, like Zeus' monitor


class SampledEnergy:
    """A software energy counter for GPUs without NVML's total-energy counter: one daemon thread samples
    ``power_w()`` of each registered source every ``period_s`` and integrates it (trapezoid between successive
    good samples). A failed sample is counted, never raised: the integral bridges the gap from the last good
    sample to the next one, and the reader decides whether a window had too many failures to be trusted.

    ``read(key, now)`` -> (energy_j so far, good samples, failed samples, last error text); the energy is
    carried at the last good power from the last sample to ``now`` (back, when the sample is newer than ``now``)."""

    def __init__(self, period_s: float = TRACK_SAMPLING_PERIOD_S, clock: Callable[[], float] = time.perf_counter):
        self.period_s = period_s
        self.clock = clock
        self._sources: dict[Any, Callable[[], float]] = {}
        self._state: dict[Any, list] = {}  # key -> [energy_j, last_t, last_p, good, failed, last_error]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, key: Any, power_w: Callable[[], float]) -> None:
        with self._lock:
            self._sources[key] = power_w
            self._state[key] = [0.0, None, None, 0, 0, ""]
        self.sample_once(key)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="wattlint-power-sampler", daemon=True)
            self._thread.start()

    def sample_once(self, key: Any) -> None:
        fn = self._sources[key]
        t = self.clock()
        try:
            p = float(fn())
            ok = finite(p) and p >= 0
            err = "" if ok else f"invalid power reading {p!r}"
        except Exception as e:  # noqa: BLE001 - NVMLError or anything else: a failed sample, not a failed run
            ok, p, err = False, 0.0, f"{type(e).__name__}: {e}"
        with self._lock:
            st = self._state[key]
            if ok:
                if st[1] is not None:
                    st[0] += 0.5 * (st[2] + p) * (t - st[1])
                st[1], st[2] = t, p
                st[3] += 1
            else:
                st[4] += 1
                st[5] = err

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            for key in list(self._sources):
                self.sample_once(key)

    def read(self, key: Any, now: float | None = None) -> tuple[float, int, int, str]:
        now = self.clock() if now is None else now
        with self._lock:
            e, t_last, p_last, good, failed, err = self._state[key]
        if t_last is not None:  # to ``now`` at the last power (backwards when a sample landed after ``now``)
            e += p_last * (now - t_last)
        return e, good, failed, err

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None


# ---- CPU (modelled) --------------------------------------------------------------------------------------------

CPU_IDLE_W = 10.0  # stated model: package idle share attributed to the job
CPU_W_PER_THREAD = 12.0  # stated model: one busy server core at ~2.5-3.5 GHz


class CpuMeter(Meter):
    """Time only. Energy is MODELLED: P = CPU_IDLE_W + CPU_W_PER_THREAD x busy threads (stated, not measured)."""

    name = "cpu"
    energy_source = "modelled"

    def __init__(self, threads: int):
        self.threads = max(1, int(threads))
        self.idle_w = CPU_IDLE_W
        self.active_w = CPU_IDLE_W + CPU_W_PER_THREAD * self.threads

    @staticmethod
    def modelled_power_w(busy_threads: float) -> float:
        """The stated model at ``busy_threads`` busy threads (e.g. process CPU seconds / wall seconds)."""
        return CPU_IDLE_W + CPU_W_PER_THREAD * max(0.0, float(busy_threads))

    def idle_power(self, seconds: float) -> PowerReading:
        return PowerReading(self.idle_w, 0.0, 0.0, "modelled")

    def measure(self, step, window_s: float) -> PowerReading:
        return PowerReading(self.active_w, 0.0, 0.0, "modelled")

    def provenance(self) -> dict[str, Any]:
        return {"name": "cpu", "energy_source": "modelled",
                "power_model": f"P = {CPU_IDLE_W:g} W + {CPU_W_PER_THREAD:g} W x {self.threads} busy threads "
                               f"= {self.active_w:g} W while an op runs (stated model, not a measurement)"}


# ---- fake (deterministic simulator) ----------------------------------------------------------------------------

class FakeMeter(CounterMeter):
    """Reads the energy counter of a :class:`wattlint.calibrate.backends.FakeDevice` simulator (virtual clock,
    counter ticking every 50 ms like NVML). Deterministic: same suite -> same numbers."""

    name = "fake"
    energy_source = "fake-counter"

    def __init__(self, device):
        self.dev = device
        self.clock = device.now  # type: ignore[assignment]

    def read_energy_j(self) -> float:
        return self.dev.counter_j()

    def idle_power(self, seconds: float) -> PowerReading:
        self.dev.idle_until(self.dev.now() + 0.0)
        return self.counter_window(self.dev.idle_step, seconds)

    def measure(self, step, window_s: float) -> PowerReading:
        return self.counter_window(step, window_s)

    def state(self) -> dict[str, float]:
        return {"temperature_c": self.dev.temperature_c(), "sm_clock_mhz": 1980.0, "mem_clock_mhz": 2619.0,
                "power_w": self.dev.power_w}

    def provenance(self) -> dict[str, Any]:
        return {"name": "fake", "energy_source": self.energy_source, "tick_s": self.dev.TICK_S,
                "note": "deterministic simulator for tests; not a measurement"}


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
