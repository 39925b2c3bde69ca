"""Tied weights in an exported ONNX graph: an output layer sharing the token embedding's matrix.

The TorchScript exporter with constant folding writes a tied LM head (GPT-2, BERT's MLM decoder: ``lm_head.weight is
wte.weight``) as a second initializer, the embedding transposed (``onnx::MatMul_1067`` [d, V] beside
``transformer.wte.weight`` [V, d]); an untied head (Llama) is written the same way. Only the values tell them
apart: where both tensors' data can be read (inline, or external data in the model's folder), a copy equal to the
transposed embedding at a few sampled columns is a tie (one parameter: no optimizer step or parameter count of its
own; its gradient GEMM still runs, autograd adds it into the embedding's gradient); where it cannot be read, the
pair is named in an assumption and counted as two parameters.
"""

from __future__ import annotations

from pathlib import Path

from .onnx_load import external_path

SAMPLES = 8  # columns of the copy compared with rows of the embedding


def _array(t, folder: Path, also: Path | None = None):
    """The initializer's values as a numpy array (memory-mapped for external data), or None when not readable."""
    import numpy as np
    from onnx import helper

    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
    except (KeyError, TypeError, ValueError):
        return None
    shape = tuple(int(d) for d in t.dims)
    count = 1
    for d in shape:
        count *= d
    if t.raw_data:
        if len(t.raw_data) != count * dtype.itemsize:
            return None
        return np.frombuffer(t.raw_data, dtype=dtype).reshape(shape)
    typed = t.float_data if dtype == np.float32 else t.double_data if dtype == np.float64 else ()
    if len(typed) == count and count:  # values in the typed field (onnx.helper.make_tensor's default)
        return np.asarray(typed, dtype=dtype).reshape(shape)
    ext = {e.key: e.value for e in t.external_data}
    if not ext.get("location"):
        return None
    path = external_path(folder, ext["location"], also)
    if path is None or not path.is_file():
        return None
    try:
        offset = int(ext.get("offset", 0))
        if path.stat().st_size < offset + count * dtype.itemsize:
            return None
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    except (OSError, ValueError):
        return None


def _unnamed(name: str) -> bool:
    """An initializer the exporter made (constant folding: ``onnx::MatMul_1067``), not a module's parameter
    (``lm_head.weight``): only a made one can be a copy of another parameter."""
    return name.startswith("onnx::") or "." not in name


def tied_copies(graph, inits: dict, trainable: set[str], folder: Path, also: Path | None = None,
                views: dict | None = None) -> tuple[dict[str, str], list[tuple]]:
    """(copy -> embedding) for the output-layer copies that equal a transposed embedding matrix, and the pairs
    whose values could not be read (copy, its dims, embedding, its dims). A training-mode export (no constant
    folding) writes the tie as ``MatMul(h, Transpose(wte.weight))``: that Transpose's output (a parameter view,
    ``views``: :func:`.onnx_fold.parameter_views`) is the copy, tied by construction."""
    import numpy as np

    embeddings = {n.input[0] for n in graph.node if n.op_type == "Gather" and n.input and n.input[0] in trainable}
    tied: dict[str, str] = {}
    for n in graph.node:
        if n.op_type != "Transpose" or not n.input or n.input[0] not in embeddings or not n.output \
                or n.output[0] not in (views or {}) or len(inits[n.input[0]].dims) != 2:
            continue
        perm = [a.ints for a in n.attribute if a.name == "perm"]
        if perm and list(perm[0]) != [1, 0]:
            continue
        if any(m.op_type in ("MatMul", "Gemm") and m.input[1:2] == [n.output[0]] for m in graph.node):
            tied[n.output[0]] = n.input[0]
    by_shape: dict[tuple, list[str]] = {}
    for name in embeddings:
        dims = tuple(int(d) for d in inits[name].dims)
        if len(dims) == 2:
            by_shape.setdefault(dims, []).append(name)
    unread: list[tuple] = []
    for name in sorted(trainable):
        t = inits.get(name)
        if t is None or name in embeddings or len(t.dims) != 2 or not _unnamed(name):
            continue
        d, v = (int(x) for x in t.dims)
        if d == v:  # a square layer (c_proj [d, d] beside a [d, d] position table) is no output layer
            continue
        for emb in by_shape.get((v, d), []):
            if inits[emb].data_type != t.data_type:
                continue
            a, b = _array(t, folder, also), _array(inits[emb], folder, also)
            if a is None or b is None:
                unread.append((name, [d, v], emb, [v, d]))
                continue
            cols = sorted({int(j) for j in np.linspace(0, v - 1, num=min(SAMPLES, v))})
            if all(np.array_equal(np.asarray(a[:, j]), np.asarray(b[j, :])) for j in cols):
                tied[name] = emb
                break
    return tied, unread
