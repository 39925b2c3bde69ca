"""MFU's 6 N leaves out trainable parameters the traced step never runs (a tower its inputs do not reach): review
s52's sweep found FLAVA at MFU 1.82 beside HFU 0.28, its image / multimodal encoders (no gradient) counted as frozen
parameters at 4 FLOPs per token (6 N - 2 N_frozen)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

MODEL = '''
import torch
import torch.nn as nn


class TwoTower(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(1000, 64)
        self.lin = nn.Linear(64, 64)
        self.head = nn.Linear(64, 1000)
        self.unused = nn.Linear(512, 512)  # a tower the step's inputs never run

    def forward(self, input_ids):
        return self.head(torch.relu(self.lin(self.emb(input_ids))))


def build():
    return TwoTower(), (torch.zeros(2, 128, dtype=torch.long),)
'''


def test_a_tower_the_step_never_runs_is_not_in_6n(run_cli, tmp_path):
    (tmp_path / "m.py").write_text(MODEL)
    code, out, err = run_cli(str(tmp_path / "m.py") + ":build", "--gpu", "a100", "--steps", "10", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"]["params"] == 64_000 + 4_160 + 65_000 + 262_656  # by hand: emb, lin, head, unused (+ biases)
    # by hand: N run = 64,000 + 4,160 + 65,000 = 133,160 (the untied input embedding counted, as the convention
    # says); no attention; the unused 512 x 512 + 512 = 262,656 count 0 (were 6 N - 2 x 262,656 = 1,849,584)
    assert doc["utilization"]["model_flops_per_token"] == pytest.approx(6 * 133_160, rel=1e-6)
