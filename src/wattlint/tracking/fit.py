"""Run records -> a model-level (whole-step) correction for one GPU: ``wattlint fit RUNS_FOLDER``.

Each usable record gives, for one trained model on that GPU, the measured stable step time (and device energy per
step when it was MEASURED: NVML counter or sampling) beside the static prediction recorded in its header. The
correction is a factor on top of the op-level energy model that made those predictions:

    time_factor   = exp(mean over models of mean over that model's runs of ln(measured / predicted))
    energy_factor = the same on device energy per step (only from measured energy; None when every record's
                    energy is modelled, as on a CPU: energy then follows the time correction at the prior's power)

Models are weighted equally (many runs of one model do not dominate). A run is one training job: the records of the
ranks of one torchrun job (one record per rank, each compared with its GPUs' share of the job's estimate) are ONE run,
counted once for the minimum of runs, weighted as one run within its model (the mean of its ranks' log ratios) and
held out together; they are told apart as ``wattlint compare-run`` puts ranks together: the same header ``job``
(world size, master address, run id), model, GPU and plan, distinct ranks, and (what tells apart two jobs launched
alike, one after the other) running at the same time. Written to ``<user data
dir>/wattlint/models/<gpu-key>/run_correction.json`` by default (CPU: beside the records). It is validated
leave-one-run-out (each run, all its ranks together, predicted by the factor of all the others) and, with >= 2 models, leave-one-model-out
(the honest figure for a model never tracked); the 5-95 % range is exp(mean +- 1.645 sd) of the held-out log
residuals (widened to cover every observed residual). Records of another GPU, of an op-level model other than the
first record's, timed on another step clock than the first record's (wall / process), or (with --model-hash) of
another model named one by one are refused with a clear message; records with no stable phase or no static
prediction, records found in a folder that name no device to correct (a CPU run tracked without cpu_calibration=,
an unresolved GPU: the default wattlint-runs/ folder collects every run) and (with --model-hash) of another model
found in a folder, are skipped and listed; so are records whose prediction includes a run correction and that keep
no uncorrected one beside it (``static.base``, what a record tracked while a correction applies is fitted against)
and damaged records (a ``static.base`` or ``static.base.per_step`` that is not an object, a time that is not a
number; a ``static`` or ``static.per_step`` that is not one is refused with the file and line, as any record the
run-record schema refuses). The correction names the content of the op-level model it sits on
(``base_model_id``): estimates apply it on top of that model only (wattlint.energy.predictor.apply_run_correction).
Records of a user's fitted model that do not say which fit of it predicted them (no ``energy_model_id``: tracked
before wattlint recorded it) are fitted, not skipped: beside records that name the fit, they are taken as predicted by
that one (``base_model_id_from`` "records"); alone, the correction is tied to the model of that label found now where
it goes (or, none found, names no model and is applied on top of no fitted model). The correction lists them
(``unidentified_records``) and print_fit says so in each case.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..types import ConfigError, WattlintError
from .job import SAME_JOB, SAME_RUN, launch_conflict, launch_vars
from .project import Settings, analyze
from .record import SCHEMA as SCHEMA_RUN
from .record import read_record
from .compare import device_share, energy_basis
from .stats import Z90

SCHEMA = "wattlint.run-correction/1"
FILE = "run_correction.json"
MIN_RUNS = 2
# A run whose measured / predicted time or energy lies outside this band is not fitted: a static estimate off by
# more than 1,000x is a damaged record (or a bug), not a calibration signal, and one such run would drive the
# correction to ~0 or overflow it (review: a record with time_s 1e308 wrote 'time x0.000' and NaN ranges)
PLAUSIBLE_RATIO = (1e-3, 1e3)
METHOD = ("time_factor = exp(mean over models of the mean ln(measured / predicted) stable step time of its runs; "
          "a multi-rank job is one run, the mean of its ranks'); energy_factor likewise on measured device energy "
          "per step (None when energy is modelled); validated leave-one-run-out (a job's ranks held out together) "
          "and leave-one-model-out; 5-95 % range exp(mean +- 1.645 sd) of held-out log residuals, widened to cover "
          "each of them")
#: the calibrations whose model a user fits (and refits under the same label): a prediction by one must carry the
#: model's content id (energy.predictor.model_content_id) to be fitted, and a correction without one is never
#: applied on top of one
FITTED_HERE = ("measured", "transferred")
JOB_OVERLAP_S = 2.0  # slack on 'running at the same time': started_utc has whole seconds


class RunFitError(WattlintError):
    pass


@dataclass
class RunPoint:
    file: str
    sha256: str
    model_hash: str | None
    model_name: str | None
    gpu_key: str
    time_meas: float
    time_pred: float
    energy_meas: float | None
    energy_pred: float | None
    energy_basis: str
    stable_steps: int
    job: str | None = None  # the ranks of one multi-process job share it (its first record's file); None: one process
    rank: int | None = None

    @property
    def run(self) -> str:
        """What counts as one run: the job of a rank's record, else the record itself."""
        return self.job or self.file

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class RunCorrection:
    """What the predictor needs: multiply per-step time by ``time_factor`` and device energy by
    ``energy_factor`` (or ``time_factor`` when None: power unchanged); ``quantiles`` are the 5-95 % multiplicative
    range of measured / corrected prediction ({"time": (lo, hi), "energy": (lo, hi)})."""

    gpu_key: str
    time_factor: float
    energy_factor: float | None
    quantiles: dict[str, tuple[float, float]]
    source: str
    base_energy_model: str
    runs: int
    models: int
    path: str = ""
    # the content of the op-level model it was fitted on top of (energy.predictor.model_content_id; None: the prior,
    # or records that did not record it): a correction is applied on top of that very model only
    base_model_id: str | None = None
    card: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def short(h: str | None) -> str:
    return (h or "none").replace("sha256:", "")[:12]


def record_files(paths: Sequence[str], duplicates: list[Path] | None = None,
                 other_version: list[dict[str, str]] | None = None) -> list[Path]:
    """RUN arguments -> run record files (a folder: its *.jsonl whose first line is a wattlint.run/1 header); a file
    reached twice counts once (appended to ``duplicates`` when given). A folder's records written by another wattlint
    version are left out of the fit, each listed in ``other_version`` ({file, reason}) when given, so that the fit
    says so (review: left out without a word); named explicitly, read_record says which version wrote it. A folder's
    .jsonl that cannot be read refuses the fit (RunFitError): whether it is a record cannot be told, and a record is
    never left out silently."""
    from .record import SCHEMA as RUN_SCHEMA
    from .record import record_schema, schema_is_newer, jsonl_files

    out: list[Path] = []
    for p in paths:
        pp = Path(p)
        if pp.is_dir():
            for f in jsonl_files(pp):
                try:
                    schema = record_schema(f)
                except WattlintError as e:
                    raise RunFitError(f"{e}: whether it is a run record cannot be told, and fit never leaves one out "
                                      f"silently; make it readable, or move it out of {pp}") from None
                if schema == RUN_SCHEMA:
                    out.append(f)
                elif schema is not None and other_version is not None:
                    who = "a newer" if schema_is_newer(schema) else "another"
                    other_version.append({"file": str(f), "schema": schema,
                                          "reason": f"written as {schema} by {who} wattlint version (this one reads "
                                                    f"{RUN_SCHEMA}); update wattlint to fit it"})
        elif pp.is_file():
            out.append(pp)
        else:
            raise RunFitError(f"{p}: no such file or folder")
    seen: set[Path] = set()
    uniq = []
    for f in out:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            uniq.append(f)
        elif duplicates is not None:
            duplicates.append(f)
    return uniq


def is_run_record_args(paths: Sequence[str]) -> bool:
    """True when the RUN arguments of ``wattlint fit`` are run records (files or folders of them). A folder whose
    .jsonl files cannot be read (and that holds no calibration run either) is refused with the file that cannot be
    read (review: it was taken for calibration runs, "no calibration runs")."""
    from ..io import not_a_file
    from ..types import InputError
    from .record import is_run_record, jsonl_files

    for p in paths:  # a named pipe or a device is never opened (a pipe blocks the read for ever): refused first
        what = not_a_file(p)
        if what is not None and not what.startswith("a directory"):
            raise InputError(f"{p}: is {what}, not a file; name a run record (.jsonl), a calibration run "
                             "(.csv / .json) or a folder of them")
    found = False
    for p in paths:
        pp = Path(p)
        if pp.is_dir():
            unreadable: WattlintError | None = None
            has_record = False
            for f in jsonl_files(pp):
                try:
                    if is_run_record(f):
                        has_record = True
                        break
                except WattlintError as e:
                    unreadable = unreadable or e
            if has_record:
                found = True
            elif any(pp.glob("*.csv")):
                return False
            elif unreadable is not None:
                raise RunFitError(f"{unreadable}: whether it is a run record cannot be told; make it readable, or "
                                  f"move it out of {pp}")
        elif pp.suffix.lower() == ".jsonl" or is_run_record(pp):
            found = True
        else:
            return False
    return found


def load_points(files: Sequence[Path], gpu_key: str | None = None, model_hash: str | None = None,
                named: Sequence[Path] | None = None) -> tuple[list[RunPoint], list[dict[str, str]], str, str, str]:
    """(usable points, skipped {file, reason}, gpu key, base energy model, step clock). RunFitError for refused
    records. ``named``: the files the user named one by one (None: all of them); under ``model_hash`` a record of
    another model found in a folder is skipped and listed, a named one is refused."""
    points: list[RunPoint] = []
    skipped: list[dict[str, str]] = []
    target = gpu_key
    first_gk: str | None = None  # the first record's GPU (named when every record is skipped)
    base: str | None = None
    base_id: str | None = None
    base_cal = ""
    unidentified: list[str] = []
    base_file = ""
    clock: str | None = None
    clock_file = ""
    named_set = None if named is None else {Path(f).resolve() for f in named}
    seen: dict[str, str] = {}
    jobs: list[dict[str, Any] | None] = []  # per point: which job it is a rank of (None: a single process)
    for f in files:
        try:
            rec = read_record(f)
        except WattlintError as e:  # damaged, unreadable, of another version: refuse, saying how to fit the others
            found = named_set is not None and Path(f).resolve() not in named_set
            raise RunFitError(f"{e}; fit never leaves a record out silently: "
                              + (f"move it out of {Path(f).parent} to fit the others" if found
                                 else "leave it out of the arguments to fit the others")) from None
        h = rec.header
        if rec.sha256 in seen:  # the same record under two names would count twice
            skipped.append({"file": str(f), "reason": f"duplicate of {Path(seen[rec.sha256]).name} (same content)"})
            continue
        seen[rec.sha256] = str(f)
        in_folder = named_set is not None and Path(f).resolve() not in named_set  # found in a folder, not named
        gk = (h.get("device") or {}).get("gpu_key")
        if not gk and in_folder:  # the default wattlint-runs/ collects every run: list it, fit the others
            skipped.append({"file": str(f), "reason": "no device to correct (a CPU run without cpu_calibration=, "
                                                      "or a GPU the tracker did not resolve)"})
            continue
        if not gk:
            if (h.get("device") or {}).get("kind") == "cpu":
                raise RunFitError(f"{f}: a CPU run tracked without cpu_calibration= names no device and has no "
                                  "static prediction to correct; track it with cpu_calibration=<folder of a "
                                  "'wattlint calibrate --device cpu' run>")
            raise RunFitError(f"{f}: the record names no GPU database key (its GPU was not resolved): it cannot "
                              "calibrate a GPU; re-run the tracker with gpu=KEY")
        if (h.get("device") or {}).get("kind") == "cpu" and not str(gk).startswith("cpu-"):
            why = (f"measured on a CPU against a {gk} estimate (gpu= on a machine without CUDA): it cannot "
                   f"calibrate {gk}")
            if in_folder:
                skipped.append({"file": str(f), "reason": why})
                continue
            raise RunFitError(f"{f}: {why}; leave it out of the arguments")
        if gpu_key is not None and gk != gpu_key and in_folder:  # --gpu picks one GPU's records of a folder
            skipped.append({"file": str(f), "reason": f"measured on {gk}, not --gpu {gpu_key}"})
            continue
        if first_gk is None:
            first_gk = gk
        mh = (h.get("model") or {}).get("hash")
        if model_hash and mh != model_hash and short(mh) != short(model_hash):
            if in_folder:
                skipped.append({"file": str(f), "reason": f"another model (hash {short(mh)}, not --model-hash "
                                                          f"{short(model_hash)})"})
                continue
            raise RunFitError(f"{f}: model hash {short(mh)} is not --model-hash {short(model_hash)}: a record of "
                              "another model cannot calibrate this one; leave it out of the arguments")
        # every reason to skip a record is checked before the checks against the other records (GPU, clock,
        # energy model): a record skipped anyway never refuses the others (review)
        # a static or static.per_step that is not an object is refused by read_record above (the record schema:
        # exit 2, one line naming file:line); static.base is not in the schema: _base_prediction skips and lists it
        st = h.get("static") or {}
        if not st or st.get("error") or not (st.get("per_step") or {}).get("time_s"):
            skipped.append({"file": str(f), "reason": f"no static prediction ({st.get('error') or 'none'})"})
            continue
        pred, why = _base_prediction(st)
        if why:
            skipped.append({"file": str(f), "reason": why})
            continue
        rd = rec.run_data()
        a = analyze(rd, Settings.from_dict(h.get("settings")))
        reached = any(e.get("kind") == "stable" for e in rec.events)
        if not a.get("stable") and not (reached and "step_time_s" in a):
            # usable when the run reached its stable phase (an event line) even if the spread over the whole run
            # later grew past the declaration threshold; the stable mean is that of the whole post-warm-up run
            skipped.append({"file": str(f), "reason": f"no stable phase ({a.get('reason')})"})
            continue
        ps = a["per_step"]
        basis = energy_basis(a)
        e_meas = ps.get("device_energy_j") if basis == "measured" else None
        e_pred = pred["per_step"].get("gpu_energy_j") if e_meas is not None else None
        if e_pred is not None:  # one rank's record of a multi-GPU job: its GPU's share of the job's estimate
            e_pred = float(e_pred) * device_share(a, st)[0]
        odd = _implausible(("time", ps.get("time_s"), pred["per_step"].get("time_s")),
                           *((("energy", e_meas, e_pred),) if e_meas is not None else ()))
        if odd:
            skipped.append({"file": str(f), "reason": odd})
            continue
        if target is None:
            target = gk
        if gk != target:
            raise RunFitError(f"{f}: measured on {gk}, not {target}: a run correction belongs to one GPU; fit each "
                              f"GPU's records separately (wattlint fit --gpu {gk} ...)")
        ck = str((h.get("settings") or {}).get("clock") or "wall")
        if clock is None:
            clock, clock_file = ck, str(f)
        elif ck != clock:
            raise RunFitError(f"{f}: its steps were timed on the {ck!r} clock, but {clock_file}'s on the {clock!r} "
                              "clock (process: CPU seconds of all threads; wall: elapsed time): one correction "
                              "cannot mix them; fit these records separately")
        em = _label(pred)
        mid = pred.get("energy_model_id")
        if mid is None and str(pred.get("calibration")) in FITTED_HERE:
            unidentified.append(str(f))  # tracked before the model's content was recorded: said by print_fit
        if base is None:
            base, base_id, base_file, base_cal = em, mid, str(f), str(pred.get("calibration"))
        elif em == base and (mid is None or base_id is None):  # a record that does not say which fit: the one named
            base_id = base_id or mid
        elif em != base or mid != base_id:
            what = f"energy model {em!r}" + (f" (content {short(mid)})" if mid != base_id else "")
            was = f"{base!r}" + (f" (content {short(base_id)})" if mid != base_id else "")
            raise RunFitError(f"{f}: predicted with {what}, but {base_file} with {was}: a run "
                              "correction sits on top of ONE op-level model; fit these records separately")
        points.append(RunPoint(
            file=str(f), sha256=rec.sha256, model_hash=mh, model_name=(h.get("model") or {}).get("name"),
            gpu_key=gk, time_meas=float(ps["time_s"]), time_pred=float(pred["per_step"]["time_s"]),
            energy_meas=e_meas, energy_pred=e_pred,
            energy_basis=basis, stable_steps=int(a["step_time_s"]["n"])))
        jobs.append(_job_of(h, rd.elapsed_s, (rec.summary or {}).get("close_time_s")))
    _assign_jobs(points, jobs)
    if target is None:
        target = first_gk
    if target is None:
        if skipped:  # every record skipped (a folder of CPU runs without cpu_calibration=): say why, each
            why = "; ".join(f"{Path(x['file']).name}: {x['reason']}" for x in skipped)
            raise RunFitError(f"no usable run record: {why}" + (
                "; a CPU run needs cpu_calibration=<folder of a 'wattlint calibrate --device cpu' run> when it is "
                "tracked" if any(x["reason"].startswith("no device to correct") for x in skipped) else ""))
        raise RunFitError("no run records given")
    return points, skipped, target, base or "", clock or "wall", {"id": base_id, "calibration": base_cal,
                                                                   "unidentified": unidentified}


def _label(pred: dict[str, Any]) -> str:
    return str(pred.get("energy_model") or f"{pred.get('calibration')}: {pred.get('calibration_source')}")


def _not_an_object(value: Any, where: str) -> str | None:
    """Why ``value`` (a record's header entry at ``where``, absent or null allowed) is not the object (a JSON dict)
    it should be, or None: such a record is damaged, skipped and listed like one whose time_s is not a number."""
    if value is None or isinstance(value, dict):
        return None
    return (f"{where} = {json.dumps(value, default=str)[:40]}: not an object ({type(value).__name__}; a damaged "
            "record)")


def _base_prediction(st: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``(prediction, None)``: the static prediction of the op-level model alone that a record's header holds (its
    ``static``, or where that already includes a run-level correction, the uncorrected one the tracker keeps beside
    it in ``static.base``), else ``({}, why it cannot be fitted)``. Its ``energy_model_id`` (the op-level model's
    content) tells which fit of a model predicted it: two fits of one day share their label."""
    pred = st
    em = _label(st)
    if "run-level correction" in em:
        b = st.get("base")
        damaged = _not_an_object(b, "static.base") or (
            isinstance(b, dict) and _not_an_object(b.get("per_step"), "static.base.per_step"))
        if damaged:  # review: a list or a string there was an internal error (exit 3)
            return {}, damaged
        if not isinstance(b, dict) or b.get("error") or not (b.get("per_step") or {}).get("time_s") \
                or "run-level correction" in _label(b):
            why = (b or {}).get("error") if isinstance(b, dict) else None
            return {}, (f"its static prediction includes a run-level correction ({em}) and the record holds no "
                        "uncorrected prediction" + (f" ({why})" if why else " (tracked before wattlint kept it)")
                        + ": fitting on it would correct twice; track the run again to fit it")
        pred = b
    mid = pred.get("energy_model_id")
    if mid is not None and not isinstance(mid, str):
        return {}, f"energy_model_id = {json.dumps(mid, default=str)[:40]}: not a content hash (a damaged record)"
    return pred, None


def _job_of(h: dict[str, Any], elapsed: float | None, closed: float | None) -> dict[str, Any] | None:
    """Which job a record is a rank of, as ``wattlint compare-run`` puts ranks together (wattlint.tracking.job): the
    header's ``job`` (world size, master address, run id) with the model, GPU and plan; the launcher's job id where
    both records carry one (``launch``); and when it ran (started_utc, to the last window or the close), which tells
    apart jobs launched alike one after the other (torchrun without --rdzv-id / --standalone gives every job run id
    'none' and the same master address). None: a single process (or a record without a rank: a run of its own)."""
    j = h.get("job")
    if not isinstance(j, dict) or not isinstance(j.get("rank"), int) or not isinstance(j.get("world_size"), int) \
            or j["world_size"] < 2:
        return None
    key = json.dumps([get(h) for _, get in (*SAME_RUN, *SAME_JOB)], sort_keys=True, default=str)
    try:
        start = _dt.datetime.strptime(str(h.get("started_utc")), "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=_dt.timezone.utc).timestamp()
    except ValueError:
        start = None
    span = max([float(x) for x in (elapsed, closed) if isinstance(x, (int, float)) and math.isfinite(x)] or [0.0])
    return {"key": key, "rank": j["rank"], "world": j["world_size"], "start": start,
            "end": None if start is None else start + span,
            "launch": launch_vars(h)}


def _assign_jobs(points: list[RunPoint], jobs: list[dict[str, Any] | None]) -> None:
    """Set ``job`` / ``rank`` of the points that are ranks of a multi-process job: records with the same job key and
    the same launcher's job id where both carry one, that ran at the same time (+- JOB_OVERLAP_S; an unknown time is
    taken as overlapping) with distinct ranks, at most the world size of them, are one job, named by its first
    record's file (in order of start). Review: two jobs alike but for their launcher's job id, started in the same
    second, were paired by file order (rank 1 of one job with rank 0 of the other)."""
    order = sorted(range(len(points)), key=lambda i: ((jobs[i] or {}).get("start") or 0.0, points[i].file))
    groups: list[dict[str, Any]] = []
    for i in order:
        m = jobs[i]
        if m is None:
            continue

        def fits(g: dict[str, Any], m: dict[str, Any] = m) -> bool:
            if g["key"] != m["key"] or m["rank"] in g["ranks"] or len(g["ranks"]) >= m["world"]:
                return False
            if launch_conflict(g["launch"], m["launch"]):
                return False
            if m["start"] is None or g["start"] is None:
                return True
            return m["start"] <= g["end"] + JOB_OVERLAP_S and m["end"] >= g["start"] - JOB_OVERLAP_S

        g = next((g for g in groups if fits(g)), None)
        if g is None:
            g = {"key": m["key"], "ranks": set(), "start": m["start"], "end": m["end"], "name": points[i].file,
                 "launch": {}}
            groups.append(g)
        # the scheduler variables its ranks set so far (a rank without them, an older record, sets none)
        g["launch"] = {**m["launch"], **g["launch"]}
        g["ranks"].add(m["rank"])
        if m["start"] is not None and g["start"] is not None:
            g["start"], g["end"] = min(g["start"], m["start"]), max(g["end"], m["end"])
        points[i].job, points[i].rank = g["name"], m["rank"]


def _implausible(*pairs) -> str | None:
    """Why a (quantity, measured, predicted) pair cannot be fitted, or None."""
    lo, hi = PLAUSIBLE_RATIO
    for what, meas, pred in pairs:
        try:
            m, q = float(meas), float(pred)
        except (TypeError, ValueError):
            return f"{what}: measured {meas!r} / predicted {pred!r} are not numbers"
        if not (math.isfinite(m) and math.isfinite(q) and m > 0 and q > 0):
            return f"{what}: measured {m:g} / predicted {q:g} are not positive finite numbers"
        if not lo <= m / q <= hi:
            return (f"{what}: measured / predicted = {m / q:.3g}, outside [{lo:g}, {hi:g}]: a damaged record, not "
                    "a calibration signal")
    return None


def _mean(values) -> float:
    v = list(values)
    return sum(v) / len(v)


def _factor(points: Sequence[RunPoint], kind: str) -> float | None:
    """exp(mean over models of the mean log ratio of each model's runs); a multi-rank job is one run, the mean of its
    ranks' log ratios (its ranks are not as many runs)."""
    by_model: dict[str, dict[str, list[float]]] = {}
    for p in points:
        m, q = (p.time_meas, p.time_pred) if kind == "time" else (p.energy_meas, p.energy_pred)
        if m is None or q is None or m <= 0 or q <= 0:
            continue
        by_model.setdefault(p.model_hash or p.file, {}).setdefault(p.run, []).append(math.log(m / q))
    if not by_model:
        return None
    return math.exp(_mean(_mean(_mean(r) for r in runs.values()) for runs in by_model.values()))


def _validate(points: Sequence[RunPoint], kind: str, group: str) -> dict[str, Any] | None:
    """Hold out one run (group='run': a job's ranks together) or one model (group='model'); errors before/after the
    correction, one row per record."""
    rows = []
    for p in points:
        m, q = (p.time_meas, p.time_pred) if kind == "time" else (p.energy_meas, p.energy_pred)
        if m is None or q is None:
            continue
        if group == "run":  # review: rank 0 of a job predicted from rank 1 of the same job, a falsely narrow range
            others = [o for o in points if o.run != p.run]
        else:
            others = [o for o in points if (o.model_hash or o.file) != (p.model_hash or p.file)]
        f = _factor(others, kind)
        if f is None:
            continue
        rows.append({"file": Path(p.file).name, "model": p.model_name, "run": Path(p.run).name, "factor": f,
                     "before": q / m - 1.0,
                     "after": q * f / m - 1.0, "log_residual": math.log(m / (q * f))})
    if not rows:
        return None

    def mape(key):
        return sum(abs(r[key]) for r in rows) / len(rows)
    return {"n": len(rows), "runs": len({r["run"] for r in rows}), "mape_before": mape("before"), "mape_after": mape("after"),
            "worst_before": max(abs(r["before"]) for r in rows), "worst_after": max(abs(r["after"]) for r in rows),
            "rows": rows}


def _range(val: dict[str, Any] | None) -> tuple[float, float] | None:
    if not val:
        return None
    r = [row["log_residual"] for row in val["rows"]]
    mean = sum(r) / len(r)
    sd = math.sqrt(sum((x - mean) ** 2 for x in r) / (len(r) - 1)) if len(r) > 1 else abs(mean)
    lo, hi = math.exp(mean - Z90 * sd), math.exp(mean + Z90 * sd)
    return min(lo, math.exp(min(r))), max(hi, math.exp(max(r)))


def fit_records(paths: Sequence[str], out: str | None = None, gpu_key: str | None = None,
                model_hash: str | None = None, other_version: list[dict[str, str]] | None = None
                ) -> tuple[RunCorrection, Path]:
    """Fit, validate and write ``run_correction.json``; returns the correction and its path. ``other_version``
    (when given) receives the folders' records of another wattlint version that were left out ({file, schema,
    reason}): never fitted nor in the correction, but said (print_fit lists them)."""
    dups: list[Path] = []
    other: list[dict[str, str]] = [] if other_version is None else other_version
    files = record_files(paths, dups, other)
    if not files:
        if other:  # review: a folder of newer records read "no run records"
            schemas = sorted({o["schema"] for o in other})
            from .record import schema_is_newer

            who = "a newer" if all(schema_is_newer(x) for x in schemas) else "another"
            raise RunFitError(f"{', '.join(paths)}: no run record this wattlint reads ({SCHEMA_RUN}): "
                              f"{len(other)} written as {', '.join(schemas)} by {who} wattlint version "
                              f"({', '.join(Path(o['file']).name for o in other[:3])}"
                              f"{' ...' if len(other) > 3 else ''}); update wattlint to fit them")
        raise RunFitError(f"{', '.join(paths)}: no run records (*.jsonl with a {SCHEMA_RUN} header)")
    named = [Path(p) for p in paths if not Path(p).is_dir()]
    also = ("; left out: " + "; ".join(f"{Path(o['file']).name}: {o['reason']}" for o in other)) if other else ""
    try:
        points, skipped, key, base, clock, base_info = load_points(files, gpu_key, model_hash, named)
    except RunFitError as e:
        if also and str(e).startswith("no usable run record"):
            raise RunFitError(f"{e}{also}") from None
        raise
    n_runs = len({p.run for p in points})
    ranks = sum(1 for p in points if p.job)
    ranks_note = (f" ({ranks} of the {len(points)} records are ranks of {len({p.job for p in points if p.job})} "
                  "multi-process job(s): the ranks of one job are one run)" if ranks else "")
    if n_runs < MIN_RUNS:  # review: one 2-rank job was "2 run(s)"
        why = "; ".join(f"{Path(s['file']).name}: {s['reason']}" for x in (skipped, other) for s in x) or "none"
        twice = (f"; {len(dups)} record(s) named more than once counted once ({', '.join(sorted({d.name for d in dups}))})"
                 if dups else "")
        what = f"{n_runs} usable run(s)" if ranks else f"{n_runs} usable run record(s)"
        raise RunFitError(f"{what} of {key}{ranks_note}; a run correction needs >= {MIN_RUNS} "
                          f"(validated leave-one-run-out). Skipped: {why}{twice}")
    tf = _factor(points, "time")
    ef = _factor(points, "energy")
    val = {"leave_one_run_out": {"time": _validate(points, "time", "run"),
                                 "energy": _validate(points, "energy", "run")}}
    models = {p.model_hash or p.file for p in points}
    if len(models) >= 2:
        val["leave_one_model_out"] = {"time": _validate(points, "time", "model"),
                                      "energy": _validate(points, "energy", "model")}
    basis = val.get("leave_one_model_out") or val["leave_one_run_out"]
    q_time = _range(basis["time"])
    q_energy = _range(basis["energy"]) if ef is not None else q_time
    kinds = sorted({p.energy_basis for p in points})
    source = (f"run-level correction from {n_runs} tracked run(s){ranks_note} of {len(models)} model(s) on {key}: "
              "time "
              f"x{tf:.3f}" + (f", energy x{ef:.3f}" if ef is not None else ", energy follows time (no measured "
                              "energy)") + f"; on top of '{base}'"
              + (f"; steps timed on the {clock!r} clock" if clock != "wall" else ""))
    from ..energy.predictor import MODELS_DIR, user_models_dir

    is_cpu = key.startswith("cpu-") or kinds == ["modelled"]
    if out is None:  # like `wattlint fit` of calibration runs: the user's models folder, never the package
        out_path = (Path(paths[0]) if Path(paths[0]).is_dir() else Path(paths[0]).parent) / FILE if is_cpu \
            else user_models_dir() / key / FILE
    else:
        out_path = Path(out)
        if out_path.suffix != ".json" and out_path.exists() and not out_path.is_dir():
            raise RunFitError(f"--out {out}: an existing file, not a folder (a run correction is a .json file, or "
                              f"goes into a folder as {FILE}); pick another --out")
        if out_path.is_dir() or out_path.suffix != ".json":  # a folder (made when missing)
            out_path = out_path / FILE
    _refuse_replacing(out_path, files)
    for models in (MODELS_DIR.resolve(), user_models_dir().resolve()):
        if is_cpu and models in out_path.resolve().parents:
            raise RunFitError(f"{out_path}: a CPU run correction never goes into a models folder ({models}): it is "
                              "not a GPU calibration; pick another --out")
    base_id, base_from = base_info["id"], "records" if base_info["id"] else None
    if base_id is None and base_info["calibration"] in FITTED_HERE:
        # records tracked before the model's content was recorded: tied to the model of that label found now where
        # the correction is used (print_fit says so; a refit after the correction is never under it)
        base_id, base_from = _model_found_now(key, base, is_cpu, out_path)
    doc = {
        "schema": SCHEMA, "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "gpu": {"key": key, "is_cpu": is_cpu}, "base_energy_model": base, "base_model_id": base_id,
        "base_model_id_from": base_from, "unidentified_records": [Path(f).name for f in base_info["unidentified"]],
        "time_factor": tf, "energy_factor": ef,
        "quantiles": {"time": list(q_time) if q_time else None, "energy": list(q_energy) if q_energy else None},
        "range_basis": "leave-one-model-out" if "leave_one_model_out" in val else "leave-one-run-out",
        "energy_basis": kinds, "source": source, "validation": val,
        "runs": [p.as_dict() for p in points], "skipped": skipped, "model_hash": model_hash, "clock": clock,
        "method": METHOD,
    }
    from ..io import atomic_write_text  # a failed write keeps the previous correction whole

    atomic_write_text(out_path, json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return _from_doc(doc, out_path), out_path


def _model_found_now(key: str, label: str, is_cpu: bool, out_path: Path) -> tuple[str | None, str | None]:
    """(content id, where) of the op-level model labelled ``label`` that estimates would put this correction on top
    of: a GPU's along the models search path (the folder the correction goes into first), a CPU's in the CPU
    calibration folder it goes into; (None, None) when none of that label is found there."""
    from ..energy.predictor import ModelsDir, get_predictor, model_content_id, model_identity, search_path

    try:
        if is_cpu:
            from .static import cpu_device

            p = cpu_device(str(out_path.parent))[1]
        else:
            from ..hardware import resolve_gpu

            dirs = search_path()
            if out_path.parent.name == key:
                dirs = (ModelsDir(out_path.parent.parent.resolve(), "models dir"), *dirs)
            p = get_predictor(resolve_gpu(key)[0], dirs)
    except Exception:  # noqa: BLE001 - no model found: the correction names none (print_fit says so)
        return None, None
    p = p.base if isinstance(p, RunCorrectedPredictor) else p
    here = f"{getattr(p, 'calibration', '')}: {getattr(p, 'source', '')}"
    if p is None or model_identity(here) != model_identity(label):
        return None, None
    return model_content_id(p), here


def _refuse_replacing(out_path: Path, inputs: Sequence[Path]) -> None:
    """``--out`` may replace an earlier run correction, never a run record being fitted nor any other file (a
    baseline, a config, a record of another run): review found `fit a.json b.json --out a.json` replaced the
    record a.json with the correction."""
    target = out_path.resolve()
    if any(target == Path(f).resolve() for f in inputs):
        raise RunFitError(f"--out {out_path}: that is one of the run records being fitted; pick another --out")
    if not out_path.exists():
        return
    if out_path.is_dir():
        raise RunFitError(f"--out {out_path}: a folder where the correction file would go; pick another --out")
    try:
        schema = json.loads(out_path.read_text(encoding="utf-8")).get("schema")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, RecursionError):
        schema = None
    if schema != SCHEMA:
        raise RunFitError(f"--out {out_path}: an existing file that is not a run correction ({SCHEMA}) is never "
                          "overwritten; pick another --out")


def _from_doc(doc: dict[str, Any], path: Path) -> RunCorrection:
    q = doc.get("quantiles") or {}
    return RunCorrection(gpu_key=doc["gpu"]["key"], time_factor=float(doc["time_factor"]),
                         energy_factor=None if doc.get("energy_factor") is None else float(doc["energy_factor"]),
                         quantiles={k: tuple(v) for k, v in q.items() if v}, source=doc["source"],
                         base_energy_model=doc.get("base_energy_model", ""),
                         base_model_id=doc.get("base_model_id"),
                         # the ranks of one job are one run (their "job"); a correction written before: one per record
                         runs=len({r.get("job") or r.get("file") for r in doc.get("runs") or []}),
                         models=len({r.get("model_hash") or r.get("file") for r in doc.get("runs") or []}),
                         path=str(path), card=doc)


def read_correction(path: str | Path) -> RunCorrection:
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise RunFitError(f"{p}: unreadable run correction ({type(e).__name__}: {e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise RunFitError(f"{p}: not a run correction ({SCHEMA})")
    bad = _bad_numbers(doc)
    if bad:
        raise RunFitError(f"{p}: not a usable run correction ({bad})")
    try:
        return _from_doc(doc, p)
    except (KeyError, TypeError, ValueError) as e:
        raise RunFitError(f"{p}: not a usable run correction ({type(e).__name__}: {e})") from None


def _bad_numbers(doc: dict[str, Any]) -> str | None:
    """Why a correction's factors or ranges cannot be applied (non-finite, non-positive, implausible), or None."""
    lo, hi = PLAUSIBLE_RATIO
    q = doc.get("quantiles") or {}
    values = [("time_factor", doc.get("time_factor"))]
    if doc.get("energy_factor") is not None:
        values.append(("energy_factor", doc.get("energy_factor")))
    for k in ("time", "energy"):
        for i, v in enumerate(q.get(k) or [] if isinstance(q, dict) else []):
            values.append((f"quantiles.{k}[{i}]", v))
    for name, v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and lo <= v <= hi):
            return f"{name} = {v!r}: expected a finite factor in [{lo:g}, {hi:g}]"
    mid = doc.get("base_model_id")
    if mid is not None and not isinstance(mid, str):
        return f"base_model_id = {json.dumps(mid, default=str)[:40]}: expected a content hash (a string) or null"
    return None


def load_run_correction(models_dir: str | Path, gpu_key: str) -> RunCorrection | None:
    """The run-level correction of ``gpu_key`` in ``models_dir/<gpu_key>/run_correction.json``, or None (absent or
    unreadable: an estimate must never fail because of it)."""
    p = Path(models_dir) / gpu_key / FILE
    if not p.is_file():
        return None
    try:
        c = read_correction(p)
    except RunFitError:
        return None
    return c if c.gpu_key == gpu_key else None


def find_run_correction(gpu_key: str, dirs=None) -> RunCorrection | None:
    """The first ``<dir>/<gpu_key>/run_correction.json`` along the models search path
    (wattlint.energy.predictor.search_path(), or ``dirs``: paths or ModelsDir entries), or None."""
    if dirs is None:
        from ..energy.predictor import search_path

        dirs = search_path()
    elif isinstance(dirs, (str, bytes, os.PathLike)) or not hasattr(dirs, "__iter__"):
        # one path was read letter by letter ('/', 'p', ...) and quietly found nothing
        raise ConfigError(f"dirs={dirs!r}: expected a list of folders (paths or ModelsDir entries), e.g. [{dirs!r}], "
                          f"or None (the models search path), got {type(dirs).__name__}")
    for d in dirs:
        if not isinstance(getattr(d, "path", d), (str, os.PathLike)):
            raise ConfigError(f"dirs=: {d!r} ({type(d).__name__}) is not a folder (a str or os.PathLike path, or a "
                              "ModelsDir entry)")
        c = load_run_correction(getattr(d, "path", d), gpu_key)
        if c is not None:
            return c
    return None


class RunCorrectedPredictor:
    """A predictor (same interface as wattlint.energy.predictor.Predictor) = a base predictor x a run correction.

    Per-op times x ``time_factor``; per-op powers x ``energy_factor / time_factor`` (so energies x
    ``energy_factor``; power unchanged when the correction has no energy factor), a raised power capped at the
    device's board power ``tdp_w`` as the op-level measured model caps its own (energy = capped power x time: a
    GPU never draws more than its board power, review: 932 W on a 700 W H100). A what-if ``utilization`` is the
    base's (the prior's) alone: the override replaces the predicted efficiency, and the report labels those ops
    prior. Range: the correction's held-out quantiles, at least as wide as the op-level measured model's minimum.
    Apply it only on top of the base it was fitted on (``correction.base_model_id``, energy.predictor
    .apply_run_correction)."""

    calibration = "measured"

    def __init__(self, base, correction: RunCorrection):
        self.base = base
        self.correction = correction
        self.source = correction.source

    def predict(self, records, gpu, precision, utilization=None):
        times, powers = self.base.predict(records, gpu, precision, utilization)
        tf = self.correction.time_factor
        ef = self.correction.energy_factor if self.correction.energy_factor is not None else tf
        if utilization is not None:  # a what-if utilization is the base's prior, labelled so: no correction
            return list(times), list(powers)
        r = ef / tf
        cap = float(getattr(gpu, "tdp_w", 0.0) or 0.0)
        if r > 1 and cap > 0:  # never above the board power (nor below the base's own power, were it above it)
            return [t * tf for t in times], [min(p * r, max(p, cap)) for p in powers]
        return [t * tf for t in times], [p * r for p in powers]

    @property
    def searched(self) -> str:
        return getattr(self.base, "searched", "")

    def range_factors(self, quantity: str = "energy") -> tuple[float, float]:
        """5-95 % band of ``quantity`` (energy | time): the correction's held-out quantiles (energy falls back to
        time when the energy was not measured), widened around their central factor sqrt(lo x hi) to at least the
        op-level measured model's minimum band (energy.predictor.MIN_MEASURED_RANGE): a few runs that agree do not
        make a +-1 % (or zero-width) range (review)."""
        from ..energy.predictor import MIN_MEASURED_RANGE

        q = self.correction.quantiles.get(quantity) or self.correction.quantiles.get("time")
        if not q:
            try:
                return self.base.range_factors(quantity)
            except TypeError:  # a predictor with the older one-argument interface
                return self.base.range_factors()
        lo, hi = float(q[0]), float(q[1])
        mid = math.sqrt(lo * hi)
        return min(lo, mid * MIN_MEASURED_RANGE[0]), max(hi, mid * MIN_MEASURED_RANGE[1])


def print_fit(paths: Sequence[str], out: str | None, gpu_key: str | None, model_hash: str | None) -> int:
    """``wattlint fit RUN_RECORDS``: fit, write, and print the factors with their held-out errors."""
    other: list[dict[str, str]] = []
    corr, path = fit_records(paths, out, gpu_key, model_hash, other_version=other)
    doc = corr.card
    records = len(doc.get("runs") or [])
    print(f"run correction for {corr.gpu_key} from {corr.runs} run(s)"
          + (f" ({records} records: the ranks of a job are one run)" if records != corr.runs else "")
          + f" of {corr.models} model(s) -> {path}")
    print(f"  on top of: {corr.base_energy_model}")
    ef = "follows time (energy not measured: " + ", ".join(doc["energy_basis"]) + ")" \
        if corr.energy_factor is None else f"x{corr.energy_factor:.3f}"
    print(f"  time x{corr.time_factor:.3f}; energy {ef}")
    for name, v in doc["validation"].items():
        for kind in ("time", "energy"):
            m = v.get(kind)
            if m:
                print(f"  {name.replace('_', '-')} {kind}: MAPE {m['mape_before'] * 100:.1f} % -> "
                      f"{m['mape_after'] * 100:.1f} % (worst {m['worst_before'] * 100:.1f} % -> "
                      f"{m['worst_after'] * 100:.1f} %, {m['n']} held out"
                      + (f" in {m['runs']} run(s), a job's ranks together" if m.get("runs", m["n"]) != m["n"]
                         else "") + ")")
    q = corr.quantiles.get("time")
    if q:
        print(f"  5-95 % range ({doc['range_basis']}): x{q[0]:.2f} .. x{q[1]:.2f}")
    for s in doc["skipped"]:
        print(f"  skipped {Path(s['file']).name}: {s['reason']}")
    for s in other:  # review: a folder's newer record was left out without a word
        print(f"  left out {Path(s['file']).name}: {s['reason']}")
    unidentified = doc.get("unidentified_records") or []
    if unidentified and doc.get("base_model_id_from") not in (None, "records"):
        print(f"  note: {len(unidentified)} record(s) do not say which fit of '{corr.base_energy_model}' predicted "
              "them (tracked before wattlint recorded a model's content; two fits of one day share that label): the "
              f"correction is tied to the one found now, {doc['base_model_id_from']} (content "
              f"{short(corr.base_model_id)}); if it was refitted after those runs, track them again and refit")
    elif unidentified and doc.get("base_model_id_from") == "records":  # review: this case said nothing
        names = ", ".join(unidentified[:5]) + (f" and {len(unidentified) - 5} more" if len(unidentified) > 5 else "")
        print(f"  note: {len(unidentified)} record(s) do not say which fit of '{corr.base_energy_model}' predicted "
              f"them (tracked before wattlint recorded a model's content): {names}; they are taken as predicted by "
              f"the fit the other records name (content {short(corr.base_model_id)}), the model this correction is "
              "tied to; if it was refitted between those runs, move them out of the fit (or track them again) and "
              "refit")
    elif unidentified and corr.base_model_id is None:
        print(f"  note: {len(unidentified)} record(s) do not say which fit of '{corr.base_energy_model}' predicted "
              "them (tracked before wattlint recorded a model's content) and no model of that label is found where "
              "this correction would be used: no estimate applies it on top of a fitted model; track the runs "
              "again and refit")
    used = _where_used(corr, path)
    worse = worse_than_none(doc["validation"])
    if worse:  # as `wattlint fit` of calibration runs warns of a fit worse than the prior (commands/fit.py)
        import sys

        print(f"wattlint: warning: the run correction's held-out error is worse than no correction: {worse}; "
              + (used or "no estimate uses it where it is") + "; to keep the uncorrected model, delete or move "
              f"{path}; runs of more models may improve it", file=sys.stderr)
    elif doc["gpu"].get("is_cpu") and not used:
        print(f"  note: this run correction is used by no estimate where it is ({path}): "
              + (f"--cpu-calibration / cpu_calibration= DIR apply only DIR/{FILE} (DIR: the CPU calibration run "
                 "folder the runs were tracked with); to use it, fit with --out DIR (or move it there)"
                 if corr.gpu_key.startswith("cpu-") else
                 f"it was fitted on records without measured energy, and {corr.gpu_key} estimates read corrections "
                 "from models folders only"))
    return 0


def worse_than_none(validation: dict[str, Any]) -> str | None:
    """The held-out figures of a run correction that predicts worse than no correction (the op-level model alone),
    as one phrase, or None: leave-one-model-out where there is one (the honest figure for a model never tracked),
    else leave-one-run-out; time, and energy where it was measured."""
    name = "leave_one_model_out" if validation.get("leave_one_model_out") else "leave_one_run_out"
    out = []
    for kind in ("time", "energy"):
        m = (validation.get(name) or {}).get(kind)
        if m and m["mape_after"] > m["mape_before"]:
            out.append(f"{name.replace('_', '-')} {kind} MAPE {m['mape_after'] * 100:.1f} % vs "
                       f"{m['mape_before'] * 100:.1f} % uncorrected")
    return ", ".join(out) or None


def _where_used(corr: RunCorrection, path: Path) -> str | None:
    """Which estimates apply the correction written at ``path``, as one phrase, or None when none does: a GPU's
    from ``<models folder>/<gpu key>/``, a CPU's from the CPU calibration run folder of its CPU
    (--cpu-calibration / cpu_calibration=, wattlint.tracking.static.cpu_device)."""
    if not corr.card.get("gpu", {}).get("is_cpu"):
        if path.name == FILE and path.parent.name == corr.gpu_key:
            return (f"estimates for {corr.gpu_key} apply it on top of the model it was fitted on whenever "
                    f"{path.parent.parent} is on their models search path")
        return None
    from .static import cpu_calibration_runs

    try:
        runs = cpu_calibration_runs(path.parent)
    except WattlintError:
        return None
    from ..calibrate.backends import spec_from_dict

    try:
        key = spec_from_dict(runs[-1]["spec"]["values"]).key
    except Exception:  # noqa: BLE001 - a spec that does not read: that folder prices nothing
        return None
    if path.name != FILE or key != corr.gpu_key:
        return None
    return (f"estimates of CPU runs with --cpu-calibration / cpu_calibration= {path.parent} apply it on top of the "
            "model it was fitted on")
