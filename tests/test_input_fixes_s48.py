"""Input fixes: said_as on a message that opens with a bare flag (or --flag=value); counts in ASCII digits only
(--steps '٣' was read as 3); the parallel-layout refusal quoting '--gpus 1' the user never typed; an ONNX
multiple-choice export ([batch, choices, seq] token input) read its sequence from dim 1 (the choices) and counted no
tokens per sample. Expected values by hand."""

from __future__ import annotations

import json

import pytest

from wattlint.cli import main
from wattlint.hardware import resolve_gpu
from wattlint.options import said_as
from wattlint.plan import build_plan, resolve_dataset
from wattlint.types import ConfigError, CostGraph, ModelInfo, TensorSpec

GPU = resolve_gpu("a100-sxm4-80gb")[0]
CONFIGURED = "in [tool.wattlint] of pyproject.toml"


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---- 1. said_as: a bare leading flag, --flag=value, --flag value ---------------------------------------------------

def test_said_as_names_a_bare_leading_flag_where_it_was_given():
    given = {"tokens": ("tokens", CONFIGURED, 1e6)}
    assert (said_as("--tokens: the model's inputs have no sequence dimension", given)
            == "tokens = 1000000.0 from [tool.wattlint] of pyproject.toml: the model's inputs have no sequence "
               "dimension")
    assert (said_as("--tokens needs --seq-len (the model's sequence length is unknown)", given)
            == "tokens = 1000000.0 from [tool.wattlint] of pyproject.toml needs --seq-len (the model's sequence "
               "length is unknown)")
    assert said_as("--tokens", given) == "tokens = 1000000.0 from [tool.wattlint] of pyproject.toml"
    # a per-GPU price table as the file writes it
    prices = {"gpu_hour_price": ("gpu-hour-price", CONFIGURED, (("a100", 1.8),))}
    assert (said_as("--gpu-hour-price names no price for h100", prices)
            == "gpu-hour-price = {a100 = 1.8} from [tool.wattlint] of pyproject.toml names no price for h100")
    # a source that is not 'in ...' is kept as it is
    gpus = {"gpus": ("gpus", "(the GPUs the run record measured)", 2)}
    assert said_as("--gpus needs more", gpus) == "gpus = 2 (the GPUs the run record measured) needs more"


def test_said_as_reads_the_flag_with_its_value_first_and_keeps_what_is_not_the_source():
    given = {"steps": ("steps", "in the run record", 3000), "gpus": ("gpus", "in the run record", 2)}
    assert said_as("--steps=3000 is too many", given) == "steps = 3000 in the run record is too many"
    assert said_as("--steps 3,000: too many", given) == "steps = 3,000 in the run record: too many"
    # another value than the one given, advice, a flag not first: as they are
    assert said_as("--gpus 3: not divisible", given) == "--gpus 3: not divisible"
    assert said_as("--steps=7 x", given) == "--steps=7 x"
    assert said_as("pass --steps N", given) == "pass --steps N"
    assert said_as("x --steps: y", given) == "x --steps: y"
    assert said_as("--tokens: x", given) == "--tokens: x"  # not given elsewhere: the user typed it


# ---- 2. counts in ASCII digits ----------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--steps", "--epochs", "--tokens", "--gpus", "--batch-size"])
@pytest.mark.parametrize("value", ["\u0663", "\uff13", "1\u0663", "1e\u0663"])  # Arabic-Indic 3, fullwidth 3
def test_a_count_in_other_digits_is_refused_in_one_line(capsys, tmp_path, flag, value):
    code, out, err = _run(capsys, "estimate", "resnet18", flag, value)
    assert code == 2 and out == "", (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "ASCII digits" in lines[0] and "Traceback" not in err, err


def test_ascii_counts_still_read():
    from wattlint.options import OPTIONS

    steps = OPTIONS["steps"].check
    assert steps("3_000", text=True) == 3000 and steps("1e3", text=True) == 1000 and steps(" 42 ", text=True) == 42


@pytest.mark.parametrize("spec", ["\u0663", "\uff15\uff10", "5\uff10", "1e\u0663"])
def test_a_dataset_count_in_other_digits_is_refused(spec):
    with pytest.raises(ConfigError, match="ASCII digits"):
        resolve_dataset(spec)


@pytest.mark.parametrize("spec,n", [("50,000", 50000), ("50_000", 50000), ("1e6", 1000000), (" 7 ", 7)])
def test_a_dataset_count_in_ascii_digits_reads(spec, n):
    assert resolve_dataset(spec)[1] == n


# ---- 3. the parallel layout refusal: --gpus only where given -----------------------------------------------------

def _lm(batch=8, seq=16):
    return CostGraph(ModelInfo("m.onnx", "onnx", 1000, 4000), (), inputs=(TensorSpec("ids", "int64", (batch, seq)),),
                     outputs=(TensorSpec("y", "float32", (batch, seq, 100)),), micro_batch=batch, seq_len=seq)


def test_the_layout_refusal_says_gpus_is_the_default_when_not_given():
    with pytest.raises(ConfigError) as e:
        build_plan(_lm(), gpu=GPU, steps=10, pipeline_parallel=2)
    msg = str(e.value)
    assert "--gpus" not in msg.replace("no --gpus given", ""), msg
    assert "--tensor-parallel" not in msg.replace("no --tensor-parallel given", ""), msg
    assert msg.startswith("tensor-parallel 1 (default) x --pipeline-parallel 2 = 2 does not divide gpus 1 (the "
                          "default: no --gpus given)"), msg


def test_the_layout_refusal_names_the_flags_given():
    with pytest.raises(ConfigError) as e:
        build_plan(_lm(), gpu=GPU, steps=10, tensor_parallel=2, gpus=3)
    assert str(e.value).startswith("--tensor-parallel 2 x pipeline-parallel 1 (default) = 2 does not divide --gpus 3"), e
    with pytest.raises(ConfigError) as e:
        build_plan(_lm(), gpu=GPU, steps=10, expert_parallel=2)
    assert "(= gpus 1 (default) / (tp 1 x pp 1))" in str(e.value) and "--gpus" not in str(e.value), e


def test_the_layout_refusal_on_the_command_line(capsys):
    code, out, err = _run(capsys, "estimate", "resnet18", "--steps", "3", "--pipeline-parallel", "2")
    assert code == 2 and out == "", (code, out, err)
    assert "--gpus 1" not in err and "gpus 1 (the default: no --gpus given)" in err and len(err.splitlines()) == 1, err


# ---- 4. an ONNX multiple-choice export ----------------------------------------------------------------------------

def _token_model(path, dims):
    onnx = pytest.importorskip("onnx")
    np = pytest.importorskip("numpy")
    from onnx import TensorProto, helper, numpy_helper

    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, dims)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Gather", ["wte", "input_ids"], ["h"], name="emb"),
             helper.make_node("MatMul", ["h", "w"], ["y"], name="fc")]
    inits = [numpy_helper.from_array(np.ones((100, 8), np.float32), "wte"),
             numpy_helper.from_array(np.ones((8, 1), np.float32), "w")]
    g = helper.make_graph(nodes, "mc", [ids], [out], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_an_onnx_multiple_choice_export_counts_choices_x_seq_tokens(tmp_path):
    import wattlint

    mc = _token_model(tmp_path / "mc.onnx", [4, 3, 16])  # [batch, choices, seq]
    g = wattlint.analyze(str(mc))
    assert g.seq_len == 3 * 16 and g.micro_batch == 4
    assert any(a.startswith("tokens per sample: 3 x 16 = 48 (input_ids [4, 3, 16]: the sequence is its last dim, "
                            "16 tokens") for a in g.assumptions), g.assumptions
    # --seq-len is one sequence's length, the last dim: taken, not 'unused'
    g = wattlint.analyze(str(mc), seq_len=16)
    assert g.seq_len == 48
    # a [batch, seq] export is as it was
    assert wattlint.analyze(str(_token_model(tmp_path / "lm.onnx", [4, 16]))).seq_len == 16


def test_an_onnx_multiple_choice_export_takes_tokens_and_seq_len(tmp_path, capsys):
    mc = _token_model(tmp_path / "mc.onnx", [4, 3, 16])
    # 1,920,000 tokens / (batch 4 x 3 choices x 16) = 10,000 steps (it said '--tokens needs --seq-len')
    code, out, err = _run(capsys, "estimate", mc, "--tokens", "1.92e6", "--batch-size", "4", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    doc = doc[0] if isinstance(doc, list) else doc
    assert doc["plan"]["steps"] == 10_000 and doc["plan"]["seq_len"] == 48
    assert any("(batch 4 x choices 3 x seq-len 16)" in a for a in doc["assumptions"]), doc["assumptions"]
    code, out, err = _run(capsys, "estimate", mc, "--seq-len", "16", "--steps", "10", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    doc = doc[0] if isinstance(doc, list) else doc
    assert not any("no sequence dimension" in a for a in doc["assumptions"]), doc["assumptions"]
