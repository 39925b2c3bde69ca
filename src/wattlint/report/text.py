"""Terminal report (rich): summary, per-phase, top-N layers with an energy bar chart, findings, assumptions,
provenance; and the side-by-side ``--compare`` table. rich is imported only here, when a text report is made."""

from __future__ import annotations

import io
from typing import Sequence

from ..types import Estimate
from . import units as u
from .json_out import most_efficient

BAR_WIDTH = 24


def _bar(share: float, width: int = BAR_WIDTH) -> str:
    blocks = " ▏▎▍▌▋▊▉█"
    cells = max(0.0, min(1.0, share)) * width
    full = int(cells)
    rest = int(round((cells - full) * 8))
    if rest == 8:
        full, rest = full + 1, 0
    return "█" * full + (blocks[rest] if rest and full < width else "")


def _console(color: bool, width: int):
    from rich.console import Console

    return Console(file=io.StringIO(), width=width, force_terminal=color, color_system="standard" if color else None,
                   highlight=False, emoji=False, soft_wrap=False)


def summary_rows(est: Estimate) -> list[tuple[str, str]]:
    t = est.total
    lo, hi = t.energy_kwh_range
    mem = est.memory
    fits = "fits" if mem.fits else "DOES NOT FIT"
    return [
        ("Energy (facility)", f"{u.energy_kwh(t.energy_kwh)}  (5–95 %: {u.range_kwh(lo, hi)})"),
        ("  GPU energy", u.energy_kwh(t.gpu_energy_kwh)),
        ("Time", f"{u.hours(t.time_h)}  (5–95 %: {u.range_hours(*t.time_h_range)})"),
        ("GPU-hours", f"{u.gpu_hours(t.gpu_hours)}  (5–95 %: {u.range_gpu_hours(*t.gpu_hours_range)})"),
        ("CO2", f"{u.co2_kg(t.co2_kg)}  at {est.plan.carbon_intensity_g_per_kwh:g} g/kWh"
                + (f" ({est.plan.region})" if est.plan.region else "")),
        ("Cost", u.usd(t.cost_usd) if t.cost_usd is not None else "— (give --price and/or --gpu-hour-price)"),
        ("Memory per GPU", f"{u.bytes_(mem.peak_bytes_per_gpu)} of {u.bytes_(mem.gpu_memory_bytes)}: {fits}"),
    ]


def plan_line(est: Estimate) -> str:
    p = est.plan
    parts = []
    work = f"{p.epochs:g} epochs" if p.epochs is not None else ""
    if p.dataset:
        work += (" of " if work else "") + p.dataset
        work += f" ({u.count(p.dataset_size)} samples)" if p.dataset_size else ""
    if work:
        parts.append(work)
    if p.tokens:
        parts.append(f"{u.count(p.tokens)} tokens")
    parts.append(f"{u.count(p.steps)} steps")
    parts.append(f"batch {p.batch_size} (micro {p.micro_batch_size} x accum {p.grad_accum} x {p.gpus} GPU)")
    parts.append(f"{p.precision}, {p.optimizer}" + (f", {p.sharding}" if p.sharding != "none" else ""))
    return " · ".join(parts)


def render_one(est: Estimate, *, top: int = 10, color: bool = False, width: int = 110) -> str:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    con = _console(color, width)
    m = est.model
    gpu = est.gpu
    con.print(Text(f"wattlint estimate: {m.source}", style="bold"))
    con.print(f"{m.format} model · {u.count(m.params)} parameters · {u.bytes_(m.param_bytes)}")
    con.print(f"GPU {gpu.name} ({gpu.key}) x {est.plan.gpus} · energy model: [bold]{est.calibration}[/] "
              f"({est.calibration_source})")
    con.print(f"Plan: {plan_line(est)}")
    con.print()
    t = Table(box=box.SIMPLE_HEAVY, show_header=False, pad_edge=False)
    t.add_column("", style="bold")
    t.add_column("")
    for k, v in summary_rows(est):
        style = "red" if "NOT FIT" in v else None
        t.add_row(k, Text(v, style=style) if style else v)
    con.print(t)

    ps = est.per_step
    con.print(Text("Per optimizer step", style="bold"))
    con.print(f"  {u.duration(ps.time_s)} · {u.energy_j(ps.gpu_energy_j)} GPU + {u.energy_j(ps.host_energy_j)}"
              f" host · {u.power_w(ps.avg_gpu_power_w)} average per GPU · {u.flops(ps.flops)}")
    gaps = (est.phases["idle_gaps"].time_s if "idle_gaps" in est.phases else 0.0)
    if ps.time_s > 0 and gaps / ps.time_s > 0.1:
        con.print(Text(f"  launch-bound: the GPU waits for the CPU {gaps / ps.time_s:.0%} of each step (small "
                       f"batch or model); a larger --batch-size, CUDA graphs or torch.compile would help",
                       style="yellow"))
    ph = Table(box=box.SIMPLE, pad_edge=False)
    for col, just in (("phase", "left"), ("time / step", "right"), ("GPU energy / step", "right"),
                      ("share", "right")):
        ph.add_column(col, justify=just)
    tot_e = sum(v.gpu_energy_j for v in est.phases.values()) or 1.0
    for name, v in est.phases.items():
        ph.add_row(name, u.duration(v.time_s), u.energy_j(v.gpu_energy_j), u.pct(v.gpu_energy_j / tot_e))
    con.print(ph)

    n = min(top, len(est.layers))
    if n:
        con.print(Text(f"Top {n} layers by energy (of {len(est.layers)})", style="bold"))
        lt = Table(box=box.SIMPLE, pad_edge=False)
        lt.add_column("layer", overflow="fold", max_width=44)
        lt.add_column("type")
        lt.add_column("FLOPs/step", justify="right")
        lt.add_column("GPU energy/step", justify="right")
        lt.add_column("share", justify="right")
        lt.add_column("energy by layer", no_wrap=True)
        top_share = max((le.share for le in est.layers[:n]), default=1.0) or 1.0
        for le in est.layers[:n]:
            lt.add_row(le.name, le.type, u.flops(le.flops), u.energy_j(le.gpu_energy_j), u.pct(le.share),
                       Text(_bar(le.share / top_share), style="green"))
        con.print(lt)

    if est.findings:
        con.print(Text("Findings", style="bold"))
        for f in est.findings:
            style = {"error": "bold red", "warning": "yellow"}.get(f.severity, "cyan")
            where = f" [{f.layer}]" if f.layer else ""
            saving = ""
            con.print(Text(f"  {f.code} {f.severity}{where}: {f.message}{saving}", style=style))
        con.print()
    con.print(Text("Assumptions", style="bold"))
    for a in est.assumptions:
        con.print(f"  • {a}", markup=False, highlight=False)
    con.print(Text("Provenance", style="bold"))
    con.print(f"  energy model: {est.calibration} — {est.calibration_source}", markup=False)
    srcs = est.gpu.sources or {}
    if srcs:
        first = next(iter(sorted(srcs.items())))
        con.print(f"  GPU spec ({len(srcs)} sourced fields), e.g. {first[0]}: {first[1]}", markup=False)
    if est.gpu.unconfirmed:
        con.print(f"  unconfirmed spec fields: {', '.join(est.gpu.unconfirmed)}", markup=False)
    return con.file.getvalue()


def compare_rows(ests: Sequence[Estimate]) -> tuple[list[str], list[list[str]], int]:
    best = most_efficient(ests)
    header = ["GPU", "time", "GPU-hours", "energy (5–95 %)", "CO2", "cost", "memory / GPU", "fits", "model"]
    rows = []
    for i, e in enumerate(ests):
        t = e.total
        lo, hi = t.energy_kwh_range
        rows.append([
            ("★ " if i == best else "") + f"{e.gpu.key} x{e.plan.gpus}",
            u.hours(t.time_h),
            u.gpu_hours(t.gpu_hours),
            f"{u.energy_kwh(t.energy_kwh)} ({u.range_kwh(lo, hi)})",
            u.co2_kg(t.co2_kg),
            u.usd(t.cost_usd),
            u.bytes_(e.memory.peak_bytes_per_gpu),
            "yes" if e.memory.fits else "NO",
            e.calibration,
        ])
    return header, rows, best


def render_compare(ests: Sequence[Estimate], *, top: int = 10, color: bool = False, width: int = 140) -> str:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    con = _console(color, width)
    e0 = ests[0]
    con.print(Text(f"wattlint compare: {e0.model.source}", style="bold"))
    con.print(f"Plan: {plan_line(e0)}")
    header, rows, best = compare_rows(ests)
    t = Table(box=box.SIMPLE_HEAVY, pad_edge=False)
    for h in header:
        t.add_column(h, justify="left" if h in ("GPU", "fits", "model") else "right")
    for i, r in enumerate(rows):
        t.add_row(*r, style="bold green" if i == best else ("red" if r[7] == "NO" else None))
    con.print(t)
    con.print(f"★ most energy-efficient: {ests[best].gpu.key} (least facility energy among GPUs where it fits)")
    con.print()
    assumptions = list(dict.fromkeys(a for e in ests for a in e.assumptions))
    con.print(Text("Assumptions", style="bold"))
    for a in assumptions:
        con.print(f"  • {a}", markup=False, highlight=False)
    return con.file.getvalue()


def render(ests: Sequence[Estimate], *, top: int = 10, color: bool = False) -> str:
    if len(ests) == 1:
        return render_one(ests[0], top=top, color=color)
    return render_compare(ests, top=top, color=color)
