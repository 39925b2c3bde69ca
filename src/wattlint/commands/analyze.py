"""``wattlint analyze MODEL``: trace one training step; FLOPs and bytes per layer and phase (``wattlint.analysis/1``)."""

from __future__ import annotations

import argparse
import sys

from ._common import (add_model_arguments, add_option, add_output_argument, check_output_path, format_for, model_file,
                      positive_int, project_inputs, write_output)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_option(p, "gpus", default=1, help="data-parallel GPUs (the traced micro-batch is batch / (gpus x grad-accum))")
    add_option(p, "grad_accum", default=1)
    add_option(p, "activation_checkpointing", default=False,
               help="trace with activation checkpointing of the repeated blocks (recompute in backward)")
    p.add_argument("--format", choices=("text", "json"), default=None,
                   help="output format (default text, or json for an --output named *.json)")
    add_output_argument(p, ("text", "json"))
    p.add_argument("--top", type=positive_int, default=15, metavar="N", help="layers in the text table (default 15)")


def run(args: argparse.Namespace) -> int:
    from ..api import trace
    from ..report import analysis as rep

    inputs = ((model_file(args.model), "the model file"), *project_inputs())
    check_output_path(args.output, inputs=inputs)

    graph = trace(args.model, {"inputs": args.inputs, "batch_size": args.batch_size, "seq_len": args.seq_len,
                               "precision": args.precision, "optimizer": args.optimizer, "gpus": args.gpus,
                               "grad_accum": args.grad_accum,
                               "activation_checkpointing": args.activation_checkpointing,
                               "capacity_factor": args.capacity_factor, "optimizer_impl": args.optimizer_impl,
                               "attention": args.attention, "torch_version": args.torch_version})
    if (args.format or format_for(args.output, ("text", "json")) or "text") == "json":
        text = rep.render_json(graph)
    else:
        text = rep.render_text(graph, top=args.top, color=args.output is None and sys.stdout.isatty())
    write_output(args.output, text, inputs=inputs)
    return 0
