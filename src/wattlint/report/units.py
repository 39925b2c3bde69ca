"""Unit formatting. The only place that turns numbers into human units (DESIGN §2: report/ formats units)."""

from __future__ import annotations

import math


def _num(x: float, digits: int = 3) -> str:
    """``digits`` significant digits, no exponent for ordinary magnitudes, thousands separators."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    if abs(x) >= 1e15:
        return f"{x:.{digits - 1}e}"
    return f"{x:,.{decimals}f}"


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


def energy_kwh(kwh: float) -> str:
    if kwh is None or not math.isfinite(kwh):
        return "n/a"
    if abs(kwh) >= 1000:
        return f"{_num(kwh / 1000)} MWh" if abs(kwh) < 1e6 else f"{_num(kwh / 1e6)} GWh"
    if abs(kwh) >= 0.1:
        return f"{_num(kwh)} kWh"
    return f"{_num(kwh * 1000)} Wh"


def energy_j(j: float) -> str:
    if j is None or not math.isfinite(j):
        return "n/a"
    if abs(j) >= 3.6e5:
        return energy_kwh(j / 3.6e6)
    return si(j, "J")


def duration(s: float) -> str:
    if s is None or not math.isfinite(s):
        return "n/a"
    if s < 1e-6:
        return f"{_num(s * 1e9)} ns" if s > 0 else "0 s"
    if s < 1e-3:
        return f"{_num(s * 1e6)} µs"
    if s < 1:
        return f"{_num(s * 1e3)} ms"
    if s < 120:
        return f"{_num(s)} s"
    if s < 7200:
        return f"{_num(s / 60)} min"
    if s < 3 * 86400:
        return f"{_num(s / 3600)} h"
    return f"{_num(s / 86400)} days"


def hours(h: float) -> str:
    return duration(h * 3600.0)


def gpu_hours(h: float) -> str:
    if h is None or not math.isfinite(h):
        return "n/a"
    if h >= 1 or h == 0:
        return f"{_num(h)} GPU-h"
    if h * 60 >= 1:
        return f"{_num(h * 60)} GPU-min"
    return f"{_num(h * 3600)} GPU-s"


def co2_kg(kg: float) -> str:
    if kg is None or not math.isfinite(kg):
        return "n/a"
    if abs(kg) >= 1000:
        return f"{_num(kg / 1000)} t CO2e"
    if abs(kg) >= 0.1:
        return f"{_num(kg)} kg CO2e"
    return f"{_num(kg * 1000)} g CO2e"


def usd(x: float | None) -> str:
    if x is None:
        return "—"
    if 0 < abs(x) < 0.01:
        return "<$0.01"
    if abs(x) >= 100:
        return f"${x:,.0f}"
    return f"${x:,.2f}"


def power_w(w: float) -> str:
    return si(w, "W")


def bytes_(n: float) -> str:
    if n is None or not math.isfinite(n):
        return "n/a"
    for f, u in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= f:
            return f"{_num(n / f)} {u}"
    return f"{int(n)} B"


def flops(x: float) -> str:
    return si(x, "FLOP")


def count(n: float) -> str:
    if n is None:
        return "n/a"
    if abs(n) >= 1e9:
        return f"{_num(n / 1e9)} B"
    if abs(n) >= 1e6:
        return f"{_num(n / 1e6)} M"
    if abs(n) >= 1e4:
        return f"{_num(n / 1e3)} k"
    return f"{int(n):,}" if float(n).is_integer() else _num(n)


def pct(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x * 100:.1f} %" if x >= 0.001 else "<0.1 %"


def range_kwh(lo: float, hi: float) -> str:
    return f"{energy_kwh(lo)} – {energy_kwh(hi)}"


def range_hours(lo: float, hi: float) -> str:
    return f"{hours(lo)} – {hours(hi)}"


def range_gpu_hours(lo: float, hi: float) -> str:
    return f"{gpu_hours(lo)} – {gpu_hours(hi)}"
