"""Review s48b: a lint rule's claimed saving is what wattlint estimates when the user applies the recommended change
literally (WL102's padded vocabulary, WL103's --attention sdpa), or is stated as a lower bound (WL106)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from _lint_claims import estimate, finding, kwh  # noqa: E402


# ---- WL102: the padded vocabulary's claim is the padded config's estimate -------------------------------------

GPT2 = ("--gpu", "a100", "--batch-size", "8", "--seq-len", "1024", "--steps", "1000")


@pytest.fixture(scope="module")
def gpt2_configs(tmp_path_factory):
    from pathlib import Path

    src = json.loads((Path(__file__).resolve().parents[1] / "examples" / "gpt2-small" / "config.json").read_text())
    out = {}
    for vocab in (50257, 50264):
        d = tmp_path_factory.mktemp(f"gpt2v{vocab}")
        (d / "config.json").write_text(json.dumps({**src, "vocab_size": vocab}))
        out[vocab] = d / "config.json"
    return out


def test_wl102_claims_what_the_padded_vocabulary_saves(run_cli, gpt2_configs):
    pytest.importorskip("transformers")
    base = estimate(run_cli, gpt2_configs[50257], *GPT2, "--precision", "bf16")
    f = finding(base, "WL102")
    assert f is not None and "pad to 50264" in f["message"]
    padded = estimate(run_cli, gpt2_configs[50264], *GPT2, "--precision", "bf16")
    literal = kwh(base) - kwh(padded)
    assert literal > 0
    assert f["saving_kwh"] == pytest.approx(literal, rel=0.1)  # review: 0.595 Wh claimed, 0.887 Wh literal


# ---- WL103: eager attention's claim is the --attention sdpa re-run ----------------------------------------------

def test_wl103_claims_the_attention_sdpa_rerun(run_cli, gpt2_configs):
    pytest.importorskip("transformers")
    eager = estimate(run_cli, gpt2_configs[50257], *GPT2, "--precision", "fp32", "--attention", "eager")
    f = finding(eager, "WL103")
    assert f is not None and "--attention sdpa" in f["message"]
    sdpa = estimate(run_cli, gpt2_configs[50257], *GPT2, "--precision", "fp32", "--attention", "sdpa")
    assert f["saving_kwh"] == pytest.approx(kwh(eager) - kwh(sdpa), rel=1e-3)  # review: 7.20 vs 9.08 Wh


# ---- WL106: the pair's claim says it is a lower bound of the dense layer's -----------------------------------------

def test_wl106_claim_is_a_stated_lower_bound(run_cli, tmp_path, monkeypatch):
    (tmp_path / "lr.py").write_text(
        "import torch.nn as nn\n"
        "def pair():\n    return nn.Sequential(nn.Linear(1024, 768, bias=False), nn.Linear(768, 1024))\n"
        "def dense():\n    return nn.Sequential(nn.Linear(1024, 1024))\n")
    monkeypatch.chdir(tmp_path)
    argv = ("--input", "x=float32[4096,1024]", "--batch-size", "4096", "--steps", "1000", "--gpu", "a100",
            "--precision", "bf16")
    pair = estimate(run_cli, "lr.py:pair", *argv)
    dense = estimate(run_cli, "lr.py:dense", *argv)
    f = finding(pair, "WL106")
    assert f is not None and "lower bound" in f["message"]
    assert 0 < f["saving_kwh"] <= kwh(pair) - kwh(dense)
