"""Calibration suites as data: ``src/wattlint/data/suites/<name>.toml`` -> an ordered list of samples.

A suite file::

    [suite]
    name = "default"
    description = "..."
    seed = 1                      # deterministic shuffle (families interleaved, so drift is not a family effect)

    [suite.timing.cuda]           # per-sample windows by device (seconds); the planned duration comes from these
    warmup_s = 0.05               # run the op until this much time has passed (>= 2 calls)
    timing_s = 0.10               # timed calls (CUDA events / synchronize), median of rounds
    window_s = 0.5                # energy window (NVML counter needs >= 0.5 s)
    overhead_s = 0.10             # allocation, counter-tick alignment, bookkeeping

    [suite.setup]
    idle_s = 5                    # idle power, measured first
    stabilize_max_s = 30          # thermal stabilisation (cuda): until the temperature is flat, at most this

    [[group]]
    family = "gemm"
    precisions = ["fp32", "tf32", "bf16"]
    phases = ["forward", "backward"]
    shapes = [{m = 4096, n = 4096, k = 4096}, ...]     # explicit shapes, and/or
    grid = {m = [...], n = [...], k = [...]}           # a cartesian grid
    fixed = {bias = 1}                                 # merged into every shape

Samples = shapes x precisions x phases (combinations a shape cannot measure, e.g. the backward of add, are
dropped). Shape parameters, names (op, kind, name) and phases a family does not know are refused, never
measured as its defaults (``benchmarks.FAMILIES`` lists them).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 (tomli is a dependency there)
    import tomli as tomllib  # type: ignore[no-redef]
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..types import ConfigError
from . import benchmarks

SUITE_DIR_ENV = "WATTLINT_SUITES"
DEFAULT_TIMING = {
    "cuda": {"warmup_s": 0.05, "timing_s": 0.10, "window_s": 0.5, "overhead_s": 0.10},
    "cpu": {"warmup_s": 0.02, "timing_s": 0.12, "window_s": 0.0, "overhead_s": 0.02},
    "fake": {"warmup_s": 0.0, "timing_s": 0.0, "window_s": 0.5, "overhead_s": 0.0},
}
DEFAULT_SETUP = {"idle_s": 5.0, "stabilize_max_s": 30.0}


@dataclass(frozen=True)
class Sample:
    family: str
    params: tuple[tuple[str, Any], ...]  # sorted
    precision: str
    phase: str

    @property
    def params_dict(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def params_json(self) -> str:
        return json.dumps(self.params_dict, sort_keys=True, separators=(",", ":"))

    @property
    def shape_key(self) -> str:
        return f"{self.family}:{self.params_json}"

    @property
    def id(self) -> str:
        return f"{self.family}:{self.params_json}:{self.precision}:{self.phase}"

    def records(self):
        return benchmarks.records(self.family, self.params_dict, self.precision, self.phase)


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    description: str
    samples: tuple[Sample, ...]
    timing: Mapping[str, Mapping[str, float]]
    setup: Mapping[str, float]
    sha256: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    def sample_seconds(self, device: str) -> float:
        t = self.timing.get(device) or DEFAULT_TIMING.get(device) or DEFAULT_TIMING["cuda"]
        return float(sum(t.get(k, 0.0) for k in ("warmup_s", "timing_s", "window_s", "overhead_s")))

    def part(self, k: int, n: int) -> tuple[Sample, ...]:
        """Part k of n (1-based): every n-th sample of the shuffled order, so each part covers every family."""
        if not (1 <= k <= n):
            raise ConfigError(f"--part {k}/{n}: expected 1 <= K <= N")
        if n > len(self.samples):  # part K would measure nothing
            raise ConfigError(f"--part {k}/{n}: the suite {self.name!r} has only {len(self.samples)} samples; "
                              f"use at most {len(self.samples)} parts")
        return tuple(s for i, s in enumerate(self.samples) if i % n == k - 1)

    def planned_seconds(self, device: str, samples: int | None = None, *, with_setup: bool = True) -> float:
        n = len(self.samples) if samples is None else samples
        setup = 0.0
        if with_setup:
            setup = float(self.setup.get("idle_s", 0.0))
            if device == "cuda":
                setup += float(self.setup.get("stabilize_max_s", 0.0))
        return n * self.sample_seconds(device) + setup

    def family_counts(self, samples=None) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in samples or self.samples:
            out[s.family] = out.get(s.family, 0) + 1
        return dict(sorted(out.items()))


def suites_dir() -> Path:
    """The shipped suites, ``wattlint/data/suites`` (package data, so that an installed wattlint finds them too;
    ``$WATTLINT_SUITES`` names another folder)."""
    import os

    env = os.environ.get(SUITE_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "data" / "suites"


def resolve_suite_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if p.is_dir():
            raise ConfigError(f"suite {name_or_path!r} is a folder: name a suite's .toml file (or a built-in suite)")
        if not p.is_file():
            raise ConfigError(f"suite file {name_or_path!r} not found")
        return p
    cand = suites_dir() / f"{name_or_path}.toml"
    if not cand.is_file():
        avail = sorted(x.stem for x in suites_dir().glob("*.toml"))
        raise ConfigError(f"unknown suite {name_or_path!r} (available: {', '.join(avail) or 'none'}; or a .toml path)")
    return cand


def load_suite(name_or_path: str) -> Suite:
    path = resolve_suite_path(name_or_path)
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))  # an editor's byte-order mark is not TOML
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    # absolute: a run records it, and --resume from another folder must find the same file
    return parse_suite(data, path=str(path.resolve()), sha256=hashlib.sha256(raw).hexdigest())


def _table(v: Any, where: str, key: str) -> dict:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where}: {key!r} = {str(v)[:60]}: expected a table")
    return dict(v)


def _strings(v: Any, where: str, key: str, allowed) -> list[str]:
    if not (isinstance(v, list) and v and all(isinstance(x, str) for x in v)):
        raise ConfigError(f"{where}: {key!r} = {str(v)[:60]}: expected a non-empty list of strings")
    bad = [x for x in v if x not in allowed]
    if bad:
        raise ConfigError(f"{where}: {key!r}: unknown {bad[0]!r} (one of {', '.join(allowed)})")
    return list(v)


def _seconds(v: Any, where: str, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 3600:
        raise ConfigError(f"{where}: {key!r} = {str(v)[:60]}: expected seconds in [0, 3600]")
    return float(v)


def _param(v: Any, where: str, key: str) -> Any:
    """A shape parameter: a whole number (sizes; 0/1 for flags; groups = -1 for depthwise) or a string (an op
    name). Sizes that price to negative work are refused once the sample's records are built."""
    if isinstance(v, str) or isinstance(v, bool):
        return v
    if isinstance(v, int) and -1 <= v <= 1 << 40:
        return v
    raise ConfigError(f"{where}: shape parameter {key!r} = {str(v)[:60]}: expected a whole number or a name")


_TIMING_KEYS = ("warmup_s", "timing_s", "window_s", "overhead_s")
_PRECISIONS = tuple(benchmarks.PRECISION_DTYPE)


def parse_suite(data: Mapping[str, Any], *, path: str = "<memory>", sha256: str = "") -> Suite:
    """A suite from its TOML data; every malformed value is a ConfigError naming the key (exit 2), and a suite that
    yields no sample is refused."""
    unknown = set(data) - {"suite", "group"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)}")
    head = _table(data.get("suite"), path, "suite")
    bad_head = set(head) - {"name", "description", "seed", "timing", "setup"}
    if bad_head:
        raise ConfigError(f"{path}: [suite]: unknown key(s) {sorted(bad_head)}")
    seed = head.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{path}: [suite]: 'seed' = {str(seed)[:60]}: expected a whole number")
    timing = {d: dict(DEFAULT_TIMING[d]) for d in DEFAULT_TIMING}
    for dev, t in _table(head.get("timing"), path, "suite.timing").items():
        where_t = f"{path}: [suite.timing.{dev}]"
        if dev not in DEFAULT_TIMING:
            raise ConfigError(f"{path}: [suite.timing]: unknown device {dev!r} (one of {', '.join(DEFAULT_TIMING)})")
        t = _table(t, f"{path}: [suite.timing]", dev)
        bad_t = set(t) - set(_TIMING_KEYS)
        if bad_t:
            raise ConfigError(f"{where_t}: unknown key(s) {sorted(bad_t)} (known: {', '.join(_TIMING_KEYS)})")
        timing[dev].update({k: _seconds(v, where_t, k) for k, v in t.items()})
    setup = dict(DEFAULT_SETUP)
    raw_setup = _table(head.get("setup"), path, "suite.setup")
    bad_s = set(raw_setup) - set(DEFAULT_SETUP)
    if bad_s:
        raise ConfigError(f"{path}: [suite.setup]: unknown key(s) {sorted(bad_s)} (known: {', '.join(DEFAULT_SETUP)})")
    setup.update({k: _seconds(v, f"{path}: [suite.setup]", k) for k, v in raw_setup.items()})
    groups = data.get("group") or []
    if not isinstance(groups, list) or not all(isinstance(g, Mapping) for g in groups):
        raise ConfigError(f"{path}: 'group' must be an array of tables ([[group]])")
    seen: set[str] = set()
    samples: list[Sample] = []
    for gi, g in enumerate(groups):
        where = f"{path}: group {gi + 1}"
        fam = g.get("family")
        if fam not in benchmarks.FAMILIES:
            raise ConfigError(f"{where}: unknown family {fam!r} (one of {', '.join(benchmarks.FAMILIES)})")
        group, where = where, f"{where} ({fam})"
        bad = set(g) - {"family", "precisions", "phases", "shapes", "grid", "fixed", "note"}
        if bad:
            raise ConfigError(f"{where}: unknown key(s) {sorted(bad)}")
        precisions = _strings(g["precisions"], where, "precisions", _PRECISIONS) if "precisions" in g else ["fp32"]
        phases = _strings(g.get("phases", list(benchmarks.FAMILIES[fam].phases)), where, "phases",
                          benchmarks.FAMILIES[fam].phases)  # the optimizer's samples are its 'optimizer' phase
        fixed = {k: _param(v, where, k) for k, v in _table(g.get("fixed"), where, "fixed").items()}
        raw_shapes = g.get("shapes") or []
        if not isinstance(raw_shapes, list) or not all(isinstance(s, Mapping) for s in raw_shapes):
            raise ConfigError(f"{where}: 'shapes' must be a list of tables, e.g. [{{m = 64, n = 64, k = 64}}]")
        shapes = [{k: _param(v, where, k) for k, v in s.items()} for s in raw_shapes]
        grid = _table(g.get("grid"), where, "grid")
        if grid:
            for k, vals in grid.items():
                if not isinstance(vals, list) or not vals:
                    raise ConfigError(f"{where}: grid {k!r} = {str(vals)[:60]}: expected a non-empty list of values")
                for v in vals:
                    _param(v, where, k)
            keys = sorted(grid)
            for combo in itertools.product(*(grid[k] for k in keys)):
                shapes.append(dict(zip(keys, combo)))
        if not shapes:
            raise ConfigError(f"{where}: no shapes (give 'shapes' and/or 'grid')")
        for shp in shapes:
            params = {**fixed, **shp}
            try:
                benchmarks.check_params(fam, params)
            except benchmarks.BenchmarkError as e:
                raise ConfigError(f"{group}: {e}") from None  # it names the family
            for prec in precisions:
                if prec not in benchmarks.FAMILIES[fam].precisions:
                    continue
                for ph in phases:
                    if not benchmarks.supports(fam, params, ph):
                        continue
                    s = Sample(fam, tuple(sorted(params.items())), prec, ph)
                    try:
                        recs = s.records()
                    except (benchmarks.BenchmarkError, KeyError, TypeError, ValueError, ZeroDivisionError) as e:
                        raise ConfigError(f"{where}: bad shape {params}: {e}") from None
                    if not recs or any(r.flops < 0 or r.bytes <= 0 for r in recs):
                        raise ConfigError(f"{where}: bad shape {params}: sizes must be positive")
                    if s.id in seen:
                        continue
                    seen.add(s.id)
                    samples.append(s)
    if not samples:
        raise ConfigError(f"{path}: the suite has no samples (no [[group]], or none of its precisions/phases can be "
                          "measured for its family)")
    rnd = random.Random(seed)
    rnd.shuffle(samples)
    name = str(head.get("name") or re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem).lstrip(".") or "suite")
    if not _SUITE_NAME.fullmatch(name):  # it names the run's files: '../../x' wrote them outside --out
        raise ConfigError(f"{path}: [suite] name {name!r}: letters, digits, '.', '_' and '-' only (it is part of "
                          "the run's file names), not starting with '.'")
    return Suite(name=name, path=path,
                 description=str(head.get("description", "")), samples=tuple(samples), timing=timing, setup=setup,
                 sha256=sha256 or hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest())


_SUITE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def plan_text(suite: Suite, device: str, samples: tuple[Sample, ...] | None = None, part: str = "") -> str:
    """One paragraph printed before a run starts: samples, per-sample window, planned duration."""
    samples = suite.samples if samples is None else samples
    per = suite.sample_seconds(device)
    total = suite.planned_seconds(device, len(samples))
    fams = ", ".join(f"{k} {v}" for k, v in suite.family_counts(samples).items())
    return (f"suite {suite.name}{' part ' + part if part else ''}: {len(samples)} samples ({fams}); "
            f"{per:.2f} s per sample on {device} + setup -> planned {total / 60:.1f} min")
