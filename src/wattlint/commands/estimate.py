"""``wattlint MODEL --gpu G [plan options]`` (the default command): energy, time, CO2 and cost of a training plan.

Defaults come from ``[tool.wattlint]`` (wattlint.config) when present; CLI flags win. Exits 0 whenever an estimate
was produced (findings do not change the exit code here; ``wattlint check`` gates on them), 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ._common import add_model_arguments, positive_int

FORMATS = ("text", "json", "markdown", "html")
SHARDINGS = ("none", "zero1", "zero2", "zero3", "fsdp")
DEFAULT_GPU = "a100-sxm4-80gb"


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return v


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number >= 0")
    return v


def _fraction(text: str) -> float:
    v = _positive_float(text)
    if v > 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1]")
    return v


def _pue(text: str) -> float:
    v = _positive_float(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: PUE must be >= 1")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    g = p.add_argument_group("hardware")
    g.add_argument("--gpu", metavar="G", help=f"GPU database key or alias (default from [tool.wattlint], else "
                                              f"{DEFAULT_GPU}); see 'wattlint gpus'")
    g.add_argument("--compare", metavar="G1,G2", help="also estimate on these GPUs; one table side by side")
    g.add_argument("--gpus", type=positive_int, metavar="N", help="data-parallel GPUs (default 1)")
    g.add_argument("--gpus-per-node", type=positive_int, metavar="N", help="GPUs per node (default 8)")
    g.add_argument("--sharding", choices=SHARDINGS, help="ZeRO / FSDP sharding of optimizer state, grads, weights")
    g.add_argument("--internode-gbps", type=_positive_float, metavar="GBIT",
                   help="network bandwidth per node in Gbit/s (default stated)")
    g.add_argument("--utilization", type=_fraction, metavar="U",
                   help="what-if: override the predicted compute efficiency (0 < U <= 1)")
    w = p.add_argument_group("work")
    w.add_argument("--epochs", type=_positive_float, metavar="E", help="epochs over --dataset")
    w.add_argument("--dataset", metavar="NAME|N", help="dataset preset (imagenet-1k, cifar10, ...) or sample count")
    w.add_argument("--steps", type=positive_int, metavar="N", help="optimizer steps (instead of --epochs/--tokens)")
    w.add_argument("--tokens", type=_positive_float, metavar="T", help="training tokens (language models; with "
                                                                       "--seq-len)")
    w.add_argument("--grad-accum", type=positive_int, metavar="N", help="gradient accumulation steps (default 1)")
    w.add_argument("--activation-checkpointing", action="store_true", default=None,
                   help="recompute activations in backward")
    s = p.add_argument_group("site")
    s.add_argument("--pue", type=_pue, metavar="X", help="data-centre PUE (default stated)")
    s.add_argument("--region", metavar="R", help="ISO-2/ISO-3 country or cloud region (aws:us-east-1)")
    s.add_argument("--carbon-intensity", type=_positive_float, metavar="G", help="gCO2e/kWh (overrides --region)")
    s.add_argument("--price", dest="price_per_kwh", type=_nonneg_float, metavar="USD", help="electricity $/kWh")
    s.add_argument("--gpu-hour-price", type=_nonneg_float, metavar="USD", help="$ per GPU-hour")
    o = p.add_argument_group("output")
    o.add_argument("--format", choices=FORMATS, default=None, help="output format (default text)")
    o.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    o.add_argument("--top", type=positive_int, default=10, metavar="N", help="layers to show (default 10)")


# CLI dest -> option name of wattlint.estimate
_OPTION_DESTS = ("batch_size", "seq_len", "precision", "optimizer", "gpus", "gpus_per_node", "sharding",
                 "internode_gbps", "utilization", "epochs", "dataset", "steps", "tokens", "grad_accum",
                 "activation_checkpointing", "pue", "region", "carbon_intensity", "price_per_kwh", "gpu_hour_price")


def _options(args) -> tuple[str, dict, object]:
    """Effective GPU and plan options: [tool.wattlint] defaults overlaid by the CLI; and the config."""
    from ..types import ConfigError

    config = None
    defaults: dict = {}
    try:
        from ..config import load_config
    except ImportError:  # pragma: no cover - config module not installed
        load_config = None
    if load_config is not None:
        config = load_config(Path.cwd())
        defaults = dict(getattr(config, "defaults", {}) or {})
    cli = {k: getattr(args, k) for k in _OPTION_DESTS if getattr(args, k, None) is not None}
    if args.input:
        cli["inputs"] = list(args.input)
    if "steps" in cli and ("epochs" in cli or "tokens" in cli):
        raise ConfigError("--steps conflicts with --epochs/--tokens: give the amount of work one way")
    if "epochs" in cli and "tokens" in cli:
        raise ConfigError("--epochs conflicts with --tokens: give the amount of work one way")
    # the CLI's way of giving the amount of work replaces the config's
    if {"steps", "epochs", "tokens"} & set(cli):
        for k in ("steps", "epochs", "tokens"):
            defaults.pop(k, None)
    opts = {k: v for k, v in defaults.items() if k != "gpu"}
    opts.update(cli)
    if "dataset_size" in opts:
        size = opts.pop("dataset_size")
        opts.setdefault("dataset", str(int(size)))
    if "inputs" in opts and isinstance(opts["inputs"], tuple):
        opts["inputs"] = list(opts["inputs"])
    gpu = args.gpu or defaults.get("gpu") or DEFAULT_GPU
    return gpu, opts, config


def run(args) -> int:
    from ..estimate import analyze_source, estimate_graph, make_plan, resolve
    from ..types import ConfigError

    gpu, opts, config = _options(args)
    fmt = args.format or (getattr(config, "format", None) if getattr(config, "format", None) in FORMATS else None) \
        or "text"
    gpus = [gpu]
    if args.compare:
        extra = [g.strip() for g in args.compare.split(",") if g.strip()]
        if not extra:
            raise ConfigError("--compare needs a comma-separated list of GPUs")
        gpus += [g for g in extra if g != gpu]
    specs = [resolve(g) for g in gpus]  # unknown GPU -> one-line error before any tracing
    if not args.gpu and gpu == DEFAULT_GPU:
        opts_note = f"no --gpu given: {DEFAULT_GPU}"
    else:
        opts_note = None
    graph = analyze_source(args.model, **opts)
    plan_opts = {k: v for k, v in opts.items() if k != "inputs"}
    ests = []
    import dataclasses

    seen = set()
    for spec, note in specs:
        if spec.key in seen:
            continue
        seen.add(spec.key)
        plan = make_plan(graph, spec, strict_precision=spec is specs[0][0], **plan_opts)  # --compare: fallback
        notes = tuple(n for n in (opts_note if spec is specs[0][0] else None, note) if n)
        if notes:
            plan = dataclasses.replace(plan, assumptions=notes + tuple(a for a in plan.assumptions if a not in notes))
        ests.append(estimate_graph(graph, spec, plan, config=config))
    text = _render(ests, fmt, args)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot write {args.output}: {e.strerror or e}") from None
        print(f"wattlint: wrote {args.output} ({fmt})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _render(ests, fmt: str, args) -> str:
    if fmt == "json":
        from ..report.json_out import render

        return render(ests)
    if fmt == "markdown":
        from ..report.markdown import render

        return render(ests, top=args.top)
    if fmt == "html":
        from ..report.html import render

        return render(ests, top=args.top)
    from ..report.text import render

    color = (not args.output and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    return render(ests, top=args.top, color=bool(color))
