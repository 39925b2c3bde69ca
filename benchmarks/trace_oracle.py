"""FLOPs of the torch frontend vs torch.utils.flop_counter.FlopCounterMode on the test architectures.

Method: for each architecture of tests/_torch_archs.py, trace one training step with wattlint (meta tensors) and
count the same forward (+ loss) and backward with FlopCounterMode (same meta model, fused-attention routing and
.item() answers); the oracle is corrected only for the two deviations verified in tests/test_torch_oracle.py
(causal attention counted as the full square; grouped-conv weight gradient counted `groups` times).
Ratios in [1.00, 1.06] are asserted by the tests; the raw (uncorrected) ratios are listed beside.

Run: python benchmarks/trace_oracle.py   (writes benchmarks/results/trace_oracle.json)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _oracle import documented_corrections, oracle_flops  # noqa: E402
from _torch_archs import ALL, build  # noqa: E402

from wattlint.frontends import torch as wt  # noqa: E402


def main() -> int:
    rows = {}
    for name in ALL:
        model, args, kwargs, hf = build(name)
        t0 = time.perf_counter()
        g = wt.trace(model, args, kwargs, hf=hf)
        dt = time.perf_counter() - t0
        m2, a2, k2, _ = build(name)
        of, ob = oracle_flops(m2, a2, k2, hf=hf)
        cf, cb = documented_corrections(g)
        f, b = g.total("forward").flops, g.total("backward").flops
        rows[name] = {"forward_ratio": round(f / (of + cf), 4), "fwd_bwd_ratio": round((f + b) / (of + cf + ob + cb), 4),
                      "raw_forward_ratio": round(f / of, 4), "raw_fwd_bwd_ratio": round((f + b) / (of + ob), 4),
                      "wattlint_fwd_flops": f, "wattlint_bwd_flops": b, "oracle_fwd_flops": of,
                      "oracle_bwd_flops": ob, "correction_fwd": cf, "correction_bwd": cb,
                      "params": g.params, "trace_s": round(dt, 3)}
        print(f"{name:16s} fwd {rows[name]['forward_ratio']:.4f}  fwd+bwd {rows[name]['fwd_bwd_ratio']:.4f}  "
              f"(raw {rows[name]['raw_forward_ratio']:.4f} / {rows[name]['raw_fwd_bwd_ratio']:.4f})")
    doc = {"benchmark": "trace_oracle", "method": __doc__.split("Method:", 1)[1].split("Run:", 1)[0].strip(),
           "band": [1.0, 1.06], "architectures": rows}
    out = ROOT / "benchmarks" / "results" / "trace_oracle.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
