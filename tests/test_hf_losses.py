"""The loss a Hugging Face head trains with: every ``*_logits`` output gets its cross-entropy (BERT pre-training's
masked-LM and next-sentence heads, a question-answering head's start and end positions), not the 'sum of the forward
outputs' with a gradient of ones; a CTC head says it is priced as a cross-entropy."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

import wattlint  # noqa: E402
from wattlint.types import Phase  # noqa: E402

BERT = dict(model_type="bert", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            vocab_size=1000, max_position_embeddings=64)


def _graph(tmp_path, arch, **cfg):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({**BERT, **cfg, "architectures": [arch]}))
    return wattlint.analyze(str(p), batch_size=2, seq_len=32)


def _log_softmaxes(graph):
    return [r for r in graph.records if r.phase is Phase.FORWARD and r.op == "aten._log_softmax.default"]


def test_question_answering_has_a_cross_entropy_over_positions_per_head(tmp_path):
    g = _graph(tmp_path, "BertForQuestionAnswering")
    note = next(a for a in g.assumptions if a.startswith("loss:"))
    # start and end logits are [batch 2, seq 32]: a 32-way cross-entropy over positions, one label per sequence
    assert note.startswith("loss: the sum of a cross-entropy on each of start_logits (32-way, labels of shape [2]), "
                           "end_logits (32-way, labels of shape [2])"), note
    ls = _log_softmaxes(g)
    assert len(ls) == 2 and all(r.bytes_written == 2 * 32 * 4 for r in ls)  # 2 x 32 fp32 log-probabilities each


def test_bert_pretraining_prices_the_masked_lm_cross_entropy_over_the_vocabulary(tmp_path):
    g = _graph(tmp_path, "BertForPreTraining")
    note = next(a for a in g.assumptions if a.startswith("loss:"))
    assert "prediction_logits (1000-way, labels of shape [2, 32])" in note, note
    assert "seq_relationship_logits (2-way, labels of shape [2])" in note, note
    # the larger head's logits are the loss's memory: 2 x 32 positions x 1000 words
    assert g.extra["loss_logits_elems"] == 2 * 32 * 1000
    sizes = sorted(r.bytes_written for r in _log_softmaxes(g))
    assert sizes == [2 * 2 * 4, 2 * 32 * 1000 * 4]


def test_a_ctc_head_says_it_is_priced_as_a_cross_entropy(tmp_path):
    cfg = dict(model_type="wav2vec2", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=128, vocab_size=32, conv_dim=[32, 32], conv_kernel=[10, 3], conv_stride=[5, 2],
               num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, architectures=["Wav2Vec2ForCTC"])
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    g = wattlint.analyze(str(p), inputs=["input_values=float32[2,16000]"])
    note = next(a for a in g.assumptions if a.startswith("loss:"))
    assert "32-way logits" in note and "Wav2Vec2ForCTC trains with CTC: priced as this cross-entropy" in note, note
