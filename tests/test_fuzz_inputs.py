"""Malformed configuration and data files never crash (issue 12: a fuzz test over the inputs other than ONNX).

Seeded mutations of four inputs go through the CLI entry point in-process: the ``[tool.wattlint]`` table of a
pyproject.toml (``wattlint check``), a baseline file (``wattlint check``), a calibration run CSV + its JSON provenance
(``wattlint fit``) and a Hugging Face config.json (``wattlint analyze``). Each mutation is structural (a value
replaced by an awkward one: NaN, inf, 1e300, 2**62, a negative, a string, a list, a table, control characters,
thousands-deep nesting) or byte-level (flipped, inserted, deleted, duplicated or truncated bytes, invalid UTF-8).
Every run must exit 0, 1 or 2 (never 3, never a traceback), and an exit 2 prints exactly one line on stderr. The
seed is fixed so a failure reproduces; the case count keeps the whole file under ~30 s.
"""

from __future__ import annotations

import io
import json
import random
import re
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from wattlint.cli import main

ROOT = Path(__file__).resolve().parents[1]
SEED = 20261204

TOML_VALUES = ['nan', 'inf', '-inf', '1e300', '-1', '0', '4611686018427387904', '""', '"WL"', '"abc"', '[]',
               '["WL", 3]', '{}', '{ energy-kwh = nan }', 'true', '1.5', '"\\u0000\\n::error x"', '"a100,,"',
               '"' + "x" * 5000 + '"', "[" * 3000 + "]" * 3000, '2026-12-04', '"../../../etc/passwd"',
               # plausible values too, so that mutated files also get past the parser into the estimate and rules
               '1', '2', '0.5', '"h100"', '"fp32"', '["WL1"]', '1e-9', '{ energy-kwh = 1e-12 }', '"m.onnx"']
JSON_VALUES = ['NaN', 'Infinity', '-Infinity', '1e400', '1e300', '-1', '0', '4611686018427387904', '"abc"', '[]',
               '{}', 'true', 'null', '"\\u0000\\n::error x"', '[1, 2]', '0.5', '"' + "y" * 5000 + '"',
               '{"a": ' * 3000 + '1' + '}' * 3000, '"💥"']


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not b:
            b += bytes([rng.randrange(256)])
            continue
        i = rng.randrange(len(b))
        op = rng.randrange(6)
        if op == 0:
            b[i] = rng.randrange(256)
        elif op == 1:
            b[i:i] = rng.choice([b"\xff\xfe", b"\x00", b"\n", b"\r", b'"', b"[", b"{", b"\x1b[31m", b"\xc3"])
        elif op == 2:
            del b[i:i + rng.randint(1, 40)]
        elif op == 3:
            j = rng.randrange(len(b))
            b[j:j] = b[i:i + rng.randint(1, 200)]
        elif op == 4:
            del b[i:]
        else:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(b)


def _replace_value(rng: random.Random, text: str, pattern: str, values: list[str]) -> str:
    """Replace the value of one `key = value` / `"key": value` occurrence (chosen at random) by an awkward one."""
    spans = [m.span(1) for m in re.finditer(pattern, text, flags=re.M)]
    if not spans:
        return text
    a, b = rng.choice(spans)
    return text[:a] + rng.choice(values) + text[b:]


CSV_VALUES = ["nan", "inf", "-inf", "-1", "0", "1e400", "", "abc", "ok", '"{""m"": -5}"', '"{broken"', "1,2,3",
              '"\x1b[31m"']


def _mutate_csv(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(1, len(lines))
        op = rng.randrange(4)
        if op == 0:  # one field replaced (the params JSON has commas inside quotes: only the numeric tail is split)
            head, *tail = lines[i].rsplit(",", 18)
            if tail:
                tail[rng.randrange(len(tail))] = rng.choice(CSV_VALUES)
                lines[i] = ",".join([head, *tail])
        elif op == 1:  # a row duplicated
            lines.insert(rng.randrange(1, len(lines) + 1), lines[i])
        elif op == 2:  # torn: fields lost or added
            lines[i] = lines[i].rsplit(",", rng.randint(1, 12))[0] if rng.random() < 0.5 else lines[i] + ",x,y"
        else:  # the header damaged
            lines[0] = lines[0].replace(rng.choice(["time_s", "avg_power_w", "params", "family", "status"]), "zz")
    return "\n".join(lines) + "\n"


# per key, values that are valid but at the edges: they get past the configuration into the estimate and the rules
EDGE_TOML = {"gpu": ['"h100"', '"v100"', '"rtx3090"', '"mi300x"', '"gaudi3"'],
             "precision": ['"fp32"', '"fp16"', '"bf16"', '"fp8"', '"tf32"', '"default"'],
             "region": ['"DEU"', '"aws:us-east-1"', '"US"', '"IN"'], "pue": ["1", "1.0001", "3.5"],
             "gpus": ["1", "8", "1024"], "batch-size": ["8", "4096", "1000000"], "steps": ["1", "1e12", "999999999"],
             "regression-threshold": ["0", "100"], "price-per-kwh": ["0", "1e6"], "min-share": ["0", "1"],
             "budget": ["{ energy-kwh = 1e-12 }", "{ co2-kg = 1e12, time-h = 0.001 }", "{}"],
             "select": ['["ALL"]', '["WL1", "WL3"]', "[]"], "ignore": ['["ALL"]', "[]"]}


def _edge_toml(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    cand = [i for i, ln in enumerate(lines) if ln.split("=")[0].strip() in EDGE_TOML]
    i = rng.choice(cand)
    key = lines[i].split("=")[0].strip()
    lines[i] = f"{key} = {rng.choice(EDGE_TOML[key])}"
    return "\n".join(lines) + "\n"


# the same for the Hugging Face config (kept small: every one that builds is traced)
EDGE_HF = {"n_layer": [0, 1, 2], "n_embd": [2, 30, 64], "n_head": [1, 3, 7], "n_positions": [1, 8, 100000],
           "vocab_size": [1, 3, 50257], "n_inner": [None, 1, 4096], "tie_word_embeddings": [False],
           "activation_function": ["relu", "silu", "quick_gelu", "no-such-act"], "layer_norm_epsilon": [0, 1e300],
           "bos_token_id": [-1, 10 ** 9], "architectures": [["GPT2Model"], ["NoSuchModel"], [], ["GPT2ForSequenceClassification"]]}


def _edge_json(rng: random.Random, text: str, edges: dict) -> str:
    doc = json.loads(text)
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(sorted(edges))
        doc[key] = rng.choice(edges[key])
    return json.dumps(doc, indent=2)


def _mutate(rng: random.Random, text: str, kind: str) -> bytes:
    if kind == "toml" and rng.random() < 0.35:
        for _ in range(rng.randint(1, 3)):
            text = _edge_toml(rng, text)
        return text.encode("utf-8")
    if kind == "hf" and rng.random() < 0.35:
        return _edge_json(rng, text, EDGE_HF).encode("utf-8")
    if kind == "hf":
        kind = "json"
    if kind == "csv" and rng.random() < 0.7:
        data = _mutate_csv(rng, text).encode("utf-8")
        return _mutate_bytes(rng, data) if rng.random() < 0.2 else data
    if kind != "csv" and rng.random() < 0.6:
        pattern, values = ((r"^[\w.-]+\s*=\s*(.+)$", TOML_VALUES) if kind == "toml"
                           else (r'"[\w-]+":\s*([^,{}\[\]\n]+|\[[^\[\]]*\])', JSON_VALUES))
        for _ in range(rng.randint(1, 2)):
            text = _replace_value(rng, text, pattern, values)
        data = text.encode("utf-8")
        return _mutate_bytes(rng, data) if rng.random() < 0.2 else data
    return _mutate_bytes(rng, text.encode("utf-8"))


def _run(*argv) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


def _assert_ok(code: int, err: str, what: str, data: bytes) -> None:
    detail = f"{what}: exit {code}, stderr {err!r}, input {data[:300]!r}"
    assert code in (0, 1, 2), detail
    assert "Traceback" not in err, detail
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(("wattlint: error:", "wattlint ")), detail


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [16, 16], vals=[0.0] * 256)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="/fc/MatMul")], "tiny",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])], [w])
    p = tmp_path / "m.onnx"
    p.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return p


PYPROJECT = """[project]
name = "fuzz"

[tool.wattlint]
gpu = "a100"
precision = "bf16"
region = "FR"
pue = 1.2
gpus = 2
select = ["WL"]
ignore = ["WL402"]
baseline = "wattlint-baseline.json"
regression-threshold = 0.05
price-per-kwh = 0.2

[tool.wattlint.rules.WL104]
min-share = 0.4

[[tool.wattlint.models]]
name = "m"
source = "m.onnx"   # wattlint: noqa: WL101
batch-size = 8
steps = 100
budget = { energy-kwh = 10, co2-kg = 2 }
"""


def test_fuzz_pyproject(tmp_path, tiny_onnx, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    code, err = _run("check")
    assert code == 0, err  # the unmutated base is valid
    rng = random.Random(SEED)
    codes = []
    for i in range(120):
        data = _mutate(rng, PYPROJECT, "toml")
        (tmp_path / "pyproject.toml").write_bytes(data)
        code, err = _run("check", "--no-cache")
        _assert_ok(code, err, f"pyproject case {i}", data)
        codes.append(code)
    assert codes.count(2) >= 20 and codes.count(0) + codes.count(1) >= 15, codes  # both paths exercised


BASELINE = json.dumps({"schema": "wattlint.baseline/1", "generator": "wattlint 0.1.0", "models": {
    "m": {"source": "m.onnx", "gpu": "a100-sxm4-80gb", "calibration": "prior", "energy_kwh": 1e-05,
          "gpu_energy_kwh": 5e-06, "co2_kg": 1e-06, "cost_usd": 1e-06, "time_h": 0.001, "gpu_hours": 0.001},
    "other": {"source": "x.onnx", "energy_kwh": 2.0}}}, indent=2)


def test_fuzz_baseline(tmp_path, tiny_onnx, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    rng = random.Random(SEED + 1)
    codes = []
    for i in range(150):
        data = _mutate(rng, BASELINE, "json")
        (tmp_path / "wattlint-baseline.json").write_bytes(data)
        code, err = _run("check")  # cached estimate: the baseline is what varies
        _assert_ok(code, err, f"baseline case {i}", data)
        codes.append(code)
    assert codes.count(2) >= 20 and codes.count(0) + codes.count(1) >= 10, codes


HF_CONFIG = json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 1, "n_embd": 32,
                        "n_head": 2, "n_positions": 64, "vocab_size": 128, "n_inner": 64,
                        "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05, "bos_token_id": 0,
                        "eos_token_id": 0, "tie_word_embeddings": True}, indent=2)


def test_fuzz_hf_config(tmp_path):
    pytest.importorskip("transformers")
    p = tmp_path / "config.json"
    rng = random.Random(SEED + 2)
    codes = []
    for i in range(60):
        data = _mutate(rng, HF_CONFIG, "hf")
        p.write_bytes(data)
        code, err = _run("analyze", p, "--seq-len", "16", "--batch-size", "2", "--format", "json")
        _assert_ok(code, err, f"config.json case {i}", data)
        codes.append(code)
    assert codes.count(2) >= 10 and codes.count(0) >= 5, codes


def _run_files(tmp_path: Path) -> tuple[Path, str, str]:
    src = ROOT / "calibration" / "runs" / "cpu-amd-epyc"
    csv_text = (src / "20261123T112820Z-quick.csv").read_text()
    lines = csv_text.splitlines()
    ok = [ln for ln in lines[1:] if ",ok," in ln]
    # a small run (header + 24 measured samples of several families) keeps each fit fast
    small = "\n".join([lines[0]] + ok[::10][:24]) + "\n"
    return src / "20261123T112820Z-quick.json", small, (src / "20261123T112820Z-quick.json").read_text()


def test_fuzz_run_csv_and_provenance(tmp_path):
    pytest.importorskip("lightgbm")
    _, csv_text, prov = _run_files(tmp_path)
    d = tmp_path / "runs"
    d.mkdir()
    rng = random.Random(SEED + 3)
    codes = []
    for i in range(24):
        csv_data = _mutate(rng, csv_text, "csv") if i % 3 else csv_text.encode()
        json_data = _mutate(rng, prov, "json") if i % 3 == 0 else prov.encode()
        shutil.rmtree(d)
        d.mkdir()
        (d / "r.csv").write_bytes(csv_data)
        (d / "r.json").write_bytes(json_data)
        code, err = _run("fit", d / "r.csv", "--out", tmp_path / "model", "--folds", "2")
        _assert_ok(code, err, f"run case {i}", csv_data + b"\n----\n" + json_data)
        codes.append(code)
    assert codes.count(2) >= 3 and codes.count(0) >= 3, codes
