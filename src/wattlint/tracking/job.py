"""One job from the records of its ranks: under torchrun every process writes its own run record of its own GPU(s)
(``-rank<N>``); ``wattlint compare-run r0.jsonl r1.jsonl ...`` reads them together as the job.

The ranks step in lock-step (data-, tensor- and pipeline-parallel training synchronises every optimizer step), so:

* time: the slowest rank's (its stable mean step time, its projected total and range; steps: the fewest any rank
  has recorded);
* energy, power, GPU-hours, host energy, CO2 and cost: the sum over the ranks (each rank measured only its own
  devices: wattlint.tracking.devices reads the LOCAL_RANK GPU under torchrun); ranges add their ends;
* devices: every rank's channels, named ``rank<N>/<name>``, so the static estimate is compared with its share of
  all of them (wattlint.tracking.compare.device_share);
* stable: when every rank is; input-bound: the rank that waits for data most.

Records are one job when they share the model (hash), the GPU, the plan request and, where the headers have it
(``job``: rank, world size, master address, torchrun run id, launcher's job id), the world size, master address and
torchrun run id, and the launcher's job id where both records carry one (a header written before wattlint recorded
it has none), with distinct ranks. Fewer records than the world size are merged and said so (the totals then cover
those ranks only)."""

from __future__ import annotations

from typing import Any

from ..types import InputError


def _job(h: dict[str, Any]) -> dict[str, Any]:
    return h.get("job") or {}


#: what the records of one job's ranks share, each as (what it is, how a header says it): checked by
#: :func:`check_one_job` before compare-run sums ranks, and the key by which ``wattlint fit`` puts ranks together
SAME_RUN = (("the model hash", lambda h: (h.get("model") or {}).get("hash")),
            ("the GPU", lambda h: ((h.get("device") or {}).get("kind"), (h.get("device") or {}).get("gpu_key"))),
            ("the plan", lambda h: (h.get("plan") or {}).get("request")))
SAME_JOB = (("the world size", lambda h: _job(h).get("world_size")),
            ("the master address", lambda h: _job(h).get("master")),
            # TORCHELASTIC_RUN_ID: torchrun's --rdzv-id, a fresh uuid under --standalone, 'none' otherwise (review:
            # compare-run never compared it, so two jobs alike but for it were summed as one)
            ("the torchrun run id", lambda h: _job(h).get("run_id")))
#: the scheduler's job of the ranks (``launch_id``: 'NAME=value,...' of SLURM_JOB_ID, PBS_JOBID, LSB_JOBID /
#: LSB_JOBINDEX, those set), what tells apart two jobs launched alike in the same second where nothing else does (two
#: nodes' torchrun with the default 127.0.0.1:29500 and run id 'none'). Compared variable by variable, only where both
#: records set it: a record of an older wattlint has none, and a rank started outside the scheduler's environment (a
#: node reached by ssh from the batch script) has none of its variables (review: a whole-string comparison split one
#: job's ranks)


def launch_vars(h: dict) -> dict[str, str]:
    """The scheduler's job variables a record's header recorded (``job.launch_id``), {} when none (absent, null)."""
    got = _job(h).get("launch_id")
    if not isinstance(got, str):
        return {}
    out = {}
    for part in got.split(","):
        k, sep, v = part.partition("=")
        if sep and k:
            out[k] = v
    return out


def launch_conflict(a: dict[str, str], b: dict[str, str]) -> str | None:
    """'NAME a vs b' for the first scheduler variable both set to different values, None when none is."""
    for k in sorted(a.keys() & b.keys()):
        if a[k] != b[k]:
            return f"{k} {a[k]!r} vs {b[k]!r}"
    return None


def check_one_job(records: list) -> list[str]:
    """Refuse (InputError) records that are not the ranks of one job; the notes to print about the merge."""
    if len(records) < 2:
        raise InputError("a job needs the records of at least two ranks")
    paths = [str(r.path) for r in records]
    if len(set(paths)) != len(paths):
        raise InputError("the same run record is named twice")
    seen: dict = {}
    for r in records:  # a copy, or the same file by another path: its energy would count twice
        ident = (r.header.get("run_id"), r.header.get("started_utc"))
        keys = ([("content", r.sha256)] if r.sha256 else []) + ([("run id", ident)] if any(ident) else [])
        for key in keys:
            if key in seen:
                raise InputError(f"{r.path}: the same run as {seen[key]} (same {key[0]}): a rank named twice would "
                                 f"count its energy twice")
            seen[key] = r.path

    def same(what: str, get) -> None:
        vals = [get(r.header) for r in records]
        if any(v != vals[0] for v in vals[1:]):
            odd = next(r for r, v in zip(records, vals) if v != vals[0])
            raise InputError(f"{odd.path}: {what} differs from {records[0].path}'s ({get(odd.header)!r} vs "
                             f"{vals[0]!r}): not a rank of the same job")

    # a header written by this wattlint always has "job": null for a single process (no torchrun ranks), which is a
    # run of its own; records of separate runs were summed as one job's ranks (their energies added)
    single = next((r for r in records if "job" in r.header and not r.header.get("job")), None)
    if single is not None:
        raise InputError(f"{single.path}: a single-process run (its header names no rank of a multi-process job): "
                         f"several records are read together only as the ranks of one torchrun job; compare each "
                         f"run on its own")
    for what, get in SAME_RUN:
        same(what, get)
    notes = []
    jobs = [_job(r.header) for r in records]
    if all(jobs):
        for what, get in SAME_JOB:
            same(what, get)
        seen: dict[str, tuple[str, object]] = {}  # variable -> (value, the record that set it first)
        for r in records:
            for k, v in launch_vars(r.header).items():
                if k in seen and seen[k][0] != v:
                    raise InputError(f"{r.path}: the scheduler's job differs from {seen[k][1]}'s ({k} {v!r} vs "
                                     f"{seen[k][0]!r}): not a rank of the same job")
                seen.setdefault(k, (v, r.path))
        ranks = [j["rank"] for j in jobs]
        dup = sorted({k for k in ranks if ranks.count(k) > 1})
        if dup:
            raise InputError(f"rank {dup[0]} appears in more than one record (two runs of the job?)")
        world = int(jobs[0]["world_size"])
        if len(ranks) < world:
            missing = sorted(set(range(world)) - set(ranks))
            notes.append(f"records of {len(ranks)} of the job's {world} ranks (missing: "
                         f"{', '.join(map(str, missing[:8]))}{', ...' if len(missing) > 8 else ''}): the totals cover "
                         f"these ranks' GPUs, compared with the estimate's share of them")
    elif any(jobs):
        notes.append("some records carry no rank (written outside torchrun or by an older wattlint): taken as ranks "
                     "of one job because model, GPU and plan match")
    else:
        notes.append("the records carry no rank (written outside torchrun or by an older wattlint): taken as ranks "
                     "of one job because model, GPU and plan match")
    return notes


def _sum(values) -> float | None:
    vals = list(values)
    return None if not vals or any(v is None for v in vals) else float(sum(vals))


def _rank_label(record, i: int) -> str:
    j = _job(record.header)
    return f"rank{j['rank']}" if "rank" in j else f"record{i}"


def merge(records: list, analyses: list[dict[str, Any]]) -> dict[str, Any]:
    """The job's analysis (the shape of :func:`wattlint.tracking.project.analyze`'s) from its ranks' analyses."""
    labels = [_rank_label(r, i) for i, r in enumerate(records)]
    timed = [a for a in analyses if a.get("step_time_s")]
    out: dict[str, Any] = {"steps": min(int(a.get("steps") or 0) for a in analyses),
                           "time_s": max(float(a.get("time_s") or 0.0) for a in analyses),
                           "boundaries": max(int(a.get("boundaries") or 0) for a in analyses),
                           "ranks": labels}
    if len(timed) < len(analyses):
        short = [lab for lab, a in zip(labels, analyses) if not a.get("step_time_s")]
        out.update(stable=False, reason=f"{', '.join(short)}: too few steps to analyse")
        return out
    slow = max(analyses, key=lambda a: a["step_time_s"]["mean"])
    reasons = [f"{lab}: {a['reason']}" for lab, a in zip(labels, analyses) if a.get("reason")]
    out.update(stable=all(a.get("stable") for a in analyses), reason="; ".join(reasons) or None,
               warmup_steps=slow["warmup_steps"], warmup_time_s=slow["warmup_time_s"],
               step_time_s=slow["step_time_s"], epoch_boundary_extra_s=slow.get("epoch_boundary_extra_s"))
    inputs = [a["input"] for a in analyses if a.get("input")]
    out["input"] = max(inputs, key=lambda i: i["data_wait_share"]) if inputs else None
    out["channels"] = [{**c, "name": f"{lab}/{c.get('name')}"} for lab, a in zip(labels, analyses)
                       for c in a.get("channels") or []]
    out["windows"] = sum(int(a.get("windows") or 0) for a in analyses)
    ms = [a.get("measured") or {} for a in analyses]
    out["measured"] = {"time_s": max(float(m.get("time_s") or 0.0) for m in ms),
                       "device_energy_j": _sum(m.get("device_energy_j") for m in ms),
                       "windows_filled": sum(int(m.get("windows_filled") or 0) for m in ms),
                       "host_energy_j": _sum(m.get("host_energy_j") for m in ms)}
    # what ran at the site (project.measured_totals per rank): the job's is the sum over its ranks, at their PUE
    for key in ("energy_kwh", "co2_kg", "cost_usd"):
        if all(m.get(key) is not None for m in ms):
            out["measured"][key] = float(sum(m[key] for m in ms))
    pues = {m.get("pue") for m in ms}
    if len(pues) == 1 and None not in pues:
        out["measured"]["pue"] = pues.pop()
    ps = [a["per_step"] for a in analyses]
    out["per_step"] = {"time_s": slow["per_step"]["time_s"],
                       "device_energy_j": _sum(p.get("device_energy_j") for p in ps),
                       "device_power_w": _sum(p.get("device_power_w") for p in ps),
                       "host_energy_j": _sum(p.get("host_energy_j") for p in ps)}
    projs = [a.get("projection") for a in analyses]
    if any(p is None for p in projs):
        out["projection"] = None
        out["projection_note"] = next((a.get("projection_note") for a in analyses if a.get("projection_note")),
                                      "no projection")
        return out
    proj: dict[str, Any] = {"total_steps": max(p["total_steps"] for p in projs),
                            "remaining_steps": max(p["remaining_steps"] for p in projs),
                            "remaining_boundaries": max(p["remaining_boundaries"] for p in projs),
                            "time_s": max(p["time_s"] for p in projs),
                            "time_s_range": [max(p["time_s_range"][0] for p in projs),
                                             max(p["time_s_range"][1] for p in projs)],
                            "rel_range_time": max(p["rel_range_time"] for p in projs),
                            "gpu_hours": float(sum(p["gpu_hours"] for p in projs))}
    for key in ("device_energy_j", "host_energy_j", "energy_kwh", "co2_kg", "cost_usd"):
        v = _sum(p.get(key) for p in projs)
        if v is not None:
            proj[key] = v
    for key in ("energy_kwh_range", "co2_kg_range", "cost_usd_range"):
        if all(p.get(key) for p in projs):
            proj[key] = [float(sum(p[key][0] for p in projs)), float(sum(p[key][1] for p in projs))]
    if all(p.get("rel_range_energy") is not None for p in projs):
        proj["rel_range_energy"] = max(p["rel_range_energy"] for p in projs)
    out["projection"] = proj
    return out
