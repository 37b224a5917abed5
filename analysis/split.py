"""Train / validation / test splits and data regimes (sparsity, item cold-start).

All matrices are binary CSR ``users x items`` (float32). Protocol (DIAGNOSTICS.md):
per-user random 80/10/10 by default, temporal leave-one-out as an option. Regimes:

- sparsity (``keep_fraction``): a seeded fraction of each user's *training* pairs is kept
  (at least one). The removed pairs are real consumptions the model was not shown: they are
  kept in :attr:`Split.removed` and masked at evaluation like other known history, never
  scored as misses. Validation and test are identical across a sparsity sweep.
- item cold-start (``cold_item_share``), the standard protocol: a seeded share of the items
  with interactions is held out entirely; **all** their pairs (train, validation and test
  parts) move to test. Training and validation never see them, and at validation time they
  are not candidates (:meth:`Split.seen_for` masks them as columns), so nothing tuned on validation has
  looked at the items the test then evaluates.

Test metrics are reported per *segment* (:data:`SEGMENTS`): ``all`` (every test pair, every
item a candidate), ``warm`` (test pairs on warm items, candidates = warm items) and ``cold``
(test pairs on cold items, candidates = cold items). Cold = :attr:`Split.cold_items`, every
item without a training interaction (the held-out ones and any other), which is what the
collaborative view cannot score.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from .data import Indexed
from .errors import ConfigError, DataError
from .seen import Seen

PARTS = ("valid", "test")
SEGMENTS = ("all", "warm", "cold")


def _check_part(part: str, segment: str = "all") -> None:
    if part not in PARTS:
        raise ConfigError(f"unknown split part {part!r}: use one of {list(PARTS)}")
    if segment not in SEGMENTS:
        raise ConfigError(f"unknown item segment {segment!r}: use one of {list(SEGMENTS)}")
    if part == "valid" and segment != "all":
        raise ConfigError("validation has no cold items: item segments apply to the test part only")


def _union(*ms: sp.csr_matrix) -> sp.csr_matrix:
    out = ms[0]
    for m in ms[1:]:
        out = out + m
    out = sp.csr_matrix(out, dtype=np.float32)
    out.data[:] = 1.0
    return out


@dataclass
class Split:
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    #: items with no training interaction at all: the collaborative view cannot score them
    cold_items: np.ndarray
    regime: dict = field(default_factory=dict)
    #: items held out entirely by the cold-start regime (a subset of ``cold_items``)
    held_out_items: np.ndarray | None = None
    #: training pairs a sparsity regime removed: known history, masked at evaluation
    removed: sp.csr_matrix | None = None

    def __post_init__(self) -> None:
        if self.held_out_items is None:
            self.held_out_items = np.zeros(self.n_items, bool)
        if self.removed is None:
            self.removed = sp.csr_matrix(self.train.shape, dtype=np.float32)

    @property
    def n_users(self) -> int:
        return self.train.shape[0]

    @property
    def n_items(self) -> int:
        return self.train.shape[1]

    def segment_items(self, segment: str) -> np.ndarray:
        """Boolean item mask of a segment: all items, warm items or cold items."""
        _check_part("test", segment)
        if segment == "all":
            return np.ones(self.n_items, bool)
        return self.cold_items.copy() if segment == "cold" else ~self.cold_items

    @cached_property
    def _history(self) -> dict[str, sp.csr_matrix]:
        h = {"valid": _union(self.train, self.removed), "test": _union(self.train, self.valid, self.removed)}
        for m in h.values():
            for a in (m.data, m.indices, m.indptr):
                a.flags.writeable = False  # shared by every caller: read-only
        return h

    def seen_for(self, part: str, segment: str = "all") -> Seen:
        """Items to mask before top-K when evaluating on ``part`` (and item ``segment``).

        Validation masks the training items, the pairs a sparsity regime removed, and the
        held-out cold items (not candidates at validation time). Test masks training,
        validation and removed pairs (the user's known history, as in RecBole); the ``warm``
        and ``cold`` segments also mask every item outside the segment. Item columns masked
        for every user are kept as columns (:class:`analysis.seen.Seen`), never as CSR entries.
        """
        _check_part(part, segment)
        cols = np.zeros(self.n_items, bool)
        if part == "valid":
            cols |= self.held_out_items
        if segment != "all":
            cols |= ~self.segment_items(segment)
        return Seen(self._history[part], np.flatnonzero(cols))

    def target(self, part: str, segment: str = "all") -> sp.csr_matrix:
        """Relevant pairs of ``part``; for a test segment, only its pairs on the segment's items."""
        _check_part(part, segment)
        t = self.valid if part == "valid" else self.test
        if segment == "all":
            return t
        keep = sp.diags(self.segment_items(segment).astype(np.float32))
        return sp.csr_matrix(t @ keep)

    def cold_test_share(self) -> dict:
        """How many test pairs fall on cold items (recorded in the run's regime)."""
        n_cold = int(self.target("test", "cold").nnz)
        return {"n_test_pairs": int(self.test.nnz), "n_test_pairs_cold": n_cold,
                "cold_test_share": n_cold / self.test.nnz if self.test.nnz else float("nan")}


def pop_buckets(pop: np.ndarray, cold: np.ndarray) -> np.ndarray:
    """head = top 20 % of warm items by training popularity, tail = bottom 50 %, torso between; cold apart."""
    out = np.full(len(pop), "cold", dtype=object)
    warm = np.flatnonzero(~cold)
    order = warm[np.argsort(-pop[warm], kind="stable")]
    n = len(order)
    out[order[: int(np.ceil(0.2 * n))]] = "head"
    out[order[int(np.ceil(0.2 * n)) : int(np.ceil(0.5 * n))]] = "torso"
    out[order[int(np.ceil(0.5 * n)) :]] = "tail"
    return out


def activity_buckets(n_train: np.ndarray) -> np.ndarray:
    """Users split into terciles of training activity: light / medium / heavy."""
    q1, q2 = np.quantile(n_train, [1 / 3, 2 / 3])
    return np.where(n_train <= q1, "light", np.where(n_train <= q2, "medium", "heavy")).astype(object)


def _csr(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    m.eliminate_zeros()
    return m


def _parts(n: np.ndarray, pos: np.ndarray, method: str, ratios) -> np.ndarray:
    """Per interaction: 0 = train, 1 = valid, 2 = test (users ordered by shuffle or time)."""
    if method == "random":
        n_test = np.where(n >= 3, np.maximum(1, np.rint(n * ratios[2])), 0)
        n_valid = np.where(n >= 3, np.maximum(1, np.rint(n * ratios[1])), 0)
        return np.where(pos < n - n_test - n_valid, 0, np.where(pos < n - n_test, 1, 2))
    if method == "loo":
        return np.where(n >= 3, np.where(pos == n - 1, 2, np.where(pos == n - 2, 1, 0)), 0)
    raise ConfigError(f"unknown split method {method!r}: use 'random' or 'loo'")


def _keep_mask(tr_users: np.ndarray, n_u: int, keep_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Keep a seeded ``keep_fraction`` of each user's training pairs (at least one)."""
    r = rng.random(len(tr_users))
    o = np.lexsort((r, tr_users))  # rank of each pair within its user by a random key
    ranks = np.empty(len(o), np.int64)
    st = np.searchsorted(tr_users[o], np.arange(n_u + 1))
    ranks[o] = np.arange(len(o)) - st[tr_users[o]]
    n_tr = np.bincount(tr_users, minlength=n_u)
    keep_n = np.maximum(1, np.rint(n_tr * keep_fraction)).astype(np.int64)
    return ranks < keep_n[tr_users]


def _check_args(keep_fraction: float, cold_item_share: float, ratios) -> None:
    if not 0 < keep_fraction <= 1:
        raise ConfigError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    if not 0 <= cold_item_share < 1:
        raise ConfigError(f"cold_item_share must be in [0, 1), got {cold_item_share}")
    if abs(sum(ratios) - 1) > 1e-6 or min(ratios) < 0:
        raise ConfigError(f"split ratios must be non-negative and sum to 1, got {ratios}")


def split(
    data: Indexed,
    method: str = "random",
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    keep_fraction: float = 1.0,
    cold_item_share: float = 0.0,
) -> Split:
    """Split interactions, then apply the regime.

    - ``random``: per user, a seeded shuffle; ``round(n*valid)`` and ``round(n*test)``
      interactions (at least one each when the user has >= 3) go to valid / test.
    - ``loo``: temporal leave-one-out: the latest interaction is test, the one before valid.
    - ``cold_item_share``: ``round(share × #items with interactions)`` items, drawn with the
      seed, are held out: all their pairs move to test (standard item cold-start protocol).
    - ``keep_fraction``: keep a seeded fraction of each user's remaining training pairs (>= 1);
      the others go to :attr:`Split.removed` (masked at evaluation, never relevant).
    """
    _check_args(keep_fraction, cold_item_share, ratios)
    rng = np.random.default_rng(seed)
    n_u, n_i = data.n_users, data.n_items
    order = np.lexsort((data.timestamps if method == "loo" else rng.random(len(data.users)), data.users))
    users, items = data.users[order], data.items[order]
    starts = np.searchsorted(users, np.arange(n_u + 1))
    counts = np.diff(starts)
    if (counts == 0).any():
        raise DataError(f"user index {int(np.argmax(counts == 0))} has no interactions")
    part = _parts(counts[users], np.arange(len(users)) - starts[users], method, ratios)
    held_out = np.zeros(n_i, bool)
    if cold_item_share > 0:
        candidates = np.unique(items)
        held_out[rng.choice(candidates, size=int(round(cold_item_share * len(candidates))), replace=False)] = True
        part = np.where(held_out[items], 2, part)
    tr = np.flatnonzero(part == 0)
    removed = np.zeros(0, np.int64)
    if keep_fraction < 1:
        keep = _keep_mask(users[tr], n_u, keep_fraction, rng)
        tr, removed = tr[keep], tr[~keep]
    train = _csr(users[tr], items[tr], (n_u, n_i))
    cold = held_out | (np.asarray(train.sum(axis=0)).ravel() == 0)
    s = Split(train=train, valid=_csr(users[part == 1], items[part == 1], (n_u, n_i)),
              test=_csr(users[part == 2], items[part == 2], (n_u, n_i)), cold_items=cold,
              held_out_items=held_out, removed=_csr(users[removed], items[removed], (n_u, n_i)))
    s.regime = {"split": method, "ratios": list(ratios), "seed": seed, "keep_fraction": keep_fraction,
                "cold_item_share": cold_item_share, "n_cold_items": int(cold.sum()),
                "n_held_out_items": int(held_out.sum()), "n_removed_train_pairs": int(len(removed)),
                **s.cold_test_share()}
    return s


def sample_users(users: np.ndarray, max_users: int | None, seed: int = 0, stream: int = 0) -> np.ndarray:
    """``users`` unchanged when there are at most ``max_users`` (or ``max_users`` is 0 / None), else a
    seeded uniform sample of ``max_users`` of them without replacement, sorted. ``stream`` separates
    independent draws made with the same seed."""
    users = np.asarray(users)
    if max_users is not None and max_users < 0:
        raise ConfigError(f"the user sample size must be >= 0 (0 = every user), got {max_users}")
    if not max_users or len(users) <= max_users:
        return users
    rng = np.random.default_rng([int(seed), 0x7A1D, int(stream)])  # own stream: independent of the split's draws
    return np.sort(rng.choice(users, size=int(max_users), replace=False))


def evaluation_users(n_users: int, max_users: int, seed: int = 0) -> np.ndarray:
    """The users a run evaluates (sorted indices): all of them when ``n_users <= max_users`` (or
    ``max_users == 0``), else a seeded uniform sample of ``max_users`` (:func:`sample_users`), so
    every metric, interval and per-user table describes that sample (training uses every user)."""
    if max_users < 0:
        raise ConfigError(f"max_users must be >= 0, got {max_users}")
    return sample_users(np.arange(n_users), max_users, seed, stream=1)


def check_evaluable(s: Split, min_users: int = 20, min_items: int = 44, where: str = "") -> None:
    """Refuse, right after the split, data too small to evaluate; say exactly what is missing.

    Needs at least ``min_users`` users with validation pairs (tuning, α) and as many with
    test pairs (metrics and their bootstrap intervals; fewer users also leave the
    collaborative view with too low a rank for the structure diagnostics), and at least
    ``min_items`` items with training pairs (the views' item geometry, the held-out CCA
    and the alignment probes). Raises :class:`DataError`; ``where`` (the data's source)
    prefixes the message.
    """
    n_valid = int((np.diff(s.valid.indptr) > 0).sum())
    n_test = int((np.diff(s.test.indptr) > 0).sum())
    n_warm = int((~s.cold_items).sum())
    problems = []
    if min(n_valid, n_test) < min_users:
        n_short = int((sum(np.diff(m.indptr) for m in (s.train, s.valid, s.test, s.removed)) < 3).sum())
        why = (f" (a user needs 3 or more interactions to get both; {n_short} of the {s.n_users} users have fewer)"
               if n_short else "")
        problems.append(f"only {n_valid} of {s.n_users} users have validation pairs and {n_test} have test pairs, "
                        f"at least {min_users} of each are needed{why}")
    if n_warm < min_items:
        problems.append(f"only {n_warm} of {s.n_items} items have training pairs, at least {min_items} are needed "
                        "(item neighbourhoods, held-out CCA and alignment probes)")
    if problems:
        raise DataError(f"{where + ': ' if where else ''}too small to evaluate after the split: " + "; ".join(problems))
