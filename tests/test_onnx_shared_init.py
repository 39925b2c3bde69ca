"""Initializers the exporter deduplicated: torch.onnx.export (dynamo=False) merges equal-valued initializers (the
all-ones weights and all-zeros biases of freshly initialised LayerNorms) into one weight and one bias and re-creates
each other LayerNorm's as an Identity alias named after it. The model trains them as separate tensors, and the
parameter count counted each alias; the optimizer step must step each too (review: 'params' said one number, the
optimizer stepped fewer).

By hand: Sequential(LN, Linear, LN, Linear, LN, Linear, LN), width 128: Linear 128 x 128 + 128 = 16,512 each, x 3 =
49,536; 4 LayerNorms x (128 + 128) = 1,024 -> 50,560 parameters, PyTorch's own count. AdamW as torch's foreach
kernels: 12 FLOPs per element (mul 1 + lerp 2 + mul 1 + addcmul 2 + sqrt 2 + div 1 + add 1 + addcdiv 2) -> 12 x
50,560 = 606,720 optimizer FLOPs (before the fix 12 x (49,536 + 256) = 597,504: the three aliased LayerNorms' 768
elements unstepped)."""

from __future__ import annotations

import warnings

import pytest

from wattlint.frontends.onnx import analyze_onnx
from wattlint.types import Phase


def test_deduplicated_layernorm_initializers_are_stepped_as_counted(tmp_path):
    torch = pytest.importorskip("torch")
    import onnx

    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.LayerNorm(128), nn.Linear(128, 128), nn.LayerNorm(128), nn.Linear(128, 128),
                          nn.LayerNorm(128), nn.Linear(128, 128), nn.LayerNorm(128))
    assert sum(p.numel() for p in model.parameters()) == 50_560
    p = tmp_path / "ln4.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(2, 16, 128),), str(p), input_names=["x"], opset_version=17,
                          dynamo=False)
    assert len(onnx.load(str(p)).graph.initializer) == 8  # the exporter merged the LayerNorms' weights and biases
    g = analyze_onnx(p, batch_size=2, optimizer="adamw")
    assert g.model.params == 50_560
    assert sum(r.flops for r in g.records if r.phase is Phase.OPTIMIZER) == 12 * 50_560 == 606_720
