"""Train / validation / test splits and data regimes (sparsity, item cold-start).

All matrices are binary CSR ``users x items`` (float32). Protocol (DIAGNOSTICS.md):
per-user random 80/10/10 by default, temporal leave-one-out as an option. Regimes are
applied to the *training* part only, so validation and test are identical across a
sparsity sweep, which is what makes the runs of a sweep comparable.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .data import Indexed
from .errors import ConfigError, DataError


@dataclass
class Split:
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    #: items with no training interaction at all: the collaborative view cannot score them
    cold_items: np.ndarray
    regime: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return self.train.shape[0]

    @property
    def n_items(self) -> int:
        return self.train.shape[1]

    def seen_for(self, part: str) -> sp.csr_matrix:
        """Items to mask before top-K when evaluating on ``part``.

        Validation masks training items; test masks training and validation items
        (both are the user's known history at test time, as in RecBole).
        """
        if part == "valid":
            return self.train
        if part == "test":
            return (self.train + self.valid).tocsr()
        raise ValueError(f"unknown part {part!r}")

    def target(self, part: str) -> sp.csr_matrix:
        return {"valid": self.valid, "test": self.test}[part]


def _csr(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def split(
    data: Indexed,
    method: str = "random",
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    keep_fraction: float = 1.0,
    cold_item_share: float = 0.0,
) -> Split:
    """Split interactions, then apply the regime (training-side only).

    - ``random``: per user, a seeded shuffle; ``round(n*valid)`` and ``round(n*test)``
      interactions (at least one each when the user has >= 3) go to valid / test.
    - ``loo``: temporal leave-one-out: the latest interaction is test, the one before valid.
    - ``keep_fraction``: keep a seeded fraction of each user's training interactions (>= 1).
    - ``cold_item_share``: a seeded share of items (drawn among items with training
      interactions) loses all its training interactions; their valid/test pairs remain.
    """
    if not 0 < keep_fraction <= 1:
        raise ConfigError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    if not 0 <= cold_item_share < 1:
        raise ConfigError(f"cold_item_share must be in [0, 1), got {cold_item_share}")
    if abs(sum(ratios) - 1) > 1e-6 or min(ratios) < 0:
        raise ConfigError(f"split ratios must be non-negative and sum to 1, got {ratios}")
    rng = np.random.default_rng(seed)
    n_u, n_i = data.n_users, data.n_items
    order = np.lexsort((data.timestamps if method == "loo" else rng.random(len(data.users)), data.users))
    users, items = data.users[order], data.items[order]
    starts = np.searchsorted(users, np.arange(n_u + 1))
    counts = np.diff(starts)
    if (counts == 0).any():
        raise DataError(f"user index {int(np.argmax(counts == 0))} has no interactions")
    pos = np.arange(len(users)) - starts[users]  # position within the user's ordered list
    n = counts[users]
    if method == "random":
        n_test = np.where(n >= 3, np.maximum(1, np.rint(n * ratios[2])), 0)
        n_valid = np.where(n >= 3, np.maximum(1, np.rint(n * ratios[1])), 0)
        part = np.where(pos < n - n_test - n_valid, 0, np.where(pos < n - n_test, 1, 2))
    elif method == "loo":
        part = np.where(n >= 3, np.where(pos == n - 1, 2, np.where(pos == n - 2, 1, 0)), 0)
    else:
        raise ConfigError(f"unknown split method {method!r}: use 'random' or 'loo'")

    tr = part == 0
    tr_users, tr_items = users[tr], items[tr]
    if keep_fraction < 1:
        r = rng.random(len(tr_users))
        # rank of each training interaction within its user by a random key
        o = np.lexsort((r, tr_users))
        ranks = np.empty(len(o), np.int64)
        st = np.searchsorted(tr_users[o], np.arange(n_u + 1))
        ranks[o] = np.arange(len(o)) - st[tr_users[o]]
        n_tr = np.bincount(tr_users, minlength=n_u)
        keep_n = np.maximum(1, np.rint(n_tr * keep_fraction)).astype(np.int64)
        keep = ranks < keep_n[tr_users]
        tr_users, tr_items = tr_users[keep], tr_items[keep]
    cold = np.zeros(n_i, bool)
    if cold_item_share > 0:
        warm_candidates = np.unique(tr_items)
        n_cold = int(round(cold_item_share * len(warm_candidates)))
        chosen = rng.choice(warm_candidates, size=n_cold, replace=False)
        cold[chosen] = True
        keep = ~cold[tr_items]
        tr_users, tr_items = tr_users[keep], tr_items[keep]
    train = _csr(tr_users, tr_items, (n_u, n_i))
    no_train = np.asarray(train.sum(axis=0)).ravel() == 0
    cold |= no_train
    return Split(
        train=train,
        valid=_csr(users[part == 1], items[part == 1], (n_u, n_i)),
        test=_csr(users[part == 2], items[part == 2], (n_u, n_i)),
        cold_items=cold,
        regime={
            "split": method,
            "ratios": list(ratios),
            "seed": seed,
            "keep_fraction": keep_fraction,
            "cold_item_share": cold_item_share,
            "n_cold_items": int(cold.sum()),
        },
    )
