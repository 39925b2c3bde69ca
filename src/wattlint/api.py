"""The one request path: resolve GPU(s) -> trace once -> plan per GPU -> price -> lint.

Every command that produces an estimate (``wattlint MODEL``, ``--compare``, ``wattlint check``, ``validate
predict``) and the benchmarks go through :func:`run` (or its thin wrappers), so the sequence is written once::

    request --resolve--> GpuSpec(s)           unknown GPU: one-line error before any tracing
            --trace----> CostGraph            once, whatever the number of GPUs
            --plan-----> Plan per GPU         every default stated as an assumption
            --price----> Estimate per GPU     energy model (measured | public-fit | transferred | prior) + system
            --lint-----> findings             selected rules; savings re-estimated through this same path

The public ``wattlint.estimate()`` is :func:`estimate` here.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import options as _options
from .types import ConfigError, CostGraph, Estimate, GpuSpec, Plan, WattlintError


@dataclass(frozen=True)
class Request:
    """What to estimate. ``options`` are validated estimate options (wattlint.options); ``notes`` are request-level
    assumption lines (e.g. which default GPU was used) added to the first GPU's estimate."""

    source: Any  # spec string, path, nn.Module or an already traced CostGraph
    gpus: tuple[str | GpuSpec, ...]
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    config: Any = None  # wattlint.config.Config: lint selection, rule options, budgets
    model: Any = None  # wattlint.config.ModelConfig when the request is one configured model (check)
    notes: tuple[str, ...] = ()
    lint: bool = True  # run the graph rules (and, with totals_rules, the budget/regression rules)
    totals_rules: bool = True
    predictor: Any = None  # an energy model to use for every GPU (tests, benchmarks); None: the best for each
    models_dirs: Any = None  # energy-model search path (energy.predictor.search_path); None: the default one
    # options the user gave elsewhere than as a flag: name -> (key as written, where, value), e.g. ("price",
    # "in [tool.wattlint] of pyproject.toml", 0.2) (commands._common.config_given): the assumption lines name them so
    # (wattlint.options.said_as), not by a flag the user did not type ("steps 3,000 (--steps)" for a recorded plan).
    # Passed by compare-run (a record's plan, the file's settings); estimate and check print the file's settings on
    # their own "settings from [tool.wattlint]" line and leave the flags in the notes
    given: Mapping[str, tuple[str, str, Any]] = dataclasses.field(default_factory=dict)


# ---- the steps -------------------------------------------------------------------------------------------------

class _TraceLock:
    """One trace at a time in this process: tracing swaps process-wide state (sys.stdout, torch.isfinite, the torch
    frontend's autocast dtype and active tracer, torch's meta-nonzero flag), so two traces at once from threads saw
    each other's and left it behind. A trace held by one thread makes another thread's trace wait, however long the
    first takes (two threads estimating two models get what sequential calls give).

    * A trace started by the traced model's own code, on the thread that traces it (its import, factory or forward
      calling ``wattlint.estimate`` / ``wattlint.analyze``), is refused with an :class:`InputError`: it is not
      re-entrant, since the outer trace records every op the inner one runs (the outer step was counted with the
      inner model's ops in it) and the inner one ran under the outer's swaps.
    * Such a call from another thread that the model's code then waits for (starts and joins) can never get the
      lock: the process hangs. That cannot be told from a legitimate wait (another thread's trace that just takes
      long), so there is no timeout and no error; after :data:`TRACE_WAIT_NOTE_S` of waiting a RuntimeWarning
      names the thread holding the lock, so that such a hang says why. Call wattlint outside the model's code."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: threading.Thread | None = None  # set and cleared by the holder only

    def __enter__(self) -> "_TraceLock":
        me = threading.current_thread()
        if self._owner is me:  # only this thread sets its own name here: no race with another holder
            from .types import InputError

            raise InputError("wattlint was called from the code of the model it is tracing (its import, factory or "
                             "forward), on the same thread: a trace inside a trace is refused (the outer trace would "
                             "count the inner model's ops as its own); call wattlint before or after the trace, not "
                             "from the model's code")
        if not self._lock.acquire(timeout=TRACE_WAIT_NOTE_S):
            import warnings

            owner = self._owner
            warnings.warn(f"wattlint: waited {TRACE_WAIT_NOTE_S:g} s for another trace in this process (thread "
                          f"{owner.name if owner is not None else '?'!r}; wattlint.api.TRACE_LOCK: one trace at a "
                          "time) and still waiting; if that trace runs the model code that waits for this thread "
                          "(a forward that calls wattlint from another thread and joins it), it never ends: call "
                          "wattlint outside the model's code", RuntimeWarning, stacklevel=2)
            self._lock.acquire()
        self._owner = me
        return self

    def __exit__(self, *exc: object) -> None:
        self._owner = None
        self._lock.release()


#: seconds a trace waits for another thread's before a RuntimeWarning says what it waits for (it keeps waiting)
TRACE_WAIT_NOTE_S = 60.0
#: held for the whole of a trace (see :class:`_TraceLock`): ``with TRACE_LOCK:``
TRACE_LOCK = _TraceLock()


def resolve_gpu(gpu: str | GpuSpec) -> tuple[GpuSpec, str | None]:
    """A database GPU and the assumption line its name resolution needs (alias, NVML name), or a ConfigError."""
    if isinstance(gpu, GpuSpec):
        return gpu, None
    from .hardware import resolve_gpu as _resolve

    return _resolve(gpu)


def trace(source: Any, opts: Mapping[str, Any]) -> CostGraph:
    """Trace one training step of ``source`` with the frontend options among ``opts``."""
    if isinstance(source, CostGraph):
        return source
    from .frontends.source import analyze

    from .parallel import frontend_batch

    kw = {k: opts[k] for k in _options.FRONTEND_OPTIONS if opts.get(k) is not None}
    if opts.get("recompute") == "full":  # full recompute: the frontend traces checkpointed blocks
        kw["activation_checkpointing"] = True
    kw.update(frontend_batch(opts))  # tensor / pipeline parallel: trace one data-parallel replica's micro-batch
    if "inputs" in kw and not isinstance(kw["inputs"], Mapping):  # a dict (name -> spec) goes as it is
        kw["inputs"] = list(kw["inputs"])
    elif _options.positional_inputs(kw.get("inputs")):
        kw["inputs"] = _named_positional(source, kw["inputs"])
    memo = _TRACES.get()
    key = memo.key(source, kw) if memo is not None else None
    if key is not None:
        return memo.get(key, lambda: _analyze_locked(analyze, source, kw))
    return _analyze_locked(analyze, source, kw)


def _analyze_locked(analyze, source: Any, kw: Mapping[str, Any]) -> CostGraph:
    # the model's own code runs here (its import, factory and forward): what it prints goes to stderr, so that
    # stdout carries only wattlint's report (a --format json / sarif report stays parseable)
    with TRACE_LOCK, _stdout_to_stderr():
        return analyze(source, **kw)


@contextlib.contextmanager
def _stdout_to_stderr():
    """Everything written to stdout meanwhile goes to stderr: Python's ``print`` (sys.stdout) and, when file
    descriptors 1 and 2 exist, writes to descriptor 1 itself (``os.write(1, ...)``, C extensions, subprocesses),
    which replacing sys.stdout does not reach (a model printing that way broke a --format json report). Both are
    process-wide while a trace runs (traces are serialised by TRACE_LOCK): a library user's other threads writing to
    stdout meanwhile write to stderr."""
    import os
    import sys

    saved = None
    try:
        sys.stdout.flush()
        saved = os.dup(1)
        os.fstat(2)
    except (OSError, ValueError, AttributeError):  # no descriptors (embedded, closed): Python-level redirect only
        if saved is not None:
            os.close(saved)
        saved = None
    try:
        if saved is not None:
            os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            try:
                sys.stderr.flush()
                _flush_c_stdio()  # C code's buffered printf output, written while descriptor 1 was stderr
            finally:
                os.dup2(saved, 1)
                os.close(saved)


def _flush_c_stdio() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library handle here (Windows): nothing buffered to flush
        pass


class TraceMemo:
    """The graphs traced while it is active (:func:`shared_traces`): one trace per distinct (model source, frontend
    arguments), e.g. the entries of one ``wattlint check`` that name one model on different GPUs, epochs or budgets.

    The key is everything :func:`trace` hands the frontend (``wattlint.frontends.source.analyze``): the source
    string as given, the current directory (a relative source) and every frontend argument (inputs, batch_size,
    seq_len, precision, optimizer and its impl, attention, activation checkpointing (a full ``recompute``
    included), capacity_factor, torch_version, and the data-parallel ``gpus`` / ``grad_accum`` the parallel layout
    derives), each value with its type. ``gpus`` and ``grad_accum`` only divide the global ``batch_size`` into the
    traced micro-batch (``frontends.source.micro_batch`` and its batch note): without a batch_size they are left
    out. Options the plan applies after tracing (GPU, work, budgets, utilization, ...) never reach the frontend, so
    they share the trace. Only sources named by a string or path are kept (an ``nn.Module`` can change between
    calls). A trace that fails with a :class:`wattlint.types.WattlintError` fails the same way for every request
    with its key, without tracing again; any other exception is not kept."""

    def __init__(self) -> None:
        self._graphs: dict[tuple, CostGraph | BaseException] = {}
        self.traces = 0  # how many traces ran (misses)

    @staticmethod
    def key(source: Any, kw: Mapping[str, Any]) -> tuple | None:
        import os

        if not isinstance(source, (str, os.PathLike)):
            return None
        args = dict(kw)
        if args.get("batch_size") is None:  # nothing for the data-parallel degree to divide
            args.pop("gpus", None)
            args.pop("grad_accum", None)
        try:
            frozen = tuple(sorted((k, _frozen(v)) for k, v in args.items()))
            hash(frozen)
        except TypeError:  # a value with no stable identity: traced every time
            return None
        return (os.fspath(source), os.getcwd(), frozen)

    def get(self, key: tuple, do_trace) -> CostGraph:
        from .types import WattlintError

        hit = self._graphs.get(key)
        if hit is None:
            self.traces += 1
            try:
                hit = do_trace()
            except WattlintError as e:
                self._graphs[key] = e
                raise
            self._graphs[key] = hit
        if isinstance(hit, BaseException):
            raise hit.with_traceback(None)
        return hit

    def forget(self, source: Any) -> None:
        """Drop the graphs (and failures) of ``source``: no later request names it."""
        import os

        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        for k in [k for k in self._graphs if k[0] == name]:
            del self._graphs[k]


def _frozen(v: Any) -> Any:
    """A hashable form of a frontend argument that tells apart values Python counts as equal (1, 1.0, True)."""
    if isinstance(v, Mapping):
        return ("map", tuple(sorted((str(k), _frozen(x)) for k, x in v.items())))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, tuple(_frozen(x) for x in v))
    if v is None or isinstance(v, (str, int, float, bool)):
        return (type(v).__name__, v)
    raise TypeError(type(v).__name__)


_TRACES: contextvars.ContextVar[TraceMemo | None] = contextvars.ContextVar("wattlint_traces", default=None)


@contextlib.contextmanager
def shared_traces():
    """Within the block, :func:`trace` (the request path's trace and a lint rule's retrace under another precision)
    traces each distinct model and frontend arguments once (:class:`TraceMemo`, yielded); a block inside another
    shares the outer one's memo."""
    memo = _TRACES.get()
    if memo is not None:
        yield memo
        return
    token = _TRACES.set(TraceMemo())
    try:
        yield _TRACES.get()
    finally:
        _TRACES.reset(token)


def make_plan(graph: CostGraph, spec: GpuSpec, opts: Mapping[str, Any], notes: Sequence[str] = (), *,
              strict_precision: bool = True) -> Plan:
    """The plan for ``graph`` on ``spec`` from the plan options among ``opts``; ``notes`` lead its assumptions.
    ``strict_precision=False`` (--compare candidates): a precision the GPU lacks is costed at its closest one."""
    from .plan import build_plan

    plan = build_plan(graph, gpu=spec, strict_precision=strict_precision,
                      **{k: v for k, v in opts.items() if k in _options.PLAN_OPTIONS})
    if notes:
        plan = dataclasses.replace(plan, assumptions=tuple(notes) + tuple(a for a in plan.assumptions
                                                                         if a not in notes))
    return plan


def price(graph: CostGraph, spec: GpuSpec, plan: Plan, predictor=None) -> Estimate:
    """The estimate of ``plan`` on ``spec`` (no lint): ops priced by the energy model, then aggregated."""
    from .energy.predictor import get_predictor
    from .energy.pricing import price as price_ops

    from .parallel import per_gpu_graph

    model = predictor if predictor is not None else get_predictor(spec)
    graph = per_gpu_graph(graph, plan)  # tensor / pipeline parallel: the bottleneck stage's share on one GPU
    priced = price_ops(graph, spec, plan.precision, plan.utilization, model)
    return _aggregate(graph, spec, plan, model, priced)


def _aggregate(graph: CostGraph, spec: GpuSpec, plan: Plan, model, priced) -> Estimate:
    from .aggregate import EnergyModelInfo, aggregate

    info = EnergyModelInfo(calibration=model.calibration, source=model.source,
                           energy_range=model.range_factors("energy"), time_range=model.range_factors("time"),
                           searched=getattr(model, "searched", ""))
    return aggregate(graph, priced, spec, plan, info)


class PriceCache:
    """Priced work shared by the GPUs of one request and by their lint re-estimates (one energy model per GPU).

    * The request's traced graph (``root``) priced on a GPU under a precision and utilization is kept: the same
      estimate on another GPU's lint re-estimate (WL203 tries the same candidates for every GPU of a --compare)
      aggregates the kept priced ops instead of pricing the graph again (and reuses their aggregation sums).
    * A graph variant (a rule's change to a few records) is priced with the kept priced ops of ``root`` on the same
      GPU, precision and utilization as its base: only the records the rule replaced are priced
      (wattlint.energy.pricing). Variants are not kept.

    Results are the ones a fresh pricing gives (tests compare the JSON bytes). Memory: one priced copy of the graph
    per (GPU, precision, utilization) the request touches."""

    def __init__(self, models_dirs=None, root: CostGraph | None = None, source: Any = None,
                 options: Mapping[str, Any] | None = None):
        self.root = root
        self._dirs = models_dirs
        # the request's source and options, to trace it again under another precision (WL101's bf16 variant is
        # the step `--precision bf16` traces, not the fp32 trace with its GEMMs relabelled); None: a graph given
        self._source = None if isinstance(source, CostGraph) else source
        self._options = dict(options or {})
        self._retraced: dict[str, CostGraph] = {}
        self._models: dict[str, Any] = {}
        self._priced: dict[tuple, tuple[Any, GpuSpec, Any]] = {}  # key -> (model, spec, PricedOps)
        self._groups = None  # the root's optimizer groups, found once
        self._per_gpu: dict[tuple, CostGraph] = {}  # the root as one GPU of each parallel layout
        self._layouts: dict[int, tuple] = {}  # id of such a per-GPU graph -> its layout (checked by identity)

    def retrace(self, precision: str) -> CostGraph | None:
        """The request's source traced under ``precision`` (once per request), or None when the request gave an
        already traced graph."""
        if self._source is None:
            return None
        if precision not in self._retraced:
            self._retraced[precision] = trace(self._source, {**self._options, "precision": precision})
        return self._retraced[precision]

    def model_for(self, spec: GpuSpec):
        if spec.key not in self._models:
            from .energy.predictor import get_predictor

            self._models[spec.key] = get_predictor(spec, self._dirs)
        return self._models[spec.key]

    def _key(self, spec: GpuSpec, plan: Plan, model, layout) -> tuple:
        return (spec.key, plan.precision, plan.utilization, id(model), layout)

    def _kept(self, key: tuple, spec: GpuSpec, model):
        hit = self._priced.get(key)
        if hit is not None and hit[0] is model and hit[1] == spec:
            return hit[2]
        return None

    def estimate(self, graph: CostGraph, spec: GpuSpec, plan: Plan, model) -> Estimate:
        from .energy.pricing import optimizer_groups
        from .energy.pricing import price as price_ops
        from .parallel import per_gpu_graph

        if self.root is None:
            self.root = graph
        layout = None
        if graph is self.root:
            layout = _layout_key(plan)
            per_gpu = self._per_gpu.get(layout)
            if per_gpu is None:  # tensor / pipeline parallel: the bottleneck stage's share on one GPU, once per layout
                per_gpu = self._per_gpu[layout] = per_gpu_graph(graph, plan)
                if per_gpu is not graph:
                    self._layouts[id(per_gpu)] = layout
        else:
            layout = self._layouts.get(id(graph))
            per_gpu = graph if layout is not None and self._per_gpu.get(layout) is graph else None
        if per_gpu is not None:  # the root, or the root already as one GPU of a layout (what lint rules hold)
            sharded = per_gpu is not self.root
            key = self._key(spec, plan, model, layout if sharded else None)
            priced = self._kept(key, spec, model)
            if priced is None:
                if not sharded and self._groups is None:
                    self._groups = optimizer_groups(graph.records)
                priced = price_ops(per_gpu, spec, plan.precision, plan.utilization, model,
                                   groups=None if sharded else self._groups)
                self._priced[key] = (model, spec, priced)
            return _aggregate(per_gpu, spec, plan, model, priced)
        per_gpu = per_gpu_graph(graph, plan)
        # a variant of the root: only its replaced records are priced, the rest keep the root's price; a sharded
        # variant's records are all new (the per-GPU copy), so it is priced whole
        base = None if per_gpu is not graph else self._kept(self._key(spec, plan, model, None), spec, model)
        priced = price_ops(per_gpu, spec, plan.precision, plan.utilization, model, base=base)
        return _aggregate(per_gpu, spec, plan, model, priced)


def _layout_key(plan: Plan) -> tuple:
    """Everything :func:`wattlint.parallel.per_gpu_graph` reads from a plan (the training stack's rewrite reads the
    precision and optimizer too; so does the fp8 rewrite, wattlint.fp8)."""
    return (plan.gpus, plan.tensor_parallel, plan.pipeline_parallel, plan.virtual_pipeline_stages, plan.context_parallel,
            plan.expert_parallel, plan.sequence_parallel,
            plan.micro_batch_size, plan.grad_accum, plan.training_stack,
            (plan.precision, plan.optimizer) if plan.training_stack != "pytorch" or plan.precision == "fp8" else None)


class Reestimator:
    """Prices variants for lint savings through the request's :class:`PriceCache` (priced work reused; one
    energy model per GPU, so repeated ops are also found in the predictor's cache)."""

    def __init__(self, predictor=None, gpu_key: str | None = None, models_dirs=None, cache: PriceCache | None = None):
        self._models: dict[str, Any] = {}
        self._cache = cache if cache is not None else PriceCache(models_dirs)
        if predictor is not None and gpu_key is not None:
            self._models[gpu_key] = predictor

    def model_for(self, spec: GpuSpec):
        if spec.key in self._models:
            return self._models[spec.key]
        return self._cache.model_for(spec)

    def __call__(self, graph: CostGraph, spec: GpuSpec, plan: Plan) -> Estimate:
        return self._cache.estimate(graph, spec, plan, self.model_for(spec))

    def retrace(self, precision: str) -> CostGraph | None:
        """The request's model traced under ``precision`` (see :meth:`PriceCache.retrace`)."""
        return self._cache.retrace(precision)

    @property
    def request_options(self) -> dict[str, Any]:
        """The options the request was made with (empty for an already traced graph: nothing to re-run)."""
        return dict(self._cache._options) if self._cache._source is not None else {}

    def literal(self, gpu: GpuSpec | None, base_gpu: GpuSpec, **changes: Any) -> Estimate | None:
        """The estimate the user gets by re-running the request with the options ``changes`` (option name ->
        value; None drops an option) on ``gpu`` (None: ``base_gpu``), as the command line would: the model traced
        again when the changes reach the frontend (the request's own trace otherwise) and the plan built from the
        options on that GPU (its own node, host platform class and PUE defaults). None for an already traced graph
        (no request to re-run); WattlintError when the request path refuses the changed options."""
        cache = self._cache
        if cache._source is None:
            return None
        options = cache._options
        opts = {k: v for k, v in {**options, **changes}.items() if v is not None}
        spec = gpu if gpu is not None else base_gpu
        same = cache.root is not None and _frontend_args(opts) == _frontend_args(options)
        graph = cache.root if same else trace(cache._source, opts)
        return self(graph, spec, make_plan(graph, spec, opts))


def _frontend_args(opts: Mapping[str, Any]) -> tuple:
    """What :func:`trace` hands the frontend from ``opts`` (equal: the same trace)."""
    from . import options as _options
    from .parallel import frontend_batch

    kw = {k: opts[k] for k in _options.FRONTEND_OPTIONS if opts.get(k) is not None}
    kw["recompute_full"] = opts.get("recompute") == "full"
    kw.update(frontend_batch(opts))
    return tuple(sorted((k, repr(v)) for k, v in kw.items()))


def lint(est: Estimate, *, config=None, model=None, reestimator: Reestimator | None = None,
         totals_rules: bool = True) -> Estimate:
    """``est`` with the findings of the selected rules (config selection and the model's own select/ignore)."""
    from .lint.engine import run_rules

    findings = run_rules(est, config, model, reestimator=reestimator or Reestimator(), totals_rules=totals_rules)
    return dataclasses.replace(est, findings=tuple(findings))


# ---- the path --------------------------------------------------------------------------------------------------

def run(request: Request) -> list[Estimate]:
    """Estimates of ``request`` on each of its GPUs (duplicates dropped), in order. An input error names the options
    as the user gave them (a setting from [tool.wattlint] is not quoted as a flag the user did not type)."""
    try:
        return _run(request)
    except WattlintError as e:
        said = _options.said_as(str(e), request.given) if request.given else str(e)
        if said == str(e):
            raise
        try:
            again = type(e)(said)
        except TypeError:  # an error type that needs more than its message: keep it as it was
            raise e from None
        raise again from None


def _run(request: Request) -> list[Estimate]:
    if not request.gpus:
        raise ConfigError("no GPU to estimate on")
    specs: list[tuple[GpuSpec, str | None]] = []
    for g in request.gpus:  # unknown GPU -> one-line error before any tracing
        spec, note = resolve_gpu(g)
        if spec.key not in {s.key for s, _ in specs}:
            specs.append((spec, note))
    precision = request.options.get("precision")
    if precision is not None:  # a precision the GPU cannot run: fail before tracing too
        from .hardware import precision_support

        ok, why = precision_support(specs[0][0], precision)
        # (an ONNX export in half precision keeps its own: the plan, after tracing, says whether the flag applies)
        if not ok and not (isinstance(request.source, (str, Path)) and str(request.source).lower().endswith(".onnx")):
            raise ConfigError(why)
    graph = trace(request.source, request.options)
    cache = PriceCache(request.models_dirs, root=graph, source=request.source,
                       options=request.options)  # shared by the GPUs and their lint re-estimates
    out = []
    for i, (spec, note) in enumerate(specs):
        notes = (tuple(request.notes) if i == 0 else ()) + ((note,) if note else ())
        plan = make_plan(graph, spec, request.options, notes, strict_precision=i == 0)
        g = graph
        if precision is not None and plan.precision not in (precision, "default") and graph.precision != plan.precision:
            # a --compare candidate without the asked precision is costed at its closest one: the step as that
            # precision traces it (an fp16 trace priced "as fp32" kept its 2-byte tensors and half the activations;
            # "as bf16" on a chip without an fp16 rate ran its GEMMs at the vector rate)
            again = cache.retrace(plan.precision)
            if again is not None:
                g = again
                plan = make_plan(g, spec, {**request.options, "precision": plan.precision},
                                 notes + tuple(n for n in plan.assumptions if "not available on" in n),
                                 strict_precision=False)
        re = Reestimator(request.predictor, spec.key, cache=cache)
        est = re(g, spec, plan)
        if request.lint:
            est = lint(est, config=request.config, model=request.model, reestimator=re,
                       totals_rules=request.totals_rules)
        if request.given:
            est = dataclasses.replace(est, assumptions=tuple(_options.said_as(a, request.given)
                                                             for a in est.assumptions))
        out.append(est)
    return out


def models_search_path(cli_dir=None, config=None):
    """The energy-model search path for a request: --models-dir, [tool.wattlint] models-dir, $WATTLINT_MODELS_DIR,
    the user data folder, the shipped models."""
    from .energy.predictor import search_path

    import os

    config_dir = getattr(config, "models_dir", None)
    env_dir = os.environ.get("WATTLINT_MODELS_DIR") or None
    # a folder the user named that is not there: their calibration would be skipped without a word (a typo)
    for name, d in (("--models-dir", cli_dir), ("[tool.wattlint] models-dir", config_dir),
                    ("WATTLINT_MODELS_DIR", env_dir)):
        if isinstance(d, str) and not d.strip():  # Path('') is the current folder: it read as "not given"
            raise ConfigError(f"{name} {d!r}: expected a non-empty folder name")
        if d is not None and not Path(d).expanduser().is_dir():
            raise ConfigError(f"{name} {d}: not a folder (fitted energy models are looked up in <folder>/<gpu-key>/)")
        if d is not None and (Path(d).expanduser() / "card.json").is_file():
            # a model's own folder (`wattlint fit --out DIR`): no estimate would find it, and none said so
            raise ConfigError(f"{name} {d}: a fitted model's own folder (it holds card.json); fitted models are "
                              f"looked up in <folder>/<gpu-key>/: move it to DIR/<gpu-key>/ and pass DIR")
    return search_path(cli_dir, config_dir)


def validate_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """API keyword options checked against the one option table (errors name the keyword). A malformed ``inputs=``
    is an InputError, as wattlint.track() and the README say (:func:`check_inputs`); the rest ConfigError."""
    spec = {k: v for k, v in values.items() if _options.canonical(k) == "inputs"}
    out = _options.validate({k: v for k, v in values.items() if k not in spec}, error=ConfigError)
    for v in spec.values():
        if v is not None:
            out["inputs"] = check_inputs(v)
    return out


def check_inputs(inputs: Any) -> Any:
    """``inputs=`` of the API as the option table normalises it: spec strings (one or a list), or a dict of name ->
    spec string, TensorSpec or example tensor. InputError (wattlint.types: "the model source or its inputs cannot be
    used ... bad spec") for anything else, named ``inputs=``, from wattlint.estimate, estimate_many and track alike
    (review s54: estimate raised ConfigError where track raised InputError for the same spec)."""
    from .types import InputError

    return _options.validate({"inputs": inputs}, error=InputError)["inputs"]


def estimate(source_or_graph, *, gpu: str | GpuSpec | None = None, predictor=None, config=None, lint: bool = True,
             models_dir=None, **options: Any) -> Estimate:
    """Estimate the cost of a training plan: ``wattlint.estimate("model.onnx", gpu="rtx3090", epochs=50)``.

    ``source_or_graph`` is a model source (``.onnx``, ``config.json``, ``pkg.mod:attr``, ``file.py:attr``, an
    ``nn.Module``) or an already traced :class:`CostGraph`. ``options`` are those of the command line, by their
    Python names (wattlint.options: ``epochs``, ``steps``, ``dataset``, ``tokens``, ``seq_len``, ``batch_size``,
    ``grad_accum``, ``precision``, ``optimizer``, ``gpus``, ``gpus_per_node``, ``sharding``, ``pue``, ``region``,
    ``carbon_intensity``, ``price`` / ``price_per_kwh``, ``gpu_hour_price``, ``utilization``, ``internode_gbps``,
    ``activation_checkpointing`` (= ``recompute="full"``), ``recompute`` (none | selective | full), ``inputs``, ``tensor_parallel``, ``pipeline_parallel``, ``virtual_pipeline_stages``, ``context_parallel``, ``expert_parallel``,
    ``sequence_parallel``, ``micro_batch_size``, ``launch_overhead``, ``goodput``: docs/PARALLEL.md). ``lint=False`` skips the rules (no findings). ``models_dir``: a
    folder of fitted models searched before the default search path (energy.predictor.search_path)."""
    notes: tuple[str, ...] = ()
    if gpu is None:
        gpu = _options.DEFAULT_GPU
        notes = (f"no gpu given: {_options.DEFAULT_GPU} (default)",)
    if not isinstance(gpu, (str, GpuSpec)):
        raise ConfigError(f"gpu={gpu!r}: one GPU name or GpuSpec; wattlint.api.estimate_many(source, [...]) estimates "
                          f"several")
    if options.get("compare") is not None:
        raise ConfigError("compare=: estimate() costs one GPU; wattlint.api.estimate_many(source, [gpu, ...]) "
                          "estimates several (what --compare runs)")
    _check_args(predictor, config, models_dir)
    opts = validate_options(options)
    _refuse_retrace(source_or_graph, opts)
    req = Request(source=source_or_graph, gpus=(gpu,), options=opts, config=config,
                  notes=notes, lint=lint, predictor=predictor, models_dirs=models_search_path(models_dir, config))
    return run(req)[0]


def _check_args(predictor, config, models_dir=None) -> None:
    """``predictor=``, ``config=`` and ``models_dir=`` of the API: one ConfigError line for a value of the wrong
    type, not an AttributeError (or pathlib's TypeError) from deep inside pricing, lint or the search path."""
    if models_dir is not None and not isinstance(models_dir, (str, os.PathLike)):
        raise ConfigError(f"models_dir={_options._show(models_dir)}: expected a folder path (str or os.PathLike) or "
                          f"None, got {type(models_dir).__name__}")
    if predictor is not None and not all(callable(getattr(predictor, m, None)) for m in ("predict", "range_factors")):
        raise ConfigError(f"predictor={_options._show(predictor)}: expected an energy model (wattlint.energy.predictor"
                          f".Predictor, e.g. get_predictor(spec)) or None, got {type(predictor).__name__}")
    if config is not None:
        from .config import Config

        if not isinstance(config, Config):
            raise ConfigError(f"config={_options._show(config)}: expected a wattlint.config.Config (wattlint.config."
                              f"load_config(folder)) or None, got {type(config).__name__}")


def _refuse_retrace(source_or_graph, options: Mapping[str, Any]) -> None:
    """A traced CostGraph is priced as traced: a frontend option (wattlint.options.FRONTEND_OPTIONS) other than the
    one it was traced with would be ignored by the pricing, or worse, half applied (a seq_len counts the plan's steps
    at one length and prices each at the other; an optimizer sizes the plan's memory for it while the graph's
    optimizer step is priced). ConfigError: trace it again. ``options`` are validated. The options the plan itself
    applies to a graph (batch_size, gpus, grad_accum: the global batch around the traced micro-batch; precision:
    an fp32 graph priced in half precision; activation_checkpointing: the plan's recompute) pass. A seq_len is the
    graph's tokens per sample or, on a [batch, choices, seq] graph (a multiple-choice model), also the one sequence's
    length it was traced at, as the plan reads --seq-len (wattlint.plan._sequences_per_sample)."""
    if not isinstance(source_or_graph, CostGraph):
        return
    g = source_or_graph
    extra = g.extra or {}
    for name in _options.FRONTEND_OPTIONS:
        value = options.get(name)
        if value is None or name in _PLANNED_ON_GRAPH:
            continue
        choices = None  # a multiple-choice graph's (choices, one sequence's length, input), for seq_len
        if name == "seq_len":
            from .plan import _sequences_per_sample

            traced = g.seq_len or None
            # a [batch, choices, seq] graph (a multiple-choice model) records the tokens per sample, choices x seq:
            # seq_len= may also be one sequence's length, as the plan reads --seq-len (review: seq_len=128 on a
            # graph traced at 4 x 128 was refused as 'traced at sequence length 512')
            choices = _sequences_per_sample(g, None)
            same = traced is None or int(value) == traced or (choices is not None and int(value) == choices[1])
        elif name == "optimizer":
            traced = g.optimizer or None
            same = value == traced
        elif name == "optimizer_impl":
            traced = extra.get("optimizer_impl")
            same = value == traced
        elif name == "torch_version":
            from . import framework

            traced = extra.get("torch_version")
            same = traced is not None and framework.parse(value) == framework.parse(traced)
        elif name == "capacity_factor":
            traced = (extra.get("moe") or {}).get("capacity_factor")
            same = traced is not None and float(value) == float(traced)
        elif name == "inputs":
            # in the graph's order (a set's order changed from run to run)
            traced = ", ".join(f"{t.name}={str(t.dtype).rsplit('.', 1)[-1]}[{','.join(str(int(d)) for d in t.shape)}]"
                               for t in g.inputs) or None
            # with a batch_size, the batch dim aside: the trace rebinds the inputs to the plan's micro-batch
            cut = 1 if options.get("batch_size") is not None else 0
            same = traced is not None and ({(n, d, s[cut:]) for n, d, s in _specs_of(value)}
                                           == {(n, d, s[cut:]) for n, d, s in _specs_of(g.inputs)})
            if traced is not None and _options.positional_inputs(value):  # example tensors by position: no names
                same = ([(str(t.dtype).rsplit(".", 1)[-1], tuple(int(d) for d in t.shape)[cut:])
                         for t in value.values()]
                        == [(str(t.dtype).rsplit(".", 1)[-1], tuple(t.shape)[cut:]) for t in g.inputs])
        elif name == "attention":  # the torch frontend records what ran and what was asked (review s54: gpt-oss
            # runs eager whatever is asked, its attention sinks have no SDPA path: asking again gives the same graph)
            traced = extra.get("attention")
            same = value == traced or value == extra.get("attention_asked")
        else:  # any frontend option the graph does not record: cannot be checked, so not taken
            traced, same = None, False
        if same:
            continue
        how = (f"the graph was traced with {name}={traced!r}" if traced is not None and name != "seq_len" else
               f"the graph was traced at sequence length {choices[1]} ({choices[0]} choices x {choices[1]} = "
               f"{traced} tokens per sample)" if traced is not None and choices is not None else
               f"the graph was traced at sequence length {traced}" if traced is not None else
               "the graph does not record the value it was traced with")
        shown = _shown_inputs(value, g.inputs) if name == "inputs" else _options._show(value)
        raise ConfigError(f"{name}={shown}: {how}; a traced graph is priced as traced: trace it again with "
                          f"{name}={shown} (wattlint.analyze(source, {name}=...)) or estimate the source")


# frontend options the plan applies to an already traced graph (see _refuse_retrace)
_PLANNED_ON_GRAPH = ("batch_size", "gpus", "grad_accum", "precision", "activation_checkpointing")


def _named_positional(source: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Example tensors given by position (``inputs=x`` or ``inputs=(x, mask)``, keyed ``input:0``... by
    options.input_specs) named after the first positional parameters of the module's forward when the source is a
    module whose forward has that many: bound by those names, the same binding as by position (the torch frontend
    binds names that are all the forward's parameters by name, others by position), and reported by them. Otherwise
    (a source still to be loaded, a forward taking ``*args``) kept as they are: bound by position."""
    import inspect

    forward = getattr(source, "forward", None) if not isinstance(source, (str, os.PathLike, type)) else None
    try:
        params = [p for p in inspect.signature(forward).parameters.values()] if callable(forward) else []
    except (TypeError, ValueError):
        params = []
    names: list[str] = []
    for p in params:
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            break
        names.append(p.name)
    if len(names) < len(inputs) or any(p.kind is p.POSITIONAL_ONLY for p in params[:len(inputs)]):
        return dict(inputs)
    return dict(zip(names, inputs.values()))


def _shown_inputs(value: Any, traced: Sequence[Any]) -> str:
    """``inputs=`` as a refusal shows it: spec strings as given; example tensors (never their values) and TensorSpecs
    as ``name=dtype[shape]``, those given by position named after the traced graph's input at that position (the
    name they were bound to), else ``input N`` (1-based)."""
    if not isinstance(value, Mapping) or all(isinstance(v, str) for v in value.values()):
        return _options._show(value)
    positional = _options.positional_inputs(value)
    parts = []
    for i, (name, v) in enumerate(value.items()):
        if positional:
            name = getattr(traced[i], "name", None) if i < len(traced) else None
            name = name or f"input {i + 1}"
        if isinstance(v, str):
            parts.append(f"{name}={v}" if "=" not in v else v)
            continue
        dtype = str(getattr(v, "dtype", "")).rsplit(".", 1)[-1]
        parts.append(f"{name}={dtype}[{','.join(str(int(d)) for d in getattr(v, 'shape', ()))}]")
    return repr(", ".join(parts))


def _specs_of(inputs) -> set[tuple[str, str, tuple[int, ...]]]:
    """(name, dtype, shape) of each input of ``inputs=`` (validated: spec strings, or a dict of spec strings,
    TensorSpecs or example tensors) or of a graph's TensorSpecs."""
    from .frontends.inputs import parse_input_spec

    items = list(inputs.items()) if isinstance(inputs, Mapping) else [(None, v) for v in inputs]
    out = set()
    for name, v in items:
        if isinstance(v, str):
            v = parse_input_spec(v if name is None or "=" in v else f"{name}={v}")
        dtype = str(getattr(v, "dtype", "")).rsplit(".", 1)[-1]
        out.add((name or getattr(v, "name", ""), dtype, tuple(int(d) for d in getattr(v, "shape", ()))))
    return out


def estimate_many(source_or_graph, gpus: Sequence[str | GpuSpec], *, lint: bool = True, config=None,
                  predictor=None, models_dir=None, **options: Any) -> list[Estimate]:
    """The same model and plan options on several GPUs (what ``--compare`` runs): traced once. ``config``,
    ``predictor`` and ``models_dir`` as for :func:`estimate`."""
    _check_args(predictor, config, models_dir)
    if isinstance(gpus, (str, GpuSpec)):  # one GPU, not a list: a string was read letter by letter ("unknown GPU 'a'")
        raise ConfigError(f"gpus={gpus!r}: a list of GPUs (['a100', 'h100']); for one GPU use wattlint.estimate")
    opts = validate_options(options)
    _refuse_retrace(source_or_graph, opts)
    return run(Request(source=source_or_graph, gpus=tuple(gpus), options=opts, config=config, lint=lint,
                       predictor=predictor, models_dirs=models_search_path(models_dir, config)))


#: an already built plan on an already traced graph, without lint (benchmarks and validation)
estimate_graph = price
