"""Review of the torch frontend against the ONNX one (s49): (1) a plain language model returning logits [B, T, V]
from integer token ids [B, T] is trained with a token-level cross-entropy over the last dim (it got 'the sum of the
forward outputs': no log-softmax, no saved log-probabilities, no loss backward); (2) nn.EmbeddingBag's
aten._embedding_bag / _embedding_bag_backward are priced (they were unsupported, and the fallback read the whole
table in forward). Every expected figure below is derived by hand in the comments."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import wattlint
from wattlint.frontends import torch_ops as T
from wattlint.frontends.torch import trace
from wattlint.types import InputError, OpKind, Phase, Status


def _loss_note(g):
    return next(a for a in g.assumptions if a.startswith("loss:"))


def _recs(g, phase, op):
    return [(r.flops, r.bytes_read, r.bytes_written) for r in g.records if r.phase is phase and r.op == op]


class TinyLM(nn.Module):
    def __init__(self, vocab=1000, dim=16):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids):
        return self.head(self.emb(ids))


def test_plain_lm_logits_get_a_token_level_cross_entropy_by_hand():
    g = wattlint.analyze(TinyLM(), inputs=["ids=int64[4,32]"])
    assert _loss_note(g) == (
        "loss: token-level cross-entropy on the 1000-way logits over their last dim (labels of shape [4, 32], one "
        "per token of the integer input ids [4, 32], every position labelled: a language model's next-token loss)")
    # logits [4, 32, 1000] fp32 -> 128 rows x 1000 classes = 128,000 elements, 512,000 B
    # forward log_softmax (costs.softmax): 5 FLOPs / element, reads and writes the 512,000 B
    assert _recs(g, Phase.FORWARD, "aten._log_softmax.default") == [(5 * 128_000, 512_000, 512_000)]
    # nll_loss forward (costs.nll_loss): 1 FLOP / row; reads 128 picked fp32 log-probs + 128 int64 labels, writes 4
    assert _recs(g, Phase.FORWARD, "aten.nll_loss_forward.default") == [(128, 128 * 4 + 128 * 8, 4)]
    # backward: nll writes the dense [128, 1000] gradient (reads labels + the scalar dy); log_softmax's backward
    # reads y and dy (2 x 512,000), writes dx, 4 FLOPs / element
    assert _recs(g, Phase.BACKWARD, "aten.nll_loss_backward.default") == [(128, 128 * 8 + 4, 512_000)]
    assert _recs(g, Phase.BACKWARD, "aten._log_softmax_backward_data.default") == [(4 * 128_000, 1_024_000,
                                                                                     512_000)]
    assert not _recs(g, Phase.FORWARD, "aten.sum.default")  # not the 'sum of the outputs' any more
    assert (g.extra["loss_logits_elems"], g.extra["loss_logits_bytes"]) == (128_000, 4)
    # saved for backward: the embedding's output for the head's weight gradient (4 x 32 x 16 fp32 = 8,192), the
    # token ids for the embedding's backward (128 x 8 = 1,024), the log-probabilities (128 x 1000 x 4 = 512,000),
    # the labels (128 x 8 = 1,024) and nll's total_weight (4): the sum-of-outputs loss saved only the first two
    assert g.extra["activation_bytes"] == 8_192 + 1_024 + 512_000 + 1_024 + 4


class FloatSeq(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 5)

    def forward(self, x, mask):
        return self.fc(x) * mask.unsqueeze(-1)


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(x)


def test_other_outputs_keep_their_rules():
    # a [2, 6, 5] output whose leading dims are an integer input's shape: token-level, by the rule
    g = wattlint.analyze(FloatSeq(), inputs=["x=float32[2,6,8]", "mask=int64[2,6]"])
    assert "5-way logits over their last dim (labels of shape [2, 6], one per token of the integer input mask" \
        in _loss_note(g), _loss_note(g)
    # the same output with no integer input of that shape (a float mask): still the sum of the outputs
    g = wattlint.analyze(FloatSeq(), inputs=["x=float32[2,6,8]", "mask=float32[2,6]"])
    assert _loss_note(g).startswith("loss: sum of the forward outputs"), _loss_note(g)
    assert not _recs(g, Phase.FORWARD, "aten._log_softmax.default")
    # a single 2-D output: the cross-entropy it always had
    g = wattlint.analyze(Classifier(), inputs=["x=float32[4,8]"])
    assert _loss_note(g) == "loss: cross-entropy on the 5-way logits (labels of shape [4], every position labelled)"


class Bag(nn.Module):
    def __init__(self, mode="mean", sparse=False):
        super().__init__()
        self.bag = nn.EmbeddingBag(5000, 64, mode=mode, sparse=sparse)
        self.fc = nn.Linear(64, 2)

    def forward(self, idx, off, w=None):
        return self.fc(self.bag(idx, off, per_sample_weights=w))


def _bag(g, phase):
    out = [r for r in g.records if r.module == "bag" and r.phase is phase and r.status is not Status.IGNORED]
    assert all(r.status is Status.HANDLED and r.kind is OpKind.EMBEDDING for r in out), out
    return [(r.op, r.flops, r.bytes_read, r.bytes_written) for r in out]


# table 5,000 x 64 fp32 (1,280,000 B); 160 int64 indices in 8 bags (8 int64 offsets)
ROWS = 160 * 64 * 4          # 40,960 B: the indexed rows (the fallback read the whole table: 1,280,000 B)
IDX, OFF = 160 * 8, 8 * 8    # 1,280 and 64 B
OUT = 8 * 64 * 4             # 2,048 B: the [8, 64] bags
TABLE = 5000 * 64 * 4        # 1,280,000 B: the dense gradient table


def test_embedding_bag_mean_forward_and_dense_backward_by_hand():
    g = wattlint.analyze(Bag("mean"), inputs=["idx=int64[160]", "off=int64[8]"])
    # forward: reads indices + rows + offsets; writes the bags + offset2bag [160] int64 + bag_size [8] int64
    # (max_indices is [0] outside max mode); 1 add per gathered element + 1 divide per output element (mean)
    assert _bag(g, Phase.FORWARD) == [("aten._embedding_bag.default", 160 * 64 + 8 * 64, IDX + ROWS + OFF,
                                       OUT + IDX + OFF)]
    # backward as embedding_dense_backward over 160 indices (reads dy row + index + the accumulated row, writes the
    # zeroed table + the rows) + offset2bag (1,280) + bag_size (64) read; 1 add + 1 mean scale per element
    assert _bag(g, Phase.BACKWARD) == [("aten._embedding_bag_backward.default", 2 * 160 * 64,
                                        ROWS + IDX + ROWS + IDX + OFF, TABLE + ROWS)]


def test_embedding_bag_per_sample_weights_and_max_by_hand():
    w = torch.empty(160, requires_grad=True)
    g = trace(Bag("sum"), (torch.zeros(160, dtype=torch.long), torch.zeros(8, dtype=torch.long), w))
    # forward: + the 160 fp32 weights read (640 B) and 1 multiply per gathered element; sum mode: no divide
    assert _bag(g, Phase.FORWARD) == [("aten._embedding_bag.default", 2 * 160 * 64, IDX + ROWS + OFF + 640,
                                       OUT + IDX + OFF)]
    # the weights' gradient: one 64-wide dot product per index (2 x 160 x 64 FLOPs) of its table row (+ index) and
    # its bag's gradient row, + offset2bag; writes 160 fp32; the table's gradient: + offset2bag + the weights read,
    # 1 multiply per element
    assert sorted(_bag(g, Phase.BACKWARD)) == [
        ("aten._embedding_bag_backward.default", 2 * 160 * 64, ROWS + IDX + ROWS + IDX + 640, TABLE + ROWS),
        ("aten._embedding_bag_per_sample_weights_backward.default", 2 * 160 * 64, IDX + ROWS + ROWS + IDX, 640)]
    g = wattlint.analyze(Bag("max"), inputs=["idx=int64[160]", "off=int64[8]"])
    # forward: 1 compare per gathered element; also writes max_indices [8, 64] int64 (4,096 B)
    assert _bag(g, Phase.FORWARD) == [("aten._embedding_bag.default", 160 * 64, IDX + ROWS + OFF,
                                       OUT + IDX + OFF + 8 * 64 * 8)]
    # backward: each of the 512 output elements scattered through max_indices: reads dy (2,048) + its int64 index
    # (4,096) + the accumulated element (2,048), writes the zeroed table + the 512 elements
    assert _bag(g, Phase.BACKWARD) == [("aten._embedding_bag_backward.default", 512, 2048 + 4096 + 2048,
                                        TABLE + 2048)]


def test_embedding_bag_sparse_backward_cost_and_the_sparse_optimizer_step_is_stated():
    m = nn.EmbeddingBag(5000, 64, mode="mean", sparse=True).to("meta")
    idx, off = torch.empty(160, dtype=torch.long, device="meta"), torch.empty(8, dtype=torch.long, device="meta")
    out, o2b, bag_size, max_idx = torch.ops.aten._embedding_bag(m.weight.detach(), idx, off, False, 1, True, None)
    fn = torch.ops.aten._embedding_bag_backward.default
    args = (torch.empty(8, 64, device="meta"), idx, off, o2b, bag_size, max_idx, 5000, False, 1, True, None)
    grad = fn(*args)
    assert grad.layout == torch.sparse_coo  # what the meta device dispatches for sparse=True
    status, (c,) = T.cost_of(fn, args, {}, grad)
    # no table: the 160 dy rows gathered through offset2bag (1,280 + 40,960 read, 40,960 written as the values),
    # bag_size read (64), the indices copied into the sparse gradient (1,280 read, 1,280 written), 1 mean scale
    # per element
    assert status == "handled" and (c.flops, c.bytes_read, c.bytes_written) == (160 * 64, IDX + ROWS + OFF + IDX,
                                                                               ROWS + IDX)
    with pytest.raises(InputError, match="sparse=True.*cannot be traced"):
        wattlint.analyze(Bag("mean", sparse=True), inputs=["idx=int64[160]", "off=int64[8]"], optimizer="sgd")


def test_measured_step_of_a_plain_lm_runs_the_loss_the_trace_prices():
    """calibrate.validate measures a model's step with the frontend's loss: a plain LM's logits [B, T, V] over integer
    ids [B, T] get the token-level cross-entropy there too (it passed no inputs and measured the sum)."""
    import torch

    from wattlint.calibrate.validate import _loss

    logits = torch.randn(2, 4, 10, requires_grad=True)
    ids = torch.randint(0, 10, (2, 4))
    loss = _loss(logits, [ids])
    assert type(loss.grad_fn).__name__ == "NllLossBackward0"


class Encoder(nn.Module):
    """Token ids -> hidden states [B, T, 16] over a 1,000-token table: no logits (review s49: this got a 16-way
    token cross-entropy)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(1000, 16)
        self.mix = nn.Linear(16, 16)

    def forward(self, ids):
        return self.mix(self.emb(ids))


def test_hidden_states_over_token_ids_are_not_taken_for_logits():
    g = wattlint.analyze(Encoder(), inputs=["ids=int64[4,32]"])
    assert not _recs(g, Phase.FORWARD, "aten._log_softmax.default")  # 16 is no vocabulary: no embedding table of 16
    assert "cross-entropy" not in _loss_note(g)
    lm = wattlint.analyze(TinyLM(), inputs=["ids=int64[4,32]"])  # the 1000-way head over the 1000-token table
    assert _recs(lm, Phase.FORWARD, "aten._log_softmax.default")
