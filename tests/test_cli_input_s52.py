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


# ---- 5/6. Hugging Face configs: zero counts, unknown values, NaN ----------------------------------------------------

GPT2 = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 2, "n_embd": 64, "n_head": 4,
        "vocab_size": 100, "n_positions": 128}
LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2, "hidden_size": 64,
         "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100}
MIXTRAL = {**LLAMA, "model_type": "mixtral", "architectures": ["MixtralForCausalLM"], "num_local_experts": 4,
           "num_experts_per_tok": 2}


@pytest.mark.parametrize("config, said", [
    ({**GPT2, "n_head": 0}, "n_head = 0"),
    ({**LLAMA, "num_key_value_heads": 0}, "num_key_value_heads = 0"),
    ({**LLAMA, "num_attention_heads": 0}, "num_attention_heads = 0"),
    ({**MIXTRAL, "num_local_experts": 0}, "num_local_experts = 0"),
    ({**{k: v for k, v in MIXTRAL.items() if k != "num_experts_per_tok"}, "num_local_experts": 0},
     "num_local_experts = 0"),  # top-k from MixtralConfig's default
    ({**GPT2, "n_layer": 0}, "n_layer = 0"),
    ({**LLAMA, "num_hidden_layers": 0}, "num_hidden_layers = 0"),
    ({**GPT2, "n_positions": 0}, "n_positions = 0"),
    ({**GPT2, "activation_function": "nonexistent_act"}, "activation_function = 'nonexistent_act'"),
    ({**LLAMA, "rope_scaling": {"type": "bogus", "factor": 2.0}}, "'bogus'"),
])
def test_a_config_transformers_cannot_build_is_refused_naming_the_key(tmp_path, capsys, config, said):
    import json

    pytest.importorskip("transformers")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    code, _, err = _run(capsys, path, "--gpu", "h100", "--steps", "10", "--seq-len", "64", "--batch-size", "8")
    assert code == 2
    line = one_error_line(err)
    assert said in line
    assert "ZeroDivisionError" not in line and "KeyError: " not in line and "unsupported" not in line


def test_a_nan_in_a_config_is_refused(tmp_path, capsys):
    pytest.importorskip("transformers")
    path = tmp_path / "config.json"
    path.write_text('{"model_type":"gpt2","n_layer":2,"n_embd":64,"n_head":4,"vocab_size":100,'
                    '"layer_norm_epsilon":NaN}', encoding="utf-8")
    code, _, err = _run(capsys, path, "--gpu", "h100", "--steps", "10", "--seq-len", "64", "--batch-size", "8")
    assert code == 2
    line = one_error_line(err)
    assert "layer_norm_epsilon" in line and "finite" in line


def test_a_short_learned_position_table_is_refused_and_rotary_is_noted(tmp_path, capsys):
    import json

    pytest.importorskip("transformers")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**GPT2, "n_positions": 16}), encoding="utf-8")
    code, _, err = _run(capsys, path, "--gpu", "h100", "--steps", "10", "--seq-len", "64", "--batch-size", "8")
    assert code == 2 and "64" in one_error_line(err) and "16" in one_error_line(err)
    path.write_text(json.dumps({**LLAMA, "max_position_embeddings": 16}), encoding="utf-8")
    code, out, err = _run(capsys, path, "--gpu", "h100", "--steps", "10", "--seq-len", "64", "--batch-size", "8")
    assert code == 0 and "exceeds the config's maximum positions 16" in out


# ---- 7. tracking files: non-finite record fields, a CodeCarbon gpu_count that is no number, a zero duration ----------

RUNS = sorted((EXAMPLES.parent / "benchmarks" / "results" / "track_cpu_runs").glob("*.jsonl"))


@pytest.mark.parametrize("field, value, said", [
    (("analysis", "per_step", "time_s"), float("nan"), "summary.analysis.per_step.time_s = NaN"),
    (("analysis", "projection", "device_energy_j"), float("inf"), "summary.analysis.projection.device_energy_j"),
])
def test_a_run_record_with_a_non_finite_number_is_refused(tmp_path, capsys, field, value, said):
    import json

    lines = RUNS[0].read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if json.loads(line).get("type") == "summary")
    summary = json.loads(lines[at])
    node = summary
    for k in field[:-1]:
        node = node[k]
    assert field[-1] in node  # the record has the field
    node[field[-1]] = value
    lines[at] = json.dumps(summary)  # writes NaN / Infinity, as a hand edit would
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _, err = _run(capsys, "compare-run", path)
    assert code == 2
    line = one_error_line(err)
    assert f"r.jsonl:{at + 1}" in line and said in line and "not a finite number" in line


CC_HEADER = ("timestamp,project_name,run_id,duration,emissions,emissions_rate,cpu_power,gpu_power,ram_power,"
             "cpu_energy,gpu_energy,ram_energy,energy_consumed,country_name,country_iso_code,codecarbon_version,"
             "gpu_count,gpu_model,tracking_mode,pue")


def _cc_row(duration="3600.5", gpu_count="1"):
    return (f"2024-05-01T10:00:00,codecarbon,abc-123,{duration},1.2,0.0003,42.5,300.1,10.0,0.0425,1.2,0.01,1.2525,"
            f"France,FRA,2.3.4,{gpu_count},1 x NVIDIA A100-SXM4-80GB,machine,1.0")


@pytest.mark.parametrize("row, said", [
    (_cc_row(gpu_count="abc"), "gpu_count 'abc'"),
    (_cc_row(duration="0"), "duration '0'"),
    (_cc_row(duration="0.0"), "duration '0.0'"),
])
def test_a_codecarbon_row_with_a_bad_count_or_duration_is_refused(tmp_path, capsys, row, said):
    path = tmp_path / "emissions.csv"
    path.write_text(CC_HEADER + "\n" + row + "\n", encoding="utf-8")
    code, _, err = _run(capsys, "compare-run", path)
    assert code == 2
    line = one_error_line(err)
    assert said in line and "emissions.csv" in line


def test_a_sound_codecarbon_row_is_read(tmp_path, capsys):
    path = tmp_path / "emissions.csv"
    path.write_text(CC_HEADER + "\n" + _cc_row() + "\n", encoding="utf-8")
    code, out, _ = _run(capsys, "compare-run", path)
    assert code == 0 and out


# ---- 8. a closed standard output: exit 0 having written nothing -----------------------------------------------------

@pytest.mark.parametrize("command", [["gpus"], ["rules"]])
def test_a_closed_stdout_is_refused_with_one_line(command):
    import os
    import subprocess
    import sys

    code = f"import sys\nfrom wattlint.cli import main\nsys.exit(main({command!r}))"
    res = subprocess.run([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, timeout=120,
                         preexec_fn=lambda: os.close(1))  # fd 1 closed before Python starts: sys.stdout is None
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["wattlint: error: cannot write the output: standard output is closed"]


def test_a_closed_stdout_still_writes_a_report_file(tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "r.txt"
    code = ("import sys\nfrom wattlint.cli import main\n"
            f"sys.exit(main([{str(ONNX)!r}, '--gpu', 'a100', '--steps', '10', '-o', {str(out)!r}]))")
    res = subprocess.run([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, timeout=300,
                         preexec_fn=lambda: os.close(1))
    assert res.returncode == 0, res.stderr
    assert out.read_text(encoding="utf-8").startswith("wattlint estimate:")
