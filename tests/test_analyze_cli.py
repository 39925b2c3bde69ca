"""`wattlint analyze`: the wattlint.analysis/1 contract, determinism, text table, and exit codes for bad sources."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from _torch_archs import HF_CONFIGS

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "src/wattlint/schemas/analysis.schema.json").read_text())
EX = "examples/torch_models.py"


@pytest.fixture(autouse=True)
def _cwd(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_json_contract_and_determinism(run_cli, tmp_path):
    code, out, err = run_cli("analyze", f"{EX}:resnet_small", "--batch-size", "4", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA)
    assert doc["schema"] == "wattlint.analysis/1"
    assert doc["model"]["format"] == "torch" and doc["model"]["params"] == 11689512
    assert doc["totals"]["backward"]["flops"] > doc["totals"]["forward"]["flops"] > 0
    names = {(le["name"], le["phase"]) for le in doc["layers"]}
    assert ("conv1", "forward") in names and ("layers.3.1.conv2", "backward") in names
    assert doc["ops"]["unsupported"] == {} and doc["ops"]["count"] > 0
    assert doc["trace"]["micro_batch"] == 4 and doc["trace"]["outputs"][0]["shape"] == [4, 1000]
    assert any(a.startswith("loss:") for a in doc["assumptions"])
    # byte-identical across runs, and --output writes the same text
    code2, out2, _ = run_cli("analyze", f"{EX}:resnet_small", "--batch-size", "4", "--format", "json")
    assert out2 == out
    dest = tmp_path / "a.json"
    assert run_cli("analyze", f"{EX}:resnet_small", "--batch-size", "4", "--format", "json", "-o", dest)[0] == 0
    assert dest.read_text() == out


def test_json_hf_config_and_onnx_schema(run_cli, tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(HF_CONFIGS["gpt2"]))
    code, out, err = run_cli("analyze", p, "--seq-len", "64", "--precision", "bf16", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA)
    assert doc["trace"]["inputs"] == [{"name": "input_ids", "dtype": "int64", "shape": [1, 64]}]
    assert doc["trace"]["precision"] == "bf16"
    if (ROOT / "examples/resnet50.onnx").exists():
        code, out, err = run_cli("analyze", "examples/resnet50.onnx", "--batch-size", "2", "--format", "json")
        assert code == 0, err
        jsonschema.validate(json.loads(out), SCHEMA)


def test_text_report(run_cli):
    code, out, err = run_cli("analyze", f"{EX}:tiny_gpt", "--top", "5")
    assert code == 0, err
    assert "forward" in out and "backward" in out and "optimizer" in out
    assert "Top 5 layers" in out and "head" in out and "assumptions" in out


BAD_USER_FILE = "import torch\nraise RuntimeError('boom in user code')\n"


@pytest.mark.parametrize("args,needle", [
    (["nope/missing.py:build"], "not found"),
    (["missing.onnx"], "not found"),
    (["missing_config.json"], "not found"),
    ([f"{EX}:no_such_factory"], "has no attribute"),
    ([f"{EX}:not_a_model"], "not an nn.Module"),
    (["no_such_package_xyz.models:build"], "no module named"),
    ([f"{EX}:MLP", "--input", "x=float32[8,784"], "bad --input spec"),
    ([f"{EX}:MLP", "--input", "x=complex7[8]"], "unknown dtype"),
    ([f"{EX}:MLP"], "no example inputs"),
    ([f"{EX}:BasicBlock"], "without arguments"),
    (["justaname"], "not understood"),
])
def test_bad_sources_exit_2_with_one_line(run_cli, args, needle):
    code, out, err = run_cli("analyze", *args)
    assert code == 2, (code, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], lines[0]


def test_import_error_in_user_file(run_cli, tmp_path):
    f = tmp_path / "bad_model.py"
    f.write_text(BAD_USER_FILE)
    code, out, err = run_cli("analyze", f"{f}:build")
    assert code == 2
    assert err.strip().count("\n") == 0 and "RuntimeError: boom in user code" in err


def test_shape_error_in_user_model_is_one_line(run_cli, tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import torch.nn as nn\n\ndef build():\n    return nn.Linear(10, 4)\n")
    code, out, err = run_cli("analyze", f"{f}:build", "--input", "x=float32[2,7]")
    assert code == 2 and err.count("\n") == 1 and "tracing the model failed" in err


def test_import_wattlint_and_onnx_path_do_not_import_torch():
    code = (
        "import sys, wattlint\n"
        "assert 'torch' not in sys.modules, 'import wattlint imported torch'\n"
        "import wattlint.frontends.source, wattlint.report.analysis, wattlint.commands.analyze\n"
        "assert 'torch' not in sys.modules, 'source/analysis modules imported torch'\n"
        "import os\n"
        "if os.path.exists('examples/resnet50.onnx'):\n"
        "    g = wattlint.analyze('examples/resnet50.onnx', batch_size=2)\n"
        "    assert g.model.format == 'onnx'\n"
        "    assert 'torch' not in sys.modules, 'the ONNX path imported torch'\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_package_module_attr_from_current_directory(run_cli, tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg_wl"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(
        "import torch, torch.nn as nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(16, 4)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(x)\n\n"
        "def build():\n"
        "    return Net(), (torch.randn(2, 16),)\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("analyze", "mypkg_wl.models:build", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"]["params"] == 16 * 4 + 4
    # an nn.Module class with a no-argument constructor works too, with --input
    code, out, err = run_cli("analyze", "mypkg_wl.models:Net", "--input", "x=float32[8,16]", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["trace"]["micro_batch"] == 8


def test_hf_config_analysis_is_quiet(run_cli, tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(dict(HF_CONFIGS["gpt2"], bos_token_id=50256, eos_token_id=50256)))
    code, out, err = run_cli("analyze", p, "--seq-len", "32", "--format", "json")
    assert code == 0 and err == "", err


def test_analyze_reads_the_project_defaults_and_the_command_line_wins(run_cli, tmp_path, monkeypatch):
    """Review: `wattlint analyze` ignored [tool.wattlint] (traced fp32 where the estimate used the file's bf16) and
    ran on a configuration the estimate refuses."""
    import shutil

    shutil.copy(ROOT / "examples" / "gpt2-tiny.onnx", tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\nprecision = "bf16"\nbatch-size = 8\n')
    code, out, err = run_cli("analyze", "m.onnx", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["trace"]["precision"] == "bf16"
    assert "settings from [tool.wattlint] of pyproject.toml" in err and "precision = 'bf16'" in err
    code, out, err = run_cli("analyze", "m.onnx", "--format", "json", "--precision", "fp32")
    assert code == 0 and json.loads(out)["trace"]["precision"] == "fp32"
    assert "precision" not in err
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\nselec = ["WL"]\n')
    code, out, err = run_cli("analyze", "m.onnx")
    assert code == 2 and "selec" in err and out == ""


def test_seq_len_on_a_model_without_sequence_is_stated(run_cli):
    """Review: `analyze` took --seq-len on a CNN silently (the estimate says it was not used); both say it now,
    naming the traced input."""
    code, out, err = run_cli("analyze", str(ROOT / "examples" / "resnet50.onnx"), "--seq-len", "128",
                             "--format", "json")
    assert code == 0, err
    notes = [a for a in json.loads(out)["assumptions"] if a.startswith("--seq-len 128")]
    assert notes == ["--seq-len 128: the model's inputs have no sequence dimension (input=float32[32, 3, 224, 224]); "
                     "not used"]
    code, out, err = run_cli("analyze", str(ROOT / "examples" / "resnet50.onnx"), "--format", "json")
    assert not [a for a in json.loads(out)["assumptions"] if "--seq-len" in a]


def test_text_report_prints_names_literally(run_cli, tmp_path):
    """Review: the analyze text report printed names through rich's markup: an ONNX output named 'out[/]' exited 3
    (MarkupError), a file 'm[red]x.onnx' lost its '[red]', and an escape sequence in a node name reached the
    terminal raw."""
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], [0.0] * 12)
    node = helper.make_node("MatMul", ["x", "w"], ["out[/]"], name="/lay\x1b[31mer[bold]/MatMul")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("out[/]", TensorProto.FLOAT, [2, 3])], [w])
    path = tmp_path / "m[red]x.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    code, out, err = run_cli("analyze", str(path))
    assert code == 0, err
    assert "m[red]x.onnx (onnx)" in out and "\x1b" not in out and "\\x1b" in out
    assert "'out[/]'" in out  # the loss assumption names the output as it is


def test_analyze_traces_the_micro_batch_of_the_configured_parallel_layout(run_cli, tmp_path, monkeypatch):
    """Review: analyze took `gpus` from [tool.wattlint] as data-parallel GPUs and ignored tensor-, pipeline- and
    context-parallel (micro-batch 4 where the estimate traced 8), and said nothing of the training stack or selective
    recompute it does not apply. data-parallel = gpus / (tp x pp x cp); micro-batch = batch / data-parallel."""
    import shutil

    shutil.copy(ROOT / "examples" / "gpt2-tiny.onnx", tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    cases = [('training-stack = "megatron"\nprecision = "bf16"\ntensor-parallel = 2\ngpus = 2\n'
              'recompute = "selective"\n', 8),  # dp = 2 / 2 = 1: 8 / 1 (was 8 / 2 = 4)
             ("tensor-parallel = 2\npipeline-parallel = 2\ngpus = 8\n", 4),  # dp = 8 / 4 = 2: 8 / 2 (was 1)
             ("tensor-parallel = 2\ncontext-parallel = 2\ngpus = 8\n", 4)]  # dp = 8 / (2 x 2) = 2
    for toml, micro in cases:
        (tmp_path / "pyproject.toml").write_text("[tool.wattlint]\n" + toml)
        code, out, err = run_cli("analyze", "m.onnx", "--batch-size", "8", "--format", "json")
        assert code == 0, err
        assert json.loads(out)["trace"]["micro_batch"] == micro, (toml, err)
        assert "tensor-parallel = 2" in err.splitlines()[0]  # the settings line names what it took
        notes = [ln for ln in err.splitlines() if "not applied by analyze" in ln]
        if "megatron" in toml:
            assert len(notes) == 1 and "training-stack = 'megatron'" in notes[0] and \
                "recompute = 'selective'" in notes[0], err
        else:
            assert notes == []
        code, out, err = run_cli("m.onnx", "--gpu", "h100", "--batch-size", "8", "--steps", "1", "--format", "json")
        assert code == 0, err
        assert json.loads(out)["plan"]["micro_batch_size"] == micro  # the estimate's own


def test_analyze_layer_table_shows_the_optimizer_flops_it_ranks_by(run_cli, tmp_path):
    """Review: the layer table ranked rows and computed their share with optimizer FLOPs no column showed: the root
    module (holding the optimizer step) ranked with '408 FLOP / 328 FLOP'. Fused AdamW is 15 FLOPs per parameter
    (docs/COSTS.md): 15 x (64 x 64 + 64 + 64 x 10 + 10 = 4,810) = 72,150 = 72.2 kFLOP, all on the root."""
    f = tmp_path / "two.py"
    f.write_text("import torch\nfrom torch import nn\n\n\ndef net():\n"
                 "    return nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 10)), (torch.randn(8, 64),)\n")
    code, out, err = run_cli("analyze", f"{f}:net", "--optimizer-impl", "fused")
    assert code == 0, err
    rows = [[c.strip() for c in ln.split("│")[1:-1]] for ln in out.splitlines() if ln.startswith("│")]
    head = next(ln for ln in out.splitlines() if ln.startswith("┃") and "layer" in ln)
    assert [c.strip() for c in head.split("┃")[1:-1]] == ["layer", "type", "forward", "backward", "optimizer",
                                                          "bytes", "share"]
    total = next(r for r in rows if r[0] == "total")[1]  # the phase table's total FLOPs
    layers = [r for r in rows if len(r) == 7]
    assert next(r for r in layers if r[0] == "(root)")[4] == "72.2 kFLOP"
    assert all(r[4] == "0 FLOP" for r in layers if r[0] != "(root)")

    def num(cell):
        v, unit = cell.split()
        return float(v) * {"FLOP": 1, "kFLOP": 1e3, "MFLOP": 1e6}[unit]

    # each share is what its row shows (forward + backward + optimizer) over all the step's FLOPs, to the rounding
    # of the 3-digit cells
    for r in layers:
        assert abs(100 * sum(num(c) for c in r[2:5]) / num(total) - float(r[6].split()[0])) < 0.6, r
