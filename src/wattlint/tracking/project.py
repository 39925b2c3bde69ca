"""STEP projection (del Rey et al., arXiv 2307.05520): measure the stable steps of the run itself and project the
whole plan from them. One pure function, :func:`analyze`, used live by the tracker and offline on a run record,
so a record re-analysed later gives the same numbers the run showed.

Time:   projected = elapsed + remaining steps x mean stable step time + remaining epoch boundaries x the measured
        extra time of a boundary step (evaluation, checkpointing, data-loader restart; 0 until one is observed).
Energy: device energy so far (measured windows; windows whose reading failed are filled at the stable mean power
        and counted) + remaining time x mean stable power of each device; host energy is modelled (stated).
Range:  5-95 %: the remaining part scaled by 1 +- (1.645 x batch-means SE / mean + drift), where drift is the
        difference between the two halves of the stable phase; energy adds the spread of the window powers.
CO2 / cost: facility energy = (device + host) x PUE, x grid intensity, x price; GPU-hours x GPU-hour price; of the
        whole plan (the projection) and of what ran (``measured``: also without a plan, whose site settings, PUE,
        grid intensity and prices, resolve without one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .stats import Z90, distribution, stable_stats

INPUT_BOUND_SHARE = 0.10  # stable time spent waiting for data above which a run is flagged input-bound
STALL_FRACTION = 0.5  # a step is a data-loader stall when its data wait exceeds this share of the step
MIN_FAILED_SHARE = 0.5  # a sampled window with at least this share of failed samples has no trusted energy


@dataclass(frozen=True)
class Settings:
    """When the stable phase is declared (all must hold)."""

    min_steps: int = 30  # stable steps
    min_stable_s: float = 20.0  # seconds of stable steps
    max_rel_ci: float = 0.03  # 90 % CI half-width of the mean step time / mean

    def __post_init__(self) -> None:
        from ..types import ConfigError

        def number(x) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

        if not (number(self.min_steps) and float(self.min_steps).is_integer() and self.min_steps >= 2):
            raise ConfigError(f"Settings(min_steps={self.min_steps!r}): a whole number of stable steps >= 2")
        if not (number(self.min_stable_s) and self.min_stable_s >= 0):
            raise ConfigError(f"Settings(min_stable_s={self.min_stable_s!r}): seconds of stable steps, >= 0")
        if not (number(self.max_rel_ci) and 0 < self.max_rel_ci <= 1):
            raise ConfigError(f"Settings(max_rel_ci={self.max_rel_ci!r}): the 90 % CI half-width of the mean step "
                              "time over the mean, a fraction in (0, 1]")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Settings":
        d = d or {}
        return cls(**{k: d[k] for k in ("min_steps", "min_stable_s", "max_rel_ci") if d.get(k) is not None})

    def as_dict(self) -> dict[str, Any]:
        return {"min_steps": self.min_steps, "min_stable_s": self.min_stable_s, "max_rel_ci": self.max_rel_ci,
                "warmup_rule": "MSER-5 on the step times (epoch-boundary steps excluded)",
                "ci": "batch means (10 batches), 90 % two-sided"}


@dataclass(frozen=True)
class PlanInfo:
    """What the projection needs from the plan (same semantics as ``wattlint estimate``; see wattlint.plan)."""

    steps: int | None = None
    epochs: float | None = None
    steps_per_epoch: int | None = None
    gpus: int = 1
    pue: float = 1.0
    carbon_intensity_g_per_kwh: float | None = None
    price_per_kwh: float | None = None
    gpu_hour_price: float | None = None
    # a resumed run (a checkpoint): the optimizer steps done before it started (its own steps count from 0 and its
    # ``steps`` are those still to run), and how many of them belong to the epoch it starts in (None: not known)
    start_step: int | None = None
    start_in_epoch: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "PlanInfo":
        d = d or {}
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if d.get(k) is not None})


@dataclass
class Window:
    """One measured window: steps [first, end), wall times (s since start), energy per channel (None = failed)."""

    first: int
    end: int
    t0: float
    t1: float
    energy_j: list[float | None]
    failed: list[bool] = field(default_factory=list)
    after_s: float = 0.0  # seconds at the window's end after its last step (the run's last window: work after the loop)
    # per channel: the wall seconds its energy was read over, where the step clock is not wall time (clock='process'
    # times CPU seconds); None / missing: the window's duration
    wall_s: list[float | None] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return self.end - self.first

    @property
    def duration(self) -> float:
        return self.t1 - self.t0

    def wall(self, c: int) -> float:
        """Wall seconds of channel ``c``'s energy reading in this window (its power is energy / wall seconds)."""
        w = self.wall_s[c] if c < len(self.wall_s) else None
        return float(w) if w is not None else self.duration

    @property
    def steps_duration(self) -> float:
        """The part of the window the steps ran in (without the time after the last step)."""
        return max(0.0, self.duration - self.after_s)

    def steps_energy(self, energy_j: float, rate: float | None) -> float:
        """The part of ``energy_j`` (this window's, one channel) the steps drew: all of it without time after the
        last step; else the steps' time at ``rate`` (the run's stable energy per second of the step clock: evaluation
        or checkpointing after the loop draws what it draws), capped at the window's energy, or pro rata in time
        without a stable rate."""
        if self.after_s <= 0 or self.duration <= 0:
            return energy_j
        if rate is not None and self.after_s > AFTER_PRO_RATA * self.duration:
            return min(energy_j, rate * self.steps_duration)
        # a short tail (or no stable power): pro rata in time; the difference of the window's power from the stable
        # mean is noise there, which the subtraction booked as after-loop work (134 us 'drawing' 0.6 J = 4.4 kW)
        return energy_j * self.steps_duration / self.duration


# Work after the last step shorter than this share of its window is split from the steps' energy pro rata in time
AFTER_PRO_RATA = 0.05


@dataclass
class RunData:
    step_times: Sequence[float]
    boundaries: Sequence[int]  # indices of steps that follow an epoch boundary
    data_wait: Sequence[float] | None  # per step (None: the loop did not report data loading)
    windows: list[Window]
    channels: list[dict[str, Any]]  # per channel: name, kind (gpu|cpu), energy_source (counter|sampling|modelled)
    plan: PlanInfo
    host_w: float | None = None  # modelled host power for GPU runs (None on CPU runs: the CPU is the device)
    elapsed_s: float | None = None  # wall seconds since start at the time of analysis (>= sum of step times)


def _shorter(value: float, limit: float) -> str:
    """``value`` (< ``limit``) with enough digits to read below it: 0.19 against 0.2, not 0.2 < 0.2."""
    for digits in range(1, 7):
        text = f"{value:.{digits}f}"
        if float(text) < limit:
            return text
    return f"{value:.6g}"


def _stable_start(regular_mask: np.ndarray, warm_regular: int) -> int:
    """Global index of the first stable step, given the warm-up length counted in regular (non-boundary) steps."""
    idx = np.flatnonzero(regular_mask)
    return int(idx[warm_regular]) if warm_regular < idx.size else int(regular_mask.size)


def analyze(data: RunData, settings: Settings = Settings()) -> dict[str, Any]:
    """Warm-up, stable phase, per-step distributions, input-bound share and the projection of the whole plan."""
    times = np.asarray(data.step_times, dtype=float)
    n = int(times.size)
    bset = {int(b) for b in data.boundaries if 0 <= int(b) < n}
    regular_mask = np.ones(n, dtype=bool)
    if bset:
        regular_mask[list(bset)] = False
    regular = times[regular_mask]
    elapsed_steps = float(times.sum())
    out: dict[str, Any] = {"steps": n, "time_s": elapsed_steps, "boundaries": len(bset)}
    st = stable_stats(regular)
    if st is None:
        out.update(stable=False, reason=f"{n} step(s): too few to analyse")
        return out
    first_stable = _stable_start(regular_mask, st.warmup)
    stable_time = st.sum
    reasons = []
    if st.n < settings.min_steps:
        reasons.append(f"{st.n} stable steps < {settings.min_steps}")
    if stable_time < settings.min_stable_s:
        reasons.append(f"{_shorter(stable_time, settings.min_stable_s)} s of stable steps < "
                       f"{settings.min_stable_s:g} s")
    if not math.isfinite(st.rel_ci90):  # under 4 stable steps there are no 2 batch means to spread (review: '+-inf %')
        reasons.append("too few steps for an interval of the mean step time")
    elif not st.rel_ci90 <= settings.max_rel_ci:
        reasons.append(f"mean step time +-{st.rel_ci90 * 100:.1f} % (90 % CI) > {settings.max_rel_ci * 100:g} %")
    out.update(stable=not reasons, reason="; ".join(reasons) or None, warmup_steps=first_stable,
               warmup_time_s=float(times[:first_stable].sum()), step_time_s=st.as_dict())
    mu = st.mean
    rel_t = Z90 * st.se / mu + st.drift if mu > 0 and math.isfinite(st.se) else float("inf")

    # ---- epoch boundaries: measured extra time of a boundary step
    obs_b = sorted(bset)
    extra = [float(times[b]) - mu for b in obs_b]
    boundary_extra = float(np.mean(extra)) if extra else 0.0
    out["epoch_boundary_extra_s"] = boundary_extra if extra else None

    # ---- input-bound
    if data.data_wait is not None and len(data.data_wait) == n:
        wait = np.asarray(data.data_wait, dtype=float)
        sel = np.arange(n) >= first_stable
        share = float(wait[sel].sum() / max(times[sel].sum(), 1e-12))
        stalls = int(np.sum(wait[sel] > STALL_FRACTION * times[sel]))
        out["input"] = {"data_wait_share": share, "stall_steps": stalls, "input_bound": share > INPUT_BOUND_SHARE,
                        "data_wait_s": distribution(wait[sel]),
                        "rule": f"input-bound when > {INPUT_BOUND_SHARE:.0%} of stable step time waits for data; "
                                f"a stall is a step waiting > {STALL_FRACTION:.0%} of its time"}
    else:
        out["input"] = None

    # ---- energy per channel: stable mean power from valid windows that start after warm-up
    # Two figures per channel: its RATE, energy per second of the step clock (what the projection multiplies by the
    # remaining step time, so energy per step = rate x step time whatever the clock), and its POWER, energy per wall
    # second (what is shown in W). They are one number on the wall clock; on clock='process' a window lasts its CPU
    # seconds but draws its energy over its wall seconds (review: a 2-core CPU read 159 W, its model caps at 34 W).
    ch_out = []
    rates = []
    energy_so_far = 0.0
    filled = 0
    last_t1 = max((w.t1 for w in data.windows), default=0.0)
    after_s = sum(w.after_s for w in data.windows)
    after_energy = 0.0
    for c, ch in enumerate(data.channels):
        def valid(w: Window, c: int = c) -> bool:
            return c < len(w.energy_j) and w.energy_j[c] is not None

        # a window without steps (the run's end after a window closed on its last step) holds no step's power
        stable_w = [w for w in data.windows if w.first >= first_stable and w.duration > 0 and w.steps > 0
                    and valid(w)]
        if any(not w.after_s for w in stable_w):  # the last window's work after the loop is not a step's power
            stable_w = [w for w in stable_w if not w.after_s]
        all_valid = [w for w in data.windows if valid(w)]
        e_st = sum(w.energy_j[c] for w in stable_w)
        t_st = sum(w.duration for w in stable_w)
        wall_st = sum(w.wall(c) for w in stable_w)
        s_st = sum(w.steps for w in stable_w)
        r = e_st / t_st if t_st > 0 else None
        p = e_st / wall_st if wall_st > 0 else None
        if r is None and all_valid:  # no stable window yet: mean of every valid window with steps
            with_steps = [w for w in all_valid if w.steps > 0]
            tt = sum(w.duration for w in with_steps)
            tw = sum(w.wall(c) for w in with_steps)
            ee = sum(w.energy_j[c] for w in with_steps)
            r = ee / tt if tt > 0 else None
            p = ee / tw if tw > 0 else None
        pw = [w.energy_j[c] / w.wall(c) for w in stable_w if w.wall(c) > 0]
        rel_p = (Z90 * float(np.std(pw, ddof=1)) / math.sqrt(len(pw)) / p) if p and len(pw) >= 2 else 0.0
        e_all = sum(w.energy_j[c] for w in all_valid)
        e_meas = sum(w.steps_energy(w.energy_j[c], r) for w in all_valid)  # the steps' part (all but after the loop)
        after_energy += e_all - e_meas
        n_failed = sum(1 for w in data.windows if not valid(w))
        e_fill = sum(w.steps_duration for w in data.windows if not valid(w)) * (r or 0.0)
        filled += n_failed
        energy_so_far += e_meas + e_fill
        rates.append((r, p, rel_p))
        per_step = [w.energy_j[c] / w.steps for w in stable_w if w.steps > 0]
        ch_out.append({"name": ch.get("name"), "kind": ch.get("kind"), "energy_source": ch.get("energy_source"),
                       "avg_power_w": p, "energy_per_step_j": (e_st / s_st) if s_st else None,
                       "energy_per_step_dist_j": distribution(per_step), "power_dist_w": distribution(pw),
                       "windows_valid": len(all_valid), "windows_failed": n_failed, "measured_energy_j": e_meas,
                       "filled_energy_j": e_fill, "after_steps_energy_j": e_all - e_meas})
    out["channels"] = ch_out
    out["windows"] = len(data.windows)
    have = [x for x in rates if x[0] is not None]
    dev_p = sum(r for r, _, _ in have) if have else None  # rate: energy per second of the step clock
    dev_w = sum(p for _, p, _ in have if p is not None) if have else None  # power: energy per wall second
    rel_p_all = max((x[2] for x in rates), default=0.0)
    elapsed = max(float(data.elapsed_s or 0.0), elapsed_steps)
    # energy after the last closed window (steps not yet in a window) at the mean power
    tail = max(0.0, elapsed - last_t1)
    device_so_far = (energy_so_far + (dev_p or 0.0) * tail) if dev_p is not None else None
    # time and energy cover the same span, the steps: work after the last step inside the tracked block (a final
    # evaluation, a checkpoint save) is measured but kept apart, never in the totals compared with an estimate
    out["measured"] = {"time_s": elapsed_steps, "device_energy_j": device_so_far, "windows_filled": filled,
                       "host_energy_j": data.host_w * elapsed_steps if data.host_w is not None else None,
                       "after_steps": ({"time_s": after_s, "device_energy_j": after_energy if dev_p is not None
                                        else None} if after_s > 0 else None)}
    out["per_step"] = {"time_s": mu, "device_energy_j": dev_p * mu if dev_p is not None else None,
                       "device_power_w": dev_w, "host_energy_j": data.host_w * mu if data.host_w is not None else None}
    # what ran, at the site (additive): facility energy = (device + host) x PUE, its CO2 and cost, as the budget guard
    # reads them; a run without a plan has these too (its site settings resolve without one), the projection below
    # is the whole plan's
    spent = measured_totals(data, out, data.plan)
    if spent:
        out["measured"].update(spent, pue=float(data.plan.pue))

    # ---- projection of the whole plan
    plan = data.plan
    if not plan.steps:
        out["projection"] = None
        out["projection_note"] = "no plan: pass steps=, epochs= (with dataset=) or tokens= to project the whole run"
        return out
    total_steps = int(plan.steps)
    remaining = max(0, total_steps - n)
    spe, spe_from, first_b = _epoch_layout(plan, obs_b)
    rem_b = 0
    if spe:
        # the epoch boundaries of this run's steps [0, total_steps): first_b, first_b + spe, ...
        total_b = (total_steps - 1 - first_b) // spe + 1 if first_b < total_steps else 0
        rem_b = max(0, total_b - sum(1 for b in obs_b if b < n))
    rem_t = remaining * mu + rem_b * boundary_extra
    t_total = elapsed_steps + rem_t
    # nothing left to run is no uncertainty, whatever the interval (0 x inf was NaN: a range '[7.69 s – n/a]')
    t_lo, t_hi = (elapsed_steps + rem_t * max(0.0, 1 - rel_t), elapsed_steps + rem_t * (1 + rel_t)) if rem_t \
        else (elapsed_steps, elapsed_steps)
    devices = record_devices(data.channels, plan)
    proj: dict[str, Any] = {"total_steps": total_steps, "remaining_steps": remaining, "remaining_boundaries": rem_b,
                            "time_s": t_total, "time_s_range": [t_lo, t_hi], "rel_range_time": rel_t,
                            "gpu_hours": t_total / 3600.0 * devices}
    if spe_from:
        proj["steps_per_epoch"] = {"value": int(spe), "from": spe_from}
    if n > total_steps:  # the loop ran past its plan: the totals are of what ran, not of the plan
        proj["overrun_steps"] = n - total_steps
    if dev_p is not None and device_so_far is not None:
        rel_e = rel_t + rel_p_all
        dev_rem = dev_p * rem_t
        # device_so_far covers the run's wall time less the work after its last step (kept apart above)
        dev_total = device_so_far + dev_p * max(0.0, t_total - (elapsed - after_s))
        host_total = data.host_w * t_total if data.host_w is not None else 0.0
        facility = (dev_total + host_total) * plan.pue
        lo = (device_so_far + (dev_rem * max(0.0, 1 - rel_e) if dev_rem else 0.0) + (data.host_w or 0.0) * t_lo) \
            * plan.pue
        hi = (device_so_far + (dev_rem * (1 + rel_e) if dev_rem else 0.0) + (data.host_w or 0.0) * t_hi) * plan.pue
        proj.update(device_energy_j=dev_total, host_energy_j=host_total if data.host_w is not None else None,
                    energy_kwh=facility / 3.6e6, energy_kwh_range=[lo / 3.6e6, hi / 3.6e6], rel_range_energy=rel_e)
        ci = plan.carbon_intensity_g_per_kwh
        if ci is not None:
            proj["co2_kg"] = proj["energy_kwh"] * ci / 1000.0
            proj["co2_kg_range"] = [x * ci / 1000.0 for x in proj["energy_kwh_range"]]
        if plan.price_per_kwh is not None or plan.gpu_hour_price is not None:
            pk, gh = plan.price_per_kwh or 0.0, plan.gpu_hour_price or 0.0
            g = devices / 3600.0  # the GPU-hours of the devices whose energy this is
            proj["cost_usd"] = proj["energy_kwh"] * pk + t_total * g * gh
            proj["cost_usd_range"] = [proj["energy_kwh_range"][0] * pk + t_lo * g * gh,
                                      proj["energy_kwh_range"][1] * pk + t_hi * g * gh]
    out["projection"] = proj
    return out


def _epoch_layout(plan: PlanInfo, obs_b: list[int]) -> tuple[int | None, str | None, int]:
    """(steps per epoch, where it came from when inferred, this run's step at which its first epoch boundary falls).

    A fresh run starts at an epoch start: its first boundary is at one epoch. A resumed run (``plan.start_step``)
    may start mid-epoch, ``plan.start_in_epoch`` steps into it (None: not known, or the plan's epoch length and
    ``start_step`` tell it): its first boundary falls after the rest of that epoch, which is no epoch length
    (review: a Trainer resumed at step 5 of a 12-step epoch read 7-step epochs and projected boundaries that never
    came). Without the plan's epoch length it is read from the boundaries the loop reported (a ``steps`` plan, as the
    callbacks pass): the first one plus the steps already done in its epoch, or, where those are not known, the
    spacing of two or more; every later boundary must agree."""
    spe = plan.steps_per_epoch if plan.steps_per_epoch and plan.steps_per_epoch > 0 else None
    start = int(plan.start_step or 0)
    mid = plan.start_in_epoch
    if mid is None and start <= 0:
        mid = 0  # a fresh run starts an epoch
    if spe:
        if mid is None:
            mid = start % spe
        mid %= spe
        return spe, None, (spe - mid if mid else spe)
    if not obs_b or obs_b[0] <= 0:
        return None, None, 0
    if mid is not None:
        cand = obs_b[0] + mid
    elif len(obs_b) >= 2:
        cand = obs_b[1] - obs_b[0]
        if obs_b[0] > cand:
            return None, None, 0
    else:
        return None, None, 0
    if cand <= 0 or any(b - a != cand for a, b in zip(obs_b, obs_b[1:])):
        return None, None, 0
    how = "the epoch boundaries the loop reported" + ("" if mid == 0 else
                                                       " (a resumed run: after the rest of its first epoch)")
    return cand, how, obs_b[0]


def measured_totals(data: RunData, analysis: dict[str, Any], plan: PlanInfo) -> dict[str, Any]:
    """Facility energy, CO2 and cost of what has run so far (for the budget guard's 'already spent' test)."""
    m = analysis.get("measured") or {}
    dev = m.get("device_energy_j")
    if dev is None:
        return {}
    host = m.get("host_energy_j") or 0.0
    kwh = (dev + host) * plan.pue / 3.6e6
    out = {"energy_kwh": kwh}
    if plan.carbon_intensity_g_per_kwh is not None:
        out["co2_kg"] = kwh * plan.carbon_intensity_g_per_kwh / 1000.0
    if plan.price_per_kwh is not None or plan.gpu_hour_price is not None:
        out["cost_usd"] = kwh * (plan.price_per_kwh or 0.0) + \
            m.get("time_s", 0.0) / 3600.0 * record_devices(analysis.get("channels"), plan) * (plan.gpu_hour_price or 0.0)
    return out


def record_devices(channels: list[dict[str, Any]] | None, plan: PlanInfo) -> int:
    """How many devices the record measures, which its energy, GPU-hours and cost cover: its channels (one GPU per
    rank under torchrun, where the plan's ``gpus`` is the whole job's), else the plan's GPUs."""
    return len(channels) if channels else max(1, int(plan.gpus or 1))
