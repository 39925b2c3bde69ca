"""Live line and end-of-run summary of a tracked run (units through wattlint.report.units).

Modes: ``rich`` (one live status line on a terminal, refreshed every N steps; no background refresh thread),
``line`` (a plain log line every N steps: CI logs, notebooks, files), ``quiet`` (nothing; the record is still
written). ``auto`` picks rich on a terminal and line otherwise; WATTLINT_QUIET=1 forces quiet.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from ..report import units as u

MODES = ("auto", "rich", "line", "quiet")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.0f} %"


NO_INTERVAL = "too few steps for an interval"


def _finite(*xs) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def _ci(st: dict[str, Any]) -> str:
    """'±x % (90 % CI)' of the mean step time, or why there is none (under 4 stable steps: no 2 batch means to
    spread; review: '±inf % (90 % CI)')."""
    r = st.get("rel_ci90")
    return f"±{r * 100:.1f} % (90 % CI)" if _finite(r) else f"({NO_INTERVAL})"


def _range(central: float, rng, table) -> str:
    """'[lo – hi]' of a projection, or why there is none (an unbounded end was printed 'n/a')."""
    return f"[{u.range_(central, *rng, table)}]" if rng and _finite(*rng) else f"({NO_INTERVAL})"


def live_text(n: int, total: int | None, a: dict[str, Any] | None, static: dict[str, Any] | None,
              record: str | None = None) -> str:
    """The live status line; ``record``: what went wrong with the run record or the tracking (the record stopped
    being written, none could be written, tracking stopped), said right after the step count on every line from
    then on (review: the line went on reading as before while the record had stopped being written)."""
    parts = [f"step {n:,}" + (f"/{total:,}" if total else "")] + ([record] if record else [])
    if not a or "step_time_s" not in a:
        parts.append("warming up")
        return "wattlint: " + " | ".join(parts)
    st = a["step_time_s"]
    parts.append(f"{u.duration(st['mean'])}/step" + (f" ±{st['rel_ci90'] * 100:.1f} %" if a.get("stable") else
                                                     " (not stable yet)"))
    ps = a.get("per_step") or {}
    if ps.get("device_power_w") is not None:
        kinds = {c.get("energy_source") for c in a.get("channels") or []}
        parts.append(u.power_w(ps["device_power_w"]) + (" modelled" if kinds == {"modelled"} else ""))
    inp = a.get("input")
    if inp and inp.get("input_bound"):
        parts.append(f"INPUT-BOUND ({inp['data_wait_share'] * 100:.0f} % waiting for data)")
    p = a.get("projection")
    if p and a.get("stable"):
        txt = f"projected {u.duration(p['time_s'])} [{u.duration(p['time_s_range'][0])}–" \
              f"{u.duration(p['time_s_range'][1])}]"
        if p.get("energy_kwh") is not None:
            txt += f", {u.energy_kwh(p['energy_kwh'])}"
        if p.get("co2_kg") is not None:
            txt += f", {u.co2_kg(p['co2_kg'])}"
        if p.get("cost_usd") is not None:
            txt += f", {u.usd(p['cost_usd'])}"
        parts.append(txt)
        if static and static.get("total") and static["total"].get("time_h") is not None:
            s_t = static["total"]["time_h"] * 3600
            parts.append(f"static {u.duration(s_t)} ({_pct(s_t / p['time_s'] - 1 if p['time_s'] else None)})")
    return "wattlint: " + " | ".join(parts)


def summary_lines(s: dict[str, Any]) -> list[str]:
    """Human summary of a finished (or re-read) run: the analysis beside the static estimate."""
    a = s.get("analysis") or {}
    where = s.get("path") or "none written (the record could not be created; see the notes)"
    run = f"{s.get('status')}, {a.get('steps', 0):,} steps, {u.duration(a.get('time_s') or 0.0)}"
    renamed = s.get("record_renamed")
    # the record is not at the out= file given (a rank's -rank<N>, a name taken): said where the path is printed
    # (review: a later `compare-run run.jsonl` step found no file, and nothing had said why)
    instead = f"; not out={renamed['asked']!r}: {renamed['why']}" if renamed and s.get("path") else ""
    stop = s.get("record_stopped")
    if stop:  # the run went on after its record stopped being written: the file is not what this printout shows
        failed = stop.get("write_failed")
        lines = [f"wattlint run record: {where} INCOMPLETE: it stopped being written at step {stop['step']:,} "
                 f"because {'a write to it failed' if failed else 'tracking failed'} ({stop['error']}); it holds "
                 f"{stop['steps_written']:,} step(s) and no summary line{instead}",
                 f"  the run itself: {run} ("
                 + ("measuring and the budget guard went on after the record stopped; " if failed else "")
                 + "below: as measured in memory, not all of it in the record)"]
    else:
        lines = [f"wattlint run record: {where} ({run}){instead}"]
    # the budgets the run's final totals exceed (the tracker's end-of-run check), right under the status: a run that
    # ended inside its first window read 'completed' without a word of its budget (review)
    for b in s.get("budget_exceeded") or []:
        if not isinstance(b, dict):
            continue
        msg = str(b.get("message") or "")
        if msg.startswith("wattlint budget "):
            msg = msg[len("wattlint budget "):]
        elif _finite(b.get("limit"), b.get("spent")):
            msg = f"{b.get('budget')}={b['limit']:g}: spent {u.beyond(b['spent'], b['limit'])} {b.get('unit') or ''}"
        who = f"{Path(str(b['path'])).name}: " if b.get("path") else ""  # compare-run of a job: which rank's
        lines.append(f"  BUDGET EXCEEDED: {who}{msg or b.get('budget')}")
    if "step_time_s" not in a:
        lines.append(f"  {a.get('reason') or 'no steps measured'}")
        return lines
    st = a["step_time_s"]
    lines.append(f"  warm-up {a['warmup_steps']:,} steps ({u.duration(a['warmup_time_s'])}); stable "
                 f"{u.duration(st['mean'])}/step {_ci(st)}, p5–p95 "
                 f"{u.range_(st['mean'], st['p5'], st['p95'], u.DURATION)}"
                 + ("" if a.get("stable") else
                    f"; stable-phase criteria no longer met over the whole run: {a.get('reason')}" if s.get("at_stable")
                    else f"; NOT STABLE: {a.get('reason')}"))
    for c in a.get("channels") or []:
        if c.get("avg_power_w") is None:
            lines.append(f"  {c['name']}: no valid energy window ({c['windows_failed']} failed)")
            continue
        lab = {"modelled": " (modelled, not measured)", "fake": " (fake)"}.get(c.get("energy_source"), "")
        eps = c.get("energy_per_step_j")
        lines.append(f"  {c['name']}: {u.power_w(c['avg_power_w'])}{lab}"
                     # window energy over window steps: the time between steps (evaluation, checkpoints) included,
                     # unlike the comparison's power x mean step time (review: two per-step energies, one label)
                     + (f", {u.energy_j(eps)} per step incl. time between steps" if eps is not None else "")
                     + (f"; {c['windows_failed']} window(s) failed" if c.get("windows_failed") else "")
                     + f" [{c.get('energy_source')}]")
    after = (a.get("measured") or {}).get("after_steps")
    if after:
        e = after.get("device_energy_j")
        lines.append(f"  after the last step: {u.duration(after['time_s'])}"
                     + (f", {u.energy_j(e)} on the device(s)" if e is not None else "")
                     + " (evaluation / saving inside the tracked block): measured, not in the steps' totals")
    inp = a.get("input")
    if inp:
        lines.append(f"  input: {inp['data_wait_share'] * 100:.1f} % of stable step time waiting for data, "
                     f"{inp['stall_steps']} stall step(s)" + (" -> INPUT-BOUND" if inp["input_bound"] else ""))
    else:
        lines.append("  input: data loading not timed (iterate with t.wrap(loader) to see input-bound steps)")
    p = a.get("projection")
    if p:
        over = p.get("overrun_steps")
        what = (f"the run went {over:,} steps past its plan of {p['total_steps']:,}; what ran "
                f"({p['total_steps'] + over:,} steps)" if over else f"projected plan ({p['total_steps']:,} steps)")
        txt = f"  {what}: {u.duration(p['time_s'])} {_range(p['time_s'], p.get('time_s_range'), u.DURATION)}"
        if p.get("energy_kwh") is not None:
            rng = p.get("energy_kwh_range")
            txt += f", {u.energy_kwh(p['energy_kwh'])} {_range(rng[-1] if rng else None, rng, u.ENERGY_KWH)}"
        if p.get("co2_kg") is not None:
            txt += f", {u.co2_kg(p['co2_kg'])}"
        if p.get("cost_usd") is not None:
            txt += f", {u.usd(p['cost_usd'])}"
        lines.append(txt)
    else:
        m = a.get("measured") or {}
        if m.get("energy_kwh") is not None:  # no plan: what ran, at the site (PUE, grid intensity, prices)
            txt = (f"  measured ({a.get('steps', 0):,} steps): {u.duration(a.get('time_s') or 0.0)}, "
                   f"{u.energy_kwh(m['energy_kwh'])} facility (PUE {float(m.get('pue') or 1.0):g})")
            if m.get("co2_kg") is not None:
                txt += f", {u.co2_kg(m['co2_kg'])}"
            if m.get("cost_usd") is not None:
                txt += f", {u.usd(m['cost_usd'])}"
            lines.append(txt)
        if a.get("projection_note"):
            lines.append(f"  {a['projection_note']}")
    at = s.get("at_stable")
    if at and at.get("projection"):
        lines.append(f"  projection when the stable phase was reached (step {at['step']:,}, "
                     f"{u.duration(at['time_s'])} in): {u.duration(at['projection']['time_s'])}")
    cmp_ = s.get("comparison") or {}
    st_ = s.get("static") or {}
    # the energy model's description and an error have brackets of their own ('measured: cpu-amd-epyc run ... (CPU
    # method check: ...)'): after a colon, never inside another pair (review: 'static estimate (measured: ... (...)):')
    if st_.get("error"):
        lines.append(f"  static estimate: unavailable: {st_['error']}")
    elif cmp_:
        lines.append(f"  static estimate, energy model {st_.get('energy_model')}:")
        for key, label, table in (("step_time_s", "time/step", u.DURATION),
                                  ("step_device_energy_j", "device energy/step", u.ENERGY_J),
                                  ("total_time_s", "total time", u.DURATION),
                                  ("total_energy_kwh", "total energy", u.ENERGY_KWH)):
            c = cmp_.get(key)
            if c and c.get("static") is not None and c.get("measured") is not None:
                # both in the unit the larger reads best in ("35.9 J vs 2.50 Wh" hid a factor of 250)
                st, me = u.column([c["static"], c["measured"]], table)
                lines.append(f"    {label:18s} static {st} vs {c['basis']} {me}: "
                             f"error {_pct(c['error'])}" + (f" ({c['scope']})" if c.get("scope") else ""))
        if cmp_.get("note"):
            lines.append(f"    note: {cmp_['note']}")
    for note in s.get("notes") or []:
        lines.append(f"  note: {note}")
    return lines


class Display:
    def __init__(self, mode: str = "auto", every: int = 100, stream: TextIO | None = None):
        if mode not in MODES:
            from ..types import ConfigError

            raise ConfigError(f"display={mode!r}: use one of {', '.join(MODES)}")
        self.stream = stream or sys.stderr
        if os.environ.get("WATTLINT_QUIET") == "1":
            mode = "quiet"
        if mode == "auto":
            mode = "rich" if getattr(self.stream, "isatty", lambda: False)() else "line"
        self.mode = mode
        self.every = max(1, int(every))
        self._live = None

    def update(self, text: str) -> None:
        if self.mode == "quiet":
            return
        if self.mode == "line":
            print(text, file=self.stream, flush=True)
            return
        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            self._live = Live("", console=Console(file=self.stream), auto_refresh=False, transient=False)
            self._live.start()
        from rich.text import Text

        self._live.update(Text(text), refresh=True)

    def pause(self, text: str | None = None) -> None:
        """End the live region, its line left as ``text`` (the state now), so that what is printed next (a warning)
        starts on a line of its own; the next :meth:`update` starts a new live line below it. A warning printed
        while the region was live went into it, glued to the end of the live line, when it was written to the
        terminal by anything but rich's own redirect of sys.stderr (a logging handler, as logging.captureWarnings
        installs, holds the terminal itself; review)."""
        if self._live is None:
            return
        live, self._live = self._live, None
        try:
            if text is not None:
                from rich.text import Text

                live.update(Text(text))
        finally:
            self._stop(live)

    @staticmethod
    def _stop(live) -> None:
        """Stop the live region with its line ended: rich ends it on a terminal, but on a file or a CI log (where it
        prints the line once, when it stops) it leaves it without a newline, and what came next was glued to it."""
        try:
            live.stop()
        finally:
            con = live.console
            if not con.is_terminal and not con.is_jupyter:
                con.line()

    def end(self, lines: list[str], text: str | None = None) -> None:
        """The end of the run: the live line left as ``text`` (the last step's state: it showed the last N-th
        step's), then the summary."""
        self.pause(text)
        if self.mode == "quiet":
            return
        print("\n".join(lines), file=self.stream, flush=True)
