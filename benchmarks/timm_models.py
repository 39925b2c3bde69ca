"""timm architectures rebuilt in plain torch (timm and torchvision do not import here), for benchmarks/timm_rtx3090.py.

Each builder follows timm's definition of the model named in ``BUILDERS`` as of the PyTorch 1.12 benchmark files
(timm 0.6, mid-2022): layer counts, widths, stem, stride placement, normalisation and activation; the parameter count
of each is checked against the CSV's ``param_count`` in the benchmark (``param_ok``). Written from the published
architecture descriptions (He et al. 2016 / torchvision's v1.5 stride placement, Xie et al. 2017, Zagoruyko &
Komodakis 2016, Radosavovic et al. 2020, Simonyan & Zisserman 2014, Sandler et al. 2018, Tan & Le 2019,
Liu et al. 2022, Dosovitskiy et al. 2021, Liu et al. 2021, Tolstikhin et al. 2021); no timm code is copied.

Differences that do not change the work done are allowed (e.g. module names); the ones that could are listed in
``NOTES``. Dropout / drop-path rates are timm's create_model defaults as benchmark.py calls it (0: no kernels).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

NOTES = {
    "vgg11": "timm's VGG: features, then ConvMlp pre-logits (7x7 conv 512->4096 on the 7x7 map, 1x1 conv 4096->4096, "
             "ReLU after each), global average pool and a linear head",
    "vgg16": "as vgg11",
    "swin_tiny_patch4_window7_224": "shifted-window attention masks are buffers built at construction, as in timm "
                                    "(no kernels per step); the relative-position bias is gathered every forward, "
                                    "as in timm",
}


def _bn_act(c, act=nn.ReLU):
    return [nn.BatchNorm2d(c), act(inplace=True)]


class _FastPool(nn.Module):
    """timm's global_pool='fast' (benchmark.py passes it): mean over H, W."""

    def forward(self, x):
        return x.mean((2, 3))


# ---- ResNet family (timm ResNet: torchvision v1.5 layout, stride on the 3x3) ---------------------------------------

class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, groups=1, base_width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.down = _downsample(cin, planes, stride)

    def forward(self, x):
        s = x if self.down is None else self.down(x)
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(x)) + s, inplace=True)


class _Bottle(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride, groups=1, base_width=64):
        super().__init__()
        w = int(planes * base_width / 64) * groups
        out = planes * 4
        self.conv1 = nn.Conv2d(cin, w, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.conv2 = nn.Conv2d(w, w, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(w)
        self.conv3 = nn.Conv2d(w, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.down = _downsample(cin, out, stride)

    def forward(self, x):
        s = x if self.down is None else self.down(x)
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.relu(self.bn2(self.conv2(x)), inplace=True)
        return F.relu(self.bn3(self.conv3(x)) + s, inplace=True)


def _downsample(cin, cout, stride):
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def resnet(block, layers, groups=1, base_width=64, classes=1000):
    mods = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), *_bn_act(64), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for i, n in enumerate(layers):
        planes = 64 * 2 ** i
        for j in range(n):
            mods.append(block(cin, planes, 2 if (j == 0 and i > 0) else 1, groups, base_width))
            cin = planes * block.expansion
    return nn.Sequential(*mods, _FastPool(), nn.Linear(cin, classes))


# ---- RegNetX-3.2GF (timm regnetx_032: w0 88, wa 26.31, wm 2.25, group 48, depth 25) ------------------------------

class _RegX(nn.Module):
    def __init__(self, cin, w, stride, group):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, w, 1, bias=False), *_bn_act(w),
                                  nn.Conv2d(w, w, 3, stride, 1, groups=w // group, bias=False), *_bn_act(w),
                                  nn.Conv2d(w, w, 1, bias=False), nn.BatchNorm2d(w))
        self.down = _downsample(cin, w, stride)

    def forward(self, x):
        s = x if self.down is None else self.down(x)
        return F.relu(self.body(x) + s, inplace=True)


def regnetx_032(classes=1000):
    # timm's width generator: widths 88 / 200 / 448 / 1000 (x 2, 6, 15, 2 blocks), rounded to the group size 48
    mods, cin = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), *_bn_act(32)], 32
    for w, d in zip((96, 192, 432, 1008), (2, 6, 15, 2)):
        for j in range(d):
            mods.append(_RegX(cin, w, 2 if j == 0 else 1, 48))
            cin = w
    return nn.Sequential(*mods, _FastPool(), nn.Linear(cin, classes))


# ---- VGG ------------------------------------------------------------------------------------------------------------

VGG_CFG = {"vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
           "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")}


def vgg(name, classes=1000):
    mods, cin = [], 3
    for v in VGG_CFG[name]:
        if v == "M":
            mods.append(nn.MaxPool2d(2, 2))
        else:
            mods += [nn.Conv2d(cin, v, 3, 1, 1), nn.ReLU(inplace=True)]
            cin = v
    mods += [nn.Conv2d(512, 4096, 7), nn.ReLU(inplace=True), nn.Conv2d(4096, 4096, 1), nn.ReLU(inplace=True)]
    return nn.Sequential(*mods, _FastPool(), nn.Linear(4096, classes))


# ---- MobileNetV2 / EfficientNet-B0 (timm's efficientnet builder) ------------------------------------------------

class _SE(nn.Module):
    def __init__(self, c, rd):
        super().__init__()
        self.reduce = nn.Conv2d(c, rd, 1)
        self.expand = nn.Conv2d(rd, c, 1)

    def forward(self, x):
        g = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(g))))


class _IR(nn.Module):
    """Inverted residual: 1x1 expand (skipped at ratio 1), depthwise kxk, optional SE, 1x1 project (no activation)."""

    def __init__(self, cin, cout, k, stride, ratio, act, se_ratio=0.0):
        super().__init__()
        mid = cin * ratio
        mods = [] if ratio == 1 else [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), act(inplace=True)]
        mods += [nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False), nn.BatchNorm2d(mid), act(inplace=True)]
        if se_ratio:
            mods.append(_SE(mid, max(1, int(cin * se_ratio))))  # timm: reduction from the block's input channels
        mods += [nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*mods)
        self.res = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.res else y


def _effnet(stages, act, se, classes=1000):
    mods, cin = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), act(inplace=True)], 32
    for ratio, k, s, c, n in stages:
        for j in range(n):
            mods.append(_IR(cin, c, k, s if j == 0 else 1, ratio, act, se))
            cin = c
    mods += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), act(inplace=True)]
    return nn.Sequential(*mods, _FastPool(), nn.Linear(1280, classes))


def mobilenetv2_100():
    return _effnet(((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 3, 2, 32, 3), (6, 3, 2, 64, 4), (6, 3, 1, 96, 3),
                    (6, 3, 2, 160, 3), (6, 3, 1, 320, 1)), nn.ReLU6, 0.0)


def efficientnet_b0():
    return _effnet(((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                    (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)), nn.SiLU, 0.25)


# ---- ConvNeXt-T (timm 0.6: conv_mlp=False, LayerNorm + Linear MLP in NHWC via permutes, layer scale) -------------

class _LN2d(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _CNBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.dw = nn.Conv2d(d, d, 7, 1, 3, groups=d)
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.gamma = nn.Parameter(torch.full((d,), 1e-6))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
        return x + y.mul(self.gamma.reshape(1, -1, 1, 1))


class _ConvNeXt(nn.Module):
    def __init__(self, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), classes=1000):
        super().__init__()
        mods = [nn.Conv2d(3, dims[0], 4, 4), _LN2d(dims[0], eps=1e-6)]
        for i, (n, d) in enumerate(zip(depths, dims)):
            if i:
                mods += [_LN2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], d, 2, 2)]
            mods += [_CNBlock(d) for _ in range(n)]
        self.features = nn.Sequential(*mods)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], classes)

    def forward(self, x):
        x = self.features(x).mean((2, 3), keepdim=True)  # global pool, then timm's head LayerNorm2d
        return self.head(self.norm(x.permute(0, 2, 3, 1)).flatten(1))


def convnext_tiny():
    return _ConvNeXt()


# ---- ViT (timm 0.6: explicit attention, q @ k^T * scale, softmax, @ v) -------------------------------------------

class _Attn(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.h, self.scale = heads, (d // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x, bias=None, mask=None):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.h, c // self.h).permute(2, 0, 3, 1, 4).unbind(0)
        a = (q @ k.transpose(-2, -1)) * self.scale
        if bias is not None:
            a = a + bias
        if mask is not None:
            nw = mask.shape[0]
            a = (a.view(b // nw, nw, self.h, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(-1, self.h, n, n)
        a = a.softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class _ViTBlock(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.n1, self.attn = nn.LayerNorm(d, eps=1e-6), _Attn(d, heads)
        self.n2, self.mlp = nn.LayerNorm(d, eps=1e-6), _Mlp(d, 4 * d)

    def forward(self, x):
        x = x + self.attn(self.n1(x))
        return x + self.mlp(self.n2(x))


class _ViT(nn.Module):
    def __init__(self, d, heads, depth=12, patch=16, img=224, classes=1000):
        super().__init__()
        self.patch = nn.Conv2d(3, d, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, (img // patch) ** 2 + 1, d))
        self.blocks = nn.Sequential(*[_ViTBlock(d, heads) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(d, eps=1e-6), nn.Linear(d, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls.expand(x.shape[0], -1, -1), x), dim=1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


# ---- Swin-T (timm 0.6: window 7, shifted windows, relative position bias, patch merging at the end of stages 1-3)

def _windows(x, w):
    b, h, wd, c = x.shape
    return x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def _unwindows(x, w, h, wd):
    b = x.shape[0] // ((h // w) * (wd // w))
    return x.view(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h, wd, -1)


class _SwinBlock(nn.Module):
    def __init__(self, d, heads, res, w, shift):
        super().__init__()
        self.res, self.w, self.heads = res, w, heads
        self.shift = 0 if res <= w else shift
        self.n1, self.attn = nn.LayerNorm(d), _Attn(d, heads)
        self.n2, self.mlp = nn.LayerNorm(d), _Mlp(d, 4 * d)
        self.table = nn.Parameter(torch.zeros((2 * w - 1) ** 2, heads))
        c = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
        rel = (c[:, :, None] - c[:, None, :]).permute(1, 2, 0) + (w - 1)
        self.register_buffer("index", rel[..., 0] * (2 * w - 1) + rel[..., 1], persistent=False)
        self.register_buffer("mask", self._mask() if self.shift else None, persistent=False)

    def _mask(self):
        h = self.res
        img = torch.zeros(1, h, h, 1)
        cnt = 0
        for hs in (slice(0, -self.w), slice(-self.w, -self.shift), slice(-self.shift, None)):
            for ws in (slice(0, -self.w), slice(-self.w, -self.shift), slice(-self.shift, None)):
                img[:, hs, ws, :] = cnt
                cnt += 1
        mw = _windows(img, self.w).squeeze(-1)
        m = mw.unsqueeze(1) - mw.unsqueeze(2)
        return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)

    def forward(self, x):
        b, n, c = x.shape
        h = self.res
        y = self.n1(x).view(b, h, h, c)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        bias = self.table[self.index.reshape(-1)].view(self.w ** 2, self.w ** 2, -1).permute(2, 0, 1).unsqueeze(0)
        y = _unwindows(self.attn(_windows(y, self.w), bias, self.mask), self.w, h, h)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + y.reshape(b, n, c)
        return x + self.mlp(self.n2(x))


class _Merge(nn.Module):
    def __init__(self, d, res):
        super().__init__()
        self.res, self.norm, self.red = res, nn.LayerNorm(4 * d), nn.Linear(4 * d, 2 * d, bias=False)

    def forward(self, x):
        b, n, c = x.shape
        x = x.view(b, self.res, self.res, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.red(self.norm(x.view(b, -1, 4 * c)))


class _Swin(nn.Module):
    def __init__(self, d=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), w=7, img=224, classes=1000):
        super().__init__()
        self.patch, self.pnorm = nn.Conv2d(3, d, 4, 4), nn.LayerNorm(d)
        mods, res = [], img // 4
        for i, (n, hd) in enumerate(zip(depths, heads)):
            mods += [_SwinBlock(d, hd, res, w, 0 if j % 2 == 0 else w // 2) for j in range(n)]
            if i < len(depths) - 1:
                mods.append(_Merge(d, res))
                d, res = 2 * d, res // 2
        self.layers = nn.Sequential(*mods)
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, classes)

    def forward(self, x):
        x = self.pnorm(self.patch(x).flatten(2).transpose(1, 2))
        return self.head(self.norm(self.layers(x)).mean(1))


# ---- MLP-Mixer B/16 ---------------------------------------------------------------------------------------------

class _MixerBlock(nn.Module):
    def __init__(self, d, tokens):
        super().__init__()
        self.n1, self.tok = nn.LayerNorm(d, eps=1e-6), _Mlp(tokens, d // 2)
        self.n2, self.ch = nn.LayerNorm(d, eps=1e-6), _Mlp(d, 4 * d)

    def forward(self, x):
        x = x + self.tok(self.n1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.ch(self.n2(x))


class _Mixer(nn.Module):
    def __init__(self, d=768, depth=12, patch=16, img=224, classes=1000):
        super().__init__()
        self.patch = nn.Conv2d(3, d, patch, patch)
        self.blocks = nn.Sequential(*[_MixerBlock(d, (img // patch) ** 2) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(d, eps=1e-6), nn.Linear(d, classes)

    def forward(self, x):
        x = self.blocks(self.patch(x).flatten(2).transpose(1, 2))
        return self.head(self.norm(x).mean(1))


BUILDERS = {
    "resnet18": lambda: resnet(_Basic, (2, 2, 2, 2)),
    "resnet34": lambda: resnet(_Basic, (3, 4, 6, 3)),
    "resnet50": lambda: resnet(_Bottle, (3, 4, 6, 3)),
    "resnet101": lambda: resnet(_Bottle, (3, 4, 23, 3)),
    "resnet152": lambda: resnet(_Bottle, (3, 8, 36, 3)),
    "wide_resnet50_2": lambda: resnet(_Bottle, (3, 4, 6, 3), base_width=128),
    "resnext50_32x4d": lambda: resnet(_Bottle, (3, 4, 6, 3), groups=32, base_width=4),
    "regnetx_032": regnetx_032,
    "vgg11": lambda: vgg("vgg11"),
    "vgg16": lambda: vgg("vgg16"),
    "mobilenetv2_100": mobilenetv2_100,
    "efficientnet_b0": efficientnet_b0,
    "convnext_tiny": convnext_tiny,
    "vit_tiny_patch16_224": lambda: _ViT(192, 3),
    "vit_small_patch16_224": lambda: _ViT(384, 6),
    "vit_base_patch16_224": lambda: _ViT(768, 12),
    "swin_tiny_patch4_window7_224": lambda: _Swin(),
    "mixer_b16_224": lambda: _Mixer(),
}
