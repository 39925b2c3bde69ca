"""Tests generated from every rule's VALID / INVALID cases, plus framework invariants.

Each case runs twice: with the hand-checkable ``lint.testing.simple_estimate`` as estimator and re-estimator (exact
expectations: messages, savings), and with the product's own estimator (``wattlint.api.price``, spec-sheet prior)
as both, so every rule also fires on the numbers users see, with a saving of the right sign and magnitude.
"""

from __future__ import annotations

import math
import re

import pytest

from wattlint import api
from wattlint.lint import testing
from wattlint.lint.engine import run_rules
from wattlint.lint.registry import all_rules

RULES = all_rules()
HARNESS_KEYS = ("budget", "baseline", "regression_threshold")


class Model:
    name = "m"
    select = ignore = ()

    def __init__(self, budget=None, regression_threshold=None):
        self.budget = budget or {}
        self.regression_threshold = regression_threshold


def run_case(rule, case, *, real: bool = False):
    spec = dict(case.scenario)
    harness = {k: spec.pop(k) for k in HARNESS_KEYS if k in spec}
    ops = spec.pop("ops", ())
    estimator = api.price if real else testing.simple_estimate
    graph, est = testing.scenario(ops, estimator=estimator, **spec)
    model = Model(harness.get("budget"), harness.get("regression_threshold"))
    return run_rules(est, None, model, rules=[rule], baseline=harness.get("baseline"),
                     reestimator=api.Reestimator() if real else testing.simple_estimate, gpus=testing.gpus_list,
                     options={rule.code: dict(case.options)}, strict=True)


def _cases(kind):
    for code, rule in RULES.items():
        for case in getattr(rule, kind):
            yield pytest.param(rule, case, id=f"{code}-{case.description}")


@pytest.mark.parametrize("rule, case", list(_cases("valid")))
def test_valid_case_has_no_finding(rule, case):
    findings = run_case(rule, case)
    assert findings == [], [f.message for f in findings]


@pytest.mark.parametrize("rule, case", list(_cases("invalid")))
def test_invalid_case_is_flagged(rule, case):
    findings = run_case(rule, case)
    assert findings, f"{rule.code} did not fire on: {case.description}"
    f = findings[0]
    assert f.code == rule.code and f.severity == rule.severity and f.model == "m"
    if case.expect:
        assert case.expect in f.message, f.message
    if case.saving_pct is not None:
        assert f.saving_pct == pytest.approx(case.saving_pct, abs=1.0), f.message
    if f.saving_kwh is not None and f.saving_kwh > 0 and not f.code.startswith("WL3"):
        assert re.search(r"\(est\. saving [\d.,]+ (GWh|MWh|kWh|Wh|J|mJ), \d+% of the run\)", f.message), f.message


# How far the real estimator's saving may sit from the hand-checkable one: the same order of magnitude. The two
# estimators differ by design (the prior's tile/depth efficiencies, launch gaps, power model), not by a factor of 10.
MAGNITUDE = 10.0


@pytest.mark.parametrize("rule, case", list(_cases("invalid")))
def test_invalid_case_fires_through_the_real_estimator(rule, case):
    simple = run_case(rule, case)[0]
    findings = run_case(rule, case, real=True)
    assert findings, f"{rule.code} did not fire through the real estimator on: {case.description}"
    f = findings[0]
    assert f.code == rule.code and f.severity == rule.severity
    if simple.saving_pct is None:
        return
    assert f.saving_pct is not None, f"{rule.code}: the real estimator found no saving: {f.message}"
    assert math.copysign(1, f.saving_pct) == math.copysign(1, simple.saving_pct), (f.message, simple.message)
    ratio = abs(f.saving_pct) / abs(simple.saving_pct)
    assert 1 / MAGNITUDE <= ratio <= MAGNITUDE, (rule.code, f.saving_pct, simple.saving_pct, f.message)


@pytest.mark.parametrize("code", list(RULES))
def test_rule_has_docs_and_cases(code):
    rule = RULES[code]
    assert rule.name and rule.summary and rule.what and rule.why and rule.example and rule.use_instead
    assert rule.sources, f"{code} cites no source"
    assert rule.valid and rule.invalid, f"{code} needs VALID and INVALID cases"
    md = rule.docs_markdown()
    for title in ("What it does", "Why it matters", "Example", "Use instead"):
        assert f"### {title}" in md
    for opt in rule.options.values():
        assert opt.check(opt.default if not isinstance(opt.default, tuple) else list(opt.default)) is not None


def test_at_least_twelve_rules_in_families():
    assert len(RULES) >= 12
    assert {c[:3] for c in RULES} >= {"WL1", "WL2", "WL3", "WL4"}
    assert len({r.name for r in RULES.values()}) == len(RULES)


def test_launch_bound_names_the_for_loop_optimizer():
    # a for-loop optimizer: 300 single-tensor AdamW kernels of 4 us (simple estimator), each launched at 20 us ->
    # 6 ms of launching for 1.2 ms of GPU work; the micro-batch itself (one 4096^3 GEMM + its backward) is not
    # launch-bound. The finding names the optimizer and its saving is the gap at idle power.
    rule = RULES["WL204"]
    ops = [{"op": "linear", "m": 4096, "n": 4096, "k": 4096}] + [{"op": "optimizer", "params": 1000}] * 300
    graph, est = testing.scenario(ops, host_op_s=20e-6, extra={"optimizer_impl": "for-loop"})
    gap = est.phases["idle_gaps"].time_s
    opt_t = sum(t for r, t in zip(graph.records, est.op_times_s) if r.phase.value == "optimizer")
    assert gap == pytest.approx(300 * 20e-6 - opt_t)
    findings = run_rules(est, None, Model(), rules=[rule], reestimator=testing.simple_estimate,
                         gpus=testing.gpus_list, options={"WL204": {}}, strict=True)
    assert findings and "foreach/fused optimizer" in findings[0].message
    # the same step with a multi-tensor optimizer launches 16 kernels at most: no finding
    _, est_multi = testing.scenario(ops, host_op_s=20e-6)
    assert run_rules(est_multi, None, Model(), rules=[rule], reestimator=testing.simple_estimate,
                     gpus=testing.gpus_list, options={"WL204": {}}, strict=True) == []


def test_wl107_counts_an_untraced_recompute(run_cli):
    """ONNX graphs do not trace checkpointing: the estimate prices the forward once more in backward. WL107 said
    'recomputes 0% of the step's FLOPs' there (it counted recompute records only) while the step's FLOPs grew by a
    forward. resnet50.onnx at batch 32 (wattlint analyze): forward 265.10 GFLOP, backward 520.94, optimizer 0.31;
    with full recompute the step is 265.10 x 2 + 520.94 + 0.31 = 1051.4 GFLOP, of which 265.10 / 1051.4 = 25 %."""
    import json as _json

    code, out, _ = run_cli("examples/resnet50.onnx", "--gpu", "a100", "--steps", "10", "--recompute", "full",
                           "--format", "json")
    assert code == 0
    doc = _json.loads(out)
    assert doc["per_step"]["flops"] == pytest.approx(1051.4e9, rel=1e-3)
    wl107 = next(f for f in doc["findings"] if f["code"] == "WL107")
    assert "recomputes 25% of the step's FLOPs" in wl107["message"]


def test_pipeline_bubble_says_when_stages_are_too_short_to_interleave():
    """2 blocks on 2 stages (1 each) through the product's estimator: a chunk needs a whole block, so WL205 names the
    short stages; with micro-batches of 8 its saving is halving them, with micro-batches of 1 there is none.
    (8,192 rows per micro-batch: halved, 4,096-row GEMMs still fill 8.5 waves of the A100's SMs. At 2,048 rows the
    halved 1,024-row GEMMs fill 2.37 waves, 0.79 of the last one, and cost more than the bubble saves: the saving
    this case showed there came from scale_batch halving the features of the backward GEMMs instead of their rows.)"""
    from wattlint.lint.rule import Case

    case = Case("one block per stage", {
        "ops": [{"op": "linear", "m": 8192, "n": 4096, "k": 4096, "module": f"h.{i}.fc"} for i in range(2)],
        "pipeline_parallel": 2, "gpus": 2, "grad_accum": 2, "batch_size": 16})
    f = run_case(RULES["WL205"], case, real=True)
    assert f and "too short for more interleaved chunks" in f[0].message
    assert "--micro-batch-size 4" in f[0].message and f[0].saving_kwh > 0
    ones = Case("one block per stage, one-sample micro-batches", {
        "ops": [{"op": "linear", "m": 2048, "n": 4096, "k": 4096, "module": f"h.{i}.fc"} for i in range(2)],
        "pipeline_parallel": 2, "gpus": 2, "grad_accum": 2, "batch_size": 2, "micro_batch": 1})
    f = run_case(RULES["WL205"], ones, real=True)
    assert f and "too short for more interleaved chunks" in f[0].message and f[0].saving_kwh is None
    assert "only a larger global batch" in f[0].message


def test_wl203_says_same_time_when_both_gpus_wait_for_the_cpu(tmp_path, run_cli):
    """A launch-bound step takes as long on either GPU: WL203 read 'in 37.5 ms instead of 37.5 ms ... over 1.00 x
    the time'."""
    import json as _json

    cfg = tmp_path / "tiny.json"
    cfg.write_text(_json.dumps({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
                                "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 1000}))
    code, out, err = run_cli(str(cfg), "--steps", "10", "--gpu", "a100", "--format", "json")
    assert code == 0, err
    (f,) = [x for x in _json.loads(out)["findings"] if x["code"] == "WL203"]
    assert "in the same time (" in f["message"] and "x the time" not in f["message"], f["message"]
    t = re.search(r"in the same time \(([^)]*)\)", f["message"]).group(1)
    assert f"instead of {t}" not in f["message"]


def test_wl107_on_onnx_keeps_the_traced_activations(run_cli):
    """An ONNX graph's saved-for-backward bytes are the figure without checkpointing (the frontend never traces
    it; the estimate keeps a quarter under --recompute full). WL107's re-estimate dropped them for the forward's
    written bytes: resnet50.onnx at batch 256 on an A100 'fits without it (41.0 of 80 GiB)' where the estimate
    of the same plan with --recompute none (the oracle) needs 23.7 GiB."""
    import json as _json

    args = ("examples/resnet50.onnx", "--gpu", "a100", "--steps", "10", "--batch-size", "256", "--format", "json")
    code, out, _ = run_cli(*args, "--recompute", "none")
    assert code == 0
    peak = _json.loads(out)["memory"]["peak_bytes_per_gpu"] / 2**30
    code, out, _ = run_cli(*args, "--recompute", "full")
    wl107 = next(f for f in _json.loads(out)["findings"] if f["code"] == "WL107")
    # usable: 80 GiB x 0.985 (the 1.5 % the driver reserves) = 78.8 GiB
    assert f"fits without it ({peak:.1f} of 78.8 GiB)" in wl107["message"]
