"""Text and JSON output of ``wattlint check`` (one line per finding, ruff-like, then a per-model summary)."""

from __future__ import annotations

import json

from ..carbon import RANGE_CLAUSE
from ..lint.results import CheckResult
from . import units as u
from .tables import clean
from .json_out import _r  # floats at 6 significant digits: the same text on every run and platform

SCHEMA = "wattlint.check/1"


def _fmt(x, fmt) -> str:
    return "?" if x is None else fmt(float(x))


def model_line(m) -> str:
    t = m.summary.get("total", {})
    parts = [_fmt(t.get("energy_kwh"), u.energy_kwh), _fmt(t.get("co2_kg"), u.co2_kg), _fmt(t.get("cost_usd"), u.usd),
             _fmt(t.get("time_h"), u.hours)]
    cal = m.summary.get("calibration") or "?"
    tag = ", cached" if m.cached else ""
    return f"{clean(m.name)}: {', '.join(parts)} on {m.summary.get('gpu', '?')} ({cal}{tag})"


FACTOR_PREFIXES = ("PUE ", "carbon intensity ", "electricity price ", "GPU-hour price ")


def factors(assumptions) -> str:
    """The factors behind the CO2 and $ figures, from an estimate's assumption lines, in short: PUE, carbon intensity
    with its region and year, electricity and GPU-hour prices (defaults said so); '' when none is listed."""
    out = []
    for a in assumptions or ():
        a = str(a)
        if not a.startswith(FACTOR_PREFIXES):
            continue
        if a.startswith("carbon intensity "):
            out.append(_short_intensity(a))
        else:
            head = a.split(" (", 1)[0]
            out.append(head + (" (default)" if "default" in a and "(given" not in a else ""))
    return ", ".join(out)


def _short_intensity(line: str) -> str:
    """A carbon intensity line in short: the figure, then its source's first two comma-separated parts (place and
    year, or the place and what kind of figure it is), cut only at commas outside brackets, so a place written with
    its own commas ('cloud region aws:us-east-1 (US East (N. Virginia), Ashburn, ...)') stays whole. The clause on
    the 5-95 % ranges (carbon.RANGE_CLAUSE, on every intensity line) is left out: it is no factor, and its own ': '
    would be read as the source's start on a given figure's line."""
    line = line.partition(RANGE_CLAUSE)[0]
    head, _, src = line.partition(": ")
    return f"{head} ({', '.join(_outside_brackets(src, ', ')[:2])})" if src else head


def _outside_brackets(text: str, sep: str) -> list[str]:
    """``text`` split at each ``sep`` that is outside round brackets."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        if text.startswith(sep, i) and depth == 0:
            parts.append(text[start:i])
            i = start = i + len(sep)
            continue
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    parts.append(text[start:])
    return parts


def factor_lines(result: CheckResult) -> list[str]:
    """'assumed: ...' once when every model shares its factors, else one line per model (their numbers above rest
    on them; --format json lists every assumption)."""
    per = [(m.name, factors(m.summary.get("assumptions"))) for m in result.models if not m.skipped and not m.error]
    per = [(n, f) for n, f in per if f]
    if not per:
        return []
    tail = " (--format json lists every assumption)"
    if len({f for _, f in per}) == 1:
        return [f"assumed: {clean(per[0][1])}{tail}"]
    return [f"{clean(n)}: assumed {clean(f)}" for n, f in per] + ["assumptions: --format json lists them all"]


def render_text(result: CheckResult) -> str:
    lines = []
    for m in result.models:
        for it in m.items:
            f = it.finding
            where = f" [{clean(f.layer)}]" if f.layer else ""
            path = clean(it.display_path(result.root))
            lines.append(f"{path}:{it.line}: {f.code} {f.severity}: {clean(m.name)}{where}: {clean(f.message)}")
    if lines:
        lines.append("")
    for m in result.models:
        if m.error:
            lines.append(f"{clean(m.name)}: not checked: {clean(m.error)}")
        else:
            lines.append(f"{clean(m.name)}: {m.skipped}" if m.skipped else model_line(m))
    lines.extend(factor_lines(result))
    if result.baseline_updated and result.baseline_path is not None:
        ch = result.baseline_changes
        parts = [f"wrote {_names(ch.get('written'))}"]  # skipped models are not written: they were counted as if
        moved = ch.get("moved") or {}
        if moved:  # the rise (or fall) being accepted, as the reviewer of the baseline commit needs it
            parts.append("energy " + ", ".join(
                f"{clean(k)} {' -> '.join(u.pair(a, b, 'energy_kwh'))} "
                f"({'+' if b >= a else ''}{u.percent((b - a) / a)})" for k, (a, b) in moved.items()))
        if ch.get("kept"):
            parts.append(f"kept {_names(ch['kept'])} unchanged (not checked this time)")
        if ch.get("removed"):
            parts.append(f"removed {_names(ch['removed'])} (no longer configured)")
        lines.append(f"updated baseline {result.baseline_path}: {'; '.join(parts)}")
    lines.extend(f"note: {clean(n)}" for n in result.notices)
    c = result.counts()
    if not result.models:
        where = result.config_path.name if result.config_path else "pyproject.toml"
        lines.append(f"no configured model matched (see [[tool.wattlint.models]] in {where})"
                     if result.configured else
                     f"no models configured: add [[tool.wattlint.models]] entries to {where} (docs/CONFIG.md)")
    elif any(c.values()):
        lines.append(f"Found {c['error']} error(s), {c['warning']} warning(s), {c['info']} info(s)" + _verdict(result))
    elif not result.errors:
        lines.append("All checks passed.")
    if result.errors:
        lines.append(f"{len(result.errors)} model(s) could not be estimated (input errors above): exit 2")
    return "\n".join(lines) + "\n"


def _verdict(result: CheckResult) -> str:
    """What the exit status is and which option made it (--fail-on, --exit-zero)."""
    would = result.exit_code_for(result.fail_on)
    level = {"error": "errors", "warning": "warnings or errors", "info": "any finding"}[result.fail_on]
    if would and result.exit_zero:
        return f" — not failing: --exit-zero (else {level} exit 1)"
    return f" — failing: {level} exit 1" if would else ""


def _names(names) -> str:
    names = list(names or [])
    return f"{len(names)} model(s)" + (f" ({', '.join(clean(n) for n in names)})" if names else "")


def render_json(result: CheckResult) -> str:
    models = []
    for m in result.models:
        models.append({
            "name": m.name, "source": m.source, "gpu": m.summary.get("gpu"), "skipped": m.skipped, "error": m.error,
            "calibration": m.summary.get("calibration"), "cached": m.cached,
            "total": m.summary.get("total", {}), "memory": m.summary.get("memory", {}),
            "assumptions": m.summary.get("assumptions", []),
            "findings": [{**i.finding.as_dict(), "model": m.name, "path": i.display_path(result.root), "line": i.line}
                         for i in m.items],
        })
    doc = {"schema": SCHEMA, "models": models, "counts": result.counts(), "exit_code": result.exit_code,
           "baseline": str(result.baseline_path) if result.baseline_path else None,
           "baseline_updated": result.baseline_updated, "notices": list(result.notices)}
    if result.baseline_updated:
        doc["baseline_changes"] = {k: list(result.baseline_changes.get(k, [])) for k in ("written", "kept", "removed")}
        # the energies the baseline commit accepts, as the text report lists them (before -> after, facility kWh)
        doc["baseline_changes"]["energy_kwh"] = {k: {"before": a, "after": b} for k, (a, b)
                                                 in (result.baseline_changes.get("moved") or {}).items()}
    return json.dumps(_r(doc), indent=2, sort_keys=True) + "\n"
