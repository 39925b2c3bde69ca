"""Diagnostic: does each epoch's first data-loader batch explain the Zeus large-batch rows? (Found here; the product now
prices it with --loader-sample-time and benchmarks/prior_vs_public.py fits it: docs/ENERGY_MODEL.md "Data loading".)

On the Zeus ShuffleNetV2 / CIFAR-100 rows the measured epoch time RISES with the batch at large batches (A40 8.5 s at
1,024 -> 11.1 s at 8,192; Quadro RTX 6000 9.5 -> 10.7 s and V100 7.4 -> 8.3 s from 1,024 to 4,096), which no GPU-side
cost does (the work per epoch is the same). Zeus's CIFAR-100 loop (ml-energy/zeus examples/ZeusDataLoader/cifar100/
train.py) builds a ``torch.utils.data.DataLoader(num_workers=4)`` without persistent workers and with PIL transforms
(RandomCrop(32, padding=4), RandomHorizontalFlip, RandomRotation(15), ToTensor, Normalize): every epoch starts new
workers, and the first batch is built by ONE worker, sample by sample, before the GPU gets any work. So each epoch
carries ~ batch x t_sample of wait (t_sample: one worker's CPU time per sample), which the prior does not price.

Two independent estimates of t_sample:

1. **Fitted, leave-one-GPU-out**, on the shipped prior's predictions of the Zeus named rows
   (benchmarks/results/prior_vs_public.json, ``rows.zeus_named``, fields ``prior_epoch_s`` / ``prior_epoch_j``): each
   held-out GPU's ShuffleNetV2 rows get ``batch / R`` seconds more per epoch (at the GPU's idle power: the GPU waits),
   R (samples per second of one worker) fitted by time MAPE on the other three GPUs' named rows over a grid. BERT
   rows (HF Trainer, tokenized features) get nothing. The host cost per launch is NOT refitted with it (a first look:
   a joint fit is what shipping it would need).
2. **Measured on this machine's CPU**: the same chain written with PIL and torch ops (torchvision does not import
   here) on 32 x 32 RGB images, one thread, batch collated, median of repeats: a lower bound (torchvision's own
   Python, the batch's pickling to the main process and the workers' start-up are not in it).

Run: PYTHONPATH=src python benchmarks/zeus_loader_diagnostic.py  (writes benchmarks/results/zeus_loader_diagnostic.json;
reads the committed prior_vs_public.json, no estimation: a few seconds). Data: ../shared/data/zeus-nsdi23
(Apache-2.0), via the committed results file.
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "prior_vs_public.json"
OUT = HERE / "results" / "zeus_loader_diagnostic.json"
GRID = tuple(range(1000, 10001, 250))  # samples / s of one loader worker


def idle_w(row: dict) -> float:
    """The GPU's in-job idle power as the benchmark priced the row: the database idle of HBM boards, the row's
    (held-out) GDDR idle fraction x TDP for GDDR boards (benchmarks/prior_vs_public.py, idle_fit)."""
    from wattlint.energy.prior import memory_kind
    from wattlint.hardware import gddr_idle_w, resolve_gpu

    gpu = resolve_gpu(row["gpu"])[0]
    return float(gpu.idle_w if memory_kind(gpu) == "hbm" else gddr_idle_w(gpu.tdp_w, row["gddr_idle_fraction"]))


def _extra(row: dict, rate: float | None) -> float:
    if rate is None or "shufflenet" not in row["workload"]:
        return 0.0
    return row["batch_size"] / rate


def _errors(rows: list[dict], rate_of) -> dict:
    t, e, p = [], [], []
    for r in rows:
        x = _extra(r, rate_of(r["gpu"]))
        ts = r["prior_epoch_s"] + x
        ej = r["prior_epoch_j"] + x * idle_w(r)
        t.append(abs(ts / r["measured_epoch_s"] - 1))
        e.append(abs(ej / r["measured_epoch_j"] - 1))
        p.append(abs(ej / ts / r["measured_avg_power_w"] - 1))
    return {"time_mape_pct": round(100 * statistics.fmean(t), 1), "energy_mape_pct": round(100 * statistics.fmean(e), 1),
            "power_mape_pct": round(100 * statistics.fmean(p), 1), "n": len(rows)}


def _time_mape(rows, rate) -> float:
    return statistics.fmean(abs((r["prior_epoch_s"] + _extra(r, rate)) / r["measured_epoch_s"] - 1) for r in rows)


def fit(rows: list[dict]) -> dict:
    gpus = sorted({r["gpu"] for r in rows})
    folds = {g: min(GRID, key=lambda R: _time_mape([r for r in rows if r["gpu"] != g], R)) for g in gpus}
    per_gpu = {}
    for g in gpus:
        mine = [r for r in rows if r["gpu"] == g]
        per_gpu[g] = {"rate_fitted_on_others": folds[g], "before": _errors(mine, lambda _: None),
                      "after": _errors(mine, lambda _, g=g: folds[g])}
    return {"folds_samples_per_s": folds, "all_gpus_fit": min(GRID, key=lambda R: _time_mape(rows, R)),
            "named_before": _errors(rows, lambda _: None), "named_held_out": _errors(rows, lambda g: folds[g]),
            "per_gpu": per_gpu}


def measure_cpu(n: int = 4096, repeats: int = 3) -> dict:
    """One worker's CPU time per sample of Zeus's CIFAR-100 train chain, on this machine: the dataset's
    Image.fromarray, RandomCrop(32, padding=4), RandomHorizontalFlip, RandomRotation(15) in PIL, ToTensor and
    Normalize as torch ops on one thread, and default_collate's torch.stack of the batch."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    torch.set_num_threads(1)  # a DataLoader worker runs torch on one thread
    data = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    mean = torch.tensor([0.5070751592371323, 0.48654887331495095, 0.4409178433670343]).view(3, 1, 1)
    std = torch.tensor([0.2673342858792401, 0.2564384629170883, 0.27615047132568404]).view(3, 1, 1)
    random.seed(0)

    def item(i):
        img = Image.fromarray(data[i])  # torchvision's CIFAR100.__getitem__
        img = ImageOps.expand(img, border=4, fill=0)  # RandomCrop(32, padding=4)
        x, y = random.randint(0, 8), random.randint(0, 8)
        img = img.crop((x, y, x + 32, y + 32))
        if random.random() < 0.5:  # RandomHorizontalFlip
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img = img.rotate(float(torch.empty(1).uniform_(-15.0, 15.0).item()))  # RandomRotation(15)
        t = torch.from_numpy(np.array(img, np.uint8, copy=True)).permute(2, 0, 1).contiguous().float().div(255)
        return t.sub_(mean).div_(std), i % 100  # ToTensor, Normalize; the label

    per = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        items = [item(i) for i in range(n)]
        torch.stack([a for a, _ in items]), torch.tensor([b for _, b in items])  # default_collate
        per.append((time.perf_counter() - t0) / n)
    med = statistics.median(per)
    return {"seconds_per_sample_median": med, "samples_per_s": round(1.0 / med), "repeats": repeats, "samples": n,
            "note": "stand-in for torchvision's chain (its transform objects' own Python, the worker's pickling of "
                    "the batch into shared memory and worker start-up are not in it: a lower bound); this "
                    "machine's CPU, shared with other jobs"}


def main() -> int:
    rows = json.loads(RESULTS.read_text())["rows"]["zeus_named"]
    doc = {"benchmark": "zeus_loader_diagnostic", "method": __doc__, "fit": fit(rows), "cpu_measurement": measure_cpu(),
           "environment": {"python": platform.python_version(), "machine": platform.machine()}}
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k != "method"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
