"""The semantic view's recommenders over *frozen* item text vectors (DIAGNOSTICS.md).

- :class:`ZeroShotSemantic`: a user is the normalised mean of the unit-normalised
  vectors of their training items; score = cosine. No training at all. Users with no
  training history get a zero profile (score 0 everywhere, so their ranking carries no
  information, which is the honest answer).
- :func:`train_semantic`: how LLM-enhanced recommenders actually use text vectors. A
  learned linear map ``E = X W + c`` (d -> dim) of the frozen vectors (globally
  rescaled to mean row norm 1), a content bias
  ``beta = X v`` (text-predicted popularity), and users from their mapped history
  ``h_u = mean_{i in input(u)} E_i``, optionally followed by a second linear map
  ``h_u A``. Score ``h_u . E_i + beta_i``. Trained with a multinomial likelihood
  (softmax over the catalogue, Mult-DAE style) with denoising: each epoch a random
  ``holdout`` share of every user's training items becomes the target and only the rest
  is the input, and input items are masked out of the softmax, so the model must predict
  unseen items rather than copy its input. Catalogues above ``full_softmax_max_items``
  (10,000 by default, :data:`FULL_SOFTMAX_MAX_ITEMS`) use a sampled softmax (the batch's
  targets plus uniform negatives, shared by the batch). An epoch is one pass over every user
  with training items, or over a fresh random draw of ``epoch_users`` of them when there are more (the model has no per-user
  parameters, so at 1M users one pass is thousands of steps more than it needs; the cap keeps
  an epoch's cost independent of the number of users and is recorded). Early stopping on
  validation NDCG@20; final user vectors come from the full training history.

Every item, cold items included, is scorable: the item side depends on the text only.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, VectorError
from ..split import Split
from .base import EmbeddingRecommender
from .validation import resolve_device, torch_threads, train_with_early_stopping


#: catalogues above this many items train with the sampled softmax. Measured on the synthetic generator at
#: 30k users x 20k items (one configuration, dim 64, same seed): full softmax validation NDCG@20 0.0481 in
#: 844 s, sampled (4,096 negatives) 0.0470 in 42 s, both on one CPU thread shared with another job
FULL_SOFTMAX_MAX_ITEMS = 10_000


def unit_rows(X: np.ndarray, what: str = "item vectors") -> np.ndarray:
    """Row-normalise ``X`` (float32); NaN/inf or zero-norm rows are a :class:`VectorError`."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise VectorError(f"{what} must be a 2-D matrix, got shape {X.shape}")
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise VectorError(f"{what}: row(s) {np.flatnonzero(bad)[:5].tolist()} contain NaN or inf")
    norms = np.linalg.norm(X, axis=1)
    if (norms == 0).any():
        raise VectorError(f"{what}: row(s) {np.flatnonzero(norms == 0)[:5].tolist()} have zero norm")
    return X / norms[:, None]


def _check_items(X: np.ndarray, n_items: int) -> None:
    if X.shape[0] != n_items:
        raise VectorError(f"item vectors have {X.shape[0]} rows but the interaction matrix has {n_items} items")


class ZeroShotSemantic(EmbeddingRecommender):
    """Cosine between each item and the normalised mean of the user's training item vectors."""

    def __init__(self, X: np.ndarray, train: sp.csr_matrix, name: str = "semantic-zeroshot"):
        Xn = unit_rows(X)
        _check_items(Xn, train.shape[1])
        prof = np.asarray(sp.csr_matrix(train, dtype=np.float32) @ Xn, dtype=np.float32)
        norms = np.linalg.norm(prof, axis=1, keepdims=True)
        U = np.divide(prof, norms, out=np.zeros_like(prof), where=norms > 0)
        super().__init__(
            name=name,
            user_vecs=U,
            item_vecs=Xn,
            scorable=np.ones(train.shape[1], dtype=bool),
            params={"model": "semantic_zeroshot", "n_users_without_history": int((norms.ravel() == 0).sum())},
        )


class _LinearMap:
    """The trained semantic recommender's parameters: E = X W + c (item embeddings), content bias
    β = X v, users h_u = mean of their items' E (times A when ``user_map``)."""

    def __init__(self, Xn: np.ndarray, dim: int, user_map: bool, seed: int, dev):
        import torch

        d = Xn.shape[1]
        gen = torch.Generator().manual_seed(int(seed))
        self.dev, self.torch = dev, torch
        self.Xt = torch.from_numpy(Xn).to(dev)
        self.W = torch.nn.Parameter((torch.randn(d, dim, generator=gen) / np.sqrt(d)).to(dev))
        self.c = torch.nn.Parameter(torch.zeros(dim, device=dev))
        self.v = torch.nn.Parameter(torch.zeros(d, device=dev))
        self.A = torch.nn.Parameter(torch.eye(dim, device=dev)) if user_map else None
        self.params = [self.W, self.c, self.v] + ([self.A] if user_map else [])

    def t(self, x: np.ndarray):
        return self.torch.from_numpy(x).to(self.dev)

    def user_vecs(self, E, idx: np.ndarray, offsets: np.ndarray):
        h = self.torch.nn.functional.embedding_bag(self.t(idx), E, self.t(offsets), mode="mean")
        return h @ self.A if self.A is not None else h

    def snapshot(self, train: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """(user vectors [h_u, 1], item vectors [E_i, β_i]) as float32 arrays."""
        torch = self.torch
        with torch.no_grad():
            E = self.Xt @ self.W + self.c
            H = self.user_vecs(E, train.indices.astype(np.int64), train.indptr[:-1].astype(np.int64))
            U = torch.cat([H, torch.ones(train.shape[0], 1, device=self.dev)], 1).cpu().numpy()
            V = torch.cat([E, (self.Xt @ self.v)[:, None]], 1).cpu().numpy()
        return np.ascontiguousarray(U, np.float32), np.ascontiguousarray(V, np.float32)

    def loss(self, b: dict[str, np.ndarray], n_items: int, full: bool, n_negatives: int, rng: np.random.Generator):
        """Softmax loss of the held-out targets given the inputs of one batch (full or sampled)."""
        torch = self.torch
        if full:
            E = self.Xt @ self.W + self.c
            h = self.user_vecs(E, b["idx_in"], b["off_in"])
            logits = h @ E.T + (self.Xt @ self.v)[None, :]
            mask = torch.zeros_like(logits)
            mask[self.t(b["row_in"]), self.t(b["idx_in"])] = -torch.inf
            logp = torch.log_softmax(logits + mask, dim=1)
            return -logp[self.t(b["row_t"]), self.t(b["idx_t"])].mean()
        cand = np.unique(np.concatenate([b["idx_t"], rng.integers(0, n_items, n_negatives)]))
        used = np.unique(np.concatenate([cand, b["idx_in"]]))
        Xu = self.Xt[self.t(used)]
        Eu = Xu @ self.W + self.c
        h = self.user_vecs(Eu, np.searchsorted(used, b["idx_in"]), b["off_in"])
        ci = self.t(np.searchsorted(used, cand))
        logits = h @ Eu[ci].T + (Xu[ci] @ self.v)[None, :]
        mask = torch.zeros_like(logits)
        in_c = np.isin(b["idx_in"], cand)
        mask[self.t(b["row_in"][in_c]), self.t(np.searchsorted(cand, b["idx_in"][in_c]))] = -torch.inf
        logp = torch.log_softmax(logits + mask, dim=1)
        return -logp[self.t(b["row_t"]), self.t(np.searchsorted(cand, b["idx_t"]))].mean()


def _batch(train: sp.csr_matrix, bu: np.ndarray, holdout: float, rng: np.random.Generator) -> dict | None:
    """Each user's items split at random into inputs and held-out targets (share ``holdout``).

    Only users with a held-out target this step are kept (a row with no target adds nothing to
    the loss, and a fully masked row would give NaN gradients); None when no user has one.
    """
    sub = train[bu]
    row = np.repeat(np.arange(len(bu)), np.diff(sub.indptr))
    idx = sub.indices.astype(np.int64)
    tgt = rng.random(len(idx)) < holdout
    has_t = np.bincount(row[tgt], minlength=len(bu)) > 0
    if not has_t.any():
        return None
    keep = has_t[row]
    row, idx, tgt = (np.cumsum(has_t) - 1)[row[keep]], idx[keep], tgt[keep]
    row_in = row[~tgt]
    n_b = int(has_t.sum())
    off_in = np.concatenate([[0], np.cumsum(np.bincount(row_in, minlength=n_b))[:-1]]).astype(np.int64)
    return {"idx_in": idx[~tgt], "row_in": row_in, "off_in": off_in, "idx_t": idx[tgt], "row_t": row[tgt]}


def _check_semantic_args(dim, lr, epochs, batch_size, eval_every, holdout) -> None:
    for name_, v in {"dim": dim, "lr": lr, "epochs": epochs, "batch_size": batch_size, "eval_every": eval_every}.items():
        if not v > 0:
            raise ConfigError(f"{name_} must be > 0, got {v}")
    if not 0 < holdout < 1:
        raise ConfigError(f"holdout must be in (0, 1), got {holdout}")


def train_semantic(
    X: np.ndarray,
    split: Split,
    dim: int = 64,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    epochs: int = 60,
    patience: int = 3,
    seed: int = 0,
    device: str = "auto",
    holdout: float = 0.3,
    user_map: bool = True,
    batch_size: int = 256,
    eval_every: int = 2,
    full_softmax_max_items: int = FULL_SOFTMAX_MAX_ITEMS,
    n_negatives: int = 4096,
    num_threads: int = 1,
    progress: bool = False,
    name: str = "semantic",
    k: int = 20,
    epoch_users: int | None = None,
    stop_users: np.ndarray | None = None,
) -> EmbeddingRecommender:
    """Train the linear semantic recommender (see module docstring); returns dim+1-d vectors.

    The extra column carries the content bias (item side ``beta_i``, user side 1). The
    vectors are divided by their mean row norm (one global scale) before the map, not
    row-normalised: an encoder's row norms can carry information (unit rows lost a fifth
    of validation NDCG on the synthetic generator's vectors; MiniLM rows are unit anyway).
    Users without training items get ``h_u = 0``: their scores are the content bias.
    AdamW with decoupled ``weight_decay``; early stopping on validation NDCG@k of ``stop_users``
    (default :func:`.validation.valid_users`). ``epoch_users`` (None / 0: no cap) caps the users
    one epoch visits (a fresh random subset each epoch when there are more).
    """
    _check_semantic_args(dim, lr, epochs, batch_size, eval_every, holdout)
    if epoch_users is not None and epoch_users < 0:
        raise ConfigError(f"epoch_users must be >= 0 (0 = every user), got {epoch_users}")
    import torch

    unit_rows(X)  # validation only: NaN/inf or zero rows are a VectorError
    X = np.asarray(X, dtype=np.float32)
    Xn = X / np.float32(np.linalg.norm(X, axis=1).mean())
    train = sp.csr_matrix(split.train)
    _check_items(Xn, train.shape[1])
    n_i = train.shape[1]
    dev = torch.device(resolve_device(device))
    rng = np.random.default_rng(seed)
    m = _LinearMap(Xn, dim, user_map, seed, dev)
    opt = torch.optim.AdamW(m.params, lr=lr, weight_decay=weight_decay)
    full = n_i <= full_softmax_max_items
    active = np.flatnonzero(np.diff(train.indptr) > 0)
    if len(active) == 0:
        raise ConfigError("trained semantic recommender: the training matrix has no interactions")
    scorable = np.ones(n_i, dtype=bool)

    per_epoch = len(active) if not epoch_users else min(len(active), int(epoch_users))

    def run_epoch() -> None:
        perm = rng.permutation(active)[:per_epoch]  # a random subset in random order when capped
        for s in range(0, len(perm), batch_size):
            b = _batch(train, perm[s : s + batch_size], holdout, rng)
            if b is None:
                continue
            loss = m.loss(b, n_i, full, n_negatives, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    with torch_threads(num_threads if dev.type == "cpu" else None):
        U, V, es = train_with_early_stopping(run_epoch, lambda: m.snapshot(train),
                                             lambda U, V: EmbeddingRecommender(name, U, V, scorable), split, epochs,
                                             eval_every, patience, k, f"semantic d={dim}", progress, stop_users)
    info = {"model": "semantic_trained", "dim": int(dim), "lr": float(lr), "weight_decay": float(weight_decay),
            "holdout": float(holdout), "user_map": bool(user_map), "max_epochs": int(epochs),
            "eval_every": int(eval_every), "patience": int(patience), "batch_size": int(batch_size),
            "objective": "full softmax" if full else f"sampled softmax ({n_negatives} uniform negatives)",
            "users_per_epoch": int(per_epoch), "epochs_run": int(es.history[-1]["epoch"]) if es.history else 0,
            "seed": int(seed), "device": str(dev), **es.summary()}
    return EmbeddingRecommender(name, U, V, scorable, info)
