"""Small example PyTorch models for `wattlint analyze examples/torch_models.py:<factory>` and the tests.

Each factory takes no arguments and returns ``(module, example_inputs)``; wattlint builds it on the meta device,
so sizes cost nothing to trace.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    def __init__(self, d_in: int = 784, hidden: int = 1024, classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.head(F.relu(self.fc2(F.relu(self.fc1(x)))))


class SmallCNN(nn.Module):
    """Conv stem, a depthwise-separable block (groups), pooling, classifier."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.dw = nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False)
        self.pw = nn.Conv2d(64, 128, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(128)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.stem(x)))
        x = F.relu(self.bn2(self.pw(self.dw(x))))
        return self.fc(self.pool(x).flatten(1))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNetSmall(nn.Module):
    """ResNet-18-style network (stem, max-pool, 4 stages of basic blocks)."""

    def __init__(self, classes: int = 1000, widths=(64, 128, 256, 512)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        layers = []
        cin = widths[0]
        for i, w in enumerate(widths):
            layers.append(nn.Sequential(BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w)))
            cin = w
        self.layers = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layers(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class LSTMClassifier(nn.Module):
    def __init__(self, vocab: int = 10000, emb: int = 256, hidden: int = 512, layers: int = 2, classes: int = 4):
        super().__init__()
        self.embed = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, ids):
        y, _ = self.lstm(self.embed(ids))
        return self.fc(y[:, -1])


class GRUTagger(nn.Module):
    """Bidirectional 2-layer GRU sequence tagger (one label per token)."""

    def __init__(self, vocab: int = 10000, emb: int = 256, hidden: int = 384, tags: int = 17):
        super().__init__()
        self.embed = nn.Embedding(vocab, emb)
        self.gru = nn.GRU(emb, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(2 * hidden, tags)

    def forward(self, ids):
        y, _ = self.gru(self.embed(ids))
        return self.fc(y).flatten(0, 1)


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, token_hidden), nn.GELU(), nn.Linear(token_hidden, tokens))
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = nn.Sequential(nn.Linear(dim, channel_hidden), nn.GELU(), nn.Linear(channel_hidden, dim))

    def forward(self, x):
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class MLPMixer(nn.Module):
    def __init__(self, image: int = 224, patch: int = 16, dim: int = 512, depth: int = 4, classes: int = 1000):
        super().__init__()
        tokens = (image // patch) ** 2
        self.stem = nn.Conv2d(3, dim, patch, stride=patch)
        self.blocks = nn.Sequential(*[MixerBlock(tokens, dim, 256, 2048) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        x = self.norm(self.blocks(x))
        return self.head(x.mean(dim=1))


class TinyGPT(nn.Module):
    """A decoder-only transformer from torch.nn parts with a causal mask (nn.TransformerEncoderLayer)."""

    def __init__(self, vocab: int = 8192, dim: int = 512, heads: int = 8, depth: int = 2, seq: int = 256):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(seq, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.1, batch_first=True, norm_first=True,
                                           activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, ids):
        s = ids.shape[1]
        pos = torch.arange(s, device=ids.device)
        x = self.tok(ids) + self.pos(pos)
        x = self.blocks(x, is_causal=True, mask=nn.Transformer.generate_square_subsequent_mask(s, device=ids.device))
        return self.head(self.norm(x))


class UNetTiny(nn.Module):
    """Down/up-sampling with a transposed convolution and a skip connection (segmentation-style)."""

    def __init__(self, classes: int = 8):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())
        self.down = nn.MaxPool2d(2)
        self.enc2 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(64, 32, 2, stride=2)
        self.dec = nn.Sequential(nn.Conv2d(64, 32, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(32, classes, 1)

    def forward(self, x):
        a = self.enc1(x)
        b = self.enc2(self.down(a))
        return self.out(self.dec(torch.cat([self.up(b), a], dim=1)))


def mlp():
    return MLP(), (torch.randn(32, 784),)


def small_cnn():
    return SmallCNN(), (torch.randn(8, 3, 64, 64),)


def resnet_small():
    return ResNetSmall(), (torch.randn(4, 3, 224, 224),)


def lstm_classifier():
    return LSTMClassifier(), (torch.zeros(8, 32, dtype=torch.long),)


def gru_tagger():
    return GRUTagger(), (torch.zeros(8, 24, dtype=torch.long),)


def mlp_mixer():
    return MLPMixer(), (torch.randn(4, 3, 224, 224),)


def tiny_gpt():
    return TinyGPT(), (torch.zeros(4, 256, dtype=torch.long),)


def unet_tiny():
    return UNetTiny(), (torch.randn(2, 3, 64, 64),)


def not_a_model():
    return 42
