"""The one vocabulary of systems: the names stored in a run's tables, their roles and labels.

A run's manifest carries ``systems`` = {name: {role, label, short, description}} written from
:func:`manifest_systems`; the dashboard reads roles and labels from there and never infers
them from names. Every table of a run (``metrics``, ``users`` columns, ``topk``,
``differences``, ``fusion_models``) names systems with the keys of :data:`SYSTEMS`.

Roles
- ``semantic_trained`` / ``semantic_zeroshot``: the two recommenders over the frozen text vectors;
- ``collaborative``: the collaborative view (iALS, BPR or precomputed vectors);
- ``ease`` (strong reference without vectors), ``mostpop`` (the control);
- ``fusion`` (score fusion at the validation α), ``rrf`` (reciprocal rank fusion);
- ``oracle`` (per-user selection, the headline oracle), ``oracle_union`` (union pool),
  ``control_oracle`` / ``control_oracle_union`` (the same between most-popular and collaborative);
- ``best_single``, ``alignment``, ``complementarity_fusion``: the fusion-model comparison.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from .errors import RunError


@dataclass(frozen=True)
class System:
    name: str
    role: str
    label: str
    short: str
    description: str


_ALL = [
    System("semantic", "semantic_trained", "Semantic (trained)", "Sem. trained",
           "semantic view: trained linear map over frozen text vectors"),
    System("semantic_zs", "semantic_zeroshot", "Semantic (zero-shot)", "Sem. zero-shot",
           "semantic view, zero-shot: mean of the user's item text vectors, cosine"),
    System("collab", "collaborative", "Collaborative", "Collaborative", "collaborative view"),
    System("ease", "ease", "EASE", "EASE", "EASE (strong item-item reference, no vectors)"),
    System("pop", "mostpop", "Most-popular", "Most-popular", "most popular (control)"),
    System("fusion", "fusion", "Score fusion", "Fusion",
           "score fusion of the compared views at the alpha chosen on validation"),
    System("rrf", "rrf", "RRF", "RRF", "reciprocal rank fusion of the compared views (k=60)"),
    System("oracle_select", "oracle", "Oracle (per-user selection)", "Oracle (per user)",
           "per user, the better of the two compared views"),
    System("oracle_union", "oracle_union", "Union pool of hits", "Union pool",
           "every hit of the two compared lists placed first (mostly re-ordering)"),
    System("control_oracle_select", "control_oracle", "Control floor: most-popular + collaborative",
           "Control floor", "per user, the better of most-popular and the collaborative view"),
    System("control_oracle_union", "control_oracle_union", "Control: most-popular ∪ collaborative hits",
           "Control union", "union pool of most-popular and the collaborative view"),
    System("best_single", "best_single", "Best single view (validation)", "Best single",
           "the compared view with the higher validation NDCG@K"),
    System("alignment", "alignment", "Alignment baseline", "Alignment",
           "score fusion of the collaborative view with the best probe's mapped vectors"),
    System("complementarity_fusion", "complementarity_fusion", "Complementarity-aware fusion", "Gated fusion",
           "gated fusion of the compared views (weights from popularity, shared/private energy, activity)"),
]
SYSTEMS: dict[str, System] = {s.name: s for s in _ALL}
#: single systems, in the order the headline shows them
SINGLE = ("semantic", "semantic_zs", "collab", "ease", "pop")
#: the systems ranked and evaluated for every user (top-K lists stored)
RANKED = (*SINGLE, "fusion", "rrf")


def manifest_systems(collab: str, compared_semantic: str, skipped: Mapping[str, str] | None = None
                     ) -> dict[str, dict[str, Any]]:
    """``manifest["systems"]``: every system of the vocabulary with role, label and description,
    the collaborative one naming its model, and ``compared`` marking the two compared views;
    the ``skipped`` systems (name -> reason, e.g. EASE above its item limit) are left out."""
    out = {}
    for s in _ALL:
        if s.name in (skipped or {}):
            continue
        d = asdict(s)
        d.pop("name")
        if s.name == "collab":
            d["description"] = f"collaborative view ({collab})"
        d["compared"] = s.name in ("collab", compared_semantic)
        out[s.name] = d
    return out


def roles(manifest: Mapping[str, Any]) -> dict[str, str]:
    """role -> system name, from a run's manifest (RunError when the manifest has no vocabulary)."""
    systems = manifest.get("systems") or {}
    if not systems or not all(isinstance(v, Mapping) and "role" in v for v in systems.values()):
        raise RunError("the run's manifest has no system vocabulary (made before schema 3): recompute it with --force")
    return {str(v["role"]): str(name) for name, v in systems.items()}


def compared(manifest: Mapping[str, Any]) -> tuple[str, str]:
    """(semantic system, collaborative system) the run compares."""
    c = manifest.get("compared") or {}
    if not c.get("semantic") or not c.get("collaborative"):
        raise RunError("the run's manifest does not name its compared systems: recompute it with --force")
    return str(c["semantic"]), str(c["collaborative"])


def label(manifest: Mapping[str, Any], name: str, short: bool = False) -> str:
    """The label of system ``name`` as the run records it (the name itself when unknown)."""
    d = (manifest.get("systems") or {}).get(name)
    if not isinstance(d, Mapping):
        return name
    return str(d.get("short" if short else "label", name))
