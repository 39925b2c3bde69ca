"""validate: frozen list, predict -> measure (real CPU training, short window) -> compare; hash checks."""

import json
from pathlib import Path

import pytest

from wattlint.calibrate import validate as V
from wattlint.types import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_frozen_lists():
    gpu, path, sha = V.load_list(None, "gpu")
    assert len(gpu) >= 16 and len(sha) == 64
    assert {c["precision"] for c in gpu} == {"fp32", "tf32", "bf16"}
    names = " ".join(c["source"] for c in gpu)
    for arch in ("resnet50", "convnext_tiny", "vit_b16", "bert_base", "gpt2_small", "llama_1b", "lstm_lm",
                 "mixer_b16", "unet"):
        assert f"zoo:{arch}" in names
    assert all(c["window_s"] >= 20 for c in gpu)
    cpu, _, _ = V.load_list(None, "cpu")
    assert len(cpu) >= 6 and {c["precision"] for c in cpu} == {"fp32"}
    # held out: no validation model is a calibration suite entry (suites hold single ops only)
    from wattlint.calibrate.benchmarks import FAMILIES

    assert not any(c["source"].split(":")[-1] in FAMILIES for c in gpu + cpu)
    with pytest.raises(ConfigError, match="no list"):
        V.load_list(None, "tpu")


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """A 1-sample CPU 'run' provenance: only its measured CPU spec is used by predict."""
    from wattlint.calibrate.backends import GpuSpec, spec_to_dict

    spec = GpuSpec(key="cpu-test", name="test CPU (NOT a GPU)", vendor="cpu", arch="x86_64",
                   peak_tflops={"fp32": 0.05}, memory_gb=8, memory_bw_gbs=15.0, sm_count=1, boost_mhz=0,
                   tdp_w=22.0, idle_w=10.0, tensor_cores=False)
    d = tmp_path_factory.mktemp("cpu")
    p = d / "run.json"
    p.write_text(json.dumps({"schema": "wattlint.calibration-run/1", "device": {"kind": "cpu", "threads": 1},
                             "spec": {"key": spec.key, "source": "measured-cpu", "values": spec_to_dict(spec)}}))
    return p


def test_predict_measure_compare_on_cpu(cpu_run, tmp_path, run_cli):
    pred = tmp_path / "pred.json"
    code, out, err = run_cli("validate", "predict", "--spec-from", cpu_run, "--list", "cpu", "--only",
                             "mlp-mnist-b128", "--out", pred)
    assert code == 0, err
    doc = json.loads(pred.read_text())
    assert doc["schema"] == V.PRED_SCHEMA and doc["device"] == "cpu" and doc["gpu"] == "cpu-test"
    (c,) = doc["configs"]
    assert c["batch_size"] == 128 and set(c["predictions"]) == {"prior", "naive"}
    assert c["predictions"]["prior"]["time_s"] > 0 and c["graph"]["params"] == 784 * 1024 + 1024 * 1024 + 1024 * 10 + 2058
    meas = tmp_path / "meas.json"
    code, out, err = run_cli("validate", "measure", "--predictions", pred, "--device", "cpu", "--out", meas,
                             "--window-scale", "0.1")
    assert code == 0, err
    m = json.loads(meas.read_text())
    assert m["validation_data"] is True and m["predictions_sha256"] == V.sha256_bytes(pred.read_bytes())
    (r,) = m["results"]
    assert r["status"] == "ok" and r["timing_steps"] >= 3 and r["time_per_step_s"] > 0
    assert r["power_source"] == "modelled"
    code, out, err = run_cli("validate", "compare", "--measurements", meas, "--out", tmp_path / "val.json")
    assert code == 0, err
    v = json.loads((tmp_path / "val.json").read_text())
    assert v["schema"] == V.VAL_SCHEMA and v["models"][0]["name"] == "mlp-mnist-b128"
    assert set(v["summary"]) == {"prior", "naive"} and v["summary"]["prior"]["time"]["n"] == 1
    assert "MODELLED" in v["note"]
    assert "time MAPE" in out
    # the printed table says the CPU energy is modelled, above its 'meas J' column (it was only in the file)
    assert "note: CPU: time measured, energy MODELLED" in out
    # predictions edited after measuring are refused
    pred.write_text(pred.read_text().replace('"cpu-test"', '"cpu-edited"'))
    code, out, err = run_cli("validate", "compare", "--measurements", meas)
    assert code == 2 and "sha256" in err


def test_compare_math(tmp_path):
    pred = {"schema": V.PRED_SCHEMA, "configs": [
        {"name": "a", "source": "s", "precision": "bf16", "inputs": [], "predictions": {
            "prior": {"time_s": 1.1, "gpu_energy_j": 90.0, "avg_gpu_power_w": 81.8, "energy_range_factors": [0.5, 2]}}},
        {"name": "b", "source": "s", "precision": "bf16", "inputs": [], "predictions": {
            "prior": {"time_s": 2.0, "gpu_energy_j": 400.0, "avg_gpu_power_w": 200.0}}}]}
    p = tmp_path / "p.json"
    p.write_text(json.dumps(pred))
    meas = {"schema": V.MEAS_SCHEMA, "predictions_file": "p.json", "predictions_sha256": V.sha256_bytes(p.read_bytes()),
            "device": {"kind": "cuda"}, "meter": {"name": "nvml", "energy_source": "counter"}, "results": [
                {"name": "a", "status": "ok", "time_per_step_s": 1.0, "energy_per_step_j": 100.0, "avg_power_w": 100.0,
                 "timing_steps": 10, "power_steps": 10, "power_source": "counter"},
                {"name": "b", "status": "error", "error": "OOM"}]}
    mp = tmp_path / "m.json"
    mp.write_text(json.dumps(meas))
    path, doc = V.compare(str(mp))
    s = doc["summary"]["prior"]
    assert s["time"]["mape"] == pytest.approx(0.1) and s["energy"]["mape"] == pytest.approx(0.1)
    assert s["energy_range_coverage"] == 1.0 and s["time"]["within_15pct"] == 1.0
    assert doc["failed"] == [{"name": "b", "error": "OOM"}]
    assert "a" in V.table(doc)
    # the measured columns say where they come from
    assert V.table(doc).splitlines()[0] == "measured on ? (cuda): time by the clock, energy by nvml (counter)"


def test_measure_refuses_fake_and_wrong_files(tmp_path):
    from wattlint.calibrate.validate import ValidationError

    p = tmp_path / "x.json"
    p.write_text(json.dumps({"schema": "nope"}))
    with pytest.raises(ValidationError):
        V.measure(str(p), "fake")
    with pytest.raises(ValidationError, match="not a predictions file"):
        V.measure(str(p), "cpu")


def test_compare_merges_measurement_parts(tmp_path):
    pred = {"schema": V.PRED_SCHEMA, "configs": [
        {"name": n, "source": "s", "precision": "bf16", "inputs": [], "predictions": {
            "prior": {"time_s": 1.0, "gpu_energy_j": 100.0, "avg_gpu_power_w": 100.0}}} for n in ("a", "b")]}
    p = tmp_path / "p.json"
    p.write_text(json.dumps(pred))
    sha = V.sha256_bytes(p.read_bytes())
    files = []
    for i, (n, t) in enumerate((("a", 1.0), ("b", 2.0))):
        m = {"schema": V.MEAS_SCHEMA, "predictions_file": "p.json", "predictions_sha256": sha, "part": [i + 1, 2],
             "device": {"kind": "cuda"}, "meter": {"name": "nvml"}, "results": [
                 {"name": n, "status": "ok", "time_per_step_s": t, "energy_per_step_j": 100.0 * t,
                  "avg_power_w": 100.0, "timing_steps": 5, "power_steps": 5, "power_source": "counter"}]}
        f = tmp_path / f"m{i}.json"
        f.write_text(json.dumps(m))
        files.append(str(f))
    path, doc = V.compare(files)
    assert [m["name"] for m in doc["models"]] == ["a", "b"]
    assert doc["summary"]["prior"]["time"]["mape"] == pytest.approx(0.25)
    assert len(doc["measurements"]) == 2


def test_existing_predictions_and_measurements_are_never_overwritten(cpu_run, tmp_path, run_cli):
    pred = tmp_path / "pred.json"
    pred.write_text("KEEP")
    code, out, err = run_cli("validate", "predict", "--spec-from", cpu_run, "--list", "cpu", "--only",
                             "mlp-mnist-b128", "--out", pred)
    assert code == 2 and "exists" in err and pred.read_text() == "KEEP"
    pred2 = tmp_path / "pred2.json"
    assert run_cli("validate", "predict", "--spec-from", cpu_run, "--list", "cpu", "--only", "mlp-mnist-b128",
                   "--out", pred2)[0] == 0
    meas = tmp_path / "meas.json"
    meas.write_text("KEEP")  # e.g. part 1 of a campaign
    code, out, err = run_cli("validate", "measure", "--predictions", pred2, "--device", "cpu", "--out", meas,
                             "--window-scale", "0.1")
    assert code == 2 and "exists" in err and meas.read_text() == "KEEP"


def _compare_inputs(tmp_path):
    pred = {"schema": V.PRED_SCHEMA, "configs": [{"name": "a", "source": "s", "precision": "bf16", "inputs": [],
                                                  "predictions": {"prior": {"time_s": 1.0, "gpu_energy_j": 100.0,
                                                                            "avg_gpu_power_w": 100.0}}}]}
    p = tmp_path / "p.json"
    p.write_text(json.dumps(pred))
    m = {"schema": V.MEAS_SCHEMA, "predictions_file": "p.json", "predictions_sha256": V.sha256_bytes(p.read_bytes()),
         "device": {"kind": "cuda"}, "meter": {"name": "nvml"}, "results": [
             {"name": "a", "status": "ok", "time_per_step_s": 1.25, "energy_per_step_j": 100.0, "avg_power_w": 80.0,
              "timing_steps": 5, "power_steps": 5, "power_source": "counter"}]}
    mp = tmp_path / "m.json"
    mp.write_text(json.dumps(m))
    return p, mp


def test_compare_never_overwrites_its_inputs_or_a_foreign_file(tmp_path, run_cli):
    """--out naming the measurements file replaced hours of device measurements with the comparison."""
    p, mp = _compare_inputs(tmp_path)
    before = mp.read_bytes()
    for out in (mp, p):
        code, _, err = run_cli("validate", "compare", "--measurements", mp, "--out", out)
        assert code == 2 and "one of the compared files" in err and len(err.strip().splitlines()) == 1, err
    assert mp.read_bytes() == before
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}\n')
    code, _, err = run_cli("validate", "compare", "--measurements", mp, "--out", notes)
    assert code == 2 and "not a validation document" in err and notes.read_text() == '{"mine": 1}\n'
    val = tmp_path / "v.json"
    assert run_cli("validate", "compare", "--measurements", mp, "--out", val)[0] == 0
    # time error 1.0 / 1.25 - 1 = -20 %; a validation document is replaced by a re-run
    doc = json.loads(val.read_text())
    assert doc["schema"] == V.VAL_SCHEMA and doc["models"][0]["predicted"]["prior"]["time_err"] == pytest.approx(-0.2)
    assert run_cli("validate", "compare", "--measurements", mp, "--out", val)[0] == 0


def test_predictions_file_is_complete_or_absent_when_the_disk_fills(cpu_run, tmp_path):
    """A write cut short (here by RLIMIT_FSIZE, a file-size limit: the write fails with EFBIG like a full disk)
    left a truncated predictions file that then blocked its name ('exists: frozen'); now nothing is left and the
    error is one line, exit 2 (the environment, not a bug)."""
    import subprocess
    import sys

    pred = tmp_path / "pred.json"
    script = ("import resource, signal, sys, runpy; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000)); sys.argv = ['wattlint'] + sys.argv[1:]; "
              "runpy.run_module('wattlint', run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", script, "validate", "predict", "--spec-from", str(cpu_run), "--list",
                        "cpu", "--only", "mlp-mnist-b128", "--out", str(pred)], capture_output=True, text=True,
                       cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")}, timeout=300)
    assert r.returncode == 2 and "cannot write" in r.stderr and "nothing written" in r.stderr, r.stderr
    assert not pred.exists() and not list(tmp_path.glob(".pred.json.*"))


def test_write_new_text_never_replaces_and_falls_back_without_links(tmp_path, monkeypatch):
    import os

    from wattlint import io

    f = tmp_path / "a.json"
    f.write_text("KEEP")
    with pytest.raises(FileExistsError):
        io.write_new_text(f, "new")
    assert f.read_text() == "KEEP" and not list(tmp_path.glob(".a.json.*"))

    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(io.os, "link", no_links)
    g = tmp_path / "b.json"
    io.write_new_text(g, "text\n")
    assert g.read_text() == "text\n" and not list(tmp_path.glob(".b.json.*"))
    with pytest.raises(FileExistsError):
        io.write_new_text(g, "other")
    assert g.read_text() == "text\n" and os.path.exists(g)


def test_compare_refuses_what_would_validate_nothing_or_mix_devices(tmp_path, run_cli):
    """Review: the same measurements twice were listed twice; another device's predictions were compared (CPU
    measurements against an H200's predictions: -98 % / +892 %); measurements with no ok result gave an empty
    'validation'. Each is one line, exit 2. A trailing-slash --out is a folder (it wrote a FILE named 'vdir')."""
    p, mp = _compare_inputs(tmp_path)
    code, _, err = run_cli("validate", "compare", "--measurements", mp, "--measurements", mp)
    assert code == 2 and "given twice" in err, err
    other = json.loads(p.read_text())
    other.update(gpu="h200-sxm-141gb", device="cuda")
    # the measured device's predictions carry no gpu field here: (None, None) differs from the H200's
    op = tmp_path / "h200.json"
    op.write_text(json.dumps(other))
    code, _, err = run_cli("validate", "compare", "--measurements", mp, "--predictions", p, "--predictions", op)
    assert code == 2 and "predictions for h200-sxm-141gb (cuda)" in err and len(err.strip().splitlines()) == 1, err
    m = json.loads(mp.read_text())
    m["results"][0]["status"] = "error"
    m["results"][0]["error"] = "OOM"
    mp.write_text(json.dumps(m))
    code, _, err = run_cli("validate", "compare", "--measurements", mp)
    assert code == 2 and "nothing to compare" in err, err
    (tmp_path / "b").mkdir()
    _, mp2 = _compare_inputs(tmp_path / "b")
    code, out, err = run_cli("validate", "compare", "--measurements", mp2, "--out", f"{tmp_path / 'vdir'}/")
    assert code == 0, err
    (made,) = (tmp_path / "vdir").iterdir()
    assert made.name.endswith("-validation.json")


@pytest.mark.parametrize("key, value", [("time_per_step_s", 0), ("time_per_step_s", -1.0),
                                        ("energy_per_step_j", float("nan")), ("avg_power_w", 0.0)])
def test_compare_refuses_a_measured_value_that_is_not_positive(tmp_path, run_cli, key, value):
    """A zero / negative step time printed '+nan' and '-1000.00 ms' errors, 'coverage 100 %', and wrote bare NaN
    into the validation JSON: one line naming the field, exit 2, nothing written."""
    p, mp = _compare_inputs(tmp_path)
    m = json.loads(mp.read_text())
    m["results"][0][key] = value
    mp.write_text(json.dumps(m))
    code, out, err = run_cli("validate", "compare", "--measurements", mp, "--out", tmp_path / "v.json")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert f"results[0]: field {key!r} = {value!r}: expected a positive finite number" in err
    assert not (tmp_path / "v.json").exists()


def test_compare_names_the_file_the_measurements_were_made_against(tmp_path, run_cli):
    p, mp = _compare_inputs(tmp_path)
    q = tmp_path / "q.json"
    q.write_text(p.read_text().replace("1.0", "1.5"))
    code, _, err = run_cli("validate", "compare", "--measurements", mp, "--predictions", q)
    assert code == 2 and "not the predictions file the measurements were made against (p.json)" in err, err


def test_measure_refuses_an_empty_selection(cpu_run, tmp_path, run_cli):
    pred = tmp_path / "pred.json"
    assert run_cli("validate", "predict", "--spec-from", cpu_run, "--list", "cpu", "--only", "mlp-mnist-b128",
                   "--out", pred)[0] == 0
    code, _, err = run_cli("validate", "measure", "--predictions", pred, "--device", "cpu", "--part", "2/2",
                           "--out", tmp_path / "m.json")
    assert code == 2 and "selected none" in err and not (tmp_path / "m.json").exists(), err


@pytest.mark.parametrize("is_cpu, key, gpu, message", [
    # a CPU method check's model priced an H200 as 'calibrated' (review); fits never cross CPU and GPU
    (True, "cpu-amd-epyc", "h200", "CPU and GPU fits never price each other's device"),
    # a model fitted on the fake test device was accepted and labelled 'transferred' (review), where the estimator
    # refuses the same card
    (False, "fake-gpu", "h100", "fitted on fake-gpu, the deterministic test simulator"),
])
def test_predict_refuses_a_model_that_cannot_price_the_gpu(tmp_path, run_cli, monkeypatch, is_cpu, key, gpu, message):
    from wattlint.energy import model as M

    class Fitted:
        pass

    Fitted.is_cpu, Fitted.gpu_key, Fitted.source = is_cpu, key, "a fit"
    monkeypatch.setattr(M, "load_model", lambda path: Fitted())
    code, _, err = run_cli("validate", "predict", "--gpu", gpu, "--list", "cpu", "--only", "mlp-mnist-b128",
                           "--model", tmp_path, "--out", tmp_path / "p.json")
    assert code == 2 and message in err, err
    assert not (tmp_path / "p.json").exists()


def test_predict_with_every_configuration_failing_writes_nothing_and_exits_2(tmp_path, run_cli):
    """Review: every configuration failing printed '0 predictions', exited 0 and wrote a frozen file with none."""
    code, out, err = run_cli("validate", "predict", "--gpu", "v100", "--only", "resnet50-b128-bf16",
                             "--out", tmp_path / "p.json")
    assert code == 2 and "no configuration could be predicted (1 tried; resnet50-b128-bf16:" in err, err
    assert "no bf16 tensor cores" in err and not (tmp_path / "p.json").exists()


def test_predict_text_names_the_variant_shown(cpu_run, tmp_path, run_cli):
    code, out, _ = run_cli("validate", "predict", "--spec-from", cpu_run, "--list", "cpu", "--only", "mlp-mnist-b128",
                           "--out", tmp_path / "p.json")
    doc = json.loads((tmp_path / "p.json").read_text())
    shown = doc["configs"][0]["predictions"].get("calibrated") or doc["configs"][0]["predictions"]["prior"]
    assert code == 0 and "shown: the calibrated variant where there is one, else the uncalibrated one" in out
    assert f"J/step  [{shown['calibration']}]" in out


def _campaign(tmp_path, parts, *, gpu=None):
    """A predictions file for configs a, b and one measurements file per (part, names) of ``parts``."""
    pred = {"schema": V.PRED_SCHEMA, "configs": [
        {"name": n, "source": "s", "precision": "bf16", "inputs": [], "predictions": {
            "prior": {"time_s": 1.0, "gpu_energy_j": 100.0, "avg_gpu_power_w": 100.0}}} for n in ("a", "b")]}
    pred["gpu"] = "a100-sxm4-80gb"
    p = tmp_path / "p.json"
    p.write_text(json.dumps(pred))
    files = []
    for i, (part, names) in enumerate(parts):
        m = {"schema": V.MEAS_SCHEMA, "predictions_file": "p.json", "predictions_sha256": V.sha256_bytes(p.read_bytes()),
             "part": part, "gpu": gpu or pred["gpu"], "device": {"kind": "cuda"}, "meter": {"name": "nvml"},
             "results": [{"name": n, "status": "ok", "time_per_step_s": 1.0 + i, "energy_per_step_j": 100.0,
                          "avg_power_w": 100.0, "timing_steps": 5, "power_steps": 5, "power_source": "counter"}
                         for n in names]}
        f = tmp_path / f"m{i}.json"
        f.write_text(json.dumps(m))
        files.append(str(f))
    return p, files


def test_compare_refuses_a_configuration_measured_twice_a_part_given_twice_or_another_gpu(tmp_path):
    """Review: two measurement files holding the same configuration were merged with the last one winning (no word),
    two files of the same part were merged, and an H100's measurements were compared with an A100's predictions."""
    _, files = _campaign(tmp_path, [([1, 2], ["a", "b"]), ([2, 2], ["a"])])
    with pytest.raises(V.ValidationError, match="measured more than once across the measurement files: a"):
        V.compare(files)
    _, files = _campaign(tmp_path, [([1, 2], ["a"]), ([1, 2], ["b"])])
    with pytest.raises(V.ValidationError, match="part 1/2"):
        V.compare(files)
    _, files = _campaign(tmp_path, [([1, 3], []), ([2, 3], ["a"]), ([2, 3], ["b"])])
    with pytest.raises(V.ValidationError, match="part 2/3"):  # the part given twice, not the first one
        V.compare(files)
    _, files = _campaign(tmp_path, [([1, 1], ["a", "b"])], gpu="h100-sxm5-80gb")
    with pytest.raises(V.ValidationError, match="of h100-sxm5-80gb, the predictions for a100-sxm4-80gb"):
        V.compare(files)


def test_a_second_predictions_file_keeps_its_own_prior(tmp_path):
    """Review: `validate compare` dropped the prior of every predictions file after the first ("the same prior
    twice"), so a post-fix predictions file's prior (the README's 19.7 / 16.9 % on the H200) could not be shown.
    A later file's prior is its own row when it differs; an identical one is still shown once."""
    p, files = _campaign(tmp_path, [([1, 1], ["a", "b"])])
    later = json.loads(p.read_text())
    for c in later["configs"]:
        c["predictions"]["prior"]["time_s"] = 0.5
    p2 = tmp_path / "p2.json"
    p2.write_text(json.dumps(later))
    _, doc = V.compare(files, [str(p), str(p2)])
    assert doc["summary"]["prior"]["time"]["mape"] == pytest.approx(0.0)
    assert doc["summary"]["prior@p2.json"]["time"]["mape"] == pytest.approx(0.5)
    same = tmp_path / "p3.json"
    same.write_text(p.read_text())
    _, doc = V.compare(files, [str(p), str(same)])
    assert "prior@p3.json" not in doc["summary"]
