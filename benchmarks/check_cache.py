"""`wattlint check` on unchanged models: the result cache must answer in <= 0.3 s (median, the command alone).

Method
------
* Copies examples/project (three models: ResNet-50 ONNX, GPT-2-small ONNX, a PyTorch MLP source importing a project
  module) and the two example ONNX files into a temporary directory; a fresh cache directory.
* Cold: one `wattlint check` with an empty cache (traces + estimates + all rules, incl. re-estimates for savings).
* Warm: N runs of the installed console script `wattlint check` as a subprocess (what pre-commit/CI execute; the
  interpreter start-up is included, pre-commit's own start-up is not), wall-clock via time.perf_counter around
  subprocess.run; median, min, p90 reported.
* Also: one warm run in-process with sys.modules inspected: torch / onnx / onnxruntime / numpy / lightgbm /
  wattlint.estimate must not be imported on a cached run.
* Invalidation: touching the PyTorch model's imported project module (content change) makes the next run a miss.

    python benchmarks/check_cache.py [--runs 21]     # writes benchmarks/results/check_cache.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "check_cache.json"


def wattlint_cmd() -> list[str]:
    exe = shutil.which("wattlint") or str(Path(sys.executable).parent / "wattlint")
    return [exe] if Path(exe).exists() else [sys.executable, "-m", "wattlint"]


def run(cmd, cwd, env) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - t, r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copytree(ROOT / "examples" / "project", tmp / "project",
                        ignore=shutil.ignore_patterns(".wattlint-cache", "__pycache__"))
        for f in ("resnet50.onnx", "gpt2-tiny.onnx"):
            shutil.copy(ROOT / "examples" / f, tmp / f)
        proj = tmp / "project"
        env = {**os.environ, "WATTLINT_CACHE_DIR": str(tmp / "cache")}
        cmd = wattlint_cmd() + ["check"]

        cold, r = run(cmd, proj, env)
        if r.returncode not in (0, 1):
            print(r.stdout, r.stderr, file=sys.stderr)
            return 2
        warm = []
        reprimed = 0  # misses caused by edits to the (editable) wattlint package during the benchmark
        while len(warm) < a.runs:
            dt, r = run(cmd, proj, env)
            if r.stdout.count("cached)") < 3:
                reprimed += 1
                if reprimed > 10:
                    raise SystemExit("cache keeps missing: " + r.stdout)
                continue
            warm.append(dt)

        probe = ("import sys, io, contextlib; from wattlint.cli import main; buf = io.StringIO();\n"
                 "with contextlib.redirect_stdout(buf): rc = main(['check'])\n"
                 "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'numpy', 'lightgbm', 'wattlint.estimate',"
                 " 'wattlint.frontends.torch', 'wattlint.hardware') if m in sys.modules))")
        heavy = json.loads(subprocess.run([sys.executable, "-c", probe], cwd=proj, env=env, capture_output=True,
                                          text=True).stdout.strip().replace("'", '"'))

        blocks = proj / "models" / "blocks.py"
        blocks.write_text(blocks.read_text() + "\n# edited\n")
        miss_dt, r = run(cmd + ["--format", "json"], proj, env)
        cached_flags = {m["name"]: m["cached"] for m in json.loads(r.stdout)["models"]}

    warm.sort()
    res = {
        "benchmark": "wattlint check on unchanged models (result cache)",
        "target_s": 0.3,
        "models": ["classifier (resnet50.onnx)", "lm (gpt2-tiny.onnx)", "mlp (models/tiny_mlp.py:build, torch)"],
        "runs": a.runs,
        "cold_s": round(cold, 3),
        "warm_median_s": round(statistics.median(warm), 4),
        "warm_min_s": round(warm[0], 4),
        "warm_p90_s": round(warm[int(0.9 * (len(warm) - 1))], 4),
        "heavy_modules_on_cached_run": heavy,
        "runs_discarded_as_misses": reprimed,
        "after_editing_imported_module": {"wall_s": round(miss_dt, 3), "cached": cached_flags},
        "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd)),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(res, indent=2))
    if not a.no_write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(res, indent=2) + "\n")
    return 0 if res["warm_median_s"] <= res["target_s"] and not heavy else 1


if __name__ == "__main__":
    sys.exit(main())
