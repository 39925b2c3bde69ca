"""`wattlint check`'s gate at its edges (review): noqa comments tied to the right model whatever the TOML spelling of
its entry, a baseline shared by projects kept whole, `select = []`, the update hint under --config, the output
format of an --output name, and empty or odd --config / PATH arguments."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ONNX = ROOT / "examples" / "gpt2-tiny.onnx"
TOP = '[tool.wattlint]\ngpu = "a100"\nsteps = 10\n'
SRC = 'source = "models/gpt2-tiny.onnx"'


@pytest.fixture
def proj(tmp_path, monkeypatch):
    """A project folder with the example ONNX model; returns a function writing its pyproject.toml."""
    (tmp_path / "models").mkdir()
    shutil.copy(ONNX, tmp_path / "models" / "gpt2-tiny.onnx")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path.parent / f"{tmp_path.name}-cache"))

    def write(text: str) -> Path:
        (tmp_path / "pyproject.toml").write_text(text)
        return tmp_path

    return write


def _wl101(out: str) -> dict[str, str]:
    """{model name: the 'file:line' of its WL101 finding}."""
    found = {}
    for ln in out.splitlines():
        if ": WL101 warning: " in ln:
            where, rest = ln.split(": WL101 warning: ", 1)
            found[rest.split(":", 1)[0]] = where
    return found


# ---- noqa: the comment waives the model whose entry holds it, or is refused ---------------------------------------

def test_noqa_under_a_quoted_table_header_waives_its_own_model(proj, run_cli):
    """`[["tool".wattlint.models]]` is [[tool.wattlint.models]]: the entries were matched by spelling and then taken
    by position, so B's noqa waived A's WL101 and B's was reported (at A's source line)."""
    proj(TOP + f'\n[["tool".wattlint.models]]\nname = "A"\n{SRC}\n\n'
         f'[[tool.wattlint.models]]\nname = "B"  # wattlint: noqa: WL101\n{SRC}\n')
    code, out, err = run_cli("check", "--select", "WL101")
    assert code == 0, out + err
    assert _wl101(out) == {"A": "pyproject.toml:5"}, out


def test_noqa_in_a_dotted_key_inline_array_waives_its_own_entry_only(proj, run_cli):
    """The form CONFIG.md documents (`[tool]` then `wattlint.models = [ {...}, {...} ]`): the noqa on A's line waived
    both models (the array was looked for as `models = [` only)."""
    proj('[tool]\nwattlint.gpu = "a100"\nwattlint.steps = 10\n'
         f'wattlint.models = [ {{ name = "A", {SRC} }},  # wattlint: noqa: WL101\n'
         f'  {{ name = "B", {SRC} }} ]\n')
    code, out, err = run_cli("check", "--select", "WL101")
    assert code == 0, out + err
    assert _wl101(out) == {"B": "pyproject.toml:5"}, out


@pytest.mark.parametrize("header", ["[[tool . wattlint . models]]", "[['tool'.wattlint.models]]",
                                    '[[ "tool" . "wattlint" . "models" ]]'])
def test_noqa_under_any_spelling_of_the_header_applies_and_is_checked(proj, run_cli, header):
    """These headers were not recognised: the noqa was ignored silently, and a malformed one was not refused."""
    proj(TOP + f'{header}\nname = "A"  # wattlint: noqa: WL101\n{SRC}\n')
    code, out, err = run_cli("check", "--select", "WL101")
    assert code == 0 and "WL101" not in out and "suppresses nothing" not in out, out + err
    proj(TOP + f'{header}\nname = "A"  # wattlint: noqa: WLXYZ\n{SRC}\n')
    code, out, err = run_cli("check", "--select", "WL101")
    assert code == 2 and err.count("\n") == 1 and "pyproject.toml:5: noqa: 'WLXYZ' is not a rule code" in err, err


def test_an_entrys_sub_table_under_a_spaced_quoted_header_keeps_its_noqa(proj, run_cli):
    """The entry's own sub-table spelt `[ tool . "wattlint" . models . budget ]` was taken for another table: the
    noqa in it waived nothing (a note said so) and the entry's WL101 was reported; the next entry keeps its own."""
    proj(TOP + f'[[tool.wattlint.models]]\nname = "A"\n{SRC}\n[ tool . "wattlint" . models . budget ]\n'
         f'energy-kwh = 1  # wattlint: noqa: WL101\n\n[[tool.wattlint.models]]\nname = "B"\n{SRC}\n')
    code, out, err = run_cli("check", "--select", "WL101")
    assert code == 0 and _wl101(out) == {"B": "pyproject.toml:10"} and "note:" not in out, out + err


def test_a_noqa_on_a_line_holding_two_entries_is_refused(proj, run_cli):
    """`models = [{A}, {B}]  # wattlint: noqa` cannot say which model it waives: it waived both."""
    proj(TOP + f'models = [{{ name = "A", {SRC} }}, {{ name = "B", {SRC} }}]  # wattlint: noqa: WL101\n')
    code, out, err = run_cli("check", "--select", "WL101")
    assert code == 2 and err.count("\n") == 1 and out == "", (out, err)
    assert "pyproject.toml:4: noqa comment on a line holding several model entries ('A', 'B')" in err, err


def test_a_noqa_whose_entry_cannot_be_located_is_refused_not_guessed(proj, run_cli):
    """A model written with dotted keys has no entry of its own to hold the comment: refused (exit 2), never applied
    to whichever model sits nearest."""
    proj(TOP + 'models.name = "A"  # wattlint: noqa: WL101\nmodels.source = "models/gpt2-tiny.onnx"\n')
    code, out, err = run_cli("check", "--select", "WL101")
    assert code == 2 and err.count("\n") == 1 and out == "", (out, err)
    assert "pyproject.toml:4: cannot tell which model entry this noqa comment belongs to" in err, err
    proj(TOP + 'models.name = "A"\nmodels.source = "models/gpt2-tiny.onnx"\n')  # without a noqa it is checked
    code, out, err = run_cli("check", "--select", "WL101")
    assert code == 0 and _wl101(out) == {"A": "pyproject.toml:4"}, out + err


# ---- a shared baseline keeps the other projects' entries ----------------------------------------------------------

@pytest.mark.parametrize("how", ["link", "outside"])
def test_a_baseline_shared_by_two_projects_keeps_both(tmp_path, monkeypatch, run_cli, how):
    """Each project's --update-baseline removed the other's entries as "no longer configured" (a baseline shared
    through a link, as the docs describe, or named outside the project)."""
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))
    shared = tmp_path / "shared.json"
    if how == "link":  # a link to a missing file is refused: the shared file exists
        shared.write_text('{"schema": "wattlint.baseline/1", "models": {}}\n')
    for name in ("A", "B"):
        d = tmp_path / name
        d.mkdir()
        shutil.copy(ONNX, d / "gpt2-tiny.onnx")
        extra = 'baseline = "../shared.json"\n' if how == "outside" else ""
        (d / "pyproject.toml").write_text(TOP + extra + f'[[tool.wattlint.models]]\nname = "{name}"\n'
                                          'source = "gpt2-tiny.onnx"\n')
        if how == "link":
            (d / "wattlint-baseline.json").symlink_to(Path("..") / "shared.json")
    monkeypatch.chdir(tmp_path / "A")
    code, out, err = run_cli("check", "--update-baseline")
    assert code == 0, out + err
    before = json.loads(shared.read_text())["models"]["A"]
    monkeypatch.chdir(tmp_path / "B")
    code, out, err = run_cli("check", "--update-baseline")
    assert code == 0, out + err
    assert json.loads(shared.read_text())["models"] == {"A": before, "B": json.loads(shared.read_text())["models"]["B"]}
    assert "removed" not in out and "(A), as another project's" in out, out
    code, out, err = run_cli("check", "--update-baseline", "--format", "json")
    assert json.loads(out)["baseline_changes"] == {"written": ["B"], "kept": [], "removed": [], "energy_kwh": {}}
    code, out, err = run_cli("check")  # no "entries no configured model has ... drops them" on every run
    assert code == 0 and "note:" not in out, out


# ---- select = [] ----------------------------------------------------------------------------------------------------

def test_an_empty_select_in_the_config_is_refused_as_on_the_command_line(proj, run_cli):
    """`select = []` turned every rule off, the budget included: a model 16,000 x over it passed ("All checks
    passed.", exit 0), while `--select ''` was refused."""
    proj(TOP + f'select = []\n[[tool.wattlint.models]]\nname = "A"\n{SRC}\nbudget = {{ energy-kwh = 1e-9 }}\n')
    code, out, err = run_cli("check")
    assert code == 2 and out == "" and err.count("\n") == 1, (out, err)
    assert "[tool.wattlint]: 'select' = [] names no rule code" in err, err


# ---- the update hint names the --config it ran with ---------------------------------------------------------------

def test_the_update_hint_carries_the_config_of_a_subfolder_project(tmp_path, monkeypatch, run_cli):
    """From the repository root with --config ml/pyproject.toml, WL305 and the notes said "run 'wattlint check
    --update-baseline'", which fails there (no configuration found)."""
    ml = tmp_path / "ml"
    (ml / "models").mkdir(parents=True)
    shutil.copy(ONNX, ml / "models" / "gpt2-tiny.onnx")
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    entry = f'[[tool.wattlint.models]]\nname = "lm"\n{SRC}\n'
    (ml / "pyproject.toml").write_text(TOP + entry)
    code, out, err = run_cli("check", "--config", "ml/pyproject.toml")
    assert "'wattlint check --config ml/pyproject.toml --update-baseline' writes it" in out, out + err
    assert run_cli("check", "--config", "ml/pyproject.toml", "--update-baseline")[0] == 0
    (ml / "pyproject.toml").write_text(TOP.replace("steps = 10", "steps = 20") + entry)
    code, out, err = run_cli("check", "--config", "ml/pyproject.toml")
    assert code == 1, out + err
    line = next(ln for ln in out.splitlines() if " WL305 error: " in ln)
    assert "run 'wattlint check --config ml/pyproject.toml --update-baseline' and commit" in line, line
    monkeypatch.chdir(ml)  # where the plain command finds the configuration, the hint stays plain
    code, out, err = run_cli("check")
    assert "run 'wattlint check --update-baseline' and commit" in out, out


# ---- the format of an --output name, as --help says --------------------------------------------------------------

def test_an_output_name_that_implies_no_format_gets_the_configured_one_as_help_says(proj, run_cli):
    proj(TOP + 'format = "json"\n' + f'[[tool.wattlint.models]]\nname = "A"\n{SRC}\n')
    assert run_cli("check", "-o", "r.txt")[0] == 0
    assert (Path("r.txt").read_text().startswith("pyproject.toml:") or "A: " in Path("r.txt").read_text())
    assert run_cli("check", "-o", "r.md")[0] == 0
    assert json.loads(Path("r.md").read_text())["schema"] == "wattlint.check/1"
    code, out, _ = run_cli("check", "--help")
    help_text = " ".join(out.split())
    assert "a .json / .sarif / .txt name picks the format, any other name gets 'format' in [tool.wattlint]" \
        in help_text, help_text
    assert "any other name: text" not in help_text


# ---- empty and odd --config / PATH arguments ------------------------------------------------------------------------

def test_empty_and_odd_config_and_path_arguments_are_refused(proj, run_cli):
    proj(TOP + f'[[tool.wattlint.models]]\nname = "A"\n{SRC}\n')
    code, out, err = run_cli("check", "--config", "")
    assert code == 2 and out == "" and "--config '' names no file" in err and err.count("\n") == 1, (out, err)
    code, out, err = run_cli("check", "")
    assert code == 2 and out == "" and "an empty PATH argument" in err and err.count("\n") == 1, (out, err)
    if os.path.exists("/dev/null"):
        code, out, err = run_cli("check", "--config", "/dev/null")
        assert code == 2 and "--config /dev/null: a device, not a TOML file" in err and "not found" not in err, err


# ---- review B: indented headers, select = [] with other selections, a project's own linked baseline ---------------

@pytest.mark.parametrize("indent", ["  ", "\t"])
def test_noqa_under_an_indented_table_header_waives_its_own_model(proj, run_cli, indent):
    """An indented header (Taplo's indent_tables) ended the previous entry's span on the header's own line: the noqa
    on B's header was refused (exit 2) as "on a line holding several model entries ('A', 'B')"."""
    proj(TOP + f'\n{indent}[[tool.wattlint.models]]\n{indent}name = "A"\n{indent}{SRC}\n\n'
         f'{indent}[[tool.wattlint.models]]  # wattlint: noqa: WL101\n{indent}name = "B"\n{indent}{SRC}\n')
    code, out, err = run_cli("check", "--select", "WL101")
    assert code == 0, out + err
    assert _wl101(out) == {"A": "pyproject.toml:5"}, out


@pytest.mark.parametrize("how", ["extend-select", "model select", "--select"])
def test_an_empty_select_is_run_where_something_else_selects_rules(proj, run_cli, how):
    """`select = []` was refused before extend-select, a model's own select and --select were looked at: each of
    those enabled WL3 past it (the budget failed, exit 1) before the refusal came in."""
    top = TOP + "select = []\n" + ('extend-select = ["WL3"]\n' if how == "extend-select" else "")
    own = 'select = ["WL3"]\n' if how == "model select" else ""
    proj(top + f'[[tool.wattlint.models]]\nname = "A"\n{SRC}\n{own}budget = {{ energy-kwh = 1e-9 }}\n')
    code, out, err = run_cli("check", *(["--select", "WL3"] if how == "--select" else []))
    assert code == 1 and " WL301 error: " in out, (out, err)
    if how == "extend-select":  # an ignore turns off what the selection enabled, on purpose: estimates only
        code, out, err = run_cli("check", "--ignore", "ALL")
        assert code == 0 and "WL301" not in out, (out, err)


def test_an_empty_select_with_nothing_else_selecting_is_refused_even_with_ignore(proj, run_cli):
    proj(TOP + f'select = []\n[[tool.wattlint.models]]\nname = "A"\n{SRC}\nbudget = {{ energy-kwh = 1e-9 }}\n')
    code, out, err = run_cli("check", "--ignore", "ALL")
    assert code == 2 and out == "" and "nothing else selects one" in err, (out, err)


_RETIRED = '{"schema": "wattlint.baseline/1", "models": {"retired": {"energy_kwh": 1.0, "source": "x.onnx"}}}\n'


def test_a_baseline_linked_inside_the_project_is_the_projects_own(proj, run_cli):
    """`wattlint-baseline.json -> baselines/current.json` was taken as shared (any link was): a retired model's
    entry was kept "as another project's" on every update, and no note said it was stale."""
    root = proj(TOP + f'[[tool.wattlint.models]]\nname = "A"\n{SRC}\n')
    (root / "baselines").mkdir()
    (root / "baselines" / "current.json").write_text(_RETIRED)
    (root / "wattlint-baseline.json").symlink_to(Path("baselines") / "current.json")
    code, out, err = run_cli("check")
    assert "has entries no configured model has: retired" in out, out + err
    code, out, err = run_cli("check", "--update-baseline", "--format", "json")
    assert code == 0, out + err
    assert json.loads(out)["baseline_changes"] == {"written": ["A"], "kept": [], "removed": ["retired"], "energy_kwh": {}}
    assert (root / "wattlint-baseline.json").is_symlink()
    assert sorted(json.loads((root / "baselines" / "current.json").read_text())["models"]) == ["A"]


@pytest.mark.parametrize("git", ["dir", "file", None])
def test_a_baseline_above_a_ci_config_stays_shared_even_in_one_repository(tmp_path, monkeypatch, run_cli, git):
    """`--config ci/wattlint.toml` with `baseline = "../wattlint-baseline.json"`: a file above the config's folder
    is taken as shared, in one git work tree or not (two projects of a monorepo sharing a baseline must not remove
    each other's entries): the retired entry is kept and named, never lost."""
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))
    repo = tmp_path / "repo"
    (repo / "ci").mkdir(parents=True)
    if git == "dir":
        (repo / ".git").mkdir()
    elif git == "file":
        (repo / ".git").write_text("gitdir: ../elsewhere/.git/worktrees/repo\n")
    shutil.copy(ONNX, repo / "gpt2-tiny.onnx")
    (repo / "wattlint-baseline.json").write_text(_RETIRED)
    (repo / "ci" / "wattlint.toml").write_text('gpu = "a100"\nsteps = 10\nbaseline = "../wattlint-baseline.json"\n'
                                               '[[models]]\nname = "A"\nsource = "../gpt2-tiny.onnx"\n')
    monkeypatch.chdir(repo)
    code, out, err = run_cli("check", "--config", "ci/wattlint.toml", "--update-baseline", "--format", "json")
    assert code == 0, out + err
    changes = json.loads(out)["baseline_changes"]
    kept = sorted(json.loads((repo / "wattlint-baseline.json").read_text())["models"])
    assert changes["removed"] == [] and kept == ["A", "retired"], (changes, kept)
