"""Example tensors as inputs= across sources, and the small API / FLOP fixes of review s54 (helper F13); each
expected value is derived by hand (in the comments) or from an oracle (the same inputs named by spec string).

* an ONNX file binds tensors given by position to the graph's inputs in order (was: "--input 'input:0' is not an
  input of resnet50.onnx");
* a Hugging Face config binds them to its model class's forward parameters in order (was: "takes no input of that
  name");
* the retrace refusal shows dtype[shape] under the bound name, never a tensor's values or the 'input:0' key;
* a complex operand with a real one counts the real operations (mul 2, add 1), not the complex-complex ones;
* spec strings take complex64 / complex128.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import wattlint
from wattlint.frontends.inputs import parse_input_spec
from wattlint.types import InputError

torch = pytest.importorskip("torch")
nn = torch.nn
T = pytest.importorskip("wattlint.frontends.torch_ops")

ROOT = Path(__file__).resolve().parents[1]
GPT2_TINY = str(ROOT / "examples" / "gpt2-tiny.onnx")  # one input: input_ids int64[8, 256]


def _specs(g):
    return [(s.name, s.dtype, tuple(s.shape)) for s in g.inputs]


# ---- (1) ONNX: bound to the graph's inputs in order ------------------------------------------------------------

def test_an_onnx_graph_binds_a_positional_tensor_to_its_first_input():
    ref = wattlint.analyze(GPT2_TINY, inputs={"input_ids": "int64[2,256]"})  # the oracle: the same input by name
    for given in (torch.zeros(2, 256, dtype=torch.long), (torch.zeros(2, 256, dtype=torch.long),)):
        g = wattlint.analyze(GPT2_TINY, inputs=given)
        assert _specs(g) == [("input_ids", "int64", (2, 256))]
        assert g.total().flops == ref.total().flops


def test_the_reviews_resnet_repro_estimates():
    x = torch.randn(2, 3, 224, 224)
    est = wattlint.estimate(str(ROOT / "examples" / "resnet50.onnx"), inputs=x, gpu="h100", steps=1, lint=False)
    ref = wattlint.estimate(str(ROOT / "examples" / "resnet50.onnx"), inputs={"input": "float32[2,3,224,224]"},
                            gpu="h100", steps=1, lint=False)
    assert _specs(est.graph) == [("input", "float32", (2, 3, 224, 224))]
    assert est.per_step.time_s == ref.per_step.time_s


def test_more_positional_tensors_than_the_onnx_graph_takes_is_one_line():
    ids = torch.zeros(2, 256, dtype=torch.long)
    with pytest.raises(InputError) as e:
        wattlint.analyze(GPT2_TINY, inputs=(ids, ids))
    assert str(e.value) == "2 example tensors given by position; gpt2-tiny.onnx takes 1 input (input_ids)"


def test_a_positional_tensor_of_another_dtype_is_refused_as_a_named_one():
    with pytest.raises(InputError, match=r"the graph declares int64 for input 'input_ids'"):
        wattlint.analyze(GPT2_TINY, inputs=torch.zeros(2, 256))


# ---- (1) Hugging Face config: bound to the forward's parameters in order ---------------------------------------

_LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
          "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 100, "max_position_embeddings": 128}


@pytest.fixture
def llama(tmp_path):
    pytest.importorskip("transformers")

    def write(**extra):
        p = tmp_path / f"config{len(extra)}.json"
        p.write_text(json.dumps({**_LLAMA, **extra}))
        return str(p)
    return write


def test_a_hf_config_binds_positional_tensors_to_its_forward_parameters(llama):
    path = llama(architectures=["LlamaForCausalLM"])
    ids, mask = torch.zeros(2, 64, dtype=torch.long), torch.ones(2, 64, dtype=torch.long)
    # LlamaForCausalLM.forward(self, input_ids, attention_mask, ...): called by position, ids then the mask
    ref = wattlint.analyze(path, inputs={"input_ids": "int64[2,64]"})
    g = wattlint.analyze(path, inputs=ids)
    assert ("input_ids", "int64", (2, 64)) in _specs(g)
    assert g.total().flops == ref.total().flops
    ref2 = wattlint.analyze(path, inputs={"input_ids": "int64[2,64]", "attention_mask": "int64[2,64]"})
    g2 = wattlint.analyze(path, inputs=(ids, mask))
    assert {"input_ids", "attention_mask"} <= {n for n, _, _ in _specs(g2)}
    assert g2.total().flops == ref2.total().flops
    est = wattlint.estimate(path, inputs=ids, gpu="h100", steps=1, lint=False)  # the review's repro
    assert est.per_step.time_s > 0


def test_a_hf_config_without_architectures_binds_to_the_base_models_forward(llama):
    path = llama()  # AutoModel: LlamaModel.forward(self, input_ids, attention_mask, ...)
    g = wattlint.analyze(path, inputs=torch.zeros(2, 16, dtype=torch.long))
    assert ("input_ids", "int64", (2, 16)) in _specs(g)


def test_more_positional_tensors_than_the_hf_forward_takes_names_the_dict_form(llama):
    import inspect

    import transformers

    path = llama(architectures=["LlamaForCausalLM"])
    params = list(inspect.signature(transformers.LlamaForCausalLM.forward).parameters.values())[1:]
    n = next(i for i, p in enumerate(params) if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    ids = torch.zeros(2, 8, dtype=torch.long)
    with pytest.raises(InputError) as e:
        wattlint.analyze(path, inputs=(ids,) * (n + 1))
    msg = str(e.value)
    assert "\n" not in msg
    assert f"LlamaForCausalLM's forward takes {n} positional inputs" in msg
    assert "name them, e.g. inputs={'input_ids': tensor}" in msg


# ---- (3) the retrace refusal ------------------------------------------------------------------------------------

class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 16)

    def forward(self, x, m):
        return self.lin(x) * m


def test_the_retrace_refusal_shows_dtype_and_shape_under_the_bound_name():
    g = wattlint.analyze(_Two(), inputs=(torch.randn(4, 16), torch.randn(4, 16)))
    with pytest.raises(wattlint.ConfigError) as e:
        wattlint.estimate(g, inputs=(torch.full((4, 16), 0.4227),), gpu="h100", steps=1)
    msg = str(e.value)
    assert msg.startswith("inputs='x=float32[4,16]': the graph was traced with inputs='x=float32[4,16], "
                          "m=float32[4,16]'")
    assert "0.4227" not in msg and "tensor(" not in msg and "input:0" not in msg
    # more tensors than the graph has inputs: the extra one by its position (1-based)
    with pytest.raises(wattlint.ConfigError) as e:
        wattlint.estimate(g, inputs=(torch.randn(4, 16),) * 3, gpu="h100", steps=1)
    assert str(e.value).startswith("inputs='x=float32[4,16], m=float32[4,16], input 3=float32[4,16]'")
    # by name, a dict of tensors
    with pytest.raises(wattlint.ConfigError) as e:
        wattlint.estimate(g, inputs={"x": torch.randn(8, 16), "m": torch.randn(8, 16)}, gpu="h100", steps=1)
    assert str(e.value).startswith("inputs='x=float32[8,16], m=float32[8,16]': the graph was traced with")


# ---- (4) complex with real operands -------------------------------------------------------------------------------

def _meta(*shape, dtype=torch.float32):
    return torch.empty(shape, dtype=dtype, device="meta")


def test_a_complex_tensor_with_a_real_one_counts_the_real_operations():
    cf = torch.complex64
    z, r, w = _meta(10, 6, dtype=cf), _meta(10, 6), _meta(10, 6, dtype=cf)
    out = _meta(10, 6, dtype=cf)
    # per element: (a+bi) c = ac + (bc)i: 2 multiplies; (a+bi) + c = (a+c) + bi: 1 add; (a+bi) / c: 2 divides;
    # c / (a+bi) = (ca - cbi) / (a^2+b^2): a^2 + b^2 (3), ca and cb (2), two divides (2) = 7
    cases = ((torch.ops.aten.mul.Tensor, (z, r), 2), (torch.ops.aten.mul.Tensor, (r, z), 2),
             (torch.ops.aten.add.Tensor, (z, r), 1), (torch.ops.aten.sub.Tensor, (r, z), 1),
             (torch.ops.aten.div.Tensor, (z, r), 2), (torch.ops.aten.div.Tensor, (r, z), 7),
             (torch.ops.aten.mul.Tensor, (z, 2.0), 2),
             # complex with complex keeps LAPACK's counts: multiply 6, add 2
             (torch.ops.aten.mul.Tensor, (z, w), 6), (torch.ops.aten.add.Tensor, (z, w), 2),
             (torch.ops.aten.mul.Tensor, (z, 2j), 6))
    for op, args, per in cases:
        _, (c,) = T.cost_of(op, args, {}, out)
        assert c.flops == per * 60, (op, [getattr(a, "dtype", a) for a in args])


def test_a_traced_complex_times_real_multiply_counts_two_flops_per_element():
    class Mix(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(16, 4)

        def forward(self, z, r):
            return self.lin(torch.view_as_real(z * r).flatten(1))

    g = wattlint.analyze(Mix(), inputs=(torch.zeros(4, 8, dtype=torch.complex64), torch.zeros(4, 8)))
    fwd = [rec for rec in g.records if rec.op == "aten.mul.Tensor" and rec.phase == "forward"]
    assert fwd and fwd[0].flops == 2 * 4 * 8  # 32 complex x real products, 2 real multiplies each


# ---- (5) complex spec strings -----------------------------------------------------------------------------------

def test_spec_strings_take_complex_dtypes():
    assert parse_input_spec("x=complex64[4,8]").dtype == "complex64"
    assert parse_input_spec("x=complex128[2]").dtype == "complex128"
    assert parse_input_spec("x=cdouble[2]").dtype == "complex128"

    class Spectral(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(16, 4)

        def forward(self, x):
            return self.lin(torch.view_as_real(x).flatten(1))

    # the oracle: the example tensor of that dtype and shape
    ref = wattlint.analyze(Spectral(), inputs=torch.zeros(4, 8, dtype=torch.complex64))
    g = wattlint.analyze(Spectral(), inputs=["x=complex64[4,8]"])
    assert _specs(g) == [("x", "complex64", (4, 8))]
    assert g.total().flops == ref.total().flops
