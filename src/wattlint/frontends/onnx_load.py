"""ONNX frontend, part 1: load a model without its weights, validate it, bind its symbolic input dims.

Malformed input of any kind (empty file, random bytes, truncated protobuf, invalid UTF-8, cycles, a tensor written
twice, an initializer without a data type, negative or absurd dims, external data outside the model's folder)
becomes one :class:`InputError` line; a Conv whose channels contradict its weight and group is refused where it is
priced (onnx_ops.Malformed). onnx.checker is not called: it also refuses legal exports (graph outputs without a
shape), so the checks that change a price are made here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .. import costs as C
from ..options import POSITIONAL_INPUT
from ..types import InputError, TensorSpec

MAX_ELEMS = 1 << 44  # per tensor; anything larger is an absurd dim, not a model
MAX_DIM = 1 << 40

# TensorProto.DataType -> dtype name (kept local so the table needs no onnx import)
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
                9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64",
                15: "complex128", 16: "bfloat16", 17: "float8_e4m3fn", 18: "float8_e4m3fnuz", 19: "float8_e5m2",
                20: "float8_e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4_e2m1"}
_FLOAT = {"float32", "float16", "float64", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
          "float8_e5m2fnuz"}
_SEQ_NAME = re.compile(r"seq|len|token|time|step|sentence|position|past|total|context|^s$|^t$|^l$", re.I)
_BATCH_NAME = re.compile(r"batch|^n$|^b$|^bs$|^N$", re.I)


class _BatchBaked(InputError):
    def __init__(self, static: int, target: int | None = None, axis: int = 0):
        super().__init__(f"batch {static} is baked into the graph's shapes")
        self.static = static
        self.target = target
        self.axis = axis  # the inputs' batch dim (1 for sequence-first RNN inputs)


# ops through which a graph input keeps its leading [seq, batch] dims on the way to a recurrent node (input index
# that carries them; None: any input): embedding lookups (Gather's indices), element-wise ops, casts, projections
_LEADING_DIMS_KEPT: dict[str, int | None] = {
    "Gather": 1, "Cast": 0, "Identity": 0, "Dropout": 0, "Relu": 0, "Tanh": 0, "Sigmoid": 0, "Gelu": 0, "Elu": 0,
    "LeakyRelu": 0, "Softplus": 0, "Neg": 0, "Sqrt": 0, "Exp": 0, "Erf": 0, "Add": None, "Sub": None, "Mul": None,
    "Div": None, "Pow": 0, "MatMul": 0, "LayerNormalization": 0}
_RNN_OPS = ("LSTM", "GRU", "RNN")
_MAX_HOPS = 32


def seq_first_inputs(g) -> set[str]:
    """Graph inputs whose dim 0 is the sequence and dim 1 the batch: those that reach the X input of an LSTM / GRU /
    RNN node with ``layout`` 0 (ONNX's default, [seq_length, batch_size, input_size]; PyTorch exports
    ``batch_first=False`` modules so) through ops that keep their leading dims (an embedding lookup, element-wise
    ops, a projection). A Transpose, Reshape or any other op on the way stops the search: dim 0 stays the batch."""
    consumers: dict[str, list] = {}
    for n in g.node:
        for idx, name in enumerate(n.input):
            if name:
                consumers.setdefault(name, []).append((n, idx))
    found: set[str] = set()
    for vi in g.input:
        frontier, seen, hops = [vi.name], {vi.name}, 0
        while frontier and hops < _MAX_HOPS and vi.name not in found:
            hops += 1
            nxt = []
            for name in frontier:
                for n, idx in consumers.get(name, ()):
                    if n.op_type in _RNN_OPS and idx == 0:
                        layout = next((a.i for a in n.attribute if a.name == "layout"), 0)
                        if layout == 0:
                            found.add(vi.name)
                        continue
                    carry = _LEADING_DIMS_KEPT.get(n.op_type, -1)
                    if carry == -1 or (carry is not None and carry != idx):
                        continue
                    for out in n.output[:1]:
                        if out and out not in seen:
                            seen.add(out)
                            nxt.append(out)
            frontier = nxt
    return found


def _load(p: Path):
    try:
        if p.is_file() and p.stat().st_size >= 1 << 31:
            raise InputError(f"{p}: {p.stat().st_size / 2**30:.1f} GiB in one file: protobuf cannot parse more than "
                             f"2 GiB; save the weights as external data (onnx.save(..., save_as_external_data=True))")
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{p}: is a directory, not an ONNX file") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror or e})") from None
    if not data:
        raise InputError(f"{p}: empty file, not an ONNX model")
    import onnx

    try:
        model = onnx.load_model_from_string(data)  # never reads external data
    except Exception as e:  # DecodeError and friends from protobuf
        raise InputError(f"{p}: not an ONNX model (protobuf parse failed: {_one_line(e) or type(e).__name__})") \
            from None
    if not model.HasField("graph"):
        raise InputError(f"{p}: not an ONNX model (no graph; truncated file or another format?)")
    if len(model.graph.node) == 0:
        if model.ir_version > 0 and (model.graph.input or model.graph.output or model.opset_import):
            raise InputError(f"{p}: an ONNX model with an empty graph (no nodes): nothing to train or price")
        raise InputError(f"{p}: not an ONNX model (no graph nodes; truncated file or another format?)")
    if model.ir_version <= 0 or model.ir_version > 100:
        raise InputError(f"{p}: not an ONNX model (ir_version {model.ir_version})")
    if len(model.functions):  # model-local functions (an exporter's custom modules): priced as the nodes they are
        from onnx.inliner import inline_local_functions

        try:
            model = inline_local_functions(model)
        except Exception as e:  # noqa: BLE001 - a malformed function body is the user's graph
            raise InputError(f"{p}: its local functions cannot be inlined ({_one_line(e) or type(e).__name__})") \
                from None
    return model

# domains whose ops shape inference knows (onnx, onnxruntime's contrib ops): value_info of their outputs is dropped
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


def external_path(folder: Path, loc: str, also: Path | None = None) -> Path | None:
    """The file external-data ``loc`` of a model in ``folder`` names, or None when it is not inside that folder: an
    absolute path or drive, a step out through ``..``, or a file that resolves (through links) outside both
    ``folder`` and ``also``. ``folder`` is where the data is looked up (:func:`data_folder`); ``also`` the folder of
    the file the model's path resolves to: a Hugging Face hub snapshot links model.onnx and model.onnx_data into
    blobs/, so the data link resolves where the model link does. A link to anywhere else is never followed."""
    if not loc or os.path.isabs(loc) or loc.startswith(("\\", "/")) or ":" in loc or "\x00" in loc:
        return None
    norm = os.path.normpath(loc)
    if norm in (".", "..") or norm.startswith(".." + os.sep):
        return None
    target = folder / norm
    try:
        real = target.resolve()
        roots = {folder.resolve(), *((also.resolve(),) if also is not None else ())}
    except (OSError, ValueError, RuntimeError):
        return None
    return target if any(root in real.parents for root in roots) else None


def external_refusal(folder: Path, loc: str, also: Path | None = None) -> str:
    """Why :func:`external_path` refuses external-data ``loc`` (it returned None), and what to do: the end of a
    one-line error message. A link is named with where it resolves, so that a data file stored in another folder
    (a DVC or git-annex cache linking model.onnx and its data into different folders) is told from a bad path."""
    fix = ("copy the data file into the model's folder and save the model with its location relative to it "
           "(onnx.load, then onnx.save(model, path, save_as_external_data=True))")
    if not loc or os.path.isabs(loc) or loc.startswith(("\\", "/")) or ":" in loc or "\x00" in loc:
        return f"an absolute path, a drive or a stream (':'); refusing to read it: {fix}"
    norm = os.path.normpath(loc)
    if norm in (".", "..") or norm.startswith(".." + os.sep):
        return f"a step out of the folder through '..'; refusing to read it: {fix}"
    target = folder / norm
    try:
        real = target.resolve()
        roots = list(dict.fromkeys([folder.resolve(), *((also.resolve(),) if also is not None else ())]))
    except (OSError, ValueError, RuntimeError) as e:
        return f"its path cannot be resolved ({type(e).__name__}); refusing to read it"
    where = f"the model's folder {roots[0]}" + (f" (and {roots[1]}, where the model file resolves)"
                                                 if len(roots) > 1 else "")
    return (f"it resolves through a link to {real}, outside {where}; a link is followed only inside those, so that "
            f"a model cannot point wattlint at any file on the machine: put a copy of the data file at {loc!r} in "
            f"place of the link (DVC: dvc unprotect), or re-save the model with its data beside it (onnx.load, then "
            f"onnx.save(model, path, save_as_external_data=True))")


def data_folder(model, path: Path) -> Path:
    """Where a model's external data is looked up: beside the path as given (a hub snapshot's links), unless the
    path is a link and its data is not there but beside the file it points to (a model linked from another
    folder)."""
    here = path.absolute().parent
    loc = next((e.value for t in model.graph.initializer if t.data_location == 1
                for e in t.external_data if e.key == "location"), "")
    if not isinstance(loc, str) or not path.is_symlink():
        return here
    try:
        beside = (here / loc).exists()
    except (OSError, ValueError):  # a damaged location: refused where the data is read
        return here
    if not loc or beside:
        return here
    return path.resolve().parent


def _one_line(e: BaseException) -> str:
    s = " ".join(str(e).split())
    return s[:300]

def _dims_of(vi) -> tuple[int | None, list]:
    """(elem_type, dims) of a ValueInfoProto; dims entries are int, a dim_param str, or None (unknown)."""
    t = vi.type
    if t.WhichOneof("value") != "tensor_type":
        return None, None
    tt = t.tensor_type
    if not tt.HasField("shape"):
        return tt.elem_type, None
    dims = []
    for d in tt.shape.dim:
        w = d.WhichOneof("value")
        if w == "dim_value":
            dims.append(d.dim_value)
        elif w == "dim_param":
            dims.append(d.dim_param or None)
        else:
            dims.append(None)
    return tt.elem_type, dims

def _concrete(elem_type, dims) -> tuple[str, tuple[int, ...] | None]:
    dt = _ONNX_DTYPES.get(elem_type or 0, "float32")
    if dims is None or any(not isinstance(d, int) or d < 0 for d in dims):
        return dt, None
    return dt, tuple(dims)

def _strings_ok(model) -> bool:
    """protobuf hands back ``bytes`` for string fields that are not valid UTF-8 (a corrupt file): reject them."""
    if not all(isinstance(o.domain, str) for o in model.opset_import):
        return False
    stack = [model.graph]
    while stack:
        g = stack.pop()
        if not isinstance(g.name, str):
            return False
        for vi in (*g.input, *g.output, *g.value_info):
            if not isinstance(vi.name, str):
                return False
            tt = vi.type.tensor_type
            for d in tt.shape.dim:
                if not isinstance(d.dim_param, str):
                    return False
        for t in g.initializer:
            if not isinstance(t.name, str):
                return False
            for e in t.external_data:
                if not (isinstance(e.key, str) and isinstance(e.value, str)):
                    return False
        for st in g.sparse_initializer:
            if not isinstance(st.values.name, str):
                return False
        for n in g.node:
            if not (isinstance(n.op_type, str) and isinstance(n.name, str) and isinstance(n.domain, str)):
                return False
            for i in n.input:
                if not isinstance(i, str):
                    return False
            for o in n.output:
                if not isinstance(o, str):
                    return False
            for a in n.attribute:
                if not isinstance(a.name, str):
                    return False
                if a.type == 5:
                    stack.append(a.g)
                elif a.type == 10:
                    stack.extend(a.graphs)
            for p in n.metadata_props:
                if not (isinstance(p.key, str) and isinstance(p.value, str)):
                    return False
    return True

def _all_initializers(g):
    for t in g.initializer:
        yield t
    for st in g.sparse_initializer:
        yield st.values

def _set_dims(vi, dims) -> None:
    shape = vi.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        shape.dim.add().dim_value = int(d)

def _fmt_dims(dims) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"

def _first_error(e: BaseException) -> str:
    s = " ".join(str(e).split())
    s = re.sub(r"^\[\w+\]\s*", "", s)
    return s[:240] or type(e).__name__

def _opset(model) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 0


class _Validate:
    """Mixin of :class:`wattlint.frontends.onnx._Analysis`: structure checks and input binding."""

    def _validate_initializers(self, g) -> None:
        from onnx import TensorProto  # loaded already: the model was parsed with it
        valid = set(TensorProto.DataType.values()) - {TensorProto.UNDEFINED}
        for t in _all_initializers(g):
            if t.data_type not in valid:
                raise InputError(f"{self.path}: malformed model: initializer {t.name!r} has no valid data type "
                                 f"(data_type {t.data_type})")
            total = 1
            for d in t.dims:
                if d < 0:
                    raise InputError(f"{self.path}: initializer {t.name!r} has a negative dim ({list(t.dims)})")
                if d > MAX_DIM:
                    raise InputError(f"{self.path}: initializer {t.name!r} has an absurd dim {d}")
                total *= d
            if total > MAX_ELEMS:
                raise InputError(f"{self.path}: initializer {t.name!r} has an absurd size ({total:.3g} elements)")
            if t.data_location == 1:  # EXTERNAL
                self.external += 1
                loc = next((e.value for e in t.external_data if e.key == "location"), "")
                if not self._inside_folder(loc):
                    raise self._outside(f"initializer {t.name!r}", loc)

    def _inside_folder(self, loc: str) -> bool:
        """Whether external-data ``loc`` is inside the model's folder (:func:`external_path`). Each distinct
        location is resolved once: initializers sharing one weights file cost one resolve."""
        seen = self.__dict__.setdefault("_inside_seen", {})
        hit = seen.get(loc)
        if hit is None:
            hit = seen[loc] = external_path(self.folder, loc, self.path.resolve().parent) is not None
        return hit

    def _outside(self, what: str, loc: str) -> InputError:
        """The error for external data ``loc`` of ``what`` that :meth:`_inside_folder` refused: why, and what to
        do (:func:`external_refusal`)."""
        why = external_refusal(self.folder, loc, self.path.resolve().parent)
        return InputError(f"{self.path}: {what} points its external data outside the model's folder ({loc!r}): {why}")

    def _declare_domains(self) -> None:
        """onnx shape inference refuses nodes whose domain has no opset import; declare them (custom ops stay
        unsupported, but the rest of the graph is still inferred)."""
        declared = {o.domain for o in self.model.opset_import}
        used = set()
        stack = [self.model.graph]
        while stack:
            gr = stack.pop()
            for n in gr.node:
                used.add(n.domain)
                for a in n.attribute:
                    if a.type == 5:
                        stack.append(a.g)
                    elif a.type == 10:
                        stack.extend(a.graphs)
        for d in sorted(used - declared - {"ai.onnx"}):
            op = self.model.opset_import.add()
            op.domain = d
            op.version = 1

    def _check_graph(self, g, outer: set, what: str) -> None:
        """Every node input is defined before use (ONNX graphs are topologically sorted); detects cycles."""
        known = set(outer)
        known.update(i.name for i in g.input)
        known.update(t.name for t in g.initializer)
        known.update(t.values.name for t in g.sparse_initializer)
        known.add("")
        nodes = list(g.node)
        local = {i.name for i in g.input} | {t.name for t in g.initializer}
        writer: dict[str, str] = {}
        for n in nodes:
            for o in n.output:
                if not o:
                    continue
                if o in writer or o in local:
                    first = writer.get(o) or "a graph input or initializer"
                    raise InputError(f"{self.path}: malformed {what}: tensor {o!r} is written twice ({first} and "
                                     f"node {n.name or n.op_type!r}); ONNX graphs assign each name once")
                writer[o] = f"node {n.name or n.op_type!r}"
        pending = []
        for n in nodes:
            if all(i in known for i in n.input):
                known.update(n.output)
                self._check_subgraphs(n, known)
            else:
                pending.append(n)
        if pending:  # not sorted: try a topological sort (Kahn) before calling it a cycle
            progress = True
            while pending and progress:
                progress = False
                rest = []
                for n in pending:
                    if all(i in known for i in n.input):
                        known.update(n.output)
                        progress = True
                    else:
                        rest.append(n)
                pending = rest
            if pending:
                n = pending[0]
                missing = next(i for i in n.input if i not in known)
                produced = {o for m in pending for o in m.output}
                why = "a cycle" if missing in produced else "an undefined tensor"
                raise InputError(f"{self.path}: malformed {what}: node {n.name or n.op_type!r} ({n.op_type}) uses "
                                 f"{missing!r}, {why}")
            self._sort_nodes(g)

    def _check_subgraphs(self, n, known) -> None:
        for a in n.attribute:
            if a.type == 5:
                self._check_graph(a.g, known, f"subgraph {a.name!r} of {n.name or n.op_type!r}")
            elif a.type == 10:
                for sg in a.graphs:
                    self._check_graph(sg, known, f"subgraph {a.name!r} of {n.name or n.op_type!r}")

    @staticmethod
    def _sort_nodes(g) -> None:
        known = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
        order, pending = [], list(g.node)
        while pending:
            rest = []
            for n in pending:
                if all(i in known for i in n.input):
                    order.append(n)
                    known.update(n.output)
                else:
                    rest.append(n)
            if len(rest) == len(pending):  # inputs from an outer scope: keep their relative order
                order.extend(rest)
                break
            pending = rest
        copies = [type(n)() for n in order]
        for c, n in zip(copies, order):
            c.CopyFrom(n)
        del g.node[:]
        g.node.extend(copies)

    def _bind_inputs(self, g) -> list[TensorSpec]:
        init = {t.name for t in g.initializer}
        graph_inputs = [i for i in g.input if i.name not in init]
        self.user_inputs = _bind_positional(self.user_inputs, graph_inputs, self.path.name)
        unknown = set(self.user_inputs) - {i.name for i in graph_inputs}
        if unknown:
            names = ", ".join(i.name for i in graph_inputs) or "none"
            raise InputError(f"--input {sorted(unknown)[0]!r} is not an input of {self.path.name} (inputs: {names})")
        params: dict[str, int] = {}
        specs = []
        seq_first = seq_first_inputs(g)
        self.batch_axes: dict[str, int] = {}
        # the batch of the first --input spec (graph order): --batch-size rebinds the specs batched like it, as the
        # torch frontend does (a [seq, seq] mask or a weight vector of another size is kept, stated)
        given_batch = None
        for vi in graph_inputs:
            spec = self.user_inputs.get(vi.name)
            if spec is not None and spec.shape:
                _, d0 = _dims_of(vi)
                ax = 1 if vi.name in seq_first and d0 is not None and len(d0) >= 2 else 0
                given_batch = spec.shape[ax] if len(spec.shape) > ax else None
                break
        self.dims_changed = False  # a declared dim (static, or zero-size) given another size: value_info is stale
        # the same rule for the graph's own static dims: --batch-size resizes the inputs whose batch dim holds the
        # first input's static batch (a static [seq, seq] mask or weight beside ids [batch, seq] is kept, stated)
        self.first_batch_dim, self.first_other_dims = None, set()
        for vi in graph_inputs:
            _, d0 = _dims_of(vi)
            if d0 is not None and len(d0) >= 2:
                b = 1 if vi.name in seq_first else 0
                self.first_batch_dim = d0[b]
                self.first_other_dims = {x for i, x in enumerate(d0) if i != b and isinstance(x, int) and x > 0}
                self.first_rest = tuple(x for i, x in enumerate(d0) if i != b)
                break
        for vi in graph_inputs:
            elem, dims = _dims_of(vi)
            bax = 1 if vi.name in seq_first and dims is not None and len(dims) >= 2 else 0
            sax = 0 if bax == 1 else 1
            self.batch_axes[vi.name] = bax
            if elem is None:
                raise InputError(f"{self.path}: input {vi.name!r} is not a tensor (sequence/map inputs are not "
                                 f"supported)")
            dt = _ONNX_DTYPES.get(elem, "float32")
            user = self.user_inputs.get(vi.name)
            if user is not None and self.batch_size and len(user.shape) > bax \
                    and user.shape[bax] != self.batch_size:
                if user.shape[bax] == given_batch:
                    # --batch-size sets the micro-batch of the --input specs batched like the first (as the torch
                    # frontend rebinds them): an --input of batch 16 under --batch-size 32 was traced at 16 and
                    # said to be 32
                    self.assumptions.append(f"--input {vi.name}: batch dim {bax} ({user.shape[bax]}) set to the "
                                            f"micro-batch {self.batch_size} (--batch-size)")
                    user = TensorSpec(user.name, user.dtype,
                                      tuple(self.batch_size if i == bax else d for i, d in enumerate(user.shape)))
                else:
                    self.assumptions.append(f"--input {vi.name}: kept as given {list(user.shape)} (dim {bax} is not "
                                            f"the first input's batch {given_batch}: not batched)")
            if user is not None:
                if elem in _ONNX_DTYPES and user.dtype != dt:  # the graph's dtype is what is costed: never ignore one
                    raise InputError(f"--input {vi.name}={user.dtype}[...]: the graph declares {dt} for input "
                                     f"{vi.name!r}; an ONNX input keeps the graph's dtype: write "
                                     f"{vi.name}={dt}[{','.join(map(str, user.shape))}]")
                if dims is not None and len(dims) != len(user.shape):
                    raise InputError(f"--input {vi.name}: rank {len(user.shape)} given, the graph's input has rank "
                                     f"{len(dims)} ({_fmt_dims(dims)})")
                for i, (d, v) in enumerate(zip(dims or [], user.shape)):
                    if isinstance(d, str):
                        params.setdefault(d, v)
                    elif isinstance(d, int) and d != v:  # a static dim replaced: may be baked in
                        self.dims_changed = True
                        if d <= 0:
                            continue
                        if i == bax:
                            self.rebound.setdefault("batch", d)
                            self.rebound_target = v
                        elif i == sax and dt in ("int64", "int32"):
                            self.rebound.setdefault("seq", d)
                bound = list(user.shape)
            else:
                if dims is None:
                    raise InputError(f"{self.path}: input {vi.name!r} has no shape; pass --input "
                                     f"{vi.name}={dt}[d0,d1,...]")
                self.cur_rest = tuple(x for i, x in enumerate(dims) if i != bax)
                bound = [self._bind_dim(vi.name, dt, i, d, len(dims), params, bax) for i, d in enumerate(dims)]
            for d in bound:
                if d < 0 or d > MAX_DIM:
                    raise InputError(f"{self.path}: input {vi.name!r} has an invalid dim {d}")
            if C.numel(bound) > MAX_ELEMS:
                raise InputError(f"{self.path}: input {vi.name!r} has an absurd size {bound}")
            _set_dims(vi, bound)
            specs.append(TensorSpec(vi.name, dt, tuple(bound)))
        # bound symbolic dims may reappear in outputs, and a replaced static dim (a batch of 32 baked into the
        # export, --batch-size 256; a zero-size dim bound) leaves the outputs' and value_info's stored shapes at
        # the export's size: drop those stale annotations so shape inference gives the outputs (and the loss sized
        # from them) the bound shapes. value_info is kept otherwise: it is all there is of a custom op's output.
        changed = bool(self.rebound) or getattr(self, "dims_changed", False)
        if changed or params:
            # a symbolic dim bound: intermediate shapes the exporter wrote at its own size (onnx.tools'
            # update_model_dims leaves them) are stale; those of custom-domain ops are all there is of them
            custom = set() if changed else {o for n in g.node if n.domain not in STANDARD_DOMAINS for o in n.output}
            keep = [vi for vi in g.value_info if vi.name in custom]
            del g.value_info[:]
            g.value_info.extend(keep)
        for o in g.output:
            elem, dims = _dims_of(o)
            if dims is not None and (changed or any(not isinstance(d, int) or d == 0 for d in dims)):
                o.type.tensor_type.ClearField("shape")
        self.params_bound = params
        return specs

    def _bind_dim(self, name, dt, i, d, rank, params, bax: int = 0) -> int:
        """Dim ``i`` of input ``name``; ``bax``: the input's batch dim (1 for a sequence-first RNN input, whose
        sequence is dim 0), the sequence the other of dims 0 and 1."""
        sax = 0 if bax == 1 else 1
        if isinstance(d, int) and d > 0:
            first = getattr(self, "first_batch_dim", d)
            # not batched like the first input: its batch is static and another size; or symbolic, and this input
            # is not shaped like it (a weight [48, 48] beside x [batch, 16]) or this dim is one of its other sizes (a
            # [seq, seq] mask beside ids [batch, seq]); a static input shaped like it (token types [8, 16] beside ids
            # [batch, 16]) is a baked batch, rebound
            if isinstance(first, int):
                other = d != first
            else:
                other = (getattr(self, "cur_rest", None) != getattr(self, "first_rest", None)
                         or d in getattr(self, "first_other_dims", ()))
            if i == bax and self.batch_size and d != self.batch_size and rank > 1 and other:
                self.assumptions.append(f"input {name!r}: dim {i} ({d}) kept, not a batch: the first input's batch "
                                        f"dim is {first!r}")
                return d
            if i == bax and self.batch_size and d != self.batch_size and rank > 1:
                where = "leading dim" if i == 0 else f"batch dim {i} (sequence-first RNN input)"
                self.assumptions.append(f"input {name!r}: {where} {d} rebound to --batch-size {self.batch_size}")
                self.rebound["batch"] = d
                return self.batch_size
            if i == sax and self.seq_len and d != self.seq_len and rank == 2 and dt in ("int64", "int32"):
                self.assumptions.append(f"input {name!r}: sequence dim {d} rebound to --seq-len {self.seq_len}")
                self.rebound["seq"] = d
                return self.seq_len
            return d
        if isinstance(d, int) and d < 0:
            raise InputError(f"{self.path}: input {name!r} has a negative dim {d}")
        if isinstance(d, str) and d in params:
            return params[d]
        seq_like = isinstance(d, str) and _SEQ_NAME.search(d) and not _BATCH_NAME.search(d)
        batch_like = (isinstance(d, str) and _BATCH_NAME.search(d)) or (i == bax and not seq_like)
        v = None
        if batch_like and self.batch_size:
            v = self.batch_size
        elif not batch_like and self.seq_len and (seq_like or i == sax):
            v = self.seq_len
        if v is None:
            flag = "--batch-size" if batch_like else ("--seq-len" if seq_like or i == sax else None)
            what = (f"symbolic dim {d!r}" if isinstance(d, str) else
                    f"dim {i} (size 0, read as unknown)" if d == 0 else f"dim {i} (no size given)")
            raise InputError(f"{what} of input {name!r} is unbound: pass "
                             + (f"{flag} N or " if flag else "") + f"--input {name}={dt}[...] with every dim")
        if isinstance(d, str):
            params[d] = v
            self.assumptions.append(f"symbolic dim {d!r} bound to {v}")
        else:
            self.assumptions.append(f"{'zero-size' if d == 0 else 'unnamed'} dim {i} of input {name!r} bound to {v}")
            self.dims_changed = self.dims_changed or d == 0
        return v

    def _rebind_failed(self) -> None:
        if "seq" in self.rebound:
            raise InputError(f"{self.path}: the graph has sequence length {self.rebound['seq']} baked into its "
                             f"shapes; re-export it with a dynamic sequence axis, or keep that length (--seq-len / "
                             f"--input)")
        if "batch" in self.rebound:
            raise _BatchBaked(self.rebound["batch"], getattr(self, "rebound_target", None) or self.batch_size,
                              self.first_batch_axis())

    def first_batch_axis(self) -> int:
        """The batch dim of the graph's first data input (what the micro-batch is read from)."""
        axes = getattr(self, "batch_axes", {})
        return next(iter(axes.values()), 0)


def _bind_positional(user: dict[str, TensorSpec], graph_inputs, where: str) -> dict[str, TensorSpec]:
    """Example tensors given by position (the API's ``inputs=x`` or ``inputs=(x, mask)``, keyed ``input:0``,
    ``input:1``...) bound to the graph's inputs in their order (initializers excluded), each as a spec of the
    tensor's dtype and shape named after its input; the inputs after them keep their declared shapes. Specs whose
    names are the graph's own (a tf2onnx input may be called ``input:0``) are kept as they are."""
    names = [vi.name for vi in graph_inputs]
    if not user or set(user) <= set(names) or list(user) != [POSITIONAL_INPUT.format(i) for i in range(len(user))]:
        return user
    if len(user) > len(names):
        listed = ", ".join(names) or "none"
        raise InputError(f"{len(user)} example tensors given by position; {where} takes {len(names)} input"
                         f"{'s' if len(names) != 1 else ''} ({listed})")
    return {n: TensorSpec(n, spec.dtype, spec.shape) for n, spec in zip(names, user.values())}
