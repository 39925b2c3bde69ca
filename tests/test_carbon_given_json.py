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
