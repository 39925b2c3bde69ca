"""Physical-invariants sweep of the estimator: every estimate in a matrix of models x GPUs x plans is checked against
properties that hold whatever the fitted constants are, and every violation is recorded.

    python benchmarks/invariants.py                 # -> benchmarks/results/invariants.json
    python benchmarks/invariants.py --quick         # fewer GPUs / plans (a smoke run)

Method
------
Models are the shapes the repository already ships or builds in its tests (traced on meta tensors, no weights):

* ``gpt2``: the GPT-2-shaped decoder of tests/_parallel_fixtures.py (h 512, 8 heads, 4 layers, vocab 1000), seq 256;
* ``gpt2-small``: examples/gpt2-small/config.json (GPT-2 124M), seq 1024 (the large-LLM GPU-ordering check);
* ``llama``: the Llama-shaped config of tests/_torch_archs.py (h 512, GQA 8/4 heads, 2 layers), seq 256;
* ``bert``: the BERT config of tests/_torch_archs.py, seq 128;
* ``mixtral``: the tiny Mixtral MoE config of tests/test_moe.py (8 experts, top-2), seq 128;
* ``resnet50``: examples/resnet50.onnx (a CNN; batch from --batch-size);
* ``llama2-70b``: examples/configs/llama2-70b.json, seq 4096 (only the 64-GPU layouts and the GPU ordering).

One-GPU matrix: those models (not Llama-2-70B) x every GPU of the database (43: NVIDIA V100 to B200 / GB200,
consumer boards, AMD MI250X / MI300X / MI325X, Intel Gaudi 3) x precisions default / fp32 / tf32 / bf16 / fp16 / fp8
(a precision the GPU lacks must be refused instead) x two batch sizes x recompute none / full (selective too for
the decoders at bf16). Multi-GPU matrix: A100 80GB and H100 SXM at bf16, global batch 128 (Llama-2-70B 512), on 1,
8, 48 and 64 GPUs in data / tensor (+ sequence) / pipeline (uneven stages, interleaved) / context / expert parallel
layouts that divide, x sharding none / zero1 / zero2 / zero3 / fsdp, x recompute, x goodput 1 / 0.9 / 0.5.

Each distinct trace (model, precision, micro-batch, recompute) is made once (wattlint.api.trace, the request path's
own step) and its CostGraph passed to ``wattlint.estimate`` with the full option set, so the plan, pricing and
aggregation are exactly what ``wattlint MODEL ...`` runs; every number is read from the public JSON contract
(wattlint.report.json_out.to_dict), which is validated against src/wattlint/schemas/estimate.schema.json.

Per-result invariants (``REL`` relative float slack, 1e-6 unless said):

* ``finite``: every number in the JSON is finite;
* ``schema``: the JSON validates against the shipped schema;
* ``power``: per-step average GPU power and every phase's average power per GPU in [idle_w, tdp_w] (the database's power
  limit; no power-limit option exists); the job's average GPU power over the totals (GPU kWh / GPU-hours, goodput
  losses at idle included) in [idle_w, tdp_w];
* ``energy_consistency``: per-step GPU energy (all GPUs) == average power per GPU x step time x GPUs; total GPU kWh ==
  per-step energy x steps + goodput losses at idle x GPUs;
  time_h == steps x step time / goodput; gpu_hours == time_h x GPUs;
* ``phases``: the phases' times and energies sum to the step's;
* ``mfu_hfu``: MFU and HFU in (0, 1] where reported;
* ``ranges``: each 5-95 % range [lo, hi] contains its estimate;
* ``utilization_arithmetic``: tokens/s/GPU == batch x seq / (step time x GPUs), MFU == FLOPs/token x tokens/s/GPU /
  peak; ``positive``: step time and FLOPs > 0;
* ``totals_arithmetic``: energy_kwh == (GPU + host kWh) x PUE, co2 == kWh x intensity, cost == kWh x price +
  GPU-hours x GPU-hour price, host energy >= 0;
* ``layers``: the layer table's shares and energies never exceed the step's, nor its times the step's (P x the
  step's under pipeline parallelism P: a row's time is summed over the stages that run it);
* ``memory_breakdown``: the breakdown sums to the peak, no part negative.

Cross-result invariants:

* ``steps_linear``: total time / energy at 1,000 steps = 100 x those at 10 steps; ``goodput``: time_h at goodput g =
  time at goodput 1 / g;
* ``batch_monotone``: a larger batch never lowers the step time, step energy or activation memory (one GPU);
* ``tf32_vs_fp32``: --precision tf32 is never slower than fp32 on a GPU that has both (allowing TF32 adds kernels);
* ``layout_flops``: a tensor / pipeline / context / expert / data-parallel layout never lowers the job's FLOPs per
  step below the 1-GPU step's (same global batch);
* ``dp_gpu_hours``: at the same global batch and steps, pure data parallelism on 8 / 64 GPUs never gives fewer
  GPU-hours than 1 GPU (beyond 1e-6 relative): every GPU does 1/N of the work at a micro-batch no larger, and
  gradient communication only adds;
* ``gpu_ordering``: at bf16 (fp16 on V100) on a GEMM-bound LLM step (GPT-2 124M batch 16 x 1024 on one GPU;
  Llama-2-70B TP 8 PP 8 on 64) a newer GPU's forward + backward + optimizer time is not longer: B200 <= H100 SXM <=
  A100 SXM <= V100 SXM, H200 <= H100 SXM, H100 PCIe <= A100 SXM 40GB (a step slower only through communication is
  ``gpu_ordering_step``);
* ``recompute``: full recompute never lowers step time and never raises activation memory vs none (selective: between
  the two on time, at most none's activations);
* ``sharding``: zero1 / zero2 / zero3 / fsdp never raise peak per-GPU memory vs none, and zero1 >= zero2 >= zero3;
* ``fits``: ``memory.fits`` == (peak_bytes_per_gpu <= gpu_memory_bytes);
* ``precision_refusal``: a precision the GPU lacks is refused by the API with a ConfigError (one line);
* option variants (``OPTION_VARIANTS``: optimizers and their kernels, eager attention, old PyTorch versions,
  utilization what-ifs, PUE / region / prices, host and launch times, grad-accum, odd and unit batches, tokens,
  epochs, the megatron stack, interleaved pipelines, multi-node networks, 1,024 GPUs) on six GPUs incl. MI300X and
  Gaudi 3: every per-result invariant; refusals must be one line;
* ``cli``: a sample of the matrix through ``python -m wattlint`` exits 0 (valid JSON on stdout) or 2 with one line on
  stderr; never 3 and never a traceback.

Violations traced to a documented, defensible modelling choice are listed in ``EXPLAINED`` with the reason and kept
in the results file marked ``explained``; the script exits 1 when any violation is unexplained. Runtime: ~3 minutes
on 2 shared cores (216 traces, ~4,200 estimates); ``--quick`` ~1 minute.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "invariants.json"
sys.path.insert(0, str(ROOT / "tests"))

import jsonschema  # noqa: E402

import wattlint  # noqa: E402
from wattlint.api import trace  # noqa: E402
from wattlint.hardware import precision_support, resolve_gpu  # noqa: E402
from wattlint.report.json_out import to_dict  # noqa: E402
from wattlint.types import ConfigError  # noqa: E402

from _parallel_fixtures import GPT  # noqa: E402
from _torch_archs import HF_CONFIGS  # noqa: E402
from test_moe import TINY as MIXTRAL_TINY  # noqa: E402

REL = 1e-6
SCHEMA = json.loads((ROOT / "src" / "wattlint" / "schemas" / "estimate.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

QUICK_GPUS = ["v100-sxm2-32gb", "a100-sxm4-80gb", "h100-sxm5-80gb", "t4-16gb", "mi300x-192gb"]


def all_gpus() -> list[str]:
    """Every GPU of the database (pricing is cheap once a model is traced)."""
    from wattlint.hardware import load_gpus

    return sorted(load_gpus())


PRECISIONS = ["default", "fp32", "tf32", "bf16", "fp16", "fp8"]


def models(tmp: Path) -> dict[str, dict]:
    """name -> source path and the sequence length it is run at (None: no sequence)."""
    out = {}
    for name, cfg, seq in (("gpt2", GPT, 256), ("llama", HF_CONFIGS["llama"], 256), ("bert", HF_CONFIGS["bert"], 128),
                           ("mixtral", MIXTRAL_TINY, 128)):
        p = tmp / name / "config.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(cfg))
        out[name] = {"source": str(p), "seq_len": seq}
    out["gpt2-small"] = {"source": str(ROOT / "examples" / "gpt2-small" / "config.json"), "seq_len": 1024}
    out["resnet50"] = {"source": str(ROOT / "examples" / "resnet50.onnx"), "seq_len": None}
    out["llama2-70b"] = {"source": str(ROOT / "examples" / "configs" / "llama2-70b.json"), "seq_len": 4096}
    return out


# ---- running estimates (each trace once) -------------------------------------------------------------------------

_TRACES: dict = {}
STATS = {"traces": 0, "estimates": 0, "trace_s": 0.0, "estimate_s": 0.0}


def _trace_key(model: str, opts: dict) -> tuple:
    from wattlint import options as _options
    from wattlint.parallel import frontend_batch

    kw = {k: opts[k] for k in _options.FRONTEND_OPTIONS if opts.get(k) is not None}
    if opts.get("recompute") == "full":
        kw["activation_checkpointing"] = True
    kw.update(frontend_batch(opts))
    return (model,) + tuple(sorted((k, str(v)) for k, v in kw.items()))


def run_estimate(m: dict, name: str, gpu: str, **opts) -> dict:
    """The JSON dict of wattlint.estimate(MODEL, gpu=gpu, **opts) (lint off), the trace reused when it is the same."""
    opts = {k: v for k, v in opts.items() if v is not None}
    if m["seq_len"]:
        opts.setdefault("seq_len", m["seq_len"])
    valid = wattlint.api.validate_options(opts)
    key = _trace_key(name, valid)
    g = _TRACES.get(key)
    if g is None:
        t = time.perf_counter()
        g = _TRACES[key] = trace(m["source"], valid)
        STATS["traces"] += 1
        STATS["trace_s"] += time.perf_counter() - t
    t = time.perf_counter()
    est = wattlint.estimate(g, gpu=gpu, lint=False, **opts)
    STATS["estimates"] += 1
    STATS["estimate_s"] += time.perf_counter() - t
    return to_dict(est)


# ---- per-result invariants ---------------------------------------------------------------------------------------

VIOLATIONS: list[dict] = []

# Violations traced to a documented, defensible modelling choice (not changed; see the report in the summary).
EXPLAINED = {
    ("sharding", "zero3 uses more per-GPU memory than zero2"):
        "FSDP FULL_SHARD / ZeRO-3 holds its own 1/n shard plus the gathered units in flight (2 blocks + the root "
        "unit, wattlint.memory.gathered_share). On a model of 2-4 blocks the gathered units are (nearly) the whole "
        "model, so weights = W/n + W > W (zero2's unsharded copy): FSDP's separate unsharded flat parameter is real. "
        "Never above sharding none (checked).",
    ("gpu_ordering_step", None):
        "The compute phases are faster on the newer GPU; the step is slower only through communication: the H100 "
        "PCIe has no NVLink in the database (nvlink_gbs 0), so tensor-parallel all-reduces of TP 8 run over PCIe, "
        "while the A100 SXM4 has 600 GB/s NVLink.",
    ("batch_monotone", "h200"):
        "The H200's measured energy model (src/wattlint/models/h200-sxm-141gb, fitted on op samples) is not monotone in op size "
        "near the launch floor: a launch-bound 2-layer model's step differs by < 1 % between the two batches (llama "
        "fp8 4 vs 16, bert fp8 8 vs 32). A fitted model; changing it means refitting (not done here).",
    ("power", "pp_optimizer"):
        "Pipeline parallel only, < 1 % over TDP: each stage's optimizer step is priced on its own parameters (commit "
        "2e67fe4: the embeddings on the first stage, the head on the last), but the optimizer phase keeps the costed "
        "stage's time; where the first stage holds more parameters than the costed one (GPT-2's position embedding), "
        "the stages' mean optimizer energy over the costed stage's time is 0.1 % above a 72 W L4's TDP. The step "
        "should wait for the slowest stage's optimizer (not done: it would move PP step times by < 1 %).",
    ("tf32_vs_fp32", "small"):
        "Left (< 2 %, CNNs with an RGB stem): a convolution with 3 input channels runs on CUDA cores under both "
        "precisions, but only the TF32 path applies the H200-fitted UNALIGNED_CONV_SIMT factor (0.44); FP32 (TF32 "
        "off) ones are deliberately not re-priced (docs/ENERGY_MODEL.md, 'Unaligned input channels': applying it "
        "put DLE's V100 FP32 rows over their target). ResNet-50's 7x7 stem: +1.1 ms forward and backward per "
        "batch of 64 on an RTX 3090.",
}


def _explained(v: dict) -> str | None:
    if v["check"] == "tf32_vs_fp32":  # only the small stem effect is explained; a large gap is a bug
        return EXPLAINED[("tf32_vs_fp32", "small")] if v["tf32_s"] <= 1.02 * v["fp32_s"] else None
    if v["check"] == "power" and v["detail"].startswith("phase optimizer"):  # pipeline stages' optimizer, < 1 %
        ok = int(v["case"].get("pipeline_parallel") or 1) > 1 and v["power_w"] <= 1.01 * v["tdp_w"]
        return EXPLAINED[("power", "pp_optimizer")] if ok else None
    if v["check"] == "batch_monotone":  # only the H200 fitted model's < 1 % wobble near the launch floor
        ok = v["case"].get("gpu") == "h200-sxm-141gb" and v["large"] >= 0.98 * v["small"]
        return EXPLAINED[("batch_monotone", "h200")] if ok else None
    return EXPLAINED.get((v["check"], v["detail"])) or EXPLAINED.get((v["check"], None))
CHECKED: dict[str, int] = {}


def _close(a: float, b: float, rel: float = REL, abs_: float = 1e-12) -> bool:
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


def violate(check: str, case: dict, detail: str, **numbers) -> None:
    VIOLATIONS.append({"check": check, "case": case, "detail": detail,
                       **{k: (round(v, 9) if isinstance(v, float) else v) for k, v in numbers.items()}})


def _count(check: str) -> None:
    CHECKED[check] = CHECKED.get(check, 0) + 1


def _walk_numbers(d, path=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _walk_numbers(v, f"{path}.{k}")
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _walk_numbers(v, f"{path}[{i}]")
    elif isinstance(d, float):
        yield path, d


def check_result(d: dict, case: dict) -> None:
    hw, ps, tot, plan = d["hardware"], d["per_step"], d["total"], d["plan"]
    idle, tdp = hw["idle_w"], hw["tdp_w"]
    _count("finite")
    bad = [p for p, v in _walk_numbers(d) if not math.isfinite(v)]
    if bad:
        violate("finite", case, f"non-finite numbers at {bad[:5]}")
    _count("schema")
    errs = sorted(VALIDATOR.iter_errors(d), key=lambda e: list(e.path))
    if errs:
        violate("schema", case, f"{len(errs)} schema errors, first: {errs[0].message[:200]} at {list(errs[0].path)}")

    # power
    _count("power")
    slack = 2e-5 * tdp  # JSON numbers carry 6 significant digits
    p = ps["avg_gpu_power_w"]
    if not idle - slack <= p <= tdp + slack:
        violate("power", case, "per-step average GPU power outside [idle, TDP]", power_w=p, idle_w=idle, tdp_w=tdp)
    for ph, v in d["phases"].items():
        if v["time_s"] > 0:
            pw = v["gpu_energy_j"] / (v["time_s"] * hw["gpus"])
            if not idle - slack <= pw <= tdp + slack:
                violate("power", case, f"phase {ph} average power outside [idle, TDP]", power_w=pw, idle_w=idle,
                        tdp_w=tdp, phase_time_s=v["time_s"], phase_energy_j=v["gpu_energy_j"])
        elif v["gpu_energy_j"] > 0:
            violate("power", case, f"phase {ph} has energy but no time", phase_energy_j=v["gpu_energy_j"])
    if tot["gpu_hours"] > 0:
        job_w = tot["gpu_energy_kwh"] * 1000.0 / tot["gpu_hours"]
        if not idle - slack <= job_w <= tdp + slack:
            violate("power", case, "job average GPU power (total GPU kWh / GPU-hours) outside [idle, TDP]",
                    power_w=job_w, idle_w=idle, tdp_w=tdp)

    # energy / time consistency (JSON numbers carry 6 significant digits: 1e-5 relative slack)
    _count("energy_consistency")
    j = 2e-5
    steps, gp, gpus = plan["steps"], tot["goodput"], hw["gpus"]
    if not _close(ps["gpu_energy_j"], p * ps["time_s"] * gpus, j):
        violate("energy_consistency", case, "per-step GPU energy (all GPUs) != average power per GPU x step time x "
                "GPUs", energy_j=ps["gpu_energy_j"], power_x_time_j=p * ps["time_s"] * gpus)
    t_h = steps * ps["time_s"] / gp / 3600.0
    if not _close(tot["time_h"], t_h, j):
        violate("energy_consistency", case, "total time_h != steps x step time / goodput", time_h=tot["time_h"],
                expected_h=t_h)
    if not _close(tot["gpu_hours"], tot["time_h"] * gpus, j):
        violate("energy_consistency", case, "gpu_hours != time_h x gpus", gpu_hours=tot["gpu_hours"],
                expected=tot["time_h"] * gpus)
    lost_h = t_h - steps * ps["time_s"] / 3600.0
    e_kwh = ps["gpu_energy_j"] * steps / 3.6e6 + lost_h * idle * gpus / 1000.0
    if not _close(tot["gpu_energy_kwh"], e_kwh, j):
        violate("energy_consistency", case, "total GPU kWh != per-step energy x gpus x steps (+ goodput idle)",
                total_kwh=tot["gpu_energy_kwh"], expected_kwh=e_kwh)

    # facility energy, carbon and cost arithmetic
    _count("totals_arithmetic")
    e = (tot["gpu_energy_kwh"] + tot["host_energy_kwh"]) * plan["pue"]
    if not _close(tot["energy_kwh"], e, j):
        violate("totals_arithmetic", case, "energy_kwh != (GPU + host kWh) x PUE", energy_kwh=tot["energy_kwh"],
                expected=e)
    co2 = tot["energy_kwh"] * plan["carbon_intensity_g_per_kwh"] / 1000.0
    if not _close(tot["co2_kg"], co2, j):
        violate("totals_arithmetic", case, "co2_kg != energy_kwh x gCO2e/kWh / 1000", co2_kg=tot["co2_kg"],
                expected=co2)
    if tot.get("cost_usd") is not None:
        cost = tot["energy_kwh"] * (plan["price_per_kwh"] or 0.0) + tot["gpu_hours"] * (plan["gpu_hour_price"] or 0.0)
        if not _close(tot["cost_usd"], cost, j):
            violate("totals_arithmetic", case, "cost_usd != kWh x price + GPU-hours x GPU-hour price",
                    cost_usd=tot["cost_usd"], expected=cost)
    if tot["host_energy_kwh"] < 0 or ps["host_energy_j"] < 0:
        violate("totals_arithmetic", case, "negative host energy", host_kwh=tot["host_energy_kwh"])

    # per-layer attribution: never more than the step
    layers = d.get("layers") or []
    if layers:
        _count("layers")
        sh = sum(x["share"] for x in layers)
        lt = sum(x["time_s"] for x in layers)
        le = sum(x["gpu_energy_j"] for x in layers)
        # under pipeline parallelism a row's time is one GPU of each stage running it, summed over its stages (the
        # stages run at once: the rows' times add up to at most P x the step's; their energies to the step's)
        pp = int((d.get("plan") or {}).get("pipeline_parallel") or 1)
        if sh > 1 + 1e-4 or lt > ps["time_s"] * pp * (1 + 1e-4) or le > ps["gpu_energy_j"] * (1 + 1e-4):
            violate("layers", case, "layers' shares / times / energies exceed the step's", shares=sh, layers_s=lt,
                    step_s=ps["time_s"], layers_j=le, step_j=ps["gpu_energy_j"])
        if any(x["time_s"] < 0 or x["gpu_energy_j"] < 0 or x["share"] < 0 for x in layers):
            violate("layers", case, "negative layer time / energy / share")

    # phases
    _count("phases")
    st = sum(v["time_s"] for v in d["phases"].values())
    se = sum(v["gpu_energy_j"] for v in d["phases"].values())
    if not _close(st, ps["time_s"], j):
        violate("phases", case, "phase times do not sum to the step time", phases_s=st, step_s=ps["time_s"])
    if not _close(se, ps["gpu_energy_j"], j):
        violate("phases", case, "phase energies do not sum to the step energy", phases_j=se,
                step_j=ps["gpu_energy_j"])

    # MFU / HFU
    u = d.get("utilization") or {}
    for k in ("mfu", "hfu"):
        if u.get(k) is not None:
            _count("mfu_hfu")
            if not 0 < u[k] <= 1:
                violate("mfu_hfu", case, f"{k} outside (0, 1]", value=u[k])

    # ranges
    for k in ("time_h", "gpu_hours", "energy_kwh", "co2_kg"):
        r = tot.get(f"{k}_range")
        if r is not None:
            _count("ranges")
            lo, hi = r
            if not lo * (1 - j) <= tot[k] <= hi * (1 + j):
                violate("ranges", case, f"{k} outside its 5-95 % range", value=tot[k], lo=lo, hi=hi)

    # utilization arithmetic: tokens/s/GPU = batch x seq / (step time x GPUs); MFU = flops/token x tokens/s / peak
    if u.get("tokens_per_s_per_gpu") is not None and plan.get("seq_len"):
        _count("utilization_arithmetic")
        tps = plan["batch_size"] * plan["seq_len"] / (ps["time_s"] * gpus)
        if not _close(u["tokens_per_s_per_gpu"], tps, j):
            violate("utilization_arithmetic", case, "tokens/s/GPU != batch x seq / (step time x GPUs)",
                    reported=u["tokens_per_s_per_gpu"], expected=tps)
        if u.get("mfu") is not None and u.get("model_flops_per_token") and u.get("peak_tflops"):
            mfu = u["model_flops_per_token"] * u["tokens_per_s_per_gpu"] / (u["peak_tflops"] * 1e12)
            if not _close(u["mfu"], mfu, 5e-5):
                violate("utilization_arithmetic", case, "MFU != flops/token x tokens/s/GPU / peak",
                        reported=u["mfu"], expected=mfu)
    if ps["time_s"] <= 0 or ps["flops"] <= 0:
        violate("positive", case, "step time or FLOPs not positive", time_s=ps["time_s"], flops=ps["flops"])

    # memory fits flag
    mem = d["memory"]
    _count("memory_breakdown")
    parts = sum(mem["breakdown"].values())
    if abs(parts - mem["peak_bytes_per_gpu"]) > 16:
        violate("memory_breakdown", case, "memory breakdown does not sum to the peak", parts=parts,
                peak=mem["peak_bytes_per_gpu"])
    if any(v < 0 for v in mem["breakdown"].values()):
        violate("memory_breakdown", case, "negative memory part", breakdown=mem["breakdown"])
    _count("fits")
    if mem["fits"] != (mem["peak_bytes_per_gpu"] <= mem["gpu_memory_bytes"]):
        violate("fits", case, "memory.fits disagrees with peak vs GPU memory", fits=mem["fits"],
                peak=mem["peak_bytes_per_gpu"], gpu_memory=mem["gpu_memory_bytes"])


# ---- the matrix --------------------------------------------------------------------------------------------------

def supported(gpu: str, precision: str) -> bool:
    spec, _ = resolve_gpu(gpu)
    return precision_support(spec, precision)[0]


def single_gpu(ms: dict, gpus: list[str], quick: bool) -> list[dict]:
    """Models x GPUs x precisions x batch sizes x recompute on one GPU; precisions a GPU lacks must be refused."""
    rows = []
    by: dict = {}  # (model, gpu, precision, batch) -> recompute none result
    batches = {"gpt2": (4, 16), "llama": (4, 16), "bert": (8, 32), "mixtral": (4,), "resnet50": (8, 64),
               "gpt2-small": (4,)}
    for name in ("gpt2", "llama", "bert", "mixtral", "resnet50", "gpt2-small"):
        m = ms[name]
        for prec in PRECISIONS:
            for gpu in gpus:
                if not supported(gpu, prec):
                    _count("precision_refusal")
                    try:
                        wattlint.estimate(m["source"], gpu=gpu, precision=prec, steps=10, lint=False,
                                          **({"seq_len": m["seq_len"]} if m["seq_len"] else {}))
                        violate("precision_refusal", {"model": name, "gpu": gpu, "precision": prec},
                                "an unsupported precision was estimated instead of refused")
                    except ConfigError as e:
                        if "\n" in str(e):
                            violate("precision_refusal", {"model": name, "gpu": gpu, "precision": prec},
                                    "refusal is not one line", message=str(e))
                    continue
                for b in batches[name][:1] if quick else batches[name]:
                    recs = ("none", "full") if prec in ("bf16", "fp32") and name != "resnet50" else ("none",)
                    if name in ("gpt2", "llama") and prec == "bf16":
                        recs = ("none", "selective", "full")
                    res = {}
                    for rc in recs:
                        case = {"model": name, "gpu": gpu, "precision": prec, "batch_size": b, "recompute": rc}
                        d = run_estimate(m, name, gpu, precision=prec, batch_size=b, steps=10, recompute=rc)
                        check_result(d, case)
                        res[rc] = d
                        rows.append({**case, "step_s": d["per_step"]["time_s"],
                                     "power_w": d["per_step"]["avg_gpu_power_w"],
                                     "peak_gb": round(d["memory"]["peak_bytes_per_gpu"] / 1e9, 3)})
                    check_recompute(res, {"model": name, "gpu": gpu, "precision": prec, "batch_size": b})
                    by[(name, gpu, prec, b)] = res["none"]
    check_batch_precision(by, batches)
    return rows


def check_batch_precision(by: dict, batches: dict) -> None:
    """A larger batch never shortens the step nor lowers its energy or activations; tf32 is never slower than fp32
    (same bytes, tensor-core math) on a GPU that has both."""
    for (name, gpu, prec, b), d in by.items():
        for b2 in batches[name]:
            d2 = by.get((name, gpu, prec, b2))
            if d2 is None or b2 <= b:
                continue
            _count("batch_monotone")
            case = {"model": name, "gpu": gpu, "precision": prec, "batch": b, "batch2": b2}
            for k, get in (("step time", lambda x: x["per_step"]["time_s"]),
                           ("step energy", lambda x: x["per_step"]["gpu_energy_j"]),
                           ("activations", lambda x: x["memory"]["breakdown"].get("activations", 0))):
                if get(d2) < get(d) * (1 - REL):
                    violate("batch_monotone", case, f"{k} at batch {b2} below batch {b}", small=get(d), large=get(d2))
        if prec == "tf32" and (name, gpu, "fp32", b) in by:
            _count("tf32_vs_fp32")
            t32, tf = by[(name, gpu, "fp32", b)]["per_step"]["time_s"], d["per_step"]["time_s"]
            if tf > t32 * (1 + REL):
                violate("tf32_vs_fp32", {"model": name, "gpu": gpu, "batch": b}, "tf32 step slower than fp32",
                        tf32_s=tf, fp32_s=t32)


def check_recompute(res: dict, case: dict) -> None:
    if "full" not in res:
        return
    _count("recompute")
    t0, tf = res["none"]["per_step"]["time_s"], res["full"]["per_step"]["time_s"]
    a0 = res["none"]["memory"]["breakdown"].get("activations", 0)
    af = res["full"]["memory"]["breakdown"].get("activations", 0)
    if tf < t0 * (1 - REL):
        violate("recompute", case, "full recompute lowered the step time", none_s=t0, full_s=tf)
    if af > a0 * (1 + REL):
        violate("recompute", case, "full recompute raised activation memory", none_bytes=a0, full_bytes=af)
    if "selective" in res:
        ts = res["selective"]["per_step"]["time_s"]
        asel = res["selective"]["memory"]["breakdown"].get("activations", 0)
        if ts < t0 * (1 - REL):
            violate("recompute", case, "selective recompute lowered the step time", none_s=t0, selective_s=ts)
        if asel > a0 * (1 + REL):
            violate("recompute", case, "selective recompute raised activation memory", none_bytes=a0,
                    selective_bytes=asel)


LAYOUTS = {  # gpus -> (label, layout options, models it applies to)
    8: [("dp8", {}, None),
        ("tp2", {"tensor_parallel": 2}, ("gpt2", "llama", "bert", "mixtral")),
        ("pp2", {"pipeline_parallel": 2}, ("gpt2", "llama", "bert", "mixtral")),
        ("cp2", {"context_parallel": 2}, ("gpt2", "llama")),
        ("tp2-sp", {"tensor_parallel": 2, "sequence_parallel": True}, ("gpt2", "llama")),
        ("ep8", {"expert_parallel": 8}, ("mixtral",)),
        ("ep4-tp2", {"expert_parallel": 4, "tensor_parallel": 2}, ("mixtral",))],
    64: [("dp64", {}, None),
         ("tp8", {"tensor_parallel": 8}, ("gpt2", "llama", "llama2-70b")),
         ("tp4-pp2", {"tensor_parallel": 4, "pipeline_parallel": 2}, ("gpt2", "llama", "llama2-70b")),
         ("tp2-cp2-pp2", {"tensor_parallel": 2, "context_parallel": 2, "pipeline_parallel": 2}, ("gpt2", "llama")),
         ("tp8-pp8", {"tensor_parallel": 8, "pipeline_parallel": 8, "micro_batch_size": 1}, ("llama2-70b",)),
         ("ep8", {"expert_parallel": 8}, ("mixtral",))],
    48: [("tp2-pp3", {"tensor_parallel": 2, "pipeline_parallel": 3}, ("gpt2", "llama2-70b")),  # uneven stages
         ("tp8-pp6", {"tensor_parallel": 8, "pipeline_parallel": 6, "micro_batch_size": 1}, ("llama2-70b",)),
         ("pp3-vpp", {"pipeline_parallel": 3, "virtual_pipeline_stages": 2, "micro_batch_size": 1},
          ("gpt2-small",))],
}


def multi_gpu(ms: dict, quick: bool) -> list[dict]:
    """1 / 8 / 64 GPUs x valid layouts x sharding x goodput on A100 80GB and H100 SXM at bf16, same global batch."""
    rows = []
    gpus_list = ["a100-sxm4-80gb"] if quick else ["a100-sxm4-80gb", "h100-sxm5-80gb"]
    for name in ("gpt2", "llama", "bert", "mixtral", "resnet50", "gpt2-small", "llama2-70b"):
        m = ms[name]
        batch = 128 if name != "llama2-70b" else 512
        for gpu in gpus_list:
            base = None
            if name != "llama2-70b":
                base = run_estimate(m, name, gpu, precision="bf16", batch_size=batch, steps=100)
                check_result(base, {"model": name, "gpu": gpu, "gpus": 1, "layout": "single"})
            for n, layouts in LAYOUTS.items():
                for label, lay, only in layouts:
                    if (only is not None and name not in only) or (only is None and name == "gpt2-small"):
                        continue
                    if name == "llama2-70b" and label == "dp64":
                        continue
                    mem = {}
                    for sh in ("none", "zero1", "zero2", "zero3", "fsdp"):
                        case = {"model": name, "gpu": gpu, "gpus": n, "layout": label, "sharding": sh}
                        try:
                            d = run_estimate(m, name, gpu, precision="bf16", batch_size=batch, steps=100, gpus=n,
                                             sharding=sh, **lay)
                        except ConfigError as e:
                            rows.append({**case, "refused": str(e)})
                            continue
                        check_result(d, case)
                        mem[sh] = d["memory"]["peak_bytes_per_gpu"]
                        rows.append({**case, "step_s": d["per_step"]["time_s"], "gpu_hours": d["total"]["gpu_hours"],
                                     "gpu_kwh": d["total"]["gpu_energy_kwh"], "peak_gb": round(mem[sh] / 1e9, 3)})
                        if base is not None and sh == "none":  # the job's work does not shrink by splitting it
                            _count("layout_flops")
                            ratio = d["per_step"]["flops"] / base["per_step"]["flops"]
                            rows[-1]["flops_vs_1gpu"] = round(ratio, 6)
                            if ratio < 1 - REL:
                                violate("layout_flops", case, "the job's FLOPs per step below the 1-GPU step's",
                                        flops=d["per_step"]["flops"], one_gpu=base["per_step"]["flops"])
                        if label.startswith("dp") and sh == "none" and base is not None:
                            _count("dp_gpu_hours")
                            if d["total"]["gpu_hours"] < base["total"]["gpu_hours"] * (1 - REL):
                                violate("dp_gpu_hours", case, "data parallel lowered GPU-hours below 1 GPU's",
                                        gpu_hours=d["total"]["gpu_hours"], one_gpu=base["total"]["gpu_hours"])
                    check_sharding(mem, {"model": name, "gpu": gpu, "gpus": n, "layout": label})
                    if "none" in mem and name not in ("resnet50",):  # recompute on the layout
                        res = {}
                        for rc in ("none", "selective", "full"):
                            d = run_estimate(m, name, gpu, precision="bf16", batch_size=batch, steps=100, gpus=n,
                                             recompute=rc, **lay)
                            check_result(d, {"model": name, "gpu": gpu, "gpus": n, "layout": label, "recompute": rc})
                            res[rc] = d
                        check_recompute(res, {"model": name, "gpu": gpu, "gpus": n, "layout": label})
                    if "none" in mem and not quick and name not in ("resnet50", "llama2-70b"):
                        for kw in ({"optimizer": "sgd"}, {"optimizer": "adam", "sharding": "zero1"},
                                   {"training_stack": "megatron"}, {"training_stack": "megatron", "sharding": "zero1"},
                                   {"batch_size": batch - 8}, {"grad_accum": 2}):
                            args = {"precision": "bf16", "batch_size": batch, "steps": 100, "gpus": n, **lay, **kw}
                            case = {"model": name, "gpu": gpu, "gpus": n, "layout": label, **kw}
                            try:
                                d = run_estimate(m, name, gpu, **args)
                            except ConfigError as e:
                                rows.append({**case, "refused": str(e)})
                                continue
                            check_result(d, case)
                    if label in ("dp8", "tp8") and not quick:  # goodput and steps linearity on one layout
                        check_goodput_steps(m, name, gpu, batch, n, lay)
    return rows


def check_sharding(mem: dict, case: dict) -> None:
    if "none" not in mem:
        return
    _count("sharding")
    for sh in ("zero1", "zero2", "zero3", "fsdp"):
        if sh in mem and mem[sh] > mem["none"] * (1 + REL):
            violate("sharding", {**case, "sharding": sh}, f"{sh} raised peak per-GPU memory vs none",
                    sharded=mem[sh], none=mem["none"])
    order = [s for s in ("zero1", "zero2", "zero3") if s in mem]
    for a, b in zip(order, order[1:]):
        if mem[b] > mem[a] * (1 + REL):
            violate("sharding", case, f"{b} uses more per-GPU memory than {a}", **{a: mem[a], b: mem[b]})


def check_goodput_steps(m, name, gpu, batch, n, lay) -> None:
    kw = dict(precision="bf16", batch_size=batch, gpus=n, **lay)
    a = run_estimate(m, name, gpu, steps=10, **kw)
    b = run_estimate(m, name, gpu, steps=1000, **kw)
    case = {"model": name, "gpu": gpu, "gpus": n, "layout": lay}
    _count("steps_linear")
    for k in ("time_h", "gpu_hours", "gpu_energy_kwh", "energy_kwh"):
        if not _close(b["total"][k], 100 * a["total"][k], 2e-5):
            violate("steps_linear", case, f"total {k} at 1,000 steps != 100 x at 10 steps", at_10=a["total"][k],
                    at_1000=b["total"][k])
    for g in (0.5, 0.9):
        d = run_estimate(m, name, gpu, steps=10, goodput=g, **kw)
        check_result(d, {**case, "goodput": g})
        _count("goodput")
        if not _close(d["total"]["time_h"], a["total"]["time_h"] / g, 2e-5):
            violate("goodput", {**case, "goodput": g}, "time_h != time at goodput 1 / goodput",
                    time_h=d["total"]["time_h"], expected=a["total"]["time_h"] / g)


def gpu_ordering(ms: dict) -> list[dict]:
    """Step time of GEMM-bound LLM steps across GPU generations (bf16; fp16 on V100)."""
    rows = []
    order = [("v100-sxm2-32gb", "a100-sxm4-80gb"), ("a100-sxm4-80gb", "h100-sxm5-80gb"),
             ("h100-sxm5-80gb", "h200-sxm-141gb"), ("h100-sxm5-80gb", "b200-sxm-180gb"),
             ("a100-sxm4-40gb", "h100-pcie-80gb")]
    cases = [("gpt2-small", dict(batch_size=16, steps=10), "single GPU, batch 16 x 1024"),
             ("llama2-70b", dict(batch_size=512, steps=10, gpus=64, tensor_parallel=8, pipeline_parallel=8,
                                 micro_batch_size=1, sharding="zero1"), "64 GPUs TP 8 PP 8")]
    for name, kw, what in cases:
        t = {}
        for gpu in {g for pair in order for g in pair}:
            prec = "bf16" if supported(gpu, "bf16") else "fp16"
            for p in {prec, "fp16"}:
                d = run_estimate(ms[name], name, gpu, precision=p, **kw)
                check_result(d, {"model": name, "gpu": gpu, "precision": p, **kw})
                compute = sum(d["phases"].get(k, {}).get("time_s", 0.0) for k in COMPUTE_PHASES)
                t[(gpu, p)] = (d["per_step"]["time_s"], compute)
                rows.append({"model": name, "setup": what, "gpu": gpu, "precision": p, "step_s": t[(gpu, p)][0],
                             "compute_s": compute})
        for old, new in order:
            for p in ("bf16", "fp16"):
                if (old, p) not in t or (new, p) not in t:
                    continue
                _count("gpu_ordering")
                (t_new, c_new), (t_old, c_old) = t[(new, p)], t[(old, p)]
                if c_new > c_old * (1 + REL):
                    violate("gpu_ordering", {"model": name, "setup": what, "precision": p},
                            f"{new} forward + backward + optimizer predicted slower than {old}'s", new_s=c_new,
                            old_s=c_old)
                elif t_new > t_old * (1 + REL):
                    violate("gpu_ordering_step", {"model": name, "setup": what, "precision": p},
                            f"{new} step predicted slower than {old}'s (its compute phases are faster)", new_s=t_new,
                            old_s=t_old, new_compute_s=c_new, old_compute_s=c_old)
    return rows


OPTION_VARIANTS = [  # one option (or a valid group) at a time on top of a base plan; each result checked
    {}, {"optimizer": "sgd"}, {"optimizer": "adadelta"}, {"optimizer_impl": "fused"}, {"optimizer_impl": "for-loop"},
    {"attention": "eager"}, {"torch_version": "1.10"}, {"torch_version": "2.1"}, {"utilization": 0.5},
    {"utilization": 1.0}, {"utilization": 0.01}, {"pue": 1.0}, {"pue": 3.0}, {"region": "FR"},
    {"carbon_intensity": 0}, {"price_per_kwh": 0.3, "gpu_hour_price": 2.0}, {"host_op_time": 0},
    {"host_op_time": 0.01}, {"launch_overhead": 0}, {"grad_accum": 4}, {"batch_size": 7}, {"batch_size": 1},
    {"tokens": 1e9}, {"epochs": 0.5, "dataset": 100_000}, {"training_stack": "megatron"},
    {"training_stack": "megatron", "loss_impl": "torch"}, {"loss_impl": "fused"},
    {"gpus": 8, "pipeline_parallel": 2, "virtual_pipeline_stages": 2, "micro_batch_size": 1},
    {"gpus": 16, "gpus_per_node": 4, "internode_gbps": 100}, {"gpus": 16, "gpus_per_node": 8, "internode_gbps": 1},
    {"gpus": 8, "tensor_parallel": 8}, {"gpus": 8, "tensor_parallel": 4, "gpus_per_node": 2},
    {"gpus": 1024, "batch_size": 1024}, {"gpus": 4, "pipeline_parallel": 4, "micro_batch_size": 2},
    {"gpus": 8, "context_parallel": 4, "sequence_parallel": True}, {"gpus": 8, "sharding": "zero3", "grad_accum": 2},
]


def options_sweep(ms: dict, quick: bool) -> list[dict]:
    """OPTION_VARIANTS on gpt2 / llama (bf16, batch 32, 10 steps) on a spread of GPUs; refusals recorded."""
    rows = []
    gpus = ["a100-sxm4-80gb"] if quick else ["a100-sxm4-80gb", "h100-sxm5-80gb", "l4-24gb", "mi300x-192gb",
                                              "rtx4090-24gb", "gaudi3-128gb"]
    for name in ("gpt2", "llama"):
        for gpu in gpus:
            for var in OPTION_VARIANTS:
                kw = {"precision": "bf16", "batch_size": 32, **var}
                if not any(k in var for k in ("tokens", "epochs")):
                    kw["steps"] = 10
                case = {"model": name, "gpu": gpu, **var}
                try:
                    d = run_estimate(ms[name], name, gpu, **kw)
                except ConfigError as e:
                    rows.append({**case, "refused": str(e)})
                    if "\n" in str(e):
                        violate("refusal", case, "refusal is not one line", message=str(e))
                    continue
                check_result(d, case)
                rows.append({**case, "step_s": d["per_step"]["time_s"], "power_w": d["per_step"]["avg_gpu_power_w"]})
    return rows


COMPUTE_PHASES = ("forward", "backward", "optimizer")

CLI_SAMPLE = [
    ("gpt2", ["--gpu", "a100", "--precision", "bf16", "--steps", "10"]),
    ("gpt2", ["--gpu", "v100-sxm2-32gb", "--precision", "bf16", "--steps", "10"]),  # refused: exit 2
    ("gpt2", ["--gpu", "t4", "--precision", "tf32", "--steps", "10"]),  # refused: exit 2
    ("llama", ["--gpu", "h100", "--precision", "bf16", "--gpus", "8", "--tensor-parallel", "2", "--sharding",
               "zero2", "--batch-size", "64", "--steps", "10"]),
    ("llama", ["--gpu", "h100", "--precision", "bf16", "--gpus", "8", "--context-parallel", "2", "--batch-size",
               "64", "--steps", "10", "--recompute", "selective"]),
    ("llama", ["--gpu", "h100", "--precision", "bf16", "--gpus", "8", "--tensor-parallel", "3"]),  # refused
    ("gpt2", ["--gpu", "a100", "--precision", "bf16", "--gpus", "64", "--pipeline-parallel", "2",
              "--tensor-parallel", "4", "--batch-size", "128", "--steps", "10", "--goodput", "0.8"]),
    ("mixtral", ["--gpu", "h100", "--precision", "bf16", "--gpus", "8", "--expert-parallel", "8", "--batch-size",
                 "64", "--steps", "10", "--sharding", "fsdp"]),
    ("mixtral", ["--gpu", "h100", "--precision", "bf16", "--gpus", "8", "--expert-parallel", "3"]),  # refused
    ("bert", ["--gpu", "l4", "--precision", "fp16", "--batch-size", "32", "--activation-checkpointing",
              "--steps", "10"]),
    ("resnet50", ["--gpu", "mi300x", "--precision", "bf16", "--batch-size", "64", "--gpus", "8", "--epochs", "1",
                  "--dataset", "imagenet-1k"]),
    ("resnet50", ["--gpu", "rtx4090", "--precision", "fp32", "--batch-size", "64", "--steps", "10"]),
    ("resnet50", ["--gpu", "rtx3090", "--precision", "bf16", "--batch-size", "64", "--goodput", "0.05"]),  # refused
    ("gpt2", ["--gpu", "b200", "--precision", "fp16", "--steps", "10", "--gpus", "8", "--sharding", "zero1"]),
    ("gpt2", ["--gpu", "a100", "--compare", "h100,l4,v100", "--precision", "bf16", "--steps", "10"]),
    ("gpt2", ["--gpu", "gaudi3", "--precision", "bf16", "--tokens", "1e9", "--region", "FR", "--price", "0.2"]),
    ("llama", ["--gpu", "h100", "--precision", "bf16", "--gpus", "8", "--context-parallel", "3"]),  # refused
    ("llama", ["--gpu", "h100", "--precision", "bf16", "--gpus", "8", "--pipeline-parallel", "2",
               "--virtual-pipeline-stages", "2", "--micro-batch-size", "1", "--batch-size", "64", "--steps", "5"]),
    ("llama", ["--gpu", "h100", "--precision", "fp32", "--training-stack", "megatron"]),  # refused
    ("gpt2", ["--gpu", "a100", "--gpus", "64", "--batch-size", "8"]),  # refused: fewer samples than GPUs
    ("gpt2", ["--gpu", "a100", "--precision", "bf16", "--utilization", "1", "--steps", "3", "--attention", "eager",
              "--torch-version", "1.10", "--optimizer-impl", "for-loop"]),
]


def cli(ms: dict, quick: bool) -> list[dict]:
    rows = []
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    for name, args in CLI_SAMPLE[:4] if quick else CLI_SAMPLE:
        m = ms[name]
        argv = [sys.executable, "-m", "wattlint", m["source"], *args, "--format", "json"]
        if m["seq_len"] and "--seq-len" not in args:
            argv += ["--seq-len", str(m["seq_len"])]
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
        case = {"model": name, "args": args}
        _count("cli")
        row = {**case, "rc": r.returncode, "stderr": r.stderr.strip()[-300:]}
        rows.append(row)
        if r.returncode not in (0, 2) or "Traceback" in r.stderr:
            violate("cli", case, f"exit {r.returncode}", stderr=r.stderr[-500:])
        elif r.returncode == 2 and len(r.stderr.strip().splitlines()) != 1:
            violate("cli", case, "exit 2 without exactly one stderr line", stderr=r.stderr[-500:])
        elif r.returncode == 0:
            try:
                d = json.loads(r.stdout)
            except ValueError:
                violate("cli", case, "exit 0 but stdout is not JSON", stdout=r.stdout[:300])
                continue
            docs = d if isinstance(d, list) else d.get("estimates", [d]) if isinstance(d, dict) else []
            for doc in docs:
                if isinstance(doc, dict) and doc.get("schema") == "wattlint.estimate/1":
                    check_result(doc, {**case, "via": "cli"})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--sections", default="single,multi,options,order,cli")
    a = ap.parse_args(argv)
    secs = set(a.sections.split(","))
    t0 = time.perf_counter()
    out: dict = {"method": __doc__, "quick": a.quick}
    with tempfile.TemporaryDirectory() as tmp:
        ms = models(Path(tmp))
        gpus = QUICK_GPUS if a.quick else all_gpus()
        if "single" in secs:
            out["single_gpu"] = single_gpu(ms, gpus, a.quick)
            print(f"single-GPU: {len(out['single_gpu'])} estimates, {time.perf_counter() - t0:.0f} s", flush=True)
        if "multi" in secs:
            out["multi_gpu"] = multi_gpu(ms, a.quick)
            print(f"multi-GPU: {len(out['multi_gpu'])} rows, {time.perf_counter() - t0:.0f} s", flush=True)
        if "options" in secs:
            out["options"] = options_sweep(ms, a.quick)
            print(f"options: {time.perf_counter() - t0:.0f} s", flush=True)
        if "order" in secs:
            out["gpu_ordering"] = gpu_ordering(ms)
            print(f"ordering: {time.perf_counter() - t0:.0f} s", flush=True)
        if "cli" in secs:
            out["cli"] = cli(ms, a.quick)
            print(f"cli: {time.perf_counter() - t0:.0f} s", flush=True)
    by_check: dict[str, int] = {}
    for v in VIOLATIONS:
        by_check[v["check"]] = by_check.get(v["check"], 0) + 1
    for v in VIOLATIONS:
        why = _explained(v)
        if why:
            v["explained"] = why
    unexplained = [v for v in VIOLATIONS if "explained" not in v]
    out["summary"] = {"checked": CHECKED, "violations_by_check": by_check, "violations": len(VIOLATIONS),
                      "unexplained": len(unexplained),
                      "explained": sorted({v["explained"] for v in VIOLATIONS if "explained" in v}),
                      "wall_s": round(time.perf_counter() - t0, 1), **{k: (round(v, 1) if isinstance(v, float) else v)
                                                                      for k, v in STATS.items()}}
    out["violations"] = VIOLATIONS
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(json.dumps(out["summary"], indent=1))
    for v in unexplained[:20]:
        print("UNEXPLAINED", json.dumps(v)[:300])
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
