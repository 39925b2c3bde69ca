"""Unreadable / non-JSON user files exit 2 with one line (not 'internal error', exit 3)."""

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
    """A config.json with impossible values (transformers' own validation rejects it) is an input error."""
    pytest.importorskip("transformers")
    p = tmp_path / "config.json"
    p.write_text('{"model_type": "llama", "hidden_size": -5}')
    code, out, err = run_cli("analyze", p)
    assert code == 2, err
    assert err.startswith("wattlint: error:") and "invalid llama config" in err and err.count("\n") == 1


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
