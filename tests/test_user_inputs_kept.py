"""The run's own inputs survive a report, and a model's own code cannot end or pollute a run (review of
2026-12-05 night): ``-o`` naming the model file, the configuration or the baseline is refused (exit 2, the file
unchanged); a model source that calls ``sys.exit()`` is an input error (exit 2 with one line), never a silent exit 0;
what the model's code prints goes to stderr, so ``--format json`` stays parseable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ONNX = ROOT / "examples" / "resnet50.onnx"

pytest.importorskip("torch")

SOURCE = '''import sys
import torch

print("printed at import")


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x):
        print("printed in forward")
        return self.fc(x)


class Quits(Net):
    def forward(self, x):
        sys.exit(0)


def good():
    print("printed in the factory")
    return Net()


def exits():
    sys.exit(0)


def exits3():
    sys.exit(3)


def quits_in_forward():
    return Quits()
'''


@pytest.fixture()
def src(tmp_path, monkeypatch):
    (tmp_path / "m.py").write_text(SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / ".wattlint-cache"))
    return tmp_path


@pytest.mark.parametrize("cmd", [(), ("analyze",)])
def test_output_onto_the_model_file_is_refused(tmp_path, monkeypatch, run_cli, cmd):
    model = tmp_path / "m.onnx"
    shutil.copy(ONNX, model)
    before = model.read_bytes()
    monkeypatch.chdir(tmp_path)
    extra = ("--gpu", "a100", "--steps", "1") if not cmd else ()
    code, out, err = run_cli(*cmd, "m.onnx", *extra, "-o", "m.onnx")
    assert code == 2
    assert err.strip() == ("wattlint: error: --output m.onnx: is the model file of this run; refusing to overwrite it "
                           "with the report (write the report to another file)")
    assert model.read_bytes() == before


def test_output_onto_the_source_file_of_a_torch_model_is_refused(src, run_cli):
    before = (src / "m.py").read_text()
    code, _, err = run_cli("m.py:good", "--input", "x=float32[8,4]", "--steps", "1", "-o", "m.py")
    assert code == 2 and "is the model file of this run" in err
    assert (src / "m.py").read_text() == before


def test_check_refuses_to_write_its_report_over_the_config_or_the_baseline(tmp_path, monkeypatch, run_cli):
    (tmp_path / "models").mkdir()
    shutil.copy(ONNX, tmp_path / "models" / "net.onnx")
    config = ('[tool.wattlint]\ngpu = "a100"\n\n[[tool.wattlint.models]]\nname = "net"\n'
              'source = "models/net.onnx"\nsteps = 10\n')
    (tmp_path / "pyproject.toml").write_text(config)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / ".wattlint-cache"))
    code, _, err = run_cli("check", "--update-baseline")
    assert code == 0, err
    baseline = (tmp_path / "wattlint-baseline.json").read_text()
    for target, what in (("pyproject.toml", "the configuration file"), ("wattlint-baseline.json", "the baseline"),
                         ("models/net.onnx", "the model file of net")):
        code, _, err = run_cli("check", "--format", "json", "-o", target)
        assert code == 2, target
        assert f"--output {target}: is {what} of this run" in err
    assert (tmp_path / "pyproject.toml").read_text() == config
    assert (tmp_path / "wattlint-baseline.json").read_text() == baseline
    code, _, err = run_cli("check")  # still a working project
    assert code == 0, err


@pytest.mark.parametrize("cmd", [(), ("analyze",)])
def test_estimate_and_analyze_refuse_to_write_over_the_project_files(tmp_path, monkeypatch, run_cli, cmd):
    """Review: `wattlint MODEL -o wattlint-baseline.json` replaced the project's baseline with a text report, and
    `wattlint analyze MODEL -o pyproject.toml` the configuration (only `check` refused them)."""
    shutil.copy(ONNX, tmp_path / "m.onnx")
    config = '[tool.wattlint]\ngpu = "a100"\nbaseline = "gate/base.json"\n'
    (tmp_path / "pyproject.toml").write_text(config)
    (tmp_path / "gate").mkdir()
    (tmp_path / "gate" / "base.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    extra = ("--steps", "1") if not cmd else ()
    code, _, err = run_cli(*cmd, "m.onnx", *extra, "-o", "gate/base.json")
    assert code == 2 and "--output gate/base.json: is the baseline of this run" in err, err
    code, _, err = run_cli(*cmd, "m.onnx", *extra, "-o", "pyproject.toml")
    assert code == 2 and err.startswith("wattlint: error: --output pyproject.toml: is ") and \
        "refusing to overwrite it with the report" in err, err
    code, _, err = run_cli(*cmd, "m.onnx", *extra, "-o", "other/pyproject.toml")  # any project's configuration
    assert code == 2 and "is a project's pyproject.toml; refusing to overwrite it" in err
    assert not (tmp_path / "other").exists()
    assert (tmp_path / "pyproject.toml").read_text() == config
    assert (tmp_path / "gate" / "base.json").read_text() == "{}"
    code, _, err = run_cli(*cmd, "m.onnx", *extra, "-o", "report.txt")
    assert code == 0, err


@pytest.mark.parametrize("name", ["models/blocks.py", "models/__init__.py", "weights.safetensors", "setup.cfg"])
def test_check_refuses_to_write_over_project_code_and_models(tmp_path, monkeypatch, run_cli, name):
    """Review: `check -o models/blocks.py` (a module the configured model imports) replaced it with the JSON
    report (exit 0); the next check failed. Only the model's own file and the configuration were guarded."""
    shutil.copy(ONNX, tmp_path / "m.onnx")
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\ngpu = "a100"\n[[tool.wattlint.models]]\n'
                                             'source = "m.onnx"\nsteps = 1\n')
    (tmp_path / "models").mkdir()
    target = tmp_path / name
    target.write_text("KEEP = 1\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("check", "--format", "json", "-o", name)
    assert code == 2 and "refusing to overwrite it with the report" in err, err
    assert target.read_text() == "KEEP = 1\n"


@pytest.mark.parametrize("cmd", [(), ("analyze",)])
def test_reports_refuse_to_write_over_a_run_record(tmp_path, monkeypatch, run_cli, cmd):
    """Review: `wattlint MODEL -o run.jsonl` and `wattlint analyze MODEL -o run.jsonl` replaced a tracked run's
    record (measured data) with the report, exit 0."""
    import wattlint

    shutil.copy(ONNX, tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    with wattlint.track(device="cpu", steps=3, out="runs", display="quiet") as t:
        for _ in range(3):
            t.step()
    record = next((tmp_path / "runs").glob("*.jsonl"))
    before = record.read_bytes()
    extra = ("--steps", "1") if not cmd else ()
    code, _, err = run_cli(*cmd, "m.onnx", *extra, "--format", "json", "-o", str(record))
    assert code == 2, err
    assert "is a wattlint run record (measured data); refusing to overwrite it" in err
    assert record.read_bytes() == before


@pytest.mark.parametrize("attr, message", [
    ("exits", "wattlint: error: m.py:exits: building the model failed: it called sys.exit(0)"),
    ("exits3", "wattlint: error: m.py:exits3: building the model failed: it called sys.exit(3)"),
    ("quits_in_forward", "wattlint: error: tracing the model failed: the model called sys.exit(0)"),
])
def test_a_model_that_calls_sys_exit_is_an_input_error(src, run_cli, attr, message):
    code, out, err = run_cli(f"m.py:{attr}", "--input", "x=float32[8,4]", "--steps", "1")
    assert code == 2
    assert err.strip().splitlines()[-1] == message
    assert "Traceback" not in err and "printed" not in out


def test_check_fails_a_model_that_calls_sys_exit_instead_of_passing(src, run_cli):
    (src / "pyproject.toml").write_text('[tool.wattlint]\ngpu = "a100"\n\n[[tool.wattlint.models]]\nname = "q"\n'
                                        'source = "m.py:exits"\ninputs = ["x=float32[8,4]"]\nsteps = 10\n')
    code, out, err = run_cli("check")
    assert code == 2, (out, err)
    assert "it called sys.exit(0)" in out + err


def test_what_the_model_prints_goes_to_stderr(src, run_cli):
    code, out, err = run_cli("m.py:good", "--input", "x=float32[8,4]", "--steps", "1", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)  # only the report on stdout
    assert doc["schema"] == "wattlint.estimate/1"
    for line in ("printed at import", "printed in the factory", "printed in forward"):
        assert line in err


@pytest.mark.parametrize("name", ["resnet50.onnx.data", "weights.h5", "model.gguf", "frozen.pb", "model.pkl",
                                  "gpt2/config.json"])
def test_output_never_replaces_weights_or_a_model_config(tmp_path, monkeypatch, run_cli, name):
    """Review: `-o resnet50.onnx.data` replaced the model's own external weights with the text report (exit 0), as
    did `-o` onto .h5 / .gguf / .pb / .pkl files and another model's config.json."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(ONNX, tmp_path / "resnet50.onnx")
    target = tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\x00weights\x01")
    code, out, err = run_cli("resnet50.onnx", "--gpu", "a100", "--steps", "1", "-o", name)
    assert code == 2 and "refusing to overwrite it" in err and err.count("\n") == 1
    assert target.read_bytes() == b"\x00weights\x01"


def test_check_refuses_the_baselines_place_before_the_baseline_exists(tmp_path, monkeypatch, run_cli):
    """Review: with no baseline yet, `check -o wattlint-baseline.json` wrote the JSON report there (exit 0) and every
    later check and --update-baseline exited 2 ('not a wattlint baseline')."""
    (tmp_path / "models").mkdir()
    shutil.copy(ONNX, tmp_path / "models" / "net.onnx")
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\ngpu = "a100"\n\n[[tool.wattlint.models]]\n'
                                             'name = "net"\nsource = "models/net.onnx"\nsteps = 10\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / ".wattlint-cache"))
    code, _, err = run_cli("check", "-o", "wattlint-baseline.json", "--exit-zero")
    assert code == 2 and "--output wattlint-baseline.json: is where the baseline of this run goes" in err
    assert not (tmp_path / "wattlint-baseline.json").exists()
    assert run_cli("check", "--update-baseline")[0] == 0
