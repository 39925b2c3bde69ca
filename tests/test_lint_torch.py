"""Rules on real PyTorch traces (torch frontend + the product's estimator), not synthetic records."""

from __future__ import annotations

import sys
import textwrap

import pytest

pytest.importorskip("torch")

MODELS = textwrap.dedent('''
    import math
    import torch.nn as nn
    import torch.nn.functional as F
    import torch.nn.utils.prune as prune


    class ExplicitAttn(nn.Module):
        def __init__(self, d=256, h=4, fused=False):
            super().__init__()
            self.h, self.fused = h, fused
            self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)

        def forward(self, x):
            b, s, d = x.shape
            q, k, v = [t.view(b, s, self.h, d // self.h).transpose(1, 2) for t in self.qkv(x).chunk(3, -1)]
            if self.fused:
                a = F.scaled_dot_product_attention(q, k, v)
            else:
                a = (q @ k.transpose(-2, -1) / math.sqrt(d // self.h)).softmax(-1) @ v
            return self.o(a.transpose(1, 2).reshape(b, s, d))


    def explicit():
        return ExplicitAttn()


    def fused():
        return ExplicitAttn(fused=True)


    def low_rank():
        return nn.Sequential(nn.Linear(256, 192, bias=False), nn.Linear(192, 256), nn.ReLU(), nn.Linear(256, 10))


    def low_rank_ok():
        return nn.Sequential(nn.Linear(256, 32, bias=False), nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 10))


    def pruned():
        m = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
        prune.l1_unstructured(m[0], "weight", amount=0.9)
        return m


    def dense():
        return nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))


    def blocks():
        return nn.Sequential(*[nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 1024))
                               for _ in range(2)])
''')


@pytest.fixture(scope="module")
def est(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    (d / "lint_models.py").write_text(MODELS)
    from wattlint.api import estimate

    def run(attr, **kw):
        kw.setdefault("precision", "bf16")
        kw.setdefault("steps", 1000)
        e = estimate(f"{d / 'lint_models.py'}:{attr}", gpu="a100-sxm4-80gb", **kw)
        return {f.code: f for f in e.findings}

    return run


SEQ = ["x=float32[16,512,256]"]


def test_wl103_explicit_vs_fused_attention(est):
    f = est("explicit", inputs=SEQ)["WL103"]
    assert "512x512" in f.message
    assert f.saving_pct > 5
    assert "WL103" not in est("fused", inputs=SEQ)


def test_wl106_low_rank_pair(est):
    f = est("low_rank", inputs=["x=float32[4096,256]"])["WL106"]
    assert "rank 192 factorization of a 256x256 layer" in f.message and "break-even rank 128" in f.message
    assert "WL106" not in est("low_rank_ok", inputs=["x=float32[4096,256]"])


def test_wl105_pruning_mask(est):
    f = est("pruned", inputs=["x=float32[256,1024]"])["WL105"]
    assert "'0'" in f.message and f.layer == "0"
    assert "WL105" not in est("dense", inputs=["x=float32[256,1024]"])


def test_wl107_checkpointing_on_small_model(est):
    # two-Linear blocks: torch's non-reentrant checkpoint reruns Linear + ReLU in backward to rebuild the second
    # Linear's saved input, which costs time the small model does not need to spend
    out = est("blocks", inputs=["x=float32[256,1024]"], activation_checkpointing=True)
    assert "WL107" in out and "fits without it" in out["WL107"].message
    assert "WL107" not in est("blocks", inputs=["x=float32[256,1024]"])
    # a flat Sequential checkpoints single layers: torch's recompute stops at the transposed weight (a Linear's
    # saved tensors are its input and W^T), so nothing is recomputed and nothing would be saved by turning it off
    assert "WL107" not in est("dense", inputs=["x=float32[256,1024]"], activation_checkpointing=True)


def test_wl101_fp32_on_a100(est):
    f = est("dense", inputs=["x=float32[4096,1024]"], precision="fp32")["WL101"]
    assert "bf16 autocast" in f.message and f.saving_pct > 20
    assert "WL101" not in est("dense", inputs=["x=float32[4096,1024]"])


def test_no_torch_import_from_lint():
    # the lint package itself stays torch-free (checked in a clean interpreter)
    import subprocess

    code = ("import sys, wattlint.lint.engine, wattlint.lint.registry as r; r.all_rules(); "
            "import wattlint.commands.check, wattlint.config, wattlint.cache; "
            "print([m for m in ('torch', 'onnx', 'numpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_wl107_fires_when_the_traced_activations_fit_without_checkpointing(tmp_path):
    """GPT-2-shaped decoder (4 layers, h 512, seq 256), bf16, micro-batch 384 on a 24 GB L4: without checkpointing
    it needs 18.9 GiB (the estimate of the same plan traced without checkpointing, the oracle). WL107 re-estimated it
    from the forward pass's written bytes (an upper bound ~2x the saved tensors), which did not fit, and stayed
    silent; it now re-estimates from what the checkpointed blocks would have saved, and says the oracle's figure."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from _parallel_fixtures import est, write_gpt_config

    cfg = write_gpt_config(tmp_path)
    plain = est(cfg, gpu="l4-24gb", batch_size=384)
    assert plain.memory.fits
    ckpt = est(cfg, gpu="l4-24gb", batch_size=384, activation_checkpointing=True, lint=True)
    wl107 = [f.message for f in ckpt.findings if f.code == "WL107"]
    assert len(wl107) == 1
    # of the L4's usable 22.2 GiB: 24 GiB less the 1.5 % the driver reserves (x 0.985 = 23.64 GiB), less the 1/16
    # its default ECC keeps (nvidia-smi: 23,034 MiB): 23.64 x 15/16 = 22.1625 GiB
    assert f"fits without it ({plain.memory.peak_bytes_per_gpu / 2**30:.1f} of 22.2 GiB)" in wl107[0]
