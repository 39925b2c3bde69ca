"""Unit formatting. The only place that turns numbers into human units (DESIGN §2: report/ formats units).

A single value is shown in the unit it reads best in (``energy_kwh(0.0003)`` -> ``0.3 Wh``; ``energy_kwh(2e-8)`` ->
``72 mJ``... in J below 0.1 Wh). Columns and ranges use ONE unit for all their values (:func:`column`,
:func:`range_`): a table never shows ``2.39 h`` beside ``78.7 min``, and a 5-95 % range is written in the unit of its
central value.
"""

from __future__ import annotations

import math
from typing import Sequence

# (divisor, label, smallest value shown in this unit), largest first
DURATION = ((365.25 * 86400.0, "years", 2 * 365.25 * 86400.0), (86400.0, "days", 3 * 86400.0), (3600.0, "h", 7200.0), (60.0, "min", 120.0), (1.0, "s", 1.0),
            (1e-3, "ms", 1e-3), (1e-6, "µs", 1e-6), (1e-9, "ns", 0.0))
ENERGY_J = ((3.6e9, "MWh", 3.6e9), (3.6e6, "kWh", 3.6e5), (1e6, "MJ", 1e6), (1e3, "kJ", 1e3), (1.0, "J", 1.0),
            (1e-3, "mJ", 1e-3), (1e-6, "µJ", 0.0))
ENERGY_KWH = ((1e6, "GWh", 1e6), (1e3, "MWh", 1e3), (1.0, "kWh", 0.1), (1e-3, "Wh", 1e-4), (1 / 3.6e6, "J", 1 / 3.6e6),
              (1 / 3.6e9, "mJ", 0.0))
CO2_KG = ((1000.0, "t CO2e", 1000.0), (1.0, "kg CO2e", 0.1), (1e-3, "g CO2e", 1e-4), (1e-6, "mg CO2e", 0.0))
FLOP = ((1e18, "EFLOP", 1e18), (1e15, "PFLOP", 1e15), (1e12, "TFLOP", 1e12), (1e9, "GFLOP", 1e9),
        (1e6, "MFLOP", 1e6), (1e3, "kFLOP", 1e3), (1.0, "FLOP", 0.0))
GPU_HOURS = ((1e6, "M GPU-h", 1e6), (1e3, "k GPU-h", 1e4), (1.0, "GPU-h", 1.0), (1 / 60, "GPU-min", 1 / 60),
             (1 / 3600, "GPU-s", 0.0))
POWER = ((1e6, "MW", 1e6), (1e3, "kW", 1e4), (1.0, "W", 1.0), (1e-3, "mW", 0.0))
BYTES = ((2.0**40, "TiB", 2.0**40), (2.0**30, "GiB", 2.0**30), (2.0**20, "MiB", 2.0**20), (2.0**10, "KiB", 2.0**10),
         (1.0, "B", 0.0))


def _num(x: float, digits: int = 3) -> str:
    """``digits`` significant digits, no exponent for ordinary magnitudes, thousands separators."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 1e15:
        return f"{x:.{digits - 1}e}"
    rounded = float(f"{x:.{digits}g}")
    if abs(rounded) < 1000 or abs(x) >= 10_000:
        # rounded first (0.9999 s is '1.00', not '1.000'); 2,169,915 GPU-h printed every digit of a number known
        # to three; 1,000-9,999 keep their four integer digits
        x = rounded
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    return f"{x:,.{decimals}f}"


def figure(x: float | None, digits: int = 4) -> str:
    """A number in an assumption line, where the reader redoes its arithmetic: ``digits`` significant digits as
    ``g`` writes them (0.001667, 1.5) below 1,000, thousands separators above (1,171, 1,174,000), never an exponent
    (review: 'cost $1.526e+05 = 1.174e+06 kWh')."""
    if x is None or not math.isfinite(x):
        return "n/a"
    text = f"{x:.{digits}g}"
    return text if "e" not in text and abs(x) < 1e3 else _num(x, digits)


def ms(seconds: float) -> str:
    """Seconds as milliseconds in a note: three significant digits, never an exponent ('6,000', not '6e+03')."""
    return figure(seconds * 1e3, 3)


def pick(values: Sequence[float], table) -> tuple[float, str]:
    """(divisor, label) of ``table`` for the largest magnitude among ``values``, as it reads once rounded to three
    significant digits (119.95 s is '2.00 min', as 0.0333 GPU-h is: not '120 s' beside '2.00 GPU-min')."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    top = max(finite, default=0.0)
    if top > 0:
        top = float(f"{top:.3g}")
    for scale, label, least in table:
        if top >= least and top > 0:
            return scale, label
    if top == 0:  # nothing but zeros: the base unit, the one a lone zero is written in ('0 kg CO2e', not a 5-95 %
        # range of '0 g CO2e - 0 g CO2e' beside it: review)
        base = [entry[:2] for entry in table if entry[0] == 1.0]
        if base:
            return base[0]
    return table[-2][:2] if len(table) > 1 else table[-1][:2]


def in_unit(x: float | None, unit: tuple[float, str], digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{_num(x / unit[0], digits)} {unit[1]}"


def column(values: Sequence[float], table) -> list[str]:
    """Every value of a table column in the one unit its largest value reads best in."""
    unit = pick(values, table)
    return [in_unit(v, unit) for v in values]


def one(x: float | None, table) -> str:
    return "n/a" if x is None or not math.isfinite(x) else in_unit(x, pick([x], table))


def range_(central: float, lo: float, hi: float, table) -> str:
    """``lo – hi`` in the unit of ``central``."""
    unit = pick([central], table)
    return f"{in_unit(lo, unit)} – {in_unit(hi, unit)}"


# ---- quantities ----------------------------------------------------------------------------------------------------

def si(x: float, unit: str, digits: int = 3) -> str:
    """SI prefix: 1.2e15 FLOP -> '1.2 PFLOP'."""
    if x is None or not math.isfinite(x):
        return "n/a"
    prefixes = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
    for f, p in prefixes:
        if abs(x) >= f:
            return f"{_num(x / f, digits)} {p}{unit}"
    if x != 0 and abs(x) < 0.1:
        for f, p in ((1e-3, "m"), (1e-6, "µ"), (1e-9, "n")):
            if abs(x) >= f:
                return f"{_num(x / f, digits)} {p}{unit}"
    return f"{_num(x, digits)} {unit}"


def energy_kwh(kwh: float | None) -> str:
    return one(kwh, ENERGY_KWH) if kwh else "0 kWh"


def range_kwh(lo: float, hi: float, central: float | None = None) -> str:
    return range_(central if central is not None else hi, lo, hi, ENERGY_KWH)


def energy_j(j: float) -> str:
    return one(j, ENERGY_J)


def duration(s: float) -> str:
    if s is None or not math.isfinite(s):
        return "n/a"
    return in_unit(s, pick([s], DURATION)) if s else "0 s"


def hours(h: float) -> str:
    return duration(h * 3600.0) if h is not None else "n/a"


def range_hours(lo: float, hi: float, central: float | None = None) -> str:
    c = central if central is not None else hi
    return range_(c * 3600.0, lo * 3600.0, hi * 3600.0, DURATION)


def gpu_hours(h: float) -> str:
    return one(h, GPU_HOURS) if h else "0 GPU-h"


def range_gpu_hours(lo: float, hi: float, central: float | None = None) -> str:
    return range_(central if central is not None else hi, lo, hi, GPU_HOURS)


def co2_kg(kg: float) -> str:
    return one(kg, CO2_KG) if kg else "0 kg CO2e"


def range_co2_kg(lo: float, hi: float, central: float | None = None) -> str:
    return range_(central if central is not None else hi, lo, hi, CO2_KG)


def usd(x: float | None) -> str:
    if x is None:
        return "—"
    if not math.isfinite(x):
        return "n/a"
    if x < 0:  # a saving or a difference: the sign before the currency ('$-150' read as a price)
        return "-" + usd(-x)
    if 0 < abs(x) < 0.01:  # two significant digits ($0.0033): '<$0.01 (5-95 %: <$0.01 - <$0.01)' said nothing
        return f"${_num(x, 2)}"
    if round(x, 2) >= 100:  # whole dollars, to the 6 significant digits the JSON keeps (json_out): $3,254,870
        return f"${float(f'{x:.6g}'):,.0f}"
    return f"${x:,.2f}"  # cents under $100


def power_w(w: float) -> str:
    return one(w, POWER)


def bytes_(n: float) -> str:
    if n is None or not math.isfinite(n):
        return "n/a"
    if abs(n) < 1024:
        return f"{int(n)} B"
    return one(n, BYTES)


def flops(x: float) -> str:
    return one(x, FLOP) if x else "0 FLOP"


def count(n: float) -> str:
    """A count in k / M / B (billion) / T with 3 significant digits; the unit is chosen after rounding, so 999,999
    reads "1.00 M", not "1,000 k", and 2e12 tokens "2.00 T", not "2,000 B"."""
    if n is None:
        return "n/a"
    if n and math.isfinite(n) and abs(n) >= 1e4:
        mag = math.floor(math.log10(abs(n)))
        n = round(n, 2 - mag)  # 3 significant digits
    if abs(n) >= 1e12:
        return f"{_num(n / 1e12)} T"
    if abs(n) >= 1e9:
        return f"{_num(n / 1e9)} B"
    if abs(n) >= 1e6:
        return f"{_num(n / 1e6)} M"
    if abs(n) >= 1e4:
        return f"{_num(n / 1e3)} k"
    return f"{int(n):,}" if float(n).is_integer() else _num(n)


# ---- values compared in one message (a budget, a baseline) ----------------------------------------------------------

MAX_DIGITS = 7  # estimates are stored to 6 significant digits (baseline entries): more would show float noise


def pair(a: float, b: float, kind: str) -> tuple[str, str]:
    """``a`` and ``b`` (``kind``: a total's key: energy_kwh, gpu_energy_kwh, co2_kg, cost_usd, time_h, gpu_hours) in
    ONE unit, the one the larger reads best in, with the fewest significant digits (3 or more) that show them
    different when they are: an estimate 0.4 % over its budget never reads "100 kWh exceeds the budget of 100 kWh"."""
    if kind == "cost_usd":
        return _usd_pair(a, b)
    table, scale = {"energy_kwh": (ENERGY_KWH, 1.0), "gpu_energy_kwh": (ENERGY_KWH, 1.0), "co2_kg": (CO2_KG, 1.0),
                    "time_h": (DURATION, 3600.0), "gpu_hours": (GPU_HOURS, 1.0)}[kind]
    x, y = a * scale, b * scale
    unit = pick([x, y], table)
    for digits in range(3, MAX_DIGITS + 1):
        sx, sy = in_unit(x, unit, digits), in_unit(y, unit, digits)
        if sx != sy or x == y:
            break
    return sx, sy


def _usd_pair(a: float, b: float) -> tuple[str, str]:
    if any(0 < abs(v) < 0.01 for v in (a, b)):  # a budget of $0.001 read "<$0.01" (review): digits, not a bound
        for digits in range(3, MAX_DIGITS + 1):
            sa, sb = (f"${v:.{digits}g}" for v in (a, b))
            if sa != sb or a == b:
                break
        return sa, sb
    sa, sb = usd(a), usd(b)
    decimals = 2
    while sa == sb and a != b and decimals <= 6:
        sa, sb = (f"${v:,.{decimals}f}" for v in (a, b))
        decimals += 1
    return sa, sb


def percent(x: float, differ_from: float | None = None) -> str:
    """``x`` (a fraction) as a percentage with the fewest decimals (0 to 3) that keep a nonzero ``x`` from reading
    0 % and, with ``differ_from``, that show it different from that fraction: a rise of 5.2 % over a 5 % threshold
    reads "+5.2%", not "+5%"."""
    for d in range(0, 4):
        text = f"{x * 100:.{d}f}"
        if (x == 0 or float(text) != 0) and (differ_from is None or x == differ_from
                                             or text != f"{differ_from * 100:.{d}f}"):
            break
    else:
        if x != 0 and float(text) == 0:  # below 0.0005 %: never "0.000%" for a nonzero value
            return f"{'-' if x < 0 else ''}<0.001%"
    return f"{text}%"


def beyond(x: float, limit: float, digits: int = 4) -> str:
    """``x`` in ``g`` notation with ``digits`` significant digits, or more (up to 10) when needed so that the text
    reads beyond ``limit`` as ``x`` is: a budget of 100 crossed by 0.02 is "100.02", not "100"."""
    text = f"{x:.{digits}g}"
    for d in range(digits, 11):
        text = f"{x:.{d}g}"
        if (x > limit) == (float(text) > limit) and (x < limit) == (float(text) < limit):
            break
    return text


def fraction(x: float) -> str:
    """A configured fraction (a threshold) as a percentage, exactly as given up to 4 significant digits: 0.025 ->
    2.5%."""
    return f"{x * 100:.4g}%"


def pct(x: float) -> str:
    """A share as a percentage: one decimal; below 0.1 % says so ('<0.1 %'), none at all is '0 %'."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0 %"
    if abs(x) >= 0.001:
        return f"{x * 100:.1f} %"
    return "<0.1 %" if x > 0 else ">-0.1 %"
