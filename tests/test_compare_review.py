"""Choosing hardware (review of --compare and WL203): a candidate without the asked precision is costed as the
precision it falls back to traces, a WL203 candidate is re-estimated in its own nodes, and a saving on a GPU with no
more compute and no more bandwidth is not claimed."""

from __future__ import annotations

from pathlib import Path

import pytest

import wattlint
from wattlint.hardware import resolve_gpu
from wattlint.plan import on_gpu

ROOT = Path(__file__).resolve().parents[1]
RESNET = str(ROOT / "examples" / "resnet50.onnx")


@pytest.mark.parametrize("gpu, precision", [("gaudi3", "bf16"), ("tesla-p40", "fp32")])
def test_a_fallback_row_is_the_run_at_the_precision_it_falls_back_to(gpu, precision):
    """fp16 on Gaudi 3 (bf16 only) ran its GEMMs at the vector rate (5x slow); on a P40 (no fast fp16) the fp16
    trace was priced 'as fp32' with 2-byte tensors and half the activations. The row must be the GPU's own run."""
    kw = dict(batch_size=32, steps=100, lint=False)
    from wattlint.api import estimate_many

    row = estimate_many(RESNET, ["a100", gpu], precision="fp16", **kw)[1]
    alone = wattlint.estimate(RESNET, gpu=gpu, precision=precision, **kw)
    assert row.plan.precision == precision
    assert row.per_step.time_s == pytest.approx(alone.per_step.time_s, rel=1e-9)
    assert row.memory.peak_bytes_per_gpu == alone.memory.peak_bytes_per_gpu
    assert any(f"--precision fp16 is not available on {row.gpu.key}" in a for a in row.assumptions)


def test_a_wl203_candidate_gets_its_own_node_size_and_network_unless_the_user_gave_them():
    h100, _ = resolve_gpu("h100")
    nvl, _ = resolve_gpu("h200-nvl")
    from wattlint.plan import build_plan

    g = wattlint.analyze(RESNET, batch_size=64)
    plan = build_plan(g, gpu=h100, batch_size=4096, steps=10, gpus=64)
    assert plan.internode_gbps == 3200.0  # 8 x 400 Gbit/s NDR, the H100 class default
    moved = on_gpu(plan, nvl)
    # H200 NVL is a PCIe card: its class default, 100 Gbit/s Ethernet per node (energy.system.default_internode_gbps)
    assert moved.gpus_per_node == 8 and moved.internode_gbps == 100.0
    given = build_plan(g, gpu=h100, batch_size=4096, steps=10, gpus=64, internode_gbps=800.0, gpus_per_node=4)
    kept = on_gpu(given, nvl)
    assert kept.internode_gbps == 800.0 and kept.gpus_per_node == 4


def test_wl203_claims_no_saving_on_the_same_chip_at_a_lower_limit():
    """H200 NVL is the H200 SXM's chip with less compute and the same bandwidth: faster than a (measured) H200 SXM
    is not explainable and is not recommended."""
    e = wattlint.estimate(RESNET, gpu="h200", precision="fp16", batch_size=16, steps=1000)
    assert not any(f.code == "WL203" and "h200-nvl" in f.message for f in e.findings), \
        [f.message for f in e.findings if f.code == "WL203"]


def test_wl203_states_host_power_per_gpu_beside_gpu_power_per_gpu():
    """On 8 GPUs the message put the job's host power (8 x 350 W) beside one GPU's average power."""
    e = wattlint.estimate(RESNET, gpu="h100", gpus=8, batch_size=256, steps=100, precision="bf16")
    f = next(f for f in e.findings if f.code == "WL203")
    per_gpu = e.per_step.host_energy_j / e.per_step.time_s / 8
    # the literal --gpu switch (2026-12-07): the candidate's own host class beside this machine's, both per GPU
    assert f" W per GPU instead of {per_gpu:.0f} W (its platform class" in f.message, f.message


def test_the_compare_table_says_how_much_of_the_step_its_energy_model_priced():
    """The one-GPU report says 'public-fit (18 % of the op time, the spec-sheet prior the rest)'; the compare table
    said 'public-fit' for a row it priced 18 % of."""
    from wattlint.api import estimate_many
    from wattlint.report.tables import compare_rows

    ests = estimate_many(RESNET, ["a100", "h100"], precision="fp16", batch_size=32, steps=100, lint=False)
    header, rows, _ = compare_rows(ests)
    col = header.index("model")
    for e, row in zip(ests, rows):
        assert e.calibration == "public-fit" and e.calibration_coverage < 0.995
        assert row[col] == f"public-fit ({e.calibration_coverage:.0%} of op time)"


@pytest.mark.parametrize("sharding", ["zero2", "zero3"])
def test_zero2_or_zero3_with_pipeline_stages_is_refused(gpt_config, run_cli, sharding):
    """DeepSpeed's pipeline engine asserts 'ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism': the plan
    was costed silently. ZeRO-1 and FSDP (torchtitan's FSDP2 with pipeline stages) stay accepted."""
    base = [str(gpt_config), "--gpu", "a100", "--gpus", "4", "--pipeline-parallel", "2", "--batch-size", "4",
            "--seq-len", "256", "--steps", "1"]
    code, out, err = run_cli(*base, "--sharding", sharding)
    assert code == 2 and "DeepSpeed's pipeline engine runs ZeRO stage 0 or 1 only" in err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    for ok in ("zero1", "fsdp"):
        assert run_cli(*base, "--sharding", ok, "--format", "json")[0] == 0
