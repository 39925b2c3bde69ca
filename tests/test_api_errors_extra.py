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
