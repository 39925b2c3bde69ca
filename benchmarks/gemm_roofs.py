"""Fit of the prior's GeForce GEMM roofs and GDDR6X bandwidth fraction from public microbenchmarks.

    python benchmarks/gemm_roofs.py        # writes benchmarks/results/gemm_roofs.json (~10 s)

Data: benchmarks/public/microbench/ (SOURCE.md): community torch.mm square-GEMM rates (best of n = 1024 ... 10240,
PyTorch 2.x) and PyTorch copy_ bandwidths. Hardware characterisation only: no training row of any accuracy
benchmark is used, so every end-to-end figure stays held out of this fit.

GEMM roofs (energy/prior.py ``CONSUMER_GEMM_ROOF``). For each board and dtype, ratio = median measured rate / the
prior's best rate over the same five square GEMMs (roof forced to 1). Per unit (tensor: fp16 and bf16, each board's
geometric mean of the two; simt: fp32), the roof is the geometric mean of the GeForce boards' ratios divided by that
of the other boards' ratios: what GeForce boards reach beyond what the ceilings set on data-centre / workstation boards
give. Held-out check: each GeForce board's ratio predicted with the roof fitted without it.

Bandwidth (``EFF_MEM_MAX["gddr6x"]``): mean copy bandwidth / spec over the PyTorch copy_ rows of GDDR6X boards; the
GDDR6 rows and the GDDR7 (RTX 5090, CUB kernel) row are reported beside it as checks.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from wattlint.energy import prior  # noqa: E402
from wattlint.hardware import resolve_gpu  # noqa: E402
from wattlint.types import OpKind, OpRecord, Phase  # noqa: E402

DATA = HERE / "public" / "microbench"
OUT = HERE / "results" / "gemm_roofs.json"
SIZES = (1024, 2048, 4096, 8192, 10240)  # the microbenchmark's (test.py) sizes
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def mm_record(n: int, dtype: str) -> OpRecord:
    es = 4 if dtype == "float32" else 2
    return OpRecord(op="aten.mm.default", kind=OpKind.MATMUL, module="", phase=Phase.FORWARD, dtype=dtype,
                    shapes=((n, n), (n, n)), flops=2 * n ** 3, bytes_read=2 * n * n * es, bytes_written=n * n * es,
                    dims=(("b", 1), ("k", n), ("m", n), ("n", n)))


def prior_best_tflops(gpu, key: str) -> float:
    """The prior's best rate (TFLOP/s) over the benchmark's square sizes, PyTorch 2.x defaults (fp32: no TF32)."""
    precision = "fp32" if key == "fp32" else key
    return max(2 * n ** 3 / prior.op_prior(mm_record(n, DTYPES[key]), gpu, precision).time_s / 1e12 for n in SIZES)


def _gmean(xs):
    xs = list(xs)
    return math.exp(statistics.fmean(math.log(x) for x in xs)) if xs else float("nan")


def gemm_ratios() -> dict:
    rows = list(csv.DictReader((DATA / "gemm_torch_mm.csv").open()))
    boards: dict[str, dict] = {}
    saved = dict(prior.CONSUMER_GEMM_ROOF)
    try:
        prior.CONSUMER_GEMM_ROOF.update(tensor=1.0, simt=1.0)
        for key in sorted({r["gpu"] for r in rows}):
            gpu, _ = resolve_gpu(key)
            b = {"consumer": prior.consumer(gpu), "rows": sum(r["gpu"] == key for r in rows)}
            for dt in DTYPES:
                vals = [float(r[f"{dt}_tflops"]) for r in rows if r["gpu"] == key and r[f"{dt}_tflops"]]
                if not vals or (dt != "fp32" and not gpu.tensor_cores):
                    continue
                meas = statistics.median(vals)
                pred = prior_best_tflops(gpu, dt)
                spec = gpu.peak_tflops.get(dt) or gpu.peak_tflops.get("fp16")
                b[dt] = {"measured_tflops": round(meas, 2), "prior_tflops": round(pred, 2),
                         "ratio": round(meas / pred, 4), "measured_over_spec": round(meas / spec, 4)}
            boards[key] = b
    finally:
        prior.CONSUMER_GEMM_ROOF.update(saved)
    return boards


def unit_ratio(b: dict, unit: str) -> float | None:
    if unit == "simt":
        return b["fp32"]["ratio"] if "fp32" in b else None
    rs = [b[d]["ratio"] for d in ("fp16", "bf16") if d in b]
    return _gmean(rs) if rs else None


def fit_roof(boards: dict, unit: str, leave_out: str | None = None) -> float:
    cons = [unit_ratio(b, unit) for k, b in boards.items() if b["consumer"] and k != leave_out]
    other = [unit_ratio(b, unit) for k, b in boards.items() if not b["consumer"] and k != leave_out]
    return _gmean(r for r in cons if r) / _gmean(r for r in other if r)


def roofs(boards: dict) -> dict:
    out = {}
    for unit in ("tensor", "simt"):
        fit = fit_roof(boards, unit)
        held = {}
        for k, b in boards.items():
            r = unit_ratio(b, unit)
            if not b["consumer"] or r is None:
                continue
            loo = fit_roof(boards, unit, leave_out=k)
            # the prior's rate with the roof fitted without this board / measured - 1
            held[k] = {"roof_without_it": round(loo, 3), "ratio_before": round(r, 3),
                       "held_out_error_pct": round(100 * (loo / r - 1), 1)}
        others = {k: round(unit_ratio(b, unit), 3) for k, b in boards.items()
                  if not b["consumer"] and unit_ratio(b, unit)}
        # the same scale for the other boards (no roof): the prior's rate / measured - 1
        others_err = {k: round(100 * (1 / r - 1), 1) for k, r in others.items()}
        out[unit] = {"fit": round(fit, 3), "shipped": prior.CONSUMER_GEMM_ROOF[unit],
                     "geforce_held_out": held, "other_boards_ratio": others, "other_boards_error_pct": others_err,
                     "other_boards_spread": [min(others.values()), max(others.values())]}
    return out


def bandwidth() -> dict:
    rows = list(csv.DictReader((DATA / "copy_bandwidth.csv").open()))
    per = [{"gpu": r["gpu"], "memory_type": r["memory_type"], "fraction": round(float(r["copy_gbs"]) /
            float(r["spec_gbs"]), 3), "method": r["method"]} for r in rows]
    g6x = [p["fraction"] for p in per if p["memory_type"] == "GDDR6X" and p["method"].startswith("PyTorch")]
    g6 = [p["fraction"] for p in per if p["memory_type"] == "GDDR6"]
    return {"rows": per, "gddr6x_fit": round(statistics.fmean(g6x), 3), "gddr6x_shipped": prior.EFF_MEM_MAX["gddr6x"],
            "gddr6_mean": round(statistics.fmean(g6), 3), "gddr_shipped": prior.EFF_MEM_MAX["gddr"],
            "gddr7_check": [p["fraction"] for p in per if p["memory_type"] == "GDDR7"]}


def main() -> int:
    t0 = time.time()
    boards = gemm_ratios()
    result = {
        "benchmark": "gemm_roofs",
        "method": __doc__.strip().splitlines()[0] + " Data and protocol: module docstring; sources: "
                  "benchmarks/public/microbench/SOURCE.md.",
        "boards": boards, "roofs": roofs(boards), "bandwidth": bandwidth(),
        "runtime_s": round(time.time() - t0, 1),
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    r = result["roofs"]
    for unit in ("tensor", "simt"):
        print(f"{unit}: fit {r[unit]['fit']} (shipped {r[unit]['shipped']}); GeForce held out: "
              + ", ".join(f"{k} {v['held_out_error_pct']:+.1f} %" for k, v in r[unit]["geforce_held_out"].items())
              + f"; other boards' ratios {r[unit]['other_boards_spread']}")
    bw = result["bandwidth"]
    print(f"GDDR6X copy fraction {bw['gddr6x_fit']} (shipped {bw['gddr6x_shipped']}); GDDR6 {bw['gddr6_mean']} "
          f"(shipped {bw['gddr_shipped']}); GDDR7 check {bw['gddr7_check']}")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
