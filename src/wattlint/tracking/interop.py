"""Other tools' measurements as measured runs, to compare with an estimate (``wattlint compare-run FILE``).

* CodeCarbon ``emissions.csv`` (one row per tracked run, appended): ``duration`` (s), ``energy_consumed`` /
  ``cpu_energy`` / ``gpu_energy`` / ``ram_energy`` (kWh), ``emissions`` (kg CO2e), ``gpu_model``, ``gpu_count``,
  ``pue``. Default: the last row (``row=`` picks another, 0-based; ``run_id=`` by id).
* Zeus ``ZeusMonitor(log_file=...)`` CSV: ``start_time,window_name,elapsed_time,gpu<i>_energy...`` (s, J), one row per
  ended window; the windows of one name are summed (``window=`` picks the name when there are several).
* Carbontracker output log (``*_carbontracker_output.log``): the last "Actual consumption for N epoch(s)" block
  (Time H:MM:SS, Energy kWh, CO2eq g), as Carbontracker reports it (with the PUE it applies).

Readers only parse; nothing is imported from those tools.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..types import InputError

CODECARBON_COLUMNS = {"duration", "energy_consumed", "emissions"}


@dataclass
class MeasuredRun:
    tool: str
    path: str
    duration_s: float | None
    energy_kwh: float | None  # what the tool reports as the total
    energy_scope: str  # what that total covers
    gpu_energy_kwh: float | None = None
    cpu_energy_kwh: float | None = None
    ram_energy_kwh: float | None = None
    co2_kg: float | None = None
    gpu_model: str | None = None
    gpu_count: int | None = None
    pue: float | None = None
    pue_in_energy: bool | None = None  # whether energy_kwh includes the PUE (None: unknown)
    epochs: int | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _f(x: Any) -> float | None:
    """A finite number, or None (empty, text, NaN, infinite)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _q(p: Path, where: str, column: str, x: Any) -> float | None:
    """A measured quantity (a duration, an energy, a count) of another tool's log: None when the field is empty or
    not a number (that tool did not measure it); a negative or infinite value is a damaged file (InputError naming
    the field), never a comparison against a negative or infinite measurement."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    if v != v:
        return None
    if not math.isfinite(v) or v < 0:
        raise InputError(f"{p}: {column} = {str(x).strip()[:30]} ({where}): not a finite non-negative number")
    return v


def detect(path: str | Path) -> str | None:
    """'codecarbon' | 'zeus' | 'carbontracker' | None from the file's first bytes."""
    p = Path(path)
    try:
        # utf-8-sig: a CSV saved again by Excel / Windows tools starts with a byte-order mark
        head = p.read_bytes()[:4096].decode("utf-8-sig", errors="replace")
    except OSError:
        return None
    first = head.splitlines()[0] if head else ""
    cols = {c.strip() for c in first.split(",")}
    if CODECARBON_COLUMNS <= cols:
        return "codecarbon"
    if {"start_time", "window_name", "elapsed_time"} <= cols:
        return "zeus"
    if "carbontracker" in head.lower() or "Actual consumption for" in head or p.name.endswith(
            "_carbontracker_output.log"):
        return "carbontracker"
    return None


def _csv_rows(p: Path, tool: str) -> list[dict[str, str]]:
    """The rows of another tool's CSV log. errors="replace": a text column in a Windows code page (a country or CPU
    name) must not stop the comparison; the quantities are ASCII numbers. A file the csv module cannot parse (a field
    over its 128 KiB limit, a NUL byte) is a damaged log: InputError, not an internal error."""
    try:
        with open(p, newline="", encoding="utf-8-sig", errors="replace") as f:
            return list(csv.DictReader(f))
    except csv.Error as e:
        raise InputError(f"{p}: not a readable {tool} CSV log ({e})") from None


def read_codecarbon(path: str | Path, *, row: int | None = None, run_id: str | None = None) -> MeasuredRun:
    p = Path(path)
    rows = _csv_rows(p, "CodeCarbon")
    # a row with fewer fields than the header (the run killed while CodeCarbon wrote it: its last number cut short,
    # the columns after it missing) or more is damaged: never read, counted in the notes
    complete = [r for r in rows if None not in r and None not in r.values()]
    torn = len(rows) - len(complete)
    if torn and (row is not None or run_id is not None):
        picked = ([r for r in rows if r.get("run_id") == run_id] if run_id is not None else
                  [rows[row]] if -len(rows) <= row < len(rows) else [])
        if picked and picked[-1] not in complete:
            raise InputError(f"{p}: the row selected ({'run_id ' + run_id if run_id is not None else f'row {row}'})"
                             " is incomplete (fewer or more fields than the header): a damaged log")
    rows = complete
    if not rows:
        raise InputError(f"{p}: no {'complete ' if torn else ''}rows in this CodeCarbon file")
    if run_id is not None:
        sel = [r for r in rows if r.get("run_id") == run_id]
        if not sel:
            raise InputError(f"{p}: no row with run_id {run_id!r}")
        r, which = sel[-1], f"run_id {run_id}"
    elif row is not None:
        if not -len(rows) <= row < len(rows):
            raise InputError(f"{p}: row {row} out of range ({len(rows)} rows)")
        r, which = rows[row], f"row {row}"
    else:
        r, which = rows[-1], f"the last of {len(rows)} row(s)"
    for col in ("duration", "energy_consumed", "gpu_energy", "cpu_energy", "ram_energy", "emissions", "gpu_count"):
        _q(p, which, col, r.get(col))  # refuses a negative / infinite measurement
    gc = _f(r.get("gpu_count"))
    duration = _f(r.get("duration"))
    if duration is not None and duration <= 0:  # shown as "measured 0 s": no run lasts no time
        raise InputError(f"{p}: {which}: duration {r.get('duration')!r}: a run's duration must be more than 0 s (a "
                         "damaged log)")
    # 0: no GPU (CodeCarbon on a CPU); a value that is no number ('abc') was read as "no GPU count" without a word
    if (gc is None and (r.get("gpu_count") or "").strip()) or \
            (gc is not None and not (float(gc).is_integer() and 0 <= gc <= MAX_GPUS)):
        raise InputError(f"{p}: {which}: gpu_count {r.get('gpu_count')!r} is not a number of GPUs (a damaged log)")
    pue = _log_pue(p, which, _f(r.get("pue")), r.get("pue"))
    pue_in = _pue_in_total(_f(r.get("energy_consumed")), [_f(r.get(c)) for c in ("cpu_energy", "gpu_energy",
                                                                                 "ram_energy")], pue)
    pue_said = _codecarbon_pue_said(pue, pue_in)
    notes = [f"CodeCarbon {r.get('codecarbon_version') or '?'}: {which}; energy_consumed = CPU + GPU + RAM as "
             f"CodeCarbon measured/estimated them{pue_said} (its tracking_mode {r.get('tracking_mode') or '?'}, "
             f"pue {r.get('pue') or '?'})"] + ([f"{torn} incomplete row(s) (fewer or more fields than the header: "
                                               "the log cut short) ignored"] if torn else [])
    return MeasuredRun(tool="codecarbon", path=str(p), duration_s=_f(r.get("duration")),
                       energy_kwh=_f(r.get("energy_consumed")), energy_scope=f"CPU + GPU + RAM{pue_said} (CodeCarbon)",
                       gpu_energy_kwh=_f(r.get("gpu_energy")), cpu_energy_kwh=_f(r.get("cpu_energy")),
                       ram_energy_kwh=_f(r.get("ram_energy")), co2_kg=_f(r.get("emissions")),
                       gpu_model=r.get("gpu_model") or None, gpu_count=int(gc) if gc else None, pue=pue,
                       pue_in_energy=pue_in, notes=notes)


MAX_GPUS = 1_000_000


def _codecarbon_pue_said(pue: float | None, pue_in: bool | None) -> str:
    """What a CodeCarbon row's energy_consumed is beyond its CPU + GPU + RAM, as far as the row tells ('' at PUE 1 or
    none stated; no brackets: callers add CodeCarbon's name in a pair after it). Review: 'CPU + GPU + RAM' was said
    of a total that carried the row's PUE 1.5."""
    if pue is None or abs(pue - 1.0) < 1e-9:
        return ""
    if pue_in:
        return f" times its PUE {pue:g}"
    if pue_in is False:
        return f" without its PUE {pue:g}"
    return f", with or without its PUE {pue:g}: the row cannot tell"


def _log_pue(p: Path, where: str, pue: float | None, raw: Any) -> float | None:
    """A log's PUE, refused (naming the file) outside [1, 3], the range an estimate takes (a PUE below 1 is
    impossible): the estimate would otherwise blame --model for the log's value."""
    if pue is not None and not 1.0 <= pue <= 3.0:
        raise InputError(f"{p}: {where}: pue {raw!r} is outside [1, 3] (a damaged log; pass --pue to compare at "
                         "another)")
    return pue


def _pue_in_total(total: float | None, parts: list[float | None], pue: float | None) -> bool | None:
    """Whether CodeCarbon's energy_consumed carries its PUE, read off the row itself: the total is either the sum of
    its CPU, GPU and RAM energies or that sum x PUE (the two differ only when PUE != 1). None when the row cannot
    tell (PUE 1 or missing, a part missing, a zero sum)."""
    if total is None or pue is None or abs(pue - 1.0) < 1e-9 or any(p is None for p in parts):
        return None
    base = sum(parts)
    if base <= 0:
        return None
    ratio = total / base
    return abs(ratio - pue) < abs(ratio - 1.0)


def read_zeus(path: str | Path, *, window: str | None = None) -> MeasuredRun:
    p = Path(path)
    rows = _csv_rows(p, "Zeus")
    complete = [r for r in rows if r.get("window_name") and r.get("elapsed_time") not in (None, "")]
    torn = len(rows) - len(complete)  # a row cut short (the run killed while Zeus wrote it) or without a name
    rows = complete
    if not rows:
        raise InputError(f"{p}: no windows in this Zeus log")
    names = sorted({r["window_name"] for r in rows})
    if window is None:
        if len(names) > 1:
            raise InputError(f"{p}: windows {', '.join(names)}: pass --window NAME to pick the one to compare")
        window = names[0]
    sel = [r for r in rows if r["window_name"] == window]
    if not sel:
        raise InputError(f"{p}: no window named {window!r} (windows: {', '.join(names)})")
    gcols = [c for c in rows[0] if re.fullmatch(r"gpu\d+_energy", c or "")]
    ts = [_q(p, f"window {window!r}", "elapsed_time", r.get("elapsed_time")) for r in sel]
    es = [_q(p, f"window {window!r}", c, r.get(c)) for r in sel for c in gcols]
    # a quantity no row measured (every value empty, text or NaN) is unknown, not 0
    t = sum(v for v in ts if v is not None) if any(v is not None for v in ts) else None
    e = sum(v for v in es if v is not None) / 3.6e6 if any(v is not None for v in es) else None
    return MeasuredRun(tool="zeus", path=str(p), duration_s=t, energy_kwh=e, energy_scope="GPUs (NVML)",
                       gpu_energy_kwh=e, gpu_count=len(gcols),
                       notes=[f"Zeus: {len(sel)} window(s) named {window!r} summed, {len(gcols)} GPU column(s)"]
                       + ([f"{torn} incomplete row(s) (no window name or elapsed time) ignored"] if torn else []))


_HMS = re.compile(r"(?:(\d+)\s+days?,\s*)?(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)")


def _hms(text: str) -> float | None:
    m = _HMS.search(text)
    if not m:
        return None
    d, h, mi, s = m.groups()
    return (int(d or 0) * 24 + int(h)) * 3600 + int(mi) * 60 + float(s)


def read_carbontracker(path: str | Path) -> MeasuredRun:
    p = Path(path)
    text = p.read_text(encoding="utf-8-sig", errors="replace")
    blocks = list(re.finditer(r"Actual consumption for (\d+) epoch\(s\):(.*?)(?=\n\s*\n|Predicted consumption|"
                              r"Actual consumption|\Z)", text, re.S))
    if not blocks:
        raise InputError(f"{p}: no 'Actual consumption for N epoch(s)' block in this Carbontracker log")
    b = blocks[-1]
    body = b.group(2)
    tm = re.search(r"Time:\s*([^\n]+)", body)
    em = re.search(r"Energy:\s*([0-9.eE+-]+|nan|inf)\s*kWh", body, re.I)
    cm = re.search(r"CO2eq:\s*([0-9.eE+-]+|nan|inf)\s*g", body, re.I)
    pm = re.search(r"PUE coefficient of\s*([0-9.]+)", text)
    return MeasuredRun(tool="carbontracker", path=str(p), duration_s=_hms(tm.group(1)) if tm else None,
                       # a negative or infinite figure is a damaged log (as CodeCarbon's / Zeus's); NaN: not measured
                       energy_kwh=_q(p, "last 'Actual consumption' block", "Energy", em.group(1)) if em else None,
                       energy_scope="as Carbontracker reports it (its components, with the PUE it applies)",
                       co2_kg=_co2_kg(p, cm.group(1)) if cm else None, epochs=int(b.group(1)),
                       pue=_log_pue(p, "its PUE line", _f(pm.group(1).rstrip(".")), pm.group(1)) if pm else None,
                       notes=[f"Carbontracker: last 'Actual consumption' block ({b.group(1)} epoch(s))"])


def _co2_kg(p: Path, grams: str) -> float | None:
    g = _q(p, "last 'Actual consumption' block", "CO2eq", grams)
    return None if g is None else g / 1000.0  # NaN read as 0 g before (review): not measured is not zero


def read_measured(path: str | Path, *, row: int | None = None, run_id: str | None = None,
                  window: str | None = None) -> MeasuredRun:
    kind = detect(path)
    if kind == "codecarbon":
        return read_codecarbon(path, row=row, run_id=run_id)
    if kind == "zeus":
        return read_zeus(path, window=window)
    if kind == "carbontracker":
        return read_carbontracker(path)
    raise InputError(f"{path}: not a wattlint run record, CodeCarbon emissions.csv, Zeus log or Carbontracker log")
