"""WL4xx — how far to trust the estimate: unsupported ops, calibration, lossy graphs."""

from __future__ import annotations

from collections import Counter

from ...types import Status
from ..registry import register
from ..rule import Case, Option, Rule, fraction


@register
class UnsupportedOps(Rule):
    code = "WL401"
    name = "unsupported-ops"
    severity = "warning"
    summary = "Too many ops the frontend could not cost: the estimate undercounts"
    what = """
        Counts ops with status ``unsupported`` (no formula; counted at zero cost, never silently) against all ops
        that are not free views. Above ``max-share`` the estimate is not trustworthy; the message lists the most
        frequent unsupported ops.
    """
    why = """
        Every unsupported op is work the estimate sets to zero. A handful of rare ops is noise; a large share means
        the model's cost is dominated by something wattlint does not see (fvcore reports "unsupported operators"
        for the same reason).
    """
    example = """
        a model built on a custom CUDA extension (torch.ops.mylib.fused_thing) that wattlint has no formula for
    """
    use_instead = """
        open an issue with the op names (wattlint analyze MODEL --format json lists them under ops.unsupported),
        or express the op with standard PyTorch ops for the estimate
    """
    sources = ("fvcore jit_analysis: handled / ignored / unsupported operators",)
    options = {"max_share": Option("max_share", 0.05, fraction, "largest tolerated share of unsupported ops")}
    valid = (
        Case("all ops handled", {"ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096}]}),
        Case("one rare op among many", {"ops": [{"op": "linear", "m": 64, "n": 64, "k": 64}] * 10 +
                                        [{"op": "unsupported", "name": "aten.rare.default"}]}),
    )
    invalid = (
        Case("custom ops everywhere", {"ops": [{"op": "linear", "m": 4096, "n": 4096, "k": 4096},
                                               {"op": "unsupported", "name": "mylib.fused.default", "count": 5}]},
             expect="mylib.fused.default x5"),
    )

    def check(self, ctx):
        recs = [r for r in ctx.graph.records if r.status is not Status.IGNORED]
        unsup = Counter(r.op for r in recs if r.status is Status.UNSUPPORTED)
        n = sum(unsup.values())
        if not recs or n / len(recs) <= ctx.options["max_share"]:
            return
        top = ", ".join(f"{op} x{c}" for op, c in unsup.most_common(5))
        yield ctx.finding(f"{n} of {len(recs)} ops ({n / len(recs):.0%}) are unsupported and counted at zero cost "
                          f"({top}): the estimate undercounts")


@register
class UncalibratedGpu(Rule):
    code = "WL402"
    name = "uncalibrated-gpu"
    severity = "info"
    uses_graph = False
    summary = ("No measured energy model for this GPU: numbers come from the public-fit model, a transfer or the "
               "spec-sheet prior")
    what = """
        Reports when the estimate's calibration is not ``measured`` (``public-fit``: the shipped model learned from
        published measurements on other GPUs, docs/ACCURACY.md; ``transferred``: a model fitted on other GPUs
        applied through hardware-normalized features; ``prior``: roofline + power model from the datasheet only).
    """
    why = """
        Calibrated estimates come from measured op energies on that GPU (NVML energy counter); uncalibrated ones
        carry a wider, stated uncertainty (see energy_kwh_range).
    """
    example = """
        wattlint model.onnx --gpu rtx4090      # calibration: public-fit
    """
    use_instead = """
        on a machine with that GPU: wattlint calibrate && wattlint fit   (then commit models/<gpu>/)
    """
    sources = ("wattlint design, §5-6 (calibration)",)
    valid = (Case("measured", {"ops": [{"op": "linear", "m": 64, "n": 64, "k": 64}], "calibration": "measured"}),)
    invalid = (Case("prior only", {"ops": [{"op": "linear", "m": 64, "n": 64, "k": 64}], "calibration": "prior"},
                    expect="wattlint calibrate"),)

    def check(self, ctx):
        cal = ctx.summary.get("calibration")
        if not cal or cal == "measured":
            return
        rng = ctx.total.get("energy_kwh_range")
        span = ""
        if isinstance(rng, (list, tuple)) and len(rng) == 2 and ctx.energy_kwh > 0:
            span = f" (5-95% range {rng[0] / ctx.energy_kwh - 1:+.0%} / {rng[1] / ctx.energy_kwh - 1:+.0%})"
        gpu = ctx.summary.get("gpu_name") or ctx.summary.get("gpu") or "this GPU"
        yield ctx.finding(f"{gpu} is not calibrated (calibration: {cal}){span}; run 'wattlint calibrate' and "
                          "'wattlint fit' on one to get measured estimates")


@register
class FoldedBatchnorm(Rule):
    code = "WL403"
    name = "folded-batchnorm"
    status = "preview"
    severity = "info"
    summary = ("ONNX graph exported in eval mode: BatchNorm folded into Conv, its training cost synthesized (an "
               "assumption)")
    what = """
        Reports when the ONNX frontend found BatchNorm folded into convolutions (an eval-mode export). The training
        estimate then synthesizes a training-mode BatchNorm forward and backward after each folded convolution
        (after every convolution when the exporter left no marker and the whole graph looks folded), priced as
        torch's cudnn_batch_norm; which convolutions had a norm is a guess the export no longer records.
    """
    why = ("BatchNorm in training reads and writes every activation several times: on ResNets the synthesized norms "
           "are a large share of step energy (about a fifth of ResNet-50's on an A100 in bf16), so the guess "
           "matters; an export in training mode prices the norms the model really has.")
    example = "torch.onnx.export(model.eval(), ...)  # then estimate training from it"
    use_instead = "export with training=torch.onnx.TrainingMode.TRAINING (or estimate from the PyTorch module)"
    sources = ("PyTorch torch.onnx.export docs (do_constant_folding, training mode)",)
    valid = (Case("no folding", {"ops": [{"op": "conv", "m": 4096, "n": 64, "k": 576}]}),)
    invalid = (Case("folded", {"ops": [{"op": "conv", "m": 4096, "n": 64, "k": 576}],
                               "extra": {"folded_batchnorm": True}}, expect="eval mode"),)

    def check(self, ctx):
        if ctx.graph.extra.get("folded_batchnorm"):
            n = int(ctx.graph.extra.get("synthesized_batchnorm", 0))
            done = (f"a training-mode BatchNorm was synthesized after {n} convolutions, an assumption" if n else
                    "no convolution was left to attach a synthesized BatchNorm to, so the norms are not priced")
            yield ctx.finding(f"BatchNorm is folded into convolutions (ONNX exported in eval mode): {done}; export "
                              f"in training mode to price the norms the model has")
