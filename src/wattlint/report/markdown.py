"""Markdown report, for a pull-request comment: summary table, phases, top layers, findings, assumptions."""

from __future__ import annotations

import re
from typing import Sequence

from ..types import Estimate
from . import units as u
from .json_out import energy_model_mix_note, most_efficient_why
from .text import launch_bound_line
from .tables import (model_headline, params_headline, compare_assumption_lines, compare_findings, energy_model_headline, energy_model_source, report_assumptions, LAYER_HEADER, PHASE_HEADER, clean, compare_rows, layer_name, layer_rows, phase_rows, plan_line, step_line,
                     summary_rows)


def _esc(s: str) -> str:
    """Text for the report (a table cell, a list item): ``|`` escaped for tables, and ``&``, ``<``, ``>`` as entities:
    a model's node or output names (user data) must not put raw HTML into a pull-request comment."""
    return clean(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


class _Span(str):
    """A code span already built (its text literal, not entity-escaped); a table cell only escapes its ``|``."""


def _code(s: str, *, table: bool = False) -> str:
    """``s`` as a code span whose fence is one backtick longer than the longest run of backticks in ``s`` (CommonMark:
    a span closes only at a run of its own length, so a name cannot close it early and let what follows render as
    HTML), padded with a space each side where ``s`` holds a backtick or starts and ends with a space (both are
    stripped again); inside a table ``|`` is escaped (GFM reads ``\\|`` in a code span as a pipe), outside it not
    (a literal backslash showed in headings)."""
    text = clean(s)
    if table:
        text = text.replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if "`" in text or (text[:1] == text[-1:] == " " and text.strip(" ")) else ""
    return _Span(f"{fence}{pad}{text}{pad}{fence}")


def _findings(found) -> list[str]:
    """The Findings section: one bullet per (GPU key or None, finding)."""
    lines = ["", "**Findings**", ""]
    for key, f in found:
        where = f" {_code(f.layer)}" if f.layer else ""
        lines.append(f"- {f'{_code(key)} ' if key else ''}**{f.code}** {f.severity}{where}: {_esc(f.message)}")
    return lines


def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["---"] * len(header)
    out = ["| " + " | ".join(_esc(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(c if isinstance(c, _Span) else _esc(c) for c in r) + " |" for r in rows]
    return out


def render_one(est: Estimate, *, top: int = 10, group_by: str = "block", depth: int = 2) -> str:
    m = est.model
    lines = [f"### wattlint estimate: {_code(m.source)}", "",
             f"{m.format} model · {u.count(m.params)} parameters{_esc(params_headline(est))} · {u.bytes_(m.param_bytes)}{_esc(model_headline(est))} · "
             f"**{est.gpu.name}** "
             f"({_code(est.gpu.key)}) x "
             f"{est.plan.gpus} · energy model **{est.calibration}**{_esc(energy_model_headline(est))}", "",
             f"Plan: {plan_line(est)}", ""]
    lines += _table(["", "estimate"], [[k.strip(), v] for k, v in summary_rows(est)], ["---", "---"])
    lines += ["", f"**Per optimizer step**: {step_line(est)}", ""]
    banner = launch_bound_line(est)
    if banner:
        lines += [f"> {_esc(banner)}", ""]
    lines += _table(PHASE_HEADER, phase_rows(est), ["---", "---:", "---:", "---:"])
    lines += _layers(est, top, group_by, depth)
    if est.findings:
        lines += _findings([(None, f) for f in est.findings])
    lines += ["", "<details><summary>Assumptions and provenance</summary>", ""]
    lines += [f"- {_esc(a)}" for a in report_assumptions(est)]
    lines += _provenance(est)
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def _layers(est: Estimate, top: int, group_by: str, depth: int, lead: str = "") -> list[str]:
    """The layer table (``top`` rows; nothing without layers), its title led by ``lead``."""
    if not (top and est.layers):
        return []
    title, rows, groups = layer_rows(est, top, group_by, depth)
    rows = [[_code(layer_name(r[0], g.count, group_by=group_by), table=True), *r[1:]] for r, g in zip(rows, groups)]
    return ["", f"**{lead}{_esc(title)}**", "", *_table(LAYER_HEADER, rows, ["---", "---", "---:", "---:", "---:"])]


def _provenance(est: Estimate, lead: str = "") -> list[str]:
    """The provenance list items of one GPU (``lead``: its key, in a comparison): the energy model and its source,
    every sourced GPU spec value (as the HTML and JSON reports list them), the unconfirmed spec fields."""
    key = est.gpu.key
    lines = [f"- {lead}energy model: {est.calibration} — {_esc(energy_model_source(est))}"]
    lines += [f"- {_esc(key)} {_esc(k)}: {_esc(str(v))}" for k, v in sorted((est.gpu.sources or {}).items())]
    if est.gpu.unconfirmed:
        lines.append(f"- unconfirmed spec fields of {_esc(key)}: {_esc(', '.join(est.gpu.unconfirmed))}")
    return lines


def render_compare(ests: Sequence[Estimate], *, top: int = 10, group_by: str = "block", depth: int = 2) -> str:
    e0 = ests[0]
    header, rows, best = compare_rows(ests)
    lines = [f"### wattlint compare: {_code(e0.model.source)}", ""]
    if model_headline(e0):
        lines += [_esc(model_headline(e0).lstrip(" ·")), ""]
    lines += [f"Plan: {plan_line(e0)}", ""]
    rows = [[("**" + c + "**") if i == best and j == 0 else c for j, c in enumerate(r)] for i, r in enumerate(rows)]
    lines += _table(header, rows, ["---"] + ["---:"] * (len(header) - 3) + ["---", "---"])
    lines += ["", f"★ most energy-efficient: {_code(ests[best].gpu.key)} ({most_efficient_why(ests)})"]
    mix = energy_model_mix_note(ests)
    if mix:
        lines += ["", f"> **Note:** {_esc(mix)}"]
    lines += _layers(ests[best], top, group_by, depth, lead=f"{_esc(ests[best].gpu.key)}: ")
    found = compare_findings(ests)
    if found:
        lines += _findings(found)
    lines += ["", "<details><summary>Assumptions and provenance</summary>", ""]
    lines += [f"- {_esc(a)}" for a in compare_assumption_lines(ests, provenance_apart=True)]
    for e in ests:
        lines += _provenance(e, lead=f"{_esc(e.gpu.key)} ")
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def render(ests: Sequence[Estimate], *, top: int = 10, group_by: str = "block", depth: int = 2) -> str:
    if len(ests) == 1:
        return render_one(ests[0], top=top, group_by=group_by, depth=depth)
    return render_compare(ests, top=top, group_by=group_by, depth=depth)
