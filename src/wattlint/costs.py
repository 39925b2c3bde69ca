"""Pure cost formulas: shapes + dtypes -> FLOPs and bytes. No torch, no onnx.

Conventions (docs/COSTS.md mirrors this table):

* ``flops`` = 2 x multiply-accumulates for matmul-like ops (PyTorch's convention; fvcore counts 1 per MAC).
* Causal attention counts the query/key pairs a causal kernel computes (s(s+1)/2 for a square mask,
  top-left aligned as in ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``).
* Non-matmul ops cost ``ELEMENTWISE_FLOPS[name]`` FLOPs per output element (``NORM_FLOPS`` etc. below).
* Bytes are what the op reads and writes once from/to device memory (no cache reuse model here; the energy
  model handles efficiency). Views are free.

Every frontend calls these functions; forward and backward reuse the same helpers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

from .types import OpKind

Shape = Sequence[int]

DTYPE_BYTES: dict[str, int] = {
    "float64": 8, "double": 8, "complex32": 4, "chalf": 4, "complex64": 8, "cfloat": 8, "complex128": 16,
    "cdouble": 16,
    "float32": 4, "float": 4, "int32": 4, "uint32": 4,
    "float16": 2, "half": 2, "bfloat16": 2, "int16": 2, "uint16": 2,
    "int64": 8, "uint64": 8, "long": 8,
    "int8": 1, "uint8": 1, "bool": 1,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1,
}


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a dtype name (``torch.float32`` and ``float32`` both work; unknown -> 4)."""
    name = str(dtype).rsplit(".", 1)[-1].lower()
    return DTYPE_BYTES.get(name, 4)


def numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def nbytes(shape: Shape, dtype: str) -> int:
    return numel(shape) * dtype_bytes(dtype)


@dataclass(frozen=True, slots=True)
class Cost:
    flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    kind: OpKind = OpKind.ELEMENTWISE
    dims: tuple[tuple[str, int], ...] = ()

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.bytes_read + other.bytes_read,
                    self.bytes_written + other.bytes_written, self.kind, self.dims or other.dims)

    def scaled(self, k: int) -> "Cost":
        return Cost(self.flops * k, self.bytes_read * k, self.bytes_written * k, self.kind, self.dims)


def _dims(**kw: int) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((k, int(v)) for k, v in kw.items()))


# ---- per-element FLOP constants (one table; documented in docs/COSTS.md) ------------------------------------
# FLOPs per output element for the forward op. Backward of an elementwise op costs BACKWARD_FACTOR x these
# FLOPs per element of the gradient (the derivative + the multiply by the incoming gradient).
ELEMENTWISE_FLOPS: dict[str, int] = {
    # arithmetic
    "add": 1, "sub": 1, "mul": 1, "div": 1, "neg": 1, "abs": 1, "reciprocal": 1, "sign": 1,
    "maximum": 1, "minimum": 1, "max": 1, "min": 1, "where": 1, "clamp": 2, "clip": 2,
    "eq": 1, "ne": 1, "lt": 1, "le": 1, "gt": 1, "ge": 1, "not": 1, "and": 1, "or": 1, "xor": 1,
    "floor": 1, "ceil": 1, "round": 1, "fill": 0, "copy": 0, "cast": 0, "to": 0,
    "addcmul": 2, "addcdiv": 2, "lerp": 2, "pow": 2, "sqrt": 2, "rsqrt": 2, "square": 1,
    "exp": 4, "log": 4, "log1p": 4, "expm1": 4, "sin": 4, "cos": 4, "erf": 4,
    "polar": 10,  # abs x (cos + i sin)(angle): complex rotary tables (DeepSeek-V2)
    # activations
    "relu": 1, "relu6": 2, "leaky_relu": 2, "hardtanh": 2, "threshold": 1, "prelu": 2,
    "sigmoid": 4, "tanh": 4, "silu": 5, "swish": 5, "gelu": 8, "gelu_tanh": 10, "fast_gelu": 10,
    "bias_gelu": 9, "elu": 5, "selu": 6, "celu": 5, "softplus": 6, "mish": 10, "hardswish": 4,
    "hardsigmoid": 3, "logsigmoid": 6, "glu": 5, "softsign": 3,
}
DEFAULT_ELEMENTWISE_FLOPS = 1
BACKWARD_FACTOR = 2  # d(out)/d(in) evaluation + multiply by the incoming gradient

NORM_FLOPS_FWD = {"batch": 7, "layer": 7, "group": 7, "instance": 7, "rms": 4}  # per element, training mode
BATCHNORM_PASSES = 2  # training-mode BatchNorm reads its input twice (statistics, then normalize); see norm()
NORM_FLOPS_BWD = {"batch": 11, "layer": 11, "group": 11, "instance": 11, "rms": 7}  # grad input + affine grads
SOFTMAX_FLOPS_FWD = 5  # max, subtract, exp, sum, divide
SOFTMAX_FLOPS_BWD = 4  # grad * y, row-sum, subtract, multiply
ATTENTION_SCORE_FLOPS_FWD = 5  # softmax work per score element inside a fused attention kernel (+ scale)
ATTENTION_SCORE_FLOPS_BWD = 6
OPTIMIZER_FLOPS = {"sgd": 2, "sgd_momentum": 4, "adam": 13, "adamw": 15, "adagrad": 6, "rmsprop": 8,
                   "lion": 8, "adafactor": 12, "adadelta": 16}
# tensors read / written per parameter element by one optimizer step (param, grad, state...)
OPTIMIZER_TENSORS = {"sgd": (2, 1), "sgd_momentum": (3, 2), "adam": (4, 3), "adamw": (4, 3), "adagrad": (3, 2),
                     "rmsprop": (3, 2), "lion": (3, 2), "adafactor": (3, 2), "adadelta": (4, 3)}
OPTIMIZER_STATE = {"sgd": 0, "sgd_momentum": 1, "adam": 2, "adamw": 2, "adagrad": 1, "rmsprop": 1, "lion": 1,
                   "adafactor": 1, "adadelta": 2}
# Temporaries torch's foreach optimizer step allocates over every parameter of a device at once, in tensors per
# parameter element alive together (torch/optim/adam.py _multi_tensor_adam: exp_avg_sq_sqrt = _foreach_sqrt(...);
# adadelta.py _multi_tensor_adadelta: std and deltas = _foreach_add(...)); the in-place passes allocate nothing, the
# fused and single-tensor (for-loop) kernels allocate nothing per parameter set
OPTIMIZER_FOREACH_TEMPS = {"adam": 1, "adamw": 1, "adadelta": 2}


# Complex dtypes count real FLOPs as LAPACK's operation counts do (LAPACK Working Note 41, the timing suite's
# ZOPLA / ZOPBL3 weigh a complex multiply as 6 real flops and a complex add as 2): a complex multiply-add is
# 4 real multiplies + 4 real adds = 8 FLOPs, 4x a real one's 2 (the textbook 4-multiply product
# (a+bi)(c+di) = (ac-bd) + (ad+bc)i, as cuBLAS's cgemm / zgemm and PyTorch's complex kernels compute it).
COMPLEX_DTYPES = frozenset({"complex32", "chalf", "complex64", "cfloat", "complex128", "cdouble"})
REAL_MAC_FLOPS = 2
COMPLEX_MAC_FLOPS = 8
# FLOPs per complex output element, where they differ from the real op's: add / sub / neg 2 (two real ones);
# mul 6 (4 mul + 2 add); div 11 by the textbook formula (a+bi)/(c+di) = ((ac+bd) + (bc-ad)i) / (c^2+d^2):
# c^2+d^2 (2 mul + 1 add), the two numerators (4 mul + 2 add), two divides. The other ops keep the real count.
COMPLEX_ELEMENTWISE_FLOPS: dict[str, int] = {"add": 2, "sub": 2, "neg": 2, "mul": 6, "div": 11}


def is_complex(dtype: str | None) -> bool:
    """A complex dtype name (``complex64``, ``torch.complex64``, ``cfloat``...)."""
    return str(dtype).rsplit(".", 1)[-1].lower() in COMPLEX_DTYPES


def mac_flops(dtype: str | None) -> int:
    """Real FLOPs of one multiply-accumulate in ``dtype``: 2, or 8 for a complex dtype (COMPLEX_MAC_FLOPS)."""
    return COMPLEX_MAC_FLOPS if is_complex(dtype) else REAL_MAC_FLOPS


def add_flops(dtype: str | None) -> int:
    """Real FLOPs of one add in ``dtype`` (a bias add, a beta x C term): 1, or 2 for a complex dtype."""
    return COMPLEX_ELEMENTWISE_FLOPS["add"] if is_complex(dtype) else 1


# A complex operand with a real one (PyTorch promotes the real one inside the kernel; counted as the real operations
# the result needs, as LAPACK's counts weigh a real scalar times a complex vector, ZDSCAL, at 2 per element):
# (a+bi) x c = ac + bci: 2 multiplies; (a+bi) + c = (a+c) + bi: 1 add (sub alike); (a+bi) / c: 2 divides.
COMPLEX_REAL_ELEMENTWISE_FLOPS: dict[str, int] = {"add": 1, "sub": 1, "mul": 2, "div": 2}
# a real dividend over a complex divisor: c / (a+bi) = (ca - cbi) / (a^2+b^2): a^2+b^2 (2 mul + 1 add), ca and cb
# (2 mul), two divides
REAL_BY_COMPLEX_DIV_FLOPS = 7


def elementwise_flops_per_element(name: str, dtype: str | None = None,
                                  operand_dtypes: Sequence[str | None] | None = None) -> int:
    """FLOPs per output element of the elementwise op ``name`` (ELEMENTWISE_FLOPS); for a complex ``dtype``, the
    complex count of the ops COMPLEX_ELEMENTWISE_FLOPS lists. ``operand_dtypes`` (the two operands' dtypes, in the
    op's order; a Python number's ``float`` / ``complex``) count a complex result from its operands: one real
    operand makes COMPLEX_REAL_ELEMENTWISE_FLOPS' count (REAL_BY_COMPLEX_DIV_FLOPS for real / complex), none the
    real one."""
    if dtype is not None and is_complex(dtype) and name in COMPLEX_ELEMENTWISE_FLOPS:
        ops = [d for d in (operand_dtypes or ()) if d is not None][:2]
        if len(ops) == 2 and not all(is_complex(d) for d in ops):
            if not any(is_complex(d) for d in ops):  # two real operands written into a complex tensor
                return ELEMENTWISE_FLOPS.get(name, DEFAULT_ELEMENTWISE_FLOPS)
            if name == "div" and not is_complex(ops[0]):
                return REAL_BY_COMPLEX_DIV_FLOPS
            return COMPLEX_REAL_ELEMENTWISE_FLOPS[name]
        return COMPLEX_ELEMENTWISE_FLOPS[name]
    return ELEMENTWISE_FLOPS.get(name, DEFAULT_ELEMENTWISE_FLOPS)


# ---- matmul family -------------------------------------------------------------------------------------------

def broadcast_shapes(a: Shape, b: Shape) -> tuple[int, ...]:
    out = []
    for x, y in zip(reversed(tuple(a)), reversed(tuple(b))):
        x, y = int(x), int(y)
        out.append(max(x, y) if 1 in (x, y) else x if x == y else max(x, y))
    longer = a if len(a) > len(b) else b
    out.extend(int(d) for d in reversed(tuple(longer)[: abs(len(a) - len(b))]))
    return tuple(reversed(out))


def matmul_out_shape(a: Shape, b: Shape) -> tuple[int, ...]:
    a, b = tuple(a), tuple(b)
    if len(a) == 1 and len(b) == 1:
        return ()
    if len(a) == 1:
        return tuple(b[:-2]) + (b[-1],)
    if len(b) == 1:
        return tuple(a[:-1])
    return broadcast_shapes(a[:-2], b[:-2]) + (a[-2], b[-1])


def gemm(b: int, m: int, n: int, k: int, dtype: str, *, a_elems: int | None = None, b_elems: int | None = None,
         bias_elems: int = 0, out_dtype: str | None = None) -> Cost:
    """A (batched) GEMM: b x [m,k] @ [k,n] (+ bias). FLOPs = 2*b*m*n*k (+ b*m*n for the bias add); complex dtypes
    8*b*m*n*k (+ 2*b*m*n): :func:`mac_flops`, :func:`add_flops`."""
    e = dtype_bytes(dtype)
    a_elems = b * m * k if a_elems is None else a_elems
    b_elems = b * k * n if b_elems is None else b_elems
    flops = mac_flops(dtype) * b * m * n * k + (add_flops(dtype) * b * m * n if bias_elems else 0)
    return Cost(flops, (a_elems + b_elems + bias_elems) * e, b * m * n * dtype_bytes(out_dtype or dtype),
                OpKind.MATMUL, _dims(b=b, m=m, n=n, k=k))


def _matmul_gemms(a: Shape, b: Shape) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int],
                                               tuple[int, int, int, int]]:
    """The (batch, m, n, k) of the GEMMs ``a @ b`` runs as, forward and the two backward GEMMs (dA, dB), with
    torch.matmul's folding: a batched operand against a 2-D one is ONE GEMM over the folded rows (``x @ W`` with x
    [B, S, K] and W [K, N] is an [B*S, K] @ [K, N] mm, as ``nn.Linear`` runs it), not B GEMMs of S rows; a 2-D
    operand against a batched one folds the batch into the columns (torch transposes: (b^T @ a^T)^T). Only a batched
    operand against a batched one stays a batched GEMM. 1-D operands are promoted as numpy does."""
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    m, k, n = a2[-2], a2[-1], b2[-1]
    if len(a2) > 2 and len(b2) == 2:  # fold a's batch into the rows
        rows = numel(a2[:-1])
        return (1, rows, n, k), (1, rows, k, n), (1, k, n, rows)
    if len(a2) == 2 and len(b2) > 2:  # fold b's batch into the columns
        cols = numel(b2[:-2]) * n
        return (1, cols, m, k), (1, m, k, cols), (1, k, cols, m)
    batch = numel(broadcast_shapes(a2[:-2], b2[:-2]))
    return (batch, m, n, k), (batch, m, k, n), (batch, k, n, m)


def matmul(a: Shape, b: Shape, dtype: str, *, bias: Shape | None = None, out_dtype: str | None = None) -> Cost:
    """``a @ b`` with numpy/torch broadcasting semantics (1-D operands promoted; batch folded as torch.matmul
    folds it, :func:`_matmul_gemms`)."""
    a, b = tuple(a), tuple(b)
    bt, m, n, k = _matmul_gemms(a, b)[0]
    return gemm(bt, m, n, k, dtype, a_elems=numel(a), b_elems=numel(b),
                bias_elems=numel(bias) if bias else 0, out_dtype=out_dtype)


def linear(x: Shape, weight: Shape, dtype: str, *, bias: bool = False) -> Cost:
    """``x @ W.T + b`` with W of shape [out, in]."""
    out_f, in_f = int(weight[0]), int(weight[-1])
    rows = numel(x) // in_f if in_f else 0
    return gemm(1, rows, out_f, in_f, dtype, a_elems=numel(x), b_elems=numel(weight),
                bias_elems=out_f if bias else 0)


def linear_backward(x: Shape, weight: Shape, dtype: str, *, input_grad: bool = True, weight_grad: bool = True,
                    bias: bool = False) -> list[Cost]:
    """The GEMMs of a linear layer's backward: dX = dY @ W, dW = dY^T @ X (+ db = sum dY)."""
    out_f, in_f = int(weight[0]), int(weight[-1])
    rows = numel(x) // in_f if in_f else 0
    costs = []
    if input_grad:
        costs.append(gemm(1, rows, in_f, out_f, dtype))
    if weight_grad:
        costs.append(gemm(1, out_f, in_f, rows, dtype))
        if bias:
            costs.append(reduction((rows, out_f), dtype, out_shape=(out_f,)))
    return costs


def matmul_backward(a: Shape, b: Shape, dtype: str, *, grad_a: bool = True, grad_b: bool = True) -> list[Cost]:
    """Backward of ``a @ b``: dA = dC @ B^T and dB = A^T @ dC, each with the forward's FLOPs, shaped as the GEMMs
    they run as (:func:`_matmul_gemms`: a folded weight's gradient is one GEMM over all the rows)."""
    fwd = matmul(a, b, dtype)
    out = matmul_out_shape(a, b)
    e = dtype_bytes(dtype)
    _, da, db = _matmul_gemms(a, b)
    costs = []
    if grad_a:
        costs.append(Cost(fwd.flops, (numel(out) + numel(b)) * e, numel(a) * e, OpKind.MATMUL,
                          _dims(b=da[0], m=da[1], n=da[2], k=da[3])))
    if grad_b:
        costs.append(Cost(fwd.flops, (numel(out) + numel(a)) * e, numel(b) * e, OpKind.MATMUL,
                          _dims(b=db[0], m=db[1], n=db[2], k=db[3])))
    return costs


def grouped_gemm(a: Shape, b: Shape, groups: int, dtype: str, *, bias_elems: int = 0,
                 out_dtype: str | None = None) -> Cost:
    """A grouped GEMM (``torch._grouped_mm``, the mixture-of-experts kernel): ``groups`` GEMMs in one kernel,
    one operand dim jagged across the groups (split by offsets). Layouts (as the op accepts them):

    * 2-D ``[M, K]`` x 3-D ``[G, K, N]`` -> ``[M, N]``: the rows are split across the G groups (expert forward and
      input gradient);
    * 2-D ``[M, K]`` x 2-D ``[K, N]`` -> ``[G, M, N]``: the contraction dim is split (expert weight gradient);
    * 3-D ``[G, M, K]`` x 2-D ``[K, N]`` -> ``[M, N]``: the output columns are split;
    * 3-D x 3-D: a batched GEMM.

    FLOPs = 2 x M x N x K over the whole jagged dim (the sum of the groups' GEMMs); bytes: both operands read
    once (every group's weight), the output written once. ``dims``: ``b`` = groups and the per-group ``m, n, k``
    with the jagged dim at its balanced share ceil(total / G)."""
    a, b = tuple(int(x) for x in a), tuple(int(x) for x in b)
    g = max(1, int(groups))
    if len(a) == 2 and len(b) == 3:
        m, k, n = a[0], a[1], b[2]
        per = dict(m=-(-m // g), n=n, k=k)
        out = m * n
    elif len(a) == 2 and len(b) == 2:
        m, k, n = a[0], a[1], b[1]
        per = dict(m=m, n=n, k=-(-k // g))
        out = g * m * n
    elif len(a) == 3 and len(b) == 2:
        m, k, n = a[1], a[2], b[1]
        per = dict(m=m, n=-(-n // g), k=k)
        out = m * n
    elif len(a) == 3 and len(b) == 3:
        m, k, n = a[1], a[2], b[2]
        per = dict(m=m, n=n, k=k)
        out = g * m * n
        m = g * m  # the G GEMMs together
    else:
        raise ValueError(f"grouped GEMM operands must be 2-D or 3-D, got {a} and {b}")
    flops = 2 * m * n * k + (out if bias_elems else 0)
    e = dtype_bytes(dtype)
    return Cost(flops, (numel(a) + numel(b) + bias_elems) * e, out * dtype_bytes(out_dtype or dtype),
                OpKind.MATMUL, _dims(b=g, **per))


def grouped_gemm_loop(jagged: str, groups: int, total: int, m: int, n: int, k: int,
                      dtype: str) -> list[tuple[Cost, int]]:
    """The kernels PyTorch's fallback for ``torch._grouped_mm`` launches, as (cost, count) pairs: one ``at::mm_out``
    per group over the group's slice of the jagged dim (aten/src/ATen/native/GroupedMMUtils.h,
    ``_grouped_mm_fallback``; a 3-D x 3-D call is one ``bmm_out`` instead, not split here). ``jagged``: the dim the
    offsets split, "m" (2-D x 3-D), "n" (3-D x 2-D) or "k" (2-D x 2-D), ``total`` its size over all groups; ``m, n,
    k``: the per-group GEMM's other two dims (the jagged one is ignored). Balanced routing: ``total`` split evenly
    over ``groups``, the first ``total % groups`` groups one larger (as the MoE tracer splits its rows). An empty
    group launches no GEMM: none at all when its output is empty (m or n = 0: CUDA addmm returns early), a zero fill
    of its m x n output when its reduction is empty (k = 0: addmm's beta = 0 path, ``result.zero_()``)."""
    g = max(1, int(groups))
    base, extra = divmod(max(0, int(total)), g)
    out: list[tuple[Cost, int]] = []
    e = dtype_bytes(dtype)
    for size, count in ((base + 1, extra), (base, g - extra)):
        if count <= 0:
            continue
        d = {"m": int(m), "n": int(n), "k": int(k), jagged: size}
        gm, gn, gk = d["m"], d["n"], d["k"]
        if gm == 0 or gn == 0:
            continue
        if gk == 0:
            out.append((memory(0, gm * gn, dtype), count))
            continue
        out.append((Cost(2 * gm * gn * gk, (gm * gk + gk * gn) * e, gm * gn * e, OpKind.MATMUL,
                         _dims(b=1, m=gm, n=gn, k=gk)), count))
    return out


_EINSUM_ARROW = re.compile(r"\s*->\s*")


def einsum(equation: str, shapes: Sequence[Shape], dtype: str) -> Cost:
    """FLOPs of an einsum evaluated pairwise left to right (as torch.einsum / opt_einsum without reordering).

    Each pairwise contraction costs 2 x product of all index sizes involved (1 x when nothing is summed).
    """
    eq = equation.replace(" ", "")
    if "->" in eq:
        lhs, rhs = _EINSUM_ARROW.split(eq)
    else:
        lhs = eq
        letters = [c for c in lhs.replace(",", "") if c.isalpha()]
        rhs = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum {equation!r}: {len(terms)} operands in the equation, {len(shapes)} given")
    sizes: dict[str, int] = {}
    norm_terms = []
    for term, shape in zip(terms, shapes):
        if "..." in term:
            n_ell = len(shape) - (len(term) - 3)
            ell = "".join(chr(0x100 + i) for i in range(n_ell))
            term = term.replace("...", ell[::-1][: n_ell][::-1])
        for c, d in zip(term, shape):
            sizes[c] = max(sizes.get(c, 1), int(d))
        norm_terms.append(term)
    if "..." in rhs:
        max_ell = max((len(s) - (len(t) - 3) for t, s in zip(terms, shapes) if "..." in t), default=0)
        rhs = rhs.replace("...", "".join(chr(0x100 + i) for i in range(max_ell)))
    e = dtype_bytes(dtype)
    bytes_read = sum(numel(s) for s in shapes) * e
    out_elems = numel([sizes[c] for c in rhs])
    if len(norm_terms) == 1:
        return Cost(numel(shapes[0]), bytes_read, out_elems * e, OpKind.REDUCTION)
    flops = 0
    cur = norm_terms[0]
    for i, nxt in enumerate(norm_terms[1:], start=1):
        rest = set("".join(norm_terms[i + 1:])) | set(rhs)
        involved = set(cur) | set(nxt)
        summed = {c for c in involved if c not in rest}
        work = numel([sizes[c] for c in involved])
        flops += 2 * work if summed else work
        cur = "".join(c for c in sorted(involved) if c in rest)
    # GEMM-shaped dims for the energy model: m*n = output elements, k = summed extent
    k = max(1, (flops // 2) // max(1, out_elems))
    return Cost(flops, bytes_read, out_elems * e, OpKind.MATMUL, _dims(b=1, m=out_elems, n=1, k=k))


# ---- convolution ---------------------------------------------------------------------------------------------

def conv_out_spatial(in_spatial: Shape, kernel: Shape, stride: Shape, padding: Shape, dilation: Shape,
                     *, transposed: bool = False, output_padding: Shape | None = None) -> tuple[int, ...]:
    """Output spatial size; ValueError for a stride or dilation below 1 or an output of no element (a kernel larger
    than the padded input), which no convolution runs."""
    out = []
    output_padding = output_padding or [0] * len(in_spatial)
    for i, (x, k) in enumerate(zip(in_spatial, kernel)):
        s, p, d = stride[i], padding[i], dilation[i]
        if s < 1 or d < 1:
            raise ValueError(f"stride {s} and dilation {d} of spatial dim {i} must be >= 1")
        if transposed:
            out.append((x - 1) * s - 2 * p + d * (k - 1) + output_padding[i] + 1)
        else:
            out.append((x + 2 * p - d * (k - 1) - 1) // s + 1)
        if out[-1] < 1:
            raise ValueError(f"output size {out[-1]} along spatial dim {i}: kernel {k} (dilation {d}) over input "
                             f"{x} padded by {p}")
    return tuple(out)


def _expand(v: int | Sequence[int], n: int) -> list[int]:
    if isinstance(v, int):
        return [v] * n
    v = list(v)
    return v * n if len(v) == 1 else v


def conv(x: Shape, weight: Shape, dtype: str, *, stride: int | Shape = 1, padding: int | Shape = 0,
         dilation: int | Shape = 1, groups: int = 1, transposed: bool = False,
         output_padding: int | Shape = 0, bias: bool = False, out_spatial: Shape | None = None) -> Cost:
    """N-d (transposed) convolution. x: [N, Cin, *S]; weight: [Cout, Cin/g, *K] ([Cin, Cout/g, *K] if transposed).

    FLOPs = 2 x N x Cout x prod(out spatial) x (Cin/g) x prod(K); for a transposed conv the roles swap:
    2 x N x Cin x prod(in spatial) x (Cout/g) x prod(K) (each input element scatters into the output).
    """
    x, weight = tuple(int(d) for d in x), tuple(int(d) for d in weight)
    nsp = len(x) - 2
    kernel = weight[2:]
    if out_spatial is None:
        out_spatial = conv_out_spatial(x[2:], kernel, _expand(stride, nsp), _expand(padding, nsp),
                                       _expand(dilation, nsp), transposed=transposed,
                                       output_padding=_expand(output_padding, nsp))
    n = x[0]
    if transposed:
        cin = x[1]
        cout = weight[1] * groups
        macs = n * cin * numel(x[2:]) * weight[1] * numel(kernel)
    else:
        cout = weight[0]
        macs = n * cout * numel(out_spatial) * weight[1] * numel(kernel)
    out_shape = (n, cout, *out_spatial)
    e = dtype_bytes(dtype)
    # complex dtypes at 8 FLOPs per MAC (mac_flops); PyTorch itself runs a complex convolution as three real ones
    # (Gauss's trick, aten complex_convolution), which its frontend records as they run
    flops = mac_flops(dtype) * macs + (add_flops(dtype) * numel(out_shape) if bias else 0)
    # implicit GEMM view, batched over groups (b*m*n*k = MACs):
    #   conv:       M = N*out_pixels, N = Cout/g, K = Cin/g * prod(K)
    #   transposed: M = N*in_pixels,  N = Cout/g * prod(K), K = Cin/g  (each input pixel scatters a K-window);
    #   tagged ('transposed', 1): its kernels (col2im scatter) are not the measured forward convolutions, and the
    #   GEMM view alone cannot tell the two apart when Cin = Cout x prod(K)
    if transposed:
        dims = _dims(b=groups, m=n * numel(x[2:]), n=weight[1] * numel(kernel), k=x[1] // max(groups, 1),
                     transposed=1)
    else:
        dims = _dims(b=groups, m=n * numel(out_spatial), n=cout // max(groups, 1), k=weight[1] * numel(kernel))
    return Cost(flops, (numel(x) + numel(weight) + (cout if bias else 0)) * e, numel(out_shape) * e, OpKind.CONV,
                dims)


def conv_backward(x: Shape, weight: Shape, dtype: str, *, input_grad: bool = True, weight_grad: bool = True,
                  bias: bool = False, **conv_kw) -> list[Cost]:
    """Backward of a convolution: grad input (a transposed conv, same MACs) and grad weight (same MACs)."""
    fwd = conv(x, weight, dtype, bias=bias, **conv_kw)  # with the bias, so mm_flops removes it once
    e = dtype_bytes(dtype)
    out_bytes = fwd.bytes_written
    mm_flops = fwd.flops - (add_flops(dtype) * (fwd.bytes_written // e) if bias else 0)
    costs = []
    if input_grad:
        costs.append(Cost(mm_flops, out_bytes + numel(weight) * e, numel(x) * e, OpKind.CONV, fwd.dims))
    if weight_grad:
        costs.append(Cost(mm_flops, out_bytes + numel(x) * e, numel(weight) * e, OpKind.CONV, fwd.dims))
        if bias:
            costs.append(Cost(out_bytes // e, out_bytes, int(weight[1 if conv_kw.get("transposed") else 0]) * e,
                              OpKind.REDUCTION))
    return costs


# ---- attention -----------------------------------------------------------------------------------------------

def causal_pairs(sq: int, sk: int, *, aligned: str = "top_left") -> int:
    """Query/key pairs a causal kernel computes.

    top_left (torch SDPA ``is_causal``): query i sees keys 0..i  -> sum_i min(i+1, sk).
    bottom_right (FlashAttention with a KV cache): query i sees keys 0..i+(sk-sq).
    """
    return _pairs_closed(sq, sk, sk - sq if aligned == "bottom_right" else 0)


def _pairs_closed(sq: int, sk: int, off: int) -> int:
    # sum_{i=0}^{sq-1} clamp(i + off + 1, 0, sk)
    total = 0
    lo = max(0, -off)  # first i with i+off+1 > 0
    hi = min(sq, sk - off)  # first i with i+off+1 >= sk+1 -> full rows from there
    if hi > lo:
        a, b = lo + off + 1, (hi - 1) + off + 1
        total += (a + b) * (hi - lo) // 2
    if sq > max(hi, lo):
        total += (sq - max(hi, lo)) * sk
    return total


def _kv(kvh: int, h: int) -> dict[str, int]:
    """The ``kvh`` dim of an attention record under grouped-query attention (key / value heads < query heads)."""
    return {"kvh": kvh} if kvh != h else {}


def attention(b: int, h: int, sq: int, sk: int, d: int, dv: int, dtype: str, *, causal: bool = False,
              kv_heads: int | None = None, mask_bytes: int = 0, fused: bool = True) -> Cost:
    """Scaled-dot-product attention forward: QK^T and PV GEMMs over the computed pairs, + softmax work.

    A fused kernel reads Q, K, V (K/V with ``kv_heads`` heads under GQA) and writes O (+ logsumexp).
    """
    pairs = causal_pairs(sq, sk) if causal else sq * sk
    e = dtype_bytes(dtype)
    kvh = kv_heads or h
    mm = 2 * b * h * pairs * d + 2 * b * h * pairs * dv
    flops = mm + ATTENTION_SCORE_FLOPS_FWD * b * h * pairs
    read = (b * h * sq * d + b * kvh * sk * d + b * kvh * sk * dv) * e + mask_bytes
    written = b * h * sq * dv * e + b * h * sq * 4  # output + fp32 logsumexp
    return Cost(flops, read, written, OpKind.ATTENTION, _dims(b=b, h=h, sq=sq, sk=sk, d=d, dv=dv,
                                                             causal=int(causal), **_kv(kvh, h)))


def attention_matmul_flops(b: int, h: int, sq: int, sk: int, d: int, dv: int, *, causal: bool = False) -> int:
    pairs = causal_pairs(sq, sk) if causal else sq * sk
    return 2 * b * h * pairs * (d + dv)


def attention_backward(b: int, h: int, sq: int, sk: int, d: int, dv: int, dtype: str, *, causal: bool = False,
                       kv_heads: int | None = None, mask_bytes: int = 0) -> Cost:
    """Fused attention backward: recompute QK^T, then dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q
    (5 GEMMs over the computed pairs = 2.5x the forward GEMM FLOPs) + softmax-gradient work."""
    pairs = causal_pairs(sq, sk) if causal else sq * sk
    e = dtype_bytes(dtype)
    kvh = kv_heads or h
    mm = 2 * b * h * pairs * (d + d + dv + dv + d)  # QK^T recompute, dQ, dK (d) ; dP, dV (dv)
    flops = mm + ATTENTION_SCORE_FLOPS_BWD * b * h * pairs
    read = (b * h * sq * d + b * kvh * sk * (d + dv) + 2 * b * h * sq * dv) * e + b * h * sq * 4 + mask_bytes
    written = (b * h * sq * d + b * kvh * sk * (d + dv)) * e
    return Cost(flops, read, written, OpKind.ATTENTION, _dims(b=b, h=h, sq=sq, sk=sk, d=d, dv=dv,
                                                             causal=int(causal), **_kv(kvh, h)))


# ---- normalization, softmax, elementwise, reductions --------------------------------------------------------

def norm(x: Shape, dtype: str, kind: str = "layer", *, affine: bool = True, normalized_elems: int | None = None,
         backward: bool = False, stats_dtype: str = "float32", bias: bool | None = None,
         groups: int | None = None) -> Cost:
    """Batch/layer/group/instance/RMS norm. Reads x (and the affine weight, + its bias), writes y (+ the saved fp32
    mean/rstd: per channel for batch, per row for layer / RMS, N x groups for group, N x C for instance).
    ``bias``: whether the affine transform has a bias (default: affine, except RMS norm, which has none);
    ``groups``: a group norm's group count (default: one statistic pair per channel); ``normalized_elems``: the
    affine parameters' size for group / instance (default C) and the normalized row for layer / RMS (default the
    last dim)."""
    n = numel(x)
    e = dtype_bytes(dtype)
    if kind == "batch":
        pshape = int(x[1]) if len(x) > 1 else n
        stats = pshape
    elif kind in ("group", "instance"):
        ch = int(x[1]) if len(x) > 1 else 1
        pshape = normalized_elems if normalized_elems is not None else ch
        stats = (int(x[0]) if x else 1) * (groups if kind == "group" and groups else ch)
    else:
        pshape = normalized_elems if normalized_elems is not None else int(x[-1])
        stats = n // max(pshape, 1)
    p = pshape if affine else 0
    pb = p * (2 if (affine and (kind != "rms" if bias is None else bias)) else 1)  # weight (+ bias) elements
    sb = dtype_bytes(stats_dtype)
    # training-mode BatchNorm reduces each channel over N x H x W, far more than an SM keeps on chip, so its CUDA
    # kernels read the input twice: forward = statistics pass + normalize pass (PyTorch's
    # batch_norm_collect_statistics / batch_norm_transform_input kernels, cuDNN's spatial BN likewise), backward =
    # reduce pass over (dy, x) + element pass over (dy, x) (batch_norm_backward_reduce / _elemt). Layer/RMS/group
    # norms reduce rows that stay in registers / L1: one pass.
    passes = BATCHNORM_PASSES if kind == "batch" else 1
    if not backward:  # reads x, weight and bias
        return Cost(NORM_FLOPS_FWD[kind] * n, passes * n * e + pb * e, n * e + 2 * stats * sb, OpKind.NORM)
    # backward reads dy, x, weight, mean/rstd; writes dx, dweight (+ dbias)
    return Cost(NORM_FLOPS_BWD[kind] * n, passes * 2 * n * e + p * e + 2 * stats * sb, n * e + pb * e,
                OpKind.NORM)


def softmax(x: Shape, dtype: str, *, backward: bool = False, in_dtype: str | None = None,
            out_dtype: str | None = None) -> Cost:
    """``dtype``: of y (and dy); ``in_dtype``: of the forward's input x when it differs (autocast's fp16
    half_to_float softmax reads fp16 and writes fp32); ``out_dtype``: of the backward's dx when it differs."""
    n = numel(x)
    e = dtype_bytes(dtype)
    if backward:  # reads y and dy, writes dx
        return Cost(SOFTMAX_FLOPS_BWD * n, 2 * n * e, n * dtype_bytes(out_dtype or dtype), OpKind.SOFTMAX)
    return Cost(SOFTMAX_FLOPS_FWD * n, n * dtype_bytes(in_dtype or dtype), n * e, OpKind.SOFTMAX)


def elementwise(name: str, inputs: Sequence[Shape], out: Shape, dtype: str, *, in_dtypes: Sequence[str] | None = None,
                backward: bool = False) -> Cost:
    """An elementwise op (arithmetic, activation, comparison). FLOPs per output element from the table (the complex
    count for a complex ``dtype``: COMPLEX_ELEMENTWISE_FLOPS)."""
    per = elementwise_flops_per_element(name, dtype, None if backward else in_dtypes) * (BACKWARD_FACTOR if backward
                                                                                          else 1)
    in_dtypes = in_dtypes or [dtype] * len(inputs)
    read = sum(numel(s) * dtype_bytes(dt) for s, dt in zip(inputs, in_dtypes))
    return Cost(per * numel(out), read, nbytes(out, dtype), OpKind.ELEMENTWISE)


# FFTs: FLOPs of one complex transform of N points = 5 N log2 N, the radix-2 Cooley-Tukey count that FFTW's
# benchmarks report every transform at (benchFFT, "FFT Benchmark Methodology": "mflops = 5 N log2(N) / (time for one
# FFT in microseconds)" for complex data, half that, 2.5 N log2 N, for real-data transforms); a multi-dimensional
# transform of N = N1 x ... x Nk points runs N/Nj transforms of length Nj along each dim j: 5 N sum log2 Nj =
# 5 N log2 N again.
FFT_FLOPS_PER_POINT_LOG2 = 5


def fft(x: Shape, out: Shape, dims: Sequence[int], in_dtype: str, out_dtype: str, *, kind: str = "c2c",
        normalized: bool = False) -> Cost:
    """One FFT op (aten._fft_c2c / _fft_r2c / _fft_c2r) over ``dims`` of its input ``x`` (output ``out``): each
    transform has N = the product of the transformed dims' logical lengths (the real side's for r2c / c2r: the
    input's for r2c, the output's for c2r, whose complex side is one-sided), and there are numel / N of them (the
    batch and every dim not transformed). FLOPs per transform 5 N log2 N for c2c, 2.5 N log2 N for r2c / c2r
    (FFT_FLOPS_PER_POINT_LOG2), + one multiply per real output value when the op normalises (by 1/N or
    1/sqrt(N)). Bytes: the input read and the output written once. OpKind.ELEMENTWISE: a bandwidth-bound streaming
    kernel on a GPU."""
    if kind not in ("c2c", "r2c", "c2r"):
        raise ValueError(f"FFT kind must be c2c, r2c or c2r, got {kind!r}")
    real = tuple(out) if kind == "c2r" else tuple(x)
    nd = len(real)
    n = numel([real[d % nd] for d in dims]) if nd else 1
    transforms = numel(real) // max(n, 1)
    per = FFT_FLOPS_PER_POINT_LOG2 * n * math.log2(n) if n > 1 else 0.0
    if kind != "c2c":
        per /= 2
    scale = numel(out) * (2 if is_complex(out_dtype) else 1) if normalized else 0
    return Cost(int(round(transforms * per)) + scale, nbytes(x, in_dtype), nbytes(out, out_dtype), OpKind.ELEMENTWISE,
                _dims(n=n, batch=transforms))


# Weight normalisation, w = g * v / ||v|| per output row (torch._weight_norm_interface, dim 0 or the last):
# forward per element of v: its square, its add into the row's sum of squares, its multiply by the row's scale;
# per row: the sqrt (ELEMENTWISE_FLOPS["sqrt"] = 2) and g / norm (1). Backward (its _backward: grad_v, grad_g) per
# element: grad_w * v and its add into the row's dot product s; grad_v = (g / norm) * (grad_w - v * s / norm^2):
# a multiply, a subtract, a multiply; per row: norm^2, s / norm^2, g / norm and grad_g = s / norm.
WEIGHT_NORM_FLOPS = {"forward": (3, 3), "backward": (5, 4)}  # (per element of v, per row)


def weight_norm(v: Shape, rows: int, dtype: str, *, norms_dtype: str = "float32", backward: bool = False) -> Cost:
    """torch._weight_norm_interface (forward) / _weight_norm_interface_backward over ``v`` with ``rows`` norms (one
    per output channel for dim 0). FLOPs: WEIGHT_NORM_FLOPS. Bytes, each tensor once (a row is reduced, then scaled
    from cache, as the fused kernel does): forward reads v and g, writes w and the norms (``norms_dtype``: the
    accumulation type, fp32 for half-precision v); backward reads grad_w, v, g and the norms, writes grad_v and
    grad_g."""
    n = numel(v)
    e, ne = dtype_bytes(dtype), dtype_bytes(norms_dtype)
    per_elem, per_row = WEIGHT_NORM_FLOPS["backward" if backward else "forward"]
    flops = per_elem * n + per_row * rows
    if backward:
        return Cost(flops, 2 * n * e + rows * (e + ne), n * e + rows * e, OpKind.NORM, _dims(rows=rows))
    return Cost(flops, n * e + rows * e, n * e + rows * ne, OpKind.NORM, _dims(rows=rows))


def reduction(x: Shape, dtype: str, *, out_shape: Shape = (), flops_per_element: int = 1,
              out_dtype: str | None = None) -> Cost:
    """sum/mean/max/var... : ~1 FLOP per input element (var/std: pass 3)."""
    return Cost(flops_per_element * numel(x), nbytes(x, dtype), nbytes(out_shape, out_dtype or dtype),
                OpKind.REDUCTION)


def memory(read_elems: int, write_elems: int, dtype: str, *, read_dtype: str | None = None) -> Cost:
    """A data movement (copy, cat, contiguous transpose, cast, pad). 0 FLOPs."""
    return Cost(0, read_elems * dtype_bytes(read_dtype or dtype), write_elems * dtype_bytes(dtype), OpKind.MEMORY)


def dropout(x: Shape, dtype: str, *, backward: bool = False) -> Cost:
    """Training dropout: draw a mask, multiply and scale (fwd writes y + a bool mask; bwd reads dy + mask)."""
    n = numel(x)
    e = dtype_bytes(dtype)
    if backward:
        return Cost(2 * n, n * e + n, n * e, OpKind.DROPOUT)
    return Cost(3 * n, n * e, n * e + n, OpKind.DROPOUT)


# ---- embedding, gather/scatter, pooling, loss -----------------------------------------------------------------

def embedding(num_indices: int, dim: int, dtype: str, *, index_dtype: str = "int64", backward: bool = False,
              num_embeddings: int = 0) -> Cost:
    """Lookup of ``num_indices`` rows of width ``dim``. Backward scatter-adds into a dense gradient table."""
    e = dtype_bytes(dtype)
    ib = dtype_bytes(index_dtype)
    if backward:
        table = num_embeddings * dim
        # zero the table, read dy and indices, accumulate rows
        return Cost(num_indices * dim, num_indices * dim * e + num_indices * ib + num_indices * dim * e,
                    table * e + num_indices * dim * e, OpKind.EMBEDDING)
    return Cost(0, num_indices * ib + num_indices * dim * e, num_indices * dim * e, OpKind.EMBEDDING)


def gather(out_elems: int, index_elems: int, dtype: str, *, index_dtype: str = "int64",
           scatter_add: bool = False) -> Cost:
    """index_select / gather / take / scatter(_add): moves ``out_elems`` elements addressed by an index."""
    e = dtype_bytes(dtype)
    ib = dtype_bytes(index_dtype)
    flops = out_elems if scatter_add else 0
    read = index_elems * ib + out_elems * e * (2 if scatter_add else 1)
    return Cost(flops, read, out_elems * e, OpKind.INDEX)


def pool(x: Shape, out: Shape, kernel: Shape, dtype: str, *, kind: str = "max", backward: bool = False) -> Cost:
    """Max/avg pooling: one compare/add per window element per output element (+1 divide for avg)."""
    e = dtype_bytes(dtype)
    window = numel(kernel)
    per_out = window + (1 if kind == "avg" else 0)
    if backward:  # scatter dy into dx (max: via saved indices)
        idx = numel(out) * 8 if kind == "max" else 0
        return Cost(numel(out) * (1 if kind == "max" else window), numel(out) * e + idx, numel(x) * e, OpKind.POOL)
    idx = numel(out) * 8 if kind == "max" else 0
    return Cost(per_out * numel(out), numel(x) * e, numel(out) * e + idx, OpKind.POOL)


def adaptive_pool_kernel(in_spatial: Shape, out_spatial: Shape) -> tuple[int, ...]:
    return tuple(math.ceil(int(i) / max(int(o), 1)) for i, o in zip(in_spatial, out_spatial))


def cross_entropy(n: int, classes: int, dtype: str, *, backward: bool = False) -> Cost:
    """Fused log-softmax + NLL over ``n`` rows of ``classes`` logits."""
    e = dtype_bytes(dtype)
    elems = n * classes
    if backward:
        return Cost((SOFTMAX_FLOPS_BWD + 1) * elems, elems * e + n * 8, elems * e, OpKind.LOSS)
    return Cost((SOFTMAX_FLOPS_FWD + 1) * elems, elems * e + n * 8, n * 4, OpKind.LOSS)


def nll_loss(n: int, dtype: str, *, backward: bool = False, classes: int = 1) -> Cost:
    e = dtype_bytes(dtype)
    if backward:  # writes a dense gradient (zeros + one value per row)
        return Cost(n, n * 8 + e, n * classes * e, OpKind.LOSS)
    return Cost(n, n * e + n * 8, e, OpKind.LOSS)


# ---- recurrent cells ------------------------------------------------------------------------------------------

RNN_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
RNN_CELL_ELEMENTWISE = {"lstm": 22, "gru": 20, "rnn_tanh": 5, "rnn_relu": 2}  # per hidden unit per step


def rnn_cell(mode: str, batch: int, input_size: int, hidden: int, dtype: str, *, bias: bool = True) -> Cost:
    """One time step of an LSTM/GRU/RNN cell: gates = x W_ih^T + h W_hh^T (+ b), then the pointwise cell."""
    g = RNN_GATES[mode]
    e = dtype_bytes(dtype)
    mm = 2 * batch * (input_size + hidden) * g * hidden
    pointwise = RNN_CELL_ELEMENTWISE[mode] * batch * hidden + (2 * batch * g * hidden if bias else 0)
    weights = g * hidden * (input_size + hidden) + (2 * g * hidden if bias else 0)
    state = 2 if mode == "lstm" else 1
    read = (batch * input_size + batch * hidden * state + weights) * e
    written = batch * hidden * state * e + batch * g * hidden * e  # new state + gates saved for backward
    return Cost(mm + pointwise, read, written, OpKind.RNN, _dims(b=1, m=batch, n=g * hidden, k=input_size + hidden))


def rnn(mode: str, seq: int, batch: int, input_size: int, hidden: int, dtype: str, *, layers: int = 1,
        bidirectional: bool = False, bias: bool = True, backward: bool = False) -> Cost:
    """A whole (multi-layer, optionally bidirectional) recurrent layer over ``seq`` steps.

    Backward (:func:`rnn_layer_backward`): cuDNN's, the same work the PyTorch frontend traces for nn.LSTM/GRU/RNN.
    """
    dirs = 2 if bidirectional else 1
    total = Cost(kind=OpKind.RNN)
    for layer in range(layers):
        in_sz = input_size if layer == 0 else hidden * dirs
        if backward:
            total = total + rnn_layer_backward(mode, seq, batch, in_sz, hidden, dtype, bias=bias).scaled(dirs)
        else:
            total = total + rnn_cell(mode, batch, in_sz, hidden, dtype, bias=bias).scaled(seq * dirs)
    return Cost(total.flops, total.bytes_read, total.bytes_written, OpKind.RNN,
                _dims(b=1, m=batch, n=RNN_GATES[mode] * hidden, k=input_size + hidden))


def rnn_layer_backward(mode: str, seq: int, batch: int, input_size: int, hidden: int, dtype: str, *,
                       bias: bool = True) -> Cost:
    """Backward of one layer and direction over ``seq`` steps, as cuDNN runs it. cudnnRNNBackwardData, per step in
    reverse: the pointwise cell backward (BACKWARD_FACTOR x the cell's work; reads the state gradient(s), the saved
    states and gates, writes the gate and state gradients) and one GEMM dgates_t W_hh accumulating dh_{t-1};
    then dx = dG W_ih over all T x B rows in one GEMM. cudnnRNNBackwardWeights: dW_ih = dG^T x and
    dW_hh = dG^T h_prev, one GEMM each over all T x B rows, and the bias gradient(s) as one reduction of dG
    (GRU: two, its hidden-side gates differ). No per-step weight-gradient work."""
    g = RNN_GATES[mode]
    e = dtype_bytes(dtype)
    t, b, i, h = seq, batch, input_size, hidden
    st = 2 if mode == "lstm" else 1
    gh = g * h
    pw_f = BACKWARD_FACTOR * RNN_CELL_ELEMENTWISE[mode] * b * h
    pw_r = (st * b * h + st * b * h + b * gh) * e  # state gradient(s), saved state(s), gates / workspace
    pw_w = (b * gh + st * b * h) * e  # gate gradients, previous-state gradient(s)
    mm_f = 2 * b * gh * h
    mm_r = (b * gh + gh * h + b * h) * e
    mm_w = b * h * e
    per_step = Cost(pw_f + mm_f, pw_r + mm_r, pw_w + mm_w, OpKind.RNN)
    dx = Cost(2 * t * b * gh * i, (t * b * gh + gh * i) * e, t * b * i * e, OpKind.RNN)
    dw_ih = Cost(2 * t * b * gh * i, (t * b * gh + t * b * i) * e, gh * i * e, OpKind.RNN)
    dw_hh = Cost(2 * t * b * gh * h, (t * b * gh + t * b * h) * e, gh * h * e, OpKind.RNN)
    nb = (2 if mode == "gru" else 1) if bias else 0
    db = Cost(nb * t * b * gh, nb * t * b * gh * e, nb * gh * e, OpKind.RNN)
    return per_step.scaled(t) + dx + dw_ih + dw_hh + db


RNN_WORKSPACE = {"lstm": 4, "gru": 5, "rnn_tanh": 0, "rnn_relu": 0}  # per hidden unit per step, saved for backward


def rnn_direction(mode: str, seq: int, batch: int, input_size: int, hidden: int, dtype: str, *, bias: bool = True,
                  input_grad: bool = True, weight_grad: bool = True, output_grad: bool = True
                  ) -> tuple[list[Cost], list[Cost]]:
    """One layer and direction of a recurrent layer as the kernels cuDNN launches for it, in order (forward,
    backward): the same records the PyTorch frontend traces for nn.LSTM / GRU / RNN (frontends.torch
    ``_CudnnRecurrence``), from sizes alone (the ONNX frontend's LSTM / GRU / RNN nodes).

    Forward: the input projection x W_ih^T as ONE GEMM over all T x B rows (RNN: + b_ih), then per step one GEMM
    h_{t-1} W_hh^T (RNN: + b_hh) and the pointwise cell (LSTM / GRU: one fused kernel adding both biases, as
    torch's CUDA cells; RNN: an add and the activation). Backward, per step in reverse: the cell backward and one
    GEMM dgates_t W_hh accumulating into dy_{t-1} (beta = 1, an addmm; the last a plain mm where no dy_{t-1} is
    added: LSTM / RNN without an output gradient); then dW_hh as one GEMM over all T x B rows, the bias
    gradient(s) as reductions of the gate gradients (LSTM: one, copied to both biases; GRU: two), and the input
    projection's dW_ih (and dx when the input needs a gradient) over all rows. Each GEMM is
    ``gemm(b, m, n, k)`` with the operands it reads; the cells read their inputs and write their outputs once."""
    g = RNN_GATES[mode]
    e = dtype_bytes(dtype)
    t, b, i, h = seq, batch, input_size, hidden
    gh, bh = g * h, b * h
    fused = mode in ("lstm", "gru")
    nb = 2 if bias else 0
    fwd = [gemm(1, t * b, gh, i, dtype, bias_elems=gh if (bias and not fused) else 0)]
    for _ in range(t):
        fwd.append(gemm(1, b, gh, h, dtype, bias_elems=gh if (bias and not fused) else 0))
        if mode == "lstm":  # reads input / hidden gates, c_{t-1} and the biases; writes h, c and the 4 gates
            fwd.append(Cost(RNN_CELL_ELEMENTWISE[mode] * bh + g * bh * (1 + nb),
                            (2 * b * gh + bh + nb * gh) * e, (2 * bh + b * gh) * e, OpKind.RNN, _dims(numel=bh)))
        elif mode == "gru":  # reads input / hidden gates, h_{t-1} and the biases; writes h and its 5-wide workspace
            fwd.append(Cost(RNN_CELL_ELEMENTWISE[mode] * bh + g * bh * (1 + nb),
                            (2 * b * gh + bh + nb * gh) * e, (bh + RNN_WORKSPACE[mode] * bh) * e, OpKind.RNN,
                            _dims(numel=bh)))
        else:  # xp_t + (h W_hh^T + b_hh), then tanh / relu
            fwd.append(elementwise("add", [(b, h), (b, h)], (b, h), dtype))
            fwd.append(elementwise("tanh" if mode == "rnn_tanh" else "relu", [(b, h)], (b, h), dtype))
    bwd: list[Cost] = []
    for step in range(t - 1, -1, -1):
        first = step == t - 1
        if mode == "lstm":  # reads dh, dc (none on the first step), c_{t-1}, c_t, the gates; writes dgates, dc_{t-1}
            bwd.append(Cost(RNN_CELL_ELEMENTWISE[mode] * bh * BACKWARD_FACTOR,
                            ((3 if first else 4) * bh + b * gh) * e, (b * gh + bh) * e, OpKind.RNN, _dims(numel=bh)))
        elif mode == "gru":  # reads dh and the workspace; writes the input- and hidden-side gate gradients and dh direct
            bwd.append(Cost(RNN_CELL_ELEMENTWISE[mode] * bh * BACKWARD_FACTOR,
                            (bh + RNN_WORKSPACE[mode] * bh) * e, (2 * b * gh + bh) * e, OpKind.RNN, _dims(numel=bh)))
        else:
            bwd.append(elementwise("tanh" if mode == "rnn_tanh" else "relu", [(b, h), (b, h)], (b, h), dtype,
                                   backward=True))
        acc = mode == "gru" or (output_grad and step > 0)  # dh_{t-1} accumulated into dy_{t-1} (GRU: dh direct)
        bwd.append(gemm(1, b, h, gh, dtype, bias_elems=bh if acc else 0))
    if weight_grad:
        bwd.append(gemm(1, gh, h, t * b, dtype))  # dW_hh
        if bias:
            if mode == "lstm":  # one reduction, copied into both biases
                bwd += [reduction((t, b, gh), dtype, out_shape=(gh,)), memory(gh, gh, dtype)]
            elif mode == "gru":
                bwd += [reduction((t, b, gh), dtype, out_shape=(gh,))] * 2
            else:
                bwd.append(reduction((t, b, h), dtype, out_shape=(h,)))  # db_hh
    if input_grad:
        bwd.append(gemm(1, t * b, i, gh, dtype))  # dx
    if weight_grad:
        bwd.append(gemm(1, gh, i, t * b, dtype))  # dW_ih
        if bias and not fused:
            bwd.append(reduction((t * b, h), dtype, out_shape=(h,)))  # db_ih (the projection's own bias)
    return fwd, bwd


def rnn_saved_bytes(mode: str, seq: int, batch: int, hidden: int, dtype: str) -> int:
    """What one layer and direction keeps for backward: the outputs and each step's state / workspace."""
    per_step = (hidden + RNN_WORKSPACE[mode] * hidden) if mode == "lstm" else RNN_WORKSPACE[mode] * hidden
    return seq * batch * (hidden + per_step) * dtype_bytes(dtype)


# ---- optimizer -------------------------------------------------------------------------------------------------

def optimizer_step(name: str, param_elems: int, param_dtype: str = "float32", *, state_dtype: str = "float32",
                   momentum: bool = False) -> Cost:
    """One optimizer step over ``param_elems`` parameter elements (fused/foreach kernels: one pass)."""
    key = "sgd_momentum" if name == "sgd" and momentum else name
    flops = OPTIMIZER_FLOPS.get(key, OPTIMIZER_FLOPS["adamw"]) * param_elems
    reads, writes = OPTIMIZER_TENSORS.get(key, OPTIMIZER_TENSORS["adamw"])
    pe, se = dtype_bytes(param_dtype), dtype_bytes(state_dtype)
    # param + grad in param dtype; the rest is optimizer state
    read = param_elems * (2 * pe + (reads - 2) * se)
    written = param_elems * (pe + (writes - 1) * se)
    return Cost(flops, read, written, OpKind.OPTIMIZER, _dims(numel=param_elems))


def optimizer_state_elems(name: str, param_elems: int, *, momentum: bool = False) -> int:
    key = "sgd_momentum" if name == "sgd" and momentum else name
    return OPTIMIZER_STATE.get(key, 2) * param_elems


# The passes of torch's foreach optimizer step (torch.optim.<Opt>(foreach=True), the CUDA default) in steady
# state: (elementwise op, tensors read, tensors written) per parameter element, in kernel order. AdamW = weight
# decay mul + Adam's lerp / mul / addcmul / sqrt / div / add / addcdiv; SGD = momentum 0.9 (mul, add) + update;
# Adadelta (torch.optim.adadelta._multi_tensor_adadelta): square_avg mul / addcmul, std = sqrt(square_avg + eps),
# delta = sqrt(acc_delta + eps) / std * grad, acc_delta mul / addcmul, param add. The single-tensor (for-loop)
# implementation runs the same passes once per parameter tensor.
OPTIMIZER_FOREACH_PASSES: dict[str, tuple[tuple[str, int, int], ...]] = {
    "adamw": (("mul", 1, 1), ("lerp", 2, 1), ("mul", 1, 1), ("addcmul", 3, 1), ("sqrt", 1, 1), ("div", 1, 1),
              ("add", 1, 1), ("addcdiv", 3, 1)),
    "adam": (("lerp", 2, 1), ("mul", 1, 1), ("addcmul", 3, 1), ("sqrt", 1, 1), ("div", 1, 1), ("add", 1, 1),
             ("addcdiv", 3, 1)),
    "sgd": (("mul", 1, 1), ("add", 2, 1), ("add", 2, 1)),
    "adadelta": (("mul", 1, 1), ("addcmul", 3, 1), ("add", 1, 1), ("sqrt", 1, 1), ("add", 1, 1), ("sqrt", 1, 1),
                 ("div", 2, 1), ("mul", 2, 1), ("mul", 1, 1), ("addcmul", 3, 1), ("add", 2, 1)),
}


def optimizer_foreach(name: str, param_elems: int, param_dtype: str = "float32") -> list[Cost]:
    """The kernels of one foreach optimizer step over ``param_elems`` elements (for frontends that synthesize the
    step, e.g. ONNX); unknown optimizers fall back to one fused pass (:func:`optimizer_step`)."""
    passes = OPTIMIZER_FOREACH_PASSES.get(name)
    if passes is None:
        return [optimizer_step(name, param_elems, param_dtype)]
    e = dtype_bytes(param_dtype)
    return [Cost(elementwise_flops_per_element(op) * param_elems, r * param_elems * e, w * param_elems * e,
                 OpKind.OPTIMIZER, _dims(numel=param_elems)) for op, r, w in passes]
