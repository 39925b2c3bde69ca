"""PyTorch Lightning callback (``lightning`` or the older ``pytorch_lightning`` package):

    from wattlint.tracking.lightning import WattlintCallback
    trainer = L.Trainer(max_epochs=10, callbacks=[WattlintCallback(gpu="a100-sxm4-80gb")])

The plan defaults to ``trainer.estimated_stepping_batches`` optimizer steps (less ``global_step`` for a run resumed
from a checkpoint); a step is counted when ``trainer.global_step`` advances (so gradient accumulation counts optimizer steps, and a stop never falls inside an
accumulation); epoch boundaries from ``on_train_epoch_start``; the data wait is the time from the previous batch's
end (or the end of validation) to ``on_train_batch_start``. The tracker starts at the first batch, whose inputs
(the first element of a tuple batch, or a dict batch) are the example for the static estimate unless ``example=``,
``inputs=`` or ``source=`` is given. A budget stop sets ``trainer.should_stop``.
"""

from __future__ import annotations

try:
    import lightning.pytorch as _pl
except ImportError:  # pragma: no cover - depends on the environment
    try:
        import pytorch_lightning as _pl  # type: ignore[no-redef]
    except ImportError as e:
        raise ImportError("wattlint.tracking.lightning needs lightning ('pip install lightning')") from e

from ._callback import CallbackCore, precision_of


def _example(batch):
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    if isinstance(batch, torch.Tensor) or isinstance(batch, dict):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    return None


class WattlintCallback(_pl.Callback):
    def __init__(self, **track_kwargs):
        super().__init__()
        self.core = CallbackCore(track_kwargs)
        self._last_global = 0

    @property
    def tracker(self):
        return self.core.tracker

    def on_train_epoch_start(self, trainer, pl_module):
        if self.core.active:
            self.core.epoch_begin()
        else:
            self.core._epochs += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not self.core.active:  # the first batch, or the first of another fit with this callback (a new run)
            kw = self.core.kwargs
            steps = getattr(trainer, "estimated_stepping_batches", None)
            try:
                steps = int(steps) if steps is not None and steps != float("inf") else None
            except (TypeError, ValueError, OverflowError):
                steps = None
            ga = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
            world = int(getattr(trainer, "world_size", 1) or 1)
            # a resumed run (ckpt_path) starts at global_step: its plan is the steps still to run, and its first
            # batch is batch_idx of its epoch (its first epoch boundary comes after the rest of that epoch)
            done = max(0, int(trainer.global_step))
            if steps is not None:
                steps = steps - done if steps > done else None
            defaults = {"steps": steps, "grad_accum": ga if ga > 1 else None, "gpus": world if world > 1 else None,
                        "precision": precision_of(getattr(trainer, "precision", None))}
            if done:
                defaults.update(start_step=done, start_in_epoch=int(batch_idx) // ga)
            if not any(kw.get(k) is not None for k in ("example", "inputs", "source")):
                ex = _example(batch)
                if ex is not None:
                    defaults["example"] = ex
                    lead = ex if not isinstance(ex, dict) else next(iter(ex.values()), None)
                    if getattr(lead, "shape", None) is not None and len(lead.shape) > 0:
                        defaults["batch_size"] = int(lead.shape[0]) * ga * world
            self._last_global = int(trainer.global_step)
            self.core.start(pl_module, defaults)
            self.core._epochs = 1  # this batch's epoch has begun (on_train_epoch_start ran before the run did)
            return
        self.core.step_begin()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        g = int(trainer.global_step)
        if g != self._last_global:  # an optimizer step happened in this batch
            self._last_global = g
            if self.core.step_end():
                trainer.should_stop = True
        else:
            self.core.mark()

    def on_validation_end(self, trainer, pl_module):
        if self.core.active:
            self.core.mark()

    def on_train_end(self, trainer, pl_module):
        self.core.end()

    def on_exception(self, trainer, pl_module, exception):
        name = type(exception).__name__
        self.core.end("interrupted" if isinstance(exception, KeyboardInterrupt) else f"error: {name}: {exception}")
