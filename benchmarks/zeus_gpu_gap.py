"""Zeus named rows: where the prior's per-GPU gap sits (analysis only; nothing fitted, nothing shipped).

Three read-outs, per Zeus GPU, for the notes on issue 13's missed power target:

1. ShuffleNetV2 / CIFAR-100 (Adadelta) at batch 512 / 1,024 / 2,048, maximum power limit: the measured step time
   less each epoch's first-batch wait (batch / the DataLoader worker rate the committed prior_vs_public rows use),
   over the prior's forward + backward time per step (kernels and their gaps, no host launch time, no optimizer).
   About 1 where the prior's kernels are right and the step is GPU-bound; above 1, the measured step holds more
   than the prior's kernels (longer kernels, or host / input time the GPU waits for).
2. BERT-base / SQuAD: measured over predicted average power (the committed prior_vs_public rows), median per GPU.
3. Measured sensitivity to the power limit (no model), ShuffleNetV2 at batch 1,024 and BERT at batch 8: epoch time
   and average power at a 150 W limit over those at the GPU's maximum, and BERT's average power at the maximum limit
   and at the next limit below it. A GPU-bound step slows when its power is cut; one that waits for the host or the
   input barely does; a GPU whose power no longer rises with the limit runs at its top clock below the limit.

Data: Zeus NSDI'23 traces (github.com/ml-energy/zeus, Apache-2.0; ../shared/data/zeus-nsdi23) and
benchmarks/results/prior_vs_public.json (the committed prior rows). Run:
PYTHONPATH=src python benchmarks/zeus_gpu_gap.py  (-> benchmarks/results/zeus_gpu_gap.json, ~1 min)
"""
from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import prior_vs_public as P  # noqa: E402
from wattlint.hardware import resolve_gpu  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "zeus_gpu_gap.json"
TAGS = {"v100-pcie-16gb": "v100", "a40-48gb": "a40", "p100-pcie-16gb": "p100", "quadro-rtx6000-24gb": "rtx6000"}
SHUFFLE = ("cifar100", "shufflenetv2")


def main() -> None:
    committed = json.loads((ROOT / "benchmarks" / "results" / "prior_vs_public.json").read_text())
    rows = committed["rows"]["zeus_named"]
    measured = P._zeus_measured()
    w = P.WORKLOADS[SHUFFLE]
    out: dict = {"benchmark": "zeus_gpu_gap", "method": __doc__, "kernels": {}, "bert_power": {}, "power_limit": {}}
    for key, tag in TAGS.items():
        gpu, _ = resolve_gpu(key)
        per = []
        for b in (512, 1024, 2048):
            r = next((x for x in rows if x["gpu"] == key and x["workload"] == "/".join(SHUFFLE)
                      and x["batch_size"] == b and x["optimizer"] == "adadelta"), None)
            if r is None:
                continue
            g = P._trace((SHUFFLE, b, "adadelta"), w["build"], w["input"](b), b, w["precision"], "adadelta",
                         impl=P.ZEUS_OPTIMIZER_IMPL, grads_to_none=P.ZEUS_GRADS_TO_NONE)
            d = P._estimate(g, gpu, b, P.run_precision(w["precision"], gpu), "adadelta")
            fb = sum(d["phases"][k]["time_s"] for k in ("forward", "backward"))
            steps = math.ceil(w["samples"] / b)
            wait = b / r["loader_samples_per_s"]
            meas_step = (r["measured_epoch_s"] - wait) / steps
            per.append({"batch_size": b, "measured_step_less_wait_ms": round(meas_step * 1e3, 2),
                        "prior_forward_backward_ms": round(fb * 1e3, 2), "ratio": round(meas_step / fb, 3),
                        "measured_avg_power_w": r["measured_avg_power_w"], "prior_avg_power_w": r["prior_avg_power_w"]})
        out["kernels"][key] = per
        bert = [x["measured_avg_power_w"] / x["prior_avg_power_w"] for x in rows
                if x["gpu"] == key and x["workload"] == "squad/bert_base_uncased"]
        out["bert_power"][key] = {"n": len(bert), "median_measured_over_prior": round(statistics.median(bert), 3)}
        top = max(pl for (t, wk, b, o, pl) in measured if t == tag and wk == "/".join(SHUFFLE) and b == 1024
                  and o == "adadelta")
        hi = measured[(tag, "/".join(SHUFFLE), 1024, "adadelta", top)]
        lo = measured[(tag, "/".join(SHUFFLE), 1024, "adadelta", 150.0)]
        bert = "squad/bert_base_uncased"
        b_hi = measured[(tag, bert, 8, "adamw", top)]
        b_lo = measured[(tag, bert, 8, "adamw", 150.0)]
        below = max(pl for (t, wk, b, o, pl) in measured if t == tag and wk == bert and b == 8 and pl < top)
        b_below = measured[(tag, bert, 8, "adamw", below)]
        out["power_limit"][key] = {
            "shufflenetv2_b1024": {"max_limit_w": top, "time_150w_over_max": round(lo[0] / hi[0], 3),
                                   "power_150w_over_max": round(lo[1] / hi[1], 3)},
            "bert_b8": {"max_limit_w": top, "avg_power_at_max_w": round(b_hi[1], 1),
                        "avg_power_at_max_over_limit": round(b_hi[1] / top, 3),
                        "time_150w_over_max": round(b_lo[0] / b_hi[0], 3),
                        f"power_{below:.0f}w_over_max": round(b_below[1] / b_hi[1], 3)}}
        print(key, json.dumps(per), out["bert_power"][key], out["power_limit"][key])
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
