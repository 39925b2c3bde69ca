"""Speed of the ONNX frontend (issue 3).

    python benchmarks/onnx_speed.py          # writes benchmarks/results/onnx_speed.json

1. ResNet-50 (examples/resnet50.onnx, batch 32): wall time of the whole process ``python -m wattlint analyze
   examples/resnet50.onnx --format json`` and of a bare ``analyze_onnx`` process, median of repeated runs, beside
   onnx-tool (``onnx_tool.model_profile``) on the same graph in the same run. onnx-tool needs the weights, so it gets
   a copy with a sparse zero-filled data file of the right size.
2. GPT-2 topology at 6..96 layers (48 = GPT-2 XL's depth), exported with symbolic batch / sequence dims and bound
   at batch 8 x 1024 tokens: whole-process time vs node count (linearity). Wall and CPU (user + sys) seconds
   are both recorded: this machine is shared (load average recorded), so wall time includes waiting for a core. The width is reduced (n_embd 64) to
   keep the export small; wattlint's time depends on the node count and the bound dims, not on the weights.
"""

from __future__ import annotations

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
sys.path.insert(0, str(ROOT / "examples"))
PY = sys.executable
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


CPU: dict[int, list[float]] = {}


def wall(cmd: list[str], repeat: int, cwd=ROOT) -> list[float]:
    """Wall seconds of each run; the process CPU seconds (user + sys) of each run go to CPU[id(result)]. On a
    shared machine wall time includes waiting for a core; CPU time is what the process itself needs."""
    import resource

    times, cpu = [], []
    for _ in range(repeat):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV)
        times.append(round(time.perf_counter() - t, 4))
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(round(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, 4))
        if r.returncode != 0:
            raise RuntimeError(f"{cmd} failed: {r.stderr[-400:]}")
    CPU[id(times)] = cpu
    return times


def stat(times: list[float]) -> dict:
    cpu = CPU.get(id(times), [])
    return {"wall_median": statistics.median(times), "cpu_median": statistics.median(cpu) if cpu else None,
            "wall_runs": times, "cpu_runs": cpu}


def sparse_weights_copy(src: Path, dst_dir: Path) -> Path:
    """Copy the .onnx next to a sparse, zero-filled external data file large enough for every initializer."""
    import onnx

    m = onnx.load(str(src), load_external_data=False)
    need: dict[str, int] = {}
    for t in m.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            kv = {e.key: e.value for e in t.external_data}
            end = int(kv.get("offset", 0)) + int(kv.get("length", 0))
            need[kv["location"]] = max(need.get(kv["location"], 0), end)
    dst = dst_dir / src.name
    dst.write_bytes(src.read_bytes())
    for loc, size in need.items():
        with open(dst_dir / loc, "wb") as f:
            f.truncate(size)
    return dst


def export_gpt2_depth(layers: int, out: Path) -> Path:
    import torch

    import make_examples as M

    model = M.logits_only(M.gpt2_tiny(n_layer=layers, n_embd=64, n_head=4, vocab=50257, n_positions=1024))
    return M.export_weightless(model, (torch.zeros(2, 16, dtype=torch.long),), out, input_names=["input_ids"],
                               output_names=["logits"],
                               dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                             "logits": {0: "batch", 1: "sequence"}})


def main() -> int:
    import onnx

    res: dict = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    repeat = int(os.environ.get("REPEAT", "7"))
    resnet = ROOT / "examples" / "resnet50.onnx"
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        cli = wall([PY, "-m", "wattlint", "analyze", str(resnet), "--format", "json"], repeat)
        bare = wall([PY, "-c", "from wattlint.frontends.onnx import analyze_onnx; "
                               f"analyze_onnx({str(resnet)!r})"], repeat)
        heavy = sparse_weights_copy(resnet, td)
        ot = wall([PY, "-c", "import onnx_tool; onnx_tool.model_profile("
                             f"{str(heavy)!r}, mcfg={{'verbose': False}})"], repeat, cwd=td)
        py_start = wall([PY, "-c", "pass"], repeat)
        res["resnet50"] = {
            "file": "examples/resnet50.onnx", "nodes": len(onnx.load(str(resnet), load_external_data=False).graph.node),
            "wattlint_cli_s": stat(cli),
            "wattlint_analyze_onnx_process_s": stat(bare),
            "onnx_tool_profile_process_s": stat(ot),
            "python_startup_s": stat(py_start),
            "load_average_1min": os.getloadavg()[0],
            "target_s": 0.6,
        }
        print(f"resnet50: wattlint analyze {stat(cli)} (bare {stat(bare)}), onnx-tool {stat(ot)}")
        rows = []
        for layers in (int(x) for x in os.environ.get("DEPTHS", "6,12,24,48,96").split(",")):
            p = export_gpt2_depth(layers, td / f"gpt2_{layers}.onnx")
            nodes = len(onnx.load(str(p), load_external_data=False).graph.node)
            cmd = [PY, "-m", "wattlint", "analyze", str(p), "--format", "json", "--batch-size", "8",
                   "--seq-len", "1024"]
            t = wall(cmd, max(3, repeat // 2))
            # in-process analysis time (without interpreter start and imports)
            code = ("import time; from wattlint.frontends.onnx import analyze_onnx; import onnx\n"
                    f"analyze_onnx({str(p)!r}, batch_size=8, seq_len=1024)\n"
                    "t = time.process_time()\n"
                    f"g = analyze_onnx({str(p)!r}, batch_size=8, seq_len=1024)\n"
                    "print(time.process_time() - t, len(g.records), g.unsupported())")
            r = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=ENV, cwd=ROOT)
            inproc, nrec, unsup = r.stdout.split(maxsplit=2)
            rows.append({"layers": layers, "nodes": nodes, "records": int(nrec), "cli_s": stat(t),
                         "analyze_onnx_cpu_s": float(inproc), "unsupported": unsup.strip()})
            print(f"gpt2 x{layers}: {nodes} nodes, cli {stat(t)['wall_median']:.3f}s wall "
                  f"{stat(t)['cpu_median']:.3f}s cpu, analyze_onnx alone {float(inproc):.3f}s cpu")
        # linearity: least-squares fit of in-process time on node count
        xs = [r["nodes"] for r in rows]
        ys = [r["cli_s"]["cpu_median"] for r in rows]
        mx, my = statistics.mean(xs), statistics.mean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        icpt = my - slope * mx
        ss_res = sum((y - (icpt + slope * x)) ** 2 for x, y in zip(xs, ys))
        ss_tot = sum((y - my) ** 2 for y in ys)
        res["gpt2_depths"] = {"rows": rows, "fit": {"of": "whole-process CPU seconds vs node count",
                                                   "seconds_per_node": slope, "intercept_s": icpt,
                                                   "r2": 1 - ss_res / ss_tot if ss_tot else 1.0},
                              "target_s_at_10k_nodes": 2.0}
        print(f"linear fit: {slope * 1e6:.1f} us/node, intercept {icpt:.3f}s, R^2 {res['gpt2_depths']['fit']['r2']:.4f}")
    res["method"] = __doc__.strip()
    out = ROOT / "benchmarks" / "results" / "onnx_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
