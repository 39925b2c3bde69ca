"""Shared building blocks (imported by tiny_mlp.py: editing this file invalidates wattlint's cache for it)."""

import torch.nn as nn


def hidden_block(n_in: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.GELU())
