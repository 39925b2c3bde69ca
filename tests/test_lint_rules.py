"""Tests generated from every rule's VALID / INVALID cases, plus framework invariants."""

from __future__ import annotations

import pytest

from wattlint.lint import testing
from wattlint.lint.engine import run_rules
from wattlint.lint.registry import all_rules

RULES = all_rules()
HARNESS_KEYS = ("budget", "baseline", "regression_threshold")


def run_case(rule, case):
    spec = dict(case.scenario)
    harness = {k: spec.pop(k) for k in HARNESS_KEYS if k in spec}
    ops = spec.pop("ops", ())
    graph, est = testing.scenario(ops, **spec)

    class Model:
        name = "m"
        budget = harness.get("budget", {})
        regression_threshold = harness.get("regression_threshold")
        select = ignore = ()

    return run_rules(graph, est, None, Model(), rules=[rule], baseline=harness.get("baseline"),
                     reestimator=testing.simple_estimate, gpus=testing.gpus_list,
                     options={rule.code: dict(case.options)})


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
        assert "est. saving" in f.message and "kWh" in f.message or "Wh" in f.message


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
