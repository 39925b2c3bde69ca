"""Hugging Face ``Trainer`` callback:

    from wattlint.tracking.hf import WattlintCallback
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[WattlintCallback(seq_len=512)])

The plan defaults to the trainer's (``state.max_steps`` optimizer steps less those a resumed run already did,
global batch = per-device batch x gradient accumulation x world size, bf16/fp16 from the arguments); any tracker
option given here wins. A step is
one optimizer step (``on_step_end``); the data wait is the time from the end of the previous step's work (step
end, logging, evaluation, checkpoint) to ``on_step_begin``. A budget stop sets ``control.should_training_stop``.
For the static estimate of a Hugging Face model pass ``seq_len=`` (inputs ``input_ids=int64[micro-batch,
seq_len]``), or ``example=`` / ``inputs=`` / ``source=``.
"""

from __future__ import annotations

try:
    from transformers import TrainerCallback
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("wattlint.tracking.hf needs transformers ('pip install transformers')") from e

from ..types import TensorSpec
from ._callback import CallbackCore, precision_of


def _steps_into_epoch(args, done: int, loader, ga: int) -> int | None:
    """Optimizer steps of the epoch a resumed Trainer starts in: the Trainer skips the batches of the steps done in
    it (``global_step % steps per epoch``), unless ``ignore_data_skip``; None when the loader has no length."""
    if getattr(args, "ignore_data_skip", False):
        return 0
    try:
        n = len(loader)
    except TypeError:  # no loader, or an iterable dataset without a length
        return None
    per_epoch = max(n // ga + int(n % ga > 0), 1)  # the Trainer's num_update_steps_per_epoch
    return done % per_epoch


class WattlintCallback(TrainerCallback):
    def __init__(self, **track_kwargs):
        self.core = CallbackCore(track_kwargs)

    @property
    def tracker(self):
        return self.core.tracker

    def on_train_begin(self, args, state, control, model=None, optimizer=None, train_dataloader=None, **kwargs):
        world = max(1, int(getattr(args, "world_size", 1) or 1))
        ga = int(getattr(args, "gradient_accumulation_steps", 1) or 1)
        micro = int(getattr(args, "per_device_train_batch_size", 1) or 1)
        prec = "bf16" if getattr(args, "bf16", False) else "fp16" if getattr(args, "fp16", False) else None
        optim = str(getattr(getattr(args, "optim", ""), "value", getattr(args, "optim", "")) or "").lower()
        opt = "adamw" if "adamw" in optim else "adam" if "adam" in optim else "sgd" if "sgd" in optim else None
        # a resumed run (resume_from_checkpoint) starts at state.global_step: its plan is the steps still to run
        done = max(0, int(getattr(state, "global_step", 0) or 0))
        todo = (state.max_steps or 0) - done
        defaults = {"steps": todo if todo > 0 else None, "batch_size": micro * ga * world, "grad_accum": ga,
                    "gpus": world if world > 1 else None, "precision": precision_of(prec), "optimizer": opt}
        if done:
            defaults.update(start_step=done, start_in_epoch=_steps_into_epoch(args, done, train_dataloader, ga))
        kw = self.core.kwargs
        seq = kw.get("seq_len")
        if seq and not any(kw.get(k) is not None for k in ("example", "inputs", "source")) and \
                getattr(model, "config", None) is not None:
            defaults["inputs"] = {"input_ids": TensorSpec("input_ids", "int64", (micro, int(seq)))}
        self.core.start(model, defaults)
        self.core.mark()

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.core.epoch_begin()

    def on_step_begin(self, args, state, control, **kwargs):
        self.core.step_begin()

    def on_step_end(self, args, state, control, **kwargs):
        if self.core.step_end():
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, **kwargs):
        self.core.mark()

    def on_evaluate(self, args, state, control, **kwargs):
        self.core.mark()

    def on_save(self, args, state, control, **kwargs):
        self.core.mark()

    def on_train_end(self, args, state, control, **kwargs):
        self.core.end()
