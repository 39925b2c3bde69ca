"""Usable memory: default ECC keeps 1/16 of a GDDR data-centre board's memory (nvidia-smi: a T4 shows 15,360 of
16,384 MiB, an L4 23,034 of 24,576, an A10G 23,028); HBM boards and GeForce / workstation boards keep all of it. A
ResNet-50 fp32 step at batch 256 on an A10 was 'fitting' at 23.67 of 24.0 GiB (review 2026-12-07)."""

from wattlint.hardware import load_gpus
from wattlint.memory import gpu_memory_bytes

MIB = 1 << 20


def test_usable_memory_by_board_class():
    """Every board loses the 1.5 % the driver reserves; GDDR data-centre boards 1/16 more (ECC)."""
    g = load_gpus()
    # 16 GiB = 16,384 MiB x 0.985 = 16,138.24 MiB x 15/16 = 15,129.6 MiB = 15,864,535,449.6 B -> 15,864,535,449
    assert gpu_memory_bytes(g["t4-16gb"]) == 15_864_535_449
    # 24,576 MiB x 0.985 x 15/16 = 22,694.4 MiB = 23,796,803,174.4 B (nvidia-smi's 23,034 MiB total less the reserve)
    assert gpu_memory_bytes(g["l4-24gb"]) == 23_796_803_174
    # HBM: its ECC bits sit beside the data: 81,920 MiB x 0.985 = 80,691.2 MiB = 84,610,855,731.2 B
    assert gpu_memory_bytes(g["a100-sxm4-80gb"]) == 84_610_855_731
    # GeForce: no ECC: 24,576 MiB x 0.985 = 24,207.36 MiB = 25,383,256,719.36 B
    assert gpu_memory_bytes(g["rtx3090-24gb"]) == 25_383_256_719


def test_a10_run_that_needs_more_than_its_usable_memory_does_not_fit(run_cli):
    import json

    code, out, err = run_cli("examples/resnet50.onnx", "--gpu", "a10", "--batch-size", "256", "--precision", "fp32",
                             "--steps", "10", "--format", "json")
    assert code == 0, err
    mem = json.loads(out)["memory"]
    # 24,576 MiB x 0.985 (driver-reserved) x 15/16 (ECC) = 22,694.4 MiB = 23,796,803,174.4 B
    assert mem["gpu_memory_bytes"] == 23_796_803_174
    assert mem["fits"] == (mem["peak_bytes_per_gpu"] <= 23_796_803_174)
    # the review's case: ~21 GiB of activations + their 12 % allocator margin is over the usable memory
    assert mem["peak_bytes_per_gpu"] > 23_796_803_174 and mem["fits"] is False
    assert mem["verdict"] == ("does_not_fit" if 0.95 * mem["peak_bytes_per_gpu"] > 23_796_803_174 else "tight")
    assert any("ECC" in a and "1/16" in a for a in json.loads(out)["assumptions"])
