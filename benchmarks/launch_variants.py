"""Launch-gap variants of the prior on the Zeus named rows (issue 13 / 14 analysis; nothing here is shipped).

    PYTHONPATH=src python benchmarks/launch_variants.py              # runs the variants (~5 min each, 2 cores)
    PYTHONPATH=src python benchmarks/launch_variants.py --summarize A.json B.json ...   # summarize finished runs

Each variant runs ``benchmarks/prior_vs_public.py --sections zeus --no-sweep`` (the committed protocol: the host
cost per launch refitted leave-one-GPU-out, the idle and loader fits on top) with ``wattlint.energy.system`` patched:

* ``opt5``: the launches of a single-tensor (for-loop) optimizer step and its zero_grad fills cost the host 5 us
  each instead of the fitted per-launch cost (published PyTorch per-op overhead of an in-place op under no_grad:
  ~4-8 us, pytorch/pytorch#82793, #41383; the Zeus V100 Adam / Adadelta pairs imply 2.9-5.4 us per extra launch);
* ``queue``: the ordered launch queue (system.LAUNCH_QUEUE = True) instead of the whole-phase max;
* ``queue_opt5``: both.

Writes benchmarks/results/launch_variants.json: per variant, the named rows' time / energy / power MAPE beside the
shipped prior's (results/prior_vs_public.json), the per-fold host fits, and the MAPE per GPU x workload.
Data: ../shared/data/zeus-nsdi23 (Apache-2.0).
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "launch_variants.json"
SHIPPED = ROOT / "benchmarks" / "results" / "prior_vs_public.json"
VARIANTS = {"opt5": {"OPT_US": "5"}, "queue": {"QUEUE": "1"}, "queue_opt5": {"QUEUE": "1", "OPT_US": "5"}}


def _patched_run(out: str) -> None:
    """In a child process: patch the launch model as the environment says, then run the zeus section."""
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]
    import wattlint.energy.system as S

    opt_us = float(os.environ.get("OPT_US", "0"))
    if os.environ.get("QUEUE"):
        S.LAUNCH_QUEUE = True
    orig = S.launch_gap_s

    def patched(micro, optimizer, micro_scale, grad_accum, host_op_s=S.HOST_OP_S, opt_multi_tensor=True,
                exposed=S.HOST_EXPOSED, queue=None):
        if opt_us and not opt_multi_tensor and host_op_s > opt_us * 1e-6:
            optimizer = S.LaunchStream(optimizer.kernel_s, optimizer.launches * (opt_us * 1e-6 / host_op_s))
        return orig(micro, optimizer, micro_scale, grad_accum, host_op_s, opt_multi_tensor, exposed, queue)

    S.launch_gap_s = patched
    sys.argv = ["prior_vs_public.py", "--sections", "zeus", "--no-sweep", "--out", out]
    runpy.run_path(str(ROOT / "benchmarks" / "prior_vs_public.py"), run_name="__main__")


def _mape(rows, key):
    return round(100 * statistics.fmean(abs(r[key]) for r in rows), 1)


def summarize(name: str, path: Path) -> dict:
    d = json.loads(path.read_text())
    rows = d["rows"]["zeus_named"]
    by = defaultdict(list)
    for r in rows:
        by[f"{r['gpu']} | {r['workload']}"].append(r)
    return {"file": path.name, "n": len(rows),
            "mape_pct": {k: _mape(rows, f"{k}_err") for k in ("time", "energy", "power")},
            "host_op_fit": {"all_gpus_us": d["host_op_fit"]["all_gpus_us"],
                            "per_held_out_gpu_us": {g: f["host_op_us"]
                                                    for g, f in d["host_op_fit"]["per_held_out_gpu"].items()}},
            "by_gpu_workload": {k: {m: _mape(v, f"{m}_err") for m in ("time", "energy", "power")}
                                for k, v in sorted(by.items())}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--summarize", nargs="*", type=Path, help="variant result files named <variant>.json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _patched_run(a.child)
        return
    files = {p.stem: p for p in a.summarize} if a.summarize else {}
    if not files:
        tmp = Path(tempfile.mkdtemp())
        for name, env in VARIANTS.items():
            files[name] = tmp / f"{name}.json"
            subprocess.run([sys.executable, __file__, "--child", str(files[name])], env={**os.environ, **env},
                           check=True)
    out = {"method": __doc__, "shipped": summarize("shipped", SHIPPED),
           "variants": {n: summarize(n, p) for n, p in files.items()}}
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({n: v["mape_pct"] for n, v in [("shipped", out["shipped"]), *out["variants"].items()]}))


if __name__ == "__main__":
    main()
