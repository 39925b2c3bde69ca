"""Scaling of analyze / estimate / --compare with graph size (issue 12, Performance).

    python benchmarks/scaling.py                      # writes benchmarks/results/scaling.json
    python benchmarks/scaling.py --sizes 1000,3000 --src /tmp/old/src --out /tmp/before.json   # another checkout

Method (also written into the JSON):

* Graphs: generated ONNX chains of ``n`` nodes with ONE initializer per node (even nodes ``MatMul`` by an 8 x 8
  weight, odd nodes ``Add`` of an 8-wide bias), weights saved as external data in one file next to the model (so
  the external-data checks run for every initializer). Each initializer is a trainable parameter: the traced step
  has ~10.5 records per node (forward, backward, and the foreach AdamW optimizer records split per parameter).
* Commands: the CLI, one fresh process per run (``python -m wattlint ...``, output as JSON to /dev/null; the
  command path is the one users run, import and report rendering included)::

      analyze  MODEL --batch-size 32 --format json
      estimate MODEL --batch-size 32 --steps 1000 --gpu a100-sxm4-80gb --format json
      estimate MODEL --batch-size 32 --steps 1000 --gpu a100-sxm4-80gb --compare <10 GPUs> --format json

  lint runs as by default (its rules re-estimate variants: ~9 per GPU under --compare).
* Per run: wall seconds, CPU seconds of the process (user + sys, from wait4) and its peak RSS (ru_maxrss). The
  median of the repeats is reported (repeats per size in the JSON; fewer at the large sizes). The machine is
  shared, so wall time includes waiting for a core; CPU time is what the process itself needed.
* Linearity: time per node (median / n) at every size, and the ratio max / min of it over the sizes (flat = 1;
  the target is within 2x). A process has a fixed cost whatever the graph (interpreter, onnx / numpy / lightgbm
  imports, GPU database and energy-model cards, report set-up), measured as the same command on a 10-node graph
  (median of 5); it weighs on the smallest graphs, so the JSON also gives the marginal time per node,
  (t(n) - t(10)) / (n - 10), and its max / min ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPUS10 = ("a100-sxm4-80gb", "h100-sxm5-80gb", "h200-sxm-141gb", "l4-24gb", "t4-16gb", "a10-24gb", "l40s-48gb",
          "rtx4090-24gb", "v100-sxm2-32gb", "mi300x-192gb")
SIZES = (1000, 3000, 10000, 30000, 100000)
FIXED_N = 10  # the graph whose run time is the fixed cost of a process
WIDTH = 8


def chain_model(n: int, path: Path, *, width: int = WIDTH, external: bool = True) -> Path:
    """An ONNX chain of ``n`` nodes, one initializer per node (module doc); weights in ``w.bin`` next to it."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    prev = "x"
    for i in range(n):
        w = f"w{i}"
        if i % 2 == 0:
            inits.append(numpy_helper.from_array(np.zeros((width, width), np.float32), w))
            nodes.append(helper.make_node("MatMul", [prev, w], [f"h{i}"], name=f"layer{i}/MatMul"))
        else:
            inits.append(numpy_helper.from_array(np.zeros((width,), np.float32), w))
            nodes.append(helper.make_node("Add", [prev, w], [f"h{i}"], name=f"layer{i}/Add"))
        prev = f"h{i}"
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", width])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    if external:
        onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
                        size_threshold=0)
    else:
        onnx.save_model(m, str(path))
    return path


def commands(model: Path) -> dict[str, list[str]]:
    common = [str(model), "--batch-size", "32", "--format", "json"]
    est = ["estimate", *common, "--steps", "1000", "--gpu", GPUS10[0]]
    return {"analyze": ["analyze", *common], "estimate": est, "compare": [*est, "--compare", ",".join(GPUS10)]}


def run_once(args: list[str], src: Path) -> dict:
    """Wall s, CPU s (user + sys) and peak RSS (MiB) of one ``python -m wattlint ARGS`` process."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "wattlint", *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env, cwd=ROOT)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode not in (0, 1):  # 1: error findings (lint), still a full estimate
        raise RuntimeError(f"wattlint {' '.join(args)} exited {p.returncode}: {err.decode()[-400:]}")
    return {"wall_s": round(wall, 3), "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
            "peak_rss_mib": round(ru.ru_maxrss / 1024, 1)}


def measure(args: list[str], src: Path, repeat: int) -> dict:
    runs = [run_once(args, src) for _ in range(repeat)]
    return {"repeats": repeat, "wall_s_median": statistics.median(r["wall_s"] for r in runs),
            "cpu_s_median": statistics.median(r["cpu_s"] for r in runs),
            "peak_rss_mib_max": max(r["peak_rss_mib"] for r in runs), "runs": runs}


def repeats_for(n: int, what: str) -> int:
    if what == "compare":
        return 3 if n <= 10000 else 1
    return 5 if n <= 10000 else (3 if n <= 30000 else 2)


def linearity(rows: dict[int, float], fixed_s: float) -> dict:
    """Per-node time (s / n) and marginal per-node time ((s - fixed) / (n - FIXED_N)) with their max / min."""
    per = {n: rows[n] / n for n in rows}
    net = {n: max(0.0, rows[n] - fixed_s) / (n - FIXED_N) for n in rows}
    lo, hi = min(per.values()), max(per.values())
    nlo, nhi = min(net.values()), max(net.values())
    return {"per_node_ms": {str(n): round(v * 1e3, 4) for n, v in per.items()},
            "marginal_per_node_ms": {str(n): round(v * 1e3, 4) for n, v in net.items()},
            "ratio_max_over_min": round(hi / lo, 3) if lo > 0 else None,
            "marginal_ratio_max_over_min": round(nhi / nlo, 3) if nlo > 0 else None,
            "within_2x": bool(lo > 0 and hi / lo <= 2.0),
            "marginal_within_2x": bool(nlo > 0 and nhi / nlo <= 2.0)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--what", default="analyze,estimate,compare")
    ap.add_argument("--compare-max", type=int, default=10**9, help="skip --compare above this many nodes")
    ap.add_argument("--src", default=str(ROOT / "src"), help="the wattlint source tree to run (PYTHONPATH)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scaling.json"))
    a = ap.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",")]
    whats = a.what.split(",")
    src = Path(a.src).resolve()
    out: dict = {
        "benchmark": "scaling", "method": " ".join(__doc__.split("Method (also written into the JSON):")[1].split()),
        "interface": "CLI: one `python -m wattlint` process per run (PYTHONPATH=" +
                     (str(src.relative_to(ROOT)) if src.is_relative_to(ROOT) else str(src)) + ")",
        "commands": {k: "wattlint " + " ".join(v) for k, v in commands(Path("MODEL")).items()},
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "loadavg_start": os.getloadavg()},
        "sizes": sizes, "fixed_n": FIXED_N, "fixed": {}, "results": {w: {} for w in whats}, "skipped": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(chain_model(FIXED_N, Path(tmp) / "fixed" / "chain.onnx"))
        for w in whats:
            out["fixed"][w] = measure(cmds[w], src, 5)
        for n in sizes:
            model = chain_model(n, Path(tmp) / str(n) / "chain.onnx")
            cmds = commands(model)
            for w in whats:
                if w == "compare" and n > a.compare_max:
                    out["skipped"][f"compare@{n}"] = f"--compare-max {a.compare_max}"
                    continue
                r = measure(cmds[w], src, repeats_for(n, w))
                out["results"][w][str(n)] = r
                print(f"{w:8s} n={n:>6d}: wall {r['wall_s_median']:.2f} s, cpu {r['cpu_s_median']:.2f} s, "
                      f"peak RSS {r['peak_rss_mib_max']:.0f} MiB ({r['repeats']} runs)", flush=True)
                Path(a.out).parent.mkdir(parents=True, exist_ok=True)
                Path(a.out).write_text(json.dumps(out, indent=1) + "\n")  # partial results survive a stop
    out["linearity"] = {}
    for w in whats:
        rows = {int(n): r for n, r in out["results"][w].items()}
        if len(rows) >= 2:
            out["linearity"][w] = {q: linearity({n: r[f"{q}_s_median"] for n, r in rows.items()},
                                                out["fixed"][w][f"{q}_s_median"]) for q in ("wall", "cpu")}
    out["machine"]["loadavg_end"] = os.getloadavg()
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["linearity"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
