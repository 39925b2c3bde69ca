"""Walk 48 (a new user's walk): a --compare mixing energy models says so in every format; an option of another
command is not silently taken as an abbreviation ('analyze --gpu a100' read as '--gpus'); compare-run's device note
only when the devices differ; a file that is not a wattlint baseline is never to be deleted; a fit worse than the
prior on held-out shapes warns."""

from __future__ import annotations

import glob
import json
import shutil
import types
from pathlib import Path

import jsonschema
import pytest
from _cli_errors import one_error_line

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "src/wattlint/schemas/estimate.schema.json").read_text())


def _conv_onnx(path: Path) -> Path:
    """A small conv net (two 3x3 convolutions, ReLU, global pooling, a classifier matmul) built with onnx.helper."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("w1", (32, 3, 3, 3)), ("w2", (64, 32, 3, 3)), ("fc", (64, 10)))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["y"])]
    g = helper.make_graph(nodes, "convnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def conv(tmp_path_factory) -> Path:
    return _conv_onnx(tmp_path_factory.mktemp("onnx") / "conv.onnx")


def _flat(text: str) -> str:
    return " ".join(text.split())


# ---- 1. --compare across energy models says so ----------------------------------------------------------------------

MIXED = ["--gpu", "h200", "--compare", "h200-nvl,h100", "--steps", "100", "--batch-size", "64", "--precision", "bf16"]


def test_a_comparison_across_energy_models_says_so_in_json(conv, run_cli):
    """h200 (the shipped measured calibration) beside h200-nvl and h100 (public-fit): the H200 NVL, the same chip
    power-capped, came out faster and starred with no word that the rows are priced by different models."""
    code, out, err = run_cli(conv, *MIXED, "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA)
    assert {"energy_models", "energy_model_note"} <= set(SCHEMA["$defs"]["comparison"]["properties"])  # documented
    assert doc["energy_models"] == {"h200-sxm-141gb": "measured", "h200-nvl-141gb": "public-fit",
                                    "h100-sxm5-80gb": "public-fit"}
    assert [e["hardware"]["calibration"] for e in doc["estimates"]] == ["measured", "public-fit", "public-fit"]
    note = doc["energy_model_note"]
    assert "measured for h200-sxm-141gb" in note and "public-fit for h200-nvl-141gb, h100-sxm5-80gb" in note
    assert "partly reflect the models, not the hardware" in note and "calibrated" in note


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_a_comparison_across_energy_models_says_so_in_every_format(conv, run_cli, fmt):
    code, out, err = run_cli(conv, *MIXED, "--format", fmt)
    assert code == 0, err
    flat = _flat(out)
    assert "Note:" in flat
    assert "measured for h200-sxm-141gb" in flat and "public-fit for h200-nvl-141gb, h100-sxm5-80gb" in flat
    assert "partly reflect the models, not the hardware" in flat


def test_a_comparison_under_one_energy_model_has_no_note(conv, run_cli):
    code, out, err = run_cli(conv, "--gpu", "h100", "--compare", "a100", "--steps", "10", "--batch-size", "64",
                             "--precision", "bf16", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA)
    assert set(doc["energy_models"].values()) == {"public-fit"}
    assert "energy_model_note" not in doc
    code, out, err = run_cli(conv, "--gpu", "h100", "--compare", "a100", "--steps", "10", "--batch-size", "64",
                             "--precision", "bf16")
    assert code == 0 and "different energy models" not in _flat(out)


# ---- 2. an option of another command is not an abbreviation -------------------------------------------------------

@pytest.mark.parametrize("value", ["a100", "8"])
def test_analyze_refuses_gpu_instead_of_reading_it_as_gpus(conv, run_cli, value):
    """'analyze m.onnx --gpu a100' said "argument --gpus: 'a100': expected a number"; '--gpu 8' was taken as
    '--gpus 8' without a word."""
    for argv in (["analyze", conv, "--gpu", value], ["analyze", conv, f"--gpu={value}"]):
        code, out, err = run_cli(*argv)
        line = one_error_line(err)
        assert code == 2 and out == ""
        assert "takes no --gpu" in line and "FLOPs and bytes" in line and "wattlint MODEL --gpu" in line, line


@pytest.mark.parametrize("argv, name, full", [
    (["fit", "runs", "--model", "x"], "--model", "--model-hash"),
    # the sub-command's own options (review: 'validate compare --window' was told to write --window-scale, which
    # only 'validate measure' takes)
    (["validate", "measure", "--predictions", "p.json", "--window", "2"], "--window", "--window-scale"),
])
def test_another_commands_option_is_not_taken_as_an_abbreviation(run_cli, tmp_path, monkeypatch, argv, name, full):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(*argv)
    line = one_error_line(err)
    assert code == 2 and f"{name} is an option of" in line and f"write {full} in full" in line, line


def test_estimate_out_still_means_output(conv, run_cli, tmp_path):
    # '--out' is fit's option too, but with the same meaning: it keeps abbreviating --output (_SAME_MEANING)
    code, out, err = run_cli(conv, "--gpu", "a100", "--steps", "2", "--batch-size", "2", "--out", tmp_path / "r.json")
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["plan"]["batch_size"] == 2


def test_other_unique_prefixes_still_abbreviate(conv, run_cli, tmp_path):
    code, out, err = run_cli(conv, "--gpu", "a100", "--steps", "2", "--batch", "2", "--output", tmp_path / "r.json")
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["plan"]["batch_size"] == 2
    code, out, err = run_cli("analyze", conv, "--gpus", "1", "--batch-size", "2", "--format", "json")
    assert code == 0, err


# ---- 3. compare-run: the device note only when the devices differ -------------------------------------------------

CPU_RECORD = sorted(glob.glob(str(ROOT / "benchmarks/results/track_cpu_runs/*-mlp-mnist-b128.jsonl")))[-1]
MLP = ["--model", "wattlint.calibrate.zoo:mlp_mnist", "--input", "x=float32[128,784]"]


def _record(tmp_path: Path, **device) -> Path:
    lines = Path(CPU_RECORD).read_text().splitlines()
    head = json.loads(lines[0])
    head["device"].update(device)
    out = tmp_path / "run.jsonl"
    out.write_text("\n".join([json.dumps(head)] + lines[1:]) + "\n")
    return out


def test_a_cpu_record_re_estimated_with_a_cpu_calibration_is_not_called_two_devices(run_cli, tmp_path):
    """A CPU run tracked without cpu_calibration= (device 'cpu', no key) re-estimated with --cpu-calibration
    cpu-amd-epyc: 'the error compares two devices', though cpu-amd-epyc is a CPU calibration."""
    rec = _record(tmp_path, gpu_key=None)
    code, out, err = run_cli("compare-run", rec, *MLP, "--cpu-calibration", ROOT / "calibration/runs/cpu-amd-epyc")
    assert code == 0, err
    assert "two devices" not in out
    assert "does not name its CPU" in _flat(out) and "cpu-amd-epyc" in out
    code, out, err = run_cli("compare-run", rec, *MLP, "--cpu-calibration", ROOT / "calibration/runs/cpu-amd-epyc",
                             "--format", "json")
    assert code == 0, err
    assert "two devices" not in json.loads(out)["reestimate"].get("note", "")


def test_a_cpu_record_estimated_on_a_gpu_is_two_devices_whatever_its_key(run_cli, tmp_path):
    """gpu= on a machine without CUDA: the record's key is the estimate's GPU, the run measured the CPU."""
    rec = _record(tmp_path, gpu_key="a100-sxm4-80gb")
    code, out, err = run_cli("compare-run", rec, *MLP, "--gpu", "a100")
    assert code == 0, err
    assert "note: the run was measured on cpu, the re-estimate is for a100-sxm4-80gb" in out


# ---- 4. a file that is not a wattlint baseline is never to be deleted ----------------------------------------------

def _project(tmp_path: Path, baseline: str) -> Path:
    _conv_onnx(tmp_path / "m.onnx")
    (tmp_path / "pyproject.toml").write_text(f'[tool.wattlint]\nbaseline = "{baseline}"\ngpu = "a100"\n'
                                             '[[tool.wattlint.models]]\nname = "m"\nsource = "m.onnx"\n'
                                             'batch-size = 8\nsteps = 10\n')
    return tmp_path


@pytest.mark.parametrize("content", ["root:x:0:0:root:/root:/bin/bash\n", "{not json", b"\xff\xfe\x00binary"])
def test_a_file_that_is_no_baseline_is_not_to_be_deleted(run_cli, tmp_path, monkeypatch, content):
    other = tmp_path / "passwd"
    (other.write_bytes if isinstance(content, bytes) else other.write_text)(content)
    monkeypatch.chdir(_project(tmp_path, str(other)))
    for argv in (["check"], ["check", "--update-baseline"]):
        code, out, err = run_cli(*argv)
        line = one_error_line(err)
        assert code == 2 and "delete" not in line, line
        assert "not a wattlint baseline" in line and "point 'baseline' at another path" in line, line
    assert other.read_bytes() == (content if isinstance(content, bytes) else content.encode())


def test_valid_json_without_the_schema_names_another_path(tmp_path):
    from wattlint.lint.baseline import load_baseline
    from wattlint.types import ConfigError

    f = tmp_path / "package.json"
    f.write_text('{"name": "x"}')
    with pytest.raises(ConfigError) as e:
        load_baseline(f)
    assert "not a wattlint baseline" in str(e.value) and "another path" in str(e.value)
    assert "delete" not in str(e.value)


def test_a_damaged_baseline_keeps_the_delete_advice(tmp_path):
    from wattlint.lint.baseline import load_baseline
    from wattlint.types import ConfigError

    f = tmp_path / "wattlint-baseline.json"
    f.write_text('{"schema": "wattlint.baseline/1", "models": {"m": {"energy_kwh": 1.0,')  # cut short
    with pytest.raises(ConfigError, match="not valid JSON .*fix it or delete it"):
        load_baseline(f)
    f.write_text('{"schema": "wattlint.baseline/1", "models": []}')
    with pytest.raises(ConfigError, match="fix it or delete it"):
        load_baseline(f)


# ---- 5. a fit worse than the prior on held-out shapes warns --------------------------------------------------------

def _card(mape: float, wape: float) -> dict:
    cv = {"folds": 5, "samples": 10, "time_mape": mape, "prior_time_mape": 0.473, "time_median_ape": 0.19,
          "time_wape": wape, "prior_time_wape": 0.355, "power_fraction_mae": 0.08}
    return {"training": {"samples": 10, "rows": 12}, "gpu": {"key": "h200-sxm-141gb"},
            "cv": {"leave_shape_out": cv}, "residuals": {"time": {"p5": -0.8, "p95": 0.8}}, "data": {}}


@pytest.mark.parametrize("mape, wape, warns", [(0.497, 0.245, True), (0.40, 0.40, True), (0.40, 0.30, False)])
def test_fit_warns_when_its_held_out_error_is_worse_than_the_priors(run_cli, tmp_path, monkeypatch, mape, wape,
                                                                     warns):
    import wattlint.calibrate.fitting as fitting

    monkeypatch.setattr(fitting, "fit_runs", lambda *a, **k: types.SimpleNamespace(
        card=_card(mape, wape), path=tmp_path / "out", previous=None))
    (tmp_path / "runs").mkdir()
    code, out, err = run_cli("fit", tmp_path / "runs", "--out", tmp_path / "out")
    assert code == 0
    warning = [line for line in err.splitlines() if line.startswith("wattlint: warning:") and "prior" in line]
    if not warns:
        assert warning == [], err
        return
    assert len(warning) == 1, err
    assert (f"time MAPE {mape * 100:.1f} % vs prior 47.3 %, time-weighted {wape * 100:.1f} % vs prior 35.5 %"
            in warning[0])
    assert "estimates for h200-sxm-141gb use this measured model whenever it sits in a models folder" in warning[0]


@pytest.mark.slow
def test_fit_of_the_h200_runs_warns_with_its_figures(run_cli, tmp_path):
    """The shipped H200 op samples: whole shapes held out, time MAPE 49.7 % vs the prior's 47.3 %."""
    pytest.importorskip("lightgbm")
    runs = tmp_path / "runs"
    runs.mkdir()
    for f in glob.glob(str(ROOT / "calibration/runs/h200-sxm-141gb/*-default-*")):
        shutil.copy(f, runs)
    code, out, err = run_cli("fit", runs, "--out", tmp_path / "h200-sxm-141gb")
    assert code == 0, err
    line = next(line for line in err.splitlines() if "worse than the prior" in line)
    assert "time MAPE 49.7 % vs prior 47.3 %" in line and "h200-sxm-141gb use this measured model whenever it sits in a models folder" in line
    assert sorted(p.name for p in runs.iterdir()) == sorted(Path(f).name for f in glob.glob(
        str(ROOT / "calibration/runs/h200-sxm-141gb/*-default-*")))  # fit writes nothing into the runs folder


def test_energy_model_note_ranks_public_fit_before_transferred():
    """The note named 'transferred ranks first in wattlint's order of preference (measured > public-fit >
    transferred > prior)' for a transferred + public-fit comparison (review 2026-12-07): public-fit ranks first."""
    from types import SimpleNamespace

    from wattlint.report.json_out import energy_model_mix_note

    ests = [SimpleNamespace(calibration="transferred", gpu=SimpleNamespace(key="l40s-48gb")),
            SimpleNamespace(calibration="public-fit", gpu=SimpleNamespace(key="h100-sxm5-80gb"))]
    note = energy_model_mix_note(ests)
    assert note.index("public-fit for h100-sxm5-80gb") < note.index("transferred for l40s-48gb"), note
    assert "public-fit ranks first in wattlint's order of preference" in note, note


def test_validate_compare_window_is_not_advised_a_measure_option(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("validate", "compare", "--measurements", "m.json", "--window", "2")
    assert code == 2 and "--window-scale" not in err and "unrecognized arguments: --window 2" in err, err


def test_moe_mfu_says_dropped_tokens_are_counted_below_capacity_factor_one(tmp_path):
    """At --capacity-factor 0.5 up to half of the routed tokens are dropped, yet 6 N_active counts their experts:
    MFU read 23.9 % where the useful work was ~16.9 % without a word (review 2026-12-07); the convention says so."""
    pytest.importorskip("transformers")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(dict(model_type="mixtral", architectures=["MixtralForCausalLM"], hidden_size=64,
                                   intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=4, vocab_size=100, num_local_experts=4, num_experts_per_tok=2,
                                   max_position_embeddings=128)))
    import wattlint

    conv = {cf: wattlint.estimate(str(cfg), gpu="h100", steps=1, batch_size=2, seq_len=32, lint=False,
                                  capacity_factor=cf).utilization.convention for cf in (1.0, 0.5)}
    assert "capacity factor 0.5 < 1: up to 50% of the routed tokens are dropped" in conv[0.5]
    assert "capacity factor" not in conv[1.0]


def test_moe_config_routing_to_more_experts_than_it_has_is_refused(run_cli, tmp_path):
    pytest.importorskip("transformers")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(dict(model_type="mixtral", architectures=["MixtralForCausalLM"], hidden_size=64,
                                   intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                                   num_key_value_heads=4, vocab_size=100, num_local_experts=4, num_experts_per_tok=6)))
    code, out, err = run_cli(str(cfg), "--gpu", "h100", "--steps", "1", "--seq-len", "16", "--batch-size", "1")
    line = one_error_line(err)
    assert code == 2 and "num_experts_per_tok = 6 experts but has num_local_experts = 4" in line, line


@pytest.mark.parametrize("name", ["rtx6000", "RTX 6000", "NVIDIA RTX 6000"])
def test_rtx6000_names_both_cards(name):
    """'rtx6000' meant the 2018 Turing card silently; since the RTX 6000 Ada was added the name is refused naming
    both (review 2026-12-07: the did-you-mean list offered two unrelated cards and not the old one)."""
    from wattlint.hardware import resolve_gpu
    from wattlint.types import ConfigError

    with pytest.raises(ConfigError) as e:
        resolve_gpu(name)
    assert "quadro-rtx6000-24gb (Quadro RTX 6000, Turing, 2018) or rtx6000-ada-48gb" in str(e.value)
    assert resolve_gpu("Quadro RTX 6000")[0].key == "quadro-rtx6000-24gb"
    assert resolve_gpu("NVIDIA RTX 6000 Ada Generation")[0].key == "rtx6000-ada-48gb"


def test_a10g_dense_math_is_not_priced_at_its_provider_cap():
    """The A10G's 300 W is AWS's NVML cap, not a rating (a public burn-in peaked at 244 W): its core power follows
    the GA10x reference (the A40: 225 W / (84 SMs x 1.74 GHz)) x 80 SMs x 1.71 GHz = 210.6 W over idle, not the
    cap's 225 W (review 2026-12-07: an 8192^3 fp16 GEMM was priced at 299.9 W)."""
    from wattlint.energy import prior
    from wattlint.hardware import resolve_gpu

    g = resolve_gpu("a10g")[0]
    assert prior.core_power_ref(g) == pytest.approx(225 / (84 * 1.74) * 80 * 1.71, rel=1e-3)


def test_generation_top_k_is_not_read_as_routing():
    """transformers 4.x sets a generation default top_k = 50 on every config: a Switch config (num_experts 8, no
    num_experts_per_tok) must not be refused as routing to 50 experts (review 2026-12-07)."""
    from types import SimpleNamespace

    from wattlint.frontends.hf import _check_routing
    from wattlint.types import InputError

    _check_routing(SimpleNamespace(top_k=50, num_experts=8))  # no error
    with pytest.raises(InputError):
        _check_routing(SimpleNamespace(top_k=50, num_experts=8, num_experts_per_tok=9))
