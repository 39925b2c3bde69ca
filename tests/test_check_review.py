"""`wattlint check` in a team's repository (review of the pre-commit / CI flow): --force-exclude with an excluded
file a checked model imports, exclude on 'pkg.module:attr' sources and anchored patterns, damaged cache entries,
what the GitHub and SARIF formats say beside the findings, percent-encoded SARIF locations, and a baseline's own
top-level keys kept by an update."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ONNX = ROOT / "examples" / "gpt2-tiny.onnx"


def _torch_project(tmp_path, monkeypatch, source: str, exclude: str) -> Path:
    """The example project's MLP (models/tiny_mlp.py imports models/blocks.py) under ``exclude``."""
    shutil.copytree(ROOT / "examples" / "project" / "models", tmp_path / "models",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "pyproject.toml").write_text(
        f"[tool.wattlint]\nignore = ['WL402']\nexclude = {exclude}\n\n[[tool.wattlint.models]]\nname = 'mlp'\n"
        f"source = '{source}'\ninputs = ['x=float32[64,784]']\nsteps = 100\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_force_exclude_keeps_a_model_whose_imported_file_is_excluded(tmp_path, monkeypatch, run_cli):
    """The pre-commit hook runs `check --force-exclude <staged files>`: a staged file under an excluded folder that a
    checked (not excluded) model imports must still select that model; it was dropped as a path, and the commit
    that changed the model passed unchecked."""
    pytest.importorskip("torch")
    _torch_project(tmp_path, monkeypatch, "models/tiny_mlp.py:build", "['models/blocks.py']")
    code, out, err = run_cli("check", "--force-exclude", "models/blocks.py")
    assert code == 0, err
    assert "mlp: " in out and "no configured model matched" not in out, out
    # the model's own source excluded: --force-exclude leaves it out, and says so
    (tmp_path / "pyproject.toml").write_text((tmp_path / "pyproject.toml").read_text().replace(
        "exclude = ['models/blocks.py']", "exclude = ['models/tiny_mlp.py']"))
    out = run_cli("check", "--force-exclude", "models/tiny_mlp.py")[1]
    assert "no configured model matched" in out and "not checked, matched by exclude: mlp" in out, out


def test_exclude_applies_to_a_module_form_source(tmp_path, monkeypatch, run_cli):
    """source = 'models.tiny_mlp:build' names models/tiny_mlp.py as much as 'models/tiny_mlp.py:build' does."""
    pytest.importorskip("torch")
    _torch_project(tmp_path, monkeypatch, "models.tiny_mlp:build", "['models/**']")
    out = run_cli("check")[1]
    assert "no configured model matched" in out and "not checked, matched by exclude: mlp" in out, out


def test_an_anchored_exclude_pattern_matches_from_the_root(tmp_path):
    from wattlint.config import is_excluded

    (tmp_path / "models" / "sub").mkdir(parents=True)
    deep = tmp_path / "models" / "sub" / "deep.onnx"
    # gitignore: a leading '/' anchors the pattern at the root ('/models/sub/*' matched nothing before)
    assert is_excluded(deep, ("/models/sub/*",), tmp_path)
    assert is_excluded(deep, ("/models",), tmp_path)
    # anchored: 'sub' at the root is not models/sub, while the unanchored 'sub' matches any component
    assert not is_excluded(deep, ("/sub",), tmp_path)
    assert is_excluded(deep, ("sub",), tmp_path)
    # a source outside the project: a root-relative pattern never matches it ('/*' and '/**' excluded exactly the
    # models outside the root), a path-component pattern still does
    outside = tmp_path.parent / "elsewhere" / "m.onnx"
    for pat in ("/*", "/**", "models/*"):
        assert not is_excluded(outside, (pat,), tmp_path), pat
    assert is_excluded(outside, ("elsewhere",), tmp_path)


@pytest.mark.parametrize("pattern", ["/", "//", " / "])
def test_an_exclude_glob_of_slashes_only_is_refused(tmp_path, monkeypatch, run_cli, pattern):
    (tmp_path / "pyproject.toml").write_text(
        f"[tool.wattlint]\nexclude = [{pattern!r}]\n\n[[tool.wattlint.models]]\nname = 'lm'\n"
        f"source = 'lm.onnx'\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("check")
    assert code == 2 and "names no path" in err and err.count("\n") == 1, err


@pytest.fixture
def onnx_project(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    shutil.copy(ONNX, tmp_path / "models" / "lm.onnx")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.wattlint]\ngpu = 'a100-sxm4-80gb'\nprecision = 'bf16'\nignore = ['WL402', 'WL203']\n\n"
        "[[tool.wattlint.models]]\nname = 'lm'\nsource = 'models/lm.onnx'\nbatch-size = 8\nseq-len = 256\n"
        "tokens = 2e8\nbudget = { energy-kwh = 1000 }\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("damage", [
    {"summary": {}}, {"summary": []}, {"findings": "abc"}, {"findings": [{"x": 1}]},
    {"summary": {"total": {"energy_kwh": "1"}}},
    {"findings": [{"code": "WL104", "severity": "fatal", "message": "m"}]},
    {"findings": [{"code": "WL104", "severity": "info", "message": "m", "saving_kwh": "abc"}]},
    {"summary": "memory"}])
def test_a_damaged_cache_entry_is_a_miss(onnx_project, run_cli, damage):
    """An entry with the right schema and key but a damaged body was trusted: an empty summary passed every budget
    as '?', a list exited 3, and --update-baseline wrote its nulls into the baseline."""
    assert run_cli("check", "--update-baseline")[0] == 0
    baseline = (onnx_project / "wattlint-baseline.json").read_text()
    entries = [p for p in (onnx_project / "cache" / "v1").glob("*.json") if p.name != "hashes.json"]
    assert len(entries) == 1
    doc = json.loads(entries[0].read_text())
    if damage == {"summary": "memory"}:  # the entry's own summary with an empty memory block
        damage = {"summary": {**doc["summary"], "memory": {}}}
    doc.update(damage)
    entries[0].write_text(json.dumps(doc))
    code, out, err = run_cli("check", "--format", "json")
    assert code == 0, err
    m = json.loads(out)["models"][0]
    assert m["cached"] is False and m["total"]["energy_kwh"] > 0, m  # estimated again
    entries[0].write_text(json.dumps(doc))
    assert run_cli("check", "--update-baseline")[0] == 0
    assert json.loads((onnx_project / "wattlint-baseline.json").read_text())["models"] == \
        json.loads(baseline)["models"]


def test_a_baseline_entry_the_check_would_refuse_is_never_written(tmp_path):
    from wattlint.lint.baseline import write_baseline

    path = tmp_path / "b.json"
    write_baseline(path, {"m": {"energy_kwh": 1.5}})
    before = path.read_text()
    with pytest.raises(RuntimeError, match="no energy_kwh"):
        write_baseline(path, {"m": {"source": "x", "gpu": None, "calibration": None}})
    assert path.read_text() == before


def test_update_baseline_keeps_the_files_own_top_level_keys(onnx_project, run_cli):
    assert run_cli("check", "--update-baseline")[0] == 0
    path = onnx_project / "wattlint-baseline.json"
    doc = json.loads(path.read_text())
    doc["_comment"] = "accepted +7 % in PR #12"
    path.write_text(json.dumps(doc))
    assert run_cli("check")[0] == 0  # a check accepts it
    assert run_cli("check", "--update-baseline")[0] == 0
    assert json.loads(path.read_text())["_comment"] == "accepted +7 % in PR #12"


def _light_install(monkeypatch):
    """find_spec('torch') is None, as in the light install (the ONNX-only pre-commit hook)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name in ("torch", "transformers") else real(name, *a, **k))


def test_github_and_sarif_say_which_models_were_not_checked_and_the_notes(onnx_project, run_cli, monkeypatch):
    """In the light install a PyTorch model is skipped and, without a baseline, WL305 is not checked: the text
    report says both; the GitHub and SARIF formats (what CI shows) said nothing and the job was green."""
    with (onnx_project / "pyproject.toml").open("a") as f:
        f.write("\n[[tool.wattlint.models]]\nname = 'net'\nsource = 'net.py:build'\n")
    (onnx_project / "net.py").write_text("def build():\n    raise SystemExit('not traced')\n")
    _light_install(monkeypatch)
    text = run_cli("check")[1]
    assert "net: skipped: needs torch" in text and "note: no baseline file" in text, text
    code, out, err = run_cli("check", "--format", "github")
    assert code == 0, err
    lines = out.splitlines()
    assert any(ln.startswith("::warning title=not checked (net)::net: skipped: needs torch") for ln in lines), out
    assert any(ln.startswith("::notice title=wattlint::no baseline file") for ln in lines), out
    code, out, err = run_cli("check", "--format", "sarif")
    notes = json.loads(out)["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert any(n["level"] == "warning" and n["message"]["text"].startswith("net: skipped: needs torch")
               for n in notes), notes
    assert any(n["level"] == "note" and n["message"]["text"].startswith("no baseline file") for n in notes), notes


def test_sarif_relative_uris_are_percent_encoded():
    from wattlint.report.sarif import _artifact

    # RFC 3986: a space is not allowed in a URI reference, '#' would start a fragment, ':' in a first segment a scheme
    assert _artifact("models/my nets#2/t: net.py") == {"uri": "models/my%20nets%232/t%3A%20net.py",
                                                       "uriBaseId": "%SRCROOT%"}
    assert _artifact("models/tíny.py")["uri"] == "models/t%C3%ADny.py"


def test_a_non_finite_value_among_the_baselines_own_keys_is_named_not_a_crash(onnx_project, run_cli):
    assert run_cli("check", "--update-baseline")[0] == 0
    path = onnx_project / "wattlint-baseline.json"
    path.write_text(path.read_text().replace('{\n', '{\n  "_comment": NaN,\n', 1))
    before = path.read_text()
    code, out, err = run_cli("check", "--update-baseline")
    assert code == 2 and "'_comment' holds NaN or Infinity" in err and err.count("\n") == 1, err
    assert path.read_text() == before
