"""Llama 4's MoE block traced at its routed (top-k) cost (wattlint.frontends.torch_moe's Llama 4 layout).

transformers' Llama4TextMoe runs every expert on every token (router scores [tokens, experts], zero outside the
top-k, one bmm over all experts); training stacks (torchtitan, Megatron) route top-k with grouped GEMMs, which is
what wattlint costs. Expected values are counted by hand in the comments; the numerical check compares the routed
forward with transformers' own forward on CPU tensors (the oracle)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from wattlint.frontends import torch_moe as M  # noqa: E402
from wattlint.frontends.hf import analyze_config  # noqa: E402
from wattlint.types import Phase  # noqa: E402

# the tiny llama4_text config: hidden H 256, expert FFN I 512, 2 layers, every layer MoE (interleave step 1),
# 4 routed experts, top-1, a shared expert of width 512, 4 heads x 64, 2 KV heads, vocab 1000, untied LM head
L4 = dict(model_type="llama4_text", hidden_size=256, intermediate_size=512, intermediate_size_mlp=512,
          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=64, num_local_experts=4,
          num_experts_per_tok=1, vocab_size=1000, max_position_embeddings=512, interleave_moe_layer_step=1,
          architectures=["Llama4ForCausalLM"])
SEQ = 128
H, E = 256, 4  # hidden size, routed experts (expert FFN width 512)

# parameters by hand:
#   embedding 1000 x 256                                                          =   256,000
#   per layer: q 256x256 65,536 + k 256x128 32,768 + v 32,768 + o 65,536          =   196,608
#              router 256 x 4                                                     =     1,024
#              routed experts 4 x (gate_up 256 x 1024 + down 512 x 256)
#                = 4 x (262,144 + 131,072)                                        = 1,572,864
#              shared expert 3 x 256 x 512                                        =   393,216
#              2 RMSNorms x 256                                                   =       512
#              layer total                                                        = 2,164,224
#   2 layers                                                                      = 4,328,448
#   final norm 256 + LM head 256 x 1000 = 256,256                                 -> 4,840,704
EXPERT_PARAMS_PER_LAYER = 1_572_864
PARAMS = 4_840_704


def _cfg(**kw):
    return {**L4, **kw}


def _graph(**kw):
    cf = kw.pop("capacity_factor", 1.0)
    return analyze_config(_cfg(**kw), seq_len=SEQ, micro_batch=1, capacity_factor=cf)


def _expert_gemms(g, phase):
    return [r for r in g.records
            if r.phase is phase and r.kind.value == "matmul" and r.module.split(".")[-1] == "experts"]


@pytest.fixture(scope="module")
def top1():
    return _graph()


def test_llama4_is_costed_not_refused_and_top1_expert_flops_are_routed(top1):
    # forward expert GEMMs per layer, top-1, 128 tokens:
    #   gate_up 2 x 128 x 1 x 256 x 1024 = 67,108,864; down 2 x 128 x 1 x 512 x 256 = 33,554,432 -> 100,663,296
    #   2 layers -> 201,326,592 (transformers' own bmm over all 4 experts would be 4x that: 805,306,368)
    fwd = _expert_gemms(top1, Phase.FORWARD)
    assert sum(r.flops for r in fwd) == 201_326_592
    # one grouped GEMM per projection and layer, 128 x 1 / 4 = 32 rows per expert
    assert len(fwd) == 4 and all(r.op == "aten._grouped_mm.default" and r.dim("b") == 4 and r.dim("m") == 32
                                 for r in fwd)
    # backward: the input gradient and the weight gradient of each, same FLOPs each
    assert sum(r.flops for r in _expert_gemms(top1, Phase.BACKWARD)) == 2 * 201_326_592
    moe = top1.extra["moe"]
    assert [ly["module"] for ly in moe["layers"]] == [f"model.layers.{i}.feed_forward.experts" for i in (0, 1)]
    assert all(ly["top_k"] == 1 and ly["experts"] == 4 and ly["rows_per_expert"] == [32] * 4 and ly["tokens"] == 128
               for ly in moe["layers"])
    assert any("Llama4TextExperts" in a and "routed cost" in a and "shared expert" in a for a in top1.assumptions)
    assert not top1.unsupported()


def test_llama4_shared_expert_runs_on_every_token(top1):
    # shared expert per layer: gate, up 2 x 128 x 256 x 512 = 33,554,432 each, down 2 x 128 x 512 x 256 = 33,554,432
    #   -> 100,663,296 per layer, 201,326,592 for 2 layers (every token, not routed)
    mms = [r for r in top1.records if r.phase is Phase.FORWARD and r.kind.value == "matmul"
           and ".shared_expert." in r.module]
    assert len(mms) == 6 and all(r.dim("m") == 128 for r in mms)
    assert sum(r.flops for r in mms) == 201_326_592


def test_llama4_parameter_count_matches_transformers(top1):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(**_cfg())
    with torch.device("meta"):
        ref = AutoModelForCausalLM.from_config(cfg)
    n = sum(p.numel() for p in ref.parameters())
    assert n == PARAMS  # transformers' count agrees with the hand count above
    assert top1.model.params == PARAMS and top1.model.trainable_params == PARAMS
    # the MoE summary's params are the routed experts only (not the router, not the shared expert)
    assert [ly["params"] for ly in top1.extra["moe"]["layers"]] == [EXPERT_PARAMS_PER_LAYER] * 2
    assert [ly["trainable_params"] for ly in top1.extra["moe"]["layers"]] == [EXPERT_PARAMS_PER_LAYER] * 2


@pytest.mark.parametrize("k, active", [
    # N_active = all parameters less (1 - k / E) of the routed experts (2 x 1,572,864 = 3,145,728):
    #   top-1: 4,840,704 - 3,145,728 x 3/4 (2,359,296) = 2,481,408
    #   top-2: 4,840,704 - 3,145,728 x 2/4 (1,572,864) = 3,267,840
    (1, 2_481_408), (2, 3_267_840)])
def test_llama4_mfu_counts_active_parameters(tmp_path, k, active):
    import wattlint

    p = tmp_path / "config.json"
    p.write_text(json.dumps(_cfg(num_experts_per_tok=k)))
    e = wattlint.estimate(str(p), gpu="a100-sxm4-80gb", seq_len=SEQ, steps=10, lint=False)
    u = e.utilization
    assert f"N_active = {active:,} of {PARAMS:,} parameters (3,145,728 routed-expert)" in u.convention
    # + attention over the full s x s square: 3 (fwd + bwd) x 4 x s x d_model per layer per token
    #   = 3 x 4 x 128 x 256 x 2 layers = 786,432 (as the MoE MFU test of test_parallel_recompute_moe counts it)
    assert u.model_flops_per_token == pytest.approx(6 * active + 786_432, rel=1e-12)


def test_llama4_top2_doubles_the_routed_rows():
    g = _graph(num_experts_per_tok=2)
    # 128 tokens x top-2 = 256 rows / 4 experts = 64 rows each; per layer
    #   2 x 256 x 256 x 1024 = 134,217,728 + 2 x 256 x 512 x 256 = 67,108,864 -> 201,326,592; 2 layers 402,653,184
    fwd = _expert_gemms(g, Phase.FORWARD)
    assert all(r.dim("m") == 64 for r in fwd)
    assert sum(r.flops for r in fwd) == 402_653_184
    assert all(ly["top_k"] == 2 and ly["rows_per_expert"] == [64] * 4 for ly in g.extra["moe"]["layers"])


def test_llama4_capacity_factor_pads_every_expert():
    g = _graph(num_experts_per_tok=2, capacity_factor=1.25)
    # capacity ceil(1.25 x 128 x 2 / 4) = ceil(80) = 80 rows per expert, 320 rows per layer:
    #   2 x 320 x 256 x 1024 = 167,772,160 + 2 x 320 x 512 x 256 = 83,886,080 -> 251,658,240; 2 layers 503,316,480
    fwd = _expert_gemms(g, Phase.FORWARD)
    assert all(r.dim("m") == 80 for r in fwd)
    assert sum(r.flops for r in fwd) == 503_316_480
    assert all(ly["rows_per_expert"] == [80] * 4 for ly in g.extra["moe"]["layers"])
    assert any("capacity ceil(1.25 x tokens x top-k / experts) = 80 rows (padding)" in a for a in g.assumptions)


def test_llama4_per_expert_loop_without_grouped_mm(monkeypatch):
    # a torch without _grouped_mm runs one GEMM per expert and projection: 2 layers x 4 experts x 2 = 16 GEMMs of
    # 32 rows, the same 201,326,592 forward FLOPs as the grouped GEMMs (top-1)
    monkeypatch.setattr(M, "SHAPE_ONLY", {})
    g = _graph()
    fwd = _expert_gemms(g, Phase.FORWARD)
    assert len(fwd) == 16 and all(r.dim("m") == 32 for r in fwd)
    assert sum(r.flops for r in fwd) == 201_326_592
    assert all(ly["implementation"] == "loop" for ly in g.extra["moe"]["layers"])


@pytest.mark.parametrize("k", [1, 2])
def test_llama4_routed_forward_equals_transformers_forward(k):
    """Oracle: on real CPU tensors (dropless, so the dispatch is the exact routing) the routed forward returns what
    transformers' Llama4TextMoe returns, router logits included; the weight goes on the experts' input."""
    if not M.SHAPE_ONLY:
        pytest.skip("torch without _grouped_mm")
    from transformers import AutoConfig
    from transformers.models.llama4.modeling_llama4 import Llama4TextMoe

    torch.manual_seed(0)
    moe = Llama4TextMoe(AutoConfig.for_model(**_cfg(num_experts_per_tok=k)))
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 16, H)
    with torch.no_grad():
        ref, ref_logits = moe(x)
        routing = M.MoeRouting(moe).install()
        try:
            out, logits = moe(x)
        finally:
            routing.restore()
    assert routing.layers[0].rows == (2 * 16 * k // E,) * E  # the balanced rows recorded: 32 x k / 4 each
    assert out.shape == ref.shape == (32, H)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(logits, ref_logits)
    assert "forward" not in moe.__dict__ and "forward" not in moe.experts.__dict__  # both forwards put back


def test_llama4_recognised_by_structure_not_class_name():
    # a block built like Llama 4's under other class names is costed; one without the shared expert is refused
    from transformers import AutoConfig
    from transformers.models.llama4.modeling_llama4 import Llama4TextMoe

    from wattlint.frontends import torch as wt
    from wattlint.types import InputError

    cfg = AutoConfig.for_model(**_cfg())
    Block = type("Block", (torch.nn.Module,), {"forward": Llama4TextMoe.forward})
    Experts = type("Ffn", (torch.nn.Module,), {})
    with torch.device("meta"):
        ref = Llama4TextMoe(cfg)
        b = Block()
        b.experts = Experts()
        b.experts.gate_up_proj, b.experts.down_proj = ref.experts.gate_up_proj, ref.experts.down_proj
        b.experts.act_fn, b.experts.num_experts = ref.experts.act_fn, E
        b.router, b.shared_expert = ref.router, ref.shared_expert
        b.top_k, b.num_experts, b.hidden_dim = 1, E, H
    g = wt.trace(b, (torch.empty(64, H),))
    # 64 tokens x top-1 / 4 = 16 rows: 2 x 64 x (256 x 1024 + 512 x 256) = 50,331,648 forward expert FLOPs
    fwd = _expert_gemms(g, Phase.FORWARD)
    assert sum(r.flops for r in fwd) == 50_331_648 and all(r.dim("m") == 16 for r in fwd)
    # a plain Linear router (logits only, not Llama 4's (scores, logits)): refused with one line, not miscounted
    with torch.device("meta"):
        b.router = torch.nn.Linear(H, E, bias=False)
    with pytest.raises(InputError, match=r"unsupported mixture-of-experts layout: Block at '<root>' is built like "
                                         r"Llama 4's MoE block, but its router returned Tensor"):
        wt.trace(b, (torch.empty(64, H),))
    assert "forward" not in b.__dict__ and "forward" not in b.experts.__dict__
    del b.shared_expert
    with pytest.raises(InputError, match="unsupported mixture-of-experts layout: Ffn"):
        wt.trace(b, (torch.empty(64, H),))


def test_llama4_cli_exits_0(run_cli, tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(L4))
    code, out, err = run_cli(p, "--gpu", "a100", "--seq-len", SEQ, "--steps", 10)
    assert code == 0, err
    assert "Llama4TextExperts" in out and "unsupported mixture-of-experts" not in err
