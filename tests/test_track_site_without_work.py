"""A tracked run without a planned amount of work (no steps=, epochs= or tokens=) resolved no plan, and its site
settings went with it: pue= was ignored (PUE 1), carbon_intensity= / region= / price= were dropped, so max_co2_kg and
max_cost_usd were never checked and max_kwh read the energy without the facility overhead. The site settings now
resolve without a plan, through the estimator's resolver (wattlint.plan), and the run's measured facility energy,
CO2 and cost are in its summary and record, as with a plan.

The fake run (tests/_fake_nvml.quiet_track): a 250 W fake GPU + 80 W of modelled host (the flat fallback for an
unidentified GPU), 1 s windows; each test gives its own PUE and grid intensity."""


from wattlint.carbon import RANGE_CLAUSE  # every intensity line states it (review s52)
import pytest

from _fake_nvml import record_lines, run_tracked, validate_record

from wattlint import carbon
from wattlint.tracking.project import Settings, analyze
from wattlint.tracking.record import read_record

GPU_W, HOST_W = 250.0, 80.0


_lines = record_lines


def _run(tmp_path, n, dt, **kw):
    """``n`` steps of ``dt`` s; returns (tracker, record lines, BudgetWarnings, printed summary)."""
    t, warned, out = run_tracked(tmp_path, n, dt, **kw)
    lines = record_lines(t.path)
    validate_record(lines)
    return t, lines, warned, out


def _kwh(seconds, pue):
    """Facility kWh of the fake run by hand: (GPU + host) W x s x PUE."""
    return (GPU_W + HOST_W) * seconds * pue / 3.6e6


def test_pue_applies_without_steps(tmp_path):
    """pue=1.5 without steps=: facility energy = 1.5 x the measured (device + host) energy, in the record, the printed
    summary and the max_kwh budget (which read PUE 1 before: 20 steps of 0.1 s are 660 J, 990 J at PUE 1.5)."""
    limit = 800 / 3.6e6  # above 660 J, below 990 J
    t, lines, warned, out = _run(tmp_path, 20, 0.1, pue=1.5, max_kwh=limit)
    h, s = lines[0], lines[-1]
    assert h["plan"]["resolved"] is None  # no plan: as before
    assert h["plan"]["site"]["pue"] == 1.5
    assert "PUE 1.5 (given: facility energy = (GPU + host) x 1.5)" in h["plan"]["assumptions"]
    m = s["analysis"]["measured"]
    assert m["device_energy_j"] == pytest.approx(GPU_W * 2.0) and m["host_energy_j"] == pytest.approx(HOST_W * 2.0)
    assert m["energy_kwh"] == pytest.approx(_kwh(2.0, 1.5), rel=1e-6) and m["pue"] == 1.5
    (b,) = s["budget_exceeded"]
    assert b["budget"] == "max_kwh" and b["spent"] == pytest.approx(_kwh(2.0, 1.5), rel=1e-5)
    assert len(warned) == 1
    assert "measured (20 steps): 2.00 s, 0.275 Wh facility (PUE 1.5)" in out


def test_carbon_intensity_applies_without_steps(tmp_path):
    """carbon_intensity=X without steps=: CO2 = facility kWh x X / 1000; price=: cost = kWh x price."""
    t, lines, _, out = _run(tmp_path, 20, 0.1, pue=1.0, carbon_intensity=300.0, price=0.25)
    m = lines[-1]["analysis"]["measured"]
    kwh = _kwh(2.0, 1.0)
    assert m["energy_kwh"] == pytest.approx(kwh, rel=1e-6)
    assert m["co2_kg"] == pytest.approx(kwh * 300.0 / 1000.0, rel=1e-6)
    assert m["cost_usd"] == pytest.approx(kwh * 0.25, rel=1e-6)
    site = lines[0]["plan"]["site"]
    assert site["carbon_intensity_g_per_kwh"] == 300.0 and site["price_per_kwh"] == 0.25
    assert "carbon intensity 300 gCO2e/kWh (--carbon-intensity)" + RANGE_CLAUSE in lines[0]["plan"]["assumptions"]
    assert "g CO2e" in next(ln for ln in out.splitlines() if ln.startswith("  measured ("))
    # compare-run reads the record back the same way (the site from the header)
    rec = read_record(t.path)
    a = analyze(rec.run_data(), Settings.from_dict(rec.header.get("settings")))
    assert a["measured"]["co2_kg"] == pytest.approx(m["co2_kg"], rel=1e-5)


def test_co2_budget_without_steps_stops_at_a_window_boundary(tmp_path):
    """max_co2_kg without steps= with on_budget='stop': 0.1 s steps at 330 W are 9.17e-6 kWh, 4.58e-6 kg CO2e at
    500 g/kWh a step; a 6e-5 kg budget is crossed after 14 steps, and the run stops at a window boundary (the spent
    test reads the latest analysis, refreshed every 10 s once the run is stable: no plan, no projection to stop it
    earlier), well before its 150 steps."""
    limit = 6e-5
    t, lines, warned, _ = _run(tmp_path, 150, 0.1, pue=1.0, carbon_intensity=500.0, max_co2_kg=limit,
                               on_budget="stop")
    s = lines[-1]
    assert s["status"] == "stopped: budget" and s["steps"] < 150 and t.should_stop
    (ev,) = [ln for ln in lines if ln.get("kind") == "budget"]
    assert ev["budget"] == "max_co2_kg" and ev["action"] == "stop" and not ev.get("at_end")
    assert ev["step"] == s["steps"]  # stopped at the step boundary where it was seen
    assert limit < ev["spent"] <= _kwh(ev["step"] * 0.1, 1.0) * 0.5 * (1 + 1e-6)
    assert any("max_co2_kg" in w for w in warned)


def test_co2_and_cost_budgets_without_steps_are_reported_at_the_end(tmp_path):
    """Inside the first window (0.5 s): nothing stops, the end-of-run check reports both budgets (it said 'was never
    checked' before)."""
    t, lines, warned, out = _run(tmp_path, 5, 0.1, pue=1.0, carbon_intensity=500.0, price=0.2, max_co2_kg=1e-9,
                                 max_cost_usd=1e-9, on_budget="stop")
    s = lines[-1]
    kwh = _kwh(0.5, 1.0)
    got = {b["budget"]: b for b in s["budget_exceeded"]}
    assert set(got) == {"max_co2_kg", "max_cost_usd"}
    assert got["max_co2_kg"]["spent"] == pytest.approx(kwh * 0.5, rel=1e-5)
    assert got["max_cost_usd"]["spent"] == pytest.approx(kwh * 0.2, rel=1e-5)
    assert not [n for n in s.get("notes") or [] if "never checked" in n]
    assert "BUDGET EXCEEDED: max_co2_kg=1e-09" in out and len(warned) == 2


def test_region_resolves_as_with_a_plan(tmp_path):
    """region= without steps=: the region's cloud PUE, grid intensity and electricity price, as the estimator resolves
    them (and as a run with steps= gets them), with the same assumption lines."""
    region = "gcp:europe-west1"
    kw = dict(pue=None, carbon_intensity=None, region=region)
    _, with_plan, _, _ = _run(tmp_path / "plan", 20, 0.1, steps=20, **kw)
    _, without, _, _ = _run(tmp_path / "none", 20, 0.1, **kw)
    site = without[0]["plan"]["site"]
    ci, _ = carbon.grid_intensity(region)
    price, _ = carbon.price_per_kwh(carbon.normalize_region(region))
    assert site["pue"] == pytest.approx(carbon.cloud_pue(region))
    assert site["carbon_intensity_g_per_kwh"] == pytest.approx(ci) and site["price_per_kwh"] == pytest.approx(price)
    resolved = with_plan[0]["plan"]["resolved"]
    for k in ("pue", "carbon_intensity_g_per_kwh", "price_per_kwh", "gpu_hour_price"):
        assert site[k] == resolved[k]
    site_lines = without[0]["plan"]["assumptions"]
    assert len(site_lines) == 3 and all(a in with_plan[0]["plan"]["assumptions"] for a in site_lines)
    mp, mn = with_plan[-1]["analysis"]["measured"], without[-1]["analysis"]["measured"]
    for k in ("energy_kwh", "co2_kg", "cost_usd"):
        assert mn[k] == pytest.approx(mp[k], rel=1e-6)
    assert mn["co2_kg"] == pytest.approx(_kwh(2.0, site["pue"]) * ci / 1000.0, rel=1e-5)


def test_defaults_are_the_estimators_without_steps(tmp_path):
    """Nothing given: the PUE, grid intensity and price the estimator defaults to (and states), as with steps=."""
    kw = dict(pue=None, carbon_intensity=None)
    _, with_plan, _, _ = _run(tmp_path / "plan", 20, 0.1, steps=20, **kw)
    _, without, _, _ = _run(tmp_path / "none", 20, 0.1, **kw)
    resolved, site = with_plan[0]["plan"]["resolved"], without[0]["plan"]["site"]
    assert site == {k: resolved[k] for k in ("pue", "carbon_intensity_g_per_kwh", "price_per_kwh", "gpu_hour_price")}
    assert site["carbon_intensity_g_per_kwh"] == pytest.approx(carbon.grid_intensity(None)[0])
    assert all(a in with_plan[0]["plan"]["assumptions"] for a in without[0]["plan"]["assumptions"])
    assert any(a.startswith("PUE ") for a in without[0]["plan"]["assumptions"])


def test_a_run_with_steps_is_unchanged(tmp_path):
    """steps=20, pue=1.5, 400 g/kWh, $0.3/kWh: the record's plan and projection as before the change, by hand:
    660 J x 1.5 = 990 J = 2.75e-4 kWh, 1.1e-4 kg CO2e, $8.25e-5."""
    _, lines, _, out = _run(tmp_path, 20, 0.1, steps=20, pue=1.5, carbon_intensity=400.0, price=0.3)
    h, s = lines[0], lines[-1]
    assert h["plan"]["resolved"] == {"steps": 20, "epochs": None, "steps_per_epoch": None, "gpus": 1, "pue": 1.5,
                                     "carbon_intensity_g_per_kwh": 400.0, "price_per_kwh": 0.3,
                                     "gpu_hour_price": None, "start_step": None, "start_in_epoch": None}
    assert h["plan"]["assumptions"][-3:] == ["PUE 1.5 (given: facility energy = (GPU + host) x 1.5)",
                                             "carbon intensity 400 gCO2e/kWh (--carbon-intensity)" + RANGE_CLAUSE,
                                             "electricity price $0.3/kWh (given)"]
    p = s["analysis"]["projection"]
    assert p["total_steps"] == 20 and p["energy_kwh"] == pytest.approx(2.75e-4, rel=1e-6)
    assert p["co2_kg"] == pytest.approx(1.1e-4, rel=1e-6) and p["cost_usd"] == pytest.approx(8.25e-5, rel=1e-6)
    assert "projected plan (20 steps): 2.00 s [2.00 s – 2.00 s], 0.275 Wh [0.275 Wh – 0.275 Wh], 0.110 g CO2e" in out
    assert "  measured (" not in out  # the printout of a run with a plan is as before
