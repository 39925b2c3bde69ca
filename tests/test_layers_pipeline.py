"""Layer tables under pipeline parallelism, and the memory workspace every report states (review 2026-12).

Pipeline: the layer rows listed only the costed (last) stage's modules, each x all GPUs, with shares of that stage's
energy: on a 4-layer Llama at PP 2 they added up to 160.6 J against a 153.7 J step, shares 0.878 of a 182.8 J figure
printed nowhere, and model.layers.0/1 were missing. Now every stage's modules are listed at the GPUs of their stage,
the rows add up to the step's forward + backward + optimizer energy, shares are of the step's GPU energy, and an
assumption line (JSON and text) says so, with the rest of the step by phase.

Memory: the peak per GPU adds a fixed 0.75 GiB workspace and 10 % fragmentation that no report stated.

A stub energy model prices every op with work at 1 ms and 300 W (0.3 J), so the rows below are worked out by hand.
"""

from __future__ import annotations

import json

import pytest

from wattlint import api
from wattlint.types import CostGraph, GpuSpec, ModelInfo, OpKind, OpRecord, Phase, Plan

# a made-up GPU with round numbers (as tests/test_estimate_arithmetic.py): idle 50 W, NVLink
GPU = GpuSpec(key="test-gpu", name="Test GPU", vendor="NVIDIA", arch="Test",
              peak_tflops={"fp32": 10.0, "bf16": 100.0}, memory_gb=80, memory_bw_gbs=1000, sm_count=100,
              boost_mhz=1500, tdp_w=450, idle_w=50, nvlink_gbs=600, pcie_gen=4, idle_estimated=False)
OP_S, OP_W = 1e-3, 300.0  # every op: 1 ms at 300 W = 0.3 J
MIB = 2**20


class Stub:
    calibration = "prior"
    source = "stub"

    def predict(self, records, gpu, precision, utilization=None):
        return [OP_S if (r.flops or r.bytes) else 0.0 for r in records], [OP_W] * len(records)

    def range_factors(self, quantity="energy"):
        return (0.5, 2.0) if quantity == "energy" else (0.8, 1.25)


def _r(phase, module, kind=OpKind.MATMUL, op="aten.mm.default"):
    return OpRecord(op=op, kind=kind, module=module, phase=phase, dtype="float32", flops=1000, bytes_read=100,
                    bytes_written=100)


def blocks_graph(n_blocks: int, activation_bytes: int = 1000) -> CostGraph:
    """A whole model: ``n_blocks`` blocks h.k (fc: 1 forward + 2 backward ops; act: 1 + 1), a head (1 + 2 ops) and
    one optimizer op outside any module (torch's foreach step, as the torch frontend records it); 1,000 FLOPs each."""
    recs = []
    for b in range(n_blocks):
        recs += [_r(Phase.FORWARD, f"h.{b}.fc"), _r(Phase.FORWARD, f"h.{b}.act", OpKind.ELEMENTWISE, "aten.relu.default")]
    recs += [_r(Phase.FORWARD, "head"), _r(Phase.BACKWARD, "head"), _r(Phase.BACKWARD, "head")]
    for b in reversed(range(n_blocks)):
        recs += [_r(Phase.BACKWARD, f"h.{b}.act", OpKind.ELEMENTWISE, "aten.threshold_backward.default"),
                 _r(Phase.BACKWARD, f"h.{b}.fc"), _r(Phase.BACKWARD, f"h.{b}.fc")]
    recs.append(_r(Phase.OPTIMIZER, "", OpKind.OPTIMIZER, "aten._fused_adamw_.default"))
    return CostGraph(model=ModelInfo(source="stub", format="torch", params=1000, param_bytes=4000),
                     records=tuple(recs), micro_batch=8, precision="fp32",
                     extra={"activation_bytes": activation_bytes})


def _est(graph: CostGraph, **kw):
    # micro-batch 16 / (dp 2 x 1) = 8, the traced one: no scaling; 21 us per launch, far below 1 ms ops: no gaps
    base = dict(batch_size=16, steps=10, pue=1.5, carbon_intensity_g_per_kwh=400.0, precision="fp32",
                price_per_kwh=None, gpu_hour_price=None, host_op_s=21e-6)
    base.update(kw)
    base.setdefault("gpus_per_node", base.get("gpus", 1))
    return api.price(graph, GPU, Plan(**base), Stub())


def _layer_note(est) -> str:
    return next(a for a in est.assumptions if a.startswith("layers under pipeline parallel"))


def test_every_stage_listed_at_its_gpus_and_the_rows_add_up_to_the_step():
    e = _est(blocks_graph(4), gpus=4, pipeline_parallel=2)  # 2 stages x 2 data-parallel replicas, 2 GPUs a stage
    rows = {le.name: le for le in e.layers}
    assert set(rows) == {f"h.{k}.{m}" for k in range(4) for m in ("fc", "act")} | {"head", "(root)"}
    # a block's fc: 3 ops x 0.3 J x the 2 GPUs of its stage = 1.8 J, 3 x 1,000 x 2 = 6,000 FLOPs, 3 ms on its GPU;
    # stage 1's blocks h.0 / h.1 (not traced) as the traced stage's mean block: the same
    for k in range(4):
        assert rows[f"h.{k}.fc"].gpu_energy_j == pytest.approx(1.8)
        assert rows[f"h.{k}.fc"].flops == 6000
        assert rows[f"h.{k}.fc"].time_s == pytest.approx(3e-3)
        # act: 2 ops x 0.3 J x 2 GPUs = 1.2 J, 4,000 FLOPs, 2 ms
        assert rows[f"h.{k}.act"].gpu_energy_j == pytest.approx(1.2)
        assert rows[f"h.{k}.act"].flops == 4000
    # the head runs on the last stage only: 3 ops x 0.3 J x 2 GPUs = 1.8 J (it was x all 4 GPUs: 3.6 J)
    assert rows["head"].gpu_energy_j == pytest.approx(1.8)
    assert rows["head"].flops == 6000
    # the optimizer step (500 FLOPs on a stage's GPU: its half of the 1,000 parameters): each stage's, x its 2
    # blocks / the traced stage's 2 = 1 op each: 2 stages x 0.3 J x 2 GPUs = 1.2 J, 2 x 500 x 2 = 2,000 FLOPs,
    # 1 ms on each stage's GPU, summed over the 2 stages = 2 ms
    assert rows["(root)"].gpu_energy_j == pytest.approx(1.2)
    assert rows["(root)"].flops == 2000
    assert rows["(root)"].time_s == pytest.approx(2e-3)
    # rows: 4 x 1.8 + 4 x 1.2 + 1.8 + 1.2 = 15.0 J = forward + backward + optimizer energy of the step: a stage's GPU
    # runs 2 blocks (2 x 5 ops) + on the last the head (3 ops): per GPU on average 2 x 1.5 J + 0.9 J / 2 = 3.45 J,
    # x 4 GPUs = 13.8 J forward + backward, + 0.3 J x 4 GPUs = 1.2 J optimizer
    total = sum(le.gpu_energy_j for le in e.layers)
    assert total == pytest.approx(15.0)
    ph = e.phases
    assert ph["forward"].gpu_energy_j + ph["backward"].gpu_energy_j == pytest.approx(13.8)
    assert ph["optimizer"].gpu_energy_j == pytest.approx(1.2)
    # what is no layer's: the 1F1B bubble, fill and drain of the other stage's 2 blocks = 10 ms at 50 W = 0.5 J, +
    # stage 1 waits for the last stage's head: busy 14 ms (13 ops + optimizer) against 11.5 ms + 1 ms on average =
    # 1.5 ms x 50 W = 0.075 J; 0.575 J x 4 GPUs = 2.3 J; and the exposed data-parallel all-reduce
    assert ph["pipeline_bubble"].gpu_energy_j == pytest.approx(2.3)
    rest = sum(v.gpu_energy_j for k, v in ph.items() if k not in ("forward", "backward", "optimizer"))
    assert set(ph) == {"forward", "backward", "optimizer", "communication", "pipeline_bubble"}
    assert e.per_step.gpu_energy_j == pytest.approx(15.0 + rest)
    # shares of the step's GPU energy (they were of the costed stage's energy x 4 GPUs)
    for le in e.layers:
        assert le.share == pytest.approx(le.gpu_energy_j / e.per_step.gpu_energy_j)
    assert sum(le.share for le in e.layers) == pytest.approx(15.0 / e.per_step.gpu_energy_j)
    note = _layer_note(e)
    for part in ("every stage's modules, each at the 2 GPUs of its stage (4 GPUs / 2 stages)",
                 "h blocks 0-1 on stage 1, 2-3 on stage 2 (stage 2 traced; the other stages' blocks priced as its "
                 "mean block)", "on the last stage only", "its share of the step's GPU energy",
                 "the rows add up to 15 J (forward, backward and optimizer)", "pipeline_bubble 2.3 J"):
        assert part in note
    # the JSON carries the statement beside the rows it explains
    from wattlint.report import json_out

    doc = json.loads(json_out.render([e]))
    assert note in doc["assumptions"]
    assert sum(le["gpu_energy_j"] for le in doc["layers"]) == pytest.approx(15.0, rel=1e-5)


def test_uneven_stages_with_a_middle_costed_stage():
    """6 blocks on 4 stages: 1/2/2/1 (the outer stages take the shortfall); the head's 3,000 FLOPs are 0.6 of a
    block's 5,000, so the last stage (1 + 0.6 blocks) is lighter than stage 2 (2 blocks), which is traced. The
    last stage's head is not in the trace: one row priced at the block rate, as the step energy prices it."""
    e = _est(blocks_graph(6), gpus=8, pipeline_parallel=4)  # 2 GPUs a stage
    assert e.graph.extra["pipeline_stages"]["costed"] == 1
    assert [r.flops for r in e.graph.records if r.phase is Phase.OPTIMIZER] == [333]  # 2 of 6 blocks' 1,000
    rows = {le.name: le for le in e.layers}
    head = "(last stage: final norm, LM head and loss)"
    assert set(rows) == {f"h.{k}.{m}" for k in range(6) for m in ("fc", "act")} | {head, "(root)"}
    for k in range(6):  # each block once, at the 2 GPUs of its stage: 1.8 J and 1.2 J as above
        assert rows[f"h.{k}.fc"].gpu_energy_j == pytest.approx(1.8)
        assert rows[f"h.{k}.act"].gpu_energy_j == pytest.approx(1.2)
    # head: 0.6 blocks x (5 ops x 0.3 J) x 2 GPUs = 1.8 J; 0.6 x 5,000 x 2 = 6,000 FLOPs; 0.6 x 5 ms = 3 ms
    assert rows[head].gpu_energy_j == pytest.approx(1.8)
    assert rows[head].flops == 6000
    assert rows[head].time_s == pytest.approx(3e-3)
    # optimizer: stage i's x n_i / 2: (1 + 2 + 2 + 1) / 2 = 3 ops' worth x 0.3 J x 2 GPUs = 1.8 J; 3 x 333 x 2 =
    # 1,998 FLOPs; 0.5 + 1 + 1 + 0.5 = 3 ms
    assert rows["(root)"].gpu_energy_j == pytest.approx(1.8)
    assert rows["(root)"].flops == 1998
    assert rows["(root)"].time_s == pytest.approx(3e-3)
    # 6 x 3.0 + 1.8 + 1.8 = 21.6 J = forward + backward + optimizer
    compute = sum(e.phases[p].gpu_energy_j for p in ("forward", "backward", "optimizer"))
    assert sum(le.gpu_energy_j for le in e.layers) == pytest.approx(21.6)
    assert compute == pytest.approx(21.6)
    assert sum(le.share for le in e.layers) == pytest.approx(21.6 / e.per_step.gpu_energy_j)
    note = _layer_note(e)
    assert "h blocks 0 on stage 1, 1-2 on stage 2, 3-4 on stage 3, 5 on stage 4 (stage 2 traced" in note
    assert f"as the row '{head}' priced at the block rate from their FLOPs (0.60 blocks' worth)" in note


def test_traced_gpt_json_lists_every_stage_and_adds_up(gpt_config, run_cli):
    """The review's repro on the traced GPT of the parallelism tests (4 blocks, PP 2 on 4 GPUs, TP 1): the JSON
    listed transformer.h.2/.3 only."""
    code, out, err = run_cli(gpt_config, "--gpu", "a100-sxm4-80gb", "--gpus", "4", "--pipeline-parallel", "2",
                             "--batch-size", "8", "--micro-batch-size", "2", "--seq-len", "256", "--steps", "10",
                             "--precision", "bf16", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    names = {le["name"] for le in doc["layers"]}
    assert {f"transformer.h.{k}.mlp.c_fc" for k in range(4)} <= names
    rows = sum(le["gpu_energy_j"] for le in doc["layers"])
    compute = sum(doc["phases"][p]["gpu_energy_j"] for p in ("forward", "backward", "optimizer"))
    assert rows == pytest.approx(compute, rel=1e-4)  # JSON numbers to 6 significant digits
    assert rows < doc["per_step"]["gpu_energy_j"]
    assert sum(le["share"] for le in doc["layers"]) == pytest.approx(rows / doc["per_step"]["gpu_energy_j"], rel=1e-4)
    assert sum(le["flops"] for le in doc["layers"]) == pytest.approx(doc["per_step"]["flops"], rel=1e-4)
    # blocks of both stages alike, each at its stage's 2 GPUs
    c_fc = [le["gpu_energy_j"] for le in doc["layers"] if le["name"].endswith(".mlp.c_fc")]
    assert len(c_fc) == 4 and max(c_fc) == pytest.approx(min(c_fc), rel=1e-5)
    assert any(a.startswith("layers under pipeline parallel 2: every stage's modules, each at the 2 GPUs of its "
                            "stage (4 GPUs / 2 stages)") for a in doc["assumptions"])


def test_memory_workspace_and_fragmentation_are_stated():
    """The peak adds 768 MiB of workspace and 10 % of the dynamic memory: they decide 'fits' and WL201, and now every
    report says so (a tiny model printed 'Memory per GPU 768 MiB' with no word on where it came from)."""
    from wattlint.report import json_out, text

    e = _est(blocks_graph(2, activation_bytes=10 * MIB), gpus=1, batch_size=8)
    # fp32 (no weight casts), no loss logits (no loss transient): dynamic = the 10 MiB of activations; 10 % = 1 MiB;
    # workspace 0.75 x 1,024 MiB = 768 MiB: 769 MiB = 805,306,368 + 1,048,576 bytes
    assert e.memory.breakdown["workspace"] == 805_306_368 + 1_048_576
    note = next(a for a in e.assumptions if a.startswith("memory per GPU includes a workspace"))
    for part in ("a workspace of 768 MiB (CUDA context ~300-500 MiB + cuBLAS/cuDNN workspaces)",
                 "10% caching-allocator fragmentation on the activations and temporaries",
                 "(10% of 10.0 MiB of activations, weight casts and loss transient = 1.0 MiB): 769.0 MiB",
                 "counted in the peak that decides fits and WL201", "no published figure found for either"):
        assert part in note
    assert note in json.loads(json_out.render([e]))["assumptions"]
    assert "768 MiB (CUDA context" in " ".join(text.render([e], top=5).split())
