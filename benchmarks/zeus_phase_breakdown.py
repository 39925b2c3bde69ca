"""Zeus V100 ShuffleNetV2 (CIFAR-100) rows: the prior's per-phase time and power beside the measured step (analysis
only; nothing fitted, nothing shipped).

For each named V100 ShuffleNetV2 row at batch 64 / 256 / 1024 (both optimizers), the shipped prior's phases
(forward, backward, optimizer, idle launch gaps) with their average power, and what the measured average power
implies about how busy the GPU was: busy share = (measured W - idle W) / (forward+backward W - idle W), the
prior's own forward+backward power standing in for the busy power. Built with benchmarks/prior_vs_public.py's
Zeus reconstruction (same traces, same plan). Data: ../shared/data/zeus-nsdi23 (Apache-2.0).

Run: PYTHONPATH=src python benchmarks/zeus_phase_breakdown.py  (writes benchmarks/results/zeus_phase_breakdown.json)
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import prior_vs_public as P  # noqa: E402
from wattlint.hardware import resolve_gpu  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "zeus_phase_breakdown.json"
WORKLOAD = ("cifar100", "shufflenetv2")


def main() -> None:
    measured = P._zeus_measured()
    gpu, _ = resolve_gpu("v100-pcie-16gb")
    w = P.WORKLOADS[WORKLOAD]
    rows = []
    for opt_z in ("adadelta", "adam"):
        for b in (64, 256, 1024):
            key = ("v100", "/".join(WORKLOAD), b, opt_z, float(gpu.tdp_w))
            if key not in measured:
                continue
            opt = P.OPTIMIZER_MAP.get(opt_z, "adam")
            g = P._trace((WORKLOAD, b, opt), w["build"], w["input"](b), b, w["precision"], opt,
                         impl=P.ZEUS_OPTIMIZER_IMPL, grads_to_none=P.ZEUS_GRADS_TO_NONE)
            d = P._estimate(g, gpu, b, P.run_precision(w["precision"], gpu), opt)
            t_epoch, p_meas = measured[key]
            steps = math.ceil(w["samples"] / b)
            phases = {k: {"time_ms": round(v["time_s"] * 1e3, 2),
                          "avg_w": round(v["gpu_energy_j"] / v["time_s"], 1) if v["time_s"] else None}
                      for k, v in d["phases"].items()}
            fb = [d["phases"][k] for k in ("forward", "backward")]
            fb_w = sum(x["gpu_energy_j"] for x in fb) / sum(x["time_s"] for x in fb)
            busy = (p_meas - gpu.idle_w) / (fb_w - gpu.idle_w)
            rows.append({"optimizer": opt_z, "batch_size": b, "measured_step_ms": round(t_epoch / steps * 1e3, 2),
                         "measured_avg_w": round(p_meas, 1), "prior_step_ms": round(d["per_step"]["time_s"] * 1e3, 2),
                         "prior_avg_w": round(d["per_step"]["avg_gpu_power_w"], 1), "prior_phases": phases,
                         "implied_busy_share": round(busy, 3)})
            print(json.dumps(rows[-1]))
    OUT.write_text(json.dumps({"benchmark": "zeus_phase_breakdown", "gpu": gpu.key, "idle_w": gpu.idle_w,
                               "workload": "/".join(WORKLOAD), "method": __doc__, "rows": rows}, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
