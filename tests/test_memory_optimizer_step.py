"""The optimizer step's own memory peak and the weight casts of a half-precision (apex O2-style) graph, by hand.

torch's foreach Adam / AdamW allocate exp_avg_sq_sqrt = torch._foreach_sqrt(exp_avg_sqs) over every parameter at
once (torch/optim/adam.py _multi_tensor_adam), after backward freed the activations: a large model at a small batch
peaks there. A graph whose weights are stored in fp16 (a model.half() export, priced apex O2-style) runs without
autocast, so it holds no cached half-precision weight casts.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import wattlint
from wattlint import memory
from wattlint.report.json_out import to_dict

torch = pytest.importorskip("torch")
nn = torch.nn

D = 2048
P = 2 * (D * D + D)  # two Linear(2048, 2048) layers: 8,392,704 parameters


def _mem(impl: str) -> dict:
    model = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Linear(D, D))
    est = wattlint.estimate(model, gpu="a100-sxm4-80gb", steps=1, batch_size=1, inputs=[f"x=float32[1,{D}]"],
                            precision="fp32", optimizer="adamw", optimizer_impl=impl)
    return to_dict(est)["memory"]


def test_foreach_adamw_peaks_at_the_step():
    mem = _mem("foreach")
    b = mem["breakdown"]
    dynamic = b["activations"] + b["loss_transient"]  # fp32: no weight casts
    assert b["weight_casts"] == 0 and dynamic < 4 * P
    # the step's temporaries: one fp32 tensor per parameter element (4P = 33,570,816 B), beyond backward's dynamic
    assert b["optimizer_step_temporaries"] == int(4 * P - dynamic)
    # peak = weights 4P + gradients 4P + AdamW state 8P + temporaries 4P x 1.12 (allocator margin) + 0.6 GiB context
    context = int(0.6 * 2**30)
    expected = 16 * P + 4 * P * 1.12 + context
    assert mem["peak_bytes_per_gpu"] == pytest.approx(expected, abs=4)
    assert b["workspace"] == pytest.approx(context + 0.12 * 4 * P, abs=2)


def test_fused_adamw_allocates_no_temporaries():
    mem = _mem("fused")
    b = mem["breakdown"]
    assert "optimizer_step_temporaries" not in b
    dynamic = b["activations"] + b["loss_transient"]
    assert mem["peak_bytes_per_gpu"] == pytest.approx(16 * P + 1.12 * dynamic + int(0.6 * 2**30), abs=4)


def test_temporaries_follow_the_optimizer():
    # adadelta: std and deltas (two tensors per element); SGD: none (in-place foreach passes)
    g = type("G", (), {"extra": {"optimizer_impl": "foreach"}})()
    assert memory.optimizer_step_temporaries(g, "adadelta", 100, 4.0, False) == 800
    assert memory.optimizer_step_temporaries(g, "sgd", 100, 4.0, False) == 0
    assert memory.optimizer_step_temporaries(g, "adamw", 100, 4.0, True) == 0  # megatron: fused in place
    g.extra["optimizer_impl"] = "for-loop"
    assert memory.optimizer_step_temporaries(g, "adamw", 100, 4.0, False) == 0


def test_half_export_holds_no_weight_casts(tmp_path):
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((256, 128)).astype(np.float16), "fc.weight")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "fc.weight"], ["logits"], name="/fc/MatMul")], "half",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [8, 256])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT16, [8, 128])], [w])
    p = tmp_path / "half.onnx"
    p.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    b = to_dict(wattlint.estimate(str(p), gpu="a100-sxm4-80gb", steps=1))["memory"]["breakdown"]
    n = 256 * 128  # 32,768 parameters stored in fp16
    assert b["weights"] == 2 * n and b["weight_casts"] == 0  # was 2n: autocast casts of weights already half
    assert b["master_weights"] == 4 * n


def test_half_module_trains_in_half():
    # model.half(): PyTorch trains it in fp16 throughout; AdamW's state is zeros_like(param), fp16; no master copy
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).half()
    n = 256 * 256 + 256 + 256 * 10 + 10  # 68,362 parameters
    est = wattlint.estimate(model, gpu="a100-sxm4-80gb", steps=1, batch_size=32, inputs=["x=float16[32,256]"])
    doc = to_dict(est)
    b = doc["memory"]["breakdown"]
    assert (b["weights"], b["gradients"], b["optimizer_state"], b["weight_casts"]) == (2 * n, 2 * n, 4 * n, 0)
    assert "master_weights" not in b
    assert doc["plan"]["precision"] == "fp16"
    assert any("without an fp32 master copy" in a for a in est.assumptions)
    assert not any(a.startswith("precision: PyTorch default (fp32 weights") for a in est.assumptions)


class _FrozenHalf(nn.Module):
    """A frozen fp32 Linear feeding a trainable fp16 one (the trainable parameters are all fp16)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(D, D)
        self.b = nn.Linear(D, D).half()
        for p in self.a.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        return self.b(self.a(x).half())


def test_half_module_under_autocast_keeps_half_state():
    # model.half() traced with --precision fp16: autocast's cast of an fp16 weight is the weight itself (no copy),
    # and the optimizer's state stays fp16 (zeros_like): weights 2P, gradients 2P, AdamW state 4P, no casts
    model = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Linear(D, D)).half()
    est = wattlint.estimate(model, gpu="a100-sxm4-80gb", steps=1, batch_size=1, inputs=[f"x=float16[1,{D}]"],
                            precision="fp16")
    b = to_dict(est)["memory"]["breakdown"]
    assert (b["weights"], b["gradients"], b["optimizer_state"], b["weight_casts"]) == (2 * P, 2 * P, 4 * P, 0)
    assert "master_weights" not in b
    assert not any("fp32 master weights and optimizer state" in a for a in est.assumptions)


def test_frozen_fp32_with_trainable_half():
    # trainable: b only, 4,196,352 fp16 parameters (T); frozen a: T fp32. Gradients and AdamW state are b's, in
    # fp16: 2T and 4T (not the mean bytes per parameter of the whole model, 3 B); weights 4T + 2T
    t = D * D + D
    est = wattlint.estimate(_FrozenHalf(), gpu="a100-sxm4-80gb", steps=1, batch_size=1,
                            inputs=[f"x=float32[1,{D}]"])
    b = to_dict(est)["memory"]["breakdown"]
    assert (b["weights"], b["gradients"], b["optimizer_state"], b["weight_casts"]) == (6 * t, 2 * t, 4 * t, 0)
    assert b["optimizer_step_temporaries"] == 2 * t - (b["activations"] + b["loss_transient"])
