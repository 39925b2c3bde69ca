"""One self-contained HTML file: summary, per-phase table, an inline-SVG bar chart of energy by layer, a GPU
comparison chart (with --compare), findings, assumptions and provenance. No scripts, fonts or network fetches."""

from __future__ import annotations

from html import escape as _html_escape
from typing import Sequence

from ..types import Estimate
from . import units as u
from .json_out import energy_model_mix_note, most_efficient_why
from .layers import group_layers, shorten
from .text import launch_bound_line
from .tables import (model_headline, params_headline, compare_assumption_lines, compare_findings, energy_model_headline, energy_model_source, report_assumptions, PHASE_HEADER, clean, compare_rows, layer_caption, layer_name, phase_rows, plan_line, step_line,
                     summary_rows)


def escape(text) -> str:
    """HTML-escaped, control characters made visible (tables.clean)."""
    return _html_escape(clean(text))

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2329;margin:24px auto;max-width:1040px;padding:0 16px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:26px 0 8px;border-bottom:1px solid #dde3e8;padding-bottom:4px}
.meta{color:#5b6770;margin:2px 0} .badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.measured{background:#d8f3dc;color:#1b5e20}.public-fit{background:#e3f2fd;color:#0d47a1}.transferred{background:#fff3cd;color:#7a5a00}.prior{background:#e7ecf5;color:#243b6b}
table{border-collapse:collapse;width:100%;margin:6px 0} caption{text-align:left;font-weight:600;padding:4px 0} th,td{padding:5px 8px;border-bottom:1px solid #eef1f4;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600} td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(180px,1fr));gap:10px;margin:14px 0}
.card{border:1px solid #dde3e8;border-radius:8px;padding:10px 12px} .card .k{color:#5b6770;font-size:12px}
.card .v{font-size:20px;font-weight:650;margin-top:2px} .card .s{color:#5b6770;font-size:12px}
.bad{color:#b3261e;font-weight:600} .warn{color:#8a6100} .best{background:#eefaf0} .find-error{color:#b3261e}.find-warning{color:#8a6100}
ul.assume li{margin:2px 0;color:#37424a} code{font-size:12.5px;background:#f3f5f7;padding:0 3px;border-radius:3px}
svg text{font:12px system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;fill:#1d2329}
"""


def _bar_chart(items: list[tuple[str, float, str]], *, title: str, width: int = 980, color: str = "#2f6fdb",
               highlight: int | None = None) -> str:
    """Horizontal bars: (label, value, value text). Pure SVG."""
    if not items:
        return ""
    label_w, value_w, row_h, top = 330, 130, 24, 26
    bar_w = width - label_w - value_w - 10
    vmax = max(v for _, v, _ in items) or 1.0
    h = top + row_h * len(items) + 8
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" viewBox="0 0 {width} {h}" '
           f'role="img" aria-label="{escape(title)}">',
           f'<text x="0" y="16" style="font-weight:600">{escape(title)}</text>']
    for i, (label, v, vt) in enumerate(items):
        y = top + i * row_h
        w = max(1.0, bar_w * v / vmax)
        lab = shorten(label, 46)
        fill = "#1f9d55" if highlight == i else color
        out.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{escape(lab)}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" rx="3" fill="{fill}"/>')
        out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 16}">{escape(vt)}</text>')
    out.append("</svg>")
    return "".join(out)


def _enclosed(text: str) -> bool:
    """Whether ``text`` is one parenthesised group: its first '(' closes at its last character."""
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth == 0:
            return i == len(text) - 1
    return False


def _cards(est: Estimate) -> str:
    # every row of the text / Markdown summary (GPU energy and goodput were left out: the HTML time then included
    # the non-productive time without saying so)
    cards = []
    for k, value in summary_rows(est):
        k = k.strip()
        main, _, sub = value.partition("  ")
        if k == "Goodput":  # "98.5%" over "of wall time in productive steps ..." (the 'of' was dropped: review)
            main, of, sub = value.partition(" of ")
            sub = of.lstrip() + sub
        sub = sub.strip()
        if _enclosed(sub):  # one enclosing pair only: "(5–95 %: ...)  at ... (aws:us-east-1)" keeps both
            sub = sub[1:-1]
        cards.append((k, main, sub))
    out = ['<div class="cards">']
    for k, v, s in cards:
        # one class attribute (a second one is dropped by parsers)
        cls = "s bad" if "NOT FIT" in s else "s warn" if s.startswith("tight: ") else "s"
        out.append(f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div>'
                   f'<div class="{cls}">{escape(s)}</div></div>')
    out.append("</div>")
    return "".join(out)


def _one_body(est: Estimate, top: int, group_by: str = "block", depth: int = 2) -> list[str]:
    m = est.model
    body = [
        f"<h1>wattlint estimate: <code>{escape(m.source)}</code></h1>",
        f'<p class="meta">{escape(m.format)} model · {escape(u.count(m.params))} parameters{escape(params_headline(est))} · '
        f"{escape(u.bytes_(m.param_bytes))}{escape(model_headline(est))} · "
        f"{escape(est.gpu.name)} (<code>{escape(est.gpu.key)}</code>) × {est.plan.gpus} · energy model "
        f'<span class="badge {escape(est.calibration)}">{escape(est.calibration)}</span>'
        f"{escape(energy_model_headline(est))}</p>",
        f'<p class="meta">Plan: {escape(plan_line(est))}</p>',
        _cards(est),
        "<h2>Per optimizer step</h2>",
        f"<p>{escape(step_line(est))}</p>",
        *([f'<p class="warn">{escape(launch_bound_line(est))}</p>'] if launch_bound_line(est) else []),
        "<table><caption>Time and GPU energy per optimizer step, by phase</caption><thead><tr>"
        + "".join(f'<th scope="col"{"" if h == "phase" else " class=num"}>{escape(h)}</th>' for h in PHASE_HEADER)
        + "</tr></thead><tbody>",
    ]
    for row in phase_rows(est):
        body.append("<tr>" + "".join(f'<td{"" if i == 0 else " class=num"}>{escape(c)}</td>' for i, c in enumerate(row))
                    + "</tr>")
    body.append("</tbody></table>")
    every = group_layers(est.layers, group_by, depth)
    groups = every[:top]
    if groups:
        body.append(f"<h2>Energy by layer (top {len(groups)} of {len(every)}; {escape(group_by)} grouping)</h2>")
        if layer_caption(est):
            body.append(f'<p class="meta">{escape(layer_caption(est))}</p>')
        energy = u.column([g.gpu_energy_j for g in groups], u.ENERGY_J)
        items = [(layer_name(g.name, g.count, group_by=group_by), g.gpu_energy_j, f"{e} · {u.pct(g.share)}") for g, e in zip(groups, energy)]
        body.append(_bar_chart(items, title="GPU energy per optimizer step, by layer (all phases)"))
        flops = u.column([g.flops for g in groups], u.FLOP)
        times = u.column([g.time_s for g in groups], u.DURATION)
        body.append('<table><caption>Time and GPU energy per optimizer step, by layer</caption><thead><tr>'
                    '<th scope="col">layer</th><th scope="col">type</th><th scope="col" class="num">FLOPs / step</th>'
                    '<th scope="col" class="num">time / step</th><th scope="col" class="num">GPU energy / step</th>'
                    '<th scope="col" class="num">share</th></tr></thead><tbody>')
        for g, f, t, e in zip(groups, flops, times, energy):
            body.append(f"<tr><td><code>{escape(layer_name(g.name, g.count, group_by=group_by))}</code></td><td>{escape(g.type)}</td>"
                        f'<td class="num">{escape(f)}</td><td class="num">{escape(t)}</td>'
                        f'<td class="num">{escape(e)}</td><td class="num">{escape(u.pct(g.share))}</td></tr>')
        body.append("</tbody></table>")
    body += _findings(est)
    body += _assumptions(report_assumptions(est), est)
    return body


def _findings(est: Estimate) -> list[str]:
    return _finding_list("Findings", [(None, f) for f in est.findings])


def _finding_list(title: str, found) -> list[str]:
    """A findings section: one list item per (GPU key or None, finding); nothing when there is none."""
    if not found:
        return []
    out = [f"<h2>{escape(title)}</h2><ul>"]
    for key, f in found:
        where = f" <code>{escape(f.layer)}</code>" if f.layer else ""
        gpu = f"<code>{escape(key)}</code> " if key else ""
        out.append(f'<li class="find-{escape(f.severity)}">{gpu}<b>{escape(f.code)}</b> {escape(f.severity)}{where}: '
                   f"{escape(f.message)}</li>")
    out.append("</ul>")
    return out


def _assumptions(assumptions: list[str], est: Estimate) -> list[str]:
    out = ['<h2>Assumptions</h2><ul class="assume">']
    out += [f"<li>{escape(a)}</li>" for a in assumptions]
    out.append("</ul><h2>Provenance</h2><ul class=\"assume\">")
    out.append(f"<li>energy model: {escape(est.calibration)} — {escape(energy_model_source(est))}</li>")
    for k, v in sorted((est.gpu.sources or {}).items()):
        out.append(f"<li>{escape(est.gpu.key)} {escape(k)}: {escape(str(v))}</li>")
    if est.gpu.unconfirmed:
        out.append(f"<li>unconfirmed spec fields: {escape(', '.join(est.gpu.unconfirmed))}</li>")
    out.append("</ul>")
    return out


def _compare_body(ests: Sequence[Estimate], top: int, group_by: str = "block", depth: int = 2) -> list[str]:
    e0 = ests[0]
    header, rows, best = compare_rows(ests)
    head = model_headline(e0).lstrip(" ·")
    body = [f"<h1>wattlint compare: <code>{escape(e0.model.source)}</code></h1>",
            *([f'<p class="warn">{escape(head)}</p>'] if head else []),
            f'<p class="meta">Plan: {escape(plan_line(e0))}</p>',
            "<table><caption>The whole plan on each GPU</caption><thead><tr>"]
    body += [f'<th scope="col" class="{"" if h in ("GPU", "fits", "model") else "num"}">{escape(h)}</th>' for h in header]
    body.append("</tr></thead><tbody>")
    for i, r in enumerate(rows):
        cls = ' class="best"' if i == best else ""
        cells = []
        for h, c in zip(header, r):
            bad = (" bad" if c == "NO" else " warn" if c == "tight" else "") if h == "fits" else ""
            cells.append(f'<td class="{"" if h in ("GPU", "fits", "model") else "num"}{bad}">{escape(c)}</td>')
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    body.append("</tbody></table>")
    body.append(f"<p>★ most energy-efficient: <b>{escape(ests[best].gpu.key)}</b> ({escape(most_efficient_why(ests))})</p>")
    mix = energy_model_mix_note(ests)
    if mix:
        body.append(f'<p class="warn"><b>Note:</b> {escape(mix)}</p>')
    kwh = [r[header.index("energy")] for r in rows]
    hrs = [r[header.index("time")] for r in rows]
    items = [(f"{e.gpu.key} ×{e.plan.gpus}", e.total.energy_kwh, f"{k} · {h}") for e, k, h in zip(ests, kwh, hrs)]
    body.append("<h2>GPU comparison</h2>")
    body.append(_bar_chart(items, title="Facility energy of the whole plan, by GPU", color="#7a8ca3", highlight=best))
    # the best GPU's own findings are in its detail below
    body += _finding_list("Findings on the other GPUs", compare_findings(ests, skip=best))
    body.append(f"<h2>{escape(ests[best].gpu.key)}: detail</h2>")
    body += _one_body(ests[best], top, group_by, depth)[3:]
    # the detail lists the best GPU's assumptions; every compared GPU's, each line once, led by the GPUs it is
    # about where not all share it (the other GPUs' fallback precision, price and host power were left out)
    body.append('<h2>Assumptions of all compared GPUs</h2><ul class="assume">')
    body += [f"<li>{escape(a)}</li>" for a in compare_assumption_lines(ests)]
    body.append("</ul>")
    return body


def render(ests: Sequence[Estimate], *, top: int = 10, group_by: str = "block", depth: int = 2) -> str:
    body = (_one_body(ests[0], top, group_by, depth) if len(ests) == 1 else
            _compare_body(ests, top, group_by, depth))
    title = f"wattlint: {ests[0].model.source}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
