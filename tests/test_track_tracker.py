"""The tracker on an injected clock with a fake constant-power channel: record lines valid against the schema,
projection by hand, stable event, budget guard (warn / stop at a step boundary), data-loader timing, errors."""

import json
import sys
import warnings
from importlib import resources

import jsonschema

import pytest

from _fake_nvml import Clock, quiet_track

import wattlint
from wattlint.tracking import BudgetExceeded, BudgetWarning, Settings
from wattlint.tracking.devices import FakeChannel
from wattlint.tracking.tracker import Tracker
from wattlint.tracking.record import read_record

SETTINGS = Settings(min_steps=10, min_stable_s=1.0, max_rel_ci=0.05)


def _schema():
    return json.loads(resources.files("wattlint").joinpath("schemas", "run.schema.json").read_text())


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


_track = quiet_track


def test_plain_loop_record_and_projection(tmp_path):
    clock = Clock(100.0)
    with _track(tmp_path, clock, steps=200, name="demo") as t:
        for i in range(100):
            clock.t += 0.5 if i < 5 else 0.1  # 5 warm-up steps of 0.5 s, then 0.1 s
            t.step()
    lines = _lines(t.path)
    validator = jsonschema.Draft202012Validator(_schema())
    for ln in lines:
        validator.validate(ln)
    assert [ln["type"] for ln in lines][0] == "header" and lines[-1]["type"] == "summary"
    s = lines[-1]
    assert s["status"] == "completed" and s["steps"] == 100
    a = s["analysis"]
    assert a["warmup_steps"] == 5
    # measured 2.5 + 95 x 0.1 = 12 s; projected 12 + 100 x 0.1 = 22 s
    assert a["time_s"] == pytest.approx(12.0)
    assert a["projection"]["time_s"] == pytest.approx(22.0)
    # 250 W fake GPU + 80 W host per GPU (modelled; the fake channel names no GPU, so no platform class applies:
    # the stated flat fallback): 22 s x 330 W = 7,260 J at PUE 1.0, 500 g/kWh
    assert lines[0]["host_w"] == pytest.approx(80.0)
    assert a["projection"]["device_energy_j"] == pytest.approx(5500.0)
    assert a["projection"]["energy_kwh"] == pytest.approx(7260 / 3.6e6)
    assert a["projection"]["co2_kg"] == pytest.approx(7260 / 3.6e6 * 0.5)
    events = [ln for ln in lines if ln["type"] == "event"]
    assert events and events[0]["kind"] == "stable"
    # every step is in exactly one window, in order
    wins = [ln for ln in lines if ln["type"] == "window"]
    assert sum(len(w["step_times_s"]) for w in wins) == 100
    assert [w["first_step"] for w in wins] == sorted(w["first_step"] for w in wins)
    rec = read_record(t.path)
    assert rec.summary and not rec.torn_tail and rec.header["device"]["kind"] == "cuda"
    assert rec.header["channels"][0]["energy_source"] == "fake"


@pytest.mark.parametrize("gpu, per_node, expected_w", [
    # SXM/HGX node: 0.41 x 700 W TDP = 287 W of node per GPU, + (1/0.94 - 1) x (700 + 287) W of PSU losses
    ("h100-sxm5-80gb", None, 287.0 + (1 / 0.94 - 1) * (700.0 + 287.0)),
    # data-centre PCIe card, one GPU of the job: its 1/8 share of a 450 W server, + losses on 300 W + 56.25 W
    ("a100-pcie-80gb", None, 450.0 / 8 + (1 / 0.94 - 1) * (300.0 + 450.0 / 8)),
    # GeForce in a desktop: the whole 120 W machine, + (1/0.90 - 1) x (350 + 120) W; two GPUs share it
    ("rtx3090-24gb", None, 120.0 + (1 / 0.90 - 1) * (350.0 + 120.0)),
    ("rtx3090-24gb", 2, 60.0 + (1 / 0.90 - 1) * (350.0 + 60.0)),
])
def test_host_power_follows_the_platform_class_without_a_static_estimate(tmp_path, gpu, per_node, expected_w):
    """No static estimate (static=False): the tracked GPU's host share comes from the estimate's platform-class rule
    (a flat 80 W per GPU under-counted an HGX H100 node's host ~4x)."""
    clock = Clock(100.0)
    kw = {"gpus_per_node": per_node} if per_node else {}
    with _track(tmp_path, clock, steps=20, gpu=gpu, **kw) as t:
        for _ in range(20):
            clock.t += 0.1
            t.step()
    header = _lines(t.path)[0]
    assert header["host_w"] == pytest.approx(expected_w)
    assert any("host power" in n and "per GPU" in n for n in header["notes"])


def test_host_power_without_a_static_estimate_is_the_estimates_host_model(tmp_path):
    """With no static estimate the record charged a fixed 80 W of host per GPU, called 'the estimate's stated
    constant', while the estimate of the same GPU charges its platform's host: on an H100 SXM node 0.41 x 700 W TDP
    = 287 W + power-supply losses (1 / 0.94 - 1) x (700 + 287) = 63.0 W -> 350.0 W per GPU."""
    clock = Clock(100.0)
    with _track(tmp_path, clock, steps=200, gpu="h100-sxm5-80gb") as t:
        for _ in range(50):
            clock.t += 0.1
            t.step()
    h = _lines(t.path)[0]
    assert h["device"]["gpu_key"] == "h100-sxm5-80gb"
    assert h["host_w"] == pytest.approx(287.0 + (1 / 0.94 - 1) * 987.0) and h["host_w"] == pytest.approx(350.0, abs=0.1)
    assert any("MODELLED at 350 W" in n and "SXM/HGX node" in n for n in h["notes"])
    # projection: 200 steps x 0.1 s = 20 s at 250 W (fake GPU) + 350 W host, PUE 1.0
    p = t.summary()["analysis"]["projection"]
    assert p["energy_kwh"] == pytest.approx(20.0 * (250.0 + 350.0) / 3.6e6, rel=1e-3)


def test_a_process_measuring_several_gpus_is_estimated_on_as_many(tmp_path):
    """One process driving 2 GPUs, gpus= not given: the plan took 2 GPUs from the channels, but the static estimate
    was made for 1 and its energy compared with both GPUs' (-50 %)."""
    from pathlib import Path

    onnx = Path(__file__).resolve().parents[1] / "examples" / "resnet50.onnx"
    clock = Clock(100.0)
    with _track(tmp_path, clock, steps=100, gpu="a100-sxm4-80gb", source=str(onnx), static=True,
                channels=[FakeChannel(250.0), FakeChannel(250.0)]) as t:
        for _ in range(30):
            clock.t += 0.1
            t.step()
    h = _lines(t.path)[0]
    assert h["plan"]["resolved"]["gpus"] == 2
    assert h["static"]["plan"]["data_parallel"] == 2  # the estimate's job: the 2 GPUs measured


def test_an_uneven_data_parallel_batch_keeps_its_static_estimate(tmp_path):
    """One process on 2 GPUs with batch 33: nn.DataParallel scatters it 17 + 16. The plan (gpus taken from the
    channels, not from the user) costs each step at the larger share, 17 per GPU, instead of refusing a batch the
    user never split; given explicitly to an estimate, the same batch is refused (exit 2 through the CLI)."""
    from pathlib import Path

    from wattlint.types import ConfigError

    onnx = Path(__file__).resolve().parents[1] / "examples" / "resnet50.onnx"
    clock = Clock(100.0)
    with _track(tmp_path, clock, steps=100, gpu="a100-sxm4-80gb", source=str(onnx), static=True, batch_size=33,
                channels=[FakeChannel(250.0), FakeChannel(250.0)]) as t:
        for _ in range(30):
            clock.t += 0.1
            t.step()
    h = _lines(t.path)[0]
    assert "error" not in h["static"], h["static"]
    assert h["static"]["plan"]["data_parallel"] == 2 and h["static"]["plan"]["micro_batch_size"] == 17
    with pytest.raises(ConfigError, match="--batch-size 33 is not divisible by 2 GPU"):
        wattlint.estimate(str(onnx), gpu="a100-sxm4-80gb", gpus=2, batch_size=33, steps=1, lint=False)


def test_budget_warns_once_and_keeps_running(tmp_path):
    clock = Clock(100.0)
    # projected 200 steps x 0.1 s x 250 W = 5,000 J = 0.00139 kWh > 0.001 kWh budget
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _track(tmp_path, clock, steps=200, max_kwh=0.001) as t:
            for _ in range(200):
                clock.t += 0.1
                t.step()
    hits = [w for w in caught if issubclass(w.category, BudgetWarning)]
    assert len(hits) == 1 and "max_kwh=0.001" in str(hits[0].message)
    # attributed to the training loop's line (t.step() here), not to a file inside wattlint
    assert hits[0].filename == __file__, hits[0].filename
    lines = _lines(t.path)
    assert lines[-1]["status"] == "completed" and lines[-1]["steps"] == 200
    ev = [ln for ln in lines if ln.get("kind") == "budget"]
    assert len(ev) == 1 and ev[0]["action"] == "warn" and ev[0]["range"][0] > 0.001


def test_warnings_turned_into_errors_never_reach_the_training_loop(tmp_path, capsys):
    """Review: under `python -W error` (or pytest's filterwarnings = error) the BudgetWarning, then the tracker's own
    'tracking stopped' RuntimeWarning, raised into the loop: training died and the record had no summary."""
    clock = Clock(100.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with _track(tmp_path, clock, steps=200, max_kwh=0.001) as t:
            for _ in range(200):
                clock.t += 0.1
                t.step()
    lines = _lines(t.path)
    assert lines[-1]["status"] == "completed" and lines[-1]["steps"] == 200
    assert [ln["action"] for ln in lines if ln.get("kind") == "budget"] == ["warn"]
    assert "BudgetWarning: wattlint budget max_kwh=0.001" in capsys.readouterr().err  # said on stderr instead


def test_a_display_that_cannot_write_falls_silent(tmp_path):
    """Review: `python train.py | head -1` raised BrokenPipeError from t.step() (the live line) and again from the
    summary at the end of the with-block; training died at step 20."""
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

        def isatty(self):
            return False

    clock = Clock(100.0)
    with _track(tmp_path, clock, steps=100, display="line", every=5, stream=ClosedPipe()) as t:
        for _ in range(100):
            clock.t += 0.1
            t.step()
    lines = _lines(t.path)
    assert lines[-1]["status"] == "completed" and lines[-1]["steps"] == 100


def test_a_loop_that_ends_before_the_plan_says_so(tmp_path):
    """Review: the docs' snippet (epochs=10 over one pass of the loader) ended 'completed' at 63 of 630 steps."""
    clock = Clock(100.0)
    with _track(tmp_path, clock, steps=200) as t:
        for _ in range(50):
            clock.t += 0.1
            t.step()
    last = _lines(t.path)[-1]
    assert last["status"] == "completed" and last["steps"] == 50
    assert last["notes"] == ["the loop ended after 50 of the plan's 200 steps: the totals measured are the steps run; "
                             "the projections are the whole plan's"]
    jsonschema.validate(last, {**_schema(), "$ref": "#/$defs/summary"})
    with _track(tmp_path, clock, steps=20) as t2:  # the whole plan: no note
        for _ in range(20):
            clock.t += 0.1
            t2.step()
    assert "notes" not in _lines(t2.path)[-1]


def test_budget_message_never_rounds_the_spend_down_to_the_budget(tmp_path):
    """A budget crossed by a little read as met exactly: the plan (30 steps x 0.1 s = 3 s on a 3.6 MW fake GPU + the
    stated 80 W host, PUE 1) projects 3 s x (3.6e6 + 80) W = 10,800,240 J = 3.0000667 kWh against max_kwh=3, and the
    warning said 'projected 3 kWh (5-95 %: 3-3)'. The numbers shown now read above the budget, as they are."""
    import re

    clock = Clock(100.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _track(tmp_path, clock, steps=30, max_kwh=3.0, channels=[FakeChannel(3.6e6)]) as t:
            for _ in range(30):
                clock.t += 0.1
                t.step()
    (hit,) = [str(w.message) for w in caught if issubclass(w.category, BudgetWarning)]
    shown = re.search(r"(?:already spent|projected) ([0-9.e+-]+) kWh", hit)
    assert shown and float(shown.group(1)) > 3.0, hit
    assert 3.0 < float(shown.group(1)) < 3.001  # 3.0000667 to 5 digits: 3.0001


def test_budget_stop_ends_the_with_block_at_a_step_boundary(tmp_path):
    clock = Clock(100.0)
    done = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)
        with _track(tmp_path, clock, steps=10_000, max_co2_kg=0.001, on_budget="stop") as t:
            for i in range(10_000):
                clock.t += 0.1
                t.step()  # raises BudgetExceeded here, after the optimizer step
                done.append(i)
    lines = _lines(t.path)
    s = lines[-1]
    assert s["status"] == "stopped: budget"
    # the step that triggered the stop was recorded and completed; nothing after it ran
    assert s["steps"] == len(done) + 1 and s["steps"] < 10_000
    assert t.should_stop


def test_budget_stop_raises_outside_a_with_block(tmp_path):
    clock = Clock(100.0)
    t = _track(tmp_path, clock, steps=10_000, max_kwh=1e-6, on_budget="stop").start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)
        with pytest.raises(BudgetExceeded, match="already spent"):
            for _ in range(10_000):
                clock.t += 0.1
                t.step()
    t.close("stopped: budget")


def test_wrap_times_the_data_loader_and_marks_epochs(tmp_path):
    clock = Clock(100.0)

    def loader():
        for _ in range(50):
            clock.t += 0.06  # waiting for the batch
            yield None

    with _track(tmp_path, clock, steps=150) as t:
        for _epoch in range(3):
            for _batch in t.wrap(loader()):
                clock.t += 0.04  # compute
                t.step()
    a = t.summary()["analysis"]
    assert a["input"]["data_wait_share"] == pytest.approx(0.6)
    assert a["input"]["input_bound"] is True
    assert a["boundaries"] == 2  # two more passes over the loader
    lines = _lines(t.path)
    assert sum(len(ln["boundaries"]) for ln in lines if ln["type"] == "window") == 2


def test_exception_in_the_loop_closes_the_record_and_propagates(tmp_path):
    clock = Clock(100.0)
    with pytest.raises(ZeroDivisionError):
        with _track(tmp_path, clock, steps=100) as t:
            for _ in range(30):
                clock.t += 0.1
                t.step()
            raise ZeroDivisionError("a bug in the training loop")
    s = _lines(t.path)[-1]
    assert s["type"] == "summary" and s["status"].startswith("error: ZeroDivisionError")


@pytest.mark.parametrize("code, status", [(0, "completed"), (None, "completed"), (5, "exited: 5"),
                                          (True, "exited: 1"), (False, "completed")])
def test_sys_exit_inside_the_block_is_not_an_error(tmp_path, code, status):
    """Review: sys.exit(0) after the last step was recorded as 'error: SystemExit: 0'."""
    clock = Clock(100.0)
    with pytest.raises(SystemExit):
        with _track(tmp_path, clock, steps=30) as t:
            for _ in range(30):
                clock.t += 0.1
                t.step()
            sys.exit(code)
    s = _lines(t.path)[-1]
    assert s["type"] == "summary" and s["status"] == status


def test_bad_options_are_clear_errors(tmp_path):
    with pytest.raises(wattlint.WattlintError, match="on_budget"):
        wattlint.track(on_budget="explode")
    with pytest.raises(wattlint.WattlintError, match="max_kwh"):
        wattlint.track(max_kwh=-1)
    # an optimizer NAME is checked like the estimate's (review: 'lion' became a note and dropped the whole plan);
    # the user's own optimizer object is not (its class name is not an option value)
    with pytest.raises(wattlint.WattlintError, match="optimizer"):
        wattlint.track(optimizer="lion", steps=10)
    for bad in (0, -5, 2.5, True):  # every=0 was taken as 1 without a word
        with pytest.raises(wattlint.WattlintError, match=r"every=.*a whole number >= 1"):
            wattlint.track(every=bad)

    class Lion:
        pass

    wattlint.track(optimizer=Lion(), steps=10, out=tmp_path / "own", display="quiet")  # accepted (not started)
    clock = Clock(100.0)
    t = _track(tmp_path, clock, out=tmp_path / "r.jsonl").start()
    t.close()
    # an existing out= file is never overwritten nor refused (a refusal killed a rank of a job, or a reused
    # callback's second fit): the next free name, with a warning naming it (TRACKING.md)
    with pytest.warns(RuntimeWarning, match="never overwritten"):
        t2 = _track(tmp_path, clock, out=tmp_path / "r.jsonl").start()
    t2.close()
    assert t2.path == tmp_path / "r-2.jsonl"


def test_real_cpu_loop_with_static_estimate(tmp_path):
    """A real (tiny) torch loop on the CPU, priced on the repository's CPU method-check device."""
    import torch

    from wattlint.calibrate.zoo import MLP

    torch.manual_seed(0)
    model = MLP((32, 16, 4))
    x = torch.randn(8, 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with wattlint.track(model, example=x, optimizer=opt, steps=30, out=tmp_path, display="quiet", window_s=0.01,
                        cpu_calibration="calibration/runs/cpu-amd-epyc") as t:
        for _ in range(30):
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
            t.step()
    rec = read_record(t.path)
    h = rec.header
    assert h["device"] == {**h["device"], "kind": "cpu", "gpu_key": "cpu-amd-epyc"}
    assert h["channels"][0]["energy_source"] == "modelled"
    assert h["model"]["hash"].startswith("sha256:") and h["model"]["params"] == 32 * 16 + 16 + 16 * 4 + 4
    st = h["static"]
    assert st["per_step"]["time_s"] > 0 and st["plan"]["steps"] == 30 and st["plan"]["optimizer"] == "sgd"
    assert "cpu-amd-epyc" in st["energy_model"]
    assert rec.summary["comparison"]["step_time_s"]["static"] == pytest.approx(st["per_step"]["time_s"])
    assert any("MODELLED" in n for n in h["notes"])


def test_a_cpu_run_with_gpu_says_the_comparison_is_not_like_with_like(tmp_path):
    """Review: the docs' example (gpu="a100-sxm4-80gb") on a machine without CUDA printed 'static 270 us (A100) vs
    measured 634 us (CPU)' without a word."""
    import torch

    from wattlint.calibrate.zoo import MLP

    model = MLP((32, 16, 4))
    x = torch.randn(8, 32)
    with wattlint.track(model, example=x, steps=5, out=tmp_path, display="quiet", window_s=0.01,
                        gpu="a100-sxm4-80gb") as t:
        for _ in range(5):
            model(x).sum().backward()
            t.step()
    h = read_record(t.path).header
    assert h["device"]["kind"] == "cpu" and h["device"]["gpu_key"] == "a100-sxm4-80gb"
    assert any(n.startswith("measured on this machine's CPU, estimated on a100-sxm4-80gb: the comparison is not like "
                            "with like") for n in h["notes"])


def test_static_estimate_takes_the_recompute_option(tmp_path):
    """track(recompute=...) reaches the static estimate's plan like the estimate command's --recompute."""
    pytest.importorskip("torch")
    from pathlib import Path

    from wattlint.hardware import resolve_gpu
    from wattlint.tracking.static import static_estimate

    gpu, _ = resolve_gpu("h100")
    src = f"{Path(__file__).resolve().parents[1] / 'examples' / 'torch_models.py'}:tiny_gpt"
    plain = static_estimate(source=src, inputs=None, spec=gpu, options={"steps": 10})
    full = static_estimate(source=src, inputs=None, spec=gpu, options={"steps": 10, "recompute": "full"})
    assert plain["plan"]["recompute"] == "none" and full["plan"]["recompute"] == "full"
    assert full["per_step"]["time_s"] > plain["per_step"]["time_s"]  # the forward re-runs in backward


def test_live_line_and_rich_display(tmp_path):
    import io

    from wattlint.tracking.display import Display

    clock = Clock(100.0)
    buf = io.StringIO()
    with _track(tmp_path, clock, steps=100, display="line", every=25, stream=buf) as t:
        for _ in range(100):
            clock.t += 0.1
            t.step()
    out = buf.getvalue()
    assert "wattlint: step 25/100" in out and "projected" in out
    assert "wattlint run record:" in out and "static estimate: unavailable" not in out  # static=False: none asked
    rich = io.StringIO()
    d = Display("rich", 10, rich)
    d.update("wattlint: step 10 | projected 1 s [1 s–2 s]")  # brackets are text, not rich markup
    d.end(["done"])
    assert "[1 s–2 s]" in rich.getvalue() and "done" in rich.getvalue()


def test_runs_started_in_the_same_second_get_their_own_records(tmp_path, monkeypatch):
    """Two trackers writing to one folder in the same second (torchrun ranks, a sweep's processes) must both
    record: the second used to raise 'exists' at start and stop that process's training. Ranks of a multi-process
    job are named by their global rank; any remaining collision gets a numeric suffix. No record is overwritten."""
    from wattlint.tracking import tracker as tracker_mod

    monkeypatch.setattr(tracker_mod, "_stamp", lambda: "20260101T000000Z")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    clock = Clock(100.0)
    paths = []
    for _ in range(3):
        t = _track(tmp_path, clock, steps=10, name="demo").start()
        t.step()
        t.close()
        paths.append(t.path)
    assert [p.name for p in paths] == ["20260101T000000Z-demo.jsonl", "20260101T000000Z-demo-2.jsonl",
                                       "20260101T000000Z-demo-3.jsonl"]
    assert [read_record(p).header["run_id"] for p in paths] == [p.stem for p in paths]
    monkeypatch.setenv("WORLD_SIZE", "8")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        t = _track(tmp_path, clock, steps=10, name="demo").start()
        t.close()
        assert t.path.name == f"20260101T000000Z-demo-rank{rank}.jsonl"
    assert len(list(tmp_path.glob("*.jsonl"))) == 5


def _failing_writes(monkeypatch, after: int):
    """os.write of the record module fails with ENOSPC (disk full) from the (after+1)-th call on."""
    import errno
    import os

    import wattlint.tracking.record as record

    real, calls = os.write, [0]

    def write(fd, data):
        calls[0] += 1
        if calls[0] > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(record.os, "write", write)
    return calls


def test_disk_full_when_the_run_ends_never_raises_into_the_users_code(tmp_path, monkeypatch):
    """The last window and the summary are written when the with block ends: a write failing there (disk full)
    used to raise OSError out of the block, so code after it (saving the trained model) never ran. Now it warns,
    and the lines written before stay a valid, readable (incomplete) record."""
    clock = Clock(100.0)
    after_block = []
    # the record stops being written; measuring and the budget guard go on (it said "tracking stopped")
    with pytest.warns(RuntimeWarning, match="stopped being written .*No space left") as caught:
        with _track(tmp_path, clock, steps=100) as t:
            for _ in range(25):  # 0.1 s steps, 1 s windows: 2 full windows written during the loop
                clock.t += 0.1
                t.step()
            lines_before = len(_lines(t.path))
            _failing_writes(monkeypatch, after=0)  # the disk fills up before the block ends
        after_block.append("checkpoint saved")
    # attributed to the user's with-statement, not to a line inside wattlint (it named tracker.py before)
    assert {w.filename for w in caught if "stopped being written" in str(w.message)} == {__file__}
    assert after_block == ["checkpoint saved"]
    monkeypatch.undo()
    lines = _lines(t.path)
    assert len(lines) == lines_before and lines[0]["type"] == "header"  # nothing lost, nothing torn
    rec = read_record(t.path)
    assert rec.summary is None and rec.status.startswith("incomplete")
    assert any("stopped being written" in n for n in t.summary()["notes"])


def test_disk_full_on_the_summary_line_and_failing_fsync_never_raise(tmp_path, monkeypatch):
    import errno

    import wattlint.tracking.record as record

    clock = Clock(100.0)
    with pytest.warns(RuntimeWarning) as caught:
        with _track(tmp_path, clock, steps=100) as t:
            for _ in range(25):
                clock.t += 0.1
                t.step()
            n = len(_lines(t.path))
            # at close: the last window (steps 21-25) is written, then the summary line fails; fsync fails too
            _failing_writes(monkeypatch, after=1)

            def bad_fsync(fd):
                raise OSError(errno.EIO, "Input/output error")

            monkeypatch.setattr(record.os, "fsync", bad_fsync)
    messages = " | ".join(str(w.message) for w in caught)
    assert "no summary line" in messages and "Input/output error" in messages
    monkeypatch.undo()
    lines = _lines(t.path)
    assert len(lines) == n + 1 and lines[-1]["type"] == "window"
    assert t._writer.fd == -1  # the descriptor was closed although fsync failed


def test_a_model_parallel_job_gets_its_static_estimate_for_its_layout(tmp_path):
    """A tensor x pipeline-parallel job states its layout to the tracker: the static estimate it is compared with is
    that job (TP 2 x PP 2 on 4 GPUs), not 4 data-parallel replicas of the whole model."""
    pytest.importorskip("transformers")
    from _parallel_fixtures import write_gpt_config

    cfg = write_gpt_config(tmp_path)
    clock = Clock(100.0)
    with _track(tmp_path / "runs", clock, steps=100, gpu="a100-sxm4-80gb", source=str(cfg), static=True, seq_len=256,
                batch_size=4, gpus=4, tensor_parallel=2, pipeline_parallel=2, micro_batch_size=1,
                precision="bf16", channels=[FakeChannel(250.0)]) as t:
        for _ in range(30):
            clock.t += 0.1
            t.step()
    h = _lines(t.path)[0]
    plan = h["static"]["plan"]
    assert (plan["tensor_parallel"], plan["pipeline_parallel"], plan["data_parallel"]) == (2, 2, 1)
    assert plan["grad_accum"] == 4  # batch 4 / (DP 1 x micro-batch 1)


def test_the_static_estimate_takes_the_loader_sample_time(tmp_path):
    """loader_sample_time reaches the tracker's static estimate like the other plan options (review: the Tracker
    had no such argument): 2 epochs of a 64-sample dataset at batch 16 wait 2 x 16 x 10 ms = 0.32 s."""
    src = tmp_path / "m.py"
    src.write_text("import torch\n\ndef build():\n    return torch.nn.Linear(8, 4)\n")
    clock = Clock(100.0)
    with _track(tmp_path / "runs", clock, epochs=2, dataset=64, gpu="a100-sxm4-80gb", source=f"{src}:build",
                inputs=["x=float32[16,8]"], batch_size=16, static=True, loader_sample_time=0.01,
                channels=[FakeChannel(250.0)]) as t:
        for _ in range(3):
            clock.t += 0.1
            t.step()
    h = _lines(t.path)[0]
    assert h["static"]["plan"]["loader_sample_time_s"] == 0.01
    assert h["static"]["total"]["loader_wait_h"] == pytest.approx(2 * 16 * 0.01 / 3600)


def test_the_tracker_takes_every_plan_option_of_the_command_line():
    """Each plan option of `wattlint estimate` (wattlint.options.OPTIONS, but the model inputs, the GPU and
    --compare, which the tracker takes its own way) is a Tracker keyword: review found goodput, torch_version,
    attention, host_op_time and others missing, so a tracked run's static estimate could not state them."""
    import inspect

    from wattlint.options import OPTIONS
    from wattlint.tracking.static import PLAN_OPTIONS

    kwargs = set(inspect.signature(Tracker.__init__).parameters)
    expected = {k for k in OPTIONS if k not in ("inputs", "gpu", "compare", "price_per_kwh")} | {"price"}
    assert set(PLAN_OPTIONS) == expected
    assert expected <= kwargs, sorted(expected - kwargs)


def test_the_static_estimate_takes_goodput_and_frontend_options(tmp_path):
    """goodput 0.5 doubles the static estimate's total time (productive steps / goodput: docs/PARALLEL.md); the
    frontend option attention='eager' reaches the trace (its plan states it) without breaking the projection."""
    src = tmp_path / "m.py"
    src.write_text("import torch\n\ndef build():\n    return torch.nn.Linear(8, 4)\n")
    totals = {}
    for goodput in (1.0, 0.5):
        clock = Clock(100.0)
        with _track(tmp_path / f"runs{goodput}", clock, steps=10, gpu="a100-sxm4-80gb", source=f"{src}:build",
                    inputs=["x=float32[16,8]"], batch_size=16, static=True, goodput=goodput, torch_version="2.1",
                    channels=[FakeChannel(250.0)]) as t:
            clock.t += 0.1
            t.step()
        h = _lines(t.path)[0]
        assert "error" not in h["static"], h["static"]
        assert h["static"]["plan"]["goodput"] == goodput
        totals[goodput] = h["static"]["total"]["time_h"]
    assert totals[0.5] == pytest.approx(2 * totals[1.0], rel=1e-4)  # the record keeps 6 significant digits


def test_cpu_channel_models_power_over_wall_time_when_the_step_clock_is_process_time():
    """clock='process' hands the channels CPU seconds: the CPU channel read 1 busy thread whatever ran and charged
    its power per CPU second. By hand, 2 threads busy for 1 wall second: 2 CPU seconds, busy 2, energy
    (10 W + 2 x 12 W) x 1 s = 34 J (the stated model, CPU_IDLE_W + CPU_W_PER_THREAD x threads); it read 44 J."""
    from wattlint.calibrate.meters import CPU_IDLE_W, CPU_W_PER_THREAD
    from wattlint.tracking.devices import CpuChannel

    cpu, wall = [0.0], [50.0]
    ch = CpuChannel(process_time=lambda: cpu[0], wall=lambda: wall[0])
    ch.begin(now=cpu[0])  # the tracker's clock is process time: now = CPU seconds
    cpu[0] += 2.0
    wall[0] += 1.0
    w = ch.window(now=cpu[0])
    assert (CPU_IDLE_W, CPU_W_PER_THREAD) == (10.0, 12.0)
    assert w["busy_threads"] == pytest.approx(2.0)
    assert w["energy_j"] == pytest.approx(34.0)
    # without its own wall clock (clock='wall': the tracker's now is wall time) the same window reads the same
    cpu, t = [0.0], [0.0]
    ch = CpuChannel(process_time=lambda: cpu[0])
    ch.begin(now=t[0])
    cpu[0], t[0] = 2.0, 1.0
    assert ch.window(now=t[0])["energy_j"] == pytest.approx(34.0)


def test_process_clock_cpu_run_gives_the_cpu_channel_a_wall_clock(tmp_path):
    t = Tracker(out=tmp_path, display="quiet", clock="process", device="cpu", static=False, pue=1.0,
                carbon_intensity=500.0)
    t.start()
    try:
        ch = t.channels[0]
        assert ch.kind == "cpu" and ch.wall is not None
        assert any("wall time" in n and "modelled CPU energy" in n for n in t.notes)
    finally:
        t.close()


def test_run_summary_compares_static_and_measured_in_one_unit():
    """'static 35.9 J vs projected 2.50 Wh' hid a factor of 250: each comparison line writes both values in the
    unit the larger reads best in (here Wh: 35.9 J = 0.00997 Wh), and a range in its central value's unit."""
    from wattlint.tracking.display import summary_lines

    a = {"steps": 300, "time_s": 15.0, "warmup_steps": 0, "warmup_time_s": 0.0, "stable": True,
         "step_time_s": {"mean": 0.05, "rel_ci90": 0.0, "p5": 0.0009, "p95": 0.05},
         "projection": {"total_steps": 400, "time_s": 150.0, "time_s_range": (90.0, 200.0)}}
    cmp_ = {"total_energy_kwh": {"static": 35.9 / 3.6e6, "measured": 2.5e-3, "basis": "projected", "error": -0.996},
            "step_time_s": {"static": 0.000345, "measured": 0.05, "basis": "measured", "error": -0.993}}
    text = "\n".join(summary_lines({"path": "r.jsonl", "status": "completed", "analysis": a, "comparison": cmp_,
                                    "static": {"energy_model": "prior"}}))
    assert "static 0.00997 Wh vs projected 2.50 Wh" in text
    assert "static 0.345 ms vs measured 50.0 ms" in text
    assert "p5–p95 0.900 ms – 50.0 ms" in text
    assert "[1.50 min – 3.33 min]" in text


def test_summary_without_a_record_says_none_was_written():
    """Review: 'wattlint run record: None (completed, ...)' when the record could not be created."""
    from wattlint.tracking.display import summary_lines

    first = summary_lines({"path": None, "status": "completed", "analysis": {"steps": 3, "time_s": 1.0}})[0]
    assert first.startswith("wattlint run record: none written (the record could not be created; see the notes)")
    assert "None" not in first


class _PiecewiseChannel(FakeChannel):
    """Integrates power(t) exactly over each window (FakeChannel holds the window's first power throughout)."""

    def __init__(self, power, clock):
        super().__init__(0.0)
        self.p, self.clock_ = power, clock

    def window(self, now):
        t0 = self._t if self._t is not None else now
        self._t = now
        n = 1000
        dt = (now - t0) / n
        return {"energy_j": sum(self.p(t0 + (i + 0.5) * dt) for i in range(n)) * dt, "source": "fake"}


def test_work_after_the_last_step_is_kept_apart_from_the_steps_totals(tmp_path):
    """Review: a final evaluation inside the tracked block (5 s at 100 W after 10 s of steps at 250 W) was in the
    measured energy (3,000 J) but not in the measured time (10 s): the steps' power read 300 W and the comparison
    with the estimate was 20 % high. The steps keep 10 s and 2,500 J; the 5 s and 500 J after them are reported
    apart."""
    clock = Clock(100.0)
    end_of_steps = 100.0 + 10.0
    chan = _PiecewiseChannel(lambda t: 250.0 if t < end_of_steps else 100.0, clock)
    with _track(tmp_path, clock, steps=100, channels=[chan]) as t:
        for _ in range(100):
            clock.t += 0.1
            t.step()
        clock.t += 5.0  # evaluation after the loop, inside the block
    rec = read_record(t.path)
    m = rec.summary["analysis"]["measured"]
    assert m["time_s"] == pytest.approx(10.0)
    assert m["device_energy_j"] == pytest.approx(2500.0, rel=1e-3)
    assert m["after_steps"]["time_s"] == pytest.approx(5.0)
    assert m["after_steps"]["device_energy_j"] == pytest.approx(500.0, rel=1e-3)
    assert rec.summary["analysis"]["channels"][0]["avg_power_w"] == pytest.approx(250.0)
    wins = [ln for ln in _lines(t.path) if ln["type"] == "window"]
    assert wins[-1]["after_steps_s"] == pytest.approx(5.0) and not any("after_steps_s" in w for w in wins[:-1])
    validator = jsonschema.Draft202012Validator(_schema())
    for ln in _lines(t.path):
        validator.validate(ln)
    # the record read back gives the same split (RunData from the lines)
    from wattlint.tracking.project import analyze
    again = analyze(rec.run_data(), SETTINGS)["measured"]
    assert again["device_energy_j"] == pytest.approx(2500.0, rel=1e-3)
    from wattlint.tracking.display import summary_lines
    text = "\n".join(summary_lines(t.summary()))
    assert "after the last step: 5.00 s, 500 J on the device(s)" in text


def test_wrong_settings_are_refused_before_any_record_is_opened(tmp_path):
    """Review: settings={"min_steps": 3} raised AttributeError from start() and left a 0-byte record behind;
    Settings(min_steps=-3, max_rel_ci=-1) was accepted ('mean step time +-0.1 % > -100 %')."""
    from wattlint.types import ConfigError

    with pytest.raises(ConfigError, match="settings=.*Settings\\(min_steps"):
        wattlint.track(out=tmp_path, display="quiet", static=False, settings={"min_steps": 3})
    assert list(tmp_path.iterdir()) == []
    for bad, word in (({"min_steps": -3}, "min_steps"), ({"min_steps": 2.5}, "min_steps"),
                      ({"max_rel_ci": -1}, "max_rel_ci"), ({"max_rel_ci": 0}, "max_rel_ci"),
                      ({"min_stable_s": float("nan")}, "min_stable_s"), ({"min_steps": True}, "min_steps")):
        with pytest.raises(ConfigError, match=word):
            Settings(**bad)
    assert Settings(min_steps=2, min_stable_s=0, max_rel_ci=1).min_steps == 2


def test_a_run_record_saved_with_a_byte_order_mark_is_still_read(tmp_path):
    """Review: a record opened and saved in an editor that adds a UTF-8 BOM was 'not a wattlint run record'."""
    from wattlint.tracking.record import is_run_record

    clock = Clock(100.0)
    with _track(tmp_path, clock, steps=20) as t:
        for _ in range(20):
            clock.t += 0.1
            t.step()
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + t.path.read_bytes())
    assert is_run_record(bom)
    assert read_record(bom).summary["steps"] == read_record(t.path).summary["steps"] == 20


def test_long_unstable_runs_analyse_on_a_geometric_schedule(tmp_path, monkeypatch):
    """Review: the analysis reads every step so far and ran at every window until the run was stable: 600,000 tiny
    steps in 0.05 s windows spent 88 % of the loop analysing. Past ANALYSIS_EVERY_N steps the next analysis waits
    until the run has grown by ANALYSIS_GROWTH; the last one (at the end) sees every step."""
    from wattlint.tracking import tracker as T

    calls = []
    real = T.analyze

    def unstable(data, settings):
        calls.append(len(data.step_times))
        return {**real(data, settings), "stable": False}

    monkeypatch.setattr(T, "analyze", unstable)
    monkeypatch.setattr(T, "ANALYSIS_EVERY_N", 50)
    clock = Clock(100.0)
    with _track(tmp_path, clock, steps=1000) as t:
        for _ in range(1000):
            clock.t += 0.1  # 1 s windows: 10 steps each, 100 windows
            t.step()
    # every window while the run has < 50 steps, then only windows ending >= 10 % past the last analysed step
    # count; the final window is always analysed, over all 1,000 steps
    ends = [w["first_step"] + len(w["step_times_s"]) for w in _lines(t.path) if w["type"] == "window"]
    expected, n = [], 0
    for end in ends[:-1]:
        if end < 50 or end - n >= 0.1 * n:
            expected.append(end)
            n = end
    assert calls == expected + [1000] and ends[-1] == 1000
    assert len(ends) > 85 and len(calls) < 45  # ~90 windows; every one was analysed before


def test_one_process_on_two_gpus_takes_the_estimates_host_power_per_gpu_once(tmp_path):
    """nn.DataParallel-style: one process measures 2 GPUs; the static estimate (made for those 2 GPUs) states its
    host per step for the job. The record divided it by the plan's 'gpus' (absent: 1) and charged 800 W for 2 A100
    SXM GPUs: 40 % too much energy. By hand, SXM/HGX node: 0.41 x 400 W = 164 W + (1/0.94 - 1) x (400 + 164) W =
    36.0 W -> 200 W per GPU, 400 W for the process."""
    import torch
    import torch.nn as nn

    clock = Clock(100.0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    with _track(tmp_path, clock, steps=200, gpu="a100-sxm4-80gb", model=model, example=torch.randn(32, 64),
                static=True, channels=[FakeChannel(300.0), FakeChannel(300.0)]) as t:
        for _ in range(50):
            clock.t += 0.1
            t.step()
    h = _lines(t.path)[0]
    per_gpu = 0.41 * 400.0 + (1 / 0.94 - 1) * (400.0 + 0.41 * 400.0)
    assert per_gpu == pytest.approx(200.0, abs=0.01)
    assert h["host_w"] == pytest.approx(2 * per_gpu, rel=1e-3)
    assert any("MODELLED at 400 W for this process's 2 GPU(s)" in n for n in h["notes"])


@pytest.mark.parametrize("kw, message", [
    (dict(region="XX"), "unknown region 'XX'"),
    (dict(region="aws:us-nowhere-9"), "unknown cloud region 'aws:us-nowhere-9'"),
    (dict(dataset="imagenet-99"), "unknown dataset 'imagenet-99'; did you mean 'imagenet-1k'?"),
])
def test_a_region_or_dataset_typo_is_refused_before_the_loop(tmp_path, kw, message):
    """track(steps=300, region='XX') trained to the end and then reported 'no plan: pass steps=...' and no
    estimate: the typo threw the plan away silently. TRACKING.md: such values are refused before the loop starts,
    as wattlint.estimate refuses them."""
    with pytest.raises(wattlint.types.ConfigError, match=message):
        _track(tmp_path, Clock(100.0), steps=300, **kw)
    assert not list(tmp_path.iterdir())  # no record started


@pytest.mark.parametrize("bad", ["backwards", "nan", "raises"])
def test_a_custom_clock_that_misbehaves_never_breaks_the_record_or_the_loop(tmp_path, bad):
    """A clock= function that jumps back wrote a negative window time (the record then unreadable by its own
    reader), a NaN raised IndexError out of __exit__ into the user's code. Such readings are held at the previous
    one and counted in the summary's notes; the record reads back."""
    from wattlint.tracking.record import read_record

    t = [100.0]
    n = [0]

    def clock():
        n[0] += 1
        if n[0] % 7 == 0:
            if bad == "backwards":
                return t[0] - 50.0
            if bad == "nan":
                return float("nan")
            raise RuntimeError("clock source gone")
        return t[0]

    with _track(tmp_path, clock, steps=200) as tr:
        for _ in range(60):
            t[0] += 0.1
            tr.step()
    rec = read_record(tr.path)
    assert rec.summary["status"] == "completed"
    assert any("went backwards or returned a non-finite value" in x for x in rec.summary.get("notes", []))
    assert all(w["t1"] >= w["t0"] for w in _lines(tr.path) if w["type"] == "window")
