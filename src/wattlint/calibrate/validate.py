"""Model-level validation in three steps, so that the device machine only measures:

1. ``predict``  (dev machine): the estimator's per-step predictions for a frozen list of held-out whole models
   (src/wattlint/data/validation-models.toml) on one GPU -> ``<stamp>-predictions.json``; committed BEFORE measuring.
   Variants: ``prior`` (spec-sheet physics), ``calibrated`` (a fitted model, when one is given or shipped) and
   ``naive`` (FLOPs / peak x TDP, the baseline most calculators use).
2. ``measure``  (device): trains every configuration with synthetic data on the device, warm-up then a fixed time
   window, timing steps (CUDA events / synchronize) and average board power with the calibration meter ->
   ``<stamp>-measurements.json`` with the predictions file's sha256. Needs only torch (+ pynvml on a GPU): no
   lightgbm, no estimator. These measurements are marked ``validation_data`` and never enter a fit.
3. ``compare``  (anywhere): predicted vs measured time/step, GPU energy/step, average power per model and
   variant, MAPE / median / worst / share within 15 % -> ``<stamp>-validation.json`` + a table.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 (tomli is a dependency there)
    import tomli as tomllib  # type: ignore[no-redef]
from pathlib import Path
from typing import Any

from ..io import atomic_write_json, sha256_bytes, utc_now, utc_stamp, write_new_text
from ..types import ConfigError, WattlintError

PRED_SCHEMA = "wattlint.validation-predictions/1"
MEAS_SCHEMA = "wattlint.validation-measurements/1"
VAL_SCHEMA = "wattlint.validation/1"
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


# the largest validation input read (predictions, measurements, a calibration run's JSON: tens of KiB each)
JSON_FILE_MAX_BYTES = 64 << 20


def read_json_file(path: str | Path, what: str, error=None) -> tuple[Any, bytes]:
    """(the parsed JSON, its bytes) of a file the user names; a missing file, a directory, non-UTF-8 bytes or broken
    JSON is ``error`` (default :class:`ValidationError`, an input error: exit 2) naming the file and ``what`` it
    should be."""
    import stat

    error = error or ValidationError
    p = Path(path)
    try:
        st = p.stat()  # before any read: a named pipe hung, a link to /dev/zero filled the memory
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{path} is a directory, not a {what}")
        if not stat.S_ISREG(st.st_mode):
            kind = "a named pipe" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
            raise error(f"{path} is {kind}, not a {what} (a regular file); nothing was read from it")
        if st.st_size > JSON_FILE_MAX_BYTES:
            raise error(f"{path}: {st.st_size / 2**20:.0f} MiB, larger than any {what} "
                        f"({JSON_FILE_MAX_BYTES >> 20} MiB at most); nothing was read from it")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError:  # a NUL byte in the name (a damaged measurements file's predictions_file)
        raise error(f"{what} {str(path)[:80]!r}: not a file name (it holds a NUL byte)") from None
    try:
        return json.loads(raw.decode("utf-8")), raw
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte {e.start}): not a {what}") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply: not a {what}") from None
    except json.JSONDecodeError as e:
        raise error(f"{path}: not valid JSON ({e.msg}, line {e.lineno} column {e.colno}): not a {what}") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts (4,300)
        raise error(f"{path}: not valid JSON ({' '.join(str(e).split())[:120]}): not a {what}") from None


def require_fields(doc: Any, fields: dict[str, Any], where: str, error=None) -> None:
    """Check that ``doc`` has each field with the given type (a tuple of types; a dict: a nested object checked the
    same way; a list of one dict: a list of such objects), so that a damaged or hand-edited file is an input error
    naming the field rather than a KeyError deep in the code."""
    error = error or ValidationError
    if not isinstance(doc, dict):
        raise error(f"{where}: expected a JSON object")
    for key, typ in fields.items():
        if key not in doc:
            raise error(f"{where}: missing field {key!r}")
        v = doc[key]
        if isinstance(typ, dict):
            require_fields(v, typ, f"{where}.{key}", error)
        elif isinstance(typ, list):
            if not isinstance(v, list):
                raise error(f"{where}: {key!r} must be a list")
            for i, item in enumerate(v):
                require_fields(item, typ[0], f"{where}.{key}[{i}]", error)
        elif isinstance(v, bool) and bool not in typ or not isinstance(v, typ):
            raise error(f"{where}: field {key!r} = {str(v)[:40]}: expected {' or '.join(t.__name__ for t in typ)}")


_NUM = (int, float)
_PRED_FIELDS = {"configs": [{"name": (str,), "source": (str,), "precision": (str,), "inputs": (list,)}]}
_PRED_VALUE_FIELDS = {"time_s": _NUM, "gpu_energy_j": _NUM, "avg_gpu_power_w": _NUM}
_MEAS_FIELDS = {"predictions_file": (str,), "predictions_sha256": (str,), "results": [{"name": (str,)}]}
_MEAS_OK_FIELDS = {"time_per_step_s": _NUM, "energy_per_step_j": _NUM, "avg_power_w": _NUM, "timing_steps": (int,),
                   "power_steps": (int,), "power_source": (str,)}


def _only(configs: list[dict[str, Any]], only: list[str], where: str) -> list[dict[str, Any]]:
    """The configurations named by --only; a name that is not among them is refused (a typo would otherwise write a
    frozen predictions file, or a measurement, of nothing)."""
    names = [c["name"] for c in configs]
    unknown = [n for n in only if n not in names]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (configurations: {', '.join(names)})"
        raise ValidationError(f"--only {unknown[0]!r}: no such configuration in {where}{hint}")
    return [c for c in configs if c["name"] in only]


def _check_predictions(pred: Any, where: str) -> None:
    require_fields(pred, _PRED_FIELDS, where)
    for key in ("gpu", "device"):  # compared with the measurements' and printed: a database key, a device kind
        v = pred.get(key)
        if v is not None and not isinstance(v, str):
            raise ValidationError(f"{where}: field {key!r} = {_shown(v)}: expected a string")
    for i, c in enumerate(pred["configs"]):
        if c.get("error"):
            continue
        preds = c.get("predictions")
        if not isinstance(preds, dict):
            raise ValidationError(f"{where}.configs[{i}]: missing field 'predictions'")
        for name, v in preds.items():
            at = f"{where}.configs[{i}].predictions.{name}"
            require_fields(v, _PRED_VALUE_FIELDS, at)
            for key in _PRED_VALUE_FIELDS:  # NaN, inf, 0 or a negative value gave +nan in the table, bare NaN in JSON
                if not _positive_finite(v[key]):
                    raise ValidationError(f"{at}: field {key!r} = {_shown(v[key])}: expected a positive finite "
                                          "number")
            rf = v.get("energy_range_factors")
            if rf is not None and not (isinstance(rf, list) and len(rf) == 2
                                       and all(_positive_finite(x, zero=True) for x in rf) and rf[0] <= rf[1]):
                raise ValidationError(f"{at}: field 'energy_range_factors' = {_shown(rf)}: expected [low, high], "
                                      "two finite numbers 0 <= low <= high")


def _positive_finite(v: Any, *, zero: bool = False) -> bool:
    """Whether ``v`` is a JSON number (not a bool), finite (a 400-digit JSON integer is not: it overflows a float)
    and > 0 (>= 0 with ``zero``)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        x = float(v)
    except OverflowError:
        return False
    return math.isfinite(x) and (x >= 0 if zero else x > 0)


def _shown(v: Any) -> str:
    """A damaged value, short (a 400-digit integer is not printed whole)."""
    try:
        text = repr(v) if isinstance(v, float) else json.dumps(v)
    except ValueError:  # (an integer too long for str())
        text = "an integer of thousands of digits"
    return text if len(text) <= 40 else text[:37] + "..."


# measured quantities that must be positive and finite (a step takes time; a GPU draws power): 0, a negative value,
# NaN or inf gave an error of +nan or -1000 ms in the table and bare NaN in the written JSON
_MEAS_POSITIVE = ("time_per_step_s", "energy_per_step_j", "avg_power_w")


def _check_measurements(meas: Any, where: str) -> None:
    require_fields(meas, _MEAS_FIELDS, where)
    for key in ("meter", "device"):  # provenance compare reads (written as objects by measure)
        if key in meas and not isinstance(meas[key], dict):
            raise ValidationError(f"{where}: field {key!r} = {json.dumps(meas[key])[:40]}: expected an object")
    for key in ("name", "energy_source"):  # printed in the table and written to the validation as text
        v = meas.get("meter", {}).get(key)
        if v is not None and not isinstance(v, str):
            raise ValidationError(f"{where}: field 'meter.{key}' = {_shown(v)}: expected a string")
    for key in ("status", "gpu"):  # (a killed measurement wrote no status: absent or null is one)
        v = meas.get(key)
        if v is not None and not isinstance(v, str):
            raise ValidationError(f"{where}: field {key!r} = {_shown(v)}: expected a string")
    part = meas.get("part")
    if part is not None and not (isinstance(part, list) and len(part) == 2
                                 and all(isinstance(k, int) and not isinstance(k, bool) for k in part)):
        raise ValidationError(f"{where}: field 'part' = {json.dumps(part)[:40]}: expected [K, N]")
    if part is not None and not 1 <= part[0] <= part[1]:  # --part K/N: 1 <= K <= N ([0, 0] is no part)
        raise ValidationError(f"{where}: field 'part' = {_shown(part)}: expected [K, N] with 1 <= K <= N")
    for i, r in enumerate(meas["results"]):
        if isinstance(r, dict) and r.get("status") is not None and not isinstance(r["status"], str):
            raise ValidationError(f"{where}.results[{i}]: field 'status' = {_shown(r['status'])}: expected a "
                                  "string ('ok' or 'error')")
        if r.get("status") == "ok":
            require_fields(r, _MEAS_OK_FIELDS, f"{where}.results[{i}]")
            for key in _MEAS_POSITIVE:
                v = r[key]
                if not _positive_finite(v):  # (a 400-digit integer: OverflowError from math.isfinite, exit 3)
                    raise ValidationError(f"{where}.results[{i}]: field {key!r} = {_shown(v)}: expected a positive "
                                          f"finite number")
            # step counts: a measurement times at least one step (measure times 3 or more); a modelled power (CPU)
            # runs none under the meter
            for key, least in (("timing_steps", 1), ("power_steps", 0)):
                if r[key] < least:
                    raise ValidationError(f"{where}.results[{i}]: field {key!r} = {_shown(r[key])}: expected a "
                                          f"whole number >= {least}")


class ValidationError(WattlintError):
    pass


def default_list_path() -> Path:
    """The shipped frozen list (package data: an installed wattlint has it too)."""
    return Path(__file__).resolve().parents[1] / "data" / "validation-models.toml"


def load_list(path: str | Path | None, name: str) -> tuple[list[dict[str, Any]], str, str]:
    """Configurations of list ``name`` (``gpu`` | ``cpu``) from the validation-models file; (configs, path, sha)."""
    p = Path(path) if path else default_list_path()
    if not p.is_file():
        raise ConfigError(f"validation list {p} not found")
    raw = p.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))  # an editor's byte-order mark is not TOML
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    if name not in data:
        raise ConfigError(f"{p}: no list {name!r} (lists: {', '.join(k for k in data if isinstance(data[k], list))})")
    configs = []
    names = set()
    for i, c in enumerate(data[name]):
        for key in ("name", "source", "inputs", "precision"):
            if key not in c:
                raise ConfigError(f"{p}: {name}[{i}] misses {key!r}")
        if c["precision"] not in PRECISIONS:
            raise ConfigError(f"{p}: {name}[{i}] precision {c['precision']!r} not in {PRECISIONS}")
        if c["name"] in names:
            raise ConfigError(f"{p}: duplicate config name {c['name']!r}")
        names.add(c["name"])
        c = dict(c)
        c.setdefault("optimizer", "adamw")
        c.setdefault("window_s", data.get("defaults", {}).get(f"{name}_window_s", 20.0))
        c.setdefault("warmup_s", data.get("defaults", {}).get(f"{name}_warmup_s", 5.0))
        configs.append(c)
    return configs, str(p), sha256_bytes(raw)


def batch_of(cfg: dict[str, Any]) -> int:
    from ..frontends.inputs import parse_input_spec

    return int(parse_input_spec(cfg["inputs"][0]).shape[0])


# ---- 1. predict ------------------------------------------------------------------------------------------------

def _variant(est) -> dict[str, Any]:
    ps, t = est.per_step, est.total
    out = {"time_s": ps.time_s, "gpu_energy_j": ps.gpu_energy_j,
           "avg_gpu_power_w": ps.avg_gpu_power_w or (ps.gpu_energy_j / ps.time_s if ps.time_s else 0.0),
           "calibration": est.calibration, "calibration_source": est.calibration_source}
    if t.energy_kwh:
        out["energy_range_factors"] = [t.energy_kwh_range[0] / t.energy_kwh, t.energy_kwh_range[1] / t.energy_kwh]
    return out


def predict(list_name: str, gpu, *, list_path: str | None = None, model_dir: str | None = None,
            spec_from: str | None = None, out: str | None = None, only: list[str] | None = None) -> Path:
    """Predictions for every configuration of a list on one GPU (or a CPU spec taken from a calibration run)."""
    from ..api import estimate, trace
    from ..energy.predictor import CalibratedPredictor, PriorPredictor, get_predictor
    from ..energy.prior import naive_time_energy

    configs, lpath, lsha = load_list(list_path, list_name)
    if only:
        configs = _only(configs, only, lpath)
    if spec_from:
        from .backends import spec_from_dict

        prov, _ = read_json_file(spec_from, "calibration run (.json)")
        if not isinstance(prov, dict):
            raise ValidationError(f"{spec_from}: not a calibration run (a JSON object)")
        vals = (prov.get("spec") or {}).get("values")
        if not vals:
            raise ValidationError(f"{spec_from}: the run stores no device spec")
        spec = spec_from_dict(vals)
        device = prov.get("device", {}).get("kind", "cpu")
        threads = prov.get("device", {}).get("threads")
    else:
        from ..hardware import resolve_gpu

        spec, _ = resolve_gpu(gpu)
        device, threads = "cuda", None
    variants: dict[str, Any] = {"prior": PriorPredictor()}
    model_info = None
    if model_dir:
        from ..energy.model import load_model

        m = load_model(model_dir)
        from .backends import FAKE_SPEC

        if m.gpu_key == FAKE_SPEC.key:  # the estimator refuses such a card too (energy.predictor.card_problem)
            raise ValidationError(f"--model {model_dir}: fitted on {FAKE_SPEC.key}, the deterministic test simulator, "
                                  "not a GPU: its numbers are not measurements of any device")
        on_cpu = device == "cpu" or spec.key.startswith("cpu-")
        if m.is_cpu != on_cpu:  # a CPU method check priced an H200 as 'calibrated' (review): fits never cross
            raise ValidationError(f"--model {model_dir}: fitted on {m.gpu_key} ("
                                  f"{'a CPU method check' if m.is_cpu else 'a GPU'}), the predictions are for "
                                  f"{spec.key} ({'a CPU' if on_cpu else 'a GPU'}): CPU and GPU fits never price "
                                  "each other's device")
        if m.gpu_key != spec.key and not on_cpu:  # as estimates transfer (energy.predictor._transferred)
            from ..energy.predictor import card_arch_vendor

            vendor = card_arch_vendor(m.card, m.gpu_key)[1]
            if not vendor or vendor != spec.vendor:
                raise ValidationError(f"--model {model_dir}: fitted on {m.gpu_key} ({vendor or 'unknown vendor'}), "
                                      f"the predictions are for {spec.key} ({spec.vendor}): a calibration never "
                                      "transfers across vendors (another kernel library); estimates keep the prior")
        variants["calibrated"] = CalibratedPredictor(m, m.gpu_key, transferred=m.gpu_key != spec.key)
        model_info = {"path": str(model_dir), "calibration_source": m.source,
                      "card_sha256": sha256_bytes((Path(model_dir) / "card.json").read_bytes())}
    elif not spec_from:
        auto = get_predictor(spec)
        if not isinstance(auto, PriorPredictor):
            variants["calibrated"] = auto
            model_info = {"auto": True, "calibration_source": auto.source}
    rows = []
    for c in configs:
        entry: dict[str, Any] = {k: c[k] for k in c}
        entry["batch_size"] = batch_of(c)
        entry["predictions"] = {}
        graph = None
        try:
            graph = trace(c["source"], {"inputs": c["inputs"], "batch_size": entry["batch_size"],
                                        "precision": c["precision"], "optimizer": c["optimizer"]})
            for vname, pred in variants.items():
                est = estimate(graph, gpu=spec, predictor=pred, lint=False, batch_size=entry["batch_size"], steps=1,
                               precision=c["precision"], optimizer=c["optimizer"])
                entry["predictions"][vname] = _variant(est)
            fl = float(est.per_step.flops or graph.total().flops)
            dk = {"fp32": "fp32", "tf32": "tf32", "bf16": "bf16", "fp16": "fp16"}[c["precision"]]
            t, e = naive_time_energy(fl, spec, dk)
            entry["predictions"]["naive"] = {"time_s": t, "gpu_energy_j": e, "avg_gpu_power_w": spec.tdp_w,
                                             "calibration": "naive", "calibration_source": "FLOPs / peak x TDP"}
            entry["graph"] = {"flops_per_step": fl, "records": len(graph.records), "params": graph.params,
                              "unsupported": graph.unsupported(), "status": graph.status_counts()}
        except WattlintError as e:
            entry["error"] = str(e)
        rows.append(entry)
    if rows and all(r.get("error") for r in rows):  # a frozen file without one prediction: nothing to measure
        first = rows[0]
        raise ValidationError(f"no configuration could be predicted ({len(rows)} tried; {first['name']}: "
                              f"{first['error']}): no predictions file written")
    from .backends import spec_to_dict

    doc = {
        "schema": PRED_SCHEMA, "created_utc": utc_now(), "device": device, "gpu": spec.key, "spec": spec_to_dict(spec),
        "cpu_threads": threads, "list": {"name": list_name, "path": lpath, "sha256": lsha},
        "variants": sorted(list(variants) + ["naive"]), "model": model_info, "spec_from": spec_from,
        "configs": rows,
        "note": "predictions are made and committed before any measurement; measurements never enter a fit",
    }

    path = _out_path(out, Path("calibration") / "runs" / spec.key, "predictions")
    frozen = (f"{path} exists: a predictions file is frozen once written (measurements refer to its sha256); "
              f"pass another --out")
    if path.exists():
        raise ValidationError(frozen)
    try:  # complete or absent (a killed write left a torn file that then blocked the name), never replacing one
        write_new_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    except FileExistsError:  # created by another process since the check above
        raise ValidationError(frozen) from None
    except OSError as e:  # disk full, read-only folder: the environment, not a bug (exit 2)
        raise ValidationError(f"cannot write {path}: {e.strerror or e}; nothing written") from None
    return path


# ---- 2. measure ------------------------------------------------------------------------------------------------

def _make_inputs(cfg: dict[str, Any], dev):
    import torch

    from ..frontends.inputs import parse_input_spec

    out = []
    high = int(cfg.get("int_high", 1000))
    for s in cfg["inputs"]:
        t = parse_input_spec(s)
        dt = getattr(torch, t.dtype)
        if dt.is_floating_point:
            out.append(torch.randn(t.shape, device=dev, dtype=dt))
        else:
            out.append(torch.randint(0, high, t.shape, device=dev, dtype=dt))
    return out


def _loss(output, inputs=(), model=None):
    """The loss the frontend traces (cross-entropy on logits, a plain language model's token-level cross-entropy over
    its integer ``inputs``, else the sum of the outputs)."""
    try:
        from ..frontends.torch import _loss as frontend_loss, _token_inputs
    except Exception:  # noqa: BLE001 - keep measuring on an image where the tracer cannot import
        frontend_loss = None
    if frontend_loss is not None:
        return frontend_loss(output, False, None, _token_inputs(tuple(inputs), model=model))[0]
    import torch
    import torch.nn.functional as F

    if isinstance(output, dict) and "logits" in output:
        logits = output["logits"]
    elif isinstance(output, torch.Tensor) and output.dim() == 2 and output.shape[1] > 1:
        logits = output
    else:
        flat = list(output.values()) if isinstance(output, dict) else [output]
        return sum(t.sum() for t in flat if isinstance(t, torch.Tensor) and t.is_floating_point())
    rows = logits.reshape(-1, logits.shape[-1])
    return F.cross_entropy(rows, torch.zeros(rows.shape[0], dtype=torch.long, device=rows.device))


def _build(cfg: dict[str, Any], dev):
    import torch

    from ..frontends.source import load_attr

    obj = load_attr(cfg["source"])
    with torch.device(dev):
        made = obj() if not isinstance(obj, torch.nn.Module) else obj
    if isinstance(made, tuple):
        made = made[0]
    model = made.to(dev)
    model.train()
    return model


def _optimizer(model, name: str):
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-4, momentum=0.9, foreach=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-5, foreach=True)
    return torch.optim.AdamW(params, lr=1e-5, foreach=True)


def measure_config(cfg: dict[str, Any], backend, meter, *, window_scale: float = 1.0) -> dict[str, Any]:
    """Warm up, then time steps and measure average power over a fixed window (split half timing, half power)."""
    import contextlib

    import torch

    from .benchmarks import set_precision_flags

    dev = torch.device("cuda", backend.index) if backend.name == "cuda" else torch.device("cpu")
    prec = cfg["precision"]
    set_precision_flags("tf32" if prec == "tf32" else "fp32")
    torch.manual_seed(0)
    model = _build(cfg, dev)
    inputs = _make_inputs(cfg, dev)
    opt = _optimizer(model, cfg.get("optimizer", "adamw"))
    half = prec in ("bf16", "fp16")
    amp_dtype = torch.bfloat16 if prec == "bf16" else torch.float16

    def ctx():
        if half:
            return torch.autocast(device_type=dev.type, dtype=amp_dtype)
        return contextlib.nullcontext()

    def step():
        opt.zero_grad(set_to_none=True)
        with ctx():
            out = model(*inputs)
            loss = _loss(out, inputs, model)
        loss.backward()
        opt.step()

    res: dict[str, Any] = {"name": cfg["name"], "precision": prec, "started_utc": utc_now()}
    window = float(cfg.get("window_s", 20.0)) * window_scale
    warm = float(cfg.get("warmup_s", 5.0)) * window_scale
    # warm-up: >= 3 steps and warmup_s
    t0 = time.perf_counter()
    n = 0
    while n < 3 or time.perf_counter() - t0 < warm:
        step()
        backend.sync()
        n += 1
    res["warmup_steps"] = n
    res["warmup_s"] = time.perf_counter() - t0
    # timing: steps back to back for half the window, synchronised at both ends (CUDA events on a GPU)
    times = []
    steps = 0
    t_end = time.perf_counter() + window / 2
    while time.perf_counter() < t_end or steps < 3:
        chunk = max(1, min(10, int(0.5 / max(times[-1], 1e-4)) if times else 1))
        dt = backend.time_calls(step, chunk)
        times.append(dt / chunk)
        steps += chunk
    per_step = statistics.median(times)
    res.update(timing_steps=steps, time_per_step_s=per_step, time_per_step_mean_s=statistics.fmean(times),
               time_per_step_min_s=min(times), time_per_step_max_s=max(times))
    # power: the other half, steps back to back, at most one step queued ahead
    counted = [0]

    poll = getattr(meter, "poll", None)

    def busy():
        backend.launch(step, 1, poll)
        counted[0] += 1

    reading = meter.measure(busy, max(window / 2, 0.5))
    backend.sync()
    backend.release()
    res.update(power_steps=counted[0], avg_power_w=reading.avg_power_w, power_source=reading.source,
               power_window_s=reading.window_s, energy_per_step_j=reading.avg_power_w * per_step)
    res.update({f"end_{k}": v for k, v in meter.state().items()})
    if backend.name == "cuda":
        res["max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated(dev))
        torch.cuda.reset_peak_memory_stats(dev)
    model = opt = inputs = None  # release device memory before the next configuration
    if backend.name == "cuda":
        torch.cuda.empty_cache()
    return res


def measure(predictions: str, device: str, *, out: str | None = None, only: list[str] | None = None,
            part: tuple[int, int] = (1, 1), window_scale: float = 1.0, reporter=None,
            state: dict[str, Any] | None = None) -> Path:
    """Measure the configurations of a predictions file on ``device`` (cuda | cpu | fake is refused). ``state``
    (optional) is filled for the caller: ``configs`` selected, ``path`` once the file exists, and at the end
    ``status``, ``measured`` and ``not_measured`` (also when interrupted)."""
    from .runner import make_meter
    from . import backends as _b

    if device == "fake":
        raise ValidationError("validate measure needs a real device (cuda or cpu)")
    ppath = Path(predictions)
    pred, raw = read_json_file(ppath, "predictions file")
    if not isinstance(pred, dict) or pred.get("schema") != PRED_SCHEMA:
        raise ValidationError(f"{predictions}: not a predictions file ({PRED_SCHEMA})")
    _check_predictions(pred, str(predictions))
    if pred.get("device") and pred["device"] != device:
        raise ValidationError(f"{predictions} was predicted for a {pred['device']} device, not {device}")
    backend = _b.CpuBackend(pred.get("cpu_threads")) if device == "cpu" else _b.make_backend(device)
    meter = make_meter(device, backend)
    configs = _only(pred["configs"], only, str(predictions)) if only else pred["configs"]
    configs = [c for c in configs if not c.get("error")]  # no prediction was made for these: nothing to compare
    if part != (1, 1):
        configs = [c for i, c in enumerate(configs) if i % part[1] == part[0] - 1]
    if not configs:  # an empty campaign wrote 'complete' with no result (review): nothing would be validated
        raise ValidationError(f"{predictions}: no configuration to measure (" + (
            "--only / --part selected none of its predictions" if only or part != (1, 1)
            else "it holds no configuration with a prediction") + ")")
    path = _out_path(out, ppath.parent, "measurements")
    if path.exists():
        raise ValidationError(f"{path} exists: measurements are never overwritten; pass another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    if state is not None:  # the command names the selection if it is interrupted
        state.update(configs=[c["name"] for c in configs])
    from .runner import device_lock, device_lock_key

    try:  # one measurement of a device at a time (a calibration beside it skews both)
        with device_lock(device_lock_key(device, backend), "validate measure") as holding:
            holding(path)
            return _measure_locked(configs, pred, ppath, raw, path, device, backend, meter, part, window_scale,
                                   reporter, state)
    finally:
        meter.close()


def _measure_locked(configs, pred, ppath, raw, path, device, backend, meter, part, window_scale, reporter,
                    state) -> Path:
    doc: dict[str, Any] = {
        "schema": MEAS_SCHEMA, "validation_data": True, "started_utc": utc_now(),
        "predictions_file": ppath.name, "predictions_sha256": sha256_bytes(raw), "gpu": pred.get("gpu"),
        "device": backend.info() | {"kind": device}, "meter": meter.provenance(), "part": list(part),
        "window_scale": window_scale, "results": [],
        "note": "validation measurements: never enter a fit",
    }
    created = False
    try:
        if hasattr(meter, "probe_counter"):
            doc["counter_probe"] = meter.probe_counter()
        idle = meter.idle_power(5.0 if device == "cuda" else 0.0)
        doc["idle_power_w"] = idle.avg_power_w
        doc["idle_source"] = idle.source
        doc["meter"] = meter.provenance()
        try:  # the first write creates the file exclusively: two campaigns given the same --out cannot mix
            write_new_text(path, json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
        except FileExistsError:
            raise ValidationError(f"{path} exists: measurements are never overwritten; pass another --out") from None
        created = True
        if state is not None:
            state["path"] = str(path)
        for c in configs:
            if reporter:
                reporter(f"measuring {c['name']} ({c['precision']}, window "
                         f"{float(c.get('window_s', 20.0)) * window_scale:g} s)")
            try:
                r = measure_config(c, backend, meter, window_scale=window_scale)
                r["status"] = "ok"
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - one config failing (OOM) must not lose the others
                r = {"name": c["name"], "status": "error", "error": f"{type(e).__name__}: {str(e)[:300]}"}
                if device == "cuda":
                    import torch

                    torch.cuda.empty_cache()
            doc["results"].append(r)
            atomic_write_json(path, doc)
            if reporter:
                if r["status"] == "ok":
                    reporter(f"  {c['name']}: {r['time_per_step_s'] * 1e3:.2f} ms/step, {r['avg_power_w']:.0f} W "
                             f"({_steps_text(r)})")
                else:
                    reporter(f"  {c['name']}: {r['error']}")
        doc["status"] = "complete"
    finally:
        doc.setdefault("status", "interrupted")
        doc["finished_utc"] = utc_now()
        done = {r["name"] for r in doc["results"]}
        doc["not_measured"] = [c["name"] for c in configs if c["name"] not in done]
        if state is not None:
            state.update(status=doc["status"], measured=len(done), not_measured=doc["not_measured"])
        if created:  # never over a file this call did not create
            atomic_write_json(path, doc)
    return path


def _steps_text(r: dict[str, Any]) -> str:
    """The steps a result took: timed + under the meter; a modelled power (CPU) runs none under the meter (it is a
    stated model, not a reading: '3 + 0 steps' read as if nothing had been measured)."""
    if r.get("power_source") == "modelled":
        return f"{r['timing_steps']} timed steps; power modelled, not measured"
    return f"{r['timing_steps']} timed + {r['power_steps']} metered steps"


# ---- 3. compare ------------------------------------------------------------------------------------------------

def _err(pred: float, meas: float) -> float:
    return (pred - meas) / meas if meas else float("nan")


def _summary(errs: list[float]) -> dict[str, Any]:
    a = [abs(e) for e in errs if math.isfinite(e)]
    if not a:
        return {"n": 0}
    return {"n": len(a), "mape": sum(a) / len(a), "median_ape": statistics.median(a), "worst_ape": max(a),
            "within_15pct": sum(1 for x in a if x <= 0.15) / len(a)}


def _same_prior(doc: dict, first: dict) -> bool:
    """Whether every configuration of predictions file ``doc`` has the first file's prior prediction."""
    return all(c.get("predictions", {}).get("prior") == first.get(c["name"]) for c in doc["configs"]
               if c["name"] in first)


def _stored_predictions(meas: dict, mfiles: list) -> Path:
    """The predictions file a measurements file names (``predictions_file``: its base name only, as ``measure`` wrote
    it) when no ``--predictions`` is given: looked for next to each measurements file, then in the current folder
    (review: a measurements file moved to another folder read "predictions file not found: <name>"). Only a plain
    file name is looked up so; the sha256 recorded when measuring picks among the candidates (and is checked after,
    whichever is taken). Not found: an input error saying to pass --predictions PATH."""
    name = meas["predictions_file"]
    mpath = Path(mfiles[0])
    plain = "\x00" not in name and name not in ("", ".", "..") and "/" not in name and "\\" not in name
    if not plain:  # a damaged or hand-edited name: read as before, next to the measurements file (and refused there)
        return mpath.parent / name
    where: list[Path] = []
    for d in [*(Path(f).parent for f in mfiles), Path(".")]:
        if all(d.resolve() != w.resolve() for w in where):
            where.append(d)
    found = []
    for d in where:
        try:
            if (d / name).exists():
                found.append(d / name)
        except OSError:
            continue
    for c in found:
        try:
            if c.is_file() and sha256_bytes(read_json_file(c, "predictions file")[1]) == meas["predictions_sha256"]:
                return c
        except (OSError, ValidationError):
            continue
    if found:  # none with the recorded sha256: the first, refused below with why
        return found[0]
    looked = " and ".join(f"{w}/" if str(w) != "." else "the current folder" for w in where)
    raise ValidationError(f"predictions file {name!r} named by {mpath} not found (looked in {looked}): pass "
                          "--predictions PATH")


def compare(measurements: str | list[str], predictions: list[str] | None = None, *,
            out: str | None = None) -> tuple[Path, dict]:
    """``measurements``: one file, or several (parts of one campaign against the same predictions file)."""
    mfiles = [measurements] if isinstance(measurements, (str, Path)) else list(measurements)
    metas = []
    for mf in mfiles:
        m, _ = read_json_file(mf, "measurements file")
        if not isinstance(m, dict) or m.get("schema") != MEAS_SCHEMA:
            raise ValidationError(f"{mf}: not a measurements file ({MEAS_SCHEMA})")
        _check_measurements(m, str(mf))
        metas.append(m)
    if len({Path(f).resolve() for f in mfiles}) != len(mfiles):
        raise ValidationError("a measurements file is given twice: each would count its results again")
    if len({m["predictions_sha256"] for m in metas}) != 1:
        raise ValidationError("the measurement files were made against different predictions files")
    parts = [tuple(m["part"]) for m in metas if m.get("part")]
    dup = next((p for i, p in enumerate(parts) if p in parts[:i]), None)
    if dup is not None:  # two files of one part: the same configurations measured twice
        raise ValidationError(f"two measurement files are part {'/'.join(map(str, dup))} of the campaign: give "
                              "each part once")
    names = [r.get("name") for m in metas for r in m["results"]]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # one result would silently replace the other
        raise ValidationError(f"configuration(s) measured more than once across the measurement files: "
                              f"{', '.join(map(str, twice))}; give each configuration's measurement once")
    mpath = Path(mfiles[0])
    meas = dict(metas[0])
    meas["results"] = [r for m in metas for r in m["results"]]
    pfiles = [Path(p) for p in (predictions or [])]
    if not pfiles:
        pfiles = [_stored_predictions(meas, mfiles)]
    docs = []
    for i, p in enumerate(pfiles):
        doc, raw = read_json_file(p, "predictions file")
        if i == 0 and sha256_bytes(raw) != meas["predictions_sha256"]:
            raise ValidationError(f"{p}: sha256 differs from the one recorded when measuring: not the predictions "
                                  f"file the measurements were made against ({meas.get('predictions_file')}), or "
                                  "changed after the measurement")
        if not isinstance(doc, dict) or doc.get("schema") != PRED_SCHEMA:
            raise ValidationError(f"{p}: not a predictions file ({PRED_SCHEMA})")
        _check_predictions(doc, str(p))
        if docs and (doc.get("gpu"), doc.get("device")) != (docs[0][1].get("gpu"), docs[0][1].get("device")):
            # CPU measurements compared with an H200's predictions read -98 % / +892 % (review)
            raise ValidationError(f"{p}: predictions for {doc.get('gpu')} ({doc.get('device')}), but the measured "
                                  f"device's are for {docs[0][1].get('gpu')} ({docs[0][1].get('device')}): compare "
                                  "predictions of the measured device only")
        docs.append((p, doc, sha256_bytes(raw)))
    mgpu, pgpu = meas.get("gpu"), docs[0][1].get("gpu")
    if mgpu and pgpu and mgpu != pgpu:  # an H100's measurements against an A100's predictions
        raise ValidationError(f"the measurements are of {mgpu}, the predictions for {pgpu}: compare predictions of "
                              "the measured device only")
    first_prior = {c["name"]: c.get("predictions", {}).get("prior") for c in docs[0][1]["configs"]}
    results = {r["name"]: r for r in meas["results"] if r.get("status") == "ok"}
    models = []
    variants: dict[str, dict[str, list[float]]] = {}
    for p, doc, _ in docs:
        for c in doc["configs"]:
            if c["name"] not in results:
                continue
            r = results[c["name"]]
            entry = next((m for m in models if m["name"] == c["name"]), None)
            if entry is None:
                entry = {"name": c["name"], "source": c["source"], "precision": c["precision"],
                         "batch_size": c.get("batch_size"), "inputs": c["inputs"],
                         "measured": {"time_s": r["time_per_step_s"], "gpu_energy_j": r["energy_per_step_j"],
                                      "avg_gpu_power_w": r["avg_power_w"], "steps": r["timing_steps"] +
                                      r["power_steps"], "power_source": r["power_source"]},
                         "predicted": {}}
                models.append(entry)
            for vname, v in c.get("predictions", {}).items():
                key = vname if p == docs[0][0] else f"{vname}@{p.name}"
                if vname == "prior" and p != docs[0][0] and _same_prior(doc, first_prior):
                    continue  # the same prior twice (a later file's own prior, from other code, is its own row)
                e = {"time_s": v["time_s"], "gpu_energy_j": v["gpu_energy_j"], "avg_gpu_power_w": v["avg_gpu_power_w"],
                     "time_err": _err(v["time_s"], r["time_per_step_s"]),
                     "energy_err": _err(v["gpu_energy_j"], r["energy_per_step_j"]),
                     "power_err": _err(v["avg_gpu_power_w"], r["avg_power_w"])}
                rf = v.get("energy_range_factors")
                if rf is not None:  # (checked: [low, high])
                    lo, hi = v["gpu_energy_j"] * rf[0], v["gpu_energy_j"] * rf[1]
                    e["energy_range_j"] = [lo, hi]
                    e["energy_in_range"] = lo <= r["energy_per_step_j"] <= hi
                bad = next((k for k in ("time_err", "energy_err", "power_err") if not math.isfinite(e[k])), None)
                if bad is not None or not all(math.isfinite(x) for x in e.get("energy_range_j", ())):
                    # finite values whose ratio overflows (1e308 J predicted, 1e-320 s measured): the table read
                    # +inf and the written JSON held bare Infinity (not JSON)
                    raise ValidationError(f"{p}: {c['name']} {vname}: predicted {v['time_s']!r} s, {v['gpu_energy_j']!r}"
                                          f" J against measured {r['time_per_step_s']!r} s, {r['energy_per_step_j']!r}"
                                          " J: the error is not a finite number (a damaged value in one of the files)")
                entry["predicted"][key] = e
                d = variants.setdefault(key, {"time": [], "energy": [], "power": [], "in_range": []})
                d["time"].append(e["time_err"])
                d["energy"].append(e["energy_err"])
                d["power"].append(e["power_err"])
                if "energy_in_range" in e:
                    d["in_range"].append(1.0 if e["energy_in_range"] else 0.0)
    if not models:
        raise ValidationError("no configuration was measured ok and predicted in these files: nothing to compare")
    # what the summary does not cover: predicted configurations that no file measured (an interrupted or killed
    # measurement, a part not given, --only); review: 1 of 8 measured read as a complete validation
    measured_names = {r.get("name") for r in meas["results"]}
    not_measured = [c["name"] for c in docs[0][1]["configs"] if not c.get("error") and c["name"] not in measured_names]
    unfinished = [{"file": Path(f).name, "status": m.get("status") or "none (the measuring process was killed before "
                   "it finished)"} for f, m in zip(mfiles, metas) if m.get("status") != "complete"]
    summary = {}
    for k, d in variants.items():
        summary[k] = {"time": _summary(d["time"]), "energy": _summary(d["energy"]), "power": _summary(d["power"]),
                      "energy_range_coverage": (sum(d["in_range"]) / len(d["in_range"])) if d["in_range"] else None}
    doc = {
        "schema": VAL_SCHEMA, "created_utc": utc_now(), "gpu": meas.get("gpu"),
        "device": meas.get("device"), "meter": meas.get("meter", {}).get("name"),
        "energy_source": meas.get("meter", {}).get("energy_source"),
        "measurements": [{"file": Path(f).name, "sha256": sha256_bytes(Path(f).read_bytes())} for f in mfiles],
        "predictions": [{"file": p.name, "sha256": s, "model": d.get("model")} for p, d, s in docs],
        "models": models, "summary": summary,
        "failed": [{"name": r["name"], "error": r.get("error")} for r in meas["results"] if r.get("status") != "ok"],
        "predicted": sum(1 for c in docs[0][1]["configs"] if not c.get("error")),
        "not_measured": not_measured, "incomplete_measurements": unfinished,
        "note": ("CPU: time measured, energy MODELLED (stated power model) - only the time errors are evidence"
                 if (meas.get("device") or {}).get("kind") == "cpu" else ""),
    }

    path = _out_path(out, mpath.parent, "validation")
    _refuse_to_replace_data(path, [Path(f) for f in mfiles] + [p for p, _, _ in docs])
    try:
        atomic_write_json(path, doc)
    except OSError as e:
        raise ValidationError(f"cannot write {path}: {e.strerror or e}; any previous file is unchanged") from None
    return path, doc


def _out_path(out: str | None, default_folder: Path, kind: str) -> Path:
    """Where a validate step writes: ``--out`` as a file, or as a folder (an existing one, or a name ending in a
    path separator: 'meas/' wrote a FILE named meas) for ``<stamp>-<kind>.json``; without it, ``default_folder``."""
    if not out:
        return default_folder / f"{utc_stamp()}-{kind}.json"
    path = Path(out)
    if path.is_dir() or str(out).endswith(("/", os.sep)):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValidationError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
        return path / f"{utc_stamp()}-{kind}.json"
    return path


def _refuse_to_replace_data(path: Path, inputs: list[Path]) -> None:
    """``compare`` replaces an earlier validation document (it is derived, and re-made from its inputs), never an
    input or another file: ``--out`` naming the measurements file used to overwrite hours of device measurements."""
    if not path.exists():
        return
    if any(path.resolve() == Path(f).resolve() for f in inputs):
        raise ValidationError(f"--out {path} is one of the compared files: it would be overwritten; pass another "
                              f"--out")
    try:
        schema = json.loads(path.read_text(encoding="utf-8")).get("schema")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        schema = None
    if schema != VAL_SCHEMA:
        raise ValidationError(f"--out {path} exists and is not a validation document ({VAL_SCHEMA}): it is never "
                              f"overwritten; pass another --out")


def table(doc: dict[str, Any]) -> str:
    """Plain-text table of a validation document (time/step, energy/step, power: predicted vs measured)."""
    variants = list(doc["summary"])
    # where the measured columns come from (a CPU run's energy is modelled, not measured: said above the numbers)
    lines = [f"measured on {doc.get('gpu') or '?'} ({(doc.get('device') or {}).get('kind') or '?'}): time by the "
             f"clock, energy by {doc.get('meter') or '?'} ({doc.get('energy_source') or '?'})"]
    if doc.get("note"):
        lines.append(f"note: {doc['note']}")
    head = f"{'model':24s} {'meas ms':>9s} {'meas J':>9s} {'meas W':>7s}"
    for v in variants:
        head += f" | {v[:18]:>18s} t%   E%   P%"
    lines.append(head)
    for m in doc["models"]:
        me = m["measured"]
        s = f"{m['name'][:24]:24s} {me['time_s'] * 1e3:9.2f} {me['gpu_energy_j']:9.2f} {me['avg_gpu_power_w']:7.1f}"
        for v in variants:
            e = m["predicted"].get(v)
            if e is None:
                s += f" | {'':>18s}    -    -    -"
            else:
                s += (f" | {'':>18s} {e['time_err'] * 100:+4.0f} {e['energy_err'] * 100:+4.0f} "
                      f"{e['power_err'] * 100:+4.0f}")
        lines.append(s)
    lines.append("")
    for v, sm in doc["summary"].items():
        t, e = sm["time"], sm["energy"]
        if not t.get("n"):
            continue
        cov = sm.get("energy_range_coverage")
        lines.append(f"{v:28s} time MAPE {t['mape'] * 100:5.1f} % (median {t['median_ape'] * 100:4.1f}, worst "
                     f"{t['worst_ape'] * 100:5.1f}, within 15 %: {t['within_15pct'] * 100:3.0f} %)   energy MAPE "
                     f"{e['mape'] * 100:5.1f} %" + (f"   range coverage {cov * 100:.0f} %" if cov is not None else ""))
    return "\n".join(lines)


def coverage_note(doc: dict[str, Any]) -> str | None:
    """One line saying what a validation document does not cover (None when every predicted configuration was
    measured by finished measurements)."""
    missing, unfinished = doc.get("not_measured") or [], doc.get("incomplete_measurements") or []
    if not missing and not unfinished:
        return None
    parts = []
    if missing:
        shown = ", ".join(missing[:10]) + (f", ... ({len(missing) - 10} more)" if len(missing) > 10 else "")
        parts.append(f"{len(missing)} of {doc.get('predicted', '?')} predicted configurations were not measured "
                     f"({shown}): the summary covers the {len(doc.get('models') or [])} measured ok only")
    if unfinished:
        parts.append("measurement not finished: " + ", ".join(f"{u['file']} (status {u['status']})"
                                                              for u in unfinished))
    return "; ".join(parts)
