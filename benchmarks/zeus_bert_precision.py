"""Zeus BERT-base / SQuAD rows: what precision and padding could the measured epochs have run? (diagnostic only;
nothing fitted, nothing shipped).

For each GPU's rows at batch 8 / 16 / 32 (maximum power limit), the shipped prior's epoch time and average power
with the benchmark's reconstruction (FP32 / TF32 as PyTorch 1.x defaults, every feature padded to 384 tokens:
benchmarks/prior_vs_public.py WORKLOADS) and the same graph traced at fp16 autocast (AMP), beside the measurement,
plus the FLOPs per step and the rate the measured step implies (FLOPs / measured step time) against the GPU's FP32
peak. Used in docs/accuracy/prior.md (2026-12-06): at batch 8 the V100 would need ~87 % of its FP32 peak over the
whole step at 384 tokens (impossible with the element-wise work), while AMP at 384 tokens is ~2x too fast; dynamic
padding (each batch padded to its longest feature) is consistent with the measured time per sample rising with the
batch, but SQuAD's feature lengths are not available offline to price it.

Data: Zeus NSDI'23 traces (github.com/ml-energy/zeus, Apache-2.0; licence text in benchmarks/public/licences/).

Run: PYTHONPATH=src python benchmarks/zeus_bert_precision.py  (-> benchmarks/results/zeus_bert_precision.json)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import prior_vs_public as m  # noqa: E402 - the Zeus reconstruction (traces, plan, measured rows)

from wattlint.hardware import resolve_gpu  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "zeus_bert_precision.json"
GPUS = (("v100-pcie-16gb", "v100", 250.0), ("a40-48gb", "a40", 300.0), ("p100-pcie-16gb", "p100", 250.0),
        ("quadro-rtx6000-24gb", "rtx6000", 260.0))
BATCHES = (8, 16, 32)


def main() -> dict:
    measured = m._zeus_measured()
    w = m.WORKLOADS[("squad", "bert_base_uncased")]
    rows = []
    for key, gfile, limit in GPUS:
        gpu, _ = resolve_gpu(key)
        for b in BATCHES:
            meas = [k for k in measured if k[0] == gfile and k[1] == "squad/bert_base_uncased" and k[2] == b
                    and k[4] == limit]
            if not meas:
                continue
            t_meas, p_meas = measured[meas[0]]
            steps = -(-w["samples"] // b)
            row = {"gpu": key, "batch_size": b, "measured_epoch_s": round(t_meas, 1),
                   "measured_avg_power_w": round(p_meas, 1)}
            for label, prec in (("fp32_384", m.run_precision(w["precision"], gpu)), ("amp_fp16_384", "fp16")):
                g = m._trace((("squad", "bert_base_uncased"), b, "adamw", label), w["build"], w["input"](b), b,
                             "fp16" if label.startswith("amp") else w["precision"], "adamw",
                             impl=m.ZEUS_OPTIMIZER_IMPL, grads_to_none=m.ZEUS_GRADS_TO_NONE)
                d = m._estimate(g, gpu, b, prec, "adamw")
                t = steps * d["per_step"]["time_s"]
                row[label] = {"epoch_s": round(t, 1), "avg_power_w": round(d["per_step"]["gpu_energy_j"] /
                                                                          d["per_step"]["time_s"], 1),
                              "time_ratio_pred_over_meas": round(t / t_meas, 3)}
                if label == "fp32_384":
                    flops = d["per_step"]["flops"]
                    row["flops_per_step"] = flops
                    row["implied_tflops"] = round(flops / (t_meas / steps) / 1e12, 2)
                    row["implied_share_of_fp32_peak"] = round(flops / (t_meas / steps) / gpu.peak("fp32"), 3)
            rows.append(row)
    out = {"benchmark": "zeus_bert_precision", "method": __doc__, "rows": rows}
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    for r in main()["rows"]:
        print(r["gpu"], r["batch_size"], r["measured_epoch_s"], r["fp32_384"]["epoch_s"], r["amp_fp16_384"]["epoch_s"],
              r["implied_share_of_fp32_peak"])
