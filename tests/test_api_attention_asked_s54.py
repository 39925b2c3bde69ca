"""An estimate on a traced gpt-oss graph with attention='sdpa' (what it was traced with: its attention sinks have no
SDPA path in transformers, so eager ran) is taken, not refused with advice to trace again (review s54: the frontend
records the attention that ran and the one asked; tracing again with sdpa gives the same eager graph)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import wattlint  # noqa: E402

TINY = {"model_type": "gpt_oss", "architectures": ["GptOssForCausalLM"], "hidden_size": 64,
        "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "num_local_experts": 4, "num_experts_per_tok": 2, "vocab_size": 256, "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"], "max_position_embeddings": 512}


def test_estimate_on_a_gpt_oss_graph_takes_the_attention_it_was_traced_with(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    g = wattlint.analyze(str(path), seq_len=32, batch_size=1)
    assert (g.extra["attention"], g.extra.get("attention_asked")) == ("eager", "sdpa")
    a = wattlint.estimate(g, gpu="h100", steps=10, attention="sdpa", lint=False)
    b = wattlint.estimate(g, gpu="h100", steps=10, lint=False)
    assert a.per_step.time_s == b.per_step.time_s  # the same graph, costed once as traced
    # eager is what ran: taken too
    assert wattlint.estimate(g, gpu="h100", steps=10, attention="eager", lint=False).per_step.time_s == b.per_step.time_s
