"""The small GPT-2-shaped decoder the parallelism tests trace (h 512, 8 heads, 4 layers, vocab 1000, seq 256: one
second to trace) and the estimate call they share; the ``gpt_config`` fixture is in conftest.py."""

from __future__ import annotations

import json

import wattlint

GPT = dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=512, n_head=8, n_layer=4, n_positions=256,
           vocab_size=1000)
SEQ = 256


def write_gpt_config(folder) -> object:
    p = folder / "config.json"
    p.write_text(json.dumps(GPT))
    return p


def est(src, **kw):
    """wattlint.estimate on an A100 80GB, bf16, seq 256, 10 steps, no lint, with ``kw`` on top."""
    base = dict(gpu="a100-sxm4-80gb", seq_len=SEQ, precision="bf16", steps=10, lint=False)
    base.update(kw)
    return wattlint.estimate(str(src), **base)
