"""A multiple-choice model ([batch, choices, seq] token inputs) with --seq-len: the plan counts choices x seq tokens per
sample (commit 78e7130); the frontend's note said --seq-len was not taken so ('not with --seq-len 128: the plan takes
that as the tokens per sample'), the schema described plan.seq_len as the sequence length (it is 4 x 128 = 512), and
wattlint.estimate(graph, seq_len=128) on a graph traced at 128 was refused as 'traced at sequence length 512'.
compare-run: a configured amount of work (tokens = 1e6 in [tool.wattlint]) that the model cannot take is named where
it was given, not as the '--tokens' the user never typed. Expected values by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_compare_api_review import CC_HEADER, CC_ROW  # a CodeCarbon log (it states no epochs)

import wattlint
from wattlint.cli import main
from wattlint.types import ConfigError

ROOT = Path(__file__).resolve().parents[1]

# BertForMultipleChoice from a transformers config: input_ids [batch, 4, seq] (4 choices assumed)
BERT_MC = dict(model_type="bert", architectures=["BertForMultipleChoice"], hidden_size=64, num_hidden_layers=2,
               num_attention_heads=4, intermediate_size=128, vocab_size=1000, max_position_embeddings=256)


@pytest.fixture
def bert_mc(tmp_path) -> Path:
    pytest.importorskip("transformers")
    src = tmp_path / "config.json"
    src.write_text(json.dumps(BERT_MC))
    return src


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---- 1. a multiple-choice model with --seq-len ----------------------------------------------------------------------

def test_the_tokens_per_sample_note_says_seq_len_is_one_sequence(bert_mc, capsys):
    code, out, err = _run(capsys, "estimate", bert_mc, "--gpu", "a100", "--batch-size", "2", "--seq-len", "128",
                          "--tokens", "1e6", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    # input_ids [2, 4, 128]: 4 x 128 = 512 tokens per sample; ceil(1,000,000 / (2 x 512)) = ceil(976.5625) = 977
    assert (doc["plan"]["steps"], doc["plan"]["seq_len"]) == (977, 512), doc["plan"]
    notes = doc["assumptions"]
    note = next(n for n in notes if n.startswith("tokens per sample: 4 x 128 = 512 "))
    # it said '(not with --seq-len 128: the plan takes that as the tokens per sample; give the length in --input
    # instead)' right above the plan's steps counted from 4 x 128
    assert "not with --seq-len" not in note and "give the length in --input" not in note, note
    assert note.endswith("--tokens counts steps by these, also with --seq-len 128: that is one sequence's length "
                         "(the last dim), not the tokens per sample"), note
    assert any(n.startswith("steps 977 = ceil(tokens 1,000,000 / (batch 2 x choices 4 x seq-len 128))")
               for n in notes), notes


def test_the_schema_describes_plan_seq_len_as_the_tokens_per_sample():
    schema = json.loads((ROOT / "src" / "wattlint" / "schemas" / "estimate.schema.json").read_text())
    said = schema["$defs"]["estimate"]["properties"]["plan"]["properties"]["seq_len"]["description"]
    # it said 'sequence length of a language model': a 4-choice model at --seq-len 128 reports 512
    assert said.startswith("tokens per sample of a language model: its sequence length, or choices x sequence "
                           "length for a multiple-choice model"), said


def test_estimate_on_a_multiple_choice_graph_takes_the_length_it_was_traced_at(bert_mc):
    graph = wattlint.analyze(str(bert_mc), seq_len=128, batch_size=2)
    assert graph.seq_len == 512 and [t.shape for t in graph.inputs] == [(2, 4, 128)]
    # one sequence's length, as the plan reads --seq-len (it was refused: 'traced at sequence length 512')
    est = wattlint.estimate(graph, gpu="a100", seq_len=128, tokens=1e6, lint=False)
    assert (est.plan.steps, est.plan.seq_len) == (977, 512)
    # the same as without seq_len=, and as the graph's own tokens per sample (accepted before too)
    for other in ({}, {"seq_len": 512}):
        again = wattlint.estimate(graph, gpu="a100", tokens=1e6, lint=False, **other)
        assert (again.plan.steps, again.plan.seq_len, again.total.energy_kwh) == (977, 512, est.total.energy_kwh)
    # another length still is a re-trace: refused, naming the length it was traced at
    with pytest.raises(ConfigError) as e:
        wattlint.estimate(graph, gpu="a100", seq_len=64, tokens=1e6, lint=False)
    assert str(e.value).startswith("seq_len=64: the graph was traced at sequence length 128 (4 choices x 128 = 512 "
                                   "tokens per sample); a traced graph is priced as traced"), str(e.value)


# ---- 2. compare-run: a configured amount of work the model cannot take ---------------------------------------------

CNN = ("import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), "
       "torch.nn.Flatten(), torch.nn.Linear(8 * 14 * 14, 10)), (torch.randn(4, 3, 16, 16),)\n")


def test_a_configured_tokens_on_a_cnn_is_named_where_it_was_given(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    (tmp_path / "emissions.csv").write_text(CC_HEADER + "\n" + CC_ROW + "\n")
    (tmp_path / "cnn.py").write_text(CNN)
    (tmp_path / "pyproject.toml").write_text("[tool.wattlint]\ntokens = 1e6\n")
    monkeypatch.chdir(tmp_path)
    argv = ["compare-run", "emissions.csv", "--model", "cnn.py:build", "--gpu", "a100-sxm4-80gb"]
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == "", (code, out, err)
    lines = err.strip().splitlines()
    assert lines[0] == ("wattlint: settings from [tool.wattlint] of pyproject.toml (the command line overrides them): "
                        "tokens = 1000000.0"), err
    # it said '--tokens: the model's inputs have no sequence dimension ...': a flag the user never typed
    assert lines[-1] == ("wattlint: error: --model cnn.py:build: tokens = 1000000.0 from [tool.wattlint] of "
                         "pyproject.toml: the model's inputs have no sequence dimension (input=float32[4, 3, 16, "
                         "16]), so tokens do not give its steps; use --steps or --epochs"), err
    assert "Traceback" not in err and len(lines) == 2, err
    # typed on the command line, the flag is what the user gave: named as typed
    code, out, err = _run(capsys, *argv, "--tokens", "1e6")
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1] == ("wattlint: error: --model cnn.py:build: --tokens: the model's inputs have "
                                            "no sequence dimension (input=float32[4, 3, 16, 16]), so tokens do not "
                                            "give its steps; use --steps or --epochs"), err
