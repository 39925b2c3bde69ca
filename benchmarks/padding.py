"""Dynamic padding: the expected cost of a step whose batch is padded to its longest sequence, as weights over a few
traced sequence lengths (used by benchmarks/prior_vs_public.py and public_accuracy.py for Zeus's BERT-base / SQuAD
rows). Pure Python, no torch, no data: tests/test_benchmark_padding.py checks it by hand."""

from __future__ import annotations


def batch_max_weights(hist: dict[int, int], batch: int, grid: tuple[int, ...]) -> list[tuple[int, float]]:
    """Weights over the traced lengths ``grid`` such that sum(weight x cost(length)) is the expected cost of a step
    whose ``batch`` features, drawn at random from the length histogram ``hist``, are padded to the longest of them,
    with the cost interpolated linearly in the length between grid points (clamped at the grid's ends).

    The longest of ``batch`` draws is taken as i.i.d.: P(max <= v) = F(v)^batch (a shuffled epoch draws without
    replacement; with 88,524 features and batches <= 72 the two differ by < 0.4 tokens in the expected maximum)."""
    total = sum(hist.values())
    weights = {g: 0.0 for g in grid}
    cum, prev = 0, 0.0
    for v in sorted(hist):
        cum += hist[v]
        cdf = (cum / total) ** batch
        p, prev = cdf - prev, cdf
        if v <= grid[0] or v >= grid[-1]:
            weights[grid[0] if v <= grid[0] else grid[-1]] += p
            continue
        i = max(j for j in range(len(grid)) if grid[j] <= v)
        a = (v - grid[i]) / (grid[i + 1] - grid[i])
        weights[grid[i]] += p * (1.0 - a)
        weights[grid[i + 1]] += p * a
    return [(g, w) for g, w in weights.items() if w > 0]
