"""Arguments shared by commands that load a model (analyze, estimate, validate)."""

from __future__ import annotations

import argparse

PRECISIONS = ("default", "fp32", "tf32", "fp16", "bf16", "fp8")
OPTIMIZERS = ("adamw", "adam", "sgd")


def positive_int(text: str) -> int:
    try:
        v = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return v


def add_model_arguments(p: argparse.ArgumentParser, *, model_required: bool = True) -> None:
    p.add_argument("model", nargs=None if model_required else "?", metavar="MODEL",
                   help="model source: file.onnx | config.json (Hugging Face) | package.module:attr | path/file.py:attr")
    p.add_argument("--input", action="append", metavar="NAME=DTYPE[DIMS]", default=None,
                   help="an input spec, e.g. x=float32[8,3,224,224] or ids=int64[4,512] (repeatable)")
    p.add_argument("--batch-size", type=positive_int, metavar="N",
                   help="global batch size; rebinds the leading dim of the inputs (traced micro-batch = "
                        "global / (gpus x grad-accum))")
    p.add_argument("--seq-len", type=positive_int, metavar="N", help="sequence length for language models")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="training precision (default: PyTorch's default: fp32 weights, TF32 cuDNN convs on Ampere+)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="optimizer (default adamw)")
