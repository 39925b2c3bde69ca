"""STEP analysis: warm-up truncation, stable phase, projection of time/energy/CO2/cost, epoch boundaries,
input-bound flag, failed windows. Expected values are computed by hand in the comments."""

import math

import pytest

from wattlint.tracking.project import PlanInfo, RunData, Settings, Window, analyze
from wattlint.tracking.stats import mser_truncation, stable_stats

LOOSE = Settings(min_steps=10, min_stable_s=1.0, max_rel_ci=0.05)


def _alt(n, mean, amp):
    """mean +- amp alternating: mean exactly ``mean`` over any even count, tiny batch-means SE."""
    return [mean + (amp if i % 2 else -amp) for i in range(n)]


def test_mser_drops_the_slow_first_steps():
    # 20 slow steps (1 s) then 200 at 0.1 s: batches of 5 -> the first 4 batch means are 1.0; dropping exactly them
    # leaves a constant series (MSER = 0), the minimum.
    x = [1.0] * 20 + [0.1] * 200
    assert mser_truncation(x) == 20
    # a stationary series keeps everything
    assert mser_truncation(_alt(100, 0.1, 0.001)) == 0
    # too short to judge
    assert mser_truncation([1.0, 0.1, 0.1]) == 0


def test_stable_stats_of_a_known_series():
    s = stable_stats([1.0] * 10 + _alt(100, 0.2, 0.01))
    assert s.warmup == 10 and s.n == 100
    assert s.mean == pytest.approx(0.2)
    # batch means over 10 batches of 10 alternating values are all exactly 0.2: SE 0
    assert s.se == pytest.approx(0.0, abs=1e-12) and s.rel_ci90 == pytest.approx(0.0, abs=1e-9)
    assert s.drift == pytest.approx(0.0, abs=1e-12)


def _windows(times, per_window, power_w):
    """Windows of ``per_window`` steps, energy = power x window duration."""
    wins, t, i = [], 0.0, 0
    while i < len(times):
        j = min(len(times), i + per_window)
        d = sum(times[i:j])
        wins.append(Window(first=i, end=j, t0=t, t1=t + d, energy_j=[power_w * d]))
        t += d
        i = j
    return wins


def test_projection_time_energy_co2_cost_by_hand():
    times = [0.5] * 10 + [0.1] * 100  # 5 s warm-up + 10 s stable = 15 s, 110 steps
    plan = PlanInfo(steps=1000, gpus=1, pue=1.5, carbon_intensity_g_per_kwh=400.0, price_per_kwh=0.2,
                    gpu_hour_price=2.0)
    a = analyze(RunData(times, [], None, _windows(times, 10, 200.0), [{"name": "g0", "energy_source": "counter"}],
                        plan, host_w=50.0), LOOSE)
    assert a["stable"] and a["warmup_steps"] == 10
    p = a["projection"]
    # remaining 890 steps x 0.1 s = 89 s; total 15 + 89 = 104 s
    assert p["time_s"] == pytest.approx(104.0)
    assert p["remaining_steps"] == 890
    # device: 200 W x 104 s = 20,800 J; host 50 W x 104 s = 5,200 J; facility (26,000 J) x 1.5 = 39,000 J
    assert p["device_energy_j"] == pytest.approx(20800.0)
    assert p["energy_kwh"] == pytest.approx(39000.0 / 3.6e6)
    assert p["co2_kg"] == pytest.approx(39000.0 / 3.6e6 * 0.4)
    # cost: kWh x $0.2 + 104 s / 3600 x 1 GPU x $2
    assert p["cost_usd"] == pytest.approx(39000.0 / 3.6e6 * 0.2 + 104.0 / 3600.0 * 2.0)
    # SE 0 and no drift: the range collapses onto the projection
    assert p["time_s_range"] == pytest.approx([104.0, 104.0])
    assert a["per_step"]["device_energy_j"] == pytest.approx(20.0)  # 200 W x 0.1 s


def test_projection_after_an_early_end_leaves_the_work_after_the_last_step_apart():
    """The loop ends after 110 of 1,000 steps, then 5 s of work (a final evaluation at 300 W) run in the last
    window: the remaining 890 steps are still projected at 200 W; the 5 s are neither time nor energy of the plan."""
    times = [0.5] * 10 + [0.1] * 100
    wins = _windows(times, 10, 200.0)
    last = wins[-1]
    wins[-1] = Window(first=last.first, end=last.end, t0=last.t0, t1=last.t1 + 5.0,
                      energy_j=[last.energy_j[0] + 300.0 * 5.0], after_s=5.0)
    plan = PlanInfo(steps=1000, gpus=1, pue=1.5)
    a = analyze(RunData(times, [], None, wins, [{"name": "g0", "energy_source": "counter"}], plan,
                        elapsed_s=15.0 + 5.0), LOOSE)
    assert a["measured"]["after_steps"]["time_s"] == pytest.approx(5.0)
    p = a["projection"]
    # time: 15 s of steps + 890 x 0.1 s = 104 s; device energy 200 W x 104 s = 20,800 J (not 200 W x 99 s)
    assert p["time_s"] == pytest.approx(104.0)
    assert p["device_energy_j"] == pytest.approx(20800.0)
    assert p["energy_kwh"] == pytest.approx(20800.0 * 1.5 / 3.6e6)
    lo, hi = p["energy_kwh_range"]
    assert lo <= p["energy_kwh"] <= hi


def test_one_rank_of_a_job_projects_and_is_compared_as_its_own_gpu():
    """Under torchrun each rank's record measures its own GPU while the plan (and the static estimate) is the job's
    8 GPUs: the projection charged that one GPU's energy but 8 GPUs' rental hours, and the comparison put the job's
    estimated energy against one GPU's measurement (+700 %). Now the record's figures are its GPU's, and the estimate
    is compared through its 1/8 share."""
    from wattlint.tracking.compare import comparison

    times = [0.1] * 100  # stable from the start: 10 s measured
    plan = PlanInfo(steps=1000, gpus=8, pue=1.0, carbon_intensity_g_per_kwh=400.0, price_per_kwh=0.2,
                    gpu_hour_price=2.0)
    a = analyze(RunData(times, [], None, _windows(times, 10, 300.0), [{"name": "g0", "energy_source": "counter"}],
                        plan, host_w=100.0), LOOSE)
    p = a["projection"]
    # 1000 steps x 0.1 s = 100 s; this GPU: 300 W x 100 s = 30,000 J + its host 100 W x 100 s = 10,000 J
    assert p["time_s"] == pytest.approx(100.0) and p["energy_kwh"] == pytest.approx(40000.0 / 3.6e6)
    # GPU-hours and rental of this record's 1 GPU: 100 s / 3600 x 1 (not x 8)
    assert p["gpu_hours"] == pytest.approx(100.0 / 3600.0)
    assert p["cost_usd"] == pytest.approx(40000.0 / 3.6e6 * 0.2 + 100.0 / 3600.0 * 1 * 2.0)
    # the job's estimate (8 GPUs = DP 8): 8 x 32 J per step, 8 x 0.0111 kWh in total -> a GPU's share is 1/8
    static = {"per_step": {"time_s": 0.1, "gpu_energy_j": 8 * 32.0},
              "total": {"time_h": 100.0 / 3600.0, "energy_kwh": 8 * 0.0111, "gpu_energy_kwh": 8 * 0.0089},
              "plan": {"data_parallel": 8, "tensor_parallel": 1, "pipeline_parallel": 1, "pue": 1.0}}
    c = comparison(a, static, complete=False)
    # per step: 32 J estimated for this GPU vs 300 W x 0.1 s = 30 J measured -> 32 / 30 - 1 = +6.7 %
    assert c["step_device_energy_j"]["static"] == pytest.approx(32.0)
    assert c["step_device_energy_j"]["error"] == pytest.approx(32.0 / 30.0 - 1)
    assert c["step_device_energy_j"]["scope"] == "the estimate x 1/8: this record's GPUs of the job's"
    # total: 0.0111 kWh for this GPU vs 40,000 J = 0.011111 kWh projected
    assert c["total_energy_kwh"]["static"] == pytest.approx(0.0111)
    assert c["total_energy_kwh"]["error"] == pytest.approx(0.0111 / (40000.0 / 3.6e6) - 1)
    assert c["step_time_s"]["error"] == pytest.approx(0.0)  # time is the job's lock-step time: not scaled


def test_epoch_boundaries_are_projected_for_the_remaining_epochs():
    # steps_per_epoch 50: step 50 follows a boundary and takes 0.1 + 2.0 s (evaluation)
    times = [0.1] * 50 + [2.1] + [0.1] * 49
    plan = PlanInfo(steps=200, steps_per_epoch=50, pue=1.0)
    a = analyze(RunData(times, [50], None, [], [], plan), Settings(min_steps=10, min_stable_s=1, max_rel_ci=0.05))
    assert a["epoch_boundary_extra_s"] == pytest.approx(2.0)
    p = a["projection"]
    # 4 epochs -> 3 boundaries, 1 seen: 2 remain. elapsed 12.0 s + 100 steps x 0.1 + 2 x 2.0 = 26.0 s
    assert p["remaining_boundaries"] == 2
    assert p["time_s"] == pytest.approx(12.0 + 10.0 + 4.0)


def test_a_steps_plan_projects_the_remaining_boundaries_from_the_reported_epochs():
    """The HF / Lightning callbacks pass steps (max_steps) only: with no steps per epoch in the plan the remaining
    epoch boundaries (evaluation, checkpoints) were never projected (110 s for ~145 s). The loop reported boundaries
    at steps 50 and 100: 50 steps per epoch. Plan 300 steps = 6 epochs -> 5 boundaries, 2 seen, 3 remain. By hand:
    150 steps ran in 148 x 0.1 + 2 x 2.1 = 19.0 s; + 150 remaining x 0.1 + 3 x 2.0 extra = 40.0 s."""
    times = [0.1] * 50 + [2.1] + [0.1] * 49 + [2.1] + [0.1] * 49
    plan = PlanInfo(steps=300, pue=1.0)
    a = analyze(RunData(times, [50, 100], None, [], [], plan), Settings(min_steps=10, min_stable_s=1, max_rel_ci=0.05))
    p = a["projection"]
    assert p["steps_per_epoch"] == {"value": 50, "from": "the epoch boundaries the loop reported"}
    assert p["remaining_boundaries"] == 3
    assert p["time_s"] == pytest.approx(19.0 + 15.0 + 6.0)
    # boundaries that do not repeat evenly (a last short epoch, a resumed loop) tell no epoch length: none assumed
    b = analyze(RunData(times, [50, 90], None, [], [], plan), Settings(min_steps=10, min_stable_s=1, max_rel_ci=0.05))
    assert b["projection"]["remaining_boundaries"] == 0 and "steps_per_epoch" not in b["projection"]


def test_input_bound_flag_and_stalls():
    times = [0.1] * 100
    waits = [0.03] * 80 + [0.08] * 20  # 20 steps wait 80 % of their time: stalls; share = (2.4 + 1.6) / 10 = 40 %
    a = analyze(RunData(times, [], waits, [], [], PlanInfo()), Settings(min_steps=10, min_stable_s=1,
                                                                        max_rel_ci=0.05))
    inp = a["input"]
    assert inp["data_wait_share"] == pytest.approx(0.4)
    assert inp["stall_steps"] == 20 and inp["input_bound"] is True
    assert a["projection"] is None and "no plan" in a["projection_note"]


def test_failed_windows_are_filled_at_the_stable_power_and_counted():
    times = [0.1] * 100
    wins = _windows(times, 10, 300.0)
    wins[3].energy_j = [None]
    wins[7].energy_j = [None]
    a = analyze(RunData(times, [], None, wins, [{"name": "g0", "energy_source": "counter"}], PlanInfo(steps=100)),
                Settings(min_steps=10, min_stable_s=1, max_rel_ci=0.05))
    ch = a["channels"][0]
    assert ch["windows_failed"] == 2 and ch["windows_valid"] == 8
    assert ch["avg_power_w"] == pytest.approx(300.0)
    # measured 8 x 300 J, filled 2 x 300 J: the whole run 10 s x 300 W
    assert a["measured"]["device_energy_j"] == pytest.approx(3000.0)
    assert a["measured"]["windows_filled"] == 2


def test_not_stable_until_enough_stable_time():
    times = [0.1] * 40  # 4 s of steps
    a = analyze(RunData(times, [], None, [], [], PlanInfo(steps=100)), Settings(min_steps=10, min_stable_s=10.0))
    assert a["stable"] is False and "< 10 s" in a["reason"]
    assert math.isfinite(a["projection"]["time_s"])  # a provisional projection is still given


def test_not_stable_reason_never_reads_as_equal_values():
    """Review: 'NOT STABLE: 0.2 s of stable steps < 0.2 s' (0.195 s rounded to one decimal)."""
    times = [0.005] * 39  # 0.195 s in all, constant: stable from the first step
    a = analyze(RunData(times, [], None, _windows(times, 13, 100.0), [{"name": "g0", "energy_source": "counter"}],
                        PlanInfo(steps=100)), Settings(min_steps=10, min_stable_s=0.2, max_rel_ci=0.5))
    assert not a["stable"]
    assert "0.195 s of stable steps < 0.2 s" in a["reason"]


def test_a_short_tail_after_the_last_step_is_split_pro_rata_not_by_the_noise():
    """The last window: 1.97 s of steps and 134 us after the last one, at 12.67 W, against a stable mean of
    12.37 W. Subtracting the stable power from the window booked the 0.3 W difference over 1.97 s (0.59 J) as
    after-loop work: 134 us 'drawing' 4.4 kW. A tail under 5 % of its window is split pro rata in time: after =
    12.67 W x 134 us = 1.70 mJ. A long tail (a final evaluation) keeps the stable power for the steps."""
    from wattlint.tracking.project import Window

    e = 12.67 * (1.97 + 134e-6)
    w = Window(first=0, end=20, t0=0.0, t1=1.97 + 134e-6, energy_j=[e], after_s=134e-6)
    assert e - w.steps_energy(e, 12.37) == pytest.approx(12.67 * 134e-6, rel=1e-6)
    long = Window(first=0, end=15, t0=0.0, t1=11.5, energy_j=[1450.0], after_s=10.0)
    assert long.steps_energy(1450.0, 300.0) == pytest.approx(300.0 * 1.5)
