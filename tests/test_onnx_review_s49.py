"""ONNX review s49: what torch.onnx.export (TorchScript exporter) writes op by op, priced as PyTorch runs it.

* nn.SiLU is exported as ``Mul(x, Sigmoid(x))`` and nn.GroupNorm as ``Reshape -> InstanceNormalization ->
  Reshape -> Mul(gamma) -> Add(beta)``: one silu / one native_group_norm kernel each (and one backward kernel);
* a training-mode Dropout whose ratio is a constant 0 (Hugging Face's default p) is free: torch's dropout with
  p = 0 returns its input;
* nodes that only re-lay-out parameters (a training-mode export's LSTM gate blocks: Slice / Concat / Unsqueeze of
  the weights; a weight Transposed before its MatMul) are part of the parameters: no kernel, no bytes, nothing
  saved; a tied LM head written as ``MatMul(h, Transpose(wte.weight))`` is still recognised as tied;
* a model.half() export's assumption says what is priced (apex O2-style, not autocast).

Models are exported in the test (opset 17, dynamo=False); expected values by hand (in each test).
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from wattlint import costs as C
from wattlint.frontends import onnx as onnx_frontend
from wattlint.frontends.onnx import analyze_onnx
from wattlint.types import Phase

torch = pytest.importorskip("torch")
nn = torch.nn


@pytest.fixture(autouse=True)
def _strict(monkeypatch):
    monkeypatch.setattr(onnx_frontend, "STRICT", True)


def _export(model, args, path, *, training: bool, names=("x",)):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mode = torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL
        (model.train() if training else model.eval())
        torch.onnx.export(model, args, str(path), input_names=list(names), output_names=["out"], opset_version=17,
                          training=mode, do_constant_folding=not training, dynamo=False)
    return path


def _costly(g, phase):
    return [r for r in g.records if r.phase is phase and (r.flops or r.bytes_read or r.bytes_written)]


# ---- 1. SiLU and GroupNorm: one kernel each ------------------------------------------------------------------

def test_groupnorm_and_silu_are_one_kernel_each(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.GroupNorm(8, 32), nn.SiLU())
    p = _export(model, (torch.randn(2, 3, 64, 64),), tmp_path / "gn.onnx", training=False)
    ops_ = [n.op_type for n in onnx.load(str(p)).graph.node]
    assert "InstanceNormalization" in ops_ and "Sigmoid" in ops_  # the decomposition this test is about
    g = analyze_onnx(p)
    # by hand, x = [2, 32, 64, 64] fp32: n = 262,144 elements, 1 MiB
    n, mib = 2 * 32 * 64 * 64, 1 << 20
    fwd = [(r.flops, r.bytes_read, r.bytes_written) for r in _costly(g, Phase.FORWARD) if r.op != "onnx::Conv"
           and not r.op.startswith("loss::")]
    # native_group_norm: 7 FLOPs / element; reads x + gamma + beta (32 floats each), writes y + the statistics
    # (mean and rstd per sample and group: 2 x (N 2 x G 8) fp32 = 2 x 16 x 4 B); silu: 5 FLOPs / element, reads x,
    # writes y
    assert fwd == [(7 * n, mib + 2 * 32 * 4, mib + 2 * 16 * 4), (5 * n, mib, mib)]
    bwd = [(r.flops, r.bytes_read, r.bytes_written) for r in _costly(g, Phase.BACKWARD)
           if r.op not in ("onnx::Conv",) and not r.op.startswith("loss::")]
    # silu_backward: 2 x 5 FLOPs / element, reads dy and x, writes dx; native_group_norm_backward: 11 FLOPs /
    # element, reads dy, x, gamma, mean / rstd (2 x 16 fp32); writes dx, dgamma, dbeta
    assert bwd == [(10 * n, 2 * mib, mib), (11 * n, 2 * mib + 32 * 4 + 2 * 16 * 4, mib + 2 * 32 * 4)]
    assert any("1 SiLU decompositions" in a for a in g.assumptions)
    assert any("1 decomposed GroupNorms" in a and "native_group_norm" in a for a in g.assumptions)
    # saved for backward: the conv's input x [2,3,64,64], the GroupNorm input (1 MiB) and its fp32 mean / rstd
    # (N x G = 16 each), the SiLU input (1 MiB); the 4-D output over a float input is no logits: the assumed loss is
    # its sum (as the torch frontend), which keeps no log-probabilities
    assert g.extra["activation_bytes"] == 2 * 3 * 64 * 64 * 4 + mib + 2 * 16 * 4 + mib
    # a training-mode export (gamma / beta through Unsqueeze, no constant folding) is the same step
    torch.manual_seed(0)
    t = analyze_onnx(_export(model, (torch.randn(2, 3, 64, 64),), tmp_path / "gn_train.onnx", training=True))
    for ph in (Phase.FORWARD, Phase.BACKWARD):
        assert sorted((r.flops, r.bytes_read, r.bytes_written) for r in _costly(t, ph)) == sorted(
            (r.flops, r.bytes_read, r.bytes_written) for r in _costly(g, ph)), ph
    # the same cost function the torch path calls for aten.native_group_norm
    assert fwd[0] == tuple(getattr(C.norm((2, 32, 64, 64), "float32", "group", affine=True, normalized_elems=32,
                                                   groups=8), k)
                           for k in ("flops", "bytes_read", "bytes_written"))


# ---- 2. Dropout with ratio 0 is free -----------------------------------------------------------------------

def test_training_dropout_with_ratio_zero_is_free(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.Dropout(0.0), nn.Linear(16, 16), nn.Dropout(0.1), nn.Linear(16, 8))
    p = _export(model, (torch.randn(4, 16),), tmp_path / "drop.onnx", training=True)
    assert sum(n.op_type == "Dropout" for n in onnx.load(str(p)).graph.node) == 2
    g = analyze_onnx(p)
    drops = [r for r in g.records if r.op == "onnx::Dropout"]
    # the p = 0.1 one, by hand on [4, 16] fp32 (64 elements): forward 3 FLOPs / element, reads 256 B, writes y 256 B
    # + the bool mask 64 B; backward 2 FLOPs / element, reads dy + mask (320 B), writes dx (256 B); the p = 0 one:
    # nothing
    assert [(r.phase, r.flops, r.bytes_read, r.bytes_written) for r in drops if r.bytes_read or r.bytes_written] == [
        (Phase.FORWARD, 192, 256, 320), (Phase.BACKWARD, 128, 320, 256)]
    line = [a for a in g.assumptions if a.startswith("dropout:")]
    assert len(line) == 1 and "2 Dropout nodes" in line[0] and "1 in training mode priced" in line[0] \
        and "1 in training mode with ratio 0" in line[0]
    # saved: the three Linear inputs ([4, 16] fp32, 256 B each), the one mask (64 B; no mask for p = 0), the
    # assumed loss's fp32 logits ([4, 8]: 128 B)
    assert g.extra["activation_bytes"] == 3 * 256 + 64 + 128


# ---- 3. parameter-only data movement -------------------------------------------------------------------------

class _Lstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(self.rnn(x)[0][:, -1])


def test_training_export_lstm_weights_relaid_out_are_free(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8)
    tr = _export(_Lstm(), (x,), tmp_path / "lstm_train.onnx", training=True)
    ev = _export(_Lstm(), (x,), tmp_path / "lstm_eval.onnx", training=False)
    movers = [n for n in onnx.load(str(tr)).graph.node if n.op_type in ("Slice", "Concat", "Unsqueeze")
              and n.input[0].startswith("rnn.")]
    assert movers  # the export keeps the gate-block re-layout of the weights
    gt, ge = analyze_onnx(tr), analyze_onnx(ev)
    # none of them costs anything, in either phase
    assert not [r for r in gt.records if r.op in ("onnx::Slice", "onnx::Concat", "onnx::Unsqueeze")
                and (r.bytes_read or r.bytes_written)]
    # by hand the step is the eval export's (which folded the re-layout into initializers): one LSTM layer, same
    # parameters (4 x 16 x (8 + 16) + 2 x 64 + 16 x 4 + 4 = 1,796), same kernels and bytes per phase, same saved
    # activations (the LSTM reads its weights in place: none of them saved)
    assert gt.model.params == ge.model.params == 4 * 16 * (8 + 16) + 2 * 64 + 16 * 4 + 4
    for ph in (Phase.FORWARD, Phase.BACKWARD):
        a = sorted((r.op, r.flops, r.bytes_read, r.bytes_written) for r in _costly(gt, ph))
        b = sorted((r.op, r.flops, r.bytes_read, r.bytes_written) for r in _costly(ge, ph))
        assert a == b, ph
    assert gt.extra["activation_bytes"] == ge.extra["activation_bytes"]
    assert any("only re-lay-out parameters" in a for a in gt.assumptions)


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.l1 = nn.Linear(16, 16)
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(torch.tanh(self.l1(self.emb(ids))))


def test_training_export_tied_head_transpose_is_the_embedding(tmp_path):
    torch.manual_seed(0)
    ids = torch.zeros(4, 8, dtype=torch.long)
    tr = _export(_Tied(), (ids,), tmp_path / "tied_train.onnx", training=True, names=("ids",))
    ev = _export(_Tied(), (ids,), tmp_path / "tied_eval.onnx", training=False, names=("ids",))
    assert any(n.op_type == "Transpose" and n.input[0] == "emb.weight" for n in onnx.load(str(tr)).graph.node)
    gt, ge = analyze_onnx(tr), analyze_onnx(ev)
    # one parameter for the tied pair: 50 x 16 + 16 x 16 + 16
    assert gt.model.params == ge.model.params == 50 * 16 + 16 * 16 + 16
    assert any("is the embedding 'emb.weight' transposed" in a and "tied output layer" in a for a in gt.assumptions)
    assert any("is the embedding 'emb.weight' transposed" in a and "tied output layer" in a for a in ge.assumptions)
    # the transposed weights (the embedding's 50 x 16 and l1's 16 x 16) are no activations: by hand the saved
    # tensors are the eval export's
    assert gt.extra["activation_bytes"] == ge.extra["activation_bytes"]
    for ph in (Phase.FORWARD, Phase.BACKWARD, Phase.OPTIMIZER):
        a = sorted((r.op, r.flops, r.bytes_read, r.bytes_written) for r in _costly(gt, ph))
        b = sorted((r.op, r.flops, r.bytes_read, r.bytes_written) for r in _costly(ge, ph))
        assert a == b, ph
    # one gradient accumulation into the embedding (its Gather and the head: two uses), 50 x 16 fp32 adds
    acc = [r for r in gt.records if r.op == "autograd::accumulate_grad"]
    assert [(r.flops, r.bytes_read, r.bytes_written) for r in acc] == [(800, 2 * 3200, 3200)]


# ---- 4. a model.half() export's assumption ---------------------------------------------------------------------

def test_half_export_says_apex_o2_not_autocast(tmp_path):
    w = numpy_helper.from_array(np.ones((16, 8), np.float16), "fc.weight")
    nodes = [helper.make_node("MatMul", ["x", "fc.weight"], ["y"], name="/fc/MatMul")]
    graph = helper.make_graph(nodes, "h", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [4, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [4, 8])], [w])
    p = tmp_path / "half.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    g = analyze_onnx(p, precision="fp16")
    line = [a for a in g.assumptions if a.startswith("half-precision weights in the graph")]
    assert len(line) == 1 and "apex O2" in line[0] and "not autocast" in line[0] and "no per-op autocast casts" in \
        line[0] and "fp32 master weights (a copy of the half weights)" in line[0]
    assert "(mixed precision)" not in line[0]
    assert not [r for r in g.records if r.op == "autocast::_to_copy"]
    # priced as the line says: the GEMM in fp16, the optimizer over fp32 (AdamW's foreach kernels on 128 fp32
    # elements), the fp32 master copy in memory
    assert {r.dtype for r in g.records if r.op == "onnx::MatMul"} == {"float16"}
    opt = [r for r in g.records if r.phase is Phase.OPTIMIZER]
    assert opt and {r.dtype for r in opt} == {"float32"}
    assert sum(r.bytes_read + r.bytes_written for r in opt) == sum(
        c.bytes_read + c.bytes_written for c in C.optimizer_foreach("adamw", 128, "float32"))
    assert g.extra["fp32_master_weights"] is True
