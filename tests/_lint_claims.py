"""Helpers of the lint-claim tests (a rule's saving against the literal re-run): one JSON estimate, its energy, a
finding."""

from __future__ import annotations

import json


def estimate(run_cli, *argv):
    code, out, err = run_cli(*argv, "--format", "json")
    assert code in (0, 1), err
    return json.loads(out)


def kwh(doc) -> float:
    return float(doc["total"]["energy_kwh"])


def finding(doc, code):
    hits = [f for f in doc["findings"] if f["code"] == code]
    return hits[0] if hits else None
