"""The PyTorch frontend: traced hand counts, attribution, phases, precision, checkpointing, data-dependent reads."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import wattlint
from _torch_archs import HF_CONFIGS
from wattlint.frontends.hf import analyze_config
from wattlint.types import InputError, OpKind, Phase, Status


def _fwd(g, kind=None, module=None):
    return [r for r in g.records if r.phase is Phase.FORWARD and (kind is None or r.kind is kind)
            and (module is None or r.module == module)]


class OneConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4, bias=False)

    def forward(self, x):
        return self.conv(x)


def test_traced_conv_groups_stride_by_hand():
    g = wattlint.analyze(OneConv(), inputs=["x=float32[2,8,10,10]"])
    (r,) = _fwd(g, OpKind.CONV)
    assert r.op == "aten.convolution.default" and r.module == "conv" and r.module_type == "Conv2d"
    assert (r.flops, r.bytes_read, r.bytes_written) == (28800, 7552, 3200)
    bwd = [x for x in g.records if x.phase is Phase.BACKWARD and x.kind is OpKind.CONV]
    assert [x.flops for x in bwd] == [28800]  # weight gradient only: the input needs no gradient


class OneLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(32, 16)

    def forward(self, x):
        return self.fc(x)


def test_traced_linear_by_hand_forward_and_backward():
    g = wattlint.analyze(OneLinear(), inputs=["x=float32[4,32]"])
    (r,) = _fwd(g, OpKind.MATMUL)
    assert (r.op, r.flops, r.bytes_read, r.bytes_written) == ("aten.addmm.default", 4160, 2624, 256)
    bwd = [x for x in g.records if x.phase is Phase.BACKWARD and x.module == "fc" and x.status is Status.HANDLED]
    assert sorted(x.flops for x in bwd if x.kind is OpKind.MATMUL) == [4096]  # dW only (x needs no grad)
    assert sum(x.flops for x in bwd if x.kind is OpKind.REDUCTION) == 64  # db


class Attn(nn.Module):
    def __init__(self, causal):
        super().__init__()
        self.causal = causal
        self.qkv = nn.Linear(32, 96, bias=False)

    def forward(self, x):
        b, s, _ = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, 4, 8).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)


@pytest.mark.parametrize("causal,expected", [(False, 75776), (True, 40256)])
def test_traced_attention_is_one_fused_op(causal, expected):
    g = wattlint.analyze(Attn(causal), inputs=["x=float32[2,16,32]"])
    att = _fwd(g, OpKind.ATTENTION)
    assert len(att) == 1
    assert att[0].op == "aten._scaled_dot_product_efficient_attention.default"
    assert att[0].flops == expected and att[0].dim("causal") == int(causal)
    assert not [r for r in _fwd(g) if r.op in ("aten.bmm.default", "aten._softmax.default")]
    bwd = [r for r in g.records if r.phase is Phase.BACKWARD and r.kind is OpKind.ATTENTION]
    assert len(bwd) == 1 and bwd[0].module == ""  # F.sdpa called by the root module itself
    g16 = wattlint.analyze(Attn(causal), inputs=["x=float32[2,16,32]"], precision="bf16")
    (a16,) = _fwd(g16, OpKind.ATTENTION)
    assert a16.op == "aten._scaled_dot_product_flash_attention.default" and a16.dtype == "bfloat16"


class OneLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(32, 64, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0]


def test_traced_lstm_gemm_flops_by_hand():
    g = wattlint.analyze(OneLSTM(), inputs=["x=float32[2,7,32]"])
    b, i, h, t = 2, 32, 64, 7
    mms = _fwd(g, OpKind.MATMUL, "lstm")
    # as cuDNN runs it: one input-projection GEMM over all steps [T*B, I] x [I, 4H], then per step h W_hh^T; both
    # biases are added by the fused cell
    assert mms[0].op == "aten.mm.default" and mms[0].flops == 2 * (t * b) * i * 4 * h
    assert [r.flops for r in mms[1:]] == [2 * b * h * 4 * h] * t
    cells = _fwd(g, OpKind.RNN, "lstm")
    bias_adds = 2 * b * 4 * h
    # == the textbook count: T x (2 B (I + H) 4H GEMM FLOPs + 2 B 4H bias adds)
    assert sum(r.flops for r in mms) + t * bias_adds == t * (2 * b * (i + h) * 4 * h + 2 * b * 4 * h) == 695296
    assert [r.flops for r in cells] == [22 * b * h + b * 4 * h + bias_adds] * t
    assert all(r.module == "lstm" for r in g.records if r.phase is Phase.BACKWARD and r.kind is OpKind.MATMUL)


class OneRNN(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.rnn = getattr(nn, kind)(8, 16, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0]


def test_lstm_and_gru_cells_are_one_fused_record_per_step_by_hand():
    """Per time step ONE fused pointwise record forward and ONE backward (not ~10 elementwise ops each), attributed
    to the RNN module; FLOPs from costs.RNN_CELL_ELEMENTWISE, bytes = what the fused kernel reads and writes."""
    b, h, t, e = 3, 16, 5, 4
    for kind in ("LSTM", "GRU"):
        g = wattlint.analyze(OneRNN(kind), inputs=["x=float32[3,5,8]"])
        fwd = [r for r in g.records if r.phase is Phase.FORWARD and r.module == "rnn"]
        bwd = [r for r in g.records if r.phase is Phase.BACKWARD and r.module == "rnn"]
        assert not [r for r in fwd if r.kind is OpKind.ELEMENTWISE and r.flops], kind
        # backward as cuDNN's: no per-step gradient adds (dh_{t-1} accumulates into dy_{t-1} in the GEMM, weight
        # and bias gradients are formed once per layer)
        assert not [r for r in bwd if r.kind is OpKind.ELEMENTWISE and r.flops], kind
        cf = [r for r in fwd if r.kind is OpKind.RNN]
        cb = [r for r in bwd if r.kind is OpKind.RNN]
        assert len(cf) == len(cb) == t
        if kind == "LSTM":
            assert {r.op for r in cf} == {"aten._thnn_fused_lstm_cell.default"}
            assert {r.op for r in cb} == {"aten._thnn_fused_lstm_cell_backward_impl.default"}
            # 22/unit + (input + hidden gates) add + 2 bias adds per gate element
            assert {r.flops for r in cf} == {22 * b * h + 3 * 4 * b * h} == {1632}
            # reads input gates, hidden gates [B, 4H], c [B, H], b_ih, b_hh [4H]; writes h, c, workspace [B, 4H]
            assert {r.bytes_read for r in cf} == {(2 * b * 4 * h + b * h + 2 * 4 * h) * e} == {2240}
            assert {r.bytes_written for r in cf} == {(2 * b * h + b * 4 * h) * e} == {1152}
            # backward: 2 x 22/unit (the bias gradient is one reduction per layer, not per step); reads dh, dc (none
            # at the last step: c_n unused), c, c_new, workspace; writes d gates, dc_prev
            assert {r.flops for r in cb} == {2 * 22 * b * h} == {2112}
            assert sorted(r.bytes_read for r in cb) == [(3 * b * h + 4 * b * h) * e] + [(4 * b * h + 4 * b * h) * e] * 4
            assert {r.bytes_written for r in cb} == {(4 * b * h + b * h) * e} == {960}
        else:
            assert {r.op for r in cf} == {"aten._thnn_fused_gru_cell.default"}
            assert {r.op for r in cb} == {"aten._thnn_fused_gru_cell_backward.default"}
            assert {r.flops for r in cf} == {20 * b * h + 3 * 3 * b * h} == {1392}
            # reads input/hidden gates [B, 3H], h [B, H], b_ih, b_hh [3H]; writes h and workspace [B, 5H]
            assert {r.bytes_read for r in cf} == {(2 * b * 3 * h + b * h + 2 * 3 * h) * e} == {1728}
            assert {r.bytes_written for r in cf} == {(b * h + 5 * b * h) * e} == {1152}
            # backward: 2 x 20/unit (bias gradients: once per layer); reads dh + workspace; writes d input gates,
            # d hidden gates, dh_prev
            assert {r.flops for r in cb} == {2 * 20 * b * h} == {1920}
            assert {r.bytes_read for r in cb} == {(b * h + 5 * b * h) * e} == {1152}
            assert {r.bytes_written for r in cb} == {(2 * 3 * b * h + b * h) * e} == {1344}


def test_backward_attribution_and_phases():
    import torch_models as E

    g = wattlint.analyze(E.ResNetSmall(classes=10), inputs=["x=float32[2,3,64,64]"])
    bwd_mods = {r.module for r in g.records if r.phase is Phase.BACKWARD and r.kind is OpKind.CONV}
    fwd_mods = {r.module for r in g.records if r.phase is Phase.FORWARD and r.kind is OpKind.CONV}
    assert bwd_mods == fwd_mods and "layers.1.0.down.0" in bwd_mods
    bn_bwd = [r for r in g.records if r.phase is Phase.BACKWARD and r.op == "aten.native_batch_norm_backward.default"]
    assert bn_bwd and all(r.module_type == "BatchNorm2d" for r in bn_bwd)
    assert {r.phase for r in g.records} == {Phase.FORWARD, Phase.BACKWARD, Phase.OPTIMIZER}
    opt = g.select(phase="optimizer", status=None)
    assert opt and all(r.op.startswith("aten._foreach_") for r in opt)
    assert g.params == sum(p.numel() for p in E.ResNetSmall(classes=10).parameters())
    assert g.outputs[0].shape == (2, 10)
    assert any("cross-entropy on the 10-way logits" in a for a in g.assumptions)
    assert g.extra["activation_bytes"] > 0


def test_optimizer_variants_cost_in_order():
    import torch_models as E

    cost = {o: wattlint.analyze(E.MLP(), inputs=["x=float32[8,784]"], optimizer=o).total("optimizer")
            for o in ("sgd", "adam", "adamw")}
    by = {o: c.bytes_read + c.bytes_written for o, c in cost.items()}
    assert by["sgd"] < by["adam"] <= by["adamw"]
    assert cost["adam"].flops < cost["adamw"].flops  # decoupled weight decay
    from wattlint.types import ConfigError

    with pytest.raises(ConfigError, match="optimizer= 'lion': expected one of"):  # as wattlint.estimate refuses it
        wattlint.analyze(E.MLP(), inputs=["x=float32[8,784]"], optimizer="lion")


def test_autocast_bf16_follows_cuda_lists():
    import torch_models as E

    g = wattlint.analyze(E.TinyGPT(depth=1), inputs=["ids=int64[8,256]"], precision="bf16")
    mm = [r for r in _fwd(g) if r.op in ("aten.mm.default", "aten.addmm.default")]
    assert mm and all(r.dtype == "bfloat16" for r in mm)
    ln = [r for r in _fwd(g) if r.op == "aten.native_layer_norm.default"]
    assert ln and all(r.dtype == "float32" for r in ln)
    # the token-level cross-entropy over the [8, 256, vocab] logits (s49: it was the sum of the outputs): log_softmax
    # is on autocast's fp32 list
    loss_ls = [r for r in _fwd(g) if r.op == "aten._log_softmax.default" and r.module == ""]
    assert loss_ls and loss_ls[-1].dtype == "float32"
    casts = [r for r in _fwd(g) if r.op == "aten._to_copy.default"]
    assert casts  # weight/activation casts are real memory traffic
    # weight casts are cached for the step: no weight is cast twice
    bwd_mm = [r for r in g.records if r.phase is Phase.BACKWARD and r.kind is OpKind.MATMUL]
    assert all(r.dtype == "bfloat16" for r in bwd_mm)
    assert g.precision == "bf16" and any("autocast" in a for a in g.assumptions)
    g32 = wattlint.analyze(E.TinyGPT(depth=1), inputs=["ids=int64[8,256]"])
    assert g.total("forward").flops == pytest.approx(g32.total("forward").flops, rel=0.01)
    # the ops autocast lowers move half the bytes (a 1-layer toy's total also carries the per-step weight casts,
    # which can outweigh the savings now that dropout is one fused kernel)
    def gemm_bytes(graph):
        return sum(r.bytes_read + r.bytes_written for r in _fwd(graph) if r.kind is OpKind.MATMUL)
    assert gemm_bytes(g) == pytest.approx(gemm_bytes(g32) / 2, rel=0.05)


def test_activation_checkpointing_recomputes_in_backward():
    import torch_models as E

    base = wattlint.analyze(E.TinyGPT(depth=2), inputs=["ids=int64[2,64]"])
    ck = wattlint.analyze(E.TinyGPT(depth=2), inputs=["ids=int64[2,64]"], activation_checkpointing=True)
    rec = [r for r in ck.records if r.recompute]
    assert rec and all(r.phase is Phase.BACKWARD for r in rec)
    assert all(r.module.startswith("blocks.layers.") for r in rec)
    fwd_block = sum(r.flops for r in base.records if r.phase is Phase.FORWARD and r.module.startswith("blocks."))
    # torch's non-reentrant checkpoint stops recomputing once every saved tensor is back (early stop), so the
    # block's last ops (residual add, ...) are not recomputed
    assert 0.9 * fwd_block <= sum(r.flops for r in rec) <= fwd_block
    assert ck.total("forward").flops == base.total("forward").flops
    assert ck.extra["activation_bytes"] < base.extra["activation_bytes"]


def test_batch_is_global_and_rebinds_leading_dim():
    import torch_models as E

    g = wattlint.analyze("examples/torch_models.py:resnet_small", batch_size=64, gpus=4, grad_accum=2)
    assert g.micro_batch == 8 and g.inputs[0].shape == (8, 3, 224, 224)
    assert any("micro-batch 8" in a for a in g.assumptions)
    g1 = wattlint.analyze(E.MLP(), inputs=["x=float32[16,784]"], batch_size=4)
    assert g1.micro_batch == 4
    with pytest.raises(InputError):
        wattlint.analyze(E.MLP(), inputs=["x=float32[16,784]"], batch_size=2, gpus=4)


def test_unsupported_ops_are_counted_not_zeroed():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 16)

        def forward(self, x):
            return torch.linalg.cholesky(self.fc(x).view(-1, 4, 4) @ self.fc(x).view(-1, 4, 4).mT).sum()

    g = wattlint.analyze(Odd(), inputs=["x=float32[4,16]"])
    uns = g.unsupported()
    assert uns and all(n > 0 for n in uns.values())
    assert any("cholesky" in k for k in uns)
    assert all(r.bytes > 0 for r in g.records if r.status is Status.UNSUPPORTED)


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_hf_decoders_get_through_item_calls(name):
    """transformers' mask preparation calls .item() on meta tensors (use_cache=False); the trace answers it."""
    g = analyze_config(dict(HF_CONFIGS[name]), micro_batch=1, seq_len=64)
    assert any(a.startswith("data-dependent reads") for a in g.assumptions)
    att = _fwd(g, OpKind.ATTENTION)
    assert len(att) == 2 and all(r.dim("causal") == 1 for r in att)
    assert g.inputs[0].dtype == "int64" and g.inputs[0].shape == (1, 64)
    assert g.outputs[0].name == "logits" and g.outputs[0].shape == (1, 64, 1000)
    bwd_att = [r for r in g.records if r.phase is Phase.BACKWARD and r.kind is OpKind.ATTENTION]
    assert sorted(r.module for r in bwd_att) == sorted(r.module for r in att)  # attributed like the forward
    assert all(r.module.endswith(("self_attn", "attn")) for r in att)
    blocks = {r.module.split(".")[2] for r in g.records if r.phase is Phase.BACKWARD
              and r.module.startswith(("model.layers.", "transformer.h."))}
    assert blocks == {"0", "1"}


def test_hf_config_json_file(tmp_path):
    import json

    p = tmp_path / "config.json"
    p.write_text(json.dumps(HF_CONFIGS["bert"]))
    g = wattlint.analyze(str(p), seq_len=32, batch_size=2)
    assert g.model.format == "hf" and g.seq_len == 32 and g.micro_batch == 2
    assert g.params > 0 and g.model.name == "BertForMaskedLM"


def test_analyze_forwards_through_package():
    g = wattlint.analyze("examples/torch_models.py:mlp")
    assert g.model.source == "examples/torch_models.py:mlp" and g.micro_batch == 32


def test_data_dependent_shapes_are_answered():
    class Sel(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            y = self.fc(x)
            return y[y > 0].sum() + torch.nonzero(y).shape[0]

    g = wattlint.analyze(Sel(), inputs=["x=float32[4,8]"])
    assert any("every element selected" in a for a in g.assumptions)
    assert g.total("backward").flops > 0


def test_traced_bytes_by_hand_relu_and_autocast_casts():
    class ReluLin(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(32, 16, bias=False)

        def forward(self, x):
            return torch.relu(self.fc(x))

    g = wattlint.analyze(ReluLin(), inputs=["x=float32[4,32]"])
    (relu,) = [r for r in _fwd(g) if r.op == "aten.relu.default"]
    assert (relu.flops, relu.bytes_read, relu.bytes_written) == (64, 256, 256)
    gb = wattlint.analyze(ReluLin(), inputs=["x=float32[4,32]"], precision="bf16")
    casts = sorted((r.bytes_read, r.bytes_written) for r in _fwd(gb, module="fc") if r.op == "aten._to_copy.default")
    # x: 4x32 fp32 -> bf16 ; W: 16x32 fp32 -> bf16 (cast once per step, reused by the backward GEMM)
    assert casts == [(4 * 32 * 4, 4 * 32 * 2), (16 * 32 * 4, 16 * 32 * 2)]
    # the bf16 logits are cast up for the loss (cross-entropy is on autocast's fp32 list)
    (up,) = [r for r in _fwd(gb, module="") if r.op == "aten._to_copy.default"]
    assert (up.bytes_read, up.bytes_written) == (4 * 16 * 2, 4 * 16 * 4)
    # backward: the weight gradient GEMM runs in bf16 on the cached bf16 input, then is cast to the fp32 weight
    (dw,) = [r for r in gb.records if r.phase is Phase.BACKWARD and r.op == "aten.mm.default"]
    assert dw.dtype == "bfloat16" and dw.flops == 2 * 4 * 16 * 32
    (mm,) = [r for r in _fwd(gb) if r.op == "aten.mm.default"]
    assert (mm.dtype, mm.bytes_read, mm.bytes_written) == ("bfloat16", (4 * 32 + 16 * 32) * 2, 4 * 16 * 2)
    (grad_cast,) = [r for r in gb.records if r.phase is Phase.BACKWARD and r.op == "aten._to_copy.default"]
    assert (grad_cast.bytes_read, grad_cast.bytes_written) == (16 * 32 * 2, 16 * 32 * 4)


def test_hf_config_dtype_keeps_fp32_master_weights():
    cfg = dict(HF_CONFIGS["llama"], torch_dtype="float16")
    g = analyze_config(cfg, micro_batch=1, seq_len=16)
    assert g.model.param_bytes == 4 * g.params
    assert any(a.startswith("weights: float32 master weights") for a in g.assumptions)


@torch.library.custom_op("wattlint_test::double", mutates_args=())
def _double(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@_double.register_fake
def _(x):
    return torch.empty_like(x)


_double.register_autograd(lambda ctx, g: g * 2)


def test_custom_ops_are_recorded_as_unsupported():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return _double(self.fc(x))

    g = wattlint.analyze(M(), inputs=["x=float32[2,8]"])
    assert g.unsupported() == {"wattlint_test.double.default": 1}
    (r,) = [r for r in g.records if r.status is Status.UNSUPPORTED]
    assert r.flops == 0 and (r.bytes_read, r.bytes_written) == (64, 64)


def test_a_seq_len_past_the_configs_positions_is_refused_or_stated(tmp_path):
    """GPT-2 small's config has n_positions = 1024 learned positions (transformer.wpe, 1024 rows): --seq-len 4096
    cannot run and is refused (it was costed with a note); a rotary model (Llama-shaped, 128 positions) runs past
    its trained context with context extension: costed, and stated; within the limit nothing is said."""
    import json

    import wattlint
    from wattlint.types import InputError

    with pytest.raises(InputError, match=r"--seq-len 4096 exceeds the 1024 learned position embeddings .*"
                                         r"\(transformer\.wpe\)"):
        wattlint.analyze("examples/gpt2-small/config.json", seq_len=4096, batch_size=1)
    ok = wattlint.analyze("examples/gpt2-small/config.json", seq_len=1024, batch_size=1)
    assert not any("exceeds the config's maximum positions" in a for a in ok.assumptions)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
                               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
                               "vocab_size": 256, "max_position_embeddings": 128}))
    long = wattlint.analyze(str(cfg), seq_len=512, batch_size=1)
    assert any(a.startswith("--seq-len 512 exceeds the config's maximum positions 128: the model has no learned "
                            "position table") for a in long.assumptions)


def test_an_unknown_hf_architecture_is_stated_not_silently_replaced():
    """A config.json whose architectures name no transformers class is built as its model_type's base model (no
    task head): the assumptions must say so (fuzz review: it was silent), and a known class is not flagged."""
    cfg = {"model_type": "gpt2", "n_embd": 64, "n_head": 2, "n_layer": 1, "vocab_size": 128, "n_positions": 64}
    g = analyze_config({**cfg, "architectures": ["NoSuchArch"]}, seq_len=16, micro_batch=1)
    line = next(a for a in g.assumptions if a.startswith("architectures ['NoSuchArch']"))
    assert "built the base model of model_type 'gpt2' instead (GPT2Model: no task head" in line
    assert "did you mean" not in line
    typo = analyze_config({**cfg, "architectures": ["GPT2LMHeadModle"]}, seq_len=16, micro_batch=1)
    line = next(a for a in typo.assumptions if a.startswith("architectures ['GPT2LMHeadModle']"))
    assert "(did you mean GPT2LMHeadModel?)" in line
    g = analyze_config({**cfg, "architectures": ["GPT2LMHeadModel"]}, seq_len=16, micro_batch=1)
    assert not any(a.startswith("architectures [") for a in g.assumptions)


class _DictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(24, 10)

    def forward(self, batch):
        return self.fc(torch.cat([batch["x"], batch["y"]], dim=-1))


def test_a_forward_taking_a_dict_reads_its_batch_and_rebinds_it():
    """Review: a dict of [4, ...] tensors was read as micro-batch 1, and --batch-size 4 then scaled the already
    batched trace 4x (work off by the real batch). Oracle: the same module traced on a real batch of 8."""
    from wattlint.frontends.torch import trace_with_inputs

    def ex(b):
        return ({"x": torch.randn(b, 16), "y": torch.randn(b, 8)},)

    g4 = trace_with_inputs(_DictNet(), ex(4), {})
    assert g4.micro_batch == 4 and [s.name for s in g4.inputs] == ["input.x", "input.y"]
    g8 = trace_with_inputs(_DictNet(), ex(8), {})
    rebound = trace_with_inputs(_DictNet(), ex(4), {}, micro_batch=8)
    assert rebound.micro_batch == 8 and rebound.total().flops == g8.total().flops
    # the forward GEMM alone, by hand: 2 x 8 x 24 x 10 FLOPs
    assert any(r.flops == 2 * 8 * 24 * 10 for r in rebound.records)


class _SeqFirstGRU(nn.Module):
    def __init__(self, batch_first: bool = False):
        super().__init__()
        self.gru = nn.GRU(16, 32, batch_first=batch_first)
        self.head = nn.Linear(32, 5)

    def forward(self, x):
        y, _ = self.gru(x)
        return self.head(y[-1] if not self.gru.batch_first else y[:, -1])


def test_a_seq_first_rnn_reads_its_batch_from_dim_1_and_rebinds_it():
    """Review: nn.GRU's default layout is [seq, batch, features]; a GRU taking [50, 4, 16] was priced as micro-batch
    50, and --batch-size 8 rebound the sequence (50 -> 8) instead of the batch. Oracle: the same weights in a
    batch_first=True GRU given [8, 50, 16] (identical work), and the forward input GEMM by hand:
    2 x (50 x 8) rows x 16 x (3 x 32) gates."""
    from wattlint.frontends.torch import trace_with_inputs

    g = trace_with_inputs(_SeqFirstGRU(), (torch.randn(50, 4, 16),), {})
    assert g.micro_batch == 4
    assert any("batch_first=False" in a and "dim 1" in a for a in g.assumptions)
    rebound = trace_with_inputs(_SeqFirstGRU(), (torch.randn(50, 4, 16),), {}, micro_batch=8)
    oracle = trace_with_inputs(_SeqFirstGRU(batch_first=True), (torch.randn(8, 50, 16),), {})
    assert rebound.micro_batch == oracle.micro_batch == 8
    assert [s.shape for s in rebound.inputs] == [(50, 8, 16)]
    assert rebound.total().flops == oracle.total().flops
    assert any(r.flops == 2 * 50 * 8 * 16 * 3 * 32 for r in _fwd(rebound))
    # batch_first=True keeps the leading dim, and says nothing about the layout
    assert oracle.micro_batch == 8 and not any("batch_first" in a for a in oracle.assumptions)


class _TransposingGRU(nn.Module):
    """A [batch, seq, features] model that transposes for its seq-first GRU itself (older code bases)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.gru = nn.GRU(16, 32)

    def forward(self, ids):
        y, _ = self.gru(self.embed(ids).transpose(0, 1))
        return y[-1]


def test_a_model_that_transposes_for_its_seq_first_rnn_keeps_the_leading_dim():
    """The batch_first=False rule must not misread a [batch, seq] input the model transposes itself: a probe runs
    the forward up to the GRU and sees its [seq, batch] input come from the input's dims swapped."""
    from wattlint.frontends.torch import trace_with_inputs

    ids = torch.randint(0, 100, (4, 50))
    g = trace_with_inputs(_TransposingGRU(), (ids,), {})
    assert g.micro_batch == 4 and g.seq_len == 50
    assert not any("batch_first" in a for a in g.assumptions)
    rebound = trace_with_inputs(_TransposingGRU(), (ids,), {}, micro_batch=8)
    assert [s.shape for s in rebound.inputs] == [(8, 50)]
    # an embedding in front of a seq-first GRU fed [seq, batch] ids: dim 1 is the batch
    class SeqFirstIds(_TransposingGRU):
        def forward(self, ids):
            y, _ = self.gru(self.embed(ids))
            return y[-1]

    g2 = trace_with_inputs(SeqFirstIds(), (ids.T.contiguous(),), {})
    assert g2.micro_batch == 4 and g2.seq_len == 50


class _CRNN(nn.Module):
    """A text-line recogniser: a CNN over [batch, 1, 32, W] images, its [width, batch, features] map into a seq-first
    bidirectional LSTM (CRNN-style)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.MaxPool2d(2))
        self.lstm = nn.LSTM(8 * 16, 32, bidirectional=True)
        self.fc = nn.Linear(64, 37)

    def forward(self, x):
        f = self.conv(x)  # [B, 8, 16, W / 2]
        b, c, h, w = f.shape
        y, _ = self.lstm(f.permute(3, 0, 1, 2).reshape(w, b, c * h))
        return self.fc(y)


def test_a_cnn_feeding_a_seq_first_lstm_keeps_the_image_batch():
    """Review: images [16, 1, 32, 128] into a CNN whose feature map goes [64, 16, 128] into a batch_first=False
    LSTM were read as [seq, batch] inputs: micro-batch 1 (the channel dim), 16x the steps of an epoch, and
    --batch-size 32 rewrote the channels (a conv error). The LSTM's batch (dim 1 of what it receives: 16) is the
    input's dim 0. Hand count of the LSTM's forward input GEMM per direction: 2 x (64 x 16) rows x 128 x (4 x 32)."""
    from wattlint.frontends.torch import trace_with_inputs

    g = trace_with_inputs(_CRNN(), (torch.randn(16, 1, 32, 128),), {})
    assert g.micro_batch == 16 and not any("batch_first" in a for a in g.assumptions)
    assert any(r.flops == 2 * 64 * 16 * 128 * 4 * 32 for r in _fwd(g))
    rebound = trace_with_inputs(_CRNN(), (torch.randn(16, 1, 32, 128),), {}, micro_batch=32)
    assert [s.shape for s in rebound.inputs] == [(32, 1, 32, 128)]
    for phase in ("forward", "backward"):  # the optimizer step does not grow with the batch
        assert rebound.total(phase).flops == pytest.approx(2 * g.total(phase).flops, rel=1e-9)


def test_mixed_rnn_layouts_keep_the_leading_dim_and_say_so():
    from wattlint.frontends.torch import trace_with_inputs

    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.GRU(16, 16, batch_first=True)
            self.b = nn.GRU(16, 16)

        def forward(self, x):
            y, _ = self.a(x)
            z, _ = self.b(y.transpose(0, 1))
            return z.sum()

    g = trace_with_inputs(Mixed(), (torch.randn(4, 10, 16),), {})
    assert g.micro_batch == 4
    assert any("batch_first=False while other modules have batch_first=True" in a for a in g.assumptions)


class _ConvBlocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
                                    for _ in range(2))
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x.mean((2, 3)))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_checkpointed_convolutions_recompute_under_autocast(precision):
    """Review: --activation-checkpointing with --precision bf16 / fp16 failed on every CNN ('Input type (BFloat16)
    and bias type (float) should be the same'): the recompute in backward ran without the conv autocast. Each
    block's convolution now runs again in backward, in the autocast dtype, as in forward."""
    from wattlint.frontends.torch import trace

    g = trace(_ConvBlocks(), (torch.randn(4, 8, 16, 16),), precision=precision, activation_checkpointing=True)
    half = {"bf16": "bfloat16", "fp16": "float16"}[precision]
    fwd = [r for r in g.records if r.kind is OpKind.CONV and r.phase is Phase.FORWARD and not r.recompute]
    again = [r for r in g.records if r.kind is OpKind.CONV and r.recompute]
    assert len(fwd) == len(again) == 2
    assert {r.dtype for r in fwd} == {r.dtype for r in again} == {half}


def test_an_encoder_decoder_given_its_encoder_input_gets_decoder_tokens(tmp_path, run_cli):
    """Whisper's own hint ('pass --input input_features=...') led to a second failure: transformers' 'You cannot
    specify both decoder_input_ids and decoder_inputs_embeds'. The decoder's tokens are added (and stated)."""
    import json as _json

    cfg = tmp_path / "whisper.json"
    cfg.write_text(_json.dumps(dict(model_type="whisper", architectures=["WhisperForConditionalGeneration"],
                                    d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                                    decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                                    num_mel_bins=80, max_source_positions=1500, max_target_positions=448,
                                    vocab_size=1000, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                    decoder_start_token_id=1)))
    code, _, err = run_cli(str(cfg), "--steps", "1")
    assert code == 2 and "--input input_features=float32[1,80,3000]" in err, err
    code, out, err = run_cli(str(cfg), "--steps", "1", "--input", "input_features=float32[2,80,3000]", "--format",
                             "json")
    assert code == 0, err
    doc = _json.loads(out)
    assert any(a.startswith("decoder_input_ids: int64[2, 448] added") for a in doc["assumptions"])


def test_a_two_tower_model_gets_images_and_its_text_towers_length(tmp_path, run_cli):
    """CLIP failed with "'NoneType' object has no attribute 'shape'" (no pixel_values), and its 77 text positions
    were not read (the default 512 tokens then failed inside transformers)."""
    import json as _json

    tower = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4)
    cfg = tmp_path / "clip.json"
    cfg.write_text(_json.dumps(dict(model_type="clip", architectures=["CLIPModel"], projection_dim=32,
                                    text_config=dict(tower, vocab_size=1000, max_position_embeddings=77),
                                    vision_config=dict(tower, image_size=64, patch_size=16))))
    code, out, err = run_cli(str(cfg), "--steps", "1", "--batch-size", "2")
    assert code == 0, err
    from wattlint.api import trace

    shapes = {i.name: i.shape for i in trace(str(cfg), {"batch_size": 2}).inputs}
    assert shapes == {"input_ids": (2, 77), "pixel_values": (2, 3, 64, 64)}, shapes


class _UnusedHead(nn.Module):
    """fc is trained; old_head is never called; frozen_in runs under torch.no_grad() (its weights get no gradient)."""

    def __init__(self):
        super().__init__()
        self.frozen_in = nn.Linear(64, 100)
        self.fc = nn.Linear(100, 10)
        self.old_head = nn.Linear(256, 256)

    def forward(self, x):
        with torch.no_grad():
            h = self.frozen_in(x)
        return self.fc(h)


@pytest.mark.parametrize("grads_to_none", [True, False])
def test_parameters_that_get_no_gradient_are_not_stepped(grads_to_none):
    """torch's optimizers skip a parameter whose .grad is None: an unused head and a layer run under no_grad were
    stepped (AdamW over 16.8 M unused parameters was 0.58 ms of a 0.71 ms step) and given gradient and optimizer
    memory. By hand: only fc's 100 x 10 + 10 = 1,010 parameters are stepped; AdamW foreach = 12 FLOP per parameter
    (the reference figure of the frontend's AdamW records) and gradients of 1,010 x 4 B."""
    from wattlint.frontends.torch import trace_with_inputs

    g = trace_with_inputs(_UnusedHead(), (torch.randn(16, 64),), {}, grads_to_none=grads_to_none)
    assert g.total("optimizer").flops == 12 * 1010
    assert g.model.trainable_params == 1010
    assert any(a.startswith("72,292 trainable parameters in 4 tensors receive no gradient") for a in g.assumptions)  # 6,500 + 65,792
    # the weight-gradient GEMM of fc only: the frozen layer and the unused head have none
    assert not any(r.module in ("frozen_in", "old_head") for r in g.records if r.phase is Phase.BACKWARD)


def test_a_torchscript_module_is_refused_as_input_not_an_internal_error(tmp_path, run_cli):
    """torch.jit.script(model) exited 3 ('register_forward_pre_hook is not supported on ScriptModules ... please
    report it'): a user's input wattlint cannot trace, so one line and exit 2; torch.jit.trace results still trace."""
    src = tmp_path / "scripted.py"
    src.write_text("import torch, torch.nn as nn\n"
                   "class MLP(nn.Module):\n"
                   "    def __init__(self):\n        super().__init__()\n        self.a = nn.Linear(100, 10)\n"
                   "    def forward(self, x):\n        return self.a(x)\n"
                   "def scripted():\n    return torch.jit.script(MLP()), (torch.randn(32, 100),)\n"
                   "def traced():\n    x = torch.randn(32, 100)\n    return torch.jit.trace(MLP(), x), (x,)\n"
                   "def nested():\n    return nn.Sequential(nn.Linear(100, 100), torch.jit.script(MLP())), "
                   "(torch.randn(32, 100),)\n")
    code, out, err = run_cli(f"{src}:scripted", "--gpu", "a100", "--steps", 1)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "a TorchScript module (RecursiveScriptModule, from torch.jit.script / torch.jit.load)" in err
    code, out, err = run_cli(f"{src}:nested", "--gpu", "a100", "--steps", 1)  # a scripted submodule (was exit 3)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "its submodule '1' is a TorchScript module" in err
    g = wattlint.analyze(f"{src}:traced")
    assert any(r.kind is OpKind.MATMUL and r.flops == 2 * 32 * 100 * 10 + 32 * 10 for r in _fwd(g))  # addmm + bias


class _Lengths(nn.Module):
    """Padded ids with their lengths: the sequence is cut to the longest length read from the data."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 32)
        self.fc = nn.Linear(32, 4)

    def forward(self, ids, lengths):
        t = int(lengths.max())
        mask = torch.arange(t, device=ids.device)[None, :] < lengths[:, None]
        h = self.emb(ids[:, :t]) * mask[..., None]
        return self.fc(h.sum(1) / lengths[:, None])


def test_an_integer_read_from_the_data_is_the_full_sequence_not_one():
    """int(lengths.max()) was answered 1 on meta tensors: the sequence was cut to one token (embedding backward
    8 x 1 x 32) while the note said 'no padding'. Answered as the inputs' sequence length (50): the embedding
    gradient is 8 x 50 x 32 elements, as with lengths all 50."""
    from wattlint.frontends.torch import trace_with_inputs

    g = trace_with_inputs(_Lengths(), (torch.randint(0, 100, (8, 50)), torch.full((8,), 50)), {})
    emb_bwd = [r for r in g.records if r.op == "aten.embedding_dense_backward.default"]
    assert [r.flops for r in emb_bwd] == [8 * 50 * 32]
    assert any("int->50 x1" in a and "full sequence length (50)" in a for a in g.assumptions)


def test_a_nan_check_on_the_data_reads_clean_data():
    """`assert not torch.isnan(x).any()` failed the trace (every data-dependent bool read True)."""
    from wattlint.frontends.torch import trace_with_inputs

    class Checked(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            assert not torch.isnan(x).any(), "nan input"
            if torch.isinf(x).any():
                raise ValueError("inf input")
            assert not (~torch.isfinite(x)).any(), "non-finite input"
            assert x.isfinite().all()
            return self.fc(x)

    g = trace_with_inputs(Checked(), (torch.randn(8, 64),), {})
    assert any(r.flops == 2 * 8 * 64 * 10 + 8 * 10 for r in _fwd(g))
    assert any("finite check->False x3" in a and "finite check->True x1" in a for a in g.assumptions)
    assert torch.isfinite(torch.tensor([1.0, float("inf")])).tolist() == [True, False]  # restored after the trace


def test_batch_size_keeps_inputs_without_a_batch_dim():
    """--batch-size rewrote dim 0 of every input: a [32, 32] attention mask became [8, 32] (torch: 'The shape of the
    2D attn_mask is torch.Size([8, 32])') and a [64] weight vector [8]. Only inputs batched like the first are
    rebound; the others are kept, and the note names them."""
    from wattlint.frontends.torch import trace_with_inputs

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True)
            self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
            self.fc = nn.Linear(64, 10)

        def forward(self, x, src_mask):
            return self.fc(self.enc(x, mask=src_mask).mean(1))

    ex = (torch.randn(4, 32, 64), nn.Transformer.generate_square_subsequent_mask(32))
    g = trace_with_inputs(Masked(), ex, {}, micro_batch=8)
    assert g.micro_batch == 8 and [s.shape for s in g.inputs] == [(8, 32, 64), (32, 32)]
    assert any("kept as given: src_mask [32, 32]" in a for a in g.assumptions)


def test_the_api_takes_example_tensors_as_inputs_by_dtype_and_shape():
    """wattlint.analyze(model, inputs={'x': torch.randn(32, 1000)}) was refused ('expected a TensorSpec or a spec
    string, got Tensor'): an example tensor gives its dtype and shape (never its values), as a spec string does."""
    m = nn.Sequential(nn.Linear(1000, 10))
    g = wattlint.analyze(m, inputs={"x": torch.randn(32, 1000)})
    same = wattlint.analyze(m, inputs={"x": "float32[32,1000]"})
    assert g.micro_batch == 32 and [s.shape for s in g.inputs] == [(32, 1000)]
    assert g.total().flops == same.total().flops
    with pytest.raises(InputError, match=r"input 'x': expected a TensorSpec, a spec string .* or an example tensor, "
                                         r"got list"):
        wattlint.analyze(m, inputs={"x": [32, 1000]})


def test_a_position_read_from_the_data_is_a_valid_index_and_float_features_give_the_sequence():
    """Review: answering every integer read with the sequence length broke a model that indexes with it
    (int((ids == 2).argmax(-1)[0]) -> h[:, 32]: IndexError, traced before); a position read is 0. A model of float
    features [batch, time, features] cut to int(lengths.max()) was still cut to 1 step: its time dim is the
    answer (GRU input GEMM 2 x (4 x 100) rows x 40 x (3 x 64) by hand)."""
    from wattlint.frontends.torch import trace_with_inputs

    class Pick(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(100, 32)
            self.fc = nn.Linear(32, 4)

        def forward(self, ids):
            eos = int((ids == 2).int().argmax(-1)[0])
            return self.fc(self.emb(ids)[:, eos])

    g = trace_with_inputs(Pick(), (torch.randint(0, 100, (8, 32)),), {})
    note = next(a for a in g.assumptions if a.startswith("data-dependent reads"))
    assert "index->0 x1" in note and "positions (argmax ...) as 0" in note and "all-ones" not in note

    class Feats(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(40, 64, batch_first=True)
            self.fc = nn.Linear(64, 4)

        def forward(self, feats, lengths):
            y, _ = self.rnn(feats[:, :int(lengths.max())])
            return self.fc(y[:, -1])

    g = trace_with_inputs(Feats(), (torch.randn(4, 100, 40), torch.full((4,), 100)), {})
    assert any(r.flops == 2 * 4 * 100 * 40 * 3 * 64 for r in _fwd(g))
    assert any("int->100 x1" in a for a in g.assumptions)


def test_seq_len_keeps_integer_inputs_of_another_length_and_says_so():
    """Review: --seq-len rebound every integer input's sequence dim; after the batch fix it kept ones of another
    length silently. Inputs of the first one's length are rebound; the others kept and named."""
    from wattlint.frontends.torch import trace_with_inputs

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.e = nn.Embedding(100, 16)
            self.f = nn.Linear(16, 4)

        def forward(self, src, tgt):
            return self.f(self.e(src).mean(1) + self.e(tgt).mean(1))

    ex = (torch.randint(0, 100, (4, 32)), torch.randint(0, 100, (4, 8)))
    g = trace_with_inputs(Two(), ex, {}, seq_len=64)
    assert [s.shape for s in g.inputs] == [(4, 64), (4, 8)]
    assert any("kept as given: tgt [4, 8] (another length" in a for a in g.assumptions)
    same = trace_with_inputs(Two(), (ex[0], torch.randint(0, 100, (4, 32))), {}, seq_len=64)
    assert [s.shape for s in same.inputs] == [(4, 64), (4, 64)] and not any("--seq-len" in a for a in same.assumptions)


def test_tied_weights_stay_tied_when_a_cpu_module_moves_to_meta():
    """Review: a module with real (CPU) weights passed to the API was moved with Module.to("meta"), which makes a
    new Parameter per module and unties shared weights: GPT-2's LM head and embedding were counted twice. Here an
    embedding of 100 x 16 shared with the output layer: 1,600 parameters (not 3,200), one gradient and one AdamW
    state per element of them."""
    import torch
    from torch import nn

    from wattlint.frontends.source import analyze

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(100, 16)
            self.out = nn.Linear(16, 100, bias=False)
            self.out.weight = self.emb.weight

        def forward(self, ids):
            return self.out(self.emb(ids))

    model = Tied()
    g = analyze(model, inputs={"ids": "ids=int64[4,8]"})
    assert g.params == 1600 and g.model.trainable_params == 1600
    assert model.out.weight.device.type == "cpu" and model.out.weight is model.emb.weight  # the user's module kept
    with torch.device("meta"):  # the same model built on meta (a factory) gives the same optimizer step
        meta = Tied()
    opt = lambda gr: sum(r.flops for r in gr.records if r.phase.value == "optimizer")  # noqa: E731
    assert opt(g) == opt(analyze(meta, inputs={"ids": "ids=int64[4,8]"}))


def test_hf_configs_from_the_sweep(tmp_path):
    """Review (a sweep of transformers architectures): (1) --seq-len with --input was never checked against the
    learned positions (a GPT-2 with 256 positions traced at 300; Whisper's decoder at 1000 of its 448); (2) RoBERTa
    runs max_position_embeddings - pad_token_id - 1 tokens (positions start after the padding index): 256 of 256
    was costed, the model fails past 254; (3) a config without 'architectures' built the base model without a word
    (no LM head, no loss); (4) transformers 5 writes non-finite floats as {"__float__": "Infinity"} (Mamba2), and
    the config was refused."""
    import json

    import wattlint
    from wattlint.types import InputError

    def cfg(name, **kw):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps(kw))
        return str(d / "config.json")

    gpt2 = cfg("gpt2", model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=64, n_layer=1, n_head=4,
               vocab_size=256, n_positions=256)
    with pytest.raises(InputError, match=r"--seq-len 300 exceeds the 256 learned position embeddings"):
        wattlint.analyze(gpt2, inputs=["input_ids=int64[2,100]"], seq_len=300)
    roberta = cfg("roberta", model_type="roberta", architectures=["RobertaForMaskedLM"], hidden_size=64,
                  num_hidden_layers=1, num_attention_heads=4, intermediate_size=128, vocab_size=256,
                  max_position_embeddings=256, pad_token_id=1)
    with pytest.raises(InputError, match=r"--seq-len 256 exceeds the 254 learned position embeddings"):
        wattlint.analyze(roberta, seq_len=256, batch_size=1)
    assert wattlint.analyze(roberta, seq_len=254, batch_size=1).seq_len == 254
    bare = cfg("bare", model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=1,
               num_attention_heads=4, vocab_size=256)
    g = wattlint.analyze(bare, seq_len=16, batch_size=1)
    assert not any(r.module.startswith("lm_head") for r in g.records)  # the base model: no head
    assert any(a.startswith("no 'architectures' in the config: built LlamaModel") for a in g.assumptions)
    mamba2 = cfg("mamba2", model_type="mamba2", architectures=["Mamba2ForCausalLM"], vocab_size=256, hidden_size=64,
                 num_hidden_layers=1, num_heads=8, head_dim=16, state_size=16, n_groups=1, chunk_size=64, expand=2,
                 time_step_limit=[0.0, {"__float__": "Infinity"}])
    assert wattlint.analyze(mamba2, seq_len=64, batch_size=1).model.params > 0


def test_composite_encoder_decoders_read_their_sub_configs(tmp_path):
    """Review: EncoderDecoderModel / VisionEncoderDecoderModel configs keep the sizes in config.encoder /
    config.decoder: a BERT2BERT with 256 positions failed at the default 512 tokens, a ViT (64 px) to GPT-2 model
    was fed 224 px images (failed), and at 224 px its decoder was traced at 512 tokens against 256 learned
    positions (a model that cannot run), without a word on the decoder length."""
    import transformers as T

    import wattlint

    enc = T.BertConfig(vocab_size=256, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                       intermediate_size=128, max_position_embeddings=128)
    dec = T.BertConfig(**{**enc.to_dict(), "is_decoder": True, "add_cross_attention": True})
    c = T.EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    c.architectures = ["EncoderDecoderModel"]
    (tmp_path / "b2b").mkdir()
    c.to_json_file(tmp_path / "b2b" / "config.json")
    g = wattlint.analyze(str(tmp_path / "b2b" / "config.json"))
    assert {t.name: t.shape for t in g.inputs} == {"input_ids": (1, 128), "decoder_input_ids": (1, 128)}
    vit = T.ViTConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128,
                      image_size=64, patch_size=8)
    gpt = T.GPT2Config(vocab_size=256, n_embd=64, n_layer=1, n_head=4, n_positions=128, add_cross_attention=True,
                       is_decoder=True, bos_token_id=1, eos_token_id=1)
    c = T.VisionEncoderDecoderConfig.from_encoder_decoder_configs(vit, gpt)
    c.architectures = ["VisionEncoderDecoderModel"]
    (tmp_path / "v2g").mkdir()
    c.to_json_file(tmp_path / "v2g" / "config.json")
    g = wattlint.analyze(str(tmp_path / "v2g" / "config.json"))
    assert {t.name: t.shape for t in g.inputs} == {"pixel_values": (1, 3, 64, 64), "decoder_input_ids": (1, 128)}
    assert "decoder sequence length: 128 (default; pass --seq-len)" in g.assumptions


def test_whisper_decoder_tokens_added_at_the_batch_asked_for(tmp_path):
    """Review: with --input input_features=float32[1,80,3000] --batch-size 8 the note said decoder_input_ids
    int64[1, 448] were added while [8, 448] were traced."""
    import transformers as T

    import wattlint

    c = T.WhisperConfig(vocab_size=256, d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=1500,
                        max_target_positions=448, decoder_start_token_id=1, pad_token_id=1, bos_token_id=1,
                        eos_token_id=1, suppress_tokens=[], begin_suppress_tokens=[])
    c.architectures = ["WhisperForConditionalGeneration"]
    (tmp_path / "w").mkdir()
    c.to_json_file(tmp_path / "w" / "config.json")
    g = wattlint.analyze(str(tmp_path / "w" / "config.json"), inputs=["input_features=float32[1,80,3000]"],
                         batch_size=8)
    assert dict((t.name, t.shape) for t in g.inputs)["decoder_input_ids"] == (8, 448)
    assert any(a.startswith("decoder_input_ids: int64[8, 448] added") for a in g.assumptions)


def test_hf_input_with_a_seq_len_inside_the_positions_traces(tmp_path):
    """Review of the learned-positions check with --input: --input plus a --seq-len within the positions exited 3
    (UnboundLocalError), and a plain config's default batch lost its '(default; pass --batch-size)' line. An
    encoder-decoder whose encoder has fewer positions than its decoder runs at the shorter one's length."""
    import json

    import transformers as T

    import wattlint

    d = tmp_path / "gpt2"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
                                               "n_embd": 64, "n_layer": 1, "n_head": 4, "vocab_size": 256,
                                               "n_positions": 256}))
    g = wattlint.analyze(str(d / "config.json"), inputs=["input_ids=int64[2,64]"], seq_len=128)
    assert dict((t.name, t.shape) for t in g.inputs)["input_ids"] == (2, 128)
    g = wattlint.analyze(str(d / "config.json"))
    assert any(a.startswith("batch: micro-batch 1 (default; pass --batch-size)") for a in g.assumptions)
    enc = T.BertConfig(vocab_size=256, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                       intermediate_size=128, max_position_embeddings=128)
    dec = T.BertConfig(**{**enc.to_dict(), "max_position_embeddings": 512, "is_decoder": True,
                          "add_cross_attention": True})
    c = T.EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    c.architectures = ["EncoderDecoderModel"]
    (tmp_path / "b2b").mkdir()
    c.to_json_file(tmp_path / "b2b" / "config.json")
    g = wattlint.analyze(str(tmp_path / "b2b" / "config.json"))
    assert dict((t.name, t.shape) for t in g.inputs)["input_ids"] == (1, 128)


def test_a_malformed_special_float_is_an_input_error(tmp_path):
    import json

    from wattlint.frontends.hf import load_config
    from wattlint.types import InputError

    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "gpt2", "n_embd": {"__float__": ["x"]}}))
    with pytest.raises(InputError):
        load_config(str(p))
