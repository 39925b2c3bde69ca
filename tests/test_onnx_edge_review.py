"""ONNX frontend edge review: a softmax / layer-norm axis outside the input's rank (the rank of the input in its own
scope), constants and tensors of the same name in sibling subgraphs, the polarity of causal masks (masked_fill(~tril)
and friends), and the message for external data that a link takes out of the model's folder. Expected values are
hand counts."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from wattlint.cli import main
from wattlint.frontends.onnx import analyze_onnx
from wattlint.types import InputError, Phase

F, I64, B_ = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _vi(name, dims, t=F):
    return helper.make_tensor_value_info(name, t, dims)


def _const(name, value, dtype=np.int64):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype=dtype), name))


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _save(tmp_path, model, name="m.onnx"):
    p = tmp_path / name
    onnx.save(model, str(p))
    return p


def _fwd(g, kind=None):
    return [r for r in g.records if r.phase is Phase.FORWARD and (kind is None or r.kind.value == kind)]


def _cli(path, *extra):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["analyze", str(path), "--format", "json", *extra])
    return code, err.getvalue()


# ---- 1. an axis outside the input's rank --------------------------------------------------------------------------

def _axis_model(tmp_path, op, axis):
    """x [2, 8] @ W [8, 8] -> ``op`` (axis) -> z: the node 'sm' takes a rank-2 input, valid axes -2..1."""
    w = numpy_helper.from_array(np.ones((8, 8), np.float32), "W")
    inits, extra = [w], []
    if op == "LayerNormalization":
        inits.append(numpy_helper.from_array(np.ones((8,), np.float32), "gamma"))
        extra = ["gamma"]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"),
             helper.make_node(op, ["y", *extra], ["z"], name="sm", axis=axis)]
    return _save(tmp_path, _model(nodes, [_vi("x", [2, 8])], [_vi("z", None)], inits), f"{op}_{axis}.onnx")


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax", "LayerNormalization"])
@pytest.mark.parametrize("axis", [2, 5, -3])
def test_axis_outside_the_rank_is_refused(tmp_path, op, axis):
    """Review: a Softmax (LogSoftmax, Hardmax) whose axis is outside its input's rank was priced (exit 0): onnx's
    strict shape inference reports it ("'axis' must be in [-2 , 1]"), but the frontend retries leniently and the
    message matched none of the words it refuses on; LayerNormalization's axis is not checked by onnx at all (an
    axis past the rank normalized over one element). Now refused as a malformed node: exit 2, one line naming it."""
    p = _axis_model(tmp_path, op, axis)
    with pytest.raises(InputError, match=rf"node 'sm' \({op}\): axis {axis} is out of range for its rank-2 input "
                                         rf"\[2, 8\] \(valid: -2 to 1\)"):
        analyze_onnx(p)
    code, err = _cli(p)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wattlint: error:") and "'sm'" in lines[0], err


@pytest.mark.parametrize("axis", [-2, -1, 0, 1])
def test_axis_inside_the_rank_is_priced(tmp_path, axis):
    """Every valid axis of a rank-2 input is still priced (the same softmax whatever the axis)."""
    g = analyze_onnx(_axis_model(tmp_path, "Softmax", axis))
    assert [r.op for r in _fwd(g, "softmax") if not r.op.startswith("loss::")] == ["onnx::Softmax"]  # (the assumed
    # cross-entropy loss runs its own log_softmax)


def test_axis_of_the_softmax_of_an_attention_pattern_is_checked(tmp_path):
    """The Softmax of a MatMul-Softmax-MatMul pattern is priced by the fused attention, not by the softmax handler:
    its axis is checked all the same (scores [1, 2, 8, 8]: valid axes -4..3)."""
    nodes = [helper.make_node("MatMul", ["q", "kt"], ["s"], name="qk"),
             helper.make_node("Softmax", ["s"], ["p"], name="attn_softmax", axis=4),
             helper.make_node("MatMul", ["p", "v"], ["o"], name="pv")]
    m = _model(nodes, [_vi("q", [1, 2, 8, 4]), _vi("kt", [1, 2, 4, 8]), _vi("v", [1, 2, 8, 4])], [_vi("o", None)])
    with pytest.raises(InputError, match=r"node 'attn_softmax' \(Softmax\): axis 4 is out of range for its rank-4"):
        analyze_onnx(_save(tmp_path, m))



def _sibling_rank_model(rank3, flag, axis=2, inner_axes=False, axis2=1):
    """If whose two branches each define an ``s``: the ``rank3`` branch ('then' or 'else') Unsqueeze(x @ W, 0)
    [1, 4, 64] -> Softmax(axis); the other x @ W [4, 64] -> Softmax(axis2). ``flag``: None, a graph input (both
    branches dry-run); True / False, a Constant (only that branch walked)."""
    def branch(tag, deep):
        out = "y_" + tag
        if deep:
            ax = "ax0"
            nodes = [helper.make_node("MatMul", ["x", "W"], ["t_" + tag])]
            if inner_axes:  # the branch's own Constant: onnx infers [1, 4, 64] (the outer 'ax0' it does not read)
                ax = "ax_" + tag
                nodes.append(_const(ax, [0]))
            nodes += [helper.make_node("Unsqueeze", ["t_" + tag, ax], ["s"]),
                      helper.make_node("Softmax", ["s"], ["p"], name="sm_" + tag, axis=axis),
                      helper.make_node("Squeeze", ["p", ax], [out])]
        else:
            nodes = [helper.make_node("MatMul", ["x", "W"], ["s"]),
                     helper.make_node("Softmax", ["s"], ["p"], name="sm_" + tag, axis=axis2),
                     helper.make_node("Identity", ["p"], [out])]
        return helper.make_graph(nodes, tag, [], [_vi(out, [4, 64])])

    then, els = branch("then", rank3 == "then"), branch("else", rank3 == "else")
    nodes = [helper.make_node("If", ["flag"], ["y"], name="branch", then_branch=then, else_branch=els)]
    inputs = [_vi("x", [4, 64])]
    if flag is None:
        inputs.append(_vi("flag", [], B_))
    else:
        nodes.insert(0, _const("flag", flag, np.bool_))
    inits = [_w64(), numpy_helper.from_array(np.array([0], np.int64), "ax0")]
    return _model(nodes, inputs, [_vi("y", [4, 64])], inits)


@pytest.mark.parametrize("rank3", ["then", "else"])
@pytest.mark.parametrize("flag", [None, True, False])
@pytest.mark.parametrize("inner_axes", [False, True])
def test_axis_checked_against_the_rank_of_its_own_branch(tmp_path, rank3, flag, inner_axes):
    """Review: the axis check read the input's rank from the flat types table, which holds one ``s`` for the whole
    model (the first declared with a shape): an If whose branches each define an ``s``, rank 3 in one and rank 2 in
    the other (valid ONNX: sibling scopes), had its valid Softmax(axis=2) on the rank-3 ``s`` refused as "axis 2 is
    out of range for its rank-2 input [4, 64]" (exit 2). Types are now looked up by scope, innermost first, as
    constants are: each branch's nodes see its own ``s`` (never the other branch's), whichever branch comes first
    and whether one (a constant condition) or both (dry runs) are walked."""
    m = _sibling_rank_model(rank3, flag, inner_axes=inner_axes)
    onnx.checker.check_model(m, full_check=True)
    p = _save(tmp_path, m)
    g = analyze_onnx(p)
    assert sum(r.flops for r in _fwd(g) if r.op == "onnx::MatMul") == MM
    sm = [r for r in _fwd(g) if r.op == "onnx::Softmax"]
    assert len(sm) == 1
    walked = ("then" if flag else "else") if flag is not None else None
    if walked is None and inner_axes:
        walked = "then"  # both branches priced alike: the first of the dry runs is kept
    if walked == rank3:
        # its own [1, 4, 64] where onnx infers it in the branch; unknown where the Unsqueeze's axes are the main
        # graph's initializer (onnx does not read it inside a subgraph): unpriced, never the other branch's [4, 64]
        assert sm[0].shapes == (((1, 4, 64),) if inner_axes else ())
    elif walked is not None:
        assert sm[0].shapes == ((4, 64),)
    code, err = _cli(p)
    assert code == 0, err


@pytest.mark.parametrize("rank3", ["then", "else"])
@pytest.mark.parametrize("bad", ["rank3", "rank2"])
def test_axis_out_of_range_in_its_own_branch_still_refused(tmp_path, rank3, bad):
    """The check itself stays, by each branch's own rank: Softmax(axis=3) on the rank-3 ``s`` (valid -3..2), or
    Softmax(axis=2) on the rank-2 ``s`` (valid -2..1; it passed where the flat table held the other branch's
    rank-3 ``s``), is refused with its own rank and shape."""
    if bad == "rank3":
        m, node, axis, r, shape = _sibling_rank_model(rank3, None, axis=3, inner_axes=True), rank3, 3, 3, r"\[1, 4, 64\]"
    else:
        other = "else" if rank3 == "then" else "then"
        m, node, axis, r, shape = _sibling_rank_model(rank3, None, inner_axes=True, axis2=2), other, 2, 2, r"\[4, 64\]"
    p = _save(tmp_path, m)
    with pytest.raises(InputError, match=rf"node 'sm_{node}' \(Softmax\): axis {axis} is out of range for its "
                                         rf"rank-{r} input {shape} \(valid: -{r} to {r - 1}\)"):
        analyze_onnx(p)
    code, err = _cli(p)
    assert code == 2, err

# ---- 2. constants of the same name in sibling subgraphs ---------------------------------------------------------

MM = 2 * 4 * 64 * 64  # x [4, 64] @ W [64, 64]: one iteration of the innermost loop body


def _mm_body(tag):
    """Loop body: x <- x @ W (W from the main graph)."""
    return helper.make_graph(
        [helper.make_node("MatMul", ["x_in_" + tag, "W"], ["x_out_" + tag], name="mm_" + tag),
         helper.make_node("Identity", ["cond_in_" + tag], ["cond_out_" + tag])],
        "body_" + tag, [_vi("i_" + tag, [], I64), _vi("cond_in_" + tag, [], B_), _vi("x_in_" + tag, [4, 64])],
        [_vi("cond_out_" + tag, [], B_), _vi("x_out_" + tag, [4, 64])])


def _counted_loop(tag, trips, x):
    """Nodes that define a Constant named 'c' (= trips) and run the MatMul body 'c' times."""
    return [_const("c", trips), _const("t", True, np.bool_),
            helper.make_node("Loop", ["c", "t", x], ["y_" + tag], name="inner_" + tag, body=_mm_body(tag))]


def _w64():
    return numpy_helper.from_array(np.full((64, 64), 0.01, np.float32), "W")


def _if_model(a, b):
    """If(flag) (a graph input: not a constant) whose two branches each define their own Constant 'c'."""
    then = helper.make_graph(_counted_loop("a", a, "x"), "then", [], [_vi("y_a", [4, 64])])
    els = helper.make_graph(_counted_loop("b", b, "x"), "else", [], [_vi("y_b", [4, 64])])
    nodes = [helper.make_node("If", ["flag"], ["y"], name="branch", then_branch=then, else_branch=els)]
    m = _model(nodes, [_vi("x", [4, 64]), _vi("flag", [], B_)], [_vi("y", [4, 64])], [_w64()])
    onnx.checker.check_model(m, full_check=True)  # the same name in two sibling scopes is valid ONNX
    return m


def _two_loops_model(a, b):
    """Two Loops of one trip side by side, each body defining its own Constant 'c' for its inner Loop."""
    def outer(tag, trips):
        return helper.make_graph(
            _counted_loop(tag, trips, "xo_" + tag) + [helper.make_node("Identity", ["ci_" + tag], ["co_" + tag])],
            "outer_" + tag, [_vi("io_" + tag, [], I64), _vi("ci_" + tag, [], B_), _vi("xo_" + tag, [4, 64])],
            [_vi("co_" + tag, [], B_), _vi("y_" + tag, [4, 64])])

    nodes = [_const("one", 1), _const("tt", True, np.bool_),
             helper.make_node("Loop", ["one", "tt", "x"], ["ya"], name="outerA", body=outer("a", a)),
             helper.make_node("Loop", ["one", "tt", "ya"], ["y"], name="outerB", body=outer("b", b))]
    m = _model(nodes, [_vi("x", [4, 64])], [_vi("y", [4, 64])], [_w64()])
    onnx.checker.check_model(m, full_check=True)
    return m


@pytest.mark.parametrize("a,b", [(3, 50), (50, 3)])
def test_sibling_loop_bodies_read_their_own_constant(tmp_path, a, b):
    """Review: constants were cached by name across the whole model, so the second of two sibling subgraphs that
    each define a Constant 'c' read the other's value: with trip counts 3 and 50 the inner loops were priced
    3 + 3 or 50 + 50 iterations, by graph order. Each body reads its own: 3 + 50 = 53 iterations of the MatMul."""
    g = analyze_onnx(_save(tmp_path, _two_loops_model(a, b)))
    mm = [r for r in _fwd(g) if r.op == "onnx::MatMul"]
    assert sum(r.flops for r in mm) == (a + b) * MM


@pytest.mark.parametrize("a,b", [(2, 100), (100, 2)])
def test_if_branches_read_their_own_constant(tmp_path, a, b):
    """The same in the two branches of an If whose condition is not known: the costlier branch (100 iterations)
    is counted, whichever branch it is (before: 2 x MM when the then-branch held the 100)."""
    g = analyze_onnx(_save(tmp_path, _if_model(a, b)))
    mm = [r for r in _fwd(g) if r.op == "onnx::MatMul"]
    assert sum(r.flops for r in mm) == max(a, b) * MM
    assert any("the costlier branch is counted" in x for x in g.assumptions)


def test_outer_constant_still_read_inside_a_branch(tmp_path):
    """A trip count defined in the main graph and read inside an If branch (an enclosing scope) is still found."""
    then = helper.make_graph([helper.make_node("Loop", ["n", "t", "x"], ["y_a"], name="inner_a", body=_mm_body("a"))],
                             "then", [], [_vi("y_a", [4, 64])])
    els = helper.make_graph([helper.make_node("Identity", ["x"], ["y_b"])], "else", [], [_vi("y_b", [4, 64])])
    nodes = [_const("n", 7), _const("t", True, np.bool_), _const("flag", True, np.bool_),
             helper.make_node("If", ["flag"], ["y"], name="branch", then_branch=then, else_branch=els)]
    g = analyze_onnx(_save(tmp_path, _model(nodes, [_vi("x", [4, 64])], [_vi("y", [4, 64])], [_w64()])))
    assert sum(r.flops for r in _fwd(g) if r.op == "onnx::MatMul") == 7 * MM



def _sibling_loops_model(kind, shared):
    """Two one-trip Loops side by side whose bodies both define a tensor 's' (``shared``) or 's_a' / 's_b':
    'shape': A's is a Shape, B's a MatMul output fed to a Softmax; 'grad': A's is x @ W (needs a gradient), B's
    Relu(x) fed to a MatMul; 'saved': both are Tanh(x @ W), the output Tanh saves for its backward."""
    def body(tag, nodes, x):
        return helper.make_graph(nodes + [helper.make_node("Identity", ["c_" + tag], ["co_" + tag])], "body_" + tag,
                                 [_vi("i_" + tag, [], I64), _vi("c_" + tag, [], B_), _vi(x, [4, 64])],
                                 [_vi("co_" + tag, [], B_), _vi("y_" + tag, [4, 64])])

    sa, sb = ("s", "s") if shared else ("s_a", "s_b")
    if kind == "shape":
        a = [helper.make_node("Shape", ["xa"], [sa]), helper.make_node("Identity", ["xa"], ["y_a"])]
        b = [helper.make_node("MatMul", ["xb", "W"], [sb]), helper.make_node("Softmax", [sb], ["y_b"], axis=-1)]
    elif kind == "grad":
        a = [helper.make_node("MatMul", ["xa", "W"], [sa]), helper.make_node("Identity", [sa], ["y_a"])]
        b = [helper.make_node("Relu", ["xb"], [sb]), helper.make_node("MatMul", [sb, "W"], ["y_b"])]
    else:
        a = [helper.make_node("MatMul", ["xa", "W"], ["t_a"]), helper.make_node("Tanh", ["t_a"], [sa]),
             helper.make_node("Identity", [sa], ["y_a"])]
        b = [helper.make_node("MatMul", ["xb", "W"], ["t_b"]), helper.make_node("Tanh", ["t_b"], [sb]),
             helper.make_node("Identity", [sb], ["y_b"])]
    nodes = [_const("one", 1), _const("tt", True, np.bool_),
             helper.make_node("Loop", ["one", "tt", "x"], ["ya"], name="A", body=body("a", a, "xa")),
             helper.make_node("Loop", ["one", "tt", "x2"], ["yb"], name="B", body=body("b", b, "xb"))]
    m = _model(nodes, [_vi("x", [4, 64]), _vi("x2", [4, 64])], [_vi("yb", [4, 64]), _vi("ya", [4, 64])], [_w64()])
    onnx.checker.check_model(m, full_check=True)
    return m


@pytest.mark.parametrize("kind", ["shape", "grad", "saved"])
def test_sibling_loop_bodies_keep_their_own_tensor_of_a_name(tmp_path, kind):
    """Review (beside the axis check): what the walk knew of a tensor by name leaked into a sibling subgraph's
    tensor of the same name: after A's 's = Shape(x)', B's Softmax(s) was taken for a shape computation (not
    priced, nor its backward); A's 's' needing a gradient gave B's 's' a second gradient use (an accumulation
    that is not there); the two bodies' saved 's' were one in the activation memory. Naming them 's_a' / 's_b'
    changes nothing now."""
    def run(shared):
        g = analyze_onnx(_save(tmp_path, _sibling_loops_model(kind, shared), f"{kind}_{shared}.onnx"))
        return [(r.phase, r.op, r.shapes, r.flops) for r in g.records], g.extra["activation_bytes"]

    assert run(True) == run(False)


# ---- 3. causal masks: which triangle is masked ------------------------------------------------------------------

BH, HD = 2, 8  # heads, head dim (batch 1)


def _attn_flops(s, causal):
    pairs = s * (s + 1) // 2 if causal else s * s
    return BH * pairs * (2 * HD + 2 * HD) + 5 * BH * pairs  # QK^T and PV GEMMs + softmax work, per pair


def _mask_model(tmp_path, s, style):
    """Scores MatMul(q [1, 2, S, 8], k^T) masked by ``style`` -> Softmax -> MatMul(P, v): how torch exports
    ``scores.masked_fill(mask, -inf)`` (Where(mask, -inf, scores): the mask marks the BLOCKED positions),
    ``torch.where(mask, scores, -inf)`` (the ALLOWED ones) and an additive mask. The [S, S] mask is built at run
    time from S: ConstantOfShape(true / -inf) -> Trilu(upper, k) [-> Not]."""
    kind, upper, k, neg = style
    n = [helper.make_node("MatMul", ["q", "kt"], ["scores"]), helper.make_node("Shape", ["q"], ["qs"]),
         _const("two", 2), helper.make_node("Gather", ["qs", "two"], ["len"], axis=0), _const("ax0", [0]),
         helper.make_node("Unsqueeze", ["len", "ax0"], ["len1"]),
         helper.make_node("Concat", ["len1", "len1"], ["ss"], axis=0), _const("kk", k),
         _const("ninf", -np.inf, np.float32)]
    fill = numpy_helper.from_array(np.array([-np.inf if kind == "add" else True],
                                            np.float32 if kind == "add" else np.bool_))
    n.append(helper.make_node("ConstantOfShape", ["ss"], ["full"], value=fill))
    n.append(helper.make_node("Trilu", ["full", "kk"], ["tri"], upper=upper))
    mask = "tri"
    if neg:
        n.append(helper.make_node("Not", ["tri"], ["ntri"]))
        mask = "ntri"
    if kind == "fill":  # masked_fill(mask, -inf)
        n.append(helper.make_node("Where", [mask, "ninf", "scores"], ["masked"]))
    elif kind == "where":  # torch.where(mask, scores, -inf)
        n.append(helper.make_node("Where", [mask, "scores", "ninf"], ["masked"]))
    else:  # scores + mask
        n.append(helper.make_node("Add", ["scores", mask], ["masked"]))
    n += [helper.make_node("Softmax", ["masked"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["o"])]
    m = _model(n, [_vi("q", [1, BH, s, HD]), _vi("kt", [1, BH, HD, s]), _vi("v", [1, BH, s, HD])], [_vi("o", None)])
    return _save(tmp_path, m, f"mask_{s}.onnx")


# (kind, upper, k, Not) -> causal: the allowed positions must be exactly the lower triangle, diagonal included
MASKS = {
    "masked_fill(~tril)": (("fill", 0, 0, True), True),
    "masked_fill(triu(1))": (("fill", 1, 1, False), True),
    "masked_fill(tril)": (("fill", 0, 0, False), False),  # blocks the lower triangle: the opposite of causal
    "masked_fill(~triu(1))": (("fill", 1, 1, True), False),  # ~triu(1) = tril: blocks the lower triangle
    "masked_fill(triu(0))": (("fill", 1, 0, False), False),  # blocks the diagonal too
    "where(tril)": (("where", 0, 0, False), True),
    "where(triu)": (("where", 1, 0, False), False),
    "where(~triu(1))": (("where", 1, 1, True), True),
    "+ triu(-inf, 1)": (("add", 1, 1, False), True),  # the Hugging Face additive mask
    "+ tril(-inf, -1)": (("add", 0, -1, False), False),  # blocks below the diagonal
}


@pytest.mark.parametrize("name", list(MASKS))
@pytest.mark.parametrize("s", [16, 8192])
def test_mask_polarity_decides_causal(tmp_path, name, s):
    """Review: the causal check read every mask as "true = allowed" and, from its ancestry, called any Trilu(lower)
    causal and no Trilu(upper): masked_fill(triu(ones, 1), -inf) (causal) and the additive triu(-inf, 1) were
    priced non-causal, masked_fill(tril(ones), -inf) and + tril(-inf, -1) (the lower triangle blocked) causal; only
    ~tril came out right, by accident. Now Trilu is evaluated (whole, or at sampled rows and columns past 2**24
    elements: S = 8192) and a masked_fill condition is read as the blocked positions. Forward attention FLOPs:
    pairs x (2 x 8 + 2 x 8) x 2 heads + 5 x pairs x 2 heads, pairs = S(S+1)/2 causal, S^2 otherwise."""
    style, causal = MASKS[name]
    g = analyze_onnx(_mask_model(tmp_path, s, style))
    assert any("1 attention patterns" in a and f"{int(causal)} causal" in a for a in g.assumptions), g.assumptions
    assert [r.flops for r in _fwd(g, "attention") if r.flops] == [_attn_flops(s, causal)]


def test_padding_masked_fill_stays_non_causal(tmp_path):
    """A padding mask (ids == 0, from an input) as masked_fill's condition says nothing of causality: non-causal
    (read with all-ones ids it blocks nothing: the whole square is allowed)."""
    s = 16
    n = [helper.make_node("MatMul", ["q", "kt"], ["scores"]), _const("zero", 0), _const("axes", [1, 2]),
         _const("ninf", -np.inf, np.float32), helper.make_node("Equal", ["ids", "zero"], ["pad"]),
         helper.make_node("Unsqueeze", ["pad", "axes"], ["pad4"]),  # [1, 1, 1, S]
         helper.make_node("Where", ["pad4", "ninf", "scores"], ["masked"]),
         helper.make_node("Softmax", ["masked"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["o"])]
    m = _model(n, [_vi("q", [1, BH, s, HD]), _vi("kt", [1, BH, HD, s]), _vi("v", [1, BH, s, HD]),
                   _vi("ids", [1, s], I64)], [_vi("o", None)])
    g = analyze_onnx(_save(tmp_path, m))
    assert any("1 attention patterns" in a and "0 causal" in a for a in g.assumptions), g.assumptions
    assert [r.flops for r in _fwd(g, "attention") if r.flops] == [_attn_flops(s, False)]


def test_constant_mask_polarity(tmp_path):
    """A mask folded to a constant (a static export of masked_fill(tril(ones))): its value blocks the lower
    triangle, not causal (before: its value read as the allowed positions, causal); the same constant in
    torch.where(mask, scores, -inf) allows the lower triangle: causal."""
    s = 16
    tril = numpy_helper.from_array(np.tril(np.ones((s, s), np.bool_)), "tril_buf")
    for kind, causal in (("fill", False), ("where", True)):
        ins = ["tril_buf", "ninf", "scores"] if kind == "fill" else ["tril_buf", "scores", "ninf"]
        n = [helper.make_node("MatMul", ["q", "kt"], ["scores"]), _const("ninf", -np.inf, np.float32),
             helper.make_node("Where", ins, ["masked"]), helper.make_node("Softmax", ["masked"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["o"])]
        m = _model(n, [_vi("q", [1, BH, s, HD]), _vi("kt", [1, BH, HD, s]), _vi("v", [1, BH, s, HD])],
                   [_vi("o", None)], [tril])
        g = analyze_onnx(_save(tmp_path, m, f"{kind}.onnx"))
        assert [r.flops for r in _fwd(g, "attention") if r.flops] == [_attn_flops(s, causal)], kind


@pytest.mark.parametrize("upper,k,neg,causal", [(0, 0, False, False), (1, 1, False, True), (0, 0, True, True),
                                                (1, 1, True, False)])
def test_mask_that_cannot_be_evaluated_is_read_from_its_ancestry(tmp_path, upper, k, neg, causal):
    """A masked_fill condition built from a float input (no stand-in value: the mask is not evaluated) is judged
    from its ancestry, its polarity followed through Not: masked_fill(tril(m)) blocks the lower triangle (before:
    causal), masked_fill(triu(m, 1)) the strict upper one (before: non-causal)."""
    s = 16
    n = [helper.make_node("MatMul", ["q", "kt"], ["scores"]), helper.make_node("Cast", ["m"], ["mb"], to=B_),
         _const("kk", k), helper.make_node("Trilu", ["mb", "kk"], ["tri"], upper=upper),
         _const("ninf", -np.inf, np.float32)]
    mask = "tri"
    if neg:
        n.append(helper.make_node("Not", ["tri"], ["ntri"]))
        mask = "ntri"
    n += [helper.make_node("Where", [mask, "ninf", "scores"], ["masked"]),
          helper.make_node("Softmax", ["masked"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["o"])]
    m = _model(n, [_vi("q", [1, BH, s, HD]), _vi("kt", [1, BH, HD, s]), _vi("v", [1, BH, s, HD]),
                   _vi("m", [s, s])], [_vi("o", None)])
    g = analyze_onnx(_save(tmp_path, m))
    assert [r.flops for r in _fwd(g, "attention") if r.flops] == [_attn_flops(s, causal)]


def _gpt_block(tmp_path, variant):
    """A nanoGPT-style attention block (2 heads of 16, a causal buffer of 64 positions) exported by torch."""
    torch = pytest.importorskip("torch")
    import math
    import warnings

    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, d=32, h=2, vocab=50):
            super().__init__()
            self.h = h
            self.emb = nn.Embedding(vocab, d)
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.head = nn.Linear(d, vocab)
            self.register_buffer("bias", torch.tril(torch.ones(64, 64)).view(1, 1, 64, 64))  # nanoGPT's
            self.register_buffer("allow", torch.tril(torch.ones(64, 64, dtype=torch.bool)))

        def forward(self, idx):
            x = self.emb(idx)
            b, t, c = x.shape
            q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in self.qkv(x).split(c, dim=2))
            att = (q @ k.transpose(-2, -1)) / math.sqrt(c // self.h)
            if variant == "nanogpt":  # masked_fill(bias == 0)
                att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
            elif variant == "not_buffer":  # masked_fill(~allow)
                att = att.masked_fill(~self.allow[:t, :t], float("-inf"))
            elif variant == "not_tril":  # masked_fill(~tril(ones(T, T)))
                att = att.masked_fill(~torch.tril(torch.ones(t, t, dtype=torch.bool)), float("-inf"))
            elif variant == "buffer":  # masked_fill(allow): the lower triangle blocked
                att = att.masked_fill(self.allow[:t, :t], float("-inf"))
            elif variant in ("hf_fill", "hf_sum"):  # transformers 4.36-4.4x's eager 4-D mask: additive causal + padding
                mn = torch.finfo(att.dtype).min
                pos = torch.arange(t)
                cm = torch.full((t, t), mn).masked_fill(pos < (pos + 1).view(t, 1), 0)[None, None]
                pad = (idx == 0)[:, None, None, :]
                att = att + (cm.masked_fill(pad, mn) if variant == "hf_fill" else cm + pad.to(att.dtype) * mn)
            else:  # padding only
                att = att.masked_fill((idx == 0)[:, None, None, :], float("-inf"))
            y = (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, c)
            return self.head(self.proj(y))

    p = tmp_path / f"{variant}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Block().eval(), (torch.zeros(2, 16, dtype=torch.long),), str(p), input_names=["idx"],
                          output_names=["logits"], dynamic_axes={"idx": {0: "b", 1: "t"}}, opset_version=17,
                          dynamo=False)
    return p


@pytest.mark.parametrize("variant,causal", [("nanogpt", True), ("not_buffer", True), ("not_tril", True),
                                            ("buffer", False), ("padding", False), ("hf_fill", True),
                                            ("hf_sum", True)])
def test_torch_exported_masked_fill_masks(tmp_path, variant, causal):
    """Review: a GPT block masking its scores with masked_fill over a causal buffer (nanoGPT's bias == 0, or
    ~allow) was priced non-causal, twice its attention FLOPs: the exporter's Slice -> Not / Equal chain is folded
    to a constant whose value was read as the ALLOWED positions. At batch 2, seq 48: 2 x 2 heads x 1176 pairs x
    (2 x 16 + 2 x 16) + 5 x 2 x 2 x 1176 forward FLOPs causal (pairs 48 x 49 / 2), 2304 pairs otherwise.
    Review 2026-12-07: transformers 4.36-4.4x's eager mask, causal.masked_fill(padding, min) (hf_fill), was never
    re-read with all-ones ids (the scale and fill constants beside it counted as an evaluated mask): non-causal."""
    g = analyze_onnx(_gpt_block(tmp_path, variant), batch_size=2, seq_len=48)
    pairs = 48 * 49 // 2 if causal else 48 * 48
    assert any("1 attention patterns" in a and f"{int(causal)} causal" in a for a in g.assumptions), g.assumptions
    assert [r.flops for r in _fwd(g, "attention") if r.flops] == [2 * 2 * pairs * 64 + 5 * 2 * 2 * pairs]


# ---- 4. external data that a link takes out of the model's folder -----------------------------------------------

def test_dvc_style_linked_data_refusal_says_why(tmp_path):
    """Review: a DVC-style workspace (ws/model.onnx and ws/model.onnx.data are links into different cache folders)
    was refused with "points its external data outside the model's folder ('model.onnx.data')", which reads as
    nonsense for a file named beside the model. The rule stays (a link is followed only inside the model's folder
    or the folder the model file resolves to); the message now says where the link resolves and what to do."""
    w = numpy_helper.from_array(np.ones((8, 8), np.float32), "W")
    m = _model([helper.make_node("MatMul", ["x", "W"], ["y"])], [_vi("x", [2, 8])], [_vi("y", [2, 8])], [w])
    cache = tmp_path / "cache"
    (cache / "ab").mkdir(parents=True)
    (cache / "cd").mkdir()
    onnx.save(m, str(cache / "ab" / "tmp.onnx"), save_as_external_data=True, location="model.onnx.data",
              size_threshold=0)
    os.replace(cache / "ab" / "tmp.onnx", cache / "ab" / "1234")
    os.replace(cache / "ab" / "model.onnx.data", cache / "cd" / "5678")
    ws = tmp_path / "ws"
    ws.mkdir()
    os.symlink("../cache/ab/1234", ws / "model.onnx")
    os.symlink("../cache/cd/5678", ws / "model.onnx.data")
    with pytest.raises(InputError) as e:
        analyze_onnx(ws / "model.onnx")
    msg = str(e.value)
    assert "initializer 'W' points its external data outside the model's folder ('model.onnx.data')" in msg
    assert f"resolves through a link to {(cache / 'cd' / '5678').resolve()}" in msg
    assert f"outside the model's folder {ws.resolve()}" in msg and str((cache / "ab").resolve()) in msg
    assert "copy of the data file" in msg and "onnx.save" in msg
    code, err = _cli(ws / "model.onnx")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "resolves through a link" in err, err
    # the data beside the model (a copy in place of the link): read
    os.unlink(ws / "model.onnx.data")
    (ws / "model.onnx.data").write_bytes((cache / "cd" / "5678").read_bytes())
    g = analyze_onnx(ws / "model.onnx")
    assert g.params == 64


@pytest.mark.parametrize("loc,why", [("../outside.data", "a step out of the folder through '..'"),
                                     ("/etc/passwd", "an absolute path")])
def test_path_refusals_say_why(tmp_path, loc, why):
    """The same message names the other reasons: a step out through '..', an absolute path."""
    w = numpy_helper.from_array(np.ones((8, 8), np.float32), "W")
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    e = w.external_data.add()
    e.key, e.value = "location", loc
    m = _model([helper.make_node("MatMul", ["x", "W"], ["y"])], [_vi("x", [2, 8])], [_vi("y", [2, 8])], [w])
    p = tmp_path / "m.onnx"
    p.write_bytes(m.SerializeToString())
    with pytest.raises(InputError, match=rf"outside the model's folder \('{loc}'\): {why}.*refusing to read it"):
        analyze_onnx(p)


# ---- 5. a sequence too long for onnx's shape inference -----------------------------------------------------------

def test_shape_inference_out_of_memory_says_why(tmp_path, monkeypatch):
    """Review: at --seq-len 1e7 onnx's shape inference with data propagation holds ~140 bytes per element of every
    integer vector of the sequence's length (a GPT-2 export: 5.5 GB); under a memory limit it failed with "shape
    inference failed: std::bad_alloc" after a second (lenient) try. Now one attempt, and the message says why and
    what to do. (The bad_alloc is simulated: onnx raises it as a MemoryError.)"""
    import onnx.shape_inference as si

    calls = []

    def oom(*a, **k):
        calls.append(k)
        raise MemoryError("std::bad_alloc")

    emb = numpy_helper.from_array(np.ones((16, 8), np.float32), "emb")
    m = _model([helper.make_node("Gather", ["emb", "ids"], ["h"])], [_vi("ids", ["batch", "seq"], I64)],
               [_vi("h", ["batch", "seq", 8])], [emb])
    p = _save(tmp_path, m)
    monkeypatch.setattr(si, "infer_shapes", oom)
    with pytest.raises(InputError, match=r"onnx shape inference ran out of memory at sequence length 10,000,000: .*"
                                         r"analyze a shorter --seq-len"):
        analyze_onnx(p, batch_size=1, seq_len=10_000_000)
    assert len(calls) == 1
