"""JSON says when the carbon intensity was given rather than the region's own figure (review s52: plan.region "POL"
beside carbon_intensity_g_per_kwh 100 read as Poland's figure, 661.9 in the shipped table; only an assumption line
said otherwise)."""

from __future__ import annotations

import json

import pytest

ARGS = ("examples/resnet50.onnx", "--gpu", "a100", "--epochs", "1", "--format", "json")


@pytest.mark.parametrize("extra, given", [
    (("--region", "PL", "--carbon-intensity", "100"), True),
    (("--region", "PL"), False),
    (("--carbon-intensity", "100"), True),   # no region: not the world average either
    ((), False),
])
def test_plan_says_whether_the_intensity_was_given(run_cli, extra, given):
    code, out, err = run_cli(*ARGS, *extra)
    assert code == 0, err
    plan = json.loads(out)["plan"]
    assert plan["carbon_intensity_given"] is given
    if "--carbon-intensity" in extra:
        assert plan["carbon_intensity_g_per_kwh"] == 100.0


def test_a_given_figure_equal_to_the_regions_own_is_still_labelled_given(run_cli):
    # review s52: Google's 2023 figure for gcp:us-central1 is 430 g/kWh (codecarbon_cloud_impact.csv); giving 430
    # was labelled as the region's own in the headline while the assumptions said it overrode the region
    args = ("--region", "gcp:us-central1", "--carbon-intensity", "430")
    code, out, err = run_cli(*ARGS, *args)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["plan"]["carbon_intensity_given"] is True
    line = next(a for a in doc["assumptions"] if a.startswith("carbon intensity 430"))
    assert "overrides region gcp:us-central1" in line and "ranges vary only the energy and time" in line
    code, out, err = run_cli(*ARGS[:-2], *args)  # the text report's CO2 headline
    assert code == 0, err
    assert "at 430 g/kWh (given; overrides gcp:us-central1)" in " ".join(out.split())
