"""What the human-readable reports show, as rows of strings: summary, per-phase, layers, GPU comparison.

Text, Markdown and HTML lay these out; the numbers and units are decided once, here: one unit per column (the unit
the column's largest value reads best in), 5-95 % ranges in the unit of their central value, and every string that
can come from the user's model (names, types, messages) passed through :func:`clean`, so a layer named
``x\\n::error ...`` cannot inject lines into a terminal or a CI log.
"""

from __future__ import annotations

import re
from typing import Sequence

from .. import carbon
from ..aggregate import ENERGY_MODEL_NOTE, MFU_CONVENTION_TRACED, UNCONFIRMED_NOTE, param_counts
from ..memory import VERDICT_BAND
from ..types import Estimate
from . import units as u
from .json_out import most_efficient, trainable_params
from .layers import group_layers, shorten

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean(text) -> str:
    """``text`` with control, line-separator and bidirectional-override characters escaped as ``\\xNN``/``\\uNNNN``."""
    def esc(m: re.Match) -> str:
        c = ord(m.group())
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"

    return _CONTROL.sub(esc, str(text))


def energy_model_source(est: Estimate) -> str:
    """The energy model's source line, with the share of the step it prices when that is not all of it (a
    public-fit or calibrated model prices the op kinds and sizes it was fitted on; the spec-sheet prior the rest)."""
    src = est.calibration_source
    c = est.calibration_coverage
    if est.calibration != "prior" and c < 0.995:
        src += f"; it priced {c:.0%} of this step's op time, the spec-sheet prior the rest"
    return src


def model_headline(est: Estimate) -> str:
    """What the header line says of the model beyond its size: a Hugging Face config without (known)
    ``architectures`` is built as its base model, so no task head (LM / classification head and its loss) is
    costed; said where the eye lands, not only in the assumptions."""
    cls = (est.graph.extra or {}).get("no_task_head") if est.graph is not None else None
    return (f" · {cls}: the base model, no task head or loss costed (the config names no architectures known to "
            f"transformers)") if cls else ""


def params_headline(est: Estimate) -> str:
    """What the header says after the parameter count: for a mixture-of-experts model the parameters active per
    token (all but the routed experts a token does not use, :func:`wattlint.aggregate.param_counts`; embedding tables
    included, which a model card may leave out: gpt-oss's counts neither its untied input embedding), and the
    trainable parameters no gradient reached in the traced step (a tower its inputs do not run); first, when not
    every parameter trains (LoRA adapters, a frozen backbone), the trainable count and share: '(16.4 k trainable,
    0.89 %)'; '' otherwise."""
    parts = []
    n, tr = est.model.params, trainable_params(est)
    if 0 <= tr < n:
        pct = 100.0 * tr / n
        parts.append(f"{u.count(tr)} trainable, {pct:.2f} %" if pct < 10 else f"{u.count(tr)} trainable, {pct:.1f} %")
    if est.graph is None:
        return f" ({'; '.join(parts)})" if parts else ""
    c = param_counts(est.graph)
    if c["inactive_experts"] > 0:
        parts.append(f"{u.count(c['active'])} active per token, embedding tables included")
    if c["idle"] > 0:
        parts.append(f"{u.count(c['idle'])} get no gradient in the traced step")
    return f" ({'; '.join(parts)})" if parts else ""


def energy_model_headline(est: Estimate) -> str:
    """What follows the energy model's name in a report's header: the share of the step it priced, and where its
    source is stated (once, under Provenance)."""
    c = est.calibration_coverage
    share = f"{c:.0%} of the op time, the spec-sheet prior the rest; " if est.calibration != "prior" and c < 0.995 \
        else ""
    return f" ({share}source under Provenance)"


def report_assumptions(est: Estimate) -> list[str]:
    """The assumption lines a one-GPU report lists: all of them but those its Provenance section states (the
    energy model's source and the GPU's unconfirmed spec values), which were printed twice."""
    restated = (ENERGY_MODEL_NOTE, f"{est.gpu.key}{UNCONFIRMED_NOTE}")
    return [a for a in est.assumptions if not a.startswith(restated)]


def plan_line(est: Estimate) -> str:
    p = est.plan
    parts = []
    work = f"{p.epochs:g} epoch{'' if p.epochs == 1 else 's'}" if p.epochs is not None else ""
    if p.dataset:
        work += (" of " if work else "") + p.dataset
        work += f" ({u.count(p.dataset_size)} samples)" if p.dataset_size else ""
    elif p.dataset_size:  # --dataset 50000: the sample count is the dataset (review: the plan line dropped it)
        work += f"{' of ' if work else ''}{u.count(p.dataset_size)} samples"
    if work:
        parts.append(work)
    steps = f"{u.count(p.steps)} step{'' if p.steps == 1 else 's'}"
    if p.tokens:
        parts.append(f"{u.count(p.tokens)} tokens")
        run = p.steps * p.batch_size * (p.seq_len or 0)
        if run and run > p.tokens * 1.005:  # whole steps: the last one is costed in full (review: '100 tokens')
            steps += f" = {u.count(run)} tokens costed (whole steps)"
    parts.append(steps)
    if p.tensor_parallel * p.pipeline_parallel * p.context_parallel > 1 or p.expert_parallel > 1:
        parts.append(f"batch {p.batch_size} (micro {p.micro_batch_size} x accum {p.grad_accum} x {p.data_parallel} "
                     f"DP) on {p.gpus} GPUs = TP {p.tensor_parallel} x "
                     + (f"CP {p.context_parallel} x " if p.context_parallel > 1 else "")
                     + f"PP {p.pipeline_parallel} x DP {p.data_parallel}" + (f", EP {p.expert_parallel}" if p.expert_parallel > 1 else "")
                     + (f", interleaved {p.virtual_pipeline_stages} chunks per stage"
                        if p.virtual_pipeline_stages > 1 else "")
                     + (", sequence parallel" if p.sequence_parallel else ""))
    else:
        parts.append(f"batch {p.batch_size} (micro {p.micro_batch_size} x accum {p.grad_accum} x {p.gpus} GPU)")
    parts.append(f"{p.precision}, {p.optimizer}" + (f", {p.sharding}" if p.sharding != "none" else ""))
    return clean(" · ".join(parts))


def memory_cell(mem) -> str:
    """What the summary says of the peak against the usable memory, by the three-way verdict
    (wattlint.memory.memory_verdict): a peak within the memory model's error band of the capacity says plainly that
    it may run out of memory and what to change (the boolean alone called a 0.95 peak 'fits': a 7B LoRA run at that
    fraction of an A100 40GB went out of memory)."""
    cap = mem.gpu_memory_bytes
    verdict = mem.verdict
    if verdict == "fits":
        return f"of {u.bytes_(cap)} usable: fits"
    if verdict == "does_not_fit":
        return f"of {u.bytes_(cap)} usable: DOES NOT FIT"
    lo, hi = VERDICT_BAND
    unit = u.pick([mem.peak_bytes_per_gpu, cap], u.BYTES)
    pct = 100.0 * mem.peak_bytes_per_gpu / cap if cap else float("inf")
    peak = u.in_unit(mem.peak_bytes_per_gpu, unit).rsplit(" ", 1)[0]  # "36.9 of 39.4 GiB": one unit, named once
    return (f"tight: {peak} of {u.in_unit(cap, unit)} usable ({pct:.0f} %) — "
            f"within the memory model's error band (public peaks {lo:.2f}–{hi:.2f}x the prediction); may run out of "
            f"memory: try a smaller --micro-batch-size or --recompute")


def summary_rows(est: Estimate) -> list[tuple[str, str]]:
    t = est.total
    mem = est.memory
    rows = [
        ("Energy (facility)", f"{u.energy_kwh(t.energy_kwh)}  (5–95 %: "
                              f"{u.range_kwh(*t.energy_kwh_range, central=t.energy_kwh)})"),
        ("  GPU energy", u.energy_kwh(t.gpu_energy_kwh)),
        ("Time", f"{u.hours(t.time_h)}  (5–95 %: {u.range_hours(*t.time_h_range, central=t.time_h)})"),
        ("GPU-hours", f"{u.gpu_hours(t.gpu_hours)}  (5–95 %: "
                      f"{u.range_gpu_hours(*t.gpu_hours_range, central=t.gpu_hours)})"),
        ("CO2", f"{u.co2_kg(t.co2_kg)}  (5–95 %: {u.range_co2_kg(*t.co2_kg_range, central=t.co2_kg)})  at "
                f"{_intensity(est.plan.carbon_intensity_g_per_kwh)} g/kWh"
                + (f" ({label})" if (label := carbon.headline_region_label(
                    est.plan.region, carbon.intensity_given(est.plan))) else "")),
        (_cost_label(est.plan), (u.usd(t.cost_usd) + (f"  (5–95 %: {u.usd(t.cost_usd_range[0])} – "
                                                      f"{u.usd(t.cost_usd_range[1])})" if t.cost_usd_range else ""))
         if t.cost_usd is not None else "— (give --price and/or --gpu-hour-price)"),
        ("Memory per GPU", f"{u.bytes_(mem.peak_bytes_per_gpu)}  ({memory_cell(mem)})"),
    ]
    if t.goodput < 1:
        waits = " and loader waits" if t.loader_wait_h > 0 else ""
        rows.insert(3, ("Goodput", f"{t.goodput * 100:.4g}% of wall time in productive steps{waits} (time and "
                                   f"GPU-hours include the rest)"))
    if t.loader_wait_h > 0:
        rows.insert(3, ("  data-loader wait", f"{u.hours(t.loader_wait_h)}  (each epoch's first batch, "
                                              "--loader-sample-time; in Time)"))
    ut = est.utilization
    if ut is not None:
        below = "; why HFU sits below MFU: Assumptions" if ut.hfu < ut.mfu else ""
        rows.append(("Throughput", f"{ut.tokens_per_s_per_gpu:,.0f} tokens/s/GPU {TOKENS_RATE_SCOPE} · MFU {u.pct(ut.mfu)} · HFU "
                                   f"{u.pct(ut.hfu)}  (MFU: {_mfu_basis(ut)}, {ut.peak_tflops:g} "
                                   f"TFLOP/s dense peak{below})"))
    return rows


# the tokens/s/GPU figure is the step's rate: goodput losses (and data-loader waits) are not in it, as the time is
TOKENS_RATE_SCOPE = "in productive steps"


def _cost_label(*plans, word: str = "Cost") -> str:
    """What the cost adds up: electricity (--price), GPU rental (--gpu-hour-price) or both; a bare "Cost" next to an
    electricity-only figure reads as the run's whole price. Several plans (a comparison's): what any of them adds."""
    parts = [w for w, key in (("electricity", "price_per_kwh"), ("GPU-hours", "gpu_hour_price"))
             if any(getattr(p, key) for p in plans)]  # electricity at 0: included in a GPU-hour price (review:
    # the label still named it)
    return f"{word} ({' + '.join(parts)})" if parts else word


def _mfu_basis(ut) -> str:
    """The model FLOPs per token MFU counts, as :func:`wattlint.aggregate.utilization` chose them (its
    ``convention``): the traced forward + backward FLOPs where 6N does not count the model (MFU_CONVENTION_TRACED:
    Whisper's long encoder input, ALBERT's shared layer; review 2026-12: labelled '6N + attention' all the same),
    else 6N + attention: 6N_active for a mixture-of-experts model (MFU_CONVENTION_MOE), less 2N_frozen for frozen
    weights and 2N_forward_only more for the frozen ones backward never runs through."""
    if ut.convention.startswith(MFU_CONVENTION_TRACED):
        return "traced model FLOPs/token"
    n = "6N_active" if "N_active" in ut.convention else "6N"
    if "N_frozen" in ut.convention:
        n += " - 2N_frozen"
    if "N_forward_only" in ut.convention:  # frozen weights backward never runs through (aggregate.utilization)
        n += " - 2N_forward_only"
    return f"{n} + attention FLOPs/token"


def step_line(est: Estimate) -> str:
    ps = est.per_step
    return (f"{u.duration(ps.time_s)} · {u.energy_j(ps.gpu_energy_j)} GPU + {u.energy_j(ps.host_energy_j)} host · "
            f"{u.power_w(ps.avg_gpu_power_w)} average per GPU · {u.flops(ps.flops)}")


def launch_bound_share(est: Estimate) -> float:
    gaps = est.phases["idle_gaps"].time_s if "idle_gaps" in est.phases else 0.0
    return gaps / est.per_step.time_s if est.per_step.time_s > 0 else 0.0


PHASE_HEADER = ["phase", "time / step", "GPU energy / step", "share"]


def phase_rows(est: Estimate) -> list[list[str]]:
    names = list(est.phases)
    times = u.column([v.time_s for v in est.phases.values()], u.DURATION)
    energies = u.column([v.gpu_energy_j for v in est.phases.values()], u.ENERGY_J)
    tot = sum(v.gpu_energy_j for v in est.phases.values()) or 1.0
    return [[n, t, e, u.pct(v.gpu_energy_j / tot)] for n, t, e, v in zip(names, times, energies, est.phases.values())]


LAYER_HEADER = ["layer", "type", "FLOPs/step", "energy/step", "share"]


def layer_name(name: str, count: int, width: int | None = None, group_by: str = "block") -> str:
    """``name (xN)`` for merged rows (N repeats of one block / module type), ``name (N modules)`` under ``depth``
    grouping (N different modules under one path), the name shortened on dot boundaries to fit ``width`` with its
    suffix."""
    suffix = (f" ({count} modules)" if group_by == "depth" else f" (x{count})") if count > 1 else ""
    if width is not None:
        name = shorten(name, max(8, width - len(suffix)))
    return name + suffix


def layer_rows(est: Estimate, top: int, group_by: str = "block", depth: int = 2):
    """(title, rows, groups): rows are [name, type, flops, energy, share] strings (name without the (xN) / (N modules) count;
    see :func:`layer_name`) for the ``top`` groups by energy, FLOPs and energy each in one unit."""
    groups = group_layers(est.layers, group_by, depth)
    shown = groups[:top]
    flops = u.column([g.flops for g in shown], u.FLOP)
    energy = u.column([g.gpu_energy_j for g in shown], u.ENERGY_J)
    rows = [[clean(g.name), clean(g.type), f, e, u.pct(g.share)] for g, f, e in zip(shown, flops, energy)]
    what = {"block": "layers (repeated blocks merged)", "name": "layers", "type": "module types",
            "depth": f"modules at depth {depth}"}[group_by]
    title = f"Top {len(shown)} {what} by energy (of {len(groups)})" + (f"; {layer_caption(est)}"
                                                                       if layer_caption(est) else "")
    return title, rows, shown


def layer_caption(est: Estimate) -> str:
    """What a layer row covers under pipeline parallelism (aggregate lists every stage's layers, each at the GPUs of
    its stage: docs/PARALLEL.md): a block row '(xN)' stands for N of the model's blocks, the LM head and final norm
    are counted once, and the rows add up to the step's forward, backward and optimizer energy. Empty without
    pipeline parallelism."""
    pp = int(getattr(est.plan, "pipeline_parallel", 1) or 1)
    if pp <= 1:
        return ""
    n = est.plan.gpus // pp
    return (f"pipeline parallel {pp}: every stage's layers, each at the {n:,} GPU{'' if n == 1 else 's'} of its stage, "
            f"so a block row (xN) covers N of the model's blocks and the LM head and final norm are counted once "
            f"(the rows add up to the step's forward, backward and optimizer energy: Assumptions)")


COMPARE_HEADER = ["GPU", "time", "GPU-hours", "energy", "energy 5–95 %", "CO2", "cost", "memory / GPU", "fits",
                  "model"]


def compare_findings(ests: Sequence[Estimate], skip: int | None = None) -> list[tuple[str, object]]:
    """(GPU key, finding) of every GPU of a comparison, in GPU order, errors first within a GPU (a GPU the model
    does not fit says so); ``skip``: the index of a GPU whose findings are shown elsewhere (the HTML detail)."""
    rank = {"error": 0, "warning": 1, "info": 2}
    return [(e.gpu.key, f) for i, e in enumerate(ests) if i != skip
            for f in sorted(e.findings, key=lambda f: rank.get(f.severity, 3))]


def compare_model_cell(est: Estimate) -> str:
    """The energy model of a compare row, with the share of the step's op time it priced when that is not all of it
    (public-fit prices 6 % of a ResNet-50 step on some GPUs: the row is mostly the spec-sheet prior's)."""
    c = est.calibration_coverage
    return f"{est.calibration} ({c:.0%} of op time)" if est.calibration != "prior" and c < 0.995 else est.calibration


def compare_rows(ests: Sequence[Estimate]) -> tuple[list[str], list[list[str]], int]:
    """One row per GPU; each numeric column in one unit. A GPU costed at another precision than the plan line's
    (a --compare candidate without it: its fallback, stated in the assumptions) names it after its key."""
    best = most_efficient(ests)
    planned = ests[0].plan.precision if ests else ""
    time_unit = u.pick([e.total.time_h * 3600 for e in ests], u.DURATION)
    gh_unit = u.pick([e.total.gpu_hours for e in ests], u.GPU_HOURS)
    kwh_unit = u.pick([e.total.energy_kwh for e in ests], u.ENERGY_KWH)
    co2_unit = u.pick([e.total.co2_kg for e in ests], u.CO2_KG)
    mem_unit = u.pick([e.memory.peak_bytes_per_gpu for e in ests], u.BYTES)
    rows = []
    header = list(COMPARE_HEADER)
    # what the cost column adds up, as the one-GPU report's label says it (review: a bare 'cost' read as the whole
    # price where it was electricity only)
    header[header.index("cost")] = _cost_label(*(e.plan for e in ests), word="cost")
    for i, e in enumerate(ests):
        t = e.total
        lo, hi = t.energy_kwh_range
        rows.append([
            ("★ " if i == best else "") + f"{e.gpu.key} x{e.plan.gpus}"
            + (f" (as {e.plan.precision})" if e.plan.precision != planned else ""),
            u.in_unit(t.time_h * 3600, time_unit),
            u.in_unit(t.gpu_hours, gh_unit),
            u.in_unit(t.energy_kwh, kwh_unit),
            f"{u.in_unit(lo, kwh_unit)} – {u.in_unit(hi, kwh_unit)}",
            u.in_unit(t.co2_kg, co2_unit),
            u.usd(t.cost_usd),
            u.in_unit(e.memory.peak_bytes_per_gpu, mem_unit),
            {"fits": "yes", "tight": "tight", "does_not_fit": "NO"}[e.memory.verdict],
            compare_model_cell(e),
        ])
    return header, rows, best


def _intensity(g_per_kwh: float) -> str:
    """A grid intensity as given: one decimal (56, 369.5), two significant digits below 0.1 g/kWh (0.04 read 0);
    rounded half-up on its decimal text (carbon.shown: Germany's 380.95 reads 381, not binary rounding's 380.9)."""
    return carbon.shown(g_per_kwh) if g_per_kwh >= 0.1 or g_per_kwh == 0 else carbon.shown(g_per_kwh, significant=2)


def compare_assumption_lines(ests, *, provenance_apart: bool = False) -> list[str]:
    """The assumptions of a comparison, each once: a line every compared GPU shares as it is, a line only some
    have led by their keys (``[v100] --precision bf16 is not available ...``), so that a reader can tell whose
    fallback precision, host power or price each one is. ``provenance_apart``: without the lines a report's
    Provenance section states per GPU (:func:`report_assumptions`)."""
    keys = [e.gpu.key for e in ests]
    owners: dict[str, list[str]] = {}
    for e in ests:
        for a in (report_assumptions(e) if provenance_apart else e.assumptions):
            owners.setdefault(a, [])
            if e.gpu.key not in owners[a]:
                owners[a].append(e.gpu.key)
    return [a if len(who) == len(set(keys)) else f"[{', '.join(who)}] {a}" for a, who in owners.items()]
