"""Damaged, hostile or mistaken inputs to the commands that read and write the user's data (a review fuzzed them on
2026-12-06): each is one line on stderr and exit 2, and nothing of the user's is replaced or corrupted."""

from __future__ import annotations

import csv
import glob
import json
import shutil
from pathlib import Path

import pytest

from wattlint.tracking.fit import load_run_correction, read_correction, RunFitError

ROOT = Path(__file__).resolve().parents[1]
RUNS = sorted(glob.glob(str(ROOT / "benchmarks" / "results" / "track_cpu_runs" / "*.jsonl")))
TINY = str(ROOT / "tests" / "data" / "calib-tiny.toml")


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wattlint: error:"), err
    return lines[0]


@pytest.fixture
def records(tmp_path):
    assert len(RUNS) >= 3, "the committed CPU run records are the fixture"
    out = []
    for i, r in enumerate(RUNS[:3]):
        dst = tmp_path / f"r{i}.jsonl"
        shutil.copy(r, dst)
        out.append(dst)
    return out


# ---- wattlint fit (run records) ----------------------------------------------------------------------------------

def test_fit_out_naming_one_of_its_records_is_refused(run_cli, records, tmp_path):
    as_json = tmp_path / "a.json"  # a record saved under a .json name: --out would have been taken as the file
    shutil.copy(records[0], as_json)
    before = as_json.read_bytes()
    code, out, err = run_cli("fit", str(as_json), *map(str, records[1:]), "--out", str(as_json))
    assert code == 2 and "one of the run records being fitted" in _one_line(err)
    assert as_json.read_bytes() == before
    before = records[0].read_bytes()
    code, out, err = run_cli("fit", *map(str, records), "--out", str(records[0]))
    assert code == 2 and "an existing file, not a folder" in _one_line(err)
    assert records[0].read_bytes() == before


def test_fit_out_never_replaces_a_file_that_is_not_a_run_correction(run_cli, records, tmp_path):
    baseline = tmp_path / "wattlint-baseline.json"
    baseline.write_text('{"schema": "wattlint.baseline/1", "models": {}}\n')
    code, out, err = run_cli("fit", *map(str, records), "--out", str(baseline))
    assert code == 2 and "not a run correction" in _one_line(err)
    assert baseline.read_text() == '{"schema": "wattlint.baseline/1", "models": {}}\n'
    # an earlier correction at the same place is replaced, as documented
    target = tmp_path / "c.json"
    assert run_cli("fit", *map(str, records), "--out", str(target))[0] == 0
    assert run_cli("fit", *map(str, records), "--out", str(target))[0] == 0


def _with_static_time(src: Path, dst: Path, time_s: float) -> Path:
    lines = src.read_text().split("\n")
    h = json.loads(lines[0])
    h["static"]["per_step"]["time_s"] = time_s
    dst.write_text("\n".join([json.dumps(h)] + lines[1:]))
    return dst


def test_an_implausible_record_is_skipped_and_never_reaches_the_correction(run_cli, records, tmp_path):
    """A record predicting 1e6 s per step (measured: milliseconds) is no calibration signal (1e308 wrote 'time x0.000' and NaN ranges before; it is
    now skipped with its reason, and the correction of the other records is the one written without it."""
    bad = _with_static_time(records[0], tmp_path / "bad.jsonl", 1e6)  # within the schema's bound, 1e6 x measured
    code, out, err = run_cli("fit", str(bad), str(records[1]), "--out", str(tmp_path / "a"))
    assert code == 2 and "outside [0.001, 1000]" in _one_line(err)
    code, out, err = run_cli("fit", str(bad), *map(str, records[1:]), "--out", str(tmp_path / "b"))
    assert code == 0, err
    written = (tmp_path / "b" / "run_correction.json").read_text()
    doc = json.loads(written, parse_constant=lambda c: pytest.fail(f"{c} in the correction"))
    assert [Path(s["file"]).name for s in doc["skipped"]] == ["bad.jsonl"]
    assert len(doc["runs"]) == 2
    code, out, err = run_cli("fit", *map(str, records[1:]), "--out", str(tmp_path / "c"))
    assert code == 0
    assert json.loads((tmp_path / "c" / "run_correction.json").read_text())["time_factor"] == doc["time_factor"]


@pytest.mark.parametrize("field, value", [("time_factor", float("nan")), ("time_factor", 0.0),
                                          ("energy_factor", float("inf")), ("quantiles", {"time": [0.5, 1e9]})])
def test_a_correction_with_unusable_numbers_is_never_applied(tmp_path, field, value):
    gpu = tmp_path / "a100-sxm4-80gb"
    gpu.mkdir()
    doc = {"schema": "wattlint.run-correction/1", "gpu": {"key": "a100-sxm4-80gb", "is_cpu": False},
           "time_factor": 1.1, "energy_factor": 1.05, "quantiles": {"time": [0.9, 1.2], "energy": [0.9, 1.2]},
           "source": "test", "runs": []}
    doc[field] = value
    (gpu / "run_correction.json").write_text(json.dumps(doc))
    with pytest.raises(RunFitError, match="not a usable run correction"):
        read_correction(gpu / "run_correction.json")
    assert load_run_correction(tmp_path, "a100-sxm4-80gb") is None  # an estimate never uses it


# ---- run records: nesting, impossible values ---------------------------------------------------------------------

def test_deeply_nested_json_is_an_input_error(run_cli, records, tmp_path):
    lines = records[0].read_text().split("\n")
    lines.insert(1, '{"type": "event", "kind": ' + "[" * 100_000 + "}")
    deep = tmp_path / "deep.jsonl"
    deep.write_text("\n".join(lines))
    code, out, err = run_cli("compare-run", str(deep))
    assert code == 2 and "deep.jsonl:2: not a JSON line" in _one_line(err)
    flat = tmp_path / "deep.json"
    flat.write_text("[" * 100_000)
    code, out, err = run_cli("compare-run", str(flat))
    assert code == 2 and "nested too deeply" in _one_line(err)


def _edit_first(src: Path, dst: Path, kind: str, edit) -> Path:
    lines = src.read_text().split("\n")
    for i, line in enumerate(lines):
        if line and json.loads(line).get("type") == kind:
            o = json.loads(line)
            edit(o)
            lines[i] = json.dumps(o)
            break
    else:
        pytest.fail(f"no {kind} line")
    dst.write_text("\n".join(lines))
    return dst


def test_record_values_no_run_can_have_are_refused(run_cli, records, tmp_path):
    neg = _edit_first(records[0], tmp_path / "neg.jsonl", "header", lambda h: h.__setitem__("host_w", -100))
    code, out, err = run_cli("compare-run", str(neg))
    assert code == 2 and "header.host_w" in _one_line(err)

    def wait_longer_than_the_window(w):
        w["data_wait_s"] = [1e6] * max(1, len(w["step_times_s"]))
    wait = _edit_first(records[0], tmp_path / "wait.jsonl", "window", wait_longer_than_the_window)
    code, out, err = run_cli("compare-run", str(wait))
    assert code == 2 and "longer than the window" in _one_line(err)


# ---- baseline and configuration ----------------------------------------------------------------------------------

@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copy(ROOT / "examples" / "gpt2-tiny.onnx", tmp_path / "lm.onnx")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.wattlint]\ngpu = "a100-sxm4-80gb"\nbaseline = "wattlint-baseline.json"\n\n'
        '[[tool.wattlint.models]]\nname = "lm"\nsource = "lm.onnx"\nbatch-size = 8\nseq-len = 256\nsteps = 10\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_dangling_baseline_link_is_refused_not_followed(run_cli, project, tmp_path):
    target = tmp_path / "elsewhere" / "base.json"
    (project / "wattlint-baseline.json").symlink_to(target)
    code, out, err = run_cli("check", "--update-baseline")
    assert code == 2 and "symbolic link to a missing file" in _one_line(err)
    assert not target.exists() and not target.parent.exists()


def test_a_baseline_number_beyond_any_float_is_an_input_error(run_cli, project):
    (project / "wattlint-baseline.json").write_text(
        '{"schema": "wattlint.baseline/1", "models": {"lm": {"energy_kwh": 1' + "0" * 340 + "}}}")
    code, out, err = run_cli("check")
    assert code == 2 and "energy_kwh" in _one_line(err)


def test_a_baseline_whose_models_is_not_an_object_says_so(run_cli, project):
    """Review: a baseline with the right schema and "models" a list read 'not a wattlint baseline (expected
    "schema": ...)', pointing at the one field that was right."""
    text = '{"schema": "wattlint.baseline/1", "models": []}'
    (project / "wattlint-baseline.json").write_text(text)
    code, out, err = run_cli("check")
    assert code == 2 and '"models" must be an object of model name -> totals, got list' in _one_line(err)
    assert (project / "wattlint-baseline.json").read_text() == text


def test_a_deep_cache_file_is_a_miss_not_an_error(run_cli, project):
    assert run_cli("check")[0] == 0
    hashes = list(project.glob(".wattlint-cache/**/*.json"))
    assert hashes, "the check wrote its cache"
    for h in hashes:
        h.write_text("[" * 100_000)
    code, out, err = run_cli("check")
    assert code == 0, err


@pytest.mark.parametrize("text", [
    '[project]\nname = "x"\n\n[tool]\nwattlint.gpu = "h100-sxm5-80gb"\n',  # TOML dotted keys: the same table
    '\ufeff[tool.wattlint]\ngpu = "h100-sxm5-80gb"\n',  # a UTF-8 byte-order mark some editors write
])
def test_config_spellings_toml_allows_are_read(run_cli, tmp_path, monkeypatch, text):
    shutil.copy(ROOT / "examples" / "gpt2-tiny.onnx", tmp_path / "lm.onnx")
    (tmp_path / "pyproject.toml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("lm.onnx", "--steps", "1", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["hardware"]["gpu"] == "h100-sxm5-80gb"


def test_a_utf16_config_is_refused_not_ignored(run_cli, tmp_path, monkeypatch):
    shutil.copy(ROOT / "examples" / "gpt2-tiny.onnx", tmp_path / "lm.onnx")
    (tmp_path / "pyproject.toml").write_bytes('[tool.wattlint]\ngpu = "h100-sxm5-80gb"\n'.encode("utf-16"))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("lm.onnx", "--steps", "1")
    assert code == 2 and "not UTF-8" in _one_line(err)


# ---- other tools' logs, calibration runs ---------------------------------------------------------------------------

def test_a_codecarbon_log_the_csv_module_cannot_read_is_an_input_error(run_cli, tmp_path):
    log = tmp_path / "emissions.csv"
    from wattlint.tracking.interop import CODECARBON_COLUMNS

    cols = sorted(CODECARBON_COLUMNS)
    log.write_text(",".join(cols) + "\n" + ",".join(["x" * 200_000] + ["1"] * (len(cols) - 1)) + "\n")
    code, out, err = run_cli("compare-run", str(log), "--model", "lm.onnx")
    assert code == 2 and "not a readable CodeCarbon CSV log" in _one_line(err)


def _fake_run(run_cli, out: Path, limit: int = 6) -> Path:
    code, o, err = run_cli("calibrate", "--device", "fake", "--suite", TINY, "--out", str(out), "--limit", str(limit),
                           "--no-progress")
    assert code == 0, err
    return next(out.glob("*.csv"))


@pytest.mark.parametrize("content, expect", [
    (b"\xff\xfe" + b"index,sample_id\n", "not UTF-8"),
    ("a,b,c\n1,2,3\n".encode(), "columns are not this wattlint's calibration CSV layout"),
])
def test_resume_refuses_a_csv_it_cannot_continue(run_cli, tmp_path, content, expect):
    csv_path = _fake_run(run_cli, tmp_path / "r", limit=2)
    csv_path.write_bytes(content)
    code, out, err = run_cli("calibrate", "--resume", str(csv_path), "--no-progress")
    assert code == 2 and expect in _one_line(err)
    assert csv_path.read_bytes() == content  # nothing appended


def test_calibration_fit_skips_rows_no_device_can_produce(run_cli, tmp_path):
    """A calibration CSV row with time_s 1e308 ended `wattlint fit` with OverflowError (exit 3): it is now skipped
    and counted in the card's reasons, and the fit runs on the other rows."""
    csv_path = _fake_run(run_cli, tmp_path / "r", limit=16)
    rows = list(csv.DictReader(open(csv_path, newline="")))
    rows[0]["time_s"] = "1e308"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    code, out, err = run_cli("fit", str(tmp_path / "r"), "--out", str(tmp_path / "m"))
    assert code == 0, err
    card = (tmp_path / "m" / "card.json").read_text()
    assert '"measured / prior time outside [0.0001, 10000]": 1' in card


# ---- files of another wattlint version; the tracker's out= ---------------------------------------------------------

def test_files_of_another_wattlint_version_say_so(run_cli, project, records):
    (project / "wattlint-baseline.json").write_text('{"schema": "wattlint.baseline/2", "models": {}}')
    code, out, err = run_cli("check", "--update-baseline")
    assert code == 2 and "written as wattlint.baseline/2 by another wattlint version" in _one_line(err)
    assert (project / "wattlint-baseline.json").read_text() == '{"schema": "wattlint.baseline/2", "models": {}}'
    newer = _edit_first(records[0], project / "newer.jsonl", "header", lambda h: h.__setitem__("schema",
                                                                                                "wattlint.run/2"))
    code, out, err = run_cli("compare-run", str(newer))
    assert code == 2 and "written as wattlint.run/2 by another wattlint version" in _one_line(err)


@pytest.mark.parametrize("name, make_file, expect", [("notes.txt", True, "is an existing file"),
                                                     ("run.json", False, "name the file .jsonl")])
def test_tracker_out_that_is_a_file_is_a_config_error(tmp_path, name, make_file, expect):
    import wattlint
    from wattlint.tracking.devices import FakeChannel
    from wattlint.types import ConfigError

    out = tmp_path / name
    if make_file:
        out.write_text("my notes\n")
    with pytest.raises(ConfigError, match=expect):
        with wattlint.track(out=out, display="quiet", channels=[FakeChannel(250.0)], static=False, steps=10):
            pass
    if make_file:
        assert out.read_text() == "my notes\n"
    else:
        assert not out.exists()


def test_calibrate_suite_naming_a_folder_says_so(run_cli, tmp_path):
    code, out, err = run_cli("calibrate", "--device", "fake", "--suite", str(tmp_path), "--plan")
    assert code == 2 and "is a folder" in _one_line(err)


@pytest.mark.parametrize("inside, code", [(True, 3), (False, 2)])
def test_a_missing_file_of_wattlint_itself_is_an_internal_error(run_cli, monkeypatch, tmp_path, inside, code):
    """An OSError naming a file is the user's input (exit 2) unless the file is wattlint's own: a packaged data file
    that cannot be read is our bug (exit 3), never reported as the user's bad input."""
    import wattlint
    import wattlint.commands.gpus as gpus

    name = Path(wattlint.__file__).parent / "data" / "missing.toml" if inside else tmp_path / "mine.json"

    def boom(args):
        raise FileNotFoundError(2, "No such file or directory", str(name))
    monkeypatch.setattr(gpus, "run", boom)
    got, out, err = run_cli("gpus")
    assert got == code, err
    assert ("internal error" in err) == inside


# ---- review of the fixes above (2026-12-06) -------------------------------------------------------------------------

def test_a_baseline_link_named_as_a_path_still_checks_every_model(run_cli, project, tmp_path):
    """pre-commit passes the changed files: the baseline (a link to a shared file) among them selects all models."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "b.json").write_text('{"schema": "wattlint.baseline/1", "models": {}}\n')
    (project / "wattlint-baseline.json").symlink_to(shared / "b.json")
    code, out, err = run_cli("check", "wattlint-baseline.json", "--no-cache", "--format", "json")
    assert code in (0, 1), err
    assert [m["name"] for m in json.loads(out)["models"]] == ["lm"]


def test_a_baseline_path_through_a_linked_folder_is_the_file_the_os_opens(tmp_path):
    from wattlint.config import parse_config

    (tmp_path / "s2" / "inner").mkdir(parents=True)
    (tmp_path / "p2").mkdir()
    (tmp_path / "p2" / "ci").symlink_to(tmp_path / "s2" / "inner")
    cfg = parse_config({"baseline": "ci/../b.json"}, root=tmp_path / "p2")
    assert cfg.baseline_path == (tmp_path / "s2" / "b.json").resolve()
    link = tmp_path / "p2" / "wb.json"
    link.symlink_to(tmp_path / "s2" / "b.json")
    assert parse_config({"baseline": "wb.json"}, root=tmp_path / "p2").baseline_path == link  # the link kept


def test_a_folder_fit_leaves_out_a_record_of_another_version(run_cli, records, tmp_path):
    folder = tmp_path / "recs"
    folder.mkdir()
    for r in records:
        shutil.copy(r, folder / r.name)
    _edit_first(records[0], folder / "newer.jsonl", "header", lambda h: h.__setitem__("schema", "wattlint.run/2"))
    code, out, err = run_cli("fit", str(folder), "--out", str(tmp_path / "c"))
    assert code == 0, err
    doc = json.loads((tmp_path / "c" / "run_correction.json").read_text())
    assert "newer.jsonl" not in json.dumps(doc) and len(doc["runs"]) + len(doc["skipped"]) == len(records)


def test_a_huge_static_estimate_in_a_record_still_reads(records, tmp_path):
    """The static estimate is wattlint's own output and has no bound in the schema: a record of an absurd plan (1.4e7
    s per step) must stay readable, its measured run is the user's."""
    from wattlint.tracking.record import read_record

    rec = _with_static_time(records[0], tmp_path / "big.jsonl", 1.4e7)
    assert read_record(rec).header["static"]["per_step"]["time_s"] == 1.4e7


def test_an_output_name_starting_with_dashes_and_holding_a_space_is_a_value(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(str(ROOT / "examples" / "gpt2-tiny.onnx"), "--steps", "1", "-o", "--my report.json",
                             "--format", "json")
    assert code == 0, err
    assert json.loads((tmp_path / "--my report.json").read_text())["plan"]["steps"] == 1


def test_a_plain_tool_wattlint_value_is_a_wrong_config_not_skipped(tmp_path, monkeypatch):
    from wattlint.config import find_pyproject

    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\ngpu = "h100-sxm5-80gb"\n')
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "pyproject.toml").write_text('[tool]\nwattlint = "1.0"\n')
    # the nearer file names tool.wattlint: it is the configuration, and a wrong one (exit 2 naming it), never
    # skipped for the parent's (which gated other models with exit 0; review 2026-12-07)
    assert find_pyproject(sub) == sub / "pyproject.toml"
    from wattlint.config import load_config
    from wattlint.types import ConfigError

    with pytest.raises(ConfigError, match="must be a table"):
        load_config(sub)


def test_a_recursion_error_of_our_own_json_encoding_is_internal(run_cli, monkeypatch):
    import wattlint.commands.gpus as gpus

    def deep(args):
        x: list = []
        for _ in range(100_000):
            x = [x]
        json.dumps(x)
    monkeypatch.setattr(gpus, "run", deep)
    code, out, err = run_cli("gpus")
    assert code == 3 and "internal error" in err


@pytest.mark.parametrize("where", ["create", "header"])
def test_a_record_that_cannot_be_written_at_start_never_stops_the_training(tmp_path, monkeypatch, where):
    """TRACKING.md: measuring never stops your training. A disk full when the record is created or its header
    written raised OSError into the user's `with` block and left a torn file: now a RuntimeWarning, the loop runs,
    no file is left."""
    import errno

    import wattlint
    from wattlint.tracking import record
    from wattlint.tracking.devices import FakeChannel

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    if where == "create":
        monkeypatch.setattr(record.RecordWriter, "__init__", full)
    else:
        monkeypatch.setattr(record.RecordWriter, "write", full)
    steps = 0
    with pytest.warns(RuntimeWarning, match="No space left on device"):
        with wattlint.track(out=tmp_path / "runs", display="quiet", channels=[FakeChannel(250.0)], static=False,
                            steps=5) as t:
            for _ in range(5):
                t.step()
                steps += 1
    assert steps == 5 and t.summary()["status"] == "completed" and t.summary()["path"] is None
    if where == "header":  # the folder was made and the file created: the torn file is removed
        assert (tmp_path / "runs").is_dir() and not list((tmp_path / "runs").iterdir())
    else:
        assert not (tmp_path / "runs").exists()


def test_a_record_line_that_is_not_utf8_is_refused_by_every_reader(run_cli, records, tmp_path):
    """fit decoded a damaged record with errors='replace' (and fitted it) where compare-run refused it: both now
    name the line; a torn multi-byte character at the very end of a killed run stays a torn tail."""
    lines = records[0].read_bytes().split(b"\n")
    assert b'"run_id":"' in lines[0]
    lines[0] = lines[0].replace(b'"run_id":"', b'"run_id":"\xff', 1)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(lines))
    for argv in (("compare-run", str(bad)), ("fit", str(bad), *map(str, records[1:]), "--out", str(tmp_path / "c"))):
        code, out, err = run_cli(*argv)
        assert code == 2 and "bad.jsonl:1: not UTF-8" in _one_line(err), argv
    from wattlint.tracking.record import read_record

    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(records[0].read_bytes().rstrip(b"\n") + b'\n{"type": "window", "x": "\xc3')
    assert read_record(torn).torn_tail
