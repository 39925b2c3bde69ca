"""--torch-version: the PyTorch release of the run sets optimizer / attention defaults, TF32 matmuls and which
depthwise kernels run (wattlint.framework). Each expectation is a documented PyTorch default with its release."""

from __future__ import annotations

import dataclasses

import pytest

from wattlint import framework
from wattlint.energy import prior
from wattlint.hardware import resolve_gpu
from wattlint.plan import build_plan
from wattlint.types import CostGraph, InputError, ModelInfo, OpKind, OpRecord, Phase


def test_versions_parse_and_bad_ones_exit_2():
    assert framework.parse("1.10") == (1, 10)
    assert framework.parse("1.10.0a0+ecc3718") == (1, 10)  # NGC 21.07's torch.__version__
    assert framework.parse("2.1") == (2, 1)
    assert framework.parse(None) is None
    for bad in ("2", "one.ten", "1.10.x", ""):
        with pytest.raises(InputError, match="MAJOR.MINOR"):
            framework.parse(bad)


def test_defaults_change_at_the_documented_releases():
    v = framework.parse
    assert framework.default_optimizer_impl(v("1.13")) == "for-loop"  # foreach default on CUDA from 2.0
    assert framework.default_optimizer_impl(v("2.0")) == "foreach"
    assert framework.default_optimizer_impl(None) == "foreach"
    assert framework.default_attention(v("1.13")) == "eager"  # SDPA from 2.0
    assert framework.default_attention(v("2.0")) == "sdpa"
    assert not framework.cudnn_fp16_depthwise(v("1.10")) and framework.cudnn_fp16_depthwise(v("1.11"))
    assert not framework.tf32_matmuls_by_default(v("1.6"))  # allow_tf32 arrived in 1.7 ...
    assert framework.tf32_matmuls_by_default(v("1.7")) and framework.tf32_matmuls_by_default(v("1.11"))
    assert not framework.tf32_matmuls_by_default(v("1.12"))  # ... and defaulted to False from 1.12


def _graph(version=None):
    rec = OpRecord(op="aten.mm.default", kind=OpKind.MATMUL, module="fc", phase=Phase.FORWARD, dtype="float32",
                   flops=2 * 1024**3, bytes_read=8 * 1024**2, bytes_written=4 * 1024**2,
                   dims=(("b", 1), ("m", 1024), ("n", 1024), ("k", 1024)))
    g = CostGraph(model=ModelInfo(source="t", format="torch", params=1024**2, param_bytes=4 * 1024**2),
                  records=(rec,), micro_batch=8, precision="fp32", extra={"activation_bytes": 0})
    return framework.apply(g, version)


def test_tf32_matmuls_under_default_precision_on_ampere_only_for_1_7_to_1_11():
    a100, v100 = resolve_gpu("a100-sxm4-80gb")[0], resolve_gpu("v100-sxm2-16gb")[0]
    p = build_plan(_graph("1.10"), gpu=a100, steps=1, batch_size=8)
    assert p.precision == "tf32" and any("torch 1.10 ran matmuls" in a for a in p.assumptions)
    assert build_plan(_graph("1.12"), gpu=a100, steps=1, batch_size=8).precision == "default"
    assert build_plan(_graph("1.10"), gpu=v100, steps=1, batch_size=8).precision == "default"  # no TF32 on Volta
    assert build_plan(_graph("1.10"), gpu=a100, steps=1, batch_size=8, precision="fp32").precision == "fp32"


def test_a_torch_version_older_than_the_gpus_first_official_build_is_stated():
    """H100 (sm_90) needs CUDA 11.8, first in PyTorch 2.0's wheels; A100 (sm_80) CUDA 11.0, PyTorch 1.7; a V100 runs
    every modelled version. Stated as an assumption (a --compare across generations must still run), not refused."""
    h100, a100, v100 = (resolve_gpu(k)[0] for k in ("h100-sxm5-80gb", "a100-sxm4-80gb", "v100-sxm2-16gb"))

    def line(version, gpu):
        p = build_plan(_graph(version), gpu=gpu, steps=1, batch_size=8)
        return [a for a in p.assumptions if "official CUDA builds" in a]

    assert line("1.13", h100) == ["--torch-version 1.13: PyTorch's official CUDA builds reach this GPU (GH100: sm_90, "
                                  "CUDA 11.8) from 2.0; the run's kernels are priced as a build that runs on it"]
    assert line("2.0", h100) == [] and line("1.7", a100) == [] and line("1.10", v100) == []
    assert len(line("1.6", a100)) == 1


def _depthwise_fp16(tagged: bool):
    # QuartzNet-style 1-D depthwise conv, 256 channels, 33 taps, stride 1, batch 48 x 512 frames, in fp16
    x, w = (48, 256, 512), (256, 1, 33)
    dims = (("b", 256), ("m", 48 * 512), ("n", 1), ("k", 33)) + ((("dw_native", 1),) if tagged else ())
    return OpRecord(op="aten.convolution.default", kind=OpKind.CONV, module="dw", phase=Phase.FORWARD,
                    dtype="float16", shapes=(x, w), flops=2 * 48 * 512 * 256 * 33, bytes_read=2 * (48 * 256 * 512),
                    bytes_written=2 * 48 * 256 * 512, dims=dims)


def test_fp16_depthwise_runs_pytorch_kernels_before_1_11():
    assert prior.native_depthwise(_depthwise_fp16(False)) == ""  # torch >= 1.11: cuDNN's fp16 depthwise path
    assert prior.native_depthwise(_depthwise_fp16(True)) == "generic"  # 33 taps: the looped kernel
    g = dataclasses.replace(_graph(), records=(dataclasses.replace(_depthwise_fp16(False)),))
    tagged = framework.apply(g, "1.10")
    assert tagged.records[0].dim("dw_native") == 1 and tagged.extra["torch_version"] == "1.10"
    assert any("PyTorch's own kernels" in a for a in tagged.assumptions)
    assert framework.apply(g, "1.11").records[0].dim("dw_native", 0) == 0
    a100 = resolve_gpu("a100-sxm4-80gb")[0]
    t_native = prior.op_prior(tagged.records[0], a100, "fp16").time_s
    t_cudnn = prior.op_prior(g.records[0], a100, "fp16").time_s
    # the looped forward kernel spends 1.4 SM clocks per output plus 33 taps / 6.6 multiply-adds per SM clock
    # (prior.DW_NATIVE_FWD_OUT_SM_CLK, DW_NATIVE_MACS_PER_SM_CLK) = 6.4 SM clocks per output: 48 x 256 x 512 =
    # 6,291,456 outputs x 6.4 = 40.27 M SM clocks / (108 SMs x 1410 MHz) = 0.264 ms, over the partial last wave
    # (48 x 256 x 512 threads / (2048 x 108) = 28.4 waves -> 0.98 busy) + a 4 us kernel gap = 0.274 ms; far above
    # the bandwidth-bound cuDNN path
    outputs = 48 * 512 * 256
    waves = 48 * 256 * 512 / (2048 * a100.sm_count)
    busy = outputs * (prior.DW_NATIVE_FWD_OUT_SM_CLK + 33 / prior.DW_NATIVE_MACS_PER_SM_CLK["forward"]) / (
        a100.sm_count * a100.boost_mhz * 1e6)
    assert t_native == pytest.approx(busy / (waves / 29) + prior.GAP_S, rel=0.05)
    assert t_native > 3 * t_cudnn


def test_cli_torch_version_sets_the_optimizer_and_attention_of_a_torch_source(run_cli, tmp_path):
    pytest.importorskip("torch")
    src = tmp_path / "m.py"
    src.write_text("import torch.nn as nn\n\ndef build():\n    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), "
                   "nn.Linear(64, 8))\n")
    code, out, err = run_cli("analyze", f"{src}:build", "--input", "x=float32[4,64]", "--torch-version", "1.10",
                             "--format", "json")
    assert code == 0, err
    import json

    doc = json.loads(out)
    assert any("torch 1.10: single-tensor (for-loop) optimizer" in a for a in doc["assumptions"])
    # AdamW for-loop: 8 element-wise ops per parameter tensor (4 tensors) = 32 optimizer kernels
    assert any("foreach=False" in a for a in doc["assumptions"])
    assert any("torch 1.10: attention as separate GEMM + softmax" in a for a in doc["assumptions"])
    # AdamW for-loop: 8 element-wise ops per parameter tensor (4 tensors) = 32 optimizer kernels, + 4 zero_grad
    # fills (set_to_none=False before 2.0) = 36; 2.1: 8 foreach kernels, gradients set to None (no fill)
    from wattlint.frontends.source import analyze

    def opt_records(version):
        g = analyze(f"{src}:build", inputs=["x=float32[4,64]"], torch_version=version)
        return sum(1 for r in g.records if r.phase is Phase.OPTIMIZER)
    assert opt_records("1.10") == 32 + 4 and opt_records("2.1") == 8


def _attention_and_gemm(version=None):
    """One causal flash-attention forward (b 4, h 32, s 2048, d 128, bf16) and one 4096^3 bf16 matmul, tagged by
    ``--torch-version``."""
    attn = OpRecord(op="aten._scaled_dot_product_flash_attention.default", kind=OpKind.ATTENTION, module="attn",
                    phase=Phase.FORWARD, dtype="bfloat16", flops=4 * 4 * 32 * 2048 * 2049 // 2 * 128,
                    bytes_read=3 * 2 * 4 * 32 * 2048 * 128, bytes_written=2 * 4 * 32 * 2048 * 128,
                    dims=(("b", 4), ("h", 32), ("sq", 2048), ("sk", 2048), ("d", 128)))
    mm = OpRecord(op="aten.mm.default", kind=OpKind.MATMUL, module="fc", phase=Phase.FORWARD, dtype="bfloat16",
                  flops=2 * 4096**3, bytes_read=2 * 2 * 4096**2, bytes_written=2 * 4096**2,
                  dims=(("b", 1), ("m", 4096), ("n", 4096), ("k", 4096)))
    g = dataclasses.replace(_graph(), records=(attn, mm))
    return framework.apply(g, version) if version else g


def test_flash_attention_1_before_2_2_only():
    v = framework.parse
    # SDPA's flash kernel became FlashAttention-2 in 2.2
    assert framework.flash_attention_1(v("2.1")) and not framework.flash_attention_1(v("2.2"))
    assert not framework.flash_attention_1(None)
    g20 = _attention_and_gemm("2.0")
    assert g20.records[0].dim("fa1") == 1 and g20.records[1].dim("fa1", 0) == 0  # the GEMM is not attention
    assert any("FlashAttention-1" in a for a in g20.assumptions)
    # the matmul is tagged as the 2023 stack's (priced slower on Hopper only, below); from 2.2 neither tag
    assert g20.records[1].dim("gemm_2023") == 1 and g20.records[0].dim("gemm_2023", 0) == 0
    g22 = _attention_and_gemm("2.2")
    assert g22.records[0].dim("fa1", 0) == 0 and g22.records[1] == _attention_and_gemm().records[1]
    assert framework.gemm_2023(v("2.1")) and not framework.gemm_2023(v("2.2")) and not framework.gemm_2023(None)
    # a fused attention kernel before 2.0 (there was no SDPA) is the flash-attn 1.x package: the note says so
    # instead of naming SDPA's kernel (fuzz review: the notes contradicted each other)
    note = next(a for a in _attention_and_gemm("1.13").assumptions if "FlashAttention-1" in a)
    assert "(the flash-attn 1.x package: torch has no SDPA before 2.0;" in note
    assert "SDPA's flash kernel" in next(a for a in g20.assumptions if "FlashAttention-1" in a)


def test_fa1_attention_efficiency_by_hand():
    a100, h100 = resolve_gpu("a100-sxm4-80gb")[0], resolve_gpu("h100-sxm5-80gb")[0]
    new, old = _attention_and_gemm(), _attention_and_gemm("2.0")
    for gpu, fa2 in ((a100, prior.EFF_MAX["attention"]), (h100, prior.ATTENTION_EFF_BY_CHIP["GH100"])):
        e_new = prior.compute_efficiency(new.records[0], gpu, "bf16", True)[0]
        e_old = prior.compute_efficiency(old.records[0], gpu, "bf16", True)[0]
        # same tile / wave / depth factors; the FlashAttention-2 ceiling (A100 0.55, H100 0.35) / FA1_SLOWDOWN (1.5)
        assert e_old == pytest.approx(e_new / 1.5, rel=1e-9)
        # flash attention tiles (b x h = 128) x [2048 queries, d 128] over a 2048-key reduction: eff = ceiling x wave
        # efficiency x depth 2048 / (2048 + 48)
        assert e_new == pytest.approx(fa2 * prior.wave_efficiency(gpu, 128, 2048, 128)[0] * 2048 / 2096, rel=1e-9)
    # the 4096^3 matmul's efficiency is the same at torch 2.0 as today on both GPUs: the 2023 stack's Hopper rate
    # is applied to the achieved rate after the power limit (next test)
    for gpu in (a100, h100):
        assert prior.compute_efficiency(old.records[1], gpu, "bf16", True)[0] == pytest.approx(
            prior.compute_efficiency(new.records[1], gpu, "bf16", True)[0], rel=1e-12)


def test_hopper_2023_gemm_runs_at_the_fitted_fraction_of_todays_rate_with_the_same_dynamic_energy():
    """A 4096^3 bf16 matmul tagged by --torch-version 2.0: on an H100 its busy time is today's / 0.71 (the fitted
    HOPPER_GEMM_2023, docs/ENERGY_MODEL.md) and its energy grows only by idle power over the added time (the same
    work: memory and core dynamic energy unchanged); on an A100 (and untagged, or in FP32 on CUDA cores) nothing
    changes."""
    a100, h100 = resolve_gpu("a100-sxm4-80gb")[0], resolve_gpu("h100-sxm5-80gb")[0]
    new, old = _attention_and_gemm().records[1], _attention_and_gemm("2.0").records[1]
    t, o = prior.op_prior(new, h100, "bf16"), prior.op_prior(old, h100, "bf16")
    gap = prior.GAP_S
    assert t.bound == o.bound == "compute"
    assert o.time_s - gap == pytest.approx((t.time_s - gap) / 0.71, rel=1e-9)
    assert o.energy_j == pytest.approx(t.energy_j + h100.idle_w * (o.time_s - t.time_s), rel=1e-9)
    assert o.power_w < t.power_w
    assert prior.op_prior(old, a100, "bf16") == prior.op_prior(new, a100, "bf16")
    f_old, f_new = (dataclasses.replace(r, dtype="float32") for r in (old, new))  # FP32: CUDA cores, no TF32
    assert prior.op_prior(f_old, h100, "default") == prior.op_prior(f_new, h100, "default")


def test_hopper_2023_gemm_rate_is_stated_where_it_prices_something():
    """The assumption line appears for a Hopper GPU, torch <= 2.1 and tensor-core matmuls; not on an A100, from 2.2
    on, or under FP32 matmuls (CUDA cores)."""
    h100, a100 = resolve_gpu("h100-sxm5-80gb")[0], resolve_gpu("a100-sxm4-80gb")[0]

    def line(version, gpu, precision="bf16"):
        p = build_plan(_attention_and_gemm(version), gpu=gpu, steps=1, batch_size=8, precision=precision)
        return [a for a in p.assumptions if "on Hopper" in a]

    assert line("2.1", h100) == ["torch 2.1 on Hopper: tensor-core matmuls priced at 0.71 of today's rate (fitted "
                                 "on llm-foundry's 2023 H100 SXM BF16 tables, torch 2.1 / CUDA 12.1, and applied to "
                                 "every Hopper board and to FP8 GEMMs too; from 2.2 on, current rates)"]
    assert line("2.2", h100) == [] and line("2.1", a100) == [] and line("2.1", h100, "fp32") == []
    # --utilization replaces every op's rate (the prior does not apply the rule then): no line (review)
    p = build_plan(_attention_and_gemm("2.1"), gpu=h100, steps=1, batch_size=8, precision="bf16", utilization=0.4)
    assert not [a for a in p.assumptions if "on Hopper" in a]




def test_zero_grad_before_2_0_fills_every_gradient_and_backward_accumulates_into_it(tmp_path):
    """Two weight tensors (Linear 4->3 and 3->2, no bias: 12 and 6 fp32 values = 48 and 24 bytes). At torch 1.13
    zero_grad() keeps the gradients (set_to_none=False): each step one fill per gradient (writes 48 / 24 B) and in
    backward one AccumulateGrad add per gradient (reads grad + new grad = 96 / 48 B, writes 48 / 24 B); two more
    launches in backward and two more in the optimizer phase. At 2.1 (set_to_none=True): none of them."""
    pytest.importorskip("torch")
    from collections import Counter

    from wattlint.energy import system
    from wattlint.energy.pricing import price
    from wattlint.energy.predictor import PriorPredictor
    from wattlint.frontends.source import analyze

    src = tmp_path / "two.py"
    src.write_text("import torch.nn as nn\n\ndef build():\n    return nn.Sequential(nn.Linear(4, 3, bias=False), "
                   "nn.Linear(3, 2, bias=False))\n")
    graphs = {v: analyze(f"{src}:build", inputs=["x=float32[5,4]"], optimizer="sgd", optimizer_impl="for-loop",
                         torch_version=v) for v in ("1.13", "2.1")}

    def sig(g):
        return Counter((r.phase, r.op.split(".")[1], r.bytes_read, r.bytes_written) for r in g.records
                       if r.kind is not OpKind.VIEW)  # views launch nothing (2.1 detaches the grads it takes over)
    extra = sig(graphs["1.13"]) - sig(graphs["2.1"])
    assert extra == Counter({(Phase.BACKWARD, "add_", 2 * 48, 48): 1, (Phase.BACKWARD, "add_", 2 * 24, 24): 1,
                             (Phase.OPTIMIZER, "zero_", 0, 48): 1, (Phase.OPTIMIZER, "zero_", 0, 24): 1})
    assert not sig(graphs["2.1"]) - sig(graphs["1.13"])  # no other kernel changed
    assert any("zero_grad(set_to_none=False)" in a and "2 gradient tensors" in a
               for a in graphs["1.13"].assumptions)
    assert not any("zero_grad" in a for a in graphs["2.1"].assumptions)

    v100 = resolve_gpu("v100-sxm2-16gb")[0]

    def launches(g):
        p = price(g, v100, "fp32", None, PriorPredictor())
        n = {ph: system.Launches() for ph in Phase}
        for r, t in zip(p.records, p.times_s):
            assert r.op.split(".")[1] not in ("zero_", "add_") or r.phase is Phase.FORWARD or t > 0  # priced
            n[r.phase].add(r, t)
        return {ph: c.n for ph, c in n.items()}
    old, new = launches(graphs["1.13"]), launches(graphs["2.1"])
    assert old[Phase.OPTIMIZER] - new[Phase.OPTIMIZER] == 2 and old[Phase.BACKWARD] - new[Phase.BACKWARD] == 2
    assert old[Phase.FORWARD] == new[Phase.FORWARD]


def test_zero_grad_onnx_graphs_at_1_x_say_the_fills_are_not_priced():
    g = CostGraph(model=ModelInfo(source="m.onnx", format="onnx", params=1, param_bytes=4), records=(),
                  micro_batch=1, precision="fp32", extra={})
    assert any("not priced for ONNX" in a for a in framework.apply(g, "1.13").assumptions)
    assert not any("zero_grad" in a for a in framework.apply(g, "2.0").assumptions)
    assert not framework.grads_to_none_by_default((1, 13)) and framework.grads_to_none_by_default((2, 0))
    assert framework.grads_to_none_by_default(None)


@pytest.mark.parametrize("version, says", [("0.4", "before 1.0"), ("100.0", "expected MAJOR.MINOR"),
                                           ("two.one", "expected MAJOR.MINOR")])
def test_torch_version_errors_say_what_is_wrong(version, says):
    """'0.4' is a MAJOR.MINOR version: the error must say it is out of range, not that the format is wrong."""
    with pytest.raises(InputError, match=says):
        framework.parse(version)


@pytest.mark.parametrize("optimizer, version, stated", [
    ("adamw", "1.13", True),   # fused AdamW arrived in 2.0 (pytorch/pytorch#88015, after the 1.13 branch)
    ("adamw", "2.0", False),
    ("adam", "1.12", True),    # fused Adam is 1.13's (pytorch/pytorch#90752)
    ("adam", "1.13", False),
    ("sgd", "1.10", False),    # not checked for SGD: nothing claimed
])
def test_fused_optimizer_before_its_release_is_stated(optimizer, version, stated):
    lines = framework.notes(framework.parse(version), optimizer_impl_default=False, attention_default=False,
                            optimizer=optimizer, optimizer_impl="fused")
    assert any("has no fused=True before" in line for line in lines) == stated, lines
    # foreach / for-loop never get the line
    assert not framework.notes(framework.parse(version), optimizer_impl_default=False, attention_default=False,
                               optimizer=optimizer, optimizer_impl="foreach")
