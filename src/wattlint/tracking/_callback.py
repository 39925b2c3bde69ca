"""Framework-independent part of the callbacks: when to start, step, mark epochs and data waits, stop."""

from __future__ import annotations

import time
from typing import Any

from .tracker import Tracker

WORK_KEYS = ("steps", "epochs", "tokens")
PREVIOUS_FIT_OPEN = "interrupted (the fit never reached the end of training: an exception, then a new fit)"


class _TrainerTracker(Tracker):
    """The tracker of a callback: its plan is partly the trainer's (Tracker._trainer_plan)."""

    _trainer_plan = True


class CallbackCore:
    def __init__(self, track_kwargs: dict[str, Any]):
        if "raise_on_stop" in track_kwargs:
            raise TypeError("raise_on_stop is set by the callback (the trainer is asked to stop instead)")
        # the options are checked here, by the rules of track(): a wrong one (precision="fp99", an unknown keyword,
        # steps= with epochs=) was refused only when training started, from deep inside trainer.fit (review). The
        # trainer's own plan (steps, batch, gradient accumulation) is checked with them when the run starts.
        _TrainerTracker(None, raise_on_stop=False, **track_kwargs)
        self.kwargs = dict(track_kwargs)
        self.tracker: Tracker | None = None
        self._mark: float | None = None
        self._epochs = 0

    def start(self, model, defaults: dict[str, Any]) -> Tracker:
        kw = dict(self.kwargs)
        for k, v in defaults.items():
            if v is None:
                continue
            if k == "steps" and any(kw.get(w) is not None for w in WORK_KEYS):
                continue  # the user's plan wins over the trainer's
            kw.setdefault(k, v)
        if self.tracker is not None and not self.tracker.closed:
            # a previous fit's run still open: it never reached the trainer's end of training (an exception the
            # trainer has no hook for, caught by the user's code, then a new fit), so it did not complete
            self.end(PREVIOUS_FIT_OPEN)
        self.tracker = _TrainerTracker(model, raise_on_stop=False, **kw)
        self.tracker.start()
        self._epochs, self._mark = 0, None  # a callback reused for another fit starts a new run (and record)
        return self.tracker

    @property
    def active(self) -> bool:
        """A run is being tracked (started and not closed: a finished fit's tracker is closed)."""
        return self.tracker is not None and not self.tracker.closed

    def clock(self) -> float:
        """The tracker's own step clock (``clock="process"`` is a name the Tracker resolves: the callbacks called
        the string, a TypeError in the user's training loop)."""
        return (self.tracker.clock if self.tracker is not None else time.perf_counter)()

    def mark(self) -> None:
        """End of the last step's own work (step end, logging, evaluation, checkpoint)."""
        self._mark = self.clock()

    def step_begin(self) -> None:
        if self.active and self._mark is not None:
            self.tracker.data_wait(self.clock() - self._mark)
        self._mark = None

    def step_end(self) -> bool:
        if not self.active:
            return False
        stop = self.tracker.step()
        self.mark()
        return stop

    def epoch_begin(self) -> None:
        if self.active and self._epochs > 0:
            self.tracker.epoch()
        self._epochs += 1

    def end(self, status: str | None = None) -> None:
        if self.tracker is not None and not self.tracker.closed:
            self.tracker.close(status or ("stopped: budget" if self.tracker.should_stop else "completed"))


def precision_of(text: str | None) -> str | None:
    t = str(text or "").lower()
    if "bf16" in t:
        return "bf16"
    if t.startswith("16") or "fp16" in t:
        return "fp16"
    return None
