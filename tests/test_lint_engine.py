"""Engine: selection (select/ignore specificity, preview, per-model), options, severity override, robustness."""

from __future__ import annotations

from pathlib import Path

import pytest

from wattlint.config import parse_config
from wattlint.lint import testing
from wattlint.lint.engine import exit_code, run_rules, selected_rules
from wattlint.lint.registry import all_rules, get_rule
from wattlint.lint.rule import Rule
from wattlint.types import Finding, WattlintError

R = all_rules()


def cfg(**table):
    return parse_config(table, root=Path("/tmp"))


def codes(config=None, model=None):
    return {r.code for r in selected_rules(config, model)}


def test_default_selection_is_all_stable_rules():
    assert codes() == {c for c, r in R.items() if r.status == "stable"}
    assert "WL403" not in codes()


@pytest.mark.parametrize("table, on, off", [
    ({"select": ["WL3"]}, {"WL301", "WL305"}, {"WL101", "WL201"}),
    ({"select": ["WL"], "ignore": ["WL3"]}, {"WL101"}, {"WL301"}),
    ({"select": ["WL301"], "ignore": ["WL3"]}, {"WL301"}, {"WL302"}),  # more specific select wins
    ({"select": ["WL3"], "ignore": ["WL3"]}, set(), {"WL301"}),  # ignore wins ties
    ({"select": ["ALL"], "ignore": ["WL1"]}, {"WL201"}, {"WL101"}),
    ({"ignore": ["ALL"]}, set(), {"WL101", "WL201", "WL301"}),  # review: was ignored under the default select
    ({"select": ["WL2"], "ignore": ["ALL"]}, {"WL201"}, {"WL101"}),  # a longer prefix still wins
    ({"preview": True}, {"WL403"}, set()),
    ({"extend-select": ["WL403"]}, {"WL403"}, set()),  # preview rule selected by exact code
    ({"select": ["WL4"]}, {"WL401"}, {"WL403"}),  # ...but not by prefix
])
def test_selection(table, on, off):
    got = codes(cfg(**table))
    assert on <= got and not (off & got)


def test_model_ignore_all_turns_that_models_rules_off():
    c = cfg(models=[{"name": "m", "source": "m.onnx", "ignore": ["ALL"]}])
    assert codes(c, c.models[0]) == set() and "WL101" in codes(c)


def test_model_ignore_extends_top_level():
    c = cfg(ignore=["WL104"], models=[{"name": "m", "source": "m.onnx", "ignore": ["WL203"]}])
    got = codes(c, c.models[0])
    assert "WL104" not in got and "WL203" not in got and "WL101" in got
    assert "WL203" in codes(c)


def test_options_and_severity_override_from_config():
    c = cfg(**{"rules": {"WL104": {"min-share": 0.99}, "WL101": {"severity": "error"}}})
    g, e = testing.scenario([{"op": "linear", "m": 8192, "n": 8192, "k": 8192, "dtype": "float32"},
                             {"op": "elementwise", "shape": [8192, 4096], "count": 1}], precision="fp32")
    out = run_rules(e, c, rules=[R["WL101"], R["WL104"]], reestimator=testing.simple_estimate, strict=True)
    assert [f.code for f in out] == ["WL101"]
    assert out[0].severity == "error" and exit_code(out) == 1


def test_a_crashing_rule_becomes_an_info_finding_and_strict_raises(monkeypatch):
    class Boom(Rule):
        code, name, summary = "WL499", "boom", "x"

        def check(self, ctx):
            raise RuntimeError("kaput")

    g, e = testing.scenario([{"op": "linear", "m": 64, "n": 64, "k": 64}])
    monkeypatch.delenv("WATTLINT_DEBUG", raising=False)
    out = run_rules(e, rules=[Boom])
    assert out == [Finding("WL499", "info", "rule WL499 could not run: RuntimeError: kaput")]
    with pytest.raises(RuntimeError, match="kaput"):
        run_rules(e, rules=[Boom], strict=True)


def test_without_a_reestimator_savings_are_unknown_not_invented():
    g, e = testing.scenario([{"op": "linear", "m": 8192, "n": 8192, "k": 8192, "dtype": "float32"}],
                            precision="fp32")
    (f,) = run_rules(e, rules=[R["WL101"]], strict=True)
    assert f.code == "WL101" and f.saving_kwh is None and f.saving_pct is None


def test_reestimates_are_priced_without_lint():
    """The request path's re-estimator prices variants (no findings on them): lint never recurses."""
    from wattlint import api

    seen = []

    class Spy(api.Reestimator):
        def __call__(self, graph, spec, plan):
            est = super().__call__(graph, spec, plan)
            seen.append(est)
            return est

    g, e = testing.scenario([{"op": "linear", "m": 8192, "n": 8192, "k": 8192, "dtype": "float32"}],
                            precision="fp32", estimator=api.price)
    assert run_rules(e, rules=[R["WL101"]], reestimator=Spy(), strict=True)
    assert seen and all(v.findings == () for v in seen)


def test_get_rule_by_code_or_name():
    assert get_rule("wl101") is R["WL101"] and get_rule("unfused-attention") is R["WL103"]
    with pytest.raises(WattlintError, match="did you mean WL101"):
        get_rule("WL1011")


def test_estimate_attaches_findings_without_config():
    pytest.importorskip("onnx")
    import wattlint

    root = Path(__file__).resolve().parents[1]
    est = wattlint.estimate(str(root / "examples" / "gpt2-tiny.onnx"), gpu="a100-sxm4-80gb", precision="fp32",
                            tokens=1e8)
    got = {f.code for f in est.findings}
    assert "WL101" in got and "WL403" not in got


def test_ignore_wl201_is_honoured_by_the_estimate_and_check_paths(tmp_path, monkeypatch):
    """WL201 is only a rule: ignoring it silences it for `wattlint MODEL` and for `wattlint check` alike."""
    pytest.importorskip("onnx")
    from wattlint import api
    from wattlint.lint.check import estimate_model

    model = Path(__file__).resolve().parents[1] / "examples" / "resnet50.onnx"
    opts = {"steps": 10, "batch_size": 1024}  # ResNet-50 at batch 1024 on a 16 GB T4: does not fit
    est = api.estimate(str(model), gpu="t4", **opts)
    assert not est.memory.fits and "WL201" in {f.code for f in est.findings}
    quiet = api.estimate(str(model), gpu="t4", config=cfg(ignore=["WL201"]), **opts)
    assert not quiet.memory.fits and "WL201" not in {f.code for f in quiet.findings}
    for ignore in ([], ["WL201"]):
        c = parse_config({"gpu": "t4", "steps": 10, "batch-size": 1024, "ignore": ignore,
                          "models": [{"name": "r50", "source": str(model)}]}, root=tmp_path)
        _, findings = estimate_model(c.models[0], c)
        assert ("WL201" in {f.code for f in findings}) == (not ignore)
