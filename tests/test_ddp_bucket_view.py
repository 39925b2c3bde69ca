"""--ddp-bucket-view (config key ddp-bucket-view): DistributedDataParallel built with gradient_as_bucket_view=True
(Lightning DDPStrategy(gradient_as_bucket_view=True), accelerate DistributedDataParallelKwargs(...)) keeps no bucket
copy of the gradients (pytorch/pytorch PR #41954), so the ddp_buckets term of the memory model is dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "examples" / "torch_models.py") + ":tiny_gpt"
ARGS = ("--gpu", "h100", "--gpus", "2", "--steps", "10", "--format", "json")


def _estimate(run_cli, *extra) -> dict:
    code, out, err = run_cli(MODEL, *ARGS, *extra)
    assert code == 0, err
    return json.loads(out)


def _params() -> int:
    import importlib.util

    spec = importlib.util.spec_from_file_location("torch_models", ROOT / "examples" / "torch_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return sum(p.numel() for p in mod.tiny_gpt()[0].parameters() if p.requires_grad)  # torch's own count


def test_the_flag_drops_the_bucket_copy_of_the_gradients(run_cli):
    copy, view = _estimate(run_cli), _estimate(run_cli, "--ddp-bucket-view")
    expect = 4 * _params()  # fp32 gradients (default precision): 4 bytes per trainable parameter
    assert copy["memory"]["breakdown"]["ddp_buckets"] == expect
    assert "ddp_buckets" not in view["memory"]["breakdown"]
    assert copy["memory"]["peak_bytes_per_gpu"] - view["memory"]["peak_bytes_per_gpu"] == expect
    assert copy["plan"]["ddp_bucket_view"] is False and view["plan"]["ddp_bucket_view"] is True
    assert any("--ddp-bucket-view" in a and "gradient_as_bucket_view=True" in a for a in copy["assumptions"])
    said = [a for a in view["assumptions"] if "DDP gradient buckets" in a]
    assert len(said) == 1 and "--ddp-bucket-view" in said[0] and "bucket views" in said[0]


def test_the_config_key_at_the_top_level_does_the_same(tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.wattlint]\nddp-bucket-view = true\n")
    view = _estimate(run_cli)
    flag = _estimate(run_cli, "--ddp-bucket-view")
    assert view["plan"]["ddp_bucket_view"] is True
    assert "ddp_buckets" not in view["memory"]["breakdown"]
    assert view["memory"]["peak_bytes_per_gpu"] == flag["memory"]["peak_bytes_per_gpu"]
    # --no-ddp-bucket-view turns off what the file turns on
    off = _estimate(run_cli, "--no-ddp-bucket-view")
    assert off["plan"]["ddp_bucket_view"] is False
    assert off["memory"]["breakdown"]["ddp_buckets"] == 4 * _params()


def test_the_config_key_in_a_models_table_reaches_check(tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    peaks = {}
    for on in (False, True):
        (tmp_path / "pyproject.toml").write_text(
            f'[tool.wattlint]\ngpu = "h100"\ngpus = 2\nsteps = 10\n\n[[tool.wattlint.models]]\nname = "g"\n'
            f'source = "{MODEL}"\nddp-bucket-view = {str(on).lower()}\n')
        code, out, err = run_cli("check", "--no-cache", "--format", "json")
        assert code == 0, err
        peaks[on] = json.loads(out)["models"][0]["memory"]["peak_bytes_per_gpu"]
    assert peaks[False] - peaks[True] == 4 * _params()
    assert peaks[True] == _estimate(run_cli, "--ddp-bucket-view")["memory"]["peak_bytes_per_gpu"]


@pytest.mark.parametrize("table", ["[tool.wattlint]\n", f'[[tool.wattlint.models]]\nsource = "{MODEL}"\n'])
def test_an_invalid_config_value_exits_2_with_one_line(tmp_path, monkeypatch, run_cli, table):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(table + 'ddp-bucket-view = "yes"\n')
    code, out, err = run_cli("check", "--no-cache", "--format", "json")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "ddp-bucket-view" in lines[0] and "expected true or false" in lines[0]
