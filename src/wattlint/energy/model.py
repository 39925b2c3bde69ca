"""Calibrated energy model: LightGBM corrections of the physics prior, saved as LightGBM TEXT + ``card.json``.

Two boosters, both on the feature rows of :func:`wattlint.energy.features.op_features` (one schema, versioned):

* ``time.txt``  predicts ``ln(measured time / prior time)`` of an op (the prior's time correction);
* ``power.txt`` predicts the op's power fraction ``(P - idle) / (tdp - idle)`` with the GPU spec's idle and
  board power (the same normalisation as the prior's ``activity``), so it transfers across GPUs.

Prediction for a record::

    time_s  = prior.time_s  * exp(time_model(row))
    power_w = gpu.idle_w + (gpu.tdp_w - gpu.idle_w) * clip(power_model(row), 0, 1.2)
    energy  = power_w * time_s

``card.json`` (schema ``wattlint.energy-model/1``) carries the feature names and their schema version, the GPU
spec key the data was measured on, the data provenance (run files + sha256), library versions, cross-validation
metrics with whole op families and whole shapes held out, and residual quantiles (p5/p95 of out-of-fold
``ln(measured/predicted)``) from which the estimator draws its 5-95 % ranges.

:func:`load_model` refuses a card whose feature schema does not match the running code. Never pickles.
lightgbm is imported only when a model is fitted or evaluated.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..io import atomic_write_texts, sha256_bytes
from ..types import WattlintError
from .predictor import PREDICT_THREADS

MODEL_SCHEMA = "wattlint.energy-model/1"
CARD = "card.json"
TIME_FILE = "time.txt"
POWER_FILE = "power.txt"
POWER_FRACTION_MAX = 1.2


class ModelError(WattlintError):
    """A calibrated model folder cannot be used (missing files, wrong schema, feature mismatch)."""


# ---- loading and prediction -----------------------------------------------------------------------------------

@dataclass
class EnergyModel:
    """A loaded calibrated model. ``predict_rows`` returns (time log-ratio, power fraction) per feature row."""

    path: Path
    card: dict[str, Any]
    _time: Any = field(repr=False, default=None)
    _power: Any = field(repr=False, default=None)
    previous: Path | None = None  # set by fit_model: where the model this fit replaced in its folder was kept

    @property
    def gpu_key(self) -> str:
        return str(self.card.get("gpu", {}).get("key", ""))

    @property
    def source(self) -> str:
        """Human label for estimates: ``h100-sxm5-80gb run 2026-12-01``."""
        return str(self.card.get("calibration_source") or f"{self.gpu_key} model")

    @property
    def is_cpu(self) -> bool:
        """A model fitted on CPU measurements (method check only; never a GPU calibration)."""
        return bool(self.card.get("gpu", {}).get("is_cpu"))

    @property
    def feature_names(self) -> list[str]:
        return list(self.card["features"]["names"])

    def residual_quantiles(self, target: str = "time", *, transferred: bool = False) -> tuple[float, float]:
        """(p5, p95) of out-of-fold ln(measured/predicted) for ``time`` | ``power`` | ``energy``.

        ``transferred``: the wider interval to use on a GPU that was never measured (see docs/CALIBRATION.md)."""
        r = self.card["residuals"][target]
        if transferred:
            tr = self.card["residuals"].get("transfer_widening", 2.0)
            return float(r["p5"]) * tr, float(r["p95"]) * tr
        return float(r["p5"]), float(r["p95"])

    def _boosters(self):
        if self._time is None:
            lgb = _import_lightgbm()
            try:
                self._time = lgb.Booster(model_str=(self.path / TIME_FILE).read_text())
                self._power = lgb.Booster(model_str=(self.path / POWER_FILE).read_text())
            except Exception as e:  # lightgbm raises LightGBMError on a corrupt text model
                raise ModelError(f"{self.path}: cannot read LightGBM text model: {e}") from None
        return self._time, self._power

    def predict_rows(self, rows: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
        """For each feature row: (ln time ratio measured/prior, power fraction clipped to [0, 1.2])."""
        if not rows:
            return []
        width = len(self.feature_names)
        for r in rows:
            if len(r) != width:
                raise ModelError(f"feature row has {len(r)} columns, model {self.path} expects {width}")
        t, p = self._boosters()
        import numpy as np

        x = np.asarray(rows, dtype=float)
        lt = t.predict(x, num_threads=PREDICT_THREADS)  # one thread: see wattlint.energy.public_fit
        pf = p.predict(x, num_threads=PREDICT_THREADS)
        return [(float(a), min(POWER_FRACTION_MAX, max(0.0, float(b)))) for a, b in zip(lt, pf)]

    def predict_one(self, row: Sequence[float]) -> tuple[float, float]:
        return self.predict_rows([row])[0]


def card_problem(card: Any, *, schema: bool = False) -> str | None:
    """Why a parsed ``card.json`` is not shaped as a model card (None when it is): a JSON object (of
    :data:`MODEL_SCHEMA`, with ``schema``) whose ``gpu`` entry is an object naming the GPU it was fitted on
    (``gpu.key``). The one check behind :func:`read_card` (so :func:`load_model`: ``validate --model``, CPU method
    checks) and the estimator's model search (``energy.predictor.card_problem``, which leaves the schema to
    load_model): a card of another shape ended ``validate`` with AttributeError (exit 3)."""
    if not isinstance(card, dict):
        return f"its card.json is unreadable or has no gpu entry (a JSON {type(card).__name__}, not an object)"
    if schema and card.get("schema") != MODEL_SCHEMA:
        return (f"its card.json is of model schema {str(card.get('schema'))[:40]!r}, this wattlint reads "
                f"{MODEL_SCHEMA!r}")
    g = card.get("gpu")
    if not isinstance(g, dict):
        return "its card.json is unreadable or has no gpu entry" + (
            f" (gpu = {json.dumps(g)[:40]}, not an object)" if g is not None else "")
    key = g.get("key")
    if not isinstance(key, str) or not key:
        return "its card names no GPU (gpu.key)"
    return None


def card_of(folder: str | Path, *, schema: bool = False) -> tuple[dict[str, Any] | None, str | None]:
    """``(card, None)`` for the card.json of a model folder that reads as UTF-8 JSON shaped as :func:`card_problem`
    requires, else ``(None, why)``."""
    card_path = Path(folder) / CARD
    if not card_path.is_file():
        return None, f"no {CARD} (not a wattlint model folder)"
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # ValueError: not JSON, or not UTF-8 (UnicodeDecodeError)
        why = e.strerror if isinstance(e, OSError) and e.strerror else " ".join(str(e).split())[:120]
        return None, f"its card.json is unreadable or has no gpu entry ({type(e).__name__}: {why})"
    problem = card_problem(card, schema=schema)
    return (None, problem) if problem else (card, None)


def read_card(folder: str | Path) -> dict[str, Any]:
    """The card of a model folder, of this wattlint's schema (:func:`card_of`); ModelError naming the folder when it
    cannot be used."""
    card, why = card_of(folder, schema=True)
    if card is None:
        raise ModelError(f"{Path(folder)}: {why}")
    return card


def load_model(path: str | Path) -> EnergyModel:
    """Load a model folder (card.json + time.txt + power.txt) after checking its card's schema and shape
    (:func:`read_card`) and feature columns."""
    from .features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION

    d = Path(path)
    card_path = d / CARD
    card = read_card(d)
    feats = card.get("features") if isinstance(card.get("features"), dict) else {}
    if str(feats.get("schema_version")) != str(FEATURE_SCHEMA_VERSION):
        raise ModelError(f"{card_path}: fitted on feature schema {feats.get('schema_version')!r}, this wattlint "
                         f"computes schema {FEATURE_SCHEMA_VERSION!r}; refit with 'wattlint fit'")
    names = feats.get("names")
    if not isinstance(names, list) or names != list(FEATURE_NAMES):
        raise ModelError(f"{card_path}: feature names differ from this wattlint's schema {FEATURE_SCHEMA_VERSION!r} "
                         f"columns; refit with 'wattlint fit'")
    files = card.get("files") if isinstance(card.get("files"), dict) else {}
    for f in (TIME_FILE, POWER_FILE):
        if not (d / f).is_file():
            raise ModelError(f"{d}: missing {f}")
        problem = lightgbm_text_problem(d / f, files.get(f))
        if problem:
            raise ModelError(problem)
    return EnergyModel(d, card)


def lightgbm_text_problem(path: Path, sha256: str | None = None) -> str | None:
    """Why ``path`` is not the whole LightGBM text model its card lists (None when it is), read once: its sha256
    when the card gives one (an edit after fitting), and its shape, as LightGBM's parser aborts the process
    (SIGABRT, no exception) on some truncated files: a model text starts with ``tree`` and holds the
    ``end of trees`` and ``end of parameters`` lines LightGBM writes."""
    try:
        with open(path, "rb") as fh:
            text = fh.read()
    except OSError as e:
        return f"{path}: unreadable: {e.strerror or e}"
    if sha256 and sha256 != sha256_bytes(text):
        return f"{path}: sha256 differs from the card (file edited after fitting)"
    if not text.startswith(b"tree") or b"end of trees" not in text or b"end of parameters" not in text:
        return f"{path}: not a whole LightGBM text model (truncated or not written by LightGBM)"
    if sha256 and _shipped(path):  # the package's own models, as their cards hash them: checked by the test suite
        return None  # (the structural pass costs ~0.13 s per estimate over the public-fit texts)
    why = _lightgbm_structure_problem(text)
    if why:
        return f"{path}: not a whole LightGBM text model ({why}; damaged or not written by LightGBM)"
    return None


def _shipped(path: Path) -> bool:
    """Whether ``path`` lies in the models folder shipped inside the wattlint package."""
    from importlib import resources

    try:
        return Path(path).resolve().is_relative_to(Path(str(resources.files("wattlint"))).resolve() / "models")
    except (OSError, ValueError, TypeError):
        return False


# LightGBM's parser (4.x) aborts the whole process (std::terminate: SIGABRT, no catchable LightGBMError) or reads
# past its buffer (SIGSEGV) when a tree block is not the size its header's tree_sizes gives, when an array's length
# is not the one num_leaves implies, or on a line without '='; a child index out of range, or a cycle, crashes or
# hangs prediction. A damaged file (a deleted, duplicated or edited line, swapped trees, a changed number) is
# refused by the structural check below before LightGBM sees it.
_TREE_INT_ARRAYS = {"split_feature": -1, "decision_type": -1, "left_child": -1, "right_child": -1,
                    "internal_count": -1, "leaf_count": 0}  # length: num_leaves + value
_TREE_FLOAT_ARRAYS = {"split_gain": -1, "threshold": -1, "internal_value": -1, "internal_weight": -1,
                      "leaf_value": 0, "leaf_weight": 0}
_TREE_REQUIRED = ("split_feature", "threshold", "decision_type", "left_child", "right_child")
_TREE_KEYS = set(_TREE_INT_ARRAYS) | set(_TREE_FLOAT_ARRAYS) | {"num_leaves", "num_cat", "is_linear", "shrinkage",
                                                                 "cat_boundaries", "cat_threshold"}


def _lightgbm_structure_problem(raw: bytes) -> str | None:
    """Why a LightGBM text model is not structurally whole (None when it is): every ``Tree=`` block has the byte
    size its ``tree_sizes`` entry gives, holds only ``key=value`` lines, a ``num_leaves`` of at least 1, arrays of
    the lengths num_leaves implies and numbers that parse, child indices that form one tree over its nodes and
    leaves, and split features within ``max_feature_idx``. Cheap: one pass over the text."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not UTF-8 text (byte {e.start})"
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # as read_text gives it to LightGBM
    head_end = text.find("\nTree=")
    end = text.find("\nend of trees")
    if head_end < 0 or end < 0 or end < head_end:
        return "no Tree= block before 'end of trees'"
    header: dict[str, str] = {}
    for line in text[:head_end].split("\n")[1:]:
        if line:
            if "=" not in line:
                return f"header line {line[:40]!r} is not key=value"
            k, v = line.split("=", 1)
            header[k] = v
    try:
        max_feature = int(header["max_feature_idx"])
        sizes = [int(x) for x in header["tree_sizes"].split()]
    except (KeyError, ValueError):
        return "its header lacks a whole max_feature_idx or tree_sizes"
    body = text[head_end + 1:end + 1].encode("utf-8")  # tree_sizes count bytes
    starts = [m.start() for m in re.finditer(rb"^Tree=", body, re.M)]
    if len(starts) != len(sizes):
        return f"{len(starts)} Tree= blocks, its tree_sizes lists {len(sizes)}"
    for i, (a, b) in enumerate(zip(starts, starts[1:] + [len(body)])):
        if b - a != sizes[i]:
            return f"tree {i} is {b - a} bytes, its tree_sizes entry says {sizes[i]}"
        why = _tree_problem(body[a:b].decode("utf-8"), max_feature)
        if why:
            return f"tree {i}: {why}"
    return None


def _tree_problem(block: str, max_feature: int) -> str | None:
    lines = block.split("\n")
    kv: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            break
        if "=" not in line:
            return f"line {line[:40]!r} is not key=value"
        k, v = line.split("=", 1)
        if k not in _TREE_KEYS:
            return f"unknown field {k[:40]!r}"
        if k in kv:
            return f"field {k!r} given twice"
        kv[k] = v
    if any(line for line in lines[len(kv) + 1:]):  # after the blank line that ends the tree: nothing but blanks
        return "text after the end of the tree"
    try:
        n = int(kv["num_leaves"])
        num_cat = int(kv.get("num_cat", "0"))
    except (KeyError, ValueError):
        return "no whole num_leaves / num_cat"
    if n < 1 or num_cat < 0:
        return f"num_leaves = {n}, num_cat = {num_cat}"
    if kv.get("is_linear", "0") != "0":
        return "a linear tree (is_linear), which wattlint never fits"
    if "leaf_value" not in kv or (n > 1 and any(k not in kv for k in _TREE_REQUIRED)):
        return "a field LightGBM needs is missing"
    arrays: dict[str, list] = {}
    for names, conv in ((_TREE_INT_ARRAYS, int), (_TREE_FLOAT_ARRAYS, float)):
        for k, extra in names.items():
            if k not in kv:
                continue
            toks = kv[k].split()
            want = n + extra
            if len(toks) != want and not (n == 1 and not toks and k in ("leaf_weight", "leaf_count")):
                return f"{k} has {len(toks)} values, num_leaves = {n} gives {want}"  # (a 1-leaf tree: may be empty)
            try:
                arrays[k] = [conv(x) for x in toks]
            except ValueError:
                return f"{k} holds a value that is not a number"
    if num_cat:
        try:
            bounds = [int(x) for x in kv["cat_boundaries"].split()]
            cats = kv["cat_threshold"].split()
        except (KeyError, ValueError):
            return "num_cat > 0 without whole cat_boundaries / cat_threshold"
        if len(bounds) != num_cat + 1 or bounds[0] != 0 or bounds != sorted(bounds) or bounds[-1] != len(cats):
            return "cat_boundaries do not match cat_threshold"
    if n == 1:
        return None
    if any(not 0 <= f <= max_feature for f in arrays["split_feature"]):
        return f"a split_feature outside 0..{max_feature}"
    left, right = arrays["left_child"], arrays["right_child"]
    seen_nodes, seen_leaves, todo = {0}, set(), [0]
    while todo:  # one tree: every node and leaf reached once from the root (no cycle, no index out of range)
        node = todo.pop()
        for child in (left[node], right[node]):
            if child >= 0:
                if child >= n - 1 or child in seen_nodes:
                    return f"child index {child} out of range or reached twice"
                seen_nodes.add(child)
                todo.append(child)
            else:
                leaf = ~child
                if leaf >= n or leaf in seen_leaves:
                    return f"leaf index {leaf} out of range or reached twice"
                seen_leaves.add(leaf)
    if len(seen_nodes) != n - 1 or len(seen_leaves) != n:
        return "nodes or leaves no split reaches"
    return None


# ---- fitting --------------------------------------------------------------------------------------------------

@dataclass
class FitData:
    """Rows for fitting: one per op record of a measured sample."""

    rows: list[list[float]]
    time_target: list[float]  # ln(measured sample time / prior sample time)
    power_target: list[float]  # measured power fraction of the sample
    weight: list[float]  # the record's share of its sample's prior time
    family: list[str]  # benchmark family (whole families are held out in CV)
    shape: list[str]  # family + shape key without dtype/phase (whole shapes are held out in CV)
    sample: list[str]  # sample id (records of one sample stay together)
    sample_time: list[float] = field(default_factory=list)  # measured seconds of the record's sample (for WAPE)


LGB_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 5,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "seed": 7,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
}
NUM_ROUNDS = 300


def _import_lightgbm():
    try:
        import lightgbm as lgb
    except ImportError:
        raise ModelError("lightgbm is not installed: 'pip install lightgbm' to fit or use calibrated models") \
            from None
    return lgb


def _train(lgb, x, y, w, rounds: int):
    ds = lgb.Dataset(x, label=y, weight=w, free_raw_data=False)
    return lgb.train(dict(LGB_PARAMS), ds, num_boost_round=rounds)


def _quantile(v: Sequence[float], q: float) -> float:
    s = sorted(v)
    if not s:
        return 0.0
    pos = q * (len(s) - 1)
    lo = int(math.floor(pos))
    hi = min(len(s) - 1, lo + 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _group_folds(groups: Sequence[str], k: int) -> list[list[int]]:
    """Deterministic folds that keep each group whole (greedy balance by size, groups sorted by hash)."""
    by: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by.setdefault(g, []).append(i)
    keys = sorted(by, key=lambda g: hashlib.sha256(g.encode()).hexdigest())
    k = max(2, min(k, len(keys)))
    folds: list[list[int]] = [[] for _ in range(k)]
    for g in sorted(keys, key=lambda g: -len(by[g])):
        min(folds, key=len).extend(by[g])
    return [f for f in folds if f]


def _sample_ratio_errors(data: FitData, idx: Sequence[int], pred_t, pred_p) -> dict[str, list[float]]:
    """Aggregate record predictions back to samples: weighted ln-ratio of time, power error."""
    agg: dict[str, list[float]] = {}
    for j, i in enumerate(idx):
        a = agg.setdefault(data.sample[i], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
        w = data.weight[i]
        a[0] += w * math.exp(pred_t[j])  # sum of share * corrected ratio = corrected/prior for the sample
        a[1] += w
        a[2] = data.time_target[i]
        a[3] += w * pred_p[j]
        a[4] = data.power_target[i]
        a[5] = data.sample_time[i] if data.sample_time else 1.0
    t_err, p_err, prior_t, meas_t = [], [], [], []
    for a in agg.values():
        ratio = a[0] / a[1] if a[1] else 1.0
        t_res = a[2] - math.log(ratio)  # ln(measured / predicted)
        pf = a[3] / a[1] if a[1] else 0.0
        t_err.append(t_res)
        p_err.append(a[4] - pf)
        prior_t.append(a[2])
        meas_t.append(a[5])
    return {"time": t_err, "power_frac": p_err, "prior_time": prior_t, "measured_s": meas_t}


def _metrics(res: dict[str, list[float]]) -> dict[str, float]:
    # residuals are ln(measured / predicted): |predicted - measured| / measured = |exp(-x) - 1|
    t = [abs(math.exp(-x) - 1) for x in res["time"]]
    pt = [abs(math.exp(-x) - 1) for x in res["prior_time"]]
    p = [abs(x) for x in res["power_frac"]]
    m = res.get("measured_s") or [1.0] * len(t)

    def wape(log_res):  # sum |predicted - measured| / sum measured: what a whole step made of these ops would see
        num = sum(abs(mt * math.exp(-x) - mt) for x, mt in zip(log_res, m))
        return num / sum(m) if m and sum(m) else float("nan")
    return {
        "samples": len(t),
        "time_wape": wape(res["time"]),
        "prior_time_wape": wape(res["prior_time"]),
        "time_mape": sum(t) / len(t) if t else float("nan"),
        "time_median_ape": _quantile(t, 0.5),
        "prior_time_mape": sum(pt) / len(pt) if pt else float("nan"),
        "power_fraction_mae": sum(p) / len(p) if p else float("nan"),
    }


def cross_validate(data: FitData, *, k: int = 5, rounds: int = NUM_ROUNDS) -> dict[str, Any]:
    """Out-of-fold metrics with whole op families held out, and with whole shapes held out."""
    lgb = _import_lightgbm()
    import numpy as np

    x = np.asarray(data.rows, dtype=float)
    out: dict[str, Any] = {}
    oof_for_residuals: dict[str, list[float]] = {}
    for name, groups in (("leave_family_out", data.family), ("leave_shape_out", data.shape)):
        folds = _group_folds(groups, k if name == "leave_shape_out" else len(set(groups)))
        res: dict[str, list[float]] = {"time": [], "power_frac": [], "prior_time": [], "measured_s": []}
        for test in folds:
            ts = set(test)
            train = [i for i in range(len(data.rows)) if i not in ts]
            if not train:
                continue
            tb = _train(lgb, x[train], np.asarray([data.time_target[i] for i in train]),
                        np.asarray([data.weight[i] for i in train]), rounds)
            pb = _train(lgb, x[train], np.asarray([data.power_target[i] for i in train]),
                        np.asarray([data.weight[i] for i in train]), rounds)
            r = _sample_ratio_errors(data, test, tb.predict(x[test]), pb.predict(x[test]))
            for key in res:
                res[key].extend(r[key])
        out[name] = _metrics(res)
        out[name]["folds"] = len(folds)
        if name == "leave_shape_out":
            oof_for_residuals = res
    return {"cv": out, "oof": oof_for_residuals}


def fit_model(data: FitData, out_dir: str | Path, *, gpu: dict[str, Any], provenance: dict[str, Any],
              calibration_source: str, k: int = 5, rounds: int = NUM_ROUNDS) -> EnergyModel:
    """Fit both boosters on all rows, cross-validate, and write ``out_dir`` (text models + card.json)."""
    from .features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION

    if len(set(data.sample)) < 10:  # say why the rows went: '0 samples' alone hid a damaged column
        dropped = (provenance.get("skipped_rows") if isinstance(provenance, dict) else None) or {}
        why = (f"; {sum(dropped.values())} row(s) dropped: "
               + ", ".join(f"{n} {reason}" for reason, n in sorted(dropped.items(), key=lambda x: (-x[1], x[0])))
               if dropped else "")
        raise ModelError(f"only {len(set(data.sample))} measured samples: too few to fit (need >= 10){why}")
    lgb = _import_lightgbm()
    import numpy as np

    x = np.asarray(data.rows, dtype=float)
    w = np.asarray(data.weight, dtype=float)
    cv = cross_validate(data, k=k, rounds=rounds)
    tb = _train(lgb, x, np.asarray(data.time_target), w, rounds)
    pb = _train(lgb, x, np.asarray(data.power_target), w, rounds)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    time_text, power_text = tb.model_to_string(), pb.model_to_string()
    oof = cv["oof"]
    t_res = oof.get("time", [])
    p_res = oof.get("power_frac", [])
    tdp, idle = float(gpu.get("tdp_w", 1.0)), float(gpu.get("idle_w", 0.0))
    # energy residual ~ time residual + ln(power ratio); the power ratio residual at a typical fraction of 0.5
    e_res = [tr + math.log(max(1e-3, 1 + pr * (tdp - idle) / max(idle + 0.5 * (tdp - idle), 1e-9)))
             for tr, pr in zip(t_res, p_res)]
    card = {
        "schema": MODEL_SCHEMA,
        "calibration_source": calibration_source,
        "gpu": gpu,
        "features": {"schema_version": FEATURE_SCHEMA_VERSION, "names": list(FEATURE_NAMES)},
        "targets": {
            "time": "ln(measured op time / prior op time); records of a multi-kernel sample share its ratio, "
                    "weighted by their share of the prior time",
            "power": "(measured average board power - gpu.idle_w) / (gpu.tdp_w - gpu.idle_w), clipped [0, 1.2]",
        },
        "files": {TIME_FILE: sha256_bytes(time_text.encode("utf-8")),
                  POWER_FILE: sha256_bytes(power_text.encode("utf-8"))},
        "data": provenance,
        "training": {"rows": len(data.rows), "samples": len(set(data.sample)), "families": sorted(set(data.family)),
                     "lightgbm_params": LGB_PARAMS, "num_boost_round": rounds},
        "cv": cv["cv"],
        "residuals": {
            "source": "out-of-fold ln(measured/predicted) per sample, whole shapes held out",
            "time": {"p5": _quantile(t_res, 0.05), "p50": _quantile(t_res, 0.5), "p95": _quantile(t_res, 0.95)},
            "power": {"p5": _quantile(p_res, 0.05), "p50": _quantile(p_res, 0.5), "p95": _quantile(p_res, 0.95),
                      "unit": "power fraction (absolute)"},
            "energy": {"p5": _quantile(e_res, 0.05), "p50": _quantile(e_res, 0.5), "p95": _quantile(e_res, 0.95)},
            "transfer_widening": 2.0,
        },
        "versions": library_versions(),
    }
    # the model this fit replaces is kept beside the folder (a smaller refit must not cost the user the earlier one)
    # (review: every refit added a copy, also of an identical model: a refit whose boosters are the same bytes as the
    # folder's replaces only the card's dates and versions, and keeps no copy)
    same = all((out / n).is_file() and (out / n).read_text(encoding="utf-8", errors="replace") == text
               for n, text in ((TIME_FILE, time_text), (POWER_FILE, power_text)))
    previous = None if same else keep_previous_model(out)
    try:
        # all three or none: a refit that fails while writing keeps the previous model whole (io.atomic_write_texts)
        atomic_write_texts({out / TIME_FILE: time_text, out / POWER_FILE: power_text,
                            out / CARD: json.dumps(card, indent=2, sort_keys=True) + "\n"})
    except BaseException:
        if previous is not None and _same_files(previous, out):  # nothing replaced: the copy is not needed
            shutil.rmtree(previous, ignore_errors=True)
        raise
    model = load_model(out)
    model.previous = previous
    return model


def keep_previous_model(out: Path) -> Path | None:
    """Copy the model files in ``out`` (card.json, time.txt, power.txt), and the run correction fitted on top of it
    when there is one (run_correction.json: restoring the backup restores both; the one left in ``out`` is not
    applied on top of the refit, energy.predictor.apply_run_correction matches a correction to its model's content)
    into a new sibling folder ``<out>.previous-<UTC time>`` (``-2``, ``-3``... when one of that name exists: a backup
    is never overwritten) and return it; None when ``out`` holds no model file. The estimator never reads it (a
    models folder is searched by GPU key, and its card names another folder)."""
    from datetime import datetime, timezone

    from ..tracking.fit import FILE as RUN_CORRECTION

    names = [n for n in (CARD, TIME_FILE, POWER_FILE) if (out / n).is_file()]
    if not names:
        return None
    names += [RUN_CORRECTION] if (out / RUN_CORRECTION).is_file() else []
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    i = 1
    while True:
        dest = out.parent / f"{out.name}.previous-{stamp}{'' if i == 1 else f'-{i}'}"
        try:
            dest.mkdir()
            break
        except FileExistsError:
            i += 1
    try:
        for n in names:
            shutil.copy2(out / n, dest / n)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


def _same_files(a: Path, b: Path) -> bool:
    """Whether every file of folder ``a`` is in ``b`` with the same bytes."""
    import filecmp

    return all((b / f.name).is_file() and filecmp.cmp(f, b / f.name, shallow=False) for f in a.iterdir())


def library_versions() -> dict[str, str]:
    from .. import __version__

    v = {"wattlint": __version__, "python": platform.python_version()}
    from importlib import metadata

    for dist in ("lightgbm", "numpy", "torch"):
        try:
            v[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # pragma: no cover - optional
            pass
    return v
