"""Damaged or odd inputs of the calibration tools (fit, validate compare, calibrate's environment, a fitted model)
end in one line on stderr and exit 2: never exit 3, an abort, a hang or a memory blow-up."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wattlint.calibrate import validate as V

ROOT = Path(__file__).resolve().parents[1]
H200_MODEL = ROOT / "src" / "wattlint" / "models" / "h200-sxm-141gb"


def _limit_memory():  # a reader of /dev/zero ends in MemoryError at 2 GB, not after filling the machine
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def _wattlint(cwd, *argv, env=None, timeout=60):
    """Run the CLI in a child process (a hang is a TimeoutExpired, an abort a negative return code)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **(env or {}))
    return subprocess.run([sys.executable, "-m", "wattlint", *map(str, argv)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, preexec_fn=_limit_memory)


def _one_error(p) -> str:
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("wattlint: error: "), p.stderr[-2000:]
    return lines[0]


# ---- 1: fit reads no device, pipe or huge file of a runs folder ------------------------------------------------

@pytest.mark.parametrize("kind", ["devzero", "fifo", "huge"])
def test_fit_folder_never_reads_a_file_that_is_no_run(tmp_path, kind):
    d = tmp_path / "runs"
    d.mkdir()
    f = d / "x.json"
    if kind == "devzero":
        f.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(f)
    else:
        with open(f, "wb") as fh:  # sparse: 3 GiB that take no disk
            fh.truncate(3 << 30)
    err = _one_error(_wattlint(tmp_path, "fit", d, timeout=90))
    assert "x.json" in err and ("not a regular file" in err or "MiB at most" in err), err


def test_fit_refuses_a_run_whose_csv_is_a_pipe(tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    (d / "r.json").write_text(json.dumps({"schema": "wattlint.calibration-run/1", "spec": None}))
    os.mkfifo(d / "r.csv")
    err = _one_error(_wattlint(tmp_path, "fit", d))
    assert "r.csv" in err and "named pipe" in err, err


# ---- 2: validate compare on damaged predictions / measurements ---------------------------------------------------

def _pair(tmp_path, value=None, rf=(0.5, 2.0), meas_time=0.1, predictions_file="p.json"):
    v = {"time_s": 0.11, "gpu_energy_j": 33.0, "avg_gpu_power_w": 300.0}
    v.update(value or {})
    if rf is not None:
        v["energy_range_factors"] = list(rf) if isinstance(rf, tuple) else rf
    pred = {"schema": V.PRED_SCHEMA, "gpu": "h200-sxm-141gb", "configs": [
        {"name": "a", "source": "s", "precision": "bf16", "inputs": [], "predictions": {"prior": v}}]}
    raw = json.dumps(pred).encode()
    (tmp_path / "p.json").write_bytes(raw)
    meas = (f'{{"schema": "{V.MEAS_SCHEMA}", "predictions_file": {json.dumps(predictions_file)}, '
            f'"predictions_sha256": "{hashlib.sha256(raw).hexdigest()}", "status": "complete", '
            f'"gpu": "h200-sxm-141gb", "results": [{{"name": "a", "status": "ok", "time_per_step_s": {meas_time}, '
            '"energy_per_step_j": 30.0, "avg_power_w": 300.0, "timing_steps": 10, "power_steps": 10, '
            '"power_source": "counter"}]}')
    (tmp_path / "m.json").write_text(meas)
    return tmp_path / "m.json"


@pytest.mark.parametrize("case", [
    {"rf": "ab"}, {"rf": [1]}, {"rf": 5}, {"rf": {}}, {"rf": [float("nan"), 1.0]}, {"rf": [2.0, 1.0]},
    {"meas_time": 10 ** 400}, {"predictions_file": "a\x00b"},
    {"value": {"time_s": float("nan")}}, {"value": {"time_s": float("inf")}}, {"value": {"time_s": -1.0}},
    {"value": {"time_s": 0}}, {"value": {"gpu_energy_j": 10 ** 400}}, {"value": {"avg_gpu_power_w": float("nan")}},
    {"value": {"time_s": 1e308}}, {"meas_time": 1e-320},
], ids=lambda c: json.dumps(c)[:40])
def test_compare_refuses_damaged_values_in_one_line(tmp_path, run_cli, case):
    m = _pair(tmp_path, **case)
    code, out, err = run_cli("validate", "compare", "--measurements", m)
    assert code == 2 and err.count("\n") == 1 and err.startswith("wattlint: error: "), (code, err)
    assert not list(tmp_path.glob("*-validation.json"))  # nothing written (it held bare NaN / Infinity)


def test_compare_of_sound_files_still_writes_strict_json(tmp_path, run_cli):
    m = _pair(tmp_path)
    code, out, err = run_cli("validate", "compare", "--measurements", m)
    assert code == 0, err
    (doc,) = tmp_path.glob("*-validation.json")
    json.loads(doc.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c} in the validation JSON"))


def test_compare_reads_no_pipe_named_as_predictions_file(tmp_path):
    m = _pair(tmp_path, predictions_file="fifo.json")
    os.mkfifo(tmp_path / "fifo.json")
    err = _one_error(_wattlint(tmp_path, "validate", "compare", "--measurements", m))
    assert "named pipe" in err, err


# ---- 3: calibrate's environment variables ---------------------------------------------------------------------

@pytest.mark.parametrize("value", ["abc", "1e9", "-5", "0", "100000000", str((os.cpu_count() or 1) + 1)])
def test_cpu_threads_variable_is_checked(tmp_path, value):
    p = _wattlint(tmp_path, "calibrate", "--device", "cpu", "--suite", "quick", "--limit", "1", "--out", "X",
                  "--no-progress", env={"WATTLINT_CPU_THREADS": value}, timeout=120)
    err = _one_error(p)
    assert "WATTLINT_CPU_THREADS" in err and not (tmp_path / "X").exists(), err


@pytest.mark.parametrize("value", ["abc", "nan", "-1", "1e9"])
def test_fake_sleep_variable_is_checked(tmp_path, value):
    p = _wattlint(tmp_path, "calibrate", "--device", "fake", "--suite", "quick", "--limit", "1", "--out", "Y",
                  "--no-progress", env={"WATTLINT_FAKE_SLEEP_S": value})
    err = _one_error(p)
    assert "WATTLINT_FAKE_SLEEP_S" in err and not (tmp_path / "Y").exists(), err


def test_cpu_threads_from_a_predictions_file_is_checked():
    from wattlint.calibrate.backends import DeviceError, cpu_threads

    for bad in (0, -1, 10 ** 8, "4", 2.0, True):
        with pytest.raises(DeviceError, match="cpu_threads"):
            cpu_threads(bad)
    assert cpu_threads(1) == 1


# ---- 4: a damaged LightGBM text model is refused before LightGBM parses it ------------------------------------

def _damage(text: str, kind: str) -> str:
    lines = text.split("\n")
    t = next(i for i, x in enumerate(lines) if x.startswith("Tree=3"))
    nxt = next(i for i, x in enumerate(lines) if x.startswith("Tree=4"))
    if kind == "truncate_keep_tail":
        return text[: len(text) // 2] + "\n" + text[text.index("end of trees"):]
    if kind == "delete_line":
        return "\n".join(lines[: t + 5] + lines[t + 6:])
    if kind == "duplicate_line":
        return "\n".join(lines[: t + 5] + [lines[t + 5]] + lines[t + 5:])
    if kind == "corrupt_number":  # num_leaves=15 -> 19: same size, arrays too short
        return "\n".join(lines[: t + 1] + [lines[t + 1].replace("=1", "=9", 1)[:-1] + "9"] + lines[t + 2:])
    if kind == "child_out_of_range":  # same byte size, a child beyond the tree
        k = next(i for i in range(t, nxt) if lines[i].startswith("left_child="))
        toks = lines[k].split(" ")
        j = next(j for j in range(1, len(toks)) if len(toks[j]) == 2 and not toks[j].startswith("-"))
        toks[j] = "99"
        return "\n".join(lines[:k] + [" ".join(toks)] + lines[k + 1:])
    if kind == "swap_sections":  # a tree block moved after the next one (sizes differ)
        after = next(i for i, x in enumerate(lines) if x.startswith("Tree=5"))
        return "\n".join(lines[:t] + lines[nxt:after] + lines[t:nxt] + lines[after:])
    if kind == "drop_token":
        k = next(i for i in range(t, nxt) if lines[i].startswith("leaf_value="))
        return "\n".join(lines[:k] + [lines[k].rsplit(" ", 1)[0]] + lines[k + 1:])
    raise AssertionError(kind)


KINDS = ["truncate_keep_tail", "delete_line", "duplicate_line", "corrupt_number", "child_out_of_range",
         "swap_sections", "drop_token"]


@pytest.mark.parametrize("kind", KINDS)
def test_lightgbm_text_check_refuses_damage(tmp_path, kind):
    from wattlint.energy.model import lightgbm_text_problem

    text = (H200_MODEL / "time.txt").read_text()
    assert lightgbm_text_problem(H200_MODEL / "time.txt") is None
    f = tmp_path / "time.txt"
    damaged = _damage(text, kind)
    assert damaged != text
    f.write_text(damaged)
    why = lightgbm_text_problem(f)
    assert why and "not a whole LightGBM text model" in why, why


def test_shipped_models_pass_the_check():
    from wattlint.energy.model import lightgbm_text_problem

    files = sorted((ROOT / "src" / "wattlint" / "models").glob("*/*.txt"))
    files = [f for f in files if f.read_bytes().startswith(b"tree")]
    assert len(files) >= 3
    assert [lightgbm_text_problem(f) for f in files] == [None] * len(files)


@pytest.mark.parametrize("kind", ["delete_line", "corrupt_number"])
def test_a_damaged_model_with_its_sha_updated_is_skipped_not_an_abort(tmp_path, kind):
    """Review: a corrupt time.txt whose sha256 was updated in card.json made LightGBM print '[Fatal] Model format
    error' and abort the process (SIGABRT, exit 134); the model is now unusable, with the reason, as a sha256
    mismatch is."""
    pytest.importorskip("lightgbm")
    md = tmp_path / "md"
    shutil.copytree(H200_MODEL, md / "h200-sxm-141gb")
    t = md / "h200-sxm-141gb" / "time.txt"
    t.write_text(_damage(t.read_text(), kind))
    card_path = md / "h200-sxm-141gb" / "card.json"
    card = json.loads(card_path.read_text())
    card["files"]["time.txt"] = hashlib.sha256(t.read_bytes()).hexdigest()
    card_path.write_text(json.dumps(card))
    p = _wattlint(tmp_path, ROOT / "examples" / "gpt2-tiny.onnx", "--steps", "1", "--gpu", "h200", "--models-dir",
                  md, env={"WATTLINT_MODELS_DIR": "", "XDG_DATA_HOME": str(tmp_path / "xdg")}, timeout=180)
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
    assert "not a whole LightGBM text model" in " ".join(p.stdout.split()), p.stdout[-3000:]
