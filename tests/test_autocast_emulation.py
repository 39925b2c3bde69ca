"""CUDA autocast emulation details the byte counts depend on (wattlint.frontends.torch).

Hand-derived: one LayerNorm(64) -> Linear(64, 32, bias) -> softmax, input float32 [8, 16, 64], traced at fp16.
Rows N = 8 * 16 = 128; Linear output N x 32 = 4096 elements; input / LayerNorm output N x 64 = 8192 elements.

* softmax is on autocast's "fp32_set_opt_dtype" list (aten/src/ATen/autocast_mode.cpp): it gets dtype=float32 and
  on a CUDA float16 input runs _softmax(half_to_float=True) (aten SoftMax.cpp): reads 4096 x 2 B = 8192 B, writes
  4096 x 4 B = 16384 B, with no copy of its input to fp32; its backward reads fp32 y and dy (2 x 4096 x 4 = 32768 B)
  and writes the fp16 gradient (4096 x 2 = 8192 B).
* sum is on the same list: the bias gradient (autograd's sum over the N rows of the fp16 output gradient) reads
  128 x 32 x 2 = 8192 B and writes 32 x 4 = 128 B in fp32; the gradient is not copied to fp32 first.
* autocast casts above autograd, so autograd saves the fp16 casts and backward does not cast again: no backward
  fp32 -> fp16 copy of the LayerNorm output (8192 elements) or of the weight (64 x 32).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from wattlint.frontends.torch import trace
from wattlint.types import Phase, TensorSpec


class _LnFcSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(64)
        self.fc = nn.Linear(64, 32)

    def forward(self, x):
        return self.fc(self.ln(x)).softmax(-1)


def _graph(precision="fp16"):
    return trace(_LnFcSoftmax(), (torch.empty(8, 16, 64, device="meta"),), precision=precision, optimizer="sgd",
                 micro_batch=8, inputs=(TensorSpec("x", "float32", (8, 16, 64)),))


def _ops(g, phase, op):
    return [r for r in g.records if r.phase is phase and r.op == f"aten.{op}"]


def test_fp16_softmax_reads_half_writes_float_without_a_cast():
    g = _graph()
    (sm,) = _ops(g, Phase.FORWARD, "_softmax.default")
    assert (sm.bytes_read, sm.bytes_written, sm.dtype) == (4096 * 2, 4096 * 4, "float32")
    # the only forward casts: bias (32), LayerNorm output (128 x 64) and weight (64 x 32), fp32 -> fp16
    casts = sorted(r.shapes[0] for r in _ops(g, Phase.FORWARD, "_to_copy.default"))
    assert casts == [(32,), (64, 32), (128, 64)]
    (smb,) = _ops(g, Phase.BACKWARD, "_softmax_backward_data.default")
    assert (smb.bytes_read, smb.bytes_written) == (2 * 4096 * 4, 4096 * 2)


def test_bias_gradient_sum_reads_the_fp16_gradient_in_place():
    g = _graph()
    (s,) = [r for r in _ops(g, Phase.BACKWARD, "sum.dim_IntList") if r.module == "fc"]
    assert (s.bytes_read, s.bytes_written, s.dtype) == (128 * 32 * 2, 32 * 4, "float32")


def test_backward_reuses_the_forward_casts():
    g = _graph()
    bwd = _ops(g, Phase.BACKWARD, "_to_copy.default")
    # left: the gradients of the forward casts, fp16 -> fp32 (LayerNorm output 128 x 64, weight 64 x 32)
    assert sorted((r.shapes[0], r.bytes_read, r.bytes_written) for r in bwd) == [
        ((64, 32), 64 * 32 * 2, 64 * 32 * 4), ((128, 64), 128 * 64 * 2, 128 * 64 * 4)]


def test_bf16_softmax_still_converts_its_input():
    # aten SoftMax.cpp takes the half_to_float path for Half only: a bfloat16 input is converted to fp32 first
    g = _graph("bf16")
    (sm,) = _ops(g, Phase.FORWARD, "_softmax.default")
    assert (sm.bytes_read, sm.bytes_written) == (4096 * 4, 4096 * 4)
    assert any(r.shapes[0] == (8, 16, 32) for r in _ops(g, Phase.FORWARD, "_to_copy.default"))
