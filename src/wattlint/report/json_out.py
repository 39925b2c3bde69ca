"""JSON output: the ``wattlint.estimate/1`` contract (DESIGN §7; schemas/estimate.schema.json). Deterministic:
fixed key order, floats rounded to 6 significant digits, no timestamps."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Sequence

from .. import carbon
from ..aggregate import param_counts
from ..memory import peak_band
from ..types import Estimate

SCHEMA = "wattlint.estimate/1"
COMPARE_SCHEMA = "wattlint.comparison/1"


def _r(x: Any) -> Any:
    """Round floats to 6 significant digits (stable text across platforms); recurse into containers."""
    if isinstance(x, bool) or x is None:
        return x
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        if x == 0:
            return 0.0
        return float(f"{x:.6g}")
    if isinstance(x, int):
        return x
    if isinstance(x, dict):
        return {k: _r(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_r(v) for v in x]
    return x


def plan_dict(est: Estimate) -> dict:
    p = est.plan
    return {
        "epochs": p.epochs,
        "steps": p.steps,
        "batch_size": p.batch_size,
        "micro_batch_size": p.micro_batch_size,
        "grad_accum": p.grad_accum,
        "precision": p.precision,
        "optimizer": p.optimizer,
        "sharding": p.sharding,
        "dataset": p.dataset,
        "dataset_size": p.dataset_size,
        "tokens": p.tokens,
        "seq_len": p.seq_len,
        "utilization": p.utilization,
        "activation_checkpointing": p.activation_checkpointing,
        "recompute": p.recompute,
        "pue": p.pue,
        "region": p.region,
        "carbon_intensity_g_per_kwh": p.carbon_intensity_g_per_kwh,
        # the field, or a figure that is not its region's (a Plan changed by dataclasses.replace: review s53)
        "carbon_intensity_given": carbon.intensity_given(p),
        "price_per_kwh": p.price_per_kwh,
        "gpu_hour_price": p.gpu_hour_price,
        "internode_gbps": p.internode_gbps,
        "tensor_parallel": p.tensor_parallel,
        "pipeline_parallel": p.pipeline_parallel,
        "virtual_pipeline_stages": p.virtual_pipeline_stages,
        "context_parallel": p.context_parallel,
        "data_parallel": p.data_parallel,
        "expert_parallel": p.expert_parallel,
        "sequence_parallel": p.sequence_parallel,
        "moe_token_dispatcher_type": p.moe_token_dispatcher_type,
        "overlap_moe_expert_parallel_comm": p.overlap_moe_expert_parallel_comm,
        "launch_overhead_s": p.launch_overhead_s,
        "host_op_s": p.host_op_s,
        "goodput": p.goodput,
        "loader_sample_time_s": p.loader_sample_time_s,
        "training_stack": p.training_stack,
        "loss_impl": p.loss_impl,
        "ddp_bucket_view": p.ddp_bucket_view,
    }


def trainable_params(est: Estimate) -> int:
    """The parameters that require grad: ``ModelInfo.trainable_params`` (-1 there means all of them) plus the
    trainable ones no gradient reached in the traced step (``extra['idle_params']``, which the frontend takes out of
    it), at most all of them."""
    model = est.model
    t = getattr(model, "trainable_params", -1)
    if t is None or t < 0:
        return int(model.params)
    idle = int(((est.graph.extra or {}) if est.graph is not None else {}).get("idle_params") or 0)
    return min(int(model.params), int(t) + idle)


def to_dict(est: Estimate, *, top: int | None = None) -> dict:
    """The contract dict of one estimate. ``top`` limits ``layers`` (None: all)."""
    model = est.model.as_dict()
    model["trainable_params"] = trainable_params(est)  # additive (wattlint.estimate/1): LoRA / frozen layers
    g = est.graph
    if g is not None:  # additive (wattlint.estimate/1): what a token runs, and the inputs the step was traced with
        model["active_params"] = int(round(param_counts(g)["active"]))
        model["inputs"] = [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in g.inputs]
    total = est.total
    layers = est.layers if top is None else est.layers[:top]
    out = {
        "schema": SCHEMA,
        "model": model,
        "hardware": {
            "gpu": est.gpu.key,
            "gpu_name": est.gpu.name,
            "gpus": est.plan.gpus,
            "gpus_per_node": est.plan.gpus_per_node,
            "calibration": est.calibration,
            "calibration_source": est.calibration_source,
            "calibration_coverage": est.calibration_coverage,
            "tdp_w": est.gpu.tdp_w,
            "idle_w": est.gpu.idle_w,
            "idle_estimated": est.gpu.idle_estimated,
        },
        "plan": plan_dict(est),
        "per_step": dataclasses.asdict(est.per_step),
        "total": {
            "time_h": total.time_h,
            "time_h_range": list(total.time_h_range),
            "gpu_hours": total.gpu_hours,
            "gpu_hours_range": list(total.gpu_hours_range),
            "gpu_energy_kwh": total.gpu_energy_kwh,
            "host_energy_kwh": total.host_energy_kwh,
            "energy_kwh": total.energy_kwh,
            "energy_kwh_range": list(total.energy_kwh_range),
            "co2_kg": total.co2_kg,
            "co2_kg_range": list(total.co2_kg_range),
            "cost_usd": total.cost_usd,
            "cost_usd_range": list(total.cost_usd_range) if total.cost_usd_range is not None else None,
            "goodput": total.goodput,
            "loader_wait_h": total.loader_wait_h,
        },
        "utilization": dataclasses.asdict(est.utilization) if est.utilization is not None else None,
        "phases": {ph: dataclasses.asdict(v) for ph, v in est.phases.items()},
        "memory": {
            "peak_bytes_per_gpu": est.memory.peak_bytes_per_gpu,
            "gpu_memory_bytes": est.memory.gpu_memory_bytes,
            "fits": est.memory.fits,
            # additive (older consumers read fits): the verdict with the memory model's error band, and the band
            "verdict": est.memory.verdict,
            "peak_bytes_per_gpu_range": list(peak_band(est.memory.peak_bytes_per_gpu)),
            "breakdown": dict(est.memory.breakdown),
        },
        "layers": [{"name": le.name, "type": le.type, "flops": le.flops, "time_s": le.time_s,
                    "gpu_energy_j": le.gpu_energy_j, "share": le.share} for le in layers],
        "findings": [f.as_dict() for f in est.findings],
        "ops": {"count": len(g.records) if g else 0, "unsupported": g.unsupported() if g else {}},
        "provenance": {
            "energy_model": f"{est.calibration}: {est.calibration_source}",
            "gpu_spec": dict(sorted((est.gpu.sources or {}).items())),
            "unconfirmed_spec_fields": list(est.gpu.unconfirmed),
        },
        "assumptions": list(est.assumptions),
    }
    return _r(out)


def most_efficient(ests: Sequence[Estimate]) -> int:
    """Index of the estimate with the least facility energy among those whose memory verdict is the best of them
    (fits with the memory model's error band to spare, else tight, else all: a tight GPU may run out of memory)."""
    from ..types import VERDICTS

    best = min(VERDICTS.index(e.memory.verdict) for e in ests)
    pool = [i for i, e in enumerate(ests) if VERDICTS.index(e.memory.verdict) == best]
    return min(pool, key=lambda i: (ests[i].total.energy_kwh, ests[i].gpu.key))


def most_efficient_why(ests: Sequence[Estimate]) -> str:
    """What the ★ of :func:`most_efficient` means for these estimates (the reports' one sentence), with the PUE each
    GPU's facility energy carries where they differ (a desktop card's default is a desk-side 1.0, a data-centre
    card's 1.2: plan.default_pue; review: the ranking mixed them without a word)."""
    verdicts = {e.memory.verdict for e in ests}
    why = ("least facility energy among GPUs where the model fits" if "fits" in verdicts else
           "least facility energy among GPUs where the model may fit (tight: none holds it with the memory model's "
           "error band to spare): see memory" if "tight" in verdicts else
           "least facility energy; the model fits on none of these GPUs as planned: see memory")
    best, planned = ests[most_efficient(ests)], ests[0]
    if best is not planned:
        # the pick is by energy alone: say when it is slower than the planned GPU, or runs another precision (a GPU
        # without the plan's precision is costed at its fallback), so a reader does not take it for a free win
        # (review: an A10 picked at 3.9x the H100's time, a T4 running bf16 as fp16, with nothing said)
        t0, t1 = planned.total.time_h, best.total.time_h
        if t0 > 0 and t1 > t0 * 1.01:
            why += f"; it takes {t1 / t0:.2f}x the time of {planned.gpu.key}, the planned GPU"
        if best.plan.precision != planned.plan.precision:
            why += f"; it runs {planned.plan.precision} as {best.plan.precision}"
    pues: dict[float, list[str]] = {}
    for e in ests:
        pues.setdefault(round(float(e.plan.pue), 4), []).append(e.gpu.key)
    if len(pues) > 1:
        why += ("; each at its own machine's PUE: " + ", ".join(f"{p:g} for {', '.join(keys)}" for p, keys in
                                                            sorted(pues.items()))
                + " (--pue sets one for all)")
    return why


# the energy models in the order of preference (measured > public-fit > transferred > prior), and what each one is, for the note of
# a comparison whose rows use several (README: provenance)
_MODEL_ORDER = ("measured", "public-fit", "transferred", "prior")  # energy.public_fit.choose_predictor
_MODEL_WHAT = {"measured": "calibrated on that GPU",
               "transferred": "another GPU's calibration carried over",
               "public-fit": "fitted on public kernel timings of other GPUs, the spec-sheet prior for the rest",
               "prior": "spec-sheet physics, no fit"}


def energy_models_by_gpu(ests: Sequence[Estimate]) -> dict[str, str]:
    """GPU key -> the energy model (calibration label) its row of a comparison is priced by."""
    return {e.gpu.key: e.calibration for e in ests}


def energy_model_mix_note(ests: Sequence[Estimate]) -> str:
    """The note of a comparison whose GPUs are priced by different energy models ('' when one model prices them
    all): which GPU uses which, and that the differences between those rows (and so the ★ pick) partly reflect the
    models, not the hardware (walk 48: a measured H200 SXM ranked 1.5x slower than the H200 NVL, the same chip
    power-capped, because the calibrated model prices the run slower than the public-fit/prior one)."""
    groups: dict[str, list[str]] = {}
    for e in ests:
        keys = groups.setdefault(e.calibration, [])
        if e.gpu.key not in keys:
            keys.append(e.gpu.key)
    if len(groups) < 2:
        return ""
    order = sorted(groups, key=lambda m: (_MODEL_ORDER.index(m) if m in _MODEL_ORDER else len(_MODEL_ORDER), m))
    which = "; ".join(f"{m} for {', '.join(groups[m])}" + (f" ({_MODEL_WHAT[m]})" if m in _MODEL_WHAT else "")
                      for m in order)
    closest = order[0]
    why = ("the measured model is the one calibrated on its GPU (its accuracy there: docs/accuracy/measured.md)"
           if closest == "measured" else
           f"{closest} ranks first in wattlint's order of preference (measured > public-fit > transferred > prior), "
           "each model's accuracy is in docs/ACCURACY.md")
    return (f"these GPUs are priced by different energy models: {which}. Differences between rows of different "
            f"models, and the ★ pick among them, partly reflect the models, not the hardware; {why}")


def compare_dict(ests: Sequence[Estimate], *, top: int | None = None) -> dict:
    best = most_efficient(ests)
    out = {
        "schema": COMPARE_SCHEMA,
        "most_energy_efficient": ests[best].gpu.key,
        "most_energy_efficient_why": most_efficient_why(ests),
        "energy_models": energy_models_by_gpu(ests),
    }
    note = energy_model_mix_note(ests)
    if note:
        out["energy_model_note"] = note
    out["estimates"] = [to_dict(e, top=top) for e in ests]
    return _r(out)


def dumps(obj: dict) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def render(ests: Sequence[Estimate], *, top: int | None = None) -> str:
    if len(ests) == 1:
        return dumps(to_dict(ests[0], top=top))
    return dumps(compare_dict(ests, top=top))
