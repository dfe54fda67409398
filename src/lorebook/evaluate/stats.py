"""Confidence intervals: Wilson for shares (closed form, sane at 0% and 100%), bootstrap for means."""

from __future__ import annotations

import math
import random

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for a share; (0, 1) when there is nothing to measure."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def share(flags: list[bool]) -> dict:
    """A share metric: value, n and its 95% interval."""
    n = len(flags)
    k = sum(bool(f) for f in flags)
    lo, hi = wilson(k, n)
    return {"value": k / n if n else None, "n": n, "k": k, "ci": [lo, hi]}


def bootstrap_mean(values: list[float], samples: int = 1000, seed: int = 0) -> dict:
    """A mean with its 95% percentile-bootstrap interval (seeded, so reports are reproducible)."""
    n = len(values)
    if n == 0:
        return {"value": None, "n": 0, "ci": [None, None]}
    mean = sum(values) / n
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(samples))
    return {"value": mean, "n": n, "ci": [means[int(0.025 * samples)], means[int(0.975 * samples) - 1]]}


def bootstrap_ratio(after: list[float], before: list[float], samples: int = 1000, seed: int = 0) -> dict:
    """Ratio of paired means (after / before) with a paired bootstrap interval, e.g. reply length drift."""
    pairs = [(a, b) for a, b in zip(after, before)]
    n = len(pairs)
    total_before = sum(b for _, b in pairs)
    if n == 0 or total_before == 0:
        return {"value": None, "n": n, "ci": [None, None]}
    value = sum(a for a, _ in pairs) / total_before
    rng = random.Random(seed)
    ratios = []
    for _ in range(samples):
        pick = rng.choices(pairs, k=n)
        denominator = sum(b for _, b in pick)
        if denominator:
            ratios.append(sum(a for a, _ in pick) / denominator)
    ratios.sort()
    return {"value": value, "n": n, "ci": [ratios[int(0.025 * len(ratios))], ratios[int(0.975 * len(ratios)) - 1]]}
