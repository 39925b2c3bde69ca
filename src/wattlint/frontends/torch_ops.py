"""aten op -> cost: the op table of the PyTorch frontend.

Each aten op seen by the recorder is classified as

* **ignored**: free (views, metadata, allocations without initialisation, detach),
* **handled**: a formula from :mod:`wattlint.costs` gives FLOPs and bytes from shapes and dtypes,
* **unsupported**: no formula; the op is still recorded (with its tensor bytes as a lower bound, 0 FLOPs) and
  counted per op name in every report.

Handlers take the op's arguments bound to their schema names (values are meta tensors, lists, scalars) and
the output(s), and return one or more :class:`wattlint.costs.Cost`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from .. import costs as C
from ..types import OpKind

Handler = Callable[[dict, Any], "C.Cost | list[C.Cost]"]

# ---- helpers ---------------------------------------------------------------------------------------------------


def dt(t) -> str:
    return str(t.dtype).rsplit(".", 1)[-1]


def shape(t) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape)


def tensors(obj) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            out.extend(tensors(o))
    elif isinstance(obj, dict):
        for o in obj.values():
            out.extend(tensors(o))
    return out


def tbytes(ts) -> int:
    return sum(t.numel() * t.element_size() for t in ts)


def bind(func, args, kwargs) -> dict:
    """Arguments by schema name (defaults filled)."""
    out = {}
    schema_args = func._schema.arguments
    for i, a in enumerate(schema_args):
        if i < len(args):
            out[a.name] = args[i]
        elif a.name in kwargs:
            out[a.name] = kwargs[a.name]
        elif a.has_default_value():
            out[a.name] = a.default_value
        else:
            out[a.name] = None
    return out


def base_name(func) -> str:
    name = func._schema.name.split("::", 1)[-1]
    return name[:-1] if name.endswith("_") and not name.startswith("_") else name


def compute_dtype(a: dict, out) -> str:
    for v in a.values():
        for t in tensors(v):
            if t.is_floating_point():
                return dt(t)
    for t in tensors(out):
        return dt(t)
    return "float32"


def generic_io(a: dict, out, *, inplace_arg: str | None = None) -> tuple[int, int]:
    read = tbytes(t for v in a.values() for t in tensors(v))
    outs = tensors(out)
    if not outs and inplace_arg is not None:
        outs = tensors(a.get(inplace_arg))
    return read, tbytes(outs)


# ---- classification tables -------------------------------------------------------------------------------------

IGNORED = {
    "view", "_unsafe_view", "_reshape_alias", "reshape", "view_as", "t", "transpose", "permute", "expand",
    "expand_as", "squeeze", "unsqueeze", "slice", "select", "as_strided", "alias", "detach", "split",
    "split_with_sizes", "unbind", "chunk", "narrow", "diagonal", "unfold", "view_as_real", "view_as_complex",
    "lift_fresh", "lift", "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "sym_size",
    "sym_stride", "sym_numel", "sym_storage_offset", "is_same_size", "_has_compatible_shallow_copy_type",
    "resize", "set", "movedim", "clone_ignored", "moveaxis", "swapaxes", "flatten", "unflatten", "_local_scalar_dense",
    "is_nonzero", "numpy_T", "mT", "mH", "adjoint", "real", "conj", "_conj", "_neg_view", "resolve_conj",
    "resolve_neg", "_unsafe_split", "_to_dense", "_assert_async", "_assert_tensor_metadata",
    "_functional_assert_async", "record_stream", "dim", "size", "stride", "unsafe_split",
    "unsafe_split_with_sizes", "unsafe_chunk",
}

# elementwise aten base name -> key of costs.ELEMENTWISE_FLOPS
ELEMENTWISE_ALIAS = {
    "add": "add", "sub": "sub", "rsub": "sub", "mul": "mul", "div": "div", "true_divide": "div",
    "floor_divide": "div", "neg": "neg", "abs": "abs", "reciprocal": "reciprocal", "sign": "sign", "sgn": "sign",
    "maximum": "maximum", "minimum": "minimum", "fmax": "maximum", "fmin": "minimum", "where": "where",
    "masked_fill": "where", "clamp": "clamp", "clamp_min": "clamp", "clamp_max": "clamp", "clip": "clamp",
    "eq": "eq", "ne": "ne", "lt": "lt", "le": "le", "gt": "gt", "ge": "ge", "logical_not": "not",
    "logical_and": "and", "logical_or": "or", "logical_xor": "xor", "bitwise_not": "not", "bitwise_and": "and",
    "bitwise_or": "or", "bitwise_xor": "xor", "floor": "floor", "ceil": "ceil", "round": "round", "trunc": "floor",
    "frac": "sub", "addcmul": "addcmul", "addcdiv": "addcdiv", "lerp": "lerp", "pow": "pow", "sqrt": "sqrt",
    "rsqrt": "rsqrt", "square": "square", "exp": "exp", "exp2": "exp", "log": "log", "log2": "log",
    "log10": "log", "log1p": "log1p", "expm1": "expm1", "sin": "sin", "cos": "cos", "tan": "sin", "erf": "erf",
    "erfc": "erf", "erfinv": "erf", "polar": "polar", "sinh": "exp", "cosh": "exp", "atan": "sin", "asin": "sin",
    "acos": "sin",
    "relu": "relu", "relu6": "relu6", "leaky_relu": "leaky_relu", "hardtanh": "hardtanh", "threshold": "threshold",
    "prelu": "prelu", "_prelu_kernel": "prelu", "sigmoid": "sigmoid", "tanh": "tanh", "silu": "silu",
    "gelu": "gelu", "elu": "elu", "selu": "selu", "celu": "celu", "softplus": "softplus", "mish": "mish",
    "hardswish": "hardswish", "hardsigmoid": "hardsigmoid", "log_sigmoid_forward": "logsigmoid",
    "glu": "glu", "softshrink": "clamp", "hardshrink": "clamp", "isnan": "eq", "isinf": "eq", "isfinite": "eq",
    "nan_to_num": "where", "copysign": "mul", "fmod": "div", "remainder": "div", "xlogy": "log",
    "logaddexp": "exp", "atan2": "sin", "hypot": "sqrt", "heaviside": "gt", "tril": "where", "triu": "where",
    "bernoulli": "fill", "uniform": "fill", "normal": "fill", "exponential": "fill", "random": "fill",
    "rand": "fill", "randn": "fill", "randint": "fill", "rand_like": "fill", "randn_like": "fill",
    "randint_like": "fill",
}
# activation backward ops: aten name -> forward key (cost = BACKWARD_FACTOR x forward per element)
ACT_BACKWARD = {
    "threshold_backward": "relu", "gelu_backward": "gelu", "silu_backward": "silu", "sigmoid_backward": "sigmoid",
    "tanh_backward": "tanh", "hardtanh_backward": "hardtanh", "leaky_relu_backward": "leaky_relu",
    "elu_backward": "elu", "softplus_backward": "softplus", "hardswish_backward": "hardswish",
    "hardsigmoid_backward": "hardsigmoid", "mish_backward": "mish", "log_sigmoid_backward": "logsigmoid",
    "glu_backward": "glu", "_prelu_kernel_backward": "prelu", "softshrink_backward": "clamp",
    "hardshrink_backward": "clamp",
}
FILL = {"fill", "zero", "zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "new_zeros", "new_ones",
        "new_full", "scalar_tensor", "arange", "linspace", "eye", "masked_fill_scalar"}
COPY = {"_to_copy", "copy", "clone", "contiguous", "_copy_from", "_copy_from_and_resize", "to", "cat", "stack",
        "constant_pad_nd", "repeat", "flip", "roll", "slice_scatter", "select_scatter", "as_strided_scatter",
        "diagonal_scatter", "pad", "reflection_pad1d", "reflection_pad2d", "replication_pad1d",
        "replication_pad2d", "repeat_interleave", "_pdist_forward", "tile", "_unsafe_index", "index",
        "index_select", "gather", "take", "masked_select", "narrow_copy", "expand_copy", "permute_copy",
        "transpose_copy", "view_copy", "t_copy", "unsqueeze_copy", "squeeze_copy", "alias_copy",
        "embedding_renorm", "col2im", "im2col", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle",
        "native_channel_shuffle", "slice_backward", "select_backward", "narrow_backward",
        "diagonal_backward", "unfold_backward", "as_strided_backward", "index_select_backward",
        "upsample_nearest2d", "upsample_nearest1d", "upsample_nearest3d",
        "_upsample_nearest_exact2d", "upsample_nearest2d_backward", "_unsafe_index_put", "index_put",
        "index_add", "index_copy", "scatter", "scatter_add", "scatter_reduce", "index_fill", "masked_scatter",
        "put", "_index_put_impl", "new_zeros_like", "lift_fresh_copy", "_fused_moving_avg_obs_fq_helper"}
SCATTER_ADD = {"index_put", "_unsafe_index_put", "index_add", "scatter_add", "scatter_reduce", "_index_put_impl",
               "put", "upsample_nearest2d_backward"}
REDUCTIONS = {"sum": 1, "mean": 1, "amax": 1, "amin": 1, "max": 1, "min": 1, "argmax": 1, "argmin": 1,
              "var": 3, "var_mean": 3, "std": 3, "std_mean": 3, "prod": 1, "all": 1, "any": 1, "norm": 2,
              "linalg_vector_norm": 2, "cumsum": 1, "cumprod": 1, "logsumexp": 6, "nansum": 1, "count_nonzero": 1,
              "aminmax": 2, "_foreach_norm": 2, "logcumsumexp": 6, "topk": 2, "sort": 4, "median": 4, "histc": 1,
              "bincount": 1,
              "kthvalue": 4, "max_unary": 1, "min_unary": 1}


# ---- handlers ---------------------------------------------------------------------------------------------------

def _mm(a, out):
    x, w = a["self"], a["mat2"]
    return C.matmul(shape(x), shape(w), compute_dtype(a, out))


def _addmm(a, out):
    x, w, b = a["mat1"], a["mat2"], a["self"]
    d = compute_dtype(a, out)
    c = C.matmul(shape(x), shape(w), d)
    m, n = shape(x)[0], shape(w)[1]
    bias_elems = b.numel()
    return C.Cost(c.flops + C.add_flops(d) * m * n, c.bytes_read + bias_elems * b.element_size(), c.bytes_written, OpKind.MATMUL,
                  c.dims)


def _bmm(a, out):
    return C.matmul(shape(a["self"]), shape(a["mat2"]), compute_dtype(a, out))


def _baddbmm(a, out):
    d = compute_dtype(a, out)
    c = C.matmul(shape(a["batch1"]), shape(a["batch2"]), d)
    extra = C.add_flops(d) * out.numel() if isinstance(out, torch.Tensor) else 0
    return C.Cost(c.flops + extra, c.bytes_read + a["self"].numel() * a["self"].element_size(), c.bytes_written,
                  OpKind.MATMUL, c.dims)


def _grouped_mm(a, out):
    """torch._grouped_mm (mixture-of-experts grouped GEMM): groups = len(offs), or the batch of a 3-D x 3-D call."""
    x, w, offs = a["self"], a["mat2"], a.get("offs")
    groups = int(offs.shape[0]) if isinstance(offs, torch.Tensor) else (int(x.shape[0]) if x.dim() == 3 else 1)
    bias = a.get("bias")
    return C.grouped_gemm(shape(x), shape(w), groups, compute_dtype(a, out),
                          bias_elems=bias.numel() if isinstance(bias, torch.Tensor) else 0,
                          out_dtype=dt(out) if isinstance(out, torch.Tensor) else None)


def _mv(a, out):
    return C.matmul(shape(a["self"]), shape(a["vec"]), compute_dtype(a, out))


def _addmv(a, out):
    d = compute_dtype(a, out)
    c = C.matmul(shape(a["mat"]), shape(a["vec"]), d)
    return C.Cost(c.flops + C.add_flops(d) * out.numel(), c.bytes_read + tbytes([a["self"]]), c.bytes_written, OpKind.MATMUL, c.dims)


def _dot(a, out):
    """dot(self, tensor) / vdot(self, other) (torch.nn.utils.spectral_norm's power iteration: sigma = vdot(u, W v));
    vdot conjugates ``self`` inside the kernel (free): n multiply-adds either way, 8 real FLOPs each when complex."""
    other = a["tensor"] if "tensor" in a else a["other"]
    return C.matmul(shape(a["self"]), shape(other), compute_dtype(a, out))


def _conv_kw(a):
    return dict(stride=list(a["stride"]), padding=list(a["padding"]), dilation=list(a["dilation"]),
                groups=int(a["groups"]), transposed=bool(a["transposed"]), output_padding=list(a["output_padding"]))


def _channels_last(x) -> bool:
    """A 4-D / 5-D tensor stored channels-last (NHWC / NDHWC): channels innermost (stride 1) and the last spatial
    dim stepping over all channels, which also tells a channels-last 1x1 filter (strides (C, 1, C, C)) from a
    contiguous one ((C, 1, 1, 1)). cuDNN's tensor-core convolutions then need no layout transposes
    (wattlint.energy.prior)."""
    if not isinstance(x, torch.Tensor) or x.dim() not in (4, 5) or int(x.shape[1]) < 2:
        return False
    fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    return x.is_contiguous(memory_format=fmt) and x.stride(1) == 1 and x.stride(-1) == int(x.shape[1])


def _with_layout(c, x, w):
    """Tag a convolution cost with ('nhwc', 1) when its input or weight is stored channels-last (PyTorch then runs
    the cuDNN convolution channels-last: ``cudnn_conv_suggest_memory_format`` in aten/src/ATen/native/ConvUtils.h)."""
    if not (_channels_last(x) or _channels_last(w)):
        return c
    return C.Cost(c.flops, c.bytes_read, c.bytes_written, c.kind, tuple(sorted(c.dims + (("nhwc", 1),))))


def _convolution(a, out):
    x, w = a["input"], a["weight"]
    kw = _conv_kw(a)
    return _with_layout(C.conv(shape(x), shape(w), compute_dtype(a, out), bias=a.get("bias") is not None,
                               out_spatial=shape(out)[2:], **kw), x, w)


def _convolution_backward(a, out):
    x, w = a["input"], a["weight"]
    mask = list(a["output_mask"])
    kw = _conv_kw(a)
    d = compute_dtype(a, out)
    go = a["grad_output"]
    costs = C.conv_backward(shape(x), shape(w), d, input_grad=bool(mask[0]), weight_grad=bool(mask[1]),
                            bias=False, out_spatial=shape(go)[2:], **kw)
    # tag which gradient each GEMM computes (grad=1: input, grad=2: weight)
    tags = ([1] if mask[0] else []) + ([2] if mask[1] else [])
    costs = [_with_layout(C.Cost(c.flops, c.bytes_read, c.bytes_written, c.kind,
                                 tuple(sorted(c.dims + (("grad", g),)))), x, w)
             for c, g in zip(costs, tags)]
    if mask[2]:
        costs.append(C.reduction(shape(go), d, out_shape=(shape(go)[1],)))
    return costs


def _attn_dims(q, k, v):
    b = int(math.prod(q.shape[:-3])) if q.dim() > 3 else 1
    h, sq, d = int(q.shape[-3]), int(q.shape[-2]), int(q.shape[-1])
    kvh, sk, dv = int(k.shape[-3]), int(k.shape[-2]), int(v.shape[-1])
    return b, h, sq, sk, d, dv, kvh


def _mask_bytes(m) -> int:
    """Bytes of an attention mask the kernel reads: its distinct elements (a mask broadcast over heads or batch, a
    stride-0 view, is one mask in memory, read once per tile from cache, not a copy per head)."""
    if not isinstance(m, torch.Tensor):
        return 0
    distinct = 1
    for n, st in zip(m.shape, m.stride()):
        if st != 0:
            distinct *= int(n)
    return distinct * m.element_size()


def _sdpa_fwd(a, out):
    q, k, v = a["query"], a["key"], a["value"]
    b, h, sq, sk, d, dv, kvh = _attn_dims(q, k, v)
    causal = bool(a.get("is_causal") or False)
    mask = a.get("attn_bias", a.get("attn_mask"))
    return C.attention(b, h, sq, sk, d, dv, dt(q), causal=causal, kv_heads=kvh, mask_bytes=_mask_bytes(mask))


def _sdpa_bwd(a, out):
    q, k, v = a["query"], a["key"], a["value"]
    b, h, sq, sk, d, dv, kvh = _attn_dims(q, k, v)
    causal = bool(a.get("is_causal") or False)
    mask = a.get("attn_bias", a.get("attn_mask"))
    return C.attention_backward(b, h, sq, sk, d, dv, dt(q), causal=causal, kv_heads=kvh,
                                mask_bytes=_mask_bytes(mask))


def _layer_norm(a, out):
    x = a["input"]
    ne = int(math.prod(a["normalized_shape"]))
    return C.norm(shape(x), dt(x), "layer", affine=a.get("weight") is not None, normalized_elems=ne,
                  bias=a.get("bias") is not None)


def _layer_norm_bwd(a, out):
    x = a["input"]
    ne = int(math.prod(a["normalized_shape"]))
    return C.norm(shape(x), dt(x), "layer", affine=a.get("weight") is not None, normalized_elems=ne, backward=True,
                  bias=a.get("bias") is not None)


def _rms_norm(a, out):
    x = a["input"]
    ne = int(math.prod(a["normalized_shape"]))
    return C.norm(shape(x), dt(x), "rms", affine=a.get("weight") is not None, normalized_elems=ne)


def _rms_norm_bwd(a, out):
    x = a["input"]
    ne = int(math.prod(a["normalized_shape"]))
    return C.norm(shape(x), dt(x), "rms", affine=a.get("weight") is not None, normalized_elems=ne, backward=True)


def _batch_norm(a, out):
    x = a["input"]
    # channels-last input: tagged ('nhwc', 1) (PyTorch runs its channels-last BatchNorm kernels, whose grid tiles
    # N x H x W, not one block per channel: wattlint.energy.prior.batchnorm_channels)
    return _with_layout(C.norm(shape(x), dt(x), "batch", affine=a.get("weight") is not None,
                               bias=a.get("bias") is not None), x, x)


def _batch_norm_bwd(a, out):
    x = a["input"]
    return _with_layout(C.norm(shape(x), dt(x), "batch", affine=a.get("weight") is not None, backward=True,
                               bias=a.get("weight") is not None), x, x)


def _group_norm(a, out):
    x = a["input"]
    return C.norm(shape(x), dt(x), "group", affine=a.get("weight") is not None, normalized_elems=int(x.shape[1]),
                  bias=a.get("bias") is not None, groups=int(a["group"]))


def _group_norm_bwd(a, out):
    x = a["input"]
    return C.norm(shape(x), dt(x), "group", affine=a.get("weight") is not None, normalized_elems=int(x.shape[1]),
                  backward=True, groups=int(a["group"]))


def _softmax(a, out):
    x = a["self"]
    # half_to_float (CUDA autocast's fp16 softmax): reads the fp16 input, writes fp32
    c = C.softmax(shape(x), dt(out) if isinstance(out, torch.Tensor) else dt(x), in_dtype=dt(x))
    # the normalised axis (non-negative): lint's WL103 tells attention's key-axis softmax from others by it
    return C.Cost(c.flops, c.bytes_read, c.bytes_written, c.kind, (("axis", int(a["dim"]) % max(1, x.dim())),))


def _softmax_bwd(a, out):
    g = a["grad_output"]
    return C.softmax(shape(g), dt(g), backward=True)


def _softmax_bwd_data(a, out):
    g = a["grad_output"]
    # after autocast's half_to_float forward (fp16 input, fp32 y): reads fp32 y and dy, writes the fp16 gradient
    half = a.get("input_dtype") == torch.float16 and g.dtype == torch.float32
    return C.softmax(shape(g), dt(g), backward=True, out_dtype="float16" if half else None)


def _nll(a, out):
    x = a["self"]
    n = int(x.shape[0]) if x.dim() > 1 else 1
    return C.nll_loss(n, dt(x))


def _nll_bwd(a, out):
    x = a["self"]
    n = int(x.shape[0]) if x.dim() > 1 else 1
    return C.nll_loss(n, dt(x), backward=True, classes=int(x.numel() // max(n, 1)))


def _embedding(a, out):
    w, idx = a["weight"], a["indices"]
    return C.embedding(idx.numel(), int(w.shape[-1]), dt(w), index_dtype=dt(idx))


def _embedding_bwd(a, out):
    g, idx = a["grad_output"], a["indices"]
    return C.embedding(idx.numel(), int(g.shape[-1]), dt(g), index_dtype=dt(idx), backward=True,
                       num_embeddings=int(a["num_weights"]))


# nn.EmbeddingBag's mode argument as aten takes it
_BAG_MODES = {0: "sum", 1: "mean", 2: "max"}


def _embedding_bag(a, out):
    """aten._embedding_bag (nn.EmbeddingBag, F.embedding_bag; _embedding_bag_forward_only under no_grad): gathers
    the ``n`` indexed rows of width ``dim`` (costs.embedding: the indices and those rows, not the table) and reads
    the offsets (+ per_sample_weights, n values); writes the [bags, dim] output and the kernel's other outputs
    (offset2bag [n], bag_size, and max mode's max_indices [bags, dim]). FLOPs: one add (max: one compare) per
    gathered element, + one multiply per gathered element with per_sample_weights, + one divide per output
    element for mean."""
    w, idx, offs = a["weight"], a["indices"], a["offsets"]
    n, dim = int(idx.numel()), int(w.shape[-1])
    psw = a.get("per_sample_weights")
    psw_bytes = tbytes([psw]) if isinstance(psw, torch.Tensor) else 0
    rows = C.embedding(n, dim, dt(w), index_dtype=dt(idx))
    o = tensors(out)[0]
    mode = _BAG_MODES.get(int(a.get("mode") or 0), "sum")
    flops = n * dim * (2 if psw_bytes else 1) + (o.numel() if mode == "mean" else 0)
    return C.Cost(flops, rows.bytes_read + tbytes([offs]) + psw_bytes, tbytes(tensors(out)), OpKind.EMBEDDING)


def _embedding_bag_bwd(a, out, sparse: bool | None = None):
    """aten._embedding_bag_backward (and the _dense / _sparse variants CUDA calls under it). Dense (sum / mean):
    costs.embedding's backward over the ``n`` indices, as embedding_dense_backward (the [num_weights, dim] gradient
    table zeroed, each index's bag gradient row read and accumulated into its row) + offset2bag read (+ bag_size
    for mean, + per_sample_weights), one scale per gathered element for mean or per_sample_weights. Max mode: the
    same scatter per output element through max_indices [bags, dim]. sparse=True: no table; each index's bag
    gradient row gathered through offset2bag (costs.gather) into the sparse gradient's values [n, dim], the
    indices copied into its index list."""
    g, idx = a["grad"], a["indices"]
    n, dim = int(idx.numel()), int(g.shape[-1])
    e = dt(g)
    mode = _BAG_MODES.get(int(a.get("mode") or 0), "sum")
    o2b = a["offset2bag"]
    psw = a.get("per_sample_weights")
    rest = tbytes([t for t in (a.get("bag_size") if mode == "mean" else None, psw) if isinstance(t, torch.Tensor)])
    scale = n * dim if mode == "mean" or isinstance(psw, torch.Tensor) else 0
    if bool(a.get("sparse")) if sparse is None else sparse:
        c = C.gather(n * dim, n, e, index_dtype=dt(o2b))  # dy rows by offset2bag
        copy = tbytes([idx])
        return C.Cost(scale, c.bytes_read + rest + copy, c.bytes_written + copy, OpKind.EMBEDDING)
    num = int(a["num_weights"])
    if mode == "max":
        mi = a["maximum_indices"]
        c = C.embedding(int(mi.numel()), 1, e, index_dtype=dt(mi), backward=True, num_embeddings=num * dim)
        return C.Cost(c.flops, c.bytes_read, c.bytes_written, OpKind.EMBEDDING)
    c = C.embedding(n, dim, e, index_dtype=dt(idx), backward=True, num_embeddings=num)
    return C.Cost(c.flops + scale, c.bytes_read + tbytes([o2b]) + rest, c.bytes_written, OpKind.EMBEDDING)


def _embedding_bag_psw_bwd(a, out):
    """aten._embedding_bag_per_sample_weights_backward (per_sample_weights that require grad, sum mode): one dot
    product of width ``dim`` per index, between its bag's gradient row and its table row: reads both rows, the
    index and its offset2bag entry, writes one value per index."""
    g, w, idx, o2b = a["grad"], a["weight"], a["indices"], a["offset2bag"]
    n, dim = int(idx.numel()), int(w.shape[-1])
    rows = C.embedding(n, dim, dt(w), index_dtype=dt(idx))  # the table rows + the indices
    return C.Cost(2 * n * dim, rows.bytes_read + n * dim * g.element_size() + tbytes([o2b]), tbytes(tensors(out)),
                  OpKind.EMBEDDING)


def _fft(kind: str):
    """aten._fft_c2c / _fft_r2c / _fft_c2r (torch.fft.*: fft, rfft2, irfftn...): costs.fft over the op's dims;
    ``normalization`` (0: none, 1: 1/sqrt(N), 2: 1/N) adds the scaling multiply."""
    def h(a, out):
        x = a["self"]
        o = tensors(out)[0]
        return C.fft(shape(x), shape(o), [int(d) for d in a["dim"]], dt(x), dt(o), kind=kind,
                     normalized=bool(a.get("normalization")))
    return h


def _weight_norm(a, out):
    """aten._weight_norm_interface(v, g, dim) (nn.utils.weight_norm and parametrizations.weight_norm: HiFi-GAN,
    wav2vec2's positional convolution): one norm per element of g (its rows), costs.weight_norm; outputs (w, norms)."""
    v, g = a["v"], a["g"]
    norms = tensors(out)[1]
    return C.weight_norm(shape(v), int(g.numel()), dt(v), norms_dtype=dt(norms))


def _weight_norm_bwd(a, out):
    v, norms = a["saved_v"], a["saved_norms"]
    return C.weight_norm(shape(v), int(norms.numel()), dt(v), norms_dtype=dt(norms), backward=True)


def _pool_kernel(a, x, out):
    ks = a.get("kernel_size")
    if ks is not None:
        nsp = x.dim() - 2 if x.dim() > 2 else 1
        ks = list(ks) if not isinstance(ks, int) else [ks]
        if len(ks) == 1:
            ks = ks * max(nsp, 1)
        return tuple(int(k) for k in ks)
    nsp = len(a.get("output_size") or ()) or 2
    return C.adaptive_pool_kernel(shape(x)[-nsp:], shape(out)[-nsp:])


def _pool(kind):
    def h(a, out):
        x = a["self"]
        o = out[0] if isinstance(out, (tuple, list)) else out
        return C.pool(shape(x), shape(o), _pool_kernel(a, x, o), dt(x), kind=kind)
    return h


def _pool_bwd(kind):
    def h(a, out):
        x, g = a["self"], a["grad_output"]
        if a.get("kernel_size") is not None:
            k = _pool_kernel(a, x, g)
        else:
            nsp = x.dim() - 2
            k = C.adaptive_pool_kernel(shape(x)[-nsp:], shape(g)[-nsp:])
        return C.pool(shape(x), shape(g), k, dt(x), kind=kind, backward=True)
    return h


def _dropout(a, out):
    x = a["input"]
    return C.dropout(shape(x), dt(x))


def _dropout_bwd(a, out):
    g = a["grad_output"]
    return C.dropout(shape(g), dt(g), backward=True)


def _mse(a, out):
    x = a["self"]
    return C.Cost(3 * x.numel(), 2 * tbytes([x]), tbytes(tensors(out)), OpKind.LOSS)


def _mse_bwd(a, out):
    x = a["self"]
    return C.Cost(3 * x.numel(), 2 * tbytes([x]) + tbytes([a["grad_output"]]), tbytes([x]), OpKind.LOSS)


def _bce_logits(a, out):
    x = a["self"]
    return C.Cost(8 * x.numel(), 2 * tbytes([x]), tbytes(tensors(out)), OpKind.LOSS)


def _fused_adam(name):
    def h(a, out):
        params = tensors(a["self"])
        elems = sum(p.numel() for p in params)
        pd = dt(params[0]) if params else "float32"
        sd = dt(tensors(a["exp_avgs"])[0]) if tensors(a.get("exp_avgs")) else pd
        return C.optimizer_step(name, elems, pd, state_dtype=sd)
    return h


def _fused_sgd(a, out):
    params = tensors(a["self"])
    elems = sum(p.numel() for p in params)
    momentum = bool(tensors(a.get("momentum_buffer_list")))
    return C.optimizer_step("sgd", elems, dt(params[0]) if params else "float32", momentum=momentum)


def _fused_cell(mode: str, state: str):
    """_thnn_fused_lstm_cell(input_gates, hidden_gates, cx, b_ih?, b_hh?) / _thnn_fused_gru_cell(.., hx, ..): the
    pointwise part of one step in one kernel (the GEMMs are separate mm/addmm ops). FLOPs: the cell's pointwise
    work (costs.RNN_CELL_ELEMENTWISE per hidden unit) + one add per gate element for input+hidden gates and one
    per bias given. Bytes: gates, state (and biases) in; new state(s) + the workspace saved for backward out."""
    def h(a, out):
        n = a[state].numel()
        g = C.RNN_GATES[mode]
        biases = sum(1 for k in ("input_bias", "hidden_bias") if a.get(k) is not None)
        read, written = generic_io(a, out)
        return C.Cost(C.RNN_CELL_ELEMENTWISE[mode] * n + g * n * (1 + biases), read, written, OpKind.RNN,
                      C._dims(numel=n))
    return h


def _fused_cell_bwd(mode: str):
    """The fused cell's backward (_thnn_fused_lstm_cell_backward_impl / _thnn_fused_gru_cell_backward): one kernel
    reading the state gradient(s) and the saved state/workspace, writing the gate and state gradients (+ the bias
    gradient(s), batch reductions). FLOPs: BACKWARD_FACTOR x the forward pointwise work + the bias reduction."""
    def h(a, out):
        outs = tensors(out)
        gates = outs[0]  # grad of the (input) gates: [batch, G*hidden]
        n = gates.numel() // C.RNN_GATES[mode]
        bias_grads = (2 if mode == "gru" else 1) if a.get("has_bias") else 0  # LSTM: one grad for both biases
        read, written = generic_io(a, out)
        return C.Cost(C.RNN_CELL_ELEMENTWISE[mode] * n * C.BACKWARD_FACTOR + bias_grads * gates.numel(), read,
                      written, OpKind.RNN, C._dims(numel=n))
    return h


HANDLERS: dict[str, Handler] = {
    "mm": _mm, "addmm": _addmm, "bmm": _bmm, "baddbmm": _baddbmm, "mv": _mv, "addmv": _addmv, "dot": _dot,
    "vdot": _dot, "_grouped_mm": _grouped_mm,
    "_fft_c2c": _fft("c2c"), "_fft_r2c": _fft("r2c"), "_fft_c2r": _fft("c2r"),
    "_weight_norm_interface": _weight_norm, "_weight_norm_interface_backward": _weight_norm_bwd,
    "convolution": _convolution, "convolution_backward": _convolution_backward,
    "_scaled_dot_product_efficient_attention": _sdpa_fwd,
    "_scaled_dot_product_flash_attention": _sdpa_fwd,
    "_scaled_dot_product_cudnn_attention": _sdpa_fwd,
    "_scaled_dot_product_flash_attention_for_cpu": _sdpa_fwd,
    "_scaled_dot_product_efficient_attention_backward": _sdpa_bwd,
    "_scaled_dot_product_flash_attention_backward": _sdpa_bwd,
    "_scaled_dot_product_cudnn_attention_backward": _sdpa_bwd,
    "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_bwd,
    "native_layer_norm": _layer_norm, "native_layer_norm_backward": _layer_norm_bwd,
    "_fused_rms_norm": _rms_norm, "_fused_rms_norm_backward": _rms_norm_bwd,
    "native_batch_norm": _batch_norm, "_native_batch_norm_legit": _batch_norm,
    "_native_batch_norm_legit_functional": _batch_norm, "_native_batch_norm_legit_no_training": _batch_norm,
    "cudnn_batch_norm": _batch_norm, "native_batch_norm_backward": _batch_norm_bwd,
    "cudnn_batch_norm_backward": _batch_norm_bwd,
    "native_group_norm": _group_norm, "native_group_norm_backward": _group_norm_bwd,
    "_softmax": _softmax, "_log_softmax": _softmax, "_safe_softmax": _softmax,
    "_softmax_backward_data": _softmax_bwd_data, "_log_softmax_backward_data": _softmax_bwd,
    "nll_loss_forward": _nll, "nll_loss2d_forward": _nll, "nll_loss_backward": _nll_bwd,
    "nll_loss2d_backward": _nll_bwd, "mse_loss": _mse, "mse_loss_backward": _mse_bwd,
    "binary_cross_entropy_with_logits": _bce_logits,
    "embedding": _embedding, "embedding_dense_backward": _embedding_bwd,
    "_embedding_bag": _embedding_bag, "_embedding_bag_forward_only": _embedding_bag,
    "_embedding_bag_backward": _embedding_bag_bwd,
    "_embedding_bag_dense_backward": lambda a, out: _embedding_bag_bwd(a, out, sparse=False),
    "_embedding_bag_sparse_backward": lambda a, out: _embedding_bag_bwd(a, out, sparse=True),
    "_embedding_bag_per_sample_weights_backward": _embedding_bag_psw_bwd,
    "max_pool1d_with_indices": _pool("max"), "max_pool2d_with_indices": _pool("max"),
    "max_pool3d_with_indices": _pool("max"), "adaptive_max_pool2d": _pool("max"),
    "adaptive_max_pool1d": _pool("max"),
    "avg_pool1d": _pool("avg"), "avg_pool2d": _pool("avg"), "avg_pool3d": _pool("avg"),
    "_adaptive_avg_pool2d": _pool("avg"), "_adaptive_avg_pool3d": _pool("avg"), "adaptive_avg_pool1d": _pool("avg"),
    "max_pool2d_with_indices_backward": _pool_bwd("max"), "max_pool3d_with_indices_backward": _pool_bwd("max"),
    "adaptive_max_pool2d_backward": _pool_bwd("max"),
    "avg_pool2d_backward": _pool_bwd("avg"), "avg_pool3d_backward": _pool_bwd("avg"),
    "_adaptive_avg_pool2d_backward": _pool_bwd("avg"), "_adaptive_avg_pool3d_backward": _pool_bwd("avg"),
    "native_dropout": _dropout, "native_dropout_backward": _dropout_bwd,
    "_fused_adamw": _fused_adam("adamw"), "_fused_adam": _fused_adam("adam"), "_fused_sgd": _fused_sgd,
    # the in-place variants torch.optim(fused=True) calls (base_name keeps the trailing '_' of '_'-prefixed ops)
    "_fused_adamw_": _fused_adam("adamw"), "_fused_adam_": _fused_adam("adam"), "_fused_sgd_": _fused_sgd,
    "_thnn_fused_lstm_cell": _fused_cell("lstm", "cx"), "_thnn_fused_gru_cell": _fused_cell("gru", "hx"),
    "_thnn_fused_lstm_cell_backward_impl": _fused_cell_bwd("lstm"),
    "_thnn_fused_gru_cell_backward": _fused_cell_bwd("gru"),
}


class OpCostError(Exception):
    """A formula of this table failed on an op PyTorch itself ran (its meta kernel accepted the arguments): a
    wattlint bug, never the model's or its inputs' fault, so not a WattlintError (the CLI reports it as an internal
    error, exit 3, where the frontend lets it through)."""


def cost_of(func, args, kwargs, out, *, optimizer_phase: bool = False) -> tuple[str, list[C.Cost]]:
    """Classify one aten op call: returns (status, costs). status is handled|ignored|unsupported. Raises
    OpCostError when the op's own formula fails (a KeyError on an argument name, a shape it did not expect)."""
    try:
        return _cost_of(func, args, kwargs, out, optimizer_phase)
    except Exception as e:
        from ..types import WattlintError

        if isinstance(e, WattlintError):
            raise
        raise OpCostError(f"wattlint's own cost formula for {func} failed ({type(e).__name__}: {e}): a wattlint bug, "
                          f"not the model's; please report it") from e


def _cost_of(func, args, kwargs, out, optimizer_phase: bool) -> tuple[str, list[C.Cost]]:
    name = func._schema.name.split("::", 1)[-1]
    base = base_name(func)
    inplace = name.endswith("_") and not name.startswith("_") or name.startswith("_foreach_") and name.endswith("_")
    if base in IGNORED or name in IGNORED:
        return "ignored", []
    a = bind(func, args, kwargs)
    h = HANDLERS.get(base) or HANDLERS.get(name)
    if h is not None:
        c = h(a, out)
        return "handled", c if isinstance(c, list) else [c]
    d = compute_dtype(a, out)
    if base.startswith("_foreach_"):
        return "handled", [_foreach(base[len("_foreach_"):], a, out, d, inplace, optimizer_phase)]
    if base in ELEMENTWISE_ALIAS or base in ACT_BACKWARD:
        read, written = generic_io(a, out, inplace_arg="self")
        outs = tensors(out) or tensors(a.get("self"))
        n = outs[0].numel() if outs else 0
        if base in ACT_BACKWARD:
            per = C.elementwise_flops_per_element(ACT_BACKWARD[base]) * C.BACKWARD_FACTOR
        else:
            key = ELEMENTWISE_ALIAS[base]
            # a complex result (complex add / mul / div...): counted in real FLOPs (costs.COMPLEX_ELEMENTWISE_FLOPS),
            # from its operands' dtypes (a complex tensor times a real one: 2 real multiplies, not 6)
            per = C.elementwise_flops_per_element(key, dt(outs[0]) if outs else d,
                                                  [_operand_dtype(a.get("self")), _operand_dtype(a.get("other"))])
            if key == "gelu" and a.get("approximate") == "tanh":
                per = C.elementwise_flops_per_element("gelu_tanh")
            if key == "fill":  # RNG fills: only the write
                read = 0
        return "handled", [C.Cost(per * n, read, written, OpKind.ELEMENTWISE)]
    if base in FILL:
        outs = tensors(out) or tensors(a.get("self"))
        return "handled", [C.Cost(0, 0, tbytes(outs), OpKind.MEMORY)]
    if base in COPY:
        read, written = generic_io(a, out, inplace_arg="self")
        kind = OpKind.INDEX if base in ("index", "index_select", "gather", "take", "_unsafe_index",
                                        "masked_select") or base in SCATTER_ADD or "scatter" in base else OpKind.MEMORY
        outs = tensors(out) or tensors(a.get("self"))
        if base in ("copy", "_copy_from"):  # copy_(self, src): reads src, writes self
            src = a.get("src")
            read = tbytes(tensors(src))
        flops = 0
        if base in SCATTER_ADD:
            vals = tensors(a.get("values", a.get("src", a.get("source"))))
            flops = sum(t.numel() for t in vals)
        return "handled", [C.Cost(flops, read, tbytes(outs) if outs else written, kind)]
    if base in REDUCTIONS:
        read, written = generic_io(a, out)
        x = tensors(a.get("self") if a.get("self") is not None else a.get("input"))
        n = x[0].numel() if x else 0
        return "handled", [C.Cost(REDUCTIONS[base] * n, read, written, OpKind.REDUCTION)]
    read, written = generic_io(a, out, inplace_arg="self")
    return "unsupported", [C.Cost(0, read, written, OpKind.OTHER)]


def _operand_dtype(v) -> str | None:
    """An elementwise operand's dtype name: a tensor's, ``complex128`` / ``float64`` for a Python complex / real
    number (a wrapped scalar operand), None for anything else (absent, a list)."""
    if isinstance(v, torch.Tensor):
        return dt(v)
    if isinstance(v, complex):
        return "complex128"
    if isinstance(v, (int, float)):  # bool included: a real operand
        return "float64"
    return None


def _foreach(op: str, a: dict, out, d: str, inplace: bool, optimizer_phase: bool) -> C.Cost:
    read, written = generic_io(a, out, inplace_arg="self")
    selfs = tensors(a.get("self"))
    n = sum(t.numel() for t in selfs)
    op = op.rstrip("_")
    if op == "norm":
        per = 2
        written = tbytes(tensors(out))
    elif op in ("copy", "zero"):
        per = 0
        if op == "zero":
            read = 0
    else:
        key = ELEMENTWISE_ALIAS.get(op, op)
        per = C.elementwise_flops_per_element(key)
    kind = OpKind.OPTIMIZER if optimizer_phase else OpKind.ELEMENTWISE
    return C.Cost(per * n, read, written, kind, C._dims(numel=n))
