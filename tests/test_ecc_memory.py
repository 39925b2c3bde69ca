"""Usable memory: default ECC keeps 1/16 of a GDDR data-centre board's memory (nvidia-smi: a T4 shows 15,360 of
16,384 MiB, an L4 23,034 of 24,576, an A10G 23,028); HBM boards and GeForce / workstation boards keep all of it. A
ResNet-50 fp32 step at batch 256 on an A10 was 'fitting' at 23.67 of 24.0 GiB (review 2026-12-07)."""

from wattlint.hardware import load_gpus
from wattlint.memory import gpu_memory_bytes

MIB = 1 << 20


def test_usable_memory_by_board_class():
    g = load_gpus()
    assert gpu_memory_bytes(g["t4-16gb"]) == 15360 * MIB  # 16 GiB x 15/16, nvidia-smi's figure
    assert gpu_memory_bytes(g["l4-24gb"]) == 23040 * MIB  # nvidia-smi 23,034 (6 MiB below the 1/16 rule)
    assert gpu_memory_bytes(g["a100-sxm4-80gb"]) == 80 * 1024 * MIB  # HBM: its ECC bits sit beside the data
    assert gpu_memory_bytes(g["rtx3090-24gb"]) == 24 * 1024 * MIB  # GeForce: no ECC


def test_a10_run_that_needs_more_than_its_usable_memory_does_not_fit(run_cli):
    import json

    code, out, err = run_cli("examples/resnet50.onnx", "--gpu", "a10", "--batch-size", "256", "--precision", "fp32",
                             "--steps", "10", "--format", "json")
    assert code == 0, err
    mem = json.loads(out)["memory"]
    assert mem["gpu_memory_bytes"] == 23040 * MIB
    assert mem["fits"] == (mem["peak_bytes_per_gpu"] <= 23040 * MIB)
    assert 23040 * MIB < mem["peak_bytes_per_gpu"] <= 24 * 1024 * MIB  # the review's case: fit only without ECC
    assert any("ECC" in a and "1/16" in a for a in json.loads(out)["assumptions"])
