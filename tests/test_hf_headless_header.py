"""A Hugging Face config without 'architectures' is built as its base model (no LM head, no loss): the header says
so where the eye lands, not only in the assumptions (review 2026-12-07: LlamaConfig().save_pretrained() writes no
architectures, and a 7B plan priced 6.61 B parameters without a word in the headline)."""

import json

import pytest

pytest.importorskip("transformers")

import wattlint  # noqa: E402
from wattlint.report import markdown, text  # noqa: E402

LLAMA = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=4, vocab_size=100, max_position_embeddings=128)


def _est(tmp_path, **over):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({**LLAMA, **over}))
    return wattlint.estimate(str(p), gpu="a100", steps=1, batch_size=1, seq_len=32, lint=False)


def test_headless_config_says_so_in_the_header(tmp_path):
    e = _est(tmp_path)
    head = "LlamaModel: the base model, no task head or loss costed"
    assert head in text.render([e], width=200) and head in markdown.render_one(e)


def test_a_config_naming_its_architecture_says_nothing(tmp_path):
    e = _est(tmp_path, architectures=["LlamaForCausalLM"])
    assert "no task head" not in text.render([e], width=200)


def test_headless_config_says_so_in_the_compare_header(tmp_path):
    from wattlint.api import estimate_many
    from wattlint.report import html

    p = tmp_path / "config.json"
    p.write_text(json.dumps(LLAMA))
    ests = estimate_many(str(p), ["a100", "h100"], steps=1, batch_size=1, seq_len=32, lint=False)
    head = "LlamaModel: the base model, no task head or loss costed"
    assert head in text.render(ests, width=200) and head in markdown.render_compare(ests)
    assert head in html.render(ests)
