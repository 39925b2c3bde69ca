"""WL201 inside the memory model's error band: a peak above the usable memory by less than the band (measured peaks
0.95-1.15x the prediction, wattlint.memory.VERDICT_BAND) is a warning (the run may still fit); beyond it an error."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from _lint_claims import estimate, finding  # noqa: E402

GPT2 = Path(__file__).resolve().parents[1] / "examples" / "gpt2-small" / "config.json"
ARGS = ("--gpu", "t4", "--steps", "1000", "--seq-len", "1024", "--precision", "fp16", "--batch-size", "16")


def _ratio(doc) -> float:
    return doc["memory"]["peak_bytes_per_gpu"] / doc["memory"]["gpu_memory_bytes"]


def test_tight_overflow_is_a_warning(run_cli):
    # micro-batch 8: the peak is above the T4's usable 14.775 GiB (16 GiB x 0.985 x 15/16) by less than 1/0.95
    doc = estimate(run_cli, GPT2, *ARGS, "--grad-accum", "2")
    assert 1.0 < _ratio(doc) <= 1 / 0.95, _ratio(doc)
    assert doc["memory"]["verdict"] == "tight" and not doc["memory"]["fits"]
    f = finding(doc, "WL201")
    assert f is not None and f["severity"] == "warning", f
    assert "it may still fit" in f["message"] and "usable" in f["message"]


def test_overflow_beyond_the_band_is_an_error(run_cli):
    doc = estimate(run_cli, GPT2, *ARGS)  # micro-batch 16: far above the band
    assert _ratio(doc) > 1 / 0.95, _ratio(doc)
    assert doc["memory"]["verdict"] == "does_not_fit"
    f = finding(doc, "WL201")
    assert f["severity"] == "error" and "it may still fit" not in f["message"], f
