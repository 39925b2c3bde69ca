"""nn.LSTM traced as cuDNN runs it: autocast casts once at the op's entry, cuDNN's backward (weight gradients once
per layer), and one host launch per RNN call and phase. Expected counts are worked out by hand from the recurrence
(L layers, T steps) in each test."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import wattlint  # noqa: E402
from wattlint.energy import system  # noqa: E402
from wattlint.types import LIB_CALL, OpKind, Phase  # noqa: E402

L, T, B, IN, H = 2, 3, 2, 8, 16


class TwoLayerLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(IN, H, num_layers=L)

    def forward(self, x):
        return self.lstm(x)[0]


def _trace(precision):
    return wattlint.analyze(TwoLayerLSTM(), inputs=[f"x=float32[{T},{B},{IN}]"], precision=precision)


def _ops(recs, name):
    return [r for r in recs if r.op.split(".")[1] == name]


def _launches(records):
    """system.Launches over the micro-batch records, every op with work taking 1 s (views take none)."""
    n = system.Launches()
    for r in records:
        if r.phase is not Phase.OPTIMIZER:
            n.add(r, 1.0 if (r.flops or r.bytes) else 0.0)
    return n.n


def test_recurrence_structure_by_hand():
    g = _trace("fp32")
    fwd = [r for r in g.records if r.phase is Phase.FORWARD and r.module == "lstm"]
    bwd = [r for r in g.records if r.phase is Phase.BACKWARD and r.module == "lstm"]
    # forward per layer: 1 input-projection GEMM over T x B rows + T recurrent GEMMs; T fused cells
    assert len(_ops(fwd, "mm")) == L * (1 + T) == 8
    assert len(_ops(fwd, "_thnn_fused_lstm_cell")) == L * T == 6
    assert _ops(fwd, "mm")[0].flops == 2 * (T * B) * IN * 4 * H == 6144
    # backward per layer: T cell backwards; T - 1 GEMMs dgates_t W_hh accumulating into dy_{t-1} (addmm) + 1 for dh0;
    # dW_hh and dW_ih: one GEMM each over all T x B rows; dx: one GEMM, only for layer 2 (x needs no gradient);
    # the bias gradient: one reduction per layer. No per-step weight-gradient GEMMs, no gradient adds.
    assert len(_ops(bwd, "_thnn_fused_lstm_cell_backward_impl")) == L * T == 6
    assert len(_ops(bwd, "addmm")) == L * (T - 1) == 4
    mms = _ops(bwd, "mm")
    assert len(mms) == L * 3 + (L - 1) == 7
    assert sorted(r.flops for r in mms) == sorted(
        [2 * B * 4 * H * H] * L  # dh0
        + [2 * (T * B) * 4 * H * H] * L  # dW_hh
        + [2 * (T * B) * 4 * H * IN, 2 * (T * B) * 4 * H * H]  # dW_ih layer 1 (K = IN), layer 2 (K = H)
        + [2 * (T * B) * 4 * H * H])  # dx of layer 2 = dG W_ih (layer 2's input width is H)
    assert len(_ops(bwd, "sum")) == L
    assert not [r for r in bwd if r.kind is OpKind.ELEMENTWISE and r.flops]


def test_one_launch_per_rnn_call_and_phase_fp32():
    g = _trace("fp32")
    lstm = [r for r in g.records if r.module == "lstm" and (r.flops or r.bytes)]
    # one nn.LSTM call: every record with work of the module is inside it, except the two zero states (h0, c0) that
    # nn.LSTM.forward makes in Python before calling the op
    assert [r.op for r in lstm if not r.dim(LIB_CALL)] == ["aten.new_zeros.default"] * 2
    assert {r.dim(LIB_CALL) for r in lstm} == {0, 1}
    # micro-batch launches: forward = 2 zero states + the LSTM call + the loss sum; backward = ones_like (the loss
    # gradient) + the LSTM backward call -> 6 (each of the 8 GEMMs, 6 cells, ... as an eager op before)
    assert _launches(g.records) == 6
    assert _launches([r for r in g.records if r.dim(LIB_CALL)]) == 2  # one per phase


def test_bf16_casts_once_at_the_entry_and_runs_the_recurrence_in_bf16():
    g = _trace("bf16")
    fwd = [r for r in g.records if r.phase is Phase.FORWARD and r.module == "lstm"]
    bwd = [r for r in g.records if r.phase is Phase.BACKWARD and r.module == "lstm"]
    # forward casts: the input, h0, c0 (nn.LSTM makes them fp32, in the input's dtype) + 4 weights per layer
    # (w_ih, w_hh, b_ih, b_hh), all at the call's entry
    casts = _ops(fwd, "_to_copy")
    assert len(casts) == 3 + 4 * L == 11
    first_gemm = fwd.index(_ops(fwd, "mm")[0])
    assert all(fwd.index(c) < first_gemm or c.shapes[0] in {(4 * H, H), (4 * H,)} for c in casts)
    # ... and none between the per-step GEMMs and cells (layer 2's weights are cast when layer 2 starts)
    steps = [r for r in fwd if r.op.split(".")[1] in ("mm", "_thnn_fused_lstm_cell", "_to_copy")]
    layer1 = steps[steps.index(_ops(fwd, "mm")[0]) + 1: steps.index(_ops(fwd, "mm")[0]) + 1 + 2 * T]
    assert [r.op.split(".")[1] for r in layer1] == ["mm", "_thnn_fused_lstm_cell"] * T
    assert {r.dtype for r in fwd + bwd if r.kind in (OpKind.MATMUL, OpKind.RNN)} == {"bfloat16"}
    # backward: the weight gradients go back to fp32 once each (autocast's cast backward), nothing per step
    assert len(_ops(bwd, "_to_copy")) == 4 * L == 8
    assert not [r for r in bwd if r.kind is OpKind.ELEMENTWISE and r.flops]
    # launches: forward = 2 zero states + LSTM call + the loss sum = 4 (sum is on autocast's fp32_set_opt_dtype list:
    # it reads the bf16 output with dtype=float32, no cast of it); backward = ones_like + the gradient's cast to bf16
    # + the LSTM backward call + 8 weight-gradient casts = 11
    assert _launches(g.records) == 4 + 11 == 15


def test_two_calls_are_two_launches():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(IN, IN)

        def forward(self, x):
            return self.lstm(self.lstm(x)[0])[0]
    g = wattlint.analyze(Twice(), inputs=[f"x=float32[{T},{B},{IN}]"])
    assert {r.dim(LIB_CALL) for r in g.records if r.module == "lstm" and (r.flops or r.bytes)} == {0, 1, 2}
    # forward: 2 x (2 zero states + the call) + the loss sum; backward: ones_like + 2 calls (the engine's sum of the
    # two calls' weight gradients is not traced: autograd's input buffer adds them outside the dispatcher's view)
    assert _launches(g.records) == 2 * 3 + 1 + 1 + 2


def test_bf16_prior_step_is_not_launch_bound_at_lm_scale():
    # the H200 validation LSTM LM (2 x 1024, T = 256, B = 64, bf16): the per-step kernels are launched by cuDNN,
    # so the step has 2 RNN launches per phase-call instead of ~7,200 eager ones: no launch-gap phase
    from wattlint.calibrate import zoo

    model, _ = zoo.lstm_lm()
    g = wattlint.analyze(model, inputs=["ids=int64[64,256]"], precision="bf16")
    e = wattlint.estimate(g, gpu="h200-sxm-141gb", lint=False, precision="bf16", batch_size=64, steps=1)
    assert "idle_gaps" not in e.phases
    assert _launches(g.records) < 40
