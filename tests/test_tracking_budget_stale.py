"""The budget guard's 'already spent' test reads the energy spent up to the window just closed, not the last
analysis: once a run is stable the analysis is refreshed every 10 s only, and a 1e-4 kWh budget was crossed by 7x
before the stale figure caught up (helper walk, stop 53)."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("numpy")

from _fake_nvml import Clock, quiet_track  # noqa: E402

from wattlint.tracking import BudgetWarning  # noqa: E402


def test_spent_budget_stops_within_a_window_of_crossing_it_after_the_run_is_stable(tmp_path):
    """250 W device + 80 W host (an unidentified GPU's stated fallback), PUE 1: 330 J per second of 0.1 s steps.
    max_kwh = 1.5e-4 kWh = 540 J, crossed after 540 / 330 = 1.64 s, i.e. at step 17; checked at 1 s windows, so the
    stop comes at the window closing at 2 s: step 20 (+- 1 for 10 x 0.1 rounding). The run is stable from ~1 s
    (min_steps 10, min_stable_s 1, constant steps), after which the analysis waits 10 s: before the fix the guard
    stopped only at ~11 s, step ~110-120 (3,600 J+, 7x the budget). No plan, so no projection can stop it
    first."""
    clock = Clock(0.0)
    t = quiet_track(tmp_path, clock, max_kwh=1.5e-4, on_budget="stop")  # no plan: no projection, spent only
    ran = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)
        with t:
            for _ in range(1000):
                clock.t += 0.1
                ran += 1
                t.step()
    assert t.summary()["status"] == "stopped: budget"
    assert 19 <= ran <= 22, ran
