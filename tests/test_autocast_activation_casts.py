"""Saved-for-backward bytes of an fp32 activation read by several autocast-lowered ops, derived by hand.

CUDA autocast caches the half-precision casts of leaf tensors that require grad only (the weights); an fp32 activation
(a LayerNorm output under autocast) is cast anew by every lowered op that reads it, and each op saves its own cast
(BERT / Llama: the query, key and value projections read the same norm output). Checked against a real forward under
torch.autograd.graph.saved_tensors_hooks (BERT and Llama configs, byte for byte).
"""

from __future__ import annotations

import torch.nn as nn

from wattlint import memory
from wattlint.api import trace
from wattlint.types import Plan

B, S, H = 2, 8, 16
N = B * S * H  # 256 elements per activation


class _Fanout(nn.Module):
    """A LayerNorm whose output ``n`` bias-free Linears read (q / k / v), their outputs summed."""

    def __init__(self, n: int):
        super().__init__()
        self.ln = nn.LayerNorm(H)
        self.lin = nn.ModuleList(nn.Linear(H, H, bias=False) for _ in range(n))

    def forward(self, x):
        y = self.ln(x)
        out = 0
        for lin in self.lin:
            out = out + lin(y)
        return out


def _extra(n: int, precision: str) -> dict:
    g = trace(_Fanout(n), {"batch_size": B, "inputs": [f"x=float32[{B},{S},{H}]"], "precision": precision})
    return g.extra


# LayerNorm (fp32 under autocast too) saves its fp32 input (4N = 1,024 B) and mean + rstd (fp32, one per token:
# 2 x B*S*4 = 128 B); the weights' casts are parameters, not activations.
LN = 4 * N + 2 * B * S * 4  # 1,152


def test_fp32_norm_output_saved_once():
    # fp32: the three Linears save the same fp32 norm output (4N = 1,024 B) once
    assert _extra(3, "fp32")["activation_bytes"] == LN + 4 * N == 2_176


def test_each_autocast_op_saves_its_own_cast():
    # bf16 autocast: each Linear saves its own bf16 cast of the norm output (2N = 512 B each)
    assert _extra(1, "bf16")["activation_bytes"] == LN + 2 * N == 1_664
    three = _extra(3, "bf16")
    assert three["activation_bytes"] == LN + 3 * 2 * N == 2_688
    # the two repeated casts are one tensor where activations are kept in half precision (training stack megatron)
    assert three["activation_bytes_cast_dup"] == 2 * 2 * N == 1_024


def test_megatron_stack_keeps_one_half_copy():
    # megatron (bf16 parameters, no autocast casts): the bf16 norm output is saved once by the three Linears;
    # the fp32 input autocast kept (1,024 B) is half precision there (512 B); the statistics stay fp32
    g = trace(_Fanout(3), {"batch_size": B, "inputs": [f"x=float32[{B},{S},{H}]"], "precision": "bf16"})
    plan = Plan(batch_size=B, steps=1, precision="bf16", optimizer="adamw", pue=1.0,
                carbon_intensity_g_per_kwh=400.0, training_stack="megatron")
    act, _notes = memory.replica_activation_bytes(g, plan)
    assert act == 2 * N + 2 * B * S * 4 + 2 * N == 1_152
