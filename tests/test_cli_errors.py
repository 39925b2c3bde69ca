"""Unreadable / non-JSON user files exit 2 with one line (not 'internal error', exit 3)."""

import os
from pathlib import Path

import pytest


@pytest.mark.parametrize("argv", [
    ["validate", "compare", "--measurements", "{missing}"],
    ["validate", "compare", "--measurements", "{bad}"],
    ["validate", "measure", "--predictions", "{missing}", "--device", "cpu"],
])
def test_bad_user_files_exit_2(run_cli, tmp_path, argv):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    argv = [a.format(missing=tmp_path / "nope.json", bad=bad) for a in argv]
    code, out, err = run_cli(*argv)
    assert code == 2, err
    assert err.startswith("wattlint: error:") and err.count("\n") == 1 and "internal error" not in err


def test_oserror_without_a_path_is_still_internal(run_cli, monkeypatch):
    import wattlint.commands.rules as rules

    def boom(args):
        raise OSError("device busy")

    monkeypatch.setattr(rules, "run", boom)
    code, out, err = run_cli("rules")
    assert code == 3 and "internal error" in err


def test_invalid_hf_config_values_exit_2(run_cli, tmp_path):
    """A config.json with impossible values (a negative size: refused before transformers sees it) is an input error."""
    pytest.importorskip("transformers")
    p = tmp_path / "config.json"
    p.write_text('{"model_type": "llama", "hidden_size": -5}')
    code, out, err = run_cli("analyze", p)
    assert code == 2, err
    assert err.startswith("wattlint: error:") and "hidden_size = -5" in err and err.count("\n") == 1


def test_query_heads_not_a_multiple_of_kv_heads_name_the_keys(run_cli, tmp_path):
    """Review: 4 attention heads over 3 key/value heads ended in torch's 'returned an invalid gradient' error."""
    pytest.importorskip("transformers")
    p = tmp_path / "config.json"
    p.write_text('{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, '
                 '"num_attention_heads": 4, "num_key_value_heads": 3, "vocab_size": 100}')
    code, out, err = run_cli("analyze", p, "--seq-len", "16")
    assert code == 2 and err.count("\n") == 1, err
    assert "num_attention_heads = 4 is not a multiple of num_key_value_heads = 3" in err


def test_a_size_written_as_a_string_is_quoted_in_the_error(run_cli, tmp_path):
    """Review: "n_embd": "96" was refused as 'n_embd = 96: expected a whole number' (the quotes lost)."""
    pytest.importorskip("transformers")
    p = tmp_path / "config.json"
    p.write_text('{"model_type": "gpt2", "n_embd": "96", "n_head": 4, "n_layer": 2}')
    code, out, err = run_cli("analyze", p)
    assert code == 2 and err.count("\n") == 1, err
    assert 'n_embd = "96": expected a whole number, not a string (write 96 without quotes)' in err


@pytest.mark.parametrize("argv", [
    ["validate", "compare", "--measurements", "{f}"],
    ["validate", "measure", "--predictions", "{f}", "--device", "cpu"],
    ["validate", "predict", "--spec-from", "{f}"],
])
def test_validate_files_that_are_json_but_not_objects_exit_2(run_cli, tmp_path, argv):
    f = tmp_path / "list.json"
    f.write_text("[1, 2]")
    code, out, err = run_cli(*[a.format(f=f) for a in argv])
    assert code == 2, err
    assert err.startswith("wattlint: error:") and "internal error" not in err


# ---- absurd values (issue 12: D1, D8), refused by the one option table with one line ---------------------------

ONNX_EX = Path(__file__).resolve().parents[1] / "examples" / "resnet50.onnx"


@pytest.mark.parametrize("argv, needle", [
    (["--batch-size", "1e400"], "argument --batch-size: '1e400': expected a whole number"),  # D1: was a traceback
    (["--gpus", "4611686018427387904"], "argument --gpus: '4611686018427387904': expected a whole number"),
    (["--gpu", ""], "argument --gpu: '': expected a non-empty string"),
    (["--compare", "a100,,"], "argument --compare: 'a100,,': expected a comma-separated list"),
    (["--tokens", "inf"], "argument --tokens: 'inf': expected a number"),
    (["--epochs", "nan"], "argument --epochs: 'nan': expected a number"),
    # a goodput or utilization near 0 made totals overflow to inf / nan and reach the baseline (review F10)
    (["--goodput", "1e-300"], "argument --goodput: '1e-300': expected a fraction in [0.1, 1]"),
    (["--goodput", "0.09"], "argument --goodput: '0.09': expected a fraction in [0.1, 1]"),
    (["--utilization", "1e-320"], "argument --utilization: '1e-320': expected a fraction in [0.01, 1]"),
    (["--host-op-time", "1"], "argument --host-op-time: '1': expected seconds in [0, 0.01]"),
    # a subnormal network bandwidth divided by zero (internal error, exit 3) or priced 17,600 years
    (["--internode-gbps", "5e-324"], "argument --internode-gbps: '5e-324': expected a number in [0.1, 1e+06]"),
    (["--optimizer", "adadelta", "--optimizer-impl", "fused"], "torch has no fused Adadelta"),
    # a comparison of the --gpu with itself printed a single report and switched the JSON schema
    (["--gpu", "a100", "--compare", "a100-sxm4-80gb,a100"], "--compare a100-sxm4-80gb,a100: names no GPU other than "
                                                            "the --gpu (a100-sxm4-80gb): nothing to compare"),
])
def test_absurd_cli_values_exit_2_one_line(run_cli, argv, needle):
    code, out, err = run_cli(ONNX_EX, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and needle in err, err


@pytest.mark.parametrize("line, needle", [
    ("tokens = inf", "'tokens' = inf: expected a number"),  # blamed on the config key, not on a flag never passed
    ("gpus = 4611686018427387904", "'gpus' = 4611686018427387904: expected a whole number"),
    ("gpus = 1e300", "'gpus' = 1e+300: expected a whole number"),
    ("regression-threshold = nan", "'regression-threshold' = nan: expected a number"),
    ('select = "WL"', "'select' = 'WL': expected a list of non-empty strings"),
    ("goodput = 1e-320", "'goodput' = 1e-320: expected a fraction in [0.1, 1]"),
])
def test_absurd_config_values_name_the_key(run_cli, tmp_path, monkeypatch, line, needle):
    (tmp_path / "pyproject.toml").write_text(f"[tool.wattlint]\n{line}\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(ONNX_EX, "--gpu", "a100")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and needle in err, err
    assert " --" not in err, err  # no flag the user never passed is blamed


def test_a_non_finite_baseline_entry_is_never_written(tmp_path):
    """Totals are bounded by the option table; should a NaN / inf ever reach the baseline writer it is our bug
    (exit 3 through the CLI), and the previous baseline stays as it was."""
    from wattlint.lint.baseline import write_baseline

    path = tmp_path / ".wattlint-baseline.json"
    write_baseline(path, {"m": {"energy_kwh": 1.5, "cost_usd": 0.2}})
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="not a finite number"):
        write_baseline(path, {"m": {"energy_kwh": float("inf"), "cost_usd": float("nan")}})
    assert path.read_bytes() == before


def test_depth_without_group_by_depth_is_refused(run_cli):
    """--depth only shapes --group-by depth rows; given with another grouping it used to be ignored silently."""
    code, out, err = run_cli("examples/resnet50.onnx", "--gpu", "a100", "--steps", "10", "--depth", "3")
    assert code == 2 and not out and len(err.strip().splitlines()) == 1 and "--group-by depth" in err
    code, out, _ = run_cli("examples/resnet50.onnx", "--gpu", "a100", "--steps", "10", "--group-by", "depth",
                           "--depth", "1")
    assert code == 0 and "layer1 " in out and "layer1.0" not in out  # rows cut at one path component


@pytest.mark.parametrize("typo, command", [("chek", "check"), ("analyse", "analyze"), ("gpu", "gpus")])
def test_a_mistyped_command_is_named_as_one(run_cli, typo, command):
    """'wattlint chek' used to say "model source 'chek' not understood"."""
    code, out, err = run_cli(typo)
    assert code == 2 and not out and len(err.strip().splitlines()) == 1
    assert f"unknown command {typo!r}; did you mean '{command}'" in err


def test_a_models_dir_that_is_not_there_is_refused(run_cli, tmp_path, monkeypatch):
    """--models-dir / [tool.wattlint] models-dir name the user's fitted models: a folder that does not exist (a typo)
    used to be searched silently, the estimate falling back to public-fit as if no calibration had been given."""
    missing = tmp_path / "my-modles"
    code, out, err = run_cli("examples/resnet50.onnx", "--gpu", "a100", "--steps", "10", "--models-dir", missing)
    assert code == 2 and not out and f"--models-dir {missing}: not a folder" in err
    (tmp_path / "pyproject.toml").write_text(f'[tool.wattlint]\nmodels-dir = "{missing}"\n')
    monkeypatch.chdir(tmp_path)
    model = Path(__file__).resolve().parents[1] / "examples" / "resnet50.onnx"
    code, out, err = run_cli(model, "--gpu", "a100", "--steps", "10")
    assert code == 2 and "[tool.wattlint] models-dir" in err and "not a folder" in err
    missing.mkdir()
    code, out, err = run_cli(model, "--gpu", "a100", "--steps", "10")
    assert code == 0


def test_a_closed_pipe_is_not_reported_as_a_user_error():
    """`wattlint gpus h100 | head -1`: rich reacts to the closed pipe with SystemExit(1), which was reported as
    "code run for this command called sys.exit(1)" (exit 2). Stdout here is a pipe whose reader is gone."""
    import subprocess
    import sys

    code = ("import os, sys\n"
            "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
            "from wattlint.cli import main\n"
            "rc = main(['gpus', 'h100'])\n"
            "sys.stderr.write(f'RC={rc}\\n')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stderr.strip().splitlines() == ["RC=0"], res.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("redirect, message", [
    ("full", "wattlint: error: cannot write the output: No space left on device"),
    ("closed", "wattlint: error: cannot write the output: standard output is closed"),  # review s52: was exit 0
])
def test_a_full_or_closed_stdout_is_not_an_internal_error(redirect, message):
    """Review: `wattlint rules > /dev/full` ended 'internal error: OSError ... please report it' (exit 3) and
    `wattlint rules >&-` 'internal error: AttributeError' (exit 3)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-c", "import sys\nfrom wattlint.cli import main\nsys.exit(main(['rules']))"]
    with open("/dev/full", "w") as full:  # closed: fd 1 closed in the child before Python starts (sys.stdout None)
        kw = {"stdout": full} if redirect == "full" else {"preexec_fn": lambda: os.close(1)}
        res = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, timeout=120, **kw)
    if message is None:
        assert res.returncode == 0 and res.stderr == "", res.stderr
    else:
        assert res.returncode == 2 and res.stderr.strip().splitlines() == [message], res.stderr


def test_output_names_stdout_refuses_an_empty_name_and_implies_the_format(run_cli, tmp_path, monkeypatch):
    """Review: `-o -` wrote a file named '-', `-o ''` printed to stdout silently, and `-o r.json` wrote the text
    report into a .json file (only '(text)' on stderr said so)."""
    monkeypatch.chdir(tmp_path)
    base = (ONNX_EX, "--gpu", "a100", "--steps", "10")
    code, out, err = run_cli(*base, "-o", "-")
    assert code == 0 and out.startswith("wattlint estimate:") and not (tmp_path / "-").exists()
    code, out, err = run_cli(*base, "-o", "")
    assert code == 2 and out == "" and err.count("\n") == 1 and "expected a file name ('-' for stdout)" in err
    for name, head in (("r.json", '{\n  "schema": "wattlint.estimate/1"'), ("r.md", "### wattlint estimate"),
                       ("r.html", "<!DOCTYPE html>"), ("r.txt", "wattlint estimate:")):
        code, _, err = run_cli(*base, "-o", name)
        assert code == 0 and (tmp_path / name).read_text().startswith(head), (name, err)
    code, _, _ = run_cli(*base, "-o", "forced.json", "--format", "text")  # --format wins over the name
    assert code == 0 and (tmp_path / "forced.json").read_text().startswith("wattlint estimate:")
    code, _, _ = run_cli("analyze", ONNX_EX, "-o", "a.json")
    assert code == 0 and '"schema": "wattlint.analysis/1"' in (tmp_path / "a.json").read_text()


@pytest.mark.parametrize("command, formats", [("check", ("text", "json", "sarif", "github")),
                                              ("analyze", ("text", "json"))])
def test_output_help_names_only_suffixes_the_command_writes(run_cli, command, formats):
    """Review: `check --help` said a .md / .html name picks the format; `check -o out.md` wrote text."""
    code, out, _ = run_cli(command, "--help")
    assert code == 0
    text = " ".join(out.split())
    assert ".json" in text and ".md" not in text and ".html" not in text
    assert (".sarif" in text) == ("sarif" in formats)


def test_compare_run_help_speaks_only_of_its_own_options(run_cli):
    """Review: compare-run's --gpus and --gpu-hour-price help (shared with `estimate`) described --compare and the
    tensor / pipeline-parallel degrees, which compare-run does not have."""
    code, out, _ = run_cli("compare-run", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "--compare" not in flat and "tensor-parallel" not in flat and "pipeline-parallel" not in flat
    assert "GPUs the run used" in flat
