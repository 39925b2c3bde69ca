"""PyTorch frontend: trace one training step of an ``nn.Module`` on meta tensors into a :class:`CostGraph`.

How it works
------------
* The module lives on ``torch.device("meta")``: no weight memory, no arithmetic, only shapes and dtypes.
* A ``TorchDispatchMode`` (:class:`_Recorder`) sees every aten op of forward, loss, backward and optimizer step
  and turns it into an :class:`OpRecord` through the op table of :mod:`wattlint.frontends.torch_ops`.
* Attribution: forward pre/post hooks on every named module keep a module stack (forward, and recompute under
  activation checkpointing). When a module's forward returns, the autograd nodes it created are tagged (in
  ``node.metadata``) with its path; during backward the engine's current node
  (``torch._C._current_autograd_node()``) names the module the backward op belongs to.
* The trace describes a CUDA run, not the meta run: ``F.scaled_dot_product_attention`` is routed to one fused
  kernel (flash for 16-bit without a mask, memory-efficient otherwise); CUDA autocast op lists are applied for
  fp16/bf16 (casts recorded, weight casts cached per step as autocast does); the optimizer is torch's own
  foreach implementation (the CUDA default).
* Data-dependent reads (``.item()``, ``bool(tensor)``) on meta tensors get a data-independent answer (True /
  1 / 0.0), counted and listed as an assumption.
* Activation bytes (tensors saved for backward) are measured with ``torch.autograd.graph.saved_tensors_hooks``:
  each storage once, never a parameter or a view of one, an fp32 input of an autocast-lowered op as the
  half-precision cast CUDA autocast would save (:meth:`_Tracer.settle_saved`); ``extra`` also gives the fp32 part
  kept inside the model and the repeated blocks' size (``block_params``, ``block_count``) for wattlint.memory.
"""

from __future__ import annotations

import contextlib
import math
import inspect
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from .. import costs as C
from ..types import BATCH_HINT, CostGraph, InputError, ModelInfo, OpKind, OpRecord, Phase, Status, TensorSpec, lib_call_dims
from . import exception_line, token_loss_note
from . import torch_moe as MOE
from . import torch_ops as T

aten = torch.ops.aten

# ---- CUDA autocast op lists (aten level; see torch.amp docs "CUDA Ops that can autocast to float16/float32") --
AUTOCAST_LOWER = {
    "mm", "addmm", "bmm", "baddbmm", "addbmm", "addmv", "mv", "addr", "convolution", "prelu", "_prelu_kernel",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_cudnn_attention", "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell", "_cudnn_rnn", "matmul",
    "linear", "dot", "_grouped_mm",
}
AUTOCAST_FP32 = {
    "pow", "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt",
    "sinh", "tan", "softplus", "native_layer_norm", "native_group_norm", "_softmax", "_log_softmax",
    "_safe_softmax", "nll_loss_forward", "nll_loss2d_forward", "mse_loss", "binary_cross_entropy_with_logits",
    "norm", "linalg_vector_norm", "_fused_rms_norm", "renorm", "dist",
    "cdist", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div",
}
# CUDA autocast's "fp32_set_opt_dtype" policy (aten/src/ATen/autocast_mode.cpp: sum, prod, cumsum, cumprod, softmax,
# log_softmax): a floating, non-double input is NOT cast; the op gets dtype=float32 when the caller gave none, and its
# kernel reads the half-precision input and accumulates / writes in fp32 (no copy of the input). sum / prod / cumsum /
# cumprod reach the dispatch mode as themselves (dtype is keyword-only in their schemas); softmax.int reaches it as
# _softmax, which for a CUDA float16 input with dtype float32 runs half_to_float=True (aten SoftMax.cpp: only Half,
# a bfloat16 input is converted first): see _Tracer.autocast. _log_softmax keeps the cast: F.cross_entropy, the usual
# way it is reached, is an "fp32" op that casts the logits before log_softmax.
AUTOCAST_FP32_SET_DTYPE = {"sum", "prod", "cumsum", "cumprod"}
AUTOCAST_LOWER_BWD = {
    "convolution_backward", "_scaled_dot_product_efficient_attention_backward",
    "_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_cudnn_attention_backward",
}
PRECISION_DTYPE = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp8": torch.bfloat16}


def _flatten(obj, prefix: str = "output") -> list[tuple[str, torch.Tensor]]:
    out: list[tuple[str, torch.Tensor]] = []
    if isinstance(obj, torch.Tensor):
        out.append((prefix, obj))
    elif isinstance(obj, Mapping):
        for k in obj.keys():
            v = obj[k]
            out.extend(_flatten(v, str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.extend(_flatten(v, f"{prefix}.{i}" if len(obj) > 1 else prefix))
    elif hasattr(obj, "to_tuple"):
        out.extend(_flatten(obj.to_tuple(), prefix))
    return out


# ---- the recorder ---------------------------------------------------------------------------------------------

class _Recorder(TorchDispatchMode):
    def __init__(self, tracer: "_Tracer"):
        super().__init__()
        self.t = tracer

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        t = self.t
        if func is aten._local_scalar_dense.default:
            x = args[0]
            if x.device.type == "meta":
                return t.scalar_read(x)
            return func(*args, **kwargs)
        if func.namespace == "profiler":
            return func(*args, **kwargs)
        dev = kwargs.get("device")
        if (func is aten._to_copy.default and dev is not None and torch.device(dev).type == "cpu" and args
                and isinstance(args[0], torch.Tensor) and args[0].device.type == "meta"):
            return t.host_copy(args[0], kwargs)  # .cpu() of a meta tensor: its values read on the host
        if not (any(isinstance(a, torch.Tensor) and a.device.type == "meta" for a in T.tensors(list(args)) +
                    T.tensors(list(kwargs.values())))
                or (dev is not None and torch.device(dev).type == "meta")):
            return func(*args, **kwargs)  # host-side bookkeeping (optimizer step counters on CPU)
        name = func._schema.name.split("::", 1)[-1]
        if t.shadow_packs and t.whole_complete:
            top = _top_saved_hooks()
            if top is None or top[0] is not t.shadow_packs[-1] or not torch.is_grad_enabled():
                # hooks pushed inside a checkpointed block (the model's own non-reentrant checkpointing,
                # save_on_cpu), or a forward under no_grad there (its own reentrant checkpointing): the tensors
                # it would save are not seen, so there is no figure without checkpointing
                t.whole_complete = False
        if t._pending:
            t.settle_saved(name, args)
        if t.user_autocast and t.phase is Phase.BACKWARD:
            # backward of the model's own torch.autocast regions: an op whose gradient arrives in the region's
            # half dtype beside the fp32 tensors autograd saved (this tracer casts below autograd) ran in the region
            t.lower_dtype = _region_dtype(args, kwargs, t.user_autocast)
        if t.lower_dtype is not None and t.phase is not Phase.OPTIMIZER and not t.lib_call_now():
            args, kwargs = t.autocast(name, args, kwargs)  # (inside a library call: cast once at its entry)
        if name in AUTOCAST_LOWER_BWD and t.lower_dtype is not None and t.phase is Phase.BACKWARD:
            args, kwargs = t.cast_all(args, kwargs)
        if name in ("nonzero", "argwhere") or (name in ("index", "_unsafe_index", "index_put", "index_put_")
                                                and len(args) > 1 and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or []))):
            t.scalar_reads["nonzero->all elements"] += 1
        shape_only = MOE.SHAPE_ONLY.get(func)
        try:
            out = shape_only(*args, **kwargs) if shape_only is not None else func(*args, **kwargs)
        except (NotImplementedError, RuntimeError):
            out = t.data_dependent(name, args, kwargs)
            if out is None:
                raise
        t.record(func, args, kwargs, out)
        t._last_out_ids, t._last_op = {_tensor_key(o) for o in T.tensors(out)}, name
        _tag_data_reads(name, args, out)
        return out


# A NaN / inf check on data (``assert not torch.isnan(x).any()``, ``if not torch.isfinite(loss).all(): skip``) read
# on meta tensors: the data is taken as clean (every value finite), so such a check reads False for isnan / isinf
# and True for isfinite, through the reductions and negations that follow. Tagged on the tensors themselves.
_FINITE_TAG = "_wl_clean_reads"
_BAD_CHECKS = ("isnan", "isinf", "isposinf", "isneginf")
_PASS_THROUGH = ("any", "all", "max", "amax", "min", "amin", "sum", "logical_or", "bitwise_or", "__or__", "view",
                 "reshape", "_to_copy", "squeeze", "flatten", "clone", "detach", "alias", "lift_fresh")
_NEGATIONS = ("logical_not", "bitwise_not", "__invert__")


# An index read from the data (``int(x.argmax(-1)[0])``, then used to index): answered 0, a valid position (the
# sequence length, what a length or count read answers, is one past the end). Tagged like the finite checks.
_INDEX_TAG = "_wl_index_reads"
_INDEX_OPS = ("argmax", "argmin", "searchsorted", "bucketize")
_INDEX_PASS = ("select", "slice", "view", "reshape", "squeeze", "unsqueeze", "clone", "detach", "alias", "_to_copy",
               "flatten", "lift_fresh", "index", "expand", "contiguous")


def _tag_data_reads(name: str, args, out) -> None:
    if isinstance(out, torch.Tensor) and not out.is_floating_point() and out.dtype != torch.bool:
        if name in _INDEX_OPS or (name in _INDEX_PASS and any(
                isinstance(a, torch.Tensor) and getattr(a, _INDEX_TAG, False) for a in args)):
            setattr(out, _INDEX_TAG, True)
        return
    if isinstance(out, (tuple, list)) and name in ("max", "min", "sort", "topk", "kthvalue", "mode") \
            and len(out) == 2 and isinstance(out[1], torch.Tensor):
        setattr(out[1], _INDEX_TAG, True)  # (values, indices)
        return
    if not isinstance(out, torch.Tensor) or out.dtype != torch.bool:
        return
    if name in _BAD_CHECKS:
        setattr(out, _FINITE_TAG, False)
        return
    if name == "isfinite":
        setattr(out, _FINITE_TAG, True)
        return
    src = next((a for a in args if isinstance(a, torch.Tensor) and hasattr(a, _FINITE_TAG)), None)
    if src is None:
        return
    if name in _PASS_THROUGH:
        setattr(out, _FINITE_TAG, getattr(src, _FINITE_TAG))
    elif name in _NEGATIONS:
        setattr(out, _FINITE_TAG, not getattr(src, _FINITE_TAG))


def _tensor_key(x: torch.Tensor) -> tuple:
    """The same tensor as autograd's pack hook and the dispatch mode see it (they hold different Python objects):
    its storage, offset, shape, strides and dtype. A sparse tensor (nn.EmbeddingBag / nn.Embedding(sparse=True)'s
    gradient) has no storage: keyed by its object, which no saved tensor matches."""
    if x.layout != torch.strided:
        return (str(x.layout), id(x), tuple(x.shape), x.dtype)
    return (x.untyped_storage()._cdata, x.storage_offset(), tuple(x.shape), tuple(x.stride()), x.dtype)


@dataclass
class _Frame:
    name: str
    boundary: set = field(default_factory=set)


BOTH, WHOLE, KEPT = "both", "whole", "kept"  # which ledgers a saved tensor counts in (_Tracer.pack)


@dataclass
class _SavedLedger:
    """Bytes of the tensors saved for backward, each storage (and each autocast cast) counted once."""
    bytes: int = 0
    fp32_bytes: int = 0  # of which fp32 tensors saved inside the model's modules (the residual stream)
    cast_dup_bytes: int = 0  # of which half-precision casts of fp32 tensors saved themselves or cast before
    ids: set = field(default_factory=set)
    cast_ids: set = field(default_factory=set)

    def extra(self) -> dict[str, int]:
        """The graph's ``extra`` keys wattlint.memory reads."""
        return {"activation_bytes": int(self.bytes), "activation_bytes_fp32": int(self.fp32_bytes),
                "activation_bytes_cast_dup": int(self.cast_dup_bytes)}


class _Tracer:
    def __init__(self, model: nn.Module, precision: str):
        self.model = model
        self.records: list[OpRecord] = []
        self.last_conv_nhwc = False  # the last convolution traced ran channels-last (BatchNorm follows its format)
        self.phase = Phase.FORWARD
        self.stack: list[_Frame] = []
        self.types: dict[str, str] = {}
        self.names: dict[int, str] = {}
        for n, m in model.named_modules():
            self.types[n] = type(m).__name__
            self.names.setdefault(id(m), n)
        self.lower_dtype = PRECISION_DTYPE.get(precision)
        # the model's own torch.autocast("cuda", dtype=...) regions entered in forward (no --precision): regions per
        # dtype; _UserAutocast sets lower_dtype inside them
        self.user_autocast: Counter = Counter()
        self.user_autocast_ignored = 0  # regions that change nothing or cannot be emulated (see _UserAutocast)
        self.cast_cache: dict[tuple[int, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}
        self._fwd_cast_storages: set[tuple[int, torch.dtype]] = set()  # (storage, dtype) autocast cast in forward
        self.scalar_reads: Counter = Counter()
        self.int_answer = 1  # what an integer read from values answers (trace(): the inputs' sequence length)
        # what autograd keeps for backward (``kept``), and what it would keep without activation checkpointing
        # (``whole``: the tensors checkpointed blocks save in forward only to drop them, seen through
        # _enable_checkpointing's shadow hook, plus everything ``kept`` holds)
        self.kept = _SavedLedger()
        self.whole = _SavedLedger()
        self.whole_complete = True  # every checkpointed block's saved tensors were seen (_shadow_saved)
        self._keep: list[torch.Tensor] = []
        # saved since the last dispatched op (settle_saved): tensor, module, the ledgers it counts in
        self._pending: list[tuple[torch.Tensor, str, str]] = []
        self.shadow_packs: list = []  # the pack hooks of the checkpointed blocks running now (_shadow_saved)
        self._last_out_ids: set[tuple] = set()
        self._last_op = ""
        self.param_ids = {id(p) for p in model.parameters()}
        self.attention_kernels: Counter = Counter()
        self.attention_masked = 0  # of them, the calls given an explicit mask tensor (dense to the kernel)
        self.lib_call = 0  # > 0 while a library call (cuDNN RNN) runs: its records share one host launch
        self.lib_calls = 0

    # -- module stack and autograd-node tagging --
    def pre_hook(self, module, args, kwargs):
        name = self.names.get(id(module))
        if name is None:
            return None
        boundary = set()
        for x in T.tensors(list(args)) + T.tensors(list(kwargs.values())):
            if x.grad_fn is not None:
                boundary.add(x.grad_fn)
        self.stack.append(_Frame(name, boundary))
        return None

    def post_hook(self, module, args, kwargs, output):
        name = self.names.get(id(module))
        if name is None or not self.stack:
            return None
        frame = self.stack.pop()
        if torch.is_grad_enabled():
            todo = [t.grad_fn for _, t in _flatten(output) if t.grad_fn is not None]
            seen = set()
            while todo:
                node = todo.pop()
                if node is None or node in frame.boundary or node in seen:
                    continue
                seen.add(node)
                md = node.metadata
                if "wl_module" not in md:  # nodes of inner modules keep their (innermost) tag; walk through them
                    md["wl_module"] = frame.name
                for nxt, _ in node.next_functions:
                    if nxt is not None:
                        todo.append(nxt)
        return None

    def current_module(self) -> tuple[str, bool]:
        if self.phase is Phase.FORWARD:
            return (self.stack[-1].name if self.stack else ""), False
        if self.phase is Phase.BACKWARD:
            if self.stack:  # activation checkpointing: forward recompute inside backward
                return self.stack[-1].name, True
            node = torch._C._current_autograd_node()
            if node is not None:
                return node.metadata.get("wl_module", ""), False
        return "", False

    def lib_call_now(self) -> int:
        """The library call the op being recorded belongs to (0: none): the running one in forward, in backward
        the one whose autograd node runs (``wl_lib_call`` metadata, set by _tag_library_nodes)."""
        if self.lib_call or self.phase is not Phase.BACKWARD:
            return self.lib_call
        node = torch._C._current_autograd_node()
        return node.metadata.get("wl_lib_call", 0) if node is not None else 0

    # -- data-dependent reads --
    def scalar_read(self, x: torch.Tensor):
        if x.dtype == torch.bool:
            clean = getattr(x, _FINITE_TAG, None)
            if clean is not None:  # a NaN / inf check: the data is finite
                self.scalar_reads[f"finite check->{clean}"] += 1
                return clean
            self.scalar_reads["bool->True"] += 1
            return True
        if x.is_floating_point():
            self.scalar_reads["float->0.0"] += 1
            return 0.0
        if getattr(x, _INDEX_TAG, False):  # a position (argmax ...): the first one, always in range
            self.scalar_reads["index->0"] += 1
            return 0
        # an integer read from values: a length or a count (int(lengths.max()), position_ids.max() + 1), taken as the
        # full sequence of the inputs (no padding, as masks are taken all-ones); 1 for inputs without a sequence
        n = self.int_answer
        self.scalar_reads[f"int->{n}"] += 1
        return n

    def host_copy(self, x: torch.Tensor, kwargs) -> torch.Tensor:
        """A meta tensor copied to the CPU (``lengths.cpu()``, which pack_padded_sequence requires): its values are
        read on the host, so they are answered as a value read is (:meth:`scalar_read`): integers as the inputs' full
        sequence length (every sequence unpadded), positions 0, floats 0.0, booleans True."""
        dtype = kwargs.get("dtype") or x.dtype
        if x.dtype == torch.bool:
            value, kind = True, "bool"
        elif x.is_floating_point() or x.is_complex():
            value, kind = 0.0, "float"
        elif getattr(x, _INDEX_TAG, False):
            value, kind = 0, "index"
        else:
            value, kind = self.int_answer, "int"
        self.scalar_reads[f"{kind} tensor to cpu->{value}"] += 1
        return torch.full(tuple(x.shape), value, dtype=dtype, device="cpu")

    def data_dependent(self, name: str, args, kwargs):
        """Outputs of ops whose shape depends on values (no meta kernel): every element selected / distinct."""
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if x is None or x.device.type != "meta":
            return None
        n = x.numel()
        if name in ("nonzero", "argwhere"):
            return torch.empty((n, x.dim()), dtype=torch.long, device="meta")
        if name == "nonzero_static":
            return None
        if name == "masked_select":
            self.scalar_reads["masked_select->all elements"] += 1
            return torch.empty((n,), dtype=x.dtype, device="meta")
        if name in ("_unique2", "_unique", "unique_consecutive", "unique_dim"):
            self.scalar_reads["unique->all distinct"] += 1
            vals = torch.empty((n,), dtype=x.dtype, device="meta")
            inv = torch.empty(x.shape, dtype=torch.long, device="meta")
            cnt = torch.empty((n,), dtype=torch.long, device="meta")
            return (vals, inv, cnt) if name != "_unique" else (vals, inv)
        return None

    # -- autocast emulation --
    def _cast(self, x, dtype):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dtype == dtype or x.device.type != "meta":
            return x
        key = (id(x), dtype)
        hit = self.cast_cache.get(key)
        if hit is not None and hit[0] is x:
            return hit[1]
        with torch.utils._python_dispatch._disable_current_modes():
            y = aten._to_copy.default(x, dtype=dtype)
        storage = (x.untyped_storage()._cdata, dtype)
        recompute = self.phase is Phase.BACKWARD and bool(self.stack)  # checkpointed forward rerun in backward
        if self.phase is Phase.BACKWARD and not recompute and storage in self._fwd_cast_storages:
            # CUDA autocast casts above autograd, so autograd saves the half-precision cast and backward reads it;
            # this tracer casts below autograd, so backward gets the fp32 tensor (or a view of it, W.t()) back:
            # the cast the forward (or its recompute) already recorded is reused, not launched again
            self.cast_cache[key] = (x, y)
            return y
        self.record(aten._to_copy.default, (x,), {"dtype": dtype}, y)
        if self.phase is Phase.FORWARD or recompute:
            self._fwd_cast_storages.add(storage)
        self.cast_cache[key] = (x, y)
        return y

    def _map(self, obj, dtype):
        if isinstance(obj, torch.Tensor):
            return self._cast(obj, dtype)
        if isinstance(obj, (list, tuple)):
            return type(obj)(self._map(o, dtype) for o in obj)
        return obj

    def autocast(self, name, args, kwargs):
        x = args[0] if args else None
        eligible = isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != torch.float64
        if name in AUTOCAST_FP32_SET_DTYPE:
            if eligible and kwargs.get("dtype") is None:
                kwargs = {**kwargs, "dtype": torch.float32}
            return args, kwargs
        if name == "_softmax" and eligible and x.dtype == torch.float16 and len(args) >= 3:
            return (x, args[1], True), kwargs  # half_to_float: reads fp16, writes fp32
        if name in AUTOCAST_LOWER:
            dtype = self.lower_dtype
        elif name in AUTOCAST_FP32:
            dtype = torch.float32
        else:
            return args, kwargs
        return self._map(args, dtype), {k: self._map(v, dtype) for k, v in kwargs.items()}

    def cast_all(self, args, kwargs):
        return self._map(args, self.lower_dtype), {k: self._map(v, self.lower_dtype) for k, v in kwargs.items()}

    # -- saved tensors (activation memory) --
    def pack(self, x, ledgers: str = BOTH):
        """autograd's pack hook: remember the tensor; :meth:`settle_saved` charges it at the next dispatched op.
        ``ledgers``: BOTH; WHOLE, a checkpointed block's forward saves it and checkpointing drops it; KEPT (set by
        :func:`_shadow_saved`), the checkpoint keeps a block input only to recompute the block.

        Parameters and views of parameters (``W.t()`` that ``F.linear`` saves for the weight gradient) are not
        activations: the weights are counted by wattlint.memory (their half-precision casts as weight casts)."""
        if isinstance(x, torch.Tensor):
            base = x._base if x._base is not None else x
            if id(x) not in self.param_ids and id(base) not in self.param_ids:
                self._pending.append((x, self.stack[-1].name if self.stack else "", ledgers))
        return x

    def settle_saved(self, name: str = "", args=()) -> None:
        """Charge the tensors autograd saved since the last dispatched op, once per storage, to ``kept`` (what
        backward finds saved) and ``whole`` (the same without activation checkpointing).

        autograd packs an op's inputs before the op reaches the dispatcher, its outputs after. Under CUDA autocast
        the cast sits above autograd, so an autocast-lowered op (matmul, attention) saves the half-precision copy
        of an fp32 input; this tracer casts below autograd (in the dispatch mode), so autograd hands the fp32
        tensor to the pack hook. Such an input of the op now dispatched (``name``, ``args``) is charged as its
        half-precision cast (2 bytes per element, once per cast as the tracer's cast cache records it). A tensor
        packed twice here that the previous op returned was saved by that op as its output too (softmax saving
        its fp32 output that the next matmul reads): that pack is charged as stored, both are kept on the GPU."""
        pending, self._pending = self._pending, []
        lower = self.lower_dtype
        cast_in = set()
        if lower is not None and name in AUTOCAST_LOWER and self.phase is Phase.FORWARD:
            cast_in = {_tensor_key(a) for a in T.tensors(list(args)) if a.dtype == torch.float32}
        from_attention = self._last_op.startswith("_scaled_dot_product") or "flash" in self._last_op
        attn_out = set(self._last_out_ids) if from_attention else set()
        for ledger, entries in ((self.kept, [e for e in pending if e[2] != WHOLE]),
                                (self.whole, [e for e in pending if e[2] != KEPT])):
            if entries:
                self._charge(ledger, entries, cast_in, attn_out, lower)

    def _charge(self, ledger: _SavedLedger, entries: list, cast_in: set, attn_out: set, lower) -> None:
        keys = [_tensor_key(x) for x, _, _ in entries]
        packs = Counter(keys)
        prev_out = {k for k in self._last_out_ids if packs[k] > 1}
        for (x, module, _), key in zip(entries, keys):
            if key in prev_out:  # packed twice: the previous op's saved output (as stored), then this op's input
                prev_out.discard(key)
            elif key in cast_in:
                # CUDA autocast caches the casts of leaf tensors that require grad only (the weights): an fp32
                # activation is cast anew by every autocast-lowered op that reads it, and each op saves its own copy
                # (BERT's query / key / value Linears keep three half-precision copies of the LayerNorm output)
                base = x._base if x._base is not None else x
                repeat = key in ledger.cast_ids
                if not repeat or not (base.is_leaf and base.requires_grad):
                    ledger.cast_ids.add(key)
                    self._keep.append(x)
                    ledger.bytes += x.numel() * lower.itemsize
                    # the same tensor under a stack that keeps activations in half precision (megatron): the fp32
                    # tensor is kept too (softmax output, then its cast), or another op saved its cast already
                    if repeat or id(base) in ledger.ids:
                        ledger.cast_dup_bytes += x.numel() * lower.itemsize
                continue
            base = x._base if x._base is not None else x
            if id(base) in ledger.ids:
                continue
            ledger.ids.add(id(base))
            self._keep.append(base)
            nbytes = base.numel() * base.element_size()
            ledger.bytes += nbytes
            # fp32 inside the model: autocast's residual stream / norm inputs, softmax outputs (the training stack
            # megatron keeps them in half precision); not the statistics (last dim 1) nor a fused attention
            # kernel's fp32 log-sum-exp, which stay fp32 in every stack
            if (module and base.dtype == torch.float32 and base.dim() >= 1 and base.shape[-1] > 1
                    and key not in attn_out):
                ledger.fp32_bytes += nbytes

    # -- records --
    def record(self, func, args, kwargs, out):
        status, costs = T.cost_of(func, args, kwargs, out, optimizer_phase=self.phase is Phase.OPTIMIZER)
        module, recompute = self.current_module()
        name = func._schema.name.split("::", 1)[-1]
        if name.startswith("_scaled_dot_product") and not name.endswith("backward"):
            self.attention_kernels[name] += 1
            if name == "_scaled_dot_product_efficient_attention" and len(args) > 3 and args[3] is not None:
                self.attention_masked += 1  # its attn_bias: the mask _fused_sdpa passed on
        a_shapes = tuple(T.shape(x) for x in T.tensors(list(args))[:4])
        dtype = T.compute_dtype(T.bind(func, args, kwargs), out) if status != "ignored" else ""
        if (name in AUTOCAST_FP32_SET_DTYPE and isinstance(kwargs.get("dtype"), torch.dtype)
                and kwargs["dtype"].is_floating_point) or (name == "_softmax" and len(args) >= 3 and args[2] is True):
            # autocast's fp32_set_opt_dtype: a half-precision input accumulated (and written) in fp32
            dtype = "float32" if name == "_softmax" else str(kwargs["dtype"]).rsplit(".", 1)[-1]
        st = Status(status)
        mtype = self.types.get(module, "")
        op = str(func)
        if not costs:
            costs = [None]
        lib = self.lib_call_now()
        if costs[0] is not None and costs[0].kind is OpKind.CONV:
            self.last_conv_nhwc = any(dict(c.dims).get("nhwc", 0) for c in costs if c is not None)
        elif self.last_conv_nhwc and costs[0] is not None and costs[0].kind is OpKind.NORM and "batch_norm" in name:
            # a channels-last convolution writes channels-last on the GPU (cuDNN), and BatchNorm keeps its input's
            # format; meta tensors do not model the conv output's format, so the BatchNorm after a channels-last conv
            # (and its backward) is tagged from the last convolution traced
            costs = [C.Cost(c.flops, c.bytes_read, c.bytes_written, c.kind, tuple(sorted(set(c.dims) | {("nhwc", 1)})))
                     for c in costs]
        for c in costs:
            self.records.append(OpRecord(
                op=op, kind=(c.kind if c is not None else OpKind.VIEW), module=module, phase=self.phase,
                dtype=dtype, shapes=a_shapes, flops=int(c.flops) if c else 0,
                bytes_read=int(c.bytes_read) if c else 0, bytes_written=int(c.bytes_written) if c else 0,
                status=st, module_type=mtype, dims=lib_call_dims(tuple(c.dims) if c else (), lib), recompute=recompute))


# ---- fused attention routing ------------------------------------------------------------------------------------

_AUTOCAST_DTYPE: list = [None]  # set while a trace emulates autocast
_ACTIVE_TRACER: list = [None]  # the tracer of the running trace (library calls tag their records through it)


ATTENTION_MODES = ("sdpa", "eager")


def _eager_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """Attention as eager PyTorch code runs it (separate kernels): Q @ K^T (batched GEMM), scale, mask, softmax,
    dropout, @ V (batched GEMM); autograd records the backward of each."""
    h, kvh = query.shape[1], key.shape[1]
    if kvh != h:
        key = key.repeat_interleave(h // kvh, dim=1)
        value = value.repeat_interleave(h // kvh, dim=1)
    s = scale if scale is not None else 1.0 / math.sqrt(query.shape[-1])
    attn = torch.matmul(query, key.transpose(-2, -1)) * s
    if is_causal:
        keep = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool, device=query.device).tril()
        attn = attn.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        attn = attn.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else attn + attn_mask
    attn = torch.softmax(attn, dim=-1)
    if dropout_p > 0:
        attn = F.dropout(attn, p=dropout_p, training=True)
    return torch.matmul(attn, value)


def _fused_sdpa(orig, eager: bool = False):
    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if query.device.type != "meta" or query.dim() != 4 or key.dim() != 4:
            return orig(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                        scale=scale, enable_gqa=enable_gqa)
        if eager:
            return _eager_sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale)
        h, kvh = query.shape[1], key.shape[1]
        dtype = _AUTOCAST_DTYPE[0] or query.dtype  # under autocast the kernel runs in the autocast dtype
        # the mask as CUDA builds it, in the kernel's dtype and its own shape ([b or 1, 1, sq, sk]: one mask for all
        # heads): cast first, broadcast over the heads after (a view). Cast after the broadcast, the tracer's
        # autocast cast made one copy per head (Mistral-7B's sliding-window mask: 67 GiB of activations at 4,096
        # tokens, 'does not fit' where it fits)
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros((), dtype=dtype, device=query.device).masked_fill(
                ~attn_mask, float("-inf")) if attn_mask.dim() == 0 else torch.where(
                attn_mask, torch.zeros((), dtype=dtype, device=query.device),
                torch.full((), float("-inf"), dtype=dtype, device=query.device))
        use_flash = (attn_mask is None and dtype in (torch.float16, torch.bfloat16)
                     and query.shape[-1] <= 256 and query.shape[-1] == value.shape[-1] and h % kvh == 0)
        if kvh != h and not use_flash:
            # GQA outside flash: key/value heads are broadcast by a copy (as torch's math path does)
            rep = h // kvh
            key = key.repeat_interleave(rep, dim=1)
            value = value.repeat_interleave(rep, dim=1)
        if attn_mask is not None:
            b, _, sq, _ = query.shape
            attn_mask = attn_mask.to(dtype).expand(b, h, sq, key.shape[2])
        need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
        if use_flash:
            out = torch.ops.aten._scaled_dot_product_flash_attention(query, key, value, dropout_p, is_causal, False,
                                                                     scale=scale)
        else:
            out = torch.ops.aten._scaled_dot_product_efficient_attention(query, key, value, attn_mask, need_grad,
                                                                         dropout_p, is_causal, scale=scale)
        return out[0]
    sdpa.__wattlint_fused__ = True
    return sdpa


@contextlib.contextmanager
def fused_attention(eager: bool = False):
    """Route F.scaled_dot_product_attention to the fused kernel CUDA would pick (meta tensors only), or with
    ``eager`` to the separate eager kernels (batched GEMM + softmax + batched GEMM)."""
    orig = F.scaled_dot_product_attention
    if getattr(orig, "__wattlint_fused__", False):
        yield
        return
    orig_dropout = F.dropout
    F.scaled_dot_product_attention = _fused_sdpa(orig, eager)
    F.dropout = _fused_dropout(orig_dropout)
    try:
        yield
    finally:
        F.scaled_dot_product_attention = orig
        F.dropout = orig_dropout


def _fused_dropout(orig):
    """F.dropout on meta tensors as CUDA runs it: one fused native_dropout kernel (mask + scale) and one backward
    kernel. On a meta (or CPU) tensor the composite would record bernoulli_ + div_ + mul: 3 kernels."""
    def dropout(input, p=0.5, training=True, inplace=False):
        if (training and 0.0 < p < 1.0 and isinstance(input, torch.Tensor) and input.device.type == "meta"
                and input.is_floating_point()):
            out = torch.ops.aten.native_dropout(input, p, True)[0]
            if inplace:
                return input.copy_(out) if not input.requires_grad else out
            return out
        return orig(input, p, training, inplace)
    dropout.__wattlint_fused__ = True
    return dropout


@contextlib.contextmanager
def autocast_convs(dtype):
    """Cast convolution inputs to the autocast dtype above autograd (as CUDA autocast does before the composite
    conv2d checks that input and bias dtypes match); parameter casts are cached for the step like autocast's.
    ``dtype``: a dtype, None (nothing to cast), or a callable answering the dtype at each call (the tracer's, which
    the model's own autocast regions change)."""
    if dtype is None:
        yield
        return
    current = dtype if callable(dtype) and not isinstance(dtype, torch.dtype) else (lambda: dtype)
    names = ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
    origs = {n: getattr(F, n) for n in names}
    cache: dict[tuple[int, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def cast(t, dt):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dtype == dt:
            return t
        if isinstance(t, nn.Parameter):
            hit = cache.get((id(t), dt))
            if hit is not None and hit[0] is t:
                return hit[1]
            c = t.to(dt)
            cache[(id(t), dt)] = (t, c)
            return c
        return t.to(dt)

    def wrap(orig):
        def conv(input, weight, bias=None, *args, **kwargs):
            dt = current()
            if dt is None:
                return orig(input, weight, bias, *args, **kwargs)
            return orig(cast(input, dt), cast(weight, dt), cast(bias, dt), *args, **kwargs)
        return conv
    for n in names:
        setattr(F, n, wrap(origs[n]))
    try:
        yield
    finally:
        for n, f in origs.items():
            setattr(F, n, f)


# ---- loss -------------------------------------------------------------------------------------------------------

def _token_inputs(args=(), kwargs=None, inputs: Sequence[TensorSpec] = (),
                  model=None) -> list[tuple[str, tuple[int, ...], frozenset[int]]]:
    """(name, shape, vocabularies) of every integer input of 2 or more dims (token ids [batch, seq], ...): what a
    plain module's [batch, seq, vocab] logits are a token-level cross-entropy over. Named by the --input specs where
    given. ``vocabularies``: the sizes of the ``model``'s nn.Embedding tables (empty: no model given), which the
    logits' last dim must be one of: an encoder's [batch, seq, hidden] states over the same ids are no logits."""
    vocabs = frozenset(int(m.num_embeddings) for m in model.modules() if isinstance(m, nn.Embedding)) \
        if model is not None else frozenset()
    leaves = [x for i, a in enumerate(args) for x in _tensor_leaves(f"input{i}" if len(args) > 1 else "input", a)]
    leaves += [x for k, v in (kwargs or {}).items() for x in _tensor_leaves(k, v)]
    if inputs and len(inputs) == len(leaves):
        leaves = [(spec.name, t) for spec, (_, t) in zip(inputs, leaves)]
    return [(n, tuple(int(d) for d in t.shape), vocabs) for n, t in leaves
            if t.dim() >= 2 and not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)]


def _token_logits(flat, tokens) -> tuple[str, tuple[int, ...]] | None:
    """A plain module's single floating-point output of 3 or more dims whose leading dims are an integer input's
    shape (token ids [B, T] -> logits [B, T, V]): the (name, shape) of that input, else None."""
    if len(flat) != 1 or flat[0][1].dim() < 3 or flat[0][1].shape[-1] < 2:
        return None
    lead, last = tuple(int(d) for d in flat[0][1].shape[:-1]), int(flat[0][1].shape[-1])
    return next(((n, s) for n, s, vocabs in tokens if s == lead and (not vocabs or last in vocabs)), None)


def _logit_outputs(output, hf: bool, tokens=()) -> list[tuple[str, torch.Tensor]]:
    """The classification logits the traced loss is a cross-entropy over: every floating-point output named
    ``logits``, ``*_logits`` or ``logits_*`` (Hugging Face's names: BertForPreTraining's prediction_logits and
    seq_relationship_logits, a question-answering head's start_logits and end_logits, CLIP's logits_per_image and
    logits_per_text, each trained with its own cross-entropy; not a mixture-of-experts router's router_logits, which
    feed the load-balancing loss), or a plain module's single 2-D output, or its single output of 3 or more dims
    whose leading dims are an integer input's shape (``tokens``: :func:`_token_inputs`; a language model's
    [batch, seq, vocab] logits from token ids [batch, seq])."""
    flat = [(n, t) for n, t in _flatten(output) if t.is_floating_point()]
    named = [(n, t) for n, t in flat if t.dim() >= 1 and (n == "logits" or n.endswith("_logits")
                                                           or n.startswith("logits_"))
             and "router_logits" not in n]  # a mixture-of-experts router's (encoder_router_logits, ...) feed its
    # auxiliary loss
    if not named and not hf and len(flat) == 1 and flat[0][1].dim() == 2 and flat[0][1].shape[1] > 1:
        named = [flat[0]]
    if not named and not hf and _token_logits(flat, tokens):
        named = [flat[0]]
    return named


def _logits(output, hf: bool, tokens=()) -> torch.Tensor | None:
    """The largest of :func:`_logit_outputs` (whose cross-entropy holds the most memory at the start of backward),
    else None."""
    outs = _logit_outputs(output, hf, tokens)
    return max((t for _, t in outs), key=lambda t: t.numel()) if outs else None


def _own_loss(output) -> tuple[torch.Tensor, tuple[int, ...]] | None:
    """The loss the model computes itself (Hugging Face's ``ModelOutput.loss`` when labels are given, a DETR-style
    ``{'loss': ..., 'pred_logits': ..., 'pred_boxes': ...}``): a floating-point ``loss`` entry of a mapping output that
    autograd can backpropagate from, as (scalar loss, the entry's shape when it had to be reduced), else None."""
    if not isinstance(output, Mapping):
        return None
    t = output.get("loss") if hasattr(output, "get") else None
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.grad_fn is None:
        return None
    return (t, ()) if t.dim() == 0 else (t.mean(), tuple(int(d) for d in t.shape))


def _reached_params(roots: Sequence[torch.Tensor]) -> set[int]:
    """The ids of the leaf tensors (parameters) whose gradients backward from ``roots`` accumulates: the
    AccumulateGrad nodes of their autograd graph."""
    todo = [t.grad_fn for t in roots if t.grad_fn is not None]
    seen: set = set()
    out: set[int] = set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        var = getattr(node, "variable", None)
        if isinstance(var, torch.Tensor):
            out.add(id(var))
        todo.extend(nxt for nxt, _ in node.next_functions)
    return out


# the fields of a Hugging Face ModelOutput that carry states, not predictions: hidden states (last_hidden_state,
# hidden_states, image_hidden_states, encoder_last_hidden_state, ...), attention maps, caches, embeddings
# (image_embeds, text_embeds) and pooled outputs. Training never puts them in a loss: summing one would train
# layers the real loss does not reach (LLaVA's vision tower returns its last layer, which vision_feature_layer=-2
# leaves unused)
_STATE_FIELD = re.compile(r"(?:^|_)(?:hidden_states?|attentions|past_key_values|cache|embeds|embeddings|"
                          r"pooler_output|pooled_output)$")


def _is_model_output(obj) -> bool:
    return isinstance(obj, Mapping) and any(
        c.__name__ == "ModelOutput" and c.__module__.startswith("transformers") for c in type(obj).__mro__)


def _state_outputs(obj, out: set[int] | None = None) -> set[int]:
    """The ids of the tensors a Hugging Face ModelOutput (nested ones included, LLaVA's image_outputs) holds in a
    state field (_STATE_FIELD): not training heads."""
    out = set() if out is None else out
    if isinstance(obj, Mapping):
        hf_out = _is_model_output(obj)
        for k in obj.keys():
            v = obj[k]
            if hf_out and _STATE_FIELD.search(str(k)):
                out.update(id(t) for _, t in _flatten(v))
            else:
                _state_outputs(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _state_outputs(v, out)
    return out


def _loss(output, hf: bool, arch: str | None = None, tokens=()) -> tuple[torch.Tensor, str]:
    """The loss traced after the forward: (loss tensor, assumption text). Also used by calibrate.validate.
    ``arch``: the Hugging Face class, for what its real loss is (a CTC head's is priced as a cross-entropy).
    ``tokens``: the integer inputs (:func:`_token_inputs`), for a plain language model's token-level loss."""
    flat = [(n, t) for n, t in _flatten(output) if t.is_floating_point()]
    if not flat:
        raise InputError("the model's forward returned no floating-point tensor to build a loss from")
    own = _own_loss(output)
    if own is not None:
        loss, shape = own
        return loss, ("loss: the model's own 'loss' output (computed inside its forward), backpropagated as returned"
                      + (f" (a tensor of shape {list(shape)}: reduced by its mean)" if shape else ""))
    outs = _logit_outputs(output, hf, tokens)
    if outs:
        total, parts = None, []
        for n, t in outs:
            classes = t.shape[-1]
            rows = t.reshape(-1, classes)
            labels = torch.zeros(rows.shape[0], dtype=torch.long, device=t.device)
            ce = F.cross_entropy(rows, labels)
            total = ce if total is None else total + ce
            parts.append((n, classes, list(t.shape[:-1])))
        token = None if hf or len(parts) != 1 else _token_logits(flat, tokens)
        if token:
            n, classes, shape = parts[0]
            note = token_loss_note(classes, shape, token)
        elif len(parts) == 1:
            n, classes, shape = parts[0]
            note = f"loss: cross-entropy on the {classes}-way {n if n != 'output' else 'logits'} (labels of shape " \
                   f"{shape}, every position labelled)"
        else:
            note = ("loss: the sum of a cross-entropy on each of " + ", ".join(
                f"{n} ({classes}-way, labels of shape {shape})" for n, classes, shape in parts)
                + ", every position labelled")
        if arch and arch.endswith("ForCTC"):
            note += (f" (a {arch} trains with CTC: priced as this cross-entropy, the same log-softmax over every "
                     f"frame's logits forward and backward; CTC's alignment over frames x target length, small "
                     f"beside the model, is not priced)")
        # the other outputs that train parameters these cross-entropies do not reach (a detector's box head beside
        # its class logits): each enters the loss as its sum, as a tuple of such outputs does, so those heads are
        # priced as trained (their backward, gradients and optimizer state), not as frozen. A Hugging Face
        # ModelOutput's hidden states, attentions, caches, embeddings and pooled outputs are not heads (review s54:
        # LLaVA's vision tower output trained its last layer, which the real loss never reaches)
        reached = _reached_params([t for _, t in outs])
        states = _state_outputs(output)
        more = []
        for n, t in flat:
            if any(t is o for _, o in outs) or t.grad_fn is None or id(t) in states:
                continue
            new = _reached_params([t]) - reached
            if new:
                reached |= new
                total = total + t.sum()
                more.append(n)
        if more:
            note += ("; plus the sum of " + ", ".join(more) + " (an output that trains parameters the "
                     "cross-entropy does not reach: the stand-in for its own loss, a regression loss's cost)")
        return total, note
    if len(flat) == 1 and flat[0][1].dim() == 0:
        return flat[0][1], "loss: the forward returns a scalar, used as the loss"
    total = None
    for _, t in flat:
        s = t.sum()
        total = s if total is None else total + s
    return total, ("loss: sum of the forward outputs (no classification logits recognised: neither one 2-D output "
                   "nor one [..., classes] output over an integer input's shape)")


# ---- the model's own autocast regions ------------------------------------------------------------------------

def _region_dtype(args, kwargs, dtypes) -> torch.dtype | None:
    """The half dtype an op in backward runs in when it takes tensors of one of ``dtypes`` (a user autocast
    region's) beside float32 ones: mixed dtypes reach a matmul / convolution only from an emulated region."""
    found = {x.dtype for x in T.tensors(list(args)) + T.tensors(list(kwargs.values())) if x.is_floating_point()}
    if torch.float32 not in found:
        return None
    return next((d for d in (torch.bfloat16, torch.float16) if d in found and d in dtypes), None)


class _UserAutocast:
    """Honours ``with torch.autocast("cuda", dtype=torch.bfloat16):`` (and torch.cuda.amp.autocast, the decorator
    form) written inside the model's forward. On a machine without CUDA torch disables such a region (and meta tensors
    carry no autocast key), so it changed nothing: the region was costed in fp32. While the trace runs, entering a CUDA
    region in forward sets the tracer's autocast dtype (the emulation --precision uses: CUDA autocast's op lists),
    leaving restores it; a nested ``enabled=False`` region turns it off again. Under --precision fp16 / bf16 / fp8 the
    whole step is emulated already and the regions are counted as not applied."""

    def __init__(self, tracer: "_Tracer"):
        self.t = tracer
        self.global_lower = tracer.lower_dtype
        self.stack: list = []
        self.origs: tuple = ()

    def install(self) -> "_UserAutocast":
        cls = torch.amp.autocast_mode.autocast
        self.origs = (cls.__init__, cls.__enter__, cls.__exit__)
        init0, enter0, exit0 = self.origs
        me = self

        def init(ac, device_type, dtype=None, enabled=True, cache_enabled=None):
            init0(ac, device_type, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)
            ac._wl_enabled = bool(enabled)  # what the model asked for (torch turns a CUDA region off without CUDA)

        def enter(ac):
            me.enter(ac)
            return enter0(ac)

        def exit_(ac, *exc):
            me.exit()
            return exit0(ac, *exc)

        cls.__init__, cls.__enter__, cls.__exit__ = init, enter, exit_
        return self

    def restore(self) -> None:
        if self.origs:
            cls = torch.amp.autocast_mode.autocast
            cls.__init__, cls.__enter__, cls.__exit__ = self.origs
            self.origs = ()

    def enter(self, ac) -> None:
        t = self.t
        self.stack.append((t.lower_dtype, _AUTOCAST_DTYPE[0]))
        if getattr(ac, "device", None) != "cuda" or t.phase is not Phase.FORWARD:
            return
        enabled = getattr(ac, "_wl_enabled", getattr(ac, "_enabled", False))
        dtype = getattr(ac, "fast_dtype", None)
        if self.global_lower is not None:
            t.user_autocast_ignored += 1  # --precision emulates the whole step
            return
        if enabled and dtype in (torch.float16, torch.bfloat16):
            t.user_autocast[dtype] += 1
            t.lower_dtype = _AUTOCAST_DTYPE[0] = dtype
        elif not enabled:
            t.lower_dtype = _AUTOCAST_DTYPE[0] = None

    def exit(self) -> None:
        if self.stack:
            self.t.lower_dtype, _AUTOCAST_DTYPE[0] = self.stack.pop()

    def precision(self) -> str | None:
        """The graph's precision when regions ran: the half dtype of the most region entries (mixed precision as
        autocast runs it: fp32 master weights, the weights' half-precision casts for the region's matmuls)."""
        if not self.t.user_autocast:
            return None
        dtype = max(self.t.user_autocast, key=lambda d: self.t.user_autocast[d])
        return "bf16" if dtype == torch.bfloat16 else "fp16"

    def note(self) -> str | None:
        t = self.t
        if t.user_autocast:
            names = ", ".join(f"{n} x{t.user_autocast[d]}" for d, n in ((torch.bfloat16, "bfloat16"),
                                                                         (torch.float16, "float16"))
                              if t.user_autocast[d])
            return (f"precision: the model's own torch.autocast('cuda') regions in forward ({names} region entries) "
                    "emulated with CUDA autocast's op lists inside them (matmul/conv/attention in the region's dtype, "
                    "norms/softmax/losses/reductions in float32), their backward in the same dtypes; outside them "
                    f"fp32; fp32 master weights and optimizer state; the graph is costed as {self.precision()} "
                    "mixed-precision step (the weights' half-precision casts counted for all weights)")
        if t.user_autocast_ignored:
            return (f"precision: the model's own torch.autocast('cuda') regions ({t.user_autocast_ignored} entries) "
                    "are not applied on their own: --precision's autocast emulation covers the whole step (a region "
                    "with enabled=False is costed in the --precision dtype too)")
        return None


# ---- driver -----------------------------------------------------------------------------------------------------

def pure_half_dtype(model: nn.Module) -> str | None:
    """'fp16' / 'bf16' when every trainable floating-point parameter is held in that dtype (``model.half()``): PyTorch
    then trains it in that dtype throughout, optimizer state included (``zeros_like`` of the parameters), with no fp32
    master copy; None otherwise."""
    dts = {p.dtype for p in model.parameters() if p.requires_grad and p.is_floating_point()}
    if len(dts) != 1:
        return None
    return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dts.pop())


def count_params(model: nn.Module) -> tuple[int, int, int]:
    seen = set()
    n = b = tr = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n += p.numel()
        b += p.numel() * p.element_size()
        if p.requires_grad:
            tr += p.numel()
    return n, b, tr


def to_meta(model: nn.Module) -> nn.Module:
    """The module moved to the meta device, in place, its tied parameters still tied. ``Module.to("meta")`` makes a
    new Parameter per module (a CPU tensor's storage cannot take meta data), which unties shared weights: GPT-2's
    LM head and token embedding became two parameters (+39 % on a small GPT-2: gradients, optimizer state and
    MFU counted twice)."""
    if not any(t.device.type != "meta" for t in list(model.parameters()) + list(model.buffers())):
        return model
    shared: dict[int, list[tuple[nn.Module, str]]] = {}
    for mod in model.modules():
        for name, p in mod._parameters.items():
            if p is not None:
                shared.setdefault(id(p), []).append((mod, name))
    model = model.to("meta")
    for places in shared.values():
        first_mod, first_name = places[0]
        for mod, name in places[1:]:
            mod._parameters[name] = first_mod._parameters[first_name]
    return model


def _meta_like(x):
    if isinstance(x, torch.Tensor):
        if x.device.type == "meta":
            return x
        y = torch.empty(x.shape, dtype=x.dtype, device="meta")
        return y.requires_grad_(True) if x.requires_grad and x.is_floating_point() else y
    if isinstance(x, (list, tuple)):
        return type(x)(_meta_like(v) for v in x)
    if isinstance(x, dict):
        return {k: _meta_like(v) for k, v in x.items()}
    return x


def trace(model: nn.Module, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *, source: str = "",
          precision: str = "default", optimizer: str = "adamw", activation_checkpointing: bool = False,
          hf: bool = False, micro_batch: int = 1, seq_len: int = 0, assumptions: Iterable[str] = (),
          inputs: Sequence[TensorSpec] = (), name: str = "", seq_read: int | None = None,
          capacity_factor: float = MOE.DEFAULT_CAPACITY_FACTOR, optimizer_impl: str = "foreach",
          attention: str = "sdpa", grads_to_none: bool = True) -> CostGraph:
    """Trace forward + loss + backward + optimizer step of ``model`` on meta tensors.

    Mixture-of-experts layers are traced at their routed cost (:mod:`wattlint.frontends.torch_moe`: balanced
    routing, ``capacity_factor`` rows per expert); an MoE layout it does not know raises InputError.
    ``optimizer_impl``: ``foreach`` (torch's CUDA default: one multi-tensor kernel per elementwise op of the update,
    several passes over the parameters) or ``fused`` (``fused=True``: one kernel, one pass).
    ``attention``: ``sdpa`` (default) records F.scaled_dot_product_attention as one fused kernel; ``eager`` as the
    separate kernels of eager attention (Q @ K^T, scale, mask, softmax, dropout, @ V).
    ``grads_to_none``: the loop's ``zero_grad(set_to_none=...)`` (True: PyTorch 2.x's default, gradients freed, no
    kernels). False (the default before 2.0): the gradients stay allocated, so backward accumulates into them (one
    in-place add per parameter tensor, torch's AccumulateGrad ``grad += new_grad``) and the step ends with
    ``zero_grad(set_to_none=False)``: one fill kernel per gradient tensor (``zero_``; one ``_foreach_zero_`` per
    dtype with a foreach / fused optimizer), recorded in the optimizer phase (steady state: the fill the next
    iteration's ``zero_grad()`` would run first).
    ``seq_len``: tokens per sample (the graph's); ``seq_read``: one sequence's length, which data-dependent integer
    reads are answered with (``seq_len`` when None; shorter for a multiple-choice model's [batch, choices, seq])."""
    if attention not in ATTENTION_MODES:
        raise InputError(f"unknown attention {attention!r} (sdpa or eager)")
    eager = attention == "eager"
    model = to_meta(model)
    args = _meta_like(tuple(args))
    kwargs = _meta_like(dict(kwargs or {}))
    params, param_bytes, trainable = count_params(model)
    prec = precision if precision in ("fp32", "tf32", "fp16", "bf16", "fp8") else "fp32"
    # a module held in half precision trains in it without autocast (the graph's precision, as an fp16 export's)
    pure_half = pure_half_dtype(model)
    notes = list(assumptions)
    tracer = _Tracer(model, prec)
    read = seq_len if seq_read is None else seq_read  # one sequence's length (seq_len: tokens per sample)
    tracer.int_answer = int(read) if read and read > 1 else _feature_sequence(args, kwargs)
    moe = MOE.MoeRouting(model, capacity_factor).install()  # raises (swapping nothing) on an unknown MoE layout
    # the caller's module is left as it was: its modules' train/eval modes and its parameters' .grad (cleared while
    # traced: a .grad left there would be accumulated into, so a second estimate differed from the first)
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.grad) for p in _unique_params(model)]
    for p, _ in grads:
        p.grad = None
    model.train()
    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(tracer.pre_hook, with_kwargs=True))
        handles.append(m.register_forward_hook(tracer.post_hook, with_kwargs=True, always_call=True))
    restore_ckpt, ckpt_where = _enable_checkpointing(model, hf) if activation_checkpointing else (None, "")
    # the parameters backward accumulates a gradient into: torch's optimizers step (and keep state for) only those
    # with a .grad; one the loss never reaches (an unused head, a layer run under torch.no_grad()) costs nothing
    reached: set[int] = set()
    for p in _unique_params(model):
        if p.requires_grad:
            handles.append(p.register_post_accumulate_grad_hook(lambda t: reached.add(id(t))))
    restore_rnn, n_rnn = _route_rnns(model)
    mode = _Recorder(tracer)
    _AUTOCAST_DTYPE[0] = tracer.lower_dtype
    _ACTIVE_TRACER[0] = tracer
    nonzero_cfg = _meta_nonzero_all()
    finite_cfg = _finite_as_nan_inf()
    user_ac = _UserAutocast(tracer).install()
    quiet = warnings.catch_warnings()  # the library never prints: the user's model may warn while traced
    quiet.__enter__()
    warnings.simplefilter("ignore")
    try:
        with fused_attention(eager), torch.autograd.graph.saved_tensors_hooks(tracer.pack, lambda x: x):
            with mode, autocast_convs(lambda: tracer.lower_dtype):
                tracer.phase = Phase.FORWARD
                output = model(*args, **kwargs)
                tokens = _token_inputs(args, kwargs, inputs, model)
                loss, loss_note = _loss(output, hf, type(model).__name__ if hf else None, tokens)
                logits = _logits(output, hf, tokens)
            tracer.settle_saved()
        tracer.stack.clear()
        if not grads_to_none:
            _allocate_grads(model)  # zeroed, not freed, by the previous step's zero_grad
        # convolutions re-run by activation checkpointing in backward are cast as in forward (checkpoint restores
        # autocast for the recompute; without it a bf16 run failed: 'Input type BFloat16 and bias type float')
        with fused_attention(eager), mode, autocast_convs(lambda: tracer.lower_dtype):
            tracer.phase = Phase.BACKWARD
            loss.backward()
            if tracer.user_autocast:  # set op by op in backward (the regions' ops)
                tracer.lower_dtype = None
            tracer.stack.clear()
            tracer.phase = Phase.OPTIMIZER
            opt_note = _optimizer_step(model, optimizer, optimizer_impl, grads_to_none, reached)
    except (InputError, T.OpCostError):  # an op-cost formula failing on an op PyTorch ran: our bug (exit 3)
        raise
    except BaseException as e:  # the user's model failed under tracing (sys.exit() too): one line for the CLI
        if isinstance(e, KeyboardInterrupt):
            raise
        what = (f"the model called sys.exit({e.code!r})" if isinstance(e, SystemExit) else
                exception_line(e))
        if isinstance(e, RuntimeError) and "does not require grad" in str(e):  # torch's words for nothing to train
            what = ("nothing to train: the loss does not depend on any trainable parameter (no parameters, all "
                    "frozen, only buffers, or outputs computed under torch.no_grad() / .detach())")
        elif tracer.phase is Phase.OPTIMIZER and ("sparse gradients" in str(e) or "SparseMeta" in str(e)):
            # nn.Embedding / nn.EmbeddingBag(sparse=True): backward is traced (the sparse gradient's rows), but
            # torch's Adam / AdamW refuse a sparse gradient and SGD's sparse update has no meta kernel
            what = ("the optimizer step on a sparse gradient (an nn.Embedding / nn.EmbeddingBag built with "
                    "sparse=True) cannot be traced: torch's Adam / AdamW refuse sparse gradients (SparseAdam or "
                    "SGD take them) and the sparse update has no meta-device kernel; trace the model with "
                    "sparse=False (a dense gradient table, written whole each step)")
        elif isinstance(e, ValueError) and "Expected more than 1 value per channel when training" in str(e):
            # a BatchNorm in training at one sample per channel (GroupViT at the default micro-batch 1; review s52)
            what += (" (a BatchNorm layer in training needs more than one value per channel: trace at a micro-batch "
                     "of 2 or more, e.g. --batch-size 2)")
        elif isinstance(e, (RuntimeError, AssertionError)) and ("CUDA" in str(e) or "meta tensor" in str(e)):
            what += (" (wattlint builds the model on the meta device, without a GPU: a model that moves itself "
                     "with .cuda() / .to(device) inside its factory or forward cannot be traced; move it outside)")
        raise InputError(f"tracing the model failed: {what}") from (None if isinstance(e, SystemExit) else e)
    finally:
        quiet.__exit__(None, None, None)
        user_ac.restore()
        _AUTOCAST_DTYPE[0] = None
        _ACTIVE_TRACER[0] = None
        nonzero_cfg()
        finite_cfg()
        restore_rnn()
        moe.restore()
        for h in handles:
            h.remove()
        if restore_ckpt:
            restore_ckpt()
        for p, g in grads:
            p.grad = g
        for m, training in modes:
            m.training = training
    notes.append(loss_note)
    notes.append(opt_note)
    idle = [p for p in _unique_params(model) if p.requires_grad and id(p) not in reached]
    n_idle = sum(p.numel() for p in idle)
    if idle:
        trainable -= n_idle
        notes.append(f"{n_idle:,} trainable parameters in {len(idle)} tensors receive no gradient in the traced step "
                     f"(not used by the loss, or used under torch.no_grad() / .detach()): no gradient, optimizer "
                     f"state or update priced for them (torch's optimizers and FSDP2 skip a parameter whose .grad is "
                     f"None; DeepSpeed ZeRO's and FSDP1's flat parameter buffers would still hold them)")
    if not grads_to_none:
        n_grads = sum(1 for p in _unique_params(model) if p.requires_grad and id(p) in reached)
        notes.append(f"zero_grad(set_to_none=False) (PyTorch's default before 2.0): the {n_grads} gradient tensors "
                     "stay allocated, so backward accumulates into each (one in-place add per tensor: reads grad and "
                     "new grad, writes grad) and each step zeroes each (one fill kernel per tensor writing its bytes, "
                     "one launch each; priced in the optimizer phase, one _foreach_zero_ per dtype with a foreach / "
                     "fused optimizer)")
    if prec in ("fp16", "bf16", "fp8"):
        traced = "bf16" if prec == "fp8" else prec
        notes.append(f"precision: {traced} autocast emulated with CUDA's op lists (matmul/conv/attention in "
                     f"{'float16' if prec == 'fp16' else 'bfloat16'}, norms/softmax/losses/reductions in float32); "
                     + (f"the module's trainable parameters are already {pure_half} ({'model.half()' if pure_half == 'fp16' else '.to(bfloat16)'}): "
                        f"no fp32 master copy, optimizer state in {pure_half}"
                        + ("" if pure_half == traced else f", their casts to {traced} cached as autocast caches "
                           f"weight casts") if pure_half else "fp32 master weights and optimizer state")
                     + ("; an fp8 plan is traced so: the linear layers that run in FP8 and their casts are decided "
                        "at estimate time (wattlint.fp8)" if prec == "fp8" else ""))
        if prec == "fp16":
            notes.append("precision: fp16 loss scaling (GradScaler's unscale / inf-check pass over the gradients) "
                         "is not traced")
    elif pure_half:
        name = "float16" if pure_half == "fp16" else "bfloat16"
        notes.append(f"precision: the module's trainable parameters are {name} (model.half() / .to({name})): "
                     f"forward, backward and the optimizer step run in {name} as PyTorch runs them, without "
                     f"autocast and without an fp32 master copy (optimizer state in {name}, as the optimizer's "
                     f"zeros_like of the parameters)")
    elif tracer.user_autocast:
        pass  # said below (_UserAutocast.note)
    elif precision in ("default", None):
        notes.append(_default_precision_note(model, tracer.records))
    else:
        notes.append(f"precision: {prec} (no autocast)")
    ac_note = user_ac.note()
    if ac_note:
        notes.append(ac_note)
    if eager:
        notes.append("attention: eager (separate kernels: Q @ K^T batched GEMM, scale, mask, softmax, dropout, "
                     "@ V batched GEMM, and their backward), as --attention eager asks")
    if tracer.attention_kernels:
        ks = ", ".join(f"{k.lstrip('_')} x{v}" for k, v in sorted(tracer.attention_kernels.items()))
        # review: a sliding-window mask (Mistral, Qwen2, Gemma 3) reaches sdpa as a dense [s, s] mask, priced over all
        # pairs (causal=0 records) as the kernel runs it; the note said only that causal masks count s(s+1)/2
        masked = tracer.attention_masked
        calls = sum(tracer.attention_kernels.values())
        dense = (f"; {masked} of the {calls} calls {'takes' if masked == 1 else 'take'} an explicit mask tensor "
                 "(a sliding-window, padding or position-bias mask, as transformers builds it), which sdpa applies "
                 "densely: those count all sq x sk query-key pairs, the masked ones included (the kernel does not "
                 "skip them)") if masked else ""
        notes.append(f"attention: scaled_dot_product_attention recorded as the fused CUDA kernel ({ks}); causal "
                     f"masks count the s(s+1)/2 query-key pairs the kernel computes{dense}")
    if tracer.scalar_reads:
        rs = ", ".join(f"{k} x{v}" for k, v in sorted(tracer.scalar_reads.items()))
        kinds = {k.split("->", 1)[0].split(" tensor to cpu", 1)[0] for k in tracer.scalar_reads}
        said = [("masks taken as all-ones (no padding), every element selected"
                 if kinds & {"bool", "nonzero", "masked_select", "unique"} else ""),
                (f"integer reads (a length, a count) as the inputs' full sequence length ({tracer.int_answer})"
                 if tracer.int_answer > 1 else "integer reads (a length, a count) as 1: no sequence dim in the inputs")
                if "int" in kinds else "",
                "positions (argmax ...) as 0" if "index" in kinds else "",
                ("floating-point reads (a statistic such as x.abs().mean().item()) as 0.0: a loop count or branch "
                 "computed from one follows 0.0, which may not be the path real data takes")
                if "float" in kinds else "",
                "NaN / inf checks as clean data" if "finite check" in kinds else "",
                ("tensors copied to the CPU (.cpu(), e.g. the lengths pack_padded_sequence needs there) filled with "
                 "those answers" + (f" (lengths: every sequence {tracer.int_answer} long, none padded)"
                                    if any(k.startswith("int tensor") for k in tracer.scalar_reads) else ""))
                if any(" tensor to cpu" in k for k in tracer.scalar_reads) else ""]
        notes.append(f"data-dependent reads (.item()/int()/bool()/nonzero) on meta tensors answered without data "
                     f"({rs}): {', '.join(x for x in said if x)}")
    if n_rnn:
        notes.append("recurrent layers: traced as cuDNN runs them (one input-projection GEMM per layer and "
                     "direction over the whole sequence, then per step a recurrent GEMM + one fused pointwise "
                     "cell kernel for LSTM/GRU, forward and backward)")
    if activation_checkpointing:
        notes.append(f"activation checkpointing: {ckpt_where} wrapped in torch.utils.checkpoint (non-reentrant), "
                     "which recomputes their forward in backward where it saved tensors for it")
    else:
        own = _own_checkpointing_note(tracer.records)
        if own:
            notes.append(own)
    notes.extend(moe.notes())
    out_specs = tuple(TensorSpec(n, str(t.dtype).rsplit(".", 1)[-1], tuple(int(d) for d in t.shape))
                      for n, t in _flatten(output))
    modules = tuple((n, type(m).__name__) for n, m in model.named_modules())
    extra = {**tracer.kept.extra(),
             **({"activation_without_checkpointing": tracer.whole.extra()}
                if activation_checkpointing and tracer.whole_complete else {}),
             "optimizer_impl": optimizer_impl, "attention": "eager" if eager else "sdpa",
             "activation_checkpointing": bool(activation_checkpointing)}
    if logits is not None:  # the cross-entropy's transient memory at the start of backward (wattlint.memory)
        extra["loss_logits_elems"] = int(logits.numel())
        extra["loss_logits_bytes"] = int(logits.element_size())
    blocks = _repeated_blocks(model)
    if blocks:
        extra["block_params"], extra["block_count"] = blocks
    if not grads_to_none:
        extra["zero_grad_set_to_none"] = False
    if n_idle:  # trainable parameters no gradient reached: a tower the step's inputs do not run (MFU counts none)
        extra["idle_params"] = int(n_idle)
    lookup = _embedding_lookup_params(model, reached)
    if lookup:
        extra["embedding_lookup_params"] = lookup
    if pure_half:  # trained in its own half dtype (wattlint.memory: 2-byte gradients and state, no master copy)
        extra["pure_half_params"] = pure_half
    if trainable < params:
        extra["frozen_cast_params"] = _frozen_cast_params(model, tracer.records)
        # frozen parameters backward never runs through (below the lowest trainable layer): MFU counts them 2 N
        extra["frozen_forward_only_params"] = _frozen_forward_only_params(model, tracer.records)
    if moe.layers:
        extra["moe"] = moe.summary()
    info = ModelInfo(source=source, format="torch", params=params, param_bytes=param_bytes,
                     trainable_params=trainable, name=name or type(model).__name__)
    return CostGraph(model=info, records=tuple(tracer.records), inputs=tuple(inputs), outputs=out_specs,
                     modules=modules, assumptions=tuple(notes), micro_batch=micro_batch, seq_len=seq_len,
                     precision=prec if prec in ("fp16", "bf16", "fp8") else (pure_half or user_ac.precision() or prec),
                     optimizer=optimizer,
                     extra=extra)


def _frozen_cast_params(model: nn.Module, records) -> int:
    """Frozen parameters whose half-precision cast autocast keeps until backward: autocast caches the casts of
    weights that require grad only; a frozen matmul / convolution weight is cast at each use, and its cast is kept
    only when autograd saves it for the input gradient, i.e. when backward runs through its module (LoRA: every
    frozen layer above the first adapter; a frozen prefix below the trainable layers: none)."""
    gemm = {r.module for r in records
            if r.phase is Phase.FORWARD and r.kind in (OpKind.MATMUL, OpKind.CONV, OpKind.RNN)}
    # backward proper: a checkpointed block's forward rerun in backward (recompute records) runs every module of
    # the block, a frozen one whose input gradient backward never needs too (the block's first layer of a LoRA)
    backward = {r.module for r in records if r.phase is Phase.BACKWARD and not r.recompute}
    seen: set[int] = set()
    n = 0
    for name, mod in model.named_modules():
        if name not in gemm or name not in backward:
            continue
        for p in mod.parameters(recurse=False):
            if not p.requires_grad and p.is_floating_point() and id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
    return n


def _frozen_forward_only_params(model: nn.Module, records) -> int:
    """Frozen floating-point parameters whose modules get no backward record (recompute left out): backward does
    not run through them, since nothing trainable lies below them (a frozen backbone under a linear probe; a LoRA
    model's embeddings and the first block's frozen projections ahead of the first adapter): forward only, 2 FLOPs
    per parameter and token, not the 4 of a frozen layer that passes input gradients back. A parameter shared by
    several modules (a tied embedding / LM head) counts as backward-run if any of them is."""
    backward = {r.module for r in records if r.phase is Phase.BACKWARD and not r.recompute}
    run: set[int] = set()
    frozen: dict[int, int] = {}
    for name, mod in model.named_modules():
        for p in mod.parameters(recurse=False):
            if p.requires_grad or not p.is_floating_point():
                continue
            frozen[id(p)] = p.numel()
            if name in backward:
                run.add(id(p))
    return sum(n for k, n in frozen.items() if k not in run)


_MATMUL_KINDS = (OpKind.MATMUL, OpKind.CONV, OpKind.ATTENTION, OpKind.RNN)


def _default_precision_note(model: nn.Module, records) -> str:
    """The precision line without --precision (no autocast): PyTorch runs each op in its operands' dtype. A model
    whose parameters are all fp32 runs fp32; one holding half-precision weights (a bf16 base under fp32 LoRA
    adapters) runs their matmuls in that dtype, which the line says with the traced FLOPs' split (review s54: such a
    model was said to be 'fp32 weights and activations')."""
    held: dict[str, list[int]] = {}  # dtype -> [trainable, frozen]
    for p in _unique_params(model):
        if p.is_floating_point():
            held.setdefault(str(p.dtype).rsplit(".", 1)[-1], [0, 0])[0 if p.requires_grad else 1] += p.numel()
    if set(held) <= {"float32"}:
        return "precision: PyTorch default (fp32 weights and activations; cuDNN may use TF32 for convolutions)"
    flops: dict[str, int] = {}
    for r in records:
        if r.phase in (Phase.FORWARD, Phase.BACKWARD) and not r.recompute and r.kind in _MATMUL_KINDS and r.flops:
            flops[r.dtype] = flops.get(r.dtype, 0) + r.flops
    total = sum(flops.values())

    def _held(dt: str, n: list[int]) -> str:
        part = " and ".join(f"{k:,} {w}" for k, w in ((n[0], "trainable"), (n[1], "frozen")) if k)
        return f"{dt} {part}"

    split = (": traced matmul / convolution / attention FLOPs " + ", ".join(
        f"{100.0 * f / total:.1f} % {dt}" for dt, f in sorted(flops.items(), key=lambda kv: -kv[1]))) if total else ""
    return (f"precision: PyTorch default, no autocast: each op runs in its operands' dtype, parameters as held "
            f"({'; '.join(_held(dt, n) for dt, n in sorted(held.items()))}){split} (--precision bf16 / fp16 for autocast)")


def _own_checkpointing_note(records) -> str | None:
    """The line saying the model checkpoints itself (``model.gradient_checkpointing_enable()``, torch.utils.checkpoint
    in its forward) when --activation-checkpointing did not ask for it: the trace holds forward ops rerun in
    backward (recompute records), which HFU and the step time count and MFU does not."""
    re_flops = sum(r.flops for r in records if r.recompute)
    rerun = [r for r in records if r.recompute]
    if not rerun:
        return None
    fwd = sum(r.flops for r in records if r.phase is Phase.FORWARD)
    blocks: list[str] = []
    for r in rerun:  # the outermost indexed module (a ModuleList child: model.layers.3) each rerun op ran in
        parts = r.module.split(".")
        idx = next((i for i, x in enumerate(parts) if x.isdigit()), None)
        name = ".".join(parts[:idx + 1]) if idx is not None else r.module
        if name not in blocks:
            blocks.append(name)
    blocks.sort(key=lambda n: [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in n.split(".")])
    where = (", ".join(blocks) if len(blocks) <= 3 else f"{blocks[0]} ... {blocks[-1]} ({len(blocks)} modules)")
    share = f", {100.0 * re_flops / fwd:.0f} % of the forward's" if fwd else ""
    return (f"activation checkpointing found in the model (model.gradient_checkpointing_enable() or "
            f"torch.utils.checkpoint in its forward; not --activation-checkpointing): backward re-runs the forward "
            f"of {where} (as far as the last tensor it saved): {re_flops / 1e9:,.3g} GFLOP per micro-batch{share}, counted in the step time and HFU, "
            f"not in MFU")


def _repeated_blocks(model: nn.Module) -> tuple[int, int] | None:
    """(parameters of the largest child, number of children) of the ``nn.ModuleList`` holding the most parameters
    (a transformer's layers): the unit an FSDP auto-wrap policy wraps (wattlint.memory), or None."""
    best = None
    for m in model.modules():
        if not isinstance(m, nn.ModuleList) or len(m) < 2:
            continue
        sizes = [count_params(c)[0] for c in m]
        if best is None or sum(sizes) > best[0]:
            best = (sum(sizes), max(sizes), len(sizes))
    return (best[1], best[2]) if best and best[1] > 0 else None


def _meta_nonzero_all():
    """Let meta kernels that need nonzero (boolean indexing) assume every element is selected; returns a restore."""
    try:
        from torch.fx.experimental import _config as fx_config
    except ImportError:  # pragma: no cover
        return lambda: None
    old = getattr(fx_config, "meta_nonzero_assume_all_nonzero", None)
    if old is None:
        return lambda: None
    fx_config.meta_nonzero_assume_all_nonzero = True

    def restore():
        fx_config.meta_nonzero_assume_all_nonzero = old
    return restore


OPTIMIZER_IMPLS = ("foreach", "fused", "for-loop")
_OPTIMIZERS = {  # name -> (torch class, constructor arguments, description)
    "sgd": (torch.optim.SGD, dict(lr=0.1, momentum=0.9), "SGD with momentum 0.9"),
    "adam": (torch.optim.Adam, dict(lr=1e-3), "Adam"),
    "adamw": (torch.optim.AdamW, dict(lr=1e-3), "AdamW (weight decay 0.01)"),
    "adadelta": (torch.optim.Adadelta, dict(lr=1.0), "Adadelta"),
}


def _allocate_grads(model: nn.Module) -> None:
    """Every trainable parameter's ``.grad`` as a zero tensor, outside the recording (steady state under
    ``zero_grad(set_to_none=False)``: backward then accumulates into it)."""
    with torch.utils._python_dispatch._disable_current_modes(), torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and p.grad is None:
                p.grad = torch.zeros_like(p)


def _finite_as_nan_inf():
    """torch.isfinite (function and method) as ~(isnan | isinf) while tracing: under the dispatch mode isfinite
    arrives as abs / ne / eq kernels, so a finite check would not be known as one (_tag_data_reads tags isnan and
    isinf). Returns the function that restores both."""
    fn, method = torch.isfinite, torch.Tensor.isfinite

    def isfinite(x):
        return ~(torch.isnan(x) | torch.isinf(x))

    torch.isfinite, torch.Tensor.isfinite = isfinite, isfinite

    def restore() -> None:
        torch.isfinite, torch.Tensor.isfinite = fn, method

    return restore


def _feature_sequence(args, kwargs) -> int:
    """The sequence length of float features [batch, time, features] (a speech / sensor model without token ids):
    dim 1 of the first 3-D floating-point input, else 1."""
    for _, t in _tensor_leaves("input", list(args) + list((kwargs or {}).values())):
        if t.is_floating_point() and t.dim() == 3:
            return max(1, int(t.shape[1]))
    return 1


def _unique_params(model: nn.Module) -> list:
    """Each parameter once (tied weights are one tensor)."""
    seen: set[int] = set()
    return [p for p in model.parameters() if not (id(p) in seen or seen.add(id(p)))]


def _optimizer_step(model: nn.Module, optimizer: str, impl: str = "foreach", grads_to_none: bool = True,
                    reached: set[int] | None = None) -> str:
    """Record one steady-state optimizer step as CUDA runs it.

    foreach (``torch.optim.<Opt>(foreach=None)`` on CUDA: ``_default_to_fused_or_foreach`` never picks fused by
    default and picks foreach when every parameter is a CUDA tensor): ``_multi_tensor_adam`` issues one
    ``torch._foreach_*`` multi-tensor kernel per elementwise op (AdamW: mul_, lerp_, mul_, addcmul_, sqrt, div_,
    add_, addcdiv_: 8 passes, 13 reads + 8 writes = 84 B per fp32 parameter). fused (``fused=True``): one
    ``torch._fused_adamw_`` kernel reads param, grad, exp_avg, exp_avg_sq and writes param, exp_avg, exp_avg_sq
    (28 B per fp32 parameter). for-loop (``foreach=False``, the default of PyTorch 1.x): the single-tensor
    implementation, the same elementwise passes launched once per parameter tensor (same bytes, many more
    launches)."""
    if impl not in OPTIMIZER_IMPLS:
        raise InputError(f"unknown optimizer implementation {impl!r} ({', '.join(OPTIMIZER_IMPLS)})")
    if optimizer not in _OPTIMIZERS:
        raise InputError(f"unknown optimizer {optimizer!r} ({', '.join(_OPTIMIZERS)})")
    if impl == "fused" and optimizer == "adadelta":
        raise InputError("torch has no fused Adadelta: use --optimizer-impl foreach or for-loop")
    params = [p for p in _unique_params(model) if p.requires_grad]
    if reached is not None:  # ``reached``: ids of the parameters backward gave a gradient (the others have none)
        for p in params:
            if id(p) not in reached:
                p.grad = None  # a zero_grad(set_to_none=False) steady state never allocated one for it
        params = [p for p in params if id(p) in reached]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not params:
        return "optimizer: no trainable parameters"
    cls, kwargs, desc = _OPTIMIZERS[optimizer]
    opt = cls(params, foreach=impl != "for-loop", **kwargs)
    # steady state: create the optimizer state outside the recording, then record one step
    with torch.utils._python_dispatch._disable_current_modes():
        opt.step()
    if impl == "fused":
        _fused_step(opt, optimizer)
        opt.zero_grad(set_to_none=grads_to_none)
        return (f"optimizer: {desc}, fused=True (one kernel, one pass over parameters, gradients and state), "
                "a steady-state step")
    opt.step()
    opt.zero_grad(set_to_none=grads_to_none)
    if impl == "for-loop":
        return (f"optimizer: {desc}, foreach=False (PyTorch 1.x's default: each elementwise op of the update "
                f"launched once per parameter tensor, {len(params)} tensors), a steady-state step")
    return (f"optimizer: {desc}, torch's foreach implementation (the CUDA default: one multi-tensor kernel per "
            "elementwise op of the update, several passes over the parameters), a steady-state step")


def _fused_step(opt, optimizer: str) -> None:
    """One ``fused=True`` step on meta tensors: torch's fused kernels refuse meta parameters in the optimizer
    classes, so the fused op is called directly on the optimizer's own state (one record, as on CUDA)."""
    group = opt.param_groups[0]
    params = [p for p in group["params"] if p.grad is not None]
    grads = [p.grad for p in params]
    with torch.utils._python_dispatch._disable_current_modes():  # step counters: set up, not part of the step
        steps = [torch.zeros((), device="meta") for _ in params]
    if optimizer in ("adam", "adamw"):
        st = [opt.state[p] for p in params]
        fn = torch._fused_adamw_ if optimizer == "adamw" else torch._fused_adam_
        b1, b2 = group["betas"]
        fn(params, grads, [s["exp_avg"] for s in st], [s["exp_avg_sq"] for s in st], [], steps, lr=group["lr"],
           beta1=b1, beta2=b2, weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=False, maximize=False)
    else:
        _register_fused_sgd_meta()
        bufs = [opt.state[p]["momentum_buffer"] for p in params]
        torch._fused_sgd_(params, grads, bufs, weight_decay=0.0, momentum=group["momentum"], lr=group["lr"],
                          dampening=0.0, nesterov=False, maximize=False, is_first_step=False)


_FUSED_SGD_LIB: list = []


def _register_fused_sgd_meta() -> None:
    """torch has no meta kernel for ``_fused_sgd_`` (in place, returns nothing): a no-op one for tracing."""
    if _FUSED_SGD_LIB or torch._C._dispatch_has_kernel_for_dispatch_key("aten::_fused_sgd_", "Meta"):
        return
    lib = torch.library.Library("aten", "IMPL")

    def fused_sgd_(*args, **kwargs):
        return None

    lib.impl("_fused_sgd_", fused_sgd_, "Meta")
    _FUSED_SGD_LIB.append(lib)


def _shadow_saved(fn):
    """``fn`` run inside a non-reentrant checkpoint's forward, with a pack hook in front of the checkpoint's own
    (which replaces every saved tensor by a handle to recompute): the tracer sees what the block would have saved
    without checkpointing (its ``whole`` ledger, for WL107's re-estimate without it); the checkpoint still gets
    every tensor, so what it keeps and recomputes does not change."""
    def run(*a, **k):
        tracer = _ACTIVE_TRACER[0]
        if tracer is None or tracer.phase is not Phase.FORWARD:  # the recompute in backward: counted in forward
            return fn(*a, **k)
        hooks = _top_saved_hooks()  # the checkpoint's (pack, unpack)
        if hooks is None or not torch.is_grad_enabled():
            # no hook stack to read (torch < 2.8), or a forward under no_grad (inside the user's own reentrant
            # checkpoint): what the block would save is not seen, so there is no figure without checkpointing
            tracer.whole_complete = False
            return fn(*a, **k)
        pack, unpack = hooks
        # the checkpoint saved the block's inputs (to run it again) just before calling here: without checkpointing
        # only what the block's own ops save of them is kept (an autocast matmul keeps its bf16 cast, not the input)
        # (the last pack of each input: an earlier one is an op outside the block saving the same tensor)
        inputs = {id(x) for x in T.tensors(list(a)) + T.tensors(list(k.values()))}
        pending = tracer._pending
        for i in range(len(pending) - 1, -1, -1):
            x, m, w = pending[i]
            if id(x) in inputs and w == BOTH:
                pending[i] = (x, m, KEPT)
                inputs.discard(id(x))

        def shadow_pack(x):
            tracer.pack(x, WHOLE)
            return pack(x)
        tracer.shadow_packs.append(shadow_pack)
        try:
            with torch.autograd.graph.saved_tensors_hooks(shadow_pack, unpack):
                return fn(*a, **k)
        finally:
            tracer.shadow_packs.pop()
    return run


def _top_saved_hooks():
    """The innermost saved-tensor hooks (pack, unpack), or None (none, or a torch before 2.8 that cannot say)."""
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    return top(False) if top is not None else None


def _enable_checkpointing(model: nn.Module, hf: bool):
    """Wrap each repeated block (children of the first ModuleList) in non-reentrant checkpointing; returns the undo
    function and which modules were wrapped (for the assumption line)."""
    from torch.utils.checkpoint import checkpoint

    # the repeated blocks: children of every outermost ModuleList (T5 has one in the encoder and one in the decoder)
    blocks: list[nn.Module] = []
    taken: list[str] = []
    for name, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) > 0 and not any(name.startswith(t + ".") for t in taken):
            blocks.extend(m)
            taken.append(name)
    where = (f"{len(blocks)} blocks (the children of {', '.join(repr(t) for t in taken)})" if blocks else "")
    if not blocks:
        blocks = [m for m in model.children()]
        where = f"the model's {len(blocks)} top-level children (no ModuleList of blocks found)"
    originals = []
    for blk in blocks:
        fwd = blk.forward

        run = _shadow_saved(fwd)

        def wrapped(*a, _f=run, **k):
            return checkpoint(_f, *a, use_reentrant=False, **k)
        originals.append((blk, fwd, "forward" in blk.__dict__))
        blk.forward = wrapped

    return (lambda: _restore_forwards(originals)), where


def _restore_forwards(swapped) -> None:
    """Put back the ``forward`` of each (module, original, had an instance forward) swapped: the class's forward
    again where the module had none of its own (no bound method left behind as an instance attribute)."""
    for m, orig, had in swapped:
        if had:
            m.forward = orig
        else:
            del m.forward


# ---- module sources ---------------------------------------------------------------------------------------------

def _embedding_lookup_params(model: nn.Module, reached) -> int:
    """Parameters of the nn.Embedding tables the step trained (a gradient reached them) that no other module holds
    (a table tied to a projection runs a matmul): looked up only (wattlint.frontends.hf: a base model's MFU)."""
    tables: dict[int, int] = {}
    other: set[int] = set()
    for mod in model.modules():
        for p in mod.parameters(recurse=False):
            if isinstance(mod, nn.Embedding):
                tables[id(p)] = p.numel()
            else:
                other.add(id(p))
    return sum(n for i, n in tables.items() if i in reached and i not in other)


def forward_params(model: nn.Module) -> list[str]:
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return []
    return [n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                                                  p.KEYWORD_ONLY)]


def spec_tensor(spec: TensorSpec) -> torch.Tensor:
    dtype = getattr(torch, spec.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise InputError(f"input {spec.name!r}: unknown dtype {spec.dtype!r}")
    return torch.empty(spec.shape, dtype=dtype, device="meta")


def build_module(obj, source: str = "") -> tuple[nn.Module, Any]:
    """Turn a module / module class / factory into (module on meta, example inputs or None)."""
    import copy

    _refuse_scripted(obj, source)
    if isinstance(obj, nn.Module):
        if any(t.device.type != "meta" for t in list(obj.parameters()) + list(obj.buffers())):
            obj = to_meta(copy.deepcopy(obj))
        return obj, None
    if not callable(obj):
        raise InputError(f"{source}: {type(obj).__name__} is not an nn.Module, a module class or a factory")
    try:
        with torch.device("meta"):
            made = obj()
    except InputError:
        raise
    except TypeError as e:
        if isinstance(obj, type):
            raise InputError(f"{source}: cannot build {obj.__name__}() without arguments ({e}); "
                             "point at a zero-argument factory instead") from None
        raise InputError(f"{source}: calling the factory failed: TypeError: {e}") from None
    except BaseException as e:  # noqa: BLE001 - the user's factory failed (a sys.exit() in it too)
        if isinstance(e, KeyboardInterrupt):
            raise
        what = (f"it called sys.exit({e.code!r})" if isinstance(e, SystemExit) else
                exception_line(e))
        raise InputError(f"{source}: building the model failed: {what}") from None
    example = None
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module):
        made, example = made
    if not isinstance(made, nn.Module):
        raise InputError(f"{source}: returned {type(made).__name__}, not an nn.Module "
                         "(or a (module, example_inputs) tuple)")
    _refuse_scripted(made, source)
    return to_meta(made), example


def _forward_arg_names(model: nn.Module, n: int) -> list[str]:
    """Names of the first ``n`` positional parameters of ``model.forward`` (``input0``... when not introspectable)."""
    import inspect

    try:
        ps = [p.name for p in inspect.signature(model.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        ps = []
    return [ps[i] if i < len(ps) else f"input{i}" for i in range(n)]


def _refuse_scripted(obj, source: str) -> None:
    """A TorchScript module (torch.jit.script / torch.jit.load) runs compiled graphs that take no forward hooks and
    no meta tensors: wattlint traces the eager module it came from."""
    def scripted(m) -> bool:
        return isinstance(m, torch.jit.ScriptModule) and not isinstance(m, torch.jit.TracedModule)

    if scripted(obj):
        raise InputError(f"{source or 'model'}: a TorchScript module ({type(obj).__name__}, from torch.jit.script / "
                         f"torch.jit.load) cannot be traced op by op: point at the eager nn.Module it was scripted "
                         f"from")
    if isinstance(obj, nn.Module):
        inner = next((n for n, m in obj.named_modules() if n and scripted(m)), None)
        if inner is not None:
            raise InputError(f"{source or 'model'}: its submodule {inner!r} is a TorchScript module (torch.jit.script "
                             f"/ torch.jit.load), which cannot be traced op by op: build the model with the eager "
                             f"module there")


def trace_with_inputs(model: nn.Module, example, specs: Mapping[str, TensorSpec], *, source: str = "",
                      micro_batch: int | None = None, seq_len: int | None = None, precision: str = "default",
                      optimizer: str = "adamw", activation_checkpointing: bool = False,
                      assumptions: Sequence[str] = (), hf: bool = False,
                      capacity_factor: float = MOE.DEFAULT_CAPACITY_FACTOR,
                      optimizer_impl: str = "foreach", attention: str = "sdpa",
                      grads_to_none: bool = True) -> CostGraph:
    """Bind inputs (``--input`` specs win over example inputs), rebind batch / seq dims, and trace."""
    notes = list(assumptions)
    args: list = []
    kwargs: dict = {}
    if specs:
        names = forward_params(model)
        tensors_ = {n: spec_tensor(s) for n, s in specs.items()}
        if all(n in names for n in tensors_):
            kwargs = tensors_
        elif hf and names:
            # a Hugging Face model's inputs are named (review: x=float32[2,3] on a Llama was bound by position to
            # input_ids and failed inside the embedding: 'Expected tensor for argument #1 'indices'')
            bad = [n for n in tensors_ if n not in names]
            raise InputError(f"input {bad[0]!r}: {type(model).__name__} takes no input of that name; its forward's "
                             f"inputs: {', '.join(names)} (--input NAME=DTYPE[DIMS] with one of these names)")
        else:
            args = list(tensors_.values())
    elif example is not None:
        if isinstance(example, torch.Tensor):
            args = [example]
        elif isinstance(example, Mapping):
            kwargs = dict(example)
        elif isinstance(example, (list, tuple)):
            args = list(example)
        else:
            raise InputError(f"{source}: example inputs must be a tensor, a tuple of tensors or a dict")
    else:
        raise InputError(f"{source}: no example inputs; pass --input NAME=DTYPE[DIMS] (e.g. x=float32[8,3,224,224]; "
                         f"in Python: inputs={{'x': 'float32[8,3,224,224]'}} or an example tensor)")
    args = list(_meta_like(tuple(args)))
    kwargs = _meta_like(kwargs)
    bdim, layout_note = (0, None) if hf else _batch_dim(model, args, kwargs)
    if layout_note:
        notes.append(layout_note)

    # the batch and sequence length the inputs were given at (the first input's): an input whose dim does not have
    # that size is not batched along it (an attention mask [s, s], a weight vector): --batch-size / --seq-len keep it
    leaves = [x for _, x in _tensor_leaves("input", list(args) + list(kwargs.values())) if x.dim() > 0]
    mb0 = int(leaves[0].shape[_dim_of_batch(leaves[0], bdim)]) if leaves else None
    sl0 = next((int(x.shape[_dim_of_seq(x, bdim)]) for x in leaves
                if not x.is_floating_point() and x.dim() >= 2), None)
    kept: list[str] = []
    kept_seq: list[str] = []

    def rebind(t, name="input"):
        if isinstance(t, Mapping):  # a forward taking a dict (or list) of tensors: rebind every tensor in it
            return {k: rebind(v, k) for k, v in t.items()}
        if isinstance(t, (list, tuple)) and not hasattr(t, "_fields"):
            return type(t)(rebind(v, name) for v in t)
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            return t
        shape_ = list(t.shape)
        b = _dim_of_batch(t, bdim)
        if micro_batch is not None and shape_[b] == mb0:
            shape_[b] = micro_batch
        elif micro_batch is not None:
            kept.append(f"{name} {list(t.shape)}")
        if seq_len is not None and t.dim() >= 2 and not t.is_floating_point():
            s = _dim_of_seq(t, bdim)
            if shape_[s] == sl0:
                shape_[s] = seq_len
            else:
                kept_seq.append(f"{name} {list(t.shape)}")
        return torch.empty(shape_, dtype=t.dtype, device="meta")
    if micro_batch is not None or seq_len is not None:
        names = _forward_arg_names(model, len(args))
        args = [rebind(a, n) for a, n in zip(args, names)]
        kwargs = {k: rebind(v, k) for k, v in kwargs.items()}
    if kept:
        notes.append(f"--batch-size rebinds the inputs batched like the first one (dim {bdim} of size {mb0}); kept as "
                     f"given: {', '.join(kept)} (no batch dim of that size)")
    if kept_seq:
        notes.append(f"--seq-len rebinds the integer inputs whose sequence has the first one's length ({sl0}); kept as "
                     f"given: {', '.join(kept_seq)} (another length, e.g. decoder inputs)")
    # every tensor, also inside a dict / list argument (the micro-batch was read as 1 from a dict of [4, ...]
    # tensors, and --batch-size then scaled an already batched trace)
    all_t = [x for i, a in enumerate(args) for x in _tensor_leaves(f"input{i}" if len(args) > 1 else "input", a)]
    all_t += [x for k, v in kwargs.items() for x in _tensor_leaves(k, v)]
    if specs:
        all_t = list(zip(specs.keys(), [t for _, t in all_t]))
    in_specs = tuple(TensorSpec(n, str(t.dtype).rsplit(".", 1)[-1], tuple(int(d) for d in t.shape)) for n, t in all_t)
    mb = int(all_t[0][1].shape[_dim_of_batch(all_t[0][1], bdim)]) if all_t and all_t[0][1].dim() > 0 else 1
    sl = seq = 0  # tokens per sample; the length of one sequence
    for n, t in all_t:
        if not t.is_floating_point() and t.dim() >= 2:
            seq = int(t.shape[_dim_of_seq(t, bdim)])
            b = _dim_of_batch(t, bdim)
            # [batch, choices, seq]: every sequence of a sample is trained on (tokens per sample = choices x seq)
            per = [int(d) for i, d in enumerate(t.shape) if i != b] if b == 0 else [seq]
            sl = math.prod(per)
            if sl != seq:
                notes.append(f"tokens per sample: {' x '.join(map(str, per))} = {sl:,} ({n} {list(t.shape)}: the "
                             f"sequence is its last dim, {seq} tokens; the dims between the batch and it count the "
                             f"sequences of a sample, e.g. a multiple-choice model's choices); --tokens counts steps "
                             f"by these" + (f", also with --seq-len {seq_len}: that is one sequence's length (the "
                                            f"last dim), not the tokens per sample" if seq_len else ""))
            break
    if micro_batch is None:
        where = "leading dim" if bdim == 0 else "dim 1 of every input of 2 or more dims, dim 0 of 1-D ones"
        notes.append(f"batch: micro-batch {mb} from the {'--input specs' if specs else 'example inputs'} "
                     f"({where}); {BATCH_HINT}")
    graph = trace(model, args, kwargs, source=source, precision=precision, optimizer=optimizer,
                  activation_checkpointing=activation_checkpointing, hf=hf, micro_batch=mb, seq_len=sl,
                  seq_read=seq or None, assumptions=notes, inputs=in_specs, capacity_factor=capacity_factor,
                  optimizer_impl=optimizer_impl, attention=attention, grads_to_none=grads_to_none)
    if micro_batch is not None and mb0 is not None and micro_batch != mb0 and not specs:
        _check_output_batch(graph.outputs, bdim, mb0, micro_batch)
    return graph


def _check_output_batch(outputs: Sequence[TensorSpec], bdim: int, given: int, asked: int) -> None:
    """Refuse a trace whose outputs kept the example inputs' batch after --batch-size rebound the tensors: the
    forward took its batch from an example input the trace cannot rebind (a Python list of sequence lengths, a
    number), so the step was traced at the example's batch while reported at the asked one (review: packed
    sequences with lengths as a list, 4x too few FLOPs at --batch-size 16 from an example of 4)."""
    shaped = [o for o in outputs if o.shape]
    if not shaped or any(asked in o.shape for o in shaped):
        return
    first = shaped[0]
    b = bdim if len(first.shape) > 1 else 0
    if first.shape[b] != given:
        return
    raise InputError(f"--batch-size {asked}: the traced step kept the example inputs' batch of {given} (output "
                     f"{'' if first.name == 'output' else first.name + ' '}{list(first.shape)}): the forward takes its batch from an example input the trace "
                     f"cannot rebind (a Python list or number, e.g. sequence lengths as a list); pass it as a tensor "
                     f"with the batch as its leading dim, or build the example inputs at batch {asked}")


_SEQ_FIRST_TYPES = (nn.RNNBase, nn.MultiheadAttention)


class _Reached(Exception):
    """Raised by the layout probe's hook: the first [seq, batch, ...] module was reached (its input's shape kept)."""

    def __init__(self, shape):
        super().__init__()
        self.shape = shape


def _probe_layout(model: nn.Module, modules: Sequence[nn.Module], args, kwargs) -> tuple[int, ...] | None:
    """The shape of the first input the first of ``modules`` receives when ``model`` runs on the (meta) inputs, or
    None (the forward failed before, or never reached one): the forward stops at that module, so only the model's
    code before it runs (an embedding, a transpose)."""
    def hook(_mod, inputs):
        x = inputs[0] if inputs else None
        raise _Reached(tuple(x.shape) if isinstance(x, torch.Tensor) else None)

    handles = [m.register_forward_pre_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    except _Reached as r:
        return r.shape
    except Exception:  # noqa: BLE001 - the model's own code on meta tensors; the trace reports its errors later
        return None
    finally:
        for h in handles:
            h.remove()
    return None


def _batch_dim(model: nn.Module, args=(), kwargs=None) -> tuple[int, str | None]:
    """Which dim of the inputs is the batch: 1 when every recurrent / attention module that takes a ``batch_first``
    flag has it False (PyTorch's default for ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` / ``nn.MultiheadAttention`` /
    ``nn.Transformer*``: they take [seq, batch, ...]) and the model hands them its input's dims in that order (a
    probe runs the forward up to the first of them: a model that transposes a [batch, seq, ...] input itself keeps
    dim 0, as does any model whose input's dim 0, not dim 1, has the size of the batch the module receives), else 0;
    with the assumption line saying so. A model mixing both layouts keeps dim 0 and says it could
    not tell (review: a GRU taking [50, 4, 64] was priced as batch 50 and ``--batch-size 8`` shortened its sequence
    instead)."""
    found = [(n or "(root)", m) for n, m in model.named_modules()
             if isinstance(m, _SEQ_FIRST_TYPES) and hasattr(m, "batch_first")]
    flags = {n: bool(m.batch_first) for n, m in found}
    if not flags or all(flags.values()):
        return 0, None
    seq_first = sorted(n for n, f in flags.items() if not f)
    shown = ", ".join(seq_first[:3]) + (f" and {len(seq_first) - 3} more" if len(seq_first) > 3 else "")
    if len(seq_first) == len(flags):
        first = next((t for _, t in _tensor_leaves("input", list(args) + list((kwargs or {}).values()))
                      if t.dim() >= 2), None)
        seen = _probe_layout(model, [m for _, m in found], args, kwargs or {}) if first is not None else None
        if seen is not None and len(seen) >= 2:
            # the module takes [seq, batch, ...]: its batch, seen[1], is the input dim of that size (a model that
            # transposes a [batch, seq] input itself, or a CNN feeding an LSTM its [width, batch, features] map,
            # keeps dim 0); when both or neither of the input's first two dims have that size, the layout rule
            # below stands
            at0, at1 = first.shape[0] == seen[1], first.shape[1] == seen[1]
            if at0 and not at1:
                return 0, None
        return 1, (f"inputs read as [seq, batch, ...]: {shown} {'has' if len(seq_first) == 1 else 'have'} "
                   "batch_first=False (PyTorch's default), so the batch is dim 1 of every input of 2 or more dims "
                   "(dim 0 of 1-D inputs such as lengths); --batch-size and --seq-len rebind those dims")
    return 0, (f"batch read from the leading dim, but {shown} {'has' if len(seq_first) == 1 else 'have'} "
               "batch_first=False while other modules have batch_first=True: check that the micro-batch stated "
               "below is the batch")


def _dim_of_batch(t, bdim: int) -> int:
    """The batch dim of one input tensor under the model's layout ``bdim`` (1-D inputs keep dim 0)."""
    return bdim if t.dim() >= 2 else 0


def _dim_of_seq(t, bdim: int) -> int:
    """The sequence dim of an integer (token) input of 2 or more dims: its last under [batch, ...] inputs ([batch,
    seq]; a multiple-choice model's [batch, choices, seq]: review, dim 1 read the choices as the sequence, and
    --seq-len rebound the number of choices), dim 0 under the [seq, batch, ...] layout."""
    return 0 if _dim_of_batch(t, bdim) == 1 else t.dim() - 1


def _tensor_leaves(name: str, obj) -> list:
    """(name, tensor) of every tensor in ``obj``: a tensor, or a dict / list / tuple of them at any depth (names
    'batch.x', 'input.0')."""
    if isinstance(obj, torch.Tensor):
        return [(name, obj)]
    if isinstance(obj, Mapping):
        return [x for k, v in obj.items() for x in _tensor_leaves(f"{name}.{k}", v)]
    if isinstance(obj, (list, tuple)):
        return [x for i, v in enumerate(obj) for x in _tensor_leaves(f"{name}.{i}", v)]
    return []


# ---- recurrent layers as cuDNN runs them ------------------------------------------------------------------------

def _cudnn_style_rnn(mod: nn.RNNBase, input, hx=None):
    """nn.LSTM/GRU/RNN the way cuDNN computes it (torch's ``_cudnn_rnn``): per layer and direction, ONE
    input-projection GEMM over all time steps, then a recurrent GEMM + pointwise cell per step. Same math (and
    FLOPs) as the module; the op shapes describe the GPU run rather than the meta/CPU decomposition (which projects
    the input step by step).

    The LSTM/GRU pointwise cell of a step is ONE fused kernel (``aten._thnn_fused_lstm_cell`` /
    ``aten._thnn_fused_gru_cell``, the kernels torch's CUDA cells use; its backward is one kernel too) instead
    of ~10 separate elementwise ops; it also adds both gate biases (the GEMMs run without bias). The backward of the
    recurrence is cuDNN's (:class:`_CudnnRecurrence`): per step the cell backward + one GEMM for the hidden-state
    gradient, and the weight / bias gradients ONCE per layer over all steps.

    Autocast: CUDA autocast casts the RNN op's floating inputs (input, h0/c0, every weight) ONCE to the autocast
    dtype (``lstm``/``gru``/``rnn_*`` are on its lower-precision list; weight casts cached for the step) and cuDNN runs
    the whole recurrence in that dtype: no per-step casts.

    Launches: the whole call is ONE op for the host (torch launches ``_cudnn_rnn`` once in forward and
    ``_cudnn_rnn_backward`` once in backward; cuDNN launches the per-step kernels from C++), so every record of the
    call carries the same ``lib_call`` tag (wattlint.types.LIB_CALL; forward records while the call runs, backward
    records through their autograd node), and wattlint.energy.system.launch_key counts it once per phase."""
    _register_fused_cell_meta()
    if hx is None:  # nn.LSTM/GRU/RNN.forward makes the zero states in Python (eager ops, in the input's dtype)
        n = mod.num_layers * (2 if mod.bidirectional else 1)
        z = input.new_zeros(n, input.shape[0 if mod.batch_first else 1], mod.hidden_size)
        hx = (z, input.new_zeros(z.shape)) if mod.mode == "LSTM" else z
    tr = _ACTIVE_TRACER[0]
    outer = tr.lib_call if tr is not None else 0
    if tr is not None and not outer:
        tr.lib_calls += 1
        tr.lib_call = tr.lib_calls
    try:
        return _cudnn_rnn_call(mod, input, hx, tr)
    finally:
        if tr is not None:
            tr.lib_call = outer


def _cudnn_rnn_call(mod: nn.RNNBase, input, hx, tr):
    mode = mod.mode
    lo = _AUTOCAST_DTYPE[0]

    def cast(x):  # autocast's one cast at the op's entry (weights through the tracer's per-step cache)
        if lo is None or x is None or not x.is_floating_point() or x.dtype == lo:
            return x
        return tr._cast(x, lo) if tr is not None else x.to(lo)
    bf = mod.batch_first
    x = cast(input.transpose(0, 1) if bf else input)  # [T, B, I]
    dirs = 2 if mod.bidirectional else 1
    L = mod.num_layers
    if mode == "LSTM":
        h0, c0 = cast(hx[0]), cast(hx[1])
    else:
        h0, c0 = cast(hx), None
    entry = [t for t in (x, h0, c0) if t is not None]
    hn, cn = [], []
    layer_in = x
    fused = mode in ("LSTM", "GRU")  # the fused cell adds both biases (as torch's CUDA cells do)
    for layer in range(L):
        outs = []
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
            w_ih, w_hh = cast(getattr(mod, "weight_ih" + sfx)), cast(getattr(mod, "weight_hh" + sfx))
            b_ih = cast(getattr(mod, "bias_ih" + sfx)) if mod.bias else None
            b_hh = cast(getattr(mod, "bias_hh" + sfx)) if mod.bias else None
            entry += [t for t in (w_ih, w_hh, b_ih, b_hh) if t is not None]
            xp = F.linear(layer_in, w_ih, None if fused else b_ih)  # [T, B, G*H]: one GEMM for the whole sequence
            c = c0[layer * dirs + d] if c0 is not None else None
            res = _CudnnRecurrence.apply(xp, h0[layer * dirs + d], c, w_hh, b_ih if fused else None, b_hh, mode,
                                         d == 1)
            outs.append(res[0])
            hn.append(res[1])
            if mode == "LSTM":
                cn.append(res[2])
        layer_in = outs[0] if dirs == 1 else torch.cat(outs, dim=-1)
        if mod.dropout and layer < L - 1 and mod.training:
            layer_in = F.dropout(layer_in, mod.dropout, True)
    out = layer_in.transpose(0, 1) if bf else layer_in
    h_n = torch.stack(hn, 0)
    result = (out, (h_n, torch.stack(cn, 0))) if mode == "LSTM" else (out, h_n)
    if tr is not None and torch.is_grad_enabled():
        _tag_library_nodes(result, entry, tr.lib_call)
    return result


def _tag_library_nodes(result, entry, gid: int) -> None:
    """Mark the autograd nodes created inside the library call (``wl_lib_call`` metadata): their backward records
    belong to the call's one backward launch. The walk stops at the entry tensors (the casts into the call run as
    their own autograd nodes, as autocast's casts do) and at parameter leaves."""
    stop = {t.grad_fn for t in entry if t.grad_fn is not None}
    todo = [t.grad_fn for _, t in _flatten(result) if t.grad_fn is not None]
    seen = set()
    while todo:
        node = todo.pop()
        if node is None or node in stop or node in seen or type(node).__name__ == "AccumulateGrad":
            continue
        seen.add(node)
        node.metadata.setdefault("wl_lib_call", gid)
        todo.extend(nxt for nxt, _ in node.next_functions if nxt is not None)


class _CudnnRecurrence(torch.autograd.Function):
    """The recurrence of one layer and direction over the projected input ``xp`` [T, B, G*H], as cuDNN runs it.

    Forward (cudnnRNNForward): per step one GEMM h_{t-1} W_hh^T and one pointwise cell kernel; the outputs are
    written into the output / reserve-space buffers (no stack copy: allocations are free in the trace).

    Backward: cudnnRNNBackwardData walks the steps in reverse: per step the pointwise cell backward (gate and
    cell-state gradients) and ONE GEMM dgates_t W_hh that accumulates the hidden-state gradient into dy_{t-1}
    (GEMM beta = 1: an addmm, no separate add). The gate gradients of all steps stay in the reserve space, so
    cudnnRNNBackwardWeights then forms each weight gradient ONCE per layer as one GEMM over all T x B rows
    (dW_hh = dG^T [h_{-1} .. h_{T-2}]; dW_ih = dG^T x by the input projection's own backward) and the bias
    gradients as one reduction of dG over T x B: no per-step weight-gradient GEMMs and no per-step gradient adds
    (the autograd decomposition of the cell would add a [G*H, H] gradient per step). Under autocast all of it runs
    in the autocast dtype; the gradients go back to fp32 once, through the entry casts' backward."""

    @staticmethod
    def forward(ctx, xp, h0, c0, w_hh, b_ih, b_hh, mode, reverse):
        T_, B = xp.shape[0], xp.shape[1]
        H = h0.shape[-1]
        ys = xp.new_empty((T_, B, H))
        h, c = h0, c0
        saved = []  # per step: LSTM (c_prev, c, workspace); GRU workspace; RNN h
        for t in (range(T_ - 1, -1, -1) if reverse else range(T_)):
            if mode == "LSTM":  # gates i, f, g, o; one kernel writes h, c and the gates saved for backward
                hp = F.linear(h, w_hh)
                c_prev = c
                h, c, ws = aten._thnn_fused_lstm_cell(xp[t], hp, c, b_ih, b_hh)
                saved.append((c_prev, c, ws))
            elif mode == "GRU":  # gates r, z, n; h = (1 - z) * n + z * h_prev in one kernel
                hp = F.linear(h, w_hh)
                h, ws = aten._thnn_fused_gru_cell(xp[t], hp, h, b_ih, b_hh)
                saved.append(ws)
            else:
                act = torch.tanh if mode == "RNN_TANH" else torch.relu
                h = act(xp[t] + F.linear(h, w_hh, b_hh))
                saved.append(h)
        flat = [t for s in saved for t in (s if isinstance(s, tuple) else (s,))]
        ctx.save_for_backward(ys, h0, w_hh, *flat)
        ctx.set_materialize_grads(False)
        ctx.info = (mode, reverse, T_, b_ih is not None, b_hh is not None)
        return (ys, h, c) if mode == "LSTM" else (ys, h)

    @staticmethod
    def backward(ctx, dys, dhn, dcn=None):
        mode, reverse, T_, has_bih, has_bhh = ctx.info
        ys, h0, w_hh, *flat = ctx.saved_tensors
        tr = _ACTIVE_TRACER[0]
        outer = tr.lib_call if tr is not None else 0
        if tr is not None:
            tr.lib_call = tr.lib_call_now() or outer
        try:
            B, H = h0.shape
            steps = list(range(T_ - 1, -1, -1) if reverse else range(T_))  # processing order
            dG = ys.new_empty(ys.shape[:2] + (w_hh.shape[0],))  # gate gradients, kept whole as cuDNN does
            dGh = ys.new_empty(dG.shape) if mode == "GRU" else dG  # GRU: the hidden-side gates' (r * (W_hn h))

            def dy(i):
                return dys[steps[i]] if dys is not None else None
            grad_h = dy(T_ - 1)
            if dhn is not None:
                grad_h = dhn if grad_h is None else grad_h + dhn
            if grad_h is None:
                grad_h = h0.new_zeros(h0.shape)
            grad_c = dcn
            for i in range(T_ - 1, -1, -1):
                if mode == "LSTM":
                    c_prev, c, ws = flat[3 * i: 3 * i + 3]
                    dgh, grad_c, _ = aten._thnn_fused_lstm_cell_backward_impl(grad_h, grad_c, c_prev, c, ws, False)
                    direct = None
                elif mode == "GRU":  # dy_{t-1} is added in the same pointwise pass (counted as that kernel's)
                    _, dgh, direct, _, _ = aten._thnn_fused_gru_cell_backward(grad_h, flat[i], False)
                else:
                    dgh = (aten.tanh_backward(grad_h, flat[i]) if mode == "RNN_TANH"
                           else aten.threshold_backward(grad_h, flat[i], 0))
                    direct = None
                # dh_{t-1} = dgates_t W_hh, accumulated by the GEMM (beta = 1) into dy_{t-1} (GRU: the direct term)
                acc = direct if direct is not None else (dy(i - 1) if i > 0 else None)
                grad_h = torch.mm(dgh, w_hh) if acc is None else torch.addmm(acc, dgh, w_hh)
            # cudnnRNNBackwardWeights: one GEMM over all T x B rows (the h_{-1} rows read from hx in the same pass)
            need = ctx.needs_input_grad
            dw_hh = torch.mm(dGh.reshape(T_ * B, -1).t(), ys.new_empty((T_ * B, H))) if need[3] else None
            db_ih = dG.sum((0, 1)) if has_bih and need[4] else None
            db_hh = None
            if has_bhh and need[5]:
                # LSTM: both biases get the same gradient, written by cuDNN into both (a [G*H] copy, not a 2nd pass)
                db_hh = db_ih.clone() if (mode == "LSTM" and db_ih is not None) else dGh.sum((0, 1))
            return dG, (grad_h if need[1] else None), (grad_c if need[2] else None), dw_hh, db_ih, db_hh, None, None
        finally:
            if tr is not None:
                tr.lib_call = outer


_FUSED_CELL_LIB: list = []


def _register_fused_cell_meta() -> None:
    """Shape-only meta kernels for the fused cells where torch lacks a usable one: none for the GRU cell and its
    backward, and the LSTM cell's rejects a missing bias (torch 2.13). Output shapes as in
    aten/src/ATen/native/cuda/RNN.cu (LSTM workspace: the 4 gates; GRU workspace: r, z, n, h_prev, h-side n)."""
    if _FUSED_CELL_LIB:
        return
    lib = torch.library.Library("aten", "IMPL")

    def has_meta(op: str) -> bool:
        return torch._C._dispatch_has_kernel_for_dispatch_key("aten::" + op, "Meta")

    def gru(input_gates, hidden_gates, hx, input_bias=None, hidden_bias=None):
        b, h = hx.shape
        return input_gates.new_empty((b, h)), input_gates.new_empty((b, 5 * h))

    def gru_bwd(grad_hy, workspace, has_bias):
        b, h = grad_hy.shape
        g = grad_hy.new_empty
        bias = (g((3 * h,)), g((3 * h,))) if has_bias else (g((0,)), g((0,)))
        return (g((b, 3 * h)), g((b, 3 * h)), g((b, h))) + bias

    def lstm(input_gates, hidden_gates, cx, input_bias=None, hidden_bias=None):
        return cx.new_empty(cx.shape), cx.new_empty(cx.shape), input_gates.new_empty(input_gates.shape)

    if not has_meta("_thnn_fused_gru_cell"):
        lib.impl("_thnn_fused_gru_cell", gru, "Meta")
    if not has_meta("_thnn_fused_gru_cell_backward"):
        lib.impl("_thnn_fused_gru_cell_backward", gru_bwd, "Meta")
    try:  # probe outside the recorder (called while tracing)
        with torch.utils._python_dispatch._disable_current_modes(), torch.no_grad():
            z = torch.empty((1, 4), device="meta")
            aten._thnn_fused_lstm_cell(z, z, torch.empty((1, 1), device="meta"))
    except Exception:  # noqa: BLE001  the built-in meta kernel fails without biases: replace it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lib.impl("_thnn_fused_lstm_cell", lstm, "Meta")
    _FUSED_CELL_LIB.append(lib)


def _route_rnns(model: nn.Module):
    """Swap the forward of plain (unpacked, no projection) RNN modules for the cuDNN-style one; returns restore."""
    swapped = []
    for m in model.modules():
        if isinstance(m, nn.RNNBase) and getattr(m, "proj_size", 0) == 0 and m.mode in ("LSTM", "GRU", "RNN_TANH",
                                                                                             "RNN_RELU"):
            orig = m.forward

            def fwd(input, hx=None, _m=m, _orig=orig):
                if not isinstance(input, torch.Tensor) or input.dim() != 3:
                    return _orig(input, hx)  # PackedSequence / unbatched: the module's own path
                return _cudnn_style_rnn(_m, input, hx)
            swapped.append((m, orig, "forward" in m.__dict__))
            m.forward = fwd

    return (lambda: _restore_forwards(swapped)), len(swapped)
