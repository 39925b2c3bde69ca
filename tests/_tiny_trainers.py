"""A tiny Hugging Face Trainer the tracking callback tests run for real on the CPU."""

from __future__ import annotations

import pytest


def tiny_hf_trainer(tmp_path, callbacks, samples: int, **args):
    """A 1-layer GPT-2 (vocabulary 64, 16 tokens) on ``samples`` random sequences, batch 2 per device, CPU, with
    ``args`` for transformers.TrainingArguments on top."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    cfg = transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    data = [{"input_ids": torch.randint(0, 64, (16,)), "labels": torch.randint(0, 64, (16,))} for _ in range(samples)]
    base = dict(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=2, report_to=[], use_cpu=True,
                logging_steps=1000, disable_tqdm=True, dataloader_num_workers=0)
    args = transformers.TrainingArguments(**{**base, **args})
    return transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks)
