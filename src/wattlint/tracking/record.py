"""Run records: JSON Lines, schema ``wattlint.run/1`` (src/wattlint/schemas/run.schema.json).

Line 1 is the header (model hash, plan, devices, static prediction and its provenance); then one ``window`` line
per measured window (its steps' times, data waits, energy per device), ``event`` lines (stable phase reached,
budget warnings / stop), and a ``summary`` line when the run ends normally. Each line is written with ONE
``write`` on an O_APPEND descriptor before the tracker returns to the loop (then fsync'd by a background thread),
so killing the process at any point leaves every completed line valid (only the steps after the last window are
lost). The reader accepts a record without a summary and ignores
a torn last line (power loss), saying so.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..types import InputError

SCHEMA = "wattlint.run/1"


class RecordExistsError(InputError):
    """The record file to create exists already (a run record is never overwritten): the tracker then takes the
    next free name."""


def _clean(x: Any) -> Any:
    """JSON-safe: non-finite floats -> null, floats to 7 significant digits, tuples -> lists."""
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return float(f"{x:.7g}") if x else 0.0
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item"):  # numpy scalars
        return _clean(x.item())
    return str(x)


class RecordWriter:
    """Append-only JSON Lines writer. Each line is ONE ``write`` on an O_APPEND descriptor, done before ``write``
    returns: a killed process leaves it in the file (the kernel holds it). ``fsync`` (durability across an OS crash
    or power loss) runs in a background thread by default (``fsync="async"``) so that a slow disk never stalls the
    training loop; ``fsync=True`` syncs every line in the caller, ``False`` never (close always syncs)."""

    def __init__(self, path: str | Path, *, fsync: bool | str = "async"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except FileExistsError:
            raise RecordExistsError(f"{self.path} exists: a run record is never overwritten; pass another out=") \
                from None
        self.fsync = fsync
        self.lines = 0
        self.sync_error: OSError | None = None
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        if fsync == "async":
            self._thread = threading.Thread(target=self._syncer, name="wattlint-record-fsync", daemon=True)
            self._thread.start()

    def _syncer(self) -> None:
        while True:
            self._dirty.wait()
            self._dirty.clear()
            with self._lock:
                try:
                    if self.fd >= 0:
                        os.fsync(self.fd)
                except OSError as e:  # an I/O error: close() syncs again and reports it; no traceback from a thread
                    self.sync_error = e
                    return
                if self._closing:
                    return

    def write(self, obj: dict[str, Any]) -> None:
        data = (json.dumps(_clean(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n").encode()
        view = memoryview(data)
        while view:
            k = os.write(self.fd, view)
            view = view[k:]
        if self.fsync is True:
            os.fsync(self.fd)
        elif self._thread is not None:
            self._dirty.set()
        self.lines += 1

    def close(self) -> None:
        if self._thread is not None:
            self._closing = True
            self._dirty.set()
            self._thread.join(timeout=10.0)
            self._thread = None
        with self._lock:
            if self.fd >= 0:
                fd, self.fd = self.fd, -1
                try:
                    os.fsync(fd)
                finally:  # the descriptor is closed even when fsync fails (an I/O error is still raised)
                    os.close(fd)


@dataclass
class RunRecord:
    path: Path
    header: dict[str, Any]
    windows: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    torn_tail: bool = False
    sha256: str = ""

    @property
    def status(self) -> str:
        if self.summary:
            return str(self.summary.get("status", "unknown"))
        # a reader cannot tell why a summary is missing: a killed process, a run still going, or a tracker whose
        # write failed (disk full) and that stopped writing while the training went on
        return "incomplete (no summary line: the process was killed, is still running, or a write to the record failed)"

    def run_data(self):
        """The record as :class:`wattlint.tracking.project.RunData` (for :func:`wattlint.tracking.project.analyze`)."""
        from .project import PlanInfo, RunData, Window

        times: list[float] = []
        waits: list[float] = []
        have_wait = True
        bounds: list[int] = []
        wins: list[Window] = []
        for w in self.windows:
            st = w.get("step_times_s") or []
            if int(w["first_step"]) != len(times):
                raise InputError(f"{self.path}: window {w.get('i')} starts at step {w['first_step']}, "
                                 f"expected {len(times)} (lines out of order or missing)")
            times.extend(float(t) for t in st)
            dw = w.get("data_wait_s")
            if dw is None or len(dw) != len(st):
                have_wait = False
            else:
                waits.extend(float(t) for t in dw)
            bounds.extend(int(b) for b in w.get("boundaries") or [])
            chans = w.get("channels") or []
            wins.append(Window(first=int(w["first_step"]), end=int(w["first_step"]) + len(st), t0=float(w["t0"]),
                               t1=float(w["t1"]), energy_j=[c.get("energy_j") for c in chans],
                               failed=[c.get("energy_j") is None for c in chans],
                               after_s=float(w.get("after_steps_s") or 0.0),
                               wall_s=[c.get("wall_s") for c in chans]))
        h = self.header
        hp = h.get("plan") or {}
        # a run without a plan (resolved: null) priced at its site settings (header plan.site, additive; absent in
        # records of older wattlint versions: PUE 1, no CO2 or cost, as their tracker read them)
        return RunData(step_times=times, boundaries=bounds, data_wait=waits if have_wait and times else None,
                       windows=wins, channels=list(h.get("channels") or []),
                       plan=PlanInfo.from_dict(hp.get("resolved") or hp.get("site")), host_w=h.get("host_w"),
                       elapsed_s=float(wins[-1].t1) if wins else None)


_LINE_VALIDATORS: dict[str, Any] = {}


def _line_validator(kind: str):
    """A jsonschema validator of one line kind of run.schema.json (its ``$defs`` entry), numbers finite."""
    v = _LINE_VALIDATORS.get(kind)
    if v is None:
        from importlib import resources

        from jsonschema import Draft202012Validator, validators

        doc = json.loads(resources.files("wattlint").joinpath("schemas", "run.schema.json").read_text())
        base = Draft202012Validator.TYPE_CHECKER
        finite = base.redefine("number", lambda c, x: base.is_type(x, "number") and math.isfinite(x))
        cls = validators.extend(Draft202012Validator, type_checker=finite)
        v = _LINE_VALIDATORS[kind] = cls({"$defs": doc["$defs"], "$ref": f"#/$defs/{kind}"})
    return v


def _window_problem(o: dict[str, Any]) -> str | None:
    """A window whose own numbers contradict each other (the schema checks each alone): it ends before it starts, or
    its input waits add up to more than its duration (review: data_wait_s 1e9 printed '503646660017.1 % waiting')."""
    span = float(o["t1"]) - float(o["t0"])
    if span < 0:
        return f"window: t1 {o['t1']} is before t0 {o['t0']}"
    waits = sum(o.get("data_wait_s") or ())
    if waits > span + 1.0:  # 1 s of slack: a wait timed across the window's edge
        return f"window.data_wait_s: the input waits add up to {waits:.4g} s, longer than the window ({span:.4g} s)"
    return None


def line_problem(o: dict[str, Any]) -> str | None:
    """What is wrong with one record line against its kind in run.schema.json, as 'kind.field[i]: what' (None:
    conforms; lines of an unknown type are left to newer readers)."""
    kind = o.get("type")
    if kind not in ("header", "window", "event", "summary"):
        return None
    from jsonschema.exceptions import best_match

    err = best_match(_line_validator(kind).iter_errors(o))
    if err is None:
        return _window_problem(o) if kind == "window" else None
    at = kind + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in err.absolute_path)
    x = err.instance
    if isinstance(x, float) and not math.isfinite(x):
        return f"{at}: {x} is not a finite number"
    return f"{at}: {err.message[:120]}"


def _non_finite_at(o: dict[str, Any]) -> str:
    """The first field of a record line holding NaN or +-Infinity, as 'kind.field[i] = NaN'."""
    stack: list[tuple[str, Any]] = [(str(o.get("type", "line")), o)]
    while stack:
        at, v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return f"{at} = {json.dumps(v)}"
        if isinstance(v, dict):
            stack.extend((f"{at}.{k}", x) for k, x in reversed(list(v.items())))
        elif isinstance(v, list):
            stack.extend((f"{at}[{j}]", x) for j, x in reversed(list(enumerate(v))))
    return str(o.get("type", "line"))


def read_record(path: str | Path) -> RunRecord:
    """Parse a run record; InputError with one clear line when it is not one."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:  # no permission, an I/O error: say so (never "not a run record")
        raise InputError(f"{p}: cannot be read ({e.strerror or type(e).__name__})") from None
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark (the record opened and saved in an editor)
        raw = raw[3:]
    text = raw.decode("utf-8", errors="replace")
    lines = text.split("\n")
    torn = False
    if lines and lines[-1] == "":
        lines = lines[:-1]
    elif lines:
        torn = True  # no final newline: the last write did not complete
    objs: list[dict[str, Any]] = []
    raw_lines = raw.split(b"\n")
    constants: list[str] = []  # the NaN / Infinity of the line being read

    def constant(c: str) -> float:
        constants.append(c)
        return float(c)

    for i, line in enumerate(lines):
        if "\ufffd" in line:  # a byte that is not UTF-8: the tracker writes UTF-8, so a damaged line (or a torn
            try:               # multi-byte character at the very end of a killed run's last line)
                raw_lines[i].decode("utf-8")
            except UnicodeDecodeError as e:
                if i == len(lines) - 1:
                    torn = True
                    break
                raise InputError(f"{p}:{i + 1}: not UTF-8 (byte {e.start} of the line): the record is damaged") \
                    from None
        constants.clear()
        try:
            o = json.loads(line, parse_constant=constant)
        except (ValueError, RecursionError):  # not JSON (JSONDecodeError), an integer of more digits than Python
            #                                     converts (4,300), or nested deeper than a record ever is
            if i == len(lines) - 1:
                torn = True
                break
            raise InputError(f"{p}:{i + 1}: not a JSON line (the record is corrupt before its last line)") from None
        if not isinstance(o, dict):
            raise InputError(f"{p}:{i + 1}: not a JSON object")
        if constants:  # NaN / Infinity: the tracker never writes them (allow_nan=False); the schema's finite check
            #            sees only the fields it types (per_step.time_s, projection.device_energy_j passed)
            raise InputError(f"{p}:{i + 1}: malformed run record ({_non_finite_at(o)}: not a finite number)")
        objs.append(o)
    else:
        if torn:  # last line without newline but valid JSON: keep it
            torn = False
    schema = objs[0].get("schema") if objs else None
    if isinstance(schema, str) and schema != SCHEMA and schema.startswith(SCHEMA.split("/")[0] + "/"):
        raise InputError(f"{p}: a run record written as {schema} by another wattlint version (this one reads "
                         f"{SCHEMA}); update wattlint to read it")
    if not objs or objs[0].get("schema") != SCHEMA or objs[0].get("type") != "header":
        raise InputError(f"{p}: not a wattlint run record (first line must be a {SCHEMA} header)")
    for i, o in enumerate(objs):  # a record edited or damaged by hand: one clear line, never a crash further on
        bad = line_problem(o)
        if bad:
            raise InputError(f"{p}:{i + 1}: malformed run record ({bad})")
    rec = RunRecord(path=p, header=objs[0], torn_tail=torn, sha256=hashlib.sha256(raw).hexdigest())
    summary_line = 0
    for i, o in enumerate(objs[1:], start=2):
        t = o.get("type")
        if t == "window":
            rec.windows.append(o)
        elif t == "event":
            rec.events.append(o)
        elif t == "summary":
            if summary_line:  # a run writes one summary: two are a record edited or joined by hand (which one?)
                raise InputError(f"{p}:{i}: malformed run record (a second summary line; line {summary_line} is "
                                 "one already, and a run writes one)")
            rec.summary, summary_line = o, i
    return rec


def jsonl_files(folder: Path) -> list[Path]:
    """The JSON Lines files of a folder, sorted; the suffix in any case (the tracker writes out='run.JSONL' as a
    record file)."""
    return sorted(f for f in Path(folder).iterdir() if f.suffix.lower() == ".jsonl" and f.is_file())


def record_schema(path: str | Path) -> str | None:
    """The ``wattlint.run/N`` schema of the file's header line (cheap: reads one line), None when it is no run
    record. InputError when the file exists but cannot be read (no permission, an I/O error): whether it is a
    record cannot be told, and an unreadable file must say so, never read as "not a run record" (review). A named
    pipe or a device is never opened (a pipe blocks the read for ever): InputError saying what it is."""
    from ..io import not_a_file

    what = not_a_file(path)
    if what is not None and not what.startswith("a directory"):
        raise InputError(f"{path}: is {what}, not a file; refusing to read it")
    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 20)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):  # no such file: the caller says "not found"
        return None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    try:
        o = json.loads(first.decode("utf-8-sig", errors="replace"))  # read_record then says what is wrong
    except ValueError:
        return None
    except RecursionError:  # named here: the CLI's catch-all said "a JSON file given" without its name
        raise InputError(f"{path}: line 1: JSON nested too deeply to read (thousands of levels); it is not a file "
                         "wattlint writes") from None
    # any wattlint.run/N header: read_record then says which version wrote it (never "not a run record")
    if not (isinstance(o, dict) and o.get("type") == "header"):
        return None
    schema = o.get("schema")
    return schema if isinstance(schema, str) and schema.startswith(SCHEMA.split("/")[0] + "/") else None


def schema_is_newer(schema: str) -> bool:
    """True when a ``wattlint.run/N`` schema is of a later version than this wattlint reads."""
    try:
        return int(schema.rsplit("/", 1)[1]) > int(SCHEMA.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return False


def is_run_record(path: str | Path, exact: bool = False) -> bool:
    """True when the file's first line is a wattlint.run header (cheap: reads one line); ``exact``: of this
    version's schema only. InputError when the file cannot be read (see :func:`record_schema`)."""
    schema = record_schema(path)
    return schema == SCHEMA if exact else schema is not None
