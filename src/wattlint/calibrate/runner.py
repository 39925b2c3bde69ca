"""The calibration runner: suite -> device + meter -> append-only CSV (one row per sample, fsynced) + JSON provenance.

Crash safety: a row is written, flushed and fsynced as soon as its sample is measured; the provenance JSON is
replaced atomically. ``resume`` re-reads the CSV (dropping a torn last line), skips every sample already there
(measured or failed) and appends to the same file, so a kill or Ctrl-C loses at most the sample in flight.

Per sample: build the op -> warm up (>= 2 calls and ``warmup_s``) -> time (median of 5 rounds of synchronised
calls; CUDA events on a GPU) -> average board power over a >= 0.5 s window with the op running back to back
(meter) -> energy per call = power x time. Idle power is measured first, then the GPU is brought to a stable
temperature. The library never prints: progress goes to a ``Reporter``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import atomic_write_json, utc_now, utc_stamp
from ..types import ConfigError, WattlintError
from . import backends as _backends
from .meters import Meter, MeterError
from .suites import Sample, Suite, load_suite

RUN_SCHEMA = "wattlint.calibration-run/1"
CSV_COLUMNS = (
    "index", "sample_id", "family", "params", "precision", "phase", "status", "n_records", "flops", "bytes",
    "time_s", "time_s_min", "time_s_max", "timing_calls", "overhead_s", "copies", "avg_power_w", "energy_j", "power_source",
    "window_s", "window_calls", "idle_power_w", "temperature_c", "sm_clock_mhz", "mem_clock_mhz", "started_utc",
    "wall_s", "error",
)
TIMING_ROUNDS = 5
LAUNCH_BATCH_S = 0.005


class RunError(WattlintError):
    pass


class Reporter:
    """Progress sink (the CLI shows a rich progress bar); library code never prints."""

    def plan(self, text: str) -> None:
        pass

    def start(self, total: int, done: int, todo: int | None = None) -> None:
        """``total`` samples in the run's part, ``done`` already measured, ``todo`` to measure in this session
        (fewer than ``total - done`` under --limit)."""

    def advance(self, sample: Sample, row: dict[str, Any]) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def stop(self) -> None:
        pass


# ---- files -----------------------------------------------------------------------------------------------------

def read_rows(csv_path: Path) -> list[dict[str, str]]:
    """All complete rows of a run CSV (a torn last line from a crash is ignored: :func:`has_torn_tail` says so)."""
    text = csv_path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))


def has_torn_tail(csv_path: Path) -> bool:
    """Whether the run CSV ends in a line without its newline (a crash mid-write), which :func:`read_rows` drops;
    a torn header (no newline at all) is not a row."""
    data = csv_path.read_bytes()
    return bool(data) and not data.endswith(b"\n") and b"\n" in data


def _check_resume_csv(csv_path: Path) -> None:
    """A run CSV can be resumed only if its rows can be read back and new rows would match its header: review found a
    foreign CSV ended --resume with KeyError (exit 3), a non-UTF-8 one with UnicodeDecodeError, and one with another
    column layout took the new rows under the old header (exit 0, the file silently inconsistent)."""
    try:
        text = csv_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise RunError(f"--resume {csv_path}: not UTF-8 text (byte {e.start}): not a calibration run CSV") from None
    if "\n" not in text:
        return  # empty, or a header torn by a crash: the appender rewrites it
    try:
        header = next(csv.reader([text[: text.index("\n")]]))
    except (csv.Error, StopIteration) as e:
        raise RunError(f"--resume {csv_path}: not a calibration run CSV ({e})") from None
    if tuple(header) != CSV_COLUMNS:
        raise RunError(f"--resume {csv_path}: its columns are not this wattlint's calibration CSV layout "
                       f"({len(header)} columns, first {header[:3]}); new rows would not line up: start a new run")


def _repair_tail(csv_path: Path) -> int:
    """Truncate a torn last line (crash mid-write); returns bytes dropped."""
    size = csv_path.stat().st_size
    if size == 0:
        return 0
    with open(csv_path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        data = csv_path.read_bytes()
        cut = data.rfind(b"\n") + 1
        f.truncate(cut)
        f.flush()
        os.fsync(f.fileno())
        return size - cut


class CsvAppender:
    def __init__(self, path: Path):
        self.path = path
        if path.exists() and path.stat().st_size:
            _repair_tail(path)  # may leave the file empty (a crash while the header was being written)
        new = not path.exists() or path.stat().st_size == 0
        self.f = open(path, "a", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        if new:
            self.w.writeheader()
            self._sync()

    def _sync(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())

    def append(self, row: dict[str, Any]) -> None:
        self.w.writerow({k: _fmt(row.get(k)) for k in CSV_COLUMNS})
        self._sync()

    def close(self) -> None:
        self.f.close()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    return str(v)


# ---- runs ------------------------------------------------------------------------------------------------------

@dataclass
class RunPaths:
    csv: Path
    json: Path

    @staticmethod
    def of(path: str | Path) -> "RunPaths":
        p = Path(path)
        if p.suffix in (".csv", ".json"):
            p = p.with_suffix("")
        return RunPaths(p.with_suffix(".csv"), p.with_suffix(".json"))


@dataclass
class RunConfig:
    device: str = "cuda"
    suite: str = "default"
    part: tuple[int, int] = (1, 1)
    out: str | None = None
    resume: str | None = None
    limit: int | None = None  # measure at most this many samples in this session (tests, smoke runs)
    gpu_key: str | None = None  # override of the GPU database key (when NVML's name is not in the database)
    extra: dict[str, Any] = field(default_factory=dict)


def make_meter(device: str, backend: _backends.Backend) -> Meter:
    from .meters import CpuMeter, FakeMeter, NvmlMeter

    if device == "fake":
        return FakeMeter(backend.dev)  # type: ignore[attr-defined]
    if device == "cpu":
        import torch

        return CpuMeter(torch.get_num_threads())
    if device == "cuda":
        uuid = backend.uuid() if hasattr(backend, "uuid") else None  # type: ignore[attr-defined]
        force = os.environ.get("WATTLINT_NVML_SAMPLING") == "1"
        return NvmlMeter(0, uuid, force_sampling=force)
    raise ConfigError(f"unknown device {device!r}")


def measure_sample(sample: Sample, backend: _backends.Backend, meter: Meter, timing: dict[str, float],
                   idle_w: float, backward_overhead_s: float = 0.0) -> dict[str, Any]:
    """Measure one sample; returns its CSV row (status ok), raises on failure."""
    recs = sample.records()
    t_start = time.perf_counter()
    row: dict[str, Any] = {"sample_id": sample.id, "family": sample.family, "params": sample.params_json,
                           "precision": sample.precision, "phase": sample.phase, "n_records": len(recs),
                           "flops": sum(r.flops for r in recs), "bytes": sum(r.bytes for r in recs),
                           "started_utc": utc_now(), "idle_power_w": idle_w}
    row["copies"] = backend.copies(sample)
    fn = backend.build(sample)
    try:
        # warm-up: >= 2 calls and warmup_s (first calls pick kernels / allocate)
        calls = 0
        w0 = backend.now()
        while calls < 2 or backend.now() - w0 < timing.get("warmup_s", 0.0):
            backend.time_calls(fn, 1)
            calls += 1
            if calls > 10000:
                break
        one = max(backend.time_calls(fn, 1), 1e-7)
        per_round = max(1, int(timing.get("timing_s", 0.0) / TIMING_ROUNDS / one))
        per_call = [backend.time_calls(fn, per_round) / per_round for _ in range(TIMING_ROUNDS)]
        t = statistics.median(per_call)
        over = 0.0
        if sample.phase == "backward" and backward_overhead_s > 0 and backend.name != "cuda":
            # CPU: the engine overhead is serial, always paid; never more than 70 % of the measured call. GPU: the
            # call time is kept as measured (max of host and kernel time); `wattlint fit` drops the calls too
            # short to be kernel-bound (calibrate.fitting.HOST_BOUND_FACTOR).
            over = min(backward_overhead_s, 0.7 * t)
        t -= over
        row.update(time_s=t, time_s_min=min(per_call) - over, time_s_max=max(per_call) - over,
                   timing_calls=per_round * TIMING_ROUNDS, overhead_s=over)
        window = float(timing.get("window_s", 0.0))
        if window > 0:
            window = max(window, min(2.0, 10 * t))  # long ops: >= 10 calls per window
        batch = max(1, int(LAUNCH_BATCH_S / t))
        launched = [0]
        poll = getattr(meter, "poll", None)

        def step():
            backend.launch(fn, batch, poll)
            launched[0] += batch

        reading = meter.measure(step, window)
        backend.sync()
        row.update(avg_power_w=reading.avg_power_w, energy_j=reading.avg_power_w * t, power_source=reading.source,
                   window_s=reading.window_s, window_calls=launched[0])
        row.update(meter.state())
        row["status"] = "ok"
    finally:
        fn = None  # release the sample's device tensors before the next one
        backend.release()
    row["wall_s"] = time.perf_counter() - t_start
    return row


def _stabilize(backend: _backends.Backend, meter: Meter, max_s: float, reporter: Reporter) -> dict[str, Any]:
    """Heat the GPU with a GEMM loop until its temperature changes < 1 C over 5 s, at most ``max_s``."""
    out: dict[str, Any] = {"max_s": max_s, "temperatures_c": []}
    if max_s <= 0 or backend.name != "cuda":
        out["skipped"] = True
        return out
    t0 = time.perf_counter()
    last = meter.state().get("temperature_c")
    out["temperatures_c"].append(last)
    while time.perf_counter() - t0 < max_s:
        backend.heat(5.0)
        cur = meter.state().get("temperature_c")
        out["temperatures_c"].append(cur)
        if last is not None and cur is not None and abs(cur - last) < 1.0:
            break
        last = cur
    out["seconds"] = round(time.perf_counter() - t0, 1)
    reporter.note(f"thermal stabilisation: {out['temperatures_c']} C in {out['seconds']} s")
    return out


def _parse_part(part: str | tuple[int, int] | None) -> tuple[int, int]:
    if part is None:
        return (1, 1)
    if isinstance(part, tuple):
        return part
    try:
        k, n = (int(x) for x in str(part).split("/"))
    except ValueError:
        raise ConfigError(f"--part {part!r}: expected K/N, e.g. 1/2") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--part {part!r}: expected 1 <= K <= N")
    return (k, n)


def run_calibration(cfg: RunConfig, reporter: Reporter | None = None) -> RunPaths:
    """Run (or resume) a calibration run; returns its file paths. Raises KeyboardInterrupt through (after marking
    the provenance ``interrupted``)."""
    rep = reporter or Reporter()
    if cfg.resume:
        paths = RunPaths.of(cfg.resume)
        if not paths.json.is_file() or not paths.csv.is_file():
            raise RunError(f"--resume {cfg.resume}: need both {paths.csv.name} and {paths.json.name}")
        if cfg.out and Path(cfg.out).resolve() != paths.csv.parent.resolve():
            # continue in --out (e.g. a folder whose files come back from a remote machine): copy, then append there
            from ..io import write_new_text

            out = Path(cfg.out)
            copies = {src: out / src.name for src in (paths.csv, paths.json)}
            with _run_lock(paths.csv):  # a run another session is measuring now is not copied half-written
                for src, dst in copies.items():  # a continuation already in --out has rows the source lacks
                    if dst.exists() and dst.read_bytes() != src.read_bytes():
                        raise RunError(f"--out {out}: {dst.name} exists there and differs from {src} (a "
                                       f"continuation of the run already measured there?); resume that one: "
                                       f"--resume {dst}")
                for src, dst in copies.items():
                    if not dst.exists():  # complete or absent: a copy cut short is never taken for the run
                        write_new_text(dst, src.read_text(encoding="utf-8"))
            paths = RunPaths(copies[paths.csv], copies[paths.json])
            cfg = RunConfig(**{**cfg.__dict__, "resume": str(paths.csv)})
        from .validate import read_json_file, require_fields

        prov, _ = read_json_file(paths.json, "calibration run (.json)", RunError)
        if not isinstance(prov, dict) or prov.get("schema") != RUN_SCHEMA:
            raise RunError(f"{paths.json}: not a wattlint calibration run")
        require_fields(prov, {"device": {"kind": (str,)},
                              "suite": {"name": (str,), "path": (str,), "sha256": (str,), "part": (list,)}},
                       str(paths.json), RunError)
        if len(prov["suite"]["part"]) != 2 or not all(isinstance(k, int) for k in prov["suite"]["part"]):
            raise RunError(f"{paths.json}: suite.part must be [K, N]")
        sessions = prov.get("sessions", [])
        if not isinstance(sessions, list) or not all(isinstance(x, dict) for x in sessions):
            raise RunError(f"{paths.json}: 'sessions' must be a list of objects (one per session)")
        device = prov["device"]["kind"]
        if cfg.device and cfg.device != device and cfg.extra.get("device_given"):
            raise RunError(f"--resume: the run was measured on {device!r}, not {cfg.device!r}")
        suite = _resume_suite(prov["suite"])
        if suite.sha256 != prov["suite"]["sha256"]:
            raise RunError(f"--resume: suite {suite.path} changed since the run started (sha256 differs); "
                           "start a new run")
        _check_resume_csv(paths.csv)
        part = tuple(prov["suite"]["part"])  # type: ignore[assignment]
    else:
        device = cfg.device
        suite = load_suite(cfg.suite)
        part = _parse_part(cfg.part)
        prov = {}
    samples = suite.part(*part) if part != (1, 1) else suite.samples
    backend = _backends.make_backend(device)
    meter = make_meter(device, backend)
    try:
        return _run(cfg, rep, backend, meter, suite, samples, part, device, prov)
    finally:
        meter.close()
        backend.close()


def _resume_suite(rec: dict[str, Any]) -> Suite:
    """The suite a resumed run continues: the file it recorded; where that is gone, the shipped suite of its name
    if it is the same suite (sha256: shipped suites move with the installation), else an error naming the file."""
    from .suites import suites_dir

    path = Path(rec["path"])
    if path.is_file():
        return load_suite(str(path))
    shipped = suites_dir() / f"{rec['name']}.toml"
    if shipped.is_file() and load_suite(str(shipped)).sha256 == rec["sha256"]:
        return load_suite(str(shipped))
    raise RunError(f"--resume: the run's suite file {path} is not there (moved or deleted"
                   + (f"; the shipped suite {rec['name']!r} is another suite" if shipped.is_file() else "")
                   + "); put it back to resume, or start a new run")


def _run(cfg, rep, backend, meter, suite: Suite, samples, part, device, prov) -> RunPaths:
    # one measurement of a device at a time (also the CPU spec's peaks below): two runs, or a run and `validate
    # measure`, on one device skewed each other's time and power
    ours = RunPaths.of(cfg.resume).csv if cfg.resume else None
    with device_lock(device_lock_key(device, backend), "calibrate", ours) as holding:
        return _run_device_locked(cfg, rep, backend, meter, suite, samples, part, device, prov, holding)


def _run_device_locked(cfg, rep, backend, meter, suite: Suite, samples, part, device, prov, holding) -> RunPaths:
    spec, spec_source = backend.spec()
    if cfg.gpu_key:
        from ..hardware import resolve_gpu

        given, _ = resolve_gpu(cfg.gpu_key)
        if device != "cuda":  # a CPU or simulated run filed as a GPU's calibration
            raise RunError(f"--gpu {cfg.gpu_key}: the run measures a {device} device, not a GPU; drop --gpu")
        if spec is not None and str(spec_source).startswith("database") and spec.key != given.key:
            raise RunError(f"--gpu {cfg.gpu_key}: this GPU resolves to {spec.key}, not {given.key}; --gpu names a GPU "
                           "whose NVML name is not in the database, it does not relabel one (drop it)")
        spec, spec_source = given, "database (--gpu)"
        recorded = prov["spec"].get("key") if isinstance(prov.get("spec"), dict) else None
        if cfg.resume and recorded and recorded != given.key:  # one run, one GPU
            raise RunError(f"--gpu {cfg.gpu_key}: the run was started as {recorded}, not {given.key}; resume it "
                           f"as {recorded} (or drop --gpu)")
        if cfg.resume and not recorded:  # recorded for `fit` (the first session ran without it)
            prov["spec"] = {"key": spec.key, "source": spec_source, "values": _backends.spec_to_dict(spec)}
    if cfg.resume:
        _check_same_device(cfg.resume, prov, backend.info() | {"kind": device}, meter.provenance(),
                           spec.key if spec is not None else None)
        paths = RunPaths.of(cfg.resume)
    else:
        key = spec.key if spec is not None else _backends.slug(backend.info().get("name", device))
        out = Path(cfg.out) if cfg.out else Path("calibration") / "runs" / key
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"{'--out ' if cfg.out else ''}{out}: cannot create the run's folder "
                           f"({e.strerror or e})") from None
        stem = f"{utc_stamp()}-{suite.name}" + (f"-p{part[0]}of{part[1]}" if part != (1, 1) else "")
        paths = RunPaths(out / f"{stem}.csv", out / f"{stem}.json")
        if paths.csv.exists():
            raise RunError(f"{paths.csv} exists; use --resume {paths.csv}")
    holding(paths.csv)
    with _run_lock(paths.csv):
        return _run_locked(cfg, rep, backend, meter, suite, samples, part, device, prov, spec, spec_source, paths)


def _identity(device: dict[str, Any], meter: dict[str, Any], spec_key: Any) -> dict[str, Any]:
    """What makes a run's samples one device's: (label -> value); a value not recorded is None."""
    kind = device.get("kind")
    return {
        "device kind": kind,
        ("CPU" if kind == "cpu" else "GPU name" if kind == "cuda" else "device name"): device.get("name"),
        "device spec": spec_key,
        "CPU threads": device.get("threads") if kind == "cpu" else None,
        "power model": meter.get("power_model"),  # CPU: the stated model, per thread count
        "power limit (W)": meter.get("power_limit_w"),  # GPU: another cap is another energy per op
    }


def _short(label: str, v: Any) -> str:
    if label == "power model" and isinstance(v, str):  # "P = 10 W + 12 W x 1 busy threads = 22 W while ..."
        import re

        m = re.search(r"= ([0-9.]+ W) while", v)
        if m:
            return m.group(1)
    return repr(v) if isinstance(v, str) else str(v)


def _check_same_device(resume: str, prov: dict[str, Any], device: dict[str, Any], meter: dict[str, Any],
                       spec_key: Any) -> None:
    """A run is one device's: a session on another (another GPU model, another CPU thread count or power model)
    appended its samples to the run and replaced its meter provenance (review: rows 0-6 at a 22 W model, 7-11 at
    34 W, the JSON saying 34 W for all and 1 thread). Refused before anything is written; the same model's other
    physical GPU (another UUID, e.g. a fresh lent machine) is allowed and recorded per session."""
    rec_spec = prov.get("spec") if isinstance(prov.get("spec"), dict) else {}
    rec_meter = prov.get("meter") if isinstance(prov.get("meter"), dict) else {}
    before = _identity(prov.get("device") or {}, rec_meter, rec_spec.get("key"))
    now = _identity(device, meter, spec_key)
    differs = [f"{k} {_short(k, before[k])} -> {_short(k, now[k])}" for k in before
               if before[k] is not None and now[k] is not None and before[k] != now[k]]
    if not differs:
        return
    hint = ""
    if before["CPU threads"] is not None and before["CPU threads"] != now["CPU threads"]:
        from .backends import CPU_THREADS_ENV

        hint = f" (here: {CPU_THREADS_ENV}={before['CPU threads']})"
    raise RunError(f"--resume {resume}: this session's device is not the run's ({'; '.join(differs)}): its samples "
                   f"would be mixed with another device's in one run; resume on the run's device{hint}, or start a "
                   "new run")


# ---- one measurement per device at a time ------------------------------------------------------------------------

def device_lock_key(device: str, backend: _backends.Backend) -> str | None:
    """The name of a device's lock: ``cpu`` (the machine's CPU), ``cuda-<uuid>`` (one physical GPU, whatever
    CUDA_VISIBLE_DEVICES numbers it), None for the simulator (nothing real to share)."""
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        uuid = backend.uuid() if hasattr(backend, "uuid") else None  # type: ignore[attr-defined]
        ident = uuid or f"{getattr(backend, 'index', 0)}-{backend.info().get('name', 'gpu')}"
        return "cuda-" + _backends.slug(ident)
    return None


def device_lock_dir() -> Path | None:
    """This user's folder of device locks on this machine (the temp folder: the locks are the machine's, and
    need not outlive a reboot); None where it is not a folder of this user's (then nothing is locked)."""
    import stat
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else 0
    try:
        d = Path(tempfile.gettempdir()) / f"wattlint-{uid}-device-locks"  # no usable temp folder at all: unlocked
        d.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(d)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != uid):
        return None  # another user's, or a link: never followed
    return d


@contextlib.contextmanager
def device_lock(key: str | None, what: str, ours: Path | None = None):
    """Hold the lock of device ``key`` (see :func:`device_lock_key`) while measuring; a second measurement of the
    same device (calibrate, or validate measure) is refused with a RunError naming the process and the file it
    measures into. Yields ``holding(path)``, which records that file for such a message. ``ours``: the file this
    process is about to measure into (a resume of a run another process is measuring now says so)."""
    folder = device_lock_dir() if key else None
    if folder is None:
        yield lambda path: None
        return
    from ..io import LockHeld, exclusive_lock

    lock, info = folder / f"{key}.lock", folder / f"{key}.json"
    since = utc_now()

    def holding(path: Path | str | None) -> None:
        try:
            atomic_write_json(info, {"pid": os.getpid(), "what": what, "since_utc": since,
                                     "file": str(Path(path).resolve()) if path else None})
        except OSError:  # the message names less; the lock still holds
            pass

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(lock, wait=False, create=True))
        except LockHeld:
            raise _held_by_another(key, info, ours) from None
        holding(ours)
        yield holding


def _held_by_another(key: str, info: Path, ours: Path | None) -> RunError:
    import json

    try:
        other = json.loads(info.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        other = None
    other = other if isinstance(other, dict) else {}
    file = other.get("file")
    if ours is not None and file and Path(file) == Path(ours).resolve():
        return RunError(f"{ours}: another process (pid {other.get('pid', '?')}) is measuring this run now; wait for "
                        "it to finish or stop it, then --resume")
    who = (f"pid {other.get('pid', '?')}, wattlint {other.get('what', '?')}" + (f" into {file}" if file else "")
           + (f", since {other['since_utc']}" if other.get("since_utc") else ""))
    return RunError(f"device {key}: another measurement is running on it now ({who}); two at once skew each other's "
                    "time and power: wait for it to finish (or stop it), then run this again")


@contextlib.contextmanager
def _run_lock(csv_path: Path):
    """The run is measured by one process at a time: its CSV is locked (flock) while a session appends to it. A
    second session (--resume of a run still being measured) appended the same samples with other values and
    rewrote the JSON (458 rows for a 249-sample suite in review); it is now refused before it touches either file."""
    from ..io import LockHeld, exclusive_lock

    try:
        with exclusive_lock(csv_path, wait=False, create=True):
            yield
    except LockHeld:
        raise RunError(f"{csv_path}: another process is measuring this run now (the file is locked); wait for it "
                       "to finish or stop it, then --resume") from None


def _run_locked(cfg, rep, backend, meter, suite: Suite, samples, part, device, prov, spec, spec_source,
                paths: RunPaths) -> RunPaths:
    # the plan is printed once the run can start (a refused --gpu, --out or a locked run prints only its error)
    from .suites import plan_text

    rep.plan(plan_text(suite, device, samples, f"{part[0]}/{part[1]}" if part != (1, 1) else ""))
    if cfg.resume:
        done_rows = read_rows(paths.csv)
    else:
        done_rows = []
        from ..energy.model import library_versions

        prov = {
            "schema": RUN_SCHEMA,
            "run_id": paths.csv.stem,
            "status": "running",
            "started_utc": utc_now(),
            "suite": {"name": suite.name, "path": suite.path, "sha256": suite.sha256, "part": list(part),
                      "samples_total": len(suite.samples), "samples_in_part": len(samples),
                      "timing": dict(suite.timing.get(device, {})), "setup": dict(suite.setup),
                      "planned_s": round(suite.planned_seconds(device, len(samples)), 1)},
            "device": backend.info() | {"kind": device},
            "meter": meter.provenance(),
            "spec": {"key": spec.key if spec else None, "source": spec_source,
                     "values": _backends.spec_to_dict(spec) if spec is not None else None},
            "software": library_versions(),
            "sessions": [],
            "samples_done": 0,
            "samples_failed": 0,
            "validation_data": False,
            "note": ("CPU run: time measured, energy MODELLED from a stated power model; never a GPU calibration"
                     if device == "cpu" else "simulated data for tests" if device == "fake" else ""),
        }
    if isinstance(cfg.extra, dict):  # the command names it if the run is interrupted
        cfg.extra["csv_path"] = str(paths.csv)
    done = {r["sample_id"] for r in done_rows}
    todo = [s for s in samples if s.id not in done]
    session: dict[str, Any] = {"started_utc": utc_now(), "resumed": bool(cfg.resume), "already_done": len(done),
                               "device": backend.info() | {"kind": device}}
    if cfg.resume:
        was = (prov.get("device") or {}).get("uuid")
        if was and session["device"].get("uuid") and session["device"]["uuid"] != was:
            rep.note(f"resumed on another GPU of the same model ({session['device']['uuid']}; the run started on "
                     f"{was}): recorded in this session's provenance")
    prov["status"] = "running"
    prov.setdefault("sessions", []).append(session)
    atomic_write_json(paths.json, prov)
    writer = CsvAppender(paths.csv)
    index = len(done_rows)
    temps: list[float] = [float(r["temperature_c"]) for r in done_rows if r.get("temperature_c")]
    clocks: list[float] = [float(r["sm_clock_mhz"]) for r in done_rows if r.get("sm_clock_mhz")]
    status = "interrupted"
    try:
        # idle power first (every session: the device may have changed state)
        if hasattr(meter, "probe_counter"):
            session["counter_probe"] = probe = meter.probe_counter()
            rep.note("NVML total-energy counter: " + (
                f"moving ({probe.get('counter_delta_j', 0):.1f} J in {probe.get('probe_s', 0)} s idle)"
                if meter.energy_source == "counter" else f"NOT usable -> power sampling ({meter.counter_note})"))
        setup = suite.setup
        idle = meter.idle_power(float(setup.get("idle_s", 5.0)) if device != "cpu" else 0.0)
        session["idle_power_w"] = idle.avg_power_w
        session["idle_source"] = idle.source
        session["idle_window_s"] = idle.window_s
        session["idle_state"] = meter.state()
        rep.note(f"idle power {idle.avg_power_w:.1f} W ({idle.source}, {idle.window_s:.1f} s)")
        session["stabilization"] = _stabilize(backend, meter, float(setup.get("stabilize_max_s", 0.0)), rep)
        # the run's meter is its first session's (after the counter probe); a resumed session's is its own, added
        # beside it (a resume replaced the run's with its own: review)
        session["meter"] = meter.provenance()
        if not cfg.resume or not prov.get("meter"):  # or the first session stopped before it got here (review)
            prov["meter"] = session["meter"]
        atomic_write_json(paths.json, prov)
        timing = dict(suite.timing.get(device, {}))
        over = 0.0
        if device in ("cpu", "cuda"):
            from .benchmarks import autograd_call_overhead

            over = autograd_call_overhead("cuda:0" if device == "cuda" else "cpu")
        session["autograd_overhead_s"] = over
        if device == "cpu":  # measure_sample subtracts it on a CPU only
            rep.note(f"autograd.grad call overhead {over * 1e6:.1f} us (subtracted from backward samples: serial on "
                     "a CPU)")
        elif device == "cuda":
            from .fitting import HOST_BOUND_FACTOR

            rep.note(f"autograd.grad call overhead {over * 1e6:.1f} us (not subtracted: GPU backward samples keep "
                     f"their measured time; `wattlint fit` drops those under {HOST_BOUND_FACTOR:g}x it as host-bound)")
        rep.start(len(samples), len(done), len(todo) if cfg.limit is None else min(cfg.limit, len(todo)))
        measured = 0
        for s in todo:
            if cfg.limit is not None and measured >= cfg.limit:
                break
            try:
                row = measure_sample(s, backend, meter, timing, idle.avg_power_w, over)
            except (KeyboardInterrupt, MeterError):
                raise
            except Exception as e:  # a sample that cannot run (OOM, unsupported kernel): recorded, skipped
                row = {"sample_id": s.id, "family": s.family, "params": s.params_json, "precision": s.precision,
                       "phase": s.phase, "status": "error", "error": f"{type(e).__name__}: {e}"[:300],
                       "started_utc": utc_now()}
                _free(backend)
            row["index"] = index
            writer.append(row)
            index += 1
            measured += 1
            if row.get("temperature_c"):
                temps.append(float(row["temperature_c"]))
            if row.get("sm_clock_mhz"):
                clocks.append(float(row["sm_clock_mhz"]))
            rep.advance(s, row)
        all_rows = read_rows(paths.csv)
        ids = {r["sample_id"] for r in all_rows}
        status = "complete" if all(s.id in ids for s in samples) else "partial"
    finally:
        writer.close()
        rep.stop()
        all_rows = read_rows(paths.csv)
        session["finished_utc"] = utc_now()
        session["status"] = status
        prov["status"] = status
        prov["finished_utc"] = session["finished_utc"]
        prov["samples_done"] = sum(1 for r in all_rows if r.get("status") == "ok")
        prov["samples_failed"] = sum(1 for r in all_rows if r.get("status") == "error")
        if temps:
            prov["temperature_c_range"] = [min(temps), max(temps)]
        if clocks:
            prov["sm_clock_mhz_range"] = [min(clocks), max(clocks)]
        atomic_write_json(paths.json, prov)
    return paths


def _free(backend) -> None:
    try:
        backend.release()
        if backend.name == "cuda":
            backend.torch.cuda.empty_cache()
    except Exception:  # pragma: no cover
        pass
