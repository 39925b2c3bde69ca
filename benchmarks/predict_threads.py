"""LightGBM threads per prediction call: one (``wattlint.energy.predictor.PREDICT_THREADS``) against LightGBM's
default (all cores, OpenMP).

    python benchmarks/predict_threads.py        # writes benchmarks/results/predict_threads.json

Each estimate prices its distinct ops in a few LightGBM calls of tens to hundreds of rows: starting and spinning
OpenMP threads for so few rows can cost more than walking the trees. Method: the README's headline command
(``examples/resnet50.onnx --gpu rtx3090 --epochs 50``, public-fit priced) and its ``--compare`` of 8 GPUs, each run
in a fresh process with ``PREDICT_THREADS`` patched to 1 or to 0 (LightGBM's default: all cores), alternating,
``REPEAT`` times each; the CPU seconds (user + sys) of the child process and its wall seconds are recorded and
medians reported with their ratio, measured in the same run (the machine is shared: the load average is recorded).
The JSON outputs of the two settings are compared byte for byte (the prediction must not change).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPEAT = 5
COMMANDS = {
    "resnet50_rtx3090": ["examples/resnet50.onnx", "--gpu", "rtx3090", "--epochs", "50"],
    "resnet50_compare8": ["examples/resnet50.onnx", "--gpu", "a100", "--compare",
                          "h100,l40s,rtx4090,a10,l4,t4,v100", "--epochs", "90"],
}
RUNNER = """
import sys
import wattlint.energy.predictor as p, wattlint.energy.public_fit as f, wattlint.energy.model as m
p.PREDICT_THREADS = f.PREDICT_THREADS = m.PREDICT_THREADS = int(sys.argv[1])
from wattlint.cli import main
sys.exit(main(sys.argv[2:]))
"""


def run(threads: int, args: list[str]) -> tuple[float, float, bytes]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", RUNNER, str(threads), *args, "--format", "json"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, out


def main() -> int:
    results = {}
    for name, args in COMMANDS.items():
        runs: dict[int, list[tuple[float, float]]] = {1: [], 0: []}
        outputs: dict[int, bytes] = {}
        for _ in range(REPEAT):
            for threads in (1, 0):
                cpu, wall, out = run(threads, args)
                runs[threads].append((cpu, wall))
                outputs[threads] = out
        med = {t: (statistics.median(c for c, _ in r), statistics.median(w for _, w in r)) for t, r in runs.items()}
        results[name] = {
            "command": "wattlint " + " ".join(args) + " --format json",
            "cpu_s_median": {"one_thread": round(med[1][0], 3), "lightgbm_default": round(med[0][0], 3)},
            "wall_s_median": {"one_thread": round(med[1][1], 3), "lightgbm_default": round(med[0][1], 3)},
            "cpu_ratio_one_over_default": round(med[1][0] / med[0][0], 3),
            "wall_ratio_one_over_default": round(med[1][1] / med[0][1], 3),
            "same_json_output": outputs[1] == outputs[0],
            "runs": {("one_thread" if t else "lightgbm_default"): [[round(c, 3), round(w, 3)] for c, w in r]
                     for t, r in runs.items()},
        }
        print(name, results[name]["cpu_s_median"], results[name]["cpu_ratio_one_over_default"],
              "same output:", results[name]["same_json_output"])
    doc = {"benchmark": "predict_threads", "method": __doc__.strip(), "repeat": REPEAT,
           "cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
           "results": results}
    out = ROOT / "benchmarks" / "results" / "predict_threads.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print("wrote", out)
    return 0 if all(r["same_json_output"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
