"""ONNX frontend vs the PyTorch path on the same modules and shapes (like with like: eval form, BatchNorm folded
where the export folds it, weights in an external data file, read only to recognise a tied output layer).

    python benchmarks/onnx_accuracy.py        # writes benchmarks/results/onnx_accuracy.json

Targets (issue 3): forward FLOPs within 3 %, training (forward + backward + optimizer) FLOPs within 8 %, bytes
(read + written, all phases) within 15 %.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import make_examples as M  # noqa: E402

# name -> (builder, onnx input name, torch input spec, example shape, dtype, cause of the remaining difference)
CASES = {
    "resnet50": (lambda: M.fold_batchnorm(M.resnet50()), "x", (8, 3, 224, 224), "float32"),
    "vit": (lambda: M.logits_only(M.vit_small()), "pixel_values", (8, 3, 224, 224), "float32"),
    "bert": (lambda: M.logits_only(M.bert_small()), "input_ids", (8, 128), "int64"),
    "gpt2": (lambda: M.logits_only(M.gpt2_tiny()), "input_ids", (8, 256), "int64"),
    "lstm": (lambda: M.lstm_classifier(), "ids", (16, 64), "int64"),
}


def rel(a: float, b: float) -> float:
    return (a - b) / b if b else 0.0


def compare(name: str, workdir: Path, shape: tuple | None = None) -> dict:
    import torch

    from wattlint.frontends.onnx import analyze_onnx
    from wattlint.frontends.source import analyze

    build, in_name, default_shape, dtype = CASES[name]
    shape = tuple(shape or default_shape)
    torch.manual_seed(0)
    model = build().eval()
    example = torch.zeros(shape, dtype=getattr(torch, dtype)) if dtype != "float32" else torch.randn(shape)
    # weights kept beside the graph as external data: read only to recognise a tied output layer (GPT-2's LM head
    # is the token embedding transposed; frontends/onnx_ties.py); shapes come from the initializers' dims
    path = M.export_weightless(model, (example,), workdir / f"{name}.onnx", input_names=[in_name],
                               output_names=["logits"], keep_data=True)
    spec = f"{in_name}={dtype}[{','.join(map(str, shape))}]"
    t0 = time.perf_counter()
    tg = analyze(model, inputs={in_name: spec})
    t1 = time.perf_counter()
    og = analyze_onnx(path)
    t2 = time.perf_counter()
    tp, op = tg.by_phase(), og.by_phase()

    def train(p):
        return sum(p[k].flops for k in ("forward", "backward", "optimizer"))

    def nbytes(p):
        return sum(p[k].bytes_read + p[k].bytes_written for k in ("forward", "backward", "optimizer"))

    return {
        "model": name, "input": spec, "onnx_nodes": sum(1 for r in og.records if r.phase.value == "forward"),
        "params": {"torch": tg.params, "onnx": og.params},
        "forward_flops": {"torch": tp["forward"].flops, "onnx": op["forward"].flops,
                          "diff": rel(op["forward"].flops, tp["forward"].flops)},
        "backward_flops": {"torch": tp["backward"].flops, "onnx": op["backward"].flops,
                           "diff": rel(op["backward"].flops, tp["backward"].flops)},
        "training_flops": {"torch": train(tp), "onnx": train(op), "diff": rel(train(op), train(tp))},
        "bytes": {"torch": nbytes(tp), "onnx": nbytes(op), "diff": rel(nbytes(op), nbytes(tp))},
        "forward_bytes": {"torch": tp["forward"].bytes_read + tp["forward"].bytes_written,
                          "onnx": op["forward"].bytes_read + op["forward"].bytes_written},
        "unsupported": {"torch": tg.unsupported(), "onnx": og.unsupported()},
        "time_s": {"torch": round(t1 - t0, 3), "onnx": round(t2 - t1, 3)},
        "by_kind_forward": {"torch": {k: v.flops for k, v in tg.by_kind("forward").items()},
                            "onnx": {k: v.flops for k, v in og.by_kind("forward").items()}},
        "by_kind_backward": {"torch": {k: v.flops for k, v in tg.by_kind("backward").items()},
                             "onnx": {k: v.flops for k, v in og.by_kind("backward").items()}},
        "bytes_by_kind": {"torch": {k: v.bytes_read + v.bytes_written for k, v in
                                    _merge(tg.by_kind("forward"), tg.by_kind("backward")).items()},
                          "onnx": {k: v.bytes_read + v.bytes_written for k, v in
                                   _merge(og.by_kind("forward"), og.by_kind("backward")).items()}},
    }


def _merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = out[k] + v if k in out else v
    return out


def main(argv=None) -> int:
    names = (argv or sys.argv[1:]) or list(CASES)
    results = []
    with tempfile.TemporaryDirectory() as td:
        for n in names:
            r = compare(n, Path(td))
            results.append(r)
            print(f"{n:9s} fwd {r['forward_flops']['diff']:+.2%}  train {r['training_flops']['diff']:+.2%}  "
                  f"bytes {r['bytes']['diff']:+.2%}  params {r['params']['onnx']}/{r['params']['torch']}")
    out = ROOT / "benchmarks" / "results" / "onnx_accuracy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if set(names) == set(CASES):
        out.write_text(json.dumps({
            "method": "Each model is built randomly initialised, exported in eval mode with torch.onnx.export "
                      "(TorchScript exporter, opset 17, constant folding), its weights moved to an external data "
                      "file (read by the ONNX side only to recognise a tied output layer: GPT-2's LM head and BERT's "
                      "MLM decoder are their token embedding transposed; the PyTorch side counts a tied weight "
                      "once); wattlint.frontends.onnx.analyze_onnx on the .onnx is compared "
                      "with wattlint.frontends.source.analyze (the PyTorch path) on the same module and input "
                      "shape. ResNet-50's BatchNorms are folded into its convs on the PyTorch side as the export "
                      "does. diff = (onnx - torch) / torch.",
            "python": platform.python_version(), "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
