"""Per-op cost handlers of the ONNX frontend: one node (shapes, dtypes, attributes, which inputs need a gradient)
-> forward cost, synthesized backward costs and the tensors saved for backward.

All arithmetic goes through :mod:`wattlint.costs` (the same formulas as the PyTorch path); this module only maps
ONNX operator semantics (attribute layouts, transposes, fused contrib ops) onto those formulas. No onnx import.

Backward synthesis mirrors what autograd runs for the equivalent PyTorch op:

* matmul / gemm / conv: an input-gradient GEMM when the activation input needs a gradient (not for the first layer
  on graph inputs) and a weight-gradient GEMM when the weight is trainable (+ a bias reduction);
* add / sub: no kernel (the gradient is passed through) except a sum over broadcast dims; mul / div: one
  elementwise kernel per input that needs a gradient;
* unary activations: one ``*_backward`` elementwise kernel (reads dy and the saved input);
* norms / softmax / pooling / attention / embedding / recurrent: their backward formulas in :mod:`costs`;
* views (reshape, transpose, concat, slice, pad) are free in backward, as they are in autograd.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from .. import costs as C
from ..costs import Cost, numel, nbytes
from ..types import OpKind

Shape = tuple[int, ...]


@dataclass(slots=True)
class Node:
    """What a handler sees of one ONNX node (shapes are concrete or None when unknown)."""

    op_type: str
    domain: str
    attrs: dict
    in_shapes: list  # list[Shape | None]; None also for omitted optional inputs
    in_dtypes: list  # list[str]
    out_shapes: list
    out_dtypes: list
    in_names: list
    out_names: list
    in_const: list  # list[bool]: input is an initializer / Constant
    in_grad: list  # list[bool]: input needs a gradient
    dtype: str  # compute dtype
    values: dict = field(default_factory=dict)  # known small integer values by input index (e.g. Loop trip count)


@dataclass(slots=True)
class OpCost:
    fwd: Cost
    bwd: list  # list[Cost]
    saved: list  # list[tuple[str, int]]: (tensor key, bytes) saved for backward
    ignored: bool = False
    out: tuple | None = None  # the output shape when the handler knows it (used where inference left it unknown)
    more: list = field(default_factory=list)  # list[Cost]: further forward kernels of the node, after ``fwd``
    lib_call: bool = False  # the node is one library call (a cuDNN RNN): its records are one host launch per phase


class Unsupported(Exception):
    """The handler cannot cost this node (unknown shapes or an unhandled variant)."""


class Malformed(Exception):
    """The node contradicts itself (shapes its op cannot take): the model is invalid, not merely unsupported."""


# ops whose ``axis`` attribute names one axis of input 0 (rank r: -r <= axis < r); onnx's shape inference rejects
# an axis outside that range for the softmax family only in strict mode (the frontend retries leniently), and not
# at all for the layer norms: such a node was priced (a softmax as if valid, a layer norm over x[axis:], nothing)
AXIS_OPS = frozenset({"Softmax", "LogSoftmax", "Hardmax", "LayerNormalization", "SimplifiedLayerNormalization",
                      "RMSNormalization"})


def check_axis(n: Node) -> None:
    """Raise :class:`Malformed` when ``n`` (an op of :data:`AXIS_OPS`) has an ``axis`` outside its input's rank."""
    if n.op_type not in AXIS_OPS or n.domain not in ("", "ai.onnx", "com.microsoft"):
        return
    axis = n.attrs.get("axis")
    x = n.in_shapes[0] if n.in_shapes else None
    if not isinstance(axis, int) or x is None or not x:
        return
    r = len(x)
    if not -r <= axis < r:
        raise Malformed(f"axis {axis} is out of range for its rank-{r} input {list(x)} (valid: {-r} to {r - 1})")


def _need(*shapes) -> None:
    for s in shapes:
        if s is None:
            raise Unsupported("unknown shape")


def _any_grad(n: Node) -> bool:
    return any(n.in_grad)


def _saved(n: Node, i: int) -> tuple[str, int]:
    s = n.in_shapes[i]
    return (n.in_names[i], nbytes(s, n.in_dtypes[i] or n.dtype) if s is not None else 0)


def _saved_out(n: Node, i: int = 0) -> tuple[str, int]:
    s = n.out_shapes[i]
    return (n.out_names[i], nbytes(s, n.out_dtypes[i] or n.dtype) if s is not None else 0)


# ---- ignored (views, metadata) --------------------------------------------------------------------------------

VIEW_OPS = {
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Size", "Constant", "Dropout",
    "Optional", "OptionalGetElement", "OptionalHasElement", "SequenceEmpty", "SequenceConstruct", "SequenceAt",
    "SequenceLength", "SequenceInsert", "SplitToSequence", "ConcatFromSequence", "If", "Loop", "Scan",
}


def _view(n: Node) -> OpCost:
    return OpCost(Cost(kind=OpKind.VIEW), [], [], ignored=True)


# ---- elementwise ----------------------------------------------------------------------------------------------

UNARY = {
    "Relu": "relu", "LeakyRelu": "leaky_relu", "PRelu": "prelu", "Sigmoid": "sigmoid", "Tanh": "tanh",
    "Elu": "elu", "Selu": "selu", "Celu": "celu", "Softplus": "softplus", "Softsign": "softsign", "Mish": "mish",
    "HardSwish": "hardswish", "HardSigmoid": "hardsigmoid", "ThresholdedRelu": "threshold", "Erf": "erf",
    "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Reciprocal": "reciprocal", "Neg": "neg", "Abs": "abs",
    "Sin": "sin", "Cos": "cos", "Tan": "sin", "Asin": "sin", "Acos": "sin", "Atan": "sin", "Sinh": "sin",
    "Cosh": "cos", "Asinh": "sin", "Acosh": "sin", "Atanh": "sin", "Sign": "sign", "Floor": "floor",
    "Ceil": "ceil", "Round": "round", "Clip": "clip", "Gelu": "gelu", "FastGelu": "fast_gelu",
    "BiasGelu": "bias_gelu", "QuickGelu": "silu", "Swish": "silu", "Shrink": "hardtanh", "Not": "not",
    "IsNaN": "eq", "IsInf": "eq", "BitwiseNot": "not", "Det": "mul",
}
# ops whose backward saves the output rather than the input (as autograd does)
_SAVES_OUTPUT = {"relu", "sigmoid", "tanh", "exp", "sqrt", "reciprocal", "elu"}
# ops with no gradient (comparisons, rounding, logic)
_NO_GRAD = {"eq", "ne", "lt", "le", "gt", "ge", "not", "and", "or", "xor", "sign", "floor", "ceil", "round"}
BINARY = {
    "Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow", "Max": "maximum", "Min": "minimum",
    "Sum": "add", "Mean": "add", "Equal": "eq", "Less": "lt", "LessOrEqual": "le", "Greater": "gt",
    "GreaterOrEqual": "ge", "And": "and", "Or": "or", "Xor": "xor", "Where": "where", "Mod": "div",
    "BitShift": "mul", "BitwiseAnd": "and", "BitwiseOr": "or", "BitwiseXor": "xor", "BiasAdd": "add",
    "CumSum": "add",
}


def _unary(n: Node) -> OpCost:
    x, y = n.in_shapes[0], n.out_shapes[0]
    y = y if y is not None else x
    _need(x, y)
    name = UNARY[n.op_type]
    ins = [s for s in n.in_shapes if s is not None]
    # opset-20 Gelu(approximate="tanh") (and a decomposed tanh-GELU): forward priced as torch prices
    # F.gelu(approximate="tanh") (gelu_tanh FLOPs); its backward as torch's gelu_backward, whatever the approximation
    approx = n.attrs.get("approximate", "none")
    tanh = n.op_type == "Gelu" and n.domain in ("", "ai.onnx") and (
        approx.decode() if isinstance(approx, bytes) else str(approx)) == "tanh"
    fwd = C.elementwise("gelu_tanh" if tanh else name, ins, y, n.out_dtypes[0] or n.dtype,
                        in_dtypes=[d or n.dtype for d, s in zip(n.in_dtypes, n.in_shapes) if s])
    bwd, saved = [], []
    if n.in_grad and n.in_grad[0] and name not in _NO_GRAD:
        bwd.append(C.elementwise(name, [y, x], x, n.dtype, backward=True))
        saved.append(_saved_out(n) if name in _SAVES_OUTPUT else _saved(n, 0))
        for i in range(1, len(n.in_shapes)):  # PRelu slope, BiasGelu bias: gradient reduced over broadcast dims
            if n.in_grad[i] and n.in_shapes[i] is not None:
                bwd.append(C.reduction(y, n.dtype, out_shape=n.in_shapes[i]))
    return OpCost(fwd, bwd, saved, out=tuple(y))


def _binary(n: Node) -> OpCost:
    shapes = [s for s in n.in_shapes if s is not None]
    if not shapes:
        raise Unsupported("unknown shape")
    y = n.out_shapes[0]
    if y is None:
        y = shapes[0]
        for s in shapes[1:]:
            y = C.broadcast_shapes(y, s)
    name = BINARY[n.op_type]
    dt = n.out_dtypes[0] or n.dtype
    fwd = C.elementwise(name, shapes, y, dt, in_dtypes=[d or dt for d, s in zip(n.in_dtypes, n.in_shapes) if s])
    if len(shapes) > 2:  # variadic Sum/Max/Min/Mean: n-1 pairwise ops
        fwd = Cost(fwd.flops * (len(shapes) - 1), fwd.bytes_read, fwd.bytes_written, fwd.kind)
    bwd, saved = [], []
    if name in _NO_GRAD:
        return OpCost(fwd, bwd, saved)
    first_data = 1 if n.op_type == "Where" else 0
    for i in range(first_data, len(n.in_shapes)):
        s = n.in_shapes[i]
        if s is None or not n.in_grad[i]:
            continue
        if name == "add" or (name == "sub" and i == 0):
            pass  # autograd passes the gradient through
        elif name == "sub":
            bwd.append(C.elementwise("neg", [y], y, n.dtype))
        else:
            others = [j for j in range(first_data, len(n.in_shapes)) if j != i and n.in_shapes[j] is not None]
            bwd.append(C.elementwise(name, [y] + [n.in_shapes[j] for j in others], y, n.dtype,
                                     backward=name in ("div", "pow")))
            for j in others:
                if n.in_names[j] and not n.in_const[j]:
                    saved.append(_saved(n, j))
        if tuple(s) != tuple(y) and numel(s) != numel(y):
            bwd.append(C.reduction(y, n.dtype, out_shape=s))
    if n.op_type == "Where" and any(n.in_grad[1:]):
        saved.append(_saved(n, 0))
    return OpCost(fwd, bwd, saved, out=tuple(y))


# ---- matmul family ------------------------------------------------------------------------------------------

def _swap_last(s):
    return tuple(s[:-2]) + (s[-1], s[-2]) if len(s) >= 2 else s


def _matmul(n: Node) -> OpCost:
    a, b = n.in_shapes[0], n.in_shapes[1]
    _need(a, b)
    if len(a) == 0 or len(b) == 0:
        raise Unsupported("scalar matmul operand")
    if n.attrs.get("transA"):  # com.microsoft FusedMatMul
        a = _swap_last(a)
    if n.attrs.get("transB"):
        b = _swap_last(b)
    fwd = C.matmul(a, b, n.dtype, out_dtype=None)
    ga, gb = n.in_grad[0], n.in_grad[1]
    bwd = C.matmul_backward(a, b, n.dtype, grad_a=ga, grad_b=gb) if (ga or gb) else []
    if gb and len(b) == 2 and n.attrs.get("linear_weight"):
        # b is an nn.Linear weight [out, in] read transposed (x @ W^T): autograd computes its gradient as
        # grad_out^T @ x, an [out, rows] x [rows, in] GEMM (m = out, n = in), not x^T @ grad_out (m = in, n = out);
        # the same FLOPs and bytes, but a GEMM's time depends on its orientation
        db = bwd[-1]
        dims = dict(db.dims)
        bwd[-1] = Cost(db.flops, db.bytes_read, db.bytes_written, db.kind,
                       C._dims(b=dims["b"], m=dims["n"], n=dims["m"], k=dims["k"]))
    saved = []
    if gb and not n.in_const[0]:
        saved.append(_saved(n, 0))
    if ga and not n.in_const[1]:
        saved.append(_saved(n, 1))
    return OpCost(fwd, bwd, saved, out=C.matmul_out_shape(a, b))


def _gemm(n: Node) -> OpCost:
    a, b = n.in_shapes[0], n.in_shapes[1]
    _need(a, b)
    if len(a) != 2 or len(b) != 2:
        raise Unsupported("Gemm operands must be 2-D")
    ta, tb = int(n.attrs.get("transA", 0)), int(n.attrs.get("transB", 0))
    m, k = (a[1], a[0]) if ta else (a[0], a[1])
    nn_ = b[0] if tb else b[1]
    cshape = n.in_shapes[2] if len(n.in_shapes) > 2 else None
    bias = numel(cshape) if cshape is not None else 0
    fwd = C.gemm(1, m, nn_, k, n.dtype, bias_elems=bias)
    bwd, saved = [], []
    if n.in_grad[0]:
        bwd.append(C.gemm(1, m, k, nn_, n.dtype))
        if not n.in_const[1]:
            saved.append(_saved(n, 1))
    if n.in_grad[1]:
        # a transposed weight (nn.Linear's [out, in], transB = 1): its gradient is grad_out^T @ x as autograd runs
        # it (m = out, n = in); a weight stored [in, out]: x^T @ grad_out (m = in, n = out)
        bwd.append(C.gemm(1, nn_, k, m, n.dtype) if tb and n.in_const[1] else C.gemm(1, k, nn_, m, n.dtype))
        if not n.in_const[0]:
            saved.append(_saved(n, 0))
    if cshape is not None and len(n.in_grad) > 2 and n.in_grad[2]:
        bwd.append(C.reduction((m, nn_), n.dtype, out_shape=cshape))
    return OpCost(fwd, bwd, saved, out=(m, nn_))


def _einsum(n: Node) -> OpCost:
    shapes = n.in_shapes
    _need(*shapes)
    eq = n.attrs.get("equation", "")
    if isinstance(eq, bytes):
        eq = eq.decode()
    try:
        fwd = C.einsum(eq, shapes, n.dtype)
    except (ValueError, KeyError, IndexError) as e:
        raise Unsupported(str(e)) from None
    # backward of a pairwise contraction: one contraction of the same size per operand that needs a gradient
    bwd = [Cost(fwd.flops, fwd.bytes_read, nbytes(s, n.dtype), fwd.kind, fwd.dims)
           for s, g in zip(shapes, n.in_grad) if g]
    saved = [_saved(n, i) for i in range(len(shapes)) if not n.in_const[i] and any(
        g for j, g in enumerate(n.in_grad) if j != i)]
    return OpCost(fwd, bwd, saved)


# ---- convolution -----------------------------------------------------------------------------------------------

def _conv(n: Node) -> OpCost:
    x, w = n.in_shapes[0], n.in_shapes[1]
    _need(x, w)
    if len(x) < 3 or len(w) != len(x):
        raise Unsupported("conv rank")
    transposed = n.op_type == "ConvTranspose"
    if not n.attrs.get("channels_last"):  # com.microsoft NHWC variants (ORT's QLinearConv): x[1] is not C
        _check_conv_channels(x, w, int(n.attrs.get("group", 1)), transposed)
    y = n.out_shapes[0]
    nsp = len(x) - 2
    kw = dict(stride=list(n.attrs.get("strides", [1] * nsp)), dilation=list(n.attrs.get("dilations", [1] * nsp)),
              padding=list(n.attrs.get("pads", [0] * 2 * nsp))[:nsp] or [0] * nsp,
              groups=int(n.attrs.get("group", 1)), transposed=transposed,
              bias=len(n.in_shapes) > 2 and n.in_shapes[2] is not None)
    if any(int(v) < 1 for v in (*kw["stride"], *kw["dilation"])):
        raise Malformed(f"strides {kw['stride']}, dilations {kw['dilation']}: each must be >= 1")
    if y is not None and len(y) == len(x):
        if any(int(v) < 1 for v in y[2:]):
            raise Malformed(f"output spatial size {list(y[2:])}: the kernel {list(w[2:])} is larger than the "
                            f"padded input {list(x[2:])}")
        kw["out_spatial"] = tuple(y[2:])
    elif n.attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise Unsupported("unknown output shape with auto_pad")
    try:
        fwd = C.conv(x, w, n.dtype, **kw)
    except ValueError as e:  # conv_out_spatial: no output element (the kernel larger than the padded input)
        pads = list(n.attrs.get("pads", [0] * 2 * nsp))
        if pads[:nsp] != pads[nsp:]:  # sized with the leading pads on both sides: not known to be empty
            raise Unsupported("unknown output shape with asymmetric pads") from None
        raise Malformed(str(e)) from None
    gx, gw = n.in_grad[0], n.in_grad[1]
    bwd = C.conv_backward(x, w, n.dtype, input_grad=gx, weight_grad=gw, **kw) if (gx or gw) else []
    saved = []
    if gw and not n.in_const[0]:
        saved.append(_saved(n, 0))
    return OpCost(fwd, bwd, saved)


def _check_conv_channels(x: Shape, w: Shape, group: int, transposed: bool) -> None:
    """ONNX Conv: W is [M, C/group, k...], so C = W[1] x group and group divides M; ConvTranspose: W is
    [C, M/group, k...], so C = W[0] and group divides C. Shape inference does not check either."""
    if group < 1:
        raise Malformed(f"group {group} (must be >= 1)")
    if transposed:
        if x[1] != w[0] or w[0] % group:
            raise Malformed(f"input has {x[1]} channels, weight {list(w)} with group {group} needs {w[0]} "
                            f"(divisible by the group)")
    elif x[1] != w[1] * group or w[0] % group:
        raise Malformed(f"input has {x[1]} channels, weight {list(w)} with group {group} needs "
                        f"{w[1] * group}" + (f" and {w[0]} output channels divisible by {group}" if w[0] % group
                                             else ""))


# ---- attention (fused contrib and opset-23 ops) -----------------------------------------------------------------

def _attention_core(n: Node, b, h, sq, sk, d, dv, causal, kvh=None, extra_fwd=None, extra_bwd=(), proj=None):
    dt = n.dtype
    fwd = C.attention(b, h, sq, sk, d, dv, dt, causal=causal, kv_heads=kvh)
    bwd, saved = [], []
    if _any_grad(n):
        bwd.append(C.attention_backward(b, h, sq, sk, d, dv, dt, causal=causal, kv_heads=kvh))
        kvh_ = kvh or h
        saved.append((n.out_names[0] + "#qkvo", (b * h * sq * (d + dv) + b * kvh_ * sk * (d + dv)) * C.dtype_bytes(dt)
                      + b * h * sq * 4))
    if extra_fwd is not None:
        fwd = extra_fwd + fwd
    bwd.extend(extra_bwd)
    return OpCost(Cost(fwd.flops, fwd.bytes_read, fwd.bytes_written, OpKind.ATTENTION, fwd.dims), bwd, saved)


def _ms_attention(n: Node) -> OpCost:
    """com.microsoft Attention: packed QKV projection (input @ weights + bias) + multi-head attention."""
    x, w = n.in_shapes[0], n.in_shapes[1]
    _need(x, w)
    if len(x) != 3 or len(w) != 2:
        raise Unsupported("Attention input rank")
    b, s, hin = x
    heads = int(n.attrs.get("num_heads", 1))
    sizes = list(n.attrs.get("qkv_hidden_sizes", []) or [w[1] // 3] * 3)
    dq, dvv = sizes[0] // heads, sizes[2] // heads
    past = 0
    if len(n.in_shapes) > 4 and n.in_shapes[4] is not None and len(n.in_shapes[4]) == 5:
        past = n.in_shapes[4][3]
    causal = bool(int(n.attrs.get("unidirectional", 0)))
    bias = n.in_shapes[2] if len(n.in_shapes) > 2 else None
    proj = C.gemm(1, b * s, w[1], hin, n.dtype, bias_elems=numel(bias) if bias is not None else 0)
    pb = []
    if n.in_grad[0]:
        pb.append(C.gemm(1, b * s, hin, w[1], n.dtype))
    if n.in_grad[1]:
        pb.append(C.gemm(1, hin, w[1], b * s, n.dtype))
    core = _attention_core(n, b, heads, s, s + past, dq, dvv, causal, extra_fwd=proj, extra_bwd=pb)
    if n.in_grad[1] and not n.in_const[0]:
        core.saved.append(_saved(n, 0))
    core.out = (b, s, sizes[2])
    return core


def _ms_mha(n: Node) -> OpCost:
    """com.microsoft MultiHeadAttention / GroupQueryAttention: Q, K, V already projected."""
    q = n.in_shapes[0]
    _need(q)
    heads = int(n.attrs.get("num_heads", 1))
    kvh = int(n.attrs.get("kv_num_heads", 0)) or None
    k = n.in_shapes[1] if len(n.in_shapes) > 1 else None
    v = n.in_shapes[2] if len(n.in_shapes) > 2 else None
    if len(q) == 3:
        b, sq, hq = q
        d = hq // heads
        if k is None:  # packed qkv
            sk, dv = sq, d
        elif len(k) == 3:
            sk, dv = k[1], (v[2] // (kvh or heads) if v is not None and len(v) == 3 else d)
        else:
            sk, dv = k[2], (v[3] if v is not None and len(v) == 4 else d)
    elif len(q) == 5:  # packed [B, S, N, 3, H]
        b, sq, heads, _, d = q
        sk, dv = sq, d
    else:
        raise Unsupported("MultiHeadAttention query rank")
    causal = n.op_type == "GroupQueryAttention" or bool(int(n.attrs.get("unidirectional", 0)))
    oc = _attention_core(n, b, heads, sq, sk, d, dv, causal, kvh=kvh)
    oc.out = (b, sq, heads * dv)
    return oc


def _onnx_attention(n: Node) -> OpCost:
    """ai.onnx Attention (opset 23+): Q/K/V 4-D [B, heads, S, d] or 3-D with q_num_heads / kv_num_heads."""
    q, k, v = (n.in_shapes + [None, None, None])[:3]
    _need(q, k, v)
    if len(q) == 4:
        b, h, sq, d = q
        kvh, sk, dv = k[1], k[2], v[3]
    elif len(q) == 3:
        h = int(n.attrs.get("q_num_heads", 1))
        kvh = int(n.attrs.get("kv_num_heads", h))
        b, sq, hq = q
        d = hq // h
        sk, dv = k[1], v[2] // kvh
    else:
        raise Unsupported("Attention rank")
    past = n.in_shapes[4] if len(n.in_shapes) > 4 else None
    if past is not None and len(past) == 4:
        sk += past[2]
    return _attention_core(n, b, h, sq, sk, d, dv, bool(int(n.attrs.get("is_causal", 0))),
                           kvh=kvh if kvh != h else None)


# ---- normalization, softmax -----------------------------------------------------------------------------------

def _norm_kind(n: Node) -> str:
    return {"BatchNormalization": "batch", "InstanceNormalization": "instance", "GroupNormalization": "group",
            "SimplifiedLayerNormalization": "rms", "SkipSimplifiedLayerNormalization": "rms",
            "RMSNormalization": "rms"}.get(n.op_type, "layer")


def _norm(n: Node) -> OpCost:
    x = n.in_shapes[0]
    _need(x)
    kind = _norm_kind(n)
    dt = n.dtype
    pre = Cost(kind=OpKind.NORM)
    sc = 1
    if n.op_type.startswith("Skip"):  # x + skip (+ bias) fused in
        pre = C.elementwise("add", [x, x], x, dt)
        sc = 2
    normalized = groups = None
    affine = len(n.in_shapes) > sc and n.in_shapes[sc] is not None
    if kind in ("layer", "rms"):
        axis = int(n.attrs.get("axis", -1))
        axis = axis + len(x) if axis < 0 else axis
        normalized = numel(x[axis:]) if x else 1
    elif kind == "group":
        groups = int(n.attrs.get("num_groups", 1))
        if affine:  # scale [C] (opset 21) or [num_groups] (opset 18)
            normalized = numel(n.in_shapes[sc])
    # a bias beside the weight: BatchNorm / InstanceNorm / GroupNorm always, LayerNormalization when its B is given,
    # none for RMS norms (SkipSimplifiedLayerNormalization's optional input 3 is the skip's bias, added in `pre`)
    bias = affine and kind != "rms" and (kind != "layer" or (len(n.in_shapes) > sc + 1
                                                             and n.in_shapes[sc + 1] is not None))
    if kind == "batch" and len(x) < 2:
        raise Unsupported("BatchNormalization rank")
    fwd = pre + C.norm(x, dt, kind, affine=affine, normalized_elems=normalized, bias=bias, groups=groups)
    fwd = Cost(fwd.flops, fwd.bytes_read, fwd.bytes_written, OpKind.NORM)
    bwd, saved = [], []
    if _any_grad(n):
        bwd.append(C.norm(x, dt, kind, affine=affine, normalized_elems=normalized, backward=True, bias=bias,
                          groups=groups))
        ch = x[1] if len(x) > 1 else 1
        stats = (numel(x) // max(normalized or 1, 1)) if kind in ("layer", "rms") else \
            ch if kind == "batch" else x[0] * (groups if kind == "group" else ch)
        saved.append(_saved(n, 0))
        saved.append((n.out_names[0] + "#stats", 2 * stats * 4))
    return OpCost(fwd, bwd, saved, out=tuple(x))


def group_norm(x: Shape, groups: int, dtype: str, x_name: str, out_name: str, *, affine: bool,
               grad: bool, bias: bool | None = None) -> OpCost:
    """One native_group_norm over ``x`` [N, C, *] in ``groups`` groups (a decomposed GroupNorm:
    :func:`.onnx_patterns.find_groupnorm`), priced as the PyTorch path prices aten.native_group_norm and its
    backward (the same :func:`wattlint.costs.norm` call: its weight and bias are C elements); saved for backward: x
    and the fp32 mean / rstd, N x G each."""
    fwd = C.norm(x, dtype, "group", affine=affine, normalized_elems=int(x[1]), bias=bias, groups=groups)
    bwd, saved = [], []
    if grad:
        bwd.append(C.norm(x, dtype, "group", affine=affine, normalized_elems=int(x[1]), backward=True, bias=bias,
                          groups=groups))
        saved.append((x_name, nbytes(x, dtype)))
        saved.append((out_name + "#stats", 2 * int(x[0]) * int(groups) * 4))
    return OpCost(fwd, bwd, saved, out=tuple(x))


def _lpnorm(n: Node) -> OpCost:
    x = n.in_shapes[0]
    _need(x)
    fwd = C.reduction(x, n.dtype, out_shape=x, flops_per_element=3)
    fwd = Cost(fwd.flops, fwd.bytes_read, fwd.bytes_written, OpKind.NORM)
    bwd = [C.norm(x, n.dtype, "rms", affine=False, backward=True)] if _any_grad(n) else []
    return OpCost(fwd, bwd, [_saved(n, 0)] if bwd else [])


def _softmax(n: Node) -> OpCost:
    x = n.in_shapes[0]
    _need(x)
    fwd = C.softmax(x, n.dtype)
    bwd = [C.softmax(x, n.dtype, backward=True)] if _any_grad(n) else []
    return OpCost(fwd, bwd, [_saved_out(n)] if bwd else [], out=tuple(x))


# ---- pooling, reductions ----------------------------------------------------------------------------------------

def _pool(n: Node) -> OpCost:
    x, y = n.in_shapes[0], n.out_shapes[0]
    _need(x)
    if len(x) < 3:
        raise Unsupported("pool rank")
    glob = n.op_type.startswith("Global")
    if glob:
        kernel = tuple(x[2:])
        y = tuple(x[:2]) + (1,) * (len(x) - 2)
    else:
        kernel = tuple(n.attrs.get("kernel_shape", ()))
        if any(int(v) < 1 for v in n.attrs.get("strides", ())):
            raise Malformed(f"strides {list(n.attrs['strides'])}: each must be >= 1")
        _need(y)
    kind = "max" if "Max" in n.op_type else "avg"
    fwd = C.pool(x, y, kernel, n.dtype, kind=kind)
    if glob and kind == "avg":  # a mean over the spatial dims: no indices
        fwd = Cost(fwd.flops, fwd.bytes_read, fwd.bytes_written, OpKind.POOL)
    bwd, saved = [], []
    if _any_grad(n):
        bwd.append(C.pool(x, y, kernel, n.dtype, kind=kind, backward=True))
        if kind == "max":
            saved.append((n.out_names[0] + "#idx", numel(y) * 8))
    return OpCost(fwd, bwd, saved)


_REDUCE_FLOPS = {"ReduceSumSquare": 2, "ReduceL2": 2, "ReduceL1": 2, "ReduceLogSumExp": 6, "ReduceLogSum": 2,
                 "ReduceMean": 1, "ReduceSum": 1, "ReduceMax": 1, "ReduceMin": 1, "ReduceProd": 1,
                 "ArgMax": 1, "ArgMin": 1, "TopK": 2}


def _reduce(n: Node) -> OpCost:
    x, y = n.in_shapes[0], n.out_shapes[0]
    _need(x)
    y = y if y is not None else ()
    fwd = C.reduction(x, n.in_dtypes[0] or n.dtype, out_shape=y, flops_per_element=_REDUCE_FLOPS.get(n.op_type, 1),
                      out_dtype=n.out_dtypes[0] or n.dtype)
    bwd, saved = [], []
    if n.in_grad and n.in_grad[0] and n.op_type not in ("ArgMax", "ArgMin"):
        # expand dy back over the reduced dims (+ scale / mask)
        bwd.append(C.elementwise("div", [y], x, n.dtype))
        if n.op_type not in ("ReduceMean", "ReduceSum"):
            saved.append(_saved(n, 0))
    return OpCost(fwd, bwd, saved)


# ---- data movement, indexing ----------------------------------------------------------------------------------

MEMORY_OPS = {"Transpose", "Concat", "Slice", "Split", "Pad", "Tile", "Expand", "Cast", "CastLike",
              "DepthToSpace", "SpaceToDepth", "ReverseSequence", "Compress", "Trilu", "OneHot", "Range",
              "ConstantOfShape", "EyeLike", "NonZero", "Unique", "Col2Im", "CenterCropPad", "RandomNormal",
              "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial",
              "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear"}
# backward of a data movement as autograd runs it: None = free (a view of the gradient)
_MEMORY_BWD = {"Transpose": None, "Concat": None, "Pad": None, "Slice": "copy", "Split": "copy", "Cast": "copy",
               "CastLike": "copy", "Expand": "sum", "Tile": "sum", "DepthToSpace": "copy", "SpaceToDepth": "copy",
               "Trilu": "copy", "ReverseSequence": "copy", "Compress": "copy",
               # quantization-aware training (fake quantization, QuantizeLinear -> DequantizeLinear): the
               # straight-through estimator, one masked copy of the gradient per pair (torch's fake_quantize
               # backward); DequantizeLinear's is a view of it
               "QuantizeLinear": "copy"}
# ops whose (integer) output carries the gradient of their float input: the straight-through estimator of QAT
STRAIGHT_THROUGH = {"QuantizeLinear", "DequantizeLinear"}


# data movements that are views in PyTorch (permute, split, narrow, expand): free in forward, as on the PyTorch
# path; their backward (cat, copy into zeros, sum over the broadcast) is not
TORCH_VIEWS = {"Transpose", "Split", "Slice", "Expand"}


def _memory(n: Node) -> OpCost:
    outs = [s for s in n.out_shapes if s is not None]
    ins = [s for s in n.in_shapes[:1] if s is not None]
    if not outs:
        raise Unsupported("unknown output shape")
    w = sum(numel(s) for s in outs)
    if n.op_type == "Concat":
        r = sum(numel(s) for s in n.in_shapes if s is not None)
    elif n.op_type in ("ConstantOfShape", "Range", "EyeLike", "RandomNormal", "RandomUniform", "OneHot"):
        r = 0
    else:
        r = numel(ins[0]) if ins else w
    odt = n.out_dtypes[0] or n.dtype
    idt = (n.in_dtypes[0] if n.in_dtypes else None) or odt
    fwd = C.memory(r, w, odt, read_dtype=idt)
    view = n.op_type in TORCH_VIEWS
    if view:
        fwd = Cost(kind=OpKind.VIEW)
    bwd = []
    how = _MEMORY_BWD.get(n.op_type)
    if n.in_grad and n.in_grad[0] and how and ins:
        if how == "copy":
            bwd.append(C.memory(w, numel(ins[0]), n.dtype))
        else:
            bwd.append(C.reduction(outs[0], n.dtype, out_shape=ins[0]))
    return OpCost(fwd, bwd, [], ignored=view)


def _resize(n: Node) -> OpCost:
    x, y = n.in_shapes[0], n.out_shapes[0]
    _need(x, y)
    mode = n.attrs.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    per = {"nearest": 0, "linear": 4, "cubic": 16}.get(mode, 4)
    fwd = Cost(per * numel(y), nbytes(x, n.dtype), nbytes(y, n.dtype), OpKind.MEMORY)
    bwd = [Cost(per * numel(y) + numel(y), nbytes(y, n.dtype), nbytes(x, n.dtype), OpKind.MEMORY)] \
        if n.in_grad and n.in_grad[0] else []
    return OpCost(fwd, bwd, [])


def _gather(n: Node) -> OpCost:
    data, idx, y = n.in_shapes[0], n.in_shapes[1], n.out_shapes[0]
    _need(data, idx)
    idt = n.in_dtypes[1] or "int64"
    ddt = n.in_dtypes[0] or n.dtype
    bwd = []
    if n.op_type == "Gather" and n.in_const[0] and len(data) == 2 and int(n.attrs.get("axis", 0)) == 0:
        fwd = C.embedding(numel(idx), data[1], ddt, index_dtype=idt)
        if n.in_grad[0]:
            bwd.append(C.embedding(numel(idx), data[1], n.dtype, index_dtype=idt, backward=True,
                                   num_embeddings=data[0]))
        saved = [_saved(n, 1)] if bwd and not n.in_const[1] else []
        return OpCost(fwd, bwd, saved)
    _need(y)
    fwd = C.gather(numel(y), numel(idx), ddt, index_dtype=idt)
    if n.in_grad[0]:
        bwd.append(C.gather(numel(y), numel(idx), n.dtype, index_dtype=idt, scatter_add=True))
    return OpCost(fwd, bwd, [_saved(n, 1)] if bwd and not n.in_const[1] else [])


def _scatter(n: Node) -> OpCost:
    data, idx = n.in_shapes[0], n.in_shapes[1]
    upd = n.in_shapes[2] if len(n.in_shapes) > 2 else None
    _need(data, idx, upd)
    ddt = n.in_dtypes[0] or n.dtype
    red = n.attrs.get("reduction", b"none")
    fwd = C.memory(numel(data), numel(data), ddt) + C.gather(numel(upd), numel(idx), ddt,
                                                             scatter_add=red not in (b"none", "none"))
    fwd = Cost(fwd.flops, fwd.bytes_read, fwd.bytes_written, OpKind.INDEX)
    bwd = []
    if n.in_grad[0]:
        bwd.append(C.memory(numel(data), numel(data), n.dtype))
    if len(n.in_grad) > 2 and n.in_grad[2]:
        bwd.append(C.gather(numel(upd), numel(idx), n.dtype))
    return OpCost(fwd, bwd, [])


# ---- recurrent ----------------------------------------------------------------------------------------------------

def _rnn(n: Node) -> OpCost:
    """LSTM / GRU / RNN (one layer, one or both directions) as the kernels cuDNN launches for it
    (:func:`costs.rnn_direction`: the input projection over all steps, then per step a GEMM and the cell; backward
    per step in reverse, then the weight gradients over all steps), the same records the PyTorch frontend traces
    for nn.LSTM / GRU / RNN; all of them one library call (one host launch per phase)."""
    x, w = n.in_shapes[0], n.in_shapes[1]
    _need(x, w)
    if len(x) != 3 or len(w) != 3:
        raise Unsupported("RNN rank")
    layout = int(n.attrs.get("layout", 0))
    seq, batch, inp = (x[1], x[0], x[2]) if layout else (x[0], x[1], x[2])
    hidden = int(n.attrs.get("hidden_size", 0)) or w[1] // C.RNN_GATES.get(n.op_type.lower(), 1)
    direction = n.attrs.get("direction", b"forward")
    dirs = 2 if direction in (b"bidirectional", "bidirectional") else 1
    if n.op_type == "LSTM":
        mode = "lstm"
    elif n.op_type == "GRU":
        mode = "gru"
    else:
        acts = [a.decode() if isinstance(a, bytes) else a for a in n.attrs.get("activations", [])]
        mode = "rnn_relu" if acts and acts[0].lower() == "relu" else "rnn_tanh"
    bias = len(n.in_shapes) > 3 and n.in_shapes[3] is not None
    grad = _any_grad(n)
    weight_grad = any(n.in_grad[1:4]) if len(n.in_grad) > 1 else False
    fwd: list = []
    bwd: list = []
    for _ in range(dirs):
        f, b = C.rnn_direction(mode, seq, batch, inp, hidden, n.dtype, bias=bias,
                               input_grad=bool(n.in_grad and n.in_grad[0]), weight_grad=weight_grad)
        fwd += f
        bwd += b
    saved = []
    if grad:
        saved.append((n.out_names[0] + "#rnn", dirs * C.rnn_saved_bytes(mode, seq, batch, hidden, n.dtype)))
        if not n.in_const[0]:
            saved.append(_saved(n, 0))
    return OpCost(fwd[0], bwd if grad else [], saved, more=fwd[1:], lib_call=True)


def _dropout(n: Node) -> OpCost:
    """Dropout: an identity unless its training_mode input is a constant true (a train-mode export: torch writes it
    with its mask output), then a mask drawn, multiplied and scaled, and its backward (``values[2]``: set by the
    frontend from the constant)."""
    if not n.values.get(2):
        return _view(n)
    x = n.in_shapes[0]
    _need(x)
    fwd = C.dropout(x, n.dtype)
    bwd, saved = [], []
    if n.in_grad and n.in_grad[0]:
        bwd.append(C.dropout(x, n.dtype, backward=True))
        saved.append((n.out_names[-1] if len(n.out_names) > 1 and n.out_names[-1] else n.out_names[0] + ":mask",
                      numel(x)))  # the bool mask
    return OpCost(fwd, bwd, saved, out=tuple(x))


# ---- registry -----------------------------------------------------------------------------------------------------

HANDLERS: dict[str, Callable[[Node], OpCost]] = {}
for _op in VIEW_OPS:
    HANDLERS[_op] = _view
HANDLERS["Dropout"] = _dropout
for _op in UNARY:
    HANDLERS[_op] = _unary
for _op in BINARY:
    HANDLERS[_op] = _binary
for _op in MEMORY_OPS:
    HANDLERS[_op] = _memory
for _op in _REDUCE_FLOPS:
    HANDLERS[_op] = _reduce
HANDLERS.update({
    "MatMul": _matmul, "MatMulInteger": _matmul, "FusedMatMul": _matmul, "Gemm": _gemm, "Einsum": _einsum,
    "Conv": _conv, "ConvTranspose": _conv, "ConvInteger": _conv, "FusedConv": _conv,
    "Attention": None, "MultiHeadAttention": _ms_mha, "GroupQueryAttention": _ms_mha,
    "BatchNormalization": _norm, "LayerNormalization": _norm, "InstanceNormalization": _norm,
    "GroupNormalization": _norm, "SimplifiedLayerNormalization": _norm, "RMSNormalization": _norm,
    "SkipLayerNormalization": _norm, "SkipSimplifiedLayerNormalization": _norm,
    "LpNormalization": _lpnorm, "MeanVarianceNormalization": _lpnorm,
    "Softmax": _softmax, "LogSoftmax": _softmax, "Hardmax": _softmax,
    "MaxPool": _pool, "AveragePool": _pool, "LpPool": _pool, "GlobalAveragePool": _pool, "GlobalMaxPool": _pool,
    "GlobalLpPool": _pool,
    "Gather": _gather, "GatherElements": _gather, "GatherND": _gather,
    "ScatterND": _scatter, "ScatterElements": _scatter, "Scatter": _scatter,
    "Resize": _resize, "Upsample": _resize,
    "LSTM": _rnn, "GRU": _rnn, "RNN": _rnn,
})
del HANDLERS["Attention"]

# contrib ops (com.microsoft) that share a name with an ai.onnx op but differ in semantics
CONTRIB_HANDLERS: dict[str, Callable[[Node], OpCost]] = {"Attention": _ms_attention}
ONNX_ONLY_HANDLERS: dict[str, Callable[[Node], OpCost]] = {"Attention": _onnx_attention}
# ops that carry a gradient through their (first) input for the requires-grad propagation
NON_DIFFERENTIABLE_OUTPUTS = {"Shape", "Size", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not",
                              "And", "Or", "Xor", "ArgMax", "ArgMin", "NonZero", "IsNaN", "IsInf", "Sign",
                              "Floor", "Ceil", "Round", "ConstantOfShape", "Range", "EyeLike", "OneHot",
                              "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                              "Bernoulli", "Multinomial", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
                              "BitwiseNot", "Constant"}
# input positions that are shapes / indices / axes, never data that needs a gradient
SHAPE_INPUTS: dict[str, Sequence[int]] = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4), "Pad": (1, 2, 3), "Squeeze": (1,),
    "Unsqueeze": (1,), "Split": (1,), "ConstantOfShape": (0,), "Resize": (1, 2, 3), "Upsample": (1,),
    "TopK": (1,), "ReduceMean": (1,), "ReduceSum": (1,), "ReduceMax": (1,), "ReduceMin": (1,),
    "ReduceProd": (1,), "ReduceL1": (1,), "ReduceL2": (1,), "ReduceSumSquare": (1,), "ReduceLogSum": (1,),
    "ReduceLogSumExp": (1,), "Gather": (1,), "GatherElements": (1,), "GatherND": (1,), "ScatterND": (1,),
    "ScatterElements": (1,), "Scatter": (1,), "OneHot": (0, 1), "Range": (0, 1, 2), "CumSum": (1,),
    "Trilu": (1,), "Where": (0,), "Clip": (1, 2), "Loop": (0, 1), "If": (0,), "Dropout": (1, 2),
    "BatchNormalization": (3, 4), "Compress": (1,), "ReverseSequence": (1,), "Attention": (3, 4, 5),
    "LSTM": (4, 5, 6), "GRU": (4, 5), "RNN": (4, 5),
}


# ---- more contrib / quantized / loss ops ------------------------------------------------------------------------

def _positions(n: Node, pos: Sequence[int]) -> Node:
    """A view of ``n`` with only the inputs at ``pos`` (quantized ops interleave scales and zero points)."""
    pick = lambda xs: [xs[i] if i < len(xs) else None for i in pos]  # noqa: E731
    return Node(n.op_type, n.domain, n.attrs, pick(n.in_shapes), pick(n.in_dtypes), n.out_shapes, n.out_dtypes,
                pick(n.in_names), n.out_names, [bool(x) for x in pick(n.in_const)],
                [bool(x) for x in pick(n.in_grad)], n.dtype, n.values)


def _qlinear_matmul(n: Node) -> OpCost:
    return _matmul(_positions(n, (0, 3)))


def _qlinear_conv(n: Node) -> OpCost:
    return _conv(_positions(n, (0, 3, 8) if len(n.in_shapes) > 8 else (0, 3)))


def _matmul_nbits(n: Node) -> OpCost:
    """com.microsoft MatMulNBits: A [.., K] @ dequantized B [K, N] (N, K attributes; B packed 4-bit blocks)."""
    a = n.in_shapes[0]
    _need(a)
    k, nn_ = int(n.attrs.get("K", a[-1])), int(n.attrs.get("N", 0))
    if not nn_:
        raise Unsupported("MatMulNBits without N")
    bits = int(n.attrs.get("bits", 4))
    rows = numel(a) // max(k, 1)
    e = C.dtype_bytes(n.dtype)
    fwd = C.gemm(1, rows, nn_, k, n.dtype, b_elems=0)
    fwd = Cost(fwd.flops, fwd.bytes_read + k * nn_ * bits // 8, fwd.bytes_written, fwd.kind, fwd.dims)
    bwd = [C.gemm(1, rows, k, nn_, n.dtype)] if n.in_grad[0] else []  # packed weights are frozen
    del e
    return OpCost(fwd, bwd, [], out=tuple(a[:-1]) + (nn_,))


def _embed_layer_norm(n: Node) -> OpCost:
    """com.microsoft EmbedLayerNormalization: word + position (+ segment) embeddings, summed, then LayerNorm."""
    ids = n.in_shapes[0]
    _need(ids)
    tables = [(i, n.in_shapes[i]) for i in (2, 3, 4) if i < len(n.in_shapes) and n.in_shapes[i] is not None]
    if not tables:
        raise Unsupported("EmbedLayerNormalization without tables")
    hidden = tables[0][1][-1]
    rows = numel(ids)
    out = tuple(ids) + (hidden,)
    fwd = Cost(kind=OpKind.EMBEDDING)
    bwd = []
    for i, t in tables:
        fwd = fwd + C.embedding(rows, hidden, n.dtype)
        if n.in_grad[i]:
            bwd.append(C.embedding(rows, hidden, n.dtype, backward=True, num_embeddings=t[0]))
    fwd = fwd + C.elementwise("add", [out] * len(tables), out, n.dtype).scaled(1) + C.norm(out, n.dtype, "layer")
    fwd = Cost(fwd.flops, fwd.bytes_read, fwd.bytes_written, OpKind.NORM)
    bwd.insert(0, C.norm(out, n.dtype, "layer", backward=True))
    return OpCost(fwd, bwd, [(n.out_names[0] + "#ln", nbytes(out, n.dtype))], out=out)


def _lrn(n: Node) -> OpCost:
    x = n.in_shapes[0]
    _need(x)
    size = int(n.attrs.get("size", 5))
    fwd = Cost((2 * size + 4) * numel(x), nbytes(x, n.dtype), nbytes(x, n.dtype), OpKind.NORM)
    bwd = [Cost((2 * size + 6) * numel(x), 3 * nbytes(x, n.dtype), nbytes(x, n.dtype), OpKind.NORM)] \
        if n.in_grad and n.in_grad[0] else []
    return OpCost(fwd, bwd, [_saved(n, 0)] if bwd else [])


def _grid_sample(n: Node) -> OpCost:
    x, y = n.in_shapes[0], n.out_shapes[0]
    _need(x, y)
    fwd = Cost(8 * numel(y), nbytes(y, n.dtype) + nbytes(x, n.dtype), nbytes(y, n.dtype), OpKind.INDEX)
    bwd = [Cost(10 * numel(y), 2 * nbytes(y, n.dtype), nbytes(x, n.dtype), OpKind.INDEX)] \
        if n.in_grad and n.in_grad[0] else []
    return OpCost(fwd, bwd, [])


def _loss_op(n: Node) -> OpCost:
    """SoftmaxCrossEntropyLoss / NegativeLogLikelihoodLoss in training graphs: scores [N, C, ...]."""
    x = n.in_shapes[0]
    _need(x)
    classes = x[1] if len(x) >= 2 else 1
    rows = numel(x) // max(classes, 1)
    if n.op_type == "SoftmaxCrossEntropyLoss":
        fwd, b = C.cross_entropy(rows, classes, n.dtype), C.cross_entropy(rows, classes, n.dtype, backward=True)
    else:
        fwd, b = C.nll_loss(rows, n.dtype), C.nll_loss(rows, n.dtype, backward=True, classes=classes)
    return OpCost(fwd, [b] if n.in_grad and n.in_grad[0] else [], [_saved(n, 0)])


def _rotary(n: Node) -> OpCost:
    x = n.in_shapes[0]
    _need(x)
    fwd = Cost(3 * numel(x), 2 * nbytes(x, n.dtype), nbytes(x, n.dtype), OpKind.ELEMENTWISE)
    bwd = [Cost(3 * numel(x), nbytes(x, n.dtype), nbytes(x, n.dtype), OpKind.ELEMENTWISE)] \
        if n.in_grad and n.in_grad[0] else []
    return OpCost(fwd, bwd, [], out=tuple(x))


def _gemm_fast_gelu(n: Node) -> OpCost:
    mm = _matmul(n)
    y = n.out_shapes[0] or C.matmul_out_shape(n.in_shapes[0], n.in_shapes[1])
    act = C.elementwise("fast_gelu", [y], y, n.dtype)
    bwd = list(mm.bwd) + ([C.elementwise("fast_gelu", [y, y], y, n.dtype, backward=True)] if _any_grad(n) else [])
    return OpCost(Cost(mm.fwd.flops + act.flops, mm.fwd.bytes_read, mm.fwd.bytes_written, OpKind.MATMUL,
                       mm.fwd.dims), bwd, mm.saved + [_saved_out(n)])


def _bias_softmax(n: Node) -> OpCost:
    oc = _softmax(n)
    x = n.in_shapes[0]
    return OpCost(Cost(oc.fwd.flops + numel(x), oc.fwd.bytes_read, oc.fwd.bytes_written, OpKind.SOFTMAX),
                  oc.bwd, oc.saved)


HANDLERS.update({
    "QLinearMatMul": _qlinear_matmul, "QLinearConv": _qlinear_conv, "LRN": _lrn, "GridSample": _grid_sample,
    "SoftmaxCrossEntropyLoss": _loss_op, "NegativeLogLikelihoodLoss": _loss_op, "MaxUnpool": _memory,
})
MEMORY_OPS.add("MaxUnpool")
CONTRIB_HANDLERS.update({
    "MatMulNBits": _matmul_nbits, "EmbedLayerNormalization": _embed_layer_norm, "RotaryEmbedding": _rotary,
    "GemmFastGelu": _gemm_fast_gelu, "BiasSoftmax": _bias_softmax, "BiasDropout": _view,
})
SHAPE_INPUTS.update({"SoftmaxCrossEntropyLoss": (1, 2), "NegativeLogLikelihoodLoss": (1, 2),
                     "EmbedLayerNormalization": (0, 1, 7), "RotaryEmbedding": (1, 2, 3),
                     "QLinearMatMul": (1, 2, 4, 5, 6, 7), "QLinearConv": (1, 2, 4, 5, 6, 7)})


def handler_for(op_type: str, domain: str) -> Callable[[Node], OpCost] | None:
    if domain in ("", "ai.onnx"):
        return ONNX_ONLY_HANDLERS.get(op_type) or HANDLERS.get(op_type)
    if domain == "com.microsoft":
        return CONTRIB_HANDLERS.get(op_type) or HANDLERS.get(op_type)
    return None
