"""Op micro-benchmarks: for each family, (a) the OpRecords the cost graph would hold for the op, built with the
SAME costs.py formulas the frontends use, and (b) a torch callable that runs exactly that op on a device.

A calibration sample is (family, params, precision, phase). Its CSV row stores exactly these four values, so
``wattlint fit`` rebuilds the records with :func:`records` and computes features with the estimator's own
``energy.features.op_features`` (one code path for fitting and predicting).

Precisions: ``fp32`` = float32 with TF32 off (matmul and cuDNN), ``tf32`` = float32 with TF32 on, ``bf16`` /
``fp16`` = tensors in that dtype (what autocast hands the kernel). Optimizer and embedding-table updates keep
fp32 master weights.

torch is imported only by :func:`build` (records are pure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .. import costs
from ..types import OpKind, OpRecord, Phase

PRECISION_DTYPE = {"fp32": "float32", "tf32": "float32", "bf16": "bfloat16", "fp16": "float16"}
ACTIVATIONS = ("relu", "gelu", "silu", "sigmoid", "tanh")
BINARY = ("add", "mul")


class BenchmarkError(ValueError):
    pass


class InvalidSample(BenchmarkError):
    """A sample no suite produces (a negative or fractional size, a boolean for a size, a kernel count beyond the
    bounds below, a phase the family is not measured in); ``reason`` says which, without the value (fit counts the
    rows it drops by reason)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Family:
    name: str
    phases: tuple[str, ...]  # phases this family can be measured in
    precisions: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16")
    params: tuple[str, ...] = ()  # the shape parameters records() / make_op() / build() read; no other is accepted
    names: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)  # values of its named parameters


_FB = ("forward", "backward")
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("gemm", _FB, params=("m", "n", "k", "b", "bias")),
    Family("conv", _FB, params=("n", "c", "h", "w", "cout", "k", "stride", "pad", "groups")),
    Family("attention", _FB, params=("b", "h", "s", "d", "causal")),
    Family("norm", _FB, params=("kind", "rows", "cols", "n", "c", "hw"), names={"kind": ("layer", "rms", "batch")}),
    Family("softmax", _FB, params=("rows", "cols")),
    Family("elementwise", _FB, params=("op", "numel"), names={"op": BINARY + ACTIVATIONS}),
    Family("reduction", ("forward",), params=("op", "rows", "cols"), names={"op": ("sum", "mean")}),
    Family("embedding", _FB, params=("vocab", "dim", "indices")),
    Family("pool", _FB, params=("kind", "n", "c", "h", "k", "stride"), names={"kind": ("max", "avg")}),
    Family("lstm", _FB, params=("seq", "batch", "input", "hidden", "layers")),
    Family("optimizer", ("optimizer",), ("fp32",), params=("name", "numel", "tensors", "momentum"),
           names={"name": ("adamw", "adam", "sgd")}),
    Family("memory", ("forward",), params=("op", "numel", "rows"), names={"op": ("copy", "transpose", "cat")}),
    Family("loss", _FB, params=("n", "classes")),
    Family("dropout", _FB, params=("numel",)),
)}


# Values a suite can give a shape parameter (suites._param: whole numbers up to 2^40, names), narrowed to what each
# parameter means: flags are 0 / 1, sizes whole numbers >= 0 (conv groups -1: depthwise; a size of 0 is refused when
# the sample is priced), never a boolean or a fraction, which int() turned into another shape silently.
FLAGS = ("bias", "causal", "momentum")
MAX_SIZE = 1 << 40
# Parameters that count kernels rather than size them: records() and the frontend trace build one record per tensor
# and per time step of each layer, so a damaged row's tensors = 10**30 hung `wattlint fit` (3,000 took 15 s a row).
# Bounds well above the shipped suites' (160 tensors; 256 steps x 2 layers).
MAX_TENSORS = 1024
MAX_LSTM_STEPS = 8192  # seq x layers


def check_params(family: str, params: Mapping[str, Any]) -> None:
    """A parameter the family does not read, or a name it does not know, is a BenchmarkError: the sample would
    silently measure the default ('bais', 'casual', 'strid') or another op (reduction 'max' measured a sum). A value
    no suite produces (see FLAGS, MAX_SIZE, MAX_TENSORS, MAX_LSTM_STEPS) is an :class:`InvalidSample`."""
    fam = FAMILIES.get(family)
    if fam is None:
        raise BenchmarkError(f"unknown benchmark family {family!r} (one of {', '.join(FAMILIES)})")
    unknown = [k for k in params if k not in fam.params]
    if unknown:
        raise BenchmarkError(f"family {family!r}: unknown shape parameter {unknown[0]!r} (accepted: "
                             f"{', '.join(fam.params)})")
    for key, allowed in fam.names.items():
        if key in params and params[key] not in allowed:
            raise BenchmarkError(f"family {family!r}: {key} = {params[key]!r} is not one of {', '.join(allowed)}")
    for key, v in params.items():
        if key in fam.names:
            continue
        said = f"family {family!r}: {key} = {str(v)[:40]!r}"
        if key in FLAGS:
            if not (isinstance(v, int) and v in (0, 1)):  # bool is an int: true / false are 1 / 0
                raise InvalidSample(f"{said}: expected 0 or 1", "a flag other than 0 / 1")
            continue
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidSample(f"{said}: expected a whole number", "a size that is not a whole number")
        if v < 0 and not (key == "groups" and v == -1):
            raise InvalidSample(f"{said}: a negative size", "a negative size")
        if v > MAX_SIZE:
            raise InvalidSample(f"{said}: over 2^40", "a size over 2^40")
    if family == "optimizer" and params.get("tensors", 1) > MAX_TENSORS:
        raise InvalidSample(f"family 'optimizer': tensors = {params['tensors']}: at most {MAX_TENSORS}",
                            f"more than {MAX_TENSORS} optimizer tensors")
    if family == "lstm" and params.get("seq", 1) * params.get("layers", 1) > MAX_LSTM_STEPS:
        raise InvalidSample(f"family 'lstm': seq x layers = {params.get('seq', 1) * params.get('layers', 1)}: at "
                            f"most {MAX_LSTM_STEPS}", f"more than {MAX_LSTM_STEPS} LSTM time steps (seq x layers)")


def check_sample(family: str, params: Mapping[str, Any], precision: str, phase: str) -> None:
    """:func:`check_params`, a known precision, and a phase the family is measured in (a suite never plans another:
    a damaged row's phase 'sideways' was fitted as the optimizer's step)."""
    check_params(family, params)
    if precision not in PRECISION_DTYPE:
        raise InvalidSample(f"unknown precision {str(precision)[:40]!r} (one of {', '.join(PRECISION_DTYPE)})",
                            "an unknown precision")
    if not supports(family, params, phase):
        raise InvalidSample(f"family {family!r} is not measured in phase {str(phase)[:40]!r} with {dict(params)}",
                            "a phase the family is not measured in")


def _p(params: Mapping[str, Any], key: str, default: Any = None) -> Any:
    if key in params:
        return params[key]
    if default is None:
        raise BenchmarkError(f"missing parameter {key!r}")
    return default


def _rec(op: str, c: costs.Cost, phase: Phase, dtype: str, shapes=(), module_type: str = "") -> OpRecord:
    return OpRecord(op=op, kind=c.kind, module="", phase=phase, dtype=dtype, shapes=tuple(tuple(s) for s in shapes),
                    flops=int(c.flops), bytes_read=int(c.bytes_read), bytes_written=int(c.bytes_written),
                    module_type=module_type, dims=c.dims)


def supports(family: str, params: Mapping[str, Any], phase: str) -> bool:
    fam = FAMILIES.get(family)
    if fam is None or phase not in fam.phases:
        return False
    if family == "elementwise" and phase == "backward" and params.get("op") in BINARY:
        return False
    if family == "memory" and phase != "forward":
        return False
    return True


def conv_geometry(params: Mapping[str, Any]) -> dict[str, Any]:
    n, c, h, w = (int(_p(params, k)) for k in ("n", "c", "h", "w"))
    cout, k = int(_p(params, "cout")), int(_p(params, "k"))
    stride = int(params.get("stride", 1))
    groups = int(params.get("groups", 1))
    if groups == -1:  # depthwise
        groups = c
    pad = int(params.get("pad", k // 2))
    return {"x": (n, c, h, w), "w": (cout, c // groups, k, k), "stride": stride, "padding": pad, "groups": groups}


def records(family: str, params: Mapping[str, Any], precision: str, phase: str) -> list[OpRecord]:
    """The cost-graph records of one benchmark sample (what the frontend would record for the same op)."""
    if precision not in PRECISION_DTYPE:
        raise BenchmarkError(f"unknown precision {precision!r}")
    check_params(family, params)
    if not supports(family, params, phase):
        raise BenchmarkError(f"family {family!r} cannot be measured in phase {phase!r} with {dict(params)}")
    dt = PRECISION_DTYPE[precision]
    ph = Phase(phase)
    bwd = ph is Phase.BACKWARD
    if family == "gemm":
        m, n, k, b = int(_p(params, "m")), int(_p(params, "n")), int(_p(params, "k")), int(params.get("b", 1))
        bias = bool(params.get("bias", 0))
        if b == 1:
            x, w = (m, k), (n, k)
            if not bwd:
                return [_rec("aten.addmm.default" if bias else "aten.mm.default",
                             costs.linear(x, w, dt, bias=bias), ph, dt, (x, w), "Linear")]
            out = []
            for c in costs.linear_backward(x, w, dt, bias=bias):
                out.append(_rec("aten.sum.dim_IntList" if c.kind is OpKind.REDUCTION else "aten.mm.default",
                                c, ph, dt, (x, w), "Linear"))
            return out
        a, bb = (b, m, k), (b, k, n)
        if not bwd:
            return [_rec("aten.bmm.default", costs.matmul(a, bb, dt), ph, dt, (a, bb))]
        return [_rec("aten.bmm.default", c, ph, dt, (a, bb)) for c in costs.matmul_backward(a, bb, dt)]
    if family == "conv":
        g = conv_geometry(params)
        kw = {"stride": g["stride"], "padding": g["padding"], "groups": g["groups"]}
        if not bwd:
            return [_rec("aten.convolution.default", costs.conv(g["x"], g["w"], dt, **kw), ph, dt, (g["x"], g["w"]),
                         "Conv2d")]
        return [_rec("aten.convolution_backward.default", c, ph, dt, (g["x"], g["w"]), "Conv2d")
                for c in costs.conv_backward(g["x"], g["w"], dt, **kw)]
    if family == "attention":
        b, h, s, d = (int(_p(params, k)) for k in ("b", "h", "s", "d"))
        causal = bool(params.get("causal", 0))
        fn = costs.attention_backward if bwd else costs.attention
        op = ("aten._scaled_dot_product_flash_attention_backward.default" if bwd
              else "aten._scaled_dot_product_flash_attention.default")
        return [_rec(op, fn(b, h, s, s, d, d, dt, causal=causal), ph, dt, ((b, h, s, d),) * 3,
                     "MultiheadAttention")]
    if family == "norm":
        kind = str(params.get("kind", "layer"))
        if kind == "batch":
            x = (int(_p(params, "n")), int(_p(params, "c")), int(_p(params, "hw")), int(_p(params, "hw")))
            c = costs.norm(x, dt, "batch", backward=bwd)
            op = "aten.native_batch_norm_backward.default" if bwd else "aten._native_batch_norm_legit.default"
            return [_rec(op, c, ph, dt, (x,), "BatchNorm2d")]
        x = (int(_p(params, "rows")), int(_p(params, "cols")))
        c = costs.norm(x, dt, kind, backward=bwd)
        if kind == "rms":
            op = "aten._fused_rms_norm_backward.default" if bwd else "aten._fused_rms_norm.default"
            return [_rec(op, c, ph, dt, (x,), "RMSNorm")]
        op = "aten.native_layer_norm_backward.default" if bwd else "aten.native_layer_norm.default"
        return [_rec(op, c, ph, dt, (x,), "LayerNorm")]
    if family == "softmax":
        x = (int(_p(params, "rows")), int(_p(params, "cols")))
        op = "aten._softmax_backward_data.default" if bwd else "aten._softmax.default"
        return [_rec(op, costs.softmax(x, dt, backward=bwd), ph, dt, (x,), "Softmax")]
    if family == "elementwise":
        name = str(_p(params, "op"))
        x = (int(_p(params, "numel")),)
        if name in BINARY:
            return [_rec(f"aten.{name}.Tensor", costs.elementwise(name, [x, x], x, dt), ph, dt, (x, x))]
        if bwd:
            return [_rec(f"aten.{name}_backward.default", costs.elementwise(name, [x, x], x, dt, backward=True), ph,
                         dt, (x, x))]
        return [_rec(f"aten.{name}.default", costs.elementwise(name, [x], x, dt), ph, dt, (x,))]
    if family == "reduction":
        x = (int(_p(params, "rows")), int(_p(params, "cols")))
        op = str(params.get("op", "sum"))
        return [_rec(f"aten.{op}.dim_IntList", costs.reduction(x, dt, out_shape=(x[0],)), ph, dt, (x,))]
    if family == "embedding":
        v, d, n = int(_p(params, "vocab")), int(_p(params, "dim")), int(_p(params, "indices"))
        op = "aten.embedding_dense_backward.default" if bwd else "aten.embedding.default"
        return [_rec(op, costs.embedding(n, d, dt, backward=bwd, num_embeddings=v), ph, dt, ((v, d), (n,)),
                     "Embedding")]
    if family == "pool":
        n, c, h, k = (int(_p(params, kk)) for kk in ("n", "c", "h", "k"))
        stride = int(params.get("stride", k))
        kind = str(params.get("kind", "max"))
        oh = (h - k) // stride + 1
        x, o = (n, c, h, h), (n, c, oh, oh)
        op = f"aten.{kind}_pool2d{'_with_indices' if kind == 'max' else ''}{'_backward' if bwd else ''}.default"
        return [_rec(op, costs.pool(x, o, (k, k), dt, kind=kind, backward=bwd), ph, dt, (x,),
                     "MaxPool2d" if kind == "max" else "AvgPool2d")]
    if family == "lstm":
        s, b, i, h = (int(_p(params, k)) for k in ("seq", "batch", "input", "hidden"))
        layers = int(params.get("layers", 1))
        c = costs.rnn("lstm", s, b, i, h, dt, layers=layers, backward=bwd)
        op = "aten._cudnn_rnn_backward.default" if bwd else "aten._cudnn_rnn.default"
        return [_rec(op, c, ph, dt, ((s, b, i),), "LSTM")]
    if family == "optimizer":
        name = str(_p(params, "name"))
        numel, tensors = int(_p(params, "numel")), int(params.get("tensors", 1))
        per = max(1, numel // tensors)
        momentum = name == "sgd" and float(params.get("momentum", 0.9)) > 0
        c = costs.optimizer_step(name, per, "float32", momentum=momentum)
        op = f"aten._fused_{'adamw' if name == 'adamw' else name}_.default"
        return [_rec(op, c, ph, "float32", ((per,),), "") for _ in range(tensors)]
    if family == "memory":
        name = str(_p(params, "op"))
        n = int(_p(params, "numel"))
        if name == "transpose":
            r = int(params.get("rows", 1024))
            return [_rec("aten.clone.default", costs.memory(n, n, dt), ph, dt, ((r, n // r),))]
        if name == "cat":
            return [_rec("aten.cat.default", costs.memory(n, n, dt), ph, dt, ((n // 2,), (n // 2,)))]
        return [_rec("aten.copy_.default", costs.memory(n, n, dt), ph, dt, ((n,),))]
    if family == "loss":
        n, classes = int(_p(params, "n")), int(_p(params, "classes"))
        op = "aten.nll_loss_backward.default" if bwd else "aten.cross_entropy_loss.default"
        return [_rec(op, costs.cross_entropy(n, classes, dt, backward=bwd), ph, dt, ((n, classes),),
                     "CrossEntropyLoss")]
    if family == "dropout":
        x = (int(_p(params, "numel")),)
        op = "aten.native_dropout_backward.default" if bwd else "aten.native_dropout.default"
        return [_rec(op, costs.dropout(x, dt, backward=bwd), ph, dt, (x,), "Dropout")]
    raise BenchmarkError(f"unknown benchmark family {family!r}")


# ---- torch modules: one op per module (shared by the timed callable and the frontend trace) ---------------------

def make_op(family: str, params: Mapping[str, Any], precision: str, device: str = "cpu", meta: bool = False):
    """(module, inputs, grad_mask): ``module(*inputs)`` runs the op once; ``grad_mask[i]`` says whether input i
    carries a gradient (inputs of a layer inside a network do; indices do not). Modules are created directly on
    the device (no slow CPU initialisation of large weights)."""
    import torch

    with torch.device("meta" if meta else device):
        return _make_op(family, params, precision, device, meta)


def _make_op(family: str, params: Mapping[str, Any], precision: str, device: str, meta: bool):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    dt = getattr(torch, PRECISION_DTYPE[precision])
    dev = torch.device("meta" if meta else device)

    def t(*shape, dtype=dt, scale=1.0):
        if meta:
            return torch.empty(*shape, dtype=dtype, device=dev)
        return (torch.randn(*shape, device=dev, dtype=torch.float32) * scale).to(dtype)

    def idx(high, *shape):
        if meta:
            return torch.empty(*shape, dtype=torch.long, device=dev)
        return torch.randint(0, high, shape, device=dev)

    class Fn(nn.Module):
        def __init__(self, f):
            super().__init__()
            self.f = f

        def forward(self, *a):
            return self.f(*a)

    p = params
    if family == "gemm":
        m, n, k, b = int(p["m"]), int(p["n"]), int(p["k"]), int(p.get("b", 1))
        if b == 1:
            mod = nn.Linear(k, n, bias=bool(p.get("bias", 0)))
            ins, mask = [t(m, k)], [True]
        else:
            mod = Fn(torch.bmm)
            ins, mask = [t(b, m, k), t(b, k, n, scale=k ** -0.5)], [True, True]
    elif family == "conv":
        g = conv_geometry(p)
        c = g["x"][1]
        mod = nn.Conv2d(c, g["w"][0], g["w"][2], stride=g["stride"], padding=g["padding"], groups=g["groups"],
                        bias=False)
        ins, mask = [t(*g["x"])], [True]
    elif family == "attention":
        b, h, s, d = (int(p[k]) for k in ("b", "h", "s", "d"))
        causal = bool(p.get("causal", 0))
        mod = Fn(lambda q, k_, v: F.scaled_dot_product_attention(q, k_, v, is_causal=causal))
        ins, mask = [t(b, h, s, d) for _ in range(3)], [True] * 3
    elif family == "norm":
        kind = str(p.get("kind", "layer"))
        if kind == "batch":
            mod = nn.BatchNorm2d(int(p["c"]))
            ins = [t(int(p["n"]), int(p["c"]), int(p["hw"]), int(p["hw"]))]
        else:
            cols = int(p["cols"])
            mod = nn.RMSNorm(cols) if kind == "rms" else nn.LayerNorm(cols)
            ins = [t(int(p["rows"]), cols)]
        mask = [True]
    elif family == "softmax":
        mod, ins, mask = nn.Softmax(-1), [t(int(p["rows"]), int(p["cols"]))], [True]
    elif family == "elementwise":
        name = str(p["op"])
        n = int(p["numel"])
        if name in BINARY:
            mod = Fn(torch.add if name == "add" else torch.mul)
            ins, mask = [t(n), t(n)], [True, True]
        else:
            mod = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[name]()
            ins, mask = [t(n)], [True]
    elif family == "reduction":
        mean = p.get("op") == "mean"
        mod = Fn((lambda x: x.mean(-1)) if mean else (lambda x: x.sum(-1)))
        ins, mask = [t(int(p["rows"]), int(p["cols"]))], [True]
    elif family == "embedding":
        v, d, n = int(p["vocab"]), int(p["dim"]), int(p["indices"])
        mod = nn.Embedding(v, d)
        ins, mask = [idx(v, n)], [False]
    elif family == "pool":
        k = int(p["k"])
        stride = int(p.get("stride", k))
        mod = nn.MaxPool2d(k, stride) if p.get("kind", "max") == "max" else nn.AvgPool2d(k, stride)
        ins, mask = [t(int(p["n"]), int(p["c"]), int(p["h"]), int(p["h"]))], [True]
    elif family == "lstm":
        s, b, i, h = (int(p[k]) for k in ("seq", "batch", "input", "hidden"))
        lstm = nn.LSTM(i, h, num_layers=int(p.get("layers", 1)))

        class First(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = lstm

            def forward(self, x):
                return self.lstm(x)[0]
        mod = First()
        ins, mask = [t(s, b, i)], [True]
    elif family == "optimizer":
        numel, tensors = int(p["numel"]), int(p.get("tensors", 1))
        per = max(1, numel // tensors)

        class Bag(nn.Module):
            def __init__(self):
                super().__init__()
                self.ps = nn.ParameterList([nn.Parameter(torch.empty(per)) for _ in range(tensors)])

            def forward(self, x):
                return sum(q.sum() for q in self.ps) * x.sum()
        mod = Bag()
        ins, mask = [t(1, dtype=torch.float32)], [False]
        dt = torch.float32
    elif family == "memory":
        name = str(p["op"])
        n = int(p["numel"])
        if name == "transpose":
            r = int(p.get("rows", 1024))
            mod, ins = Fn(lambda x: x.t().contiguous()), [t(r, n // r)]
        elif name == "cat":
            mod, ins = Fn(lambda a, c: torch.cat([a, c])), [t(n // 2), t(n // 2)]
        else:
            mod, ins = Fn(lambda a, c: c.copy_(a)), [t(n), t(n)]
        mask = [False] * len(ins)
    elif family == "loss":
        n, classes = int(p["n"]), int(p["classes"])
        mod = Fn(lambda x, y: F.cross_entropy(x, y))
        ins, mask = [t(n, classes), idx(classes, n)], [True, False]
    elif family == "dropout":
        mod, ins, mask = nn.Dropout(0.1), [t(int(p["numel"]))], [True]
    else:
        raise BenchmarkError(f"unknown benchmark family {family!r}")
    mod = mod.to(device=dev, dtype=dt)
    if not meta:
        with torch.no_grad():
            for q in mod.parameters():
                q.normal_(0, 0.02)
    return mod, ins, mask


def set_precision_flags(precision: str) -> None:
    """TF32 on only for ``tf32`` (matmul and cuDNN). Process-local library flags; no device setting changes."""
    import torch

    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


MAX_COPIES = 32


def copies_for(sample_bytes: int, cache_bytes: int) -> int:
    """Input copies to rotate through so that one round touches >= 2x the device's last-level cache: repeated calls
    on the same tensors would run from cache, while in a training step every activation is new."""
    if sample_bytes <= 0 or cache_bytes <= 0:
        return 1
    return max(1, min(MAX_COPIES, math.ceil(2 * cache_bytes / sample_bytes)))


def build(family: str, params: Mapping[str, Any], precision: str, phase: str, device: str,
          copies: int = 1) -> Callable[[], Any]:
    """Allocate the op's inputs on ``device`` and return a zero-argument callable that runs the op once
    (forward op; its backward via autograd.grad over a retained graph; or one optimizer step, foreach as the
    frontend assumes). With ``copies`` > 1 each call uses the next of that many independent copies (module and
    inputs), so the op reads from device memory as in training, not from a warm cache."""
    import itertools

    import torch

    records(family, params, precision, phase)  # validates the combination
    set_precision_flags(precision)
    torch.manual_seed(0)
    if phase == "optimizer":  # its state is large and streamed once per step anyway
        mod, ins, mask = make_op(family, params, precision, device)
        ps = list(mod.parameters())
        for q in ps:
            q.grad = torch.randn_like(q) * 1e-3
        name = str(params["name"])
        if name == "adamw":
            opt = torch.optim.AdamW(ps, lr=1e-4, foreach=True)
        elif name == "adam":
            opt = torch.optim.Adam(ps, lr=1e-4, foreach=True)
        else:
            opt = torch.optim.SGD(ps, lr=1e-4, momentum=float(params.get("momentum", 0.9)), foreach=True)
        opt.step()  # steady state: optimizer state exists
        return opt.step
    fns = [_one_call(family, params, precision, phase, device) for _ in range(max(1, int(copies)))]
    if len(fns) == 1:
        return fns[0]
    ring = itertools.cycle(fns)
    return lambda: next(ring)()


def _one_call(family, params, precision, phase, device) -> Callable[[], Any]:
    import torch

    mod, ins, mask = make_op(family, params, precision, device)
    mod.train()
    ins = [x.requires_grad_(True) if g else x for x, g in zip(ins, mask)]
    if phase == "forward":  # as in training: autograd records the graph (then drops it)
        return lambda: mod(*ins)
    out = mod(*ins)
    wrt = [x for x, g in zip(ins, mask) if g] + [q for q in mod.parameters() if q.requires_grad]
    gout = torch.randn_like(out)
    return lambda: torch.autograd.grad(out, wrt, gout, retain_graph=True)


# ---- records as the torch frontend traces them ------------------------------------------------------------------

_TRACE_CACHE: dict[tuple, tuple[OpRecord, ...] | None] = {}


def traced_records(family: str, params: Mapping[str, Any], precision: str, phase: str) -> list[OpRecord] | None:
    """The records wattlint's torch frontend produces for this op inside a network (None if tracing fails):
    the op in a child module ``op`` whose float inputs come from another module (so their gradients are
    computed, as for a layer inside a network); only the ``op`` module's records of ``phase`` are kept."""
    key = (family, tuple(sorted(params.items())), precision, phase)
    if key in _TRACE_CACHE:
        got = _TRACE_CACHE[key]
        return list(got) if got is not None else None
    from ..frontends.extras import require

    # fitting sees the records estimates see only through the torch frontend: without torch, every sample would
    # fall back to the formulas and the model would differ (and be worse), silently
    require("torch", "fitting calibration samples (each op is traced as the torch frontend records it)")
    try:
        recs = _trace(family, params, precision, phase)
    except Exception:  # noqa: BLE001 - op not traceable (a pure copy): caller falls back to formulas
        recs = None
    _TRACE_CACHE[key] = tuple(recs) if recs is not None else None
    return recs


def _trace(family, params, precision, phase) -> list[OpRecord] | None:
    import torch
    import torch.nn as nn

    from ..frontends import torch as tf
    from ..types import Status

    mod, ins, mask = make_op(family, params, precision, meta=True)

    class Pre(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(torch.empty((), device="meta"))

        def forward(self, x):
            return x * self.s.to(x.dtype)

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre = nn.ModuleList([Pre() if g else nn.Identity() for g in mask])
            self.op = mod

        def forward(self, *xs):
            return self.op(*[p_(x) for p_, x in zip(self.pre, xs)])

    opt = str(params.get("name", "adamw")) if family == "optimizer" else "sgd"
    if family == "optimizer":
        w: nn.Module = mod
        g = tf.trace(w, ins, precision="fp32", optimizer=opt)
        recs = [r for r in g.records if r.phase is Phase.OPTIMIZER and r.status is Status.HANDLED
                and r.kind is not OpKind.VIEW]
    else:
        g = tf.trace(Wrap(), ins, precision="fp32", optimizer=opt)
        ph = Phase(phase)
        recs = [r for r in g.records if r.phase is ph and r.status is Status.HANDLED and r.kind is not OpKind.VIEW
                and (r.module == "op" or r.module.startswith("op."))]
    if not recs:
        return None
    return recs


def fit_records(family: str, params: Mapping[str, Any], precision: str, phase: str) -> tuple[list[OpRecord], str]:
    """Records used to fit: the frontend's trace of the op when it works, else the costs.py formulas."""
    check_sample(family, params, precision, phase)  # a damaged row's unknown name would be traced as the default op
    t = traced_records(family, params, precision, phase)
    if t:
        return t, "frontend-trace"
    return records(family, params, precision, phase), "costs-formula"


def sample_work(recs: list[OpRecord]) -> tuple[int, int]:
    """(flops, bytes) of a sample's records."""
    return sum(r.flops for r in recs), sum(r.bytes for r in recs)


def log_size(recs: list[OpRecord]) -> float:
    f, b = sample_work(recs)
    return math.log10(max(f, b, 1))


def autograd_call_overhead(device: str, calls: int = 200) -> float:
    """Seconds one ``torch.autograd.grad`` call costs beyond its kernels (engine start, graph walk), measured on
    a one-element graph. A training step pays it once per backward, a backward benchmark once per op call, so
    the runner subtracts it from backward samples (recorded per run as ``autograd_overhead_s``)."""
    import statistics
    import time

    import torch

    x = torch.ones(1, device=device, requires_grad=True)
    y = x * 2.0
    g = torch.ones_like(y)
    cuda = str(device).startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    clock = time.perf_counter if cuda else time.process_time  # CPU: process time (see CpuBackend.time_calls)
    for _ in range(20):
        torch.autograd.grad(y, [x], g, retain_graph=True)
    rounds = []
    for _ in range(5):
        sync()
        t0 = clock()
        for _ in range(calls // 5):
            torch.autograd.grad(y, [x], g, retain_graph=True)
        sync()
        rounds.append((clock() - t0) / (calls // 5))
    return statistics.median(rounds)
