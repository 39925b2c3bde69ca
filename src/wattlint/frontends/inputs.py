"""Parse ``--input`` specs: ``name=dtype[d0,d1,...]`` (e.g. ``x=float32[8,3,224,224]``, ``ids=int64[4,512]``).

A dim may be an integer or, for ONNX graphs, left symbolic by writing its name (bound elsewhere).
"""

from __future__ import annotations

import re

from ..types import InputError, TensorSpec

_SPEC = re.compile(r"^\s*([A-Za-z_][\w.:/-]*)\s*=\s*([A-Za-z][A-Za-z0-9_]*)\s*\[\s*([^\]]*)\]\s*$")
DTYPES = {"float32", "float", "float16", "half", "bfloat16", "float64", "double", "int64", "long", "int32", "int",
          "int16", "int8", "uint8", "bool", "complex64", "cfloat", "complex128", "cdouble"}
# complex64 / complex128 (torch's names; cfloat / cdouble their aliases): complex models (FFT layers, spectral
# convolutions) take complex inputs; costs.is_complex counts their FLOPs as real ones
_ALIASES = {"float": "float32", "half": "float16", "double": "float64", "long": "int64", "int": "int32",
            "cfloat": "complex64", "cdouble": "complex128"}
MAX_ELEMS = 1 << 40


def parse_input_spec(spec: str) -> TensorSpec:
    m = _SPEC.match(spec)
    if not m:
        raise InputError(f"bad --input spec {spec!r}: expected name=dtype[d0,d1,...], e.g. x=float32[8,3,224,224]")
    name, dtype, dims_s = m.groups()
    dtype = dtype.lower()
    if dtype not in DTYPES:
        raise InputError(f"bad --input spec {spec!r}: unknown dtype {dtype!r} (one of {', '.join(sorted(DTYPES))})")
    dims: list[int] = []
    total = 1
    for part in (p.strip() for p in dims_s.split(",") if p.strip()):
        if not re.fullmatch(r"\d+", part):
            raise InputError(f"bad --input spec {spec!r}: dim {part!r} is not a positive integer")
        d = int(part)
        if d <= 0:
            raise InputError(f"bad --input spec {spec!r}: dim {d} must be positive")
        total *= d
        if total > MAX_ELEMS:
            raise InputError(f"bad --input spec {spec!r}: {total:.3g} elements is absurd")
        dims.append(d)
    return TensorSpec(name, _ALIASES.get(dtype, dtype), tuple(dims))


def parse_input_specs(specs: list[str] | None) -> dict[str, TensorSpec]:
    out: dict[str, TensorSpec] = {}
    for s in specs or []:
        t = parse_input_spec(s)
        if t.name in out:
            raise InputError(f"--input {t.name!r} given twice")
        out[t.name] = t
    return out
