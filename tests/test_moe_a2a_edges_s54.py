"""Edges of the MoE all-to-all options (review s54 of f53d697, helper F11):

* --overlap-moe-expert-parallel-comm refused (exit 2, one line) where Megatron-Core's TransformerConfig refuses it
  (full recompute, neither bf16 nor fp16, PP > 1 without interleaving); without expert parallelism both options
  have no effect, stated, as --sequence-parallel without TP;
* the overlap pairs the forward's all-to-alls with the partner's backward and the backward's with its forward;
* flex inside one node sends one NVLink copy per destination GPU (DeepEP's intranode dispatch);
* DeepSeek-V2's default topk_method 'greedy' ignores n_group / topk_group;
* wattlint.track takes both options."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import wattlint  # noqa: E402
from _parallel_fixtures import DEEPSEEK_V3_TINY  # noqa: E402
from wattlint import parallel as P  # noqa: E402
from wattlint.energy import system  # noqa: E402
from wattlint.hardware import resolve_gpu  # noqa: E402
from wattlint.types import ConfigError  # noqa: E402

# tiny DeepSeek-V3: 3 layers, the first dense: 2 MoE layers of 64 experts, top-8, 4 of 8 groups; hidden 256
V3 = DEEPSEEK_V3_TINY
V2 = {**V3, "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "num_hidden_layers": 2,
      "num_experts_per_tok": 6, "topk_group": 3}
# 128 GPUs (16 nodes of 8), EP 64, micro-batch 1 x 1024 tokens, batch 1024: 8 micro-batches per step
PLAN = dict(gpu="h100", gpus=128, expert_parallel=64, precision="bf16", training_stack="megatron", seq_len=1024,
            batch_size=1024, micro_batch_size=1, steps=10, lint=False)


@pytest.fixture(scope="module")
def v3(tmp_path_factory):
    path = tmp_path_factory.mktemp("v3") / "config.json"
    path.write_text(json.dumps(V3))
    return path, wattlint.analyze(str(path), seq_len=1024, batch_size=1)


def _spied(graph, **kw):
    """(estimate, what energy.system.model_parallel saw: its plan, the micro-batch compute and its result)"""
    seen = {}
    orig = system.model_parallel

    def spy(stage, gpu, plan, micro_compute_s, *a, **k):
        res = orig(stage, gpu, plan, micro_compute_s, *a, **k)
        seen.update(plan=plan, compute=micro_compute_s, cost=res)
        return res

    system.model_parallel = spy
    try:
        est = wattlint.estimate(graph, **{**PLAN, **kw})
    finally:
        system.model_parallel = orig
    return est, seen


# ---- (3) refused where Megatron-Core refuses it ----------------------------------------------------------------

@pytest.mark.parametrize("extra, needs", [
    ({"recompute": "full"}, "--recompute full"),
    ({"activation_checkpointing": True}, "--recompute full"),
    ({"precision": "fp32", "training_stack": "pytorch"}, "needs --precision bf16 or fp16"),
    ({"pipeline_parallel": 2}, "needs --virtual-pipeline-stages > 1"),
])
def test_overlap_is_refused_where_megatron_core_refuses_it(v3, extra, needs):
    # wattlint priced each silently (recompute full: ep_s 12.648 -> 1.581 ms; PP 2 without VPP 16.864 -> 1.054 ms)
    with pytest.raises(ConfigError, match="--overlap-moe-expert-parallel-comm") as e:
        wattlint.estimate(v3[1], **{**PLAN, **extra}, overlap_moe_expert_parallel_comm=True)
    assert needs in str(e.value) and "\n" not in str(e.value)


def test_the_refusal_is_one_line_exit_2_on_the_command_line(v3, run_cli):
    code, _, err = run_cli(v3[0], "--gpu", "h100", "--gpus", "128", "--expert-parallel", "64", "--precision", "bf16",
                           "--seq-len", "1024", "--batch-size", "1024", "--micro-batch-size", "1", "--steps", "10",
                           "--pipeline-parallel", "2", "--overlap-moe-expert-parallel-comm")
    assert code == 2 and err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert "--virtual-pipeline-stages > 1" in err


def test_overlap_with_interleaved_pipeline_and_selective_recompute_is_accepted(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**V3, "num_hidden_layers": 5}))  # 2 stages x 2 chunks of at least one block
    graph = wattlint.analyze(str(path), seq_len=1024, batch_size=1)
    est, seen = _spied(graph, pipeline_parallel=2, virtual_pipeline_stages=2, recompute="selective",
                       overlap_moe_expert_parallel_comm=True)
    assert seen["plan"].overlap_moe_expert_parallel_comm and seen["cost"].ep_s > 0


def test_without_expert_parallelism_both_options_have_no_effect_and_say_so(v3):
    est = wattlint.estimate(v3[1], gpu="h100", gpus=8, precision="bf16", seq_len=1024, batch_size=64, steps=2,
                            lint=False, moe_token_dispatcher_type="flex", overlap_moe_expert_parallel_comm=True)
    assert any(a.startswith("--moe-token-dispatcher-type flex and --overlap-moe-expert-parallel-comm have no "
                            "effect without --expert-parallel > 1") for a in est.assumptions)
    # as --sequence-parallel without TP: the plan (and JSON) keeps the defaults, not options that did nothing
    assert est.plan.moe_token_dispatcher_type == "alltoall" and not est.plan.overlap_moe_expert_parallel_comm
    # --overlap-moe-expert-parallel-comm alone is no refusal either (Megatron asserts EP > 1: nothing to overlap)
    est = wattlint.estimate(v3[1], gpu="h100", gpus=8, precision="fp32", seq_len=1024, batch_size=64, steps=2,
                            lint=False, overlap_moe_expert_parallel_comm=True)
    assert any(a.startswith("--overlap-moe-expert-parallel-comm has no effect") for a in est.assumptions)


# ---- (4) the paired slot: forward's all-to-all behind the partner's backward, backward's behind its forward ----

def test_overlap_pairs_each_direction_with_the_partner_s_other_pass(v3):
    # 1200 Gbit/s per node: one micro-batch's all-to-all A lies between 2/3 and all of its compute c, where the
    # old rule (the whole A behind the whole c) hid every paired slot and the paired passes do not
    plain_est, plain = _spied(v3[1], internode_gbps=1200)
    est, seen = _spied(v3[1], internode_gbps=1200, overlap_moe_expert_parallel_comm=True)
    m = 8
    a = plain["cost"].ep_s / m
    c = seen["compute"]
    assert 2 * c / 3 < a < c  # the regime that tells the two rules apart
    # per pair: the forward's dispatch + combine (A/2) behind the partner's backward (2c/3: backward = 2 x forward
    # FLOPs), the backward's (A/2) behind the partner's forward (c/3); the first forward and last backward unpaired
    per_pair = max(0.0, a / 2 - 2 * c / 3) + max(0.0, a / 2 - c / 3)
    assert per_pair == pytest.approx(a / 2 - c / 3)
    assert seen["cost"].ep_s == pytest.approx(a + (m - 1) * per_pair, rel=1e-9)
    assert seen["cost"].ep_s > a  # the old rule: a + 7 x max(0, a - c) = a
    assert any("max(0, a2a/2 - 2/3 compute) + max(0, a2a/2 - 1/3 compute)" in x for x in est.assumptions)


# ---- (5) flex inside one node: one NVLink copy per destination GPU -----------------------------------------------

def test_flex_inside_one_node_sends_one_copy_per_destination_gpu(v3):
    ep8 = dict(expert_parallel=8)
    a2a_est, a2a = _spied(v3[1], **ep8)
    est, seen = _spied(v3[1], **ep8, moe_token_dispatcher_type="flex")
    plan = seen["plan"]
    gpu = resolve_gpu("h100")[0]
    # by hand: EP 8 in one node of 8, 8 experts per GPU = one routing group each. A given other GPU is hit when its
    # group is among the 4 chosen of 8 (1/2) and at least one of the 8 picks among the 32 candidates is in it:
    # 1 - C(24, 8) / C(32, 8); 7 other GPUs. alltoall: 8 x 7/8 = 7 copies.
    copies = 7 * 0.5 * (1 - math.comb(24, 8) / math.comb(32, 8))
    assert copies == pytest.approx(3.2553, abs=1e-4)
    row = 1024 * 256 * 2  # tokens x hidden x bf16
    bw, lat, _ = system._link(gpu, plan, True)
    one = row * copies / bw + lat
    # 4 all-to-alls per MoE layer, 2 MoE layers, 8 micro-batches
    assert seen["cost"].ep_s == pytest.approx(8 * 2 * 4 * one, rel=1e-9)
    assert seen["cost"].ep_s < a2a["cost"].ep_s
    assert any("one NVLink copy per destination GPU" in x and f"{copies:.3g} NVLink copies per token" in x
               for x in est.assumptions)


# ---- (6) DeepSeek-V2's topk_method decides whether the groups limit the routing -----------------------------------

@pytest.mark.parametrize("method, limited", [(None, False), ("greedy", False), ("group_limited_greedy", True)])
def test_deepseek_v2_groups_only_under_group_limited_greedy(tmp_path, method, limited):
    # transformers' DeepseekV2TopkRouter: 'greedy' (the config's default) is a plain top-k over all experts
    cfg = {**V2, **({"topk_method": method} if method else {})}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    layers = P.moe_layers(wattlint.analyze(str(path), seq_len=128, batch_size=1))
    assert layers
    for ly in layers:
        assert (ly.get("n_group"), ly.get("topk_group")) == ((8, 3) if limited else (None, None))


# ---- (7) wattlint.track takes both options -----------------------------------------------------------------------

def test_track_takes_the_moe_all_to_all_options(tmp_path):
    t = wattlint.track(static=False, out=tmp_path / "runs", moe_token_dispatcher_type="flex",
                       overlap_moe_expert_parallel_comm=True, display="quiet")
    assert t.options["moe_token_dispatcher_type"] == "flex" and t.options["overlap_moe_expert_parallel_comm"]
    with pytest.raises(ConfigError, match="moe_token_dispatcher_type=.*alltoall, flex"):
        wattlint.track(static=False, out=tmp_path / "runs", moe_token_dispatcher_type="deepep", display="quiet")
