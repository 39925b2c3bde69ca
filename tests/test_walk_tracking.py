"""Review walk of the tracking feature (2026-12-07): an explicit out=...jsonl that exists (two ranks of one job, a
callback reused for a second fit, a name taken between a check and the open), the printout of a run whose record
stopped being written, `wattlint fit` on a folder with a damaged / newer / unreadable record, a record with two
summary lines, and a run too short for an interval. Expected values by hand in the comments."""

import errno
import io
import json
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
    assert not out.exists() and _runtime_warnings(caught) == []
    kept = {t.path: t.path.read_bytes() for t in first}
    for r, t in enumerate(first):
        rec = read_record(t.path)
        assert rec.header["job"]["rank"] == r and rec.header["job"]["world_size"] == 2
        assert rec.summary["status"] == "completed" and rec.summary["steps"] == 8
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = job()
    assert [t.path for t in second] == [out.parent / "run-rank0-2.jsonl", out.parent / "run-rank1-2.jsonl"]
    said = _runtime_warnings(caught)
    assert len(said) == 2 and all("never overwritten" in m for m in said)
    assert str(out.parent / "run-rank0-2.jsonl") in said[0] and str(out.parent / "run-rank1-2.jsonl") in said[1]
    assert {p: p.read_bytes() for p in kept} == kept  # the first job's records untouched
    assert all(read_record(t.path).summary["status"] == "completed" for t in second)


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
    with pytest.warns(RuntimeWarning, match="tracking stopped"):
        _run(t, clock, 22)
    t.close()
    first, second = stream.getvalue().splitlines()[:2]
    assert first == (f"wattlint run record: {t.path} INCOMPLETE: it stopped being written at step 12 because a write "
                     "to it failed (OSError: [Errno 28] No space left on device); it holds 8 step(s) and no summary "
                     "line")
    assert second.startswith("  the run itself: completed, 30 steps, ")
    rec = read_record(t.path)
    assert rec.summary is None and sum(len(w["step_times_s"]) for w in rec.windows) == 8
    assert rec.status == ("incomplete (no summary line: the process was killed, is still running, or a write to the "
                          "record failed)")


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
