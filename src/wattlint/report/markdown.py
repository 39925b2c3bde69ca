"""Markdown report, for a pull-request comment: summary table, phases, top layers, findings, assumptions."""

from __future__ import annotations

from typing import Sequence

from ..types import Estimate
from . import units as u
from .json_out import most_efficient_why
from .tables import (compare_assumption_lines, compare_findings, energy_model_headline, energy_model_source, report_assumptions, LAYER_HEADER, PHASE_HEADER, clean, compare_rows, layer_name, layer_rows, phase_rows, plan_line, step_line,
                     summary_rows)


def _esc(s: str) -> str:
    """Text for the report (a table cell, a list item): ``|`` escaped for tables, and ``&``, ``<``, ``>`` as entities:
    a model's node or output names (user data) must not put raw HTML into a pull-request comment."""
    return clean(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


class _Span(str):
    """A code span already built (its text literal, not entity-escaped); a table cell only escapes its ``|``."""


def _code(s: str, *, table: bool = False) -> str:
    """``s`` as a code span: a backtick in ``s`` takes a double-backtick span (a name cannot close it early and let
    what follows render as HTML); inside a table ``|`` is escaped (GFM reads ``\\|`` in a code span as a pipe),
    outside it not (a literal backslash showed in headings)."""
    text = clean(s)
    if table:
        text = text.replace("|", "\\|")
    return _Span(f"`` {text} ``" if "`" in text else f"`{text}`")


def _findings(found) -> list[str]:
    """The Findings section: one bullet per (GPU key or None, finding)."""
    lines = ["", "**Findings**", ""]
    for key, f in found:
        where = f" {_code(f.layer)}" if f.layer else ""
        lines.append(f"- {f'`{key}` ' if key else ''}**{f.code}** {f.severity}{where}: {_esc(f.message)}")
    return lines


def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["---"] * len(header)
    out = ["| " + " | ".join(_esc(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(c if isinstance(c, _Span) else _esc(c) for c in r) + " |" for r in rows]
    return out


def render_one(est: Estimate, *, top: int = 10, group_by: str = "block", depth: int = 2) -> str:
    m = est.model
    lines = [f"### wattlint estimate: {_code(m.source)}", "",
             f"{m.format} model · {u.count(m.params)} parameters · **{est.gpu.name}** (`{est.gpu.key}`) x "
             f"{est.plan.gpus} · energy model **{est.calibration}**{_esc(energy_model_headline(est))}", "",
             f"Plan: {plan_line(est)}", ""]
    lines += _table(["", "estimate"], [[k.strip(), v] for k, v in summary_rows(est)], ["---", "---"])
    lines += ["", f"**Per optimizer step**: {step_line(est)}", ""]
    lines += _table(PHASE_HEADER, phase_rows(est), ["---", "---:", "---:", "---:"])
    if top and est.layers:
        title, rows, groups = layer_rows(est, top, group_by, depth)
        lines += ["", f"**{title}**", ""]
        rows = [[_code(layer_name(r[0], g.count), table=True), *r[1:]] for r, g in zip(rows, groups)]
        lines += _table(LAYER_HEADER, rows, ["---", "---", "---:", "---:", "---:"])
    if est.findings:
        lines += _findings([(None, f) for f in est.findings])
    lines += ["", "<details><summary>Assumptions and provenance</summary>", ""]
    lines += [f"- {_esc(a)}" for a in report_assumptions(est)]
    lines += [f"- energy model: {est.calibration} — {_esc(energy_model_source(est))}"]
    if est.gpu.unconfirmed:
        lines.append(f"- unconfirmed spec fields of {est.gpu.key}: {_esc(', '.join(est.gpu.unconfirmed))}")
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def render_compare(ests: Sequence[Estimate], *, top: int = 10) -> str:
    e0 = ests[0]
    header, rows, best = compare_rows(ests)
    lines = [f"### wattlint compare: {_code(e0.model.source)}", "", f"Plan: {plan_line(e0)}", ""]
    rows = [[("**" + c + "**") if i == best and j == 0 else c for j, c in enumerate(r)] for i, r in enumerate(rows)]
    lines += _table(header, rows, ["---"] + ["---:"] * (len(header) - 3) + ["---", "---"])
    lines += ["", f"★ most energy-efficient: `{ests[best].gpu.key}` ({most_efficient_why(ests)})"]
    found = compare_findings(ests)
    if found:
        lines += _findings(found)
    lines += ["", "<details><summary>Assumptions</summary>", ""]
    lines += [f"- {_esc(a)}" for a in compare_assumption_lines(ests)]
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def render(ests: Sequence[Estimate], *, top: int = 10, group_by: str = "block", depth: int = 2) -> str:
    if len(ests) == 1:
        return render_one(ests[0], top=top, group_by=group_by, depth=depth)
    return render_compare(ests, top=top)
