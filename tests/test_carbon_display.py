"""Carbon intensities as the reports print them, and a hand-built Plan's own intensity.

1. A source figure is rounded for display half-up on its decimal text: Germany's 380.95 g/kWh (the shipped
   global_energy_mix.json) is 380.9499... as a binary float, so round(x, 1) printed 380.9; to one decimal 380.95 is
   381.0, which the report writes as it writes 56.0 ("56"): 381. The computation and the JSON keep 380.95.
2. A Plan built in Python (not by wattlint.plan.build_plan) with a figure of its own is reported as given; with its
   region's own figure it names the region.
"""

from __future__ import annotations

import json

import pytest
from _estimate_fixtures import mlp_graph

from wattlint import carbon
from wattlint.api import price, resolve_gpu
from wattlint.lint.testing import scenario
from wattlint.report import json_out
from wattlint.report.tables import summary_rows
from wattlint.types import Plan

ARGS = ("examples/resnet50.onnx", "--gpu", "rtx3090")


def _text(out: str) -> str:
    return " ".join(out.split())  # the text report wraps


def test_germany_prints_its_figure_rounded_half_up(run_cli):
    code, out, err = run_cli(*ARGS, "--region", "DE")
    assert code == 0, err
    flat = _text(out)
    assert "at 381 g/kWh (DEU)" in flat  # 380.95 -> 381.0 (half-up), written without the trailing .0
    assert "carbon intensity 381 gCO2e/kWh: Germany (DEU), year 2023" in flat
    assert "380.9 " not in flat


def test_json_keeps_germanys_unrounded_figure(run_cli):
    code, out, err = run_cli(*ARGS, "--region", "DE", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["plan"]["carbon_intensity_g_per_kwh"] == 380.95  # the table's figure, as computed with
    assert doc["plan"]["carbon_intensity_given"] is False
    assert any(a.startswith("carbon intensity 381 gCO2e/kWh: Germany") for a in doc["assumptions"])


@pytest.mark.parametrize("region, shown", [
    ("PL", "661.9"),  # 661.926: the second decimal 2 rounds down
    ("FR", "56"),  # 56.039 -> 56.0
])
def test_a_figure_that_rounds_down_stays_right(run_cli, region, shown):
    code, out, err = run_cli(*ARGS, "--region", region)
    assert code == 0, err
    assert f"carbon intensity {shown} gCO2e/kWh: " in _text(out)


@pytest.mark.parametrize("figure, kw, text", [
    (380.95, {}, "381"),  # binary 380.9499...: round(x, 1) gives 380.9
    (369.45, {}, "369.5"),  # binary 369.4499...
    ("0.25", {}, "0.3"),  # a source's own text: half-up, not half-even (round(0.25, 1) is 0.2)
    (661.926, {}, "661.9"),
    (56.0, {}, "56"),
    (0.0, {}, "0"),
    (0.0455, {"significant": 2}, "0.046"),  # binary 0.04549999...: :.2g gave 0.045
    (0.04, {"significant": 2}, "0.04"),
    (1e-05, {"significant": 2}, "1e-05"),  # written as :.2g writes it
])
def test_shown_rounds_the_decimal_text_half_up(figure, kw, text):
    assert carbon.shown(figure, **kw) == text


def test_a_given_small_intensity_is_rounded_half_up_in_the_headline():
    from wattlint.api import estimate

    est = estimate(mlp_graph(), gpu="a100", steps=10, carbon_intensity=0.0455, lint=False)
    assert est.plan.carbon_intensity_g_per_kwh == 0.0455  # computed with the figure as given
    co2 = dict((k.strip(), v) for k, v in summary_rows(est))["CO2"]
    assert "at 0.046 g/kWh (given)" in co2, co2  # two significant digits, half-up


def _hand_built(**kw):
    gpu = resolve_gpu("a100")[0]
    plan = Plan(batch_size=64, steps=10, pue=1.0, **kw)
    return price(mlp_graph(), gpu, plan)


def test_a_hand_built_plan_with_its_own_figure_is_reported_as_given():
    est = _hand_built(carbon_intensity_g_per_kwh=100.0, region="POL")  # Poland's own is 661.926
    co2 = dict((k.strip(), v) for k, v in summary_rows(est))["CO2"]
    assert co2.endswith("at 100 g/kWh (given; overrides POL)"), co2
    assert json_out.plan_dict(est)["carbon_intensity_given"] is True
    # the CO2 is computed with the figure as set: kg = kWh x 100 / 1000
    assert est.total.co2_kg == pytest.approx(est.total.energy_kwh * 100.0 / 1000.0)


def test_a_hand_built_plan_without_a_region_is_reported_as_given():
    _, est = scenario(carbon=400.0)  # lint.testing's hand-built Plan: 400 g/kWh, no region (world average 480.6)
    co2 = dict((k.strip(), v) for k, v in summary_rows(est))["CO2"]
    assert co2.endswith("at 400 g/kWh (given)"), co2
    assert json_out.plan_dict(est)["carbon_intensity_given"] is True


def test_a_hand_built_plan_with_its_regions_own_figure_names_the_region():
    est = _hand_built(carbon_intensity_g_per_kwh=661.926, region="POL")
    co2 = dict((k.strip(), v) for k, v in summary_rows(est))["CO2"]
    assert co2.endswith("at 661.9 g/kWh (POL)"), co2
    assert json_out.plan_dict(est)["carbon_intensity_given"] is False


def test_a_hand_built_plans_field_says_whether_its_figure_was_given():
    """The Plan field itself (one home for the answer; the reports read it): decided in Plan.__post_init__ for a Plan
    built by hand, kept as given by build_plan (a given figure equal to the region's is still given: review s52), and
    carried by dataclasses.replace. Poland's own figure is 661.926 g/kWh."""
    import dataclasses

    own = Plan(batch_size=64, steps=10, pue=1.0, carbon_intensity_g_per_kwh=661.926, region="POL")
    set_ = Plan(batch_size=64, steps=10, pue=1.0, carbon_intensity_g_per_kwh=100.0, region="POL")
    assert (own.carbon_intensity_given, set_.carbon_intensity_given) == (False, True)
    said = Plan(batch_size=64, steps=10, pue=1.0, carbon_intensity_g_per_kwh=661.926, region="POL",
                carbon_intensity_given=True)
    assert said.carbon_intensity_given is True
    assert dataclasses.replace(set_, steps=20).carbon_intensity_given is True


def test_a_figure_changed_by_replace_is_reported_as_given():
    """dataclasses.replace copies build_plan's carbon_intensity_given=False with a new figure: the reports ask
    carbon.intensity_given (the field, or a figure that is not the region's), not the field alone (review s53). Poland's
    own figure is 661.926 g/kWh."""
    import dataclasses

    est = _hand_built(carbon_intensity_g_per_kwh=661.926, region="POL", carbon_intensity_given=False)
    e2 = dataclasses.replace(est, plan=dataclasses.replace(est.plan, carbon_intensity_g_per_kwh=50.0))
    assert json_out.plan_dict(e2)["carbon_intensity_given"] is True
    co2 = dict((k.strip(), v) for k, v in summary_rows(e2))["CO2"]
    assert co2.endswith("at 50 g/kWh (given; overrides POL)"), co2
