"""--moe-token-dispatcher-type and --overlap-moe-expert-parallel-comm wired into the step (review s54): the
expert-parallel all-to-all of energy.system.model_parallel under DeepEP-style dispatch (one network copy per
destination node, bounded by a config's node-limited routing) and under Megatron-Core's combined-1F1B overlap.

The copies per token are parallel.expert_dispatch_copies' (checked against a brute-force enumeration in
tests/test_moe_a2a_s54.py); here the bytes, the links and the overlap rule are put together by hand."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import wattlint  # noqa: E402
from _parallel_fixtures import DEEPSEEK_V3_TINY  # noqa: E402
from wattlint import parallel as P  # noqa: E402
from wattlint.energy import system  # noqa: E402
from wattlint.hardware import resolve_gpu  # noqa: E402

# a tiny DeepSeek-V3: 3 layers, the first dense (first_k_dense_replace 1): 2 MoE layers of 64 experts, top-8,
# node-limited routing to 4 of 8 groups; hidden 256
CFG = DEEPSEEK_V3_TINY
# 128 GPUs (16 nodes of 8), EP 64 (8 nodes), micro-batch 1 x 1024 tokens, batch 1024: 8 micro-batches per step
PLAN = dict(gpu="h100", gpus=128, expert_parallel=64, precision="bf16", training_stack="megatron", seq_len=1024,
            batch_size=1024, micro_batch_size=1, steps=10, lint=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds") / "config.json"
    path.write_text(json.dumps(CFG))
    graph = wattlint.analyze(str(path), seq_len=1024, batch_size=1)
    out = {}
    orig = system.model_parallel
    for name, extra in {"alltoall": {}, "flex": {"moe_token_dispatcher_type": "flex"},
                        "alltoall+overlap": {"overlap_moe_expert_parallel_comm": True},
                        "flex+overlap": {"moe_token_dispatcher_type": "flex",
                                         "overlap_moe_expert_parallel_comm": True}}.items():
        seen = {}

        def spy(stage, gpu, plan, micro_compute_s, *a, _seen=seen, **k):
            res = orig(stage, gpu, plan, micro_compute_s, *a, **k)
            _seen.update(stage=stage, plan=plan, compute=micro_compute_s, cost=res)
            return res

        system.model_parallel = spy
        try:
            est = wattlint.estimate(graph, **PLAN, **extra)
        finally:
            system.model_parallel = orig
        out[name] = (est, seen)
    return graph, out


def test_the_summary_carries_node_limited_routing(runs):
    graph, _ = runs
    layers = P.moe_layers(graph)
    assert len(layers) == 2
    assert all((ly["n_group"], ly["topk_group"]) == (8, 4) for ly in layers)


def test_alltoall_default_is_one_copy_per_assignment(runs):
    _, out = runs
    est, seen = out["alltoall"]
    plan = seen["plan"]
    assert plan.moe_token_dispatcher_type == "alltoall" and not plan.overlap_moe_expert_parallel_comm
    # one dispatch: 1024 tokens x top-8 x 1 row per assignment x hidden 256 x 2 B = 4,194,304 B per GPU
    one = system.expert_all_to_all(1024 * 8 * 256 * 2, 64, 1, resolve_gpu("h100")[0], plan)[0]
    # 4 all-to-alls per MoE layer (dispatch + combine, forward + backward), 2 layers, 8 micro-batches
    assert seen["cost"].ep_s == pytest.approx(8 * 2 * 4 * one, rel=1e-9)
    assert any("dispatcher alltoall: one copy per token-to-expert assignment" in a for a in est.assumptions)


def test_flex_sends_one_network_copy_per_node(runs):
    _, out = runs
    est, seen = out["flex"]
    plan = seen["plan"]
    gpu = resolve_gpu("h100")[0]
    c = P.expert_dispatch_copies({"experts": 64, "top_k": 8, "n_group": 8, "topk_group": 4}, 64, 1, 8, "flex")
    # by hand: each of the 8 nodes holds one group of 8 experts (one per GPU). A given remote node is hit when its
    # group is among the 4 chosen (P = 4/8) and at least one of the 8 picks among the 32 candidates is in it:
    # 1 - C(24, 8) / C(32, 8) = 1 - 735471 / 10518300; expected network copies = 7 remote nodes x 1/2 x that.
    # NVLink: 64 - 8 non-entry GPUs, each hit with 1/2 x 8/32 (its one expert among the 8 of 32 candidates)
    assert c.network == pytest.approx(7 * 0.5 * (1 - 735471 / 10518300))
    assert c.nvlink == pytest.approx(56 * 0.5 * 8 / 32)
    row = 1024 * 1 * 256 * 2  # tokens x rows per assignment (capacity 1) x hidden x bf16
    nv_bw = system._link(gpu, plan, True)[0]
    net_bw, lat, _ = system._link(gpu, plan, False)
    one = max(row * c.nvlink / nv_bw, row * c.network / net_bw) + lat
    assert seen["cost"].ep_s == pytest.approx(8 * 2 * 4 * one, rel=1e-9)
    assert seen["cost"].ep_s < out["alltoall"][1]["cost"].ep_s  # fewer bytes over the slower link
    assert any(f"{c.network:.3g} network + {c.nvlink:.3g} NVLink copies per token" in a
               and "node-limited routing: 4 of 8 expert groups" in a for a in est.assumptions)
    assert est.plan.moe_token_dispatcher_type == "flex"


@pytest.mark.parametrize("base", ["alltoall", "flex"])
def test_overlap_hides_the_all_to_all_behind_the_partner_micro_batch(runs, base):
    _, out = runs
    plain = out[base][1]["cost"].ep_s / 8  # one micro-batch's all-to-all, exposed
    est, seen = out[base + "+overlap"]
    c = seen["compute"]
    assert c > 0
    # combined 1F1B over m = 8 micro-batches: the unpaired first forward and last backward keep one micro-batch's
    # all-to-all; in the 7 paired slots the forward's half of it hides behind the partner's backward (2/3 of the
    # compute: backward = 2 x forward FLOPs) and the backward's half behind the partner's forward (1/3)
    expected = plain + 7 * (max(0.0, plain / 2 - 2 * c / 3) + max(0.0, plain / 2 - c / 3))
    assert seen["cost"].ep_s == pytest.approx(expected, rel=1e-9)
    assert seen["cost"].ep_s < out[base][1]["cost"].ep_s
    assert est.per_step.time_s < out[base][0].per_step.time_s
    assert any("--overlap-moe-expert-parallel-comm" in a and "over m = 8 micro-batches" in a
               for a in est.assumptions)
