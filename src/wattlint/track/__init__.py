"""Measure real training runs: STEP projection, budget guard, run records, framework callbacks.

    with wattlint.track(model, example=batch, steps=10_000, gpu="a100-sxm4-80gb") as t:
        for batch in t.wrap(loader):
            ...
            optimizer.step()
            t.step()

Callbacks: ``wattlint.track.lightning.WattlintCallback`` (PyTorch Lightning) and
``wattlint.track.hf.WattlintCallback`` (Hugging Face ``Trainer``). Records: :mod:`wattlint.track.record`;
run-level calibration from records: :mod:`wattlint.track.fit`; other tools' logs: :mod:`wattlint.track.interop`.

Importing this package does not import torch or pynvml.
"""

from __future__ import annotations

import sys as _sys
import types as _types

from .project import Settings  # noqa: F401
from .tracker import BudgetExceeded, BudgetWarning, Tracker  # noqa: F401


def track(model=None, **kwargs) -> Tracker:
    """A :class:`Tracker` (use it as a context manager); see its docstring for the options."""
    return Tracker(model, **kwargs)


# ``wattlint.track(...)`` is the public API (a function in wattlint/__init__.py), but importing this subpackage
# rebinds the package attribute ``wattlint.track`` to the module: a callable module keeps both working.
class _CallableModule(_types.ModuleType):
    def __call__(self, model=None, **kwargs) -> Tracker:
        return Tracker(model, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
