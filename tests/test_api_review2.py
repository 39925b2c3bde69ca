"""Second API review: concurrent estimates, options a traced graph cannot take, dict inputs, the caller's module
left as it was, estimate_many's energy-model search path, and bad predictor= / config= values."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import wattlint  # noqa: E402
from wattlint import api  # noqa: E402
from wattlint.types import ConfigError, InputError  # noqa: E402


def _key(e):
    """What an estimate says, for comparing two runs of the same request."""
    return (e.per_step.flops, e.per_step.time_s, e.per_step.gpu_energy_j, e.memory.peak_bytes_per_gpu,
            e.total.energy_kwh)


# ---- 1. concurrent estimates ------------------------------------------------------------------------------------

class _Gate:
    """Orders two concurrent traces: the first waits (up to 1 s) in its forward for the second to reach its own
    forward, then finishes first; the second finishes after it. Without one trace at a time, both hold the
    process-wide swaps at once and the second, which saved the first's stand-ins, restores them last."""

    def __init__(self):
        self.on = False
        self.first_in = threading.Event()
        self.second_in = threading.Event()

    def first(self):
        if self.on:
            self.first_in.set()
            self.second_in.wait(1.0)

    def second(self):
        if self.on:
            self.second_in.set()
            threading.Event().wait(0.3)  # the first trace ends before this one


class _Attn(nn.Module):
    def __init__(self, gate, layers=3):
        super().__init__()
        self.gate = gate
        self.q = nn.ModuleList([nn.Linear(64, 64) for _ in range(layers)])

    def forward(self, x):
        self.gate()
        for q in self.q:
            h = q(x).view(4, 16, 4, 16).transpose(1, 2)
            y = F.scaled_dot_product_attention(h, h, h, is_causal=True)
            x = x + y.transpose(1, 2).reshape(4, 16, 64)
        if not bool(torch.isfinite(x).all()):  # a finite check (torch.isfinite is swapped while traced)
            x = x * 0
        print("forward")  # the model's own print (stdout is redirected while traced)
        return x


def _one(gate_fn, precision):
    with torch.device("meta"):
        m = _Attn(gate_fn)
    return _key(wattlint.estimate(m, gpu="h100", steps=10, inputs=["x=float32[4,16,64]"], precision=precision,
                                  lint=False))


def test_concurrent_estimates_give_the_sequential_results_and_leave_nothing_behind():
    gate = _Gate()
    jobs = [(gate.first, "fp32"), (gate.second, "bf16")]
    seq = [_one(*j) for j in jobs]  # the oracle: the same requests one after the other (gate off)
    stdout, isfinite, tensor_isfinite = sys.stdout, torch.isfinite, torch.Tensor.isfinite
    try:
        for _ in range(2):
            gate.on = True
            gate.first_in.clear()
            gate.second_in.clear()
            with ThreadPoolExecutor(2) as ex:
                a = ex.submit(_one, *jobs[0])
                assert gate.first_in.wait(60)  # the first trace is in its forward before the second starts
                b = ex.submit(_one, *jobs[1])
                got = [a.result(), b.result()]
            gate.on = False
            assert sys.stdout is stdout
            assert torch.isfinite is isfinite and torch.Tensor.isfinite is tensor_isfinite
            assert got == seq
    finally:  # a failure leaves the rest of the session as it found it
        sys.stdout, torch.isfinite, torch.Tensor.isfinite = stdout, isfinite, tensor_isfinite


# ---- 2. a traced graph takes no other frontend option ------------------------------------------------------------

def _graph():
    with torch.device("meta"):
        m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    return m, wattlint.analyze(m, inputs=["input=float32[8,16]"])


@pytest.mark.parametrize("opt, match", [
    ({"optimizer": "sgd"}, r"optimizer='sgd': the graph was traced with optimizer='adamw'.*trace it again"),
    ({"optimizer_impl": "fused"}, r"traced with optimizer_impl='foreach'.*trace it again"),
    ({"torch_version": "1.13"}, r"torch_version='1.13': the graph does not record.*trace it again"),
    ({"attention": "eager"}, r"attention='eager'.*trace it again"),
    ({"capacity_factor": 2.0}, r"capacity_factor=2.0.*trace it again"),
    ({"inputs": ["input=float32[2,16]"]}, r"traced with inputs='input=float32\[8,16\]'.*trace it again"),
    ({"inputs": {"input": "float32[2,16]"}}, r"traced with inputs=.*trace it again"),
])
def test_a_frontend_option_other_than_the_graph_was_traced_with_is_refused(opt, match):
    _, g = _graph()
    with pytest.raises(ConfigError, match=match):
        wattlint.estimate(g, gpu="h100", steps=10, lint=False, **opt)
    with pytest.raises(ConfigError, match=match):
        api.estimate_many(g, ["h100", "a100"], steps=10, lint=False, **opt)


def test_the_values_a_graph_was_traced_with_are_taken_and_priced_as_the_source():
    m, g = _graph()
    same = dict(optimizer="adamw", optimizer_impl="foreach", inputs={"input": "float32[8,16]"})
    got = wattlint.estimate(g, gpu="h100", steps=10, lint=False, **same)
    oracle = wattlint.estimate(m, gpu="h100", steps=10, lint=False, **same)  # the source estimated
    assert _key(got) == _key(oracle)
    # the plan's own options still apply to a graph (precision, the global batch)
    assert wattlint.estimate(g, gpu="h100", steps=10, precision="bf16", batch_size=16, lint=False).plan.precision \
        == "bf16"


# ---- 3. inputs as analyze takes them -----------------------------------------------------------------------------

def test_estimate_takes_inputs_as_a_dict_of_specs_or_tensors():
    m = nn.Linear(16, 4)
    oracle = _key(wattlint.estimate(m, gpu="h100", steps=10, inputs=["input=float32[8,16]"], lint=False))
    for inputs in ({"input": "float32[8,16]"}, {"input": "input=float32[8,16]"}, {"input": torch.zeros(8, 16)}):
        assert _key(wattlint.estimate(m, gpu="h100", steps=10, inputs=inputs, lint=False)) == oracle
        assert _key(api.estimate_many(m, ["h100"], steps=10, inputs=inputs, lint=False)[0]) == oracle
    # an InputError, as track() raises for the same spec and the README says (review s54: it was a ConfigError)
    with pytest.raises(InputError, match=r"inputs= .*expected input specs like"):
        wattlint.estimate(m, gpu="h100", steps=10, inputs={"input": "float32(8,16)"})
    with pytest.raises(InputError, match=r"inputs= .*expected input specs like"):
        wattlint.analyze(m, inputs={"input": "float32(8,16)"})
    with pytest.raises(InputError, match=r"input 'input': expected a TensorSpec"):
        wattlint.estimate(m, gpu="h100", steps=10, inputs={"input": 3})


# ---- 4. the caller's module is left as it was ----------------------------------------------------------------------

class _Blk(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(16, 16)

    def forward(self, x):
        return torch.relu(self.l(x))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([_Blk() for _ in range(2)])
        self.gru = nn.GRU(16, 16, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        x, _ = self.gru(x)
        return self.head(x)


def _meta_net():
    with torch.device("meta"):
        return _Net()


def _state(m):
    return ({n: mm.training for n, mm in m.named_modules()},
            [n for n, mm in m.named_modules() if "forward" in mm.__dict__],
            [n for n, p in m.named_parameters() if p.grad is not None])


@pytest.mark.parametrize("opt", [{"activation_checkpointing": True}, {"torch_version": "1.13"}, {}])
def test_a_meta_module_is_left_as_it_was_and_estimates_as_a_fresh_one(opt):
    def est(m):
        return _key(wattlint.estimate(m, gpu="h100", steps=10, inputs=["x=float32[4,8,16]"], lint=False, **opt))

    oracle = est(_meta_net())  # a fresh module each time
    m = _meta_net()
    m.eval()
    m.head.train()  # a mixed state, as the caller left it
    before = _state(m)
    assert est(m) == oracle
    assert _state(m) == before  # modes, no instance forward, no .grad
    assert est(m) == oracle  # and again: nothing of the first estimate is accumulated into
    assert _state(m) == before


def test_a_grad_the_caller_left_is_kept_and_not_accumulated_into():
    oracle = _key(wattlint.estimate(_meta_net(), gpu="h100", steps=10, inputs=["x=float32[4,8,16]"],
                                    torch_version="1.13", lint=False))
    m = _meta_net()
    g = torch.zeros_like(m.head.weight)
    m.head.weight.grad = g
    got = _key(wattlint.estimate(m, gpu="h100", steps=10, inputs=["x=float32[4,8,16]"], torch_version="1.13",
                                 lint=False))
    assert got == oracle
    assert m.head.weight.grad is g and m.head.bias.grad is None


# ---- 5. estimate_many searches the energy models as estimate does ----------------------------------------------------

def _searched(e):
    return [a for a in e.assumptions if a.startswith("energy models searched in order")]


def test_estimate_many_searches_the_configured_and_given_models_dir(tmp_path):
    from wattlint.config import load_config

    (tmp_path / "mm").mkdir()
    (tmp_path / "given").mkdir()
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\nmodels-dir = "mm"\n')
    cfg = load_config(tmp_path)
    m = nn.Linear(16, 4)
    kw = dict(steps=10, inputs=["input=float32[8,16]"], lint=False, config=cfg)
    for extra in ({}, {"models_dir": str(tmp_path / "given")}):
        oracle = _searched(wattlint.estimate(m, gpu="h100", **kw, **extra))
        got = _searched(api.estimate_many(m, ["h100"], **kw, **extra)[0])
        assert got == oracle and "[tool.wattlint] models-dir" in got[0]
        assert ("--models-dir" in got[0]) == bool(extra)


# ---- 6. predictor= / config= of the wrong type -------------------------------------------------------------------------

@pytest.mark.parametrize("kw, match", [({"predictor": "x"}, r"^predictor='x': expected an energy model"),
                                       ({"config": "x"}, r"^config='x': expected a wattlint.config.Config")])
def test_a_bad_predictor_or_config_is_one_config_error(kw, match):
    m = nn.Linear(16, 4)
    with pytest.raises(ConfigError, match=match) as e:
        wattlint.estimate(m, gpu="h100", steps=10, inputs=["input=float32[8,16]"], **kw)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=match):
        api.estimate_many(m, ["h100"], steps=10, inputs=["input=float32[8,16]"], **kw)


def test_the_options_a_graph_was_traced_with_pass_whatever_the_batch():
    """Review: analyze(src, inputs=[x 8 x 16], batch_size=32) then estimate(g, the same options) was refused: the
    graph's input had been traced at the plan's micro-batch (32 x 16). The batch dim aside, they are the same;
    another feature size is still refused."""
    import torch.nn as nn

    import wattlint
    from wattlint.types import ConfigError

    g = wattlint.analyze(nn.Linear(16, 4), inputs=["x=float32[8,16]"], batch_size=32)
    est = wattlint.estimate(g, gpu="h100", inputs=["x=float32[8,16]"], batch_size=32, steps=1, lint=False)
    assert est.per_step.time_s > 0
    with pytest.raises(ConfigError, match="inputs="):
        wattlint.estimate(g, gpu="h100", inputs=["x=float32[8,32]"], batch_size=32, steps=1, lint=False)
