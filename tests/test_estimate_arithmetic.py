"""The aggregation and system arithmetic, pinned against hand computations.

A stub energy model prices every op at a constant time and power, so every total below can be worked out with a
calculator from the documented formulas (wattlint/aggregate.py, wattlint/energy/system.py). The constants the
hand computations use are written out here as numbers, not read from the code under test.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from wattlint import api
from wattlint.types import CostGraph, GpuSpec, ModelInfo, OpKind, OpRecord, Phase, Plan

# A made-up GPU with round numbers: NVLink 600 GB/s bidirectional (300 GB/s per direction), idle 50 W, TDP 450 W.
GPU = GpuSpec(key="test-gpu", name="Test GPU", vendor="NVIDIA", arch="Test",
              peak_tflops={"fp32": 10.0, "bf16": 100.0}, memory_gb=80, memory_bw_gbs=1000, sm_count=100,
              boost_mhz=1500, tdp_w=450, idle_w=50, nvlink_gbs=600, pcie_gen=4, idle_estimated=False)
PCIE_GPU = GpuSpec(key="test-pcie", name="Test PCIe GPU", vendor="NVIDIA", arch="Test",
                   peak_tflops={"fp32": 10.0}, memory_gb=24, memory_bw_gbs=500, sm_count=50, boost_mhz=1500,
                   tdp_w=250, idle_w=30, nvlink_gbs=0, pcie_gen=4, idle_estimated=False)

# host power per GPU (docs/ENERGY_MODEL.md "Host power"): the test GPU has NVLink -> an SXM/HGX node: node base load
# 0.41 x TDP per GPU, + power-supply losses at 94 % efficiency on (GPU TDP + base)
HOST_W = 0.41 * 450 + (1 / 0.94 - 1) * (450 + 0.41 * 450)  # = 184.5 + 40.5 = 225.0 W
HOST_OP_S = 21e-6  # eager launch cost per op, stated in every plan below (--host-op-time) so the arithmetic does
# not move with the shipped default (refitted on Zeus when the prior changes; its own test: launch gaps at idle power)
NCCL_EFF = 0.8
LATENCY_S = 30e-6  # per collective call and log2(n) ring step
BUCKET = 25 * 2**20
COMM_ACTIVITY = 0.10


class Stub:
    """Every op with work takes ``t`` seconds at ``p`` watts; the 5-95 % band is x0.5 - x2 (energy), x0.8 - x1.25
    (time)."""

    calibration = "prior"
    source = "stub"

    def __init__(self, t: float, p: float):
        self.t, self.p = t, p

    def predict(self, records, gpu, precision, utilization=None):
        times = [self.t if (r.flops or r.bytes) else 0.0 for r in records]
        return times, [self.p] * len(records)

    def range_factors(self, quantity="energy"):
        return (0.5, 2.0) if quantity == "energy" else (0.8, 1.25)


def _rec(phase, module="fc", kind=OpKind.MATMUL, op="aten.mm.default"):
    return OpRecord(op=op, kind=kind, module=module, phase=phase, dtype="float32", flops=1000, bytes_read=100,
                    bytes_written=100)


def graph(params=1_000_000, fwd=2, bwd=3, opt=1, micro_batch=8):
    recs = [_rec(Phase.FORWARD, f"f{i}") for i in range(fwd)] + [_rec(Phase.BACKWARD, f"b{i}") for i in range(bwd)]
    recs += [_rec(Phase.OPTIMIZER, "", OpKind.OPTIMIZER, "aten._fused_adamw_.default") for _ in range(opt)]
    return CostGraph(model=ModelInfo(source="stub", format="torch", params=params, param_bytes=4 * params),
                     records=tuple(recs), micro_batch=micro_batch, precision="fp32",
                     extra={"activation_bytes": 1_000_000})


def plan(**kw):
    base = dict(batch_size=8, steps=1000, pue=1.5, carbon_intensity_g_per_kwh=400.0, precision="fp32", gpus=1,
                gpus_per_node=1, price_per_kwh=None, gpu_hour_price=None, host_op_s=HOST_OP_S)
    base.update(kw)
    return Plan(**base)


def est(g, p, t=1e-3, w=300.0, gpu=GPU):
    return api.price(g, gpu, p, Stub(t, w))


# ---- one GPU ----------------------------------------------------------------------------------------------------

def test_single_gpu_step_and_totals():
    e = est(graph(), plan())
    # 6 ops x 1 ms = 6 ms per step (launch: 5 micro-batch ops x 21 us = 105 us < 5 ms of GPU work: no gap)
    assert e.per_step.time_s == pytest.approx(6e-3)
    assert set(e.phases) == {"forward", "backward", "optimizer"}
    assert e.phases["forward"].time_s == pytest.approx(2e-3)
    assert e.phases["backward"].gpu_energy_j == pytest.approx(3 * 1e-3 * 300)
    assert e.per_step.gpu_energy_j == pytest.approx(6 * 1e-3 * 300)  # 1.8 J
    assert e.per_step.avg_gpu_power_w == pytest.approx(300)
    assert HOST_W == pytest.approx(225.0, abs=0.05)
    assert e.per_step.host_energy_j == pytest.approx(HOST_W * 6e-3)  # 1.35 J
    steps = 1000
    assert e.total.time_h == pytest.approx(steps * 6e-3 / 3600)
    assert e.total.gpu_hours == pytest.approx(steps * 6e-3 / 3600)
    gpu_kwh = steps * 1.8 / 3.6e6
    host_kwh = steps * HOST_W * 6e-3 / 3.6e6
    assert e.total.gpu_energy_kwh == pytest.approx(gpu_kwh)
    assert e.total.host_energy_kwh == pytest.approx(host_kwh)
    assert e.total.energy_kwh == pytest.approx((gpu_kwh + host_kwh) * 1.5)  # PUE 1.5
    assert e.total.co2_kg == pytest.approx((gpu_kwh + host_kwh) * 1.5 * 400 / 1000)
    # the band: the GPUs' energy takes the energy band (x0.5-x2.0), the host's power x time the time band
    # (x0.8-x1.25): 1.5 x (5e-4 x 0.5 + 3.75e-4 x 0.8) = 8.25e-4, 1.5 x (5e-4 x 2 + 3.75e-4 x 1.25) = 2.203125e-3
    assert e.total.energy_kwh_range == pytest.approx((8.25e-4, 2.203125e-3))
    assert e.total.co2_kg_range == pytest.approx((8.25e-4 * 0.4, 2.203125e-3 * 0.4))
    assert e.total.time_h_range == pytest.approx((e.total.time_h * 0.8, e.total.time_h * 1.25))
    assert e.total.gpu_hours_range == pytest.approx((e.total.gpu_hours * 0.8, e.total.gpu_hours * 1.25))
    assert e.total.cost_usd is None and e.total.cost_usd_range is None


def test_grad_accum_and_micro_batch_scaling():
    # global batch 64 on 1 GPU with grad-accum 2: micro-batch 32, traced at 8 -> each fwd/bwd op x 2 x 32/8 = x8
    e = est(graph(micro_batch=8), plan(batch_size=64, grad_accum=2))
    assert e.phases["forward"].time_s == pytest.approx(2 * 8 * 1e-3)
    assert e.phases["backward"].time_s == pytest.approx(3 * 8 * 1e-3)
    assert e.phases["optimizer"].time_s == pytest.approx(1e-3)  # once per step
    assert e.per_step.time_s == pytest.approx(41e-3)


def test_a_plan_batch_other_than_the_traced_one_says_how_it_was_scaled_and_which_way_it_leans():
    """A graph traced at micro-batch 8 (its frontend line ends 'pass --batch-size to set the global batch') priced
    at batch 32 and 4: the frontend's line is what the plan overrode (dropped: the report said both 'micro-batch 8
    from the inputs; pass --batch-size' and 'scaled to 32'); the scaling line gives the factor (32 / 8 = 4, 4 / 8 =
    0.5) and the direction (larger kernels run more efficiently: scaling up leans high, down leans low)."""
    hinted = dataclasses.replace(graph(micro_batch=8), assumptions=(
        "batch: micro-batch 8 from the --input specs (leading dim); pass --batch-size to set the global batch",))
    up = est(hinted, plan(batch_size=32))
    assert not any("pass --batch-size" in a for a in up.assumptions)
    line = next(a for a in up.assumptions if a.startswith("graph traced at micro-batch 8, plan micro-batch 32"))
    assert "(x4;" in line and "leans high" in line
    down = next(a for a in est(hinted, plan(batch_size=4)).assumptions if a.startswith("graph traced at"))
    assert "(x0.5;" in down and "leans low" in down
    same = est(hinted, plan(batch_size=8)).assumptions
    assert any("pass --batch-size" in a for a in same) and not any(a.startswith("graph traced at") for a in same)


def test_cost_with_and_without_gpu_hour_price():
    g = graph()
    kwh = (1000 * 1.8 + 1000 * HOST_W * 6e-3) / 3.6e6 * 1.5
    gpu_h = 1000 * 6e-3 / 3600
    assert est(g, plan(price_per_kwh=0.2)).total.cost_usd == pytest.approx(kwh * 0.2)
    assert est(g, plan(price_per_kwh=0.0, gpu_hour_price=3.0)).total.cost_usd == pytest.approx(gpu_h * 3.0)
    both = est(g, plan(price_per_kwh=0.2, gpu_hour_price=3.0)).total
    assert both.cost_usd == pytest.approx(kwh * 0.2 + gpu_h * 3)
    # each price times its own quantity's band (energy 8.25e-4..2.203125e-3 kWh, see above; GPU-hours x0.8-x1.25)
    assert both.cost_usd_range == pytest.approx((8.25e-4 * 0.2 + gpu_h * 0.8 * 3, 2.203125e-3 * 0.2 + gpu_h * 1.25 * 3))


def test_a_one_sided_band_is_widened_to_contain_the_estimate():
    """A model whose 5-95 % band lies wholly above (or below) x1 printed a range that did not contain its own
    estimate; the band is widened to x1 on that side (coverage only grows)."""

    class Above(Stub):
        def range_factors(self, quantity="energy"):
            return (1.1, 1.3) if quantity == "energy" else (0.7, 0.9)

    e = api.price(graph(), GPU, plan(), Above(1e-3, 300.0))
    t = e.total
    # energy band x1.1-x1.3 -> x1.0-x1.3 (the GPUs' energy); time band x0.7-x0.9 -> x0.7-x1.0 (the host's power x
    # time); PUE 1.5, 400 g/kWh
    lo = 1.5 * (t.gpu_energy_kwh * 1.0 + t.host_energy_kwh * 0.7)
    hi = 1.5 * (t.gpu_energy_kwh * 1.3 + t.host_energy_kwh * 1.0)
    assert t.energy_kwh_range == pytest.approx((lo, hi))
    assert t.co2_kg_range == pytest.approx((lo * 0.4, hi * 0.4))
    assert t.time_h_range == pytest.approx((t.time_h * 0.7, t.time_h * 1.0))
    assert t.gpu_hours_range == pytest.approx((t.gpu_hours * 0.7, t.gpu_hours * 1.0))
    assert any("5-95 % range energy x1.00-x1.30, time x0.70-x1.00" in a for a in e.assumptions)


def test_cost_states_its_formula():
    """The cost is one printed number made of two prices: the report says how (it printed only the total, and with
    both prices a reader could not tell that electricity was added to a rental price said to include it)."""
    g = graph()
    # facility: 1000 steps x (1.8 J GPU + 225 W x 6 ms = 1.35 J host) = 3,150 J = 0.000875 kWh, x PUE 1.2 = 0.00105
    # GPU-hours: 1000 x 6 ms = 6 s = 0.0016667 h; cost = 0.00105 x 0.3 + 0.0016667 x 3 = 0.000315 + 0.005 = 0.005315
    e = est(g, plan(pue=1.2, price_per_kwh=0.3, gpu_hour_price=3.0))
    assert e.total.energy_kwh == pytest.approx(0.00105) and e.total.cost_usd == pytest.approx(0.005315)
    assert "cost $0.005315 = 0.00105 kWh (facility) x $0.3/kWh + 0.001667 GPU-h x $3/GPU-h" in e.assumptions
    e = est(g, plan(pue=1.2, price_per_kwh=0.0, gpu_hour_price=3.0))  # rental only: no electricity term
    assert "cost $0.005 = 0.001667 GPU-h x $3/GPU-h" in e.assumptions
    assert not any(a.startswith("cost ") for a in est(g, plan()).assumptions)  # no price: no cost, no line


def test_launch_gaps_at_idle_power():
    # ops of 1 us each: per micro-batch 5 ops x 15 us = 75 us of launching vs 5 us of GPU work -> 70 us idle;
    # grad-accum 2 -> 140 us; optimizer: 1 launch x 15 us vs 1 us -> 14 us. Total gap 154 us at idle 50 W.
    g = graph(micro_batch=8)
    e = est(g, plan(batch_size=16, grad_accum=2, host_op_s=None), t=1e-6, w=300.0)  # the shipped default
    gap = 2 * (5 * 15e-6 - 5e-6) + (15e-6 - 1e-6)
    assert gap == pytest.approx(154e-6)
    assert e.phases["idle_gaps"].time_s == pytest.approx(gap)
    assert e.phases["idle_gaps"].gpu_energy_j == pytest.approx(gap * 50)
    assert e.per_step.time_s == pytest.approx(11e-6 + gap)
    assert any("launch-bound" in a and "15 us" in a and "default" in a for a in e.assumptions)


def test_launch_gaps_with_stated_host_op_time():
    # --host-op-time 10 us: per micro-batch 5 x 10 - 5 = 45 us idle, x2 micro-batches; optimizer 10 - 1 = 9 us
    e = est(graph(), plan(batch_size=16, grad_accum=2, host_op_s=10e-6), t=1e-6)
    assert e.phases["idle_gaps"].time_s == pytest.approx(2 * 45e-6 + 9e-6)
    assert any("10 us each (--host-op-time)" in a for a in e.assumptions)
    # a host faster than the GPU work: 5 ops x 0.5 us < 5 us of GPU work, 1 x 0.5 us < 1 us -> no gap
    assert "idle_gaps" not in est(graph(), plan(host_op_s=0.5e-6), t=1e-6).phases


def test_megatron_stack_launches_at_its_own_host_op_time():
    # --training-stack megatron without --host-op-time: 58 us per launch (the stack's default, fitted on the vTrain
    # train split). Ops of 1 us: per micro-batch 5 x 58 - 5 = 285 us idle, x2 micro-batches; the stack's optimizer
    # is 2 kernels (the fused Adam pass and the copy into the bf16 parameters): 2 x 58 - 2 = 114 us
    e = est(graph(), plan(batch_size=16, grad_accum=2, host_op_s=None, precision="bf16", training_stack="megatron"),
            t=1e-6)
    assert e.phases["idle_gaps"].time_s == pytest.approx(2 * 285e-6 + 114e-6) == 684e-6
    assert any("58 us each (megatron stack default" in a for a in e.assumptions)
    # --host-op-time still wins under the stack: 2 x (5 x 10 - 5) + (2 x 10 - 2) = 90 + 18 us
    e10 = est(graph(), plan(batch_size=16, grad_accum=2, host_op_s=10e-6, precision="bf16",
                            training_stack="megatron"), t=1e-6)
    assert e10.phases["idle_gaps"].time_s == pytest.approx(2 * 45e-6 + 18e-6)
    # long ops (1 ms) hide 5 x 58 us of launching: no gap, and the report still names the host time it assumed
    e_gpu = est(graph(), plan(host_op_s=None, precision="bf16", training_stack="megatron"), t=1e-3)
    assert "idle_gaps" not in e_gpu.phases
    assert any(a.startswith("host launch time 58 us per op (megatron stack default") for a in e_gpu.assumptions)


def test_for_loop_optimizer_launches_every_op():
    # 40 optimizer records of one op: multi-tensor (foreach), they are ONE kernel (the stub prices it 1 us) and
    # the step launches at most 16 kernels -> 16 x 21 - 1 = 335 us idle; a for-loop step runs 40 kernels of 1 us
    # and launches all 40 -> 40 x 21 - 40 = 800 us. The micro-batch: 5 x 21 - 5 = 100 us.
    g = graph(opt=40)
    e = est(g, plan(), t=1e-6)
    assert e.phases["optimizer"].time_s == pytest.approx(1e-6)
    assert e.phases["idle_gaps"].time_s == pytest.approx(100e-6 + 16 * 21e-6 - 1e-6)
    g_loop = dataclasses.replace(g, extra={**g.extra, "optimizer_impl": "for-loop"})
    e_loop = est(g_loop, plan(), t=1e-6)
    assert e_loop.phases["optimizer"].time_s == pytest.approx(40e-6)
    assert e_loop.phases["idle_gaps"].time_s == pytest.approx(100e-6 + 40 * 21e-6 - 40e-6)


def test_full_recompute_launches_the_forward_again():
    # full recompute: 2 forward ops run again in backward -> 7 launches per micro-batch: 7 x 21 - 7 = 140 us
    # (GPU work 7 x 1 us); optimizer 21 - 1 = 20 us
    e = est(graph(), plan(recompute="full"), t=1e-6)
    assert e.phases["idle_gaps"].time_s == pytest.approx(7 * 21e-6 - 7e-6 + 20e-6)


def test_library_call_records_are_one_launch_per_phase():
    # an RNN call whose kernels cuDNN launches (records tagged lib_call): 1 forward call of 2 steps x (GEMM + cell)
    # = 4 records, its backward 6 records; plus the stub graph's 2 forward + 3 backward eager ops. Launches per
    # micro-batch: 2 + 3 + 1 (RNN forward) + 1 (RNN backward) = 7 -> 7 x 21 - 15 x 1 = 132 us of gap (GPU work:
    # 5 + 4 + 6 = 15 ops of 1 us); optimizer 21 - 1 = 20 us. Counted as eager ops (no tag): 15 x 21 - 15 = 300 us.
    g = graph()
    rnn = tuple(dataclasses.replace(_rec(ph, "lstm"), dims=(("lib_call", 1),))
                for ph, n in ((Phase.FORWARD, 4), (Phase.BACKWARD, 6)) for _ in range(n))
    tagged = dataclasses.replace(g, records=g.records + rnn)
    e = est(tagged, plan(), t=1e-6)
    assert e.phases["idle_gaps"].time_s == pytest.approx(7 * 21e-6 - 15e-6 + 20e-6) == 152e-6
    assert any("launching its 8 ops per step" in a for a in e.assumptions)  # 7 + the optimizer's 1
    untagged = dataclasses.replace(g, records=g.records + tuple(dataclasses.replace(r, dims=()) for r in rnn))
    assert est(untagged, plan(), t=1e-6).phases["idle_gaps"].time_s == pytest.approx(300e-6 + 20e-6)
    # full recompute runs the forward call again in backward: one more launch (and 4 more us of GPU work)
    e = est(tagged, plan(recompute="full"), t=1e-6)
    assert e.phases["idle_gaps"].time_s == pytest.approx((7 + 3) * 21e-6 - (15 + 6) * 1e-6 + 20e-6)


# ---- data parallel -----------------------------------------------------------------------------------------------

def _latency(n, grad_bytes):
    calls = max(1, math.ceil(grad_bytes / BUCKET))
    return calls * LATENCY_S * math.log2(n)


def test_ring_all_reduce_inside_a_node():
    # 4 GPUs over NVLink: each moves 2 x 3/4 x 4 MB = 6 MB at 300 GB/s x 0.8 = 25 us, + 1 call x 30 us x log2(4)
    params = 1_000_000
    grad = 4.0 * params
    # (a host launching faster than the 10 us ops: no launch gaps in this test)
    e = est(graph(params=params, bwd=1), plan(batch_size=32, gpus=4, gpus_per_node=4, host_op_s=1e-6), t=1e-5)
    t_comm = 2 * 3 / 4 * grad / (300e9 * NCCL_EFF) + _latency(4, grad)
    assert t_comm == pytest.approx(25e-6 + 60e-6)
    # overlapped with the (one micro-batch's) backward of 10 us: 75 us exposed (more than the 10 % floor)
    exposed = t_comm - 1e-5
    assert e.phases["communication"].time_s == pytest.approx(exposed)
    comm_w = 50 + COMM_ACTIVITY * (450 - 50)  # 90 W
    assert e.phases["communication"].gpu_energy_j == pytest.approx(4 * exposed * comm_w)
    assert e.per_step.time_s == pytest.approx(4 * 1e-5 + exposed)  # 2 fwd + 1 bwd + 1 opt + comm
    assert e.per_step.gpu_energy_j == pytest.approx(4 * (4 * 1e-5 * 300 + exposed * comm_w))
    assert e.per_step.host_energy_j == pytest.approx(4 * HOST_W * e.per_step.time_s)


def test_hierarchical_all_reduce_across_nodes():
    # 16 GPUs, 8 per node, 100 Gbit/s per node: NCCL's rings run over all 16 ranks, so the node's network carries
    # the ring's factor over 16 ranks, 2 x 15/16 x 400 MB at 12.5 GB/s x 0.8 = 75 ms; inside the node the same
    # 2 x 15/16 x 400 MB at 240 GB/s = 3.125 ms; the slower one wins.
    params = 100_000_000
    grad = 4.0 * params
    e = est(graph(params=params, bwd=1), plan(batch_size=128, gpus=16, gpus_per_node=8, internode_gbps=100.0),
            t=1e-3)
    t_inter = 2 * grad * (15 / 16) / (100 / 8 * 1e9 * NCCL_EFF)
    t_intra = 2 * grad * (15 / 16) / (300e9 * NCCL_EFF)
    assert t_inter == pytest.approx(0.075) and t_intra == pytest.approx(3.125e-3)
    t_comm = t_inter + _latency(16, grad)  # 16 calls (400 MB / 25 MiB) x 30 us x 4
    assert e.phases["communication"].time_s == pytest.approx(t_comm - 1e-3)  # minus the 1 ms backward overlap
    assert any("100 Gbit/s of network per node, NCCL rings over all 16 ranks between 2 nodes" in a
               for a in e.assumptions)
    assert not any("shared by the" in a for a in e.assumptions)  # no model parallelism: the whole network


def test_exposed_communication_never_below_ten_percent():
    # a long backward (100 ms) hides the 85 us all-reduce, but 10 % of it stays exposed
    params = 1_000_000
    grad = 4.0 * params
    e = est(graph(params=params, bwd=1), plan(batch_size=32, gpus=4, gpus_per_node=4), t=0.1)
    t_comm = 2 * 3 / 4 * grad / (300e9 * NCCL_EFF) + _latency(4, grad)
    assert e.phases["communication"].time_s == pytest.approx(0.1 * t_comm)


def test_megatron_stack_all_reduces_after_the_backward_pass():
    # the same 4-GPU all-reduce of 4 MB as above (2 x 3/4 x 4 MB at 240 GB/s = 25 us + 1 call x 30 us x log2(4) =
    # 85 us) behind a 100 ms backward: PyTorch DDP hides all but the 10 % floor; Megatron-LM's DDP (overlap off by
    # default) and Megatron-DeepSpeed reduce the gradient buffer after the backward pass: all 85 us exposed
    from wattlint.energy import system

    params = 1_000_000
    grad = 4.0 * params
    g = graph(params=params, bwd=1)
    t_comm = 2 * 3 / 4 * grad / (300e9 * NCCL_EFF) + _latency(4, grad)
    assert t_comm == pytest.approx(85e-6)
    base = dict(batch_size=32, gpus=4, gpus_per_node=4, precision="bf16")
    ddp = system.data_parallel(g, GPU, plan(**base), 0.05, 0.1)
    assert ddp.exposed_s == pytest.approx(0.1 * 85e-6)
    meg = system.data_parallel(g, GPU, plan(training_stack="megatron", **base), 0.05, 0.1)
    assert meg.time_s == pytest.approx(85e-6) and meg.exposed_s == pytest.approx(85e-6)
    assert "after the backward pass, not overlapped" in meg.note
    # ZeRO-1 (Megatron's distributed optimizer) likewise; ZeRO-2 keeps the overlap of its reduce-scatter (hooks),
    # its all-gather of the updated weights (16-bit weights, as many bytes as the 16-bit gradients: half the time)
    # exposed after the optimizer step
    assert system.data_parallel(g, GPU, plan(training_stack="megatron", sharding="zero1", **base), 0.05,
                                0.1).exposed_s == pytest.approx(85e-6)
    z2 = system.data_parallel(g, GPU, plan(training_stack="megatron", sharding="zero2", **base), 0.05, 0.1)
    assert z2.exposed_s == pytest.approx(0.1 * z2.time_s / 2 + z2.time_s / 2)


def test_pcie_link_without_nvlink():
    # 2 PCIe gen4 GPUs: 24 GB/s per direction; 2 x 1/2 x 4 MB = 4 MB at 19.2 GB/s
    params = 1_000_000
    grad = 4.0 * params
    e = est(graph(params=params, bwd=1), plan(batch_size=16, gpus=2, gpus_per_node=2), t=1e-6, gpu=PCIE_GPU)
    t_comm = 2 * 1 / 2 * grad / (24e9 * NCCL_EFF) + _latency(2, grad)
    gap_free = e.phases["communication"].time_s
    assert gap_free == pytest.approx(t_comm - 1e-6)
    assert any("PCIe gen4 x16" in a for a in e.assumptions)
    # a PCIe data-centre card sits in a server of 8 GPU slots: 450 W of node load shared by 8, + supply losses
    host_w = 450 / 8 + (1 / 0.94 - 1) * (250 + 450 / 8)
    assert e.per_step.host_energy_j == pytest.approx(2 * host_w * e.per_step.time_s)


def test_zero3_gathers_weights_twice_per_micro_batch():
    # ZeRO-3 in fp32: all-gather weights in forward and backward + reduce-scatter of the gradients, each micro-batch
    # (grad-accum 2: a GPU keeps only its shard of the gradients, so every backward reduces them):
    # 2 x (2 + 1) x 3/4 x 4 MB per GPU, 2 x 3 calls per bucket
    params = 1_000_000
    b = 4.0 * params
    e = est(graph(params=params, bwd=1), plan(batch_size=64, gpus=4, gpus_per_node=4, grad_accum=2,
                                               sharding="zero3"), t=1e-6)
    calls = 2 * 3 * max(1, math.ceil(b / BUCKET))
    t_comm = 2 * (2 * b + b) * 3 / 4 / (300e9 * NCCL_EFF) + calls * LATENCY_S * 2
    fwd_bwd = 2 * (2 + 1) * 1e-6  # forward + backward of both micro-batches overlap with FSDP prefetch
    assert e.phases["communication"].time_s == pytest.approx(t_comm - fwd_bwd)
    # optimizer state sharded: the optimizer op runs on 1/4 of the parameters
    assert e.phases["optimizer"].time_s == pytest.approx(1e-6 / 4)


def test_zero2_reduces_gradients_every_micro_batch():
    # ZeRO-2 in fp32, grad-accum 2: a reduce-scatter of the gradients after each micro-batch's backward + one
    # all-gather of the updated weights: (2 + 1) x 3/4 x 4 MB per GPU, (2 + 1) calls per bucket
    params = 1_000_000
    b = 4.0 * params
    e = est(graph(params=params, bwd=1), plan(batch_size=64, gpus=4, gpus_per_node=4, grad_accum=2,
                                               sharding="zero2"), t=1e-4)
    calls = 3 * max(1, math.ceil(b / BUCKET))
    t_comm = (2 * b + b) * 3 / 4 / (300e9 * NCCL_EFF) + calls * LATENCY_S * 2
    # each micro-batch's reduce-scatter overlaps its own backward (both micro-batches' 100 us); the all-gather of
    # the updated weights follows the optimizer step, exposed whole: its share of the time is its bytes', 1 of 3
    bwd = 2 * 1e-4
    gather = t_comm / 3
    assert e.phases["communication"].time_s == pytest.approx(max(0.1 * (t_comm - gather),
                                                                  t_comm - gather - bwd) + gather)


def test_launch_gap_with_exposed_launches():
    from wattlint.energy import system

    # the shipped rule (LAUNCH_QUEUE False: the whole-phase max). Per micro-batch: 5 launches x 21 us = 105 us of
    # host time against 5 us of GPU work; optimizer 21 vs 1 us. exposed 0 (shipped): only the excess shows:
    # 2 x 100 + 20 = 220 us; exposed 1: all of it: 2 x 105 + 21 = 231 us; exposed 0.5: 2 x (100 + 0.5 x 5) +
    # (20 + 0.5 x 1) = 225.5 us
    micro = system.LaunchStream.of([1e-6] * 5, [1] * 5)
    opt = system.LaunchStream.of([1e-6], [1])
    args = (micro, opt, 1.0, 2, 21e-6, True)
    assert system.launch_gap_s(*args, exposed=0.0) == pytest.approx(220e-6)
    assert system.launch_gap_s(*args, exposed=1.0) == pytest.approx(231e-6)
    assert system.launch_gap_s(*args, exposed=0.5) == pytest.approx(225.5e-6)
    assert system.HOST_EXPOSED == 0.0  # what the estimates above price (docs/ENERGY_MODEL.md)
    assert system.LAUNCH_QUEUE is False  # the whole-phase max prices the estimates above (docs/ENERGY_MODEL.md)
    # the launch queue on the same streams: the 11th launch, at 231 us, ends at 232 us; 11 us of work -> 221 us
    # idle; exposed 1: all launch time shows (GPU + host): 231 us; exposed 0.5: 221 + 0.5 x (231 - 221) = 226 us
    assert system.launch_gap_s(*args, exposed=0.0, queue=True) == pytest.approx(221e-6)
    assert system.launch_gap_s(*args, exposed=1.0, queue=True) == pytest.approx(231e-6)
    assert system.launch_gap_s(*args, exposed=0.5, queue=True) == pytest.approx(226e-6)
    # GPU-bound micro-batches (3 ops of 100 us) run back to back with no sync in between: only the step's first
    # launch shows (21 us); micro-batch scale 2 doubles the kernels, not the launches
    micro = system.LaunchStream.of([100e-6] * 3, [1] * 3)
    opt = system.LaunchStream.of([10e-6], [1])
    assert system.launch_gap_s(micro, opt, 1.0, 3, 21e-6, True, 0.0, True) == pytest.approx(21e-6)
    assert system.launch_gap_s(micro, opt, 2.0, 3, 21e-6, True, 0.0, True) == pytest.approx(21e-6)
    # a foreach optimizer of 40 records launches 16 kernels, spread over its records (0.1 us each); after the
    # GPU-bound micro-batches (GPU done at 921 us; host at 3 x 63 = 189 us) its launches end at 189 + 16 x 21 =
    # 525 us < 921 us: hidden, the gap stays 21 us. The whole-phase max: 0 for the micro-batches, 16 x 21 - 4 =
    # 332 us for the optimizer
    opt40 = system.LaunchStream.of([0.1e-6] * 40, [1] * 40)
    assert system.launch_gap_s(micro, opt40, 1.0, 3, 21e-6, True, 0.0, True) == pytest.approx(21e-6)
    assert system.launch_gap_s(micro, opt40, 1.0, 3, 21e-6, True, 0.0, False) == pytest.approx(332e-6)
    # for-loop (all 40 launched): issued by 189 + 840 = 1,029 us, the last ends 0.1 us later; GPU work
    # 900 + 4 us -> 125.1 us idle (the whole-phase max: 840 - 4 = 836 us)
    assert system.launch_gap_s(micro, opt40, 1.0, 3, 21e-6, False, 0.0, True) == pytest.approx(1029.1e-6 - 904e-6)
    assert system.launch_gap_s(micro, opt40, 1.0, 3, 21e-6, False, 0.0, False) == pytest.approx(836e-6)


def _loop_end(kernels, hosts, gpu_free=0.0, host_at=0.0):
    """The launch-queue recurrence, one op at a time: end_i = max(end_{i-1}, issue_i) + kernel_i."""
    end, issue = gpu_free, host_at
    for k, h in zip(kernels, hosts):
        issue += h
        end = max(end, issue) + k
    return end


def test_launch_queue_three_ops_by_hand():
    from wattlint.energy import system

    # kernels 5, 1, 3 us launched every 2 us: issued at 2, 4, 6 us. Op 1 runs 2-7; op 2 (issued at 4) waits for
    # the GPU: 7-8; op 3 (issued at 6): 8-11. End 11 us for 9 us of work: 2 us idle (the first launch).
    assert system.queue_end_s([5e-6, 1e-6, 3e-6], [2e-6] * 3) == pytest.approx(11e-6)
    # kernels 1, 5, 1 us launched every 3 us: issued at 3, 6, 9. Op 1 runs 3-4; op 2 waits for its launch: 6-11;
    # op 3 (issued at 9) waits for the GPU: 11-12. End 12 us for 7 us of work: 5 us idle (3 + 2 us)
    assert system.queue_end_s([1e-6, 5e-6, 1e-6], [3e-6] * 3) == pytest.approx(12e-6)
    # the same ops after earlier work: GPU busy until 20 us, host already at 15 us: issued at 18, 21, 24; op 1
    # 20-21, op 2 21-26, op 3 26-27
    assert system.queue_end_s([1e-6, 5e-6, 1e-6], [3e-6] * 3, 20e-6, 15e-6) == pytest.approx(27e-6)


def test_launch_queue_gpu_bound_host_bound_and_front_loaded():
    from wattlint.energy import system

    def gap(kernels, host=21e-6):
        return system.queue_end_s(kernels, [host] * len(kernels)) - sum(kernels)

    # GPU-bound: 100 ops of 50 us, launched every 21 us: the host runs ahead after the first launch, which is all
    # that shows (21 us)
    assert gap([50e-6] * 100) == pytest.approx(21e-6)
    # host-bound: 100 ops of 1 us: the last is issued at 2,100 us and ends at 2,101 us; 100 us of work -> 2,001 us
    assert gap([1e-6] * 100) == pytest.approx(100 * 21e-6 + 1e-6 - 100e-6)
    # front-loaded: 50 ops of 1 us, then 5 of 1 ms. Launching all 55 (1,155 us) is far shorter than the 5,050 us
    # of GPU work, so the whole-stream max sees no gap; but the small ops are host-bound (op 50 ends at 1,051 us)
    # and the first big op is issued at 51 x 21 = 1,071 us, after which the GPU is the bottleneck:
    # end = 1,071 + 5,000 us = 6,071 us -> 1,021 us idle
    small_first = [1e-6] * 50 + [1e-3] * 5
    assert gap(small_first) == pytest.approx(51 * 21e-6 + 5e-3 - 5.05e-3)
    # the same ops, big ones first: only the first launch shows
    assert gap(small_first[::-1]) == pytest.approx(21e-6)


def test_launch_queue_closed_form_matches_the_recurrence():
    import random

    from wattlint.energy import system

    rng = random.Random(16)
    for _ in range(200):
        n = rng.randint(1, 40)
        k = [rng.choice([0.0, rng.uniform(0, 50e-6), rng.uniform(0, 2e-3)]) for _ in range(n)]
        h = [rng.choice([0.0, 21e-6]) for _ in range(n)]
        free, at = rng.uniform(0, 1e-3), rng.uniform(0, 1e-3)
        assert system.queue_end_s(k, h, free, at) == pytest.approx(_loop_end(k, h, free, at), rel=1e-12)
        # launch_gap_s: ga micro-batches back to back, then the optimizer, from an idle queue
        m = rng.randint(1, 10)
        ko = [rng.uniform(0, 100e-6) for _ in range(rng.randint(0, 30))]
        no = [1] * len(ko)
        ga, scale = rng.randint(1, 4), rng.choice([1.0, 0.5, 3.0])
        kk, nn = k[:m], [1 if x > 0 else 0 for x in h[:m]]
        stream = [x * scale for x in kk] * ga + ko
        hosts = [x * 21e-6 for x in nn] * ga + [x * 21e-6 for x in no]
        want = _loop_end(stream, hosts) - sum(stream)
        got = system.launch_gap_s(system.LaunchStream.of(kk, nn), system.LaunchStream.of(ko, no), scale, ga,
                                  21e-6, opt_multi_tensor=False, exposed=0.0, queue=True)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-15)


@pytest.fixture
def launch_queue(monkeypatch):
    from wattlint.energy import system

    monkeypatch.setattr(system, "LAUNCH_QUEUE", True)


def test_estimate_under_the_launch_queue(launch_queue):
    # 6 ops x 1 ms (GPU-bound): the step starts from an idle queue, so the first op starts when it is launched
    # (21 us); after that the host runs ahead and hides every other launch: a 21 us gap at the 50 W idle
    e = est(graph(), plan())
    assert e.phases["idle_gaps"].time_s == pytest.approx(21e-6)
    assert e.per_step.time_s == pytest.approx(6e-3 + 21e-6)
    assert e.per_step.gpu_energy_j == pytest.approx(6 * 1e-3 * 300 + 21e-6 * 50)
    assert any("eager launch queue" in a and "21 us each" in a for a in e.assumptions)
    # 1 us ops, grad-accum 2: 11 launches, the last issued at 11 x 21 = 231 us, ends at 232 us; GPU work 11 us ->
    # 221 us (the whole-phase max: 2 x (105 - 5) + (21 - 1) = 220 us)
    e = est(graph(micro_batch=8), plan(batch_size=16, grad_accum=2), t=1e-6)
    assert e.phases["idle_gaps"].time_s == pytest.approx(11 * 21e-6 + 1e-6 - 11e-6)
    # full recompute: 2 forward ops run again at the start of backward -> 7 launches per micro-batch + 1 for the
    # optimizer, all 1 us ops: the last issued at 8 x 21 = 168 us, ends at 169 us; GPU work 8 us -> 161 us
    e = est(graph(), plan(recompute="full"), t=1e-6)
    assert e.phases["idle_gaps"].time_s == pytest.approx(8 * 21e-6 + 1e-6 - 8e-6)


def test_library_call_under_the_launch_queue(launch_queue):
    # an RNN call whose kernels cuDNN launches (records tagged lib_call): 1 forward call of 4 records, its backward
    # 6 records; plus the stub graph's 2 forward + 3 backward eager ops, all 1 us. Issue order: f0 f1 [rnn: 1
    # launch, 4 kernels] b0 b1 b2 [rnn backward: 1 launch, 6 kernels], then the optimizer op. The backward call is
    # launched 7th, at 147 us: its 6 kernels end at 153 us (the GPU kept up with everything before it); the
    # optimizer op is launched at 168 us and ends at 169 us. GPU work 15 + 1 us -> 153 us idle. Untagged: 16
    # launches, the last at 336 us, ends at 337 us -> 321 us.
    g = graph()
    rnn = tuple(dataclasses.replace(_rec(ph, "lstm"), dims=(("lib_call", 1),))
                for ph, n in ((Phase.FORWARD, 4), (Phase.BACKWARD, 6)) for _ in range(n))
    tagged = dataclasses.replace(g, records=g.records + rnn)
    e = est(tagged, plan(), t=1e-6)
    assert e.phases["idle_gaps"].time_s == pytest.approx(8 * 21e-6 + 1e-6 - 16e-6) == 153e-6
    assert any("8 ops per step launched" in a for a in e.assumptions)  # 7 + the optimizer's 1
    untagged = dataclasses.replace(g, records=g.records + tuple(dataclasses.replace(r, dims=()) for r in rnn))
    assert est(untagged, plan(), t=1e-6).phases["idle_gaps"].time_s == pytest.approx(16 * 21e-6 + 1e-6 - 16e-6)
    # full recompute re-runs f0 f1 and the RNN call at the start of backward (3 more launches, 6 more kernels):
    # the backward RNN call is launched 10th (210 us), its kernels end at 216 us; the optimizer op is launched
    # 11th (231 us), ends at 232 us; GPU work 22 us -> 210 us idle
    e = est(tagged, plan(recompute="full"), t=1e-6)
    assert e.phases["idle_gaps"].time_s == pytest.approx(11 * 21e-6 + 1e-6 - 22e-6)


def test_the_band_of_the_wall_time_lost_to_goodput_follows_the_time_band():
    """Goodput 0.8: the lost wall time (steps_h x (1/0.8 - 1)) idles the GPU (50 W) and the host (225 W); its
    length is time, so its band is the time band (x0.8 - x1.25), as the host's draw during the steps; the GPUs'
    step energy keeps the energy band (x0.5 - x2)."""
    t = est(graph(), plan(goodput=0.8, price_per_kwh=0.1)).total
    steps_h = 1000 * 6e-3 / 3600
    gpu_step, host_step = 1000 * 1.8 / 3.6e6, 1000 * HOST_W * 6e-3 / 3.6e6  # 5e-4, 3.75e-4 kWh
    idle_kw = (50 + HOST_W) / 1000  # 0.275 kW

    def band(e, tf):
        return 1.5 * (gpu_step * e + host_step * tf + steps_h * tf * 0.25 * idle_kw)

    assert t.energy_kwh == pytest.approx(band(1, 1))
    assert t.energy_kwh_range == pytest.approx((band(0.5, 0.8), band(2.0, 1.25)))
    assert t.cost_usd_range == pytest.approx((band(0.5, 0.8) * 0.1, band(2.0, 1.25) * 0.1))
