"""Killing a tracked process (SIGKILL, no chance to clean up) at any point leaves a valid record of the steps so
far: every line parses and validates, windows are contiguous, and the record can be analysed and compared."""

import json
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from wattlint.cli import main
from wattlint.tracking.project import analyze
from wattlint.tracking.record import read_record

SRC = str(Path(__file__).resolve().parents[1] / "src")
PROGRAM = r"""
import sys, time
import wattlint
import wattlint.tracking
with wattlint.track(device="cpu", steps=100000, out=sys.argv[1], display="quiet", window_s=0.03,
                    settings=wattlint.tracking.Settings(min_steps=5, min_stable_s=0.05, max_rel_ci=0.5)) as t:
    for i in range(100000):
        x = sum(range(2000))  # a little CPU work per step
        time.sleep(0.002)
        t.step()
"""


@pytest.mark.parametrize("min_lines", [1, 3, 12])
def test_sigkill_leaves_a_valid_record(tmp_path, min_lines):
    out = tmp_path / "run.jsonl"
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM, str(out)], env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if out.exists() and out.read_bytes().count(b"\n") >= min_lines:
                break
            if proc.poll() is not None:
                pytest.fail(f"the tracked program exited early with {proc.returncode}")
            time.sleep(0.005)
        else:
            pytest.fail("the record did not grow")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    rec = read_record(out)
    assert rec.summary is None and "incomplete" in rec.status
    schema = json.loads(resources.files("wattlint").joinpath("schemas", "run.schema.json").read_text())
    v = jsonschema.Draft202012Validator(schema)
    for line in out.read_text().splitlines()[: -1 if rec.torn_tail else None]:
        v.validate(json.loads(line))
    data = rec.run_data()  # contiguity of windows is checked here
    assert len(data.step_times) == sum(len(w["step_times_s"]) for w in rec.windows)
    a = analyze(data)
    assert a["steps"] == len(data.step_times)
    assert main(["compare-run", str(out)]) == 0


CRASH = r"""
import sys
import wattlint
t = wattlint.track(device="cpu", steps=1000, out=sys.argv[1], display="quiet", window_s=0.01)
t.start()  # as a framework callback does (the Hugging Face Trainer has no exception hook): no with-block
for i in range(20):
    t.step()
if sys.argv[2] == "raise":
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
"""


@pytest.mark.parametrize("how, status", [("raise", "error: RuntimeError: CUDA out of memory. Tried to allocate "
                                                   "2.00 GiB"),
                                         ("return", "interrupted (interpreter exit without close)")])
def test_open_record_at_interpreter_exit_names_the_uncaught_exception(tmp_path, how, status):
    out = tmp_path / "run.jsonl"
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", CRASH, str(out), how], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == (1 if how == "raise" else 0), proc.stderr
    rec = read_record(out)
    assert rec.summary is not None and rec.summary["status"] == status
