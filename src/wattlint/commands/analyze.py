"""``wattlint analyze MODEL``: trace one training step; FLOPs and bytes per layer and phase (``wattlint.analysis/1``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import (add_model_arguments, add_option, add_output_argument, check_output_path, cli_options, format_for,
                      model_file, positive_int, project_inputs, settings_note, write_output)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_option(p, "gpus", help="GPUs in the job (the traced micro-batch is batch / (data-parallel x grad-accum), "
               "data-parallel = gpus / (tensor x pipeline x context parallel of [tool.wattlint]))")
    add_option(p, "grad_accum")
    add_option(p, "activation_checkpointing",
               help="trace with activation checkpointing of the repeated blocks (recompute in backward)")
    p.add_argument("--format", choices=("text", "json"), default=None,
                   help="output format (default text, or json for an --output named *.json)")
    add_output_argument(p, ("text", "json"))
    p.add_argument("--top", type=positive_int, default=15, metavar="N", help="layers in the text table (default 15)")


# the parallel layout sets the traced micro-batch as the estimate's does (api.trace: parallel.frontend_batch):
# batch / (data-parallel x grad-accum), data-parallel = gpus / (tensor x pipeline x context parallel)
TRACE_OPTIONS = ("inputs", "batch_size", "seq_len", "precision", "optimizer", "gpus", "grad_accum",
                 "activation_checkpointing", "capacity_factor", "optimizer_impl", "attention", "torch_version",
                 "tensor_parallel", "pipeline_parallel", "context_parallel", "micro_batch_size")
FALLBACKS = {"gpus": 1, "activation_checkpointing": False}


def trace_options(args: argparse.Namespace, defaults) -> tuple[dict, dict]:
    """The trace's options: the command line's, else ``[tool.wattlint]``'s (``defaults``), else the trace's own;
    and those taken from the file. A configured ``recompute = "full"`` is activation checkpointing here."""
    cli = cli_options(args, TRACE_OPTIONS)
    file = {k: v for k, v in defaults.items() if k in TRACE_OPTIONS and k not in cli}
    if "grad_accum" in cli:  # the command line's split of the batch replaces the file's (as the estimate's does)
        file.pop("micro_batch_size", None)
    if "activation_checkpointing" not in cli and "activation_checkpointing" not in file and \
            defaults.get("recompute") == "full":
        file["activation_checkpointing"] = True
    opts = {k: FALLBACKS.get(k) for k in TRACE_OPTIONS}
    opts.update(file)
    opts.update(cli)
    return opts, file


def unapplied(args: argparse.Namespace, defaults) -> list[tuple[str, object]]:
    """The ``[tool.wattlint]`` settings that change the estimate's step but not the traced one here: a training
    stack other than PyTorch's, selective recompute (unless the command line chose the recompute)."""
    out = [(k, v) for k, v in defaults.items() if k == "training_stack" and v != "pytorch"]
    if defaults.get("recompute") == "selective" and args.activation_checkpointing is None:
        out.append(("recompute", "selective"))
    return out


def _check_batch_divides(opts: dict) -> None:
    """A batch that does not divide over data-parallel x grad-accum is refused (exit 2), as the estimate refuses it
    (plan.py): every replica runs the same micro-batch, so tracing batch // (dp x ga) would leave samples out."""
    from ..types import ConfigError

    batch = opts.get("batch_size")
    if batch is None or opts.get("micro_batch_size") is not None:
        return
    gpus, ga = int(opts.get("gpus") or 1), int(opts.get("grad_accum") or 1)
    mp = int(opts.get("tensor_parallel") or 1) * int(opts.get("pipeline_parallel") or 1) * \
        int(opts.get("context_parallel") or 1)
    if gpus % mp:
        return  # the trace's own layout error says why
    dp = gpus // mp
    if batch >= dp * ga and batch % (dp * ga):
        what = f"data-parallel {dp} x grad-accum {ga}" if mp > 1 else f"{gpus} GPU(s) x grad-accum {ga}"
        raise ConfigError(f"--batch-size {batch} is not divisible by {what} = {dp * ga}: every replica runs the same "
                          f"micro-batch; give a multiple of {dp * ga}")


def run(args: argparse.Namespace) -> int:
    from ..api import trace
    from ..plan import seq_len_unused_note
    from ..report import analysis as rep

    from ..config import load_config

    config = load_config(Path.cwd())  # the estimate's defaults from [tool.wattlint] (docs/CONFIG.md), CLI wins
    inputs = ((model_file(args.model), "the model file"), *project_inputs(config))
    check_output_path(args.output, inputs=inputs)
    opts, from_file = trace_options(args, config.defaults)
    if from_file:
        print(f"wattlint: {settings_note(config, from_file.items())}", file=sys.stderr)
    skipped = unapplied(args, config.defaults)
    if skipped:
        said = ", ".join(f"{k.replace('_', '-')} = {v!r}" for k, v in skipped)
        print(f"wattlint: note: not applied by analyze (it traces the step as PyTorch runs the module; the estimate "
              f"applies them): {said} from [tool.wattlint]", file=sys.stderr)
    _check_batch_divides(opts)
    graph = trace(args.model, opts)
    unused = seq_len_unused_note(graph, opts.get("seq_len"))
    if unused:  # a CNN given --seq-len: the estimate says so, the analysis did not
        import dataclasses

        graph = dataclasses.replace(graph, assumptions=(*graph.assumptions, unused))
    fmt = args.format or format_for(args.output, ("text", "json")) or "text"
    if fmt == "json":
        text = rep.render_json(graph)
    else:
        text = rep.render_text(graph, top=args.top, color=args.output is None and sys.stdout.isatty())
    write_output(args.output, text, inputs=inputs)
    if args.output:
        print(f"wattlint: wrote {args.output} ({fmt})", file=sys.stderr)
    return 0
