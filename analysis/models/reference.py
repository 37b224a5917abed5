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
#: above this many items a run skips EASE (:func:`ease_skip_reason`): each ridge weight of the grid is
#: a dense float64 inversion, 2 n^3 flops. Measured on the 2-core box (numpy / OpenBLAS, quiet): 3,706
#: items, the 8-weight grid 23 s in all; 10,000 items, 54 s per weight (7+ min for the grid) and 4.1 GB
#: peak; 20,000 items would be 8x that time with 3.2 GB per matrix copy, 100k items cannot be held at
#: all. At 8,000 items the grid costs about 3.5 min and 2.6 GB. One eigendecomposition reused across
#: the grid does not help here: ``eigh`` took over 10x one inversion at 3,706 items.
EASE_DEFAULT_MAX_ITEMS = 8_000


def ease_skip_reason(n_items: int, max_items: int = EASE_DEFAULT_MAX_ITEMS, n_lams: int | None = None) -> str | None:
    """Why a run should skip EASE for a catalogue of ``n_items`` (None: it fits). EASE's cost is a dense
    ``n_items x n_items`` inverse per ridge weight (``n_lams`` of them in the tuning grid, if known),
    whatever the number of users; above ``max_items`` (at most :data:`EASE_MAX_ITEMS`) it is skipped."""
    if max_items < 1:
        raise ConfigError(f"max_items must be >= 1, got {max_items}")
    limit = min(int(max_items), EASE_MAX_ITEMS)
    if n_items <= limit:
        return None
    gib = n_items**2 * 8 / 2**30
    grid = f" for each of the {n_lams} ridge weights of its grid" if n_lams else " for each ridge weight"
    return (f"EASE skipped: {n_items:,} items is above its limit of {limit:,}; it needs a dense {n_items:,} x "
            f"{n_items:,} item-item inverse ({gib:.1f} GiB per float64 copy, {2 * n_items**3:.1e} flops){grid}")


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
