"""Measured accuracy on a lent GPU: whole-model predictions vs NVML measurements (docs/accuracy/measured.md).

Reads the committed files of one campaign (calibration/runs/<gpu>/): the measurements file (`validate measure`,
validation data: never in a fit) and every predictions file given, each with a label saying when it was made
(before the measurement = a blind prediction; after = labelled so). Adds the second naive baseline users apply
(the traced FLOPs at 40 % of the dense peak, power = TDP) beside the tool's own `naive` (FLOPs / peak x TDP).

Writes benchmarks/results/measured_<gpu>.json and prints the Markdown tables of docs/accuracy/measured.md.

Usage: python benchmarks/measured_report.py MEASUREMENTS.json LABEL=PREDICTIONS.json [LABEL=PREDICTIONS.json ...]
"""
from __future__ import annotations

import hashlib
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MFU_RULE = 0.40  # the "40 % MFU" rule of thumb (docs/ACCURACY.md, naive baselines)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _summary(errs: list[float]) -> dict:
    a = sorted(abs(e) for e in errs)
    if not a:
        return {"n": 0}
    return {"n": len(a), "mape": 100 * statistics.fmean(a), "median": 100 * statistics.median(a),
            "worst": 100 * a[-1], "within_15": 100 * sum(x <= 0.15 for x in a) / len(a)}


def _variants(label: str, cfg: dict, spec: dict) -> dict[str, dict]:
    """(variant name -> time_s, energy_j, power_w) for one configuration of one predictions file."""
    out = {}
    for v, p in cfg.get("predictions", {}).items():
        name = p.get("calibration", v)
        if name == "naive":
            name = "naive (FLOPs/peak x TDP)"
        out[f"{name} [{label}]" if name not in ("naive (FLOPs/peak x TDP)",) else name] = {
            "time_s": p["time_s"], "energy_j": p["gpu_energy_j"], "power_w": p["avg_gpu_power_w"]}
    naive = cfg.get("predictions", {}).get("naive")
    if naive:  # same FLOPs and peak as the tool's naive row, at 40 % of peak
        t = naive["time_s"] / MFU_RULE
        out["naive (FLOPs at 40 % of peak, TDP)"] = {"time_s": t, "energy_j": t * spec["tdp_w"],
                                                       "power_w": spec["tdp_w"]}
    return out


def build(meas_path: Path, preds: list[tuple[str, Path]]) -> dict:
    meas = json.loads(meas_path.read_text())
    got = {r["name"]: r for r in meas["results"] if r.get("status") == "ok"}
    rows: dict[str, dict] = {}
    variants: dict[str, dict[str, list[float]]] = {}
    done: dict[str, dict[str, dict]] = {}
    files = []
    for label, pp in preds:
        doc = json.loads(pp.read_text())
        blind = _sha(pp) == meas["predictions_sha256"]
        files.append({"label": label, "file": pp.name, "sha256": _sha(pp), "created_utc": doc.get("created_utc"),
                      "blind": blind, "variants": doc.get("variants")})
        spec = doc["spec"]["values"] if "values" in doc.get("spec", {}) else doc["spec"]
        this: dict[str, dict[str, dict]] = {}  # variant -> config -> predicted numbers, for this file
        for cfg in doc["configs"]:
            m = got.get(cfg["name"])
            if m is None or cfg.get("error"):
                continue
            rows.setdefault(cfg["name"], {"precision": cfg["precision"],
                                          "measured": {"time_s": m["time_per_step_s"],
                                                       "energy_j": m["energy_per_step_j"],
                                                       "power_w": m["avg_power_w"]}, "predicted": {}})
            for v, p in _variants(label, cfg, spec).items():
                this.setdefault(v, {})[cfg["name"]] = p
        for v, per_cfg in this.items():
            base = v.split(" [")[0]
            # the same predictor with the same numbers on EVERY configuration in an earlier file: listed once
            if v in variants or any(w.split(" [")[0] == base and done.get(w) == per_cfg for w in variants):
                continue
            done[v] = per_cfg
            d = variants.setdefault(v, {"time": [], "energy": [], "power": []})
            for name, p in per_cfg.items():
                row = rows[name]
                row["predicted"][v] = p
                for q, k in (("time", "time_s"), ("energy", "energy_j"), ("power", "power_w")):
                    d[q].append(p[k] / row["measured"][k] - 1)
    summary = {v: {q: _summary(e) for q, e in d.items()} for v, d in variants.items()}
    return {"gpu": meas.get("gpu"), "device": meas.get("device"), "meter": meas.get("meter", {}).get("name"),
            "energy_source": meas.get("meter", {}).get("energy_source"), "idle_power_w": meas.get("idle_power_w"),
            "window_scale": meas.get("window_scale"), "measurements": {"file": meas_path.name,
                                                                      "sha256": _sha(meas_path)},
            "predictions": files, "rows": rows, "summary": summary,
            "method": ("per configuration: median of synchronised chunks of steps timed with CUDA events over half "
                       "the window, average board power from NVML's total-energy counter over the other half; "
                       "energy/step = average power x time/step (GPU board only). Errors are predicted/measured - 1.")}


def markdown(doc: dict) -> str:
    vs = list(doc["summary"])
    lines = ["| predictor | time MAPE | median | worst | within 15 % | energy MAPE | median | power MAPE |",
             "|---|---|---|---|---|---|---|---|"]
    for v in vs:
        s = doc["summary"][v]
        t, e, p = s["time"], s["energy"], s["power"]
        lines.append(f"| {v} | {t['mape']:.1f} | {t['median']:.1f} | {t['worst']:.0f} | {t['within_15']:.0f} % | "
                     f"{e['mape']:.1f} | {e['median']:.1f} | {p['mape']:.1f} |")
    lines += ["", "| configuration | measured ms / J / W | " + " | ".join(f"{v} t / E / P %" for v in vs) + " |",
              "|---|---|" + "---|" * len(vs)]
    for name, r in doc["rows"].items():
        m = r["measured"]
        cells = []
        for v in vs:
            p = r["predicted"].get(v)
            cells.append("–" if p is None else " / ".join(
                f"{100 * (p[k] / m[k] - 1):+.0f}" for k in ("time_s", "energy_j", "power_w")))
        lines.append(f"| {name} | {m['time_s'] * 1e3:.1f} / {m['energy_j']:.1f} / {m['power_w']:.0f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or any("=" not in a for a in argv[1:]):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    meas = Path(argv[0])
    preds = [(a.split("=", 1)[0], Path(a.split("=", 1)[1])) for a in argv[1:]]
    doc = build(meas, preds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"measured_{doc['gpu']}.json"
    out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(markdown(doc))
    print(f"-> {out.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
