"""Pure statistics of a step-time series: warm-up truncation, stable phase, batch-means confidence interval.

* Warm-up: MSER-5 (White 1997, "An effective truncation heuristic for bias reduction in simulation output";
  White, Cobb & Spratt 2000): average the series in batches of 5, and drop the first d batches that minimise
  the squared standard error of the remaining mean, MSER(d) = sum_{i>d} (Y_i - mean_d)^2 / (n - d)^2, with
  d <= n/2. The first steps of a training run (allocator growth, kernel selection, lazy initialisation, caches)
  are exactly the initial transient this rule was built for.
* Uncertainty of the stable mean: non-overlapping batch means (the usual remedy for autocorrelated output):
  k batches of equal size, SE = sd(batch means) / sqrt(k).
* Drift: the relative difference between the means of the first and second halves of the stable phase (a slow
  change - thermal throttling, another job on the machine - that the SE of a stationary series does not see).

Only numpy; no torch. Inputs are plain sequences of floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

MSER_BATCH = 5
Z90 = 1.6448536269514722  # two-sided 90 % (the 5-95 % range used everywhere in wattlint)
BATCHES = 10  # batch means for the CI of the stable mean


def mser_truncation(x: Sequence[float], batch: int = MSER_BATCH, max_frac: float = 0.5) -> int:
    """Number of leading samples to drop (a multiple of ``batch``); 0 when the series is too short (< 4 batches)."""
    a = np.asarray(x, dtype=float)
    nb = len(a) // batch
    if nb < 4:
        return 0
    y = a[: nb * batch].reshape(nb, batch).mean(axis=1)
    # suffix sums: for d = 0..nb-1 the batches y[d:]
    s1 = np.cumsum(y[::-1])[::-1]
    s2 = np.cumsum((y * y)[::-1])[::-1]
    m = np.arange(nb, 0, -1, dtype=float)
    sse = np.maximum(s2 - s1 * s1 / m, 0.0)
    mser = sse / (m * m)
    dmax = max(0, int(nb * max_frac))
    cand = mser[: dmax + 1]
    # the first d within rounding of the minimum (suffix sums cancel: a flat tail gives ~1e-17 noise, not 0)
    tol = 1e-9 * float(np.mean(y * y)) / nb
    d = int(np.flatnonzero(cand <= cand.min() + tol)[0])
    return d * batch


@dataclass(frozen=True)
class StableStats:
    """Statistics of the stable (post-warm-up) part of a series."""

    warmup: int  # samples dropped as warm-up
    n: int  # samples in the stable part
    mean: float
    median: float
    std: float
    p5: float
    p95: float
    sum: float
    se: float  # standard error of the mean (batch means)
    rel_ci90: float  # 90 % CI half-width / mean
    drift: float  # |mean(second half) - mean(first half)| / mean

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def batch_means_se(x: np.ndarray, batches: int = BATCHES) -> float:
    n = len(x)
    k = min(batches, n // 2)
    if k < 2:
        return float("inf")
    size = n // k
    bm = x[: k * size].reshape(k, size).mean(axis=1)
    return float(bm.std(ddof=1) / math.sqrt(k))


def stable_stats(x: Sequence[float], warmup: int | None = None) -> StableStats | None:
    """Stats after dropping the warm-up (MSER-5 unless given); None when fewer than 2 samples remain."""
    a = np.asarray(x, dtype=float)
    w = mser_truncation(a) if warmup is None else int(warmup)
    s = a[w:]
    if len(s) < 2:
        return None
    mean = float(s.mean())
    half = len(s) // 2
    drift = abs(float(s[half:].mean()) - float(s[:half].mean())) / mean if half >= 2 and mean > 0 else 0.0
    se = batch_means_se(s)
    return StableStats(
        warmup=w, n=len(s), mean=mean, median=float(np.median(s)), std=float(s.std(ddof=1)),
        p5=float(np.percentile(s, 5)), p95=float(np.percentile(s, 95)), sum=float(s.sum()), se=se,
        rel_ci90=(Z90 * se / mean) if mean > 0 and math.isfinite(se) else float("inf"), drift=drift)


def distribution(x: Sequence[float]) -> dict[str, float] | None:
    """mean / median / std / p5 / p95 / min / max / sum of a sample (None when empty)."""
    a = np.asarray(x, dtype=float)
    if a.size == 0:
        return None
    return {"n": int(a.size), "mean": float(a.mean()), "median": float(np.median(a)),
            "std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "p5": float(np.percentile(a, 5)),
            "p95": float(np.percentile(a, 95)), "min": float(a.min()), "max": float(a.max()), "sum": float(a.sum())}
