"""Markdown report, for a pull-request comment: summary table, phases, top layers, findings, assumptions."""

from __future__ import annotations

from typing import Sequence

from ..types import Estimate
from . import units as u
from .text import compare_rows, plan_line, summary_rows


def _esc(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["---"] * len(header)
    out = ["| " + " | ".join(_esc(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(_esc(c) for c in r) + " |" for r in rows]
    return out


def render_one(est: Estimate, *, top: int = 10) -> str:
    m = est.model
    lines = [f"### wattlint estimate: `{m.source}`", "",
             f"{m.format} model · {u.count(m.params)} parameters · **{est.gpu.name}** (`{est.gpu.key}`) x "
             f"{est.plan.gpus} · energy model **{est.calibration}** ({est.calibration_source})", "",
             f"Plan: {plan_line(est)}", ""]
    lines += _table(["", "estimate"], [[k.strip(), v] for k, v in summary_rows(est)], ["---", "---"])
    lines += ["", "**Per optimizer step**", ""]
    tot_e = sum(v.gpu_energy_j for v in est.phases.values()) or 1.0
    rows = [[ph, u.duration(v.time_s), u.energy_j(v.gpu_energy_j), u.pct(v.gpu_energy_j / tot_e)]
            for ph, v in est.phases.items()]
    lines += _table(["phase", "time", "GPU energy", "share"], rows, ["---", "---:", "---:", "---:"])
    n = min(top, len(est.layers))
    if n:
        lines += ["", f"**Top {n} layers by energy** (of {len(est.layers)})", ""]
        rows = [[f"`{le.name}`", le.type, u.flops(le.flops), u.energy_j(le.gpu_energy_j), u.pct(le.share)]
                for le in est.layers[:n]]
        lines += _table(["layer", "type", "FLOPs/step", "GPU energy/step", "share"], rows,
                        ["---", "---", "---:", "---:", "---:"])
    if est.findings:
        lines += ["", "**Findings**", ""]
        for f in est.findings:
            where = f" `{f.layer}`" if f.layer else ""
            lines.append(f"- **{f.code}** {f.severity}{where}: {_esc(f.message)}")
    lines += ["", "<details><summary>Assumptions and provenance</summary>", ""]
    lines += [f"- {_esc(a)}" for a in est.assumptions]
    lines += [f"- energy model: {est.calibration} — {_esc(est.calibration_source)}", "", "</details>", ""]
    return "\n".join(lines)


def render_compare(ests: Sequence[Estimate], *, top: int = 10) -> str:
    e0 = ests[0]
    header, rows, best = compare_rows(ests)
    lines = [f"### wattlint compare: `{e0.model.source}`", "", f"Plan: {plan_line(e0)}", ""]
    rows = [[("**" + c + "**") if i == best and j == 0 else c for j, c in enumerate(r)] for i, r in enumerate(rows)]
    lines += _table(header, rows, ["---"] + ["---:"] * 6 + ["---", "---"])
    lines += ["", f"★ most energy-efficient: `{ests[best].gpu.key}` (least facility energy among GPUs where it fits)",
              "", "<details><summary>Assumptions</summary>", ""]
    lines += [f"- {_esc(a)}" for a in dict.fromkeys(a for e in ests for a in e.assumptions)]
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def render(ests: Sequence[Estimate], *, top: int = 10) -> str:
    return render_one(ests[0], top=top) if len(ests) == 1 else render_compare(ests, top=top)
