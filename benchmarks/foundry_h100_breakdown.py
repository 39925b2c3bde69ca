"""llm-foundry H100 vs A100-80GB: the predicted step split by op kind beside the measured step (diagnostic only;
nothing fitted, nothing shipped).

For the 7b model at 2048 tokens, 8 GPUs, micro-batch 6 (the row present in both the H100 and the A100-80GB BF16
tables of MosaicML llm-foundry's benchmarking README), trace and price the step exactly as
benchmarks/parallel_accuracy.py's foundry section does (megatron stack, FSDP, each table's PyTorch version,
llm-foundry's fused loss), then report each op kind's predicted time and achieved TFLOP/s, and the GEMM rate that
would make the predicted step equal the measured one (all other parts unchanged). Used in docs/PARALLEL.md's
H100 paragraph (2026-12-06). Its committed results predate HOPPER_GEMM_2023 (2026-12-07), the fitted rate this
diagnostic led to: a rerun prices the H100 table's GEMMs (torch 2.1) at that fraction of today's rate.

Data: MosaicML llm-foundry benchmark tables (github.com/mosaicml/llm-foundry, Apache-2.0; licence text in
benchmarks/public/licences/).

Run: PYTHONPATH=src python benchmarks/foundry_h100_breakdown.py  (-> benchmarks/results/foundry_h100_breakdown.json)
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import parallel_accuracy as pa  # noqa: E402 - the foundry section's tracing and tables

import wattlint  # noqa: E402
from wattlint.hardware import resolve_gpu  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "foundry_h100_breakdown.json"
ROW = {"size": "7b", "seq": 2048, "gpus": 8, "micro": 6}


def main() -> dict:
    table = {(r["GPU"], r["Model"], int(r["SeqLen (T)"]), int(r["# GPUs"]), int(r["MicroBatchSize"])): r
             for r in csv.DictReader((pa.FOUNDRY / "llmfoundry_benchmark_mfu.csv").open())}
    out = {"benchmark": "foundry_h100_breakdown", "method": __doc__, "row": ROW, "gpus": {}}
    for key in ("h100_80gb", "a100_80gb"):
        size, seq, gpus, micro = ROW["size"], ROW["seq"], ROW["gpus"], ROW["micro"]
        gpu = resolve_gpu(pa.FOUNDRY_GPUS[key])[0]
        opts = {"batch_size": micro, "seq_len": seq, "precision": "bf16", "attention": "sdpa",
                "torch_version": pa.FOUNDRY_TORCH[key]}
        g = pa.traced(pa._mpt(size, seq), opts)
        est = wattlint.estimate(g, gpu=gpu, lint=False, steps=1, batch_size=micro * gpus, grad_accum=1, gpus=gpus,
                                seq_len=seq, precision="bf16", sharding="fsdp", pue=1.0, carbon_intensity=100.0,
                                goodput=1.0, loss_impl="fused", training_stack="megatron")
        t_kind, f_kind = defaultdict(float), defaultdict(float)
        for rec, t in zip(est.graph.records, est.op_times_s):
            t_kind[rec.kind.name] += t
            f_kind[rec.kind.name] += rec.flops
        meas = table[(key, size, seq, gpus, micro)]
        step_meas = micro * gpus * seq / float(meas["Throughput (T/s)"])
        step_pred = est.per_step.time_s
        mm_t, mm_f = t_kind["MATMUL"], f_kind["MATMUL"]
        needed = mm_f / (mm_t + step_meas - step_pred) if mm_t + step_meas - step_pred > 0 else None
        peak = gpu.peak("bf16")  # FLOP/s
        out["gpus"][key] = {
            "gpu": gpu.key, "torch_version": pa.FOUNDRY_TORCH[key], "step_measured_s": round(step_meas, 4),
            "step_predicted_s": round(step_pred, 4), "mfu_measured": float(meas["MFU"]),
            "by_kind": {k: {"time_s": round(t_kind[k], 4), "share": round(t_kind[k] / sum(t_kind.values()), 4),
                            "tflops": round(f_kind[k] / t_kind[k] / 1e12, 1) if t_kind[k] else None}
                        for k in sorted(t_kind, key=lambda k: -t_kind[k]) if t_kind[k] > 0},
            "matmul_tflops_predicted": round(mm_f / mm_t / 1e12, 1),
            "matmul_tflops_to_match_measured_step": round(needed / 1e12, 1) if needed else None,
            "dense_bf16_peak_tflops": round(peak / 1e12, 1),
        }
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    res = main()
    for k, v in res["gpus"].items():
        print(k, v["step_predicted_s"], v["step_measured_s"], v["matmul_tflops_predicted"],
              v["matmul_tflops_to_match_measured_step"])
