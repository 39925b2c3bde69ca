"""Bad inputs of fit / validate / gpus / calibrate: one line on stderr, exit 2, never a hang nor a traceback.

A named pipe given to ``wattlint fit`` was opened to read its first line (a hang); damaged fields of a measurements or
predictions file were accepted (a negative step count, part [0, 0], a status or meter name that is no string); an
empty --models-dir / --out / --resume / --only was taken as not given; $WATTLINT_MODELS_DIR that is no folder was
searched silently by ``gpus`` while ``estimate`` refused it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _wattlint(cwd, *argv, env=None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m wattlint ARGV`` in ``cwd``: a hang fails the test (TimeoutExpired) instead of hanging it."""
    return subprocess.run([sys.executable, "-m", "wattlint", *map(str, argv)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env=None if env is None else {**os.environ, **env})


def _one_line(p) -> str:
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.startswith("wattlint: error:") and p.stderr.count("\n") == 1, p.stderr
    assert "Traceback" not in p.stderr
    return p.stderr


# ---- 1: fit never opens a named pipe ------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes (POSIX)")
@pytest.mark.parametrize("name", ["pipe.json", "pipe.jsonl", "pipe.csv"])
def test_fit_refuses_a_named_pipe_without_opening_it(tmp_path, name):
    os.mkfifo(tmp_path / name)
    err = _one_line(_wattlint(tmp_path, "fit", name, timeout=30))
    assert f"{name}: is a named pipe, not a file" in err, err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes (POSIX)")
def test_record_schema_never_opens_a_named_pipe(tmp_path):
    import threading

    from wattlint.tracking.record import record_schema
    from wattlint.types import InputError

    os.mkfifo(tmp_path / "p.jsonl")
    out: list = []

    def probe():
        try:
            out.append(record_schema(tmp_path / "p.jsonl"))
        except InputError as e:
            out.append(e)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # unblock the reader so that the thread ends
        fd = os.open(tmp_path / "p.jsonl", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(5)
        pytest.fail("record_schema opened the named pipe (it blocked)")
    assert isinstance(out[0], InputError) and "named pipe" in str(out[0]), out


# ---- 2: validate compare checks the types and ranges of every field it reads --------------------------------------

def _files(tmp_path, edit_meas=None, edit_pred=None):
    from wattlint.calibrate import validate as V

    pred = {"schema": V.PRED_SCHEMA, "gpu": "a100-sxm4-80gb", "device": "cuda", "configs": [
        {"name": "a", "source": "s", "precision": "bf16", "inputs": [],
         "predictions": {"prior": {"time_s": 1.0, "gpu_energy_j": 100.0, "avg_gpu_power_w": 100.0}}}]}
    if edit_pred:
        edit_pred(pred)
    p = tmp_path / "p.json"
    p.write_text(json.dumps(pred))
    m = {"schema": V.MEAS_SCHEMA, "predictions_file": "p.json", "predictions_sha256": V.sha256_bytes(p.read_bytes()),
         "part": [1, 1], "gpu": "a100-sxm4-80gb", "device": {"kind": "cuda"}, "status": "complete",
         "meter": {"name": "nvml", "energy_source": "counter"}, "results": [
             {"name": "a", "status": "ok", "time_per_step_s": 1.0, "energy_per_step_j": 100.0, "avg_power_w": 100.0,
              "timing_steps": 5, "power_steps": 5, "power_source": "counter"}]}
    if edit_meas:
        edit_meas(m)
    mp = tmp_path / "m.json"
    mp.write_text(json.dumps(m))
    return mp


def test_compare_accepts_the_untouched_files(tmp_path, run_cli):
    mp = _files(tmp_path)
    code, _, err = run_cli("validate", "compare", "--measurements", mp, "--out", tmp_path / "v.json")
    assert code == 0, err


@pytest.mark.parametrize("edit, says", [
    (lambda m: m["results"][0].update(timing_steps=-5), "field 'timing_steps' = -5: expected a whole number >= 1"),
    (lambda m: m["results"][0].update(timing_steps=0), "field 'timing_steps' = 0: expected a whole number >= 1"),
    (lambda m: m["results"][0].update(power_steps=-1), "field 'power_steps' = -1: expected a whole number >= 0"),
    (lambda m: m.update(part=[0, 0]), "field 'part' = [0, 0]: expected [K, N] with 1 <= K <= N"),
    (lambda m: m.update(part=[3, 2]), "field 'part' = [3, 2]: expected [K, N] with 1 <= K <= N"),
    (lambda m: m.update(status=[1]), "field 'status' = [1]: expected a string"),
    (lambda m: m["results"][0].update(status=[1]), "field 'status' = [1]: expected a string"),
    (lambda m: m["meter"].update(name={"x": 1}), "field 'meter.name' = {\"x\": 1}: expected a string"),
    (lambda m: m["meter"].update(energy_source=[2]), "field 'meter.energy_source' = [2]: expected a string"),
    (lambda m: m.update(gpu={"key": "a100"}), "field 'gpu' = {\"key\": \"a100\"}: expected a string"),
])
def test_compare_refuses_a_damaged_measurements_field(tmp_path, run_cli, edit, says):
    mp = _files(tmp_path, edit_meas=edit)
    code, out, err = run_cli("validate", "compare", "--measurements", mp, "--out", tmp_path / "v.json")
    assert code == 2 and err.startswith(f"wattlint: error: {mp}") and says in err and err.count("\n") == 1, err
    assert not (tmp_path / "v.json").exists()


@pytest.mark.parametrize("key, value", [("gpu", {"key": "a100"}), ("device", ["cuda"])])
def test_compare_refuses_a_damaged_predictions_field(tmp_path, run_cli, key, value):
    mp = _files(tmp_path, edit_pred=lambda p: p.update({key: value}))
    code, out, err = run_cli("validate", "compare", "--measurements", mp, "--out", tmp_path / "v.json")
    assert code == 2 and f"field {key!r} = {json.dumps(value)}: expected a string" in err, err
    assert err.count("\n") == 1 and not (tmp_path / "v.json").exists()


# ---- 3: an empty path or name is refused, never taken as "not given" ----------------------------------------------

@pytest.mark.parametrize("argv, says", [
    (("gpus", "--models-dir", "", "h100"), "--models-dir '' names no folder"),
    (("gpus", "--models-dir", ""), "--models-dir '' names no folder"),
    (("calibrate", "--device", "fake", "--out", ""), "--out '' names no folder"),
    (("calibrate", "--device", "fake", "--resume", ""), "--resume '' names no run"),
    (("validate", "predict", "--gpu", "h100", "--only", ""), "--only '' names no configuration"),
    (("validate", "measure", "--predictions", "p.json", "--device", "cpu", "--only", " , "),
     "--only ' , ' names no configuration"),
])
def test_an_empty_argument_is_refused(tmp_path, argv, says):
    err = _one_line(_wattlint(tmp_path, *argv, timeout=120))
    assert says in err, err
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())  # nothing was measured nor written


@pytest.mark.parametrize("argv", [("gpus", "h100"), ("gpus",)])
def test_gpus_refuses_a_models_dir_env_that_is_no_folder_as_estimate_does(tmp_path, argv):
    missing = tmp_path / "missing"
    err = _one_line(_wattlint(tmp_path, *argv, env={"WATTLINT_MODELS_DIR": str(missing)}))
    assert f"WATTLINT_MODELS_DIR {missing}: not a folder" in err, err
