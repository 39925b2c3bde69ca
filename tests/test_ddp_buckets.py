"""DDP's all-reduce buckets: torch.nn.parallel.DistributedDataParallel's default gradient_as_bucket_view=False keeps
a second copy of the gradients in its bucket buffers (pytorch/pytorch PR #41954). A pytorch-stack run over more than
one data-parallel GPU without sharding holds it; one GPU, ZeRO / FSDP sharding and the megatron stack do not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]


def _memory(run_cli, *extra):
    code, out, err = run_cli(str(ROOT / "examples" / "torch_models.py") + ":tiny_gpt", "--gpu", "h100",
                             "--steps", "10", "--format", "json", *extra)
    assert code == 0, err
    doc = json.loads(out)
    return doc["memory"], doc["assumptions"]


def _params() -> int:
    import importlib.util

    spec = importlib.util.spec_from_file_location("torch_models", ROOT / "examples" / "torch_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return sum(p.numel() for p in mod.tiny_gpt()[0].parameters() if p.requires_grad)  # the oracle: torch's own count


def test_two_data_parallel_gpus_hold_a_second_copy_of_the_gradients(run_cli):
    one, _ = _memory(run_cli, "--gpus", "1")
    two, notes = _memory(run_cli, "--gpus", "2")
    expect = 4 * _params()  # fp32 gradients (default precision), 4 bytes per trainable parameter
    assert two["breakdown"]["ddp_buckets"] == expect == two["breakdown"]["gradients"]
    assert "ddp_buckets" not in one["breakdown"]
    assert two["peak_bytes_per_gpu"] - one["peak_bytes_per_gpu"] == expect  # the same micro-batch per GPU
    assert any("gradient_as_bucket_view" in n for n in notes)


@pytest.mark.parametrize("flags", [("--sharding", "zero2"), ("--training-stack", "megatron", "--precision", "bf16")])
def test_sharded_and_megatron_runs_hold_no_ddp_buckets(run_cli, flags):
    mem, _ = _memory(run_cli, "--gpus", "2", *flags)
    assert "ddp_buckets" not in mem["breakdown"]


@pytest.mark.parametrize("flags", [("--sharding", "zero1"), ("--context-parallel", "2")])
def test_zero1_over_ddp_and_a_context_parallel_group_hold_the_buckets(run_cli, flags):
    # zero1 on the pytorch stack is PyTorch's ZeroRedundancyOptimizer over DDP (docs/ENERGY_MODEL.md); with
    # --context-parallel 2 on 2 GPUs the gradients are still all-reduced over 2 ranks (review s52)
    mem, _ = _memory(run_cli, "--gpus", "2", *flags)
    assert mem["breakdown"]["ddp_buckets"] == 4 * _params()
