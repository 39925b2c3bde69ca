"""Static prediction vs what the run measured (or projected from its stable phase). Errors are signed
``predicted / measured - 1`` (+ = the estimate was too high), as in ``wattlint validate compare``."""

from __future__ import annotations

from typing import Any


def _err(pred: float | None, meas: float | None) -> float | None:
    if pred is None or meas is None or not meas:
        return None
    return float(pred) / float(meas) - 1.0


def energy_basis(analysis: dict[str, Any]) -> str:
    kinds = {c.get("energy_source") for c in analysis.get("channels") or []}
    if not kinds:
        return "none"
    if kinds <= {"counter", "sampling"}:
        return "measured"
    if "fake" in kinds:
        return "fake"
    return "modelled"


def device_share(analysis: dict[str, Any], static: dict[str, Any]) -> tuple[float, str | None]:
    """(share, scope): the static estimate is the whole job's; a record measures its own devices (one rank's GPU
    under torchrun). Its energy is compared with the estimate's share of those GPUs (the estimate prices every GPU
    of the job alike): share = the record's devices / the job's GPUs, and the line that says so (None at 1)."""
    sp = static.get("plan") or {}
    job = int((static.get("hardware") or {}).get("gpus") or 0) or (
        int(sp.get("data_parallel") or 1) * int(sp.get("tensor_parallel") or 1)
        * int(sp.get("pipeline_parallel") or 1) * int(sp.get("context_parallel") or 1))
    job = max(1, job)
    mine = len(analysis.get("channels") or []) or job
    if mine >= job:
        return 1.0, None
    return mine / job, f"the estimate x {mine}/{job}: this record's GPUs of the job's"


def comparison(analysis: dict[str, Any], static: dict[str, Any] | None, *, complete: bool) -> dict[str, Any]:
    """Per-step and whole-plan comparison; empty when there is no static estimate or no stable steps."""
    if not static or static.get("error") or "per_step" not in analysis:
        return {}
    out: dict[str, Any] = {}
    ps, aps = static.get("per_step") or {}, analysis["per_step"]
    share, scope = device_share(analysis, static)

    def part(x):
        return None if x is None else float(x) * share

    out["step_time_s"] = {"static": ps.get("time_s"), "measured": aps.get("time_s"), "basis": "measured",
                          "error": _err(ps.get("time_s"), aps.get("time_s"))}
    basis = energy_basis(analysis)
    if aps.get("device_energy_j") is not None:
        out["step_device_energy_j"] = {"static": part(ps.get("gpu_energy_j")), "measured": aps["device_energy_j"],
                                       "basis": basis,
                                       "error": _err(part(ps.get("gpu_energy_j")), aps["device_energy_j"])}
        if scope:
            out["step_device_energy_j"]["scope"] = scope
    tot = static.get("total") or {}
    proj = analysis.get("projection") or {}
    steps_plan = proj.get("total_steps")
    done = complete and steps_plan is not None and analysis.get("steps") == steps_plan
    if proj.get("overrun_steps"):  # the plan's totals and the run's cover different numbers of steps
        out["note"] = (f"the run took {analysis.get('steps'):,} steps, {proj['overrun_steps']:,} more than the plan's "
                       f"{steps_plan:,}: totals are not compared, the per-step figures are")
        return out
    if tot.get("time_h") is not None and proj:
        meas_t = analysis["time_s"] if done else proj.get("time_s")
        out["total_time_s"] = {"static": tot["time_h"] * 3600.0, "measured": meas_t,
                               "basis": "measured" if done else "projected", "error": _err(tot["time_h"] * 3600.0,
                                                                                          meas_t)}
        s_kwh = tot.get("energy_kwh")
        if proj.get("host_energy_j") is None and tot.get("gpu_energy_kwh") is not None:
            # a CPU run: the CPU is the device; the estimate's host share (a GPU server's CPUs) is left out
            s_kwh = tot["gpu_energy_kwh"] * float((static.get("plan") or {}).get("pue") or 1.0)
        if proj.get("energy_kwh") is not None and s_kwh is not None:
            s_kwh = part(s_kwh)
            out["total_energy_kwh"] = {"static": s_kwh, "measured": proj["energy_kwh"],
                                       "basis": f"{'measured' if done else 'projected'} ({basis})",
                                       "error": _err(s_kwh, proj["energy_kwh"])}
            if scope:
                out["total_energy_kwh"]["scope"] = scope
    return out
