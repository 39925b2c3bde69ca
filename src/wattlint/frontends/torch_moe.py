"""Mixture-of-experts layers traced at their ROUTED cost on meta tensors.

Why this module exists
----------------------
Routing is data-dependent (which expert each token goes to decides how many rows each expert computes), and meta
tensors carry no data. Left alone, transformers' per-expert loop answers its ``expert_idx == num_experts`` check
with True and skips every expert (zero expert FLOPs), its ``torch.where`` sends every token to every expert
(experts-times too many), and its grouped-GEMM path has no usable meta kernel (``torch._grouped_mm``'s meta
function accepts bf16 only, with stride checks a meta gradient fails). So, before the trace, the forward of every
recognised experts module is replaced by a deterministic routed computation:

* **routing is balanced** (an assumption, stated in every report): the ``tokens x top-k`` token->expert
  assignments of a micro-batch are split evenly, expert ``e`` computing ``rows[e]`` rows (:func:`expert_rows`);
  with ``capacity_factor`` c != 1 every expert computes ``ceil(c x tokens x top-k / experts)`` rows (capacity
  padding when c > 1, dropped tokens when c < 1). Switch Transformers caps the rows at the config's
  ``expert_capacity`` per sequence, as the model does.
* the **router** is the model's own code (linear, softmax / sigmoid, top-k, group limits), run unchanged;
* **dispatch** = one stable sort of the assignments by expert + a gather of the token rows; **combine** = multiply
  by the routing weight + scatter-add (``index_add``) into the token rows;
* the **expert GEMMs** follow the model's implementation: transformers' ``experts_implementation`` "grouped_mm"
  (its default, the kernel Megatron / DeepSpeed-style MoE training uses) records one ``torch._grouped_mm`` per
  projection; "eager" and Switch Transformers record the per-expert loop (one GEMM per expert and projection).
  "batched_mm" is data-independent and runs as the model's own code (rows = tokens x top-k; no capacity factor).
* **backward** comes from autograd over these ops (every expert's weights get their gradient, the router its
  gradient through the routing weights) and the **optimizer step** covers every expert's parameters.

Layouts handled: transformers' fused experts (classes decorated with ``@use_experts_implementation``: 3-D stacked
``gate_up_proj``/``up_proj`` + ``down_proj``, called as ``experts(hidden_states, top_k_index, top_k_weights)`` —
Mixtral, Qwen2/3-MoE, DeepSeek-V2/V3, OLMoE, GLM-4-MoE, ...), Switch Transformers' top-1 capacity routing with an
``experts`` ModuleDict, and Llama 4's MoE block (recognised by structure: ``experts`` holding 3-D ``gate_up_proj``
[E, H, 2I] and ``down_proj`` [E, I, H] with an ``act_fn``, a Linear ``router`` with E outputs, a ``shared_expert``,
``top_k`` and ``num_experts``). transformers' Llama 4 block runs every expert on every token (its router's scores are
[tokens, experts], zero outside the top-k, and one bmm covers all experts); the training implementations (torchtitan,
Megatron) route top-k with grouped GEMMs, and so does the routed forward that replaces the block's: the model's router,
top-k of its scores, balanced dispatch, the routing weight applied to the expert INPUT (as Llama 4 does), grouped GEMMs
over the [E, in, out] weights (the per-expert loop where torch has no ``_grouped_mm``; transformers' experts
implementation does not apply: Llama 4 has none), the gate/up split with the experts' ``act_fn``, an ``index_add``
combine into the shared expert's output. Any other module that holds experts (3-D expert-stacked parameters, a
ModuleList/ModuleDict of experts, a class named ``*Experts``, or a hand-written MoE: a ModuleList/ModuleDict of >= 2
structurally identical modules beside a router named gate/router/gating/switch with one output per module, whose code
selects experts per token with topk / argmax / argsort / multinomial; or >= 2 of a module's 3-D parameters
[E, a, b] with one leading E beside a router for E experts, in a layer that so selects: :func:`_stacked_experts`)
makes :meth:`MoeRouting.install` raise
:class:`InputError`: an unsupported layout is an error, never a silent miscount (a meta trace of a
``torch.where(idx == i)`` dispatch runs every expert on every token).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..types import InputError
from .source import check_capacity_factor

aten = torch.ops.aten

NUM_EXPERT_ATTRS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts", "num_routed_experts")
DEFAULT_CAPACITY_FACTOR = 1.0


def expert_rows(assignments: int, experts: int, capacity_factor: float = 1.0) -> tuple[int, ...]:
    """Rows each expert computes for ``assignments`` token->expert assignments (tokens x top-k) under balanced
    routing. ``capacity_factor`` 1: the exact even split (dropless; the rows sum to ``assignments``); otherwise
    every expert computes its capacity ``ceil(capacity_factor x assignments / experts)`` rows."""
    if experts <= 0:
        raise ValueError("experts must be > 0")
    if capacity_factor == 1.0:
        base, extra = divmod(int(assignments), experts)
        return tuple(base + (1 if e < extra else 0) for e in range(experts))
    cap = math.ceil(capacity_factor * assignments / experts)
    return (cap,) * experts


# ---- shape-only kernels the recorder uses instead of meta functions stricter than the CUDA kernels ----------------

def grouped_mm_meta(mat_a, mat_b, offs=None, bias=None, out_dtype=None):
    """Output of ``aten._grouped_mm`` from shapes alone. torch 2.13's meta function accepts bf16 only and rejects the
    expanded gradient autograd passes it; the CUDA op runs bf16 on its CUTLASS grouped kernel and fp32/fp16 on a
    per-group fallback loop (PyTorch PR #162059), so a trace in any precision needs the shapes only."""
    a2, b2 = mat_a.dim() == 2, mat_b.dim() == 2
    if a2 and b2:
        size = (int(offs.shape[0]) if offs is not None else 1, mat_a.shape[0], mat_b.shape[1])
    elif a2:
        size = (mat_a.shape[0], mat_b.shape[-1])
    elif b2:
        size = (mat_a.shape[1], mat_b.shape[1])
    else:
        size = (mat_a.shape[0], mat_a.shape[1], mat_b.shape[-1])
    return torch.empty(size, dtype=out_dtype or mat_a.dtype, device=mat_a.device)


SHAPE_ONLY: dict = {aten._grouped_mm.default: grouped_mm_meta} if hasattr(aten, "_grouped_mm") else {}


# ---- what was found ----------------------------------------------------------------------------------------------

@dataclass
class MoeLayer:
    path: str
    cls: str
    layout: str  # "fused" | "switch" | "llama4"
    experts: int
    impl: str  # "grouped" | "loop" | "batched"
    impl_name: str = ""  # the model's own name for it (transformers experts_implementation)
    top_k: int = 0
    tokens: int = 0  # tokens of the last traced call (micro-batch x sequence)
    rows: tuple[int, ...] = ()  # rows per expert of the last traced call
    capacity: int | None = None  # Switch: expert capacity per sequence (config)
    seq: int = 0  # Switch: sequence length of the last call
    calls: int = 0
    params: int = 0  # parameters of the routed experts (all of them; not the router, not shared experts)
    trainable: int | None = None  # those of them that require grad (None: not read)
    n_group: int = 1  # node-limited routing (DeepSeek-V3 / Kimi-K2 config n_group, topk_group): each token's experts
    topk_group: int = 0  # lie in topk_group of n_group equal consecutive groups (0: no limit)


@dataclass
class MoeRouting:
    """Finds the MoE layers of ``model``, swaps in the routed forward (:meth:`install`) and puts it back
    (:meth:`restore`); :meth:`notes` and :meth:`summary` describe what was traced."""
    model: nn.Module
    capacity_factor: float = DEFAULT_CAPACITY_FACTOR
    layers: list[MoeLayer] = field(default_factory=list)
    _swapped: list = field(default_factory=list)

    def install(self) -> "MoeRouting":
        self.capacity_factor = check_capacity_factor(self.capacity_factor)
        handled: list[str] = []
        plans: list[tuple[nn.Module, MoeLayer, Callable]] = []
        for name, m in self.model.named_modules():
            if any(_inside(name, h) for h in handled):
                continue
            layer = _match(name, m)
            if layer is None:
                continue
            handled.append(name)
            self.layers.append(layer)
            if layer.layout == "llama4":  # the block's forward routes; its experts' runs the GEMMs on the rows
                plans.append((m, layer, _llama4_forward))
                plans.append((m.experts, layer, _llama4_experts_forward))
            elif layer.impl != "batched":
                make = _fused_forward if layer.layout == "fused" else _switch_forward
                plans.append((m, layer, make))
        mods = dict(self.model.named_modules())
        for name, m in mods.items():
            if any(_inside(name, h) for h in handled):
                continue
            parent = mods.get(name.rpartition(".")[0]) if name else None
            reason = _holds_experts(m) or _stacked_experts(m, parent)
            if reason:
                raise InputError(
                    f"unsupported mixture-of-experts layout: {type(m).__name__} at '{name or '<root>'}' ({reason}). "
                    "wattlint traces MoE layers at their routed cost for transformers' fused experts "
                    "(@use_experts_implementation: Mixtral, Qwen-MoE, DeepSeek-V2/V3, OLMoE, ...), Switch "
                    "Transformers and Llama 4; tracing this one on meta tensors would miscount its experts (routing is "
                    "data-dependent), so it is refused rather than costed wrong; analyze an equivalent transformers "
                    f"MoE config (e.g. Mixtral's config.json) instead{_old_transformers_hint(m)}")
        for m, layer, make in plans:
            had = "forward" in m.__dict__
            self._swapped.append((m, m.__dict__.get("forward"), had))
            m.forward = make(m, layer, self)
        return self

    def restore(self) -> None:
        for m, fwd, had in reversed(self._swapped):
            if had:
                m.forward = fwd
            else:
                del m.forward
        self._swapped.clear()

    # -- rows --
    def rows(self, assignments: int, experts: int) -> tuple[int, ...]:
        return expert_rows(assignments, experts, self.capacity_factor)

    # -- reporting --
    def notes(self) -> list[str]:
        if not self.layers:
            return []
        out = []
        groups: dict[tuple, list[MoeLayer]] = {}
        for ly in self.layers:
            groups.setdefault((ly.cls, ly.layout, ly.experts, ly.top_k, ly.impl, ly.impl_name, ly.rows, ly.capacity,
                               ly.seq, ly.tokens), []).append(ly)
        cf = self.capacity_factor
        for (cls, layout, e, k, impl, impl_name, rows, cap, seq, tokens), lys in groups.items():
            traced = sum(1 for ly in lys if ly.calls)
            head = f"MoE: {len(lys)} x {cls} ({e} experts, top-{k or '?'})"
            if impl == "batched":
                out.append(f"{head} run as the model's own experts_implementation=batched_mm (every token x top-k "
                           "row gathers its expert's weights, then a batched GEMM): no routing assumption, no "
                           "capacity factor; backward and the optimizer step cover all experts' parameters")
                continue
            if not traced:
                out.append(f"{head}: not called in the traced step (no expert FLOPs)")
                continue
            how = ("as grouped GEMMs (one torch._grouped_mm per projection" +
                   (f"; the model's experts_implementation={impl_name})" if impl_name else ")")
                   if impl == "grouped" else
                   "as a per-expert loop (one GEMM per expert and projection" +
                   (f"; the model's experts_implementation={impl_name})" if impl_name else ")"))
            lo, hi = (min(rows), max(rows)) if rows else (0, 0)
            per = f"{lo}" if lo == hi else f"{lo}-{hi}"
            if layout == "switch":
                per_seq = hi * seq // tokens if tokens else 0  # the routed forward's rows: micro-batch x per sequence
                rule = (f"Switch expert capacity {cap} tokens per expert per sequence (config expert_capacity) "
                        f"caps the rows: min({cap}, ceil({cf:g} x {seq} / {e})) = {per_seq} "
                        f"per sequence, {per} rows per expert per micro-batch; tokens over capacity skip the experts "
                        "(as the model does)") if cap else \
                    f"no expert capacity in the config: ceil({cf:g} x {seq} / {e}) rows per sequence"
                out.append(f"{head} traced at the routed cost: balanced routing assumed; {rule}; experts {how}; "
                           "router, dispatch (sort + gather) and combine (weighted scatter-add) traced; backward and "
                           f"the optimizer step cover all {e} experts' parameters")
            else:
                share = tokens * k / e if e else 0.0
                # review: top-2 of 8 at 1 token, 0.25, was printed "0.2"
                share_s = f"{share:.0f}" if share == int(share) else f"{share:.3f}".rstrip("0")
                cap_s = ("capacity factor 1 (dropless: the rows sum to tokens x top-k)" if cf == 1.0 else
                         f"capacity factor {cf:g}: each expert computes its capacity ceil({cf:g} x tokens x top-k / "
                         f"experts) = {per} rows ({'padding' if cf > 1 else 'tokens over capacity dropped'})")
                if layout == "llama4":
                    out.append(f"{head} traced at the routed cost (top-k routing with grouped GEMMs, as torchtitan / "
                               f"Megatron train Llama 4; transformers' Llama 4 block runs all {e} experts on every "
                               f"token): balanced routing assumed (each expert gets tokens x top-k / experts = "
                               f"{share_s} of the {tokens} x {k} token slots of a micro-batch); {cap_s}; experts "
                               f"{how}; router, top-k, dispatch (sort + gather), the routing weight on the experts' "
                               f"input (as Llama 4 applies it) and combine (scatter-add into the shared expert's "
                               f"output, run on every token) traced; backward and the optimizer step cover all {e} "
                               f"experts' parameters")
                    continue
                out.append(f"{head} traced at the routed cost: balanced routing assumed (each expert gets tokens x "
                           f"top-k / experts = {share_s} of the {tokens} x {k} token slots of a micro-batch); {cap_s}; "
                           f"experts {how}; router, dispatch (sort + gather) and combine (weighted scatter-add) "
                           f"traced; backward and the optimizer step cover all {e} experts' parameters")
        return out

    def summary(self) -> dict:
        """What was traced, for wattlint.parallel and the reports. Per layer ``rows_per_expert`` (the rows each
        expert computed) and ``tokens`` (the tokens of that call: micro-batch x sequence) are both of the last traced
        call, so rows / (tokens x top-k) is the rows an expert-parallel all-to-all carries per token-to-expert
        assignment (wattlint.parallel.dispatched_rows_per_assignment): the routing rule lives here only."""
        if not self.layers:
            return {}
        return {"capacity_factor": self.capacity_factor, "routing": "balanced",
                "layers": [{"module": ly.path, "type": ly.cls, "experts": ly.experts, "top_k": ly.top_k,
                            "implementation": ly.impl, "rows_per_expert": list(ly.rows), "tokens": ly.tokens,
                            "params": ly.params,
                            **({"trainable_params": ly.trainable} if ly.trainable is not None else {}),
                            **({"expert_capacity": ly.capacity} if ly.capacity is not None else {}),
                            **({"n_group": ly.n_group, "topk_group": ly.topk_group} if ly.topk_group else {})}
                           for ly in self.layers]}


def _inside(name: str, handled: str) -> bool:
    """Whether module ``name`` is the handled module ``handled`` or inside it (the root, "", holds every module)."""
    return handled == "" or name == handled or name.startswith(handled + ".")


# ---- recognition -------------------------------------------------------------------------------------------------

def _num_experts(m: nn.Module) -> int | None:
    for a in NUM_EXPERT_ATTRS:
        v = getattr(m, a, None)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


def _holds_experts(m: nn.Module) -> str | None:
    """Why ``m`` looks like it holds mixture-of-experts weights (None if it does not)."""
    ne = _num_experts(m)
    if ne and ne > 1:
        for pn, p in m.named_parameters(recurse=False):
            if p.dim() == 3 and int(p.shape[0]) == ne:
                return f"expert weights stacked in 3-D parameter '{pn}' [{', '.join(str(d) for d in p.shape)}]"
    for cn, c in m.named_children():
        if isinstance(c, (nn.ModuleList, nn.ModuleDict)) and "expert" in cn.lower() and len(c) > 1:
            return f"{len(c)} expert modules in '{cn}'"
    cls = type(m).__name__.lower()
    if cls.endswith("experts") and not cls.endswith("sharedexperts"):
        # shared experts (Inkling's InklingSharedExperts, stacked [n_shared, ...]) run on every token: no routing to
        # miscount, traced as written like Qwen-MoE's shared_expert MLP
        return "a module class named *Experts"
    for cn, c in m.named_children():  # a hand-written MoE: identical modules + a router with one output per module
        mods = _identical_modules(c)
        router = _router_beside(m, len(mods), skip=cn) if mods else None
        if router and _selects_experts(m, router[1]):
            return f"{len(mods)} identical {type(mods[0]).__name__} modules in '{cn}' beside the {router[0]}"
    return None


def _stacked_experts(m: nn.Module, parent: nn.Module | None) -> str | None:
    """Why ``m`` looks like a hand-written MoE with expert-stacked weights under neutral names (None if it does not):
    >= 2 of its own 3-D parameters [E, a, b] with one leading E >= 2 and a, b >= 2 (a matrix per expert; a weight
    norm's [C, 1, k] and a layer scale's [C, 1, 1] are not), beside a router for E experts among ``m``'s or its
    parent's direct children (an nn.Linear with E outputs, or one named gate/router/... that holds one or is a 2-D
    parameter with a side of E: :func:`_router_beside`), in a layer whose code (``m``'s class, its parent's, the
    router's) selects experts per token (:func:`_selects_experts`). All three are required: per-head stacked weights
    (XLNet's q/k/v/o/r [d_model, heads, head_dim], RecurrentGemma's block-diagonal gates, Zamba's per-head Mamba
    projections) have no Linear with as many outputs beside them and no per-token selection, and a soft mixture over
    stacked weights (every expert on every token) is costed right by the trace."""
    stacked: dict[int, list[tuple[str, torch.Tensor]]] = {}
    for pn, p in m.named_parameters(recurse=False):
        if p.dim() == 3 and int(p.shape[0]) >= 2 and min(int(p.shape[1]), int(p.shape[2])) >= 2:
            stacked.setdefault(int(p.shape[0]), []).append((pn, p))
    for e, params in stacked.items():
        if len(params) < 2:
            continue
        holders = [(m, "")] + ([(parent, next(cn for cn, c in parent.named_children() if c is m))] if parent else [])
        for holder, skip in holders:  # m's own children, then its siblings (the parent's other children)
            router = _linear_with_outputs(holder, e, skip) or _router_beside(holder, e, skip)
            if router and (_selects_experts(m, router[1]) or holder is not m and _selects_experts(holder, None)):
                names = ", ".join(f"'{pn}' [{', '.join(str(d) for d in p.shape)}]" for pn, p in params)
                return f"expert weights stacked in 3-D parameters {names} beside the {router[0]}"
    return None


def _linear_with_outputs(m: nn.Module, n: int, skip: str) -> tuple[str, nn.Module] | None:
    """A direct child of ``m`` (not ``skip``) that is an nn.Linear with ``n`` outputs, whatever its name."""
    for cn, c in m.named_children():
        if cn != skip and isinstance(c, nn.Linear) and c.out_features == n:
            return f"router '{cn}' (Linear {c.in_features} -> {n}, one output per expert)", c
    return None


# a sparse router picks experts per token: its code (or the layer's) calls one of these; a soft mixture, a gated
# head or a squeeze-excitation block weighs every branch on every token, which a meta trace costs right
SELECT_WORDS = re.compile(r"\b(topk|top_k|argmax|argsort|multinomial)\b")


def _selects_experts(m: nn.Module, router: nn.Module | None) -> bool:
    """Whether the code of ``m``'s class (and its bases) or of its router's class selects experts per token
    (:data:`SELECT_WORDS`). Code that cannot be read (a compiled or generated class) counts as no selection: the
    layer is traced as written, as before this rule existed."""
    import inspect

    for obj in (m, router):
        if obj is None:
            continue
        for cls in type(obj).__mro__:
            if cls.__module__.startswith("torch."):
                break
            try:
                src = inspect.getsource(cls)
            except (OSError, TypeError):
                continue
            if SELECT_WORDS.search(src):
                return True
    return False


# a router's name holds one of these words (split at non-letters and camelCase: "w_gate", "GateNet"; a substring is
# not enough: "aggregate" or "navigate" is no gate)
ROUTER_WORDS = frozenset({"gate", "gates", "gating", "router", "routers", "routing", "switch"})


def _router_named(name: str) -> bool:
    return any(w in ROUTER_WORDS for w in re.findall(r"[a-z]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()))


def _identical_modules(c: nn.Module) -> list[nn.Module] | None:
    """The members of ModuleList/ModuleDict ``c`` if there are >= 2 and all have the same class and the same
    parameter names and shapes (at least one parameter); else None."""
    if not isinstance(c, (nn.ModuleList, nn.ModuleDict)):
        return None
    mods = list(c.values()) if isinstance(c, nn.ModuleDict) else list(c)
    if len(mods) < 2:
        return None

    def sig(x: nn.Module):
        return type(x), tuple((n, tuple(p.shape)) for n, p in x.named_parameters())

    first = sig(mods[0])
    return mods if first[1] and all(sig(x) == first for x in mods[1:]) else None


def _router_beside(m: nn.Module, n: int, skip: str) -> tuple[str, nn.Module | None] | None:
    """A router for ``n`` experts among ``m``'s direct children / parameters (not ``skip``, the experts): one named
    gate/router/gating/switch that is, or directly holds (a small MLP router), an nn.Linear with ``n`` outputs (one
    logit per expert), or a 2-D parameter so named with a side of ``n``; (its description, the router module). Both
    the name and the width are required: a ModuleList of identical layers beside a Linear with as many outputs (a
    layer-weighting head) or beside a GLU-style ``gate`` is no MoE; the caller also asks for per-token selection
    (:func:`_selects_experts`)."""
    for cn, c in m.named_children():
        if cn == skip or not _router_named(cn):
            continue
        for ln, lin in [("", c), *c.named_children()]:
            if isinstance(lin, nn.Linear) and lin.out_features == n:
                return (f"router '{cn}{'.' + ln if ln else ''}' (Linear {lin.in_features} -> {n}, one output per "
                        "module)", c)
    for pn, p in m.named_parameters(recurse=False):
        if _router_named(pn) and p.dim() == 2 and n in tuple(p.shape):
            side = "column" if int(p.shape[1]) == n else "row"
            return f"router parameter '{pn}' [{p.shape[0]}, {p.shape[1]}] (one {side} per module)", None
    return None


def _old_transformers_hint(m: nn.Module) -> str:
    if not type(m).__module__.startswith("transformers."):
        return ""
    try:
        import transformers

        major = int(transformers.__version__.split(".", 1)[0])
    except (ImportError, ValueError):
        return ""
    return ("; transformers >= 5 stores the experts of Mixtral, Qwen-MoE, DeepSeek, OLMoE, ... fused (3-D), "
            f"the layout wattlint supports (installed: {transformers.__version__})") if major < 5 else ""


def _is_fused(m: nn.Module) -> bool:
    ne = _num_experts(m)
    if not ne or not all(hasattr(m, a) for a in ("has_gate", "is_transposed", "has_bias", "_apply_gate")):
        return False
    up = getattr(m, "gate_up_proj" if m.has_gate else "up_proj", None)
    down = getattr(m, "down_proj", None)
    return (isinstance(up, torch.Tensor) and isinstance(down, torch.Tensor) and up.dim() == 3 and down.dim() == 3
            and int(up.shape[0]) == ne and int(down.shape[0]) == ne)


def _is_switch(m: nn.Module) -> bool:
    r, ex = getattr(m, "router", None), getattr(m, "experts", None)
    return (r is not None and type(r).__name__.endswith("Top1Router") and hasattr(r, "expert_capacity")
            and isinstance(getattr(r, "classifier", None), nn.Linear)
            and isinstance(ex, (nn.ModuleDict, nn.ModuleList)) and len(ex) == getattr(r, "num_experts", -1))


def _is_llama4(m: nn.Module) -> bool:
    """Llama 4's MoE block (transformers' Llama4TextMoe or one built like it), by structure: ``experts`` holding 3-D
    ``gate_up_proj`` [E, H, 2I] and ``down_proj`` [E, I, H] ([experts, in, out]) and an ``act_fn``, not transformers'
    fused experts (those are called with the routing, :func:`_is_fused`); a Linear ``router`` with E outputs; a
    ``shared_expert`` module; integer ``top_k`` (1..E) and ``num_experts`` (E)."""
    ex, router, shared = (getattr(m, a, None) for a in ("experts", "router", "shared_expert"))
    e, k = getattr(m, "num_experts", None), getattr(m, "top_k", None)
    if not (isinstance(ex, nn.Module) and isinstance(router, nn.Linear) and isinstance(shared, nn.Module)
            and isinstance(e, int) and isinstance(k, int) and not isinstance(e, bool) and not isinstance(k, bool)
            and 0 < k <= e and router.out_features == e and callable(getattr(ex, "act_fn", None))
            and not _is_fused(ex)):
        return False
    up, down = getattr(ex, "gate_up_proj", None), getattr(ex, "down_proj", None)
    if not (isinstance(up, torch.Tensor) and isinstance(down, torch.Tensor) and up.dim() == 3 and down.dim() == 3):
        return False
    (ue, h, two_i), (de, i, dh) = (tuple(int(d) for d in t.shape) for t in (up, down))
    return ue == de == e and two_i == 2 * i and dh == h == router.in_features


# the router's topk_method values that restrict each token to topk_group of n_group expert groups: DeepSeek-V2's
# 'group_limited_greedy' (transformers' DeepseekV2TopkRouter; its default 'greedy' is a plain top-k that ignores the
# groups) and 'noaux_tc', which DeepSeek-V3 / Kimi-K2 hub configs carry (transformers' DeepseekV3TopkRouter reads
# no method and always masks the groups)
GROUP_LIMITED_METHODS = ("group_limited_greedy", "noaux_tc")


def _routes_by_group(cfg) -> bool:
    """Whether the router of an MoE layer with config ``cfg`` applies its n_group / topk_group limit (the fused
    experts module matched here is the router's sibling: the config is what both read). transformers'
    DeepseekV2TopkRouter copies config.topk_method and masks the groups only under 'group_limited_greedy'; every
    router of transformers that reads topk_group without a topk_method (DeepSeek-V3, GLM-4.5 MoE, dots1, ...) masks
    them unconditionally, so a config without topk_method applies the limit; any other method (DeepSeek-V2's default
    'greedy') does not."""
    method = getattr(cfg, "topk_method", None)
    return method is None or method in GROUP_LIMITED_METHODS


def _match(name: str, m: nn.Module) -> MoeLayer | None:
    if _is_llama4(m):
        # Llama 4 has no experts_implementation (transformers falls back to "eager", its all-experts bmm): the grouped
        # GEMM torchtitan / Megatron train it with, or the per-expert loop (same GEMM FLOPs) on a torch without one
        ex = m.experts
        return MoeLayer(f"{name}.experts" if name else "experts", type(ex).__name__, "llama4", int(m.num_experts),
                        "grouped" if SHAPE_ONLY else "loop", "", top_k=int(m.top_k),
                        params=sum(int(p.numel()) for p in ex.parameters()),
                        trainable=sum(int(p.numel()) for p in ex.parameters() if p.requires_grad))
    if _is_fused(m):
        impl_name = getattr(getattr(m, "config", None), "_experts_implementation", None) or "grouped_mm"
        impl = {"eager": "loop", "batched_mm": "batched"}.get(impl_name, "grouped")
        if impl == "grouped" and not SHAPE_ONLY:
            impl = "loop"  # a torch without _grouped_mm: the loop has the same GEMM FLOPs
        cfg = getattr(m, "config", None)
        k = next((v for v in (getattr(cfg, a, None) for a in ("num_experts_per_tok", "moe_top_k", "top_k"))
                  if isinstance(v, int) and not isinstance(v, bool)), 0)
        ng, tg = getattr(cfg, "n_group", None), getattr(cfg, "topk_group", None)
        limited = (all(isinstance(v, int) and not isinstance(v, bool) for v in (ng, tg)) and 0 < tg < ng
                   and _routes_by_group(cfg))
        return MoeLayer(name, type(m).__name__, "fused", int(_num_experts(m)), impl, impl_name, top_k=k,
                        **({"n_group": ng, "topk_group": tg} if limited else {}),
                        params=sum(int(p.numel()) for p in m.parameters()),
                        trainable=sum(int(p.numel()) for p in m.parameters() if p.requires_grad))
    if _is_switch(m):
        cap = m.router.expert_capacity
        return MoeLayer(name, type(m).__name__, "switch", int(m.router.num_experts), "loop", "",
                        capacity=int(cap) if isinstance(cap, int) and cap > 0 else None, top_k=1,
                        params=sum(int(p.numel()) for p in m.experts.parameters()),
                        trainable=sum(int(p.numel()) for p in m.experts.parameters() if p.requires_grad))
    return None


# ---- routed forwards ---------------------------------------------------------------------------------------------

def _dispatch(top_k_index: torch.Tensor, k: int, rows: tuple[int, ...]):
    """Balanced dispatch: (token of each row, assignment slot of each row, expert id of each row), rows grouped by
    expert. One stable sort of the assignments by expert (as grouped-GEMM MoE implementations do); when the rows
    differ from the assignments (capacity factor != 1) the sorted order is cycled to the row count."""
    ids = top_k_index.reshape(-1)
    sorted_ids, order = torch.sort(ids, stable=True)
    s = sum(rows)
    if s != ids.numel():
        pick = torch.arange(s, device=ids.device) % max(1, ids.numel())
        order, sorted_ids = order[pick], sorted_ids[pick]
    token = torch.div(order, k, rounding_mode="floor")
    return token, order, sorted_ids


def _grouped_linear(x, w, offs, bias, transposed: bool, expert_of_row):
    out = torch._grouped_mm(x, w if transposed else w.transpose(-2, -1), offs=offs)
    if bias is not None:
        out = out + bias[expert_of_row]
    return out


def _expert_linear(x, w, bias, transposed: bool):
    if transposed:
        out = x @ w
        return out + bias if bias is not None else out
    return F.linear(x, w, bias)


def _fused_forward(mod: nn.Module, layer: MoeLayer, routing: MoeRouting):
    """transformers' fused experts (``@use_experts_implementation``) at the routed cost."""

    def forward(hidden_states, top_k_index, top_k_weights):
        shape = hidden_states.shape
        x = hidden_states.reshape(-1, shape[-1])
        tokens, k, e = int(x.shape[0]), int(top_k_index.shape[-1]), mod.num_experts
        rows = routing.rows(tokens * k, e)
        layer.top_k, layer.tokens, layer.rows, layer.calls = k, tokens, rows, layer.calls + 1
        token, slot, expert_of_row = _dispatch(top_k_index, k, rows)
        weight = top_k_weights.reshape(-1)[slot]
        up = mod.gate_up_proj if mod.has_gate else mod.up_proj
        up_b = (mod.gate_up_proj_bias if mod.has_gate else mod.up_proj_bias) if mod.has_bias else None
        down_b = mod.down_proj_bias if mod.has_bias else None
        post = mod.post_expert_norm if getattr(mod, "has_post_expert_norm", False) else None
        out = torch.zeros_like(x)
        if layer.impl == "grouped":
            counts = torch.histc(expert_of_row.float(), bins=e, min=0, max=e - 1)
            offs = torch.cumsum(counts, dim=0, dtype=torch.int32)
            h = _grouped_linear(x[token], up, offs, up_b, mod.is_transposed, expert_of_row)
            h = mod._apply_gate(h) if mod.has_gate else mod.act_fn(h)
            y = _grouped_linear(h, mod.down_proj, offs, down_b, mod.is_transposed, expert_of_row)
            if post is not None:
                y = post(y)
            y = y * weight.unsqueeze(-1)
            out = out.index_add(0, token, y.to(out.dtype))
        else:  # per-expert loop (transformers "eager")
            start = 0
            for i, n in enumerate(rows):
                if n == 0:
                    continue
                tok = token[start:start + n]
                h = _expert_linear(x[tok], up[i], up_b[i] if up_b is not None else None, mod.is_transposed)
                h = mod._apply_gate(h) if mod.has_gate else mod.act_fn(h)
                y = _expert_linear(h, mod.down_proj[i], down_b[i] if down_b is not None else None,
                                   mod.is_transposed)
                if post is not None:
                    y = post(y)
                y = y * weight[start:start + n, None]
                out.index_add_(0, tok, y.to(out.dtype))
                start += n
        return out.reshape(shape).to(hidden_states.dtype)

    return forward


def _switch_forward(mod: nn.Module, layer: MoeLayer, routing: MoeRouting):
    """Switch Transformers' sparse MLP: top-1 router with an expert capacity per sequence, per-expert loop over the
    experts ModuleDict (each expert module called on its rows, so its submodules are attributed)."""

    def forward(hidden_states, *args, **kwargs):
        b, seq, hdim = hidden_states.shape
        router = mod.router
        selected, probs, _ = router(hidden_states)  # the model's router (capacity mask included)
        e = int(router.num_experts)
        want = math.ceil(routing.capacity_factor * seq / e)
        per_seq = min(layer.capacity, want) if layer.capacity else want
        rows = (b * per_seq,) * e
        layer.top_k, layer.tokens, layer.seq, layer.rows, layer.calls = 1, b * seq, seq, rows, layer.calls + 1
        x = hidden_states.reshape(-1, hdim)
        expert_index = torch.argmax(selected.reshape(-1, e), dim=-1)
        token, slot, _ = _dispatch(expert_index, 1, rows)
        weight = probs.reshape(-1)[slot]
        out = torch.zeros_like(x)
        experts = list(mod.experts.values()) if isinstance(mod.experts, nn.ModuleDict) else list(mod.experts)
        start = 0
        for expert, n in zip(experts, rows):
            if n == 0:
                continue
            tok = token[start:start + n]
            y = expert(x[tok]) * weight[start:start + n, None]
            out.index_add_(0, tok, y.to(out.dtype))
            start += n
        return out.reshape(b, seq, hdim)

    return forward


def _llama4_forward(mod: nn.Module, layer: MoeLayer, routing: MoeRouting):
    """Llama 4's MoE block at the routed cost: the model's router (unchanged), top-k of its scores, balanced dispatch,
    the routing weight applied to each routed row BEFORE the experts (Llama 4 scales ``routed_in`` by the scores), the
    experts module on the dispatched rows (:func:`_llama4_experts_forward`), and an ``index_add`` combine into the
    shared expert's output (run on every token). Returns (out, router_logits) as the model's forward does."""

    def forward(hidden_states, *args, **kwargs):
        x = hidden_states.reshape(-1, hidden_states.shape[-1])
        got = mod.router(x)
        tokens, k, e = int(x.shape[0]), int(mod.top_k), int(mod.num_experts)
        if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(t, torch.Tensor) for t in got)
                and tuple(got[0].shape) == (tokens, e)):
            where = layer.path[:-len(".experts")] if layer.path.endswith(".experts") else "<root>"
            what = (f"({', '.join(str(list(t.shape)) for t in got)})" if isinstance(got, tuple)
                    and all(isinstance(t, torch.Tensor) for t in got) else type(got).__name__)
            raise InputError(f"unsupported mixture-of-experts layout: {type(mod).__name__} at '{where}' is built like "
                             f"Llama 4's MoE block, but its router returned {what}, not Llama 4's (router_scores "
                             f"[{tokens}, {e}], router_logits); tracing it on meta tensors would miscount its experts")
        scores, logits = got
        top_w, top_i = torch.topk(scores, k, dim=-1)
        rows = routing.rows(tokens * k, e)
        layer.top_k, layer.tokens, layer.rows, layer.calls = k, tokens, rows, layer.calls + 1
        token, slot, expert_of_row = _dispatch(top_i, k, rows)
        routed_in = x[token] * top_w.reshape(-1)[slot].unsqueeze(-1)
        y = mod.experts(routed_in, expert_of_row, rows)
        out = mod.shared_expert(x)
        out = out.index_add(0, token, y.to(out.dtype))
        return out, logits

    return forward


def _llama4_experts_forward(mod: nn.Module, layer: MoeLayer, routing: MoeRouting):
    """Llama 4's experts on rows already grouped by expert (``rows[e]`` rows of expert ``e``): gate_up GEMM
    ([E, H, 2I]), ``up * act_fn(gate)`` (gate first, as Llama4TextExperts chunks it), down GEMM ([E, I, H]); one
    ``torch._grouped_mm`` per projection, or one GEMM per expert and projection (the loop)."""

    def forward(x, expert_of_row, rows):
        e = int(mod.gate_up_proj.shape[0])
        if layer.impl == "grouped":
            counts = torch.histc(expert_of_row.float(), bins=e, min=0, max=e - 1)
            offs = torch.cumsum(counts, dim=0, dtype=torch.int32)
            gate, up = _grouped_linear(x, mod.gate_up_proj, offs, None, True, expert_of_row).chunk(2, dim=-1)
            return _grouped_linear(up * mod.act_fn(gate), mod.down_proj, offs, None, True, expert_of_row)
        outs, start = [], 0
        for i, n in enumerate(rows):
            if n == 0:
                continue
            gate, up = _expert_linear(x[start:start + n], mod.gate_up_proj[i], None, True).chunk(2, dim=-1)
            outs.append(_expert_linear(up * mod.act_fn(gate), mod.down_proj[i], None, True))
            start += n
        return torch.cat(outs, dim=0) if outs else x.new_zeros((0, int(mod.down_proj.shape[-1])))

    return forward
