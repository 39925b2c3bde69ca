"""ONNX frontend, part 2: shapes. onnx shape inference (with data propagation) first; shape computations folded
with numpy (:mod:`.onnx_fold`) where it stops; onnxruntime's symbolic shape inference last (slow; loaded lazily by
file path so neither torch nor the runtime library is imported), never reading external data.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ..types import InputError
from . import onnx_ops as ops
from .onnx_load import _ONNX_DTYPES, _all_initializers, _concrete, _dims_of, _first_error, _opset

MAX_SHAPE_VALUES = 1 << 16  # entries of one integer shape tensor (Reshape / Expand / Slice targets are rank-sized)


# ---- memory of shape inference, estimated before it runs -----------------------------------------------------------
# onnx's data propagation (infer_shapes(..., data_prop=True)) keeps, for the whole run, one TensorShapeProto entry
# (a Dimension message) per element of every 1-D tensor that an op with a data propagator reads or writes
# (onnx/shape_inference/implementation.h, DataPropagationContextImpl::getInputData): an int32/int64 initializer or
# Constant of rank <= 1 is copied in whole, and any other input whose inferred type is 1-D of known length L gets L
# empty entries ("an array of L unknown values"); Cast / Squeeze / Unsqueeze then copy their input's entries to their
# output, Concat sums its inputs', Add / Sub / Mul broadcast theirs, Gather keeps its indices' count. At a long bound
# sequence those vectors are the position ids (Range(0, S)) and the 1-D masks: a GPT-2 export of transformers'
# GPT2LMHeadModel (TorchScript exporter) holds 8 vectors of S, 549 MiB counted and 557 MiB measured at S = 1e6, ~54 GiB
# at S = 1e8, which the kernel's OOM killer answers before any std::bad_alloc can. onnxruntime's symbolic inference
# holds as numpy / list data every int64 ConstantOfShape output whose shape it knows (np.ones(shape) * value) and a
# list of the elements of each 1-D one per op that reads it.
DATA_PROP_ENTRY_BYTES = 72  # measured (onnx 1.23, Linux): 2e6 entries (Range(0, 1e6) -> Unsqueeze) raise the peak RSS
#                             by 137 MiB = 72 B each (the 48-byte Dimension message, its RepeatedPtrField slot, malloc)
ORT_ELEMENT_BYTES = 16  # measured (onnxruntime 1.32): an int64 ConstantOfShape of 1e7 elements, +159 MiB; a 1-D one
#                         read by one more op, +154 MiB (np.ones and its product with the fill value; a list per reader)
_GRAPH_OPS = {"If", "Loop", "Scan", "SequenceMap", "FlexAttention"}  # the standard ops with graph attributes
MEMORY_SHARE = 2  # shape inference may use at most 1/2 of the memory left: the rest holds the model's serialized
#                   copies (the input and the inferred model) and the analysis after it
MIN_REFUSED_BYTES = 1 << 28  # less is never refused: within what this process holds anyway (Python, onnx, numpy),
#                              and the memory left, read from /proc, is not known that exactly


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            s = f.read().strip()
    except OSError:
        return None
    return int(s) if s.isdigit() else None


def _field(key: str, path: str) -> int | None:
    """The number after ``key:`` (/proc/meminfo, /proc/self/status: kB) or ``key`` (a cgroup's memory.stat: bytes)
    in ``path``; None where there is no such file (off Linux) or line."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith((key + ":", key + " ")):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_headroom() -> int | None:
    """Bytes this process can still allocate before the kernel or a limit stops it: the least of the memory the
    system has available (MemAvailable), its cgroup's limit less its usage, and ``ulimit -v`` / ``-d`` (RLIMIT_AS /
    RLIMIT_DATA) less this process's size. None where none of them can be read."""
    import os

    known = []
    avail = _field("MemAvailable", "/proc/meminfo")
    avail = avail * 1024 if avail is not None else None
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            try:
                avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError, AttributeError):
                avail = None
    if avail is not None and avail > 0:
        known.append(avail)
    try:  # cgroup v2 (containers): the limit of this process's own group
        with open("/proc/self/cgroup") as f:
            rel = next((line.strip().split("::", 1)[1] for line in f if line.startswith("0::")), None)
    except (OSError, IndexError):
        rel = None
    for base in ([f"/sys/fs/cgroup{rel.rstrip('/')}"] if rel is not None else []) + ["/sys/fs/cgroup"]:
        limit, used = _read_int(base + "/memory.max"), _read_int(base + "/memory.current")
        if limit is not None and used is not None:  # the group's page cache counts as used but is reclaimed first
            known.append(max(0, limit - used + (_field("inactive_file", base + "/memory.stat") or 0)))
            break
    try:  # cgroup v1 (review: its memory controller's limit was not read, so a v1 container's limit was ignored)
        with open("/proc/self/cgroup") as f:
            rel1 = next((line.strip().split(":", 2)[2] for line in f
                         if "memory" in line.split(":", 2)[1].split(",")), None)
    except (OSError, IndexError):
        rel1 = None
    for base in ([f"/sys/fs/cgroup/memory{rel1.rstrip('/')}"] if rel1 is not None else []) + ["/sys/fs/cgroup/memory"]:
        limit, used = _read_int(base + "/memory.limit_in_bytes"), _read_int(base + "/memory.usage_in_bytes")
        if limit is not None and used is not None:  # 'no limit' reads as a huge number: min() below ignores it
            known.append(max(0, limit - used + (_field("total_inactive_file", base + "/memory.stat") or 0)))
            break
    try:
        import resource

        for lim, key in ((resource.RLIMIT_AS, "VmSize"), (getattr(resource, "RLIMIT_DATA", None), "VmData")):
            if lim is None:
                continue
            soft = resource.getrlimit(lim)[0]
            if soft != resource.RLIM_INFINITY and soft > 0:
                known.append(max(0, soft - (_field(key, "/proc/self/status") or 0) * 1024))
    except (ImportError, OSError, ValueError):
        pass
    return min(known) if known else None


def _data_propagators(opset: int):
    """op_type -> whether the installed onnx gives it a data propagator at ``opset`` (default domain)."""
    import onnx.defs

    opset = min(opset or 1, onnx.defs.onnx_opset_version())
    cache: dict[str, bool] = {}

    def has(op: str) -> bool:
        if op not in cache:
            try:
                cache[op] = bool(onnx.defs.get_schema(op, opset, "").has_data_propagation_function)
            except Exception:  # no such op at this opset: no schema, no propagation
                cache[op] = False
        return cache[op]
    return has


def _node_subgraphs(node):
    """The graphs a node's attributes hold (GRAPH, GRAPHS: If's branches, Loop / Scan bodies), in order."""
    for a in node.attribute:
        if a.type == 5:  # AttributeProto.GRAPH
            yield a.g
        elif a.type == 10:  # AttributeProto.GRAPHS
            yield from a.graphs


def data_prop_entries(graph, lengths: dict, ranks: dict, opset: int) -> tuple[int, tuple | None]:
    """The entries onnx's data propagation creates for ``graph`` (see :data:`DATA_PROP_ENTRY_BYTES`), walking its
    nodes (and its subgraphs') in order as onnx does: ``lengths`` gives the inferred length of each 1-D tensor,
    ``ranks`` the rank of the others it knows. Returns (entries, (tensor, length, node) of the longest vector read
    or written, or None)."""
    has = _data_propagators(opset)
    consts: dict[str, tuple[int, tuple]] = {}  # initializers and Constant outputs: (data_type, dims)
    gen: dict[str, int] = {}
    total = 0
    longest: list = [None]

    def note(name, n, node):
        nonlocal total
        total += n
        if longest[0] is None or n > longest[0][1]:
            longest[0] = (name, n, node.name or node.op_type)

    def read(node, i):
        """getInputData(i): the entries of input i (None where onnx has no data for it), created on first read."""
        name = node.input[i] if i < len(node.input) else ""
        if not name:
            return None
        if name in gen:
            return gen[name]
        if name in consts:
            dt, dims = consts[name]
            if len(dims) <= 1:
                if dt not in (6, 7):  # an initializer of another type gives no data, not the fallback
                    return None
                gen[name] = n = math.prod(dims)
                note(name, n, node)
                return n
        n = lengths.get(name)
        if n is None:
            return None
        gen[name] = n
        note(name, n, node)
        return n

    def write(node, n):
        if n is not None and node.output and node.output[0] and node.output[0] not in gen:
            gen[node.output[0]] = n
            note(node.output[0], n, node)

    def axis_zero(node, default_zero: bool) -> bool:
        ax = next((a.i for a in node.attribute if a.name == "axis"), None)
        if ax is None:
            return default_zero
        if ax >= 0:
            return ax == 0
        name = node.input[0] if node.input else ""
        rank = 1 if name in gen or name in lengths else ranks.get(name)
        return rank is not None and ax + rank == 0

    def walk(g):
        for t in _all_initializers(g):
            consts[t.name] = (t.data_type, tuple(t.dims))
        for n in g.node:
            if n.domain in ("", "ai.onnx") and n.op_type == "Constant" and n.output:
                for a in n.attribute:
                    if a.name == "value" and a.type == 4:
                        consts[n.output[0]] = (a.t.data_type, tuple(a.t.dims))
                    elif a.name in ("value_int", "value_ints"):
                        consts[n.output[0]] = (7, () if a.name == "value_int" else (len(a.ints),))
                    elif a.name in ("value_float", "value_floats"):
                        consts[n.output[0]] = (1, () if a.name == "value_float" else (len(a.floats),))
            if n.domain in ("", "ai.onnx") and has(n.op_type):
                op = n.op_type
                if op in ("Cast", "CastLike", "Squeeze", "Unsqueeze"):
                    write(n, read(n, 0))
                elif op == "Shape":
                    write(n, ranks.get(n.input[0]) if n.input else None)
                elif op == "Size":
                    write(n, 1 if read(n, 0) is not None else None)
                elif op == "Concat":
                    if axis_zero(n, False):
                        parts = []
                        for i in range(len(n.input)):
                            d = read(n, i)
                            if d is None:
                                break
                            parts.append(d)
                        else:
                            write(n, sum(parts) or None)
                elif op == "Gather":
                    if axis_zero(n, True) and read(n, 0) is not None:
                        write(n, read(n, 1) or None)
                elif op == "Slice":
                    got = [read(n, i) for i in range(min(len(n.input), 5))]
                    write(n, got[0] if len(got) >= 3 and None not in got[:3] else None)
                elif op in ("Add", "Sub", "Mul"):
                    a, b = read(n, 0), read(n, 1)
                    if a is not None and b is not None:
                        write(n, b if a == 1 else a)
                else:  # a propagator this onnx has and this table does not: as an element-wise op (read all)
                    got = [read(n, i) for i in range(len(n.input))]
                    if got and None not in got:
                        write(n, max(got))
            if n.op_type in _GRAPH_OPS or n.domain not in ("", "ai.onnx"):
                for sg in _node_subgraphs(n):
                    walk(sg)

    walk(graph)
    return total, longest[0]


def _infer_plain(model):
    """onnx's shape inference without data propagation, lenient, through its C++ entry point: a measure taken before
    the inference of :meth:`_Shapes._infer`, not an attempt at it (``onnx.shape_inference.infer_shapes``, which a
    caller may wrap, stays that inference's alone)."""
    from onnx import ModelProto
    from onnx.onnx_cpp2py_export import shape_inference as cpp

    out = ModelProto()
    out.ParseFromString(cpp.infer_shapes(model.SerializeToString(), False, False, False))
    return out


def _inferred_dims(graph, names=None) -> tuple[dict, dict]:
    """(name -> dims, name -> length of the 1-D ones of known length) of every tensor ``graph`` and its subgraphs
    give a shape (only of ``names`` where given); an unknown dim is None."""
    dims: dict = {}
    lengths: dict = {}
    stack = [graph]
    while stack:
        g = stack.pop()
        for vi in (*g.input, *g.value_info, *g.output):
            if names is not None and vi.name not in names:
                continue
            tt = vi.type.tensor_type
            if tt.HasField("shape"):
                ds = tt.shape.dim
                if len(ds) == 1:
                    if ds[0].HasField("dim_value"):
                        lengths[vi.name] = ds[0].dim_value
                    dims[vi.name] = (lengths.get(vi.name),)
                else:
                    dims[vi.name] = tuple(x.dim_value if x.HasField("dim_value") else None for x in ds)
        stack.extend(_subgraphs(g, control_only=True))
    return dims, lengths


def ort_data_elements(graph, types: dict) -> tuple[int, tuple | None]:
    """The elements onnxruntime's symbolic shape inference holds as data for ``graph`` (see
    :data:`ORT_ELEMENT_BYTES`): each int64 ConstantOfShape output whose shape ``types`` knows, once, and a 1-D one
    once more per op that reads it. Returns (elements, (tensor, elements, node) of the largest, or None)."""
    readers: dict[str, int] = {}
    cos = []
    stack = [graph]
    while stack:
        g = stack.pop()
        for n in g.node:
            for i in n.input:
                readers[i] = readers.get(i, 0) + 1
            if n.op_type == "ConstantOfShape" and n.domain in ("", "ai.onnx") and n.output:
                value = next((a.t for a in n.attribute if a.name == "value" and a.type == 4), None)
                if value is not None and value.data_type == 7:  # float32 when not given: not held
                    cos.append(n)
        stack.extend(_subgraphs(g, control_only=True))
    total, largest = 0, None
    for n in cos:
        shape = types.get(n.output[0], (None, None))[1]
        if shape is None:
            continue
        count = math.prod(shape)
        total += count * (1 + (readers.get(n.output[0], 0) if len(shape) == 1 else 0))
        if largest is None or count > largest[1]:
            largest = (n.output[0], count, n.name or n.op_type)
    return total, largest


def _light_copy(model):
    """A copy of ``model`` for shape inference that leaves the weights out: each initializer but the small integer
    ones (shape values) becomes a graph input of its type and dims, so nothing of its data is copied."""
    from onnx import ModelProto, helper

    m = ModelProto()
    for f in ("ir_version", "producer_name", "producer_version", "domain", "model_version"):
        setattr(m, f, getattr(model, f))
    m.opset_import.extend(model.opset_import)
    m.functions.extend(model.functions)
    src, g = model.graph, m.graph
    g.name = src.name
    g.node.extend(src.node)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    g.input.extend(src.input)
    names = {i.name for i in src.input}
    for t in src.initializer:
        if t.data_type in (6, 7, 9) and t.data_location != 1 and math.prod(t.dims) <= MAX_SHAPE_VALUES:
            g.initializer.append(t)
        elif t.name not in names:
            g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    for st in src.sparse_initializer:
        if st.values.name not in names:
            g.input.append(helper.make_tensor_value_info(st.values.name, st.values.data_type, list(st.dims)))
    return m


def _without_external_data(model):
    """A copy whose externally stored initializers, and the outputs of Constant nodes whose tensor is stored
    externally (onnx.save(..., convert_attribute=True)), are graph inputs of the same type and shape: onnxruntime's
    symbolic inference would otherwise try to read their data (relative to the current directory). Returns the copy,
    the initializers moved and the Constant nodes removed."""
    from onnx import helper

    m = type(model)()
    m.CopyFrom(model)
    g = m.graph
    keep, moved = [], []
    for t in g.initializer:
        (moved if t.data_location == 1 else keep).append(t)
    nodes, consts = [], []
    for n in g.node:
        ext = n.op_type == "Constant" and n.output and any(a.name == "value" and a.type == 4 and
                                                           a.t.data_location == 1 for a in n.attribute)
        (consts if ext else nodes).append(n)
    if not moved and not consts:
        return m, [], []
    del g.initializer[:]
    g.initializer.extend(keep)
    names = {i.name for i in g.input}
    g.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in moved
                   if t.name not in names)
    if consts:
        del g.node[:]
        g.node.extend(nodes)
        for n in consts:
            t = next(a.t for a in n.attribute if a.name == "value")
            g.input.append(helper.make_tensor_value_info(n.output[0], t.data_type, list(t.dims)))
    return m, moved, consts

def _run_ort(SymbolicShapeInference, model):
    """``SymbolicShapeInference.infer_shapes`` without its side effects: the public method saves a debug copy of
    the model into the current directory and raises when inference is incomplete; here partial results are kept and
    nothing is written."""
    sym = SymbolicShapeInference(2 ** 31 - 1, True, False, 0)
    if all(hasattr(sym, a) for a in ("_preprocess", "_infer_impl", "_update_output_from_vi")):
        sym._preprocess(model)
        while sym.run_:
            sym._infer_impl()
        sym._update_output_from_vi()
        return sym.out_mp_
    import os
    import tempfile

    cwd = os.getcwd()  # another onnxruntime version: the public API, run where its debug file harms nobody
    with tempfile.TemporaryDirectory() as td:
        os.chdir(td)
        try:
            return SymbolicShapeInference.infer_shapes(model, int_max=2 ** 31 - 1, auto_merge=True)
        finally:
            os.chdir(cwd)


def _ort_symbolic():
    """onnxruntime's symbolic_shape_infer module, loaded by file path: ``onnxruntime.tools/__init__`` imports torch
    (pytorch_export_helpers) and ``onnxruntime`` itself loads the runtime library; neither is needed here."""
    import importlib.util
    import sys

    name = "_wattlint_ort_symbolic_shape_infer"
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.find_spec("onnxruntime")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("onnxruntime is not installed")
        f = Path(list(spec.submodule_search_locations)[0]) / "tools" / "symbolic_shape_infer.py"
        mspec = importlib.util.spec_from_file_location(name, f)
        mod = importlib.util.module_from_spec(mspec)
        sys.modules[name] = mod
        try:
            mspec.loader.exec_module(mod)
        except Exception:
            del sys.modules[name]
            raise
    return mod.SymbolicShapeInference


def _fill_types(types: dict, g, subgraph=None) -> None:
    """Add what ``g`` declares (its initializers, inputs, value_info, outputs and Constant nodes) to ``types``: name
    -> (dtype, shape or None); ``subgraph(sg)`` is called for each subgraph of its nodes, in node order."""
    for t in _all_initializers(g):
        types[t.name] = (_ONNX_DTYPES.get(t.data_type, "float32"), tuple(t.dims))
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        elem, dims = _dims_of(vi)
        if elem is None:
            continue
        dt, shape = _concrete(elem, dims)
        if vi.name not in types or types[vi.name][1] is None:
            types[vi.name] = (dt, shape)
    for n in g.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value" and a.type == 4:
                    types[n.output[0]] = (_ONNX_DTYPES.get(a.t.data_type, "float32"), tuple(a.t.dims))
                elif a.name in ("value_float", "value_int"):
                    types[n.output[0]] = ("float32" if a.name == "value_float" else "int64", ())
                elif a.name in ("value_floats", "value_ints"):
                    types[n.output[0]] = ("float32" if a.name == "value_floats" else "int64",
                                          (len(a.floats) or len(a.ints),))
        if subgraph is not None:
            for sg in _node_subgraphs(n):
                subgraph(sg)


def _subgraphs(g, control_only: bool = False):
    """The subgraphs of ``g``'s nodes (with ``control_only``, only of :data:`_GRAPH_OPS` and custom-domain nodes)."""
    for n in g.node:
        if control_only and n.op_type not in _GRAPH_OPS and n.domain in ("", "ai.onnx"):
            continue
        yield from _node_subgraphs(n)


def _defined(g) -> list:
    """The names ``g`` itself defines: its inputs, initializers and node outputs (not its subgraphs')."""
    return [*(i.name for i in g.input), *(t.name for t in _all_initializers(g)),
            *(o for n in g.node for o in n.output if o)]


class ScopeTypes:
    """Types by scope, for the names that more than one graph of a model defines (:attr:`shared`: sibling
    subgraphs, an If's two branches or two loop bodies, may each define an ``s`` of their own rank, which the
    flat ``types`` table holds only one of). :meth:`of` gives, per graph, the names it defines -> (dtype, shape)
    as that graph declares them ((None, None) where it declares nothing). Built once per graph, on first use; not a
    dict, so that a dry run (``_Analysis._probe``) shares it instead of copying it."""

    __slots__ = ("_tables", "shared")

    def __init__(self, root):
        self._tables: dict[int, tuple] = {}  # id(graph) -> (graph, table): the graph is kept so its id stays its own
        seen: set[str] = set()
        shared: set[str] = set()
        stack = [root]
        while stack:
            gr = stack.pop()
            own = set(_defined(gr))
            shared |= own & seen
            seen |= own
            stack.extend(_subgraphs(gr))
        self.shared = frozenset(shared)

    def of(self, g) -> dict:
        hit = self._tables.get(id(g))
        if hit is None:
            declared: dict = {}
            _fill_types(declared, g)
            hit = self._tables[id(g)] = (g, {name: declared.get(name, (None, None)) for name in _defined(g)})
        return hit[1]

    def of_id(self, gid: int) -> dict:
        """The table of a graph :meth:`of` has built, by its id."""
        return self._tables[gid][1]


class _Shapes:
    """Mixin of :class:`wattlint.frontends.onnx._Analysis`: shape inference and the ``types`` table."""

    def _infer(self):
        import onnx
        from onnx import shape_inference

        self._load_shape_values()
        self._check_inference_memory()
        newest, declared = onnx.defs.onnx_opset_version(), _opset(self.model)
        if declared > newest:
            self.assumptions.append(f"the model declares ONNX opset {declared}, newer than the installed "
                                    f"onnx {onnx.__version__} knows (up to {newest}): its ops are read with their "
                                    f"opset-{newest} definitions (upgrade onnx if an op changed since)")
        try:
            return shape_inference.infer_shapes(self.model, check_type=False, strict_mode=True, data_prop=True)
        except MemoryError:  # std::bad_alloc in onnx's C++: the lenient retry would run out the same way
            raise self._inference_out_of_memory() from None
        except Exception as e:
            strict_err = e
        try:  # some exporters emit graphs that strict mode rejects for a node we do not need: retry leniently
            inferred = shape_inference.infer_shapes(self.model, check_type=False, strict_mode=False, data_prop=True)
        except Exception:
            self._rebind_failed()
            raise InputError(f"{self.path}: shape inference failed: {_first_error(strict_err)}") from None
        msg = _first_error(strict_err)
        if re.search(r"incompatible|mismatch|not compatible|out of range|invalid|negative", msg, re.I):
            self._rebind_failed()
            raise InputError(f"{self.path}: shape inference failed: {msg}")
        self.assumptions.append(f"onnx shape inference (strict) reported: {msg[:160]}")
        del onnx
        return inferred

    def _inference_out_of_memory(self) -> InputError:
        """onnx's shape inference ran out of memory: its data propagation holds an entry (about 140 bytes) per
        element of every integer vector it sizes (position ids, masks of the sequence's length, several per layer),
        so a long bound sequence (--seq-len 1e7: several GB) is what does it, not the model's size."""
        seq = f" at sequence length {self.seq_len:,}" if self.seq_len else ""
        return InputError(f"{self.path}: onnx shape inference ran out of memory{seq}: its data propagation holds an "
                          f"entry (~140 bytes) for every element of each integer vector sized by the bound dims "
                          f"(position ids, masks; several per model), so memory grows with the sequence length; "
                          f"analyze a shorter --seq-len (or smaller --input dims)")

    def _check_inference_memory(self) -> None:
        """Before each run of onnx's shape inference: refuse, in one line, bound dims whose data propagation would
        not fit in the memory left (:data:`DATA_PROP_ENTRY_BYTES`): past it the kernel kills the process, with no
        MemoryError to report. Its entries are counted on the shapes an inference without data propagation gives
        (:meth:`_vector_lengths`): after :meth:`_fold_and_reinfer` has folded the shape computations, the position
        ids Range(0, S) are 1-D of known length S, and its second inference is the one checked then."""
        lengths, dims = self._vector_lengths()
        if lengths is None:  # the graph fails inference: the inference that follows reports it
            return
        entries, longest = data_prop_entries(self.model.graph, lengths, {k: len(v) for k, v in dims.items()},
                                             _opset(self.model))
        self._refuse_if_too_large("onnx's data propagation", entries, DATA_PROP_ENTRY_BYTES, longest)

    def _vector_lengths(self) -> tuple[dict | None, dict]:
        """name -> length of each 1-D tensor of known length, and name -> rank of every tensor with a shape, as
        shape inference without data propagation (which holds nothing per element) gives them on a weight-free copy
        of the model. Before the first inference its shape computations are folded with numpy first (values of at
        most :data:`MAX_SHAPE_VALUES` elements), as data propagation would give a Reshape / Expand / ConstantOfShape
        its target; later the model is folded already (:meth:`_fold_and_reinfer`)."""
        from .onnx_fold import fold_shape_values

        try:
            inferred = _infer_plain(_light_copy(self.model))
            if not getattr(self, "_folded_once", False):
                self._folded_once = True
                g = inferred.graph
                wanted = {n.input[0] for n in g.node if n.op_type in ("Shape", "Size") and n.input}
                shapes, _ = _inferred_dims(g, wanted)
                if fold_shape_values(g, {k: (None, v if None not in v else None) for k, v in shapes.items()}):
                    inferred = _infer_plain(inferred)
        except Exception:
            return None, {}
        return _inferred_dims(inferred.graph)[::-1]

    def _refuse_if_too_large(self, what: str, entries: int, per: int, longest) -> None:
        """One InputError line when ``entries`` values of ``per`` bytes, held by ``what``, need more than
        1/:data:`MEMORY_SHARE` of the memory left (:func:`memory_headroom`), saying which size is too large and the
        --seq-len that fits (the vectors are as long as the sequence, or the batch times it: linear in it)."""
        need = entries * per
        if need < MIN_REFUSED_BYTES:
            return
        room = memory_headroom()
        if room is None or need * MEMORY_SHARE <= room:
            return
        name, n, node = longest or ("?", 0, "?")
        factor = room / (need * MEMORY_SHARE)  # the vectors are as long as a bound dim (or a product): linear in it
        seq, batch = getattr(self, "seq_len", None), getattr(self, "batch_size", None)
        if seq and n == seq:
            size, flag, fit = f"--seq-len {seq:,}", "a --seq-len", int(seq * factor)
        elif batch and n == batch:
            size, flag, fit = f"--batch-size {batch:,}", "a --batch-size", int(batch * factor)
        elif seq and batch and n == seq * batch:
            size, flag, fit = f"--batch-size {batch:,} x --seq-len {seq:,}", "a --batch-size x --seq-len", \
                int(n * factor)
        else:
            inits = {t.name for t in self.model.graph.initializer}
            bound = [f"{i.name}[{','.join(str(d.dim_value) for d in i.type.tensor_type.shape.dim)}]"
                     for i in self.model.graph.input if i.name not in inits]
            size, flag, fit = "input " + ", ".join(bound[:4]), None, 0
        advice = (f"analyze {flag} of about {fit:,} or less" if flag and fit else
                  f"analyze {flag.replace('a ', 'a smaller ', 1)}" if flag else
                  "analyze smaller --input dims (or --batch-size / --seq-len)")
        raise InputError(f"{self.path}: {size} is too large for shape inference: {what} would hold {entries:,} "
                         f"values at ~{per} bytes each ({need / 2 ** 30:.1f} GiB; the longest vector, {name!r} of "
                         f"node {node}, has {n:,}), and {room / 2 ** 30:.1f} GiB of memory is free; {advice}")

    def _load_shape_values(self) -> None:
        """Integer initializers used as shapes (Reshape/Expand/Slice targets) that are stored externally: read them
        from a data file inside the model's folder when present; otherwise remember them for a clear error."""
        g = self.model.graph
        ext = {t.name: t for t in g.initializer if t.data_location == 1 and t.data_type in (6, 7)}
        # Constant nodes saved with their tensors as external data (onnx.save(..., convert_attribute=True))
        ext.update({n.output[0]: a.t for n in g.node if n.op_type == "Constant" and n.output
                    for a in n.attribute if a.name == "value" and a.type == 4 and a.t.data_location == 1
                    and a.t.data_type in (6, 7)})
        if not ext:
            return
        wanted = set()
        for n in g.node:
            for pos in ops.SHAPE_INPUTS.get(n.op_type, ()):
                if pos < len(n.input) and n.input[pos] in ext:
                    wanted.add(n.input[pos])
        # and every other small integer tensor: shapes are also computed from them (Concat of constants into a
        # Reshape target, Gather indices of a Shape); unread, shape inference lost every shape after them
        for name, t in ext.items():
            count = 1
            for d in t.dims:
                count *= max(int(d), 0)
            if count <= MAX_SHAPE_VALUES:
                wanted.add(name)
        for name in sorted(wanted):
            t = ext[name]
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            if loc and not self._inside_folder(loc):  # a Constant node's tensor is checked here, not with the weights
                raise self._outside(f"tensor {name!r}", loc)
            f = self.folder / loc
            if loc and f.is_file():  # stat only: a named pipe or a folder is not opened (said in the error)
                t.raw_data = self._read_shape_value(t, f, loc)
                t.data_location = 0
                del t.external_data[:]
            else:
                self.missing_shape_values[name] = loc

    def _read_shape_value(self, t, f, loc: str) -> bytes:
        """The bytes of one external integer shape tensor: its size from its dims (a shape tensor has at most
        :data:`MAX_SHAPE_VALUES` entries), checked against the declared ``length`` and the data file's size BEFORE
        reading, then exactly those bytes read (never the whole file)."""
        where = f"{self.path}: shape tensor {t.name!r} in external data {loc!r}"
        count = 1
        for d in t.dims:
            if d < 0:
                raise InputError(f"{where}: negative dimension {d}")
            count *= d
        if count > MAX_SHAPE_VALUES:
            raise InputError(f"{where}: {count:,} values; a shape tensor has at most {MAX_SHAPE_VALUES:,}")
        nbytes = count * (8 if t.data_type == 7 else 4)
        info = {e.key: e.value for e in t.external_data}
        try:
            offset = int(info.get("offset") or 0)
            length = int(info["length"]) if info.get("length") else nbytes
        except ValueError:
            raise InputError(f"{where}: offset / length are not whole numbers") from None
        if offset < 0 or length != nbytes:
            raise InputError(f"{where}: declares {length:,} bytes at offset {offset:,}; its dims "
                             f"{list(t.dims)} need {nbytes:,}")
        size = f.stat().st_size
        if offset + nbytes > size:
            raise InputError(f"{where}: needs bytes {offset:,}..{offset + nbytes:,} but the file has {size:,}")
        with open(f, "rb") as fh:
            fh.seek(offset)
            data = fh.read(nbytes)
        if len(data) != nbytes:
            raise InputError(f"{where}: the file ended after {len(data):,} of {nbytes:,} bytes")
        return data

    def _collect_types(self, g) -> None:
        """The ``types`` table: every name of the model, its subgraphs' too, flat (first declaration with a shape
        wins); a name that sibling subgraphs both define is read by scope while walking (:class:`ScopeTypes`)."""
        _fill_types(self.types, g, self._collect_types)

    def _unknown_nodes(self, g, all_ops: bool = False) -> list:
        out = []
        for n in g.node:
            if not all_ops and n.op_type in ops.VIEW_OPS and n.op_type not in ("If", "Loop", "Scan"):
                continue
            if ops.handler_for(n.op_type, n.domain) is None:
                continue
            if any(o and self.types.get(o, (None, None))[1] is None for o in n.output[:1]):
                out.append(n)
        return out

    def _fold_and_reinfer(self, inferred):
        """Evaluate shape computations (Shape -> Gather -> Concat -> Where ...) with numpy, then infer again."""
        from .onnx_fold import fold_shape_values

        targets = []
        for n in self._unknown_nodes(inferred.graph, all_ops=True):
            for i in n.input:
                if i and self.types.get(i, (None, None))[0] in ("int64", "int32", "bool", None):
                    targets.append(i)
        if not fold_shape_values(self.model.graph, self.types, targets=targets):
            return inferred
        again = self._infer()
        self.types = {}
        self._collect_types(again.graph)
        return again

    def _symbolic(self, inferred):
        """onnxruntime's symbolic shape inference for what onnx inference left unknown (imported only here)."""
        try:
            SymbolicShapeInference = _ort_symbolic()
        except Exception:  # onnxruntime missing or broken: keep what onnx inferred
            self.assumptions.append("onnxruntime symbolic shape inference unavailable; unknown shapes remain")
            return inferred
        entries, longest = ort_data_elements(self.model.graph, self.types)
        self._refuse_if_too_large("onnxruntime's symbolic shape inference", entries, ORT_ELEMENT_BYTES, longest)
        try:
            stripped, moved, consts = _without_external_data(self.model)
            out = _run_ort(SymbolicShapeInference, stripped)
            if out is not None and (moved or consts):  # put the initializers and Constant nodes back
                names = {t.name for t in moved} | {n.output[0] for n in consts}
                keep = [i for i in out.graph.input if i.name not in names]
                del out.graph.input[:]
                out.graph.input.extend(keep)
                out.graph.initializer.extend(moved)
                if consts:  # first: a Constant has no inputs
                    rest = list(out.graph.node)
                    del out.graph.node[:]
                    out.graph.node.extend([*consts, *rest])
        except Exception as e:
            self.assumptions.append(f"symbolic shape inference failed ({type(e).__name__}); unknown shapes remain")
            return inferred
        if out is None:
            return inferred
        before = len(self._unknown_nodes(inferred.graph))
        known = self.types
        self.types = {}
        self._collect_types(out.graph)
        for k, v in known.items():  # keep what onnx inference (and folding) already knew
            if v[1] is not None and self.types.get(k, (None, None))[1] is None:
                self.types[k] = v
        after = len(self._unknown_nodes(out.graph))
        self.assumptions.append(f"symbolic shape inference (onnxruntime) resolved {before - after} of {before} "
                                f"nodes with unknown shapes")
        return out

    def _check_reshapes_after_rebind(self, g) -> None:
        """After ``--batch-size`` replaced a static batch, a Reshape whose known input and output hold different
        element counts means the old batch is baked into its target (shape inference does not always reject it,
        e.g. at batch 1): analyze at the baked batch and scale, as when inference fails."""
        if "batch" not in self.rebound:
            return
        for n in g.node:
            if n.op_type != "Reshape" or not n.input or not n.output:
                continue
            src = self.types.get(n.input[0], (None, None))[1]
            dst = self.types.get(n.output[0], (None, None))[1]
            if src and dst and all(isinstance(d, int) and d > 0 for d in (*src, *dst)) \
                    and math.prod(src) != math.prod(dst):
                self._rebind_failed()

    def _check_outputs_known(self, g) -> None:
        if not self.missing_shape_values:
            return
        for n in g.node:
            for pos in ops.SHAPE_INPUTS.get(n.op_type, ()):
                if pos < len(n.input) and n.input[pos] in self.missing_shape_values:
                    if n.output and self.types.get(n.output[0], (None, None))[1] is None:
                        from ..io import not_a_file

                        name = n.input[pos]
                        loc = self.missing_shape_values[name]
                        # there but no regular file (a named pipe, a folder): say what it is, never open it
                        what = not_a_file(self.folder / loc) if loc else None
                        state, fix = ((f"{what}, not a file", "put the data file there instead")
                                      if what else ("missing", "put the data file beside the model"))
                        raise InputError(f"{self.path}: shape tensor {name!r} (input of {n.name or n.op_type}) is "
                                         f"stored in external data {loc!r}, which is {state}; {fix} or bind the "
                                         f"shape with --input")
