"""WL202 (gpu-underfilled): the micro-batch it names reaches the waves it says, counted on the GEMMs as they run at
that micro-batch; the batch-carrying dim of each backward GEMM is read from its module's forward rows."""

import pytest

from wattlint.lint import testing
from wattlint.lint.engine import run_rules
from wattlint.lint.registry import all_rules
from wattlint.lint.rules.hardware import _gemm_waves, batch_dims, scale_batch
from wattlint.types import CostGraph, ModelInfo


def _graph(records, micro_batch=8):
    return CostGraph(model=ModelInfo(source="t", format="torch", params=1, param_bytes=4), records=tuple(records),
                     micro_batch=micro_batch)


def _wl202(ops, **kw):
    g, e = testing.scenario(ops, **kw)
    out = run_rules(e, None, None, rules=[all_rules()["WL202"]], reestimator=testing.simple_estimate,
                    gpus=testing.gpus_list)
    return out


def test_backward_gemms_scale_their_rows_not_their_features():
    # Linear 1024 -> 4096 on 64 rows: forward m 64 n 4096 k 1024; dX = dY @ W: m 64 (rows) n 1024 k 4096;
    # dW = dY^T @ X: m 4096 n 1024 k 64 (rows). At 4x the micro-batch the rows become 256 in each, and nothing
    # else moves. (The old guess 'm < k means k is the batch' scaled dX's k to 16,384 and dW's m to 16,384.)
    fwd, dx, dw = testing.gemm_records(64, 4096, 1024, module="fc")
    g = _graph([fwd, dx, dw])
    assert batch_dims(g) == ["m", "m", "k"]
    big = scale_batch(g, 4).records
    assert dict(big[0].dims) == {"b": 1, "m": 256, "n": 4096, "k": 1024}
    assert dict(big[1].dims) == {"b": 1, "m": 256, "n": 1024, "k": 4096}
    assert dict(big[2].dims) == {"b": 1, "m": 4096, "n": 1024, "k": 256}


def test_weight_gradients_are_not_counted_as_underfilled():
    # forward and dX: 16,384 rows x 128 columns = 128 x 1 tiles of 128 x 128 -> 128 / 108 SMs = 1.185 waves each;
    # dW (128 x 128 output, 1 tile) deepens with the batch and is split-K'd: not counted. With equal energies the
    # weighted waves are 128 / 108 (counting dW: (2 x 128 + 1) / 3 / 108 = 0.79, under one wave).
    recs = testing.gemm_records(16384, 128, 128, module="fc")
    g_e, c_e, waves = _gemm_waves(_graph(recs), [1.0, 1.0, 1.0], 108)
    assert (g_e, c_e) == (3.0, 2.0)
    assert waves == pytest.approx(128 / 108)


def test_names_the_smallest_micro_batch_that_reaches_one_wave():
    # 40 rows x 3,456 columns on an A100 (108 SMs): ceil(40/128) x 27 = 27 tiles = 0.25 waves. Rows x2 -> 80:
    # still 27 tiles; x4 -> 160: 54 (0.5); x8 -> 320: 81 (0.75); x16 -> 640: 5 x 27 = 135 tiles = 1.25 waves.
    # So 16 x the micro-batch of 8 = 128 (the energy-weighted average's 2^ceil(log2(1 / 0.25)) = 4x reached 0.5).
    out = _wl202([{"op": "linear", "m": 40, "n": 3456, "k": 65536, "backward": False}], params=1000)
    assert len(out) == 1
    msg = out[0].message
    assert "0.25 waves" in msg and "raise the micro-batch to 128 (1.25 waves)" in msg, msg
    assert "--batch-size 128 (same samples, 16x fewer steps" in msg, msg


def test_gradient_accumulation_gives_way_before_the_global_batch_grows():
    # the same GEMM with 16 micro-batches of 8 per step (global batch 128): 16x the micro-batch keeps the global
    # batch in one micro-batch per step, the same training, no learning-rate retune
    out = _wl202([{"op": "linear", "m": 40, "n": 3456, "k": 65536, "backward": False}], params=1000, grad_accum=16)
    assert len(out) == 1
    msg = out[0].message
    assert "--batch-size 128 --grad-accum 1 (the global batch of 128 in 1 micro-batch(es) per step" in msg, msg
    assert "fewer steps" not in msg


def test_says_so_when_no_larger_micro_batch_adds_tiles():
    # a batched GEMM whose batch dim is tiny but whose tiles come from m x n fixed by the weights cannot be
    # filled by the batch: here the GEMM's rows are the batch, 1 row -> 1 tile x 1 = 1 tile; 16x gives 16 rows,
    # still one 128-row tile: 1 / 108 waves at every multiplier
    out = _wl202([{"op": "linear", "m": 1, "n": 128, "k": 1048576, "backward": False}], params=1000)
    assert len(out) == 1
    msg = out[0].message
    assert "adds no thread blocks" in msg and "raise the micro-batch" not in msg, msg


def test_weight_gradient_with_rows_equal_to_features_is_told_apart_by_order():
    # 768 rows through a 768 -> 768 Linear: dX (m 768 n 768 k 768) and dW (m 768 n 768 k 768) have the same dims;
    # autograd runs dX first, so the first is the rows-carrying one and the second the weight gradient (review s49:
    # both were counted as dX, and dW's features were scaled)
    fwd, dx, dw = testing.gemm_records(768, 768, 768, module="fc")
    assert batch_dims(_graph([fwd, dx, dw])) == ["m", "m", "k"]


def test_convolution_weight_gradients_are_not_counted():
    from wattlint.types import OpRecord, OpKind, Phase

    dims = (("b", 1), ("k", 576), ("m", 3136), ("n", 64))
    recs = [OpRecord(op="aten.convolution.default", kind=OpKind.CONV, module="c", phase=Phase.FORWARD,
                     dtype="float32", dims=dims),
            OpRecord(op="aten.convolution_backward.default", kind=OpKind.CONV, module="c", phase=Phase.BACKWARD,
                     dtype="float32", dims=tuple(sorted(dims + (("grad", 1),)))),
            OpRecord(op="aten.convolution_backward.default", kind=OpKind.CONV, module="c", phase=Phase.BACKWARD,
                     dtype="float32", dims=tuple(sorted(dims + (("grad", 2),))))]
    # forward and input gradient: ceil(3136 / 128) x ceil(64 / 128) = 25 tiles each on 108 SMs; the weight gradient
    # (grad 2) is left out of the count
    g_e, c_e, waves = _gemm_waves(_graph(recs), [1.0, 1.0, 1.0], 108)
    assert (g_e, c_e) == (3.0, 2.0) and waves == pytest.approx(25 / 108)


def test_literal_advice_keeps_the_samples_and_names_the_flags_it_changed(run_cli):
    """Review s49: with --steps the re-run kept the steps at k x the batch (twice the samples: 'would not lower the
    energy'), and the same-batch advice named a flag that conflicted with the user's. Oracle: the command it names."""
    import json

    args = ["examples/torch_models.py:tiny_gpt", "--input", "x=int64[2,256]", "--gpu", "a100", "--format", "json"]
    code, out, err = run_cli(*args, "--steps", "1000")
    assert code == 0, err
    base = json.loads(out)
    f = next(x for x in base["findings"] if x["code"] == "WL202")
    assert "raise the micro-batch to 4" in f["message"] and "--batch-size 4 --steps 500" in f["message"], f["message"]
    code, out, err = run_cli(*args, "--batch-size", "4", "--steps", "500")
    assert code == 0, err
    assert f["saving_kwh"] == pytest.approx(base["total"]["energy_kwh"] - json.loads(out)["total"]["energy_kwh"],
                                            rel=1e-3)
    code, out, err = run_cli(*args, "--batch-size", "16", "--grad-accum", "8", "--steps", "100")
    assert code == 0, err
    f = next(x for x in json.loads(out)["findings"] if x["code"] == "WL202")
    assert "--grad-accum 4 (the global batch of 16 in 4 micro-batch(es) per step" in f["message"], f["message"]
    code, out, err = run_cli(*args, "--batch-size", "16", "--grad-accum", "4", "--steps", "100")
    assert code == 0, err  # the advice runs as written
