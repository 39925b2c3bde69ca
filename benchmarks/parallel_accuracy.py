"""Benchmark: large-model training under tensor / pipeline / data parallelism (issue 16).

Sections (each row estimated through ``wattlint.estimate`` with the layout flags a user would pass; the default
energy model of each GPU; nothing here is fitted except the one launch-overhead scalar of section 2b, for the
megatron stack its default host time per launched op, fitted on the section-2 train split, and the prior's
FA1_SLOWDOWN, fitted on section 3's non-held-out rows inside its published range, and HOPPER_GEMM_2023, fitted on
section 3's non-held-out H100 rows (refitted on every run: hopper_gemm_2023_fit), docs/ENERGY_MODEL.md):

1. neusight   NeuSight (ASPLOS'25) summary/summary.csv, the 11 distributed training rows (options dp4, tp4, pp4_1;
              A100-SXM4-40GB and H100 SXM): FP32 PyTorch 2.1, eager attention, global batch over 4 GPUs; pp4_1 = one
              micro-batch through 4 stages. Time compared: step time without the optimizer step (NeuSight's e2e
              latency is forward + backward + communication). Beside NeuSight's own prediction.
2. vtrain     vTrain (MICRO'24) ground truth, Megatron-DeepSpeed GPT on A100-SXM4-80GB (DGX A100: NVLink, 8 x 200
              Gbit/s HDR per node), bf16, full activation recompute (--recompute full: every one of vTrain's
              validation configs, config/validation/{single,multi}/*.json at the commit of SOURCE.md, has
              "use_checkpoint": true, Megatron-DeepSpeed's --checkpoint-activations; until 2026-12-04 this
              benchmark assumed no recompute), GPT-2 vocabulary (50,257, not padded), GELU tanh
              approximation as one kernel (Megatron's fused bias-GELU; HF "gelu_pytorch_tanh"): 1,440 single-node
              rows (2-8 GPUs) and 109 multi-node rows (up to 512 GPUs). Time compared: the whole iteration.
              Two training stacks: pytorch (the first result: the HF module under autocast, flash attention via
              SDPA) and megatron (--training-stack megatron, added after the first result: bf16 parameters, fused
              LayerNorm / bias-dropout-add / scale-mask-softmax / Adam, and Megatron's attention as it runs in
              Megatron-DeepSpeed by default and in vTrain's own model of it (VIA-Research/vTrain
              src/model/gpt_modeling.py): baddbmm QK^T, FusedScaleMaskSoftmax, dropout, bmm, i.e. --attention
              eager, no flash attention).
              The megatron stack's default host time per launched op (energy.system.MEGATRON_HOST_OP_S, 58 us;
              eager PyTorch 15 us) is itself a public fit on this section's train split (below), made jointly with
              the per-call latency on a grid of 17-110 us per op (2026-12-04: 17 / 35 / 42 / 46 / 50 / 54 / 58 / 65
              / 80 / 110 us gave train MAPE 19.5 / 16.3 / 14.6 / 13.8 / 12.9 / 12.1 / 11.8 / 13.3 / 23.4 / 53.4 %,
              each at its best per-call latency; 25 us at 58 us per op). So "unfitted" (defaults) rows include that
              one public-fit constant; the held-out figures ("defaults, held-out") are the honest ones.
   2b fitted  one scalar, --launch-overhead (seconds per tensor/pipeline-parallel communication call), fitted on a
              split fixed before fitting: single-node rows with index % 4 == 0 (360 rows) train, the other 1,080
              single-node rows and all 109 multi-node rows held out. The step time is linear in it, so each row is
              estimated twice (default latency and +1 ms) and the fit is a grid search of the train MAPE.
3. foundry    llm-foundry benchmark tables (216 rows), megatron stack (FSDP mixed_precision PURE: bf16 parameters
              for compute, fp32 sharded master; no per-matmul casts) beside the pytorch stack (first result): MPT decoders as GPT-2-shaped configs (d_model, n_heads,
              n_layers, expansion 4, vocab 50,368, exact GELU as MPT's nn.GELU, no dropout (MPT's defaults
              resid_pdrop = emb_pdrop = attn_pdrop = 0, llm-foundry config_defaults.py; set after the first
              result, which used GPT-2's 0.1); MPT has no biases, ALiBi and
              low-precision LayerNorm: stated differences), FSDP FULL_SHARD
              (SHARD_GRAD_OP = zero2), activation checkpointing as listed. MFU by llm-foundry's own formula from the
              predicted throughput (it is linear in throughput: MFU_pred = MFU_measured x tokens/s predicted /
              tokens/s measured). Target: within +-5 points on >= 80 % of BF16 rows; 13b / 70b rows held out
              (never used in a fit); FP8 rows reported separately. The PyTorch each table ran (FOUNDRY_TORCH: H100 and
              A100-80GB 2.1, one image; A100-40GB 1.13) is passed as --torch-version: FlashAttention-1 attention (flash-attn 1.0.x; added after
              the +10.1-point first result; prior constant FA1_SLOWDOWN fitted on the non-held-out rows,
              docs/PARALLEL.md "llm-foundry MFU"), and with it Hopper GEMMs at the 2023 stack's rate
              (HOPPER_GEMM_2023, added 2026-12-07 after 13 stops of a missed target: fitted on the 54 H100 BF16
              rows not held out, grid HOPPER_GRID, minimising their mean |MFU error|; the fit is rerun here).
4. llama2_70b Llama-2-70B on 2048 A100-80GB, TP 8 x PP 4 (sequence parallel), batch 1024 x 4096, 2T tokens, vs the
              published 1,720,320 GPU-hours (Touvron et al. 2023, Table 2); megatron stack (Meta's Megatron-style
              model- and sequence-parallel bf16 stack, Touvron et al. 2023a section 2.4) beside pytorch.

Naive baselines on every row: 6ND at 40 % MFU (6 x params x tokens / (GPUs x dense peak x 0.40)) and FLOPs/peak
(the traced step's FLOPs / (GPUs x dense peak)).

Data: ../shared/data/{neusight-asplos25 (MIT), vtrain-micro24 (MIT), llm-foundry-mfu (Apache-2.0)}: see each
folder's SOURCE.md / LICENSE; only derived error figures are written here.

Run: PYTHONPATH=src python benchmarks/parallel_accuracy.py [--section neusight|vtrain|foundry|llama|llama3|all]
     writes benchmarks/results/parallel_accuracy.json and docs/accuracy/parallel.md
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import wattlint  # noqa: E402
from wattlint.api import trace  # noqa: E402
from wattlint.hardware import resolve_gpu  # noqa: E402
from wattlint.types import Phase  # noqa: E402

from shared_data import DATA as SHARED  # noqa: E402 - the public data folder (one home)
DATA = SHARED
NEUSIGHT = DATA / "neusight-asplos25"
VTRAIN = DATA / "vtrain-micro24"
FOUNDRY = DATA / "llm-foundry-mfu"
OUT = ROOT / "benchmarks" / "results" / "parallel_accuracy.json"
DOC = ROOT / "docs" / "accuracy" / "parallel.md"
CACHE = ROOT / "benchmarks" / "results" / ".parallel_accuracy_sections"
TMP = ROOT / "benchmarks" / "results" / ".parallel_configs"

NEUSIGHT_GPUS = {"NVIDIA_A100-SXM4-40GB": "a100-sxm4-40gb", "NVIDIA_H100_80GB_HBM3": "h100-sxm5-80gb"}
FOUNDRY_GPUS = {"a100_40gb": "a100-sxm4-40gb", "a100_80gb": "a100-sxm4-80gb", "h100_80gb": "h100-sxm5-80gb"}
# the PyTorch each table ran (--torch-version): the H100 and the A100-80GB tables are one sweep on one image, every
# row's Image column mosaicml/pytorch:2.1.0_cu121-nightly20230827-python3.10-ubuntu20.04 (llm-foundry
# scripts/train/benchmarking/h100new.md, commit beb8dee6, whose rows are the README's; h100_benchmarks.sh's
# 2.0.1_cu118 image is the earlier internal sweep h100old.md, within 0-2.5 MFU points of it on the same configs; used
# here until 2026-12-07); the A100-40GB tables predate them (README: "TODO: Update tables with torch 2.0 after next
# Composer release"; submit_benchmarks.py's default image mosaicml/pytorch:1.13.1_cu117). Attention: MPT's attn_impl
# flash = the flash-attn 1.0.x package (one fused kernel, FlashAttention-1 generation), traced as --attention sdpa.
FOUNDRY_TORCH = {"a100_40gb": "1.13", "a100_80gb": "2.1", "h100_80gb": "2.1"}
NAIVE_MFU = 0.40
LLAMA2_70B_GPU_HOURS = 1_720_320
FIT_GRID_S = [i * 50e-6 for i in range(0, 101)]  # 0 .. 5 ms per call
PROBE_S = 1e-3


def signed(pred: float, meas: float) -> float:
    return (pred - meas) / meas * 100.0


def summ(errs: list[float]) -> dict:
    if not errs:
        return {"n": 0}
    a = [abs(e) for e in errs]
    return {"n": len(errs), "mape_pct": round(statistics.fmean(a), 2), "median_ape_pct": round(statistics.median(a), 2),
            "mean_signed_pct": round(statistics.fmean(errs), 2), "within_15_pct": sum(x <= 15 for x in a),
            "max_ape_pct": round(max(a), 1)}


def _config(name: str, cfg: dict) -> Path:
    TMP.mkdir(parents=True, exist_ok=True)
    p = TMP / f"{name}.json"
    p.write_text(json.dumps(cfg))
    return p


_traces: dict = {}


def traced(path: Path, opts: dict):
    key = (str(path), tuple(sorted(opts.items())))
    if key not in _traces:
        t0 = time.time()
        _traces[key] = trace(str(path), opts)
        print(f"  traced {path.name} {opts} in {time.time() - t0:.1f} s", flush=True)
    return _traces[key]


def naive_6nd(gpu, precision: str, gpus: int, tokens: float, full_params: int) -> float:
    """Step time of the 6ND-at-40 %-MFU baseline."""
    dtype = {"default": "fp32"}.get(precision, precision)
    return 6.0 * full_params * tokens / (gpus * gpu.peak(dtype) * NAIVE_MFU)


def step_flops_over_peak(est, precision: str) -> float:
    dtype = {"default": "fp32"}.get(precision, precision)
    return est.per_step.flops / est.plan.gpus / est.gpu.peak(dtype)


# ---- 1. NeuSight -------------------------------------------------------------------------------------------------

def neusight_section() -> dict:
    rows = []
    for r in csv.DictReader((NEUSIGHT / "summary" / "summary.csv").open()):
        opt = r["option"]
        if r["mode"] != "train" or not re.fullmatch(r"dp4|tp4|pp4_\d+", opt or ""):
            continue
        gpu = resolve_gpu(NEUSIGHT_GPUS[r["device"]])[0]
        batch, seq = int(r["batch"]), int(r["seqlen"])
        cfg = NEUSIGHT / "model_configs" / f"{r['model_name']}.json"
        lay = {"gpus": 4}
        if opt == "dp4":
            micro = batch // 4
        elif opt == "tp4":
            lay["tensor_parallel"] = 4
            micro = batch
        else:
            m = int(opt.split("_")[1])
            lay["pipeline_parallel"] = 4
            micro = batch // m
            lay["micro_batch_size"] = micro
        g = traced(cfg, {"batch_size": micro, "seq_len": seq, "precision": "fp32", "attention": "eager"})
        est = wattlint.estimate(g, gpu=gpu, lint=False, steps=1, batch_size=batch, seq_len=seq, precision="fp32",
                                pue=1.0, carbon_intensity=100.0, **lay)
        t = est.per_step.time_s - (est.phases["optimizer"].time_s if "optimizer" in est.phases else 0.0)
        meas = float(r["label_all_e2e_latency"]) / 1e3
        ns = float(r["neusight_all_e2e_latency"]) / 1e3
        full = est.graph.extra.get("parallel_full_params") or g.params
        six_nd = naive_6nd(gpu, "fp32", 4, batch * seq, full)
        fb_flops = sum(x.flops for x in g.records if x.phase in (Phase.FORWARD, Phase.BACKWARD)) * batch / micro
        fpk = fb_flops / (4 if opt != "pp4_1" else 1) / gpu.peak("fp32")
        rows.append({"model": r["model_name"], "seq_len": seq, "batch": batch, "device": r["device"],
                     "option": opt, "measured_ms": round(meas * 1e3, 2), "wattlint_ms": round(t * 1e3, 2),
                     "neusight_ms": round(ns * 1e3, 2), "naive_6nd_ms": round(six_nd * 1e3, 2),
                     "naive_flops_peak_ms": round(fpk * 1e3, 2), "wattlint_err": round(signed(t, meas), 2),
                     "neusight_err": round(signed(ns, meas), 2), "naive_6nd_err": round(signed(six_nd, meas), 2),
                     "naive_flops_peak_err": round(signed(fpk, meas), 2),
                     "phases_ms": {k: round(v.time_s * 1e3, 2) for k, v in est.phases.items()}})
    out = {"rows": rows}
    for k in ("wattlint", "neusight", "naive_6nd", "naive_flops_peak"):
        out[k] = summ([x[f"{k}_err"] for x in rows])
    for opt in ("dp4", "tp4", "pp4_1"):
        out[f"wattlint_{opt}"] = summ([x["wattlint_err"] for x in rows if x["option"] == opt])
    return out


# ---- 2. vTrain ---------------------------------------------------------------------------------------------------

def _gpt(h: int, a: int, layers: int, seq: int) -> Path:
    return _config(f"gpt_h{h}_a{a}_l{layers}_s{seq}", dict(
        model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=h, n_head=a, n_layer=layers,
        n_positions=seq, vocab_size=50257, n_inner=4 * h, activation_function="gelu_pytorch_tanh"))


def _vtrain_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def _vtrain_estimate(r: dict, launch: float | None, stack: str = "megatron"):
    h, a, layers, seq = (int(r[k]) for k in ("hidden size", "attention heads", "# layers", "sequence length"))
    gpus, tp, pp = int(r["# GPUs"]), int(r["tensor parallelism"]), int(r["pipeline parallelism"])
    batch, micro = int(r["global batch"]), int(r["micro batch"])
    opts = {"batch_size": micro, "seq_len": seq, "precision": "bf16"}
    if stack == "megatron":  # Megatron's attention: baddbmm + FusedScaleMaskSoftmax + dropout + bmm (no flash)
        opts["attention"] = "eager"
    g = traced(_gpt(h, a, layers, seq), opts)
    kw = dict(gpu="a100-sxm4-80gb", lint=False, steps=1, batch_size=batch, micro_batch_size=micro, seq_len=seq,
              precision="bf16", gpus=gpus, tensor_parallel=tp, pipeline_parallel=pp, pue=1.0,
              carbon_intensity=100.0, goodput=1.0, training_stack=stack, recompute="full")
    if launch is not None:
        kw["launch_overhead"] = launch
    return wattlint.estimate(g, **kw), g, batch * seq


def _vtrain_rows_eval(rows: list[dict], split_of, stack: str) -> list[dict]:
    out = []
    for i, r in enumerate(rows):
        est0, g, tokens = _vtrain_estimate(r, None, stack)
        est1, _, _ = _vtrain_estimate(r, PROBE_S, stack)
        meas = float(r["iteration time (ms)"]) / 1e3
        t0 = est0.per_step.time_s
        # the step is linear in the per-call latency: slope from the +1 ms probe (both links' calls move to it)
        est_lat0, _, _ = _vtrain_estimate(r, 0.0, stack)
        slope = (est1.per_step.time_s - est_lat0.per_step.time_s) / PROBE_S
        full = est0.graph.extra.get("parallel_full_params") or g.params
        six_nd = naive_6nd(est0.gpu, "bf16", int(r["# GPUs"]), tokens, full)
        fpk = step_flops_over_peak(est0, "bf16")
        out.append({"index": i, "split": split_of(i), "gpus": int(r["# GPUs"]), "tp": int(r["tensor parallelism"]),
                    "pp": int(r["pipeline parallelism"]), "dp": int(r["data parallelism"]),
                    "micro": int(r["micro batch"]), "batch": int(r["global batch"]), "hidden": int(r["hidden size"]),
                    "layers": int(r["# layers"]), "seq": int(r["sequence length"]),
                    "measured_ms": round(meas * 1e3, 3), "wattlint_ms": round(t0 * 1e3, 3),
                    "at_zero_latency_ms": round(est_lat0.per_step.time_s * 1e3, 4),
                    "calls_per_step": round(slope, 2), "naive_6nd_ms": round(six_nd * 1e3, 3),
                    "naive_flops_peak_ms": round(fpk * 1e3, 3),
                    "wattlint_err": round(signed(t0, meas), 2), "naive_6nd_err": round(signed(six_nd, meas), 2),
                    "naive_flops_peak_err": round(signed(fpk, meas), 2)})
    return out


def _fitted_err(row: dict, lat: float) -> float:
    pred = row["at_zero_latency_ms"] + row["calls_per_step"] * lat * 1e3
    return signed(pred, row["measured_ms"])


def vtrain_section() -> dict:
    """Both training stacks: ``pytorch`` (the first result: the HF module as traced under autocast) and
    ``megatron`` (what Megatron-DeepSpeed runs: bf16 parameters, fused kernels; the primary figures)."""
    single = _vtrain_rows(VTRAIN / "ground_truth_single.csv")
    multi = _vtrain_rows(VTRAIN / "ground_truth_multi.csv")
    out = {"primary_stack": "megatron"}
    for stack in ("pytorch", "megatron"):
        out[stack] = _vtrain_stack(single, multi, stack)
    before = {(name, r["index"]): r for name in ("single", "multi") for r in out["pytorch"][name].pop("rows")}
    for name in ("single", "multi"):
        for r in out["megatron"][name]["rows"]:
            b = before[(name, r["index"])]
            r["pytorch_err"], r["pytorch_fitted_err"] = b["wattlint_err"], b["fitted_err"]
    return out


def _layer_passes(r: dict) -> float:
    """Layer passes (forward + backward of one layer for one micro-batch) on the critical path of a 1F1B step: the
    stage's layers x (micro-batches + pipeline fill and drain)."""
    ga = r["batch"] // (r["dp"] * r["micro"])
    return r["layers"] / r["pp"] * (ga + r["pp"] - 1)


def _two_scalar_err(r: dict, lat: float, per_pass: float) -> float:
    pred = r["at_zero_latency_ms"] + r["calls_per_step"] * lat * 1e3 + _layer_passes(r) * per_pass * 1e3
    return signed(pred, r["measured_ms"])


def _diagnostic_fit(s_rows: list[dict], m_rows: list[dict]) -> dict:
    """Diagnostic only (not a product default): the per-call latency and a fixed time per layer pass, both fitted on
    the same train split, to size the per-layer host / framework cost that the per-call latency alone cannot absorb
    (it is a host-side cost, priced by the eager host model, not by the model-parallel one)."""
    train = [r for r in s_rows if r["split"] == "train"]
    grid = [(lat, c) for lat in [i * 25e-6 for i in range(41)] for c in [i * 50e-6 for i in range(61)]]
    lat, c = min(grid, key=lambda p: statistics.fmean(abs(_two_scalar_err(r, *p)) for r in train))
    held = [r for r in s_rows if r["split"] == "held_out"]
    out = {"latency_per_call_s": lat, "per_layer_pass_s": c,
           "fit": "grid 0-1 ms per call x 0-3 ms per layer pass, minimising the train-split MAPE",
           "train": summ([_two_scalar_err(r, lat, c) for r in train]),
           "single_held_out": summ([_two_scalar_err(r, lat, c) for r in held]),
           "multi_held_out": summ([_two_scalar_err(r, lat, c) for r in m_rows])}
    out["single_held_out_by_tp"] = {f"tp={t}": summ([_two_scalar_err(r, lat, c) for r in held if r["tp"] == t])
                                    for t in sorted({r["tp"] for r in held})}
    return out


def _vtrain_stack(single: list[dict], multi: list[dict], stack: str) -> dict:
    s_rows = _vtrain_rows_eval(single, lambda i: "train" if i % 4 == 0 else "held_out", stack)
    m_rows = _vtrain_rows_eval(multi, lambda i: "held_out", stack)
    train = [r for r in s_rows if r["split"] == "train"]
    best = min(FIT_GRID_S, key=lambda lat: statistics.fmean(abs(_fitted_err(r, lat)) for r in train))
    for r in s_rows + m_rows:
        r["fitted_err"] = round(_fitted_err(r, best), 2)
    out = {"fitted_launch_overhead_s": best,
           "fit": "grid 0-5 ms in 50 us steps, minimising the MAPE of the 360 train rows (single-node index % 4 == 0)"}
    for name, rows in (("single", s_rows), ("multi", m_rows)):
        held = [r for r in rows if r["split"] == "held_out"]
        sec = {"n": len(rows), "unfitted": summ([r["wattlint_err"] for r in rows]),
               "default_held_out": summ([r["wattlint_err"] for r in held]),
               "fitted_held_out": summ([r["fitted_err"] for r in held]),
               "naive_6nd": summ([r["naive_6nd_err"] for r in rows]),
               "naive_flops_peak": summ([r["naive_flops_peak_err"] for r in rows])}
        if name == "single":
            sec["fitted_train"] = summ([r["fitted_err"] for r in rows if r["split"] == "train"])
        by = {}
        for key in ("tp", "pp", "gpus"):
            for v in sorted({r[key] for r in rows}):
                sel = [r for r in rows if r[key] == v]
                by[f"{key}={v}"] = {"unfitted": summ([r["wattlint_err"] for r in sel]),
                                    "fitted_held_out": summ([r["fitted_err"] for r in sel
                                                             if r["split"] == "held_out"])}
        sec["by"] = by
        sec["rows"] = rows
        out[name] = sec
    out["diagnostic_two_scalar"] = _diagnostic_fit(s_rows, m_rows)
    return out


# ---- 3. llm-foundry ----------------------------------------------------------------------------------------------

def _mpt(size: str, seq: int) -> Path:
    text = (FOUNDRY / "model_yamls" / f"mpt-{size}.yaml").read_text()
    model = text.split("\nmodel:", 1)[1]

    def num(key):
        return int(re.search(rf"^\s+{key}:\s*(\d+)", model, re.M).group(1))

    d, heads, layers, exp = num("d_model"), num("n_heads"), num("n_layers"), num("expansion_ratio")
    vocab = num("vocab_size")
    return _config(f"mpt_{size}_s{seq}", dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=d,
                                               n_head=heads, n_layer=layers, n_inner=exp * d, vocab_size=vocab,
                                               n_positions=seq, activation_function="gelu", resid_pdrop=0.0,
                                               embd_pdrop=0.0, attn_pdrop=0.0))


def _foundry_inputs():
    """Each llm-foundry CSV row with what estimating it takes: (row, traced graph, estimate kwargs), or (row, None,
    why skipped)."""
    for r in csv.DictReader((FOUNDRY / "llmfoundry_benchmark_mfu.csv").open()):
        size, seq, gpus = r["Model"], int(r["SeqLen (T)"]), int(r["# GPUs"])
        micro, accum, batch = int(r["MicroBatchSize"]), int(r["GradAccum"]), int(r["GlobalBatchSize"])
        prec = "fp8" if "fp8" in r["Precision"] else "bf16"
        ckpt = r["Activation Checkpointing"] == "True"
        sharding = "zero2" if r["Sharding Strategy"] == "SHARD_GRAD_OP" else "fsdp"
        gpu = resolve_gpu(FOUNDRY_GPUS[r["GPU"]])[0]
        if batch != micro * gpus * accum:
            yield r, None, "skipped: global batch != micro x gpus x accum"
            continue
        opts = {"batch_size": micro, "seq_len": seq, "precision": prec, "attention": "sdpa",
                "torch_version": FOUNDRY_TORCH[r["GPU"]]}
        if ckpt:
            opts["activation_checkpointing"] = True
        g = traced(_mpt(size, seq), opts)
        kw = dict(gpu=gpu, lint=False, steps=1, batch_size=batch, grad_accum=accum, gpus=gpus, seq_len=seq,
                  precision=prec, sharding=sharding, activation_checkpointing=ckpt, pue=1.0, carbon_intensity=100.0,
                  goodput=1.0, loss_impl="fused")  # llm-foundry's default loss_fn: flash-attn's fused cross-entropy
        yield r, g, kw


def _foundry_points(r: dict, est) -> float:
    """Predicted minus measured MFU (llm-foundry's formula, linear in throughput), in points."""
    batch, seq = int(r["GlobalBatchSize"]), int(r["SeqLen (T)"])
    return float(r["MFU"]) * (batch * seq / est.per_step.time_s) / float(r["Throughput (T/s)"]) - float(r["MFU"])


# The grid of HOPPER_GEMM_2023 (wattlint.energy.prior), fixed before the fit of 2026-12-07: 0.01 steps where the
# diagnostics put the answer (docs/PARALLEL.md: non-attention time 1.3x on the 2023 H100 stack), 0.05 above. (A first
# form of the rule, a factor on the efficiency before the power limit, fitted 0.67: 182 / 209 rows within 5 points,
# held-out 13b / 70b 26 / 35; replaced by the achieved-rate form, which pytorch/pytorch#100850's measurement is of,
# before landing: 181 / 209, 25 / 35. Both move the FP8 / BF16 speed-up from 4.6 to ~9.8 % MAPE.)
HOPPER_GRID = tuple(round(0.60 + 0.01 * i, 2) for i in range(21)) + (0.85, 0.90, 0.95, 1.00)


def hopper_gemm_fit() -> dict:
    """Refit ``prior.HOPPER_GEMM_2023`` on the llm-foundry H100 BF16 rows that are not held out (the 13b / 70b rows
    are never estimated here): the megatron stack's mean |MFU error| per grid value; the shipped value is reported
    beside the argmin (ties go to the larger value: the smaller change to the prior)."""
    from wattlint.energy import prior

    train = [(r, g, kw) for r, g, kw in _foundry_inputs() if g is not None and r["GPU"] == "h100_80gb"
             and kw["precision"] == "bf16" and r["Model"] not in ("13b", "70b")]
    shipped, grid = prior.HOPPER_GEMM_2023, {}
    try:
        for k in HOPPER_GRID:
            prior.HOPPER_GEMM_2023 = k
            pts = [_foundry_points(r, wattlint.estimate(g, training_stack="megatron", **kw)) for r, g, kw in train]
            grid[f"{k:.2f}"] = {"mean_abs_points": round(statistics.fmean(abs(p) for p in pts), 3),
                                "within_5_points": sum(abs(p) <= 5 for p in pts)}
    finally:
        prior.HOPPER_GEMM_2023 = shipped
    best = min(grid, key=lambda k: (grid[k]["mean_abs_points"], -float(k)))
    return {"rows": len(train), "objective": "mean |MFU points| of the megatron stack, H100 BF16, not held out",
            "grid": grid, "argmin": float(best), "shipped": shipped}


def foundry_section() -> dict:
    rows = []
    for r, g, kw in _foundry_inputs():
        size, seq, gpus = r["Model"], int(r["SeqLen (T)"]), int(r["# GPUs"])
        micro, accum, batch = int(r["MicroBatchSize"]), int(r["GradAccum"]), int(r["GlobalBatchSize"])
        if g is None:
            rows.append({"model": size, "status": kw})
            continue
        prec, ckpt, gpu = kw["precision"], kw["activation_checkpointing"], kw["gpu"]
        est = wattlint.estimate(g, training_stack="megatron", **kw)
        est_py = wattlint.estimate(g, training_stack="pytorch", **kw)
        tps_pred = batch * seq / est.per_step.time_s
        tps_py = batch * seq / est_py.per_step.time_s
        tps_meas = float(r["Throughput (T/s)"])
        mfu_meas = float(r["MFU"])
        mfu_pred = mfu_meas * tps_pred / tps_meas
        mfu_py = mfu_meas * tps_py / tps_meas
        n = int(r["NumParams"])
        peak = gpu.peak(prec)
        # the naive 6ND@40 % throughput expressed in llm-foundry's MFU (6N + attention) for a like-for-like figure
        tps_naive = NAIVE_MFU * gpus * peak / (6.0 * n)
        mfu_naive = mfu_meas * tps_naive / tps_meas
        fpk_step = step_flops_over_peak(est, prec)
        mfu_fpk = mfu_meas * (batch * seq / fpk_step) / tps_meas
        rows.append({"model": size, "seq_len": seq, "gpus": gpus, "gpu": r["GPU"], "precision": prec,
                     "activation_checkpointing": ckpt, "micro": micro, "accum": accum, "section": r["section"],
                     "held_out": size in ("13b", "70b"), "mfu_measured": mfu_meas, "mfu_wattlint": round(mfu_pred, 2),
                     "mfu_naive_6nd": round(mfu_naive, 2), "mfu_naive_flops_peak": round(mfu_fpk, 2),
                     "points_wattlint": round(mfu_pred - mfu_meas, 2),
                     "mfu_wattlint_pytorch": round(mfu_py, 2), "points_wattlint_pytorch": round(mfu_py - mfu_meas, 2),
                     "tokens_s_err_pytorch": round(signed(tps_py, tps_meas), 2),
                     "points_naive_6nd": round(mfu_naive - mfu_meas, 2),
                     "points_naive_flops_peak": round(mfu_fpk - mfu_meas, 2),
                     "tokens_s_err": round(signed(tps_pred, tps_meas), 2),
                     # predicted peak memory per GPU / the GPU's memory (megatron stack): the rows still missed are
                     # mostly the fullest GPUs (docs/PARALLEL.md, "llm-foundry MFU")
                     "memory_fraction": round(est.memory.peak_bytes_per_gpu / est.memory.gpu_memory_bytes, 3)})
    ok = [r for r in rows if "status" not in r]

    def pts(sel, key):
        a = [abs(r[key]) for r in sel]
        return {"n": len(sel), "within_5_points": sum(x <= 5 for x in a),
                "share_within_5_points_pct": round(100.0 * sum(x <= 5 for x in a) / len(a), 1) if a else None,
                "mean_abs_points": round(statistics.fmean(a), 2) if a else None,
                "mean_signed_points": round(statistics.fmean(r[key] for r in sel), 2) if sel else None}

    out = {"rows": rows}
    groups = {"bf16_all": [r for r in ok if r["precision"] == "bf16"],
              "bf16_not_held_out": [r for r in ok if r["precision"] == "bf16" and not r["held_out"]],
              "bf16_held_out_13b_70b": [r for r in ok if r["precision"] == "bf16" and r["held_out"]],
              "fp8": [r for r in ok if r["precision"] == "fp8"]}
    for gname in ("a100_40gb", "a100_80gb", "h100_80gb"):
        groups[f"bf16_{gname}"] = [r for r in ok if r["precision"] == "bf16" and r["gpu"] == gname]
    bf16 = groups["bf16_all"]
    out["bf16_by_memory_fraction"] = {
        "lt_0.9": pts([r for r in bf16 if r["memory_fraction"] < 0.9], "points_wattlint"),
        "0.9_to_1.1": pts([r for r in bf16 if 0.9 <= r["memory_fraction"] < 1.1], "points_wattlint"),
        "ge_1.1": pts([r for r in bf16 if r["memory_fraction"] >= 1.1], "points_wattlint")}
    for name, sel in groups.items():
        out[name] = {k: pts(sel, f"points_{k}") for k in ("wattlint", "wattlint_pytorch", "naive_6nd",
                                                           "naive_flops_peak")}
        out[name]["tokens_s"] = summ([r["tokens_s_err"] for r in sel])
        out[name]["tokens_s_pytorch"] = summ([r["tokens_s_err_pytorch"] for r in sel])
    out["fp8_over_bf16"] = fp8_speedup_pairs(ok)
    out["hopper_gemm_2023_fit"] = hopper_gemm_fit()
    return out


def fp8_speedup_pairs(ok: list[dict]) -> dict:
    """What a user turning FP8 on wants: the FP8 / BF16 tokens-per-second ratio of one configuration. The H100
    tables have FP8 and BF16 rows of the same model, sequence length, GPU count, micro-batch and checkpointing;
    tokens/s = MFU x that precision's peak x GPUs / FLOPs per token, so the ratio is 2 x MFU_fp8 / MFU_bf16 (FP8's
    dense peak is twice BF16's on the H100), measured and predicted."""
    def key(r):
        return (r["gpu"], r["model"], r["seq_len"], r["gpus"], r["micro"], r["activation_checkpointing"])
    bf16 = {key(r): r for r in ok if r["precision"] == "bf16"}
    pairs = []
    for r in ok:
        b = bf16.get(key(r)) if r["precision"] == "fp8" else None
        if b is None:
            continue
        meas = 2.0 * r["mfu_measured"] / b["mfu_measured"]
        row = {"model": r["model"], "seq_len": r["seq_len"], "gpus": r["gpus"], "micro": r["micro"],
               "measured": round(meas, 3)}
        for stack, col in (("wattlint", "mfu_wattlint"), ("wattlint_pytorch", "mfu_wattlint_pytorch")):
            pred = 2.0 * r[col] / b[col]
            row[stack] = round(pred, 3)
            row[f"{stack}_err_pct"] = round(signed(pred, meas), 1)
        pairs.append(row)
    return {"pairs": pairs, **{f"{s}_mape_pct": round(statistics.fmean(abs(p[f"{s}_err_pct"]) for p in pairs), 1)
                               for s in ("wattlint", "wattlint_pytorch") if pairs}}


# ---- 4. Llama-2-70B ----------------------------------------------------------------------------------------------

def llama_section() -> dict:
    cfg = ROOT / "examples" / "configs" / "llama2-70b.json"
    out = {"primary_stack": "megatron"}
    for stack, goodput in (("megatron", None), ("megatron", 1.0), ("pytorch", None), ("pytorch", 1.0)):
        kw = dict(gpu="a100-sxm4-80gb", gpus=2048, tensor_parallel=8, pipeline_parallel=4, sequence_parallel=True,
                  batch_size=1024, micro_batch_size=1, seq_len=4096, tokens=2e12, precision="bf16", lint=False,
                  training_stack=stack)
        if goodput is not None:
            kw["goodput"] = goodput
        e = wattlint.estimate(str(cfg), **kw)
        key = ("default_goodput" if goodput is None else "goodput_1") + ("" if stack == "megatron" else "_pytorch")
        full = e.graph.extra["parallel_full_params"]
        six_nd_h = 6.0 * full * 2e12 / (e.gpu.peak("bf16") * NAIVE_MFU) / 3600.0
        out[key] = {"stack": stack, "goodput": e.total.goodput, "gpu_hours": round(e.total.gpu_hours),
                    "ratio_to_published": round(e.total.gpu_hours / LLAMA2_70B_GPU_HOURS, 3),
                    "step_s": round(e.per_step.time_s, 3), "memory_gib": round(e.memory.peak_bytes_per_gpu / 2**30, 1),
                    "fits": e.memory.fits, "mfu_pct": round(e.utilization.mfu * 100, 1),
                    "hfu_pct": round(e.utilization.hfu * 100, 1),
                    "tokens_s_gpu": round(e.utilization.tokens_per_s_per_gpu),
                    "phases_s": {k: round(v.time_s, 3) for k, v in e.phases.items()},
                    "memory_breakdown_gib": {k: round(v / 2**30, 2) for k, v in e.memory.breakdown.items()},
                    "naive_6nd_40pct_gpu_hours": round(six_nd_h),
                    "naive_6nd_ratio": round(six_nd_h / LLAMA2_70B_GPU_HOURS, 3)}
    out["published_gpu_hours"] = LLAMA2_70B_GPU_HOURS
    out["source"] = "Touvron et al. 2023 (Llama 2), Table 2: 1,720,320 GPU-hours for 70B on A100-80GB, 2T tokens"
    return out


# Llama 3 405B (Dubey et al. 2024, "The Llama 3 Herd of Models"): architecture (Table 3: 126 layers, model dimension
# 16,384, FFN 53,248, 128 heads, 8 key/value heads; vocabulary 128,256 as in the released config.json) and the
# pre-training layouts of Table 4 on H100-80GB (700 W), batch 16M tokens of 8,192: GPUs, TP, CP, PP, DP, batch per DP,
# published TFLOPs/GPU and BF16 MFU (also on Balaji, "Herding Llamas", SC'24). The third row is the long-context
# stage: context parallel 16 at 131,072 tokens (--context-parallel, added after the first result, which skipped it).
LLAMA3_405B = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=16384, intermediate_size=53248,
                   num_attention_heads=128, num_key_value_heads=8, num_hidden_layers=126, vocab_size=128256,
                   max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False)
LLAMA3_ROWS = ((8192, 8, 1, 16, 64, 8192, 32, 430, 43), (16384, 8, 1, 16, 128, 8192, 16, 400, 41),
               (16384, 8, 16, 16, 8, 131072, 16, 380, 38))
LLAMA3_VPP = (1, 2, 4, 7)  # the paper does not give its interleaving degree: swept (7 = the 7-block outer stages)


def llama3_section() -> dict:
    """Llama 3 405B pre-training on 8,192 / 16,384 H100s (evaluation only, nothing fitted): predicted model TFLOPs per
    GPU and MFU beside the published ones, per interleaving degree V (not published); micro-batch 1 and sequence
    parallelism assumed (both Megatron-style defaults for this layout); the data-parallel optimizer sharding Meta used
    (FSDP) changes memory, not the compute this compares."""
    import tempfile

    d = Path(tempfile.mkdtemp())
    cfg = d / "config.json"
    cfg.write_text(json.dumps(LLAMA3_405B))
    rows = []
    for gpus, tp, cp, pp, dp, seq, per_dp, tflops, mfu in LLAMA3_ROWS:
        row = {"gpus": gpus, "tp": tp, "cp": cp, "pp": pp, "dp": dp, "seq_len": seq, "batch_per_dp": per_dp,
               "published_tflops_per_gpu": tflops, "published_mfu_pct": mfu}
        preds = {}
        for v in LLAMA3_VPP:
            e = wattlint.estimate(str(cfg), gpu="h100-sxm5-80gb", gpus=gpus, tensor_parallel=tp, pipeline_parallel=pp,
                                  context_parallel=cp, virtual_pipeline_stages=v, sequence_parallel=True,
                                  batch_size=per_dp * dp,
                                  micro_batch_size=1, seq_len=seq, precision="bf16", steps=1, lint=False,
                                  training_stack="megatron", goodput=1.0)
            u = e.utilization
            # the same throughput in the causal convention (attention counted over the s(s+1)/2 pairs computed):
            # (6N + 6 L h s) / (6N + 12 L h s) of the full-square figure
            n6 = 6.0 * e.graph.extra["parallel_full_params"]
            att = 12.0 * LLAMA3_405B["num_hidden_layers"] * LLAMA3_405B["hidden_size"] * seq
            causal = (n6 + att / 2) / (n6 + att)
            tf = u.mfu * e.gpu.peak("bf16") / 1e12
            preds[str(v)] = {"mfu_pct": round(u.mfu * 100, 1),
                             "tflops_per_gpu": round(tf),
                             "ratio_to_published": round(tf / tflops, 3),
                             "ratio_to_published_causal_convention": round(tf * causal / tflops, 3),
                             "bubble_s": round(e.phases["pipeline_bubble"].time_s, 2),
                             "step_s": round(e.per_step.time_s, 2)}
        row["predicted_by_vpp"] = preds
        rows.append(row)
    done = [r for r in rows if "predicted_by_vpp" in r and r["cp"] == 1]
    ratio = {}
    if len(done) == 2:
        for v in LLAMA3_VPP:
            a, b = (r["predicted_by_vpp"][str(v)]["tflops_per_gpu"] for r in done)
            ratio[str(v)] = round(b / a, 3)
    return {"rows": rows, "predicted_16k_over_8k_by_vpp": ratio,
            "published_16k_over_8k": round(done[1]["published_tflops_per_gpu"] / done[0]["published_tflops_per_gpu"], 3)
            if len(done) == 2 else None,
            "source": "Dubey et al. 2024 (The Llama 3 Herd of Models), Tables 3 and 4; H100-80GB SXM, BF16",
            "convention": "wattlint MFU (6N + 12 L h s per token, the full s x s attention square) x dense bf16 peak; "
                          "the paper's FLOP convention is not stated: counting causal attention as half the square "
                          "lowers our figures by ~4 % at 8,192 tokens and ~29 % at 131,072 (both ratios are given for "
                          "the long-context row)"}


def _fmt(sm: dict) -> str:
    if not sm or not sm.get("n"):
        return "n/a"
    return (f"{sm['mape_pct']:.1f} % (median {sm['median_ape_pct']:.1f} %, signed {sm['mean_signed_pct']:+.1f} %, "
            f"{sm['within_15_pct']}/{sm['n']} within 15 %)")


def report(res: dict) -> str:
    L = ["# Accuracy: large-model parallelism (issue 16)", "",
         "Generated by `benchmarks/parallel_accuracy.py` from `benchmarks/results/parallel_accuracy.json`; method in the "
         "script's docstring and [../PARALLEL.md](../PARALLEL.md). Errors are (predicted - measured) / measured. "
         "Naive baselines: **6ND@40 %** = 6 x params x tokens / (GPUs x dense peak x 0.40); **FLOPs/peak** = the "
         "traced step's FLOPs / (GPUs x dense peak). Data licences: NeuSight MIT, vTrain MIT, llm-foundry Apache-2.0 "
         "(github.com/sitar-lab/NeuSight, github.com/VIA-Research/vTrain, github.com/mosaicml/llm-foundry; licence "
         "texts in `benchmarks/public/licences/`); only derived error figures are stored here.", ""]
    ns = res.get("neusight")
    if ns:
        L += ["## 1. NeuSight distributed training rows (target: each within 15 %)", "",
              "11 rows of NeuSight's `summary/summary.csv` with options dp4, tp4, pp4_1 (A100-SXM4-40GB, H100 SXM; FP32 "
              "PyTorch 2.1, eager attention, global batch over 4 GPUs; pp4_1 = one micro-batch through 4 stages). "
              "Compared: the step without the optimizer update. Nothing fitted.", "",
              "| predictor | MAPE |", "|---|---|",
              f"| wattlint | {_fmt(ns['wattlint'])} |", f"| NeuSight (their prediction) | {_fmt(ns['neusight'])} |",
              f"| 6ND@40 % | {_fmt(ns['naive_6nd'])} |", f"| FLOPs/peak | {_fmt(ns['naive_flops_peak'])} |",
              f"| wattlint dp4 / tp4 / pp4_1 | {ns['wattlint_dp4']['mape_pct']:.1f} / {ns['wattlint_tp4']['mape_pct']:.1f}"
              f" / {ns['wattlint_pp4_1']['mape_pct']:.1f} % |", "",
              "| model | batch | GPU | option | measured ms | wattlint ms | error | NeuSight error |",
              "|---|---|---|---|---|---|---|---|"]
        L += [f"| {r['model']} | {r['batch']} | {r['device']} | {r['option']} | {r['measured_ms']:.1f} | "
              f"{r['wattlint_ms']:.1f} | {r['wattlint_err']:+.1f} % | {r['neusight_err']:+.1f} % |" for r in ns["rows"]]
        L.append("")
    vt = res.get("vtrain")
    if vt:
        mg, py = vt["megatron"], vt["pytorch"]
        L += ["## 2. vTrain Megatron-DeepSpeed iteration times (target: MAPE <= 15 % single-node and multi-node)", "",
              "Megatron GPT models on A100-SXM4-80GB (DGX A100 nodes), bf16, GPT-2 vocabulary, full activation "
              "recompute (every vTrain validation config has use_checkpoint: true); each row "
              "with its TP / PP / DP degrees, micro and global batch. Two training stacks: **pytorch** (the first "
              "result: the Hugging Face module as traced under autocast: fp32 parameters, per-matmul casts, unfused "
              "fp32 element-wise kernels) and **megatron** (`--training-stack megatron`: bf16 parameters with an fp32 "
              "master copy, no casts, fused LayerNorm, fused optimizer; what Megatron-DeepSpeed runs; added after the "
              "first result, see below). **Unfitted** = defaults (NCCL latency 20 us / 40 us per call). **Fitted**: "
              "one scalar, the per-call latency of tensor/pipeline-parallel communication (`--launch-overhead`), "
              "fitted per stack on a split fixed before fitting (single-node rows with index % 4 == 0, 360 rows), "
              "evaluated on the other 1,080 single-node rows and all multi-node rows: fitted value "
              f"**{mg['fitted_launch_overhead_s'] * 1e6:.0f} us** per call (megatron; pytorch "
              f"{py['fitted_launch_overhead_s'] * 1e6:.0f} us).", "",
              "The megatron stack's default host time per launched op (58 us; eager PyTorch 15 us) is a public fit "
              "on the same train split (script docstring), so its **defaults** rows carry one fitted constant: the "
              "held-out column is the honest figure.", "",
              "| rows | stack | wattlint defaults (all rows) | defaults, held-out | wattlint fitted (held-out) | "
              "6ND@40 % | FLOPs/peak |",
              "|---|---|---|---|---|---|---|"]
        for name in ("single", "multi"):
            for stack, sec in (("pytorch (before)", py[name]), ("megatron (after)", mg[name])):
                L.append(f"| {name}-node ({sec['n']}) | {stack} | {_fmt(sec['unfitted'])} | "
                         f"{_fmt(sec.get('default_held_out'))} | {_fmt(sec['fitted_held_out'])} | "
                         f"{_fmt(sec['naive_6nd'])} | {_fmt(sec['naive_flops_peak'])} |")
        L += ["", f"Train split (single-node, fitted): megatron {_fmt(mg['single']['fitted_train'])}; pytorch "
              f"{_fmt(py['single']['fitted_train'])}.", ""]
        dg = mg.get("diagnostic_two_scalar")
        if dg:
            L += ["**Diagnostic, not a product default** (megatron stack): a second scalar, a fixed time per layer "
                  "pass (forward + backward of one layer for one micro-batch, x the stage's layers x (micro-batches "
                  "+ p - 1)), fitted with the per-call latency on the same train split: "
                  f"{dg['latency_per_call_s'] * 1e6:.0f} us per call + {dg['per_layer_pass_s'] * 1e3:.2f} ms per layer "
                  f"pass. Held-out single-node {_fmt(dg['single_held_out'])}; multi-node {_fmt(dg['multi_held_out'])}; "
                  "by TP (single-node held-out): " + "; ".join(f"{k} {v['mape_pct']:.1f} %" for k, v in
                                                               dg["single_held_out_by_tp"].items()) + ". It is "
                  "fitted on top of the megatron stack's host time per launched op (the eager host model's "
                  "launch gaps, which now price the Megatron-DeepSpeed framework time), to show what a fixed "
                  "per-layer cost would still add; it is not built into the estimate.", ""]
        L += [
              "By degree (megatron stack; MAPE unfitted / fitted held-out; pytorch unfitted for comparison):", "",
              "| rows | group | unfitted | fitted held-out | pytorch unfitted |", "|---|---|---|---|---|"]
        for name in ("single", "multi"):
            for g, v in mg[name]["by"].items():
                L.append(f"| {name} | {g} | {_fmt(v['unfitted'])} | {_fmt(v['fitted_held_out'])} | "
                         f"{_fmt(py[name]['by'][g]['unfitted'])} |")
        L.append("")
    fo = res.get("foundry")
    if fo:
        def pts(x):
            return (f"{x['within_5_points']}/{x['n']} = {x['share_within_5_points_pct']:.0f} % within 5 points "
                    f"(mean abs error {x['mean_abs_points']:.1f}, signed {x['mean_signed_points']:+.1f} points)"
                    if x["n"] else "n/a")
        L += ["## 3. llm-foundry MFU (target: within +-5 MFU points on >= 80 % of BF16 rows)", "",
              "MPT decoders traced as GPT-2-shaped configs (MPT's ALiBi and bias-free layers differ slightly), FSDP "
              "FULL_SHARD (SHARD_GRAD_OP as zero2), activation checkpointing as listed. MFU by llm-foundry's formula "
              "from the predicted throughput, each table priced with the PyTorch it ran (`--torch-version` 2.1 on "
              "the H100 and A100-80GB tables, one sweep on one image, 1.13 on the A100-40GB: FlashAttention-1 kernels "
              "(flash-attn 1.0.x); added after the "
              "+10.1-point first result, docs/PARALLEL.md). One prior "
              "constant, FA1_SLOWDOWN = 1.5, was fitted inside its published range (1.25-2.9) on the non-held-out "
              "rows; a second, HOPPER_GEMM_2023 (Hopper tensor-core GEMMs launched by PyTorch 2.1 or earlier, at a "
              "fraction of today's rate), on the 54 H100 BF16 rows not held out (added 2026-12-07; fit below). "
              "The 13b / 70b rows are held out and listed separately as the issue asks. **megatron** stack "
              "(after): llm-foundry trains with FSDP `mixed_precision: PURE` (bf16 "
              "parameters gathered for compute, fp32 sharded master), so no per-matmul casts and bf16 element-wise "
              "work, as the megatron stack prices it (its LayerNorm is one low-precision kernel and its MLP is not gated, so "
              "those rules change little; its optimizer, Composer's DecoupledAdamW, loops over the parameters and is "
              "priced as the fused pass); **pytorch** (before): the module as traced under autocast.", "",
              "| rows | wattlint megatron (after) | wattlint pytorch (before) | 6ND@40 % | FLOPs/peak | tokens/s MAPE "
              "(megatron) |", "|---|---|---|---|---|---|"]
        for g in ("bf16_all", "bf16_not_held_out", "bf16_held_out_13b_70b", "bf16_a100_40gb", "bf16_a100_80gb",
                  "bf16_h100_80gb", "fp8"):
            x = fo[g]
            L.append(f"| {g} | {pts(x['wattlint'])} | {pts(x['wattlint_pytorch'])} | {pts(x['naive_6nd'])} | "
                     f"{pts(x['naive_flops_peak'])} | {_fmt(x['tokens_s'])} |")
        sp = fo.get("fp8_over_bf16")
        if sp and sp["pairs"]:
            L += ["", "FP8 over BF16 on the H100 (the same model, sequence length, GPUs, micro-batch and checkpointing "
                  "in both tables; tokens/s ratio = 2 x MFU_fp8 / MFU_bf16): measured against predicted, megatron "
                  f"stack MAPE {sp['wattlint_mape_pct']} %, pytorch {sp['wattlint_pytorch_mape_pct']} %.", "",
                  "| model | seq | GPUs | micro | measured | megatron | pytorch |", "|---|---|---|---|---|---|---|"]
            L += [f"| {p['model']} | {p['seq_len']} | {p['gpus']} | {p['micro']} | {p['measured']:.2f}x | "
                  f"{p['wattlint']:.2f}x ({p['wattlint_err_pct']:+.0f} %) | {p['wattlint_pytorch']:.2f}x "
                  f"({p['wattlint_pytorch_err_pct']:+.0f} %) |" for p in sp["pairs"]]
        hf = fo.get("hopper_gemm_2023_fit")
        if hf:
            L += ["", f"HOPPER_GEMM_2023 refitted on this run ({hf['rows']} rows: {hf['objective']}): argmin "
                  f"{hf['argmin']:.2f}, shipped {hf['shipped']:.2f}. Grid (mean abs points / rows within 5 points): "
                  + ", ".join(f"{k} {v['mean_abs_points']:.2f} / {v['within_5_points']}" for k, v in hf["grid"].items())
                  + ". 1.00 is the prior without the rule."]
        bm = fo.get("bf16_by_memory_fraction")
        if bm:
            L += ["", "BF16 rows (megatron) by predicted peak memory / GPU memory: < 0.9: " + pts(bm["lt_0.9"])
                  + "; 0.9-1.1: " + pts(bm["0.9_to_1.1"]) + "; >= 1.1: " + pts(bm["ge_1.1"]) + ". Every row ran, so "
                  "a fraction above 1 is the memory model's overestimate "
                  "(docs/PARALLEL.md, \"llm-foundry MFU\")."]
        L.append("")
    ll = res.get("llama")
    if ll:
        d = ll["default_goodput"]
        L += ["## 4. Llama-2-70B on 2048 A100-80GB (target: within +-35 % of 1.72 M GPU-hours; goal +-15 %)", "",
              "TP 8 x PP 4 x DP 64, sequence parallel, batch 1024 x 4096, micro-batch 1, 2T tokens, bf16; published "
              "1,720,320 GPU-hours (Touvron et al. 2023, Table 2). megatron stack (after; Meta trained Llama 2 with its "
              "own Megatron-like model-parallel stack in bf16) and pytorch (before).", "",
              "| stack | goodput | GPU-hours | x published | step s | MFU | HFU | tokens/s/GPU | memory / GPU |",
              "|---|---|---|---|---|---|---|---|---|"]
        for key in ("default_goodput", "goodput_1", "default_goodput_pytorch", "goodput_1_pytorch"):
            x = ll[key]
            L.append(f"| {x['stack']} | {x['goodput']:.2f} | {x['gpu_hours']:,} | {x['ratio_to_published']:.2f} | "
                     f"{x['step_s']:.2f} | {x['mfu_pct']:.1f} % | {x['hfu_pct']:.1f} % | {x['tokens_s_gpu']:,} | "
                     f"{x['memory_gib']:.1f} GiB ({'fits' if x['fits'] else 'does not fit'}) |")
        L += ["", f"6ND@40 %: {d['naive_6nd_40pct_gpu_hours']:,} GPU-hours = {d['naive_6nd_ratio']:.2f} x published.",
              f"Step phases (s, megatron): {d['phases_s']}; pytorch: {ll['default_goodput_pytorch']['phases_s']}.",
              f"Memory (GiB, megatron): {d['memory_breakdown_gib']}.", ""]
    l3 = res.get("llama3")
    if l3:
        vs = list(next(r for r in l3["rows"] if "predicted_by_vpp" in r)["predicted_by_vpp"])
        L += ["## 5. Llama 3 405B pre-training on H100 (evaluation only; no target)", "",
              "Published layouts of Dubey et al. 2024, Table 4 (H100-80GB, BF16, 16M-token batches of 8,192): TP 8 x "
              "PP 16 x DP 64 / 128, 126 layers on 16 stages (7/8/.../8/7); megatron stack, sequence parallel, "
              "micro-batch 1 (assumed), goodput 1. The paper does not give its interleaving degree V: predicted model "
              "TFLOPs per GPU for each V (" + l3["convention"] + "). The long-context row runs context parallel 16 "
              "(`--context-parallel`, added after the first result, which skipped the row).", "",
              "| GPUs | published TFLOPs/GPU (MFU) | " + " | ".join(f"V = {v}" for v in vs) + " |",
              "|---|---|" + "---|" * len(vs)]
        for r in l3["rows"]:
            label = f"{r['gpus']:,}" + (f" (CP {r['cp']}, {r['seq_len']:,} tokens)" if r["cp"] > 1 else "")
            if "predicted_by_vpp" not in r:
                L.append(f"| {label} | {r['published_tflops_per_gpu']} ({r['published_mfu_pct']} %) | "
                         + " | ".join("-" for _ in vs) + " |")
                continue
            cells = [f"{p['tflops_per_gpu']} ({p['ratio_to_published']:.2f} x"
                     + (f"; causal {p['ratio_to_published_causal_convention']:.2f} x" if r["cp"] > 1 else "") + ")"
                     for p in r["predicted_by_vpp"].values()]
            L.append(f"| {label} | {r['published_tflops_per_gpu']} ({r['published_mfu_pct']} %) | "
                     + " | ".join(cells) + " |")
        skipped = [r for r in l3["rows"] if "status" in r]
        L += ["", "16,384 / 8,192 GPUs (half the micro-batches per step, so a larger bubble): published "
              f"{l3['published_16k_over_8k']}; predicted " + ", ".join(
                  f"V = {v}: {x}" for v, x in l3["predicted_16k_over_8k_by_vpp"].items()) + "."
              + (f" Skipped: {len(skipped)} row ({skipped[0]['status']})." if skipped else ""), ""]
    return "\n".join(L)


SECTIONS = {"neusight": neusight_section, "vtrain": vtrain_section, "foundry": foundry_section,
            "llama": llama_section, "llama3": llama3_section}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--section", default="all", choices=[*SECTIONS, "all", "report"])
    args = ap.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    names = list(SECTIONS) if args.section == "all" else ([] if args.section == "report" else [args.section])
    for name in names:
        t0 = time.time()
        print(f"section {name}", flush=True)
        res = SECTIONS[name]()
        res["wall_s"] = round(time.time() - t0, 1)
        (CACHE / f"{name}.json").write_text(json.dumps(res, indent=1))
    result = {"benchmark": "parallel_accuracy", "doc": __doc__.strip().splitlines()[0]}
    for name in SECTIONS:
        p = CACHE / f"{name}.json"
        if p.exists():
            result[name] = json.loads(p.read_text())
    import torch

    result["environment"] = {"python": sys.version.split()[0], "torch": torch.__version__,
                             "wattlint": getattr(wattlint, "__version__", "")}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    text = report(result)
    if DOC.exists() and "<!-- hand-written -->" in DOC.read_text():
        head, _, tail = DOC.read_text().partition("<!-- hand-written -->")
        text = text + "\n<!-- hand-written -->" + tail
    DOC.write_text(text)
    print(f"wrote {OUT} and {DOC}")


if __name__ == "__main__":
    main()
