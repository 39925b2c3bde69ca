"""Accuracy of the public-fit model on data held out of its fit, beside the old prior, the naive FLOPs/peak x TDP
and NeuSight's own predictions.

    python benchmarks/public_accuracy.py          # ~10-20 min on 2 shared cores (traces ~50 models on meta)
    python benchmarks/public_accuracy.py --quick  # kernels + NeuSight end-to-end rows only

Writes benchmarks/results/public_accuracy.json and docs/accuracy/public_fit.md, and records the held-out errors and
the energy residual quantiles in the shipped card (src/wattlint/models/public-fit/card.json, "held_out" and
"residuals.energy"; the fitted models themselves are not touched). Splits: benchmarks/public/splits.json and
dle_mapping.json, committed before any fit. Sections:

1. kernels  - per-kernel held-out MAPE per GPU x op family on NeuSight's kernels-test (5 training GPUs = "in
   distribution", A100 80GB / H100 / L4 = "out of distribution"), beside NeuSight's summary/perop.csv.
2. e2e      - the 23 OOD training rows of NeuSight's summary/summary.csv (19 evaluated, 4 Switch rows skipped):
   wattlint's forward + backward time at fp32 with eager attention vs measured, beside the prior, naive
   FLOPs/peak and NeuSight.
3. dle      - DeepLearningExamples 1-GPU whole-step time on V100 / A100, FP32/TF32 and AMP separately.
4. zeus     - Zeus GPU-bound rows (ShuffleNetV2/CIFAR-100, BERT-base/SQuAD, max power limit): energy per epoch, with
   the one Zeus-fitted scalar (dynamic power scale) fitted leave-one-GPU-out.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

import neusight_data as nd  # noqa: E402
import wattlint  # noqa: E402
from wattlint import framework  # noqa: E402
from wattlint.energy import public_fit as pf  # noqa: E402
from wattlint.energy.predictor import PriorPredictor  # noqa: E402
from wattlint.energy.prior import memory_kind, op_prior  # noqa: E402
from wattlint.frontends.hf import analyze_config  # noqa: E402
from wattlint.frontends.torch import trace  # noqa: E402
from wattlint.hardware import gddr_idle_w, resolve_gpu  # noqa: E402
from wattlint.report.json_out import to_dict  # noqa: E402
from wattlint.types import TensorSpec  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "public_accuracy.json"
DOC = ROOT / "docs" / "accuracy" / "public_fit.md"
CARD = ROOT / "src" / "wattlint" / "models" / pf.MODEL_DIRNAME / "card.json"
PUBLIC = ROOT / "benchmarks" / "public"
NEUSIGHT = nd.DATA
from shared_data import DATA as SHARED  # noqa: E402 - the public data folder (one home)
ZEUS = SHARED / "zeus-nsdi23"
NS_GROUP = {"bmm": "BMM", "mm": "FC", "elementwise": "EW", "softmax": "Softmax", "layernorm": "LN"}
OOD_DEVICES = {"NVIDIA A100 80GB PCIe", "NVIDIA H100 80GB HBM3", "NVIDIA L4"}
TARGETS = {"e2e_mape_pct": 10.0, "e2e_goal_pct": 7.10, "dle_mape_pct": 20.0, "zeus_energy_mape_pct": 15.0}


def ape(pred, meas):
    return abs(pred / meas - 1.0)


def summary(errs):
    a = [abs(e) for e in errs]
    if not a:
        return None
    return {"n": len(a), "mape_pct": round(100 * statistics.fmean(a), 2),
            "median_ape_pct": round(100 * statistics.median(a), 2), "worst_ape_pct": round(100 * max(a), 2)}


def signed(pred, meas):
    return pred / meas - 1.0


def load_model():
    return pf.load_model(CARD.parent)


def public_predictor():
    return pf.PublicFitPredictor(load_model())


# ---- 1. per-kernel held-out --------------------------------------------------------------------------------------

def kernels_section():
    specs = nd.gpu_specs()
    ks = nd.load_test(specs, nd.train_floors(nd.load_train(specs)))
    model = load_model()
    by_fam = defaultdict(list)
    for i, k in enumerate(ks):
        by_fam[k.family].append(i)
    pred = [0.0] * len(ks)
    inside = [True] * len(ks)
    for fam, idx in by_fam.items():
        rows = [pf.features(ks[i].record, specs[ks[i].device]) for i in idx]
        le = model.log_efficiency(fam, rows)
        for i, v, row in zip(idx, le, rows):
            pred[i] = pf.roofline_s(ks[i].record, specs[ks[i].device]) / math.exp(v) + pf.KERNEL_GAP_S
            inside[i] = model.in_domain(fam, row)
    # what an estimate prices (PublicFitPredictor: the model inside the box; outside it the prior, a GEMM plus the
    # model's excess over the prior on the nearest in-box GEMM), per device in one call
    shipped = [0.0] * len(ks)
    pfp = pf.PublicFitPredictor(model)
    by_dev = defaultdict(list)
    for i, k in enumerate(ks):
        by_dev[k.device].append(i)
    for dev, idx in by_dev.items():
        t_sh, _ = pfp.predict([ks[i].record for i in idx], specs[dev], "fp32")
        for i, t in zip(idx, t_sh):
            shipped[i] = t
    # "pf": the model on every held-out kernel (its own accuracy); "shipped": what an estimate uses (above);
    # "outside": kernels outside the box (count only)
    keys = ("pf", "prior", "roof", "shipped", "outside", "pf_gb", "prior_gb", "roof_gb", "shipped_gb", "outside_gb")
    cells = defaultdict(lambda: {k: [] for k in keys})
    for k, p, ins, t_ship in zip(ks, pred, inside, shipped):
        g = specs[k.device]
        c = cells[(k.device, k.family)]
        t_prior = op_prior(k.record, g, "fp32").time_s
        e = {"pf": ape(p, k.latency_s), "prior": ape(t_prior, k.latency_s),
             "roof": ape(pf.roofline_s(k.record, g), k.latency_s),
             "shipped": ape(t_ship, k.latency_s)}
        if not ins:
            e["outside"] = 1.0
        for name, v in e.items():
            c[name].append(v)
            if k.gpu_bound:
                c[name + "_gb"].append(v)

    def m(v):
        return round(100 * statistics.fmean(v), 2) if v else None
    table = []
    for (dev, fam), c in sorted(cells.items()):
        table.append({"device": dev, "gpu": specs[dev].key, "family": fam, "n": len(c["pf"]),
                      "n_gpu_bound": len(c["pf_gb"]), "distribution": "OOD" if dev in OOD_DEVICES else "ID",
                      "public_fit_mape_pct": m(c["pf"]), "prior_mape_pct": m(c["prior"]),
                      "roofline_mape_pct": m(c["roof"]), "public_fit_gpu_bound_mape_pct": m(c["pf_gb"]),
                      "prior_gpu_bound_mape_pct": m(c["prior_gb"]), "n_outside_box": len(c["outside"]),
                      "shipped_mape_pct": m(c["shipped"]), "shipped_gpu_bound_mape_pct": m(c["shipped_gb"])})
    # NeuSight's grouping: mean APE over the kernels of each (distribution, family)
    agg = defaultdict(lambda: {k: [] for k in keys})
    for (dev, fam), c in cells.items():
        a = agg[("OOD" if dev in OOD_DEVICES else "ID", NS_GROUP[fam])]
        for key in a:
            a[key].extend(c[key])
    rows = list(csv.reader((NEUSIGHT / "summary" / "perop.csv").open()))
    cols = rows[1][1:]
    theirs = {}
    for r in rows[2:]:
        vals = r[1:1 + len(cols)]
        theirs[r[0]] = {("ID" if j < 5 else "OOD", cols[j]): float(v) for j, v in enumerate(vals) if v}
    grouped = []
    for (dist, grp), a in sorted(agg.items()):
        grouped.append({"distribution": dist, "family": grp, "n": len(a["pf"]), "n_gpu_bound": len(a["pf_gb"]),
                        "public_fit_mape_pct": m(a["pf"]), "prior_mape_pct": m(a["prior"]),
                        "our_roofline_mape_pct": m(a["roof"]), "public_fit_gpu_bound_mape_pct": m(a["pf_gb"]),
                        "prior_gpu_bound_mape_pct": m(a["prior_gb"]), "n_outside_box": len(a["outside"]),
                        "shipped_mape_pct": m(a["shipped"]), "shipped_gpu_bound_mape_pct": m(a["shipped_gb"]),
                        **{f"{name.lower().replace(' ', '_').replace('.', '')}_mape_pct": round(t[(dist, grp)], 2)
                           for name, t in theirs.items() if (dist, grp) in t}})
    return {"n": len(ks), "by_gpu_family": table, "neusight_grouping": grouped,
            "note": ("NeuSight's columns are their published per-op MAPE over all held-out kernels "
                     "(summary/perop.csv; 'ID' = held-out kernels on the 5 training GPUs, 'OOD' = on the A100 80GB, "
                     "H100 and L4). The H100 has held-out bmm and linear kernels only. wattlint predicts GPU time: "
                     "kernels timed near NeuSight's host-dispatch floor (< 1.5 x the floor of that op and GPU in "
                     "the training files; the lowest training floor of the op for GPUs without training files) "
                     "measure the launching CPU, so the GPU-bound columns are the fair ones; all-kernel columns are "
                     "shown beside them. 'roofline (ours)' = spec-sheet roofline with efficiency 1; 'prior' = the "
                     "physics prior of this checkout; 'shipped' = what an estimate uses: the model inside the box "
                     "of sizes its family was fitted on (card 'domain'), the prior outside it (n_outside_box "
                     "kernels; a GEMM plus the model's excess over the prior on the nearest in-box GEMM).")}


# ---- 2. NeuSight end-to-end OOD training rows ------------------------------------------------------------------

def _phase_times(graph, gpu, predictor, batch, precision, optimizer="adamw"):
    est = wattlint.estimate(graph, gpu=gpu, predictor=predictor, lint=False, steps=1, batch_size=batch,
                            precision=precision, optimizer=optimizer, pue=1.0, carbon_intensity=100.0)
    d = to_dict(est)
    ph = d["phases"]
    fb = ph.get("forward", {}).get("time_s", 0.0) + ph.get("backward", {}).get("time_s", 0.0)
    return fb, d


def _fb_flops(graph):
    return sum(r.flops for r in graph.records if r.phase.value in ("forward", "backward"))


def e2e_section():
    split = json.loads((PUBLIC / "splits.json").read_text())["neusight"]["test_e2e_ood_train_rows"]
    summ = {(r["model_name"], int(r["seqlen"]), int(r["batch"]), r["device"]): r
            for r in csv.DictReader((NEUSIGHT / "summary" / "summary.csv").open())
            if r["mode"] == "train" and r["option"] == ""}
    gpus = {r["neusight_name"]: r["wattlint_key"] for r in nd.gpu_table()}
    pfp, prior = public_predictor(), PriorPredictor()
    cache, rows, skipped = {}, [], []
    for row in split["rows"]:
        # the split's Switch rows were conditional: "skipped until wattlint traces MoE routing"; it does now
        # (wattlint.frontends.torch_moe), so they are evaluated as the protocol says (23 rows)
        moe_now = row["status"].startswith("skipped: Switch (MoE) until wattlint traces MoE")
        if row["status"] != "evaluate" and not moe_now:
            skipped.append({k: row[k] for k in ("model", "seq_len", "batch", "device", "status")})
            continue
        key = (row["model"], row["seq_len"], row["batch"])
        if key not in cache:
            t0 = time.time()
            cache[key] = analyze_config(str(NEUSIGHT / "model_configs" / f"{row['model']}.json"),
                                        micro_batch=row["batch"], seq_len=row["seq_len"], precision="fp32",
                                        attention="eager")
            print(f"  traced {key} in {time.time() - t0:.0f} s", flush=True)
        g = cache[key]
        gpu = resolve_gpu(gpus[row["device"]])[0]
        s = summ[(row["model"], row["seq_len"], row["batch"], row["device"])]
        meas = float(s["label_all_e2e_latency"]) / 1e3
        t_pf, d_pf = _phase_times(g, gpu, pfp, row["batch"], "fp32")
        t_pr, _ = _phase_times(g, gpu, prior, row["batch"], "fp32")
        t_nv = _fb_flops(g) / gpu.peak("fp32")
        t_ns = float(s["neusight_all_e2e_latency"]) / 1e3
        covered = sum(t for t, r in zip(_record_times(g, gpu, pfp, "fp32"), g.records)
                      if r.phase.value in ("forward", "backward") and pfp.covers(r, gpu, "fp32"))
        rows.append({"model": row["model"], "seq_len": row["seq_len"], "batch": row["batch"], "device": row["device"],
                     "gpu": gpu.key, "measured_ms": round(meas * 1e3, 2), "public_fit_ms": round(t_pf * 1e3, 2),
                     "prior_ms": round(t_pr * 1e3, 2), "naive_ms": round(t_nv * 1e3, 2),
                     "neusight_ms": round(t_ns * 1e3, 2),
                     "public_fit_covered_share": round(covered / t_pf, 4) if t_pf else 0.0,
                     "public_fit_err": signed(t_pf, meas), "prior_err": signed(t_pr, meas),
                     "naive_err": signed(t_nv, meas), "neusight_err": signed(t_ns, meas),
                     "neusight_published_err_pct": float(s["neusight_all_e2e_err"])})
    out = {"rows": rows, "skipped": skipped, "all": _e2e_summ(rows),
           "without_moe": _e2e_summ([r for r in rows if not r["model"].startswith("switch")])}
    for key in ("gpu", "model"):
        groups = defaultdict(list)
        for r in rows:
            groups[r[key]].append(r)
        out[f"by_{key}"] = {k: _e2e_summ(v) for k, v in sorted(groups.items())}
    return out


def _record_times(graph, gpu, predictor, precision):
    return predictor.predict(list(graph.records), gpu, precision)[0]


def _e2e_summ(rows):
    return {m: summary([r[f"{m}_err"] for r in rows]) for m in ("public_fit", "prior", "naive", "neusight")}


# ---- 3. DeepLearningExamples ---------------------------------------------------------------------------------------

PREC = {"FP32": "fp32", "TF32": "tf32", "mixed precision": "fp16"}


def _trace_module(build, batch, precision, optimizer, channels_last=False):
    """Trace a DLE model; ``channels_last``: model and input in NHWC memory format (meta tensors keep the strides,
    so the tracer tags the convolutions channels-last)."""
    import dle_models as D

    torch.manual_seed(0)
    model, make = D.BUILDERS[build]()
    x = make(batch)
    spec = TensorSpec("x", str(x.dtype).rsplit(".", 1)[-1], tuple(x.shape))
    if channels_last:
        model = model.to("meta").to(memory_format=torch.channels_last)
        x = torch.empty(x.shape, dtype=x.dtype, device="meta").to(memory_format=torch.channels_last)
    return trace(model, (x,), precision=precision, optimizer=optimizer, micro_batch=batch, inputs=(spec,),
                 source=build)


def dle_section():
    mapping = json.loads((PUBLIC / "dle_mapping.json").read_text())
    pfp, prior = public_predictor(), PriorPredictor()
    rows, cache = [], {}
    for m in mapping["models"]:
        opt = m["optimizer"].split()[0]
        for r in m["rows"]:
            gpu = resolve_gpu(r["gpu"])[0]
            fam = "a100" if gpu.key.startswith("a100") else "v100"
            for col, prec in PREC.items():
                if col not in r:
                    continue
                thr = float(r[col])
                if "batch" in r:
                    batch = int(r["batch"])
                else:
                    bp = m["batch_per_gpu"]
                    batch = int(bp.get(f"{fam}:{col}", bp.get("all", 0)))
                accum = int(r.get("grad_accumulation", 1))
                # the mapping's caveat "AMP runs use channels-last (NHWC)": those runs are traced channels-last
                cl = prec == "fp16" and any("channels-last" in c for c in m.get("caveats", []))
                key = (m["name"], batch, prec, opt, cl)
                if key not in cache:
                    t0 = time.time()
                    # the run's PyTorch (the mapping's torch_version, from the model's Dockerfile) decides which
                    # depthwise kernels ran: wattlint.framework. Gradients: traced freed (set_to_none), not zeroed as
                    # torch < 2.0's zero_grad() default would: the 1.10 row (QuartzNet) steps apex's FusedNovoGrad,
                    # whose zero_grad() sets them to None (set_grad_none=True, apex's default)
                    cache[key] = framework.apply(_trace_module(m["name"], batch, prec, opt, channels_last=cl),
                                                 m.get("torch_version"))
                    print(f"  traced {key} in {time.time() - t0:.0f} s", flush=True)
                g = cache[key]
                res = {}
                for name, pred in (("public_fit", pfp), ("prior", prior)):
                    est = wattlint.estimate(g, gpu=gpu, predictor=pred, lint=False, steps=1, batch_size=batch * accum,
                                            grad_accum=accum, precision=prec, optimizer=opt, pue=1.0,
                                            carbon_intensity=100.0)
                    res[name] = to_dict(est)["per_step"]["time_s"] / accum  # per micro-batch, optimizer amortised
                nkey = "fp16" if prec == "fp16" else prec
                meas = batch / thr
                naive = sum(r.flops for r in g.records) / gpu.peak(nkey)
                rows.append({"model": m["name"], "group": m["architecture_group"], "gpu": gpu.key, "gpu_family": fam,
                             "precision_column": col, "precision": prec, "channels_last": cl,
                             "class": "AMP" if prec == "fp16" else "FP32/TF32", "batch": batch,
                             "grad_accumulation": accum, "throughput": thr, "unit": m["throughput_unit"],
                             "measured_step_ms": round(meas * 1e3, 3),
                             "public_fit_step_ms": round(res["public_fit"] * 1e3, 3),
                             "prior_step_ms": round(res["prior"] * 1e3, 3), "naive_step_ms": round(naive * 1e3, 3),
                             "public_fit_err": signed(res["public_fit"], meas), "prior_err": signed(res["prior"], meas),
                             "naive_err": signed(naive, meas)})
    out = {"rows": rows, "skipped_models": mapping["skipped"]}
    groups = defaultdict(list)
    for r in rows:
        groups[(r["gpu_family"], r["class"])].append(r)
        groups[("all", r["class"])].append(r)
    out["by_gpu_and_class"] = {f"{a} {b}": {m: summary([r[f"{m}_err"] for r in v])
                                            for m in ("public_fit", "prior", "naive")}
                               for (a, b), v in sorted(groups.items())}
    # supplementary breakdown (not a replacement): QuartzNet's AMP rows ran a PyTorch whose fp16 depthwise dispatch
    # differs from the one wattlint prices (see the doc's "Where it misses")
    out["by_gpu_and_class_without_quartznet"] = {
        key: {m: summary([r[f"{m}_err"] for r in v if not r["model"].startswith("QuartzNet")])
              for m in ("public_fit", "prior", "naive")} for key, v in
        ((f"{a} {b}", v) for (a, b), v in sorted(groups.items()))}
    bym = defaultdict(list)
    for r in rows:
        bym[(r["model"], r["class"])].append(r)
    out["by_model_and_class"] = {f"{a} | {b}": {m: summary([r[f"{m}_err"] for r in v])
                                                for m in ("public_fit", "prior", "naive")}
                                 for (a, b), v in sorted(bym.items())}
    out["marginal_per_sample"] = _marginal(rows)
    return out


def _marginal(rows):
    """Per model x GPU family x precision with two or more batch sizes (grad accumulation 1): the measured step
    time's least-squares line in the batch, t = intercept + slope x batch, beside the predicted per-sample time at
    the largest batch. The slope is the marginal GPU cost of one more sample; the intercept is per-step time that
    does not grow with the batch."""
    groups = defaultdict(list)
    for r in rows:
        if r["grad_accumulation"] == 1:
            groups[(r["model"], r["gpu_family"], r["precision"])].append(r)
    out = []
    for (model, fam, prec), v in sorted(groups.items()):
        bs = sorted({r["batch"] for r in v})
        if len(bs) < 2:
            continue
        xs = [r["batch"] for r in v]
        ys = [r["measured_step_ms"] for r in v]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        big = max(v, key=lambda r: r["batch"])
        pred = big["public_fit_step_ms"] / big["batch"]
        out.append({"model": model, "gpu_family": fam, "precision": prec, "batches": bs, "n": len(v),
                    "measured_ms_per_sample": round(slope, 3), "measured_intercept_ms": round(my - slope * mx, 1),
                    "public_fit_ms_per_sample": round(pred, 3), "per_sample_err": signed(pred, slope)})
    return out


# ---- 4. Zeus energy, leave-one-GPU-out ------------------------------------------------------------------------------

def _fit_scale(rows, target="energy"):
    """The dynamic-power scale s minimising sum ln^2(measured / predicted), predicted = t (idle + s (P - idle))
    (target "energy", the first protocol) or idle + s (P - idle) against the measured average power ("power")."""
    if not rows:
        return 1.0
    lo, hi = 0.2, 3.0

    def loss(s):
        if target == "power":
            return sum(math.log(r["measured_avg_power_w"] / (r["idle"] + s * (r["p_pred"] - r["idle"]))) ** 2
                       for r in rows)
        return sum(math.log(r["e_meas"] / (r["t_pred"] * (r["idle"] + s * (r["p_pred"] - r["idle"])))) ** 2
                   for r in rows)
    for _ in range(80):  # golden-section search (convex enough on this bracket)
        a = hi - (hi - lo) / 1.618
        b = lo + (hi - lo) / 1.618
        if loss(a) < loss(b):
            hi = b
        else:
            lo = a
    return (lo + hi) / 2


def zeus_section():
    import prior_vs_public as pvp

    split = json.loads((PUBLIC / "splits.json").read_text())["zeus"]["rows"]
    # the eager per-op host cost of each held-out GPU: fitted on the OTHER three Zeus GPUs by
    # benchmarks/prior_vs_public.py (run it first); never the shipped default, which saw every Zeus GPU
    pvp_result = json.loads((ROOT / "benchmarks" / "results" / "prior_vs_public.json").read_text())
    host_fit = pvp_result["host_op_fit"]
    host_us = {g: v["host_op_us"] for g, v in host_fit["per_held_out_gpu"].items()}
    # likewise the in-job idle fraction of the GDDR boards (the database's value saw every Zeus GPU)
    idle_frac = {g: v["gddr_idle_fraction"] for g, v in pvp_result["idle_fit"]["per_held_out_gpu"].items()}
    # and one DataLoader worker's rate for the CIFAR-100 rows (each epoch's first batch: --loader-sample-time)
    loader_rate = {g: v["samples_per_s"] for g, v in pvp_result["loader_fit"]["per_held_out_gpu"].items()}
    pfp, prior = public_predictor(), PriorPredictor()
    rows = []
    meas = {}
    for tag in ("v100", "a40", "p100", "rtx6000"):
        for r in csv.DictReader((ZEUS / f"summary_power_{tag}.csv").open()):
            meas[(f"summary_power_{tag}.csv", r["dataset"], r["network"], int(r["batch_size"]), r["optimizer"],
                  float(r["power_limit"]))] = r
    for z in split:
        wk = (z["dataset"], z["network"])
        w = pvp.WORKLOADS[wk]
        b = z["batch_size"]
        opt = pvp.OPTIMIZER_MAP.get(z["optimizer"], "adam")
        gpu = resolve_gpu(z["gpu"])[0]
        if memory_kind(gpu) != "hbm":
            gpu = dataclasses.replace(gpu, idle_w=float(gddr_idle_w(gpu.tdp_w, idle_frac[gpu.key])))
        m = meas[(z["file"], z["dataset"], z["network"], b, z["optimizer"], z["power_limit_w"])]
        steps = math.ceil(w["samples"] / b)
        t_meas = float(m["time_per_epoch"])
        p_meas = float(m["average_power"])
        row = {"gpu": gpu.key, "workload": f"{wk[0]}/{wk[1]}", "batch_size": b, "optimizer": z["optimizer"],
               "measured_epoch_s": t_meas, "measured_avg_power_w": p_meas, "e_meas": t_meas * p_meas,
               "idle": gpu.idle_w, "host_op_us": host_us[gpu.key]}
        work = ({"dataset": w["samples"], "epochs": 1, "loader_sample_time": 1.0 / loader_rate[gpu.key]}
                if w.get("loader") else {"steps": 1})
        for name, pred in (("public_fit", pfp), ("prior", prior)):
            def price(g, pred=pred, gpu=gpu, b=b, w=w, opt=opt, work=work):
                return to_dict(wattlint.estimate(g, gpu=gpu, predictor=pred, lint=False, batch_size=b,
                                                 precision=pvp.run_precision(w["precision"], gpu),
                                                 optimizer=opt, pue=1.0, carbon_intensity=100.0,
                                                 host_op_time=host_us[gpu.key] * 1e-6, **work))
            # one trace, or the expected step over the batch's longest feature (SQuAD's dynamic padding)
            ps, doc, graph_flops = pvp.mixed_step(wk, w, b, opt, price)
            wait_s = doc["total"]["loader_wait_h"] * 3600.0
            row[f"{name}_epoch_s"] = steps * ps["time_s"] + wait_s
            row[f"{name}_epoch_j"] = steps * ps["gpu_energy_j"] + wait_s * gpu.idle_w
        flops = steps * graph_flops
        row["naive_epoch_s"] = flops / gpu.peak("fp32")
        row["naive_epoch_j"] = row["naive_epoch_s"] * gpu.tdp_w
        row["t_pred"] = row["public_fit_epoch_s"]
        row["p_pred"] = row["public_fit_epoch_j"] / row["public_fit_epoch_s"]
        rows.append(row)
    # leave-one-GPU-out dynamic power scale, fitted on the other GPUs' energy (first protocol) or average power
    scales, pscales = {}, {}
    for gk in sorted({r["gpu"] for r in rows}):
        others = [r for r in rows if r["gpu"] != gk]
        s, sp = _fit_scale(others, "energy"), _fit_scale(others, "power")
        scales[gk], pscales[gk] = s, sp
        for r in rows:
            if r["gpu"] == gk:
                r["public_fit_logo_epoch_j"] = r["t_pred"] * (r["idle"] + s * (r["p_pred"] - r["idle"]))
                r["public_fit_logo_power_epoch_j"] = r["t_pred"] * (r["idle"] + sp * (r["p_pred"] - r["idle"]))
    for r in rows:
        for name in ("public_fit", "prior", "naive"):
            r[f"{name}_time_err"] = signed(r[f"{name}_epoch_s"], r["measured_epoch_s"])
            r[f"{name}_energy_err"] = signed(r[f"{name}_epoch_j"], r["e_meas"])
        r["public_fit_logo_energy_err"] = signed(r["public_fit_logo_epoch_j"], r["e_meas"])
        r["public_fit_logo_power_energy_err"] = signed(r["public_fit_logo_power_epoch_j"], r["e_meas"])
        r["public_fit_power_err"] = signed(r["public_fit_epoch_j"] / r["public_fit_epoch_s"],
                                           r["measured_avg_power_w"])
    metrics = ("public_fit_time", "prior_time", "naive_time", "public_fit_energy", "public_fit_logo_energy",
               "public_fit_logo_power_energy", "prior_energy", "naive_energy", "public_fit_power")
    out = {"rows": rows, "logo_power_scale": scales, "logo_power_scale_power_objective": pscales,
           "protocol_note": ("public_fit_logo_energy: the scale fitted to the other GPUs' epoch ENERGY (the "
                             "protocol as first run); it absorbs their time errors into power. "
                             "public_fit_logo_power_energy: the scale fitted to the other GPUs' measured AVERAGE "
                             "POWER (added after the first results, reported beside, not instead)."),
           "all": {m: summary([r[f"{m}_err"] for r in rows]) for m in metrics}}
    groups = defaultdict(list)
    for r in rows:
        groups[(r["gpu"], r["workload"])].append(r)
        groups[("all", r["workload"])].append(r)
        groups[(r["gpu"], "all")].append(r)
    out["by_gpu_workload"] = {f"{a} | {b}": {m: summary([r[f"{m}_err"] for r in v]) for m in metrics}
                              for (a, b), v in sorted(groups.items())}
    return out


# ---- 5. light install: load + price without torch --------------------------------------------------------------

SPEED_CODE = """
import sys, time
t0 = time.perf_counter()
import wattlint
from wattlint.energy.public_fit import load_public_fit
p = load_public_fit()
t1 = time.perf_counter()
est = wattlint.estimate("examples/resnet50.onnx", gpu="h100", predictor=p, epochs=1, batch_size=256)
t2 = time.perf_counter()
est = wattlint.estimate("examples/resnet50.onnx", gpu="v100-pcie-32gb", predictor=p, epochs=1, batch_size=256,
                        precision="fp32")
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, "torch" in sys.modules, est.calibration)
"""


def speed_section():
    runs = []
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", SPEED_CODE], cwd=ROOT, capture_output=True, text=True,
                           env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
        a, b, c, torch_loaded, cal = r.stdout.split()
        runs.append({"import_and_load_s": float(a), "estimate_h100_amp_default_s": float(b),
                     "estimate_v100_fp32_s": float(c), "torch_imported": torch_loaded == "True", "calibration": cal})
    return {"what": ("python -c: import wattlint, load the public-fit card, then wattlint.estimate of "
                     "examples/resnet50.onnx (light path, no torch) with the public-fit predictor, on H100 (default "
                     "precision) and V100 (fp32: LightGBM is imported and evaluated); 3 runs on the shared 2-core "
                     "machine"), "runs": runs}


# ---- card, doc -------------------------------------------------------------------------------------------------

def update_card(res):
    card = json.loads(CARD.read_text())
    e = res.get("e2e", {}).get("all", {})
    held = {"source": "benchmarks/public_accuracy.py -> benchmarks/results/public_accuracy.json"}
    if e.get("public_fit"):
        held["selection_time_mape"] = e["public_fit"]["mape_pct"] / 100
        held["selection_prior_time_mape"] = e["prior"]["mape_pct"] / 100
        held["selection_rows"] = ("NeuSight summary.csv OOD training rows (A100 80GB, H100, L4; fp32 forward + "
                                  "backward), n = %d" % e["public_fit"]["n"])
        held["e2e_ood"] = e
    k = res.get("kernels")
    if k:
        held["kernels"] = k["neusight_grouping"]
    d = res.get("dle")
    if d:
        held["dle_step_time"] = d["by_gpu_and_class"]
    z = res.get("zeus")
    if z:
        held["zeus"] = z["all"]
        logs = [math.log(1 + r["public_fit_logo_energy_err"]) for r in z["rows"]]
        logs = sorted(-x for x in logs)  # ln(measured / predicted)
        card.setdefault("residuals", {})["energy"] = {
            "p5": logs[int(0.05 * (len(logs) - 1))], "p95": logs[int(math.ceil(0.95 * (len(logs) - 1)))],
            "method": ("5/95 % quantiles of ln(measured / predicted) epoch energy on the Zeus GPU-bound rows, each "
                       "predicted with the power scale fitted on the other three GPUs (leave-one-GPU-out)")}
    # step-level time band: every held-out row where the public-fit predictor priced a whole step
    steps = [-math.log(1 + r["public_fit_err"]) for r in (res.get("e2e") or {}).get("rows", [])]
    steps += [-math.log(1 + r["public_fit_err"]) for r in (res.get("dle") or {}).get("rows", [])]
    steps += [-math.log(1 + r["public_fit_time_err"]) for r in (res.get("zeus") or {}).get("rows", [])]
    if steps:
        steps.sort()
        res_card = card.setdefault("residuals", {})
        if "time_per_kernel" not in res_card and "time" in res_card:
            res_card["time_per_kernel"] = res_card["time"]
        res_card["time"] = {
            "p5": steps[int(0.05 * (len(steps) - 1))], "p95": steps[int(math.ceil(0.95 * (len(steps) - 1)))],
            "n": len(steps),
            "method": ("5/95 % quantiles of ln(measured / predicted) step time over every held-out row the public-fit "
                       "predictor priced whole (NeuSight OOD training rows, DLE 1-GPU rows, Zeus rows), including "
                       "the ops it leaves to the prior; the per-kernel leave-one-GPU-out band is time_per_kernel")}
    card["held_out"] = held
    CARD.write_text(json.dumps(card, indent=1) + "\n")


def _e2e_mape(res):
    pf = res.get("e2e", {}).get("all", {}).get("public_fit")
    return f"{pf['mape_pct']:.1f} %" if pf else "not evaluated"


def _fmt(s):
    return "—" if not s else f"{s['mape_pct']:.1f}"


def write_doc(res):
    L = ["# Public-fit accuracy (held-out data only)", "",
         "Written by `benchmarks/public_accuracy.py` from `benchmarks/results/public_accuracy.json`. Model: "
         "`src/wattlint/models/public-fit/` (fitted by `benchmarks/fit_public.py` on NeuSight's training kernels of "
         "five older GPUs: P4, P100, T4, V100, A100 40GB). Splits fixed before fitting: `benchmarks/public/`.", "",
         "Method. Per op family (mm — also 1x1 stride-1 convolutions —, bmm, 3x3 conv, elementwise, softmax, "
         "layer norm) a LightGBM model predicts "
         "ln(efficiency) against the GPU's FP32 roofline, max(FLOPs / FP32 peak, bytes / bandwidth), from "
         "hardware-normalised features computed on wattlint's own OpRecord (`wattlint.energy.public_fit.features`); "
         "time = roofline / efficiency + 4 us per kernel. Kernels that NeuSight timed at its host-dispatch floor "
         "are left out of the fit (they time the CPU). Ops the public data does not cover (tensor-core GEMMs and "
         "convolutions, grouped convolutions, attention kernels, batch norm, reductions, embeddings, losses, "
         "optimizer) keep the physics prior; so does every op outside the box of sizes its family was fitted on "
         "(card `domain`: per family the [min, max] over the training kernels of the sizes that describe its "
         "kernels: GEMMs FLOPs, bytes, b / m / n / k; element-wise FLOPs, bytes, elements; softmax / layer norm also "
         "row length and rows; a tree model holds its edge value flat beyond its data, e.g. NCF's "
         "1,048,576-row GEMMs against at most 8,192 measured rows; added 2026-12-05 after a first result, no "
         "constant fitted; a GEMM-like record outside the box (matmul, convolution) also carries the model's "
         "excess over the prior on the nearest GEMM inside the box, so its price is continuous at the edges). Power: the prior's per-op dynamic energy spread over the public-fit "
         "time, above idle, capped at the board power. Every figure below is on data held out of the fit: GPUs "
         "never seen (A100 80GB, H100, L4, and the DLE / Zeus GPUs) or kernels and architectures never seen.", ""]
    e = res.get("e2e")
    if e:
        a = e["all"]
        L += ["## NeuSight's protocol: out-of-distribution training steps (A100 80GB, H100, L4)", "",
              "Forward + backward time of one training step, FP32 (no TF32), eager attention; wattlint traces the "
              "Hugging Face configs on meta tensors and prices each op. "
              f"{len(e['rows'])} rows evaluated (the 4 Switch rows, conditional on MoE tracing in the split, are in: "
              f"MoE layers are traced at their routed cost), {len(e['skipped'])} skipped.", "",
              "| predictor | MAPE % | median % | worst % |", "|---|---|---|---|"]
        for m, label in (("public_fit", "wattlint public-fit"), ("prior", "wattlint prior (spec sheet)"),
                         ("naive", "naive FLOPs / FP32 peak"), ("neusight", "NeuSight (their predictions)")):
            s = a[m]
            L.append(f"| {label} | {s['mape_pct']:.1f} | {s['median_ape_pct']:.1f} | {s['worst_ape_pct']:.1f} |")
        w = e.get("without_moe")
        if w:
            L += ["", f"Without the 4 Switch rows (the 19 rows of the first evaluation): public-fit "
                  f"{w['public_fit']['mape_pct']:.1f} %, prior {w['prior']['mape_pct']:.1f} %, NeuSight "
                  f"{w['neusight']['mape_pct']:.1f} %."]
        L += ["", f"Target: MAPE ≤ {TARGETS['e2e_mape_pct']:.0f} %, goal below NeuSight's "
              f"{TARGETS['e2e_goal_pct']:.1f} % on the same rows.", "",
              "| GPU | public-fit | prior | naive | NeuSight |", "|---|---|---|---|---|"]
        for gk, s in e["by_gpu"].items():
            L.append(f"| {gk} | {_fmt(s['public_fit'])} | {_fmt(s['prior'])} | {_fmt(s['naive'])} | "
                     f"{_fmt(s['neusight'])} |")
        L += ["", "| model | public-fit | prior | naive | NeuSight |", "|---|---|---|---|---|"]
        for mk, s in e["by_model"].items():
            L.append(f"| {mk} | {_fmt(s['public_fit'])} | {_fmt(s['prior'])} | {_fmt(s['naive'])} | "
                     f"{_fmt(s['neusight'])} |")
        L += ["", "Per row (ms):", "", "| model | seq | batch | GPU | measured | public-fit | err % | prior | "
              "NeuSight | covered share |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in e["rows"]:
            L.append(f"| {r['model']} | {r['seq_len']} | {r['batch']} | {r['gpu']} | {r['measured_ms']:.1f} | "
                     f"{r['public_fit_ms']:.1f} | {100 * r['public_fit_err']:+.1f} | {r['prior_ms']:.1f} | "
                     f"{r['neusight_ms']:.1f} | {r['public_fit_covered_share']:.2f} |")
        L += ["", "'covered share': fraction of the predicted forward + backward time priced by the public-fit "
              "families (the rest — embeddings, losses, reductions — by the prior).", ""]
    k = res.get("kernels")
    if k:
        L += ["## Per-kernel held-out error (NeuSight kernels-test)", "",
              "Mean absolute percentage error per kernel in NeuSight's grouping, beside their published figures "
              "(`summary/perop.csv`, all kernels). wattlint predicts GPU time; 'GPU-bound' leaves out kernels timed "
              "at NeuSight's host-dispatch floor (see the JSON note).", "",
              "| split | family | n (GPU-bound) | public-fit GPU-bound | public-fit all | NeuSight all | "
              "roofline (theirs) | Habitat | Li et al. | prior GPU-bound | outside the box | shipped GPU-bound |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]

        def f(v):
            return "—" if v is None else f"{v:.1f}"
        for g in k["neusight_grouping"]:
            L.append(f"| {g['distribution']} | {g['family']} | {g['n']} ({g['n_gpu_bound']}) | "
                     f"{f(g['public_fit_gpu_bound_mape_pct'])} | {f(g['public_fit_mape_pct'])} | "
                     f"{f(g.get('neusight_mape_pct'))} | {f(g.get('roofline_mape_pct'))} | "
                     f"{f(g.get('habitat_mape_pct'))} | {f(g.get('li_et_al_mape_pct'))} | "
                     f"{f(g['prior_gpu_bound_mape_pct'])} | {g['n_outside_box']} | "
                     f"{f(g['shipped_gpu_bound_mape_pct'])} |")
        L += ["", "'outside the box': held-out kernels outside the sizes their family was fitted on (card `domain`); "
              "an estimate prices those by the prior (a GEMM: plus the model's excess over the prior on the nearest in-box GEMM), "
              "so 'shipped' = public-fit inside the box, that outside.", "",
              "Per GPU x family (MAPE %, GPU-bound kernels / all kernels):", "",
              "| GPU | family | n (GPU-bound) | public-fit | prior | outside the box | shipped |",
              "|---|---|---|---|---|---|---|"]
        for t in k["by_gpu_family"]:
            L.append(f"| {t['gpu']} ({t['distribution']}) | {t['family']} | {t['n']} ({t['n_gpu_bound']}) | "
                     f"{f(t['public_fit_gpu_bound_mape_pct'])} / {f(t['public_fit_mape_pct'])} | "
                     f"{f(t['prior_gpu_bound_mape_pct'])} / {f(t['prior_mape_pct'])} | {t['n_outside_box']} | "
                     f"{f(t['shipped_gpu_bound_mape_pct'])} / {f(t['shipped_mape_pct'])} |")
        L.append("")
    d = res.get("dle")
    if d:
        L += ["## DeepLearningExamples, 1 GPU, whole training step", "",
              "Step time = per-GPU batch / published throughput (tuned NVIDIA code). Public-fit prices FP32 "
              "CUDA-core GEMMs and memory-bound kernels; TF32/AMP tensor-core GEMMs and convolutions stay on the "
              "prior. Mapping: `benchmarks/public/dle_mapping.json`.", "",
              "| GPU | precision | n | public-fit | prior | naive |", "|---|---|---|---|---|---|"]
        for key, s in d["by_gpu_and_class"].items():
            gpu, cls = key.split(" ", 1)
            L.append(f"| {gpu} | {cls} | {s['public_fit']['n']} | {_fmt(s['public_fit'])} | {_fmt(s['prior'])} | "
                     f"{_fmt(s['naive'])} |")
        L += ["", "Supplementary, without QuartzNet (its AMP rows ran PyTorch's own depthwise kernels in fp16, which "
              "PyTorch >= 1.11 replaced by cuDNN's for stride-1 1-D convs, the path wattlint prices; see below):", "",
              "| GPU | precision | n | public-fit | prior |", "|---|---|---|---|---|"]
        for key, s in d["by_gpu_and_class_without_quartznet"].items():
            gpu, cls = key.split(" ", 1)
            if s["public_fit"]:
                L.append(f"| {gpu} | {cls} | {s['public_fit']['n']} | {_fmt(s['public_fit'])} | {_fmt(s['prior'])} |")
        L += ["", f"Target: ≤ {TARGETS['dle_mape_pct']:.0f} % per GPU and precision class.", "",
              "| model | class | public-fit | prior | naive |", "|---|---|---|---|---|"]
        for key, s in d["by_model_and_class"].items():
            mname, cls = key.split(" | ")
            L.append(f"| {mname} | {cls} | {_fmt(s['public_fit'])} | {_fmt(s['prior'])} | {_fmt(s['naive'])} |")
        if d.get("marginal_per_sample"):
            L += ["", "Marginal cost per sample (models measured at two or more batch sizes): least-squares line of the "
                  "measured step time in the batch (slope = GPU time of one more sample; intercept = per-step time "
                  "that does not grow with the batch) beside the predicted time per sample at the largest batch.", "",
                  "| model | GPU | precision | batches | measured ms / sample | measured intercept ms | "
                  "predicted ms / sample | err % |", "|---|---|---|---|---|---|---|---|"]
            for x in d["marginal_per_sample"]:
                L.append(f"| {x['model']} | {x['gpu_family']} | {x['precision']} | "
                         f"{', '.join(str(b) for b in x['batches'])} | {x['measured_ms_per_sample']:.2f} | "
                         f"{x['measured_intercept_ms']:.0f} | {x['public_fit_ms_per_sample']:.2f} | "
                         f"{100 * x['per_sample_err']:+.1f} |")
        L += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in d["skipped_models"].items()), ""]
    z = res.get("zeus")
    if z:
        a = z["all"]
        L += ["## Zeus GPU-bound rows: energy per epoch", "",
              "ShuffleNetV2 / CIFAR-100 and BERT-base / SQuAD at each GPU's maximum power limit (V100, A40, P100, "
              "Quadro RTX 6000). Time from the public-fit model (never fitted on Zeus); power from the prior's power "
              "model with one dynamic-power scale fitted leave-one-GPU-out (scale per held-out GPU, fitted on "
              "energy: " +
              ", ".join(f"{k} {v:.2f}" for k, v in z["logo_power_scale"].items()) + "; fitted on power: " +
              ", ".join(f"{k} {v:.2f}" for k, v in z["logo_power_scale_power_objective"].items()) + "). " +
              z["protocol_note"], "",
              "| quantity | MAPE % | median % | worst % |", "|---|---|---|---|"]
        for m, label in (("public_fit_logo_energy", "energy, public-fit + LOGO power scale (fitted on energy)"),
                         ("public_fit_logo_power_energy",
                          "energy, public-fit + LOGO power scale (fitted on power; added after first results)"),
                         ("public_fit_energy", "energy, public-fit, no Zeus fit"), ("prior_energy", "energy, prior"),
                         ("naive_energy", "energy, naive FLOPs/peak x TDP"), ("public_fit_time", "time, public-fit"),
                         ("prior_time", "time, prior"), ("naive_time", "time, naive"),
                         ("public_fit_power", "average power, public-fit (no Zeus fit)")):
            s = a[m]
            L.append(f"| {label} | {s['mape_pct']:.1f} | {s['median_ape_pct']:.1f} | {s['worst_ape_pct']:.1f} |")
        L += ["", f"Target: energy MAPE ≤ {TARGETS['zeus_energy_mape_pct']:.0f} % (leave-one-GPU-out).", "",
              "| GPU | workload | n | energy LOGO | energy prior | time public-fit | time prior |",
              "|---|---|---|---|---|---|---|"]
        for key, s in z["by_gpu_workload"].items():
            gk, wk = key.split(" | ")
            L.append(f"| {gk} | {wk} | {s['public_fit_time']['n']} | {_fmt(s['public_fit_logo_energy'])} | "
                     f"{_fmt(s['prior_energy'])} | {_fmt(s['public_fit_time'])} | {_fmt(s['prior_time'])} |")
        L.append("")
    sp = res.get("speed")
    if sp:
        best = {k: min(r[k] for r in sp["runs"]) for k in ("import_and_load_s", "estimate_h100_amp_default_s",
                                                             "estimate_v100_fp32_s")}
        L += ["## Light install", "", sp["what"] + ": best of 3 — import + load "
              f"{best['import_and_load_s']:.2f} s, first estimate (ONNX load, trace, price) on H100 "
              f"{best['estimate_h100_amp_default_s']:.2f} s, second estimate on V100 fp32 (LightGBM imported and "
              f"evaluated) {best['estimate_v100_fp32_s']:.2f} s; torch imported: "
              f"{any(r['torch_imported'] for r in sp['runs'])}.", ""]
    t = res.get("targets_missed")
    if t:
        L += ["## Targets", ""] + [f"- {x}" for x in t] + [""]
    L += ["## Where it misses, why, and what would close it", "",
          "- **DLE, tensor-core rows**: the public data is FP32 only, so TF32/AMP GEMMs and convolutions are priced "
          "by the prior (public-fit and prior columns are almost equal there). Issue 14 fixed three prior defects "
          "these rows exposed (docs/ENERGY_MODEL.md): PyTorch's own depthwise kernels (QuartzNet TF32) are priced "
          "at their published multiply-adds per SM clock instead of as bandwidth-bound; NCHW tensor-core "
          "convolutions pay cuDNN's NCHW <-> NHWC transposes (ResNet-50 / SE-ResNeXt TF32; the AMP CNN rows ran "
          "channels-last, as the mapping says, and are traced so); weight-gradient GEMMs that cannot fill the SMs "
          "use split-K (NCF).",
          "- **QuartzNet AMP (A100)**: PyTorch >= 1.11 sends fp16 stride-1 1-D depthwise convs to cuDNN "
          "(Convolution.cpp `use_cudnn_depthwise`, cuDNN >= 8.2, PyTorch PR #58749, merged Oct 2021), which "
          "wattlint prices as bandwidth-bound kernels; DLE's QuartzNet ran NGC 21.07 (PyTorch 1.10, its "
          "Dockerfile), whose own depthwise kernels ran fp16 at the same per-SM-clock cost as TF32 (the measured "
          "AMP speed-up over TF32 is only 1.12-1.14x). The mapping carries that version (`torch_version`, added "
          "after the first result, where these rows were -75 %) and the trace is priced as `--torch-version 1.10` "
          "prices any user's run. No published per-kernel figure for cuDNN's fp16 depthwise kernels with 33-87 "
          "tap 1-D filters exists to check the modern path.",
          "- **Jasper** (tensor-core rows too fast, V100 FP32 too slow): see the marginal-cost table. On the "
          "tensor-core rows the predicted time per sample is close to the measured marginal cost of one more "
          "sample, but the measured step time has a large intercept (per-step time that does not grow with the "
          "batch) that no per-op price contains (host, input pipeline or optimizer-side work: the system layer's "
          "business). On V100 FP32 the marginal cost per sample is below what the V100's FP32 peak allows for the "
          "direct convolution FLOPs wattlint counts, so cuDNN (benchmark mode) must run reduced-arithmetic "
          "(FFT-tiling) algorithms for the long dense 1-D filters (k = 11-29) in FP32, which the prior does not "
          "model (no published per-kernel figure); public-fit only covers 3x3 and 1x1 2-D convolutions.",
          "- **NCF AMP** (too slow): the trace applies torch.autocast (fp32 embeddings; fp32 -> fp16 casts of the "
          "1M-row activations forward and back, ~14 ms of the V100 prediction). If DLE's AMP mode ran the whole "
          "model in fp16 (apex O2), those casts do not exist: a mapping question, not a per-op price.",
          "- **Zeus energy**: the error is time, not power. ShuffleNetV2 at batch 8-128 runs 4-10x longer than its "
          "GPU work (CIFAR data loading / Python launch bound; average power 40-140 W), which no GPU-side model "
          "predicts; BERT-base rows are measured at ~79 % of the FP32 peak over the whole step, which suggests the "
          "runs used mixed precision (not recorded in the traces). The energy-fitted scale absorbs those time "
          "errors into power (scale ~1.9), hence worse than no Zeus fit; the power-fitted scale is the cleaner "
          "protocol. Closing it: the estimator's input-pipeline / launch-bound rule (system layer) and the run "
          "settings of the Zeus traces.",
          "- **Per-kernel**: the H100's held-out bmm kernels (46 % vs the prior's 19 %) and the L4's layer norm / "
          "softmax are extrapolations beyond every training GPU (132 SMs, 3.35 TB/s, 48 MB L2); the P4's held-out "
          "linear kernels are large shapes where the 75 W card throttles differently than in its training "
          f"kernels. Whole training steps average these out ({_e2e_mape(res)} end to end), single kernels do not.", ""]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(L) + "\n")


def _verdict(value, target):
    if value <= target:
        return "met"
    miss = value - target
    return f"MISSED by {miss:.2f} points" if miss < 0.1 else f"MISSED by {miss:.1f} points"


def targets(res):
    out = []
    e = res.get("e2e", {}).get("all", {}).get("public_fit")
    if e:
        out.append(f"NeuSight OOD training rows: public-fit MAPE {e['mape_pct']:.1f} % vs target "
                   f"{TARGETS['e2e_mape_pct']:.0f} % ({_verdict(e['mape_pct'], TARGETS['e2e_mape_pct'])}); "
                   f"goal < {TARGETS['e2e_goal_pct']:.1f} % (NeuSight): "
                   f"{'met' if e['mape_pct'] < TARGETS['e2e_goal_pct'] else 'not met'}")
    d = res.get("dle")
    if d:
        for key, s in d["by_gpu_and_class"].items():
            if key.startswith("all"):
                continue
            m = s["public_fit"]["mape_pct"]
            out.append(f"DLE {key}: public-fit MAPE {m:.1f} % vs target {TARGETS['dle_mape_pct']:.0f} % "
                       f"({_verdict(m, TARGETS['dle_mape_pct'])})")
    for key, label in (("public_fit_logo_energy", "scale fitted on energy"),
                       ("public_fit_logo_power_energy", "scale fitted on power")):
        z = res.get("zeus", {}).get("all", {}).get(key)
        if z:
            m = z["mape_pct"]
            out.append(f"Zeus energy (LOGO, {label}): MAPE {m:.1f} % vs target "
                       f"{TARGETS['zeus_energy_mape_pct']:.0f} % ({_verdict(m, TARGETS['zeus_energy_mape_pct'])})")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="kernels + NeuSight e2e rows only")
    ap.add_argument("--only", choices=("kernels", "e2e", "dle", "zeus", "speed"), action="append")
    a = ap.parse_args(argv)
    t0 = time.time()
    res = json.loads(OUT.read_text()) if OUT.is_file() and a.only else {}
    sections = a.only or (["kernels", "e2e"] if a.quick else ["kernels", "e2e", "dle", "zeus", "speed"])
    for name in sections:
        print(f"[{name}]", flush=True)
        res[name] = globals()[f"{name}_section"]()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    res["meta"] = {"schema": "wattlint.public-accuracy/1", "commit": commit, "torch": torch.__version__,
                   "model_card_version": json.loads(CARD.read_text()).get("version"),
                   "splits": "benchmarks/public/splits.json, benchmarks/public/dle_mapping.json",
                   "targets": TARGETS, "seconds": round(time.time() - t0, 1)}
    res["targets_missed"] = targets(res)
    OUT.write_text(json.dumps(res, indent=1, default=float) + "\n")
    update_card(res)
    write_doc(res)
    for line in res["targets_missed"]:
        print(line)
    print(f"wrote {OUT} and {DOC} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
