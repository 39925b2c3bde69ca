"""Review walk of the tracking feature (2026-12-07): an explicit out=...jsonl that exists (two ranks of one job, a
callback reused for a second fit, a name taken between a check and the open), the printout of a run whose record
stopped being written, `wattlint fit` on a folder with a damaged / newer / unreadable record, a record with two
summary lines, and a run too short for an interval. Second review: a record not at the out= file given is said (a
rank-0-only job), the budget guard outlives a failed record write, and `fit` counts a job's ranks as one run.
Expected values by hand in the comments."""

import errno
import io
import json
import math
import warnings
from pathlib import Path

import pytest

from _cli_errors import one_error_line
from _fake_nvml import Clock, quiet_track
from _tiny_trainers import tiny_hf_trainer
from test_track_fit import write_record

import wattlint.tracking.record as record_mod
from wattlint.tracking.display import summary_lines
from wattlint.tracking.record import read_record


def _run(t, clock, steps, dt=0.25):
    for _ in range(steps):
        clock.t += dt
        t.step()


def _runtime_warnings(caught):
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


# ---- 1. an explicit out= file: one per rank, never overwritten, never a crash of the training ---------------------

def test_two_ranks_with_one_explicit_out_file_each_write_their_own_record(tmp_path, monkeypatch):
    """Review: two ranks of one job started with out='rk/run.jsonl': one wrote run.jsonl, the other died with
    ConfigError 'exists' (a hung / killed job). Each rank now gets run-rank<N>.jsonl, as in a folder; a second job
    with the same out= gets run-rank<N>-2.jsonl, with a warning naming it, and the first job's records are kept."""
    out = tmp_path / "rk" / "run.jsonl"
    monkeypatch.setenv("WORLD_SIZE", "2")
    clocks = [Clock(100.0), Clock(100.0)]

    def job():
        trackers = []
        for r in (0, 1):  # both ranks open at once, as in a job
            monkeypatch.setenv("RANK", str(r))
            monkeypatch.setenv("LOCAL_RANK", str(r))
            trackers.append(quiet_track(tmp_path, clocks[r], out=out, steps=8).start())
        for t, c in zip(trackers, clocks):
            _run(t, c, 8)
            t.close()
        return trackers

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = job()
    assert [t.path for t in first] == [out.parent / "run-rank0.jsonl", out.parent / "run-rank1.jsonl"]
    # second review: the file written is not out=, so each rank says so (it was silent: a rank-0-only job's later
    # `compare-run run.jsonl` found no file)
    assert not out.exists() and _runtime_warnings(caught) == [
        f"wattlint: this run's record is {out.parent / f'run-rank{r}.jsonl'}, not out={str(out)!r}: rank {r} of a "
        f"2-process job (RANK / WORLD_SIZE set) writes its own record, named -rank{r} as in a folder" for r in (0, 1)]
    kept = {t.path: t.path.read_bytes() for t in first}
    for r, t in enumerate(first):
        rec = read_record(t.path)
        assert rec.header["job"]["rank"] == r and rec.header["job"]["world_size"] == 2
        assert rec.summary["status"] == "completed" and rec.summary["steps"] == 8
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = job()
    assert [t.path for t in second] == [out.parent / "run-rank0-2.jsonl", out.parent / "run-rank1-2.jsonl"]
    said = _runtime_warnings(caught)  # one warning per rank, naming both reasons
    assert len(said) == 2 and all("never overwritten" in m and "-process job" in m for m in said)
    assert str(out.parent / "run-rank0-2.jsonl") in said[0] and str(out.parent / "run-rank1-2.jsonl") in said[1]
    assert {p: p.read_bytes() for p in kept} == kept  # the first job's records untouched
    assert all(read_record(t.path).summary["status"] == "completed" for t in second)


def test_only_rank_0_tracking_says_its_record_is_not_the_out_file_given(tmp_path, monkeypatch):
    """Second review: only rank 0 of a torchrun job (WORLD_SIZE=4) tracks, out='r/run.jsonl': the record is
    r/run-rank0.jsonl (rank 0 keeps the suffix, as in a folder: docs/TRACKING.md), and nothing said so, so a later
    `wattlint compare-run r/run.jsonl` found no file. Now one RuntimeWarning, a note in the record, and the
    end-of-run summary line name the file written and why. A single process writing out= as given says nothing."""
    out = tmp_path / "r" / "run.jsonl"
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    written = tmp_path / "r" / "run-rank0.jsonl"
    why = "rank 0 of a 4-process job (RANK / WORLD_SIZE set) writes its own record, named -rank0 as in a folder"
    clock, stream = Clock(100.0), io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_track(tmp_path, clock, out=out, steps=8, display="line", every=1000, stream=stream) as t:
            _run(t, clock, 8)
    assert t.path == written and not out.exists()
    said = f"this run's record is {written}, not out={str(out)!r}: {why}"
    assert _runtime_warnings(caught) == [f"wattlint: {said}"]
    assert said in read_record(written).header["notes"]
    # 8 steps of 0.25 s: the run line as before, then where the record went instead of out=
    assert stream.getvalue().splitlines()[0] == (f"wattlint run record: {written} (completed, 8 steps, 2.00 s); not "
                                                 f"out={str(out)!r}: {why}")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k)
    single, stream = tmp_path / "single.jsonl", io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_track(tmp_path, clock, out=single, steps=8, display="line", every=1000, stream=stream) as t:
            _run(t, clock, 8)
    assert t.path == single and _runtime_warnings(caught) == []
    assert stream.getvalue().splitlines()[0] == f"wattlint run record: {single} (completed, 8 steps, 2.00 s)"


def test_an_existing_explicit_out_file_is_kept_and_the_record_goes_to_the_next_free_name(tmp_path):
    """The user's own x.jsonl is never overwritten, and the run is not refused: x-2.jsonl, then x-3.jsonl; the
    warning and the record's notes name the file actually written."""
    x = tmp_path / "x.jsonl"
    x.write_text("my data\n")
    clock = Clock(100.0)
    for n in (2, 3):
        with pytest.warns(RuntimeWarning, match="never overwritten") as caught:
            with quiet_track(tmp_path, clock, out=x, steps=4) as t:
                _run(t, clock, 4)
        assert t.path == tmp_path / f"x-{n}.jsonl"
        assert any(str(t.path) in str(w.message) for w in caught)
        rec = read_record(t.path)
        assert rec.summary["status"] == "completed" and rec.summary["steps"] == 4
        assert any(str(t.path) in note for note in rec.header["notes"])
    assert x.read_text() == "my data\n"


def test_a_name_taken_between_the_check_and_the_open_is_no_error(tmp_path, monkeypatch):
    """Review: x.jsonl created by another process after the exists-check and before the exclusive open raised the
    reader's InputError into the training. Simulated by an exists() that does not see the file: the record goes to
    x-2.jsonl."""
    x = tmp_path / "x.jsonl"
    x.write_text("another process's\n")
    real = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self, *a, **k: False if self == x else real(self, *a, **k))
    clock = Clock(100.0)
    with pytest.warns(RuntimeWarning, match="never overwritten"):
        with quiet_track(tmp_path, clock, out=x, steps=4) as t:
            _run(t, clock, 4)
    assert t.path == tmp_path / "x-2.jsonl" and read_record(t.path).summary["steps"] == 4
    assert x.read_text() == "another process's\n"


def test_a_hf_callback_with_an_explicit_file_reused_for_a_second_train(tmp_path):
    """Review: WattlintCallback(out='x.jsonl') reused for a second trainer.train() killed it with ConfigError. Now:
    x.jsonl, then x-2.jsonl, both completed (2 optimizer steps each), the first record unchanged."""
    from wattlint.tracking.hf import WattlintCallback

    x = tmp_path / "x.jsonl"
    cb = WattlintCallback(out=x, display="quiet", window_s=0.01, static=False)
    trainer = tiny_hf_trainer(tmp_path, [cb], 8, max_steps=2, save_strategy="no")
    trainer.train()
    assert cb.tracker.path == x
    before = x.read_bytes()
    with pytest.warns(RuntimeWarning, match="never overwritten"):
        trainer.train()
    assert cb.tracker.path == tmp_path / "x-2.jsonl"
    assert x.read_bytes() == before
    for p in (x, tmp_path / "x-2.jsonl"):
        s = read_record(p).summary
        assert s["status"] == "completed" and s["steps"] == 2


def test_a_lightning_callback_with_an_explicit_file_reused_for_a_second_fit(tmp_path):
    torch = pytest.importorskip("torch")
    L = pytest.importorskip("lightning.pytorch")
    from test_track_callbacks import _lightning_tiny
    from wattlint.tracking.lightning import WattlintCallback

    torch.manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(8, 8), torch.randint(0, 2, (8,)))
    loader = torch.utils.data.DataLoader(ds, batch_size=4)  # 2 batches = 2 optimizer steps per epoch
    x = tmp_path / "x.jsonl"
    cb = WattlintCallback(out=x, display="quiet", window_s=0.01, static=False)
    paths = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[cb]).fit(_lightning_tiny(L),
                                                                                               loader)
            paths.append(cb.tracker.path)
    assert paths == [x, tmp_path / "x-2.jsonl"]
    assert any(str(paths[1]) in m for m in _runtime_warnings(caught))
    assert [read_record(p).summary["steps"] for p in paths] == [2, 2]


# ---- 2. a record that stopped being written while the run went on -------------------------------------------------

def test_the_printout_says_when_the_record_stopped_being_written(tmp_path, monkeypatch):
    """Review: disk full at step 98 of 300: the printout read '(completed, 300 steps)' over a record of 98 steps and
    no summary, and reading it back said the process was killed. By hand: 0.25 s steps, 1 s windows from t = 100
    close at steps 4, 8, 12, ...; the writes fail from the window of step 12: the record holds 8 steps."""
    clock = Clock(100.0)
    stream = io.StringIO()
    t = quiet_track(tmp_path, clock, steps=30, display="line", every=1000, stream=stream).start()
    _run(t, clock, 8)
    assert t._writer.lines == 3  # header + the windows of steps 4 and 8

    def full(obj):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(t._writer, "write", full)
    with pytest.warns(RuntimeWarning, match="stopped being written at step 12"):
        _run(t, clock, 22)
    t.close()
    first, second = stream.getvalue().splitlines()[:2]
    assert first == (f"wattlint run record: {t.path} INCOMPLETE: it stopped being written at step 12 because a write "
                     "to it failed (OSError: [Errno 28] No space left on device); it holds 8 step(s) and no summary "
                     "line")
    assert second.startswith("  the run itself: completed, 30 steps, ")
    assert second.endswith(" (measuring and the budget guard went on after the record stopped; below: as measured in "
                           "memory, not all of it in the record)")
    rec = read_record(t.path)
    assert rec.summary is None and sum(len(w["step_times_s"]) for w in rec.windows) == 8
    assert rec.status == ("incomplete (no summary line: the process was killed, is still running, or a write to the "
                          "record failed)")


@pytest.mark.parametrize("fails", ["disk full from step 12", "the budget event line only"])
def test_the_budget_guard_keeps_stopping_after_a_record_write_failed(tmp_path, fails):
    """Second review: one failed record write turned the budget guard off for the rest of the run (on_budget='stop'
    ran all 200 steps, status completed), and a failing budget event line lost its stop. By hand: 0.25 s steps, 1 s
    windows close at steps 4, 8, 12, ...; no plan (no projection) and a stable phase never declared (min_steps
    1,000), so every window is analysed and only the energy already spent counts: the 250 W fake device + the 80 W
    host fallback, PUE 1, = 330 J per 1 s window, 330 x k J after window k. max_kwh = 0.001 kWh = 3,600 J: 330 x 10 =
    3,300 J is under it, 330 x 11 = 3,630 J over it: the guard stops at window 11, step 44."""
    from wattlint.tracking import Settings

    clock = Clock(100.0)
    stream = io.StringIO()
    t = quiet_track(tmp_path, clock, max_kwh=1e-3, on_budget="stop", settings=Settings(min_steps=1000),
                    display="line", every=1000, stream=stream).start()
    real = t._writer.write

    def write(obj):
        if (fails == "disk full from step 12" and t._n >= 12) or obj.get("kind") == "budget":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj)
    t._writer.write = write
    ran = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with t:
            for _ in range(200):
                clock.t += 0.25
                ran += 1
                t.step()
    assert ran == 44 and t.summary()["status"] == "stopped: budget"
    budget = [str(w.message) for w in caught if w.category.__name__ == "BudgetWarning"]
    assert len(budget) == 1 and "already spent 0.001008 kWh" in budget[0] and "at step 44" in budget[0]
    stopped_at, held = (12, 8) if fails == "disk full from step 12" else (44, 44)  # the window of step 44 is written
    assert _runtime_warnings(caught) == [
        f"wattlint: the run record {t.path} stopped being written at step {stopped_at} (OSError: [Errno 28] No space "
        "left on device): it keeps the lines written before and has no summary line (read back as incomplete); "
        "measuring and the budget guard go on (on_budget='stop' still stops the run); training continues"]
    rec = read_record(t.path)
    assert rec.summary is None and not [e for e in rec.events if e.get("kind") == "budget"]
    assert sum(len(w["step_times_s"]) for w in rec.windows) == held
    first, second = stream.getvalue().splitlines()[:2]
    assert first.startswith(f"wattlint run record: {t.path} INCOMPLETE: it stopped being written at step "
                            f"{stopped_at} because a write to it failed")
    assert second == ("  the run itself: stopped: budget, 44 steps, 11.0 s (measuring and the budget guard went on "
                      "after the record stopped; below: as measured in memory, not all of it in the record)")


# ---- 3. `wattlint fit` on a folder: damaged, newer, unreadable records ------------------------------------------

@pytest.fixture
def runs(tmp_path):
    d = tmp_path / "runs"
    write_record(d / "a1.jsonl", model_hash="a", t_meas=0.12, t_pred=0.10)
    write_record(d / "a2.jsonl", model_hash="a", t_meas=0.15, t_pred=0.10)
    write_record(d / "b1.jsonl", model_hash="b", t_meas=0.20, t_pred=0.25)
    return d


def _newer(src, dst):
    lines = src.read_text().splitlines(keepends=True)
    h = json.loads(lines[0])
    h["schema"] = "wattlint.run/2"
    dst.write_text(json.dumps(h) + "\n" + "".join(lines[1:]))
    return dst


def test_fit_names_a_damaged_record_of_a_folder_and_how_to_leave_it_out(run_cli, runs, tmp_path):
    lines = (runs / "a1.jsonl").read_text().splitlines(keepends=True)
    lines[2] = '{"type": "window", "i": "two"}\n'  # line 3: a window edited by hand
    (runs / "bad.jsonl").write_text("".join(lines))
    code, out, err = run_cli("fit", runs, "--out", tmp_path / "c")
    line = one_error_line(err)
    assert code == 2 and f"{runs / 'bad.jsonl'}:3: malformed run record" in line
    assert f"move it out of {runs} to fit the others" in line


def test_fit_lists_a_newer_record_it_leaves_out(run_cli, runs, tmp_path):
    _newer(runs / "a1.jsonl", runs / "newer.jsonl")
    code, out, err = run_cli("fit", runs, "--out", tmp_path / "c")
    assert code == 0, err
    assert ("  left out newer.jsonl: written as wattlint.run/2 by a newer wattlint version (this one reads "
            "wattlint.run/1); update wattlint to fit it") in out.splitlines()
    doc = json.loads((tmp_path / "c" / "run_correction.json").read_text())  # fitted from the 3 others only
    assert len(doc["runs"]) == 3 and "newer.jsonl" not in json.dumps(doc)
    (runs / "b1.jsonl").unlink()
    (runs / "a2.jsonl").unlink()
    code, out, err = run_cli("fit", runs, "--out", tmp_path / "c")  # 1 usable record: the error names it too
    assert code == 2 and "newer.jsonl: written as wattlint.run/2 by a newer wattlint version" in one_error_line(err)


def test_fit_of_a_folder_of_newer_records_says_so(run_cli, runs, tmp_path):
    d = tmp_path / "newer"
    d.mkdir()
    for name in ("a1", "a2"):
        _newer(runs / f"{name}.jsonl", d / f"{name}.jsonl")
    code, out, err = run_cli("fit", d)
    line = one_error_line(err)
    assert code == 2 and "2 written as wattlint.run/2 by a newer wattlint version (a1.jsonl, a2.jsonl)" in line
    assert "no run records (*.jsonl" not in line


@pytest.fixture
def locked(monkeypatch):
    """Files named locked*.jsonl cannot be read (no permission: the tests run as root, where chmod 000 reads)."""
    real_open, real_read = open, Path.read_bytes

    def deny(path):
        if Path(path).name.startswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

    def fake_open(path, *a, **k):
        deny(path)
        return real_open(path, *a, **k)

    def fake_read(self):
        deny(self)
        return real_read(self)
    monkeypatch.setattr(record_mod, "open", fake_open, raising=False)
    monkeypatch.setattr(Path, "read_bytes", fake_read)


def test_an_unreadable_record_says_it_cannot_be_read(run_cli, runs, tmp_path, locked):
    f = tmp_path / "locked.jsonl"
    data = (runs / "a1.jsonl").read_bytes()
    f.write_bytes(data)
    code, out, err = run_cli("compare-run", f)
    assert code == 2 and one_error_line(err) == f"wattlint: error: {f}: cannot be read (Permission denied)"
    d = tmp_path / "lockeds"  # a folder of unreadable records only: it was taken for calibration runs
    d.mkdir()
    (d / "locked1.jsonl").write_bytes(data)
    code, out, err = run_cli("fit", d)
    line = one_error_line(err)
    assert code == 2 and f"{d / 'locked1.jsonl'}: cannot be read (Permission denied)" in line
    assert "calibration" not in line
    (runs / "locked2.jsonl").write_bytes(data)  # beside readable records: never left out silently
    code, out, err = run_cli("fit", runs, "--out", tmp_path / "c")
    line = one_error_line(err)
    assert code == 2 and f"{runs / 'locked2.jsonl'}: cannot be read (Permission denied)" in line
    assert f"move it out of {runs}" in line
    code, out, err = run_cli("fit", f, runs / "a2.jsonl", "--out", tmp_path / "c")  # named
    assert code == 2 and f"{f}: cannot be read (Permission denied)" in one_error_line(err)


# ---- 4. two summary lines -----------------------------------------------------------------------------------------

def test_a_record_with_two_summary_lines_is_refused(run_cli, tmp_path):
    """By hand: header, windows of steps 4 and 8 (0.25 s steps, 1 s windows), the last window at close, summary =
    line 5; a second copy of it appended is line 6."""
    clock = Clock(100.0)
    with quiet_track(tmp_path, clock, steps=9) as t:
        _run(t, clock, 9)
    lines = t.path.read_text().splitlines(keepends=True)
    assert len(lines) == 5 and json.loads(lines[4])["type"] == "summary"
    t.path.write_text("".join(lines) + lines[4])
    code, out, err = run_cli("compare-run", t.path)
    assert code == 2
    assert one_error_line(err) == (f"wattlint: error: {t.path}:6: malformed run record (a second summary line; line "
                                   "5 is one already, and a run writes one)")


# ---- 5. too few steps for an interval -----------------------------------------------------------------------------

def test_a_two_step_run_says_there_are_too_few_steps_for_an_interval(tmp_path):
    """Review: '±inf % (90 % CI)' and '[7.69 s – n/a]'. By hand: 2 steps of 0.25 s at 250 W on the device and the
    80 W host fallback (a GPU not identified), PUE 1: a plan of 2 steps is done, so its range is the measured 0.5 s
    and 330 W x 0.5 s = 165 J exactly; a plan of 10 steps has 8 to project and no interval to project them with."""
    clock = Clock(100.0)
    with quiet_track(tmp_path, clock, steps=2) as t:
        _run(t, clock, 2)
    p = t.summary()["analysis"]["projection"]
    assert p["time_s_range"] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert p["energy_kwh_range"] == [pytest.approx(165 / 3.6e6), pytest.approx(165 / 3.6e6)]
    text = "\n".join(summary_lines(t.summary()))
    assert "(too few steps for an interval)" in text and "inf" not in text and "n/a" not in text
    with quiet_track(tmp_path, clock, steps=10) as t:
        _run(t, clock, 2)
    text = "\n".join(summary_lines(t.summary()))
    assert "projected plan (10 steps): 2.50 s (too few steps for an interval)" in text
    assert "inf" not in text and "n/a" not in text
    assert "too few steps for an interval of the mean step time" in t.summary()["analysis"]["reason"]


# ---- 6. `wattlint fit`: the ranks of one job are one run -----------------------------------------------------------

def _rank_record(path, rank, t_meas, *, run_id="j", master="node1:29500", started="2026-01-01T00:00:00Z"):
    """A record of one rank of a 2-rank job (its one GPU) of model a, predicted 0.10 s per step (write_record: 200
    steps of t_meas s, 20 s or more)."""
    write_record(path, model_hash="a", t_meas=t_meas, t_pred=0.10, job_gpus=2)
    lines = path.read_text().splitlines(keepends=True)
    h = json.loads(lines[0])
    h["job"] = {"rank": rank, "world_size": 2, "local_rank": rank, "local_world_size": 2, "master": master,
                "run_id": run_id}
    h["started_utc"] = started
    path.write_text(json.dumps(h) + "\n" + "".join(lines[1:]))
    return path


def test_fit_counts_the_ranks_of_one_job_as_one_run(run_cli, tmp_path):
    """Second review: one 2-rank job was '2 run(s)' (the minimum met) and its held-out check predicted rank 0 from
    rank 1 of the same job: x0.98 .. x1.02. Now a job is one run: refused alone."""
    d = tmp_path / "one"
    _rank_record(d / "run-rank0.jsonl", 0, 0.120)
    _rank_record(d / "run-rank1.jsonl", 1, 0.121)
    code, out, err = run_cli("fit", d, "--out", tmp_path / "c")
    assert code == 2 and not (tmp_path / "c").exists()
    assert ("1 usable run(s) of h100-sxm5-80gb (2 of the 2 records are ranks of 1 multi-process job(s): the ranks of "
            "one job are one run); a run correction needs >= 2") in one_error_line(err)


@pytest.mark.parametrize("launch", ["two run ids", "alike, one after the other"])
def test_fit_holds_out_the_ranks_of_a_job_together(run_cli, tmp_path, launch):
    """Two 2-rank jobs of model a (predicted 0.10 s/step): A measured 0.120 / 0.125 s (ratios 1.2, 1.25), B 0.150 /
    0.155 s (1.5, 1.55). 'alike, one after the other': both jobs launched as plain torchrun does (run id 'none', the
    same master address), B an hour after A (each ran 24-31 s): told apart by time. By hand:
    * 2 runs (4 records): the minimum is met;
    * time factor: one model, two runs, each the mean of its ranks' logs: exp(((ln 1.2 + ln 1.25) / 2 + (ln 1.5 + ln
      1.55) / 2) / 2);
    * leave-one-run-out: A's two records are predicted from B alone, factor exp((ln 1.5 + ln 1.55) / 2) =
      sqrt(1.5 x 1.55), B's from A alone, sqrt(1.2 x 1.25) (it was rank 0 from rank 1 and job B: a narrow range);
      the held-out residual of A rank 0 is ln(1.2 / sqrt(2.325)), far outside x0.98 .. x1.02."""
    d = tmp_path / "runs"
    if launch == "two run ids":
        a = dict(run_id="A")
        b = dict(run_id="B")
    else:
        a = dict(run_id="none", master="127.0.0.1:29500")
        b = dict(run_id="none", master="127.0.0.1:29500", started="2026-01-01T01:00:00Z")
    _rank_record(d / "a-rank0.jsonl", 0, 0.120, **a)
    _rank_record(d / "a-rank1.jsonl", 1, 0.125, **a)
    _rank_record(d / "b-rank0.jsonl", 0, 0.150, **b)
    _rank_record(d / "b-rank1.jsonl", 1, 0.155, **b)
    code, out, err = run_cli("fit", d, "--out", tmp_path / "c")
    assert code == 0, err
    doc = json.loads((tmp_path / "c" / "run_correction.json").read_text())
    expected = math.exp(((math.log(1.2) + math.log(1.25)) / 2 + (math.log(1.5) + math.log(1.55)) / 2) / 2)
    assert doc["time_factor"] == pytest.approx(expected)
    loro = doc["validation"]["leave_one_run_out"]["time"]
    rows = {r["file"]: r for r in loro["rows"]}  # the folds: each record predicted from the other job only
    assert {f: r["factor"] for f, r in rows.items()} == {
        "a-rank0.jsonl": pytest.approx(math.sqrt(1.5 * 1.55)), "a-rank1.jsonl": pytest.approx(math.sqrt(1.5 * 1.55)),
        "b-rank0.jsonl": pytest.approx(math.sqrt(1.2 * 1.25)), "b-rank1.jsonl": pytest.approx(math.sqrt(1.2 * 1.25))}
    assert rows["a-rank0.jsonl"]["log_residual"] == pytest.approx(math.log(1.2 / math.sqrt(1.5 * 1.55)))
    assert loro["n"] == 4 and loro["runs"] == 2
    assert {f: r["run"] for f, r in rows.items()} == {"a-rank0.jsonl": "a-rank0.jsonl", "a-rank1.jsonl": "a-rank0.jsonl",
                                                      "b-rank0.jsonl": "b-rank0.jsonl", "b-rank1.jsonl": "b-rank0.jsonl"}
    assert {Path(r["file"]).name: (Path(r["job"]).name, r["rank"]) for r in doc["runs"]} == {
        "a-rank0.jsonl": ("a-rank0.jsonl", 0), "a-rank1.jsonl": ("a-rank0.jsonl", 1),
        "b-rank0.jsonl": ("b-rank0.jsonl", 0), "b-rank1.jsonl": ("b-rank0.jsonl", 1)}
    lines = out.splitlines()
    assert lines[0].startswith("run correction for h100-sxm5-80gb from 2 run(s) (4 records: the ranks of a job are "
                               "one run) of 1 model(s)")
    assert any(ln.startswith("  leave-one-run-out time: ") and ln.endswith("4 held out in 2 run(s), a job's ranks "
                                                                           "together)") for ln in lines)
    assert "from 2 tracked run(s) (4 of the 4 records are ranks of 2 multi-process job(s)" in doc["source"]


def test_a_single_process_run_weighs_as_much_as_a_two_rank_job(tmp_path):
    """Within a model a job is one run: job A (ratios 1.2, 1.25 on its two ranks) and one single-process run C
    (1.5, write_record's header has no job): exp(((ln 1.2 + ln 1.25) / 2 + ln 1.5) / 2), not the mean of three
    records' logs."""
    from wattlint.tracking.fit import fit_records

    d = tmp_path / "runs"
    _rank_record(d / "a-rank0.jsonl", 0, 0.120)
    _rank_record(d / "a-rank1.jsonl", 1, 0.125)
    write_record(d / "c.jsonl", model_hash="a", t_meas=0.15, t_pred=0.10)
    corr, _ = fit_records([str(d)], out=str(tmp_path / "c"))
    assert corr.time_factor == pytest.approx(math.exp(((math.log(1.2) + math.log(1.25)) / 2 + math.log(1.5)) / 2))
    assert corr.runs == 2
