"""MFU's model-FLOPs basis, review s54 (expected values by hand in the comments):

(a) Longformer / LED's encoder attend over a sliding window (attention_window / 2 keys each side and the query
    itself, plus a column per global token), computed in overlapping chunks whose batched GEMMs match no score tensor
    one to one: MFU's attention term for it was 0; it now counts the window the model defines, not the s x s square.
(b) nn.MultiheadAttention runs its in- and out-projections as F.linear inside the attention module (type
    MultiheadAttention, not a Linear): the weight-reuse measure saw none of them, so a text decoder's cross-attention
    keys and values over a few memory rows went unseen and 6N charged them once per text token (MFU above HFU).
(c) The dense weights of the reuse measure left out each MoE layer's whole module; Switch Transformers' layer holds
    its router too (a Linear over every token). The experts' path is now the one the dropless scaling uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import wattlint  # noqa: E402
from wattlint import parallel as P  # noqa: E402
from wattlint.aggregate import MFU_CONVENTION, MFU_CONVENTION_MOE, MFU_CONVENTION_TRACED  # noqa: E402
from wattlint.types import TensorSpec  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

LONGFORMER = dict(model_type="longformer", architectures=["LongformerForMaskedLM"], hidden_size=64,
                  num_hidden_layers=2, num_attention_heads=4, intermediate_size=256, vocab_size=1000,
                  attention_window=64, max_position_embeddings=4098, pad_token_id=1)
LED = dict(model_type="led", architectures=["LEDForConditionalGeneration"], d_model=64, encoder_layers=2,
           decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=256,
           decoder_ffn_dim=256, vocab_size=1000, attention_window=64, max_encoder_position_embeddings=1024,
           max_decoder_position_embeddings=1024, pad_token_id=1)


def _write(tmp_path, name, cfg):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def _util(run_cli, path, *extra):
    code, out, err = run_cli(str(path), "--gpu", "a100", "--steps", "10", "--format", "json", *extra)
    assert code == 0, err
    doc = json.loads(out)
    return doc, doc["utilization"]


# ---- (a) local windowed attention -------------------------------------------------------------------------------

def test_longformer_attention_term_counts_its_window(tmp_path):
    """By hand: window 64 -> 32 keys each side + the query = 65 keys per query; head dim 64 / 4 = 16. Forward,
    per token and layer: 4 heads x 65 keys x 2 FLOPs x (16 for Q K^T + 16 for P V) = 16,640; 2 layers: 33,280.
    The full square at 512 tokens would be 2 x 4 x 512 x 2 x 32 = 262,144; the trace gave 0 before (no GEMM of
    the chunked kernel matches the [1, 512, 4, 65] scores)."""
    g = wattlint.analyze(str(_write(tmp_path, "lf", LONGFORMER)), batch_size=1, seq_len=512)
    assert P.attention_forward_flops_per_token(g) == pytest.approx(33_280, rel=1e-12)
    assert P.local_window_keys(g) == 65


def test_longformer_global_token_and_padding(tmp_path):
    """LongformerForSequenceClassification: one global (CLS) token per sequence; 200 tokens padded to 256 (a
    multiple of the window), batch 2. By hand, per layer, forward:
      window rows: the 2 x 200 real queries (not the 56 padded ones) x 4 heads x (65 window keys + 1 global column)
        x 2 x 32 = 6,758,400;
      the global token's own row over the 256 (padded) keys it runs: Q K^T 2 x 8 x 1 x 256 x 16 = 65,536, P V the
        same: 131,072 (already counted as eager attention before);
    2 layers: 2 x 6,889,472 = 13,778,944 over 400 counted tokens = 34,447.36 per token."""
    cfg = dict(LONGFORMER, architectures=["LongformerForSequenceClassification"])
    g = wattlint.analyze(str(_write(tmp_path, "lfc", cfg)), batch_size=2, seq_len=200)
    assert P.attention_forward_flops_per_token(g) == pytest.approx(34_447.36, rel=1e-12)
    assert P.local_window_keys(g) == 66


def test_led_counts_its_encoder_window_and_its_decoder_square(tmp_path):
    """LED, batch 1 x 256 tokens (encoder and decoder), head dim 16, 4 heads. Per counted token, forward:
    encoder window 2 layers x 4 x 65 x 2 x 32 = 33,280; decoder self- and cross-attention over the full 256 keys
    (eager, matched as before) 2 layers x 2 x 4 x 256 x 2 x 32 = 262,144. Total 295,424 (before: 262,144)."""
    g = wattlint.analyze(str(_write(tmp_path, "led", LED)), batch_size=1, seq_len=256)
    assert P.attention_forward_flops_per_token(g) == pytest.approx(295_424, rel=1e-12)


def test_longformer_mfu_adds_the_window_term_and_says_so(run_cli, tmp_path):
    """MFU's model FLOPs = 6 N + 3 x the forward attention term (forward + backward = 3 x forward): the window's
    3 x 33,280 = 99,840 per token on top of 6 N (N: the parameters less the idle global-attention projections the
    step does not run)."""
    path = _write(tmp_path, "lf", LONGFORMER)
    doc, u = _util(run_cli, path, "--seq-len", "512", "--batch-size", "1")
    g = wattlint.analyze(str(path), batch_size=1, seq_len=512)
    n = g.params - int(g.extra.get("idle_params") or 0)
    assert u["model_flops_per_token"] == pytest.approx(6 * n + 99_840, rel=2e-6)  # JSON: 6 significant digits
    assert "counts the keys its window defines, 65 per query" in u["convention"]


# ---- (b) nn.MultiheadAttention's projections --------------------------------------------------------------------

TORCH_MODELS = '''
import torch
import torch.nn as nn


class Captioner(nn.Module):
    """A text decoder cross-attending to a few image-feature rows (memory): nn.TransformerDecoder, batch_first."""
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(1000, 64)
        layer = nn.TransformerDecoderLayer(64, 4, dim_feedforward=128, dropout=0.0, batch_first=True)
        self.dec = nn.TransformerDecoder(layer, num_layers=2)
        self.head = nn.Linear(64, 1000, bias=False)

    def forward(self, input_ids, memory):
        return self.head(self.dec(self.emb(input_ids), memory))


def captioner():
    return Captioner(), (torch.zeros(2, 64, dtype=torch.long), torch.zeros(2, 4, 64))


class Encoder(nn.Module):
    """A plain nn.TransformerEncoder classifier over the first token."""
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(1000, 64)
        layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=128, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.cls = nn.Linear(64, 2, bias=False)

    def forward(self, input_ids):
        return self.cls(self.enc(self.emb(input_ids))[:, 0])


def encoder():
    return Encoder(), (torch.zeros(2, 64, dtype=torch.long),)
'''


def test_multihead_attention_projections_are_measured(tmp_path):
    """Encoder classifier, batch 2 x 64 = 128 counted tokens. By hand, Linear weights per layer: in-projection
    64 x 192 = 12,288 and out-projection 64 x 64 = 4,096 (both run inside nn.MultiheadAttention), linear1 and
    linear2 2 x 64 x 128 = 16,384: 32,768; 2 layers 65,536; the classifier 64 x 2 = 128 over the 2 first-token rows.
    fewer_share = 128 / 65,664 (it was 128 / 32,896: the attention's weights were not seen); fewer_missed =
    128 x 126 / 128 = 126."""
    (tmp_path / "m.py").write_text(TORCH_MODELS)
    g = wattlint.analyze(str(tmp_path / "m.py") + ":encoder")
    basis = P.model_flops_basis(g)
    assert basis["tokens"] == 128
    assert basis["fewer_share"] == pytest.approx(128 / 65_664, rel=1e-12)
    assert basis["fewer_missed"] == pytest.approx(126, rel=1e-12)
    assert basis["reuse"] == pytest.approx((65_536 * 128 + 128 * 2) / (65_664 * 128), rel=1e-12)


def test_cross_attention_over_few_memory_rows_takes_the_traced_basis(run_cli, tmp_path):
    """Captioner, batch 2 x 64 = 128 counted text tokens, memory 2 x 4 = 8 image rows. By hand:
    N: embedding 64,000; per layer self- and cross-attention 2 x (64 x 192 + 192 + 64 x 64 + 64) = 33,280,
    linear1 64 x 128 + 128 = 8,320, linear2 128 x 64 + 64 = 8,256, 3 norms 384: 50,240, 2 layers 100,480; head
    64,000: N = 228,480, 6 N = 1,370,880. Attention (fused), per layer: self 2 x 2 x 4 x 64 x 64 x 32 = 2,097,152,
    cross over 4 keys 131,072; 2 layers 4,456,448 / 128 = 34,816 per token, x 3 = 104,448. 6 N + attention =
    1,475,328. The cross-attention's key / value in-projection (64 x 128 = 8,192 weights a layer) runs on the 8
    memory rows: 2 x 8,192 x 120 / 128 = 15,360 weight-rows per token 6 N charges and the model never multiplies,
    6 x 15,360 = 92,160 FLOPs; x 1.05 = 96,768 > (1.05 - 1) x 1,475,328 = 73,766: the traced basis (before, no
    Linear on fewer rows was seen and MFU stayed 6 N + attention, 1.41 x HFU)."""
    (tmp_path / "m.py").write_text(TORCH_MODELS)
    doc, u = _util(run_cli, str(tmp_path / "m.py") + ":captioner")
    assert u["convention"].startswith(MFU_CONVENTION_TRACED)
    assert "6N charges 92,160 FLOPs per token for rows they did not multiply" in u["convention"]
    assert "6N + attention would count 1,475,328 FLOPs per token" in u["convention"]
    assert "most missed by dec.layers.1.multihead_attn in-projection 2 (8 rows)" in u["convention"]
    assert u["mfu"] <= u["hfu"]


def test_tiny_gpt_example_keeps_its_mfu(run_cli):
    """examples/torch_models.py:tiny_gpt (nn.TransformerEncoderLayer blocks): its attention projections now
    measured run on every token like its other Linear layers (reuse 1): 6 N + attention kept, the same figure as
    before this change (92,098,600 FLOPs per token)."""
    _, u = _util(run_cli, f"{EXAMPLES / 'torch_models.py'}:tiny_gpt")
    assert u["convention"] == MFU_CONVENTION
    assert u["model_flops_per_token"] == pytest.approx(92_098_600, rel=1e-6)


# ---- (c) routed experts: the experts' path, not the layer's -----------------------------------------------------

SWITCH = {"model_type": "switch_transformers", "architectures": ["SwitchTransformersForConditionalGeneration"],
          "d_model": 128, "d_ff": 256, "d_kv": 32, "num_heads": 4, "num_layers": 2, "num_decoder_layers": 2,
          "num_sparse_encoder_layers": 1, "num_sparse_decoder_layers": 1, "num_experts": 8, "expert_capacity": 64,
          "vocab_size": 1000}


def test_switch_router_is_a_dense_weight():
    """Switch, batch 2, encoder 128 tokens (the 256 counted), decoder 16 (32 rows). By hand, Linear weights outside
    the experts: over 256 rows, encoder attention 2 x 4 x 128 x 128 = 131,072, its dense MLP 2 x 128 x 256 = 65,536,
    the encoder router 128 x 8 = 1,024, the decoder's cross-attention keys and values 2 x 2 x 16,384 = 65,536:
    263,168; over 32 rows, decoder self-attention 2 x 65,536, cross q / o 2 x 32,768, dense MLP 65,536, the
    decoder router 1,024 and the LM head 128 x 1,000 = 128,000: 391,168. fewer_missed = 391,168 x 224 / 256 =
    342,272 (341,376 with both routers left out); reuse_dense = (263,168 x 256 + 391,168 x 32) / (654,336 x 256)."""
    from wattlint.frontends.hf import analyze_config

    g = analyze_config(SWITCH, inputs={"input_ids": TensorSpec("input_ids", "int64", (2, 128)),
                                       "decoder_input_ids": TensorSpec("decoder_input_ids", "int64", (2, 16))})
    assert [p for _, p in P.experts_paths(g)] == ["encoder.block.1.layer.1.mlp.experts",
                                                  "decoder.block.1.layer.2.mlp.experts"]
    basis = P.model_flops_basis(g)
    assert basis["tokens"] == 256
    assert basis["fewer_missed"] == pytest.approx(342_272, rel=1e-12)
    assert basis["reuse_dense"] == pytest.approx((263_168 * 256 + 391_168 * 32) / (654_336 * 256), rel=1e-12)


def test_mixtral_keeps_6n_active(run_cli, tmp_path):
    """Mixtral (gate in the dense measure now, over every token: no switch). By hand the attention term: 2 layers
    x 2 x 4 heads x 128 keys x 2 x 16 per token forward = 65,536, x 3 = 196,608 on top of 6 N_active."""
    cfg = dict(model_type="mixtral", architectures=["MixtralForCausalLM"], hidden_size=64, intermediate_size=128,
               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
               num_experts_per_tok=2, vocab_size=1000, max_position_embeddings=512)
    _, u = _util(run_cli, _write(tmp_path, "mixtral", cfg), "--seq-len", "128", "--batch-size", "2")
    assert u["convention"].startswith(MFU_CONVENTION_MOE)
    n_active = int(re.search(r"N_active = ([\d,]+) of", u["convention"]).group(1).replace(",", ""))
    assert u["model_flops_per_token"] == pytest.approx(6 * n_active + 196_608, rel=1e-6)
