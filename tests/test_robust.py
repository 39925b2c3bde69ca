"""Issue 12, first run and reliability: one regression test per defect (D1, D4, D6, D8 and the --models-dir /
pre-commit / width / grouping / --fail-on items have theirs in test_cli_errors.py, test_estimate.py, test_check.py,
test_layout.py and test_report.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _cli_errors import EXAMPLES, ROOT, SRC
from _cli_errors import one_error_line as _one_error_line


# ---- light install: a missing extra is one line naming it ------------------------------------------------------

_LIGHT = """
import sys
for m in sys.argv[1].split(","):
    sys.modules[m] = None   # what an uninstalled package looks like to import and to importlib.util.find_spec
from wattlint.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _light(missing: str, *argv, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop("WATTLINT_DEBUG", None)
    return subprocess.run([sys.executable, "-c", _LIGHT, missing, *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("missing, argv, extra", [
    ("torch,transformers", ["examples/torch_models.py:tiny_gpt", "--gpu", "h100", "--steps", "10"], "torch"),
    ("torch,transformers", ["analyze", "examples/torch_models.py:resnet_small"], "torch"),
    ("torch,transformers", ["examples/gpt2-small/config.json", "--gpu", "h100"], "hf"),
    ("transformers", ["analyze", "examples/gpt2-small/config.json"], "hf"),  # torch alone is not enough
    ("torch,transformers", ["calibrate", "--device", "cuda"], "torch"),
    ("torch,transformers", ["validate", "predict", "--gpu", "h100", "--out", "{tmp}/p.json"], "torch"),
])
def test_light_install_names_the_extra(missing, argv, extra, tmp_path):
    r = _light(missing, *[a.format(tmp=tmp_path) for a in argv])
    assert r.returncode == 2, r.stderr
    line = _one_error_line(r.stderr)
    assert f"pip install 'wattlint[{extra}]'" in line and "is not installed" in line


def test_light_install_still_runs_onnx():
    r = _light("torch,transformers", "analyze", "examples/gpt2-tiny.onnx", "--top", "3")
    assert r.returncode == 0, r.stderr


def test_light_install_module_source_names_the_extra(tmp_path):
    (tmp_path / "mymodels.py").write_text("import torch\nnet = torch.nn.Linear(4, 4)\n")
    r = _light("torch,transformers", "analyze", "mymodels:net", "--input", "x=float32[2,4]", cwd=tmp_path)
    assert r.returncode == 2
    assert "pip install 'wattlint[torch]'" in _one_error_line(r.stderr)


# ---- the shipped GPT-2 small config is the 124 M model ---------------------------------------------------------

def test_gpt2_small_config_is_the_124m_model():
    """GPT-2 small (Radford et al. 2019; HF openai-community/gpt2): d=768, 12 layers, vocabulary 50,257, 1,024
    positions, tied LM head. By hand: embeddings 50,257 x 768 = 38,597,376 + positions 1,024 x 768 = 786,432;
    per block: 2 LayerNorms 2 x 1,536, c_attn 768 x 2,304 + 2,304 = 1,771,776, attn c_proj 768 x 768 + 768 = 590,592,
    c_fc 768 x 3,072 + 3,072 = 2,362,368, mlp c_proj 3,072 x 768 + 768 = 2,360,064 -> 7,087,872; x 12 = 85,054,464;
    final LayerNorm 1,536. Total 38,597,376 + 786,432 + 85,054,464 + 1,536 = 124,439,808."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    cfg = json.loads((EXAMPLES / "gpt2-small" / "config.json").read_text())
    by_hand = 50257 * 768 + 1024 * 768 + 12 * (2 * 1536 + 768 * 2304 + 2304 + 768 * 768 + 768 + 768 * 3072 + 3072
                                                   + 3072 * 768 + 768) + 1536
    assert by_hand == 124_439_808
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg))
    assert sum(p.numel() for p in model.parameters()) == by_hand  # parameters() counts the tied head once
    import wattlint

    g = wattlint.analyze(str(EXAMPLES / "gpt2-small" / "config.json"), seq_len=128)
    assert g.model.params == by_hand


def test_no_example_named_gpt2_small_onnx():
    assert not (EXAMPLES / "gpt2-small.onnx").exists() and (EXAMPLES / "gpt2-tiny.onnx").is_file()
    for f in [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("tests/*.py"), EXAMPLES / "make_examples.py",
              EXAMPLES / "project" / "pyproject.toml", EXAMPLES / "project" / "wattlint-baseline.json"]:
        if f.name != "test_robust.py":
            assert "gpt2-small.onnx" not in f.read_text(encoding="utf-8"), f


# ---- D2: Hugging Face config sizes bounded before building ---------------------------------------------------

@pytest.mark.parametrize("extra, key", [
    ({"num_hidden_layers": 1_000_000_000_000}, "num_hidden_layers"),
    ({"hidden_size": 1 << 40}, "hidden_size"),
    ({"vocab_size": 10 ** 12}, "vocab_size"),
    ({"vocab_size": 0}, "vocab_size = 0: a vocabulary needs at least one token"),
    ({"num_attention_heads": 10 ** 9}, "num_attention_heads"),
    ({"num_hidden_layers": 2.5}, "num_hidden_layers"),
    ({"num_local_experts": 10 ** 9, "model_type": "mixtral"}, "num_local_experts"),
    ({"num_hidden_layers": 4000, "num_local_experts": 1000, "model_type": "mixtral"}, "layers x experts"),
    ({"text_config": {"num_hidden_layers": 10 ** 12}}, "text_config.num_hidden_layers"),
])
def test_d2_absurd_hf_sizes_exit_2_fast(run_cli, tmp_path, extra, key):
    pytest.importorskip("transformers")
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "llama", **extra}))
    t0 = time.perf_counter()
    code, out, err = run_cli("analyze", p)
    assert code == 2 and key in _one_error_line(err)
    assert time.perf_counter() - t0 < 10  # refused before anything is built (was: a hang with growing memory)


# ---- D3: external shape data read by size, never the whole file ------------------------------------------------

def _external_shape_model(folder: Path, *, length: int | None, data: bytes, dims=(2,)) -> Path:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, list(dims), vals=[0] * (dims[0] if dims else 1))
    shape.ClearField("int64_data")
    shape.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "w.bin"), ("offset", "0")) + ((("length", str(length)),) if length is not None else ()):
        e = shape.external_data.add()
        e.key, e.value = k, v
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[shape])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    p = folder / "m.onnx"
    p.write_bytes(m.SerializeToString())
    (folder / "w.bin").write_bytes(data)
    return p


def test_d3_external_shape_read_exactly(run_cli, tmp_path):
    import numpy as np

    target = np.array([2, 12], dtype="<i8").tobytes()
    p = _external_shape_model(tmp_path, length=None, data=target + b"\0" * 1000)  # no length: dims say 16 bytes
    code, out, err = run_cli("analyze", p, "--format", "json")
    assert code == 0, err
    from wattlint.frontends.onnx import analyze_onnx

    g = analyze_onnx(p)
    assert [tuple(t.shape) for t in g.outputs] == [(2, 12)]  # the 16 bytes at offset 0, read as int64


def test_d3_sparse_data_file_is_not_read_whole(run_cli, tmp_path):
    """A 6 GiB sparse file behind a 2-value shape: only 16 bytes are read (was: 12.6 GB RSS)."""
    import resource

    import numpy as np

    p = _external_shape_model(tmp_path, length=None, data=np.array([4, 6], dtype="<i8").tobytes())
    with open(tmp_path / "w.bin", "r+b") as f:
        f.truncate(6 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, out, err = run_cli("analyze", p, "--format", "json")
    assert code == 0, err
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 1 << 20  # under 1 GiB more than before (a whole read would add 6 GiB)


@pytest.mark.parametrize("length, data, needle", [
    (None, b"\0" * 8, "needs bytes 0..16 but the file has 8"),
    (8, b"\0" * 16, "declares 8 bytes"),
])
def test_d3_size_mismatch_exit_2_not_missing(run_cli, tmp_path, length, data, needle):
    p = _external_shape_model(tmp_path, length=length, data=data)
    code, out, err = run_cli("analyze", p)
    line = _one_error_line(err)
    assert code == 2 and needle in line and "missing" not in line


def test_d3_memory_error_is_not_reported_missing(run_cli, tmp_path, monkeypatch):
    import numpy as np

    from wattlint.frontends import onnx_shapes

    p = _external_shape_model(tmp_path, length=None, data=np.array([4, 6], dtype="<i8").tobytes())

    def no_memory(self, *a, **k):
        raise MemoryError()

    monkeypatch.setattr(onnx_shapes._Shapes, "_read_shape_value", no_memory)
    code, out, err = run_cli("analyze", p)
    line = _one_error_line(err)
    assert code == 2 and "too large" in line and "missing" not in line


# ---- D5: malformed baseline values -----------------------------------------------------------------------------

def _project(tmp_path: Path, baseline: str | None = None, extra: str = "") -> Path:
    import shutil

    shutil.copy(EXAMPLES / "gpt2-tiny.onnx", tmp_path / "lm.onnx")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.wattlint]\ngpu = "a100"\nbaseline = "b.json"\n' + extra +
        '[[tool.wattlint.models]]\nname = "lm"\nsource = "lm.onnx"\nbatch-size = 8\nseq-len = 256\nsteps = 10\n')
    if baseline is not None:
        (tmp_path / "b.json").write_text(baseline)
    return tmp_path


@pytest.mark.parametrize("entry, needle", [
    ('{"energy_kwh": "abc"}', "energy_kwh = 'abc' is not a number"),
    ('{"energy_kwh": NaN}', "energy_kwh = nan is not a finite number"),
    ('{"energy_kwh": 1e400}', "energy_kwh = inf is not a finite number"),
    ('{"energy_kwh": -1}', "energy_kwh = -1 is not a finite number >= 0"),
    ('{"energy_kwh": 0}', "energy_kwh = 0: an estimate is never zero"),
    ('{"energy_kwh": 1, "co2_kg": "1"}', "co2_kg = '1' is not a number"),
    ('{"energy_kwh": true}', "is not a number"),
    ('[1, 2]', "expected an object of totals, got list"),
    ('"x"', "expected an object of totals, got str"),
])
def test_d5_malformed_baseline_entry_exit_2_naming_it(run_cli, tmp_path, monkeypatch, entry, needle):
    d = _project(tmp_path, '{"schema": "wattlint.baseline/1", "models": {"lm": %s}}' % entry)
    monkeypatch.chdir(d)
    code, out, err = run_cli("check", "--no-cache")
    line = _one_error_line(err)
    assert code == 2 and "model 'lm'" in line and needle in line


# ---- D7: non-UTF-8 and deeply nested inputs --------------------------------------------------------------------

def test_d7_non_utf8_pyproject(run_cli, tmp_path, monkeypatch):
    _project(tmp_path)
    (tmp_path / "pyproject.toml").write_bytes((tmp_path / "pyproject.toml").read_bytes() + b"# \xff\xfe\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("check", "--no-cache")
    assert code == 2 and "not UTF-8" in _one_error_line(err)


def test_d7_deep_pyproject(run_cli, tmp_path, monkeypatch):
    _project(tmp_path, extra="x = " + "[" * 5000 + "]" * 5000 + "\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("check", "--no-cache")
    assert code == 2 and "nested too deeply" in _one_error_line(err)


def test_d7_deep_baseline(run_cli, tmp_path, monkeypatch):
    _project(tmp_path, '{"schema": "wattlint.baseline/1", "models": ' + '{"a": ' * 5000 + "1" + "}" * 5001)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("check", "--no-cache")
    assert code == 2 and "nested too deeply" in _one_error_line(err)


def test_d7_gpus_1e300(run_cli, tmp_path, monkeypatch):
    _project(tmp_path, extra="gpus = 1e300\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("check", "--no-cache")
    assert code == 2 and "'gpus'" in _one_error_line(err)


@pytest.mark.parametrize("content, needle", [
    (b'{"model_type": "gpt2"\xff}', "not UTF-8"),
    (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "nested too deeply"),
])
def test_d7_bad_config_json(run_cli, tmp_path, content, needle):
    pytest.importorskip("transformers")
    p = tmp_path / "config.json"
    p.write_bytes(content)
    code, out, err = run_cli("analyze", p)
    assert code == 2 and needle in _one_error_line(err)


def _calibration_run(tmp_path: Path) -> Path:
    import shutil

    src = ROOT / "calibration" / "runs" / "cpu-amd-epyc"
    d = tmp_path / "runs"
    d.mkdir()
    for f in src.glob("20261123T112820Z-quick.*"):
        shutil.copy(f, d / f.name)
    return d


def test_d7_non_utf8_run_csv(run_cli, tmp_path):
    d = _calibration_run(tmp_path)
    csv = d / "20261123T112820Z-quick.csv"
    csv.write_bytes(csv.read_bytes().replace(b"gemm", b"g\xffmm", 1))
    code, out, err = run_cli("fit", d, "--out", tmp_path / "m")
    assert code == 2 and "not UTF-8" in _one_error_line(err)


# ---- D9: fit says what it dropped ------------------------------------------------------------------------------

def test_d9_fit_dedupes_and_counts_dropped_rows(run_cli, tmp_path):
    pytest.importorskip("lightgbm")
    d = _calibration_run(tmp_path)
    csv = d / "20261123T112820Z-quick.csv"
    lines = csv.read_text().splitlines()
    ok = [i for i, ln in enumerate(lines) if ",ok," in ln]
    n_ok = len(ok)
    a, b, c = ok[0], ok[1], ok[2]
    lines.append(lines[a])                          # 1 duplicate sample
    lines[b] = lines[b].replace(",22.0,", ",nan,", 1)  # 1 NaN power (avg_power_w is 22.0 in this CPU run)
    lines[c] = lines[c].rsplit(",", 10)[0]           # 1 torn row: its last 10 fields lost (no quote left open)
    csv.write_text("\n".join(lines) + "\n")
    code, out, err = run_cli("fit", d, "--out", tmp_path / "m")
    assert code == 0, err
    assert "1 duplicate sample" in out and "1 power not a finite number >= 0" in out
    assert "1 torn (wrong number of fields)" in out
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["training"]["samples"] == n_ok - 2  # the NaN and the torn row dropped, the duplicate counted once


@pytest.mark.parametrize("folds", ["0", "1", "1001", "-3", "2.5"])
def test_d9_folds_bounds(run_cli, tmp_path, folds):
    code, out, err = run_cli("fit", tmp_path, "--folds", folds)
    assert code == 2 and "--folds" in _one_error_line(err.replace("wattlint fit:", "wattlint: error: fit:"))


# ---- D10 -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("limit", ["-1", "0"])
def test_d10_calibrate_limit_must_be_positive(run_cli, limit):
    code, out, err = run_cli("calibrate", "--device", "fake", "--limit", limit)
    assert code == 2 and "--limit" in err and err.count("\n") == 1


# ---- D11: stale temporary files of a killed write --------------------------------------------------------------

def test_d11_stale_baseline_temp_removed_by_next_run(run_cli, tmp_path, monkeypatch):
    d = _project(tmp_path)
    monkeypatch.chdir(d)
    stale = d / ".b.json.k1ll3d_0.tmp"  # mkstemp's names: 8 random characters [a-z0-9_]
    fresh = d / ".b.json.wr1t1ng0.tmp"
    users = d / ".b.json.backup.tmp"  # not a name mkstemp gives: the user's own file, whatever its age
    for f in (stale, fresh, users):
        f.write_text("{")
    old = time.time() - 600
    os.utime(stale, (old, old))
    os.utime(users, (old, old))
    code, out, err = run_cli("check", "--no-cache")
    assert code == 0, err
    assert not stale.exists()  # a killed writer's (10 min old)
    assert fresh.exists()  # possibly another process writing right now: kept
    assert users.exists()


def test_d11_stale_cache_temp_removed(run_cli, tmp_path, monkeypatch):
    d = _project(tmp_path)
    monkeypatch.chdir(d)
    assert run_cli("check")[0] == 0
    vdir = d / ".wattlint-cache" / "v1"
    stale = vdir / ".abc.json.x0000000.tmp"
    stale.write_text("{")
    old = time.time() - 600
    os.utime(stale, (old, old))
    assert run_cli("check")[0] == 0
    assert not stale.exists()


# ---- D12: writes that a symbolic link carries out of the project -----------------------------------------------

def test_d12_output_through_linked_folder_refused(run_cli, tmp_path, monkeypatch):
    proj, outside = tmp_path / "proj", tmp_path / "outside"
    proj.mkdir()
    outside.mkdir()
    _project(proj)
    (proj / "out").symlink_to(outside)
    monkeypatch.chdir(proj)
    code, out, err = run_cli("check", "--no-cache", "-o", "out/r.txt")
    assert code == 2 and "outside" in _one_error_line(err) and not (outside / "r.txt").exists()
    code, out, err = run_cli("analyze", "lm.onnx", "-o", "out/r.txt")
    assert code == 2 and not (outside / "r.txt").exists()
    (proj / "link.txt").symlink_to(outside / "r.txt")
    code, out, err = run_cli("analyze", "lm.onnx", "-o", "link.txt")
    assert code == 2 and "symbolic link" in _one_error_line(err) and not (outside / "r.txt").exists()
    code, out, err = run_cli("analyze", "lm.onnx", "-o", outside / "r.txt")  # named outright: the user's choice
    assert code == 0 and (outside / "r.txt").is_file()


def test_d12_symlinked_cache_dir_refused(run_cli, tmp_path, monkeypatch):
    proj, outside = tmp_path / "proj", tmp_path / "outside"
    proj.mkdir()
    outside.mkdir()
    _project(proj)
    (proj / ".wattlint-cache").symlink_to(outside)
    monkeypatch.chdir(proj)
    monkeypatch.delenv("WATTLINT_CACHE_DIR", raising=False)
    code, out, err = run_cli("check")
    assert code == 2 and "cache directory" in _one_error_line(err) and not any(outside.iterdir())
    assert run_cli("check", "--no-cache")[0] == 0


# ---- internal errors in the ONNX analysis are exit 3, onnx's own rejections exit 2 -----------------------------

def _gemm_handler_raising(monkeypatch, raise_it):
    """Every Gemm node of the ONNX analysis handled by ``raise_it(node)`` (which raises)."""
    from wattlint.frontends import onnx_ops

    real = onnx_ops.handler_for

    def patched(op_type, domain):
        h = real(op_type, domain)
        return raise_it if op_type == "Gemm" and h is not None else h

    monkeypatch.setattr(onnx_ops, "handler_for", patched)


def test_onnx_internal_bug_exits_3_with_the_op(run_cli, monkeypatch):
    def broken(n):
        raise AttributeError("'NoneType' object has no attribute 'dims'")  # a bug of ours

    _gemm_handler_raising(monkeypatch, broken)
    monkeypatch.delenv("WATTLINT_DEBUG", raising=False)
    code, out, err = run_cli("analyze", EXAMPLES / "resnet50.onnx")
    assert code == 3, err
    assert "internal error" in err and "at Gemm node" in err and "please report" in err and err.count("\n") == 1


def test_onnx_validation_failure_stays_exit_2(run_cli, monkeypatch):
    import onnx.checker
    from onnx import TensorProto

    def via_onnx(n):
        t = TensorProto()
        t.name, t.data_type = "x", 9999  # onnx's checker rejects it (ValidationError, raised in onnx's code)
        onnx.checker.check_tensor(t)

    _gemm_handler_raising(monkeypatch, via_onnx)
    code, out, err = run_cli("analyze", EXAMPLES / "resnet50.onnx")
    assert code == 2 and "malformed graph" in _one_error_line(err)


# ---- docs say that check runs the model source files -----------------------------------------------------------

def test_docs_say_check_imports_and_runs_model_sources():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    check_section = readme.split("### Lint, budgets and the pre-commit hook", 1)[1].split("\n### ", 1)[0]
    assert "imports and runs the Python files named as model sources" in check_section
    assert "imports and runs the Python files named as model sources" in (ROOT / "docs" / "CONFIG.md").read_text()


def test_error_lines_escape_control_characters(run_cli):
    code, out, err = run_cli(EXAMPLES / "resnet50.onnx", "--gpu", "a\n::error x\x1b[31m")
    assert code == 2 and "\n::error" not in err and "\x1b" not in err and err.count("\n") == 1


def test_d2_per_layer_size_lists_are_accepted_and_checked(run_cli, tmp_path):
    """Some real configs give a size per layer (Gemma 3n: intermediate_size is a list): each element is bounded."""
    pytest.importorskip("transformers")
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "llama", "intermediate_size": [128, 10 ** 12]}))
    code, out, err = run_cli("analyze", p)
    assert code == 2 and "intermediate_size = 1000000000000 is outside" in _one_error_line(err)


def test_hf_build_prints_no_python_warnings(tmp_path):
    """torch warns "Initializing zero-element tensors is a no-op" for a zero-width layer (found by test_fuzz_inputs
    with a zero vocabulary, which is now refused before building): that line broke the one-line error contract; the
    library prints nothing of its own dependencies'. A zero MLP width builds zero-element weights the same way."""
    pytest.importorskip("transformers")
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 1, "n_head": 2,
                             "n_embd": 32, "vocab_size": 100, "n_inner": 0, "n_positions": 64}))
    env = dict(os.environ, PYTHONPATH=str(SRC))
    r = subprocess.run([sys.executable, "-W", "default", "-m", "wattlint", "analyze", str(p), "--seq-len", "16",
                        "--batch-size", "2"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode in (0, 2)
    assert "Warning" not in r.stderr and len(r.stderr.strip().splitlines()) <= 1, r.stderr


def test_d12_read_only_output_file_is_not_replaced(run_cli, tmp_path, monkeypatch):
    """An atomic write renames a temporary over the target, which replaces even a write-protected file: a report
    written with -o over a read-only file is refused (exit 2, one line) and the file keeps its content."""
    proj = tmp_path / "proj"
    proj.mkdir()
    _project(proj)
    monkeypatch.chdir(proj)
    kept = proj / "kept.txt"
    # a JSON report of an earlier run (an existing file that is no report is refused whatever its mode)
    assert run_cli("analyze", "lm.onnx", "--format", "json", "-o", "kept.txt")[0] == 0
    before = kept.read_text()
    kept.chmod(0o444)
    code, out, err = run_cli("analyze", "lm.onnx", "-o", "kept.txt")
    assert code == 2 and "read-only" in _one_error_line(err)
    assert kept.read_text() == before
    kept.chmod(0o644)  # writable again: replaced by the new (text) report
    assert run_cli("analyze", "lm.onnx", "-o", "kept.txt")[0] == 0 and kept.read_text() != before


def test_a_dataset_count_beyond_any_real_run_is_refused(run_cli):
    """--dataset N has --dataset-size's bound (1e13 samples): 1e30 used to print a 7e14 GWh run (fuzz review)."""
    code, out, err = run_cli("examples/resnet50.onnx", "--gpu", "a100", "--dataset", "1e30", "--epochs", "1")
    assert code == 2 and out == ""
    assert err.strip() == "wattlint: error: --dataset 1e30: expected at most 1e+13 samples per epoch"
    assert run_cli("examples/resnet50.onnx", "--gpu", "a100", "--dataset", "1e13", "--epochs", "1")[0] == 0
