"""Review (walk of the tracking and configuration paths): a nearer pyproject.toml whose [tool.wattlint] cannot be used
was passed over silently for a parent directory's configuration (`check` gated the parent's models, exit 0); `check -o`
replaced other tools' files (CodeCarbon's emissions.csv, .gitignore, notes); an unreadable baseline was called "not
valid JSON ... delete it", a baseline with a UTF-8 BOM was refused and `"models": null` was "got NoneType"."""

from __future__ import annotations

import json
import pathlib
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ONNX = ROOT / "examples" / "gpt2-tiny.onnx"

# the parent project: one model that passes (exit 0), as a CI gate that checks the wrong project would
PARENT = '[tool.wattlint]\ngpu = "h100"\n[[tool.wattlint.models]]\nname = "parents"\nsource = "m.onnx"\nsteps = 1\n'


def _error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def nested(tmp_path, monkeypatch):
    """parent/ with a working [tool.wattlint], parent/child/ the working directory; returns the child folder."""
    parent = tmp_path / "parent"
    child = parent / "child"
    child.mkdir(parents=True)
    shutil.copy(ONNX, parent / "m.onnx")
    (parent / "pyproject.toml").write_text(PARENT)
    monkeypatch.chdir(child)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))
    return child


# ---- 1. a nearer pyproject.toml whose [tool.wattlint] cannot be used stops the search ---------------------------

@pytest.mark.parametrize("text, expect", [
    ('[tool]\nwattlint = "a100"\n',
     "pyproject.toml: [tool.wattlint] must be a table (a [tool.wattlint] section of keys like gpu = \"h100\"), "
     "got a string 'a100'"),
    ('tool.wattlint = 5\n', "pyproject.toml: [tool.wattlint] must be a table"),
    ('tool = { wattlint = [1] }\n', "got an array [1]"),
    ('[tool]\nwattlint.gpu = "a100"\nwattlint.steps = 3\nbroken =\n',
     "pyproject.toml: invalid TOML: Invalid value (at line 4, column 9)"),
    ('tool.wattlint.gpu = "a100"\nbroken =\n', "pyproject.toml: invalid TOML: Invalid value (at line 2, column 9)"),
    ('[ "tool" ]\n"wattlint" . gpu = "a100"\n[broken\n', "pyproject.toml: invalid TOML"),
])
def test_a_nearer_pyproject_with_an_unusable_tool_wattlint_is_an_error_naming_it(nested, run_cli, text, expect):
    (nested / "pyproject.toml").write_text(text)
    code, out, err = run_cli("check")
    # the working directory is child/: 'pyproject.toml' is the child's file (the parent's would be named absolutely)
    assert code == 2 and out == ""
    assert _error_line(err).startswith("wattlint: error: pyproject.toml: ") and expect in err, err
    (nested.parent / "pyproject.toml").unlink()  # with no configuration above, the same error (not "none found")
    code, out, err = run_cli("check")
    assert code == 2 and expect in _error_line(err) and "no [tool.wattlint] configuration found" not in err


def test_an_unreadable_nearer_pyproject_is_an_error_not_passed_over(nested, run_cli, monkeypatch):
    """It may hold the configuration: the check must not go on with the parent's (root reads any file, so the
    permission error is simulated)."""
    mine = nested / "pyproject.toml"
    mine.write_text('[tool.wattlint]\ngpu = "a100"\n')
    real_bytes, real_text = pathlib.Path.read_bytes, pathlib.Path.read_text

    def denied(self):
        return Path(self).resolve() == mine.resolve()

    def read_bytes(self):
        if denied(self):
            raise PermissionError(13, "Permission denied", str(self))
        return real_bytes(self)

    def read_text(self, *a, **k):
        if denied(self):
            raise PermissionError(13, "Permission denied", str(self))
        return real_text(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    code, out, err = run_cli("check")
    assert code == 2 and out == ""
    assert _error_line(err) == ("wattlint: error: pyproject.toml: cannot read it: Permission denied (it may hold the "
                                "[tool.wattlint] configuration: make it readable)")


def test_a_pyproject_that_does_not_configure_wattlint_is_still_passed_over(nested):
    """Another subproject's pyproject.toml (no tool.wattlint key, even if broken or naming wattlint as a dependency)
    leaves the parent's configuration in force; one that does configure it, broken, is the one found."""
    from wattlint.config import find_pyproject, load_config

    mine = nested / "pyproject.toml"
    for text in ('[project]\nname = "sub"\n', '[project]\ndependencies = ["wattlint"]\nbroken =\n',
                 '[tool.ruff]\nline-length = 120\n# wattlint = "x"\n', '[tool.other]\nwattlint = 1\n'):
        mine.write_text(text)
        assert find_pyproject(nested) == nested.parent / "pyproject.toml", text
        assert [m.name for m in load_config(nested).models] == ["parents"]
    mine.write_text('[tool]\nwattlint.gpu = "a100"\nbroken =\n')
    assert find_pyproject(nested) == mine


# ---- 2. -o never replaces a file that is not a wattlint report -------------------------------------------------

CODECARBON = ("timestamp,project_name,run_id,duration,emissions,energy_consumed\n"
              "2024-01-01T00:00:00,codecarbon,abc,3600,0.1,0.302\n")


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copy(ONNX, tmp_path / "m.onnx")
    (tmp_path / "pyproject.toml").write_text(PARENT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("name, content, what", [
    ("emissions.csv", CODECARBON, "an existing file that is not a wattlint report"),
    (".gitignore", "*.onnx\n", "an existing file that is not a wattlint report"),
    ("notes.md", "# notes\nthe budget is 1 kWh\n", "an existing file that is not a wattlint report"),
    ("README.rst", "Project\n=======\n", "an existing file that is not a wattlint report"),
    ("metrics.json", '{"accuracy": 0.91}\n', "an existing file that is not a wattlint report"),
    ("correction.json", '{"schema": "wattlint.run-correction/1", "factor": 1.1}\n',
     "an existing wattlint.run-correction/1 file (wattlint's data, not a report)"),
])
def test_check_output_never_replaces_a_file_that_is_not_a_wattlint_report(project, run_cli, name, content, what):
    target = project / name
    target.write_text(content)
    code, out, err = run_cli("check", "-o", name, "--format", "sarif")
    assert code == 2 and out == ""
    assert _error_line(err) == (f"wattlint: error: --output {name}: {what}; refusing to replace it with the report "
                                "(remove it first, or write the report to another file)")
    assert target.read_text() == content


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github"])
def test_check_output_replaces_its_own_previous_report(project, run_cli, fmt):
    """A CI job that reruns writes the same path: a wattlint report there (of any format) is replaced, as is an empty
    file; a file of the user's at that path is not."""
    for _ in range(2):
        code, out, err = run_cli("check", "-o", f"r.{fmt}", "--format", fmt)
        assert code == 0, err
    text = (project / f"r.{fmt}").read_text()
    if fmt == "json":
        assert json.loads(text)["schema"] == "wattlint.check/1"
    if fmt == "sarif":
        assert json.loads(text)["runs"][0]["tool"]["driver"]["name"] == "wattlint"
    if fmt == "text":
        assert text.rstrip().splitlines()[-1].startswith("Found 0 error(s)")
    (project / "empty.txt").write_text("")
    assert run_cli("check", "-o", "empty.txt")[0] == 0
    (project / f"r.{fmt}").write_text("my notes\n")
    code, _, err = run_cli("check", "-o", f"r.{fmt}", "--format", fmt)
    assert code == 2 and "is not a wattlint report" in err
    assert (project / f"r.{fmt}").read_text() == "my notes\n"


def test_every_report_wattlint_writes_is_recognised_and_nothing_else(project, run_cli):
    """io.report_kind knows the reports of estimate (text, json, markdown, html; one GPU and --compare) and analyze
    (text, json) too, so that `check -o` may replace them (and a guard for those commands can reuse it)."""
    from wattlint.io import not_a_report, report_kind

    made = {}
    for fmt in ("text", "json", "markdown", "html"):
        for extra, tag in (((), "one"), (("--compare", "a100"), "cmp")):
            name = f"e-{tag}.{fmt}"
            assert run_cli("m.onnx", "--steps", "1", "--format", fmt, *extra, "-o", name)[0] == 0
            made[name] = "json" if fmt == "json" else fmt
    for fmt in ("text", "json"):
        name = f"a.{fmt}"
        assert run_cli("analyze", "m.onnx", "--format", fmt, "-o", name)[0] == 0
        made[name] = fmt
    for name, kind in made.items():
        assert report_kind((project / name).read_text()) == kind, name
        assert not_a_report(project / name) is None
        assert run_cli("check", "-o", name)[0] == 0, name  # replaced by the check's text report
    for text in (CODECARBON, "wattlint estimate\n", "# wattlint\nAll checks passed.\nmore\n",
                 '{"schema": "wattlint.baseline/1", "models": {}}', "::warning::something else\n", "[1, 2]\n"):
        assert report_kind(text) is None, text


@pytest.mark.parametrize("argv", [("m.onnx", "--steps", "1"), ("analyze", "m.onnx")])
def test_estimate_and_analyze_output_never_replace_a_file_that_is_not_a_wattlint_report(project, run_cli, argv):
    """The guard lives in check_output_path, shared by estimate, analyze and check: a CodeCarbon log named by -o is
    kept (exit 2, one line), and a second run onto the first run's report replaces it."""
    (project / "emissions.csv").write_text(CODECARBON)
    code, out, err = run_cli(*argv, "-o", "emissions.csv")
    assert code == 2 and out == ""
    assert _error_line(err) == ("wattlint: error: --output emissions.csv: an existing file that is not a wattlint "
                                "report; refusing to replace it with the report (remove it first, or write the "
                                "report to another file)")
    assert (project / "emissions.csv").read_text() == CODECARBON
    for _ in range(2):
        code, out, err = run_cli(*argv, "-o", "report.txt")
        assert code == 0, err


def _long_model(root: Path) -> Path:
    """m.onnx copied under nested folders so that its absolute path is at least 200 characters (a CI runner's checkout
    is deep): the first line of every text report that names it is longer than the report's width."""
    folder, i = root, 0
    while len(str(folder / "m.onnx")) < 200:
        folder, i = folder / f"level{i:02d}_{'x' * 30}", i + 1
    folder.mkdir(parents=True)
    shutil.copy(ONNX, folder / "m.onnx")
    assert len(str(folder / "m.onnx")) >= 200 and " " not in str(folder / "m.onnx")
    return folder / "m.onnx"


@pytest.mark.parametrize("argv, fmt", [
    (("{m}", "--steps", "1"), "text"),
    (("{m}", "--steps", "1", "--compare", "a100"), "text"),
    (("{m}", "--steps", "1"), "markdown"),
    (("{m}", "--steps", "1", "--compare", "a100"), "markdown"),
    (("{m}", "--steps", "1"), "html"),
    (("{m}", "--steps", "1"), "json"),
    (("analyze", "{m}"), "text"),
    (("analyze", "{m}"), "json"),
    (("check",), "text"),
])
def test_a_rerun_onto_its_own_report_of_a_model_with_a_long_path_replaces_it(project, run_cli, argv, fmt):
    """Review: the text reports' first line wraps when the model's path is long (estimate and compare at 100 columns:
    'wattlint estimate:' alone on the first line; analyze at 120: its header takes several lines, so the table title
    is no longer the second line), and a rerun onto its own report was refused as 'not a wattlint report' (exit 2).
    A rerun, and a check onto the report, replace it."""
    model = _long_model(project)
    if argv[0] == "check":
        (project / "pyproject.toml").write_text(PARENT.replace('"m.onnx"', json.dumps(str(model))))
    argv = [a.format(m=model) for a in argv]
    out = project / "report.out"
    code, _, err = run_cli(*argv, "--format", fmt, "-o", out)
    assert code == 0, err
    lines = out.read_text().splitlines()
    if argv[0] == "analyze" and fmt == "text":  # the header: the path (200+) and ' (onnx) — 5.3 M parameters, ...'
        assert len(lines[0]) <= 120 and lines[1] != "One training step (per micro-batch)"
        assert "One training step (per micro-batch)" in [line.strip() for line in lines[2:8]]
    elif fmt == "text" and argv[0] != "check":  # 'wattlint estimate: ' + 200 characters > 100 columns
        assert lines[0] == ("wattlint compare:" if "--compare" in argv else "wattlint estimate:"), lines[:3]
        assert lines[1].startswith(str(model)[:60])
    first = out.read_text()
    code, _, err = run_cli(*argv, "--format", fmt, "-o", out)
    assert code == 0, err
    assert out.read_text().splitlines()[0] == first.splitlines()[0]
    if argv[0] != "check":
        code, _, err = run_cli("check", "-o", out)
        assert code == 0, err
        assert out.read_text().strip().splitlines()[-1].startswith("Found 0 error(s)")


NOTES = "\n## Reviewer notes\nApproved, ticket OPS-123\n"


@pytest.mark.parametrize("argv, fmt", [
    (("m.onnx", "--steps", "1"), "text"), (("m.onnx", "--steps", "1"), "markdown"),
    (("m.onnx", "--steps", "1"), "html"), (("m.onnx", "--steps", "1"), "json"),
    (("analyze", "m.onnx"), "text"),
    (("check",), "text"), (("check",), "json"), (("check",), "sarif"), (("check",), "github"),
])
def test_notes_appended_to_a_report_are_replaced_with_it_whatever_the_report(project, run_cli, argv, fmt):
    """One rule for every report (review: notes appended to an estimate were replaced, the same notes appended to a
    check's text report refused the rerun): a file that begins as a wattlint report is regenerated output, replaced
    whole by a rerun."""
    out = project / "report.out"
    assert run_cli(*argv, "--format", fmt, "-o", out)[0] == 0
    report = out.read_text()
    out.write_text(report + NOTES)
    code, _, err = run_cli(*argv, "--format", fmt, "-o", out)
    assert code == 0, err
    assert "OPS-123" not in out.read_text()
    assert out.read_text().splitlines()[0] == report.splitlines()[0]


def test_compare_runs_output_saved_by_the_user_is_a_report(project, run_cli):
    """compare-run has no -o: its output saved with '>' (text, or JSON of schema wattlint.run-comparison/1) is a
    report, replaced by a later -o (review: the JSON was called wattlint's data, the text not a report). A training
    log that holds a tracked run's summary (the same lines) among other output is not."""
    from _fake_nvml import Clock, quiet_track

    from wattlint.io import report_kind

    (project / "emissions.csv").write_text(CODECARBON)
    clock = Clock(100.0)
    tracker = quiet_track(project, clock, out=project / "run.jsonl", steps=12).start()
    for _ in range(12):
        clock.t += 0.25
        tracker.step()
    tracker.close()
    saved = {}
    for name, argv in (("cc.txt", ("emissions.csv",)), ("cc.json", ("emissions.csv", "--format", "json")),
                       ("rec.txt", ("run.jsonl",)), ("rec.json", ("run.jsonl", "--format", "json"))):
        code, out, err = run_cli("compare-run", *argv)
        assert code == 0, err
        (project / name).write_text(out)
        saved[name] = out
    assert saved["cc.txt"].startswith("codecarbon measurement emissions.csv: 60.0 min, 0.302 kWh")
    assert saved["rec.txt"].startswith("wattlint run record: run.jsonl (completed, 12 steps")
    assert all(line.startswith("  ") for line in saved["rec.txt"].splitlines()[1:])
    assert json.loads(saved["cc.json"])["schema"] == json.loads(saved["rec.json"])["schema"] \
        == "wattlint.run-comparison/1"
    for name in saved:
        assert report_kind(saved[name]) == ("json" if name.endswith(".json") else "text"), name
        code, _, err = run_cli("m.onnx", "--steps", "1", "--format", "json", "-o", name)
        assert code == 0, (name, err)
        assert json.loads((project / name).read_text())["schema"] == "wattlint.estimate/1"
    log = "epoch 1: loss 2.31\n" + saved["rec.txt"] + "epoch 2: loss 1.87\n"
    (project / "train.log").write_text(saved["rec.txt"] + "saved checkpoint ckpt-12.pt\n")
    assert report_kind(log) is None and report_kind((project / "train.log").read_text()) is None
    code, _, err = run_cli("m.onnx", "--steps", "1", "-o", "train.log")
    assert code == 2 and "train.log: an existing file that is not a wattlint report" in err


@pytest.mark.parametrize("text", [
    "# notes\nOne training step (per micro-batch)\nto read\n",  # the analysis title without its header
    "All checks passed!\nlm: 0.1 kWh, 48 g CO2e, $0.01, 10.0 min on h100-sxm5-80gb (prior)\nAll checks passed.\n",
    "make lint\nFound 0 error(s), 0 warning(s), 0 info(s)\n",  # a lint log: another tool's output first
    "notes\nwattlint estimate: 0.3 kWh\n",
    '{"schema": "wattlint.run/1", "type": "header"}\n{"type": "window"}\n',
    "## wattlint estimate: copied\n",
])
def test_what_merely_quotes_a_report_is_not_one(text):
    """A report is recognised by how it begins: a log or notes that hold a report's lines further down are not."""
    from wattlint.io import report_kind

    assert report_kind(text) is None


@pytest.mark.parametrize("text, ours", [
    ('tool = { other = 1, note = "wattlint" }\nbroken =\n', False),
    ('tool = { note = "x, wattlint = y" }\nbroken =\n', False),
    ('tool = { black = { wattlint = 1 } }\nbroken =\n', False),
    ("tool = { ruff = 1 } # wattlint = 1\nbroken =\n", False),
    ('tool = { "wattlint".gpu = "a100" }\nbroken =\n', True),
    ("tool = { ruff = 1, wattlint = { gpu = \"a100\" }\nbroken =\n", True),
])
def test_an_invalid_pyproject_is_ours_only_with_a_wattlint_key_under_tool(nested, text, ours):
    """Review: an invalid pyproject.toml whose top-level 'tool = { ... }' merely holds the word wattlint (in a string
    value, a nested table's key, a comment) was taken for wattlint's configuration and stopped the search; only a key
    named wattlint in tool's own table does."""
    from wattlint.config import find_pyproject

    (nested / "pyproject.toml").write_text(text)
    assert find_pyproject(nested) == (nested / "pyproject.toml" if ours else nested.parent / "pyproject.toml")


# ---- 3. the baseline: unreadable, a UTF-8 BOM, "models": null --------------------------------------------------

def test_an_unreadable_baseline_says_so_and_never_advises_deleting_it(project, run_cli, monkeypatch):
    assert run_cli("check", "--update-baseline")[0] == 0
    baseline = project / "wattlint-baseline.json"
    kept = baseline.read_bytes()
    real = pathlib.Path.read_text

    def read_text(self, *a, **k):
        if Path(self).name == "wattlint-baseline.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    for args in (("check",), ("check", "--update-baseline")):
        code, out, err = run_cli(*args)
        assert code == 2
        line = _error_line(err)
        assert line == (f"wattlint: error: baseline {baseline}: cannot read it: Permission denied; the file is "
                        "unchanged: make it readable (or point 'baseline' at another file)")
        assert "delete" not in line and "not valid JSON" not in line
    monkeypatch.undo()
    assert baseline.read_bytes() == kept


def test_a_baseline_with_a_utf8_bom_is_read_and_its_extra_keys_kept(project, run_cli):
    assert run_cli("check", "--update-baseline")[0] == 0
    baseline = project / "wattlint-baseline.json"
    doc = json.loads(baseline.read_text())
    energy = doc["models"]["parents"]["energy_kwh"]
    doc["_comment"] = "reviewed by ops"
    baseline.write_bytes(b"\xef\xbb\xbf" + json.dumps(doc, indent=2).encode())
    code, out, err = run_cli("check")
    assert code == 0, err
    code, out, err = run_cli("check", "--update-baseline")
    assert code == 0, err
    raw = baseline.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # written back as wattlint writes every baseline
    again = json.loads(raw)
    assert again["_comment"] == "reviewed by ops" and again["models"]["parents"]["energy_kwh"] == energy


def test_a_null_models_baseline_says_null(project, run_cli):
    (project / "wattlint-baseline.json").write_text('{"schema": "wattlint.baseline/1", "models": null}\n')
    code, out, err = run_cli("check")
    assert code == 2
    line = _error_line(err)
    assert '"models" must be an object of model name -> totals, got null;' in line and "NoneType" not in line
    (project / "wattlint-baseline.json").write_text('{"schema": "wattlint.baseline/1", "models": {"parents": null}}\n')
    code, out, err = run_cli("check")
    assert code == 2 and "model 'parents': expected an object of totals, got null;" in _error_line(err)
