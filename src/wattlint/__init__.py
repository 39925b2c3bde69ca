"""wattlint: what a training run will cost (energy, time, carbon, money) before it runs.

``import wattlint`` is light: torch, onnx, onnxruntime, pynvml and lightgbm are imported only when needed.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .types import CostGraph, OpRecord, Phase, OpKind, Status, WattlintError  # noqa: E402,F401
from .types import ConfigError, InputError  # noqa: E402,F401 - the API's errors (README, Python API)


def analyze(source, **kwargs):
    """Trace one training step of a model and return its :class:`CostGraph` (see wattlint.frontends.source)."""
    import inspect

    from .frontends.source import analyze as _analyze
    from .options import canonical

    takes = set(inspect.signature(_analyze).parameters) - {"source"}
    for k in kwargs:
        if k not in takes:  # an estimate's plan option, or a typo: one line, not a TypeError from deep inside
            import difflib

            close = difflib.get_close_matches(k, sorted(takes), n=1)
            raise ConfigError(f"analyze() takes no option {k!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                              + (" (wattlint.estimate takes the plan)" if canonical(k) and not close else ""))
    # the values are checked as wattlint.estimate and the command line check them (optimizer='lion', gpus=0, ...)
    from .api import TRACE_LOCK, _named_positional, validate_options
    from .options import positional_inputs

    # inputs= is an InputError here as from estimate and track (review s54: analyze raised ConfigError)
    checked = validate_options({k: v for k, v in kwargs.items() if canonical(k)})
    if kwargs.get("inputs") is not None:  # traced as estimate traces them (example tensors bound by position)
        inputs = checked["inputs"]
        kwargs["inputs"] = (_named_positional(source, inputs) if positional_inputs(inputs)
                            else inputs if isinstance(inputs, dict) else list(inputs))

    with TRACE_LOCK:  # one trace at a time: tracing swaps process-wide state (wattlint.api.TRACE_LOCK)
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


def __getattr__(name: str):
    """``wattlint.tracking`` (its Settings, callbacks) without importing it first, as the docs write it; imported
    lazily because it needs numpy."""
    if name == "tracking":
        import importlib

        return importlib.import_module(".tracking", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
