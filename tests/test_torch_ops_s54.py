"""Plain-torch frontend gaps from the s54 walk (helper F8), each expected value derived by hand or from an oracle.

* inputs= an example tensor / a tuple of them (the API's own refusal suggested one), bound positionally;
* torch.vdot (spectral_norm's power iteration) read its argument under dot's name ('tensor' for 'other');
* complex matmul / elementwise in real FLOPs (LAPACK's counts: complex multiply 6, add 2: multiply-add 8);
* complex parameters' AdamW state as wide as the parameters (torch: zeros_like(param));
* FFTs (5 N log2 N per complex transform, half for real ones) and weight_norm costed instead of unsupported.
"""

from __future__ import annotations

import math

import pytest

import wattlint
from wattlint import api
from wattlint import costs as C
from wattlint.report.json_out import to_dict

torch = pytest.importorskip("torch")
nn = torch.nn
T = pytest.importorskip("wattlint.frontends.torch_ops")


def _mlp():
    return nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 10))


def _records(g, op):
    return [r for r in g.records if r.op == op]


# ---- (1) inputs= example tensors ------------------------------------------------------------------------------

def test_an_example_tensor_or_a_tuple_of_them_estimates_as_its_spec():
    # the same step as the spec string of the tensor's dtype and shape, under the Sequential's own input name
    ref = wattlint.estimate(_mlp(), gpu="a100", steps=100, inputs={"input": "float32[4,128]"}, lint=False)
    for given in (torch.randn(4, 128), (torch.randn(4, 128),), [torch.randn(4, 128)]):
        est = wattlint.estimate(_mlp(), gpu="a100", steps=100, inputs=given, lint=False)
        assert est.per_step.time_s == ref.per_step.time_s
        assert est.graph.total().flops == ref.graph.total().flops
        assert [(s.name, s.dtype, s.shape) for s in est.graph.inputs] == [("input", "float32", (4, 128))]


class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x, scale):
        return self.lin(x) * scale


class _Star(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, *xs):
        return self.lin(xs[0]) * xs[1]


def test_a_tuple_of_example_tensors_binds_by_position():
    x, s = torch.randn(3, 8), torch.randn(3, 1)
    g = api.trace(_Scaled(), api.validate_options({"inputs": (x, s)}))
    assert [(i.name, i.shape) for i in g.inputs] == [("x", (3, 8)), ("scale", (3, 1))]
    # a forward taking *args has no names: bound by position as given ([3, 8] first: the Linear runs on it)
    g = api.trace(_Star(), api.validate_options({"inputs": (x, s)}))
    assert [(i.name, i.shape) for i in g.inputs] == [("input:0", (3, 8)), ("input:1", (3, 1))]
    mm = [r for r in g.records if r.op.startswith("aten.addmm") and r.phase.value == "forward"]
    assert mm and mm[0].flops == 2 * 3 * 8 * 8 + 3 * 8  # [3,8] @ [8,8] + bias: the first tensor reached the Linear


def test_an_example_tensor_for_a_file_source_binds_by_position(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import torch.nn as nn\n\ndef m():\n    return nn.Linear(16, 4)\n")
    g = api.trace(f"{src}:m", api.validate_options({"inputs": torch.randn(5, 16)}))
    assert [(i.name, i.shape) for i in g.inputs] == [("input:0", (5, 16))]
    mm = [r for r in g.records if r.op.startswith("aten.addmm") and r.phase.value == "forward"]
    assert mm[0].flops == 2 * 5 * 16 * 4 + 5 * 4


@pytest.mark.parametrize("bad", [5, [torch.randn(2, 2), "x=float32[2]"], object()])
def test_a_malformed_inputs_names_every_accepted_form_on_one_line(bad):
    with pytest.raises(wattlint.InputError) as e:
        wattlint.estimate(_mlp(), gpu="a100", steps=1, inputs=bad, lint=False)
    msg = str(e.value)
    assert msg.startswith("inputs= ") and "\n" not in msg
    for form in ("spec strings", "a dict of name -> spec string", "TensorSpec", "example tensor",
                 "a tuple / list of them"):
        assert form in msg


# ---- (2) vdot / spectral norm; our own formula's failure ------------------------------------------------------

def _meta(*shape, dtype=torch.float32):
    return torch.empty(shape, dtype=dtype, device="meta")


def test_vdot_is_costed_under_its_own_argument_name():
    a, b = _meta(64), _meta(64)
    status, (c,) = T.cost_of(torch.ops.aten.vdot.default, (a, b), {}, _meta())
    assert status == "handled"
    assert (c.flops, c.bytes_read, c.bytes_written) == (2 * 64, 2 * 64 * 4, 4)  # 64 multiply-adds, 2 vectors in
    ca, cb = _meta(64, dtype=torch.complex64), _meta(64, dtype=torch.complex64)
    _, (cc,) = T.cost_of(torch.ops.aten.vdot.default, (ca, cb), {}, _meta(dtype=torch.complex64))
    assert cc.flops == 8 * 64  # conj(a) . b: 64 complex multiply-adds, 4 real mul + 4 real add each


def test_a_spectral_norm_discriminator_traces_with_no_unsupported_op():
    from torch.nn.utils.parametrizations import spectral_norm

    m = nn.Sequential(spectral_norm(nn.Linear(64, 64)), nn.LeakyReLU(0.2), nn.Linear(64, 1))
    g = api.trace(m, api.validate_options({"inputs": torch.randn(4, 64)}))
    vd = _records(g, "aten.vdot.default")
    assert vd and all(r.flops == 2 * 64 for r in vd)  # sigma = vdot(u, W v): u and W v of 64
    assert not g.unsupported()


def test_a_failing_cost_formula_is_our_error_not_the_users_input(monkeypatch):
    def broken(a, out):
        return a["no_such_argument"]

    monkeypatch.setitem(T.HANDLERS, "mm", broken)
    with pytest.raises(T.OpCostError, match=r"aten\.mm\.default failed \(KeyError: 'no_such_argument'\): a wattlint"):
        T.cost_of(torch.ops.aten.mm.default, (_meta(2, 3), _meta(3, 4)), {}, _meta(2, 4))
    assert not issubclass(T.OpCostError, wattlint.WattlintError)  # the CLI's internal error (exit 3), not exit 2


# ---- (3) complex arithmetic and optimizer state ----------------------------------------------------------------

def test_complex_matmul_and_elementwise_count_real_flops():
    m, k, n = 64, 512, 256
    cf = torch.complex64
    _, (mm,) = T.cost_of(torch.ops.aten.mm.default, (_meta(m, k, dtype=cf), _meta(k, n, dtype=cf)), {},
                         _meta(m, n, dtype=cf))
    assert mm.flops == 8 * m * k * n  # 4 real mul + 4 real add per complex multiply-add
    _, (rmm,) = T.cost_of(torch.ops.aten.mm.default, (_meta(m, k), _meta(k, n)), {}, _meta(m, n))
    assert rmm.flops == 2 * m * k * n
    _, (am,) = T.cost_of(torch.ops.aten.addmm.default, (_meta(n, dtype=cf), _meta(m, k, dtype=cf),
                                                        _meta(k, n, dtype=cf)), {}, _meta(m, n, dtype=cf))
    assert am.flops == 8 * m * k * n + 2 * m * n  # + one complex add (2 real) per output element
    x, y = _meta(10, 6, dtype=cf), _meta(10, 6, dtype=cf)
    for op, per in ((torch.ops.aten.mul.Tensor, 6), (torch.ops.aten.add.Tensor, 2), (torch.ops.aten.sub.Tensor, 2),
                    (torch.ops.aten.div.Tensor, 11)):
        _, (c,) = T.cost_of(op, (x, y), {}, _meta(10, 6, dtype=cf))
        assert c.flops == per * 60, op
    _, (r,) = T.cost_of(torch.ops.aten.mul.Tensor, (_meta(10, 6), _meta(10, 6)), {}, _meta(10, 6))
    assert r.flops == 60


def test_complex_parameters_keep_adamw_state_as_wide_as_themselves():
    class Spectral(nn.Module):  # an FNO-like layer: complex weights beside a real convolution
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(16, 16, 6, 6, dtype=torch.cfloat))
            self.c = nn.Conv2d(16, 16, 1)

        def forward(self, x):
            f = torch.fft.rfft2(x)[..., :6, :6]
            y = torch.einsum("bixy,ioxy->boxy", f, self.w)
            return self.c(x) + torch.fft.irfft2(y, s=x.shape[-2:])

    # oracle: torch's own AdamW state after one real step on the CPU (exp_avg, exp_avg_sq; not the 0-d step counts)
    real = Spectral()
    opt = torch.optim.AdamW(real.parameters())
    real(torch.randn(2, 16, 12, 12)).sum().backward()
    opt.step()
    state_bytes = sum(t.numel() * t.element_size() for st in opt.state.values() for t in st.values() if t.dim())
    assert state_bytes == 2 * sum(p.numel() * p.element_size() for p in real.parameters())
    est = wattlint.estimate(Spectral(), gpu="a100", steps=1, inputs=torch.randn(2, 16, 12, 12), lint=False)
    assert to_dict(est)["memory"]["breakdown"]["optimizer_state"] == state_bytes


# ---- (4) FFTs ----------------------------------------------------------------------------------------------------

def test_rfft2_and_irfft2_of_an_image_batch_by_hand():
    class F(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return torch.fft.irfft2(torch.fft.rfft2(self.c(x)), s=x.shape[-2:])

    b, ch, h, w = 2, 4, 16, 32
    g = api.trace(F(), api.validate_options({"inputs": torch.randn(b, 3, h, w)}))
    n = h * w  # 512 points per 2-D transform, log2 = 9; B x C = 8 transforms
    (r2c,) = [r for r in _records(g, "aten._fft_r2c.default") if r.phase.value == "forward"]
    assert r2c.status.value == "handled"
    assert r2c.flops == 8 * 2.5 * n * 9 == 92_160  # real input: half of 5 N log2 N
    assert r2c.bytes_read == b * ch * h * w * 4  # fp32 in
    assert r2c.bytes_written == b * ch * h * (w // 2 + 1) * 8  # one-sided complex64 out [2, 4, 16, 17]
    (c2r,) = [r for r in _records(g, "aten._fft_c2r.default") if r.phase.value == "forward"]
    # the inverse (norm="backward") scales by 1/N: one multiply per real output value
    assert c2r.flops == 92_160 + b * ch * h * w
    assert (c2r.bytes_read, c2r.bytes_written) == (b * ch * h * (w // 2 + 1) * 8, b * ch * h * w * 4)
    assert "aten._fft_r2c.default" not in g.unsupported() and "aten._fft_c2r.default" not in g.unsupported()


def test_complex_fft_along_one_dim_by_hand():
    x = _meta(3, 5, 64, dtype=torch.complex64)
    _, (c,) = T.cost_of(torch.ops.aten._fft_c2c.default, (x, [2], 0, True), {}, _meta(3, 5, 64, dtype=torch.complex64))
    assert c.flops == 15 * 5 * 64 * 6  # 15 transforms of 64 points, log2 64 = 6, 5 N log2 N each
    assert (c.bytes_read, c.bytes_written) == (3 * 5 * 64 * 8, 3 * 5 * 64 * 8)
    # a length-1 transform does no arithmetic; a non-power-of-two length still counts 5 N log2 N (FFTW's convention)
    assert C.fft((4, 1), (4, 1), [1], "complex64", "complex64").flops == 0
    assert C.fft((2, 12), (2, 12), [1], "complex64", "complex64").flops == round(2 * 5 * 12 * math.log2(12))


# ---- (5) weight_norm -------------------------------------------------------------------------------------------

def test_weight_norm_forward_and_backward_by_hand():
    from torch.nn.utils.parametrizations import weight_norm

    m = nn.Sequential(weight_norm(nn.Conv1d(8, 16, 5)), nn.Tanh())
    g = api.trace(m, api.validate_options({"inputs": torch.randn(2, 8, 32)}))
    n, rows = 16 * 8 * 5, 16  # v [16, 8, 5], one norm per output channel
    (fwd,) = _records(g, "aten._weight_norm_interface.default")
    # per element: square, add into the row's sum, scale; per row: sqrt (2) and g / norm
    assert fwd.flops == 3 * n + 3 * rows == 1968
    assert (fwd.bytes_read, fwd.bytes_written) == ((n + rows) * 4, (n + rows) * 4)  # v, g in; w, norms out
    (bwd,) = _records(g, "aten._weight_norm_interface_backward.default")
    # per element: grad_w * v and its add, then v * c, a subtract, a scale; per row: norm^2, s / norm^2, g / norm,
    # grad_g
    assert bwd.flops == 5 * n + 4 * rows == 3264
    assert (bwd.bytes_read, bwd.bytes_written) == ((2 * n + 2 * rows) * 4, (n + rows) * 4)
    assert not g.unsupported()


def test_costs_doc_mirrors_the_new_constants():
    from pathlib import Path
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "COSTS.md").read_text()

    def row(name):
        m = re.search(r"^\| `" + re.escape(name) + r"` \|([^\n]*)$", doc, re.M)
        assert m, name
        return [int(x) for x in re.findall(r"-?\d+", m.group(1))]

    for k, v in C.COMPLEX_ELEMENTWISE_FLOPS.items():
        assert row(f"complex {k}") == [v], k
    assert row("COMPLEX_MAC_FLOPS") == [C.COMPLEX_MAC_FLOPS]
    assert row("FFT_FLOPS_PER_POINT_LOG2") == [C.FFT_FLOPS_PER_POINT_LOG2]
    for k, v in C.WEIGHT_NORM_FLOPS.items():
        assert row(f"weight_norm {k}") == list(v), k


def test_a_failing_cost_formula_exits_3_through_the_cli(run_cli, monkeypatch, tmp_path):
    # the trace's catch-all turned every exception of the model's forward into 'tracing the model failed' (exit 2,
    # the user's input); a formula of wattlint's own op table failing is an internal error (exit 3)
    def broken(a, out):
        return a["no_such_argument"]

    monkeypatch.setitem(T.HANDLERS, "mm", broken)
    src = tmp_path / "m.py"
    src.write_text("import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n"
                   "        super().__init__()\n        self.w = nn.Parameter(torch.zeros(8, 4))\n\n"
                   "    def forward(self, x):\n        return torch.mm(x, self.w)\n\n\ndef make():\n    return M()\n")
    code, out, err = run_cli("analyze", f"{src}:make", "--input", "x=float32[2,8]")
    assert code == 3 and "internal error" in err, err
