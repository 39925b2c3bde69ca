"""Energy channels of a tracked run: one per device, read at window boundaries (never per step).

* ``NvmlChannel``: one GPU through :class:`wattlint.calibrate.meters.NvmlMeter` - the total-energy counter
  (mJ) where supported; where it is absent, or stops moving mid-run, power sampled at 10 Hz by
  :class:`~wattlint.calibrate.meters.SampledEnergy` (said in the record). A failed read marks that GPU's window
  energy as failed (null) with the error text; the run goes on, and the next window starts from a fresh reading.
* ``CpuChannel``: the CPU itself (CPU-only runs). No RAPL here, so energy is MODELLED with the calibration CPU
  meter's stated model (idle + per busy thread) at the process's measured busy threads (process CPU seconds /
  wall seconds): labelled ``modelled``, never ``measured``.
* ``FakeChannel``: constant power on an injected clock, labelled ``fake`` (tests and examples only).

Nothing here changes a clock, a power limit or any other device setting.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from ..calibrate.meters import CpuMeter, MeterError, NvmlMeter, SampledEnergy

COUNTER_STUCK_MIN_S = 1.0  # a counter that does not move over a window this long is treated as stuck


class Channel:
    name = "channel"
    kind = "gpu"
    energy_source = "none"
    index: int | None = None

    def begin(self, now: float) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def window(self, now: float) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "index": self.index, "energy_source": self.energy_source}

    def close(self) -> None:
        pass


def _failed(source: str, error: str, **extra) -> dict[str, Any]:
    return {"energy_j": None, "source": source, "error": error, **extra}


class NvmlChannel(Channel):
    kind = "gpu"

    def __init__(self, meter: NvmlMeter, index: int | None, sampler_factory: Callable[[], SampledEnergy]):
        self.meter = meter
        self.index = index
        self._sampler_factory = sampler_factory
        self._sampler: SampledEnergy | None = None
        prov = meter.provenance()
        self.gpu_name = prov.get("gpu_name") or ""
        self.uuid = prov.get("uuid")
        self.name = f"gpu{index if index is not None else ''}"
        self.notes: list[str] = []
        if not meter.counter_supported:
            self.notes.append(f"{self.name}: {meter.counter_note or 'no total-energy counter'}: power sampled at "
                              "10 Hz and integrated")
        self._last_e: float | None = None
        self._last_t: float | None = None
        self._last_good = self._last_failed = 0
        self._prov = prov

    @property
    def energy_source(self) -> str:  # type: ignore[override]
        return "counter" if self.meter.counter_supported else "sampling"

    def _start_sampling(self) -> None:
        if self._sampler is None:
            self._sampler = self._sampler_factory()
        self._sampler.add(id(self), self.meter.power_w)

    def begin(self, now: float) -> None:
        self._last_t = now
        if self.meter.counter_supported:
            try:
                self._last_e = self.meter.read_energy_j()
            except Exception:  # noqa: BLE001 - the first window will say it failed
                self._last_e = None
        else:
            self._start_sampling()
            self._last_e, self._last_good, self._last_failed, _ = self._sampler.read(id(self), now)

    def window(self, now: float) -> dict[str, Any]:
        dt = now - (self._last_t if self._last_t is not None else now)
        self._last_t = now
        if self.meter.counter_supported:
            try:
                e = self.meter.read_energy_j()
            except Exception as err:  # noqa: BLE001 - a failed read fails this window, not the run
                self._last_e = None
                return _failed("counter", f"{type(err).__name__}: {err}")
            start, self._last_e = self._last_e, e
            if start is None:
                return _failed("counter", "no reading at the window start (the previous read failed)")
            d = e - start
            if d < 0:
                return _failed("counter", f"energy counter went backwards by {-d:.3f} J (reset or wrap)")
            if d == 0 and dt >= COUNTER_STUCK_MIN_S:
                self.meter.counter_supported = False
                self.meter.counter_note = f"total-energy counter did not move over {dt:.1f} s: switched to sampling"
                self.notes.append(f"{self.name}: {self.meter.counter_note}")
                self._start_sampling()
                self._last_e, self._last_good, self._last_failed, _ = self._sampler.read(id(self), now)
                return _failed("counter", self.meter.counter_note)
            return {"energy_j": d, "source": "counter"}
        e, good, failed, err = self._sampler.read(id(self), now)
        de = e - (self._last_e or 0.0)
        g, f = good - self._last_good, failed - self._last_failed
        self._last_e, self._last_good, self._last_failed = e, good, failed
        info = {"samples": g, "failed_samples": f}
        if g == 0 or f / (g + f) >= 0.5:
            return _failed("sampling", err or "no power sample in this window", **info)
        out = {"energy_j": de, "source": "sampling", **info}
        if f:
            out["error"] = err
        return out

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(gpu_name=self.gpu_name, uuid=self.uuid, provenance=self._prov,
                 notes=list(self.notes))
        return d

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
        self.meter.close()


class CpuChannel(Channel):
    """The CPU of a CPU-only run: wall time measured, energy modelled from busy threads (no RAPL here)."""

    kind = "cpu"
    energy_source = "modelled"
    name = "cpu"

    def __init__(self, process_time: Callable[[], float] = time.process_time,
                 wall: Callable[[], float] | None = None):
        """``wall``: the channel's own wall clock, for a tracker whose clock is not wall time (clock='process': its
        ``now`` is CPU seconds of all threads, so busy threads would read 1 and the modelled power would run over
        CPU seconds); None: the tracker's ``now``."""
        self.process_time = process_time
        self.wall = wall
        self._cpu = 0.0
        self._t: float | None = None

    def begin(self, now: float) -> None:
        self._t, self._cpu = (now if self.wall is None else self.wall()), self.process_time()

    def window(self, now: float) -> dict[str, Any]:
        cpu = self.process_time()
        now = now if self.wall is None else self.wall()
        dt = now - (self._t if self._t is not None else now)
        dcpu = cpu - self._cpu
        self._t, self._cpu = now, cpu
        busy = dcpu / dt if dt > 0 else 0.0
        out = {"energy_j": CpuMeter.modelled_power_w(busy) * dt, "source": "modelled", "busy_threads": busy,
               "cpu_s": dcpu}
        if self.wall is not None:  # the tracker's window lasts another clock's seconds: the power is over these
            out["wall_s"] = dt
        return out

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        from ..calibrate.meters import CPU_IDLE_W, CPU_W_PER_THREAD

        d["power_model"] = (f"P = {CPU_IDLE_W:g} W + {CPU_W_PER_THREAD:g} W x busy threads (process CPU seconds / "
                            "wall seconds); the calibration CPU meter's stated model, not a measurement")
        return d


class FakeChannel(Channel):
    """Constant power (optionally a function of the injected clock); labelled fake. Tests and examples only."""

    kind = "gpu"
    energy_source = "fake"

    def __init__(self, power_w: float | Callable[[float], float] = 100.0, name: str = "fake0",
                 fail_windows: set[int] | None = None):
        self.power = power_w
        self.name = name
        self.index = 0
        self._t: float | None = None
        self._e = 0.0
        self._k = 0
        self.fail_windows = set(fail_windows or ())

    def begin(self, now: float) -> None:
        self._t = now

    def window(self, now: float) -> dict[str, Any]:
        t0 = self._t if self._t is not None else now
        p = self.power(t0) if callable(self.power) else float(self.power)
        self._t = now
        k, self._k = self._k, self._k + 1
        if k in self.fail_windows:
            return _failed("fake", "injected failure")
        return {"energy_j": p * (now - t0), "source": "fake"}


# ---- discovery ---------------------------------------------------------------------------------------------------

def _torch_visible_uuids() -> list[str] | None:
    """UUIDs of the CUDA devices this process sees (torch order), when torch has initialised CUDA."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_initialized():
            return None
        out = []
        for i in range(torch.cuda.device_count()):
            u = str(torch.cuda.get_device_properties(i).uuid)
            out.append(u if u.startswith("GPU-") else f"GPU-{u}")
        return out
    except Exception:  # noqa: BLE001 - older torch without .uuid, or a CUDA error
        return None


def visible_gpus(count: int) -> tuple[list[tuple[int | None, str | None]], str]:
    """(NVML index, UUID) of the GPUs of this process, and how they were chosen.

    Under torchrun (LOCAL_RANK set) a rank measures only its own GPU, so ranks do not count each other's energy:
    LOCAL_RANK indexes the devices the process sees (CUDA_VISIBLE_DEVICES=2,3 with LOCAL_RANK=1 is NVML index 3).
    CUDA_VISIBLE_DEVICES is read as CUDA reads it: indices or GPU UUIDs, up to the first entry that is neither
    (``-1``, or empty: no GPU at all). MeterError where the process's GPU cannot be told: a MIG instance (NVML reads
    the whole GPU's power), a LOCAL_RANK past the several GPUs the process sees (measuring them all would count the
    other ranks' energy)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    uuids = _torch_visible_uuids()
    rank = os.environ.get("LOCAL_RANK")
    if uuids:
        pairs = [(None, u) for u in uuids]
        how = "the CUDA devices torch sees (by UUID)"
    elif env is not None:
        pairs = []
        for tok in env.split(","):
            tok = tok.strip()
            if tok.isdigit():
                pairs.append((int(tok), None))
            elif tok.upper().startswith("MIG-"):
                raise MeterError(f"CUDA_VISIBLE_DEVICES={env} names a MIG instance ({tok}): NVML reads the power of "
                                 "the whole GPU, not of one instance; pass devices=[NVML index] to measure that GPU")
            elif tok.upper().startswith("GPU-"):
                pairs.append((None, tok))
            else:  # CUDA stops at the first entry that is no index or UUID ('-1' hides every GPU)
                break
        how = f"CUDA_VISIBLE_DEVICES={env}"
        if not pairs:
            raise MeterError(f"{how} hides every GPU from CUDA: no GPU of this process to measure")
    else:
        pairs = [(i, None) for i in range(count)]
        how = "every GPU NVML sees (CUDA_VISIBLE_DEVICES unset)"
    if rank is not None and rank.strip().isdigit():
        r = int(rank)
        if r < len(pairs):
            pairs = [pairs[r]]
            how += f"; LOCAL_RANK={rank}: this rank's GPU only"
        elif len(pairs) > 1:
            raise MeterError(f"LOCAL_RANK={rank} but this process sees {len(pairs)} GPUs ({how}): which one is this "
                             "rank's is unknown, and measuring them all would count the other ranks' energy; pass "
                             "devices=[NVML index]")
        else:  # a launcher that gives each rank one GPU (CUDA_VISIBLE_DEVICES per rank): that GPU is the rank's
            how += f"; LOCAL_RANK={rank}: the one GPU this rank sees"
    return pairs, how


def open_nvml_channels(devices: list[int] | None = None, *, sampling_period_s: float | None = None,
                       clock: Callable[[], float] = time.perf_counter) -> tuple[list[NvmlChannel], str]:
    """One channel per GPU of the process (or per NVML index in ``devices``). MeterError when NVML is unusable."""
    from ..calibrate.meters import TRACK_SAMPLING_PERIOD_S, nvml_device_count

    count = nvml_device_count()
    if devices is not None:
        pairs: list[tuple[int | None, str | None]] = [(int(i), None) for i in devices]
        how = f"devices={list(devices)} (NVML indices)"
    else:
        pairs, how = visible_gpus(count)
    if not pairs:
        raise MeterError(f"no GPU to measure ({how}: NVML sees none)")
    period = sampling_period_s or TRACK_SAMPLING_PERIOD_S
    shared: list[SampledEnergy] = []

    def sampler() -> SampledEnergy:
        if not shared:
            shared.append(SampledEnergy(period, clock))
        return shared[0]

    chans: list[NvmlChannel] = []
    try:
        for k, (idx, uuid) in enumerate(pairs):
            m = NvmlMeter(idx if idx is not None else 0, uuid)
            chans.append(NvmlChannel(m, idx if idx is not None else k, sampler))
    except Exception:
        for c in chans:
            c.close()
        raise
    return chans, how
