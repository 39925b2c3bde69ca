"""Benchmark: the per-GPU memory model (wattlint.memory) on the llm-foundry BF16 rows, which all ran.

Data: /work/shared/data/llm-foundry-mfu (Apache-2.0; mosaicml/llm-foundry scripts/train/benchmarking/README.md):
MPT models 125m-70b trained with FSDP FULL_SHARD (SHARD_GRAD_OP rows = zero2), mixed_precision PURE / DEFAULT
(bf16 parameters for compute, fp32 sharded master weights and Adam state), flash attention, activation checkpointing
as listed, on A100-40GB, A100-80GB and H100-80GB. Every row is a run that completed, so every row fits.

Each row is traced exactly as benchmarks/parallel_accuracy.py ``foundry_section`` traces it (MPT as a GPT-2-shaped
transformers config with MPT's sizes, no dropout, exact GELU, --attention sdpa, the row's micro-batch) and estimated
with ``training_stack="megatron"`` (bf16 parameters + fp32 master: what FSDP mixed_precision PURE holds; the primary
figure) and ``"pytorch"`` (fp32 parameters under autocast). Reported:

1. fits: the share of rows predicted to fit, per GPU, after this change; "before" is the memory_fraction the
   committed benchmarks/results/parallel_accuracy.json holds for the same rows (megatron stack, the code before).
2. the two-sided check of the activation term: the traced activations of each row against Korthikanti et al. 2022
   ("Reducing Activation Recomputation in Large Transformer Models", section 4.1) computed by hand: per layer
   s*b*h*34 + 5*a*s^2*b bytes in 16-bit with dropout; with flash attention the 5as^2b term (scores, softmax,
   dropout over them) is gone, without dropout the two sbh dropout masks are gone: 32 sbh per layer; with
   activation checkpointing the block input only, 2 sbh per layer; plus the output layer: the final norm's input
   and the output projection's input (2 sbh each) and the fp32 log-softmax the cross-entropy saves (4 s*b*V).
   A ratio of 1.00 means the trace counts what the paper counts, no more (over-count) and no less (under-count).
3. micro-batch x 2: the share of rows predicted NOT to fit at twice the listed micro-batch. Informational only:
   the llm-foundry README does not say the listed micro-batches are the largest that fit (they were set by hand
   in scripts/train/benchmarking/sweep.sh), so this is no measured OOM point.

Nothing is fitted. Differences of the traced model from MPT (stated): MPT has no biases, low-precision LayerNorm and
llm-foundry's fused cross-entropy (flash-attn's, in place on the bf16 logits: 2 s*b*V instead of the 4 s*b*V fp32
log-softmax of torch's cross-entropy traced here).

Run: PYTHONPATH=src python benchmarks/memory_check.py  (writes benchmarks/results/memory_check.json)
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import wattlint  # noqa: E402
from wattlint.hardware import resolve_gpu  # noqa: E402

import parallel_accuracy as pa  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "memory_check.json"
GIB = 2 ** 30


def korthikanti_bytes(size: str, seq: int, micro: int, ckpt: bool) -> tuple[int, dict]:
    """Activation bytes of one micro-batch by Korthikanti et al. 2022 (flash attention, no dropout), by hand."""
    text = (pa.FOUNDRY / "model_yamls" / f"mpt-{size}.yaml").read_text().split("\nmodel:", 1)[1]
    import re

    def num(key):
        return int(re.search(rf"^\s+{key}:\s*(\d+)", text, re.M).group(1))

    h, layers, vocab = num("d_model"), num("n_layers"), num("vocab_size")
    sbh = seq * micro * h
    per_layer = 2 * sbh if ckpt else 32 * sbh
    head = 2 * sbh + 2 * sbh + 4 * seq * micro * vocab
    return layers * per_layer + head, {"h": h, "layers": layers, "vocab": vocab,
                                       "per_layer_sbh": 2 if ckpt else 32}


def committed_fractions() -> dict:
    """memory_fraction of the committed parallel_accuracy.json (the code before this change), keyed by row."""
    path = ROOT / "benchmarks" / "results" / "parallel_accuracy.json"
    out = {}
    for r in json.loads(path.read_text())["foundry"]["rows"]:
        if "status" in r:
            continue
        out[(r["model"], r["seq_len"], r["gpus"], r["gpu"], r["precision"], r["micro"], r["accum"],
             r["activation_checkpointing"])] = r["memory_fraction"]
    return out


def main() -> None:
    t0 = time.time()
    before = committed_fractions()
    rows = []
    for r in csv.DictReader((pa.FOUNDRY / "llmfoundry_benchmark_mfu.csv").open()):
        if "fp8" in r["Precision"]:
            continue
        size, seq, gpus = r["Model"], int(r["SeqLen (T)"]), int(r["# GPUs"])
        micro, accum, batch = int(r["MicroBatchSize"]), int(r["GradAccum"]), int(r["GlobalBatchSize"])
        if batch != micro * gpus * accum:
            continue
        ckpt = r["Activation Checkpointing"] == "True"
        sharding = "zero2" if r["Sharding Strategy"] == "SHARD_GRAD_OP" else "fsdp"
        gpu = resolve_gpu(pa.FOUNDRY_GPUS[r["GPU"]])[0]
        opts = {"batch_size": micro, "seq_len": seq, "precision": "bf16", "attention": "sdpa",
                "torch_version": pa.FOUNDRY_TORCH[r["GPU"]]}
        if ckpt:
            opts["activation_checkpointing"] = True
        g = pa.traced(pa._mpt(size, seq), opts)
        kw = dict(gpu=gpu, lint=False, steps=1, grad_accum=accum, gpus=gpus, seq_len=seq, precision="bf16",
                  sharding=sharding, activation_checkpointing=ckpt, pue=1.0, carbon_intensity=100.0, goodput=1.0,
                  loss_impl="fused")  # llm-foundry's ComposerMPTCausalLM default loss_fn: fused_crossentropy
        est = wattlint.estimate(g, training_stack="megatron", batch_size=batch, **kw)
        est_py = wattlint.estimate(g, training_stack="pytorch", batch_size=batch, **kw)
        est2 = wattlint.estimate(g, training_stack="megatron", batch_size=2 * batch, **kw)
        m, cap = est.memory, est.memory.gpu_memory_bytes
        kb, kinfo = korthikanti_bytes(size, seq, micro, ckpt)
        key = (size, seq, gpus, r["GPU"], "bf16", micro, accum, ckpt)
        rows.append({"model": size, "seq_len": seq, "gpus": gpus, "gpu": r["GPU"], "micro": micro, "accum": accum,
                     "activation_checkpointing": ckpt, "sharding": sharding, "held_out": size in ("13b", "70b"),
                     "memory_fraction_before": before.get(key),
                     "memory_fraction": round(m.peak_bytes_per_gpu / cap, 3),
                     "memory_fraction_pytorch": round(est_py.memory.peak_bytes_per_gpu / cap, 3),
                     "memory_fraction_micro_x2": round(est2.memory.peak_bytes_per_gpu / cap, 3),
                     "breakdown_gib": {k: round(v / GIB, 2) for k, v in m.breakdown.items()},
                     "korthikanti_activation_gib": round(kb / GIB, 2),
                     "activation_ratio_to_korthikanti": round(m.breakdown["activations"] / kb, 3),
                     "korthikanti": kinfo})

    def share(sel, key, pred):
        vals = [r[key] for r in sel if r[key] is not None]
        return {"n": len(vals), "count": sum(pred(v) for v in vals),
                "pct": round(100.0 * sum(pred(v) for v in vals) / len(vals), 1) if vals else None}

    def summary(sel):
        ratios = [r["activation_ratio_to_korthikanti"] for r in sel]
        return {"fits_before": share(sel, "memory_fraction_before", lambda v: v <= 1.0),
                "fits_after": share(sel, "memory_fraction", lambda v: v <= 1.0),
                "fits_after_pytorch_stack": share(sel, "memory_fraction_pytorch", lambda v: v <= 1.0),
                "micro_x2_predicted_not_to_fit": share(sel, "memory_fraction_micro_x2", lambda v: v > 1.0),
                "max_fraction_before": max((r["memory_fraction_before"] or 0) for r in sel),
                "max_fraction_after": max(r["memory_fraction"] for r in sel),
                "median_fraction_after": round(statistics.median(r["memory_fraction"] for r in sel), 3),
                "activation_ratio_to_korthikanti": {"min": min(ratios), "max": max(ratios),
                                                    "median": round(statistics.median(ratios), 3)}}

    groups = {"all": rows, "not_held_out": [r for r in rows if not r["held_out"]],
              "held_out_13b_70b": [r for r in rows if r["held_out"]]}
    for gname in ("a100_40gb", "a100_80gb", "h100_80gb"):
        groups[gname] = [r for r in rows if r["gpu"] == gname]
    worst = sorted(rows, key=lambda r: -r["memory_fraction"])[:10]
    result = {"benchmark": "memory_check", "doc": __doc__.strip().splitlines()[0], "method": __doc__.strip(),
              "summary": {k: summary(v) for k, v in groups.items() if v},
              "worst_rows": worst, "rows": rows, "wall_s": round(time.time() - t0, 1)}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    for k, v in result["summary"].items():
        print(k, json.dumps({x: v[x] for x in ("fits_before", "fits_after", "max_fraction_after",
                                                "activation_ratio_to_korthikanti")}))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
