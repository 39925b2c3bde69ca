"""Input handling, review s52: each refused input gets one 'wattlint: error:' line and exit 2 (expected values from
the project rules, by hand: a bad input is the user's, exit 2, one line, never a traceback)."""

from __future__ import annotations

import pytest

from _cli_errors import EXAMPLES, one_error_line
from wattlint.cli import main

ONNX = EXAMPLES / "gpt2-tiny.onnx"


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---- 1. -o NAME/ for a folder that is not there: a FILE named NAME was written ------------------------------------

def _project(tmp_path):
    (tmp_path / "pyproject.toml").write_text(f"""[tool.wattlint]
gpu = "a100"

[[tool.wattlint.models]]
name = "m"
source = "{ONNX.as_posix()}"
batch-size = 8
steps = 10
""", encoding="utf-8")


@pytest.mark.parametrize("argv", [("estimate", ONNX, "--gpu", "a100"), ("check", "--no-cache")])
def test_output_name_ending_in_a_separator_is_refused(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    _project(tmp_path)
    code, _, err = _run(capsys, *argv, "-o", "nodir/")
    assert code == 2
    line = one_error_line(err)
    assert "nodir/" in line and "separator" in line
    assert not (tmp_path / "nodir").exists()  # nothing written


# ---- 2. empty values read as "not given" ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, flag", [
    (("estimate", ONNX, "--gpu", "a100", "--models-dir", ""), "--models-dir"),
    (("check", "--models-dir", ""), "--models-dir"),
    (("calibrate", "--plan", "--part", ""), "--part"),
    (("calibrate", "--plan", "--gpu", ""), "--gpu"),
    (("fit", "cal", "--gpu", ""), "--gpu"),
    (("fit", "cal", "--model-hash", ""), "--model-hash"),
    (("validate", "predict", "--gpu", ""), "--gpu"),
])
def test_an_empty_value_is_refused(tmp_path, monkeypatch, capsys, argv, flag):
    monkeypatch.chdir(tmp_path)
    _project(tmp_path)
    code, _, err = _run(capsys, *argv)
    assert code == 2
    line = one_error_line(err)
    assert flag in line and "expected a non-empty" in line


def test_the_api_refuses_an_empty_models_dir():
    from wattlint.api import models_search_path
    from wattlint.types import ConfigError

    with pytest.raises(ConfigError, match="non-empty"):
        models_search_path("")


# ---- 3. compare-run /dev/null: "file not found" ---------------------------------------------------------------------

def test_compare_run_names_a_device_as_one(capsys):
    code, _, err = _run(capsys, "compare-run", "/dev/null")
    assert code == 2
    line = one_error_line(err)
    assert "/dev/null" in line and "a device" in line and "not found" not in line


# ---- 4. a JSON file nested too deeply: the message did not name the file -------------------------------------------

def test_a_deeply_nested_file_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep.jsonl").write_text("[" * 100_000 + "\n", encoding="utf-8")
    code, _, err = _run(capsys, "compare-run", "deep.jsonl")
    assert code == 2
    line = one_error_line(err)
    assert "deep.jsonl" in line and "nested too deeply" in line
    (tmp_path / "runs").mkdir()
    (tmp_path / "deep.jsonl").rename(tmp_path / "runs" / "deep.jsonl")
    code, _, err = _run(capsys, "fit", "runs")
    assert code == 2
    line = one_error_line(err)
    assert "deep.jsonl" in line and "nested too deeply" in line
