"""MFU's weight-reuse measure (parallel.model_flops_basis) and its shared-across-depth check
(aggregate._runs_across_depth) saw nn.Linear only: transformers' Conv1D (GPT-2, OpenAI GPT, ImageGPT, Decision
Transformer: a Linear with its weight stored [in, out], addmm(bias, x, W)) was invisible, so a GPT-2 base model
measured no weights at all (reuse 0) and GPT-2 weights running on more rows than the counted tokens never counted.
Conv1D now counts as a Linear (parallel.LINEAR_TYPES). Expected values by hand in the comments."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

import wattlint  # noqa: E402
from wattlint import parallel as P  # noqa: E402
from wattlint.aggregate import MFU_CONVENTION, MFU_CONVENTION_TRACED  # noqa: E402

GPT2_BASE = dict(model_type="gpt2", architectures=["GPT2Model"], n_embd=64, n_layer=2, n_head=4, vocab_size=100,
                 n_positions=64)
GPT2_LM = dict(GPT2_BASE, architectures=["GPT2LMHeadModel"])
VISION_GPT2 = dict(model_type="vision-encoder-decoder", architectures=["VisionEncoderDecoderModel"],
                   is_encoder_decoder=True, decoder_start_token_id=0, pad_token_id=0,
                   encoder=dict(model_type="vit", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=256, image_size=64, patch_size=8, num_channels=3),
                   decoder=dict(GPT2_BASE, architectures=None, add_cross_attention=True, is_decoder=True))


def _write(tmp_path, name, cfg):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def test_gpt2_base_model_measures_its_conv1d_weights(tmp_path):
    """GPT2Model (no LM head) has no nn.Linear: reuse was 0 (no weights measured). Batch 1 x 16 tokens: every
    Conv1D (c_attn 64 x 192, attn c_proj 64 x 64, c_fc 64 x 256, mlp c_proj 256 x 64, 2 layers) multiplies the 16
    token rows once: weights x rows / (weights x 16) = 1; the one with the most rows (ties broken by size, then
    trace order) is layer 0's c_fc, 16 rows in 1 call."""
    g = wattlint.analyze(str(_write(tmp_path, "gpt2", GPT2_BASE)), batch_size=1, seq_len=16)
    basis = P.model_flops_basis(g)
    assert basis["tokens"] == 16
    assert basis["reuse"] == pytest.approx(1.0, rel=1e-12)
    assert (basis["module"], basis["rows"], basis["calls"]) == ("h.0.mlp.c_fc", 16.0, 1)
    assert dict(g.modules)["h.0.mlp.c_fc"] == "Conv1D"


def test_gpt2_lm_keeps_6n(tmp_path):
    """GPT-2 with its head: Conv1D and LM head all on the counted tokens, reuse 1, MFU stays 6N + attention."""
    path = _write(tmp_path, "gpt2lm", GPT2_LM)
    g = wattlint.analyze(str(path), batch_size=2, seq_len=16)
    basis = P.model_flops_basis(g)
    # 2 layers x (12,288 + 4,096 + 16,384 + 16,384) = 98,304 Conv1D weights + head 6,400, all over 32 rows
    assert basis["reuse"] == pytest.approx(1.0, rel=1e-12) and basis["fewer_share"] == 0.0
    e = wattlint.estimate(str(path), gpu="a100-sxm4-80gb", batch_size=2, seq_len=16, steps=1, lint=False)
    assert e.utilization.convention.startswith(MFU_CONVENTION)


# VisionEncoderDecoder, ViT encoder + GPT-2 decoder, batch 1, 16 text tokens counted; 64 x 64 image, patch 8:
# 64 patches + CLS = 65 encoder rows.
#   ViT Linear: per layer q, k, v, out 4 x 64^2 = 16,384 + fc1, fc2 2 x 64 x 256 = 32,768 -> 49,152; 2 layers
#   98,304 over 65 rows; pooler dense 64 x 64 = 4,096 over 1 row (the CLS token).
#   GPT-2 Conv1D per layer over the 16 text rows: c_attn 64 x 192 = 12,288, attn c_proj 4,096, cross q_attn
#   4,096, cross c_proj 4,096, c_fc + mlp c_proj 32,768 -> 57,344; over the 65 encoder rows: cross c_attn
#   (keys and values) 64 x 128 = 8,192. 2 layers: 114,688 over 16, 16,384 over 65. LM head 64 x 100 = 6,400
#   over 16.
# Weights 98,304 + 4,096 + 114,688 + 16,384 + 6,400 = 239,872; weights x rows 98,304 x 65 + 4,096 x 1 +
# 114,688 x 16 + 16,384 x 65 + 6,400 x 16 = 6,389,760 + 4,096 + 1,835,008 + 1,064,960 + 102,400 = 9,396,224;
# reuse 9,396,224 / (239,872 x 16 = 3,837,952) = 2.4482. (Linear only, before: 6,496,256 / (108,800 x 16) = 3.73)
VISION_GPT2_REUSE = 9_396_224 / 3_837_952


def test_vision_encoder_decoder_counts_the_gpt2_decoder_weights(tmp_path):
    path = _write(tmp_path, "ved", VISION_GPT2)
    g = wattlint.analyze(str(path), batch_size=1, seq_len=16)
    basis = P.model_flops_basis(g)
    assert basis["tokens"] == 16
    assert basis["reuse"] == pytest.approx(VISION_GPT2_REUSE, rel=1e-12)
    assert basis["reuse_dense"] == pytest.approx(VISION_GPT2_REUSE, rel=1e-12)
    # fewer rows than the 16 tokens: the pooler alone, 4,096 of the 239,872 weights, missing 15 rows:
    # 4,096 x 15 / 16 = 3,840 per counted token
    assert basis["fewer_share"] == pytest.approx(4_096 / 239_872, rel=1e-12)
    assert basis["fewer_missed"] == pytest.approx(3_840.0, rel=1e-12)
    e = wattlint.estimate(str(path), gpu="a100-sxm4-80gb", batch_size=1, seq_len=16, steps=1, lint=False)
    conv = e.utilization.convention
    assert conv.startswith(MFU_CONVENTION_TRACED) and "run on 2.45x the counted tokens" in conv, conv


# A GPT-2-style model whose Conv1D encoder runs over a longer input (64 frames) than the 16 counted text tokens.
ENCODER = '''
import torch
import torch.nn as nn
from transformers.pytorch_utils import Conv1D


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 64)
        self.encoder = Conv1D(64, 32)  # nf 64, nx 32: weight [32, 64], over the 64 frames
        self.text = Conv1D(64, 64)  # over the 16 tokens
        self.head = nn.Linear(64, 100, bias=False)

    def forward(self, input_ids, frames):
        mem = self.encoder(frames).mean(1, keepdim=True)
        return self.head(self.text(self.emb(input_ids) + mem))


def build():
    return Model(), (torch.zeros(1, 16, dtype=torch.long), torch.zeros(1, 64, 32))
'''

# One block of two Conv1D layers run 3 times (weights shared across depth, as ALBERT's nn.Linear layer).
SHARED = '''
import torch
import torch.nn as nn
from transformers.pytorch_utils import Conv1D


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc = Conv1D(128, 32)
        self.c_proj = Conv1D(32, 128)

    def forward(self, x):
        return x + self.c_proj(torch.relu(self.c_fc(x)))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 32)
        self.layers = nn.ModuleList([Block()])
        self.head = nn.Linear(32, 100, bias=False)

    def forward(self, input_ids):
        x = self.emb(input_ids)
        for _ in range(3):
            x = self.layers[0](x)
        return self.head(x)


def build():
    return Model(), (torch.zeros(1, 16, dtype=torch.long),)
'''


def _estimate(run_cli, path):
    code, out, err = run_cli(str(path) + ":build", "--gpu", "a100", "--steps", "10", "--format", "json")
    assert code == 0, err
    return json.loads(out)["utilization"]


def test_a_conv1d_encoder_over_a_longer_input_takes_the_traced_flops(run_cli, tmp_path):
    """Only the head was measured (reuse 1, 6N kept). By hand, batch 1 x 16 counted tokens: encoder 32 x 64 =
    2,048 weights over 64 rows, text 64 x 64 = 4,096 and head 64 x 100 = 6,400 over 16: weights x rows 131,072 +
    65,536 + 102,400 = 299,008 over (12,544 x 16 = 200,704) = 1.4898 > 1.05: the traced FLOPs are the model FLOPs."""
    (tmp_path / "m.py").write_text(ENCODER)
    g = wattlint.analyze(str(tmp_path / "m.py") + ":build")
    basis = P.model_flops_basis(g)
    assert basis["tokens"] == 16
    assert basis["reuse"] == pytest.approx(299_008 / 200_704, rel=1e-12)
    assert (basis["module"], basis["rows"]) == ("encoder", 64.0)
    u = _estimate(run_cli, tmp_path / "m.py")
    assert u["convention"].startswith(MFU_CONVENTION_TRACED), u["convention"]
    assert "encoder runs over 64 rows per micro-batch against the 16 counted tokens" in u["convention"]
    assert u["mfu"] <= u["hfu"]


def test_conv1d_layers_shared_across_depth(run_cli, tmp_path):
    """By hand, 16 tokens: c_fc 32 x 128 = 4,096 and c_proj 128 x 32 = 4,096 run 3 times (48 rows each), head
    32 x 100 = 3,200 once: (8,192 x 48 + 3,200 x 16) / (11,392 x 16) = 444,416 / 182,272 = 2.4382. The block's
    other Conv1D (c_proj) runs between each two runs of c_fc: weights shared across depth (before, the depth check
    saw no Linear in the block and could not tell)."""
    (tmp_path / "m.py").write_text(SHARED)
    g = wattlint.analyze(str(tmp_path / "m.py") + ":build")
    basis = P.model_flops_basis(g)
    assert basis["reuse"] == pytest.approx(444_416 / 182_272, rel=1e-12)
    assert (basis["module"], basis["rows"], basis["calls"]) == ("layers.0.c_fc", 48.0, 3)
    u = _estimate(run_cli, tmp_path / "m.py")
    assert ("layers.0.c_fc runs 3 times per forward, 48 rows for the 16 counted tokens of a micro-batch: one "
            "layer's weights shared across depth, counted once in N") in u["convention"], u["convention"]


DECISION_TRANSFORMER = dict(model_type="decision_transformer", architectures=["DecisionTransformerModel"],
                            hidden_size=64, n_layer=2, n_head=4, state_dim=11, act_dim=3, max_ep_len=100,
                            n_positions=256)
DT_INPUTS = ["states=float32[1,16,11]", "actions=float32[1,16,3]", "returns_to_go=float32[1,16,1]",
             "timesteps=int64[1,16]"]


def test_decision_transformer_gpt2_over_three_tokens_per_timestep(tmp_path):
    """Decision Transformer stacks (return, state, action) per timestep: its GPT-2 (Conv1D only) runs on 3 x 16 =
    48 rows against the 16 counted timesteps. Only its small nn.Linear embeddings and heads were measured (reuse 1,
    MFU on 6N + attention, 0.4 x HFU). By hand: GPT-2 2 x (12,288 + 4,096 + 16,384 + 16,384) = 98,304 weights over
    48 rows; embed_return 1 x 64, embed_state 11 x 64, embed_action 3 x 64, predict_state 64 x 11, predict_action
    64 x 3, predict_return 64 x 1 = 1,920 over 16. (98,304 x 48 + 1,920 x 16) / (100,224 x 16) = 4,749,312 /
    1,603,584 = 2.9617 > 1.05: the traced FLOPs are the model FLOPs."""
    path = _write(tmp_path, "dt", DECISION_TRANSFORMER)
    g = wattlint.analyze(str(path), inputs=DT_INPUTS)
    basis = P.model_flops_basis(g)
    assert basis["tokens"] == 16
    assert basis["reuse"] == pytest.approx(4_749_312 / 1_603_584, rel=1e-12)
    assert (basis["module"], basis["rows"]) == ("encoder.h.0.mlp.c_fc", 48.0)
    e = wattlint.estimate(str(path), gpu="a100-sxm4-80gb", steps=1, lint=False, inputs=DT_INPUTS)
    u = e.utilization
    assert u.convention.startswith(MFU_CONVENTION_TRACED) and u.mfu <= u.hfu
    # the trace shows more rows, not why: the line names both causes (it said only 'an encoder over a longer input')
    assert "or several rows per counted position" in u.convention


@pytest.mark.parametrize("option", ["--tensor-parallel", "--pipeline-parallel"])
def test_model_parallelism_refuses_conv1d_layers_shared_across_depth(run_cli, tmp_path, option):
    """The one block of two Conv1D layers runs 3 times per forward (SHARED): model parallelism is refused as for
    ALBERT, naming the 3 runs (before, the refusal counted nn.Linear runs only: tensor parallelism was refused as an
    'attention-free stack', the wrong reason)."""
    (tmp_path / "m.py").write_text(SHARED)
    code, out, err = run_cli(str(tmp_path / "m.py") + ":build", "--gpu", "a100", "--steps", "10", "--gpus", "2",
                             option, "2")
    assert code == 2 and out == ""
    assert f"{option} 2: the one block of layers runs 3 times per forward (its weights shared across depth" in err
