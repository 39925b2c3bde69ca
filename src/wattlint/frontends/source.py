"""Model source -> frontend -> CostGraph.

Sources: an ``nn.Module`` object; ``*.onnx`` (ONNX frontend, no torch import); ``*.json`` (a Hugging Face
``config.json``); ``package.module:attr`` or ``path/to/file.py:attr`` where attr is an ``nn.Module`` (instance or
class), a zero-argument factory returning a module, or a factory returning ``(module, example_inputs)``.

``batch_size`` is the GLOBAL batch; the traced micro-batch is ``batch_size // (gpus * grad_accum)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from typing import Any, Mapping

from ..options import POSITIONAL_INPUT
from ..types import CostGraph, InputError, TensorSpec
from .extras import missing_extra_error, require
from .inputs import parse_input_spec, parse_input_specs


def check_capacity_factor(value) -> float:
    """The mixture-of-experts capacity factor as a float > 0 (InputError otherwise)."""
    try:
        cf = float(value)
    except (TypeError, ValueError):
        raise InputError(f"capacity factor must be a number > 0, got {value!r}") from None
    if not math.isfinite(cf) or cf <= 0:
        raise InputError(f"capacity factor must be a number > 0, got {value!r}")
    return cf


def micro_batch(batch_size: int | None, gpus: int = 1, grad_accum: int = 1) -> int | None:
    if batch_size is None:
        return None
    div = max(1, int(gpus)) * max(1, int(grad_accum))
    if batch_size < div:
        raise InputError(f"--batch-size {batch_size} is smaller than gpus x grad-accum = {div}: "
                         "every GPU needs at least one sample per micro-step")
    return batch_size // div


def _specs(inputs) -> dict[str, TensorSpec]:
    if inputs is None:
        return {}
    if isinstance(inputs, Mapping):
        out = {}
        for k, v in inputs.items():
            if isinstance(v, TensorSpec):
                out[k] = v
            elif isinstance(v, str):
                out[k] = parse_input_spec(v if "=" in v else f"{k}={v}")
            elif hasattr(v, "shape") and hasattr(v, "dtype") and type(v).__module__.startswith("torch"):
                # an example tensor (the API): only its dtype and shape are used, never its values
                out[k] = TensorSpec(k, str(v.dtype).rsplit(".", 1)[-1], tuple(int(d) for d in v.shape))
            else:
                raise InputError(f"input {k!r}: expected a TensorSpec, a spec string ('float32[8,3,224,224]') or an "
                                 f"example tensor, got {type(v).__name__}")
        return out
    if isinstance(inputs, str):
        inputs = [inputs]
    return parse_input_specs(list(inputs))


def analyze(source, *, inputs: list[str] | dict | None = None, batch_size: int | None = None,
            seq_len: int | None = None, precision: str = "default", optimizer: str = "adamw", gpus: int = 1,
            grad_accum: int = 1, activation_checkpointing: bool = False, capacity_factor: float = 1.0,
            optimizer_impl: str | None = None, attention: str | None = None,
            torch_version: str | None = None) -> CostGraph:
    """``capacity_factor``: rows each mixture-of-experts expert computes, as a multiple of its balanced share of
    tokens x top-k (1 = dropless; PyTorch / Hugging Face sources only: stated as not applied otherwise).
    ``optimizer_impl``: ``foreach`` (PyTorch's CUDA default), ``fused`` (``fused=True``) or ``for-loop``
    (``foreach=False``). ``attention``: ``sdpa`` (one fused kernel, default) or ``eager`` (separate GEMM + softmax
    kernels) for PyTorch and Hugging Face sources; ONNX graphs record attention as their nodes do (stated).
    ``torch_version``: the PyTorch version of the run (wattlint.framework): it sets the defaults of the two and which
    depthwise kernels run."""
    from .. import framework

    graph = _analyze(source, inputs=inputs, batch_size=batch_size, seq_len=seq_len, precision=precision,
                     optimizer=optimizer, gpus=gpus, grad_accum=grad_accum,
                     activation_checkpointing=activation_checkpointing, capacity_factor=capacity_factor,
                     optimizer_impl=optimizer_impl or framework.default_optimizer_impl(framework.parse(torch_version)),
                     attention=attention or framework.default_attention(framework.parse(torch_version)),
                     grads_to_none=framework.grads_to_none_by_default(framework.parse(torch_version)))
    graph = framework.apply(graph, torch_version, optimizer_impl_default=optimizer_impl is None,
                            attention_default=attention is None, optimizer=optimizer, optimizer_impl=optimizer_impl)
    return _note_unapplied(graph, attention, capacity_factor)


def _note_unapplied(graph: CostGraph, attention: str | None, capacity_factor) -> CostGraph:
    """State the model options given for a graph they cannot change (never drop them silently)."""
    import dataclasses

    lines = []
    if attention is not None and graph.model.format == "onnx":
        lines.append(f"--attention {attention}: not applied to an ONNX graph (an option of PyTorch / Hugging Face "
                     "sources); its attention is costed as its nodes are")
    if capacity_factor is not None and float(capacity_factor) != 1.0 and not graph.extra.get("moe"):
        lines.append(f"--capacity-factor {float(capacity_factor):g}: the model has no mixture-of-experts layer; no "
                     "effect")
    if not lines:
        return graph
    return dataclasses.replace(graph, assumptions=tuple(graph.assumptions) + tuple(lines))


def _analyze(source, *, inputs, batch_size, seq_len, precision, optimizer, gpus, grad_accum,
             activation_checkpointing, capacity_factor, optimizer_impl: str, attention: str,
             grads_to_none: bool = True) -> CostGraph:
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    precision = precision or "default"
    if attention not in ("sdpa", "eager"):
        raise InputError(f"unknown attention {attention!r} (sdpa or eager)")
    capacity_factor = check_capacity_factor(capacity_factor)
    optimizer = optimizer or "adamw"
    specs = _specs(inputs)
    mb = micro_batch(batch_size, gpus, grad_accum)
    notes = []
    if batch_size is not None:
        div = max(1, int(gpus)) * max(1, int(grad_accum))
        rest = (f"; {batch_size} is not divisible by {div}: {batch_size - mb * div} sample"
                f"{'s' if batch_size - mb * div != 1 else ''} per step not traced" if batch_size % div else "")
        notes.append(f"batch: global batch {batch_size} / ({gpus} data-parallel replica{'s' if gpus != 1 else ''} "
                     f"x {grad_accum} grad-accum) = micro-batch {mb} traced (the batch dim of every input: the leading one, dim 1 for [seq, batch, ...] models){rest}")
    if isinstance(source, str):
        src = source.strip()
        low = src.lower()
        if low.endswith(".onnx"):
            _need_file(src, "model file")
            from .onnx import analyze_onnx  # no torch on this path

            g = analyze_onnx(src, inputs=specs, batch_size=mb, seq_len=seq_len, optimizer=optimizer,
                             precision=precision, optimizer_impl=optimizer_impl)
            if notes:  # the same batch statement as the torch frontends
                from dataclasses import replace

                g = replace(g, assumptions=tuple(notes) + tuple(g.assumptions))
            return g
        if low.endswith(".json"):
            _need_file(src, "config file")
            from .hf import analyze_config

            specs = _hf_positional(src, specs)
            return analyze_config(src, inputs=specs, micro_batch=mb, seq_len=seq_len, precision=precision,
                                  optimizer=optimizer, activation_checkpointing=activation_checkpointing,
                                  assumptions=notes, capacity_factor=capacity_factor, optimizer_impl=optimizer_impl,
                                  attention=attention, grads_to_none=grads_to_none)
        if ":" in src:
            obj = load_attr(src)
            return _analyze_torch_object(obj, src, specs, mb, seq_len, precision, optimizer,
                                         activation_checkpointing, notes, capacity_factor, optimizer_impl, attention,
                                         grads_to_none)
        if os.path.isdir(src):
            raise InputError(f"{src} is a directory: name a model file in it (file.onnx, config.json or "
                             "file.py:attr)")
        if os.path.exists(src):
            raise InputError(f"cannot tell the format of {src!r}: expected .onnx, a config .json or "
                             "file.py:attr")
        raise InputError(f"model source {src!r} not understood: expected file.onnx, config.json, "
                         "package.module:attr or path/file.py:attr")
    return _analyze_torch_object(source, getattr(type(source), "__name__", "module"), specs, mb, seq_len,
                                 precision, optimizer, activation_checkpointing, notes, capacity_factor,
                                 optimizer_impl, attention, grads_to_none)


def _hf_positional(path: str, specs: dict[str, TensorSpec]) -> dict[str, TensorSpec]:
    """Example tensors given by position (the API's ``inputs=ids`` or ``inputs=(ids, mask)``, keyed ``input:0``...)
    for a Hugging Face config: named after the first positional parameters of the forward of the class the config
    builds (its ``architectures``' class, else the base model its model_type maps to: wattlint.frontends.hf's
    choice), as calling that forward with them by position binds them; refused, naming the dict form, where that
    class cannot be told or its forward takes fewer."""
    if not specs or list(specs) != [POSITIONAL_INPUT.format(i) for i in range(len(specs))]:
        return specs
    import inspect

    from . import hf

    transformers = require("transformers", "Hugging Face config.json sources", "hf")
    config = hf.load_config(path)
    cls = None
    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, str(name), None)
        if cls is not None:
            break
    try:
        if cls is None:
            cls = hf._auto_model_class(config, transformers)
        if cls is transformers.AutoModel:
            cls = transformers.MODEL_MAPPING[type(config)]
        params = list(inspect.signature(cls.forward).parameters.values())[1:]  # self aside
    except Exception:  # noqa: BLE001 - no class or signature to read: the user names them
        cls, params = None, []
    names: list[str] = []
    for p in params:
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            break
        names.append(p.name)
    if len(names) < len(specs):
        first = names[0] if names else "input_ids"
        whose = f"{cls.__name__}'s forward takes {len(names)} positional input{'s' if len(names) != 1 else ''}" \
            if cls is not None else "the config's model class cannot be told"
        raise InputError(f"{len(specs)} example tensors given by position for {os.path.basename(path)}: {whose}; "
                         f"name them, e.g. inputs={{{first!r}: tensor}}")
    return {n: TensorSpec(n, t.dtype, t.shape) for n, t in zip(names, specs.values())}


def _need_file(path: str, what: str) -> None:
    """InputError unless ``path`` is a file: a directory is named as one (not reported as missing)."""
    if os.path.isdir(path):
        raise InputError(f"{path} is a directory, not a {what}")
    if not os.path.isfile(path):
        raise InputError(f"{what} not found: {path}")


def _module_form(target: str, attr: str) -> str:
    """How to name a package's file so that its relative imports work: the dotted path from the folder above its
    outermost package (the folders holding ``__init__.py``), and that folder."""
    path = os.path.abspath(target)
    parts = [os.path.splitext(os.path.basename(path))[0]]
    folder = os.path.dirname(path)
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        parts.insert(0, os.path.basename(folder))
        folder = os.path.dirname(folder)
    if len(parts) == 1:  # not inside a package: no module name makes `from .x import` work
        return "; the file uses relative imports but is not inside a package (no __init__.py beside it)"
    where = os.path.relpath(folder) if not os.path.relpath(folder).startswith("..") else folder
    return (f"; a file of a package imports its siblings relatively only when imported as part of it: name it as "
            f"a module, {'.'.join(parts)}:{attr}, with {where!r} as the working folder (or on PYTHONPATH)")


def load_attr(spec: str) -> Any:
    """Import ``package.module:attr`` or ``path/file.py:attr`` and return attr (dotted attrs allowed)."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise InputError(f"model source {spec!r}: expected package.module:attr or path/file.py:attr")
    if ".py:" in target or (":" in target and not target.endswith(".py") and "/" not in target and os.sep not in target
                            and not (len(target) > 1 and target[1] == ":")):
        # 'models.py:build:extra' was looked up as a module named 'models.py:build'
        raise InputError(f"model source {spec!r}: one ':' between the file or module and the attribute "
                         f"(a nested attribute is dotted: path/file.py:outer.inner)")
    if target.endswith(".py") or os.sep in target or "/" in target:
        _need_file(target, "model file")
        mod_name = "_wattlint_user_" + os.path.splitext(os.path.basename(target))[0].replace("-", "_")
        try:
            mspec = importlib.util.spec_from_file_location(mod_name, target)
            if mspec is None or mspec.loader is None:
                raise InputError(f"cannot import {target}")
            module = importlib.util.module_from_spec(mspec)
            sys.modules[mod_name] = module
            d = os.path.dirname(os.path.abspath(target))
            added = d not in sys.path
            if added:
                sys.path.insert(0, d)
            # the current directory too, after the file's own folder (a project's `from models.blocks import ...`
            # resolves from its root, as `wattlint check` and `python -m` resolve it)
            cwd = os.getcwd()
            added_cwd = cwd != d and cwd not in sys.path and "" not in sys.path
            if added_cwd:
                sys.path.insert(1 if added else 0, cwd)
            try:
                mspec.loader.exec_module(module)
            finally:
                if added:
                    sys.path.remove(d)
                if added_cwd and cwd in sys.path:
                    sys.path.remove(cwd)
        except InputError:
            raise
        except BaseException as e:  # noqa: BLE001 - the user's file failed to import
            sys.modules.pop(mod_name, None)
            if isinstance(e, KeyboardInterrupt):
                raise
            if isinstance(e, ImportError) and (err := missing_extra_error(e, f"importing {target}")) is not None:
                raise err from None
            hint = ""
            if isinstance(e, ImportError) and "relative import" in str(e):  # a file of a package, loaded alone
                hint = _module_form(target, attr)
            raise InputError(f"importing {target} failed: {type(e).__name__}: {_first_line(e)}{hint}") from None
    else:
        cwd = os.getcwd()  # like `python -m`: the current directory is importable
        added_cwd = cwd not in sys.path and "" not in sys.path
        if added_cwd:
            sys.path.insert(0, cwd)
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            if (err := missing_extra_error(e, f"importing {target}")) is not None:
                raise err from None
            if e.name and target.startswith(e.name):
                raise InputError(f"no module named {target!r} (is it installed or on PYTHONPATH?)") from None
            raise InputError(f"importing {target} failed: ModuleNotFoundError: {_first_line(e)}") from None
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, KeyboardInterrupt):
                raise
            raise InputError(f"importing {target} failed: {type(e).__name__}: {_first_line(e)}") from None
        finally:
            if added_cwd and cwd in sys.path:
                sys.path.remove(cwd)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(module) if not n.startswith("_")]
            import difflib

            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"{target} has no attribute {attr!r}{hint}")
        obj = getattr(obj, part)
    return obj


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else ""


def _analyze_torch_object(obj, source: str, specs, mb, seq_len, precision, optimizer, ckpt, notes,
                          capacity_factor: float = 1.0, optimizer_impl: str = "foreach",
                          attention: str = "sdpa", grads_to_none: bool = True) -> CostGraph:
    tf = require("wattlint.frontends.torch", "PyTorch model sources")
    model, example = tf.build_module(obj, source)
    return tf.trace_with_inputs(model, example, specs, source=source, micro_batch=mb, seq_len=seq_len,
                                precision=precision, optimizer=optimizer, activation_checkpointing=ckpt,
                                assumptions=notes, capacity_factor=capacity_factor, optimizer_impl=optimizer_impl,
                                attention=attention, grads_to_none=grads_to_none)
