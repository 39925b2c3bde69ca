"""The eager host time per op that makes wattlint's estimate of the probe's host-bound MLP step equal the measured
step (benchmarks/device/host_probe.py; results/<gpu>-host_probe.json).

The estimate is linear in --host-op-time once launching outlasts the GPU work (energy/system.launch_gap_s), so two
estimates give the slope (ops launched per step) and the fitted value solves it exactly; the fit is checked by a
third estimate at the fitted value. Usage: python benchmarks/device/host_fit.py results/h200-host_probe.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def step_s(gpu: str, host_op_s: float, batch: int, width: int) -> float:
    from wattlint.api import estimate, trace
    from host_probe import mlp

    g = trace(mlp, {"inputs": [f"x=float32[{batch},{width}]"], "batch_size": batch, "precision": "fp32",
                    "optimizer": "adamw"})
    est = estimate(g, gpu=gpu, lint=False, batch_size=batch, steps=1, precision="fp32", optimizer="adamw",
                   host_op_time=host_op_s)
    return est.per_step.time_s


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    probe = json.loads(Path(argv[0]).read_text())
    gpu = {"NVIDIA H200": "h200-sxm-141gb"}.get(probe.get("gpu"), probe.get("gpu"))
    cfg, meas = probe["mlp"], probe["mlp_step"]["median_step_s"]
    a, b = 10e-6, 40e-6
    ta, tb = step_s(gpu, a, cfg["batch"], cfg["width"]), step_s(gpu, b, cfg["batch"], cfg["width"])
    slope = (tb - ta) / (b - a)
    fit = a + (meas - ta) / slope
    check = step_s(gpu, fit, cfg["batch"], cfg["width"])
    doc = {"probe": Path(argv[0]).name, "gpu": gpu, "host": probe.get("cpu_model"), "torch": probe.get("torch"),
           "python": probe.get("python"), "measured_step_s": meas, "ops_per_step_in_estimate": slope,
           "profiled_cuda_kernels_per_step": probe["mlp_step"].get("cuda_kernels_per_step"),
           "fitted_host_op_s": fit, "estimate_at_fit_s": check,
           "estimate_at_default_s": step_s(gpu, 21e-6, cfg["batch"], cfg["width"]),
           "issue_cost_note": "bare dispatch of one small op with the GPU busy (no autograd): see <gpu>-issue_cost.json"}
    out = Path(argv[0]).with_name(f"{Path(argv[0]).stem.replace('host_probe', 'host_fit')}.json")
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
