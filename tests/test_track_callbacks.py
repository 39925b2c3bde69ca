"""The Hugging Face Trainer and PyTorch Lightning callbacks, run for real on the CPU with tiny models: optimizer
steps counted (gradient accumulation included), the trainer's plan picked up, a budget stop honoured by the
trainer at a step boundary."""

import warnings

import pytest

from _tiny_trainers import tiny_hf_trainer

from wattlint.tracking import BudgetWarning
from wattlint.tracking.record import read_record

torch = pytest.importorskip("torch")


def _hf_trainer(tmp_path, callback, max_steps=6, accum=2):
    return tiny_hf_trainer(tmp_path, [callback], 64, max_steps=max_steps, gradient_accumulation_steps=accum,
                           save_strategy="no")


def test_hf_trainer_callback_counts_optimizer_steps(tmp_path):
    from wattlint.tracking.hf import WattlintCallback

    cb = WattlintCallback(out=tmp_path / "runs", display="quiet", window_s=0.01, static=False, seq_len=16)
    _hf_trainer(tmp_path, cb).train()
    rec = read_record(cb.tracker.path)
    assert rec.summary["status"] == "completed"
    assert rec.summary["steps"] == 6  # optimizer steps, not the 12 micro-batches
    req = rec.header["plan"]["request"]
    assert req["steps"] == 6 and req["batch_size"] == 4 and req["grad_accum"] == 2 and req["optimizer"] == "adamw"
    assert rec.header["model"]["name"] == "GPT2LMHeadModel"
    assert rec.summary["analysis"]["input"] is not None  # the wait for each batch is timed


def test_hf_trainer_crash_then_a_new_fit_is_not_recorded_as_completed(tmp_path):
    """Review: a callback raised at step 5 inside trainer.train() (the Trainer has no exception hook), the user
    caught it and called train() again: the first record's summary read 'completed'."""
    transformers = pytest.importorskip("transformers")

    from wattlint.tracking._callback import PREVIOUS_FIT_OPEN
    from wattlint.tracking.hf import WattlintCallback

    class Boom(transformers.TrainerCallback):
        armed = True

        def on_step_end(self, args, state, control, **kwargs):
            if self.armed and state.global_step == 3:
                Boom.armed = False
                raise RuntimeError("boom")

    cb = WattlintCallback(out=tmp_path / "runs", display="quiet", window_s=0.01, static=False, seq_len=16)
    trainer = _hf_trainer(tmp_path, cb, accum=1)
    trainer.add_callback(Boom())
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    first = cb.tracker.path
    trainer.train()
    assert read_record(first).summary["status"] == PREVIOUS_FIT_OPEN
    assert read_record(cb.tracker.path).summary["status"] == "completed"


def test_hf_trainer_budget_stop(tmp_path):
    from wattlint.tracking.hf import WattlintCallback

    cb = WattlintCallback(out=tmp_path / "runs", display="quiet", window_s=0.001, static=False, max_kwh=1e-12,
                          on_budget="stop")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BudgetWarning)
        _hf_trainer(tmp_path, cb, max_steps=50, accum=1).train()
    rec = read_record(cb.tracker.path)
    assert rec.summary["status"] == "stopped: budget"
    # attributed to the first frame outside wattlint (the Trainer calling the callback), never a wattlint file
    hits = [w.filename for w in caught if issubclass(w.category, BudgetWarning)]
    import os
    import wattlint

    package = os.path.dirname(os.path.abspath(wattlint.__file__)) + os.sep
    assert hits and not any(os.path.abspath(f).startswith(package) for f in hits), hits
    assert rec.summary["steps"] < 50
    assert [e["action"] for e in rec.events if e["kind"] == "budget"] == ["stop"]


def test_hf_trainer_callback_with_the_process_clock(tmp_path):
    """Review: clock="process" (a name the Tracker resolves) was called as a function by the callbacks: a TypeError
    in the training loop and a record left 'interrupted'."""
    from wattlint.tracking.hf import WattlintCallback

    cb = WattlintCallback(out=tmp_path / "runs", display="quiet", window_s=0.01, static=False, clock="process")
    _hf_trainer(tmp_path, cb, max_steps=4, accum=1).train()
    rec = read_record(cb.tracker.path)
    assert rec.summary["status"] == "completed" and rec.summary["steps"] == 4
    assert rec.header["settings"]["clock"] == "process"


def _lightning_tiny(L):
    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(8, 2)

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Tiny()


def test_lightning_callback_reused_for_a_second_fit_and_the_process_clock(tmp_path):
    """Review: the same callback on a second trainer.fit stepped the closed tracker ('tracking stopped (OSError:
    Bad file descriptor)') and made no second record; clock="process" crashed the callback."""
    L = pytest.importorskip("lightning.pytorch")
    from wattlint.tracking.lightning import WattlintCallback

    torch.manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(24, 8), torch.randint(0, 2, (24,)))
    loader = torch.utils.data.DataLoader(ds, batch_size=4)  # 6 batches per epoch
    cb = WattlintCallback(out=tmp_path / "runs", display="quiet", window_s=0.01, static=False, clock="process")
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # 'tracking stopped' would fail the test
        for _ in range(2):
            trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, callbacks=[cb])
            trainer.fit(_lightning_tiny(L), loader)
            paths.append(cb.tracker.path)
    assert paths[0] != paths[1]
    for p in paths:
        rec = read_record(p)
        assert rec.summary["status"] == "completed" and rec.summary["steps"] == 12  # 2 epochs x 6
        assert rec.summary["analysis"]["boundaries"] == 1


def test_lightning_callback_with_gradient_accumulation(tmp_path):
    L = pytest.importorskip("lightning.pytorch")
    from wattlint.tracking.lightning import WattlintCallback

    torch.manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(40, 8), torch.randint(0, 2, (40,)))
    loader = torch.utils.data.DataLoader(ds, batch_size=4)  # 10 batches per epoch
    cb = WattlintCallback(out=tmp_path / "runs", display="quiet", window_s=0.01, static=False)
    trainer = L.Trainer(max_epochs=2, accumulate_grad_batches=2, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[cb])
    trainer.fit(_lightning_tiny(L), loader)
    rec = read_record(cb.tracker.path)
    assert rec.summary["status"] == "completed"
    assert rec.summary["steps"] == 10  # 2 epochs x 10 batches / accumulate 2
    req = rec.header["plan"]["request"]
    assert req["steps"] == 10 and req["grad_accum"] == 2 and req["batch_size"] == 8
    assert rec.summary["analysis"]["boundaries"] == 1  # the second epoch
