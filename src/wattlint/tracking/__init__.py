"""Measure real training runs: STEP projection, budget guard, run records, framework callbacks.

    with wattlint.track(model, example=batch, steps=10_000, gpu="a100-sxm4-80gb") as t:
        for batch in t.wrap(loader):
            ...
            optimizer.step()
            t.step()

Callbacks: ``wattlint.tracking.lightning.WattlintCallback`` (PyTorch Lightning) and
``wattlint.tracking.hf.WattlintCallback`` (Hugging Face ``Trainer``). Records: :mod:`wattlint.tracking.record`;
run-level calibration from records: :mod:`wattlint.tracking.fit`; other tools' logs: :mod:`wattlint.tracking.interop`.

Importing this package does not import torch or pynvml.
"""

from __future__ import annotations

from .project import Settings  # noqa: F401
from .tracker import BudgetExceeded, BudgetWarning, Tracker  # noqa: F401


def track(model=None, **kwargs) -> Tracker:
    """A :class:`Tracker` (use it as a context manager); see its docstring for the options. Also
    ``wattlint.track``."""
    return Tracker(model, **kwargs)
