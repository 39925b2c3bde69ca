"""Run tracking defects found by a walk of the API (session 53): option combinations wattlint.estimate refuses ran a
whole loop without plan, site settings or budgets; a forked child wrote a second summary line into the parent's
record; callback options were checked only when training started; a reused Tracker recorded nothing, silently; one
tracker's budget stop was taken by another's ``with`` block; window_s=inf and True as a number were accepted."""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from _fake_nvml import Clock, quiet_track

import wattlint
from wattlint.tracking import BudgetWarning, Settings
from wattlint.tracking.record import read_record
from wattlint.tracking.tracker import Tracker
from wattlint.types import ConfigError, InputError, WattlintError

ROOT = Path(__file__).resolve().parents[1]
CPU_CAL = str(ROOT / "calibration" / "runs" / "cpu-amd-epyc")

# option combinations wattlint.estimate refuses whatever the model (each checked against the estimate itself below)
REFUSED = [
    pytest.param(dict(steps=100, batch_size=8, grad_accum=3), "not divisible", id="batch-not-divisible"),
    pytest.param(dict(steps=100, epochs=2), "conflict", id="steps-and-epochs"),
    pytest.param(dict(steps=100, activation_checkpointing=True, recompute="none"), "conflicts", id="ckpt-vs-recompute"),
    pytest.param(dict(steps=100, tensor_parallel=4, gpus=2), "does not divide --gpus 2", id="tp-above-gpus"),
    # one process on the CPU, no gpus= and no devices list: the run measures 1 device
    pytest.param(dict(steps=100, tensor_parallel=2), "does not divide gpus 1", id="tp-without-gpus"),
    pytest.param(dict(steps=100, training_stack="megatron"), "megatron needs", id="megatron-fp32"),
]


@pytest.mark.parametrize("opts,match", REFUSED)
def test_options_the_estimate_refuses_are_refused_before_the_loop(tmp_path, opts, match):
    torch = pytest.importorskip("torch")
    m = torch.nn.Linear(64, 10)
    # the oracle: wattlint.estimate itself refuses the same options (docs/TRACKING.md: "as wattlint.estimate
    # refuses them")
    with pytest.raises(ConfigError, match=match):
        wattlint.estimate(m, gpu="a100", inputs=["x=float32[8,64]"], **opts)
    # before: track() ran the loop with no plan, PUE 1 instead of the default 1.2 and its budgets never checked
    with pytest.raises(ConfigError, match=match):
        wattlint.track(m, example=torch.randn(8, 64), cpu_calibration=CPU_CAL, out=tmp_path, display="quiet",
                       max_co2_kg=1e-12, on_budget="stop", **opts)
    assert list(tmp_path.iterdir()) == []  # refused at construction: no record started


def test_a_refusal_for_this_model_is_a_note_and_the_run_goes_on(tmp_path):
    """wattlint.estimate refuses tensor parallelism on a model without transformer blocks: a limit of the estimate,
    not of the training (review s53: raising it at start stopped real runs, and with epochs= named the dataset where
    the layout was the cause). The run completes with the refusal in static.error, its plan and site settings
    resolved from the arguments (5 steps, the default PUE 1.2)."""
    torch = pytest.importorskip("torch")
    m = torch.nn.Linear(64, 10)
    opts = dict(steps=5, tensor_parallel=2, gpus=2)
    with pytest.raises(ConfigError, match="no repeated transformer blocks"):
        wattlint.estimate(m, gpu="a100", inputs=["x=float32[8,64]"], **opts)
    with wattlint.track(m, example=torch.randn(8, 64), cpu_calibration=CPU_CAL, out=tmp_path, display="quiet",
                        **opts) as t:
        for _ in range(5):
            t.step()
    assert "no repeated transformer blocks" in t.static["error"] and t.summary()["status"] == "completed"
    assert (t.plan.steps, t.plan.pue) == (5, 1.2)


def test_what_the_construction_check_cannot_know_is_left_to_the_start(tmp_path):
    """Review s53: a per-GPU price list without gpu= named the check's stand-in GPU ('add unknown=USD'); a layout
    without gpus= was checked at 1 GPU though one process measuring 2 GPUs plans 2; an inputs= dict of example
    tensors was printed as a 'bad --input spec'; a package in the current folder was 'no module named' though the
    estimate's loader finds it there."""
    torch = pytest.importorskip("torch")
    m = torch.nn.Linear(64, 10)
    Tracker(m, gpu_hour_price={"h100": 2.0}, steps=5, out=tmp_path, display="quiet")
    Tracker(m, devices=[0, 1], pipeline_parallel=2, steps=5, out=tmp_path, display="quiet")
    Tracker(m, inputs={"x": torch.zeros(8, 64)}, steps=5, out=tmp_path, display="quiet")
    pkg = tmp_path / "proj"
    (pkg / "mymodels_s53").mkdir(parents=True)
    (pkg / "mymodels_s53" / "__init__.py").write_text("def build():\n    return None\n")
    cwd = os.getcwd()
    os.chdir(pkg)
    try:
        Tracker(None, source="mymodels_s53:build", steps=5, gpu="a100", out=tmp_path, display="quiet")
    finally:
        os.chdir(cwd)
    assert list(tmp_path.glob("*.jsonl")) == []  # made, not started: nothing written


def test_what_the_docs_tolerate_is_still_a_note(tmp_path):
    """epochs= with no dataset to count them in (the work does not resolve from the model) and a model that cannot
    be traced stay notes in the record: the run goes on."""
    torch = pytest.importorskip("torch")
    m = torch.nn.Linear(64, 10)
    with wattlint.track(m, example=torch.randn(8, 64), cpu_calibration=CPU_CAL, out=tmp_path, display="quiet",
                        epochs=3) as t:
        for _ in range(3):
            t.step()
    assert "cannot infer the dataset" in t.static["error"] and t.summary()["status"] == "completed"

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l = torch.nn.Linear(4, 4)

        def forward(self, x):
            raise RuntimeError("this forward fails on meta tensors")

    with wattlint.track(Broken(), example=torch.randn(2, 4), cpu_calibration=CPU_CAL, out=tmp_path / "b",
                        display="quiet", steps=3) as t2:
        for _ in range(3):
            t2.step()
    assert t2.static.get("error") and t2.summary()["status"] == "completed"


@pytest.mark.parametrize("kw,err,match", [
    (dict(inputs=["x=float99[8,64]"]), InputError, "unknown dtype"),
    (dict(inputs=["x=float32[8,-1]"]), InputError, "bad --input spec"),
    (dict(source="no/such/model.onnx"), InputError, "model file not found"),
    (dict(source="no_such_file.py:build"), InputError, "model file not found"),
    (dict(source="no_such_package_zz.mod:build"), InputError, "no module named"),
    (dict(source="model"), InputError, "not understood"),
])
def test_a_bad_inputs_spec_or_missing_source_is_refused_at_construction(tmp_path, kw, err, match):
    with pytest.raises(err, match=match):
        Tracker(None, steps=10, gpu="a100", out=tmp_path, display="quiet", **kw)


FORK_SCRIPT = textwrap.dedent("""
    import os, sys
    import wattlint
    from wattlint.tracking.devices import FakeChannel

    clock = [0.0]
    with wattlint.track(out=sys.argv[1], display="quiet", window_s=1.0, channels=[FakeChannel(250.0)],
                        clock=lambda: clock[0], static=False, steps=40, pue=1.0) as t:
        for i in range(40):
            clock[0] += 0.1
            t.step()
            if i == 20:
                pid = os.fork()
                if pid == 0:
                    t.step()     # the child steps on: nothing of it goes into the parent's record
                    sys.exit(0)  # SystemExit through the with block, then the interpreter's atexit hooks
                os.waitpid(pid, 0)
    print(t.path)
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_forked_child_writes_nothing_into_the_parents_record(tmp_path):
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "runs")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip().splitlines()[-1])
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    summaries = [x for x in lines if x["type"] == "summary"]
    assert len(summaries) == 1 and lines[-1]["type"] == "summary"  # before: the child's summary, then the parent's
    assert summaries[0]["status"] == "completed" and summaries[0]["steps"] == 40  # the parent's 40, not 22
    rec = read_record(path)  # the reader that refused "a second summary line"
    assert rec.summary["steps"] == 40
    # 40 steps of 0.1 s in 1 s windows: the window lines hold the parent's steps only, each once
    assert sum(len(x["step_times_s"]) for x in lines if x["type"] == "window") == 40


def test_a_tracker_records_one_run(tmp_path):
    clock = Clock(0.0)
    t = quiet_track(tmp_path, clock, steps=10)
    with t:
        for _ in range(5):
            clock.t += 0.1
            t.step()
    with pytest.raises(WattlintError, match="records one run"):
        with t:
            raise AssertionError("the second block must not run")  # pragma: no cover
    with pytest.raises(WattlintError, match="records one run"):
        t.start()
    files = list(tmp_path.glob("*.jsonl"))
    assert len(files) == 1 and read_record(files[0]).summary["steps"] == 5


@pytest.mark.parametrize("order", ["a_outer", "a_inner"])
def test_each_tracker_takes_only_its_own_budget_stop(tmp_path, order):
    """a: 250 W device + 80 W host (an unidentified GPU's stated fallback), PUE 1: 330 J per second of 0.1 s steps.
    max_kwh=1.5e-4 = 540 J. Checked at 1 s window boundaries, the first once the clock reaches 1 s (step 10 or 11,
    as 10 x 0.1 rounds: 330-363 J, under), the next 1 s later (step 20-22: >= 660 J = 1.83e-4 kWh, over): a stops
    there, and b, whose step after a's does not run, one step short of it."""
    clock = Clock(0.0)
    # never stable (min_steps): no projection, only the energy already spent trips the budget, at every window
    never = Settings(min_steps=10**6)
    a = quiet_track(tmp_path, clock, steps=1000, name="a", max_kwh=1.5e-4, on_budget="stop", settings=never)
    b = quiet_track(tmp_path, clock, steps=1000, name="b", settings=never)
    outer, inner = (a, b) if order == "a_outer" else (b, a)
    ran = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)
        with outer, inner:
            for _ in range(1000):
                clock.t += 0.1
                ran += 1
                a.step()
                b.step()
    assert a.summary()["status"] == "stopped: budget"  # before: "completed" when a was the outer block
    if order == "a_outer":  # a's stop passed through b's block first: b stopped with it, and says whose stop it was
        assert b.summary()["status"].startswith("stopped: another tracker's budget (wattlint budget max_kwh=0.00015")
    else:  # a's block (inner) took its own stop: b's block ended without an exception
        assert b.summary()["status"] == "completed"
    assert 20 <= ran <= 22 and a.summary()["steps"] == ran and b.summary()["steps"] == ran - 1


@pytest.mark.parametrize("kw,name", [
    (dict(window_s=float("inf")), "window_s"),
    (dict(window_s=True), "window_s"),
    (dict(max_kwh=True), "max_kwh"),
    (dict(max_co2_kg=True), "max_co2_kg"),
    (dict(max_cost_usd=True), "max_cost_usd"),
    (dict(gpus=True), "gpus"),
])
def test_infinite_window_and_true_as_a_number_are_refused(tmp_path, kw, name):
    with pytest.raises(ConfigError, match=name):
        Tracker(None, steps=10, out=tmp_path, display="quiet", **kw)


def test_callback_options_are_checked_when_the_callback_is_made(tmp_path):
    from wattlint.tracking._callback import CallbackCore

    with pytest.raises(ConfigError, match="precision"):
        CallbackCore({"precision": "fp99"})
    with pytest.raises(TypeError, match="stepz"):
        CallbackCore({"stepz": 1})
    with pytest.raises(ConfigError, match="conflict"):
        CallbackCore({"steps": 5, "epochs": 1})
    with pytest.raises(ConfigError, match="conflicts with recompute= none"):
        CallbackCore({"activation_checkpointing": True, "recompute": "none"})
    CallbackCore({"precision": "bf16", "out": str(tmp_path), "display": "quiet"})  # a good one is made
    # what the trainer gives when training starts (GPUs, precision) is not asked of the callback's own options
    CallbackCore({"tensor_parallel": 2, "training_stack": "megatron", "out": str(tmp_path), "display": "quiet"})
    assert list(tmp_path.iterdir()) == []  # and starts nothing


def test_the_lightning_and_hf_callbacks_refuse_bad_options_at_construction(tmp_path):
    pytest.importorskip("torch")
    made = 0
    for mod in ("wattlint.tracking.lightning", "wattlint.tracking.hf"):
        try:
            cb = __import__(mod, fromlist=["WattlintCallback"]).WattlintCallback
        except ImportError:
            continue
        with pytest.raises(ConfigError, match="precision"):
            cb(precision="fp99", display="quiet", out=str(tmp_path))
        with pytest.raises(TypeError, match="stepz"):
            cb(stepz=1)
        made += 1
    if not made:
        pytest.skip("neither lightning nor transformers installed")


def test_a_layout_over_the_gpus_one_process_measures_keeps_its_plan_and_site(tmp_path):
    """Review s53: with two GPU channels (one process over devices=[0, 1]) and pipeline_parallel=2 but no gpus=, the
    construction check let the layout through and the start resolved the plan at 1 GPU: no plan, PUE 1 instead of
    1.2, no GPU-hour price, the cost budget never checked. The plan is made on the 2 GPUs measured."""
    torch = pytest.importorskip("torch")
    from wattlint.tracking.devices import FakeChannel

    class H100(FakeChannel):
        gpu_name = "NVIDIA H100 80GB HBM3"

    m = torch.nn.Linear(64, 10)
    with wattlint.track(m, example=torch.randn(8, 64), out=tmp_path, display="quiet", window_s=0.01,
                        channels=[H100(300.0, name="g0"), H100(300.0, name="g1")], pipeline_parallel=2, steps=5,
                        gpu_hour_price=2.0, max_cost_usd=100.0) as t:
        for _ in range(5):
            t.step()
    assert (t.plan.steps, t.plan.gpus, t.plan.pue, t.plan.gpu_hour_price) == (5, 2, 1.2, 2.0)


def test_a_price_list_without_the_gpu_found_drops_the_price_not_the_plan(tmp_path):
    """A script written for H100s run on this machine's CPU: gpu_hour_price={"h100": 2} names no price for the
    device found. Review s53: the plan and site were dropped (PUE 1, no CO2 or cost budget); now only the GPU-hour
    price, with a note. 5 steps, the default PUE 1.2."""
    torch = pytest.importorskip("torch")
    m = torch.nn.Linear(64, 10)
    with wattlint.track(m, example=torch.randn(8, 64), cpu_calibration=CPU_CAL, out=tmp_path, display="quiet",
                        steps=5, gpu_hour_price={"h100": 2.0}, max_kwh=1.0) as t:
        for _ in range(5):
            t.step()
    assert (t.plan.steps, t.plan.pue, t.plan.gpu_hour_price) == (5, 1.2, None)
    assert any("GPU-hours are not priced in this run's cost" in n for n in t.notes), t.notes
    # the static estimate is made without the price too (review s53: its error was the price list's)
    assert "gpu-hour-price" not in str((t.static or {}).get("error") or "")


def test_a_typo_in_a_price_list_is_refused_when_the_tracker_is_made(tmp_path):
    """Review s53: without gpu= a per-GPU price list was not checked until the run started, where a typo'd name
    ('h1000') dropped every price, the valid ones too, and the cost budget went unchecked."""
    torch = pytest.importorskip("torch")
    with pytest.raises(ConfigError, match="unknown GPU 'h1000'"):
        Tracker(torch.nn.Linear(64, 10), gpu_hour_price={"h100": 2.0, "h1000": 1.0}, steps=5, out=tmp_path,
                display="quiet")


def test_a_devices_list_whose_meters_do_not_open_still_plans_its_gpus(tmp_path):
    """devices=[0, 1] on CUDA: the construction check planned 2 GPUs, the start 1 when no meter opened (no CUDA
    here), and the pipeline layout lost its plan and site (review s53). Both now plan the 2 GPUs: 5 steps, PUE 1.2."""
    torch = pytest.importorskip("torch")
    m = torch.nn.Linear(64, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no CUDA device to measure: a time-only record
        with wattlint.track(m, example=torch.randn(8, 64), device="cuda", devices=[0, 1], gpu="h100",
                            pipeline_parallel=2, steps=5, out=tmp_path, display="quiet") as t:
            for _ in range(5):
                t.step()
    assert (t.plan.steps, t.plan.gpus, t.plan.pue) == (5, 2, 1.2)


def test_a_list_mixing_tensors_and_specs_as_inputs_is_one_line(tmp_path):
    # example tensors alone are the example batch since stop 54 (tests/test_track_inputs_tensors_s54.py); a list that
    # mixes a tensor with a spec string is neither: one line, never the tensor's text
    torch = pytest.importorskip("torch")
    with pytest.raises(InputError) as e:
        Tracker(torch.nn.Linear(64, 10), inputs=(torch.zeros(8, 64), "y=float32[8,64]"), steps=5, out=tmp_path,
                display="quiet")
    assert "\n" not in str(e.value) and "got a list holding a Tensor" in str(e.value)
