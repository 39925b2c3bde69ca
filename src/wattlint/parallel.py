"""Large-model parallelism: the layout (tensor / pipeline / data / expert parallel), collective arithmetic, and the
per-GPU share of a traced training step.

Layout (Megatron-LM conventions, Narayanan et al., SC 2021; Korthikanti et al., 2022)::

    gpus = tp x pp x dp          data-parallel degree dp = gpus / (tp x pp)
    ep divides dp                expert-parallel groups carved out of the data-parallel ranks (MoE)
    global batch = micro-batch x dp x grad-accum     grad-accum = pipeline micro-batches per step (1F1B)

Collectives, alpha-beta model (Thakur, Rabenseifner & Gropp 2005; NCCL ring algorithms), ``bw`` the achieved
per-direction link bandwidth in bytes/s, ``latency_s`` one fixed term per call:

* ring all-reduce of ``nbytes``:              2 (n-1)/n x nbytes / bw + latency
* all-gather / reduce-scatter (``nbytes`` = the full, gathered tensor):  (n-1)/n x nbytes / bw + latency
* all-to-all (``nbytes`` = each GPU's send buffer):  (n-1)/n x nbytes / bw + latency
* point-to-point send of ``nbytes``:          nbytes / bw + latency
* 1F1B pipeline bubble: (p-1) / (m+p-1) of the step, with m micro-batches over p stages.

Pure Python; nothing here imports torch. :func:`shard_graph` turns a traced full-model step into the step of one
GPU of the bottleneck pipeline stage under tensor parallelism (module doc of that function).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .costs import dtype_bytes
from .options import MOE_DISPATCHERS, RECOMPUTES
from .types import ConfigError, CostGraph, OpKind, OpRecord, Phase

# ---- collective arithmetic ---------------------------------------------------------------------------------------


def ring_all_reduce_s(nbytes: float, n: int, bw_bytes_s: float, latency_s: float = 0.0) -> float:
    """Ring all-reduce of ``nbytes`` over ``n`` GPUs: each GPU sends and receives 2(n-1)/n x nbytes."""
    if n <= 1:
        return 0.0
    return 2.0 * (n - 1) / n * nbytes / bw_bytes_s + latency_s


def all_gather_s(nbytes: float, n: int, bw_bytes_s: float, latency_s: float = 0.0) -> float:
    """Ring all-gather producing an ``nbytes`` tensor on every GPU: each receives the (n-1)/n it lacks."""
    if n <= 1:
        return 0.0
    return (n - 1) / n * nbytes / bw_bytes_s + latency_s


def reduce_scatter_s(nbytes: float, n: int, bw_bytes_s: float, latency_s: float = 0.0) -> float:
    """Ring reduce-scatter of an ``nbytes`` tensor: each GPU sends (n-1)/n of it and keeps a 1/n reduced shard."""
    return all_gather_s(nbytes, n, bw_bytes_s, latency_s)


def all_to_all_s(nbytes: float, n: int, bw_bytes_s: float, latency_s: float = 0.0) -> float:
    """All-to-all where each GPU holds ``nbytes`` to scatter: (n-1)/n of it leaves the GPU."""
    if n <= 1:
        return 0.0
    return (n - 1) / n * nbytes / bw_bytes_s + latency_s


def p2p_s(nbytes: float, bw_bytes_s: float, latency_s: float = 0.0) -> float:
    """One point-to-point send of ``nbytes``."""
    if nbytes <= 0:
        return 0.0
    return nbytes / bw_bytes_s + latency_s


def bubble_fraction(p: int, m: int, v: int = 1) -> float:
    """Idle fraction of a 1F1B (or GPipe) pipeline step: (p-1)/(m+p-1) for p stages and m micro-batches; with the
    interleaved schedule of v model chunks per stage the bubble time is 1/v of that (Narayanan et al. 2021, section
    2.2.2), so (p-1)/(v m+p-1)."""
    if p <= 1:
        return 0.0
    return (p - 1) / (max(1, v) * m + p - 1)


def pipeline_boundaries_in_node(gpus: int, pp: int, gpus_per_node: int) -> tuple[bool, ...]:
    """Whether each pipeline stage boundary stays inside one node, under the rank order wattlint assumes
    (Megatron-LM's default tp-cp-ep-dp-pp: tensor-parallel ranks innermost, then context-, expert- and data-parallel,
    pipeline stages outermost), so stage i holds the ``gpus / pp`` consecutive ranks from i x gpus / pp. Boundary i
    (i = 0 .. pp - 2) joins stage i to stage i + 1: rank r sends to rank r + gpus / pp, and the boundary is in a node
    only when every such pair is. The last entry (i = pp - 1) is the wrap from the last stage back to the first,
    which only the interleaved schedule crosses. Nodes hold ``gpus_per_node`` consecutive ranks."""
    per = max(1, int(gpus_per_node))
    stage = max(1, gpus // max(1, pp))
    out = []
    for i in range(max(1, pp)):
        ranks = range(i * stage, (i + 1) * stage)
        out.append(all(r // per == ((r + stage) % gpus) // per for r in ranks))
    return tuple(out)


# ---- the layout --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """How the GPUs of a job split the model and the batch."""

    gpus: int
    tp: int = 1
    pp: int = 1
    ep: int = 1
    sequence_parallel: bool = False
    micro_batch: int = 1
    grad_accum: int = 1
    vpp: int = 1  # interleaved 1F1B: model chunks per pipeline stage
    cp: int = 1  # context parallel: each sequence split over cp GPUs

    @property
    def dp(self) -> int:
        return max(1, self.gpus // (self.tp * self.cp * self.pp))

    @property
    def model_parallel(self) -> bool:
        return self.tp > 1 or self.pp > 1 or self.ep > 1 or self.cp > 1


LAYOUT_OPTIONS = ("tensor_parallel", "pipeline_parallel", "expert_parallel", "micro_batch_size",
                  "virtual_pipeline_stages", "context_parallel")


def resolve(values: Mapping[str, Any], *, micro_from_trace: bool = False) -> tuple[Layout, list[str]]:
    """The layout of validated plan options (``gpus``, ``batch_size``, ``grad_accum``, ``tensor_parallel``,
    ``pipeline_parallel``, ``expert_parallel``, ``sequence_parallel``, ``micro_batch_size``) and its assumption
    lines. ``batch_size`` may be None (then it is micro-batch x dp x grad-accum). Bad layouts raise ConfigError
    naming the flag. ``micro_from_trace``: the micro-batch is the traced one, not a --micro-batch-size the user
    gave (said so, never blamed on the flag)."""
    gpus = int(values.get("gpus") or 1)
    tp = int(values.get("tensor_parallel") or 1)
    pp = int(values.get("pipeline_parallel") or 1)
    ep = int(values.get("expert_parallel") or 1)
    cp = int(values.get("context_parallel") or 1)
    sp = bool(values.get("sequence_parallel", False))
    notes: list[str] = []

    def said(name: str, value: int, why: str = "default") -> str:
        """An option in an error line as the user gave it (``--gpus 3``), or said to be the default where it was not
        given (``gpus 1 (default)``): the line never quotes a flag the user did not type."""
        flag = f"--{name.replace('_', '-')}"
        return f"{flag} {value}" if values.get(name) is not None else f"{flag[2:]} {value} ({why})"

    if gpus % (tp * cp * pp):
        what = " x ".join(said(n, x) for n, x in (("tensor_parallel", tp), ("context_parallel", cp),
                                                   ("pipeline_parallel", pp)) if n != "context_parallel" or cp > 1)
        raise ConfigError(f"{what} = {tp * cp * pp} does not divide {said('gpus', gpus, 'the default: no --gpus given')}"
                          f": the data-parallel degree gpus / ({'tp x cp x pp' if cp > 1 else 'tp x pp'}) must be a "
                          "whole number")
    dp = gpus // (tp * cp * pp)
    if dp % ep:
        raise ConfigError(f"--expert-parallel {ep} does not divide the data-parallel degree {dp} (= {said('gpus', gpus)} / "
                          f"(tp {tp}{f' x cp {cp}' if cp > 1 else ''} x pp {pp})): expert groups are carved out of the "
                          "data-parallel ranks")
    batch = values.get("batch_size")
    micro = values.get("micro_batch_size")
    ga_given = values.get("grad_accum")
    if micro is not None:
        if batch is None:
            ga = int(ga_given or 1)
            batch = micro * dp * ga
        elif batch % (dp * micro):
            raise ConfigError(f"--batch-size {batch} is not divisible by data-parallel {dp} x --micro-batch-size "
                              f"{micro} = {dp * micro}")
        ga = batch // (dp * micro)
        if ga_given is not None and ga_given != ga:
            raise ConfigError(f"--grad-accum {ga_given} conflicts with --batch-size {batch} / (data-parallel {dp} x "
                              f"--micro-batch-size {micro}) = {ga} micro-batches per step; give one of them")
        if tp * cp * pp > 1 or micro is not None:
            why = "the traced micro-batch: no --batch-size or --micro-batch-size" if micro_from_trace else \
                "--micro-batch-size"
            notes.append(f"micro-batch {micro} ({why}): {ga} micro-batch(es) per step = batch {batch} "
                         f"/ (data-parallel {dp} x {micro})")
    else:
        ga = int(ga_given or 1)
        if batch is not None:
            if batch < dp * ga:
                raise ConfigError(f"--batch-size {batch} is smaller than data-parallel {dp} x grad-accum {ga}: each "
                                  f"replica needs at least one sample per micro-step")
            micro = batch // (dp * ga)
        else:
            micro = 1
    if tp * pp > 1 and cp == 1:
        notes.append(f"parallel layout: tensor-parallel {tp} x pipeline-parallel {pp} x data-parallel {dp} = {gpus} "
                     f"GPUs (Megatron-LM order: TP ranks adjacent inside a node, then DP, then PP)")
    elif cp > 1:
        notes.append(f"parallel layout: tensor-parallel {tp} x context-parallel {cp} x pipeline-parallel {pp} x "
                     f"data-parallel {dp} = {gpus} GPUs (Megatron-LM order: TP ranks adjacent inside a node, then CP, "
                     f"then DP, then PP); each sequence split over the {cp} context-parallel GPUs, attention by ring "
                     f"exchange of keys and values (Megatron-Core context parallelism)")
    if ep > 1:
        notes.append(f"expert parallel {ep}: each MoE layer's experts spread over {ep} of the {dp} data-parallel "
                     f"ranks; tokens routed by all-to-all")
    if sp and tp == 1:
        notes.append("--sequence-parallel has no effect without --tensor-parallel > 1")
        sp = False
    vpp = int(values.get("virtual_pipeline_stages") or 1)
    if vpp > 1:
        if pp == 1:
            raise ConfigError(f"--virtual-pipeline-stages {vpp} needs --pipeline-parallel > 1 (it interleaves model "
                              f"chunks over the pipeline stages)")
        if ga % pp:
            raise ConfigError(f"--virtual-pipeline-stages {vpp}: the interleaved schedule needs the micro-batches per "
                              f"step ({ga}) to be a multiple of --pipeline-parallel {pp} (Narayanan et al. 2021, "
                              f"section 2.2.2; Megatron-LM refuses otherwise)")
        notes.append(f"interleaved 1F1B: {vpp} model chunks per pipeline stage (Narayanan et al. 2021): bubble / "
                     f"{vpp}, {vpp} x the stage-boundary sends per micro-batch")
    return Layout(gpus=gpus, tp=tp, pp=pp, ep=ep, sequence_parallel=sp, micro_batch=int(micro),
                  grad_accum=ga, vpp=vpp, cp=cp), notes


def frontend_batch(opts: Mapping[str, Any]) -> dict[str, int]:
    """Frontend options that make it trace one data-parallel replica's micro-batch: ``gpus`` -> the data-parallel
    degree and ``grad_accum`` -> the micro-batches per step (empty when no parallel-layout option is given)."""
    if not any(opts.get(k) is not None for k in LAYOUT_OPTIONS):
        return {}
    layout, _ = resolve(opts)
    out = {"gpus": layout.dp, "grad_accum": layout.grad_accum}
    if opts.get("batch_size") is None and opts.get("micro_batch_size") is not None:
        out["batch_size"] = layout.micro_batch * layout.dp * layout.grad_accum
    return out


# ---- the per-GPU share of a traced step --------------------------------------------------------------------------

_BLOCK_RE = re.compile(r"^(.*?)\.(\d+)(?:\.|$)")
_REPLICATED_TYPES = ("norm", "dropout")  # module types outside the tensor-parallel region (LayerNorm, RMSNorm, ...)
GEMM_KINDS = (OpKind.MATMUL, OpKind.ATTENTION)


@dataclass(frozen=True)
class Blocks:
    """The repeated transformer blocks of a graph: the ModuleList prefix and the block indices."""

    prefix: str
    indices: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.indices)

    def index(self, module: str) -> int | None:
        if not module.startswith(self.prefix + "."):
            return None
        rest = module[len(self.prefix) + 1:]
        head = rest.split(".", 1)[0]
        return int(head) if head.isdigit() else None


def block_families(records) -> dict[str, set[int]]:
    """Every numbered module family with matmuls / attention: ModuleList prefix -> the indices seen."""
    seen: dict[str, set[int]] = {}
    for r in records:
        if r.kind not in GEMM_KINDS or not r.module:
            continue
        m = _BLOCK_RE.match(r.module)
        if m:
            seen.setdefault(m.group(1), set()).add(int(m.group(2)))
    return seen


def block_prefix(module: str) -> str | None:
    """The ModuleList prefix of a numbered module path ("model.layers.3.mlp" -> "model.layers"), else None."""
    m = _BLOCK_RE.match(module)
    return m.group(1) if m else None


def find_blocks(graph: CostGraph) -> Blocks | None:
    """The ModuleList holding the most numbered children with matmuls (the transformer layers), or None."""
    seen = block_families(graph.records)
    if not seen:
        return None
    prefix = max(sorted(seen), key=lambda p: len(seen[p]))
    if len(seen[prefix]) < 2:
        return None
    return Blocks(prefix=prefix, indices=tuple(sorted(seen[prefix])))


def model_blocks(graph: CostGraph) -> Blocks | None:
    """The blocks model parallelism splits: :func:`find_blocks`, else the one block of a one-layer model (the only
    numbered module family with matmuls, holding a single index: 'transformer.h.0'), which :func:`find_blocks`
    cannot tell from any other numbered module in general. Review 2026-12: a 1-layer transformer had no blocks, so
    context parallelism priced its ring over 0 layers and tensor parallelism was refused as having 'no repeated
    transformer blocks'. None without numbered modules, or with one layer in each of several lists (a 1-layer
    encoder-decoder: :func:`_check_one_transformer_stack` refuses it as several stacks)."""
    found = find_blocks(graph)
    if found is not None:
        return found
    families = block_families(graph.records)
    if len(families) != 1:
        return None
    ((prefix, indices),) = families.items()
    return Blocks(prefix=prefix, indices=tuple(sorted(indices)))


def stage_blocks_of(graph: CostGraph) -> Blocks | None:
    """The repeated blocks a graph runs: on a per-GPU graph (:func:`shard_graph`), those of the blocks' ModuleList
    the full model was split on (a pipeline stage, or a one-layer model, may hold a single block, which
    :func:`find_blocks` cannot tell from any other numbered module); else :func:`find_blocks`."""
    extra = graph.extra or {}
    prefix = (extra.get("pipeline_stages") or {}).get("prefix") or extra.get("parallel_blocks")
    if prefix:
        found = Blocks(prefix=prefix, indices=())
        idx = sorted({i for r in graph.records if r.kind in GEMM_KINDS
                      for i in (found.index(r.module),) if i is not None})
        if idx:
            return Blocks(prefix=prefix, indices=tuple(idx))
    return find_blocks(graph)


def hidden_size(graph: CostGraph, blocks: Blocks | None = None) -> int:
    """Residual-stream width: the input features (k) of the first forward matmul inside a block (the attention
    input projection of a transformer), else of the first forward matmul."""
    first = None
    for r in graph.records:
        if r.phase is Phase.FORWARD and r.kind is OpKind.MATMUL and r.dim("k", 0):
            if first is None:
                first = r
            if blocks is None or blocks.index(r.module) is not None:
                return int(r.dim("k"))
    return int(first.dim("k")) if first is not None else 0


def sequence_length(graph: CostGraph) -> int:
    """Tokens per sample: the trace's sequence length (language models, --seq-len), else the query length of its
    first forward fused attention (a vision transformer's patches + class token, which no --seq-len states); 0
    when neither is known."""
    if graph.seq_len:
        return int(graph.seq_len)
    for r in graph.records:
        if r.phase is Phase.FORWARD and r.kind is OpKind.ATTENTION and not r.recompute and r.dim("sq", 0):
            return int(r.dim("sq", 0))
    return 0


def tokens_per_micro_batch(graph: CostGraph) -> int:
    return max(1, int(graph.micro_batch or 1)) * max(1, sequence_length(graph))


def _scaled(r: OpRecord, f: float, dims: tuple[tuple[str, int], ...] | None = None) -> OpRecord:
    return dataclasses.replace(r, flops=int(round(r.flops * f)), bytes_read=int(round(r.bytes_read * f)),
                               bytes_written=int(round(r.bytes_written * f)),
                               dims=r.dims if dims is None else dims)


ROW_PARALLEL = re.compile(r"(^|\.)(o_proj|out_proj|c_proj|down_proj|fc2|wo|w2|dense_4h_to_h|proj_out|"
                          r"output\.dense|attention\.dense|self_attention\.dense)$")


def weight_split(graph: CostGraph) -> dict[str, tuple[int, bool]]:
    """Per matmul module, the weight dimension tensor parallelism splits: the output features of column-parallel
    layers (QKV, up / gate projections, LM head), the input features of row-parallel ones (attention output and
    MLP down projections, recognised by name: o_proj, out_proj, c_proj, down_proj, fc2, dense_4h_to_h, ...)."""
    out: dict[str, tuple[int, bool]] = {}
    for r in graph.records:
        if r.phase is Phase.FORWARD and r.kind is OpKind.MATMUL and r.module and r.module not in out:
            n, k = r.dim("n", 0), r.dim("k", 0)
            if n and k:
                row = bool(ROW_PARALLEL.search(r.module))
                out[r.module] = (k if row else n, row)
    return out


def _split_order(r: OpRecord, row: bool, tokens: int) -> tuple[str, ...]:
    """Where the split weight dimension sits in this GEMM (for square weights the value alone cannot tell):
    forward x @ W (m = tokens): column n, row k; input gradient (m = tokens): column k, row n; weight gradient
    (k = tokens): column m, row n."""
    if r.phase is Phase.FORWARD:
        return ("k", "n", "m") if row else ("n", "k", "m")
    if r.dim("m", 0) == tokens:
        return ("n", "k", "m") if row else ("k", "n", "m")
    return ("n", "m", "k") if row else ("m", "n", "k")


def _context_split(r: OpRecord, cp: int, tokens: int) -> OpRecord:
    """One context-parallel rank's share of a forward / backward record: its 1/cp of every sequence's tokens.
    Matmuls shrink their token dimension (the rows of a forward / input-gradient GEMM, the reduction of a weight
    gradient); attention keeps its keys and divides its queries (each rank attends its query chunks to every key,
    balanced over the causal mask: Megatron-Core splits a sequence into 2 cp chunks, rank i holding chunks i and
    2 cp - 1 - i); the rest is token-proportional and divided by cp."""
    if r.kind is OpKind.ATTENTION:
        sq = r.dim("sq", 0)
        dims = tuple((k, max(1, sq // cp) if k == "sq" else v) for k, v in r.dims) if sq else None
        return _scaled(r, 1.0 / cp, dims)
    if r.kind is OpKind.MATMUL:
        m, n, k = r.dim("m", 0), r.dim("n", 0), r.dim("k", 0)
        which = next((name for name, v in (("m", m), ("k", k), ("n", n)) if v and v == tokens), None)
        if which:
            new = {"m": m, "n": n, "k": k}
            new[which] = max(1, new[which] // cp)
            return _resized_gemm(r, new)
    return _scaled(r, 1.0 / cp)


def _resized_gemm(r: OpRecord, new: Mapping[str, int]) -> OpRecord:
    """A GEMM record with its m / n / k changed to ``new``: FLOPs and bytes follow the new dims (operands m x k and
    k x n read, m x n written)."""
    m, n, k = r.dim("m", 0), r.dim("n", 0), r.dim("k", 0)
    m2, n2, k2 = new["m"], new["n"], new["k"]
    read_f = (m2 * k2 + k2 * n2) / (m * k + k * n)
    write_f = (m2 * n2) / (m * n)
    dims = tuple((key, new[key] if key in new else v) for key, v in r.dims)
    return dataclasses.replace(r, flops=int(round(r.flops * (m2 * n2 * k2) / (m * n * k))),
                               bytes_read=int(round(r.bytes_read * read_f)),
                               bytes_written=int(round(r.bytes_written * write_f)), dims=dims)


def kv_bytes_per_layer(graph: CostGraph, blocks: Blocks | None, hidden: int) -> tuple[float, str]:
    """Key + value bytes of one micro-batch's full sequences for one layer (what a context-parallel ring passes
    around): from the first forward fused-attention record's dims (b x key/value heads x keys x (d + dv) x element
    bytes: its K and V, never an attention mask it also reads; the model's own key/value heads under grouped-query
    attention, which the ring passes before any repeat: Hugging Face repeats them for SDPA with a mask), else
    2 x tokens x hidden x 2 bytes (multi-head attention, 16-bit)."""
    heads = (graph.extra or {}).get("attention_heads") or ()
    for r in graph.records:
        if r.phase is Phase.FORWARD and r.kind is OpKind.ATTENTION and not r.recompute:
            b, h, sk, d = r.dim("b", 1) or 1, r.dim("h", 1) or 1, r.dim("sk", 0), r.dim("d", 0)
            kvh, dv = r.dim("kvh", 0) or h, r.dim("dv", 0) or d
            if len(heads) == 2 and heads[0] == h and 0 < heads[1] < kvh:  # repeated to the query heads
                kvh = int(heads[1])
            # (an ONNX graph with its batch baked in keeps the baked batch in its dims: scaled to the costed one)
            kv = b * kvh * sk * (d + dv) * dtype_bytes(r.dtype) * float((graph.extra or {}).get("dims_batch_scale",
                                                                                                  1.0))
            if sk and d and kv > 0:
                return float(kv), "the traced attention's key and value tensors"
    return 2.0 * tokens_per_micro_batch(graph) * max(1, hidden) * 2, "2 x tokens x hidden x 2 B (no fused attention)"


def _shard_gemm(r: OpRecord, tp: int, tokens: int, split: tuple[int, bool] | None = None) -> OpRecord:
    """A matmul split over ``tp`` ranks (Megatron column / row parallel): the dimension equal to the module's split
    weight dimension (:func:`weight_split`; else the largest non-token dimension) is divided; FLOPs and bytes
    follow the new dims."""
    if r.kind is OpKind.ATTENTION:
        h = r.dim("h", 0)
        if h:
            hn = max(1, math.ceil(h / tp))
            dims = tuple((k, hn if k == "h" else v) for k, v in r.dims)
            return _scaled(r, hn / h, dims)
        return _scaled(r, 1.0 / tp)
    m, n, k = r.dim("m", 0), r.dim("n", 0), r.dim("k", 0)
    if not (m and n and k):
        return _scaled(r, 1.0 / tp)
    dims_now = {"n": n, "k": k, "m": m}
    which = None
    if split is not None:
        value, row = split
        which = next((name for name in _split_order(r, row, tokens) if dims_now[name] == value), None)
    if which is None:
        cand = {name: v for name, v in dims_now.items() if v != tokens and v >= tp}
        if not cand:
            return _scaled(r, 1.0 / tp)
        which = max(("n", "k", "m"), key=lambda x: cand.get(x, -1))
    new = dict(dims_now)
    new[which] = math.ceil(new[which] / tp)
    return _resized_gemm(r, new)


def _replicated(r: OpRecord, types: Mapping[str, str], blocks: Blocks | None, hidden: int, tokens: int) -> bool:
    """Whether a non-matmul op runs on the whole residual stream on every TP rank (norms, dropout after the
    row-parallel output, residual adds, embedding lookups) rather than on the rank's shard."""
    if r.kind is OpKind.EMBEDDING:
        return True
    mtype = (types.get(r.module) or "").lower()
    if any(t in mtype for t in _REPLICATED_TYPES):
        return True
    if r.kind is OpKind.NORM:
        return True
    b = blocks.index(r.module) if blocks is not None else None
    if b is not None:
        # the block module itself (residual adds) is replicated; its attention / MLP children are the TP region
        return r.module == f"{blocks.prefix}.{b}"
    # outside the blocks: logits-sized work (vocab-parallel loss) is split, residual-stream-sized work is not
    elems = max(r.bytes_written, r.bytes_read) / max(1, dtype_bytes(r.dtype))
    return not (hidden and elems > 2 * tokens * hidden)


def recompute_mode(recompute: str | bool) -> str:
    """``none`` | ``selective`` | ``full`` (a bool is the old activation-checkpointing flag: True = full)."""
    if isinstance(recompute, bool):
        return "full" if recompute else "none"
    return recompute or "none"


def stage_blocks(blocks: int, pp: int) -> tuple[int, ...]:
    """Repeated blocks per pipeline stage, first to last: ceil(blocks / pp) each, the shortfall taken one block at a
    time from the outermost stages inwards, first and last stage first (they also run the embedding, and the final
    norm, LM head and loss). Llama 3 405B's 126 layers on 16 stages: 7 on the first and the last, 8 on the others
    (Dubey et al. 2024, section 3.3.2; Megatron-Core's --decoder-first/last-pipeline-num-layers)."""
    if pp < 1 or blocks < pp:
        raise ValueError(f"{blocks} blocks cannot fill {pp} pipeline stages")
    n = -(-blocks // pp)
    sizes = [n] * pp
    order = [i for pair in zip(range(pp), range(pp - 1, -1, -1)) for i in pair]
    order = list(dict.fromkeys(order))  # 0, p-1, 1, p-2, ...
    for k in range(n * pp - blocks):
        sizes[order[k % pp]] -= 1
    return tuple(sizes)


def inflight_layers(blocks: int, pp: int, micro_batches: int | None = None) -> int:
    """Layers' worth of one micro-batch's activations the fullest stage keeps under 1F1B: stage i (from 0) holds
    min(m, p - i) micro-batches in flight (Megatron-LM's theoretical memory model), so max_i blocks_i x min(m, p - i);
    L with equal stages and m >= p."""
    if pp <= 1:
        return blocks
    m = pp if micro_batches is None else max(1, int(micro_batches))
    return max(n * min(m, pp - i) for i, n in enumerate(stage_blocks(blocks, pp)))


def interleave_penalty(pp: int, vpp: int) -> float:
    """Activation-memory factor of the interleaved 1F1B schedule on the first stage: 1 + (p - 1) / (p v)
    (Megatron-LM, megatron/training/theoretical_memory_usage.py, ``interleaved_schedule_memory_penalty``); 1 for
    plain 1F1B."""
    return 1.0 + (pp - 1) / (pp * vpp) if pp > 1 and vpp > 1 else 1.0


def _head_blocks(graph: CostGraph, blocks: Blocks, pre: set[str]) -> float:
    """Forward + backward FLOPs of the modules after the repeated blocks (final norm, LM head, loss: the last
    stage's own work) in units of one block's."""
    block_f = post_f = 0.0
    for r in graph.records:
        if r.phase is Phase.OPTIMIZER:
            continue
        if blocks.index(r.module) is not None:
            block_f += r.flops
        elif r.module not in pre:
            post_f += r.flops
    return post_f / (block_f / blocks.count) if block_f > 0 else 0.0


def _stage_param_share(graph: CostGraph, blocks: Blocks, stage: tuple, pre: set[str]) -> tuple[float, str | None]:
    """The costed pipeline stage's share of the model's parameters, and what it holds (None when the per-block
    parameters are not known: then its blocks' share of all blocks). The stage holds its blocks' parameters and,
    when it runs the modules after the blocks (the last stage), their weights (the LM head: Megatron-LM keeps a copy
    of a tied embedding there), not an even 1 / pp of the embedding and head."""
    per_block = int((graph.extra or {}).get("block_params") or 0)
    n_blocks = stage[3][stage[4]]
    if not per_block or not graph.params:
        return n_blocks / blocks.count, None
    post, seen = 0, set()
    if stage[2]:
        for r in graph.records:
            if (r.phase is Phase.FORWARD and r.kind is OpKind.MATMUL and r.module not in seen and r.module not in pre
                    and blocks.index(r.module) is None and r.dim("n", 0) and r.dim("k", 0)):
                seen.add(r.module)
                post += r.dim("n", 0) * r.dim("k", 0)
    held = n_blocks * per_block + post
    what = (f"{n_blocks} blocks x {per_block:,}" + (f" + the {post:,} weights after them (LM head)" if post else "")
            + f" = {held:,} parameters")
    return min(1.0, held / graph.params), what


def stage_params(graph: CostGraph, blocks: Blocks, sizes: Sequence[int], pre: set[str]) -> list[int] | None:
    """The parameters each pipeline stage holds (before the tensor-parallel split), first to last: its blocks, + on
    the first stage the modules before the blocks (embedding tables, any input projection), + on the last the matmul
    weights after them (the LM head, a tied embedding's copy included, as :func:`_stage_param_share` counts the
    last stage's). None when the per-block parameter count is not known (an ONNX graph)."""
    per_block = int((graph.extra or {}).get("block_params") or 0)
    if not per_block:
        return None
    head = post = 0
    seen: set[str] = set()
    for r in graph.records:
        if r.phase is not Phase.FORWARD or r.module in seen or blocks.index(r.module) is not None:
            continue
        if r.module in pre and r.kind is OpKind.EMBEDDING and r.shapes and len(r.shapes[0]) == 2:
            seen.add(r.module)
            head += int(r.shapes[0][0]) * int(r.shapes[0][1])
        elif r.kind is OpKind.MATMUL and r.dim("n", 0) and r.dim("k", 0):
            seen.add(r.module)
            if r.module in pre:
                head += r.dim("n", 0) * r.dim("k", 0)
            else:
                post += r.dim("n", 0) * r.dim("k", 0)
    last = len(sizes) - 1
    return [n * per_block + (head if i == 0 else 0) + (post if i == last else 0) for i, n in enumerate(sizes)]


def _pipeline_stage(graph: CostGraph, blocks: Blocks | None, pp: int, pre: set[str],
                    notes: list[str], vpp: int = 1) -> tuple[int, int, bool, tuple[int, ...], int, float]:
    """The pipeline stage costed as the bottleneck: (first block position, end position, whether it runs the
    modules after the blocks (final norm, LM head, loss), blocks per stage, its stage index, the LM head and loss
    in blocks' worth of FLOPs (:func:`_head_blocks`)). Equal stages: the last one. Unequal ones
    (:func:`stage_blocks`): the stage with more forward + backward FLOPs of the last stage (its blocks + what
    follows them) and a middle stage of the most blocks. Refuses fewer blocks than stages."""
    families = block_families(graph.records) if blocks is None else {}
    if families or (blocks is not None and blocks.count == 1):  # one numbered block (a 1-layer model)
        prefix = blocks.prefix if blocks is not None else max(sorted(families), key=lambda k: len(families[k]))
        raise ConfigError(f"--pipeline-parallel {pp}: the model has 1 block ({prefix}.*) to split into stages "
                          f"(need at least {pp})")
    if blocks is None:
        raise ConfigError(f"--pipeline-parallel {pp}: no stack of numbered blocks with matmuls or attention (a "
                          f"ModuleList of transformer layers, 'layers.0', 'layers.1', ...) was found to split into "
                          f"stages: pipeline stages are planned for transformer-style models")
    if blocks.count < pp:
        raise ConfigError(f"--pipeline-parallel {pp}: the model has {blocks.count} repeated blocks "
                          f"({blocks.prefix}.*) to split into stages (need at least {pp})")
    sizes = stage_blocks(blocks.count, pp)
    L = blocks.count
    if min(sizes) < vpp:
        raise ConfigError(f"--virtual-pipeline-stages {vpp}: a pipeline stage of {min(sizes)} block(s) cannot hold "
                          f"{vpp} model chunks of at least one block each ({L} blocks on {pp} stages)")
    head = _head_blocks(graph, blocks, pre)
    last = (L - sizes[-1], L, True, sizes, pp - 1, head)
    if len(set(sizes)) == 1:
        notes.append(f"pipeline parallel {pp}: {L} blocks of {blocks.prefix} split into stages of {sizes[0]}; the "
                     f"last stage (its blocks + final norm, LM head and loss) costed as the bottleneck stage")
        return last
    mid = max(range(1, pp - 1), key=lambda i: sizes[i]) if pp > 2 else pp - 1
    last_f, mid_f = sizes[-1] + head, sizes[mid]
    pick = last if last_f >= mid_f or mid == pp - 1 else (sum(sizes[:mid]), sum(sizes[:mid + 1]), False, sizes, mid,
                                                          head)
    which = ("the last stage (its blocks + final norm, LM head and loss)" if pick[2]
             else f"stage {mid + 1} of {pp} ({sizes[mid]} blocks, more FLOPs than the last stage's {sizes[-1]} "
                  f"blocks + LM head and loss)")
    notes.append(f"pipeline parallel {pp}: {L} blocks of {blocks.prefix} do not divide into {pp} equal stages: "
                 f"{'/'.join(str(n) for n in sizes)} blocks per stage (the first and last stages, which also run "
                 f"the embedding and the LM head, take the shortfall, as Llama 3 405B's 126 layers on 16 stages); "
                 f"{which} costed as the bottleneck stage")
    return pick


def _per_gpu_extra(graph: CostGraph, layout: Layout, blocks: Blocks | None, hidden: int,
                   stage: tuple | None = None) -> dict[str, Any]:
    """What the per-GPU graph carries for memory, communication and the report."""
    extra = dict(graph.extra or {})
    # per recompute mode and activation width, so that a re-estimate of this per-GPU graph under another plan
    # (a lint rule turning recompute off, or half precision on) reads its own figure (wattlint.memory)
    extra["activation_split"] = {mode: activation_split(graph, layout, blocks, hidden, recompute=mode)
                                 for mode in RECOMPUTES}
    # what wattlint.memory needs of the whole replica, which the per-GPU graph's records no longer show
    extra["replica_attention_scores"] = {stack: attention_score_bytes(graph, megatron=stack == "megatron")
                                         for stack in ("pytorch", "megatron")}
    extra["replica_forward_bytes"] = sum(r.bytes_written for r in graph.records if r.phase is Phase.FORWARD
                                         and not r.recompute and r.kind not in (OpKind.VIEW, OpKind.COMMUNICATION))
    extra["parallel_full_params"] = graph.params
    extra["parallel_full_model"] = graph.model  # the whole model, for the report (the graph's is one GPU's share)
    extra["parallel_layout"] = {"tp": layout.tp, "pp": layout.pp, "sequence_parallel": layout.sequence_parallel,
                                "vpp": layout.vpp, "cp": layout.cp}
    if stage is not None:
        extra["pipeline_stages"] = {"blocks": list(stage[3]), "costed": stage[4], "prefix": blocks.prefix,
                                    "head_blocks": stage[5],
                                    "params": stage_params(graph, blocks, stage[3], _pre_block_modules(graph, blocks))}
    if blocks is not None:  # the blocks' list, for stage_blocks_of / count_layers on the per-GPU graph (one block too)
        extra["parallel_blocks"] = blocks.prefix
    extra["parallel_hidden"] = hidden
    extra["attention_flops_per_token"] = attention_forward_flops_per_token(graph)
    extra["model_flops_basis"] = model_flops_basis(graph)  # of the whole replica (the per-GPU graph holds a share)
    return extra


def _check_one_transformer_stack(graph: CostGraph, blocks: Blocks | None, layout: Layout) -> None:
    """Model parallelism is costed for ONE stack of alike transformer layers (Megatron's split): refused for a
    model with several stacks (an encoder-decoder, a two-tower CLIP: pipeline stages dropped the encoder's work,
    activations counted one stack), for convolutional blocks without attention (a ConvNeXt's stages: weights halved
    under 'tensor parallel' with a vocabulary split of its 5 logits), for tensor and context parallelism of other
    blocks without attention (RWKV, Mamba: context parallel was priced as ring attention and tensor parallel as split
    attention heads, neither of which they have; Mamba was refused as a CNN for its short 1-D conv; pipeline stages,
    which split any stack of blocks, are kept) and for blocks of unequal work (Swin's hierarchical stages, priced as
    equal blocks). Review findings of 2026-12-06 and 2026-12 (attention-free stacks)."""
    opt = ("--tensor-parallel", layout.tp) if layout.tp > 1 else ("--pipeline-parallel", layout.pp) if layout.pp > 1 \
        else ("--context-parallel", layout.cp)
    what = f"{opt[0]} {opt[1]}"
    families = block_families(graph.records)
    # a 1-layer encoder-decoder has one numbered block in each of its stacks (no family of two: blocks is None)
    stacks = sorted(p for p, idx in families.items() if len(idx) >= 2 or blocks is None)
    if len(stacks) > 1:
        raise ConfigError(f"{what}: the model has {len(stacks)} stacks of layers ({', '.join(stacks)}): model "
                          "parallelism is costed for one stack of transformer layers (decoder-only or encoder-only "
                          "models); estimate this one data-parallel (--gpus N)")
    if blocks is None:
        return  # each option's own refusal says what is missing
    types = dict(graph.modules)
    if blocks.count == 1 and types:
        # ALBERT's one layer run L times (weights shared across depth): one block, L layers of work and collectives
        calls: dict[str, int] = {}
        for r in graph.records:
            if (r.phase is Phase.FORWARD and r.kind is OpKind.MATMUL and not r.recompute
                    and is_linear_type(types.get(r.module)) and blocks.index(r.module) is not None):
                calls[r.module] = calls.get(r.module, 0) + 1
        runs = max(calls.values(), default=1)
        if runs > 1:
            raise ConfigError(f"{what}: the one block of {blocks.prefix} runs {runs} times per forward (its weights "
                              "shared across depth, as ALBERT's): model parallelism is costed for a stack of distinct "
                              "transformer layers; estimate this one data-parallel (--gpus N)")
    flops: dict[int, float] = {}
    conv = spatial = False
    attention = blocks_hold_attention(graph, blocks)  # an MoE router's softmax is none (a Mamba + MoE stack)
    lists: set[str] = set()  # numbered lists inside a block whose items hold attention ('<block>.blocks')
    for r in graph.records:
        b = blocks.index(r.module) if r.module else None
        if b is None or r.phase is not Phase.FORWARD:
            continue
        flops[b] = flops.get(b, 0.0) + r.flops
        if r.kind is OpKind.CONV:
            conv = True
            # a 2-D / 3-D kernel (weight [out, in, kh, kw, ...]): an image CNN's stages; a 1-D one is a sequence
            # model's short causal convolution (Mamba's conv1d) as well as an audio CNN's: not named a CNN
            spatial = spatial or len(r.shapes) < 2 or len(r.shapes[1]) >= 4
        if r.kind in (OpKind.ATTENTION, OpKind.SOFTMAX):
            num, _, rest = r.module[len(blocks.prefix) + 1:].partition(".")
            m = _BLOCK_RE.match(rest)
            if m:
                lists.add(f"{blocks.prefix}.{num}.{m.group(1)}")
    # attention inside a numbered list of alike items inside a block: the blocks are stages of layers (Swin's
    # 'encoder.layers.0.blocks.1.attention', SwinLayer items); a list of a layer's unlike sublayers (T5's
    # 'block.0.layer.0.SelfAttention' beside 'layer.1', its feed-forward) is one layer; MoE experts hold no attention
    item = re.compile(r"^(.*)\.(\d+)$")
    nested = any(len({t for n, t in types.items() if (mm := item.match(n)) and mm.group(1) == lst}) == 1
                 for lst in lists) if types else bool(lists)  # no module types (an ONNX graph): any such list
    if nested:
        raise ConfigError(f"{what}: the blocks of {blocks.prefix} are stages holding their own numbered layers "
                          "(a hierarchical model): model parallelism is costed for one stack of alike transformer "
                          "layers; estimate this one data-parallel (--gpus N)")
    if conv and spatial and not attention:
        raise ConfigError(f"{what}: the repeated blocks of {blocks.prefix} are convolutional, without attention (a "
                          "CNN's stages): model parallelism is costed for transformer layers; estimate this one "
                          "data-parallel (--gpus N)")
    if not attention and (layout.tp > 1 or layout.cp > 1):
        # pipeline stages split any stack of blocks (stage blocks, boundary sends of s x b x h, 1F1B): kept
        flag = f"--tensor-parallel {layout.tp}" if layout.tp > 1 else f"--context-parallel {layout.cp}"
        why = ("tensor parallelism is costed as Megatron's split of transformer layers (attention heads, column- and "
               "row-parallel projections)" if layout.tp > 1 else
               "context parallelism is costed as ring attention over the sequence's keys and values")
        kind = types.get(f"{blocks.prefix}.{blocks.indices[0]}") if blocks.indices else None
        raise ConfigError(f"{flag}: the repeated blocks of {blocks.prefix}{f' ({kind})' if kind else ''} hold no "
                          "attention layers (no attention or softmax traced in them: an attention-free stack, such as "
                          f"RWKV's or Mamba's recurrent / state-space layers): {why}; estimate this one with "
                          "--pipeline-parallel or data-parallel (--gpus N)")
    work = [f for f in flops.values() if f > 0]
    if work and max(work) > 2 * min(work):
        raise ConfigError(f"{what}: the blocks of {blocks.prefix} differ in work up to {max(work) / min(work):.1f}x "
                          "(hierarchical stages, not a stack of alike transformer layers): model parallelism is "
                          "costed for equal layers; estimate this one data-parallel (--gpus N)")


def shard_graph(graph: CostGraph, layout: Layout) -> tuple[CostGraph, list[str]]:
    """The step of one GPU of the bottleneck pipeline stage under ``layout``, from the traced full-model step.

    * Pipeline parallel: the blocks are split into ``pp`` stages (:func:`stage_blocks`: equal when they divide,
      else the first and last stages take the shortfall); the last stage, which also runs the final norm, the LM
      head and the loss, is kept as the bottleneck stage unless a middle stage has more FLOPs (the first stage's
      embedding lookup is assumed no slower than that).
    * Tensor parallel (transformer blocks only): matmuls shard their largest weight dimension (column-parallel
      QKV / up projections, row-parallel output / down projections, vocab-parallel LM head), attention shards its
      heads, the element-wise work inside attention and MLP is split; norms, dropout and residual adds on the
      residual stream are replicated, or split with sequence parallelism; the embedding lookup is replicated.
    * Weights, gradients and optimizer state: the costed stage's parameters (:func:`_stage_param_share`: its blocks,
      + the LM head's weights on the last stage; its blocks' share of all blocks when the per-block count is not
      known) / tp; optimizer kernels scaled by the same share.
    * Activations (:func:`activation_split`, per recompute mode and width): Korthikanti et al. 2022 per
      layer; under 1F1B stage i holds p - i micro-batches of its layers (:func:`inflight_layers`: L layers of one
      micro-batch with equal stages).
    """
    if (layout.tp == 1 and layout.pp == 1 and layout.cp == 1) or (graph.extra or {}).get("parallel_layout"):
        return graph, []
    notes: list[str] = []
    tp, pp, cp = layout.tp, layout.pp, layout.cp
    blocks = model_blocks(graph)
    _check_one_transformer_stack(graph, blocks, layout)
    tokens = tokens_per_micro_batch(graph)
    hidden = hidden_size(graph, blocks)
    cp_info = None
    if cp > 1:
        s = int(graph.seq_len or 0)
        if not s:
            raise ConfigError(f"--context-parallel {cp}: the model has no sequence to split (language models, with "
                              f"--seq-len)")
        if s % (2 * cp):
            raise ConfigError(f"--context-parallel {cp}: sequence length {s} does not divide into {2 * cp} chunks "
                              f"(Megatron-Core splits each sequence into 2 x cp chunks to balance the causal mask)")
        kv, kv_how = kv_bytes_per_layer(graph, blocks, hidden)
        cp_info = {"kv_bytes_per_layer": kv, "kv_source": kv_how}
        notes.append(f"context parallel {cp}: each sequence of {s:,} tokens split into {2 * cp} chunks, 2 per GPU "
                     f"(causal load balance), every token-proportional op / {cp}, attention over its {s // cp:,} "
                     f"queries against all {s:,} keys (Megatron-Core ring attention); weights, gradients and optimizer "
                     f"state not divided")
    if layout.sequence_parallel and tp > 1:
        s = int(graph.seq_len or sequence_length(graph) or 0)
        if s and (s // cp) % tp:
            local = f"sequence length {s}" + (f" / context-parallel {cp} = {s // cp}" if cp > 1 else "")
            raise ConfigError(f"--sequence-parallel with --tensor-parallel {tp}: {local} does not divide over the {tp} "
                              f"tensor-parallel ranks (Megatron-LM splits each sequence's tokens evenly over them: "
                              f"sequence length % tp must be 0)")
    types = graph.module_types()
    pre = _pre_block_modules(graph, blocks) if pp > 1 else set()
    stage = _pipeline_stage(graph, blocks, pp, pre, notes, layout.vpp) if pp > 1 else None
    if tp > 1 and blocks is None:
        raise ConfigError(f"--tensor-parallel {tp}: no repeated transformer blocks recognised in the model; tensor "
                          f"parallelism is costed as the Megatron-LM split of transformer layers only")
    if cp > 1 and blocks is None:  # the ring is priced per layer: without layers it was priced as 0 (review 2026-12)
        raise ConfigError(f"--context-parallel {cp}: no repeated transformer blocks recognised in the model (a "
                          f"ModuleList of layers: 'layers.0', 'layers.1', ...); context parallelism is costed as ring "
                          f"attention over each transformer layer's keys and values only")
    if tp > 1:
        check_tensor_parallel(graph, tp)
    splits = weight_split(graph) if tp > 1 else {}
    if tp > 1:
        _check_split_features(splits, blocks, tp, hidden)
    # weights, gradients and optimizer state of the costed stage: its share of the blocks (1 / pp with equal stages)
    pp_share, stage_params = _stage_param_share(graph, blocks, stage, pre) if stage is not None else (1.0, None)
    share = pp_share / tp
    kv_mods, kv_div, kv_extra = _kv_replication(graph, splits, blocks, tp, hidden, stage)
    if kv_extra and graph.params:
        share += kv_extra / graph.params
        notes.append(f"tensor parallel {tp} over {kv_div} key/value heads: each rank holds whole key/value heads, "
                     f"the {len(kv_mods)} key/value projections split {kv_div} ways (replicated on {tp // kv_div} "
                     f"ranks each): +{kv_extra:,.0f} parameters per GPU over an even / {tp}")
    position = {idx: k for k, idx in enumerate(blocks.indices)} if stage is not None else {}
    out: list[OpRecord] = []
    for r in graph.records:
        if r.phase is Phase.OPTIMIZER:
            out.append(_scaled(r, share, _scaled_numel(r, share)) if share < 1 else r)
            continue
        if stage is not None:
            b = blocks.index(r.module)
            if b is not None:
                if not stage[0] <= position.get(b, -1) < stage[1]:
                    continue
            elif r.module in pre or not stage[2]:
                continue
        if cp > 1 and r.kind is not OpKind.VIEW:
            r = _context_split(r, cp, tokens)
        if tp > 1 and r.kind is not OpKind.VIEW:
            if r.kind in GEMM_KINDS:
                r = _shard_gemm(r, kv_div if r.module in kv_mods else tp, tokens // cp, splits.get(r.module))
            elif not _replicated(r, types, blocks, hidden, tokens // cp) or layout.sequence_parallel:
                r = _scaled(r, 1.0 / tp)
        out.append(r)
    if tp > 1:
        notes.append(f"tensor parallel {tp}: matmuls split (output features of column-parallel layers, input "
                     f"features of row-parallel ones: attention output and MLP down projections), attention heads "
                     f"/ {tp}, element-wise work inside attention and MLP / {tp}; norms, dropout and residual adds "
                     + ("split too (sequence parallel)" if layout.sequence_parallel
                        else "replicated on every TP rank"))
    info = graph.model
    params = max(1, int(round(graph.params * share)))
    model = dataclasses.replace(info, params=params,
                                param_bytes=int(round((info.param_bytes or graph.params * 4) * share)),
                                trainable_params=max(0, int(round(graph.trainable_params * share))))
    kv_txt = f" + {kv_extra:,.0f} of replicated key/value heads" if kv_extra else ""
    if stage_params is not None:
        notes.append(f"weights, gradients and optimizer state per GPU: the costed stage's {stage_params} / tp {tp}"
                     f"{kv_txt} = {params:,} parameters (of {graph.params:,})")
    elif stage is not None and len(set(stage[3])) > 1:
        notes.append(f"weights, gradients and optimizer state per GPU: {graph.params:,} parameters x "
                     f"{stage[3][stage[4]]}/{blocks.count} (the costed stage's blocks) / tp {tp}{kv_txt} = {params:,}")
    else:
        notes.append(f"weights, gradients and optimizer state per GPU: {graph.params:,} parameters / (tp {tp} x pp "
                     f"{pp}){kv_txt} = {params:,} (balanced stages)")
    extra = _per_gpu_extra(graph, layout, blocks, hidden, stage)
    if cp_info is not None:
        # the layers whose attention runs the ring on this GPU's stage: every block of a transformer, the attention
        # layers of a hybrid (Jamba)
        cp_info["attention_layers"] = len(attention_layers(graph, blocks, out))
        extra["context_parallel"] = cp_info
    sharded = dataclasses.replace(graph, model=model, records=tuple(out), extra=extra,
                                  assumptions=tuple(graph.assumptions) + tuple(notes))
    return sharded, notes


def per_gpu_graph(graph: CostGraph, plan) -> CostGraph:
    """``graph`` as one GPU of ``plan``'s layout runs it: first as ``plan.training_stack`` runs the step
    (:func:`wattlint.stack.apply`), then :func:`shard_graph` (unchanged without TP / PP, and when it already is a
    per-GPU graph), then, under ``--precision fp8``, with Transformer Engine's FP8 GEMMs and casts
    (:func:`wattlint.fp8.apply`, on the per-GPU shapes)."""
    from . import fp8
    from .stack import apply

    graph = apply(graph, plan)
    layout = Layout(gpus=plan.gpus, tp=plan.tensor_parallel, pp=plan.pipeline_parallel, ep=plan.expert_parallel,
                    sequence_parallel=plan.sequence_parallel, micro_batch=plan.micro_batch_size,
                    grad_accum=plan.grad_accum, vpp=plan.virtual_pipeline_stages, cp=plan.context_parallel)
    return fp8.apply(expert_parallel_graph(shard_graph(graph, layout)[0], layout.ep), plan)


def _experts_of(module: str, layers: Mapping[str, int]) -> int | None:
    """The routed experts of the MoE layer that holds ``module`` (its experts module or one inside it), or None."""
    for name, n in layers.items():
        if name and (module == name or module.startswith(name + ".")):
            return n
    return None


def expert_parallel_graph(graph: CostGraph, ep: int) -> CostGraph:
    """``graph`` with each routed MoE layer's grouped GEMMs (``torch._grouped_mm``) as one of ``ep`` expert-parallel
    ranks runs them: experts / ep groups, each with ep x the rows. Balanced routing: a rank receives every rank's
    tokens for its experts (ep x tokens x top-k x 1/ep = its own token count x top-k), so the jagged dim's total
    (rows, or the weight gradient's reduction) and the FLOPs per GPU are unchanged; the group count ``b`` / ep, the
    per-group jagged dim x ep (the balanced share ceil(total / groups) of the new groups), the experts' weight operand
    bytes and a weight-gradient output / ep (energy.pricing.grouped_operands); the tokens' bytes are unchanged. A
    grouped GEMM whose groups ep does not divide, a 3-D x 3-D call (no jagged dim: which operand is the weights is
    not known), and the experts of a layer traced as a per-expert loop or batched are left as traced, and the note says
    so. Applied once (``extra["expert_parallel_records"]``): a lint rule's variant of the per-GPU graph keeps it."""
    from .energy.pricing import grouped_operands

    ep = max(1, int(ep or 1))
    extra = dict(graph.extra or {})
    if ep <= 1 or extra.get("expert_parallel_records"):
        return graph
    layers = {str(ly.get("module") or ""): int(ly.get("experts") or 0) for ly in moe_layers(graph)}
    if not layers:
        return graph
    out: list[OpRecord] = []
    done = 0
    left: set[str] = set()
    groups: set[tuple[int, int]] = set()
    for r in graph.records:
        if (r.kind is OpKind.MATMUL and "_grouped_mm" in r.op and r.phase in (Phase.FORWARD, Phase.BACKWARD)
                and _experts_of(r.module, layers) is not None):
            role = grouped_operands(r)
            g = max(1, r.dim("b", 1) or 1)
            if role is None or g % ep:
                left.add(f"{r.module} ({g} groups)" if role else f"{r.module} (3-D x 3-D)")
                out.append(r)
                continue
            jag, w_read, w_out = role
            dims = {d: r.dim(d, 0) for d in "mnk"}
            other = math.prod(v for d, v in dims.items() if d != jag)
            total = int(round(r.flops / (2 * other))) if other > 0 else dims[jag] * g
            g2 = g // ep
            new = {"b": g2, jag: -(-total // g2)}
            out.append(dataclasses.replace(
                r, dims=tuple((d, new.get(d, v)) for d, v in r.dims),
                bytes_read=int(round(r.bytes_read * (1.0 - w_read * (1.0 - 1.0 / ep)))),
                bytes_written=int(round(r.bytes_written * (1.0 - w_out * (1.0 - 1.0 / ep))))))
            groups.add((g, g2))
            done += 1
            continue
        out.append(r)
    notes: list[str] = []
    if done:
        per = ", ".join(f"{g2:,} of {g:,}" for g, g2 in sorted(groups))
        notes.append(f"expert parallel {ep}: {done:,} grouped expert GEMMs (torch._grouped_mm) priced as one GPU runs "
                     f"them: {per} groups (experts) per GEMM, each with {ep} x the rows (balanced routing: the GPU receives every "
                     f"rank's tokens for its experts; rows and FLOPs per GPU unchanged), the experts' weight bytes "
                     f"(and weight-gradient outputs) / {ep}")
    if left:
        notes.append(f"expert parallel {ep}: grouped expert GEMMs left as traced (all experts' groups on this GPU): "
                     + "; ".join(sorted(left)) + f" ({ep} does not divide the groups, or no jagged dim)")
    loops = [name for ly in moe_layers(graph) if (name := str(ly.get("module") or ""))
             and str(ly.get("implementation") or "grouped") != "grouped"]
    if loops and any(_experts_of(r.module, {n: 0 for n in loops}) is not None and r.kind is OpKind.MATMUL
                     and r.phase in (Phase.FORWARD, Phase.BACKWARD) for r in graph.records):
        notes.append(f"expert parallel {ep}: the experts' GEMMs of {len(loops)} MoE layer(s) traced as a per-expert "
                     f"loop or batched matmuls (not torch._grouped_mm) are priced as traced (every expert's GEMMs on "
                     f"this GPU)")
    if not notes:
        return graph
    extra["expert_parallel_records"] = ep
    return dataclasses.replace(graph, records=tuple(out), extra=extra,
                               assumptions=tuple(graph.assumptions) + tuple(notes))


def layer_activation_bytes(graph: CostGraph, layout: Layout, hidden: int, *, recompute: str | bool = "none",
                           blocks: Blocks | None = None) -> tuple[float, str]:
    """Korthikanti et al. 2022's activation bytes of one transformer layer and micro-batch on one GPU of ``layout``,
    and how: b sequences of s tokens (s / cp with context parallelism), h hidden, a heads, t = tp, 16-bit
    activations: sbh(10 + 24/t) + 5as^2b/t without sequence parallelism, sbh(34/t) + 5as^2b/t with it; the 5as^2b/t
    term (stored attention scores) is absent with fused (flash / memory-efficient) attention, under selective
    recompute (the attention core is re-run in backward) and when the blocks hold no attention (RWKV, Mamba:
    :func:`blocks_hold_attention`); full recompute keeps only the layer's input, 2sbh (/t with sequence
    parallelism). Only ratios of it are used (:func:`activation_split`), so the activations' width, which scales both
    sides alike, is left out."""
    mode = recompute_mode(recompute)
    t = max(1, layout.tp)
    s_full = max(1, sequence_length(graph))
    s = s_full / max(1, layout.cp)
    b = max(1, int(graph.micro_batch or 1))
    sp = layout.sequence_parallel and t > 1
    fused = any(r.kind is OpKind.ATTENTION and r.dim("h", 0) for r in graph.records)
    if mode == "full":
        per_layer = 2.0 * s * b * hidden / (t if sp else 1)
        how = "full recompute: the layer's input 2sbh" + (" / t" if sp else "")
    else:
        per_layer = s * b * hidden * ((34.0 / t) if sp else (10.0 + 24.0 / t))
        how = "sbh(34/t)" if sp else "sbh(10 + 24/t)"
        if mode == "selective":
            how += " (selective recompute: no 5as^2b/t attention-score term)"
        elif not fused and not blocks_hold_attention(graph, find_blocks(graph) if blocks is None else blocks):
            how += " (no attention in the blocks: no attention-score term)"
        elif not fused:
            per_layer += 5.0 * _eager_heads(graph, hidden) * s * s_full * b / t
            how += " + 5as^2b/t (attention scores stored: no fused attention traced)"
    return per_layer, how


def activation_split(graph: CostGraph, layout: Layout, blocks: Blocks | None, hidden: int, *,
                     recompute: str | bool = "none") -> dict[str, Any]:
    """How one GPU's activations under ``layout`` follow from one whole replica's (the traced saved-for-backward
    bytes of the micro-batch, :func:`wattlint.memory.activation_bytes`), so that one GPU and a split agree on the
    same model: the replica's bytes less its loss's saved log-probabilities are its layers' activations, which
    follow Korthikanti et al. 2022's split (:func:`layer_activation_bytes` under ``layout`` over the same without
    it, per recompute mode; the ratio does not depend on the activations' width); the loss's log-probabilities are split over tp (vocabulary-parallel loss) and
    cp (each rank's tokens) and kept on the last stage only.

    Under 1F1B stage i of p keeps min(m, p - i) micro-batches of its layers (:func:`inflight_layers`; x the
    interleaved schedule's penalty on the first stage); the first stage (no loss) and the last (one micro-batch of
    its layers, + the loss) are both computed and the fuller one counts. Returns ``first`` and ``last`` (shares of
    the replica's layer activations those stages keep), ``loss`` (share of the loss's log-probabilities), ``pp`` and
    ``how``. Models without repeated blocks: :func:`activation_factor` / cp of everything."""
    cp = max(1, layout.cp)
    t = max(1, layout.tp)
    if blocks is None or not hidden or not sequence_length(graph):
        f = activation_factor(layout) / cp
        return {"first": f, "last": f, "loss": f, "pp": 1,
                "how": f"x {f:.3f} (no transformer blocks recognised: Korthikanti et al. 2022 tensor-parallel share"
                       + (f", / {cp} context parallel" if cp > 1 else "") + ")"}
    per_gpu, how = layer_activation_bytes(graph, layout, hidden, recompute=recompute, blocks=blocks)
    whole, how1 = layer_activation_bytes(graph, Layout(gpus=1), hidden, recompute=recompute, blocks=blocks)
    pp = max(1, layout.pp)
    n = blocks.count
    penalty = interleave_penalty(pp, layout.vpp)
    sizes = stage_blocks(n, pp) if pp > 1 else (n,)
    m = max(1, int(layout.grad_accum))
    # layers' worth of one micro-batch each stage keeps (min(m, p - i) micro-batches of its blocks; the interleaved
    # penalty on the first stage)
    worth = [k * min(m, pp - i) * (penalty if i == 0 else 1.0) for i, k in enumerate(sizes)]
    last_layers = sizes[-1]
    ratio = per_gpu / whole
    inter = (f" x {penalty:.3f} (interleaved 1F1B, {layout.vpp} chunks per stage: 1 + (p-1)/(p v), Megatron-LM's "
             f"interleaved_schedule_memory_penalty)" if penalty > 1 else "")
    full = max(range(pp - 1), key=lambda i: worth[i]) if pp > 1 else 0  # the fullest stage without the loss
    name = "the first stage" if full == 0 else f"stage {full + 1} of {pp}"
    stages = (f"; under 1F1B stage i of {pp} holds min(m, p - i) micro-batches of its layers: of the stages without "
              f"the loss {name} the fullest, {sizes[full] * min(m, pp - full)} layers' worth"
              f"{inter if full == 0 else ''}, the last {last_layers} layers + the loss" if pp > 1 else "")
    return {"first": ratio * worth[full] / n, "last": ratio * last_layers / n, "loss": 1.0 / (t * cp),
            "pp": pp, "stages": [ratio * w / n for w in worth], "fullest": full,
            "how": (f"the replica's layers x {ratio:.3f} (Korthikanti et al. 2022: {how} per layer with s="
                    f"{sequence_length(graph) / cp:,.0f}" + (f" of {sequence_length(graph):,} (context parallel)"
                                                           if cp > 1 else "")
                    + f", h={hidden}, t={t}, over {how1} on one GPU, applied to the traced layers){stages}")}


def blocks_hold_attention(graph: CostGraph, blocks: Blocks | None) -> bool:
    """Whether attention runs inside the repeated blocks (:func:`attention_layers`); False for an attention-free
    stack (RWKV's time mixing, Mamba's selective scan, with or without MoE layers, whose routers' softmax is no
    attention) and without blocks."""
    return bool(attention_layers(graph, blocks))


def attention_layers(graph: CostGraph, blocks: Blocks | None,
                     records: Sequence[OpRecord] | None = None) -> tuple[int, ...]:
    """The blocks (their indices) whose forward runs attention, in ``records`` (default the graph's; a per-GPU
    stage's): a fused attention kernel, or a softmax, unless it is an MoE router's (a softmax inside the module
    that holds a traced experts module, outside an eager attention core, :func:`attention_core`). Every block of a
    transformer; only the attention layers of a hybrid (Jamba: 1 block in 8 holds attention, the others Mamba),
    whose ring attention (context parallelism) and stored attention scores are those layers' only. Review 2026-12:
    every block counted, and a Mamba + MoE stack without attention counted as attention for its routers' softmax."""
    if blocks is None:
        return ()
    records = graph.records if records is None else records
    routers = tuple(m.rsplit(".", 1)[0] + "." for ly in moe_layers(graph) if "." in (m := str(ly.get("module") or "")))
    core = attention_core(records) if routers else frozenset()
    found = {blocks.index(r.module) for i, r in enumerate(records)
             if r.phase is Phase.FORWARD and not r.recompute and r.module
             and (r.kind is OpKind.ATTENTION
                  or (r.kind is OpKind.SOFTMAX and (i in core or not (r.module + ".").startswith(routers))))}
    return tuple(sorted(i for i in found if i is not None))


def attention_score_bytes(graph: CostGraph, *, megatron: bool = False) -> tuple[int, str]:
    """The attention-score activations an eager-attention transformer keeps for backward, which selective recompute
    does not keep (Korthikanti et al. 2022): (bytes, what), read off the trace. In each attention core
    (:func:`attention_core`), from its softmax up to the batched matmul over V: the softmax output (saved by the
    softmax's backward), and the casts and dropout between them (their outputs are the matmul's saved input; dropout
    also keeps its mask). Korthikanti's 5as^2b per layer is that with 16-bit scores and attention dropout (softmax
    output 2, dropout mask 1, dropout output 2 bytes per score); a model without attention dropout (Llama, Mixtral:
    torch's dropout at p = 0 returns its input) keeps the softmax output only, and autocast's fp32 softmax keeps 4
    bytes per score plus its half-precision cast. ``megatron``: the training stack keeps the softmax output in half
    precision and no cast of it (wattlint.memory's megatron rule, which this must match). 0 with fused attention
    (no scores stored) or without repeated blocks. Only the blocks that run attention count
    (:func:`attention_layers`: a hybrid's Mamba layers store none); a one-layer model is one block
    (:func:`model_blocks`). Review 2026-12-07: the 5as^2b formula was subtracted whatever the trace kept (2as^2b for
    a dropout-free bf16 Llama under megatron): selective recompute zeroed the activations of eager Llama plans."""
    blocks = model_blocks(graph)
    s = int(graph.seq_len or 0)
    if blocks is None or not s:
        return 0, "no transformer blocks recognised"
    if any(r.kind is OpKind.ATTENTION for r in graph.records):
        return 0, "fused attention stores no attention scores"
    if not blocks_hold_attention(graph, blocks):
        return 0, f"the blocks of {blocks.prefix} hold no attention"
    n = len(attention_layers(graph, blocks))
    of = f" (of {blocks.count} blocks: the others hold no attention)" if n < blocks.count else ""
    records = graph.records
    after: dict[str, list[OpRecord]] = {}  # module -> its softmax and the records after it, up to the matmul over V
    total = scores = cores = 0
    kinds: list[str] = []

    def is_cast(r: OpRecord) -> bool:
        return "_to_copy" in r.op or r.op.endswith((".to", "to.dtype"))

    def close(chain: list[OpRecord]) -> int:
        """Saved bytes of one core from its softmax on: the softmax output, the tensor the matmul over V reads (the
        last record's output: a cast, or dropout's output with its mask) and the mask of any dropout before it.
        Megatron keeps the scores in half precision and casts none of them: its casts drop out of the chain (T5
        casts after its dropout, so the dropout output is what V reads) and every score tensor is 2 bytes."""
        nonlocal cores
        cores += 1
        soft = chain[0]
        elems = soft.bytes_written // max(1, dtype_bytes(soft.dtype))
        rest = [r for r in chain[1:] if r.shapes and math.prod(r.shapes[0]) == elems]  # score-shaped (not V's copy)
        if megatron:
            rest = [r for r in rest if not is_cast(r)]
        kept = 2 * elems if megatron else soft.bytes_written
        for j, r in enumerate(rest):
            dropout = "dropout" in r.op
            if j == len(rest) - 1:  # what the matmul over V reads (dropout: its output and its mask)
                kept += (3 if dropout else 2) * elems if megatron else r.bytes_written
            elif dropout:
                kept += elems  # its 1-byte mask
            else:
                continue
            what = "cast" if is_cast(r) else "dropout output and mask" if dropout else r.op
            if what not in kinds:
                kinds.append(what)
        return kept

    for i in sorted(attention_core(records)):
        r = records[i]
        if r.kind is OpKind.SOFTMAX:
            after[r.module] = [r]
            scores += r.bytes_written // max(1, dtype_bytes(r.dtype))
            if "softmax output" not in kinds:
                kinds.insert(0, "softmax output")
        elif r.module in after:
            if _batched_gemm(r):
                total += close(after.pop(r.module))
            elif r.kind is not OpKind.VIEW and r.bytes_written:
                after[r.module].append(r)
    for chain in after.values():  # a core whose matmul over V was not seen: what it kept up to there
        total += close(chain)
    if not scores:  # no softmax found in an eager core: Korthikanti's count, 16-bit scores
        b = max(1, int(graph.micro_batch or 1))
        a = _eager_heads(graph, hidden_size(graph, blocks))
        total = int(round(5.0 * a * s * s * b * n))
        return total, f"{n} layers{of} x 5as^2b with a={a}, s={s}, b={b} (no softmax traced in the attention core)"
    return total, (f"{n} layers{of}, {cores} attention cores: {scores:,} attention scores kept as "
                   f"{' + '.join(kinds)}, "
                   f"{total / scores:.3g} bytes per score" + (" (megatron stack: a half-precision softmax output)"
                                                              if megatron else "")
                   + "; Korthikanti's 5as^2b is 5 bytes per score with attention dropout")


def _batched_gemm(r: OpRecord) -> bool:
    """A batched matmul of attention (QK^T or attention over V): bmm-style, not an MoE grouped GEMM."""
    return (r.kind is OpKind.MATMUL and "grouped" not in r.op and ("bmm" in r.op or r.dim("b", 1) > 1)
            and bool(r.dim("m", 0) and r.dim("n", 0) and r.dim("k", 0)))


def attention_core(records: Sequence[OpRecord]) -> frozenset[int]:
    """Indices of the forward records that make up the attention core, what selective recompute re-runs in
    backward (Korthikanti et al. 2022): fused attention kernels (scaled-dot-product / flash: QK^T, softmax,
    dropout and attention over V in one), and in eager attention the records of one attention module from its
    QK^T batched matmul to the batched matmul over V whose inner dimension is that QK^T's key length (scale,
    mask, softmax and dropout between them)."""
    out: set[int] = set()
    open_at: dict[str, tuple[int, int]] = {}  # module -> (index of its QK^T, key length)
    for i, r in enumerate(records):
        if r.phase is not Phase.FORWARD or r.recompute or not r.module:
            continue
        if r.kind is OpKind.ATTENTION:
            out.add(i)
        elif _batched_gemm(r):
            start = open_at.pop(r.module, None)
            if start is not None and r.dim("k", 0) == start[1]:
                out.update(j for j in range(start[0], i + 1)
                           if records[j].module == r.module and records[j].phase is Phase.FORWARD)
            else:
                open_at[r.module] = (i, r.dim("n", 0))
    return frozenset(out)


def attention_heads(graph: CostGraph) -> tuple[int, int]:
    """(query heads, key / value heads) of the model: the config's counts when the frontend recorded them
    (``extra["attention_heads"]``: Hugging Face models repeat grouped key / value heads before the kernel), else
    the first forward fused attention record's ``h`` and its ``kvh`` dim (grouped-query attention) or its key
    tensor's head dim ([B, heads, S, D]); (0, 0) when the graph has no fused attention record."""
    given = (graph.extra or {}).get("attention_heads")
    if given:
        return int(given[0]), int(given[1])
    for r in graph.records:
        if r.kind is OpKind.ATTENTION and r.phase is Phase.FORWARD and r.dim("h", 0):
            h = int(r.dim("h", 0))
            kv = int(r.dim("kvh", 0))
            if not kv:
                k = r.shapes[1] if len(r.shapes) > 1 else ()
                kv = int(k[-3]) if len(k) == 4 and 0 < int(k[-3]) <= h and h % int(k[-3]) == 0 else h
            return h, kv
    return 0, 0


def check_tensor_parallel(graph: CostGraph, tp: int) -> None:
    """ConfigError unless ``tp`` ranks can split the model as Megatron-LM does: each rank takes whole attention
    heads (Megatron asserts num_attention_heads % tp == 0), and whole key / value groups (num_query_groups % tp ==
    0) unless there are fewer groups than ranks and each is replicated on tp / groups ranks (multi-query or
    grouped-query attention with few groups: the stacks that train it replicate them)."""
    heads, kv = attention_heads(graph)
    if heads and heads % tp:
        raise ConfigError(f"--tensor-parallel {tp} does not divide the model's {heads} attention heads: each "
                          f"tensor-parallel rank takes whole heads (Megatron-LM); use a divisor of {heads}")
    if kv and (kv % tp if kv >= tp else tp % kv):
        raise ConfigError(f"--tensor-parallel {tp} does not divide the model's {kv} key/value heads (grouped-query "
                          f"attention) and is not a multiple of them (replicated groups): each tensor-parallel rank "
                          f"takes whole key/value groups; use a divisor or a multiple of {kv}")


def _kv_replication(graph: CostGraph, splits: Mapping[str, tuple[int, bool]], blocks: Blocks | None, tp: int,
                    hidden: int, stage) -> tuple[set[str], int, float]:
    """Tensor parallelism over more ranks than key / value heads (grouped-query attention, tp a multiple of the
    groups: check_tensor_parallel): each rank holds whole key / value heads, so the key / value projections (the
    column-parallel modules of the blocks whose output features are kv heads x head dim, narrower than the hidden
    size) split kv ways, not tp. Returns (those modules, kv, the parameters a GPU of the costed stage holds beyond an
    even / tp of them); (empty, tp, 0) otherwise."""
    heads, kv = attention_heads(graph)
    if not (tp > 1 and heads and kv and kv < heads and tp > kv and hidden and hidden % heads == 0):
        return set(), tp, 0.0
    width = kv * (hidden // heads)
    mods = {m for m, (features, row) in splits.items()
            if not row and features == width and blocks is not None and blocks.index(m) is not None}
    if not mods:
        return set(), tp, 0.0
    weights: dict[str, int] = {}
    for r in graph.records:
        if r.phase is Phase.FORWARD and r.kind is OpKind.MATMUL and r.module in mods and r.module not in weights:
            weights[r.module] = r.dim("n", 0) * r.dim("k", 0)
    held = sum(weights.values())
    if stage is not None:  # the costed stage's blocks only
        held *= stage[3][stage[4]] / max(1, blocks.count)
    return mods, kv, held * (1.0 / kv - 1.0 / tp)


def _check_split_features(splits: Mapping[str, tuple[int, bool]], blocks: Blocks | None, tp: int,
                          hidden: int) -> None:
    """ConfigError when a transformer block's split weight dimension wider than the hidden size (an MLP's
    intermediate size, a fused QKV's output features) is not a multiple of ``tp``: Megatron-LM divides it exactly
    over the ranks (its ``divide`` asserts it). Narrower ones are left to the head checks (grouped key / value
    projections, which replicated groups need not divide); the vocabulary is not checked (Megatron pads it to a
    multiple of 128 x tp)."""
    for module, (features, row) in splits.items():
        if blocks is not None and blocks.index(module) is not None and features > hidden and features % tp:
            what = "input" if row else "output"
            raise ConfigError(f"--tensor-parallel {tp} does not divide the {features:,} {what} features of {module} "
                              f"(the model's intermediate or projection size): Megatron-LM splits them exactly over "
                              f"the tensor-parallel ranks; use a divisor of {features:,}")


def _eager_heads(graph: CostGraph, hidden: int) -> int:
    """Attention heads of an eager-attention graph: the batch of its first forward batched GEMM over micro-batch."""
    b = max(1, int(graph.micro_batch or 1))
    for r in graph.records:
        if r.phase is Phase.FORWARD and r.kind is OpKind.MATMUL and r.dim("b", 1) > b:
            return max(1, r.dim("b", 1) // b)
    return max(1, hidden // 64)


def activation_factor(layout: Layout) -> float:
    """Share of one replica's activations each GPU keeps (Korthikanti et al. 2022, flash attention)."""
    t = layout.tp
    if t <= 1:
        return 1.0
    if layout.sequence_parallel:
        return 1.0 / t
    return (10.0 + 24.0 / t) / 34.0


def _scaled_numel(r: OpRecord, f: float) -> tuple[tuple[str, int], ...]:
    return tuple((k, max(1, int(round(v * f))) if k == "numel" else v) for k, v in r.dims)


def _pre_block_modules(graph: CostGraph, blocks: Blocks | None) -> set[str]:
    """Modules outside the blocks that run before the first block in forward (embeddings: the first stage)."""
    if blocks is None:
        return set()
    pre: set[str] = set()
    after: set[str] = set()
    seen_block = False
    for r in graph.records:
        if r.phase is not Phase.FORWARD:
            continue
        if blocks.index(r.module) is not None:
            seen_block = True
            continue
        (after if seen_block else pre).add(r.module)
    return pre - after - {""}


def count_layers(graph: CostGraph, blocks: Blocks | None = None) -> int:
    b = blocks if blocks is not None else stage_blocks_of(graph)
    return b.count if b is not None else 0


def moe_layers(graph: CostGraph) -> list[dict]:
    moe = (graph.extra or {}).get("moe") or {}
    return list(moe.get("layers") or [])


def dispatched_rows_per_assignment(layer: dict, capacity_factor: float | None = None,
                                   seq_len: int | None = None) -> float:
    """Rows an MoE layer's all-to-all carries per token-to-expert assignment: the rows its experts compute, since an
    expert receives exactly its buffer. Read off the frontend's summary (wattlint.frontends.torch_moe, where the
    routing rule lives): the rows of all experts (``rows_per_expert``) over the assignments (``tokens`` x top-k) of
    the same traced call. Dropless: 1; a capacity factor c pads or drops every expert's buffer to ceil(c x
    assignments / experts) rows (GShard / DeepSpeed-MoE's [E, C, h] dispatch): ~c; Switch's ``expert_capacity`` caps
    each expert at min(capacity, ceil(c x sequence / experts)) rows per sequence. Both are of the traced
    micro-batch, so the ratio holds for a what-if graph at another micro-batch (wattlint.lint's scale_batch keeps
    them). The 'batched' implementation (no routed forward, no rows recorded) runs every assignment: 1.

    Review 2026-12: this re-derived the frontend's rules from the capacity factor and the sequence length (a second
    home for them; Switch's min was once missing here only, 4x the rows). ``capacity_factor`` and ``seq_len`` are
    no longer read (kept for callers that pass them)."""
    k = max(1, int(layer.get("top_k") or 1))
    tokens = int(layer.get("tokens") or 0)
    rows = sum(int(n) for n in layer.get("rows_per_expert") or ())
    if tokens > 0 and rows > 0:
        return rows / (tokens * k)
    return 1.0


# ---- expert-parallel dispatch: copies per token and overlap ------------------------------------------------------

# Megatron-Core's --moe-token-dispatcher-type values wattlint prices (argument help: 'allgather', 'alltoall', 'flex'):
# 'alltoall' permutes one row per token-to-expert assignment and exchanges them with one NCCL all-to-all, so a token
# routed to two experts of the same rank travels twice; 'flex' (DeepEP / HybridEP) sends a token once per
# destination node over the network and fans it out to the node's GPUs over NVLink, once per destination GPU


@dataclass(frozen=True)
class DispatchCopies:
    """Copies of one token that leave its GPU in one expert-parallel dispatch (the combine returns as many):
    ``nvlink`` over NVLink, ``network`` over the node's network, in expectation over the routing (balanced: top-k of
    the experts uniformly, within the chosen expert groups under group-limited routing); ``nodes`` the nodes the
    expert-parallel group spans, ``groups`` / ``topk_group`` the routing groups the rule used (1 / 1: none)."""

    nvlink: float
    network: float
    nodes: int
    groups: int = 1
    topk_group: int = 1


def _comb_ratio(n: int, m: int, k: int) -> float:
    """C(n - m, k) / C(n, k): the chance that k picks without replacement among n items all miss m given ones."""
    if k > n - m:
        return 0.0
    return math.comb(n - m, k) / math.comb(n, k)


def _hit_probability(size: int, experts: int, top_k: int, groups: int, topk_group: int) -> float:
    """Chance that a token routed to ``top_k`` of ``experts`` experts sends at least one to a given block of ``size``
    consecutive experts (one GPU's or one node's), under group-limited routing: the experts in ``groups`` equal
    consecutive groups (transformers' DeepseekV3TopkRouter: scores viewed as [groups, experts / groups]), the token
    picks ``topk_group`` groups, each equally likely, then top-k uniformly among the S = topk_group x experts /
    groups experts of its groups. The block lies in one group or is a union of whole groups (the callers check), so
    it meets h of the chosen groups with h hypergeometric and holds c x h of the S candidates: P = 1 - sum_h P(h)
    C(S - c h, k) / C(S, k). No group limit: groups = topk_group = 1, P = 1 - C(E - size, k) / C(E, k)."""
    per_group = experts // groups
    cand = topk_group * per_group
    touched = max(1, size // per_group)  # groups the block covers (1: it lies inside one)
    c = min(size, per_group)  # its experts in each of them
    miss = 0.0
    for h in range(0, min(touched, topk_group) + 1):
        p_h = math.comb(touched, h) * math.comb(groups - touched, topk_group - h) / math.comb(groups, topk_group)
        miss += p_h * _comb_ratio(cand, c * h, top_k)
    return 1.0 - miss


def expert_dispatch_copies(layer: Mapping[str, Any], ep: int, tp: int, gpus_per_node: int,
                           dispatcher: str = "alltoall") -> DispatchCopies:
    """Copies of a token that one expert-parallel dispatch sends off its GPU, over NVLink and over the network, for
    an MoE layer of the frontend's summary (``experts``, ``top_k``; ``n_group`` / ``topk_group`` where the model
    limits each token to the experts of topk_group of n_group groups, DeepSeek-V3 / Kimi-K2's node-limited routing)
    with ``ep`` expert-parallel ranks ``tp`` apart (Megatron's rank order), local = gpus_per_node / tp of them in a
    node, N = ep / local nodes, each rank holding experts / ep consecutive experts. Balanced routing (top-k uniform).

    * ``alltoall`` (Megatron-Core's default for expert parallelism, torchtitan's): one row per token-to-expert
      assignment, so top-k x (local - 1) / ep copies over NVLink and top-k x (ep - local) / ep over the network
      (routing groups change nothing: every assignment is sent on its own).
    * ``flex`` (DeepEP, the dispatcher DeepSeek-V3 was trained with): one copy per destination node over the network,
      to the GPU of the same local index, which forwards it over NVLink to each other GPU of its node that holds
      one of the token's experts (and one NVLink copy to each GPU of its own node that does): network = (N - 1) x
      P(a node is hit), NVLink = (ep - N) x P(a GPU is hit) (the ep - N GPUs that are not their node's entry GPU,
      by linearity of expectation). Under group-limited routing the groups bound the nodes: with groups = N (each
      group a node, DeepSeek-V3's 8 groups over EP64 on 8 nodes) at most topk_group nodes, (N - 1) / N x topk_group
      remote ones when every chosen group receives an expert. A node or GPU block that straddles two groups
      (neither a multiple nor a divisor of experts / groups) drops the group limit (the plain rule, more copies)."""
    e = int(layer.get("experts") or 0)
    k = max(1, int(layer.get("top_k") or 1))
    ep = max(1, int(ep))
    per_node = max(1, int(gpus_per_node))
    local = max(1, min(ep, per_node // max(1, int(tp))))
    nodes = max(1, math.ceil(ep / local))
    if ep <= 1:
        return DispatchCopies(0.0, 0.0, 1)
    if dispatcher not in MOE_DISPATCHERS:
        raise ConfigError(f"unknown MoE token dispatcher {dispatcher!r}: one of {', '.join(MOE_DISPATCHERS)}")
    if dispatcher == "alltoall" or e <= 0 or e % ep:
        nv = k * (local - 1) / ep if nodes > 1 else k * (ep - 1) / ep
        return DispatchCopies(nv, k * (ep - local) / ep if nodes > 1 else 0.0, nodes)
    groups = int(layer.get("n_group") or 1)
    chosen = int(layer.get("topk_group") or groups)
    per_rank = e // ep
    per_nd = per_rank * local

    def aligned(size: int) -> bool:
        pg = e // groups
        return size % pg == 0 or pg % size == 0

    if not (1 <= chosen < groups and e % groups == 0 and aligned(per_rank) and aligned(per_nd)
            and chosen * (e // groups) >= k):
        groups = chosen = 1
    p_rank = _hit_probability(per_rank, e, k, groups, chosen)
    p_node = _hit_probability(per_nd, e, k, groups, chosen) if nodes > 1 else 0.0
    if nodes <= 1:  # one node: each GPU holding one of the token's experts gets it once over NVLink
        return DispatchCopies((ep - 1) * p_rank, 0.0, 1, groups, chosen)
    return DispatchCopies((ep - nodes) * p_rank, (nodes - 1) * p_node, nodes, groups, chosen)


def overlapped_all_to_all_s(a2a_s: float, compute_s: float, micro_batches: int) -> float:
    """Exposed expert-parallel all-to-all of one step under Megatron-Core's --overlap-moe-expert-parallel-comm
    (the combined 1F1B schedule: the forward of one micro-batch runs beside the backward of another, each one's
    dispatch and combine hidden behind the other's compute), given one micro-batch's all-to-all ``a2a_s`` and
    forward + backward compute ``compute_s`` and the step's ``micro_batches`` m. The first micro-batch's forward
    and the last one's backward have no partner (together one micro-batch's all-to-all, fully exposed); in the m - 1
    paired slots the all-to-all hides behind the partner's compute: max(0, a2a - compute) each. Step total:
    a2a + (m - 1) x max(0, a2a - compute). m = 1: nothing to pair, all exposed."""
    m = max(1, int(micro_batches))
    return a2a_s + (m - 1) * max(0.0, a2a_s - compute_s)


def routed_expert_params(graph: CostGraph) -> int:
    """Parameters of the routed experts of the whole model (every MoE layer, all its experts; the router and any
    shared experts are not routed experts), from the frontend's MoE summary (0 for dense models)."""
    return sum(int(ly.get("params") or 0) for ly in moe_layers(graph))


def inactive_expert_params(graph: CostGraph) -> float:
    """Routed-expert parameters a token does not use: per MoE layer, its expert parameters x (1 - top-k /
    experts) (the dropless, balanced-routing convention: each token runs top-k of the layer's experts)."""
    total = 0.0
    for ly in moe_layers(graph):
        e, k, n = int(ly.get("experts") or 0), int(ly.get("top_k") or 0), int(ly.get("params") or 0)
        if e > 0 and 0 < k <= e and n:
            total += n * (1.0 - k / e)
    return total


@dataclass(frozen=True)
class ExpertSplit:
    """Parameters one GPU holds under expert parallelism (after the tensor x pipeline split): ``params`` in all,
    of which ``expert`` are routed-expert parameters; ``removed`` expert parameters that other EP ranks hold."""

    params: float
    expert: float
    removed: float
    ep: int

    def sharded_share(self, n: int) -> float:
        """Share of ``params`` left after ZeRO / FSDP sharding over ``n`` data-parallel ranks: the non-expert
        parameters over n, the expert ones over the n / ep ranks that hold the same experts."""
        if self.params <= 0:
            return 1.0 / max(1, n)
        n_exp = max(1, n // max(1, self.ep))
        return ((self.params - self.expert) / max(1, n) + self.expert / n_exp) / self.params


def expert_split(graph: CostGraph, ep: int) -> ExpertSplit:
    """The parameters one GPU keeps when each of ``ep`` expert-parallel ranks holds experts / ep of every MoE
    layer (Megatron / DeepSpeed expert parallelism) on top of the graph's tensor x pipeline split (``graph`` may
    be the per-GPU graph of :func:`shard_graph`: its share of the routed-expert parameters is the same as of all
    parameters, balanced stages). Dense models and ep = 1: nothing removed."""
    extra = graph.extra or {}
    here = float(graph.params)
    full = float(extra.get("parallel_full_params") or graph.params or 0)
    expert = _stage_expert_params(graph)
    if expert is None:  # no pipeline: the GPU's share of the experts is its share of all parameters (the tp split)
        expert = routed_expert_params(graph) * (here / full if full else 1.0)
    ep = max(1, int(ep))
    for ly in moe_layers(graph):
        n_exp = int(ly.get("experts") or 0)
        if ep > 1 and n_exp and n_exp % ep:
            where = ly.get("module") or "a mixture-of-experts layer"
            if n_exp == 1:
                raise ConfigError(f"--expert-parallel {ep}: {where} has a single expert, which cannot be spread over "
                                  f"expert-parallel ranks; leave --expert-parallel out")
            raise ConfigError(f"--expert-parallel {ep} does not divide the {n_exp} experts of {where}: each "
                              f"expert-parallel rank holds whole experts; use a divisor of {n_exp}")
    removed = expert * (1.0 - 1.0 / ep) if ep > 1 else 0.0
    return ExpertSplit(params=here - removed, expert=expert - removed, removed=removed, ep=ep)


def _stage_expert_params(graph: CostGraph) -> float | None:
    """Routed-expert parameters on the costed pipeline stage's GPU: those of the MoE layers inside its blocks, / tp
    (the stage's share of all parameters would count its LM head as partly experts), or None without pipeline
    stages."""
    extra = graph.extra or {}
    stages = extra.get("pipeline_stages")
    if not stages or not stages.get("blocks"):
        return None
    sizes, costed, prefix = list(stages["blocks"]), int(stages["costed"]), str(stages.get("prefix") or "")
    start = sum(sizes[:costed])
    end = start + sizes[costed]
    tp = max(1, int((extra.get("parallel_layout") or {}).get("tp", 1)))
    held = 0.0
    for ly in moe_layers(graph):
        m = re.match(re.escape(prefix) + r"\.(\d+)(\.|$)", str(ly.get("module") or "")) if prefix else None
        if m is None:  # a layer the stage split cannot place: the stage's share of the blocks
            return routed_expert_params(graph) * sizes[costed] / max(1, sum(sizes)) / tp
        if start <= int(m.group(1)) < end:
            held += int(ly.get("params") or 0)
    return held / tp


def attention_forward_flops_per_token(graph: CostGraph) -> float:
    """Forward attention-score FLOPs per token with the full s x s square (the MFU convention of llm-foundry /
    PaLM: 2 x 2 x s x d_model per layer per token), from the traced fused-attention records; a local window the
    model defines (Longformer / LED's encoder, :func:`local_window_keys`) over the keys of its window."""
    total = 0.0
    for r in graph.records:
        if r.phase is Phase.FORWARD and r.kind is OpKind.ATTENTION and not r.recompute:
            b, h, sq, sk = r.dim("b", 1) or 1, r.dim("h", 1) or 1, r.dim("sq", 0), r.dim("sk", 0)
            d, dv = r.dim("d", 0), r.dim("dv", 0) or r.dim("d", 0)
            total += 2.0 * b * h * sq * sk * (d + dv)
    if total == 0.0:
        total = _eager_attention_flops(graph)
    # an ONNX graph with its batch baked into its shapes keeps the baked batch in its dims (costs scaled instead)
    return total * float((graph.extra or {}).get("dims_batch_scale", 1.0)) / tokens_per_micro_batch(graph)


def _local_window_softmaxes(graph: CostGraph) -> list[int]:
    """Indices of the forward softmaxes over a local window's scores: in a Longformer / LED encoder self-attention
    (the module types wattlint.frontends.hf prepares for the trace), the 4-D [batch, padded sequence, heads, keys]
    scores of its sliding window (attention_window / 2 keys each side and the query itself, then one column per
    global token), which it computes in overlapping chunks, so no batched GEMM writes or reads them one to one.
    (Its global tokens' own rows, [batch x heads, global tokens, sequence], are ordinary eager attention.)"""
    from .frontends.hf import _LOCAL_GLOBAL_ATTENTION

    types = dict(graph.modules)
    return [i for i, r in enumerate(graph.records)
            if r.phase is Phase.FORWARD and not r.recompute and r.kind is OpKind.SOFTMAX
            and types.get(r.module) in _LOCAL_GLOBAL_ATTENTION and r.shapes and len(r.shapes[0]) == 4]


def local_window_keys(graph: CostGraph) -> int:
    """Keys per query of the widest local-window attention traced (:func:`_local_window_softmaxes`: the window's
    w + 1 and the global tokens' columns), 0 without one."""
    return max((int(graph.records[i].shapes[0][3]) for i in _local_window_softmaxes(graph)), default=0)


# weights x rows / (weights x counted tokens) of the traced Linear layers above which the 6N convention of MFU
# undercounts the model (1 for a decoder-only or encoder-only stack, less with heads over a few tokens)
WEIGHT_REUSE_LIMIT = 1.05

# module types (as the trace records them: graph.modules' type names) whose forward is one x @ W with a 2-D weight
# multiplying every input row, the layers whose rows model_flops_basis measures: torch's nn.Linear and its subclass
# NonDynamicallyQuantizableLinear (nn.MultiheadAttention's out_proj where called as a module; torch's own forward
# runs it and the in-projection as F.linear inside the attention module: _projection_key), and transformers' Conv1D (a Linear with its
# weight stored [in, out]: addmm(bias, x, W); GPT-2, OpenAI GPT, ImageGPT, Decision Transformer, CLVP's MLP). An
# explicit list, not "any module with a 2-D matmul": a user module named otherwise that runs a matmul is not known
# to hold its weight (a real convolution named Conv1D traces as a convolution, not a matmul, and is not counted)
LINEAR_TYPES = frozenset({"Linear", "NonDynamicallyQuantizableLinear", "Conv1D"})


def is_linear_type(type_name: str | None) -> bool:
    """Whether a module of ``type_name`` is a Linear layer for the weight-reuse measure (:data:`LINEAR_TYPES`)."""
    return type_name in LINEAR_TYPES


def _projection_key(r: OpRecord, types: Mapping[str, str], state: dict[str, list]) -> str | None:
    """The weight a forward record of nn.MultiheadAttention multiplies, for the weight-reuse measure: torch's
    multi_head_attention_forward runs its in-projection as F.linear on slices of in_proj_weight (one call over the
    packed q / k / v of self-attention; the query's, then the keys' and values' of cross-attention, over the
    memory's rows) and its out-projection as F.linear on out_proj.weight, all recorded under the attention module
    (not out_proj, which it never calls), so no Linear of it was measured (review s54: a text decoder's
    cross-attention keys and values over a few memory rows went unseen). The calls before the attention (a fused
    kernel or a softmax of the module) are its in-projection, numbered in call order, the one after it the
    out-projection; ``state`` (module -> [attention seen, in-projections so far]) follows repeated runs, whose
    same slices add their rows. None for other records (the attention's own batched matmuls included)."""
    if types.get(r.module) != "MultiheadAttention":
        return None
    seen = state.setdefault(r.module, [False, 0])
    if r.kind in (OpKind.ATTENTION, OpKind.SOFTMAX):
        seen[0] = True
        return None
    if r.kind is not OpKind.MATMUL or "bmm" in r.op or not (r.dim("k", 0) and r.dim("n", 0)):
        return None
    if seen[0]:
        state[r.module] = [False, 0]
        return f"{r.module}.out_proj"
    seen[1] += 1
    return f"{r.module} in-projection {seen[1]}"


def experts_paths(graph: CostGraph) -> list[tuple[dict, str]]:
    """Per MoE layer of the frontend's summary that names its module, (the layer, the module path of its routed
    experts): the layer's own path (transformers' fused experts, Llama 4's) or its ``experts`` container where the
    layer also holds the router, any shared experts and the dispatch (Switch Transformers' sparse MLP, Mixtral's
    block): what MFU's model-FLOPs basis takes to the dropless rows and leaves out of the dense weights. Review
    s53 / s54: both used the layer's path, which scaled Switch's router with the experts and left it out of the
    dense measure."""
    modules = {r.module for r in graph.records}
    out = []
    for ly in moe_layers(graph):
        if not ly.get("module"):
            continue
        path = str(ly["module"])
        inner = f"{path}.experts"
        if any(m == inner or m.startswith(inner + ".") for m in modules):
            path = inner
        out.append((ly, path))
    return out


def _under(module: str, path: str) -> bool:
    return module == path or module.startswith(path + ".")


def model_flops_basis(graph: CostGraph) -> dict[str, Any]:
    """Whether MFU's 6N + attention convention counts this model's work, and the traced model FLOPs per token.

    6N assumes every weight multiplies every counted token (micro-batch x sequence) once, forward. Measured on the
    traced Linear layers (:data:`LINEAR_TYPES`: nn.Linear and GPT-2's Conv1D): the rows each weight multiplies in a
    micro-batch's forward, weighted by its size, over the counted tokens (``reuse``): 1 for decoder-only and encoder-only stacks, below 1 with heads over a few
    tokens; above 1 when weights run on more rows than the counted tokens: an encoder over a longer input than the
    counted decoder sequence (Whisper's 1,500 encoder frames against 64 text tokens: 6N counted the encoder once
    per text token while the attention term divided the encoder's attention by the text tokens) or layers shared
    across depth (ALBERT runs its one layer L times: N counts it once). ``flops_per_token``: the traced forward +
    backward FLOPs (no recompute, no optimizer) per counted token, the model FLOPs MFU uses for such models;
    ``module`` / ``rows`` / ``calls``: the Linear with the most rows (for the report). The other side, over the
    Linear weights outside routed experts (N_active counts those): ``reuse_dense`` (1 where no Linear was traced),
    ``fewer_share`` / ``fewer_rows``: the share of those weights that run on fewer rows than the counted tokens and
    their size-weighted rows per micro-batch (a vision tower over its image patches beside a text model over the
    counted tokens, which 6N charges once per text token), ``fewer_missed``: their weights x the counted-token rows
    they did not multiply, per counted token (6N charges 6 FLOPs for each), ``fewer_module`` / ``fewer_module_rows`` /
    ``fewer_module_calls``: the one that misses the most rows (size x (tokens - rows))."""
    types = dict(graph.modules)
    scale = float((graph.extra or {}).get("dims_batch_scale", 1.0))
    rows: dict[str, float] = {}
    size: dict[str, int] = {}
    calls: dict[str, int] = {}
    fwd_bwd = 0.0
    # routed experts' work at the dropless tokens x top-k rows (a capacity factor pads or drops rows: MFU's model
    # FLOPs count each token's experts once; review s53: the traced basis rose with the capacity factor's padding)
    dropless = _dropless_scale(graph)
    mha: dict[str, list] = {}
    for r in graph.records:
        if r.recompute or r.phase not in (Phase.FORWARD, Phase.BACKWARD):
            continue
        fwd_bwd += r.flops * next((f for p, f in dropless if _under(r.module, p)), 1.0)
        if r.phase is not Phase.FORWARD:
            continue
        key = _projection_key(r, types, mha)  # nn.MultiheadAttention's projections, run as F.linear in it
        if key is None and r.kind is OpKind.MATMUL and is_linear_type(types.get(r.module)) \
                and r.dim("k", 0) and r.dim("n", 0):
            key = r.module
        if key is not None:
            rows[key] = rows.get(key, 0.0) + (r.dim("b", 1) or 1) * r.dim("m", 0) * scale
            size[key] = r.dim("k", 0) * r.dim("n", 0)
            calls[key] = calls.get(key, 0) + 1
    tokens = tokens_per_micro_batch(graph)
    weights = sum(size.values())
    reuse = sum(size[m] * rows[m] for m in rows) / (weights * tokens) if weights else 0.0
    top = max(rows, key=lambda m: (rows[m], size[m]), default="")
    # the other side, outside the routed experts (whose rows are top-k / experts of the tokens by design: N_active
    # counts them): ``reuse_dense`` as ``reuse``; the weights that run on fewer rows than the counted tokens (a
    # vision tower over image patches beside a text model over the counted tokens, a head over a few tokens), their
    # share of the weights and size-weighted rows, and the one that misses the most rows (size x (tokens - rows))
    routed = [p for _, p in experts_paths(graph)]
    dense = [m for m in rows if not any(_under(m, p) for p in routed)]
    w_dense = sum(size[m] for m in dense)
    fewer = [m for m in dense if rows[m] < tokens]
    w_fewer = sum(size[m] for m in fewer)
    short = max(fewer, key=lambda m: (size[m] * (tokens - rows[m]), m), default="")
    return {"reuse": reuse, "flops_per_token": fwd_bwd / tokens, "tokens": tokens, "module": top,
            "rows": rows.get(top, 0.0), "calls": calls.get(top, 0),
            # no Linear measured (a model of convolutions, recurrent or attention modules only): 1, nothing shows
            # 6N overcounting
            "reuse_dense": sum(size[m] * rows[m] for m in dense) / (w_dense * tokens) if w_dense else 1.0,
            "fewer_share": w_fewer / w_dense if w_dense else 0.0,
            # weights x token rows they did not multiply, per counted token: 6N charges 6 FLOPs for each
            "fewer_missed": sum(size[m] * (tokens - rows[m]) for m in fewer) / tokens,
            "fewer_rows": sum(size[m] * rows[m] for m in fewer) / w_fewer if w_fewer else 0.0,
            "fewer_module": short, "fewer_module_rows": rows.get(short, 0.0), "fewer_module_calls": calls.get(short, 0)}


def _dropless_scale(graph: CostGraph) -> list[tuple[str, float]]:
    """Per routed MoE layer, (the module path of its experts, :func:`experts_paths`; tokens x top-k / the rows its
    experts computed): the factor that takes the traced expert work to the dropless rows (1 at capacity factor 1;
    1 / 1.25 at 1.25's padding; 2 at 0.5, whose dropped tokens MFU's convention counts as N_active does)."""
    out = []
    for ly, path in experts_paths(graph):
        rows, tokens, k = sum(ly.get("rows_per_expert") or ()), int(ly.get("tokens") or 0), int(ly.get("top_k") or 0)
        if rows > 0 and tokens > 0 and k > 0 and rows != tokens * k:
            out.append((path, tokens * k / rows))
    return out


def _eager_attention_flops(graph: CostGraph) -> float:
    """Forward attention-score FLOPs of attention run as separate kernels (--attention eager, or a model's own
    eager code: BLOOM's baddbmm, DeBERTa, Gemma 2's soft-capping): per softmax over E = b x h x sq x sk scores, the
    batched GEMMs of its module that make them (b' m n = E: Q K^T, 2 E d) and use them (b' m k = E: P V, 2 E dv).
    MFU dropped the attention term for these (6N only), against its stated convention.

    A local window (Longformer / LED's encoder, :func:`_local_window_softmaxes`) counts the attention the model
    defines: each of the sequence's queries over its window's keys (w + 1, and one per global token), 2 x (d + dv)
    FLOPs per score with d the inner dim of the batched GEMM before the softmax (Q K^T) and dv the output dim of
    the one after it (P V). Its chunked kernels match no score tensor one to one, so the term was 0 (review s54);
    the rows the model pads the sequence to (a multiple of attention_window) are not the model's: queries are the
    traced sequence's tokens."""
    scores: dict[str, list[int]] = {}
    gemms: dict[str, list[OpRecord]] = {}
    records = graph.records
    local = set(_local_window_softmaxes(graph))
    total = 0.0
    seq = sequence_length(graph)
    for i in sorted(local):
        r = records[i]
        b, rows, h, keys = (int(x) for x in r.shapes[0])
        mine = [j for j, g in enumerate(records) if g.module == r.module and g.phase is Phase.FORWARD
                and not g.recompute and _batched_gemm(g)]
        qk = next((records[j] for j in reversed(mine) if j < i), None)
        pv = next((records[j] for j in mine if j > i), None)
        if qk is not None and pv is not None:
            queries = min(rows, seq) if seq else rows
            total += 2.0 * b * h * queries * keys * (qk.dim("k", 0) + pv.dim("n", 0))
    for i, r in enumerate(records):
        if r.phase is not Phase.FORWARD or r.recompute or not r.module or i in local:
            continue
        if r.kind is OpKind.SOFTMAX and r.shapes and r.shapes[0]:
            scores.setdefault(r.module, []).append(math.prod(int(x) for x in r.shapes[0]))
        elif r.kind is OpKind.MATMUL and (r.dim("b", 1) or 1) > 1:
            gemms.setdefault(r.module, []).append(r)
    for module, sizes in scores.items():
        left = list(gemms.get(module, []))
        for e in sizes:
            for role in ("n", "k"):  # Q K^T writes the scores (m x n); P V reads them (m x k)
                hit = next((g for g in left if g.dim("b", 1) * g.dim("m", 0) * g.dim(role, 0) == e), None)
                if hit is not None:
                    left.remove(hit)
                    total += 2.0 * hit.dim("b", 1) * hit.dim("m", 0) * hit.dim("n", 0) * hit.dim("k", 0)
    return total
