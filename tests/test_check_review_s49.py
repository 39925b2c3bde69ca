"""Review s49 of `wattlint check`: exact WL305 threshold, budgets at the shown 6 digits, huge ratios as ratios,
duplicate / non-regular baselines, the hash memo's ctime, and which models `wattlint check .` selects."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from wattlint.lint import testing
from wattlint.lint.engine import run_rules
from wattlint.lint.registry import all_rules

ROOT = Path(__file__).resolve().parents[1]
ONNX = ROOT / "examples" / "gpt2-tiny.onnx"
RULES = all_rules()


class _Model:
    name = "m"
    select = ignore = ()

    def __init__(self, budget=None, regression_threshold=None):
        self.budget = budget or {}
        self.regression_threshold = regression_threshold


def _messages(code, total, *, budget=None, baseline=None, threshold=None) -> list[str]:
    """The messages of rule ``code`` on an estimate whose totals are ``total`` (the hand-checkable estimator)."""
    _, est = testing.scenario([{"op": "linear", "m": 64, "n": 64, "k": 64}], estimator=testing.simple_estimate,
                              total=total)
    return [f.message for f in run_rules(est, None, _Model(budget, threshold), rules=[RULES[code]], baseline=baseline,
                                         reestimator=testing.simple_estimate, gpus=testing.gpus_list, options={},
                                         strict=True)]


# ---- 1. WL305: a rise of exactly the threshold is not above it ------------------------------------------------------

def test_wl305_rise_of_exactly_the_threshold_passes():
    # 0.063 / 0.06 = 1.05 exactly: +5 %, not above a 5 % threshold (float arithmetic gave 0.050000000000000044)
    assert _messages("WL305", {"energy_kwh": 0.063}, baseline={"energy_kwh": 0.06}, threshold=0.05) == []


def test_wl305_rise_just_above_the_threshold_fails_and_reads_above_it():
    # 0.0630001 / 0.06 - 1 = 0.05 + 0.0000001 / 0.06 = 0.0500016667 -> 5.00017 %: 4 decimals (5.0002) read above 5
    (msg,) = _messages("WL305", {"energy_kwh": 0.0630001}, baseline={"energy_kwh": 0.06}, threshold=0.05)
    assert msg.startswith("estimated energy +5.0002% vs baseline ("), msg
    assert "threshold 5%" in msg


# ---- 2. budgets compare at the 6 significant digits every number shown keeps ----------------------------------------

def test_budget_set_to_the_reported_value_is_met():
    # 0.06317654 kWh is reported (baseline, JSON total, message) as 0.0631765: a budget of that value is met
    assert _messages("WL301", {"energy_kwh": 0.06317654}, budget={"energy_kwh": 0.0631765}) == []


def test_budget_over_at_six_digits_fails_with_the_values_compared():
    # 0.06317656 -> 0.0631766 at 6 digits > 0.0631765: over by 1e-7 / 0.0631765 = 0.00016 % -> "<0.001%"
    (msg,) = _messages("WL301", {"energy_kwh": 0.06317656}, budget={"energy_kwh": 0.0631765})
    assert msg.startswith("estimated energy 63.177 Wh exceeds the budget of 63.176 Wh by <0.001%"), msg


# ---- 3. a tiny baseline (or budget) reads as a ratio, not a 300-digit percentage ------------------------------------

def test_wl305_tiny_baseline_reads_as_a_ratio():
    # 0.2 / 1e-300 = 2e299 times the baseline
    (msg,) = _messages("WL305", {"energy_kwh": 0.2}, baseline={"energy_kwh": 1e-300}, threshold=0.05)
    assert msg.startswith("estimated energy 2e+299x the baseline (1e-300 kWh -> 0.2 kWh, threshold 5%)"), msg
    assert len(msg) < 200, msg


def test_wl305_twenty_times_the_baseline_reads_as_a_ratio():
    # 2000 / 100 = 20 (a +1900 % rise): "20x the baseline", as the budget rules read 10 times over (in MWh, the unit
    # the larger reads best in)
    (msg,) = _messages("WL305", {"energy_kwh": 2000.0}, baseline={"energy_kwh": 100.0}, threshold=0.05)
    assert msg.startswith("estimated energy 20x the baseline (0.100 MWh -> 2.00 MWh, threshold 5%)"), msg


def test_budget_tiny_limit_is_shown_in_g_notation():
    (msg,) = _messages("WL301", {"energy_kwh": 0.2}, budget={"energy_kwh": 1e-300})
    assert msg == "estimated energy 0.2 kWh exceeds the budget of 1e-300 kWh (2e+299x the budget)", msg


# ---- the CLI: a project, as tests/test_check.py builds it ----------------------------------------------------------

CONFIG = """
[tool.wattlint]
gpu = "a100-sxm4-80gb"
precision = "bf16"
ignore = ["WL402", "WL203"]
{extra}

[[tool.wattlint.models]]
name = "lm"
source = "{source}"
batch-size = 8
seq-len = 256
tokens = 2e8
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    (proj / "models").mkdir(parents=True)
    shutil.copy(ONNX, proj / "models" / "lm.onnx")
    monkeypatch.chdir(proj)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))

    def write(source="models/lm.onnx", extra=""):
        (proj / "pyproject.toml").write_text(CONFIG.format(source=source, extra=extra))
        return proj

    write()
    return write


# ---- 4. a baseline with a model twice (a merge kept both sides) is refused ------------------------------------------

def test_baseline_with_a_duplicate_model_key_is_refused(project, run_cli):
    proj = project()
    entry = '{"energy_kwh": %s, "source": "models/lm.onnx"}'
    (proj / "wattlint-baseline.json").write_text(
        '{"schema": "wattlint.baseline/1", "models": {"lm": %s, "lm": %s}}\n' % (entry % 0.01, entry % 1000))
    before = (proj / "wattlint-baseline.json").read_bytes()
    code, out, err = run_cli("check")
    assert code == 2 and out == "", (out, err)
    assert err.count("\n") == 1 and "key 'lm' appears twice in one object" in err, err
    assert (proj / "wattlint-baseline.json").read_bytes() == before
    code, _, err = run_cli("check", "--update-baseline")  # never "repaired" by keeping one of them
    assert code == 2 and "appears twice" in err
    assert (proj / "wattlint-baseline.json").read_bytes() == before


# ---- 5. a baseline that is a device or a named pipe is not "empty" --------------------------------------------------

def test_dev_null_baseline_is_not_a_regular_file(project, run_cli):
    project(extra='baseline = "/dev/null"')
    code, out, err = run_cli("check")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "not a regular file (a device)" in err and "empty" not in err, err


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not hasattr(signal, "SIGALRM"), reason="no named pipes")
def test_fifo_baseline_is_not_a_regular_file(project, run_cli):
    proj = project(extra='baseline = "bl.json"')
    os.mkfifo(proj / "bl.json")  # reading it would block: it must never be opened

    def hung(*_):
        raise TimeoutError("the baseline's named pipe was opened for reading")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        code, out, err = run_cli("check")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert code == 2 and "not a regular file (a named pipe)" in err, err


# ---- 6. the hash memo sees an in-place same-size edit whose mtime was set back --------------------------------------

def test_hash_memo_sees_same_size_edit_with_mtime_restored(tmp_path):
    import hashlib

    from wattlint.cache import HashMemo

    f = tmp_path / "m.onnx"
    f.write_bytes(b"abc")
    st = f.stat()
    memo = HashMemo(tmp_path / "hashes.json")
    assert memo.digest(f) == hashlib.sha256(b"abc").hexdigest()
    memo.save()
    time.sleep(0.05)  # past the file system's timestamp granularity: the ctime moves
    with open(f, "r+b") as fh:  # in place: same inode, same size
        fh.write(b"xyz")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # touch -d / rsync -t: the mtime back as it was
    assert f.stat().st_ino == st.st_ino and f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    assert HashMemo(tmp_path / "hashes.json").digest(f) == hashlib.sha256(b"xyz").hexdigest()


# ---- 7. `wattlint check .` in the project checks every configured model ---------------------------------------------

def test_check_dot_in_the_project_checks_models_outside_it(project, run_cli, tmp_path):
    shutil.copy(ONNX, tmp_path / "shared.onnx")
    project(source="../shared.onnx")  # as the shipped examples/project's ../resnet50.onnx
    code, out, err = run_cli("check", ".")
    assert code == 0, out + err
    assert "lm: " in out and "no configured model matched" not in out, out
    code, out, _ = run_cli("check", str(tmp_path))  # a folder above the project's holds it too
    assert "lm: " in out, out


def test_check_a_subfolder_selects_only_the_models_in_it(project, run_cli, tmp_path):
    shutil.copy(ONNX, tmp_path / "shared.onnx")
    proj = project(source="../shared.onnx")
    (proj / "docs").mkdir()
    code, out, _ = run_cli("check", "docs")
    assert code == 0 and "lm: " not in out and "no configured model matched" in out, out


def test_another_projects_pyproject_selects_no_model(project, run_cli):
    proj = project()
    (proj / "other").mkdir()
    (proj / "other" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    code, out, _ = run_cli("check", "other/pyproject.toml")
    assert code == 0 and "lm: " not in out and "no configured model matched" in out, out
    code, out, _ = run_cli("check", "pyproject.toml")  # the configuration's own: every model
    assert "lm: " in out, out


# ---- 8. the JSON report lists the energies a baseline update accepts (the text report's before -> after) ------------

def test_json_baseline_changes_carry_before_and_after(project, run_cli):
    import json

    import jsonschema

    proj = project()
    code, _, err = run_cli("check", "--update-baseline")
    assert code == 0, err
    before = json.loads((proj / "wattlint-baseline.json").read_text())["models"]["lm"]["energy_kwh"]
    (proj / "pyproject.toml").write_text((proj / "pyproject.toml").read_text().replace("tokens = 2e8", "tokens = 3e8"))
    code, out, err = run_cli("check", "--update-baseline", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    schema = json.loads((ROOT / "src" / "wattlint" / "schemas" / "check.schema.json").read_text())
    jsonschema.validate(doc, schema)
    after = json.loads((proj / "wattlint-baseline.json").read_text())["models"]["lm"]["energy_kwh"]
    # 1.5x the tokens at the same batch and sequence: 1.5x the steps, so 1.5x the energy (rounded step count aside)
    assert after == pytest.approx(1.5 * before, rel=0.01)
    assert doc["baseline_changes"]["energy_kwh"] == {"lm": {"before": before, "after": after}}
