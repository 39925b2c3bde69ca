"""WL2xx — model x GPU fit: memory, SM occupancy, the right-sized GPU."""

from __future__ import annotations

import dataclasses
import math

from ...hardware import precision_support
from ...types import OpKind, Phase, Status
from ...report import units
from ..engine import replace_records
from ..registry import register
from ..rule import Case, Option, Rule, fraction, positive, positive_int, str_list

GIB = 2**30


@register
class DoesNotFit(Rule):
    code = "WL201"
    name = "does-not-fit"
    severity = "error"
    summary = "Peak training memory per GPU exceeds the GPU's memory"
    what = """
        Compares the estimate's peak training memory per GPU (weights, gradients, optimizer state, activations,
        workspace) with the GPU's memory. The run would fail with CUDA out-of-memory, so the energy estimate
        describes a run that cannot happen.
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
        if mem.fits:
            return
        peak = mem.peak_bytes_per_gpu / GIB
        cap = mem.gpu_memory_bytes / GIB
        yield ctx.finding(
            f"peak training memory {peak:.1f} GiB per GPU exceeds the {ctx.estimate.gpu.name}'s {cap:.0f} GiB: "
            "lower the micro-batch per GPU (--grad-accum or more --gpus), use --activation-checkpointing, "
            "--sharding zero3, bf16, or a GPU with more memory")


def _tiles(r) -> float:
    from ...energy.prior import gemm_dims

    b, m, n, _ = gemm_dims(r)
    return math.ceil(m / 128) * math.ceil(n / 128) * max(1, b)


def scale_batch(graph, k: int):
    """The graph traced at ``k`` x its micro-batch: forward/backward GEMM rows (m, or b for batched GEMMs and
    attention) and all forward/backward FLOPs and bytes scale by k (weights' bytes are a small share)."""
    out = []
    for r in graph.records:
        if r.phase not in (Phase.FORWARD, Phase.BACKWARD):
            out.append(r)
            continue
        dims = r.dims
        if r.kind in (OpKind.MATMUL, OpKind.CONV) and r.dim("m"):
            key = "b" if r.dim("b", 1) > 1 else "m"
            if r.phase is Phase.BACKWARD and r.dim("b", 1) == 1 and r.dim("k") and r.dim("m") < r.dim("k"):
                key = "k"  # weight-gradient GEMM: the batch is the reduction dim
            dims = tuple((n, v * k if n == key else v) for n, v in r.dims)
        elif r.kind is OpKind.ATTENTION:
            dims = tuple((n, v * k if n == "b" else v) for n, v in r.dims)
        out.append(dataclasses.replace(r, flops=r.flops * k, bytes_read=r.bytes_read * k,
                                       bytes_written=r.bytes_written * k, dims=dims))
    return replace_records(graph, out, micro_batch=max(1, graph.micro_batch) * k)


@register
class GpuUnderfilled(Rule):
    code = "WL202"
    name = "gpu-underfilled"
    severity = "warning"
    summary = "Micro-batch too small to fill the GPU: GEMMs run in less than one wave of thread blocks"
    what = """
        For the GEMMs and convolutions of the step, counts output tiles (128 x 128 thread blocks) against the GPU's
        SM count: waves = tiles / SMs, weighted by each op's energy. Below ``min-waves`` most SMs idle while the
        board still draws its static power. The saving is the re-estimate at the micro-batch that reaches one wave
        (k x larger micro-batch, k x fewer steps for the same samples).
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
        g_e = w_sum = 0.0
        for r, e in zip(ctx.graph.records, energy):
            if r.kind in (OpKind.MATMUL, OpKind.CONV) and r.status is Status.HANDLED and r.phase is not Phase.OPTIMIZER:
                g_e += e
                w_sum += e * _tiles(r) / sm
        if g_e / tot < ctx.options["min_share"] or g_e <= 0:
            return
        waves = w_sum / g_e
        if waves >= ctx.options["min_waves"]:
            return
        plan = ctx.estimate.plan
        k = min(ctx.options["max_factor"], 2 ** math.ceil(math.log2(ctx.options["min_waves"] / max(waves, 1e-9))))
        mb = plan.micro_batch_size
        other = ctx.reestimate(graph=scale_batch(ctx.graph, k),
                               plan=dataclasses.replace(plan, batch_size=plan.batch_size * k,
                                                        steps=max(1, math.ceil(plan.steps / k))))
        kwh, pct = ctx.saving(other)
        yield ctx.finding(
            f"GEMMs/convolutions fill {waves:.2f} waves of the {ctx.estimate.gpu.name}'s {sm} SMs at micro-batch "
            f"{mb}: most SMs idle; raise the micro-batch to {mb * k} (same samples, {k}x fewer steps; retune the "
            "learning rate) or use a smaller GPU",
            saving_kwh=kwh, saving_pct=pct)


@register
class SmallerGpuLessEnergy(Rule):
    code = "WL203"
    name = "smaller-gpu-less-energy"
    severity = "info"
    summary = "A smaller GPU from the database trains this model with less energy"
    what = """
        Re-estimates the same graph and plan on the GPUs of the database with a lower board power (TDP) than the
        planned one that can hold the run's peak memory (the ``max-candidates`` with the most peak FLOP/s per watt
        for the plan's precision), or on ``candidates``, and reports the one with the lowest energy when it saves at
        least ``min-saving``. The message also gives the time it would take.
    """
    why = """
        Large GPUs have high static power; a model that cannot use their compute burns it anyway. del Rey et al.
        show GPU energy should scale with the model: oversized GPUs waste energy at low utilization, and smaller
        accelerators train small models with less energy at a longer wall time.
    """
    example = """
        wattlint small_cnn.onnx --gpu h100 --epochs 30        # 4 M-parameter CNN on a 700 W GPU
    """
    use_instead = """
        wattlint small_cnn.onnx --gpu h100 --compare l4,a10g
        # pick the GPU with the lowest energy that meets the deadline
    """
    sources = ("del Rey et al., GPU right-sizing and energy (seed paper)",)
    options = {
        "min_saving": Option("min_saving", 0.10, fraction, "report only when the energy falls by at least this"),
        "candidates": Option("candidates", (), str_list, "GPU keys to compare (default: all smaller GPUs)"),
        "max_slowdown": Option("max_slowdown", 4.0, positive, "ignore GPUs that take more than this x the time"),
        "max_candidates": Option("max_candidates", 6, positive_int,
                                 "re-estimate at most this many GPUs (those with the most peak FLOP/s per watt)"),
    }
    valid = (
        Case("large model that needs the big GPU", {"ops": [{"op": "linear", "m": 16384, "n": 8192, "k": 8192}],
                                                     "params": 3_000_000_000}),
    )
    invalid = (
        Case("tiny model on an H100", {"ops": [{"op": "linear", "m": 256, "n": 256, "k": 256}],
                                       "gpu": "h100-sxm5-80gb", "params": 100_000}, expect="L4 (l4, 72 W) trains it"),
    )

    def check(self, ctx):
        est = ctx.estimate
        cur = est.gpu
        wanted = set(ctx.options["candidates"])
        best = None
        t0 = est.total.time_h
        need = float(est.memory.peak_bytes_per_gpu)
        half = est.plan.precision if est.plan.precision in ("fp16", "bf16", "fp8", "tf32") else "fp32"
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
        pool.sort(key=lambda g: -(g.peak(half) / max(g.tdp_w, 1.0)))
        for spec in pool[:ctx.options["max_candidates"]] if not wanted else pool:
            other = ctx.reestimate(gpu=spec)
            if other is None or not other.memory.fits:
                continue
            t = other.total.time_h
            if t0 > 0 and t > t0 * ctx.options["max_slowdown"]:
                continue
            e = other.total.energy_kwh
            if best is None or e < best[0]:
                best = (e, t, spec, other)
        if best is None:
            return
        kwh, pct = ctx.saving(best[3])
        if pct is None or pct < ctx.options["min_saving"]:
            return
        e, t, spec, _ = best
        yield ctx.finding(
            f"{spec.name} ({spec.key}, {spec.tdp_w:.0f} W) trains it with {units.energy_kwh(e)} instead of "
            f"{units.energy_kwh(ctx.energy_kwh)} on {cur.name} ({cur.tdp_w:.0f} W), in {t:.3g} h instead of {t0:.3g} h",
            saving_kwh=kwh, saving_pct=pct)
