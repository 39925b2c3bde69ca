"""Optional extras: one place that says which ``pip install 'wattlint[...]'`` a missing package needs.

The light install (``pip install wattlint``) reads ONNX files only. PyTorch sources need the ``torch`` extra,
Hugging Face ``config.json`` files the ``hf`` extra (torch + transformers). Every import site of torch or
transformers on a user-facing path goes through :func:`require` (or maps an import failure with
:func:`missing_extra_error`), so a missing extra is one line and exit 2, never an internal error.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..types import InputError

# top-level package -> the extra that installs it
EXTRAS = {"torch": "torch", "transformers": "hf", "lightgbm": "", "pynvml": "nvml"}


def install_hint(package: str, extra: str | None = None) -> str:
    extra = extra or EXTRAS.get(package.split(".")[0])
    if extra:
        return f"pip install 'wattlint[{extra}]'"
    return f"pip install {package.split('.')[0]}"


def missing_extra_error(e: ImportError, what: str, extra: str | None = None) -> InputError | None:
    """An :class:`InputError` naming the extra when ``e`` is a missing torch / transformers, else None.
    ``extra`` overrides the package's own extra (a Hugging Face config missing torch needs ``hf``, not ``torch``)."""
    name = (getattr(e, "name", None) or "").split(".")[0]
    if name not in EXTRAS or not EXTRAS[name]:
        return None
    cpu = ((" (tracing runs on the meta device: torch's CPU build is enough, e.g. add --extra-index-url "
            "https://download.pytorch.org/whl/cpu instead of the multi-GB CUDA build)")
           if (extra or EXTRAS[name]) in ("torch", "hf") else "")
    return InputError(f"{what}: the {name!r} package is not installed; {install_hint(name, extra)}{cpu}")


def require(module: str, what: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` (e.g. ``"torch"``, ``"wattlint.frontends.torch"``) or raise an InputError naming the extra;
    ``what`` says what needed it (``"PyTorch model sources"``)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        err = missing_extra_error(e, what, extra)
        if err is None:
            raise
        raise err from None
