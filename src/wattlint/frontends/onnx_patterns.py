"""Find unfused attention in an ONNX graph: ``MatMul(Q, K^T) -> [scale] -> [mask] -> Softmax -> [NaN guard,
Dropout, Cast] -> MatMul(P, V)``, as the TorchScript exporter writes ``scaled_dot_product_attention`` and eager
attention. On the target GPU (and on the PyTorch path) that is one fused attention kernel, so the frontend costs
it with :func:`wattlint.costs.attention` / ``attention_backward`` instead of two GEMMs + a softmax.

Causality is read from the mask: its value when it is computable from shapes (a lower-triangular mask; past
2**24 elements, at sampled rows and columns, so the verdict does not depend on the length), or the value of a part
it is a conjunction of (a folded causal mask And-ed with padding from an input), else from its ancestry
(``Trilu``, a comparison of two ``Range``s, a square boolean buffer, a numeric 0/1 buffer read through a boolean op,
or a float buffer of 0 and a large negative added to the scores; a buffer past 2**24 elements is read at sampled rows
and columns, one stored as external data from its data file). Either way with the mask's polarity: the
condition of ``Where(cond, fill, scores)`` (torch's ``scores.masked_fill(cond, -inf)``) marks the BLOCKED
positions, so ``masked_fill(~tril(..))`` and ``masked_fill(triu(.., 1))`` are causal and ``masked_fill(tril(..))``
is not; ``Where(cond, scores, fill)``, boolean and additive masks mark the allowed ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

_CHAIN_UP = {"Add", "Where", "Mul", "Div", "Sub", "Cast", "Identity"}
_CHAIN_DOWN = {"Where", "Dropout", "Cast", "Identity", "IsNaN"}
_CMP = {"Less", "LessOrEqual", "Greater", "GreaterOrEqual"}
# ops whose output holds their first input's values at the same [row, column] positions (no transpose)
_ADD_VIEWS = {"Slice", "Identity", "Expand", "Unsqueeze", "Squeeze", "Reshape"}


@dataclass
class AttentionMatch:
    qk: int  # node index of MatMul(Q, K^T): carries the fused cost
    pv: int  # node index of MatMul(P, V)
    members: set = field(default_factory=set)  # every node index of the pattern (qk and pv included)
    q: str = ""
    k: str = ""
    v: str = ""
    out: str = ""
    masks: list = field(default_factory=list)  # mask tensor names applied to the scores
    # masks whose true positions are the BLOCKED ones: the condition of Where(cond, fill, scores), as torch exports
    # scores.masked_fill(cond, -inf); the others allow where true / nonzero (Where(cond, scores, fill), additive)
    blocking: set = field(default_factory=set)
    # masks added to the scores (an Add of the chain): additive, allowed where not a large negative
    additive: set = field(default_factory=set)


def find_attention(nodes, producer: dict, consumers: dict) -> dict[int, AttentionMatch]:
    """Map node index -> match for every node of every pattern found. ``producer``: tensor -> node index;
    ``consumers``: tensor -> list of node indices."""
    out: dict[int, AttentionMatch] = {}
    for si, s in enumerate(nodes):
        if s.op_type not in ("Softmax",) or s.domain not in ("", "ai.onnx") or not s.input:
            continue
        members = {si}
        masks: list[str] = []
        blocking: set[str] = set()
        additive: set[str] = set()
        # upstream to MatMul(Q, K^T)
        cur = s.input[0]
        qk = None
        for _ in range(6):
            pi = producer.get(cur)
            if pi is None:
                break
            p = nodes[pi]
            if p.op_type == "MatMul":
                qk = pi
                break
            if p.op_type not in _CHAIN_UP or pi in out:
                break
            members.add(pi)
            data = _data_input(p, nodes, producer)
            if data is None:
                break
            masks.extend(i for i in p.input if i and i != data)
            if p.op_type == "Where" and len(p.input) == 3 and data == p.input[2] and p.input[0]:
                blocking.add(p.input[0])  # masked_fill(cond, fill): the scores where cond is false
            if p.op_type == "Add":
                additive.update(i for i in p.input if i and i != data)  # scores + mask
            cur = data
        if qk is None:
            continue
        # downstream to MatMul(P, V) with P as its first operand
        cur = s.output[0]
        pv = None
        for _ in range(6):
            cons = consumers.get(cur, [])
            nxt = None
            for ci in cons:
                c = nodes[ci]
                if c.op_type == "MatMul" and c.input and c.input[0] == cur:
                    pv = ci
                    break
                if c.op_type == "IsNaN":
                    members.add(ci)
                    continue
                if c.op_type in _CHAIN_DOWN:
                    nxt = ci
            if pv is not None or nxt is None:
                break
            members.add(nxt)
            cur = nodes[nxt].output[0]
        if pv is None:
            continue
        m = AttentionMatch(qk, pv, members | {qk, pv}, nodes[qk].input[0], nodes[qk].input[1],
                           nodes[pv].input[1], nodes[pv].output[0], masks, blocking, additive)
        for i in m.members:
            out[i] = m
    return out


def _data_input(p, nodes, producer) -> str | None:
    """The input of a score-chain op that carries the scores (leads back to a MatMul), not the mask/scale."""
    cands = [i for i in p.input if i]
    if p.op_type == "Where":
        cands = [i for i in p.input[1:] if i]
    for i in cands:
        seen = 0
        cur = i
        while seen < 6:
            pi = producer.get(cur)
            if pi is None:
                break
            q = nodes[pi]
            if q.op_type == "MatMul":
                return i
            if q.op_type not in _CHAIN_UP:
                break
            nxt = _first_chain_input(q, nodes, producer)
            if nxt is None:
                break
            cur = nxt
            seen += 1
    return None


def _first_chain_input(q, nodes, producer) -> str | None:
    ins = [i for i in (q.input[1:] if q.op_type == "Where" else q.input) if i]
    for i in ins:
        pi = producer.get(i)
        if pi is not None and nodes[pi].op_type in _CHAIN_UP | {"MatMul"}:
            return i
    return None


def mask_positions(sq: int, sk: int) -> tuple:
    """The rows and columns at which a mask too large to evaluate whole is evaluated (onnx_fold.Grid): the first
    and last 32, 64 spread over the length, and their neighbours and diagonal positions (top-left and bottom-right
    aligned), so a lower-triangular mask is told from a full or banded one whatever the length."""
    import numpy as np

    def spread(n):
        base = {*range(min(n, 32)), *range(max(0, n - 32), n), *(int(x) for x in np.linspace(0, n - 1, 64))}
        return {x for b in base for x in (b, b + 1) if 0 <= x < n}

    rows = spread(sq)
    off = sk - sq if sk >= sq else 0
    cols = spread(sk) | {c for r in rows for c in (r - 1, r, r + 1, r + off - 1, r + off, r + off + 1) if 0 <= c < sk}
    return np.array(sorted(rows), dtype=np.int64), np.array(sorted(cols), dtype=np.int64)


def _verdict(v, sq: int, sk: int, blocking: bool = False) -> bool | None:
    """A mask's value (an array, or an onnx_fold.Grid) of shape [..., sq, sk]: True when it allows exactly a lower
    triangle (top-left or bottom-right aligned), False when it allows everything, None otherwise. ``blocking``: its
    true / nonzero positions are the blocked ones (a masked_fill condition), else the allowed ones (a boolean
    mask: true; an additive one: not a large negative)."""
    import numpy as np

    if v is None or len(v.shape) < 2 or tuple(v.shape[-2:]) != (sq, sk):
        return None
    if hasattr(v, "rows"):  # a Grid
        a = v.a.reshape(len(v.rows), len(v.cols))
        rows, cols = v.rows, v.cols
    else:
        a = v.reshape(-1, sq, sk)[0]
        rows, cols = np.arange(sq), np.arange(sk)
    if blocking:
        allowed = ~a if a.dtype == np.bool_ else a == 0
    else:
        allowed = a if a.dtype == np.bool_ else (a > -1e4)
    if a.dtype == np.bool_ and not allowed.any():
        return None
    tl = cols[None, :] <= rows[:, None]
    tri = cols[None, :] <= rows[:, None] + (sk - sq if sk >= sq else 0)
    if np.array_equal(allowed, tl) or np.array_equal(allowed, tri):
        return True
    if allowed.all():
        return False
    return None


def _fill(v, blocking: bool = False) -> bool | None:
    """A single fill value of a mask: True when it lets a score through, False when it blocks it, None when
    unknown. In an allowing mask a score passes a true value or an additive one that is not a large negative; in a
    blocking one (``blocking``: a masked_fill condition) a false / zero value."""
    if v is None or getattr(v, "size", 0) != 1 or hasattr(v, "rows"):
        return None
    x = v.reshape(-1)[0]
    if blocking:
        return not bool(x)
    return bool(x) if v.dtype.kind == "b" else bool(x > -1e4)


def _zero(v) -> bool:
    return v is not None and getattr(v, "size", 0) == 1 and not hasattr(v, "rows") and not v.reshape(-1)[0]


def _where_polarity(n, values, blocking: bool) -> bool | None:
    """For a mask ``Where(c, x, y)`` of polarity ``blocking``: the polarity of ``c`` (False: c is true where the
    mask allows, True: where it blocks), from its two fill values; None when they do not tell."""
    x, y = _fill(values.get(n.input[1]), blocking), _fill(values.get(n.input[2]), blocking)
    if x is True and y is False:
        return False
    if x is False and y is True:
        return True
    return None


def is_causal(masks, nodes, producer, values, types, sq: int, sk: int, blocking=frozenset(),
              inits=None, additive=frozenset(), data=None) -> bool | None:
    """True/False when the mask tells; None when nothing is known (treated as not causal). A value may be an
    onnx_fold.Grid (the mask at sampled rows and columns): it is compared at those positions. ``blocking``: the
    masks whose true positions are blocked (masked_fill conditions; see :class:`AttentionMatch`): each tensor is
    read with the polarity it has where it meets the scores, flipped through Not (masked_fill(~tril(..)) is
    causal, masked_fill(tril(..)) is not). ``inits``: initializer name -> TensorProto, to read a square buffer
    too large for ``values`` (a nanoGPT ``tril(ones(T, T))`` of more than 2**24 elements) at sampled positions, or
    one stored as external data (``data``: (folder, also, model path) as :func:`.onnx_load.external_path` takes
    them, and the model named in the error when its data file is missing: InputError). ``additive``: the masks
    added to the scores: a float buffer reached from one through views and Adds only (``scores + mask[:, :, :T,
    :T]``, its 0 / -inf values themselves) is read as allowed where not a large negative."""
    # the masks apply one after the other (a causal masked_fill, then a padding one): the scores pass where every
    # one allows; a lower-triangular one makes the attention causal, one that allows everything says nothing of
    # the others
    full, undecided = False, []
    for m in masks:
        verdict = _verdict(values.get(m), sq, sk, m in blocking)
        if verdict:
            return True
        full |= verdict is False
        if verdict is None:
            undecided.append(m)
    values = _WithConstants(values, nodes, producer)  # small Constant nodes read where evaluation did not run
    # a part the mask is a conjunction of (a folded causal mask And-ed with padding that depends on an input, an
    # additive mask's Add, a Where selecting its allowed fill; for a blocking mask: a part Or-ed with padding):
    # lower-triangular there (allowed), the mask is causal
    stack = [(m, m in blocking) for m in undecided]
    seen = set()
    while stack:
        t, blk = stack.pop()
        if (t, blk) in seen or not t:
            continue
        seen.add((t, blk))
        if t not in masks and _verdict(values.get(t), sq, sk, blk):
            return True
        pi = producer.get(t)
        if pi is None:
            continue
        n = nodes[pi]
        if n.op_type == ("Or" if blk else "And") or (n.op_type == "Add" and not blk):
            stack.extend((i, blk) for i in n.input[:2])
        elif n.op_type == "Not":
            stack.extend((i, not blk) for i in n.input[:1])
        elif n.op_type in ("Cast", "Identity", "Expand", "Unsqueeze", "Reshape"):
            stack.extend((i, blk) for i in n.input[:1])
        elif n.op_type == "Where" and len(n.input) == 3:
            pol = _where_polarity(n, values, blk)
            if pol is not None:
                stack.append((n.input[0], pol))
    # ancestry: Trilu keeping the allowed lower triangle (or the blocked strict upper one), a comparison of two
    # Range-derived tensors, a square boolean buffer; the polarity followed through Not, x == 0 and Where
    # ``boolean``: the path from the mask to here went through a boolean op (x == 0, Not, a Where's condition, a
    # cast to bool) or the mask itself is boolean: only then is a numeric 0/1 buffer a mask of true / false (review:
    # one added to the scores, ``scores + (tril(ones) + pad)``, blocks nothing and was read as causal)
    # ``add``: the path from an additive mask (one added to the scores) to here kept its values (views, Adds): a
    # float buffer there is an additive mask too, allowed where not a large negative (a triu(-inf, 1) buffer)
    stack = []
    for m in undecided:
        boolean = types.get(m, (None, None))[0] == "bool"
        stack.append((m, m in blocking, boolean, m in additive and m not in blocking and not boolean))
    seen = set()
    hops = 0
    while stack and hops < 200:
        t, blk, boolean, add = stack.pop()
        hops += 1
        if (t, blk, boolean, add) in seen or not t:
            continue
        seen.add((t, blk, boolean, add))
        pi = producer.get(t)
        if pi is None:
            dt, shape = types.get(t, (None, None))
            if not shape or len(shape) < 2 or shape[-1] != shape[-2] or shape[-1] < sk:
                continue
            v = values.get(t)
            if dt in ("bool", "uint8"):
                # a boolean buffer the evaluation did not read (past 2**24 elements, stored as external data, or
                # uint8, which it never reads): read here, at sampled rows and columns past 2**24 elements, and
                # decided by its values in this polarity (masked_fill(tril) blocks the lower triangle: not causal)
                if v is None and inits is not None:
                    v = _read_buffer(inits.get(t), shape, data)
                if v is None:  # its contents unknown (not an initializer, or unreadable): a causal buffer (the usual one)
                    return True
                if dt == "uint8":
                    v = _zero_one(v)  # nonzero true; other values than 0 / 1: undecided
                if _verdict(v, shape[-2], shape[-1], blk):  # known: lower-triangular in this polarity
                    return True
            elif boolean and dt in ("float32", "float64", "float16", "int64", "int32"):
                # a numeric buffer of zeros and ones (nanoGPT's tril(ones(T, T)), read by masked_fill(bias == 0)):
                # a boolean mask stored as numbers, nonzero true; read whole by the evaluation up to 2**24
                # elements, past that (or stored as external data) here (its contents unknown: nothing is assumed)
                if v is None and inits is not None:
                    v = _sampled_buffer(inits.get(t), shape, data)
                if _verdict(_zero_one(v), shape[-2], shape[-1], blk):
                    return True
            elif add and dt in ("float32", "float64", "float16"):
                # a float buffer added to the scores (``scores + mask[:, :, :T, :T]``, mask = triu(-inf / -1e9 /
                # finfo.min, 1)): allowed where not a large negative; read whole by the evaluation up to 2**24
                # elements, past that (or stored as external data) here
                if v is None and inits is not None:
                    v = _sampled_buffer(inits.get(t), shape, data)
                if _verdict(v, shape[-2], shape[-1]):
                    return True
            continue
        n = nodes[pi]
        if n.op_type == "Trilu":
            upper = next((a.i for a in n.attribute if a.name == "upper"), 1)
            kv = values.get(n.input[1]) if len(n.input) > 1 and n.input[1] else None
            k = int(kv.reshape(-1)[0]) if kv is not None and getattr(kv, "size", 0) == 1 else None
            off = sk - sq if sk >= sq else 0
            if add:
                # an additive mask (the Trilu's output added to the scores, its values kept): the zeros off the kept
                # triangle are allowed, the kept one holds the Trilu's input, a large negative fill (triu(-inf, 1))
                # blocking it: causal when it keeps the strict upper triangle of such a fill (or one not known: the
                # usual triu(-inf, 1)); a lower Trilu (tril(-inf): the lower triangle blocked) never is
                fill = _fill_value(n.input[0] if n.input else "", nodes, producer, values)
                if upper and fill in ("blocks", None):
                    return (k is None or k in (1, off + 1)) or None
                return None
            # the kept triangle holds the Trilu's input (ones, true), the rest zeros / false: causal when it keeps
            # the lower triangle of an allowing mask, or the strict upper one of a blocking mask
            if not upper and not blk:
                return (k is None or k in (0, off)) or None
            if upper and blk:
                return (k is None or k in (1, off + 1)) or None
            return None
        if n.op_type in _CMP and len(n.input) == 2 and all(_from_range(i, nodes, producer) for i in n.input):
            return True
        if n.op_type == "Not":
            stack.extend((i, not blk, True, False) for i in n.input[:1])
            continue
        if n.op_type == "Equal" and len(n.input) == 2 and any(_zero(values.get(i)) for i in n.input):
            stack.extend((i, not blk, True, False) for i in n.input if not _zero(values.get(i)))  # x == 0: not x
            continue
        if n.op_type == "Where" and len(n.input) == 3:
            pol = _where_polarity(n, values, blk)
            if pol is not None:
                stack.append((n.input[0], pol, True, False))
                continue
        to = next((a.i for a in n.attribute if a.name == "to"), 0) if n.op_type == "Cast" else 0
        to_bool = to == 9
        # the inputs whose values the output carries (an additive mask's values): both of an Add, the data of a view
        # or of a cast to another float type (0 and -inf / -1e9 stay 0 and a large negative)
        kept = 2 if n.op_type == "Add" else 1 if n.op_type in _ADD_VIEWS or to in (1, 10, 11, 16) else 0
        stack.extend((i, blk, boolean or to_bool, add and j < kept) for j, i in enumerate(n.input))
    return False if full else None


def _fill_value(t, nodes, producer, values) -> str | None:
    """What the values of ``t`` (a Trilu's input in an additive mask) do to a score: "blocks" (all a large
    negative), "passes" (none is), "mixed", or None when unknown: read from its value, or the fill of the
    ConstantOfShape / the scalar an Expand broadcasts that produces it."""
    import numpy as np

    v = values.get(t) if t else None
    if v is None and t:
        pi = producer.get(t)
        n = nodes[pi] if pi is not None else None
        if n is not None and n.op_type == "ConstantOfShape":
            a = next((a.t for a in n.attribute if a.name == "value" and a.type == 4), None)
            if a is None:
                return "passes"  # ConstantOfShape's default fill: 0
            try:
                from onnx import numpy_helper

                v = numpy_helper.to_array(a)
            except Exception:  # noqa: BLE001 - undecodable: unknown
                return None
        elif n is not None and n.op_type == "Expand" and n.input:
            v = values.get(n.input[0])
    if v is None:
        return None
    a = v.a if hasattr(v, "rows") else np.asarray(v)
    if a.size == 0 or a.dtype.kind not in "fiu":
        return None
    low = a <= -1e4
    return "blocks" if low.all() else "passes" if not low.any() else "mixed"


def _read_buffer(t, shape, data=None):
    """Initializer ``t`` of ``shape`` as :func:`is_causal` reads a mask buffer: whole up to 2**24 elements, at the
    rows and columns :func:`mask_positions` picks past that (:func:`_sampled_buffer`), from its data file when stored
    as external data; None when it cannot be read that way; InputError when its data file is missing or short."""
    if t is None or tuple(t.dims) != tuple(shape):
        return None
    n = 1
    for d in shape:
        n *= int(d)
    if t.data_location == 1 or n > 1 << 24:
        return _sampled_buffer(t, shape, data)
    from onnx import numpy_helper

    try:
        return numpy_helper.to_array(t)
    except Exception:  # noqa: BLE001 - undecodable: unknown
        return None


def _zero_one(v):
    """A value (an array or an onnx_fold.Grid) of zeros and ones as booleans (nonzero: true); None otherwise."""
    import numpy as np

    if v is None:
        return None
    a = v.a if hasattr(v, "rows") else np.asarray(v)
    if a.size == 0 or not np.isin(a, (0, 1)).all():
        return None
    b = a != 0
    if hasattr(v, "rows"):
        return type(v)(b, v.rows, v.cols, v.shape)
    return b


def _sampled_buffer(t, shape, data=None):
    """Initializer ``t`` of ``shape`` [..., n, n], index 0 of the leading axes: at the rows and columns
    :func:`mask_positions` picks (an onnx_fold.Grid), read from its raw bytes without converting the rest; or, stored
    as external data in the model's folder (``data``: see :func:`is_causal`), read from its data file: whole up to
    2**24 elements (as the evaluation reads an inline one), else the sampled rows only. None when it is of another
    type, its data is in typed fields, or external without ``data``; InputError when its data file is missing or
    too short."""
    import numpy as np

    from .onnx_fold import _NP, Grid

    if t is None or t.data_type not in _NP or tuple(t.dims) != tuple(shape):
        return None
    dt = np.dtype(_NP[t.data_type]).newbyteorder("<")
    n = 1
    for d in shape:
        n *= int(d)
    lead = (0,) * (len(shape) - 2)
    if t.data_location == 1:
        return None if data is None else _external(t, shape, dt, n, *data)
    raw = t.raw_data
    if len(raw) != n * dt.itemsize:
        return None
    arr = np.frombuffer(raw, dtype=dt).reshape(shape)[lead]
    rows, cols = mask_positions(shape[-2], shape[-1])
    a = arr[np.ix_(rows, cols)].astype(dt.newbyteorder("="))
    return Grid(a.reshape((1,) * len(lead) + a.shape), rows, cols, shape)


def _external(t, shape, dt, n, folder, also, model):
    """External initializer ``t`` of ``shape`` [..., r, c] (``n`` elements), index 0 of its leading axes (the first
    r x c block of its data): whole up to 2**24 elements, else the rows :func:`mask_positions` picks, each read
    from its data file alone (never the whole tensor), as an onnx_fold.Grid. None when its location is refused
    (outside the model's folder: the model was refused before this); InputError when the file is missing, shorter
    than the tensor or unreadable."""
    import numpy as np

    from ..io import not_a_file
    from ..types import InputError
    from .onnx_fold import Grid
    from .onnx_load import external_path

    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location", "")
    path = external_path(folder, loc, also)
    if path is None:
        return None
    where = f"{model}: external data {loc!r} of attention mask buffer {t.name!r} {list(shape)}"
    why = "its values tell whether the attention is causal"
    what = not_a_file(path)  # stat only: a named pipe is never opened (a read would block)
    if what:
        raise InputError(f"{where} is {what}, not a file (at {path}): {why}; put the data file there instead")
    if not path.is_file():
        raise InputError(f"{where} is missing (looked for {path}): {why}; put the data file beside the model")
    nbytes = n * dt.itemsize
    r, c = int(shape[-2]), int(shape[-1])
    lead = (1,) * (len(shape) - 2)
    try:
        offset = int(info.get("offset") or 0)
        length = int(info.get("length") or nbytes)
        size = path.stat().st_size
    except (OSError, ValueError) as e:
        raise InputError(f"{where} cannot be read ({type(e).__name__}): {why}") from None
    if offset < 0 or length < nbytes or size < offset + nbytes:
        raise InputError(f"{where} is too short: the buffer needs {nbytes:,} bytes at offset {offset:,} (declared "
                         f"length {length:,}; the file has {size:,}): {why}")
    try:
        with open(path, "rb") as f:
            if n <= 1 << 24:
                f.seek(offset)
                a = np.frombuffer(f.read(r * c * dt.itemsize), dtype=dt).reshape(r, c)
                return a.astype(dt.newbyteorder("=")).reshape(lead + (r, c))
            rows, cols = mask_positions(r, c)
            out = np.empty((len(rows), len(cols)), dtype=dt.newbyteorder("="))
            for i, row in enumerate(rows):
                f.seek(offset + int(row) * c * dt.itemsize)
                out[i] = np.frombuffer(f.read(c * dt.itemsize), dtype=dt)[cols]
    except (OSError, ValueError) as e:
        raise InputError(f"{where} cannot be read ({type(e).__name__}): {why}") from None
    return Grid(out.reshape(lead + out.shape), rows, cols, shape)


class _WithConstants:
    """``values`` (tensor -> value), and for a tensor it lacks, the value of the scalar Constant node producing it
    (a fill value, Trilu's k, the 0 of ``x == 0``): read even when the mask as a whole could not be evaluated."""

    def __init__(self, values, nodes, producer):
        self.values, self.nodes, self.producer = values, nodes, producer

    def get(self, t):
        v = self.values.get(t)
        if v is not None or not t:
            return v
        pi = self.producer.get(t)
        n = self.nodes[pi] if pi is not None else None
        if n is None or n.op_type != "Constant" or n.domain not in ("", "ai.onnx"):
            return None
        for a in n.attribute:
            if a.name == "value" and a.type == 4 and a.t.data_location != 1 and all(int(d) == 1 for d in a.t.dims):
                from onnx import numpy_helper

                try:
                    return numpy_helper.to_array(a.t)
                except Exception:  # noqa: BLE001 - undecodable: unknown
                    return None
        return None


def _from_range(t, nodes, producer, depth: int = 0) -> bool:
    if depth > 6:
        return False
    pi = producer.get(t)
    if pi is None:
        return False
    n = nodes[pi]
    if n.op_type == "Range":
        return True
    if n.op_type in ("Unsqueeze", "Reshape", "Cast", "Expand", "Add", "Sub", "Slice", "Identity"):
        return any(_from_range(i, nodes, producer, depth + 1) for i in n.input[:1])
    return False


def mask_buffers(names, nodes, producer, consumers, matches, consts=frozenset(), stop=frozenset(),
                 aliases=frozenset()) -> dict[str, set]:
    """The tensors of ``names`` (float initializers used as data, and the Identity aliases of shared ones) used only
    to mask attention scores, each with the uses its values need to be a mask: "add" (its values added to the
    scores: 0 kept, a large negative blocked) and / or "bool" (read through a boolean op: ``x == c``, a cast to bool).
    A tensor qualifies when every use of it reaches a pattern of ``matches`` (node index -> AttentionMatch) as a mask
    only, through the path :func:`is_causal` reads: views, an Add of masks, a cast, ``x == c`` (``c`` in ``consts``),
    Not / And / Or, a Where's condition or selected value, into the Add of the scores or a Where's condition there;
    never a GEMM / conv / norm input, nor a graph output or a subgraph's input (``stop``). ``aliases``: Identity
    outputs that are parameters of their own (not followed). ``producer``: tensor -> node index."""
    chain = {i: m for i, m in matches.items() if i not in (m.qk, m.pv)}
    out = {}
    for name in names:
        needs = _mask_uses(name, nodes, producer, consumers, chain, consts, stop, aliases)
        if needs is not None:
            out[name] = needs
    return out


def _mask_uses(name, nodes, producer, consumers, chain, consts, stop, aliases) -> set | None:
    """The value needs of ``name`` as :func:`mask_buffers` says; None when a use is not a mask's (or none is)."""
    needs: set = set()
    reached = False
    # raw: the tensor holds the buffer's values (views, Adds, float casts); else a boolean / fill derived from them
    stack, seen = [(name, True)], set()
    while stack:
        t, raw = stack.pop()
        if (t, raw) in seen:
            continue
        seen.add((t, raw))
        if t in stop or len(seen) > 500:
            return None
        for ci in consumers.get(t, ()):
            n = nodes[ci]
            if n.domain not in ("", "ai.onnx"):
                return None
            pos = [j for j, x in enumerate(n.input) if x == t]
            op = n.op_type
            m = chain.get(ci)
            if m is not None:  # a node of an attention pattern: only the mask of its Add / its Where's condition
                if t not in m.masks:
                    return None
                if op == "Add" and t in m.additive:
                    if raw:
                        needs.add("add")
                elif not (op == "Where" and pos == [0]):
                    return None  # a scale, a multiplicative mask: not read as a mask here
                reached = True
                continue
            if op in ("Shape", "Size"):
                continue
            if op == "Identity" and n.output and n.output[0] in aliases:
                continue  # a parameter of its own: checked on its own
            nxt = raw
            if op in _ADD_VIEWS:
                if pos != [0]:
                    return None
            elif op == "Cast":
                to = next((a.i for a in n.attribute if a.name == "to"), 0)
                if to == 9:
                    if raw:
                        needs.add("bool")
                    nxt = False
                elif to not in (1, 10, 11, 16):
                    return None
            elif op == "Equal" and len(n.input) == 2 and any(x != t and x in consts for x in n.input):
                if raw:
                    needs.add("bool")
                nxt = False
            elif op in ("Not", "And", "Or"):
                nxt = False
            elif op == "Where" and len(n.input) == 3:
                nxt = raw and 0 not in pos
            elif op != "Add":
                return None
            stack.extend((o, nxt) for o in n.output if o)
    return needs if reached else None


def mask_valued(t, needs, data=None) -> bool:
    """Whether initializer ``t``'s values are a mask's for ``needs`` (see :func:`mask_buffers`): all 0 / 1 or all 0 /
    a large negative (-inf, -1e9, finfo.min); added to the scores ("add"), 0 / a large negative with one at least
    (a zero-initialized bias added to the scores is a parameter). Read as :func:`is_causal` reads a mask buffer
    (whole up to 2**24 elements, at sampled rows and columns past that, from the data file when external; ``data``:
    see there); False when it cannot be read."""
    import numpy as np

    if t is None or len(t.dims) < 2:
        return False
    try:
        v = _read_buffer(t, tuple(t.dims), data)
    except Exception:  # noqa: BLE001 - its data file missing or short (said where the mask is read): unknown
        return False
    if v is None:
        return False
    a = np.asarray(v.a if hasattr(v, "rows") else v)
    if a.size == 0:
        return False
    if a.dtype.kind != "f":
        try:
            a = a.astype(np.float64)  # bfloat16 and the like
        except (TypeError, ValueError):
            return False
    zero, low = a == 0, a <= -1e4
    negative = bool((zero | low).all())
    if "add" in needs and not (negative and low.any()):
        return False
    return negative or bool((zero | (a == 1)).all())


@dataclass
class GeluMatch:
    last: int  # node index carrying the cost (the final Mul)
    members: set
    x: str
    out: str
    approximate: str = "none"  # "tanh": the tanh approximation (F.gelu(approximate="tanh"), HF gelu_new)
    pow: bool = False  # the tanh form with its cube a Pow (torch.pow(x, 3.0), x ** 3)
    # the tanh form as Python code writes it, which eager PyTorch runs as one kernel per op: HF gelu_new / nanoGPT's
    # NewGELU (x^3 a Pow, sqrt(2/pi) folded to a constant) or HF gelu_fast (factored: x * c1 * (1 + c3 * x * x));
    # the exporters' own F.gelu(approximate="tanh") is c1 * (x + c3 * x^3) with x^3 as Muls (TorchScript) or with
    # sqrt(2/pi) computed in the graph (Sqrt(Div(2, pi)): the dynamo exporter's decomposition, Pow or Muls)
    python: bool = False


def find_gelu(nodes, producer: dict, consumers: dict, const=None, outputs=frozenset()) -> dict[int, GeluMatch]:
    """``0.5 * x * (1 + erf(x / sqrt(2)))`` as the TorchScript exporter decomposes ``F.gelu`` (Div|Mul -> Erf ->
    Add(1) -> Mul(x) -> Mul(0.5), the two Muls in either order): one GELU kernel on the GPU and on the PyTorch
    path. With ``const`` (tensor name -> its single float value, or None), also the tanh approximation
    (:func:`find_gelu_tanh`; ``outputs``: the graph's outputs)."""
    out: dict[int, GeluMatch] = {}
    if const is not None:
        out.update(find_gelu_tanh(nodes, producer, consumers, const, outputs))
    for ei, e in enumerate(nodes):
        if e.op_type != "Erf" or not e.input:
            continue
        di = producer.get(e.input[0])
        if di is None or nodes[di].op_type not in ("Div", "Mul"):
            continue
        x = nodes[di].input[0]
        members = {di, ei}
        cur = e.output[0]
        chain = []
        for _ in range(3):
            cons = consumers.get(cur, [])
            if len(cons) != 1:
                break
            ci = cons[0]
            c = nodes[ci]
            if c.op_type not in ("Add", "Mul"):
                break
            chain.append(ci)
            members.add(ci)
            cur = c.output[0]
        ops_ = [nodes[i].op_type for i in chain]
        if len(chain) != 3 or ops_[0] != "Add" or ops_[1:] != ["Mul", "Mul"]:
            continue
        if not any(x in nodes[i].input for i in chain[1:]):
            continue
        m = GeluMatch(chain[-1], members, x, cur)
        for i in members:
            out[i] = m
    return out


# the tanh approximation of GELU: 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_INNER = {(1, 0): _GELU_C, (3, 0): _GELU_C * 0.044715}  # the Tanh's argument, a polynomial in x
_GELU_OUTER = {(1, 0): 0.5, (1, 1): 0.5}  # the output, a polynomial in (x, t = tanh(...)): 0.5 x + 0.5 x t
_GELU_RTOL = 5e-3  # constants stored in bf16 (8 bits of mantissa) are off by up to 2e-3 each
_POLY_OPS = {"Add", "Sub", "Mul", "Div", "Pow", "Neg", "Cast", "Identity"}


def _poly_add(p: dict, q: dict, sign: float = 1.0) -> dict:
    r = dict(p)
    for k, v in q.items():
        r[k] = r.get(k, 0.0) + sign * v
    return {k: v for k, v in r.items() if abs(v) > 1e-12}


def _poly_mul(p: dict, q: dict) -> dict | None:
    r: dict = {}
    for (a, b), u in p.items():
        for (c, d), v in q.items():
            if a + c > 6 or b + d > 6:
                return None
            r[(a + c, b + d)] = r.get((a + c, b + d), 0.0) + u * v
    return {k: v for k, v in r.items() if abs(v) > 1e-12}


def _poly_close(p: dict | None, want: dict) -> bool:
    return p is not None and set(p) == set(want) and all(abs(p[k] - v) <= _GELU_RTOL * abs(v) for k, v in want.items())


def _poly(t, leaves: dict, nodes, producer, consumers, const, members: set, root: bool = False, depth: int = 0,
          outputs=frozenset()):
    """The value of tensor ``t`` as a polynomial (dict (i, j) -> coefficient of x^i * y^j) in the leaf tensors
    ``leaves`` (name -> (i, j) of its variable), built from constants (``const``) through Add / Sub / Mul / Div by a
    constant / Pow by a small integer constant / Neg / Cast / Identity nodes whose output only this expression reads
    (``root``: ``t``'s own readers are not checked; a graph output of ``outputs`` is read outside the graph); those
    nodes are added to ``members``. None when ``t`` is not such an expression."""
    if t in leaves:
        return {leaves[t]: 1.0}
    v = const(t)
    if v is not None:
        return {(0, 0): float(v)} if v else {}
    pi = producer.get(t)
    if pi is None or depth > 12 or len(members) > 24 or (not root and (len(consumers.get(t, ())) != 1
                                                                        or t in outputs)):
        return None
    n = nodes[pi]
    if n.op_type not in _POLY_OPS or n.domain not in ("", "ai.onnx") or not n.input or len(n.output) != 1:
        return None
    ins = [i for i in n.input if i]
    if n.op_type in ("Neg", "Cast", "Identity"):
        p = _poly(ins[0], leaves, nodes, producer, consumers, const, members, depth=depth + 1, outputs=outputs)
        r = None if p is None else {k: -v for k, v in p.items()} if n.op_type == "Neg" else p
    elif len(ins) != 2:
        return None
    elif n.op_type == "Pow":
        e = const(ins[1])
        if e is None or not math.isfinite(e) or float(e) != int(e) or not 1 <= int(e) <= 4:
            return None
        p = _poly(ins[0], leaves, nodes, producer, consumers, const, members, depth=depth + 1, outputs=outputs)
        r = p
        for _ in range(int(e) - 1):
            r = None if r is None else _poly_mul(r, p)
    else:
        a = _poly(ins[0], leaves, nodes, producer, consumers, const, members, depth=depth + 1, outputs=outputs)
        b = _poly(ins[1], leaves, nodes, producer, consumers, const, members, depth=depth + 1, outputs=outputs)
        if a is None or b is None:
            return None
        if n.op_type == "Add":
            r = _poly_add(a, b)
        elif n.op_type == "Sub":
            r = _poly_add(a, b, -1.0)
        elif n.op_type == "Mul":
            r = _poly_mul(a, b)
        else:  # Div: by a nonzero constant only
            d = b.get((0, 0)) if set(b) == {(0, 0)} else None
            r = {k: v / d for k, v in a.items()} if d else None
    if r is not None:
        members.add(pi)
    return r


def _free_leaves(t, nodes, producer, consumers, const, out: set, root: bool = False, depth: int = 0,
                 outputs=frozenset()) -> bool:
    """The non-constant tensors an expression of :func:`_poly`'s ops computing ``t`` reads (a tensor read elsewhere
    too, or not produced by such an op, ends the expression) into ``out``; False when it is too deep."""
    if const(t) is not None:
        return True
    pi = producer.get(t)
    if depth > 12 or len(out) > 2:
        return False
    if pi is None or (not root and (len(consumers.get(t, ())) != 1 or t in outputs)) \
            or nodes[pi].op_type not in _POLY_OPS \
            or nodes[pi].domain not in ("", "ai.onnx"):
        out.add(t)
        return True
    n = nodes[pi]
    ins = [i for i in n.input if i][:1] if n.op_type == "Pow" else [i for i in n.input if i]
    return all(_free_leaves(i, nodes, producer, consumers, const, out, depth=depth + 1, outputs=outputs) for i in ins)


_CONST_OPS = {"Sqrt", "Div", "Mul", "Add", "Sub", "Cast", "CastLike", "Identity"}


def _const_expr(const, nodes, producer):
    """``const`` extended to scalar expressions of constants (Sqrt / Div / Mul / Add / Sub / Cast / CastLike /
    Identity, as the dynamo exporter computes sqrt(2 / pi) in the graph), and the set of tensors whose value is such
    an expression through a Sqrt of 2 / pi (filled as they are read); ``ev.nodes``: tensor -> the indices of the
    nodes computing it from constants."""
    cache: dict = {}
    sqrt_2_pi: set = set()
    via: dict = {}

    def ev(t, depth=0):
        if t in cache:
            return cache[t]
        v = const(t)
        if v is None and depth < 8:
            pi = producer.get(t)
            n = nodes[pi] if pi is not None else None
            if n is not None and n.op_type in _CONST_OPS and n.domain in ("", "ai.onnx") and len(n.output) == 1:
                ins = [i for i in n.input if i]
                if n.op_type in ("Sqrt", "Cast", "CastLike", "Identity") and ins:
                    a = ev(ins[0], depth + 1)
                    if n.op_type != "Sqrt":
                        v = a
                        if a is not None and ins[0] in sqrt_2_pi:
                            sqrt_2_pi.add(t)
                    elif a is not None and a >= 0:
                        v = math.sqrt(a)
                        if abs(a - 2.0 / math.pi) <= _GELU_RTOL * 2.0 / math.pi:
                            sqrt_2_pi.add(t)
                elif len(ins) == 2:
                    a, b = ev(ins[0], depth + 1), ev(ins[1], depth + 1)
                    if a is not None and b is not None:
                        if n.op_type == "Div":
                            v = a / b if b else None
                        else:
                            v = a * b if n.op_type == "Mul" else a + b if n.op_type == "Add" else a - b
                        if v is not None and any(i in sqrt_2_pi for i in ins):
                            sqrt_2_pi.add(t)
            if v is not None and not math.isfinite(v):
                v = None
            if v is not None:
                via[t] = {pi}.union(*(via.get(i, ()) for i in n.input[:1 if n.op_type == "CastLike" else 2]))
        cache[t] = v
        return v

    ev.nodes = via
    return ev, sqrt_2_pi


def find_gelu_tanh(nodes, producer: dict, consumers: dict, const, outputs=frozenset()) -> dict[int, GeluMatch]:
    """``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`` as the TorchScript exporter decomposes
    ``F.gelu(approximate="tanh")`` and Hugging Face's ``gelu_new`` / nanoGPT's ``NewGELU`` (about 9 Mul / Add / Pow /
    Tanh nodes). Matched by value, whatever the order of the
    factors and terms: the Tanh's argument must be exactly ``c1 * x + c3 * x^3`` (x^3 as ``Mul(Mul(x, x), x)``,
    ``Mul(x, Mul(x, x))``, ``Pow(x, 3)``, or factored as ``x * (1 + 0.044715 x^2)``; c1 a constant or computed in
    the graph from constants, ``Sqrt(Div(2, pi))``) and the output, reached from the Tanh through nodes read once,
    ``0.5 * x + 0.5 * x * tanh(..)``, each constant within 0.5 % (a bf16 export's). ``const``: tensor name -> its
    single float value (a Constant node or an initializer), or None; ``outputs``: the graph's outputs (read outside
    it: a partial product that is one is materialized, no match). A match written as Python writes it is flagged
    (:attr:`GeluMatch.python`: factored, HF gelu_fast; or a Pow cube with sqrt(2/pi) folded, HF gelu_new), not an
    exporter's F.gelu (c1 * (x + c3 * x^3) with x^3 as Muls, or with sqrt(2/pi) computed in the graph: a Sqrt of
    2/pi); the frontend decides."""
    out: dict[int, GeluMatch] = {}
    const, sqrt_2_pi = _const_expr(const, nodes, producer)
    for ti, tn in enumerate(nodes):
        if tn.op_type != "Tanh" or tn.domain not in ("", "ai.onnx") or len(tn.input) != 1 or len(tn.output) != 1:
            continue
        t = tn.output[0]
        free: set = set()
        if not _free_leaves(tn.input[0], nodes, producer, consumers, const, free, root=True, outputs=outputs) \
                or len(free) != 1 or t in outputs or tn.input[0] in outputs:
            continue
        x = next(iter(free))
        members = {ti}
        inner = _poly(tn.input[0], {x: (1, 0)}, nodes, producer, consumers, const, members, root=True,
                      outputs=outputs)
        if not _poly_close(inner, _GELU_INNER) or len(consumers.get(tn.input[0], ())) != 1:
            continue
        inner_members = members - {ti}
        cur, last = t, None
        for _ in range(6):
            cons = consumers.get(cur, [])
            if len(cons) != 1 or cons[0] in members or (cur != t and cur in outputs):
                break
            ci = cons[0]
            c = nodes[ci]
            if c.op_type not in _POLY_OPS or c.domain not in ("", "ai.onnx") or len(c.output) != 1:
                break
            found = set(members)
            p = _poly(c.output[0], {x: (1, 0), t: (0, 1)}, nodes, producer, consumers, const, found, root=True,
                      outputs=outputs)
            if p is None:
                break
            members = found
            cur = c.output[0]
            if _poly_close(p, _GELU_OUTER):
                last = ci
                break
        if last is None or any(i in out for i in members):
            continue
        # the form: c1 * (x + c3 * x^3) has a sum of x and x^3 (an Add / Sub), the factored one of 1 and x^2
        pow_ = any(nodes[i].op_type == "Pow" for i in inner_members)
        factored = not any(nodes[i].op_type in ("Add", "Sub") and set(_poly(
            nodes[i].output[0], {x: (1, 0)}, nodes, producer, consumers, const, set(), root=True,
            outputs=outputs) or ()) == {(1, 0), (3, 0)} for i in inner_members)
        computed = any(j in sqrt_2_pi for i in inner_members for j in nodes[i].input)
        # the scalar nodes computing a constant (Sqrt(CastLike(Div(2, pi), x))) read by this expression only: part
        # of the one kernel (a CastLike reads x: not a use of x of its own)
        cands = {k for i in list(members) for j in nodes[i].input for k in const.nodes.get(j, ())}
        grew = True
        while grew:
            grew = False
            for k in sorted(cands - members):
                if all(o not in outputs and consumers.get(o) and set(consumers[o]) <= members
                       for o in nodes[k].output):
                    members.add(k)
                    grew = True
        m = GeluMatch(last, members, x, cur, "tanh", pow_, factored or (pow_ and not computed))
        for i in members:
            out[i] = m
    return out


@dataclass
class LayerNormMatch:
    last: int  # node index carrying the cost
    members: set
    x: str
    out: str
    affine: bool
    weights: tuple = ()  # gamma / beta tensor names (trainable)


def find_layernorm(nodes, producer: dict, consumers: dict) -> dict[int, LayerNormMatch]:
    """LayerNorm as exporters before opset 17 decompose it: ``d = x - ReduceMean(x); y = d / Sqrt(ReduceMean(d^2)
    + eps) [* gamma + beta]``. One fused layer_norm kernel on the GPU and on the PyTorch path."""
    out: dict[int, LayerNormMatch] = {}

    def only(t, op):
        cons = consumers.get(t, [])
        hits = [c for c in cons if nodes[c].op_type in op]
        return hits[0] if len(hits) == 1 else None

    for ri, r in enumerate(nodes):
        if r.op_type != "ReduceMean" or not r.input or ri in out:
            continue
        x = r.input[0]
        si = only(r.output[0], ("Sub",))
        if si is None or nodes[si].input[0] != x:
            continue
        d = nodes[si].output[0]
        pi = only(d, ("Pow", "Mul"))
        di = only(d, ("Div",))
        if pi is None or di is None:
            continue
        r2 = only(nodes[pi].output[0], ("ReduceMean",))
        if r2 is None:
            continue
        ai = only(nodes[r2].output[0], ("Add",))
        if ai is None:
            continue
        qi = only(nodes[ai].output[0], ("Sqrt",))
        if qi is None or nodes[di].input[1:2] != [nodes[qi].output[0]]:
            continue
        members = {ri, si, pi, r2, ai, qi, di}
        last, weights = di, []
        for op in ("Mul", "Add"):  # affine: * gamma, + beta
            nxt = only(nodes[last].output[0], (op,))
            if nxt is None or len(consumers.get(nodes[last].output[0], [])) != 1:
                break
            other = [i for i in nodes[nxt].input if i != nodes[last].output[0]]
            if not other or other[0] in producer and nodes[producer[other[0]]].op_type not in ("Identity",
                                                                                             "Constant"):
                break
            weights.append(other[0])
            members.add(nxt)
            last = nxt
        m = LayerNormMatch(last, members, x, nodes[last].output[0], bool(weights), tuple(weights))
        for i in members:
            out[i] = m
    return out


@dataclass
class SiluMatch:
    last: int  # node index carrying the cost (the Mul)
    members: set
    x: str
    out: str
    silu: bool = True  # tells it from a GELU match (both read one input in its own dtype)


def find_silu(nodes, producer: dict, consumers: dict) -> dict[int, SiluMatch]:
    """``x * Sigmoid(x)`` as the TorchScript exporter writes ``nn.SiLU`` / ``F.silu`` (opset < 22 has no SiLU op):
    one silu kernel on the GPU and on the PyTorch path (reads x, writes y; its backward one silu_backward)."""
    out: dict[int, SiluMatch] = {}
    for si, s in enumerate(nodes):
        if s.op_type != "Sigmoid" or len(s.input) != 1 or len(s.output) != 1 or s.domain not in ("", "ai.onnx"):
            continue
        x, sig = s.input[0], s.output[0]
        cons = consumers.get(sig, [])
        if len(cons) != 1:  # the sigmoid is read elsewhere too: it is materialized
            continue
        mi = cons[0]
        m = nodes[mi]
        if m.op_type != "Mul" or len(m.input) != 2 or sorted(m.input) != sorted([x, sig]) or x == sig:
            continue
        match = SiluMatch(mi, {si, mi}, x, m.output[0])
        out[si] = out[mi] = match
    return out


@dataclass
class GroupNormMatch:
    last: int  # node index carrying the cost (the beta Add, else the gamma Mul, else the second Reshape)
    members: set
    x: str
    out: str
    affine: bool
    weights: tuple = ()  # gamma / beta tensor names (trainable)
    grouped: str = ""  # the [N, G, -1] tensor InstanceNormalization reads (its dim 1: the groups)


def find_groupnorm(nodes, producer: dict, consumers: dict) -> dict[int, GroupNormMatch]:
    """``nn.GroupNorm`` as the TorchScript exporter decomposes it: ``Reshape(x, [N, G, -1]) ->
    InstanceNormalization(scale=1, bias=0 constants) -> Reshape(to x's shape) [-> Mul(gamma) -> Add(beta)]``. One
    native_group_norm kernel on the GPU and on the PyTorch path. The frontend checks the shapes (the second Reshape
    gives x's shape back)."""
    out: dict[int, GroupNormMatch] = {}

    def single(t):
        cons = consumers.get(t, [])
        return cons[0] if len(cons) == 1 else None

    def constant(t, depth=0):
        """An initializer or a Constant, possibly re-laid-out (a training-mode export's Unsqueeze(gamma))."""
        if t not in producer:
            return True
        p = nodes[producer[t]]
        if p.op_type == "Constant":
            return True
        return depth < 4 and p.op_type in ("Identity", "Unsqueeze", "Reshape", "Squeeze") and bool(p.input) and all(
            constant(i, depth + 1) for i in p.input if i)

    for ii, inn in enumerate(nodes):
        if inn.op_type != "InstanceNormalization" or len(inn.input) != 3 or ii in out:
            continue
        r1 = producer.get(inn.input[0])
        if r1 is None or nodes[r1].op_type != "Reshape" or single(inn.input[0]) != ii:
            continue
        if not (constant(inn.input[1]) and constant(inn.input[2])):  # its own affine: a real InstanceNorm
            continue
        r2 = single(inn.output[0])
        if r2 is None or nodes[r2].op_type != "Reshape":
            continue
        x = nodes[r1].input[0]
        members = {r1, ii, r2}
        last, weights = r2, []
        for op in ("Mul", "Add"):  # affine: * gamma, + beta
            t = nodes[last].output[0]
            nxt = single(t)
            if nxt is None or nodes[nxt].op_type != op or len(nodes[nxt].input) != 2:
                break
            other = [i for i in nodes[nxt].input if i != t]
            if len(other) != 1 or not constant(other[0]):
                break
            weights.append(other[0])
            members.add(nxt)
            last = nxt
        m = GroupNormMatch(last, members, x, nodes[last].output[0], bool(weights), tuple(weights), inn.input[0])
        for i in members:
            out[i] = m
    return out
