"""Devices the runner measures on: ``cuda`` (CUDA events), ``cpu`` (perf_counter) and ``fake`` (a deterministic
simulator with a virtual clock and an NVML-like energy counter, for tests).

A backend builds a sample's op (``build``), times calls (``time_calls``: synchronised, after warm-up), keeps the
device busy for a meter's window (``launch``: asynchronous, at most one batch queued ahead), and describes itself
for the provenance (``info``) and the features (``spec``: a GpuSpec; for the CPU one built here from measured
peaks, clearly labelled, never added to the GPU database).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import platform
import re
import time
from typing import Any, Callable

from ..types import GpuSpec, WattlintError
from . import benchmarks
from .suites import Sample


class DeviceError(WattlintError):
    pass


def spec_to_dict(spec: GpuSpec) -> dict[str, Any]:
    return {
        "key": spec.key, "name": spec.name, "vendor": spec.vendor, "arch": spec.arch,
        "peak_tflops": dict(spec.peak_tflops), "memory_gb": spec.memory_gb, "memory_bw_gbs": spec.memory_bw_gbs,
        "sm_count": spec.sm_count, "boost_mhz": spec.boost_mhz, "tdp_w": spec.tdp_w, "idle_w": spec.idle_w,
        "idle_estimated": spec.idle_estimated, "tensor_cores": spec.tensor_cores, "l2_mb": spec.l2_mb,
        **({"memory_type": spec.memory_type} if spec.memory_type else {}),
        "sources": dict(spec.sources),
    }


def spec_from_dict(d: dict[str, Any]) -> GpuSpec:
    """A GpuSpec from a stored spec (a run's provenance); InputError naming the field when one is missing or not a
    finite number in range (a hand-edited or damaged file must not reach the power model as None or NaN)."""
    from ..hardware import MEMORY_TYPES
    from ..types import InputError

    if not isinstance(d, dict):
        raise InputError(f"stored device spec: expected an object, got {type(d).__name__}")
    keys = ("key", "name", "vendor", "arch", "peak_tflops", "memory_gb", "memory_bw_gbs", "sm_count", "boost_mhz",
            "tdp_w", "idle_w", "idle_estimated", "tensor_cores", "l2_mb", "memory_type", "sources")
    for k in ("key", "name", "vendor", "arch"):
        if not isinstance(d.get(k), str):
            raise InputError(f"stored device spec: {k} = {d.get(k)!r}: expected a string")
    # (field, zero allowed): a CPU run stores sm_count / boost_mhz 0
    for k, zero in (("memory_gb", False), ("memory_bw_gbs", False), ("sm_count", True), ("boost_mhz", True),
                    ("tdp_w", False), ("idle_w", True), ("l2_mb", True)):
        if k == "l2_mb" and k not in d:
            continue
        v = d.get(k)
        if not (_finite_above(v, 0.0) or (zero and v == 0 and not isinstance(v, bool))):
            raise InputError(f"stored device spec: {k} = {v!r}: expected a finite number {'>=' if zero else '>'} 0")
    if d["idle_w"] >= d["tdp_w"]:
        raise InputError(f"stored device spec: idle_w {d['idle_w']!r} is not below tdp_w {d['tdp_w']!r}")
    peaks = d.get("peak_tflops")
    if not isinstance(peaks, dict) or not peaks or not all(
            isinstance(k, str) and _finite_above(v, 0.0) for k, v in peaks.items()):
        raise InputError(f"stored device spec: peak_tflops = {str(peaks)[:60]}: expected "
                         "{dtype: TFLOP/s > 0}")
    if not isinstance(d.get("sources", {}), dict):
        raise InputError("stored device spec: sources must be an object")
    mt = d.get("memory_type", "")
    if mt and (not isinstance(mt, str) or mt.upper() not in MEMORY_TYPES):
        raise InputError(f"stored device spec: memory_type = {mt!r}: expected one of {', '.join(MEMORY_TYPES)}")
    if mt:
        d = {**d, "memory_type": mt.upper()}
    spec = GpuSpec(**{k: d[k] for k in keys if k in d})
    return dataclasses.replace(spec, sm_count=int(spec.sm_count))


def _finite_above(v: Any, lo: float) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > lo


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


# ---- fake ------------------------------------------------------------------------------------------------------

FAKE_SPEC = GpuSpec(
    key="fake-gpu", name="Fake GPU (deterministic simulator for tests)", vendor="none", arch="fake",
    peak_tflops={"fp32": 60.0, "tf32": 400.0, "bf16": 800.0, "fp16": 800.0, "fp8": 1600.0},
    memory_gb=80.0, memory_bw_gbs=3000.0, sm_count=132, boost_mhz=1980.0, tdp_w=700.0, idle_w=70.0,
    idle_estimated=False, tensor_cores=True, l2_mb=50.0, sources={"all": "made up for tests"},
)

# "Truth" of the simulator: prior x a per-family factor x a smooth size effect x small deterministic noise.
FAKE_FAMILY_TIME = {"gemm": 1.25, "conv": 1.6, "attention": 1.4, "norm": 0.8, "softmax": 0.9, "elementwise": 0.7,
                    "reduction": 1.1, "embedding": 1.3, "pool": 1.2, "lstm": 2.0, "optimizer": 0.9, "memory": 0.75,
                    "loss": 1.1, "dropout": 0.8}
FAKE_FAMILY_POWER = {"gemm": 1.1, "conv": 1.0, "attention": 1.05, "lstm": 0.7}


def _h01(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def fake_truth(sample: Sample, spec: GpuSpec = FAKE_SPEC) -> tuple[float, float]:
    """(time per call in s, board power in W) the simulator produces for a sample."""
    from ..energy.prior import op_prior

    recs = sample.records()
    pri = [op_prior(r, spec, sample.precision) for r in recs]
    t_prior = sum(p.time_s for p in pri)
    f = FAKE_FAMILY_TIME.get(sample.family, 1.0)
    size = math.log10(max(1.0, sum(r.flops for r in recs) + sum(r.bytes for r in recs)))
    smooth = 1.0 + 0.25 * math.sin(size)
    noise = 1.0 + 0.04 * (_h01(sample.id) - 0.5)
    t = t_prior * f * smooth * noise * (1.15 if sample.phase == "backward" else 1.0)
    act = sum(p.activity * p.time_s for p in pri) / t_prior if t_prior else 0.1
    act = min(1.0, act * FAKE_FAMILY_POWER.get(sample.family, 0.85) / (f * smooth) ** 0.3)
    power = spec.idle_w + (spec.tdp_w - spec.idle_w) * act
    return t, power


FAKE_SLEEP_ENV = "WATTLINT_FAKE_SLEEP_S"
FAKE_SLEEP_MAX_S = 60.0


def fake_sleep_s() -> float:
    """``WATTLINT_FAKE_SLEEP_S``: seconds of real sleep per fake sample, 0 (unset or empty) to 60; anything else
    is a DeviceError naming the variable (exit 2; 'abc' was a ValueError, exit 3)."""
    raw = os.environ.get(FAKE_SLEEP_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        v = float(raw)
    except ValueError:
        v = float("nan")
    if not (0.0 <= v <= FAKE_SLEEP_MAX_S):  # (NaN fails too)
        raise DeviceError(f"{FAKE_SLEEP_ENV}={raw[:40]!r}: expected seconds from 0 to {FAKE_SLEEP_MAX_S:g} (a real "
                          "sleep per fake sample)")
    return v


class FakeDevice:
    """Virtual clock + energy counter (ticks every TICK_S like NVML). ``WATTLINT_FAKE_SLEEP_S`` adds a real sleep
    per built sample (the kill/resume test needs samples that take wall time)."""

    TICK_S = 0.05

    def __init__(self, spec: GpuSpec = FAKE_SPEC):
        self.spec = spec
        self.t = 0.0
        self.energy = 0.0
        self.power_w = spec.idle_w
        self.sleep_s = fake_sleep_s()
        self.fail_ids = set(filter(None, os.environ.get("WATTLINT_FAKE_FAIL", "").split(";")))

    def now(self) -> float:
        return self.t

    def advance(self, dt: float, power: float) -> None:
        t0, e0 = self.t, self.energy
        self.t += dt
        self.energy += dt * power
        self.power_w = power
        last_tick = math.floor(self.t / self.TICK_S) * self.TICK_S
        if last_tick > t0:  # crossed a tick: the counter shows the energy at that tick (NVML-like updates)
            self._tick_energy = e0 + power * (last_tick - t0)

    def counter_j(self) -> float:
        return getattr(self, "_tick_energy", 0.0)

    def idle_step(self) -> None:
        self.advance(0.005, self.spec.idle_w)

    def idle_until(self, t: float) -> None:
        if t > self.t:
            self.advance(t - self.t, self.spec.idle_w)

    def temperature_c(self) -> float:
        return 35.0 + 25.0 * (1 - math.exp(-self.t / 60.0))


class Backend:
    name = "backend"

    def build(self, sample: Sample) -> Callable[[], Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def now(self) -> float:
        return time.perf_counter()

    def sync(self) -> None:
        pass

    def time_calls(self, fn: Callable[[], Any], n: int) -> float:
        self.sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        self.sync()
        return time.perf_counter() - t0

    def launch(self, fn: Callable[[], Any], n: int, poll: Callable[[], None] | None = None) -> None:
        for _ in range(n):
            fn()
            if poll is not None:
                poll()

    def release(self) -> None:
        pass

    def heat(self, seconds: float) -> None:
        pass

    def cache_bytes(self) -> int:
        """Last-level cache the benchmark inputs must not fit in (0: do not rotate copies)."""
        return 0

    def copies(self, sample: Sample) -> int:
        recs = sample.records()
        return benchmarks.copies_for(sum(r.bytes for r in recs), self.cache_bytes())

    def info(self) -> dict[str, Any]:
        return {}

    def spec(self) -> tuple[GpuSpec | None, str]:
        return None, ""

    def close(self) -> None:
        pass


class FakeBackend(Backend):
    name = "fake"

    def __init__(self):
        self.dev = FakeDevice()
        self._current: tuple[float, float] | None = None

    def now(self) -> float:
        return self.dev.now()

    def build(self, sample: Sample):
        if sample.id in self.dev.fail_ids:
            raise DeviceError(f"simulated failure for {sample.id}")
        if self.dev.sleep_s:
            time.sleep(self.dev.sleep_s)
        t, p = fake_truth(sample, self.dev.spec)
        self._current = (t, p)
        self.dev.advance(0.01, self.dev.spec.idle_w)  # allocation gap

        def op():
            self.dev.advance(t, p)
        return op

    def time_calls(self, fn, n: int) -> float:
        t0 = self.dev.now()
        for _ in range(n):
            fn()
        return self.dev.now() - t0

    def launch(self, fn, n: int, poll=None) -> None:
        if poll is None or self._current is None:
            return super().launch(fn, n)
        t, p = self._current
        chunks = max(1, int(t / 0.001))
        for _ in range(n):
            for _ in range(chunks):  # the op runs while the host polls the counter
                self.dev.advance(t / chunks, p)
                poll()

    def info(self) -> dict[str, Any]:
        return {"kind": "fake", "name": self.dev.spec.name, "note": "simulated; not a measurement"}

    def spec(self):
        return self.dev.spec, "fake"


# ---- cpu -------------------------------------------------------------------------------------------------------

def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or platform.machine() or "cpu"


def measure_cpu_spec(threads: int | None = None) -> GpuSpec:
    """A GpuSpec-shaped description of THIS CPU for the prior and features: fp32 peak from the best of a few
    1024^3 matmuls, bandwidth from the best of a few 128 MiB copies, 'SMs' = threads, power from the stated CPU
    power model. Labelled as a CPU with measured peaks; never part of the GPU database."""
    import torch

    from .meters import CPU_IDLE_W, CPU_W_PER_THREAD

    threads = threads or torch.get_num_threads()
    a = torch.randn(1024, 1024)
    b = torch.randn(1024, 1024)
    torch.mm(a, b)
    best = math.inf
    for _ in range(5):
        t0 = time.process_time()
        torch.mm(a, b)
        best = min(best, time.process_time() - t0)
    flops = 2 * 1024 ** 3 / best
    src = torch.empty(32 * 1024 * 1024)
    dst = torch.empty_like(src)
    dst.copy_(src)
    bbest = math.inf
    for _ in range(5):
        t0 = time.process_time()
        dst.copy_(src)
        bbest = min(bbest, time.process_time() - t0)
    bw = 2 * src.numel() * 4 / bbest
    name = cpu_name()
    return GpuSpec(
        key=f"cpu-{slug(name)}",
        name=f"{name} (CPU, {threads} thread{'s' if threads != 1 else ''}; peaks measured here, NOT a GPU)",
        vendor="cpu", arch=platform.machine(),
        peak_tflops={"fp32": round(flops / 1e12, 4)},
        memory_gb=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        memory_bw_gbs=round(bw / 1e9, 2), sm_count=threads, boost_mhz=0.0,
        tdp_w=CPU_IDLE_W + CPU_W_PER_THREAD * threads, idle_w=CPU_IDLE_W, idle_estimated=True,
        tensor_cores=False, l2_mb=0.0,
        sources={"peak_tflops": "measured: best of 5 torch.mm 1024^3 fp32 (process CPU time)",
                 "memory_bw_gbs": "measured: best of 5 copies of 128 MiB (read + write bytes)",
                 "tdp_w": "stated CPU power model (wattlint.calibrate.meters), not measured",
                 "idle_w": "stated CPU power model, not measured"},
    )


CPU_THREADS_ENV = "WATTLINT_CPU_THREADS"


def cpu_threads(threads: int | None = None, *, source: str = "the predictions file's cpu_threads") -> int:
    """Threads for CPU measurements: 1 by default. On a shared machine a multi-threaded op waits at OpenMP
    barriers for descheduled threads (timings quantised to scheduler slices); one thread measures cleanly.

    ``threads`` (from ``source``), else ``WATTLINT_CPU_THREADS`` (unset or empty: 1), must be a whole number from 1
    to this machine's CPU count: anything else is a DeviceError naming where it came from (exit 2; 'abc' and '1e9'
    were a ValueError, exit 3, 100000000 a libgomp out-of-memory abort, 0 and -5 silently 1)."""
    most = os.cpu_count() or 1
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= most:
            raise DeviceError(f"{source} = {str(threads)[:40]!r}: expected a whole number of threads from 1 to "
                              f"{most} (this machine's CPU count)")
        return threads
    raw = os.environ.get(CPU_THREADS_ENV, "").strip()
    if not raw:
        return 1
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= most):
        raise DeviceError(f"{CPU_THREADS_ENV}={raw[:40]!r}: expected a whole number of threads from 1 to {most} "
                          "(this machine's CPU count)")
    return int(raw)


class CpuBackend(Backend):
    name = "cpu"

    def __init__(self, threads: int | None = None):
        import torch

        self.torch = torch
        self.threads = cpu_threads(threads)
        torch.set_num_threads(self.threads)
        self._spec: GpuSpec | None = None

    def build(self, sample: Sample):
        return benchmarks.build(sample.family, sample.params_dict, sample.precision, sample.phase, "cpu",
                                self.copies(sample))

    def cache_bytes(self) -> int:
        """L2 + L3 of cpu0 from sysfs (32 MiB if unknown)."""
        total = 0
        base = "/sys/devices/system/cpu/cpu0/cache"
        try:
            for idx in sorted(os.listdir(base)):
                try:
                    with open(f"{base}/{idx}/level") as f:
                        level = int(f.read().strip())
                    with open(f"{base}/{idx}/size") as f:
                        size = f.read().strip()
                except OSError:
                    continue
                if level >= 2:
                    mult = {"K": 1024, "M": 1024 ** 2}.get(size[-1:], 1)
                    total += int(size.rstrip("KM")) * mult
        except OSError:
            pass
        return total or 32 * 1024 ** 2

    def time_calls(self, fn, n: int) -> float:
        """Process CPU time, not wall time: on a shared machine other processes steal the core, and with one
        thread the process's CPU time is the op's own time (it equals wall time on an idle machine)."""
        t0 = time.process_time()
        for _ in range(n):
            fn()
        return time.process_time() - t0

    def info(self) -> dict[str, Any]:
        t = self.torch
        return {"kind": "cpu", "name": cpu_name(), "threads": t.get_num_threads(), "timer": "process CPU time",
                "cache_bytes": self.cache_bytes(), "cpu_count": os.cpu_count(),
                "platform": platform.platform(), "torch": t.__version__,
                "mkldnn": bool(t.backends.mkldnn.is_available()),
                "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}

    def spec(self):
        if self._spec is None:
            self._spec = measure_cpu_spec()
        return self._spec, "measured-cpu"


# ---- cuda ------------------------------------------------------------------------------------------------------

def cuda_unavailable_reason(torch) -> str:
    """Why torch has no CUDA device, and what to do (one line)."""
    if getattr(torch.version, "cuda", None) is None:
        return (f"--device cuda: the installed torch {torch.__version__} is a CPU-only build: install a CUDA build "
                "of torch on a machine with an NVIDIA GPU (and the [nvml] extra for power), or use --device cpu / "
                "--plan")
    return (f"--device cuda: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device "
            "(torch.cuda.is_available() is False: no NVIDIA GPU, no driver, or CUDA_VISIBLE_DEVICES hides it); use "
            "--device cpu or --plan")


class CudaBackend(Backend):
    name = "cuda"

    def __init__(self, index: int = 0):
        import torch

        if not torch.cuda.is_available():
            raise DeviceError(cuda_unavailable_reason(torch))
        self.torch = torch
        self.index = index
        torch.cuda.set_device(index)
        self.dev = torch.device("cuda", index)
        self._prev = None

    def build(self, sample: Sample):
        self.torch.manual_seed(0)
        return benchmarks.build(sample.family, sample.params_dict, sample.precision, sample.phase,
                                f"cuda:{self.index}", self.copies(sample))

    def cache_bytes(self) -> int:
        props = self.torch.cuda.get_device_properties(self.index)
        return int(getattr(props, "L2_cache_size", 0) or 50 * 1024 ** 2)

    def sync(self) -> None:
        self.torch.cuda.synchronize(self.dev)

    def time_calls(self, fn, n: int) -> float:
        t = self.torch
        start, end = t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)
        self.sync()
        start.record()
        for _ in range(n):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0

    def launch(self, fn, n: int, poll=None) -> None:
        for _ in range(n):
            fn()
        ev = self.torch.cuda.Event()
        ev.record()
        if self._prev is not None:
            if poll is None:
                self._prev.synchronize()
            else:
                while not self._prev.query():  # keep one batch queued; watch the energy counter meanwhile
                    poll()
        self._prev = ev

    def release(self) -> None:
        self._prev = None
        self.sync()

    def heat(self, seconds: float) -> None:
        t = self.torch
        a = t.randn(8192, 8192, device=self.dev, dtype=t.bfloat16)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(8):
                a @ a
            self.sync()
        del a

    def uuid(self) -> str | None:
        try:
            u = self.torch.cuda.get_device_properties(self.index).uuid
            s = str(u)
            return s if s.startswith("GPU-") else f"GPU-{s}"
        except Exception:
            return None

    def info(self) -> dict[str, Any]:
        t = self.torch
        props = t.cuda.get_device_properties(self.index)
        return {"kind": "cuda", "index": self.index, "name": props.name, "uuid": self.uuid(),
                "l2_cache_bytes": int(getattr(props, "L2_cache_size", 0) or 0),
                "sm_count": props.multi_processor_count, "memory_bytes": props.total_memory,
                "compute_capability": [props.major, props.minor], "torch": t.__version__,
                "cuda_runtime": t.version.cuda, "cudnn": t.backends.cudnn.version(),
                "platform": platform.platform()}

    def spec(self):
        name = self.torch.cuda.get_device_properties(self.index).name
        try:
            from ..hardware import gpu_from_nvml_name

            spec = gpu_from_nvml_name(name)
        except Exception:
            spec = None
        if spec is None:
            return None, f"not in the GPU database: {name}"
        return spec, "database"


def make_backend(device: str) -> Backend:
    if device == "fake":
        return FakeBackend()
    if device == "cpu":
        return CpuBackend()
    if device == "cuda":
        return CudaBackend()
    raise DeviceError(f"unknown device {device!r} (cuda | cpu | fake)")
