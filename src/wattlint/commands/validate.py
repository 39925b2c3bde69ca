"""wattlint validate: predict (before measuring) / measure (on the device) / compare held-out whole models."""

from __future__ import annotations

import argparse
import sys

from ._common import nonempty


def _window_scale(text: str) -> float:
    from .. import options as O
    from ._common import cli_type

    return cli_type(O.Option("window_scale", "", O.number(0.0, 100.0), "", "", ""))(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="step", metavar="STEP", required=True)
    pr = sub.add_parser("predict", help="write the estimator's predictions for a frozen list (commit before measuring)")
    pr.add_argument("--gpu", default=None, metavar="KEY", type=nonempty("GPU key"), help="GPU database key (e.g. h100-sxm5-80gb)")
    pr.add_argument("--spec-from", default=None, metavar="RUN.json",
                    help="use the device spec stored in a calibration run (CPU runs: measured CPU peaks)")
    pr.add_argument("--list", default="gpu", metavar="NAME", help="list in the validation file: gpu | cpu (gpu)")
    pr.add_argument("--models-file", default=None, metavar="TOML",
                    help="validation list file (default: the shipped wattlint/data/validation-models.toml)")
    pr.add_argument("--model", default=None, metavar="DIR",
                    help="calibrated model folder for the 'calibrated' variant (default: the model an estimate for "
                         "this GPU would use: measured, public-fit or transferred, if any)")
    pr.add_argument("--only", default=None, metavar="NAMES", help="comma-separated config names")
    pr.add_argument("--out", default=None, metavar="FILE", help="predictions file, or a folder (existing, or ending in /) for <stamp>-predictions.json "
                         "(default calibration/runs/<gpu-key>/ under the current directory); never overwritten")
    me = sub.add_parser("measure", help="train each configuration on the device and measure time and power")
    me.add_argument("--predictions", required=True, metavar="FILE",
                    help="the predictions file written by 'validate predict' (committed before measuring)")
    me.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="device to train on (default cuda)")
    me.add_argument("--out", default=None, metavar="FILE|DIR",
                    help="measurements file, or a folder for <stamp>-measurements.json (default: next to the "
                         "predictions file); never overwritten")
    me.add_argument("--only", default=None, metavar="NAMES", help="comma-separated config names")
    me.add_argument("--part", default=None, metavar="K/N", help="every N-th configuration, starting at K")
    me.add_argument("--window-scale", type=_window_scale, default=1.0, metavar="X",
                    help="scale the warm-up and measurement windows, 0 < X <= 100 (default 1)")
    co = sub.add_parser("compare", help="predicted vs measured -> <stamp>-validation.json + a table")
    co.add_argument("--measurements", required=True, action="append", metavar="FILE",
                    help="measurements file (repeat for the parts of one campaign)")
    co.add_argument("--predictions", action="append", default=None, metavar="FILE",
                    help="predictions file(s); the first must be the one measured against (default: that one)")
    co.add_argument("--out", default=None, metavar="FILE|DIR",
                    help="validation file, or a folder for <stamp>-validation.json (default: next to the first "
                         "measurements file)")


def run(args: argparse.Namespace) -> int:
    from ..calibrate import validate as V
    from ..types import ConfigError

    only = None
    if getattr(args, "only", None) is not None:  # '' selected nothing and so measured / predicted every configuration
        only = [x.strip() for x in args.only.split(",")]
        if not any(only):
            raise ConfigError(f"--only {args.only!r} names no configuration: give comma-separated configuration "
                              "names, or leave the option out for all of them")
    if args.step in ("predict", "measure"):  # both build the validation models in PyTorch
        from ..frontends.extras import require

        require("torch", f"wattlint validate {args.step}")
    if args.step == "predict":
        if not args.gpu and not args.spec_from:
            raise ConfigError("validate predict: give --gpu KEY (or --spec-from RUN.json for a CPU run)")
        if args.gpu and args.spec_from:  # the device is one or the other; --gpu was ignored
            raise ConfigError("validate predict: --gpu and --spec-from name the device twice; give one of them")
        path = V.predict(args.list, args.gpu, list_path=args.models_file, model_dir=args.model,
                         spec_from=args.spec_from, out=args.out, only=only)
        import json

        doc = json.loads(path.read_text())
        bad = [c["name"] for c in doc["configs"] if c.get("error")]
        print(f"{len(doc['configs']) - len(bad)} predictions ({', '.join(doc['variants'])}) for {doc['gpu']} -> {path}"
              "; shown: the calibrated variant where there is one, else the uncalibrated one (the file's 'prior' "
              "variant: the default predictor, public-fit where its model covers the GPU, as the bracket says; every "
              "variant is in the file)")
        for c in doc["configs"]:
            if c.get("error"):
                print(f"  {c['name']}: ERROR {c['error']}")
            else:
                v = c["predictions"].get("calibrated") or c["predictions"]["prior"]
                print(f"  {c['name']:28s} {v['time_s'] * 1e3:10.2f} ms/step {v['gpu_energy_j']:10.2f} J/step  "
                      f"[{v.get('calibration') or '?'}]")
        return 0
    if args.step == "measure":
        return _measure(args, only)
    path, doc = V.compare(args.measurements, args.predictions, out=args.out)
    print(V.table(doc))
    note = V.coverage_note(doc)
    if note:  # the summary above is of the measured configurations only (also in the file: not_measured)
        print(f"wattlint: note: {note}", file=sys.stderr)
    print(f"-> {path}")
    return 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM during `validate measure`."""


def _measure(args: argparse.Namespace, only: list[str] | None) -> int:
    """`validate measure`; SIGTERM (a scheduler, `kill`, a time limit) ends it as Ctrl-C does: the file is marked
    ``interrupted`` with the configurations not measured, and the command says so (it died with no word and left a
    file without a status: review)."""
    import signal

    from ..calibrate import validate as V
    from ..calibrate.runner import _parse_part

    def terminated(signum, frame):
        raise _Terminated()

    try:
        old = signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # pragma: no cover - not the main thread (an embedding application): its handler stays
        old = None
    state: dict = {}
    try:
        path = V.measure(args.predictions, args.device, out=args.out, only=only, part=_parse_part(args.part),
                         window_scale=args.window_scale, reporter=lambda s: print(s, file=sys.stderr, flush=True),
                         state=state)
    except KeyboardInterrupt as e:
        how = "terminated (SIGTERM)" if isinstance(e, _Terminated) else "interrupted"
        if state.get("path"):
            missing = state.get("not_measured") or []
            print(f"wattlint: validate measure {how}: {state.get('measured', 0)} of {len(state.get('configs', []))} "
                  f"configurations measured, saved in {state['path']} (status interrupted); not measured: "
                  f"{', '.join(missing) or 'none'}; 'validate compare' compares the measured ones and names the "
                  "rest", file=sys.stderr)
        else:
            print(f"wattlint: validate measure {how} before the first measurement; nothing was written",
                  file=sys.stderr)
        return 143 if isinstance(e, _Terminated) else 130
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    print(f"measurements -> {path}")
    return 0
