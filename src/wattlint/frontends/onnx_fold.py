"""Fold shape computations of an ONNX graph to constants (numpy), so onnx shape inference can finish.

Exporters compute Reshape/Expand/Slice targets at run time from ``Shape`` of a tensor (``Shape -> Gather ->
Concat -> Where(Equal(.., -1)) -> Expand``). onnx's data propagation covers only some of those ops; once the
input dims are bound, every such value is a small integer array we can evaluate here. Nodes whose inputs are all
known small values are replaced by ``Constant`` nodes producing the same names; onnxruntime's (slow) symbolic
shape inference is then needed only for what is still unknown.
"""

from __future__ import annotations

import math

import numpy as np

MAX_FOLD_ELEMS = 1 << 16

_NP = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64, 9: np.bool_, 10: np.float16,
       11: np.float64, 12: np.uint32, 13: np.uint64}


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            if a.type == 2:
                return a.i
            if a.type == 7:
                return list(a.ints)
            if a.type == 1:
                return a.f
            if a.type == 4:
                return a.t
            if a.type == 3:
                return a.s
    return default


def _axes(node, vals, pos=1):
    ax = _attr(node, "axes")
    if ax is None and len(vals) > pos and vals[pos] is not None:
        ax = [int(v) for v in np.asarray(vals[pos]).reshape(-1)]
    return ax


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Equal": np.equal, "Less": np.less,
           "Greater": np.greater, "LessOrEqual": np.less_equal, "GreaterOrEqual": np.greater_equal,
           "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor, "Max": np.maximum,
           "Min": np.minimum, "Pow": np.power}
_UNARY = {"Neg": np.negative, "Abs": np.abs, "Not": np.logical_not, "Floor": np.floor, "Ceil": np.ceil,
          "Sqrt": np.sqrt, "Sign": np.sign, "Reciprocal": np.reciprocal}
# ops evaluated on a Grid (element-wise: they commute with indexing) and the views that keep its last two axes
# (Trilu: position-wise too, its kept triangle computed from the sampled rows and columns)
_GRID_OPS = {*_BINARY, *_UNARY, "Div", "Where", "Cast", "Identity", "Expand", "ConstantOfShape", "Unsqueeze",
             "Reshape", "Trilu"}


class Grid:
    """A value too large to hold (an attention mask at a long sequence), known at sampled positions: ``a`` holds
    rows ``rows`` x columns ``cols`` of its last two axes at index 0 of every leading axis (shape ``(1, ..., 1,
    len(rows) or 1, len(cols) or 1)``); ``shape`` is the value's full shape."""

    __slots__ = ("a", "rows", "cols", "shape")

    def __init__(self, a, rows, cols, shape):
        self.a, self.rows, self.cols, self.shape = a, rows, cols, tuple(shape)

    @property
    def size(self) -> int:
        return self.a.size


def _shape(x) -> tuple:
    return x.shape if isinstance(x, Grid) else np.shape(x)


def _out_shape(node, v):
    """The output shape of an op that can make an array larger than its inputs, from the inputs' shapes alone
    (nothing is computed); None for the others, whose output is no larger than an input."""
    op = node.op_type
    if op in _BINARY or op in ("Div", "Where"):
        return np.broadcast_shapes(*(_shape(x) for x in v if x is not None))
    if op == "Expand":
        return np.broadcast_shapes(_shape(v[0]), tuple(int(x) for x in v[1].reshape(-1)))
    if op == "ConstantOfShape":
        return tuple(int(x) for x in v[0].reshape(-1))
    if op == "Range":
        return (max(0, math.ceil((v[1].item() - v[0].item()) / v[2].item())),)
    if op == "Tile":
        return tuple(int(d) * int(r) for d, r in zip(_shape(v[0]), v[1].reshape(-1)))
    if op == "Gather":
        s, ax = _shape(v[0]), _attr(node, "axis", 0) % max(1, len(_shape(v[0])))
        return (*s[:ax], *_shape(v[1]), *s[ax + 1:])
    if op == "Concat":
        return (sum(math.prod(_shape(x)) for x in v if x is not None),)
    return None


def _grid_shape(shape, grid) -> tuple:
    """The shape a Grid of a value of ``shape`` holds."""
    rows, cols = grid[2], grid[3]
    return (1,) * (len(shape) - 2) + (len(rows) if shape[-2] != 1 else 1, len(cols) if shape[-1] != 1 else 1)


def _sub(x, shape, grid):
    """Input ``x`` (an array, or a Grid) at the sampled positions of an output of ``shape`` it broadcasts to."""
    if isinstance(x, Grid):
        a = x.a
    else:
        a = np.asarray(x)
        if a.ndim >= 1 and a.shape[-1] != 1:
            a = np.take(a, grid[3], axis=-1)
        if a.ndim >= 2 and a.shape[-2] != 1:
            a = np.take(a, grid[2], axis=-2)
        if a.ndim > 2:
            a = a[(slice(0, 1),) * (a.ndim - 2)]
    return a.reshape((1,) * (len(shape) - a.ndim) + a.shape)


def _eval_grid(node, v, shape, grid):
    """``node`` at the sampled positions of its output of ``shape`` (a Grid; see :class:`Grid`): element-wise ops
    commute with indexing, so each input is taken at the positions of the axes it broadcasts along. None where that
    does not hold (the output's last two axes are not the mask's [sq, sk], or another op)."""
    op = node.op_type
    sq, sk, rows, cols = grid
    if shape is None:  # an op that keeps its input's shape
        shape = _shape(v[0])
    if op in ("Unsqueeze", "Reshape"):  # index 0 of the leading axes stays index 0 when the last two axes are kept
        a = v[0]
        if not isinstance(a, Grid) or len(a.shape) < 2:
            return None
        if op == "Reshape":
            t = [int(x) for x in v[1].reshape(-1)]
            t = [a.shape[i] if d == 0 and not _attr(node, "allowzero", 0) else d for i, d in enumerate(t)]
            if -1 in t:
                known = math.prod(d for d in t if d != -1)
                t[t.index(-1)] = math.prod(a.shape) // known if known else 0
            out = tuple(t)
        else:
            out = list(a.shape)
            for ax in sorted(int(x) % (len(a.shape) + len(_axes(node, v))) for x in _axes(node, v)):
                out.insert(ax, 1)
            out = tuple(out)
        if len(out) < 2 or out[-2:] != a.shape[-2:] or math.prod(out) != math.prod(a.shape):
            return None
        return Grid(a.a.reshape(_grid_shape(out, grid)), rows, cols, out)
    if len(shape) < 2 or shape[-2] not in (sq, 1) or shape[-1] not in (sk, 1):
        return None
    gs = _grid_shape(shape, grid)
    if op == "Trilu":  # keeps one triangle of the last two axes: at (row, col), kept when col - row <= k (>= k)
        if tuple(shape[-2:]) != (sq, sk):
            return None
        a = _sub(v[0], shape, grid)
        d = cols[None, :] - rows[:, None]
        k = _trilu_k(v)
        keep = d >= k if _attr(node, "upper", 1) else d <= k
        return Grid(np.where(keep, a, np.zeros((), a.dtype)), rows, cols, shape)
    if op == "ConstantOfShape":
        out = _eval(node, [np.asarray(gs, dtype=np.int64)], None, math.prod(gs))[0]
    elif op == "Expand":
        out = _sub(v[0], shape, grid)
    else:
        out = _eval(node, [None if a is None else _sub(a, shape, grid) for a in v], None, math.prod(gs))[0]
    return Grid(np.broadcast_to(out, gs), rows, cols, shape)


def _trilu_k(v) -> int:
    """Trilu's diagonal offset ``k`` (its optional second input, a scalar; 0 when omitted)."""
    return int(np.asarray(v[1]).reshape(-1)[0]) if len(v) > 1 and v[1] is not None else 0


def _eval(node, v, shapes, limit):  # noqa: C901 - a table of small cases
    op = node.op_type
    a = v[0] if v else None
    if op == "Identity":
        return [a]
    if op == "Cast":
        return [a.astype(_NP.get(_attr(node, "to", 7), np.int64))]
    if op == "Gather":
        return [np.take(a, v[1].astype(np.int64), axis=_attr(node, "axis", 0))]
    if op == "Concat":
        return [np.concatenate([np.atleast_1d(x) if x.ndim == 0 else x for x in v if x is not None],
                               axis=_attr(node, "axis", 0))]
    if op == "Unsqueeze":
        out = a
        for ax in sorted(int(x) % (a.ndim + len(_axes(node, v))) for x in _axes(node, v)):
            out = np.expand_dims(out, ax)
        return [out]
    if op == "Squeeze":
        ax = _axes(node, v)
        return [np.squeeze(a, axis=tuple(ax)) if ax else np.squeeze(a)]
    if op == "Slice":
        starts, ends = v[1].reshape(-1), v[2].reshape(-1)
        axes = v[3].reshape(-1) if len(v) > 3 and v[3] is not None else np.arange(len(starts))
        steps = v[4].reshape(-1) if len(v) > 4 and v[4] is not None else np.ones(len(starts), dtype=np.int64)
        sl = [slice(None)] * a.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            big = np.iinfo(np.int64).max // 2
            sl[int(ax)] = slice(int(max(min(s, big), -big)), int(max(min(e, big), -big)), int(st))
        return [a[tuple(sl)]]
    if op == "Range":
        return [np.arange(a.item(), v[1].item(), v[2].item()).astype(a.dtype)]
    if op == "ConstantOfShape":
        t = _attr(node, "value")
        dt = _NP.get(t.data_type, np.float32) if t is not None else np.float32
        fill = 0
        if t is not None:
            from onnx import numpy_helper

            fill = numpy_helper.to_array(t).reshape(-1)[0]
        shape = [int(x) for x in a.reshape(-1)]
        if int(np.prod(shape)) > limit:
            return None
        return [np.full(shape, fill, dtype=dt)]
    if op == "Expand":
        shape = [int(x) for x in v[1].reshape(-1)]
        out_shape = np.broadcast_shapes(a.shape, tuple(shape))
        if int(np.prod(out_shape)) > limit:
            return None
        return [np.broadcast_to(a, out_shape).copy()]
    if op == "Reshape":
        shape = [int(x) for x in v[1].reshape(-1)]
        shape = [a.shape[i] if d == 0 and not _attr(node, "allowzero", 0) else d for i, d in enumerate(shape)]
        return [a.reshape(shape)]
    if op == "Flatten":
        ax = _attr(node, "axis", 1)
        return [a.reshape(int(np.prod(a.shape[:ax])), -1)]
    if op == "Transpose":
        return [np.transpose(a, _attr(node, "perm"))]
    if op == "Tile":
        return [np.tile(a, [int(x) for x in v[1].reshape(-1)])]
    if op == "Trilu":  # the last two axes' upper / lower triangle (a causal mask: tril of ones)
        if a.ndim < 2:
            return None
        return [np.triu(a, _trilu_k(v)) if _attr(node, "upper", 1) else np.tril(a, _trilu_k(v))]
    if op in _BINARY:
        out = v[0]
        for x in v[1:]:
            out = _BINARY[op](out, x)
        return [np.asarray(out)]
    if op == "Div":
        if np.issubdtype(a.dtype, np.integer):
            return [np.trunc(a / v[1]).astype(a.dtype)]
        return [np.asarray(a / v[1]).astype(a.dtype)]
    if op == "Mod":
        return [np.fmod(a, v[1]) if _attr(node, "fmod", 0) else np.mod(a, v[1])]
    if op in _UNARY:
        return [np.asarray(_UNARY[op](a)).astype(a.dtype if op != "Not" else np.bool_)]
    if op == "Where":
        return [np.where(v[0], v[1], v[2])]
    if op in ("ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin"):
        fn = {"ReduceProd": np.prod, "ReduceSum": np.sum, "ReduceMax": np.max, "ReduceMin": np.min}[op]
        ax = _axes(node, v)
        keep = bool(_attr(node, "keepdims", 1))
        return [np.asarray(fn(a, axis=tuple(ax) if ax else None, keepdims=keep))]
    return None


def fold_shape_values(graph, types: dict, targets=None) -> int:
    """Replace nodes computing small known integer values by Constants. ``types`` maps a tensor name to
    (dtype, shape | None) after a first shape inference. With ``targets`` (tensor names), only their integer /
    boolean ancestors are evaluated. Returns the number of nodes folded."""
    only = None
    if targets is not None:
        producer = {o: i for i, n in enumerate(graph.node) for o in n.output}
        only = _ancestors(graph, targets, producer, types, int_only=True)
    return _run(graph, types, replace=True, limit=MAX_FOLD_ELEMS, only=only)[0]


_INTLIKE = {"int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64", "bool", None}


def _ancestors(graph, targets, producer, types, int_only: bool) -> set:
    only: set = set()
    stack = list(targets)
    seen = set()
    while stack:
        t = stack.pop()
        if t in seen or not t:
            continue
        seen.add(t)
        if int_only and types.get(t, (None, None))[0] not in _INTLIKE:
            continue
        i = producer.get(t)
        if i is not None and i not in only:
            only.add(i)
            stack.extend(graph.node[i].input)
    return only


def evaluate_values(graph, types: dict, limit: int = 1 << 24, targets=None, producer=None, feeds=None,
                    grid=None) -> dict:
    """Values of tensors computable from shapes and constants (masks included), without changing the graph.
    With ``targets`` (and ``producer``: tensor -> node index), only their ancestors are evaluated; ``feeds`` gives
    values to graph inputs (e.g. an all-ones attention mask). No array of more than ``limit`` elements is made:
    with ``grid`` = (sq, sk, rows, cols), a larger value whose last two axes are [sq, sk] (an attention mask at a
    long sequence) is evaluated at those rows and columns only (a :class:`Grid`), through element-wise ops."""
    only = None
    if targets is not None and producer is not None:
        only = _ancestors(graph, targets, producer, types, int_only=False)
    # (a target that is itself an initializer, a constant mask buffer, is read too)
    return _run(graph, types, replace=False, limit=limit, only=only, feeds=feeds, grid=grid,
                want=targets if only is not None else ())[1]


def _run(graph, types: dict, *, replace: bool, limit: int, only=None, feeds=None, grid=None,
         want=()) -> tuple[int, dict]:
    from onnx import helper, numpy_helper

    return _run_inner(graph, types, replace, helper, numpy_helper, only, feeds, limit, grid, want)


def _run_inner(graph, types, replace, helper, numpy_helper, only, feeds, limit, grid=None,
               want=()) -> tuple[int, dict]:
    vals: dict = dict(feeds or {})
    nodes = graph.node
    needed = None if only is None else {i for idx in only for i in nodes[idx].input} | set(want)
    # integer / boolean initializers (shapes, index buffers); when evaluating the ancestors of a few values (not
    # folding), the float ones they need too (a mask's fill values), never every weight of the graph
    kinds = (6, 7, 9) if replace or needed is None else (1, 6, 7, 9, 10, 11)
    for t in graph.initializer:
        if t.data_location != 1 and t.data_type in kinds and _numel(t.dims) <= limit \
                and (needed is None or t.name in needed):
            try:
                vals[t.name] = numpy_helper.to_array(t)
            except Exception:
                pass
    folded = 0
    order = sorted(only) if only is not None else range(len(nodes))
    for idx in order:
        node = nodes[idx]
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            continue
        out = None
        try:
            if op == "Constant":
                t = _attr(node, "value")
                if t is not None and t.data_type in (1, 6, 7, 9, 10, 11) and _numel(t.dims) <= limit \
                        and t.data_location != 1:
                    vals[node.output[0]] = numpy_helper.to_array(t)
                else:
                    ints = _attr(node, "value_ints")
                    if ints is not None:
                        vals[node.output[0]] = np.asarray(ints, dtype=np.int64)
                    elif _attr(node, "value_int") is not None:
                        vals[node.output[0]] = np.asarray(_attr(node, "value_int"), dtype=np.int64)
                continue
            if op in ("Shape", "Size"):
                shape = types.get(node.input[0], (None, None))[1]
                if shape is None:
                    continue
                if op == "Size":
                    out = [np.asarray(int(np.prod(shape)), dtype=np.int64)]
                else:
                    s = list(shape)
                    start, end = _attr(node, "start", 0), _attr(node, "end", len(s))
                    out = [np.asarray(s[start:end], dtype=np.int64)]
            else:
                ins = list(node.input)
                if not ins or not node.output or any(i and i not in vals for i in ins):
                    continue
                v = [vals[i] if i else None for i in ins]
                # sizes are checked before anything is computed: a broadcast of two [S] vectors is S x S
                shape = _out_shape(node, v)
                big = shape is not None and math.prod(shape) > limit
                if big or any(isinstance(x, Grid) for x in v):
                    if grid is None or op not in _GRID_OPS:
                        continue
                    out = [_eval_grid(node, v, shape, grid)]
                else:
                    out = _eval(node, v, types, limit)
        except Exception:  # anything odd: leave the node for inference
            continue
        if not out or any(o is None or o.size > limit for o in out):
            continue
        for name, value in zip(node.output, out):
            vals[name] = value if isinstance(value, Grid) else np.asarray(value)
        if replace and len(node.output) == 1 and op not in ("Constant",) and out[0].size <= 1 << 16:
            arr = np.asarray(out[0])
            if arr.dtype == np.float64 or arr.dtype.kind not in "iub":
                continue  # float values are not shapes: keep the node
            const = helper.make_node("Constant", [], [node.output[0]], name=node.name,
                                     value=numpy_helper.from_array(arr, node.output[0]))
            graph.node[idx].CopyFrom(const)
            folded += 1
    return folded, vals


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


# ops that only move data: applied to parameters alone (a training-mode export, no constant folding: an LSTM's
# gate blocks re-ordered, Slice -> Concat -> Unsqueeze; a Linear's weight Transposed before its MatMul), their
# output is a re-laid-out parameter, which PyTorch never materializes (cuDNN's flat weights, F.linear reading W
# transposed). Cast is no movement: the frontend's autocast logic prices a weight's cast.
PARAM_VIEW_OPS = {"Slice": (0,), "Concat": None, "Unsqueeze": (0,), "Squeeze": (0,), "Reshape": (0,),
                  "Flatten": (0,), "Transpose": (0,), "Gather": (0,), "Identity": (0,)}


def parameter_views(graph, params: set, weights: set) -> dict[str, tuple]:
    """Tensors of ``graph`` (its own nodes, not subgraphs) computed from parameters and constants alone by ops of
    :data:`PARAM_VIEW_OPS` (the data inputs: parameters, constant tensors or such views; the other inputs - starts,
    axes, a Reshape target, Gather's indices - constants), each -> the parameters of ``params`` it is made of
    (graph order, possibly none: a view of a frozen constant). ``weights``: the float initializers (parameters and
    frozen constants). Such a node is part of the parameters: no kernel, no bytes per step, nothing saved."""
    static = {t.name for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            static.update(n.output)
    # constants computed from constants (a Concat of Constant pieces, a Cast of one): no activation involved
    for n in graph.node:
        if n.op_type not in ("Constant", "Shape", "Size") and n.input and all(not i or i in static for i in n.input) \
                and not any(a.type in (5, 10) for a in n.attribute):
            static.update(o for o in n.output if o)
    scalars = {t.name for t in graph.initializer if len(t.dims) == 0}
    for n in graph.node:
        if n.op_type == "Constant" and any(a.name in ("value_int", "value_float") or (a.name == "value" and
                                                                                      len(a.t.dims) == 0)
                                           for a in n.attribute):
            scalars.update(n.output)
    views: dict[str, tuple] = {}
    for n in graph.node:
        data = PARAM_VIEW_OPS.get(n.op_type, ()) if n.domain in ("", "ai.onnx") else ()
        if data == () or not n.input or len(n.output) != 1 or n.output[0] in weights:  # an alias: its own parameter
            continue
        # Gather with one constant index is torch's select (a view); with an index tensor it is an embedding /
        # index kernel in PyTorch too (a position embedding read at constant positions)
        if n.op_type == "Gather" and (len(n.input) < 2 or n.input[1] not in scalars):
            continue
        pos = range(len(n.input)) if data is None else data
        roots: list = []
        ok = False
        for k, i in enumerate(n.input):
            if not i:
                continue
            if k in pos:
                if i in weights:
                    if i in params:
                        roots.append(i)
                    ok = True
                elif i in views:
                    roots.extend(views[i])
                    ok = True
                elif i not in static:
                    break
            elif i not in static:
                break
        else:
            if ok:
                views[n.output[0]] = tuple(dict.fromkeys(roots))
    return views
