"""GPU database: specs with a source per value, aliases, NVML names and "did you mean".

The data lives in ``wattlint/data/gpus.toml`` (rules at the top of that file and in ``data/SOURCES.md``).
This module only parses and indexes it; it never imports torch or pynvml.
"""

from __future__ import annotations

import difflib
import re
try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 (tomli is a dependency there)
    import tomli as tomllib  # type: ignore[no-redef]
from functools import lru_cache
from importlib import resources

from .types import ConfigError, GpuSpec

DATA_FILE = "gpus.toml"

#: In-job idle power of a GDDR board (GDDR5/6/6X/7 memory) as a fraction of its TDP: the rule ``@idle-rule-gddr``
#: of gpus.toml, whose values are ``gddr_idle_w(tdp_w)``. A CUDA process keeps the board in P0 with its memory at
#: full clock, so it idles far above its desktop figure (docs/ENERGY_MODEL.md, "In-job idle of GDDR boards").
#: Fitted leave-one-GPU-out on the Zeus A40 / Quadro RTX 6000 rows (benchmarks/prior_vs_public.py "idle_fit").
IDLE_FRACTION_GDDR = 0.25


def gddr_idle_w(tdp_w: float, fraction: float = IDLE_FRACTION_GDDR) -> int:
    """In-job idle power (W) of a GDDR board by the stated rule: ``fraction`` x TDP to the nearest watt."""
    return int(fraction * tdp_w + 0.5)


#: scalar fields of a GPU row that carry a value (each needs a source).
VALUE_FIELDS = ("tdp_w", "idle_w", "memory_gb", "memory_bw_gbs", "sm_count", "boost_mhz", "pcie_gen",
                "nvlink_gbs", "nvlink_domain", "l2_mb")
PEAK_DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8")
#: training precisions a plan may ask for; "default" (PyTorch's defaults) and "fp32" run on every GPU.
PLAN_PRECISIONS = ("default", "fp32", "tf32", "fp16", "bf16", "fp8")
#: what a row's ``precisions`` may list: the precisions the hardware runs natively.
NATIVE_PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "fp8")
_REQUIRED = ("name", "vendor", "arch", "tdp_w", "idle_w", "memory_gb", "memory_bw_gbs", "sm_count", "boost_mhz",
             "peak_tflops", "precisions", "sources")
_NOISE_WORDS = ("nvidia", "geforce", "tesla", "amd", "instinct")


def _data_text() -> bytes:
    return resources.files("wattlint").joinpath("data", DATA_FILE).read_bytes()


def normalize(name: str) -> str:
    """Lookup form of a GPU name: lower case, vendor/brand words and punctuation dropped."""
    s = name.lower()
    for w in _NOISE_WORDS:
        s = re.sub(rf"\b{w}\b", " ", s)
    return re.sub(r"[^a-z0-9]", "", s)


def _expand_refs(text: str, refs: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        ref = m.group(1)
        if ref not in refs:
            raise ValueError(f"gpus.toml: unknown reference @{ref}")
        return refs[ref]

    return re.sub(r"@([a-z0-9][a-z0-9_-]*[a-z0-9])", sub, text)


def _expand_sources(key: str, row: dict, refs: dict[str, str]) -> dict[str, str]:
    """Per-value sources: 'peak_tflops' covers every dtype not listed as 'peak_tflops.<dtype>'."""
    raw = row.get("sources", {})
    out: dict[str, str] = {}
    for field_, text in raw.items():
        if field_ == "peak_tflops":
            continue
        out[field_] = _expand_refs(text, refs)
    if "peak_tflops" in raw:
        group = _expand_refs(raw["peak_tflops"], refs)
        for dt in row.get("peak_tflops", {}):
            out.setdefault(f"peak_tflops.{dt}", group)
    return out


#: DRAM technologies a row's optional ``memory_type`` may name (the ones the chip code does not imply)
MEMORY_TYPES = ("GDDR6X", "GDDR7")


def _memory_type(key: str, row: dict) -> str:
    mt = row.get("memory_type", "")
    if not mt:
        return ""
    if mt not in MEMORY_TYPES:
        raise ValueError(f"gpus.toml: {key} memory_type {mt!r} is not one of {MEMORY_TYPES}")
    if "memory_type" not in row.get("sources", {}):
        raise ValueError(f"gpus.toml: {key} has no source for its memory_type")
    return mt


def _provider_cap(key: str, row: dict) -> bool:
    v = row.get("tdp_is_provider_cap", False)
    if not isinstance(v, bool):
        raise ValueError(f"gpus.toml: {key} tdp_is_provider_cap must be true or false")
    if v and "tdp_is_provider_cap" not in row.get("sources", {}):
        raise ValueError(f"gpus.toml: {key} has no source for tdp_is_provider_cap")
    return v


def _spec(key: str, row: dict, refs: dict[str, str]) -> GpuSpec:
    missing = [f for f in _REQUIRED if f not in row]
    if missing:
        raise ValueError(f"gpus.toml: {key} lacks {', '.join(missing)}")
    peaks = {k: float(v) for k, v in row["peak_tflops"].items()}
    bad = set(peaks) - set(PEAK_DTYPES)
    if bad:
        raise ValueError(f"gpus.toml: {key} has unknown peak dtypes {sorted(bad)}")
    precisions = tuple(str(p).lower() for p in row["precisions"])
    bad = set(precisions) - set(NATIVE_PRECISIONS)
    if bad or "fp32" not in precisions:
        raise ValueError(f"gpus.toml: {key} precisions must include fp32 and name only {NATIVE_PRECISIONS} "
                         f"(got {list(precisions)})")
    if "precisions" not in row.get("sources", {}):
        raise ValueError(f"gpus.toml: {key} has no source for its precisions")
    unconfirmed: list[str] = []
    for f in row.get("unconfirmed", ()):
        if f == "peak_tflops":  # the whole group
            unconfirmed.extend(f"peak_tflops.{d}" for d in peaks)
        else:
            unconfirmed.append(f)
    return GpuSpec(
        key=key,
        name=row["name"],
        vendor=row["vendor"],
        arch=row["arch"],
        peak_tflops=peaks,
        memory_gb=float(row["memory_gb"]),
        memory_bw_gbs=float(row["memory_bw_gbs"]),
        sm_count=int(row["sm_count"]),
        boost_mhz=float(row["boost_mhz"]),
        tdp_w=float(row["tdp_w"]),
        idle_w=float(row["idle_w"]),
        idle_estimated=bool(row.get("idle_estimated", True)),
        tdp_is_provider_cap=_provider_cap(key, row),
        pcie_gen=int(row.get("pcie_gen", 0)),
        nvlink_gbs=float(row.get("nvlink_gbs", 0.0)),
        nvlink_domain=int(row.get("nvlink_domain", 0)),
        tensor_cores=bool(row.get("tensor_cores", True)),
        l2_mb=float(row.get("l2_mb", 0.0)),
        memory_type=_memory_type(key, row),
        aliases=tuple(row.get("aliases", ())),
        nvml_names=tuple(row.get("nvml_names", ())),
        sources=_expand_sources(key, row, refs),
        unconfirmed=tuple(unconfirmed),
        precisions=tuple(p for p in NATIVE_PRECISIONS if p in precisions),
    )


@lru_cache(maxsize=1)
def _database() -> tuple[dict[str, GpuSpec], dict[str, str], dict[str, str]]:
    gpus = _parse()[0]
    # lookup: normalized key / alias / marketing name / NVML name -> key
    lookup: dict[str, str] = {}
    nvml: dict[str, str] = {}
    for key, g in gpus.items():
        for n in (key, *g.aliases, g.name):
            lookup.setdefault(normalize(n), key)
        for n in g.nvml_names:
            nvml[normalize(n)] = key
    return gpus, lookup, nvml


@lru_cache(maxsize=1)
def _parse() -> tuple[dict[str, GpuSpec], dict[str, str]]:
    """(GPUs by key, optional per-GPU ``precision_note``: why a precision is missing, when the generic wording
    'has no <p> tensor cores' would not be exact)."""
    data = tomllib.loads(_data_text().decode("utf-8"))
    refs = data.get("refs", {})
    gpus = {key: _spec(key, row, refs) for key, row in data["gpu"].items()}
    notes = {key: str(row["precision_note"]) for key, row in data["gpu"].items() if row.get("precision_note")}
    return gpus, notes


def load_gpus() -> dict[str, GpuSpec]:
    """All GPUs of the database by key (cached; returns a new dict each call)."""
    return dict(_database()[0])


def gpu_names() -> list[str]:
    """Keys and aliases a user may type."""
    gpus = _database()[0]
    return sorted({*gpus, *(a for g in gpus.values() for a in g.aliases)})


def _lookup(name: str) -> GpuSpec | None:
    gpus, lookup, nvml = _database()
    if name in gpus:
        return gpus[name]
    n = normalize(name)
    key = lookup.get(n) or nvml.get(n)
    return gpus[key] if key else None


# names that two cards of the database carry (normalised): refused naming both, never resolved to one silently
_RTX6000 = (("quadro-rtx6000-24gb", "Quadro RTX 6000, Turing, 2018"), ("rtx6000-ada-48gb", "RTX 6000 Ada, 2022"))
AMBIGUOUS_NAMES = {"rtx6000": _RTX6000}


def resolve_gpu(name: str) -> tuple[GpuSpec, str | None]:
    """The spec for a key, alias, marketing or NVML name, and an assumption line when it was not the key."""
    text = (name or "").strip()
    if not text:
        raise ConfigError("empty GPU name; run 'wattlint gpus' for the list")
    spec = _lookup(text)
    if spec is None:
        both = AMBIGUOUS_NAMES.get(normalize(text))
        if both:
            raise ConfigError(f"GPU {text!r} names two cards: " + " or ".join(f"{k} ({why})" for k, why in both)
                              + "; give the key")
        raise ConfigError(f"unknown GPU {text!r}; {_did_you_mean(text)}")
    if text == spec.key or text.lower() == spec.key:
        return spec, None
    return spec, f"gpu {text!r} resolved to {spec.key} ({spec.name})"


def _did_you_mean(text: str) -> str:
    gpus, lookup, _ = _database()
    names = gpu_names()
    close: list[str] = []
    seen: set[str] = set()
    for c in difflib.get_close_matches(text.lower(), names, n=8, cutoff=0.5):
        key = lookup[normalize(c)]
        if key not in seen:  # one suggestion per GPU
            seen.add(key)
            close.append(c)
    close = close[:3]
    if not close:  # try the normalized forms ("RTX-3090 Ti" -> "rtx3090ti")
        norm = difflib.get_close_matches(normalize(text), list(lookup), n=3, cutoff=0.5)
        close = list(dict.fromkeys(lookup[n] for n in norm))
    if not close:
        n = normalize(text)
        close = [k for k in gpus if n and (n in normalize(k))][:3]
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "? ('wattlint gpus' lists all)"
    return "run 'wattlint gpus' for the list"


def gpu_from_nvml_name(name: str) -> GpuSpec | None:
    """Map an NVML device name ("NVIDIA H100 80GB HBM3", "Tesla T4") to its database spec, or None."""
    if not name:
        return None
    gpus, lookup, nvml = _database()
    base = re.split(r"\s+MIG\s+", name.strip(), maxsplit=1)[0]  # "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
    n = normalize(base)
    key = nvml.get(n) or lookup.get(n)
    return gpus[key] if key else None


def value_fields(spec: GpuSpec) -> list[str]:
    """Names of every value a row carries (for source / flag checks): scalar fields + 'peak_tflops.<dtype>'."""
    scalar = [f for f in VALUE_FIELDS if f != "nvlink_domain" or spec.nvlink_domain]  # optional: rack-scale parts
    if spec.tdp_is_provider_cap:  # optional: set (with its source) only where the power is a provider's cap
        scalar.append("tdp_is_provider_cap")
    return [*scalar, *(f"peak_tflops.{d}" for d in spec.peak_tflops)]


# ---- precision support --------------------------------------------------------------------------------------

#: order in which supported precisions are suggested (fastest first)
_SUGGEST = ("fp8", "bf16", "fp16", "tf32", "fp32")
#: what an unsupported precision is costed as on the non-strict path, first one the GPU has (else fp32)
_SUBSTITUTES = {"fp8": ("bf16", "fp16"), "bf16": ("fp16",), "fp16": ("bf16",), "tf32": ()}


def _native(gpu: GpuSpec) -> tuple[str, ...]:
    if gpu.precisions:
        return tuple(gpu.precisions)
    # a hand-built spec without the database field: the peaks are the only knowledge
    peaks = gpu.peak_tflops
    out = {"fp32"}
    if gpu.tensor_cores:
        out |= {p for p in ("tf32", "bf16", "fp8") if peaks.get(p)}
    if peaks.get("fp16"):
        out.add("fp16")
    return tuple(p for p in NATIVE_PRECISIONS if p in out)


def supported_precisions(gpu: GpuSpec) -> tuple[str, ...]:
    """The training precisions ``gpu`` runs natively, in ``PLAN_PRECISIONS`` order ("default" and "fp32" always).

    Driven by the database field ``precisions`` (sourced per architecture: tf32 on Ampere and newer and CDNA 3;
    bf16 on Ampere and newer, CDNA 2/3 and Gaudi; fp8 on Ada, Hopper, Blackwell, CDNA 3 and Gaudi 3; fp16 on
    every GPU with tensor/matrix cores and on GP100)."""
    native = _native(gpu)
    return tuple(p for p in PLAN_PRECISIONS if p == "default" or p in native)


def _family(gpu: GpuSpec) -> str:
    return gpu.arch.split(" (", 1)[0]


def _lacks(gpu: GpuSpec, precision: str) -> str:
    note = _parse()[1].get(gpu.key)
    if note:
        return note.format(precision=precision)
    if not gpu.tensor_cores:
        return f"has no tensor cores and no fast {precision} path ({_family(gpu)})"
    unit = {"NVIDIA": "tensor cores", "AMD": "matrix cores"}.get(gpu.vendor, "matrix-engine support")
    return f"has no {precision} {unit} ({_family(gpu)})"


def _or_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def precision_support(gpu: GpuSpec, precision: str) -> tuple[bool, str]:
    """(True, "") when ``gpu`` runs ``precision`` natively, else (False, one line giving the reason and the
    precisions it does support), e.g. "--precision bf16: Tesla V100 SXM2 32GB (v100-sxm2-32gb) has no bf16 tensor
    cores (Volta); use fp16 or fp32". Pure: no I/O beyond the (cached) database."""
    p = str(precision).lower()
    if p not in PLAN_PRECISIONS:
        return False, f"unknown precision {precision!r}; use one of {', '.join(PLAN_PRECISIONS)}"
    supported = supported_precisions(gpu)
    if p in supported:
        return True, ""
    use = [q for q in _SUGGEST if q in supported]
    return False, f"--precision {p}: {gpu.name} ({gpu.key}) {_lacks(gpu, p)}; use {_or_list(use)}"


def precision_fallback(gpu: GpuSpec, precision: str) -> tuple[str, str]:
    """The precision an unsupported ``precision`` is costed as on ``gpu`` (the closest one it runs natively: fp8
    -> bf16 -> fp16, bf16 -> fp16, fp16 -> bf16, else fp32) and the assumption line that says so. For a supported
    precision: (precision, "")."""
    p = str(precision).lower()
    ok, _ = precision_support(gpu, p)
    if ok:
        return p, ""
    supported = supported_precisions(gpu)
    sub = next((q for q in _SUBSTITUTES.get(p, ()) if q in supported), "fp32")
    return sub, (f"--precision {p} is not available on {gpu.key}: it {_lacks(gpu, p)}; costed as {sub}, the "
                 f"closest precision it runs natively")
