"""ONNX external data that is there but is no regular file: a named pipe (mkfifo) or a folder where a shape
tensor's data file, or an attention-mask buffer's data file, should be. It was called "missing"; now the message
says what it is ("a named pipe, not a file"), and a pipe is never opened (a read would block until a writer came).
The rest is as before: an unusable shape-value file is an error only when a shape needs it, and an unusable mask
data file is an assumption line (attention priced over all query / key pairs), never a refusal.

Expected values by hand: the mask graph is q [1, 2, 16, 8] with 2 heads of 8, S = 16; priced over all pairs
(not causal): pairs = 16 x 16 = 256, 256 x (2 x 8 + 2 x 8) x 2 heads + 5 x 256 x 2 heads = 16,384 + 2,560 =
18,944 forward attention FLOPs. The Reshape graph: [8, 8] -> [4, 16] @ [16, 4]: 2 x 4 x 16 x 4 = 512 FLOPs.
"""

from __future__ import annotations

import io
import json
import os
import threading
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from wattlint.cli import main
from wattlint.frontends.onnx import analyze_onnx
from wattlint.types import InputError, Phase

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need POSIX")

F = TensorProto.FLOAT
BH, HD, S = 2, 8, 16
FULL = 18_944  # forward attention FLOPs over all pairs at S = 16 (module docstring)


def _vi(name, dims, t=F):
    return helper.make_tensor_value_info(name, t, dims)


def _make(path: "os.PathLike", kind: str) -> None:
    """Put a named pipe or a folder at ``path`` (where a data file belongs)."""
    if kind == "pipe":
        os.mkfifo(path)
    else:
        os.mkdir(path)


def _guarded(fn, fifo=None, limit=30.0):
    """``fn()`` in a thread; when it has not returned within ``limit`` seconds it is blocked opening ``fifo``: open
    its write end (so the reader wakes up at end of file) and fail. Returns fn's result or raises its error."""
    box: dict = {}

    def run():
        try:
            box["ok"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["err"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit)
    if t.is_alive():
        if fifo is not None:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
            t.join(limit)
        pytest.fail(f"blocked for {limit} s: the named pipe {fifo} was opened for reading")
    if "err" in box:
        raise box["err"]
    return box["ok"]


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


# ---- a shape tensor's data file ---------------------------------------------------------------------------------

def _external(t, location):
    t.ClearField("int64_data")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", location


def _reshape_model(tmp_path, location, shape_external=True):
    """x [8, 8] -> Reshape to [4, 16] -> MatMul w [16, 4]; the Reshape target ``shape`` stored as external data
    ``location`` (``shape_external``), or inline with an unused small int64 tensor ``idx`` stored there instead
    (it is wanted as a possible shape value but no shape needs it)."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], vals=[4, 16])
    w = numpy_helper.from_array(np.ones((16, 4), np.float32), "w")
    inits = [shape, w]
    if shape_external:
        _external(shape, location)
    else:
        idx = helper.make_tensor("idx", TensorProto.INT64, [2], vals=[1, 2])
        _external(idx, location)
        inits.append(idx)
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"], name="/r/Reshape"),
             helper.make_node("MatMul", ["r", "w"], ["y"], name="/m/MatMul")]
    g = helper.make_graph(nodes, "g", [_vi("x", [8, 8])], [_vi("y", None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    p = tmp_path / "reshape.onnx"
    p.write_bytes(m.SerializeToString())
    return p


@pytest.mark.parametrize("kind,what", [("pipe", "a named pipe"), ("dir", "a directory")])
def test_shape_value_data_file_that_is_a_pipe_or_folder_is_said_not_missing(tmp_path, kind, what):
    """The bug: a shape tensor's data file there as a named pipe or a folder was 'missing'; now it is named for
    what it is, the pipe never opened."""
    p = _reshape_model(tmp_path, "reshape.onnx.data")
    data = tmp_path / "reshape.onnx.data"
    _make(data, kind)
    with pytest.raises(InputError) as e:
        _guarded(lambda: analyze_onnx(p), data if kind == "pipe" else None)
    msg = str(e.value)
    assert f"shape tensor 'shape' (input of /r/Reshape) is stored in external data 'reshape.onnx.data', which is " \
           f"{what}, not a file" in msg, msg
    assert "missing" not in msg and "--input" in msg, msg
    code, out, err = _guarded(lambda: _cli("analyze", p), data if kind == "pipe" else None)
    assert code == 2 and f"which is {what}, not a file" in err and "missing" not in err, (code, err)


def test_shape_value_data_file_missing_is_still_missing(tmp_path):
    p = _reshape_model(tmp_path, "reshape.onnx.data")
    with pytest.raises(InputError, match=r"'reshape.onnx.data', which is missing; put the data file beside"):
        analyze_onnx(p)


def test_shape_value_pipe_no_shape_needs_is_no_error_and_never_opened(tmp_path):
    """A small external int64 tensor no shape needs, its data file a named pipe: no error (as when it is missing),
    and the pipe is not opened."""
    p = _reshape_model(tmp_path, "idx.data", shape_external=False)
    data = tmp_path / "idx.data"
    _make(data, "pipe")
    g = _guarded(lambda: analyze_onnx(p), data)
    assert [r.flops for r in g.records if r.phase is Phase.FORWARD and r.op == "onnx::MatMul"] == [512]


# ---- an attention-mask buffer's data file ------------------------------------------------------------------------

def _mask_model(tmp_path, name="m.onnx"):
    """Scores MatMul(q, k^T) + a float buffer ``bias`` [1, 1, 64, 64] (triu(-inf, 1): causal) sliced to
    [:, :, :16, :16] -> Softmax -> MatMul(P, v); the buffer saved as external data ``<name>.data``."""
    def const(n, v):
        return helper.make_node("Constant", [], [n], value=numpy_helper.from_array(np.array(v, np.int64), n))

    t = 64
    buf = np.where(np.arange(t)[None, :] > np.arange(t)[:, None], -np.inf, 0).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["q", "kt"], ["scores"]), const("st", [0, 0]), const("en", [S, S]),
             const("axes", [2, 3]), helper.make_node("Slice", ["bias", "st", "en", "axes"], ["b"]),
             helper.make_node("Add", ["scores", "b"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["o"])]
    g = helper.make_graph(nodes, "g", [_vi("q", [1, BH, S, HD]), _vi("kt", [1, BH, HD, S]),
                                       _vi("v", [1, BH, S, HD])],
                          [_vi("o", None)], [numpy_helper.from_array(buf.reshape(1, 1, t, t), "bias")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    p = tmp_path / name
    onnx.save_model(m, str(p), save_as_external_data=True, location=name + ".data", size_threshold=0)
    return p, tmp_path / (name + ".data")


def _attention(g):
    return [r.flops for r in g.records if r.phase is Phase.FORWARD and r.kind.value == "attention" and r.flops]


@pytest.mark.parametrize("kind,what", [("pipe", "a named pipe"), ("dir", "a directory")])
def test_mask_data_file_that_is_a_pipe_or_folder_is_said_and_priced_over_all_pairs(tmp_path, kind, what):
    """The bug: the mask buffer's data file there as a named pipe or a folder was 'missing' in the assumption
    line; now it says what it is, the pipe is never opened, and the analysis still runs, priced over all pairs."""
    p, data = _mask_model(tmp_path)
    g = analyze_onnx(p)
    assert _attention(g) == [10_064]  # the data file read: causal
    data.unlink()
    _make(data, kind)
    fifo = data if kind == "pipe" else None
    g = _guarded(lambda: analyze_onnx(p), fifo)
    assert _attention(g) == [FULL]
    notes = [a for a in g.assumptions if "attention mask buffer 'bias'" in a]
    assert len(notes) == 1, g.assumptions
    assert "external data 'm.onnx.data' of attention mask buffer 'bias' [1, 1, 64, 64] is " \
           f"{what}, not a file" in notes[0], notes
    assert "missing" not in notes[0] and "all query / key pairs" in notes[0], notes
    code, out, err = _guarded(lambda: _cli("analyze", p, "--format", "json"), fifo)
    assert code == 0, (code, err)
    notes = [a for a in json.loads(out)["assumptions"] if "attention mask buffer 'bias'" in a]
    assert len(notes) == 1 and f"is {what}, not a file" in notes[0], notes


def test_mask_data_file_missing_is_still_missing(tmp_path):
    p, data = _mask_model(tmp_path)
    data.unlink()
    g = analyze_onnx(p)
    assert _attention(g) == [FULL]
    notes = [a for a in g.assumptions if "attention mask buffer 'bias'" in a]
    assert len(notes) == 1 and "is missing (looked for" in notes[0] and str(data) in notes[0], notes
