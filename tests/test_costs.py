"""Hand-computed FLOPs and bytes: pure formulas and the same layers traced through the torch frontend."""

from __future__ import annotations

import pytest

from wattlint import costs as C
from wattlint.types import OpKind


# ---- pure formulas -----------------------------------------------------------------------------------------------

def test_conv_groups_stride_by_hand():
    # x [2, 8, 10, 10], w [16, 8/4, 3, 3], stride 2, pad 1, groups 4 -> out [2, 16, 5, 5]
    c = C.conv((2, 8, 10, 10), (16, 2, 3, 3), "float32", stride=2, padding=1, groups=4)
    macs = 2 * 16 * 5 * 5 * 2 * 9
    assert c.flops == 2 * macs == 28800
    assert c.bytes_read == (2 * 8 * 100 + 16 * 2 * 9) * 4 == 7552
    assert c.bytes_written == 2 * 16 * 25 * 4 == 3200
    assert dict(c.dims) == {"b": 4, "m": 50, "n": 4, "k": 18}


def test_conv_transposed_by_hand():
    # ConvTranspose2d(64, 32, 2, stride 2): x [2, 64, 8, 8] -> [2, 32, 16, 16]; each input pixel scatters 32x2x2
    c = C.conv((2, 64, 8, 8), (64, 32, 2, 2), "float32", stride=2, transposed=True)
    assert c.flops == 2 * (2 * 64 * 64 * 32 * 4)
    assert c.bytes_written == 2 * 32 * 16 * 16 * 4
    d = dict(c.dims)
    assert d["b"] * d["m"] * d["n"] * d["k"] * 2 == c.flops


def test_linear_by_hand():
    c = C.linear((4, 32), (16, 32), "float32", bias=True)
    assert c.flops == 2 * 4 * 16 * 32 + 4 * 16 == 4160
    assert c.bytes_read == (4 * 32 + 16 * 32 + 16) * 4 == 2624
    assert c.bytes_written == 4 * 16 * 4 == 256
    bwd = C.linear_backward((4, 32), (16, 32), "float32", bias=True)
    assert [b.flops for b in bwd] == [4096, 4096, 64]


def test_attention_by_hand():
    b, h, s, d = 2, 4, 16, 8
    full = C.attention(b, h, s, s, d, d, "float16")
    assert full.flops == 2 * b * h * s * s * (d + d) + C.ATTENTION_SCORE_FLOPS_FWD * b * h * s * s == 75776
    causal = C.attention(b, h, s, s, d, d, "float16", causal=True)
    pairs = s * (s + 1) // 2
    assert pairs == 136
    assert causal.flops == 2 * b * h * pairs * 16 + 5 * b * h * pairs == 40256
    # a fused kernel reads q, k, v and writes o (+ fp32 logsumexp): the s x s scores never touch memory
    assert full.bytes_read == 3 * b * h * s * d * 2
    assert full.bytes_written == b * h * s * d * 2 + b * h * s * 4
    bwd = C.attention_backward(b, h, s, s, d, d, "float16", causal=True)
    assert bwd.flops == 2 * b * h * pairs * (3 * d + 2 * d) + C.ATTENTION_SCORE_FLOPS_BWD * b * h * pairs


@pytest.mark.parametrize("sq,sk", [(1, 1), (5, 5), (4, 9), (9, 4), (128, 128)])
def test_causal_pairs_closed_form_matches_loop(sq, sk):
    assert C.causal_pairs(sq, sk) == sum(min(i + 1, sk) for i in range(sq))
    off = sk - sq
    assert C.causal_pairs(sq, sk, aligned="bottom_right") == sum(max(0, min(i + off + 1, sk)) for i in range(sq))


def test_lstm_cell_by_hand():
    b, i, hdim = 2, 32, 64
    cell = C.rnn_cell("lstm", b, i, hdim, "float32")
    assert cell.flops == 2 * b * (i + hdim) * 4 * hdim + 22 * b * hdim + 2 * b * 4 * hdim
    seq = C.rnn("lstm", 7, b, i, hdim, "float32")
    assert seq.flops == 7 * cell.flops


def test_elementwise_and_norm_bytes():
    relu = C.elementwise("relu", [(4, 10)], (4, 10), "float32")
    assert (relu.flops, relu.bytes_read, relu.bytes_written) == (40, 160, 160)
    add = C.elementwise("add", [(4, 10), (10,)], (4, 10), "float16")
    assert (add.flops, add.bytes_read, add.bytes_written) == (40, 100, 80)
    ln = C.norm((2, 3, 8), "float32", "layer")
    assert ln.flops == C.NORM_FLOPS_FWD["layer"] * 48
    assert ln.bytes_read == 48 * 4 + 2 * 8 * 4 and ln.bytes_written == 48 * 4 + 2 * 6 * 4


def test_matmul_broadcast_and_einsum():
    c = C.matmul((3, 4, 5), (5, 6), "float32")
    assert c.flops == 2 * 3 * 4 * 5 * 6
    e = C.einsum("bij,bjk->bik", [(3, 4, 5), (3, 5, 6)], "float32")
    assert e.flops == c.flops


def test_matmul_folds_a_broadcast_operand_as_torch_does():
    """x [8, 128, 768] @ W [768, 3072] (an ONNX export's Linear) runs as ONE [1024, 768] @ [768, 3072] GEMM, as
    torch.matmul folds it, not 8 GEMMs of 128 rows; its gradients are dX = dY [1024, 3072] @ W^T (m 1024, n 768,
    k 3072) and dW = X^T [768, 1024] @ dY (m 768, n 3072, k 1024). Bytes: each operand once (W is read once, not 8
    times)."""
    fwd = C.matmul((8, 128, 768), (768, 3072), "float32")
    assert dict(fwd.dims) == {"b": 1, "m": 1024, "n": 3072, "k": 768}
    assert fwd.bytes_read == (8 * 128 * 768 + 768 * 3072) * 4 and fwd.bytes_written == 1024 * 3072 * 4
    da, dw = C.matmul_backward((8, 128, 768), (768, 3072), "float32")
    assert dict(da.dims) == {"b": 1, "m": 1024, "n": 768, "k": 3072}
    assert dict(dw.dims) == {"b": 1, "m": 768, "n": 3072, "k": 1024}
    assert da.bytes_written == 8 * 128 * 768 * 4 and dw.bytes_written == 768 * 3072 * 4
    assert da.flops == dw.flops == fwd.flops == 2 * 1024 * 3072 * 768
    # a 2-D left operand against a batched right one folds the batch into the columns: 4 x [64, 16] -> [64, 64]
    left = C.matmul((32, 64), (4, 64, 16), "float32")
    assert dict(left.dims) == {"b": 1, "m": 64, "n": 32, "k": 64}
    # batched against batched (attention scores) stays a batched GEMM; its gradients swap the roles per batch
    qk = C.matmul((2, 12, 128, 64), (2, 12, 64, 128), "float32")
    assert dict(qk.dims) == {"b": 24, "m": 128, "n": 128, "k": 64}
    dq, dk = C.matmul_backward((2, 12, 128, 64), (2, 12, 64, 128), "float32")
    assert dict(dq.dims) == {"b": 24, "m": 128, "n": 64, "k": 128}
    assert dict(dk.dims) == {"b": 24, "m": 64, "n": 128, "k": 128}


def test_optimizer_step_bytes():
    c = C.optimizer_step("adamw", 1000)
    assert c.flops == C.OPTIMIZER_FLOPS["adamw"] * 1000
    assert c.bytes_read == 1000 * 4 * 4 and c.bytes_written == 1000 * 3 * 4
    assert c.kind is OpKind.OPTIMIZER
