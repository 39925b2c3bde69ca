"""Does eager host time show through on GPU-bound single-GPU training? The H200 validation rows as a check of
energy/system.HOST_EXPOSED (0 shipped; 1 preferred by the vTrain train split, benchmarks/host_exposed.py).

Re-prices the 16 measured H200 configurations (calibration/runs/h200-sxm-141gb/) with the prior and with the H200's
measured model at HOST_EXPOSED 0 and 1 and at two per-op host times (21 us: the shipped default; 28.6 us: fitted on
the H200 host by benchmarks/device/host_fit.py). Evaluation only: nothing here is fitted on these rows.
Writes benchmarks/results/measured_host_exposure.json.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "calibration" / "runs" / "h200-sxm-141gb"
PRED = RUN / "20261204T101730Z-predictions.json"
MEAS = RUN / "20261204T102028Z-measurements.json"


def main() -> int:
    from wattlint.api import estimate, trace
    from wattlint.energy import system
    from wattlint.energy.predictor import PriorPredictor, get_predictor
    from wattlint.hardware import resolve_gpu

    spec, _ = resolve_gpu("h200-sxm-141gb")
    configs = json.loads(PRED.read_text())["configs"]
    meas = {r["name"]: r["time_per_step_s"] for r in json.loads(MEAS.read_text())["results"] if r["status"] == "ok"}
    graphs = {c["name"]: trace(c["source"], {"inputs": c["inputs"], "batch_size": c["batch_size"],
                                              "precision": c["precision"], "optimizer": c["optimizer"]})
              for c in configs}
    shipped = system.HOST_EXPOSED
    out = []
    try:
        for name, pred in (("prior", PriorPredictor()), ("measured", get_predictor(spec))):
            for host in (21e-6, 28.6e-6):
                for exposed in (0.0, 1.0):
                    system.HOST_EXPOSED = exposed
                    errs = {}
                    for c in configs:
                        est = estimate(graphs[c["name"]], gpu=spec, predictor=pred, lint=False,
                                       batch_size=c["batch_size"], steps=1, precision=c["precision"],
                                       optimizer=c["optimizer"], host_op_time=host)
                        errs[c["name"]] = est.per_step.time_s / meas[c["name"]] - 1
                    a = [abs(v) for v in errs.values()]
                    b = [abs(v) for k, v in errs.items() if k != "lstm-lm-b64-s256-bf16"]
                    row = {"predictor": name, "host_op_s": host, "host_exposed": exposed,
                           "time_mape": 100 * statistics.fmean(a), "time_median": 100 * statistics.median(a),
                           "time_mape_without_lstm_bf16": 100 * statistics.fmean(b), "errors": errs}
                    out.append(row)
                    print(f"{name:9s} host {host * 1e6:5.1f} us exposed {exposed:.0f}: time MAPE {row['time_mape']:5.1f} "
                          f"(median {row['time_median']:.1f}; without LSTM bf16 {row['time_mape_without_lstm_bf16']:.1f})")
    finally:
        system.HOST_EXPOSED = shipped
    (ROOT / "benchmarks" / "results" / "measured_host_exposure.json").write_text(
        json.dumps({"method": __doc__.strip(), "rows": out}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
