"""The lint engine: rule selection, per-model suppression, rule options, re-estimation for savings, exit codes.

``run_rules(estimate, config=None, model=None, reestimator=...)`` runs the selected rules on an Estimate (its graph
included); the request path (wattlint.api) calls it for ``wattlint MODEL`` and ``wattlint check``, passing the
re-estimator that prices variants for savings. The engine never imports the estimator: without a re-estimator,
savings are unknown (None), never invented. Selection follows ruff: a rule runs when the most specific matching
``select`` entry is more specific than the most specific matching ``ignore`` entry (``ignore`` wins ties); a model's
own ``ignore``/``select`` extend the top-level lists; preview rules run only with ``preview = true`` or when selected
by their exact code.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..report import units
from ..types import CostGraph, Estimate, Finding, GpuSpec, Plan, WattlintError
from .registry import all_rules
from .rule import Rule

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}

#: what a finding says instead of a saving when the planned run does not fit in GPU memory
NO_SAVING_UNFIT = ("no saving claimed: the planned run does not fit in GPU memory (WL201), so there is no run to "
                   "save against")

Reestimator = Callable[[CostGraph, GpuSpec, Plan], Estimate]


# ---- selection ---------------------------------------------------------------------------------------------

def _specificity(code: str, selectors: Iterable[str]) -> int:
    """How specifically ``selectors`` name ``code`` (-1: not at all). ``ALL`` is every rule, the same set as the
    prefix ``WL``, and ranks with it: ``ignore = ["ALL"]`` turns the default ``select = ["WL"]`` off (ignore wins
    ties) while a longer prefix or a code still wins over it (``select = ["WL2"]`` beside it keeps WL2xx)."""
    best = -1
    for s in selectors:
        if s == "ALL":
            best = max(best, len("WL"))
        elif code.startswith(s):
            best = max(best, len(s))
    return best


def is_enabled(rule: type[Rule], config=None, model=None) -> bool:
    select = tuple(config.select if config is not None else ("WL",)) + \
        tuple(config.extend_select if config is not None else ()) + tuple(model.select if model is not None else ())
    ignore = tuple(config.ignore if config is not None else ()) + tuple(model.ignore if model is not None else ())
    if config is not None and _specificity(rule.code, config.force_ignore) >= 0:
        return False
    s = _specificity(rule.code, select)
    i = _specificity(rule.code, ignore)
    if s < 0 or i >= s:
        return False
    if rule.status == "preview" and not (config is not None and config.preview) and rule.code not in select:
        return False
    return True


def selected_rules(config=None, model=None) -> list[type[Rule]]:
    return [r for r in all_rules().values() if is_enabled(r, config, model)]


def rule_options(rule: type[Rule], config=None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    opts = {name: opt.default for name, opt in rule.options.items()}
    if config is not None:
        opts.update(config.rule_options.get(rule.code, {}))
    if overrides:
        opts.update(overrides)
    return opts


# ---- the context rules see ----------------------------------------------------------------------------------

def summarize(estimate: Estimate) -> dict[str, Any]:
    """The JSON-safe facts of an estimate that totals-only rules (budgets, regressions, calibration) need; this is
    what the result cache stores next to the graph findings."""
    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    total = {f.name: plain(getattr(estimate.total, f.name)) for f in dataclasses.fields(estimate.total)}
    mem = estimate.memory
    return {
        "gpu": estimate.gpu.key,
        "gpu_name": estimate.gpu.name,
        "calibration": estimate.calibration,
        "calibration_source": estimate.calibration_source,
        "total": total,
        "per_step": {f.name: plain(getattr(estimate.per_step, f.name)) for f in dataclasses.fields(estimate.per_step)},
        "memory": {"peak_bytes_per_gpu": mem.peak_bytes_per_gpu, "gpu_memory_bytes": mem.gpu_memory_bytes,
                   "fits": mem.fits, "verdict": mem.verdict},
        "plan": {"batch_size": estimate.plan.batch_size, "steps": estimate.plan.steps,
                 "precision": estimate.plan.precision, "gpus": estimate.plan.gpus},
        "assumptions": list(estimate.assumptions),  # the provenance of every number above (DESIGN §3)
    }


class Context:
    """What one rule sees for one model: graph, estimate (None on cached runs for totals-only rules), summary,
    configuration, options, budget and baseline entry, and ways to re-estimate variants for savings."""

    def __init__(self, rule: type[Rule], *, graph: CostGraph | None, estimate: Estimate | None,
                 summary: Mapping[str, Any], options: Mapping[str, Any], model=None, config=None,
                 budget: Mapping[str, float] | None = None, baseline: Mapping[str, Any] | None = None,
                 regression_threshold: float = 0.05, reestimator: Reestimator | None = None,
                 gpus: Callable[[], Sequence[GpuSpec]] | None = None):
        self.rule = rule
        self.graph = graph
        self.estimate = estimate
        self.summary = summary
        self.options = dict(options)
        self.model = model
        self.config = config
        self.budget = dict(budget or {})
        self.baseline = baseline
        self.regression_threshold = regression_threshold
        self._reestimator = reestimator
        self._gpus = gpus

    # ---- numbers
    @property
    def base_fits(self) -> bool:
        """Whether the planned run may fit in GPU memory: its verdict is not does_not_fit (a tight run, which WL201 only
        warns about, keeps its savings); True when unknown (a cached summary without memory)."""
        if self.estimate is not None:
            return self.estimate.memory.verdict != "does_not_fit"
        mem = self.summary.get("memory") or {}
        if "verdict" in mem:
            return mem["verdict"] != "does_not_fit"
        return bool(mem.get("fits", True))  # a summary cached before the verdict: the central peak

    @property
    def total(self) -> Mapping[str, Any]:
        return self.summary.get("total", {})

    @property
    def energy_kwh(self) -> float:
        return float(self.total.get("energy_kwh") or 0.0)

    def op_energy(self) -> list[float]:
        """Energy per record of ``self.graph`` for one micro-batch (joules), from the estimate."""
        est = self.estimate
        if est is None or not est.op_energy_j or len(est.op_energy_j) != len(self.graph.records):
            return [0.0] * (len(self.graph.records) if self.graph is not None else 0)
        return list(est.op_energy_j)

    # ---- re-estimation
    def reestimate(self, *, graph: CostGraph | None = None, plan: Plan | None = None,
                   gpu: GpuSpec | None = None) -> Estimate | None:
        """The estimate of a variant (another graph, plan or GPU), or None when it cannot be computed (no
        re-estimator, or a variant the estimator refuses, e.g. a precision the GPU lacks)."""
        if self.estimate is None or self._reestimator is None:
            return None
        g = graph if graph is not None else self.graph
        p = plan if plan is not None else self.estimate.plan
        spec = gpu if gpu is not None else self.estimate.gpu
        try:
            return self._reestimator(g, spec, p)
        except WattlintError:  # a variant the user could not run either: no saving rather than no finding
            return None

    def literal(self, gpu: GpuSpec | None = None, **changes: Any) -> Estimate | None:
        """The estimate the user gets by re-running the request with the options ``changes`` (option name ->
        value; None drops an option) and, with ``gpu``, ``--gpu`` that GPU: the model traced again with those
        options and the plan built from them as the command line builds it (the GPU's own defaults: node, host
        platform class, PUE). None when it cannot be computed: the estimate came from an already traced graph (no
        request options to change), or the request path refuses the changed options (the user could not run it
        either). What a rule claims for a recommended change is this re-estimate, when it is available."""
        if self.estimate is None or self._reestimator is None:
            return None
        hook = getattr(self._reestimator, "literal", None)  # api.Reestimator (a bare callable has none)
        if not callable(hook):
            return None
        try:
            return hook(gpu, self.estimate.gpu, **changes)
        except WattlintError:
            return None

    @property
    def request_options(self) -> Mapping[str, Any]:
        """The options the estimate was requested with (empty when unknown: an already traced graph)."""
        return dict(getattr(self._reestimator, "request_options", None) or {})

    def retraced(self, precision: str) -> CostGraph | None:
        """The model traced again under ``precision`` (what ``--precision`` would trace), or None when the estimate
        came from an already traced graph or the trace under that precision fails."""
        retrace = getattr(self._reestimator, "retrace", None)
        if self.estimate is None or retrace is None:
            return None
        try:
            return retrace(precision)
        except WattlintError:
            return None

    def saving(self, other: Estimate | None) -> tuple[float | None, float | None]:
        """(kWh, fraction) saved by ``other`` against this estimate (facility energy of the whole plan)."""
        if other is None:
            return None, None
        base = self.energy_kwh
        new = float(other.total.energy_kwh)
        if base <= 0:
            return None, None
        return base - new, (base - new) / base

    def gpus(self) -> list[GpuSpec]:
        if self._gpus is not None:
            return list(self._gpus())
        from ..hardware import load_gpus

        db = load_gpus()
        return list(db.values()) if isinstance(db, Mapping) else list(db)

    # ---- findings
    def finding(self, message: str, *, layer: str | None = None, saving_kwh: float | None = None,
                saving_pct: float | None = None, severity: str | None = None, annotate: bool = True) -> Finding:
        """A finding of this rule; with ``annotate``, the saving is appended to the message."""
        sev = self.options.get("severity") or severity or self.rule.severity
        if annotate and saving_kwh is not None and not self.base_fits:
            # a saving against a run that cannot start (out of GPU memory: WL201) is no saving: the advice stays,
            # the figure goes
            saving_kwh = saving_pct = None
            message = f"{message} ({NO_SAVING_UNFIT})"
        if annotate and saving_kwh is not None and saving_pct is not None and saving_kwh > 0:
            # in the unit the run's own energy (saving / share) reads in, as the message's energies are: a 0.17 Wh
            # run saves "0.049 Wh", not "178 J"
            run_kwh = saving_kwh / saving_pct if saving_pct > 0 else saving_kwh
            unit = units.pick([run_kwh, saving_kwh], units.ENERGY_KWH)
            message = f"{message} (est. saving {units.in_unit(saving_kwh, unit)}, {units.percent(saving_pct)} of the run)"
        return Finding(code=self.rule.code, severity=sev, message=message, layer=layer,
                       # 6 significant digits (6 decimals of a kWh wrote a 0.753 J saving as 0.0)
                       saving_kwh=None if saving_kwh is None else float(f"{float(saving_kwh):.6g}"),
                       saving_pct=None if saving_pct is None else round(float(saving_pct) * 100, 3),
                       model=self.model.name if self.model is not None else None)


# ---- running -----------------------------------------------------------------------------------------------

def run_rules(estimate: Estimate | None, config=None, model=None, *, baseline: Mapping[str, Any] | None = None,
              reestimator: Reestimator | None = None, gpus: Callable[[], Sequence[GpuSpec]] | None = None,
              summary: Mapping[str, Any] | None = None, rules: Sequence[type[Rule]] | None = None,
              graph_rules: bool = True, totals_rules: bool = True,
              options: Mapping[str, Mapping[str, Any]] | None = None, strict: bool = False) -> list[Finding]:
    """Findings of the selected rules for one model.

    ``estimate`` carries the graph; cached check runs pass ``estimate=None`` and a stored ``summary``, and then only
    totals rules (budgets, regressions) run. ``baseline``: this model's baseline entry. ``reestimator(graph, gpu,
    plan) -> Estimate`` prices variants for savings. ``options``: per-code option overrides. A rule that crashes
    becomes an info finding saying so (``strict``, or WATTLINT_DEBUG=1, re-raises instead).
    """
    if summary is None:
        if estimate is None:
            raise ValueError("run_rules needs an estimate or a summary")
        summary = summarize(estimate)
    graph = estimate.graph if estimate is not None else None
    budget = dict(config.budget) if config is not None else {}
    threshold = config.regression_threshold if config is not None else 0.05
    if model is not None:
        budget = dict(model.budget)
        if model.regression_threshold is not None:
            threshold = model.regression_threshold
    out: list[Finding] = []
    for rule in (rules if rules is not None else selected_rules(config, model)):
        if rule.uses_graph and (not graph_rules or graph is None):
            continue
        if not rule.uses_graph and not totals_rules:
            continue
        ctx = Context(rule, graph=graph, estimate=estimate, summary=summary,
                      options=rule_options(rule, config, (options or {}).get(rule.code)), model=model,
                      config=config, budget=budget, baseline=baseline, regression_threshold=threshold,
                      reestimator=reestimator, gpus=gpus)
        try:
            out.extend(rule().check(ctx) or ())
        except Exception as e:
            if strict or os.environ.get("WATTLINT_DEBUG"):
                raise
            out.append(Finding(code=rule.code, severity="info", model=model.name if model is not None else None,
                               message=f"rule {rule.code} could not run: {type(e).__name__}: {e}"))
    return sort_findings(out)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.model or "", SEVERITY_ORDER.get(f.severity, 9), f.code, f.layer or "",
                                           f.message))


def exit_code(findings: Iterable[Finding]) -> int:
    """1 when any finding is an error, else 0."""
    return 1 if any(f.severity == "error" for f in findings) else 0


# ---- graph transforms shared by rules -----------------------------------------------------------------------

def replace_records(graph: CostGraph, records, **changes) -> CostGraph:
    return dataclasses.replace(graph, records=tuple(records), **changes)


def ceil_to(x: int, m: int) -> int:
    return int(math.ceil(x / m) * m)
