"""A tiny MNIST-sized MLP for the example project (PyTorch source: ``models/tiny_mlp.py:build``)."""

import torch.nn as nn

from models.blocks import hidden_block


def build() -> nn.Module:
    return nn.Sequential(nn.Flatten(), hidden_block(784, 512), hidden_block(512, 256), nn.Linear(256, 10))
