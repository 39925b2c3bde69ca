"""API misuse the review found: options estimate() accepted and then dropped."""

from pathlib import Path

import pytest

import wattlint
from wattlint.types import ConfigError

ONNX = Path(__file__).resolve().parents[1] / "examples" / "gpt2-tiny.onnx"


def test_compare_is_refused_with_the_function_that_does_it():
    with pytest.raises(ConfigError, match=r"estimate_many"):
        wattlint.estimate(str(ONNX), gpu="h100", compare="a100,l40s", steps=10)


def test_a_traced_graph_is_not_priced_at_another_sequence_length():
    g = wattlint.analyze(str(ONNX))  # traced at its exported [8, 256]
    assert g.seq_len == 256
    with pytest.raises(ConfigError, match=r"traced at sequence length 256"):
        wattlint.estimate(g, gpu="h100", tokens=1e8, seq_len=128)
    est = wattlint.estimate(g, gpu="h100", tokens=1e8, seq_len=256, lint=False)  # the same length is fine
    assert est.per_step.time_s > 0


def test_a_valid_onnx_model_with_an_empty_graph_is_named_as_such(tmp_path, run_cli):
    """Review: a valid ModelProto with zero nodes was called 'not an ONNX model (... truncated file?)'."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    model = helper.make_model(helper.make_graph([], "empty", [x], [x]))
    p = tmp_path / "empty.onnx"
    onnx.save(model, str(p))
    code, out, err = run_cli(str(p), "--steps", "1")
    assert code == 2 and err.count("\n") == 1
    assert "an ONNX model with an empty graph (no nodes)" in err
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07")  # parses as a ModelProto with no graph at all
    code, out, err = run_cli(str(tmp_path / "junk.onnx"), "--steps", "1")
    assert code == 2 and "not an ONNX model" in err


def test_compare_candidate_without_half_precision_under_megatron_is_named(run_cli):
    """Review: `--compare gtx750ti --precision bf16 --training-stack megatron` said '... needs --precision bf16 ...;
    got fp32' (the candidate's fallback), naming neither the GPU nor the way out."""
    code, out, err = run_cli(str(ONNX), "--gpu", "h100", "--compare", "gtx750ti", "--precision", "bf16",
                             "--training-stack", "megatron", "--steps", "10")
    assert code == 2 and err.count("\n") == 1
    assert "--compare gtx750ti-2gb: no half-precision rate for --training-stack megatron" in err
