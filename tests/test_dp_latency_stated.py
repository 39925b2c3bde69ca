"""The data-parallel line states the collective latency it adds (review 2026-12-07: 168 calls x 30 us x log2(8) =
15.1 ms of a 1B model's 36.5 ms all-reduce on 8 H100s was in the time but not in the line)."""

import pytest

torch = pytest.importorskip("torch")

import wattlint  # noqa: E402


def test_all_reduce_latency_is_in_the_line(tmp_path):
    # 25 x Linear(1024, 1024): 25 x (1,048,576 + 1,024) = 26,240,000 parameters
    src = tmp_path / "m.py"
    src.write_text("import torch\n\ndef build():\n    return torch.nn.Sequential(*[torch.nn.Linear(1024, 1024) "
                   "for _ in range(25)])\n")
    e = wattlint.estimate(f"{src}:build", gpu="a100-sxm4-80gb", gpus=8, batch_size=64, steps=1, lint=False,
                          inputs=["x=float32[8,1024]"])
    line = next(a for a in e.assumptions if a.startswith("data parallel over 8 GPUs (8 per node)"))
    # fp32 gradients 26,240,000 x 4 = 104,960,000 B in 25 MiB buckets: ceil(104,960,000 / 26,214,400) = 5 calls;
    # latency 5 x 30 us x log2(8) = 0.45 ms
    assert "latency 5 calls x 30 us x log2(8) (0.45 ms of the step's" in line, line
