"""SARIF 2.1.0 output validates against the official OASIS schema (tests/data/sarif-2.1.0.schema.json)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from wattlint.lint.results import CheckResult, Located, ModelResult
from wattlint.report.sarif import render_sarif
from wattlint.types import Finding

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def validator():
    schema = json.loads((DATA / "sarif-2.1.0.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _result(tmp_path):
    findings = [
        Located(Finding("WL301", "error", "estimated energy 600 kWh exceeds the budget of 500 kWh by 20%",
                        saving_kwh=100.0, saving_pct=16.7, model="m"), "pyproject.toml", 12),
        Located(Finding("WL103", "warning", "attention in 'h.0.attn' ...", layer="h.0.attn", saving_kwh=3.0,
                        saving_pct=2.0, model="m"), "models/net.py", 7),
        Located(Finding("WL402", "info", "not calibrated", model="m"), "pyproject.toml", 12),
    ]
    return CheckResult(root=tmp_path, models=[ModelResult("m", "models/net.py:build",
                                                          {"gpu": "a100-sxm4-80gb", "total": {}}, findings)])


def test_sarif_validates(validator, tmp_path):
    doc = json.loads(render_sarif(_result(tmp_path), "0.1.0"))
    errors = sorted(validator.iter_errors(doc), key=lambda e: e.path)
    assert not errors, [e.message for e in errors]
    run = doc["runs"][0]
    assert doc["version"] == "2.1.0"
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["WL103", "WL301", "WL402"]
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels == {"WL301": "error", "WL103": "warning", "WL402": "note"}
    res = next(r for r in run["results"] if r["ruleId"] == "WL103")
    assert run["tool"]["driver"]["rules"][res["ruleIndex"]]["id"] == "WL103"
    loc = res["locations"][0]
    assert loc["physicalLocation"]["artifactLocation"] == {"uri": "models/net.py", "uriBaseId": "%SRCROOT%"}
    assert loc["physicalLocation"]["region"]["startLine"] == 7
    assert loc["logicalLocations"][0]["fullyQualifiedName"] == "h.0.attn"


def test_sarif_empty_run_validates(validator, tmp_path):
    doc = json.loads(render_sarif(CheckResult(root=tmp_path), "0.1.0"))
    assert not list(validator.iter_errors(doc))
    assert doc["runs"][0]["results"] == []


def test_sarif_from_check_command(validator, tmp_path, monkeypatch, run_cli):
    (tmp_path / "m").mkdir()
    shutil.copy(ROOT / "examples" / "gpt2-tiny.onnx", tmp_path / "m" / "lm.onnx")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.wattlint]\nprecision = 'fp32'\n\n[[tool.wattlint.models]]\nname = 'lm'\nsource = 'm/lm.onnx'\n"
        "tokens = 1e8\nbudget = { energy-kwh = 0.0001 }\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))
    code, out, err = run_cli("check", "--format", "sarif")
    assert code == 1, err
    doc = json.loads(out)
    assert not [e.message for e in validator.iter_errors(doc)]
    ids = {r["ruleId"] for r in doc["runs"][0]["results"]}
    assert {"WL301", "WL101"} <= ids


def test_validator_rejects_bad_sarif(validator, tmp_path):
    doc = json.loads(render_sarif(_result(tmp_path), "0.1.0"))
    doc["runs"][0]["results"][0]["level"] = "fatal"
    assert list(validator.iter_errors(doc))
