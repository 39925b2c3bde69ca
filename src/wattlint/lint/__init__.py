"""Lint: rules over a CostGraph + Estimate -> findings -> exit code (DESIGN §8).

``wattlint.lint.engine.run_rules`` runs the selected rules; ``wattlint.lint.registry.all_rules`` lists them;
built-in rules live in ``wattlint.lint.rules`` (WL1xx graph, WL2xx hardware fit, WL3xx budgets/regressions,
WL4xx estimate quality). Pure Python: nothing here imports torch or onnx.
"""

from __future__ import annotations


def run_rules(graph, estimate, config=None, model=None, **kwargs):
    from .engine import run_rules as _run

    return _run(graph, estimate, config, model, **kwargs)


def all_rules():
    from .registry import all_rules as _all

    return _all()
