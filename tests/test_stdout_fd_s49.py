"""A model whose code writes to file descriptor 1 directly (os.write, a C extension, a subprocess) must not break
the --format json report on stdout: that output goes to stderr, as its print() does (fuzz review, 2026-12-07)."""

import json
import subprocess
import sys
import textwrap


def test_raw_writes_to_descriptor_1_go_to_stderr(tmp_path):
    (tmp_path / "noisy.py").write_text(textwrap.dedent("""
        import os
        import torch


        class Noisy(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(16, 4)

            def forward(self, x):
                os.write(1, b"raw noise on fd 1\\n")
                print("python noise")
                return self.fc(x)
    """))
    r = subprocess.run([sys.executable, "-m", "wattlint", "noisy.py:Noisy", "--input", "x=float32[8,16]",
                        "--steps", "10", "--gpu", "a100", "--format", "json"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # the whole of stdout is the report
    assert doc["plan"]["steps"] == 10
    assert "raw noise on fd 1" in r.stderr and "python noise" in r.stderr
    assert "noise" not in r.stdout
