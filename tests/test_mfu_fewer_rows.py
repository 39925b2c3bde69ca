"""MFU's 6 N charges every weight once per counted (text) token: a model whose large weights run on fewer rows than
the counted tokens (a vision tower over its image patches beside a text model) was overcounted. Review s52's sweep
found florence2 and grounding-dino at MFU 1.5-1.7 x HFU, impossible without recompute (HFU counts every FLOP the
step ran). Such models take the traced forward + backward FLOPs as their model FLOPs, as models whose weights run on
more rows than the counted tokens already did; a head over a few tokens, a decoder LM and routed experts keep 6N."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _parallel_fixtures import LLAMA4_VLM_TINY

pytest.importorskip("torch")

from wattlint.aggregate import MFU_CONVENTION, MFU_CONVENTION_MOE, MFU_CONVENTION_TRACED  # noqa: E402
from wattlint import parallel as P  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

TWO_TOWER = '''
import torch
import torch.nn as nn


class TwoTower(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 64)
        self.vision = nn.Linear(256, 256, bias=False)  # the image tower: over 4 patch rows
        self.proj = nn.Linear(256, 64, bias=False)
        self.text = nn.Linear(64, 64, bias=False)  # the text model: over the 64 counted tokens
        self.head = nn.Linear(64, 100, bias=False)

    def forward(self, input_ids, patches):
        img = self.proj(self.vision(patches)).mean(1, keepdim=True)
        return self.head(self.text(self.emb(input_ids) + img))


def build():
    return TwoTower(), (torch.zeros(1, 64, dtype=torch.long), torch.zeros(1, 4, 256))
'''

DECODER = '''
import torch
import torch.nn as nn


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 64)  # untied: 6 N counts it although its lookup does no FLOPs
        self.up = nn.Linear(64, 256, bias=False)
        self.down = nn.Linear(256, 64, bias=False)
        self.lm_head = nn.Linear(64, 100, bias=False)

    def forward(self, input_ids):
        x = self.emb(input_ids)
        return self.lm_head(x + self.down(torch.relu(self.up(x))))


def build():
    return Decoder(), (torch.zeros(1, 64, dtype=torch.long),)
'''

CLASSIFIER = '''
import torch
import torch.nn as nn


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 64)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(64, 256, bias=False), nn.ReLU(),
                                                   nn.Linear(256, 64, bias=False)) for _ in range(3)])
        self.pooler = nn.Linear(64, 64, bias=False)
        self.classifier = nn.Linear(64, 2, bias=False)

    def forward(self, input_ids):
        x = self.emb(input_ids)
        for b in self.blocks:
            x = x + b(x)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))  # over the CLS token only


def build():
    return Classifier(), (torch.zeros(1, 64, dtype=torch.long),)
'''


def _util(run_cli, path, *extra):
    code, out, err = run_cli(str(path), "--gpu", "a100", "--steps", "10", "--format", "json", *extra)
    assert code == 0, err
    doc = json.loads(out)
    return doc, doc["utilization"]


def test_a_vision_tower_over_few_patches_is_not_charged_per_text_token(run_cli, tmp_path):
    (tmp_path / "m.py").write_text(TWO_TOWER)
    doc, u = _util(run_cli, str(tmp_path / "m.py") + ":build")
    # by hand, micro-batch 1 x 64 counted tokens; GEMMs 2 x rows x in x out forward, the same again for the input
    # gradient and for the weight gradient backward (vision: weight gradient only, its input is the data):
    #   vision 2 x 4 x 256 x 256 = 524,288 x 2 = 1,048,576; proj 2 x 4 x 256 x 64 = 131,072 x 3 = 393,216;
    #   text 2 x 64 x 64 x 64 = 524,288 x 3 = 1,572,864; head 2 x 64 x 64 x 100 = 819,200 x 3 = 2,457,600
    gemm = 1_048_576 + 393_216 + 1_572_864 + 2_457_600  # 5,472,256
    # the rest: mean over the 4 patches 4 x 64 and its backward 4 x 64; the broadcast add 64 x 64 and its
    # gradient summed over the tokens 64 x 64; the embedding's gradient scatter 64 x 64; cross-entropy over the
    # 64 x 100 logits: softmax 5 FLOPs a logit forward, 4 backward, the NLL pick 64 each way
    rest = 256 + 256 + 4_096 + 4_096 + 4_096 + 5 * 6_400 + 4 * 6_400 + 64 + 64  # 70,528
    assert u["model_flops_per_token"] == pytest.approx((gemm + rest) / 64, rel=1e-9)  # 86,606
    # were 6 N = 6 x (6,400 + 65,536 + 16,384 + 4,096 + 6,400) = 592,896 per token: MFU ~5 x HFU
    assert u["mfu"] <= u["hfu"]
    # MFU / HFU = model FLOPs / all FLOPs of the step (the optimizer's too; no recompute)
    assert u["mfu"] / u["hfu"] == pytest.approx((gemm + rest) / doc["per_step"]["flops"], rel=1e-6)
    assert u["convention"].startswith(MFU_CONVENTION_TRACED)
    assert "most missed by vision (4 rows)" in u["convention"]
    assert "against the 64 counted tokens" in u["convention"]
    # 6N charged vision and proj for 60 of the 64 token rows: 6 x (65,536 + 16,384) x 60 / 64 = 460,800 of the
    # 592,896 (more than 1 - 1 / 1.05 of it)
    assert "6N charges 460,800 FLOPs per token for rows they did not multiply" in u["convention"]
    assert "6N + attention would count 592,896 FLOPs per token, 86,606 traced" in u["convention"]


def test_a_decoder_lm_with_its_head_keeps_6n(run_cli, tmp_path):
    (tmp_path / "m.py").write_text(DECODER)
    _, u = _util(run_cli, str(tmp_path / "m.py") + ":build")
    # by hand: N = 6,400 + 16,384 + 16,384 + 6,400 = 45,568, no attention; every Linear runs on the 64 tokens
    # (reuse 1); 6 N exceeds the traced FLOPs (the untied table's lookup does none) but that is the convention
    assert u["model_flops_per_token"] == pytest.approx(6 * 45_568, rel=1e-12)
    assert u["convention"] == MFU_CONVENTION


def test_a_classifier_over_the_cls_token_keeps_6n(run_cli, tmp_path):
    (tmp_path / "m.py").write_text(CLASSIFIER)
    _, u = _util(run_cli, str(tmp_path / "m.py") + ":build")
    # by hand: N = 6,400 + 3 x (16,384 + 16,384) + 4,096 + 128 = 108,928; the pooler and classifier (4,224 of the
    # 102,528 Linear weights) run on 1 row of 64: 6 x 4,224 x 63 / 64 = 24,948 FLOPs per token of 6 N = 653,568
    # for rows they did not multiply, 3.8 % < 1 - 1 / 1.05 = 4.76 %: a head over a few tokens, 6 N kept (though
    # 6 N is above the traced FLOPs)
    assert u["model_flops_per_token"] == pytest.approx(6 * 108_928, rel=1e-12)
    assert u["convention"] == MFU_CONVENTION


def test_a_recurrent_classifier_whose_only_linear_is_its_head_keeps_6n(run_cli):
    # examples/torch_models.py:lstm_classifier: micro-batch 8 x 32 tokens; its one Linear (fc, 512 -> 4) runs on
    # the last state only (8 of 256 rows), the 2-layer LSTM on every token. By hand: N = embedding 10,000 x 256 =
    # 2,560,000 + LSTM 4 x 512 x (256 + 512) + 2 x 4 x 512 = 1,576,960 and 4 x 512 x (512 + 512) + 2 x 4 x 512 =
    # 2,101,248 + fc 512 x 4 + 4 = 2,052: 6,240,260. 6 N is above the traced FLOPs (the embedding table is only
    # looked up), but the head's missed rows are 6 x 2,048 x 248 / 256 = 11,904 of 37,441,560 FLOPs per token
    _, u = _util(run_cli, f"{EXAMPLES / 'torch_models.py'}:lstm_classifier")
    assert u["model_flops_per_token"] == pytest.approx(6 * 6_240_260, rel=2e-6)  # JSON: 6 significant digits
    assert u["convention"] == MFU_CONVENTION


def test_routed_experts_on_few_rows_keep_n_active(run_cli, tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.SwitchTransformersConfig(
        vocab_size=1000, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
        num_experts=8, expert_capacity=4, encoder_sparse_step=1, decoder_sparse_step=1,
        architectures=["SwitchTransformersForConditionalGeneration"])
    cfg.save_pretrained(tmp_path)
    _, u = _util(run_cli, tmp_path / "config.json", "--seq-len", "128")
    # by hand: 4 MoE layers x 8 experts x (64 x 128 + 128 x 64) = 524,288 routed-expert parameters, 7/8 of them
    # inactive per token (top-1): N_active = 689,664 - 458,752 = 230,912. The experts' Linear weights run on at
    # most 8 x 4 of the 128 tokens (the traced FLOPs fall below 6 N_active) but N_active already counts them
    assert u["convention"].startswith(MFU_CONVENTION_MOE)
    assert "N_active = 230,912 of 689,664 parameters (524,288 routed-expert)" in u["convention"]


def test_the_convention_line_says_1_row_not_1_rows():
    """CLIP's visual projection runs on its one pooled row per image: the line read '(1 rows)' (review s53)."""
    from wattlint.aggregate import _fewer_rows_why

    basis = {"tokens": 64, "fewer_module": "visual_projection", "fewer_module_rows": 1.0, "fewer_module_calls": 1,
             "fewer_share": 0.4, "fewer_rows": 1.0, "reuse_dense": 0.6, "fewer_missed": 100.0,
             "flops_per_token": 1000.0}
    why = _fewer_rows_why(basis, 2000.0)
    assert "(1 row)" in why and "run on 1 row per micro-batch" in why and "1 rows" not in why
    assert "(49 rows)" in _fewer_rows_why({**basis, "fewer_module_rows": 49.0}, 2000.0)


# a Llama 4 vision-language model (text: hidden 256, 4 layers, every layer MoE with 8 experts of width 512, top-1;
# vision tower 2 layers of 128 over 112 x 112 images in 14 x 14 patches): its vision weights run on fewer rows than
# the text tokens, so MFU takes the traced basis
L4MM = LLAMA4_VLM_TINY


def test_traced_model_flops_count_routed_experts_at_the_dropless_rows():
    """A capacity factor pads (or drops) every expert's rows; MFU's model FLOPs count each token's experts once
    (review s53: on the traced basis MFU rose 5.38 -> 5.86 -> 6.94 % with capacity factor 1 -> 1.25 -> 2). By hand, at
    128 tokens top-1 over 8 experts: dropless 128 rows, 16 per expert; capacity 1.25 gives ceil(1.25 x 128 / 8) = 20
    per expert, 160 rows: the traced expert FLOPs are 160 / 128 = 1.25 x, taken back by 128 / 160 = 0.8. Only the
    dispatch outside the experts (sort and gather of 160 vs 128 rows) still differs: well under 0.1 %."""
    from wattlint.frontends.hf import analyze_config

    base = P.model_flops_basis(analyze_config(L4MM, seq_len=128, micro_batch=1))
    g = analyze_config(L4MM, seq_len=128, micro_batch=1, capacity_factor=1.25)
    assert [sum(ly["rows_per_expert"]) for ly in P.moe_layers(g)] == [160] * 4
    assert P._dropless_scale(g) == [(ly["module"], 0.8) for ly in P.moe_layers(g)]
    padded = P.model_flops_basis(g)
    assert padded["flops_per_token"] == pytest.approx(base["flops_per_token"], rel=1e-3)


SWITCH = {"model_type": "switch_transformers", "architectures": ["SwitchTransformersForConditionalGeneration"],
          "d_model": 128, "d_ff": 256, "d_kv": 32, "num_heads": 4, "num_layers": 2, "num_decoder_layers": 2,
          "num_sparse_encoder_layers": 1, "num_sparse_decoder_layers": 1, "num_experts": 8, "expert_capacity": 64,
          "vocab_size": 1000}


def test_dropless_scaling_covers_the_experts_not_the_router():
    """Switch Transformers' MoE layer is the sparse MLP holding its router and its experts: only the experts' work is
    taken to the dropless rows (review s53: its router's 1.70e6 FLOPs were counted x 2 at capacity 0.5, x 0.8 at
    1.25). By hand, the router classifier d_model 128 -> 8 experts over 2 x 128 tokens runs 2 x 256 x 128 x 8 =
    524,288 FLOPs forward whatever the capacity."""
    from wattlint.frontends.hf import analyze_config
    from wattlint.types import Phase

    for cf in (0.5, 1.25):
        g = analyze_config(SWITCH, seq_len=128, micro_batch=2, capacity_factor=cf)
        scaled = dict(P._dropless_scale(g))
        assert scaled and all(path.endswith(".experts") for path in scaled), scaled
        router = [r for r in g.records if r.phase is Phase.FORWARD and r.module.endswith("router.classifier")
                  and r.kind.value == "matmul"]
        assert router and all(r.flops == 524_288 for r in router[:1])
        assert not any(r.module == p or r.module.startswith(p + ".") for p in scaled for r in router)
