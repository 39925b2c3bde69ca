"""Plain-torch builders of the NVIDIA DeepLearningExamples models scoped in benchmarks/public/dle_mapping.json.

Written here from the architecture descriptions and configs cited in the mapping (no code copied). Each builder
returns (module, example input maker(batch) -> tensor); the forward returns classification logits (the tracer adds
cross-entropy) or, for NCF, the loss itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))


# ---- ResNet-50 v1.5 ----------------------------------------------------------------------------------------------

def resnet50():
    from make_examples import resnet50 as _r50  # torchvision's layout (v1.5), no torchvision needed

    return _r50(1000), lambda b: torch.randn(b, 3, 224, 224)


# ---- SE-ResNeXt101-32x4d -------------------------------------------------------------------------------------------

class SE(nn.Module):
    def __init__(self, c: int, r: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // r, 1)
        self.fc2 = nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class SEXBottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, groups: int = 32, base_width: int = 4):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        out = planes * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.se = SE(out)
        self.down = None
        if stride != 1 or cin != out:
            self.down = nn.Sequential(nn.Conv2d(cin, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.se(self.bn3(self.conv3(y)))
        return F.relu(y + (x if self.down is None else self.down(x)))


class SEResNeXt101(nn.Module):
    def __init__(self, layers=(3, 4, 23, 3), classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], 64
        for i, (n, planes) in enumerate(zip(layers, (64, 128, 256, 512))):
            for j in range(n):
                blocks.append(SEXBottleneck(cin, planes, 2 if (j == 0 and i > 0) else 1))
                cin = planes * 4
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


def se_resnext101():
    return SEResNeXt101(), lambda b: torch.randn(b, 3, 224, 224)


# ---- NCF (NeuMF, DLE variant) --------------------------------------------------------------------------------------

class NeuMF(nn.Module):
    def __init__(self, users=138493, items=26744, mf_dim=64, layers=(256, 256, 128, 64), dropout=0.5):
        super().__init__()
        self.mf_u = nn.Embedding(users, mf_dim)
        self.mf_i = nn.Embedding(items, mf_dim)
        self.mlp_u = nn.Embedding(users, layers[0] // 2)
        self.mlp_i = nn.Embedding(items, layers[0] // 2)
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(layers[:-1], layers[1:]))
        self.dropout = dropout
        self.final = nn.Linear(layers[-1] + mf_dim, 1)

    def forward(self, pair):
        u, i = pair[:, 0], pair[:, 1]
        xmf = self.mf_u(u) * self.mf_i(i)
        x = torch.cat((self.mlp_u(u), self.mlp_i(i)), dim=1)
        for lin in self.mlp:
            x = F.dropout(F.relu(lin(x)), p=self.dropout, training=self.training)
        logit = self.final(torch.cat((xmf, x), dim=1)).squeeze(-1)
        return F.binary_cross_entropy_with_logits(logit, torch.zeros_like(logit))


def ncf():
    return NeuMF(), lambda b: torch.zeros(b, 2, dtype=torch.long)


# ---- Jasper 10x5 DR / QuartzNet 15x5 -------------------------------------------------------------------------------

FRAMES = 1680  # 16.7 s at a 10 ms hop = 1671 frames, padded to a multiple of 16 (pad_align)
FEATS = 64
CLASSES = 29  # 28 labels + CTC blank


class SubBlock(nn.Module):
    def __init__(self, cin, cout, k, stride, dil, separable):
        super().__init__()
        pad = dil * (k - 1) // 2
        if separable:
            self.dw = nn.Conv1d(cin, cin, k, stride=stride, dilation=dil, padding=pad, groups=cin, bias=False)
            self.pw = nn.Conv1d(cin, cout, 1, bias=False)
        else:
            self.dw = None
            self.pw = nn.Conv1d(cin, cout, k, stride=stride, dilation=dil, padding=pad, bias=False)
        self.bn = nn.BatchNorm1d(cout)

    def forward(self, x):
        if self.dw is not None:
            x = self.dw(x)
        return self.bn(self.pw(x))


class SpeechBlock(nn.Module):
    def __init__(self, cin, cout, k, repeat, dropout, panes, stride=1, dil=1, separable=False):
        super().__init__()
        self.subs = nn.ModuleList(SubBlock(cin if j == 0 else cout, cout, k, stride, dil, separable)
                                  for j in range(repeat))
        self.res = nn.ModuleList(nn.Sequential(nn.Conv1d(c, cout, 1, bias=False), nn.BatchNorm1d(cout))
                                 for c in panes)
        self.p = dropout

    def forward(self, xs):
        x = xs[-1]
        for j, sub in enumerate(self.subs):
            x = sub(x)
            if j < len(self.subs) - 1:
                x = F.dropout(F.relu(x), self.p, self.training)
        srcs = xs[-len(self.res):] if self.res else []
        for r, src in zip(self.res, srcs):
            x = x + r(src)
        return xs + [F.dropout(F.relu(x), self.p, self.training)]


class SpeechNet(nn.Module):
    """Jasper / QuartzNet encoder from a block list (filters, repeat, kernel, stride, dilation, dropout, residual,
    separable) + a 1x1 decoder; dense residual = every earlier block output feeds a residual pane."""

    def __init__(self, blocks, dense: bool):
        super().__init__()
        mods, outs, cin = [], [], FEATS
        for filters, repeat, k, stride, dil, drop, residual, sep in blocks:
            if residual:
                panes = list(outs) if dense else [cin]
            else:
                panes = []
            mods.append(SpeechBlock(cin, filters, k, repeat, drop, panes, stride, dil, sep))
            outs.append(filters)
            cin = filters
        self.blocks = nn.ModuleList(mods)
        self.decoder = nn.Conv1d(cin, CLASSES, 1)

    def forward(self, x):
        xs = [x]
        for blk in self.blocks:
            if blk.res:
                xs = blk(xs)
            else:
                xs = xs + blk(xs[-1:])[-1:]
        return {"logits": self.decoder(xs[-1]).transpose(1, 2)}


def jasper():
    b = [(256, 1, 11, 2, 1, 0.2, False, False)]
    for f, k, d in ((256, 11, 0.2), (384, 13, 0.2), (512, 17, 0.2), (640, 21, 0.3), (768, 25, 0.3)):
        b += [(f, 5, k, 1, 1, d, True, False)] * 2
    b += [(896, 1, 29, 1, 2, 0.4, False, False), (1024, 1, 1, 1, 1, 0.4, False, False)]
    return SpeechNet(b, dense=True), lambda n: torch.randn(n, FEATS, FRAMES)


def quartznet():
    b = [(256, 1, 33, 2, 1, 0.0, False, True)]
    for f, k in ((256, 33), (256, 39), (512, 51), (512, 63), (512, 75)):
        b += [(f, 5, k, 1, 1, 0.0, True, True)] * 3
    b += [(512, 1, 87, 1, 2, 0.0, False, True), (1024, 1, 1, 1, 1, 0.0, False, False)]
    return SpeechNet(b, dense=False), lambda n: torch.randn(n, FEATS, FRAMES)


BUILDERS = {"ResNet-50 v1.5": resnet50, "SE-ResNeXt101-32x4d": se_resnext101, "NCF (NeuMF)": ncf,
            "Jasper 10x5 DR": jasper, "QuartzNet 15x5": quartznet}
