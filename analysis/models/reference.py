"""Reference scorers: EASE (a strong closed-form item-item model) and most-popular.

They anchor the comparison: EASE says how good a collaborative model can be on this
split without any tuning budget beyond one ridge weight, and MostPop is the *control
floor* for oracle bounds (DIAGNOSTICS.md: the oracle between the collaborative view and
a most-popular recommender is what two noisy views give without complementarity).

Scorable items differ on purpose:
- EASE learns item-item weights from training co-occurrences; an item with no training
  interaction gets an all-zero column (score 0 for every user), which would pose as a
  prediction, so such items are unscorable (-inf).
- MostPop predicts "popularity in training": for a cold item that is 0, a genuine (if
  pessimistic) prediction of a popularity model, so every item is scorable and cold
  items simply rank last (ties broken by item index, as everywhere in the engine).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError

#: EASE inverts a dense items x items matrix; above this it needs too much memory
EASE_MAX_ITEMS = 30_000


def gram(train: sp.csr_matrix) -> np.ndarray:
    """Dense ``X^T X`` (float64) of a binary training matrix; reusable across ``lam`` values."""
    x = sp.csr_matrix(train, dtype=np.float64)
    return np.asarray((x.T @ x).todense())


class EASE:
    """EASE (Steck, WWW 2019): ``B = I - P / diag(P)``, ``P = (X^T X + lam I)^-1``; score = ``X_u B``.

    ``B`` has a zero diagonal by construction. Items without training interactions are
    unscorable (-inf). ``G`` may pass a precomputed :func:`gram` to tune ``lam`` cheaply.
    """

    def __init__(self, train: sp.csr_matrix, lam: float = 250.0, G: np.ndarray | None = None, name: str = "ease"):
        n = train.shape[1]
        if n > EASE_MAX_ITEMS:
            raise ConfigError(
                f"EASE needs a dense {n} x {n} matrix; catalogues above {EASE_MAX_ITEMS} items are not supported"
            )
        if not lam > 0:
            raise ConfigError(f"EASE lam must be > 0, got {lam}")
        self.name = name
        self.train = sp.csr_matrix(train, dtype=np.float32)
        G = gram(train) if G is None else np.array(G, dtype=np.float64, copy=True)
        G[np.diag_indices(n)] += lam
        P = np.linalg.inv(G)
        B = -P / np.diag(P)[None, :]
        B[np.diag_indices(n)] = 0.0
        self.B = B.astype(np.float32)
        self.scorable = np.asarray(self.train.sum(axis=0)).ravel() > 0
        self.params = {"lam": float(lam)}

    def score(self, users: np.ndarray) -> np.ndarray:
        s = np.asarray(self.train[np.asarray(users)] @ self.B, dtype=np.float32)
        s[:, ~self.scorable] = -np.inf
        return s


class MostPop:
    """Training popularity, identical for every user; every item is scorable (cold = 0)."""

    def __init__(self, train: sp.csr_matrix, name: str = "mostpop"):
        self.name = name
        self.popularity = np.asarray(train.sum(axis=0), dtype=np.float32).ravel()
        self.scorable = np.ones(train.shape[1], dtype=bool)
        self.params: dict = {}

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(users), len(self.popularity))).copy()
