"""Review s54 (API and tracking consistency): a malformed ``inputs=`` is the same error (InputError, as the README
and wattlint.types.InputError say) from wattlint.estimate, estimate_many and track; ``devices=`` of the wrong type
is refused when track() is made; under torchrun a rank measures only its own GPU, CUDA_VISIBLE_DEVICES read as CUDA
reads it (a fake pynvml: which GPU was read is told by its power)."""

import sys
import warnings

import pytest

from _fake_nvml import Clock
from test_track_nvml import SETTINGS, fake_pynvml

import wattlint
from wattlint import api
from wattlint.tracking.record import read_record

MLP = "examples/torch_models.py:MLP"
# four fake GPUs, each told by its power: NVML index i draws (i + 1) x 100 W
POWERS = {0: 100.0, 1: 200.0, 2: 300.0, 3: 400.0}


# ---- 1. a malformed inputs= is an InputError everywhere -----------------------------------------------------------

@pytest.mark.parametrize("bad", ["x:y:z", ["bad"], {"x": "notaspec"}, 5])
def test_a_malformed_inputs_spec_is_an_input_error_from_estimate_and_track(tmp_path, bad):
    # README (Python API): InputError for "a malformed inputs= spec"; ConfigError is for the plan's options.
    # estimate() raised ConfigError for these, track() InputError (and a TypeError for inputs=5)
    with pytest.raises(wattlint.InputError, match=r"^inputs= "):
        wattlint.estimate(MLP, gpu="a100", steps=1, inputs=bad, lint=False)
    with pytest.raises(wattlint.InputError, match=r"^inputs= "):
        api.estimate_many(MLP, ["a100"], steps=1, inputs=bad, lint=False)
    with pytest.raises(wattlint.InputError):
        wattlint.track(source=MLP, inputs=bad, out=tmp_path, display="quiet", static=False)
    assert not any(tmp_path.iterdir())  # refused before any record


def test_inputs_of_the_wrong_type_is_one_line_from_track(tmp_path):
    with pytest.raises(wattlint.InputError, match=r"^inputs= 5: expected spec strings"):
        wattlint.track(inputs=5, out=tmp_path, display="quiet")


def test_a_good_inputs_spec_still_estimates_and_tracks(tmp_path):
    est = wattlint.estimate(MLP, gpu="a100", steps=1, inputs=["x=float32[8,784]"], lint=False)
    assert est.per_step.time_s > 0
    with wattlint.track(source=MLP, inputs={"x": "float32[8,784]"}, out=tmp_path, display="quiet", device="cpu",
                        static=False, steps=3) as t:
        for _ in range(3):
            sum(i * i for i in range(20000))
            t.step()
    assert t.summary()["status"] == "completed" and t.summary()["steps"] == 3


# ---- 2. devices= is checked when track() is made ------------------------------------------------------------------

@pytest.mark.parametrize("devices,match", [
    (5, r"^devices=5: expected a list of NVML GPU indices.*got int$"),
    ("0,1", r"^devices='0,1': expected a list of NVML GPU indices.*got str$"),
    ([0, -1], r"^devices=\[0, -1\]: .*-1 is not a GPU index"),
    ([True], r"^devices=\[True\]: .*True is not a GPU index"),
    ([], r"^devices=\[\]: expected a list of NVML GPU indices"),
])
def test_devices_of_the_wrong_type_is_refused_at_construction(tmp_path, devices, match):
    with pytest.raises(wattlint.ConfigError, match=match):
        wattlint.track(devices=devices, device="cuda", out=tmp_path, display="quiet", static=False)
    assert not any(tmp_path.iterdir())


# ---- 3. the GPUs a process (a torchrun rank) measures -------------------------------------------------------------

@pytest.fixture
def nvml(monkeypatch):
    for k in ("CUDA_VISIBLE_DEVICES", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    clock = Clock(1000.0)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(clock, POWERS))
    # on a machine where torch has initialised CUDA its devices' UUIDs would replace CUDA_VISIBLE_DEVICES: the fake
    # NVML's GPUs are not those (review s54)
    from wattlint.tracking import devices as _devices

    monkeypatch.setattr(_devices, "_torch_visible_uuids", lambda: None)
    return clock


def _powers(tmp_path, clock, **kw):
    """Start a run, 20 steps of 0.1 s, and return (the power of each channel of its first window, the warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with wattlint.track(device="cuda", out=tmp_path, display="quiet", window_s=1.0, settings=SETTINGS,
                            clock=clock, static=False, steps=40, sync=False, **kw) as t:
            for _ in range(20):
                clock.t += 0.1
                t.step()
    rec = read_record(t.path)
    assert rec.summary["status"] == "completed" and rec.summary["steps"] == 20
    w = rec.windows[0] if rec.windows else {"channels": []}
    got = [round(c["energy_j"] / (w["t1"] - w["t0"]), 3) for c in w["channels"]]
    return got, [str(x.message) for x in caught if issubclass(x.category, RuntimeWarning)]


@pytest.mark.parametrize("env,watts", [
    # LOCAL_RANK indexes the visible devices, NVML the physical ones: visible (2, 3), rank 1 -> NVML 3 -> 400 W
    ({"CUDA_VISIBLE_DEVICES": "2,3", "LOCAL_RANK": "1"}, [400.0]),
    ({"LOCAL_RANK": "2"}, [300.0]),  # no CUDA_VISIBLE_DEVICES: every GPU visible, rank 2 -> NVML 2
    ({"CUDA_VISIBLE_DEVICES": "GPU-fake-1,GPU-fake-3", "LOCAL_RANK": "1"}, [400.0]),  # by UUID: GPU-fake-3
    ({"CUDA_VISIBLE_DEVICES": "2", "LOCAL_RANK": "1"}, [300.0]),  # one GPU given to this rank by its launcher
    ({"CUDA_VISIBLE_DEVICES": "3,-1,0", "LOCAL_RANK": "1"}, [400.0]),  # CUDA stops at '-1': only NVML 3 visible
    ({"CUDA_VISIBLE_DEVICES": "1,2"}, [200.0, 300.0]),  # one process, no rank: both its GPUs
])
def test_a_rank_measures_its_own_gpu(tmp_path, monkeypatch, nvml, env, watts):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    got, said = _powers(tmp_path, nvml)
    assert got == pytest.approx(watts, abs=1e-3) and said == []


@pytest.mark.parametrize("env,why", [
    # two GPUs visible, LOCAL_RANK 5: measuring both counted the other rank's 300 + 400 W as this rank's
    ({"CUDA_VISIBLE_DEVICES": "2,3", "LOCAL_RANK": "5"}, "LOCAL_RANK=5 but this process sees 2 GPUs"),
    # CUDA sees no GPU: '-1' and '' hide them all (they measured NVML 1 through a bogus UUID '-1', every GPU)
    ({"CUDA_VISIBLE_DEVICES": "-1"}, "CUDA_VISIBLE_DEVICES=-1 hides every GPU from CUDA"),
    ({"CUDA_VISIBLE_DEVICES": ""}, "CUDA_VISIBLE_DEVICES= hides every GPU from CUDA"),
    ({"CUDA_VISIBLE_DEVICES": "MIG-abc"}, "names a MIG instance (MIG-abc)"),
])
def test_a_gpu_that_is_not_this_processs_is_never_measured(tmp_path, monkeypatch, nvml, env, why):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    got, said = _powers(tmp_path, nvml)
    assert got == [] and len(said) == 1 and why in said[0] and "this run's record is time only" in said[0]


def test_a_devices_list_overrides_the_rank(tmp_path, monkeypatch, nvml):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    got, said = _powers(tmp_path, nvml, devices=[0])  # NVML index 0: 100 W
    assert got == pytest.approx([100.0], abs=1e-3) and said == []
