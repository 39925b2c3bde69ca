"""GH200 Grace Hopper Superchip: its two database rows (96 GB HBM3, 144 GB HBM3e) resolve, sit in the GH100 chip
group with the H100/H200, carry the H100 SXM's dense peaks and their own memory bandwidth, estimate, and take the
llm-foundry 2023 Hopper GEMM rule as the H100 does."""

from __future__ import annotations

import dataclasses

import pytest

from wattlint import framework
from wattlint.energy import prior
from wattlint.hardware import gpu_from_nvml_name, load_gpus, resolve_gpu
from wattlint.types import CostGraph, ModelInfo, OpKind, OpRecord, Phase


def test_gh200_resolves_to_the_96gb_part_and_says_so():
    spec, note = resolve_gpu("gh200")
    assert spec.key == "gh200-96gb"
    assert note == f"gpu 'gh200' resolved to gh200-96gb ({spec.name})"
    assert resolve_gpu("grace-hopper")[0].key == "gh200-96gb"
    assert resolve_gpu("gh200-144gb") == (load_gpus()["gh200-144gb"], None)


@pytest.mark.parametrize("nvml,key", [("NVIDIA GH200 480GB", "gh200-96gb"),
                                      ("NVIDIA GH200 144G HBM3e", "gh200-144gb")])
def test_nvml_names_map_to_the_gh200_rows_not_the_h200(nvml, key):
    assert gpu_from_nvml_name(nvml).key == key


def test_gh200_is_in_the_h100s_chip_group():
    g = load_gpus()
    assert prior.chip_group(g["h100-sxm5-80gb"]) == "GH100"
    for key in ("gh200-96gb", "gh200-144gb"):
        assert prior.chip_group(g[key]) == prior.chip_group(g["h100-sxm5-80gb"]), key
        assert prior.chip_group(g[key]) in prior.HOPPER_GEMM_2023_CHIPS
        assert prior.memory_kind(g[key]) == "hbm"


def test_gh200_peaks_bandwidth_and_flags():
    g = load_gpus()
    h100 = g["h100-sxm5-80gb"]
    small, big = g["gh200-96gb"], g["gh200-144gb"]
    for spec in (small, big):
        assert spec.peak_tflops["bf16"] == pytest.approx(989.4)
        assert dict(spec.peak_tflops) == dict(h100.peak_tflops)
        assert spec.sm_count == 132 and spec.nvlink_gbs == 900
        # only the module power (Grace CPU + LPDDR5X included, 450-1000 W) is published: 700 W is an estimate
        assert spec.tdp_w == 700 and "tdp_w" in spec.unconfirmed and "module" in spec.sources["tdp_w"]
        assert spec.idle_estimated and "estimate" in spec.sources["idle_w"].lower()
    assert (small.memory_gb, small.memory_bw_gbs) == (96, 4000)
    assert (big.memory_gb, big.memory_bw_gbs) == (144, 4900)


def test_a_small_estimate_runs_on_gh200():
    torch = pytest.importorskip("torch")
    import wattlint

    est = wattlint.estimate(torch.nn.Linear(64, 32), gpu="gh200", steps=1, inputs=["x=float32[8,64]"], lint=False)
    assert est.gpu.key == "gh200-96gb"
    assert est.per_step.time_s > 0 and est.per_step.gpu_energy_j > 0
    assert any("resolved to gh200-96gb" in a for a in est.assumptions)


def _gemm(version=None):
    """One 4096^3 bf16 matmul, tagged by ``--torch-version`` (as tests/test_framework.py builds it)."""
    mm = OpRecord(op="aten.mm.default", kind=OpKind.MATMUL, module="fc", phase=Phase.FORWARD, dtype="bfloat16",
                  flops=2 * 4096**3, bytes_read=2 * 2 * 4096**2, bytes_written=2 * 4096**2,
                  dims=(("b", 1), ("m", 4096), ("n", 4096), ("k", 4096)))
    g = CostGraph(model=ModelInfo(source="t", format="torch", params=4096**2, param_bytes=2 * 4096**2),
                  records=(mm,), micro_batch=8, precision="bf16", extra={"activation_bytes": 0})
    return framework.apply(g, version).records[0] if version else mm


@pytest.mark.parametrize("key", ["h100-sxm5-80gb", "gh200-96gb", "gh200-144gb"])
def test_hopper_2023_gemm_rule_applies_to_gh200_as_to_h100(key):
    """Mirror of test_framework's HOPPER_GEMM_2023 check: a matmul tagged by --torch-version 2.0 runs at 0.71 of
    today's rate, its energy growing only by idle power over the added time; FP32 (CUDA cores) is untouched."""
    gpu = resolve_gpu(key)[0]
    new, old = _gemm(), _gemm("2.0")
    assert old.dim("gemm_2023") == 1
    t, o = prior.op_prior(new, gpu, "bf16"), prior.op_prior(old, gpu, "bf16")
    gap = prior.GAP_S
    assert t.bound == o.bound == "compute"
    assert o.time_s - gap == pytest.approx((t.time_s - gap) / prior.HOPPER_GEMM_2023, rel=1e-9)
    assert prior.HOPPER_GEMM_2023 == 0.71
    assert o.energy_j == pytest.approx(t.energy_j + gpu.idle_w * (o.time_s - t.time_s), rel=1e-9)
    f_old, f_new = (dataclasses.replace(r, dtype="float32") for r in (old, new))
    assert prior.op_prior(f_old, gpu, "default") == prior.op_prior(f_new, gpu, "default")


def test_gh200_prices_like_an_h100_on_compute_and_faster_on_memory():
    """Same die, same peaks, same stored power limit: a compute-bound GEMM takes about the H100 SXM's time (within
    1 %: idle 105 vs 100 W and the faster HBM's power move the power-limited clock a little); a streaming op is
    faster (4.9 vs 3.35 TB/s)."""
    g = load_gpus()
    h100, gh = g["h100-sxm5-80gb"], g["gh200-144gb"]
    mm = _gemm()
    assert prior.op_prior(mm, gh, "bf16").time_s == pytest.approx(prior.op_prior(mm, h100, "bf16").time_s, rel=0.01)
    add = OpRecord(op="aten.add.Tensor", kind=OpKind.ELEMENTWISE, module="x", phase=Phase.FORWARD, dtype="bfloat16",
                   flops=256 * 2**20, bytes_read=2 * 2 * 256 * 2**20, bytes_written=2 * 256 * 2**20,
                   dims=(("n", 256 * 2**20),))
    assert prior.op_prior(add, gh, "bf16").time_s < prior.op_prior(add, h100, "bf16").time_s
