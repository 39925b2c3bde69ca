"""Torch-module frontend defects from a walk (review s54): a dict output's other heads and the model's own 'loss',
torch.autocast regions written inside forward, packed sequences (lengths on the CPU; a batch the trace cannot
rebind), the float .item() note, gpt-oss's recorded attention, and three HF VLM refusals."""
import json
import textwrap

import pytest

torch = pytest.importorskip("torch")

import torch.nn as nn  # noqa: E402

import wattlint  # noqa: E402
from wattlint.types import InputError  # noqa: E402
from wattlint.types import OpKind, Phase, TensorSpec  # noqa: E402

MODELS = textwrap.dedent('''
    import torch, torch.nn as nn
    from torch.nn.utils.rnn import pack_padded_sequence


    class Det(nn.Module):
        def __init__(self, kind="dict"):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(256, 1024), nn.ReLU())
            self.cls = nn.Linear(1024, 10)
            self.box = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 4))
            self.kind = kind

        def forward(self, x, y=None, tgt=None):
            h = self.body(x)
            c, b = self.cls(h), self.box(h)
            if self.kind == "loss":
                loss = nn.functional.cross_entropy(c, y) + nn.functional.l1_loss(b, tgt)
                return {"loss": loss, "pred_logits": c, "pred_boxes": b}
            return {"logits": c, "boxes": b} if self.kind == "dict" else (c, b)


    def as_dict():
        return Det("dict"), (torch.randn(32, 256),)


    def as_tuple():
        return Det("tuple"), (torch.randn(32, 256),)


    def with_loss():
        return Det("loss"), (torch.randn(32, 256), torch.randint(0, 10, (32,)), torch.randn(32, 4))


    class MLP(nn.Module):
        def __init__(self, region):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 10))
            self.region = region

        def forward(self, x):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.region):
                return self.net(x).float()


    def with_autocast():
        return MLP(True), (torch.randn(16, 64),)


    def without_autocast():
        return MLP(False), (torch.randn(16, 64),)


    class Part(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(32, 10)

        def forward(self, x):
            with torch.autocast("cuda", dtype=torch.float16):
                h = self.a(x)
                with torch.autocast("cuda", enabled=False):
                    h = self.b(h.float())
            return self.c(h)


    def part():
        return Part(), (torch.randn(8, 32),)


    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(32, 64, num_layers=2, bidirectional=True, batch_first=True)
            self.head = nn.Linear(128, 4)

        def forward(self, x, lengths):
            if torch.is_tensor(lengths):
                lengths = lengths.cpu()
            out, (h, c) = self.rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
            return self.head(torch.cat([h[-2], h[-1]], -1))


    def tensor_lengths():
        return Enc(), (torch.randn(4, 20, 32), torch.tensor([20, 15, 10, 5]))


    def full_list_lengths():
        return Enc(), (torch.randn(4, 20, 32), [20, 20, 20, 20])


    def list_lengths():
        return Enc(), (torch.randn(4, 20, 32), [20, 15, 10, 5])


    class Item(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.head = nn.Linear(16, 16), nn.Linear(16, 4)

        def forward(self, x):
            for _ in range(int(x.abs().mean().item() * 3) + 1):
                x = torch.tanh(self.a(x))
            return self.head(x)


    def item():
        return Item(), (torch.randn(4, 16),)
''')


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    p = tmp_path_factory.mktemp("s54") / "models.py"
    p.write_text(MODELS)
    return str(p)


def _bwd_matmul(g, prefix: str) -> int:
    return sum(r.flops for r in g.records if r.phase is Phase.BACKWARD and r.kind is OpKind.MATMUL
               and r.module.startswith(prefix))


# (1) dict outputs: every head trains; the model's own 'loss' is the loss
# parameters by hand: body 256 x 1024 + 1024 = 263,168; cls 1024 x 10 + 10 = 10,250; box 1024 x 1024 + 1024
# = 1,049,600 and 1024 x 4 + 4 = 4,100: 1,327,118 in all, every one reached by the real training loss
ALL_PARAMS = 263_168 + 10_250 + 1_049_600 + 4_100
# the box head's first Linear in backward at batch 32: grad input [32,1024] @ [1024,1024] and grad weight
# [1024,32] @ [32,1024], 2 x 32 x 1024 x 1024 FLOPs each
BOX0_BWD = 2 * (2 * 32 * 1024 * 1024)


@pytest.mark.parametrize("kind", ["as_dict", "with_loss", "as_tuple"])
def test_every_head_is_trained(src, kind):
    g = wattlint.analyze(f"{src}:{kind}")
    assert g.model.params == ALL_PARAMS
    assert g.model.trainable_params == ALL_PARAMS, g.assumptions  # was 273,418 for a dict (box head untrained)
    assert "idle_params" not in g.extra
    assert _bwd_matmul(g, "box.0") == BOX0_BWD


def test_dict_loss_note_names_the_other_output(src):
    g = wattlint.analyze(f"{src}:as_dict")
    note = next(a for a in g.assumptions if a.startswith("loss:"))
    assert note.startswith("loss: cross-entropy on the 10-way logits") and "plus the sum of boxes" in note, note


def test_model_own_loss_is_backpropagated(src):
    g = wattlint.analyze(f"{src}:with_loss")
    note = next(a for a in g.assumptions if a.startswith("loss:"))
    assert note.startswith("loss: the model's own 'loss' output"), note
    # its own loss is cross-entropy + L1 inside forward: no second cross-entropy on pred_logits is added after it
    # (one log_softmax forward, the model's)
    assert sum(1 for r in g.records if r.phase is Phase.FORWARD and r.op == "aten._log_softmax.default") == 1


# (2) torch.autocast written inside forward
def test_autocast_region_in_forward_is_honoured(src):
    g = wattlint.analyze(f"{src}:with_autocast")
    ref = wattlint.analyze(f"{src}:without_autocast", precision="bf16")  # --precision's emulation: the oracle
    mm = [r for r in g.records if r.kind is OpKind.MATMUL and r.phase is not Phase.OPTIMIZER]
    assert mm and {r.dtype for r in mm} == {"bfloat16"}, {(r.op, r.dtype) for r in mm}  # was float32
    key = sorted((r.phase.value, r.op, r.dtype, r.shapes, r.flops) for r in mm)
    assert key == sorted((r.phase.value, r.op, r.dtype, r.shapes, r.flops) for r in ref.records
                         if r.kind is OpKind.MATMUL and r.phase is not Phase.OPTIMIZER)
    assert g.precision == "bf16"
    assert any(a.startswith("precision: the model's own torch.autocast('cuda') regions") for a in g.assumptions)
    off = wattlint.analyze(f"{src}:without_autocast")  # enabled=False: fp32 as before
    assert {r.dtype for r in off.records if r.kind is OpKind.MATMUL} == {"float32"}
    assert off.precision != "bf16"


def test_autocast_region_nested_disabled_and_outside_stay_fp32(src):
    g = wattlint.analyze(f"{src}:part")
    dt = {(r.module, r.phase.value, r.dtype) for r in g.records if r.kind is OpKind.MATMUL
          and r.phase is not Phase.OPTIMIZER}
    # a: inside the float16 region; b: inside a nested enabled=False region; c: after the region
    assert dt == {("a", "forward", "float16"), ("a", "backward", "float16"), ("b", "forward", "float32"),
                  ("b", "backward", "float32"), ("c", "forward", "float32"), ("c", "backward", "float32")}, dt


# (3) packed sequences
def test_tensor_lengths_on_cpu_are_traced_as_full_sequences(src):
    g = wattlint.analyze(f"{src}:tensor_lengths")  # was: 'Cannot copy out of meta tensor ... .cuda()'
    full = wattlint.analyze(f"{src}:full_list_lengths")  # the same step with every length given as 20
    fwd = [(r.op, r.shapes, r.flops) for r in g.records if r.phase is Phase.FORWARD and r.kind is OpKind.MATMUL]
    assert fwd == [(r.op, r.shapes, r.flops) for r in full.records
                   if r.phase is Phase.FORWARD and r.kind is OpKind.MATMUL]
    note = next(a for a in g.assumptions if a.startswith("data-dependent reads"))
    assert "every sequence 20 long" in note, note


def test_tensor_lengths_follow_batch_size(src):
    g4 = wattlint.analyze(f"{src}:tensor_lengths")
    g16 = wattlint.analyze(f"{src}:tensor_lengths", batch_size=16)
    # every matmul of the LSTM and the head is linear in the batch: 16 / 4 = 4x
    f4 = sum(r.flops for r in g4.records if r.phase is Phase.FORWARD and r.kind is OpKind.MATMUL)
    f16 = sum(r.flops for r in g16.records if r.phase is Phase.FORWARD and r.kind is OpKind.MATMUL)
    assert f16 == 4 * f4


def test_list_lengths_with_batch_size_is_refused(src):
    with pytest.raises(InputError) as e:  # was: micro-batch 16 reported, the step traced at 4
        wattlint.analyze(f"{src}:list_lengths", batch_size=16)
    assert "kept the example inputs' batch of 4" in str(e.value) and "\n" not in str(e.value)
    wattlint.analyze(f"{src}:list_lengths", batch_size=4)  # the example's own batch: fine


# (4) float .item()
def test_float_item_note_says_what_it_was_taken_as(src):
    g = wattlint.analyze(f"{src}:item")
    note = next(a for a in g.assumptions if a.startswith("data-dependent reads"))
    assert "(float->0.0 x1): floating-point reads" in note and "as 0.0" in note, note
    assert not note.rstrip().endswith(":"), note


# (5) gpt-oss: the attention that ran is recorded
def test_gpt_oss_records_eager_attention(tmp_path):
    pytest.importorskip("transformers")
    from wattlint.frontends import hf

    cfg = {"model_type": "gpt_oss", "architectures": ["GptOssForCausalLM"], "hidden_size": 64,
           "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 16, "num_local_experts": 2, "num_experts_per_tok": 1, "vocab_size": 100,
           "sliding_window": 32, "layer_types": ["full_attention"], "max_position_embeddings": 256}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    g = hf.analyze_config(str(p), micro_batch=1, seq_len=32)
    assert g.extra["attention"] == "eager" and g.extra["attention_asked"] == "sdpa"  # was "sdpa"
    g = hf.analyze_config(str(p), micro_batch=1, seq_len=32, attention="eager")
    assert g.extra["attention"] == "eager" and "attention_asked" not in g.extra


# (6) HF VLM refusals: one line each, naming the cause
def test_aya_vision_odd_patch_grid_is_refused():
    transformers = pytest.importorskip("transformers")
    from wattlint.frontends import hf

    cfg = transformers.AutoConfig.for_model("aya_vision")  # 384 / 14 = 27 patches per side, downsample_factor 2
    with pytest.raises(InputError) as e:
        hf._check_pixel_shuffle(cfg)
    assert "27 patches per side, not a multiple of downsample_factor 2" in str(e.value)
    # 27 - 27 % 2 = 26 patches of 14 pixels: image_size 364
    assert "image_size 364" in str(e.value)
    cfg.vision_config.image_size = 364
    hf._check_pixel_shuffle(cfg)  # 26 patches per side: pixel-shuffled 2 x 2


def test_missing_library_names_the_install():
    from wattlint.frontends import hf

    e = ImportError("TimmWrapperModel requires the timm library but it was not found in your environment. You can "
                    "install it with pip:\n`pip install timm`. Please note that you may need to restart your runtime")
    assert hf._missing_library(e) == "it needs the timm library, which is not installed: pip install timm"
    assert hf._missing_library(ImportError("No module named 'x'")) is None


def test_lfm2_vl_default_images_are_refused(tmp_path):
    transformers = pytest.importorskip("transformers")
    from wattlint.frontends import hf

    try:
        cfg = transformers.AutoConfig.for_model(
            "lfm2_vl", text_config={"model_type": "lfm2", "hidden_size": 64, "intermediate_size": 128,
                                    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                    "vocab_size": 100, "layer_types": ["full_attention", "conv"]},
            vision_config={"model_type": "siglip2_vision_model", "hidden_size": 32, "intermediate_size": 64,
                           "num_hidden_layers": 1, "num_attention_heads": 2, "num_patches": 64},
            projector_hidden_size=32)
    except (ValueError, KeyError):
        pytest.skip("this transformers has no lfm2_vl")
    d = cfg.to_dict()
    d["architectures"] = ["Lfm2VlForConditionalGeneration"]
    p = tmp_path / "config.json"
    p.write_text(json.dumps(d, default=str))
    with pytest.raises(InputError) as e:  # was: 'a and b must have same reduction dim'
        hf.analyze_config(str(p), micro_batch=1, seq_len=16)
    assert "siglip2_vision_model" in str(e.value) and "--input input_ids=int64[1,16]" in str(e.value)
    g = hf.analyze_config(str(p), micro_batch=1, seq_len=16, inputs={"input_ids": TensorSpec("input_ids", "int64", (1, 16))})
    assert g.model.params > 0


def test_nn_module_unchanged_by_trace():
    # the autocast patch is undone after a trace: torch.autocast keeps its own methods
    before = (torch.amp.autocast_mode.autocast.__init__, torch.amp.autocast_mode.autocast.__enter__)
    m = nn.Linear(4, 2)
    from wattlint.frontends import torch as tf
    tf.trace(m, (torch.randn(3, 4),))
    assert (torch.amp.autocast_mode.autocast.__init__, torch.amp.autocast_mode.autocast.__enter__) == before
