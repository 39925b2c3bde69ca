"""A JSON number of more digits than Python converts (4,300: sys.get_int_max_str_digits) raises a plain ValueError,
not a JSONDecodeError: in the user's files it is bad input (exit 2, one line), never an internal error (fuzz review,
2026-12-07: a config.json with a 5,001-digit vocab_size exited 3)."""

import pytest

from wattlint.calibrate.validate import ValidationError, read_json_file
from wattlint.tracking.record import read_record
from wattlint.types import InputError

HUGE = "1" + "0" * 5000


def test_run_record_with_a_huge_integer_before_its_last_line_is_damaged_input(tmp_path):
    p = tmp_path / "run.jsonl"
    p.write_text('{"type": "header", "schema": "wattlint.run/1"}\n{"type": "step", "step": ' + HUGE + '}\n'
                 '{"type": "step", "step": 2}\n')
    with pytest.raises(InputError, match="not a JSON line"):
        read_record(p)


def test_measurements_file_with_a_huge_integer_is_not_valid_json(tmp_path):
    p = tmp_path / "m.json"
    p.write_text('{"schema": "x", "n": ' + HUGE + '}')
    with pytest.raises(ValidationError, match="not valid JSON"):
        read_json_file(p, "measurements file")


@pytest.mark.parametrize("spec", ["models.py:build:extra", "pkg.mod:outer:inner"])
def test_a_source_with_two_colons_is_named_as_malformed(spec):
    """'models.py:good:extra' was looked up as a module named 'models.py:good' ("no module named ...")."""
    from wattlint.frontends.source import load_attr

    with pytest.raises(InputError, match="one ':' between the file or module and the attribute"):
        load_attr(spec)


def test_hf_config_with_a_huge_integer_is_bad_input(tmp_path):
    """The fuzz review's case: a 5,001-digit vocab_size exited 3 ('internal error: ValueError: Exceeds the limit')."""
    from wattlint.frontends.hf import load_config

    p = tmp_path / "config.json"
    p.write_text('{"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": ' + HUGE + '}')
    with pytest.raises(InputError, match="cannot read"):
        load_config(p)


def test_an_exception_without_a_message_is_named_without_a_dangling_colon():
    from wattlint.frontends import exception_line

    assert exception_line(MemoryError()) == "MemoryError (no message)"
    assert exception_line(ValueError("bad shape\nsecond line")) == "ValueError: bad shape"


def test_a_number_option_past_the_float_range_is_out_of_range():
    """A TOML budget of 1 followed by 400 zeros exited 3 (OverflowError: int too large to convert to float)."""
    from wattlint.options import number

    with pytest.raises(ValueError, match="expected a number in"):
        number()(10 ** 400)
