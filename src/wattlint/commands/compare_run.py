"""``wattlint compare-run RUN [RUN ...]``: a tracked run's record (or a CodeCarbon / Zeus / Carbontracker log) beside
the static estimate: per-step and whole-plan time and energy, signed errors ``predicted / measured - 1``.

A run record carries its own static prediction; ``--model`` re-estimates the same plan with this wattlint (e.g.
after ``wattlint fit`` on run records). Other tools' logs need ``--model`` and the plan to compare against. Several
run records are the ranks of one multi-process job (torchrun writes one per rank): they are read together as the job
(wattlint.tracking.job: the slowest rank's time, the sum of the ranks' energy) and compared with the estimate's share
of their GPUs.
"""

from __future__ import annotations

import argparse
import json

from ..options import said_as
from ._common import add_option

SCHEMA = "wattlint.run-comparison/1"
# plan options of the estimate to compare with (wattlint.options: same flags, checks and help as `wattlint estimate`)
PLAN_FLAGS = ("steps", "epochs", "dataset", "tokens", "seq_len", "batch_size", "grad_accum", "precision", "optimizer",
              "gpus", "pue", "region", "carbon_intensity", "price_per_kwh", "gpu_hour_price")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", nargs="+",
                   help="a run record (.jsonl from wattlint.track), a CodeCarbon emissions.csv, a Zeus monitor CSV or a "
                        "Carbontracker output log; several run records: the ranks of one job, read together")
    p.add_argument("--format", choices=("text", "json"), default="text")
    m = p.add_argument_group("estimate to compare with (needed for other tools' logs; a run record: only with --model, "
                             "which re-estimates it)")
    m.add_argument("--model", metavar="MODEL", help="model source: file.onnx | config.json | pkg.module:attr | "
                                                    "path/file.py:attr")
    add_option(m, "inputs")
    add_option(m, "gpu", help="GPU database key (default: the record's GPU)")
    m.add_argument("--cpu-calibration", metavar="DIR", help="CPU calibration run folder (CPU runs)")
    m.add_argument("--models-dir", metavar="DIR", help="fitted energy models to search first, as the estimate does "
                   "(then [tool.wattlint] models-dir, $WATTLINT_MODELS_DIR, the user data folder, the shipped models)")
    # options whose `estimate` help speaks of --compare or model parallelism, which compare-run does not have
    own_help = {"gpus": "GPUs the run used (default: the record's, or the log's GPU count)",
                "gpu_hour_price": "USD per GPU-hour (cloud rental): the estimate's cost is GPU-hours x it, electricity "
                                  "included (with --price too, electricity is charged on top)"}
    for name in PLAN_FLAGS:
        add_option(m, name, **({"help": own_help[name]} if name in own_help else {}))
    o = p.add_argument_group("other tools' logs")
    o.add_argument("--row", type=int, default=None, help="CodeCarbon: row index, 0 = the first data row, negative from the end (default: the last row)")
    o.add_argument("--run-id", default=None, help="CodeCarbon: the run_id to compare")
    o.add_argument("--window", default=None, help="Zeus: the window name to compare (summed over its windows)")


def _estimate(args, options: dict, device_kind: str, gpu_key: str | None) -> dict:
    from ..tracking import static as _s
    from ..types import ConfigError

    if args.cpu_calibration and (args.gpu or device_kind != "cpu"):  # a GPU estimate: it would be ignored
        why = "--gpu names one: drop one of them" if args.gpu else "the log names its GPU: drop --cpu-calibration"
        raise ConfigError(f"--cpu-calibration applies to a CPU run; this one is estimated on a GPU "
                          f"({args.gpu or gpu_key}; {why})")
    if device_kind == "cpu" and not args.gpu:
        if args.models_dir:  # a CPU run is priced by its calibration folder's model: the folder would change nothing
            raise ConfigError(f"--models-dir {args.models_dir}: a CPU run is priced by the model of its "
                              "--cpu-calibration folder; drop --models-dir (or pass --gpu to estimate on a GPU)")
        spec, predictor, _ = _s.cpu_device(args.cpu_calibration)
        if spec is None:
            raise ConfigError("a CPU run: pass --cpu-calibration DIR (the CPU calibration run folder) or --gpu")
    else:
        key = args.gpu or gpu_key
        if not key:
            raise ConfigError("pass --gpu KEY (the run's GPU is not known)")
        from ..api import models_search_path
        from ..energy.predictor import get_predictor
        from ..hardware import resolve_gpu

        spec, _ = resolve_gpu(key)
        # the energy model `wattlint estimate` takes here, from the same search path: --models-dir, then
        # [tool.wattlint] models-dir, $WATTLINT_MODELS_DIR, the user data folder, the shipped models (the re-estimate
        # priced the default path only, ignoring the configured folder, so a user's fitted model was not the one used)
        config = (args.config_base or {}).get("config")
        predictor = get_predictor(spec, models_search_path(args.models_dir, config))
    return _s.static_estimate(model=None, source=args.model, inputs=args.inputs, spec=spec, predictor=predictor,
                              options=options)


def _refuse_failed_estimate(args, est: dict, given: dict) -> None:
    """--model was asked for: a model that cannot be estimated (missing file, bad --input, ...) is an input error
    (exit 2), not a report that exits 0 with 'estimate unavailable'. The error names each setting where the user
    gave it (``given``: the configuration's key, the record's plan), not by a flag they did not type."""
    if est.get("error"):
        from ..types import InputError

        raise InputError(f"--model {args.model}: {_said_subject(said_as(est['error'], given), given)}")


def _said_subject(message: str, given: dict) -> str:
    """``message`` (after :func:`wattlint.options.said_as`) whose subject is a flag the user did not type: an error
    that opens with it ('--tokens: the model's inputs have no sequence dimension ...', '--tokens needs --seq-len'),
    which said_as keeps (no value after the flag), opens with the setting where it was given instead ('tokens =
    1000000.0 from [tool.wattlint] of pyproject.toml: ...'; review: a configured tokens on a CNN named '--tokens')."""
    from ..options import OPTIONS
    from ._common import shown_setting

    for name, (key, where, value) in given.items():
        flag = OPTIONS[name].flag if name in OPTIONS else None
        if flag and message.startswith((f"{flag}:", f"{flag} ")):
            where = f"from {where[3:]}" if where.startswith("in ") else where  # 'in [tool.wattlint] of ...'
            return f"{key} = {shown_setting(value)} {where}{message[len(flag):]}"
    return message


def _refuse_without_dataset(args, est: dict, m, logged: dict) -> None:
    """The log's epochs are the plan (a configured steps / epochs / tokens replaced, said on stderr) and the model's
    inputs name no dataset: the estimate's own error asked for '--dataset, --steps N or --tokens N', confusing right
    after the steps were said replaced (review). What the comparison needs is the dataset size of those epochs."""
    import re

    from ..types import InputError

    err = est.get("error") or ""
    if "epochs" not in logged or "cannot infer the dataset" not in err:
        return
    shapes = re.search(r"cannot infer the dataset (from inputs .*?); pass --dataset", err)
    raise InputError(f"--model {args.model}: the {m.tool} log's {m.epochs} epoch(s) need the dataset size, which "
                     f"cannot be inferred {shapes.group(1) if shapes else 'from the model'}: pass --dataset NAME|N "
                     "(e.g. imagenet-1k, cifar10, 50000)")


def _said_where_given(est: dict, given: dict) -> None:
    """The estimate's assumption lines name the settings as the user gave them (see :func:`_refuse_failed_estimate`):
    a configured ``price`` is not '--price' there."""
    if given and est.get("assumptions"):
        est["assumptions"] = [said_as(a, given) for a in est["assumptions"]]


def _err(a, b):
    return None if a is None or not b else a / b - 1.0


# log selectors: which tool's log each one applies to
SELECTORS = {"row": ("--row", ("codecarbon",)), "run_id": ("--run-id", ("codecarbon",)),
             "window": ("--window", ("zeus",))}


def _refuse_unused(args: argparse.Namespace, flags: dict, kind: str) -> None:
    """Options that would change nothing for this RUN are input errors, never silently ignored: a log selector of
    another tool, and without --model the estimate options: a run record's own estimate is shown as it was recorded,
    and another tool's log is shown alone (there is no estimate to compare; review: the plan flags of
    ``compare-run emissions.csv --steps 10 --gpu a100`` were dropped without a word, exit 0)."""
    from ..options import OPTIONS
    from ..types import ConfigError

    wrong = [flag for dest, (flag, tools) in SELECTORS.items() if getattr(args, dest) is not None and kind not in tools]
    if wrong:
        where = "a wattlint run record" if kind == "run-record" else f"a {kind} log"
        raise ConfigError(f"{', '.join(wrong)}: not for {where} (--row / --run-id select a CodeCarbon row, --window a "
                          "Zeus window)")
    if not args.model:
        given = [OPTIONS[n].flag for n in ("gpu", "inputs") if getattr(args, n) is not None]
        given += ["--cpu-calibration"] if args.cpu_calibration is not None else []
        given += ["--models-dir"] if args.models_dir is not None else []
        given += [OPTIONS[n].flag for n in flags]
        if given and kind == "run-record":
            raise ConfigError(f"{', '.join(given)}: apply only to a re-estimate; pass --model MODEL to re-estimate the "
                              "run (without it the record is compared with the estimate it recorded)")
        if given:
            raise ConfigError(f"{', '.join(given)}: apply only to an estimate; pass --model MODEL to compare the {kind} "
                              "log with one (without it the log's measurement is shown alone)")


def run(args: argparse.Namespace) -> int:
    import os

    from ..io import not_a_file
    from ..tracking.record import is_run_record
    from ..types import InputError

    runs = list(args.run)
    for path in runs:
        if os.path.isdir(path):
            raise InputError(f"{path} is a directory: name run records (.jsonl) or one log file")
        what = not_a_file(path)  # a device, a named pipe (never opened: a pipe blocks the read): was "not found"
        if what is not None:
            raise InputError(f"{path}: is {what}, not a file; name run records (.jsonl) or one log file")
        if not os.path.isfile(path):
            raise InputError(f"file not found: {path}")
    flags = {k: getattr(args, k) for k in PLAN_FLAGS if getattr(args, k) is not None}
    args.config_base = _config_base() if args.model else {}
    if len(runs) > 1:
        other = [p for p in runs if not is_run_record(p)]
        if other:
            raise InputError(f"{other[0]}: not a wattlint run record; several RUNs are the ranks' records of one job "
                             "(other tools' logs: one at a time)")
        _refuse_unused(args, flags, "run-record")
        doc = _job_records(args, flags, runs)
    elif is_run_record(runs[0]):
        args.run = runs[0]
        _refuse_unused(args, flags, "run-record")
        doc = _record(args, flags)
    else:
        args.run = runs[0]
        doc = _other(args, flags)
    lines = doc.pop("_lines")
    if args.format == "json":
        from ..tracking.record import _clean

        print(json.dumps(_clean(doc), indent=2, ensure_ascii=False))
    else:
        print("\n".join(lines))
    return 0


def _record(args, flags) -> dict:
    from ..tracking.compare import comparison
    from ..tracking.display import summary_lines
    from ..tracking.project import Settings, analyze
    from ..tracking.record import read_record

    rec = read_record(args.run)
    h = rec.header
    a = analyze(rec.run_data(), Settings.from_dict(h.get("settings")))
    complete = bool(rec.summary) and rec.summary.get("status") == "completed"
    static = h.get("static")
    at = next((e for e in rec.events if e.get("kind") == "stable"), None)
    doc = {"schema": SCHEMA, "kind": "run-record", "path": str(rec.path), "status": rec.status,
           "torn_tail": rec.torn_tail, "model": h.get("model"), "device": h.get("device"), "analysis": a,
           "at_stable": at, "static": static, "comparison": comparison(a, static, complete=complete),
           "budget_events": [e for e in rec.events if e.get("kind") == "budget"],
           "notes": _notes(h.get("notes"), (rec.summary or {}).get("notes"))}
    over = (rec.summary or {}).get("budget_exceeded")
    if isinstance(over, list):  # the budgets the run's final totals exceed: the live run printed them (review)
        doc["budget_exceeded"] = over
    if rec.torn_tail:
        doc["notes"].append("the last line was torn (power loss?) and is ignored")
    lines = summary_lines({**doc, "status": rec.status})
    if args.model:
        _reestimate(args, flags, h, a, complete, doc, lines)
    for ev in doc["budget_events"]:
        if not ev.get("at_end"):  # an end-of-run check is the BUDGET EXCEEDED line above already
            lines.append(f"  budget: {ev.get('message')}")
    doc["_lines"] = lines
    return doc


def _config_base() -> dict:
    """The ``[tool.wattlint]`` defaults a re-estimate starts from: the plan options compare-run has flags for (beneath
    the record's plan, the log's figures and the command line; :func:`_with_config` says which it used). The rest of
    the file's settings (the device layout, the training stack, the GPU, the inputs) are not taken: the run's own
    layout and GPU are what is compared, and compare-run has no flag to override them; ``skipped`` lists them. Its
    ``models-dir`` is searched for the energy model as by ``wattlint estimate`` (:func:`_estimate`)."""
    from pathlib import Path

    from ..config import load_config

    config = load_config(Path.cwd())
    base = {k: v for k, v in config.defaults.items() if k in PLAN_FLAGS}
    skipped = [(k, v) for k, v in config.defaults.items() if k not in PLAN_FLAGS]
    # the config also when it sets no option: its models-dir is searched as `wattlint estimate` searches it
    return {"config": config, "options": base, "skipped": skipped}


def _with_config(args, over: dict, facts: tuple[str, ...] = (), logged: dict | None = None) -> tuple[dict, dict]:
    """``over`` (the record's plan or the log's figures, then the flags) on top of the configured defaults but for
    ``facts`` the run itself states (a record's GPU count), and on stderr the settings taken from the file, as every
    command that takes them says it, and those not taken. ``logged``: the options of ``over`` that another tool's log
    states itself (name -> what it says, e.g. its grid intensity): a configured setting they replace is named as
    replaced by the log, never listed as taken from the file. Returns the options and, for
    :func:`wattlint.options.said_as`, the settings taken from the file as the file writes them."""
    import sys

    from .. import options as O
    from ..config import _where
    from ._common import config_given, settings_note, shown_setting, written_keys

    cfg = args.config_base or {}
    logged = logged or {}
    configured = cfg.get("options") or {}
    base = {k: v for k, v in configured.items() if k not in facts}
    region_only_pue = False
    if "carbon_intensity" in logged and "region" in base:
        # the log's own grid intensity replaces the one of a configured region (options.overlay keeps the region
        # beneath a carbon intensity, which build_plan then overrides): the settings line claimed region = 'DE' while
        # the CO2 was priced at the log's intensity. Without a price table per region (carbon.price_per_kwh) the
        # region sets nothing else but a cloud region's PUE, and only where no PUE is given: kept for that, said so;
        # otherwise it is not applied, and named as not applied
        _check_region(cfg["config"], base["region"])  # unused or not, a misspelt region is the user's error
        if "pue" not in O.overlay(base, over) and _cloud_pue(base["region"]):
            region_only_pue = True
        else:
            base.pop("region")
    opts = O.overlay(base, over)
    used = [(k, v) for k, v in base.items() if opts.get(k) == v and k not in over]
    shown = [(k, v) for k, v in used if not (region_only_pue and k == "region")]
    if shown:
        print(f"wattlint: {settings_note(cfg['config'], shown)}", file=sys.stderr)
    if region_only_pue:
        key = written_keys(cfg["config"], ["region"])["region"]
        print(f"wattlint: note: {key} = {shown_setting(base['region'])} from [tool.wattlint] of "
              f"{_where(cfg['config'].path)} sets only the PUE here (its cloud region's, in the mlco2/impact table): "
              f"the CO2 is priced at the log's {logged['carbon_intensity']}", file=sys.stderr)
    # configured settings that the log's own figures replaced (its grid intensity over a configured region or
    # carbon-intensity, its PUE, GPU count, epochs): said, never listed as taken nor dropped silently
    typed = set(over) - set(logged)
    replaced = []
    for k, v in configured.items():
        if k in facts or k in dict(used):
            continue
        by = [j for j in over if j == k or k not in O.overlay({k: v}, {j: over[j]})]
        if k == "region" and "carbon_intensity" in logged:
            by.append("carbon_intensity")
        if by and not set(by) & typed:
            replaced.append((k, v, by[0]))
    if replaced:
        keys = written_keys(cfg["config"], [k for k, _, _ in replaced])
        said = ", ".join(f"{keys[k]} = {shown_setting(v)} (replaced by the log's {logged[j]})"
                         for k, v, j in replaced)
        print(f"wattlint: note: not applied, the log states its own: {said} from [tool.wattlint] of "
              f"{_where(cfg['config'].path)}", file=sys.stderr)
    # never silently: a configured tensor-parallel = 2 reshaped nothing, and said nothing; nor a configured gpus that
    # the run's own device count replaced
    skipped = [*(cfg.get("skipped") or []), *((k, v) for k, v in configured.items() if k in facts)]
    if skipped:
        keys = written_keys(cfg["config"], [k for k, _ in skipped])
        said = ", ".join(f"{keys[k]} = {shown_setting(v)}" for k, v in skipped)
        print(f"wattlint: note: not applied by compare-run (it re-estimates the run as recorded or logged, on its own "
              f"GPU and device layout; of the file it takes only the plan options it has flags for): {said} from "
              f"[tool.wattlint] of {_where(cfg['config'].path)}", file=sys.stderr)
    return opts, (config_given(cfg["config"], used) if used else {})


def _check_region(config, region) -> None:
    """Refuse a configured region that names no region (review: a region the log's grid intensity replaces was
    dropped unchecked, so `region = "DEX"` passed where `wattlint estimate` refuses it, as plan.build_plan does)."""
    from .. import carbon
    from ..config import _where
    from ..types import ConfigError

    from ._common import written_keys

    try:
        carbon.normalize_region(str(region))
    except ConfigError as e:
        key = written_keys(config, ["region"])["region"]
        raise ConfigError(f"{key} = {region!r} in [tool.wattlint] of {_where(config.path)}: {e}") from None


def _cloud_pue(region) -> float | None:
    """The PUE a cloud region sets (carbon.cloud_pue); an unknown region counts as setting one, so that it stays in
    the plan and is refused there naming the file (never dropped unchecked)."""
    from .. import carbon
    from ..types import WattlintError

    try:
        return carbon.cloud_pue(str(region))
    except WattlintError:
        return 1.0


def _recorded_plan(header: dict) -> tuple[dict, dict]:
    """The record's plan (the options the run was tracked with) by option name (``price`` as ``price_per_kwh``, so
    that it replaces a configured ``price``), and each as the record writes it (for :func:`wattlint.options.said_as`)."""
    from .. import options as O

    plan: dict = {}
    given: dict = {}
    for key, value in ((header.get("plan") or {}).get("request") or {}).items():
        name = O.canonical(key) or key
        plan[name] = value
        given[name] = (key, "in the run record", value)
    return plan, given


def _notes(*lists) -> list[str]:
    """The header's notes, then the summary's own (the loop ended before the plan's steps, the clock held back), as
    the run printed them at its end (review: compare-run dropped the summary's), each once."""
    out: list[str] = []
    for notes in lists:
        for n in notes or []:
            if n not in out:
                out.append(n)
    return out


def _reestimate(args, flags, header: dict, analysis: dict, complete: bool, doc: dict, lines: list[str]) -> None:
    """--model: re-estimate the recorded plan with this wattlint and compare again (into ``doc`` and ``lines``)."""
    from .. import options as O
    from ..tracking.compare import comparison

    dev = header.get("device") or {}
    recorded, given = _recorded_plan(header)
    # the devices a record measured: the job's GPUs, or every GPU the process could see (wattlint.track measures
    # all visible GPUs unless CUDA_VISIBLE_DEVICES limits them, idle ones too), so a --gpus below them is the user's
    # statement, said beside the comparison rather than refused
    import sys

    measured = len(analysis.get("channels") or []) or int(dev.get("count") or 0)
    which = "the run records measured" if doc.get("kind") == "run-records" else "the run record measured"
    if flags.get("gpus") is not None and measured and flags["gpus"] < measured:
        print(f"wattlint: note: --gpus {flags['gpus']}: {which} {measured} devices (every GPU the process could see "
              "unless CUDA_VISIBLE_DEVICES limited them); the measured energy compared is theirs, idle ones "
              "included", file=sys.stderr)
    if "gpus" not in recorded and dev.get("kind") == "cuda" and int(dev.get("count") or 0) > 1:
        # one process over several GPUs: the plan is theirs, as the run's own estimate took it (wattlint.track),
        # not 1 GPU's compared with the energy of all of them
        recorded["gpus"] = int(dev["count"])
        given["gpus"] = ("gpus", "(the GPUs the run record measured)", recorded["gpus"])
        if flags.get("gpus") is None:
            print(f"wattlint: note: re-estimated for the {recorded['gpus']} GPUs {which} (every GPU the process "
                  "could see unless CUDA_VISIBLE_DEVICES limited them); pass --gpus N if the job used fewer",
                  file=sys.stderr)
        if "uneven_batch" not in recorded:  # nn.DataParallel scatters any batch (33 = 17 + 16), as the run did
            recorded["uneven_batch"] = True
    # the command line's choices replace the record's, as estimate's flags replace [tool.wattlint]'s (--steps over
    # a recorded epochs plan)
    opts, from_file = _with_config(args, O.overlay(recorded, flags), facts=("gpus",) if dev.get("count") else ())
    given = {**{k: g for k, g in given.items() if k not in flags and k in opts and opts[k] == g[2]}, **from_file}
    est = _estimate(args, opts, dev.get("kind", "cuda"), dev.get("gpu_key"))
    _refuse_failed_estimate(args, est, given)
    _said_where_given(est, given)
    doc["reestimate"] = {"static": est, "comparison": comparison(analysis, est, complete=complete)}
    c = doc["reestimate"]["comparison"].get("step_time_s") or {}
    # the energy model's description has brackets of its own: after the error, not inside another pair
    lines.append(f"  re-estimate now on {est.get('gpu') or 'cpu'}: time/step error {c.get('error', 0) * 100:+.0f} %; "
                 f"energy model {est.get('energy_model')}" if c.get("error") is not None else "  re-estimate: "
                 "no stable steps to compare")
    recorded = header.get("model") or {}
    now = est.get("model") or {}
    n_rec, n_now = recorded.get("params"), now.get("params")
    if n_rec and n_now and int(n_rec) != int(n_now):  # another model (or another version of it): say so
        note = (f"--model {args.model} has {int(n_now):,} parameters, the recorded model "
                f"({recorded.get('name') or '?'}) {int(n_rec):,}: the re-estimate is for a different model, not the "
                "one the run measured")
        lines.append(f"  note: {note}")
        doc.setdefault("notes", []).append(note)
        doc["reestimate"]["model_mismatch"] = True
    # the device the run measured: a CPU run names its CPU by its calibration's key (cpu-<slug>, as --cpu-calibration
    # names it) when tracked with cpu_calibration=, else only "cpu"; a gpu= key on a CPU run (a machine without CUDA)
    # is the estimate's GPU, not the device measured
    kind, key = dev.get("kind", "cuda"), dev.get("gpu_key")
    if kind == "cpu":
        measured_on = key if key and str(key).startswith("cpu-") else "cpu"
    else:
        measured_on = key or kind
    now_on = est.get("gpu") or "cpu"
    if measured_on == "cpu" and now_on.startswith("cpu-"):
        # a CPU the record does not name, re-estimated with a CPU calibration: the same kind of device; which CPU it
        # was is the user's statement (review, walk 48: "cpu" vs "cpu-amd-epyc" was called two devices)
        note = (f"the run record does not name its CPU (tracked without cpu_calibration=): the re-estimate takes it to "
                f"be {now_on}, the CPU of the --cpu-calibration folder")
        lines.append(f"  note: {note}")
        doc["reestimate"]["note"] = note
    elif now_on != measured_on and not (kind == "cuda" and not key):
        note = (f"the run was measured on {measured_on}, the re-estimate is for {now_on}: the error "
                f"compares two devices, not the estimate with the run")
        lines.append(f"  note: {note}")
        doc["reestimate"]["note"] = note


def _job_records(args, flags, paths: list[str]) -> dict:
    """Several run records: the ranks of one job (wattlint.tracking.job), compared as the job."""
    from ..tracking import job
    from ..tracking.compare import comparison
    from ..tracking.display import summary_lines
    from ..tracking.project import Settings, analyze
    from ..tracking.record import read_record

    recs = [read_record(p) for p in paths]
    notes = job.check_one_job(recs)
    analyses = [analyze(r.run_data(), Settings.from_dict(r.header.get("settings"))) for r in recs]
    a = job.merge(recs, analyses)
    complete = all(r.summary and r.summary.get("status") == "completed" for r in recs)
    statuses = sorted({r.status for r in recs})
    status = statuses[0] if len(statuses) == 1 else "mixed: " + "; ".join(statuses)
    h = recs[0].header
    static = h.get("static")
    torn = [str(r.path) for r in recs if r.torn_tail]
    notes += [f"{p}: the last line was torn (power loss?) and is ignored" for p in torn]
    doc = {"schema": SCHEMA, "kind": "run-records", "paths": [str(r.path) for r in recs], "ranks": a.get("ranks"),
           "status": status, "model": h.get("model"), "device": h.get("device"), "analysis": a,
           "rank_analyses": analyses, "static": static, "comparison": comparison(a, static, complete=complete),
           "budget_events": [e for r in recs for e in r.events if e.get("kind") == "budget"],
           "notes": notes + _notes(h.get("notes"))
           + [f"{r.path}: {n}" for r in recs for n in (r.summary or {}).get("notes") or []]}
    over = [{**b, "path": str(r.path)} for r in recs for b in (r.summary or {}).get("budget_exceeded") or []
            if isinstance(b, dict)]  # each rank's end-of-run budget check, as that rank printed it
    if over or any(isinstance((r.summary or {}).get("budget_exceeded"), list) for r in recs):
        doc["budget_exceeded"] = over
    label = f"job of {len(recs)} ranks ({', '.join(a.get('ranks') or [])})"
    lines = summary_lines({**doc, "path": label})
    lines.insert(1, "  time: the slowest rank's; energy, GPU-hours, CO2 and cost: the sum over the ranks")
    if args.model:
        _reestimate(args, flags, h, a, complete, doc, lines)
    for ev in doc["budget_events"]:
        if not ev.get("at_end"):  # an end-of-run check is the BUDGET EXCEEDED line above already
            lines.append(f"  budget: {ev.get('message')}")
    doc["_lines"] = lines
    return doc


WORK = ("steps", "epochs", "tokens")  # the plan options that say how much training


def _pue_in_log(m) -> str:
    """What a log says of the PUE it states (beside '--pue X from the log'): whether its energy carries it."""
    if m.tool == "carbontracker":
        return "Carbontracker's reported energy and CO2 apply it"
    if m.pue_in_energy is not None:
        return ("its energy_consumed includes it" if m.pue_in_energy else
                "its energy_consumed excludes it: the CPU + GPU + RAM sum")
    if abs(m.pue - 1.0) < 1e-9:
        return "at PUE 1 its energy_consumed is the same with or without it"
    return "whether its energy_consumed includes it cannot be told from the row: compared as without it"


def _energy_scope(m, pue: float, default_pue: bool) -> str:
    """What the energy line compares (no brackets: the line puts it in a pair). A CodeCarbon row whose total does
    not carry its PUE is compared with the estimate before PUE, the estimate's facility energy / its PUE, whatever
    that PUE is (given, the log's, the default); the log's figure as logged, which, where the log states no PUE or
    the row cannot tell, is taken as without one: PUE 1.0 (review: '(no PUE)' was said with the PUE unknown)."""
    if m.tool == "carbontracker":
        est = f"estimate facility energy at the default PUE {pue:g}" if default_pue else \
            f"estimate facility energy at PUE {pue:g}"
        return (f"{est} vs Carbontracker's reported energy at "
                + (f"the log's PUE {m.pue:g}" if m.pue else "a PUE the log does not state"))
    if m.pue_in_energy:
        return f"estimate GPU + host times PUE {pue:g} vs CodeCarbon CPU + GPU + RAM times the log's PUE {m.pue:g}"
    est = "estimate GPU + host before PUE vs CodeCarbon"
    if m.pue is None:
        return f"{est} energy_consumed as logged, PUE unknown: the log states none, taken as 1.0"
    if m.pue_in_energy is False:
        return f"{est} CPU + GPU + RAM without the log's PUE {m.pue:g}"
    if abs(m.pue - 1.0) < 1e-9:
        return f"{est} CPU + GPU + RAM at the log's PUE 1"
    return (f"{est} energy_consumed as logged, whether it includes the log's PUE {m.pue:g} unknown: taken as "
            "without it, PUE 1.0")


def _other(args, flags) -> dict:
    from ..report import units as u
    from ..tracking.interop import read_measured

    from ..tracking.interop import detect

    kind = detect(args.run)
    if kind is not None:
        _refuse_unused(args, flags, kind)
    m = read_measured(args.run, row=args.row, run_id=args.run_id, window=args.window)
    doc = {"schema": SCHEMA, "kind": m.tool, "path": m.path, "measured": m.as_dict()}
    # the energy's scope after the figures: it has brackets of its own ('CPU + GPU + RAM (CodeCarbon)'), which read
    # as '3.50 Wh (CPU + GPU + RAM (CodeCarbon))' inside another pair
    lines = [f"{m.tool} measurement {m.path}: {u.duration(m.duration_s) if m.duration_s is not None else 'n/a'}, "
             f"{u.energy_kwh(m.energy_kwh) if m.energy_kwh is not None else 'n/a'}"
             + (f", {u.co2_kg(m.co2_kg)}" if m.co2_kg is not None else "")
             + (f"; energy: {m.energy_scope}" if m.energy_kwh is not None else "")]
    lines += [f"  note: {n}" for n in m.notes]
    if not args.model:
        lines.append("  pass --model MODEL --gpu KEY and the plan (--steps/--epochs ...) to compare with an estimate")
        doc["_lines"] = lines
        return doc
    gpu_key = args.gpu
    notes: list[str] = []
    if m.gpu_model:
        from ..hardware import gpu_from_nvml_name, resolve_gpu

        spec = gpu_from_nvml_name(m.gpu_model.split(" x ", 1)[-1])
        if not gpu_key:
            gpu_key = spec.key if spec else None
        elif spec is not None and resolve_gpu(args.gpu)[0].key != spec.key:  # --gpu names another board
            notes.append(f"the estimate is for --gpu {args.gpu}, the log measured {m.gpu_model}: the errors compare "
                         "two GPUs, not the estimate with the run")
    if m.epochs and flags.get("epochs") is not None and float(flags["epochs"]) != float(m.epochs):
        notes.append(f"the estimate is for --epochs {flags['epochs']:g}, the log measured {m.epochs} epoch(s)")
    # the options taken from the log's own figures: name -> (what the log says, as said_as names it)
    logged: dict[str, tuple[str, tuple[str, str, object]]] = {}
    typed = dict(flags)  # the plan the command line gives, before the log's figures join it
    configured = [k for k in WORK if k in ((args.config_base or {}).get("options") or {})]
    if not any(k in flags for k in WORK) and (m.epochs or not configured):
        from ..types import InputError

        if not m.epochs:  # a default plan is not the run the log measured: the comparison would mean nothing
            raise InputError(f"{m.path}: the {m.tool} log does not say how much training it measured: pass the "
                             f"run's --steps, --epochs or --tokens (and --dataset / --batch-size) to compare")
        # a configured steps / epochs / tokens is replaced by the log's epochs: _with_config says so on stderr
        flags = {**flags, "epochs": m.epochs}
        logged["epochs"] = (f"{m.epochs} epoch(s)", ("epochs", "from the log", m.epochs))
        lines.append(f"  note: --epochs {m.epochs} from the log ({m.tool} measured {m.epochs} epoch(s)); pass "
                     f"--epochs / --steps to change")
    elif not any(k in flags for k in WORK):
        # the log does not say how much training it measured: the configured amount is the plan (review: it was
        # refused with 'pass the run's --steps ...' although [tool.wattlint] gave steps); said here, as the log's
        # epochs are, and on stderr among the settings taken from the file
        from ..config import _where
        from ._common import shown_setting, written_keys

        cfg = args.config_base
        k = configured[0]
        key = written_keys(cfg["config"], [k])[k]
        lines.append(f"  note: {key} = {shown_setting(cfg['options'][k])} from [tool.wattlint] of "
                     f"{_where(cfg['config'].path)}: the {m.tool} log does not say how much training it measured; "
                     "pass --steps / --epochs / --tokens to change")
    if m.pue and "pue" not in flags:  # the site's PUE the log states: the estimate's facility energy and CO2 use it
        flags = {**flags, "pue": m.pue}
        logged["pue"] = (f"PUE {m.pue:g}", ("pue", "from the log", m.pue))
        how = _pue_in_log(m)
        lines.append(f"  note: --pue {m.pue:g} from the log ({how}); pass --pue to change")
    if (m.co2_kg and m.energy_kwh and m.energy_kwh > 0 and "carbon_intensity" not in flags
            and "region" not in flags):
        # the grid intensity the log's CO2 used (its CO2 / the energy it was computed from): the estimate's CO2 at
        # another grid (the world average) made the CO2 error mix two grids
        ci = round(m.co2_kg * 1000.0 / m.energy_kwh, 3)  # the figure the estimate is priced at, and said
        flags = {**flags, "carbon_intensity": ci}
        logged["carbon_intensity"] = (f"grid intensity {ci:g} gCO2e/kWh: its CO2 / its energy",
                                      ("carbon intensity", "from the log's CO2 / energy", ci))
        lines.append(f"  note: --carbon-intensity {ci:g} gCO2e/kWh from the log (its CO2 / its energy); pass "
                     f"--carbon-intensity or --region to change")
    gpus_note = None
    if m.gpu_count and "gpus" not in flags:  # the log's energy and time are those of all its GPUs: so is the estimate
        flags = {**flags, "gpus": m.gpu_count}
        logged["gpus"] = (f"{m.gpu_count} GPU(s)", ("gpus", "from the log", m.gpu_count))
        gpus_note = f"--gpus {m.gpu_count} from the log ({m.tool} measured {m.gpu_count} GPU(s)); pass --gpus to change"
    elif m.gpu_count and flags["gpus"] != m.gpu_count:
        gpus_note = f"the estimate is for --gpus {flags['gpus']}, the log measured {m.gpu_count} GPU(s)"
    notes += [gpus_note] if gpus_note else []
    if notes:
        lines += [f"  note: {n}" for n in notes]
        doc["notes"] = notes
    if not gpu_key and not args.gpu and not args.cpu_calibration and (m.gpu_model or m.tool != "codecarbon"):
        from ..types import ConfigError

        # a GPU tool's log (Zeus; Carbontracker's GPU components) or a GPU the database lacks: not "a CPU run"
        raise ConfigError(f"{m.path}: " + (f"its GPU {m.gpu_model!r} is not in the GPU database ('wattlint gpus' "
                                           "lists it)" if m.gpu_model else f"the {m.tool} log does not name its GPU")
                          + ": pass --gpu KEY (or --cpu-calibration DIR for a CPU run)")

    opts, given = _with_config(args, flags, logged={k: said for k, (said, _) in logged.items()})
    # the log's figures named as the log's in the estimate's lines, not as flags the user did not type
    given = {**{k: g for k, (_, g) in logged.items()}, **given}
    est = _estimate(args, opts, "cuda" if gpu_key or args.gpu else "cpu", gpu_key)
    _refuse_without_dataset(args, est, m, logged)
    _refuse_failed_estimate(args, est, given)
    _said_where_given(est, given)
    doc["static"] = est
    work = next((k for k in ("steps", "tokens") if k in typed), None)
    if m.epochs and work:  # the command line's amount of work replaced the epochs the log measured: said
        e = (est.get("plan") or {}).get("epochs")
        if e is None or abs(float(e) - m.epochs) > 1e-9 * m.epochs:
            note = (f"the estimate is for --{work.replace('_', '-')} {typed[work]:,.0f}"
                    + (f" = {float(e):.4g} epochs of its dataset, " if e is not None else ", ")
                    + f"the log measured {m.epochs} epoch(s)"
                    + ("" if e is not None else ": pass --dataset to tell how many steps those were"))
            lines.append(f"  note: {note}")
            doc.setdefault("notes", []).append(note)
    tot = est["total"]
    pue = float((est.get("plan") or {}).get("pue") or 1.0)
    cmp_: dict = {"total_time_s": {"static": tot["time_h"] * 3600.0, "measured": m.duration_s,
                                   "error": _err(tot["time_h"] * 3600.0, m.duration_s)}}
    if m.gpu_energy_kwh is not None:
        cmp_["gpu_energy_kwh"] = {"static": tot["gpu_energy_kwh"], "measured": m.gpu_energy_kwh,
                                  "error": _err(tot["gpu_energy_kwh"], m.gpu_energy_kwh)}
    # the estimate's PUE is its default (no --pue, nothing in the log, the file or a cloud region): said so
    default_pue = "pue" not in opts and any(a.startswith(f"PUE {pue:g} (default")
                                            for a in est.get("assumptions") or [])
    if m.tool == "codecarbon" and m.energy_kwh is not None:
        # the row's total is (CPU + GPU + RAM) x PUE: compare facility energy with it; else GPU + host before PUE
        s = tot["energy_kwh"] if m.pue_in_energy else tot["energy_kwh"] / pue
        cmp_["energy_kwh"] = {"static": s, "measured": m.energy_kwh, "error": _err(s, m.energy_kwh),
                              "scope": _energy_scope(m, pue, default_pue)}
    elif m.tool == "carbontracker" and m.energy_kwh is not None:
        cmp_["energy_kwh"] = {"static": tot["energy_kwh"], "measured": m.energy_kwh,
                              "error": _err(tot["energy_kwh"], m.energy_kwh), "scope": _energy_scope(m, pue, default_pue)}
    if m.co2_kg is not None and tot.get("co2_kg") is not None:
        # the log's CO2 is its energy total x its grid intensity: the estimate's CO2 is taken in the energy line's
        # scope. A CodeCarbon total without its PUE is compared with the estimate before PUE, so is its CO2 (review:
        # the estimate's facility CO2 was compared with it, the CO2 error off the energy's by the estimate's PUE)
        before = m.tool == "codecarbon" and not m.pue_in_energy
        s_co2 = tot["co2_kg"] / pue if before else tot["co2_kg"]
        grid = "the log's grid intensity on both" if "carbon_intensity" in logged else "each with its own grid intensity"
        cmp_["co2_kg"] = {"static": s_co2, "measured": m.co2_kg, "error": _err(s_co2, m.co2_kg),
                          "scope": (f"estimate CO2 before PUE {pue:g}, as "
                                    f"{'on the energy line' if 'energy_kwh' in cmp_ else 'a CodeCarbon total'}; {grid}"
                                    if before and abs(pue - 1.0) > 1e-9 else grid)}
    doc["comparison"] = cmp_
    # the energy model's description has brackets of its own: after the device, not inside another pair
    lines.append(f"  estimate on {est.get('gpu') or 'cpu'}, energy model {est.get('energy_model')}:")
    table = {"total_time_s": u.DURATION, "gpu_energy_kwh": u.ENERGY_KWH, "energy_kwh": u.ENERGY_KWH,
             "co2_kg": u.CO2_KG}
    for k, c in cmp_.items():
        if c.get("measured") is None:
            continue
        e = c.get("error")
        st, me = u.column([c["static"], c["measured"]], table[k])  # one unit for both
        lines.append(f"    {k:16s} static {st} vs measured {me}: error "
                     f"{'n/a' if e is None else f'{e * 100:+.0f} %'}" + (f" ({c['scope']})" if c.get("scope") else ""))
    doc["_lines"] = lines
    return doc
