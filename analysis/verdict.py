"""The finding in a few words: the headline tiles, the regime story and the verdict sentences.

What the Overview page opens with and what ``semcollab report`` writes (one definition for both).

- Tiles (test NDCG@K, 95 % bootstrap intervals): the best single view (chosen on validation), score
  fusion, the oracle (per-user selection of the better view: the headline oracle; the union pool is
  a different, looser bound, named as such where it is shown) and the control floor (the same oracle
  between most-popular and the collaborative view).
- Regime story (from a sweep table, :func:`analysis.regimes.sweep_row`): per regime, the compared
  pair's oracle gain, the control floor's gain, their difference (the *excess*, with its bootstrap
  interval, :func:`analysis.complementarity.oracle_excess`) and what score fusion realised over the
  best single view.
- Verdict: the excess is called *evidence* of complementarity only when its interval lies above 0.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .summary import RunSummary

#: (label, system in the run's summary) of the headline tiles, in order
TILES = (("best single view", None), ("score fusion", "fusion"), ("oracle (per-user selection)", "oracle_select"),
         ("control floor", "control_oracle_select"))


def tiles(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The four headline tiles: label, system, mean, lo, hi (test NDCG@K)."""
    s = RunSummary(manifest)
    out = []
    for label, system in TILES:
        system = system or s.best_single
        if not s.has(system):
            continue
        e = s.estimate(system, "ndcg")
        out.append({"label": label, "system": system, "mean": e.mean, "lo": e.lo, "hi": e.hi})
    return out


def regime_story(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per regime, in the sweep's order (all data, then sparser, then cold start): label, gain,
    control_gain, excess, lo, hi, evidence (interval above 0), fusion_gain. ``sweep``: a table as
    :func:`analysis.regimes.read_sweep` returns it (its ``x_label``, :func:`analysis.regimes.regime_label`,
    is the label)."""
    d = sweep
    lo = d.get("oracle_excess_ndcg_lo", pd.Series(np.nan, index=d.index)).astype(float)
    hi = d.get("oracle_excess_ndcg_hi", pd.Series(np.nan, index=d.index)).astype(float)
    return pd.DataFrame({
        "regime": d["regime"].to_numpy(),
        "label": d["x_label"].to_numpy(),
        "gain": d["oracle_gain_ndcg"].astype(float).to_numpy(),
        "control_gain": d["control_oracle_gain_ndcg"].astype(float).to_numpy(),
        "excess": (d["oracle_gain_ndcg"] - d["control_oracle_gain_ndcg"]).astype(float).to_numpy(),
        "lo": lo.to_numpy(), "hi": hi.to_numpy(),
        "evidence": (lo > 0).to_numpy(),
        "fusion_gain": d["fusion_gain_ndcg"].astype(float).to_numpy(),
    })


def _excess_phrase(value: float, lo: float, hi: float) -> str:
    if not np.isfinite(lo):
        return f"{value:+.3f} (no interval in this run)"
    word = "evidence of complementarity" if lo > 0 else ("below the floor" if hi < 0 else "no evidence: the interval includes 0")
    return f"{value:+.3f} [{lo:+.3f}, {hi:+.3f}], {word}"


def verdict(manifest: Mapping[str, Any], story: pd.DataFrame | None = None) -> list[str]:
    """Two or three sentences: this run's excess and fusion gain, then how the excess moves across regimes."""
    s = RunSummary(manifest)
    comp, ctrl = s.raw["complementarity"], s.raw["control"]
    ex = s.raw.get("oracle_excess_ndcg") or {}
    gain, floor = comp["oracle_select_ndcg_gain"], ctrl["oracle_select_ndcg_gain"]
    value = float(ex.get("value", gain - floor))
    out = [f"On this run, picking the better view per user adds {gain:.3f} NDCG@{s.K} over the best single view, "
           f"against {floor:.3f} for the control pair (most-popular + collaborative): excess "
           f"{_excess_phrase(value, float(ex.get('lo', np.nan)), float(ex.get('hi', np.nan)))}."]
    fg = s.gain_over_best("fusion") if s.has("fusion") else float("nan")
    out.append(f"Score fusion realises {fg:+.3f} of it over the best single view ({s.best_single}).")
    if story is None or story.empty:
        out.append("No regime sweep yet: the story (complementarity as data gets sparse or items cold) appears "
                   "once it is computed.")
        return out
    base = story.iloc[0]
    rest = story.iloc[1:]
    if len(rest) and rest["excess"].notna().any():
        top = rest.loc[rest["excess"].idxmax()]
        n_ev = int(story["evidence"].sum())
        out.append(f"Across {len(story)} regimes the excess goes from {base['excess']:+.3f} ({base['label']}) to "
                   f"{top['excess']:+.3f} at {top['label']} (fusion there {top['fusion_gain']:+.3f}); "
                   f"{n_ev} of {len(story)} regimes show evidence (interval above 0).")
    return out
