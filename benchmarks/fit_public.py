"""Fit the public-fit efficiency model on NeuSight's training kernels (5 older GPUs) and write
src/wattlint/models/public-fit/ (one LightGBM text model per op family + card.json).

    python benchmarks/fit_public.py              # LOGO cross-validation + final fit (~5-10 min on 2 cores)
    python benchmarks/fit_public.py --no-cv      # final fit only

Protocol (benchmarks/public/splits.json, committed before this script first ran):
* rows: every kernel of kernels-train/ (P4, P100, T4, V100, A100-40GB; conv of the A100 80GB PCIe), turned into the
  OpRecord the torch frontend records (benchmarks/neusight_data.py) and featurised by
  wattlint.energy.public_fit.features on the GPU's database spec (NeuSight's device config for the P4);
* target: ln(efficiency), efficiency = FP32 roofline time / measured latency, clipped to [1e-4, EFF_MAX[family]];
* hyper-parameters fixed up front (below), checked by leave-one-GPU-out cross-validation over the 5 training GPUs
  (no test kernel, held-out GPU or end-to-end row is read here); the CV subsamples at most CV_CAP kernels per GPU
  and family to fit in minutes on 2 shared cores, the final fit uses every kernel;
* the card gets the CV errors (per family x held-out GPU) and time residual quantiles (5 / 95 %) from the
  out-of-fold predictions, time-weighted. benchmarks/public_accuracy.py adds the held-out (test) errors.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

import lightgbm as lgb  # noqa: E402
import neusight_data as nd  # noqa: E402

from wattlint.energy import public_fit as pf  # noqa: E402

OUT = ROOT / "src" / "wattlint" / "models" / pf.MODEL_DIRNAME
CV_OUT = ROOT / "benchmarks" / "results" / "public_fit_cv.json"
PARAMS = {
    "objective": "regression", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20,
    "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
    "verbose": -1, "seed": 7, "deterministic": True, "force_row_wise": True, "num_threads": 2,
}
ROUNDS = 300
VERSION = "2025.1"
CV_CAP = 2500  # leave-one-GPU-out CV subsamples at most this many kernels per GPU and family (2 shared cores)


def matrices(kernels, specs):
    by = defaultdict(lambda: {"x": [], "y": [], "meas": [], "roof": [], "gpu": []})
    for k in kernels:
        if not k.gpu_bound:
            continue
        g = specs[k.device]
        roof = pf.roofline_s(k.record, g)
        eff = min(pf.EFF_MAX[k.family], max(1e-4, roof / (k.latency_s - pf.KERNEL_GAP_S)))
        d = by[k.family]
        d["x"].append(pf.features(k.record, g))
        d["y"].append(math.log(eff))
        d["meas"].append(k.latency_s)
        d["roof"].append(roof)
        d["gpu"].append(k.device)
    return {f: {k: np.asarray(v, dtype=float if k != "gpu" else object) for k, v in d.items()} for f, d in by.items()}


def domain(x, fam: str) -> dict:
    """The family's training box: [min, max] of each of its pf.DOMAIN_FEATURES columns over its training kernels."""
    return {n: [float(x[:, i].min()), float(x[:, i].max())]
            for n, i in ((n, pf.FEATURE_NAMES.index(n)) for n in pf.DOMAIN_FEATURES[fam])}


def train(x, y):
    return lgb.train(dict(PARAMS), lgb.Dataset(x, label=y, free_raw_data=False), num_boost_round=ROUNDS)


def predict_time(booster, fam, x, roof):
    ln_eff = np.clip(booster.predict(x), pf.LN_EFF_MIN, math.log(pf.EFF_MAX[fam]))
    return roof / np.exp(ln_eff) + pf.KERNEL_GAP_S


def _subsample(d, cap, seed=0):
    rng = np.random.default_rng(seed)
    keep = []
    for g in sorted(set(d["gpu"])):
        idx = np.flatnonzero(d["gpu"] == g)
        keep.append(idx if len(idx) <= cap else np.sort(rng.choice(idx, cap, replace=False)))
    k = np.concatenate(keep)
    return {key: v[k] for key, v in d.items()}


def cross_validate(data):
    out, oof_res, oof_w = {}, [], []
    for fam, d in sorted(data.items()):
        d = _subsample(d, CV_CAP)
        out[fam] = {}
        for g in sorted(set(d["gpu"])):
            te = d["gpu"] == g
            b = train(d["x"][~te], d["y"][~te])
            pt = predict_time(b, fam, d["x"][te], d["roof"][te])
            meas = d["meas"][te]
            ape = np.abs(pt / meas - 1)
            roof_ape = np.abs(d["roof"][te] / meas - 1)
            out[fam][g] = {"n": int(te.sum()), "mape_pct": round(100 * float(ape.mean()), 2),
                           "median_ape_pct": round(100 * float(np.median(ape)), 2),
                           "roofline_mape_pct": round(100 * float(roof_ape.mean()), 2)}
            oof_res.extend(np.log(meas / pt).tolist())
            oof_w.extend(meas.tolist())
            print(f"  cv {fam:12s} held-out {g:24s} MAPE {out[fam][g]['mape_pct']:6.2f} %", flush=True)
    return out, np.asarray(oof_res), np.asarray(oof_w)


def wquantile(v, w, q):
    o = np.argsort(v)
    v, w = v[o], w[o]
    c = np.cumsum(w) / w.sum()
    return float(np.interp(q, c, v))


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-cv", action="store_true")
    a = ap.parse_args(argv)
    t0 = time.time()
    specs = nd.gpu_specs()
    kernels = nd.load_train(specs)
    data = matrices(kernels, specs)
    print(f"{len(kernels)} training kernels, {len(data)} families, {time.time() - t0:.0f} s", flush=True)
    cv, res_q = None, None
    if not a.no_cv:
        cv, res, w = cross_validate(data)
        res_q = {"p5": wquantile(res, w, 0.05), "p95": wquantile(res, w, 0.95),
                 "method": ("time-weighted 5/95 % quantiles of ln(measured / predicted) of every training kernel, "
                            "predicted by the model fitted without its GPU (leave-one-GPU-out); per kernel, so "
                            "wider than a whole step's error where kernel errors partly cancel")}
        CV_OUT.write_text(json.dumps({"params": PARAMS, "rounds": ROUNDS, "cv_cap_per_gpu_family": CV_CAP,
                                      "cv": cv, "time_residuals": res_q},
                                     indent=1) + "\n")
    OUT.mkdir(parents=True, exist_ok=True)
    fams, boxes = {}, {}
    for fam, d in sorted(data.items()):
        b = train(d["x"], d["y"])
        f = OUT / f"{fam}.txt"
        f.write_text(b.model_to_string(num_iteration=-1))
        gpus = sorted(set(d["gpu"]))
        boxes[fam] = domain(d["x"], fam)
        fams[fam] = {"file": f.name, "sha256": sha256(f), "rows": int(len(d["y"])), "gpus": gpus,
                     "eff_max": pf.EFF_MAX[fam],
                     "neusight_ops": sorted({k for k, v in nd.FILE_FAMILY.items() if v == fam})}
        print(f"  fitted {fam}: {len(d['y'])} rows, {f.stat().st_size / 1e6:.2f} MB", flush=True)
    old = {}
    if (OUT / "card.json").is_file():
        old = json.loads((OUT / "card.json").read_text())
    card = {
        "schema": pf.SCHEMA,
        "version": VERSION,
        "fitted_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "target": ("ln(efficiency), efficiency = max(flops / peak_fp32, bytes / bandwidth) / measured latency "
                   "(spec-sheet peak and bandwidth of the GPU), clipped to [1e-4, eff_max]"),
        "data_sources": [{
            "name": "NeuSight ASPLOS'25 per-kernel FP32 latencies",
            "where": "github.com/sitar-lab/NeuSight commit 6945927d (copy: shared/data/neusight-asplos25)",
            "licence": "MIT, (c) 2025 Georgia Institute of Technology and Microsoft Corporation",
            "paper": "Lee, Phanishayee, Mahajan, ASPLOS 2025, doi 10.1145/3669940.3707265",
            "measurements": "PyTorch 2.1, CUDA 12.1, FP32, forward kernels",
        }],
        "splits": "benchmarks/public/splits.json",
        "train_gpus": {dev: {"key": specs[dev].key, "sm_count": specs[dev].sm_count, "boost_mhz": specs[dev].boost_mhz,
                             "memory_bw_gbs": specs[dev].memory_bw_gbs, "l2_mb": specs[dev].l2_mb,
                             "peak_fp32_tflops": specs[dev].peak("fp32") / 1e12}
                       for dev in sorted({k.device for k in kernels})},
        "families": fams,
        "coverage": ("FP32 CUDA-core GEMMs (mm, bmm; 1x1 stride-1 ungrouped FP32 convolutions as the GEMMs they "
                     "are), 3x3 stride-1 ungrouped FP32 convolutions, elementwise / dropout / copy kernels, softmax, layer norm; everything else (tensor-core GEMMs and convs, "
                     "grouped convs, attention kernels, reductions, embeddings, losses, optimizer) is priced by the "
                     "prior"),
        # the domain of applicability (outside it the prior prices the op): rounded outward only by float print
        "domain": {fam: {n: [math.floor(lo * 1e6) / 1e6, math.ceil(hi * 1e6) / 1e6] for n, (lo, hi) in b.items()}
                   for fam, b in boxes.items()},
        "domain_method": ("per family, [min, max] over its training kernels of each of its size features in "
                          "wattlint.energy.public_fit.DOMAIN_FEATURES; an op outside the box is priced by the prior "
                          "(a GEMM-like record: plus the model's excess over the prior on the nearest GEMM "
                          "inside the box, wattlint.energy.public_fit.edge_gemm)"),
        "features": {"version": pf.FEATURE_VERSION, "names": list(pf.FEATURE_NAMES),
                     "code": "wattlint.energy.public_fit.features (the same function at fit and prediction)"},
        "lightgbm": {"params": PARAMS, "rounds": ROUNDS, "version": lgb.__version__},
        "subsampling": (f"final fit: none (every training kernel); leave-one-GPU-out CV: at most {CV_CAP} kernels "
                        "per GPU and family, drawn at random (seed 0)"),
        "cv_leave_one_gpu_out": cv if cv is not None else old.get("cv_leave_one_gpu_out"),
        # per-kernel LOGO band; the step-level "time" and "energy" bands are written by public_accuracy.py
        "residuals": {"time_per_kernel": res_q if res_q is not None else
                      (old.get("residuals") or {}).get("time_per_kernel"),
                      "time": (old.get("residuals") or {}).get("time") or res_q},
        "held_out": old.get("held_out", {}),
    }
    if (old.get("residuals") or {}).get("energy"):
        card["residuals"]["energy"] = old["residuals"]["energy"]
    (OUT / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"wrote {OUT} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
