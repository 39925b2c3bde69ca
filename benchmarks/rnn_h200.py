"""The prior on the H200 LSTM measurements (calibration/runs/h200-sxm-141gb): the ``lstm`` op samples (training
data: full nn.LSTM forward or backward) and the two LSTM LM validation rows (TEST set: reported, never tuned on).

Usage: PYTHONPATH=src python benchmarks/rnn_h200.py   (prints only; writes nothing)
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "calibration" / "runs" / "h200-sxm-141gb"


def op_samples() -> None:
    from wattlint.calibrate import benchmarks
    from wattlint.calibrate.fitting import find_runs, run_spec
    from wattlint.calibrate.runner import read_rows
    from wattlint.energy.prior import op_prior

    out = []
    for rp in find_runs([str(RUNS)]):
        spec, _ = run_spec(json.loads(rp.json.read_text()))
        for row in read_rows(rp.csv):
            if row.get("status") != "ok" or row["family"] != "lstm":
                continue
            params = json.loads(row["params"])
            recs, _ = benchmarks.fit_records("lstm", params, row["precision"], row["phase"])
            ts = [p.time_s for p in (op_prior(r, spec, row["precision"]) for r in recs) if p.time_s > 0]
            out.append((params, row["precision"], row["phase"], float(row["time_s"]), ts))
    out.sort(key=lambda o: (o[1], o[2], json.dumps(o[0], sort_keys=True)))
    print("lstm op samples (training data), prior = sum of the traced records' prior times")
    print(f"{'batch':>5} {'hidden':>6} {'L':>2} {'T':>4} prec phase    kernels meas_ms prior_ms  ratio")
    for p, prec, ph, tm, ts in out:
        print(f"{p['batch']:5d} {p['hidden']:6d} {p.get('layers', 1):2d} {p['seq']:4d} {prec} {ph:8s} {len(ts):7d} "
              f"{tm * 1e3:7.3f} {sum(ts) * 1e3:8.3f} {sum(ts) / tm:6.2f}")
    for prec in ("fp32", "bf16", None):
        sel = [o for o in out if prec in (None, o[1])]
        ratios = [sum(o[4]) / o[3] for o in sel]
        wape = sum(abs(sum(o[4]) - o[3]) for o in sel) / sum(o[3] for o in sel)
        print(f"  {prec or 'all':4s} n={len(sel):2d} MAPE {100 * statistics.fmean(abs(r - 1) for r in ratios):5.1f} %  "
              f"WAPE {100 * wape:5.1f} %  geomean prior/measured "
              f"{math.exp(statistics.fmean(math.log(r) for r in ratios)):.3f}")


def validation_rows() -> None:
    from wattlint.api import estimate, trace
    from wattlint.energy.predictor import PriorPredictor, get_predictor
    from wattlint.hardware import resolve_gpu

    val = {m["name"]: m["measured"] for m in json.loads(
        (RUNS / "20261204T103600Z-validation.json").read_text())["models"]}
    spec, _ = resolve_gpu("h200-sxm-141gb")
    print("LSTM LM validation rows (TEST set: report only)")
    for prec in ("bf16", "fp32"):
        name = f"lstm-lm-b64-s256-{prec}"
        g = trace("wattlint.calibrate.zoo:lstm_lm", {"inputs": ["ids=int64[64,256]"], "batch_size": 64,
                                                       "precision": prec, "optimizer": "adamw"})
        m = val[name]
        for label, pred in (("prior", PriorPredictor()), ("shipped model", get_predictor(spec))):
            e = estimate(g, gpu=spec, predictor=pred, lint=False, batch_size=64, steps=1, precision=prec,
                         optimizer="adamw")
            s = e.per_step
            gap = e.phases["idle_gaps"].time_s if "idle_gaps" in e.phases else 0.0
            print(f"  {name} {label:13s} {s.time_s * 1e3:7.2f} ms (measured {m['time_s'] * 1e3:.2f}, "
                  f"{100 * (s.time_s / m['time_s'] - 1):+.1f} %)  {s.gpu_energy_j:6.2f} J (measured "
                  f"{m['gpu_energy_j']:.2f}, {100 * (s.gpu_energy_j / m['gpu_energy_j'] - 1):+.1f} %)  launch gaps "
                  f"{gap * 1e3:.2f} ms  records {len(g.records)}")


if __name__ == "__main__":
    op_samples()
    validation_rows()
