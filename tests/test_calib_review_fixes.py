"""Review of the calibration pipeline: damaged runs and provenance are input errors (exit 2) naming the file and field,
never a silent drop or an internal error; suite typos are refused; the NVML meter never reads another GPU; resuming
respects the source run's lock, its suite file and --gpu; the log says what is subtracted; no cross-vendor --model."""

import csv
import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from _fake_nvml import base_module

from wattlint.calibrate import benchmarks
from wattlint.calibrate.fitting import find_runs, load_fit_data
from wattlint.calibrate.meters import MeterError, NvmlMeter
from wattlint.calibrate.runner import Reporter, RunConfig, RunError, read_rows, run_calibration
from wattlint.calibrate.suites import load_suite, parse_suite
from wattlint.types import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "data" / "calib-tiny.toml")


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    return run_calibration(RunConfig(device="fake", suite=TINY, out=str(tmp_path_factory.mktemp("run"))))


def _copy_run(run, d: Path, stem: str | None = None, edit=None):
    """The run's CSV and JSON in folder ``d`` (under ``stem``), the JSON edited by ``edit(doc)``."""
    d.mkdir(parents=True, exist_ok=True)
    stem = stem or run.csv.stem
    shutil.copy(run.csv, d / f"{stem}.csv")
    doc = json.loads(run.json.read_text())
    if edit:
        edit(doc)
    (d / f"{stem}.json").write_text(json.dumps(doc))
    return d / f"{stem}.csv"


# ---- A: a damaged run beside readable ones ----------------------------------------------------------------------

def test_fit_refuses_a_folder_where_one_run_cannot_be_read(fake_run, tmp_path, run_cli):
    """Review: a folder with one readable run and one whose JSON was truncated fitted the readable one (exit 0) and
    said nothing of the other; 'never silently' (docs/CALIBRATION.md) makes it an error naming the file."""
    d = tmp_path / "runs"
    _copy_run(fake_run, d)
    _copy_run(fake_run, d, "20990101T000000Z-tiny")
    bad = d / "20990101T000000Z-tiny.json"
    bad.write_bytes(bad.read_bytes()[:-2])  # truncated: not JSON
    code, out, err = run_cli("fit", d, "--out", tmp_path / "m", "--folds", "2")
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and "20990101T000000Z-tiny.json (JSONDecodeError" in err, err
    assert not (tmp_path / "m").exists()


# ---- B: suite typos ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family, shape, says", [
    ("gemm", {"m": 64, "n": 64, "k": 64, "bais": 1}, "unknown shape parameter 'bais' (accepted: m, n, k, b, bias)"),
    ("attention", {"b": 2, "h": 4, "s": 128, "d": 64, "casual": 1},
     "unknown shape parameter 'casual' (accepted: b, h, s, d, causal)"),
    ("conv", {"n": 2, "c": 8, "h": 16, "w": 16, "cout": 8, "k": 3, "strid": 2},
     "unknown shape parameter 'strid' (accepted: n, c, h, w, cout, k, stride, pad, groups)"),
    ("reduction", {"rows": 64, "cols": 64, "op": "max"}, "op = 'max' is not one of sum, mean"),
    ("pool", {"n": 2, "c": 8, "h": 16, "k": 2, "kind": "mean"}, "kind = 'mean' is not one of max, avg"),
    ("norm", {"rows": 64, "cols": 64, "kind": "rsm"}, "kind = 'rsm' is not one of layer, rms, batch"),
    ("optimizer", {"name": "sgdd", "numel": 1000}, "name = 'sgdd' is not one of adamw, adam, sgd"),
    ("memory", {"op": "cpy", "numel": 1000}, "op = 'cpy' is not one of copy, transpose, cat"),
    ("elementwise", {"op": "gleu", "numel": 1000},
     "op = 'gleu' is not one of add, mul, relu, gelu, silu, sigmoid, tanh"),
])
def test_a_suite_typo_is_refused_naming_family_key_and_accepted_ones(family, shape, says):
    """Review: each of these was planned and measured as the family's default (no bias, not causal, stride 1, a sum,
    max pooling, AdamW / SGD, a copy) or failed only on the device."""
    with pytest.raises(ConfigError, match=r"group 1: family '" + family + "': " + __import__("re").escape(says)):
        parse_suite({"group": [{"family": family, "shapes": [shape]}]})
    # in a 'fixed' table too
    with pytest.raises(ConfigError, match=__import__("re").escape(says)):
        parse_suite({"group": [{"family": family, "shapes": [{}], "fixed": shape}]})


def test_a_suite_typo_is_one_line_exit_2(tmp_path, run_cli):
    p = tmp_path / "typo.toml"
    p.write_text('[[group]]\nfamily = "gemm"\nshapes = [{m = 64, n = 64, k = 64, bais = 1}]\n')
    code, out, err = run_cli("calibrate", "--plan", "--suite", p)
    assert code == 2 and out == "" and err == (
        f"wattlint: error: {p.resolve()}: group 1: family 'gemm': unknown shape parameter 'bais' (accepted: m, n, k, "
        "b, bias)\n")


def test_the_optimizer_group_takes_its_own_phase():
    """phases = ["optimizer"] was refused ("one of forward, backward") though optimizer samples are that phase."""
    s = parse_suite({"group": [{"family": "optimizer", "phases": ["optimizer"],
                                "shapes": [{"name": "sgd", "numel": 1000, "momentum": 0}]}]})
    assert [(x.family, x.phase) for x in s.samples] == [("optimizer", "optimizer")]
    with pytest.raises(ConfigError, match=r"group 1 \(optimizer\): 'phases': unknown 'forward' \(one of optimizer\)"):
        parse_suite({"group": [{"family": "optimizer", "phases": ["forward"], "shapes": [{"name": "sgd",
                                                                                          "numel": 1000}]}]})


# ---- B (fit side) and G: damaged CSV rows -----------------------------------------------------------------------

def test_damaged_rows_with_a_zero_divisor_or_an_unknown_name_are_dropped_and_counted(fake_run, tmp_path):
    """Review: conv groups 0, memory transpose rows 0 and optimizer tensors 0 crashed fit (ZeroDivisionError, exit 3);
    a reduction 'max' row was fitted as a sum. Each is dropped and counted like other damaged rows."""
    rows = list(csv.DictReader(fake_run.csv.open(newline="")))
    gemm_fwd = [r for r in rows if r["family"] == "gemm" and r["phase"] == "forward"]
    conv = next(r for r in rows if r["family"] == "conv")
    conv["params"] = json.dumps({**json.loads(conv["params"]), "groups": 0})
    gemm_fwd[0].update(family="memory", params='{"numel":1024,"op":"transpose","rows":0}')
    gemm_fwd[1].update(family="optimizer", phase="optimizer", params='{"name":"adamw","numel":1000,"tensors":0}')
    gemm_fwd[2].update(family="reduction", params='{"cols":64,"op":"max","rows":64}')
    d = tmp_path / "dmg"
    d.mkdir()
    with (d / fake_run.csv.name).open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    shutil.copy(fake_run.json, d / fake_run.json.name)
    _data, _spec, meta = load_fit_data(find_runs([str(d)]))
    assert meta["skipped_rows"] == {"unknown sample (ZeroDivisionError)": 3, "unknown sample (BenchmarkError)": 1}


# ---- F: damaged provenance --------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["device", "meter", "suite"])
def test_fit_names_a_provenance_field_of_the_wrong_type(fake_run, tmp_path, run_cli, key):
    """Review: "device": null (or meter, suite) ended fit with AttributeError (exit 3)."""
    run = _copy_run(fake_run, tmp_path / "r", edit=lambda doc: doc.update({key: None}))
    code, _, err = run_cli("fit", run.parent, "--out", tmp_path / "m")
    assert code == 2 and err == f"wattlint: error: {run.with_suffix('.json')}: '{key}' = null: expected an object\n"


@pytest.mark.parametrize("sessions", [None, {}])
def test_resume_names_damaged_sessions_and_touches_nothing(fake_run, tmp_path, sessions):
    """Review: "sessions": null or {} ended --resume with AttributeError (exit 3)."""
    run = _copy_run(fake_run, tmp_path / "r", edit=lambda doc: doc.update(sessions=sessions, status="partial"))
    before = (run.read_bytes(), run.with_suffix(".json").read_bytes())
    with pytest.raises(RunError, match=r"\.json: 'sessions' must be a list of objects"):
        run_calibration(RunConfig(device="fake", resume=str(run)))
    assert (run.read_bytes(), run.with_suffix(".json").read_bytes()) == before


@pytest.mark.parametrize("key, value, says", [("part", 2, "field 'part' = 2: expected [K, N]"),
                                              ("part", [1, "2"], "field 'part' = [1, \"2\"]: expected [K, N]"),
                                              ("meter", None, "field 'meter' = null: expected an object"),
                                              ("device", "cuda", "field 'device' = \"cuda\": expected an object")])
def test_compare_names_a_measurements_field_of_the_wrong_type(tmp_path, run_cli, key, value, says):
    """Review: "part": 2 ended compare with TypeError, "meter": null with AttributeError (exit 3)."""
    from wattlint.calibrate import validate as V

    p = tmp_path / "p.json"
    p.write_text(json.dumps({"schema": V.PRED_SCHEMA, "configs": [
        {"name": "a", "source": "s", "precision": "bf16", "inputs": [],
         "predictions": {"prior": {"time_s": 1.0, "gpu_energy_j": 100.0, "avg_gpu_power_w": 100.0}}}]}))
    m = {"schema": V.MEAS_SCHEMA, "predictions_file": "p.json", "predictions_sha256": V.sha256_bytes(p.read_bytes()),
         "part": [1, 1], "device": {"kind": "cuda"}, "meter": {"name": "nvml"}, "results": [
             {"name": "a", "status": "ok", "time_per_step_s": 1.0, "energy_per_step_j": 100.0, "avg_power_w": 100.0,
              "timing_steps": 5, "power_steps": 5, "power_source": "counter"}]}
    mp = tmp_path / "m.json"
    mp.write_text(json.dumps(m))
    assert run_cli("validate", "compare", "--measurements", mp, "--out", tmp_path / "ok.json")[0] == 0
    m[key] = value
    mp.write_text(json.dumps(m))
    code, out, err = run_cli("validate", "compare", "--measurements", mp, "--out", tmp_path / "v.json")
    assert code == 2 and err == f"wattlint: error: {mp}: {says}\n", err
    assert not (tmp_path / "v.json").exists()


# ---- C: the NVML meter never reads another GPU ------------------------------------------------------------------

def _two_gpus(by_uuid_takes=None):
    """A pynvml with GPU-aaaa at index 0 and GPU-bbbb at index 1; lookup by UUID raises unless ``by_uuid_takes`` is
    the type (str / bytes) it accepts."""
    m = base_module("the meter changed a device setting")
    uuids = ["GPU-aaaa", "GPU-bbbb"]
    m.nvmlInit = lambda: None
    m.nvmlDeviceGetHandleByIndex = lambda i: ("h", i)

    def by_uuid(u):
        if by_uuid_takes is None or not isinstance(u, by_uuid_takes):
            raise m.NVMLError(m.NVML_ERROR_NOT_SUPPORTED)
        return ("h", uuids.index(u.decode() if isinstance(u, bytes) else u))
    m.nvmlDeviceGetHandleByUUID = by_uuid
    m.nvmlDeviceGetUUID = lambda h: uuids[h[1]].encode()  # older nvidia-ml-py answers bytes
    m.nvmlDeviceGetTotalEnergyConsumption = lambda h: 1000 * h[1]
    return m


def test_nvml_meter_never_reads_a_gpu_with_another_uuid(monkeypatch):
    """Review: when the lookup by UUID failed, the meter silently read NVML device 0, another GPU under
    CUDA_VISIBLE_DEVICES or MIG; it checks the UUID of the handle found and refuses another GPU."""
    monkeypatch.setitem(sys.modules, "pynvml", _two_gpus())
    with pytest.raises(MeterError, match="NVML finds no GPU of UUID GPU-bbbb, and NVML device 0 is GPU-aaaa"):
        NvmlMeter(0, "GPU-bbbb")
    assert NvmlMeter(0, "GPU-aaaa").handle == ("h", 0)  # the fallback is the GPU asked for: fine
    monkeypatch.setitem(sys.modules, "pynvml", _two_gpus(bytes))  # a version that wants bytes finds it
    assert NvmlMeter(0, "GPU-bbbb").handle == ("h", 1)


# ---- D, E: resuming -----------------------------------------------------------------------------------------------

def test_resume_into_another_folder_refuses_a_run_being_measured(tmp_path):
    """Review: `--resume RUN --out DIR` copied RUN while a live session was still appending to it (the copy took
    whatever rows were there) and measured the rest in DIR: two sessions on one run. Refused as resuming in place is."""
    from wattlint.io import exclusive_lock

    src = run_calibration(RunConfig(device="fake", suite=TINY, out=str(tmp_path / "a"), limit=2))
    with exclusive_lock(src.csv, wait=False):  # what the measuring session holds
        with pytest.raises(RunError, match="another process is measuring this run now"):
            run_calibration(RunConfig(device="fake", resume=str(src.csv), out=str(tmp_path / "b")))
    assert not (tmp_path / "b").exists() or not list((tmp_path / "b").iterdir())
    done = run_calibration(RunConfig(device="fake", resume=str(src.csv), out=str(tmp_path / "b")))  # free: goes on
    assert json.loads(done.json.read_text())["status"] == "complete"


def test_a_run_of_a_relative_suite_path_resumes_from_another_folder(tmp_path, monkeypatch):
    """Review: --suite s.toml was recorded as typed, so --resume from another folder said "unknown suite 'tiny'". The
    absolute path is recorded; a suite file gone since is named."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(TINY, tmp_path / "a" / "s.toml")
    monkeypatch.chdir(tmp_path / "a")
    run = run_calibration(RunConfig(device="fake", suite="s.toml", out=str(tmp_path / "out"), limit=2))
    assert json.loads(run.json.read_text())["suite"]["path"] == str((tmp_path / "a" / "s.toml").resolve())
    monkeypatch.chdir(tmp_path / "b")
    run_calibration(RunConfig(device="fake", resume=str(run.csv), limit=1))
    assert len(read_rows(run.csv)) == 3
    (tmp_path / "a" / "s.toml").unlink()
    with pytest.raises(RunError, match=f"the run's suite file {tmp_path / 'a' / 's.toml'} is not there"):
        run_calibration(RunConfig(device="fake", resume=str(run.csv), limit=1))


def test_a_shipped_suite_whose_recorded_path_moved_still_resumes(tmp_path):
    """Runs record the shipped suite's installed path (calibration/suites/ before the suites moved into the package):
    the shipped suite of that name and sha256 is continued."""
    run = run_calibration(RunConfig(device="fake", suite="quick", out=str(tmp_path), limit=1))
    doc = json.loads(run.json.read_text())
    doc["suite"]["path"] = "/gone/calibration/suites/quick.toml"
    run.json.write_text(json.dumps(doc))
    run_calibration(RunConfig(device="fake", resume=str(run.csv), limit=1))
    assert len(read_rows(run.csv)) == 2


# ---- H, J: a CUDA run (torch.cuda and pynvml mocked; ops on the CPU) --------------------------------------------

class _Event:
    def __init__(self, enable_timing=False):
        self.t = None

    def record(self):
        self.t = time.perf_counter()

    def synchronize(self):
        pass

    def query(self):
        return time.perf_counter() - self.t > 0.0005

    def elapsed_time(self, other):
        return (other.t - self.t) * 1000.0


@pytest.fixture
def mocked_cuda(monkeypatch):
    """A CUDA 'GPU' named ``mocked_cuda.name`` (set it before the run) whose ops run on the CPU, metered by a fake
    NVML counter at 400 W; the autograd engine overhead is 80 us."""
    pytest.importorskip("torch")
    from _fake_cuda import mock_cuda_device
    from test_calib_meters import fake_pynvml

    props = mock_cuda_device(monkeypatch, _Event)
    monkeypatch.setattr(benchmarks, "autograd_call_overhead", lambda device, calls=200: 80e-6)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(time.perf_counter, power_w=400.0, tick_s=0.02))
    return props


class _Notes(Reporter):
    def __init__(self):
        self.notes = []

    def note(self, text):
        self.notes.append(text)


def test_a_cuda_run_does_not_claim_to_subtract_the_autograd_overhead(mocked_cuda, tmp_path):
    """Review: every run logged "autograd.grad call overhead ... (subtracted from backward samples)"; only a CPU
    run subtracts it (a GPU backward sample keeps its measured time, overhead_s 0)."""
    rep = _Notes()
    suite = load_suite(TINY)
    first_bwd = next(i for i, s in enumerate(suite.samples) if s.phase == "backward")
    run = run_calibration(RunConfig(device="cuda", suite=TINY, out=str(tmp_path), limit=first_bwd + 1), rep)
    (note,) = [n for n in rep.notes if n.startswith("autograd.grad call overhead")]
    assert note == ("autograd.grad call overhead 80.0 us (not subtracted: GPU backward samples keep their measured "
                    "time; `wattlint fit` drops those under 1.5x it as host-bound)")
    bwd = [r for r in read_rows(run.csv) if r["phase"] == "backward"]
    assert bwd and all(r["status"] == "ok" and float(r["overhead_s"]) == 0.0 for r in bwd)


def test_resume_with_gpu_records_the_key(mocked_cuda, tmp_path):
    """Review: `calibrate --resume RUN --gpu KEY` was accepted but the key was not recorded, so `fit` still said
    "pass --gpu KEY". It is recorded; another key than the run's is refused."""
    from wattlint.calibrate.fitting import run_spec

    mocked_cuda.name = "NVIDIA Prototype 7"  # not in the database
    run = run_calibration(RunConfig(device="cuda", suite=TINY, out=str(tmp_path), limit=1))
    assert json.loads(run.json.read_text())["spec"]["key"] is None
    run_calibration(RunConfig(device="cuda", resume=str(run.csv), gpu_key="h100", limit=1))
    prov = json.loads(run.json.read_text())
    assert prov["spec"]["key"] == "h100-sxm5-80gb" and prov["spec"]["source"] == "database (--gpu)"
    assert run_spec(prov)[0].key == "h100-sxm5-80gb"
    before = run.json.read_bytes()
    with pytest.raises(RunError, match="--gpu a100: the run was started as h100-sxm5-80gb, not a100-"):
        run_calibration(RunConfig(device="cuda", resume=str(run.csv), gpu_key="a100", limit=1))
    assert run.json.read_bytes() == before


# ---- I: validate predict --model across vendors -----------------------------------------------------------------

def test_predict_refuses_a_model_of_another_vendor(tmp_path, run_cli):
    """Review: `validate predict --gpu mi300x --model <an H200 fit>` priced the AMD GPU with the NVIDIA calibration as
    'transferred'; estimates never transfer across vendors (energy.predictor), nor does predict now."""
    h200 = ROOT / "src" / "wattlint" / "models" / "h200-sxm-141gb"
    code, _, err = run_cli("validate", "predict", "--gpu", "mi300x", "--list", "cpu", "--only", "mlp-mnist-b128",
                           "--model", h200, "--out", tmp_path / "p.json")
    assert code == 2 and err.count("\n") == 1 and (
        f"--model {h200}: fitted on h200-sxm-141gb (NVIDIA), the predictions are for mi300x-192gb (AMD): a "
        "calibration never transfers across vendors") in err, err
    assert not (tmp_path / "p.json").exists()
    code, _, err = run_cli("validate", "predict", "--gpu", "h100", "--list", "cpu", "--only", "mlp-mnist-b128",
                           "--model", h200, "--out", tmp_path / "q.json")  # the same vendor: transferred, as before
    assert code == 0, err
    cal = json.loads((tmp_path / "q.json").read_text())["configs"][0]["predictions"]["calibrated"]
    assert cal["calibration"] == "transferred"
