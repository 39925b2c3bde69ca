"""wattlint calibrate: measure the op micro-benchmark suite on this machine's accelerator (see docs/CALIBRATION.md)."""

from __future__ import annotations

import argparse
import sys

from ._common import nonempty, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("cuda", "cpu", "fake"), default=None,
                   help="cuda (NVML energy), cpu (time only; energy modelled), fake (simulator for tests); "
                        "default cuda")
    p.add_argument("--suite", default=None, metavar="NAME|PATH",
                   help="suite name (default, quick: shipped in wattlint/data/suites/) or a .toml path (default: "
                        "default; a resumed run keeps its own)")
    p.add_argument("--part", default=None, metavar="K/N", type=nonempty("part K/N"),
                   help="measure part K of N (every N-th sample; each part is its own run; fit takes them all; a "
                        "resumed run keeps its own); parts on one device run one after the other (a second "
                        "measurement of a busy device is refused)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default calibration/runs/<gpu-key>/)")
    p.add_argument("--resume", default=None, metavar="RUN",
                   help="continue an interrupted run (its .csv or .json path): samples already measured are kept")
    p.add_argument("--gpu", default=None, metavar="KEY", type=nonempty("GPU key"),
                   help="GPU database key, when the NVML name does not resolve to one")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="measure at most N samples (smoke runs; 1 or more)")
    p.add_argument("--plan", action="store_true", help="print the planned samples and duration, measure nothing")
    p.add_argument("--no-progress", action="store_true", help="plain one-line-per-sample log instead of a bar")


class _Terminated(KeyboardInterrupt):
    """SIGTERM during a calibration run."""


class _RichReporter:
    def __init__(self, plain: bool):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.plain = plain or not self.console.is_terminal
        self.progress = None
        self.task = None
        self.n = 0
        self.total = 0

    def plan(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def start(self, total: int, done: int, todo: int | None = None) -> None:
        self.total, self.n = total, done
        if self.plain:
            todo = total - done if todo is None else todo
            limited = f" (--limit; {total - done - todo} left for a later --resume)" if todo < total - done else ""
            self.console.print(f"measuring {todo} of {total} samples ({done} already done){limited}",
                               highlight=False, soft_wrap=True)
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.progress = Progress(TextColumn("[bold]calibrate"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[what]}"), console=self.console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task("run", total=total, completed=done, what="")

    def advance(self, sample, row) -> None:
        self.n += 1
        what = f"{sample.family} {sample.precision} {sample.phase}"
        if row.get("status") == "ok":
            what += f" {float(row['time_s']) * 1e3:.3f} ms {float(row.get('avg_power_w') or 0):.0f} W"
        else:
            what += f" ERROR {row.get('error', '')[:60]}"
        if self.progress is not None:
            self.progress.update(self.task, advance=1, what=what)
        else:
            print(f"[{self.n}/{self.total}] {what}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def run(args: argparse.Namespace) -> int:
    import os

    from ..calibrate.runner import RunConfig, run_calibration
    from ..calibrate.suites import load_suite, plan_text
    from ..types import InputError

    for opt, v in (("--out", args.out), ("--resume", args.resume)):  # '' was taken as not given (a default folder,
        if v is not None and not v.strip():                         # a new run): an empty shell variable, a typo
            raise InputError(f"{opt} {v!r} names no " + ("folder: name the folder for the run's .csv and .json"
                                                         if opt == "--out" else "run: name the RUN.csv to continue")
                             + ", or leave the option out")
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise InputError(f"--out {args.out}: is a file; name a folder for the run's .csv and .json")
    if args.gpu is not None:  # refused up front, also under --plan (not after the plan is printed)
        from ..hardware import resolve_gpu

        resolve_gpu(args.gpu)
        if (args.device or "cuda") != "cuda":
            raise InputError(f"--gpu {args.gpu}: --device {args.device} measures no GPU; --gpu names the CUDA GPU "
                             "whose NVML name is not in the database (drop it)")
    suite_given = args.suite
    args.suite = args.suite or "default"
    if args.plan:
        given = [opt for opt, v in (("--resume", args.resume), ("--out", args.out)) if v]
        if given:  # the plan is the suite's, from scratch: it neither reads a run nor writes one
            raise InputError(f"--plan prints the suite's plan and measures nothing: {given[0]} does not apply "
                             "(drop it, or drop --plan to measure)")
        suite = load_suite(args.suite)
        device = args.device or "cuda"
        if args.part:
            from ..calibrate.runner import _parse_part

            k, n = _parse_part(args.part)
            samples = suite.part(k, n)
            print(plan_text(suite, device, samples, f"{k}/{n}"))
        else:
            samples = suite.samples
            print(plan_text(suite, device))
        if args.limit is not None:  # the session the same command without --plan would run
            m = min(args.limit, len(samples))
            print(f"  --limit {args.limit}: at most {m} of {len(samples)} samples this session -> planned "
                  f"{suite.planned_seconds(device, m) / 60:.1f} min")
        elif not args.part:
            for n in (2, 3) if len(suite.samples) >= 3 else ():
                print(f"  in {n} parts: {suite.planned_seconds(device, len(suite.part(1, n))) / 60:.1f} min each")
        return 0
    if args.resume:
        given = [opt for opt, v in (("--suite", suite_given), ("--part", args.part)) if v is not None]
        if given:  # the run's own suite and part are continued (they were silently ignored)
            raise InputError(f"{given[0]} does not apply to --resume: the run continues its own suite and part "
                             "(drop it, or start a new run without --resume)")
    if (args.device or "cuda") != "fake":
        from ..frontends.extras import require

        require("torch", f"wattlint calibrate --device {args.device or 'cuda'}")
    cfg = RunConfig(device=args.device or "cuda", suite=args.suite, part=args.part, out=args.out,
                    resume=args.resume, limit=args.limit, gpu_key=args.gpu,
                    extra={"device_given": args.device is not None})
    rep = _RichReporter(args.no_progress)
    import signal

    def terminated(signum, frame):  # SIGTERM (a scheduler, `kill`) ends the run as Ctrl-C does: marked, resumable
        raise _Terminated()

    try:
        old = signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # pragma: no cover - not the main thread (an embedding application): its handler stays
        old = None
    try:
        paths = run_calibration(cfg, rep)
    except KeyboardInterrupt as e:
        csv = cfg.extra.get("csv_path")
        how = "terminated (SIGTERM)" if isinstance(e, _Terminated) else "interrupted"
        print(f"wattlint: calibration {how}; measured samples are saved: continue with "
              f"'wattlint calibrate --resume {csv}'" if csv else f"wattlint: calibration {how} before it started; "
              "nothing was measured", file=sys.stderr)
        return 143 if isinstance(e, _Terminated) else 130
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    import json

    prov = json.loads(paths.json.read_text())
    print(f"{prov['status']}: {prov['samples_done']} samples measured, {prov['samples_failed']} failed -> "
          f"{paths.csv} + {paths.json.name}")
    return 0
