"""WL2xx — model x GPU fit: memory, SM occupancy, the right-sized GPU."""

from __future__ import annotations

import dataclasses
import math

from ...types import OpKind, Phase, Status
from ...report import units
from ...report.units import energy_kwh as fmt_kwh
from ..engine import NO_SAVING_UNFIT, replace_records
from ..registry import register
from ..rule import Case, Option, Rule, fraction, positive, positive_int, gpu_list

GIB = 2**30

# (the estimator's modules, hardware / plan / parallel, are imported inside the checks that use them: a cached
# `wattlint check` loads the rules for their totals-only checks and must not import the estimator)


@register
class DoesNotFit(Rule):
    code = "WL201"
    name = "does-not-fit"
    severity = "error"
    summary = "Peak training memory per GPU exceeds, or may exceed, the GPU's memory"
    what = """
        Compares the estimate's peak training memory per GPU (weights, gradients, optimizer state, activations,
        workspace) with the GPU's usable memory. The run would fail with CUDA out-of-memory, so the energy estimate
        describes a run that cannot happen. A peak within the memory model's error band of the memory (measured
        peaks 0.95-1.15x the prediction: the estimate's verdict 'tight'), below or above it, is a warning, as the
        run may or may not fit (a LitGPT 7B LoRA run at 0.97 of the usable memory went out of memory); beyond the
        band, an error. Each remedy the request's flags can re-run (a smaller micro-batch by ``--grad-accum``,
        ``--activation-checkpointing``, ``--precision bf16``, ``--sharding`` over the data-parallel GPUs,
        ``--optimizer-impl fused`` where the foreach optimizer step's temporaries set the peak) is re-estimated as
        that flag runs: only those that fit with the band to spare (verdict 'fits') are offered (the micro-batch
        named at the size that does); one that would not is named with the memory it would need. While it is an
        error (beyond the band), the other rules still give their advice but claim no
        saving (a saving against a run that cannot start means nothing): their findings say so, with
        ``saving_kwh`` and ``saving_pct`` null, and WL203 names a lower-power GPU that holds the run with what it
        would cost there, not a saving.
    """
    why = """
        An OOM found after the job was queued and started wastes the start-up energy and the engineer's time;
        the memory model is the same one the estimate reports (see docs/ENERGY_MODEL.md, "Memory").
    """
    example = """
        7B-parameter model, AdamW, fp32 master weights, 1 x A100 80GB: 16 bytes/parameter = 112 GB before activations
    """
    use_instead = """
        smaller micro-batch with gradient accumulation (--grad-accum), activation checkpointing, ZeRO/FSDP sharding
        over more GPUs (--sharding zero3 --gpus 8), bf16 autocast, or a GPU with more memory
    """
    sources = ("Rajbhandari et al., ZeRO: Memory Optimizations Toward Training Trillion Parameter Models, SC 2020",)
    valid = (Case("small model on an 80 GB GPU", {"ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096}]}),)
    invalid = (
        Case("7B parameters with AdamW on one 80 GB GPU",
             {"ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096}], "params": 7_000_000_000},
             expect="exceeds"),
    )

    def check(self, ctx):
        mem = ctx.estimate.memory
        if mem.verdict == "fits":
            return
        peak = mem.peak_bytes_per_gpu / GIB
        cap = mem.gpu_memory_bytes / GIB
        static = sum(v for k, v in (mem.breakdown or {}).items() if k in STATIC_MEMORY) / GIB
        lead = ""
        if static > cap:  # no activation saving can make it fit: say what can
            lead = (f"weights, gradients and optimizer state alone take {static:.1f} GiB, so they must be split "
                    f"(tensor / pipeline parallelism or sharding over more GPUs); ")
        plan = ctx.estimate.plan
        remedies = _memory_remedies(plan, activations_help=static <= cap, gpu=ctx.estimate.gpu,
                                    step_temporaries=bool((mem.breakdown or {}).get("optimizer_step_temporaries")))
        # each remedy the request can re-run is re-estimated (the literal flag, as the command traces and plans it):
        # one that still does not fit is not offered as a fix but named with the memory it would still need
        # (review: --activation-checkpointing offered on a 15 GiB T4 where it needs 15.38 GiB; --grad-accum 2 fits)
        fits, short = [], []
        for text in remedies:
            changes = _remedy_changes(plan, text)
            if changes is None:
                fits.append(text)
                continue
            text, other = _first_fit(ctx, plan, text, changes)
            if other is None and ctx.request_options:
                continue  # the request path refuses the changed options: the user could not run it either
            if other is None or other.memory.verdict == "fits":
                fits.append(text)
            else:
                short.append(f"{_remedy_flag(text)} alone would still need "
                             f"{other.memory.peak_bytes_per_gpu / GIB:.2f} GiB"
                             + (" (tight)" if other.memory.verdict == "tight" else ""))
        # within the memory model's error band (measured peaks 0.95-1.15x the prediction: wattlint.memory
        # memory_verdict 'tight') the run may still fit: a warning, not an error a pre-commit check fails on
        from ...memory import VERDICT_BAND

        tight = mem.verdict == "tight"
        band = f"measured peaks {VERDICT_BAND[0]:.2f}-{VERDICT_BAND[1]:.2f}x the prediction"
        if not mem.fits:
            head = (f"peak training memory {peak:.1f} GiB per GPU exceeds the {ctx.estimate.gpu.name}'s {cap:.3g} GiB "
                    f"usable" + (f" (within the memory model's error band, {band}: it may still fit)" if tight else ""))
        else:  # tight below the capacity: the band's top does not fit
            head = (f"peak training memory {peak:.1f} GiB per GPU is within the memory model's error band of the "
                    f"{ctx.estimate.gpu.name}'s {cap:.3g} GiB usable ({band}: it may run out of memory)")
        yield ctx.finding(head + ": " + lead + ", ".join(fits) + "".join(f"; {t}" for t in short),
                          severity="warning" if tight else None)


def _would_not_fit(run) -> str:
    """How a variant that holds the run worse than planned is said: 'would not fit', or 'might not fit (tight)'
    within the memory model's error band."""
    return "would not fit" if run.memory.verdict == "does_not_fit" else "might not fit (tight)"


def _remedy_changes(plan, text: str) -> list[dict] | None:
    """The option changes (tried in order, the first that fits wins) that re-run remedy ``text`` of
    :func:`_memory_remedies`; None for a remedy no flag of this request re-runs (more GPUs, another GPU)."""
    if text.startswith("lower the micro-batch"):
        g, out, k = max(1, plan.grad_accum), [], 2
        while plan.micro_batch_size // k >= 1 and plan.micro_batch_size % k == 0:
            out.append({"grad_accum": g * k, "micro_batch_size": None, "batch_size": plan.batch_size})
            k *= 2
        return out or None
    if text.startswith("use --activation-checkpointing"):
        return [{"recompute": "full", "activation_checkpointing": None}]
    if text.startswith("--optimizer-impl "):
        return [{"optimizer_impl": text.split()[1]}]
    if text.startswith(("bf16 autocast", "fp16 autocast")):
        return [{"precision": text[:4]}]
    if text.startswith("--sharding") and plan.data_parallel > 1:
        return [{"sharding": text.split()[1]}]
    return None


def _first_fit(ctx, plan, text: str, tries: list[dict]):
    """(the remedy's text, the re-estimate of the first change in ``tries`` that fits, else of the last one; None
    when none can be re-run). A smaller micro-batch names the one that fits: '... to 8 (--grad-accum 2)'."""
    other = None
    for changes in tries:
        got = ctx.literal(**changes)
        if got is None:
            continue
        other = got
        if got.memory.verdict == "fits":
            break
    if other is not None and "grad_accum" in tries[0]:
        text = (f"lower the micro-batch per GPU to {other.plan.micro_batch_size} (now {plan.micro_batch_size}: "
                f"--grad-accum {other.plan.grad_accum})")
    return text, other


def _remedy_flag(text: str) -> str:
    if text.startswith("lower the micro-batch"):
        return text.replace("lower the micro-batch per GPU to", "a micro-batch of")
    return text.replace("use ", "")


# memory that does not depend on the micro-batch (wattlint.memory's breakdown keys)
STATIC_MEMORY = ("weights", "weight_casts", "gradients", "ddp_buckets", "optimizer_state", "master_weights")


def _memory_remedies(plan, activations_help: bool = True, gpu=None, step_temporaries: bool = False) -> list[str]:
    """What the plan does not do yet that lowers memory per GPU (advice it already follows is not repeated);
    ``activations_help``: False when the static memory alone exceeds the GPU, so that lowering activations
    (micro-batch, recompute) cannot make it fit and is not offered; ``step_temporaries``: the foreach optimizer
    step's temporaries set the peak, which only a fused (or for-loop) step removes (review s52: a smaller
    micro-batch and checkpointing were offered at the same peak)."""
    out = []
    if step_temporaries:
        # torch fuses Adam / AdamW / SGD (and Adagrad); others (Adadelta, RMSprop...) step one tensor at a time
        impl = "fused" if (plan.optimizer or "adamw").lower() in ("adam", "adamw", "sgd", "adagrad") else "for-loop"
        out.append(f"--optimizer-impl {impl} (the foreach optimizer step's temporaries set the peak)")
    if activations_help and plan.micro_batch_size > 1:
        out.append(f"lower the micro-batch per GPU (now {plan.micro_batch_size}: --grad-accum or more --gpus)")
    if activations_help and plan.recompute != "full":
        out.append("use --activation-checkpointing")
    if plan.sharding not in ("zero3", "fsdp"):
        # under pipeline parallelism DeepSpeed's engine takes ZeRO 0 / 1 only (plan.py refuses zero2 / zero3 there:
        # review, the finding offered a setting the estimate refuses); FSDP shards the weights with a pipeline too
        how = "--sharding fsdp" if plan.pipeline_parallel > 1 else "--sharding zero3"
        out.append(how + (f" over the {plan.data_parallel} data-parallel GPUs"
                          if plan.data_parallel > 1 else " with more --gpus"))
    elif plan.data_parallel == 1:
        out.append(f"more --gpus (--sharding {plan.sharding} shards nothing over one data-parallel GPU)")
    if plan.precision in ("default", "fp32", "tf32"):
        from ...hardware import precision_support

        # the half precision the GPU has (a T4 has no bf16: the command refuses --precision bf16 there; review)
        half = next((p for p in ("bf16", "fp16") if gpu is None or precision_support(gpu, p)[0]), None)
        if half:
            out.append(f"{half} autocast (--precision {half})")
    out.append("or a GPU with more memory")
    return out


def _tiles(r, key: str | None = None, k: int = 1) -> float:
    """Output tiles (128 x 128 thread blocks) of a GEMM / convolution record, with its ``key`` dim (the one that
    carries the micro-batch, :func:`batch_dims`) ``k`` x larger."""
    from ...energy.prior import gemm_dims

    b, m, n, _ = gemm_dims(r)
    if key == "b":
        b *= k
    elif key == "m":
        m *= k
    elif key == "n":
        n *= k
    return math.ceil(m / 128) * math.ceil(n / 128) * max(1, b)


def batch_dims(graph) -> list[str | None]:
    """Per record of ``graph``, the GEMM dim that grows with the micro-batch: ``b`` for batched GEMMs and
    attention, ``m`` (the rows) for forward GEMMs, convolutions (M = N x output pixels, the backward records
    carry the forward's view) and input gradients, ``k`` for weight gradients (the batch is their reduction);
    None for other records. A backward GEMM's role is read from its dims: the one equal to a row count of the
    same module's forward GEMMs (of any forward GEMM when the module has none) carries the batch (dX = dY @ W:
    m = rows; dW = dY^T @ X: k = rows). When both match because the rows equal the output features (m = k: the two
    GEMMs have the same dims), the module's first such GEMM is dX and the second dW, the order autograd runs them in
    (and the ONNX frontend synthesizes them in); when neither matches, the deeper of m and k is taken as the batch.
    (A convolution's weight gradient keeps ``m``: its record carries the forward's view; :func:`_gemm_waves` leaves
    it out by its ``grad`` tag.) An MoE grouped GEMM (``torch._grouped_mm``) carries the batch in its jagged dim
    (energy.pricing.grouped_operands: ``m`` for 2-D x 3-D, ``k`` for the 2-D x 2-D weight gradient, ``n`` for 3-D x
    2-D), never in ``b``, its groups (the experts); a 3-D x 3-D call (each expert's fixed-capacity buffer) in ``m``."""
    from ...energy.pricing import grouped_operands

    rows_of: dict[str, set[int]] = {}
    every: set[int] = set()
    ties: dict[tuple, int] = {}
    for r in graph.records:
        if (r.kind is OpKind.MATMUL and r.phase is Phase.FORWARD and r.dim("b", 1) == 1 and r.dim("m")
                and "_grouped_mm" not in r.op):
            rows_of.setdefault(r.module, set()).add(r.dim("m"))
            every.add(r.dim("m"))
    out: list[str | None] = []
    for r in graph.records:
        if r.phase not in (Phase.FORWARD, Phase.BACKWARD):
            out.append(None)
        elif r.kind is OpKind.ATTENTION:
            out.append("b")
        elif r.kind is OpKind.CONV and r.dim("m"):
            out.append("m")
        elif r.kind is OpKind.MATMUL and "_grouped_mm" in r.op and r.dim("m"):
            role = grouped_operands(r)
            out.append(role[0] if role else "m")
        elif r.kind is OpKind.MATMUL and r.dim("m"):
            if r.dim("b", 1) > 1:
                out.append("b")
            elif r.phase is Phase.BACKWARD and r.dim("k"):
                rows = rows_of.get(r.module) or every
                m_in, k_in = r.dim("m") in rows, r.dim("k") in rows
                if m_in and k_in and r.dim("m") == r.dim("k"):
                    ties[(r.module, r.dims)] = n = ties.get((r.module, r.dims), 0) + 1
                    out.append("m" if n % 2 else "k")
                else:
                    out.append("m" if m_in and not k_in else "k" if k_in and not m_in else
                               "k" if r.dim("m") < r.dim("k") else "m")
            else:
                out.append("m")
        else:
            out.append(None)
    return out


def scale_batch(graph, k: float, keys: list[str | None] | None = None):
    """The graph traced at ``k`` x its micro-batch: forward/backward GEMM sizes that carry the batch
    (:func:`batch_dims`, or ``keys`` already computed for the graph) and all forward/backward FLOPs and bytes scale
    by k (weights' bytes are a small share); ``k`` below 1 (a smaller micro-batch, that ``k`` x the traced one is a
    whole number) rounds the scaled dims. An MoE grouped GEMM's experts' weights are not a small share: its weight
    operand and weight-gradient output bytes (energy.pricing.grouped_operands) stay, its tokens' bytes scale, and its
    jagged dim becomes the balanced share of the scaled total (what the trace at that batch records)."""
    from ...energy.pricing import grouped_operands

    def times(v):
        return v * k if isinstance(k, int) else max(1, int(round(v * k)))
    out = []
    for r, key in zip(graph.records, keys if keys is not None else batch_dims(graph)):
        if r.phase not in (Phase.FORWARD, Phase.BACKWARD):
            out.append(r)
            continue
        role = grouped_operands(r) if "_grouped_mm" in r.op else None
        if role is not None and key == role[0]:
            _, w_read, w_out = role
            g = max(1, r.dim("b", 1) or 1)
            other = math.prod(r.dim(d, 0) for d in "mnk" if d != key)
            total = r.flops / (2 * other) if other > 0 else r.dim(key, 0) * g
            jag = max(1, -(-int(round(total * k)) // g))
            out.append(dataclasses.replace(
                r, flops=r.flops * k, dims=tuple((n, jag if n == key else v) for n, v in r.dims),
                bytes_read=r.bytes_read * (w_read + (1.0 - w_read) * k),
                bytes_written=r.bytes_written * (w_out + (1.0 - w_out) * k)))
            continue
        dims = tuple((n, times(v) if n == key else v) for n, v in r.dims) if key else r.dims
        out.append(dataclasses.replace(r, flops=r.flops * k, bytes_read=r.bytes_read * k,
                                       bytes_written=r.bytes_written * k, dims=dims))
    return replace_records(graph, out, micro_batch=times(max(1, graph.micro_batch)))


def _gemm_waves(graph, energy, sm: int, k: int = 1, keys: list[str | None] | None = None
                ) -> tuple[float, float, float | None]:
    """(energy of the step's GEMMs and convolutions, of those counted, their energy-weighted waves at ``k`` x the
    micro-batch). Weight-gradient GEMMs are not counted: the batch is their reduction dim, so a larger micro-batch
    deepens them without adding tiles, and split-K (cuBLAS, CUTLASS; priced by the prior) fills the SMs with their
    few output tiles. Waves are None when nothing is counted."""
    g_e = c_e = w_sum = 0.0
    for r, key, e in zip(graph.records, keys if keys is not None else batch_dims(graph), energy):
        if r.kind in (OpKind.MATMUL, OpKind.CONV) and r.status is Status.HANDLED and r.phase is not Phase.OPTIMIZER:
            g_e += e
            if key == "k" or (r.kind is OpKind.CONV and r.dim("grad") == 2):  # weight gradients
                continue
            c_e += e
            w_sum += e * _tiles(r, key, k) / sm
    return g_e, c_e, (w_sum / c_e if c_e > 0 else None)


@register
class GpuUnderfilled(Rule):
    code = "WL202"
    name = "gpu-underfilled"
    severity = "warning"
    summary = "Micro-batch too small to fill the GPU: GEMMs run in less than one wave of thread blocks"
    what = """
        For the GEMMs and convolutions of the step, counts output tiles (128 x 128 thread blocks) against the GPU's
        SM count: waves = tiles / SMs, weighted by each op's energy. Weight-gradient GEMMs are not counted (the
        batch is their reduction dim: a larger micro-batch deepens them without adding tiles, and split-K fills
        the SMs with their few tiles). Below ``min-waves`` most SMs idle while the board still draws its static
        power. The rule names the smallest power-of-2 multiple of the micro-batch (up to ``max-factor``) whose
        GEMMs, counted again at that size, reach ``min-waves`` (tiles do not double with the rows: 40 rows fill
        one 128-row tile as 80 do), or the largest one with the waves it reaches; the largest that still fits in
        GPU memory when the first does not. How to run it: with gradient accumulation that the multiple divides,
        the same global batch in fewer micro-batches (``--grad-accum``, or ``--micro-batch-size`` where the
        command gives one: the same training); otherwise a k x larger global batch in k x fewer steps for the
        same samples (``--batch-size``, and ``--steps`` divided by k where the command gives the steps; retune the
        learning rate). The saving is what that command estimates (the model traced at that batch); no saving is claimed,
        and the message says so, when the larger micro-batch does not fit or costs more.
    """
    why = """
        GPU energy has a large static part (idle power is 15-25% of TDP on data-center GPUs); a kernel that
        occupies a third of the SMs takes as long as a full one and burns nearly the same power. NVIDIA's
        performance guide calls this wave quantization / tile quantization; del Rey et al. observe oversized GPUs
        wasting energy at low utilization.
    """
    example = """
        batch_size = 4      # ResNet-50 on an H100: convolutions fill a fraction of 132 SMs
    """
    use_instead = """
        batch_size = 64     # scale the learning rate; or a smaller GPU (WL203); or MIG / several jobs per GPU
    """
    sources = ("NVIDIA Deep Learning Performance Guide: wave quantization",
               "del Rey et al., GPU right-sizing and energy (seed paper)")
    options = {
        "min_waves": Option("min_waves", 1.0, positive, "energy-weighted GEMM waves below this are flagged"),
        "min_share": Option("min_share", 0.2, fraction, "minimum share of step energy in GEMM/conv ops"),
        "max_factor": Option("max_factor", 16, positive_int, "largest micro-batch multiplier suggested"),
    }
    valid = (
        Case("large GEMMs fill the SMs", {"ops": [{"op": "linear", "m": 8192, "n": 4096, "k": 4096}]}),
    )
    invalid = (
        Case("micro-batch 8 on an A100: 16 tiles for 108 SMs",
             {"ops": [{"op": "linear", "m": 512, "n": 512, "k": 4096, "backward": False}], "micro_batch": 8,
              "params": 4096 * 512},  # the layer's own weights: the optimizer step is not the bulk of the step
             expect="waves"),
    )

    def check(self, ctx):
        energy = ctx.op_energy()
        tot = sum(energy) or 1.0
        sm = ctx.estimate.gpu.sm_count or 1
        keys = batch_dims(ctx.graph)  # once: every count and the scaled graph below read it
        g_e, _, waves = _gemm_waves(ctx.graph, energy, sm, keys=keys)
        if waves is None or g_e <= 0 or g_e / tot < ctx.options["min_share"]:
            return
        target = ctx.options["min_waves"]
        if waves >= target:
            return
        est, plan = ctx.estimate, ctx.estimate.plan
        gpu, mb, B, g = est.gpu.name, plan.micro_batch_size, plan.batch_size, max(1, plan.grad_accum)
        head = f"GEMMs/convolutions fill {waves:.2f} waves of the {gpu}'s {sm} SMs at micro-batch {mb}: most SMs idle"
        epochs = plan.epochs if plan.dataset_size and plan.epochs else None
        # the multipliers a user can run: powers of 2 up to max-factor, kept within one epoch's samples (a global
        # batch larger than the dataset) unless the global batch stays (fewer micro-batches of gradient accumulation)
        ks = []
        k = 2
        while k <= ctx.options["max_factor"]:
            if g % k == 0 or not (epochs and B * k > plan.dataset_size):
                ks.append(k)
            k *= 2
        if not ks:
            return
        # the smallest multiplier whose GEMMs reach the target, counted on the graph at that micro-batch (tiles do
        # not double with the batch: a row count of 49 fills one 128-row tile at 2x as at 1x); else the largest
        reach = {k: _gemm_waves(ctx.graph, energy, sm, k, keys)[2] or 0.0 for k in ks}
        k = next((k for k in ks if reach[k] >= target), ks[-1])
        if reach[k] <= waves * 1.05:
            yield ctx.finding(f"{head}; a larger micro-batch (up to {ks[-1]}x) adds no thread blocks to them: "
                              "use a smaller GPU (WL203) or run several jobs per GPU (MIG)")
            return

        req = ctx.request_options

        def variant(k):
            """(estimate, how to run it) at ``k`` x the micro-batch: the global batch kept with fewer micro-batches
            of gradient accumulation when ``k`` divides them, else ``k`` x the global batch (fewer steps). The
            flags named are the ones the re-run changes, so that adding them to the command runs it."""
            flags = []
            if g % k == 0:
                changes: dict = {"batch_size": B}
                if req.get("batch_size") is None:  # a batch from the inputs' dims would shrink with the accumulation
                    flags.append(f"--batch-size {B}")
                if req.get("micro_batch_size") is not None:
                    changes.update(micro_batch_size=mb * k, grad_accum=None)
                    flags.append(f"--micro-batch-size {mb * k}")
                else:
                    changes.update(grad_accum=g // k, micro_batch_size=None)
                    flags.append(f"--grad-accum {g // k}")
                why = f"the global batch of {B} in {g // k} micro-batch(es) per step: the same training"
                p = dataclasses.replace(plan, grad_accum=g // k)
            else:
                changes = {"batch_size": B * k}
                flags.append(f"--batch-size {B * k}")
                if req.get("micro_batch_size") is not None:
                    changes["micro_batch_size"] = mb * k
                    flags.append(f"--micro-batch-size {mb * k}")
                # the plan's own step count at the larger batch: an epoch plan's per-epoch ceiling (as the CLI
                # counts it); steps the user gave are divided (the same samples), tokens and epochs re-derive them
                steps = math.ceil(math.ceil(plan.dataset_size / (B * k)) * epochs) if epochs else \
                    max(1, math.ceil(plan.steps / k))
                if req.get("steps") is not None:
                    changes["steps"] = steps
                    flags.append(f"--steps {steps}")
                why = f"same samples, {k}x fewer steps; retune the learning rate"
                p = dataclasses.replace(plan, batch_size=B * k, steps=steps)
            run = ctx.literal(**changes) if req else None
            if run is None:
                run = ctx.reestimate(graph=scale_batch(ctx.graph, k, keys), plan=p)
            return run, f"{' '.join(flags)} ({why})"

        other, how = variant(k)
        fitted = False
        while other is not None and other.memory.fits_worse_than(est.memory) and k > ks[0]:
            k //= 2  # the largest multiplier that still fits
            fitted = True
            other, how = variant(k)
        reached = f"{reach[k]:.2f} waves" + ("" if reach[k] >= target else
                                               ", the most that fits in memory" if fitted else f", the most up to {k}x")
        if other is not None and other.memory.fits_worse_than(est.memory):
            yield ctx.finding(f"{head}; a micro-batch of {mb * k} ({reached}) {_would_not_fit(other)} in GPU "
                              "memory: use a "
                              "smaller GPU (WL203) or run several jobs per GPU (MIG)")
            return
        kwh, pct = ctx.saving(other)
        if kwh is not None and kwh <= 0 and ctx.base_fits:
            yield ctx.finding(f"{head}; a micro-batch of {mb * k} ({reached}) would not lower the energy "
                              f"(est. {units.energy_kwh(-kwh)} more): use a smaller GPU (WL203)")
            return
        yield ctx.finding(f"{head}; raise the micro-batch to {mb * k} ({reached}): {how}; or use a smaller GPU",
                          saving_kwh=kwh, saving_pct=pct)


@register
class SmallerGpuLessEnergy(Rule):
    code = "WL203"
    name = "smaller-gpu-less-energy"
    severity = "info"
    summary = "A lower-power GPU from the database trains this model with less energy, no slower"
    what = """
        Re-estimates the same graph and plan on the GPUs of the database with a lower board power (TDP) than the
        planned one that can hold the run's peak memory (the ``max-candidates`` with the most peak FLOP/s per watt
        for the plan's precision; on a launch-bound step, whose GPU waits on kernel launches for at least half of
        it, those with the lowest idle power), or on ``candidates``, and reports the one with the lowest energy
        when it saves at least ``min-saving`` and takes no longer than ``max-slowdown`` x the planned time, within
        ``time-tolerance`` (default 0: never a slower GPU, as issue 13 requires; a user may allow e.g. 0.01). The GPU's own saving must reach ``min-saving`` too: the candidate in the planned machine (its
        host power per hour and PUE kept), so a switch whose saving is mostly another machine's host power or PUE
        is not reported. The energy claimed is what ``--gpu <candidate>`` with the same flags estimates: the candidate in
        its own platform class (a PCIe server, an SXM node, a desktop: its host power per GPU) with its default PUE
        and nodes, so a GPU whose switch costs more energy is never recommended. When that machine's host power or
        PUE differ from the planned one's, the message names them and adds, as a separate figure, what the candidate
        GPU would cost in the planned machine (its host power per hour and PUE kept): the GPU's own share of the
        saving. (An estimate of an already traced graph, with no flags to re-run, compares in the planned machine.)
        A candidate predicted faster although neither its peak FLOP/s for the plan's precision nor its memory
        bandwidth is above the planned GPU's is a prediction the physics cannot explain: it is never reported.
        A candidate runs in its own nodes: the node size and network between nodes the planned GPU got by default
        are re-derived for it (those the user gave are kept). When the two GPUs are priced by different energy
        models (measured, public-fit, transferred, prior), the message says which.
    """
    why = """
        Large GPUs have high static power; a model that cannot use their compute burns it anyway. del Rey et al.
        show GPU energy should scale with the model: oversized GPUs waste energy at low utilization. A recommendation
        must not trade a faster GPU for a slower one unasked, and must say where the saving comes from.
    """
    example = """
        wattlint small_cnn.onnx --gpu h100 --epochs 30        # 4 M-parameter CNN on a 700 W GPU
        # launch-bound: an L4 takes as long and draws far less; with a deadline that allows a slower GPU:
        # [tool.wattlint.rules.WL203] max-slowdown = 4
    """
    use_instead = """
        wattlint small_cnn.onnx --gpu h100 --compare l4,a10g
        # pick the GPU with the lowest energy that meets the deadline
    """
    sources = ("del Rey et al., GPU right-sizing and energy (seed paper)",)
    options = {
        "min_saving": Option("min_saving", 0.10, fraction, "report only when the energy falls by at least this"),
        "candidates": Option("candidates", (), gpu_list,
                             "GPUs to compare, as --gpu names them (default: all smaller GPUs)"),
        "max_slowdown": Option("max_slowdown", 1.0, positive,
                               "ignore GPUs that take more than this x the time (1.0: never a slower GPU)"),
        "time_tolerance": Option("time_tolerance", 0.0, fraction,
                                 "a candidate within max-slowdown x (1 + this) of the time counts as no slower "
                                 "(default 0: never a slower GPU)"),
        "max_candidates": Option("max_candidates", 6, positive_int,
                                 "re-estimate at most this many GPUs (those with the most peak FLOP/s per watt; "
                                 "on a launch-bound step, the lowest idle power)"),
    }
    valid = (
        Case("large model that needs the big GPU", {"ops": [{"op": "linear", "m": 16384, "n": 8192, "k": 8192}],
                                                     "params": 3_000_000_000}),
        Case("tiny model on an H100 with the default max-slowdown: every lower-power GPU is slower",
             {"ops": [{"op": "linear", "m": 256, "n": 256, "k": 256}], "gpu": "h100-sxm5-80gb", "params": 100_000}),
        Case("compute-bound model: every lower-power GPU is slower",
             {"ops": [{"op": "linear", "m": 8192, "n": 8192, "k": 8192}], "gpu": "h100-sxm5-80gb",
              "params": 200_000_000}),
    )
    invalid = (
        Case("tiny model on an H100, a longer run allowed (max-slowdown 4)",
             {"ops": [{"op": "linear", "m": 256, "n": 256, "k": 256}], "gpu": "h100-sxm5-80gb", "params": 100_000},
             expect="L4 (l4, 72 W) trains it", options={"max_slowdown": 4.0}),
    )

    def check(self, ctx):
        from ...hardware import precision_support
        from ...plan import on_gpu

        est = ctx.estimate
        cur = est.gpu
        wanted = set(ctx.options["candidates"])
        found = []  # (energy claimed, time, candidate, its estimate)
        t0 = est.total.time_h
        need = float(est.memory.peak_bytes_per_gpu)
        half = est.plan.precision if est.plan.precision in ("fp16", "bf16", "fp8", "tf32") else "fp32"
        limit = ctx.options["max_slowdown"]
        # the planned machine's host energy per hour of the run, and the facility overhead (PUE) of the plan: a
        # candidate is compared in the same machine, so a saving is never the host's
        host_per_h = est.total.host_energy_kwh / t0 if t0 > 0 else 0.0
        it = est.total.gpu_energy_kwh + est.total.host_energy_kwh
        pue = est.total.energy_kwh / it if it > 0 else 1.0

        def same_host_kwh(run) -> float:
            return (run.total.gpu_energy_kwh + host_per_h * run.total.time_h) * pue
        pool = []
        for spec in ctx.gpus():
            if spec.key == cur.key or (wanted and spec.key not in wanted):
                continue
            if not wanted and not spec.tdp_w < cur.tdp_w:
                continue
            if need and spec.memory_gb * GIB < need * 0.9:  # cannot fit (10% slack: memory model varies a little)
                continue
            if not precision_support(spec, est.plan.precision)[0]:  # would silently change the plan's precision
                continue
            pool.append(spec)
        # re-estimating is the expensive part: try the most energy-efficient candidates (peak FLOP/s per watt)
        # (a launch-bound step, its GPU waiting on kernel launches for at least half of it, runs no faster on more
        # FLOP/s: its energy is mostly idle power, so the lowest idle power goes first; review: a T4 at 5.0 Wh
        # against 15.8 Wh in the same time was never tried)
        gaps = est.phases.get("idle_gaps") if est.phases else None
        step = est.per_step.time_s
        if gaps is not None and step > 0 and gaps.time_s / step >= 0.5:
            pool.sort(key=lambda g: (g.idle_w, -(g.peak(half) / max(g.tdp_w, 1.0))))
        else:
            pool.sort(key=lambda g: -(g.peak(half) / max(g.tdp_w, 1.0)))
        # the claim is what `--gpu <candidate>` estimates with the same flags (the candidate in its own platform
        # class: its host power, its default PUE, node and network), when the request's options are known; an
        # already traced graph (no options to re-run) falls back to the same-host comparison
        literal = bool(ctx.request_options)
        for spec in pool[:ctx.options["max_candidates"]] if not wanted else pool:
            # in its own nodes: the node size and network the planned GPU got by default are the candidate's own
            # (an H200 NVL was re-estimated with the H100 node's InfiniBand, 2x faster than its table row)
            plan = on_gpu(est.plan, spec)
            if plan is None:
                continue
            # one pricing per candidate: the literal run when the options are known (its GPU energy and time
            # also give the same-host figure), else the plan moved to the candidate
            run = ctx.literal(gpu=spec) if literal else ctx.reestimate(gpu=spec, plan=plan)
            # a candidate holds the run no worse than the planned GPU, and never only within the error band of its
            # memory unless the planned run is no better (a 'tight' candidate may run out of memory)
            if run is None or run.memory.fits_worse_than(est.memory) or run.memory.verdict == "does_not_fit":
                continue
            t = run.total.time_h
            if t0 > 0 and t > t0 * limit * (1.0 + ctx.options["time_tolerance"] + 1e-9):
                continue  # slower than allowed (review: an L4 1.0002x the time was dropped as slower)
            if t0 > 0 and t < t0 * (1.0 - 1e-9) and spec.peak(half) <= cur.peak(half) \
                    and spec.memory_bw_gbs <= cur.memory_bw_gbs:
                # faster on a GPU with no more compute and no more bandwidth (an H200 NVL, the H200 SXM's chip at
                # a lower limit, against a measured H200 SXM): not explainable, not claimed
                continue
            e = run.total.energy_kwh if literal else same_host_kwh(run)
            found.append((e, t, spec, run))
        base = ctx.energy_kwh
        if not found or base <= 0:
            return
        if ctx.base_fits:
            # the GPU's own saving, in the planned machine (its host power per hour and PUE kept), must reach
            # min-saving: a switch whose saving is mostly another platform class's host power or PUE is not a smaller
            # GPU using less energy (review: an A100 -> H100 PCIe switch claimed 28 %, 1.4 % of it the GPU's)
            found = [f for f in found if (base - same_host_kwh(f[3])) / base >= ctx.options["min_saving"]]
            if not found:
                return
        e, t, spec, run = min(found, key=lambda f: f[0])
        kwh, pct = base - e, (base - e) / base
        if not ctx.base_fits:
            # the planned run does not start (WL201): no saving against it; the candidate that holds the run at a
            # lower board power is still worth naming, with what it would cost
            peak = need / GIB
            t_new = units.duration(t * 3600.0)
            yield ctx.finding(
                f"the planned run does not fit in the {cur.name}'s memory ({peak:.1f} GiB per GPU, WL201); "
                f"{spec.name} ({spec.key}, {spec.tdp_w:.0f} W, {spec.memory_gb:g} GB) holds it and trains it with "
                f"{units.energy_kwh(e)} in {t_new}"
                + (f" (--gpu {spec.key}, the same flags)" if literal else "") + f" ({NO_SAVING_UNFIT})")
            return
        if pct < ctx.options["min_saving"]:  # (a switch that costs more energy is never reported)
            return
        p0 = est.per_step.avg_gpu_power_w
        p1 = run.per_step.avg_gpu_power_w
        t_new, t_cur = units.column([t * 3600.0, t0 * 3600.0], units.DURATION)
        same_time = t_new == t_cur  # a launch-bound step takes as long on either GPU: "in 37.5 ms instead of 37.5 ms"
        why = (f"average GPU power {p1:.0f} W instead of {p0:.0f} W"
               + ("" if same_time else f" over {t / t0:.2f} x the time") if t0 > 0 and p0 > 0 else "")
        # the host (CPUs, DRAM, fans, by platform class: energy.host) and the default PUE of the candidate's usual
        # machine can differ from the planned one's: the claim is the literal switch's (its own machine), and the
        # message says how much of it the machine is, with the GPU alone in this machine as a separate figure
        n = max(1, est.plan.gpus)  # per GPU, as the GPU power beside it (the step's host energy is the job's)
        h0 = est.per_step.host_energy_j / est.per_step.time_s / n if est.per_step.time_s > 0 else 0.0
        h1 = run.per_step.host_energy_j / run.per_step.time_s / n if run.per_step.time_s > 0 else 0.0
        same = same_host_kwh(run)
        e_new, e_cur, e_same = units.column([e, base, same], units.ENERGY_KWH)  # one unit
        if literal:
            pue0, pue1 = est.plan.pue, run.plan.pue
            machine = []
            if abs(h1 - h0) >= 0.05 * max(h0, h1, 1e-9):
                c0, c1 = _platform(cur), _platform(spec)
                machine.append(f"host {h1:.0f} W per GPU instead of {h0:.0f} W" + (
                    f" (its platform class {c1}, not {c0})" if c1 != c0 else f" (both {c0})"))
            if abs(pue1 - pue0) > 1e-9:
                machine.append(f"PUE {pue1:g} (its default) instead of {pue0:g}")
            if machine:
                why += ("; " if why else "") + "; ".join(machine) + \
                    f"; in this machine (host and PUE as planned) the {spec.name} would take {e_same}"
        elif abs(h1 - h0) >= 0.05 * max(h0, h1, 1e-9):
            why += (f"; both with this machine's host power ({h0:.0f} W per GPU); in its own platform class "
                    f"({_platform(spec)} vs {_platform(cur)}: host {h1:.0f} W per GPU) the run would take "
                    f"{units.column([e, base, run.total.energy_kwh], units.ENERGY_KWH)[2]}")
        if run.calibration != est.calibration:  # two energy models: the comparison is only as good as the weaker
            why += (f"; {spec.name} is priced by its {run.calibration} energy model, {cur.name} by its "
                    f"{est.calibration} one")
        yield ctx.finding(
            f"{spec.name} ({spec.key}, {spec.tdp_w:.0f} W) trains it with {e_new} instead of "
            f"{e_cur} on {cur.name} ({cur.tdp_w:.0f} W)" + (f" (--gpu {spec.key}, the same flags)" if literal else "")
            + ", " + (f"in the same time ({t_cur})" if same_time else f"in {t_new} instead of {t_cur}")
            + (f": {why}" if why else ""),
            saving_kwh=kwh, saving_pct=pct)


def _platform(gpu) -> str:
    from ...energy.host import platform_class

    return platform_class(gpu)


def _phase_over(ctx, name: str):
    """(the estimate's phase ``name``, step time) when the phase takes at least the rule's ``min-share`` of the step,
    else (None, step time)."""
    phase = ctx.estimate.phases.get(name)
    step = ctx.estimate.per_step.time_s
    if phase is None or step <= 0 or phase.time_s / step < ctx.options["min_share"]:
        return None, step
    return phase, step


# ---- WL204 ----------------------------------------------------------------------------------------------------

@register
class LaunchBound(Rule):
    code = "WL204"
    name = "launch-bound"
    severity = "warning"
    summary = "The GPU idles between kernels while eager PyTorch launches them: the step is launch-bound"
    what = """
        Reads the estimate's launch gaps (``phases.idle_gaps``: per micro-batch, the part of launching its ops from
        one CPU thread, at ``--host-op-time`` each, that the GPU work does not cover; the same for the optimizer
        step). Above ``min-share`` of the step time, it names the gap and the launches behind it. The saving is the
        re-estimate with the launches taken off the critical path (a CUDA graph replays the captured step with one
        launch), the GPU work unchanged.
    """
    why = """
        Eager PyTorch spends ~5-25 us of CPU time per op (Python, dispatcher, cudaLaunchKernel); kernels shorter
        than that leave the GPU waiting at near-idle power while the job's wall time, host power and GPU-hours run
        on. CUDA graphs remove the per-kernel launch cost (NVIDIA, "Accelerating PyTorch with CUDA Graphs", 2021:
        1.12x on Mask R-CNN at small per-GPU batch); single-tensor optimizers launch each element-wise op once per
        parameter tensor, the foreach / fused implementations a few kernels per step.
    """
    example = """
        optimizer = torch.optim.Adam(params, foreach=False)   # 8 launches per parameter tensor, every step
        loss = model(x_small_batch).sum(); loss.backward()    # hundreds of ~10 us kernels
    """
    use_instead = """
        model = torch.compile(model, mode="reduce-overhead")  # CUDA graphs (or torch.cuda.graphs by hand)
        optimizer = torch.optim.AdamW(params, fused=True)     # or foreach=True; or a larger micro-batch
    """
    sources = ("NVIDIA / PyTorch blog, Accelerating PyTorch with CUDA Graphs, 2021",
               "docs/ENERGY_MODEL.md, Launch-bound gaps (host op time fitted on the Zeus NSDI'23 traces)")
    options = {
        "min_share": Option("min_share", 0.25, fraction, "minimum share of the step time the GPU waits on launches"),
    }
    valid = (
        Case("large GEMMs hide the launches", {"ops": [{"op": "linear", "m": 8192, "n": 4096, "k": 4096}],
                                               "host_op_s": 20e-6, "params": 1000}),
    )
    invalid = (
        # 100 tiny element-wise ops forward + 100 backward on an A100 (simple estimator: 4 us + bytes / (0.8 x
        # 2039 GB/s) each, 264 W); launching them at 20 us: 4 ms of CPU per micro-batch vs ~0.81 ms of GPU work;
        # the fused-AdamW step over 1,000 parameters: one 4 us kernel, 20 us to launch. The gap (~3.21 ms at the
        # 60 W idle) is 80 % of the step time and 1 - 0.81 x 264 / (0.81 x 264 + 3.21 x 60) = 47 % of its energy.
        Case("hundreds of tiny element-wise kernels", {
            "ops": [{"op": "elementwise", "shape": [64, 64], "count": 100}], "host_op_s": 20e-6, "params": 1000},
            expect="CUDA graph", saving_pct=47.0),
    )

    def check(self, ctx):
        est = ctx.estimate
        gap, step = _phase_over(ctx, "idle_gaps")
        if gap is None:
            return
        from ...energy import system

        plan = est.plan
        host_op = system.host_op(plan)[0]
        other = ctx.reestimate(plan=dataclasses.replace(plan, host_op_s=0.0))
        kwh, pct = ctx.saving(other)
        for_loop = ctx.graph.single_tensor_optimizer
        hint = ("capture the step in a CUDA graph (torch.compile(mode=\"reduce-overhead\")), use a larger "
                "micro-batch" + (", and a foreach/fused optimizer (the for-loop one launches every element-wise "
                                 "op once per parameter tensor)" if for_loop else ""))
        yield ctx.finding(
            f"launch-bound: the GPU waits {gap.time_s / step:.0%} of each step ({units.duration(gap.time_s)} per step) for "
            f"eager PyTorch to launch kernels at {units.duration(host_op)} each; {hint}",
            saving_kwh=kwh, saving_pct=pct)


# ---- WL205 ----------------------------------------------------------------------------------------------------

@register
class PipelineBubble(Rule):
    code = "WL205"
    name = "pipeline-bubble"
    severity = "warning"
    summary = "Pipeline stages sit idle in the 1F1B fill and drain for a large share of each step"
    what = """
        Reads the estimate's pipeline bubble (``phases.pipeline_bubble``: the fill and drain of the other stages,
        priced at idle power) and fires above ``min-share`` of the step time. It re-estimates two fixes and names
        the one that saves more energy: twice the model chunks per stage (``--virtual-pipeline-stages``), when the
        interleaved schedule is possible (micro-batches per step a multiple of the stages, at least two blocks per
        model chunk) and still fits in GPU memory; and half the micro-batch (twice the micro-batches in the same
        global batch), when the micro-batch is even, priced as ``--micro-batch-size`` half the micro-batch runs: the
        model traced at that micro-batch (its smaller kernels) and twice the per-micro-batch sends and collectives;
        it is offered only when that re-estimate fits in GPU memory and saves energy, and the bubble share it quotes
        is that re-estimate's (the head's is the planned estimate's). The fixes that save energy are
        ranked by their saving. When neither is possible or neither saves energy, the message says why, with no
        saving.
    """
    why = """
        Under 1F1B every stage idles for (p-1) micro-batches of the other stages while the pipeline fills and
        drains: (p-1)/(m+p-1) of the step with m micro-batches over p stages (Narayanan et al., SC 2021). The GPUs
        draw idle power and the job's wall time, host power and GPU-hours run on. The interleaved schedule gives
        each GPU v model chunks and divides the bubble time by v, for v x the stage-boundary sends and
        1 + (p-1)/(p v) x the first stage's activations; more micro-batches per step (a smaller micro-batch) shrink
        it too.
    """
    example = """
        # Megatron-LM: 16 stages, 32 micro-batches per step: bubble 15 / 47 = 32 % of the step
        --pipeline-model-parallel-size 16 --micro-batch-size 1 --global-batch-size 2048   # DP 64
    """
    use_instead = """
        --pipeline-model-parallel-size 16 --virtual-pipeline-model-parallel-size 4   # bubble 15 / 143 = 10 %
        # (wattlint: --virtual-pipeline-stages 4), or more micro-batches per step
    """
    sources = ("Narayanan et al., Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM, "
               "SC 2021, section 2.2 (1F1B and interleaved schedules)",
               "Megatron-LM megatron/training/theoretical_memory_usage.py (interleaved_schedule_memory_penalty)")
    options = {
        "min_share": Option("min_share", 0.15, fraction, "minimum share of the step time in the pipeline bubble"),
    }
    valid = (
        Case("many micro-batches per stage", {
            "ops": [{"op": "linear", "m": 2048, "n": 4096, "k": 4096, "module": f"h.{i}.fc"} for i in range(4)],
            "pipeline_parallel": 2, "gpus": 2, "grad_accum": 32, "batch_size": 256}),
    )
    invalid = (
        # One stage's micro-batch of ops takes t on the simple estimator; 2 stages x 2 micro-batches: bubble
        # (2-1) x t = half the 2t of compute, at idle power (60 W) against ~0.9 x (400-60) + 60 = 366 W of busy
        # GEMMs. Interleaving 2 chunks halves it: energy 2t x 366 + t x 60 = 792 t -> 2t x 366 + 0.5t x 60 = 762 t,
        # a 3.8 % saving (the time falls 3t -> 2.5t).
        Case("two micro-batches on two stages", {
            "ops": [{"op": "linear", "m": 2048, "n": 4096, "k": 4096, "module": f"h.{i}.fc"} for i in range(4)],
            "pipeline_parallel": 2, "gpus": 2, "grad_accum": 2, "batch_size": 16},
            expect="--virtual-pipeline-stages 2", saving_pct=3.8),
        # 3 micro-batches of 8 on 2 stages: bubble t of a 4t step (25 %); 3 is not a multiple of 2, so no
        # interleaving; micro-batches of 4 (6 per step, the graph at half the rows: 6912 -> 3456 rows, 16 -> 8
        # whole waves of 108 SMs, as efficient) halve the bubble: 3t x 366 + t x 60 = 1158 t ->
        # 3t x 366 + 0.5t x 60 = 1128 t, a 2.6 % saving (with 2048 rows the half micro-batch's 2.37 waves cost
        # more than the bubble saves: no saving claimed)
        Case("micro-batches not a multiple of the stages", {
            "ops": [{"op": "linear", "m": 6912, "n": 4096, "k": 4096, "module": f"h.{i}.fc"} for i in range(4)],
            "pipeline_parallel": 2, "gpus": 2, "grad_accum": 3, "batch_size": 24},
            expect="--micro-batch-size 4", saving_pct=2.6),
        # the same with micro-batches of 1 (3 per step): nothing to halve, no interleaving: says what blocks both
        Case("one-sample micro-batches, not a multiple of the stages", {
            "ops": [{"op": "linear", "m": 2048, "n": 4096, "k": 4096, "module": f"h.{i}.fc"} for i in range(4)],
            "pipeline_parallel": 2, "gpus": 2, "grad_accum": 3, "batch_size": 3, "micro_batch": 1},
            expect="a multiple of 2 micro-batches per step allows the interleaved schedule"),
    )

    def check(self, ctx):
        from ...parallel import bubble_fraction

        est = ctx.estimate
        bubble, step = _phase_over(ctx, "pipeline_bubble")
        if bubble is None:
            return
        plan = est.plan
        p, v, m = plan.pipeline_parallel, plan.virtual_pipeline_stages, max(1, plan.grad_accum)
        sizes = ((ctx.graph.extra or {}).get("pipeline_stages") or {}).get("blocks") or []
        head = (f"pipeline bubble: the GPUs idle {bubble.time_s / step:.0%} of each step "
                f"({units.duration(bubble.time_s)}) in the 1F1B fill and drain of {p} stages with {m} micro-batch(es) "
                f"per step" + (f" and {v} chunks per stage" if v > 1 else ""))
        fixes: list[tuple[float, float, str]] = []  # (kWh saved, fraction, what to do)
        blocked: list[str] = []
        if m % p:
            blocked.append(f"a multiple of {p} micro-batches per step allows the interleaved schedule "
                           f"(--virtual-pipeline-stages)")
        elif sizes and min(sizes) < 2 * v:
            blocked.append(f"the stages ({min(sizes)} blocks on the smallest) are too short for more interleaved "
                           f"chunks")
        else:
            other = ctx.reestimate(plan=dataclasses.replace(plan, virtual_pipeline_stages=2 * v))
            if other is not None and other.memory.fits_worse_than(est.memory):
                blocked.append(f"interleaving {2 * v} chunks per stage {_would_not_fit(other)} in GPU memory "
                               f"(activations x "
                               f"{other.memory.peak_bytes_per_gpu / max(1, est.memory.peak_bytes_per_gpu):.2f})")
            elif other is not None:
                kwh, pct = ctx.saving(other)
                fixes.append((kwh, pct, f"interleave {2 * v} model chunks per stage (--virtual-pipeline-stages {2 * v}; "
                                        f"Megatron-LM --virtual-pipeline-model-parallel-size) to divide it by 2"))
        mb = plan.micro_batch_size
        if mb >= 2 and mb % 2 == 0:
            # the same global batch in twice the micro-batches, as `--micro-batch-size mb/2` runs it: the model
            # traced at the half micro-batch (smaller kernels) and the plan built from the flag (twice the
            # micro-batches, twice the per-micro-batch sends and collectives). The plan with grad-accum doubled over
            # the graph traced at the full micro-batch priced full-size kernels at half the count: a saving the
            # literal change did not give (review: 1.05 Wh claimed, 0.75 Wh more when run)
            # the global batch kept (review: with --micro-batch-size alone the batch derives from it, so the re-run
            # halved the batch and called the smaller run a saving)
            other = ctx.literal(micro_batch_size=mb // 2, grad_accum=None, batch_size=plan.batch_size)
            given = ctx.request_options.get("batch_size") is not None
            if other is None and not ctx.request_options:  # an already traced graph: the graph at half the batch
                other = ctx.reestimate(graph=scale_batch(ctx.graph, 0.5),
                                       plan=dataclasses.replace(plan, grad_accum=2 * m))
            if other is not None and other.memory.fits_worse_than(est.memory):
                other = None
            if other is not None:
                kwh, pct = ctx.saving(other)
                flags = f"--micro-batch-size {mb // 2}" if given or not ctx.request_options else \
                    f"--batch-size {plan.batch_size} --micro-batch-size {mb // 2}"
                # the bubble share the re-estimate gives (the same source as the head's "idle .. of each step");
                # the ideal (p-1)/(2m+p-1) of equal stages only where the re-estimate has no bubble phase (review:
                # "idle 55 %" beside an ideal "60 %" where the re-run idles 40 %)
                ob = other.phases.get("pipeline_bubble") if other.phases else None
                share = (f"bubble {ob.time_s / other.per_step.time_s:.0%} of the step"
                         if ob is not None and other.per_step.time_s > 0 else
                         f"bubble {bubble_fraction(p, 2 * m, v):.0%} of the step with equal stages")
                fixes.append((kwh, pct, f"halve the micro-batch ({flags}: {2 * m} micro-batches "
                                        f"per step; {share})"))
        good = [f for f in fixes if f[0] is not None and f[0] > 0]
        if good and not ctx.base_fits:  # no run to save against: the fixes, no figure
            yield ctx.finding(f"{head}; " + "; or ".join(w for _, _, w in sorted(good, key=lambda f: -f[0]))
                              + "".join(f"; {b}" for b in blocked) + f" ({NO_SAVING_UNFIT})")
            return
        if good:
            kwh, pct, what = max(good, key=lambda f: f[0])
            rest = [f"; or {w} (est. saving {fmt_kwh(k)})" for k, _, w in good if w != what]
            yield ctx.finding(f"{head}; {what} (est. saving {fmt_kwh(kwh)}, {pct * 100:.0f}% of the run)"
                              + "".join(rest) + "".join(f"; {b}" for b in blocked),
                              saving_kwh=kwh, saving_pct=pct, annotate=False)
            return
        if fixes:
            blocked.append("neither interleaving nor a smaller micro-batch saves energy here (their extra sends and "
                           "smaller kernels cost more than the bubble)")
        elif mb >= 2:
            blocked.append(f"a smaller micro-batch than {mb} (more micro-batches per step) shrinks it")
        else:
            blocked.append("with one-sample micro-batches only a larger global batch (more micro-batches per step) or "
                           "fewer pipeline stages shrink it")
        yield ctx.finding(f"{head}; " + "; ".join(blocked))
