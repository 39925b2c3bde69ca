"""WL1xx — what the model computes: precision, GEMM shapes, attention, memory-bound ops, pruning, low rank,
activation checkpointing."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

from ...types import OpKind, OpRecord, Phase, Status
from ..engine import ceil_to, replace_records
from ..registry import register
from ..rule import Case, Option, Rule, fraction, positive, positive_int

GEMM_KINDS = (OpKind.MATMUL, OpKind.CONV, OpKind.ATTENTION, OpKind.RNN)
HALF = {"float16": "fp16", "bfloat16": "bf16"}


def _compute_dtype(rec: OpRecord, gpu, precision: str) -> str:
    from ...energy.prior import compute_dtype

    return compute_dtype(rec, gpu, precision)


def _share(ctx, pred) -> float:
    energy = ctx.op_energy()
    tot = sum(energy)
    if tot <= 0:
        return 0.0
    return sum(e for r, e in zip(ctx.graph.records, energy) if pred(r)) / tot


# ---- WL101 ----------------------------------------------------------------------------------------------------

@register
class Fp32Training(Rule):
    code = "WL101"
    name = "fp32-training"
    severity = "warning"
    summary = "Training in fp32 on a GPU whose tensor cores run bf16/fp16 many times faster"
    what = """
        Flags a plan whose matmuls and convolutions run in fp32 (or TF32) on a GPU with bf16/fp16 tensor cores,
        when those GEMM-family ops are a large share of the step's energy. The saving is computed by re-estimating
        the model traced again under bf16 autocast (fp16 on GPUs without bf16), as `--precision bf16` traces it,
        with the same plan (a graph given as such: its GEMM-family ops in half precision).
    """
    why = """
        On an A100 the dense bf16 tensor-core peak is 312 TFLOP/s against 19.5 TFLOP/s fp32 (156 TF32): GEMMs run
        up to 16x faster at about the same board power, so energy per step falls with time. Mixed precision keeps
        fp32 master weights and loss scaling (fp16) so accuracy is preserved (Micikevicius et al., 2018). Mei & Stamp
        report lower precision as the compression technique that actually saves training energy.
    """
    example = """
        model = Net().cuda()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)     # fp32 everywhere
            loss.backward(); opt.step()
    """
    use_instead = """
        for x, y in loader:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            loss.backward(); opt.step()
        # wattlint: --precision bf16, or precision = "bf16" in [tool.wattlint]
    """
    sources = ("NVIDIA A100 datasheet (dense FP32 19.5, TF32 156, BF16 312 TFLOP/s)",
               "Micikevicius et al., Mixed Precision Training, ICLR 2018",
               "Mei & Stamp, energy of model compression techniques (seed paper: lower precision saves energy)")
    options = {
        "min_share": Option("min_share", 0.2, fraction, "minimum share of step energy in fp32 GEMM/conv/attention"),
        "min_saving": Option("min_saving", 0.05, fraction, "report only when bf16 saves at least this fraction"),
    }
    valid = (
        Case("bf16 autocast already", {"ops": [{"op": "linear", "m": 8192, "n": 4096, "k": 4096}]}),
        Case("fp32 on a GPU without tensor cores",
             {"ops": [{"op": "linear", "m": 8192, "n": 4096, "k": 4096, "dtype": "float32"}], "precision": "fp32",
              "gpu": "gtx1080ti"}),
    )
    invalid = (
        Case("fp32 GEMMs on an A100: 312 vs 19.5 TFLOP/s",
             {"ops": [{"op": "linear", "m": 8192, "n": 8192, "k": 8192, "dtype": "float32"}], "precision": "fp32"},
             expect="bf16", saving_pct=93.7),
        Case("default precision (fp32 matmuls) on an H100",
             {"ops": [{"op": "linear", "m": 8192, "n": 4096, "k": 4096, "dtype": "float32"}],
              "precision": "default", "gpu": "h100-sxm5-80gb"}, expect="torch.autocast"),
        Case("default precision on an A100: cuDNN convolutions in TF32, matmuls in FP32 (A100 datasheet peaks)",
             {"ops": [{"op": "conv", "m": 65536, "n": 256, "k": 2304, "dtype": "float32"},
                      {"op": "linear", "m": 8192, "n": 4096, "k": 4096, "dtype": "float32"}],
              "precision": "default"},
             expect="convolutions in TF32 (156 TFLOP/s), matmuls in FP32 (19.5 TFLOP/s) under precision=default"),
    )

    def check(self, ctx):
        est, gpu = ctx.estimate, ctx.estimate.gpu
        precision = est.plan.precision
        if precision not in ("default", "fp32", "tf32") or not gpu.tensor_cores:
            return
        half = "bf16" if gpu.peak_tflops.get("bf16") else "fp16" if gpu.peak_tflops.get("fp16") else None
        if half is None:
            return
        fp32_ops = [r for r in ctx.graph.records if r.kind in GEMM_KINDS and r.dtype == "float32"
                    and r.status is Status.HANDLED]
        if not fp32_ops:
            return
        ids = {id(r) for r in fp32_ops}
        share = _share(ctx, lambda r: id(r) in ids)
        if share < ctx.options["min_share"]:
            return
        half_dtype = "bfloat16" if half == "bf16" else "float16"
        half_graph = ctx.retraced(half)  # the step --precision bf16 traces: activations in half too
        if half_graph is None:  # a graph given as such: its GEMM-family records in half (autocast's own list)
            records = [dataclasses.replace(r, dtype=half_dtype, bytes_read=r.bytes_read // 2,
                                           bytes_written=r.bytes_written // 2) if id(r) in ids else r
                       for r in ctx.graph.records]
            half_graph = replace_records(ctx.graph, records, precision=half)
        other = ctx.reestimate(graph=half_graph, plan=dataclasses.replace(est.plan, precision=half))
        kwh, pct = ctx.saving(other)
        if pct is not None and pct < ctx.options["min_saving"]:
            return
        yield ctx.finding(
            f"{_fp32_rates(fp32_ops, gpu, precision)} under precision={precision} on {gpu.name}, {share:.0%} of "
            f"step energy; train with {half} autocast (torch.autocast('cuda', dtype=torch.{half_dtype})): "
            f"{gpu.peak(half) / 1e12:.0f} TFLOP/s",
            saving_kwh=kwh, saving_pct=pct)


_KIND_WORDS = {OpKind.MATMUL: "matmuls", OpKind.CONV: "convolutions", OpKind.ATTENTION: "attention",
               OpKind.RNN: "RNNs"}


def _fp32_rates(records, gpu, precision: str) -> str:
    """Which float32 GEMM-family ops run at which peak, as the estimate priced them (the prior's compute_dtype:
    under ``default``, cuDNN convolutions in TF32 on Ampere+ and matmuls in FP32): 'convolutions in TF32 (156
    TFLOP/s), matmuls in FP32 (19.5 TFLOP/s)'."""
    from ...energy.prior import compute_dtype  # pure Python, no estimator

    by_rate: dict[str, list[str]] = {}
    for r in records:
        words, word = by_rate.setdefault(compute_dtype(r, gpu, precision), []), _KIND_WORDS.get(r.kind, "others")
        if word not in words:
            words.append(word)
    return ", ".join(f"{'/'.join(words)} in {key.upper()} ({gpu.peak(key) / 1e12:.3g} TFLOP/s)"
                     for key, words in sorted(by_rate.items(), key=lambda kv: -gpu.peak(kv[0])))


# ---- WL102 ----------------------------------------------------------------------------------------------------

@register
class MisalignedGemmDims(Rule):
    code = "WL102"
    name = "misaligned-gemm-dims"
    severity = "warning"
    summary = "GEMM/conv dimensions (hidden, vocabulary, channels) not multiples of 8 (16-bit) / 4 (TF32) / 16 (FP8)"
    what = """
        Looks at every matmul and convolution that runs on tensor cores and flags those whose output or reduction
        dimension (n, k: hidden size, heads x head dim, vocabulary, channels) is not a multiple of the tensor-core
        granule for its dtype: 8 elements for fp16/bf16 (16 bytes), 4 for TF32, 16 for FP8. The saving is the
        re-estimate of the graph with those dims padded up (more FLOPs, aligned kernels) in every GEMM that holds
        them: forward, input gradient and weight gradient (whose rows are the weight's output features), and the
        padded model's other work: element-wise / norm / softmax / dropout ops over a padded feature axis, and
        the optimizer step, gradients and weights of the added parameters.
    """
    why = """
        cuBLAS/cuDNN tensor-core kernels load 16-byte vectors; misaligned dims fall back to slower kernels or padding
        inside the library (NVIDIA Deep Learning Performance Guide, "Tensor Core Requirements"). Padding GPT-2's
        vocabulary from 50257 to 50304 (a multiple of 64) made nanoGPT's whole training step ~25% faster
        (Karpathy, nanoGPT). Small changes to a config, large energy effect.
    """
    example = """
        vocab_size = 50257                      # lm_head: n = 50257
        nn.Linear(d_model, vocab_size)
    """
    use_instead = """
        vocab_size = 50304                      # padded to a multiple of 64 (8 suffices for bf16)
        # hidden sizes, FFN sizes, channels: multiples of 8 (bf16/fp16), 64 where cheap
    """
    sources = ("NVIDIA Deep Learning Performance Guide: Matrix Multiplication Background, Tensor Core Requirements",
               "A. Karpathy, nanoGPT (vocab 50257 -> 50304: ~25% speedup)")
    options = {
        "min_share": Option("min_share", 0.01, fraction, "minimum share of step energy in misaligned GEMMs"),
        "min_dim": Option("min_dim", 16, positive_int, "ignore dims smaller than this (e.g. RGB input channels)"),
        "min_saving": Option("min_saving", 0.005, fraction,
                             "report only when padding saves at least this fraction of the run's energy"),
    }
    valid = (
        Case("aligned bf16 GEMM", {"ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 1024}]}),
        Case("fp32 on CUDA cores: alignment does not matter",
             {"ops": [{"op": "linear", "m": 4096, "n": 1000, "k": 1000, "dtype": "float32"}], "precision": "fp32"}),
        Case("a token count that is no multiple of 8 (the weight gradient's k, e.g. a routed expert's 274 rows): "
             "not a model size to pad",
             {"ops": [{"op": "linear", "m": 16370, "n": 4096, "k": 4096, "module": "experts"}]}),
    )
    invalid = (
        Case("lm head with vocabulary 50257 in bf16",
             {"ops": [{"op": "linear", "m": 8192, "n": 50257, "k": 768, "module": "lm_head"}]},
             expect="n=50257"),
        Case("hidden size 1020 in bf16: padded to 1024, 0.8% more FLOPs at twice the efficiency",
             {"ops": [{"op": "linear", "m": 16384, "n": 1020, "k": 1020}], "params": 1000},
             expect="n=1020 (pad to 1024), k=1020 (pad to 1024)", saving_pct=49.6),
    )

    def check(self, ctx):
        est, gpu = ctx.estimate, ctx.estimate.gpu
        energy = ctx.op_energy()
        tot = sum(energy) or 1.0
        mults = {"fp16": 8, "bf16": 8, "tf32": 4, "fp8": 16}
        bad: dict[int, tuple[int, int, int]] = {}
        per_layer: dict[str, float] = defaultdict(float)
        dims_of: dict[str, tuple[int, int, int]] = {}
        dtype_of: dict[str, str] = {}  # the compute dtype of the dims shown (its granule is the multiple to pad to)
        # a backward GEMM's n / k can be a token count (a weight gradient reduces over the tokens: for a routed
        # expert, tokens x top-k / experts rows), which no model size pads: only the dims of the module's forward
        # GEMMs (its weights' features) are the model's to pad
        model_dims: dict[str, set[int]] = defaultdict(set)
        for r in ctx.graph.records:
            if r.kind in (OpKind.MATMUL, OpKind.CONV) and r.phase is Phase.FORWARD:
                model_dims[r.module].update((r.dim("n"), r.dim("k")))
        lo = ctx.options["min_dim"]
        for i, r in enumerate(ctx.graph.records):
            if r.kind not in (OpKind.MATMUL, OpKind.CONV) or r.status is not Status.HANDLED:
                continue
            cdt = _compute_dtype(r, gpu, est.plan.precision)
            m = mults.get(cdt)
            n, k = r.dim("n"), r.dim("k")
            if not m or not n or not k:
                continue
            own = model_dims.get(r.module) if r.phase is not Phase.FORWARD else None
            # a weight gradient's rows (m) are the weight's output features (the lm_head's dW is [vocab, hidden]):
            # padded with the model size too (review: left unpadded, the claim was 0.595 Wh where the padded
            # vocabulary, run, saves 0.887 Wh)
            rows = r.dim("m") if own is not None else 0
            if _paddable(n, m, lo, own) or _paddable(k, m, lo, own) or (rows and _paddable(rows, m, lo, own)):
                bad[i] = (m, n, k)
                per_layer[r.module] += energy[i]
                if r.phase is Phase.FORWARD or r.module not in dims_of:
                    dims_of[r.module] = (m, n, k)
                    dtype_of[r.module] = cdt
        share = sum(per_layer.values()) / tot
        if not bad or share < ctx.options["min_share"]:
            return
        records = list(ctx.graph.records)
        for i, (m, n, k) in bad.items():
            r = records[i]
            own = model_dims.get(r.module) if r.phase is not Phase.FORWARD else None
            n2 = ceil_to(n, m) if _paddable(n, m, lo, own) else n
            k2 = ceil_to(k, m) if _paddable(k, m, lo, own) else k
            rows = r.dim("m") or 1
            m2 = ceil_to(rows, m) if own is not None and _paddable(rows, m, lo, own) else rows
            f = (n2 * k2 * m2) / (n * k * rows)
            new = {"n": n2, "k": k2, "m": m2}
            dims = tuple((name, new.get(name, v)) for name, v in r.dims)
            records[i] = dataclasses.replace(r, dims=dims, flops=int(r.flops * f), bytes_read=int(r.bytes_read * f),
                                             bytes_written=int(r.bytes_written * f))
        records, model = _pad_other_work(ctx.graph, records, model_dims, mults, lo, gpu, est.plan.precision)
        other = ctx.reestimate(graph=replace_records(ctx.graph, records, model=model))
        kwh, pct = ctx.saving(other)
        if other is not None and (pct is None or pct < ctx.options["min_saving"]):
            return  # the estimator says padding would not pay here
        worst = sorted(per_layer, key=per_layer.get, reverse=True)
        parts = []
        for name in worst[:3]:
            m, n, k = dims_of[name]
            fixes = [f"{label}={v} (pad to {ceil_to(v, m)})" for label, v in (("n", n), ("k", k))
                     if _paddable(v, m, lo, model_dims.get(name))]
            parts.append(f"{name or '<root>'}: " + ", ".join(fixes) + f", multiples of {m} for {dtype_of[name]}")
        more = f" and {len(worst) - 3} more" if len(worst) > 3 else ""
        # the saving is the re-estimate with each dim padded to its granule (the sizes named above); a vocabulary is
        # often padded further, to a multiple of 64 (nanoGPT's 50304), which this saving does not price
        yield ctx.finding(
            f"{len(worst)} GEMM/conv layer(s) with dims not multiples of the tensor-core granule "
            f"({share:.0%} of step energy): " + "; ".join(parts) + more +
            "; pad hidden/vocabulary/channel sizes to those multiples (the estimated saving is for that padding; "
            "padding a vocabulary on to a multiple of 64, as nanoGPT's 50304, is a common further step)",
            layer=worst[0] or None, saving_kwh=kwh, saving_pct=pct)


def _pad_other_work(graph, records: list, model_dims, mults, lo: int, gpu, precision: str):
    """(records, model info) of the padded model's other work: the padding grows more than the GEMMs (review: an
    MLP 1000 -> 3001 -> 3001 -> 1001 claimed 4.16 mWh where the padded model, run, saves 3.11 mWh). A forward
    GEMM's padded weight [n, k] adds (n2 k2 - n k) + (n2 - n) parameters (weight and bias), which the optimizer
    step, the gradients and the weights' traffic carry: the optimizer records scale with the parameter count.
    Element-wise / norm / softmax / dropout records (forward and backward) over a tensor whose last axis is a
    padded feature size scale with it (GELU over [rows, 3001] runs over [rows, 3008])."""
    pad: dict[int, int] = {}
    extra = 0
    seen: set[tuple] = set()
    for r in graph.records:
        if r.kind is not OpKind.MATMUL or r.phase is not Phase.FORWARD or r.dim("b", 1) != 1 \
                or r.status is not Status.HANDLED:
            continue
        m = mults.get(_compute_dtype(r, gpu, precision))
        n, k = r.dim("n"), r.dim("k")
        if not m or not n or not k:
            continue
        n2 = ceil_to(n, m) if _paddable(n, m, lo, None) else n
        k2 = ceil_to(k, m) if _paddable(k, m, lo, None) else k
        for a, b in ((n, n2), (k, k2)):
            if b != a:
                pad[a] = b
        key = (r.module, n, k)
        if (n2, k2) != (n, k) and key not in seen:
            seen.add(key)
            extra += n2 * k2 - n * k + (n2 - n)
    if not pad:
        return records, graph.model
    other = (OpKind.ELEMENTWISE, OpKind.NORM, OpKind.SOFTMAX, OpKind.DROPOUT, OpKind.LOSS, OpKind.REDUCTION)
    params = max(1, graph.model.params)
    opt = (params + extra) / params
    out = []
    for r in records:
        f = 1.0
        if r.phase is Phase.OPTIMIZER:
            f = opt
        elif r.kind in other and r.shapes:
            big = max(r.shapes, key=math.prod)
            if big and big[-1] in pad:
                f = pad[big[-1]] / big[-1]
        out.append(r if f == 1.0 else dataclasses.replace(
            r, flops=int(r.flops * f), bytes_read=int(r.bytes_read * f), bytes_written=int(r.bytes_written * f)))
    model = dataclasses.replace(graph.model, params=graph.model.params + extra,
                                param_bytes=int(graph.model.param_bytes * opt),
                                **({"trainable_params": graph.model.trainable_params + extra}
                                   if graph.model.trainable_params >= 0 else {}))
    return out, model


def _paddable(v: int, granule: int, least: int, own: set[int] | None) -> bool:
    """A GEMM dim the model could pad: not a multiple of the tensor-core granule, not tiny, and (``own``: the dims
    of its module's forward GEMMs, for a backward record) one of the model's own sizes, not a token count."""
    return bool(v % granule and v >= least and (own is None or v in own))


# ---- WL103 ----------------------------------------------------------------------------------------------------

_TRANSPOSES = ("transpose", "aten.t.", "permute", "swapaxes", "swapdims", "adjoint")


def _softmax_axis(r: OpRecord) -> int | None:
    """The axis a softmax record normalises over, as an index into its input's shape, when the frontend recorded it
    (an ``axis`` entry in its dims, negative or not); None when it did not."""
    for name, v in r.dims:
        if name == "axis":
            return v % len(r.shapes[0])
    return None


def _transposed_between(fwd: list[OpRecord], j: int, i: int, shape) -> bool:
    """Whether the [.., rows, cols] tensor the softmax ``fwd[j]`` wrote reaches ``fwd[i]`` with its last two axes
    swapped: an odd number of transposes (``transpose``, ``.t()``, ``.mT``, ``permute``) of a tensor of that shape
    (or of its batch-flattened [batch, rows, cols] view) between them."""
    flat = (math.prod(shape[:-2]),) + tuple(shape[-2:])
    swaps = sum(1 for x in fwd[j + 1:i] if x.kind is OpKind.VIEW and x.shapes
                and any(t in x.op.lower() for t in _TRANSPOSES) and tuple(x.shapes[0]) in (tuple(shape), flat))
    return swaps % 2 == 1


def _attention_scores(fwd: list[OpRecord], j: int) -> tuple[int, int] | None:
    """(s_q, s_k) when forward record ``fwd[j]``, a softmax, is the softmax of an explicit attention: its input is
    the [.., rows, cols] output of a batched GEMM (QKᵀ: b, m, n = prod(leading dims), rows, cols), reached through
    scale / mask / bias / cast ops, and its output is the left operand of a batched GEMM of the same batch (P @ V)
    that contracts over the axis the softmax normalised: the key axis. Scores laid out [.., s_q, s_k] (Q·Kᵀ) are
    normalised over the last axis and read as they are (m = s_q, k = s_k); scores laid out [.., s_k, s_q] (K·Qᵀ)
    over the second last and read transposed (Pᵀ @ V: m = s_q, k = s_k; when s_q == s_k the transpose between the
    softmax and P @ V tells the layouts apart). A softmax over the query axis (dim -2 of Q·Kᵀ scores, then P @ V)
    normalises each key's column, not a query's distribution over keys: P @ V sums over keys, so that is not
    attention (nor what a fused kernel computes). Frontends that record the softmax's axis (see ``_softmax_axis``)
    are checked against it; without it, either layout counts.
    The records hold no tensor identities: both GEMMs are looked for between this softmax and the softmaxes before /
    after it. A softmax over classes or a vocabulary (a conv or a linear head's output, a loss after it), or over a
    dim other than the last two, has no such pair around it. Unbatched scores (b = 1: ``q @ k.T`` on 2-D q, k) count
    only when both GEMMs run in the softmax's own module: a linear layer's GEMM is unbatched too but runs in the
    layer's module, so linear -> softmax -> linear is not taken for attention."""
    r = fwd[j]
    if r.kind is not OpKind.SOFTMAX or not r.shapes or len(r.shapes[0]) < 2:
        return None
    shape = tuple(r.shapes[0])
    rows, cols = shape[-2], shape[-1]
    if min(rows, cols) < 2:
        return None
    axis = _softmax_axis(r)
    if axis is not None and axis < len(shape) - 2:
        return None
    batch = math.prod(shape[:-2])

    def gemms(indices):
        for i in indices:
            x = fwd[i]
            if x.kind is OpKind.SOFTMAX:
                return
            if x.kind is OpKind.MATMUL and x.status is Status.HANDLED and x.dim("b", 1) == batch \
                    and (batch > 1 or x.module == r.module):
                yield i, x

    if not any(x.dim("m") == rows and x.dim("n") == cols for _, x in gemms(range(j - 1, -1, -1))):
        return None
    for i, x in gemms(range(j + 1, len(fwd))):
        m, k = x.dim("m"), x.dim("k")
        if (m, k) == (rows, cols) and (m, k) == (cols, rows):  # square scores: the layout is the transposes'
            contracted = -2 if _transposed_between(fwd, j, i, shape) else -1
        elif (m, k) == (rows, cols):  # P @ V: contracts the last axis
            contracted = -1
        elif (m, k) == (cols, rows):  # Pᵀ @ V: contracts the second last
            contracted = -2
        else:
            continue
        if axis is not None and axis != len(shape) + contracted:
            return None  # the softmax normalised the axis P @ V does not sum over (the queries)
        sk = shape[contracted]
        sq = shape[-1] if contracted == -2 else shape[-2]
        return (sq, sk) if sk >= 16 else None
    return None


def _fused_rate(r: OpRecord, gpu, precision: str) -> float:
    """FLOPs factor that prices a score GEMM of the explicit chain at the rate the estimator gives a fused
    attention kernel of the same dims: in fp32 (no tensor cores for it; PyTorch's SDPA has no FlashAttention kernel
    in fp32 and runs the memory-efficient one, which ``--attention sdpa`` traces as an attention record) the prior
    prices attention at its attention efficiency (FlashAttention-class kernels, lower in backward), not at SGEMM's.
    The GEMM keeps its tiles (waves, depth); its FLOPs scale by SGEMM's efficiency over the attention kernel's, so
    its compute time is the fused kernel's. 1.0 for tensor-core (16-bit / TF32) GEMMs."""
    from ...energy import prior  # pure Python, no estimator

    if _compute_dtype(r, gpu, precision) != "fp32" or r.kind is not OpKind.MATMUL:
        return 1.0
    att = prior.ATTENTION_EFF_BY_CHIP.get(prior.chip_group(gpu), prior.EFF_MAX["attention"]) * (
        prior.ATTENTION_BACKWARD_FACTOR if r.phase is Phase.BACKWARD else 1.0)
    return max(1.0, prior.EFF_MAX["matmul_simt"] / att)


def _fuse_scores(r: OpRecord, sd: tuple[int, int], gpu=None, precision: str = "bf16") -> OpRecord:
    """The record with its HBM traffic to/from [.., s_q, s_k] score tensors removed (kept on chip); a GEMM that
    reads or writes the scores priced, in fp32, at the fused attention kernel's rate (:func:`_fused_rate`)."""
    def is_score(s) -> bool:
        return len(s) >= 2 and tuple(s[-2:]) in (sd, sd[::-1])

    if not r.shapes or r.kind is OpKind.ATTENTION:
        return r
    sizes = [math.prod(s) for s in r.shapes]
    score_in = sum(n for s, n in zip(r.shapes, sizes) if is_score(s))
    keep_read = 1.0 - score_in / max(1, sum(sizes))
    if r.kind is OpKind.MATMUL:
        out_score = (r.dim("m"), r.dim("n")) in (sd, sd[::-1])
        f = _fused_rate(r, gpu, precision) if gpu is not None and (score_in or out_score) else 1.0
        return dataclasses.replace(r, flops=int(r.flops * f), bytes_read=int(r.bytes_read * keep_read),
                                   bytes_written=0 if out_score else r.bytes_written)
    if score_in:
        return dataclasses.replace(r, bytes_read=int(r.bytes_read * keep_read), bytes_written=0)
    return r


@register
class UnfusedAttention(Rule):
    code = "WL103"
    name = "unfused-attention"
    severity = "warning"
    summary = "Attention computed as explicit softmax(QKᵀ)V instead of a fused (Flash) attention kernel"
    what = """
        Finds the explicit QKᵀ -> scale -> mask -> softmax -> dropout -> @V chain in modules that contain no fused
        attention op: a softmax over the [.., s_q, s_k] output of a batched GEMM (QKᵀ; scale, mask and bias ops may
        run between them) whose result is the left operand of a batched GEMM of the same batch reducing over s_k
        (@V), the key axis the softmax normalised (dim -1 of QKᵀ scores, or dim -2 of KQᵀ scores read transposed).
        A softmax over the query axis (dim -2 of QKᵀ scores, then @V) is not attention's, where the trace records
        the softmax's dim. Unbatched 2-D scores (``q @ k.T``) count when the three ops run in one module. A softmax
        over classes, channels or a vocabulary (after a convolution or a linear head, before a loss) is not
        attention. When the model's attention kernel is a flag (a Hugging Face / PyTorch source traced with
        ``--attention eager``), the saving is the re-run with ``--attention sdpa``, traced and planned as the command
        does. Otherwise it is the re-estimate with the score tensor kept on chip: every op of that module that
        reads or writes a [.., s_q, s_k] tensor loses that HBM traffic (FLOPs unchanged), which is what
        FlashAttention does; in fp32 (no FlashAttention kernel: PyTorch's SDPA runs its memory-efficient kernel)
        the score GEMMs are priced at the fused attention kernel's rate, as ``--attention sdpa`` is, not at
        SGEMM's. When that re-estimate saves nothing (the fused kernel costs more), the rule stays silent.
    """
    why = """
        The explicit chain writes and reads the s x s score matrix several times per layer (forward and backward);
        at sequence length 1-4k that traffic dominates attention time. FlashAttention is IO-aware and 2-4x faster
        end-to-end on GPT-2 / BERT training with less memory (Dao et al., 2022); PyTorch ships it as
        scaled_dot_product_attention.
    """
    example = """
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)
        attn = scores.masked_fill(mask, -inf).softmax(-1)
        out = attn @ v
    """
    use_instead = """
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        # Hugging Face: attn_implementation="sdpa" (or "flash_attention_2")
    """
    sources = ("Dao et al., FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness, NeurIPS 2022",
               "PyTorch docs: torch.nn.functional.scaled_dot_product_attention")
    options = {"min_seq": Option("min_seq", 128, positive_int, "only flag score matrices with s_k >= this")}
    valid = (
        Case("fused SDPA", {"ops": [{"op": "attention", "b": 8, "h": 12, "s": 1024, "d": 64, "module": "attn"}]}),
        Case("softmax over classes, not attention",
             {"ops": [{"op": "linear", "m": 4096, "n": 1000, "k": 1024}, {"op": "softmax", "shape": [8, 1000]}]}),
        Case("log-softmax over a vocabulary ([batch, seq, vocab] after the LM head): no QKᵀ before it, no @V after",
             {"ops": [{"op": "linear", "m": 2048, "n": 8192, "k": 256, "module": "head"},
                      {"op": "softmax", "shape": [8, 256, 8192], "module": ""}]}),
        Case("softmax over the classes of a segmentation map ([B, C, H, W], dim=1) after a convolution",
             {"ops": [{"op": "conv", "m": 524288, "n": 21, "k": 32, "module": "head"},
                      {"op": "softmax", "shape": [8, 21, 256, 256], "module": ""}]}),
    )
    invalid = (
        Case("explicit QK^T softmax at s=1024",
             {"ops": [{"op": "bmm", "b": 96, "m": 1024, "n": 1024, "k": 64, "module": "attn"},
                      {"op": "softmax", "shape": [8, 12, 1024, 1024], "module": "attn"},
                      {"op": "bmm", "b": 96, "m": 1024, "n": 64, "k": 1024, "module": "attn"}]},
             expect="scaled_dot_product_attention"),
        Case("unbatched explicit attention (2-D q @ k.T) at s=4096 in one module",
             {"ops": [{"op": "bmm", "m": 4096, "n": 4096, "k": 64, "module": "attn"},
                      {"op": "softmax", "shape": [4096, 4096], "module": "attn"},
                      {"op": "bmm", "m": 4096, "n": 64, "k": 4096, "module": "attn"}], "params": 1000},
             expect="materializes a 4096x4096", saving_pct=41.7),
    )

    def check(self, ctx):
        mods: dict[str, tuple[int, int]] = {}
        fused = {r.module for r in ctx.graph.records if r.kind is OpKind.ATTENTION}
        fwd = [r for r in ctx.graph.records if r.phase is Phase.FORWARD and not r.recompute]
        for j, r in enumerate(fwd):
            if r.kind is not OpKind.SOFTMAX or r.module in fused or r.module in mods:
                continue
            sd = _attention_scores(fwd, j)
            if sd and sd[1] >= ctx.options["min_seq"]:
                mods[r.module] = sd
        if not mods:
            return
        # a source whose attention kernel is a flag (Hugging Face / PyTorch attention run eager): the claim is the
        # re-run with --attention sdpa, traced and planned as the command does (review: the score traffic alone
        # claimed 7.20 Wh where --attention sdpa gives 9.08 Wh: the fused kernel also drops the softmax, mask,
        # dropout and their backward kernels). A trace the flag does not change (explicit softmax(QKᵀ)V in the
        # model's own code) keeps the re-estimate of the scores kept on chip
        other, flag = None, ""
        if ctx.request_options and ctx.request_options.get("attention") != "sdpa":
            lit = ctx.literal(attention="sdpa")
            if lit is not None and any(r.kind is OpKind.ATTENTION and r.module in mods for r in lit.graph.records):
                other, flag = lit, " (--attention sdpa)"
        if other is None:
            est = ctx.estimate
            records = [_fuse_scores(r, mods[r.module], est.gpu, est.plan.precision) if r.module in mods else r
                       for r in ctx.graph.records]
            other = ctx.reestimate(graph=replace_records(ctx.graph, records))
        kwh, pct = ctx.saving(other)
        if kwh is not None and kwh <= 0 and ctx.base_fits:
            return  # the fused kernel costs more here (review: BERT in fp32 at s=512, --attention sdpa +0.7 Wh)
        name = next(iter(mods))
        sq, sk = mods[name]
        more = f" (and {len(mods) - 1} more module(s))" if len(mods) > 1 else ""
        yield ctx.finding(
            f"attention in {repr(name) if name else 'the root module'}{more} materializes a {sq}x{sk} softmax(QKᵀ) "
            "score matrix in memory; use torch.nn.functional.scaled_dot_product_attention (a fused FlashAttention "
            f"kernel){flag}",
            layer=name or None, saving_kwh=kwh, saving_pct=pct)


# ---- WL104 ----------------------------------------------------------------------------------------------------

MEMORY_BOUND_KINDS = (OpKind.ELEMENTWISE, OpKind.NORM, OpKind.SOFTMAX, OpKind.DROPOUT, OpKind.MEMORY,
                      OpKind.REDUCTION, OpKind.INDEX, OpKind.LOSS, OpKind.POOL)


@register
class MemoryBoundHotspots(Rule):
    code = "WL104"
    name = "memory-bound-hotspots"
    severity = "warning"
    summary = "Memory-bound ops (elementwise, norms, softmax, dropout, copies) dominate step energy: fuse them"
    what = """
        Sums the energy of ops whose arithmetic intensity (FLOPs per byte moved) is below the GPU's ridge point and
        that are not GEMMs, attention or the optimizer. Above ``min-share`` of the step's energy, it names the top op
        types and suggests fusion. The saving is the re-estimate with those ops' memory traffic reduced by
        ``fusion-byte-reduction`` (a fused kernel reads its inputs once and writes its output once instead of
        round-tripping every intermediate through HBM).
    """
    why = """
        In BERT training, element-wise and normalization operators took ~37% of runtime while being 0.02% of the
        FLOPs; fusing them cut data movement and gave 1.30x end-to-end over PyTorch (Ivanov et al., "Data Movement
        Is All You Need", MLSys 2021). HBM traffic costs energy whether or not the SMs are busy.
    """
    example = """
        y = dropout(gelu(x @ w1 + b1))          # eager: one kernel and one HBM round trip per op
    """
    use_instead = """
        model = torch.compile(model)            # Inductor fuses pointwise/norm chains
        # or fused modules: apex/TE LayerNorm+Linear, fused bias-GELU, fused AdamW (foreach/fused=True)
    """
    sources = ("Ivanov et al., Data Movement Is All You Need: A Case Study on Optimizing Transformers, MLSys 2021",)
    options = {
        "min_share": Option("min_share", 0.30, fraction, "minimum share of step energy in memory-bound ops"),
        "fusion_byte_reduction": Option("fusion_byte_reduction", 0.5, fraction,
                                        "fraction of those ops' HBM bytes assumed removed by fusion"),
        "min_saving": Option("min_saving", 0.02, fraction, "report only when fusing saves at least this fraction "
                             "of the run's energy (a launch-bound step saves nothing by moving fewer bytes)"),
    }
    valid = (
        Case("GEMM-dominated MLP", {"ops": [{"op": "linear", "m": 8192, "n": 4096, "k": 4096},
                                            {"op": "elementwise", "shape": [8192, 4096]}]}),
        Case("memory-bound ops above min-share, but fusing them saves under min-saving",
             {"ops": [{"op": "linear", "m": 8192, "n": 1024, "k": 1024},
                      {"op": "elementwise", "name": "gelu", "shape": [8192, 4096], "count": 6}]},
             options={"min_saving": 0.99}),
    )
    invalid = (
        Case("many unfused elementwise ops",
             {"ops": [{"op": "linear", "m": 8192, "n": 1024, "k": 1024},
                      {"op": "elementwise", "name": "gelu", "shape": [8192, 4096], "count": 6}]},
             expect="torch.compile"),
    )

    def check(self, ctx):
        gpu = ctx.estimate.gpu
        ridge = gpu.peak("fp32") / (gpu.memory_bw_gbs * 1e9)
        energy = ctx.op_energy()
        tot = sum(energy)
        if tot <= 0:
            return
        from ...fp8 import CAST_OP as fp8_cast_op  # (imported here: a cached check must not load the estimator)

        hits = [i for i, r in enumerate(ctx.graph.records)
                if r.kind in MEMORY_BOUND_KINDS and r.status is Status.HANDLED and r.bytes > 0
                and r.flops / r.bytes < ridge and r.phase is not Phase.OPTIMIZER
                and r.op != fp8_cast_op]  # FP8 quantization (wattlint.fp8): not a fusable eager op
        share = sum(energy[i] for i in hits) / tot
        if share < ctx.options["min_share"]:
            return
        red = 1.0 - ctx.options["fusion_byte_reduction"]
        hit = set(hits)
        records = [dataclasses.replace(r, bytes_read=int(r.bytes_read * red), bytes_written=int(r.bytes_written * red))
                   if i in hit else r for i, r in enumerate(ctx.graph.records)]
        other = ctx.reestimate(graph=replace_records(ctx.graph, records))
        kwh, pct = ctx.saving(other)
        if pct is not None and pct < ctx.options["min_saving"]:
            return
        by_op: dict[str, float] = defaultdict(float)
        by_mod: dict[str, float] = defaultdict(float)
        for i in hits:
            r = ctx.graph.records[i]
            by_op[r.op.replace("aten.", "").replace(".default", "")] += energy[i]
            by_mod[r.module] += energy[i]
        top = ", ".join(f"{k} {v / tot:.0%}" for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[:3])
        yield ctx.finding(
            f"memory-bound ops take {share:.0%} of step energy ({top}); fuse them with torch.compile or fused "
            "kernels (fused norm/bias-activation, fused optimizer)",
            layer=max(by_mod, key=by_mod.get) or None, saving_kwh=kwh, saving_pct=pct)


# ---- WL105 ----------------------------------------------------------------------------------------------------

_MASK_OPS = ("mul", "where", "masked_fill")


def _mask_op(r: OpRecord) -> str | None:
    """'mul', 'where' or 'masked_fill' for an elementwise record of one of those ops (aten.mul.Tensor, mul_,
    onnx::Mul ...)."""
    if r.kind is not OpKind.ELEMENTWISE or not r.shapes:
        return None
    op = r.op.lower().rsplit("::", 1)[-1].removeprefix("aten.").split(".")[0].strip("_")
    return op if op in _MASK_OPS else None


def _mask_shape(r: OpRecord) -> tuple[int, ...] | None:
    """The shape of the tensor a mask op writes, when ``r`` could apply an elementwise mask to a weight:
    ``w * mask`` (two operands of one shape, torch.nn.utils.prune's ``weight_orig * weight_mask``), or
    ``torch.where(mask, w, 0)`` / ``w.masked_fill(~mask, 0)`` (operands of that shape or scalars)."""
    op = _mask_op(r)
    if op is None:
        return None
    full = max(r.shapes, key=math.prod)
    if len(full) < 2:
        return None
    if op == "mul":
        return tuple(full) if len(r.shapes) == 2 and r.shapes[0] == r.shapes[1] else None
    return tuple(full) if all(tuple(s) == tuple(full) or not s for s in r.shapes) else None


def _gemm_operands(g: OpRecord) -> tuple[tuple[tuple[int, ...], ...], int] | None:
    """(the shapes a weight feeding GEMM ``g`` has, the element count of its activation operand): a linear's
    weight [n, k] (or the [k, n] it is multiplied as) and its [m, k] input, a convolution's [n, c/groups, *kernel]
    weight and its input; None for a batched GEMM (two activations, no weight)."""
    if g.kind is OpKind.CONV and len(g.shapes) >= 2:
        return (tuple(g.shapes[1]),), math.prod(g.shapes[0])
    if g.kind is OpKind.MATMUL and g.dim("b", 1) == 1:
        m, n, k = g.dim("m"), g.dim("n"), g.dim("k")
        return ((n, k), (k, n)), m * k
    return None


def _parent(module: str) -> str:
    return module.rsplit(".", 1)[0] if "." in module else ""


def _transparent(x: OpRecord) -> bool:
    """An op a masked weight passes through on its way to its GEMM without changing size: a view, a cast or copy of
    one tensor, an ignored op, the mask of the layer's bias (1-D). A copy of several tensors (``torch.cat``,
    ``stack``) makes a bigger one, whose size no longer tells a weight from an activation."""
    if x.kind is OpKind.MEMORY:
        tensors = [tuple(t) for t in x.shapes if t]
        return len(tensors) <= 1 or ("copy" in x.op.lower() and len(set(tensors)) == 1)  # copy_(dst, src)
    return (x.kind is OpKind.VIEW or x.status is Status.IGNORED
            or bool(_mask_op(x) and all(len(t) <= 1 for t in x.shapes)))


def _computed_in_forward(fwd: list[tuple[int, OpRecord]], pos: int, shape: tuple[int, ...]) -> bool:
    """Whether the tensor the mask op ``fwd[pos]`` masks is an activation a GEMM of its module wrote: walking back
    through the ops of its module that read a tensor of the mask's shape (``h * sigmoid(h)``, a where /
    masked_fill), a GEMM of the module wrote it (``adj @ (h * g)`` after ``h = x @ w``: the masked operand is an
    activation, not a weight). A weight is a parameter; a mask computed from it (``w.abs() > t``) reads
    weight-shaped tensors, written by no GEMM."""
    module = fwd[pos][1].module
    for _, x in reversed(fwd[:pos]):
        if x.module != module:
            return False
        if x.kind in (OpKind.MATMUL, OpKind.CONV):
            return x.kind is OpKind.MATMUL and x.dim("b", 1) == 1 and (x.dim("m"), x.dim("n")) == shape
        if not any(tuple(t) == shape for t in x.shapes) and x.kind is not OpKind.VIEW:
            return False
    return False


def _widths(g: OpRecord) -> tuple[int, int]:
    """(input, output) features of a linear / convolution's GEMM."""
    if g.kind is OpKind.CONV:
        return g.shapes[0][1], g.shapes[1][0]
    return g.dim("k"), g.dim("n")


def _pruning_masks(records) -> dict[int, str]:
    """Records that multiply a mask into the weight of a linear/convolution (forward) or into its gradient
    (backward): {index: the layer's module}.

    A forward mask op counts when the first op after it (past views, single-tensor casts and copies, a bias' mask)
    is a linear/conv GEMM whose weight has the mask op's shape, and either
    - it runs in the GEMM's parent module, as a forward pre-hook does (torch.nn.utils.prune's ``weight_orig *
      weight_mask`` runs before the layer's module is entered), and the layer's backward applies the same mask to
      the weight's gradient (autograd runs ``grad * mask`` inside the layer, between its GEMM and the weight). An
      activation computed in the parent just before a layer (SwiGLU's ``silu(gate(x)) * up(x)`` before ``down``,
      with tokens == hidden the [n, k] shape of ``down``'s weight; ONNX's topological order puts ``x *
      sigmoid(x)`` just before ``up``) has its backward in the parent;
    - or it runs in the GEMM's own module (a masked layer's forward: ``F.linear(x, torch.where(mask, w, 0))``),
      the GEMM's activation operand has another size than the weight (with as many elements, a [tokens,
      features] activation feeding the GEMM cannot be told from its weight), and the masked tensor is not one a
      GEMM of the module computed (an activation, the right operand of ``adj @ h``). A fixed structural mask
      (MADE's autoregressive degree masks) cannot be told from a pruning mask by shapes (review: a rule by layer
      widths silenced pruned FFNs, autoencoders and same-width MLPs): it is reported too."""
    out: dict[int, str] = {}
    fwd = [(i, r) for i, r in enumerate(records) if r.phase is Phase.FORWARD and not r.recompute]
    in_layer: dict[int, tuple[int, OpRecord, list[int]]] = {}  # GEMM position -> (mask index, GEMM, masked grads)
    for pos, (i, r) in enumerate(fwd):
        shape = _mask_shape(r)
        if shape is None:
            continue
        gpos = next((p for p in range(pos + 1, len(fwd)) if not _transparent(fwd[p][1])), None)
        g = fwd[gpos][1] if gpos is not None else None
        ops = _gemm_operands(g) if g is not None else None
        if ops is None or shape not in ops[0] or r.module not in (g.module, _parent(g.module)):
            continue
        grads = [j for j, x in enumerate(records) if x.phase is Phase.BACKWARD and not x.recompute
                 and x.module == g.module and _mask_shape(x) == shape]  # the mask applied to the weight's gradient
        if r.module != g.module:
            if grads:
                out[i] = g.module
                out.update((j, g.module) for j in grads)
        elif ops[1] != math.prod(shape) and not _computed_in_forward(fwd, pos, shape):
            in_layer[gpos] = (i, g, grads)
    for i, g, grads in in_layer.values():
        out[i] = g.module
        out.update((j, g.module) for j in grads)
    return out


@register
class DensePruningMask(Rule):
    code = "WL105"
    name = "dense-pruning-mask"
    severity = "warning"
    summary = "Unstructured pruning mask multiplied into a weight: the GEMM stays dense, no energy is saved"
    what = """
        Detects an elementwise mask applied to the weight of the Linear/Conv that runs right after it, whose GEMM
        still runs at full size: ``weight_orig * weight_mask`` in a forward pre-hook (what torch.nn.utils.prune
        inserts; counted when the layer's backward masks the weight's gradient too), or ``w * mask``,
        ``torch.where(mask, w, 0)`` or ``masked_fill`` in the layer's own forward (when its input has another size
        than its weight). An activation computed just before a layer (SwiGLU's ``silu(gate(x)) * up(x)``, shaped
        like the next projection's weight when tokens == hidden), one a GEMM of the layer computed, or one
        concatenated with another before the GEMM is not a mask. A fixed structural mask in a layer's forward
        (MADE / MAF's autoregressive degree masks) looks exactly like a pruning mask and is reported too: there is
        nothing to remove, so silence it with a noqa comment (its mask ops are still work). Zeros in a dense tensor are
        multiplied like any other value; the mask op adds work. The saving shown is the mask ops' own energy
        (forward, and the masked gradient in backward); the dense GEMM cost remains until the layer is made
        structurally smaller.
    """
    why = """
        Unstructured sparsity does not reduce dense cuBLAS/cuDNN time or energy; Mei & Stamp measured that
        unstructured pruning and low-rank factorization saved no training/inference energy while lower precision
        did. Only structured sparsity (whole channels/heads removed, or 2:4 sparse tensor cores) shrinks the kernels.
    """
    example = """
        prune.l1_unstructured(model.fc, "weight", amount=0.9)   # 90% zeros, same dense GEMM + a mask multiply
    """
    use_instead = """
        prune.ln_structured(model.fc, "weight", amount=0.5, n=2, dim=0) then rebuild the layer smaller,
        or 2:4 semi-structured sparsity (torch.sparse.to_sparse_semi_structured) on Ampere+,
        or lower precision (bf16/fp8) which does save energy
    """
    sources = ("Mei & Stamp, energy of model compression techniques (seed paper)",
               "PyTorch torch.nn.utils.prune docs (forward_pre_hook computes weight = weight_orig * weight_mask)")
    valid = (
        Case("plain linear", {"ops": [{"op": "linear", "m": 4096, "n": 1024, "k": 1024, "module": "fc"}]}),
        Case("SwiGLU's gate * up before down, tokens == hidden (512): an activation shaped like down's weight",
             {"ops": [{"op": "mask", "shape": [512, 1376], "module": "mlp"},
                      {"op": "linear", "m": 512, "n": 512, "k": 1376, "module": "mlp.down"}]}),
    )
    invalid = (
        Case("pruned linear keeps dense GEMM",
             {"ops": [{"op": "mask", "shape": [1024, 1024], "module": "fc"},
                      {"op": "linear", "m": 4096, "n": 1024, "k": 1024, "module": "fc"}]},
             expect="stays dense"),
    )

    def check(self, ctx):
        energy = ctx.op_energy()
        masked: dict[str, float] = defaultdict(float)
        idx = _pruning_masks(ctx.graph.records)
        for i, owner in idx.items():
            masked[owner] += energy[i]
        if not masked:
            return
        records = [r for i, r in enumerate(ctx.graph.records) if i not in idx]
        other = ctx.reestimate(graph=replace_records(ctx.graph, records))
        kwh, pct = ctx.saving(other)
        names = sorted(masked)
        yield ctx.finding(
            f"weight of {', '.join(repr(n) for n in names[:3])}{' ...' if len(names) > 3 else ''} is multiplied by a "
            "pruning mask but its GEMM stays dense: unstructured pruning saves no energy; remove the mask "
            "(prune.remove) and use structured pruning (smaller layer), 2:4 sparsity or lower precision",
            layer=names[0] or None, saving_kwh=kwh, saving_pct=pct)


# ---- WL106 ----------------------------------------------------------------------------------------------------

def _is_bias_or_view(r: OpRecord) -> bool:
    if r.kind in (OpKind.VIEW, OpKind.MEMORY) or r.status is Status.IGNORED:  # views, copies, autocast casts
        return True
    op = r.op.lower()
    return r.kind is OpKind.ELEMENTWISE and "add" in op and any(len(s) == 1 for s in r.shapes)


def _casts_activation(r: OpRecord, m: int, rank: int) -> bool:
    """A copy / cast of an [m, rank] tensor: the second GEMM's input comes in another dtype than the first GEMM
    wrote (autocast casts an fp32 input it did not compute; the first factor's output is already half)."""
    op = r.op.lower()
    return r.kind is OpKind.MEMORY and ("to_copy" in op or op.endswith("cast")) and bool(r.shapes) \
        and len(r.shapes[0]) >= 2 and r.shapes[0][-1] == rank and math.prod(r.shapes[0]) == m * rank


def _factor_link(graph, a: OpRecord, b: OpRecord) -> bool:
    """Evidence that GEMM ``b``'s input is GEMM ``a``'s output (the records hold no tensor identities; ``b``
    follows ``a`` with only bias adds, views, casts or dropout between, and its [m, r] input has the shape of
    ``a``'s output): ``a`` and ``b`` run in two children of one nn.Sequential (any child between them ran only
    those ops), which hands each child's output to the next; or ``b``'s input needs a gradient (``b``'s backward
    computes the input gradient, an [m, r] GEMM dY·Bᵀ), which the output of ``a`` (a trained layer) does and an
    unrelated model input does not. The gradient GEMM is told from ``b``'s weight gradient only when m != n."""
    types = dict(graph.modules)
    if a.module != b.module and _parent(a.module) == _parent(b.module) \
            and types.get(_parent(a.module)) == "Sequential":
        return True
    m, rank, n = b.dim("m"), b.dim("k"), b.dim("n")
    return m != n and any(
        x.phase is Phase.BACKWARD and not x.recompute and x.kind is OpKind.MATMUL and x.module == b.module
        and x.dim("b", 1) == 1 and (x.dim("m"), x.dim("n"), x.dim("k")) == (m, rank, n) for x in graph.records)


@register
class LowRankNoSaving(Rule):
    code = "WL106"
    name = "low-rank-no-saving"
    severity = "warning"
    summary = "A low-rank factorized pair of linear layers whose rank is too high to cost less than the dense layer"
    what = """
        Finds two consecutive forward GEMMs with nothing but bias adds, views, casts or dropout between them, x[m, k]
        -> [m, r] -> [m, n] with r < min(k, n) (a factorization W ≈ B·A of rank r), where r >= k·n / (k + n): the
        pair then does at least as many FLOPs as the dense k x n layer, plus an extra activation round trip. The
        second GEMM must read the first one's output, not an [m, r] tensor from elsewhere: nothing casts an [m, r]
        tensor between them, and either the two layers are children of one nn.Sequential (which hands each child's
        output to the next) or the second GEMM computes an input gradient in backward (its input is trained; a
        model input is not; told from the weight gradient when m != n). Factors held in one module (``(x @ A) @ B``) count. The saving is the pair's
        energy scaled to the dense layer's FLOPs, a lower bound of what the dense layer saves when run (the message
        says so): the second factor's input-gradient GEMM, the weight casts and the larger optimizer step are not
        priced.
    """
    why = """
        Low-rank factorization only pays when m·r·(k + n) < m·k·n. Mei & Stamp found low-rank factorization saved no
        energy in practice; a rank chosen "for compression" above the break-even rank costs more than the layer it
        replaced.
    """
    example = """
        nn.Sequential(nn.Linear(1024, 768, bias=False), nn.Linear(768, 1024))   # r=768 > 1024*1024/2048 = 512
    """
    use_instead = """
        nn.Linear(1024, 1024)                   # or a rank well below k*n/(k+n), e.g. r <= 256
    """
    sources = ("Mei & Stamp, energy of model compression techniques (seed paper)",)
    options = {"margin": Option("margin", 1.0, positive, "flag when r >= margin x k·n/(k+n)")}
    valid = (
        Case("rank 64 of a 1024x1024 layer", {"ops": [
            {"op": "linear", "m": 4096, "n": 64, "k": 1024, "module": "down"},
            {"op": "linear", "m": 4096, "n": 1024, "k": 64, "module": "up"}]}),
        Case("MLP with an activation between the layers", {"ops": [
            {"op": "linear", "m": 4096, "n": 4096, "k": 1024, "module": "fc1"},
            {"op": "elementwise", "name": "gelu", "shape": [4096, 4096], "module": "act"},
            {"op": "linear", "m": 4096, "n": 1024, "k": 4096, "module": "fc2"}]}),
    )
    invalid = (
        Case("rank 768 of a 1024x1024 layer: 1.5x the dense FLOPs", {"ops": [
            {"op": "linear", "m": 4096, "n": 768, "k": 1024, "module": "down"},
            {"op": "linear", "m": 4096, "n": 1024, "k": 768, "module": "up"}], "params": 1000},
             expect="rank 768", saving_pct=100 / 3),
        Case("factors held in one module, (x @ A) @ B", {"ops": [
            {"op": "linear", "m": 4096, "n": 768, "k": 1024, "module": "lowrank"},
            {"op": "linear", "m": 4096, "n": 1024, "k": 768, "module": "lowrank"}], "params": 1000},
             expect="'lowrank' is a rank 768", saving_pct=100 / 3),
    )

    def check(self, ctx):
        recs = ctx.graph.records
        energy = ctx.op_energy()
        fwd = [(i, r) for i, r in enumerate(recs) if r.phase is Phase.FORWARD]
        pairs = []
        prev = None  # (index, record) of the last forward GEMM with nothing but bias/views/dropout since
        cast = False  # its [m, r] output was copied / cast since: what follows does not read the GEMM's output
        for i, r in fwd:
            if r.kind is OpKind.MATMUL and r.status is Status.HANDLED:
                if prev is not None and not cast:
                    j, a = prev
                    m, r_, k = a.dim("m"), a.dim("n"), a.dim("k")
                    if (r.dim("m") == m and r.dim("k") == r_ and a.dim("b", 1) == 1 and r.dim("b", 1) == 1):
                        n = r.dim("n")
                        if k and n and r_ < min(k, n) and r_ >= ctx.options["margin"] * k * n / (k + n) \
                                and _factor_link(ctx.graph, a, r):
                            pairs.append((a, r, k, r_, n))
                prev, cast = (i, r), False
            elif prev is not None and (_is_bias_or_view(r) or (
                    r.kind is OpKind.DROPOUT and r.shapes
                    and math.prod(r.shapes[0]) == prev[1].dim("m") * prev[1].dim("n"))):
                cast = cast or _casts_activation(r, prev[1].dim("m"), prev[1].dim("n"))
            else:
                prev = None
        if not pairs:
            return
        # energy of the pairs' GEMMs (all phases) scaled to the dense layer's FLOPs
        saved_frac_energy = 0.0
        tot = sum(energy) or 1.0
        for a, b, k, r_, n in pairs:
            sizes = (m_ := a.dim("m")) * r_ * k, m_ * r_ * n  # the pair's GEMMs, forward and backward
            e_pair = sum(e for rr, e in zip(recs, energy) if rr.module in (a.module, b.module)
                         and rr.kind is OpKind.MATMUL and rr.dim("m") * rr.dim("n") * rr.dim("k") in sizes)
            saved_frac_energy += e_pair * (1 - (k * n) / (r_ * (k + n))) / tot
        base = ctx.energy_kwh
        kwh = base * saved_frac_energy if base else None
        a, b, k, r_, n = pairs[0]
        more = f" (and {len(pairs) - 1} more pair(s))" if len(pairs) > 1 else ""
        pair = f"'{a.module}'" if a.module == b.module else f"'{a.module}' -> '{b.module}'"
        yield ctx.finding(
            f"{pair}{more} is a rank {r_} factorization of a {k}x{n} layer: "
            f"{r_ * (k + n) / (k * n):.2f}x the dense FLOPs (break-even rank {k * n // (k + n)}); use the dense layer "
            "or a much lower rank" + ("; the estimated saving is a lower bound: it scales the pair's GEMMs to the "
                                      "dense layer's FLOPs and leaves out the second factor's input-gradient GEMM, "
                                      "weight casts and the larger optimizer step, which the dense layer also saves"
                                      if kwh else ""),
            layer=a.module or None, saving_kwh=kwh, saving_pct=saved_frac_energy if kwh else None)


# ---- WL107 ----------------------------------------------------------------------------------------------------

_SAVED_KEYS = ("activation_bytes", "activation_bytes_fp32", "activation_bytes_cast_dup")


def _extra_without_checkpointing(graph) -> dict:
    """The graph's ``extra`` as a trace without activation checkpointing would give it: the torch frontend records
    what the checkpointed blocks would have saved (``activation_without_checkpointing``); a graph that traced
    checkpointing without that figure falls back to wattlint.memory's stated upper bound (the forward's written
    bytes); a frontend that never traced it (ONNX) already holds the figure without checkpointing."""
    extra = {k: v for k, v in dict(graph.extra or {}).items()
             if k not in ("activation_checkpointing", "activation_without_checkpointing")}
    whole = (graph.extra or {}).get("activation_without_checkpointing")
    if whole:
        extra.update(whole)
    else:
        from ...memory import checkpointing_traced  # (here: a cached check must not load the estimator)

        if not checkpointing_traced(graph):
            return extra
        for k in _SAVED_KEYS:
            extra.pop(k, None)
    return extra


@register
class UnneededCheckpointing(Rule):
    code = "WL107"
    name = "unneeded-checkpointing"
    severity = "warning"
    summary = "Activation checkpointing on a model that fits in GPU memory without it"
    what = """
        When the plan uses activation checkpointing, full or selective (``--recompute selective``: the attention
        core re-run in backward), or the trace contains recomputed forward ops, re-estimates the run without it (the
        run with the recompute flags left off, as the command traces and plans it, when ``--recompute selective`` /
        ``full`` or ``--activation-checkpointing`` turned it on; else the traced graph without its recompute
        records); if that
        still fits in GPU memory with the memory model's error band to spare (verdict 'fits'; a 'tight' run may not),
        the recomputation is pure waste, and the saving is that re-estimate's.
    """
    why = """
        Checkpointing trades memory for compute: it re-runs (most of) the forward pass during backward, ~33% more
        FLOPs per step for full recomputation (Chen et al., 2016, "Training Deep Nets with Sublinear Memory Cost").
        If the activations fit anyway, that energy buys nothing.
    """
    example = """
        model.gradient_checkpointing_enable()   # on a 100M-parameter model on an 80 GB GPU
    """
    use_instead = """
        leave it off (or checkpoint only some blocks), and spend the memory on a larger micro-batch
    """
    sources = ("Chen et al., Training Deep Nets with Sublinear Memory Cost, 2016",)
    valid = (
        Case("no checkpointing", {"ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096}]}),
        Case("checkpointing needed: 83.8 GiB without it, 71.8 GiB with it on 80 GiB", {
            "ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096},
                    {"op": "elementwise", "shape": [65536, 65536], "count": 2},
                    {"op": "recompute", "of": {"op": "linear", "m": 4096, "n": 4096, "k": 4096}}],
            "activation_checkpointing": True, "params": 4_500_000_000}),
        Case("checkpointing on, nothing recomputed in the trace: nothing to save", {
            "ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096}],
            "activation_checkpointing": True, "params": 1000}),
    )
    invalid = (
        Case("small model recomputes its forward", {
            "ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096},
                    {"op": "recompute", "of": {"op": "linear", "m": 4096, "n": 4096, "k": 4096}}],
            "activation_checkpointing": True, "params": 1000}, expect="fits without it", saving_pct=25.0),
    )

    def check(self, ctx):
        est = ctx.estimate
        recompute = [r for r in ctx.graph.records if r.recompute]
        mode = est.plan.recompute if est.plan.recompute != "none" else \
            ("full" if est.plan.activation_checkpointing else "none")
        if not (mode != "none" or recompute):
            return
        other = None
        opts = ctx.request_options
        flagged = opts.get("recompute") in ("selective", "full") or opts.get("activation_checkpointing")
        if flagged and (recompute or mode == "selective"):
            # the flags turned it on (--recompute selective / full, --activation-checkpointing): the claim is the run
            # without them (left off), traced and planned as the command does (review: with --recompute full,
            # dropping the recompute records from the traced graph was 2.7 % off the re-run; a full-recompute trace
            # with nothing recomputed keeps the graph route below: nothing to save). A re-run that still
            # recomputes (the model's own code checkpoints) keeps the traced graph without its recompute records
            lit = ctx.literal(recompute=None, activation_checkpointing=None)
            if lit is not None and not any(r.recompute for r in lit.graph.records) \
                    and lit.plan.recompute == "none" and not lit.plan.activation_checkpointing:
                other = lit
        if other is None:
            graph = replace_records(ctx.graph, [r for r in ctx.graph.records if not r.recompute],
                                    extra=_extra_without_checkpointing(ctx.graph))
            plan = dataclasses.replace(est.plan, activation_checkpointing=False, recompute="none")
            other = ctx.reestimate(graph=graph, plan=plan)
        # only when the run without it clearly fits: a tight one (within the memory model's error band) may not
        if other is None or other.memory.verdict != "fits":
            return
        kwh, pct = ctx.saving(other)
        gib = float(other.memory.peak_bytes_per_gpu) / 2**30
        cap = float(other.memory.gpu_memory_bytes) / 2**30
        # the share of the step's FLOPs the recompute adds, from the two estimates: a frontend that did not trace the
        # recompute (ONNX: the forward is priced once more in backward) has no recompute records to count
        f_with, f_without = float(est.per_step.flops), float(other.per_step.flops)
        if f_with > 0:
            share = max(0.0, 1.0 - f_without / f_with)
        else:
            share = sum(r.flops for r in recompute) / (sum(r.flops for r in ctx.graph.records) or 1)
        if share < 0.005 and not (kwh and kwh > 0):  # checkpointing that recomputes nothing here costs nothing
            return
        what = ("selective recompute (--recompute selective) re-runs the attention core and" if mode == "selective"
                and not recompute else "activation checkpointing")
        yield ctx.finding(
            f"{what} recomputes {share:.0%} of the step's FLOPs but the model fits without it "
            f"({gib:.1f} of {cap:.3g} GiB); turn it off or use the memory for a larger micro-batch",
            saving_kwh=kwh, saving_pct=pct)

