"""Training stacks: the traced PyTorch step as a Megatron-LM / DeepSpeed-style stack runs it (``--training-stack``).

The frontends trace a PyTorch module as PyTorch runs it under autocast: fp32 module parameters, a cast of every
weight and activation before each half-precision matmul (and back to fp32 for norms, softmax and reductions), and
each element-wise op of a norm or a gated activation as its own kernel over fp32 tensors. Large language models are
trained differently (Megatron-LM, Megatron-DeepSpeed, NeMo, Meta's own stack for Llama): the module parameters are
bf16 / fp16 with an fp32 master copy and fp32 gradient buffers held by the optimizer, so there are no per-matmul
casts and the residual stream is half precision, and the hot element-wise chains run as hand-fused kernels.

``megatron`` rewrites the traced records accordingly; every change is derived from the records themselves, no
factor is fitted:

1. **No autocast casts.** Float-to-float ``_to_copy`` records inside the model's modules in forward and backward
   (weight casts, activation casts, the weight-gradient casts back to fp32) are dropped: with half-precision
   parameters nothing is cast, and the weight gradients are accumulated straight into the fp32 gradient buffer
   (Megatron's gradient-accumulation fusion). Casts at the root module (the loss's fp32 logits) are kept: Megatron's
   cross-entropy runs on fp32 logits too.
2. **Half-precision activations.** Every other fp32 record of forward and backward inside the model's modules
   (element-wise, reductions, norms, copies, embedding) runs on half-precision tensors: its bytes are halved and it
   is typed bf16 / fp16. Matmuls traced in fp32 (a trace without autocast) are typed half as autocast would.
3. **Fused norms** (apex / Transformer Engine fused LayerNorm and RMSNorm): each run of consecutive records of one
   normalization module (``*LayerNorm``, ``*RMSNorm``, ``*GroupNorm``) in one phase becomes one norm kernel, priced
   like PyTorch's own fused norm (:func:`wattlint.costs.norm`: read x and the weight, write y and the statistics;
   backward reads dy, x, the weight and the statistics, writes dx and the weight gradients) in half precision.
4. **Fused gated activation** (Megatron's fused SwiGLU / GeGLU): an activation record (SiLU, GELU, ReLU) whose
   parent module multiplies its output element-wise by a tensor of the same shape (the gate) becomes one kernel:
   forward reads the two inputs and writes the product (2n read, n written); backward reads dy and the two inputs
   and writes both input gradients (3n read, 2n written). FLOPs are the merged records' FLOPs.
5. **Fused softmax** (Megatron's FusedScaleMaskSoftmax, for eager attention): the element-wise scale and mask
   records that feed a softmax in the same attention module become part of the softmax kernel (n read, n written);
   backward, the softmax gradient and the scale's gradient are one kernel (y and dy read, dx written). Flash /
   memory-efficient attention is one kernel already.
6. **Fused bias-dropout-add** (Megatron): a forward dropout followed by the residual add of the same shape in an
   enclosing module is one kernel (x and the residual read, the sum and the 1-byte mask written).
7. **Fused optimizer** (apex FusedAdam / Megatron's multi-tensor Adam): the optimizer records are replaced by one
   pass over the fp32 master weights, fp32 gradients and fp32 state (:func:`wattlint.costs.optimizer_step`), plus
   the copy of the updated master weights into the half-precision parameters (4 bytes read, 2 written each).

Unchanged: matmuls and attention kernels (half precision already), dropout without a following residual add,
residual adds without dropout (each its own kernel, now in half precision), the loss at the root module,
element-wise work not listed above (e.g. rotary embeddings: half precision, not fused), communication. Memory follows in :mod:`wattlint.memory`
(half-precision weights, an fp32 master copy, fp32 gradients under bf16, no cached weight casts).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Sequence

from . import costs as C
from .types import CostGraph, OpKind, OpRecord, Phase

STACKS = ("pytorch", "megatron")
DEFAULT_STACK = "pytorch"
HALF = ("fp16", "bf16", "fp8")
NORM_TYPE = re.compile(r"(LayerNorm|RMSNorm|RmsNorm|GroupNorm)$", re.IGNORECASE)
ACT_FWD = ("silu", "gelu", "relu")
ACT_BWD = ("silu_backward", "gelu_backward", "threshold_backward")
KEEP_DTYPE_KINDS = (OpKind.VIEW, OpKind.COMMUNICATION)
GEMM_FAMILY = (OpKind.MATMUL, OpKind.CONV, OpKind.ATTENTION, OpKind.RNN)
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")


def half_dtype(precision: str) -> str:
    return "float16" if precision == "fp16" else "bfloat16"


def _base(op: str) -> str:
    """``aten.silu_backward.default`` -> ``silu_backward``."""
    parts = op.split(".")
    return parts[1] if len(parts) >= 3 and parts[0] == "aten" else parts[0]


def _is_cast(r: OpRecord) -> bool:
    """A float-to-float dtype conversion (autocast's casts, ``.float()`` / ``.to(dtype)``): read != written bytes."""
    return (_base(r.op) == "_to_copy" and r.dtype in FLOAT_DTYPES and r.bytes_read != r.bytes_written
            and r.flops == 0)


def _numel(shape: Sequence[int]) -> int:
    return int(math.prod(int(d) for d in shape)) if shape else 1


def _retyped(r: OpRecord, half: str) -> OpRecord:
    if r.dtype != "float32" or r.kind in KEEP_DTYPE_KINDS:
        return r
    return dataclasses.replace(r, dtype=half, bytes_read=r.bytes_read // 2, bytes_written=r.bytes_written // 2)


def _affine_bias(run: list[OpRecord], h: int, kind: str) -> tuple[bool, bool | None]:
    """Whether one norm module call's records show an affine weight and a bias. PyTorch's fused op records its
    operands (``native_layer_norm``: x, weight (h,), bias (h,); ``nn.LayerNorm(bias=False)`` / MPT's LayerNorm pass
    no bias, ``elementwise_affine=False`` neither); a decomposed norm (HF's RMSNorm, a hand-written LayerNorm) shows
    its weight as an (h,) operand and its bias as an add of an (h,) operand. RMS norms have no bias. ``None``: not
    told by these records (a fused backward op records no weight / bias)."""
    fused = [r for r in run if _base(r.op) == "native_layer_norm"]
    if fused:
        s = [tuple(x) for x in fused[0].shapes]
        return len(s) > 1 and len(s[1]) == 1, kind != "rms" and len(s) > 2 and len(s[2]) == 1
    affine = any(tuple(s) == (h,) for r in run for s in r.shapes if s)
    if kind == "rms":
        return affine, False
    if any(_base(r.op).startswith("native_") for r in run):  # a fused backward op: weight / bias not recorded
        return affine, None
    return affine, any(_base(r.op) in ("add", "add_") and any(tuple(s) == (h,) for s in r.shapes if s) for r in run)


def _norm_run(run: list[OpRecord], half: str,
              seen: dict[str, tuple[bool, bool | None]] | None = None) -> OpRecord:
    """One fused norm kernel for the records of one norm module call (forward or backward). ``seen``: per norm
    module, the affine weight / bias its forward showed, for its backward (whose fused op records neither)."""
    first = run[0]
    shapes = [s for r in run for s in r.shapes if s]
    x = max(shapes, key=_numel) if shapes else ()
    h = int(x[-1]) if x else 1
    kind = "rms" if "rms" in first.module_type.lower() else "layer"
    backward = first.phase is Phase.BACKWARD and not first.recompute  # a recomputed forward is a forward kernel
    affine, bias = _affine_bias(run, h, kind)
    if seen is not None:
        if not backward:
            seen[first.module] = (affine, bias)
        elif first.module in seen:
            affine, bias = affine or seen[first.module][0], seen[first.module][1]
    c = C.norm(tuple(x), half, kind, affine=affine, normalized_elems=h, backward=backward, bias=bias)
    return dataclasses.replace(first, op="fused::" + kind + "_norm" + ("_backward" if backward else ""),
                               kind=OpKind.NORM, dtype=half, shapes=(tuple(x),), flops=sum(r.flops for r in run),
                               bytes_read=c.bytes_read, bytes_written=c.bytes_written, dims=())


def _fuse_norms(records: list[OpRecord], half: str) -> tuple[list[OpRecord], int]:
    out: list[OpRecord] = []
    seen: dict[str, tuple[bool, bool | None]] = {}
    fused = 0
    i, n = 0, len(records)
    while i < n:
        r = records[i]
        if (r.kind is OpKind.VIEW or r.phase is Phase.OPTIMIZER or not r.module
                or not NORM_TYPE.search(r.module_type or "")):
            out.append(r)
            i += 1
            continue
        run, views = [r], []
        j = i + 1
        while j < n:
            q = records[j]
            if q.kind is OpKind.VIEW and q.module == r.module:
                views.append(q)
            elif (q.module == r.module and q.phase is r.phase and q.recompute == r.recompute
                  and q.kind is not OpKind.VIEW):
                run.append(q)
            else:
                break
            j += 1
        out.append(_norm_run(run, half, seen))
        out.extend(views)
        fused += 1
        i = j
    return out, fused


def _parent(module: str) -> str:
    return module.rsplit(".", 1)[0] if "." in module else ""


def _gate_muls(records: list[OpRecord], i: int, step: int, want: int) -> list[int] | None:
    """Indices of the ``want`` element-wise muls of the activation record ``i``'s parent module with its shape,
    searching forward (``step`` 1) or backward (-1) within the same phase, stopping at another matmul of a child."""
    a = records[i]
    parent, shape = _parent(a.module), tuple(a.shapes[0]) if a.shapes else ()
    if not parent or not shape:
        return None
    found: list[int] = []
    j = i + step
    while 0 <= j < len(records) and len(found) < want:
        q = records[j]
        if (q.phase is not a.phase or q.recompute != a.recompute
                or not (q.module == parent or q.module.startswith(parent + "."))):
            break
        if (q.module == parent and q.kind is OpKind.ELEMENTWISE and _base(q.op) == "mul"
                and len(q.shapes) == 2 and all(tuple(s) == shape for s in q.shapes)):
            found.append(j)
        elif q.module == parent and q.kind is OpKind.ELEMENTWISE:
            break  # another element-wise op of the parent before the gate: not a gated activation
        j += step
    return found if len(found) == want else None


def _fuse_gated(records: list[OpRecord], half: str) -> tuple[list[OpRecord], int]:
    drop: set[int] = set()
    replace: dict[int, OpRecord] = {}
    e = C.dtype_bytes(half)
    for i, a in enumerate(records):
        if a.kind is not OpKind.ELEMENTWISE or a.phase is Phase.OPTIMIZER or i in drop:
            continue
        name = _base(a.op)
        if (a.phase is Phase.FORWARD or a.recompute) and name in ACT_FWD:
            muls = _gate_muls(records, i, 1, 1)
            read_n, write_n = 2, 1
        elif a.phase is Phase.BACKWARD and not a.recompute and name in ACT_BWD:
            muls = _gate_muls(records, i, -1, 2)
            read_n, write_n = 3, 2
        else:
            continue
        if muls is None or drop.intersection(muls):
            continue
        n = _numel(a.shapes[0])
        flops = a.flops + sum(records[j].flops for j in muls)
        replace[i] = dataclasses.replace(a, op=f"fused::gated_{name.split('_')[0]}"
                                         + ("_backward" if read_n == 3 else ""),
                                         dtype=half, flops=flops, bytes_read=read_n * n * e,
                                         bytes_written=write_n * n * e, shapes=(tuple(a.shapes[0]),), dims=())
        drop.update(muls)
    out = [replace.get(i, r) for i, r in enumerate(records) if i not in drop]
    return out, len(replace)


def _same_shape(q: OpRecord, shape: tuple) -> bool:
    return bool(q.shapes) and tuple(q.shapes[0]) == shape


def _fuse_softmax(records: list[OpRecord], half: str) -> tuple[list[OpRecord], int]:
    """Megatron's FusedScaleMaskSoftmax: the element-wise scale / mask records of eager attention that feed a
    softmax (same module, phase and shape) and the softmax are one kernel (n read, n written); in backward the
    softmax gradient and the scale's gradient are one kernel (y and dy read, dx written)."""
    drop: set[int] = set()
    replace: dict[int, OpRecord] = {}
    e = C.dtype_bytes(half)
    for i, sm in enumerate(records):
        if sm.kind is not OpKind.SOFTMAX or sm.phase is Phase.OPTIMIZER or not sm.shapes:
            continue
        shape = tuple(sm.shapes[0])
        backward = sm.phase is Phase.BACKWARD and not sm.recompute
        step = 1 if backward else -1  # the scale / mask run before the softmax forward, their gradients after it
        found: list[int] = []
        j = i + step
        while 0 <= j < len(records):
            q = records[j]
            if q.kind is OpKind.VIEW and q.module == sm.module:
                j += step
                continue
            if (q.module == sm.module and q.phase is sm.phase and q.recompute == sm.recompute
                    and q.kind is OpKind.ELEMENTWISE and _same_shape(q, shape) and j not in drop):
                found.append(j)
                j += step
                continue
            break
        if not found:
            continue
        n = _numel(shape)
        replace[i] = dataclasses.replace(sm, op="fused::scale_mask_softmax" + ("_backward" if backward else ""),
                                         dtype=half, flops=sm.flops + sum(records[k].flops for k in found),
                                         bytes_read=(2 if backward else 1) * n * e, bytes_written=n * e,
                                         shapes=(shape,), dims=())
        drop.update(found)
    return [replace.get(i, r) for i, r in enumerate(records) if i not in drop], len(replace)


def _fuse_dropout_add(records: list[OpRecord], half: str) -> tuple[list[OpRecord], int]:
    """Megatron's fused bias-dropout-add: a forward dropout followed by the residual add of the same shape in an
    enclosing module is one kernel (x and the residual read, the sum and the 1-byte mask written)."""
    drop: set[int] = set()
    replace: dict[int, OpRecord] = {}
    e = C.dtype_bytes(half)
    for i, d in enumerate(records):
        if d.kind is not OpKind.DROPOUT or not (d.phase is Phase.FORWARD or d.recompute) or not d.shapes:
            continue
        shape = tuple(d.shapes[0])
        j = i + 1
        while j < len(records) and records[j].kind is OpKind.VIEW:
            j += 1
        if j >= len(records):
            continue
        a = records[j]
        if not (a.phase is d.phase and a.recompute == d.recompute and a.kind is OpKind.ELEMENTWISE
                and _base(a.op) == "add" and len(a.shapes) == 2 and all(tuple(x) == shape for x in a.shapes)
                and (d.module.startswith(a.module + ".") or (not a.module and d.module))):
            continue
        n = _numel(shape)
        replace[i] = dataclasses.replace(d, op="fused::dropout_add", dtype=half, flops=d.flops + a.flops,
                                         bytes_read=2 * n * e, bytes_written=n * e + n, shapes=(shape,), dims=())
        drop.add(j)
    return [replace.get(i, r) for i, r in enumerate(records) if i not in drop], len(replace)


def windowed_pairs(s: int, w: int, *, causal: bool = True) -> int:
    """Query-key pairs per head of attention over ``s`` tokens with a window of ``w`` tokens (FlashAttention's
    ``window_size=(w - 1, w - 1)``, as transformers passes a module's ``sliding_window`` w). Causal: each query sees
    itself and the w - 1 before it, sum over i < s of min(i + 1, w). Not causal (a bidirectional sliding window,
    |q - k| <= w - 1): itself, the w - 1 before and the w - 1 after it, s + 2 x sum over i < s of min(i, w - 1)."""
    full = min(s, w)
    if causal:
        return full * (full + 1) // 2 + (s - full) * w
    side = min(s, w - 1)  # rows i < side see i keys before them, the others w - 1
    return s + 2 * (side * (side - 1) // 2 + (s - side) * (w - 1))


def _bmm(r: OpRecord) -> bool:
    return (r.kind is OpKind.MATMUL and "grouped" not in r.op and r.dim("b", 1) > 1
            and bool(r.dim("m", 0) and r.dim("n", 0) and r.dim("k", 0)))


def _fuse_sink_attention(records: list[OpRecord], half: str, modules: dict, heads,
                         bidirectional=()) -> tuple[list[OpRecord], dict]:
    """Transformer Engine's fused attention (``softmax_type="learnable"``, cuDNN) in place of the eager attention
    core transformers runs for attention modules with sinks (gpt-oss, which has no SDPA path there): per module and
    phase, the records from its QK^T batched matmul to its matmul over V (forward: 2 batched GEMMs; backward: their
    4 gradients), with the scale, mask, sink concatenation, max, softmax and casts between them, and the copies of
    grouped key / value heads (repeat_kv) and their gradient sums, become one fused attention kernel
    (:func:`wattlint.costs.attention` / ``attention_backward``, the model's key / value heads), causal unless the
    module is in ``bidirectional`` (its attention is not causal: OpenAI's privacy filter, an encoder). A sliding-
    window layer's kernel computes the window's pairs only (windowed_pairs, one-sided when causal, two-sided when
    not), as FlashAttention's window_size kernels skip the key blocks outside the window. The sink adds one logit per head and query row: left out. Returns the
    records and what changed (cores, windowed cores, the traced saved-for-backward bytes of the probabilities)."""
    h, kvh = (int(heads[0]), int(heads[1])) if heads and len(heads) == 2 else (0, 0)
    done = {"cores": 0, "windowed": 0, "bidirectional": 0, "saved": 0, "saved_fp32": 0, "lse": 0}
    bidirectional = set(bidirectional or ())
    if not h or not kvh or h % kvh:
        return records, done
    rep = h // kvh
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(records):
        if r.module in modules and r.phase is not Phase.OPTIMIZER and _bmm(r):
            groups.setdefault((r.module, r.phase is Phase.FORWARD or r.recompute, r.phase, r.recompute), []).append(i)
    shapes: dict[str, tuple[int, int, int, int, int]] = {}  # module -> (batch, sq, sk, d, dv) from its forward
    for (mod, fwd, _ph, _rc), idx in groups.items():
        if fwd and len(idx) == 2:
            qk, pv = records[idx[0]], records[idx[1]]
            bh, sq, sk, d, dv = qk.dim("b", 1), qk.dim("m", 0), qk.dim("n", 0), qk.dim("k", 0), pv.dim("n", 0)
            if bh % h == 0 and pv.dim("k", 0) == sk:
                shapes[mod] = (bh // h, sq, sk, d, dv)
    drop: set[int] = set()
    replace: dict[int, OpRecord] = {}
    for (mod, fwd, ph, rc), idx in groups.items():
        if mod not in shapes or len(idx) != (2 if fwd else 4):
            continue
        b, sq, sk, d, dv = shapes[mod]
        span = [j for j in range(idx[0], idx[-1] + 1)
                if records[j].module == mod and records[j].phase is ph and records[j].recompute == rc
                and records[j].kind is not OpKind.VIEW]
        repeats = [j for j, r in enumerate(records)
                   if r.module == mod and r.phase is ph and r.recompute == rc and rep > 1 and r.shapes
                   and len(r.shapes[0]) == 5 and int(r.shapes[0][2]) == rep
                   and _base(r.op) in (("clone",) if fwd else ("sum",))]
        w = int(modules[mod] or 0)
        causal = mod not in bidirectional
        windowed = 0 < w < sk
        cost = (C.attention if fwd else C.attention_backward)(b, h, sq, sk, d, dv, half, causal=causal,
                                                               kv_heads=kvh)
        full = C.causal_pairs(sq, sk) if causal else sq * sk
        flops = cost.flops * windowed_pairs(sq, w, causal=causal) // full if windowed else cost.flops
        dims = tuple(sorted(cost.dims + ((("window", w),) if windowed else ())))
        replace[idx[0]] = dataclasses.replace(
            records[idx[0]], op="fused::attention_learnable_sink" + ("" if fwd else "_backward"),
            kind=OpKind.ATTENTION, dtype=half, flops=int(flops), bytes_read=cost.bytes_read,
            bytes_written=cost.bytes_written, shapes=((b, h, sq, d), (b, kvh, sk, d), (b, kvh, sk, dv)), dims=dims)
        drop.update(j for j in span + repeats if j != idx[0])
        if fwd and not rc:
            done["cores"] += 1
            done["windowed"] += int(windowed)
            done["bidirectional"] += int(not causal)
            soft = [j for j in span if records[j].kind is OpKind.SOFTMAX]
            if len(soft) == 1:  # what eager attention saves for backward: the softmax output and the
                # score-shaped tensor after it that the matmul over V reads (its cast), as the trace counted them
                sm = records[soft[0]]
                done["saved"] += sm.bytes_written
                done["saved_fp32"] += sm.bytes_written if sm.dtype == "float32" else 0
                after = [j for j in span if soft[0] < j < idx[1] and records[j].shapes
                         and _numel(records[j].shapes[0]) == b * h * sq * sk]
                if after:
                    done["saved"] += records[after[-1]].bytes_written
                done["lse"] += b * h * sq * 4  # the fused kernel's fp32 logsumexp
    out = [replace.get(i, r) for i, r in enumerate(records) if i not in drop]
    return out, done


def _optimizer(graph: CostGraph, optimizer: str, half: str) -> list[OpRecord]:
    n = int(graph.trainable_params)
    name = (optimizer or graph.optimizer or "adamw").lower()
    step = C.optimizer_step(name, n, "float32", state_dtype="float32", momentum=name == "sgd")
    e = C.dtype_bytes(half)
    copy = C.memory(n, n, half, read_dtype="float32")
    return [OpRecord(op=f"fused::multi_tensor_{name}", kind=OpKind.OPTIMIZER, module="", phase=Phase.OPTIMIZER,
                     dtype="float32", flops=step.flops, bytes_read=step.bytes_read, bytes_written=step.bytes_written,
                     dims=step.dims),
            OpRecord(op="fused::master_to_model_params", kind=OpKind.MEMORY, module="", phase=Phase.OPTIMIZER,
                     dtype=half, flops=0, bytes_read=copy.bytes_read, bytes_written=n * e,
                     dims=(("numel", n),))]


# the tracer's lines that the megatron stack's rewrite replaces (autocast, fp32 module weights, torch's optimizer
# implementation): a report must not state both
SUPERSEDED = ("precision: bf16 autocast emulated", "precision: fp16 autocast emulated", "precision: fp8 traced as",
              "optimizer: ", "weights: float32 master weights")


# the frontend's line saying gpt-oss runs eager attention (wattlint.frontends.hf.eager_fallback_note), replaced by
# the fused-attention line where the stack fuses its attention cores
SINK_EAGER_NOTE = "attention: eager, not SDPA"


def _sink_note(done: dict, sinks: dict, graph: CostGraph, bidirectional=()) -> str:
    s = int(graph.seq_len or 0)
    bidi = set(bidirectional or ())
    n, nb = done["cores"], done["bidirectional"]
    how = ("causal" if not nb else "not causal: the model's attention is bidirectional" if nb == n
           else f"{n - nb:,} causal, {nb:,} bidirectional")
    win = ""
    if done["windowed"] and s:
        kinds = sorted({(int(w), m not in bidi) for m, w in sinks.items() if w and int(w) < s})
        parts = []
        for w, causal in kinds:
            pairs = windowed_pairs(s, w, causal=causal)
            full = C.causal_pairs(s, s) if causal else s * s
            reach = (f"window {w:,}: each query sees itself and the {w - 1:,} keys before it" if causal else
                     f"bidirectional window |q - k| <= {w - 1:,}: each query sees itself and {w - 1:,} keys on "
                     f"either side")
            parts.append(f"{reach}, {pairs:,} query-key pairs per head, {pairs / full:.1%} of the "
                         f"{'causal' if causal else 'full'} {full:,}")
        if parts:
            win = (f"; {done['windowed']:,} of them sliding-window layers priced over the window's pairs ("
                   + "; ".join(parts) + "; FlashAttention's window_size kernels skip the key blocks outside the "
                   "window; cuDNN's assumed to do the same)")
    return (f"attention sinks under megatron: {n:,} attention cores priced as one fused kernel each "
            f"(Transformer Engine DotProductAttention softmax_type=\"learnable\", served by cuDNN fused attention, "
            f"{how}, grouped key / value heads not repeated) in place of transformers' eager path{win}; the sink "
            f"adds one logit per head and query row (not counted: under 1/keys of the softmax work); the eager "
            f"probabilities are no longer stored ({done['saved'] / 2**20:,.1f} MiB of traced saved-for-backward "
            f"bytes removed, {done['lse'] / 2**20:,.1f} MiB of fp32 logsumexp added; the repeated key / value "
            f"copies the eager matmuls kept stay as traced)")


def megatron(graph: CostGraph, precision: str, optimizer: str) -> tuple[CostGraph, list[str]]:
    """``graph`` as a Megatron-style stack runs it (module doc); the assumption lines of what changed."""
    if (graph.extra or {}).get("training_stack") == "megatron":
        return graph, []
    half = half_dtype(precision)
    kept: list[OpRecord] = []
    casts = cast_bytes = 0
    extra = dict(graph.extra or {})
    records = list(graph.records)
    sinks = extra.get("sink_attention") or {}
    sink_notes: list[str] = []
    if sinks:
        bidirectional = extra.get("sink_attention_bidirectional") or ()
        records, done = _fuse_sink_attention(records, half, sinks, extra.get("attention_heads"), bidirectional)
        if done["cores"]:
            sink_notes.append(_sink_note(done, sinks, graph, bidirectional))
            if extra.get("activation_bytes") is not None:
                extra["activation_bytes"] = max(0, int(extra["activation_bytes"]) - done["saved"] + done["lse"])
            if extra.get("activation_bytes_fp32") is not None:
                extra["activation_bytes_fp32"] = max(0, int(extra["activation_bytes_fp32"]) - done["saved_fp32"])
    for r in records:
        if r.phase is Phase.OPTIMIZER:
            continue
        if r.module and _is_cast(r):
            casts += 1
            cast_bytes += r.bytes
            continue
        if r.module or r.kind in GEMM_FAMILY:
            r = _retyped(r, half)
        kept.append(r)
    kept, norms = _fuse_norms(kept, half)
    kept, gated = _fuse_gated(kept, half)
    kept, softmax = _fuse_softmax(kept, half)
    kept, dropout_add = _fuse_dropout_add(kept, half)
    opt = [r for r in graph.records if r.phase is Phase.OPTIMIZER]
    name = (optimizer or graph.optimizer or "adamw").lower()
    new_opt = _optimizer(graph, name, half) if opt else []
    hp = "bf16" if half == "bfloat16" else "fp16"
    notes = [f"training stack megatron (--training-stack): {hp} module parameters with an fp32 master copy; "
             f"{casts:,} autocast cast kernels dropped ({cast_bytes / 2**30:,.2f} GiB of traffic per micro-batch), "
             f"element-wise work inside the model in {hp}; fused kernels: {norms:,} norm kernels (apex / Transformer "
             f"Engine fused LayerNorm / RMSNorm), {gated:,} gated activations (fused SwiGLU / GeGLU), {softmax:,} "
             f"scale-mask-softmax calls of eager attention (FusedScaleMaskSoftmax), {dropout_add:,} dropout + "
             f"residual adds (fused bias-dropout-add), the optimizer as one multi-tensor {name} pass over fp32 "
             f"master weights, gradients and state plus the copy into the {hp} parameters; matmuls, attention "
             f"kernels, other element-wise work and the loss as traced (in place of the traced autocast, fp32 "
             f"module weights and torch optimizer, whose lines are dropped)"] + sink_notes
    extra["training_stack"] = "megatron"
    # the activation output a fused gated kernel does not keep: PyTorch's SiLU output is saved by the gate's mul, the
    # fused SwiGLU / GeGLU kernel saves only its two inputs (and the next matmul its product): wattlint.memory
    e = C.dtype_bytes(half)
    extra["activation_bytes_gated_output"] = sum(
        _numel(r.shapes[0]) * e for r in kept
        if r.op.startswith("fused::gated_") and not r.op.endswith("_backward") and r.phase is Phase.FORWARD
        and not r.recompute and r.shapes)
    kept_notes = tuple(a for a in graph.assumptions if not a.startswith(SUPERSEDED)
                       and not (sink_notes and a.startswith(SINK_EAGER_NOTE)))
    out = dataclasses.replace(graph, records=tuple(kept + new_opt), precision=precision,
                              extra=extra, assumptions=kept_notes + tuple(notes))
    return out, notes


def apply(graph: CostGraph, plan) -> CostGraph:
    """``graph`` under ``plan.training_stack`` (unchanged for the default ``pytorch``)."""
    stack = getattr(plan, "training_stack", DEFAULT_STACK) or DEFAULT_STACK
    if stack == "pytorch":
        return graph
    if stack == "megatron":
        return megatron(graph, plan.precision, plan.optimizer)[0]
    raise ValueError(f"unknown training stack {stack!r}")
