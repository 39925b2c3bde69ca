"""ONNX frontend: a (weight-free) ``.onnx`` graph -> :class:`CostGraph` of one training step.

Pipeline (one module per stage):

* :mod:`.onnx_load` — load without external data; validate (UTF-8, dims, external-data locations inside the
  model's folder, cycles); bind symbolic input dims (``--batch-size``, ``--seq-len``, ``--input``);
* :mod:`.onnx_shapes` — onnx shape inference with data propagation; shape computations folded with numpy
  (:mod:`.onnx_fold`) where it stops; onnxruntime's symbolic shape inference only for what is still unknown;
* this module — one forward record per node through :mod:`.onnx_ops` (which calls :mod:`wattlint.costs`; fused
  patterns from :mod:`.onnx_patterns`: unfused attention -> one fused attention kernel, erf-GELU -> one GELU,
  MatMul + bias -> one GEMM with epilogue); synthesized backward records (reverse order, only for nodes on the
  path to the loss with an input that needs a gradient; k-1 gradient accumulations for a tensor with k users);
  an assumed loss; torch's foreach optimizer kernels per trainable initializer.

Never imports torch. onnxruntime / sympy are imported only when symbolic inference is needed.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from .. import costs as C
from ..costs import Cost
from ..types import CostGraph, InputError, ModelInfo, OpKind, OpRecord, Phase, Status, TensorSpec, lib_call_dims
from . import onnx_ops as ops
from . import token_loss_note
from .onnx_fold import parameter_views
from .onnx_ties import tied_copies
from .onnx_load import (_FLOAT, _ONNX_DTYPES, _all_initializers, _BatchBaked, _load, _one_line, _opset,
                        _strings_ok, _Validate, data_folder)
from .onnx_shapes import ScopeTypes, _Shapes

_PRECISION_DTYPE = {"fp16": "float16", "bf16": "bfloat16", "fp8": "float8_e4m3fn"}
_FP32_OPS = {"LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
             "SkipSimplifiedLayerNormalization", "RMSNormalization", "GroupNormalization", "BatchNormalization",
             "InstanceNormalization", "Softmax", "LogSoftmax"}
# iterations of one ONNX Loop in one step: its body's cost is multiplied by the trip count (it was capped at 2**20
# silently, pricing a 4e6-trip Loop 3.8x low); beyond this a graph is not a training step
MAX_LOOP_TRIPS = 1 << 30
# module type shown for a scope, from the op that defines it (PyTorch class names where they are unambiguous)
_SCOPE_TYPES = {"Conv": "Conv", "ConvTranspose": "ConvTranspose", "Gemm": "Linear", "MatMul": "Linear",
                "BatchNormalization": "BatchNorm", "LayerNormalization": "LayerNorm",
                "SkipLayerNormalization": "LayerNorm", "SimplifiedLayerNormalization": "RMSNorm",
                "RMSNormalization": "RMSNorm", "GroupNormalization": "GroupNorm", "LSTM": "LSTM", "GRU": "GRU",
                "RNN": "RNN", "Attention": "Attention", "MultiHeadAttention": "MultiheadAttention",
                "MaxPool": "MaxPool", "AveragePool": "AvgPool", "GlobalAveragePool": "AdaptiveAvgPool",
                "Softmax": "Softmax", "Embedding": "Embedding"}
# CUDA autocast's fp32 list (wattlint.frontends.torch.AUTOCAST_FP32) in ONNX ops: half inputs cast to fp32
_AC_FP32 = {"LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
            "SkipSimplifiedLayerNormalization", "RMSNormalization", "GroupNormalization", "Softmax", "LogSoftmax",
            "Pow", "Exp", "Log", "Reciprocal", "Softplus", "Tan", "Sinh", "Cosh", "Asin", "Acos", "LpNormalization",
            "ReduceL2", "SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"}
# of those, the ops whose backward kernel writes the input's gradient in the input's own dtype (torch's
# native_layer_norm_backward, _softmax_backward_data(input_dtype), nll_loss): no cast of that gradient back
_AC_FP32_OWN_GRAD = {"LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
                     "SkipSimplifiedLayerNormalization", "RMSNormalization", "GroupNormalization", "Softmax",
                     "LogSoftmax", "SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"}
# autocast's fp32_set_opt_dtype: a half input read as it is, accumulated and written in fp32
_AC_FP32_SET_DTYPE = {"ReduceSum", "ReduceProd", "CumSum"}
_GEMM_OPS = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum", "FusedMatMul", "Attention", "MultiHeadAttention",
             "GroupQueryAttention", "LSTM", "GRU", "RNN"}
_FREE = Cost(kind=OpKind.VIEW)
_REUSE_SUFFIX = re.compile(r"_\d+$")


def analyze_onnx(path, *, inputs: dict[str, TensorSpec] | None = None, batch_size: int | None = None,
                 seq_len: int | None = None, optimizer: str = "adamw", precision: str = "default",
                 source: str | None = None, optimizer_impl: str = "foreach") -> CostGraph:
    """Analyze one training step of the ONNX model at ``path`` (see the module docstring)."""
    p = Path(path)
    model = _load(p)
    current: list[_Analysis] = []
    try:
        try:
            current.append(_Analysis(model, p, inputs or {}, batch_size, seq_len, optimizer, precision,
                                     source or str(path), optimizer_impl))
            return current[-1].run()
        except _BatchBaked as e:  # a static batch baked into Reshape targets
            target = e.target or batch_size
            patched = _rebatch_shape_constants(_load(p), e.static, target) if e.axis == 0 and target else None
            if patched is not None:  # the exporter's constants rewritten to the batch asked for, as a dynamic axis
                model_b, n_patched = patched
                try:
                    current.append(_Analysis(model_b, p, inputs or {}, batch_size, seq_len, optimizer, precision,
                                             source or str(path), optimizer_impl))
                    g = current[-1].run()
                    note = (f"the graph has batch {e.static} baked into its shapes: {n_patched} shape constant(s) "
                            f"(Reshape / Expand targets) rewritten to batch {target}, as a dynamic batch axis would "
                            f"give")
                    return dataclasses.replace(g, assumptions=(*g.assumptions, note))
                except _BatchBaked:  # a constant that was not the batch (or one missed): scale instead
                    pass
            # analyze at the baked batch, scale linearly
            static_inputs = {k: TensorSpec(v.name, v.dtype, _with_dim(v.shape, e.axis, e.static))
                             for k, v in (inputs or {}).items()}
            # symbolic batch dims bound to that batch too (None left them unbound: "pass --batch-size")
            current.append(_Analysis(_load(p), p, static_inputs, e.static, seq_len, optimizer, precision,
                                     source or str(path), optimizer_impl))
            g = current[-1].run()
            return _scale_batch(g, e.static, e.target or batch_size, e.axis)
    except InputError:
        raise
    except (RecursionError, MemoryError):
        raise InputError(f"{p}: graph too deep or too large to analyze") from None
    except Exception as e:
        if STRICT or os.environ.get("WATTLINT_DEBUG"):
            raise
        if raised_by_onnx(e):  # onnx / onnxruntime rejected the graph: the user's input
            raise InputError(f"{p}: malformed graph ({type(e).__name__}: {_one_line(e)})") from None
        at = current[-1].at if current else None
        where = f" at {at[0]} node {at[1]!r}" if at else ""
        raise OnnxInternalError(f"ONNX analysis of {p} failed{where}: {type(e).__name__}: {_one_line(e)}") from e


class OnnxInternalError(Exception):
    """A bug in wattlint's ONNX analysis (not a WattlintError: the CLI reports it as an internal error, exit 3)."""


def raised_by_onnx(e: BaseException) -> bool:
    """Whether ``e`` was raised inside the onnx or onnxruntime packages (their validation or shape inference), as
    opposed to wattlint's own code."""
    if type(e).__module__.split(".")[0] in ("onnx", "onnxruntime"):  # e.g. onnx.checker.ValidationError
        return True
    import sys

    roots = tuple(os.path.dirname(m.__file__) + os.sep for m in (sys.modules.get("onnx"), sys.modules.get("onnxruntime"))
                  if m is not None and getattr(m, "__file__", None))
    tb = e.__traceback__
    while tb is not None:  # raised while onnx / onnxruntime code was running (however deep, e.g. in numpy)
        if tb.tb_frame.f_code.co_filename.startswith(roots):
            return True
        tb = tb.tb_next
    return False


def _with_dim(shape, axis: int, value: int) -> tuple:
    shape = tuple(shape)
    return shape[:axis] + (value,) + shape[axis + 1:] if len(shape) > axis else shape


# shape inputs whose leading element is the batch when a graph was exported with a static one
_BATCHED_SHAPE_INPUTS = {"Reshape": 1, "Expand": 1, "ConstantOfShape": 0}
_SHAPE_ONLY = ("Shape", "Size")  # ops that read only their input's shape
# ops a shape vector passes through unchanged in its positions (Where: its two value inputs)
_SHAPE_PASS_THROUGH = ("Where", "Cast", "Identity", "Equal", "Mul")


def _rebatch_shape_constants(model, static: int, batch: int):
    """``model`` with the leading element of every constant shape (the targets of Reshape / Expand, the shape of
    ConstantOfShape; initializers or Constant nodes) scaled by ``batch / static`` (the batch itself, or the batch
    folded into the rows: batch x seq), and how many were rewritten; None when there is none. The analysis of the result checks every Reshape's element counts, so a
    rewritten constant that was not the batch falls back to scaling (the caller)."""
    from onnx import numpy_helper

    nodes = list(_all_nodes(model.graph))
    names = {n.input[pos] for n in nodes for op, pos in _BATCHED_SHAPE_INPUTS.items()
             if n.op_type == op and len(n.input) > pos and n.input[pos]}
    # and the constants a shape is computed from (TorchScript's expand: Where(Equal(shape, -1), ones, shape))
    producer = {o: n for n in nodes for o in n.output}
    todo = list(names)
    while todo:
        n = producer.get(todo.pop())
        if n is not None and n.op_type in _SHAPE_PASS_THROUGH:
            for i in n.input[1:] if n.op_type == "Where" else n.input:
                if i and i not in names:
                    names.add(i)
                    todo.append(i)
    done = 0

    def rewrite(t):
        nonlocal done
        # int32 / int64 vectors of 2+ elements: a 1-element target ([16]: a flat sequence) says nothing of a batch
        if t.data_type not in (6, 7) or len(t.dims) != 1 or t.dims[0] < 2:
            return None
        try:
            v = numpy_helper.to_array(t).copy()
        except (ValueError, TypeError, OSError):  # external data not readable: leave it
            return None
        lead = int(v[0])
        if lead <= 0 or (lead * batch) % static:  # -1 (inferred) and 0 (copied) follow the data by themselves
            return None
        v[0] = lead * batch // static  # the batch, or the batch folded into the rows (batch x seq)
        done += 1
        return numpy_helper.from_array(v, t.name)

    for t in _all_initializers(model.graph):
        if t.name in names:
            new = rewrite(t)
            if new is not None:
                t.CopyFrom(new)
    for n in _all_nodes(model.graph):
        if n.op_type == "Constant" and n.output and n.output[0] in names:
            for a in n.attribute:
                if a.name == "value" and a.type == 4:
                    new = rewrite(a.t)
                    if new is not None:
                        a.t.CopyFrom(new)
    return (model, done) if done else None


def _all_nodes(g):
    """The nodes of ``g`` and of every subgraph (Loop / If / Scan bodies)."""
    for n in g.node:
        yield n
        for a in n.attribute:
            if a.type == 5:
                yield from _all_nodes(a.g)
            elif a.type == 10:
                for sub in a.graphs:
                    yield from _all_nodes(sub)


def _scale_batch(g: CostGraph, static: int, batch: int, axis: int = 0) -> CostGraph:
    """Forward/backward costs scale with the batch (every op of these graphs is per-sample or a GEMM whose rows are
    samples); the optimizer step does not. ``axis``: the inputs' (and outputs') batch dim."""
    from dataclasses import replace

    f = batch / static
    recs = tuple(r if r.phase is Phase.OPTIMIZER else
                 replace(r, flops=round(r.flops * f), bytes_read=round(r.bytes_read * f),
                         bytes_written=round(r.bytes_written * f)) for r in g.records)
    ins = tuple(TensorSpec(t.name, t.dtype, _with_dim(t.shape, axis, batch))
                if len(t.shape) > axis and t.shape[axis] == static else t for t in g.inputs)
    outs = tuple(TensorSpec(t.name, t.dtype, _with_dim(t.shape, axis, batch))
                 if len(t.shape) > axis and t.shape[axis] == static else t for t in g.outputs)
    note = (f"the graph has batch {static} baked into its shapes (Reshape targets): costs at batch {batch} are "
            f"the batch-{static} costs scaled by {batch}/{static} (optimizer unscaled), which leans high: kernels "
            f"priced at batch-{static} sizes run less efficiently, and weight reads are counted once per "
            f"{static} samples; export with a dynamic batch axis (torch.onnx.export(..., dynamic_axes=...)) for "
            f"the cost at batch {batch}")
    extra = dict(g.extra)
    extra["activation_bytes"] = round(extra.get("activation_bytes", 0) * f)
    # the records keep their batch-``static`` dims (priced at those shapes, then scaled): what reads a size from
    # the dims (the attention term of MFU) scales it by this
    extra["dims_batch_scale"] = extra.get("dims_batch_scale", 1.0) * f
    if extra.get("loss_logits_elems"):
        extra["loss_logits_elems"] = round(extra["loss_logits_elems"] * f)
    return replace(g, records=recs, inputs=ins, outputs=outs, micro_batch=batch,
                   assumptions=tuple(a for a in g.assumptions) + (note,), extra=extra)


STRICT = False  # tests set this to surface internal errors instead of reporting them as malformed input


# ---- loading and validation -------------------------------------------------------------------------------------

class _Analysis(_Validate, _Shapes):
    def __init__(self, model, path: Path, inputs, batch_size, seq_len, optimizer, precision, source,
                 optimizer_impl: str = "foreach"):
        self.model = model
        self.path = path
        # external data is looked up beside the path as given (a hub snapshot's links) or, for a model linked from
        # another folder, beside the file it points to
        self.folder = data_folder(model, path)
        self.user_inputs = dict(inputs)
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.optimizer = optimizer or "adamw"
        if optimizer_impl not in ("foreach", "fused", "for-loop"):
            raise InputError(f"unknown optimizer implementation {optimizer_impl!r} (foreach, fused or for-loop)")
        if optimizer_impl == "fused" and self.optimizer == "adadelta":
            raise InputError("torch has no fused Adadelta: use --optimizer-impl foreach or for-loop")
        self.optimizer_impl = optimizer_impl
        self.precision = precision or "default"
        self.source = source
        self.assumptions: list[str] = []
        # fp8 is traced as bf16 (as the torch frontend traces it under autocast): which GEMMs run in FP8, and the
        # casts they need, are decided on the whole graph at estimate time (wattlint.fp8)
        self.half = "bfloat16" if self.precision == "fp8" else _PRECISION_DTYPE.get(self.precision)
        self.gemm_dtype = self.half
        self.missing_shape_values: dict[str, str] = {}  # initializer -> location, for error messages
        self.rebound: dict[str, int] = {}  # "batch"/"seq" -> the static dim that --batch-size/--seq-len replaced
        self.external = 0
        self.at: tuple[str, str] | None = None  # the node being analyzed
        self.scopes: list = []  # the graphs being walked, outermost first: names resolve innermost first (_scalar)

    # ---- top level ----------------------------------------------------------------------------------------------
    def run(self) -> CostGraph:
        g = self.model.graph
        if not _strings_ok(self.model):
            raise InputError(f"{self.path}: malformed model: a name or string field is not valid UTF-8")
        self._validate_initializers(g)
        self._declare_domains()
        specs = self._bind_inputs(g)
        self._check_graph(g, set(), "graph")
        inferred = self._infer()
        self.types: dict[str, tuple[str, tuple | None]] = {}
        self._collect_types(inferred.graph)
        if self._unknown_nodes(inferred.graph):
            inferred = self._fold_and_reinfer(inferred)
        if self._unknown_nodes(inferred.graph):
            inferred = self._symbolic(inferred)
        self._check_outputs_known(inferred.graph)
        self._check_reshapes_after_rebind(inferred.graph)
        return self._build(inferred, specs)

    # ---- records ------------------------------------------------------------------------------------------------
    def _build(self, inferred, specs) -> CostGraph:
        g = inferred.graph
        self.inits = {t.name: t for t in _all_initializers(g)}
        self.const_names = set(self.inits)
        # the attention patterns first: a float buffer used only as their mask is no parameter (_trainable)
        self.attn_found = None  # (matches, producer, consumers) of the main graph, set by _find_attention
        self.attn = self._find_attention(g)
        self.trainable = self._trainable(g)
        self.grad: set[str] = set(self.trainable)
        # an output layer that is the embedding transposed (a tied LM head): one parameter, two uses
        # tensors that only re-lay-out parameters (a training-mode export's LSTM gate blocks, a weight Transposed
        # before its MatMul): part of the parameters, no kernel or bytes per step (onnx_fold.parameter_views)
        weights = {n for n, t in self.inits.items() if _ONNX_DTYPES.get(t.data_type) in _FLOAT} | set(self.param_tensors)
        self.param_views = parameter_views(g, self.trainable, weights)
        self.linear_weights = _linear_weights(g, self.param_views, self.inits)
        self.tied, self.tie_unread = tied_copies(g, self.inits, self.trainable, self.folder, self.path.resolve().parent,
                                                 self.param_views)
        self.on_loss_path = self._loss_ancestors(g)
        self.fwd: list[OpRecord] = []
        self.bwd: list[list[OpRecord]] = []
        self.saved: dict = {}  # tensor name (or _scoped_name) -> bytes saved for backward
        self.attn_saved_outs: set = set()  # fused attention outputs saved with it (#qkvo), and their layout views
        self.loss_logits: tuple[int, int] | None = None  # (logits, bytes each) of an assumed cross-entropy
        self.loss_casts = 0  # autocast's cast of the logits into the assumed loss (stated with the precision)
        self.unknown = 0
        self.failed: dict[str, int] = {}
        self.first_use: dict[str, str] = {}
        self.module_types: dict[str, str] = {}
        self.folded_bn = False
        self.folded_convs: set[int] = set()
        self.lib_calls = 0  # library calls numbered so far (their records carry types.LIB_CALL)
        self.bwd_of_fwd: dict[int, int] = {}  # id of a backward group -> index of its node's forward record
        self.straight_through = False  # a QuantizeLinear passed a gradient (stated once)
        self.own_bias_convs: set[int] = set()  # convs whose bias is a named parameter ('features.0.bias')
        self.synth_bn = 0
        self.has_bn = False
        # a Dropout node anywhere (stated when there is none: an eval-mode export removes them)
        self.has_dropout = any("Dropout" in n.op_type for n in _all_nodes(g))
        self.shape_consts: set[str] = set()
        self.grad_uses: dict = {}  # tensor name (or _scoped_name) -> [uses needing its gradient, module, type]
        self.scope_cache: dict[str, str] = {}
        self.shape_fallback = 0
        self.alias: dict[str, str] = {}
        # names that sibling subgraphs both define are typed by scope (_type_of), not by the flat table
        self.scope_types = ScopeTypes(g)
        self.found_types: dict[tuple[int, str], tuple] = {}  # (id(graph), name) -> a type the walk found there
        # CUDA autocast emulated (as the torch frontend does) when a half precision is asked of an fp32 graph
        held = {self.types[k][0] for k in self.trainable if k in self.types} & {"float16", "bfloat16"}
        self.autocast = bool(self.half) and not held
        self.acdt: dict = {}  # tensor (scoped name) -> the dtype autocast leaves it in
        self.ac_casts: set = set()  # (tensor, dtype) casts done this step (weights cached as autocast caches them)
        self._walk(g, scale=1, in_subgraph=False)
        self._grad_accumulation()
        if not self.has_bn and not self.folded_bn and self._likely_folded():
            self.folded_bn = True
        if self.folded_bn:
            self._synthesize_batchnorm()

        outputs = tuple(TensorSpec(o.name, *self._spec(o.name)) for o in g.output)
        loss = self._loss(g)
        records = list(self.fwd) + loss[0] + loss[1] + [r for grp in reversed(self.bwd) for r in grp]
        records.extend(self._optimizer())

        own = [n for n in self.trainable if n not in self.tied]
        params = sum(C.numel(self.param_tensors[n].dims) for n in own)
        param_bytes = sum(C.nbytes(self.param_tensors[n].dims, _ONNX_DTYPES.get(self.param_tensors[n].data_type,
                                                                                "float32")) for n in own)
        name = self.model.graph.name or self.path.stem
        info = ModelInfo(self.source, "onnx", params, param_bytes, params, name=name)
        self._notes()
        act_bytes = int(sum(self.saved.values()))
        if self.loss_logits:
            act_bytes += 4 * self.loss_logits[0]
        if self.folded_bn:
            # each folded BatchNorm would save its input (the conv output) for backward in training
            act_bytes += sum(r.bytes_written for r in self.fwd if r.op == "onnx::Conv" and r.phase is Phase.FORWARD)
        # --seq-len is the model's sequence length only where an input carries it (a CNN has none)
        # sequence-first RNN inputs ([seq, batch, ...]: seq_first_inputs) carry the batch in dim 1
        axes = self.batch_axes
        carried = self.seq_len and any(len(sp.shape) >= 2 and sp.shape[self._seq_axis(sp)] == self.seq_len
                                       for sp in specs)
        seq = self.seq_len if carried else self._guess_seq(specs)
        per_sample = self._tokens_per_sample(specs)
        if per_sample is not None:  # [batch, choices, seq]: the tokens of a sample, as the torch frontend counts them
            seq = per_sample
        micro = specs[0].shape[axes.get(specs[0].name, 0)] if specs and specs[0].shape else 1
        if any(axes.values()):
            self.assumptions.append(
                "batch read from dim 1 of " + ", ".join(repr(n) for n, a in axes.items() if a == 1)
                + ": sequence-first ([seq, batch, ...]) inputs of a recurrent layer with ONNX layout 0")
        modules = tuple((m, t) for m, t in self.module_types.items())
        return CostGraph(model=info, records=tuple(records), inputs=tuple(specs), outputs=outputs, modules=modules,
                         assumptions=tuple(dict.fromkeys(self.assumptions)), micro_batch=int(micro),
                         seq_len=int(seq or 0), precision=self._precision_name(),
                         optimizer=self.optimizer,
                         extra={"activation_bytes": act_bytes, "optimizer_impl": self.optimizer_impl,
                                "folded_batchnorm": bool(self.folded_bn),
                                "synthesized_batchnorm": int(self.synth_bn),
                                # the assumption line above: memory then holds an fp32 master copy
                                "fp32_master_weights": bool(getattr(self, "half_params", False)),
                                "external_initializers": self.external,
                                "opset": _opset(self.model),
                                **({"loss_logits_elems": self.loss_logits[0], "loss_logits_bytes": self.loss_logits[1]}
                                   if self.loss_logits else {})})

    def _precision_name(self) -> str:
        """The precision the graph's ops run in: a half-precision one asked for (the frontend cast the fp32 ops
        to it), else what the weights hold (an fp16 / bf16 export stays so under --precision fp32 or default: the
        plan states that it was not applied)."""
        dts = {self.types[k][0] for k in self.trainable if k in self.types}
        held = "fp16" if dts == {"float16"} else "bf16" if dts == {"bfloat16"} else None
        if held and not (held == "bf16" and self.precision == "fp8"):  # fp8 is traced as bf16
            return held  # the export's own half precision, whatever was asked (the plan says what was not applied)
        if self.half:
            return self.precision
        return "fp32" if self.precision == "default" else self.precision

    def _seq_axis(self, spec) -> int:
        """The sequence dim of an input of 2 or more dims: dim 0 of a sequence-first RNN input ([seq, batch, ...]);
        the last of an integer (token) input ([batch, seq]; a multiple-choice export's [batch, choices, seq]: dim 1
        read the choices as the sequence); else dim 1 ([batch, seq, hidden] embeddings)."""
        if self.batch_axes.get(spec.name, 0) == 1:
            return 0
        return len(spec.shape) - 1 if spec.dtype in ("int64", "int32") else 1

    def _token_input(self, specs):
        """The first integer (token) input of 2 or more dims, else None."""
        return next((s for s in specs if s.dtype in ("int64", "int32") and len(s.shape) >= 2), None)

    def _guess_seq(self, specs) -> int:
        tok = self._token_input(specs)
        return int(tok.shape[self._seq_axis(tok)]) if tok is not None else 0

    def _tokens_per_sample(self, specs) -> int | None:
        """The tokens of one sample of a [batch, choices, ..., seq] token input (a multiple-choice export: every
        sequence of a sample is trained on, choices x seq, as wattlint.frontends.torch counts them and
        wattlint.plan._sequences_per_sample reads them), stated; None for any other input."""
        tok = self._token_input(specs)
        if tok is None or len(tok.shape) < 3 or self.batch_axes.get(tok.name, 0) != 0:
            return None
        per = [int(d) for d in tok.shape[1:]]
        seq, total = per[-1], 1
        for d in per:
            total *= d
        if total == seq:
            return None
        self.assumptions.append(
            f"tokens per sample: {' x '.join(map(str, per))} = {total:,} ({tok.name} {list(tok.shape)}: the sequence "
            f"is its last dim, {seq} tokens; the dims between the batch and it count the sequences of a sample, e.g. "
            f"a multiple-choice model's choices); --tokens counts steps by these"
            + (f", also with --seq-len {self.seq_len}: that is one sequence's length (the last dim), not the tokens "
               f"per sample" if self.seq_len else ""))
        return total

    def _spec(self, name) -> tuple[str, tuple]:
        dt, shape = self.types.get(name, ("float32", None))
        return dt, tuple(shape) if shape is not None else ()

    def _trainable(self, g) -> set[str]:
        """Float initializers consumed as data (not shapes, not BatchNorm running stats): the parameters.

        The TorchScript exporter deduplicates equal initializers (e.g. the all-ones LayerNorm weights of a fresh
        model) and re-creates each parameter as ``Identity(shared)`` named after it: each such alias is a
        parameter of its own; the shared initializer counts only where it is used directly."""
        floats = {n for n, t in self.inits.items() if _ONNX_DTYPES.get(t.data_type) in _FLOAT and C.numel(t.dims) > 1}
        floats |= self._one_element_params(g)
        self.param_tensors = {n: self.inits[n] for n in floats}
        for n in g.node:
            if n.op_type == "Identity" and n.input and n.output and n.input[0] in self.param_tensors:
                floats.add(n.output[0])
                self.param_tensors[n.output[0]] = self.param_tensors[n.input[0]]
        used = set()
        stack = [g]
        while stack:
            gr = stack.pop()
            for n in gr.node:
                skip = ops.SHAPE_INPUTS.get(n.op_type, ())
                if n.op_type == "Identity" and n.output and n.output[0] in self.param_tensors:
                    continue
                for i, name in enumerate(n.input):
                    if name in floats and i not in skip:
                        used.add(name)
                for a in n.attribute:
                    if a.type == 5:
                        stack.append(a.g)
                    elif a.type == 10:
                        stack.extend(a.graphs)
        self.mask_buffers = self._mask_buffers(g, used)
        return used - set(self.mask_buffers)

    def _one_element_params(self, g) -> set[str]:
        """One-element float initializers that are a trainable op's weight or bias (a [1] classifier bias: BERT's
        multiple-choice head): input B / C of a Gemm, B of a MatMul, W / B of a Conv, the bias of the Add right
        after a MatMul / Gemm. Other one-element constants (scales, epsilons, fill values) are no parameters."""
        one = {n for n, t in self.inits.items() if _ONNX_DTYPES.get(t.data_type) in _FLOAT and C.numel(t.dims) == 1
               and len(t.dims) >= 1}
        if not one:
            return set()
        slots = {"Gemm": (1, 2), "MatMul": (1,), "Conv": (1, 2), "ConvTranspose": (1, 2)}
        gemm_out = {o for n in g.node if n.op_type in ("MatMul", "Gemm") for o in n.output}
        out = set()
        for n in g.node:
            for i in slots.get(n.op_type, ()):
                if i < len(n.input) and n.input[i] in one:
                    out.add(n.input[i])
            if n.op_type == "Add" and len(n.input) == 2:
                for a, b in ((0, 1), (1, 0)):
                    if n.input[a] in gemm_out and n.input[b] in one:
                        out.add(n.input[b])
        return out

    def _mask_buffers(self, g, used) -> dict[str, int]:
        """The float initializers of ``used`` that are attention-mask buffers, not parameters (name -> elements):
        nanoGPT's registered ``bias`` = tril(ones(T, T)) read by ``masked_fill(bias == 0, -inf)``, an additive
        triu(-inf, 1) buffer added to the scores; used only as the mask of attention patterns
        (:func:`.onnx_patterns.mask_buffers`), their values those of a mask (:func:`.onnx_patterns.mask_valued`). A
        torch module's buffer gets no gradient and no optimizer state; counted as a parameter, a 1024 x 1024 one
        added 1M parameters per layer, with their AdamW state, optimizer passes and all-reduce bytes."""
        from .onnx_patterns import mask_buffers, mask_valued

        if not self.attn_found or not used:
            return {}
        matches, producer, consumers = self.attn_found
        nodes = g.node
        consts = set(self.inits) | {o for n in nodes if n.op_type == "Constant" for o in n.output}
        sub: set[str] = set()  # names a subgraph reads: its uses there are not followed, so not a buffer
        for n in nodes:
            sub.update(_subgraph_inputs(n))
        stop = sub | {o.name for o in g.output}
        aliases = {n for n in self.param_tensors if n not in self.inits}
        found = mask_buffers(sorted(used), nodes, producer, consumers, matches, consts, stop, aliases)
        data = (self.folder, self.path.resolve().parent, self.path)
        checked: dict = {}
        out = {}
        for name, needs in found.items():
            t = self.param_tensors[name]
            key = (t.name, frozenset(needs))
            if key not in checked:
                checked[key] = mask_valued(t, needs, data)
            if checked[key]:
                out[name] = C.numel(t.dims)
        return out

    def _loss_ancestors(self, g) -> set[str] | None:
        """Tensor names the loss output depends on; backward is synthesized only for nodes that produce them, and
        only their consumers count as uses that need a gradient (autograd's accumulate). A shape-only read is no
        such dependence: nothing is followed through the input of a Shape / Size node or an input position listed in
        ``ops.SHAPE_INPUTS`` (a Reshape's target shape, a Gather's indices), as no gradient flows there."""
        outs = self._loss_plan(g)[1]
        if not outs:
            return None
        producer = {}
        for n in g.node:
            for o in n.output:
                producer[o] = n
        seen = set(outs)
        stack = list(outs)
        while stack:
            n = producer.get(stack.pop())
            if n is None:
                continue
            skip = range(len(n.input)) if n.op_type in _SHAPE_ONLY else ops.SHAPE_INPUTS.get(n.op_type, ())
            for i in [x for k, x in enumerate(n.input) if k not in skip] + _subgraph_inputs(n):
                if i and i not in seen:
                    seen.add(i)
                    stack.append(i)
        return seen

    def _loss_plan(self, g) -> tuple[str, list, tuple | None]:
        """The loss the PyTorch frontend assumes for the same model (torch._loss), read from the graph outputs:
        ("ce", logits outputs, token input) for every floating-point output named ``logits`` / ``*_logits`` /
        ``logits_*`` (not a router's), else a single 2-D output with more than one class, else a single output of 3
        or more dims whose leading dims are an integer input's shape and whose last dim is the size of an embedding
        table the graph gathers from (any size when it gathers from none) -- a token-level cross-entropy; else
        ("scalar", [out]) for a single scalar output; else ("sum", every floating-point output)."""
        floats = [o.name for o in g.output if self.types.get(o.name, (None, None))[0] in _FLOAT]
        shape_of = {o: self.types.get(o, (None, None))[1] for o in floats}
        named = [o for o in floats if shape_of[o] is not None and len(shape_of[o]) >= 1
                 and (o == "logits" or o.endswith("_logits") or o.startswith("logits_")) and "router_logits" not in o]
        token = None
        if not named and len(floats) == 1 and shape_of[floats[0]] is not None:
            shape = tuple(shape_of[floats[0]])
            if len(shape) == 2 and shape[1] > 1:
                named = floats
            elif len(shape) >= 3 and shape[-1] >= 2:
                inputs = {i.name for i in g.input} - set(self.inits)
                vocabs = {int(self.inits[n.input[0]].dims[0]) for n in g.node
                          if n.op_type == "Gather" and n.input and n.input[0] in self.inits
                          and len(self.inits[n.input[0]].dims) == 2
                          and _ONNX_DTYPES.get(self.inits[n.input[0]].data_type) in _FLOAT
                          and next((a.i for a in n.attribute if a.name == "axis"), 0) == 0}
                for i in (x.name for x in g.input if x.name in inputs):
                    dt, ishape = self.types.get(i, (None, None))
                    if dt in ("int64", "int32") and ishape is not None and len(ishape) >= 2 \
                            and tuple(ishape) == shape[:-1] and (not vocabs or shape[-1] in vocabs):
                        named, token = floats, (i, tuple(ishape))
                        break
        if named:
            return "ce", named, token
        if len(floats) == 1 and shape_of[floats[0]] is not None and not shape_of[floats[0]]:
            return "scalar", floats, None
        return "sum", floats, None

    # ---- the node walk --------------------------------------------------------------------------------------------
    def _walk(self, g, *, scale: int, in_subgraph: bool) -> None:
        self.scopes.append(g)
        try:
            self._walk_scope(g, scale=scale, in_subgraph=in_subgraph)
        finally:
            self.scopes.pop()

    def _walk_scope(self, g, *, scale: int, in_subgraph: bool) -> None:
        types = self.types
        shared = self.scope_types.shared
        type_of = self._type_of
        half = self.half
        grad = self.grad
        attn = self.attn if not in_subgraph else {}
        uses: dict[str, int] = {}
        for node in g.node:
            for i in node.input:
                uses[i] = uses.get(i, 0) + 1
        matmul_out: dict[str, int] = {}  # MatMul / Gemm output read once -> index of its forward record
        for idx, node in enumerate(g.node):
            op_type, domain = node.op_type, node.domain
            self.at = (op_type, node.name)  # named in an internal-error report
            if shared:
                for o in node.output:
                    if o in shared:  # a sibling subgraph's tensor of this name (a shape computation, a constant
                        # alias, one that needs a gradient) is not this one: its definition here starts afresh
                        self.shape_consts.discard(o)
                        grad.discard(o)
                        self.alias.pop(o, None)
                        self.const_names.discard(o)
            module, mtype = self._module_of(node)
            qual = f"onnx::{op_type}" if domain in ("", "ai.onnx") else f"{domain}::{op_type}"
            if op_type in ("Constant", "Shape", "Size") and domain in ("", "ai.onnx"):  # metadata: fast path
                self.shape_consts.update(node.output)
                self._record(qual, OpKind.VIEW, module, mtype, "int64", (), _FREE, Status.IGNORED, scale)
                continue
            handler = ops.handler_for(op_type, domain)
            ins = list(node.input)
            if op_type in _LAYOUT_VIEWS and ins and ins[0] in self.attn_saved_outs and not in_subgraph \
                    and domain in ("", "ai.onnx"):
                # torch's fused attention writes O laid out [B, S, H, D]: its transpose(1, 2).reshape(B, S, H * D) is a
                # view of the same storage, so what a later op saves of it is the O the attention already saved
                self.attn_saved_outs.update(o for o in node.output if o)
            in_info = [(type_of(i) if i in shared else types.get(i, (None, None))) if i else (None, None)
                       for i in ins]
            out_info = [type_of(o) if o in shared else types.get(o, (None, None)) for o in node.output]
            # shape computations (Shape -> Gather -> Concat -> Reshape targets) are metadata, not work
            shape_only = bool(ins) and all((not i) or i in self.shape_consts or
                                           (i in self.inits and self.inits[i].data_type in (6, 7))
                                           for i in ins)
            if op_type in ("Shape", "Size") or (shape_only and op_type not in ("If", "Loop", "Scan")):
                self.shape_consts.update(node.output)
                self._record(qual, OpKind.VIEW, module, mtype, "int64", (), Cost(kind=OpKind.VIEW),
                             Status.IGNORED, scale)
                continue
            if op_type == "Identity" and ins and (ins[0] in self.inits or ins[0] in self.alias) and node.output:
                # exporters alias shared initializers through Identity: the output is still a constant
                self.alias[node.output[0]] = self.alias.get(ins[0], ins[0])
                self.const_names.add(node.output[0])
                continue_grad = node.output[0] in self.trainable
                if continue_grad:
                    self._record(f"onnx::{op_type}", OpKind.VIEW, module, mtype, "float32", (), Cost(kind=OpKind.VIEW),
                                 Status.IGNORED, scale)
                    continue
            for i in ins:
                if i and i in self.trainable and i not in self.first_use:
                    self.first_use[i] = module
            if not in_subgraph and node.output and node.output[0] in self.param_views:
                # a parameter re-laid-out (Slice / Concat / Unsqueeze / Transpose of weights only): PyTorch uses the
                # weight in place; its consumers read a constant, its gradient reaches the parameter directly
                self.const_names.update(o for o in node.output if o)
                if any(r in grad for r in self.param_views[node.output[0]]):
                    grad.update(o for o in node.output if o)
                self._record(qual, OpKind.VIEW, module, mtype, _first_float(in_info, out_info), (), _FREE,
                             Status.IGNORED, scale)
                self.param_view_nodes = getattr(self, "param_view_nodes", 0) + 1
                continue
            if handler is None:
                self._record(qual, OpKind.OTHER, module, mtype, _first_float(in_info, out_info), (),
                             Cost(kind=OpKind.OTHER), Status.UNSUPPORTED, scale)
                continue
            skip = ops.SHAPE_INPUTS.get(op_type, ())
            in_grad = [bool(i) and i in grad and k not in skip for k, i in enumerate(ins)]
            dtype = _first_float(in_info, out_info)
            match = attn.get(idx)
            bias_at = self._bias_input(op_type, ins, in_info, out_info, matmul_out)
            ac_fwd: list = []
            ac_bwd: list = []
            if self.autocast:
                dtype, in_dtypes, out_dtypes, ac_fwd, ac_bwd = self._autocast_node(
                    node, ins, in_info, out_info, skip, match, idx, bias_at)
            else:
                if half and dtype == "float32":
                    dtype = "float32" if op_type in _FP32_OPS else half
                    if op_type in _GEMM_OPS and self.gemm_dtype:
                        dtype = self.gemm_dtype
                in_dtypes = [_cast(d, half) for d, _ in in_info]
                out_dtypes = [_cast(d, half) for d, _ in out_info]
                if op_type in _FP32_OPS and half:
                    out_dtypes = ["float32" for _ in out_dtypes]
            n = ops.Node(op_type, domain, _attrs(node), [s for _, s in in_info], in_dtypes,
                         [s for _, s in out_info], out_dtypes, ins, list(node.output),
                         [bool(i) and (i in self.const_names or i in self.shape_consts) for i in ins], in_grad,
                         dtype)
            if op_type == "MatMul" and domain in ("", "ai.onnx") and len(ins) > 1 and ins[1] in self.linear_weights \
                    and not in_subgraph:
                n.attrs["linear_weight"] = 1  # its weight gradient oriented as nn.Linear's (ops._matmul)
            if op_type == "Dropout" and domain in ("", "ai.onnx"):
                self._dropout_mode(n, ins, scale)
            if op_type in ("If", "Loop", "Scan"):
                self._control_flow(node, n, module, mtype, qual, scale)
                continue
            if op_type == "BatchNormalization":
                self.has_bn = True
            try:
                ops.check_axis(n)  # before the fused patterns too: a Softmax of an attention pattern skips _softmax
                if match is not None:
                    oc = self._fused_attention(match, idx, n)
                else:
                    oc = handler(n)
            except ops.Malformed as e:
                raise InputError(f"{self.path}: malformed graph: node {node.name or op_type!r} ({op_type}): {e}") \
                    from None
            except ops.Unsupported as e:
                self.unknown += 1
                self.failed[f"{op_type} ({e})"] = self.failed.get(f"{op_type} ({e})", 0) + 1
                self._record(qual, OpKind.OTHER, module, mtype, dtype, _shapes(n), Cost(kind=OpKind.OTHER),
                             Status.UNSUPPORTED, scale)
                continue
            except (ArithmeticError, ValueError, TypeError, IndexError, KeyError) as e:
                self.unknown += 1
                key = f"{op_type} ({type(e).__name__})"
                self.failed[key] = self.failed.get(key, 0) + 1
                self._record(qual, OpKind.OTHER, module, mtype, dtype, _shapes(n), Cost(kind=OpKind.OTHER),
                             Status.UNSUPPORTED, scale)
                continue
            if oc.out is not None and node.output and out_info[0][1] is None:
                # inference left this output unknown (e.g. a contrib op): the handler knows it
                found = (out_info[0][0] or dtype, tuple(oc.out))
                if node.output[0] in shared:  # for this scope; the flat table only where it knows none
                    self.found_types[(id(g), node.output[0])] = found
                    if types.get(node.output[0], (None, None))[1] is None:
                        types[node.output[0]] = found
                else:
                    types[node.output[0]] = found
                self.shape_fallback += 1
            if op_type == "Conv" and _is_folded_bn(node):
                self.folded_bn = True
                self.folded_convs.add(len(self.fwd))  # index the conv's forward record is about to take
            elif op_type == "Conv" and len(node.input) > 2 and _PARAM_BIAS.search(node.input[2] or ""):
                self.own_bias_convs.add(len(self.fwd))  # the model's own bias parameter: no BatchNorm folded in
            if bias_at is not None and oc.fwd.flops:
                oc = self._fuse_bias(ins, n, oc, matmul_out, bias_at, scale)
            status = Status.IGNORED if oc.ignored else Status.HANDLED
            call = 0
            if oc.lib_call:  # one library call (a cuDNN RNN): its records of a phase are one host launch
                self.lib_calls += 1
                call = self.lib_calls
            for c, cdt, shp in ac_fwd:  # autocast's casts of this op's inputs, launched before it
                self._record("autocast::_to_copy", OpKind.MEMORY, module, mtype, cdt, (shp,), c, Status.HANDLED,
                             scale)
            shapes = _shapes(n)
            if match is not None and idx == getattr(match, "last", None) and hasattr(match, "out") \
                    and not hasattr(match, "affine") and not hasattr(match, "grouped"):
                # a fused activation (GELU, SiLU) on its last node: shaped as the one kernel it is (its input x),
                # not as that node's operands (a scalar 0.5 and a partial product)
                xs = self.types.get(match.x, (None, None))[1]
                shapes = (tuple(xs),) if xs is not None else shapes
            for c in (oc.fwd, *oc.more):
                self._record(qual, c.kind, module, mtype, dtype, shapes, c, status, scale, call=call)
            if op_type in ("MatMul", "Gemm") and match is None and node.output and uses.get(node.output[0]) == 1:
                matmul_out[node.output[0]] = len(self.fwd) - 1  # its GEMM record: a bias Add after it joins it
            # gradient flow: outputs need a gradient when a data input does and the op is differentiable
            if any(in_grad) and op_type not in ops.NON_DIFFERENTIABLE_OUTPUTS:
                for o, (odt, _) in zip(node.output, out_info):
                    if o and (odt in _FLOAT or odt is None or op_type in ops.STRAIGHT_THROUGH):
                        grad.add(o)
                        if op_type == "QuantizeLinear" and not self.straight_through:
                            self.straight_through = True
                            self.assumptions.append("QuantizeLinear -> DequantizeLinear (fake quantization, "
                                                    "quantization-aware training): gradients pass straight through "
                                                    "(one masked copy per pair), the weights stay trained in float")
                if self.on_loss_path is None or in_subgraph or any(o in self.on_loss_path for o in node.output):
                    self._count_grad_uses(node, in_grad, match, idx, module, mtype)
                on_path = self.on_loss_path is None or in_subgraph or any(o in self.on_loss_path
                                                                          for o in node.output)
                if oc.bwd and on_path:
                    self.bwd.append([self._rec(qual, c.kind, module, mtype, Phase.BACKWARD, dtype, shapes, c,
                                               Status.HANDLED, scale, call=call) for c in oc.bwd])
                    self.bwd_of_fwd[id(self.bwd[-1])] = len(self.fwd) - 1  # the group's node's last forward record
                    for key, b in oc.saved:
                        if key and b:
                            if isinstance(key, str) and key in self.attn_saved_outs:
                                continue  # a layout-only view of a fused attention's output, saved with it
                            self.saved[self._scoped_name(key)] = b * scale
                            if not in_subgraph and isinstance(key, str) and key.endswith("#qkvo"):
                                self.attn_saved_outs.add(key[:-len("#qkvo")])
                if ac_bwd and on_path:  # the gradients' casts (autograd casts each back to its input's dtype)
                    self.bwd.append([self._rec("autocast::_to_copy", OpKind.MEMORY, module, mtype, Phase.BACKWARD,
                                               cdt, (shp,), c, Status.HANDLED, scale) for c, cdt, shp in ac_bwd])

    # ---- fused attention, gradient accumulation -------------------------------------------------------------
    def _find_attention(self, g) -> dict:
        from .onnx_patterns import (find_attention, find_gelu, find_groupnorm, find_layernorm, find_silu, is_causal,
                                    mask_positions)

        nodes = g.node
        has_softmax = has_erf = has_mean = has_sigmoid = has_inorm = False
        for n in nodes:
            if n.op_type == "Softmax":
                has_softmax = True
            elif n.op_type in ("Erf", "Tanh"):
                has_erf = True
            elif n.op_type == "ReduceMean":
                has_mean = True
            elif n.op_type == "Sigmoid":
                has_sigmoid = True
            elif n.op_type == "InstanceNormalization":
                has_inorm = True
        if not (has_softmax or has_erf or has_mean or has_sigmoid or has_inorm):
            return {}
        producer, consumers = {}, {}
        for i, n in enumerate(nodes):
            for o in n.output:
                producer[o] = i
            for x in n.input:
                consumers.setdefault(x, []).append(i)
        good: dict = {}
        if has_erf:
            gelus = find_gelu(nodes, producer, consumers, self._scalar_const(nodes, producer),
                              frozenset(o.name for o in g.output))
            # a tanh-GELU written in Python (HF gelu_new / nanoGPT's NewGELU: a Pow cube, sqrt(2/pi) folded; HF
            # gelu_fast: factored): eager PyTorch runs its ~8 ops as ~8 kernels (the PyTorch path prices them so);
            # the exporters' F.gelu(approximate="tanh") (TorchScript: its cube x * (x * x); dynamo: sqrt(2/pi)
            # computed in the graph) is one kernel
            eager = {id(m) for m in gelus.values() if m.python}
            for i, m in gelus.items():
                if self.types.get(m.x, (None, None))[1] is not None and id(m) not in eager:
                    good[i] = m
            erf = len({id(m) for m in gelus.values() if m.approximate != "tanh"})
            tanh = len({id(m) for m in gelus.values() if m.approximate == "tanh"}) - len(eager)
            if erf:
                self.assumptions.append(f"{erf} erf-GELU decompositions "
                                        f"(Div-Erf-Add-Mul-Mul) costed as one GELU, as a GPU runs F.gelu")
            if tanh:
                self.assumptions.append(f"{tanh} tanh-GELU decompositions (0.5 x (1 + Tanh(sqrt(2/pi) (x + 0.044715 "
                                        f"x^3))), x^3 as Muls or sqrt(2/pi) computed in the graph: the exporters' "
                                        f"F.gelu(approximate='tanh')) costed as one GELU kernel (and one "
                                        f"gelu_backward), as a GPU runs F.gelu")
            if eager:
                self.assumptions.append(f"{len(eager)} tanh-GELUs written in Python (x^3 a Pow with sqrt(2/pi) "
                                        f"folded: Hugging Face's gelu_new, NewGELU; or factored, x * 0.79788 * (1 + "
                                        f"0.044715 x x): gelu_fast) priced op by op, as eager PyTorch runs them (one "
                                        f"kernel per op); F.gelu(approximate='tanh') would be one kernel")
        if has_mean:
            lns = find_layernorm(nodes, producer, consumers)
            for i, m in lns.items():
                if self.types.get(m.x, (None, None))[1] is not None:
                    good[i] = m
            if lns:
                self.assumptions.append(f"{len({id(m) for m in lns.values()})} decomposed LayerNorms (ReduceMean-Sub-"
                                        f"Pow-ReduceMean-Add-Sqrt-Div) costed as one layer_norm kernel")
        if has_sigmoid:
            silus = {i: m for i, m in find_silu(nodes, producer, consumers).items()
                     if self.types.get(m.x, (None, None))[1] is not None}
            good.update(silus)
            if silus:
                self.assumptions.append(f"{len({id(m) for m in silus.values()})} SiLU decompositions "
                                        f"(Sigmoid-Mul(x, Sigmoid(x))) costed as one silu kernel (and one "
                                        f"silu_backward), as a GPU runs nn.SiLU / F.silu")
        if has_inorm:
            gns = {}
            for i, m in find_groupnorm(nodes, producer, consumers).items():
                x = self.types.get(m.x, (None, None))[1]
                gx = self.types.get(m.grouped, (None, None))[1]
                y = self.types.get(nodes[max(j for j in m.members if nodes[j].op_type == "Reshape")].output[0],
                                   (None, None))[1]
                # [N, C, *] read as [N, G, C/G * *] and given back as [N, C, *]
                if x and gx and y and len(x) >= 2 and len(gx) >= 2 and tuple(y) == tuple(x) and gx[0] == x[0] \
                        and gx[1] and x[1] % gx[1] == 0 and C.numel(gx) == C.numel(x):
                    gns[i] = m
            good.update(gns)
            if gns:
                self.assumptions.append(f"{len({id(m) for m in gns.values()})} decomposed GroupNorms (Reshape-"
                                        f"InstanceNormalization-Reshape-Mul-Add) costed as one native_group_norm "
                                        f"kernel (and one native_group_norm_backward), as a GPU runs nn.GroupNorm")
        matches = find_attention(nodes, producer, consumers) if has_softmax else {}
        if not matches:
            return good
        self.attn_found = (matches, producer, consumers)
        verdicts: dict = {}
        causal_n = total = 0
        for m in {id(m): m for m in matches.values()}.values():
            self._fold_qk_scales(m, nodes, producer, consumers)
            q, k, v = (self.types.get(x, (None, None))[1] for x in (m.q, m.k, m.v))
            if not q or not k or not v or len(q) < 2 or len(k) < 2 or len(v) < 2 or q[-1] != k[-2] \
                    or k[-1] != v[-2]:
                continue
            sq, d, sk, dv = q[-2], q[-1], k[-1], v[-1]
            bh = C.numel(q[:-2])
            b = q[0] if len(q) >= 3 else 1
            h = bh // b if b else 1
            kvh = None
            kb = C.numel(k[:-2])
            if kb and kb != bh and bh % kb == 0 and b and kb % b == 0:
                kvh = kb // b
            causal = None
            if m.masks:
                sig = _mask_signature(m.masks, nodes, producer, consumers)
                # masked_fill(mask) vs masked_fill(~mask), scores + mask
                pol = tuple((x in m.blocking, x in m.additive) for x in m.masks)
                if sig and (sig, pol, sq, sk) in verdicts:
                    causal = verdicts[(sig, pol, sq, sk)]
                else:
                    from .onnx_fold import evaluate_values

                    # a mask too large to hold (a long sequence) is evaluated at sampled rows and columns
                    grid = (sq, sk, *mask_positions(sq, sk))
                    try:
                        values = evaluate_values(g, self.types, targets=m.masks, producer=producer, grid=grid)
                        if not any(x in values and getattr(values[x], "size", 2) != 1 for x in m.masks):
                            # the mask depends on an input (attention_mask): read its causal part with an
                            # all-ones (no padding) input (the scale and fill constants beside it, single values,
                            # are no mask: HF 4.36-4.4x's causal.masked_fill(padding, min) was never re-read)
                            values = evaluate_values(g, self.types, targets=m.masks, producer=producer,
                                                     feeds=self._ones_feeds(g), grid=grid)
                    except Exception:
                        values = {}
                    # a mask buffer stored as external data is read from the model's folder, as tied weights are
                    try:
                        causal = is_causal(m.masks, nodes, producer, values, self.types, sq, sk, m.blocking,
                                           self.inits, m.additive,
                                           (self.folder, self.path.resolve().parent, self.path))
                    except InputError as e:  # its data file missing or cut short: weights are not needed to
                        # analyze a model, so neither is this file; the price says what it could not read
                        causal = None
                        note = (f"{e}; until then its attention is priced over all query / key pairs (as not "
                                f"causal: up to 2x its attention FLOPs)")
                        if note not in self.assumptions:
                            self.assumptions.append(note)
                    if sig:
                        verdicts[(sig, pol, sq, sk)] = causal
            m.params = (b, h, sq, sk, d, dv, bool(causal), kvh)
            total += 1
            causal_n += bool(causal)
            for i in m.members:
                good[i] = m
        if total:
            self.assumptions.append(f"{total} attention patterns (MatMul-Softmax-MatMul) costed as fused "
                                    f"attention, as a GPU runs them (torch SDPA); {causal_n} causal (from the mask)")
        return good

    def _fold_qk_scales(self, m, nodes, producer, consumers) -> None:
        """The scale applied to Q or K before ``MatMul(Q, K^T)`` (the TorchScript export of SDPA multiplies Q and
        K^T by sqrt(scale) each; eager code may write ``q * scale`` or ``q / sqrt(d)``): a Mul / Div by one value
        whose only consumer is the pattern's QK^T MatMul is part of the fused kernel (its scale, docs/COSTS.md),
        so it joins the pattern at no cost and Q / K become the tensors it scaled."""
        for pos in (0, 1):
            t = m.q if pos == 0 else m.k
            pi = producer.get(t)
            if pi is None or consumers.get(t, []) != [m.qk]:
                continue
            p = nodes[pi]
            if p.op_type not in ("Mul", "Div") or p.domain not in ("", "ai.onnx") or len(p.input) != 2:
                continue
            shapes = [self.types.get(x, (None, None))[1] for x in p.input]
            out = self.types.get(t, (None, None))[1]
            # the data operand has the output's shape; the other (the divisor of a Div) holds one value
            data = [j for j in (0, 1) if shapes[j] is not None and out is not None and tuple(shapes[j]) == tuple(out)
                    and shapes[1 - j] is not None and C.numel(shapes[1 - j]) == 1 and (p.op_type == "Mul" or j == 0)]
            if not data:
                continue
            m.members.add(pi)
            if pos == 0:
                m.q = p.input[data[0]]
            else:
                m.k = p.input[data[0]]

    def _ones_feeds(self, g) -> dict:
        import numpy as np

        feeds = {}
        for vi in g.input:
            dt, shape = self.types.get(vi.name, (None, None))
            if shape is not None and dt in ("int64", "int32", "bool") and C.numel(shape) <= 1 << 22:
                feeds[vi.name] = np.ones(shape, dtype={"int64": np.int64, "int32": np.int32, "bool": np.bool_}[dt])
        return feeds

    def _fused_unary(self, op_type: str, m, idx, n) -> "ops.OpCost":
        """A decomposed activation (GELU, SiLU) priced as the one ``op_type`` kernel on its last node, free before."""
        if idx != m.last:
            return ops.OpCost(Cost(kind=OpKind.ELEMENTWISE), [], [])
        x = self.types[m.x][1]
        attrs = {"approximate": "tanh"} if getattr(m, "approximate", "none") == "tanh" else {}
        node = ops.Node(op_type, "", attrs, [x], [n.dtype], [x], [n.dtype], [m.x], [m.out], [False],
                        [m.x in self.grad], n.dtype)
        return ops._unary(node)

    def _scalar_const(self, nodes, producer):
        """tensor name -> its single float value (a Constant node's, an initializer's), or None: the constants the
        tanh-GELU match reads."""
        import numpy as np
        from onnx import numpy_helper

        cache: dict = {}

        def value(t):
            if t in cache:
                return cache[t]
            v = None
            init = self.inits.get(t)
            if init is not None and C.numel(tuple(init.dims)) == 1 and init.data_location != 1:
                arr = numpy_helper.to_array(init)
            else:
                pi = producer.get(t)
                n = nodes[pi] if pi is not None else None
                arr = None
                if n is not None and n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                    for a in n.attribute:
                        if a.name == "value_float":
                            arr = np.array(a.f)
                        elif a.name == "value_int":
                            arr = np.array(a.i)
                        elif a.name == "value" and a.type == 4 and a.t.data_location != 1 \
                                and C.numel(tuple(a.t.dims)) == 1:
                            arr = numpy_helper.to_array(a.t)
            try:
                if arr is not None and arr.dtype.kind == "V":  # bf16 / fp8 (ml_dtypes): read as float32
                    arr = np.asarray(arr, dtype=np.float32)
                if arr is not None and arr.size == 1 and arr.dtype.kind in "fiu":
                    v = float(arr.reshape(-1)[0])
            except (TypeError, ValueError):
                v = None
            cache[t] = v
            return v

        return value

    def _fused_attention(self, m, idx, n) -> "ops.OpCost":
        if hasattr(m, "grouped"):  # decomposed GroupNorm
            if idx != m.last:
                return ops.OpCost(Cost(kind=OpKind.NORM), [], [])
            x = self.types[m.x][1]
            groups = int(self.types[m.grouped][1][1])
            grads = [m.x in self.grad] + [w in self.grad for w in m.weights]
            return ops.group_norm(x, groups, n.dtype, m.x, m.out, affine=m.affine, grad=any(grads),
                                  bias=len(m.weights) > 1)
        if hasattr(m, "silu"):  # SiLU
            return self._fused_unary("Swish", m, idx, n)
        if hasattr(m, "affine"):  # decomposed LayerNorm
            if idx != m.last:
                return ops.OpCost(Cost(kind=OpKind.NORM), [], [])
            x = self.types[m.x][1]
            grads = [m.x in self.grad] + [w in self.grad for w in m.weights]
            ins = [x] + [(x[-1],)] * len(m.weights)
            node = ops.Node("LayerNormalization", "", {"axis": -1}, ins, [n.dtype] * len(ins), [x], [n.dtype],
                            [m.x, *m.weights], [m.out], [False] + [True] * len(m.weights), grads, n.dtype)
            return ops._norm(node)
        if not hasattr(m, "pv"):  # GELU
            return self._fused_unary("Gelu", m, idx, n)
        if idx != m.pv:  # the cost sits on the last node of the pattern, where q, k and v are all known
            return ops.OpCost(Cost(kind=OpKind.ATTENTION), [], [])
        b, h, sq, sk, d, dv, causal, kvh = m.params
        grads = [x in self.grad for x in (m.q, m.k, m.v)]
        dt = self.half if self.precision == "fp8" else n.dtype  # fused attention stays in bf16 under fp8
        node = ops.Node("Attention", "", {}, [], [], n.out_shapes, n.out_dtypes, [m.q, m.k, m.v], [m.out],
                        [False] * 3, grads, dt)
        return ops._attention_core(node, b, h, sq, sk, d, dv, causal, kvh=kvh)

    # ---- CUDA autocast emulation (--precision fp16 / bf16 / fp8 on an fp32 graph) ------------------------------
    def _autocast_node(self, node, ins, in_info, out_info, skip, match, idx, bias_at):
        """The dtypes one node runs in under CUDA autocast, as :mod:`wattlint.frontends.torch` emulates it (its
        AUTOCAST_LOWER / AUTOCAST_FP32 lists, mapped onto ONNX ops), and the casts autocast launches for it.

        GEMM-class ops (MatMul, Gemm, Conv, fused attention, RNNs) cast their fp32 inputs to the half dtype (a
        weight once per forward; its gradient cast back to fp32 once in backward, a bias's not, as torch's bias
        gradient is a sum written in fp32) and write half; autocast's fp32 ops (layer / group / RMS norm, softmax,
        log_softmax, pow / exp / log / reciprocal, ...) cast half inputs to fp32 and write fp32; sum / cumsum read
        half and write fp32 without a cast; every other op runs in the dtype its inputs promote to (a half tensor
        with an fp32 one: fp32; scalars do not promote), and in backward autograd casts the gradient of a half
        input of such a mixed op back to half. Each cast of an activation is mirrored by a cast of its gradient,
        except into a norm / softmax, whose backward writes the gradient in its input's dtype.
        Returns (compute dtype, input dtypes, output dtypes, forward casts, backward casts); a cast is
        (Cost, source dtype, shape)."""
        half = self.half
        op = node.op_type
        sn = self._scoped_name
        fwd: list = []
        bwd: list = []

        def cur(i):
            d = in_info[i][0]
            return self.acdt.get(sn(ins[i]), d) if ins[i] and d in _FLOAT else d

        def is_float(i):
            return bool(ins[i]) and in_info[i][0] in _FLOAT and i not in skip

        def cast(name, shape, src, dst, *, bias=False, mirror=True):
            if shape is None or src == dst:
                return
            weight = name in self.const_names
            key = (sn(name), dst)
            if key in self.ac_casts:
                return
            if weight or len(shape) <= 2:  # weights cached for the step; one view of an activation is cast once
                self.ac_casts.add(key)
            k = C.numel(shape)
            fwd.append((Cost(0, k * C.dtype_bytes(src), k * C.dtype_bytes(dst), OpKind.MEMORY), src, tuple(shape)))
            if name in self.grad and not bias and mirror:  # its gradient back to the tensor's own dtype
                bwd.append((Cost(0, k * C.dtype_bytes(dst), k * C.dtype_bytes(src), OpKind.MEMORY), dst,
                            tuple(shape)))

        in_dt = [cur(i) for i in range(len(ins))]
        real_out = [d for d, _ in out_info]
        out_dt = list(real_out)

        def outs(dt):
            for j, d in enumerate(real_out):
                if d == "float32":
                    out_dt[j] = dt

        if op in ("If", "Loop", "Scan"):
            return _first_float(in_info, out_info), in_dt, out_dt, [], []
        if match is not None:  # a fused pattern: its casts at the node that carries its cost
            if hasattr(match, "pv"):  # attention
                dt = half
                if idx == match.pv:
                    for x in (match.q, match.k, match.v):
                        xd, xs = self.types.get(x, (None, None))
                        cast(x, xs, self.acdt.get(sn(x), xd), half)
                    p = getattr(match, "params", None)
                    if p and any(x in self.grad for x in (match.q, match.k, match.v)):
                        # the fused kernel's fp32 log-sum-exp cast for its backward, as torch's trace records it
                        k = p[0] * p[1] * p[2]
                        bwd.append((Cost(0, 4 * k, k * C.dtype_bytes(half), OpKind.MEMORY), "float32",
                                    (p[0], p[1], p[2])))
            elif hasattr(match, "affine"):  # decomposed LayerNorm: fp32
                dt = "float32"
                if idx == match.last:
                    xd, xs = self.types.get(match.x, (None, None))
                    cast(match.x, xs, self.acdt.get(sn(match.x), xd), "float32", mirror=False)
            else:  # GELU: in its input's dtype
                xd = self.types.get(match.x, (None, None))[0]
                dt = self.acdt.get(sn(match.x), xd) or half
            in_dt = [dt if d in _FLOAT else d for d in in_dt]
            outs(dt)
        elif op in _GEMM_OPS:
            for i in range(len(ins)):
                if is_float(i) and in_dt[i] == "float32":
                    cast(ins[i], in_info[i][1], "float32", half, bias=i == 2 and op in ("Gemm", "Conv", "ConvTranspose"))
                    in_dt[i] = half
            dt = self.gemm_dtype or half
            outs(half)
        elif bias_at is not None:  # the bias add of x @ W + b: part of the GEMM (addmm casts the bias)
            if in_dt[bias_at] == "float32":
                cast(ins[bias_at], in_info[bias_at][1], "float32", half, bias=True)
            in_dt = [half if is_float(i) else d for i, d in enumerate(in_dt)]
            dt = half
            outs(half)
        elif op in _AC_FP32 and not (op == "Softmax" and half == "float16"):
            for i in range(len(ins)):
                if is_float(i) and in_dt[i] in ("float16", "bfloat16"):
                    cast(ins[i], in_info[i][1], in_dt[i], "float32", mirror=op not in _AC_FP32_OWN_GRAD)
                    in_dt[i] = "float32"
            dt = "float32"
            outs("float32")
        elif op in _AC_FP32_SET_DTYPE or op == "Softmax":  # read half, accumulate and write fp32, no cast
            dt = "float32"
            outs("float32")
        elif op in ("BatchNormalization", "InstanceNormalization"):  # not on autocast's lists: the input's dtype
            dt = in_dt[0] if in_dt and in_dt[0] in _FLOAT else "float32"
            outs(dt)
        elif op == "Cast":
            dt = real_out[0] if real_out and real_out[0] in _FLOAT else _first_float(in_info, out_info)
        else:
            floats = [i for i in range(len(ins)) if is_float(i)]
            dims = [i for i in floats if in_info[i][1] is None or (len(in_info[i][1]) >= 1
                                                                   and not (ins[i] in self.const_names
                                                                            and C.numel(in_info[i][1]) == 1))]
            pool = dims or floats
            if not pool:
                dt = _first_float(in_info, out_info)
            else:
                dt = "float32" if any(in_dt[i] == "float32" for i in pool) else half
                if any(in_dt[i] not in ("float32", "float16", "bfloat16") for i in pool):
                    dt = next(in_dt[i] for i in pool)  # float64 and the like: as they are
                outs(dt)
                if dt == "float32" and op not in ops.NON_DIFFERENTIABLE_OUTPUTS:
                    for i in dims:
                        if in_dt[i] == half and ins[i] in self.grad:
                            xs = in_info[i][1]
                            if xs is not None:
                                k = C.numel(xs)
                                bwd.append((Cost(0, 4 * k, k * C.dtype_bytes(half), OpKind.MEMORY), "float32",
                                            tuple(xs)))
        for o, d in zip(node.output, out_dt):
            if o and d in _FLOAT:
                self.acdt[sn(o)] = d
        return dt, in_dt, out_dt, fwd, bwd

    def _bias_input(self, op_type, ins, in_info, out_info, matmul_out) -> int | None:
        """The input index of the bias vector of an Add that follows a MatMul / Gemm read only by it (x @ W + b:
        one addmm / cuBLAS epilogue on the GPU and on the PyTorch path), else None."""
        if op_type != "Add" or len(ins) != 2:
            return None
        y = out_info[0][1] if out_info else None
        for a, b in ((0, 1), (1, 0)):
            if ins[a] in matmul_out and (ins[b] in self.inits or ins[b] in self.alias):
                bs = in_info[b][1]
                if bs is not None and len(bs) == 1 and y and bs[0] == y[-1]:
                    return b
        return None

    def _fuse_bias(self, ins, n, oc, matmul_out, b, scale) -> "ops.OpCost":
        """MatMul + Add(bias vector) is one addmm / cuBLAS epilogue (as torch's nn.Linear runs it): the add's FLOPs
        and its read of the bias join the GEMM's record; the add is no kernel of its own (no launch), and it does not
        read the GEMM output again. Its backward (the bias gradient, a reduction) stays."""
        i = matmul_out[ins[1 - b]]
        r = self.fwd[i]
        extra = Cost(oc.fwd.flops, n.in_shapes[b][0] * C.dtype_bytes(n.in_dtypes[b] or n.dtype), 0)
        if scale != 1:
            extra = extra.scaled(scale)
        self.fwd[i] = dataclasses.replace(r, flops=r.flops + int(extra.flops),
                                          bytes_read=r.bytes_read + int(extra.bytes_read))
        return ops.OpCost(Cost(kind=OpKind.VIEW), oc.bwd, oc.saved, ignored=True)

    def _count_grad_uses(self, node, in_grad, match, idx, module, mtype) -> None:
        if match is not None and hasattr(match, "affine"):  # LayerNorm: x read by ReduceMean and Sub
            names = [match.x] if idx == match.last and match.x in self.grad else []
        elif match is not None and not hasattr(match, "pv"):  # GELU: x is read by the first node and a Mul
            names = [match.x] if idx == match.last and match.x in self.grad else []
        elif match is not None:
            if idx == match.qk:
                names = [match.q, match.k]
            elif idx == match.pv:
                names = [match.v]
            else:
                return
            names = [x for x in names if x in self.grad]
        else:
            names = [i for i, g in zip(node.input, in_grad) if g]
        views = self.param_views
        for x in names:
            for r in views.get(x, (x,)) if isinstance(x, str) else (x,):  # a re-laid-out weight: a use of its own
                self.grad_uses.setdefault(self._scoped_name(r), [0, module, mtype])[0] += 1

    def _grad_accumulation(self) -> None:
        """A tensor used by k consumers that need its gradient gets k-1 gradient additions (autograd's accumulate)."""
        recs = []
        for copy, emb in self.tied.items():
            # a tied output layer: one parameter, two uses: autograd adds the head's weight gradient into the
            # embedding's (one add over the embedding's gradient, as torch records it for GPT-2's wte)
            if copy in self.grad_uses and emb in self.trainable:
                u = self.grad_uses.pop(copy)
                hit = self.grad_uses.setdefault(emb, [0, self.first_use.get(emb, u[1]), ""])
                if not hit[2]:
                    hit[2] = self.module_types.get(hit[1], "")
                hit[0] += u[0]
        for name, (uses, module, mtype) in self.grad_uses.items():
            if uses < 2:
                continue
            dt, shape = self.types.get(name, (None, None)) if isinstance(name, str) else self._type_in(*name)
            if shape is None:
                continue
            dt = (self.acdt.get(name, "float32") if self.autocast and dt in _FLOAT else _cast(dt, self.half)) \
                or "float32"
            # k uses: k - 1 adds, each its own kernel (as autograd launches them), not one scaled k - 1 times
            c = C.elementwise("add", [shape, shape], shape, dt)
            recs.extend(self._rec("autograd::accumulate_grad", OpKind.ELEMENTWISE, module, mtype, Phase.BACKWARD, dt,
                                  (tuple(shape),), c, Status.HANDLED, 1) for _ in range(uses - 1))
        if recs:
            self.bwd.insert(0, recs)

    def _control_flow(self, node, n, module, mtype, qual, scale) -> None:
        """If: the branch a constant condition takes, else the costlier one; Loop: trip count x body; Scan: scan
        length x body. Each subgraph is walked once here (a dry run that is kept, not repeated), so nested Ifs cost
        time linear in their nodes."""
        self._record(qual, OpKind.OTHER, module, mtype, n.dtype, _shapes(n), Cost(kind=OpKind.OTHER),
                     Status.IGNORED, scale)
        attrs = {a.name: a for a in node.attribute}
        name = node.name or node.op_type
        if node.op_type == "If":
            missing = [k for k in ("then_branch", "else_branch") if k not in attrs or attrs[k].type != 5]
            if missing:
                raise InputError(f"{self.path}: malformed graph: node {name!r} (If) has no {missing[0]} "
                                 f"(an If has both branches)")
            cond = self._scalar(node.input[0]) if node.input and node.input[0] else None
            if cond is not None:  # a constant condition (also one folded from the bound shapes): that branch runs
                key = "then_branch" if cond else "else_branch"
                self.assumptions.append(f"If {node.name or ''}: the condition is the constant {bool(cond)}: its "
                                        f"{key.replace('_', ' ')} is counted")
                self._walk(attrs[key].g, scale=scale, in_subgraph=True)
                self._grad_outputs(node, attrs[key].g)
                return
            best, best_flops = None, -1
            for br in (attrs["then_branch"].g, attrs["else_branch"].g):  # dry runs; the costlier one is kept
                probe = self._probe(br, scale)
                f = sum(r.flops for r in probe.fwd[len(self.fwd):])
                if f > best_flops:
                    best, best_flops = (probe, br), f
            self._adopt(best[0])
            self.assumptions.append(f"If {node.name or ''}: the costlier branch is counted")
            self._grad_outputs(node, best[1])
            return
        body = attrs["body"].g if "body" in attrs and attrs["body"].type == 5 else None
        if body is None:
            raise InputError(f"{self.path}: malformed graph: node {name!r} ({node.op_type}) has no body")
        if node.op_type == "Loop":
            trips = self._int_value(node.input[0]) if node.input and node.input[0] else None
            label = f"Loop {node.name}" if node.name else "an unnamed Loop"
            if trips is None:
                trips = 1
                self.assumptions.append(f"{label}: trip count unknown, counted once")
            elif int(trips) < 0:
                self.assumptions.append(f"{label}: trip count {int(trips)} < 0, counted as 0 iterations")
            elif int(trips) > MAX_LOOP_TRIPS:
                raise InputError(f"{label}: trip count {int(trips):,} is more than {MAX_LOOP_TRIPS:,} iterations "
                                 "in one step: not a training graph this tool can price")
            trips = max(0, int(trips))
        else:
            nscan = int(attrs["num_scan_inputs"].i) if "num_scan_inputs" in attrs else 1
            first_scan = len(node.input) - nscan
            shp = n.in_shapes[first_scan] if 0 <= first_scan < len(n.in_shapes) else None
            axes = list(attrs["scan_input_axes"].ints) if "scan_input_axes" in attrs else [0]
            trips = shp[axes[0]] if shp and len(shp) > axes[0] else 1
        # body inputs that carry gradients: those bound to outer inputs that need one, and the loop-carried state
        # whose next value needs one (h = relu(h @ W) with W trained: every iteration after the first back-
        # propagates into h, so each is priced with its input-gradient GEMM)
        first = 2 if node.op_type == "Loop" else 0
        for bi, oi in zip(body.input[first:], node.input[first:]):
            if oi in self.grad:
                self.grad.add(bi.name)
        carried = max(0, len(node.input) - 2) if node.op_type == "Loop" else max(0, len(node.input) - nscan)
        states = list(zip(body.input[first:first + carried], body.output[(1 if node.op_type == "Loop" else 0):]))
        if any(bi.name not in self.grad for bi, _ in states):
            probe = self._probe(body, scale * trips)
            late = [bi.name for bi, bo in states if bo.name in probe.grad and bi.name not in self.grad]
            if not late:  # the dry run is the walk: kept
                self._adopt(probe)
                self._grad_outputs(node, body)
                return
            self.grad.update(late)
            self.assumptions.append(f"{node.op_type} {node.name or '(unnamed)'}: its loop-carried state needs a "
                                    f"gradient: every iteration is priced with its input-gradient work (the "
                                    f"first one's too, into the initial state)")
        self._walk(body, scale=scale * trips, in_subgraph=True)
        self._grad_outputs(node, body)

    def _probe(self, graph, scale) -> "_Analysis":
        """A dry run of ``graph`` (an If branch, a loop body) on a copy of this analysis: its records and gradient
        flow, with this analysis left as it was (the records, gradient set and use counts, notes and counters a
        walk adds). The copy's state is this analysis after the walk: :meth:`_adopt` takes it instead of walking
        the graph again."""
        import copy

        probe = copy.copy(self)
        for k, v in vars(self).items():
            if isinstance(v, dict):
                setattr(probe, k, {kk: (copy.copy(vv) if isinstance(vv, (list, set, dict)) else vv)
                                   for kk, vv in v.items()})
            elif isinstance(v, (list, set)):
                setattr(probe, k, copy.copy(v))
        probe._walk(graph, scale=scale, in_subgraph=True)
        return probe

    def _adopt(self, probe) -> None:
        """Take the state of a dry run (:meth:`_probe`) as this analysis's own, as if the walk had run here: its
        containers' contents are copied into this analysis's containers, whose identity an enclosing walk holds
        (``_walk``'s local ``grad`` and ``types``)."""
        for k, v in vars(probe).items():
            cur = self.__dict__.get(k)
            if cur is v:
                continue
            if isinstance(v, list) and type(cur) is list:
                cur[:] = v
            elif isinstance(v, (dict, set)) and type(cur) is type(v):
                cur.clear()
                cur.update(v)
            else:
                setattr(self, k, v)

    def _grad_outputs(self, node, body) -> None:
        if any(o.name in self.grad for o in body.output):
            self.grad.update(o for o in node.output if o)

    def _int_value(self, name):
        try:
            return int(self._scalar(name))
        except (TypeError, ValueError, OverflowError):  # not a constant (None), or not a whole number (nan, inf)
            return None

    def _scalar(self, name):
        """The single value of a constant: an initializer or a Constant node (``value``, ``value_int(s)``,
        ``value_float(s)``) of the graph being walked or of a graph enclosing it (a Loop's trip count inside an If
        branch reads the main graph's constant); None when ``name`` is none of these or holds more than one value.
        Looked up by scope, innermost first, as ONNX resolves names: sibling subgraphs (an If's two branches, two
        Loop bodies) may each define a constant of the same name. Never decodes a weight or reads external data."""
        tables = self.__dict__.get("_consts")
        if tables is None:
            tables = self._consts = _ConstTables()
        for gr in reversed(self.scopes or [self.model.graph]):
            table = tables.of(gr)
            if name in table:  # defined in this scope (a constant, or None: another node's output, an input)
                return table[name]
        return None

    def _type_of(self, name) -> tuple:
        """(dtype, shape) of ``name`` in the graph being walked, looked up by scope, innermost first, as
        :meth:`_scalar` looks up constants: what the innermost graph defining ``name`` declares (its value_info,
        inputs, outputs, initializers, Constant nodes) or what the walk found there, never a sibling subgraph's
        ``name`` (the flat ``types`` table holds the first one declared with a shape: an If branch's rank-3 ``s`` was
        read as the other branch's rank-2 ``s``, and a valid Softmax(axis=2) refused as out of range). Used for the
        names several graphs define (:attr:`ScopeTypes.shared`); the others are the flat table's."""
        for gr in reversed(self.scopes):
            if name in self.scope_types.of(gr):
                return self._type_in(id(gr), name)
        return self.types.get(name, (None, None))

    def _scoped_name(self, name):
        """``name``, or for a name several graphs define (:attr:`ScopeTypes.shared`) (id of the innermost graph
        being walked that defines it, ``name``): what is counted per tensor (gradient uses, saved activations) is
        not merged with a sibling subgraph's tensor of the same name."""
        if name not in self.scope_types.shared:
            return name
        for gr in reversed(self.scopes):
            if name in self.scope_types.of(gr):
                return (id(gr), name)
        return name

    def _type_in(self, gid, name) -> tuple:
        """(dtype, shape) of ``name`` in the graph of id ``gid`` (a key of :meth:`_scoped_name`)."""
        hit = self.scope_types.of_id(gid).get(name, (None, None))
        return hit if hit[1] is not None else self.found_types.get((gid, name), hit)

    def _record(self, op, kind, module, mtype, dtype, shapes, cost, status, scale, *, call: int = 0) -> None:
        self.fwd.append(self._rec(op, kind, module, mtype, Phase.FORWARD, dtype, shapes, cost, status, scale,
                                  call=call))

    @staticmethod
    def _rec(op, kind, module, mtype, phase, dtype, shapes, cost, status, scale, *, call: int = 0) -> OpRecord:
        """``call`` > 0: the record belongs to that library call (types.LIB_CALL; one host launch per phase)."""
        if scale != 1:
            cost = cost.scaled(scale)
        return OpRecord(op=op, kind=kind, module=module, phase=phase, dtype=dtype or "float32", shapes=shapes,
                        flops=int(cost.flops), bytes_read=int(cost.bytes_read), bytes_written=int(cost.bytes_written),
                        status=status, module_type=mtype, dims=lib_call_dims(tuple(cost.dims or ()), call))

    # ---- module names -----------------------------------------------------------------------------------------
    def _module_of(self, node) -> tuple[str, str]:
        path, cls = None, ""
        for p in node.metadata_props:
            if p.key == "namespace":  # torch.onnx dynamo exporter: ": pkg.Root/layer.0: torch...Linear/linear: aten"
                path, cls = _namespace_module(p.value)
                if "Norm" in cls and node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1 \
                        and node.input[1].endswith(".weight"):  # BatchNorm folded into the conv: name the conv
                    path, cls = node.input[1][: -len(".weight")], node.op_type
                break
        if path is None:
            scope = node.name.rpartition("/")[0]
            path = self.scope_cache.get(scope)
            if path is None:
                path = scope_to_module(node.name)
                m = _REUSE_SUFFIX.search(path)
                if m and path[:m.start()] in self.module_types:  # a module called twice: relu, relu_1 -> relu
                    path = path[:m.start()]
                self.scope_cache[scope] = path
        scope_type = _SCOPE_TYPES.get(node.op_type, "")
        if scope_type == "Linear" and node.op_type == "MatMul" and not any(i in self.inits for i in node.input):
            scope_type = "BatchMatMul"  # activation x activation: not a Linear layer
        current = self.module_types.get(path)
        if current is None:
            self.module_types[path] = cls or scope_type
        elif not current and scope_type:
            self.module_types[path] = scope_type
        elif {current, scope_type} == {"BatchMatMul", "Softmax"} and not cls:
            self.module_types[path] = "Attention"  # scores = QK^T, softmax, x V in one scope
        return path, self.module_types[path] or node.op_type

    # ---- loss, optimizer, notes -------------------------------------------------------------------------------
    def _loss(self, g) -> tuple[list, list]:
        kind, outs, token = self._loss_plan(g)
        if not outs:  # as the PyTorch frontend: a training estimate needs a loss
            raise InputError(f"{self.path}: the graph has no floating-point output to build a loss from: nothing to "
                             "train (an ONNX export of a training model ends in its logits or loss)")
        unknown = [o for o in outs if self.types.get(o, (None, None))[1] is None]
        if unknown:  # unknown, not a scalar: the loss cannot be sized
            self.assumptions.append(f"loss not costed: the shape of output {unknown[0]!r} is unknown (shape inference "
                                    f"could not resolve it)")
            return [], []
        if kind == "scalar":
            self.assumptions.append(f"loss: the forward returns a scalar, used as the loss (output {outs[0]!r})")
            return [], []
        pre, fwd, bwd = [], [], []
        dts, own = {}, {}
        for out in outs:
            dt, shape = self.types.get(out, ("float32", None))
            own[out] = _cast(dt, self.half) or "float32"  # the logits' dtype as the model writes them
            if self.autocast:  # cross_entropy is on autocast's fp32 list: half logits cast to fp32 first
                src = self.acdt.get(out, dt)
                own[out] = src or "float32"
                if kind == "ce" and src in ("float16", "bfloat16"):
                    k = C.numel(shape)
                    pre.append(self._rec("autocast::_to_copy", OpKind.MEMORY, "", "", Phase.FORWARD, src,
                                         (tuple(shape),), Cost(0, k * C.dtype_bytes(src), 4 * k, OpKind.MEMORY),
                                         Status.HANDLED, 1))
                    dt = "float32"
                else:  # sum reads the half output and accumulates in fp32 (autocast's fp32_set_opt_dtype)
                    dt = src
            # under autocast the dtype is autocast's own (the fp32 cast of half logits, the cross-entropy run in fp32
            # as torch runs it); otherwise an fp32 output of a model run in half (--precision on a held export) is half
            dts[out] = (dt if self.autocast else _cast(dt, self.half)) or "float32"
        self.loss_casts = len(pre)
        if kind == "sum":
            # as the PyTorch frontend: loss = sum of the outputs; backward starts from ones_like(loss) and reaches
            # each output through sum's backward (an expand: no kernel)
            for j, out in enumerate(outs):
                shape = tuple(self.types[out][1])
                fwd.append(self._rec("loss::sum", OpKind.REDUCTION, "", "", Phase.FORWARD, dts[out], (shape,),
                                     C.reduction(shape, dts[out], out_dtype="float32" if self.autocast else None),
                                     Status.HANDLED, 1))
                if j:  # the scalar sums added up
                    fwd.append(self._rec("loss::add", OpKind.ELEMENTWISE, "", "", Phase.FORWARD, "float32", ((), ()),
                                         C.elementwise("add", [(), ()], (), "float32"), Status.HANDLED, 1))
            bwd.append(self._rec("loss::ones_like", OpKind.MEMORY, "", "", Phase.BACKWARD, "float32", ((),),
                                 Cost(0, 0, 4, OpKind.MEMORY), Status.HANDLED, 1))
            self.assumptions.append(
                "loss: sum of the forward outputs (no classification logits recognised: neither one 2-D output "
                "nor one [..., classes] output over an integer input's shape; ONNX graphs carry no loss)")
            return pre + fwd, bwd
        parts = []
        for out in outs:
            shape, dt = tuple(self.types[out][1]), dts[out]
            classes = shape[-1]
            rows = C.numel(shape) // max(classes, 1)
            parts.append((out, classes, list(shape[:-1])))
            # as torch's F.cross_entropy: log_softmax keeps its fp32 output for backward (an activation, 4 B per
            # logit); what the loss holds beyond it at the start of backward is wattlint.memory's loss transient
            if self.loss_logits is None or rows * classes > self.loss_logits[0]:
                self.loss_logits = (rows * classes, C.nbytes((1,), own[out]))  # as torch: the logits' element size
            # the kernels PyTorch's eager F.cross_entropy launches (the torch frontend prices these same records):
            # log_softmax writes the log-probabilities, nll_loss reads one per row; backward, nll_loss_backward
            # writes a dense gradient of the log-probabilities, _log_softmax_backward_data reads it with them and
            # writes the logits' gradient (a fused kernel that skipped those passes was 3 of the 6 logit-sized passes)
            lg = (rows, classes)
            mt = "CrossEntropyLoss"
            fwd += [self._rec("loss::log_softmax", OpKind.SOFTMAX, "", mt, Phase.FORWARD, dt, (lg,),
                              C.softmax(lg, dt), Status.HANDLED, 1),
                    self._rec("loss::nll_loss", OpKind.LOSS, "", mt, Phase.FORWARD, dt, (lg,),
                              C.nll_loss(rows, dt), Status.HANDLED, 1)]
            bwd += [self._rec("loss::nll_loss_backward", OpKind.LOSS, "", mt, Phase.BACKWARD, dt, (lg,),
                              C.nll_loss(rows, dt, backward=True, classes=classes), Status.HANDLED, 1),
                    self._rec("loss::log_softmax_backward", OpKind.SOFTMAX, "", mt, Phase.BACKWARD, dt, (lg,),
                              C.softmax(lg, dt, backward=True), Status.HANDLED, 1)]
        how = ("as PyTorch's F.cross_entropy runs it: log_softmax + nll_loss, their two backward kernels; ONNX graphs "
               "carry no loss")
        if token:
            out, classes, shape = parts[0]
            note = token_loss_note(classes, shape, token, f"; output {out!r}, {how}")
        elif len(parts) == 1:
            out, classes, shape = parts[0]
            note = (f"loss: cross-entropy on the {classes}-way {out if out.endswith('_logits') or out.startswith('logits_') else 'logits'} "
                    f"(labels of shape {shape}, every position labelled; output {out!r} "
                    f"{[*shape, classes]}: {C.numel(shape)} rows x {classes} classes, {how})")
        else:
            note = ("loss: the sum of a cross-entropy on each of " + ", ".join(
                f"{out} ({classes}-way, labels of shape {shape})" for out, classes, shape in parts)
                + f", every position labelled ({how})")
        self.assumptions.append(note)
        return pre + fwd, bwd

    def _optimizer(self) -> list[OpRecord]:
        recs = []
        opt = self.optimizer
        half_params = False
        # graph order: deterministic (not set order); a tied copy is stepped as its embedding; the exporter's
        # Identity(shared) aliases of deduplicated equal initializers (fresh LayerNorm weights) are parameters of
        # their own, as counted (review: 100,618 parameters counted, 100,234 stepped)
        order = [*self.inits, *(n for n in self.param_tensors if n not in self.inits)]
        for name in (n for n in order if n in self.trainable and n not in self.tied):
            t = self.param_tensors[name]
            n = C.numel(t.dims)
            pdt = _ONNX_DTYPES.get(t.data_type, "float32")
            if pdt in ("float16", "bfloat16"):  # mixed precision keeps fp32 master weights and optimizer state
                pdt = "float32"
                half_params = True
            module = self.first_use.get(name, "")
            passes = C.OPTIMIZER_FOREACH_PASSES.get(opt) if self.optimizer_impl != "fused" else None
            steps = C.optimizer_foreach(opt, n, pdt) if passes else [C.optimizer_step(opt, n, pdt)]
            for i, c in enumerate(steps):
                op = f"optim::{opt}.{passes[i][0]}" if passes else f"optim::{opt}" + (
                    ".fused" if self.optimizer_impl == "fused" else "")
                recs.append(OpRecord(op=op, kind=OpKind.OPTIMIZER, module=module, phase=Phase.OPTIMIZER,
                                     dtype=pdt, shapes=(tuple(t.dims),), flops=c.flops, bytes_read=c.bytes_read,
                                     bytes_written=c.bytes_written, status=Status.HANDLED,
                                     module_type=self.module_types.get(module, ""), dims=c.dims))
        self.half_params = half_params
        if half_params:
            dts = sorted({_ONNX_DTYPES.get(self.param_tensors[n].data_type, "float32") for n in self.trainable
                          if n in self.param_tensors} & {"float16", "bfloat16"})
            self.assumptions.append(
                f"half-precision weights in the graph ({' / '.join(dts)}, a model.half() export): priced as "
                f"apex O2-style training, not autocast: forward and backward run in the graph's own dtypes as "
                f"exported (half weights and compute, no per-op autocast casts); fp32 master weights (a copy of the "
                f"half weights) and fp32 optimizer state are counted in memory, and the optimizer step reads and writes fp32 "
                f"(master weights, gradients and state); the copy of the updated master weights back into the "
                f"half weights is not priced as a kernel of its own")
        return recs

    def _notes(self) -> None:
        a = self.assumptions
        a.append("training cost synthesized from the inference graph: input- and weight-gradient GEMMs per "
                 "matmul/conv (none for inputs that need no gradient), backward formulas per op kind")
        if self.external:
            a.append(f"{self.external} initializers stored as external data: shapes from initializer dims, "
                     f"weights not read")
        impl = {"foreach": "torch's foreach kernels (the CUDA default: one multi-tensor kernel per elementwise op, "
                           "several passes)",
                "fused": "one fused kernel (fused=True, one pass)",
                "for-loop": "torch's single-tensor kernels (foreach=False: each elementwise op launched once per "
                            "parameter tensor)"}[self.optimizer_impl]
        if getattr(self, "param_view_nodes", 0):
            a.append(f"{self.param_view_nodes} nodes only re-lay-out parameters (Slice / Concat / Unsqueeze / Squeeze "
                     f"/ Reshape / Transpose / Identity / Gather of one index, on initializers and constants alone: a "
                     f"training-mode export's RNN gate blocks, a weight transposed before its MatMul): part of the "
                     f"parameters, as PyTorch uses the weights in place (cuDNN's flat weights, F.linear reading W "
                     f"transposed): no kernel, no bytes per step, nothing saved for backward")
        for copy, emb in sorted(self.tied.items()):
            if copy not in self.inits:  # a training-mode export: the embedding itself, transposed
                a.append(f"{copy!r} is the embedding {emb!r} transposed by a Transpose node (a tied output layer, "
                         f"the same initializer): one parameter, its gradient added into the embedding's, no "
                         f"optimizer step of its own")
                continue
            a.append(f"initializer {copy!r} is the embedding {emb!r} transposed (a tied output layer, values "
                     f"compared): one parameter, its gradient added into the embedding's, no optimizer step of its "
                     f"own")
        for copy, cdims, emb, edims in self.tie_unread:
            a.append(f"{copy!r} {cdims} is shaped as the embedding {emb!r} {edims} transposed (an output layer), its "
                     f"weights not in the file: counted as a parameter of its own (untied); if the model ties them "
                     f"(GPT-2, BERT), it has {C.numel(cdims):,} fewer parameters, no optimizer step or state for "
                     f"them")
        if self.mask_buffers:
            a.append(_mask_buffer_note(self.mask_buffers))
        if self.trainable:
            a.append(f"trainable parameters: all {len(self.trainable)} float initializers used as data "
                     f"(optimizer: {self.optimizer}, as {impl})")
        else:
            a.append("no trainable parameters: the graph has no float initializers used as weights (weights fed as "
                     "graph inputs, or quantized ones, are not parameters here): forward and backward are priced, "
                     "no weight gradients and no optimizer step")
        if not self.has_bn and not self.folded_bn and self._likely_folded():
            self.folded_bn = True
        if self.folded_bn:
            a.append(f"BatchNorm appears folded into Conv (eval-mode export): a training-mode BatchNorm forward "
                     f"and backward were synthesized after {self.synth_bn} folded convolutions (as torch's "
                     f"cudnn_batch_norm: forward reads and writes the conv output, backward reads dy and x and "
                     f"writes dx); activation memory counts the conv output each BatchNorm saves; its weight "
                     f"(gamma) is not added to the parameters (the conv bias stands for beta)")
        drops = getattr(self, "dropouts", {})
        if drops:
            parts = []
            if drops.get("train"):
                parts.append(f"{drops['train']} in training mode priced as torch's dropout (a mask drawn, the input "
                             f"multiplied and scaled; its backward; the bool mask saved)")
            if drops.get("zero"):
                parts.append(f"{drops['zero']} in training mode with ratio 0 (p = 0, e.g. Hugging Face's default) "
                             f"priced as free views: torch's dropout with p = 0 returns its input (no kernel, no "
                             f"bytes, no mask saved)")
            if drops.get("eval"):
                parts.append(f"{drops['eval']} in inference mode (training_mode absent or false) priced as "
                             f"identities: if the model trains with dropout, export with "
                             f"training=torch.onnx.TrainingMode.TRAINING to price it")
            a.append(f"dropout: {sum(drops.values())} Dropout nodes: " + "; ".join(parts))
        if not self.has_dropout:
            a.append("dropout: the graph has no Dropout node, so none is priced; if the model trains with dropout, "
                     "it is not in the graph (an eval-mode export removes it: export with "
                     "training=torch.onnx.TrainingMode.TRAINING to keep it)")
        if self.half and self.precision == "fp8" and not self.autocast and self._precision_name() == "fp8":
            a.append("precision fp8 on a bf16 export: its ops run in the graph's own dtypes as exported (no autocast "
                     "casts), the GEMMs that run in FP8 chosen at estimate time")
        if self.autocast:  # a half precision asked of an fp32 graph (not of a half export: O2, noted with the optimizer)
            casts = self.loss_casts + sum(1 for r in self.fwd if r.op == "autocast::_to_copy") + sum(
                1 for grp in self.bwd for r in grp if r.op == "autocast::_to_copy")
            a.append(f"precision {self.precision}: CUDA autocast emulated with its op lists, as for a PyTorch model: "
                     f"matmul/conv/attention in {self.gemm_dtype} (fp32 inputs cast, each weight once per step and "
                     f"its gradient cast back), layer/group norm, softmax, log_softmax, pow/exp/log and the loss in "
                     f"float32 (half inputs cast), other ops in the dtype their inputs promote to; {casts} cast "
                     f"kernels per step (forward and backward); parameters and optimizer state in float32"
                     + ("; traced as bf16, the GEMMs that run in FP8 chosen at estimate time"
                        if self.precision == "fp8" else ""))
        if self.shape_fallback:
            a.append(f"{self.shape_fallback} output shapes that shape inference left unknown were derived from "
                     f"the op's semantics")
        if self.failed:
            parts = ", ".join(f"{k} x{v}" for k, v in sorted(self.failed.items()))
            a.append(f"{self.unknown} nodes could not be costed (unknown shapes or variants): {parts}")

    def _synthesize_batchnorm(self) -> None:
        """Training-mode BatchNorm after each folded convolution (the exporter flagged it, or every conv when the
        whole graph looks folded): forward after the conv's forward record, backward first in the conv's backward
        group (gradients reach BatchNorm before the conv)."""
        convs = [i for i, r in enumerate(self.fwd) if r.op == "onnx::Conv" and r.status is Status.HANDLED]
        chosen = [i for i in convs if i in self.folded_convs] or [i for i in convs if i not in self.own_bias_convs]
        self.synth_bn = len(chosen)
        if not chosen:
            return
        fwd: list[OpRecord] = []
        # keyed by the conv's forward record (graphs without scoped node names put every conv in module '': one
        # key per module kept a single BatchNorm backward; counting convs per module mis-paired them when a conv
        # off the loss path has no backward group)
        bn_bwd: dict[int, OpRecord] = {}
        pick = set(chosen)
        for i, r in enumerate(self.fwd):
            fwd.append(r)
            if i not in pick:
                continue
            e = C.dtype_bytes(r.dtype)
            w = r.shapes[1] if len(r.shapes) > 1 and r.shapes[1] else ()
            ch = int(w[0]) if w else max(1, r.dim("n", 1) * r.dim("b", 1))
            n_out = max(ch, r.bytes_written // max(e, 1))
            x = (n_out // ch, ch)  # (N*H*W, C): BatchNorm normalizes per channel over the rest
            dt = self.half or r.dtype
            mt = "BatchNorm (folded)"
            fc = C.norm(x, dt, "batch")
            fwd.append(OpRecord(op="synth::BatchNormalization", kind=OpKind.NORM, module=r.module, phase=Phase.FORWARD,
                                dtype=dt, shapes=(x,), flops=fc.flops, bytes_read=fc.bytes_read,
                                bytes_written=fc.bytes_written, status=Status.HANDLED, module_type=mt))
            bc = C.norm(x, dt, "batch", backward=True)
            bn_bwd[i] = OpRecord(op="synth::BatchNormalization", kind=OpKind.NORM, module=r.module,
                                        phase=Phase.BACKWARD, dtype=dt, shapes=(x,), flops=bc.flops,
                                        bytes_read=bc.bytes_read, bytes_written=bc.bytes_written,
                                        status=Status.HANDLED, module_type=mt)
        self.fwd = fwd
        for grp in self.bwd:
            i = self.bwd_of_fwd.get(id(grp))
            if i in bn_bwd and any(r.op == "onnx::Conv" for r in grp):
                # the folded conv's bias is BatchNorm's beta, whose gradient the BatchNorm backward already
                # produces (torch's conv has no bias there): its bias-gradient reduction is dropped
                grp[:] = [r for r in grp if not (r.op == "onnx::Conv" and r.kind is OpKind.REDUCTION)]
                grp.insert(0, bn_bwd.pop(i))

    def _dropout_mode(self, n, ins, scale) -> None:
        """Whether a Dropout node runs (sets ``n.values[2]``: onnx_ops._dropout prices its mask, multiply and
        backward) and which kind it is, counted for the dropout note: training_mode a constant true with a ratio
        other than a constant 0 runs; a constant ratio 0 (Hugging Face's default p) is free, as torch's dropout
        with p = 0 returns its input and launches nothing; without training_mode (or false) it is an identity."""
        kind = "eval"
        if len(ins) > 2 and ins[2] and self._constant_true(ins[2]):  # a train-mode export keeps its dropout
            ratio = self._scalar(ins[1]) if len(ins) > 1 and ins[1] else 0.5  # the op's default ratio
            try:
                zero = ratio is not None and float(ratio) == 0.0
            except (TypeError, ValueError):
                zero = False
            kind = "zero" if zero else "train"
            if not zero:
                n.values[2] = 1
        counts = self.__dict__.setdefault("dropouts", {})
        counts[kind] = counts.get(kind, 0) + scale

    def _constant_true(self, name: str) -> bool:
        """Whether ``name`` is a Constant node's (or an initializer's) single true / nonzero value."""
        return bool(self._scalar(name))

    def _likely_folded(self) -> bool:
        convs = [r for r in self.fwd if r.op == "onnx::Conv" and r.phase is Phase.FORWARD]
        if len(convs) < 3:
            return False
        with_bias = generated = 0
        for n in self.model.graph.node:
            if n.op_type == "Conv" and len(n.input) > 2 and n.input[2]:
                with_bias += 1
                generated += not _PARAM_BIAS.search(n.input[2])
        # a CNN whose convs all have biases and no BatchNormalization anywhere: the exporter folded BN -- unless the
        # biases are the model's own parameters ('f.0.bias': a VGG-style net without BatchNorm); folding writes new
        # constants ('onnx::Conv_498')
        return with_bias == len(convs) and generated > 0 and any(
            n.op_type in ("Relu", "Clip", "HardSwish", "Sigmoid") for n in self.model.graph.node)


# ---- helpers ------------------------------------------------------------------------------------------------------

class _ConstTables:
    """Per graph (an analysis's main graph, an If branch, a loop body): the names it defines (its inputs,
    initializers and node outputs) -> the single value of those that are scalar constants, None for the others
    (:meth:`_Analysis._scalar`). Built once per graph, on first use; not a dict, so that a dry run
    (:meth:`_Analysis._probe`) shares it instead of copying it."""

    __slots__ = ("_tables",)

    def __init__(self):
        self._tables: dict[int, tuple] = {}  # id(graph) -> (graph, table): the graph is kept so its id stays its own

    def of(self, g) -> dict:
        hit = self._tables.get(id(g))
        if hit is None:
            hit = self._tables[id(g)] = (g, _const_table(g))
        return hit[1]


def _const_table(g) -> dict:
    from onnx import numpy_helper

    table: dict = dict.fromkeys(i.name for i in g.input)
    tensors = [(t.name, t) for t in g.initializer]
    for nd in g.node:
        table.update(dict.fromkeys(o for o in nd.output if o))
        if nd.op_type != "Constant" or not nd.output or nd.domain not in ("", "ai.onnx"):
            continue
        for a in nd.attribute:
            if a.name == "value" and a.type == 4:
                tensors.append((nd.output[0], a.t))
            elif a.name in ("value_int", "value_float"):
                table[nd.output[0]] = a.i if a.name == "value_int" else a.f
            elif a.name in ("value_ints", "value_floats"):
                vals = a.ints if a.name == "value_ints" else a.floats
                if len(vals) == 1:
                    table[nd.output[0]] = vals[0]
    for o, t in tensors:
        table.setdefault(o, None)
        if t.data_location == 1 or any(int(d) != 1 for d in t.dims):  # scalars and [1]-shaped only
            continue
        try:
            v = numpy_helper.to_array(t)
        except Exception:  # noqa: BLE001 - a tensor this reader cannot decode: not a known constant
            continue
        if v.size == 1:
            table[o] = v.reshape(-1)[0].item()
    return table


# A conv bias that is a model parameter (torch.onnx keeps the parameter's name: 'features.0.bias', 'head.bias'):
# no BatchNorm was folded into it (folding creates a new constant, 'onnx::Conv_498')
_PARAM_BIAS = re.compile(r"(^|[./_])bias$", re.I)

def _mask_signature(masks, nodes, producer, consumers) -> frozenset:
    """Tensors shared between layers (two or more consumers) in a mask's near ancestry: attention layers whose masks
    derive from the same shared tensors get the same causal verdict without evaluating each mask again."""
    out = set()
    stack = [(m, 0) for m in masks]
    seen = set()
    while stack:
        t, depth = stack.pop()
        if t in seen or depth > 10:
            continue
        seen.add(t)
        if len(consumers.get(t, ())) >= 2:
            out.add(t)
            continue
        i = producer.get(t)
        if i is not None:
            stack.extend((x, depth + 1) for x in nodes[i].input if x)
    return frozenset(out)


def _mask_buffer_note(buffers: dict[str, int]) -> str:
    """The assumption line of the attention-mask buffers left out of the parameters (name -> elements): their count,
    their names with layer indices collapsed (``transformer.h.*.attn.bias x12``) and their elements."""
    groups: dict[str, list] = {}
    for name in buffers:
        groups.setdefault(re.sub(r"\b\d+\b", "*", name), []).append(name)
    shown = [f"{k} x{len(v)}" if len(v) > 1 else v[0] for k, v in list(groups.items())[:4]]
    if len(groups) > 4:
        shown.append(f"+{len(groups) - 4} more")
    n = len(buffers)
    return (f"{n} attention-mask buffer{'s' if n > 1 else ''} ({', '.join(shown)}; {sum(buffers.values()):,} "
            f"elements) not counted as {'parameters' if n > 1 else 'a parameter'}: "
            f"{'float initializers' if n > 1 else 'a float initializer'} used only to mask the attention scores, "
            f"with a mask's values (0 / 1, or 0 / a large negative): registered buffers of the model, no gradient, "
            f"optimizer state or all-reduce; their storage is not counted in the memory per GPU either (the "
            f"PyTorch frontend leaves registered buffers out too)")


def scope_to_module(name: str) -> str:
    """``/encoder/layer.3/attention/self/query/MatMul`` -> ``encoder.layer.3.attention.self.query``;
    ``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1`` (torch.onnx repeats the parent's path in a scope)."""
    if not name or "/" not in name:
        return ""
    comps = [c for c in name.split("/")[:-1] if c]
    path: list[str] = []
    for comp in comps:
        parts = comp.split(".")
        joined = ".".join(path)
        replaced = False
        for i in range(len(path)):
            prefix = ".".join(path[i:])
            if comp.startswith(prefix + "."):
                path = path[:i] + parts
                replaced = True
                break
        if not replaced:
            if joined and comp == joined:
                continue
            path.extend(parts)
    return ".".join(path)


def _namespace_module(ns: str) -> tuple[str, str]:
    """Innermost module of a dynamo-export namespace (": pkg.Root/blocks.0: pkg.Block/linear: aten.linear")."""
    path, cls = "", ""
    for part in ns.split("/"):
        name, _, typ = part.partition(": ")
        typ = typ.strip()
        if not typ or typ.startswith(("aten.", "<built-in", "prims.")) or "." not in typ and typ.islower():
            continue
        path, cls = name.strip(), typ.rsplit(".", 1)[-1]
    return path, cls


def _is_folded_bn(node) -> bool:
    for p in node.metadata_props:
        if "rewriter" in p.key and "BatchNorm" in p.value:
            return True
        if p.key == "namespace" and "batchnorm" in p.value.lower():
            return True
    return False


def _subgraph_inputs(n) -> list:
    names = []
    for a in n.attribute:
        gs = [a.g] if a.type == 5 else list(a.graphs) if a.type == 10 else []
        for sg in gs:
            for m in sg.node:
                names.extend(m.input)
    return names


def _attrs(node) -> dict:
    out = {}
    for a in node.attribute:
        t = a.type
        if t == 1:
            out[a.name] = a.f
        elif t == 2:
            out[a.name] = a.i
        elif t == 3:
            out[a.name] = a.s
        elif t == 6:
            out[a.name] = list(a.floats)
        elif t == 7:
            out[a.name] = list(a.ints)
        elif t == 8:
            out[a.name] = list(a.strings)
    return out


def _first_float(in_info, out_info) -> str:
    for dt, _ in list(out_info) + list(in_info):
        if dt in _FLOAT:
            return dt
    for dt, _ in list(out_info) + list(in_info):
        if dt:
            return dt
    return "float32"


_LAYOUT_VIEWS = {"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}


def _linear_weights(g, param_views: dict, inits: dict) -> set:
    """The tensors MatMul reads as an ``nn.Linear`` weight ([out, in], used transposed): a 2-D Transpose of a
    parameter (a re-laid-out weight, onnx_fold.parameter_views: a training-mode export's ``Transpose(W)``), or an
    initializer the exporter folded such a Transpose into (``onnx::MatMul_*``). A weight stored [in, out] and read
    as it is (Hugging Face's Conv1D) is not one."""
    out = {n for n, t in inits.items() if n.startswith("onnx::MatMul_") and len(t.dims) == 2}
    for node in g.node:
        if node.op_type != "Transpose" or node.domain not in ("", "ai.onnx") or len(node.output) != 1 \
                or node.output[0] not in param_views:
            continue
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        src = inits.get(node.input[0]) if node.input else None
        rank = len(src.dims) if src is not None else len(perm) if perm else None
        if rank == 2 and perm in (None, [1, 0]):
            out.add(node.output[0])
    return out


def _cast(dt, half):
    if half and dt == "float32":
        return half
    return dt


def _shapes(n: ops.Node) -> tuple:
    return tuple(tuple(s) for s in n.in_shapes if s is not None)


__all__ = ["analyze_onnx", "scope_to_module"]
