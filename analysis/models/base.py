"""The recommender interface every view and reference scorer implements.

A recommender scores the whole catalogue for a block of users (full ranking, as
DIAGNOSTICS.md requires). ``scorable`` marks the items a model can score at all: a
collaborative model cannot score items with no training interaction, and those items
must never be ranked by a meaningless zero vector.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Recommender(Protocol):
    name: str
    #: bool (n_items,): items this model can score; others get -inf from ``score``
    scorable: np.ndarray

    def score(self, users: np.ndarray) -> np.ndarray:
        """float32 ``(len(users), n_items)`` scores; unscorable items are ``-inf``."""
        ...


@dataclass
class EmbeddingRecommender:
    """score(u, i) = <user_vecs[u], item_vecs[i]>; unscorable items get -inf.

    Scores come from one torch kernel (:class:`analysis.backend.EmbeddingScorer`), the one
    :func:`analysis.ranking.rank` fuses with its top-K selection, so ``score`` and ``rank``
    agree to the bit whatever the block of users.
    """

    name: str
    user_vecs: np.ndarray
    item_vecs: np.ndarray
    scorable: np.ndarray
    params: dict = field(default_factory=dict)

    def scorer(self):
        """The scoring kernel over this model's vectors (built per call: vectors may change)."""
        from ..backend import EmbeddingScorer

        return EmbeddingScorer(self.user_vecs, self.item_vecs)

    def score(self, users: np.ndarray) -> np.ndarray:
        s = self.scorer().scores(np.asarray(users))
        if not self.scorable.all():
            s[:, ~self.scorable] = -np.inf
        return s
