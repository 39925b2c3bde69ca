"""Where the prior's ResNet-50 training step goes, per op family, on the boards of Lambda's throughput benchmark.

    PYTHONPATH=src python benchmarks/resnet_breakdown.py                 # AMP (fp16 autocast), NCHW
    PYTHONPATH=src python benchmarks/resnet_breakdown.py --precision tf32

Traces torchvision's ResNet-50 exactly as benchmarks/prior_vs_public.py does (NCHW, SGD, the benchmark's batch per
board), prices every record with the shipped prior (``wattlint.energy.prior.op_prior``) and prints one markdown row per
board in ms per 256 images: convolution math (forward / input gradient / weight gradient, without the NCHW <-> NHWC
transposes), the transposes, BatchNorm (forward + backward), elementwise ops, the rest, the predicted step (the
estimate's own step time, launch gaps included) and Lambda's measured step (256 / images per second). It changes
nothing and writes no file; docs/ENERGY_MODEL.md ("ResNet-50 on GA102 / AD102 boards") quotes its AMP table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import prior_vs_public as pvp  # noqa: E402
import torch  # noqa: E402

from wattlint.energy.prior import op_prior  # noqa: E402
from wattlint.hardware import resolve_gpu  # noqa: E402
from wattlint.types import OpKind, Phase  # noqa: E402

FAMILIES = ("fwd", "dgrad", "wgrad", "layout", "bn", "elementwise")


def breakdown(key: str, batch: int, precision: str) -> tuple[dict[str, float], float]:
    """(seconds per family for one traced step, predicted step time in seconds) on board ``key``."""
    graph = pvp._trace(("resnet50", batch, precision), pvp._resnet50, torch.randn(batch, 3, 224, 224), batch,
                       precision, "sgd")
    gpu, _ = resolve_gpu(key)
    run_prec = pvp.run_precision(precision, gpu)
    step = pvp._estimate(graph, gpu, batch, run_prec, "sgd")["per_step"]["time_s"]
    out: dict[str, float] = defaultdict(float)
    for r in graph.records:
        if r.phase is Phase.COMMUNICATION:
            continue
        o = op_prior(r, gpu, run_prec)
        if r.kind is OpKind.CONV:
            part = "fwd" if r.phase is Phase.FORWARD else ("wgrad" if r.dim("grad", 0) == 2 else "dgrad")
            out[part] += o.time_s - o.layout_s
            out["layout"] += o.layout_s
        elif r.kind is OpKind.NORM:
            out["bn"] += o.time_s
        elif r.kind is OpKind.ELEMENTWISE:
            out["elementwise"] += o.time_s
    out["rest"] = step - sum(out[f] for f in FAMILIES)
    return dict(out), step


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precision", choices=("fp16", "tf32"), default="fp16")
    args = ap.parse_args(argv)
    order = json.loads(pvp.SPLIT.read_text())["resnet50_amp_order"]
    boards = [(r["gpu"], r["batch_size"] or 256, r["images_per_s"]) for r in order["rows"]]
    boards += [(k, 256, v) for k, v in order["also"].items() if k in ("a100-pcie-80gb", "h100-pcie-80gb",
                                                                         "rtx-a6000-48gb")]
    print(f"ResNet-50, {args.precision}, NCHW; ms per 256 images (prior, op by op); measured: "
          + (order["source"] if args.precision == "fp16" else pvp.LAMBDA_FP32_SOURCE))
    print("| board (batch) | conv math fwd / dgrad / wgrad | NCHW transposes | BatchNorm fwd + bwd | elementwise | "
          "rest | predicted step | measured |")
    print("|---|---|---|---|---|---|---|---|")
    for key, batch, amp_ips in boards:
        meas_ips = amp_ips if args.precision == "fp16" else pvp.LAMBDA_FP32.get(key)
        parts, step = breakdown(key, batch, args.precision)
        s = 256.0 / batch * 1e3
        meas = f"{256.0 / meas_ips * 1e3:.0f}" if meas_ips else "-"
        print(f"| {key} ({batch}) | {parts['fwd'] * s:.0f} / {parts['dgrad'] * s:.0f} / {parts['wgrad'] * s:.0f} | "
              f"{parts['layout'] * s:.0f} | {parts['bn'] * s:.0f} | {parts['elementwise'] * s:.0f} | "
              f"{parts['rest'] * s:.0f} | {step * s:.0f} | {meas} |")


if __name__ == "__main__":
    main()
