"""wattlint.api.estimate_many takes a list of GPUs: a single string was read letter by letter ("unknown GPU 'a'" for
"a100"; walk of the Python API, stop 53)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wattlint.api import estimate_many
from wattlint.types import ConfigError

ONNX = str(Path(__file__).resolve().parents[1] / "examples" / "resnet50.onnx")


def test_estimate_many_refuses_one_gpu_string_naming_the_list_form():
    with pytest.raises(ConfigError, match=r"gpus='a100': a list of GPUs"):
        estimate_many(ONNX, "a100", steps=10)


def test_estimate_many_takes_a_list():
    ests = estimate_many(ONNX, ["a100"], steps=10, lint=False)
    assert [e.gpu.key for e in ests] == ["a100-sxm4-80gb"]
