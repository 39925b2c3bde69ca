"""Render the CPU proof of the calibration method (benchmarks/cpu_validation.md) from the committed files.

    python benchmarks/cpu_validation.py calibration/runs/cpu-amd-epyc

Reads the run provenance, the model card and the latest <stamp>-validation.json of that folder; writes
benchmarks/cpu_validation.md and benchmarks/results/cpu_validation.json. Re-run the whole pipeline with:

    wattlint calibrate --device cpu --suite quick
    wattlint fit calibration/runs/cpu-<name>/<run>.csv
    wattlint validate predict --spec-from calibration/runs/cpu-<name>/<run>.json --list cpu \
        --model calibration/runs/cpu-<name>/model --out calibration/runs/cpu-<name>/   # commit before measuring
    wattlint validate measure --predictions <predictions.json> --device cpu --out calibration/runs/cpu-<name>/
    wattlint validate compare --measurements <measurements.json> --out calibration/runs/cpu-<name>/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(folder: str) -> int:
    d = Path(folder).resolve()
    val_paths = sorted(d.glob("*-validation.json"))
    val_path = val_paths[0]  # the first measurement against the committed predictions
    val = json.loads(val_path.read_text())
    run_path = sorted(p for p in d.glob("*.json") if json.loads(p.read_text()).get("schema") ==
                      "wattlint.calibration-run/1")[-1]
    run = json.loads(run_path.read_text())
    card = json.loads((d / "model" / "card.json").read_text())
    spec = run["spec"]["values"]
    s = val["summary"]
    out = {"validation": str(val_path.relative_to(ROOT)), "run": str(run_path.relative_to(ROOT)),
           "summary": {k: {"time_mape": v["time"]["mape"], "time_median_ape": v["time"]["median_ape"],
                           "time_worst_ape": v["time"]["worst_ape"], "within_15pct": v["time"]["within_15pct"]}
                       for k, v in s.items()},
           "models": [{"name": m["name"], "measured_time_s": m["measured"]["time_s"],
                       **{f"{k}_time_s": e["time_s"] for k, e in m["predicted"].items()},
                       **{f"{k}_time_err": e["time_err"] for k, e in m["predicted"].items()}} for m in val["models"]],
           "op_cv": card["cv"]}
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "cpu_validation.json").write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    lines = [
        "# CPU proof of the calibration method",
        "",
        "The GPU pipeline (calibrate -> fit -> validate predict / measure / compare) run end to end on the dev machine's",
        "CPU, which CI always has. **Time only**: CPU energy is modelled (a stated power model), so energy and power",
        "columns carry no evidence; a CPU-fitted model is never shipped or presented as a GPU calibration.",
        "",
        f"* device: {spec['name']}; fp32 peak {spec['peak_tflops']['fp32'] * 1000:.1f} GFLOP/s and copy bandwidth "
        f"{spec['memory_bw_gbs']:.1f} GB/s measured by wattlint (one thread);",
        f"* calibration: `{run_path.name}`, suite `{run['suite']['name']}` ({run['samples_done']} op samples, "
        f"{run['started_utc']} - {run['finished_utc']}), fit `model/` (LightGBM text + card);",
        f"* validation: `{val_path.name}`: {len(val['models'])} held-out whole models (CNN, ViT, BERT-like, GPT-like,",
        "  LSTM LM, MLP, MLP-Mixer, ConvNeXt), none in the suite, predictions committed before measuring;",
        "* timings are process CPU time of one thread, median of synchronised chunks after warm-up. The machine is",
        "  shared (2 cores, load ~4 from other jobs while measuring): process time removes most of the stolen time,",
        "  not cache and memory-bandwidth interference. Expect +-10 % run-to-run on single models.",
        "",
        "| model | measured ms/step | calibrated | prior (uncalibrated) | naive FLOPs/peak |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for m in val["models"]:
        p = m["predicted"]

        def cell(k, p=p):
            e = p.get(k)
            return f"{e['time_s'] * 1e3:.1f} ({e['time_err'] * 100:+.0f} %)" if e else "-"
        lines.append(f"| {m['name']} | {m['measured']['time_s'] * 1e3:.1f} | {cell('calibrated')} | {cell('prior')} | "
                     f"{cell('naive')} |")
    lines += ["", "| step-time error | MAPE | median | worst | within 15 % |", "| --- | ---: | ---: | ---: | ---: |"]
    for k in ("calibrated", "prior", "naive"):
        if k in s:
            t = s[k]["time"]
            lines.append(f"| {k} | {t['mape'] * 100:.1f} % | {t['median_ape'] * 100:.1f} % | {t['worst_ape'] * 100:.1f} % | "
                         f"{t['within_15pct'] * 100:.0f} % |")
    if len(val_paths) > 1:
        lines += ["", "Repeat measurements (same committed predictions, a later window on the same shared machine):", ""]
        for vp in val_paths:
            sv = json.loads(vp.read_text())["summary"]
            lines.append(f"* `{vp.name}`: calibrated {sv['calibrated']['time']['mape'] * 100:.1f} %, prior "
                         f"{sv['prior']['time']['mape'] * 100:.1f} %, naive {sv['naive']['time']['mape'] * 100:.1f} % "
                         "step-time MAPE")
        out["repeats"] = {vp.name: json.loads(vp.read_text())["summary"]["calibrated"]["time"]["mape"]
                          for vp in val_paths}
        (ROOT / "benchmarks" / "results" / "cpu_validation.json").write_text(
            json.dumps(out, indent=2, sort_keys=True) + "\n")
    later = sorted(d.glob("*-validation-*.json"))  # later code's predictions against the same measurements
    if later:
        lines += ["", "Later code, NOT blind (new predictions compared with the same committed measurements, "
                  "`wattlint validate compare --predictions <committed> --predictions <new>`):", ""]
        out["later_code"] = {}
        for vp in later:
            sv = json.loads(vp.read_text())["summary"]
            for k, v in sv.items():
                if k.startswith("calibrated@"):
                    lines.append(f"* `{vp.name}`: calibrated {v['time']['mape'] * 100:.1f} % step-time MAPE "
                                 f"({k.split('@', 1)[1]})")
                    out["later_code"][f"{vp.name} {k}"] = v["time"]["mape"]
        (ROOT / "benchmarks" / "results" / "cpu_validation.json").write_text(
            json.dumps(out, indent=2, sort_keys=True) + "\n")
    old = sorted((d / "attempt1-warm-cache").glob("*-validation.json")) if (d / "attempt1-warm-cache").is_dir() else []
    if old:
        lines += ["", "History: `attempt1-warm-cache/` (benchmarks re-used the same inputs every call, so ops ran from a",
                  "warm cache; fixed by rotating input copies, see docs/CALIBRATION.md):", ""]
        for vp in old:
            sv = json.loads(vp.read_text())["summary"]
            lines.append(f"* `{vp.name}`: calibrated {sv['calibrated']['time']['mape'] * 100:.1f} %, prior "
                         f"{sv['prior']['time']['mape'] * 100:.1f} %, naive {sv['naive']['time']['mape'] * 100:.1f} %")
    cv = card["cv"]
    lines += [
        "",
        "Op-level cross-validation of the fit (card.json; whole families / whole shapes held out): time MAPE "
        f"{cv['leave_family_out']['time_mape'] * 100:.0f} % / {cv['leave_shape_out']['time_mape'] * 100:.0f} % "
        f"(median {cv['leave_family_out']['time_median_ape'] * 100:.0f} % / "
        f"{cv['leave_shape_out']['time_median_ape'] * 100:.0f} %), prior {cv['leave_shape_out']['prior_time_mape'] * 100:.0f} %.",
        "Single CPU ops under 50 us are dominated by dispatcher overhead and scheduling noise, which inflates",
        "op-level means; what matters is the model-level error above.",
        "",
        "Largest errors: the LSTM LM (the torch frontend records an LSTM as its per-time-step cell ops, while the",
        "benchmark and the real model run one fused LSTM kernel, so the per-op correction cannot tell them apart)",
        "and the small CNN / BERT (a torch.profiler step of the CNN shows oneDNN layout reorders, ~170 aten::copy_",
        "calls = ~10 % of the step, that no cost graph contains, and conv/BatchNorm slower in the network than in",
        "isolation). The naive baseline is unusually good on",
        "this CPU because its 'peak' is the measured GEMM rate of this very core; on GPUs the spec-sheet peak is not.",
        "",
    ]
    (ROOT / "benchmarks" / "cpu_validation.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "calibration" / "runs" / "cpu-amd-epyc")))
