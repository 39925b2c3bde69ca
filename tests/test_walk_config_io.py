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
