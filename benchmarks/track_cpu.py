"""Real CPU training runs tracked end to end with ``wattlint.track`` (STEP projection), a run-level fit on some of
them, and the tracker's overhead. Writes benchmarks/results/track_cpu.json (+ the run records it used).

    nice python benchmarks/track_cpu.py            # ~6 min of CPU time (longer wall time on a shared machine)
    python benchmarks/track_cpu.py --quick         # plumbing check, seconds (results not written)
    python benchmarks/track_cpu.py --reuse         # re-analyse the committed records (no training)

Method
* Models and inputs: the CPU list of src/wattlint/data/validation-models.toml (wattlint.calibrate.zoo), one thread
  (torch.set_num_threads(1), the thread count the CPU method-check device was measured with), synthetic data from
  a pool of 4 pre-generated batches rotated through (iterated with ``t.wrap``), AdamW (SGD for the MLP), the
  loss the tracer assumes. Every run goes to its end; the measured total is the sum of all step times.
* Static estimate beside each run: the CPU method-check device ``calibration/runs/cpu-amd-epyc`` (measured spec +
  its fitted op-level model), exactly as benchmarks/cpu_validation.py. CPU energy is MODELLED (no RAPL): energy
  numbers are reported but carry no evidence.
* Projection check: the projection of total time made when the stable phase is first declared (default
  settings: >= 30 stable steps, >= 20 s of them, 90 % CI of the mean step time within +-3 %), against the measured
  total; also the projection from truncated prefixes (10 / 25 / 50 % of the steps) re-analysed offline.
* Run-level fit: the split is fixed here before any fit (FIT / HELD_OUT below); ``wattlint fit`` on the FIT
  records only; before/after error of the static per-step time on each HELD_OUT model, both from the factor and
  through ``RunCorrectedPredictor`` in a fresh ``wattlint.estimate``.
* Overhead: a 50 ms step (busy loop) tracked with the CPU channel and 2 s windows; time spent inside ``t.step()``
  per step (the tracker measures it), and an A/B wall-clock comparison interleaved in 6 blocks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CPU_DEVICE = ROOT / "calibration" / "runs" / "cpu-amd-epyc"
RUNS_DIR = ROOT / "benchmarks" / "results" / "track_cpu_runs"
OUT = ROOT / "benchmarks" / "results" / "track_cpu.json"

# ---- the split, fixed before fitting -----------------------------------------------------------------------------
FIT = ("cnn-small-b32", "gpt-tiny-b8-s128", "mlp-mnist-b128")
HELD_OUT = ("vit-tiny-b32", "mixer-tiny-b32")
# plan per model: how the work is given (same options as `wattlint estimate`); ~60-100 s of CPU time each
PLANS = {
    "cnn-small-b32": {"epochs": 4, "dataset": 3200},  # 100 steps per epoch: epoch boundaries exercised
    "gpt-tiny-b8-s128": {"tokens": 250 * 8 * 128, "seq_len": 128},  # 250 steps
    "mlp-mnist-b128": {"steps": 3000},
    "vit-tiny-b32": {"steps": 300},
    "mixer-tiny-b32": {"steps": 800},
}


def rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def configs() -> dict[str, dict]:
    data = tomllib.loads((ROOT / "src" / "wattlint" / "data" / "validation-models.toml").read_text())
    return {c["name"]: c for c in data["cpu"]}


def train(cfg: dict, plan: dict, *, quick: bool, out_dir: Path) -> Path:
    import torch

    import wattlint
    from wattlint.calibrate.validate import _build, _loss, _make_inputs, _optimizer

    torch.manual_seed(0)
    model = _build(cfg, torch.device("cpu"))
    pool = [_make_inputs(cfg, torch.device("cpu")) for _ in range(4)]
    opt = _optimizer(model, cfg.get("optimizer", "adamw"))
    if quick:
        plan = {"steps": 40}
    batch = int(pool[0][0].shape[0])
    kw = dict(plan)
    kw.update(batch_size=batch, precision=cfg["precision"], optimizer=opt, out=out_dir, name=cfg["name"],
              cpu_calibration=str(CPU_DEVICE), display="line", every=200)
    if "epochs" in plan:
        steps_per_epoch = math.ceil(plan["dataset"] / batch)
        epochs = int(plan["epochs"])
    else:
        steps_per_epoch = None
        epochs = 1
    if quick:
        kw["settings"] = wattlint.tracking.Settings(min_steps=5, min_stable_s=0.5, max_rel_ci=0.5)
    kw["clock"] = "process"
    wall = []
    with wattlint.track(model, example=tuple(pool[0]), **kw) as t:
        total = t.plan.steps
        done = 0
        last = time.perf_counter()
        for _ep in range(epochs):
            n = steps_per_epoch or total
            loader = (pool[i % len(pool)] for i in range(n))
            for inputs in t.wrap(loader):
                opt.zero_grad(set_to_none=True)
                loss = _loss(model(*inputs))
                loss.backward()
                opt.step()
                t.step()
                now = time.perf_counter()
                wall.append(now - last)
                last = now
                done += 1
                if done >= total:
                    break
    # the same steps on the wall clock (shared machine: other jobs steal time), kept beside the record
    Path(str(t.path)[: -len(".jsonl")] + ".wall.json").write_text(json.dumps(
        {"note": "wall-clock seconds of each step of the run record of the same name (perf_counter between "
                 "t.step() returns)", "step_times_s": wall}) + "\n")
    return t.path


def wall_projection(path: Path, rec) -> dict:
    """The STEP projection on the wall-clock step times: first prefix declared stable, its projected total."""
    from wattlint.tracking.project import RunData, Settings, analyze

    wall = json.loads(Path(str(path)[: -len(".jsonl")] + ".wall.json").read_text())["step_times_s"]
    d = rec.run_data()
    settings = Settings.from_dict(rec.header.get("settings"))
    measured = sum(wall)
    stride = max(1, len(wall) // 300)
    for k in range(stride, len(wall) + 1, stride):
        a = analyze(RunData(wall[:k], [b for b in d.boundaries if b < k], None, [], [], d.plan), settings)
        if a.get("stable") and a.get("projection"):
            p = a["projection"]["time_s"]
            return {"measured_total_s": measured, "stable_at_step": k, "elapsed_s": a["time_s"],
                    "projected_total_s": p, "range": a["projection"]["time_s_range"], "error": p / measured - 1,
                    "stable_step_s": a["step_time_s"]["mean"], "drift": a["step_time_s"]["drift"]}
    return {"measured_total_s": measured, "stable_at_step": None, "error": None}


def prefix_projection(rec, frac: float) -> dict | None:
    """Re-analyse the first ``frac`` of the steps (whole windows) as if the run had been there."""
    from wattlint.tracking.project import RunData, Settings, analyze

    d = rec.run_data()
    n = len(d.step_times)
    cut = [w for w in d.windows if w.end <= frac * n]
    if not cut:
        return None
    k = cut[-1].end
    part = RunData(step_times=d.step_times[:k], boundaries=[b for b in d.boundaries if b < k],
                   data_wait=d.data_wait[:k] if d.data_wait is not None else None, windows=cut, channels=d.channels,
                   plan=d.plan, host_w=d.host_w, elapsed_s=cut[-1].t1)
    a = analyze(part, Settings.from_dict(rec.header.get("settings")))
    p = a.get("projection")
    return {"steps": k, "stable": a.get("stable"), "projected_time_s": p["time_s"] if p else None,
            "range": p["time_s_range"] if p else None}


def run_result(path: Path) -> dict:
    from wattlint.tracking.record import read_record

    rec = read_record(path)
    s = rec.summary
    a = s["analysis"]
    measured = a["time_s"]
    at = s.get("at_stable") or {}
    proj = (at.get("projection") or {}).get("time_s")
    st = rec.header["static"]
    out = {
        "record": rel(path), "status": s["status"], "steps": s["steps"],
        "plan": rec.header["plan"]["request"], "measured_total_s": measured,
        "warmup_steps": a.get("warmup_steps"), "stable_step_s": a["step_time_s"]["mean"],
        "stable_rel_ci90": a["step_time_s"]["rel_ci90"], "stable_drift": a["step_time_s"]["drift"],
        "epoch_boundary_extra_s": a.get("epoch_boundary_extra_s"),
        "data_wait_share": (a.get("input") or {}).get("data_wait_share"),
        "at_stable": {"step": at.get("step"), "elapsed_s": at.get("time_s"), "projected_total_s": proj,
                      "range": (at.get("projection") or {}).get("time_s_range"),
                      "error": (proj / measured - 1) if proj else None},
        "prefix_projections": {f"{int(f * 100)}%": prefix_projection(rec, f) for f in (0.1, 0.25, 0.5)},
        "clock": rec.header["settings"].get("clock"),
        "static_step_s": st["per_step"]["time_s"], "static_energy_model": st["energy_model"],
        "static_step_error": st["per_step"]["time_s"] / a["step_time_s"]["mean"] - 1,
        "modelled_cpu_power_w": a["per_step"]["device_power_w"],
        "tracker_overhead_per_step_s": s["tracker_overhead_per_step_s"],
        "tracker_overhead_share": s["tracker_overhead_per_step_s"] / a["step_time_s"]["mean"],
    }
    out["wall_clock"] = wall_projection(path, rec)
    out["cpu_share_of_wall"] = measured / out["wall_clock"]["measured_total_s"]
    for v in out["prefix_projections"].values():
        if v and v["projected_time_s"]:
            v["error"] = v["projected_time_s"] / measured - 1
    return out


def fit_and_hold_out(paths: dict[str, Path], tmp: Path) -> dict:
    import wattlint
    from wattlint.calibrate.validate import batch_of
    from wattlint.tracking import static as _s
    from wattlint.tracking.fit import RunCorrectedPredictor, fit_records
    from wattlint.tracking.record import read_record
    from wattlint.report.json_out import to_dict

    corr, cpath = fit_records([str(paths[m]) for m in FIT], out=str(tmp / "run_correction.json"))
    spec, base, _ = _s.cpu_device(str(CPU_DEVICE))
    cfgs = configs()
    rows = []
    for m in HELD_OUT:
        rec = read_record(paths[m])
        a = rec.summary["analysis"]
        meas = a["step_time_s"]["mean"]
        pred = rec.header["static"]["per_step"]["time_s"]
        c = cfgs[m]
        est = wattlint.estimate(c["source"], gpu=spec, predictor=RunCorrectedPredictor(base, corr),
                                inputs=c["inputs"], batch_size=batch_of(c), steps=1, precision=c["precision"],
                                optimizer=c.get("optimizer", "adamw"))
        via = to_dict(est)["per_step"]["time_s"]
        rows.append({"model": m, "measured_step_s": meas, "static_step_s": pred, "error_before": pred / meas - 1,
                     "corrected_step_s": pred * corr.time_factor, "error_after": pred * corr.time_factor / meas - 1,
                     "via_predictor_step_s": via, "via_predictor_error": via / meas - 1,
                     "via_predictor_calibration": to_dict(est)["hardware"]["calibration"]})
    doc = corr.card
    return {"fit_records": [rel(paths[m]) for m in FIT], "time_factor": corr.time_factor,
            "energy_factor": corr.energy_factor, "quantiles": corr.quantiles, "source": corr.source,
            "validation": {k: {kk: {x: vv[x] for x in ("n", "mape_before", "mape_after", "worst_before",
                                                         "worst_after")} for kk, vv in v.items() if vv}
                           for k, v in doc["validation"].items()},
            "held_out": rows,
            "held_out_mape_before": sum(abs(r["error_before"]) for r in rows) / len(rows),
            "held_out_mape_after": sum(abs(r["error_after"]) for r in rows) / len(rows)}


def overhead(tmp: Path, quick: bool) -> dict:
    import wattlint

    step_s = 0.05
    n = 40 if quick else 600

    def busy(d):
        t_end = time.perf_counter() + d
        while time.perf_counter() < t_end:
            pass

    # A/B interleaved in blocks (the machine's load drifts): bare loop, then the same loop with t.step()
    blocks = 2 if quick else 6
    per = n // blocks
    bare_s = tracked_s = 0.0
    in_tracker = 0.0
    for b in range(blocks):
        t0 = time.perf_counter()
        for _ in range(per):
            busy(step_s)
        bare_s += time.perf_counter() - t0
        t = wattlint.track(device="cpu", steps=per, out=tmp, name=f"overhead-{b}", display="quiet", window_s=2.0,
                           static=False).start()
        t0 = time.perf_counter()
        for _ in range(per):
            busy(step_s)
            t.step()
        tracked_s += time.perf_counter() - t0
        in_tracker += t.close()["tracker_overhead_s"]
    steps = per * blocks
    bare, tracked = bare_s / steps, tracked_s / steps
    s = {"tracker_overhead_per_step_s": in_tracker / steps}
    return {"step_s": step_s, "steps": steps, "blocks": blocks, "window_s": 2.0,
            "in_tracker_per_step_s": s["tracker_overhead_per_step_s"],
            "in_tracker_share": s["tracker_overhead_per_step_s"] / step_s,
            "ab_wall_per_step_s": tracked - bare, "ab_share": (tracked - bare) / step_s,
            "note": "in_tracker = time inside t.step() incl. window close (analysis + one JSON line per window, "
                    "fsync'd by the writer's background thread), amortised per step; A/B = wall time per step of "
                    "the same busy loop with and without t.step() (tracker start and close excluded; on a shared "
                    "machine this also carries scheduling noise)"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a few steps per model: plumbing only, nothing written")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--reuse", action="store_true", help="re-analyse the committed run records (no training)")
    args = ap.parse_args()
    try:
        os.nice(10)
    except OSError:
        pass
    import tempfile

    import torch

    torch.set_num_threads(1)
    cfgs = configs()
    tmp = Path(tempfile.mkdtemp(prefix="wattlint-track-"))
    out_dir = tmp / "runs" if args.quick else RUNS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    runs = {}
    for name in FIT + HELD_OUT:
        if args.only and name not in args.only:
            continue
        t0 = time.time()
        print(f"== {name} {PLANS[name]}", flush=True)
        old = sorted(out_dir.glob(f"*-{name}.jsonl"))
        if args.reuse and old:
            paths[name] = old[-1]  # the committed record of this model: analysis and fit only
        else:
            paths[name] = train(cfgs[name], PLANS[name], quick=args.quick, out_dir=out_dir)
        runs[name] = run_result(paths[name])
        r = runs[name]
        print(f"   measured {r['measured_total_s']:.1f} s; projected at stable {r['at_stable']['projected_total_s']} "
              f"(error {r['at_stable']['error']}); static step error {r['static_step_error']:+.1%}; "
              f"{time.time() - t0:.0f} s", flush=True)
    result = {
        "benchmark": "track_cpu", "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "threads": 1,
                    "loadavg_end": os.getloadavg(), "note": "shared 2-core dev machine, nice'd"},
        "method": __doc__.split("Method", 1)[1].strip(),
        "split": {"fit": list(FIT), "held_out": list(HELD_OUT)},
        "target": "projected total time at the first stable point within 10 % of the measured total",
        "runs": runs,
    }
    if all(m in paths for m in FIT + HELD_OUT):
        result["fit"] = fit_and_hold_out(paths, tmp if args.quick else RUNS_DIR)
    result["overhead"] = overhead(tmp / "overhead", args.quick)
    errs = [abs(r["at_stable"]["error"]) for r in runs.values() if r["at_stable"]["error"] is not None]
    werrs = [abs(r["wall_clock"]["error"]) for r in runs.values() if r["wall_clock"].get("error") is not None]
    result["summary"] = {"runs": len(runs),
                         "process_clock_runs_stable": len(errs),
                         "process_clock_at_stable_abs_error_max": max(errs) if errs else None,
                         "process_clock_within_10pct": (len(errs) == len(runs) and all(e <= 0.10 for e in errs))
                         if errs else None,
                         "wall_clock_runs_stable": len(werrs),
                         "wall_clock_at_stable_abs_error_max": max(werrs) if werrs else None,
                         "wall_clock_within_10pct_of_stable_runs": all(e <= 0.10 for e in werrs) if werrs else None}
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    if args.quick:
        print(text)
    else:
        OUT.write_text(text)
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
