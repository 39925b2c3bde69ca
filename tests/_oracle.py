"""Oracle helpers for the torch-frontend tests: FlopCounterMode (and its documented deviations) on meta."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from torch.utils._python_dispatch import TorchDispatchMode

from wattlint.frontends import torch as wt
from wattlint.types import OpKind, Phase


class _ScalarReads(TorchDispatchMode):
    """Answer .item() on meta tensors (True / 1 / 0.0) so the oracle gets through transformers' mask code."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and args[0].device.type == "meta":
            x = args[0]
            return True if x.dtype == torch.bool else (0.0 if x.is_floating_point() else 1)
        return func(*args, **(kwargs or {}))


def oracle_flops(model: nn.Module, args=(), kwargs=None, hf: bool = False) -> tuple[int, int]:
    """(forward, backward) FLOPs counted by torch.utils.flop_counter.FlopCounterMode on the same meta run
    (same fused-attention routing, same loss)."""
    model = wt.to_meta(model)
    model.train()
    args = wt._meta_like(tuple(args))
    kwargs = wt._meta_like(dict(kwargs or {}))
    with wt.fused_attention():
        with FlopCounterMode(display=False) as fc, _ScalarReads():
            out = model(*args, **kwargs)
            loss, _ = wt._loss(out, hf)
        fwd = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc2:
            loss.backward()
        bwd = fc2.get_total_flops()
    return fwd, bwd


def documented_corrections(graph) -> tuple[int, int]:
    """What to add to the oracle's (forward, backward) for the documented deviations:

    * causal attention: the oracle counts the full s x s square; wattlint counts the s(s+1)/2 pairs;
    * grouped conv backward: the oracle's conv-backward formula ignores ``groups`` (each grad GEMM is counted
      ``groups`` times too large).
    """
    fwd = bwd = 0
    for r in graph.records:
        if r.kind is OpKind.ATTENTION and r.dim("causal"):
            b, h, sq, sk, d, dv = (r.dim(k) for k in ("b", "h", "sq", "sk", "d", "dv"))
            full, pairs = sq * sk, _pairs(sq, sk)
            if r.phase is Phase.FORWARD:
                fwd -= 2 * b * h * (full - pairs) * (d + dv)
            else:
                bwd -= 2 * b * h * (full - pairs) * (3 * d + 2 * dv)
        if r.kind is OpKind.CONV and r.phase is Phase.BACKWARD and r.dim("b") > 1 and r.dim("grad") == 2:
            g = r.dim("b")  # weight-gradient GEMM of a grouped conv: the oracle counts it g times
            mm = 2 * r.dim("b") * r.dim("m") * r.dim("n") * r.dim("k")
            bwd -= mm * g - mm
    return fwd, bwd


def _pairs(sq, sk):
    from wattlint.costs import causal_pairs
    return causal_pairs(sq, sk)
