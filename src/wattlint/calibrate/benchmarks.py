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
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .. import costs
from ..types import OpKind, OpRecord, Phase

PRECISION_DTYPE = {"fp32": "float32", "tf32": "float32", "bf16": "bfloat16", "fp16": "float16"}
ACTIVATIONS = ("relu", "gelu", "silu", "sigmoid", "tanh")
BINARY = ("add", "mul")


class BenchmarkError(ValueError):
    pass


@dataclass(frozen=True)
class Family:
    name: str
    phases: tuple[str, ...]  # phases this family can be measured in
    precisions: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16")


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("gemm", ("forward", "backward")),
    Family("conv", ("forward", "backward")),
    Family("attention", ("forward", "backward")),
    Family("norm", ("forward", "backward")),
    Family("softmax", ("forward", "backward")),
    Family("elementwise", ("forward", "backward")),
    Family("reduction", ("forward",)),
    Family("embedding", ("forward", "backward")),
    Family("pool", ("forward", "backward")),
    Family("lstm", ("forward", "backward")),
    Family("optimizer", ("optimizer",), ("fp32",)),
    Family("memory", ("forward",)),
    Family("loss", ("forward", "backward")),
    Family("dropout", ("forward", "backward")),
)}


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


# ---- torch callables -------------------------------------------------------------------------------------------

def set_precision_flags(precision: str) -> None:
    """TF32 on only for ``tf32`` (matmul and cuDNN). Process-local library flags; no device setting changes."""
    import torch

    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def build(family: str, params: Mapping[str, Any], precision: str, phase: str, device: str) -> Callable[[], Any]:
    """Allocate the op's inputs on ``device`` and return a zero-argument callable that runs the op once
    (forward op, its backward via autograd.grad with retained graph, or one optimizer step)."""
    import torch
    import torch.nn.functional as F

    records(family, params, precision, phase)  # validates the combination
    set_precision_flags(precision)
    dt = getattr(torch, PRECISION_DTYPE[precision])
    dev = torch.device(device)
    bwd = phase == "backward"
    gen = torch.Generator(device="cpu").manual_seed(0)

    def t(*shape, dtype=dt, grad=False, scale=1.0):
        x = (torch.randn(*shape, generator=gen) * scale).to(device=dev, dtype=dtype)
        return x.requires_grad_(grad) if grad else x

    def backward_of(out, inputs):
        gout = torch.randn_like(out) if out.dtype.is_floating_point else None
        return lambda: torch.autograd.grad(out, inputs, gout, retain_graph=True)

    if family == "gemm":
        m, n, k, b = int(params["m"]), int(params["n"]), int(params["k"]), int(params.get("b", 1))
        bias = bool(params.get("bias", 0))
        if b == 1:
            x, w = t(m, k, grad=bwd), t(n, k, grad=bwd, scale=k ** -0.5)
            bb = t(n, grad=bwd) if bias else None
            if not bwd:
                return lambda: F.linear(x, w, bb)
            ins = [x, w] + ([bb] if bias else [])
            return backward_of(F.linear(x, w, bb), ins)
        a, c = t(b, m, k, grad=bwd), t(b, k, n, grad=bwd, scale=k ** -0.5)
        if not bwd:
            return lambda: torch.bmm(a, c)
        return backward_of(torch.bmm(a, c), [a, c])
    if family == "conv":
        g = conv_geometry(params)
        x = t(*g["x"], grad=bwd).contiguous(memory_format=torch.channels_last) if params.get("channels_last") \
            else t(*g["x"], grad=bwd)
        w = t(*g["w"], grad=bwd, scale=0.1)
        kw = {"stride": g["stride"], "padding": g["padding"], "groups": g["groups"]}
        torch.backends.cudnn.benchmark = False
        if not bwd:
            return lambda: F.conv2d(x, w, None, **kw)
        return backward_of(F.conv2d(x, w, None, **kw), [x, w])
    if family == "attention":
        b, h, s, d = (int(params[k]) for k in ("b", "h", "s", "d"))
        causal = bool(params.get("causal", 0))
        q, k_, v = (t(b, h, s, d, grad=bwd) for _ in range(3))
        if not bwd:
            return lambda: F.scaled_dot_product_attention(q, k_, v, is_causal=causal)
        return backward_of(F.scaled_dot_product_attention(q, k_, v, is_causal=causal), [q, k_, v])
    if family == "norm":
        kind = str(params.get("kind", "layer"))
        if kind == "batch":
            n, c, hw = int(params["n"]), int(params["c"]), int(params["hw"])
            x = t(n, c, hw, hw, grad=bwd)
            wgt = t(c, dtype=dt, grad=bwd)
            bias = t(c, dtype=dt, grad=bwd)
            rm, rv = torch.zeros(c, device=dev, dtype=dt), torch.ones(c, device=dev, dtype=dt)

            def bn():
                return F.batch_norm(x, rm, rv, wgt, bias, training=True)
            if not bwd:
                return bn
            return backward_of(bn(), [x, wgt, bias])
        rows, cols = int(params["rows"]), int(params["cols"])
        x = t(rows, cols, grad=bwd)
        wgt = t(cols, grad=bwd)
        if kind == "rms":
            def f():
                return F.rms_norm(x, (cols,), wgt)
            ins = [x, wgt]
        else:
            bias = t(cols, grad=bwd)

            def f():
                return F.layer_norm(x, (cols,), wgt, bias)
            ins = [x, wgt, bias]
        return backward_of(f(), ins) if bwd else f
    if family == "softmax":
        x = t(int(params["rows"]), int(params["cols"]), grad=bwd)
        return backward_of(torch.softmax(x, -1), [x]) if bwd else (lambda: torch.softmax(x, -1))
    if family == "elementwise":
        name = str(params["op"])
        n = int(params["numel"])
        x = t(n, grad=bwd)
        if name in BINARY:
            y = t(n)
            op = torch.add if name == "add" else torch.mul
            return lambda: op(x, y)
        fn = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[name]
        return backward_of(fn(x), [x]) if bwd else (lambda: fn(x))
    if family == "reduction":
        x = t(int(params["rows"]), int(params["cols"]))
        red = torch.mean if params.get("op") == "mean" else torch.sum
        return lambda: red(x, -1)
    if family == "embedding":
        v, d, n = int(params["vocab"]), int(params["dim"]), int(params["indices"])
        wgt = t(v, d, grad=bwd)
        idx = torch.randint(0, v, (n,), generator=gen).to(dev)
        if not bwd:
            return lambda: F.embedding(idx, wgt)
        return backward_of(F.embedding(idx, wgt), [wgt])
    if family == "pool":
        n, c, h, k = (int(params[kk]) for kk in ("n", "c", "h", "k"))
        stride = int(params.get("stride", k))
        x = t(n, c, h, h, grad=bwd)
        pf = F.max_pool2d if params.get("kind", "max") == "max" else F.avg_pool2d
        if not bwd:
            return lambda: pf(x, k, stride)
        return backward_of(pf(x, k, stride), [x])
    if family == "lstm":
        s, b, i, h = (int(params[k]) for k in ("seq", "batch", "input", "hidden"))
        layers = int(params.get("layers", 1))
        mod = torch.nn.LSTM(i, h, num_layers=layers).to(device=dev, dtype=dt)
        x = t(s, b, i, grad=bwd)
        if not bwd:
            return lambda: mod(x)
        out, _ = mod(x)
        return backward_of(out, [x, *mod.parameters()])
    if family == "optimizer":
        name = str(params["name"])
        numel, tensors = int(params["numel"]), int(params.get("tensors", 1))
        per = max(1, numel // tensors)
        ps = [torch.nn.Parameter(t(per, dtype=torch.float32)) for _ in range(tensors)]
        for p_ in ps:
            p_.grad = t(per, dtype=torch.float32, scale=1e-3)
        fused = dev.type == "cuda"
        if name == "adamw":
            opt = torch.optim.AdamW(ps, lr=1e-4, fused=fused, foreach=None if fused else True)
        elif name == "adam":
            opt = torch.optim.Adam(ps, lr=1e-4, fused=fused, foreach=None if fused else True)
        else:
            opt = torch.optim.SGD(ps, lr=1e-4, momentum=float(params.get("momentum", 0.9)), fused=fused,
                                  foreach=None if fused else True)
        return opt.step
    if family == "memory":
        name = str(params["op"])
        n = int(params["numel"])
        if name == "transpose":
            r = int(params.get("rows", 1024))
            x = t(r, n // r)
            return lambda: x.t().contiguous()
        if name == "cat":
            a, c = t(n // 2), t(n // 2)
            return lambda: torch.cat([a, c])
        src, dst = t(n), t(n)
        return lambda: dst.copy_(src)
    if family == "loss":
        n, classes = int(params["n"]), int(params["classes"])
        logits = t(n, classes, grad=bwd)
        target = torch.randint(0, classes, (n,), generator=gen).to(dev)
        if not bwd:
            return lambda: F.cross_entropy(logits, target)
        return backward_of(F.cross_entropy(logits, target), [logits])
    if family == "dropout":
        x = t(int(params["numel"]), grad=bwd)
        if not bwd:
            return lambda: F.dropout(x, 0.1, training=True)
        return backward_of(F.dropout(x, 0.1, training=True), [x])
    raise BenchmarkError(f"unknown benchmark family {family!r}")


def sample_work(recs: list[OpRecord]) -> tuple[int, int]:
    """(flops, bytes) of a sample's records."""
    return sum(r.flops for r in recs), sum(r.bytes for r in recs)


def log_size(recs: list[OpRecord]) -> float:
    f, b = sample_work(recs)
    return math.log10(max(f, b, 1))
