"""Layer tables for reports: group an estimate's layers, sort them naturally, shorten names (on dot boundaries
first).

Grouping (``--group-by``, presentation only: JSON keeps every innermost module):

* ``block`` (default): repeated blocks merged — every numeric path component becomes ``*`` so
  ``transformer.h.0.mlp.act`` ... ``transformer.h.11.mlp.act`` is one row ``transformer.h.*.mlp.act`` (x12);
* ``name``: one row per innermost module, as traced;
* ``type``: one row per module type (``Linear``, ``LayerNorm``, ...), like fvcore's by-operator tables;
* ``depth``: modules truncated to ``depth`` path components (``transformer.h.3``), like fvcore's module depth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from ..types import LayerEstimate

GROUPINGS = ("block", "name", "type", "depth")
MIXED = "(mixed)"  # the type of a row merging modules of different types
_NUM = re.compile(r"(\d+)")


@dataclass(frozen=True)
class LayerRow:
    name: str
    type: str
    count: int  # modules merged into the row
    flops: float
    time_s: float
    gpu_energy_j: float
    share: float


def natural_key(text: str) -> tuple:
    """'h.2' < 'h.10': digit runs compare as numbers."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in _NUM.split(text) if p)


def _key(layer: LayerEstimate, by: str, depth: int) -> str:
    if by == "name":
        return layer.name
    if by == "type":
        return layer.type or "(untyped)"
    if by == "depth":
        return ".".join(layer.name.split(".")[:depth]) if not layer.name.startswith("(") else layer.name
    return ".".join("*" if p.isdigit() else p for p in layer.name.split("."))


def group_layers(layers: Sequence[LayerEstimate], by: str = "block", depth: int = 2) -> list[LayerRow]:
    """Rows sorted by energy (largest first), ties by natural name order."""
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}")
    acc: dict[str, list] = {}
    for le in layers:
        k = _key(le, by, depth)
        a = acc.setdefault(k, [0, 0.0, 0.0, 0.0, 0.0, {}])
        a[0] += 1
        a[1] += le.flops
        a[2] += le.time_s
        a[3] += le.gpu_energy_j
        a[4] += le.share
        a[5][le.type] = a[5].get(le.type, 0.0) + le.gpu_energy_j
    rows = []
    for k, (n, f, t, e, s, types) in acc.items():
        # the merged modules' type, or "(mixed)" where they differ (the heaviest one's named the whole row)
        typ = k if by == "type" else next(iter(types)) if len(types) == 1 else MIXED if types else ""
        rows.append(LayerRow(name=k, type=typ, count=n, flops=f, time_s=t, gpu_energy_j=e, share=s))
    rows.sort(key=lambda r: (-round(r.gpu_energy_j, 12), natural_key(r.name)))
    return rows


def whole_components(name: str, width: int) -> str:
    """``name`` shortened towards ``width`` characters by dropping leading dotted components, never cutting one:
    ``…h.*.mlp.act``; a last component longer than ``width`` is kept whole (``…post_attention_layernorm``), a name
    without dots as it is."""
    if len(name) <= width:
        return name
    parts = name.split(".")
    for i in range(1, len(parts)):
        cand = "…" + ".".join(parts[i:])
        if len(cand) <= width:
            return cand
    return "…" + parts[-1] if len(parts) > 1 else name


def shorten(name: str, width: int) -> str:
    """``name`` in at most ``width`` characters: leading dotted components dropped (``…h.*.mlp.act``); where that is
    not enough, a dotted path keeps its end (``…ion_layernorm``), a name without dots its start (``AVeryLongNa…``)."""
    short = whole_components(name, width)
    if len(short) <= width:
        return short
    if width < 1:
        return ""
    if "." in name:
        return "…" + name[len(name) - width + 1:]
    return name[:width - 1] + "…"
