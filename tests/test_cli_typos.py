"""Mistyped options and empty / overriding rule selections on the command line: one clear line, exit 2, or the
selection the user asked for (never a silent no-op)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from wattlint.lint.engine import is_enabled
from wattlint.lint.registry import all_rules
from wattlint.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
ONNX = ROOT / "examples" / "gpt2-tiny.onnx"


def test_mistyped_top_level_option_is_named_not_a_missing_model(run_cli):
    code, out, err = run_cli("--versoin")
    assert code == 2 and "unrecognized option '--versoin'" in err and "did you mean '--version'" in err
    assert "MODEL" not in err


def test_mistyped_command_option_suggests_the_close_one(run_cli):
    code, out, err = run_cli(str(ONNX), "--gpuu", "a100-sxm4-80gb")
    assert code == 2 and "did you mean '--gpu'?" in err
    code, out, err = run_cli("check", "--selct", "WL1")
    assert code == 2 and "wattlint: error: check: unrecognized option '--selct'; did you mean '--select'?" in err


def test_version_after_a_command_says_where_it_goes(run_cli):
    code, out, err = run_cli(str(ONNX), "--version")
    assert code == 2 and "--version goes first" in err


def test_unambiguous_prefixes_and_equals_forms_still_parse(run_cli):
    """argparse accepts an unambiguous prefix ('--step' for '--steps') and '--opt=value': the typo check must not
    refuse what argparse accepts."""
    code, out, err = run_cli(str(ONNX), "--gpu=a100-sxm4-80gb", "--step", "3", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["plan"]["steps"] == 3
    code, out, err = run_cli(str(ONNX), "--gp", "a100-sxm4-80gb")
    assert code == 2 and "ambiguous option" in err  # argparse's own message for an ambiguous prefix


def _rule_codes(config, model=None):
    return {code for code, r in all_rules().items() if is_enabled(r, config, model)}


def test_force_ignore_beats_a_more_specific_select(tmp_path):
    """The configured select = ["WL202"] is more specific than an ignore of 'WL2' or 'ALL' in the file (ruff's rule:
    the more specific selector wins), but codes given to 'check --ignore' override the file."""
    cfg = parse_config({"select": ["WL202"], "ignore": ["WL2"]}, root=tmp_path)
    assert _rule_codes(cfg) == {"WL202"}  # file semantics unchanged
    import dataclasses

    assert _rule_codes(dataclasses.replace(cfg, force_ignore=("WL2",))) == set()
    everything = parse_config({"select": ["ALL"]}, root=tmp_path)
    stable = {c for c, r in all_rules().items() if r.status != "preview"}  # preview rules need preview = true
    assert _rule_codes(everything) == stable
    assert _rule_codes(dataclasses.replace(everything, force_ignore=("ALL",))) == set()
    left = _rule_codes(dataclasses.replace(everything, force_ignore=("WL1",)))
    assert left and not any(c.startswith("WL1") for c in left)


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copy(ONNX, tmp_path / "lm.onnx")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.wattlint]\ngpu = "a100-sxm4-80gb"\nselect = ["WL202"]\n\n[[tool.wattlint.models]]\nname = "lm"\n'
        'source = "lm.onnx"\nbatch-size = 8\nseq-len = 256\nsteps = 10\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_check_ignore_all_turns_every_rule_off(run_cli, project):
    code, out, err = run_cli("check", "--no-cache", "--select", "ALL", "--format", "json")
    assert code in (0, 1), err
    counts = json.loads(out)["counts"]
    assert sum(counts.values()) > 0, "the model must raise a finding for this test to mean anything"
    code, out, err = run_cli("check", "--no-cache", "--ignore", "ALL", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["counts"] == {"error": 0, "warning": 0, "info": 0}


@pytest.mark.parametrize("opt,value", [("--select", ""), ("--select", ","), ("--ignore", " , ")])
def test_check_empty_selection_is_refused(run_cli, project, opt, value):
    code, out, err = run_cli("check", opt, value)
    assert code == 2 and f"{opt} {value!r} names no rule code" in err


def test_check_notes_name_config_keys_not_flags(run_cli, tmp_path, monkeypatch):
    """Under `check` every option came from [tool.wattlint]: the notes' advice names its keys (loader-sample-time),
    as its errors do, not the command line's flags (--loader-sample-time)."""
    shutil.copy(ONNX, tmp_path / "lm.onnx")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.wattlint]\ngpu = "a100-sxm4-80gb"\n\n[[tool.wattlint.models]]\nname = "lm"\nsource = "lm.onnx"\n'
        'batch-size = 8\nseq-len = 256\nepochs = 1\ndataset-size = 64\n')
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("check", "--no-cache", "--format", "json")
    assert code in (0, 1), err
    notes = json.loads(out)["models"][0]["assumptions"]
    assert any("(loader-sample-time to state" in a for a in notes), notes
    assert not [a for a in notes if "--loader-sample-time" in a or "--optimizer " in a]
    # the estimate command keeps the flags
    code, out, err = run_cli("lm.onnx", "--gpu", "a100-sxm4-80gb", "--batch-size", "8", "--epochs", "1",
                             "--dataset", "64", "--format", "json")
    assert any("--loader-sample-time" in a for a in json.loads(out)["assumptions"])


def test_usage_errors_read_like_every_other_input_error(run_cli):
    """argparse's refusals printed 'wattlint [estimate]: ...' / 'wattlint check: ...' while every other input error
    reads 'wattlint: error: ...': one prefix for all, the sub-command named after it."""
    for argv, expected in ((["estimate", "m.onnx", "--epochs", "x"],
                            "wattlint: error: argument --epochs: 'x': expected a number, got 'x'"),
                           (["check", "--selct", "WL1"],
                            "wattlint: error: check: unrecognized option '--selct'; did you mean '--select'?"),
                           (["chek"], "wattlint: error: unknown command 'chek'; did you mean 'check'?")):
        code, out, err = run_cli(*argv)
        assert code == 2 and out == "", argv
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), (argv, err)


def test_a_negative_number_in_scientific_notation_is_a_value(run_cli):
    """'--tokens -1e9' read as an option ('expected one argument'); it is the option's value, refused by its range."""
    code, _, err = run_cli("m.onnx", "--tokens", "-1e9", "--seq-len", "10")
    assert code == 2 and err.strip() == "wattlint: error: argument --tokens: '-1e9': expected a number in (0, 1e+17]"


def test_no_arguments_is_a_usage_error_naming_the_commands(run_cli):
    """A hook or script that lost its arguments must not pass: bare 'wattlint' exits 2 with one line."""
    code, out, err = run_cli()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "give a model to estimate or a command" in err and "compare-run" in err
    code, out, err = run_cli("--help")
    assert code == 0 and "usage: wattlint" in out


def test_an_option_given_twice_is_refused_not_overridden(run_cli):
    """Review: '--gpu a100 --gpu h100' estimated on the H100 and '--steps 10 --steps 20' ran 20 without a word."""
    code, out, err = run_cli(str(ONNX), "--gpu", "a100", "--gpu", "h100", "--steps", "10")
    assert code == 2 and "--gpu given twice ('--gpu a100', then '--gpu h100')" in err and out == ""
    code, out, err = run_cli(str(ONNX), "--gpu", "a100", "--steps", "10", "--steps=20")
    assert code == 2 and "--steps given twice ('--steps 10', then '--steps=20')" in err
    code, out, err = run_cli("compare-run", "x.csv", "--row", "-1", "--row", "0")
    assert code == 2 and "--row given twice" in err
    # a value that looks like an option is the option's value, not a second option; repeatable options repeat
    code, out, err = run_cli(str(ONNX), "--gpu", "a100", "--steps", "2", "-o", "-", "--format", "json")
    assert code == 0, err
    code, out, err = run_cli("analyze", str(ONNX), "--input", "input_ids=int64[2,16]", "--input",
                             "attention_mask=int64[2,16]", "--format", "json")
    assert "given twice" not in err


def test_an_error_quoting_a_huge_argument_stays_a_readable_line(run_cli):
    """Review: a 100,000-character GPU name was echoed in full in the error line."""
    code, out, err = run_cli("gpus", "x" * 100_000)
    assert code == 2 and err.count("\n") == 1 and len(err) < 1200
    assert "unknown GPU 'xxx" in err and "characters cut" in err


def test_a_batch_split_flag_replaces_the_configs(run_cli, tmp_path, monkeypatch):
    """Review: with grad-accum = 2 in [tool.wattlint], `--micro-batch-size 8` was refused as conflicting (exit 2),
    and with micro-batch-size = 8 there, `--grad-accum 2` too: the user gave one of them, and flags win over the
    file (CONFIG.md). The flag's split replaces the file's."""
    import json
    import shutil
    from pathlib import Path

    onnx = Path(__file__).resolve().parents[1] / "examples" / "gpt2-tiny.onnx"
    shutil.copy(onnx, tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\ngpu = "a100"\nbatch-size = 64\ngpus = 2\n'
                                             'grad-accum = 2\nsteps = 10\n')
    code, out, err = run_cli("m.onnx", "--micro-batch-size", "8", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["plan"]["grad_accum"] == 4  # 64 / (2 x 8)
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\ngpu = "a100"\nbatch-size = 32\n'
                                             'micro-batch-size = 8\nsteps = 10\n')
    code, out, err = run_cli("m.onnx", "--grad-accum", "2", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["plan"]["grad_accum"] == 2
