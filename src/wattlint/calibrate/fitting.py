"""Calibration runs -> fit rows -> a calibrated model folder (``wattlint fit``).

Each measured sample (CSV row: family, params, precision, phase) is rebuilt into the OpRecords wattlint's torch
frontend records for that op (:func:`benchmarks.fit_records`; the costs.py formulas where tracing is not
possible), and featurised with the estimator's own ``energy.features.op_features`` on the run's GPU spec. The
sample's measured time and power give the targets of every record of the sample (identical records, e.g. the
time steps of an LSTM, are merged with their weights summed).

Validation measurements (``validation_data: true`` in a provenance) are refused: they never enter a fit.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ..types import GpuSpec, WattlintError
from . import benchmarks
from .backends import spec_from_dict
from .runner import RUN_SCHEMA, RunPaths, has_torn_tail, read_rows

POWER_CLIP = (0.0, 1.2)
_NEEDED = ("family", "params", "precision", "phase", "time_s", "avg_power_w", "sample_id")


class FitError(WattlintError):
    pass


# the largest run files fit reads: a run's JSON is its provenance (a few KiB, one entry per session) and its CSV one
# line per sample (the largest suite part is ~130 KiB); anything far larger is not a run, and is never read whole
# (a link to /dev/zero in a runs folder read 3.4 GB and ended in MemoryError, a named pipe hung)
RUN_JSON_MAX_BYTES = 64 << 20
RUN_CSV_MAX_BYTES = 512 << 20


def run_file_problem(path: Path, limit: int) -> str | None:
    """Why ``path`` cannot be a run file fit reads (None when it can): not a regular file (a named pipe, a device,
    a folder), or larger than ``limit`` bytes. Checked with ``stat`` before any read: nothing is opened."""
    import stat

    try:
        st = path.stat()
    except OSError as e:
        return f"cannot be read: {e.strerror or type(e).__name__}"
    except ValueError:  # a NUL byte in the name
        return "not a file name"
    if not stat.S_ISREG(st.st_mode):
        kind = ("a named pipe" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode) else "a socket"
                if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        return f"{kind}, not a regular file"
    if st.st_size > limit:
        return f"{st.st_size / 2**20:.0f} MiB, larger than any calibration run file ({limit >> 20} MiB at most)"
    return None


def find_runs(paths: list[str]) -> list[RunPaths]:
    """RUN arguments: run files (.csv/.json/stem) or folders holding runs."""
    out: list[RunPaths] = []
    for p in paths:
        pp = Path(p)
        if pp.is_dir():
            found = sorted(pp.glob("*.json"))
            runs, unreadable, skipped = [], [], []
            for j in found:
                why = run_file_problem(j, RUN_JSON_MAX_BYTES)
                if why:  # never read: beside a CSV it is a run's, damaged (refused below), else noted and skipped
                    if j.with_suffix(".csv").is_file():
                        unreadable.append(f"{j.name} ({why})")
                    else:
                        skipped.append(f"{j.name} ({why})")
                    continue
                try:
                    doc = json.loads(j.read_text())
                except (OSError, ValueError, RecursionError) as e:  # unreadable, not JSON, not UTF-8, too deep
                    if j.with_suffix(".csv").is_file():  # beside a CSV: a calibration run's, damaged
                        unreadable.append(f"{j.name} ({type(e).__name__}: {str(e)[:80]})")
                    continue
                if isinstance(doc, dict) and doc.get("schema") == RUN_SCHEMA:
                    runs.append(RunPaths.of(j))
            if not runs:
                from ..tracking.record import is_run_record, jsonl_files

                if any(is_run_record(f) for f in jsonl_files(pp)):  # given beside calibration runs
                    raise FitError(f"{p}: holds tracked run records (wattlint.track), not calibration runs: fit "
                                   "run records on their own (wattlint fit RECORDS...), calibration runs on theirs")
                if not unreadable:
                    raise FitError(f"{p}: no calibration runs (*.json with schema {RUN_SCHEMA}) in this folder"
                                   + (f"; skipped, never read: {'; '.join(skipped)}" if skipped else ""))
            if unreadable:  # a damaged run is never dropped silently while the others are fitted
                if not runs:
                    raise FitError(f"{p}: no readable calibration run: {unreadable[0]}"
                                   + (f" and {len(unreadable) - 1} more" if len(unreadable) > 1 else ""))
                raise FitError(f"{p}: calibration run(s) that cannot be read: {'; '.join(unreadable)}; fit never "
                               "leaves a run out silently: repair it, or move its .csv and .json out of the folder")
            for why in skipped if runs else ():  # the runs are fitted: the files left unread are said
                print(f"wattlint: note: {pp / why}: skipped, never read (not a calibration run)", file=sys.stderr)
            out.extend(runs)
        else:
            from ..tracking.record import is_run_record

            if is_run_record(pp):  # given beside calibration runs or another tool's log
                raise FitError(f"{p}: a tracked run record (wattlint.track) among other files: fit run records on "
                               "their own (wattlint fit RECORDS...), calibration runs on theirs")
            rp = RunPaths.of(pp)
            if not rp.csv.is_file() or not rp.json.is_file():
                raise FitError(f"{p}: not a calibration run (it needs {rp.csv.name} and {rp.json.name} side by "
                               "side, as wattlint calibrate writes them); fit reads calibration runs or tracked run "
                               "records; another tool's log (CodeCarbon, Zeus, Carbontracker) goes to compare-run")
            out.append(rp)
    seen, uniq = set(), []
    for r in out:
        if r.csv.resolve() not in seen:
            seen.add(r.csv.resolve())
            uniq.append(r)
    return uniq


def _check_provenance(prov: dict[str, Any], where: Path) -> None:
    """The parts of a run's JSON provenance the fit reads have the types the runner writes (FitError otherwise)."""
    for key in ("spec", "device", "meter", "suite"):  # spec may be null (no stored spec: --gpu names the GPU)
        if key in prov and not isinstance(prov[key], dict) and not (key == "spec" and prov[key] is None):
            raise FitError(f"{where}: {key!r} = {json.dumps(prov[key])[:40]}: expected an object")
    spec = prov.get("spec") or {}
    if spec.get("key") is not None and not isinstance(spec["key"], str):
        raise FitError(f"{where}: spec.key must be a GPU database key (a string)")
    sessions = prov.get("sessions", [])
    if not isinstance(sessions, list) or not all(isinstance(x, dict) for x in sessions):
        raise FitError(f"{where}: 'sessions' must be a list of objects")
    kind = (prov.get("device") or {}).get("kind")
    if kind is not None and not isinstance(kind, str):
        raise FitError(f"{where}: device.kind = {json.dumps(kind, default=str)[:40]}: expected the device kind the "
                       "runner writes (a string: cuda, cpu, fake)")
    for x in sessions:
        for name in ("idle_power_w", "autograd_overhead_s"):  # a bad overhead read as 0 kept host-bound calls (review)
            v = x.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                                  or v < 0):
                raise FitError(f"{where}: sessions {name} = {str(v)[:40]!r}: expected a finite number >= 0")


def run_spec(prov: dict[str, Any], gpu_key: str | None = None) -> tuple[GpuSpec, str]:
    """The GpuSpec a run's features are computed on: the database entry for GPUs (so fitting and predicting use
    the same numbers), the stored measured spec for CPU / fake runs."""
    spec_info = prov.get("spec") or {}
    key = gpu_key or spec_info.get("key")
    source = str(spec_info.get("source", ""))
    kind = (prov.get("device") or {}).get("kind")
    if gpu_key and kind in ("cpu", "fake"):
        raise FitError(f"--gpu {gpu_key}: the runs were measured on a {kind} device, not a GPU; drop --gpu")
    if gpu_key and source.startswith("database") and spec_info.get("key"):
        from ..hardware import resolve_gpu

        given, recorded = resolve_gpu(gpu_key)[0].key, resolve_gpu(spec_info["key"])[0].key
        if given != recorded:  # the calibration would be filed, and used, as another GPU's
            raise FitError(f"--gpu {gpu_key}: the runs were measured on {recorded}, not {given}; --gpu names a GPU "
                           "the run could not resolve, it does not relabel one (drop it)")
    if gpu_key or source.startswith("database"):
        if not key:
            raise FitError("the run's GPU is not in the database: pass --gpu KEY")
        from ..hardware import resolve_gpu

        spec, _ = resolve_gpu(key)
        return spec, "database"
    if spec_info.get("values"):
        return spec_from_dict(spec_info["values"]), source or "stored"
    raise FitError("the run records no GPU spec: pass --gpu KEY")


# A GPU backward call (one autograd.grad) costs the host the autograd engine's fixed overhead (measured per session,
# `autograd_overhead_s`) besides the launches. Calls back to back take max(host, kernels): a call shorter than
# HOST_BOUND_FACTOR x that overhead is host-bound, its kernel time is not observable (anything up to the call time),
# and the sample is dropped; a longer call is kernel-bound and its measured time is the kernels' time, with nothing
# to subtract. (Runs before 2026-12-04 subtracted up to the whole overhead from calls under 3x it, which made
# kernel-bound GEMM backward samples on the H200 up to 2x faster than the dense peak; the fit undoes that.)
HOST_BOUND_FACTOR = 1.5


def _float(v) -> float:
    """A non-negative number of the provenance (checked by _check_provenance), 0 when absent."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return 0.0
    return x if math.isfinite(x) and x > 0 else 0.0


def _overhead_s(row: dict[str, Any], where: Path) -> float:
    """A CSV row's ``overhead_s`` (what an older runner subtracted from a backward call): empty is 0 (the runner
    writes an unset or non-finite value empty); anything else must be a finite number >= 0 (FitError naming the file
    and the field: a 'nan' read as 0 kept host-bound calls in the fit, review)."""
    v = row.get("overhead_s")
    if v is None or str(v).strip() == "":
        return 0.0
    try:
        x = float(v)
    except (TypeError, ValueError):
        x = float("nan")
    if not (math.isfinite(x) and x >= 0):
        raise FitError(f"{where}: sample {str(row.get('sample_id'))[:40]} overhead_s = {str(v)[:40]!r}: expected a "
                       "finite number >= 0 (or empty)")
    return x


def _gpu_engine_overhead(prov: dict[str, Any]) -> float:
    """The autograd engine overhead of a GPU run (the largest of its sessions'), 0 for CPU and fake runs (there the
    overhead is serial and the runner subtracts it)."""
    if prov.get("device", {}).get("kind") != "cuda":
        return 0.0
    return max((_float(x.get("autograd_overhead_s")) for x in prov.get("sessions", []) if isinstance(x, dict)),
               default=0.0)


def load_fit_data(runs: list[RunPaths], gpu_key: str | None = None):
    from ..energy.model import FitData
    from ..io import sha256_file
    from ..energy.prior import op_prior
    from ..energy.features import op_features

    data = FitData([], [], [], [], [], [], [], [])
    prov_out: list[dict[str, Any]] = []
    spec: GpuSpec | None = None
    builders: Counter = Counter()
    kinds: Counter = Counter()
    skipped: Counter = Counter()
    meta: dict[str, Any] = {}
    seen: set[tuple] = set()
    for rp in runs:
        for f, limit in ((rp.json, RUN_JSON_MAX_BYTES), (rp.csv, RUN_CSV_MAX_BYTES)):
            why = run_file_problem(f, limit)
            if why:  # checked before any read: a named pipe hung, a link to /dev/zero filled the memory
                raise FitError(f"{f}: {why}: not a calibration run file")
        try:
            prov = json.loads(rp.json.read_text(encoding="utf-8"))
        except RecursionError:
            raise FitError(f"{rp.json}: JSON nested too deeply to be a calibration run") from None
        except (UnicodeDecodeError, ValueError) as e:
            raise FitError(f"{rp.json}: not a calibration run (not UTF-8 JSON: {' '.join(str(e).split())})") from None
        if not isinstance(prov, dict) or prov.get("schema") != RUN_SCHEMA:
            raise FitError(f"{rp.json}: not a calibration run")
        _check_provenance(prov, rp.json)
        if prov.get("validation_data"):
            raise FitError(f"{rp.json}: validation measurements never enter a fit")
        s, s_src = run_spec(prov, gpu_key)
        if spec is None:
            spec = s
            meta = {"spec_source": s_src, "device_kind": prov.get("device", {}).get("kind"),
                    "energy_source": prov.get("meter", {}).get("energy_source")}
        elif s.key != spec.key:
            raise FitError(f"runs from different devices: {spec.key} and {s.key} ({rp.json}); fit one GPU at a time")
        try:
            with open(rp.csv, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            missing = [k for k in _NEEDED if k not in header]
            if missing:  # every row would be dropped as torn, and the fit refused as 'too few samples'
                raise FitError(f"{rp.csv}: the header lacks column(s) {', '.join(missing)}: a damaged or foreign "
                               f"CSV, not the calibration run's (its first line: {','.join(header)[:120]!r})")
            rows = read_rows(rp.csv)
            if has_torn_tail(rp.csv):  # dropped by read_rows: counted, never silently
                skipped["torn last line (crash mid-write)"] += 1
        except UnicodeDecodeError as e:
            raise FitError(f"{rp.csv}: not UTF-8 text (byte {e.start}): not a calibration run CSV") from None
        except csv.Error as e:
            raise FitError(f"{rp.csv}: not a calibration run CSV ({e})") from None
        idle = [x.get("idle_power_w") for x in prov.get("sessions", []) if x.get("idle_power_w") is not None]
        engine_s = _gpu_engine_overhead(prov)
        prov_out.append({"run_id": prov.get("run_id"), "csv": rp.csv.name, "json": rp.json.name,
                         "csv_sha256": sha256_file(rp.csv), "json_sha256": sha256_file(rp.json),
                         "suite": prov.get("suite", {}).get("name"), "suite_sha256": prov.get("suite", {}).get("sha256"),
                         "part": prov.get("suite", {}).get("part"), "rows": len(rows),
                         "rows_ok": sum(1 for r in rows if r.get("status") == "ok"),
                         "samples_done": prov.get("samples_done"),
                         "status": prov.get("status"), "samples_in_part": prov.get("suite", {}).get("samples_in_part"),
                         "meter": prov.get("meter", {}).get("name"),
                         "energy_source": prov.get("meter", {}).get("energy_source"),
                         "device": {k: prov.get("device", {}).get(k) for k in ("kind", "name", "uuid")},
                         "gpu_name": prov.get("meter", {}).get("gpu_name"),
                         "driver_version": prov.get("meter", {}).get("driver_version"),
                         "started_utc": prov.get("started_utc"), "idle_power_w": idle})
        for row in rows:
            if None in row or None in row.values() or any(k not in row for k in _NEEDED):  # torn: field count
                skipped["torn (wrong number of fields)"] += 1
                continue
            if row.get("status") != "ok":
                skipped["not ok"] += 1
                continue
            try:
                t_meas = float(row["time_s"])
                p_meas = float(row["avg_power_w"])
            except (TypeError, ValueError):
                skipped["time_s or avg_power_w not a number"] += 1
                continue
            try:
                params = json.loads(row["params"])
            except (TypeError, ValueError, RecursionError):
                skipped["unparseable"] += 1
                continue
            if not isinstance(params, dict):  # the suites write a JSON object; anything else is a damaged row
                skipped["unparseable"] += 1
                continue
            if not (t_meas > 0 and math.isfinite(t_meas)):
                skipped["time not a finite number > 0"] += 1
                continue
            if not (p_meas >= 0 and math.isfinite(p_meas)):
                skipped["power not a finite number >= 0"] += 1
                continue
            fam, prec, phase = row["family"], row["precision"], row["phase"]
            if phase == "backward" and engine_s > 0:
                t_meas += _overhead_s(row, rp.csv)  # runs that subtracted the engine overhead: undo it
                if t_meas < HOST_BOUND_FACTOR * engine_s:
                    skipped["host-bound backward call (kernel time not observable)"] += 1
                    continue
            # the same measurement twice (a run file given under two names, a copied CSV) would count double
            dup_key = (fam, row["params"], prec, phase, row["time_s"], row["avg_power_w"], row.get("energy_j"))
            if dup_key in seen:
                skipped["duplicate sample"] += 1
                continue
            seen.add(dup_key)
            try:  # the sample's records and their prior: a damaged row is dropped and counted, never a crash
                recs, how = benchmarks.fit_records(fam, params, prec, phase)
                pri = [op_prior(r, spec, prec) for r in recs]
                t_prior = sum(p.time_s for p in pri)
            except benchmarks.InvalidSample as e:  # params, phase or precision no suite produces (e.g. m = -5)
                skipped[f"invalid sample ({e.reason})"] += 1
                continue
            except (benchmarks.BenchmarkError, KeyError, TypeError, ValueError, OverflowError,
                    ZeroDivisionError) as e:  # a damaged row (e.g. conv groups 0): dropped and counted
                skipped[f"unknown sample ({type(e).__name__})"] += 1
                continue
            builders[how] += 1
            if t_prior <= 0:
                skipped["zero prior"] += 1
                continue
            if not PLAUSIBLE[0] <= t_meas / t_prior <= PLAUSIBLE[1]:  # e.g. time_s 1e308: a damaged row
                skipped[f"measured / prior time outside [{PLAUSIBLE[0]:g}, {PLAUSIBLE[1]:g}]"] += 1
                continue
            span = max(spec.tdp_w - spec.idle_w, 1e-9)
            pf = min(POWER_CLIP[1], max(POWER_CLIP[0], (p_meas - spec.idle_w) / span))
            merged: dict[tuple, list] = {}
            for r, p in zip(recs, pri):
                k = (r.op, r.kind, r.phase, r.dtype, r.flops, r.bytes_read, r.bytes_written, r.dims, r.recompute)
                if k in merged:
                    merged[k][1] += p.time_s
                else:
                    merged[k] = [r, p.time_s]
            sid = f"{row['sample_id']}@{rp.csv.name}"
            shape_key = f"{fam}:{row['params']}"
            for r, tp in merged.values():
                kinds[r.kind.value] += 1
                data.rows.append(op_features(r, spec, prec))
                data.time_target.append(math.log(t_meas / t_prior))
                data.power_target.append(pf)
                data.weight.append(max(tp / t_prior, 1e-6))
                data.family.append(fam)
                data.shape.append(shape_key)
                data.sample.append(sid)
                data.sample_time.append(t_meas)
    if spec is None:
        raise FitError("no runs given")
    return data, spec, {"runs": prov_out, "record_builders": dict(builders), "record_kinds": dict(sorted(kinds.items())),
                        "skipped_rows": dict(skipped), **meta}


# measured / prior time of one sample beyond which the row is damaged, not a calibration signal: the prior is a
# roofline bound with efficiency ceilings, so a real kernel lands within ~0.1-20x of it; 1e-4 / 1e4 only drops rows
# no GPU can produce (review: time_s 1e308 overflowed the fit, exit 3)
PLAUSIBLE = (1e-4, 1e4)


def _refuse_foreign_files(out: Path, key: str = "", measured: bool = True) -> None:
    """A fit writes card.json, time.txt and power.txt into ``out``, replacing an earlier model there; files of those
    names that are not a wattlint model (``--out .`` in a project with its own card.json) are never overwritten, nor
    is another GPU's model (``key``: the GPU being fitted), nor a GPU's measured model by a CPU / fake-device fit
    (``measured`` False) -- wherever the folder is (a --models-dir / WATTLINT_MODELS_DIR folder too)."""
    import json

    from ..energy.model import CARD, MODEL_SCHEMA, POWER_FILE, TIME_FILE

    if out.exists() and not out.is_dir():
        raise FitError(f"--out {out}: an existing file, not a folder (a fitted model is a folder of card.json, time.txt "
                       "and power.txt); pick another --out")
    present = [n for n in (CARD, TIME_FILE, POWER_FILE) if (out / n).exists()]
    if not present:
        return
    try:
        card = json.loads((out / CARD).read_text(encoding="utf-8"))
        schema = card.get("schema")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        card, schema = {}, None
    if schema != MODEL_SCHEMA:
        raise FitError(f"--out {out}: {', '.join(present)} there {'is' if len(present) == 1 else 'are'} not a "
                       f"wattlint energy model ({MODEL_SCHEMA}) and never overwritten; pick another --out")
    held = card.get("gpu") if isinstance(card.get("gpu"), dict) else {}
    held_key = str(held.get("key") or "")
    if key and held_key and held_key != key:
        raise FitError(f"--out {out}: holds the energy model of {held_key}; fitting {key} there would replace it "
                       f"(never overwritten); pick another --out")
    if not measured and not (held.get("is_cpu") or held.get("is_fake")):
        raise FitError(f"--out {out}: holds a measured GPU energy model ({held_key or 'unknown GPU'}); a CPU or "
                       f"fake-device fit never replaces one; pick another --out")


def fit_runs(run_args: list[str], out_dir: str | None, gpu_key: str | None = None, *, folds: int = 5,
             rounds: int | None = None):
    from ..energy.model import fit_model
    from .backends import spec_to_dict

    runs = find_runs(run_args)
    data, spec, prov = load_fit_data(runs, gpu_key)
    is_cpu = spec.vendor == "cpu" or prov.get("device_kind") == "cpu"
    is_fake = prov.get("device_kind") == "fake"
    if out_dir is None:
        if is_cpu or is_fake:
            out_dir = str(runs[0].csv.parent / "model")
        else:
            from ..energy.predictor import user_models_dir

            out_dir = str(user_models_dir() / spec.key)  # the user's own models, never the installed package
    out = Path(out_dir).resolve()
    from ..energy.predictor import MODELS_DIR, user_models_dir

    for models in (MODELS_DIR.resolve(), user_models_dir().resolve()):
        if (is_cpu or is_fake) and (out == models or models in out.parents):
            raise FitError(f"{out_dir}: a {'CPU' if is_cpu else 'fake'}-fitted model never goes into a models "
                           f"folder ({models}): it is not a GPU calibration; pick another --out")
    _refuse_foreign_files(out, spec.key, measured=not (is_cpu or is_fake))
    idle_meas = [v for r in prov["runs"] for v in r.get("idle_power_w") or []]
    gpu = {"key": spec.key, "name": spec.name, "vendor": spec.vendor, "arch": spec.arch, "is_cpu": is_cpu,
           "is_fake": is_fake, "tdp_w": spec.tdp_w, "idle_w": spec.idle_w, "spec_source": prov.get("spec_source"),
           "measured_idle_w": (sum(idle_meas) / len(idle_meas)) if idle_meas else None,
           "energy_source": prov.get("energy_source")}
    if prov.get("spec_source") != "database":
        gpu["spec"] = spec_to_dict(spec)
    dates = sorted(str(r.get("started_utc") or "")[:10] for r in prov["runs"])
    label = f"{spec.key} run {dates[-1] if dates else '?'}"
    if is_cpu:
        label += " (CPU method check: time measured, energy modelled)"
    from ..energy.model import NUM_ROUNDS

    model = fit_model(data, out, gpu=gpu, provenance=prov, calibration_source=label, k=folds,
                      rounds=rounds or NUM_ROUNDS)
    return model
