"""Terminal report (rich): summary, per-phase, top-N layers with an energy bar chart, findings, assumptions,
provenance; and the side-by-side ``--compare`` table. rich is imported only here, when a text report is made."""

from __future__ import annotations

import io
from typing import Sequence

from ..types import Estimate
from . import units as u
from .json_out import energy_model_mix_note, most_efficient_why
from .layers import shorten, whole_components
from .tables import (model_headline, params_headline, compare_assumption_lines, compare_findings, energy_model_headline, energy_model_source, report_assumptions, LAYER_HEADER, PHASE_HEADER, clean, COMPARE_HEADER, compare_rows, launch_bound_share, layer_name, layer_rows,
                     phase_rows, plan_line, step_line, summary_rows)

BAR_WIDTH = 24


def _bar(share: float, width: int = BAR_WIDTH) -> str:
    """A bar of ``width`` cells filled to ``share`` (eighth-block resolution)."""
    blocks = " ▏▎▍▌▋▊▉█"
    cells = max(0.0, min(1.0, share)) * width
    full = int(cells)
    rest = int(round((cells - full) * 8))
    if rest == 8:
        full, rest = full + 1, 0
    return "█" * full + (blocks[rest] if rest and full < width else "")


def launch_bound_line(est: Estimate) -> str:
    """The launch-bound banner under the step line when the GPU idles waiting for the CPU more than 10 % of each
    step ('' otherwise): one sentence for the text, Markdown and HTML reports alike."""
    share = launch_bound_share(est)
    if share <= 0.1:
        return ""
    return (f"launch-bound: the GPU waits for the CPU {share:.0%} of each step (small batch or model); a larger "
            f"--batch-size, CUDA graphs or torch.compile would help")


def fit_table(header: Sequence[str], rows: Sequence[Sequence[str]], width: int | None, *, right: Sequence[str] = (),
              priority: Sequence[str] | None = None, sep: str = "  ") -> tuple[str, list[str]]:
    """A plain fixed-width table fitted to ``width``: cells are never wrapped or cut; when the table is too wide,
    whole columns are dropped, lowest ``priority`` first (default: from the right). ``width`` None (a file or a pipe,
    which has no width): every column. Returns (text, dropped)."""
    cols = list(range(len(header)))
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in cols]
    order = [header.index(h) for h in priority] if priority else cols
    keep = list(order)
    while width is not None and len(keep) > 1 and sum(widths[i] for i in keep) + len(sep) * (len(keep) - 1) + 1 > width:
        keep.pop()
    shown = [i for i in cols if i in keep]

    def line(cells):
        return " " + sep.join(cells[i].rjust(widths[i]) if header[i] in right else cells[i].ljust(widths[i])
                              for i in shown).rstrip()

    out = [line(list(header)), " " + "─" * (sum(widths[i] for i in shown) + len(sep) * (len(shown) - 1))]
    out += [line(list(r)) for r in rows]
    return "\n".join(out) + "\n", [header[i] for i in cols if i not in keep]


def _console(color: bool, width: int):
    from rich.console import Console

    return Console(file=io.StringIO(), width=width, force_terminal=color, color_system="standard" if color else None,
                   highlight=False, emoji=False, soft_wrap=False)


# the width prose and the layer table are laid out at where the output has none (a file or a pipe); the compare
# table is then never cut to it
PROSE_WIDTH = 100


def render_one(est: Estimate, *, top: int = 10, color: bool = False, width: int | None = 100,
               group_by: str = "block", depth: int = 2) -> str:
    from rich import box
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    width = width or PROSE_WIDTH
    con = _console(color, width)
    m = est.model
    gpu = est.gpu
    con.print(Text(f"wattlint estimate: {clean(m.source)}", style="bold"))
    con.print(Text(f"{m.format} model · {u.count(m.params)} parameters{params_headline(est)} · {u.bytes_(m.param_bytes)}{model_headline(est)}"))
    con.print(Text.assemble(f"GPU {gpu.name} ({gpu.key}) x {est.plan.gpus} · energy model: ",
                            (est.calibration, "bold"), energy_model_headline(est)))
    con.print(Text(f"Plan: {plan_line(est)}"))
    con.print()
    t = Table(box=box.SIMPLE_HEAVY, show_header=False, pad_edge=False)
    t.add_column("", style="bold", no_wrap=True)
    t.add_column("")
    for k, v in summary_rows(est):
        t.add_row(k, Text(v, style="red" if "NOT FIT" in v else "yellow" if "(tight: " in v else ""))
    con.print(t)

    con.print(Text("Per optimizer step", style="bold"))
    con.print(Text(f"  {step_line(est)}"))
    banner = launch_bound_line(est)
    if banner:
        con.print(Text(f"  {banner}", style="yellow"))
    ph = Table(box=box.SIMPLE, pad_edge=False)
    for col in PHASE_HEADER:
        ph.add_column(col, justify="left" if col == "phase" else "right", no_wrap=True)
    for row in phase_rows(est):
        ph.add_row(*row)
    con.print(ph)

    _print_layers(con, est, top, group_by, depth, width)

    if est.findings:
        _print_findings(con, [(None, f) for f in est.findings])
        con.print()
    con.print(Text("Assumptions", style="bold"))
    for a in report_assumptions(est):
        con.print(Padding(Text(f"• {clean(a)}"), (0, 0, 0, 2)))
    con.print(Text("Provenance", style="bold"))
    _print_provenance(con, est)
    return con.file.getvalue()


def _print_layers(con, est: Estimate, top: int, group_by: str, depth: int, width: int, lead: str = "") -> None:
    """The layer table (``top`` rows; nothing without layers), its title led by ``lead``."""
    from rich.text import Text

    if top and est.layers:
        title, rows, groups = layer_rows(est, top, group_by, depth)
        con.print(Text(lead + title, style="bold"))
        con.print(_layer_table(rows, groups, width, group_by))


def _print_provenance(con, est: Estimate, lead: str = "") -> None:
    """The provenance lines of one GPU (``lead``: its key, in a comparison): the energy model and its source, the GPU
    spec's sourced fields (one shown), the unconfirmed spec fields."""
    from rich.text import Text

    con.print(Text(f"  {lead}energy model: {est.calibration} — {clean(energy_model_source(est))}"))
    srcs = est.gpu.sources or {}
    if srcs:
        first = next(iter(sorted(srcs.items())))
        con.print(Text(f"  {lead}GPU spec ({len(srcs)} sourced fields), e.g. {first[0]}: {first[1]}"))
    if est.gpu.unconfirmed:
        con.print(Text(f"  {lead}unconfirmed spec fields: {', '.join(est.gpu.unconfirmed)}"))


def _layer_table(rows, groups, width: int, group_by: str = "block"):
    """The layer table fitted to ``width`` (a rich Text, one line per row): the bar column goes below 96 columns, the
    type column below 76; names are shortened on dot boundaries, and a path component is cut (its end kept, a name
    without dots its start) only where giving up the bar and the type column leaves too little room; types longer
    than 20 characters are cut."""
    from rich.text import Text

    numeric = [max(len(LAYER_HEADER[i]), *(len(r[i]) for r in rows)) for i in (2, 3, 4)]
    show_type = width >= 76
    type_w = min(20, max(4, *(len(r[1]) for r in rows))) if show_type else 0
    bar_w = min(24, width - 88) if width >= 96 else 0
    sep = "   "

    def room() -> int:  # the name column's width beside the other columns shown
        others = numeric + ([type_w] if show_type else []) + ([bar_w] if bar_w else [])
        return width - 1 - sum(others) - len(sep) * len(others)

    name_w = max(16, room())
    # the width the names take shortened on dot boundaries only (a last component longer than name_w kept whole):
    # the bar gives up what they need beyond name_w, then the type column; what is still missing is cut
    suffix = [len(layer_name("", g.count, group_by=group_by)) for g in groups]
    need = max(len(LAYER_HEADER[0]), *(len(whole_components(r[0], max(8, name_w - n))) + n
                                       for r, n in zip(rows, suffix)))
    if need > room() and bar_w:
        bar_w -= need - room()
        bar_w = bar_w if bar_w >= 4 else 0
    if need > room() and show_type:
        show_type = False
    names = [layer_name(r[0], g.count, min(max(name_w, need), room()), group_by) for r, g in zip(rows, groups)]
    name_w = max(len(LAYER_HEADER[0]), *(len(n) for n in names))

    def line(name, typ, nums, bar=None):
        cells = [name.ljust(name_w)] + ([typ.ljust(type_w)] if show_type else [])
        cells += [c.rjust(w) for c, w in zip(nums, numeric)]
        t = Text(" " + sep.join(cells))
        if bar is not None:
            t.append(sep)
            t.append(bar, style="green")
        return t

    out = Text()
    out.append_text(line(LAYER_HEADER[0], LAYER_HEADER[1], LAYER_HEADER[2:]))
    out.append("\n " + "─" * (len(out.plain) - 1 + (len(sep) + bar_w if bar_w else 0)) + "\n")
    top_share = max((g.share for g in groups), default=1.0) or 1.0
    for name, row, g in zip(names, rows, groups):
        out.append_text(line(name, shorten(row[1], type_w) if show_type else "", row[2:],
                             _bar(g.share / top_share, bar_w) if bar_w else None))
        out.append("\n")
    return out


def render_compare(ests: Sequence[Estimate], *, top: int = 10, color: bool = False, width: int | None = 100,
                   group_by: str = "block", depth: int = 2) -> str:
    """The side-by-side table of ``ests``; ``width`` None (a file or a pipe): the table keeps every column (review:
    a report redirected to a file lost GPU-hours, CO2, cost and memory 'at 100 columns'), the prose is laid out at
    :data:`PROSE_WIDTH`."""
    from rich.padding import Padding
    from rich.text import Text

    con = _console(color, width or PROSE_WIDTH)
    e0 = ests[0]
    con.print(Text(f"wattlint compare: {clean(e0.model.source)}", style="bold"))
    if model_headline(e0):
        con.print(Text(model_headline(e0).lstrip(" ·")))
    con.print(Text(f"Plan: {plan_line(e0)}"))
    header, rows, best = compare_rows(ests)
    # the energy model (provenance) is kept before the secondary columns: the assumptions below are deduplicated
    # across GPUs, so the column is the one place each row's provenance is always stated
    priority = [header[COMPARE_HEADER.index(h)] for h in  # the cost column's header names what it adds up
                ("GPU", "energy", "time", "fits", "model", "energy 5–95 %", "CO2", "cost", "GPU-hours", "memory / GPU")]
    text, dropped = fit_table(header, rows, width, right=header[1:8], priority=priority)
    con.print(Text(text.rstrip("\n")), soft_wrap=width is None)  # no width: its lines are never wrapped
    if dropped:
        con.print(Text(f"(columns left out at {width} columns: {', '.join(dropped)}; widen the terminal, set "
                       f"COLUMNS, or use --format json|markdown|html)", style="dim"))
    con.print(Text(f"★ most energy-efficient: {ests[best].gpu.key} ({most_efficient_why(ests)})"))
    mix = energy_model_mix_note(ests)
    if mix:
        con.print(Text(f"Note: {mix}", style="yellow"))
    con.print()
    _print_layers(con, ests[best], top, group_by, depth, width or PROSE_WIDTH, lead=f"{ests[best].gpu.key}: ")
    found = compare_findings(ests)
    if found:
        _print_findings(con, found)
        con.print()
    assumptions = compare_assumption_lines(ests, provenance_apart=True)
    con.print(Text("Assumptions", style="bold"))
    for a in assumptions:
        con.print(Padding(Text(f"• {clean(a)}"), (0, 0, 0, 2)))
    con.print(Text("Provenance", style="bold"))
    for e in ests:
        _print_provenance(con, e, lead=f"{e.gpu.key} ")
    return con.file.getvalue()


def _print_findings(con, found) -> None:
    """The Findings section: one indented line per (GPU key or None, finding), coloured by severity."""
    from rich.padding import Padding
    from rich.text import Text

    con.print(Text("Findings", style="bold"))
    for key, f in found:
        style = {"error": "bold red", "warning": "yellow"}.get(f.severity, "cyan")
        where = f" [{clean(f.layer)}]" if f.layer else ""
        gpu = f"{key}: " if key else ""
        con.print(Padding(Text(f"{gpu}{f.code} {f.severity}{where}: {clean(f.message)}", style=style), (0, 0, 0, 2)))


def render(ests: Sequence[Estimate], *, top: int = 10, color: bool = False, width: int | None = 100,
           group_by: str = "block", depth: int = 2) -> str:
    """The text report; ``width``: the terminal's columns, None where the output has no width (a file or a pipe)."""
    if len(ests) == 1:
        text = render_one(ests[0], top=top, color=color, width=width, group_by=group_by, depth=depth)
    else:
        text = render_compare(ests, top=top, color=color, width=width, group_by=group_by, depth=depth)
    # rich pads every line to the console width: without colour codes the padding is trailing blanks in a file or
    # a pipe (review), so it goes
    return text if color else "".join(line.rstrip() + "\n" for line in text.splitlines())
