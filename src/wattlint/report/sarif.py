"""SARIF 2.1.0 output of ``wattlint check`` (GitHub code scanning). Validated against the OASIS schema in tests."""

from __future__ import annotations

import hashlib
import json

from ..lint.results import CheckResult

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVEL = {"error": "error", "warning": "warning", "info": "note"}
INFO_URI = "https://github.com/wattlint/wattlint/blob/main/docs/RULES.md"


def _rule_descriptor(rule) -> dict:
    return {
        "id": rule.code,
        "name": "".join(p.capitalize() for p in rule.name.split("-")),
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": " ".join(rule.what.split())},
        "help": {"text": rule.docs_text(), "markdown": rule.docs_markdown()},
        "helpUri": f"{INFO_URI}#{rule.code.lower()}-{rule.name}",
        "defaultConfiguration": {"level": LEVEL[rule.severity]},
        "properties": {"tags": ["energy", rule.status], "precision": "medium",
                       "problem.severity": "error" if rule.severity == "error" else
                       "warning" if rule.severity == "warning" else "recommendation"},
    }


def _artifact(path: str) -> dict:
    """A location relative to the repository root (%SRCROOT%), or a file URI for a file outside the repository; a
    relative one percent-encoded as a URI reference (a space, '#', '?' or ':' in a folder name is not one)."""
    from pathlib import PurePosixPath
    from urllib.parse import quote

    if PurePosixPath(path).is_absolute():
        return {"uri": PurePosixPath(path).as_uri()}
    return {"uri": quote(path, safe="/"), "uriBaseId": "%SRCROOT%"}


def render_sarif(result: CheckResult, version: str) -> str:
    from ..lint.registry import all_rules
    from ..lint.results import repository_root

    rules = all_rules()
    used = sorted({i.finding.code for i in result.items if i.finding.code in rules})
    index = {code: n for n, code in enumerate(used)}
    results = []
    for m in result.models:
        for it in m.items:
            f = it.finding
            r = {
                "ruleId": f.code,
                "level": LEVEL.get(f.severity, "warning"),
                "message": {"text": f"{m.name}: {f.message}"},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": _artifact(it.repo_path(result.root)),
                        "region": {"startLine": max(1, it.line)},
                    },
                    **({"logicalLocations": [{"fullyQualifiedName": f.layer, "kind": "module"}]} if f.layer else {}),
                }],
                "partialFingerprints": {
                    "wattlintFinding/v1": hashlib.sha256(f"{m.name}\0{f.code}\0{f.layer or ''}".encode())
                    .hexdigest()[:32]},
                "properties": {"model": m.name, "layer": f.layer, "saving_kwh": f.saving_kwh,
                               "saving_pct": f.saving_pct,
                               # provenance of the finding's numbers (measured | public-fit | transferred | prior)
                               "energy_model": m.summary.get("calibration"), "gpu": m.summary.get("gpu")},
            }
            if f.code in index:
                r["ruleIndex"] = index[f.code]
            results.append(r)
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "wattlint", "version": version, "semanticVersion": version,
                                "informationUri": "https://github.com/wattlint/wattlint",
                                "rules": [_rule_descriptor(rules[c]) for c in used]}},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": repository_root(result.root).as_uri() + "/"}},
            "results": results,
            # a model that could not be estimated (bad input) is a failed part of this run, not a rule result; a
            # skipped model (the light install) and the check's notes (no baseline, excluded models) are what the
            # text report prints beside the findings, and a green CI job must not hide them
            "invocations": [{"executionSuccessful": not result.errors, "toolExecutionNotifications": [
                {"level": "error", "message": {"text": m.error},
                 **({"locations": [{"physicalLocation": {"artifactLocation": _artifact(m.error_at.repo_path(
                     result.root)), "region": {"startLine": max(1, m.error_at.line)}}}]} if m.error_at else {})}
                for m in result.models if m.error]
                + [{"level": "warning", "message": {"text": f"{m.name}: {m.skipped}"}}
                   for m in result.models if m.skipped]
                + [{"level": "note", "message": {"text": n}} for n in result.notices]}],
            "columnKind": "unicodeCodePoints",
        }],
    }
    return json.dumps(doc, indent=2) + "\n"
