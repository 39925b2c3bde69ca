"""Host (CPU) time per launched op in eager PyTorch, measured on a lent GPU machine.

wattlint prices the eager host work of a training step as ``host_op_s`` per launched op (energy/system.py,
HOST_OP_S; fitted on Zeus's 2021-era hosts). This probe measures the same quantity on the machine it runs on,
two ways:

1. issue cost: the GPU is kept busy by one long kernel (``torch.cuda._sleep``) while Python issues N small ops;
   the wall time of the issuing loop / N is the host's cost per op, with no waiting on the GPU;
2. a host-bound training step: a deep, narrow MLP (64 x Linear(64, 64) + ReLU, batch 16, foreach AdamW) whose
   kernels take a few microseconds each; the median step time and the number of CUDA kernels one step launches
   (torch.profiler) are recorded, so the per-op time can be fitted with wattlint's own trace of the same model
   (benchmarks/device/README.md).

Usage: python3 benchmarks/device/host_probe.py OUT.json [--device cuda|cpu]
Only reads the device; changes no setting.
"""
from __future__ import annotations

import json
import platform
import statistics
import sys
import time


def mlp(depth: int = 64, width: int = 64):
    import torch

    layers = []
    for _ in range(depth):
        layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers)


MLP = {"depth": 64, "width": 64, "batch": 16, "optimizer": "adamw (foreach)", "loss": "sum of outputs"}


def issue_cost(dev, n: int = 500) -> dict:
    import torch
    import torch.nn.functional as F

    a = torch.randn(64, device=dev)
    b = torch.randn(64, device=dev)
    x = torch.randn(16, 64, device=dev)
    w = torch.randn(64, 64, device=dev)
    out = {}
    for name, fn in (("add", lambda: torch.add(a, b)), ("linear", lambda: F.linear(x, w)),
                     ("relu_", lambda: a.relu_())):
        per = []
        for _ in range(5):
            if dev.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda._sleep(int(4e8))  # ~0.2 s of GPU time: the queue never drains while issuing
            # (n stays well under the CUDA launch queue's ~1,000 entries: a full queue makes the loop wait on the GPU)
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            per.append((time.perf_counter() - t0) / n)
            if dev.type == "cuda":
                torch.cuda.synchronize()
        out[name] = {"median_s": statistics.median(per), "all_s": per, "n": n}
    return out


def mlp_step(dev) -> dict:
    import torch

    torch.manual_seed(0)
    model = mlp(MLP["depth"], MLP["width"]).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=True)
    x = torch.randn(MLP["batch"], MLP["width"], device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        model(x).sum().backward()
        opt.step()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(20):
        step()
    sync()
    times = []
    for _ in range(100):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    res = {"median_step_s": statistics.median(times), "min_step_s": min(times), "steps": len(times)}
    try:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        with profile(activities=acts) as prof:
            step()
            sync()
        kernels = [e for e in prof.events() if getattr(e, "device_type", None) is not None
                   and str(e.device_type).endswith("CUDA")]
        res["cuda_kernels_per_step"] = len(kernels)
        res["cuda_kernel_time_s"] = sum(e.device_time_total for e in kernels) * 1e-6 if kernels else 0.0
        res["cuda_kernel_names"] = sorted({e.name[:80] for e in kernels})[:60]
    except Exception as e:  # noqa: BLE001 - the profiler is optional evidence
        res["profiler_error"] = f"{type(e).__name__}: {e}"[:300]
    return res


def main(argv: list[str]) -> int:
    import torch

    if not argv or argv[0].startswith("-"):
        print("usage: host_probe.py OUT.json [--device cuda|cpu]", file=sys.stderr)
        return 2
    devname = argv[argv.index("--device") + 1] if "--device" in argv else "cuda"
    dev = torch.device(devname)
    doc = {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
           "processor": platform.processor(), "device": devname, "mlp": MLP,
           "cpu_count": __import__("os").cpu_count()}
    if dev.type == "cuda":
        doc["gpu"] = torch.cuda.get_device_name(dev)
    try:
        with open("/proc/cpuinfo") as f:
            doc["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        doc["cpu_model"] = None
    doc["issue_cost"] = issue_cost(dev, 500 if dev.type == "cuda" else 200)
    doc["mlp_step"] = mlp_step(dev)
    with open(argv[0], "w") as f:
        json.dump(doc, f, indent=2)
    print(json.dumps({k: doc[k] for k in ("torch", "cpu_model")}),
          {k: round(v["median_s"] * 1e6, 2) for k, v in doc["issue_cost"].items()}, "us/op;",
          f"mlp step {doc['mlp_step']['median_step_s'] * 1e3:.3f} ms,",
          doc["mlp_step"].get("cuda_kernels_per_step"), "kernels")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
