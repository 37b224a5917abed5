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
    """score(u, i) = <user_vecs[u], item_vecs[i]>; unscorable items get -inf."""

    name: str
    user_vecs: np.ndarray
    item_vecs: np.ndarray
    scorable: np.ndarray
    params: dict = field(default_factory=dict)

    def score(self, users: np.ndarray) -> np.ndarray:
        s = np.asarray(self.user_vecs[users] @ self.item_vecs.T, dtype=np.float32)
        if not self.scorable.all():
            s[:, ~self.scorable] = -np.inf
        return s
