"""A pipeline's fullest stage is chosen with each stage's optimizer-step temporaries (torch's foreach Adam allocates
one over its parameters after backward freed the activations): a stage with more parameters peaks at its step even
where another stage's activations and loss transient are larger. Stop 51 review: the stage was chosen on state +
activations alone, then the chosen stage's temporaries added (~1.3 % low on a GPT-2 PP 4 at micro-batch 1)."""

from __future__ import annotations

from types import SimpleNamespace

from wattlint.memory import FRAGMENTATION, _split_activation_bytes

MIB = 1 << 20
GRAPH = SimpleNamespace(extra={"loss_logits_elems": 0}, micro_batch=1)
PLAN = SimpleNamespace(recompute="none", micro_batch_size=1, activation_checkpointing=False)
SPLIT = {"none": {"pp": 2, "stages": [0.5, 0.5], "first": 0.5, "last": 0.5, "loss": 1.0, "how": "two halves"}}
ACT, TRANSIENT = 100 * MIB, 60 * MIB  # each stage saves 50 MiB; the last also holds a 60 MiB loss transient
STATE = [1000 * MIB, 970 * MIB]       # the first stage holds 3 % more parameters (its embedding)
TMP = [200 * MIB, 194 * MIB]          # foreach temporaries in proportion to each stage's parameters


def _stage(step_tmp):
    return _split_activation_bytes(ACT, GRAPH, PLAN, SPLIT, [], TRANSIENT, STATE, step_tmp)[3]


def test_the_stage_that_peaks_at_its_optimizer_step_is_counted():
    f = 1 + FRAGMENTATION  # 1.12
    # by hand, activations alone: first 1000 + 50 x 1.12 = 1056; last 970 + (50 + 60) x 1.12 = 1093.2 -> the last
    assert 970 + 110 * f > 1000 + 50 * f
    assert _stage(None) == 1
    # with the step: first 1000 + max(50, 200) x 1.12 = 1224; last 970 + max(110, 194) x 1.12 = 1187.3 -> the first
    assert 1000 + 200 * f > 970 + 194 * f
    assert _stage(TMP) == 0
