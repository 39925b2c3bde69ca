"""Review walk s48 of the calibration and tracking docs on CPU: a skipped run record refused the others in `fit`,
compare-run dropped the run's BUDGET EXCEEDED line, a typo'd cpu_calibration= ran silently, a CPU fit written with
--out was said to be used, `validate compare` lost a moved measurements file's predictions, and what SIGTERM does to
a tracked run."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from _fake_nvml import Clock, quiet_track
from test_track_fit import write_record

import wattlint
from wattlint.cli import main
from wattlint.tracking.fit import RunFitError, fit_records
from wattlint.tracking.record import read_record
from wattlint.types import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")
CPU_RUNS = ROOT / "calibration" / "runs" / "cpu-amd-epyc"


def _edit_header(path: Path, **changes) -> Path:
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    for k, v in changes.items():
        if k == "clock":
            lines[0]["settings"]["clock"] = v
        else:
            lines[0][k] = v
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _never_stable(path: Path) -> Path:
    """Step times alternating 0.1 s / 0.3 s in 20-step blocks from the start: never a stable phase."""
    lines = path.read_text().splitlines()
    out = [lines[0]]
    for ln in lines[1:]:
        w = json.loads(ln)
        w["step_times_s"] = [0.3 if (i // 20) % 2 else 0.1 for i, _ in enumerate(w["step_times_s"],
                                                                                 start=w["first_step"])]
        out.append(json.dumps(w))
    path.write_text("\n".join(out) + "\n")
    return path


# ---- 1. a record skipped anyway never refuses the others --------------------------------------------------------

@pytest.mark.parametrize("other", ["clock", "energy_model", "gpu"])
def test_a_never_stable_record_is_skipped_before_the_cross_record_checks(tmp_path, other):
    """Review: one never-stable wall-clock record beside stable clock='process' ones refused the whole folder
    ("its steps were timed on the 'process' clock, but ...'s on the 'wall' clock"); TRACKING.md says such a record
    is skipped and never refuses the others. The same for another energy model and another GPU."""
    d = tmp_path / "runs"
    kw = {"energy_model": "measured: something else"} if other == "energy_model" else \
        {"gpu_key": "a100-sxm4-80gb"} if other == "gpu" else {}
    bad = _never_stable(write_record(d / "0-unstable.jsonl", model_hash="u", t_meas=0.1, t_pred=0.1, **kw))
    good = [write_record(d / f"p{i}.jsonl", model_hash=h, t_meas=t, t_pred=0.1)
            for i, (h, t) in enumerate((("a", 0.12), ("b", 0.15)))]
    if other == "clock":
        for p in good:
            _edit_header(p, clock="process")
    corr, path = fit_records([str(d)], out=str(tmp_path / "o"))
    doc = json.loads(path.read_text())
    assert corr.runs == 2 and {Path(r["file"]).name for r in doc["runs"]} == {"p0.jsonl", "p1.jsonl"}
    skipped = {Path(s["file"]).name: s["reason"] for s in doc["skipped"]}
    assert skipped[bad.name].startswith("no stable phase")
    assert doc["clock"] == ("process" if other == "clock" else "wall")


def test_an_implausible_record_is_skipped_before_the_clock_check(tmp_path):
    d = tmp_path / "runs"
    write_record(d / "0-odd.jsonl", model_hash="o", t_meas=0.1, t_pred=1e-6)  # measured / predicted 1e5
    for i, (h, t) in enumerate((("a", 0.12), ("b", 0.15))):
        _edit_header(write_record(d / f"p{i}.jsonl", model_hash=h, t_meas=t, t_pred=0.1), clock="process")
    corr, path = fit_records([str(d)], out=str(tmp_path / "o"))
    assert corr.runs == 2
    assert any(Path(s["file"]).name == "0-odd.jsonl" for s in json.loads(path.read_text())["skipped"])


def test_usable_records_on_two_clocks_are_still_refused(tmp_path):
    d = tmp_path / "runs"
    write_record(d / "a.jsonl", model_hash="a", t_meas=0.12, t_pred=0.1)
    _edit_header(write_record(d / "b.jsonl", model_hash="b", t_meas=0.15, t_pred=0.1), clock="process")
    with pytest.raises(RunFitError, match="timed on the 'process' clock, but .*a.jsonl's on the 'wall' clock"):
        fit_records([str(d)], out=str(tmp_path / "o"))


def test_fit_cli_of_the_mixed_folder_fits_the_usable_records(tmp_path, run_cli):
    d = tmp_path / "runs"
    _never_stable(write_record(d / "0-unstable.jsonl", model_hash="u", t_meas=0.1, t_pred=0.1))
    for i, (h, t) in enumerate((("a", 0.12), ("b", 0.15))):
        _edit_header(write_record(d / f"p{i}.jsonl", model_hash=h, t_meas=t, t_pred=0.1), clock="process")
    code, out, err = run_cli("fit", d, "--out", tmp_path / "o")
    assert code == 0, err
    assert "0-unstable.jsonl" in out + err and "no stable phase" in out + err


# ---- 2. compare-run reprints the run's BUDGET EXCEEDED line ----------------------------------------------------

def _budget_run(tmp_path):
    clock = Clock(100.0)
    stream = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with quiet_track(tmp_path, clock, display="line", every=10**6, stream=stream, max_kwh=1e-9) as t:
            for _ in range(48):
                clock.t += 0.01
                t.step()
    live = [ln for ln in stream.getvalue().splitlines() if "BUDGET EXCEEDED" in ln]
    assert len(live) == 1
    return t.path, live[0]


def test_compare_run_reprints_the_budget_exceeded_line(tmp_path, capsys):
    path, live = _budget_run(tmp_path)
    capsys.readouterr()
    assert main(["compare-run", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert live in out
    assert out[1] == live  # right under the first line, as the run printed it


def test_compare_run_json_carries_budget_exceeded(tmp_path, capsys):
    path, _ = _budget_run(tmp_path)
    capsys.readouterr()
    assert main(["compare-run", str(path), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["budget_exceeded"] == read_record(path).summary["budget_exceeded"]
    assert doc["budget_exceeded"][0]["budget"] == "max_kwh"


def test_compare_run_of_a_run_without_budget_has_no_budget_exceeded(tmp_path, capsys):
    clock = Clock(100.0)
    with quiet_track(tmp_path, clock) as t:
        for _ in range(20):
            clock.t += 0.01
            t.step()
    capsys.readouterr()
    assert main(["compare-run", str(t.path), "--format", "json"]) == 0
    assert "budget_exceeded" not in json.loads(capsys.readouterr().out)


# ---- 3. cpu_calibration= is checked before the loop, like gpu= -------------------------------------------------

@pytest.mark.parametrize("bad", ["nosuchdir", "file", "empty", ""])
def test_a_cpu_calibration_that_is_no_calibration_run_folder_is_refused(tmp_path, bad):
    where = {"nosuchdir": tmp_path / "nosuchdir", "file": tmp_path / "f.json", "empty": tmp_path / "e", "": ""}[bad]
    if bad == "file":
        where.write_text("{}")
    if bad == "empty":
        where.mkdir()
    with pytest.raises(ConfigError, match="cpu_calibration|no CPU calibration run"):
        wattlint.track(cpu_calibration=str(where), out=tmp_path / "runs", display="quiet")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_cpu_calibration_run_folder_is_taken(tmp_path):
    t = wattlint.track(cpu_calibration=str(CPU_RUNS), out=tmp_path / "runs", display="quiet")
    assert t.cpu_calibration == str(CPU_RUNS)


def test_the_api_refusal_is_one_line_exit_2_from_compare_run(tmp_path, run_cli):
    p = write_record(tmp_path / "r.jsonl", model_hash="a", t_meas=0.1, t_pred=0.1)
    code, out, err = run_cli("compare-run", p, "--cpu-calibration", tmp_path / "nosuchdir")
    assert code == 2 and len(err.strip().splitlines()) == 1


# ---- 4. a CPU fit written elsewhere with --out is said to be used by no estimate --------------------------------

@pytest.fixture(scope="module")
def cpu_run_copy(tmp_path_factory):
    d = tmp_path_factory.mktemp("cpu") / "cpu-run"
    d.mkdir()
    for f in CPU_RUNS.glob("*-quick.*"):
        shutil.copy(f, d / f.name)
    return d


def test_a_cpu_fit_with_out_elsewhere_says_where_it_would_be_used(cpu_run_copy, tmp_path, run_cli):
    code, out, err = run_cli("fit", cpu_run_copy, "--out", tmp_path / "elsewhere")
    assert code == 0, err
    said = out + err
    assert str(cpu_run_copy / "model") in said and "no estimate" in said
    assert "will use this measured model" not in said


def test_a_cpu_fit_into_its_run_folder_model_says_nothing_of_moving_it(cpu_run_copy, run_cli):
    code, out, err = run_cli("fit", cpu_run_copy, "--out", cpu_run_copy / "model")
    assert code == 0, err
    assert "no estimate" not in out + err


# ---- 5. validate compare finds the predictions file of a moved measurements file --------------------------------

@pytest.fixture
def moved_measurements(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "m").mkdir()
    pred = next(CPU_RUNS.glob("*T113002Z-predictions.json"))
    meas = next(CPU_RUNS.glob("*-measurements.json"))
    assert json.loads(meas.read_text())["predictions_file"] == pred.name
    shutil.copy(pred, tmp_path / "p" / pred.name)
    shutil.copy(meas, tmp_path / "m" / meas.name)
    return tmp_path, tmp_path / "m" / meas.name


def test_validate_compare_finds_the_predictions_in_the_current_folder(moved_measurements, monkeypatch, run_cli):
    tmp, meas = moved_measurements
    monkeypatch.chdir(tmp / "p")
    code, out, err = run_cli("validate", "compare", "--measurements", meas, "--out", tmp / "v.json")
    assert code == 0, err
    assert (tmp / "v.json").is_file()


def test_validate_compare_not_found_says_to_pass_predictions(moved_measurements, monkeypatch, run_cli):
    tmp, meas = moved_measurements
    monkeypatch.chdir(tmp)
    code, out, err = run_cli("validate", "compare", "--measurements", meas, "--out", tmp / "v.json")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--predictions PATH" in err
    assert not (tmp / "v.json").exists()


def test_validate_compare_takes_the_one_with_the_recorded_sha256(moved_measurements, monkeypatch, run_cli):
    """A stale file of the same name next to the measurements file does not hide the right one in the cwd."""
    tmp, meas = moved_measurements
    name = json.loads(meas.read_text())["predictions_file"]
    (tmp / "m" / name).write_text((tmp / "p" / name).read_text().replace("prior", "prior ", 1))
    monkeypatch.chdir(tmp / "p")
    code, out, err = run_cli("validate", "compare", "--measurements", meas, "--out", tmp / "v.json")
    assert code == 0, err


# ---- 6. SIGTERM: the documented pattern closes the record as interrupted ----------------------------------------

PROGRAM = r"""
import signal, sys, time
import wattlint
if sys.argv[2] == "handler":  # the pattern docs/TRACKING.md recommends
    signal.signal(signal.SIGTERM, signal.default_int_handler)
with wattlint.track(device="cpu", steps=100000, out=sys.argv[1], display="quiet", window_s=0.03) as t:
    for i in range(100000):
        time.sleep(0.002)
        t.step()
"""


def _sigterm(tmp_path, how):
    out = tmp_path / "run.jsonl"
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM, str(out), how], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if out.exists() and out.read_bytes().count(b"\n") >= 3:
                break
            if proc.poll() is not None:
                pytest.fail(f"the tracked program exited early with {proc.returncode}")
            time.sleep(0.01)
        else:
            pytest.fail("the record did not grow")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return read_record(out), proc.returncode


def test_sigterm_without_a_handler_leaves_a_record_read_as_incomplete(tmp_path, capsys):
    rec, rc = _sigterm(tmp_path, "none")
    assert rc == -signal.SIGTERM
    assert rec.summary is None and "incomplete" in rec.status
    assert main(["compare-run", str(rec.path)]) == 0
    assert "incomplete" in capsys.readouterr().out


def test_sigterm_with_the_documented_handler_closes_the_record_as_interrupted(tmp_path, capsys):
    rec, rc = _sigterm(tmp_path, "handler")
    assert rc != 0
    assert rec.summary is not None and rec.summary["status"] == "interrupted"
    assert main(["compare-run", str(rec.path)]) == 0
    assert "interrupted" in capsys.readouterr().out.splitlines()[0]


def test_tracking_md_documents_sigterm():
    text = (ROOT / "docs" / "TRACKING.md").read_text()
    assert "SIGTERM" in text and "signal.default_int_handler" in text
