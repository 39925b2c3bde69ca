"""wattlint: what a training run will cost (energy, time, carbon, money) before it runs.

``import wattlint`` is light: torch, onnx, onnxruntime, pynvml and lightgbm are imported only when needed.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .types import CostGraph, OpRecord, Phase, OpKind, Status, WattlintError  # noqa: E402,F401


def analyze(source, **kwargs):
    """Trace one training step of a model and return its :class:`CostGraph` (see wattlint.frontends.source)."""
    from .frontends.source import analyze as _analyze

    return _analyze(source, **kwargs)


def estimate(source, **kwargs):
    """Estimate the cost of a training plan (see wattlint.api.estimate)."""
    from .api import estimate as _estimate

    return _estimate(source, **kwargs)


def track(model=None, **kwargs):
    """Measure a training run as it runs (see wattlint.tracking): ``with wattlint.track(model, steps=...) as t:``
    then ``t.step()`` after each optimizer step. Imports no torch or pynvml until a device is read."""
    from .tracking import Tracker

    return Tracker(model, **kwargs)
