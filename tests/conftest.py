import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# Subprocesses the tests start (`python -m wattlint ...`) import this checkout's code whatever their working
# directory: this src/ first on PYTHONPATH, relative entries made absolute (PYTHONPATH=src would otherwise point
# elsewhere once a test runs the CLI in a temporary folder, silently testing an installed copy).
_SRC = str(ROOT / "src")
_rest = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
os.environ["PYTHONPATH"] = os.pathsep.join([_SRC] + [p for p in _rest if p != _SRC])

# The tests see no developer or runner environment that changes what wattlint prints (tests that need one set it):
# - $COLUMNS fits the text report's tables (pytest-xdist workers and some CI terminals set COLUMNS=80; the tests
#   expect no width: the layer bars, the full column set);
# - the user's fitted energy models (platformdirs' user data dir, under $XDG_DATA_HOME, and $WATTLINT_MODELS_DIR)
#   come before the shipped ones: a `wattlint fit` run on this machine changed every estimate's energy model.
# - $WATTLINT_CACHE_DIR / _DEBUG / _QUIET and $NO_COLOR change the check cache, tracebacks, the live line, colour.
for _name in ("COLUMNS", "WATTLINT_MODELS_DIR", "WATTLINT_CACHE_DIR", "WATTLINT_DEBUG", "WATTLINT_QUIET",
              "NO_COLOR"):
    os.environ.pop(_name, None)
_XDG = tempfile.mkdtemp(prefix="wattlint-tests-xdg-")
atexit.register(shutil.rmtree, _XDG, ignore_errors=True)
os.environ["XDG_DATA_HOME"] = _XDG


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process; returns (exit_code, stdout, stderr)."""
    from wattlint.cli import main

    def _run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.fixture(scope="module")
def gpt_config(tmp_path_factory):
    """config.json of the small GPT-2-shaped decoder of the parallelism tests (tests/_parallel_fixtures.py)."""
    from _parallel_fixtures import write_gpt_config

    return write_gpt_config(tmp_path_factory.mktemp("cfg"))


def trace_small_convnet(layers, precision: str, channels_last: bool):
    """Trace ``layers`` (torch modules) on meta tensors with an input [4, 8, 16, 16], optionally channels-last
    (module and input), as the layout tests need; returns the CostGraph."""
    import torch

    from wattlint.frontends.torch import trace
    from wattlint.types import TensorSpec

    m = torch.nn.Sequential(*layers).to("meta")
    x = torch.empty(4, 8, 16, 16, device="meta")
    if channels_last:
        m, x = m.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    return trace(m, (x,), precision=precision, micro_batch=4, inputs=(TensorSpec("x", "float32", (4, 8, 16, 16)),),
                 source="t")
