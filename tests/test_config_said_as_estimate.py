"""The main command names a setting from [tool.wattlint] as the file writes it, in its input errors and notes, not
as a command-line flag the user did not type (stop 48 list: a layout error quoted '--gpus 3' for gpus = 3 in the
file)."""

import shutil
from pathlib import Path

ONNX = Path(__file__).resolve().parents[1] / "examples" / "gpt2-tiny.onnx"


def test_layout_error_names_the_files_setting(run_cli, tmp_path, monkeypatch):
    shutil.copy(ONNX, tmp_path / "m.onnx")
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\ngpu = "a100-sxm4-80gb"\ngpus = 3\n')
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("m.onnx", "--steps", "10", "--seq-len", "256", "--batch-size", "6",
                             "--tensor-parallel", "2")
    assert code == 2 and err.count("\n") == 1, err
    assert "does not divide gpus = 3 in [tool.wattlint] of pyproject.toml" in err, err
    assert "--gpus" not in err and "--tensor-parallel 2" in err  # the flag the user did type stays a flag
