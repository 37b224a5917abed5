"""What is masked before a user's top-K: their own history plus item columns masked for everyone.

A split's masks have two parts of very different shape. Each user's known history (training,
validation, removed pairs) is sparse, a CSR row per user. Item columns masked for *every* user
(the held-out cold items at validation time, the items outside a test segment) would cost
``n_users × n_columns`` entries as CSR -- 16 bytes × 100k users × 20k items = 32 GB for the
cold segment of a 100k-item catalogue -- so :class:`Seen` keeps them as one item index array
and ranking applies them per block in one column fill.

Every function that masks accepts a :class:`Seen`, a CSR matrix (history only) or ``None``
(nothing masked); :func:`as_seen` turns the latter two into the former.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import ConfigError


@dataclass(frozen=True)
class Seen:
    """``history``: CSR users × items, non-zero = seen by that user; ``columns``: sorted item
    indices masked for every user. ``(u, i)`` is masked iff ``history[u, i] != 0`` or ``i`` is in
    ``columns``."""

    history: sp.csr_matrix
    columns: np.ndarray

    def __post_init__(self) -> None:
        cols = np.unique(np.asarray(self.columns, dtype=np.int64))
        if len(cols) and (cols[0] < 0 or cols[-1] >= self.history.shape[1]):
            raise ConfigError(f"masked item columns out of range 0..{self.history.shape[1] - 1}")
        object.__setattr__(self, "columns", cols)

    @property
    def shape(self) -> tuple[int, int]:
        return self.history.shape

    def rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position within ``rows``, item) of every non-zero history entry of ``rows`` (no columns)."""
        sub = self.history[np.asarray(rows, dtype=np.int64)]
        r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
        keep = sub.data != 0
        return r[keep], sub.indices[keep]

    def dense(self, rows: np.ndarray) -> np.ndarray:
        """bool ``(len(rows), n_items)``: True where masked."""
        out = np.zeros((len(rows), self.shape[1]), bool)
        r, c = self.rows(rows)
        out[r, c] = True
        out[:, self.columns] = True
        return out

    def select_items(self, items: np.ndarray) -> "Seen":
        """The mask restricted (and renumbered) to the item subset ``items`` (positions in order)."""
        items = np.asarray(items, dtype=np.int64)
        pos = np.full(self.shape[1], -1, np.int64)
        pos[items] = np.arange(len(items))
        cols = pos[self.columns]
        return Seen(sp.csr_matrix(self.history[:, items]), cols[cols >= 0])

    def to_csr(self) -> sp.csr_matrix:
        """Every masked entry as one CSR (small problems and tests only: ``n_users × len(columns)``)."""
        n_u, n_i = self.shape
        cols = sp.csr_matrix((np.ones(n_u * len(self.columns), np.float32), np.tile(self.columns, n_u),
                              np.arange(n_u + 1, dtype=np.int64) * len(self.columns)), shape=(n_u, n_i))
        out = sp.csr_matrix(self.history + cols, dtype=np.float32)
        out.data[:] = 1.0
        return out


def as_seen(seen: "Seen | sp.spmatrix | None", n_items: int | None = None) -> Seen | None:
    """``seen`` as a :class:`Seen` (a sparse matrix is a history without columns); checks the
    number of items against ``n_items`` when given."""
    if seen is None:
        return None
    if not isinstance(seen, Seen):
        seen = Seen(sp.csr_matrix(seen), np.zeros(0, np.int64))
    if n_items is not None and seen.shape[1] != n_items:
        raise ConfigError(f"seen matrix has {seen.shape[1]} items but scores have {n_items} columns")
    return seen
