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
            for a in n.attribute:
                if a.type == 5:
                    subgraph(a.g)
                elif a.type == 10:
                    for sg in a.graphs:
                        subgraph(sg)


def _subgraphs(g):
    for n in g.node:
        for a in n.attribute:
            if a.type == 5:
                yield a.g
            elif a.type == 10:
                yield from a.graphs


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
            if loc and f.is_file():
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
                        name = n.input[pos]
                        raise InputError(f"{self.path}: shape tensor {name!r} (input of {n.name or n.op_type}) is "
                                         f"stored in external data {self.missing_shape_values[name]!r}, which is "
                                         f"missing; put the data file beside the model or bind the shape with "
                                         f"--input")
