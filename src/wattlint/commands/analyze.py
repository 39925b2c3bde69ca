"""``wattlint analyze MODEL``: trace one training step; FLOPs and bytes per layer and phase (``wattlint.analysis/1``)."""

from __future__ import annotations

import argparse
import sys

from ._common import add_model_arguments, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--gpus", type=positive_int, default=1, metavar="N",
                   help="data-parallel GPUs (the traced micro-batch is batch / (gpus x grad-accum))")
    p.add_argument("--grad-accum", type=positive_int, default=1, metavar="N", help="gradient-accumulation steps")
    p.add_argument("--activation-checkpointing", action="store_true",
                   help="trace with activation checkpointing of the repeated blocks (recompute in backward)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    p.add_argument("--top", type=positive_int, default=15, metavar="N", help="layers in the text table (default 15)")


def run(args: argparse.Namespace) -> int:
    from ..frontends.source import analyze
    from ..report import analysis as rep
    from ..types import InputError

    graph = analyze(args.model, inputs=args.input, batch_size=args.batch_size, seq_len=args.seq_len,
                    precision=args.precision or "default", optimizer=args.optimizer or "adamw", gpus=args.gpus,
                    grad_accum=args.grad_accum, activation_checkpointing=args.activation_checkpointing)
    if args.format == "json":
        text = rep.render_json(graph)
    else:
        text = rep.render_text(graph, top=args.top, color=args.output is None and sys.stdout.isatty())
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise InputError(f"cannot write {args.output}: {e.strerror or e}") from None
    else:
        sys.stdout.write(text)
    return 0
