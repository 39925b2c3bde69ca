"""Choose the energy model for a GPU: measured (its own calibrated model), transferred (another GPU's calibrated
model through hardware-normalized features), or the physics prior alone. Every prediction carries that label.

A calibrated model predicts *corrections* to the prior per op (wattlint.energy.model, LightGBM text models):
``log_time_ratio`` = ln(measured time / prior time) and ``power_fraction`` = (power - idle) / (board power - idle).
lightgbm is imported (by wattlint.energy.model) only when such a model is actually used.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

from ..types import GpuSpec, OpKind, OpRecord
from . import prior as _prior

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: LightGBM threads per prediction call (the public-fit and measured models): one call prices tens to hundreds of
#: distinct ops, too few rows to pay for starting OpenMP threads
PREDICT_THREADS = 1

# The prior's stated 5-95 % bands (multiplicative: measured / predicted), per quantity, from its errors on the
# GPU-bound named Zeus rows (benchmarks/results/prior_vs_public.json, n = 51: ShuffleNetV2 at batch >= 256 and
# BERT-base on V100, A40, P100, Quadro RTX 6000) pooled with the 16 measured H200 validation models (prior, after the
# fixes: benchmarks/results/measured_h200-sxm-141gb.json), n = 67: energy p5 0.68 / p95 1.77, time p5 0.68 / p95
# 1.66, stated rounded outward. Nothing was fitted on these rows, but the bands are read off them, so their coverage
# there is 90 % by construction; launch-bound runs fall outside them and the report flags those.
# See docs/ENERGY_MODEL.md.
PRIOR_RANGES = {"energy": (0.65, 1.8), "time": (0.65, 1.7)}
PRIOR_RANGE = PRIOR_RANGES["energy"]
# extra widening when a model fitted on other GPUs is transferred (spec-sheet-only GPU)
TRANSFER_WIDEN = 1.5
MIN_MEASURED_RANGE = (0.85, 1.15)


class Predictor:
    """Per-op time (s) and power (W) for records on a GPU.

    Identical ops (repeated blocks; the same graph re-priced for a lint variant) are priced once per predictor:
    the cache is keyed by everything the prior reads from a record and by the GPU, precision and utilization."""

    calibration: str = "prior"
    source: str = "spec-sheet prior"
    searched: str = ""  # the models search path that was looked through (provenance)
    notes: tuple[str, ...] = ()  # what the search found and did not use, and why (also in ``searched``)

    def __init__(self) -> None:
        self._cache: dict[tuple, tuple[float, float]] = {}

    def predict(self, records: Sequence[OpRecord], gpu: GpuSpec, precision: str,
                utilization: float | None = None) -> tuple[list[float], list[float]]:
        times: list[float] = []
        powers: list[float] = []
        cache = self._cache
        ctx = (gpu.key, gpu.name, gpu.memory_type, gpu.tdp_w, gpu.idle_w, precision, utilization)
        for r in records:
            key = (r.kind, r.phase, r.dtype, r.flops, r.bytes_read, r.bytes_written, r.dims, ctx)
            hit = cache.get(key)
            if hit is None:
                p = _prior.op_prior(r, gpu, precision, utilization)
                hit = cache[key] = (p.time_s, p.power_w)
            times.append(hit[0])
            powers.append(hit[1])
        return times, powers

    def range_factors(self, quantity: str = "energy") -> tuple[float, float]:
        """Multiplicative 5-95 % band for ``quantity`` (energy | time)."""
        return PRIOR_RANGES["time" if quantity == "time" else "energy"]

    def prices(self, rec: OpRecord, gpu: GpuSpec, precision: str) -> bool:
        """Whether this predictor's own model prices ``rec`` (the rest falls back to the spec-sheet prior). The
        prior prices every record itself."""
        return True


class PriorPredictor(Predictor):
    pass


class CalibratedPredictor(Predictor):
    """The prior x a LightGBM correction fitted on measured op benchmarks."""

    def __init__(self, model, model_key: str, *, transferred: bool):
        super().__init__()
        self.model = model
        self.model_key = model_key
        self.transferred = transferred
        self.calibration = "transferred" if transferred else "measured"
        src = getattr(model, "source", None)
        if not isinstance(src, str) or not src:
            src = f"{model_key} calibrated model"
        self.source = f"transferred from {src}" if transferred else src

    def _corrections(self, rows):
        m = self.model
        if hasattr(m, "predict_rows"):
            pairs = m.predict_rows(rows)
            return [a for a, _ in pairs], [b for _, b in pairs]
        return m.predict_corrections(rows)

    def predict(self, records, gpu, precision, utilization=None):
        from .features import op_features  # same features as the fit

        times, powers = Predictor.predict(self, records, gpu, precision, utilization)
        if utilization is not None:
            # a what-if utilization is the prior's (time and the power that follows from it), as under public-fit:
            # a measured power beside a forced time would be neither, and the report labels these ops prior
            return times, powers
        # Corrections are applied only to op kinds the calibration measured: with whole op families held out,
        # the fitted correction does worse than the prior (card CV metrics), so unseen kinds keep the prior.
        seen = self.measured_kinds()
        idx = [i for i, r in enumerate(records) if times[i] > 0 and self._corrects(r, seen)]
        if not idx:
            return times, powers
        rows = [op_features(records[i], gpu, precision) for i in idx]
        # repeated blocks give identical rows: evaluate each distinct row once
        uniq: dict[tuple, int] = {}
        for row in rows:
            uniq.setdefault(tuple(row), len(uniq))
        u_lr, u_pf = self._corrections([list(k) for k in uniq])
        pos = [uniq[tuple(row)] for row in rows]
        log_ratio = [u_lr[k] for k in pos]
        pfrac = [u_pf[k] for k in pos]
        span = gpu.tdp_w - gpu.idle_w
        for j, i in enumerate(idx):
            lr = float(log_ratio[j])
            if not math.isfinite(lr):
                continue
            lr = max(-3.0, min(3.0, lr))
            times[i] = max(times[i] * math.exp(lr), _stream_floor_s(records[i], gpu))
            pf = float(pfrac[j])
            if math.isfinite(pf):
                powers[i] = min(gpu.tdp_w, gpu.idle_w + span * max(0.0, pf))
        return times, powers

    def prices(self, rec: OpRecord, gpu: GpuSpec, precision: str) -> bool:
        """The correction applies to the op kinds the calibration measured (:meth:`predict`)."""
        return self._corrects(rec, self.measured_kinds())

    @staticmethod
    def _corrects(rec: OpRecord, seen: frozenset[str] | None) -> bool:
        return rec.kind not in (OpKind.VIEW, OpKind.COMMUNICATION) and (seen is None or rec.kind.value in seen)

    def measured_kinds(self) -> frozenset[str] | None:
        """Op kinds present in the calibration data (None: the card does not say, correct every kind)."""
        card = getattr(self.model, "card", None) or {}
        kinds = (card.get("data") or {}).get("record_kinds")
        return frozenset(kinds) if kinds else None

    def range_factors(self, quantity: str = "energy") -> tuple[float, float]:
        """The 5-95 % band from the card's out-of-fold residual quantiles of ``quantity``; a card without them (or
        with unusable ones) gets the prior's band — no residuals, no claim of a narrower range."""
        lo = hi = None
        rq = getattr(self.model, "residual_quantiles", None)
        if rq is not None:
            try:
                a, b = rq(quantity, transferred=self.transferred)
                lo, hi = math.exp(float(a)), math.exp(float(b))
            except (KeyError, TypeError, ValueError, OverflowError):
                lo = hi = None
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            lo, hi = PRIOR_RANGES["time" if quantity == "time" else "energy"]
            if self.transferred:
                lo, hi = lo / TRANSFER_WIDEN, hi * TRANSFER_WIDEN
        return min(lo, MIN_MEASURED_RANGE[0]), max(hi, MIN_MEASURED_RANGE[1])


def _stream_floor_s(rec: OpRecord, gpu: GpuSpec) -> float:
    """The least time an op that streams more than twice the GPU's L2 through memory can take: its bytes at the
    spec-sheet memory bandwidth. A measured correction learned on smaller samples must not price a kernel faster
    than the memory moves its data (review 2026-12-07: the H200 model priced GPT-2's 1B-scale GELU layers at 9.4 TB/s
    on a 4.8 TB/s GPU, which inflated fp8's gain there); 0 when the op fits in L2 (its data may stay on chip) or the
    spec has no bandwidth or no L2 size."""
    bw = float(gpu.memory_bw_gbs or 0.0)
    l2 = float(getattr(gpu, "l2_mb", 0.0) or 0.0) * 2**20
    if bw <= 0 or l2 <= 0 or rec.bytes <= 2 * l2:  # no L2 size (a CPU calibration device): no floor
        return 0.0
    return rec.bytes / (bw * 1e9)


def _card(d: Path) -> dict:
    """The card of model folder ``d`` ({} when it cannot be read or is not shaped as a card: energy.model.card_of)."""
    from .model import card_of

    return card_of(d)[0] or {}


@dataclass(frozen=True)
class ModelsDir:
    """One folder of fitted models (``<gpu-key>/card.json`` + LightGBM text) and where its place came from."""

    path: Path
    origin: str  # --models-dir | [tool.wattlint] models-dir | WATTLINT_MODELS_DIR | user data dir | shipped

    def describe(self) -> str:
        return f"{self.origin} {self.path}"


def user_models_dir() -> Path:
    """The user's own fitted models (``wattlint fit`` writes here by default): the platform's user data folder."""
    import platformdirs

    return Path(platformdirs.user_data_dir("wattlint", appauthor=False)) / "models"


# what a folder of the search path is called in reports (ModelsDir.origin), in search order; the last: a folder the
# API was given directly
ORIGINS = ("--models-dir", "[tool.wattlint] models-dir", "WATTLINT_MODELS_DIR", "user data dir", "shipped",
           "models dir")


def search_path(cli: str | Path | None = None, config_dir: str | Path | None = None,
                env: Mapping[str, str] | None = None) -> tuple[ModelsDir, ...]:
    """Where fitted models are looked up, in order (docs/CALIBRATION.md): ``--models-dir``, ``[tool.wattlint]
    models-dir``, ``$WATTLINT_MODELS_DIR``, the user data folder, the models shipped in the package."""
    env = os.environ if env is None else env
    out = []
    if cli:
        out.append(ModelsDir(Path(cli).expanduser().resolve(), ORIGINS[0]))
    if config_dir:
        out.append(ModelsDir(Path(config_dir).expanduser().resolve(), ORIGINS[1]))
    if env.get("WATTLINT_MODELS_DIR"):
        out.append(ModelsDir(Path(env["WATTLINT_MODELS_DIR"]).expanduser().resolve(), ORIGINS[2]))
    out.append(ModelsDir(user_models_dir(), ORIGINS[3]))
    out.append(ModelsDir(MODELS_DIR, ORIGINS[4]))
    seen: set[Path] = set()
    return tuple(d for d in out if not (d.path in seen or seen.add(d.path)))


def _dirs(models_dir) -> tuple[ModelsDir, ...]:
    if models_dir is None:
        return search_path()
    if isinstance(models_dir, (str, Path)):
        return (ModelsDir(Path(models_dir), ORIGINS[5]),)
    return tuple(models_dir)


def calibrated_keys(models_dir: Path | None = None) -> list[str]:
    """GPU keys with a calibrated GPU model in ``models_dir`` (a card.json in <key>/; CPU method-check models and
    folders whose card is unreadable are skipped)."""
    d = models_dir or MODELS_DIR
    if not d.is_dir():
        return []
    return [p.parent.name for p in sorted(d.glob("*/card.json"))
            if p.parent.name != "public-fit" and card_problem(p.parent) is None]


def card_problem(folder: Path) -> str | None:
    """Why ``folder`` (``<models dir>/<gpu key>``) holds no calibration of that GPU, or None when it does: an
    unreadable card, a CPU method check (not GPU measurements), or a card of another GPU (a model copied into the
    wrong folder, or fitted on the fake test device, must not be labelled "measured" for this one)."""
    from .model import card_of  # reads the card and checks its shape: load_model's check too (one home)

    card, why = card_of(folder)
    if card is None:  # a model says which GPU it measured: the folder's name alone must not make it "measured" there
        return why
    g = card["gpu"]
    if g.get("is_cpu"):
        return "it is a CPU method check, not a GPU calibration"
    key = g["key"]
    if key != folder.name:
        return f"its card says it was fitted on {key}, not {folder.name}"
    return None


def _load(key: str, models_dir: Path):
    from .model import load_model  # imports lightgbm

    return load_model(models_dir / key)




def _measured(gpu: GpuSpec, dirs, unusable: list[str] | None = None) -> Predictor | None:
    """This GPU's own calibration from the first folder where it loads; each one that does not is described in
    ``unusable`` (the estimate states it: a calibration the user fitted must never be dropped silently)."""
    for d in dirs:
        folder = d.path / gpu.key
        if not (folder / "card.json").is_file():
            continue
        if (why := card_problem(folder)) is not None:
            if unusable is not None:
                unusable.append(f"{gpu.key} calibration in {d.describe()} not used: {why}")
            continue
        try:  # this GPU's own calibration (what calibrated_keys lists for the folder)
            p = CalibratedPredictor(_load(gpu.key, d.path), gpu.key, transferred=False)
        except Exception as e:  # a broken model must not break estimates: try the next folder
            if unusable is not None:
                why = " ".join(str(e).split())[:200]
                unusable.append(f"{gpu.key} calibration in {d.describe()} not usable ({type(e).__name__}: "
                                f"{why}); refit it with 'wattlint fit'")
            continue
        p.source = f"{p.source} ({d.describe()})"
        return p
    return None


def _transferred(gpu: GpuSpec, dirs, unusable: list[str] | None = None) -> Predictor | None:
    """Another GPU's calibration, of the same vendor only (same architecture first). A correction learned on one
    vendor's kernel libraries (cuBLAS/cuDNN) says nothing measured about another's (ROCm, Gaudi), and no
    cross-vendor transfer has been validated: such GPUs keep the prior. A candidate that does not load is described
    in ``unusable`` (as :func:`_measured` does), never skipped silently."""
    others = []
    for d in dirs:
        for k in calibrated_keys(d.path):
            if k == gpu.key:
                continue
            arch, vendor = card_arch_vendor(_card(d.path / k), k)
            if vendor and vendor == gpu.vendor:
                others.append((0 if arch and arch == gpu.arch else 1, dirs.index(d), k, d))
    for _, _, k, d in sorted(others, key=lambda x: x[:3]):
        try:
            p = CalibratedPredictor(_load(k, d.path), k, transferred=True)
        except Exception as e:  # a broken model must not break estimates: the next candidate, stated
            if unusable is not None:
                why = " ".join(str(e).split())[:200]
                unusable.append(f"{k} calibration in {d.describe()} not usable for transfer ({type(e).__name__}: "
                                f"{why}); refit it with 'wattlint fit'")
            continue
        p.source = f"{p.source} ({d.describe()})"
        return p
    return None


def card_arch_vendor(card: dict, key: str) -> tuple[str, str]:
    """(architecture, vendor) of the GPU a model card was fitted on ('' where unknown): the card's own entries, else
    the database row of its key. A calibration transfers only to GPUs of the same vendor (:func:`_transferred`)."""
    g = card.get("gpu") if isinstance(card.get("gpu"), dict) else {}
    return str(g.get("arch", card.get("arch", ""))), str(g.get("vendor", card.get("vendor", "")) or _vendor_of(key))


def _vendor_of(key: str) -> str:
    """The database vendor of a calibrated GPU key (cards written before they stored the vendor); '' if unknown."""
    from ..hardware import load_gpus

    try:
        spec = load_gpus().get(key)
    except Exception:  # noqa: BLE001 - an unreadable database is reported elsewhere; here: unknown vendor
        return ""
    return spec.vendor if spec is not None else ""


def _public_fit(dirs, unusable: list[str] | None = None):
    """The public-fit model of the first folder where it loads (a folder other than the shipped one is named in its
    source); each folder whose model does not load is described in ``unusable``."""
    from .public_fit import MODEL_DIRNAME, PublicFitError, PublicFitPredictor, load_model

    for d in dirs:
        if (d.path / MODEL_DIRNAME / "card.json").is_file():
            try:
                p = PublicFitPredictor(load_model(d.path / MODEL_DIRNAME))
            except PublicFitError as e:
                if unusable is not None:
                    unusable.append(f"public-fit model in {d.describe()} not usable: {' '.join(str(e).split())[:200]}")
                continue
            if d.origin != ORIGINS[4]:  # not the shipped folder
                p.source = f"{p.source} ({d.describe()})"
            return p
    return None


# how a folder of the search path is named at the end of a model's source: "... (--models-dir /path)"
_FOLDER_SUFFIX = re.compile(r" \((?:" + "|".join(re.escape(o) for o in ORIGINS) + r") .*\)$")


def model_identity(label: str) -> str:
    """An energy model's ``calibration: source`` label without the folder it was found in: the same model reached
    through --models-dir, WATTLINT_MODELS_DIR or a moved install is the same model (what a run correction was
    fitted on top of)."""
    return _FOLDER_SUFFIX.sub("", " ".join(str(label).split()))


def model_content_id(pred) -> str | None:
    """The content identity of an op-level energy model: ``sha256:`` of its calibration label and its model files'
    sha256 (``card.files``, checked against the files when the model loads) with the op kinds it corrects (the
    card's ``data.record_kinds``); a card that lists no files (the public-fit model's) is hashed whole. None for the
    prior (no fitted content: its label names it). Two fits of one GPU on one day carry the same label ("<key> run
    <date>"), and differ in content unless the refit wrote the very same model files and op kinds (then it is the
    same model, and a correction fitted on one applies rightly to the other): a run correction is matched to the
    model it was fitted on top of by this (review: a correction fitted on one fit was applied on top of a refit,
    doubling its factor)."""
    import hashlib
    import json

    card = getattr(getattr(pred, "model", None), "card", None)
    if not isinstance(card, dict):
        return None
    files = card.get("files")
    data = card.get("data") if isinstance(card.get("data"), dict) else {}
    what = ({"files": files, "record_kinds": data.get("record_kinds")} if isinstance(files, dict) and files
            else {"card": card})
    payload = json.dumps({"calibration": getattr(pred, "calibration", ""), **what}, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _short(h: str | None) -> str:
    return (h or "none").replace("sha256:", "")[:12]


class CorrectionLookup(NamedTuple):
    """What :func:`apply_run_correction` found at one path."""

    predictor: Predictor | None  # base x the correction, when it applies
    why: str | None  # why it does not apply (None: it applies, or no file there)
    search_on: bool  # the file does not concern this GPU's model (absent, unreadable, another GPU): look further


def apply_run_correction(base: Predictor, gpu_key: str, path: Path) -> CorrectionLookup:
    """``base`` x the run correction at path when that correction was fitted on top of this very base model, else
    why not. The base is identified by content
    (:func:`model_content_id`: a refit that keeps the label is another model); a correction fitted on records that
    did not record their model's content is matched by its label (folder left out: :func:`model_identity`) on the
    prior or the shipped public-fit model, and never applied on top of a user's fitted (measured or transferred)
    model: which fit of it that was cannot be told (one written by an earlier wattlint, which names no base model
    content at all, is said to be so, with the way to refit it)."""
    from ..tracking.fit import FITTED_HERE, RunCorrectedPredictor, RunFitError, read_correction

    if not path.is_file():
        return CorrectionLookup(None, None, True)
    try:
        corr = read_correction(path)
    except RunFitError as e:
        return CorrectionLookup(None, f"run correction {path} not usable: {' '.join(str(e).split())[:200]}", True)
    if corr.gpu_key != gpu_key:
        return CorrectionLookup(None, f"run correction {path} not used: it was fitted on {corr.gpu_key}", True)
    here = f"{base.calibration}: {base.source}"
    have, want = model_content_id(base), corr.base_model_id
    if want is None and base.calibration not in FITTED_HERE:  # the prior, the shipped public-fit: by label
        same = model_identity(corr.base_energy_model) == model_identity(here)
    else:
        same = have == want
    if same:
        return CorrectionLookup(RunCorrectedPredictor(base, corr), None, False)
    if "base_model_id" not in corr.card:  # written by an earlier wattlint: it worked there, it stops here (say why)
        return CorrectionLookup(None, (f"run correction {path} not applied: written before wattlint recorded the model it was fitted "
                      f"on ('{corr.base_energy_model}': its records do not say which fit of it predicted them); "
                      "re-run `wattlint fit <records>`"), False)
    if want is None:
        what = (f"'{corr.base_energy_model}', from records that do not say which fit of it predicted them, tracked "
                "before wattlint recorded a model's content")
    else:
        what = f"'{corr.base_energy_model}', content {_short(want)}"
    now = f"'{here}'" + (f", content {_short(have)}" if have else "")
    return CorrectionLookup(None, (f"run correction {path} fitted on another model ({what}); this estimate's energy "
                                   f"model is {now}; not applied: re-run `wattlint fit <records>` on runs tracked "
                                   "with this model"), False)


def _run_corrected(base: Predictor, gpu: GpuSpec, dirs) -> Predictor:
    """``base`` x the user's run-level correction for this GPU (wattlint fit on tracked runs): the first one along
    the search path, applied when it was fitted on top of this very base model (:func:`apply_run_correction`;
    wherever the model's folder is now); one that is unreadable or fitted on another model is stated in the
    searched line, never dropped silently."""
    from ..tracking.fit import FILE

    notes = []
    for d in dirs:
        found = apply_run_correction(base, gpu.key, d.path / gpu.key / FILE)
        if found.predictor is not None:
            return found.predictor
        if found.why:
            notes.append(found.why)
        if not found.search_on:
            break
    if notes:
        base.searched = "; ".join([base.searched, *notes]) if base.searched else "; ".join(notes)
        base.notes = (*getattr(base, "notes", ()), *notes)
    return base


def get_predictor(gpu: GpuSpec, models_dir=None) -> Predictor:
    """The best available energy model for ``gpu``, in order of preference (docs/ENERGY_MODEL.md, "Provenance"):

    measured (its own model: the first folder of the search path that has one; a user's run-level correction from
    tracked runs on top) > public-fit (the model fitted on public measurements across GPUs, where its card's
    held-out error beats the prior's and no transferred calibration reports a lower one) > transferred (another
    GPU's model, same architecture first) > prior.

    ``models_dir``: a folder, a sequence of :class:`ModelsDir`, or None for :func:`search_path`. A model that turns
    out unusable (corrupt card, missing lightgbm) falls back to the next option rather than failing the estimate;
    the provenance label always says what was used and from which folder."""
    from .public_fit import choose_predictor

    dirs = _dirs(models_dir)
    unusable: list[str] = []
    measured = _measured(gpu, dirs, unusable)
    if measured is not None:
        p = measured
    else:
        p = choose_predictor(gpu, public_fit=_public_fit(dirs, unusable),
                             transferred=_transferred(gpu, dirs, unusable), prior=PriorPredictor())
    p.searched = "; ".join(d.describe() for d in dirs) + "".join(f"; {u}" for u in unusable)
    p.notes = tuple(unusable)
    return _run_corrected(p, gpu, dirs)
