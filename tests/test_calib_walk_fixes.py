"""Review walk of calibrate / validate: a resume on another device is refused (samples of two devices mixed, the
meter provenance replaced); one measurement per device at a time; `validate measure` ends on SIGTERM like Ctrl-C
and `validate compare` names what was not measured; the CPU step count says the power is modelled."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from wattlint.calibrate import validate as V
from wattlint.calibrate.runner import RunConfig, read_rows, run_calibration

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "data" / "calib-tiny.toml")
# two small CPU samples (a CPU run is real torch work)
CPU_SUITE = """[suite]
name = "walk"
[suite.setup]
idle_s = 0
stabilize_max_s = 0
[suite.timing.cpu]
warmup_s = 0.0
timing_s = {timing}
[[group]]
family = "elementwise"
precisions = ["fp32"]
phases = ["forward"]
grid = {{op = ["add", "relu"], numel = [4096]}}
"""


def _suite(d: Path, timing: float = 0.02) -> str:
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"walk-{timing:g}.toml"
    p.write_text(CPU_SUITE.format(timing=timing))
    return str(p)


@pytest.fixture(scope="module")
def lock_tmp(tmp_path_factory):
    """A temp folder of the tests' own, for the device locks (a calibration elsewhere on this machine is not ours)."""
    d = tmp_path_factory.mktemp("tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(d))
        yield d


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory, lock_tmp):
    """A CPU run of one thread, 1 of its 2 samples measured (a later --resume goes on)."""
    import torch

    threads = torch.get_num_threads()
    d = tmp_path_factory.mktemp("cpurun")
    try:
        return run_calibration(RunConfig(device="cpu", suite=_suite(d), out=str(d / "run"), limit=1))
    finally:
        torch.set_num_threads(threads)


def _copy(run, d: Path, edit=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(run.csv, d / run.csv.name)
    doc = json.loads(run.json.read_text())
    if edit:
        edit(doc)
    (d / run.json.name).write_text(json.dumps(doc))
    return d / run.csv.name


# ---- 1. a resume on another device ----------------------------------------------------------------------------

def test_resume_with_another_cpu_thread_count_is_refused_and_the_meter_provenance_kept(cpu_run, tmp_path, run_cli,
                                                                                        monkeypatch):
    """Review: WATTLINT_CPU_THREADS=2 resuming a 1-thread CPU run exited 0 with rows at a 22 W model and rows at 34 W,
    the JSON's meter.power_model replaced for the whole run and device.threads still 1. Refused now, nothing written;
    on the run's device it goes on, the run's meter kept and the session's own recorded beside it."""
    import torch

    threads = torch.get_num_threads()
    csv_path = _copy(cpu_run, tmp_path / "r")
    json_path = csv_path.with_suffix(".json")
    before = (csv_path.read_bytes(), json_path.read_bytes())
    meter = json.loads(before[1])["meter"]
    try:
        monkeypatch.setenv("WATTLINT_CPU_THREADS", "2")
        code, out, err = run_cli("calibrate", "--device", "cpu", "--resume", csv_path, "--limit", "1",
                                 "--no-progress")
        assert code == 2 and out == "", err
        assert err.count("\n") == 1 and "this session's device is not the run's (CPU threads 1 -> 2; power model " \
                                       "22 W -> 34 W)" in err and "WATTLINT_CPU_THREADS=1" in err, err
        assert (csv_path.read_bytes(), json_path.read_bytes()) == before
        monkeypatch.setenv("WATTLINT_CPU_THREADS", "1")
        code, _, err = run_cli("calibrate", "--device", "cpu", "--resume", csv_path, "--limit", "1", "--no-progress")
        assert code == 0, err
    finally:
        torch.set_num_threads(threads)
    prov = json.loads(json_path.read_text())
    assert len(read_rows(csv_path)) == 2 and prov["meter"] == meter
    assert prov["sessions"][-1]["meter"]["power_model"] == meter["power_model"]
    assert prov["sessions"][-1]["device"]["threads"] == 1


def test_a_resume_records_the_runs_meter_when_the_first_session_stopped_before_it(cpu_run, tmp_path, run_cli,
                                                                                   monkeypatch):
    """Review: the run's meter was written only by a first session; one interrupted before its meter was read (the
    counter probe, idle power, stabilisation) left a run that no resume ever gave a meter (fit's card then said
    meter None). The first session to get there records it."""
    import torch

    threads = torch.get_num_threads()
    csv_path = _copy(cpu_run, tmp_path / "r", edit=lambda doc: doc.pop("meter"))
    assert "meter" not in json.loads(csv_path.with_suffix(".json").read_text())
    try:
        monkeypatch.setenv("WATTLINT_CPU_THREADS", "1")
        code, _, err = run_cli("calibrate", "--device", "cpu", "--resume", csv_path, "--limit", "1", "--no-progress")
        assert code == 0, err
    finally:
        torch.set_num_threads(threads)
    prov = json.loads(csv_path.with_suffix(".json").read_text())
    assert prov["meter"] == prov["sessions"][-1]["meter"] and prov["meter"]["power_model"], prov.get("meter")


def test_resume_of_another_gpu_model_is_refused_naming_what_differs(tmp_path):
    """The same path let an H100 run be resumed on an A100: the GPU name, its database key and the power limit are
    the run's; each that differs is named (another physical GPU of the same model may go on)."""
    from wattlint.calibrate.runner import RunError, _check_same_device

    prov = {"device": {"kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1"},
            "meter": {"name": "nvml", "power_limit_w": 700.0}, "spec": {"key": "h100-sxm5-80gb"}}
    with pytest.raises(RunError, match=r"GPU name 'NVIDIA H100 80GB HBM3' -> 'NVIDIA A100-SXM4-80GB'; device spec "
                                       r"'h100-sxm5-80gb' -> 'a100-sxm4-80gb'; power limit \(W\) 700.0 -> 400.0\)"):
        _check_same_device("r.csv", prov, {"kind": "cuda", "name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-2"},
                           {"name": "nvml", "power_limit_w": 400.0}, "a100-sxm4-80gb")
    _check_same_device("r.csv", prov, {"kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-3"},
                       {"name": "nvml", "power_limit_w": 700.0}, "h100-sxm5-80gb")  # another H100: allowed


def test_resume_of_a_run_recorded_on_another_device_is_refused_before_writing(tmp_path):
    """End to end on the simulator: a run whose provenance names another device is not continued here."""
    from wattlint.calibrate.runner import RunError

    run = run_calibration(RunConfig(device="fake", suite=TINY, out=str(tmp_path / "a"), limit=2))
    csv_path = _copy(run, tmp_path / "b", lambda d: (d["device"].update(name="NVIDIA A100-SXM4-80GB"),
                                                    d["spec"].update(key="a100-sxm4-80gb")))
    before = (csv_path.read_bytes(), csv_path.with_suffix(".json").read_bytes())
    with pytest.raises(RunError, match="device name 'NVIDIA A100-SXM4-80GB' -> 'Fake GPU"):
        run_calibration(RunConfig(device="fake", resume=str(csv_path)))
    assert (csv_path.read_bytes(), csv_path.with_suffix(".json").read_bytes()) == before


# ---- 2. one measurement per device ----------------------------------------------------------------------------

def test_a_second_calibration_of_the_same_device_is_refused_naming_the_first(tmp_path, lock_tmp, run_cli):
    """Review: two calibrations of one device ran at once (each skewing the other's time and power); only the run's
    own CSV was locked. The second is refused (exit 2, one line) naming the process and the run it measures."""
    import torch

    first = tmp_path / "first"
    log = tmp_path / "first.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), TMPDIR=str(lock_tmp), WATTLINT_CPU_THREADS="1")
    cmd = [sys.executable, "-m", "wattlint", "calibrate", "--device", "cpu", "--suite", _suite(tmp_path, 60.0),
           "--out", str(first), "--limit", "1", "--no-progress"]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=f)
    threads = torch.get_num_threads()
    try:
        deadline = time.time() + 180
        while time.time() < deadline and "measuring 1 of" not in log.read_text() and proc.poll() is None:
            time.sleep(0.1)
        assert "measuring 1 of" in log.read_text(), log.read_text()
        (csv_path,) = first.glob("*.csv")
        code, out, err = run_cli("calibrate", "--device", "cpu", "--suite", _suite(tmp_path), "--part", "2/2",
                                 "--out", tmp_path / "second", "--limit", "1", "--no-progress")
        assert code == 2 and out == "", err
        assert err.count("\n") == 1 and "device cpu: another measurement is running on it now (pid " \
               f"{proc.pid}, wattlint calibrate into {csv_path.resolve()}" in err, err
        assert not (tmp_path / "second").exists()
    finally:
        torch.set_num_threads(threads)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


# ---- 3 and 4. validate measure ends on SIGTERM; compare names what was not measured ---------------------------

@pytest.fixture(scope="module")
def terminated_measure(tmp_path_factory, lock_tmp):
    """`validate measure` of two configurations (the second with a long window), SIGTERM once the first is measured:
    (exit code, stderr, measurements file, predictions file)."""
    d = tmp_path_factory.mktemp("term")
    cpu, _, _ = V.load_list(None, "cpu")
    base = next(c for c in cpu if c["name"] == "mlp-mnist-b128")
    configs = []
    for name, window in (("mlp-a", 0.4), ("mlp-b", 600.0)):
        configs.append({**base, "name": name, "window_s": window, "warmup_s": 0.0, "predictions": {
            "prior": {"time_s": 0.02, "gpu_energy_j": 0.4, "avg_gpu_power_w": 22.0}}})
    pred = d / "pred.json"
    pred.write_text(json.dumps({"schema": V.PRED_SCHEMA, "device": "cpu", "gpu": "cpu-test", "cpu_threads": 1,
                                "configs": configs}))
    meas = d / "meas.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), TMPDIR=str(lock_tmp))
    proc = subprocess.Popen([sys.executable, "-m", "wattlint", "validate", "measure", "--predictions", str(pred),
                             "--device", "cpu", "--out", str(meas)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stderr:  # the first configuration's result, then the second is being measured
            lines.append(line)
            if line.startswith("measuring mlp-b"):
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=120)[1]
    return proc.returncode, "".join(lines) + rest, meas, pred


def test_validate_measure_ends_on_sigterm_marked_interrupted_and_says_so(terminated_measure):
    """Review: SIGTERM killed `validate measure` with exit 143, no word, and a measurements file with no status."""
    code, err, meas, _ = terminated_measure
    assert code == 143, err
    doc = json.loads(meas.read_text())
    assert doc["status"] == "interrupted" and [r["name"] for r in doc["results"]] == ["mlp-a"]
    assert doc["not_measured"] == ["mlp-b"]
    assert f"wattlint: validate measure terminated (SIGTERM): 1 of 2 configurations measured, saved in {meas} " \
           "(status interrupted); not measured: mlp-b" in err, err


def test_validate_measure_on_a_cpu_says_the_power_is_modelled_not_zero_steps(terminated_measure):
    """Review: on a CPU the result line read '(3 + 0 steps)': the power is the stated model, no step runs under a
    meter (the time is measured over the timed steps); the line says so."""
    _, err, meas, _ = terminated_measure
    (r,) = json.loads(meas.read_text())["results"]
    assert r["power_source"] == "modelled" and r["timing_steps"] >= 3
    assert "mlp-a: " in err and f"({r['timing_steps']} timed steps; power modelled, not measured)" in err, err
    assert "+ 0 steps" not in err


def test_compare_names_the_configurations_not_measured_and_an_unfinished_file(tmp_path, run_cli):
    """Review: after a killed `validate measure` (1 of 8 measured) compare reported MAPE over n=1 as if complete. The
    document lists the predicted configurations not measured and the unfinished file; stderr says so."""
    pred = {"schema": V.PRED_SCHEMA, "gpu": "h100-sxm5-80gb", "configs": [
        {"name": n, "source": "s", "precision": "bf16", "inputs": [], "predictions": {
            "prior": {"time_s": 1.0, "gpu_energy_j": 100.0, "avg_gpu_power_w": 100.0}}} for n in ("a", "b", "c")]}
    p = tmp_path / "p.json"
    p.write_text(json.dumps(pred))
    m = {"schema": V.MEAS_SCHEMA, "predictions_file": "p.json", "predictions_sha256": V.sha256_bytes(p.read_bytes()),
         "gpu": "h100-sxm5-80gb", "device": {"kind": "cuda"}, "meter": {"name": "nvml"},  # no status: killed
         "results": [{"name": "a", "status": "ok", "time_per_step_s": 1.0, "energy_per_step_j": 100.0,
                      "avg_power_w": 100.0, "timing_steps": 5, "power_steps": 5, "power_source": "counter"}]}
    mp = tmp_path / "m.json"
    mp.write_text(json.dumps(m))
    code, out, err = run_cli("validate", "compare", "--measurements", mp, "--out", tmp_path / "v.json")
    assert code == 0, err
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["not_measured"] == ["b", "c"] and doc["predicted"] == 3
    assert doc["incomplete_measurements"] == [{"file": "m.json", "status": "none (the measuring process was killed "
                                                                           "before it finished)"}]
    assert "wattlint: note: 2 of 3 predicted configurations were not measured (b, c): the summary covers the 1 " \
           "measured ok only; measurement not finished: m.json" in err, err
    m["status"], m["results"] = "complete", m["results"] + [dict(m["results"][0], name=n) for n in ("b", "c")]
    mp.write_text(json.dumps(m))
    code, _, err = run_cli("validate", "compare", "--measurements", mp, "--out", tmp_path / "v.json")
    assert code == 0 and "note:" not in err, err
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["not_measured"] == [] and doc["incomplete_measurements"] == []
