"""Review of the tracking feature (records of real training runs): work after the loop when the last step closed a
window, resumed runs, power on the process clock, hand-edited event lines, the summary's notes in compare-run, the
live line's period, upper-case .JSONL, a tracker collected before close. Expected values by hand in the comments."""

import gc
import io
import json

import pytest

from _cli_errors import one_error_line
from _fake_nvml import Clock, quiet_track
from _tiny_trainers import tiny_hf_trainer

from wattlint.cli import main
from wattlint.tracking import Settings
from wattlint.tracking.devices import CpuChannel, FakeChannel
from wattlint.tracking.display import summary_lines
from wattlint.tracking.project import PlanInfo, RunData, analyze
from wattlint.tracking.record import read_record
from wattlint.tracking.tracker import Tracker

SETTINGS = Settings(min_steps=10, min_stable_s=1.0, max_rel_ci=0.05)


_track = quiet_track


class _TwoPowers(FakeChannel):
    """250 W until ``switch`` (the steps), 100 W after it (an evaluation after the loop): exact integral."""

    def __init__(self, switch):
        super().__init__(0.0)
        self.switch = switch

    def window(self, now):
        t0 = self._t if self._t is not None else now
        self._t = now
        before = max(0.0, min(now, self.switch) - t0)
        after = max(0.0, now - max(t0, self.switch))
        return {"energy_j": 250.0 * before + 100.0 * after, "source": "fake"}


# ---- 1. work after the loop when the last step closed a window --------------------------------------------------

@pytest.mark.parametrize("window_s", [0.1, 0.6])
def test_work_after_the_loop_is_after_steps_whatever_the_step_length(tmp_path, window_s, capsys):
    """Review: 16 steps of 0.25 s at 250 W, then 5 s of evaluation at 100 W inside the block. With 0.1 s windows
    every step closes a window and close() closed none: the 5 s were analysed as steps not yet in a window, at the
    steps' 250 W (device energy 1,000 + 1,250 J, no after_steps), and compare-run of the same record showed 1,000 J.
    By hand: steps 16 x 0.25 = 4.0 s and 250 W x 4.0 s = 1,000 J; after them 5.0 s and 100 W x 5 s = 500 J. With
    0.6 s windows (closed at steps 3, 6, 9, 12, 15) step 16 is still open at the end: the same numbers."""
    clock = Clock(100.0)
    chan = _TwoPowers(switch=100.0 + 16 * 0.25)
    with _track(tmp_path, clock, steps=16, window_s=window_s, channels=[chan]) as t:
        for _ in range(16):
            clock.t += 0.25
            t.step()
        clock.t += 5.0
    m = t.summary()["analysis"]["measured"]
    assert m["time_s"] == pytest.approx(4.0)
    assert m["device_energy_j"] == pytest.approx(1000.0)
    assert m["after_steps"]["time_s"] == pytest.approx(5.0)
    assert m["after_steps"]["device_energy_j"] == pytest.approx(500.0)
    # compare-run of the same record reprints what the run showed
    live = summary_lines(t.summary())
    assert main(["compare-run", str(t.path)]) == 0
    assert capsys.readouterr().out.splitlines() == live
    assert main(["compare-run", str(t.path), "--format", "json"]) == 0
    again = json.loads(capsys.readouterr().out)["analysis"]["measured"]
    assert again["device_energy_j"] == pytest.approx(1000.0)
    assert again["after_steps"]["device_energy_j"] == pytest.approx(500.0)


# ---- 2. resumed runs ---------------------------------------------------------------------------------------------

def _resumed(times, boundaries, **plan):
    return analyze(RunData(times, boundaries, None, [], [], PlanInfo(pue=1.0, **plan)), SETTINGS)["projection"]


def test_a_run_resumed_mid_epoch_reads_its_epoch_length_from_where_it_started():
    """12-step epochs, resumed at global step 5 (5 steps into the first epoch), 19 steps still to run: this run's
    boundaries are at its steps 7 (global 12) and 19 = past its end, so 1 boundary in all. The first boundary
    came after 7 steps, no epoch length: it was read as 7-step epochs (ceil(19 / 7) - 1 = 2 boundaries, 1 to come).
    By hand: epoch length 7 + 5 = 12; at step 10 with the boundary at 7 seen, 0 remain."""
    times = [0.1] * 7 + [1.1] + [0.1] * 2
    p = _resumed(times, [7], steps=19, start_step=5, start_in_epoch=5)
    assert p["steps_per_epoch"]["value"] == 12 and p["remaining_boundaries"] == 0
    # the position in the epoch not known: two boundaries 12 steps apart tell the length; the first alone does not
    times = [0.1] * 7 + [1.1] + [0.1] * 11 + [1.1] + [0.1] * 5  # 25 steps, boundaries at 7 and 19
    p = _resumed(times, [7, 19], steps=40, start_step=5)
    # boundaries of this run's 40 steps: 7, 19, 31 -> 3, 2 seen, 1 remains
    assert p["steps_per_epoch"]["value"] == 12 and p["remaining_boundaries"] == 1
    p = _resumed(times[:19], [7], steps=40, start_step=5)
    assert "steps_per_epoch" not in p and p["remaining_boundaries"] == 0
    # the plan's own epoch length (epochs + dataset): the position is the start step modulo it, 29 % 12 = 5:
    # boundaries at 7, 19, 31 of 40 steps -> 3, 1 seen, 2 remain
    p = _resumed(times[:19], [7], steps=40, steps_per_epoch=12, start_step=29)
    assert p["remaining_boundaries"] == 2
    # a fresh run is unchanged: its first boundary is one epoch (7-step epochs over 19 steps: 7, 14 -> 1 remains)
    p = _resumed(times[:19], [7], steps=19)
    assert p["steps_per_epoch"]["value"] == 7 and p["remaining_boundaries"] == 1


def test_resume_options_are_checked(tmp_path):
    from wattlint.types import ConfigError

    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="start_step"):
            Tracker(out=tmp_path, start_step=bad)


torch = pytest.importorskip("torch")


def _hf_resumable(tmp_path, callbacks):
    return tiny_hf_trainer(tmp_path, callbacks, 24, num_train_epochs=2, gradient_accumulation_steps=1,
                           save_strategy="steps", save_steps=5)


def test_hf_trainer_resumed_from_a_checkpoint_plans_the_steps_still_to_run(tmp_path):
    """24 samples / batch 2 = 12 steps per epoch, 2 epochs = 24 steps; resumed from checkpoint-5: 19 steps still to
    run, 5 of them done in the first epoch, whose boundary falls at this run's step 7 (global 12). The record planned
    24 steps ('the loop ended after 19 of the plan's 24 steps') and read 7-step epochs (2 boundaries to come)."""
    from wattlint.tracking.hf import WattlintCallback

    _hf_resumable(tmp_path, []).train()
    cb = WattlintCallback(out=tmp_path / "runs", display="quiet", window_s=0.01, static=False, seq_len=16)
    _hf_resumable(tmp_path, [cb]).train(resume_from_checkpoint=str(tmp_path / "hf" / "checkpoint-5"))
    rec = read_record(cb.tracker.path)
    s = rec.summary
    assert s["status"] == "completed" and s["steps"] == 19
    assert rec.header["plan"]["request"]["steps"] == 19
    assert rec.header["plan"]["resolved"]["start_step"] == 5
    assert rec.header["plan"]["resolved"]["start_in_epoch"] == 5
    assert not s.get("notes")  # no 'ended after 19 of the plan's 24 steps'
    p = s["analysis"]["projection"]
    assert s["analysis"]["boundaries"] == 1 and p["remaining_boundaries"] == 0
    assert p["steps_per_epoch"]["value"] == 12


def test_lightning_resumed_mid_epoch_plans_the_steps_still_to_run(tmp_path):
    """12 batches per epoch, 2 epochs = 24 steps; resumed from the step-10 checkpoint: Lightning starts at batch 10
    of epoch 0, so 14 steps remain and the boundary falls at this run's step 2. The record planned 24 steps and read
    2-step epochs (ceil(24 / 2) - 1 = 11 boundaries, 10 to come)."""
    L = pytest.importorskip("lightning.pytorch")
    from wattlint.tracking.lightning import WattlintCallback

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(8, 2)

        def training_step(self, batch, idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(48, 8), torch.randint(0, 2, (48,)))
    loader = torch.utils.data.DataLoader(ds, batch_size=4)  # 12 batches per epoch
    common = dict(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    ck = L.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ck"), every_n_train_steps=10, save_top_k=-1)
    L.Trainer(callbacks=[ck], **common).fit(Tiny(), loader)
    cb = WattlintCallback(out=tmp_path / "runs", display="quiet", window_s=0.01, static=False)
    L.Trainer(callbacks=[cb], enable_checkpointing=False, **common).fit(
        Tiny(), loader, ckpt_path=str(tmp_path / "ck" / "epoch=0-step=10.ckpt"))
    rec = read_record(cb.tracker.path)
    s = rec.summary
    assert s["status"] == "completed" and s["steps"] == 14
    assert rec.header["plan"]["request"]["steps"] == 14
    assert rec.header["plan"]["resolved"]["start_in_epoch"] == 10
    assert not s.get("notes")
    p = s["analysis"]["projection"]
    assert s["analysis"]["boundaries"] == 1 and p["remaining_boundaries"] == 0
    assert p["steps_per_epoch"]["value"] == 12


# ---- 3. power on the process clock -------------------------------------------------------------------------------

def test_process_clock_power_is_energy_over_wall_time(tmp_path, capsys):
    """clock='process': a step takes 0.1 wall s and 0.02 CPU s (0.2 busy threads). Windows lasted their CPU seconds
    and drew their energy over wall seconds: the power read 1.24 J / 0.02 s = 62 W. By hand: P = 10 W + 12 W x 0.2 =
    12.4 W (the stated model); energy per step 12.4 W x 0.1 s = 1.24 J; plan 200 steps -> 248 J."""
    cpu, wall = [0.0], [1000.0]
    chan = CpuChannel(process_time=lambda: cpu[0], wall=lambda: wall[0])
    with _track(tmp_path, lambda: cpu[0], steps=200, window_s=0.1, channels=[chan]) as t:
        for _ in range(100):
            cpu[0] += 0.02
            wall[0] += 0.1
            t.step()
    a = t.summary()["analysis"]
    assert a["channels"][0]["avg_power_w"] == pytest.approx(12.4)
    assert a["per_step"]["device_power_w"] == pytest.approx(12.4)
    assert a["per_step"]["device_energy_j"] == pytest.approx(1.24)
    assert a["projection"]["device_energy_j"] == pytest.approx(248.0)
    assert main(["compare-run", str(t.path), "--format", "json"]) == 0
    again = json.loads(capsys.readouterr().out)["analysis"]
    assert again["channels"][0]["avg_power_w"] == pytest.approx(12.4, rel=1e-5)


# ---- 4. hand-edited event lines -----------------------------------------------------------------------------------

@pytest.mark.parametrize("edit, field", [(lambda e: e.pop("time_s"), "'time_s' is a required property"),
                                         (lambda e: e.update(time_s="x"), "event.time_s: 'x' is not of type")])
def test_a_stable_event_without_a_number_time_is_refused_with_one_line(tmp_path, capsys, edit, field):
    clock = Clock(100.0)
    with _track(tmp_path, clock, steps=100) as t:
        for _ in range(100):
            clock.t += 0.1
            t.step()
    lines = t.path.read_text().splitlines()
    k = next(i for i, ln in enumerate(lines) if json.loads(ln).get("kind") == "stable")
    ev = json.loads(lines[k])
    edit(ev)
    lines[k] = json.dumps(ev)
    t.path.write_text("\n".join(lines) + "\n")
    assert main(["compare-run", str(t.path)]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert f"{t.path}:{k + 1}:" in err and field in err


# ---- 5. the summary's notes in compare-run ------------------------------------------------------------------------

def test_compare_run_reprints_the_summarys_own_notes(tmp_path, capsys):
    """The loop ended after 14 of the plan's 24 steps: the run's summary said so, compare-run did not."""
    clock = Clock(100.0)
    with _track(tmp_path, clock, steps=24) as t:
        for _ in range(14):
            clock.t += 0.1
            t.step()
    note = "the loop ended after 14 of the plan's 24 steps"
    assert any(note in n for n in read_record(t.path).summary["notes"])
    assert main(["compare-run", str(t.path)]) == 0
    assert note in capsys.readouterr().out
    assert main(["compare-run", str(t.path), "--format", "json"]) == 0
    assert any(note in n for n in json.loads(capsys.readouterr().out)["notes"])


# ---- 6. the live line every N steps -------------------------------------------------------------------------------

def test_the_line_display_prints_every_n_steps_not_every_window(tmp_path):
    """every=1000 over 100 steps with a window every step: a line per window (100 lines); by hand none (100 < 1000),
    and with every=40 lines at steps 40 and 80."""
    for every, expected in ((1000, []), (40, ["step 40/100", "step 80/100"])):
        clock, buf = Clock(100.0), io.StringIO()
        with _track(tmp_path / str(every), clock, steps=100, window_s=0.05, display="line", every=every,
                    stream=buf) as t:
            for _ in range(100):
                clock.t += 0.1
                t.step()
        got = [ln.split(" | ")[0].removeprefix("wattlint: ") for ln in buf.getvalue().splitlines()
               if ln.startswith("wattlint: step")]
        assert got == expected, got
        assert "wattlint run record:" in buf.getvalue()  # the summary at the end


# ---- 7. minor ----------------------------------------------------------------------------------------------------

def test_an_upper_case_jsonl_out_is_the_record_file(tmp_path):
    """out='run.JSONL' made a folder of that name with the record inside."""
    clock = Clock(100.0)
    with _track(tmp_path / "run.JSONL", clock, steps=3) as t:
        for _ in range(3):
            clock.t += 0.1
            t.step()
    assert (tmp_path / "run.JSONL").is_file() and t.path == tmp_path / "run.JSONL"
    assert read_record(t.path).summary["status"] == "completed"
    from wattlint.types import ConfigError

    with pytest.warns(RuntimeWarning, match="never overwritten"):  # the next free name, never overwritten
        t2 = _track(tmp_path / "run.JSONL", clock, steps=3).start()
    t2.close()
    assert t2.path == tmp_path / "run-2.JSONL"
    with pytest.raises(ConfigError, match="JSON Lines"):
        _track(tmp_path / "run.JSON", clock, steps=3).start()
    # and a folder holding it is a folder of run records for `wattlint fit` (it globbed *.jsonl only)
    from wattlint.tracking.fit import is_run_record_args, record_files

    assert record_files([str(tmp_path)]) == [tmp_path / "run-2.JSONL", tmp_path / "run.JSONL"]
    assert is_run_record_args([str(tmp_path)])


def test_a_tracker_collected_before_close_closes_its_record(tmp_path):
    """The Hugging Face Trainer raised (no exception hook), the user caught it and dropped the trainer: the atexit
    hook holds the tracker weakly, so the record never got a summary. Collected, the tracker closes it."""
    clock = Clock(100.0)
    t = _track(tmp_path, clock, steps=10)
    t.start()
    for _ in range(5):
        clock.t += 0.1
        t.step()
    path = t.path
    del t
    gc.collect()
    s = read_record(path).summary
    assert s is not None and s["steps"] == 5
    assert s["status"].startswith("interrupted") and "garbage-collected" in s["status"]


def test_wattlint_tracking_is_reachable_from_the_package():
    """The docs write wattlint.tracking.Settings after `import wattlint`: an AttributeError until the subpackage
    had been imported some other way. Run in a fresh interpreter, where nothing imported it yet."""
    import subprocess
    import sys

    code = ("import sys, wattlint; assert 'wattlint.tracking' not in sys.modules; "
            "print(wattlint.tracking.Settings.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "Settings", out.stderr


def test_a_resumed_run_planned_in_epochs_runs_the_rest_of_the_schedule(tmp_path):
    """epochs=2 of a 1,200-sample dataset at batch 100 = 24 steps; resumed at step 17, 5 steps into its epoch:
    7 steps remain (the plan read 24 and the note said the loop 'ended after 7 of the plan's 24 steps')."""
    clock = Clock(100.0)
    with _track(tmp_path, clock, epochs=2, dataset_size=1200, batch_size=100, start_step=17,
                start_in_epoch=5) as t:
        for _ in range(7):
            clock.t += 0.1
            t.step()
    rec = read_record(t.path)
    assert rec.header["plan"]["resolved"]["steps"] == 7, rec.header["plan"]["resolved"]
    assert not any("ended after" in n for n in rec.summary.get("notes", [])), rec.summary.get("notes")
    assert any("resumed at optimizer step 17: the plan's 24 steps less those done, 7 to run" in n
               for n in rec.header.get("notes", []) + rec.summary.get("notes", []))


def test_a_resumed_run_compares_its_measured_rest_with_the_static_estimate_of_the_rest(tmp_path):
    """Planned in epochs (24 steps), resumed at 17: the static estimate priced the whole schedule, so the summary
    compared 7 measured steps with 24 estimated ones (+243 %). Its totals are those of the 7 steps left: the static
    per-step time x 7. Resumed at or past the plan's end, the plan is kept (it vanished: 'no plan')."""
    import torch

    def run(start, n):
        clock = Clock(100.0)
        m = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
        with _track(tmp_path, clock, model=m, static=True, gpu="a100", inputs=["x=float32[100,64]"], epochs=2,
                    dataset_size=1200, batch_size=100, start_step=start) as t:
            for _ in range(n):
                clock.t += 0.01
                t.step()
        return read_record(t.path)

    rec = run(17, 7)
    static = rec.header["static"]
    assert static["plan"]["steps"] == 7
    assert static["total"]["time_h"] * 3600 == pytest.approx(7 * static["per_step"]["time_s"], rel=1e-3)
    late = run(30, 3)
    assert late.header["plan"]["resolved"]["steps"] == 24
    assert any("at or past the plan's 24 steps: the plan is kept as given" in n
               for n in late.header.get("notes", []) + late.summary.get("notes", []))
