"""The tracker: ``with wattlint.track(model, steps=...) as t: ... t.step()``.

Per step it only reads the clock and appends two floats; device energy is read at window boundaries (every
``window_s`` seconds, default 2 s, >= the 0.5 s NVML counters need), where a window line is appended to the
run record, the STEP analysis (wattlint.tracking.project) is refreshed and the budget guard runs. On CUDA the
window boundary synchronises the device once so that the energy read belongs to the steps of the window.

The budget guard acts only inside ``step()``, i.e. after the user's optimizer step: in ``on_budget="stop"`` mode a
plain loop gets :class:`BudgetExceeded`, which the tracker's own ``with`` block swallows after closing the record (status
``stopped: budget``); the Lightning / HF callbacks ask their trainer to stop instead. When the run ends (however it
ends) its final totals are checked once more, to report (never to stop: the run has ended) a budget crossed inside the
first or the last, partial window: the summary's ``budget_exceeded``. A record write that fails
(disk full) stops only the writing: measuring, the analysis and the budget guard go on.
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime as _dt
import math
import numbers
import os
import platform
import sys
import time
import warnings
import weakref
from array import array
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..types import ConfigError, WattlintError
from . import display as _display
from .project import PlanInfo, RunData, Settings, Window, analyze, measured_totals
from .record import SCHEMA, RecordExistsError, RecordWriter

ON_BUDGET = ("warn", "stop")
DEFAULT_WINDOW_S = 2.0
HOST_W_FALLBACK = 80.0  # host W per GPU for a GPU not in the database (no platform class to apply)


#: budget key (as the header's ``budget`` and the totals name it) -> (the tracker's argument, the unit shown)
BUDGET_LABELS = {"energy_kwh": ("max_kwh", "kWh"), "co2_kg": ("max_co2_kg", "kg CO2e"),
                 "cost_usd": ("max_cost_usd", "USD")}


class BudgetExceeded(Exception):
    """Raised by ``Tracker.step()`` in ``on_budget="stop"`` mode (at a step boundary); the ``with`` block of the
    tracker that raised it (``tracker``) swallows it after closing the record. Another tracker's ``with`` block it
    passes through (``with a, b:``, a's budget) closes its own record as ``stopped: another tracker's budget`` and lets
    it go on to the tracker it belongs to."""

    def __init__(self, message: str = "", tracker: "Tracker | None" = None):
        super().__init__(message)
        self.tracker = tracker


class BudgetWarning(UserWarning):
    """The projected (or already spent) energy / CO2 / cost exceeds a budget."""


def _utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _rank_suffix() -> str:
    """'-rank<N>' for one process of a multi-process job (torchrun / torch.distributed set RANK and WORLD_SIZE),
    so that each rank's record is named for it; '' otherwise."""
    rank, world = os.environ.get("RANK", ""), os.environ.get("WORLD_SIZE", "")
    return f"-rank{rank}" if rank.isdigit() and world.isdigit() and int(world) > 1 else ""


#: the scheduler's name of the job, the same in every rank of one job (SLURM, PBS; LSF: a job and its array
#: element). Not SLURM_STEP_ID: one job's ranks can run in different steps (Ray on SLURM starts each node with its own
#: srun; mpirun in a batch script puts local ranks in the batch step): review
LAUNCH_ID_VARS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "LSB_JOBINDEX")


def _launch_id() -> str | None:
    """'NAME=value,...' of the scheduler's job variables set (LAUNCH_ID_VARS), None when none is."""
    got = [f"{k}={os.environ[k]}" for k in LAUNCH_ID_VARS if os.environ.get(k)]
    return ",".join(got) or None


def _job() -> dict[str, Any] | None:
    """Which process of which multi-process job this is, from the variables torchrun / torch.distributed set (RANK,
    WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR / MASTER_PORT, TORCHELASTIC_RUN_ID) and the scheduler's
    job (``launch_id``: :data:`LAUNCH_ID_VARS`): what lets ``wattlint compare-run`` and ``wattlint fit`` put the
    ranks' records of one job together, and tell apart two jobs launched alike in the same second. None for a single
    process."""
    env = os.environ
    rank, world = env.get("RANK", ""), env.get("WORLD_SIZE", "")
    if not (rank.isdigit() and world.isdigit() and int(world) > 1):
        return None

    def num(name: str) -> int | None:
        v = env.get(name, "")
        return int(v) if v.isdigit() else None

    master = f"{env['MASTER_ADDR']}:{env.get('MASTER_PORT', '')}" if env.get("MASTER_ADDR") else None
    return {"rank": int(rank), "world_size": int(world), "local_rank": num("LOCAL_RANK"),
            "local_world_size": num("LOCAL_WORLD_SIZE"), "master": master,
            "run_id": env.get("TORCHELASTIC_RUN_ID") or None, "launch_id": _launch_id()}


def _new_record(out: Path, run_id: str, rank: str = "") -> tuple[str, Path, RecordWriter]:
    """(run id, path, writer) of a new record; ``rank``: '-rank<N>' for one process of a multi-process job.

    ``out`` a folder: <run id><rank>.jsonl, or <run id><rank>-2.jsonl, -3, ... when another run took the name in the
    same second (a sweep's processes). ``out`` a .jsonl path: that file with the rank suffix before the extension
    (run.jsonl -> run-rank1.jsonl: one record per rank, as in a folder), or run-2.jsonl, -3, ... when that name is
    taken (an earlier run, a callback reused for a second fit, a sweep with one out=). Every name is created
    exclusively (O_EXCL: no check-then-open race), so no record or other file is ever overwritten and no run, nor a
    rank of a job, fails to start because of the name (review: a rank refusing an existing out= killed, or hung,
    the whole job); the tracker warns when the record is not at the path asked for."""
    suffix = out.suffix.lower()  # run.JSONL is a record file too (it made a folder of that name)
    if suffix == ".jsonl":
        stem = out.name[: -len(out.suffix)] + rank
        for n in range(1, 10_000):
            path = out.with_name(f"{stem}{'' if n == 1 else f'-{n}'}{out.suffix}")
            try:
                return run_id + rank, path, RecordWriter(path)
            except RecordExistsError:  # taken (by an earlier run, another rank or process): the next name
                continue
        raise ConfigError(f"out={str(out)!r}: no free record name ({stem}-2 ... -9999{out.suffix} taken); pass "
                          "another out=")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={str(out)!r} is an existing file: pass a folder (records go in as <run id>.jsonl) or a "
                          "new .jsonl path")
    if suffix == ".json":
        raise ConfigError(f"out={str(out)!r}: a run record is JSON Lines; name the file .jsonl, or pass a folder")
    for n in range(1, 10_000):
        rid = run_id + rank if n == 1 else f"{run_id}{rank}-{n}"
        try:
            return rid, out / f"{rid}.jsonl", RecordWriter(out / f"{rid}.jsonl")
        except RecordExistsError:  # taken (by another process in the same second): the next name
            continue
    raise ConfigError(f"{out}: no free record name for {run_id}{rank} (9,999 taken); pass another out=")


class _NullWriter:
    """Stands in for the record writer when the record could not be created or its header written."""

    lines = 0

    def write(self, obj) -> None:
        pass

    def close(self) -> None:
        pass


def _modelled_host_w_per_gpu(spec, gpus_per_node: int) -> tuple[float, str]:
    """Host watts per tracked GPU when no static estimate states them, and how: the estimate's platform-class rule
    (energy.system.host_power_w_per_job_gpu) for a GPU in the database, else the stated flat fallback."""
    from ..types import GpuSpec

    if isinstance(spec, GpuSpec):
        from ..energy.system import host_power_w_per_job_gpu

        return host_power_w_per_job_gpu(spec, gpus_per_node)
    return HOST_W_FALLBACK, (f"GPU not identified (pass gpu=KEY): host power assumed {HOST_W_FALLBACK:.0f} W per GPU, "
                             "a flat share without the platform classes of estimates")


def _optimizer_name(opt) -> str | None:
    if opt is None or isinstance(opt, str):
        return opt
    name = type(opt).__name__.lower()
    return name if name in ("adamw", "adam", "sgd") else None


_PACKAGE_DIR = str(Path(__file__).resolve().parents[1]) + os.sep


def exit_status() -> str:
    """The status of a record still open when the interpreter exits: the uncaught exception that ended the script
    when there is one (Python sets ``sys.last_value`` before the atexit handlers run), in the form the Lightning
    callback's ``on_exception`` writes; else ``interrupted``. The Hugging Face Trainer has no exception hook, so a
    crash inside ``trainer.train()`` is named this way."""
    exc = getattr(sys, "last_value", None)
    if exc is None or isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return "interrupted (interpreter exit without close)"
    return error_status(exc)


def error_status(exc: BaseException) -> str:
    """A record's status when the training loop raised ``exc``."""
    return f"error: {type(exc).__name__}: {str(exc)[:200]}"


def _remaining_static(static: dict[str, Any], steps: int, total: int) -> dict[str, Any]:
    """The static estimate of a whole schedule priced for the ``steps`` of its ``total`` a resumed run has left:
    every total is proportional to the steps but the goodput fraction (the loader's first-batch wait per epoch
    too, to within one epoch's)."""
    f = steps / total
    out = dict(static)
    out["total"] = {k: (v if k == "goodput" else [x * f for x in v] if isinstance(v, list)
                        else v * f if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                    for k, v in (static.get("total") or {}).items()}
    out["plan"] = {**(static.get("plan") or {}), "steps": steps}
    return out


REUSED = ("this Tracker has recorded its run already (closed): a Tracker records one run; make a new one "
          "(wattlint.track(...)) for each `with` block")

COLLECTED_STATUS = ("interrupted (the run never reached its end: its tracker was garbage-collected unclosed, e.g. after "
                    "an exception caught outside the training loop)")

ANALYSIS_EVERY_N = 100_000  # below this many steps every window is analysed
ANALYSIS_GROWTH = 0.10  # above it, the next analysis waits until the run has grown by this fraction


def _user_stacklevel() -> int:
    """The ``stacklevel`` that attributes a warning to the first caller outside the wattlint package (the user's
    training loop, or the Lightning / Transformers frame that called a callback), whatever path led here."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def _warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` that never raises into the user's code: under ``-W error`` (or pytest's
    ``filterwarnings = error``) the warning became an exception that killed training and left the record without
    its summary (review); it is written to stderr instead. Attributed to the first frame outside wattlint."""
    try:
        warnings.warn(message, category, stacklevel=_user_stacklevel())
    except Warning:
        try:
            sys.stderr.write(f"{category.__name__}: {message}\n")
        except Exception:  # noqa: BLE001 - no stderr either: the record keeps the event
            pass



def _example_tensors(inputs) -> bool:
    """Whether ``inputs=`` holds example tensors by position (one tensor, or a tuple / list of them), not specs."""
    def tensor(x) -> bool:
        return not isinstance(x, (str, bytes)) and hasattr(x, "shape") and hasattr(x, "dtype")

    return tensor(inputs) or (isinstance(inputs, (list, tuple)) and bool(inputs) and all(map(tensor, inputs)))


def _measured_gpus(devices, channels, device: str) -> int | None:
    """The GPUs one process will measure, as known when the tracker is made: several GPU ``channels=``, else a
    ``devices=`` list of several (not on the CPU), else None (1). The plan at start takes the GPU channels opened
    when there are several, else this (Tracker._resolve_static)."""
    if channels is not None:
        gpus = [c for c in channels if getattr(c, "kind", "gpu") != "cpu"]
        return len(gpus) if len(gpus) > 1 else None
    if device != "cpu" and isinstance(devices, (list, tuple)) and len(devices) > 1:
        return len(devices)
    return None

class Tracker:
    """Measure a training run step by step, project the whole plan from its stable phase, write a run record.

    Model and static estimate: ``model`` (the nn.Module being trained) and ``example`` (one batch of inputs:
    tensor, tuple or dict) or ``inputs`` (spec strings; example tensors there are the ``example``), or ``source`` (a wattlint model source); ``gpu`` (database
    key; default: the NVML name resolved) or, for CPU runs, ``cpu_calibration`` (a CPU calibration run folder).
    Plan (same options and semantics as ``wattlint estimate``): ``steps`` | ``epochs`` (+ ``dataset``) |
    ``tokens`` (+ ``seq_len``), ``batch_size``, ``grad_accum``, ``precision``, ``optimizer`` (name or the torch
    optimizer), ``gpus``, ``pue``, ``region``, ``carbon_intensity``, ``price``, ``gpu_hour_price``; the parallel
    layout of a model-parallel job (``tensor_parallel``, ``pipeline_parallel``, ``virtual_pipeline_stages``,
    ``context_parallel``, ``expert_parallel``, ``moe_token_dispatcher_type``, ``overlap_moe_expert_parallel_comm``,
    ``sequence_parallel``, ``micro_batch_size``, ``training_stack``), so
    that the static estimate is of the job as it runs; ``loader_sample_time`` (one DataLoader worker's seconds per
    sample: each epoch's first batch, as ``--loader-sample-time``); ``ddp_bucket_view`` (DDP built with
    gradient_as_bucket_view=True: no bucket copy of the gradients, as ``--ddp-bucket-view``).
    Budgets: ``max_kwh`` (facility energy), ``max_co2_kg``, ``max_cost_usd`` with ``on_budget`` warn | stop.
    Output: ``out`` (a folder, default ``wattlint-runs/``, or a ``.jsonl`` path), ``display`` auto | rich | line |
    quiet, ``every`` (live line every N steps). ``clock``: ``wall`` (default) or, for CPU-only runs on a shared
    machine, ``process`` (the process's CPU seconds).
    Resuming (the callbacks set these from the trainer): ``start_step`` (the optimizer steps done before this run; its
    own steps count from 0 and ``steps`` are those still to run) and ``start_in_epoch`` (how many of them belong to the
    epoch it starts in), so that a first epoch boundary after a mid-epoch start is not read as an epoch length.

    Refused (before the loop, as ``wattlint.estimate`` refuses them), at construction: wrong values and the options
    the estimate refuses whatever the model and whatever GPUs the run finds (static.check_plan_options: ``steps=``
    with ``epochs=``, a batch that does not divide, ``tensor_parallel`` above ``gpus=``, megatron without half
    precision, ...), a malformed ``inputs=`` spec, a ``source=`` that names nothing (ConfigError / InputError). Not
    refused, noted in the record: every failure of the static estimate at ``start()`` (a refusal for this model, an
    amount of work that does not resolve from it, a model wattlint cannot trace): training is never stopped by the
    estimate's limits. A Tracker records
    one run (a closed one cannot be started again); in a process forked from the one that started it, it writes
    nothing.
    """

    #: the plan is partly the trainer's (the callbacks): at construction only the options that contradict each other
    #: whatever the trainer gives are refused (the GPUs, batch, accumulation and precision come from the trainer)
    _trainer_plan = False

    def __init__(self, model=None, *, source: str | None = None, example=None, inputs=None, optimizer=None,
                 device: str = "auto", gpu: str | None = None, devices: list[int] | None = None,
                 cpu_calibration: str | None = None,
                 steps=None, epochs=None, dataset=None, tokens=None, seq_len=None, batch_size=None, grad_accum=None,
                 precision=None, gpus=None, gpus_per_node=None, sharding=None, pue=None, region=None,
                 carbon_intensity=None, price=None, gpu_hour_price=None, activation_checkpointing=None,
                 recompute=None, tensor_parallel=None, pipeline_parallel=None, virtual_pipeline_stages=None,
                 context_parallel=None, expert_parallel=None, moe_token_dispatcher_type=None,
                 overlap_moe_expert_parallel_comm=None, sequence_parallel=None, micro_batch_size=None,
                 training_stack=None, loader_sample_time=None, optimizer_impl=None, torch_version=None,
                 attention=None, loss_impl=None, ddp_bucket_view=None, capacity_factor=None, uneven_batch=None, dataset_size=None,
                 internode_gbps=None, launch_overhead=None, host_op_time=None, goodput=None, utilization=None,
                 max_kwh: float | None = None, max_co2_kg: float | None = None, max_cost_usd: float | None = None,
                 on_budget: str = "warn", out: str | os.PathLike = "wattlint-runs", name: str | None = None,
                 every: int = 100, display: str = "auto", window_s: float = DEFAULT_WINDOW_S, static: bool = True,
                 settings: Settings | None = None, channels: list | None = None,
                 clock: str | Callable[[], float] = "wall", sync: bool | None = None, stream=None,
                 raise_on_stop: bool = True, start_step: int | None = None, start_in_epoch: int | None = None):
        if on_budget not in ON_BUDGET:
            raise ConfigError(f"on_budget={on_budget!r}: use 'warn' or 'stop'")
        for k, v in (("max_kwh", max_kwh), ("max_co2_kg", max_co2_kg), ("max_cost_usd", max_cost_usd)):
            # True is no budget (it was taken as 1)
            if v is not None and (isinstance(v, bool) or not (isinstance(v, (int, float)) and v > 0
                                                              and math.isfinite(v))):
                raise ConfigError(f"{k}={v!r}: a budget must be a positive number")
        # inf: no window line until the end, so the budget guard never ran during the run; True was taken as 1 s
        if isinstance(window_s, bool) or not (isinstance(window_s, (int, float)) and window_s > 0
                                              and math.isfinite(window_s)):
            raise ConfigError(f"window_s={window_s!r} must be a positive, finite number of seconds")
        for k, v in (("start_step", start_step), ("start_in_epoch", start_in_epoch)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ConfigError(f"{k}={v!r}: a whole number of optimizer steps >= 0 (a resumed run)")
        if settings is not None and not isinstance(settings, Settings):
            raise ConfigError(f"settings={settings!r}: pass wattlint.tracking.Settings(min_steps=..., "
                              "min_stable_s=..., max_rel_ci=...)")
        # wrong types: one ConfigError naming the keyword, not pathlib's TypeError (out=None, cpu_calibration=3) or an
        # AttributeError from the first window (channels=[1, 2])
        for k, v, what in (("out", out, "a folder or a .jsonl file"),
                           ("cpu_calibration", cpu_calibration, "a CPU calibration run folder, or None")):
            if not isinstance(v, (str, os.PathLike)) and not (k == "cpu_calibration" and v is None):
                raise ConfigError(f"{k}={v!r}: expected {what} (a str or os.PathLike path), got {type(v).__name__}")
        if channels is not None:
            what = "a list of energy channels (wattlint.tracking.devices.Channel: begin, window, describe, close)"
            if not isinstance(channels, (list, tuple)):
                raise ConfigError(f"channels={channels!r}: expected {what}, got {type(channels).__name__}")
            for c in channels:
                if not all(callable(getattr(c, m, None)) for m in ("begin", "window", "describe", "close")):
                    raise ConfigError(f"channels=: {c!r} ({type(c).__name__}) is not an energy channel; expected {what}")
        if devices is not None:  # an int (devices=5) went unchecked and failed at start, measuring nothing (s54)
            what = "a list of NVML GPU indices, e.g. devices=[0, 1] (None: the GPUs of the process)"
            if not isinstance(devices, (list, tuple)):
                raise ConfigError(f"devices={devices!r}: expected {what}, got {type(devices).__name__}")
            # any whole number type (numpy's int64 too: review s54 refused devices=[np.int64(0)]), not a bool
            bad = next((i for i in devices if isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0),
                       None)
            if bad is not None or not devices:
                raise ConfigError(f"devices={list(devices)!r}: expected {what}" +
                                  (f"; {bad!r} is not a GPU index (a whole number >= 0)" if bad is not None else ""))
            devices = [int(i) for i in devices]
        if example is None and _example_tensors(inputs):
            # example tensors given as inputs= (a tensor, a tuple / list of them), as wattlint.estimate takes them:
            # the example batch, bound by position (review s54: refused as 'a list holding a Tensor')
            example, inputs = inputs, None
        self.model = model
        self.source = source
        self.example = example
        self.inputs = inputs
        self.device = device
        self.gpu = gpu
        self.devices = devices
        self._gpus_hint = _measured_gpus(devices, channels, str(device))
        self.cpu_calibration = cpu_calibration
        self.start_step, self.start_in_epoch = start_step, start_in_epoch
        self.options = {"steps": steps, "epochs": epochs, "dataset": dataset, "tokens": tokens, "seq_len": seq_len,
                        "batch_size": batch_size, "grad_accum": grad_accum, "precision": precision,
                        "optimizer": _optimizer_name(optimizer), "gpus": gpus, "gpus_per_node": gpus_per_node,
                        "sharding": sharding, "pue": pue, "region": region, "carbon_intensity": carbon_intensity,
                        "price": price, "gpu_hour_price": gpu_hour_price,
                        "activation_checkpointing": activation_checkpointing, "recompute": recompute,
                        "tensor_parallel": tensor_parallel, "pipeline_parallel": pipeline_parallel,
                        "virtual_pipeline_stages": virtual_pipeline_stages, "context_parallel": context_parallel,
                        "expert_parallel": expert_parallel, "moe_token_dispatcher_type": moe_token_dispatcher_type,
                        "overlap_moe_expert_parallel_comm": overlap_moe_expert_parallel_comm,
                        "sequence_parallel": sequence_parallel,
                        "micro_batch_size": micro_batch_size, "training_stack": training_stack,
                        "loader_sample_time": loader_sample_time, "optimizer_impl": optimizer_impl,
                        "torch_version": torch_version, "attention": attention, "loss_impl": loss_impl,
                        "ddp_bucket_view": ddp_bucket_view,
                        "capacity_factor": capacity_factor, "uneven_batch": uneven_batch,
                        "dataset_size": dataset_size, "internode_gbps": internode_gbps,
                        "launch_overhead": launch_overhead, "host_op_time": host_op_time, "goodput": goodput,
                        "utilization": utilization}
        # a wrong value ('fp99', steps=-1) or GPU name is the caller's mistake: refused here, before the loop, as
        # wattlint.estimate refuses it (the optimizer may be the user's own class: its name is not checked)
        from ..options import validate as _validate

        _validate({k: v for k, v in self.options.items()
                   if v is not None and (k != "optimizer" or isinstance(optimizer, str))}, error=ConfigError)
        gpu_spec = None
        if gpu is not None:
            from ..hardware import resolve_gpu

            gpu_spec, _ = resolve_gpu(gpu)
        from . import static as _s

        # the plan options wattlint.estimate refuses whatever the model (steps= with epochs=, a batch that does not
        # divide by grad_accum, tensor_parallel=2 with gpus=1, megatron in fp32, ...): they ran the whole loop without a
        # plan, site settings or budgets (review); a malformed inputs= spec and a source= that names nothing too
        if self._trainer_plan:  # a callback's: the trainer gives GPUs, batch, accumulation, precision at start
            _s.check_plan_conflicts(self.options)
        else:
            _s.check_plan_options(self.options if isinstance(optimizer, (str, type(None)))
                                  else {**self.options, "optimizer": None}, gpu_spec,
                                  gpus=self._gpus_hint)
        _s.check_inputs(inputs)
        _s.check_source(source)
        if cpu_calibration is not None:  # a typo'd folder is refused here like gpu=, not found after the run
            from .static import cpu_calibration_runs

            cpu_calibration_runs(cpu_calibration)
        # names resolved from the data files (a region, a dataset preset): a typo dropped the whole plan, projection
        # and estimate after the run, though steps= was given
        if self.options.get("region") is not None:
            from ..carbon import normalize_region

            normalize_region(self.options["region"])
        if self.options.get("dataset") is not None:
            from ..plan import resolve_dataset

            resolve_dataset(self.options["dataset"], self.options.get("seq_len"))
        self.budgets = {"energy_kwh": max_kwh, "co2_kg": max_co2_kg, "cost_usd": max_cost_usd}
        self.on_budget = on_budget
        self.raise_on_stop = raise_on_stop
        self.out = Path(out)
        self.name = name
        self.window_s = float(window_s)
        self.want_static = static
        self.settings = settings or Settings()
        self._channels_given = channels
        if clock == "wall":
            self.clock, self.clock_name = time.perf_counter, "wall"
        elif clock == "process":
            self.clock, self.clock_name = time.process_time, "process"
        elif callable(clock):
            self.clock, self.clock_name = self._steady(clock), "custom"
        else:
            raise ConfigError(f"clock={clock!r}: use 'wall', 'process' or a function returning seconds")
        self._sync_opt = sync
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:  # every=0 was taken as 1, silently
            raise ConfigError(f"every={every!r}: the live line's period in steps, a whole number >= 1")
        self._display = _display.Display(display, every, stream)
        self.every = self._display.every
        self.notes: list[str] = []
        self.channels: list = []
        self.static: dict[str, Any] | None = None
        self.plan = PlanInfo()
        self.site: dict[str, Any] | None = None  # PUE, carbon intensity, prices: resolved with or without a plan
        self.path: Path | None = None
        self.started = False
        self.closed = False
        self.should_stop = False
        self.analysis: dict[str, Any] | None = None
        self.at_stable: dict[str, Any] | None = None
        self._summary: dict[str, Any] | None = None
        self._budget_hit: set[str] = set()
        self._budget_hit_step: dict[str, int] = {}  # the step of each budget's event written during the run
        self._writer: RecordWriter | None = None
        self._times = array("d")
        self._waits = array("d")
        self._wait_seen = False
        self._pending_wait = 0.0
        self._boundaries: list[int] = []
        self._next_is_boundary = False
        self._windows: list[Window] = []
        self._n = 0
        self._overhead_s = 0.0
        self._last_analysis_t = -1e18
        self._last_analysis_n = 0
        self._last_analysis_windows = 0  # windows the last analysis read (the budget guard adds the ones after it)
        self._sync: Callable[[], None] | None = None
        self._broken = False  # measuring stopped (a meter or the analysis failed): no more windows
        self._tracking_stopped_at = 0  # the step at which it stopped
        self._writing = True  # False once a write to the record failed: measuring and the budget guard go on
        self._renamed: dict[str, str] | None = None  # the record is not at the out= file given: where and why
        self._steps_written = 0  # steps in the window lines written to the record so far
        self._record_stop: dict[str, Any] | None = None  # when and why the record stopped being written
        self._stop_message = ""
        self.host_w: float | None = None
        self.device_kind = "unknown"

    # ---- life cycle ------------------------------------------------------------------------------------------

    def __enter__(self) -> "Tracker":
        if self.closed:  # a second `with` block recorded nothing, silently (review)
            raise WattlintError(REUSED)
        self.start()
        return self

    def _foreign(self) -> bool:
        """True in a process forked from the one that started the run (os.fork() inside the tracked block): the child
        inherits the tracker, its atexit hook and the record's open file; its exit wrote a second summary line into
        the parent's record, which was then refused as malformed (review). Nothing is written from there."""
        pid = getattr(self, "_pid", None)
        return pid is not None and os.getpid() != pid

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._foreign():
            return False
        if exc_type is None:
            self.close("completed")
            return False
        if issubclass(exc_type, BudgetExceeded):
            if getattr(exc, "tracker", None) is self:
                self.close("stopped: budget")
                return True
            # another tracker's budget stop passing through this block (`with a, b:`): this run stopped too, and the
            # exception goes on to the tracker it belongs to (b took a's stop as its own: review)
            self.close(f"stopped: another tracker's budget ({str(exc)[:160]})")
            return False
        if issubclass(exc_type, KeyboardInterrupt):
            self.close("interrupted")
            return False
        if issubclass(exc_type, SystemExit):  # sys.exit() inside the block: a clean exit is no error
            code = getattr(exc, "code", None)
            code = int(code) if isinstance(code, bool) else code  # sys.exit(True) is exit status 1
            self.close("completed" if code in (None, 0) else f"exited: {code}")
            return False
        self.close(error_status(exc) if exc is not None else f"error: {exc_type.__name__}")
        return False

    def _open_channels(self) -> None:
        from .devices import CpuChannel, open_nvml_channels

        if self._channels_given is not None:
            self.channels = list(self._channels_given)
            kinds = {getattr(c, "kind", "gpu") for c in self.channels}
            self.device_kind = "cpu" if kinds == {"cpu"} else "cuda"
            return
        dev = self.device
        if dev == "auto":
            dev = "cpu"
            if self.model is not None:
                try:
                    dev = next(iter(self.model.parameters())).device.type
                except StopIteration:
                    pass
            elif "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
                dev = "cuda"
        if dev not in ("cpu", "cuda"):
            raise ConfigError(f"device={self.device!r}: use auto, cuda or cpu")
        if dev == "cuda" and self.clock_name == "process":
            raise ConfigError("clock='process' times CPU-only runs (GPU work does not count as process CPU time)")
        self.device_kind = dev
        if dev == "cpu":
            # energy is power x WALL time at the busy threads measured over wall time, whatever the step clock
            self.channels = [CpuChannel(wall=time.perf_counter if self.clock_name == "process" else None)]
            self.notes.append("CPU energy is MODELLED (no RAPL here): the calibration CPU meter's stated power model "
                              "at the measured busy threads; time is measured")
            if self.clock_name == "process":
                self.notes.append("clock 'process': step times are this process's CPU seconds (all its threads), not "
                                  "wall time: what a shared machine cannot steal; run one thread to read it as time; "
                                  "the modelled CPU energy is still its power at the busy threads x wall time, and "
                                  "its power in W is that energy / wall seconds (energy per step: the window's "
                                  "energy / its steps)")
            return
        try:
            self.channels, how = open_nvml_channels(self.devices, clock=self.clock)
            self.notes.append(f"GPUs measured: {how}")
            for c in self.channels:
                self.notes.extend(getattr(c, "notes", []))
        except Exception as e:  # noqa: BLE001 - measuring must never stop the training run
            self.channels = []
            self.notes.append(f"no GPU energy meter ({e}): time only")
            # once per run (start() opens the channels once): a CUDA run on a machine without one (device='cuda' on a
            # laptop) gave a time-only record without a word
            torch = sys.modules.get("torch")
            found = ("CUDA is available but no GPU energy meter could be opened" if torch is not None
                     and torch.cuda.is_available() else "no CUDA device was found to measure")
            dev_said = f"device={self.device!r}" + (" (resolved to cuda)" if self.device != "cuda" else "")
            self._say(f"wattlint: {dev_said}: {found} ({e}): energy is not measured, this run's record is time only",
                      RuntimeWarning)
        if self._sync_opt is not False:
            torch = sys.modules.get("torch")
            if torch is not None and torch.cuda.is_available():
                self._sync = torch.cuda.synchronize

    def _resolve_static(self) -> None:
        from . import static as _s

        spec = predictor = None
        if self.device_kind == "cpu" and not self.gpu:
            try:
                spec, predictor, note = _s.cpu_device(self.cpu_calibration)
                self.notes.append(note)
            except WattlintError as e:
                self.notes.append(str(e))
        else:
            names = [getattr(c, "gpu_name", "") for c in self.channels]
            try:
                spec, note = _s.gpu_key_for(names, self.gpu)
                self.notes.append(note)
                if self.device_kind == "cpu":  # gpu= on a machine without CUDA (a laptop run of the docs' example)
                    self.notes.append(f"measured on this machine's CPU, estimated on {spec.key}: the comparison is "
                                      "not like with like (a projection of the GPU run, not a check of it), and "
                                      "`wattlint fit` does not use this record")
            except WattlintError as e:
                self.notes.append(str(e))
        self.spec = spec
        inputs = self.inputs
        if inputs is None and self.example is not None:
            try:
                inputs = _s.example_specs(self.model, self.example)
            except Exception as e:  # noqa: BLE001
                self.notes.append(f"example inputs not understood ({type(e).__name__}: {e})")
        # name -> TensorSpec for the plan's batch: inputs= given as spec strings, or a dict of them, is parsed (checked
        # when track() was made); a dict of strings went as it was and the plan at start raised AttributeError (s54)
        self._input_specs = None
        if inputs is not None:
            from ..frontends.inputs import parse_input_specs

            try:
                self._input_specs = parse_input_specs(_s.spec_strings(inputs))
            except Exception as e:  # noqa: BLE001 - an example's specs: a note, never an error in the training run
                self.notes.append(f"inputs not understood for the plan ({type(e).__name__}: {e})")
        self.identity = _s.model_identity(self.model, self.source)
        options = dict(self.options)
        # the GPUs this process measures are the plan's (below): the estimate is made for them too (it was made for
        # 1 GPU and compared with the energy of all of them); the GPU channels opened, else the GPUs the construction
        # check planned (a devices= list whose meters did not open: review s53 planned 1 and lost the plan)
        found = sum(1 for c in self.channels if getattr(c, "kind", "gpu") != "cpu") if self.device_kind == "cuda" \
            else 0
        n = found if found > 1 else (self._gpus_hint or 0)
        if not options.get("gpus") and n > 1:
            options["gpus"] = n
            # one process over several GPUs is nn.DataParallel, which scatters any batch (33 = 17 + 16)
            if options.get("uneven_batch") is None:
                options["uneven_batch"] = True
        if spec is not None:  # a per-GPU price list naming no price for the device found: the run without it
            options, unpriced = _s.price_for_device(options, spec)
            if unpriced:
                self.notes.append(unpriced)
                if self.budgets.get("cost_usd") is not None:
                    self._say(f"wattlint: {unpriced}: max_cost_usd is checked on the electricity cost alone",
                              RuntimeWarning)
        if self.want_static and spec is not None and (self.model is not None or self.source is not None):
            try:
                self.static = _s.static_estimate(model=self.model, source=self.source, inputs=inputs, spec=spec,
                                                 predictor=predictor, options=options)
            except Exception as e:  # noqa: BLE001 - never stop the training for the estimate
                self.static = {"error": f"{type(e).__name__}: {e}"}
        elif self.want_static:
            why = "no device spec" if spec is None else "no model= or source="
            self.static = {"error": why}
        static_plan = (self.static or {}).get("plan") if self.static and not self.static.get("error") else None
        # the plan and site on the GPUs found (options: gpus = the channels of one process measuring several; review
        # s53: the caller's options at 1 GPU refused a layout the construction check had let through, and the run
        # went on without its plan, PUE or prices)
        plan, assumptions, err = _s.resolve_plan(spec, options, self._input_specs, static_plan)
        if err:
            self.notes.append(err)
        self.site = None
        if plan is None:
            # no planned amount of work (or it did not resolve): the site settings resolve all the same, through the
            # estimator's resolver, so that what runs gets its facility energy (x PUE), CO2 and cost and the CO2 /
            # cost budgets are checked (they were dropped with the plan: review)
            site, assumptions, site_err = _s.resolve_site(spec, options, self._input_specs, static_plan)
            if site_err:
                self.notes.append(site_err)
            if site is not None:
                self.plan = PlanInfo.from_dict(site)
                self.site = _s.site_of(self.plan.as_dict())
        self.plan_assumptions = [a for a in assumptions if not a.startswith("unknown ")]
        if plan is not None:
            self.plan = PlanInfo.from_dict(plan)
            self.site = _s.site_of(self.plan.as_dict())
            if self.start_step:  # a resumed run: its steps count from 0, the plan's steps are those still to run
                steps = self.plan.steps
                if steps is not None and self.options.get("steps") is None:
                    # a plan of epochs / tokens / a dataset is the whole schedule: the resumed run has the rest of it
                    total, start = int(steps), int(self.start_step)
                    if start < total:
                        steps = total - start
                        self.notes.append(f"resumed at optimizer step {start:,}: the plan's {total:,} steps less "
                                          f"those done, {steps:,} to run (the static estimate's totals x "
                                          f"{steps:,}/{total:,})")
                        if self.static and not self.static.get("error"):
                            self.static = _remaining_static(self.static, steps, total)
                    else:
                        self.notes.append(f"resumed at optimizer step {start:,}, at or past the plan's {total:,} "
                                          f"steps: the plan is kept as given")
                self.plan = dataclasses.replace(self.plan, steps=steps, start_step=int(self.start_step),
                                                start_in_epoch=self.start_in_epoch)
        if self.device_kind == "cuda":
            per_gpu, how = None, "the static estimate's host model"
            s = self.static or {}
            if s.get("per_step") and s["per_step"].get("time_s"):
                # the estimate's GPU count (its per-step host energy is the job's): the hardware block carries it
                # (the plan block has no "gpus"), else the GPUs it was made for (this process's channels)
                g = (s.get("hardware") or {}).get("gpus") or options.get("gpus") or 1
                per_gpu = s["per_step"]["host_energy_j"] / s["per_step"]["time_s"] / max(1, int(g))
            if not per_gpu:
                local = os.environ.get("LOCAL_WORLD_SIZE", "")
                per_node = (self.options.get("gpus_per_node") or (int(local) if local.isdigit() else 0)
                            or len(self.channels) or 1)
                per_gpu, how = _modelled_host_w_per_gpu(self.spec, int(per_node))
            self.host_w = per_gpu * max(1, len(self.channels))
            self.notes.append(f"host CPU + DRAM energy MODELLED at {self.host_w:.0f} W for this process's "
                              f"{max(1, len(self.channels))} GPU(s), not measured ({how})")

    def start(self) -> "Tracker":
        if self.closed:
            raise WattlintError(REUSED)
        if self.started:
            return self
        self._open_channels()
        try:
            self._resolve_static()
        except BaseException:  # (Ctrl-C while the model is traced): nothing started, nothing left open
            for c in self.channels:
                try:
                    c.close()
                except Exception:  # noqa: BLE001
                    pass
            raise
        stamp = _stamp()
        label = self.name or (self.identity.get("name") or "run")
        label = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(label))[:60]
        rank = _rank_suffix()
        try:
            self.run_id, self.path, self._writer = _new_record(self.out, f"{stamp}-{label}", rank)
        except OSError as e:  # disk full, no permission: no record, but never stop the training (nor the guard)
            self.run_id, self.path, self._writer = f"{stamp}-{label}{rank}", None, _NullWriter()
            self._stop_writing(e)
        else:
            self._renamed = self._renamed_why(rank)
            if self._renamed:  # review: a rank-0-only job's out='run.jsonl' became run-rank0.jsonl without a word
                msg = f"this run's record is {self.path}, not out={self._renamed['asked']!r}: {self._renamed['why']}"
                self.notes.append(msg)
                self._say(f"wattlint: {msg}", RuntimeWarning)
        import wattlint

        torch = sys.modules.get("torch")
        header = {
            "schema": SCHEMA, "type": "header", "run_id": self.run_id, "started_utc": _utc(),
            "wattlint_version": wattlint.__version__, "model": self.identity,
            "device": {"kind": self.device_kind, "gpu_key": getattr(self.spec, "key", None),
                       "gpu_names": sorted({getattr(c, "gpu_name", "") for c in self.channels} - {""}),
                       "count": len(self.channels),
                       "cpu_threads": torch.get_num_threads() if torch is not None else None},
            "channels": [c.describe() for c in self.channels],
            "plan": {"request": {k: v for k, v in self.options.items() if v is not None},
                     "resolved": self.plan.as_dict() if self.plan.steps else None,
                     "assumptions": self.plan_assumptions,
                     # additive: the site settings the run's energy is priced at, a plan or none (resolved: null)
                     "site": self.site},
            "static": self.static, "host_w": self.host_w, "job": _job(),
            "settings": {**self.settings.as_dict(), "window_s": self.window_s, "clock": self.clock_name},
            "budget": {**self.budgets, "on_budget": self.on_budget},
            "software": {"python": platform.python_version(), "platform": platform.platform(),
                         "torch": getattr(torch, "__version__", None)},
            "notes": self.notes,
        }
        try:
            self._writer.write(header)
        except Exception as e:  # noqa: BLE001 - the header did not fit on the disk: drop the torn file, keep training
            self._writer, torn, self.path = _NullWriter(), self.path, None
            self._stop_writing(e)
            try:
                if torn is not None:
                    os.unlink(torn)  # our own file of this second, holding nothing of the user's
            except OSError:
                pass
        self.started = True
        self._pid = os.getpid()  # a child forked inside the block writes nothing into this record (_foreign)
        self._t_start = self.clock()
        for c in self.channels:
            c.begin(self._t_start)
        self._last = self._win_t0 = self._t_start
        self._win_first = 0
        self._next_window = self._t_start + self.window_s
        ref = weakref.ref(self)

        def _at_exit() -> None:  # the loop ended without close(): keep the record complete
            t = ref()
            if t is not None and not t.closed and not t._foreign():
                t.close(exit_status())
        self._atexit = _at_exit
        atexit.register(_at_exit)
        return self

    # ---- per step --------------------------------------------------------------------------------------------

    def step(self) -> bool:
        """Mark the end of one optimizer step. Returns True when a budget says stop (``on_budget='stop'``)."""
        now = self.clock()
        if not self.started:
            raise WattlintError("Tracker.step() before start(): use 'with wattlint.track(...) as t:'")
        due = now >= self._next_window
        if due and self._sync is not None:
            self._sync()
            now = self.clock()
        self._times.append(now - self._last)
        self._waits.append(self._pending_wait)
        self._pending_wait = 0.0
        if self._next_is_boundary:
            self._boundaries.append(self._n)
            self._next_is_boundary = False
        self._n += 1
        self._last = now
        stop = False
        if due:
            try:
                stop = self._close_window(now)
            except Exception as e:  # noqa: BLE001 - never break the user's training loop (e.g. disk full)
                self._stop_tracking(e, "training continues")
        # the live line every N steps (display="line" printed one at every window too: every=1000 gave a line every
        # 2 s); rich redraws its one line in place, so it also takes the fresh analysis of each window
        if self._n % self.every == 0 or (due and self._display.mode == "rich"):
            self._show("update", self._live_text())
        self._overhead_s += self.clock() - now
        if stop and self.raise_on_stop:
            raise BudgetExceeded(self._stop_message, tracker=self)
        return self.should_stop

    def epoch(self) -> None:
        """Mark an epoch boundary: the next step's extra time (evaluation, checkpoint, loader restart) is measured
        as epoch overhead and projected for the remaining epochs."""
        if self._n > 0:
            self._next_is_boundary = True

    def data_wait(self, seconds: float) -> None:
        """Add time the current step spent waiting for its batch (callbacks and ``wrap`` call this)."""
        self._wait_seen = True
        self._pending_wait += max(0.0, float(seconds))

    def wrap(self, iterable: Iterable) -> Iterator:
        """Iterate a data loader, timing each ``next()`` as data wait; a second pass marks an epoch boundary."""
        if getattr(self, "_wrapped", False):
            self.epoch()
        self._wrapped = True
        self._wait_seen = True
        it = iter(iterable)
        clock = self.clock
        while True:
            t0 = clock()
            try:
                item = next(it)
            except StopIteration:
                return
            self._pending_wait += clock() - t0
            yield item

    def _renamed_why(self, rank: str) -> dict[str, str] | None:
        """Where and why the record is not the ``out=`` file given ({asked, why}), None when it is (or ``out`` is a
        folder): a rank of a multi-process job adds -rank<N> (rank 0 too: see docs/TRACKING.md), a name taken goes
        to the next free one."""
        if self.out.suffix.lower() != ".jsonl" or self.path is None or self.path == self.out:
            return None
        why = []
        if rank:
            j = _job() or {}
            why.append(f"rank {j.get('rank')} of a {j.get('world_size')}-process job (RANK / WORLD_SIZE set) writes "
                       f"its own record, named {rank} as in a folder")
        mine = self.out.with_name(self.out.stem + rank + self.out.suffix)
        if self.path != mine:
            why.append(f"{mine} exists already and a run record is never overwritten")
        return {"asked": str(self.out), "why": "; ".join(why)}

    def _write(self, line: dict[str, Any]) -> bool:
        """Write one line to the record; True when it was written. A write that fails (disk full, an I/O error)
        stops the WRITING only: the run goes on being measured and analysed, and the budget guard goes on checking
        and stopping (review: one failed write turned the guard off, so on_budget="stop" never stopped, and a
        failing budget event line lost its stop)."""
        if not self._writing or self._foreign():
            return False
        try:
            self._writer.write(line)
            return True
        except Exception as e:  # noqa: BLE001 - never raise into the user's code
            self._stop_writing(e)
            return False

    def _stop_writing(self, e: BaseException) -> None:
        """No more lines to the record (every completed line stays valid; a torn last line is ignored by the
        reader); warn once, never raise. Measuring and the budget guard are untouched."""
        self._writing = False
        err = f"{type(e).__name__}: {e}"
        goes_on = "measuring and the budget guard go on (on_budget='stop' still stops the run); training continues"
        if self.path is None:  # the record could not be created or its header written
            self.notes.append(f"no run record is written ({err}); measuring and the budget guard went on")
            self._say(f"wattlint: no run record is written ({err}); {goes_on}", RuntimeWarning)
            return
        if self._record_stop is None:  # what the end-of-run printout says of the record
            self._record_stop = {"step": self._n, "steps_written": self._steps_written, "error": err,
                                 "write_failed": True}
        self.notes.append(f"the run record stopped being written at step {self._n} ({err}); measuring and the "
                          "budget guard went on")
        self._say(f"wattlint: the run record {self.path} stopped being written at step {self._n} ({err}): it keeps the "
              f"lines written before and has no summary line (read back as incomplete); {goes_on}", RuntimeWarning)

    def _stop_tracking(self, e: BaseException, then: str) -> None:
        """A meter or the analysis failed: stop measuring (no more windows) and writing, keep what was written and
        warn, never raise into the user's code. (A failing WRITE stops only the writing: :meth:`_stop_writing`.)"""
        self._broken = True
        self._tracking_stopped_at = self._n
        self._writing = False
        self._next_window = math.inf
        if self.path is not None and self._record_stop is None:  # what the end-of-run printout says of the record
            self._record_stop = {"step": self._n, "steps_written": self._steps_written,
                                 "error": f"{type(e).__name__}: {e}", "write_failed": isinstance(e, OSError)}
        self.notes.append(f"tracking stopped at step {self._n}: {type(e).__name__}: {e}")
        self._say(f"wattlint: tracking stopped ({type(e).__name__}: {e}); {then}", RuntimeWarning)

    # ---- windows ---------------------------------------------------------------------------------------------

    def _run_data(self, now: float) -> RunData:
        return RunData(step_times=self._times, boundaries=self._boundaries,
                       data_wait=self._waits if self._wait_seen else None, windows=self._windows,
                       channels=[c.describe() for c in self.channels], plan=self.plan, host_w=self.host_w,
                       elapsed_s=now - self._t_start)

    def _close_window(self, now: float, final: bool = False) -> bool:
        first, end = self._win_first, self._n
        ch = [c.window(now) for c in self.channels]
        # the run's last window, closed when the tracked block ends: the time after the last step (a final
        # evaluation, a checkpoint save inside the block) is in its energy reading; analyze keeps it apart
        after = max(0.0, now - self._last) if final else 0.0
        w = Window(first=first, end=end, t0=self._win_t0 - self._t_start, t1=now - self._t_start,
                   energy_j=[c.get("energy_j") for c in ch], failed=[c.get("energy_j") is None for c in ch],
                   after_s=after, wall_s=[c.get("wall_s") for c in ch])
        self._windows.append(w)
        t_since = now - self._last_analysis_t
        due = not (self.analysis and self.analysis.get("stable")) or t_since >= max(10.0, self.window_s)
        # the analysis reads every step so far (O(n)): past ANALYSIS_EVERY_N steps it waits for the run to grow by
        # ANALYSIS_GROWTH, so its cost per step stays bounded (600,000 tiny unstable steps in 0.05 s windows spent
        # 88 % of the loop's time analysing)
        grown = self._n < ANALYSIS_EVERY_N or self._n - self._last_analysis_n >= ANALYSIS_GROWTH * self._last_analysis_n
        if final or (due and grown):
            self.analysis = analyze(self._run_data(now), self.settings)
            self._last_analysis_t = now
            self._last_analysis_n = self._n
            self._last_analysis_windows = len(self._windows)
        a = self.analysis
        stable_from = a.get("warmup_steps") if a else None
        line = {"type": "window", "i": len(self._windows) - 1, "first_step": first, "t0": w.t0, "t1": w.t1,
                "step_times_s": list(self._times[first:end]),
                "data_wait_s": list(self._waits[first:end]) if self._wait_seen else None,
                "boundaries": [b for b in self._boundaries if first <= b < end], "channels": ch,
                **({"after_steps_s": after} if after > 0 else {}),
                "phase": ("unknown" if end == first  # the run's end after a window closed on its last step: no step
                          else "stable" if a and a.get("stable") and stable_from is not None and first >= stable_from
                          else "warmup" if a and stable_from is not None and end <= stable_from else "unknown")}
        if a and a.get("projection"):
            p = a["projection"]
            line["projection"] = {k: p.get(k) for k in ("time_s", "time_s_range", "energy_kwh", "co2_kg",
                                                        "cost_usd")}
        if self._write(line):
            self._steps_written = end
        self._win_first, self._win_t0 = end, now
        self._next_window = now + self.window_s
        stop = False
        if a and a.get("stable") and self.at_stable is None:
            self.at_stable = {"step": self._n, "time_s": a["time_s"], "warmup_steps": a.get("warmup_steps"),
                              "step_time_s": a["step_time_s"]["mean"], "projection": a.get("projection")}
            self._write({"type": "event", "kind": "stable", "step": self._n, "t": now - self._t_start,
                         **{k: v for k, v in self.at_stable.items() if k != "step"}})
        if a and not final:
            stop = self._check_budget(a, now)
        return stop

    def _measured_now(self, a: dict[str, Any]) -> dict[str, Any]:
        """``a`` with its measured totals brought up to the last closed window: once a run is stable the analysis is
        refreshed every 10 s (or as the run grows), and the 'already spent' test read its stale totals (review s53:
        a 540 J budget was crossed by 7x before the analysis caught up). Each window closed after it adds its steps'
        time and its channels' energy (a window a channel failed to read: its steps' time at the analysis' device
        rate, as the analysis fills it) and the host's power over that time."""
        new = self._windows[self._last_analysis_windows:]
        m = a.get("measured") or {}
        if not new or m.get("device_energy_j") is None:
            return a
        t0 = float(m.get("time_s") or 0.0)
        ps = a.get("per_step") or {}
        rate = (ps["device_energy_j"] / ps["time_s"] if ps.get("device_energy_j") is not None and ps.get("time_s")
                else None)
        dt = sum(w.steps_duration for w in new)
        de = 0.0
        for w in new:
            if any(w.failed) or any(e is None for e in w.energy_j):
                de += (rate or 0.0) * w.steps_duration
            else:
                de += sum(float(e) for e in w.energy_j)
        host = m.get("host_energy_j")
        host_w = host / t0 if host is not None and t0 > 0 else None
        now_m = {**m, "time_s": t0 + dt, "device_energy_j": float(m["device_energy_j"]) + de}
        if host_w is not None:
            now_m["host_energy_j"] = host + host_w * dt
        return {**a, "measured": now_m}

    def _check_budget(self, a: dict[str, Any], now: float) -> bool:
        if not any(v is not None for v in self.budgets.values()):
            return False
        from ..report import units as _u
        proj = a.get("projection") or {}
        spent = measured_totals(self._run_data(now), self._measured_now(a), self.plan)
        labels = BUDGET_LABELS
        stop = False
        for key, limit in self.budgets.items():
            if limit is None or key in self._budget_hit:
                continue
            s = spent.get(key)
            rng = proj.get(f"{key}_range") if a.get("stable") else None
            why = None
            if s is not None and s > limit:  # digits enough to read above the limit (crossed by one window's worth)
                why = f"already spent {_u.beyond(s, limit)} {labels[key][1]}"
            elif rng and rng[0] > limit:
                why = (f"projected {_u.beyond(proj[key], limit)} {labels[key][1]} (5-95 %: {_u.beyond(rng[0], limit)}-"
                       f"{_u.beyond(rng[1], limit)}) for the whole plan")
            if why is None:
                continue
            self._budget_hit.add(key)
            self._budget_hit_step[key] = self._n
            action = self.on_budget
            msg = f"wattlint budget {labels[key][0]}={limit:g}: {why} at step {self._n:,}" + \
                  ("; stopping at this step boundary" if action == "stop" else "")
            self._write({"type": "event", "kind": "budget", "step": self._n, "t": now - self._t_start,
                         "budget": labels[key][0], "limit": limit, "spent": s, "projected": proj.get(key),
                         "range": rng, "action": action, "message": msg})
            self._say(msg, BudgetWarning)
            if action == "stop":
                self.should_stop = True
                self._stop_message = msg
                stop = True
        return stop

    # ---- end -------------------------------------------------------------------------------------------------

    def _end_budget(self, a: dict[str, Any], now: float) -> list[dict[str, Any]] | None:
        """The budgets the run's final totals exceed, checked once when the run ends, however it ends (completed,
        stopped, an exception, Ctrl-C, the interpreter's exit): the guard runs at window boundaries only, so a run
        that ended inside its first window (a tiny budget, a short run), or whose last, partial window crossed a
        budget, was never checked on its final totals (review: max_kwh=1e-9 over 48 steps in 0.45 s read
        'completed' without a word). The run has ended: nothing is stopped, whatever ``on_budget`` says; the
        summary lists the budget (``budget_exceeded``) and a budget not hit during the run gets its ``budget`` event
        (action ``warn``, ``at_end``) and its :class:`BudgetWarning`. The totals are the tracked block's: the steps'
        and the work after the last step (a final evaluation, a checkpoint save) that the summary keeps apart. None
        when no budget is set, [] when none is exceeded."""
        if not any(v is not None for v in self.budgets.values()):
            return None
        from ..report import units as _u

        m = a.get("measured") or {}
        after = m.get("after_steps") or {}
        t_after = float(after.get("time_s") or 0.0)
        whole = a
        if t_after > 0 and m.get("device_energy_j") is not None:
            whole = {**a, "measured": {
                **m, "time_s": float(m.get("time_s") or 0.0) + t_after,
                "device_energy_j": m["device_energy_j"] + float(after.get("device_energy_j") or 0.0),
                "host_energy_j": float(m.get("host_energy_j") or 0.0) + float(self.host_w or 0.0) * t_after}}
        spent = measured_totals(self._run_data(now), whole, self.plan)
        out: list[dict[str, Any]] = []
        self._budget_unchecked = []
        for key, limit in self.budgets.items():
            s = spent.get(key)
            name, unit = BUDGET_LABELS[key]
            if limit is not None and s is None and self._n > 0:  # never checked, during the run either: say so
                why = ("no device energy was measured" if "energy_kwh" not in spent else
                       "no carbon intensity in the resolved plan" if key == "co2_kg" else "no price in the resolved plan")
                self._budget_unchecked.append(
                    f"budget {name}={limit:g} was never checked: {why}" + ("" if self.site or key == "energy_kwh"
                    else " (the site settings, PUE, carbon_intensity= / region= and price= / gpu_hour_price=, "
                    "did not resolve: see the notes)"))
            if limit is None or s is None or not s > limit:
                continue
            during = self._budget_hit_step.get(key)
            how = f"{self._n:,} steps" + (f" and {_u.duration(t_after)} after the last step" if t_after > 0 else "")
            msg = (f"wattlint budget {name}={limit:g}: spent {_u.beyond(s, limit)} {unit} by the end of the run "
                   f"({how})")
            if during is None and self.on_budget == "stop":
                msg += ("; not stopped: the budget is checked at window boundaries (every "
                        f"{self.window_s:g} s) and the run ended before one saw it crossed")
            elif during is not None:
                msg += f"; first hit at step {during:,}"
            out.append({"budget": name, "key": key, "limit": limit, "spent": s, "unit": unit,
                        "after_steps_s": t_after if t_after > 0 else None, "hit_during_run_at_step": during,
                        "message": msg})
            if key not in self._budget_hit:
                self._budget_hit.add(key)
                self._write({"type": "event", "kind": "budget", "step": self._n, "t": max(0.0, now - self._t_start),
                             "budget": name, "limit": limit, "spent": s, "projected": None, "range": None,
                             "action": "warn", "at_end": True, "message": msg})
                self._say(msg, BudgetWarning)
        return out

    def _steady(self, clock):
        """A user's clock as the tracker reads it: never backwards, never NaN / inf, never raising (a reading like
        that is held at the last good one and counted; the record says so): a clock that jumped back wrote a negative
        window time its own reader refused, a NaN broke the analysis inside __exit__."""
        last = [0.0, False]  # last good reading, seen one

        def read() -> float:
            try:
                v = float(clock())
            except Exception:  # noqa: BLE001 - the user's function
                v = math.nan
            if not math.isfinite(v) or (last[1] and v < last[0]):
                self._clock_held += 1
                return last[0]
            last[0], last[1] = v, True
            return v

        self._clock_held = 0
        return read

    def close(self, status: str = "completed") -> dict[str, Any]:
        """Close the last window, write the summary line, print the summary (unless quiet)."""
        if self.closed:
            return self._summary or {}
        if self._foreign():  # a forked child: the parent's run and record are not its to end
            return {}
        if not self.started:
            self.closed = True
            return {}
        self.closed = True
        try:
            atexit.unregister(self._atexit)
        except Exception:  # noqa: BLE001
            pass
        now = self.clock()
        if self._sync is not None:
            try:
                self._sync()
            except Exception:  # noqa: BLE001 - a CUDA error after an exception in the loop
                pass
        closed_window = False
        # the last window: the steps since the last window closed, and the time after the last step (a final
        # evaluation, a checkpoint save) even when the last step closed a window itself (review: that time went
        # into the analysis as steps not yet in a window, at the steps' power, and compare-run of the same record
        # showed another energy)
        if self._n > 0 and (self._n > self._win_first or now > self._last) and not self._broken:
            try:  # the end of the run must not raise into the user's code (a checkpoint save may follow the block)
                self._close_window(now, final=True)
                closed_window = True
            except Exception as e:  # noqa: BLE001 - e.g. disk full while writing the last window
                self._stop_tracking(e, "the record keeps the lines written before")
        if not closed_window:
            try:  # up to the last step: the time after it is no step's (steps not yet in a window are, at the mean)
                self.analysis = analyze(self._run_data(self._last if self._n else now), self.settings)
            except Exception as e:  # noqa: BLE001 - never raise into the user's code at the end of the block
                self.analysis = {"stable": False, "reason": f"analysis failed ({type(e).__name__}: {e})"}
        clock_note = None
        if getattr(self, "_clock_held", 0):
            clock_note = (f"the clock= function went backwards or returned a non-finite value "
                          f"{self._clock_held:,} time(s): each such reading was held at the previous one")
            self.notes.append(clock_note)
        from .compare import comparison

        a = self.analysis or {}
        self._budget_unchecked: list[str] = []
        try:  # never raise into the user's code at the end of the block
            over = self._end_budget(a, now)
        except Exception as e:  # noqa: BLE001
            over = None
            self._budget_unchecked = [f"the end-of-run budget check failed ({type(e).__name__}: {e})"]
        self.notes.extend(self._budget_unchecked)
        complete = status == "completed"
        planned = getattr(self.plan, "steps", None)
        short_note = None
        if complete and planned and self._n < planned:  # review: epochs=10 over one pass of the loader read
            # 'completed' at 63 of 630 steps without a word
            short_note = (f"the loop ended after {self._n:,} of the plan's {planned:,} steps: the totals measured "
                          "are the steps run; the projections are the whole plan's")
            self.notes.append(short_note)
        summary = {"type": "summary", "status": status, "ended_utc": _utc(), "steps": self._n,
                   "time_s": a.get("time_s"), "close_time_s": now - self._t_start,
                   "tracker_overhead_s": self._overhead_s,
                   "tracker_overhead_per_step_s": self._overhead_s / self._n if self._n else None,
                   "analysis": a, "at_stable": self.at_stable,
                   "comparison": comparison(a, self.static, complete=complete),
                   # in the order the run prints them (after the header's): compare-run reprints the two lists
                   **({"notes": [n for n in (clock_note, short_note, *self._budget_unchecked) if n]}
                      if short_note or clock_note or self._budget_unchecked else {}),
                   # additive (absent: no budget set, or a record of an older wattlint): the budgets the final
                   # totals exceed, [] when none is; the status is left as it is (a run that ended is not 'stopped')
                   **({"budget_exceeded": over} if over is not None else {})}
        try:
            if not self._broken:
                self._write(summary)  # disk full / I/O error on the summary line: warns, never raises
        finally:
            try:
                self._writer.close()
            except Exception as e:  # noqa: BLE001 - fsync / close failing (I/O error): the lines are written
                self._say(f"wattlint: closing the run record {self.path} failed ({type(e).__name__}: {e})",
                      RuntimeWarning)
            for c in self.channels:
                try:
                    c.close()
                except Exception:  # noqa: BLE001
                    pass
        self._summary = {**summary, "path": str(self.path) if self.path else None, "static": self.static,
                         "notes": self.notes,
                         # the run went on after its record stopped being written: the printout says so (review:
                         # it read "completed, 300 steps" over a record of 98 steps and no summary)
                         **({"record_stopped": self._record_stop} if self._record_stop else {}),
                         # review: only rank 0 tracked out='run.jsonl' and wrote run-rank0.jsonl without a word
                         **({"record_renamed": self._renamed} if self._renamed else {})}
        self._show("end", _display.summary_lines(self._summary), self._live_text())
        return self._summary

    def __del__(self) -> None:
        # a started run whose tracker is collected before close(): the Hugging Face Trainer raised (it has no
        # exception hook), the user caught the exception and dropped the trainer; the atexit hook holds the tracker
        # only weakly (it must not keep the model alive), so the record is closed here, never left without a summary
        if getattr(self, "started", False) and not getattr(self, "closed", True) and not self._foreign():
            try:
                self.close(COLLECTED_STATUS)
            except Exception:  # noqa: BLE001 - nothing may raise from a finalizer
                pass

    def _show(self, what: str, *payload) -> None:
        """The live line / summary: a display that cannot write (a closed pipe: `python train.py | head`) falls
        silent for the rest of the run instead of raising into the training loop (review: BrokenPipeError from
        t.step())."""
        try:
            getattr(self._display, what)(*payload)
        except Exception:  # noqa: BLE001 - OSError (EPIPE, EIO) or the terminal library's own error
            self._display = _display.Display("quiet")

    def _record_note(self) -> str | None:
        """What the live line says of the record and the tracking once something went wrong, from then on (it went
        on reading as before: review), or None."""
        if self._broken:
            return (f"TRACKING STOPPED at step {self._tracking_stopped_at:,}: figures as of then"
                    + (", record incomplete" if self.path is not None else ""))
        if not self._writing:
            if self.path is None or self._record_stop is None:
                return "NO RECORD: it could not be written"
            return f"RECORD INCOMPLETE: writes failed at step {self._record_stop['step']:,}"
        return None

    def _live_text(self) -> str:
        return _display.live_text(self._n, self.plan.steps, self.analysis, self.static, self._record_note())

    def _say(self, message: str, category: type[Warning]) -> None:
        """Warn (never raising: :func:`_warn`) with the live line ended first, left showing the state now (the
        record incomplete, a budget hit): the warning then starts on a line of its own, however warnings are shown
        (review: one written to the terminal by a logging handler was glued into the live line); the next live
        line starts below it."""
        self._show("pause", self._live_text())
        _warn(message, category)

    def summary(self) -> dict[str, Any]:
        """The end-of-run summary (after close), else the live analysis."""
        return self._summary or {"status": "running", "analysis": self.analysis,
                                 "path": str(self.path) if self.path else None}
