"""Typed access to a run's headline summary (``manifest["summary"]``), instead of string keys.

>>> s = RunSummary(run.manifest)
>>> s.estimate("collab", "ndcg")          # Estimate(mean, lo, hi), test, all items, at K
>>> s.estimate("semantic", "recall", segment="cold")
>>> s.best_single, s.gain_over_best("fusion")
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .errors import RunError


@dataclass(frozen=True)
class Estimate:
    """A test mean over users with its 95 % bootstrap interval."""

    mean: float
    lo: float
    hi: float
    #: users the mean is over (users with at least one relevant item)
    n_users: int = -1


class RunSummary:
    """The summary of one run (schema 3 and later)."""

    def __init__(self, manifest: Mapping[str, Any]):
        s = manifest.get("summary") or {}
        if "metrics" not in s:
            raise RunError("the run's summary has no headline metrics (made before schema 3): recompute it with --force")
        self.raw = s
        self.K = int(s["K"])
        self.best_single = str(s["best_single"])

    def estimate(self, system: str, metric: str = "ndcg", segment: str = "all") -> Estimate:
        """``metric`` ("recall" / "ndcg") of ``system`` at K on test, over all items or a segment's own ranking."""
        table = self.raw["metrics"] if segment == "all" else (self.raw.get("segments") or {}).get(segment)
        if table is None or system not in table:
            raise RunError(f"the run's summary has no {metric}@{self.K} of {system!r} on segment {segment!r}")
        d = table[system][metric]
        return Estimate(float(d["mean"]), float(d["lo"]), float(d["hi"]), int(d.get("n_users", -1)))

    def has(self, system: str) -> bool:
        """Whether the run computed ``system`` (one skipped at the run's size has no estimate)."""
        return system in self.raw["metrics"]

    def mean(self, system: str, metric: str = "ndcg", segment: str = "all") -> float:
        return self.estimate(system, metric, segment).mean

    def gain_over_best(self, system: str, metric: str = "ndcg") -> float:
        """``system``'s mean minus the best single view's (chosen on validation)."""
        return self.mean(system, metric) - self.mean(self.best_single, metric)

    def has_segment(self, segment: str) -> bool:
        return segment in (self.raw.get("segments") or {})
