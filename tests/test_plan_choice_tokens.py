"""--tokens / a token-count dataset with --seq-len on a model whose token input is [batch, choices, seq] (a
multiple-choice head): a sample holds choices x seq-len tokens. The torch frontend's graph.seq_len is the tokens per
sample, --seq-len one sequence's length; the plan used --seq-len as the tokens per sample, so a 4-choice model got 4x
the steps (7,813 where 1,954 is right)."""

from __future__ import annotations

import json

import pytest

from wattlint.hardware import resolve_gpu
from wattlint.plan import build_plan
from wattlint.types import CostGraph, ModelInfo, TensorSpec

GPU = resolve_gpu("a100")[0]


def _graph(shape, seq_len, fmt="torch"):
    """A traced step's graph with one int64 token input of ``shape`` and the frontend's ``seq_len``."""
    return CostGraph(ModelInfo("m", fmt, 1000, 4000), (), inputs=(TensorSpec("input_ids", "int64", tuple(shape)),),
                     outputs=(TensorSpec("logits", "float32", (shape[0], shape[1])),), micro_batch=shape[0],
                     seq_len=seq_len)


@pytest.mark.parametrize("shape, seq_len, flag, steps, said", [
    # [2, 4, 64]: tokens per sample = 4 x 64 = 256 (the torch frontend's seq_len);
    # steps = ceil(1,000,000 / (2 x 256)) = ceil(1,953.125) = 1,954 (it gave ceil(1e6 / (2 x 64)) = 7,813)
    ((2, 4, 64), 256, 64, 1954, "steps 1,954 = ceil(tokens 1,000,000 / (batch 2 x choices 4 x seq-len 64)) "
                                "(input_ids [2, 4, 64]: [batch, choices, seq], tokens per sample = 4 x 64 = 256)"),
    # [2, 2, 3, 16]: 2 x 3 = 6 sequences of 16 tokens = 96 tokens per sample;
    # steps = ceil(1,000,000 / (2 x 96)) = ceil(5,208.33) = 5,209 (it gave ceil(1e6 / (2 x 16)) = 31,250)
    ((2, 2, 3, 16), 96, 16, 5209, "steps 5,209 = ceil(tokens 1,000,000 / (batch 2 x choices 6 x seq-len 16)) "
                                  "(input_ids [2, 2, 3, 16]: [batch, choices, seq], tokens per sample = 6 x 16 = 96)"),
])
def test_tokens_with_seq_len_count_every_choice(shape, seq_len, flag, steps, said):
    p = build_plan(_graph(shape, seq_len), gpu=GPU, tokens=1e6, seq_len=flag, batch_size=2)
    assert p.steps == steps and p.seq_len == seq_len, (p.steps, p.seq_len)
    assert said in p.assumptions, p.assumptions
    # an ONNX graph's seq_len is one sequence's length (not tokens per sample): --seq-len stays as it was,
    # ceil(1,000,000 / (2 x 64)) = ceil(7,812.5) = 7,813
    q = build_plan(_graph((2, 4, 64), 64, fmt="onnx"), gpu=GPU, tokens=1e6, seq_len=64, batch_size=2)
    assert q.steps == 7813 and q.seq_len == 64, (q.steps, q.seq_len)


def test_token_dataset_with_seq_len_counts_samples_of_every_choice():
    g = _graph((2, 4, 64), 256)
    p = build_plan(g, gpu=GPU, dataset="wikitext-2", seq_len=64, batch_size=2)
    # wikitext-2: 2,088,628 tokens / (4 choices x 64) = 8,158.7 -> 8,159 samples; ceil(8,159 / 2) = 4,080 steps
    # (it gave 2,088,628 / 64 -> 32,635 samples, 16,318 steps)
    assert (p.dataset_size, p.steps, p.seq_len) == (8159, 4080, 256), (p.dataset_size, p.steps, p.seq_len)
    assert any(a.startswith("dataset wikitext-2: 2,088,628 training tokens / (choices 4 x seq-len 64) = 8,159 "
                            "samples per epoch") for a in p.assumptions), p.assumptions
    # --steps 100 of batch 2 = 200 samples of the epoch's 8,159: 200 / 8,159 epochs (it gave 200 / 32,635)
    q = build_plan(g, gpu=GPU, dataset="wikitext-2", steps=100, seq_len=64, batch_size=2)
    assert q.epochs == pytest.approx(200 / 8159) and q.dataset_size == 8159, (q.epochs, q.dataset_size)


# ---- end to end: the Hugging Face frontend's default [batch, 4, seq] input, and a torch module's --input ---------

BERT_MC = dict(model_type="bert", architectures=["BertForMultipleChoice"], hidden_size=64, num_hidden_layers=2,
               num_attention_heads=4, intermediate_size=128, vocab_size=1000, max_position_embeddings=128)

TORCH_MC = '''
import torch
from torch import nn


class MultipleChoice(nn.Module):
    """[batch, choices, seq] token ids -> a score per choice."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.score = nn.Linear(16, 1)

    def forward(self, ids):
        b, c, s = ids.shape
        return self.score(self.emb(ids.reshape(b * c, s)).mean(1)).reshape(b, c)
'''


def _estimate(run_cli, *argv):
    code, out, err = run_cli(*argv, "--gpu", "a100", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    return doc["plan"], doc["assumptions"]


def test_cli_hf_multiple_choice_tokens_with_seq_len(run_cli, tmp_path):
    pytest.importorskip("transformers")
    src = tmp_path / "config.json"
    src.write_text(json.dumps(BERT_MC))
    plan, notes = _estimate(run_cli, src, "--batch-size", "2", "--seq-len", "64", "--tokens", "1e6")
    # input_ids [2, 4, 64] (4 choices assumed): 4 x 64 = 256 tokens per sample;
    # ceil(1,000,000 / (2 x 4 x 64)) = ceil(1,953.125) = 1,954 steps (it gave ceil(1e6 / (2 x 64)) = 7,813)
    assert (plan["steps"], plan["seq_len"]) == (1954, 256), plan
    assert any(n.startswith("steps 1,954 = ceil(tokens 1,000,000 / (batch 2 x choices 4 x seq-len 64))")
               for n in notes), notes


def test_cli_torch_module_choices_input_tokens_with_seq_len(run_cli, tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "mc_model.py").write_text(TORCH_MC)
    plan, _ = _estimate(run_cli, f"{tmp_path / 'mc_model.py'}:MultipleChoice", "--input", "ids=int64[2,4,16]",
                        "--seq-len", "16", "--tokens", "1e6")
    # ids [2, 4, 16]: 4 x 16 = 64 tokens per sample; ceil(1,000,000 / (2 x 64)) = ceil(7,812.5) = 7,813 steps
    # (it gave ceil(1e6 / (2 x 16)) = 31,250)
    assert (plan["steps"], plan["seq_len"]) == (7813, 64), plan
