"""Runner with the fake meter: append-only CSV, provenance, resume after a real kill, failures, torn lines."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wattlint.calibrate.backends import FakeDevice, fake_truth
from wattlint.calibrate.runner import CSV_COLUMNS, RunConfig, read_rows, run_calibration
from wattlint.calibrate.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "data" / "calib-tiny.toml")


def _run(tmp_path, **kw):
    cfg = RunConfig(device="fake", suite=TINY, out=str(tmp_path), **kw)
    return run_calibration(cfg)


def test_fake_run_writes_every_sample_and_provenance(tmp_path):
    paths = _run(tmp_path)
    suite = load_suite(TINY)
    rows = read_rows(paths.csv)
    assert [r["sample_id"] for r in rows] == [s.id for s in suite.samples]
    assert list(rows[0].keys()) == list(CSV_COLUMNS)
    assert all(r["status"] == "ok" for r in rows)
    prov = json.loads(paths.json.read_text())
    assert prov["schema"] == "wattlint.calibration-run/1" and prov["status"] == "complete"
    assert prov["suite"]["sha256"] == suite.sha256 and prov["suite"]["samples_in_part"] == len(suite.samples)
    assert prov["meter"]["name"] == "fake" and prov["spec"]["key"] == "fake-gpu"
    s = prov["sessions"][0]
    assert s["idle_power_w"] == pytest.approx(70.0, rel=1e-6)  # idle measured first, with the counter
    assert prov["samples_done"] == len(rows) and prov["samples_failed"] == 0
    assert len(prov["temperature_c_range"]) == 2
    for key in ("software", "device", "started_utc", "finished_utc"):
        assert prov[key]
    # the fake meter measures the simulator's truth: time exactly, power through tick-aligned counter windows
    for smp, r in zip(suite.samples, rows):
        t, p = fake_truth(smp)
        assert float(r["time_s"]) == pytest.approx(t, rel=1e-9)
        assert float(r["avg_power_w"]) == pytest.approx(p, rel=2e-2)
        assert float(r["window_s"]) >= 0.5
        assert float(r["energy_j"]) == pytest.approx(float(r["avg_power_w"]) * t)


def test_parts_and_limit_then_resume(tmp_path):
    p1 = _run(tmp_path, part=(1, 2), limit=3)
    assert len(read_rows(p1.csv)) == 3
    assert json.loads(p1.json.read_text())["status"] == "partial"
    run_calibration(RunConfig(device="fake", resume=str(p1.csv)))
    rows = read_rows(p1.csv)
    suite = load_suite(TINY)
    assert [r["sample_id"] for r in rows] == [s.id for s in suite.part(1, 2)]
    prov = json.loads(p1.json.read_text())
    assert prov["status"] == "complete" and len(prov["sessions"]) == 2 and prov["sessions"][1]["resumed"]
    assert "p1of2" in p1.csv.name


def test_failed_sample_is_recorded_and_skipped_on_resume(tmp_path, monkeypatch):
    suite = load_suite(TINY)
    bad = suite.samples[2].id
    monkeypatch.setenv("WATTLINT_FAKE_FAIL", bad)
    paths = _run(tmp_path)
    rows = read_rows(paths.csv)
    errs = [r for r in rows if r["status"] == "error"]
    assert [r["sample_id"] for r in errs] == [bad] and "simulated failure" in errs[0]["error"]
    assert json.loads(paths.json.read_text())["samples_failed"] == 1


def test_torn_last_line_is_dropped_on_resume(tmp_path):
    paths = _run(tmp_path, limit=4)
    with open(paths.csv, "a") as f:
        f.write("4,gemm:{partial")  # a crash mid-write
    assert len(read_rows(paths.csv)) == 4
    run_calibration(RunConfig(device="fake", resume=str(paths.json)))
    rows = read_rows(paths.csv)
    assert len(rows) == len(load_suite(TINY).samples)
    assert len({r["sample_id"] for r in rows}) == len(rows)
    assert paths.csv.read_text().count("{partial") == 0


def test_resume_refuses_a_changed_suite(tmp_path):
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(Path(TINY).read_text())
    paths = run_calibration(RunConfig(device="fake", suite=str(suite_file), out=str(tmp_path / "o"), limit=2))
    suite_file.write_text(Path(TINY).read_text() + "\n# edited\n")
    from wattlint.calibrate.runner import RunError

    with pytest.raises(RunError, match="changed"):
        run_calibration(RunConfig(device="fake", resume=str(paths.csv)))


def test_resume_after_a_real_kill_loses_nothing(tmp_path):
    """Kill the CLI with SIGKILL at a random sample, resume, and compare with an uninterrupted run."""
    ref = _run(tmp_path / "ref")
    ref_rows = {r["sample_id"]: r for r in read_rows(ref.csv)}
    n = len(ref_rows)
    out = tmp_path / "killed"
    env = dict(os.environ, WATTLINT_FAKE_SLEEP_S="0.06", PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, "-m", "wattlint", "calibrate", "--device", "fake", "--suite", TINY, "--out", str(out),
           "--no-progress"]
    kill_at = random.Random().randint(2, n - 6)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    csv_path = None
    while time.time() < deadline:
        found = list(out.glob("*.csv")) if out.exists() else []
        if found:
            csv_path = found[0]
            if len(read_rows(csv_path)) >= kill_at:
                break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert csv_path is not None
    before = read_rows(csv_path)
    assert 0 < len(before) < n, "the kill should land mid-run"
    assert json.loads(csv_path.with_suffix(".json").read_text())["status"] == "running"
    res = subprocess.run(cmd[:4] + ["--resume", str(csv_path), "--no-progress"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rows = read_rows(csv_path)
    assert [r["sample_id"] for r in rows[: len(before)]] == [r["sample_id"] for r in before]  # append-only
    assert sorted(r["sample_id"] for r in rows) == sorted(ref_rows)  # every sample exactly once
    for r in rows:
        assert float(r["time_s"]) == pytest.approx(float(ref_rows[r["sample_id"]]["time_s"]), rel=1e-9)
    prov = json.loads(csv_path.with_suffix(".json").read_text())
    assert prov["status"] == "complete" and prov["sessions"][-1]["already_done"] == len(before)


def test_calibrate_cli_plan_and_errors(run_cli, tmp_path):
    code, out, err = run_cli("calibrate", "--plan", "--suite", "default")
    assert code == 0 and "planned" in out and "2 parts" in out
    code, out, err = run_cli("calibrate", "--device", "fake", "--suite", "nope")
    assert code == 2 and "unknown suite" in err and "\n" == err[-1] and err.count("\n") == 1
    code, out, err = run_cli("calibrate", "--device", "fake", "--suite", TINY, "--part", "3/2")
    assert code == 2 and "--part" in err
    code, out, err = run_cli("calibrate", "--resume", str(tmp_path / "missing.csv"))
    assert code == 2 and "--resume" in err
    code, out, err = run_cli("calibrate", "--device", "fake", "--suite", TINY, "--out", str(tmp_path), "--limit", "2",
                             "--no-progress")
    assert code == 0 and "partial: 2 samples measured" in out


def test_fake_counter_ticks_like_nvml():
    d = FakeDevice()
    d.advance(0.01, 100.0)
    assert d.counter_j() == 0.0  # no tick yet
    d.advance(0.05, 100.0)
    assert d.counter_j() == pytest.approx(5.0)  # energy at the 0.05 s tick


def test_real_cpu_samples(tmp_path):
    """The CPU backend measures real torch ops (1 thread, process time; energy modelled and labelled)."""
    paths = run_calibration(RunConfig(device="cpu", suite=TINY, out=str(tmp_path), limit=3))
    rows = read_rows(paths.csv)
    assert len(rows) == 3 and all(r["status"] == "ok" and float(r["time_s"]) > 0 for r in rows)
    assert {r["power_source"] for r in rows} == {"modelled"}
    prov = json.loads(paths.json.read_text())
    assert prov["device"]["threads"] == 1 and prov["device"]["timer"] == "process CPU time"
    assert prov["spec"]["source"] == "measured-cpu" and "NOT a GPU" in prov["spec"]["values"]["name"]
    assert prov["meter"]["energy_source"] == "modelled" and "MODELLED" in prov["note"]
    assert prov["sessions"][0]["autograd_overhead_s"] > 0


def test_resume_into_another_folder(tmp_path):
    """On a remote machine the run continues under --out (whose files come back), not in the repo copy."""
    p1 = _run(tmp_path / "a", limit=5)
    out = tmp_path / "b"
    p2 = run_calibration(RunConfig(device="fake", resume=str(p1.csv), out=str(out)))
    assert p2.csv == out / p1.csv.name and len(read_rows(p1.csv)) == 5
    assert len(read_rows(p2.csv)) == len(load_suite(TINY).samples)


def test_resume_into_a_folder_never_replaces_a_continuation_there(tmp_path):
    """Resuming the same source into the same --out twice copied the source over the continuation, losing the rows
    measured there (3 + 2 here: the second copy put back the source's 3)."""
    from wattlint.calibrate.runner import RunError

    p1 = _run(tmp_path / "a", limit=3)
    out = tmp_path / "b"
    p2 = run_calibration(RunConfig(device="fake", resume=str(p1.csv), out=str(out), limit=2))
    assert len(read_rows(p2.csv)) == 3 + 2
    before = (p2.csv.read_bytes(), p2.json.read_bytes())
    with pytest.raises(RunError, match=f"resume that one: --resume {p2.csv}"):
        run_calibration(RunConfig(device="fake", resume=str(p1.csv), out=str(out), limit=2))
    assert (p2.csv.read_bytes(), p2.json.read_bytes()) == before
    run_calibration(RunConfig(device="fake", resume=str(p2.csv), out=str(out), limit=2))  # the way on: 5 + 2
    assert len(read_rows(p2.csv)) == 3 + 2 + 2 and len(read_rows(p1.csv)) == 3


def test_appender_rewrites_a_torn_header(tmp_path):
    """A crash while the header was being written leaves a partial first line: resuming must not append rows to a
    file without a header (the first data row would become the header)."""
    from wattlint.calibrate.runner import CSV_COLUMNS, CsvAppender

    p = tmp_path / "run.csv"
    p.write_text(",".join(CSV_COLUMNS)[:10])  # torn header, no newline
    w = CsvAppender(p)
    w.append({CSV_COLUMNS[0]: "x"})
    w.close()
    rows = read_rows(p)
    assert len(rows) == 1 and rows[0][CSV_COLUMNS[0]] == "x"


def test_calibrate_plan_honours_limit(run_cli):
    """--plan with --limit N plans the N-sample session the same command without --plan would measure (it used to
    print the whole suite's duration). Expected from the suite's own timing: N x seconds per sample + setup."""
    from wattlint.calibrate.suites import load_suite

    suite = load_suite("default")
    code, out, _ = run_cli("calibrate", "--plan", "--suite", "default", "--limit", "20")
    assert code == 0
    expect = 20 * suite.sample_seconds("cuda") + suite.planned_seconds("cuda", 0)
    assert f"--limit 20: at most 20 of {len(suite.samples)} samples this session -> planned {expect / 60:.1f} min" \
        in out
    assert "in 2 parts" not in out  # part sizes describe whole-suite runs, not a 20-sample session


def _signal_a_run(out: Path, sig) -> tuple[int, str, Path]:
    """Start a fake calibration into ``out``, send ``sig`` once 2 samples are written; (exit code, stderr, CSV)."""
    env = dict(os.environ, WATTLINT_FAKE_SLEEP_S="0.06", PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, "-m", "wattlint", "calibrate", "--device", "fake", "--suite", TINY, "--out", str(out),
           "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        found = list(out.glob("*.csv")) if out.exists() else []
        if found and len(read_rows(found[0])) >= 2:
            break
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    (csv_path,) = list(out.glob("*.csv"))
    return proc.returncode, err, csv_path


def test_an_interrupted_run_names_the_csv_to_resume(tmp_path):
    """Ctrl-C (SIGINT) mid-run: the message named a placeholder 'RUN.csv'; it names the run's CSV now, and the
    command it prints resumes the run."""
    code, err, csv_path = _signal_a_run(tmp_path / "int", signal.SIGINT)
    assert code == 130, err
    assert f"continue with 'wattlint calibrate --resume {csv_path}'" in err, err


def test_a_run_being_measured_cannot_be_resumed_by_a_second_process(tmp_path):
    """Review: `calibrate --resume RUN` while RUN was still being measured appended the same samples a second time
    with other values (458 rows for a 249-sample suite) and rewrote the JSON. The measuring session locks the CSV;
    a second session is refused before it touches either file."""
    from wattlint.calibrate.runner import RunError
    from wattlint.io import exclusive_lock

    paths = _run(tmp_path, limit=2)
    csv_before, json_before = paths.csv.read_bytes(), paths.json.read_bytes()
    with exclusive_lock(paths.csv, wait=False):  # what the measuring session holds (its own open file)
        with pytest.raises(RunError, match="another process is measuring this run now"):
            run_calibration(RunConfig(device="fake", resume=str(paths.csv)))
    assert paths.csv.read_bytes() == csv_before and paths.json.read_bytes() == json_before
    run_calibration(RunConfig(device="fake", resume=str(paths.csv)))  # free again: the run goes on
    assert json.loads(paths.json.read_text())["status"] == "complete"


def test_sigterm_ends_a_run_like_ctrl_c(tmp_path):
    """SIGTERM (a scheduler's stop, `kill`) left the JSON at status 'running' with no word; it now ends the run as
    Ctrl-C does: status interrupted, the resume command printed, exit 143."""
    code, err, csv_path = _signal_a_run(tmp_path / "term", signal.SIGTERM)
    assert code == 143, err
    assert f"terminated (SIGTERM); measured samples are saved: continue with 'wattlint calibrate --resume " \
           f"{csv_path}'" in err, err
    assert json.loads(csv_path.with_suffix(".json").read_text())["status"] == "interrupted"


def test_resume_refuses_suite_and_part_and_limit_says_what_it_measures(run_cli, tmp_path):
    paths = _run(tmp_path / "a", limit=2)
    for extra in (["--suite", "quick"], ["--part", "1/2"]):
        code, _, err = run_cli("calibrate", "--device", "fake", "--resume", str(paths.csv), *extra)
        assert code == 2 and err.strip().splitlines() == [
            f"wattlint: error: {extra[0]} does not apply to --resume: the run continues its own suite and part (drop "
            "it, or start a new run without --resume)"]
    n = len(load_suite(TINY).samples)
    code, _, err = run_cli("calibrate", "--device", "fake", "--resume", str(paths.csv), "--limit", "1",
                           "--no-progress")
    assert code == 0 and f"measuring 1 of {n} samples (2 already done) (--limit; {n - 3} left for a later " \
                          "--resume)" in err, err


def test_an_out_that_cannot_be_created_is_one_line_naming_it(run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run_cli("calibrate", "--device", "fake", "--suite", TINY, "--out", str(blocker / "sub"),
                             "--no-progress")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"wattlint: error: --out {blocker / 'sub'}: cannot create the "
                                                   "run's folder"), err


def test_cuda_unavailable_says_why_and_what_to_do():
    """Review: 'torch sees no CUDA device' on a CPU-only torch build did not say the build is the reason."""
    from types import SimpleNamespace

    from wattlint.calibrate.backends import cuda_unavailable_reason

    cpu_build = SimpleNamespace(__version__="2.13.0+cpu", version=SimpleNamespace(cuda=None))
    assert "torch 2.13.0+cpu is a CPU-only build: install a CUDA build" in cuda_unavailable_reason(cpu_build)
    cuda_build = SimpleNamespace(__version__="2.13.0+cu128", version=SimpleNamespace(cuda="12.8"))
    why = cuda_unavailable_reason(cuda_build)
    assert "(CUDA 12.8) sees no CUDA device" in why and "CUDA_VISIBLE_DEVICES" in why and "--device cpu" in why


def test_a_suite_saved_with_a_byte_order_mark_loads(tmp_path):
    """Review: a suite TOML with a UTF-8 BOM said 'invalid TOML: Invalid statement (at line 1, column 1)'."""
    p = tmp_path / "bom.toml"
    p.write_bytes(b"\xef\xbb\xbf" + Path(TINY).read_bytes())
    assert len(load_suite(str(p)).samples) == len(load_suite(TINY).samples)
