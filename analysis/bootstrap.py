"""Bootstrap confidence intervals over users (DIAGNOSTICS.md "Protocol").

Every headline metric gets a percentile bootstrap CI over users, and every difference
between two systems a *paired* bootstrap (the same resampled users for both systems,
which removes the between-user variance the two share).

- Users with NaN (empty relevant set) are skipped and counted (``n_skipped``).
- Paired: only users with a value in both systems are used.
- p-value of the paired test (two-sided, H0: mean difference 0) from the same resamples and the
  same quantile function as the interval (:func:`percentile_p`): the 95 % interval excludes 0
  exactly when p < 0.05 (an interval and a p-value from different bootstrap constructions disagreed
  near the boundary: "CI excludes 0, p = 0.054"). Never exactly 0 (at least 1 / (B + 1)); 1 when
  every difference is 0.

Vectorised: a (chunk, n) matrix of resampled indices per chunk; chunks keep it under
about 4M entries so 6,000 users x 1,000 resamples stays small in memory.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from .errors import ConfigError

_CHUNK_ENTRIES = 1 << 22


def _check(n_boot: int, level: float) -> None:
    if int(n_boot) < 1:
        raise ConfigError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ConfigError(f"confidence level must be in (0, 1), got {level}")


#: resampled index matrices up to this many entries are kept for the next call with the same
#: (n, n_boot, seed): a run bootstraps hundreds of metric vectors over the same users, and drawing
#: the indices was half the cost (int32: 400 MB at most)
_KEEP_ENTRIES = 100_000_000


def _draws(n: int, n_boot: int, seed: int):
    """The resampled index chunks of ``n`` users (``n_boot`` rows in all), in the order they are drawn."""
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK_ENTRIES // max(n, 1))
    for s in range(0, n_boot, step):
        yield rng.integers(0, n, size=(min(step, n_boot - s), n))


@lru_cache(maxsize=2)
def _kept_draws(n: int, n_boot: int, seed: int) -> tuple[np.ndarray, ...]:
    return tuple(idx.astype(np.int32) for idx in _draws(n, n_boot, seed))


def bootstrap_means(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``n_boot`` means of ``values`` resampled with replacement (float64, no NaN allowed)."""
    v = np.asarray(values, dtype=np.float64)
    n, n_boot = len(v), int(n_boot)
    keep = n * n_boot <= _KEEP_ENTRIES and n < 2**31
    chunks = _kept_draws(n, n_boot, int(seed)) if keep else _draws(n, n_boot, seed)
    out = np.empty(n_boot)
    s = 0
    for idx in chunks:
        out[s : s + len(idx)] = v[idx].mean(1)
        s += len(idx)
    return out


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean and percentile CI over users: ``dict(mean, lo, hi, n, n_skipped)``."""
    _check(n_boot, level)
    v = np.asarray(values, dtype=np.float64).ravel()
    ok = ~np.isnan(v)
    v = v[ok]
    res = {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": int(len(v)), "n_skipped": int((~ok).sum())}
    if len(v) == 0:
        return res
    means = bootstrap_means(v, n_boot, seed)
    a = (1 - level) / 2
    res.update(mean=float(v.mean()), lo=float(np.quantile(means, a)), hi=float(np.quantile(means, 1 - a)))
    return res


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Paired bootstrap of mean(a − b) over users present (non-NaN) in both.

    Returns ``dict(diff, lo, hi, p_value, n, n_skipped)``; ``a[j]`` and ``b[j]`` must be
    the same user.
    """
    _check(n_boot, level)
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ConfigError(f"paired bootstrap needs per-user arrays of equal length, got {a.shape} and {b.shape}")
    ok = ~(np.isnan(a) | np.isnan(b))
    d = a[ok] - b[ok]
    res = {
        "diff": float("nan"), "lo": float("nan"), "hi": float("nan"), "p_value": float("nan"),
        "n": int(len(d)), "n_skipped": int((~ok).sum()),
    }
    if len(d) == 0:
        return res
    obs = float(d.mean())
    means = bootstrap_means(d, n_boot, seed)
    q = (1 - level) / 2
    res.update(diff=obs, lo=float(np.quantile(means, q)), hi=float(np.quantile(means, 1 - q)),
               p_value=percentile_p(means))
    return res


def percentile_p(boot: np.ndarray) -> float:
    """Two-sided percentile-bootstrap p-value of H0: statistic = 0, from the interval's own quantile function.

    Q(q) = ``np.quantile(boot, q)`` (linear interpolation, as the intervals use); a = sup{q : Q(q) <= 0},
    b = inf{q : Q(q) >= 0}; p = min(1, 2 · min(a, 1 − b)), at least 1 / (B + 1). So the central
    interval [Q(α/2), Q(1 − α/2)] excludes 0 exactly when p < α, for every level α with B ≥ 1/α − 1 (below
    that, the floor 1 / (B + 1) alone reaches α).
    """
    x = np.sort(np.asarray(boot, dtype=np.float64))
    n = len(x)
    if n == 1:
        return 1.0 if x[0] == 0 else 1.0 / 2
    level = np.arange(n) / (n - 1)

    def crossing(i: int) -> float:  # the level where Q passes 0 between x[i] and x[i + 1]
        return float(level[i] + (0 - x[i]) / (x[i + 1] - x[i]) * (level[i + 1] - level[i]))

    le, ge = np.flatnonzero(x <= 0), np.flatnonzero(x >= 0)
    a = 0.0 if not len(le) else 1.0 if le[-1] == n - 1 else crossing(int(le[-1]))
    b = 1.0 if not len(ge) else 0.0 if ge[0] == 0 else crossing(int(ge[0]) - 1)
    return float(max(min(1.0, 2 * min(a, 1 - b)), 1.0 / (n + 1)))


def _metric_key(key: str) -> tuple[str, int]:
    metric, k = key.split("@")
    return metric, int(k)


def ci_rows(per_user: Mapping[str, Mapping[str, np.ndarray]], n_boot: int = 1000, seed: int = 0,
            **columns: Any) -> pd.DataFrame:
    """One row per system × ``metric@k`` of ``per_user`` ({system: {"recall@20": values}}): system,
    the constant ``columns`` (e.g. part, segment), metric, k, mean, lo, hi, n_users (:func:`bootstrap_ci`)."""
    rows = []
    for system, d in per_user.items():
        for key, v in d.items():
            metric, k = _metric_key(key)
            ci = bootstrap_ci(v, n_boot=n_boot, seed=seed)
            rows.append({"system": system, **columns, "metric": metric, "k": k, "mean": ci["mean"], "lo": ci["lo"],
                         "hi": ci["hi"], "n_users": ci["n"]})
    return pd.DataFrame(rows, columns=["system", *columns, "metric", "k", "mean", "lo", "hi", "n_users"])


def paired_rows(per_user: Mapping[str, Mapping[str, np.ndarray]], pairs: Iterable[tuple[str, str]],
                n_boot: int = 1000, seed: int = 0, **columns: Any) -> pd.DataFrame:
    """One row per pair (a, b) × ``metric@k`` of a: system_a, system_b, the constant ``columns``, metric,
    k, diff, lo, hi, p_value, n_users (:func:`paired_bootstrap` of a − b over the same users)."""
    rows = []
    for a, b in pairs:
        for key, v in per_user[a].items():
            metric, k = _metric_key(key)
            d = paired_bootstrap(v, per_user[b][key], n_boot=n_boot, seed=seed)
            rows.append({"system_a": a, "system_b": b, **columns, "metric": metric, "k": k, "diff": d["diff"],
                         "lo": d["lo"], "hi": d["hi"], "p_value": d["p_value"], "n_users": d["n"]})
    return pd.DataFrame(rows, columns=["system_a", "system_b", *columns, "metric", "k", "diff", "lo", "hi", "p_value",
                                       "n_users"])


def bootstrap_statistic(columns: Mapping[str, np.ndarray], stat: Callable[[Mapping[str, Any]], Any],
                        n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """A statistic of per-user column means, with a percentile bootstrap CI over users.

    ``stat`` maps ``{name: mean}`` to the statistic; it is called once with the observed means
    (floats) and once with arrays of ``n_boot`` resampled means, every column resampled with the same
    users (the paired bootstrap of :func:`paired_bootstrap`, for a statistic that is not a mean, e.g.
    a difference of maxima). Users with NaN in any column are skipped. Returns ``dict(value, lo, hi,
    p_value, n, n_skipped)``; ``p_value`` (H0: the statistic is 0): :func:`percentile_p` of the same
    resamples as the interval.
    """
    _check(n_boot, level)
    cols = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in columns.items()}
    ok = ~np.any([np.isnan(v) for v in cols.values()], axis=0)
    res = {"value": float("nan"), "lo": float("nan"), "hi": float("nan"), "p_value": float("nan"),
           "n": int(ok.sum()), "n_skipped": int((~ok).sum())}
    if not ok.any():
        return res
    obs = float(stat({k: float(v[ok].mean()) for k, v in cols.items()}))
    boot = np.asarray(stat({k: bootstrap_means(v[ok], n_boot, seed) for k, v in cols.items()}), dtype=np.float64)
    q = (1 - level) / 2
    res.update(value=obs, lo=float(np.quantile(boot, q)), hi=float(np.quantile(boot, 1 - q)), p_value=percentile_p(boot))
    return res
