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


def test_tight_run_keeps_the_other_rules_savings(run_cli):
    # micro-batch 8 is tight above the usable memory (WL201 a warning): the other rules' savings stand; the phrase
    # they add for a run that cannot start (NO_SAVING_UNFIT) is for does_not_fit only
    from wattlint.lint.engine import NO_SAVING_UNFIT

    doc = estimate(run_cli, GPT2, *ARGS, "--grad-accum", "2")
    assert doc["memory"]["verdict"] == "tight"
    others = [f for f in doc["findings"] if f["code"] != "WL201"]
    assert others and not any(NO_SAVING_UNFIT in f["message"] for f in others)
    assert any(NO_SAVING_UNFIT in f["message"] for f in estimate(run_cli, GPT2, *ARGS)["findings"]
               if f["code"] != "WL201")


def test_wl107_not_offered_when_the_run_without_it_is_tight(run_cli):
    # seq 512, micro-batch 14 with checkpointing fits; without it the peak is ~0.91 of the T4's usable memory: tight
    # (1.15 x peak > usable), so turning checkpointing off is not recommended
    args = ("--gpu", "t4", "--steps", "10", "--seq-len", "512", "--precision", "fp16", "--batch-size", "14")
    off = estimate(run_cli, GPT2, *args)
    assert off["memory"]["verdict"] == "tight" and off["memory"]["fits"]
    assert finding(estimate(run_cli, GPT2, *args, "--activation-checkpointing"), "WL107") is None
