"""Hugging Face frontend: ``config.json`` -> a transformers model on meta, offline -> traced CostGraph.

The model class comes from the config's ``architectures`` (e.g. ``LlamaForCausalLM``), falling back to the Auto
class for its ``model_type``; nothing is downloaded. Attention uses transformers' ``sdpa`` implementation (routed to
the fused CUDA kernel by the torch frontend), or its ``eager`` implementation (separate matmul + softmax kernels) with
``attention="eager"``; ``use_cache`` is off as in training.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import weakref
from typing import Any, Mapping, Sequence

from ..types import CostGraph, InputError, TensorSpec
from . import exception_line
from .extras import require

_WHAT = "Hugging Face config.json sources"  # "<what>: the torch package is not installed; ..."

DEFAULT_SEQ_LEN = 512
DEFAULT_BATCH = 1
# a *ForMultipleChoice model takes input_ids [batch, choices, seq] (SWAG, RACE, ARC: 4 answers per question)
DEFAULT_CHOICES = 4


class _quiet:
    """transformers logs config/model warnings on stderr, and torch / transformers emit Python warnings (e.g. torch's
    "Initializing zero-element tensors is a no-op"); the library never prints (DESIGN §3)."""

    def __enter__(self):
        import warnings

        from transformers.utils import logging as tlog

        self._tlog = tlog
        self._level = tlog.get_verbosity()
        tlog.set_verbosity_error()
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        return self

    def __exit__(self, *exc):
        self._warnings.__exit__(*exc)
        self._tlog.set_verbosity(self._level)
        return False


# Upper bounds on the sizes a config may declare, checked before transformers sees the config: a model is built on
# the meta device module by module, so an absurd count (num_hidden_layers: 10**12) would hang with growing memory
# instead of failing. Each bound is far above any published model (Llama 3.1 405B: 126 layers, hidden 16,384,
# vocabulary 128,256, 128 heads; DeepSeek-V3: 256 routed experts; the largest vocabularies are ~260 k).
SIZE_LIMITS: dict[str, tuple[tuple[str, ...], int]] = {
    "layers": (("num_hidden_layers", "n_layer", "num_layers", "n_layers", "encoder_layers", "decoder_layers",
                "num_decoder_layers", "num_encoder_layers"), 4096),
    "hidden": (("hidden_size", "n_embd", "d_model", "intermediate_size", "n_inner", "d_ff", "ffn_dim",
                "encoder_ffn_dim", "decoder_ffn_dim", "moe_intermediate_size", "head_dim", "d_kv", "embed_dim"),
               1 << 20),
    "vocab": (("vocab_size",), 1 << 24),
    "heads": (("num_attention_heads", "n_head", "num_heads", "num_key_value_heads", "encoder_attention_heads",
               "decoder_attention_heads"), 1 << 14),
    "experts": (("num_local_experts", "num_experts", "n_routed_experts", "num_experts_per_tok", "n_shared_experts",
                 "moe_num_experts"), 1 << 14),
    "positions": (("max_position_embeddings", "n_positions", "n_ctx"), 1 << 24),
}
# layers x experts bounds the number of expert modules built (4096 layers x 16,384 experts would not finish)
MAX_EXPERT_MODULES = 1 << 17
_MAX_DEPTH = 8  # nested sub-configs (text_config, vision_config, encoder / decoder)


def check_config_sizes(data: Mapping[str, Any], where: str, _depth: int = 0, _prefix: str = "") -> None:
    """Refuse (InputError naming the key) a size in a config dict, or in its nested sub-configs, that is not a whole
    number within :data:`SIZE_LIMITS`."""
    if _depth > _MAX_DEPTH:
        raise InputError(f"{where}: sub-configs nested more than {_MAX_DEPTH} deep")
    values: dict[str, int] = {}
    for what, (keys, limit) in SIZE_LIMITS.items():
        for k in keys:
            if k not in data or data[k] is None:
                continue
            raw = data[k]
            # a per-layer list (e.g. Gemma 3n's intermediate_size) is checked element by element
            items = raw if isinstance(raw, list) and len(raw) <= SIZE_LIMITS["layers"][1] else [raw]
            for v in items:
                ok = isinstance(v, int) and not isinstance(v, bool) or (isinstance(v, float) and v.is_integer())
                if not ok:
                    shown = json.dumps(raw)[:60]  # as written in the file: "96" (a string) must not read as 96
                    raise InputError(f"{where}: {_prefix}{k} = {shown}: expected a whole number"
                                     + (" or a list of them" if isinstance(raw, list) else "")
                                     + (f", not a string (write {raw} without quotes)" if isinstance(raw, str)
                                        and raw.strip().isdigit() else ""))
                if not 0 <= v <= limit:
                    raise InputError(f"{where}: {_prefix}{k} = {v!r} is outside 0..{limit:,} ({what}): "
                                     "not a model this tool can build")
                if k in ("num_experts_per_tok", "moe_top_k", "num_selected_experts") and v < 1 and any(
                        (data.get(e) or 0) > 0 for e in ("num_local_experts", "num_experts", "n_routed_experts",
                                                         "moe_num_experts")):
                    raise InputError(f"{where}: {_prefix}{k} = {v!r}: a mixture-of-experts layer routes each token to "
                                     "at least one expert (top-k >= 1)")
                if v < 1 and k in _AT_LEAST_ONE:  # a zero count built an empty model or divided by zero
                    raise InputError(f"{where}: {_prefix}{k} = {v!r}: {_AT_LEAST_ONE[k]}")
                if what == "vocab" and v < 1:
                    raise InputError(f"{where}: {_prefix}{k} = {v!r}: a vocabulary needs at least one token (the "
                                     "embedding and the output layer would be empty)")
                values[what] = max(values.get(what, 0), int(v))
    experts = next(((e, data[e]) for e in _EXPERT_FIELDS if isinstance(data.get(e), int)), None)
    top_k = next(((t, data[t]) for t in _TOP_K_FIELDS if isinstance(data.get(t), int)), None)
    if experts is not None and top_k is not None and experts[1] == 0 and top_k[1] >= 1:
        raise InputError(f"{where}: {_prefix}{experts[0]} = 0 with {_prefix}{top_k[0]} = {top_k[1]}: a "
                         "mixture-of-experts layer needs at least one expert to route each token to")
    heads, kv = data.get("num_attention_heads"), data.get("num_key_value_heads")
    if isinstance(heads, int) and isinstance(kv, int) and not isinstance(heads, bool) and not isinstance(kv, bool) \
            and kv > 0 and heads % kv:  # grouped-query attention repeats each key/value head heads / kv times
        raise InputError(f"{where}: {_prefix}num_attention_heads = {heads} is not a multiple of "
                         f"{_prefix}num_key_value_heads = {kv}: grouped-query attention shares each key/value head "
                         "among a whole number of query heads")
    if values.get("layers", 1) * max(1, values.get("experts", 1)) > MAX_EXPERT_MODULES:
        raise InputError(f"{where}: {_prefix}layers x experts = {values['layers']:,} x {values['experts']:,} is more "
                         f"than {MAX_EXPERT_MODULES:,} expert modules: not a model this tool can build")
    for k, v in data.items():
        if isinstance(v, Mapping):
            check_config_sizes(v, where, _depth + 1, f"{_prefix}{k}.")


# counts a model cannot have zero of (0 was accepted: a zero-layer model, or a ZeroDivisionError inside transformers)
_AT_LEAST_ONE = {
    **{k: "a model needs at least one layer" for k in ("num_hidden_layers", "n_layer", "num_layers", "n_layers")},
    **{k: "attention needs at least one head" for k in ("num_attention_heads", "n_head", "num_heads",
                                                         "encoder_attention_heads", "decoder_attention_heads")},
    "num_key_value_heads": "attention needs at least one key/value head (grouped-query attention shares each among "
                           "num_attention_heads / num_key_value_heads query heads)",
    **{k: "a model needs at least one position (its position table or context length)"
       for k in ("max_position_embeddings", "n_positions", "n_ctx")},
}


def _non_finite(data: Mapping[str, Any], where: str) -> None:
    """Refuse (InputError naming the key) a NaN anywhere in a config (``"layer_norm_epsilon": NaN`` was accepted),
    and an infinite epsilon. Infinity is kept elsewhere: Mamba2's time_step_limit is (0.0, inf)."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, float) and (math.isnan(v) or (math.isinf(v) and "eps" in path.rsplit(".", 1)[-1])):
            raise InputError(f"{where}: {path} = {json.dumps(v)}: expected a finite number")
        if isinstance(v, Mapping):
            stack.extend((f"{path}.{k}" if path else str(k), x) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}]", x) for i, x in enumerate(v))


_SPECIAL_FLOATS = {"Infinity": float("inf"), "-Infinity": float("-inf"), "NaN": float("nan")}


def _special_floats(value):
    """``value`` with transformers' JSON encoding of non-finite floats (``{"__float__": "Infinity"}``, written by
    ``to_json_file`` since transformers 5: Mamba2's ``time_step_limit``) decoded, as ``from_pretrained`` decodes
    it (the config was refused as invalid)."""
    if isinstance(value, dict):
        if set(value) == {"__float__"} and isinstance(value["__float__"], str) \
                and value["__float__"] in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[value["__float__"]]
        return {k: _special_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_special_floats(v) for v in value]
    return value


def load_config(path_or_dict: str | Mapping[str, Any]):
    require("torch", _WHAT, "hf")
    AutoConfig = require("transformers", _WHAT, "hf").AutoConfig
    if isinstance(path_or_dict, Mapping):
        data = dict(path_or_dict)
        where = "config"
    else:
        where = str(path_or_dict)
        try:
            with open(path_or_dict, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise InputError(f"config file not found: {where}") from None
        except UnicodeDecodeError as e:
            raise InputError(f"{where}: not UTF-8 text (byte {e.start}): not a Hugging Face config.json") from None
        except RecursionError:
            raise InputError(f"{where}: JSON nested too deeply to be a Hugging Face config.json") from None
        except (OSError, ValueError) as e:  # ValueError: not JSON, or an integer past Python's 4,300-digit limit
            raise InputError(f"cannot read {where}: {' '.join(str(e).split())[:160]}") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: not a JSON object")
    data = _special_floats(data)
    check_config_sizes(data, where)
    _non_finite(data, where)
    archs = data.get("architectures")
    if archs is not None and not (isinstance(archs, list) and all(isinstance(a, str) for a in archs)):
        raise InputError(f"{where}: architectures = {str(archs)[:60]}: expected a list of model class names")
    model_type = data.pop("model_type", None)
    if model_type is not None and not isinstance(model_type, str):
        raise InputError(f"{where}: model_type = {str(model_type)[:60]}: expected a string such as \"llama\"")
    if not model_type:
        raise InputError(f"{where}: no 'model_type' (not a Hugging Face config.json?)")
    try:
        with _quiet():
            config = AutoConfig.for_model(model_type, **data)
    except (ValueError, KeyError) as e:
        raise InputError(_unknown_model_type(where, model_type, e)) from None
    except Exception as e:  # noqa: BLE001 - e.g. huggingface_hub's strict-dataclass validation of bad values
        msg = " ".join(str(e).split())
        raise InputError(f"{where}: invalid {model_type} config: {type(e).__name__}: {msg}") from None
    if data.get("tie_word_embeddings") is False:  # as written in the file: T5Config overrides it (see build_model)
        key = id(config)
        _UNTIED_GIVEN[key] = weakref.ref(config, lambda _ref: _UNTIED_GIVEN.pop(key, None))
    amap = dict(getattr(config, "attribute_map", None) or {})  # alias -> stored key (GPT-2: hidden_size -> n_embd)
    given = set(data) | {amap[k] for k in data if k in amap} | {a for a, real in amap.items() if real in data}
    filled = {k: getattr(config, k) for k in _CORE_SIZES if k not in given and amap.get(k, k) not in given
              and isinstance(getattr(config, k, None), int) and not isinstance(getattr(config, k), bool)}
    if filled:
        _DEFAULTED[id(config)] = (type(config).__name__, filled, _derived_sizes(config, filled))
    return config


def _derived_sizes(config, filled: Mapping[str, int]) -> dict[str, str]:
    """Of the sizes ``filled`` in, those the config class derives from another size rather than a default of its own
    (review: LlamaConfig's num_key_value_heads None -> num_attention_heads was stated as "LlamaConfig's defaults
    used"): {size: the size it was taken from}."""
    import inspect

    out = {}
    kv, heads = filled.get("num_key_value_heads"), getattr(config, "num_attention_heads", None)
    if kv is not None and kv == heads:
        try:
            param = inspect.signature(type(config).__init__).parameters.get("num_key_value_heads")
        except (TypeError, ValueError):
            param = None
        if param is not None and param.default is None:  # no default of its own: the class copies the heads
            out["num_key_value_heads"] = "num_attention_heads"
    return out


# the sizes that make a model's cost: when config.json leaves one out, transformers' class default fills it in (a
# bare {"model_type": "llama"} is Llama-2-7B's 6.6 B parameters), which the estimate states
_CORE_SIZES = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
               "vocab_size", "n_layer", "n_embd", "n_head", "d_model", "num_layers", "num_heads", "d_ff",
               "num_local_experts", "num_experts_per_tok")
_DEFAULTED: dict[int, tuple[str, dict[str, int]]] = {}
# configs whose config.json says "tie_word_embeddings": false: id -> a weak reference to the config (an id may be
# reused once the config is gone, so build_model checks the reference is the config it builds)
_UNTIED_GIVEN: dict[int, weakref.ref] = {}


_TOP_K_FIELDS = ("num_experts_per_tok", "moe_top_k")  # not bare top_k: transformers 4.x sets it (50) on every config
_EXPERT_FIELDS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")


def _check_routing(config) -> None:
    """A mixture-of-experts config routing each token to more experts than it has is refused naming the fields
    (transformers failed inside the trace: 'tracing the model failed: RuntimeError: k not in range')."""
    k_name = next((n for n in _TOP_K_FIELDS if isinstance(getattr(config, n, None), int)), None)
    e_name = next((n for n in _EXPERT_FIELDS if isinstance(getattr(config, n, None), int)), None)
    if k_name and e_name:
        k, e = getattr(config, k_name), getattr(config, e_name)
        if e == 0 and k >= 1:  # (transformers then built no experts: "unsupported mixture-of-experts layout")
            raise InputError(f"the config has {e_name} = 0 but routes each token to {k_name} = {k} experts: a "
                             "mixture-of-experts layer needs at least one expert")
        if e > 0 and k > e:
            raise InputError(f"the config routes each token to {k_name} = {k} experts but has {e_name} = {e}: "
                             f"top-k must not exceed the number of experts")


def _check_image_pooling(config) -> None:
    """Refuse a config whose image tower yields fewer patches per side than the image tokens per side its projector
    average-pools them to (Gemma 3: a kernel of (image_size // patch_size) // sqrt(mm_tokens_per_image) patches).
    transformers' own default Gemma3Config pairs SigLIP's 224 / 16 = 14 patches per side with 256 = 16 x 16 image
    tokens, a kernel of 0: the trace failed "stride should not be zero" (review s54)."""
    tokens = getattr(config, "mm_tokens_per_image", None)
    vision = getattr(config, "vision_config", None)
    size, patch = getattr(vision, "image_size", None), getattr(vision, "patch_size", None)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (tokens, size, patch)):
        return
    per_side, side = size // patch, math.isqrt(tokens)
    if side and per_side // side == 0:
        raise InputError(f"the config's vision_config.image_size {size} / patch_size {patch} gives {per_side} patches "
                         f"per side, fewer than the sqrt(mm_tokens_per_image = {tokens}) = {side} image tokens per "
                         f"side its projector average-pools them to (a pooling kernel of {per_side} // {side} = 0); "
                         f"make image_size / patch_size a multiple of {side} (Gemma 3: 896 / 14 = 64 patches, pooled "
                         "4 x 4) or lower mm_tokens_per_image")


def _missing_library(e: BaseException) -> str | None:
    """One line for transformers' ImportError naming a library a model needs (FastVLM's TimmWrapperModel: "requires
    the timm library but it was not found in your environment. You can install it with pip:" and the command on the
    next lines, which the one-line error cut off), else None."""
    m = re.search(r"requires the (\S+) librar", str(e)) if isinstance(e, ImportError) else None
    if not m:
        return None
    lib = m.group(1).strip("`'\"")
    return f"it needs the {lib} library, which is not installed: pip install {lib}"


def _check_pixel_shuffle(config) -> None:
    """Refuse an Aya Vision config whose image tower yields a patch grid its projector cannot pixel-shuffle:
    AyaVisionMultiModalProjector folds each downsample_factor x downsample_factor block of patches into one token,
    reshaping the grid by that factor. transformers' default AyaVisionConfig pairs SigLIP's image_size 384 / patch 14
    = 27 patches per side with downsample_factor 2: the trace failed "shape '[1, 27, 13, 2304]' is invalid"."""
    if getattr(config, "model_type", None) != "aya_vision":
        return
    vision = getattr(config, "vision_config", None)
    size, patch = getattr(vision, "image_size", None), getattr(vision, "patch_size", None)
    ds = getattr(config, "downsample_factor", None)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (size, patch, ds)):
        return
    per_side = size // patch
    if per_side % ds:
        raise InputError(f"the config's vision_config.image_size {size} / patch_size {patch} gives {per_side} patches "
                         f"per side, not a multiple of downsample_factor {ds}, by which the projector pixel-shuffles "
                         f"the patch grid; make image_size / patch_size a multiple of {ds} (e.g. image_size "
                         f"{(per_side - per_side % ds) * patch} with patch_size {patch})")


def _patch_sequence_images(model, config, mb: int, sl: int) -> None:
    """Refuse the default image input of a model whose vision tower is SigLIP2's NaFlex tower (LFM2-VL): it takes
    pixel_values as sequences of flattened patches with spatial_shapes (each image's patch grid, read from its values)
    and a pixel_attention_mask, not the [B, C, H, W] image wattlint builds (the trace failed with a bare matmul
    mismatch, "a and b must have same reduction dim")."""
    vision = getattr(config, "vision_config", None)
    if getattr(vision, "model_type", None) != "siglip2_vision_model":
        return
    from .torch import forward_params

    if "spatial_shapes" not in forward_params(model):
        return
    raise InputError(f"{type(model).__name__}'s vision tower (siglip2_vision_model) takes its images as sequences of "
                     f"flattened patches with spatial_shapes (each image's patch grid, read from the data) and a "
                     f"pixel_attention_mask, which wattlint does not build; pass --input input_ids=int64[{mb},{sl}] "
                     f"to cost the text-only step")


def _unset_top_k(config) -> tuple[str, str, int] | None:
    """(top-k field, experts field, experts) of a mixture-of-experts config whose top-k field is null (DeepSeek-V2's
    default num_experts_per_tok: the trace failed "topk(): argument 'k' must be int, not NoneType"), else None."""
    k_name = next((n for n in _TOP_K_FIELDS if hasattr(config, n) and getattr(config, n) is None), None)
    e_name = next((n for n in _EXPERT_FIELDS if isinstance(getattr(config, n, None), int)), None)
    if k_name and e_name and getattr(config, e_name) > 0:
        return k_name, e_name, getattr(config, e_name)
    return None


def defaulted_sizes_note(config) -> str | None:
    """The assumption line naming the sizes transformers filled in for ``config`` (loaded by :func:`load_config`)."""
    got = _DEFAULTED.pop(id(config), None)
    if not got:
        return None
    cls, filled, derived = got
    said = []
    defaults = {k: v for k, v in filled.items() if k not in derived}
    if defaults:
        said.append(f"{cls}'s defaults used ({', '.join(f'{k} {v:,}' for k, v in defaults.items())})")
    for k, src in derived.items():
        said.append(f"{cls} takes {k} from {src} ({k} {filled[k]:,}"
                    + ("; one key/value head per query head, no grouped-query attention)"
                       if k == "num_key_value_heads" else ")"))
    one = len(filled) == 1
    return (f"config.json does not give {', '.join(filled)}: {', '.join(said)}; write {'it' if one else 'them'} in "
            "the config to estimate another size")


def _unknown_model_type(where: str, model_type: str, e: Exception) -> str:
    """The error for a model_type transformers refuses, as one readable line: transformers' own message lists every
    model type it knows (12 kB as of 5.x), so name the closest ones instead."""
    import difflib

    try:
        from transformers import CONFIG_MAPPING

        known = list(CONFIG_MAPPING.keys())
    except Exception:  # noqa: BLE001 - a transformers without the mapping: keep its message, shortened
        known = []
    if known and model_type not in known:
        close = difflib.get_close_matches(model_type, known, n=3, cutoff=0.7)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        import transformers

        return (f"{where}: transformers {transformers.__version__} does not know model_type {model_type!r}{hint} "
                "(a newer transformers may; the config's 'model_type' names the architecture)")
    msg = " ".join(str(e).split())
    return f"{where}: transformers cannot build a {model_type!r} config: {msg[:300]}{'...' if len(msg) > 300 else ''}"


def build_model(config, attention: str = "sdpa"):
    torch = require("torch", _WHAT, "hf")
    transformers = require("transformers", _WHAT, "hf")

    impl = "eager" if attention == "eager" else "sdpa"

    archs = list(getattr(config, "architectures", None) or [])
    cls = None
    for name in archs:
        cls = getattr(transformers, name, None)
        if cls is not None:
            break
    if cls is None:
        cls = _auto_model_class(config, transformers)
    try:
        config._attn_implementation = impl
    except Exception:  # noqa: BLE001
        pass
    if hasattr(config, "use_cache"):
        config.use_cache = False
    # training keeps fp32 (master) weights whatever dtype the checkpoint was saved in; 16-bit compute is
    # --precision (autocast)
    fp32 = {"dtype": torch.float32}
    try:
        with torch.device("meta"), _quiet():
            if cls is transformers.AutoModel:
                try:
                    model = cls.from_config(config, attn_implementation=impl, **fp32)
                except (ValueError, TypeError):  # no such attention path: transformers' default for the architecture
                    config._attn_implementation = None
                    model = cls.from_config(config, **fp32)
            else:
                try:
                    model = cls._from_config(config, attn_implementation=impl, **fp32)
                except (ValueError, TypeError):  # architectures without an sdpa path (or no attention)
                    config._attn_implementation = None
                    model = cls._from_config(config, **fp32)
    except Exception as e:  # noqa: BLE001
        said = _unknown_value(config, e) if isinstance(e, KeyError) else _missing_library(e)
        null = _null_sizes(config) if isinstance(e, TypeError) and "NoneType" in str(e) else []
        if null:  # (review sweep: HunYuan-VL's default text_config.head_dim is null: "NoneType ** float")
            said = (f"{exception_line(e)}; the config leaves {', '.join(null)} null: set "
                    f"{'it' if len(null) == 1 else 'them'} (transformers {transformers.__version__} cannot build "
                    f"this {getattr(config, 'model_type', '?')} config as it is)")
        raise InputError(f"building {getattr(cls, '__name__', cls)} from the config failed: "
                         f"{said or exception_line(e)}") from None
    note = _untie_output_embedding(model, config, torch)
    if note:
        model._wattlint_build_notes = [note]  # analyze_config states it
    return model


def _null_sizes(config) -> list[str]:
    """The size fields (:data:`SIZE_LIMITS`) of ``config`` and its sub-configs that are null, dotted
    ("text_config.head_dim")."""
    try:
        data = config.to_dict()
    except Exception:  # noqa: BLE001 - a config that cannot be listed
        return []
    keys = {k for ks, _ in SIZE_LIMITS.values() for k in ks}
    out: list[str] = []
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack:
        path, d, depth = stack.pop()
        for k, v in d.items():
            if v is None and k in keys:
                out.append(path + k)
            elif isinstance(v, Mapping) and depth < _MAX_DEPTH:
                stack.append((f"{path}{k}.", v, depth + 1))
    return sorted(out)


def _auto_model_class(config, transformers):
    """AutoModel for a config it maps, else the base model class named after the config class (Aimv2TextConfig ->
    Aimv2TextModel: a sub-model config, a tower of a two-tower model, that AutoModel refused with 'Unrecognized
    configuration class'; review s52: 19 such types); AutoModel when no such class exists (its own message)."""
    try:
        mapped = type(config) in transformers.MODEL_MAPPING
    except Exception:  # noqa: BLE001 - a mapping that cannot answer: AutoModel decides
        mapped = True
    name = type(config).__name__
    if not mapped and name.endswith("Config"):
        named = getattr(transformers, name[: -len("Config")] + "Model", None)
        if named is not None:
            return named
    return transformers.AutoModel


_ACTIVATION_KEYS = ("hidden_act", "activation_function", "hidden_activation", "activation", "act_fn",
                    "feed_forward_proj", "projection_hidden_act")


def _unknown_value(config, e: KeyError) -> str | None:
    """A KeyError transformers raised for a value of the config it has no entry for (``"activation_function":
    "nonexistent_act"``, ``"rope_scaling": {"type": "bogus"}``) as a line naming the config key and its value (and
    for an activation, how many transformers knows and a few of them), else None."""
    if len(e.args) != 1 or not isinstance(e.args[0], str):
        return None
    value = e.args[0]
    try:
        data = config.to_dict()
    except Exception:  # noqa: BLE001 - a config that cannot be listed: transformers' own message
        return None
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack:
        path, v, depth = stack.pop()
        if v == value and path:
            import transformers

            leaf = path.rsplit(".", 1)[-1]
            if leaf in _ACTIVATION_KEYS:
                try:
                    from transformers.activations import ACT2FN

                    names = sorted(ACT2FN)
                    return (f"{path} = {value!r} is not an activation transformers {transformers.__version__} "
                            f"knows ({len(names)} do: {', '.join(names[:6])}, ...)")
                except Exception:  # noqa: BLE001
                    pass
            return f"{path} = {value!r}: transformers {transformers.__version__} has no such option (KeyError)"
        if isinstance(v, Mapping) and depth < _MAX_DEPTH:
            stack.extend((f"{path}.{k}" if path else str(k), x, depth + 1) for k, x in v.items())
    return None


def _untie_output_embedding(model, config, torch) -> str | None:
    """Give the output layer its own weight where the user's config.json says "tie_word_embeddings": false but the
    built model shares it with the input embedding, and say so (None otherwise). Review: transformers 5's T5Config
    forces tie_word_embeddings = True (T5-v1.1 / Flan-T5 configs say false and their checkpoints have a separate
    lm_head), so T5-v1.1-base was costed at 222,903,552 parameters, one 32,128 x 768 table short of its published
    247,577,856 (weights, gradients, optimizer state and MFU's 6N 10 % low)."""
    ref = _UNTIED_GIVEN.get(id(config))  # kept: each model built from this config is untied (the weak reference
    #                                     drops the entry when the config goes)
    if ref is None or ref() is not config:
        return None
    try:
        inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    w_in, w_out = getattr(inp, "weight", None), getattr(out, "weight", None)
    if w_in is None or w_out is None or w_out is not w_in:
        return None
    out.weight = torch.nn.Parameter(torch.empty(tuple(w_in.shape), dtype=w_in.dtype, device="meta"),
                                    requires_grad=w_in.requires_grad)
    rows, cols = tuple(w_in.shape)
    return (f"output layer: config.json says \"tie_word_embeddings\": false, but transformers "
            f"{_version()}'s {type(config).__name__} ties it (the built {type(model).__name__} shared its output "
            f"layer's weight with the input embedding); costed untied as the config describes, the output layer "
            f"with its own {rows:,} x {cols:,} weight: {w_in.numel():,} parameters added")


def _version() -> str:
    import transformers

    return transformers.__version__


def _image_spec(config, micro_batch: int) -> TensorSpec:
    """pixel_values [B, channels, H, W] from a (vision) config's num_channels and image_size (an int or H, W); a
    composite model's (VisionEncoderDecoder: TrOCR, Donut) from its encoder's config."""
    if getattr(config, "image_size", None) is None and getattr(getattr(config, "encoder", None), "image_size", None):
        config = config.encoder
    size = getattr(config, "image_size", 224)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return TensorSpec("pixel_values", "float32", (micro_batch, int(getattr(config, "num_channels", 3)), int(h), int(w)))


_VIDEO_TYPES = ("videomae", "timesformer", "vivit")  # pixel_values [B, T, C, H, W], T = config.num_frames
# vision towers whose batch is the frames of the videos: pixel_values [B x T, C, H, W], T = config.num_frames
_FRAME_BATCH_TYPES = ("xclip_vision_model",)
# video-text models whose pixel_values are [B, T, C, H, W], T = vision_config.num_frames
_VIDEO_TEXT_TYPES = ("xclip",)


def _frames_per_batch(config) -> int:
    """num_frames of a vision tower that takes each video's frames as batch rows (X-CLIP's vision model reshapes
    its [B x T, ...] batch into B videos of T frames: a batch of 1 failed "shape '[0, 8, 768]' is invalid"), else
    1."""
    frames = getattr(config, "num_frames", None)
    if getattr(config, "model_type", None) in _FRAME_BATCH_TYPES and isinstance(frames, int) and frames > 1:
        return frames
    return 1


def default_inputs(model, config, micro_batch: int, seq_len: int) -> dict[str, TensorSpec]:
    name = getattr(model, "main_input_name", "input_ids")
    specs: dict[str, TensorSpec] = {}
    if name in ("pixel_values",):
        specs[name] = _image_spec(config, micro_batch)
        frames = getattr(config, "num_frames", None)
        if getattr(config, "model_type", None) in _VIDEO_TYPES and isinstance(frames, int) and frames > 0:
            # a video model (VideoMAE, TimeSformer, ViViT): [B, T, C, H, W] (X-CLIP's vision tower has num_frames
            # but takes [B x T, C, H, W]: only the types known to take frames)
            b, c, h, w = specs[name].shape  # (review s52: VideoMAE got [B, C, H, W]: 'expected 5, got 4')
            specs[name] = TensorSpec(name, "float32", (b, frames, c, h, w))
    elif name in ("input_values", "input_features"):
        example = "float32[1,80,3000] (80 mel bins x 3,000 frames: 30 s)" if name == "input_features" else \
            "float32[1,16000] (1 s of 16 kHz audio)"
        raise InputError(f"{type(model).__name__} takes {name}; pass --input {name}=DTYPE[DIMS], e.g. "
                         f"--input {name}={example}")
    elif _multiple_choice(model):  # its forward flattens [batch, choices, seq] (a 2-D input failed: "shape
        # '[-1, 64]' is invalid for input of size 2")
        specs["input_ids"] = TensorSpec("input_ids", "int64", (micro_batch, DEFAULT_CHOICES, seq_len))
    else:
        specs["input_ids"] = TensorSpec("input_ids", "int64", (micro_batch, seq_len))
    from .torch import forward_params

    takes = forward_params(model)  # [] when the signature cannot be read: no input is left out for it
    vision = getattr(config, "vision_config", None)
    text = getattr(config, "text_config", None)
    if vision is not None and "pixel_values" not in specs and text is not None:
        # a two-tower model (CLIP, SigLIP): its forward needs images beside the text ('NoneType' has no 'shape')
        specs["pixel_values"] = _image_spec(vision, micro_batch)
        frames = getattr(vision, "num_frames", None)
        if getattr(config, "model_type", None) in _VIDEO_TEXT_TYPES and isinstance(frames, int) and frames > 0:
            # a video-text model (X-CLIP): videos of num_frames frames (review sweep: 'expected 5, got 4')
            b, c, h, w = specs["pixel_values"].shape
            specs["pixel_values"] = TensorSpec("pixel_values", "float32", (b, frames, c, h, w))
    if "pixel_values" in specs and "aspect_ratio_ids" in takes and vision is not None:
        # Mllama (Llama 3.2 Vision) reads its images as tiles with their aspect ratio (review s54: its default
        # [B, C, H, W] image failed "`aspect_ratio_ids` must be provided")
        specs.update(tiled_image_specs(vision, micro_batch, specs["input_ids"].shape[-1]))
    if name == "pixel_values" and text is not None and "input_ids" in takes:
        # an image-first model with a language model (BLIP-2, InstructBLIP): its forward needs the text beside the
        # images (review s52: "Blip2Model.forward() missing 1 required positional argument: 'input_ids'")
        specs["input_ids"] = TensorSpec("input_ids", "int64", (micro_batch, seq_len))
    if getattr(config, "is_encoder_decoder", False) and (not takes or "decoder_input_ids" in takes):
        # a text encoder-decoder (T5, BART) decodes tokens; a detection one (DETR, D-FINE) decodes object queries
        # from no input (review s52: D-FINE was handed decoder_input_ids and the error blamed the user)
        specs["decoder_input_ids"] = TensorSpec("decoder_input_ids", "int64", (micro_batch, seq_len))
    return specs


def tiled_image_specs(vision, micro_batch: int, seq_len: int) -> dict[str, TensorSpec]:
    """Mllama's image inputs for one image per sample cut into the vision config's max_num_tiles tiles (its image
    processor pads every image to max_num_tiles tiles, so the vision tower runs them all whatever the aspect ratio):
    pixel_values [B, 1, tiles, C, H, W], aspect_ratio_ids [B] (the processor's [B, 1], one image per sample: the
    model reshapes it to that), aspect_ratio_mask [B, 1, tiles], and the cross_attention_mask [B, S, 1, tiles]
    saying which images each text token attends to. The masks are float32 and the ids 1-D: their values are not
    read on meta tensors, and the last dim of an integer input of 2 or more dims is taken for its sequence when
    --seq-len rebinds the inputs (a note said aspect_ratio_ids [1, 1] was "kept as given")."""
    tiles = int(getattr(vision, "max_num_tiles", 1) or 1)
    _, c, h, w = _image_spec(vision, micro_batch).shape
    b, s = int(micro_batch), int(seq_len)
    return {"pixel_values": TensorSpec("pixel_values", "float32", (b, 1, tiles, c, h, w)),
            "aspect_ratio_ids": TensorSpec("aspect_ratio_ids", "int64", (b,)),
            "aspect_ratio_mask": TensorSpec("aspect_ratio_mask", "float32", (b, 1, tiles)),
            "cross_attention_mask": TensorSpec("cross_attention_mask", "float32", (b, s, 1, tiles))}


def _base_class(model) -> bool:
    """Whether ``model`` is a transformers base model (XxxModel), not one with a task head (XxxForCausalLM,
    XxxLMHeadModel, XxxForSequenceClassification...)."""
    name = type(model).__name__
    return name.endswith("Model") and "For" not in name and "LMHead" not in name and "WithHead" not in name


def _multiple_choice(model) -> bool:
    """Whether ``model`` is a multiple-choice head (BertForMultipleChoice...): input_ids [batch, choices, seq]."""
    return type(model).__name__.endswith("ForMultipleChoice")


def _learned_positions(model, limit: int) -> str | None:
    """The name of the model's learned absolute position table for text (an nn.Embedding named like 'wpe' or
    '*position*embed*' with at least ``limit`` rows: OPT's has limit + 2; a vision tower's smaller patch-position
    table is not it), else None (rotary / relative / ALiBi positions have none)."""
    import torch.nn as nn

    for name, mod in model.named_modules():
        leaf = name.rsplit(".", 1)[-1].lower()
        if isinstance(mod, nn.Embedding) and (leaf == "wpe" or ("pos" in leaf and "embed" in leaf)) \
                and limit <= mod.num_embeddings <= limit + 2:
            return name
    return None


# token mixers transformers runs through a fused CUDA kernel when its package is installed and the inputs are on a GPU,
# else through a reference PyTorch path, which the trace (meta tensors, no kernel package) records: (a module-level
# function of the modeling file that has the mixer, the note). Mamba-1 and RWKV's paths loop over the tokens in
# Python (review: RWKV 52,901 launched ops per step; Mamba's backward 97 ms against a 17 ms forward).
_UNFUSED_SCANS = (
    ("mamba_selective_scan",
     "selective scan (Mamba): the estimate prices transformers' pure-PyTorch sequential path, a Python loop over the "
     "tokens (a few small kernels per token and layer, forward and backward), which transformers runs when mamba-ssm "
     "/ causal-conv1d are not installed; with them, on a GPU, it calls mamba-ssm's fused selective-scan kernel (one "
     "kernel per layer, no per-token launches), so a real run with those kernels is much faster than this estimate"),
    ("rwkv_linear_attention_cpu",
     "WKV attention (RWKV): the estimate prices transformers' pure-PyTorch sequential path (rwkv_linear_attention_cpu), "
     "a Python loop over the tokens (a few small kernels per token and layer, forward and backward), which "
     "transformers runs without its custom CUDA kernel (kernels-community/rwkv, loaded through the kernels package "
     "when the model is built on a GPU); with it, one WKV kernel per layer runs the sequence, so a real run with the "
     "kernel is much faster than this estimate"),
    ("mamba2_chunk_scan",
     "SSD scan (Mamba-2): the estimate prices transformers' pure-PyTorch chunked scan (unfused: many small kernels "
     "per layer), which transformers runs when mamba-ssm / causal-conv1d are not installed; with them, on a GPU, it "
     "calls mamba-ssm's fused chunked-scan kernels, so a real run with those kernels is faster than this estimate"),
)


def unfused_scan_notes(model) -> list[str]:
    """The assumption lines for the token mixers of ``model`` that the trace records on transformers' reference
    PyTorch path while a GPU run with the kernel package installed uses a fused kernel (:data:`_UNFUSED_SCANS`)."""
    import sys

    files = {type(m).__module__ for m in model.modules()}
    found = {fn for fn, _ in _UNFUSED_SCANS for f in files
             if f.startswith("transformers.") and callable(getattr(sys.modules.get(f), fn, None))}
    return [note for fn, note in _UNFUSED_SCANS if fn in found]


def _check_length(model, sl: int, mp: int | None, field: str | None = None) -> list[str]:
    """The notes for sequence length ``sl`` against ``mp`` positions, read from the config's ``field``; an
    InputError where the model has a learned position table and ``sl`` runs past it (indices past it do not exist:
    the model cannot run), naming the field to raise (review: Whisper's hint named max_position_embeddings /
    n_positions, which WhisperConfig does not have: its decoder's limit is max_target_positions)."""
    learned = _learned_positions(model, mp) if mp and sl > mp else None
    if learned:
        raise InputError(f"--seq-len {sl} exceeds the {mp} learned position embeddings of this "
                         f"{type(model).__name__} ({learned}): it cannot run that length; raise "
                         f"{field or 'max_position_embeddings / n_positions'} in the config to cost a longer context")
    if mp and sl > mp:  # costed as asked: rotary / relative positions run past their trained context
        return [f"--seq-len {sl} exceeds the config's maximum positions {mp}: the model has no learned position "
                "table (rotary / relative positions, as Llama's), so it runs that length, past its trained context "
                "only with context extension; costed at the length given"]
    return []


def max_text_len(config) -> int | None:
    """The config's ``max_text_len`` (Grounding DINO, MM Grounding DINO: the text tokens the model reads per sample,
    default 256 under its text encoder's 512 positions), or None."""
    v = getattr(config, "max_text_len", None)
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _check_text_len(model, config, seq_len: int | None, ids: TensorSpec | None) -> None:
    """An InputError where the text input runs past the config's ``max_text_len``: Grounding DINO's model cuts
    longer text to that length (the trace would cost fewer tokens than counted) and its detection head, whose logits
    are max_text_len wide, failed with a raw "RuntimeError: Attempting to broadcast a dimension of length 256"."""
    cap = max_text_len(config)
    if cap is None or ids is None or not ids.shape:
        return
    sl = int(seq_len) if seq_len else int(ids.shape[-1])
    if sl <= cap:
        return
    given = f"--seq-len {sl}" if seq_len else f"input_ids {ids.dtype}[{','.join(map(str, ids.shape))}]"
    raise InputError(f"{given} exceeds the config's max_text_len {cap}: {type(model).__name__} reads at most {cap} "
                     f"text tokens per sample (longer text is cut to max_text_len); pass "
                     f"{f'--seq-len {cap}' if seq_len else f'input_ids of {cap} tokens'} or less, or raise max_text_len "
                     "in the config")


# model types whose position ids start after the padding index (create_position_ids_from_input_ids): a table of
# max_position_embeddings rows runs max_position_embeddings - pad_token_id - 1 tokens (roberta-base: 514 -> 512)
_POSITIONS_AFTER_PADDING = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm",
                            "data2vec-text", "ibert", "longformer")


def max_positions(config) -> int | None:
    return max_positions_field(config)[0]


def max_positions_field(config) -> tuple[int | None, str | None]:
    """The config's maximum positions and the field they were read from (dotted for a sub-config:
    "text_config.max_position_embeddings"), or (None, None)."""
    # a two-tower model (CLIP): its text tower's; a composite encoder-decoder (EncoderDecoderModel,
    # VisionEncoderDecoderModel): the smaller of its encoder's and decoder's
    subs = [(n, c) for n in ("decoder", "encoder") for c in (getattr(config, n, None),)
            if c is not None and hasattr(c, "model_type")]  # sub-configs, not other attributes of those names
    if subs and getattr(config, "max_position_embeddings", None) is None:
        # a composite encoder-decoder: the default length feeds both stacks, so the shorter one's limit
        limits = [(m, f"{n}.{f}") for n, c in subs for m, f in (max_positions_field(c),) if m]
        return min(limits, key=lambda x: x[0]) if limits else (None, None)
    for sub, cfg in (("", config), ("text_config.", getattr(config, "text_config", None))):
        for k in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
            v = getattr(cfg, k, None)
            if isinstance(v, int) and v > 0:
                pad = getattr(cfg, "pad_token_id", None)
                if getattr(cfg, "model_type", None) in _POSITIONS_AFTER_PADDING and isinstance(pad, int) \
                        and 0 <= pad < v - 1:
                    return v - pad - 1, sub + k
                return v, sub + k
    return None, None


# quant_method values (transformers.utils.quantization_config.QuantizationMethod) whose checkpoints store their
# weights as floats of 8 or 4 bits in blocks that training dequantizes (DeepSeek-V3's block-wise fp8; gpt-oss's
# mxfp4 experts, which OpenAI's fine-tuning cookbook loads with Mxfp4Config(dequantize=True)): the architecture is
# costed as today, the storage format named. Every other quant_method (bitsandbytes, gptq, awq, aqlm, hqq, quanto,
# eetq, torchao, gguf, bitnet, ...) holds integer (or otherwise packed) base weights that wattlint does not model.
_FLOAT_STORAGE_QUANT = {"fp8": "FP8", "fbgemm_fp8": "FP8", "mxfp8": "MXFP8", "mxfp4": "MXFP4"}


def quantization_note(config, where: str) -> str | None:
    """The config's ``quantization_config`` (a quantized checkpoint's): None without one; for a float storage
    format training dequantizes (fp8, mxfp4), the assumption line saying the checkpoint's storage is not what
    training runs in; for integer-quantized base weights (bitsandbytes 4 / 8-bit as QLoRA loads them, GPTQ, AWQ,
    ...) InputError: wattlint would cost them as a full fp32 fine-tune (review s54: an 8B nf4 checkpoint read
    219 GiB, 'does not fit' a 4090, where QLoRA runs in 6-10 GiB)."""
    qc = getattr(config, "quantization_config", None)
    if qc is None:
        return None
    if not isinstance(qc, Mapping):
        qc = qc.to_dict() if hasattr(qc, "to_dict") else vars(qc)
    method = str(qc.get("quant_method") or "").lower()
    if not method and (qc.get("load_in_4bit") or qc.get("load_in_8bit")):
        method = "bitsandbytes"
    if method in _FLOAT_STORAGE_QUANT:
        fmt = _FLOAT_STORAGE_QUANT[method]
        return (f"the config's quantization_config (quant_method {method}) describes the checkpoint's {fmt} weight "
                f"storage, not the training precision: costed as the plan's precision runs it (--precision fp8 for "
                f"FP8 training, bf16 for a dequantized bf16 fine-tune), the {fmt} storage not modelled")
    if method == "compressed-tensors" and str(qc.get("format") or "") == "float-quantized":
        return ("the config's quantization_config (compressed-tensors, float-quantized) describes the checkpoint's "
                "FP8 weight storage, not the training precision: costed as the plan's precision runs it (--precision "
                "fp8 for FP8 training), the FP8 storage not modelled")
    if method == "bitsandbytes":
        what = ("bitsandbytes 4-bit " + str(qc.get("bnb_4bit_quant_type") or "nf4")
                if qc.get("load_in_4bit") or qc.get("_load_in_4bit") else "bitsandbytes 8-bit (LLM.int8())")
    else:
        bits = qc.get("bits") or qc.get("w_bit") or qc.get("nbits")
        what = f"{method or 'unnamed'}" + (f" {bits}-bit" if isinstance(bits, int) else "")
    raise InputError(f"{where}: quantization_config ({what}): wattlint does not model quantized (4 / 8-bit integer) "
                     f"base weights, their dequantize kernels or their memory; remove the quantization_config block "
                     f"to cost a full-precision fine-tune of this architecture, or pass a PyTorch factory "
                     f"(file.py:fn) building the base in bf16 with frozen weights + LoRA adapters to approximate a "
                     f"QLoRA run's compute (not its memory)")


def analyze_config(path_or_config, *, inputs: Mapping[str, TensorSpec] | None = None, micro_batch: int | None = None,
                   seq_len: int | None = None, precision: str = "default", optimizer: str = "adamw",
                   activation_checkpointing: bool = False, assumptions: Sequence[str] = (),
                   capacity_factor: float = 1.0, optimizer_impl: str = "foreach",
                   attention: str = "sdpa", grads_to_none: bool = True) -> CostGraph:
    """Trace one training step of the model a Hugging Face config describes. Mixture-of-experts layers are traced
    at their routed cost (balanced routing, ``capacity_factor`` rows per expert; see ``torch_moe``)."""
    tf = require("wattlint.frontends.torch", _WHAT, "hf")
    if attention not in tf.ATTENTION_MODES:
        raise InputError(f"unknown attention {attention!r} (sdpa or eager)")

    if isinstance(path_or_config, (str, os.PathLike, Mapping)):
        config = load_config(path_or_config)
        source = str(path_or_config) if not isinstance(path_or_config, Mapping) else "config"
    else:
        config = path_or_config
        source = type(config).__name__
    quant_note = quantization_note(config, source)  # refuses integer-quantized base weights (QLoRA, GPTQ, AWQ)
    _check_routing(config)
    _check_image_pooling(config)
    _check_pixel_shuffle(config)
    filled = defaulted_sizes_note(config)  # taken at once: a failing build below must not leave it behind
    saved_dtype = getattr(config, "dtype", None) if hasattr(config, "dtype") else getattr(config, "torch_dtype", None)
    model = build_model(config, attention)
    notes = list(assumptions)
    if quant_note:
        notes.append(quant_note)
    if filled:
        notes.append(filled)
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None) or attention
    notes.append(f"model: {type(model).__name__} built from the config with random (meta) weights, "
                 f"attn_implementation={impl}, use_cache=False")
    sinks = sink_attention_modules(model) if impl == "eager" else {}
    if impl != attention and has_attention(model):
        # (review s54: ResNet / Mamba, with no attention at all, were said to have no sdpa attention path)
        notes.append(eager_fallback_note(model, attention, impl, bool(sinks)))
    notes += list(getattr(model, "_wattlint_build_notes", None) or ())
    notes += unfused_scan_notes(model)
    archs = [str(a) for a in (getattr(config, "architectures", None) or [])]
    if archs and type(model).__name__ not in archs:
        import difflib

        import transformers

        known = [n for n in dir(transformers) if n[:1].isupper()]
        near = [m for a in archs for m in difflib.get_close_matches(a, known, n=1, cutoff=0.85) if m != a]
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        notes.append(f"architectures {archs}: no such class in transformers {transformers.__version__}{hint}; built "
                     f"the base model of model_type {getattr(config, 'model_type', '?')!r} instead "
                     f"({type(model).__name__}: no task head, so no LM / classification head is costed)")
    if not archs:  # AutoModel: the base model, without the head a config's architectures would name
        notes.append(f"no 'architectures' in the config: built {type(model).__name__}, the base model of model_type "
                     f"{getattr(config, 'model_type', '?')!r}: no task head, so no LM / classification head or its "
                     "loss is costed (add e.g. \"architectures\": [\"...ForCausalLM\"] to cost it)")
    saved = str(saved_dtype).rsplit(".", 1)[-1] if saved_dtype is not None else ""
    if saved and saved != "float32":
        notes.append(f"weights: float32 master weights for training (the config's dtype {saved} is the "
                     "checkpoint's storage dtype; use --precision bf16/fp16 for mixed precision)")
    specs = dict(inputs or {})
    dec = ("decoder_input_ids", "decoder_inputs_embeds", "labels")
    if specs and getattr(config, "is_encoder_decoder", False) and not any(k in specs for k in dec):
        # an encoder-decoder given only its encoder input (Whisper's input_features): its decoder needs tokens too
        # (transformers failed: 'You cannot specify both decoder_input_ids and decoder_inputs_embeds')
        first = next(iter(specs.values()))
        # the micro-batch the trace rebinds the inputs to (--batch-size), else the encoder input's own
        mb = int(micro_batch) if micro_batch else (int(first.shape[0]) if first.shape else 1)
        cap, field = getattr(config, "max_target_positions", None), "max_target_positions"
        if not cap:
            cap, field = max_positions_field(config)
        sl = seq_len or (min(DEFAULT_SEQ_LEN, cap) if isinstance(cap, int) and cap > 0 else DEFAULT_SEQ_LEN)
        if seq_len is not None:  # the decoder's length: checked as a text model's (Whisper: 448 learned positions)
            notes += _check_length(model, sl, cap if isinstance(cap, int) and cap > 0 else None, field)
        specs["decoder_input_ids"] = TensorSpec("decoder_input_ids", "int64", (mb, sl))
        notes.append(f"decoder_input_ids: int64[{mb}, {sl}] added (an encoder-decoder's decoder tokens; pass "
                     "--input decoder_input_ids=int64[B,S] or --seq-len to change)")
    frames = _frames_per_batch(config)
    if not specs:
        mb = micro_batch or max(DEFAULT_BATCH, frames)
        if seq_len is None:
            mp = max_positions(config)
            sl = min(DEFAULT_SEQ_LEN, mp) if mp else DEFAULT_SEQ_LEN
            tl = max_text_len(config)
            if tl and sl > tl:  # Grounding DINO: 256 text tokens, under its BERT's 512 positions
                sl = tl
                notes.append(f"sequence length: {sl} text tokens (default: the config's max_text_len, the most text "
                             f"{type(model).__name__} reads per sample; pass --seq-len for a shorter prompt)")
            elif getattr(model, "main_input_name", "input_ids") == "input_ids":
                notes.append(f"sequence length: {sl} (default; pass --seq-len)")
            elif getattr(config, "is_encoder_decoder", False):  # an image / audio encoder's text decoder
                notes.append(f"decoder sequence length: {sl} (default; pass --seq-len)")
        else:
            sl = seq_len
            notes += _check_length(model, sl, *max_positions_field(config))
        specs = default_inputs(model, config, mb, sl)
        if "pixel_values" in specs:
            _patch_sequence_images(model, config, mb, sl)
        if "aspect_ratio_ids" in specs:
            pv = specs["pixel_values"].shape
            notes.append(f"images: one image per sample in max_num_tiles = {pv[2]} tiles of {pv[4]} x {pv[5]} "
                         f"(pixel_values [{mb}, 1, {pv[2]}, {pv[3]}, {pv[4]}, {pv[5]}]: {type(model).__name__}'s image "
                         "processor pads every image to max_num_tiles tiles, so its vision tower runs them all), "
                         "with aspect_ratio_ids, aspect_ratio_mask and a cross_attention_mask letting every text token "
                         f"attend to the image; pass --input input_ids=int64[{mb},{sl}] alone to cost the text-only step")
        if _multiple_choice(model) and len(specs["input_ids"].shape) == 3:
            notes.append(f"input_ids: int64[{mb}, {DEFAULT_CHOICES}, {sl}]: {type(model).__name__} takes [batch, "
                         f"choices, seq]; {DEFAULT_CHOICES} choices per question assumed (SWAG, RACE), each a "
                         f"sequence of {sl} tokens; pass --input input_ids=int64[B,C,S] for another count")
        if micro_batch is None:
            notes.append(f"batch: micro-batch {mb} (default; pass --batch-size)" if frames <= 1 else
                         f"batch: micro-batch {mb} frames: one video of num_frames = {frames} (default; pass "
                         f"--batch-size, a multiple of {frames})")
        micro_batch = mb
    elif seq_len is not None and not getattr(config, "is_encoder_decoder", False):
        notes += _check_length(model, seq_len, *max_positions_field(config))  # --input shapes rebound to --seq-len
        cross, given_ids = specs.get("cross_attention_mask"), specs.get("input_ids")
        if (cross is not None and given_ids is not None and len(cross.shape) == 4 and given_ids.shape
                and cross.shape[1] == given_ids.shape[-1] != seq_len):
            # Mllama's [B, S, images, tiles] mask: its sequence is dim 1, which the trace's rebinding of integer
            # inputs (the last dim) does not move (review s54: --seq-len 64 over [B, 32, 1, 4] failed "The expanded
            # size of the tensor (64) must match the existing size (32)")
            specs["cross_attention_mask"] = dataclasses.replace(cross, shape=(cross.shape[0], seq_len, *cross.shape[2:]))
    if frames > 1:
        pv = specs.get("pixel_values")
        mb = micro_batch or (int(pv.shape[0]) if pv is not None and pv.shape else 0)
        if mb % frames:
            raise InputError(f"{type(model).__name__} takes the frames of its videos as the batch (pixel_values "
                             f"[videos x num_frames, C, H, W], num_frames = {frames}): the micro-batch of {mb} is "
                             f"not a whole number of videos; make the micro-batch a multiple of {frames} "
                             f"(--batch-size {frames} on one GPU: one video)")
    ids = specs.get("input_ids")
    _check_text_len(model, config, seq_len, ids)
    window = sliding_window_note(config, seq_len or (int(ids.shape[-1]) if ids is not None and ids.shape else 0),
                                 impl)
    if window:
        notes.append(window)
    notes += local_global_attention(model, config, seq_len or (int(ids.shape[-1]) if ids is not None and ids.shape
                                                               else 0), specs)
    try:
        with _quiet():
            graph = tf.trace_with_inputs(model, None, specs, source=source, micro_batch=micro_batch, seq_len=seq_len,
                                         precision=precision, optimizer=optimizer,
                                         activation_checkpointing=activation_checkpointing, assumptions=notes,
                                         hf=True, capacity_factor=capacity_factor,
                                         optimizer_impl=optimizer_impl, attention=attention,
                                         grads_to_none=grads_to_none)
    except InputError as e:
        unset = _unset_top_k(config)
        if unset and "'k' must be int, not NoneType" in str(e.__cause__ or e):
            raise InputError(f"the config has {unset[1]} = {unset[2]} routed experts but {unset[0]} is null: set how "
                             f"many experts each token is routed to (top-k)") from None
        unset_rope = _unset_mrope_section(model, config, e)
        if unset_rope:
            raise InputError(unset_rope) from None
        hint = _missing_inputs_hint(model, e, specs, defaulted=not inputs)
        tiled = _tiled_images_hint(model, e, specs)
        if tiled:  # Mllama: the hint named the first image input its code missed, not the others it needs
            hint = f"{hint[:-1]}; {tiled})" if hint.endswith(")") else f" ({tiled})"
        if hint:
            raise InputError(f"{e}{hint}") from None
        raise
    extra: dict = {}
    if impl != attention and impl in tf.ATTENTION_MODES:
        # the attention that ran, not the one asked for (gpt-oss: eager for its attention sinks under --attention
        # sdpa); what was asked is kept beside it
        extra["attention"], extra["attention_asked"] = impl, attention
    if sinks and attention != "eager":
        # eager only because transformers has no other path for attention sinks (not asked for): the megatron
        # stack (wattlint.stack) prices these modules' attention cores as Transformer Engine's fused kernel
        extra["sink_attention"] = sinks
        # the ones whose attention is not causal (OpenAI's privacy filter: a bidirectional encoder whose sliding
        # window reaches both ways), which the fused kernel prices as such
        bidirectional = sorted(n for n in sinks if not sink_attention_is_causal(model.get_submodule(n)))
        if bidirectional:
            extra["sink_attention_bidirectional"] = bidirectional
    if type(model).__name__ not in archs:  # the base model: the reports' header says no task head is costed
        extra["no_task_head"] = type(model).__name__
    if _base_class(model):
        # a base model (GPT2Model, BertModel; named by `architectures` or built for want of one): its embedding
        # tables that only an nn.Embedding uses are looked up, no FLOPs, and with no head they feed no matmul:
        # MFU's 6 N leaves them out (review s52: tables of a tower the step never runs are idle parameters, not
        # counted twice; a table tied to a projection, FSMT's output_projection, runs a matmul and stays)
        extra["lookup_only_params"] = int(graph.extra.get("embedding_lookup_params") or 0)
    heads = _heads(getattr(model, "config", None) or config)
    if heads is not None:
        # the config's head counts: transformers repeats grouped key / value heads before SDPA, so the traced
        # kernels do not show them (wattlint.parallel.attention_heads reads this for the tensor-parallel split)
        extra["attention_heads"] = list(heads)
    # traced through the torch frontend, built from a Hugging Face config: the report's model.format says which
    # (wattlint.estimate/1 and wattlint.analysis/1 list "hf"; JSON users could not tell the two apart)
    graph = dataclasses.replace(graph, model=dataclasses.replace(graph.model, format="hf"))
    return dataclasses.replace(graph, extra={**(graph.extra or {}), **extra}) if extra else graph


def sink_attention_modules(model) -> dict[str, int]:
    """The attention modules with attention sinks (gpt-oss: a learned logit per head, ``sinks``, appended to every
    softmax row), each with its sliding window (0: attends over the whole sequence; else the module's
    ``sliding_window`` w, which transformers' FlashAttention path passes as ``window_size=(w - 1, w - 1)``: a query
    sees the w - 1 keys before it, and after it too where the attention is not causal,
    :func:`sink_attention_is_causal`)."""
    out: dict[str, int] = {}
    for name, m in model.named_modules():
        p = getattr(m, "sinks", None)
        if name and p is not None and getattr(p, "dim", lambda: 0)() == 1:
            w = getattr(m, "sliding_window", None)
            out[name] = int(w) if isinstance(w, int) and not isinstance(w, bool) and w > 0 else 0
    return out


def sink_attention_is_causal(module) -> bool:
    """Whether an attention module's attention is causal: transformers' attention classes say so in ``is_causal``,
    which its SDPA / FlashAttention paths read (gpt-oss True: create_causal_mask / create_sliding_window_causal_mask;
    OpenAI's privacy filter False: an encoder whose mask is create_bidirectional_sliding_window_mask, |q - k| <=
    config.sliding_window). A module without the attribute is taken as causal, as the decoders with sinks are."""
    c = getattr(module, "is_causal", True)
    return bool(c) if isinstance(c, bool) else True


def has_attention(model) -> bool:
    """Whether the model has an attention layer (a module class named ``*Attention*`` / ``*Attn*``, or
    nn.MultiheadAttention): transformers builds every model without an SDPA path with attn_implementation="eager",
    convolutional and state-space models (ResNet, Mamba) too, where no attention runs to be said eager."""
    import torch.nn as nn

    return any(isinstance(m, nn.MultiheadAttention) or "attention" in type(m).__name__.lower()
               or "attn" in type(m).__name__.lower() for m in model.modules())


def eager_fallback_note(model, asked: str, impl: str, sinks: bool) -> str:
    """The line saying the attention implementation built is not the one asked for (review: gpt-oss was costed
    with eager attention under the default / explicit ``--attention sdpa`` and only ``attn_implementation=eager``
    said so, not why nor that the flag was not applied)."""
    import transformers

    cls = type(model).__name__
    # the frontend is not told whether --attention was given (review s54: an explicit --attention sdpa was called
    # "the default"): both readings said
    flag = ("--attention sdpa (asked, or the default without --attention)" if asked == "sdpa"
            else f"--attention {asked}")
    if sinks and impl == "eager":
        gpt_oss = getattr(getattr(model, "config", None), "model_type", None) == "gpt_oss"
        how = (": OpenAI's gpt-oss cookbook loads it with attn_implementation=\"eager\"" if gpt_oss else "")
        return (f"attention: eager, not SDPA: {cls} appends a learned sink logit per head to every softmax row "
                f"(attention sinks), which transformers {transformers.__version__}'s SDPA path cannot take (the class "
                f"declares no SDPA support), so {flag} is not applied: the step is priced as transformers runs it, "
                "separate QK^T / softmax / PV kernels storing the attention probabilities for backward (as HF Trainer "
                f"/ TRL fine-tune it{how}); "
                "--training-stack megatron prices Transformer Engine's fused attention with learnable sinks instead")
    return (f"attention: {impl}, not {asked}: {cls} has no {asked} attention path in transformers "
            f"{transformers.__version__} (the class does not declare it), so {flag} is not applied")


def _sliding_layers(config) -> tuple[int, list[int], int] | None:
    """(window, the indices of the layers it applies to, the number of layers) of a sliding-window config, else
    None: Gemma 2 / 3, Qwen2 (use_sliding_window) and others list "sliding_attention" in ``layer_types``; Mistral's
    ``sliding_window`` applies to every layer."""
    cfg = getattr(config, "text_config", None) or config
    w = getattr(cfg, "sliding_window", None)
    if not isinstance(w, int) or isinstance(w, bool) or w <= 0 or getattr(cfg, "use_sliding_window", True) is False:
        return None
    types = getattr(cfg, "layer_types", None)
    if isinstance(types, (list, tuple)) and types:
        return w, [i for i, t in enumerate(types) if t == "sliding_attention"], len(types)
    n = getattr(cfg, "num_hidden_layers", None)
    return (w, list(range(n)), n) if isinstance(n, int) and n > 0 else None


def windowed_pairs(s: int, w: int) -> int:
    """Query-key pairs per head of causal attention over ``s`` tokens with a window of ``w`` (each query sees
    itself and the w - 1 tokens before it): sum over i < s of min(i + 1, w)."""
    full = min(s, w)
    return full * (full + 1) // 2 + (s - full) * w


def sliding_window_note(config, s: int, attention: str = "sdpa") -> str | None:
    """The assumption line for a sliding window smaller than the traced sequence ``s`` (review: the trace prices
    attention over the whole square as SDPA with transformers' dense mask, or eager attention, computes it, but no
    line said the window, and Gemma 2 said nothing): the window, the layers it applies to, and the pairs a windowed
    FlashAttention-2 kernel would compute instead."""
    got = _sliding_layers(config)
    if not got or s <= 0:
        return None
    w, layers, n = got
    if not layers or w >= s:
        return None
    if len(layers) == n:
        which = f"all {n} layers"
    elif len(layers) >= 2 and layers[0] in (0, 1) and layers == list(range(layers[0], n, 2)):
        shown = ", ".join(map(str, layers[:3])) + (", ..." if len(layers) > 3 else "")
        which = f"alternate layers ({len(layers)} of {n}: {shown}; the others attend over the whole sequence)"
    else:
        shown = ", ".join(map(str, layers[:8])) + (", ..." if len(layers) > 8 else "")
        which = f"{len(layers)} of the {n} layers ({shown}; the others attend over the whole sequence)"
    fa = windowed_pairs(s, w)
    return (f"sliding-window attention: the config's sliding_window = {w:,} tokens (< the traced sequence of {s:,}) "
            f"applies to {which}; those layers are priced over all {s:,} x {s:,} = {s * s:,} query-key pairs per "
            f"head and sequence, as transformers' {'eager attention' if attention == 'eager' else 'SDPA'} runs them "
            f"with a dense window mask (the masked pairs computed, then discarded); a windowed FlashAttention-2 "
            f"kernel (attn_implementation=flash_attention_2) would compute {fa:,} (sum over positions i of "
            f"min(i + 1, {w:,})), {fa / (s * s):.1%} of them")


# the self-attention of Longformer / LED's encoder: a sliding window over a sequence padded to a multiple of
# attention_window, plus global attention for the tokens the global_attention_mask marks
_LOCAL_GLOBAL_ATTENTION = ("LongformerSelfAttention", "LEDEncoderSelfAttention")


def local_global_attention(model, config, s: int, specs: Mapping[str, TensorSpec]) -> list[str]:
    """Prepare a Longformer / LED model for the trace and return the notes saying how its attention is costed.

    Its encoder decides whether any token has global attention by reading the mask's values
    (``is_index_global_attn.flatten().any().item()``) and counts the global tokens per sequence from them; on meta
    tensors the read answers True and the counts disagree (every element selected vs the sequence length), so the
    trace failed on transformers' bare ``assert attn_probs.size(3) == 2 * window_overlap + 1`` (review sweep). The
    answer is what the model's own forward sets: ``XxxForSequenceClassification`` puts global attention on the
    first (CLS) token of each sequence, so one global token per sequence is traced (its global query / key / value
    projections and its attention over the whole sequence); the other classes give none unless a
    ``global_attention_mask`` is passed, which cannot be read on meta tensors (refused, naming what is costed)."""
    attns = [m for m in model.modules() if type(m).__name__ in _LOCAL_GLOBAL_ATTENTION]
    if not attns:
        return []
    cls = type(model).__name__
    if "global_attention_mask" in specs:
        raise InputError(f"{cls}: a --input global_attention_mask cannot be costed (which tokens are global is read "
                         "from its values, which the trace does not have); leave it out to cost the sliding-window "
                         "attention alone" + (", or use a ...ForSequenceClassification architecture for global "
                                              "attention on the first token" if "ForSequenceClassification" not in cls
                                              else ""))
    # Longformer's own heads decide global attention from the data or the CLS token; LED's never do (review s53:
    # LEDForQuestionAnswering was refused for Longformer's reason and sent to a Longformer class its config lacks)
    longformer = type(model).__module__.endswith("modeling_longformer")
    if longformer and cls.endswith(("ForQuestionAnswering", "ForMultipleChoice")):
        # the forward marks the question tokens global, found by the positions of the separator tokens in the data
        raise InputError(f"{cls} puts global attention on the question's tokens, found from the separator tokens' "
                         "positions in input_ids, which the trace does not have; cost the same encoder with "
                         "\"architectures\": [\"LongformerForMaskedLM\"] (no global attention) or "
                         "[\"LongformerForSequenceClassification\"] (one global token)")
    n_global = 1 if longformer and cls.endswith("ForSequenceClassification") else 0
    for m in attns:
        if n_global:
            m._get_global_attn_indices = _first_token_global
        else:
            m.register_forward_pre_hook(_no_global_attention, with_kwargs=True)
    notes = []
    sub = getattr(config, "encoder", None) if getattr(config, "attention_window", None) is None else None
    w = getattr(sub or config, "attention_window", None)
    w = max(w) if isinstance(w, (list, tuple)) and w else w
    if isinstance(w, int) and w > 0:
        padded = -(-s // w) * w if s > 0 else 0
        said = (f"{cls}'s encoder attends over a sliding window of attention_window = {w:,} tokens "
                f"({w // 2:,} each side), computed as transformers runs it in overlapping chunks of {w:,} x {w:,}")
        if padded > s > 0:
            said += (f"; it pads each sequence to a multiple of attention_window: the {s:,} tokens run as {padded:,} "
                     f"({padded - s:,} padding tokens in the encoder, costed as the model runs them; a --seq-len that is a "
                     f"multiple of {w:,} wastes none)")
        notes.append(said)
    if n_global:
        notes.append(f"global attention: {cls} puts global attention on the first (CLS) token of each sequence, as "
                     "its forward does without a global_attention_mask: one global token per sequence costed")
    else:
        notes.append(f"global attention: none ({cls} gives no token global attention without a "
                     "global_attention_mask): sliding-window attention only")
    return notes


def _no_global_attention(_module, args, kwargs):
    """Forward pre-hook of a Longformer / LED self-attention: no token has global attention (the encoder's read of
    the mask answers True on meta tensors)."""
    return args, {**kwargs, "is_global_attn": False}


def _first_token_global(is_index_global_attn):
    """Longformer's ``_get_global_attn_indices`` for one global token per sequence, the first (as
    ``LongformerForSequenceClassification`` sets it): (the most global tokens in a sequence, the (batch, position)
    of each global token, its (batch, slot) among the global tokens, the (batch, slot) of the empty slots)."""
    import torch

    b, dev = is_index_global_attn.shape[0], is_index_global_attn.device
    rows = torch.arange(b, device=dev)
    first = torch.zeros(b, dtype=torch.long, device=dev)
    none = torch.zeros(0, dtype=torch.long, device=dev)
    return 1, (rows, first), (rows.clone(), first.clone()), (none, none.clone())


# forward parameters a model runs without (masks, positions, caches, labels, flags): not named as missing inputs
_OPTIONAL_INPUTS = frozenset((
    "attention_mask", "position_ids", "cache", "past_key_values", "inputs_embeds", "labels", "use_cache",
    "output_attentions", "output_hidden_states", "return_dict", "cache_position", "head_mask", "token_type_ids",
    "encoder_outputs", "mm_encoder_outputs", "return_loss", "logits_to_keep", "rope_deltas", "decoder_position_ids",
    "decoder_head_mask", "cross_attn_head_mask", "vision_feature_layer", "vision_feature_select_strategy",
    "interpolate_pos_encoding", "return_dict_in_generate", "kwargs"))


def _missing_inputs_hint(model, err: InputError, specs: Mapping[str, TensorSpec], defaulted: bool) -> str:
    """What to add to a trace failure where the model's code used an input that was not given (review: Qwen2-VL
    given pixel_values without image_grid_thw failed with "AttributeError: 'NoneType' object has no attribute
    'device'"), or read a default input in another layout than wattlint built it: the forward's inputs the error or
    the failing line names (Mllama: "`aspect_ratio_ids` must be provided"; Granite-Docling:
    ``pixel_attention_mask.sum(-1)`` on None), else its other inputs, named from its signature; '' for any other
    failure."""
    import inspect
    import re

    cause = err.__cause__
    if not isinstance(cause, (AttributeError, TypeError, ValueError)):
        return ""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return ""
    said, line = str(cause), _failing_line(cause)
    none_read = isinstance(cause, (AttributeError, TypeError)) and "NoneType" in said

    def named(name: str, text: str) -> bool:
        return bool(text) and re.search(rf"(?<![\w.]){re.escape(name)}\b", text) is not None

    # the inputs not given that the message names, or that the failing line reads where it read a None
    # (not the inputs a model runs without: Qwen2-VL's failing line reads position_ids, which it derives itself)
    needed = [p.name for p in params if p.default is None and p.name not in specs and p.name not in _OPTIONAL_INPUTS
              and (named(p.name, said) or (none_read and named(p.name, line)))]
    ids = specs.get("input_ids")
    text_only = ""
    if defaulted and "pixel_values" in specs and ids is not None:  # the image input was wattlint's default
        shape = ",".join(map(str, ids.shape))
        text_only = (f", or cost the text-only step with --input input_ids=int64[{shape}] (the default inputs added "
                     "pixel_values for the model's vision tower)")
    if needed:
        return (f" (the model's code needs {', '.join(needed)}, not given: {type(model).__name__}'s forward takes "
                f"{'it' if len(needed) == 1 else 'them'} beside {', '.join(specs)}; pass "
                f"{'it' if len(needed) == 1 else 'them'} with --input NAME=DTYPE[DIMS]{text_only})")
    built = [n for n in specs if n != "input_ids" and named(n, line)] if defaulted else []
    if built and not none_read:
        # a default input (pixel_values [B, C, H, W]) the model's code reads in another layout (HunYuan-VL: flattened
        # patches with image_grid_thw: "too many values to unpack")
        spec = specs[built[0]]
        others = [p.name for p in params if p.default is None and p.name not in specs
                  and p.name not in _OPTIONAL_INPUTS and not p.name.endswith(("_embeds", "_outputs"))]
        also = f" with the inputs its forward takes beside it ({', '.join(others)})" if others else ""
        return (f" (wattlint's default {built[0]}={spec.dtype}[{','.join(map(str, spec.shape))}] is not the layout "
                f"{type(model).__name__}'s code reads: `{line.strip()}`; pass --input {built[0]}=DTYPE[DIMS]{also}"
                f"{text_only})")
    if not none_read:
        return ""
    missing = [p.name for p in params if p.default is None and p.name not in specs
               and p.name not in _OPTIONAL_INPUTS and not p.name.endswith(("_mask", "_embeds", "_outputs"))
               and not p.name.startswith(("output_", "decoder_input"))]
    if not missing:
        return ""
    return (f" (the model used an input that was not given, None: {type(model).__name__}'s forward also takes "
            f"{', '.join(missing)}; pass the ones it needs with --input NAME=DTYPE[DIMS]{text_only})")


def _tiled_images_hint(model, err: InputError, specs: Mapping[str, TensorSpec]) -> str:
    """The image inputs of a model taking tiled images (Mllama) when the trace failed on one of them, with the shapes
    the default inputs use, else ''. Given pixel_values alone, Mllama's code names aspect_ratio_ids only ("must be
    provided"), then fails on aspect_ratio_mask, one at a time (review s54)."""
    import inspect

    cause = err.__cause__
    ids = specs.get("input_ids")
    vision = getattr(getattr(model, "config", None), "vision_config", None)
    if not isinstance(cause, (AttributeError, TypeError, ValueError, RuntimeError)) or ids is None or vision is None:
        return ""
    try:
        takes = set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return ""
    want = tiled_image_specs(vision, int(ids.shape[0]), int(ids.shape[-1]))
    if "aspect_ratio_ids" not in takes or "pixel_values" not in specs:
        return ""
    said = f"{cause} {_failing_line(cause)}"
    if not any(n in said for n in want):
        return ""
    tiles = want["pixel_values"].shape[2]
    flags = " ".join(f"--input {n}={t.dtype}[{','.join(map(str, t.shape))}]" for n, t in want.items())
    return (f"{type(model).__name__}'s images are {', '.join(want)} together: for one image per sample in "
            f"max_num_tiles = {tiles} tiles, {flags} (the masks' values are not read; with no --input at all "
            "wattlint builds these at --batch-size and --seq-len)")


def _unset_mrope_section(model, config, err: InputError) -> str | None:
    """The line for a multimodal-RoPE config without its ``mrope_section`` whose rotary embedding cannot run without
    one, else None. HunYuan-VL's text model rotates queries and keys over position axes the section list splits the
    head's frequencies into, and its rotary embedding reads ``len(self.mrope_section)`` for text-only input too:
    transformers' own default HunYuanVLConfig has none, and every input failed with "object of type 'NoneType' has
    no len()", which read as if an input were missing (review s54; its checkpoints ship
    ``rope_scaling.xdrope_section``, which transformers reads as ``mrope_section``)."""
    cause = err.__cause__
    if not (isinstance(cause, TypeError) and "NoneType" in str(cause)
            and "mrope_section" in _failing_line(cause)):
        return None
    text = getattr(config, "text_config", None)
    cfg, where = (text, "text_config.") if text is not None else (config, "")
    rope = getattr(cfg, "rope_parameters", None)
    if isinstance(rope, Mapping) and rope.get("mrope_section") is not None:
        return None
    hd = getattr(cfg, "head_dim", None)
    heads = getattr(cfg, "num_attention_heads", None)
    if not isinstance(hd, int) and isinstance(heads, int) and heads > 0:
        hd = getattr(cfg, "hidden_size", 0) // heads
    half = f" = {hd // 2}" if isinstance(hd, int) and hd > 0 else ""
    return (f"the config's {where}rope_parameters has no mrope_section: {type(model).__name__}'s rotary embedding "
            f"splits each head's rotary frequencies over its multimodal position axes by that list and cannot run "
            f"without it, text-only input included (transformers {_version()} reads len(mrope_section)); set "
            f"{where}rope_parameters.mrope_section (or rope_scaling.xdrope_section, as the checkpoints ship it) to "
            f"one integer per position axis summing to head_dim / 2{half}, e.g. [16, 16, 16, 16] for head_dim 128")


def _failing_line(exc: BaseException) -> str:
    """The source line of the innermost frame of ``exc``'s traceback that is transformers' model code (where a
    missing or mis-shaped input is read), else ''."""
    import linecache

    line, tb = "", exc.__traceback__
    while tb is not None:
        path = tb.tb_frame.f_code.co_filename.replace("\\", "/")
        if "/transformers/models/" in path:
            line = linecache.getline(path, tb.tb_lineno) or line
        tb = tb.tb_next
    return line


def _heads(config) -> tuple[int, int] | None:
    """(query heads, key / value heads) of a decoder / encoder config, or None when it does not say."""
    cfg = getattr(config, "text_config", None) or config
    h = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None)
    if not isinstance(h, int) or h <= 0:
        return None
    kv = getattr(cfg, "num_key_value_heads", None)
    return h, kv if isinstance(kv, int) and 0 < kv <= h else h
