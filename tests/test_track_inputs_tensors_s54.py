"""wattlint.track takes example tensors as inputs= (one tensor, a tuple / list of them) as wattlint.estimate does,
and devices= indices of any whole-number type (review s54: 'got a list holding a Tensor'; numpy's int64 refused)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
from torch import nn  # noqa: E402

import wattlint  # noqa: E402


@pytest.mark.parametrize("inputs", [torch.randn(4, 8), (torch.randn(4, 8),), [torch.randn(4, 8)]])
def test_track_takes_example_tensors_as_inputs(tmp_path, inputs):
    m = nn.Linear(8, 8)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with wattlint.track(m, inputs=inputs, gpu="a100", steps=3, out=tmp_path, display="quiet", device="cpu") as t:
        for _ in range(3):
            opt.zero_grad()
            m(torch.randn(4, 8)).sum().backward()
            opt.step()
            t.step()
    # the static estimate of the run was made from the example batch: its micro-batch is the example's 4 samples and
    # its step the same as wattlint.estimate's from the spec string of that batch (another path: parsed specs)
    assert t.static is not None and t.static.get("error") is None, t.static
    assert t.static["plan"]["batch_size"] == 4
    est = wattlint.estimate(nn.Linear(8, 8), gpu="a100", steps=3, inputs=["input=float32[4,8]"], lint=False)
    assert t.static["per_step"]["flops"] == pytest.approx(est.per_step.flops)


def test_devices_take_numpy_integers(tmp_path):
    t = wattlint.track(nn.Linear(8, 8), devices=[np.int64(0)], out=tmp_path, display="quiet")
    assert t.devices == [0] and type(t.devices[0]) is int
