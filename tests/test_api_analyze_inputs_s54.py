"""wattlint.analyze takes example tensors as inputs= as wattlint.estimate does (review s54: a bare tensor passed the
option check and then failed with a TypeError inside the frontend)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import wattlint  # noqa: E402
from wattlint.types import OpKind, Phase  # noqa: E402


class _M(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(128, 64)

    def forward(self, x):
        return self.lin(x)


def _fwd_matmul_flops(g) -> float:
    return sum(r.flops for r in g.records if r.phase is Phase.FORWARD and r.kind is OpKind.MATMUL)


@pytest.mark.parametrize("inputs", [torch.randn(4, 128), (torch.randn(4, 128),), [torch.randn(4, 128)]])
def test_analyze_binds_example_tensors_by_position(inputs):
    g = wattlint.analyze(_M(), inputs=inputs)
    # by hand: x [4, 128] @ W^T [128, 64] = 2 x 4 x 128 x 64 = 65,536 multiply-add FLOPs, + the bias add 4 x 64 = 256
    assert _fwd_matmul_flops(g) == 2 * 4 * 128 * 64 + 4 * 64
    assert [t.name for t in g.inputs] == ["x"]  # named after the forward's parameter, as estimate names it
    assert [list(t.shape) for t in g.inputs] == [[4, 128]]
