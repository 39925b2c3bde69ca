"""Held-out whole models for validation (src/wattlint/data/validation-models.toml), in plain torch: no torchvision and
no transformers, so the same code builds on the dev machine (meta tensors, for the estimator) and on the GPU
image (real weights, for measurement) whatever library versions are installed there.

Every factory takes no arguments and returns ``(module, example_inputs)`` (the frontend's factory contract).
Language models return ``{"logits": ...}`` so the frontend and ``validate measure`` both train them with
cross-entropy over every position. None of these models is part of a calibration suite (suites hold single ops).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- building blocks -------------------------------------------------------------------------------------------

class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, causal: bool = False, bias: bool = True, kv_heads: int | None = None):
        super().__init__()
        self.h, self.d, self.causal = heads, dim // heads, causal
        self.kvh = kv_heads or heads
        self.q = nn.Linear(dim, dim, bias=bias)
        self.kv = nn.Linear(dim, 2 * self.kvh * self.d, bias=bias)
        self.o = nn.Linear(dim, dim, bias=bias)

    def forward(self, x, rope=None):
        b, s, _ = x.shape
        q = self.q(x).view(b, s, self.h, self.d).transpose(1, 2)
        k, v = self.kv(x).view(b, s, 2, self.kvh, self.d).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)
        if rope is not None:
            q, k = rope(q), rope(k)
        if self.kvh != self.h:
            rep = self.h // self.kvh
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.o(y.transpose(1, 2).reshape(b, s, -1))


class Block(nn.Module):
    """Transformer block: pre-LN (GPT-2, ViT) or post-LN (BERT)."""

    def __init__(self, dim: int, heads: int, mlp: int, causal: bool = False, post_ln: bool = False,
                 dropout: float = 0.1):
        super().__init__()
        self.post_ln = post_ln
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, causal)
        self.fc1, self.fc2 = nn.Linear(dim, mlp), nn.Linear(mlp, dim)
        self.drop = nn.Dropout(dropout)

    def mlp(self, x):
        return self.drop(self.fc2(F.gelu(self.fc1(x))))

    def forward(self, x):
        if self.post_ln:
            x = self.ln1(x + self.drop(self.attn(x)))
            return self.ln2(x + self.mlp(x))
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.mlp(self.ln2(x))


class Encoder(nn.Module):
    """BERT-like encoder with an MLM head (post-LN) or GPT-like decoder with an LM head (pre-LN, causal)."""

    def __init__(self, vocab: int, dim: int, layers: int, heads: int, seq: int, causal: bool):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(seq, dim)
        self.drop = nn.Dropout(0.1)
        self.blocks = nn.ModuleList([Block(dim, heads, 4 * dim, causal=causal, post_ln=not causal)
                                     for _ in range(layers)])
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.causal = causal

    def forward(self, ids):
        s = ids.shape[1]
        pos = torch.arange(s, device=ids.device)
        x = self.drop(self.tok(ids) + self.pos(pos))
        for b in self.blocks:
            x = b(x)
        return {"logits": self.head(self.ln(x))}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.w = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.w, self.eps)


class Rope(nn.Module):
    def __init__(self, d: int, seq: int):
        super().__init__()
        self.d, self.seq = d, seq

    def forward(self, x):
        s, d = x.shape[-2], x.shape[-1]
        inv = 1.0 / (10000 ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))
        ang = torch.arange(s, device=x.device, dtype=torch.float32)[:, None] * inv[None]
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int, ffn: int, seq: int):
        super().__init__()
        self.n1, self.n2 = RMSNorm(dim), RMSNorm(dim)
        self.attn = Attention(dim, heads, causal=True, bias=False, kv_heads=kv_heads)
        self.rope = Rope(dim // heads, seq)
        self.gate, self.up = nn.Linear(dim, ffn, bias=False), nn.Linear(dim, ffn, bias=False)
        self.down = nn.Linear(ffn, dim, bias=False)

    def forward(self, x):
        x = x + self.attn(self.n1(x), self.rope)
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, vocab: int, dim: int, layers: int, heads: int, kv_heads: int, ffn: int, seq: int):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList([LlamaBlock(dim, heads, kv_heads, ffn, seq) for _ in range(layers)])
        self.norm = RMSNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, ids):
        x = self.tok(ids)
        for b in self.blocks:
            x = b(x)
        return {"logits": self.head(self.norm(x))}


class ViT(nn.Module):
    def __init__(self, img: int, patch: int, dim: int, layers: int, heads: int, classes: int = 1000):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        n = (img // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, 4 * dim, dropout=0.0) for _ in range(layers)])
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x[:, 0]))


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int, tok_mlp: int, ch_mlp: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.t1, self.t2 = nn.Linear(tokens, tok_mlp), nn.Linear(tok_mlp, tokens)
        self.c1, self.c2 = nn.Linear(dim, ch_mlp), nn.Linear(ch_mlp, dim)

    def forward(self, x):
        y = self.ln1(x).transpose(1, 2)
        x = x + self.t2(F.gelu(self.t1(y))).transpose(1, 2)
        return x + self.c2(F.gelu(self.c1(self.ln2(x))))


class Mixer(nn.Module):
    def __init__(self, img: int, patch: int, dim: int, layers: int, tok_mlp: int, ch_mlp: int, classes: int = 1000):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        n = (img // patch) ** 2
        self.blocks = nn.ModuleList([MixerBlock(n, dim, tok_mlp, ch_mlp) for _ in range(layers)])
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x).mean(1))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int):
        super().__init__()
        cout = mid * 4
        self.c1, self.b1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.c2, self.b2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
        self.c3, self.b3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = F.relu(self.b2(self.c2(y)))
        y = self.b3(self.c3(y))
        return F.relu(y + (self.down(x) if self.down is not None else x))


class ResNet(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), width: int = 64, classes: int = 1000, small_input: bool = False):
        super().__init__()
        if small_input:
            self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], width
        for i, n in enumerate(layers):
            mid = width * 2 ** i
            for j in range(n):
                blocks.append(Bottleneck(cin, mid, 2 if (j == 0 and i > 0) else 1))
                cin = mid * 4
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.ln = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.ln(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), classes: int = 1000, stem: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, dims[0], stem, stem)
        self.stem_ln = nn.LayerNorm(dims[0])
        stages = []
        for i, (d, n) in enumerate(zip(dims, depths)):
            mods: list[nn.Module] = []
            if i > 0:
                mods.append(nn.Conv2d(dims[i - 1], d, 2, 2))
            mods.extend(ConvNeXtBlock(d) for _ in range(n))
            stages.append(nn.Sequential(*mods))
        self.stages = nn.Sequential(*stages)
        self.ln = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.stem_ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = self.stages(x)
        return self.head(self.ln(x.mean((2, 3))))


class LstmLM(nn.Module):
    def __init__(self, vocab: int, emb: int, hidden: int, layers: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, num_layers=layers, batch_first=True)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids):
        y, _ = self.lstm(self.drop(self.emb(ids)))
        return {"logits": self.head(self.drop(y))}


class UNet(nn.Module):
    def __init__(self, base: int = 32, depth: int = 4, cin: int = 3, cout: int = 1):
        super().__init__()

        def blk(a, b):
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(),
                                 nn.Conv2d(b, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU())
        self.downs = nn.ModuleList()
        c = cin
        chans = []
        for i in range(depth):
            self.downs.append(blk(c, base * 2 ** i))
            c = base * 2 ** i
            chans.append(c)
        self.mid = blk(c, c * 2)
        c = c * 2
        self.ups = nn.ModuleList()
        self.upconv = nn.ModuleList()
        for sc in reversed(chans):
            self.upconv.append(nn.ConvTranspose2d(c, sc, 2, 2))
            self.ups.append(blk(2 * sc, sc))
            c = sc
        self.out = nn.Conv2d(c, cout, 1)

    def forward(self, x):
        skips = []
        for d in self.downs:
            x = d(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.mid(x)
        for up, blk, s in zip(self.upconv, self.ups, reversed(skips)):
            x = blk(torch.cat([up(x), s], 1))
        return self.out(x)


class MLP(nn.Module):
    def __init__(self, sizes=(784, 2048, 2048, 10)):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def _img(b, s=224):
    return torch.randn(b, 3, s, s)


def _ids(b, s, v):
    return torch.randint(0, v, (b, s))


# ---- GPU list (data-centre sizes) ------------------------------------------------------------------------------

def resnet50():
    return ResNet((3, 4, 6, 3)), (_img(2),)


def convnext_tiny():
    return ConvNeXt(), (_img(2),)


def vit_b16():
    return ViT(224, 16, 768, 12, 12), (_img(2),)


def mixer_b16():
    return Mixer(224, 16, 768, 12, 384, 3072), (_img(2),)


def bert_base():
    return Encoder(30522, 768, 12, 12, 512, causal=False), (_ids(2, 512, 30522),)


def gpt2_small():
    return Encoder(50257, 768, 12, 12, 1024, causal=True), (_ids(2, 1024, 50257),)


def llama_1b():
    """TinyLlama-1.1B-like: dim 2048, 22 layers, 32 heads (4 KV heads), SwiGLU 5632, vocab 32000."""
    return Llama(32000, 2048, 22, 32, 4, 5632, 2048), (_ids(1, 2048, 32000),)


def lstm_lm():
    return LstmLM(32000, 1024, 1024, 2), (_ids(2, 256, 32000),)


def unet():
    return UNet(64, 4), (_img(2, 256),)


# ---- CPU list (sized for a 1-thread CPU: 20-400 ms per step) ---------------------------------------------------

def cnn_small():
    return ResNet((1, 1, 1), width=16, classes=10, small_input=True), (_img(2, 32),)


def vit_tiny():
    return ViT(32, 4, 128, 4, 4, classes=10), (_img(2, 32),)


def bert_tiny():
    return Encoder(8000, 128, 2, 4, 128, causal=False), (_ids(2, 128, 8000),)


def gpt_tiny():
    return Encoder(8000, 192, 3, 6, 128, causal=True), (_ids(2, 128, 8000),)


def lstm_small():
    return LstmLM(5000, 128, 256, 2), (_ids(2, 64, 5000),)


def mlp_mnist():
    return MLP((784, 1024, 1024, 10)), (torch.randn(2, 784),)


def mixer_tiny():
    return Mixer(32, 4, 128, 4, 64, 256, classes=10), (_img(2, 32),)


def convnext_nano():
    return ConvNeXt((1, 1, 2, 1), (32, 64, 128, 256), classes=10, stem=2), (_img(2, 32),)
