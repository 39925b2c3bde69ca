"""Fresh-eyes review of the install and the error paths (review-readme): one regression test per defect found.

Contract: bad input -> exactly one line on stderr and exit 2, never a traceback; our own bugs -> exit 3.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wattlint.calibrate.suites import parse_suite
from wattlint.types import ConfigError

from _cli_errors import EXAMPLES, ROOT, SRC
from _cli_errors import one_error_line as _one_error_line


# ---- Python 3.10 (requires-python >= 3.10): no tomllib there ------------------------------------------------------

_PY310 = """
import sys, tomllib
sys.modules["tomli"] = tomllib      # what the 'tomli; python_version < "3.11"' dependency provides on 3.10
sys.modules["tomllib"] = None       # Python 3.10 has no tomllib
from wattlint.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("argv", [
    [str(EXAMPLES / "resnet50.onnx"), "--gpu", "a100", "--steps", "10", "--format", "json"],
    ["calibrate", "--device", "cpu", "--suite", "quick", "--plan"],
])
def test_runs_without_tomllib_as_on_python_310(argv, tmp_path):
    """plan.py, hardware.py and the calibration modules imported tomllib unconditionally, so on Python 3.10 every
    estimate was an internal error (exit 3: No module named 'tomllib'); config.py already fell back to tomli."""
    env = dict(os.environ, PYTHONPATH=str(SRC), WATTLINT_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("WATTLINT_DEBUG", None)
    r = subprocess.run([sys.executable, "-c", _PY310, *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "tomllib" not in r.stderr


# ---- calibration suites: malformed TOML values are input errors, not internal errors -----------------------------

_GEMM = {"family": "gemm", "shapes": [{"m": 64, "n": 64, "k": 64}]}


@pytest.mark.parametrize("bad, msg", [
    ({}, "no samples"),                                                       # an empty file planned "0 samples"
    ({"suite": 3, "group": [_GEMM]}, "'suite' = 3: expected a table"),        # was AttributeError (exit 3)
    ({"suite": {"seed": "x"}, "group": [_GEMM]}, "'seed'"),                   # was ValueError in int()
    ({"suite": {"timing": {"cpu": {"warmup_s": "a"}}}, "group": [_GEMM]}, "'warmup_s'"),  # ValueError in float()
    ({"suite": {"timing": {"cpu": {"warmup": 1}}}, "group": [_GEMM]}, "unknown key"),     # a typo was ignored
    ({"suite": {"setup": {"idle_s": -1}}, "group": [_GEMM]}, "'idle_s'"),
    ({"group": 3}, "array of tables"),                                         # was TypeError: not iterable
    ({"group": [{"family": "gemm", "shapes": [3]}]}, "list of tables"),        # was TypeError
    ({"group": [{"family": "gemm", "grid": {"m": 3}}]}, "non-empty list"),     # was TypeError
    # a string is iterated letter by letter: no precision matched and the group silently measured nothing
    ({"group": [{**_GEMM, "precisions": "fp32"}]}, "list of strings"),
    ({"group": [{**_GEMM, "precisions": ["fp8"]}]}, "unknown 'fp8'"),
    ({"group": [{**_GEMM, "phases": ["backwards"]}]}, "unknown 'backwards'"),
    # a negative size priced as negative FLOPs and was planned as a sample
    ({"group": [{"family": "gemm", "shapes": [{"m": -64, "n": 64, "k": 64}]}]}, "'m' = -64"),
    ({"group": [{"family": "conv", "shapes": [{"n": 2, "c": 8, "h": 8, "w": 8, "cout": 8, "k": 3, "groups": 0}]}]},
     "bad shape"),                                                             # was ZeroDivisionError
])
def test_malformed_suite_is_a_config_error(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_suite(bad)


def test_malformed_suite_file_exits_2_with_one_line(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.toml").write_text("")
    code, out, err = run_cli("calibrate", "--device", "cpu", "--suite", "empty.toml", "--plan")
    assert code == 2 and "no samples" in _one_error_line(err) and out == ""
    (tmp_path / "bad.toml").write_text("suite = 3\n")
    code, out, err = run_cli("calibrate", "--device", "cpu", "--suite", "bad.toml", "--plan")
    assert code == 2 and "expected a table" in _one_error_line(err)


# ---- --output naming a directory, or a path under a file ----------------------------------------------------------

@pytest.mark.parametrize("target", [".", "adir"])
def test_output_directory_is_refused_before_the_work(run_cli, tmp_path, monkeypatch, target):
    """'-o .' failed after the estimate with 'cannot write .: Device or resource busy' (the rename onto the current
    directory); a directory is now refused up front, naming what to do."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    code, out, err = run_cli("analyze", EXAMPLES / "gpt2-tiny.onnx", "-o", target)
    line = _one_error_line(err)
    assert code == 2 and "is a directory" in line and "busy" not in line
    assert out == ""


def test_output_under_a_file_is_refused(run_cli, tmp_path, monkeypatch):
    """'-o model.onnx/report.txt' said 'cannot write ...: File exists' (mkdir of the parent)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    code, out, err = run_cli("analyze", EXAMPLES / "gpt2-tiny.onnx", "-o", "afile/sub/report.txt")
    line = _one_error_line(err)
    assert code == 2 and "afile is a file, not a folder" in line
    assert (tmp_path / "afile").read_text() == "x"


def test_output_in_a_new_folder_still_works(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("analyze", EXAMPLES / "gpt2-tiny.onnx", "-o", "new/report.txt")
    assert code == 0 and (tmp_path / "new" / "report.txt").read_text().startswith(str(EXAMPLES / "gpt2-tiny.onnx"))


# ---- an installed (non-editable) wattlint has its calibration suites and validation list ---------------------------

def test_wheel_ships_the_suites_and_the_validation_list(tmp_path):
    """The suites and the validation list lived in calibration/ outside the package: 'pip install wattlint' (not -e)
    answered 'wattlint calibrate --suite default' with "unknown suite 'default' (available: none)". Build the wheel,
    unpack it, and load them from there."""
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    import shutil
    import zipfile

    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(SRC, tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(tree), "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "No module named pip" in r.stderr:
        pytest.skip("pip not available")
    assert r.returncode == 0, r.stderr
    site = tmp_path / "site"
    zipfile.ZipFile(next((tmp_path / "dist").glob("wattlint-*.whl"))).extractall(site)
    code = ("import wattlint.calibrate.suites as s, wattlint.calibrate.validate as v; "
            "print(len(s.load_suite('default').samples), len(s.load_suite('quick').samples), "
            "len(v.load_list(None, 'gpu')[0]), s.suites_dir())")
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("WATTLINT_SUITES", None)  # an explicit suites folder would hide the defect
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    n_default, n_quick, n_gpu, where = out.stdout.split()
    # README / docs/CALIBRATION.md: the default suite has 664 samples; docs/CALIBRATION.md: 16 GPU configurations
    assert (int(n_default), int(n_gpu)) == (664, 16) and int(n_quick) > 0
    assert Path(where).is_relative_to(site)


# ---- a directory where a file is expected, a missing file: say which -----------------------------------------------

@pytest.mark.parametrize("argv, expect", [
    # was "model file not found: d.onnx" for a folder that exists
    (["{d}", "--gpu", "a100", "--steps", "1"], "d.onnx is a directory, not a model file"),
    (["analyze", "{d}"], "d.onnx is a directory, not a model file"),
    # was "cannot tell the format of 'plain'"
    (["{plain}", "--gpu", "a100", "--steps", "1"], "plain is a directory"),
    # was "not a wattlint run record, CodeCarbon emissions.csv, Zeus log or Carbontracker log" for both
    (["compare-run", "{missing}"], "file not found"),
    (["compare-run", "{plain}"], "plain is a directory"),
    # was "missing: need missing.csv and missing.json"
    (["fit", "{missing}"], "not found"),
    # was "config file not found: ." for a folder that exists
    (["check", "--config", "{plain}"], "is a directory"),
])
def test_directory_or_missing_path_is_named_as_such(run_cli, tmp_path, monkeypatch, argv, expect):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.onnx").mkdir()
    (tmp_path / "plain").mkdir()
    paths = {"d": "d.onnx", "plain": "plain", "missing": "missing.jsonl"}
    code, out, err = run_cli(*[a.format(**paths) for a in argv])
    assert code == 2 and expect in _one_error_line(err)


# ---- list-valued config keys: the example in the message fits the key ----------------------------------------------

def test_string_instead_of_list_suggests_the_users_own_value(run_cli, tmp_path, monkeypatch):
    """'exclude = "experiments/**"' was answered with 'e.g. ["WL1", "WL301"]' (rule codes, for a list of globs)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\nexclude = "experiments/**"\n')
    code, out, err = run_cli("check")
    line = _one_error_line(err)
    assert code == 2 and 'e.g. ["experiments/**"]' in line and "WL301" not in line


# ---- Hugging Face config with an unknown model_type: one readable line -------------------------------------------

def test_unknown_model_type_is_short_with_did_you_mean(run_cli, tmp_path):
    """transformers' message lists every model type it knows: the line was 12 kB."""
    pytest.importorskip("transformers")
    p = tmp_path / "config.json"
    p.write_text('{"model_type": "lama", "num_hidden_layers": 2}')
    code, out, err = run_cli(p, "--gpu", "a100", "--steps", "1")
    line = _one_error_line(err)
    assert code == 2 and "'lama'" in line and "did you mean 'llama'" in line
    assert len(line) < 400, len(line)


# ---- validate / calibrate --resume: damaged or wrong files are input errors naming the file and field -------------

_MEAS = {"schema": "wattlint.validation-measurements/1", "predictions_file": "p.json", "predictions_sha256": "x",
         "results": [{"name": "a", "status": "ok"}]}


@pytest.mark.parametrize("argv, content, expect", [
    # was exit 3: UnicodeDecodeError
    (["validate", "compare", "--measurements", "f.json"], b"\xff\xfe{}", "f.json: not UTF-8"),
    # was 'not valid JSON: Expecting value: line 1 column 1 (char 0)' without the file's name
    (["validate", "compare", "--measurements", "f.json"], b"", "f.json: not valid JSON"),
    # was exit 3: KeyError 'time_per_step_s'
    (["validate", "compare", "--measurements", "f.json"], __import__("json").dumps(_MEAS).encode(),
     "f.json.results[0]: missing field 'time_per_step_s'"),
    # was exit 3: KeyError 'device' (a calibration run whose provenance lacks fields)
    (["calibrate", "--device", "fake", "--resume", "f.csv", "--limit", "1", "--no-progress"],
     b'{"schema": "wattlint.calibration-run/1"}', "f.json: missing field 'device'"),
])
def test_damaged_validation_and_run_files_exit_2(run_cli, tmp_path, monkeypatch, argv, content, expect):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.json").write_bytes(content)
    (tmp_path / "f.csv").write_text("sample_id\n")
    code, out, err = run_cli(*argv)
    assert code == 2 and expect in _one_error_line(err)


def test_predictions_missing_a_field_exit_2(tmp_path):
    pytest.importorskip("torch")
    from wattlint.calibrate.validate import ValidationError, measure

    p = tmp_path / "p.json"
    p.write_text('{"schema": "wattlint.validation-predictions/1", "configs": [{"name": "a"}]}')
    with pytest.raises(ValidationError, match=r"configs\[0\]: missing field 'source'"):
        measure(str(p), "cpu", out=str(tmp_path / "m.json"))


# ---- calibrate / gpus: small refusals ----------------------------------------------------------------------------

@pytest.mark.parametrize("argv, expect", [
    # was "empty.onnx: File exists", after the plan had been printed
    (["calibrate", "--device", "fake", "--suite", "quick", "--out", "afile", "--limit", "1"], "--out afile: is a file"),
    # was accepted under --plan (exit 0); without --plan refused only after printing the plan
    (["calibrate", "--device", "cpu", "--suite", "quick", "--gpu", "nosuchgpu", "--plan"], "unknown GPU"),
    # was exit 0 with a plan of parts that measure nothing
    (["calibrate", "--device", "cpu", "--suite", "quick", "--part", "1/100000", "--plan"], "use at most"),
    # '' listed the whole database (while '   ' was refused as an empty name)
    (["gpus", ""], "empty GPU name"),
])
def test_calibrate_and_gpus_refusals(run_cli, tmp_path, monkeypatch, argv, expect):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    code, out, err = run_cli(*argv)
    assert code == 2 and expect in _one_error_line(err) and out == ""


def test_plan_of_a_tiny_suite_still_prints(run_cli, tmp_path, monkeypatch):
    """A suite with fewer samples than the 'in 3 parts' line would split is planned without that line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text('[[group]]\nfamily = "gemm"\nphases = ["forward"]\nshapes = [{m = 8, n = 8, k = 8}]\n')
    code, out, err = run_cli("calibrate", "--device", "cpu", "--suite", "s.toml", "--plan")
    assert code == 0 and "1 samples" in out and "parts" not in out, (out, err)


# ---- --help is true: no option that does nothing, numbers bounded --------------------------------------------------

def test_rules_has_no_no_op_all_option(run_cli):
    """'wattlint rules --all' was documented as 'include preview rules (listed by default, marked)' and changed
    nothing: every rule is always listed, preview ones marked. The option is gone."""
    code, out, err = run_cli("rules", "--all")
    assert code == 2 and "unrecognized option '--all'" in err
    code, out, err = run_cli("rules")
    assert code == 0 and "WL101" in out


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_window_scale_must_be_a_positive_finite_number(run_cli, tmp_path, monkeypatch, value):
    """--window-scale was a bare float: -1, 0 or nan ran a measurement with negative or NaN windows (exit 0)."""
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.json").write_text('{"schema": "wattlint.validation-predictions/1", "device": "cpu", "configs": []}')
    code, out, err = run_cli("validate", "measure", "--predictions", "p.json", "--device", "cpu",
                             "--window-scale", value)
    assert code == 2 and "--window-scale" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*measurements*.json"))


# ---- compare-run: an explicit --model that cannot be estimated; an unmeasured Zeus quantity ----------------------

_ZEUS_NAN = "start_time,window_name,elapsed_time,gpu0_energy\n1.0,epoch,nan,1000.0\n"


@pytest.mark.parametrize("extra, expect", [
    (["--model", "nope.onnx"], "--model nope.onnx: model file not found"),
    (["--model", str(EXAMPLES / "gpt2-tiny.onnx"), "--input", "foo=int64[8,256]"], "not an input"),
])
def test_compare_run_with_a_model_that_cannot_be_estimated_exits_2(run_cli, tmp_path, monkeypatch, extra, expect):
    """Printed the measurement and 'estimate unavailable: model file not found: nope.onnx', exit 0."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "zeus.csv").write_text("start_time,window_name,elapsed_time,gpu0_energy\n1.0,epoch,10.0,1000.0\n")
    code, out, err = run_cli("compare-run", "zeus.csv", "--gpu", "a100", "--steps", "5", *extra)
    assert code == 2 and expect in _one_error_line(err) and out == ""


def test_zeus_quantity_no_row_measured_is_unknown_not_zero(tmp_path):
    """An elapsed_time of NaN in every selected row was summed as 0 s ('measured 0 s')."""
    from wattlint.tracking.interop import read_zeus

    p = tmp_path / "zeus.csv"
    p.write_text(_ZEUS_NAN)
    m = read_zeus(p)
    assert m.duration_s is None
    assert m.gpu_energy_kwh == pytest.approx(1000.0 / 3.6e6)  # 1000 J = 1000 / 3.6e6 kWh


# ---- fit on a CPU run record: the way out is cpu_calibration=, not gpu=KEY ----------------------------------------

def test_fit_on_an_uncalibrated_cpu_record_names_cpu_calibration(run_cli, tmp_path):
    """docs/TRACKING.md's 'wattlint fit runs/ --out my-correction/' on a CPU run tracked as in its example told the
    user to 're-run the tracker with gpu=KEY' (a CPU run has no GPU)."""
    torch = pytest.importorskip("torch")
    import wattlint

    model = torch.nn.Linear(8, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    runs = tmp_path / "runs"
    runs.mkdir()
    x = torch.randn(4, 8)
    with wattlint.track(model, example=x, optimizer=opt, steps=5, out=str(runs / "r.jsonl"), display="quiet") as t:
        for _ in range(5):
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
            t.step()
    code, out, err = run_cli("fit", runs, "--out", tmp_path / "corr")
    line = _one_error_line(err)
    assert code == 2 and "cpu_calibration=" in line and "gpu=KEY" not in line


# ---- docs/PRECOMMIT.md: the CPU-torch override must be something pip accepts -----------------------------------------

def test_precommit_cpu_torch_override_is_valid_pip_arguments():
    """pre-commit runs 'pip install . <item> <item> ...' with each additional_dependencies item as ONE argument; the
    documented ["torch>=2.4 --index-url https://..."] was one invalid requirement ('Invalid requirement')."""
    import re

    yaml = pytest.importorskip("yaml")
    from packaging.requirements import InvalidRequirement, Requirement

    text = (ROOT / "docs" / "PRECOMMIT.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S) if "additional_dependencies" in b]
    assert blocks
    for b in blocks:
        import textwrap

        (hook,) = yaml.safe_load(textwrap.dedent(b))
        items = hook["additional_dependencies"]
        assert any(i.startswith("torch") for i in items)
        for item in items:
            if item.startswith("--"):
                assert " " not in item, item  # an option and its value in one argument: --opt=value
                continue
            try:
                Requirement(item)
            except InvalidRequirement as e:
                raise AssertionError(f"{item!r} is not a requirement pip accepts: {e}") from None


# ---- a model file whose name is not UTF-8 -----------------------------------------------------------------------

def _non_utf8_model(tmp_path) -> Path:
    import shutil

    if sys.platform == "win32" or sys.getfilesystemencoding().lower() != "utf-8":
        pytest.skip("needs a POSIX file system with UTF-8 names")
    p = tmp_path / os.fsdecode(b"model\xff.onnx")  # the byte 0xff: surrogate-escaped by Python
    shutil.copy(EXAMPLES / "gpt2-tiny.onnx", p)
    return p


@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "html"])
def test_report_of_a_non_utf8_named_model_is_written_as_utf8(run_cli, tmp_path, monkeypatch, fmt):
    """-o failed with 'internal error: UnicodeEncodeError ... surrogates not allowed' (exit 3)."""
    model = _non_utf8_model(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(model.name, "--gpu", "a100", "--steps", "1", "--format", fmt, "-o", f"r.{fmt}")
    assert code == 0, err
    text = (tmp_path / f"r.{fmt}").read_bytes().decode("utf-8")  # valid UTF-8
    assert "model\ufffd.onnx" in text
    if fmt == "json":
        assert __import__("json").loads(text)["schema"] == "wattlint.estimate/1"


def test_stdout_of_a_strict_utf8_locale_takes_a_non_utf8_name(tmp_path):
    """With a UTF-8 locale Python's stdout is strict: the text report of such a model ended in exit 3."""
    model = _non_utf8_model(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONIOENCODING="utf-8:strict",
               WATTLINT_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("WATTLINT_DEBUG", None)
    for argv in ([model.name, "--gpu", "a100", "--steps", "1"], ["analyze", model.name]):
        r = subprocess.run([sys.executable, "-m", "wattlint", *argv], cwd=tmp_path, env=env, capture_output=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        assert "model\ufffd.onnx" in r.stdout.decode("utf-8")


def test_check_with_a_mistyped_path_exits_2(run_cli, tmp_path, monkeypatch):
    """'wattlint check modles/net.onnx' selected no model and passed (exit 0, 'no configured model matched')."""
    import shutil

    shutil.copy(EXAMPLES / "gpt2-tiny.onnx", tmp_path / "lm.onnx")
    (tmp_path / "pyproject.toml").write_text('[[tool.wattlint.models]]\nsource = "lm.onnx"\nsteps = 1\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))
    code, out, err = run_cli("check", "lm.onxx")
    assert code == 2 and "lm.onxx: no such file or directory" in _one_error_line(err) and out == ""
    code, out, err = run_cli("check", "lm.onnx")
    assert code == 0 and "lm: " in out, err


# ---- [[tool.wattlint.models]] source naming a folder: a package (module spec) or an error naming the model ---------

def test_check_imports_a_package_folder_source_as_a_module(run_cli, tmp_path, monkeypatch):
    """'source = "mypkg:build"' beside a package folder mypkg/ was taken for a file path: 'mypkg: Is a directory'
    (exit 2), although 'wattlint mypkg:build' estimated it."""
    pytest.importorskip("torch")
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("import torch.nn as nn\n\n\ndef build():\n"
                                                    "    return nn.Linear(8, 8)\n")
    (tmp_path / "pyproject.toml").write_text('[[tool.wattlint.models]]\nsource = "mypkg:build"\n'
                                             'inputs = ["x=float32[4,8]"]\nsteps = 1\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(tmp_path))  # restored after the test (check imports from the project root)
    code, out, err = run_cli("check")
    assert code == 0, err
    assert "mypkg: " in out


def test_check_source_that_is_a_directory_names_the_model(run_cli, tmp_path, monkeypatch):
    """Was 'wattlint: error: /abs/path/d.onnx: Is a directory' without the model or the key."""
    (tmp_path / "d.onnx").mkdir()
    (tmp_path / "pyproject.toml").write_text('[[tool.wattlint.models]]\nsource = "d.onnx"\nsteps = 1\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))
    code, out, err = run_cli("check")
    assert code == 2 and "model 'd': source d.onnx is a directory" in _one_error_line(err)


def test_config_doc_carbon_intensity_bounds_match_the_option(run_cli, tmp_path, monkeypatch):
    """docs/CONFIG.md said 'number > 0' for carbon-intensity; the option accepts [0, 5000] (0 and 5000 included)."""
    from wattlint import options as O

    opt = O.OPTIONS["carbon_intensity"]
    assert opt.check(0) == 0 and opt.check(5000) == 5000
    with pytest.raises(ValueError):
        opt.check(5000.5)
    row = next(ln for ln in (ROOT / "docs" / "CONFIG.md").read_text(encoding="utf-8").splitlines()
               if ln.startswith("| `carbon-intensity`"))
    assert "[0, 5000]" in row and "> 0" not in row


@pytest.mark.parametrize("argv", [["gpus", "--sources"], ["gpus", "h100", "--sources"],
                                  ["gpus", "h100", "--format", "json", "--sources"]])
def test_gpus_sources_where_it_changes_nothing_is_refused(run_cli, argv):
    """--sources changed only the JSON list; with the text list or one GPU it was silently ignored (exit 0)."""
    code, out, err = run_cli(*argv)
    assert code == 2 and "--sources applies to the JSON list" in _one_error_line(err) and out == ""
    code, out, err = run_cli("gpus", "--format", "json", "--sources")
    assert code == 0 and '"sources"' in out


@pytest.mark.parametrize("opt", [["--resume", "run.csv"], ["--out", "cal"]])
def test_calibrate_plan_refuses_run_files(run_cli, tmp_path, monkeypatch, opt):
    """'calibrate --plan --resume RUN' printed the whole suite's plan (not what the resumed run has left), exit 0."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("calibrate", "--device", "cpu", "--suite", "quick", "--plan", *opt)
    assert code == 2 and f"{opt[0]} does not apply" in _one_error_line(err) and out == ""


def test_other_tools_logs_with_a_code_page_text_column_are_read(run_cli, tmp_path, monkeypatch):
    """A CodeCarbon or Zeus CSV with one Latin-1 byte in a text column (a country or window name written in a
    Windows code page) ended in 'internal error: UnicodeDecodeError' (exit 3)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "zeus.csv").write_bytes(b"start_time,window_name,elapsed_time,gpu0_energy\n1.0,\xe9poch,10.0,1000.0\n")
    code, out, err = run_cli("compare-run", "zeus.csv")
    assert code == 0, err
    assert "10.0 s" in out  # the elapsed_time column, read as written
    header = ("timestamp,project_name,run_id,duration,emissions,energy_consumed,country_name,gpu_energy,cpu_energy,"
              "ram_energy")
    (tmp_path / "emissions.csv").write_bytes((header + "\n2026-01-01T00:00:00,p,r1,100.0,0.03,0.65,Fr\xe9nce,0.5,0.1,"
                                              "0.05\n").encode("latin-1"))
    code, out, err = run_cli("compare-run", "emissions.csv")
    assert code == 0, err
    assert "100 s" in out and "0.650 kWh" in out


# ---- -o onto a device or a pipe: written into, never replaced ----------------------------------------------------
# (tested on a FIFO: a failing test must not replace the machine's /dev/null)

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_output_into_a_fifo_writes_into_it_and_keeps_it(run_cli, tmp_path, monkeypatch):
    """'-o /dev/null' run as root renamed the report over /dev/null: the device became a regular file (the atomic
    write's os.replace). A device or pipe is now written into."""
    import stat

    monkeypatch.chdir(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so that opening for writing does not block
    try:
        code, out, err = run_cli("analyze", EXAMPLES / "gpt2-tiny.onnx", "-o", "pipe")
        assert code == 0, err
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the pipe
        got = os.read(reader, 1 << 16).decode("utf-8")
    finally:
        os.close(reader)
    assert got.startswith(str(EXAMPLES / "gpt2-tiny.onnx"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_atomic_write_refuses_to_replace_a_special_file(tmp_path):
    import stat

    from wattlint.io import atomic_write_text

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        atomic_write_text(fifo, "x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_write_output_takes_any_lone_surrogate(tmp_path):
    """Not only escaped bytes (U+DC80-U+DCFF): a lone surrogate from a JSON '\\ud800' escape is written too."""
    from wattlint.commands._common import write_output

    write_output(str(tmp_path / "r.txt"), "a\ud800b \udcff\n")
    assert (tmp_path / "r.txt").read_bytes().decode("utf-8") == "a?b ?\n"  # encode(..., "replace") writes '?'


def test_validate_only_with_an_unknown_name_is_refused(run_cli, tmp_path, monkeypatch):
    """'validate predict --only <typo>' wrote a frozen predictions file of 0 configurations (exit 0)."""
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("validate", "predict", "--gpu", "h100", "--only", "resnet50-b128-bf17", "--out", "p.json")
    assert code == 2 and "did you mean 'resnet50-b128-bf16'" in _one_error_line(err)
    assert not (tmp_path / "p.json").exists()


def test_onnx_input_with_another_dtype_is_refused(run_cli):
    """The dtype of an --input for an ONNX graph was silently ignored (the graph's dtype was costed, exit 0)."""
    code, out, err = run_cli("analyze", EXAMPLES / "gpt2-tiny.onnx", "--input", "input_ids=float32[8,256]")
    assert code == 2 and "write input_ids=int64[8,256]" in _one_error_line(err)
    code, out, err = run_cli("analyze", EXAMPLES / "gpt2-tiny.onnx", "--input", "input_ids=long[8,256]")  # an alias
    assert code == 0, err


@pytest.mark.parametrize("runs, expect", [
    ("h200-sxm-141gb", "measured on h200-sxm-141gb, not a100-sxm4-80gb"),
    ("cpu-amd-epyc", "measured on a cpu device, not a GPU"),
])
def test_fit_gpu_does_not_relabel_a_calibration(run_cli, tmp_path, runs, expect):
    """'wattlint fit calibration/runs/h200-sxm-141gb/ --gpu a100' wrote an A100 'measured' model from H200 data
    (to the user's models folder by default, where every A100 estimate would then use it)."""
    code, out, err = run_cli("fit", ROOT / "calibration" / "runs" / runs, "--gpu", "a100", "--out", tmp_path / "m")
    assert code == 2 and expect in _one_error_line(err)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("device", ["cpu", "fake"])
def test_calibrate_gpu_on_a_non_gpu_device_is_refused(run_cli, tmp_path, monkeypatch, device):
    """'calibrate --device cpu --gpu a100' filed a CPU run under a100-sxm4-80gb (spec source 'database (--gpu)'),
    which 'wattlint fit' then turned into an A100 model."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("calibrate", "--device", device, "--suite", "quick", "--gpu", "a100", "--limit", "1",
                             "--out", "cal", "--no-progress")
    assert code == 2 and "measures no GPU" in _one_error_line(err) and out == ""
    assert not (tmp_path / "cal").exists()


def test_runner_refuses_gpu_key_for_a_simulated_device(tmp_path):
    from wattlint.calibrate.runner import RunConfig, RunError, run_calibration

    with pytest.raises(RunError, match="not a GPU"):
        run_calibration(RunConfig(device="fake", suite="quick", out=str(tmp_path / "o"), limit=1, gpu_key="a100"))


def test_validate_predict_gpu_and_spec_from_conflict(run_cli, tmp_path, monkeypatch):
    """--spec-from won and --gpu was silently ignored."""
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    run = ROOT / "calibration" / "runs" / "cpu-amd-epyc" / "20261123T112820Z-quick.json"
    code, out, err = run_cli("validate", "predict", "--gpu", "h100", "--spec-from", run, "--list", "cpu",
                             "--out", "p.json")
    assert code == 2 and "give one of them" in _one_error_line(err) and not (tmp_path / "p.json").exists()


def test_compare_run_cpu_calibration_with_a_gpu_estimate_is_refused(run_cli, tmp_path, monkeypatch):
    """--cpu-calibration was silently ignored when the estimate was made on a GPU (--gpu given)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "zeus.csv").write_text("start_time,window_name,elapsed_time,gpu0_energy\n1.0,epoch,10.0,1000.0\n")
    code, out, err = run_cli("compare-run", "zeus.csv", "--model", EXAMPLES / "gpt2-tiny.onnx", "--gpu", "a100",
                             "--steps", "5", "--cpu-calibration", "somewhere")
    assert code == 2 and "--cpu-calibration applies to a CPU run" in _one_error_line(err) and out == ""


@pytest.mark.parametrize("toml, argv, expect", [
    # was "unknown GPU 'foo'": the user typed no GPU
    ('gpu = "foo"', [], "[tool.wattlint] gpu = 'foo': unknown GPU 'foo'"),
    # was "--precision bf16: ... no bf16 tensor cores": the user typed no --precision
    ('precision = "bf16"', ["--gpu", "v100"], "precision = bf16 in [tool.wattlint] of pyproject.toml: "),
])
def test_estimate_error_from_a_config_default_names_the_config(run_cli, tmp_path, monkeypatch, toml, argv, expect):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(f"[tool.wattlint]\n{toml}\n")
    code, out, err = run_cli(EXAMPLES / "gpt2-tiny.onnx", "--steps", "1", *argv)
    assert code == 2 and expect in _one_error_line(err)


def test_estimate_error_from_the_command_line_does_not_blame_the_config(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\nprecision = "bf16"\n')
    code, out, err = run_cli(EXAMPLES / "gpt2-tiny.onnx", "--steps", "1", "--gpu", "v100", "--precision", "bf16")
    assert code == 2 and "tool.wattlint" not in _one_error_line(err)
