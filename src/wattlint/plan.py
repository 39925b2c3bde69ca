"""Training plan: how much work (dataset x epochs | steps | tokens), at which batch and precision, on how many
GPUs, where (PUE, grid carbon intensity, price). Every default that changes a number is an ``assumptions`` line.

Pure data logic: no torch, no printing. Bad values raise :class:`ConfigError` with one clear line.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from functools import lru_cache
from importlib import resources

from . import carbon
from .hardware import precision_fallback, precision_support
from .types import ConfigError, CostGraph, GpuSpec, Plan, TensorSpec

PRECISIONS = ("default", "fp32", "tf32", "fp16", "bf16", "fp8")
OPTIMIZERS = ("adamw", "adam", "sgd")
SHARDINGS = ("none", "zero1", "zero2", "zero3", "fsdp")

DEFAULT_PUE = 1.2
DEFAULT_PUE_SOURCE = ("PUE 1.2 (default: between hyperscale fleet averages of ~1.1 - Google 2024 Environmental "
                      "Report 1.10 - and the industry-wide 1.58 of the Uptime Institute Global Data Center Survey "
                      "2023; use --pue 1.0 for a desk-side machine)")
DEFAULT_GPUS_PER_NODE = 8
PRECISION_DEFAULT_TEXT = ("precision 'default' = PyTorch defaults: fp32 weights and activations, matmuls in FP32 "
                          "(torch.backends.cuda.matmul.allow_tf32=False), cuDNN convolutions in TF32 on Ampere and "
                          "newer (torch.backends.cudnn.allow_tf32=True); pass --precision bf16/fp16 for AMP")
DATASET_RULE = ("inference rule: 3xHxW with H,W >= 160 and a 1000-way output -> imagenet-1k; 3x32x32 with 10/100 "
                "outputs -> cifar10/cifar100; 1x28x28 with 10 outputs -> mnist")


# ---- datasets ----------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def load_datasets() -> dict[str, dict]:
    """Dataset presets (data/datasets.toml): name -> {samples | tokens, source, aliases}."""
    text = resources.files("wattlint").joinpath("data", "datasets.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9.]", "", name.lower())


def _dataset_lookup() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, row in load_datasets().items():
        for n in (name, *row.get("aliases", ())):
            out[_norm(n)] = name
    return out


def _parse_count(text: str) -> int | None:
    t = text.strip().replace("_", "").replace(",", "")
    try:
        v = float(t)
    except ValueError:
        return None
    if not math.isfinite(v) or v != int(v):
        raise ConfigError(f"--dataset {text}: a sample count must be a whole number")
    return int(v)


def resolve_dataset(spec: str | int, seq_len: int | None = None) -> tuple[str | None, int, str]:
    """``--dataset NAME|N`` -> (preset name or None, samples per epoch, assumption line)."""
    if isinstance(spec, bool):
        raise ConfigError(f"--dataset {spec!r}: expected a preset name or a sample count")
    if isinstance(spec, (int, float)):
        n = int(spec) if float(spec) == int(spec) else None
        if n is None:
            raise ConfigError(f"--dataset {spec}: a sample count must be a whole number")
        name = None
    else:
        n = _parse_count(str(spec))
        name = None
    if n is not None:
        if n <= 0:
            raise ConfigError(f"--dataset {spec}: the sample count must be positive")
        return None, n, f"dataset: {n:,} samples per epoch (--dataset {spec})"
    text = str(spec).strip()
    key = _dataset_lookup().get(_norm(text))
    if key is None:
        names = sorted(load_datasets())
        close = difflib.get_close_matches(text.lower(), [*names, *_dataset_lookup()], n=3, cutoff=0.5)
        close = list(dict.fromkeys(_dataset_lookup().get(_norm(c), c) for c in close))
        hint = ("did you mean " + " or ".join(repr(c) for c in close) + "?") if close else \
            "known: " + ", ".join(names)
        raise ConfigError(f"unknown dataset {text!r}; {hint} (or pass a sample count, e.g. --dataset 50000)")
    row = load_datasets()[key]
    if "samples" in row:
        n = int(row["samples"])
        return key, n, f"dataset {key}: {n:,} training samples per epoch ({row['source']})"
    tokens = int(row["tokens"])
    if not seq_len:
        raise ConfigError(f"dataset {key} is measured in tokens ({tokens:,}); pass --seq-len to turn it into samples")
    n = math.ceil(tokens / seq_len)
    return key, n, (f"dataset {key}: {tokens:,} training tokens / seq-len {seq_len} = {n:,} samples per epoch "
                    f"({row['source']})")


def _shape_text(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(f"{s.name}={s.dtype}[{','.join(map(str, s.shape))}]" for s in specs) or "none"


def infer_dataset(graph: CostGraph) -> tuple[str, str]:
    """Dataset preset from the input signature by the stated rule; ConfigError asking for --dataset otherwise."""
    image = next((s for s in graph.inputs if len(s.shape) == 4), None)
    out = next((s for s in graph.outputs if len(s.shape) >= 2), None)
    name = None
    if image is not None and out is not None:
        _, c, h, w = image.shape
        if c not in (1, 3) and w in (1, 3):  # channels-last (N,H,W,C), e.g. Keras/TF exports
            h, w, c = c, h, w
        classes = out.shape[-1]
        if c == 3 and h >= 160 and w >= 160 and classes == 1000:
            name = "imagenet-1k"
        elif c == 3 and h == 32 and w == 32 and classes in (10, 100):
            name = f"cifar{classes}"
        elif c == 1 and h == 28 and w == 28 and classes == 10:
            name = "mnist"
    if name is None:
        raise ConfigError(
            f"cannot infer the dataset from inputs {_shape_text(graph.inputs)} and outputs "
            f"{_shape_text(graph.outputs)}; pass --dataset NAME|N (e.g. imagenet-1k, cifar10, 50000), "
            f"--steps N or --tokens N")
    return name, (f"dataset {name} inferred from the input signature ({_shape_text(graph.inputs)} -> "
                  f"{out.shape[-1]} outputs; {DATASET_RULE}); pass --dataset to override")


# ---- validation helpers ------------------------------------------------------------------------------------

def _positive(name: str, value, *, integer: bool = False, allow_zero: bool = False):
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number (got {value!r})")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number (got {value!r})") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'non-negative' if allow_zero else 'positive'} (got {value!r})")
    if integer:
        if v != int(v):
            raise ConfigError(f"{name} must be a whole number (got {value!r})")
        return int(v)
    return v


def default_internode_gbps(gpu: GpuSpec) -> tuple[float, str]:
    """Network bandwidth per node (Gbit/s) of a typical cluster for this GPU class."""
    if gpu.nvlink_gbs > 0 and gpu.pcie_gen >= 5:
        return 3200.0, "8 x 400 Gbit/s InfiniBand NDR per node (DGX H100-class)"
    if gpu.nvlink_gbs >= 600:
        return 1600.0, "8 x 200 Gbit/s InfiniBand HDR per node (DGX A100-class)"
    if gpu.nvlink_gbs > 0:
        return 400.0, "4 x 100 Gbit/s InfiniBand EDR per node (DGX-1-class)"
    return 100.0, "100 Gbit/s Ethernet per node (PCIe servers)"


# ---- the plan ----------------------------------------------------------------------------------------------

def build_plan(graph: CostGraph, *, gpu: GpuSpec, epochs=None, steps=None, dataset=None, tokens=None, seq_len=None,
               batch_size=None, grad_accum=1, precision=None, optimizer=None, gpus=1, gpus_per_node=None,
               sharding="none", pue=None, region=None, carbon_intensity=None, price=None, gpu_hour_price=None,
               utilization=None, internode_gbps=None, activation_checkpointing=False,
               strict_precision=True) -> Plan:
    """A validated :class:`Plan` with every default stated in ``assumptions``.

    A precision the GPU has no hardware path for (hardware.precision_support) is a ConfigError when
    ``strict_precision`` (the user asked for it); otherwise (a --compare candidate, a lint re-estimate) it is costed
    as the closest precision the GPU has, stated as an assumption (hardware.precision_fallback)."""
    notes: list[str] = []

    # -- amounts of work: exactly one of epochs / steps / tokens
    given = [n for n, v in (("--epochs", epochs), ("--steps", steps), ("--tokens", tokens)) if v is not None]
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)} conflict: give only one of --epochs, --steps or --tokens")
    epochs = _positive("--epochs", epochs)
    steps = _positive("--steps", steps, integer=True)
    tokens = _positive("--tokens", tokens)
    seq_len = _positive("--seq-len", seq_len, integer=True)
    grad_accum = _positive("--grad-accum", 1 if grad_accum is None else grad_accum, integer=True)
    gpus = _positive("--gpus", 1 if gpus is None else gpus, integer=True)
    gpus_per_node = _positive("--gpus-per-node", gpus_per_node, integer=True)
    if batch_size is not None:
        batch_size = _positive("--batch-size", batch_size, integer=True)

    # -- batch
    micro_traced = max(1, int(graph.micro_batch or 1))
    if batch_size is None:
        batch_size = micro_traced * gpus * grad_accum
        notes.append(f"global batch {batch_size} = traced micro-batch {micro_traced} x {gpus} GPU(s) x "
                     f"grad-accum {grad_accum} (no --batch-size)")
    if batch_size < gpus * grad_accum:
        raise ConfigError(f"--batch-size {batch_size} is smaller than gpus x grad-accum = {gpus * grad_accum}: "
                          f"each GPU needs at least one sample per micro-step")
    micro = batch_size // (gpus * grad_accum)
    if micro * gpus * grad_accum != batch_size:
        notes.append(f"global batch {batch_size} is not divisible by gpus x grad-accum = {gpus * grad_accum}: "
                     f"micro-batch {micro} per GPU ({micro * gpus * grad_accum} samples per step are costed)")

    # -- steps
    dataset_name: str | None = None
    dataset_size: int | None = None
    seq = seq_len or (graph.seq_len or None)
    if tokens is not None:
        if not seq:
            raise ConfigError("--tokens needs --seq-len (the model's sequence length is unknown)")
        steps = math.ceil(tokens / (batch_size * seq))
        notes.append(f"steps {steps:,} = ceil(tokens {tokens:,.0f} / (batch {batch_size} x seq-len {seq}))")
        if dataset is not None:
            notes.append(f"--dataset {dataset} ignored: --tokens sets the amount of work")
    elif steps is not None:
        notes.append(f"steps {steps:,} (--steps); no epochs/dataset needed")
        if dataset is not None:
            dataset_name, dataset_size, line = resolve_dataset(dataset, seq)
            epochs = steps * batch_size / dataset_size
            notes.append(line)
    else:
        if epochs is None:
            epochs = 1
            notes.append("epochs 1 (no --epochs, --steps or --tokens given)")
        if dataset is None:
            dataset_name, line = infer_dataset(graph)
            _, dataset_size, size_line = resolve_dataset(dataset_name, seq)
            notes.append(line)
            notes.append(size_line)
        else:
            dataset_name, dataset_size, line = resolve_dataset(dataset, seq)
            notes.append(line)
        per_epoch = math.ceil(dataset_size / batch_size)
        steps = math.ceil(per_epoch * epochs)
        ep = f"{epochs:g}"
        notes.append(f"steps {steps:,} = ceil({dataset_size:,} samples / batch {batch_size}) = {per_epoch:,} per "
                     f"epoch x {ep} epochs (last partial batch kept, drop_last=False)")

    # -- precision, optimizer
    if precision is None:
        precision = "default"
        notes.append(PRECISION_DEFAULT_TEXT)
    precision = str(precision).lower()
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    ok, why = precision_support(gpu, precision)
    if not ok:
        if strict_precision:
            raise ConfigError(why)
        precision, line = precision_fallback(gpu, precision)
        notes.append(line)
    elif precision not in ("default", "fp32") and precision not in gpu.peak_tflops:
        notes.append(f"{gpu.key} has no {precision} tensor-core rate in the database; costed at its "
                     f"{_fallback_dtype(gpu, precision)} rate")
    if optimizer is None:
        optimizer = graph.optimizer or "adamw"
        notes.append(f"optimizer {optimizer} (as traced; pass --optimizer to change)")
    optimizer = str(optimizer).lower()
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZERS)}")

    # -- GPUs and parallelism
    if gpus_per_node is None:
        gpus_per_node = min(gpus, DEFAULT_GPUS_PER_NODE)
        if gpus > 1:
            notes.append(f"gpus-per-node {gpus_per_node} (default min(gpus, {DEFAULT_GPUS_PER_NODE}))")
    elif gpus_per_node > gpus:
        notes.append(f"--gpus-per-node {gpus_per_node} > --gpus {gpus}: one node of {gpus} GPUs")
        gpus_per_node = gpus
    sharding = (sharding or "none").lower()
    if sharding not in SHARDINGS:
        raise ConfigError(f"unknown sharding {sharding!r}; use one of {', '.join(SHARDINGS)}")
    if gpus > 1:
        nodes = math.ceil(gpus / gpus_per_node)
        notes.append(f"data parallel over {gpus} GPUs ({nodes} node(s) x {gpus_per_node}), sharding {sharding}")
        if gpus % gpus_per_node:
            notes.append(f"{gpus} GPUs do not fill whole nodes of {gpus_per_node}: the last node is partial")
    elif sharding != "none":
        notes.append(f"sharding {sharding} has no effect on a single GPU")
    if internode_gbps is None:
        internode_gbps, why = default_internode_gbps(gpu)
        if gpus > gpus_per_node:
            notes.append(f"inter-node bandwidth {internode_gbps:g} Gbit/s per node (default: {why}; "
                         f"--internode-gbps to change)")
    else:
        internode_gbps = _positive("--internode-gbps", internode_gbps)
    if activation_checkpointing:
        notes.append("activation checkpointing: forward recomputed in backward (more time, less memory)")
    if utilization is not None:
        utilization = _positive("--utilization", utilization)
        if utilization > 1:
            raise ConfigError(f"--utilization must be in (0, 1] (got {utilization:g})")
        notes.append(f"utilization override {utilization:g}: predicted compute efficiency replaced (what-if)")

    # -- facility, carbon, money
    if pue is None:
        cloud = carbon.cloud_pue(region) if region else None
        if cloud:
            pue = cloud
            notes.append(f"PUE {pue:g} (listed for cloud region {region} in the mlco2/impact table)")
        else:
            pue = DEFAULT_PUE
            notes.append(DEFAULT_PUE_SOURCE)
    else:
        pue = _positive("--pue", pue)
        if not 1.0 <= pue <= 3.0:
            raise ConfigError(f"--pue must be between 1.0 and 3.0 (got {pue:g})")
    region_key = carbon.normalize_region(region) if region else None  # validates even when overridden
    if carbon_intensity is not None:
        carbon_intensity = _positive("--carbon-intensity", carbon_intensity, allow_zero=True)
        notes.append(f"carbon intensity {carbon_intensity:g} gCO2e/kWh (--carbon-intensity"
                     + (f", overrides region {region})" if region else ")"))
    else:
        carbon_intensity, line = carbon.grid_intensity(region)
        notes.append(line)
    if gpu_hour_price is not None:
        gpu_hour_price = _positive("--gpu-hour-price", gpu_hour_price, allow_zero=True)
        notes.append(f"GPU-hour price ${gpu_hour_price:g} (rental; includes electricity)")
    if price is None and gpu_hour_price is not None:
        # the rental price already pays for the electricity: charging the default tariff on top double-counts it
        price = 0.0
        notes.append("electricity not charged separately: included in the GPU-hour price (pass --price to add it)")
    elif price is None:
        price, line = carbon.price_per_kwh(region_key)
        notes.append(line)
    else:
        price = _positive("--price", price, allow_zero=True)

    return Plan(
        batch_size=batch_size, steps=steps, epochs=epochs, dataset=dataset_name, dataset_size=dataset_size,
        tokens=tokens, seq_len=seq, grad_accum=grad_accum, precision=precision, optimizer=optimizer, gpus=gpus,
        gpus_per_node=gpus_per_node, sharding=sharding, pue=pue, region=region_key,
        carbon_intensity_g_per_kwh=float(carbon_intensity), price_per_kwh=price, gpu_hour_price=gpu_hour_price,
        utilization=utilization, internode_gbps=float(internode_gbps),
        activation_checkpointing=bool(activation_checkpointing), assumptions=tuple(notes),
    )


def _fallback_dtype(gpu: GpuSpec, dtype: str) -> str:
    from .types import _PEAK_FALLBACK

    for k in _PEAK_FALLBACK.get(dtype, (dtype, "fp32")):
        if gpu.peak_tflops.get(k):
            return k
    return "fp32"
