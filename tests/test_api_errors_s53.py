"""The Python API's errors: a wrong argument TYPE is one ConfigError naming the keyword (not pathlib's TypeError or
an AttributeError from deep inside), the errors are importable from ``wattlint`` as README's Python API section says,
and a CUDA run with no CUDA device to measure warns once instead of giving a time-only record without a word."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from _fake_nvml import Clock, quiet_track

import wattlint
from wattlint.tracking.devices import FakeChannel
from wattlint.types import ConfigError, InputError, WattlintError

ROOT = Path(__file__).resolve().parents[1]
ONNX = str(ROOT / "examples" / "resnet50.onnx")


# ---- 1. wrong argument types ------------------------------------------------------------------------------------

@pytest.mark.parametrize("out", [5, None, 2.5, b"runs"])
def test_track_out_of_the_wrong_type_is_a_config_error(out, tmp_path):
    # HEAD: TypeError from pathlib ("expected str, bytes or os.PathLike object, not int")
    with pytest.raises(ConfigError, match=r"^out=.*expected a folder or a \.jsonl file"):
        wattlint.track(out=out)
    # a path of either type is taken as before
    assert wattlint.track(out=tmp_path / "runs").out == tmp_path / "runs"  # os.PathLike
    assert wattlint.track(out=str(tmp_path / "r.jsonl")).out == tmp_path / "r.jsonl"


@pytest.mark.parametrize("value", [3, ["calibration/runs/cpu-amd-epyc"]])
def test_track_cpu_calibration_of_the_wrong_type_is_a_config_error(value, tmp_path):
    # HEAD: TypeError from pathlib, 7 frames deep (static.cpu_calibration_runs)
    with pytest.raises(ConfigError, match=r"^cpu_calibration=.*expected a CPU calibration run folder"):
        wattlint.track(cpu_calibration=value)
    # a path of the right type goes on to the folder check it had (unchanged)
    with pytest.raises(ConfigError, match="no such folder"):
        wattlint.track(cpu_calibration=tmp_path / "nothing")


@pytest.mark.parametrize("channels, shown", [([1, 2], r"channels=: 1 \(int\) is not an energy channel"),
                                             (["gpu0"], r"channels=: 'gpu0' \(str\) is not an energy channel"),
                                             ("gpu0", r"channels='gpu0': expected a list of energy channels"),
                                             (FakeChannel(100.0), r"channels=.*got FakeChannel")])
def test_track_channels_of_the_wrong_type_is_a_config_error(channels, shown, tmp_path):
    # HEAD: accepted, then an AttributeError ('int' object has no attribute 'begin') from inside start()
    with pytest.raises(ConfigError, match=shown):
        wattlint.track(channels=channels)
    # a list or tuple of channels is measured as before
    clock = Clock()
    for chans in ([FakeChannel(250.0)], (FakeChannel(250.0),)):
        with quiet_track(tmp_path, clock, steps=4, channels=chans) as t:
            for _ in range(4):
                clock.t += 0.5
                t.step()
        # 4 steps x 0.5 s at 250 W = 500 J, by hand
        assert sum(w.energy_j[0] for w in t._windows) == pytest.approx(500.0)


@pytest.mark.parametrize("models_dir", [5, ["models"], 1.0])
def test_estimate_models_dir_of_the_wrong_type_is_a_config_error(models_dir, tmp_path):
    from wattlint.api import estimate_many

    # HEAD: TypeError from pathlib, 8 frames deep (models_search_path)
    with pytest.raises(ConfigError, match=r"^models_dir=.*expected a folder path"):
        wattlint.estimate(ONNX, gpu="a100", models_dir=models_dir)
    with pytest.raises(ConfigError, match=r"^models_dir=.*expected a folder path"):
        estimate_many(ONNX, ["a100"], models_dir=models_dir)
    # a path goes on to the folder check it had
    with pytest.raises(ConfigError, match="not a folder"):
        wattlint.estimate(ONNX, gpu="a100", models_dir=tmp_path / "nothing")


def _a_correction(tmp_path):
    """A run correction fitted into models/<GPU>/run_correction.json (test_track_fit's synthetic records)."""
    from test_track_fit import GPU, write_record

    from wattlint.tracking.fit import fit_records

    runs = tmp_path / "runs"
    write_record(runs / "a1.jsonl", model_hash="a", t_meas=0.12, t_pred=0.10)
    write_record(runs / "b1.jsonl", model_hash="b", t_meas=0.20, t_pred=0.25)
    models = tmp_path / "models"
    fit_records([str(runs)], out=str(models / GPU))
    return GPU, models


def test_find_run_correction_one_path_is_a_config_error(tmp_path):
    from wattlint.tracking.fit import find_run_correction

    gpu, models = _a_correction(tmp_path)
    # HEAD: the string was read letter by letter ('/', 't', ...): None, though the correction is right there
    with pytest.raises(ConfigError, match=r"^dirs=.*expected a list of folders"):
        find_run_correction(gpu, dirs=str(models))
    with pytest.raises(ConfigError, match=r"^dirs=.*expected a list of folders"):
        find_run_correction(gpu, dirs=models)  # a Path: TypeError ('PosixPath' object is not iterable) on HEAD
    with pytest.raises(ConfigError, match=r"dirs=: 5 \(int\) is not a folder"):
        find_run_correction(gpu, dirs=[5])
    # the list form finds it, as before
    assert find_run_correction(gpu, [str(models)]).path == str(models / gpu / "run_correction.json")
    assert find_run_correction(gpu, (p for p in [models])).path == str(models / gpu / "run_correction.json")


# ---- 2. the exceptions, as README's Python API section describes them -------------------------------------------

def test_errors_importable_from_wattlint_as_documented(tmp_path):
    # HEAD: AttributeError: module 'wattlint' has no attribute 'ConfigError'
    assert wattlint.ConfigError is ConfigError and wattlint.InputError is InputError
    assert issubclass(wattlint.ConfigError, wattlint.WattlintError)
    assert issubclass(wattlint.InputError, wattlint.WattlintError)
    assert wattlint.WattlintError is WattlintError
    # README's examples of each, each run here
    with pytest.raises(wattlint.ConfigError):
        wattlint.estimate(ONNX, gpu="a100", precision="fp99")
    with pytest.raises(wattlint.ConfigError, match="unknown option 'bogus'"):
        wattlint.estimate(ONNX, gpu="a100", bogus=1)
    with pytest.raises(wattlint.ConfigError, match="unknown GPU"):
        wattlint.estimate(ONNX, gpu="nosuchgpu")
    with pytest.raises(wattlint.ConfigError, match="takes no option 'bogus'"):
        wattlint.analyze(ONNX, bogus=1)
    with pytest.raises(wattlint.InputError, match="model file not found"):
        wattlint.estimate(str(tmp_path / "missing.onnx"), gpu="a100")
    (tmp_path / "bad.onnx").write_text("garbage")
    with pytest.raises(wattlint.InputError, match="not an ONNX model"):
        wattlint.estimate(str(tmp_path / "bad.onnx"), gpu="a100")
    with pytest.raises(wattlint.InputError):
        wattlint.track(source="nosuch_module_s53:build")
    with pytest.raises(wattlint.InputError):
        wattlint.track(inputs=["x=zz[1"])
    # track()'s options are keyword arguments: an unknown one is Python's own TypeError (docs/TRACKING.md)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        wattlint.track(bogus=1)


def test_import_wattlint_stays_light_with_the_errors():
    code = ("import sys, wattlint; wattlint.ConfigError, wattlint.InputError; "
            "print(sorted(m for m in ('torch', 'numpy', 'onnx', 'onnxruntime', 'pynvml', 'lightgbm') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# ---- 3. device="cuda" with nothing to measure -------------------------------------------------------------------

def _no_nvml(*a, **k):
    from wattlint.calibrate.meters import MeterError

    raise MeterError("no GPU to measure (NVML sees none)")


def _cuda_seen() -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_available()


def test_track_cuda_without_a_device_warns_once(tmp_path, monkeypatch):
    import wattlint.tracking.devices as devices

    monkeypatch.setattr(devices, "open_nvml_channels", _no_nvml)
    clock = Clock()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with wattlint.track(device="cuda", steps=6, out=tmp_path, display="quiet", window_s=1.0, clock=clock,
                            static=False) as t:
            for _ in range(6):
                clock.t += 0.5
                t.step()
    said = [str(w.message) for w in caught if "energy is not measured" in str(w.message)]
    # HEAD: no warning at all (only a note in the record)
    assert len(said) == 1, [str(w.message) for w in caught]
    assert issubclass(next(w.category for w in caught if str(w.message) == said[0]), RuntimeWarning)
    assert said[0].startswith("wattlint: device='cuda': ")
    assert "NVML sees none" in said[0] and "this run's record is time only" in said[0]
    if not _cuda_seen():
        assert "no CUDA device was found to measure" in said[0]
    assert t.channels == [] and t.device_kind == "cuda"  # still a time-only record, as before
    assert t.summary()["status"] == "completed"
    # a CPU run: no such warning
    clock = Clock()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with wattlint.track(device="cpu", steps=3, out=tmp_path, display="quiet", clock=clock, static=False) as t:
            for _ in range(3):
                clock.t += 0.5
                t.step()
    assert not [w for w in caught if "energy is not measured" in str(w.message)]
