"""Benchmark: mixture-of-experts models traced at their routed cost (frontends/torch_moe.py).

Method:
  * trace speed: the published shapes of Mixtral-8x7B, Qwen1.5-MoE-A2.7B and DeepSeek-V2-Lite (full layer
    counts; configs below, from the models' config.json on the Hugging Face Hub), one training step (forward,
    cross-entropy loss, backward, AdamW foreach step) at seq 4096, batch 1, --precision bf16, each in a fresh Python
    process: ``import_s`` = importing torch + transformers + wattlint, ``trace_s`` = ``analyze_config`` (config ->
    model on meta -> CostGraph), peak RSS of the process. Parameters are checked against the published totals, and
    the active matmul parameters per token derived from the trace (forward GEMM FLOPs outside attention / 2 /
    tokens: router + routed experts at top-k + shared experts + attention projections + LM head; the input
    embedding is a gather) against the published active counts (Mixtral's 12.9B and Qwen's 2.7B also count the
    input embedding, given as ``input_embedding_params``; DeepSeek-V2-Lite's 2.4B counts one vocabulary matrix).
  * NeuSight switchxl4 training rows: every ``mode=train`` row of model ``switchxl4`` in
    ``../shared/data/neusight-asplos25/summary/summary.csv`` (NeuSight, ASPLOS 2025, MIT licence: FP32 PyTorch 2.1
    measurements of one forward + backward step, no optimizer step) is traced from the paper's own
    ``model_configs/switchxl4.json`` at its seq / batch in the default (fp32) precision; recorded: wattlint's forward
    and backward FLOPs (Switch routing: balanced top-1, the config's expert capacity 64 per expert and sequence),
    the measured latencies, the throughput the measurement implies, and ``wattlint.estimate``'s forward + backward
    time (the spec-sheet prior on that GPU) next to NeuSight's and the roofline's published predictions.
Targets (issue 15): each of the three LLM configs traces "in seconds" (here: trace_s < 60 s each); the switchxl4 rows
trace without error.

Run: python benchmarks/moe_trace.py        (writes benchmarks/results/moe_trace.json)
"""

from __future__ import annotations

import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
from shared_data import DATA as SHARED  # noqa: E402 - the public data folder (one home)
NEUSIGHT = SHARED / "neusight-asplos25"
SEQ, BATCH = 4096, 1

MODELS = {
    # mistralai/Mixtral-8x7B-v0.1 config.json; published: 46.7B total, 12.9B active (Mistral AI, "Mixtral of
    # experts", 2023-12-11)
    "Mixtral-8x7B": dict(
        config=dict(model_type="mixtral", architectures=["MixtralForCausalLM"], hidden_size=4096,
                    intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                    num_local_experts=8, num_experts_per_tok=2, vocab_size=32000, max_position_embeddings=32768,
                    rms_norm_eps=1e-5, rope_theta=1e6, tie_word_embeddings=False),
        published_total=46.7e9, published_active=12.9e9),
    # Qwen/Qwen1.5-MoE-A2.7B config.json; published: 14.3B total, 2.7B activated (model card)
    "Qwen1.5-MoE-A2.7B": dict(
        config=dict(model_type="qwen2_moe", architectures=["Qwen2MoeForCausalLM"], hidden_size=2048,
                    intermediate_size=5632, moe_intermediate_size=1408, shared_expert_intermediate_size=5632,
                    num_experts=60, num_experts_per_tok=4, num_hidden_layers=24, num_attention_heads=16,
                    num_key_value_heads=16, vocab_size=151936, decoder_sparse_step=1, norm_topk_prob=False,
                    max_position_embeddings=8192, tie_word_embeddings=False),
        published_total=14.3e9, published_active=2.7e9),
    # deepseek-ai/DeepSeek-V2-Lite config.json; published: 15.7B total, 2.4B activated (DeepSeek-V2 paper,
    # arXiv 2405.04434, appendix B)
    "DeepSeek-V2-Lite": dict(
        config=dict(model_type="deepseek_v2", architectures=["DeepseekV2ForCausalLM"], hidden_size=2048,
                    intermediate_size=10944, moe_intermediate_size=1408, num_hidden_layers=27,
                    num_attention_heads=16, num_key_value_heads=16, n_routed_experts=64, n_shared_experts=2,
                    num_experts_per_tok=6, first_k_dense_replace=1, kv_lora_rank=512, q_lora_rank=None,
                    qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, vocab_size=102400,
                    topk_method="greedy", n_group=1, topk_group=1, routed_scaling_factor=1.0,
                    max_position_embeddings=163840, tie_word_embeddings=False),
        published_total=15.7e9, published_active=2.4e9),
}
GPU_KEYS = {"NVIDIA_A100_80GB_PCIe": "a100-pcie-80gb", "NVIDIA_H100_80GB_HBM3": "h100-sxm5-80gb"}


def _rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 1024.0 / 1024.0


def run_model(name: str) -> dict:
    t0 = time.perf_counter()
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from wattlint.frontends.hf import analyze_config
    from wattlint.types import OpKind, Phase

    t1 = time.perf_counter()
    g = analyze_config(dict(MODELS[name]["config"]), micro_batch=BATCH, seq_len=SEQ, precision="bf16")
    t2 = time.perf_counter()
    ph = g.by_phase()
    tokens = BATCH * SEQ
    gemm_fwd = sum(r.flops for r in g.records if r.kind is OpKind.MATMUL and r.phase is Phase.FORWARD)
    moe = g.extra.get("moe", {})
    return {"import_s": round(t1 - t0, 2), "trace_s": round(t2 - t1, 2), "peak_rss_mb": round(_rss_mb(), 1),
            "records": len(g.records), "params": g.params, "unsupported": g.unsupported(),
            "flops": {getattr(p, "value", p): t.flops for p, t in ph.items()},
            "fwd_bwd_flops_per_token": round((ph[Phase.FORWARD].flops + ph[Phase.BACKWARD].flops) / tokens),
            "active_matmul_params_from_trace": round(gemm_fwd / 2 / tokens),
            "moe_layers": len(moe.get("layers", [])),
            "rows_per_expert": sorted({r for ly in moe.get("layers", []) for r in ly["rows_per_expert"]}),
            "moe_assumptions": [a for a in g.assumptions if a.startswith("MoE")]}


def run_switch(batch: int, seq: int, gpu: str) -> dict:
    import wattlint
    from wattlint.frontends.hf import analyze_config
    from wattlint.report.json_out import to_dict
    from wattlint.types import Phase

    cfg = str(NEUSIGHT / "model_configs" / "switchxl4.json")
    t0 = time.perf_counter()
    g = analyze_config(cfg, micro_batch=batch, seq_len=seq)
    trace_s = time.perf_counter() - t0
    ph = g.by_phase()
    out = {"trace_s": round(trace_s, 2), "params": g.params, "unsupported": g.unsupported(),
           "flops_forward": ph[Phase.FORWARD].flops, "flops_backward": ph[Phase.BACKWARD].flops,
           "moe_layers": len(g.extra["moe"]["layers"]),
           "rows_per_expert": sorted({r for ly in g.extra["moe"]["layers"] for r in ly["rows_per_expert"]}),
           "moe_assumption": next(a for a in g.assumptions if a.startswith("MoE"))}
    try:
        est = wattlint.estimate(cfg, gpu=gpu, steps=1, batch_size=batch, seq_len=seq)
        d = to_dict(est)
        out["wattlint_estimate"] = {"gpu": gpu, "calibration": d["hardware"]["calibration"],
                                    "forward_ms": round(d["phases"]["forward"]["time_s"] * 1e3, 1),
                                    "backward_ms": round(d["phases"]["backward"]["time_s"] * 1e3, 1)}
    except Exception as e:  # noqa: BLE001 - the estimate path is being refactored; record rather than fail
        out["wattlint_estimate"] = {"error": f"{type(e).__name__}: {e}"}
    return out


def switch_rows() -> list[dict]:
    with open(NEUSIGHT / "summary" / "summary.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["model_name"] == "switchxl4" and r["mode"] == "train"]


def _sub(*argv) -> dict:
    r = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, cwd=HERE.parent,
                       timeout=900)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--model":
        print(json.dumps(run_model(sys.argv[2])))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--switch":
        print(json.dumps(run_switch(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])))
        return 0
    models = {}
    for name, spec in MODELS.items():
        r = _sub("--model", name)
        r["published_total_params"] = spec["published_total"]
        r["published_active_params"] = spec["published_active"]
        r["input_embedding_params"] = spec["config"]["vocab_size"] * spec["config"]["hidden_size"]
        r["params_vs_published"] = round(r["params"] / spec["published_total"], 4)
        models[name] = r
    rows = []
    for row in switch_rows():
        b, s, dev = int(row["batch"]), int(row["seqlen"]), row["device"]
        r = _sub("--switch", str(b), str(s), GPU_KEYS.get(dev, ""))
        fwd_ms, bwd_ms = float(row["label_all_fw_latency"]), float(row["label_all_bwall_latency"])
        e2e_ms = float(row["label_all_e2e_latency"])
        r.update({"device": dev, "seq": s, "batch": b,
                  "measured_ms": {"forward": round(fwd_ms, 1), "backward": round(bwd_ms, 1),
                                  "fwd_bwd": round(e2e_ms, 1)},
                  "achieved_tflops_on_measured": round((r["flops_forward"] + r["flops_backward"]) / (e2e_ms * 1e-3)
                                                       / 1e12, 2),
                  "neusight_predicted_ms": round(float(row["neusight_all_e2e_latency"]), 1),
                  "roofline_predicted_ms": round(float(row["roofline_all_e2e_latency"]), 1)})
        est = r.get("wattlint_estimate", {})
        if "forward_ms" in est:
            pred = est["forward_ms"] + est["backward_ms"]
            est["fwd_bwd_ms"] = round(pred, 1)
            est["error_vs_measured"] = round(pred / e2e_ms - 1, 4)
        rows.append(r)
    import torch
    import transformers

    doc = {
        "benchmark": "moe_trace",
        "method": __doc__.split("Method:", 1)[1].split("Targets", 1)[0].strip(),
        "targets": {"trace_s": 60},
        "met": {name: r["trace_s"] < 60 and not r["unsupported"] for name, r in models.items()},
        "llm_configs": {"seq": SEQ, "batch": BATCH, "precision": "bf16", "results": models},
        "neusight_switchxl4_train": {
            "source": "NeuSight (Lee, Phanishayee, Mahajan, ASPLOS 2025) summary/summary.csv + "
                      "model_configs/switchxl4.json, MIT licence (../shared/data/neusight-asplos25/LICENSE)",
            "note": "measured: FP32 PyTorch 2.1, one forward + backward step, no optimizer step; wattlint traces "
                    "with today's transformers Switch implementation (top-1, expert capacity 64 per sequence)",
            "rows": rows},
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "transformers": transformers.__version__, "machine": platform.machine(),
                        "cpus": os.cpu_count(), "note": "CPU shared with other jobs while measured"},
    }
    out = HERE / "results" / "moe_trace.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
