"""wattlint fit: LightGBM corrections of the prior from calibration runs -> LightGBM text models + card.json;
or, given run records of tracked training runs (wattlint.track), a model-level run correction for their GPU."""

from __future__ import annotations

import argparse

from ._common import nonempty


def _folds(text: str) -> int:
    from .. import options as O
    from ._common import cli_type

    return cli_type(O.Option("folds", "", O.integer(2, 1000), "", "", ""))(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="calibration runs: RUN.csv / RUN.json / a folder of runs (all from one device); or run "
                        "records of tracked training runs (*.jsonl / a folder of them): a run-level correction")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="model folder (default <user data dir>/wattlint/models/<gpu-key>/ for a GPU, searched by "
                        "every estimate; <run folder>/model for CPU/fake runs, which never go into a models folder); "
                        "run records: <gpu-key>/run_correction.json in the same folder, <records folder>/"
                        "run_correction.json for CPU records")
    p.add_argument("--gpu", default=None, metavar="KEY", type=nonempty("GPU key"), help="GPU database key (calibration runs: when the run's GPU is "
                   "not resolved; run records: the GPU whose records of the folders named are fitted)")
    p.add_argument("--folds", type=_folds, default=None, help="calibration runs only: cross-validation folds for "
                                                             "whole-shape hold-out (2 to 1000; default 5)")
    p.add_argument("--model-hash", default=None, metavar="HASH", type=nonempty("model hash"),
                   help="run records only: fit one model's runs; a folder's records of another model are "
                        "skipped and listed, one named as an argument is refused")


def _count(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def missing_rows(run: dict) -> str | None:
    """What a fitted run's CSV lacks against its JSON (None when nothing): the measured samples the run recorded
    (``samples_done``), and for a complete run one row per sample of its part (``samples_in_part``). A CSV cut short
    after the run (a copy that stopped, an edit) was fitted on half its samples without a word."""
    rows, ok = _count(run.get("rows")), _count(run.get("rows_ok"))
    done, in_part = _count(run.get("samples_done")), _count(run.get("samples_in_part"))
    if ok is not None and done is not None and ok < done:
        return (f"its CSV holds {ok} measured row(s) where its JSON records {done} ({done - ok} missing: the CSV was "
                "cut short or edited after the run)")
    if run.get("status") == "complete" and rows is not None and in_part is not None and rows < in_part:
        return (f"a complete run of {in_part} samples, but its CSV holds {rows} row(s) ({in_part - rows} missing: "
                "the CSV was cut short or edited after the run)")
    return None


def worse_than_prior(cv: dict) -> str | None:
    """The figures of a fit whose whole-shapes-held-out cross-validation error (time MAPE or time-weighted) is worse
    than the prior's, as one phrase, or None. Whole op families held out are not asked: a correction is applied only
    to the op kinds it measured (docs/CALIBRATION.md), where the family hold-out is worse by design."""
    m = cv.get("leave_shape_out") or {}
    try:
        mape, p_mape = float(m["time_mape"]), float(m["prior_time_mape"])
        wape, p_wape = float(m["time_wape"]), float(m["prior_time_wape"])
    except (KeyError, TypeError, ValueError):
        return None
    if mape <= p_mape and wape <= p_wape:
        return None
    return (f"time MAPE {mape * 100:.1f} % vs prior {p_mape * 100:.1f} %, time-weighted {wape * 100:.1f} % vs prior "
            f"{p_wape * 100:.1f} %")


def _cpu_model_home(runs: list[str], path) -> str | None:
    """Where a CPU fit must be for estimates to use it when it is not there: ``cpu_calibration=<run folder>`` loads
    ``<run folder>/model`` only (wattlint.tracking.static.cpu_device). None when ``path`` is the model/ of a folder
    of the runs fitted (the default without --out)."""
    from pathlib import Path

    folders = []
    for r in runs:
        p = Path(r)
        d = p if p.is_dir() else p.parent
        if d not in folders:
            folders.append(d)
    try:
        here = Path(path).resolve()
        if any((d / "model").resolve() == here for d in folders):
            return None
    except (OSError, RuntimeError):
        pass
    return " or ".join(str(d / "model") for d in folders[:3]) + (" ..." if len(folders) > 3 else "")


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    from ..tracking.fit import is_run_record_args
    from ..types import InputError

    for p in args.runs:
        if not os.path.exists(p):
            raise InputError(f"not found: {p}")

    if is_run_record_args(args.runs):
        from ..tracking.fit import print_fit

        if args.folds is not None:
            from ..types import ConfigError

            raise ConfigError("--folds applies to calibration runs; a run-record fit holds out each run and each "
                              "model in turn (leave-one-run-out, leave-one-model-out), not folds")

        gpu = args.gpu
        if gpu is not None:  # an alias ('a100') picks the records of its database key
            from ..hardware import resolve_gpu

            gpu = resolve_gpu(gpu)[0].key
        return print_fit(args.runs, args.out, gpu, args.model_hash)
    if args.model_hash:
        from ..types import ConfigError

        raise ConfigError("--model-hash applies to run records (wattlint.track), not calibration runs")
    from ..calibrate.fitting import fit_runs

    model = fit_runs(args.runs, args.out, args.gpu, folds=5 if args.folds is None else args.folds)
    card = model.card
    cv = card["cv"]
    print(f"fitted {card['training']['samples']} samples ({card['training']['rows']} op rows) of "
          f"{card['gpu']['key']} -> {model.path}")
    if model.previous is not None:  # the model this fit replaced: kept, and said where
        print(f"wattlint: note: the earlier model in {model.path} was kept in {model.previous}", file=sys.stderr)
        from ..tracking.fit import FILE as RUN_CORRECTION

        if (model.path / RUN_CORRECTION).is_file():  # fitted on the earlier model: never applied on top of this one
            print(f"wattlint: note: the run correction {model.path / RUN_CORRECTION} was fitted on top of the "
                  f"earlier model (a copy is kept beside it in {model.previous}): estimates no longer apply it; "
                  "re-run `wattlint fit <records>` on runs tracked with this model", file=sys.stderr)
    dropped = (card.get("data") or {}).get("skipped_rows") or {}
    if dropped:
        print(f"  dropped {sum(dropped.values())} row(s): "
              + ", ".join(f"{n} {why}" for why, n in sorted(dropped.items())))
    for name, m in cv.items():
        print(f"  CV {name:17s} ({m['folds']} folds): time MAPE {m['time_mape'] * 100:.1f} % "
              f"(prior {m['prior_time_mape'] * 100:.1f} %), median {m['time_median_ape'] * 100:.1f} %, "
              f"time-weighted {m['time_wape'] * 100:.1f} % (prior {m['prior_time_wape'] * 100:.1f} %), "
              f"power-fraction MAE {m['power_fraction_mae']:.3f}")
    worse = worse_than_prior(cv)
    if worse:
        g = card["gpu"]
        if g.get("is_fake"):
            use = "a fake-device fit: no estimate uses it"
        elif g.get("is_cpu"):
            home = _cpu_model_home(args.runs, model.path)
            if home is None:
                use = ("estimates of CPU runs with --cpu-calibration / cpu_calibration= of that run folder will use "
                       "this measured model, not the prior")
            else:  # --out elsewhere: cpu_calibration= loads <run folder>/model only (review)
                use = (f"no estimate uses it where it is ({model.path}): --cpu-calibration / cpu_calibration= "
                       f"of a run folder load only that folder's model/ ({home}); moved there, estimates of CPU "
                       "runs would use it, not the prior")
        else:
            use = (f"estimates for {g['key']} use this measured model whenever it sits in a models folder they "
                   "search (--models-dir, [tool.wattlint] models-dir, $WATTLINT_MODELS_DIR, the user data folder: a "
                   "measured model outranks the prior): to keep the prior, leave it out of those; more samples may "
                   "improve the fit")
        print(f"wattlint: warning: the fitted model's cross-validation error is worse than the prior's with whole "
              f"shapes held out: {worse}; {use}", file=sys.stderr)
    r = card["residuals"]["time"]
    print(f"  time residual p5..p95: x{__import__('math').exp(r['p5']):.2f} .. x{__import__('math').exp(r['p95']):.2f}")
    for run in (card.get("data") or {}).get("runs") or []:
        if run.get("status") not in (None, "complete"):  # an interrupted or --limit run: part of its suite only
            of = f" of {run['samples_in_part']}" if run.get("samples_in_part") else ""
            state = ("running, or was killed (no end recorded)" if run["status"] == "running" else run["status"])
            print(f"  note: run {run.get('run_id')} is {state} ({run.get('rows')}{of} samples measured); "
                  f"'wattlint calibrate --resume {run.get('csv')}' (in its folder) measures the rest, then fit again")
    for run in (card.get("data") or {}).get("runs") or []:
        if (missing := missing_rows(run)):
            print(f"wattlint: warning: run {run.get('run_id')}: {missing}; the fit used the rows that are there",
                  file=sys.stderr)
    key = card["gpu"]["key"]
    home = _cpu_model_home(args.runs, model.path) if card["gpu"].get("is_cpu") and not card["gpu"].get("is_fake") \
        else None
    if home is not None and not worse:  # (the warning above says it when there is one)
        print(f"  note: --cpu-calibration / cpu_calibration= of a run folder load only that folder's model/: "
              f"this one is used by no estimate where it is; to use it, move it to {home} (or fit without --out)")
    # (a CPU or fake-device fit is never used by estimates wherever it is: no advice to move it)
    if args.out and not card["gpu"].get("is_cpu") and not card["gpu"].get("is_fake") and model.path.name != key:
        # estimates look fitted models up in <models dir>/<gpu key>/: this folder is found by none
        print(f"  note: estimates look models up in <folder>/{key}/; to use this one, move it to DIR/{key}/ and "
              f"pass --models-dir DIR (or fit with --out DIR/{key})")
    return 0
