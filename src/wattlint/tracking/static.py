"""What the tracker needs from the rest of wattlint: the model's content hash, the device's database key, the plan
(same options and semantics as ``wattlint estimate``: wattlint.plan.build_plan) and the static estimate for that
plan (the public ``wattlint.estimate`` API, numbers read through ``report.json_out.to_dict``).

CPU runs are priced on the CPU method-check device of a ``wattlint calibrate --device cpu`` run folder (its
measured spec, and its fitted model when the folder has one), as benchmarks/cpu_validation.py does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from ..options import OPTIONS as _OPTIONS
from ..types import ConfigError, CostGraph, GpuSpec, ModelInfo, TensorSpec, WattlintError

# every option of the command line that a plan takes, by its Python name (``price`` for --price): the Tracker takes
# each as a keyword argument (tests/test_track_tracker.py keeps the two in step)
PLAN_OPTIONS = tuple(k for k in _OPTIONS if k not in ("inputs", "gpu", "compare", "price_per_kwh")) + ("price",)
HASH_METHOD = "wattlint.arch/1: sha256 of module paths and classes, parameter and buffer names, shapes, dtypes"


def _aliased(options: dict[str, Any]) -> dict[str, Any]:
    """``price_per_kwh`` (the option table's name of --price) as ``price``."""
    o = dict(options)
    if o.get("price_per_kwh") is not None and o.get("price") is None:
        o["price"] = o["price_per_kwh"]
    o.pop("price_per_kwh", None)
    return o


# ---- model identity ----------------------------------------------------------------------------------------------

def module_hash(model) -> str:
    """Content hash of a module's architecture (not its weights, which change while training)."""
    h = hashlib.sha256()
    for name, m in model.named_modules():
        h.update(f"M {name} {type(m).__module__}.{type(m).__qualname__}\n".encode())
    for name, p in model.named_parameters():
        h.update(f"P {name} {tuple(p.shape)} {p.dtype} {bool(p.requires_grad)}\n".encode())
    for name, b in model.named_buffers():
        h.update(f"B {name} {tuple(b.shape)} {b.dtype}\n".encode())
    return "sha256:" + h.hexdigest()


def file_hash(path: str) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_identity(model=None, source: str | None = None) -> dict[str, Any]:
    """{name, hash, hash_method, params, source} of the trained model (hash None when nothing identifies it)."""
    out: dict[str, Any] = {"name": None, "hash": None, "hash_method": None, "params": None, "source": source}
    if model is not None:
        out["name"] = type(model).__name__
        out["hash"] = module_hash(model)
        out["hash_method"] = HASH_METHOD
        seen: set[int] = set()
        n = 0
        for p in model.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        out["params"] = n
        return out
    if source and Path(source).is_file():
        out["name"] = Path(source).name
        out["hash"] = file_hash(source)
        out["hash_method"] = "sha256 of the model file"
    elif source:
        out["name"] = source.rsplit(":", 1)[-1]
    return out


def meta_copy(model):
    """A copy of ``model`` on the meta device without copying its weights (no device memory is allocated)."""
    import copy

    import torch

    memo: dict[int, Any] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in memo:
            continue
        mt = torch.empty(t.shape, dtype=t.dtype, device="meta")
        if isinstance(t, torch.nn.Parameter):
            mt = torch.nn.Parameter(mt, requires_grad=t.requires_grad)
        memo[id(t)] = mt
    return copy.deepcopy(model, memo)


def example_specs(model, example) -> dict[str, TensorSpec] | None:
    """Input specs (name -> TensorSpec) from an example batch: a tensor, a tuple/list of tensors or a dict."""
    import torch

    from ..frontends.torch import forward_params

    def spec(name, t):
        return TensorSpec(name, str(t.dtype).rsplit(".", 1)[-1], tuple(int(d) for d in t.shape))

    if example is None:
        return None
    if isinstance(example, torch.Tensor):
        example = (example,)
    if isinstance(example, dict):
        items = [(k, v) for k, v in example.items() if isinstance(v, torch.Tensor)]
        return {k: spec(k, v) for k, v in items} or None
    if isinstance(example, (list, tuple)):
        names = forward_params(model) if model is not None else []
        tensors = [t for t in example if isinstance(t, torch.Tensor)]
        if not tensors:
            return None
        if len(names) < len(tensors):
            names = [f"input{i}" for i in range(len(tensors))]
        return {names[i]: spec(names[i], t) for i, t in enumerate(tensors)}
    return None


def spec_strings(inputs) -> list[str]:
    """Input specs as the option table takes them ("x=float32[8,3,32,32]"); strings pass through."""
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, dict):
        # TensorSpecs, spec strings and example tensors (by dtype and shape, never values: review s53 printed a
        # whole tensor as a 'bad --input spec'), as the frontends read them
        from ..frontends.source import _specs

        return [f"{k}={v.dtype}[{','.join(str(d) for d in v.shape)}]" for k, v in _specs(inputs).items()]
    bad = next((x for x in inputs if not isinstance(x, str)), None)
    if bad is not None:  # a list of tensors has no names: one line, not the tensor's text (review s53)
        from ..types import InputError

        raise InputError(f"inputs=: a list of spec strings ('x=float32[8,64]') or a dict of name -> spec or example "
                         f"tensor, got a list holding a {type(bad).__name__}")
    return list(inputs)


# ---- devices -----------------------------------------------------------------------------------------------------

def cpu_calibration_runs(folder: Any) -> list[dict[str, Any]]:
    """The calibration runs (``wattlint.calibration-run/1`` documents with a measured spec) of a CPU calibration run
    folder, oldest name first. ConfigError when the path is missing, not a folder or holds none: the tracker refuses
    such a ``cpu_calibration=`` before the loop, as it refuses an unknown ``gpu=`` (review: a typo ran the whole
    loop and only the record said there was no static estimate)."""
    what = "cpu_calibration=" + repr(str(folder))
    hint = "pass the folder of a 'wattlint calibrate --device cpu' run (e.g. calibration/runs/cpu-<cpu>)"
    if not str(folder).strip():
        raise ConfigError(f"{what}: an empty path; {hint}")
    d = Path(folder)
    try:
        if not d.exists():
            raise ConfigError(f"{what}: no such folder; {hint}")
        if not d.is_dir():
            raise ConfigError(f"{what}: a file, not a folder; {hint}")
        files = sorted(d.glob("*.json"))
    except OSError as e:
        raise ConfigError(f"{what}: cannot be read ({e.strerror or e}); {hint}") from None
    runs = []
    for j in files:
        try:
            doc = json.loads(j.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("schema") == "wattlint.calibration-run/1" and \
                (doc.get("spec") or {}).get("values"):
            runs.append(doc)
    if not runs:
        raise ConfigError(f"{folder}: no CPU calibration run (*.json with a measured spec) in this folder; {hint}")
    return runs


def cpu_device(folder: str | None) -> tuple[GpuSpec | None, Any, str]:
    """(spec, predictor, note) of a CPU calibration run folder; (None, None, why) when there is none."""
    if not folder:
        return None, None, ("no CPU device spec: pass cpu_calibration=<folder of a 'wattlint calibrate --device cpu' "
                            "run> for a static estimate of a CPU run")
    d = Path(folder)
    runs = cpu_calibration_runs(folder)
    from ..calibrate.backends import spec_from_dict
    from ..energy.predictor import CalibratedPredictor, PriorPredictor

    spec = spec_from_dict(runs[-1]["spec"]["values"])
    if (d / "model" / "card.json").is_file():
        from ..energy.model import load_model

        m = load_model(d / "model")
        base, note = CalibratedPredictor(m, m.gpu_key, transferred=False), f"CPU device {spec.key} from {folder}"
    else:
        base, note = PriorPredictor(), f"CPU device {spec.key} from {folder} (no fitted model: prior)"
    # the folder's run correction (`wattlint fit` of CPU run records with --out <this folder>), on top of the model it
    # was fitted on only (energy.predictor.apply_run_correction); one that is not applied is said in the note
    from ..energy.predictor import apply_run_correction
    from .fit import FILE

    corrected, why, _ = apply_run_correction(base, spec.key, d / FILE)
    if corrected is not None:
        c = corrected.correction
        return spec, corrected, (f"{note}; run correction {d / FILE} applied (time x{c.time_factor:.3f}"
                                 + (f", energy x{c.energy_factor:.3f}" if c.energy_factor is not None else "") + ")")
    return spec, base, f"{note}; {why}" if why else note


def gpu_key_for(nvml_names: list[str], gpu: str | None) -> tuple[GpuSpec | None, str]:
    """The database spec of the tracked GPUs: ``gpu`` when given, else the NVML name resolved."""
    from ..hardware import gpu_from_nvml_name, resolve_gpu

    if gpu:
        spec, _ = resolve_gpu(gpu)
        return spec, f"gpu={gpu!r} (given)"
    names = sorted(set(n for n in nvml_names if n))
    if not names:
        return None, "no GPU name"
    spec = gpu_from_nvml_name(names[0])
    if spec is None:
        return None, f"NVML name {names[0]!r} is not in the GPU database: pass gpu=KEY"
    note = f"NVML name {names[0]!r} -> {spec.key}"
    if len(names) > 1:
        note += f" (mixed GPUs {names}: priced as {spec.key})"
    return spec, note


# ---- plan --------------------------------------------------------------------------------------------------------

def _stub_graph(inputs: dict[str, TensorSpec] | None, micro_batch: int, seq_len: int | None) -> CostGraph:
    return CostGraph(model=ModelInfo(source="tracked run", format="torch", params=0, param_bytes=0), records=(),
                     inputs=tuple((inputs or {}).values()), micro_batch=max(1, int(micro_batch)),
                     seq_len=int(seq_len or 0))


def resolve_plan(spec: GpuSpec | None, options: dict[str, Any], inputs: dict[str, TensorSpec] | None,
                 static_plan: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[str], str | None]:
    """(resolved plan for the projection, assumptions, error). The static estimate's plan wins when there is one
    (its graph may infer the dataset); otherwise wattlint.plan.build_plan on the options with a stub graph."""
    from .project import PlanInfo

    options = _aliased(options)
    work_given = any(options.get(k) is not None for k in ("steps", "epochs", "tokens"))
    if static_plan is not None and work_given:
        p = static_plan
        spe = math.ceil(p["dataset_size"] / p["batch_size"]) if p.get("dataset_size") and p.get("batch_size") \
            and p.get("epochs") else None
        return PlanInfo(steps=p.get("steps"), epochs=p.get("epochs"), steps_per_epoch=spe,
                        gpus=int(options.get("gpus") or 1), pue=float(p.get("pue") or 1.0),
                        carbon_intensity_g_per_kwh=p.get("carbon_intensity_g_per_kwh"),
                        price_per_kwh=p.get("price_per_kwh"), gpu_hour_price=p.get("gpu_hour_price")).as_dict(), \
            ["plan: as in the static estimate"], None
    if not work_given:
        return None, [], ("no plan (steps=, epochs= with dataset=, or tokens=): no projection of the whole run; the "
                          "totals (facility energy, CO2, cost) are of the steps run")
    from ..plan import build_plan

    mb = options.get("batch_size") or 1
    if inputs:
        first = next(iter(inputs.values()))
        if first.shape and options.get("batch_size") is None:
            mb = first.shape[0]
    seq = options.get("seq_len")
    gspec = _gpu_or_stub(spec)
    from ..options import PLAN_OPTIONS as _PLAN_ONLY, canonical

    # the frontend's options (attention, optimizer_impl, ...) change the traced graph, not this projection's plan
    kw = {k: options.get(k) for k in PLAN_OPTIONS if options.get(k) is not None and canonical(k) in _PLAN_ONLY}
    kw.pop("utilization", None)
    try:
        plan = build_plan(_stub_graph(inputs, mb, seq), gpu=gspec, strict_precision=False, **kw)
    except WattlintError as e:
        return None, [], f"plan: {e}"
    spe = math.ceil(plan.dataset_size / plan.batch_size) if plan.dataset_size and plan.epochs else None
    return PlanInfo(steps=plan.steps, epochs=plan.epochs, steps_per_epoch=spe, gpus=plan.gpus, pue=plan.pue,
                    carbon_intensity_g_per_kwh=plan.carbon_intensity_g_per_kwh, price_per_kwh=plan.price_per_kwh,
                    gpu_hour_price=plan.gpu_hour_price).as_dict(), list(plan.assumptions), None


def _price_pairs(given) -> tuple[tuple[str, float], ...] | None:
    """A per-GPU ``gpu_hour_price`` (a mapping, or the option's validated pairs) as (name, price) pairs; None for one
    number for every GPU (or none)."""
    from collections.abc import Mapping

    from ..options import gpu_hour_price

    if isinstance(given, Mapping) or isinstance(given, tuple) and given:
        return gpu_hour_price(given)
    return None


def check_price_names(given) -> None:
    """ConfigError for a per-GPU ``gpu_hour_price`` naming a GPU the database has not (a typo: 'h1000'), or one GPU
    twice at two prices, checked before the GPU is known (wattlint.plan.gpu_hour_price_for on a stand-in GPU priced
    by none of the names; review s53: a typo'd name went unchecked and the valid prices were dropped with it)."""
    from ..plan import gpu_hour_price_for

    pairs = _price_pairs(given)
    if not pairs:
        return
    try:
        gpu_hour_price_for(pairs, _gpu_or_stub(None))
    except ConfigError as e:
        if "names no price for unknown" not in str(e):
            raise


def price_for_device(options: dict[str, Any], spec: GpuSpec) -> tuple[dict[str, Any], str | None]:
    """``options`` for the device the run found, and a note: a per-GPU ``gpu_hour_price`` list that names no price
    for it (a script written for another GPU, run here) is left out, so the plan, its site settings and the static
    estimate are made without a GPU-hour price (review s53: the whole plan and site were dropped, PUE 1, no CO2 or
    cost budget); a list that prices it, one number, or none: ``options`` unchanged."""
    from ..plan import gpu_hour_price_for

    pairs = _price_pairs(options.get("gpu_hour_price"))
    if not pairs:
        return options, None
    try:
        gpu_hour_price_for(pairs, spec)
    except ConfigError as e:
        return ({k: v for k, v in options.items() if k != "gpu_hour_price"},
                f"gpu_hour_price: {e}; GPU-hours are not priced in this run's cost")
    return options, None


#: the site settings of a plan (wattlint.plan._site): what turns measured energy into facility energy, CO2 and cost
SITE_FIELDS = ("pue", "carbon_intensity_g_per_kwh", "price_per_kwh", "gpu_hour_price")


def site_of(plan: dict[str, Any] | None) -> dict[str, Any] | None:
    """The site settings of a resolved plan (PlanInfo.as_dict or the static estimate's plan), None without one."""
    if not plan:
        return None
    return {**{k: plan.get(k) for k in SITE_FIELDS}, "pue": float(plan.get("pue") or 1.0)}


def _gpu_or_stub(spec: GpuSpec | None) -> GpuSpec:
    """``spec``, or the stand-in :func:`resolve_plan` prices a run of an unidentified device on."""
    from ..types import GpuSpec as _G

    return spec or _G(key="unknown", name="unknown", vendor="", arch="", peak_tflops={"fp32": 1.0}, memory_gb=0,
                      memory_bw_gbs=1, sm_count=1, boost_mhz=0, tdp_w=1, idle_w=0)


def resolve_site(spec: GpuSpec | None, options: dict[str, Any], inputs: dict[str, TensorSpec] | None,
                 static_plan: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[str], str | None]:
    """(site, assumptions, error) of a run WITHOUT a planned amount of work (no steps=, epochs= or tokens=): the PUE,
    grid carbon intensity and electricity / GPU-hour prices resolve as they do with one, through the estimator's one
    resolver (wattlint.plan: build_plan, whose ``_site`` states every default in the same assumption lines), so that
    the run's measured energy still gets its facility energy (x PUE), CO2 and cost and its CO2 / cost budgets are
    checked. ``site``: {gpus, pue, carbon_intensity_g_per_kwh, price_per_kwh, gpu_hour_price}.

    The static estimate's plan wins when there is one (it is priced with one stand-in step: its site settings are the
    plan's, as :func:`resolve_plan` takes them with work given); otherwise build_plan on the options with a stub graph
    and one stand-in step (the work only; nothing of it is kept), and the site's own assumption lines."""
    from .. import plan as _plan
    from ..options import PLAN_OPTIONS as _PLAN_ONLY, canonical

    options = _aliased(options)
    if static_plan is not None:
        site = site_of(static_plan) or {}
        return {"gpus": int(options.get("gpus") or 1), **site}, \
            ["site (PUE, carbon intensity, prices): as in the static estimate"], None
    mb = options.get("batch_size") or 1
    if inputs:
        first = next(iter(inputs.values()))
        if first.shape and options.get("batch_size") is None:
            mb = first.shape[0]
    gspec = _gpu_or_stub(spec)
    kw = {k: options.get(k) for k in PLAN_OPTIONS if options.get(k) is not None and canonical(k) in _PLAN_ONLY}
    kw.pop("utilization", None)
    for k in ("steps", "epochs", "tokens"):  # a plan of work that did not resolve (its error is noted) is not the site's
        kw.pop(k, None)
    kw["steps"] = 1  # a stand-in: build_plan resolves the layout (GPUs, GPUs per node) the site's defaults depend on
    try:
        plan = _plan.build_plan(_stub_graph(inputs, mb, options.get("seq_len")), gpu=gspec, strict_precision=False,
                                **kw)
        # the site's own lines, as build_plan states them (the stand-in step's work lines are not this run's)
        notes: list[str] = []
        site: dict[str, Any] = {"gpus": plan.gpus, "gpus_per_node": plan.gpus_per_node}
        _plan._site(_plan._validated({k: v for k, v in kw.items() if k != "steps"}), site, notes, gspec)
    except WattlintError as e:
        return None, [], f"site (PUE, carbon intensity, prices): {e}"
    return {"gpus": plan.gpus, **{k: site.get(k) for k in SITE_FIELDS}}, notes, None


# ---- the caller's arguments, checked before the loop ---------------------------------------------------------------

WORK_KEYS = ("steps", "epochs", "tokens")


def check_inputs(inputs) -> None:
    """InputError for an ``inputs=`` spec wattlint.estimate would refuse (malformed, unknown dtype, a name twice, not
    a spec at all: ``inputs=5``), with the line wattlint.estimate gives (wattlint.api.check_inputs)."""
    if inputs is None:
        return
    from ..api import check_inputs as _check
    from ..frontends.inputs import parse_input_specs

    if not isinstance(inputs, (str, dict, list, tuple)):  # inputs=5: one line, not "'int' object is not iterable"
        _check(inputs)
    parse_input_specs(spec_strings(inputs))  # a list holding a tensor, a dtype, a dim, a name twice
    _check(inputs)  # what wattlint.estimate refuses besides


def check_source(source) -> None:
    """InputError for a ``source=`` that names nothing there: a model file (``.onnx``, ``config.json``, the
    ``file.py`` of ``file.py:attr``) that does not exist, a form that is no model source, a top-level package of
    ``package.module:attr`` that is not installed. Nothing is imported or read (the module's own import errors are
    the static estimate's, at start)."""
    if source is None:
        return
    import importlib.machinery
    import importlib.util
    import os

    from ..types import InputError

    if not isinstance(source, str) or not source.strip():
        raise InputError(f"source={source!r}: a model source (model.onnx, config.json, package.module:attr or "
                         "path/file.py:attr)")
    src = source.strip()
    low = src.lower()
    if low.endswith((".onnx", ".json")):
        file, what = src, "model file" if low.endswith(".onnx") else "config file"
    elif ":" in src:
        target, _, attr = src.rpartition(":")
        if not target or not attr:
            raise InputError(f"source={source!r}: expected package.module:attr or path/file.py:attr")
        if target.endswith(".py") or "/" in target or os.sep in target:
            file, what = target, "model file"
        else:
            top = target.split(".", 1)[0]
            try:  # on sys.path and in the current folder, which the loader adds first (frontends.source.load_attr)
                found = importlib.util.find_spec(top) is not None or \
                    importlib.machinery.PathFinder.find_spec(top, [os.getcwd()]) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                raise InputError(f"source={source!r}: no module named {top!r} (is it installed or on PYTHONPATH?)")
            return
    else:
        raise InputError(f"source={source!r} not understood: expected file.onnx, config.json, package.module:attr or "
                         "path/file.py:attr")
    if os.path.isdir(file):
        raise InputError(f"source={source!r}: {file} is a directory, not a {what}")
    if not os.path.isfile(file):
        raise InputError(f"source={source!r}: {what} not found: {file}")


def check_plan_conflicts(options: dict[str, Any]) -> None:
    """ConfigError for options that contradict each other whatever else is given: the work two ways (``steps=``
    with ``epochs=``), ``activation_checkpointing=True`` with another ``recompute=``. What a callback checks when it
    is made (the trainer gives the GPUs, batch, gradient accumulation and precision later)."""
    from ..options import recompute_mode, work_conflict

    conflict = work_conflict(options, lambda n: f"{n}=")
    if conflict:
        raise ConfigError(conflict)
    try:
        recompute_mode({k: v for k, v in options.items() if k in ("activation_checkpointing", "recompute")},
                       lambda n: f"{n}=")
    except ValueError as e:
        raise ConfigError(str(e)) from None


#: a device with every precision's rate: the arguments are checked on it when no gpu= names the real one (the stand-in
#: of :func:`_gpu_or_stub` has fp32 only, and a bf16 plan fell back to fp32 on it)
_CHECK_PEAKS = {"fp32": 1.0, "tf32": 1.0, "fp16": 1.0, "bf16": 1.0, "fp8": 1.0}


def check_plan_options(options: dict[str, Any], spec: GpuSpec | None, *, gpus: int | None = None) -> None:
    """ConfigError for plan options wattlint.estimate refuses whatever the model: work given two ways (``steps=``
    with ``epochs=``), a global batch that does not divide by GPUs x ``grad_accum``, ``activation_checkpointing=True``
    with ``recompute="none"``, a parallel layout that needs more GPUs than ``gpus=``, ``training_stack="megatron"``
    without half precision, a ``gpu_hour_price`` that names another GPU, ... (wattlint.plan.build_plan on a stand-in
    graph). The amount of work is left out: resolving ``epochs=`` / ``tokens=`` needs the model (its dataset, its
    sequence length), which only the static estimate at start has; a plan that does not resolve from the model is a
    note in the record (docs/TRACKING.md). ``gpus``: the GPUs the run will measure when ``gpus=`` is not given (a
    ``devices=`` list of several: one process over them plans that many), else 1, as the run starts with."""
    from ..options import PLAN_OPTIONS as _PLAN_ONLY, canonical
    from ..plan import build_plan

    options = _aliased(options)
    check_plan_conflicts(options)
    kw = {k: options.get(k) for k in PLAN_OPTIONS if options.get(k) is not None and canonical(k) in _PLAN_ONLY}
    for k in (*WORK_KEYS, "dataset", "utilization"):
        kw.pop(k, None)
    kw["steps"] = 1
    if not isinstance(options.get("optimizer"), (str, type(None))):
        kw.pop("optimizer", None)
    if options.get("gpus") is None and gpus:
        # one process over a devices= list plans its GPUs (review s53: devices=[0, 1] with pipeline_parallel=2 was
        # refused at 1 GPU); one that scatters a batch over them (nn.DataParallel) may split it unevenly
        kw["gpus"] = int(gpus)
        kw.setdefault("uneven_batch", True)
    if spec is None:
        # a per-GPU price list names the GPU detected at start (review s53: 'add unknown=USD'): its names are
        # checked here, its price for that GPU then (:func:`price_for_device`)
        check_price_names(kw.pop("gpu_hour_price", None))
    gpu = spec if spec is not None else dataclasses.replace(_gpu_or_stub(None), vendor="NVIDIA", arch="hopper",
                                                            peak_tflops=dict(_CHECK_PEAKS))
    build_plan(_stub_graph(None, 1, options.get("seq_len")), gpu=gpu, strict_precision=spec is not None, **kw)


# ---- static estimate ---------------------------------------------------------------------------------------------

def static_estimate(*, model=None, source: str | None = None, inputs: dict[str, TensorSpec] | list[str] | None,
                    spec: GpuSpec, predictor=None, options: dict[str, Any]) -> dict[str, Any]:
    """The static estimate of the same plan (compact), or {"error": ...} when it cannot be made.

    Every failure is returned as {"error": ...}, a note in the record: training is never stopped for the estimate.
    The arguments refused whatever the model are refused before, when the tracker is made (:func:`check_plan_options`);
    a refusal for this model (``tensor_parallel=`` on a model without transformer blocks, a precision the CPU
    calibration has no fast path for) or an amount of work that does not resolve from it (``epochs=`` with no dataset)
    is a limit of the estimate, not of the training (review s53: raising them at start stopped real runs and named the
    work where another argument was the cause)."""
    import wattlint
    from ..report.json_out import to_dict

    options = _aliased(options)
    kw = {k: options.get(k) for k in PLAN_OPTIONS if options.get(k) is not None}
    if not any(kw.get(k) is not None for k in ("steps", "epochs", "tokens")):
        kw["steps"] = 1  # per-step figures only; totals need a plan
    target: Any = source if source is not None else model
    if target is None:
        return {"error": "no model or source= to estimate"}
    if source is None:
        target = meta_copy(model)
    if inputs:
        kw["inputs"] = spec_strings(inputs)
    from ..energy.predictor import model_content_id
    from .fit import RunCorrectedPredictor

    try:
        if predictor is None:  # the estimator's own choice (api.estimate), made here to tell its op-level model
            from ..api import models_search_path
            from ..energy.predictor import get_predictor

            predictor = get_predictor(spec, models_search_path())
        est = wattlint.estimate(target, gpu=spec, predictor=predictor, lint=False, **kw)
    except WattlintError as e:
        return {"error": str(e)}
    d = to_dict(est)
    corrected = isinstance(predictor, RunCorrectedPredictor)
    op_level = predictor.base if corrected else predictor
    out = {
        "gpu": d["hardware"]["gpu"], "calibration": d["hardware"]["calibration"],
        "calibration_source": d["hardware"]["calibration_source"],
        "energy_model": d["provenance"]["energy_model"],
        # the content of the op-level model (energy.predictor.model_content_id; None: the prior): `wattlint fit`
        # fits a run correction on top of that very model, never of another fit that carries the same label
        "energy_model_id": model_content_id(op_level),
        "per_step": d["per_step"], "total": d["total"], "plan": d["plan"], "phases": d.get("phases"),
        "model": d["model"], "assumptions": d["assumptions"],
    }
    if corrected:
        # the prediction of the op-level model alone, beside the corrected one: what `wattlint fit` compares the run
        # with (fitting on the corrected prediction would correct twice; review: every run tracked after a first
        # correction was refused)
        try:
            b = to_dict(wattlint.estimate(meta_copy(model) if source is None else target, gpu=spec,
                                          predictor=op_level, lint=False, **kw))
            out["base"] = {"calibration": b["hardware"]["calibration"],
                           "calibration_source": b["hardware"]["calibration_source"],
                           "energy_model": b["provenance"]["energy_model"], "energy_model_id": out["energy_model_id"],
                           "per_step": b["per_step"]}
        except WattlintError as e:
            out["base"] = {"error": str(e)}
    return out
