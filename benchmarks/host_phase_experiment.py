"""Experiment (not shipped): eager host cost per op by phase, on the Zeus named rows.

The shipped launch-gap rule charges every launched op ``HOST_OP_S`` of host time whatever its phase. A for-loop
optimizer op (in place, no autograd, no module call) costs the host far less than a forward op: on the V100 rows,
where Zeus ran ShuffleNetV2 with both Adadelta and Adam, Adadelta's extra kernels cost ~5-7 us each. This script
scales the optimizer phase's launches by ``--optimizer-scale`` (a monkeypatch of energy.system.launch_gap_s; nothing
in the package changes) and reruns benchmarks/prior_vs_public.py's leave-one-GPU-out fits of the host cost, the GDDR
idle fraction and the loader rate on the named rows (host grid 4-60 us), then summarises time / energy / power MAPE
per GPU and workload. docs/ENERGY_MODEL.md ("Launch-bound gaps") has the result and why it is not shipped.

    python benchmarks/host_phase_experiment.py --optimizer-scale 0.3   # -> results/host_phase_experiment.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "results" / "host_phase_experiment.json"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optimizer-scale", type=float, default=0.3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    import prior_vs_public as p
    from wattlint.energy import system

    scale = args.optimizer_scale
    orig = system.launch_gap_s

    def scaled(micro, optimizer, *a, **k):
        return orig(micro, system.LaunchStream.of(optimizer.kernel_s, optimizer.launches * scale), *a, **k)

    system.launch_gap_s = scaled
    p.HOST_GRID_US = tuple(range(4, 61))
    rows = json.loads(p.SPLIT.read_text())["zeus"]["named"]["rows"]
    measured = p._zeus_measured()
    t0 = time.time()
    _, fit = p.host_fit(rows, False, measured)
    named0, ifit = p.idle_fit(rows, False, measured, fit)
    named, lfit = p.loader_fit(rows, False, measured, named0, fit, ifit)
    s = p.summarize(named, by=("gpu", "workload"))
    out = {"benchmark": "host_phase_experiment/1", "optimizer_scale": scale,
           "split": "Zeus named rows (benchmarks/splits/prior_rows.json), every constant fitted leave-one-GPU-out",
           "host_op_fit": fit["per_held_out_gpu"], "host_op_all_gpus_us": fit["all_gpus_us"],
           "idle_fit": ifit["per_held_out_gpu"], "loader_fit": lfit,
           "summary_mape_pct": {k: {m: v[m]["mape_pct"] for m in ("time", "energy", "power")} for k, v in s.items()},
           "shipped_for_comparison": "benchmarks/results/prior_vs_public.json summary.zeus_named (scale 1)",
           "runtime_s": round(time.time() - t0, 1)}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["summary_mape_pct"]["all"]), "->", args.out)


if __name__ == "__main__":
    main()
