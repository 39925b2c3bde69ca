"""WL3xx — budgets and regressions (totals only: these rules also run on cached results)."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

from ...report import units
from ..baseline import stored
from ..registry import register
from ..rule import Case, Rule

# the budget rules compare at the precision every number shown keeps (the baseline, the JSON total, the messages)
AT_SHOWN_DIGITS = (" The estimate is compared at the 6 significant digits it is reported with (the baseline keeps "
                   "the same), so a budget set to a reported value is met by that estimate.")
UPDATE_HINT = "if intended, run 'wattlint check --update-baseline' and commit the baseline file"


class _Budget(Rule):
    severity = "error"
    uses_graph = False
    keys: tuple[tuple[str, str], ...] = ()  # (budget / total key, unit label)
    label = ""
    key_labels: dict[str, str] = {}  # what a total is called when the rule checks several (WL304: wall time, GPU-hours)
    example = """
        [[tool.wattlint.models]]
        name = "classifier"
        source = "models/resnet50.onnx"
        epochs = 90
        budget = { energy-kwh = 500, co2-kg = 200, cost-usd = 150, time-h = 48 }
    """
    use_instead = """
        bring the estimate under the budget (see the WL1xx/WL2xx findings for what saves most: precision, fused
        attention, batch, GPU choice), or raise the budget in pyproject.toml in a reviewed commit
    """

    def check(self, ctx):
        for key, _unit in self.keys:
            limit = ctx.budget.get(key)
            value = ctx.total.get(key)
            if limit is None or value is None:
                continue
            # at the 6 significant digits every number shown keeps (the baseline, the JSON total, the message): a
            # budget set to the reported 0.0631765 kWh is met by 0.06317654 kWh (review s49)
            value = stored(value)
            if _exact(value) > _exact(limit):
                over = value - limit
                kwh = over if key == "energy_kwh" else None
                shown = _pair(value, limit, key, _unit)  # one unit, digits enough to show the two different
                # ten times over reads as a ratio ("(38,451,285,982x the budget)"), not "by 3845128598234%"
                by = _times(value / limit, "the budget") or f"by {units.percent(over / limit)}"
                yield ctx.finding(
                    f"estimated {self.key_labels.get(key, self.label)} {shown[0]} exceeds the budget of {shown[1]} "
                    f"{by}",
                    saving_kwh=kwh, saving_pct=(over / value) if kwh else None, annotate=False)


def _exact(x: float) -> Decimal:
    """``x`` as the decimal it reads as (its shortest repr: 0.063, not 0.06299999999999999...), so that comparisons
    at the stored 6 significant digits are exact: a rise of exactly the threshold is not above it."""
    return Decimal(repr(float(x)))


def _pair(a: float, b: float, key: str, unit: str) -> tuple[str, str]:
    """:func:`units.pair`, but a value whose fixed-point digits would fill the line (a 1e-300 kWh budget or baseline
    read "0.000...000100 kWh", 300 digits) in ``g`` notation: the two values in the key's base unit, 6 significant
    digits (those compared)."""
    shown = units.pair(a, b, key)
    if max(map(len, shown)) <= 40:
        return shown
    if key == "cost_usd":
        return f"${a:.6g}", f"${b:.6g}"
    return f"{a:.6g} {unit}", f"{b:.6g} {unit}"


def _times(ratio, what: str) -> str | None:
    """Ten times ``what`` or more as a ratio ("(77x the budget)", "(1,250x the baseline)"), None below: a ratio so
    large that its digits would fill the line (a 1e-300 baseline) in ``g`` notation ("(1e+299x the baseline)")."""
    if ratio >= 1e15:
        r = float(ratio)  # a Decimal (WL305) beyond any float stays one
        return f"({r if math.isfinite(r) else ratio:.3g}x {what})"
    if ratio >= 1000:
        return f"({ratio:,.0f}x {what})"
    if ratio >= 10:
        return f"({ratio:.3g}x {what})"
    return None


def _rise_pct(rise: Decimal, threshold: float) -> str:
    """A rise above the threshold as a percentage that reads above it: units.percent stops at 3 decimals, which made
    0.06 -> 0.0630001 kWh (+5.00017 %) read "+5.000%" against a 5 % threshold; more decimals then, up to 12."""
    text = units.percent(float(rise), threshold)
    if text.startswith("<") or Decimal(text[:-1]) > _exact(threshold) * 100:
        return text
    for d in range(4, 13):
        text = f"{rise * 100:.{d}f}"
        if Decimal(text) > _exact(threshold) * 100:
            break
    return f"{text}%"


def _budget_cases(key: str, value: float):
    return (
        (Case("under budget", {"ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096}],
                               "total": {key: value}, "budget": {key: value * 2}}),
         Case("no budget set", {"ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096}],
                                "total": {key: value}})),
        (Case("over budget", {"ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096}],
                              "total": {key: value}, "budget": {key: value / 2}}, expect="exceeds the budget"),),
    )


@register
class EnergyBudget(_Budget):
    code = "WL301"
    name = "energy-budget"
    summary = "Estimated facility energy of the training plan exceeds the model's energy-kwh budget"
    keys = (("energy_kwh", "kWh"),)
    label = "energy"
    what = ("Compares the estimate's total facility energy (GPU + host, x PUE) with `budget.energy-kwh`."
            + AT_SHOWN_DIGITS)
    why = """
        A budget turns energy from a number discovered on the bill into a reviewed constraint: a change that
        raises the cost above it fails the commit, like a failing test (the point of running wattlint in
        pre-commit and CI).
    """
    sources = ("wattlint design, §8 (budgets)",)
    valid, invalid = _budget_cases("energy_kwh", 600.0)
    invalid = (Case("600 kWh against a 500 kWh budget",
                    {"ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096}], "total": {"energy_kwh": 600.0},
                     "budget": {"energy_kwh": 500.0}}, expect="600 kWh exceeds the budget of 500 kWh by 20%",
                    saving_pct=100 / 6),)


@register
class Co2Budget(_Budget):
    code = "WL302"
    name = "co2-budget"
    summary = "Estimated emissions of the training plan exceed the model's co2-kg budget"
    keys = (("co2_kg", "kg CO2e"),)
    label = "emissions"
    what = ("Compares the estimate's total emissions (facility kWh x grid intensity of the region) with "
            "`budget.co2-kg`." + AT_SHOWN_DIGITS)
    why = "Emissions depend on where the job runs as much as on the model; a CO2 budget makes the region a choice."
    sources = ("wattlint design, §8 (budgets)",)
    valid, invalid = _budget_cases("co2_kg", 240.0)


@register
class CostBudget(_Budget):
    code = "WL303"
    name = "cost-budget"
    summary = "Estimated cost of the training plan exceeds the model's cost-usd budget"
    keys = (("cost_usd", "USD"),)
    label = "cost"
    what = ("Compares the estimate's total cost (energy x price + GPU-hours x GPU-hour price) with `budget.cost-usd`."
            + AT_SHOWN_DIGITS)
    why = "Money is the budget most teams already track; the same estimate gives it before the run."
    sources = ("wattlint design, §8 (budgets)",)
    valid, invalid = _budget_cases("cost_usd", 90.0)


@register
class TimeBudget(_Budget):
    code = "WL304"
    name = "time-budget"
    summary = "Estimated wall time or GPU-hours of the training plan exceed the model's time-h / gpu-hours budget"
    keys = (("time_h", "h"), ("gpu_hours", "GPU-h"))
    label = "time"
    key_labels = {"time_h": "wall time", "gpu_hours": "GPU-hours"}
    what = ("Compares the estimate's wall time with `budget.time-h` and its GPU-hours with `budget.gpu-hours`."
            + AT_SHOWN_DIGITS)
    why = "Wall time bounds iteration speed and GPU-hours are what clusters allocate."
    sources = ("wattlint design, §8 (budgets)",)
    valid, invalid = _budget_cases("time_h", 30.0)


@register
class EnergyRegression(Rule):
    code = "WL305"
    name = "energy-regression"
    severity = "error"
    uses_graph = False
    summary = "Estimated energy rose more than regression-threshold against the committed baseline"
    what = """
        Compares the estimate's total energy with the model's entry in the baseline file (`baseline`, default
        wattlint-baseline.json, written by `wattlint check --update-baseline`). A rise above `regression-threshold`
        (a fraction, default 0.05; per model or top level) is an error, compared exactly at the 6 significant digits
        the file keeps (0.06 -> 0.063 kWh is +5 %, not above a 5 % threshold). A rise to 10 times the baseline or
        more reads as a ratio ("12.5x the baseline"). Models without a baseline entry are skipped, and the check
        says so in a note (as it
        does for a missing baseline file and for entries no configured model has).
    """
    why = """
        Budgets catch the big mistakes; the baseline catches drift: each commit that adds a few percent (a wider
        layer, an unfused op, fp32 creeping back in) is visible in review, with the number, before it ships.
    """
    example = """
        baseline: 412 kWh; after a change: 455 kWh (+10%), threshold 5% -> WL305 error, exit 1
    """
    use_instead = """
        undo the regression, or accept it explicitly: wattlint check --update-baseline && git add wattlint-baseline.json
    """
    sources = ("wattlint design, §8 (baseline, regression-threshold)",)
    valid = (
        Case("within threshold", {"ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096}],
                                  "total": {"energy_kwh": 103.0}, "baseline": {"energy_kwh": 100.0}}),
        Case("no baseline entry", {"ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096}]}),
        Case("energy fell", {"ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096}],
                             "total": {"energy_kwh": 50.0}, "baseline": {"energy_kwh": 100.0}}),
    )
    invalid = (
        Case("+10% against a 5% threshold", {"ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096}],
                                             "total": {"energy_kwh": 110.0}, "baseline": {"energy_kwh": 100.0}},
             expect="+10% vs baseline (100 kWh -> 110 kWh", saving_pct=100 / 11),
    )

    def check(self, ctx):
        if not ctx.baseline or ctx.baseline.get("energy_kwh") in (None, 0):
            return
        old = float(ctx.baseline["energy_kwh"])
        new = ctx.energy_kwh
        # at the baseline's precision (unchanged is +0, not +<0.001 %) and in exact decimals: 0.06 -> 0.063 kWh is
        # +5 % exactly, not above a 5 % threshold (float arithmetic made it 0.050000000000000044; review s49)
        with localcontext() as dec:
            dec.prec = 60
            old_d, new_d = _exact(old), _exact(stored(new))
            if new_d <= old_d * (1 + _exact(ctx.regression_threshold)):
                return
            ratio = new_d / old_d
            rise_d = ratio - 1
        gpu_note = ""
        if ctx.baseline.get("gpu") and ctx.summary.get("gpu") and ctx.baseline["gpu"] != ctx.summary["gpu"]:
            gpu_note = f" (baseline on {ctx.baseline['gpu']}, now {ctx.summary['gpu']})"
        was, now = ctx.baseline.get("calibration"), ctx.summary.get("calibration")
        if was and now and was != now:  # a new calibration (or one lost) moves every number: say so
            gpu_note += (f" (energy model changed: baseline {was}, now {now}; the difference may come from the energy "
                         "model rather than from the model)")
        was_s, now_s = _pair(old, stored(new), "energy_kwh", "kWh")  # the values compared
        times = _times(ratio, "the baseline")  # a 1e-300 kWh baseline printed a 300-digit percentage
        by = times[1:-1] if times else f"+{_rise_pct(rise_d, ctx.regression_threshold)} vs baseline"
        yield ctx.finding(
            f"estimated energy {by} ({was_s} -> {now_s}, "
            f"threshold {units.fraction(ctx.regression_threshold)}){gpu_note}; {UPDATE_HINT}",
            saving_kwh=new - old, saving_pct=(new - old) / new, annotate=False)
