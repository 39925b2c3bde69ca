"""Layer tables under pipeline parallelism, and the memory workspace every report states (review 2026-12).

Pipeline: the layer rows listed only the costed (last) stage's modules, each x all GPUs, with shares of that stage's
energy: on a 4-layer Llama at PP 2 they added up to 160.6 J against a 153.7 J step, shares 0.878 of a 182.8 J figure
printed nowhere, and model.layers.0/1 were missing. Now every stage's modules are listed at the GPUs of their stage,
the rows add up to the step's forward + backward + optimizer energy, shares are of the step's GPU energy, and an
assumption line (JSON and text) says so, with the rest of the step by phase.

Memory: the peak per GPU adds a CUDA context and an allocator margin that no report stated.

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
    """The peak adds the CUDA context (0.6 GiB without --torch-version: lazy module loading) and a 12 % allocator margin
    on the dynamic memory: they decide 'fits' and WL201, and every report says so (a tiny model printed 'Memory per
    GPU 768 MiB' with no word on where it came from)."""
    from wattlint.report import json_out, text

    e = _est(blocks_graph(2, activation_bytes=10 * MIB), gpus=1, batch_size=8)
    # fp32 (no weight casts), no loss logits (no loss transient): dynamic = the 10 MiB of activations; 12 % = 1.2 MiB
    # = 1,258,291.2 B; context 0.6 x 1,073,741,824 = 644,245,094.4 -> 644,245,094 B (614.4 MiB);
    # int(644,245,094 + 1,258,291.2) = 645,503,385 B = 615.6 MiB
    assert e.memory.breakdown["workspace"] == 645_503_385
    note = next(a for a in e.assumptions if a.startswith("memory per GPU includes a CUDA context"))
    for part in ("a CUDA context of 614 MiB (torch 2.x (no --torch-version) loads CUDA kernels lazily",
                 "a 12% caching-allocator margin on the activations, weight casts and loss transient",
                 "12% of 10.0 MiB = 1.2 MiB): 615.6 MiB ('workspace' in the breakdown)",
                 "less 1.5% the driver reserves", "0.95-1.15x the prediction"):
        assert part in note
    assert note in json.loads(json_out.render([e]))["assumptions"]
    assert "614 MiB (torch 2.x" in " ".join(text.render([e], top=5).split())


# ---- each stage's optimizer step over its own parameters; interleaved stages (review 2026-12) ------------------------


def _dims_r(phase, module, n, k):
    """A matmul record of ``module`` whose weight is n x k (the frontend's dims): what wattlint.parallel counts as
    the weights the last stage holds after the blocks."""
    return OpRecord(op="aten.mm.default", kind=OpKind.MATMUL, module=module, phase=phase, dtype="float32", flops=1000,
                    bytes_read=100, bytes_written=100, dims=(("m", 8), ("n", n), ("k", k)))


def lm_graph(tied: bool) -> CostGraph:
    """A language model as the torch frontend records it: an embedding wte (1,000 parameters) before 4 blocks h.k of
    1,000 parameters each (``block_params``), an LM head of 100 x 10 = 1,000 weights (its own, or wte's when
    ``tied``: counted once in the model's parameters, as torch counts a tied weight), and one optimizer op over all
    parameters with 1 FLOP each."""
    recs = [OpRecord(op="aten.embedding.default", kind=OpKind.EMBEDDING, module="wte", phase=Phase.FORWARD,
                     dtype="float32", flops=0, bytes_read=100, bytes_written=100)]
    for b in range(4):
        recs += [_r(Phase.FORWARD, f"h.{b}.fc"), _r(Phase.FORWARD, f"h.{b}.act", OpKind.ELEMENTWISE, "aten.relu.default")]
    recs += [_dims_r(Phase.FORWARD, "head", 100, 10), _r(Phase.BACKWARD, "head"), _r(Phase.BACKWARD, "head")]
    for b in reversed(range(4)):
        recs += [_r(Phase.BACKWARD, f"h.{b}.act", OpKind.ELEMENTWISE, "aten.threshold_backward.default"),
                 _r(Phase.BACKWARD, f"h.{b}.fc"), _r(Phase.BACKWARD, f"h.{b}.fc")]
    params = 5000 if tied else 6000
    recs.append(OpRecord(op="aten._fused_adamw_.default", kind=OpKind.OPTIMIZER, module="", phase=Phase.OPTIMIZER,
                         dtype="float32", flops=params, bytes_read=16 * params, bytes_written=12 * params,
                         dims=(("numel", params),)))
    return CostGraph(model=ModelInfo(source="stub", format="torch", params=params, param_bytes=4 * params),
                     records=tuple(recs), micro_batch=8, precision="fp32",
                     extra={"activation_bytes": 1000, "block_params": 1000, "block_count": 4})


@pytest.mark.parametrize("tied", [False, True])
def test_each_stage_steps_its_own_parameters(tied):
    """The review's GPT-2 small repro: every stage's optimizer step was the costed stage's x its blocks / the costed
    stage's, so the LM head's was charged on every stage (GPT-2 small at PP 7: 8.52 J against 1.93 J at PP 1). PP 4
    on 4 GPUs, one block a stage: the costed last stage holds 1 block + the head = 2,000 parameters (its optimizer
    op, 0.3 J in the stub, covers them: the model's FLOPs x 2,000 / the model's parameters = 2,000)."""
    e = _est(lm_graph(tied), gpus=4, pipeline_parallel=4)
    assert e.graph.params == 2000
    assert [r.flops for r in e.graph.records if r.phase is Phase.OPTIMIZER] == [2000]
    # each stage's own: stage 1 its block + wte (1,000 + 1,000; tied: the model's 1,000 outside the blocks), stages
    # 2 and 3 their block (1,000), stage 4 its block + the head (1,000 + 1,000; tied: Megatron-LM's copy of wte):
    # 6,000 over the stages = 3 x the costed stage's 2,000: 0.3 J x 3 = 0.9 J, 2,000 FLOPs x 3 = 6,000, 1 ms x 3
    # (it was x 4 / 4 per stage: 4 x 0.3 J = 1.2 J, 8,000 FLOPs)
    assert e.phases["optimizer"].gpu_energy_j == pytest.approx(0.9)
    rows = {le.name: le for le in e.layers}
    assert rows["(root)"].gpu_energy_j == pytest.approx(0.9)
    assert rows["(root)"].flops == 6000  # untied: the model's 6,000 parameters; tied: 5,000 + the 1,000 copy
    assert rows["(root)"].time_s == pytest.approx(3e-3)
    compute = sum(e.phases[p].gpu_energy_j for p in ("forward", "backward", "optimizer"))
    assert sum(le.gpu_energy_j for le in e.layers) == pytest.approx(compute)
    note = next(a for a in e.assumptions if a.startswith("pipeline stages' energy"))
    parts = ["its optimizer step over its own parameters at the costed stage's optimizer cost per parameter: its "
             "blocks (1,000 parameters each)", "on average 0.750 x the costed stage's 2,000"]
    if tied:  # 5,000 - 4 x 1,000 = 1,000 outside the blocks, the head's 1,000 too: tied, its copy counted
        parts += ["the 1,000 outside the blocks on the first stage (embeddings) and the last (final norm, LM head), "
                  "and the last stage's copy of the tied input embedding (1,000: Megatron-LM keeps",
                  "6,000 over the 4 stages (1.200 x the model's 5,000)"]
    else:
        parts += ["the 2,000 outside the blocks on the first stage (embeddings) and the last (final norm, LM head): "
                  "6,000 over the 4 stages (1.000 x the model's 6,000)"]
    for part in parts:
        assert part in note
    assert ("copy of the tied" in note) == tied
    assert "0.750 x the costed stage's on average" in _layer_note(e)


def test_gpt2_small_optimizer_over_the_stages_is_the_models():
    """The review's numbers: GPT-2 small (tied wte), batch 16 x 256, bf16 on A100s, --gpus = pp: the optimizer
    energy per step was 1.93 J at PP 1, 4.92 J at PP 5 and 8.52 J at PP 7 (4.4 x). Each stage now steps its own
    parameters: 12 blocks x 7,087,872 + the 39,385,344 outside the blocks + the 38,597,376 copy of wte on the last
    stage = 163,037,184 = 1.310 x the model's 124,439,808; the energy per parameter differs a little between a
    stage's smaller kernels and the whole model's."""
    import wattlint

    g = api.trace("examples/gpt2-small/config.json", {"batch_size": 16, "seq_len": 256, "precision": "bf16"})
    kw = dict(gpu="a100", batch_size=16, seq_len=256, precision="bf16", steps=10, lint=False)
    one = wattlint.estimate(g, gpus=1, **kw).phases["optimizer"].gpu_energy_j
    for pp in (5, 7):
        e = wattlint.estimate(g, gpus=pp, pipeline_parallel=pp, **kw)
        assert e.phases["optimizer"].gpu_energy_j / one == pytest.approx(163_037_184 / 124_439_808, rel=0.02)
        note = next(a for a in e.assumptions if a.startswith("pipeline stages' energy"))
        assert f"163,037,184 over the {pp} stages (1.310 x the model's 124,439,808)" in note


def test_interleaved_stages_list_the_blocks_their_chunks_hold():
    """--virtual-pipeline-stages 2 on 2 stages of 2 blocks: the model cut into 4 chunks of 1 block dealt to the stages
    in turn (Megatron-LM), stage 1 holds blocks 0 and 2, stage 2 blocks 1 and 3; the note said 0-1 on stage 1, 2-3
    on stage 2, and '1 GPUs'. The costed stage traced blocks 2-3 (a contiguous run): its rows are listed as 1 and 3."""
    e = _est(blocks_graph(4), gpus=2, pipeline_parallel=2, virtual_pipeline_stages=2, grad_accum=2)
    note = _layer_note(e)
    assert ("every stage's modules, each at the 1 GPU of its stage (2 GPUs / 2 stages): h blocks 0 and 2 on stage 1, "
            "1 and 3 on stage 2 (interleaved 1F1B: the model cut into 4 chunks dealt to the stages in turn, 2 per "
            "stage; stage 2 traced, its trace's blocks 2-3 (a contiguous run of its size) listed as its own 1 and 3; "
            "the other stages' blocks priced as its mean block)") in note
    rows = {le.name: le for le in e.layers}
    assert set(rows) == {f"h.{k}.{m}" for k in range(4) for m in ("fc", "act")} | {"head", "(root)"}
    # a block's fc: 3 ops x 0.3 J x 2 micro-batches x the 1 GPU of its stage = 1.8 J, whichever stage
    for k in range(4):
        assert rows[f"h.{k}.fc"].gpu_energy_j == pytest.approx(1.8)


def test_interleaved_uneven_stages_with_a_middle_costed_stage():
    """14 blocks on 4 stages, 3/4/4/3 (the outer stages take the shortfall); the last stage's 3 blocks + head (0.6
    of a block) are lighter than stage 2's 4: stage 2 traced (blocks 3-6, contiguous). 2 chunks per stage, the
    earlier one larger when they do not divide: chunks of 2/1, 2/2, 2/2, 2/1 blocks dealt in turn: stage 1 holds
    0-1 and 8, stage 2 2-3 and 9-10, stage 3 4-5 and 11-12, stage 4 6-7 and 13."""
    e = _est(blocks_graph(14), gpus=4, pipeline_parallel=4, virtual_pipeline_stages=2, grad_accum=4, batch_size=32)
    assert e.graph.extra["pipeline_stages"]["costed"] == 1
    note = _layer_note(e)
    assert ("h blocks 0-1 and 8 on stage 1, 2-3 and 9-10 on stage 2, 4-5 and 11-12 on stage 3, 6-7 and 13 on "
            "stage 4 (interleaved 1F1B: the model cut into 8 chunks dealt to the stages in turn, 2 per stage; stage 2 "
            "traced, its trace's blocks 3-6 (a contiguous run of its size) listed as its own 2-3 and 9-10;") in note
    assert {le.name for le in e.layers if le.name.startswith("h.")} == {
        f"h.{k}.{m}" for k in range(14) for m in ("fc", "act")}


def test_per_parameter_optimizer_records_make_no_rows_of_other_stages_blocks():
    """An ONNX graph's optimizer is one record per parameter, named by the module that uses it first; the per-GPU
    graph keeps them all, scaled to the costed stage's share. Those of the other stage's blocks made rows h.0 / h.1
    on the traced stage, which then counted as its blocks: 'h blocks 4-5 on stage 1, 0-3 on stage 2', rows h.4 and
    h.5 of a 4-block model, and a mean block with twice the optimizer in it."""
    g = blocks_graph(4)
    opt = [_r(Phase.OPTIMIZER, m, OpKind.OPTIMIZER, "optim::adamw") for m in [f"h.{b}.fc" for b in range(4)] + ["head"]]
    g = CostGraph(model=g.model, records=tuple(r for r in g.records if r.phase is not Phase.OPTIMIZER) + tuple(opt),
                  micro_batch=8, precision="fp32", extra=dict(g.extra))
    e = _est(g, gpus=4, pipeline_parallel=2)  # 2 GPUs a stage
    rows = {le.name: le for le in e.layers}
    assert set(rows) == {f"h.{k}.{m}" for k in range(4) for m in ("fc", "act")} | {"head", "(root)"}
    for k in range(4):  # forward + backward only: 3 ops x 0.3 J x 2 GPUs
        assert rows[f"h.{k}.fc"].gpu_energy_j == pytest.approx(1.8)
    assert rows["head"].gpu_energy_j == pytest.approx(1.8)
    # the optimizer: the costed stage's 5 records, priced as one multi-tensor kernel (0.3 J in the stub), x its 2
    # blocks / 2 (no per-block parameter count: as the records were scaled) on each of the 2 stages' 2 GPUs =
    # 0.3 x 2 x 2 = 1.2 J, all in (root): no module's row holds a share of it
    assert rows["(root)"].gpu_energy_j == pytest.approx(1.2)
    assert rows["(root)"].type == "optimizer ops"
    assert e.phases["optimizer"].gpu_energy_j == pytest.approx(1.2)
    compute = sum(e.phases[p].gpu_energy_j for p in ("forward", "backward", "optimizer"))
    assert sum(le.gpu_energy_j for le in e.layers) == pytest.approx(compute)
    assert "h blocks 0-1 on stage 1, 2-3 on stage 2 (stage 2 traced;" in _layer_note(e)


def test_first_stage_steps_the_embeddings_the_last_the_head(gpt_config):
    """The traced GPT of the parallelism tests (h 512, 4 blocks of 12 h^2 + 13 h = 3,152,384 parameters, vocab 1000,
    256 positions, LM head tied to wte) at PP 2: the costed last stage steps its 2 blocks + the LM head (wte's copy,
    1000 x 512 = 512,000) = 6,816,768 parameters; the first stage its 2 blocks + wte 512,000 + wpe 256 x 512 =
    131,072 + ln_f 1,024. Both stages: 13,765,632 = the model's 13,253,632 + the 512,000 copy. The step's optimizer
    FLOPs were 2 x the costed stage's (each stage's x 2 blocks / 2)."""
    from wattlint.hardware import resolve_gpu
    from wattlint.parallel import find_blocks

    from _parallel_fixtures import est

    pp = est(gpt_config, gpus=2, pipeline_parallel=2, batch_size=8, micro_batch_size=1)
    assert pp.graph.params == 2 * 3_152_384 + 512_000 == 6_816_768
    note = next(a for a in pp.assumptions if a.startswith("pipeline stages' energy"))
    assert "13,765,632 over the 2 stages (1.039 x the model's 13,253,632)" in note
    blocks = find_blocks(pp.graph)
    k = 8  # micro-batches per step, traced at micro-batch 1
    fb = [(r, t) for r, t in zip(pp.graph.records, pp.op_times_s) if r.phase in (Phase.FORWARD, Phase.BACKWARD)]
    stage_f = k * sum(r.flops for r, _ in fb)
    head_f = k * sum(r.flops for r, _ in fb if blocks.index(r.module) is None)
    opt_f = sum(r.flops for r in pp.graph.records if r.phase is Phase.OPTIMIZER)
    # FLOPs: both stages' blocks, the head once, the optimizer x 13,765,632 / 6,816,768 (it was x 2)
    assert pp.per_step.flops == pytest.approx(2 * stage_f - head_f + opt_f * 13_765_632 / 6_816_768, rel=1e-12)
    # bubble energy: the fill and drain at idle power on both GPUs, + the first stage's wait: the last stage's head
    # time (8 micro-batches) less the first stage's longer optimizer step (132,096 more parameters: wpe + ln_f), over
    # the 2 GPUs' mean
    ph = pp.phases
    head_t = k * sum(t for r, t in fb if blocks.index(r.module) is None)
    extra_t = ph["optimizer"].time_s * (131_072 + 1_024) / 6_816_768
    idle = resolve_gpu("a100-sxm4-80gb")[0].idle_w
    assert ph["pipeline_bubble"].gpu_energy_j == pytest.approx(
        (ph["pipeline_bubble"].time_s + (head_t - extra_t) / 2) * idle * 2, rel=1e-9)
